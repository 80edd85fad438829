// ANCHOR: whole
// Listing 2-3: Lutz's `signal1.py`, ported to Rust: catch the signal named
// on the command line and report each one, forever. `--count N` stops
// after N signals.

use std::error::Error;
use std::io::{self, ErrorKind, Write};
use std::mem::MaybeUninit;
use std::process::{self, ExitCode};

use chrono::Local;
use nix::errno::Errno;
use nix::libc::{
    SIGBUS, SIGRTMAX, SIGRTMIN, c_int, sigaddset, sigemptyset, sigset_t,
};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::getpid;
use signal_hook::consts::FORBIDDEN;
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: catch-signal SIGNAL [--count N]  \
                     (SIGNAL: 10, USR1, SIGUSR1 or RTMIN+2)";

// ANCHOR: run
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output has gone: there is nobody left to tell.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr is a closed pipe;
            // and one write, so that no other writer splits the line.
            let line = format!("catch-signal: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

fn run() -> Result<(), Box<dyn Error>> {
    let (signal, count) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let name = signal_name(signal);
    // SIGKILL and SIGSTOP cannot be caught at all, and a handler that
    // returns from SIGSEGV, SIGILL or SIGFPE resumes the faulting code.
    // signal-hook panics if asked to register one, so check first. SIGBUS
    // is a fault too, and signal-hook would chain to the Rust runtime's
    // handler for it, which puts the default action back.
    if FORBIDDEN.contains(&signal) || signal == SIGBUS {
        return Err(format!("{name} cannot be caught this way").into());
    }
    // Kept until the process ends (`Box::leak`), as in Listing 2-2:
    // dropped, it would close its socket while the handler still writes
    // to it, and a SIGPIPE we catch, coming then, would make that write
    // raise SIGPIPE again, for ever.
    let signals = Signals::new([signal])
        .map_err(|err| format!("cannot watch for {name}: {err}"))?;
    let signals = Box::leak(Box::new(signals));
    // A parent's mask comes through `exec`: unblock our signal, and leave
    // the rest of the mask, the parent's choice, alone.
    unblock(signal)?;
    // Pending signals come through `exec` too: one our parent left pending
    // reached the handler at that unblock. It came before we said we were
    // waiting, and it is not ours to report.
    signals.pending().for_each(drop);

    // Only now is the handler in place: tell the world it is safe to send.
    let mut out = io::stdout();
    let pid = getpid();
    let short = name.trim_start_matches("SIG");
    writeln!(
        out,
        "Waiting for {name} ({signal}) as pid {pid}; try: kill -{short} {pid}"
    )?;
    for number in signals.forever().take(count.unwrap_or(usize::MAX)) {
        writeln!(out, "Got signal {number} at {}", asctime())?;
    }
    Ok(())
}

/// Unblocks `signal` in this thread. nix's `Signal` has no name for a
/// real-time signal, so the set is made with libc.
fn unblock(signal: c_int) -> nix::Result<()> {
    let mut set = MaybeUninit::<sigset_t>::uninit();
    // SAFETY: both calls write only to `set`. `sigemptyset` initialises
    // it, as `from_sigset_t_unchecked` requires, and a failure of either
    // returns before the set is read.
    let set = unsafe {
        Errno::result(sigemptyset(set.as_mut_ptr()))?;
        Errno::result(sigaddset(set.as_mut_ptr(), signal))?;
        SigSet::from_sigset_t_unchecked(set.assume_init())
    };
    set.thread_unblock()
}
// ANCHOR_END: run

/// The local time as Python's `time.asctime()` writes it.
fn asctime() -> String {
    Local::now().format("%a %b %e %H:%M:%S %Y").to_string()
}

/// Reads `SIGNAL [--count N]` from the command line.
fn parse_args() -> Result<(c_int, Option<usize>), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut signal, mut count) = (None, None);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Value(value) if signal.is_none() => {
                signal = Some(value.parse_with(parse_signal)?);
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    let signal = signal.ok_or("which signal?")?;
    Ok((signal, count))
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

// ANCHOR: parse_signal
/// Accepts a number (`10`), a name with or without its prefix (`USR1`,
/// `SIGUSR1`, `usr1`), or a real-time signal as `kill -l` names them
/// (`RTMIN`, `RTMIN+2`, `RTMAX-1`).
fn parse_signal(arg: &str) -> Result<c_int, String> {
    let unknown = || "no such signal".to_string();
    let real_time = SIGRTMIN()..=SIGRTMAX();
    let upper = arg.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    // A real-time name must name a real-time signal: `RTMAX-35` is no name
    // for SIGIO. Checked: the offset is the user's, `RTMIN+2147483647`.
    let real_time_only = |number: Option<c_int>| {
        number.filter(|n| real_time.contains(n)).ok_or_else(unknown)
    };
    let number = if let Ok(number) = arg.parse::<c_int>() {
        number
    } else if let Some(rest) = name.strip_prefix("RTMIN") {
        let offset = offset(rest, '+').ok_or_else(unknown)?;
        real_time_only(SIGRTMIN().checked_add(offset))?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        let offset = offset(rest, '-').ok_or_else(unknown)?;
        real_time_only(SIGRTMAX().checked_sub(offset))?
    } else {
        let signal: Signal =
            format!("SIG{name}").parse().map_err(|_| unknown())?;
        signal as c_int
    };
    if Signal::try_from(number).is_ok() || real_time.contains(&number) {
        Ok(number)
    } else {
        Err(unknown())
    }
}

/// The `2` of `RTMIN+2`: nothing at all, or `sign` and digits.
fn offset(rest: &str, sign: char) -> Option<c_int> {
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(sign)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `SIGUSR1` for 10; a real-time signal as `kill -l` names it, counted
/// from whichever end of the range is nearer (`SIGRTMIN+2`, `SIGRTMAX-1`).
fn signal_name(number: c_int) -> String {
    let (low, high) = (SIGRTMIN(), SIGRTMAX());
    match Signal::try_from(number) {
        Ok(signal) => signal.as_str().to_string(),
        Err(_) if number == low => "SIGRTMIN".to_string(),
        Err(_) if number == high => "SIGRTMAX".to_string(),
        Err(_) if number - low <= (high - low) / 2 => {
            format!("SIGRTMIN+{}", number - low)
        }
        Err(_) => format!("SIGRTMAX-{}", high - number),
    }
}
// ANCHOR_END: parse_signal
// ANCHOR_END: whole
