// ANCHOR: whole
// Listing 16-2: a private two-way channel between a parent and its child.
// `socketpair` makes two connected Unix sockets, no name, no file; after
// `fork`, each process keeps one. The parent sends `ping 1`, `ping 2`...
// as lines; the child answers each with `pong` and the same number; the
// parent half-closes when it is done, and the child ends when it sees
// the end of the stream.
//
// `unix-pair [--count N]`: N pings (default 3).

use std::error::Error;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode};

use nix::sys::signal::{SigHandler, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, getpid};

const USAGE: &str = "usage: unix-pair [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output any more: the end, once the child is
        // reaped (`run` waits for it first).
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("unix-pair: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    // SIGPIPE stays ignored, as Rust leaves it: a parent killed by it
    // mid-talk would leave its child unreaped. A closed stdout is an
    // error like any other, reported once the child is reaped.
    keep_zombies()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Two connected sockets, each open for reading and writing.
    let (parent_end, child_end) = UnixStream::pair()?;
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // Each process closes the end it does not use, as with a pipe:
            // then the end of the stream means the other process is done.
            drop(parent_end);
            let status = match child(child_end) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("unix-pair child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            // Reaped however the talk ended, an error of our own output
            // included: `parent` drops its end, the child sees the end of
            // the stream and exits, and only then does the error count.
            let talked = parent(parent_end, count);
            let status = waitpid(child, None)?;
            // A child that failed, or died, comes first: its end closing
            // is why the talk failed ("Broken pipe", "Connection reset").
            if !matches!(status, WaitStatus::Exited(_, 0)) {
                return Err(format!("child: {status:?}").into());
            }
            talked?;
            writeln!(io::stdout(), "Child {child} exited")?;
        }
    }
    Ok(())
}

/// Sends the pings, one line each, reading each answer before the next.
fn parent(sock: UnixStream, count: usize) -> Result<(), Box<dyn Error>> {
    let mut answers = BufReader::new(&sock);
    let mut writer = &sock;
    let me = getpid();
    for n in 1..=count {
        // One write per line: `writeln!` on a socket, which has no
        // buffer, would send each piece of the format on its own.
        writer.write_all(format!("ping {n}\n").as_bytes())?;
        let mut answer = String::new();
        if answers.read_line(&mut answer)? == 0 {
            return Err("the child hung up".into());
        }
        writeln!(
            io::stdout(),
            "Parent {me} sent ping {n}, got: {}",
            answer.trim_end()
        )?;
    }
    // No more pings: the child sees the end of the stream.
    sock.shutdown(Shutdown::Write)?;
    Ok(())
}

/// Answers every line until the parent is done.
fn child(sock: UnixStream) -> io::Result<()> {
    let mut writer = &sock;
    let me = getpid();
    for line in BufReader::new(&sock).lines() {
        let line = line?;
        let number = line.strip_prefix("ping ").unwrap_or(&line);
        let answer = format!("pong {number} from Child {me}\n");
        writer.write_all(answer.as_bytes())?;
    }
    Ok(())
}
// ANCHOR_END: run

/// True if `err` says that the reader of our output has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Gives SIGCHLD its default action back. A parent that left it ignored
/// passed that on through `exec` (Chapter 24), and then the kernel reaps
/// our children itself: every wait fails with ECHILD, and a child's pid,
/// or its group's id, may go to a stranger as soon as the child exits,
/// while we may still signal it.
fn keep_zombies() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }?;
    Ok(())
}

/// Reads `[--count N]`.
fn parse_args() -> Result<usize, lexopt::Error> {
    use lexopt::prelude::*;
    let mut count = 3;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = args.value()?.parse()?,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(count)
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
