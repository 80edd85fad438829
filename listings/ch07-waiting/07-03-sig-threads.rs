// ANCHOR: whole
// Listing 7-3: which thread takes a signal sent to the process. Three
// worker threads idle while the program waits for SIGUSR1, and each time
// one comes it says which thread took it. The mode decides the masks:
//
//   handler        no thread blocks SIGUSR1; a handler reports its thread
//   mask-main      the main thread blocks SIGUSR1 after starting the workers
//   sigwait        the main thread blocks SIGUSR1 before starting any
//                  thread; a dedicated thread takes it with sigwait
//   sigwait-late   WRONG: the dedicated thread blocks SIGUSR1 only in
//                  itself, and the process dies of the first SIGUSR1
//
// `--count N` stops after N signals.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use nix::libc::c_int;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::{Pid, getpid, gettid};

const USAGE: &str =
    "usage: sig-threads handler|mask-main|sigwait|sigwait-late [--count N]";
const WORKERS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Handler,
    MaskMain,
    Sigwait,
    SigwaitLate,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-threads: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// The thread the handler last ran on, and how many times it ran.
static TAKEN_BY: AtomicI32 = AtomicI32::new(0);
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// Async-signal-safe: `gettid` is a bare system call.
extern "C" fn on_usr1(_signal: c_int) {
    TAKEN_BY.store(gettid().as_raw(), Ordering::SeqCst);
    TAKEN.fetch_add(1, Ordering::SeqCst);
}

/// The name of each thread, by thread id.
type Names = Arc<Mutex<Vec<(Pid, String)>>>;

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let (mode, count) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let usr1 = SigSet::from(Signal::SIGUSR1);
    let names: Names = Arc::new(Mutex::new(vec![(gettid(), "main".into())]));
    // A SIGUSR1 our parent blocked and left pending passes through `exec`:
    // nobody sent it, and it would be reported. Ignoring a signal throws
    // away one pending; then the default action again, for every mode.
    // SAFETY: neither action runs code of ours.
    unsafe { signal(Signal::SIGUSR1, SigHandler::SigIgn) }?;
    // SAFETY: as above.
    unsafe { signal(Signal::SIGUSR1, SigHandler::SigDfl) }?;
    if mode == Mode::Sigwait {
        // Before any thread exists: every thread inherits this mask.
        usr1.thread_block()?;
    }
    if matches!(mode, Mode::Handler | Mode::MaskMain) {
        let action = SigAction::new(
            SigHandler::Handler(on_usr1),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handler makes one system call and stores atomics.
        unsafe { sigaction(Signal::SIGUSR1, &action) }?;
    }
    if mode != Mode::Sigwait {
        // A parent's mask passes through `exec`, and every thread starts
        // from ours: unblocked here, it is unblocked in all of them.
        usr1.thread_unblock()?;
    }
    let started = Arc::new(Barrier::new(WORKERS + 1));
    for i in 1..=WORKERS {
        spawn_named(&format!("worker-{i}"), &names, &started, || {
            loop {
                thread::park();
            }
        })?;
    }
    started.wait();
    let (taken_tx, taken_rx) = mpsc::channel();
    if matches!(mode, Mode::Sigwait | Mode::SigwaitLate) {
        let late = mode == Mode::SigwaitLate;
        let ready = Arc::new(Barrier::new(2));
        spawn_named("signals", &names, &ready, move || {
            if late {
                // Too late and too local: the other threads still have
                // SIGUSR1 unblocked, and its default action ends the
                // process.
                usr1.thread_block().expect("pthread_sigmask");
            }
            while usr1.wait().is_ok() {
                if taken_tx.send(gettid()).is_err() {
                    break;
                }
            }
        })?;
        ready.wait();
    }
    if mode == Mode::MaskMain {
        usr1.thread_block()?; // In the main thread only.
    }
    let (mut out, pid) = (io::stdout(), getpid());
    let threads = names.lock().map_err(|_| "poisoned")?.len();
    writeln!(out, "{threads} threads in pid {pid}; try: kill -USR1 {pid}")?;

    for n in 1..=count.unwrap_or(u64::MAX) {
        let (tid, how) = if matches!(mode, Mode::Handler | Mode::MaskMain) {
            while TAKEN.load(Ordering::SeqCst) < n {
                thread::sleep(Duration::from_millis(10));
            }
            (
                Pid::from_raw(TAKEN_BY.load(Ordering::SeqCst)),
                "ran the handler",
            )
        } else {
            (taken_rx.recv()?, "took it with sigwait")
        };
        let names = names.lock().map_err(|_| "poisoned")?;
        let name = names.iter().find(|(t, _)| *t == tid).map(|(_, n)| n);
        let name = name.map_or("an unknown thread", String::as_str);
        writeln!(out, "SIGUSR1 #{n}: thread {name} {how}")?;
    }
    Ok(())
}
// ANCHOR_END: run

/// Starts a thread that records its id and name, meets the others at
/// `started`, and runs `body`.
fn spawn_named(
    name: &str,
    names: &Names,
    started: &Arc<Barrier>,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let (names, started) = (Arc::clone(names), Arc::clone(started));
    let own = name.to_string();
    thread::Builder::new().name(own.clone()).spawn(move || {
        if let Ok(mut names) = names.lock() {
            names.push((gettid(), own));
        }
        started.wait();
        body();
    })?;
    Ok(())
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

/// Reads `MODE [--count N]` from the command line.
fn parse_args() -> Result<(Mode, Option<u64>), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut mode, mut count) = (None, None);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Value(value) if mode.is_none() => {
                mode = Some(match value.string()?.as_str() {
                    "handler" => Mode::Handler,
                    "mask-main" => Mode::MaskMain,
                    "sigwait" => Mode::Sigwait,
                    "sigwait-late" => Mode::SigwaitLate,
                    other => {
                        return Err(format!(
                            "unknown mode '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                });
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok((mode.ok_or("which mode?")?, count))
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
