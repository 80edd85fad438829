// ANCHOR: whole
// Listing 17-1: what UDP promises, and what it does not. Four short scenes
// on loopback, between two sockets of this one process:
//
// 1. Three datagrams, three reads: boundaries are kept.
// 2. A datagram larger than the buffer: the rest is gone, and std says
//    nothing; `MSG_TRUNC` tells the real length.
// 3. An empty datagram: a read of 0 bytes that is not an end.
// 4. A thousand datagrams to a socket that does not read them in time:
//    most are dropped, and every send still succeeds.

use std::error::Error;
use std::io::{self, ErrorKind, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{self, ExitCode};
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::socket::{MsgFlags, recv, setsockopt, sockopt};

const USAGE: &str = "usage: udp-datagrams";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("udp-datagrams: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let (sender, receiver) = pair()?;
    let mut buf = [0; 1024];

    writeln!(io::stdout(), "1. Three datagrams, one send each")?;
    for message in [&b"one"[..], b"two", &[b'3'; 1000]] {
        sender.send(message)?;
    }
    for _ in 0..3 {
        let n = recv_ours(&receiver, &mut buf)?;
        writeln!(io::stdout(), "   recv: {n} bytes, {}", preview(&buf[..n]))?;
    }

    writeln!(
        io::stdout(),
        "2. A datagram of 1200 bytes, a buffer of 1024"
    )?;
    sender.send(&[b'x'; 1200])?;
    let n = recv_ours(&receiver, &mut buf)?;
    writeln!(
        io::stdout(),
        "   std's recv: {n} bytes, and no sign of the other {}",
        1200 - n
    )?;
    sender.send(&[b'x'; 1200])?;
    skip_strangers(&receiver)?;
    // Linux: with MSG_TRUNC, recv returns the datagram's real length.
    let real = recv(receiver.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC)?;
    writeln!(
        io::stdout(),
        "   recv with MSG_TRUNC: the datagram had {real} bytes"
    )?;

    writeln!(io::stdout(), "3. An empty datagram")?;
    sender.send(b"")?;
    let n = recv_ours(&receiver, &mut buf)?;
    writeln!(
        io::stdout(),
        "   recv: {n} bytes, and the socket is as open as before"
    )?;

    writeln!(
        io::stdout(),
        "4. A thousand datagrams to a small buffer, read afterwards"
    )?;
    setsockopt(&receiver, sockopt::RcvBuf, &4096)?;
    let mut sent = 0;
    for i in 0..1000_u32 {
        sender.send(&i.to_be_bytes())?;
        sent += 1;
    }
    let received = drain(&receiver)?;
    writeln!(
        io::stdout(),
        "   sent {sent}, every send succeeded; received {received} of {sent}"
    )?;
    Ok(())
}
// ANCHOR_END: run

/// Two UDP sockets on loopback, each connected to the other: `send` and
/// `recv` need no address, and nothing from anyone else gets in once `b`
/// is connected. What reached `b`'s port before that, from anyone, is
/// still queued: `skip_strangers` throws it away.
fn pair() -> io::Result<(UdpSocket, UdpSocket)> {
    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    // A datagram sent on loopback usually arrives before `send` returns;
    // the timeout bounds the wait if it does not.
    b.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok((a, b))
}

/// std's `recv`, for the next datagram from the socket's peer.
fn recv_ours(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<usize> {
    skip_strangers(sock)?;
    sock.recv(buf)
}

/// Waits for a datagram, and reads and drops each one at the head of the
/// queue that did not come from the peer: one that arrived between `bind`
/// and `connect`, which the filter of a connected socket lets stay.
/// Peeking leaves the peer's datagram for the read that follows.
fn skip_strangers(sock: &UdpSocket) -> io::Result<()> {
    let peer = sock.peer_addr()?;
    loop {
        let (_, from) = sock.peek_from(&mut [])?;
        if from == peer {
            return Ok(());
        }
        sock.recv(&mut [])?;
        let line = format!("udp-datagrams: ignored a datagram from {from}\n");
        let _ = io::stderr().write_all(line.as_bytes());
    }
}

/// Reads every datagram from the peer that is waiting, without waiting
/// for more; returns how many there were.
fn drain(sock: &UdpSocket) -> io::Result<usize> {
    sock.set_nonblocking(true)?;
    let mut buf = [0; 16];
    let mut count = 0;
    loop {
        match recv_ours(sock, &mut buf) {
            Ok(_) => count += 1,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                return Ok(count);
            }
            Err(err) => return Err(err),
        }
    }
}

/// The start of a datagram, escaped, and an ellipsis if there is more.
fn preview(data: &[u8]) -> String {
    let more = if data.len() > 8 { "..." } else { "" };
    format!("\"{}{more}\"", data[..data.len().min(8)].escape_ascii())
}

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
