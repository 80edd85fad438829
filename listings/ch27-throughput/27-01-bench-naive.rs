// ANCHOR: whole
// Listing 27-1: a pipe benchmark written the way several published C
// benchmarks are, to show what becomes of it. The child insists that each
// read returns a whole chunk, and gives up when one does not. The parent
// never closes its copy of the read end, so its writes cannot fail: once
// the pipe is full, it waits for a reader that will never come.
//
// It hangs by design: stop it with Ctrl-C. Listing 27-2 is the fix.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, pipe2, read, write};

const USAGE: &str = "usage: bench-naive [--chunk BYTES] [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("bench-naive: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    // Before the child starts: it must stay a zombie until reaped.
    keep_zombies()?;
    let (chunk, count) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // A chunk's buffer, which both processes keep after the fork. Memory
    // the system cannot give is an error, not an abort.
    let mut buffer: Vec<u8> = Vec::new();
    buffer.try_reserve_exact(chunk)?;
    buffer.resize(chunk, 0);
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    let parent = getpid();
    writeln!(
        io::stdout(),
        "Parent {parent}: sending {count} chunks of {chunk} bytes"
    )?;
    io::stdout().flush()?;
    // SAFETY: the program has started no threads, so no lock can be held
    // by a thread that the child would not have.
    match unsafe { fork() }? {
        ForkResult::Child => {
            die_with_parent(parent)?;
            for _ in 0..count {
                // The mistake: a read returns what the pipe holds, up to
                // `chunk` bytes, and a pipe holds 64 KiB by default.
                if read(&read_end, &mut buffer)? != chunk {
                    // It gives up whether or not this line can be written.
                    let _ = writeln!(
                        io::stdout(),
                        "Child {}: short read, fewer than {chunk} bytes; \
                         giving up",
                        getpid()
                    );
                    // SAFETY: `_exit` only ends the process.
                    unsafe { nix::libc::_exit(1) }
                }
            }
            // SAFETY: as above.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            // The other mistake: `read_end` stays open here, so no write
            // ever fails with EPIPE, however dead the reader is.
            for _ in 0..count {
                let mut rest = &buffer[..];
                while !rest.is_empty() {
                    let n = write(&write_end, rest)?;
                    rest = &rest[n..];
                }
            }
            writeln!(io::stdout(), "Parent {parent}: done")?;
            waitpid(child, None)?;
        }
    }
    Ok(())
}
// ANCHOR_END: run

/// Asks the kernel to kill this process when its parent dies.
fn die_with_parent(parent: Pid) -> Result<(), Box<dyn Error>> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if getppid() != parent {
        return Err("the parent is gone".into());
    }
    Ok(())
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on the next write.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Gives SIGCHLD its default action back. A parent that left it ignored
/// passed that on through `exec` (Chapter 24): the kernel would then reap
/// the child itself, no zombie would show, and `waitpid` would fail with
/// ECHILD.
fn keep_zombies() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }?;
    Ok(())
}

/// The largest chunk: 1 GiB.
const MAX_CHUNK: usize = 1 << 30;

/// Reads `[--chunk BYTES] [--count N]`: 8192 chunks of 128 KiB, 1 GiB,
/// by default.
fn parse_args() -> Result<(usize, u64), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut chunk, mut count) = (128 * 1024, 8192);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("chunk") => chunk = args.value()?.parse()?,
            Long("count") => count = args.value()?.parse()?,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    // A chunk is one buffer in memory: at most 1 GiB.
    if !(1..=MAX_CHUNK).contains(&chunk) {
        return Err(format!("--chunk must be from 1 to {MAX_CHUNK}").into());
    }
    Ok((chunk, count))
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
