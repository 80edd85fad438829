// ANCHOR: whole
// Listing 28-1: how most tokio programs stop: wait for Ctrl-C, then clean
// up (`--cleanup-secs`, 3 by default) and exit. It has four flaws, which
// the chapter shows one by one: SIGTERM, what `kill`, systemd and
// `docker stop` send, ends it at once without any clean-up (or, as PID 1
// of a container, does nothing at all); a second Ctrl-C during the
// clean-up does nothing either; tokio's handler for SIGINT stays
// installed after the program has stopped listening; and under a parent
// that left SIGINT blocked, Ctrl-C stays pending and is never heard
// (Listing 28-2 blocks its stop signals before it builds the runtime, and
// unblocks them on the main thread once their streams exist). Our own
// output may go away: SIGPIPE stays ignored, and what we cannot print is
// not printed, so that the clean-up still runs.

use std::error::Error;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::getpid;
use tokio::runtime::{Builder, Runtime};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: async-ctrl-c [--cleanup-secs N]";

// ANCHOR: runtime
fn main() -> ExitCode {
    // Before the runtime starts its threads, which inherit this thread's
    // mask of blocked signals.
    let ready = unblock_sigpipe().map_err(io::Error::from);
    let ran = match ready.and_then(|()| runtime()) {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => Err(format!("cannot start tokio's runtime: {err}").into()),
    };
    let ran = ran.and_then(|()| Ok(unsaid()?));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr is a closed pipe;
            // and one write, so that no other writer splits the line.
            let line = format!("async-ctrl-c: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// The runtime that `#[tokio::main]` would build, multi-threaded, but with an
/// error where the macro panics. As it starts, tokio 1.54 opens six
/// descriptors on Linux: `epoll` and a copy of it, an `eventfd`, and its
/// signal driver's socket pair and a copy of one end. It makes that pair with
/// `expect`, so with too few descriptors left `build` panics instead of
/// failing. Six are taken first, as three socket pairs, and given back.
fn runtime() -> io::Result<Runtime> {
    let room = [
        UnixStream::pair()?,
        UnixStream::pair()?,
        UnixStream::pair()?,
    ];
    drop(room);
    let mut builder = Builder::new_multi_thread();
    if let Some(workers) = worker_threads()? {
        builder.worker_threads(workers);
    }
    // `build` also panics when the system refuses it a worker thread
    // (`ulimit -u`), and then waits, forever, for a worker it did start.
    // No check can come first: say why in one line and exit, at once.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|panic| {
        let payload = panic.payload();
        let why = (payload.downcast_ref::<String>().map(String::as_str))
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic in tokio");
        // One write, so that no other writer lands inside the line.
        let line =
            format!("async-ctrl-c: cannot start tokio's runtime: {why}\n");
        let _ = io::stderr().write_all(line.as_bytes());
        process::exit(1);
    }));
    let runtime = builder.enable_all().build();
    std::panic::set_hook(default_hook);
    runtime
}

/// The number of workers that `TOKIO_WORKER_THREADS` asks for, if it is
/// set. `build` reads it too when no number is given, but panics if it is
/// not a whole number above zero.
fn worker_threads() -> io::Result<Option<usize>> {
    let Some(value) = std::env::var_os("TOKIO_WORKER_THREADS") else {
        return Ok(None);
    };
    match value.to_str().and_then(|value| value.parse().ok()) {
        Some(workers) if workers > 0 => Ok(Some(workers)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TOKIO_WORKER_THREADS is {value:?}, not a number above 0"),
        )),
    }
}
// ANCHOR_END: runtime

// ANCHOR: run
async fn run() -> Result<(), Box<dyn Error>> {
    let cleanup = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // What `tokio::signal::ctrl_c()` does, in two steps: install the
    // handler (now, before we say we are ready), then wait.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let pid = getpid();
    if !ready(format!("Working as pid {pid}; stop me with Ctrl-C"))? {
        return Ok(());
    }

    interrupt.recv().await;
    // Nobody listens for SIGINT any more.
    drop(interrupt);
    let secs = cleanup.as_secs();
    say(format!("Got Ctrl-C: cleaning up for {secs} s"));
    tokio::time::sleep(cleanup).await;
    say("Clean exit".to_string());
    Ok(())
}
// ANCHOR_END: run

/// Unblocks SIGPIPE, which stays ignored, as Rust set it before `main`:
/// a reader of our output that goes away must not end us before the
/// clean-up (`say`). A parent that blocked it passed its mask on through
/// `exec`, to every thread the runtime starts and every program they
/// start: std's `Command` gives a child SIGPIPE's default action back,
/// but leaves the mask alone, and blocked, a filter's SIGPIPE only waits.
fn unblock_sigpipe() -> nix::Result<()> {
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Prints the ready line. A reader gone already, as under `| head -c0`,
/// gives `false`: nobody will see what we do, so there is nothing to wait
/// for. Any other failure, such as a full disk, is an error.
fn ready(line: String) -> io::Result<bool> {
    match writeln!(io::stdout(), "{line}") {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err),
    }
}

/// Prints a line, if anyone still reads our output: without a reader we
/// go on, since the clean-up matters more than the report. A write that
/// fails otherwise (a full disk) is kept for `main` to report, at the end.
fn say(line: String) {
    match writeln!(io::stdout(), "{line}") {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            let mut unsaid = UNSAID.lock().unwrap_or_else(|e| e.into_inner());
            unsaid.get_or_insert(err);
        }
        _ => {}
    }
}

/// The first failure of `say` that was not a reader gone away.
static UNSAID: Mutex<Option<io::Error>> = Mutex::new(None);

/// Fails with the first failure of `say` that was not a reader gone away.
fn unsaid() -> io::Result<()> {
    let mut unsaid = UNSAID.lock().unwrap_or_else(|e| e.into_inner());
    unsaid.take().map_or(Ok(()), Err)
}

/// Reads `[--cleanup-secs N]`.
fn parse_args() -> Result<Duration, lexopt::Error> {
    use lexopt::prelude::*;
    let mut cleanup = Duration::from_secs(3);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("cleanup-secs") => {
                cleanup = Duration::from_secs(args.value()?.parse()?);
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(cleanup)
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
