// ANCHOR: whole
// Listing 15-1: two ways to wait for a nonblocking socket. A helper
// thread sends `hello` after one second; the main thread waits for it
// first by calling `read` in a loop until it stops failing with
// `WouldBlock`, then with `poll`. Each reports how long it waited, how
// many times it called `read`, and how much CPU time its waiting cost.

use std::error::Error;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str = "usage: poll-spin";
/// How long the sender keeps the reader waiting.
const DELAY: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("poll-spin: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    for (name, wait) in [("busy loop", spin as Waiter), ("poll", sleep)] {
        let mut reader = delayed_hello()?;
        reader.set_nonblocking(true)?;
        let (wall, cpu) = (Instant::now(), cpu_time()?);
        let mut buf = [0; 16];
        let (n, reads) = wait(&mut reader, &mut buf)?;
        let (wall, cpu) = (wall.elapsed(), cpu_time()? - cpu);
        writeln!(
            io::stdout(),
            "{name}: got {:?} after {:.2} s, {reads} reads, {:.2} s of CPU",
            String::from_utf8_lossy(&buf[..n]),
            wall.as_secs_f64(),
            cpu.as_secs_f64()
        )?;
    }
    Ok(())
}

/// A way to wait for data on a nonblocking socket and read it; returns
/// the bytes read and the number of calls to `read` it took.
type Waiter = fn(&mut TcpStream, &mut [u8]) -> io::Result<(usize, u64)>;

// ANCHOR: wait
/// Wrong: tries again at once, millions of times a second.
fn spin(sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    let mut reads = 0;
    loop {
        reads += 1;
        match sock.read(buf) {
            Err(err) if err.kind() == ErrorKind::WouldBlock => continue,
            result => return Ok((result?, reads)),
        }
    }
}

/// Right: asks the kernel to wake us when the socket is readable, then
/// reads; a signal handler that interrupts `poll` (EINTR, never
/// restarted) sends us round again. (A real program also gives `poll` a
/// timeout.)
fn sleep(sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    let mut reads = 0;
    loop {
        reads += 1;
        match sock.read(buf) {
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            result => return Ok((result?, reads)),
        }
    }
}
// ANCHOR_END: wait

/// The reading end of a connection whose other end will send `hello`
/// after DELAY, from a thread of its own.
fn delayed_hello() -> io::Result<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut sender = TcpStream::connect(listener.local_addr()?)?;
    let (reader, _) = listener.accept()?;
    thread::Builder::new()
        .spawn(move || {
            thread::sleep(DELAY);
            sender.write_all(b"hello")
        })
        .map_err(|err| {
            io::Error::new(err.kind(), format!("cannot start a thread: {err}"))
        })?;
    Ok(reader)
}

/// The CPU time this thread has used, in user and kernel mode.
fn cpu_time() -> nix::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD)?;
    let (user, system) = (usage.user_time(), usage.system_time());
    let micros = |t: nix::sys::time::TimeVal| {
        t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64
    };
    Ok(Duration::from_micros(micros(user) + micros(system)))
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on its next write.
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
