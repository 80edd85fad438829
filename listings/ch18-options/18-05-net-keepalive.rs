// ANCHOR: whole
// Listing 18-5: noticing that a peer is gone, or hung. A peer whose
// machine loses power, or whose network goes, sends nothing: no FIN, no
// reset. Here such a peer is played on loopback by a socket whose kernel
// drops every packet that comes to it (a BPF filter that accepts
// nothing), so that it never answers again. Five scenes:
//
// 1. no keepalive: a read waits, for as long as we let it;
// 2. TCP keepalive, after 1 s idle, a probe a second, 2 probes: the read
//    fails with ETIMEDOUT;
// 3. a write with TCP_USER_TIMEOUT 2 s: unacknowledged data fails the
//    connection with ETIMEDOUT (without it, Linux sends it again for 15
//    minutes or more, as `tcp_retries2` says);
// 4. a peer that is alive but hung (its program never reads): its kernel
//    answers the probes, keepalive says nothing is wrong, and only a
//    heartbeat of the application's own finds out;
// 5. a peer that answers the heartbeat, but too slowly: a byte at a time,
//    each within the heartbeat's time, all of them not.
//
// `net-keepalive` takes no arguments. Linux (TCP_KEEPIDLE and
// TCP_USER_TIMEOUT are Linux's names; BSDs have the first).

use std::error::Error;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use socket2::{SockFilter, SockRef, TcpKeepalive};

const USAGE: &str = "usage: net-keepalive";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("net-keepalive: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
/// How long we let a read wait before we give up on it ourselves.
const PATIENCE: Duration = Duration::from_secs(4);

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(1)) // TCP_KEEPIDLE
        .with_interval(Duration::from_secs(1)) // TCP_KEEPINTVL
        .with_retries(2); // TCP_KEEPCNT

    writeln!(io::stdout(), "1. A peer that is gone; no keepalive")?;
    let (mut sock, peer) = pair()?;
    vanish(&peer)?;
    writeln!(
        io::stdout(),
        "   read: {}",
        read_within(&mut sock, PATIENCE)
    )?;

    writeln!(
        io::stdout(),
        "2. The same, with keepalive (idle 1 s, every 1 s, 2 probes)"
    )?;
    let (mut sock, peer) = pair()?;
    SockRef::from(&sock).set_tcp_keepalive(&keepalive)?;
    vanish(&peer)?;
    writeln!(
        io::stdout(),
        "   read: {}",
        read_within(&mut sock, PATIENCE * 3)
    )?;

    writeln!(
        io::stdout(),
        "3. A write to a peer that is gone, TCP_USER_TIMEOUT 2 s"
    )?;
    let (mut sock, peer) = pair()?;
    SockRef::from(&sock).set_tcp_user_timeout(Some(Duration::from_secs(2)))?;
    vanish(&peer)?;
    sock.write_all(b"hello\n")?;
    writeln!(
        io::stdout(),
        "   wrote 6 bytes; read: {}",
        read_within(&mut sock, PATIENCE * 3)
    )?;

    writeln!(
        io::stdout(),
        "4. A peer that is alive but never reads, with keepalive"
    )?;
    let (mut sock, _hung) = pair()?;
    SockRef::from(&sock).set_tcp_keepalive(&keepalive)?;
    writeln!(
        io::stdout(),
        "   read: {}",
        read_within(&mut sock, PATIENCE)
    )?;
    writeln!(
        io::stdout(),
        "   heartbeat: {}",
        heartbeat(&mut sock, Duration::from_secs(1))?
    )?;

    writeln!(
        io::stdout(),
        "5. A peer that answers the heartbeat, a byte every 0.4 s"
    )?;
    let (mut sock, slow) = pair()?;
    let peer = thread::Builder::new()
        .spawn(move || pong_slowly(slow))
        .map_err(|err| format!("cannot start a thread: {err}"))?;
    writeln!(
        io::stdout(),
        "   heartbeat: {}",
        heartbeat(&mut sock, Duration::from_secs(1))?
    )?;
    drop(sock);
    // Its last bytes find the connection closed: that is expected.
    let _ = peer.join();
    Ok(())
}

/// Makes `peer` drop every packet that comes to it: a classic BPF
/// program of one instruction, "return 0", which accepts nothing. Its
/// kernel no longer acknowledges data or keepalive probes, as if its
/// machine had gone.
fn vanish(peer: &TcpStream) -> io::Result<()> {
    const RETURN_0: SockFilter = SockFilter::new(0x06, 0, 0, 0); // BPF_RET|BPF_K
    SockRef::from(peer).attach_filter(&[RETURN_0])
}

/// One `read`, with `patience` for a timeout: what it returned, and when.
fn read_within(sock: &mut TcpStream, patience: Duration) -> String {
    let started = Instant::now();
    let result = loop {
        let left = patience.saturating_sub(started.elapsed());
        let result = sock
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .and_then(|()| sock.read(&mut [0; 64]));
        match result {
            // Stopped and continued (Ctrl-Z, `fg`): Linux fails a read
            // with a timeout with EINTR. Wait for the time that is left.
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            result => break result,
        }
    };
    let took = started.elapsed().as_secs_f64();
    match result {
        Err(err) if err.kind() == ErrorKind::WouldBlock => {
            format!("still waiting after {took:.1} s (measured), our timeout")
        }
        Err(err) => format!("{err}, after {took:.1} s (measured)"),
        Ok(0) => format!("the end of the stream, after {took:.1} s (measured)"),
        Ok(n) => format!("{n} bytes, after {took:.1} s (measured)"),
    }
}

/// The application's own check: send `ping`, and expect `pong` back
/// within `within`: a deadline for the whole answer, not a timeout for
/// each read, which a peer could meet a byte at a time for ever.
fn heartbeat(sock: &mut TcpStream, within: Duration) -> io::Result<String> {
    sock.write_all(b"ping\n")?;
    let deadline = Instant::now() + within;
    let (mut reply, mut got) = ([0; 5], 0);
    while got < reply.len() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match sock.read(&mut reply[got..]) {
            Ok(0) => return Ok("the peer closed the connection".into()),
            Ok(n) => got += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            // Stopped and continued (Ctrl-Z, `fg`): read again.
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(match &reply[..got] {
        b"pong\n" => "pong: the peer is alive".into(),
        _ if got < reply.len() => {
            format!("no pong within {} s", within.as_secs())
        }
        _ => "a wrong answer".into(),
    })
}
// ANCHOR_END: run

/// Scene 5's peer: reads `ping`, and sends `pong` a byte at a time.
fn pong_slowly(mut peer: TcpStream) -> io::Result<()> {
    peer.read_exact(&mut [0; 5])?;
    for byte in b"pong\n" {
        thread::sleep(Duration::from_millis(400));
        peer.write_all(&[*byte])?;
    }
    Ok(())
}

/// A connected pair of sockets on loopback: ours, and the peer's.
fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let ours = TcpStream::connect(listener.local_addr()?)?;
    let (peer, _) = accept_own(&listener, &ours)?;
    Ok((ours, peer))
}

/// Accepts connections until the one from `client`, our own, comes; any
/// other (someone else on this machine, which can reach 127.0.0.1 too) is
/// closed at once, as Listing 18-2 does. Ours by address and port.
fn accept_own(
    listener: &TcpListener,
    client: &TcpStream,
) -> io::Result<(TcpStream, SocketAddr)> {
    let ours = client.local_addr()?;
    loop {
        let (conn, peer) = listener.accept()?;
        if (peer.ip().to_canonical(), peer.port()) == (ours.ip(), ours.port()) {
            return Ok((conn, peer));
        }
    }
}

/// Gives SIGPIPE back its default action: this is a filter.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Takes no arguments but `--help`.
fn parse_args() -> Result<(), lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = lexopt::Parser::from_env();
    if let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(())
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
