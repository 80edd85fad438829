// ANCHOR: whole
// Listing 15-5: `connect` without waiting, and what it says. A
// nonblocking `connect` starts the handshake and fails with EINPROGRESS;
// the socket becomes writable when the handshake is over, and SO_ERROR
// then says how it ended. Four scenes on loopback:
//
// 1. a listening port: EINPROGRESS, then writable, SO_ERROR 0;
// 2. a port where nothing listens: EINPROGRESS, then ECONNREFUSED;
// 3. a listener whose queue is full: its kernel drops our SYN, and
//    nothing happens for a second, when ours sends it again;
// 4. a blocking `connect` interrupted by a signal handler: EINTR, though
//    the handshake goes on; `poll` and SO_ERROR say when it is done, and
//    a `connect` after that says it is. (A second blocking `connect`
//    before then would wait for the same handshake on Linux; EALREADY is
//    scene 3's, on a nonblocking socket.)
//
// `poll-connect` takes no arguments. Linux: other systems may answer
// scene 2 at once, or report the refusal differently.

use std::error::Error;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{self, ExitCode};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc::c_int;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigEvent, SigHandler, SigSet, SigevNotify, Signal,
    sigaction, signal,
};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, connect,
    getsockopt, listen, socket, sockopt,
};
use nix::sys::time::TimeSpec;
use nix::sys::timer::{Expiration, Timer, TimerSetTimeFlags};
use nix::time::ClockId;

const USAGE: &str = "usage: poll-connect";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("poll-connect: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: connect
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;

    writeln!(io::stdout(), "1. A listening port")?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let sock = start_connect(listener.local_addr()?)?;
    finish_connect(&sock, 5000)?;

    writeln!(io::stdout(), "2. A port where nothing listens")?;
    let closed = TcpListener::bind("127.0.0.1:0")?;
    let nobody = closed.local_addr()?;
    drop(closed);
    let sock = start_connect(nobody)?;
    finish_connect(&sock, 5000)?;

    writeln!(io::stdout(), "3. A listener whose queue is full")?;
    let (full, queued) = full_listener()?;
    let sock = start_connect(full.local_addr()?)?;
    finish_connect(&sock, 500)?;
    let SocketAddr::V4(addr) = full.local_addr()? else {
        return Err("an IPv4 address, please".into());
    };
    let again = connect(sock.as_raw_fd(), &SockaddrIn::from(addr));
    writeln!(io::stdout(), "   connect again: {}", outcome(again))?;
    drop(sock);
    interrupted(&full, queued)
}

/// Starts a nonblocking `connect` to `addr`; says what it returned.
fn start_connect(addr: SocketAddr) -> Result<OwnedFd, Box<dyn Error>> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let sock = socket(AddressFamily::Inet, SockType::Stream, flags, None)?;
    let SocketAddr::V4(addr) = addr else {
        return Err("an IPv4 address, please".into());
    };
    match connect(sock.as_raw_fd(), &SockaddrIn::from(addr)) {
        Ok(()) => writeln!(io::stdout(), "   connect: done at once")?,
        Err(err) => writeln!(io::stdout(), "   connect: {}", name(err))?,
    }
    Ok(sock)
}

/// Waits up to `millis` for the socket to become writable, then asks it,
/// with SO_ERROR, how its `connect` ended.
fn finish_connect(sock: &OwnedFd, millis: u16) -> Result<(), Box<dyn Error>> {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
    let started = Instant::now();
    let ready = loop {
        match poll(&mut fds, PollTimeout::from(millis)) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    if ready == 0 {
        writeln!(io::stdout(), "   poll: nothing within {millis} ms")?;
        return Ok(());
    }
    let events = fds[0].revents().unwrap_or(PollFlags::empty());
    let error = getsockopt(sock, sockopt::SocketError)?;
    let outcome = match error {
        0 => "0, connected".to_string(),
        errno => name(Errno::from_raw(errno)),
    };
    writeln!(
        io::stdout(),
        "   poll: {} after {:.2} s (measured); SO_ERROR: {outcome}",
        show(events),
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}
// ANCHOR_END: connect

// ANCHOR: eintr
/// A blocking `connect`, to a listener whose queue is full, interrupted
/// by SIGALRM (every 200 ms until it returns), whose handler was
/// installed without SA_RESTART: EINTR. The handshake goes on regardless,
/// and completes when our kernel sends its SYN again, a second after the
/// first, once the queue has room. Calling `connect` again would wait for that same
/// handshake on Linux; `poll` and SO_ERROR say when and how it ended, as
/// for a nonblocking `connect`.
fn interrupted(
    full: &TcpListener,
    queued: TcpStream,
) -> Result<(), Box<dyn Error>> {
    writeln!(
        io::stdout(),
        "4. A blocking connect, and a signal every 200 ms"
    )?;
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing at all.
    unsafe { sigaction(Signal::SIGALRM, &action) }?;
    // A parent that blocked SIGALRM passed its mask on through `exec`:
    // blocked, the alarms would only wait, and so would `connect`.
    SigSet::from(Signal::SIGALRM).thread_unblock()?;
    let flags = SockFlag::SOCK_CLOEXEC;
    let sock = socket(AddressFamily::Inet, SockType::Stream, flags, None)?;
    let SocketAddr::V4(addr) = full.local_addr()? else {
        return Err("an IPv4 address, please".into());
    };
    let addr = SockaddrIn::from(addr);
    // A timer that sends SIGALRM every 200 ms, not once: a single alarm
    // that came before `connect` began to wait (a busy machine may hold
    // us up that long) would be handled and gone, and `connect` would
    // then wait for minutes.
    let alarm = SigEvent::new(SigevNotify::SigevSignal {
        signal: Signal::SIGALRM,
        si_value: 0,
    });
    let mut timer = Timer::new(ClockId::CLOCK_MONOTONIC, alarm)?;
    let every_200_ms = TimeSpec::from_duration(Duration::from_millis(200));
    timer.set(
        Expiration::Interval(every_200_ms),
        TimerSetTimeFlags::empty(),
    )?;
    let first = connect(sock.as_raw_fd(), &addr);
    drop(timer); // No more alarms.
    writeln!(io::stdout(), "   connect: {}", outcome(first))?;
    // The handshake goes on: make room in the queue, by accepting the
    // connection that filled it, and wait for the end of it as for a
    // nonblocking connect.
    drop(queued);
    let (_, _) = full.accept()?;
    finish_connect(&sock, 5000)?;
    let last = connect(sock.as_raw_fd(), &addr);
    writeln!(io::stdout(), "   connect again, now: {}", outcome(last))?;
    Ok(())
}

extern "C" fn on_alarm(_: c_int) {}
// ANCHOR_END: eintr

/// A listener whose queue of completed connections is full: a backlog of
/// zero holds one connection, and one has come.
fn full_listener() -> Result<(TcpListener, TcpStream), Box<dyn Error>> {
    let flags = SockFlag::SOCK_CLOEXEC;
    let sock = socket(AddressFamily::Inet, SockType::Stream, flags, None)?;
    bind(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))?;
    listen(&sock, Backlog::new(0)?)?;
    let listener = TcpListener::from(sock);
    let queued = TcpStream::connect(listener.local_addr()?)?;
    Ok((listener, queued))
}

/// What `connect` returned, said in words.
fn outcome(result: nix::Result<()>) -> String {
    result.map_or_else(name, |()| "done".into())
}

/// An errno by its name and what it means: `EINPROGRESS (Operation now
/// in progress)`.
fn name(errno: Errno) -> String {
    format!("{errno:?} ({})", errno.desc())
}

/// The events `poll` reported, by name.
fn show(events: PollFlags) -> String {
    let names = [
        (PollFlags::POLLOUT, "POLLOUT"),
        (PollFlags::POLLERR, "POLLERR"),
        (PollFlags::POLLHUP, "POLLHUP"),
    ];
    let shown: Vec<_> = names
        .iter()
        .filter(|(flag, _)| events.contains(*flag))
        .map(|(_, name)| *name)
        .collect();
    shown.join("|")
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
