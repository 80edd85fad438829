// ANCHOR: whole
// Listing 4-2: the glued read from Listing 4-1, made to happen every time.
// The child writes `Spam 004` and `Spam 000` with two separate `write`
// calls and exits; only then does the parent read, and one read returns
// both messages as one run of bytes.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::process::{self, ExitCode};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, getpid, pipe2, read, write};

const USAGE: &str = "usage: pipe-glued";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-glued: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Close-on-exec: no program this process may start inherits an end.
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(read_end);
            let status = match child(&write_end) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("pipe-glued child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            // Wait until the child has written both messages and exited:
            // this is what a busy scheduler sometimes does by accident.
            // (It works because two messages fit in the pipe; a child
            // that wrote more than the pipe holds would block, waiting
            // for a reader, while we wait for it: a deadlock.)
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => {}
                status => {
                    return Err(format!("child ended badly: {status:?}").into());
                }
            }
            let mut buf = [0; 32];
            let n = read(&read_end, &mut buf)?;
            let text = String::from_utf8_lossy(&buf[..n]);
            writeln!(
                io::stdout(),
                "Parent {} got [{text}] in one read of {n} bytes",
                getpid()
            )?;
        }
    }
    Ok(())
}

fn child(write_end: &OwnedFd) -> Result<(), Box<dyn Error>> {
    for msg in ["Spam 004", "Spam 000"] {
        write(write_end, msg.as_bytes())?;
        writeln!(io::stdout(), "Child {} wrote [{msg}]", getpid())?;
    }
    Ok(())
}
// ANCHOR_END: run

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
