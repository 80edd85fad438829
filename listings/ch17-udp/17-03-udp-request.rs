// ANCHOR: whole
// Listing 17-3: a UDP client that copes with loss. Each message is sent as
// a request with a sequence number, `<n> <message>`; the client waits for
// the reply to that request, sends it again if none comes in time, waiting
// twice as long each time, and ignores replies to anything else.
//
// `udp-request HOST:PORT MESSAGE... [--timeout MS] [--tries N]`

use std::error::Error;
use std::fmt::Display;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::{self, ExitCode};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str =
    "usage: udp-request HOST:PORT MESSAGE... [--timeout MS] [--tries N]";

struct Config {
    spec: String,
    messages: Vec<String>,
    /// How long to wait for the first reply; each retry waits twice as
    /// long as the one before.
    timeout: Duration,
    /// How many times to send each request before giving up.
    tries: u32,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("udp-request: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let config = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let servers = resolve(&config.spec)?;
    // The socket connected to the address that answered the first request.
    let mut sock: Option<UdpSocket> = None;
    for (n, message) in (1..).zip(&config.messages) {
        let request = format!("{n} {message}");
        let reply = match &sock {
            Some(sock) => ask(sock, &request, &config),
            None => first_answer(&servers, &request, &config).map(
                |(answered, reply)| {
                    sock = Some(answered);
                    reply
                },
            ),
        }
        .map_err(|err| {
            let spec = config.spec.escape_debug();
            format!("{spec}: request {n}: {err}")
        })?;
        writeln!(io::stdout(), "request {n}: {}", reply.escape_ascii())?;
    }
    Ok(())
}

/// Sends the first request to each address of the name in turn, until one
/// does not refuse it: `localhost` may name `::1` first, where nothing
/// listens, and `127.0.0.1` after it, where the server does (Chapter 18).
/// A refusal, when one comes, comes at once (on loopback at least; a
/// network may drop it), so moving on costs nothing; silence is not a
/// refusal, and an address that never answers ends the client. Once an
/// address has answered, every later request goes there.
fn first_answer(
    servers: &[SocketAddr],
    request: &str,
    config: &Config,
) -> io::Result<(UdpSocket, Vec<u8>)> {
    let Some((last, first)) = servers.split_last() else {
        return Err(io::Error::other("the name has no address"));
    };
    let next = "trying the next address";
    for &server in first {
        // An address this machine cannot send to (IPv6 where it has
        // none) is skipped too.
        let sock = match connect(server) {
            Ok(sock) => sock,
            Err(err) => {
                writeln!(io::stdout(), "{server}: {err}; {next}")?;
                continue;
            }
        };
        match ask(&sock, request, config) {
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                writeln!(io::stdout(), "{server}: {err}; {next}")?;
            }
            answer => return answer.map(|reply| (sock, reply)),
        }
    }
    let sock = connect(*last)?;
    let reply = ask(&sock, request, config)?;
    Ok((sock, reply))
}

/// A UDP socket connected to `server`. A connected UDP socket only
/// receives datagrams from that address, and hears of ICMP errors:
/// "nobody listens on that port" comes back as ECONNREFUSED instead of
/// silence.
fn connect(server: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(any)?;
    sock.connect(server)?;
    Ok(sock)
}

/// Sends `request` until the reply to it comes, or the tries run out.
fn ask(
    sock: &UdpSocket,
    request: &str,
    config: &Config,
) -> io::Result<Vec<u8>> {
    let expected = format!("server got: [{request}]").into_bytes();
    let number = request.split(' ').next().unwrap_or_default();
    let mut wait = config.timeout;
    for try_number in 1..=config.tries {
        sock.send(request.as_bytes())?;
        match reply_within(sock, &expected, wait)? {
            Some(reply) => return Ok(reply),
            None if try_number < config.tries => {
                writeln!(
                    io::stdout(),
                    "request {number}: no reply within {} ms, sending it again",
                    wait.as_millis()
                )?;
                wait *= 2;
            }
            None => {}
        }
    }
    Err(io::Error::new(
        ErrorKind::TimedOut,
        format!("no reply after {} tries", config.tries),
    ))
}

/// Waits up to `wait` for the datagram `expected` from the server, or for
/// the server's `error: ` line, which ends the tries. Anything else that
/// arrives meanwhile, such as a late reply to an earlier request, is
/// ignored, and does not extend the wait.
fn reply_within(
    sock: &UdpSocket,
    expected: &[u8],
    wait: Duration,
) -> io::Result<Option<Vec<u8>>> {
    let server = sock.peer_addr()?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0; 65_536];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Ok(None);
        };
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match sock.recv_from(&mut buf) {
            // Queued between `bind` and `connect`, from anyone: the
            // filter of a connected socket only holds back what comes
            // after it. (Address and port: not an IPv6 flow label.)
            Ok((n, from))
                if (from.ip(), from.port()) != (server.ip(), server.port()) =>
            {
                let what = shown(&buf[..n]);
                writeln!(io::stdout(), "ignored, from {from}: {what}")?
            }
            Ok((n, _)) if buf[..n] == *expected => {
                return Ok(Some(buf[..n].to_vec()));
            }
            // The server's refusal: sending the request again would only
            // be refused again.
            Ok((n, _)) if buf[..n].starts_with(b"error: ") => {
                let why = format!("the server said: {}", shown(&buf[..n]));
                return Err(io::Error::new(ErrorKind::InvalidData, why));
            }
            Ok((n, _)) => {
                writeln!(io::stdout(), "ignored: {}", shown(&buf[..n]))?
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(None),
            // Stopped and continued (Ctrl-Z, `fg`): Linux fails a read
            // with a timeout with EINTR (Chapter 3). Wait for what is left.
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: run

/// How much of a datagram the client shows when it is not the reply it
/// waits for. Anyone may send one, of up to 64 KiB, four times as many
/// characters once escaped: how long our lines are is not for a stranger
/// to decide (Listing 17-2's `shown`).
const SHOWN: usize = 64;

fn shown(datagram: &[u8]) -> String {
    if datagram.len() <= SHOWN {
        return datagram.escape_ascii().to_string();
    }
    let start = datagram[..SHOWN].escape_ascii();
    format!("{start}... ({} bytes)", datagram.len())
}

/// Gives SIGPIPE back its default action: the client is a filter, and
/// ends quietly, like `cat`, when its output goes away.
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

/// Reads the command line.
fn parse_args() -> Result<Config, lexopt::Error> {
    use lexopt::prelude::*;
    let (mut spec, mut messages) = (None, Vec::new());
    let (mut timeout, mut tries) = (500, 4);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("timeout") => timeout = args.value()?.parse()?,
            Long("tries") => tries = args.value()?.parse()?,
            Value(value) if spec.is_none() => spec = Some(value.string()?),
            Value(value) => messages.push(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if !(1..=60_000).contains(&timeout) {
        return Err("--timeout must be from 1 to 60000 ms".into());
    }
    if !(1..=10).contains(&tries) {
        return Err("--tries must be from 1 to 10".into());
    }
    let spec = spec.ok_or("which server?")?;
    if messages.is_empty() {
        return Err("no message to send".into());
    }
    let timeout = Duration::from_millis(timeout);
    Ok(Config {
        spec,
        messages,
        timeout,
        tries,
    })
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
