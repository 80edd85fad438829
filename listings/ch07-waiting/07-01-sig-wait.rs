// ANCHOR: whole
// Listing 7-1: four ways to wait for a signal, one round per alarm. Each
// round sets `alarm(1)` and waits for SIGALRM with the method named on the
// command line:
//
//   pause      check a flag, then pause(): loses a signal that comes in
//              between the two
//   suspend    block SIGALRM, check the flag, then sigsuspend()
//   sigwait    block SIGALRM and take it with sigwait(), no handler
//   timedwait  block SIGALRM and take it with sigtimedwait(), which also
//              gives up after `--timeout-secs` (default 3)
//
// `--late` makes the window between checking and waiting last two seconds,
// so that the alarm always rings inside it. `--alarm-secs N` sets the
// alarm (default 1); `--count N` stops after N rounds.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc::{self, c_int};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction,
    signal, sigprocmask,
};
use nix::unistd::{alarm, getpid, pause};

const USAGE: &str = "usage: sig-wait pause|suspend|sigwait|timedwait \
                     [--late] [--alarm-secs N] [--timeout-secs N] [--count N]";
/// With `--late`: longer than the alarm, so the signal comes first.
const LATE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Pause,
    Suspend,
    Sigwait,
    Timedwait,
}

struct Args {
    method: Method,
    late: bool,
    alarm_secs: u32,
    timeout_secs: u32,
    count: Option<u64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-wait: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Set by the handler (pause and suspend only).
static RANG: AtomicBool = AtomicBool::new(false);

extern "C" fn on_alarm(_signal: c_int) {
    RANG.store(true, Ordering::SeqCst);
}

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let alarm_only = SigSet::from(Signal::SIGALRM);
    // Pending signals pass through `exec` as the mask does: a SIGALRM our
    // parent blocked and left pending would end the first wait at once,
    // an alarm we never set. Take it now, before anything unblocks it.
    timed_wait(&alarm_only, 0)?;
    match args.method {
        Method::Pause | Method::Suspend => {
            let action = SigAction::new(
                SigHandler::Handler(on_alarm),
                SaFlags::empty(),
                SigSet::empty(),
            );
            // SAFETY: the handler only stores to an atomic.
            unsafe { sigaction(Signal::SIGALRM, &action) }?;
            if args.method == Method::Pause {
                // A parent's mask passes through `exec`: blocked, the
                // alarm would never run the handler. (`suspend` waits
                // with the mask it found, less SIGALRM.)
                alarm_only.thread_unblock()?;
            }
        }
        // No handler: the signal stays blocked, and is taken by the wait.
        Method::Sigwait | Method::Timedwait => alarm_only.thread_block()?,
    }
    let mut out = io::stdout();
    writeln!(out, "Waiting for alarms as pid {}", getpid())?;
    let mut rounds = 0;
    while args.count.is_none_or(|n| rounds < n) {
        rounds += 1;
        writeln!(out, "Round {rounds}: alarm({}) set", args.alarm_secs)?;
        let taken = match args.method {
            Method::Pause => wait_with_pause(&args).map(|()| "pause")?,
            Method::Suspend => wait_with_sigsuspend(&args, &alarm_only)
                .map(|()| "sigsuspend")?,
            Method::Sigwait => {
                alarm::set(args.alarm_secs);
                late(&args)?;
                alarm_only.wait().map(|_| "sigwait")?
            }
            Method::Timedwait => {
                alarm::set(args.alarm_secs);
                late(&args)?;
                match timed_wait(&alarm_only, args.timeout_secs)? {
                    Some(_) => "sigtimedwait",
                    None => {
                        let secs = args.timeout_secs;
                        writeln!(
                            out,
                            "Round {rounds}: no signal within {secs} s"
                        )?;
                        alarm::cancel();
                        // An alarm that rang between the timeout and the
                        // cancel waits, pending: take it now, or the next
                        // round would take it for its own, at once.
                        timed_wait(&alarm_only, 0)?;
                        continue;
                    }
                }
            }
        };
        writeln!(out, "Round {rounds}: SIGALRM taken by {taken}")?;
    }
    Ok(())
}

// ANCHOR: pause
/// Check, then wait: a signal between the two is lost.
fn wait_with_pause(args: &Args) -> io::Result<()> {
    RANG.store(false, Ordering::SeqCst);
    alarm::set(args.alarm_secs);
    while !RANG.load(Ordering::SeqCst) {
        // The window: SIGALRM here runs the handler now, and `pause`
        // then waits for a signal that has come and gone.
        late(args)?;
        pause();
    }
    Ok(())
}
// ANCHOR_END: pause

// ANCHOR: suspend
/// Block, check, and unblock-and-wait in one step: no window.
fn wait_with_sigsuspend(args: &Args, alarm_only: &SigSet) -> io::Result<()> {
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(alarm_only), Some(&mut old))?;
    // The mask to wait with: the old one, less SIGALRM, which the old
    // one blocks too if our parent blocked it (masks are inherited).
    let mut waiting = old;
    waiting.remove(Signal::SIGALRM);
    RANG.store(false, Ordering::SeqCst);
    alarm::set(args.alarm_secs);
    while !RANG.load(Ordering::SeqCst) {
        // SIGALRM is blocked here: if it comes now, it waits, pending.
        late(args)?;
        // Installs that mask and waits, as one step; the handler runs
        // inside, and the blocking mask comes back.
        waiting.suspend()?;
    }
    Ok(sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?)
}
// ANCHOR_END: suspend

// ANCHOR: timedwait
/// `sigtimedwait`, which nix 0.32 does not wrap: the signal taken from
/// `set`, or `None` if none came within `secs` seconds.
fn timed_wait(set: &SigSet, secs: u32) -> nix::Result<Option<Signal>> {
    let deadline = Instant::now() + Duration::from_secs(secs.into());
    loop {
        // What is left of the timeout: after an interruption, not all of
        // it again, or a stream of other signals would wait for ever.
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos().into(),
        };
        // SAFETY: valid pointers; the siginfo is not wanted.
        let number = unsafe {
            libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &timeout)
        };
        match Errno::result(number) {
            Ok(number) => return Signal::try_from(number).map(Some),
            Err(Errno::EAGAIN) => return Ok(None),
            // Another signal's handler ran: wait on, for what is left.
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: timedwait

// ANCHOR: late
/// With `--late`, stands in for a machine too busy to run us for a while.
fn late(args: &Args) -> io::Result<()> {
    if args.late {
        thread::sleep(LATE);
        let ran = RANG.load(Ordering::SeqCst);
        let pending = alarm_is_pending();
        writeln!(
            io::stdout(),
            "(late) handler ran: {ran}; SIGALRM pending: {pending}"
        )?;
    }
    Ok(())
}

/// Whether SIGALRM has come and waits, blocked, to be delivered or taken.
fn alarm_is_pending() -> bool {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigpending` fills the whole set before `sigismember`
    // reads it, and only if it succeeded.
    unsafe {
        libc::sigpending(set.as_mut_ptr()) == 0
            && libc::sigismember(set.as_ptr(), libc::SIGALRM) == 1
    }
}
// ANCHOR_END: late

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

/// Reads `METHOD [--late] [--alarm-secs N] [--timeout-secs N] [--count N]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut method = None;
    let mut parsed = Args {
        method: Method::Pause,
        late: false,
        alarm_secs: 1,
        timeout_secs: 3,
        count: None,
    };
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("late") => parsed.late = true,
            Long("alarm-secs") => parsed.alarm_secs = args.value()?.parse()?,
            Long("timeout-secs") => {
                parsed.timeout_secs = args.value()?.parse()?;
            }
            Long("count") => parsed.count = Some(args.value()?.parse()?),
            Value(value) if method.is_none() => {
                method = Some(match value.string()?.as_str() {
                    "pause" => Method::Pause,
                    "suspend" => Method::Suspend,
                    "sigwait" => Method::Sigwait,
                    "timedwait" => Method::Timedwait,
                    other => {
                        return Err(format!(
                            "unknown method '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                });
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    parsed.method = method.ok_or("which method?")?;
    if parsed.alarm_secs == 0 {
        return Err("--alarm-secs must be at least 1".into());
    }
    // Zero would give up on every round at once, before any alarm.
    if parsed.timeout_secs == 0 {
        return Err("--timeout-secs must be at least 1".into());
    }
    Ok(parsed)
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
