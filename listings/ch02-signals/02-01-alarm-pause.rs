// ANCHOR: whole
// Listing 2-1: Lutz's alarm loop (`signal2.py`) in its original shape:
// install a handler, set an alarm, `pause()` until a signal comes. The
// handler only sets a flag; the main loop does the printing.
//
// `--late` stands in for a machine too busy to run this process for six
// seconds between `alarm(5)` and `pause()`: it makes the original's race
// happen every time. `--fix` blocks SIGALRM first and waits with
// `sigsuspend`, which cannot lose it. `--count N` stops after N alarms.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use chrono::Local;
use nix::libc::c_int;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction,
    signal,
};
use nix::unistd::{alarm, getpid, pause};

const USAGE: &str = "usage: alarm-pause [--count N] [--late] [--fix]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("alarm-pause: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: port
const ALARM_SECS: u32 = 5;
/// With `--late`: longer than the alarm, so the signal comes first.
const LATE: Duration = Duration::from_secs(ALARM_SECS as u64 + 1);

/// Set by the handler, read by the main loop.
static RANG: AtomicBool = AtomicBool::new(false);

/// Runs in the middle of whatever the process was doing: it may only do
/// async-signal-safe work, and storing to an atomic is.
extern "C" fn on_alarm(_signal: c_int) {
    RANG.store(true, Ordering::SeqCst);
}

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let (count, late, fix) =
        parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGALRM, &action) }?;
    // A parent that blocked SIGALRM passed its mask on through `exec`.
    SigSet::from(Signal::SIGALRM).thread_unblock()?;
    // An alarm the parent set crosses `exec` too: cancel it, or it could
    // ring before ours is set, and `--fix` would take it for ours.
    alarm::cancel();
    // With --fix: SIGALRM blocked from here on, and the mask to wait with.
    let waiting = if fix { Some(block_sigalrm()?) } else { None };

    let (mut out, mut alarms) = (io::stdout(), 0);
    while count.is_none_or(|n| alarms < n) {
        RANG.store(false, Ordering::SeqCst);
        writeln!(out, "Setting at {}", asctime())?;
        alarm::set(ALARM_SECS);
        // The window: if SIGALRM comes before `pause` starts, the handler
        // runs now, and `pause` waits for a signal that has come and gone.
        if late {
            thread::sleep(LATE);
            let rang = RANG.load(Ordering::SeqCst);
            let wait = if fix { "sigsuspend" } else { "pause" };
            writeln!(
                out,
                "Calling {wait}() as pid {}; the handler has run already: \
                 {rang}",
                getpid()
            )?;
        }
        match &waiting {
            // Unblocks SIGALRM and waits, in one step: a pending alarm is
            // delivered inside the call, which then returns.
            Some(mask) => mask.suspend()?,
            None => pause(),
        }
        let number = Signal::SIGALRM as i32;
        writeln!(out, "Got alarm {number} at {}", asctime())?;
        alarms += 1;
    }
    Ok(())
}

/// Blocks SIGALRM, so that an alarm that rings early stays pending, and
/// returns the mask to wait with: the same, with SIGALRM unblocked.
fn block_sigalrm() -> nix::Result<SigSet> {
    let mut alarm = SigSet::empty();
    alarm.add(Signal::SIGALRM);
    let mut waiting = alarm.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    waiting.remove(Signal::SIGALRM);
    Ok(waiting)
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

// ANCHOR_END: port

/// The local time as Python's `time.asctime()` writes it,
/// for example `Wed Nov 25 16:44:09 2026`.
fn asctime() -> String {
    Local::now().format("%a %b %e %H:%M:%S %Y").to_string()
}

/// Reads `[--count N] [--late] [--fix]` from the command line.
fn parse_args() -> Result<(Option<u64>, bool, bool), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut count, mut late, mut fix) = (None, false, false);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Long("late") => late = true,
            Long("fix") => fix = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok((count, late, fix))
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
