// ANCHOR: whole
// Listing 29-2: five more of tokio's tools for a shutdown, each in a short
// scene that prints what it did:
//
// - child tokens: cancelling a child leaves its parent alone; cancelling
//   the parent cancels every child;
// - a drop guard: a token cancelled however the code that holds the guard
//   ends, an early return included;
// - `JoinSet`: dropping it aborts its tasks, where dropping a
//   `TaskTracker` leaves them running;
// - `TaskTracker::track_future`: a future counted without being spawned;
// - `Runtime::shutdown_timeout`: a runtime that stops waiting for a
//   blocking task that never returns.

use std::error::Error;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const USAGE: &str = "usage: async-shutdown-tools";

/// Longer than any run of this program: a task that waits this long is a
/// task that would never end by itself.
const FOREVER: Duration = Duration::from_secs(3600);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output any more: that ends it.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            let line = format!("async-shutdown-tools: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let runtime = runtime()?;
    let shown = runtime.block_on(async {
        child_tokens()?;
        drop_guard().await?;
        join_set().await?;
        track_future().await
    });
    runtime.shutdown_background();
    shown?;
    shutdown_timeout()?;
    Ok(())
}

/// A multi-threaded runtime, with an error where `build` would panic: the six
/// descriptors tokio opens as it starts are taken first, and given back,
/// since it makes its signal socket pair with `expect` (Chapter 28).
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
    exit_on_panic("cannot start tokio's runtime", || {
        builder.enable_all().build()
    })
}

/// Runs `call`, which may panic where the system refuses tokio a thread;
/// no check can come first. Says why in one line, after `what`, and exits
/// at once: unwinding through a runtime may wait for ever.
fn exit_on_panic<T>(what: &'static str, call: impl FnOnce() -> T) -> T {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        let payload = panic.payload();
        let why = (payload.downcast_ref::<String>().map(String::as_str))
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic in tokio");
        // One write, so that no other writer lands inside the line.
        let line = format!("async-shutdown-tools: {what}: {why}\n");
        let _ = io::stderr().write_all(line.as_bytes());
        process::exit(1);
    }));
    let done = call();
    std::panic::set_hook(default_hook);
    done
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

// ANCHOR: child_tokens
/// A token per connection, made from the server's: a connection can be
/// stopped alone, and stopping the server stops them all.
fn child_tokens() -> io::Result<()> {
    let server = CancellationToken::new();
    let connection = server.child_token();
    let request = connection.child_token();
    request.cancel();
    say(format!(
        "child tokens: one request cancelled; its connection {}, the \
         server {}",
        state(&connection),
        state(&server)
    ))?;
    server.cancel();
    say(format!(
        "child tokens: the server cancelled; its connection {}, and a \
         child made now {}",
        state(&connection),
        state(&server.child_token())
    ))
}

fn state(token: &CancellationToken) -> &'static str {
    if token.is_cancelled() {
        "is cancelled"
    } else {
        "goes on"
    }
}
// ANCHOR_END: child_tokens

// ANCHOR: drop_guard
/// An accept loop that fails: its drop guard cancels the token as it
/// leaves, so the connections hear of it and end.
async fn drop_guard() -> io::Result<()> {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    for _ in 0..3 {
        let stop = stop.clone();
        connections.spawn(async move { stop.cancelled().await });
    }
    let guard = stop.clone().drop_guard();
    let failed = accept_loop(guard).await;
    connections.close();
    let ended = timeout(Duration::from_secs(10), connections.wait()).await;
    say(format!(
        "drop guard: the accept loop returned {failed:?}; the token {}, \
         and the 3 connections {}",
        state(&stop),
        if ended.is_ok() { "ended" } else { "run on" }
    ))
}

/// Stands in for an accept loop that meets an error and returns early
/// with `?`, dropping the guard on the way out.
async fn accept_loop(
    _guard: tokio_util::sync::DropGuard,
) -> Result<(), String> {
    let accepted: Result<(), String> = Err("out of descriptors".into());
    accepted?;
    Ok(())
}
// ANCHOR_END: drop_guard

// ANCHOR: join_set
/// Three tasks in a `JoinSet`, and three in a `TaskTracker`, each
/// holding a clone of an `Arc`: its count says how many tasks live.
async fn join_set() -> io::Result<()> {
    let in_set = Arc::new(());
    let mut set = JoinSet::new();
    let in_tracker = Arc::new(());
    let tracker = TaskTracker::new();
    for _ in 0..3 {
        let alive = Arc::clone(&in_set);
        set.spawn(async move {
            let _alive = alive;
            sleep(FOREVER).await;
        });
        let alive = Arc::clone(&in_tracker);
        tracker.spawn(async move {
            let _alive = alive;
            sleep(FOREVER).await;
        });
    }
    drop(set);
    drop(tracker);
    // An aborted task is dropped by the runtime, soon but not at once.
    let waited = timeout(Duration::from_secs(10), async {
        while Arc::strong_count(&in_set) > 1 {
            sleep(Duration::from_millis(1)).await;
        }
    });
    let _ = waited.await;
    say(format!(
        "JoinSet: dropped, {} of its 3 tasks left; TaskTracker: dropped, \
         {} of its 3 tasks left",
        Arc::strong_count(&in_set) - 1,
        Arc::strong_count(&in_tracker) - 1
    ))
}
// ANCHOR_END: join_set

// ANCHOR: track_future
/// A future that the drain must wait for, although nobody spawned it:
/// here, one that ends when a message comes.
async fn track_future() -> io::Result<()> {
    let tracker = TaskTracker::new();
    let (done, message) = oneshot::channel::<()>();
    let accept_loop = tracker.track_future(async move {
        let _ = message.await;
    });
    tracker.close();
    let early = timeout(Duration::from_millis(100), tracker.wait()).await;
    say(format!(
        "track_future: {} future tracked, not spawned; closed, the \
         tracker {} for it",
        tracker.len(),
        if early.is_err() {
            "waits"
        } else {
            "does not wait"
        }
    ))?;
    let _ = done.send(());
    accept_loop.await;
    tracker.wait().await;
    say(format!(
        "track_future: once it ended, {} tracked, and wait returned",
        tracker.len()
    ))
}
// ANCHOR_END: track_future

// ANCHOR: shutdown_timeout
/// A runtime whose blocking pool runs a call that never returns. Dropping
/// the runtime would wait for it; `shutdown_timeout` gives up.
fn shutdown_timeout() -> io::Result<()> {
    let runtime: Runtime = runtime()?;
    // The first runtime's workers may still count against `ulimit -u`:
    // `spawn_blocking` panics if it gets no thread at all.
    exit_on_panic("cannot start a blocking thread", || {
        runtime.spawn_blocking(|| thread::sleep(FOREVER))
    });
    let started = Instant::now();
    runtime.shutdown_timeout(Duration::from_millis(500));
    say(format!(
        "shutdown_timeout: gave up on a blocking task after {:.1} s; its \
         thread ends with the process",
        started.elapsed().as_secs_f64()
    ))
}
// ANCHOR_END: shutdown_timeout

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

/// Prints a line.
fn say(line: String) -> io::Result<()> {
    writeln!(io::stdout(), "{line}")
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
// ANCHOR_END: whole
