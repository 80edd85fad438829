// ANCHOR: whole
// Listing 10-2: a daemon that talks to its service manager the way
// systemd expects, and works without one too. A tiny server: each client
// gets one line, the greeting, and the connection closes.
//
// - Type=notify: it tells the manager, in datagrams to the Unix socket
//   that $NOTIFY_SOCKET names, when it is ready (READY=1), when a reload on
//   SIGHUP starts and ends (RELOADING=1, then READY=1), and when it stops
//   (STOPPING=1). If $WATCHDOG_USEC is set, it also says that it is alive
//   (WATCHDOG=1) twice per period.
// - Socket activation: if $LISTEN_PID is its pid and $LISTEN_FDS is 1, the
//   manager has opened the listening socket, as descriptor 3; otherwise it
//   binds HOST:PORT itself (default 127.0.0.1:50008).
//
// The greeting comes from `--config PATH` (a file holding it), read again
// on SIGHUP; "hello" without one. SIGTERM or SIGINT ends it, once the
// greetings in flight are done, with the signal (as a container's PID 1,
// with status 128 + n); if they are not done within 3 s, it exits 1. A
// second signal meanwhile waits, blocked, and is never delivered: unlike
// Listing 10-1's, this drain has no second way out. A SIGINT that the
// parent ignored stays ignored. Out of file descriptors, it stops
// accepting for a while instead of spinning, and logs the shortage once,
// as Listing 10-1 does.

use std::error::Error;
use std::fmt::Display;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{
    self, RecvTimeoutError::Timeout, SyncSender, sync_channel,
};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, raise};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{getsockopt, sockopt};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::getpid;

/// Begins `flush_log`'s line on stderr, whose code the daemons of
/// Listings 10-1, 10-2 and 29-1 share.
const NAME: &str = "sig-notify";
const USAGE: &str = "usage: sig-notify [HOST:PORT] [--config PATH]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;
/// How long a client may take to read its greeting and close.
const LINGER: Duration = Duration::from_secs(1);
/// How long a stop waits for the greetings in flight.
const DRAIN: Duration = Duration::from_secs(3);
/// How long a notification may wait for a manager whose queue is full.
const NOTIFY_WAIT: Duration = Duration::from_secs(1);
/// How many bytes of a text a STATUS= value shows, escaped, before it is
/// cut.
const STATUS_SHOWN: usize = 80;

fn main() -> ExitCode {
    let ran = run();
    flush_log();
    match ran {
        Ok(code) => code,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr is a closed pipe;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-notify: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<ExitCode, Box<dyn Error>> {
    let (addr, config) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // The manager's socket first, before this program makes a descriptor
    // of its own that could take the number 3.
    let passed = activated()?;
    // A log grown to the file size limit is an error on that write, as in
    // Listing 10-1, not the end of the daemon.
    ignore_sigxfsz()?;
    // Blocked before anything else, and read from a signalfd in the loop;
    // SIGINT only if the parent did not ignore it (a blocked signal that
    // is ignored would still reach the signalfd).
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGHUP);
    signals.add(Signal::SIGTERM);
    let int_ignored = is_ignored(Signal::SIGINT)
        .map_err(|err| format!("cannot read SIGINT's action: {err}"))?;
    if !int_ignored {
        signals.add(Signal::SIGINT);
    }
    signals
        .thread_block()
        .map_err(|err| format!("cannot block the signals: {err}"))?;
    let signalfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|err| format!("cannot make a signalfd: {err}"))?;
    let mut greeting = read_greeting(config.as_ref())
        .map_err(|err| format!("cannot read the greeting: {err}"))?;
    let (listener, origin) = match passed {
        Some(listener) => (listener, "descriptor 3, from the service manager"),
        None => {
            let bound = TcpListener::bind(&addr).map_err(|err| {
                format!("cannot listen on {}: {err}", addr.escape_debug())
            })?;
            (bound, "bound by us")
        }
    };
    // Non-blocking, as in Listing 10-1: a manager may pass the same socket
    // to several processes, and another may take the client that `poll`
    // woke us for. A blocking `accept` would then wait, deaf to signals,
    // for the next one. (Accepted sockets do not inherit the flag.) The
    // flag is the socket's, not this descriptor's: the manager's copy, and
    // every other process's, turn non-blocking too. A unit should set it
    // for all who share the socket (`NonBlocking=yes`); then this changes
    // nothing.
    listener.set_nonblocking(true).map_err(|err| {
        format!("cannot make the listening socket non-blocking: {err}")
    })?;
    let pid = getpid();
    let local = listener.local_addr().map_err(|err| {
        format!("cannot read the listening socket's address: {err}")
    })?;
    // From here on the log is written by a thread of its own: a stdout
    // that nobody reads blocks that thread, never this one (Listing 10-1).
    // Started before we say we are ready, as the last step that can fail.
    start_log().map_err(|err| format!("cannot start the log thread: {err}"))?;
    let ready =
        writeln!(io::stdout(), "Listening on {local} ({origin}) as pid {pid}");
    match ready {
        // Nobody reads our log: leave, as a filter would.
        Err(err) if err.kind() == ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS);
        }
        // Another failure, such as a full disk, is an error.
        other => other?,
    }
    notify(&format!("READY=1\nSTATUS=Listening on {local}"));

    let watchdog = watchdog_interval();
    let mut last_ping = Instant::now();
    // After a failed `accept` (out of descriptors, say), the listener
    // stays out of the poll for a while: a client that waits keeps it
    // readable, and trying again at once would spin (Listing 10-1).
    let mut backoff = Backoff::new();
    // Each greeting's thread holds a clone of `in_flight`, an `Arc` around
    // a channel's one sender, until it is done: when the receiver hears
    // that the sender is gone, all are; meanwhile the `Arc` counts them.
    let (sender, all_done) = mpsc::channel::<()>();
    let in_flight = Arc::new(sender);
    loop {
        let pause = backoff.left();
        let clients = match pause {
            Some(_) => PollFlags::empty(),
            None => PollFlags::POLLIN,
        };
        let mut fds = [
            PollFd::new(listener.as_fd(), clients),
            PollFd::new(signalfd.as_fd(), PollFlags::POLLIN),
        ];
        let ping =
            watchdog.map(|every| every.saturating_sub(last_ping.elapsed()));
        let timeout = [ping, pause].into_iter().flatten().min().map_or(
            PollTimeout::NONE,
            |left| {
                // Rounded up: `poll` counts whole milliseconds.
                let left = left + Duration::from_micros(999);
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            },
        );
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            other => other?,
        };
        if watchdog.is_some_and(|every| last_ping.elapsed() >= every) {
            notify("WATCHDOG=1");
            last_ping = Instant::now();
        }
        // Every client that waits, not one: a stop in this same round
        // closes the listener, and the kernel resets whoever is still in
        // its queue, clients that connected before the signal.
        let mut waiting = fds[0].any() == Some(true);
        while waiting {
            match listener.accept() {
                // One line and goodbye, on a thread of its own, so that a
                // slow client holds up nobody. Refused a thread (`ulimit
                // -u`), the client is closed unserved, and the shortage is
                // met as a failed `accept` is: logged once, backed off from.
                Ok((client, peer)) => {
                    let (greeting, held) =
                        (greeting.clone(), Arc::clone(&in_flight));
                    let goodbye = move || {
                        goodbye(client, &greeting);
                        drop(held);
                    };
                    match thread::Builder::new().spawn(goodbye) {
                        Ok(_) => backoff.accepted(),
                        Err(err) => {
                            backoff.failed(format_args!(
                                "{peer}: not served: cannot start a thread: {err}"
                            ));
                            waiting = false;
                        }
                    }
                }
                // None left, or taken by another process first: nothing
                // has failed.
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    waiting = false;
                }
                Err(err) => {
                    backoff.failed(format_args!("accept: {err}"));
                    waiting = false;
                }
            }
        }
        if fds[1].any() == Some(true) {
            let Some(info) = signalfd.read_signal()? else {
                continue;
            };
            let signal = Signal::try_from(info.ssi_signo as i32)?;
            if signal == Signal::SIGHUP {
                // The manager learns when the reload starts and ends: it
                // waits for READY=1 before it calls the reload done.
                let now = now_usec()?;
                notify(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
                // STATUS= shows the greeting, or the error, cut short:
                // systemd ignores a longer notification whole (`status`).
                let status = match read_greeting(config.as_ref()) {
                    Ok(new) => {
                        greeting = new;
                        log(format_args!("Reloaded: Greeting {greeting:?}"));
                        format!("Greeting {}", status(&greeting))
                    }
                    Err(err) => {
                        let kept = "Reload failed, keeping the old greeting";
                        log(format_args!("{kept}: {err}"));
                        format!("{kept}: {}", status(&err))
                    }
                };
                notify(&format!("READY=1\nSTATUS={status}"));
            } else {
                notify("STOPPING=1");
                log(format_args!("Got {signal}: stopping"));
                drop(listener);
                // Finish the greetings already begun, for at most DRAIN:
                // dying now would cut them short, and a client would take
                // the part it got, and the end, for the whole reply.
                let unfinished = Arc::downgrade(&in_flight);
                drop(in_flight);
                let timed_out = all_done.recv_timeout(DRAIN) == Err(Timeout);
                // (The last may have finished as the time ran out.)
                let open = unfinished.strong_count();
                if timed_out && open > 0 {
                    // A client that reads slowly keeps every write going:
                    // its greeting is cut now. Not a clean stop, and the
                    // manager learns so from the status (Listing 10-1).
                    log(format_args!(
                        "Deadline passed with {open} greeting(s) \
                         unfinished; exiting"
                    ));
                    return Ok(ExitCode::FAILURE);
                }
                flush_log(); // At most a second: the reader may be gone.
                // Die of it, as Listing 10-1 does: with its default action
                // back (a parent may have left it ignored, and it came
                // through the signalfd all the same), raised, and then
                // unblocked, that one alone: it is delivered at once, and a
                // SIGHUP that waits stays blocked.
                let default = SigHandler::SigDfl;
                // SAFETY: the default action runs no code of ours.
                unsafe { nix::sys::signal::signal(signal, default) }?;
                raise(signal)?;
                SigSet::from(signal).thread_unblock()?;
                // Still here: we are the init of a PID namespace, which
                // the kernel shields from default actions (Chapter 12).
                return Ok(ExitCode::from(128 + signal as u8));
            }
        }
    }
}

/// Sends the greeting, then closes without a reset. Closing a socket that
/// holds unread bytes (a client that sent a request first, say) sends a
/// reset, RST, instead of a FIN, which throws away whatever was not sent
/// yet and fails the client's reads at the end; so it half-closes, which
/// sends the end first, and reads and discards until the client closes
/// too, for at most a second from the half-close (a long greeting may take
/// longer than that to send). The thread inherits the blocked signals.
fn goodbye(mut client: TcpStream, greeting: &str) {
    let _ = client.set_write_timeout(Some(LINGER));
    let line = format!("{greeting}\n"); // One write (Chapter 13).
    if client.write_all(line.as_bytes()).is_err()
        || client.shutdown(Shutdown::Write).is_err()
    {
        return; // The client went away: its loss.
    }
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ =
            client.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match client.read(&mut scratch) {
            Ok(0) | Err(_) => return, // Closed, gone, or out of time.
            Ok(_) => {}
        }
    }
}
// ANCHOR_END: run

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

// ANCHOR: protocol
/// Sends one datagram of `KEY=value` lines to the service manager, at the
/// socket `$NOTIFY_SOCKET` names: an absolute path, or with `@` a name in
/// Linux's abstract namespace. Without the variable, there is no one to
/// tell; a manager that does not listen, or reads too slowly, is logged,
/// and the daemon goes on.
fn notify(state: &str) {
    if let Err(err) = send_notification(state) {
        let first = state.lines().next().unwrap_or_default();
        log(format_args!("Cannot tell the manager {first}: {err}"));
    }
}

fn send_notification(state: &str) -> io::Result<()> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let addr = match socket.as_encoded_bytes() {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name)?,
        [b'/', ..] => SocketAddr::from_pathname(&socket)?,
        // systemd also reads `vsock:CID:PORT`, for a virtual machine's
        // manager; we speak AF_UNIX only, and a relative path it refuses.
        _ => {
            // Escaped: the value is the environment's, and may hold a
            // newline that would start a second line of log.
            let socket = socket.to_string_lossy();
            let socket = socket.escape_debug();
            return Err(io::Error::other(format!(
                "NOTIFY_SOCKET={socket}: only an absolute path \
                 or an @abstract name is supported"
            )));
        }
    };
    let socket = UnixDatagram::unbound()?;
    // A manager that stops reading lets its queue fill, and a send would
    // then wait until it reads: the main thread, our only reader of
    // signals, waits at most NOTIFY_WAIT, and the loss is logged.
    socket.set_write_timeout(Some(NOTIFY_WAIT))?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// The listening socket the manager passed, if it passed us one: only if
/// `$LISTEN_PID` is our pid (the variables may be a parent's) and
/// `$LISTEN_FDS` is 1. Unset or 0, it passed none; more, we would serve
/// only one of them, and refuse.
fn activated() -> Result<Option<TcpListener>, Box<dyn Error>> {
    let ours = std::env::var("LISTEN_PID").ok() == Some(getpid().to_string());
    if !ours {
        return Ok(None);
    }
    let count = std::env::var_os("LISTEN_FDS");
    match count.as_ref().map(|n| n.to_string_lossy()).as_deref() {
        None | Some("0") => return Ok(None),
        Some("1") => {}
        Some(other) => {
            let other = other.escape_debug();
            return Err(format!("LISTEN_FDS={other}: want one").into());
        }
    }
    // Open at all? Variables can outlive their descriptors. (A plain
    // system call on a number: nothing is owned or borrowed yet.)
    // SAFETY: F_GETFD only reads the descriptor's flags.
    if unsafe { nix::libc::fcntl(LISTEN_FDS_START, nix::libc::F_GETFD) } < 0 {
        return Err("LISTEN_FDS=1, but descriptor 3 is not open".into());
    }
    // SAFETY: the manager opened descriptor 3 for us, and this process has
    // made no descriptor yet; from here on the listener owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    // The manager passes it without close-on-exec: set it.
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|err| {
        format!("descriptor 3: cannot make it close-on-exec: {err}")
    })?;
    // A socket that listens (SO_ACCEPTCONN, as sd_is_socket() checks): a
    // UDP or a connected socket has an address too, and would serve nobody.
    if !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
        return Err("descriptor 3 is not a listening socket".into());
    }
    let listener = TcpListener::from(fd);
    // A Unix socket has no `SocketAddr`: EINVAL, and its client would be
    // lost at `accept`, so say so now, as Listing 18-6 does.
    if listener.local_addr().is_err() {
        return Err("descriptor 3 is not a listening TCP socket".into());
    }
    Ok(Some(listener))
}

/// Half of `$WATCHDOG_USEC`, if the manager asked for pings (and
/// `$WATCHDOG_PID`, if set, is ours): ping twice per period.
fn watchdog_interval() -> Option<Duration> {
    let pid = std::env::var("WATCHDOG_PID").ok();
    if pid.is_some_and(|pid| pid != getpid().to_string()) {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    // Twice per period, but at most once a millisecond: a period of a
    // microsecond, which the protocol allows, would otherwise never let
    // the loop sleep.
    (usec > 0)
        .then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// `text` as a STATUS= value shows it: quoted and escaped, so that a
/// newline in it cannot start a line of its own, and cut once its escaped
/// text passes STATUS_SHOWN bytes, with its length. systemd reads a
/// notification into a buffer of PIPE_BUF bytes, 4096 on Linux, and
/// ignores a longer one whole: READY=1 with a long greeting after it would
/// be lost, and the manager would wait for the end of the reload until
/// its timeout.
fn status(text: &str) -> String {
    let mut escaped = 0;
    for (at, c) in text.char_indices() {
        // `escape_debug` escapes a character as `{:?}` does, or more;
        // counted in bytes, as the datagram is, not in characters.
        escaped += c.escape_debug().map(char::len_utf8).sum::<usize>();
        if escaped > STATUS_SHOWN {
            let cut = &text[..at];
            return format!("{cut:?}… ({} bytes)", text.len());
        }
    }
    format!("{text:?}")
}

/// CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it.
fn now_usec() -> nix::Result<u64> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC)?;
    Ok(now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1_000)
}
// ANCHOR_END: protocol

/// Whether `signal` is ignored, as the parent may have left it. A null
/// new action makes `sigaction` only report the current one.
fn is_ignored(signal: Signal) -> nix::Result<bool> {
    use nix::libc;
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        libc::sigaction(signal as i32, std::ptr::null(), current.as_mut_ptr())
    };
    Errno::result(done)?;
    // SAFETY: `sigaction` succeeded, and filled it in.
    let current = unsafe { current.assume_init() };
    Ok(current.sa_sigaction == libc::SIG_IGN)
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

/// The greeting in `config`, or "hello" without one; an error names the
/// file.
fn read_greeting(config: Option<&PathBuf>) -> Result<String, String> {
    let Some(path) = config else {
        return Ok("hello".into());
    };
    let text = fs::read_to_string(path)
        .map_err(|err| format!("{}: {err}", escaped(path)))?;
    Ok(text.trim().to_string())
}

/// `path` as a message shows it: escaped as `str::escape_debug` escapes
/// (a file name on Linux may hold any byte but `/` and NUL), so that a
/// newline in it cannot start a line of its own, in the log or on stderr.
fn escaped(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

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

/// Reads `[HOST:PORT] [--config PATH]`.
fn parse_args() -> Result<(String, Option<PathBuf>), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut addr, mut config) = (None, None);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("config") => config = Some(args.value()?.into()),
            Value(value) if addr.is_none() => addr = Some(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok((addr.unwrap_or_else(|| DEFAULT_ADDR.into()), config))
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
