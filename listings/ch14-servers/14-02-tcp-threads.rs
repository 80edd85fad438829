// ANCHOR: whole
// Listing 14-2: a thread per connection that real clients cannot break.
// The protocol is Listing 13-2's: each line gets `server got: [<line>]`.
// Every request and every reply has a deadline, lines have a maximum
// length, the number of connections has a limit (at the limit, the
// connection that has waited longest for a request is closed to make
// room, or else the one whose request has stalled longest; if none has
// waited a second, the new client is told the server is busy), a failed
// `accept` waits and tries again, and the listening
// socket's backlog is set, not left at std's 128.
//
// `tcp-threads [HOST:PORT] [--count N] [--max-conns N] [--timeout SECS]
// [--backlog N]`

use std::collections::HashMap;
use std::error::Error;
use std::fmt::Display;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use socket2::{Domain, Socket, Type};

const USAGE: &str = "usage: tcp-threads [HOST:PORT] [--count N] \
                     [--max-conns N] [--timeout SECS] [--backlog N]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// The longest line a client may send, newline not counted.
const MAX_LINE: usize = 1024;
/// The most bytes of replies held back to go out with the next one in one
/// write. A buffer of short requests sent together asks for more: 4096
/// lines of `x` are answered with 64 KiB.
const MAX_HELD: usize = 8 * 1024;

/// What the command line sets.
struct Config {
    spec: String,
    /// Stop after this many connections, if given.
    count: Option<usize>,
    /// The most connections served at once, if given.
    max_conns: Option<usize>,
    /// How long a client has to send a whole request, and to take a
    /// whole reply.
    timeout: Duration,
    /// The length of the queue of connections waiting for `accept`.
    backlog: i32,
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
    let listener = listen(&config)?;
    let accept_log = AcceptLog::start()
        .map_err(|e| format!("cannot start the log's thread: {e}"))?;
    writeln!(
        io::stdout(),
        "Server listening on {}",
        listener.local_addr()?
    )?;
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
            Ok((conn, _)) => conn,
            Err(err) => {
                // EMFILE (no file descriptor left) and the like. Trying
                // again at once would fail at once, in a loop that eats a
                // CPU; wait first, longer and longer.
                backoff.failed(&err, &accept_log);
                continue;
            }
        };
        backoff.accepted();
        // A client that reset while it waited in the backlog is accepted
        // all the same (Linux), and `peer_addr` fails: nobody to serve,
        // and not one served, for `--count`.
        let peer = match conn.peer_addr() {
            Ok(peer) => peer,
            Err(err) => {
                accept_log.line(format_args!("a client: {err}"));
                continue;
            }
        };
        let conn = Arc::new(conn);
        let Some(slot) = conns.take(&conn) else {
            refuse(&conn);
            continue;
        };
        let timeout = config.timeout;
        let kept = Arc::clone(&conn);
        // `Builder::spawn` returns an error where `thread::spawn` would
        // panic: the system may refuse a thread too. The client is then
        // told, as one over the limit is, and not counted.
        let spawned = thread::Builder::new()
            .spawn(move || serve(&conn, peer, &slot, timeout));
        match spawned {
            Ok(_) => served += 1,
            Err(err) => {
                accept_log.line(format_args!("cannot start a thread: {err}"));
                refuse(&kept);
            }
        }
    }
    // With --count: no more clients. Close the listening socket first, so
    // that a new one is refused at once, not taken into the backlog to wait
    // for the last clients and then be reset; then let those finish.
    drop(listener);
    conns.wait_until_all_closed();
    accept_log.finish();
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: listen
/// What each connection's socket buffers may hold, each way: the size
/// asked for, which Linux doubles for its bookkeeping. Left to size them
/// itself, Linux grows them with the traffic, a send buffer up to 4 MiB
/// (`tcp_wmem`), and a client that sends requests and reads no replies
/// has the kernel hold megabytes of them for it, where none of the
/// server's limits sees them. Replies of a line need no more than this.
const SOCKET_BUFFER: usize = 64 * 1024;

/// Binds and listens with socket2, which, unlike `TcpListener::bind`,
/// lets us choose the backlog and the buffers. `SO_REUSEADDR` as std sets it: a restarted
/// server must not wait for old connections in TIME_WAIT.
fn listen(config: &Config) -> Result<TcpListener, Box<dyn Error>> {
    let mut last = None;
    for addr in resolve(&config.spec)? {
        let socket =
            Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        // Inherited by every connection accepted (the receive side must be
        // set before `listen`): see SOCKET_BUFFER.
        socket.set_send_buffer_size(SOCKET_BUFFER)?;
        socket.set_recv_buffer_size(SOCKET_BUFFER)?;
        match socket.bind(&addr.into()) {
            Ok(()) => {
                socket.listen(config.backlog)?;
                return Ok(socket.into());
            }
            Err(err) => last = Some(err),
        }
    }
    let err = last.map_or_else(|| "no address".into(), |e| e.to_string());
    Err(format!("cannot listen on {}: {err}", config.spec).into())
}
// ANCHOR_END: listen

// ANCHOR: slots
/// How long a connection must have waited for a request, or for the rest
/// of one, before it may be closed to make room for a new one. Shorter,
/// and a burst of clients whose requests are on their way would close
/// each other's connections.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// The connections being served, up to a maximum, and what each is doing:
/// waiting for a request, with nothing of it received yet (idle), or busy
/// with one, since when.
struct Conns {
    table: Mutex<Table>,
    closed: Condvar,
    max: usize,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// Each connection, shared with its thread, and what it is doing.
    open: HashMap<u64, (Arc<TcpStream>, Since)>,
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

/// One connection's place; dropping it frees the place.
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

    /// A place for `conn`. At the limit, the connection idle longest
    /// gives up its place, or else the one whose request has stalled
    /// longest, if it has waited EVICT_AFTER at least: shutting it down
    /// ends its thread's wait, and the place is free once that thread has
    /// ended. Otherwise there is no place.
    fn take(self: &Arc<Self>, conn: &Arc<TcpStream>) -> Option<Slot> {
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
    /// Marks the connection idle, from now on, or busy with a request
    /// that begins now.
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

/// Tells a client over the limit that the server is busy, and closes.
/// Reading what it already sent first (a little, without waiting) makes
/// the close a FIN rather than a reset that could destroy the message.
fn refuse(mut conn: &TcpStream) {
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
// ANCHOR_END: slots

// ANCHOR: serve
/// Serves one connection, logs how it went, and closes it.
fn serve(conn: &TcpStream, peer: SocketAddr, slot: &Slot, timeout: Duration) {
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
            log(format_args!("{peer}: {}", explain(&err)));
        }
        _ => {
            let s = if lines == 1 { "" } else { "s" };
            let logged =
                writeln!(io::stdout(), "{peer}: answered {lines} line{s}");
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

/// Answers every line of one connection, counting them in `answered`.
fn answer(
    conn: &TcpStream,
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
        // Each request must arrive whole within `timeout`: a client that
        // sends one byte a second cannot hold the connection for longer.
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
                // in the buffer. Written one by one, the second would
                // wait for the client to acknowledge the first (Nagle's
                // algorithm), which a client may delay by 40 ms.
                if replies.len() < MAX_HELD && reader.buffer().contains(&b'\n')
                {
                    continue;
                }
                // And the replies must be taken within `timeout`.
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
// ANCHOR_END: serve

// ANCHOR: deadline
/// A socket whose reads must all be done `by` a point in time. A read
/// timeout (`SO_RCVTIMEO`) bounds one `read` call; this bounds them all
/// together, by giving each call only the time that is left. Bytes that
/// arrive mark the connection's slot busy: a request has begun.
struct Deadline<'a> {
    conn: &'a TcpStream,
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

/// Writes all of `buf` by the deadline `by`, however slowly the peer
/// reads.
fn write_all_by(
    mut conn: &TcpStream,
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

/// The time from now until `by`, or `TimedOut` if there is none left.
/// (A timeout of zero would mean "no timeout" to the socket.)
fn time_left(by: Instant) -> io::Result<Duration> {
    by.checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| ErrorKind::TimedOut.into())
}
// ANCHOR_END: deadline

/// What one call of `read_line` found.
enum Line {
    /// A line, in the buffer without its newline.
    Complete,
    /// More than MAX_LINE bytes and no newline.
    TooLong,
    /// The end of the stream.
    End,
}

/// Reads one line into `line`, but never more than MAX_LINE + 1 bytes
/// (Listing 13-2).
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
/// until `by`. Closing with unread bytes would send a reset (RST).
fn close_gently(mut conn: &TcpStream, by: Instant) -> io::Result<()> {
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

// ANCHOR: accept_log
/// The accepting thread's log: a client that reset in the backlog, the
/// first failure of a shortage, a thread the system refused. Written
/// there, a line would stop that thread while the log does not move (a
/// paused terminal, a stuck log collector), and with it the server: no
/// client accepted, refused or served, though places are free. So each
/// line goes to a thread of its own through a bounded queue, which never
/// waits: a line that finds the queue full is dropped, and counted, and
/// that thread says how many once the log moves again.
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
// ANCHOR_END: accept_log

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
    /// over. A success does not end it: out of descriptors, a blocking
    /// `accept` fails even when nobody waits (Linux takes the descriptor
    /// first), and a client that closes one connection and opens another
    /// lets the next `accept` succeed, and the one after fail again.
    const QUIET: Duration = Duration::from_secs(10);

    fn new() -> Backoff {
        Backoff {
            wait: Backoff::FIRST,
            failed_at: None,
        }
    }

    fn failed(&mut self, err: &io::Error, accept_log: &AcceptLog) {
        // A client that gave up before we accepted it, as the BSDs say (on
        // Linux, its first call fails instead): no reason to wait.
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
// ANCHOR_END: backoff

// ANCHOR: fd_limit
/// Raises this process's limit on open file descriptors (`ulimit -n`) to
/// the most it may have, and returns it. The soft limit is often 1024, too
/// few for a thousand clients; the hard limit is usually far higher.
fn raise_fd_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(soft.max(hard))
}

/// The most connections served at once, unless `--max-conns` says.
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
/// numbered at the limit or above takes no room. Counted once, before the
/// listening socket, in `/proc/self/fd` (Linux), less the one descriptor
/// reading that directory takes; none if it cannot be read.
fn inherited_fds(limit: u64) -> u64 {
    let below_limit = |entry: io::Result<std::fs::DirEntry>| {
        let fd: u64 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        (fd < limit).then_some(fd)
    };
    let open = std::fs::read_dir("/proc/self/fd")
        .map_or(0, |dir| dir.filter_map(below_limit).count());
    u64::try_from(open.saturating_sub(3 + 1)).unwrap_or(0)
}
// ANCHOR_END: fd_limit

/// A timed-out read or write fails with `WouldBlock` ("Resource
/// temporarily unavailable"); say what happened instead.
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
    let line = format!("tcp-threads: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

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
        spec: DEFAULT_ADDR.into(),
        count: None,
        max_conns: None,
        timeout: Duration::from_secs(10),
        backlog: 1024,
    };
    let mut spec = None;
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
    if let Some(spec) = spec {
        config.spec = spec;
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
