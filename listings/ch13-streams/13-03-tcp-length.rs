// ANCHOR: whole
// Listing 13-3: messages framed by a length prefix. Each frame is a
// 4-byte big-endian length followed by that many bytes. The server
// answers every frame with the frame `server got: [<frame>]` until the
// client half-closes; the client sends each of its arguments as a frame
// and prints each reply.
//
// `tcp-length server [HOST:PORT] [--count N] [--with-capacity]`, where
// `--with-capacity` reads frames the wrong way, to show what goes wrong.
// `tcp-length client HOST:PORT MESSAGE...`.

use std::error::Error;
use std::fmt::Display;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str = "usage: tcp-length server [HOST:PORT] [--count N] \
                     [--with-capacity] | client HOST:PORT MESSAGE...";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// The largest request the server accepts.
const MAX_FRAME: usize = 64 * 1024;
/// The largest reply: a request in `server got: [` and `]`, 14 bytes
/// more. Each side reads and writes with the limit of what it expects.
const MAX_REPLY: usize = MAX_FRAME + 14;
/// The longest either side waits for the other to send or to read.
const TIMEOUT: Duration = Duration::from_secs(10);

enum Mode {
    Server {
        count: Option<usize>,
        with_capacity: bool,
    },
    Client {
        messages: Vec<String>,
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
    let (mode, spec) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let addrs = resolve(&spec)?;
    match mode {
        Mode::Server {
            count,
            with_capacity,
        } => {
            let listener = TcpListener::bind(&addrs[..])
                .map_err(|err| format!("cannot listen on {spec}: {err}"))?;
            let addr = listener.local_addr()?;
            writeln!(io::stdout(), "Server listening on {addr}")?;
            serve(listener, count, with_capacity)?;
        }
        Mode::Client { messages } => {
            restore_sigpipe()?;
            // Ours, not the server's: said before connecting, without its
            // address in front.
            if let Some(long) = messages.iter().find(|m| m.len() > MAX_FRAME) {
                let len = long.len();
                return Err(format!(
                    "a message of {len} bytes; the most is {MAX_FRAME}"
                )
                .into());
            }
            client(&addrs, &messages)
                .map_err(|err| format!("{spec}: {}", explain(&err)))?;
        }
    }
    Ok(())
}

// ANCHOR: frames
/// Writes one frame of at most `max` bytes. Header and body go out in
/// one `write_all`: two small writes in a row can stall for a delayed
/// ACK, 40 ms or more (Chapter 18 measures it).
fn write_frame(
    mut writer: impl Write,
    body: &[u8],
    max: usize,
) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len as usize <= max)
        .ok_or_else(|| io::Error::other("frame too large to send"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    writer.write_all(&frame)
}

/// Reads one frame of at most `max` bytes; `None` if the stream ends
/// where a frame would start. The length is checked before anything is
/// allocated: it is the peer's claim, and a peer can claim four gigabytes.
fn read_frame(
    mut reader: impl Read,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0; 4];
    if !read_header(&mut reader, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("a frame of {len} bytes; the most is {max}"),
        ));
    }
    // `vec!` makes `len` zeroed bytes: a buffer of length `len`, which is
    // what `read_exact` fills. It fails with `UnexpectedEof` if the
    // stream ends inside the frame.
    let mut body = vec![0; len];
    reader
        .read_exact(&mut body)
        .map_err(|err| match err.kind() {
            ErrorKind::UnexpectedEof => {
                io::Error::new(err.kind(), "the stream ended inside a frame")
            }
            _ => err,
        })?;
    Ok(Some(body))
}

/// Fills `header`, or returns false if the stream ends before its first
/// byte: the one place where the end of the stream is the normal end.
/// `read_exact` alone cannot tell that case from a header cut short.
fn read_header(reader: &mut impl Read, header: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame header",
                ));
            }
            Ok(n) => got += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}
// ANCHOR_END: frames

// ANCHOR: trap
/// The trap: `Vec::with_capacity(len)` has room for `len` bytes, but its
/// length is 0, and `Read` fills a slice of the *length*. `read_exact`
/// of an empty slice succeeds at once, having read nothing, and the
/// body's bytes stay in the stream, to be taken for the next header.
fn read_frame_with_capacity(
    mut reader: impl Read,
) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0; 4];
    if !read_header(&mut reader, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("a frame of {len} bytes; the most is {MAX_FRAME}"),
        ));
    }
    let mut body = Vec::with_capacity(len);
    reader.read_exact(&mut body)?;
    Ok(Some(body))
}
// ANCHOR_END: trap

// ANCHOR: server
/// Answers one client at a time, every frame it sends, until it
/// half-closes.
fn serve(
    listener: TcpListener,
    count: Option<usize>,
    with_capacity: bool,
) -> io::Result<()> {
    let mut out = io::stdout();
    let (mut served, mut backoff) = (0, Backoff::new());
    // Closed as soon as the last client the count allows is accepted (at
    // once for `--count 0`): left open while we answer that client, the
    // socket would take one who comes meanwhile into its backlog, and our
    // end would reset them. Closed, it refuses them at once.
    let mut listener = Some(listener).filter(|_| count != Some(0));
    while let Some(open) = &listener {
        let conn = match open.accept() {
            Ok((conn, _)) => conn,
            // Out of descriptors, say, `accept` fails at once, and again
            // until one comes free: wait, longer after each failure, and
            // log the run once, instead of spinning.
            Err(err) => {
                backoff.failed(&err);
                continue;
            }
        };
        backoff.accepted();
        // A client that reset before we took it is still accepted, and
        // asking its address fails: not one served, so `--count` does
        // not count it.
        let peer = match conn.peer_addr() {
            Ok(peer) => peer,
            Err(err) => {
                log(format_args!("a connection failed: {err}"));
                continue;
            }
        };
        served += 1;
        if count == Some(served) {
            listener = None;
        }
        match answer(&conn, with_capacity) {
            Ok(n) => {
                // Only a log nobody reads ends the server; a full disk
                // costs the line.
                let s = if n == 1 { "" } else { "s" };
                let logged = writeln!(out, "{peer}: answered {n} frame{s}");
                if logged.is_err_and(|e| e.kind() == ErrorKind::BrokenPipe) {
                    return Err(ErrorKind::BrokenPipe.into());
                }
            }
            Err(err) => {
                log(format_args!("{peer}: {}", explain(&err)));
                // Whatever the client still sends is unread; drain it, so
                // that it gets a FIN, not a reset. Not after a timeout: a
                // client that has gone silent would hold the server for
                // another TIMEOUT.
                if !timed_out(&err) {
                    let _ = close_gently(&conn);
                }
            }
        }
    }
    Ok(())
}

fn answer(conn: &TcpStream, with_capacity: bool) -> io::Result<usize> {
    conn.set_read_timeout(Some(TIMEOUT))?;
    conn.set_write_timeout(Some(TIMEOUT))?;
    let mut answered = 0;
    loop {
        let frame = if with_capacity {
            read_frame_with_capacity(conn)?
        } else {
            read_frame(conn, MAX_FRAME)?
        };
        let Some(frame) = frame else {
            return Ok(answered);
        };
        let mut reply = b"server got: [".to_vec();
        reply.extend_from_slice(&frame);
        reply.push(b']');
        write_frame(conn, &reply, MAX_REPLY)?;
        answered += 1;
    }
}

/// Half-closes, then reads and discards until the client closes too, for
/// at most TIMEOUT. Closing with unread bytes would send a reset (RST).
fn close_gently(mut conn: &TcpStream) -> io::Result<()> {
    conn.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut scratch = [0; 8192];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match conn.read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // Stopped and continued (Ctrl-Z, `fg`): Linux fails a read
            // with a timeout with EINTR (Chapter 3). Read again.
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Err(ErrorKind::TimedOut.into())
}
// ANCHOR_END: server

/// After a failed `accept`, waits from 5 ms, doubling up to a second while
/// the failures go on, and logs the first failure of a run only: Listing
/// 14-2's `Backoff`, which Chapter 14 explains, logging with `log`. Out of
/// descriptors or memory, or refused by a security policy, `accept` fails
/// at once, and again on every try: a loop that tried again at once would
/// spin, with a line per turn.
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
        // One client that gave up while it waited in the queue (the BSDs
        // say so; Linux hands the connection over): logged, since it is
        // one line per client, and no reason to pause.
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

// ANCHOR: client
/// Sends each message as a frame and prints the reply before sending
/// the next; then half-closes, and expects the server to close cleanly.
fn client(addrs: &[SocketAddr], messages: &[String]) -> io::Result<()> {
    let sock = connect(addrs)?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    sock.set_write_timeout(Some(TIMEOUT))?;
    let mut out = io::stdout().lock();
    for message in messages {
        write_frame(&sock, message.as_bytes(), MAX_FRAME)?;
        let reply = read_frame(&sock, MAX_REPLY)?.ok_or_else(|| {
            io::Error::new(ErrorKind::UnexpectedEof, "the server hung up")
        })?;
        writeln!(out, "{}", reply.escape_ascii()).map_err(to_stdout)?;
    }
    sock.shutdown(Shutdown::Write)?;
    match read_frame(&sock, MAX_REPLY)? {
        None => Ok(()),
        Some(_) => Err(io::Error::other("a reply nobody asked for")),
    }
}

/// Tries each address in turn, giving each at most TIMEOUT.
fn connect(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(ErrorKind::InvalidInput, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, TIMEOUT) {
            Ok(sock) => return Ok(sock),
            Err(err) => last = err,
        }
    }
    Err(last)
}
// ANCHOR_END: client

/// Our own output failed (a full disk, `> /dev/full`): say so, so that
/// the error is not taken for the server's.
fn to_stdout(err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("standard output: {err}"))
}

/// A read that times out fails with `WouldBlock`; say what happened.
fn explain(err: &io::Error) -> String {
    if timed_out(err) {
        return format!("timed out after {} s", TIMEOUT.as_secs());
    }
    err.to_string()
}

/// Whether `err` is a read or write that ran out of time (`WouldBlock`,
/// from a socket timeout) or a deadline that passed (`TimedOut`).
fn timed_out(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a log that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("tcp-length: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, the client
/// ends quietly, like `cat`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
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

/// Reads the command line: a mode, then the mode's arguments.
fn parse_args() -> Result<(Mode, String), lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = lexopt::Parser::from_env();
    let (mut mode, mut spec, mut count) = (None, None, None);
    let (mut with_capacity, mut messages) = (false, Vec::new());
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Long("with-capacity") => with_capacity = true,
            Value(value) if mode.is_none() => mode = Some(value.string()?),
            Value(value) if spec.is_none() => spec = Some(value.string()?),
            Value(value) => messages.push(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    let mode = match mode.as_deref() {
        Some("server") if messages.is_empty() => Mode::Server {
            count,
            with_capacity,
        },
        Some("server") => return Err("the server takes no messages".into()),
        Some("client") if count.is_some() || with_capacity => {
            return Err(
                "only the server takes --count or --with-capacity".into()
            );
        }
        Some("client") if spec.is_none() => {
            return Err("the client needs HOST:PORT".into());
        }
        Some("client") => Mode::Client { messages },
        Some(other) => {
            return Err(
                format!("unknown mode '{}'", other.escape_debug()).into()
            );
        }
        None => return Err("which mode?".into()),
    };
    Ok((mode, spec.unwrap_or_else(|| DEFAULT_ADDR.into())))
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
