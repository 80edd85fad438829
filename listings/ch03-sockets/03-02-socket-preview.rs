// ANCHOR: whole
// Listing 3-2: Lutz's `socket_preview.py`, ported to Rust: a server
// thread answers every connection with `server got: [<data>]`, and five
// client threads each send their name and print the reply.
//
// The server listens on 127.0.0.1:50008 unless an address is given;
// port 0 lets the kernel choose. As in the original, whose server thread
// is a daemon thread, the program ends once its five clients have their
// replies, and the server thread with it.

use std::error::Error;
use std::fmt::Display;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str = "usage: socket-preview [HOST:PORT]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log(format_args!("{err}"));
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: preview
const DEFAULT_ADDR: &str = "127.0.0.1:50008";

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let spec = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let spec = spec.as_deref().unwrap_or(DEFAULT_ADDR);
    let addrs = resolve(spec)?;
    // Bind (which also listens) before any client exists: a client can
    // never knock on a door that is not there yet.
    let listener = TcpListener::bind(&addrs[..])
        .map_err(|err| format!("cannot listen on {spec}: {err}"))?;
    let addr = listener.local_addr()?;
    writeln!(io::stdout(), "Server listening on {addr}")?;
    // Never joined: like the original's daemon thread, the server ends
    // with the program.
    spawn(move || serve(&listener))?;

    let clients = (0..5)
        .map(|i| spawn(move || client(addr, &format!("client{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    for client in clients {
        let reply = client.join().map_err(|_| "a client thread panicked")?;
        let reply = reply.map_err(|err| format!("a client failed: {err}"))?;
        writeln!(io::stdout(), "client got: [{}]", reply.escape_ascii())?;
    }
    Ok(())
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

/// `thread::spawn`, but an error instead of a panic when the system
/// refuses another thread (`ulimit -u`, or out of memory).
fn spawn<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<thread::JoinHandle<T>, String> {
    thread::Builder::new()
        .spawn(work)
        .map_err(|err| format!("cannot start a thread: {err}"))
}

// ANCHOR_END: preview

// ANCHOR: server
/// The longest the server spends on one client, from accepting it to
/// closing it.
const SERVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers each connection once, then closes it: one client at a time, as
/// in the original. A client that fails is reported and skipped.
fn serve(listener: &TcpListener) {
    let mut short = false;
    loop {
        let result = match listener.accept() {
            Ok((conn, _)) => {
                short = false;
                answer(conn)
            }
            // Out of descriptors or memory, or refused by a security
            // policy, `accept` fails at once, and again on every try:
            // report the first failure of a run only, and wait before
            // trying again, instead of spinning.
            Err(err) => {
                if !short {
                    log(format_args!("a connection failed: {err}"));
                }
                short = true;
                thread::sleep(ACCEPT_PAUSE);
                continue;
            }
        };
        if let Err(err) = result {
            log(format_args!("a connection failed: {err}"));
        }
    }
}

/// How long the server waits after a failed `accept`.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr cannot be written (a
/// full disk). A closed pipe, in a filter whose SIGPIPE has its default
/// action back, ends the program, as a closed stdout does; where SIGPIPE
/// stays ignored (a server), a line that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("socket-preview: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Reads one request, answers it and closes the connection. One deadline
/// covers the whole exchange, so that no client holds the server for
/// longer than SERVER_TIMEOUT.
fn answer(mut conn: TcpStream) -> io::Result<()> {
    let deadline = Instant::now() + SERVER_TIMEOUT;
    let mut data = [0; 1024];
    let n = read_before(&mut conn, &mut data, deadline)?;
    let mut reply = b"server got: [".to_vec();
    reply.extend_from_slice(&data[..n]);
    reply.push(b']');
    write_before(&mut conn, &reply, deadline)?;
    // Half-close, then read and discard until the client closes too:
    // closing with bytes still unread would send a reset (RST), not FIN.
    conn.shutdown(Shutdown::Write)?;
    let mut scratch = [0; 4096];
    while read_before(&mut conn, &mut scratch, deadline)? > 0 {}
    Ok(())
}

/// One `read`, in whatever time is left before `deadline`. On Linux a
/// socket read with a timeout fails with EINTR when the process is
/// stopped and continued (Ctrl-Z, then `fg`), even with no signal handler
/// installed: such a read is simply tried again.
fn read_before(
    conn: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    loop {
        conn.set_read_timeout(Some(time_left(deadline)?))?;
        match conn.read(buf) {
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            // What a read that runs out of time returns.
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                return Err(ErrorKind::TimedOut.into());
            }
            result => return result,
        }
    }
}

/// `write_all`, in whatever time is left before `deadline`. A write
/// timeout bounds each `send`, and `write_all` sends again after a partial
/// write: setting the timeout once would let each send wait that long
/// again. So the time left is set before each send, as `read_before` does
/// before each read.
fn write_before(
    conn: &mut TcpStream,
    mut buf: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    while !buf.is_empty() {
        conn.set_write_timeout(Some(time_left(deadline)?))?;
        match conn.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            // What a send that runs out of time returns.
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                return Err(ErrorKind::TimedOut.into());
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The time left until `deadline`, or `TimedOut` once it has passed.
fn time_left(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| ErrorKind::TimedOut.into())
}
// ANCHOR_END: server

// ANCHOR: client
/// The longest a client waits to connect, and then the longest its whole
/// exchange may take: more than the server's, so that a client queued
/// behind a silent one still gets its turn.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest reply a client accepts; a longer one is an error.
const MAX_REPLY: u64 = 64 * 1024;

/// Sends `name`, says it has nothing more to send, and returns what the
/// server answers, up to its end.
fn client(addr: SocketAddr, name: &str) -> io::Result<Vec<u8>> {
    let mut sock = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
    // One deadline for the exchange, as the server has: a server that
    // takes our request slowly, or trickles its reply a byte at a time,
    // cannot hold us longer.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    write_before(&mut sock, name.as_bytes(), deadline)?;
    sock.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    let reader = Before {
        conn: &mut sock,
        deadline,
    };
    // One byte more than the most we accept: if it comes, the reply is
    // too long, and cutting it short would pass off a part as the whole.
    reader.take(MAX_REPLY + 1).read_to_end(&mut reply)?;
    if reply.len() as u64 > MAX_REPLY {
        let why = format!("the reply is longer than {MAX_REPLY} bytes");
        return Err(io::Error::new(ErrorKind::InvalidData, why));
    }
    Ok(reply)
}

/// A connection whose every read gets only the time left before
/// `deadline`.
struct Before<'a> {
    conn: &'a mut TcpStream,
    deadline: Instant,
}

impl Read for Before<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_before(self.conn, buf, self.deadline)
    }
}
// ANCHOR_END: client

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on its next write.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Reads `[HOST:PORT]` from the command line.
fn parse_args() -> Result<Option<String>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut spec = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Value(value) if spec.is_none() => spec = Some(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(spec)
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
