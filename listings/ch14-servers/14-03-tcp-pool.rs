// ANCHOR: whole
// Listing 14-3: the server of Listing 14-2 with a fixed pool of worker
// threads instead of a thread per connection. The accepting thread puts
// each connection in a queue of bounded length, and the first free
// worker serves it; a client that finds the queue full is told the
// server is busy. While connections wait for a worker, a thread of its
// own closes every connection that has been idle, waiting for a request,
// for a second or more (EVICT_AFTER), every one whose request has stalled
// as long, and every one whose reply has found the socket's buffers full,
// its client acknowledging nothing, for a tenth of a second (REPLY_GRACE):
// an idle or stalled client must not hold a worker that others need.
// For the same reason, a worker that has answered a request puts its
// connection back at the end of the queue, rather than wait for the next
// request, while others wait for a worker.
// Everything else, the deadlines, the maximum line, the
// backoff after a failed `accept`, the backlog, is Listing 14-2's.
//
// `tcp-pool [HOST:PORT] [--count N] [--workers N] [--queue N]
// [--timeout SECS] [--backlog N]`

use std::collections::HashMap;
use std::error::Error;
use std::fmt::Display;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::mem;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{MsgFlags, recv, send};
use socket2::{Domain, Socket, Type};

const USAGE: &str = "usage: tcp-pool [HOST:PORT] [--count N] \
                     [--workers N] [--queue N] [--timeout SECS] [--backlog N]";
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
    /// How many connections are served at once.
    workers: usize,
    /// How many accepted connections may wait for a worker; more are
    /// refused.
    queue: usize,
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
    raise_fd_limit()?;
    let listener = listen(&config)?;
    // The queue between the accepting thread and the workers. A
    // `Receiver` has one owner, so the workers share it behind a mutex:
    // whoever holds the lock waits for the next connection.
    let (queue, jobs) = mpsc::sync_channel::<Job>(config.queue);
    let jobs = Arc::new(Mutex::new(jobs));
    // The workers' way back into the queue, for a connection that goes
    // idle while others wait; taken away when the server ends.
    let requeue = Arc::new(Mutex::new(Some(queue.clone())));
    let conns = Conns::new();
    let mut workers = Vec::new();
    for _ in 0..config.workers {
        let jobs = Arc::clone(&jobs);
        let requeue = Arc::clone(&requeue);
        let timeout = config.timeout;
        let conns = Arc::clone(&conns);
        let worker = thread::Builder::new().spawn(move || {
            loop {
                conns.worker_free();
                let next =
                    jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
                // The lock is released here, before serving.
                match next {
                    Ok(mut job) => {
                        job.slot.taken();
                        serve(job, timeout, &requeue);
                    }
                    Err(_) => break, // The queue is closed: we are done.
                }
            }
        });
        workers.push(worker.map_err(cannot_start)?);
    }
    thread::Builder::new()
        .spawn({
            let conns = Arc::clone(&conns);
            move || conns.shed_idle_while_others_wait()
        })
        .map_err(cannot_start)?;
    let accept_log = AcceptLog::start().map_err(cannot_start)?;
    // Every thread is running: only now is the server ready.
    writeln!(
        io::stdout(),
        "Server listening on {}",
        listener.local_addr()?
    )?;
    let mut served = 0;
    let mut backoff = Backoff::new();
    while config.count.is_none_or(|count| served < count) {
        // Nobody reads the log any more: the server ends. Asked before
        // `accept`, not after: a client accepted is queued, where one
        // dropped with its request unread would be reset.
        if LOG_CLOSED.load(Ordering::Relaxed) {
            break;
        }
        // The peer's address, as `accept` gives it: once a connection is
        // over on both sides, which one shed in the queue may be by the
        // time a worker takes it, `peer_addr` fails with ENOTCONN.
        let (conn, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and the like: wait before trying again. Clients
                // left in the backlog meanwhile wait for a worker too.
                conns.starved(in_backlog(&listener));
                backoff.failed(&err, &accept_log);
                continue;
            }
        };
        backoff.accepted();
        conns.starved(false);
        // A client that reset while it waited in the backlog is accepted
        // all the same (Linux), and `peer_addr` fails, where `accept`
        // gave an address: nobody to serve, and not one served, for
        // `--count`.
        if let Err(err) = conn.peer_addr() {
            accept_log.line(format_args!("{peer}: {err}"));
            continue;
        }
        let conn = Arc::new(conn);
        let slot = conns.queued(&conn);
        let job = Job {
            conn,
            peer,
            slot,
            answered: 0,
            carried: Vec::new(),
        };
        match queue.try_send(job) {
            Ok(()) => served += 1,
            Err(TrySendError::Full(job)) => refuse(&job.conn),
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
    // No more clients: close the listening socket, so that a new one is
    // refused at once, not left in the backlog to be reset when we end.
    // Closing the queue ends each worker once the queue is empty.
    drop(listener);
    requeue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    drop(queue);
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked")?;
    }
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

// ANCHOR: refuse
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
// ANCHOR_END: refuse

// ANCHOR: shed
/// A connection for a worker: its client's address, as `accept` gave it,
/// its place in the table of connections, the lines answered so far, and
/// what it had sent of its next request when it went back into the queue.
struct Job {
    conn: Arc<TcpStream>,
    peer: SocketAddr,
    slot: Slot,
    answered: usize,
    carried: Vec<u8>,
}

/// How long a connection must have been idle, or stalled in a request,
/// before it may be closed for others that wait. Shorter, and the queue of
/// a burst of clients whose requests are on their way would lose them.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// How long a reply may find the socket's buffers full, its client
/// acknowledging nothing, while others wait for a worker, before the
/// connection is shed. A tenth of EVICT_AFTER: twenty clients that flood
/// and read nothing, behind two workers, cost a new client a second, not
/// ten; a client that reads its replies, and is slow for a moment (its
/// reader not scheduled, the pipe it writes to full), keeps its
/// connection.
const REPLY_GRACE: Duration = Duration::from_millis(100);

/// Every connection accepted and not yet closed, queued or served, and
/// what it is doing since when. A connection in the queue counts as idle
/// from `accept`, until a look at its socket shows a whole request there.
struct Conns {
    table: Mutex<Table>,
    changed: Condvar,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// Connections in the queue, and workers waiting for one: while there
    /// are more of the first, idle connections are closed.
    waiting: usize,
    free: usize,
    /// `accept` fails, out of descriptors, while clients wait in the
    /// backlog: they wait for a worker as much as queued ones do.
    starved: bool,
    /// The evicting thread sleeps with no connection to time: one that
    /// gets a time again must tell it.
    untimed: bool,
    open: HashMap<u64, (Arc<TcpStream>, Since)>,
    /// How many bytes of its next request each connection put back in
    /// the queue carries: they count toward a line too long.
    carried: HashMap<u64, usize>,
}

/// What a connection is doing, and since when.
#[derive(Clone, Copy)]
enum Since {
    /// Waiting for a request, of which nothing has been read.
    Idle(Instant),
    /// Busy with a request whose first byte was read then.
    Request(Instant),
    /// Writing the reply to a whole request: not closed to make room
    /// (the reply has a deadline of its own), so that a worker that waits
    /// for a CPU on a busy machine does not lose a client it is serving.
    Replying,
    /// Writing a reply that found the socket's buffers full, since then:
    /// the worker waits for the client to take earlier replies. Each reply
    /// has its own deadline, so a client that sends a flood of requests
    /// and takes the replies slowly would keep the worker for ever.
    Blocked(Instant),
    /// In the queue, with a whole request waiting in its socket.
    Waiting,
    /// Shut down already, to make room; `blocked` if its reply had found
    /// the buffers full for REPLY_GRACE, which its log line says.
    Shut { blocked: bool },
}

/// One connection's entry; dropping it removes the entry, and, if no
/// worker took the connection (it was refused, or the server is ending),
/// its count in `waiting` too.
struct Slot {
    conns: Arc<Conns>,
    id: u64,
    queued: bool,
}

impl Conns {
    fn new() -> Arc<Conns> {
        Arc::new(Conns {
            table: Mutex::default(),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker is done with its connection and waits for the next.
    fn worker_free(&self) {
        self.lock().free += 1;
    }

    /// Whether clients wait in the backlog that `accept` cannot take.
    fn starved(&self, starved: bool) {
        let mut table = self.lock();
        if table.starved != starved {
            table.starved = starved;
            self.changed.notify_all();
        }
    }

    /// Enters a connection that goes into the queue.
    fn queued(self: &Arc<Self>, conn: &Arc<TcpStream>) -> Slot {
        let mut table = self.lock();
        let id = table.next;
        table.next += 1;
        table.waiting += 1;
        let idle = Since::Idle(Instant::now());
        table.open.insert(id, (Arc::clone(conn), idle));
        self.changed.notify_all();
        Slot {
            conns: Arc::clone(self),
            id,
            queued: true,
        }
    }

    /// The evicting thread: while connections wait in the queue with no
    /// worker free, or in the backlog with no descriptor free, shuts down
    /// every connection idle for EVICT_AFTER or more, or busy that long
    /// with a request it has not finished sending, and every one whose
    /// reply has found the socket's buffers full for REPLY_GRACE.
    /// That ends its worker's wait, or, if it
    /// is still queued, makes its worker find the end of the stream at
    /// once. Sleeps until the next connection comes due, or until
    /// something changes.
    fn shed_idle_while_others_wait(&self) {
        let mut table = self.lock();
        loop {
            if table.waiting <= table.free && !table.starved {
                table = self
                    .changed
                    .wait(table)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let Table { open, carried, .. } = &mut *table;
            for (id, (conn, since)) in open.iter_mut() {
                let (Since::Idle(at) | Since::Request(at) | Since::Blocked(at)) =
                    *since
                else {
                    continue;
                };
                let grace = match since {
                    Since::Blocked(_) => REPLY_GRACE,
                    _ => EVICT_AFTER,
                };
                let due = at + grace;
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                } else if matches!(since, Since::Idle(_))
                    && has_request(conn, carried.get(id).copied().unwrap_or(0))
                {
                    // A whole request came while it was queued: a client
                    // waiting for a worker, not one that stalls.
                    *since = Since::Waiting;
                } else {
                    let _ = conn.shutdown(Shutdown::Both);
                    let blocked = matches!(since, Since::Blocked(_));
                    *since = Since::Shut { blocked };
                }
            }
            table = match next {
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    self.changed
                        .wait_timeout(table, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => {
                    table.untimed = true;
                    let mut table = self
                        .changed
                        .wait(table)
                        .unwrap_or_else(PoisonError::into_inner);
                    table.untimed = false;
                    table
                }
            };
        }
    }
}

impl Slot {
    /// A worker has taken the connection out of the queue.
    fn taken(&mut self) {
        let mut table = self.conns.lock();
        table.waiting -= 1;
        table.free -= 1;
        // What it carried is its worker's buffer again.
        table.carried.remove(&self.id);
        self.queued = false;
    }

    /// Whether the evicting thread shut the connection down. Its reads
    /// then return what was queued and then 0, our own shutdown, not the
    /// client's (Chapter 13), and its writes fail with EPIPE.
    fn shed(&self) -> bool {
        let table = self.conns.lock();
        matches!(table.open.get(&self.id), Some((_, Since::Shut { .. })))
    }

    /// Whether connections wait in the queue with no worker free.
    fn others_wait(&self) -> bool {
        let table = self.conns.lock();
        table.waiting > table.free
    }

    /// The connection goes back into the queue, waiting for (the rest
    /// of) a request from now on, of which it carries `carried` bytes; or,
    /// if the queue would not take it, stays with its worker (`queued`
    /// false).
    fn requeued(&mut self, queued: bool, carried: usize) {
        let mut table = self.conns.lock();
        if queued {
            table.carried.insert(self.id, carried);
            table.waiting += 1;
            if let Some((_, since)) = table.open.get_mut(&self.id) {
                if !matches!(since, Since::Shut { .. }) {
                    *since = Since::Idle(Instant::now());
                }
            }
            self.conns.changed.notify_all();
        } else {
            table.carried.remove(&self.id);
            table.waiting -= 1;
        }
        self.queued = queued;
    }

    /// Marks the connection idle, from now on, or busy with a request
    /// that begins now.
    fn set_idle(&self, idle: bool) {
        let now = Instant::now();
        let mut table = self.conns.lock();
        if let Some((_, since)) = table.open.get_mut(&self.id) {
            if !matches!(since, Since::Shut { .. }) {
                *since = if idle {
                    Since::Idle(now)
                } else {
                    Since::Request(now)
                };
            }
        }
        // Either way the connection has a time to be judged by again (a
        // reply being written has none), which the evicting thread must
        // be told of while others wait if it is timing nothing at all.
        if (idle || table.untimed) && table.waiting > table.free {
            self.conns.changed.notify_all();
        }
    }

    /// A whole request has come: its reply is being written.
    fn replying(&self) {
        let mut table = self.conns.lock();
        if let Some((_, since @ Since::Request(_))) =
            table.open.get_mut(&self.id)
        {
            *since = Since::Replying;
        }
    }

    /// The reply being written found no room: the client has left the
    /// buffers full of replies, and the worker waits for it to read. While
    /// others wait for a worker, that is worth only REPLY_GRACE: the
    /// evicting thread, told at once, sheds the connection then.
    fn reply_blocked(&self) {
        let mut table = self.conns.lock();
        let others_wait = table.waiting > table.free;
        // Blocked again, after the client took some: timed from now.
        if let Some((_, since @ (Since::Replying | Since::Blocked(_)))) =
            table.open.get_mut(&self.id)
        {
            *since = Since::Blocked(Instant::now());
            if others_wait {
                self.conns.changed.notify_all();
            }
        }
    }

    /// Whether the connection was shed because its client left a reply
    /// blocked for REPLY_GRACE while others waited.
    fn shed_blocked(&self) -> bool {
        let table = self.conns.lock();
        matches!(
            table.open.get(&self.id),
            Some((_, Since::Shut { blocked: true }))
        )
    }

    /// A byte of a request has come: an idle or waiting connection is
    /// busy from now on; a busy one stays busy since its request began.
    fn request_begun(&self) {
        let mut table = self.conns.lock();
        if let Some((_, since @ (Since::Idle(_) | Since::Waiting))) =
            table.open.get_mut(&self.id)
        {
            *since = Since::Request(Instant::now());
            // One that waited in the queue with a whole request was timed
            // by nobody; busy now, it may stall (the rest of a line too
            // long, drained), and the evicting thread must time it.
            if table.untimed && table.waiting > table.free {
                self.conns.changed.notify_all();
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.conns.lock();
        table.open.remove(&self.id);
        table.carried.remove(&self.id);
        if self.queued {
            table.waiting -= 1;
        }
    }
}

/// Whether a whole request waits on `conn`: a newline, or more bytes than
/// a line may have, with the `carried` ones a worker read already, or the
/// client's half-close after its last line. Looks without taking
/// anything, and without waiting.
fn has_request(conn: &TcpStream, carried: usize) -> bool {
    // POLLRDHUP (Linux): the client has shut down its sending side.
    let rdhup = PollFlags::from_bits_retain(nix::libc::POLLRDHUP);
    let mut fds = [PollFd::new(conn.as_fd(), rdhup)];
    let finished = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0);
    let mut start = [0; MAX_LINE + 1];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    let seen = recv(conn.as_raw_fd(), &mut start, flags).unwrap_or(0);
    finished || seen + carried > MAX_LINE || start[..seen].contains(&b'\n')
}

/// Whether a connection waits in the listener's backlog. A listening
/// socket is readable when one does, and `poll` needs no descriptor to
/// spare to say so, where `accept` fails.
fn in_backlog(listener: &TcpListener) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}
// ANCHOR_END: shed

// ANCHOR: serve
/// Serves one connection until its client is done, logs how it went, and
/// closes it; unless it goes idle while others wait for a worker, and
/// goes back into the queue.
fn serve(mut job: Job, timeout: Duration, requeue: &Requeue) {
    let answered = loop {
        match answer(&mut job, timeout) {
            Ok(Turn::Idle) => match put_back(requeue, job) {
                Ok(()) => return,
                // The queue is full, or closing: serve on.
                Err(back) => job = back,
            },
            done => break done,
        }
    };
    let Job { conn, peer, .. } = &job;
    // The client sees the end of the stream now, not once the log line
    // is written: writing it waits while the log's reader does (a paused
    // terminal, a stuck log collector).
    let _ = conn.shutdown(Shutdown::Write);
    match answered {
        // Shed to make room: what failed after that, a reply to half a
        // request or to a client that took none, failed because of us. A
        // line too long (`InvalidData`) came before, and is the client's.
        Err(err)
            if err.kind() == ErrorKind::InvalidData || !job.slot.shed() =>
        {
            log(format_args!("{peer}: {}", explain(&err)));
        }
        _ => {
            let lines = job.answered;
            // Shed with its replies unacknowledged: a client that reads,
            // too slowly for the pool, may want to know why it was cut off.
            if job.slot.shed_blocked() {
                let grace = REPLY_GRACE.as_millis();
                log(format_args!(
                    "{peer}: shed, its replies unacknowledged for {grace} \
                     ms while others waited"
                ));
            }
            let s = if lines == 1 { "" } else { "s" };
            let logged =
                writeln!(io::stdout(), "{peer}: answered {lines} line{s}");
            // Nobody reads the log any more: the server ends. The
            // accepting thread sees it before its next `accept`, once it
            // has queued the connection it was waiting for.
            if logged.is_err_and(|e| e.kind() == ErrorKind::BrokenPipe) {
                LOG_CLOSED.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Set once writing the log has failed with `BrokenPipe`.
static LOG_CLOSED: AtomicBool = AtomicBool::new(false);

/// Where a worker's turn with a connection ended.
enum Turn {
    /// The client half-closed: it has no more requests.
    Done,
    /// Between two requests, while others wait for a worker.
    Idle,
}

/// Answers the lines of one connection, counting them in `job`, until
/// its client is done, or until it has had a reply and others wait for a
/// worker: an idle client must not hold a worker for the second of grace
/// that it gets before it is closed, one after another.
fn answer(job: &mut Job, timeout: Duration) -> io::Result<Turn> {
    let (conn, slot) = (&*job.conn, &job.slot);
    let mut reader = BufReader::new(Deadline {
        conn,
        by: Instant::now(),
        slot,
        carried: mem::take(&mut job.carried),
    });
    let mut line = Vec::new();
    let mut replied = false;
    // Replies not written yet, and how many (Listing 14-2).
    let mut replies = Vec::new();
    let mut held = 0;
    loop {
        // Each request must arrive whole within `timeout`: a client that
        // sends one byte a second cannot hold the connection for longer.
        reader.get_mut().by = Instant::now() + timeout;
        if replied {
            // Idle, from now on, unless the next request is in the
            // buffer; its first byte marks it busy (`Deadline::read`).
            // Marked before it may go back into the queue: a queue that
            // is closing sends it back to this worker, to be timed.
            slot.set_idle(reader.buffer().is_empty());
            // No whole request is buffered, and others wait: back into
            // the queue, with what has come of the next request. A line
            // already too long is a whole request (its error): answered
            // now, rather than sent to wait in the queue for a worker.
            let deadline = reader.get_ref();
            let buffered = reader.buffer().len() + deadline.carried.len();
            let whole = reader.buffer().contains(&b'\n') || buffered > MAX_LINE;
            if !whole && slot.others_wait() {
                job.carried = [reader.buffer(), &deadline.carried].concat();
                return Ok(Turn::Idle);
            }
        }
        match read_line(&mut reader, &mut line)? {
            Line::Complete => {
                slot.replying();
                replies.extend_from_slice(b"server got: [");
                replies.extend_from_slice(&line);
                replies.extend_from_slice(b"]\n");
                held += 1;
                // The replies to requests that came together go out
                // together, in one write, once no whole request is left
                // in the buffer, as in Listing 14-2: written one by one,
                // the second would wait for the client's acknowledgement
                // of the first (Nagle's algorithm).
                if replies.len() < MAX_HELD && reader.buffer().contains(&b'\n')
                {
                    continue;
                }
                // And the replies must be taken within `timeout`.
                let by = Instant::now() + timeout;
                write_all_by(conn, slot, &replies, by)?;
                job.answered += held;
                replies.clear();
                held = 0;
                replied = true;
            }
            Line::TooLong => {
                // After the replies held, if any.
                let error =
                    format!("error: line longer than {MAX_LINE} bytes\n");
                replies.extend_from_slice(error.as_bytes());
                // The line too long is what the log says, however telling
                // the client goes: one that leaves without reading the
                // error resets the connection, and one shed meanwhile ends
                // the drain early. Neither is news.
                let by = Instant::now() + timeout;
                let _ = write_all_by(conn, slot, &replies, by)
                    .and_then(|()| close_gently(conn, by));
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("a line longer than {MAX_LINE} bytes"),
                ));
            }
            Line::End => return Ok(Turn::Done),
        }
    }
}

/// The workers' way back into the queue; `None` once the server ends.
type Requeue = Mutex<Option<SyncSender<Job>>>;

/// Puts a connection back at the end of the queue, counted among those
/// waiting; gives it back if the queue is full or the server is ending.
fn put_back(requeue: &Requeue, mut job: Job) -> Result<(), Job> {
    let queue = requeue.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(queue) = queue.as_ref() else {
        return Err(job);
    };
    let carried = job.carried.len();
    job.slot.requeued(true, carried);
    match queue.try_send(job) {
        Ok(()) => Ok(()),
        Err(
            TrySendError::Full(mut job) | TrySendError::Disconnected(mut job),
        ) => {
            job.slot.requeued(false, 0);
            Err(job)
        }
    }
}
// ANCHOR_END: serve

// ANCHOR: deadline
/// A socket whose reads must all be done `by` a point in time. A read
/// timeout (`SO_RCVTIMEO`) bounds one `read` call; this bounds them all
/// together, by giving each call only the time that is left. Bytes that
/// arrive mark the connection busy. What a connection brought back from
/// the queue (`carried`) is read first.
struct Deadline<'a> {
    conn: &'a TcpStream,
    by: Instant,
    slot: &'a Slot,
    carried: Vec<u8>,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.carried.is_empty() {
            self.conn.set_read_timeout(Some(time_left(self.by)?))?;
            let mut conn = self.conn;
            conn.read(buf)?
        } else {
            let n = buf.len().min(self.carried.len());
            buf[..n].copy_from_slice(&self.carried[..n]);
            self.carried.drain(..n);
            n
        };
        if n > 0 {
            self.slot.request_begun();
        }
        Ok(n)
    }
}

// ANCHOR: blocked
/// Writes all of `buf` by the deadline `by`, however slowly the peer
/// reads. Each write is tried first without waiting: if the socket's
/// buffers are full, the client is not taking its replies, and the slot
/// says so before the worker waits for it: while others wait for a
/// worker, the connection is shed if the client acknowledges nothing for
/// REPLY_GRACE, which ends the wait.
fn write_all_by(
    conn: &TcpStream,
    slot: &Slot,
    mut buf: &[u8],
    by: Instant,
) -> io::Result<()> {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    while !buf.is_empty() {
        let written = match send(conn.as_raw_fd(), buf, flags) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                slot.reply_blocked();
                wait_for_room(conn, slot, by)?;
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        if written == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        buf = &buf[written..];
    }
    Ok(())
}

/// Waits, until `by`, for room to send more. The kernel says there is
/// room only once a third of the send buffer is free
/// (`sk_stream_write_space`, net/core/stream.c), which a client that reads
/// slowly, but steadily, takes long to free: so every tenth of the grace,
/// the bytes the client has not yet acknowledged (TIOCOUTQ) are counted,
/// and each time there are fewer, its kernel has taken some, and its grace
/// starts again.
fn wait_for_room(conn: &TcpStream, slot: &Slot, by: Instant) -> io::Result<()> {
    let mut unacked = unacknowledged(conn)?;
    loop {
        let step = time_left(by)?.min(REPLY_GRACE / 10);
        let timeout = PollTimeout::try_from(step).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => {}
            // Room, or an error that the next `send` reports.
            Ok(_) => return Ok(()),
            Err(err) => return Err(err.into()),
        }
        let now = unacknowledged(conn)?;
        if now < unacked {
            slot.reply_blocked();
        }
        unacked = now;
    }
}

/// How many bytes written to `conn` its peer has not acknowledged yet.
fn unacknowledged(conn: &TcpStream) -> io::Result<i32> {
    let mut count: i32 = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int at the pointer given.
    let rc = unsafe {
        nix::libc::ioctl(conn.as_raw_fd(), nix::libc::TIOCOUTQ, &mut count)
    };
    Errno::result(rc)?;
    Ok(count)
}
// ANCHOR_END: blocked

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
    let line = format!("tcp-pool: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// The system refused a thread: say so, not only its errno.
fn cannot_start(err: io::Error) -> String {
    format!("cannot start a thread: {err}")
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
        workers: 32,
        queue: 1000,
        timeout: Duration::from_secs(10),
        backlog: 1024,
    };
    let mut spec = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => config.count = Some(args.value()?.parse()?),
            // Both are made in full at the start: a thread each, and a
            // slot each in the channel. So both have a ceiling.
            Long("workers") => {
                config.workers = at_least_one("--workers", args.value()?)?;
                if config.workers > 10_000 {
                    return Err("--workers is at most 10000".into());
                }
            }
            Long("queue") => {
                config.queue = at_least_one("--queue", args.value()?)?;
                if config.queue > 100_000 {
                    return Err("--queue is at most 100000".into());
                }
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
