// ANCHOR: whole
// Listing 15-2: Listing 14-2's server in one thread. Every socket is
// nonblocking, and one call to `poll` waits for all of them at once: the
// listening socket, and every connection that wants to read or to write.
// The protocol and the limits are Listing 14-2's: lines of at most
// MAX_LINE bytes, each answered with `server got: [<line>]`; a deadline
// to send each request and to take each reply; a limit on connections,
// at which the connection idle longest makes room; a pause after a failed
// `accept`. Each client's replies waiting to be written are bounded too.
//
// `poll-server [HOST:PORT] [--count N] [--max-conns N] [--timeout SECS]
// [--backlog N]`

use std::error::Error;
use std::fmt::Display;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::process::{self, ExitCode};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use socket2::{Domain, Socket, Type};

const USAGE: &str = "usage: poll-server [HOST:PORT] [--count N] \
                     [--max-conns N] [--timeout SECS] [--backlog N]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// The longest line a client may send, newline not counted.
const MAX_LINE: usize = 1024;
/// Replies waiting for a client to read them, beyond which we stop
/// reading its requests.
const MAX_OUTPUT: usize = 64 * 1024;
/// The most reply one byte of request can make: an empty line, one byte,
/// is answered with `server got: []` and a newline, fifteen.
const MOST_REPLY_PER_BYTE: usize = 15;
/// How long a connection must have been idle before it may be closed to
/// make room for a new one at the limit (Listing 14-2).
const EVICT_AFTER: Duration = Duration::from_secs(1);
/// At most this many new connections per round, so that a flood of them
/// cannot starve the clients already connected.
const ACCEPTS_PER_ROUND: usize = 64;

/// What the command line sets.
struct Config {
    spec: String,
    count: Option<usize>,
    /// The most connections at once, if given.
    max_conns: Option<usize>,
    timeout: Duration,
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

fn run() -> Result<(), Box<dyn Error>> {
    let config = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let limit = raise_fd_limit()?;
    let fds = limit.saturating_sub(inherited_fds(limit));
    let max_conns = config.max_conns.unwrap_or(default_max_conns(fds));
    let listener = listen(&config)?;
    listener.set_nonblocking(true)?;
    writeln!(
        io::stdout(),
        "Server listening on {}",
        listener.local_addr()?
    )?;
    Server::new(config, max_conns).run(listener)?;
    Ok(())
}

// ANCHOR: conn
/// One client, and everything we know about it.
struct Conn {
    sock: TcpStream,
    peer: SocketAddr,
    /// The start of a request whose newline has not come yet.
    input: Vec<u8>,
    /// Replies not yet written, from `output[written..]`.
    output: Vec<u8>,
    written: usize,
    /// The client must finish its next request, or take its replies, by
    /// then; each finished request and each emptied output moves it on.
    deadline: Instant,
    /// Since when it has been idle: open, with no request begun and no
    /// reply waiting. `None` while it is not.
    idle_since: Option<Instant>,
    /// Since when it has been busy with its current request and replies,
    /// if it is.
    busy_since: Option<Instant>,
    state: State,
    answered: usize,
    /// Whether it ended in an error, already logged.
    failed: bool,
}

#[derive(PartialEq)]
enum State {
    /// Reading requests.
    Open,
    /// The client half-closed: write what is left, then close.
    Finishing,
    /// Its line was too long: write the error, half-close, and throw away
    /// whatever it still sends until it closes too.
    Draining,
    /// Done with, one way or another; the connection is dropped.
    Closed,
}
// ANCHOR_END: conn

struct Server {
    config: Config,
    /// The most connections at once: `--max-conns`, or what fits.
    max_conns: usize,
    conns: Vec<Conn>,
    /// Connections accepted and served so far, for `--count`.
    served: usize,
    /// After a failed `accept`: no accepting before this, and how long
    /// the next pause will be.
    paused_until: Option<Instant>,
    pause: Duration,
    /// Whether `accept` has failed since the backlog was last empty: the
    /// shortage is logged already.
    short: bool,
    /// Whether a log line has failed with `BrokenPipe`: nobody reads the
    /// log any more, and the server ends once its clients are served.
    log_closed: bool,
}

// ANCHOR: run
impl Server {
    fn new(config: Config, max_conns: usize) -> Server {
        Server {
            config,
            max_conns,
            conns: Vec::new(),
            served: 0,
            paused_until: None,
            pause: PAUSE_FIRST,
            short: false,
            log_closed: false,
        }
    }

    /// The event loop: wait for whatever can happen next, handle it,
    /// repeat. Returns once `--count` connections have come and gone, or
    /// nobody reads the log any more, and the clients held are served.
    fn run(&mut self, listener: TcpListener) -> io::Result<()> {
        let mut scratch = vec![0; 16 * 1024];
        let mut listener = Some(listener);
        loop {
            let now = Instant::now();
            if self.log_closed
                || self.config.count.is_some_and(|n| self.served >= n)
            {
                // All came, or the log is gone: close the listening socket,
                // so that a new client is refused at once, not left in the
                // backlog to be reset when we end. Those accepted are
                // served to their end: dropped, they would be reset.
                listener = None;
                if self.conns.is_empty() {
                    return Ok(());
                }
            }
            let accepting = listener
                .as_ref()
                .filter(|_| self.paused_until.is_none_or(|until| now >= until));
            // One entry per socket: the listener first if we accept,
            // then every connection, with what we wait for on it.
            let mut fds = Vec::with_capacity(self.conns.len() + 1);
            if let Some(listener) = accepting {
                fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
            }
            for conn in &self.conns {
                fds.push(PollFd::new(conn.sock.as_fd(), conn.interest()));
            }
            match poll(&mut fds, self.next_timeout(now)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
            let ready: Vec<_> = fds
                .iter()
                .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);

            let (listener_ready, conns_ready) = match accepting {
                Some(listener) => {
                    ((!ready[0].is_empty()).then_some(listener), &ready[1..])
                }
                None => (None, &ready[..]),
            };
            let now = Instant::now();
            for (conn, events) in self.conns.iter_mut().zip(conns_ready) {
                if !events.is_empty() {
                    conn.handle(
                        *events,
                        &mut scratch,
                        self.config.timeout,
                        now,
                    );
                }
                if conn.state != State::Closed && now >= conn.deadline {
                    conn.close(Some(io::Error::from(ErrorKind::TimedOut)));
                }
            }
            // Log and forget the connections that are done.
            for conn in self.conns.iter().filter(|c| c.state == State::Closed) {
                if !conn.failed
                    && log_answered(conn.peer, conn.answered).is_err()
                {
                    self.log_closed = true;
                }
            }
            self.conns.retain(|conn| conn.state != State::Closed);
            if self.paused_until.is_some_and(|until| now >= until) {
                self.paused_until = None;
            }
            if let Some(listener) = listener_ready {
                self.accept(listener, now);
            }
        }
    }

    /// How long `poll` may sleep: until the nearest deadline, or the end
    /// of a pause in accepting; forever if there is neither.
    fn next_timeout(&self, now: Instant) -> PollTimeout {
        let deadlines = self.conns.iter().map(|c| c.deadline);
        let Some(next) = deadlines.chain(self.paused_until).min() else {
            return PollTimeout::NONE;
        };
        // Round up, so that we never wake a little before the deadline
        // only to find nothing to do.
        let millis = next
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
    }
}
// ANCHOR_END: run

// ANCHOR: accept
/// The first pause after a failed `accept`, and the longest.
const PAUSE_FIRST: Duration = Duration::from_millis(5);
const PAUSE_MOST: Duration = Duration::from_secs(1);

impl Server {
    /// Accepts the connections waiting in the backlog, some of them at
    /// least, refusing those over the limit.
    fn accept(&mut self, listener: &TcpListener, now: Instant) {
        for _ in 0..ACCEPTS_PER_ROUND {
            if self.config.count.is_some_and(|n| self.served >= n) {
                return;
            }
            let sock = match listener.accept() {
                Ok((sock, _)) => sock,
                // Nobody waits: the shortage, if there was one, is over.
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    self.short = false;
                    return;
                }
                Err(err) if err.kind() == ErrorKind::ConnectionAborted => {
                    continue;
                }
                Err(err) => {
                    // EMFILE and the like: stop accepting for a while,
                    // longer each time; say so once, not again each time
                    // a closed connection lets one more client in.
                    if !self.short {
                        log(format_args!(
                            "accept: {err}; trying again, less often"
                        ));
                        self.short = true;
                    }
                    self.paused_until = Some(now + self.pause);
                    self.pause = (self.pause * 2).min(PAUSE_MOST);
                    return;
                }
            };
            self.pause = PAUSE_FIRST;
            // A client that reset in the backlog is accepted all the
            // same, and `peer_addr` fails: not one served, for `--count`,
            // and asked first, so that it costs nobody a place.
            let peer = match sock.peer_addr().and_then(|peer| {
                sock.set_nonblocking(true)?;
                Ok(peer)
            }) {
                Ok(peer) => peer,
                Err(err) => {
                    log(format_args!("a client: {err}"));
                    continue;
                }
            };
            if self.conns.len() >= self.max_conns && !self.evict_idlest(now) {
                refuse(sock);
                continue;
            }
            self.served += 1;
            self.conns.push(Conn {
                sock,
                peer,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                deadline: now + self.config.timeout,
                idle_since: Some(now),
                busy_since: None,
                state: State::Open,
                answered: 0,
                failed: false,
            });
        }
    }
}

impl Server {
    /// At the limit: closes the connection idle longest, or else the one
    /// stalled longest (no request finished and no reply taken since), if
    /// it has waited EVICT_AFTER at least, to make room; false if none has.
    fn evict_idlest(&mut self, now: Instant) -> bool {
        let timeout = self.config.timeout;
        // Idle ones first (`false` sorts first), the oldest first.
        let candidate = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, conn)| match (conn.idle_since, conn.busy_since) {
                (Some(idle), _) => Some((false, idle, i)),
                (None, Some(busy)) => {
                    let progress = conn.deadline.checked_sub(timeout)?;
                    Some((true, busy.max(progress), i))
                }
                (None, None) => None,
            })
            .filter(|&(_, since, _)| now.duration_since(since) >= EVICT_AFTER)
            .min();
        match candidate {
            Some((_, _, i)) => {
                let conn = self.conns.swap_remove(i);
                // One that failed (a line too long, being drained) has
                // had its line in the log already.
                if !conn.failed
                    && log_answered(conn.peer, conn.answered).is_err()
                {
                    self.log_closed = true;
                }
                true
            }
            _ => false,
        }
    }
}

/// Tells a client over the limit that the server is busy, and closes.
fn refuse(mut sock: TcpStream) {
    let _ = sock.set_nonblocking(true);
    let mut scratch = [0; 4096];
    for _ in 0..16 {
        if !matches!(sock.read(&mut scratch), Ok(n) if n > 0) {
            break;
        }
    }
    // One `write`, not `write_all`, which is of no use on a nonblocking
    // socket: the empty send buffer of a connection just accepted takes
    // these 19 bytes whole; should it fail, the client goes without them.
    let _ = sock.write(b"error: server busy\n");
}
// ANCHOR_END: accept

// ANCHOR: handle
impl Conn {
    /// What to wait for: readable while we take requests (or drain),
    /// unless the replies waiting leave no room; writable while replies
    /// are waiting.
    fn interest(&self) -> PollFlags {
        let mut events = PollFlags::empty();
        let pending = self.output.len() - self.written;
        let reading = matches!(self.state, State::Open | State::Draining);
        if reading && self.room() > 0 {
            events |= PollFlags::POLLIN;
        }
        if pending > 0 {
            events |= PollFlags::POLLOUT;
        }
        events
    }

    /// Does what the events allow: read, write, or notice an error.
    fn handle(
        &mut self,
        events: PollFlags,
        scratch: &mut [u8],
        timeout: Duration,
        now: Instant,
    ) {
        if events.contains(PollFlags::POLLERR) {
            // A reset, most likely: the error is the socket's SO_ERROR.
            // `read` would not tell it once the client's FIN has come,
            // and returns 0 then, as for the FIN alone (Chapter 13).
            match self.sock.take_error() {
                Ok(None) => {}
                Ok(Some(err)) | Err(err) => return self.close(Some(err)),
            }
        }
        let to_read =
            PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLNVAL;
        if events.intersects(to_read) {
            // The client's FIN shows up as the result of `read`.
            self.read(scratch, timeout, now);
        }
        if self.state != State::Closed && self.output.len() > self.written {
            self.write(timeout, now);
        }
    }

    /// How many bytes of requests we may read now: few enough that their
    /// replies, however short the lines, keep the pending replies within
    /// MAX_OUTPUT (and a line begun earlier, MAX_LINE at most, beyond).
    fn room(&self) -> usize {
        let pending = self.output.len() - self.written;
        MAX_OUTPUT.saturating_sub(pending) / MOST_REPLY_PER_BYTE
    }

    /// One `read`: it returns what is there now, and never waits. It
    /// asks for no more than `room`; a draining connection's bytes are
    /// thrown away, so they need none, though `interest` asks `poll` for
    /// them only while room is left, as for an open connection.
    fn read(&mut self, scratch: &mut [u8], timeout: Duration, now: Instant) {
        let most = match self.state {
            State::Draining => scratch.len(),
            _ => self.room().min(scratch.len()),
        };
        if most == 0 {
            // No room, and POLLHUP came anyway: a read of zero bytes
            // would return 0, which looks like the client's FIN (Chapter
            // 13's trap). The FIN waits until there is room.
            return;
        }
        match self.sock.read(&mut scratch[..most]) {
            Ok(0) => self.end_of_requests(timeout, now),
            // Thrown away.
            Ok(_) if self.state == State::Draining => {}
            Ok(n) => {
                if self.idle_since.take().is_some() {
                    self.busy_since = Some(now);
                }
                self.take_lines(&scratch[..n], timeout, now);
            }
            Err(err) if would_block(&err) => {}
            Err(err) => self.close(Some(err)),
        }
    }

    /// Finds the complete lines in what just arrived and queues a reply
    /// to each; keeps the start of an unfinished line for next time.
    fn take_lines(&mut self, data: &[u8], timeout: Duration, now: Instant) {
        for piece in data.split_inclusive(|&byte| byte == b'\n') {
            let (line, complete) = match piece.strip_suffix(b"\n") {
                Some(line) => (line, true),
                None => (piece, false),
            };
            if self.input.len() + line.len() > MAX_LINE {
                let error =
                    format!("error: line longer than {MAX_LINE} bytes\n");
                self.output.extend_from_slice(error.as_bytes());
                self.input.clear();
                self.state = State::Draining;
                self.failed = true;
                log(format_args!(
                    "{}: a line longer than {MAX_LINE} bytes",
                    self.peer
                ));
                return;
            }
            self.input.extend_from_slice(line);
            if complete {
                self.answer(timeout, now);
            }
        }
    }

    /// Queues the reply to the request in `input`.
    fn answer(&mut self, timeout: Duration, now: Instant) {
        self.output.extend_from_slice(b"server got: [");
        self.output.extend_from_slice(&self.input);
        self.output.extend_from_slice(b"]\n");
        // Freed, not just emptied: an idle connection holds no memory.
        self.input = Vec::new();
        self.answered += 1;
        self.deadline = now + timeout;
    }

    // ANCHOR_END: handle
    // ANCHOR: write
    /// The client half-closed. Its last line may lack a newline.
    fn end_of_requests(&mut self, timeout: Duration, now: Instant) {
        if self.idle_since.take().is_some() {
            self.busy_since = Some(now);
        }
        match self.state {
            State::Open => {
                if !self.input.is_empty() {
                    self.answer(timeout, now);
                }
                self.state = State::Finishing;
                self.finish_if_done();
            }
            // The rest of its line too long has come, and nothing more
            // will: it still reads, so the replies left and the error
            // line go out first, and then we close, as for a half-close.
            State::Draining => {
                self.state = State::Finishing;
                self.finish_if_done();
            }
            // It has closed its side too: we are done.
            _ => self.close(None),
        }
    }

    /// Writes as much of the pending replies as the socket takes now.
    /// A partial write is normal: the rest waits for the next POLLOUT.
    fn write(&mut self, timeout: Duration, now: Instant) {
        while self.written < self.output.len() {
            match self.sock.write(&self.output[self.written..]) {
                Ok(n) => self.written += n,
                Err(err) if would_block(&err) => {
                    // Drop what is written: new replies go at the end, and
                    // a client that never lets `output` empty would
                    // otherwise make it grow by all it ever read.
                    self.output.drain(..self.written);
                    self.written = 0;
                    return;
                }
                Err(err) => return self.close(Some(err)),
            }
        }
        // All written: free it, and give the client a new deadline. With
        // no line begun, the connection is idle from now on.
        self.output = Vec::new();
        self.written = 0;
        self.deadline = now + timeout;
        if self.state == State::Open && self.input.is_empty() {
            self.idle_since = Some(now);
            self.busy_since = None;
        }
        self.finish_if_done();
    }

    /// Once everything is written: a finished client is closed, a
    /// draining one gets our FIN and is read until it closes too.
    fn finish_if_done(&mut self) {
        if self.output.len() > self.written {
            return;
        }
        match self.state {
            State::Finishing => self.close(None),
            State::Draining => {
                if let Err(err) = self.sock.shutdown(Shutdown::Write) {
                    self.close(Some(err));
                }
            }
            _ => {}
        }
    }

    /// Marks the connection done; it is closed when it is dropped. An
    /// error is logged, unless the connection has failed already: a
    /// client whose line was too long, and then reset, or timed out,
    /// while it was drained, has had its line in the log.
    fn close(&mut self, err: Option<io::Error>) {
        if let Some(err) = err.filter(|_| !self.failed) {
            let why = match err.kind() {
                ErrorKind::TimedOut => "timed out".to_string(),
                _ => err.to_string(),
            };
            log(format_args!("{}: {why}", self.peer));
            self.failed = true;
        }
        self.state = State::Closed;
        self.idle_since = None;
    }
}

/// `WouldBlock` (nothing to do now) or `Interrupted` (try again).
fn would_block(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}
// ANCHOR_END: write

/// What each connection's socket buffers may hold, each way: the size
/// asked for, which Linux doubles for its bookkeeping. Left to size them
/// itself, Linux grows them with the traffic, a send buffer up to 4 MiB
/// (`tcp_wmem`), and a client that sends requests and reads no replies
/// has the kernel hold megabytes of them for it, where none of the
/// server's limits sees them. Replies of a line need no more than this.
const SOCKET_BUFFER: usize = 64 * 1024;

/// Binds and listens with the backlog and the buffers we choose
/// (Listing 14-2).
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

/// Raises the soft limit on open descriptors to the hard one, and returns
/// it: a thousand clients need more than the usual 1024 (Listing 14-2).
fn raise_fd_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(soft.max(hard))
}

/// The most connections at once, unless `--max-conns` says: an idle one
/// costs a descriptor and a `Conn`, nothing else.
const MAX_CONNS: usize = 10_000;

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

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a log that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("poll-server: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Logs on stdout that `peer`'s connection is over, having had `answered`
/// lines. Only a log that nobody reads any more (`BrokenPipe`) is an
/// error, which ends the server once its clients are served; any other
/// failure (a full disk) loses the line, and every client is served on,
/// as by Listing 14-2.
fn log_answered(peer: SocketAddr, answered: usize) -> io::Result<()> {
    let s = if answered == 1 { "" } else { "s" };
    match writeln!(io::stdout(), "{peer}: answered {answered} line{s}") {
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Err(err),
        _ => Ok(()),
    }
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
