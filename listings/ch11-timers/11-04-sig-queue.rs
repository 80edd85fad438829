// ANCHOR: whole
// Listing 11-4: who sent a signal, and what came with it. Every signal
// arrives with a `siginfo_t` that says how it was sent (`kill`, `sigqueue`,
// the kernel, a timer), by which process and user, and, for `sigqueue`, a
// value. signal-hook's iterator hands it over with the `WithRawSiginfo`
// exfiltrator. It waits for SIGUSR1 and SIGRTMIN; `--count N` stops after
// N signals.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};

use nix::libc::{self, siginfo_t};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::getpid;
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithRawSiginfo;

const USAGE: &str = "usage: sig-queue [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-queue: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let rtmin = libc::SIGRTMIN();
    let wanted = [libc::SIGUSR1, rtmin];
    // Blocked while signal-hook registers them (Chapter 6): one that came
    // before its handler knew what to do would be lost.
    block(&wanted)?;
    // Never dropped, even after `--count` signals: signal-hook's actions
    // would outlive its socket for a moment, and a signal then would raise
    // SIGPIPE, at its default here (Listing 6-2).
    let signals =
        Box::leak(Box::new(SignalsInfo::<WithRawSiginfo>::new(wanted)?));
    // Unblocked once the handlers are in: a parent's mask passes through
    // `exec` (Chapter 12), and blocked, they would never reach the
    // handler. One that came meanwhile arrives now.
    unblock(&wanted)?;
    let pid = getpid();
    let mut out = io::stdout();
    writeln!(out, "Waiting for SIGUSR1 and SIGRTMIN as pid {pid}")?;
    for info in signals.forever().take(count.unwrap_or(usize::MAX)) {
        let name = if info.si_signo == rtmin {
            "SIGRTMIN"
        } else {
            "SIGUSR1"
        };
        writeln!(out, "{name}: {}", describe(&info))?;
    }
    Ok(())
}

/// How a signal was sent, by whom, and with what value, from its siginfo.
fn describe(info: &siginfo_t) -> String {
    // SAFETY: for these codes the kernel fills in the sender's pid and
    // uid, and for SI_QUEUE the value; the fields are read only then.
    unsafe {
        let sender =
            || format!("pid {} (uid {})", info.si_pid(), info.si_uid());
        match info.si_code {
            libc::SI_USER => format!("sent with kill by {}", sender()),
            libc::SI_QUEUE => {
                // An int, as `/bin/kill -q` sends it: the first bytes of
                // the union, on every machine. (Read as the whole pointer,
                // -1 came out as 4294967295 on x86-64.)
                let value = info.si_value();
                let value = *(&raw const value).cast::<libc::c_int>();
                format!("sent with sigqueue by {}, value {value}", sender())
            }
            libc::SI_TKILL => format!("sent with tgkill by {}", sender()),
            libc::SI_KERNEL => "sent by the kernel".to_string(),
            code => format!("sent some other way (si_code {code})"),
        }
    }
}
// ANCHOR_END: run

/// Blocks `signals` in this thread.
fn block(signals: &[libc::c_int]) -> io::Result<()> {
    change_mask(libc::SIG_BLOCK, signals)
}

/// Unblocks `signals` in this thread.
fn unblock(signals: &[libc::c_int]) -> io::Result<()> {
    change_mask(libc::SIG_UNBLOCK, signals)
}

/// Blocks or unblocks (`how`) `signals` in this thread. nix's
/// `SigSet::add` takes only its `Signal` enum, which has no real-time
/// signals, so the set is built with libc.
fn change_mask(how: libc::c_int, signals: &[libc::c_int]) -> io::Result<()> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the set before anything reads it;
    // every number is a valid signal.
    let rc = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &signal in signals {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut())
    };
    match rc {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
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

/// Reads `[--count N]` from the command line.
fn parse_args() -> Result<Option<usize>, lexopt::Error> {
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
