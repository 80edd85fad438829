// ANCHOR: whole
// Listing 12-5: why signal tests interfere under `cargo test`. libtest
// runs the tests of a binary as threads of one process, and signal
// dispositions belong to the process. This program runs two small tests
// the same way, on two threads:
//
//   flag_is_set_by_sigusr1    registers a signal-hook flag for SIGUSR1,
//                             raises SIGUSR1 and expects the flag
//   sigusr1_can_be_ignored    sets SIGUSR1 to "ignore", raises it, and
//                             puts the default action back
//
// Each passes alone. Together, the second replaces the first one's
// handler, and when the first raises SIGUSR1 the whole process dies of it.
// (A barrier makes that interleaving happen every time; the scheduler
// makes it happen sometimes.) With `--isolate` each test runs in a process
// of its own, like this book's tests, or cargo-nextest.

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, raise, signal};
use signal_hook::consts::SIGUSR1;
use signal_hook::flag;

const USAGE: &str = "usage: sig-test-threads [--isolate | --case NAME]";
const CASES: [&str; 2] = ["flag_is_set_by_sigusr1", "sigusr1_can_be_ignored"];

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-test-threads: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: cases
/// Two points at which the threaded run lines the tests up.
type Steps = Option<Arc<Barrier>>;

fn meet(steps: &Steps) {
    if let Some(barrier) = steps {
        barrier.wait();
    }
}

fn flag_is_set_by_sigusr1(steps: &Steps) -> Result<(), String> {
    let flag = Arc::new(AtomicBool::new(false));
    flag::register(SIGUSR1, Arc::clone(&flag)).map_err(|e| e.to_string())?;
    meet(steps); // Registered.
    meet(steps); // The other test has done its work.
    raise(Signal::SIGUSR1).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(1);
    while !flag.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            return Err("the flag was not set within 1 s".into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn sigusr1_can_be_ignored(steps: &Steps) -> Result<(), String> {
    meet(steps);
    // SAFETY: ignoring and the default action run no code of ours.
    unsafe {
        signal(Signal::SIGUSR1, SigHandler::SigIgn)
            .map_err(|e| e.to_string())?;
        raise(Signal::SIGUSR1).map_err(|e| e.to_string())?; // Survives.
        signal(Signal::SIGUSR1, SigHandler::SigDfl)
            .map_err(|e| e.to_string())?;
    }
    meet(steps);
    Ok(())
}
// ANCHOR_END: cases

fn run_case(name: &str, steps: &Steps) -> Result<(), String> {
    match name {
        "flag_is_set_by_sigusr1" => flag_is_set_by_sigusr1(steps),
        "sigusr1_can_be_ignored" => sigusr1_can_be_ignored(steps),
        other => Err(format!("no test named '{}'", other.escape_debug())),
    }
}

// ANCHOR: run
fn run() -> Result<ExitCode, Box<dyn Error>> {
    restore_sigpipe()?;
    let how = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // The tests raise SIGUSR1 and expect it delivered. A parent's mask
    // passes through `exec`: unblocked here, before any thread starts, and
    // so in every thread and every `--case` child.
    SigSet::from(Signal::SIGUSR1).thread_unblock()?;
    if let How::Case(name) = &how {
        // One test, alone in this process.
        return Ok(match run_case(name, &None) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                let line = format!("{err}\n");
                let _ = io::stderr().write_all(line.as_bytes());
                ExitCode::FAILURE
            }
        });
    }
    let mut out = io::stdout();
    writeln!(out, "running {} tests", CASES.len())?;
    let mut failed = 0;
    if let How::Isolate = how {
        default_sigchld()?; // For `status`: it may have come ignored.
        let me = std::env::current_exe()?;
        for name in CASES {
            let status = Command::new(&me).args(["--case", name]).status()?;
            let ok = status.success();
            writeln!(
                out,
                "test {name} ... {}",
                if ok { "ok" } else { "FAILED" }
            )?;
            failed += usize::from(!ok);
        }
    } else {
        let steps = Some(Arc::new(Barrier::new(CASES.len())));
        let threads: Vec<_> = CASES
            .iter()
            .map(|&name| {
                let steps = steps.clone();
                thread::Builder::new()
                    .spawn(move || (name, run_case(name, &steps)))
            })
            .collect::<io::Result<_>>()
            .map_err(|err| format!("cannot start a thread: {err}"))?;
        for thread in threads {
            let (name, result) =
                thread.join().map_err(|_| "a test panicked")?;
            writeln!(
                out,
                "test {name} ... {}",
                if result.is_ok() { "ok" } else { "FAILED" }
            )?;
            failed += usize::from(result.is_err());
        }
    }
    writeln!(out, "{} passed; {failed} failed", CASES.len() - failed)?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
// ANCHOR_END: run

enum How {
    Threads,
    Isolate,
    Case(String),
}

/// Gives SIGCHLD its default action. A parent may have left it ignored,
/// which passes through `exec`; then the kernel reaps our children itself,
/// and waiting for one fails with ECHILD (Listing 12-4).
fn default_sigchld() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map(drop)
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

/// Reads `[--isolate | --case NAME]` from the command line.
fn parse_args() -> Result<How, lexopt::Error> {
    use lexopt::prelude::*;
    let mut how = How::Threads;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("isolate") => how = How::Isolate,
            Long("case") => {
                let name = args.value()?.string()?;
                // Checked here, where a mistake is the user's and is
                // reported as one, not as a failed test.
                if !CASES.contains(&name.as_str()) {
                    let name = name.escape_debug();
                    return Err(format!("no test named '{name}'").into());
                }
                how = How::Case(name);
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(how)
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
