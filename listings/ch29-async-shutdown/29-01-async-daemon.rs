// ANCHOR: whole
// Listing 29-1: the daemon of Listing 10-1 on tokio. It answers each line
// a client sends with "<greeting>, <line>", over TCP on loopback.
//
// - SIGHUP reloads the configuration file; connections stay open, and a
//   bad file keeps the old configuration.
// - SIGTERM or SIGINT stops accepting, lets every connection answer the
//   requests it has received, and once they have closed dies of that
//   signal, as its sender expects; if they have not closed within
//   `--drain-secs` (8), it exits 1. Keep the deadline shorter than the
//   grace period of whatever stops the daemon (`docker stop`: 10 s).
// - A second SIGTERM or SIGINT during that drain ends it at once (after
//   at most a second for a slow reader of the log), killed by that
//   signal, if it comes a second or more after the first: sooner, it is a
//   wrapper passing the first on, and the same stop.
// - A client has a minute (`--idle-secs`) to send each whole request,
//   however it spreads its bytes; then its connection is closed.
//
// Without `--config PATH` it writes a default configuration into a private
// temporary directory, which it removes when it exits. `--untracked`
// starts connections as tasks nobody waits for, the mistake the chapter
// shows first.

use std::error::Error;
use std::fmt::Display;
use std::fs;
use std::future::Future;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal, raise};
use nix::unistd::getpid;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::low_level;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Runtime};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Begins `flush_log`'s line on stderr, whose code the daemons of
/// Listings 10-1, 10-2 and 29-1 share.
const NAME: &str = "async-daemon";
const USAGE: &str = "usage: async-daemon [HOST:PORT] [--config PATH] \
                     [--drain-secs N] [--idle-secs N] [--untracked]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// The default configuration's name, in the private directory.
const CONFIG_FILE: &str = "daemon.conf";
const DEFAULT_CONFIG: &str = "\
# async-daemon configuration: edit, then send SIGHUP.
greeting = hello
delay_ms = 0
";
/// How long a client may take to send a whole request, unless
/// `--idle-secs` says otherwise.
const IDLE: Duration = Duration::from_secs(60);
/// How long a client may take to read a reply, or to close after ours;
/// and from the stop, how long it has in all to take the last replies and
/// to close.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request line, newline included (as in Listing 10-1).
const MAX_LINE: usize = 64 * 1024;
/// The most bytes of a request, escaped, that the log shows.
const LOGGED: usize = 1024;

fn main() -> ExitCode {
    let ran = match block_stop_signals().and_then(|()| runtime()) {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => Err(format!("cannot start tokio's runtime: {err}").into()),
    };
    flush_log();
    match ran {
        Ok(code) => code,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr is a closed pipe;
            // and one write, so that no other writer splits the line.
            let line = format!("async-daemon: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP on the main thread before the runtime
/// starts its threads, which inherit the block. tokio installs its handler
/// through signal-hook's registry, before it records what the handler is
/// to do, and a signal in between would be lost (Chapter 6); blocked, it
/// waits, pending.
fn block_stop_signals() -> io::Result<()> {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGTERM};
    Ok(SigSet::from_iter([SIGINT, SIGTERM, SIGHUP]).thread_block()?)
}

/// Unblocks them on the main thread alone, where `block_on` runs our
/// future, once the signal streams exist: one that came meanwhile is taken
/// now. Every later one goes to this thread, or to the log's, which it
/// starts afterwards with the same mask; never to the runtime's workers,
/// which keep the block. Wherever it lands, tokio's handler only wakes
/// the runtime. A parent that blocked them passed its mask on through
/// `exec`, and that is undone too.
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
            format!("async-daemon: cannot start tokio's runtime: {why}\n");
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

struct Args {
    addr: String,
    config: Option<PathBuf>,
    drain: Duration,
    idle: Duration,
    untracked: bool,
}

/// What the configuration file says.
#[derive(Debug)]
struct Config {
    greeting: String,
    delay: Duration,
}

/// One stream per signal, made once, before the daemon says it is ready.
/// No stream for SIGINT if it was ignored when we started: making one
/// would install tokio's handler over the user's choice (Chapter 12).
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: Interrupt,
}

// ANCHOR: run
async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let addrs = resolve(&args.addr)?;
    // The signal streams come first: a SIGTERM that came between making
    // the private directory and making them would leave the directory
    // behind. A SIGINT that the parent ignored (a shell's background job,
    // say) stays ignored. SIGPIPE stays ignored too: a client that goes
    // away is an error on its connection, not the end of the server. And
    // SIGXFSZ is ignored: a file grown to its limit is an error on that
    // write, not the end of the server either.
    ignore_sigxfsz()?;
    let int_ignored = is_ignored(SIGINT)
        .map_err(|err| format!("cannot read SIGINT's action: {err}"))?;
    let handle = |kind| {
        signal(kind)
            .map_err(|err| format!("cannot install a signal handler: {err}"))
    };
    let mut signals = Signals {
        hup: handle(SignalKind::hangup())?,
        term: handle(SignalKind::terminate())?,
        int: Interrupt(if int_ignored {
            None
        } else {
            Some(handle(SignalKind::interrupt())?)
        }),
    };
    unblock_stop_signals()
        .map_err(|err| format!("cannot unblock the stop signals: {err}"))?;
    let (config_path, private_dir) = match &args.config {
        Some(path) => (path.clone(), None),
        None => {
            let dir = PrivateDir::new().map_err(|err| {
                format!("cannot make a private directory: {err}")
            })?;
            let path = dir.0.join(CONFIG_FILE);
            fs::write(&path, DEFAULT_CONFIG).map_err(|err| {
                format!("cannot write {}: {err}", escaped(&path))
            })?;
            (path, Some(dir))
        }
    };
    let config = load(&config_path)
        .map_err(|err| format!("cannot load the configuration: {err}"))?;
    let (config, _) = watch::channel(Arc::new(config));
    let listener = TcpListener::bind(&addrs[..]).await.map_err(|err| {
        format!("cannot listen on {}: {err}", args.addr.escape_debug())
    })?;
    let addr = listener.local_addr().map_err(|err| {
        let addr = args.addr.escape_debug();
        format!("cannot read the address of {addr}: {err}")
    })?;
    // The last step that can fail, before the line that says we are
    // ready: whoever waits for that line connects at once.
    start_log().map_err(|err| format!("cannot start the log thread: {err}"))?;
    let pid = getpid();
    let ready = writeln!(
        io::stdout(),
        "Listening on {addr} as pid {pid}; config {}",
        escaped(&config_path)
    );
    match ready {
        // Nobody reads our log: leave.
        Err(err) if err.kind() == ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS);
        }
        ready => ready?,
    }

    let server = Server {
        config,
        stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
        idle: args.idle,
        untracked: args.untracked,
    };
    let mut backoff = Backoff::new();
    let stop_signal = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.accepted();
                    server.spawn(stream, peer);
                }
                // Out of descriptors, say: wait before trying again, and
                // listen meanwhile. The branches above are dropped by now.
                Err(err) => tokio::select! {
                    () = backoff.failed(&err) => {}
                    _ = signals.hup.recv() => server.reload(&config_path),
                    _ = signals.term.recv() => break SIGTERM,
                    _ = signals.int.recv() => break SIGINT,
                },
            },
            _ = signals.hup.recv() => server.reload(&config_path),
            _ = signals.term.recv() => break SIGTERM,
            _ = signals.int.recv() => break SIGINT,
        }
    };
    // Clients that connected before the signal are served, and any that
    // connect while the queue is emptied; after that, new connections are
    // refused.
    accept_waiting(listener, &server)?;
    let code =
        drain(server, &mut signals, stop_signal, args.drain, private_dir)
            .await?;
    Ok(code)
}

/// What to do after a failed `accept`, as in Listing 30-1: wait, from
/// 5 ms, doubling up to a second while the failures go on; log the first
/// failure of a shortage only, so that the log does not fill up either.
struct Backoff {
    wait: Duration,
    /// When `accept` last failed, if it has.
    failed_at: Option<Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);
    /// How long `accept` must go without failing before a shortage is
    /// over. A success does not end it: a client that closes one
    /// connection and opens another lets the next `accept` succeed, and
    /// the one after fail again.
    const QUIET: Duration = Duration::from_secs(10);

    fn new() -> Backoff {
        Backoff {
            wait: Backoff::FIRST,
            failed_at: None,
        }
    }

    async fn failed(&mut self, err: &io::Error) {
        // A client that gave up before we accepted it: no reason to wait.
        if err.kind() == ErrorKind::ConnectionAborted {
            return;
        }
        let now = Instant::now();
        if self
            .failed_at
            .is_none_or(|at| now.duration_since(at) >= Backoff::QUIET)
        {
            log(format_args!(
                "accept failed: {err}; trying again, less often"
            ));
        }
        self.failed_at = Some(now);
        sleep(self.wait).await;
        self.wait = (self.wait * 2).min(Backoff::MOST);
    }

    /// A connection came: the next failure waits 5 ms again.
    fn accepted(&mut self) {
        self.wait = Backoff::FIRST;
    }
}
// ANCHOR_END: run

// ANCHOR: drain
/// Stops the connections and waits for them, for a second signal, or for
/// the deadline, whichever comes first.
async fn drain(
    server: Server,
    signals: &mut Signals,
    stop_signal: i32,
    deadline: Duration,
    private_dir: Option<PrivateDir>,
) -> io::Result<ExitCode> {
    // Before the first line of the drain: a second signal is timed from
    // here.
    let started = Instant::now();
    let name = low_level::signal_name(stop_signal).unwrap_or("a signal");
    let Server { stop, tracker, .. } = server;
    log(format_args!(
        "Got {name}: no new connections; draining {} connection(s), \
         at most {} s",
        tracker.len(),
        deadline.as_secs()
    ));
    // Every connection answers what it has received, then closes. Closing
    // the tracker lets `wait` return once no task is left; it does not
    // stop anyone from spawning more on it.
    stop.cancel();
    tracker.close();
    // One sleep for the whole loop: its end survives each round, and
    // `sleep` takes any length (`started + deadline` could overflow).
    let passed = sleep(deadline);
    tokio::pin!(passed);
    let signal = loop {
        let heard = tokio::select! {
            () = tracker.wait() => {
                log(format_args!("All connections closed; exiting"));
                break stop_signal;
            }
            () = &mut passed => {
                log(format_args!(
                    "Deadline passed with {} connection(s) open; exiting",
                    tracker.len()
                ));
                // Returning from `main` drops the runtime, which cancels
                // every task still running: their connections close.
                return Ok(ExitCode::FAILURE);
            }
            _ = signals.term.recv() => SIGTERM,
            _ = signals.int.recv() => SIGINT,
        };
        if is_second(started) {
            break again(heard);
        }
        same_stop(heard, stop_signal);
    };
    // Die of the signal, as the sender expects, whether the drain ended
    // or a second signal cut it short. Drop does not run then: clean up
    // first.
    drop(private_dir);
    flush_log();
    Ok(die_of(signal))
}

/// Dies of `signal`, by its default action. The init of a PID namespace
/// (a container's PID 1) cannot: the kernel drops every signal whose
/// action for it is the default, even one it raises itself (Chapter 12).
/// There it exits with 128 + n, the status a shell would report.
fn die_of(signal: i32) -> ExitCode {
    // No flush of stdout: every line of the log is written whole, and a
    // log thread blocked on a reader that stopped holds stdout's lock.
    if let Ok(signal) = Signal::try_from(signal) {
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        let _ = raise(signal); // The end, unless we are an init.
    }
    ExitCode::from(128 + signal as u8)
}

/// Says that a second signal came during the drain; returns it.
fn again(signal: i32) -> i32 {
    let name = low_level::signal_name(signal).unwrap_or("a signal");
    log(format_args!("Got {name} while draining: exiting now"));
    signal
}

/// How long after the stop a stop signal, either one, is taken as part of
/// it: a Ctrl-C reaches a whole process group, and a wrapper in it passes
/// it on a moment later, as SIGTERM or as SIGINT; systemd signals every
/// process of a unit, and a wrapper there passes its SIGTERM on too.
const SAME_STOP: Duration = Duration::from_secs(1);

/// Whether a stop signal, come during the drain that began at `since`,
/// asks for the end at once: only once SAME_STOP has passed.
fn is_second(since: Instant) -> bool {
    since.elapsed() >= SAME_STOP
}

/// Says that `signal` came too soon after `stop_signal` to be a second
/// signal.
fn same_stop(signal: i32, stop_signal: i32) {
    let name = low_level::signal_name(signal).unwrap_or("a signal");
    let stop = low_level::signal_name(stop_signal).unwrap_or("the stop");
    log(format_args!(
        "Got {name} within {} s of {stop}: the same stop, draining on",
        SAME_STOP.as_secs()
    ));
}
// ANCHOR_END: drain

/// What the connection tasks share with the accepting loop.
struct Server {
    /// The current configuration; a reload replaces it as a whole.
    config: watch::Sender<Arc<Config>>,
    /// Cancelled to tell every connection to finish.
    stop: CancellationToken,
    /// Knows every connection task, and when the last has ended.
    tracker: TaskTracker,
    /// How long a client may take to send a whole request.
    idle: Duration,
    untracked: bool,
}

// ANCHOR: spawn
impl Server {
    fn spawn(&self, stream: TcpStream, peer: SocketAddr) {
        let config = self.config.subscribe();
        let stop = self.stop.clone();
        let idle = self.idle;
        let connection = async move {
            log(format_args!("{peer}: connected"));
            match serve(stream, peer, config, stop, idle).await {
                Ok(Ended::ByClient) => log(format_args!("{peer}: closed")),
                Ok(ended) => log(format_args!("{peer}: closed {ended}")),
                Err(err) => log(format_args!("{peer}: {err}")),
            }
        };
        if self.untracked {
            tokio::spawn(connection); // WRONG: nobody waits for it.
        } else {
            self.tracker.spawn(connection);
        }
    }
    // ANCHOR_END: spawn

    // ANCHOR: reload
    /// Reads the configuration file again; keeps the old one if the new
    /// one is bad. Connections are not touched.
    fn reload(&self, path: &Path) {
        match load(path) {
            Ok(new) => {
                log(format_args!(
                    "Reloaded {}: greeting {:?}, delay_ms {}",
                    escaped(path),
                    new.greeting,
                    new.delay.as_millis()
                ));
                self.config.send_replace(Arc::new(new));
            }
            Err(err) => log(format_args!(
                "Reload failed, keeping the old configuration: {err}"
            )),
        }
    }
    // ANCHOR_END: reload
}

// ANCHOR: accept_waiting
/// Serves the clients that are already waiting in the listening socket's
/// queue, without waiting for more, and then closes the listening socket.
fn accept_waiting(listener: TcpListener, server: &Server) -> io::Result<()> {
    // The kernel's queue is the truth: ask it directly, with the socket
    // taken back from the runtime. It is still nonblocking.
    let listener = listener.into_std()?;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let stream = (stream.set_nonblocking(true))
                    .and_then(|()| TcpStream::from_std(stream));
                match stream {
                    Ok(stream) => server.spawn(stream, peer),
                    // The runtime could not take it (`epoll` at its limit
                    // of watched descriptors, say): that client alone is
                    // turned away, and the others are still served.
                    Err(err) => log(format_args!("{peer}: {err}")),
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(err) => {
                // Out of descriptors, say (`accept` fails so whether or
                // not anyone is queued): closing the listening socket
                // resets whoever still is. Say so.
                log(format_args!(
                    "accept failed: {err}; clients still queued, if any, \
                     are turned away"
                ));
                return Ok(());
            }
        }
    }
}
// ANCHOR_END: accept_waiting

// ANCHOR: serve
/// Answers each line the client sends, until the client closes, takes
/// too long over a request, or the server stops: then it answers the lines
/// that had reached the server by then, and closes. Says which it was.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    config: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
    idle_time: Duration,
) -> io::Result<Ended> {
    // A reply written while the one before is still unacknowledged would
    // wait for the client's delayed acknowledgement, 40 ms or more
    // (Nagle's algorithm, Chapter 18): replies that follow work go alone.
    stream.set_nodelay(true)?;
    let (mut read, mut write) = stream.into_split();
    // What the client has sent and we have not answered yet.
    let mut received = Vec::new();
    // On the heap, which keeps the task's future small; but every
    // connection has these 4 KiB while it lives, idle or not (Chapter 29).
    let mut chunk = vec![0u8; 4096];
    // One deadline for each whole request, however the client spreads its
    // bytes: made once, pinned, polled again each time round, and moved on
    // only when a request has been answered.
    let idle = sleep(idle_time);
    tokio::pin!(idle);
    // How many bytes the kernel held for us when the stop came: noted at
    // once, even while this task is busy answering.
    let mut at_stop = None;
    // From the stop, one deadline for every wait on the client.
    let cutoff = Cutoff::default();
    let ended = loop {
        let answering =
            answer(&mut received, &mut write, peer, &config, &cutoff);
        match noting_the_stop(answering, &stop, &read, &mut at_stop, &cutoff)
            .await?
        {
            Answered::Lines(0) => {}
            // A new `sleep` in its place, rather than `reset(now + ...)`:
            // `sleep` takes any length, a huge `--idle-secs` too.
            Answered::Lines(_) => idle.set(sleep(idle_time)),
            Answered::TooLong => break Ended::TooLong, // Said so.
        }
        tokio::select! {
            // The stop first: it takes everything sent before it anyway.
            biased;
            () = stop.cancelled() => {
                let waiting = match at_stop {
                    Some(waiting) => waiting,
                    None => unread_bytes(read.as_ref())?,
                };
                cutoff.start();
                read_what_came(&mut read, waiting, &mut received, &cutoff)
                    .await?;
                match answer(&mut received, &mut write, peer, &config, &cutoff)
                    .await?
                {
                    Answered::Lines(_) => break Ended::AtTheStop,
                    // Among what came before the stop.
                    Answered::TooLong => break Ended::TooLong,
                }
            }
            () = &mut idle => break Ended::Idle(idle_time),
            n = read.read(&mut chunk) => match n? {
                0 => return Ok(Ended::ByClient),
                n => received.extend_from_slice(&chunk[..n]),
            },
        }
    };
    close_gently(write, read, &cutoff).await?;
    Ok(ended)
}

/// Who, or what, ended a connection that no error ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ended {
    /// The client closed its end.
    ByClient,
    /// No whole request came within this time (`--idle-secs`).
    Idle(Duration),
    /// A line longer than MAX_LINE, which the client was told.
    TooLong,
    /// The stop, once what had come before it was answered.
    AtTheStop,
}

/// How the log says it, after "closed".
impl Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Ended::ByClient => write!(f, "by the client"),
            Ended::Idle(idle) => {
                write!(f, "after {} s without a request", idle.as_secs())
            }
            Ended::TooLong => write!(f, "after a line too long"),
            Ended::AtTheStop => write!(f, "at the stop"),
        }
    }
}

/// What `answer` did.
enum Answered {
    /// Answered this many complete lines.
    Lines(usize),
    /// Found a line too long, and said so: the connection must end.
    TooLong,
}

/// Answers every complete line in `received`, and removes it.
async fn answer(
    received: &mut Vec<u8>,
    write: &mut OwnedWriteHalf,
    peer: SocketAddr,
    config: &watch::Receiver<Arc<Config>>,
    cutoff: &Cutoff,
) -> io::Result<Answered> {
    let mut answered = 0;
    // The replies to the whole requests already here, sent together, in
    // one write: fewer segments and system calls than a reply each. But
    // never held behind work: before a request's work, the replies so far
    // go out.
    let mut replies = String::new();
    while let Some(newline) = received.iter().position(|&b| b == b'\n') {
        // The line's own bytes and its newline.
        if newline >= MAX_LINE {
            break; // Refused below.
        }
        let line: Vec<u8> = received.drain(..=newline).collect();
        // Bytes that are not UTF-8 become U+FFFD, as in Chapter 10.
        let request = String::from_utf8_lossy(&line);
        let request = request.trim_end();
        // One configuration for the whole request.
        let config = Arc::clone(&config.borrow());
        log(format_args!("{peer}: request {}", shown(request)));
        // The work. Not `sleep` when there is none: tokio's timer rounds
        // a deadline up to its next millisecond, even a deadline of now.
        if !config.delay.is_zero() {
            if !replies.is_empty() {
                reply(write, &replies, cutoff).await?;
                replies.clear();
            }
            sleep(config.delay).await;
        }
        replies.push_str(&format!("{}, {request}\n", config.greeting));
        answered += 1;
        if replies.len() >= MAX_LINE {
            reply(write, &replies, cutoff).await?;
            replies.clear();
        }
    }
    // What is left is a line too long, or the start of the next one: its
    // own bytes either way, since every line before it was taken out.
    let too_long = received.len() > MAX_LINE;
    if too_long {
        replies.push_str("error: line too long\n");
    }
    if !replies.is_empty() {
        reply(write, &replies, cutoff).await?;
    }
    if too_long {
        return Ok(Answered::TooLong);
    }
    Ok(Answered::Lines(answered))
}

/// `request` as the log shows it: quoted and escaped, and cut once its
/// escaped text passes LOGGED bytes, with its length. The log's queue
/// holds 1024 lines, and a line may be 64 KiB, escaped up to six bytes
/// for one (`\u{1f}`): queued whole, one client's lines would hold
/// hundreds of megabytes. Cut so, a line stays far under LOG_LINE.
fn shown(request: &str) -> String {
    let mut escaped = 0;
    for (at, c) in request.char_indices() {
        // `escape_debug` escapes a character as `{:?}` does, or more.
        escaped += c.escape_debug().len();
        if escaped > LOGGED {
            let cut = &request[..at];
            return format!("{cut:?}… ({} bytes)", request.len());
        }
    }
    format!("{request:?}")
}
// ANCHOR_END: serve

// ANCHOR: read_what_came
/// Runs `work` to its end. Should the stop come meanwhile, notes at once
/// in `at_stop` how many bytes the kernel holds for the connection: those
/// came before the stop, and what comes later does not. It starts the
/// client's `cutoff` too, which the rest of `work` keeps.
async fn noting_the_stop<T>(
    work: impl Future<Output = io::Result<T>>,
    stop: &CancellationToken,
    read: &OwnedReadHalf,
    at_stop: &mut Option<u64>,
    cutoff: &Cutoff,
) -> io::Result<T> {
    tokio::pin!(work);
    if at_stop.is_none() {
        tokio::select! {
            biased;
            done = &mut work => return done,
            () = stop.cancelled() => {
                cutoff.start();
                *at_stop = Some(unread_bytes(read.as_ref())?);
            }
        }
    }
    work.await
}

/// Reads the `waiting` bytes the kernel held for this connection when the
/// stop came, and nothing sent after them. Waiting for the socket to be
/// ready would not do: tokio answers "not ready" without asking the
/// kernel until its driver has seen the socket ready, and a socket that
/// `accept_waiting` registered a moment ago has not been seen yet. So the
/// kernel was asked how many bytes it holds, and exactly those are read.
async fn read_what_came(
    read: &mut OwnedReadHalf,
    waiting: u64,
    received: &mut Vec<u8>,
    cutoff: &Cutoff,
) -> io::Result<()> {
    let mut before_the_stop = read.take(waiting);
    timeout_at(cutoff.give_up(), before_the_stop.read_to_end(received))
        .await
        .map_err(|_| io::Error::new(ErrorKind::TimedOut, "timed out"))??;
    Ok(())
}

/// How many bytes the kernel has received on `socket` that nobody has
/// read yet: `ioctl(FIONREAD)`.
fn unread_bytes(socket: &TcpStream) -> io::Result<u64> {
    let mut count: nix::libc::c_int = 0;
    let fd = socket.as_raw_fd();
    // SAFETY: FIONREAD stores one int through the pointer, which points
    // to `count`, alive for the whole call.
    let done = unsafe { nix::libc::ioctl(fd, nix::libc::FIONREAD, &mut count) };
    nix::errno::Errno::result(done)?;
    Ok(u64::try_from(count).unwrap_or(0))
}
// ANCHOR_END: read_what_came

// ANCHOR: close
/// From the stop, the one deadline for every wait on the client: the
/// replies still to write, the bytes that came before the stop, and the
/// close. Without it each of those would have PEER_TIMEOUT of its own, in
/// series, and a client that takes each reply just in time would hold the
/// drain past its deadline.
#[derive(Default)]
struct Cutoff(OnceLock<Instant>);

impl Cutoff {
    /// The stop has come: the client has PEER_TIMEOUT from now, in all.
    /// Later calls change nothing.
    fn start(&self) {
        let _ = self.0.set(Instant::now() + PEER_TIMEOUT);
    }

    /// When a wait on the client that starts now gives up: PEER_TIMEOUT
    /// from now, and never past the cutoff, once it has started.
    fn give_up(&self) -> Instant {
        let patience = Instant::now() + PEER_TIMEOUT;
        self.0.get().map_or(patience, |&end| end.min(patience))
    }
}

/// Writes replies, whole lines, within PEER_TIMEOUT and the cutoff.
async fn reply(
    write: &mut OwnedWriteHalf,
    lines: &str,
    cutoff: &Cutoff,
) -> io::Result<()> {
    timeout_at(cutoff.give_up(), write.write_all(lines.as_bytes()))
        .await
        .map_err(|_| io::Error::new(ErrorKind::TimedOut, "timed out"))?
}

/// Half-closes, then reads and discards until the client closes too, for
/// at most PEER_TIMEOUT and not past the cutoff: closing with unread bytes
/// would send a reset (RST), which can destroy replies the client has not
/// read yet.
async fn close_gently(
    mut write: OwnedWriteHalf,
    mut read: OwnedReadHalf,
    cutoff: &Cutoff,
) -> io::Result<()> {
    let give_up = cutoff.give_up();
    write.shutdown().await?;
    let discard = async {
        let mut scratch = vec![0u8; 4096];
        while read.read(&mut scratch).await? > 0 {}
        Ok(())
    };
    timeout_at(give_up, discard)
        .await
        .map_err(|_| io::Error::new(ErrorKind::TimedOut, "timed out"))?
}
// ANCHOR_END: close

/// Reads and checks a configuration file: `key = value` lines, `#`
/// comments; unknown keys are errors, missing ones keep their defaults.
fn load(path: &Path) -> Result<Config, String> {
    let text = fs::read_to_string(path)
        .map_err(|err| format!("{}: {err}", escaped(path)))?;
    let mut config = Config {
        greeting: "hello".into(),
        delay: Duration::ZERO,
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{} line {}", escaped(path), n + 1);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{at}: expected `key = value`"))?;
        match (key.trim(), value.trim()) {
            ("greeting", value) => config.greeting = value.to_string(),
            ("delay_ms", value) => {
                let ms: u64 = value
                    .parse()
                    .map_err(|err| format!("{at}: delay_ms: {err}"))?;
                config.delay = Duration::from_millis(ms);
            }
            (other, _) => return Err(format!("{at}: unknown key {other:?}")),
        }
    }
    Ok(config)
}

/// SIGINT's stream, or none if SIGINT was ignored when we started.
struct Interrupt(Option<tokio::signal::unix::Signal>);

impl Interrupt {
    /// The next SIGINT, as `Signal::recv` says it; without a stream, it
    /// never comes.
    async fn recv(&mut self) -> Option<()> {
        match &mut self.0 {
            Some(int) => int.recv().await,
            None => std::future::pending().await,
        }
    }
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

/// A write past the file size limit (`ulimit -f`, systemd's
/// `LimitFSIZE=`) raises SIGXFSZ, whose default action ends the process
/// before the write returns: no drain, no last line, and what the process
/// made is left behind. Ignored, as SIGPIPE is, the write fails with
/// `EFBIG` instead, an error like a full disk's `ENOSPC`. Nothing inherits
/// the choice: these servers start no program.
fn ignore_sigxfsz() -> io::Result<()> {
    use nix::sys::signal::{SigHandler::SigIgn, Signal::SIGXFSZ};
    // SAFETY: ignoring a signal runs no code of ours.
    match unsafe { nix::sys::signal::signal(SIGXFSZ, SigIgn) } {
        Ok(_) => Ok(()),
        Err(err) => {
            Err(io::Error::other(format!("cannot ignore SIGXFSZ: {err}")))
        }
    }
}

/// `path` as a message shows it: escaped as `str::escape_debug` escapes
/// (a file name on Linux may hold any byte but `/` and NUL), so that a
/// newline in it cannot start a line of its own, in the log or on stderr.
fn escaped(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

/// A directory only we can use, removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    /// `mkdtemp`: a new directory with mode 0700, under a name nobody can
    /// guess or take first.
    fn new() -> io::Result<PrivateDir> {
        let template = std::env::temp_dir().join("async-daemon.XXXXXX");
        Ok(PrivateDir(nix::unistd::mkdtemp(&template)?))
    }
}

impl Drop for PrivateDir {
    /// By path first: `unlink` and `rmdir` need no descriptor, and the
    /// table may be full (`remove_dir_all` opens the directory). Then
    /// whatever else someone put there.
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0.join(CONFIG_FILE));
        if fs::remove_dir(&self.0).is_err() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

// ANCHOR: log
/// The daemon's log, one line at a time on stdout. No task writes stdout
/// itself: a write blocks while whoever reads the log is slow or stopped,
/// and a worker blocked in it stops every task it would run, the stop
/// included (Chapter 32). `log` hands each line to a thread of its own
/// through a bounded queue, and drops the line if the queue is full; the
/// thread says how many it dropped. Each line is one `write` of at most
/// PIPE_BUF bytes, which no other writer of the same pipe can split
/// (Chapter 20): a longer one is cut. A line that cannot be written, to a
/// full disk or to a pipe whose reader has gone, is counted, and
/// `flush_log` says on stderr at the end how many, and why.
struct Log {
    queue: SyncSender<String>,
    /// Lines queued so far, and lines written (or failed).
    queued: AtomicU64,
    written: Mutex<u64>,
    progress: Condvar,
    dropped: AtomicU64,
    /// Lines that failed to be written, and the first failure.
    failed: Mutex<(u64, Option<io::Error>)>,
}

/// How many lines may wait for a slow reader of the log.
const LOG_QUEUE: usize = 1024;

/// The longest line of the log, its newline included: PIPE_BUF, 4096 on
/// Linux, the most that one `write` puts into a pipe in one piece.
const LOG_LINE: usize = nix::libc::PIPE_BUF;

static LOG: OnceLock<Log> = OnceLock::new();

/// Starts the thread that writes the log.
fn start_log() -> io::Result<()> {
    let (queue, lines) = sync_channel::<String>(LOG_QUEUE);
    let log = LOG.get_or_init(|| Log {
        queue,
        queued: AtomicU64::new(0),
        written: Mutex::new(0),
        progress: Condvar::new(),
        dropped: AtomicU64::new(0),
        failed: Mutex::new((0, None)),
    });
    thread::Builder::new().name("log".into()).spawn(move || {
        let lost = |lines: u64, err: io::Error| {
            let mut failed =
                log.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.0 += lines;
            failed.1.get_or_insert(err);
        };
        for line in lines {
            // `write_all` of a whole line, not `writeln!`, which hands the
            // text and the newline over apart: stdout's buffer passes a
            // line of 1024 bytes or more straight on, in a `write` of its
            // own, and the newline follows in another.
            let mut out = io::stdout().lock();
            let dropped = log.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let note = format!(
                    "({dropped} log lines dropped: the log fell behind)"
                );
                if let Err(err) = out.write_all(whole(&note).as_bytes()) {
                    lost(dropped, err);
                }
            }
            if let Err(err) = out.write_all(whole(&line).as_bytes()) {
                lost(1, err);
            }
            drop(out);
            *log.written.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            log.progress.notify_all();
        }
    })?;
    Ok(())
}

/// `text` as one line of the log: with its newline, in LOG_LINE bytes at
/// most; a longer text is cut, and ends in "[cut]".
fn whole(text: &str) -> String {
    if text.len() < LOG_LINE {
        return format!("{text}\n");
    }
    const CUT: &str = " [cut]\n";
    let mut end = LOG_LINE - CUT.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &text[..end])
}

/// Queues one line of the log, or drops it; never waits.
fn log(message: impl Display) {
    let Some(log) = LOG.get() else { return };
    log.queued.fetch_add(1, Ordering::SeqCst);
    if log.queue.try_send(message.to_string()).is_err() {
        log.queued.fetch_sub(1, Ordering::SeqCst);
        log.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Before the process ends: waits until the lines queued so far are
/// written, for at most a second, since the reader may never come back;
/// then says on stderr how many lines could not be written, and why.
/// It blocks its thread, which is harmless only because nothing else is
/// left to run.
fn flush_log() {
    let Some(log) = LOG.get() else { return };
    let queued = log.queued.load(Ordering::SeqCst);
    let written = log.written.lock().unwrap_or_else(|e| e.into_inner());
    let limit = Duration::from_secs(1);
    let _ = log
        .progress
        .wait_timeout_while(written, limit, |n| *n < queued);
    let mut failed = log.failed.lock().unwrap_or_else(|e| e.into_inner());
    if let (lost, Some(err)) = (failed.0, failed.1.take()) {
        // One write, so that no other writer lands inside the line.
        let line = format!("{NAME}: {lost} log line(s) not written: {err}\n");
        let _ = io::stderr().write_all(line.as_bytes());
    }
}
// ANCHOR_END: log

/// Every address `HOST:PORT` names (`localhost` may name several).
fn resolve(spec: &str) -> Result<Vec<SocketAddr>, String> {
    let bad = |why: &dyn Display| {
        format!("bad address '{}': {why}", spec.escape_debug())
    };
    let addrs: Vec<_> = spec.to_socket_addrs().map_err(|e| bad(&e))?.collect();
    if addrs.is_empty() {
        return Err(bad(&"it names no address"));
    }
    Ok(addrs)
}

/// Reads `[HOST:PORT] [--config PATH] [--drain-secs N] [--idle-secs N]
/// [--untracked]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        addr: DEFAULT_ADDR.into(),
        config: None,
        // Under the 10 s that `docker stop` waits before its SIGKILL.
        drain: Duration::from_secs(8),
        idle: IDLE,
        untracked: false,
    };
    let mut addr_seen = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("config") => parsed.config = Some(args.value()?.into()),
            Long("drain-secs") => {
                parsed.drain = Duration::from_secs(args.value()?.parse()?);
            }
            Long("idle-secs") => {
                parsed.idle = Duration::from_secs(args.value()?.parse()?);
                if parsed.idle.is_zero() {
                    // Zero would close every client before its request.
                    return Err("--idle-secs must be at least 1".into());
                }
            }
            Long("untracked") => parsed.untracked = true,
            Value(value) if !addr_seen => {
                parsed.addr = value.string()?;
                addr_seen = true;
            }
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

// ANCHOR: tests
// Tests of `serve` on tokio's paused clock (`cargo test`; they need the
// `test-util` feature of tokio among the dev-dependencies). The clock
// stands still until every task waits, then jumps to the next timer: a
// minute of idleness takes no time at all, and always the same.
#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to `serve`, on a free port; the client's end.
    async fn served() -> TcpStream {
        served_until_it_ends().await.0
    }

    /// As `served`, with what `serve` returns when it is done.
    async fn served_until_it_ends()
    -> (TcpStream, tokio::task::JoinHandle<io::Result<Ended>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let client = client.await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let config = Config {
            greeting: "hello".into(),
            delay: Duration::ZERO,
        };
        let (config, _) = watch::channel(Arc::new(config));
        let stop = CancellationToken::new();
        let serving =
            tokio::spawn(serve(stream, peer, config.subscribe(), stop, IDLE));
        (client, serving)
    }

    /// The end of the stream, or the next bytes, as text.
    async fn next(client: &mut TcpStream) -> String {
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_trickled_byte_by_byte_gets_one_minute_in_all() {
        let (mut client, serving) = served_until_it_ends().await;
        let started = Instant::now();
        client.write_all(b"x").await.unwrap();
        sleep(Duration::from_secs(50)).await;
        client.write_all(b"x").await.unwrap();
        // Closed a minute after the start, not a minute after a byte.
        assert_eq!(next(&mut client).await, "");
        assert_eq!(started.elapsed(), IDLE);
        // And said to be idle, not closed by its client.
        drop(client);
        assert_eq!(serving.await.unwrap().unwrap(), Ended::Idle(IDLE));
    }

    #[tokio::test(start_paused = true)]
    async fn each_answered_request_gives_the_client_another_minute() {
        let mut client = served().await;
        for request in ["one", "two", "three"] {
            client
                .write_all(format!("{request}\n").as_bytes())
                .await
                .unwrap();
            assert_eq!(next(&mut client).await, format!("hello, {request}\n"));
            sleep(IDLE - Duration::from_secs(1)).await;
        }
        let started = Instant::now();
        assert_eq!(next(&mut client).await, "");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_work_waits_for_no_timer() {
        let mut client = served().await;
        // Half-way through a millisecond of the timer's.
        tokio::time::advance(Duration::from_micros(500)).await;
        let started = Instant::now();
        client.write_all(b"x\n").await.unwrap();
        assert_eq!(next(&mut client).await, "hello, x\n");
        // A sleep of zero would wait for the timer's next millisecond,
        // and the paused clock would have jumped to it.
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_that_does_not_close_in_turn_is_timed_out() {
        let (mut client, serving) = served_until_it_ends().await;
        let started = Instant::now();
        assert_eq!(next(&mut client).await, "");
        // The client neither speaks nor closes its end: after the idle
        // minute, the gentle close gives up, and that is what is logged.
        let ended = serving.await.unwrap();
        assert_eq!(ended.unwrap_err().kind(), ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), IDLE + PEER_TIMEOUT);
        drop(client);
    }

    #[test]
    fn a_client_the_runtime_cannot_take_does_not_end_the_drain() {
        // A runtime that has shut down refuses to register a socket, as
        // `epoll_ctl` refuses one past `fs.epoll.max_user_watches`.
        let live = Builder::new_current_thread().enable_all().build().unwrap();
        let runtime = Builder::new_current_thread().enable_all().build();
        let gone = runtime.unwrap();
        let handle = gone.handle().clone();
        drop(gone);
        let listener = live.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let queued = [
            std::net::TcpStream::connect(addr).unwrap(),
            std::net::TcpStream::connect(addr).unwrap(),
        ];
        let config = Config {
            greeting: "hello".into(),
            delay: Duration::ZERO,
        };
        let server = Server {
            config: watch::channel(Arc::new(config)).0,
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            idle: IDLE,
            untracked: false,
        };
        let _in_gone = handle.enter();
        // Each of those clients is turned away alone; the drain goes on.
        assert!(accept_waiting(listener, &server).is_ok());
        // Both were taken from the queue and closed (an end of stream),
        // not left in it to be reset with the listening socket.
        use std::io::Read;
        for mut client in queued {
            client.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
            assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn the_future_of_a_connection_is_small() {
        // Everything `serve` keeps across an `.await` is in its future,
        // allocated whole when the connection's task is spawned.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let _client = client.await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let config = Config {
            greeting: "hello".into(),
            delay: Duration::ZERO,
        };
        let (config, _) = watch::channel(Arc::new(config));
        let stop = CancellationToken::new();
        let serving = serve(stream, peer, config.subscribe(), stop, IDLE);
        let size = std::mem::size_of_val(&serving);
        assert!(size < 2048, "{size} bytes");
    }
}
// ANCHOR_END: tests
// ANCHOR_END: whole
