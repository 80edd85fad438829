// ANCHOR: whole
// Listing 2-2: Lutz's `signal1.py`, ported to Rust: catch the signal named
// on the command line and report each one, forever. `--count N` stops
// after N signals.

use std::env;
use std::error::Error;
use std::process::ExitCode;

use chrono::Local;
use nix::sys::signal::Signal;
use nix::unistd::getpid;
use signal_hook::consts::FORBIDDEN;
use signal_hook::iterator::Signals;

const USAGE: &str =
    "usage: catch-signal SIGNAL [--count N]  (SIGNAL: 10, USR1 or SIGUSR1)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("catch-signal: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let (signal, count) = parse_args()?;
    // SIGKILL and SIGSTOP cannot be caught at all, and a handler that
    // returns from SIGSEGV, SIGILL or SIGFPE resumes the faulting code.
    // signal-hook panics if asked to register one, so check first.
    if FORBIDDEN.contains(&(signal as i32)) {
        return Err(format!("{signal} cannot be caught this way").into());
    }
    let mut signals = Signals::new([signal as i32])?;

    // Only now is the handler in place: tell the world it is safe to send.
    let pid = getpid();
    let short = signal.as_str().trim_start_matches("SIG");
    println!(
        "Waiting for {signal} ({}) as pid {pid}; try: kill -{short} {pid}",
        signal as i32
    );

    for number in signals.forever().take(count.unwrap_or(usize::MAX)) {
        println!("Got signal {number} at {}", asctime());
    }
    Ok(())
}
// ANCHOR_END: run

/// The local time in the format of Python's `time.asctime()`.
fn asctime() -> String {
    Local::now().format("%a %b %e %H:%M:%S %Y").to_string()
}

/// Reads `SIGNAL [--count N]` from the command line.
fn parse_args() -> Result<(Signal, Option<usize>), String> {
    let mut args = env::args().skip(1);
    let mut signal = None;
    let mut count = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => count = Some(parse_count(args.next())?),
            _ if signal.is_none() => signal = Some(parse_signal(&arg)?),
            _ => return Err(format!("unexpected argument '{arg}'; {USAGE}")),
        }
    }
    let signal = signal.ok_or(format!("which signal? {USAGE}"))?;
    Ok((signal, count))
}

/// Accepts a number (`10`) or a name with or without its prefix
/// (`USR1`, `SIGUSR1`, `usr1`).
fn parse_signal(arg: &str) -> Result<Signal, String> {
    let parsed = match arg.parse::<i32>() {
        Ok(number) => Signal::try_from(number),
        Err(_) => {
            let name = arg.to_ascii_uppercase();
            let name = name.strip_prefix("SIG").unwrap_or(&name);
            format!("SIG{name}").parse()
        }
    };
    parsed.map_err(|_| format!("unknown signal '{arg}'"))
}

fn parse_count(value: Option<String>) -> Result<usize, String> {
    let value = value.ok_or(format!("--count needs a number; {USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("--count needs a whole number, not '{value}'"))
}
// ANCHOR_END: whole
