// ANCHOR: whole
// Listing 6-1: a loop that stops on SIGINT or SIGTERM, with signal-hook's
// flags. The first signal asks it to stop: it finishes the tick and cleans
// up, which takes a while (`--cleanup-secs`, 3 by default). A second
// signal during the clean-up exits at once, with status 1. With
// `--no-force` that second signal does nothing at all, the mistake this
// listing exists to show. `--count N` stops after N ticks by itself.
// Started with SIGINT ignored (a script's `&` job), it leaves it so.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::getpid;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

const USAGE: &str =
    "usage: sig-hook-flag [--count N] [--cleanup-secs N] [--no-force]";
const TICK: Duration = Duration::from_millis(100);
/// The exit status when a second signal cuts the clean-up short.
const FORCED: i32 = 1;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-hook-flag: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

struct Args {
    count: Option<u64>,
    cleanup: Duration,
    force: bool,
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_signals = stop_signals()?;
    // Blocked while each gets its two actions: a signal between the two
    // would run the first alone, find the flag unset, and be lost. Held
    // pending, it reaches both once `unblock` below lets it through.
    let mut registering = SigSet::empty();
    for &number in &stop_signals {
        registering.add(Signal::try_from(number)?);
    }
    registering.thread_block()?;
    for &stop_signal in &stop_signals {
        if args.force {
            // Registered first, so it runs first: on the first signal it
            // finds the flag still false and does nothing; on the second
            // it finds it set, and exits at once.
            flag::register_conditional_shutdown(
                stop_signal,
                FORCED,
                Arc::clone(&stop),
            )?;
        }
        flag::register(stop_signal, Arc::clone(&stop))?;
    }
    // Only now: a signal already pending finds the handlers in place.
    unblock(&stop_signals)?;
    let (mut out, pid) = (io::stdout(), getpid());
    writeln!(
        out,
        "Working as pid {pid}; stop me with Ctrl-C or kill {pid}"
    )?;

    let mut ticks = 0;
    while !stop.load(Ordering::SeqCst) && args.count.is_none_or(|n| ticks < n) {
        thread::sleep(TICK);
        ticks += 1;
    }
    // Stopped by `--count`, the flag may still be false: set, it makes
    // the next signal the one that means "now", as the line below says.
    stop.store(true, Ordering::SeqCst);
    let secs = args.cleanup.as_secs();
    if args.force {
        writeln!(
            out,
            "Cleaning up for {secs} s; a second signal stops me now"
        )?;
    } else {
        writeln!(
            out,
            "Cleaning up for {secs} s; a second signal changes \
             nothing meanwhile"
        )?;
    }
    thread::sleep(args.cleanup);
    writeln!(out, "Clean exit")?;
    Ok(())
}
// ANCHOR_END: run

/// SIGINT and SIGTERM, less a SIGINT that the parent left ignored (a job
/// that a script starts with `&`): ignoring it was the user's choice, and
/// signal-hook's `register` would replace the "ignore" with its handler.
fn stop_signals() -> io::Result<Vec<i32>> {
    let int_ignored = is_ignored(SIGINT)?;
    Ok([SIGINT, SIGTERM]
        .into_iter()
        .filter(|&number| !(number == SIGINT && int_ignored))
        .collect())
}

/// Unblocks `numbers`, once their handlers are in place. A parent's mask
/// passes through `exec`, and a blocked signal reaches neither a handler
/// nor its default action. Not before the handlers: a signal that came
/// while blocked is pending, and is delivered the moment it is unblocked.
fn unblock(numbers: &[i32]) -> io::Result<()> {
    let mut set = SigSet::empty();
    for &number in numbers {
        set.add(Signal::try_from(number)?);
    }
    Ok(set.thread_unblock()?)
}

/// Whether `signal` is ignored: inherited so from the parent, through
/// `exec`. A null new action makes `sigaction` only report the current one.
fn is_ignored(signal: i32) -> io::Result<bool> {
    let mut current = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        nix::libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr())
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

/// Reads `[--count N] [--cleanup-secs N] [--no-force]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        count: None,
        cleanup: Duration::from_secs(3),
        force: true,
    };
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => parsed.count = Some(args.value()?.parse()?),
            Long("cleanup-secs") => {
                parsed.cleanup = Duration::from_secs(args.value()?.parse()?);
            }
            Long("no-force") => parsed.force = false,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
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
