// ANCHOR: whole
// Listing 2-1: Lutz's alarm loop (`signal2.py`), ported to Rust.
//
// Forever: say when the alarm is set, ask the kernel for SIGALRM in five
// seconds, and wait for it. `--count N` stops after N alarms.

use std::env;
use std::error::Error;
use std::process::ExitCode;

use chrono::Local;
use nix::unistd::alarm;
use signal_hook::consts::SIGALRM;
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: alarm [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("alarm: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let count = parse_args()?;
    // Install signal-hook's handler for SIGALRM. The handler itself only
    // records the signal and wakes `signals` up; our code below runs as
    // ordinary code on the main thread, where printing is allowed.
    let mut signals = Signals::new([SIGALRM])?;

    let mut alarms = 0;
    while count.is_none_or(|n| alarms < n) {
        println!("Setting at {}", asctime());
        alarm::set(5);
        // Block until the handler has seen the signal.
        let signal =
            signals.forever().next().ok_or("signal iterator closed")?;
        println!("Got alarm {signal} at {}", asctime());
        alarms += 1;
    }
    Ok(())
}
// ANCHOR_END: run

/// The local time in the format of Python's `time.asctime()`,
/// for example `Wed Nov 25 16:44:09 2026`.
fn asctime() -> String {
    Local::now().format("%a %b %e %H:%M:%S %Y").to_string()
}

/// Reads `[--count N]` from the command line.
fn parse_args() -> Result<Option<u64>, String> {
    let mut args = env::args().skip(1);
    let mut count = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => count = Some(parse_count(args.next())?),
            _ => return Err(format!("unexpected argument '{arg}'; {USAGE}")),
        }
    }
    Ok(count)
}

fn parse_count(value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or(format!("--count needs a number; {USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("--count needs a whole number, not '{value}'"))
}
// ANCHOR_END: whole
