// ANCHOR: whole
// Listing 4-4: why a forked child should leave with `_exit`. The parent
// prints half a line, which waits in its stdout buffer, and forks; the
// child gets a copy of that buffer. `process::exit` flushes it, so the
// half line comes out twice; `_exit` ends the child at once.
//
// `--std-exit` makes the child leave with `process::exit`.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};

const USAGE: &str = "usage: fork-exit [--std-exit]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("fork-exit: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let std_exit = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // No newline: Rust's stdout keeps this in its buffer for now.
    write!(io::stdout(), "[written before fork] ")?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            if std_exit {
                // Runs the exit-time cleanup, which flushes our copy.
                process::exit(0);
            }
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            waitpid(child, None)?;
            writeln!(io::stdout(), "[parent done]")?;
            io::stdout().flush()?;
        }
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

/// Reads `[--std-exit]` from the command line.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut std_exit = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("std-exit") => std_exit = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(std_exit)
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
