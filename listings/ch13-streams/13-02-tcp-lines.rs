// ANCHOR: whole
// Listing 13-2: messages framed by newlines. The server answers each
// line a client sends with a line, `server got: [<line>]`, until the
// client half-closes; a line longer than MAX_LINE bytes gets an error and
// the end of the connection. The client sends its arguments, one per
// line, or else its standard input; then it half-closes, and prints
// every reply. It fails if a line is refused or goes unanswered.
//
// `tcp-lines server [HOST:PORT] [--count N]`: one client at a time, N
// clients if given. `tcp-lines client [HOST:PORT [LINE...]]`.

use std::cmp::Ordering;
use std::error::Error;
use std::fmt::Display;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{self, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str = "usage: tcp-lines server [HOST:PORT] [--count N] | \
                     client [HOST:PORT [LINE...]]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// The longest line the server accepts, newline not counted.
const MAX_LINE: usize = 1024;
/// The longest reply the client accepts: a line in `server got: [` and
/// `]`. The client trusts its server no more than the server its clients.
const MAX_REPLY: usize = MAX_LINE + 14;
/// The longest either side waits for the other to send or to read.
const TIMEOUT: Duration = Duration::from_secs(10);

enum Mode {
    Server { count: Option<usize> },
    Client { lines: Vec<String> },
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
        Mode::Server { count } => {
            // SIGPIPE stays ignored: a server must outlive its clients.
            let listener = TcpListener::bind(&addrs[..])
                .map_err(|err| format!("cannot listen on {spec}: {err}"))?;
            let addr = listener.local_addr()?;
            writeln!(io::stdout(), "Server listening on {addr}")?;
            serve(listener, count)?;
        }
        Mode::Client { lines } => {
            restore_sigpipe()?;
            // Ours, not the server's: said before connecting, without its
            // address in front.
            check_lines(&lines)?;
            client(&addrs, lines)
                .map_err(|err| format!("{spec}: {}", explain(&err)))?;
        }
    }
    Ok(())
}

// ANCHOR: read_line
/// What one call of `read_line` found.
enum Line {
    /// A line, in the buffer without its newline. The last line of a
    /// stream may have no newline; it counts too.
    Complete,
    /// More than MAX_LINE bytes and no newline: the buffer holds
    /// MAX_LINE + 1 of them, and the rest is still unread.
    TooLong,
    /// The end of the stream: the peer has nothing more to send.
    End,
}

/// Reads one line into `line`, but never more than MAX_LINE + 1 bytes:
/// a client that sends a megabyte without a newline costs us no more
/// memory than one that sends a proper line.
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
// ANCHOR_END: read_line

// ANCHOR: server
/// Answers one client at a time, each until it has sent everything it
/// meant to; the next chapter serves many at once.
fn serve(listener: TcpListener, count: Option<usize>) -> io::Result<()> {
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
        match answer(&conn) {
            Ok(lines) => {
                // Only a log nobody reads ends the server; a full disk
                // costs the line.
                let s = if lines == 1 { "" } else { "s" };
                let logged = writeln!(out, "{peer}: answered {lines} line{s}");
                if logged.is_err_and(|e| e.kind() == ErrorKind::BrokenPipe) {
                    return Err(ErrorKind::BrokenPipe.into());
                }
            }
            Err(err) => log(format_args!("{peer}: {}", explain(&err))),
        }
    }
    Ok(())
}

/// Answers every line of one connection; returns how many.
fn answer(conn: &TcpStream) -> io::Result<usize> {
    conn.set_read_timeout(Some(TIMEOUT))?;
    conn.set_write_timeout(Some(TIMEOUT))?;
    // `&TcpStream` reads and writes too: one socket, two handles.
    let mut reader = BufReader::new(conn);
    let mut writer = conn;
    let mut line = Vec::new();
    let mut answered = 0;
    loop {
        match read_line(&mut reader, &mut line)? {
            Line::Complete => {
                let mut reply = b"server got: [".to_vec();
                reply.extend_from_slice(&line);
                reply.extend_from_slice(b"]\n");
                writer.write_all(&reply)?;
                answered += 1;
            }
            Line::TooLong => {
                let error =
                    format!("error: line longer than {MAX_LINE} bytes\n");
                // The line too long is what the log says, however telling
                // the client goes: one that leaves without reading the
                // error resets the connection, and that reset is no news.
                let _ = writer
                    .write_all(error.as_bytes())
                    .and_then(|()| close_gently(conn));
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("a line longer than {MAX_LINE} bytes"),
                ));
            }
            // The client half-closed: it has no more requests. We have
            // read everything, so closing sends a plain FIN.
            Line::End => return Ok(answered),
        }
    }
}

/// Ends a connection whose client is still sending without losing what
/// we wrote: half-close, then read and discard until the client closes
/// too, for at most TIMEOUT. Closing with unread bytes would send RST.
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
/// Each argument is sent as one line: it may not hold a newline, which
/// would make it two, nor more than the server accepts, which would make
/// the server refuse it and every line after it.
fn check_lines(lines: &[String]) -> Result<(), String> {
    for line in lines {
        if line.len() > MAX_LINE {
            let len = line.len();
            return Err(format!(
                "a line of {len} bytes; the most is {MAX_LINE}"
            ));
        }
        if line.contains('\n') {
            let line = line.escape_debug();
            return Err(format!("a line may not hold a newline: '{line}'"));
        }
    }
    Ok(())
}

/// Sends `lines`, or standard input if there are none, and half-closes,
/// in a thread of its own, while this thread prints the replies as they
/// come. Writing everything before reading anything could deadlock: once
/// the unread replies fill the socket buffers, the server stops reading,
/// and our writes wait forever. Succeeds only if every line sent got its
/// reply: an error line, or a reply missing, fails.
fn client(addrs: &[SocketAddr], lines: Vec<String>) -> io::Result<()> {
    let sock = connect(addrs)?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    sock.set_write_timeout(Some(TIMEOUT))?;
    // Out of descriptors, say: our failure, not the server's.
    let mut sending = sock.try_clone().map_err(|err| {
        io::Error::new(err.kind(), format!("cannot clone the socket: {err}"))
    })?;
    let (sent, done) = mpsc::channel();
    // Set once the requests are all sent, just before the half-close.
    let ended = Arc::new(AtomicBool::new(false));
    let ending = Arc::clone(&ended);
    thread::Builder::new()
        .spawn(move || {
            let result = if lines.is_empty() {
                copy_to_socket(&mut io::stdin().lock(), &mut sending)
            } else {
                // Each line built whole, then written once: `writeln!` on
                // the bare socket would send the newline apart (Chapter 14).
                lines
                    .iter()
                    .try_for_each(|line| {
                        sending.write_all(format!("{line}\n").as_bytes())
                    })
                    .map(|()| lines.len())
            }
            // The end of our requests: the server sees the end of the
            // stream, and can still answer.
            .and_then(|sent| {
                ending.store(true, SeqCst);
                sending.shutdown(Shutdown::Write).map(|()| sent)
            });
            let _ = sent.send(result);
        })
        .map_err(|err| {
            io::Error::new(err.kind(), format!("cannot start a thread: {err}"))
        })?;
    let mut out = io::stdout().lock();
    let mut replies = BufReader::new(&sock);
    let (mut reply, mut answered) = (Vec::new(), 0);
    loop {
        reply.clear();
        let limit = MAX_REPLY as u64 + 1;
        if (&mut replies).take(limit).read_until(b'\n', &mut reply)? == 0 {
            break;
        }
        if reply.last() == Some(&b'\n') {
            reply.pop();
        } else if reply.len() > MAX_REPLY {
            let why = format!("a reply longer than {MAX_REPLY} bytes");
            return Err(io::Error::new(ErrorKind::InvalidData, why));
        }
        // The server refused a line, and closes: the lines after it
        // will get no reply. That is a failure, not one more reply.
        if let Some(why) = reply.strip_prefix(b"error: ") {
            out.flush().map_err(to_stdout)?;
            let why = why.escape_ascii();
            let why = format!("the server answered with an error: {why}");
            return Err(io::Error::other(why));
        }
        writeln!(out, "{}", reply.escape_ascii()).map_err(to_stdout)?;
        answered += 1;
    }
    out.flush().map_err(to_stdout)?;
    // The server has closed. It does that after our half-close, unless
    // it hung up early; then the input may still be open, and we leave
    // without it, or our requests met the closed connection, and sending
    // failed on the socket's own error.
    let early = || {
        io::Error::other(
            "the server closed the connection before the end of the input",
        )
    };
    // Once the input has ended, the sending thread has only its half-close
    // and its report left, and we wait for them however long a busy
    // machine takes to run it. Before, the input may be a terminal that
    // no one types at again: a second is all it gets.
    let outcome = if ended.load(SeqCst) {
        done.recv().map_err(|_| RecvTimeoutError::Disconnected)
    } else {
        done.recv_timeout(Duration::from_secs(1))
    };
    let sent = match outcome {
        Ok(Err(err)) if hung_up(&err) => return Err(early()),
        Ok(result) => result.map_err(|err| {
            io::Error::new(err.kind(), format!("sending: {err}"))
        })?,
        Err(_) => return Err(early()),
    };
    // A server that closed without a word after a line it did not like,
    // or one that says more than it was asked.
    match answered.cmp(&sent) {
        Ordering::Less => Err(io::Error::other(format!(
            "the server answered {answered} of {sent} lines"
        ))),
        Ordering::Greater => Err(io::Error::other("a reply nobody asked for")),
        Ordering::Equal => Ok(()),
    }
}

/// True for a socket's error that says the peer has closed: EPIPE and
/// ECONNRESET from a write, ENOTCONN from the half-close once a reset has
/// come. An error of standard input carries words of ours, not an errno.
fn hung_up(err: &io::Error) -> bool {
    use ErrorKind::{BrokenPipe, ConnectionReset, NotConnected};
    err.raw_os_error().is_some()
        && matches!(err.kind(), BrokenPipe | ConnectionReset | NotConnected)
}

/// Copies `input` to the socket with `TcpStream::write`, which sends with
/// MSG_NOSIGNAL: a server that resets makes it fail with EPIPE. Not
/// `io::copy`, which moves the bytes from a pipe (standard input in a
/// shell pipeline) with `splice`, without that flag, so that the reset
/// would kill this client by SIGPIPE, whose default action it restored.
/// Returns how many lines it sent, a last one without newline included,
/// as the server counts them.
fn copy_to_socket(
    input: &mut impl Read,
    sock: &mut TcpStream,
) -> io::Result<usize> {
    let mut buf = [0; 16 * 1024];
    let (mut lines, mut last) = (0, b'\n');
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(lines + usize::from(last != b'\n')),
            Ok(n) => {
                sock.write_all(&buf[..n])?;
                lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                last = buf[n - 1];
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => {
                // The requests cannot end as they should. Shut the reading
                // side too (what is queued is still read), so that the
                // replies end now, and this error, not a wait for the
                // server's, is what the client reports.
                let _ = sock.shutdown(Shutdown::Both);
                let why = format!("standard input: {err}");
                return Err(io::Error::new(err.kind(), why));
            }
        }
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
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("timed out after {} s", TIMEOUT.as_secs())
        }
        _ => err.to_string(),
    }
}

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a log that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("tcp-lines: {message}\n");
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
    let (mut mode, mut spec, mut count) = (None, None, None);
    let mut lines = Vec::new();
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Value(value) if mode.is_none() => mode = Some(value.string()?),
            Value(value) if spec.is_none() => spec = Some(value.string()?),
            Value(value) => lines.push(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    let mode = match mode.as_deref() {
        Some("server") if lines.is_empty() => Mode::Server { count },
        Some("server") => return Err("the server takes no lines".into()),
        Some("client") if count.is_some() => {
            return Err("only the server takes --count".into());
        }
        Some("client") => Mode::Client { lines },
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
