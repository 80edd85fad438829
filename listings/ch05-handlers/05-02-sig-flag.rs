// ANCHOR: whole
// Listing 5-2: the first safe thing a handler may do: store to an atomic.
// The main loop works in ticks of 100 ms and looks at the flag between
// them; SIGINT (Ctrl-C) or SIGTERM (`kill`) asks it to stop, and it stops
// at the end of the tick, cleans up, and exits 0. `--count N` stops after
// N ticks by itself. A SIGINT it was started with ignored stays ignored.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::Duration;

use nix::libc::c_int;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::getpid;

const USAGE: &str = "usage: sig-flag [--count N]";
/// One unit of the main loop's work.
const TICK: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-flag: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: flag
/// The number of the signal that asked us to stop; 0 while none has.
static STOP: AtomicI32 = AtomicI32::new(0);

/// Async-signal-safe: one atomic store, no lock, no allocation.
extern "C" fn on_stop(signal: c_int) {
    STOP.store(signal, Ordering::SeqCst);
}

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let action = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let mut handled = SigSet::empty();
    for stop_signal in [Signal::SIGINT, Signal::SIGTERM] {
        // A SIGINT that we were started with ignored (a script's `&` job)
        // stays ignored: the user chose that.
        if stop_signal == Signal::SIGINT && is_ignored(stop_signal)? {
            continue;
        }
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(stop_signal, &action) }?;
        handled.add(stop_signal);
    }
    // A parent's mask passes through `exec`: a signal it blocked would
    // stay pending, and never reach the handler (Chapter 12).
    handled.thread_unblock()?;
    let (mut out, pid) = (io::stdout(), getpid());
    writeln!(
        out,
        "Working as pid {pid}; stop me with Ctrl-C or kill {pid}"
    )?;

    let mut ticks = 0;
    while STOP.load(Ordering::SeqCst) == 0 && count.is_none_or(|n| ticks < n) {
        // The work. A signal cuts the sleep short, but std's `sleep`
        // sleeps again for the rest, so the flag is seen when the tick
        // ends: at most 100 ms late.
        thread::sleep(TICK);
        ticks += 1;
    }
    if let Ok(signal) = Signal::try_from(STOP.load(Ordering::SeqCst)) {
        writeln!(out, "Got {signal}: finishing the tick and cleaning up")?;
    }
    writeln!(out, "Clean exit")?;
    Ok(())
}
// ANCHOR_END: flag

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
