// ANCHOR: whole
// Listing 11-3: signals sent against signals seen. A child process sends
// this process N signals (`--count N`, 1000 by default) as fast as it can,
// first SIGUSR1, a standard signal, then SIGRTMIN, a real-time one; the
// parent counts what it sees under each way of receiving them. Counts that
// depend on timing, and so vary from run to run, are marked "(measured)".

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::libc::{self, c_int};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, getpid};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: sig-count [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-count: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Incremented by a plain handler on every delivery.
static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count(_: c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

#[derive(Clone, Copy)]
enum Scheme {
    /// A handler; the signal blocked while the child sends.
    HandlerBlocked,
    /// A handler; the signal not blocked.
    HandlerRunning,
    /// Blocked, and read from a signalfd afterwards.
    Signalfd,
    /// signal-hook's iterator; blocked while the child sends.
    Iterator,
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let n = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    default_sigchld()?;
    let mut out = io::stdout();
    writeln!(out, "{:<28} {:<9} {:>5}  seen", "scheme", "signal", "sent")?;
    let schemes = [
        ("handler, blocked while sent", Scheme::HandlerBlocked),
        ("handler, not blocked", Scheme::HandlerRunning),
        ("signalfd", Scheme::Signalfd),
        ("signal-hook iterator", Scheme::Iterator),
    ];
    for (name, scheme) in schemes {
        for (signal_name, number) in
            [("SIGUSR1", libc::SIGUSR1), ("SIGRTMIN", libc::SIGRTMIN())]
        {
            let seen = receive(scheme, number, n)?;
            // A standard signal that is not blocked is delivered as often
            // as the receiver gets to run: that count depends on timing.
            let timing = matches!(scheme, Scheme::HandlerRunning)
                && number == libc::SIGUSR1;
            let seen = if timing {
                format!("{seen} (measured)")
            } else {
                seen.to_string()
            };
            writeln!(out, "{name:<28} {signal_name:<9} {n:>5}  {seen}")?;
        }
    }
    Ok(())
}

/// Has a child send `n` signals `number`, and counts them under `scheme`.
fn receive(
    scheme: Scheme,
    number: c_int,
    n: u64,
) -> Result<u64, Box<dyn Error>> {
    let set = sigset(number);
    match scheme {
        Scheme::HandlerBlocked | Scheme::HandlerRunning => {
            install_counter(number)?;
            // One our parent blocked and left pending came through `exec`
            // with the mask: let the handler take it before the count.
            set.thread_unblock()?;
            HANDLED.store(0, Ordering::SeqCst);
            if matches!(scheme, Scheme::HandlerBlocked) {
                set.thread_block()?;
                send_burst(number, n)?;
                // Each pending signal is delivered on the way out of this
                // call, before it returns.
                set.thread_unblock()?;
            } else {
                send_burst(number, n)?;
            }
            Ok(HANDLED.load(Ordering::SeqCst))
        }
        Scheme::Signalfd => {
            set.thread_block()?;
            let fd = SignalFd::with_flags(
                &set,
                SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
            )?;
            send_burst(number, n)?;
            let mut seen = 0;
            while fd.read_signal()?.is_some() {
                seen += 1;
            }
            set.thread_unblock()?;
            Ok(seen)
        }
        Scheme::Iterator => {
            // Never dropped: signal-hook's action for `number` would
            // outlive its socket for a moment, and a signal then would
            // raise SIGPIPE, at its default here (Listing 6-2).
            let signals = Signals::new([number])
                .map_err(|err| format!("cannot watch for signals: {err}"))?;
            let signals = Box::leak(Box::new(signals));
            set.thread_block()?;
            send_burst(number, n)?;
            set.thread_unblock()?;
            let seen = signals.pending().count() as u64;
            signals.handle().close();
            Ok(seen)
        }
    }
}
// ANCHOR_END: run

// ANCHOR: burst
/// Forks a child that sends `n` signals `number` to this process with
/// `kill`, as fast as it can, and waits until it has finished.
fn send_burst(number: c_int, n: u64) -> Result<(), Box<dyn Error>> {
    let parent = getpid();
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let mut status = 0;
            for _ in 0..n {
                // SAFETY: `kill` is a plain system call.
                if unsafe { libc::kill(parent.as_raw(), number) } != 0 {
                    status = 1;
                    break;
                }
            }
            // SAFETY: `_exit` only ends the process.
            unsafe { libc::_exit(status) }
        }
        ForkResult::Parent { child } => loop {
            // Waited for until reaped: a handler without SA_RESTART (a
            // library's) may interrupt the wait, and the child still runs.
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(status) => {
                    return Err(format!("the sender failed: {status:?}").into());
                }
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
            }
        },
    }
}
// ANCHOR_END: burst

/// A signal set holding `number`, which may be a real-time signal.
fn sigset(number: c_int) -> SigSet {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the set before `sigaddset`.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), number);
        SigSet::from_sigset_t_unchecked(set.assume_init())
    }
}

/// Installs `count` as the handler of `number`, with SA_RESTART (nix's
/// `sigaction` takes only the standard signals, so this calls libc).
fn install_counter(number: c_int) -> io::Result<()> {
    // SAFETY: all-zero is a valid sigaction: empty mask, no flags.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = count as extern "C" fn(c_int) as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: the handler only increments an atomic.
    let rc = unsafe { libc::sigaction(number, &action, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives SIGCHLD its default action. A parent may have left it ignored,
/// which passes through `exec`; then the kernel reaps the sender itself,
/// and `waitpid` fails with ECHILD (Chapter 12, Listing 12-4).
fn default_sigchld() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map(drop)
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
fn parse_args() -> Result<u64, lexopt::Error> {
    use lexopt::prelude::*;
    let mut count = 1000;
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
    if count == 0 || count > 10_000 {
        return Err("--count must be between 1 and 10000".into());
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
