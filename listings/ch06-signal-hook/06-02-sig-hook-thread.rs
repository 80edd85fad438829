// ANCHOR: whole
// Listing 6-2: signal-hook's iterator on a thread of its own. The signal
// thread reports SIGHUP and SIGUSR1 and passes SIGTERM and SIGINT on to
// the main thread, which stops; then the main thread closes the iterator
// through its `Handle`, and the signal thread's loop ends. With
// `--no-close` it forgets that step, and waits for the signal thread
// forever. `--count N` stops after N ticks by itself. Started with
// SIGINT ignored (a script's `&` job), it leaves it so.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::getpid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: sig-hook-thread [--count N] [--no-close]";
const TICK: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-hook-thread: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let (count, close) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let mut wanted = vec![SIGHUP, SIGUSR1];
    wanted.extend(stop_signals()?);
    // Never dropped, not even by a thread the system refuses: signal-hook's
    // handlers stay installed while a `Handle` lives, and wake the iterator
    // through a socket pair. Closed, a signal would make that write raise
    // SIGPIPE, which now has its default action (Listing 5-4 keeps its pipe
    // for good too). Blocked while it registers them, so that none comes
    // before signal-hook knows what to do with it.
    block(&wanted)?;
    let signals = Signals::new(&wanted)
        .map_err(|err| format!("cannot watch for signals: {err}"))?;
    let signals = Box::leak(Box::new(signals));
    // Unblocked once the handlers are in: a parent's mask passes through
    // `exec`, and a blocked SIGHUP would never arrive; one that is already
    // pending, or came while they went in, arrives now, and is handled.
    unblock(&wanted)?;
    let handle = signals.handle();
    let ticks = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = mpsc::channel();

    let ticks_seen = Arc::clone(&ticks);
    let signal_thread = thread::Builder::new()
        .spawn(move || -> io::Result<()> {
            let mut out = io::stdout();
            // Ends when the iterator is closed through its handle, or a
            // write fails.
            for number in signals.forever() {
                match number {
                    SIGHUP => writeln!(out, "Signal thread: SIGHUP, would reload")?,
                    SIGUSR1 => {
                        let n = ticks_seen.load(Ordering::SeqCst);
                        writeln!(
                            out,
                            "Signal thread: SIGUSR1, ticks so far: {n} (measured)"
                        )?;
                    }
                    _ => {
                        // The main thread may be gone already; nothing to do.
                        let _ = stop_tx.send(number);
                    }
                }
            }
            writeln!(out, "Signal thread: iterator closed, leaving")
        })
        .map_err(|err| format!("cannot start a thread: {err}"))?;
    let (mut out, pid) = (io::stdout(), getpid());
    writeln!(out, "Working as pid {pid}; try: kill -HUP {pid}")?;

    while count.is_none_or(|n| ticks.load(Ordering::SeqCst) < n) {
        match stop_rx.recv_timeout(TICK) {
            Ok(number) => {
                writeln!(out, "Main thread: stopping on signal {number}")?;
                break;
            }
            Err(RecvTimeoutError::Timeout) => {
                ticks.fetch_add(1, Ordering::SeqCst);
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Only a failed write ends the signal thread this soon,
                // and its iterator with it: nothing is left to close.
                signal_thread
                    .join()
                    .map_err(|_| "the signal thread panicked")??;
                return Err("the signal thread ended early".into());
            }
        }
    }
    if close {
        writeln!(out, "Main thread: closing the iterator, joining its thread")?;
        handle.close();
    } else {
        writeln!(out, "Main thread: joining the signal thread")?;
    }
    signal_thread
        .join()
        .map_err(|_| "the signal thread panicked")??;
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

/// Blocks `numbers` while signal-hook registers them: it installs its
/// handler in the kernel before it records what the handler is to do, and
/// a signal in between would run it for nothing, the default action
/// already gone. Blocked, the signal waits, pending, for `unblock`.
fn block(numbers: &[i32]) -> io::Result<()> {
    let mut set = SigSet::empty();
    for &number in numbers {
        set.add(Signal::try_from(number)?);
    }
    Ok(set.thread_block()?)
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

/// Reads `[--count N] [--no-close]` from the command line.
fn parse_args() -> Result<(Option<u64>, bool), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut count, mut close) = (None, true);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Long("no-close") => close = false,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok((count, close))
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
