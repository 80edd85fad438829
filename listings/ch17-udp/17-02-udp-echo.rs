// ANCHOR: whole
// Listing 17-2: a UDP server. Each datagram is a request, answered with
// one datagram, `server got: [<request>]`, sent back to whoever sent it,
// from the address it was sent to (from one of this machine's own, if
// that was a broadcast or multicast address);
// a request too large for that gets `error: ...` instead, and a datagram
// that is itself a reply gets nothing.
// There are no connections: one socket serves every client, one datagram
// at a time, and a client that goes away costs nothing.
//
// `udp-echo [HOST:PORT] [--count N] [--drop N]`: stop after N requests;
// ignore the first N requests, to play a network that loses them.

use std::error::Error;
use std::fmt::Display;
use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Write};
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg,
    sendmsg, setsockopt, sockopt,
};

const USAGE: &str = "usage: udp-echo [HOST:PORT] [--count N] [--drop N]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";
/// Room for the largest UDP datagram: 65,535 bytes less the headers.
const MAX_DATAGRAM: usize = 65_536;
/// The most a datagram can carry over IPv4 (65,535 bytes less 20 of IP
/// header and 8 of UDP header) and over IPv6 (whose length field leaves
/// out its own header: only the UDP header's 8): no reply may be longer.
const MAX_REPLY_V4: usize = 65_507;
const MAX_REPLY_V6: usize = 65_527;

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

// ANCHOR: serve
fn run() -> Result<(), Box<dyn Error>> {
    let (spec, count, mut drop) =
        parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let addrs = resolve(&spec)?;
    let sock = UdpSocket::bind(&addrs[..])
        .map_err(|err| format!("cannot listen on {spec}: {err}"))?;
    ask_where_each_datagram_went(&sock)?;
    let mut out = io::stdout();
    writeln!(out, "Server listening on {}", sock.local_addr()?)?;
    let mut buf = vec![0; MAX_DATAGRAM];
    let (mut seen, mut backoff) = (0, Backoff::new());
    while count.is_none_or(|count| seen < count) {
        // One datagram, whole, who sent it, and to which address. No
        // timeout needed: a server with nothing to do may wait as long as
        // it likes, and no client can make it wait for anything else.
        let (n, peer, to) = match receive(&sock, &mut buf) {
            Ok(got) => got,
            // An ICMP error about an earlier reply, on some systems, or
            // a security policy's refusal, which comes back at once.
            Err(err) => {
                backoff.failed(&err);
                continue;
            }
        };
        backoff.received();
        let request = &buf[..n];
        // A reply is never a request. Answered, a datagram forged to come
        // from this very socket, or from another server of this protocol,
        // would come back as a request, and bounce for ever.
        if is_reply(request) {
            writeln!(out, "{peer}: ignored [{}], a reply", shown(request))?;
            continue;
        }
        seen += 1;
        if drop > 0 {
            drop -= 1;
            writeln!(out, "{peer}: dropped [{}]", shown(request))?;
            continue;
        }
        let mut reply = b"server got: [".to_vec();
        reply.extend_from_slice(request);
        reply.push(b']');
        // The reply is 14 bytes longer than the request: near the largest
        // datagram it cannot be one, and `sendmsg` would fail with
        // EMSGSIZE, leaving the client to wait for ever. Say so instead,
        // in a reply that begins `error: `, the protocol's refusal.
        let max = max_reply(peer);
        let done = if reply.len() > max {
            let most = max - (reply.len() - n);
            reply =
                format!("error: a request of {n} bytes; the most is {most}")
                    .into_bytes();
            format!("refused a request of {n} bytes")
        } else {
            format!("answered [{}]", shown(request))
        };
        match send_reply(&sock, &reply, peer, &to) {
            Ok(_) => writeln!(out, "{peer}: {done}")?,
            Err(err) => log(format_args!("{peer}: {err}")),
        }
    }
    Ok(())
}

/// Whether `datagram` is one of this protocol's replies: an answer, or
/// a refusal.
fn is_reply(datagram: &[u8]) -> bool {
    datagram.starts_with(b"server got: [") || datagram.starts_with(b"error: ")
}

/// How much of a request the log shows. A datagram may carry 64 KiB,
/// four times as many characters once escaped: how long our log lines
/// are is not for a client to decide.
const SHOWN: usize = 64;

fn shown(datagram: &[u8]) -> String {
    if datagram.len() <= SHOWN {
        return datagram.escape_ascii().to_string();
    }
    let start = datagram[..SHOWN].escape_ascii();
    format!("{start}... ({} bytes)", datagram.len())
}
// ANCHOR_END: serve

/// After a failed `recvmsg`, waits from 5 ms, doubling up to a second
/// while the failures go on, and logs the first failure of a run only, as
/// Listing 16-1's `Backoff` does after a failed `accept`: an error that
/// comes back at once on every try would otherwise make the loop spin,
/// with a line per turn.
struct Backoff {
    wait: Duration,
    /// When `recvmsg` last failed, if it has.
    failed_at: Option<Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);
    /// How long `recvmsg` must go without failing before a run of
    /// failures is over, and the next one is logged.
    const QUIET: Duration = Duration::from_secs(10);

    fn new() -> Backoff {
        Backoff {
            wait: Backoff::FIRST,
            failed_at: None,
        }
    }

    fn failed(&mut self, err: &io::Error) {
        let now = Instant::now();
        if self
            .failed_at
            .is_none_or(|at| now.duration_since(at) >= Backoff::QUIET)
        {
            log(format_args!("recv: {err}; trying again, less often"));
        }
        self.failed_at = Some(now);
        thread::sleep(self.wait);
        self.wait = (self.wait * 2).min(Backoff::MOST);
    }

    /// A datagram came: the next failure waits 5 ms again.
    fn received(&mut self) {
        self.wait = Backoff::FIRST;
    }
}

/// Where a datagram was sent: the address (and, over IPv6, the
/// interface) its reply must come from.
enum Sent {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
    /// The kernel did not say: the route back chooses.
    Unknown,
}

/// Has the kernel say, with each datagram, the address it was sent to
/// (IP_PKTINFO, IPV6_RECVPKTINFO). On a wildcard address, 0.0.0.0 or
/// `[::]`, a reply otherwise leaves from whichever address the route back
/// to the client picks, and a client that connected its socket to the
/// address it asked ignores a reply from any other. On `[::]`, Linux
/// gives IPv4 datagrams both: IP_PKTINFO's `ipi_spec_dst` is a local
/// address even for a broadcast request, where IPV6_PKTINFO gives the
/// broadcast address itself, which no reply can come from.
fn ask_where_each_datagram_went(sock: &UdpSocket) -> io::Result<()> {
    setsockopt(sock, sockopt::Ipv4PacketInfo, &true)?;
    if sock.local_addr()?.is_ipv6() {
        setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true)?;
    }
    Ok(())
}

/// One datagram, whole: its length, who sent it, and where to.
fn receive(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Sent)> {
    let mut space = nix::cmsg_space!(libc::in_pktinfo, libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    let from = msg.address.as_ref();
    let peer = match (
        from.and_then(|a| a.as_sockaddr_in()),
        from.and_then(|a| a.as_sockaddr_in6()),
    ) {
        (Some(v4), _) => SocketAddr::from(*v4),
        (_, Some(v6)) => SocketAddr::from(*v6),
        _ => return Err(io::Error::other("a datagram with no sender")),
    };
    let mut sent = Sent::Unknown;
    for cmsg in msg.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv4PacketInfo(info) => sent = Sent::V4(info),
            // An IPv4 datagram's IP_PKTINFO, when it has one, wins.
            ControlMessageOwned::Ipv6PacketInfo(info)
                if !matches!(sent, Sent::V4(_)) =>
            {
                sent = Sent::V6(info)
            }
            _ => {}
        }
    }
    Ok((msg.bytes, peer, sent))
}

/// Sends `reply` to `peer`, from the address its request was sent to.
fn send_reply(
    sock: &UdpSocket,
    reply: &[u8],
    peer: SocketAddr,
    sent: &Sent,
) -> io::Result<()> {
    let iov = [IoSlice::new(reply)];
    let to = SockaddrStorage::from(peer);
    let send = |cmsgs: &[ControlMessage]| {
        let flags = MsgFlags::empty();
        sendmsg(sock.as_raw_fd(), &iov, cmsgs, flags, Some(&to))
    };
    match sent {
        // `ipi_spec_dst` is the local address the request came to (for
        // a broadcast or multicast request, the arrival interface's own);
        // no interface, so that the route back chooses it.
        Sent::V4(info) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ..*info
            };
            send(&[ControlMessage::Ipv4PacketInfo(&info)])?
        }
        // The interface goes too, unless the address needs it: a
        // link-local one (fe80::/10) names a place only with its link.
        // An IPv4 client of a socket bound to `[::]` (`::ffff:a.b.c.d`)
        // is answered by IPv4, and Linux would send the reply out of the
        // interface given, whatever the route back says. A request to a
        // multicast group (ff02::1 reaches every host on a link) is
        // answered from an address the kernel picks: a group cannot be
        // a source, and the kernel refuses it (EINVAL).
        Sent::V6(info)
            if Ipv6Addr::from(info.ipi6_addr.s6_addr).is_multicast() =>
        {
            send(&[])?
        }
        Sent::V6(info) => {
            let mut info = *info;
            let local = Ipv6Addr::from(info.ipi6_addr.s6_addr);
            if !local.is_unicast_link_local() {
                info.ipi6_ifindex = 0;
            }
            send(&[ControlMessage::Ipv6PacketInfo(&info)])?
        }
        Sent::Unknown => send(&[])?,
    };
    Ok(())
}

/// The longest reply that can go to `peer`: over IPv4, and so to an
/// IPv4 client of a socket bound to `[::]` too, or over IPv6.
fn max_reply(peer: SocketAddr) -> usize {
    match peer {
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_none() => {
            MAX_REPLY_V6
        }
        _ => MAX_REPLY_V4,
    }
}

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a log that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("udp-echo: {message}\n");
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

/// Reads `[HOST:PORT] [--count N] [--drop N]`.
fn parse_args() -> Result<(String, Option<usize>, usize), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut spec, mut count, mut drop) = (None, None, 0);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Long("drop") => drop = args.value()?.parse()?,
            Value(value) if spec.is_none() => spec = Some(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok((spec.unwrap_or_else(|| DEFAULT_ADDR.into()), count, drop))
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
