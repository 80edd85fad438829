// ANCHOR: whole
// Listing 10-1: a small daemon that handles its signals the way a
// supervisor expects. It answers each line a client sends with
// "<greeting>, <line>", over TCP on loopback.
//
// - SIGHUP reloads the configuration file; connections stay open, and a
//   bad file keeps the old configuration.
// - SIGTERM or SIGINT stops accepting, lets every connection finish the
//   requests it has received, and once they have closed, dies of that
//   signal, as its sender expects; if they have not within
//   `--drain-secs` (8), it exits 1. Keep the deadline shorter than the
//   grace period of whatever stops the daemon (`docker stop`: 10 s).
// - A second SIGTERM or SIGINT during that drain ends it at once, killed
//   by that signal, if it comes a second or more after the first: sooner,
//   it is a wrapper passing the first on, and the same stop.
//   As a container's PID 1, which the kernel shields from the default
//   action of every signal, even one it raises itself, it exits with
//   128 + n instead.
// - A client has a minute (`--idle-secs`) to send each whole request,
//   however it spreads its bytes; then its connection is closed.
// - When it runs out of file descriptors, it stops accepting for a while,
//   longer each time, instead of spinning.
//
// Without `--config PATH` it writes a default configuration into a private
// temporary directory, which it removes when it exits. `--flag-only`
// replaces the accept loop with the naive one, which only checks a flag;
// `--no-backoff` makes the accept loop try again at once after a failure,
// the spin that the chapter measures.

use std::error::Error;
use std::fmt::Display;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, raise};
use nix::unistd::{getpid, pipe2};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::{flag, low_level};

/// Begins `flush_log`'s line on stderr, whose code the daemons of
/// Listings 10-1, 10-2 and 29-1 share.
const NAME: &str = "sig-daemon";
const USAGE: &str = "usage: sig-daemon [HOST:PORT] [--config PATH] \
                     [--drain-secs N] [--idle-secs N] [--flag-only] \
                     [--no-backoff]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// The default configuration's name, in the private directory.
const CONFIG_FILE: &str = "daemon.conf";
const DEFAULT_CONFIG: &str = "\
# sig-daemon configuration: edit, then send SIGHUP.
greeting = hello
delay_ms = 0
";
/// How long a client may take to send a whole request, unless
/// `--idle-secs` says otherwise.
const IDLE: Duration = Duration::from_secs(60);
/// How long a client may leave a reply untaken; and from the stop, how
/// long it has in all to take the last replies and to close after ours.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request line, newline included.
const MAX_LINE: usize = 64 * 1024;
/// The most bytes of a request, escaped, that the log shows.
const LOGGED: usize = 1024;

// ANCHOR: main
fn main() -> ExitCode {
    let ran = run();
    flush_log();
    match ran {
        Ok(Ending::Code(code)) => code,
        Ok(Ending::Signal(signal)) => {
            // Everything `run` owned is dropped by now, the private
            // directory too: die of the signal, so that whoever sent it
            // learns that it worked (a shell's `$?` says 128 + n).
            die_of(signal)
        }
        Err(err) => {
            // Not `eprintln!`, which panics if stderr is a closed pipe;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-daemon: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// How the daemon ends, once it has stopped serving.
enum Ending {
    /// Drained after this signal, or told a second time: die of it, from
    /// `main`.
    Signal(i32),
    /// Gave up at the deadline, or nobody reads its log.
    Code(ExitCode),
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
// ANCHOR_END: main

struct Args {
    addr: String,
    config: Option<PathBuf>,
    drain: Duration,
    idle: Duration,
    flag_only: bool,
    no_backoff: bool,
}

/// What the configuration file says.
#[derive(Debug)]
struct Config {
    greeting: String,
    delay: Duration,
}

/// The current configuration, replaced as a whole on reload; each request
/// takes the one that is current when it starts.
type Shared = Arc<RwLock<Arc<Config>>>;

/// The read ends of the wake-up channels: signal-hook's handler writes a
/// byte into the other end when the signal comes. No channel for SIGINT
/// if it was ignored when we started: the user chose that (Chapter 12).
struct Wakeups {
    hup: UnixStream,
    term: UnixStream,
    int: Option<UnixStream>,
}

// ANCHOR: run
fn run() -> Result<Ending, Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let addrs = resolve(&args.addr)?;
    // The handlers come first: a SIGTERM that came between making the
    // private directory and installing them would leave the directory
    // behind. A SIGINT that the parent ignored (a shell's background job,
    // say) stays ignored. SIGPIPE stays ignored too: a client that goes
    // away is an error on its connection, not the end of the server. And
    // SIGXFSZ is ignored: a file grown to its limit is an error on that
    // write, not the end of the server either.
    ignore_sigxfsz()?;
    let int_ignored = is_ignored(SIGINT)
        .map_err(|err| format!("cannot read SIGINT's action: {err}"))?;
    // Blocked while signal-hook installs its handlers: it records what a
    // handler is to do only once it is in, and a signal in between would
    // be lost (Chapter 6).
    let mut handled = SigSet::from(Signal::SIGHUP);
    handled.add(Signal::SIGTERM);
    if !int_ignored {
        handled.add(Signal::SIGINT);
    }
    handled
        .thread_block()
        .map_err(|err| format!("cannot block the signals: {err}"))?;
    let handle = |signal| {
        wake_on(signal)
            .map_err(|err| format!("cannot install a signal handler: {err}"))
    };
    // Never dropped: signal-hook's handlers stay installed until the
    // process ends, and one that wrote to a channel whose read end is
    // closed would get EPIPE and raise SIGPIPE (Listing 6-2).
    let wakeups: &'static Wakeups = Box::leak(Box::new(Wakeups {
        hup: handle(SIGHUP)?,
        term: handle(SIGTERM)?,
        int: if int_ignored {
            None
        } else {
            Some(handle(SIGINT)?)
        },
    }));
    // A parent that blocked these for its own `sigwait` or signalfd passes
    // its mask on (Chapter 12): blocked, they would never reach a handler.
    // Unblocked here, before any thread starts, for every thread.
    handled
        .thread_unblock()
        .map_err(|err| format!("cannot unblock the signals: {err}"))?;
    // For `--flag-only`: registered now, before we say we are ready.
    let stop = Arc::new(AtomicBool::new(false));
    if args.flag_only {
        let set_stop = |signal| {
            flag::register(signal, Arc::clone(&stop)).map_err(|err| {
                format!("cannot install a signal handler: {err}")
            })
        };
        set_stop(SIGTERM)?;
        if !int_ignored {
            set_stop(SIGINT)?;
        }
    }
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
    let loaded = load(&config_path)
        .map_err(|err| format!("cannot load the configuration: {err}"))?;
    let config: Shared = Arc::new(RwLock::new(Arc::new(loaded)));
    let listener = TcpListener::bind(&addrs[..]).map_err(|err| {
        format!("cannot listen on {}: {err}", args.addr.escape_debug())
    })?;
    let addr = listener.local_addr().map_err(|err| {
        let addr = args.addr.escape_debug();
        format!("cannot read the address of {addr}: {err}")
    })?;
    // Non-blocking for the poll loop (the naive loop blocks in `accept`).
    if !args.flag_only {
        listener.set_nonblocking(true).map_err(|err| {
            format!("cannot make the listening socket non-blocking: {err}")
        })?;
    }
    // The last steps that can fail, before the line that says we are
    // ready: whoever waits for that line connects at once.
    start_log().map_err(|err| format!("cannot start the log thread: {err}"))?;
    let server = Server::new(config, args.idle)
        .map_err(|err| format!("cannot make the drain's pipes: {err}"))?;
    let pid = getpid();
    let ready = writeln!(
        io::stdout(),
        "Listening on {addr} as pid {pid}; config {}",
        escaped(&config_path)
    );
    match ready {
        // Nobody reads our log: leave, as a filter would.
        Err(err) if err.kind() == ErrorKind::BrokenPipe => {
            return Ok(Ending::Code(ExitCode::SUCCESS));
        }
        // Another failure, such as a full disk, is an error.
        other => other?,
    }

    let stop_signal = if args.flag_only {
        accept_until_flag(&listener, &server, &stop)?;
        // The wake-up channels heard the signal too, and say which. Both
        // are emptied: the drain hears only what comes after.
        drain_bytes(&wakeups.term)?;
        if wakeups.heard_int()? {
            SIGINT
        } else {
            SIGTERM
        }
    } else {
        let spin = args.no_backoff;
        accept_until_signal(&listener, &server, wakeups, &config_path, spin)?
    };
    drop(listener); // New connections are refused from here on.
    let ending = drain(server, wakeups, stop_signal, args.drain)?;
    drop(private_dir); // Before `main` ends the process.
    Ok(ending)
}
// ANCHOR_END: run

// ANCHOR: accept
/// Accepts connections and reloads on SIGHUP until SIGTERM or SIGINT;
/// returns which of the two it was. One `poll` waits for all of them.
fn accept_until_signal(
    listener: &TcpListener,
    server: &Server,
    wakeups: &Wakeups,
    config_path: &Path,
    no_backoff: bool,
) -> io::Result<i32> {
    let mut backoff = Backoff::new();
    loop {
        // While backing off, the listener is left out of the poll, and the
        // poll ends when the pause does.
        let pause = backoff.left();
        let clients = match pause {
            Some(_) => PollFlags::empty(),
            None => PollFlags::POLLIN,
        };
        let mut fds = vec![
            PollFd::new(listener.as_fd(), clients),
            PollFd::new(wakeups.hup.as_fd(), PollFlags::POLLIN),
            PollFd::new(wakeups.term.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(wakeups.int_poll());
        let timeout = pause.map_or(PollTimeout::NONE, |left| {
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other?,
        };
        let ready: Vec<bool> =
            fds.iter().map(|fd| fd.any() == Some(true)).collect();
        // Clients first: one that connected before the signal is served.
        if ready[0] {
            accept_waiting(listener, server, &mut backoff);
            if no_backoff {
                // WRONG: the next `accept` fails at once, and is logged.
                backoff = Backoff::new();
            }
        }
        if ready[1] {
            drain_bytes(&wakeups.hup)?;
            server.reload(config_path);
        }
        if ready[2] || ready.get(3) == Some(&true) {
            // Both channels emptied: a SIGTERM and a SIGINT that came
            // together are one stop, which the drain does not hear again.
            let term = drain_bytes(&wakeups.term)?;
            let int = wakeups.heard_int()?;
            return Ok(if term || !int { SIGTERM } else { SIGINT });
        }
    }
}

/// WRONG: the naive loop. `stop` is set by signal-hook's handler for
/// SIGTERM and SIGINT (`flag::register`), but `accept` does not return
/// when a signal comes (SA_RESTART restarts it, and std would retry it
/// anyway): the loop sees the flag only when the next client connects.
fn accept_until_flag(
    listener: &TcpListener,
    server: &Server,
    stop: &AtomicBool,
) -> io::Result<()> {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(err) = server.spawn(stream, peer) {
                    log(format_args!("{peer}: not served: {err}"));
                }
            }
            Err(err) => log(format_args!("accept: {err}")),
        }
    }
    Ok(())
}
// ANCHOR_END: accept

// ANCHOR: backoff
/// Accepts every client that is waiting, without blocking. Out of file
/// descriptors (EMFILE), it backs off: the listener stays readable while
/// a client waits, so trying again at once would spin.
fn accept_waiting(
    listener: &TcpListener,
    server: &Server,
    backoff: &mut Backoff,
) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => match server.spawn(stream, peer) {
                Ok(()) => backoff.accepted(),
                // Its connection is closed, unserved; the log names the
                // step that failed, not `accept`, which did not.
                Err(err) => {
                    return backoff
                        .failed(format_args!("{peer}: not served: {err}"));
                }
            },
            Err(err) if err.kind() == ErrorKind::WouldBlock => return,
            Err(err) => return backoff.failed(format_args!("accept: {err}")),
        }
    }
}

/// After a failed `accept`, or a client that could not be served: stop
/// accepting for 5 ms, then 10, 20, up to a second while the failures go
/// on; log the first failure of a shortage only, so that the log does not
/// fill up either.
struct Backoff {
    wait: Duration,
    /// The end of the pause in progress, if any.
    until: Option<Instant>,
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
            until: None,
            failed_at: None,
        }
    }

    /// `what` names the step that failed, and its error.
    fn failed(&mut self, what: impl Display) {
        let now = Instant::now();
        if self
            .failed_at
            .is_none_or(|at| now.duration_since(at) >= Backoff::QUIET)
        {
            log(format_args!("{what}; trying again, less often"));
        }
        self.failed_at = Some(now);
        self.until = Some(now + self.wait);
        self.wait = (self.wait * 2).min(Backoff::MOST);
    }

    /// A connection came: the next failure pauses for 5 ms again.
    fn accepted(&mut self) {
        self.wait = Backoff::FIRST;
    }

    /// What is left of the pause, if a millisecond or more: `poll` counts
    /// in whole milliseconds, and less would be a wait of none.
    fn left(&self) -> Option<Duration> {
        let left = self.until?.checked_duration_since(Instant::now())?;
        (left >= Duration::from_millis(1)).then_some(left)
    }
}
// ANCHOR_END: backoff

// ANCHOR: drain
/// Stops the connections and waits for them, for a second signal, or for
/// the deadline, whichever comes first.
fn drain(
    server: Server,
    wakeups: &Wakeups,
    stop_signal: i32,
    deadline: Duration,
) -> io::Result<Ending> {
    // Before the first line of the drain: a second signal is timed from
    // here.
    let started = Instant::now();
    let name = low_level::signal_name(stop_signal).unwrap_or("a signal");
    let open = server.open.load(Ordering::SeqCst);
    log(format_args!(
        "Got {name}: no new connections; draining {open} connection(s), \
         at most {} s",
        deadline.as_secs()
    ));
    // Closing the last write end of each pipe is a message to every
    // reader: `stop` tells the connections to finish; once each of them
    // has dropped its copy of `alive`, the read end reports its end.
    let Server {
        stop,
        alive,
        alive_read,
        open,
        ..
    } = server;
    drop(stop);
    drop(alive);
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        let mut fds = vec![
            PollFd::new(alive_read.as_fd(), PollFlags::POLLIN),
            PollFd::new(wakeups.term.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(wakeups.int_poll());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let ready = match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other?,
        };
        if ready == 0 {
            // Nothing came before the deadline.
            let open = open.load(Ordering::SeqCst);
            log(format_args!(
                "Deadline passed with {open} connection(s) open; exiting"
            ));
            return Ok(Ending::Code(ExitCode::FAILURE));
        }
        let ready: Vec<bool> =
            fds.iter().map(|fd| fd.any() == Some(true)).collect();
        if ready[0] {
            let name = low_level::signal_name(stop_signal).unwrap_or("?");
            log(format_args!("All connections closed; dying of {name}"));
            return Ok(Ending::Signal(stop_signal));
        }
        if ready[1] || ready.get(2) == Some(&true) {
            let term = drain_bytes(&wakeups.term)?;
            let int = wakeups.heard_int()?;
            let heard = [(term, SIGTERM), (int, SIGINT)];
            for (_, again) in heard.into_iter().filter(|&(came, _)| came) {
                if is_second(started) {
                    let name = low_level::signal_name(again).unwrap_or("?");
                    log(format_args!("Got {name} while draining: exiting now"));
                    // No more waiting: `run` drops the private directory
                    // on its way out, and `main` dies of the signal.
                    return Ok(Ending::Signal(again));
                }
                same_stop(again, stop_signal);
            }
        }
    }
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

// ANCHOR: server
/// What the connection threads share with the main thread.
struct Server {
    config: Shared,
    /// Dropped to tell every connection to finish.
    stop: OwnedFd,
    stop_read: Arc<OwnedFd>,
    /// Each connection holds a copy; the read end ends when all are gone.
    alive: OwnedFd,
    alive_read: OwnedFd,
    open: Arc<AtomicUsize>,
    /// How long a client may take to send a whole request.
    idle: Duration,
}

impl Server {
    fn new(config: Shared, idle: Duration) -> io::Result<Server> {
        // Close-on-exec: a program this daemon ever started would hold
        // the write ends, and the drain would wait for it.
        let (stop_read, stop) = pipe2(OFlag::O_CLOEXEC)?;
        let (alive_read, alive) = pipe2(OFlag::O_CLOEXEC)?;
        Ok(Server {
            config,
            stop,
            stop_read: Arc::new(stop_read),
            alive,
            alive_read,
            open: Arc::new(AtomicUsize::new(0)),
            idle,
        })
    }

    /// Serves `stream` on a thread of its own. If that cannot start (no
    /// descriptor for the copy of `alive`, no thread), the connection is
    /// closed, and the error returned.
    fn spawn(&self, stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
        let config = Arc::clone(&self.config);
        let stop = Arc::clone(&self.stop_read);
        let alive = self.alive.try_clone().map_err(|err| {
            io::Error::new(err.kind(), format!("cannot copy `alive`: {err}"))
        })?;
        let open = Arc::clone(&self.open);
        let idle = self.idle;
        self.open.fetch_add(1, Ordering::SeqCst);
        let started = thread::Builder::new().spawn(move || {
            log(format_args!("{peer}: connected"));
            match serve(stream, peer, &config, &stop, idle) {
                Ok(Ended::ByClient) => log(format_args!("{peer}: closed")),
                Ok(ended) => log(format_args!("{peer}: closed {ended}")),
                Err(err) => log(format_args!("{peer}: {}", explain(&err))),
            }
            open.fetch_sub(1, Ordering::SeqCst);
            drop(alive);
        });
        started.map(drop).map_err(|err| {
            self.open.fetch_sub(1, Ordering::SeqCst);
            io::Error::new(err.kind(), format!("cannot start a thread: {err}"))
        })
    }
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
// ANCHOR_END: server

impl Server {
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
                if let Ok(mut current) = self.config.write() {
                    *current = Arc::new(new);
                }
            }
            Err(err) => log(format_args!(
                "Reload failed, keeping the old configuration: {err}"
            )),
        }
    }
    // ANCHOR_END: reload
}

// ANCHOR: serve
/// Answers each line the client sends, until the client closes, takes
/// too long over a request, or the server stops: then it answers the lines
/// the kernel had received when the stop came, and closes. Says which.
fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: &Shared,
    stop: &OwnedFd,
    idle_time: Duration,
) -> io::Result<Ended> {
    stream.set_nonblocking(false)?;
    // A reply written while the one before is still unacknowledged would
    // wait for the client's delayed acknowledgement, 40 ms or more
    // (Nagle's algorithm, Chapter 18): replies that follow work go alone.
    stream.set_nodelay(true)?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    // Once stopping: how many of the bytes the kernel held at the stop
    // are still to be read. Nothing sent after the stop is read.
    let mut before_stop: Option<u64> = None;
    // Once stopping: when the client's time is up. One deadline, from
    // the moment this connection sees the stop, for every wait on the
    // client that is left: taking the replies, and closing.
    let mut deadline: Option<Instant> = None;
    // One deadline for each whole request, however the client spreads its
    // bytes: set as the connection starts, and moved on only once a
    // request has been answered, never by a byte that comes. (`None`: an
    // `--idle-secs` too large for the clock, and no bound.)
    let mut idle_end = Instant::now().checked_add(idle_time);
    let ended = loop {
        // The replies to the whole requests already here, sent together,
        // in one write: fewer segments and system calls than a reply each.
        // But never held behind work: before a request's work, the replies
        // so far go out.
        let mut replies = Vec::new();
        let mut answered = false;
        while let Some(end) = received.iter().position(|&b| b == b'\n') {
            if end >= MAX_LINE {
                break; // Refused below.
            }
            let line: Vec<u8> = received.drain(..=end).collect();
            let request = String::from_utf8_lossy(&line);
            let request = request.trim_end();
            let config =
                config.read().map(|c| Arc::clone(&c)).map_err(|_| {
                    io::Error::other("the configuration lock is poisoned")
                })?;
            log(format_args!("{peer}: request {}", shown(request)));
            if !config.delay.is_zero() && !replies.is_empty() {
                send_all(&stream, &replies, stop, &mut deadline)?;
                replies.clear();
            }
            thread::sleep(config.delay); // The work.
            let reply = format!("{}, {request}\n", config.greeting);
            replies.extend_from_slice(reply.as_bytes());
            answered = true;
            if replies.len() >= MAX_LINE {
                send_all(&stream, &replies, stop, &mut deadline)?;
                replies.clear();
            }
        }
        // The first line left, whole or begun: longer than MAX_LINE, its
        // newline counted, it is refused. Its own bytes are counted, not
        // those that came after its newline in the same read.
        let first = received.iter().position(|&b| b == b'\n');
        let too_long = first.map_or(received.len(), |end| end + 1) > MAX_LINE;
        if too_long {
            replies.extend_from_slice(b"error: line too long\n");
        }
        if !replies.is_empty() {
            send_all(&stream, &replies, stop, &mut deadline)?;
        }
        if answered {
            idle_end = Instant::now().checked_add(idle_time);
        }
        if too_long {
            break Ended::TooLong;
        }
        let want = match before_stop {
            // All that came before the stop is answered.
            Some(0) => break Ended::AtTheStop,
            // There already: no need to wait.
            Some(left) => {
                chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => {
                let now = Instant::now();
                let left =
                    idle_end.map(|end| end.saturating_duration_since(now));
                if left == Some(Duration::ZERO) {
                    break Ended::Idle(idle_time);
                }
                let mut fds = [
                    PollFd::new(stop.as_fd(), PollFlags::POLLIN),
                    PollFd::new(stream.as_fd(), PollFlags::POLLIN),
                ];
                // What is left of the deadline, rounded up: `poll` counts
                // whole milliseconds. A longer wait than `poll` takes ends
                // early, and the loop waits again.
                let timeout = left.map_or(PollTimeout::NONE, |left| {
                    let left = left + Duration::from_micros(999);
                    PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
                });
                match poll(&mut fds, timeout) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => other?,
                };
                if fds[0].any() == Some(true) {
                    // The stop comes first, or a client that keeps
                    // sending would keep the connection for ever.
                    before_stop = Some(unread_bytes(&stream)?);
                    deadline.get_or_insert(Instant::now() + PEER_TIMEOUT);
                    continue;
                }
                if fds[1].any() != Some(true) {
                    continue; // Time is up, or `poll` took only part of it.
                }
                chunk.len()
            }
        };
        let n = stream.read(&mut chunk[..want])?;
        if n == 0 {
            return Ok(Ended::ByClient);
        }
        if let Some(left) = &mut before_stop {
            *left -= n as u64;
        }
        received.extend_from_slice(&chunk[..n]);
    };
    close_gently(stream, deadline)?;
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

// ANCHOR: send_all
/// Sends all of `bytes`, waiting in `poll`, never in `write`, so that a
/// stop that comes while the client is slow to take them is seen at once:
/// it sets `deadline`. Fails when the client makes no room for
/// PEER_TIMEOUT, or has not taken everything by the deadline. (A write
/// timeout would not do: it starts again with every write that sends a
/// little, and a client can take a little at a time for ever.)
fn send_all(
    stream: &TcpStream,
    mut bytes: &[u8],
    stop: &OwnedFd,
    deadline: &mut Option<Instant>,
) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    let mut stalled = Instant::now() + PEER_TIMEOUT;
    while !bytes.is_empty() {
        match send(stream.as_raw_fd(), bytes, flags) {
            Ok(sent) => {
                bytes = &bytes[sent..];
                stalled = Instant::now() + PEER_TIMEOUT;
                continue;
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
        let give_up = deadline.map_or(stalled, |end| end.min(stalled));
        let left = give_up
            .checked_duration_since(Instant::now())
            .ok_or(ErrorKind::TimedOut)?;
        let mut fds = vec![PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
        if deadline.is_none() {
            fds.push(PollFd::new(stop.as_fd(), PollFlags::POLLIN));
        }
        // Rounded up: `poll` counts whole milliseconds.
        let left = left + Duration::from_micros(999);
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other?,
        };
        if fds.get(1).is_some_and(|fd| fd.any() == Some(true)) {
            *deadline = Some(Instant::now() + PEER_TIMEOUT);
        }
    }
    Ok(())
}
// ANCHOR_END: send_all

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

/// Half-closes, then reads and discards until the client closes too, for
/// at most PEER_TIMEOUT, and not past the stop's `deadline`: closing with
/// unread bytes would send a reset (RST), which can destroy replies the
/// client has not read yet.
fn close_gently(
    mut stream: TcpStream,
    deadline: Option<Instant>,
) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let patience = Instant::now() + PEER_TIMEOUT;
    let deadline = deadline.map_or(patience, |end| end.min(patience));
    let mut scratch = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        // With a timeout set, a signal makes the read fail with EINTR even
        // under SA_RESTART (Chapter 8), and std does not retry it.
        match stream.read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Err(ErrorKind::TimedOut.into())
}
// ANCHOR_END: serve

// ANCHOR: wake
/// A channel whose read end becomes readable when `signal` comes:
/// signal-hook's handler writes a byte into the other end.
fn wake_on(signal: i32) -> io::Result<UnixStream> {
    let (read, write) = UnixStream::pair()?;
    read.set_nonblocking(true)?;
    low_level::pipe::register(signal, write)?;
    Ok(read)
}

impl Wakeups {
    /// The SIGINT channel's entry for `poll`, if there is one.
    fn int_poll(&self) -> Option<PollFd<'_>> {
        let int = self.int.as_ref()?;
        Some(PollFd::new(int.as_fd(), PollFlags::POLLIN))
    }

    /// Empties the SIGINT channel; true if SIGINT came.
    fn heard_int(&self) -> io::Result<bool> {
        self.int.as_ref().map_or(Ok(false), drain_bytes)
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

/// Reads every wake-up byte that is waiting; true if there was any.
fn drain_bytes(mut wakeup: &UnixStream) -> io::Result<bool> {
    let mut bytes = [0u8; 64];
    let mut any = false;
    loop {
        match wakeup.read(&mut bytes) {
            Ok(0) => return Ok(any),
            Ok(_) => any = true,
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(any),
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: wake

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
        let template = std::env::temp_dir().join("sig-daemon.XXXXXX");
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

/// A connection error in words: a timed-out read says "would block".
fn explain(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".into(),
        _ => err.to_string(),
    }
}

// ANCHOR: log
/// The daemon's log, one line at a time on stdout. No connection thread
/// writes stdout itself: a write blocks while whoever reads the log is
/// slow or stopped, and every thread would stop there, the main thread
/// too, which then no longer hears SIGTERM. `log` hands each line to a
/// thread of its own through a bounded queue, and drops the line if the
/// queue is full; the thread says how many it dropped. Each line is one
/// `write` of at most PIPE_BUF bytes, which no other writer of the same
/// pipe can split (Chapter 20): a longer one is cut. A line that cannot
/// be written, to a full disk or to a pipe whose reader has gone, is
/// counted, and `flush_log` says on stderr at the end how many, and why.
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
/// [--flag-only] [--no-backoff]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        addr: DEFAULT_ADDR.into(),
        config: None,
        drain: Duration::from_secs(8),
        idle: IDLE,
        flag_only: false,
        no_backoff: false,
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
            Long("flag-only") => parsed.flag_only = true,
            Long("no-backoff") => parsed.no_backoff = true,
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
// ANCHOR_END: whole
