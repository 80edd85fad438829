// ANCHOR: whole
// Listing 11-1: the limits of `alarm`, shown in four steps. SIGALRM is
// blocked and taken with `sigwait`, so no handler is involved. Times the
// program measures are marked "(measured)"; they differ a little from run
// to run.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::alarm;

const USAGE: &str = "usage: sig-alarm-limits";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-alarm-limits: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let (mut out, alarm_only) = (io::stdout(), SigSet::from(Signal::SIGALRM));
    alarm_only.thread_block()?;
    // A SIGALRM our parent blocked and left pending came through `exec`
    // with the mask, and the first wait would take it at once. Ignoring a
    // signal discards it, pending and blocked too; then the default again.
    // SAFETY: neither action runs code of ours.
    unsafe { signal(Signal::SIGALRM, SigHandler::SigIgn) }?;
    // SAFETY: as above.
    unsafe { signal(Signal::SIGALRM, SigHandler::SigDfl) }?;

    // 1. Whole seconds only: `alarm` takes an unsigned number of seconds.
    let start = Instant::now();
    alarm::set(1);
    alarm_only.wait()?;
    writeln!(out, "alarm(1): SIGALRM {}", measured(start.elapsed()))?;

    // 2. One alarm per process: a second call replaces the first, and
    //    returns the seconds that were left of it.
    let start = Instant::now();
    let first = alarm::set(5);
    let second = alarm::set(2);
    writeln!(
        out,
        "alarm(5) returned {first:?}; alarm(2) returned {second:?}"
    )?;
    alarm_only.wait()?;
    writeln!(out, "SIGALRM {}", measured(start.elapsed()))?;
    writeln!(
        out,
        "alarm(0) returned {:?}: nothing is left",
        alarm::cancel()
    )?;

    // 3. setitimer: intervals in microseconds, and a period.
    let start = Instant::now();
    set_itimer(Duration::from_millis(250), Duration::from_millis(250))?;
    for _ in 0..4 {
        alarm_only.wait()?;
    }
    let took = measured(start.elapsed());
    writeln!(out, "setitimer(250 ms, every 250 ms): 4 SIGALRMs {took}")?;

    // 4. It is the same timer: `alarm(0)` cancels the interval timer.
    let left = alarm::cancel();
    let off = itimer_left()? == Duration::ZERO;
    writeln!(
        out,
        "alarm(0) returned {left:?}; the interval timer is off: {off}"
    )?;
    Ok(())
}
// ANCHOR_END: run

/// "after 1.00 s (measured)": a time that varies from run to run.
fn measured(elapsed: Duration) -> String {
    format!("after {:.2} s (measured)", elapsed.as_secs_f64())
}

/// `setitimer(ITIMER_REAL, ...)`: SIGALRM after `first`, then every
/// `every` (zero: once).
fn set_itimer(first: Duration, every: Duration) -> io::Result<()> {
    let timeval = |d: Duration| libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros().into(),
    };
    let timer = libc::itimerval {
        it_interval: timeval(every),
        it_value: timeval(first),
    };
    // SAFETY: a valid itimerval; the old value is not wanted.
    let rc = unsafe {
        libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What is left of `ITIMER_REAL` before it next fires.
fn itimer_left() -> io::Result<Duration> {
    let mut timer = std::mem::MaybeUninit::<libc::itimerval>::uninit();
    // SAFETY: `getitimer` fills `timer` when it succeeds.
    let rc = unsafe { libc::getitimer(libc::ITIMER_REAL, timer.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: filled by the successful call above.
    let value = unsafe { timer.assume_init() }.it_value;
    Ok(Duration::from_secs(value.tv_sec as u64)
        + Duration::from_micros(value.tv_usec as u64))
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

/// Takes no arguments but `--help`.
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
