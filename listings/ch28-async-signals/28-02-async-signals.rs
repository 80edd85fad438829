// ANCHOR: whole
// Listing 28-2: signals in a tokio program, done right. SIGHUP reloads
// (which takes `--reload-secs`, 1 by default); SIGTERM or SIGINT starts
// the clean-up (`--cleanup-secs`, 3), after which it exits 0; a second
// SIGTERM or SIGINT during the clean-up ends it at once, killed by that
// signal, and one that came during a reload before it does so as soon as
// the reload is over. A stop signal within a second of the first is part
// of the same stop (a wrapper passing a Ctrl-C on), and the clean-up goes
// on. Three options show what goes wrong otherwise, and a way out:
//
// - `--in-loop` makes the signal streams anew each time round the loop,
//   and loses a signal that comes while a reload runs;
// - `--stuck` cleans up with a call that blocks the thread, and then the
//   second signal cannot be heard;
// - `--hook` makes the action that notes each stop signal in
//   signal-hook's handler also end the process, from inside the handler,
//   on a second signal a second or more after the first, which works
//   even then, and during a reload.
//
// Our own output may go away: SIGPIPE stays ignored, and what we cannot
// print is not printed, so that the clean-up still runs.

use std::error::Error;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal as NixSignal, raise};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::getpid;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::low_level;
use tokio::runtime::{Builder, Runtime};
use tokio::signal::unix::{Signal, SignalKind, signal};

const USAGE: &str = "usage: async-signals [--reload-secs N] \
                     [--cleanup-secs N] [--in-loop] [--stuck] [--hook]";

struct Args {
    reload: Duration,
    cleanup: Duration,
    in_loop: bool,
    stuck: bool,
    hook: bool,
}

fn main() -> ExitCode {
    // Before the runtime starts its threads, which inherit this thread's
    // mask of blocked signals.
    let ready = unblock_sigpipe().map_err(io::Error::from);
    let ready = ready.and_then(|()| block_stop_signals());
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
            let line = format!("async-signals: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP on the main thread, before the
/// runtime starts its threads: they inherit the mask, and never take
/// these signals. signal-hook's registry, which tokio registers through,
/// installs a handler before it records what the handler is to do, and a
/// signal that comes in between finds nothing to do and is lost (Chapter
/// 6). Blocked, it waits, pending, until `run` has made its streams and
/// unblocks the three on the main thread, the one thread left to take
/// them.
fn block_stop_signals() -> io::Result<()> {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGTERM};
    Ok(SigSet::from_iter([SIGINT, SIGTERM, SIGHUP]).thread_block()?)
}

/// Unblocks SIGINT, SIGTERM and SIGHUP on the calling thread, the main
/// thread, on which `block_on` runs `run`, once `run` has made their
/// streams: blocked by `block_stop_signals`, or by a parent, which passed
/// its mask on through `exec`, they would never reach tokio's handler. A
/// signal that came meanwhile, or that the parent left pending, reaches
/// it now.
fn unblock_stop_signals() -> io::Result<()> {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGTERM};
    Ok(SigSet::from_iter([SIGINT, SIGTERM, SIGHUP]).thread_unblock()?)
}

/// The multi-threaded runtime of `#[tokio::main]`, with an error where
/// `build` would panic: the six descriptors tokio opens as it starts are
/// taken first, and given back, since it makes its signal socket pair with
/// `expect` (Chapter 28).
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
            format!("async-signals: cannot start tokio's runtime: {why}\n");
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

// ANCHOR: streams
/// One stream per signal, made once, before the program says it is ready,
/// and kept until it exits.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}
// ANCHOR_END: streams

// ANCHOR: run
async fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Runs inside signal-hook's handler, before tokio's action (registered
    // first), so no task hears a signal before its time is noted: notes
    // when each stop signal came, so that a signal is judged by when it
    // came, not by when the task heard it. With `--hook`, a second signal
    // ends the process there and then, whatever the task is doing: one
    // that comes SAME_STOP or more after the stop's signal, or after the
    // first coming of either stop signal that no task has taken yet (a
    // reload runs); one sooner is the same stop.
    let came = Arc::new(Arrivals::default());
    for stop in [SIGTERM, SIGINT] {
        let came = Arc::clone(&came);
        let hook = args.hook;
        let note = move || {
            if came.note(stop) && hook {
                die_in_handler(stop);
            }
        };
        // SAFETY: `note` makes async-signal-safe calls only.
        unsafe { low_level::register(stop, note) }?;
    }
    let mut signals = Signals::new()?;
    // Handlers and actions in place: let the stop signals in.
    unblock_stop_signals()?;
    let pid = getpid();
    if !ready(format!(
        "Waiting for signals as pid {pid}: HUP reloads, TERM or INT stops"
    ))? {
        return Ok(());
    }

    let stop =
        until_stopped(&mut signals, &came, args.reload, args.in_loop).await?;
    // It may have come seconds ago, while a reload ran, and come again.
    let repeated = came.stop_began(stop);
    let name = low_level::signal_name(stop).unwrap_or("a signal");
    let secs = args.cleanup.as_secs();
    say(format!(
        "Got {name}: cleaning up for {secs} s; a second signal stops me now"
    ));
    if repeated {
        die_of(stop, stop);
    }
    let cleaning = clean_up(args.cleanup, args.stuck);
    tokio::pin!(cleaning);
    loop {
        let heard = tokio::select! {
            // In this order: the clean-up starts first even when another
            // signal has already come (`select!` otherwise picks at random).
            biased;
            () = &mut cleaning => {
                say("Clean exit".to_string());
                return Ok(());
            }
            _ = signals.term.recv() => SIGTERM,
            _ = signals.int.recv() => SIGINT,
        };
        if came.since_stop(heard) >= SAME_STOP {
            die_of(heard, stop);
        }
        same_stop(heard, stop);
    }
}

/// How long after the stop a stop signal, either one, is taken as part of
/// it: a Ctrl-C reaches a whole process group, and a wrapper in it passes
/// it on a moment later, as SIGTERM or as SIGINT; systemd signals every
/// process of a unit, and a wrapper there passes its SIGTERM on too.
const SAME_STOP: Duration = Duration::from_secs(1);
/// SAME_STOP, in the unit of the times the handler keeps.
const SAME_STOP_NANOS: u64 = SAME_STOP.as_nanos() as u64;

/// When each stop signal first came since the task last took it, and
/// when the one that began the stop did, in nanoseconds of the monotonic
/// clock; 0 for "none yet". A stream merges the deliveries that come
/// before one `recv()`, so a repeat SAME_STOP or more after the first is
/// noted apart: the task would hear the two as one.
#[derive(Default)]
struct Arrivals {
    term: AtomicU64,
    int: AtomicU64,
    stop: AtomicU64,
    term_again: AtomicBool,
    int_again: AtomicBool,
}

impl Arrivals {
    fn of(&self, signal: i32) -> (&AtomicU64, &AtomicBool) {
        if signal == SIGTERM {
            (&self.term, &self.term_again)
        } else {
            (&self.int, &self.int_again)
        }
    }

    /// In the handler: notes that `signal` comes now, and returns whether
    /// it is a second signal: SAME_STOP or more after the stop's signal,
    /// or after the earliest first coming, kept until the task takes it,
    /// of either stop signal: a SIGINT seconds after a SIGTERM is a second
    /// signal as much as a repeat of the SIGTERM. The second needs no
    /// task: it is judged even while the task is busy elsewhere and has
    /// taken no stop yet.
    fn note(&self, signal: i32) -> bool {
        let now = monotonic_nanos();
        let after = |then: u64| {
            then != 0 && now.saturating_sub(then) >= SAME_STOP_NANOS
        };
        let (came, again) = self.of(signal);
        // The first time is kept until the task takes it.
        let kept =
            came.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        let repeat = kept.is_err_and(after);
        if repeat {
            again.store(true, Ordering::SeqCst);
        }
        let other = if signal == SIGTERM {
            &self.int
        } else {
            &self.term
        };
        repeat
            || after(other.load(Ordering::SeqCst))
            || after(self.stop.load(Ordering::SeqCst))
    }

    /// With `--in-loop`, as the streams are dropped: forgets the signals
    /// they heard, which no task will take.
    fn forget(&self) {
        for signal in [SIGTERM, SIGINT] {
            let (came, again) = self.of(signal);
            came.store(0, Ordering::SeqCst);
            again.store(false, Ordering::SeqCst);
        }
    }

    /// In the task, once it has taken the stop signal `signal`: the stop
    /// began when that signal first came (now, if it was not noted). Not
    /// when the other came: it may have come seconds earlier or later.
    /// Returns whether `signal` came again SAME_STOP or more after that.
    fn stop_began(&self, signal: i32) -> bool {
        let (came, again) = self.of(signal);
        let came = match came.swap(0, Ordering::SeqCst) {
            0 => monotonic_nanos(),
            came => came,
        };
        self.stop.store(came, Ordering::SeqCst);
        again.swap(false, Ordering::SeqCst)
    }

    /// In the task, once it has heard `signal` in the clean-up: how far
    /// apart it first came and the stop's signal came, before or after it
    /// (while a reload runs, both wait in their streams, and the loop may
    /// take the later of the two); at least SAME_STOP if it came again
    /// that long after. Zero if its time was already taken: a delivery
    /// that the stream merged into one the task has judged.
    fn since_stop(&self, signal: i32) -> Duration {
        let (came, again) = self.of(signal);
        let came = came.swap(0, Ordering::SeqCst);
        if again.swap(false, Ordering::SeqCst) {
            return SAME_STOP;
        }
        if came == 0 {
            return Duration::ZERO;
        }
        let stop = self.stop.load(Ordering::SeqCst);
        Duration::from_nanos(came.abs_diff(stop))
    }
}

/// Says that `signal` came too soon after `stop` to be a second signal.
fn same_stop(signal: i32, stop: i32) {
    let name = low_level::signal_name(signal).unwrap_or("a signal");
    let stop = low_level::signal_name(stop).unwrap_or("the stop");
    let within = SAME_STOP.as_secs();
    say(format!(
        "Got {name} within {within} s of {stop}: the same stop, cleaning up on"
    ));
}

/// Now, in nanoseconds of the monotonic clock, for the handler:
/// `clock_gettime` is async-signal-safe, where `Instant` does not promise
/// it. Never 0, which stands for "no stop yet".
fn monotonic_nanos() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(1, |now| {
        let nanos = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
        nanos.max(1)
    })
}

/// What signal-hook's `flag::register_conditional_default` does once its
/// flag is set, with async-signal-safe calls only, for it runs inside the
/// handler: the default action back, the signal unblocked and raised. As
/// a container's PID 1, where the kernel drops that raise, it exits with
/// 128 + n; `register_conditional_default` would go on to `abort()`, and
/// the process would die of SIGSEGV.
fn die_in_handler(stop: i32) -> ! {
    if let Ok(signal) = NixSignal::try_from(stop) {
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        let _ = raise(signal); // The end, unless we are an init.
    }
    // SAFETY: `_exit` ends the process at once, and is async-signal-safe.
    unsafe { nix::libc::_exit(128 + stop) }
}
// ANCHOR_END: run

// ANCHOR: loop
/// Reloads on SIGHUP until SIGTERM or SIGINT comes; returns which. The
/// streams live outside the loop, so a signal that comes while a reload
/// runs waits in its stream for the next time round.
async fn until_stopped(
    signals: &mut Signals,
    came: &Arrivals,
    reload: Duration,
    in_loop: bool,
) -> std::io::Result<i32> {
    loop {
        if in_loop {
            // WRONG: fresh streams each time round. A stream hears only
            // the signals that come after it was made; this assignment
            // drops the old ones, with any signal they heard meanwhile.
            *signals = Signals::new()?;
            came.forget(); // And the times noted for what they heard.
        }
        tokio::select! {
            _ = signals.hup.recv() => reload_config(reload).await,
            _ = signals.term.recv() => return Ok(SIGTERM),
            _ = signals.int.recv() => return Ok(SIGINT),
        }
    }
}
// ANCHOR_END: loop

/// Stands in for reading and checking a configuration file.
async fn reload_config(takes: Duration) {
    let secs = takes.as_secs();
    say(format!("Got SIGHUP: reloading, which takes {secs} s"));
    tokio::time::sleep(takes).await;
    say("Reloaded".to_string());
}

// ANCHOR: die
/// Stands in for the clean-up: flushing, closing, removing files. With
/// `stuck`, it blocks the thread instead of waiting on the runtime.
async fn clean_up(takes: Duration, stuck: bool) {
    if stuck {
        std::thread::sleep(takes); // WRONG: nothing else runs meanwhile.
    } else {
        tokio::time::sleep(takes).await;
    }
}

/// Says that `stop` came again, or after `first`, the stop's signal, and
/// ends the process by `stop`, as its default action would have: the
/// shell and the service manager see a death by that signal. The init of
/// a PID namespace (a container's PID 1) cannot die so: the kernel drops
/// a signal whose action is the default, and so the one it raises here,
/// though it delivered the first one to tokio's handler. There it exits
/// with 128 + n, the status a shell would report.
fn die_of(stop: i32, first: i32) -> ! {
    let name = low_level::signal_name(stop).unwrap_or("a signal");
    let first = low_level::signal_name(first).unwrap_or("the stop");
    // Ending either way: a line that cannot be written is lost.
    let _ = if name == first {
        writeln!(io::stdout(), "Got {name} again: exiting now")
    } else {
        writeln!(io::stdout(), "Got {name} after {first}: exiting now")
    };
    if let Ok(signal) = NixSignal::try_from(stop) {
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        let _ = raise(signal); // The end, unless we are an init.
    }
    process::exit(128 + stop)
}
// ANCHOR_END: die

/// Unblocks SIGPIPE, which stays ignored, as Rust set it before `main`:
/// a reader of our output that goes away must not end us before the
/// clean-up (`say`). A parent that blocked it passed its mask on through
/// `exec`, to every thread the runtime starts and every program they
/// start: std's `Command` gives a child SIGPIPE's default action back,
/// but leaves the mask alone, and blocked, a filter's SIGPIPE only waits.
fn unblock_sigpipe() -> nix::Result<()> {
    SigSet::from(NixSignal::SIGPIPE).thread_unblock()
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

/// Reads `[--reload-secs N] [--cleanup-secs N] [--in-loop] [--stuck]
/// [--hook]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        reload: Duration::from_secs(1),
        cleanup: Duration::from_secs(3),
        in_loop: false,
        stuck: false,
        hook: false,
    };
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("reload-secs") => {
                parsed.reload = Duration::from_secs(args.value()?.parse()?);
            }
            Long("cleanup-secs") => {
                parsed.cleanup = Duration::from_secs(args.value()?.parse()?);
            }
            Long("in-loop") => parsed.in_loop = true,
            Long("stuck") => parsed.stuck = true,
            Long("hook") => parsed.hook = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(parsed)
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
