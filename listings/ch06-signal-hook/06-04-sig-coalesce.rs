// ANCHOR: whole
// Listing 6-4: counting what arrives. For SIGUSR1 it counts at two levels:
// how many times the kernel ran a handler (a counter that signal-hook's
// handler increments) and how many times signal-hook's iterator reported
// the signal. On SIGTERM it prints both counts and exits. Send it signals
// while it is stopped, or while it is busy (`--busy-ms N`: each report
// takes N ms of work), and compare with how many you sent.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::getpid;
use signal_hook::consts::{SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use signal_hook::low_level;

const USAGE: &str = "usage: sig-coalesce [--busy-ms N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-coalesce: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Incremented by a handler on every delivery of SIGUSR1.
static DELIVERED: AtomicU64 = AtomicU64::new(0);

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let busy = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // A SIGUSR1 our parent blocked and left pending passes through `exec`:
    // nobody sent it to us, and it would be counted. Ignoring a signal
    // throws away one pending; the handler goes in next.
    // SAFETY: ignoring runs no code of ours.
    unsafe { signal(Signal::SIGUSR1, SigHandler::SigIgn) }?;
    // Blocked while signal-hook installs its handlers, which know what to
    // do only once registered: a signal in between would be lost.
    let mut handled = SigSet::from(Signal::SIGUSR1);
    handled.add(Signal::SIGTERM);
    handled.thread_block()?;
    // SAFETY: the action only increments an atomic.
    unsafe {
        low_level::register(SIGUSR1, || {
            DELIVERED.fetch_add(1, Ordering::SeqCst);
        })
    }?;
    // Never dropped, for a SIGUSR1 that comes as we exit (Listing 6-2).
    let signals = Signals::new([SIGUSR1, SIGTERM])
        .map_err(|err| format!("cannot watch for signals: {err}"))?;
    let signals = Box::leak(Box::new(signals));
    // Unblocked, also for a parent's mask, which passes through `exec`:
    // blocked, they would only ever be pending, and `kill -TERM` would do
    // nothing.
    handled.thread_unblock()?;
    let (mut out, pid) = (io::stdout(), getpid());
    writeln!(
        out,
        "Counting SIGUSR1 as pid {pid}; kill -TERM {pid} for the totals"
    )?;

    let mut reported = 0;
    let mut done = false;
    while !done {
        // Every pending signal, once for all the deliveries before the
        // iterator looked; one delivered again meanwhile comes again.
        for number in signals.wait() {
            if number == SIGUSR1 {
                reported += 1;
                thread::sleep(busy);
            } else {
                done = true;
            }
        }
    }
    let delivered = DELIVERED.load(Ordering::SeqCst);
    writeln!(
        out,
        "SIGUSR1: handler ran {delivered} times, iterator reported it {reported} times"
    )?;
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

/// Reads `[--busy-ms N]` from the command line.
fn parse_args() -> Result<Duration, lexopt::Error> {
    use lexopt::prelude::*;
    let mut busy = Duration::ZERO;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("busy-ms") => {
                busy = Duration::from_millis(args.value()?.parse()?);
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(busy)
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
