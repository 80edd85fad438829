// ANCHOR: whole
// Listing 27-3: why `vmsplice` is `unsafe`. One process, one pipe, one
// page-aligned buffer. It sends the word "before" into the pipe, then
// writes "after!" over it in its own buffer, and only then reads the pipe.
// Sent with `write`, the pipe holds a copy, and the reader gets "before".
// Sent with `vmsplice`, the pipe holds a reference to the buffer's page,
// and the reader gets whatever the page holds when it reads.

use std::error::Error;
use std::io::{self, IoSlice, Write};
use std::process::{self, ExitCode};

use nix::fcntl::{OFlag, SpliceFFlags, vmsplice};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::{pipe2, read, write};

const USAGE: &str = "usage: bench-vmsplice-reuse";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("bench-vmsplice-reuse: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let page = page_size();
    let mut memory = vec![0; 2 * page];
    let start = memory.as_ptr().align_offset(page);
    let buffer = &mut memory[start..start + page];
    for how in ["write", "vmsplice"] {
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
        buffer[..6].copy_from_slice(b"before");
        let sent = if how == "write" {
            write(&write_end, &buffer[..6])?
        } else {
            // SAFETY: this breaks the rule on purpose: the buffer changes
            // below while the pipe still refers to its page. Memory stays
            // sound, since the kernel holds its own reference to the page;
            // what breaks is the data the reader gets.
            unsafe {
                vmsplice(
                    &write_end,
                    &[IoSlice::new(&buffer[..6])],
                    SpliceFFlags::empty(),
                )?
            }
        };
        buffer[..6].copy_from_slice(b"after!");
        let mut got = [0; 6];
        let n = read(&read_end, &mut got)?;
        writeln!(
            io::stdout(),
            "{:<9} sent {sent} bytes of \"before\", then changed the buffer \
             to \"after!\"; the reader got {:?}",
            format!("{how}:"),
            String::from_utf8_lossy(&got[..n]),
        )?;
    }
    Ok(())
}
// ANCHOR_END: run

fn page_size() -> usize {
    // SAFETY: `sysconf` only reads a value.
    let size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
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

/// Accepts no arguments but `--help`.
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
