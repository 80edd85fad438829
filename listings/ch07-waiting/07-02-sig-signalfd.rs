// ANCHOR: whole
// Listing 7-2: Linux's signalfd. The signals are blocked, so no handler
// ever runs; the kernel hands them out instead as records read from a file
// descriptor, which `poll` can watch together with anything else, here
// standard input. Each record says which signal came and who sent it.
// SIGTERM or SIGINT ends the program; so does `--count N` signals. A
// SIGINT that the parent left ignored stays ignored.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::process::{self, ExitCode};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{getpid, read};

const USAGE: &str = "usage: sig-signalfd [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-signalfd: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let mut mask = SigSet::empty();
    for caught in [Signal::SIGUSR1, Signal::SIGHUP, Signal::SIGTERM] {
        mask.add(caught);
    }
    // Not a SIGINT that the parent left ignored (a script's `&` job): a
    // blocked signal is queued even when ignored, and would be read.
    if !is_ignored(Signal::SIGINT)? {
        mask.add(Signal::SIGINT);
    }
    // Blocked first, in the only thread there is (every thread started
    // later inherits the mask): only the signalfd receives them now.
    mask.thread_block()?;
    let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
    let signals = SignalFd::with_flags(&mask, flags)?;
    let (mut out, pid) = (io::stdout(), getpid());
    writeln!(
        out,
        "Waiting as pid {pid}; try: kill -USR1 {pid}, or type a line"
    )?;

    let stdin = io::stdin();
    let mut stdin_open = true;
    let mut seen = 0;
    while count.is_none_or(|n| seen < n) {
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            // No handler runs here, but one that a library installs later
            // (for SIGWINCH, say) would end `poll` with EINTR: poll again.
            Err(Errno::EINTR) => continue,
            other => other?,
        };
        let input_ready = fds.get(1).and_then(PollFd::any) == Some(true);
        // One record per signal; `None` once none is left.
        while let Some(info) = signals.read_signal()? {
            let signal = Signal::try_from(info.ssi_signo as i32)?;
            let (sender, uid) = (info.ssi_pid, info.ssi_uid);
            writeln!(out, "signalfd: {signal} from pid {sender} (uid {uid})")?;
            seen += 1;
            if matches!(signal, Signal::SIGTERM | Signal::SIGINT) {
                return Ok(());
            }
        }
        if input_ready {
            let mut input = [0u8; 1024];
            match read(&stdin, &mut input) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    writeln!(out, "stdin: [{}]", input[..n].escape_ascii())?;
                }
                Err(Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}
// ANCHOR_END: run

/// Whether `signal` is ignored, as the parent may have left it. A null
/// new action makes `sigaction` only report the current one.
fn is_ignored(signal: Signal) -> nix::Result<bool> {
    use nix::libc;
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        libc::sigaction(signal as i32, std::ptr::null(), current.as_mut_ptr())
    };
    Errno::result(done)?;
    // SAFETY: `sigaction` succeeded, and filled it in.
    let current = unsafe { current.assume_init() };
    Ok(current.sa_sigaction == libc::SIG_IGN)
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
