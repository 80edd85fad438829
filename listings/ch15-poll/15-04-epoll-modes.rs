// ANCHOR: whole
// Listing 15-4: epoll, what `poll` becomes when the set of descriptors is
// kept in the kernel. Five scenes, each on fresh sockets:
//
// 1. level-triggered: a socket with bytes left unread is reported again;
// 2. edge-triggered (EPOLLET): it is not, until new bytes come, so a
//    reader must drain the socket until `EAGAIN`;
// 3. EPOLLONESHOT: one report, then nothing until the entry is re-armed;
// 4. four threads, each with its own epoll, wait on one listening socket:
//    one connection wakes all four, or, with EPOLLEXCLUSIVE, one;
// 5. an entry belongs to the open file, not to the descriptor: closed
//    while a `dup` of it lives, it goes on reporting, and only a
//    descriptor with the old number on the same file can remove it.
//
// `epoll-modes` takes no arguments. Linux only.

use std::error::Error;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{self, ExitCode};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::{
    Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout,
};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::{Pid, dup3_raw, gettid};

const USAGE: &str = "usage: epoll-modes";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("epoll-modes: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: triggers
/// How long a wait may take when nothing is expected to come.
const QUIET: u16 = 200;

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;

    writeln!(io::stdout(), "1. Level-triggered: 10 bytes come, we read 4")?;
    let (mut writer, mut reader) = pair()?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(&reader, EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
    writer.write_all(b"0123456789")?;
    writeln!(io::stdout(), "   wait: {}", wait(&epoll)?)?;
    reader.read_exact(&mut [0; 4])?;
    writeln!(
        io::stdout(),
        "   wait: {}, for the 6 bytes left",
        wait(&epoll)?
    )?;

    writeln!(io::stdout(), "2. Edge-triggered (EPOLLET): the same")?;
    let (mut writer, mut reader) = pair()?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let edge = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    epoll.add(&reader, EpollEvent::new(edge, 1))?;
    writer.write_all(b"0123456789")?;
    writeln!(io::stdout(), "   wait: {}", wait(&epoll)?)?;
    reader.read_exact(&mut [0; 4])?;
    writeln!(
        io::stdout(),
        "   wait: {}, though 6 bytes are left",
        wait(&epoll)?
    )?;
    writeln!(
        io::stdout(),
        "   drained until EAGAIN: {} bytes",
        drain(&mut reader)?
    )?;
    writer.write_all(b"ab")?;
    writeln!(
        io::stdout(),
        "   2 more bytes come; wait: {}",
        wait(&epoll)?
    )?;

    writeln!(
        io::stdout(),
        "3. EPOLLONESHOT: one report, then re-armed by hand"
    )?;
    let (mut writer, reader) = pair()?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let once = EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT;
    epoll.add(&reader, EpollEvent::new(once, 1))?;
    writer.write_all(b"x")?;
    writeln!(io::stdout(), "   wait: {}", wait(&epoll)?)?;
    writer.write_all(b"y")?;
    writeln!(io::stdout(), "   more bytes come; wait: {}", wait(&epoll)?)?;
    epoll.modify(&reader, &mut EpollEvent::new(once, 1))?;
    writeln!(
        io::stdout(),
        "   after EPOLL_CTL_MOD; wait: {}",
        wait(&epoll)?
    )?;

    herd()?;
    registered_to_the_file()?;
    Ok(())
}

/// Waits up to QUIET ms on `epoll`, and says what it reported.
fn wait(epoll: &Epoll) -> nix::Result<String> {
    let mut events = [EpollEvent::empty(); 4];
    let n = epoll.wait(&mut events, EpollTimeout::from(QUIET))?;
    Ok(match n {
        0 => format!("nothing within {QUIET} ms"),
        _ => format!("{n} ready"),
    })
}

/// Reads a nonblocking socket until it has nothing more: `WouldBlock`
/// (EAGAIN). Returns how many bytes it read.
fn drain(reader: &mut TcpStream) -> io::Result<usize> {
    reader.set_nonblocking(true)?;
    let (mut total, mut buf) = (0, [0; 4096]);
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                return Ok(total);
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: triggers

// ANCHOR: herd
/// Threads that wait on one listening socket, each with an epoll of its
/// own, and one connection: how many of them wake?
fn herd() -> Result<(), Box<dyn Error>> {
    const THREADS: usize = 4;
    writeln!(
        io::stdout(),
        "4. {THREADS} threads wait on one listening socket"
    )?;
    for (how, flags) in [
        ("without EPOLLEXCLUSIVE", EpollFlags::EPOLLIN),
        (
            "with EPOLLEXCLUSIVE",
            EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE,
        ),
    ] {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0")?);
        let (tids, waiting) = mpsc::channel();
        let waiters: Vec<_> = (0..THREADS)
            .map(|_| {
                let (listener, tids) = (Arc::clone(&listener), tids.clone());
                thread::Builder::new().spawn(move || -> nix::Result<bool> {
                    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
                    epoll.add(listener.as_fd(), EpollEvent::new(flags, 0))?;
                    let _ = tids.send(gettid());
                    // Nobody accepts: a wait that returns saw the
                    // connection.
                    let mut events = [EpollEvent::empty()];
                    let woken =
                        epoll.wait(&mut events, EpollTimeout::from(500u16))?;
                    Ok(woken > 0)
                })
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|err| format!("cannot start a thread: {err}"))?;
        // Only the threads hold a sender now: one that fails before it
        // sends (no descriptor left for its epoll) ends this wait, instead
        // of leaving it waiting for ever; its error says why.
        drop(tids);
        let tids: Vec<_> = waiting.iter().take(THREADS).collect();
        if tids.len() < THREADS {
            for waiter in waiters {
                waiter.join().map_err(|_| "a thread died")??;
            }
            return Err("a thread ended before it waited".into());
        }
        // EPOLLEXCLUSIVE wakes one thread among those asleep in
        // `epoll_wait`; an epoll that nobody waits on yet keeps the event
        // for later. So connect only once all four sleep there.
        for tid in tids {
            asleep_in_epoll_wait(tid)?;
        }
        let _client = TcpStream::connect(listener.local_addr()?)?;
        let mut woke = 0;
        for waiter in waiters {
            woke += usize::from(waiter.join().map_err(|_| "a thread died")??);
        }
        writeln!(
            io::stdout(),
            "   {how}: one connection woke {woke} of {THREADS}"
        )?;
    }
    Ok(())
}

/// Waits until thread `tid` of this process sleeps in `epoll_wait`, as
/// /proc says, for a second at most. The kernel function it sleeps in is
/// `do_epoll_wait` where the compiler inlined `ep_poll` into it, as on
/// this book's machines, and `ep_poll` where it did not.
fn asleep_in_epoll_wait(tid: Pid) -> Result<(), Box<dyn Error>> {
    let wchan = format!("/proc/self/task/{tid}/wchan");
    let deadline = Instant::now() + Duration::from_secs(1);
    let in_epoll_wait =
        |name: &str| matches!(name, "do_epoll_wait" | "ep_poll");
    while !in_epoll_wait(&fs::read_to_string(&wchan)?) {
        if Instant::now() > deadline {
            return Err("a thread never reached epoll_wait".into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
// ANCHOR_END: herd

// ANCHOR: file
/// An entry of epoll's interest list names an open file, through the
/// descriptor it was added with. Closing that descriptor does not remove
/// it while another descriptor (a `dup`, or a forked child's copy) keeps
/// the file open.
fn registered_to_the_file() -> Result<(), Box<dyn Error>> {
    writeln!(io::stdout(), "5. Registered, duplicated, closed")?;
    let (mut writer, reader) = pair()?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let number = reader.as_raw_fd();
    epoll.add(&reader, EpollEvent::new(EpollFlags::EPOLLIN, number as u64))?;
    let copy = reader.try_clone()?; // dup(2)
    drop(reader); // close(2), without EPOLL_CTL_DEL first
    writer.write_all(b"x")?;
    let mut events = [EpollEvent::empty()];
    let n = epoll.wait(&mut events, EpollTimeout::from(QUIET))?;
    let closed = n == 1 && events[0].data() == number as u64;
    writeln!(
        io::stdout(),
        "   wait: {n} ready, for the closed descriptor: {closed}"
    )?;
    let removed = match epoll.delete(&copy) {
        Ok(()) => "removed".to_string(),
        Err(Errno::ENOENT) => "ENOENT, it was never added".to_string(),
        Err(err) => err.to_string(),
    };
    writeln!(io::stdout(), "   EPOLL_CTL_DEL with the copy: {removed}")?;
    // The entry is found by open file and number: put the copy back on
    // the old number, and that descriptor matches it.
    // SAFETY: the number has been free since `drop(reader)`, and nothing
    // has been opened since (no other thread runs), so the new descriptor
    // has no other owner. In a threaded program another thread could have
    // been given the number meanwhile, and `dup3` would close its file.
    // `dup3`, not `dup2`: only it makes the new descriptor close-on-exec.
    let again = unsafe { dup3_raw(&copy, number, OFlag::O_CLOEXEC) }?;
    epoll.delete(&again)?;
    writeln!(
        io::stdout(),
        "   the copy put back on the old number (dup3); EPOLL_CTL_DEL: removed"
    )?;
    writer.write_all(b"y")?;
    writeln!(io::stdout(), "   more bytes come; wait: {}", wait(&epoll)?)?;
    Ok(())
}
// ANCHOR_END: file

/// A connected pair of sockets on loopback.
fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let writer = TcpStream::connect(listener.local_addr()?)?;
    let (reader, _) = listener.accept()?;
    Ok((writer, reader))
}

/// Gives SIGPIPE back its default action: this is a filter.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Takes no arguments but `--help`.
fn parse_args() -> Result<(), lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = lexopt::Parser::from_env();
    if let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(())
}

/// lexopt's error for an argument we did not expect, with an unknown
/// option escaped as lexopt escapes a value: a newline the user typed in
/// it must not start a second line of error.
fn unexpected(arg: lexopt::Arg<'_>) -> lexopt::Error {
    match arg.unexpected() {
        lexopt::Error::UnexpectedOption(option) => {
            format!("invalid option '{}'", option.escape_debug()).into()
        }
        other => other,
    }
}
// ANCHOR_END: whole
