// ANCHOR: whole
// Listing 5-5: why a handler must save and restore errno. The main code
// calls `open` on a file that does not exist, and reads errno to say why
// it failed. A signal arrives in between, and its handler makes a system
// call that fails too, as the self-pipe's `write` does when the pipe is
// full. Without `--save-errno` the main code reports the handler's error
// instead of its own.
//
// A real signal can land there only by bad luck; `raise` puts it there
// every time, standing in for that luck.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::{self, c_int};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction, signal,
};
use nix::unistd::{pipe2, write};

const USAGE: &str = "usage: sig-errno [--save-errno]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-errno: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// The write end of a full, non-blocking pipe.
static FULL_PIPE: AtomicI32 = AtomicI32::new(-1);
static SAVE_ERRNO: AtomicBool = AtomicBool::new(false);

// ANCHOR: handler
/// Writes into a non-blocking pipe until it is full.
fn fill(write_end: &impl std::os::fd::AsFd) -> nix::Result<()> {
    let block = [0u8; 4096];
    loop {
        match write(write_end, &block) {
            Ok(_) => {}
            Err(Errno::EAGAIN) => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

extern "C" fn on_signal(_signal: c_int) {
    let saved = Errno::last_raw();
    let byte = 0u8;
    let fd = FULL_PIPE.load(Ordering::SeqCst);
    // The pipe is full: this fails with EAGAIN, and sets errno to say so.
    // SAFETY: `write` is async-signal-safe; `byte` lives on our stack.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    if SAVE_ERRNO.load(Ordering::SeqCst) {
        Errno::set_raw(saved);
    }
}
// ANCHOR_END: handler

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let save = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    SAVE_ERRNO.store(save, Ordering::SeqCst);
    // Never closed, like every descriptor a handler uses (Listing 5-4).
    let flags = OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let (_read_end, write_end): &'static (OwnedFd, OwnedFd) =
        Box::leak(Box::new(pipe2(flags)?));
    fill(write_end)?;
    FULL_PIPE.store(write_end.as_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only does async-signal-safe work.
    unsafe { sigaction(Signal::SIGUSR1, &action) }?;
    // A parent's mask passes through `exec`: blocked, the raised signal
    // would only wait, and the handler would never run (Chapter 12).
    SigSet::from(Signal::SIGUSR1).thread_unblock()?;
    writeln!(io::stdout(), "Handler saves and restores errno: {save}")?;

    let path = c"/no/such/file";
    // SAFETY: `path` is a valid C string.
    let fd =
        unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    // Bad luck, on purpose: the signal comes after `open` has failed and
    // before anyone has read errno.
    raise(Signal::SIGUSR1)?;
    if fd < 0 {
        let err = io::Error::last_os_error();
        writeln!(io::stdout(), "open({path:?}) failed: {err}")?;
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

/// Reads `[--save-errno]` from the command line.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut save = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("save-errno") => save = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(save)
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
