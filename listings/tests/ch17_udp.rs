//! Chapter 17, UDP: Listings 17-1 (`udp-datagrams`), 17-2 (`udp-echo`)
//! and 17-3 (`udp-request`).

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::line_server::start_server;
use crate::support::{
    DEBIAN_HOSTS, Listing, assert_rejects, assert_session_matches_book,
    assert_session_matches_book_masking, cargo_run, default_port, have, ipv6,
    need_root, private_hosts_file, run, run_with_hosts, unless_blessing,
    wait_until,
};

/// The number after `RcvbufErrors` on the `Udp:` lines of /proc/net/snmp:
/// datagrams the kernel dropped because a socket's buffer was full.
fn rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let column = names
        .split_whitespace()
        .position(|name| name == "RcvbufErrors")
        .expect("an RcvbufErrors column");
    values
        .split_whitespace()
        .nth(column)
        .unwrap()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Listing 17-1: datagrams

#[test]
fn datagrams_keep_boundaries_truncate_silently_and_get_lost() {
    // Linux 6.18: MSG_TRUNC returns a datagram's real length, and drops at
    // a full receive buffer count in /proc/net/snmp's RcvbufErrors.
    let dropped_before = rcvbuf_errors();
    let out = run(bin!("udp-datagrams"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout[..10],
        [
            "1. Three datagrams, one send each",
            "   recv: 3 bytes, \"one\"",
            "   recv: 3 bytes, \"two\"",
            "   recv: 1000 bytes, \"33333333...\"",
            "2. A datagram of 1200 bytes, a buffer of 1024",
            "   std's recv: 1024 bytes, and no sign of the other 176",
            "   recv with MSG_TRUNC: the datagram had 1200 bytes",
            "3. An empty datagram",
            "   recv: 0 bytes, and the socket is as open as before",
            "4. A thousand datagrams to a small buffer, read afterwards",
        ]
    );
    let received: u64 = out.stdout[10]
        .rsplit_once("received ")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .expect("received <n> of 1000");
    // A handful, as the chapter says: the 8 KiB the kernel makes of the
    // 4096 bytes asked for, each datagram charged several hundred bytes of
    // accounting (Linux 6.18: 9 of them fit). A receive buffer left at its
    // default size, 212,992 bytes here, holds hundreds (256).
    assert!(received <= 32, "{received} datagrams survived");
    // And the kernel counted drops at a full socket buffer. (Not
    // necessarily all of ours: on a busy machine a few may be dropped
    // earlier, in the loopback device's own queue, which counts them
    // elsewhere. Other programs can only add to the count.)
    let dropped = rcvbuf_errors() - dropped_before;
    assert!(dropped > 0, "no drop counted");
    // How many survived the full buffer varies from run to run.
    assert_session_matches_book_masking(
        "ch17-udp/17-01-udp-datagrams.out",
        &[(cargo_run("udp-datagrams", &[]), &out.stdout)],
        &[(r"\breceived \d+ of\b", "received <n> of")],
    );
}

// ---------------------------------------------------------------------------
// Listings 17-2 and 17-3: a server, and a client that retries

#[test]
fn udp_session_matches_the_book() {
    let _port = default_port();
    let server_args = ["--count", "3", "--drop", "1"];
    let (server, addr) = start_server(
        bin!("udp-echo"),
        &unless_blessing(&server_args, "127.0.0.1:0"),
    );
    // Two seconds, then four: long enough that on the busiest machine
    // only the dropped request goes unanswered.
    let client_args = ["hello", "world", "--timeout", "2000"];
    let mut args = vec![addr.as_str()];
    args.extend(client_args);
    let started = Instant::now();
    let client = run(bin!("udp-request"), &args);
    assert!(client.status.success(), "{}", client.stderr);
    assert_eq!(
        client.stdout,
        [
            "request 1: no reply within 2000 ms, sending it again",
            "request 1: server got: [1 hello]",
            "request 2: server got: [2 world]",
        ]
    );
    // The lost request cost the client its first timeout, at least.
    assert!(started.elapsed() >= Duration::from_millis(2000));
    let server = server.finish();
    assert!(server.status.success(), "{}", server.stderr);
    assert_session_matches_book(
        "ch17-udp/17-02-server.out",
        &[(cargo_run("udp-echo", &server_args), &server.stdout)],
    );
    let mut shown = vec!["127.0.0.1:50008"];
    shown.extend(client_args);
    assert_session_matches_book(
        "ch17-udp/17-03-client.out",
        &[(cargo_run("udp-request", &shown), &client.stdout)],
    );
}

#[test]
fn udp_client_ignores_a_duplicate_reply_to_an_earlier_request() {
    // A server, played by the test, that answers the first request twice,
    // as a network that duplicates a datagram would.
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    // The socket stays open until the client is done: a datagram that
    // found it closed would come back to the client as ECONNREFUSED.
    let keep_open = fake.try_clone().unwrap();
    let server = thread::spawn(move || {
        let mut buf = [0; 100];
        for copies in [2, 1] {
            let (n, peer) = fake.recv_from(&mut buf).unwrap();
            let request = String::from_utf8_lossy(&buf[..n]);
            let reply = format!("server got: [{request}]");
            for _ in 0..copies {
                fake.send_to(reply.as_bytes(), peer).unwrap();
            }
        }
    });
    // A timeout no loaded machine reaches: no retry, so the server sees
    // each request once.
    let args = [addr.as_str(), "a", "b", "--timeout", "20000"];
    let out = run(bin!("udp-request"), &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "request 1: server got: [1 a]",
            "ignored: server got: [1 a]",
            "request 2: server got: [2 b]",
        ]
    );
    server.join().unwrap();
    drop(keep_open);
}

/// A datagram that is not the reply, or the server's refusal, can be as
/// long as UDP carries and hold any bytes: the client shows it as 17-2's
/// log shows a request, escaped and cut after 64 bytes, in one line.
#[test]
fn udp_client_shows_a_long_datagram_in_one_short_escaped_line() {
    // Linux 6.18, whose IPv4 UDP carries at most 65,507 bytes of data.
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    let keep_open = fake.try_clone().unwrap();
    // Newlines, a quote and a byte that is not UTF-8, over and over.
    let junk: Vec<u8> =
        b"a\nb\"\xff".iter().copied().cycle().take(65_507).collect();
    let mut refusal = b"error: ".to_vec();
    refusal.extend_from_slice(&junk[..65_500]);
    let (sent_junk, sent_refusal) = (junk.clone(), refusal.clone());
    let server = thread::spawn(move || {
        let mut buf = [0; 100];
        // Request 1: the junk first, then the reply.
        let (n, peer) = fake.recv_from(&mut buf).unwrap();
        let reply =
            format!("server got: [{}]", String::from_utf8_lossy(&buf[..n]));
        fake.send_to(&sent_junk, peer).unwrap();
        fake.send_to(reply.as_bytes(), peer).unwrap();
        // Request 2: a refusal as long as a datagram can be.
        let (_, peer) = fake.recv_from(&mut buf).unwrap();
        fake.send_to(&sent_refusal, peer).unwrap();
    });
    let args = [addr.as_str(), "a", "b", "--timeout", "20000"];
    let out = run(bin!("udp-request"), &args);
    server.join().unwrap();
    drop(keep_open);
    let start = junk[..64].escape_ascii().to_string();
    assert_eq!(
        out.stdout,
        [
            format!("ignored: {start}... (65507 bytes)"),
            "request 1: server got: [1 a]".to_string(),
        ]
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let start = refusal[..64].escape_ascii().to_string();
    assert_eq!(
        out.stderr,
        format!(
            "udp-request: {addr}: request 2: the server said: \
             {start}... (65507 bytes)\n"
        )
    );
}

#[test]
fn udp_client_gives_up_after_its_tries_each_twice_as_long() {
    let (server, addr) =
        start_server(bin!("udp-echo"), &["127.0.0.1:0", "--drop", "1000"]);
    let started = Instant::now();
    let out = run(
        bin!("udp-request"),
        &[&addr, "anyone?", "--tries", "3", "--timeout", "100"],
    );
    // 100, then 200, then 400 ms.
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(
        out.stdout,
        [
            "request 1: no reply within 100 ms, sending it again",
            "request 1: no reply within 200 ms, sending it again",
        ]
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        format!("udp-request: {addr}: request 1: no reply after 3 tries\n")
    );
    drop(server);
}

/// A UDP port of 127.0.0.1 where nobody listens, held for as long as the
/// socket returned lives (`hold`). A port bound a moment ago and closed
/// is free for any program to take.
fn a_port_nobody_listens_on() -> (UdpSocket, SocketAddr) {
    let held = hold(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = held.local_addr().unwrap();
    (held, addr)
}

/// A socket that holds `addr` where nobody listens. Linux 6.18: it is
/// bound, so that no other program can take the address, and connected
/// to itself, so that it accepts datagrams from itself only: a datagram
/// from anyone else finds no socket, and the kernel answers it with ICMP
/// "port unreachable". Fails if another socket has the address already.
fn hold(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let held = UdpSocket::bind(addr)?;
    let addr = held.local_addr()?;
    held.connect(addr)?;
    let taken = UdpSocket::bind(addr).map(|_| ());
    assert!(
        taken
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse),
        "another socket could bind {addr}: {taken:?}"
    );
    Ok(held)
}

#[test]
fn a_connected_udp_client_hears_that_nobody_listens() {
    // Linux 6.18: the ICMP "port unreachable" of a loopback port comes
    // back to a connected socket as ECONNREFUSED (__udp4_lib_err).
    let (_held, addr) = a_port_nobody_listens_on();
    let addr = addr.to_string();
    let started = Instant::now();
    let out = run(bin!("udp-request"), &[&addr, "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        format!(
            "udp-request: {addr}: request 1: Connection refused (os error 111)\n"
        )
    );
    // At once, not after the timeouts: the kernel's ICMP error.
    assert!(started.elapsed() < Duration::from_secs(7));
}

#[test]
fn udp_client_tries_the_next_address_of_a_name_that_refuses() {
    if !ipv6() || !private_hosts_file() {
        return;
    }
    // A server on 127.0.0.1 only, and Debian's /etc/hosts, in a mount
    // namespace of the client's own: `localhost` names ::1 first, where
    // nobody listens, and the refusal comes back at once. Nobody: the
    // server's port on ::1 is held for the test, or, if another program
    // has it, a new server is started.
    let (server, addr, _held) = (0..20)
        .find_map(|_| {
            let args = ["127.0.0.1:0", "--count", "2"];
            let (server, addr) = start_server(bin!("udp-echo"), &args);
            let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
            let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            Some((server, addr, hold(v6).ok()?))
        })
        .expect("a port free on ::1 for one of 20 servers");
    let port = addr.rsplit_once(':').unwrap().1;
    let target = format!("localhost:{port}");
    let out = run_with_hosts(
        DEBIAN_HOSTS,
        bin!("udp-request"),
        &[&target, "hello", "world", "--timeout", "20000"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            format!(
                "[::1]:{port}: Connection refused (os error 111); \
                 trying the next address"
            ),
            "request 1: server got: [1 hello]".to_string(),
            "request 2: server got: [2 world]".to_string(),
        ]
    );
    let served = server.finish();
    assert!(served.status.success(), "{}", served.stderr);
}

#[test]
fn connect_filters_what_comes_after_it_not_what_is_already_queued() {
    // Linux 6.18. `connect` records the peer and filters the datagrams
    // that arrive from then on; one that came before it stays queued and
    // the next `recv_from` returns it, whoever sent it.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let here = sock.local_addr().unwrap();
    stranger.send_to(b"before", here).unwrap();
    sock.connect(server.local_addr().unwrap()).unwrap();
    stranger.send_to(b"after", here).unwrap();
    server.send_to(b"server", here).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0; 16];
    let mut got = Vec::new();
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        got.push((buf[..n].to_vec(), from));
    }
    assert_eq!(
        got,
        [
            (b"before".to_vec(), stranger.local_addr().unwrap()),
            (b"server".to_vec(), server.local_addr().unwrap()),
        ]
    );
}

#[test]
fn a_connected_udp_socket_reports_a_refusal_once_to_the_next_call_even_a_send()
{
    use std::io::ErrorKind;
    use std::os::fd::AsFd;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    // Linux 6.18. The ICMP "port unreachable" sets the socket's error;
    // `poll` reports it as POLLERR, and the next call, here a `send`,
    // fails with it and clears it: the datagram is not sent, and the
    // `recv` after it has nothing to report.
    let (_held, addr) = a_port_nobody_listens_on();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(addr).unwrap();
    sock.send(b"1 hello").unwrap();
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::empty())];
    assert_eq!(poll(&mut fds, PollTimeout::from(10_000_u16)).unwrap(), 1);
    assert!(fds[0].revents().unwrap().contains(PollFlags::POLLERR));
    let err = sock.send(b"1 hello").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    sock.set_nonblocking(true).unwrap();
    let err = sock.recv(&mut [0; 64]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
}

#[test]
fn one_udp_socket_serves_many_clients_each_its_own_reply() {
    // No --count: a client that retries on a busy machine sends more
    // than one datagram.
    let (server, addr) = start_server(bin!("udp-echo"), &["127.0.0.1:0"]);
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let addr = addr.clone();
            thread::spawn(move || {
                let name = format!("client{i}");
                let args = [addr.as_str(), &name, "--timeout", "5000"];
                let out = run(bin!("udp-request"), &args);
                assert!(out.status.success(), "{}", out.stderr);
                out.stdout.last().cloned().unwrap()
            })
        })
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        assert_eq!(
            client.join().unwrap(),
            format!("request 1: server got: [1 client{i}]")
        );
    }
    drop(server);
}

#[test]
fn one_clients_flood_costs_the_other_clients_their_requests() {
    // Linux 6.18. All clients share the server's receive buffer: while the
    // server is stopped, one client fills it, and another client's request
    // is dropped with the flood's excess. Once the server runs again it
    // answers what the buffer held, in order, and never the other's.
    let (server, addr) = start_server(bin!("udp-echo"), &["127.0.0.1:0"]);
    let pid = server.pid();
    server.signal(nix::sys::signal::Signal::SIGSTOP);
    wait_until("the server to stop", || {
        crate::support::state_of(pid) == Some('T')
    });
    let buffer: usize =
        std::fs::read_to_string("/proc/sys/net/core/rmem_default")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    // Datagrams as small as the other client's, so that the room left
    // when the flood ends is too small for that one too; each costs the
    // buffer several hundred bytes, so these are more than it holds.
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..buffer / 50 {
        flooder.send_to(b"f", &addr).unwrap();
    }
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other.send_to(b"other", &addr).unwrap();
    server.signal(nix::sys::signal::Signal::SIGCONT);
    // A third client asks until it is answered: by then the server has
    // read everything that was queued before, and answered it.
    let last = UdpSocket::bind("127.0.0.1:0").unwrap();
    last.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0; 100];
    let answered = (0..30).any(|_| {
        last.send_to(b"last", &addr).unwrap();
        matches!(last.recv(&mut buf), Ok(n) if &buf[..n] == b"server got: [last]")
    });
    assert!(answered, "the server never answered the last client");
    other.set_nonblocking(true).unwrap();
    let reply = other.recv(&mut buf);
    assert!(
        matches!(&reply, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the other client's request was answered: {reply:?}"
    );
    drop(server);
}

#[test]
fn udp_echo_answers_netcat_and_python() {
    let (server, addr) =
        start_server(bin!("udp-echo"), &["127.0.0.1:0", "--count", "2"]);
    let port = addr.rsplit_once(':').unwrap().1;
    if have("nc") {
        // -u: UDP; -w3: give up three seconds after the input ends, since
        // UDP has no end of its own.
        let script = format!("printf netcat | nc -u -w3 127.0.0.1 {port}");
        let out = run("sh", &["-c", &script]);
        assert_eq!(out.stdout, ["server got: [netcat]"], "{}", out.stderr);
    } else {
        ask(&addr, "netcat");
    }
    if have("python3") {
        let script = format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.settimeout(10)\n\
             s.sendto(b'python', ('127.0.0.1', {port}))\n\
             print(s.recv(100).decode())"
        );
        let out = run("python3", &["-c", &script]);
        assert_eq!(out.stdout, ["server got: [python]"], "{}", out.stderr);
    } else {
        ask(&addr, "python");
    }
    assert!(server.finish().status.success());
}

fn ask(addr: &str, message: &str) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.connect(addr).unwrap();
    sock.send(message.as_bytes()).unwrap();
    let mut buf = [0; 100];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], format!("server got: [{message}]").as_bytes());
}

#[test]
fn udp_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("udp-datagrams"), &["x"], "unexpected argument");
    assert_rejects(bin!("udp-echo"), &["--drop", "-1"], "--drop");
    assert_rejects(bin!("udp-echo"), &["127.0.0.1:99999"], "bad address");
    assert_rejects(bin!("udp-echo"), &["192.0.2.1:50008"], "cannot listen");
    let client = bin!("udp-request");
    assert_rejects(client, &[], "which server?");
    assert_rejects(client, &["127.0.0.1:1"], "no message to send");
    assert_rejects(
        client,
        &["127.0.0.1:1", "x", "--tries", "0"],
        "--tries must be from 1 to 10",
    );
    assert_rejects(
        client,
        &["127.0.0.1:1", "x", "--timeout", "99999999999999999999"],
        "--timeout",
    );
    assert_rejects(client, &["no-port", "x"], "bad address 'no-port'");
}

#[test]
fn udp_echo_answers_even_the_largest_datagram() {
    // Linux 6.18, whose IPv4 UDP carries at most 65,507 bytes of data.
    // The reply is the request and 14 bytes: near the largest datagram
    // (65,507 bytes over IPv4) it cannot be one, and the client must
    // still get an answer rather than wait for ever.
    let (server, addr) =
        start_server(bin!("udp-echo"), &["127.0.0.1:0", "--count", "2"]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.connect(&addr).unwrap();
    let mut buf = vec![0; 65_536];
    sock.send(&[b'x'; 65_493]).unwrap();
    let n = sock.recv(&mut buf).expect("a reply to 65,493 bytes");
    assert_eq!(n, 65_507);
    assert!(buf[..n].starts_with(b"server got: [xxx"));
    sock.send(&[b'x'; 65_507]).unwrap();
    let n = sock.recv(&mut buf).expect("a reply to 65,507 bytes");
    assert_eq!(
        buf[..n].escape_ascii().to_string(),
        "error: a request of 65507 bytes; the most is 65493"
    );
    let out = server.finish();
    assert!(out.status.success());
    // The log shows the start of a large request, not all of it.
    let longest = out.stdout.iter().map(String::len).max().unwrap();
    assert!(longest < 200, "a log line of {longest} bytes");
    assert!(
        out.stdout[1].ends_with("... (65493 bytes)]"),
        "{}",
        out.stdout[1]
    );
}

#[test]
fn udp_echo_never_answers_a_reply_so_a_forged_datagram_cannot_loop() {
    // Linux 6.18. The source of a datagram is whatever its sender writes:
    // a raw socket (CAP_NET_RAW) forges one from the server to itself.
    // Answered, its reply comes back as a request, and so on for ever
    // (the first version logged 176,284 lines in three seconds).
    if !need_root("make a raw socket to forge a datagram with") {
        return;
    }
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
        .expect("a raw socket, as root");
    let (mut server, addr) = start_server(bin!("udp-echo"), &["127.0.0.1:0"]);
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let payload = b"hi";
    let length = u16::try_from(8 + payload.len()).unwrap();
    let mut datagram = Vec::new();
    datagram.extend_from_slice(&port.to_be_bytes()); // from the server
    datagram.extend_from_slice(&port.to_be_bytes()); // to the server
    datagram.extend_from_slice(&length.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]); // no checksum: allowed over IPv4
    datagram.extend_from_slice(payload);
    let to = SocketAddr::from(([127, 0, 0, 1], 0));
    raw.send_to(&datagram, &to.into()).unwrap();
    assert_eq!(server.next_line(), format!("{addr}: answered [hi]"));
    assert_eq!(
        server.next_line(),
        format!("{addr}: ignored [server got: [hi]], a reply")
    );
    // And nothing more of it: the next line is the next client's.
    ask(&addr, "next");
    let next = server.next_line();
    assert!(next.ends_with(": answered [next]"), "{next}");
}

#[test]
fn udp_echo_on_a_wildcard_address_answers_from_the_address_asked() {
    // Linux 6.18. Bound to 0.0.0.0 (or [::]), a socket's reply takes its
    // source address from the route back to the client, unless the server
    // says which; a connected client drops a reply from any address but
    // the one it asked (the first version: every try went unanswered).
    let mut wildcards = vec![(r"0\.0\.0\.0", "0.0.0.0:0")];
    if ipv6() {
        wildcards.push((r"\[::\]", "[::]:0"));
    }
    for (pattern, bind) in wildcards {
        let mut server = Listing::start(bin!("udp-echo"), &[bind]);
        let listening = format!(r"Server listening on ({pattern}:\d+)");
        let addr = server.expect(&listening).remove(1);
        let port = addr.rsplit_once(':').unwrap().1;
        let mut asked = vec![format!("127.0.0.2:{port}")];
        if ipv6() {
            asked.push(format!("[::1]:{port}"));
        }
        for to in asked
            .iter()
            .filter(|to| bind.starts_with('[') || !to.starts_with('['))
        {
            let here = if to.starts_with('[') {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            };
            let sock = UdpSocket::bind(here).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            sock.connect(to).unwrap();
            sock.send(b"hi").unwrap();
            let mut buf = [0; 100];
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|err| panic!("{bind}, asked at {to}: {err}"));
            assert_eq!(&buf[..n], b"server got: [hi]");
        }
    }
}

/// Two network namespaces joined by two links, as a server is joined to
/// a client that sits behind a router: the client, 10.9.0.9 (and
/// fd09::9), asks at the server's address on the first link, 10.1.0.1;
/// the server's route back to it goes by the second. The client's side
/// answers no ARP for its address on the first link, as a router would
/// not, so a reply sent out of the interface the request came in by is
/// lost. The fourth case asks at a link-local address, which names a
/// place only with its link; the last two ask every host on the first
/// link, at the all-nodes group ff02::1 and at the IPv4 broadcast
/// address, whose replies must come from a unicast address. The script
/// prints one line for each case.
const ROUTED_BACK: &str = r#"
set -e
mount -t tmpfs tmpfs /run
ip netns add B
for ns in "" "ip netns exec B"; do
    $ns sh -c 'echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad
               echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore
               echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce
               ip link set lo up'
done
ip link add v1a type veth peer name v1b netns B
ip link add v2a type veth peer name v2b netns B
ip addr add 10.1.0.1/24 dev v1a
ip addr add fd01::1/64 dev v1a
ip addr add fe80::1/64 dev v1a
ip addr add 10.2.0.1/24 dev v2a
ip addr add fd02::1/64 dev v2a
ip link set v1a up
ip link set v2a up
ip route add 10.9.0.9 via 10.2.0.2
ip route add fd09::9 via fd02::2
ip -n B addr add 10.9.0.9/32 dev lo
ip -n B addr add fd09::9/128 dev lo
ip -n B addr add 10.1.0.2/24 dev v1b
ip -n B addr add fd01::2/64 dev v1b
ip -n B addr add fe80::2/64 dev v1b
ip -n B addr add 10.2.0.2/24 dev v2b
ip -n B addr add fd02::2/64 dev v2b
ip -n B link set v1b up
ip -n B link set v2b up
mkfifo /run/up
while read -r bind me server; do
    "$0" "$bind:5000" --count 1 >/run/up 2>/dev/null &
    read -r listening </run/up
    ip netns exec B python3 -c "$1" "$bind" "$me" "$server"
    wait
done <<CASES
0.0.0.0 10.9.0.9 10.1.0.1
[::] 10.9.0.9 10.1.0.1
[::] fd09::9 fd01::1
[::] fe80::2%v1b fe80::1%v1b
[::] fe80::2%v1b ff02::1%v1b
[::] 10.1.0.2 10.1.0.255
CASES
"#;

/// The client of `ROUTED_BACK`: one request, three seconds for the reply.
const ROUTED_BACK_CLIENT: &str = r#"
import socket, sys
bind, me, server = sys.argv[1:]
family = socket.AF_INET6 if ":" in me else socket.AF_INET
def at(host, port):
    host, _, link = host.partition("%")
    if family == socket.AF_INET:
        return (host, port)
    return (host, port, 0, socket.if_nametoindex(link) if link else 0)
s = socket.socket(family, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(at(me, 0))
s.settimeout(3)
s.sendto(b"hi", at(server, 5000))
try:
    print(f"{bind}, from {me}:", s.recv(100).decode())
except OSError as e:
    print(f"{bind}, from {me}: no reply: {e}")
"#;

#[test]
fn udp_echo_on_a_wildcard_address_sends_each_reply_by_the_route_back() {
    // Linux 6.18. An IPv4 request to a socket bound to [::] comes with an
    // IPV6_PKTINFO whose interface is the one it came in by; sent back
    // with the reply, ip_cmsg_send() makes that interface the only one
    // the IPv4 reply may leave by, whatever the route back says. The
    // first version passed it back: the [::] server logged "answered"
    // and the client timed out. It now clears the interface unless the
    // address is link-local, which needs it: the last case.
    if !have("unshare") || !have("ip") || !have("python3") {
        return;
    }
    let args = [
        "--map-root-user",
        "--net",
        "--mount",
        "sh",
        "-c",
        ROUTED_BACK,
        bin!("udp-echo"),
        ROUTED_BACK_CLIENT,
    ];
    let out = run("unshare", &args);
    if out.stderr.contains("Operation not permitted") {
        eprintln!("skipped: no network namespace here: {}", out.stderr);
        return;
    }
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "0.0.0.0, from 10.9.0.9: server got: [hi]",
            "[::], from 10.9.0.9: server got: [hi]",
            "[::], from fd09::9: server got: [hi]",
            "[::], from fe80::2%v1b: server got: [hi]",
            "[::], from fe80::2%v1b: server got: [hi]",
            "[::], from 10.1.0.2: server got: [hi]",
        ],
        "{}",
        out.stderr
    );
}

#[test]
fn udp_echo_over_ipv6_answers_what_ipv6_can_carry() {
    // Linux 6.18: with the default IPV6_MTU_DISCOVER, ip6_append_data()
    // lets a datagram reach IPv6's largest payload, 65,535 bytes.
    // IPv6's payload length leaves out its own header: a reply may be
    // 65,527 bytes, where IPv4 stops at 65,507. The server refused every
    // request over 65,493 bytes, whatever the family.
    let Ok(sock) = UdpSocket::bind("[::1]:0") else {
        return; // No IPv6 loopback here.
    };
    let mut server =
        Listing::start(bin!("udp-echo"), &["[::1]:0", "--count", "2"]);
    let addr = server
        .expect(r"Server listening on (\[::1\]:\d+)")
        .remove(1);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.connect(&addr).unwrap();
    let mut buf = vec![0; 65_536];
    sock.send(&[b'x'; 65_513]).unwrap();
    let n = sock.recv(&mut buf).expect("a reply to 65,513 bytes");
    assert_eq!(n, 65_527);
    assert!(buf[..n].starts_with(b"server got: [xxx"));
    sock.send(&[b'x'; 65_514]).unwrap();
    let n = sock.recv(&mut buf).expect("a reply to 65,514 bytes");
    assert_eq!(
        buf[..n].escape_ascii().to_string(),
        "error: a request of 65514 bytes; the most is 65513"
    );
    assert!(server.finish().status.success());
}

#[test]
fn udp_client_stops_at_the_servers_error_and_the_server_logs_a_refusal() {
    // A request whose reply cannot be a datagram: udp-echo answers with an
    // error line instead, and the book's own client must take it as the
    // answer, not ignore it and wait out every try (7.5 s by default).
    let (server, addr) =
        start_server(bin!("udp-echo"), &["127.0.0.1:0", "--count", "1"]);
    let message = "x".repeat(65_492); // "1 " and this: 65,494 bytes
    let args = [addr.as_str(), message.as_str(), "--timeout", "20000"];
    let out = run(bin!("udp-request"), &args);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(
        out.stderr,
        format!(
            "udp-request: {addr}: request 1: the server said: \
             error: a request of 65494 bytes; the most is 65493\n"
        )
    );
    let log = server.finish();
    assert!(log.status.success(), "{}", log.stderr);
    assert!(
        log.stdout[1].ends_with(": refused a request of 65494 bytes"),
        "{:?}",
        log.stdout
    );
}

#[test]
fn udp_client_waits_on_through_a_stop_and_continue() {
    // Linux 6.18. Stopped and continued while it waits for a reply (Ctrl-Z
    // and `fg`), the client's `recv`, which has a timeout, fails with
    // EINTR though no handler is installed (Chapter 3): it must go on
    // waiting for the time that is left, not give up the request.
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    let args = [addr.as_str(), "a", "--timeout", "20000", "--tries", "1"];
    let client = Listing::start(bin!("udp-request"), &args);
    let pid = client.pid();
    let mut buf = [0; 100];
    let (n, peer) = fake.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"1 a");
    crate::support::wait_until("the client to wait for its reply", || {
        crate::support::wchan_of(pid) == "__skb_wait_for_more_packets"
    });
    client.signal(nix::sys::signal::Signal::SIGSTOP);
    crate::support::wait_until("the client to stop", || {
        crate::support::state_of(pid) == Some('T')
    });
    client.signal(nix::sys::signal::Signal::SIGCONT);
    fake.send_to(b"server got: [1 a]", peer).unwrap();
    let out = client.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, ["request 1: server got: [1 a]"]);
}

/// The local port of the UDP socket that `pid` has open, from
/// /proc/<pid>/fd and /proc/net/udp (and udp6); `None` until it is bound.
fn bound_udp_port(pid: i32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit_once(':')?.1;
                let port = u16::from_str_radix(port, 16).ok()?;
                return (port != 0).then_some(port);
            }
        }
    }
    None
}

/// A datagram that reaches the client's port after its `bind` and before
/// its `connect` is queued whatever its sender, and the connected
/// socket's filter does not take it back. strace holds the client for
/// three seconds after `bind`; a stranger sends the very reply the client
/// waits for. The client used to take it for the server's and print it
/// as the answer; it now checks each sender, ignores it, and waits for
/// the server's.
#[test]
fn udp_client_ignores_a_datagram_queued_before_it_connects() {
    if !have("strace") {
        return;
    }
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    let keep_open = fake.try_clone().unwrap();
    let server = thread::spawn(move || {
        let mut buf = [0; 100];
        let (n, peer) = fake.recv_from(&mut buf).unwrap();
        let request = String::from_utf8_lossy(&buf[..n]);
        let reply = format!("server got: [{request}]");
        fake.send_to(reply.as_bytes(), peer).unwrap();
    });
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = Listing::start(
        "strace",
        &[
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=bind",
            "-e",
            "inject=bind:delay_exit=3000000",
            bin!("udp-request"),
            &addr,
            "a",
            "--timeout",
            "20000",
        ],
    );
    let tracer = client.pid();
    let children = format!("/proc/{tracer}/task/{tracer}/children");
    // strace forks children of its own to probe the kernel first.
    let mut pid = 0;
    wait_until("strace to start the client", || {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        pid = text.trim().parse().unwrap_or(0);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
        comm.is_ok_and(|comm| comm == "udp-request\n")
    });
    let mut port = 0;
    wait_until("the client to bind", || {
        port = bound_udp_port(pid).unwrap_or(0);
        port != 0
    });
    stranger
        .send_to(b"server got: [1 a]", ("127.0.0.1", port))
        .unwrap();
    let out = client.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            format!(
                "ignored, from {}: server got: [1 a]",
                stranger.local_addr().unwrap()
            ),
            "request 1: server got: [1 a]".to_string(),
        ]
    );
    server.join().unwrap();
    drop(keep_open);
}

/// The UDP sockets of `pid`, from /proc/<pid>/fd and /proc/<pid>/net/udp:
/// each one's local port, and whether it is connected (its remote address
/// not zero).
fn udp_sockets(pid: i32) -> Vec<(u16, bool)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/udp"))
        .unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() <= 9 || !inodes.iter().any(|i| i == fields[9]) {
                return None;
            }
            let port = fields[1].rsplit_once(':')?.1;
            let port = u16::from_str_radix(port, 16).ok()?;
            (port != 0).then_some((port, fields[2] != "00000000:0000"))
        })
        .collect()
}

/// Listing 17-1's receiving socket is bound, then connected; a datagram
/// that reaches its port in between is queued whatever its sender, and
/// the filter of the connected socket does not take it back. strace holds
/// the receiver's `connect` (the second) for three seconds; a stranger
/// sends a datagram to its port meanwhile. The listing used to read it as
/// scene 1's first message, and every later line of its output shifted
/// ("recv: 8 bytes, \"stranger\"" ... "std's recv: 1000 bytes"); it now
/// skips it, says so on stderr, and prints the book's output.
#[test]
fn udp_datagrams_skips_a_strangers_datagram_queued_before_connect() {
    if !have("strace") {
        return;
    }
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let listing = Listing::start(
        "strace",
        &[
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=connect",
            "-e",
            "inject=connect:delay_enter=3000000:when=2",
            bin!("udp-datagrams"),
        ],
    );
    let tracer = listing.pid();
    let children = format!("/proc/{tracer}/task/{tracer}/children");
    // strace forks children of its own to probe the kernel first.
    let mut pid = 0;
    wait_until("strace to start the listing", || {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        pid = text.trim().parse().unwrap_or(0);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
        comm.is_ok_and(|comm| comm == "udp-datagrams\n")
    });
    // Both sockets bound and the sender connected: the one left is the
    // receiver. Only one bound, or both unconnected, it could be the
    // sender, whose queue the listing never reads for strangers (under
    // load the test once sent its datagram there, and saw no line).
    let mut port = 0;
    wait_until("the receiver to be bound, not yet connected", || {
        let sockets = udp_sockets(pid);
        let unconnected: Vec<u16> = sockets
            .iter()
            .filter(|(_, connected)| !connected)
            .map(|(port, _)| *port)
            .collect();
        port = match (sockets.len(), unconnected.as_slice()) {
            (2, &[receiver]) => receiver,
            _ => 0,
        };
        port != 0
    });
    stranger.send_to(b"stranger", ("127.0.0.1", port)).unwrap();
    let out = listing.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_session_matches_book_masking(
        "ch17-udp/17-01-udp-datagrams.out",
        &[(cargo_run("udp-datagrams", &[]), &out.stdout)],
        &[(r"\breceived \d+ of\b", "received <n> of")],
    );
    // The stranger's datagram was there, and was skipped.
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "udp-datagrams: ignored a datagram from {}",
            stranger.local_addr().unwrap()
        )
    );
}

/// Linux 6.18: a security policy (an LSM hook or a seccomp filter) can
/// make every `recvmsg` fail at once; strace plays one with EPERM. The
/// server must pause after each failure and log the run of them once. It
/// used to retry at once, with a line per failure: tens of thousands of
/// lines in two seconds, and all the CPU it could get.
#[test]
fn udp_echo_pauses_and_logs_once_when_recv_keeps_failing() {
    if !have("strace") {
        return;
    }
    let (cpu, stderr) = crate::support::under_a_refused_call(
        bin!("udp-echo"),
        &["127.0.0.1:0"],
        "recvmsg",
        "EPERM",
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            "udp-echo: recv: Operation not permitted (os error 1); trying \
             again, less often"
        ),
        "{} lines",
        lines.len()
    );
    assert_eq!(lines.len(), 1, "{:?}", &lines[..lines.len().min(5)]);
    assert!(cpu < Duration::from_millis(300), "{cpu:?} of CPU in 2 s");
}

/// Sends the largest datagram of each family over loopback, and the
/// largest IPv6 one that fits loopback's MTU, in a network namespace of
/// its own (so that no other test's traffic moves its counters), and
/// prints for each what came and how many fragments IPv4 and IPv6 made
/// (`FragCreates` in /proc/net/snmp, `Ip6FragCreates` in /proc/net/snmp6).
const FRAGMENTS: &str = r#"
import socket
def counters():
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Ip:")]
    v4 = int(lines[1][lines[0].index("FragCreates")])
    v6 = [l.split() for l in open("/proc/net/snmp6")]
    v6 = int(next(v for k, v in v6 if k == "Ip6FragCreates"))
    return v4, v6
for family, host, size in [(socket.AF_INET, "127.0.0.1", 65507),
                           (socket.AF_INET6, "::1", 65527),
                           (socket.AF_INET6, "::1", 65488)]:
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.settimeout(10)
    sender = socket.socket(family, socket.SOCK_DGRAM)
    v4, v6 = counters()
    sender.sendto(b"x" * size, receiver.getsockname())
    got = len(receiver.recv(65536))
    v4_after, v6_after = counters()
    print(f"{host} {size}: got {got}, fragments {v4_after - v4} {v6_after - v6}")
"#;

/// Linux 6.18: loopback's MTU is 65,536 bytes (`ip link show lo`), room
/// for the largest IPv4 datagram, 65,507 bytes of data and 28 of headers,
/// in one packet. IPv6's largest, 65,527 bytes and 48 of headers, is 39
/// bytes too long: the kernel cuts it in two fragments even here, and the
/// largest IPv6 datagram sent whole carries 65,488 bytes.
#[test]
fn loopback_carries_the_largest_ipv4_datagram_whole_and_ipv6_s_in_two() {
    let mtu = std::fs::read_to_string("/sys/class/net/lo/mtu").unwrap();
    let mtu: usize = mtu.trim().parse().unwrap();
    assert_eq!(mtu, 65_536);
    assert!(65_507 + 20 + 8 <= mtu);
    assert!(65_527 + 40 + 8 > mtu && 65_488 + 40 + 8 == mtu);
    if !have("unshare") || !have("ip") || !have("python3") {
        return;
    }
    let script = "ip link set lo up && exec python3 -c \"$0\"";
    let args = ["--map-root-user", "--net", "sh", "-c", script, FRAGMENTS];
    let out = run("unshare", &args);
    if out.stderr.contains("Operation not permitted") {
        eprintln!("skipped: no network namespace here: {}", out.stderr);
        return;
    }
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "127.0.0.1 65507: got 65507, fragments 0 0",
            "::1 65527: got 65527, fragments 0 2",
            "::1 65488: got 65488, fragments 0 0",
        ],
        "{}",
        out.stderr
    );
}

/// Sends, over `::1`, one datagram of each size given and prints for each
/// what came and how many fragments IPv6 made (`Ip6FragCreates` in
/// /proc/net/snmp6).
const FRAGMENTS_V6: &str = r#"
import socket, sys
def fragments():
    v6 = [l.split() for l in open("/proc/net/snmp6")]
    return int(next(v for k, v in v6 if k == "Ip6FragCreates"))
for size in map(int, sys.argv[1:]):
    receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    receiver.bind(("::1", 0))
    receiver.settimeout(10)
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    before = fragments()
    sender.sendto(b"x" * size, receiver.getsockname())
    got = len(receiver.recv(65536))
    print(f"{size}: got {got}, fragments {fragments() - before}")
"#;

/// Linux 6.18, in a network namespace of its own whose loopback has the
/// smallest MTU IPv6 allows, 1280 bytes: a packet that size leaves 1232
/// bytes of UDP data after the IPv6 (40) and UDP (8) headers. QUIC's
/// 1200 bytes and the DNS answers' 1232 go whole; one byte more is cut
/// in two fragments.
#[test]
fn a_1280_byte_ipv6_packet_carries_1232_bytes_of_udp_data() {
    assert_eq!(1280 - 40 - 8, 1232);
    if !have("unshare") || !have("ip") || !have("python3") {
        return;
    }
    let script = "ip link set lo mtu 1280 up && exec python3 -c \"$0\" \"$@\"";
    let args = [
        "--map-root-user",
        "--net",
        "sh",
        "-c",
        script,
        FRAGMENTS_V6,
        "1200",
        "1232",
        "1233",
    ];
    let out = run("unshare", &args);
    if out.stderr.contains("Operation not permitted") {
        eprintln!("skipped: no network namespace here: {}", out.stderr);
        return;
    }
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "1200: got 1200, fragments 0",
            "1232: got 1232, fragments 0",
            "1233: got 1233, fragments 2",
        ],
        "{}",
        out.stderr
    );
}

/// A server that never answers the request but sends the client a stale
/// reply every 300 ms for 2.7 s, each one ignored: the wait of 3 s still
/// ends at its deadline. A `reply_within` that gave each `recv` the whole
/// wait again, or started it over after an ignored datagram, would wait
/// 3 s more after the last one, until 5.4 s at least.
#[test]
fn udp_client_keeps_its_deadline_while_ignored_datagrams_arrive() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let chatter = thread::spawn(move || {
        let mut buf = [0; 100];
        let (_, client) = server.recv_from(&mut buf).unwrap();
        let until = Instant::now() + Duration::from_millis(2700);
        while Instant::now() < until {
            server.send_to(b"server got: [0 old]", client).unwrap();
            let pace = stopped.recv_timeout(Duration::from_millis(300));
            if pace != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                break;
            }
        }
    });
    let started = Instant::now();
    let args = [&addr, "a", "--tries", "1", "--timeout", "3000"];
    let out = Listing::start(bin!("udp-request"), &args).finish();
    let took = started.elapsed();
    let _ = stop.send(());
    chatter.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!("udp-request: {addr}: request 1: no reply after 1 tries\n")
    );
    assert!(!out.stdout.is_empty(), "nothing was ignored");
    assert!(
        out.stdout
            .iter()
            .all(|line| line == "ignored: server got: [0 old]"),
        "{:?}",
        out.stdout
    );
    assert!(took < Duration::from_millis(4500), "ended after {took:?}");
}

/// `localhost` names ::1 first (Debian's /etc/hosts), and there a socket
/// takes the requests and never answers; a server listens on 127.0.0.1.
/// Silence is not a refusal: the client spends all its tries on ::1 and
/// gives up, and never asks 127.0.0.1.
#[test]
fn udp_client_spends_its_tries_on_an_address_that_is_only_silent() {
    if !ipv6() || !private_hosts_file() {
        return;
    }
    let (_server, addr, silent) = (0..20)
        .find_map(|_| {
            let (server, addr) =
                start_server(bin!("udp-echo"), &["127.0.0.1:0"]);
            let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
            let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            Some((server, addr, UdpSocket::bind(v6).ok()?))
        })
        .expect("a port free on ::1 for one of 20 servers");
    let port = addr.rsplit_once(':').unwrap().1;
    let target = format!("localhost:{port}");
    let out = run_with_hosts(
        DEBIAN_HOSTS,
        bin!("udp-request"),
        &[&target, "hello", "--tries", "2", "--timeout", "300"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!("udp-request: {target}: request 1: no reply after 2 tries\n")
    );
    assert_eq!(
        out.stdout,
        ["request 1: no reply within 300 ms, sending it again"]
    );
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0; 100];
    for _ in 0..2 {
        let n = silent.recv(&mut buf).expect("both tries went to ::1");
        assert_eq!(&buf[..n], b"1 hello");
    }
}

/// udp-request's line of error is one `write`, formatted whole first, as
/// in the listings of Parts I and IV: `writeln!` on the unbuffered stderr
/// writes the program's name, the message and the newline each on its
/// own, and another writer of the same stderr (a script running several
/// clients, say) can land between them.
#[test]
fn udp_request_writes_its_line_of_error_with_one_write() {
    if !crate::support::can_trace() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("writes");
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-q", "-s", "4096", "-e", "trace=write"])
        .args(["-e", "signal=none", "-o"])
        .arg(&log)
        .args(["--", bin!("udp-request"), "--no-such-option"]);
    let out =
        Listing::spawn(&mut command, std::process::Stdio::null()).finish();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    let text = std::fs::read_to_string(&log).expect("strace's log");
    let writes: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once("write(2, ").map(|(_, w)| w))
        .collect();
    assert!(
        writes.len() == 1
            && writes[0].starts_with("\"udp-request: ")
            && writes[0].matches("\\n").count() == 1
            && writes[0].contains("\\n\", "),
        "one write of one whole line: {writes:#?}"
    );
}
