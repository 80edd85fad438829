// ANCHOR: whole
// Listing 2-2: Lutz's alarm loop (`signal2.py`), ported to Rust with
// signal-hook, which cannot lose the wake-up that Listing 2-1 loses.
//
// Forever: say when the alarm is set, ask the kernel for SIGALRM in five
// seconds, and wait for it. `--count N` stops after N alarms.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};

use chrono::Local;
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::alarm;
use signal_hook::consts::SIGALRM;
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: alarm [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("alarm: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Install signal-hook's handler for SIGALRM. The handler only records
    // the signal and writes a byte to wake `signals` up; the code below
    // runs as ordinary code on the main thread, where printing is allowed.
    // Kept until the process ends (`Box::leak`): dropped, it would close
    // its end of the socket first, and a SIGALRM in that moment would
    // make the handler's write raise SIGPIPE, at its default (Chapter 6).
    let signals = Signals::new([SIGALRM])
        .map_err(|err| format!("cannot watch for SIGALRM: {err}"))?;
    let signals = Box::leak(Box::new(signals));
    // signal-hook leaves the signal mask alone, and a parent that blocked
    // SIGALRM passed its mask on through `exec`: unblock it, or wait for
    // ever.
    SigSet::from(Signal::SIGALRM).thread_unblock()?;
    // An alarm the parent set crosses `exec` too, and could ring while
    // our first line is written, before ours replaces it: cancel it. A
    // SIGALRM the parent left pending, or that alarm if it rang already,
    // has reached the handler by now. Neither is an alarm of ours.
    alarm::cancel();
    signals.pending().for_each(drop);

    let (mut out, mut alarms) = (io::stdout(), 0);
    while count.is_none_or(|n| alarms < n) {
        writeln!(out, "Setting at {}", asctime())?;
        alarm::set(5);
        // Block until the handler has seen the signal. A signal that came
        // before this line left its byte behind, so it is not lost.
        let signal =
            signals.forever().next().ok_or("signal iterator closed")?;
        writeln!(out, "Got alarm {signal} at {}", asctime())?;
        alarms += 1;
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

/// The local time as Python's `time.asctime()` writes it,
/// for example `Wed Nov 25 16:44:09 2026`.
fn asctime() -> String {
    Local::now().format("%a %b %e %H:%M:%S %Y").to_string()
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
