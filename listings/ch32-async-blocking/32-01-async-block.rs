// ANCHOR: whole
// Listing 32-1: a blocking call inside a task stalls a tokio runtime. A
// ticker task ticks every 100 ms while another task waits, one of three
// ways, for something that takes `--secs N` (default 1):
//
// - `wait`: for a child, `sleep N`, with `std::process::Child::wait`;
// - `read`: for a line on a pipe, with `std::io::Read::read`; a thread
//   writes it after N seconds;
// - `signal`: for SIGUSR1, with signal-hook's iterator; a thread sends it
//   after N seconds.
//
// The runtime has one thread, and the waiting task holds it: the ticker
// cannot tick until the wait is over. `--workers N` (at most 64) runs the
// same on the multi-threaded runtime, where the waiting task holds one of
// N threads, and stalls the task it spawned just before the wait. `--fix
// spawn-blocking` moves the same blocking call to tokio's blocking pool;
// `--fix block-in-place` (with `--workers`) hands the worker's other tasks
// to another thread while the call blocks; `--fix async` uses tokio's own
// way to wait for the same thing. Each way, the ticker keeps time. The
// runtime's metrics say how long each worker was busy meanwhile.

use std::error::Error;
use std::fs::File;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{self, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction,
};
use nix::unistd::{getpid, getppid, pipe2};
use signal_hook::consts::SIGUSR1;
use signal_hook::iterator::Signals;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe::Receiver;
use tokio::runtime::{Builder, Handle, Runtime, RuntimeMetrics};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task;
use tokio::time::{interval, sleep};

const USAGE: &str = "usage: async-block [wait|read|signal] \
                     [--fix spawn-blocking|block-in-place|async] [--secs N] \
                     [--workers N]";

/// The most worker threads `--workers` may ask for.
const MOST_WORKERS: usize = 64;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Wait,
    Read,
    Signal,
}

#[derive(Clone, Copy, PartialEq)]
enum Fix {
    None,
    SpawnBlocking,
    BlockInPlace,
    Async,
}

struct Args {
    way: Way,
    fix: Fix,
    secs: u64,
    workers: Option<NonZeroUsize>,
}

type Outcome = Result<String, Box<dyn Error + Send + Sync>>;

// ANCHOR: main
fn main() -> ExitCode {
    exit_on_panic();
    let ran = parse_args()
        .map_err(|e| format!("{e}; {USAGE}").into())
        .and_then(|args| {
            let usr1 = unblock_usr1()?;
            let chld = keep_own_zombies()?;
            unblock_sigchld()?;
            let runtime = runtime(args.workers).map_err(|err| {
                format!("cannot start tokio's runtime: {err}")
            })?;
            runtime.block_on(run(args, usr1, chld))
        });
    let ran = ran.and_then(|()| Ok(unsaid()?));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("async-block: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// A parent that blocked SIGUSR1 passed its mask on through `exec`, and
/// every thread the runtime starts would inherit it: the signal that the
/// `signal` way sends itself would stay pending, and the wait would never
/// end. Unblocked on the main thread before the runtime starts its
/// threads; and first, a SIGUSR1 that parent left pending is thrown away
/// (ignoring a signal discards it), or it would come at once, at its
/// default action, and end the program before any handler is in place.
/// The action found is put back after, and returned: a SIGUSR1 the
/// parent ignored stays ignored in the ways that never listen for it, and
/// in the `signal` way once it stops listening.
fn unblock_usr1() -> io::Result<SigAction> {
    let ignore =
        SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: neither action runs code of ours: none is installed yet.
    let found = unsafe { sigaction(Signal::SIGUSR1, &ignore) }?;
    // SAFETY: as above.
    unsafe { sigaction(Signal::SIGUSR1, &found) }?;
    SigSet::from(Signal::SIGUSR1).thread_unblock()?;
    Ok(found)
}

/// tokio learns that a child has ended from SIGCHLD wherever it does not
/// wait on a pidfd: for a `Child` dropped before its process was reaped
/// (the orphan queue), and for every child where `pidfd_open` fails. A
/// parent that blocked SIGCHLD passed its mask on through `exec`, and every
/// thread the runtime starts would inherit it: such a child would never be
/// reaped, and a wait for it would never end. Unblocked on the main thread
/// before the runtime starts its threads; a SIGCHLD left pending then takes
/// its default action, which does nothing.
fn unblock_sigchld() -> nix::Result<()> {
    SigSet::from(Signal::SIGCHLD).thread_unblock()
}

/// tokio panics where the system refuses it a thread (`ulimit -u`) that
/// nothing else can stand in for: in `build`, for a worker; in
/// `spawn_blocking`, and in `block_in_place` for the thread that takes the
/// worker over, when the pool has no thread yet besides the workers (which
/// do not count, though they are threads of the pool; with one, the call
/// waits for it). No check can come first: say why in one line, and exit
/// at once, since unwinding through a runtime may wait for ever. No
/// destructor runs then; the child that was to be waited for, if any,
/// dies all the same, of the death signal it asked for (`dies_with_us`).
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|panic| {
        let payload = panic.payload();
        let why = (payload.downcast_ref::<String>().map(String::as_str))
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic in tokio");
        let line = format!("async-block: {why}\n");
        let _ = io::stderr().write_all(line.as_bytes());
        process::exit(1);
    }));
}

/// A runtime with one thread for every task, so that what a blocking call
/// does to the others shows at once; with `--workers N`, the multi-threaded
/// runtime that `#[tokio::main]` builds, with N workers. The six descriptors
/// tokio opens as it starts are taken first, and given back: it makes its
/// signal socket pair with `expect`, and `build` would panic without them
/// (Chapter 28).
fn runtime(workers: Option<NonZeroUsize>) -> io::Result<Runtime> {
    let room = [
        UnixStream::pair()?,
        UnixStream::pair()?,
        UnixStream::pair()?,
    ];
    drop(room);
    let mut builder = match workers {
        None => Builder::new_current_thread(),
        Some(n) => {
            let mut builder = Builder::new_multi_thread();
            builder.worker_threads(n.get());
            builder
        }
    };
    builder.enable_all().build()
}
// ANCHOR_END: main

// ANCHOR: run
async fn run(
    args: Args,
    usr1: SigAction,
    chld: SigAction,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let Args { way, fix, secs, .. } = args;
    // Unbounded: the ticks are read only once the wait is over, ten a
    // second of `--secs`, a few bytes each, which a run of hours holds.
    let (tx, mut ticks) = mpsc::unbounded_channel();
    let ticker = tokio::spawn(async move {
        let mut every = interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            if tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    sleep(Duration::from_millis(300)).await;
    say(format!(
        "Ticking every 100 ms; now waiting {}",
        what(way, fix)
    ));

    let metrics = Handle::current().metrics();
    let busy_before = busy_times(&metrics);
    let takes = Duration::from_secs(secs);
    let waiter = tokio::spawn(wait_for(way, fix, takes, usr1, chld));
    let (started, outcome, spawned_ran) = waiter.await?;
    let ended = Instant::now();
    sleep(Duration::from_millis(300)).await;
    ticker.abort();
    let busy = busy_before
        .iter()
        .zip(busy_times(&metrics))
        .map(|(before, after)| after - *before);
    let mut busy: Vec<Duration> = busy.collect();
    busy.sort_by(|a, b| b.cmp(a));

    let mut times = Vec::new();
    while let Ok(tick) = ticks.try_recv() {
        times.push(tick);
    }
    let meanwhile = times.iter().filter(|t| (started..ended).contains(*t));
    let longest = times.windows(2).map(|w| w[1] - w[0]).max();
    let longest = longest.unwrap_or_default().as_secs_f64();
    say(format!(
        "{} after {:.2} s",
        outcome?,
        (ended - started).as_secs_f64()
    ));
    say(format!(
        "the ticker: {} ticks meanwhile, the longest gap {longest:.2} s",
        meanwhile.count()
    ));
    say(format!(
        "a task spawned just before the wait: first ran after {:.2} s",
        (spawned_ran - started).as_secs_f64()
    ));
    let busy: Vec<_> = busy
        .iter()
        .map(|d| format!("{:.2} s", d.as_secs_f64()))
        .collect();
    say(format!("each worker's busy time: {}", busy.join(", ")));
    Ok(())
}

/// How long each worker has been busy so far: tokio's runtime metrics.
fn busy_times(metrics: &RuntimeMetrics) -> Vec<Duration> {
    let workers = 0..metrics.num_workers();
    workers
        .map(|w| metrics.worker_total_busy_duration(w))
        .collect()
}
// ANCHOR_END: run

/// What the waiting task waits for, and how, in words.
fn what(way: Way, fix: Fix) -> &'static str {
    match (way, fix) {
        (Way::Wait, Fix::None) => "in std's Child::wait",
        (Way::Wait, Fix::SpawnBlocking) => "in Child::wait in spawn_blocking",
        (Way::Wait, Fix::BlockInPlace) => "in Child::wait in block_in_place",
        (Way::Wait, Fix::Async) => "in tokio's Child::wait",
        (Way::Read, Fix::None) => "in std's read",
        (Way::Read, Fix::SpawnBlocking) => "in read in spawn_blocking",
        (Way::Read, Fix::BlockInPlace) => "in read in block_in_place",
        (Way::Read, Fix::Async) => "in tokio's pipe Receiver::read",
        (Way::Signal, Fix::None) => "in signal-hook's iterator",
        (Way::Signal, Fix::SpawnBlocking) => {
            "in signal-hook's iterator in spawn_blocking"
        }
        (Way::Signal, Fix::BlockInPlace) => {
            "in signal-hook's iterator in block_in_place"
        }
        (Way::Signal, Fix::Async) => "in tokio's Signal::recv",
    }
}

// ANCHOR: wait_for
/// The waiting task: when it started, what it got, and when a task it
/// spawned just before the wait first ran. `usr1` and `chld` are the
/// actions SIGUSR1 and SIGCHLD had at start: the `signal` way puts back
/// the first, and the `wait` way gives its child the second.
async fn wait_for(
    way: Way,
    fix: Fix,
    takes: Duration,
    usr1: SigAction,
    chld: SigAction,
) -> (Instant, Outcome, Instant) {
    let spawned = tokio::spawn(async { Instant::now() });
    let started = Instant::now();
    let outcome = match way {
        Way::Wait => wait_child(fix, takes, chld).await,
        Way::Read => read_pipe(fix, takes).await,
        Way::Signal => wait_signal(fix, takes, usr1).await,
    };
    let ran = spawned.await.unwrap_or(started);
    (started, outcome, ran)
}
// ANCHOR_END: wait_for

// ANCHOR: wait
async fn wait_child(fix: Fix, takes: Duration, chld: SigAction) -> Outcome {
    let secs = takes.as_secs().to_string();
    let status = if fix == Fix::Async {
        let mut command = tokio::process::Command::new("sleep");
        command.arg(&secs).stdin(Stdio::null()).kill_on_drop(true);
        // SAFETY: runs between fork and exec: two system calls, and an
        // error built without allocating.
        unsafe { command.pre_exec(dies_with_us()) };
        // On the std `Command` inside tokio's, where tokio's own
        // `pre_exec` puts its hook too.
        sigchld_as_found(command.as_std_mut(), chld);
        let mut child = command.spawn().map_err(spawn_error)?;
        child.wait().await?
    } else {
        let mut command = Command::new("sleep");
        // SAFETY: as above.
        unsafe { command.pre_exec(dies_with_us()) };
        sigchld_as_found(&mut command, chld);
        let mut child = command
            .arg(&secs)
            .stdin(Stdio::null())
            .spawn()
            .map_err(spawn_error)?;
        match fix {
            Fix::SpawnBlocking => {
                task::spawn_blocking(move || child.wait()).await?
            }
            Fix::BlockInPlace => task::block_in_place(|| child.wait()),
            _ => child.wait(), // WRONG: holds the runtime's thread.
        }?
    };
    Ok(format!("sleep {secs} ended: {status}"))
}

/// Why `sleep` did not start. EMFILE is this process's own table: the
/// descriptors `Command` makes before it forks found none free. Not
/// `sleep`'s doing: it never ran.
fn spawn_error(err: io::Error) -> String {
    if err.raw_os_error() == Some(libc::EMFILE) {
        format!("cannot start sleep: this process is out of descriptors: {err}")
    } else {
        format!("cannot start sleep: {err}")
    }
}

/// For `pre_exec`: the child asks the kernel for SIGKILL when its parent
/// dies (Linux's `PR_SET_PDEATHSIG`, Chapter 25). A `kill -TERM` ends this
/// program without running any code of ours, and `sleep` would run on,
/// adopted by init, holding our stdout. The parent is the *thread* that
/// forked: the main thread, or a worker, which outlives the wait.
fn dies_with_us() -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    // Taken before the fork: the child compares its parent with it.
    let parent = getpid();
    move || {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        // We died before that call: no signal will come. Do not run.
        if getppid() != parent {
            return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
        }
        Ok(())
    }
}
// ANCHOR_END: wait

// ANCHOR: read
async fn read_pipe(fix: Fix, takes: Duration) -> Outcome {
    // Close-on-exec: the `sleep` of the other way must not inherit it.
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|err| format!("cannot make a pipe: {err}"))?;
    // Stands in for a slow peer: a line, `takes` from now, then the end.
    thread::Builder::new()
        .spawn(move || {
            thread::sleep(takes);
            let _ = File::from(write_end).write_all(b"ready\n");
        })
        .map_err(|err| format!("cannot start a thread: {err}"))?;
    let mut buf = [0; 64];
    let n = match fix {
        Fix::Async => {
            let mut pipe = Receiver::from_owned_fd(read_end)?;
            pipe.read(&mut buf).await?
        }
        Fix::SpawnBlocking => {
            let mut pipe = File::from(read_end);
            // A buffer of the closure's own: `move` would copy `buf` in,
            // and the bytes would stay in the copy. Only the count comes
            // back here; return the bytes too if you need them.
            let read = move || pipe.read(&mut [0; 64]);
            task::spawn_blocking(read).await??
        }
        Fix::BlockInPlace => {
            task::block_in_place(|| File::from(read_end).read(&mut buf))?
        }
        // WRONG: holds the runtime's thread.
        Fix::None => File::from(read_end).read(&mut buf)?,
    };
    Ok(format!("read {n} bytes"))
}
// ANCHOR_END: read

// ANCHOR: signal
async fn wait_signal(fix: Fix, takes: Duration, found: SigAction) -> Outcome {
    // Listen first, then let the signal be sent.
    if fix == Fix::Async {
        let mut usr1 = signal(SignalKind::user_defined1())?;
        send_usr1_after(takes)?;
        usr1.recv().await;
        put_back(found);
    } else {
        let mut signals = Signals::new([SIGUSR1])
            .map_err(|err| format!("cannot watch for SIGUSR1: {err}"))?;
        send_usr1_after(takes)?;
        // The iterator goes with the closure, after the action is back.
        let mut wait = move || {
            signals.forever().next();
            put_back(found);
        };
        match fix {
            Fix::SpawnBlocking => task::spawn_blocking(wait).await?,
            Fix::BlockInPlace => task::block_in_place(wait),
            _ => wait(), // WRONG: holds the thread.
        }
    }
    Ok("got SIGUSR1".to_string())
}

/// Gives SIGUSR1 back the action it had at start, once we stop listening:
/// the handler that signal-hook or tokio installed stays, and would
/// swallow the next one. That action is the default, death, or `SIG_IGN`
/// where our parent ignored the signal: `exec` resets a handler to the
/// default, and leaves an ignored signal ignored.
fn put_back(found: SigAction) {
    // SAFETY: neither action runs code of ours.
    let _ = unsafe { sigaction(Signal::SIGUSR1, &found) };
}

/// Stands in for someone typing `kill -USR1 PID`, `takes` from now.
fn send_usr1_after(takes: Duration) -> io::Result<()> {
    let pid = getpid();
    thread::Builder::new().spawn(move || {
        thread::sleep(takes);
        let _ = kill(pid, Signal::SIGUSR1);
    })?;
    Ok(())
}
// ANCHOR_END: signal

/// Gives SIGCHLD its default action back, and returns the action found.
/// A parent that left it ignored passed that on through `exec` (Chapter
/// 24), and then the kernel reaps our children itself: every wait fails
/// with ECHILD, and a child's pid, or its group's id, may go to a stranger
/// as soon as the child exits, while we may still signal it.
fn keep_own_zombies() -> nix::Result<SigAction> {
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    unsafe { sigaction(Signal::SIGCHLD, &default) }
}

/// Gives the child that `command` starts SIGCHLD's action as we `found`
/// it, ignored perhaps: `keep_own_zombies` changed it for our own
/// waits, not for the programs we start (Chapter 12).
fn sigchld_as_found(command: &mut Command, found: SigAction) {
    // SAFETY: between fork and exec the child makes one system call,
    // sigaction, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            sigaction(Signal::SIGCHLD, &found)?;
            Ok(())
        })
    };
}

/// Prints a line, if anyone still reads our output. A write that fails
/// otherwise (a full disk) is kept for `main` to report, at the end.
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

/// Reads `[WAY] [--fix spawn-blocking|block-in-place|async] [--secs N]
/// [--workers N]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let (mut way, mut fix, mut secs, mut workers) = (None, Fix::None, 1, None);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("secs") => secs = args.value()?.parse()?,
            Long("workers") => workers = Some(args.value()?.parse()?),
            Long("fix") => {
                fix = match args.value()?.string()?.as_str() {
                    "spawn-blocking" => Fix::SpawnBlocking,
                    "block-in-place" => Fix::BlockInPlace,
                    "async" => Fix::Async,
                    other => {
                        return Err(format!(
                            "unknown fix '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                };
            }
            Value(value) if way.is_none() => {
                way = Some(match value.string()?.as_str() {
                    "wait" => Way::Wait,
                    "read" => Way::Read,
                    "signal" => Way::Signal,
                    other => {
                        return Err(format!(
                            "unknown way '{}'",
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
    let way = way.unwrap_or(Way::Wait);
    if workers.is_some_and(|n: NonZeroUsize| n.get() > MOST_WORKERS) {
        // tokio starts every worker in `build`, and panics on the first
        // thread the system refuses.
        return Err(format!("--workers is at most {MOST_WORKERS}").into());
    }
    if fix == Fix::BlockInPlace && workers.is_none() {
        // tokio would panic: `block_in_place` needs the multi-threaded
        // scheduler, even with one worker, and not the current-thread one.
        return Err("--fix block-in-place needs --workers N".into());
    }
    Ok(Args {
        way,
        fix,
        secs,
        workers,
    })
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
