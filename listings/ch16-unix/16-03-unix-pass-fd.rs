// ANCHOR: whole
// Listing 16-3: passing an open file from one process to another. The
// server opens FILE for each client and sends it the file descriptor
// over a Unix socket (SCM_RIGHTS); the client reads the file through it
// and copies it to standard output. The client needs no permission on
// the file itself: it gets what the server could open.
//
// `unix-pass-fd serve PATH FILE [--count N]`: anyone who may reach PATH
// may connect (its mode is 0666). `unix-pass-fd fetch PATH`.

use std::error::Error;
use std::ffi::OsString;
use std::fmt::Display;
use std::fs::{self, File};
use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, Signal, raise, signal};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, getsockopt, recvmsg,
    sendmsg, sockopt,
};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket2::{Domain, SockAddr, Socket, Type};

const USAGE: &str =
    "usage: unix-pass-fd serve PATH FILE [--count N] | fetch PATH";

enum Mode {
    Serve {
        path: PathBuf,
        file: PathBuf,
        count: Option<usize>,
    },
    Fetch {
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads the server's log any more: that ends it.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            log(format_args!("{err}"));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    match parse_args().map_err(|e| format!("{e}; {USAGE}"))? {
        Mode::Serve { path, file, count } => serve(&path, &file, count),
        Mode::Fetch { path } => {
            restore_sigpipe()?;
            fetch(&path)
                .map_err(|err| format!("{}: {err}", escaped(&path)).into())
        }
    }
}

// ANCHOR: send
/// Sends `fd` to the peer, with `note` as the message's bytes: a message
/// that carries descriptors must carry at least one byte of data too.
fn send_fd(sock: &UnixStream, fd: RawFd, note: &[u8]) -> nix::Result<()> {
    let data = [IoSlice::new(note)];
    let fds = [fd];
    let rights = [ControlMessage::ScmRights(&fds)];
    // MSG_NOSIGNAL: a client that hung up is an error, not SIGPIPE.
    sendmsg::<()>(
        sock.as_raw_fd(),
        &data,
        &rights,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}
// ANCHOR_END: send

// ANCHOR: receive
/// The most descriptors Linux passes in one message (`SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;

/// Receives one message and the one descriptor it must carry, waiting
/// at most `patience`. Any more that came with it are closed, and
/// reported in one line.
fn receive_fd(
    sock: &UnixStream,
    patience: Duration,
) -> Result<(Vec<u8>, OwnedFd), Box<dyn Error>> {
    let mut note = [0; 256];
    let mut data = [IoSliceMut::new(&mut note)];
    // Room for as many descriptors as a sender may pass. With room for
    // one only, the kernel would install what fits (alignment makes it
    // two) and set MSG_CTRUNC, and nix would not hand us those.
    let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    // MSG_CMSG_CLOEXEC: the new descriptor is close-on-exec from the
    // start, so no program we might run inherits it by accident.
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    let by = Instant::now() + patience;
    let msg = loop {
        // The time left, not `patience` again: a wait that starts over
        // after each interruption could last for ever.
        let left = by.saturating_duration_since(Instant::now());
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut data,
            Some(&mut space),
            flags,
        ) {
            // Stopped and continued (Ctrl-Z, `fg`): Linux fails a read
            // with a timeout with EINTR (Chapter 3). Wait for the rest.
            Err(Errno::EINTR) => {}
            // The time has passed, and nothing came: say so, not
            // EAGAIN's "Try again".
            Err(Errno::EAGAIN) => {
                return Err("timed out waiting for the descriptor".into());
            }
            result => break result?,
        }
    };
    let (bytes, mut received) = (msg.bytes, Vec::new());
    // `cmsgs` fails if the control data was cut short (MSG_CTRUNC), which
    // with this much room means our descriptor table is full. The kernel
    // may have installed some of a message's descriptors before the table
    // filled, and nix does not hand those over: they stay open until we
    // exit. That costs this one-shot client nothing; a process that runs
    // on must keep room in its table, or read the control data itself.
    let cmsgs = msg.cmsgs().map_err(|_| {
        "the descriptor did not fit: our descriptor table is full (MSG_CTRUNC)"
    })?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel has just put these descriptors in our
            // table; nothing else in this process knows them, so each
            // gets exactly one owner.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if bytes == 0 && received.is_empty() {
        return Err("the server hung up".into());
    }
    let mut received = received.into_iter();
    let fd = received.next().ok_or("a message without a descriptor")?;
    // Dropping the others closes them.
    let extra = received.count();
    if extra > 0 {
        log(format_args!(
            "closed {extra} descriptors more than asked for"
        ));
    }
    Ok((note[..bytes].to_vec(), fd))
}
// ANCHOR_END: receive

// ANCHOR: serve
fn serve(
    path: &Path,
    file: &Path,
    count: Option<usize>,
) -> Result<(), Box<dyn Error>> {
    // Fail early, with the server's own error, if FILE cannot be read.
    File::open(file).map_err(|err| format!("{}: {err}", escaped(file)))?;
    // Handlers before `bind`, as in Listing 16-1: a signal that comes in
    // between must not leave the file behind.
    // Blocked while they are registered, so that none is lost (Chapter 6).
    block_stop_signals()?;
    let signals = Signals::new(stop_signals()?)
        .map_err(|err| format!("cannot watch for signals: {err}"))?;
    // Unblocked too: a parent that blocked them passed its mask on.
    unblock_stop_signals()?;
    let listener = bind_for_anyone(path)
        .map_err(|err| format!("cannot listen on {}: {err}", escaped(path)))?;
    let socket_file = Arc::new(SocketFile::bound(path)?);
    let served = remove_on_signals(signals, Arc::clone(&socket_file))
        .map_err(Box::from)
        .and_then(|()| send_to_each(&listener, path, file, count));
    // std never removes a socket's file: we do, however we end.
    socket_file.remove();
    served
}

fn send_to_each(
    listener: &UnixListener,
    path: &Path,
    file: &Path,
    count: Option<usize>,
) -> Result<(), Box<dyn Error>> {
    // Anyone who can reach the socket file gets FILE. A server that must
    // not say yes to everyone checks the uid from SO_PEERCRED before it
    // sends.
    writeln!(io::stdout(), "Server listening on {}", escaped(path))?;
    let (mut served, mut backoff) = (0, Backoff::new());
    while count.is_none_or(|count| served < count) {
        let conn = match listener.accept() {
            // No client came of it: it is not counted.
            Err(err) => {
                backoff.failed(&err);
                continue;
            }
            Ok((conn, _)) => conn,
        };
        served += 1;
        backoff.accepted();
        let cred = getsockopt(&conn, sockopt::PeerCredentials);
        let result = cred.map_err(Box::<dyn Error>::from).and_then(|cred| {
            // A new open file per client: each gets its own offset.
            let opened = File::open(file)?;
            let name = file.as_os_str().as_encoded_bytes();
            send_fd(&conn, opened.as_raw_fd(), name)?;
            // Our copy closes here; the client's stays open.
            Ok(cred)
        });
        match result {
            Ok(cred) => writeln!(
                io::stdout(),
                "pid {} (uid {}): sent {}",
                cred.pid(),
                cred.uid(),
                escaped(file)
            )?,
            Err(err) => log(format_args!("a client: {err}")),
        }
    }
    Ok(())
}

/// Binds `path` with a socket file that anyone may connect to: mode 0666,
/// which connecting needs (write permission), given by `bind` itself with
/// the umask 0111. A chmod by name after `bind` would follow a symbolic
/// link that someone put at the path meanwhile, and change the mode of
/// whatever it names. The umask is the process's: we are its only thread
/// here, so no other file is made with it.
fn bind_for_anyone(path: &Path) -> io::Result<UnixListener> {
    use nix::sys::stat::{Mode as Perms, umask};
    let old = umask(Perms::from_bits_truncate(0o111));
    let bound = UnixListener::bind(path);
    umask(old);
    bound
}
// ANCHOR_END: serve

/// `path` as a message shows it: escaped as `str::escape_debug` escapes
/// (a file name on Linux may hold any byte but `/` and NUL), so that a
/// newline in it cannot start a line of its own.
fn escaped(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

/// After a failed `accept`, waits from 5 ms, doubling up to a second while
/// the failures go on, and logs the first failure of a run only, as
/// Listing 16-1's `Backoff` does. Out of descriptors, or refused by a
/// security policy, `accept` fails at once, and again on every try: a
/// loop that tried again at once would spin, with a line per turn.
struct Backoff {
    wait: Duration,
    /// When `accept` last failed, if it has.
    failed_at: Option<Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);
    /// How long `accept` must go without failing before a run of
    /// failures is over, and the next one is logged.
    const QUIET: Duration = Duration::from_secs(10);

    fn new() -> Backoff {
        Backoff {
            wait: Backoff::FIRST,
            failed_at: None,
        }
    }

    fn failed(&mut self, err: &io::Error) {
        // One client that gave up while it waited in the queue, as other
        // systems report it (Linux hands it over, and sending to it
        // fails): logged, since it is one line per client, and no reason
        // to pause.
        if err.kind() == ErrorKind::ConnectionAborted {
            log(format_args!("accept: {err}"));
            return;
        }
        let now = Instant::now();
        if self
            .failed_at
            .is_none_or(|at| now.duration_since(at) >= Backoff::QUIET)
        {
            log(format_args!("accept: {err}; trying again, less often"));
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

// ANCHOR: fetch
/// Connects, receives a descriptor, and copies what it reads to stdout.
/// Ten seconds in all, to connect and to receive.
fn fetch(path: &Path) -> Result<(), Box<dyn Error>> {
    let by = Instant::now() + Duration::from_secs(10);
    let sock = connect_by(path, by)?;
    let left = by.saturating_duration_since(Instant::now());
    let (_name, fd) = receive_fd(&sock, left)?;
    io::copy(&mut File::from(fd), &mut io::stdout().lock())?;
    Ok(())
}

/// Connects to the socket at `path`, waiting until `by` at most. While
/// the server's queue is full, `connect` waits for it to accept, for ever
/// unless the socket's send timeout (SO_SNDTIMEO) bounds the wait
/// (`unix_stream_connect()` in `net/unix/af_unix.c`). `UnixStream::connect`
/// cannot set it first; socket2 can, and opens the socket close-on-exec.
fn connect_by(path: &Path, by: Instant) -> Result<UnixStream, Box<dyn Error>> {
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    let addr = SockAddr::unix(path)?;
    loop {
        let left = by.saturating_duration_since(Instant::now());
        sock.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        match sock.connect(&addr) {
            Ok(()) => break,
            // Stopped and continued: the wait fails with EINTR, and the
            // socket is as it was (a Unix connect is all or nothing).
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            // The time has passed, and the queue is still full.
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                return Err("timed out waiting for the server to accept".into());
            }
            Err(err) => return Err(err.into()),
        }
    }
    sock.set_write_timeout(None)?;
    Ok(sock.into())
}
// ANCHOR_END: fetch

/// The server's socket file, removed when the server ends, but only if
/// it is still the one we bound: same device, same inode (Listing 16-1).
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    /// The socket file that `bind` has just made at `path`.
    fn bound(path: &Path) -> io::Result<SocketFile> {
        let meta = fs::symlink_metadata(path)?;
        let id = (meta.dev(), meta.ino());
        Ok(SocketFile {
            path: path.to_path_buf(),
            id,
        })
    }

    fn remove(&self) {
        if fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.id)
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP (`signals`, registered before `bind`):
/// remove the file, then die of the signal. Fails if the system refuses
/// the thread.
fn remove_on_signals(
    mut signals: Signals,
    file: Arc<SocketFile>,
) -> io::Result<()> {
    thread::Builder::new()
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                file.remove();
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

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a log that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("unix-pass-fd: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Gives SIGPIPE back its default action: `fetch` is a filter, and ends
/// quietly, like `cat`, when its output goes away.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

fn parse_args() -> Result<Mode, lexopt::Error> {
    use lexopt::prelude::*;
    let (mut words, mut count) = (Vec::<OsString>::new(), None);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            // Paths as bytes: a Linux file name may hold any but `/` and NUL.
            Value(value) => words.push(value),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    let rest = words.get(1..).unwrap_or_default();
    let mode = match words.first().map(|word| (word.to_str(), word)) {
        Some((Some(mode), _)) => Some(mode),
        Some((None, word)) => {
            return Err(format!("unknown mode {word:?}").into());
        }
        None => None,
    };
    match (mode, rest, count) {
        (Some("serve"), [path, file], count) => Ok(Mode::Serve {
            path: path.into(),
            file: file.into(),
            count,
        }),
        (Some("fetch"), [path], None) => Ok(Mode::Fetch { path: path.into() }),
        (Some("serve"), _, _) => Err("serve needs PATH and FILE".into()),
        (Some("fetch"), _, _) => Err("fetch needs PATH, and no --count".into()),
        (Some(other), _, _) => {
            Err(format!("unknown mode '{}'", other.escape_debug()).into())
        }
        (None, _, _) => Err("which mode?".into()),
    }
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
