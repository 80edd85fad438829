// ANCHOR: whole
// Listing 5-6: what the other two fields of `sigaction` do. Every listing
// so far installed its handler with `SigSet::empty()` for the mask and
// `SA_RESTART` or nothing for the flags; this one changes them and shows
// the difference, with handlers that note when they begin and end.
//
//   sa_mask       which other signals wait while the handler runs
//   SA_NODEFER    the handler's own signal does not wait: handlers nest
//   SA_RESETHAND  the handler runs once, then the default action is back
//
// Last, it reads back what glibc's `signal()` installs. The signals are
// sent with `raise`, to this thread, so that each is delivered before
// `raise` returns, unless it is blocked.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use nix::libc::{self, c_int};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction, signal,
};

const USAGE: &str = "usage: sig-action";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-action: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: handlers
/// What the handlers did, in order: `A` and `a` for the start and end of
/// SIGUSR1's, `B` for SIGUSR2's. Atomics only: this is written from
/// handlers.
static EVENTS: [AtomicU8; 16] = [const { AtomicU8::new(0) }; 16];
static LEN: AtomicUsize = AtomicUsize::new(0);
/// Whether SIGUSR1's handler raises SIGUSR2 or SIGUSR1 once, inside.
static RAISE_USR2: AtomicBool = AtomicBool::new(false);
static RAISE_AGAIN: AtomicBool = AtomicBool::new(false);

fn note(event: u8) {
    let i = LEN.fetch_add(1, Ordering::SeqCst);
    if let Some(slot) = EVENTS.get(i) {
        slot.store(event, Ordering::SeqCst);
    }
}

/// Async-signal-safe: atomics, and `raise`, which signal-safety(7) lists.
extern "C" fn on_usr1(_: c_int) {
    note(b'A');
    if RAISE_USR2.load(Ordering::SeqCst) {
        let _ = raise(Signal::SIGUSR2);
    }
    if RAISE_AGAIN.swap(false, Ordering::SeqCst) {
        let _ = raise(Signal::SIGUSR1);
    }
    note(b'a');
}

extern "C" fn on_usr2(_: c_int) {
    note(b'B');
}
// ANCHOR_END: handlers

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let (mut out, usr2) = (io::stdout(), SigSet::from(Signal::SIGUSR2));
    install(Signal::SIGUSR2, SaFlags::empty(), SigSet::empty())?;

    // SIGUSR1's handler raises SIGUSR2: at once, or once it has returned?
    RAISE_USR2.store(true, Ordering::SeqCst);
    install(Signal::SIGUSR1, SaFlags::empty(), SigSet::empty())?;
    // Unblocked, now that both have handlers: a parent's mask passes
    // through `exec`, and a blocked signal would only wait (Chapter 12).
    SigSet::from_iter([Signal::SIGUSR1, Signal::SIGUSR2]).thread_unblock()?;
    writeln!(out, "{:<19} {}", "sa_mask empty:", raise_usr1()?)?;
    install(Signal::SIGUSR1, SaFlags::empty(), usr2)?;
    writeln!(out, "{:<19} {}", "sa_mask [SIGUSR2]:", raise_usr1()?)?;
    RAISE_USR2.store(false, Ordering::SeqCst);

    // SIGUSR1's handler raises SIGUSR1 once more.
    install(Signal::SIGUSR1, SaFlags::empty(), SigSet::empty())?;
    RAISE_AGAIN.store(true, Ordering::SeqCst);
    writeln!(out, "{:<19} {}", "no SA_NODEFER:", raise_usr1()?)?;
    install(Signal::SIGUSR1, SaFlags::SA_NODEFER, SigSet::empty())?;
    RAISE_AGAIN.store(true, Ordering::SeqCst);
    writeln!(out, "{:<19} {}", "SA_NODEFER:", raise_usr1()?)?;

    install(Signal::SIGUSR1, SaFlags::SA_RESETHAND, SigSet::empty())?;
    let events = raise_usr1()?;
    let after = describe(&installed(Signal::SIGUSR1)?);
    writeln!(out, "{:<19} {events}; then {after}", "SA_RESETHAND:")?;

    // glibc's signal(), which nix's `signal` calls.
    // SAFETY: the handler only touches atomics and calls `raise`.
    unsafe { signal(Signal::SIGUSR1, SigHandler::Handler(on_usr1)) }?;
    let glibc = describe(&installed(Signal::SIGUSR1)?);
    writeln!(out, "{:<19} {glibc}", "signal() (glibc):")?;
    Ok(())
}

/// Installs `on_usr1` or `on_usr2` for `signal`, with `flags` and `mask`.
fn install(signal: Signal, flags: SaFlags, mask: SigSet) -> nix::Result<()> {
    let handler = match signal {
        Signal::SIGUSR1 => on_usr1,
        _ => on_usr2,
    };
    let action = SigAction::new(SigHandler::Handler(handler), flags, mask);
    // SAFETY: the handlers only touch atomics and call `raise`.
    unsafe { sigaction(signal, &action) }.map(drop)
}

/// Raises SIGUSR1, and says what the handlers did.
fn raise_usr1() -> nix::Result<String> {
    LEN.store(0, Ordering::SeqCst);
    raise(Signal::SIGUSR1)?;
    let len = LEN.load(Ordering::SeqCst).min(EVENTS.len());
    let events: Vec<&str> = EVENTS[..len]
        .iter()
        .map(|e| match e.load(Ordering::SeqCst) {
            b'A' => "USR1 begins",
            b'a' => "USR1 ends",
            _ => "USR2 runs",
        })
        .collect();
    Ok(events.join(", "))
}
// ANCHOR_END: run

// ANCHOR: read_back
/// The action the kernel has for `signal`: `sigaction` with no new one.
fn installed(signal: Signal) -> nix::Result<libc::sigaction> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: a null new action only reads the current one into `old`.
    let rc = unsafe {
        libc::sigaction(signal as c_int, std::ptr::null(), old.as_mut_ptr())
    };
    nix::errno::Errno::result(rc)?;
    // SAFETY: `sigaction` succeeded, so it filled `old`.
    Ok(unsafe { old.assume_init() })
}

/// "SIG_DFL", or the flags and the mask of a handler.
fn describe(action: &libc::sigaction) -> String {
    if action.sa_sigaction == libc::SIG_DFL {
        return "SIG_DFL".into();
    }
    let flags: Vec<&str> = [
        (libc::SA_RESTART, "SA_RESTART"),
        (libc::SA_NODEFER, "SA_NODEFER"),
        (libc::SA_RESETHAND, "SA_RESETHAND"),
        (libc::SA_SIGINFO, "SA_SIGINFO"),
    ]
    .into_iter()
    .filter(|(flag, _)| action.sa_flags & flag != 0)
    .map(|(_, name)| name)
    .collect();
    // SAFETY: `sa_mask` is a valid, filled sigset_t.
    let masked: Vec<&str> = [Signal::SIGUSR1, Signal::SIGUSR2]
        .into_iter()
        .filter(
            |&s| unsafe { libc::sigismember(&action.sa_mask, s as c_int) } == 1,
        )
        .map(Signal::as_str)
        .collect();
    format!("flags {}; sa_mask [{}]", flags.join("|"), masked.join(" "))
}
// ANCHOR_END: read_back

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
