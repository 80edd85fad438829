// ANCHOR: whole
// Listing 5-3: the second safe thing a handler may do: `write(2)` bytes it
// already has. The handler reports each SIGUSR1 or SIGUSR2 itself, at
// once, without `format!` or `println!`: it builds the line in an array on
// its own stack and hands it to the kernel in one `write`. The main loop
// only counts. `--count N` stops after N signals.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::libc::{self, c_int};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::getpid;

const USAGE: &str = "usage: sig-write [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-write: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// How many signals the handler has reported.
static SEEN: AtomicU64 = AtomicU64::new(0);

// ANCHOR: handler
/// Writes `Handler: got signal N` to standard output. Everything it uses
/// is async-signal-safe: an array on its own stack, integer arithmetic,
/// an atomic, and the system call `write`.
extern "C" fn on_signal(signal: c_int) {
    const PREFIX: &[u8] = b"Handler: got signal ";
    let saved = Errno::last_raw(); // See Listing 5-5 for why.
    let mut line = [0u8; 32];
    line[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut len = PREFIX.len();
    // Signal numbers have one or two digits.
    let n = signal.unsigned_abs() % 100;
    if n >= 10 {
        line[len] = b'0' + (n / 10) as u8;
        len += 1;
    }
    line[len] = b'0' + (n % 10) as u8;
    line[len + 1] = b'\n';
    len += 2;
    // SAFETY: `line` holds `len` initialised bytes. A failed write loses
    // the report, and there is nothing safe to do about that in here.
    unsafe { libc::write(libc::STDOUT_FILENO, line.as_ptr().cast(), len) };
    SEEN.fetch_add(1, Ordering::SeqCst);
    Errno::set_raw(saved);
}
// ANCHOR_END: handler

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let caught = [Signal::SIGUSR1, Signal::SIGUSR2];
    for one in caught {
        // SAFETY: the handler only does async-signal-safe work.
        unsafe { sigaction(one, &action) }?;
    }
    // A parent's mask passes through `exec`: blocked, they would never
    // reach the handler (Chapter 12).
    SigSet::from_iter(caught).thread_unblock()?;
    let (mut out, pid) = (io::stdout(), getpid());
    writeln!(out, "Waiting as pid {pid}; try: kill -USR1 {pid}")?;
    while count.is_none_or(|n| SEEN.load(Ordering::SeqCst) < n) {
        thread::sleep(Duration::from_millis(50));
    }
    writeln!(
        out,
        "Main loop: {} signals seen",
        SEEN.load(Ordering::SeqCst)
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
