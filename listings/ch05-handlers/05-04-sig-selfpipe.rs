// ANCHOR: whole
// Listing 5-4: the self-pipe trick by hand. The handler writes the
// signal's number, one byte, into a pipe; the main loop waits with `poll`
// on that pipe and on standard input at once, and reports each signal and
// each line of input as ordinary code. SIGTERM or SIGINT ends it, and so
// does `--count N` signals. A SIGINT it was started with ignored stays
// ignored.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::{self, c_int};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::{getpid, pipe2, read};

const USAGE: &str = "usage: sig-selfpipe [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-selfpipe: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: handler
/// The write end of the pipe, for the handler; -1 until it exists.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Writes the signal's number into the pipe. The pipe is non-blocking: if
/// it is full, the byte is dropped, and with it the news of which signal
/// came; the reader, who has bytes waiting already, wakes up anyway. errno
/// is saved and restored because a failed `write` sets it (Listing 5-5
/// shows why that matters).
extern "C" fn on_signal(signal: c_int) {
    let saved = Errno::last_raw();
    let byte = signal as u8;
    let fd = WAKE_FD.load(Ordering::SeqCst);
    // SAFETY: `write` is async-signal-safe; `byte` lives on our stack.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    Errno::set_raw(saved);
}
// ANCHOR_END: handler

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Leaked on purpose: the pipe is never closed, because the handler may
    // write into it at any moment until the process ends, even while `run`
    // returns. A closed descriptor's number is soon another file's.
    let flags = OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let (read_end, write_end): &'static (OwnedFd, OwnedFd) =
        Box::leak(Box::new(pipe2(flags)?));
    WAKE_FD.store(write_end.as_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let caught = [Signal::SIGUSR1, Signal::SIGHUP, Signal::SIGTERM];
    // SIGINT too, unless we were started with it ignored (a script's `&`
    // job): that was the user's choice.
    let int = (!is_ignored(Signal::SIGINT)?).then_some(Signal::SIGINT);
    let mut handled = SigSet::empty();
    for caught in caught.into_iter().chain(int) {
        // SAFETY: the handler only does async-signal-safe work.
        unsafe { sigaction(caught, &action) }?;
        handled.add(caught);
    }
    // A parent's mask passes through `exec`: blocked, they would never
    // reach the handler, and `kill -TERM` would not stop us (Chapter 12).
    handled.thread_unblock()?;
    let (mut out, pid) = (io::stdout(), getpid());
    writeln!(
        out,
        "Waiting as pid {pid}; try: kill -USR1 {pid}, or type a line"
    )?;

    let stdin = io::stdin();
    let mut stdin_open = true;
    let mut seen = 0;
    while count.is_none_or(|n| seen < n) {
        let mut fds = vec![PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // `poll` is never restarted: a signal makes it fail with EINTR,
        // and the byte the handler wrote is read on the next round.
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            other => other?,
        };
        let input_ready = fds.get(1).and_then(PollFd::any) == Some(true);
        for signal in drain(read_end)? {
            writeln!(out, "Main loop: got {signal}")?;
            seen += 1;
            if matches!(signal, Signal::SIGTERM | Signal::SIGINT) {
                return Ok(());
            }
        }
        if input_ready {
            // One `read` of what is there: it cannot block after `poll`.
            let mut input = [0u8; 1024];
            match read(&stdin, &mut input) {
                Ok(0) => stdin_open = false, // End of input: signals only.
                Ok(n) => {
                    writeln!(
                        out,
                        "Main loop: read [{}]",
                        input[..n].escape_ascii()
                    )?;
                }
                Err(Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}

/// Every signal whose byte is waiting in the pipe, in order.
fn drain(read_end: &OwnedFd) -> nix::Result<Vec<Signal>> {
    let mut signals = Vec::new();
    let mut bytes = [0u8; 64];
    loop {
        match read(read_end, &mut bytes) {
            Ok(0) | Err(Errno::EAGAIN) => return Ok(signals),
            Ok(n) => signals.extend(
                bytes[..n]
                    .iter()
                    .filter_map(|&b| Signal::try_from(i32::from(b)).ok()),
            ),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: run

/// Whether `signal` is ignored, as the parent may have left it: ignoring
/// passes through `fork` and `exec`. A null new action makes `sigaction`
/// only report the current one.
fn is_ignored(signal: Signal) -> nix::Result<bool> {
    let mut current = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        nix::libc::sigaction(
            signal as c_int,
            std::ptr::null(),
            current.as_mut_ptr(),
        )
    };
    nix::errno::Errno::result(done)?;
    // SAFETY: `sigaction` succeeded, and filled it in.
    let current = unsafe { current.assume_init() };
    Ok(current.sa_sigaction == nix::libc::SIG_IGN)
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
