// ANCHOR: whole
// Listing 30-1: the framed servers of Part III on tokio, over TCP or a Unix
// socket. With `--frames lines` (the default) each line gets
// `server got: [<line>]`, Listing 13-2's protocol; with `--frames length`
// each frame (a 4-byte big-endian length, then that many bytes) gets a
// frame `server got: [<frame>]`, Listing 13-3's. Every request and every
// reply has a deadline, lines and frames have a maximum length, the number
// of connections has a limit (when it is reached, the connection that has
// waited longest for a request, a second at least, makes room for the new
// one, or else the one whose request has stalled longest; if none has, the
// new client is told that the server is busy), a failed `accept` waits and
// tries again, and the backlog and the socket buffers are set.
//
// `async-server [HOST:PORT] [--unix PATH] [--frames lines|length]
// [--count N] [--max-conns N] [--timeout SECS] [--backlog N]`

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{
    FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, Signal as NixSignal, raise};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::runtime::{Builder, Runtime};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_util::bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{
    Decoder, Encoder, Framed, LengthDelimitedCodec, LinesCodec, LinesCodecError,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const USAGE: &str = "usage: async-server [HOST:PORT] [--unix PATH] \
                     [--frames lines|length] [--count N] [--max-conns N] \
                     [--timeout SECS] [--backlog N]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// The longest line a client may send, newline not counted; a `\r`
/// before it is (`LinesCodec` drops it only after the check).
const MAX_LINE: usize = 1024;
/// The largest frame a client may send.
const MAX_FRAME: usize = 64 * 1024;
/// The largest reply: a frame in `server got: [` and `]`, 14 bytes more.
const MAX_REPLY: usize = MAX_FRAME + 14;
/// How long a client over the limit may take to hear that we are busy.
const BUSY_LIMIT: Duration = Duration::from_secs(1);

/// What the command line sets.
struct Config {
    /// `HOST:PORT`, or a path with `--unix`.
    place: Place,
    frames: Frames,
    /// Stop after this many connections, if given.
    count: Option<usize>,
    /// The most connections served at once, if `--max-conns` says.
    max_conns: Option<usize>,
    /// How long a client has to send a whole request, and to take a
    /// whole reply.
    timeout: Duration,
    /// The length of the queue of connections waiting for `accept`.
    backlog: u32,
}

enum Place {
    Tcp(String),
    Unix(PathBuf),
}

#[derive(Clone, Copy)]
enum Frames {
    Lines,
    Length,
}

fn main() -> ExitCode {
    let code = match start() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads the log any more: that ends the server.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            log(format_args!("{err}"));
            ExitCode::FAILURE
        }
    };
    flush_log();
    code
}

/// Raises the limit on descriptors and counts those inherited first,
/// since tokio's runtime opens some of its own as it starts; then runs the
/// server on the runtime.
fn start() -> Result<(), Box<dyn Error>> {
    let limit = raise_fd_limit()?;
    let fds = limit.saturating_sub(inherited_fds(limit));
    block_stop_signals()?;
    let runtime = runtime()
        .map_err(|err| format!("cannot start tokio's runtime: {err}"))?;
    runtime.block_on(run(fds))
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
            format!("async-server: cannot start tokio's runtime: {why}\n");
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

// ANCHOR: run
async fn run(fds: u64) -> Result<(), Box<dyn Error>> {
    let config = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let max_conns = config.max_conns.unwrap_or(default_max_conns(fds));
    // A log grown to the file size limit is an error on that write, as a
    // client gone is one on its connection: neither ends the server.
    ignore_sigxfsz()?;
    // Made before the server says it is ready, so that a signal is never
    // taken by its default action: the socket file must go with us.
    let mut signals = Signals::new()
        .map_err(|err| format!("cannot install a signal handler: {err}"))?;
    unblock_stop_signals()
        .map_err(|err| format!("cannot unblock the stop signals: {err}"))?;
    let place = match &config.place {
        Place::Tcp(spec) => spec.clone(),
        Place::Unix(path) => escaped(path),
    };
    let (listener, socket_file) = match &config.place {
        Place::Tcp(spec) => {
            (Listener::Tcp(listen(spec, config.backlog)?), None)
        }
        Place::Unix(path) => {
            let (listener, file) = bind_unix(path, config.backlog)?;
            (Listener::Unix(listener), Some(file))
        }
    };
    // The log's thread is the last step that can fail: started before the
    // line that says we are ready, on which whoever waits for it connects.
    let ready = start_log()
        .map_err(|err| {
            let why = format!("cannot start the log thread: {err}");
            io::Error::new(err.kind(), why)
        })
        .and_then(|()| {
            listener.name().map_err(|err| {
                let why = format!("cannot read the address of {place}: {err}");
                io::Error::new(err.kind(), why)
            })
        })
        .and_then(|name| writeln!(io::stdout(), "Server listening on {name}"));
    // The loop runs as a task, on the runtime's worker threads: this
    // future runs in `block_on`, on the main thread, and every task it
    // spawned would be handed over to a worker.
    let stopped = match ready {
        // The loop closes the listening socket when it is done with it.
        Ok(()) => {
            let accepting = tokio::spawn(async move {
                accept_loop(listener, &config, max_conns, &mut signals).await
            });
            join_loop(accepting, socket_file).await?
        }
        // The file goes whatever happened after `bind`, even a closed
        // stdout.
        Err(err) => {
            drop(listener);
            drop(socket_file);
            Err(err)
        }
    };
    match stopped? {
        Stop::Done => Ok(()),
        // Die of the signal, now that the file is gone, as the shell or
        // the service manager that sent it expects: no `Drop` runs then,
        // and the log's thread is stopped where it is: flush it first.
        Stop::Signal(number) => {
            flush_log();
            die_of(number)
        }
    }
}

/// How the accept loop ended, once the socket file, if any, is gone: it
/// goes whatever ended the loop. If the loop's task panicked, its
/// `JoinError` returns through `?`, and `socket_file` is dropped on the
/// way out.
async fn join_loop(
    accepting: JoinHandle<io::Result<Stop>>,
    socket_file: Option<SocketFile>,
) -> Result<io::Result<Stop>, JoinError> {
    let stopped = accepting.await?;
    drop(socket_file);
    Ok(stopped)
}

/// Why the accept loop ended.
enum Stop {
    /// `--count` connections served, or nobody reads the log any more.
    Done,
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(i32),
}

/// Accepts connections and serves each in a task of its own, until a
/// signal comes, or until `--count` connections have been served.
async fn accept_loop(
    listener: Listener,
    config: &Config,
    max_conns: usize,
    signals: &mut Signals,
) -> io::Result<Stop> {
    let slots = Slots::new(max_conns, config.timeout);
    let tasks = TaskTracker::new();
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    let mut backoff = Backoff::new();
    let mut served = 0;
    while config.count.is_none_or(|count| served < count) {
        // Nobody reads the log any more: the server ends. Asked before
        // `accept`, not after: a client accepted is served, where one
        // dropped with its request unread would be reset.
        if LOG_CLOSED.load(Ordering::Relaxed) {
            break;
        }
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE (no file descriptor left) and the like.
                    // Trying again at once would fail at once, in a loop
                    // that eats a CPU; wait first, longer and longer, and
                    // listen meanwhile: the branches here are dropped.
                    tokio::select! {
                        () = backoff.failed(&err) => continue,
                        _ = signals.int.recv() => return Ok(Stop::Signal(SIGINT)),
                        _ = signals.term.recv() => return Ok(Stop::Signal(SIGTERM)),
                        _ = signals.hup.recv() => return Ok(Stop::Signal(SIGHUP)),
                    }
                }
            },
            _ = signals.int.recv() => return Ok(Stop::Signal(SIGINT)),
            _ = signals.term.recv() => return Ok(Stop::Signal(SIGTERM)),
            _ = signals.hup.recv() => return Ok(Stop::Signal(SIGHUP)),
        };
        backoff.accepted();
        // Not one served, for `--count`.
        let peer = match peer {
            Ok(peer) => peer,
            Err(err) => {
                log(format_args!("a client: {err}"));
                continue;
            }
        };
        // A free slot, or the slot of the connection that has waited
        // longest for a request; none if every connection is busy.
        let Some(slot) = slots.take() else {
            // A refused client holds a descriptor too, for up to
            // BUSY_LIMIT: a crowd of them, accepted faster than they are
            // told, would use up the descriptors kept spare. So at most
            // REFUSALS at once; the next waits, listening meanwhile.
            let refusing = Arc::clone(&refusals).acquire_owned();
            let permit = tokio::select! {
                permit = refusing => permit,
                _ = signals.int.recv() => return Ok(Stop::Signal(SIGINT)),
                _ = signals.term.recv() => return Ok(Stop::Signal(SIGTERM)),
                _ = signals.hup.recv() => return Ok(Stop::Signal(SIGHUP)),
            };
            let frames = config.frames;
            tasks.spawn(async move {
                refuse(socket, frames).await;
                drop(permit);
            });
            continue;
        };
        served += 1;
        let (frames, timeout) = (config.frames, config.timeout);
        tasks.spawn(serve(socket, peer, frames, timeout, slot));
    }
    // No more clients: close the listening socket, so that a new one is
    // refused at once, not taken into the backlog to wait for the last
    // clients and then be reset. Then let those finish, unless a signal
    // comes first: not listening for it would leave it caught by tokio.
    drop(listener);
    tasks.close();
    tokio::select! {
        () = tasks.wait() => Ok(Stop::Done),
        _ = signals.int.recv() => Ok(Stop::Signal(SIGINT)),
        _ = signals.term.recv() => Ok(Stop::Signal(SIGTERM)),
        _ = signals.hup.recv() => Ok(Stop::Signal(SIGHUP)),
    }
}
// ANCHOR_END: run

// ANCHOR: listen
/// What each connection's socket buffers may hold, each way, as in
/// Listing 14-2: the size asked for, which Linux doubles for its
/// bookkeeping. Left to size them itself, Linux grows a send buffer up to
/// 4 MiB (`tcp_wmem`), and a client that sends requests and reads no
/// replies has the kernel hold megabytes of them for it, where neither the
/// slots nor `Framed`'s backpressure sees them.
const SOCKET_BUFFER: u32 = 64 * 1024;

/// Binds and listens with tokio's `TcpSocket`, which, unlike
/// `TcpListener::bind`, lets us choose the backlog and the buffers.
/// `SO_REUSEADDR` as std sets it.
fn listen(spec: &str, backlog: u32) -> Result<TcpListener, Box<dyn Error>> {
    let mut last = None;
    for addr in resolve(spec)? {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        };
        // Each step's error names the step: "cannot listen on ...".
        let listening = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            // Inherited by every connection accepted (the receive side
            // must be set before `listen`): see SOCKET_BUFFER.
            socket.set_send_buffer_size(SOCKET_BUFFER)?;
            socket.set_recv_buffer_size(SOCKET_BUFFER)?;
            socket.bind(addr)?;
            socket.listen(backlog)
        });
        match listening {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    let err = last.map_or_else(|| "no address".into(), |e| e.to_string());
    Err(format!("cannot listen on {spec}: {err}").into())
}
// ANCHOR_END: listen

/// A listening socket of either kind.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A connected socket of either kind: the protocols need only to read and
/// write it, and `refuse` to ask the kernel what it holds for it.
trait Socket: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send + 'static> Socket
    for T
{
}

// ANCHOR: accept
impl Listener {
    /// The next connection, and who is at the other end: an address, or
    /// for a Unix socket the process and user the kernel names. A TCP
    /// client that reset while it waited in the backlog is accepted all
    /// the same (Linux), and has no address left: nobody to serve.
    async fn accept(
        &self,
    ) -> io::Result<(Box<dyn Socket>, io::Result<String>)> {
        match self {
            Listener::Tcp(listener) => {
                let (socket, _) = listener.accept().await?;
                // Nagle off: no write of replies waits 40 ms for an ACK.
                let peer = socket.set_nodelay(true).and_then(|()| {
                    socket.peer_addr().map(|peer| peer.to_string())
                });
                Ok((Box::new(socket), peer))
            }
            Listener::Unix(listener) => {
                let (socket, _) = listener.accept().await?;
                // Taken by the kernel at `connect`: not the client's word.
                let who = match socket.peer_cred() {
                    Ok(cred) => match cred.pid() {
                        Some(pid) => format!("pid {pid} (uid {})", cred.uid()),
                        None => format!("a client (uid {})", cred.uid()),
                    },
                    Err(err) => format!("a client ({err})"),
                };
                Ok((Box::new(socket), Ok(who)))
            }
        }
    }
    // ANCHOR_END: accept

    fn name(&self) -> io::Result<String> {
        Ok(match self {
            Listener::Tcp(listener) => listener.local_addr()?.to_string(),
            Listener::Unix(listener) => {
                let addr = listener.local_addr()?;
                let path = addr.as_pathname().unwrap_or(Path::new("?"));
                escaped(path)
            }
        })
    }
}

// ANCHOR: serve
/// Serves one connection, logs how it went, and closes it, in that
/// order: the protocols only borrow the socket, so that a client that
/// sees the end of the stream knows its line is in the log's queue.
async fn serve(
    mut socket: Box<dyn Socket>,
    peer: String,
    frames: Frames,
    limit: Duration,
    slot: Slot,
) {
    let conn = &mut *socket;
    let (served, what) = match frames {
        Frames::Lines => (serve_lines(conn, limit, &slot).await, "line"),
        Frames::Length => (serve_frames(conn, limit, &slot).await, "frame"),
    };
    // "1 line", "2 lines".
    let counted = |count: usize| {
        let s = if count == 1 { "" } else { "s" };
        format!("{count} {what}{s}")
    };
    match served {
        Ok((count, Ending::Client)) => {
            report(format_args!("{peer}: answered {}", counted(count)));
        }
        Ok((count, Ending::Evicted { partial, unread })) => {
            let left = match (partial, unread) {
                (false, 0) => String::new(),
                (true, 0) => ", with part of a request unanswered".into(),
                (false, n) => format!(", with {n} byte(s) unread"),
                (true, n) => format!(
                    ", with part of a request unanswered and {n} byte(s) \
                     unread"
                ),
            };
            report(format_args!(
                "{peer}: answered {}, then closed to make room for a new \
                 client{left}",
                counted(count)
            ));
            // Gently: what the client sends now is read, not left to make
            // the kernel reset the connection, and with it the replies
            // it has not taken yet. Within a second, as for the request.
            let _ = close_gently(conn, BUSY_LIMIT).await;
        }
        Ok((count, Ending::TimedOut)) => {
            log(format_args!(
                "{peer}: timed out waiting for a request, after answering \
                 {}",
                counted(count)
            ));
            // Gently too: a client that trickles is still sending.
            let _ = close_gently(conn, BUSY_LIMIT).await;
        }
        Ok((_, Ending::Bad(why))) => {
            log(format_args!("{peer}: {why}"));
            // Gently, within a second, as for an eviction: the slot is
            // still ours, and nothing else may take it from us.
            let _ = close_gently(conn, BUSY_LIMIT).await;
        }
        Err(err) => log(format_args!("{peer}: {}", explain(&err))),
    }
    drop(socket);
}

/// How a connection ended, when no error ended it.
#[derive(Clone, Debug, PartialEq)]
enum Ending {
    /// The client ended the stream.
    Client,
    /// Told to make room for a new client, with every request it had
    /// read whole answered; `partial` if it had read part of one too, and
    /// `unread` bytes left in the kernel, sent too late to be read: whole
    /// requests or parts, it cannot tell.
    Evicted { partial: bool, unread: u64 },
    /// No whole request within `--timeout`.
    TimedOut,
    /// A request it would not answer, or could not read whole: why, as
    /// the log says it. The client was told, if its protocol can say so.
    Bad(String),
}

/// The ending of an evicted connection: whether part of a request had
/// been read, and how many bytes the kernel holds that were not.
fn evicted<C: Begun>(framed: &Framed<&mut dyn Socket, C>) -> Ending {
    let unread = unread_bytes(framed.get_ref().as_raw_fd()).unwrap_or(0);
    Ending::Evicted {
        partial: begun(framed),
        unread,
    }
}

/// Whether part of a request has come: in the `Framed`'s buffer, or
/// taken out of it by the codec.
fn begun<C: Begun>(framed: &Framed<&mut dyn Socket, C>) -> bool {
    !framed.read_buffer().is_empty() || framed.codec().mid_frame()
}

/// A codec that may hold part of a request that its buffer no longer
/// shows.
trait Begun {
    fn mid_frame(&self) -> bool;
}

impl Begun for LinesCodec {
    /// A line is in the buffer until it is whole.
    fn mid_frame(&self) -> bool {
        false
    }
}

impl Begun for LengthDelimitedCodec {
    /// Takes a header out of the buffer as soon as it has it, and keeps
    /// the length in its private state. A copy given a header of length
    /// 0 decodes an empty frame only while it waits for a header.
    fn mid_frame(&self) -> bool {
        let mut probe = BytesMut::from(&[0u8; 4][..]);
        let decoded = self.clone().decode(&mut probe);
        !matches!(decoded, Ok(Some(frame)) if frame.is_empty())
    }
}

/// Answers every line of one connection; returns how many, and how it
/// ended. A connection evicted, timed out or refused a bad line is closed
/// by `serve`, once it has logged it.
async fn serve_lines(
    socket: &mut dyn Socket,
    limit: Duration,
    slot: &Slot,
) -> io::Result<(usize, Ending)> {
    let codec = LinesCodec::new_with_max_length(MAX_LINE);
    let mut framed = Framed::new(socket, codec);
    let mut answered = 0;
    // Once evicted, until when what the client sends is still answered.
    let mut leave_by = None;
    loop {
        // The whole request within `limit`, however the client spreads
        // its bytes: `timeout` bounds the future, not one `read`.
        let next = next_request(&mut framed, limit, slot, &mut leave_by);
        let line = match next.await? {
            Next::Evicted => return Ok((answered, evicted(&framed))),
            Next::TimedOut => return Ok((answered, Ending::TimedOut)),
            Next::Got(None) => return Ok((answered, Ending::Client)),
            Next::Got(Some(Ok(line))) => line,
            Next::Got(Some(Err(LinesCodecError::Io(err))))
                if err.kind() != ErrorKind::InvalidData =>
            {
                return Err(err);
            }
            // A line too long, or not UTF-8: the connection ends here, by
            // our choice. `Framed` would read on, after a single `None`.
            // Say why; `serve` logs it, and closes. What the log says is
            // this line, however the client then takes the reply and the
            // close.
            Next::Got(Some(Err(err))) => {
                let (reply, why) = match err {
                    LinesCodecError::MaxLineLengthExceeded => (
                        format!("error: line longer than {MAX_LINE} bytes"),
                        format!("a line longer than {MAX_LINE} bytes"),
                    ),
                    _ => (
                        "error: line is not UTF-8".to_string(),
                        "a line that is not UTF-8".to_string(),
                    ),
                };
                let sent = within(limit, framed.send(reply)).await;
                if matches!(sent, Ok(Ok(()))) {
                    return Ok((answered, Ending::Bad(why)));
                }
                // Not told: no gentle close for a client that takes nothing.
                return Err(io::Error::new(ErrorKind::InvalidData, why));
            }
        };
        // And the whole reply within `limit`: sent, or held to go out
        // with the next (`write_reply`).
        let reply = format!("server got: [{line}]");
        within(limit, write_reply(&mut framed, reply))
            .await?
            .map_err(to_io)?;
        answered += 1;
        if slot.evict.is_cancelled() && !more_to_answer(&framed, &mut leave_by)?
        {
            // Evicted, with every request it had received answered: now
            // it goes.
            return Ok((answered, evicted(&framed)));
        }
    }
}
// ANCHOR_END: serve

// ANCHOR: frames
/// Answers every length-prefixed frame of one connection; returns how
/// many. A frame over the maximum, or one cut short by the end of the
/// stream, is an error: the codec checks the length before it reserves
/// room for the frame.
async fn serve_frames(
    socket: &mut dyn Socket,
    limit: Duration,
    slot: &Slot,
) -> io::Result<(usize, Ending)> {
    // The codec has one maximum, for what it reads and what it writes:
    // the longest reply's. A request has a smaller one, checked below.
    let codec = LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(MAX_REPLY)
        .new_codec();
    let mut framed = Framed::new(socket, codec);
    let mut answered = 0;
    let mut leave_by = None;
    loop {
        let next = next_request(&mut framed, limit, slot, &mut leave_by);
        let frame = match next.await? {
            Next::Evicted => return Ok((answered, evicted(&framed))),
            Next::TimedOut => return Ok((answered, Ending::TimedOut)),
            Next::Got(None) => return Ok((answered, Ending::Client)),
            Next::Got(Some(frame)) => frame,
        };
        let frame = frame.and_then(checked_frame);
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => {
                // Too long, or cut short: whatever the client still
                // sends goes unread. The replies held go first; then
                // `serve` logs it and drains the connection, so that the
                // client gets a FIN, as for the lines' bad request.
                let _ =
                    within(BUSY_LIMIT, SinkExt::<Bytes>::flush(&mut framed))
                        .await;
                return Ok((answered, Ending::Bad(explain(&err))));
            }
        };
        let mut reply = BytesMut::with_capacity(frame.len() + 14);
        reply.put_slice(b"server got: [");
        reply.put_slice(&frame);
        reply.put_u8(b']');
        let reply: Bytes = reply.freeze();
        within(limit, write_reply(&mut framed, reply)).await??;
        answered += 1;
        if slot.evict.is_cancelled() && !more_to_answer(&framed, &mut leave_by)?
        {
            return Ok((answered, evicted(&framed)));
        }
    }
}

/// Sends `reply`, or, while another whole request waits in the buffer,
/// only queues it (`feed`), to go out with the next reply in one write:
/// the client sent them together. Written one by one, the second would
/// wait for the client to acknowledge the first (Nagle's algorithm),
/// which a client may delay by 40 ms (Chapter 18). `Framed` writes what
/// it holds anyway once 8 KiB wait.
async fn write_reply<C, I>(
    framed: &mut Framed<&mut dyn Socket, C>,
    reply: I,
) -> Result<(), <C as Encoder<I>>::Error>
where
    C: Decoder + Encoder<I> + Clone,
    <C as Encoder<I>>::Error: From<io::Error>,
{
    if has_whole_request(framed) {
        framed.feed(reply).await
    } else {
        framed.send(reply).await
    }
}

/// A request of at most `MAX_FRAME` bytes, or an error.
fn checked_frame(frame: BytesMut) -> io::Result<BytesMut> {
    if frame.len() > MAX_FRAME {
        let len = frame.len();
        let why = format!("a frame of {len} bytes; the most is {MAX_FRAME}");
        return Err(io::Error::new(ErrorKind::InvalidData, why));
    }
    Ok(frame)
}
// ANCHOR_END: frames

// ANCHOR: close
/// `future`, unless it takes longer than `limit`: then `TimedOut`.
async fn within<T>(
    limit: Duration,
    future: impl Future<Output = T>,
) -> io::Result<T> {
    timeout(limit, future)
        .await
        .map_err(|_| io::Error::from(ErrorKind::TimedOut))
}

/// The I/O error inside a codec's error, or the codec's error as one.
fn to_io(err: LinesCodecError) -> io::Error {
    match err {
        LinesCodecError::Io(err) => err,
        other => io::Error::new(ErrorKind::InvalidData, other),
    }
}

/// Half-closes, then reads and discards until the client closes too,
/// within `limit`. Closing with unread bytes would send a reset (RST).
async fn close_gently(
    socket: &mut dyn Socket,
    limit: Duration,
) -> io::Result<()> {
    within(limit, drain_until_closed(socket)).await?
}

async fn drain_until_closed(socket: &mut dyn Socket) -> io::Result<()> {
    socket.shutdown().await?;
    // On the heap, and only now: an array here would be part of every
    // connection's future, idle or not, all its life.
    let mut scratch = vec![0; 8192];
    while socket.read(&mut scratch).await? > 0 {}
    Ok(())
}

/// Tells a client that the server is busy, and closes, all of it within
/// `BUSY_LIMIT`. What the client had sent is read first, by the kernel's
/// count, so that closing sends a FIN and not a reset that could destroy
/// the message; what it sends later is not waited for, as in Listing
/// 14-2: a refused client holds a descriptor for no longer than that. A
/// task of its own: the accept loop does not wait for it, unless
/// REFUSALS are under way already.
async fn refuse(mut socket: Box<dyn Socket>, frames: Frames) {
    let _ = timeout(BUSY_LIMIT, async {
        let waiting = unread_bytes(socket.as_raw_fd())?;
        let mut sent = (&mut socket).take(waiting);
        tokio::io::copy(&mut sent, &mut tokio::io::sink()).await?;
        socket.write_all(&busy_message(frames)).await?;
        socket.shutdown().await
    })
    .await;
}

/// `error: server busy` in the client's protocol: a line, or a frame. A
/// frames client would read the line's first four bytes as a length.
fn busy_message(frames: Frames) -> Vec<u8> {
    const BUSY: &[u8] = b"error: server busy";
    match frames {
        Frames::Lines => [BUSY, b"\n"].concat(),
        // 18 bytes: the length fits the 4-byte header.
        Frames::Length => [&(BUSY.len() as u32).to_be_bytes(), BUSY].concat(),
    }
}

/// How many bytes the kernel has received on `fd` that nobody has read
/// yet: `ioctl(FIONREAD)`. Not a read through tokio, which does not try
/// again a socket that a read found empty until its driver has seen it
/// ready (Chapter 29).
fn unread_bytes(fd: RawFd) -> io::Result<u64> {
    let mut count: nix::libc::c_int = 0;
    // SAFETY: FIONREAD stores one int through the pointer, which points
    // to `count`, alive for the whole call.
    let done = unsafe { nix::libc::ioctl(fd, nix::libc::FIONREAD, &mut count) };
    nix::errno::Errno::result(done)?;
    Ok(u64::try_from(count).unwrap_or(0))
}
// ANCHOR_END: close

// ANCHOR: slots
/// The connections being served, at most `max`, and since when each has
/// waited for its next request, or for the rest of one begun. When all
/// the slots are taken, a new client takes the slot of the idle
/// connection that has waited longest, or if none is idle, of the one
/// whose request began longest ago, as in Listing 14-2; and once three
/// quarters are taken, every idle connection that has waited more than
/// `crowded_idle` makes room as the next client comes. A connection
/// told to leave keeps its descriptor until it has closed, a second
/// later or more: it is counted until then, so that the slots never
/// promise more descriptors than there are.
struct Slots {
    max: usize,
    crowded_idle: Duration,
    table: Mutex<Held>,
    /// The id of the next connection: never one that is still in use,
    /// not even by a connection that was evicted and has yet to end.
    next_id: AtomicU64,
}

/// The connections that hold a slot, and those told to leave that have
/// yet to close.
struct Held {
    open: BTreeMap<u64, Waiting>,
    leaving: usize,
}

/// How many connections told to leave may still be closing while their
/// slots serve new clients: what lets a newcomer take the slot of one
/// that has waited longest, without waiting for it to close. Counted in
/// SPARE_FDS.
const HANDOVERS: usize = 4;

/// How long a connection must have waited for a request, or for the rest
/// of one, before it may be closed to make room, as in Listing 14-2. A connection accepted a moment
/// ago may not have its request yet: its client's `connect` returned once
/// the handshake was done, and the request follows. Closed then, its
/// client would get a reset or the end of the stream instead of a reply.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// What a connection is doing, and how to tell it to leave.
struct Waiting {
    since: Doing,
    evict: CancellationToken,
}

/// Since when a connection has waited, and for what. Idle ones make room
/// first: their loss costs least.
#[derive(Clone, Copy)]
enum Doing {
    /// Waiting for a request, with nothing of it read yet.
    Idle(Instant),
    /// Waiting for the rest of a request, begun then.
    Begun(Instant),
    /// Answering a whole request: never closed to make room.
    Answering,
}

/// A connection's slot, given back when it is dropped.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evict: CancellationToken,
}

impl Slots {
    /// `max` slots; an idle connection gets a tenth of `limit` (at least
    /// a second) once they run short.
    fn new(max: usize, limit: Duration) -> Arc<Slots> {
        let crowded_idle = (limit / 10).max(EVICT_AFTER);
        Arc::new(Slots {
            max,
            crowded_idle: crowded_idle.min(limit),
            table: Mutex::new(Held {
                open: BTreeMap::new(),
                leaving: 0,
            }),
            next_id: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection, if need be the slot of one that has
    /// waited for a request for EVICT_AFTER at least, which is told to
    /// leave. `None` if no connection has, or if too many of those told
    /// to leave are still closing.
    fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Held { open, leaving } = &mut *table;
        let now = Instant::now();
        // Saturating: `--max-conns` may be any number.
        if (open.len() + 1).saturating_mul(4) > self.max.saturating_mul(3) {
            // Crowded: long idle waits are a luxury.
            open.retain(|_, waiting| match waiting.since {
                Doing::Idle(since) if now - since >= self.crowded_idle => {
                    waiting.evict.cancel();
                    *leaving += 1;
                    false
                }
                _ => true,
            });
        }
        // Each connection, serving or leaving, holds a descriptor.
        if open.len() + *leaving >= self.max.saturating_add(HANDOVERS) {
            return None;
        }
        if open.len() >= self.max {
            // Full: the longest wait ends, if it has lasted EVICT_AFTER,
            // an idle one's first (`false` sorts first). Linear, but only
            // when full.
            let (_, _, &oldest) = open
                .iter()
                .filter_map(|(id, waiting)| match waiting.since {
                    Doing::Idle(at) => Some((false, at, id)),
                    Doing::Begun(at) => Some((true, at, id)),
                    Doing::Answering => None,
                })
                .filter(|&(_, at, _)| now - at >= EVICT_AFTER)
                .min()?;
            if let Some(evicted) = open.remove(&oldest) {
                evicted.evict.cancel();
                *leaving += 1;
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evict = CancellationToken::new();
        let since = Doing::Idle(now);
        open.insert(
            id,
            Waiting {
                since,
                evict: evict.clone(),
            },
        );
        let slots = Arc::clone(self);
        Some(Slot { slots, id, evict })
    }
}

impl Slot {
    /// Marks the connection as waiting for a request (true) or answering
    /// one (false): only a waiting connection may be evicted. A
    /// connection that already waits keeps its time: a new one has waited
    /// since it was accepted, however late its task first runs.
    fn set_waiting(&self, waiting: bool) {
        let mut table =
            self.slots.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(me) = table.open.get_mut(&self.id) {
            me.since = match (waiting, me.since) {
                (true, Doing::Answering) => Doing::Idle(Instant::now()),
                (true, since) => since,
                (false, _) => Doing::Answering,
            };
        }
    }

    /// Part of a request has been read: an idle connection waits for the
    /// rest from now on, and makes room only after every idle one.
    fn request_begun(&self) {
        let mut table =
            self.slots.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(me) = table.open.get_mut(&self.id) {
            if let Doing::Idle(_) = me.since {
                me.since = Doing::Begun(Instant::now());
            }
        }
    }
}

impl Drop for Slot {
    /// The connection has closed, or is about to: its descriptor, and
    /// its slot if it still had one, are free.
    fn drop(&mut self) {
        let mut table =
            self.slots.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.open.remove(&self.id).is_none() {
            // Told to leave: it had given up its slot already.
            table.leaving -= 1;
        }
    }
}

/// What `next_request` found.
enum Next<T> {
    /// A request, a codec's error, or the end of the stream (`None`).
    Got(Option<T>),
    /// A new client took the slot, and no whole request had come.
    Evicted,
    /// No whole request came within the limit.
    TimedOut,
}

/// The next request, or the end of the stream, within `limit`, unless a
/// new client takes this connection's slot first. An evicted connection
/// whose request had come already, in the kernel or in the `Framed`'s
/// buffer, still gets that request, if it comes whole by `leave_by`
/// (BUSY_LIMIT after the connection first saw the token cancelled): the
/// caller answers it, and what else `more_to_answer` finds, and closes.
async fn next_request<C: Decoder + Begun + Unpin>(
    framed: &mut Framed<&mut dyn Socket, C>,
    limit: Duration,
    slot: &Slot,
    leave_by: &mut Option<Instant>,
) -> io::Result<Next<Result<C::Item, C::Error>>> {
    slot.set_waiting(true);
    // The first bytes of a request mark the connection busy with it: in
    // the buffer already, or read while `next` waits for the rest.
    let mut marked = begun(framed);
    if marked {
        slot.request_begun();
    }
    let reading = std::future::poll_fn(|cx| {
        let polled = framed.poll_next_unpin(cx);
        if polled.is_pending() && !marked && begun(framed) {
            marked = true;
            slot.request_begun();
        }
        polled
    });
    let next = tokio::select! {
        // `next` on a `Framed` is cancel safe: nothing read is lost.
        biased;
        () = slot.evict.cancelled() => {
            // tokio may not have seen a request the kernel holds: ask.
            let unread = unread_bytes(framed.get_ref().as_raw_fd())?;
            if unread == 0 && !begun(framed) {
                return Ok(Next::Evicted);
            }
            // Had come: a whole request takes no time to arrive, and a
            // slot given away is not held for a client that trickles.
            let by = *leave_by.get_or_insert(Instant::now() + BUSY_LIMIT);
            match timeout_at(by, framed.next()).await {
                Ok(next) => next,
                // Part of one, and not the rest: what was read stays in
                // the buffer, and says so.
                Err(_) => return Ok(Next::Evicted),
            }
        }
        next = timeout(limit, reading) => match next {
            Ok(next) => next,
            Err(_) => return Ok(Next::TimedOut),
        },
    };
    slot.set_waiting(false);
    Ok(Next::Got(next))
}

/// Whether an evicted connection has more to answer after a reply: a
/// whole request in the `Framed`'s buffer, or bytes in the kernel that
/// came by `leave_by`, within BUSY_LIMIT of its learning that it must go
/// (sent while it wrote its last replies, say). The limit stops a client
/// that goes on sending from keeping the connection for ever.
fn more_to_answer<C: Decoder + Clone>(
    framed: &Framed<&mut dyn Socket, C>,
    leave_by: &mut Option<Instant>,
) -> io::Result<bool> {
    if has_whole_request(framed) {
        return Ok(true);
    }
    let by = *leave_by.get_or_insert(Instant::now() + BUSY_LIMIT);
    Ok(Instant::now() < by && unread_bytes(framed.get_ref().as_raw_fd())? > 0)
}

/// True if the `Framed`'s buffer holds a whole request, which `next`
/// would return without reading: a client may send several requests in
/// one write, and one read takes them all. Decoded from copies, so that
/// nothing is consumed.
fn has_whole_request<C: Decoder + Clone>(
    framed: &Framed<&mut dyn Socket, C>,
) -> bool {
    let mut buffered = framed.read_buffer().clone();
    matches!(framed.codec().clone().decode(&mut buffered), Ok(Some(_)))
}

// ANCHOR_END: slots

// ANCHOR: backoff
/// What to do after a failed `accept`: wait, from 5 ms, doubling up to a
/// second while the failures go on; log the first failure of a shortage
/// only, so that the log does not fill up either.
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
    /// the one after fail again (Listing 14-2).
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
            log(format_args!("accept: {err}; trying again, less often"));
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
// ANCHOR_END: backoff

// ANCHOR: unix
/// The socket file we bound, identified by its device and inode, so that
/// we never remove a file that is no longer ours; and its lock, held for
/// as long as we run.
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
    _lock: Flock<File>,
}

/// Binds `path`, removing a stale socket file first, but only while
/// holding a lock that says no other server is using the path: that is
/// Listing 16-1's `claim_path`, with its `socket_at` and `nobody_listens`,
/// the same code, after this part of the listing.
fn bind_unix(
    path: &Path,
    backlog: u32,
) -> Result<(UnixListener, SocketFile), Box<dyn Error>> {
    let lock = claim_path(path)?;
    let listener = listen_unix(path, backlog)
        .map_err(|err| format!("cannot listen on {}: {err}", escaped(path)))?;
    let meta = fs::metadata(path)?;
    let file = SocketFile {
        path: path.to_path_buf(),
        id: (meta.dev(), meta.ino()),
        _lock: lock,
    };
    Ok((listener, file))
}

/// A Unix socket listening at `path` with our backlog, handed to tokio.
/// tokio's `UnixListener::bind` would not do: it listens with the largest
/// backlog the system allows (`net.core.somaxconn`, 4096 by default), as
/// mio asks for -1, and has no way to choose another. Its buffers are
/// left alone: Linux gives each Unix connection the default ones
/// (`net.core.wmem_default`, 208 KiB), whatever the listener has, and never
/// grows them, so a client that reads no replies costs no more than that.
fn listen_unix(path: &Path, backlog: u32) -> io::Result<UnixListener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    // Close-on-exec, as every socket std and tokio make.
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // The kernel lowers a backlog above `somaxconn` to it.
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    // tokio's reactor wants a socket that never blocks.
    socket.set_nonblocking(true)?;
    UnixListener::from_std(socket.into())
}

/// `path` as a message shows it: escaped as `str::escape_debug` escapes
/// (a file name on Linux may hold any byte but `/` and NUL), so that a
/// newline in it cannot start a line of its own.
fn escaped(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

impl Drop for SocketFile {
    /// Removes the socket file, if it is still the one we bound.
    fn drop(&mut self) {
        let meta = fs::symlink_metadata(&self.path);
        if meta.is_ok_and(|meta| (meta.dev(), meta.ino()) == self.id) {
            let _ = fs::remove_file(&self.path);
        }
    }
}
// ANCHOR_END: unix

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

/// The signals that stop the server; made once, before it says it is
/// ready. No stream for SIGINT or SIGHUP if it was ignored when we
/// started (SIGINT in a shell's background job, SIGHUP under `nohup`):
/// making one would install tokio's handler over the user's choice
/// (Chapter 12).
struct Signals {
    int: UnlessIgnored,
    term: Signal,
    hup: UnlessIgnored,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        Ok(Signals {
            int: UnlessIgnored::new(SIGINT)?,
            term: signal(SignalKind::terminate())?,
            hup: UnlessIgnored::new(SIGHUP)?,
        })
    }
}

/// A signal's stream, or none if the signal was ignored when we started.
struct UnlessIgnored(Option<Signal>);

impl UnlessIgnored {
    /// The stream of signal `number`, unless it is ignored.
    fn new(number: i32) -> io::Result<UnlessIgnored> {
        Ok(UnlessIgnored(if is_ignored(number)? {
            None
        } else {
            Some(signal(SignalKind::from_raw(number))?)
        }))
    }

    /// The next signal, as `Signal::recv` says it; without a stream, it
    /// never comes.
    async fn recv(&mut self) -> Option<()> {
        match &mut self.0 {
            Some(stream) => stream.recv().await,
            None => std::future::pending().await,
        }
    }
}

/// Whether `signal` is ignored: inherited so from the parent, through
/// `exec`. A null new action makes `sigaction` only report the current
/// one (Listing 10-1).
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

/// Dies of `signal`, by its default action. The init of a PID namespace
/// (a container's PID 1) cannot: the kernel drops every signal whose
/// action for it is the default, even one it raises itself, where
/// signal-hook's `emulate_default_handler` would go on to `abort` and end
/// in a SIGSEGV (Chapter 12). There it exits with 128 + n, the status a
/// shell would report.
fn die_of(signal: i32) -> ! {
    if let Ok(signal) = NixSignal::try_from(signal) {
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        let _ = raise(signal); // The end, unless we are an init.
    }
    process::exit(128 + signal)
}

/// Raises this process's limit on open file descriptors (`ulimit -n`) to
/// the most it may have, and returns it (Listing 14-2).
fn raise_fd_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(soft.max(hard))
}

/// The most connections served at once, unless `--max-conns` says.
const MAX_CONNS: usize = 1000;

/// Descriptors kept for all but connections: the standard three, tokio's
/// own (two for `epoll`, an `eventfd`, three for the signal socket pair),
/// the listening socket, the lock file, the connections told to leave
/// whose slots already serve new clients (HANDOVERS), the clients being
/// refused (REFUSALS), and a margin.
const SPARE_FDS: u64 = 24;

/// How many refused clients may be told at once, in SPARE_FDS.
const REFUSALS: usize = 4;

/// The limit on connections when `--max-conns` is not given: MAX_CONNS,
/// or fewer if the descriptors allow fewer. Below the descriptors, the
/// slots run out first, and an idle connection makes room; above them,
/// `accept` fails first, and idle clients lock out everyone.
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
/// numbered at the limit or above takes no room. Counted once, before
/// tokio's runtime opens its own, in `/proc/self/fd` (Linux), less the one
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

/// A timed-out read or write in words.
fn explain(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".into(),
        _ => err.to_string(),
    }
}

// ANCHOR: log
/// The server's log: a line on stdout for each connection served, and
/// errors on stderr. No task writes either itself: a write blocks while
/// whoever reads it is slow or stopped, and a worker blocked in it stops
/// every task it would run, the signals' included (Chapter 32). `report`
/// and `log` hand each line to a thread of its own through a bounded
/// queue, as Listing 29-1 does, and drop it if the queue is full; the
/// thread says on stderr how many it dropped.
struct Log {
    queue: SyncSender<Line>,
    /// Lines queued so far, and lines written (or lost to a closed pipe).
    queued: AtomicU64,
    written: Mutex<u64>,
    progress: Condvar,
    dropped: AtomicU64,
    /// Report lines that could not be written (a full disk, say), and
    /// the first error: said once, on the way out.
    failed: Mutex<(u64, Option<io::Error>)>,
}

/// A line of the log, and where it goes.
enum Line {
    Out(String),
    Err(String),
}

/// How many lines may wait for a slow reader of the log.
const LOG_QUEUE: usize = 1024;

static LOG: OnceLock<Log> = OnceLock::new();

/// Set once writing stdout has failed with `BrokenPipe`.
static LOG_CLOSED: AtomicBool = AtomicBool::new(false);

/// Starts the thread that writes the log.
fn start_log() -> io::Result<()> {
    let (queue, lines) = sync_channel::<Line>(LOG_QUEUE);
    let log = LOG.get_or_init(|| Log {
        queue,
        queued: AtomicU64::new(0),
        written: Mutex::new(0),
        progress: Condvar::new(),
        dropped: AtomicU64::new(0),
        failed: Mutex::new((0, None)),
    });
    thread::Builder::new().name("log".into()).spawn(move || {
        for line in lines {
            let dropped = log.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                // Stuck, or read but slower than a burst of lines: the
                // words of Listing 14-2.
                write_line(Line::Err(format!(
                    "{dropped} log lines dropped: the log fell behind"
                )));
            }
            write_line(line);
            *log.written.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            log.progress.notify_all();
        }
    })?;
    Ok(())
}

/// Writes one line where it goes. Not `eprintln!`, which panics if
/// stderr is a closed pipe: a log that cannot be written is lost.
fn write_line(line: Line) {
    match line {
        Line::Out(text) => match writeln!(io::stdout(), "{text}") {
            Ok(()) => {}
            // Nobody reads the log any more: the server ends. The
            // accepting loop sees it before its next `accept`, once it
            // has started a task for the connection it was waiting for.
            Err(err) if err.kind() == ErrorKind::BrokenPipe => {
                LOG_CLOSED.store(true, Ordering::Relaxed);
            }
            // Lost, and counted: a server serves on through a full disk.
            Err(err) => {
                if let Some(log) = LOG.get() {
                    let mut failed =
                        log.failed.lock().unwrap_or_else(|e| e.into_inner());
                    failed.0 += 1;
                    failed.1.get_or_insert(err);
                }
            }
        },
        // Formatted whole, then one `write`: `writeln!` on unbuffered
        // stderr would write each piece on its own, and another process
        // writing to the same pipe could land inside the line.
        Line::Err(text) => {
            let line = format!("async-server: {text}\n");
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Queues one line, or drops it; never waits. Before the thread starts
/// (a bad argument, say), or if it could not start, writes it at once.
fn queue(line: Line) {
    let Some(log) = LOG.get() else {
        return write_line(line);
    };
    log.queued.fetch_add(1, Ordering::SeqCst);
    match log.queue.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            log.queued.fetch_sub(1, Ordering::SeqCst);
            log.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // No thread to read the queue: the system refused it one.
        Err(TrySendError::Disconnected(line)) => {
            log.queued.fetch_sub(1, Ordering::SeqCst);
            write_line(line);
        }
    }
}

/// One line on stdout: what a connection was served.
fn report(message: impl Display) {
    queue(Line::Out(message.to_string()));
}

/// One line on stderr: what went wrong.
fn log(message: impl Display) {
    queue(Line::Err(message.to_string()));
}

/// Before the process ends: waits until the lines queued so far are
/// written, for at most a second, since the reader may never come back.
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
        // In one write, as every line of the log.
        let why = format!("{lost} report line(s) not written: {err}");
        write_line(Line::Err(why));
    }
}
// ANCHOR_END: log

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

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

/// Reads the command line.
fn parse_args() -> Result<Config, lexopt::Error> {
    use lexopt::prelude::*;
    let mut config = Config {
        place: Place::Tcp(DEFAULT_ADDR.into()),
        frames: Frames::Lines,
        count: None,
        max_conns: None,
        timeout: Duration::from_secs(10),
        backlog: 1024,
    };
    let (mut spec, mut path) = (None, None);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("unix") => path = Some(PathBuf::from(args.value()?)),
            Long("frames") => {
                config.frames = match args.value()?.string()?.as_str() {
                    "lines" => Frames::Lines,
                    "length" => Frames::Length,
                    other => {
                        return Err(format!(
                            "--frames is lines or length, not {other:?}"
                        )
                        .into());
                    }
                };
            }
            Long("count") => config.count = Some(args.value()?.parse()?),
            Long("max-conns") => {
                let max = at_least_one("--max-conns", args.value()?)?;
                config.max_conns = Some(max);
            }
            Long("timeout") => {
                let secs = at_least_one("--timeout", args.value()?)?;
                if secs > 86_400 {
                    return Err("--timeout is at most 86400 seconds".into());
                }
                config.timeout = Duration::from_secs(secs);
            }
            Long("backlog") => {
                config.backlog = at_least_one("--backlog", args.value()?)?;
            }
            Value(value) if spec.is_none() => spec = Some(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    match (spec, path) {
        (Some(_), Some(_)) => {
            return Err("give HOST:PORT or --unix PATH, not both".into());
        }
        (Some(spec), None) => config.place = Place::Tcp(spec),
        (None, Some(path)) => config.place = Place::Unix(path),
        (None, None) => {}
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

// ANCHOR: tests
// Unit tests (`cargo test`), the clock paused where time matters: they
// need tokio's `test-util` feature and `tempfile` among the
// dev-dependencies.
#[cfg(test)]
mod tests {
    use super::*;

    /// Evicted with nothing unanswered.
    const EVICTED_CLEAN: Ending = Ending::Evicted {
        partial: false,
        unread: 0,
    };

    /// An accept loop with a bug.
    async fn panicking_loop(listener: UnixListener) -> io::Result<Stop> {
        let _held = listener;
        panic!("a bug in the accept loop");
    }

    #[tokio::test]
    async fn the_socket_file_goes_even_when_the_accept_loop_panics() {
        // A directory of our own, removed when `tmp` is dropped, with the
        // lock file that the server leaves by design.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("server.sock");
        let (listener, file) = bind_unix(&path, 1024).unwrap();
        assert!(path.exists());
        // As `run` does, but with a loop that panics.
        let accepting = tokio::spawn(panicking_loop(listener));
        let ended = join_loop(accepting, Some(file)).await;
        assert!(ended.is_err_and(|err| err.is_panic()));
        assert!(!path.exists(), "the socket file is left behind");
        let dir = tmp.path().to_path_buf();
        drop(tmp);
        assert!(!dir.exists(), "the test left {}", dir.display());
    }

    #[tokio::test]
    async fn the_future_of_a_connection_is_small() {
        // A task's future holds everything the connection keeps across an
        // `.await`, and is allocated whole when the task is spawned: keep
        // it small. It is one part of what an idle connection costs;
        // `Framed`'s buffers, on the heap, are another (Chapter 30
        // measures the whole, and gives no split).
        let (socket, _) = tokio::net::UnixStream::pair().unwrap();
        let slot = Slots::new(1, Duration::from_secs(1)).take().unwrap();
        let limit = Duration::from_secs(1);
        let serving =
            serve(Box::new(socket), String::new(), Frames::Lines, limit, slot);
        let size = std::mem::size_of_val(&serving);
        assert!(size < 2048, "{size} bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_told_to_leave_count_until_they_close() {
        let slots = Slots::new(1, Duration::from_secs(600));
        let mut leaving = Vec::new();
        let mut current = slots.take().unwrap();
        // Each newcomer takes the slot of the one before, which is
        // still closing: HANDOVERS of those at most.
        for _ in 0..HANDOVERS {
            sleep(EVICT_AFTER).await;
            let next = slots.take().expect("handed over");
            assert!(current.evict.is_cancelled());
            leaving.push(std::mem::replace(&mut current, next));
        }
        sleep(EVICT_AFTER).await;
        assert!(slots.take().is_none(), "more descriptors than counted");
        assert!(!current.evict.is_cancelled());
        // One closes: its descriptor serves the next newcomer.
        leaving.pop();
        let next = slots.take().expect("room once one has closed");
        assert!(current.evict.is_cancelled());
        drop((leaving, current, next));
        assert_eq!(slots.table.lock().unwrap().leaving, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_client_takes_the_slot_of_the_longest_waiting() {
        let slots = Slots::new(3, Duration::from_secs(600));
        let first = slots.take().unwrap();
        sleep(Duration::from_millis(10)).await;
        let second = slots.take().unwrap();
        let third = slots.take().unwrap();
        // Full, and nobody has waited long: their requests may be on
        // their way. The newcomer is refused.
        assert!(slots.take().is_none());
        assert!(!first.evict.is_cancelled());
        // A second later the first has waited longest, and makes room.
        sleep(EVICT_AFTER).await;
        let fourth = slots.take().expect("room made");
        assert!(first.evict.is_cancelled());
        assert!(!second.evict.is_cancelled());
        // The evicted connection ends later; its slot is the new one's.
        drop(first);
        assert_eq!(slots.table.lock().unwrap().open.len(), 3);
        // Nobody waits for a request: no room, the newcomer is refused.
        for busy in [&second, &third, &fourth] {
            busy.set_waiting(false);
        }
        assert!(slots.take().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_waits_from_its_accept_not_from_its_first_poll() {
        let slots = Slots::new(2, Duration::from_secs(600));
        let first = slots.take().unwrap();
        sleep(Duration::from_millis(10)).await;
        let second = slots.take().unwrap();
        // The second connection's task happens to run first.
        second.set_waiting(true);
        sleep(Duration::from_millis(10)).await;
        first.set_waiting(true);
        sleep(EVICT_AFTER).await;
        let _third = slots.take().expect("room made");
        assert!(first.evict.is_cancelled(), "accepted first, waited longest");
        assert!(!second.evict.is_cancelled());
    }

    /// Serves one connection until, idle for a second, it is asked to make
    /// room just after `sent` reached the kernel and before the runtime saw
    /// it: what the client then reads, and how many requests were served.
    async fn evicted_just_after(sent: &[u8]) -> (String, usize) {
        let (server, client) = std::os::unix::net::UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = tokio::net::UnixStream::from_std(server).unwrap();
        let slots = Slots::new(1, Duration::from_secs(600));
        let slot = slots.take().unwrap();
        let limit = Duration::from_secs(600);
        let serving = tokio::spawn(async move {
            let mut server = server;
            serve_lines(&mut server, limit, &slot).await
        });
        // Idle for a second: the connection may now make room.
        sleep(EVICT_AFTER).await;
        (&client).write_all(sent).unwrap();
        let _newcomer = slots.take().expect("room made");
        client.set_nonblocking(true).unwrap();
        let mut client = tokio::net::UnixStream::from_std(client).unwrap();
        let mut reply = String::new();
        let read = client.read_to_string(&mut reply).await;
        assert!(read.is_ok(), "{read:?} after {reply:?}");
        let (served, ending) = serving.await.unwrap().unwrap();
        assert_eq!(ending, EVICTED_CLEAN);
        (reply, served)
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_answers_the_request_it_had_received() {
        let (reply, served) = evicted_just_after(b"hello\n").await;
        assert_eq!((reply.as_str(), served), ("server got: [hello]\n", 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_answers_every_request_it_had_read() {
        // Two requests at once, as a client that pipelines sends them.
        let (reply, served) = evicted_just_after(b"one\ntwo\n").await;
        let both = "server got: [one]\nserver got: [two]\n";
        assert_eq!((reply.as_str(), served), (both, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_answers_a_request_sent_during_its_replies() {
        // More replies than the server's small send buffer holds: the
        // client's next request comes while the server is writing them.
        let (server, client) = std::os::unix::net::UnixStream::pair().unwrap();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
        server.set_nonblocking(true).unwrap();
        let server = tokio::net::UnixStream::from_std(server).unwrap();
        let slots = Slots::new(1, Duration::from_secs(600));
        let slot = slots.take().unwrap();
        let limit = Duration::from_secs(600);
        let serving = tokio::spawn(async move {
            let mut server = server;
            serve_lines(&mut server, limit, &slot).await
        });
        sleep(EVICT_AFTER).await;
        let line = format!("{}\n", "x".repeat(1000));
        (&client).write_all(line.repeat(20).as_bytes()).unwrap();
        let _newcomer = slots.take().expect("room made");
        // The replies have begun to arrive, and fill what the server may
        // send: it waits to write the rest.
        let mut turns = 0;
        while unread_bytes(client.as_raw_fd()).unwrap() == 0 {
            turns += 1;
            assert!(turns < 1_000_000, "no reply came");
            tokio::task::yield_now().await;
        }
        (&client).write_all(b"two\n").unwrap();
        client.set_nonblocking(true).unwrap();
        let mut client = tokio::net::UnixStream::from_std(client).unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.unwrap();
        let long = format!("server got: [{}]\n", "x".repeat(1000));
        assert_eq!(reply, long.repeat(20) + "server got: [two]\n");
        let (served, ending) = serving.await.unwrap().unwrap();
        assert_eq!((served, ending), (21, EVICTED_CLEAN));
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_stops_answering_once_its_time_is_up() {
        // A client that goes on sending after its eviction is answered
        // for BUSY_LIMIT, not for as long as it sends.
        let (mut server, mut client) = tokio::net::UnixStream::pair().unwrap();
        client.write_all(b"more\n").await.unwrap();
        let socket: &mut dyn Socket = &mut server;
        let framed = Framed::new(socket, LinesCodec::new());
        let mut leave_by = None;
        assert!(more_to_answer(&framed, &mut leave_by).unwrap());
        tokio::time::advance(BUSY_LIMIT - Duration::from_millis(1)).await;
        assert!(more_to_answer(&framed, &mut leave_by).unwrap());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            !more_to_answer(&framed, &mut leave_by).unwrap(),
            "still answering {BUSY_LIMIT:?} after the eviction"
        );
        // A whole request left unread, not part of one: the log counts
        // its bytes.
        let left = Ending::Evicted {
            partial: false,
            unread: 5,
        };
        assert_eq!(evicted(&framed), left);
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_waits_for_the_body_of_a_frame_begun() {
        // `LengthDelimitedCodec` takes a frame's header out of the buffer
        // as soon as it has it: a client that has sent a header and no
        // body has left nothing in the buffer or in the kernel, and is in
        // the middle of a request all the same.
        let (server, client) = tokio::net::UnixStream::pair().unwrap();
        let server_fd = server.as_raw_fd();
        let slots = Slots::new(1, Duration::from_secs(600));
        let slot = slots.take().unwrap();
        let limit = Duration::from_secs(600);
        let serving = tokio::spawn(async move {
            let mut server = server;
            serve_frames(&mut server, limit, &slot).await
        });
        sleep(EVICT_AFTER).await;
        let mut client = client;
        client.write_all(&3_u32.to_be_bytes()).await.unwrap();
        let mut turns = 0;
        while unread_bytes(server_fd).unwrap() > 0 {
            turns += 1;
            assert!(turns < 1_000_000, "the header was not read");
            tokio::task::yield_now().await;
        }
        // The header began a request: the connection may make room a
        // second later, as a request stalled that long.
        sleep(EVICT_AFTER).await;
        let _newcomer = slots.take().expect("room made");
        // The evicted connection runs, and sees its token cancelled.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        client.write_all(b"abc").await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        let want = [&17_u32.to_be_bytes()[..], b"server got: [abc]"].concat();
        assert_eq!(
            reply.escape_ascii().to_string(),
            want.escape_ascii().to_string()
        );
        let (served, ending) = serving.await.unwrap().unwrap();
        assert_eq!((served, ending), (1, EVICTED_CLEAN));
    }

    /// Serves one connection with `protocol` after the client has sent
    /// `sent`; returns what the client has received by the time the
    /// protocol returns, whether the end of the stream had come by then,
    /// and what the protocol returned.
    async fn served_to_its_end<F, T>(
        protocol: F,
        sent: &[u8],
    ) -> (Vec<u8>, bool, T)
    where
        F: AsyncFnOnce(&mut dyn Socket, Duration, &Slot) -> T,
    {
        use nix::sys::socket::{MsgFlags, recv};
        let (server, client) = UnixStream::pair().unwrap();
        (&client).write_all(sent).unwrap();
        server.set_nonblocking(true).unwrap();
        let mut server = tokio::net::UnixStream::from_std(server).unwrap();
        let slots = Slots::new(1, Duration::from_secs(600));
        let slot = slots.take().unwrap();
        let served = protocol(&mut server, Duration::from_secs(600), &slot);
        let served = served.await;
        let (mut got, mut ended) = (Vec::new(), false);
        let mut buf = [0u8; 256];
        loop {
            match recv(client.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => break ended = true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(err) => panic!("{err}"),
            }
        }
        (got, ended, served)
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_line_is_told_and_left_open_for_serve_to_log_first() {
        // `serve` logs how a connection went, then closes it: a client
        // that sees the end of the stream finds its line already queued.
        // So the protocol returns with the socket still open.
        let line = [&[b'x'; MAX_LINE + 1][..], b"\n"].concat();
        let (got, ended, served) = served_to_its_end(serve_lines, &line).await;
        let told = format!("error: line longer than {MAX_LINE} bytes\n");
        assert_eq!(String::from_utf8_lossy(&got), told);
        assert!(!ended, "closed before `serve` could log it");
        let why = format!("a line longer than {MAX_LINE} bytes");
        assert_eq!(served.unwrap(), (0, Ending::Bad(why)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_frame_is_left_open_for_serve_to_log_first() {
        // A header longer than any frame the codec takes.
        let header = (MAX_REPLY as u32 + 1).to_be_bytes();
        let (got, ended, served) =
            served_to_its_end(serve_frames, &header).await;
        assert_eq!(got, b"");
        assert!(!ended, "closed before `serve` could log it");
        let (count, ending) = served.unwrap();
        assert!(matches!(ending, Ending::Bad(_)), "{ending:?}");
        assert_eq!(count, 0);
    }

    #[tokio::test]
    async fn tokio_reads_a_fresh_socket_at_once_an_emptied_one_when_told() {
        // tokio 1.54 and later: a socket fresh from `accept` starts out
        // ready, so its first read asks the kernel. A read that finds
        // nothing clears that readiness, and the next bytes stay unread
        // by tokio until its driver has seen the socket ready, which on
        // this one-thread runtime takes an `.await`.
        let listener = listen("127.0.0.1:0", 8).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        (&client).write_all(b"hello\n").unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let fd = socket.as_raw_fd();
        while unread_bytes(fd).unwrap() < 6 {
            thread::yield_now();
        }
        let mut buf = [0; 64];
        assert_eq!(socket.try_read(&mut buf).unwrap(), 6);
        let empty = socket.try_read(&mut buf).unwrap_err();
        assert_eq!(empty.kind(), ErrorKind::WouldBlock);
        (&client).write_all(b"again\n").unwrap();
        while unread_bytes(fd).unwrap() < 6 {
            thread::yield_now();
        }
        let unseen = socket.try_read(&mut buf).unwrap_err();
        assert_eq!(unseen.kind(), ErrorKind::WouldBlock, "in the kernel");
        socket.readable().await.unwrap();
        assert_eq!(socket.try_read(&mut buf).unwrap(), 6);
    }

    #[tokio::test]
    async fn tokio_takes_a_short_read_as_an_empty_socket() {
        // On epoll, a read through tokio that fills less than its buffer
        // clears the readiness too, with no EAGAIN ever seen: the next
        // bytes stay unread by tokio until its driver has seen them. A
        // read that fills its buffer leaves the readiness as it was.
        let listener = listen("127.0.0.1:0", 8).unwrap();
        let addr = listener.local_addr().unwrap();
        for (room, read_at_once) in [(64, false), (6, true)] {
            let client = std::net::TcpStream::connect(addr).unwrap();
            (&client).write_all(b"hello\n").unwrap();
            let (mut socket, _) = listener.accept().await.unwrap();
            let fd = socket.as_raw_fd();
            while unread_bytes(fd).unwrap() < 6 {
                thread::yield_now();
            }
            let mut buf = vec![0; room];
            assert_eq!(socket.read(&mut buf).await.unwrap(), 6);
            (&client).write_all(b"again\n").unwrap();
            while unread_bytes(fd).unwrap() < 6 {
                thread::yield_now();
            }
            let next = socket.try_read(&mut buf);
            assert_eq!(next.is_ok(), read_at_once, "{room}: {next:?}");
        }
    }

    #[tokio::test]
    async fn after_a_codec_error_framed_pauses_then_reads_on() {
        // The server closes after a codec error because it chooses to:
        // `Framed` returns `None` once, a pause and not the end of the
        // stream, and `LinesCodec` skips the rest of a line too long.
        let (server, mut client) = tokio::net::UnixStream::pair().unwrap();
        let codec = LinesCodec::new_with_max_length(4);
        let mut framed = Framed::new(server, codec);
        client.write_all(b"too long\n").await.unwrap();
        let error = framed.next().await;
        assert!(
            matches!(error, Some(Err(LinesCodecError::MaxLineLengthExceeded))),
            "{error:?}"
        );
        assert!(framed.next().await.is_none());
        client.write_all(b"ok\n").await.unwrap();
        let next = framed.next().await;
        assert_eq!(next.map(Result::ok), Some(Some("ok".to_string())));
    }

    #[test]
    fn any_limit_on_the_command_line_is_counted_without_overflow() {
        let slots = Slots::new(usize::MAX, Duration::from_secs(1));
        assert!(slots.take().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn waits_longer_than_a_tenth_of_the_timeout_end_when_crowded() {
        // 8 slots, a timeout of 10 s: crowded from the seventh on.
        let slots = Slots::new(8, Duration::from_secs(10));
        let early: Vec<Slot> = (0..5).map(|_| slots.take().unwrap()).collect();
        sleep(Duration::from_secs(2)).await;
        let sixth = slots.take().unwrap();
        // Six of eight: not crowded yet, so the early five wait on.
        assert!(early.iter().all(|slot| !slot.evict.is_cancelled()));
        let seventh = slots.take().unwrap();
        // Crowded: the five that waited more than a second make room.
        assert!(early.iter().all(|slot| slot.evict.is_cancelled()));
        assert!(!sixth.evict.is_cancelled() && !seventh.evict.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_makes_room_before_a_request_begun() {
        let slots = Slots::new(2, Duration::from_secs(600));
        let begun = slots.take().unwrap();
        begun.request_begun();
        sleep(Duration::from_millis(10)).await;
        // Younger, and idle: it goes first.
        let idle = slots.take().unwrap();
        sleep(EVICT_AFTER).await;
        let third = slots.take().expect("room made");
        assert!(idle.evict.is_cancelled(), "the idle one makes room");
        assert!(!begun.evict.is_cancelled(), "the request begun is kept");
        // With nobody idle, the request stalled longest makes room.
        third.set_waiting(false);
        sleep(EVICT_AFTER).await;
        let _fourth = slots.take().expect("room made");
        assert!(begun.evict.is_cancelled(), "a stalled request makes room");
    }
}
// ANCHOR_END: tests
// ANCHOR_END: whole
