// ANCHOR: whole
// Listing 4-3: Lutz's `pipe2.py`, ported to Rust: the fix for Listing 4-1.
// Each message ends with a newline, each process closes the end of the
// pipe it does not use, and the parent reads whole lines. `--count N`
// makes the child stop after N messages, and the parent then sees the
// end of the stream by itself.

use std::error::Error;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, SigSet, Signal, kill, signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, getpid, pipe2};

const USAGE: &str = "usage: pipe-lines [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-lines: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    // Restored first, and before `fork`, so the child has it too.
    restore_sigpipe()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Close-on-exec: no program this process may start inherits an end.
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(read_end); // The child only writes.
            let status = match child(File::from(write_end), count) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("pipe-lines child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            drop(write_end); // The parent only reads.
            if let Err(err) = parent(File::from(read_end)) {
                // A full disk, say: a child still there would go on
                // writing. End it and reap it before saying why; but not
                // a pid that is no longer our child (ECHILD): with SIGCHLD
                // ignored the kernel reaps a child the moment it exits,
                // and the number may be another process's by now.
                let flags = Some(WaitPidFlag::WNOHANG);
                if let Ok(WaitStatus::StillAlive) = waitpid(child, flags) {
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                }
                return Err(err.into());
            }
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => Err(format!("child ended badly: {status:?}").into()),
            }
        }
    }
}
// ANCHOR_END: run

// ANCHOR: child
fn child(mut write_end: File, count: Option<u64>) -> io::Result<()> {
    let mut zzz = 0;
    let mut sent = 0;
    while count.is_none_or(|n| sent < n) {
        thread::sleep(Duration::from_secs(zzz));
        // One `write` per message, newline included. If the parent has
        // died, no read end is left open anywhere: this write raises
        // SIGPIPE, and the child ends with it.
        write_end.write_all(format!("Spam {zzz:03}\n").as_bytes())?;
        zzz = (zzz + 1) % 5;
        sent += 1;
    }
    Ok(()) // Dropping `write_end` closes the last write end.
}
// ANCHOR_END: child

// ANCHOR: parent
fn parent(read_end: File) -> io::Result<()> {
    // `lines` ends when every write end is closed: the child's exit.
    let mut out = io::stdout();
    for line in BufReader::new(read_end).lines() {
        let line = line?;
        writeln!(out, "Parent {} got [{line}] at {}", getpid(), unix_time())?;
    }
    Ok(())
}
// ANCHOR_END: parent

/// Seconds since the Unix epoch, like Python's `time.time()`.
fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |t| t.as_secs_f64())
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

/// Reads `[--count N]` from the command line.
fn parse_args() -> Result<Option<u64>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut count = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
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
