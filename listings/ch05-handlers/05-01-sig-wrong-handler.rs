// ANCHOR: whole
// Listing 5-1: WRONG, on purpose. A signal handler that formats a string
// and prints it, the way `signal2.py` does in Python. It compiles, and it
// usually works for a while; then the process hangs or aborts. The book's
// tests compile this program, and only two ignored tests, run by hand,
// run it.
//
// An interval timer sends SIGALRM every 100 microseconds while the main
// loop formats and prints lines of its own, so that sooner or later a
// signal lands while the main loop holds the lock on standard output.
// With `--quiet` the main loop only allocates, and a second thread exists,
// as in most real programs: then the signal lands inside `malloc`.
// `--count N` stops after N rounds of the main loop.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use nix::libc::{self, c_int};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};

const USAGE: &str = "usage: sig-wrong-handler [--count N] [--quiet]";
/// How often the timer rings.
const INTERVAL_MICROS: i64 = 100;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-wrong-handler: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

static TICKS: AtomicU64 = AtomicU64::new(0);

// ANCHOR: wrong
/// WRONG: `format!` allocates and `println!` locks standard output. If the
/// signal interrupts the main loop while it is inside `malloc`, or in the
/// middle of its own `println!`, this runs on top of it.
extern "C" fn on_alarm(_signal: c_int) {
    let tick = TICKS.fetch_add(1, Ordering::Relaxed);
    let message = format!("tick {tick} from the handler");
    println!("{message}");
}

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let (count, quiet) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: none. The handler breaks the rule that makes this sound;
    // that is the point of the listing.
    unsafe { sigaction(Signal::SIGALRM, &action) }?;
    // A parent's mask passes through `exec`: blocked, the alarms would
    // only wait, and the handler would never run (Chapter 12).
    SigSet::from(Signal::SIGALRM).thread_unblock()?;
    if quiet {
        // With a second thread, glibc's malloc starts to take a lock.
        thread::spawn(|| {
            loop {
                thread::park();
            }
        });
    }
    ring_every(INTERVAL_MICROS)?;
    let mut kept = Vec::new(); // Work that keeps the allocator busy.
    let mut round = 0u64;
    while count.is_none_or(|n| round < n) {
        let message = format!("line {round} from the main loop");
        if !quiet {
            println!("{message}");
        }
        kept.push(message);
        if kept.len() == 1000 {
            kept.clear();
        }
        round += 1;
    }
    Ok(())
}
// ANCHOR_END: wrong

/// Starts the interval timer `ITIMER_REAL`: SIGALRM every `micros`.
fn ring_every(micros: i64) -> std::io::Result<()> {
    let every = libc::timeval {
        tv_sec: 0,
        tv_usec: micros,
    };
    let timer = libc::itimerval {
        it_interval: every,
        it_value: every,
    };
    // SAFETY: `timer` is a valid itimerval; the old value is not wanted.
    let rc = unsafe {
        libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on the next `println!`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and `println!` would panic.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Reads `[--count N] [--quiet]` from the command line.
fn parse_args() -> Result<(Option<u64>, bool), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut count, mut quiet) = (None, false);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Long("quiet") => quiet = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok((count, quiet))
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
