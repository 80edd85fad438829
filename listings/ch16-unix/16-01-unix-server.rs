// ANCHOR: whole
// Listing 16-1: Listing 14-2's server on a Unix domain socket. The
// protocol, the deadlines, the maximum line and the limit on connections
// are the same; what changes is the address, a path in the file system,
// and what comes with it: a file to create safely and to remove, file
// permissions that decide who may connect, and the kernel's word on who
// did (SO_PEERCRED).
//
// `unix-server [PATH | @NAME] [--count N] [--max-conns N]
// [--timeout SECS]`. Without an address, the socket is `socket` in a new
// private directory; `@NAME` is a name in Linux's abstract namespace.

use std::collections::HashMap;
use std::error::Error;
use std::ffi::OsString;
use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, Signal, raise};
use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::mkdtemp;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: unix-server [PATH | @NAME] [--count N] \
                     [--max-conns N] [--timeout SECS]";
/// The longest line a client may send, newline not counted.
const MAX_LINE: usize = 1024;
/// The most bytes of replies held back to go out with the next one in one
/// write. A buffer of short requests sent together asks for more: 4096
/// lines of `x` are answered with 64 KiB.
const MAX_HELD: usize = 8 * 1024;

struct Config {
    /// A path, `@NAME`, or nothing for a private directory.
    address: Option<OsString>,
    count: Option<usize>,
    /// The most connections at once, if given.
    max_conns: Option<usize>,
    timeout: Duration,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads the log any more: that ends the server.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            log(format_args!("{err}"));
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let config = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let limit = raise_fd_limit()?;
    let fds = limit.saturating_sub(inherited_fds(limit));
    let max_conns = config.max_conns.unwrap_or(default_max_conns(fds));
    // The handlers go in before `bind`: a signal that comes between
    // `bind` and the thread that removes the file waits for that thread,
    // instead of killing us with the file left behind.
    // Blocked while they are registered, so that none is lost (Chapter 6).
    block_stop_signals()?;
    let signals = Signals::new(stop_signals()?)
        .map_err(|err| format!("cannot watch for signals: {err}"))?;
    // Unblocked too: a parent that blocked them passed its mask on.
    unblock_stop_signals()?;
    let accept_log = AcceptLog::start()
        .map_err(|e| format!("cannot start the log's thread: {e}"))?;
    // Bytes, not text: a Linux file name may hold any byte but `/` and NUL.
    let address = config.address.as_deref();
    let name = address.and_then(|a| a.as_bytes().strip_prefix(b"@"));
    let (listener, place) = match (name, address) {
        (Some(name), _) => (bind_abstract(name)?, Place::Abstract),
        (None, Some(path)) => bind_path(Path::new(path))?,
        (None, None) => bind_private()?,
    };
    let place = Arc::new(place);
    let shown = match name {
        Some(name) => format!("@{}", shown_name(name)),
        None => place.path().map(escaped).unwrap_or_default(),
    };
    let served = remove_on_signals(signals, Arc::clone(&place))
        .and_then(|()| writeln!(io::stdout(), "Server listening on {shown}"))
        .map_err(Box::from)
        .and_then(|()| serve(listener, &config, max_conns, accept_log));
    // Whatever happened after `bind`, even a closed stdout, the file goes.
    place.remove();
    served
}
// ANCHOR_END: run

// ANCHOR: stale
/// Where the socket lives, and what to remove when the server ends.
enum Place {
    /// A socket file we bound, identified by its device and inode, so
    /// that we never remove a file that is no longer ours; its lock file,
    /// held open (and locked) for as long as we run; and the private
    /// directory we made for it, if we did.
    File {
        path: PathBuf,
        id: (u64, u64),
        _lock: Option<Flock<File>>,
        dir: Option<PathBuf>,
    },
    /// A name in the abstract namespace: nothing to remove.
    Abstract,
}

/// Binds `path`, removing a stale socket file first, but only while
/// holding a lock that says no other server is using the path.
fn bind_path(path: &Path) -> Result<(UnixListener, Place), Box<dyn Error>> {
    let lock = claim_path(path)?;
    let listener = UnixListener::bind(path)
        .map_err(|err| format!("cannot listen on {}: {err}", escaped(path)))?;
    let meta = fs::metadata(path)?;
    let path = path.to_path_buf();
    let id = (meta.dev(), meta.ino());
    Ok((
        listener,
        Place::File {
            path,
            id,
            _lock: Some(lock),
            dir: None,
        },
    ))
}

/// Takes the lock that says no other server is using `path`, and then
/// removes a stale socket file there, if any: `path` is free to bind for
/// as long as the lock is held.
fn claim_path(path: &Path) -> Result<Flock<File>, Box<dyn Error>> {
    // A path that can name no socket makes no lock file beside it: not
    // empty, not a directory's, and short enough for `bind` (107 bytes,
    // which `from_pathname` checks).
    let bytes = path.as_os_str().as_encoded_bytes();
    if path.file_name().is_none() || bytes.ends_with(b"/") {
        let path = escaped(path);
        return Err(format!("'{path}' names no socket file").into());
    }
    std::os::unix::net::SocketAddr::from_pathname(path)
        .map_err(|err| format!("cannot listen on {}: {err}", escaped(path)))?;
    // Nor beside a file that is not a socket: a typo that names someone's
    // file must leave nothing behind.
    socket_at(path)?;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let cannot = |err: &dyn Display| {
        format!("cannot open {}: {err}", escaped(&lock_path))
    };
    // Only our user may open it: `flock` needs no write permission, so a
    // lock file others can read is one they can hold for ever. Never
    // through a symbolic link (O_NOFOLLOW), never a FIFO's open that waits
    // for a reader (O_NONBLOCK: it fails with ENXIO), never someone else's.
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&lock_path)
        .map_err(|err| cannot(&err))?;
    let meta = lock_file.metadata()?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        let owner = meta.uid();
        return Err(cannot(&format!("it belongs to uid {owner}")).into());
    }
    // A hard link to a file of ours passes the owner check: changing its
    // mode below would change that file's. A lock file is a plain file
    // with one name.
    if !meta.is_file() || meta.nlink() != 1 {
        let lock = escaped(&lock_path);
        return Err(
            format!("cannot use {lock}: it is not a file of its own").into()
        );
    }
    // A lock file an older version made with the umask's mode.
    lock_file.set_permissions(fs::Permissions::from_mode(0o600))?;
    let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| match errno {
            // Held: by another server of this path, alive.
            Errno::EWOULDBLOCK => {
                format!("another server is using {}", escaped(path))
            }
            // Anything else (ENOLCK: a file system without locks) says
            // nothing of other servers.
            _ => {
                let err = io::Error::from(errno);
                format!("cannot lock {}: {err}", escaped(&lock_path))
            }
        })?;
    // We hold the lock: no server that takes it is running. A socket file
    // here is stale, and may be removed, unless a program that takes no
    // lock listens on it. Anything else is not ours to touch.
    if socket_at(path)? {
        if !nobody_listens(path)? {
            let path = escaped(path);
            let why = "is in use by a program that takes no lock";
            return Err(format!("{path} {why}").into());
        }
        fs::remove_file(path).map_err(|err| {
            let path = escaped(path);
            format!("cannot remove the stale socket {path}: {err}")
        })?;
    }
    Ok(lock)
}

/// Whether a socket file is at `path` (`false`: nothing is). Anything
/// else there is an error: it is not ours to touch.
fn socket_at(path: &Path) -> Result<bool, Box<dyn Error>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(true),
        Ok(_) => {
            let path = escaped(path);
            Err(format!("{path} exists and is not a socket").into())
        }
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
        Err(err) => Err(format!("{}: {err}", escaped(path)).into()),
    }
}

/// Whether nothing listens on the socket file at `path`: a connection
/// refused (ECONNREFUSED) says so. One accepted, or one that would wait
/// for room in a full backlog (EAGAIN, since we do not wait), says that
/// something does, and so does EPROTOTYPE: the kernel found a live socket
/// bound to the file, of another type (datagram, seqpacket). Any other
/// error says that we cannot tell.
fn nobody_listens(path: &Path) -> Result<bool, Box<dyn Error>> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, UnixAddr, connect, socket,
    };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let probe = socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
    match connect(probe.as_raw_fd(), &UnixAddr::new(path)?) {
        Err(Errno::ECONNREFUSED) => Ok(true),
        Ok(()) | Err(Errno::EAGAIN | Errno::EPROTOTYPE) => Ok(false),
        Err(err) => {
            let path = escaped(path);
            Err(format!("cannot tell whether {path} is in use: {err}").into())
        }
    }
}
// ANCHOR_END: stale

// ANCHOR: private
/// Binds `socket` in a new directory that only we may enter (mode 0700):
/// whatever the socket file's own permissions, nobody else can reach it.
fn bind_private() -> Result<(UnixListener, Place), Box<dyn Error>> {
    let dir = private_dir()?;
    let path = dir.join("socket");
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(err) => {
            let _ = fs::remove_dir(&dir);
            let path = escaped(&path);
            return Err(format!("cannot listen on {path}: {err}").into());
        }
    };
    let meta = fs::metadata(&path)?;
    let id = (meta.dev(), meta.ino());
    let dir = Some(dir);
    Ok((
        listener,
        Place::File {
            path,
            id,
            _lock: None,
            dir,
        },
    ))
}

/// Makes a new directory, mode 0700, in the system's temporary directory,
/// with `mkdtemp`: it puts six random characters in place of the Xs, and
/// never uses a name that exists, so nobody can guess the name, nor make
/// the directory first.
fn private_dir() -> Result<PathBuf, Box<dyn Error>> {
    let base = std::env::temp_dir();
    mkdtemp(&base.join("unix-server.XXXXXX")).map_err(|err| {
        let base = escaped(&base);
        format!("cannot make a directory in {base}: {err}").into()
    })
}
// ANCHOR_END: private

/// `path` as a message shows it: escaped as `str::escape_debug` escapes
/// (a file name on Linux may hold any byte but `/` and NUL), so that a
/// newline in it cannot start a line of its own.
fn escaped(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

// ANCHOR: abstract
/// Binds a name in Linux's abstract namespace: no file at all.
fn bind_abstract(name: &[u8]) -> Result<UnixListener, Box<dyn Error>> {
    let addr = SocketAddr::from_abstract_name(name)?;
    UnixListener::bind_addr(&addr).map_err(|err| {
        format!("cannot listen on @{}: {err}", shown_name(name)).into()
    })
}

/// An abstract name as a message shows it: as `escaped` shows a path.
fn shown_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).escape_debug().to_string()
}
// ANCHOR_END: abstract

// ANCHOR: remove
impl Place {
    fn path(&self) -> Option<&Path> {
        match self {
            Place::File { path, .. } => Some(path),
            Place::Abstract => None,
        }
    }

    /// Removes the socket file, if it is still the one we made, and our
    /// private directory. std never removes a socket's file: dropping a
    /// `UnixListener` closes the socket and leaves the file behind.
    fn remove(&self) {
        let Place::File { path, id, dir, .. } = self else {
            return;
        };
        let ours = fs::symlink_metadata(path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == *id);
        if ours {
            let _ = fs::remove_file(path);
        }
        if let Some(dir) = dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP (`signals`, which `run` registered before
/// `bind`): remove the file, then die of the signal as if we had not
/// caught it, so that whoever started us sees why. Fails if the system
/// refuses the thread.
fn remove_on_signals(
    mut signals: Signals,
    place: Arc<Place>,
) -> io::Result<()> {
    thread::Builder::new()
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                place.remove();
                die_of(signal);
            }
        })
        .map(drop)
        .map_err(|err| {
            io::Error::new(err.kind(), format!("cannot start a thread: {err}"))
        })
}

/// Blocks SIGINT, SIGTERM and SIGHUP while signal-hook registers them:
/// it installs its handler before it records what the handler is to do,
/// and a signal in between would be lost (Chapter 6).
fn block_stop_signals() -> io::Result<()> {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGTERM};
    Ok(SigSet::from_iter([SIGINT, SIGTERM, SIGHUP]).thread_block()?)
}

/// Unblocks SIGINT, SIGTERM and SIGHUP. A parent that blocked them passed
/// its mask on through `exec`, and signal-hook's handlers, blocked, would
/// never run: the server would go on, and keep its file, after `kill`.
/// Called before any thread starts, since each thread inherits its mask,
/// and after the handlers are in: one already pending waits, like any
/// other, for the thread that removes the file.
fn unblock_stop_signals() -> io::Result<()> {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGTERM};
    Ok(SigSet::from_iter([SIGINT, SIGTERM, SIGHUP]).thread_unblock()?)
}

/// SIGTERM, SIGINT and SIGHUP, less those the parent left ignored: SIGINT
/// in a script's `&` job, SIGHUP under `nohup`. That was the user's
/// choice, which a handler would undo (Chapter 12).
fn stop_signals() -> io::Result<Vec<i32>> {
    let mut signals = vec![SIGTERM];
    for number in [SIGINT, SIGHUP] {
        if !is_ignored(number)? {
            signals.push(number);
        }
    }
    Ok(signals)
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

/// Dies of `signal`, by its default action, from any thread. The init of
/// a PID namespace (a container's PID 1) cannot: the kernel drops every
/// signal whose action for it is the default, even one it raises itself,
/// where signal-hook's `emulate_default_handler` would go on to `abort`
/// and end in a SIGSEGV (Chapter 12). There it exits with 128 + n, the
/// status a shell would report.
fn die_of(signal: i32) -> ! {
    if let Ok(signal) = Signal::try_from(signal) {
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        let _ = raise(signal); // The end, unless we are an init.
    }
    process::exit(128 + signal)
}
// ANCHOR_END: remove

// ANCHOR: serve
/// Listing 14-2's accept loop, on a Unix socket: a backoff after a failed
/// `accept`, and a limit on connections at which the one idle longest
/// makes room for the new one.
fn serve(
    listener: UnixListener,
    config: &Config,
    max_conns: usize,
    accept_log: AcceptLog,
) -> Result<(), Box<dyn Error>> {
    let conns = Conns::new(max_conns);
    let mut served = 0;
    let mut backoff = Backoff::new();
    while config.count.is_none_or(|count| served < count) {
        // Nobody reads the log any more: the server ends. Asked before
        // `accept`, not after: a client accepted is served, where one
        // dropped with its request unread would be reset.
        if LOG_CLOSED.load(Ordering::Relaxed) {
            break;
        }
        let conn = match listener.accept() {
            Ok((conn, _)) => Arc::new(conn),
            Err(err) => {
                backoff.failed(&err, &accept_log);
                continue;
            }
        };
        backoff.accepted();
        let Some(slot) = conns.take(&conn) else {
            refuse(&conn);
            continue;
        };
        let timeout = config.timeout;
        let kept = Arc::clone(&conn);
        // The system may refuse a thread: the client is then told, as one
        // over the limit is, and not counted.
        let spawned = thread::Builder::new()
            .spawn(move || answer_and_log(&conn, &slot, timeout));
        match spawned {
            Ok(_) => served += 1,
            Err(err) => {
                accept_log.line(format_args!("cannot start a thread: {err}"));
                refuse(&kept);
            }
        }
    }
    // No more clients. Close the listening socket first, so that a new one
    // is refused at once, not taken into the backlog to wait for the last
    // clients and then be reset; then let those finish.
    drop(listener);
    conns.wait_until_all_closed();
    accept_log.finish();
    Ok(())
}

/// Tells a client over the limit that the server is busy, and closes.
/// Reading what it already sent first, without waiting, matters here as
/// on TCP: a Unix socket closed with unread bytes makes the client's next
/// read after this message fail with ECONNRESET, not see the end.
fn refuse(mut conn: &UnixStream) {
    let _ = conn.set_nonblocking(true);
    let mut scratch = [0; 4096];
    for _ in 0..16 {
        if !matches!(conn.read(&mut scratch), Ok(n) if n > 0) {
            break;
        }
    }
    // One `write`, not `write_all`, which is of no use on a nonblocking
    // socket (Chapter 15): the empty send buffer of a connection just
    // accepted takes these 19 bytes whole; should it fail, the client
    // goes without them.
    let _ = conn.write(b"error: server busy\n");
}

/// Serves one client, and logs who it was, as the kernel tells it.
fn answer_and_log(conn: &UnixStream, slot: &Slot, timeout: Duration) {
    // The credentials of the process that connected, taken by the kernel
    // at `connect` time: they cannot be forged by the client.
    let who = match getsockopt(conn, sockopt::PeerCredentials) {
        Ok(cred) => format!("pid {} (uid {})", cred.pid(), cred.uid()),
        Err(err) => format!("a client ({err})"),
    };
    let mut lines = 0;
    let answered = answer(conn, slot, timeout, &mut lines);
    // The client sees the end of the stream now, not once the log line
    // is written: writing it waits while the log's reader does (a paused
    // terminal, a stuck log collector).
    let _ = conn.shutdown(Shutdown::Write);
    // From here on the thread only logs, and its place is not taken.
    slot.set_closing();
    match answered {
        // Closed to make room (`Conns::take`): what failed after that, a
        // reply to half a request, failed because of us, not the client.
        // A line too long (`InvalidData`) came before, and is the client's.
        Err(err) if err.kind() == ErrorKind::InvalidData || !slot.evicted() => {
            log(format_args!("{who}: {}", explain(&err)));
        }
        _ => {
            let s = if lines == 1 { "" } else { "s" };
            let logged =
                writeln!(io::stdout(), "{who}: answered {lines} line{s}");
            // Nobody reads the log any more: the server ends. The
            // accepting thread sees it before its next `accept`, once it
            // has started a thread for the connection it was waiting for.
            if logged.is_err_and(|e| e.kind() == ErrorKind::BrokenPipe) {
                LOG_CLOSED.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Set once writing the log has failed with `BrokenPipe`.
static LOG_CLOSED: AtomicBool = AtomicBool::new(false);
// ANCHOR_END: serve

/// Answers every line of one connection, each request and reply within
/// `timeout` (Listing 14-2), counting them in `answered`.
fn answer(
    conn: &UnixStream,
    slot: &Slot,
    timeout: Duration,
    answered: &mut usize,
) -> io::Result<()> {
    let mut reader = BufReader::new(Deadline {
        conn,
        by: Instant::now(),
        slot,
    });
    let mut line = Vec::new();
    // Replies not written yet, and how many: see below.
    let mut replies = Vec::new();
    let mut held = 0;
    loop {
        reader.get_mut().by = Instant::now() + timeout;
        // Idle from now on (from `accept` for the first request), unless
        // the next request is in the buffer already; the first byte of a
        // request marks it busy (`Deadline::read`).
        if *answered > 0 {
            slot.set_idle(reader.buffer().is_empty());
        }
        match read_line(&mut reader, &mut line)? {
            Line::Complete => {
                replies.extend_from_slice(b"server got: [");
                replies.extend_from_slice(&line);
                replies.extend_from_slice(b"]\n");
                held += 1;
                // The replies to requests that came together go out
                // together, in one write, once no whole request is left
                // in the buffer: a Unix socket has no Nagle's algorithm
                // to delay the second, but one write costs less than
                // several (Listing 14-2).
                if replies.len() < MAX_HELD && reader.buffer().contains(&b'\n')
                {
                    continue;
                }
                write_all_by(conn, &replies, Instant::now() + timeout)?;
                *answered += held;
                replies.clear();
                held = 0;
            }
            Line::TooLong => {
                // After the replies held, if any.
                let error =
                    format!("error: line longer than {MAX_LINE} bytes\n");
                replies.extend_from_slice(error.as_bytes());
                // The line too long is what the log says, however telling
                // the client goes: one that leaves without reading the
                // error resets the connection, and one closed to make room
                // meanwhile ends the drain early. Neither is news.
                let by = Instant::now() + timeout;
                let _ = write_all_by(conn, &replies, by)
                    .and_then(|()| close_gently(conn, by));
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("a line longer than {MAX_LINE} bytes"),
                ));
            }
            Line::End => return Ok(()),
        }
    }
}

/// A socket whose reads must all be done `by` a point in time; bytes
/// that arrive mark its slot busy.
struct Deadline<'a> {
    conn: &'a UnixStream,
    by: Instant,
    slot: &'a Slot,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn.set_read_timeout(Some(time_left(self.by)?))?;
        let mut conn = self.conn;
        let n = conn.read(buf)?;
        if n > 0 {
            self.slot.request_begun();
        }
        Ok(n)
    }
}

/// Writes all of `buf` by the deadline `by`.
fn write_all_by(
    mut conn: &UnixStream,
    mut buf: &[u8],
    by: Instant,
) -> io::Result<()> {
    while !buf.is_empty() {
        conn.set_write_timeout(Some(time_left(by)?))?;
        match conn.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn time_left(by: Instant) -> io::Result<Duration> {
    by.checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| ErrorKind::TimedOut.into())
}

enum Line {
    Complete,
    TooLong,
    End,
}

/// Reads one line of at most MAX_LINE bytes (Listing 13-2).
fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
) -> io::Result<Line> {
    line.clear();
    let limit = MAX_LINE as u64 + 1;
    if reader.take(limit).read_until(b'\n', line)? == 0 {
        return Ok(Line::End);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        Ok(Line::Complete)
    } else if line.len() > MAX_LINE {
        Ok(Line::TooLong)
    } else {
        Ok(Line::Complete)
    }
}

/// Half-closes, then reads and discards until the client closes too, or
/// until `by`.
fn close_gently(mut conn: &UnixStream, by: Instant) -> io::Result<()> {
    conn.shutdown(Shutdown::Write)?;
    let mut scratch = [0; 8192];
    loop {
        conn.set_read_timeout(Some(time_left(by)?))?;
        match conn.read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // Stopped and continued (Ctrl-Z, `fg`): Linux fails a read
            // with a timeout with EINTR (Chapter 3). Read again.
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// How long a connection must have waited for a request, or for the rest
/// of one, before it may be closed to make room for a new one (Listing
/// 14-2).
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// The connections being served, up to a maximum, and since when each
/// has been idle or busy with its request (Listing 14-2).
struct Conns {
    table: Mutex<Table>,
    closed: Condvar,
    max: usize,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: HashMap<u64, (Arc<UnixStream>, Since)>,
}

/// Since when a connection has been idle, or busy with its current
/// request (and its reply).
#[derive(Clone, Copy)]
enum Since {
    Idle(Instant),
    Request(Instant),
    /// Done with, or shut down to make room (`evicted`): its thread has
    /// only to log and end. It keeps its place until then, since a log
    /// line can wait, and is never closed to make room again.
    Closing {
        evicted: bool,
    },
}

struct Slot {
    conns: Arc<Conns>,
    id: u64,
}

impl Conns {
    fn new(max: usize) -> Arc<Conns> {
        Arc::new(Conns {
            table: Mutex::default(),
            closed: Condvar::new(),
            max,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for `conn`; at the limit, the connection idle longest, or
    /// else the one whose request has stalled longest, if for EVICT_AFTER
    /// at least, is shut down to make room.
    fn take(self: &Arc<Self>, conn: &Arc<UnixStream>) -> Option<Slot> {
        let mut table = self.lock();
        if table.open.len() >= self.max {
            // Idle ones first (`false` sorts first), the oldest first.
            let (_, _, id) = table
                .open
                .iter()
                .filter_map(|(id, (_, since))| match *since {
                    Since::Idle(at) => Some((false, at, *id)),
                    Since::Request(at) => Some((true, at, *id)),
                    Since::Closing { .. } => None,
                })
                .filter(|&(_, at, _)| at.elapsed() >= EVICT_AFTER)
                .min()?;
            if let Some((evicted, since)) = table.open.get_mut(&id) {
                let _ = evicted.shutdown(Shutdown::Both);
                *since = Since::Closing { evicted: true };
            }
            // Its place is free once its thread has ended: at once, as a
            // rule, since the shutdown ends its wait, but not while its log
            // line waits. Until then it counts, so that the limit bounds
            // threads and descriptors.
            table = self
                .closed
                .wait_timeout_while(table, EVICT_AFTER, |t| {
                    t.open.contains_key(&id)
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if table.open.len() >= self.max {
                return None;
            }
        }
        let id = table.next;
        table.next += 1;
        let idle = Since::Idle(Instant::now());
        table.open.insert(id, (Arc::clone(conn), idle));
        Some(Slot {
            conns: Arc::clone(self),
            id,
        })
    }

    fn wait_until_all_closed(&self) {
        let table = self.lock();
        drop(self.closed.wait_while(table, |t| !t.open.is_empty()));
    }
}

impl Slot {
    /// Whether `Conns::take` closed the connection to make room. Its
    /// reads then return what was queued and then 0, our own shutdown,
    /// not the client's (Chapter 13), and its writes fail with EPIPE.
    fn evicted(&self) -> bool {
        let table = self.conns.lock();
        let since = table.open.get(&self.id).map(|(_, since)| since);
        matches!(since, Some(Since::Closing { evicted: true }))
    }

    /// The connection is done with: its thread has only to log and end.
    fn set_closing(&self) {
        let mut table = self.conns.lock();
        if let Some((_, since @ (Since::Idle(_) | Since::Request(_)))) =
            table.open.get_mut(&self.id)
        {
            *since = Since::Closing { evicted: false };
        }
    }

    /// Marks the connection idle, or busy with a request that begins now.
    fn set_idle(&self, idle: bool) {
        let now = Instant::now();
        let mut table = self.conns.lock();
        if let Some((_, since @ (Since::Idle(_) | Since::Request(_)))) =
            table.open.get_mut(&self.id)
        {
            *since = if idle {
                Since::Idle(now)
            } else {
                Since::Request(now)
            };
        }
    }

    /// A byte of a request has come: an idle connection is busy from now
    /// on; a busy one stays busy since its request began.
    fn request_begun(&self) {
        let mut table = self.conns.lock();
        if let Some((_, since @ Since::Idle(_))) = table.open.get_mut(&self.id)
        {
            *since = Since::Request(Instant::now());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.lock().open.remove(&self.id);
        self.conns.closed.notify_all();
    }
}

/// The accepting thread's log lines, handed to a thread of their own
/// through a bounded queue, and dropped, and counted, if it is full: that
/// thread must never wait for the log (Listing 14-2).
struct AcceptLog {
    queue: SyncSender<String>,
    dropped: Arc<AtomicU64>,
    writer: thread::JoinHandle<()>,
}

/// How many of the accepting thread's lines may wait for the log.
const ACCEPT_LOG_QUEUE: usize = 64;

impl AcceptLog {
    /// Starts the thread that writes the lines.
    fn start() -> io::Result<AcceptLog> {
        let (queue, lines) = mpsc::sync_channel::<String>(ACCEPT_LOG_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&dropped);
        let writer = thread::Builder::new().spawn(move || {
            for line in lines {
                log(line);
                let dropped = counted.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    log(format_args!(
                        "{dropped} log lines dropped: the log fell behind"
                    ));
                }
            }
        })?;
        Ok(AcceptLog {
            queue,
            dropped,
            writer,
        })
    }

    /// Queues one line, or drops it and counts it; never waits.
    fn line(&self, message: impl Display) {
        if self.queue.try_send(message.to_string()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes the queue, and waits until the lines in it are written.
    fn finish(self) {
        drop(self.queue);
        let _ = self.writer.join();
    }
}

/// After a failed `accept`, waits from 5 ms, doubling up to a second while
/// the failures go on, and logs the first failure of a shortage only
/// (Listing 14-2).
struct Backoff {
    wait: Duration,
    /// When `accept` last failed, if it has.
    failed_at: Option<Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);
    /// How long `accept` must go without failing before a shortage is
    /// over (Listing 14-2).
    const QUIET: Duration = Duration::from_secs(10);

    fn new() -> Backoff {
        Backoff {
            wait: Backoff::FIRST,
            failed_at: None,
        }
    }

    fn failed(&mut self, err: &io::Error, accept_log: &AcceptLog) {
        if err.kind() == ErrorKind::ConnectionAborted {
            return;
        }
        let now = Instant::now();
        if self
            .failed_at
            .is_none_or(|at| now.duration_since(at) >= Backoff::QUIET)
        {
            accept_log
                .line(format_args!("accept: {err}; trying again, less often"));
        }
        self.failed_at = Some(now);
        thread::sleep(self.wait);
        self.wait = (self.wait * 2).min(Backoff::MOST);
    }

    /// A connection came: the next failure waits 5 ms again.
    fn accepted(&mut self) {
        self.wait = Backoff::FIRST;
    }
}

/// Raises the soft limit on open file descriptors to the hard one, and
/// returns it (Listing 14-2).
fn raise_fd_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(soft.max(hard))
}

/// The most connections at once, unless `--max-conns` says.
const MAX_CONNS: usize = 1000;

/// Descriptors kept for all but connections: the standard three, the
/// listening socket, the one `accept` needs to refuse a client or to make
/// room for it, and a margin.
const SPARE_FDS: u64 = 16;

/// The limit on connections when `--max-conns` is not given: MAX_CONNS,
/// or fewer if the descriptors allow fewer. Below the descriptors, the
/// table says no first, and can close an idle connection to make room;
/// above them, `accept` fails first, and idle clients lock out everyone.
fn default_max_conns(fds: u64) -> usize {
    let room = fds.saturating_sub(SPARE_FDS);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_CONNS)
}

/// How many descriptors are open at start beyond the standard three, which
/// SPARE_FDS counts: those that whoever started us left open without
/// close-on-exec (Listing 14-1's session shows a shell passing them on).
/// They take room that connections cannot have, if numbered below
/// `limit`: the limit bounds the numbers a descriptor may have, not how
/// many are open, and a new one takes the lowest number free, so one
/// numbered at the limit or above takes no room. Counted once, before we
/// open any of our own, in `/proc/self/fd` (Linux), less the one
/// descriptor reading that directory takes; none if it cannot be read.
fn inherited_fds(limit: u64) -> u64 {
    let below_limit = |entry: io::Result<std::fs::DirEntry>| {
        let fd: u64 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        (fd < limit).then_some(fd)
    };
    let open = std::fs::read_dir("/proc/self/fd")
        .map_or(0, |dir| dir.filter_map(below_limit).count());
    u64::try_from(open.saturating_sub(3 + 1)).unwrap_or(0)
}

fn explain(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".into(),
        _ => err.to_string(),
    }
}

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a log that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("unix-server: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Reads the command line.
fn parse_args() -> Result<Config, lexopt::Error> {
    use lexopt::prelude::*;
    let mut config = Config {
        address: None,
        count: None,
        max_conns: None,
        timeout: Duration::from_secs(10),
    };
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => config.count = Some(args.value()?.parse()?),
            Long("max-conns") => {
                let most = at_least_one("--max-conns", args.value()?)?;
                config.max_conns = Some(most);
            }
            Long("timeout") => {
                let secs = at_least_one("--timeout", args.value()?)?;
                if secs > 86_400 {
                    return Err("--timeout is at most 86400 seconds".into());
                }
                config.timeout = Duration::from_secs(secs);
            }
            Value(value) if config.address.is_none() => {
                config.address = Some(value);
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(config)
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

/// A number from the command line that must be 1 or more.
fn at_least_one<T>(
    name: &str,
    value: std::ffi::OsString,
) -> Result<T, lexopt::Error>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: Into<Box<dyn Error + Send + Sync + 'static>>,
{
    use lexopt::prelude::*;
    let number: T = value.parse()?;
    if number < T::from(1) {
        return Err(format!("{name} must be at least 1").into());
    }
    Ok(number)
}
// ANCHOR_END: whole
