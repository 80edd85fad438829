//! The line servers of Part III and VI: Listings 14-2 (`tcp-threads`),
//! 15-2 (`poll-server`) and 30-1 (`async-server`) answer every line with
//! `server got: [LINE]`, and each must keep the same promises to the same
//! clients, whatever it is built on. The promises are written here once;
//! each chapter's tests call them with its server, then check what is its
//! own (threads, memory, the book's sessions). The helpers that talk to a
//! line server live here too, so that no chapter's tests borrow another's.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    Finished, Listing, all_threads_asleep, all_threads_stopped, blessing,
    is_dead, lasting_fds, reset_in_the_accept_queue, server_end, status_kib,
    threads_blocked_in, threads_waiting_in, wait_until,
};

// ---------------------------------------------------------------------------
// Talking to a line server

/// Starts a server listing and returns it with the address it bound.
#[track_caller]
pub fn start_server(bin: &str, args: &[&str]) -> (Listing, String) {
    let mut server = Listing::start(bin, args);
    let addr = server
        .expect(r"Server listening on (127\.0\.0\.1:\d+)")
        .remove(1);
    (server, addr)
}

/// Starts a server with a limit of `fds` file descriptors (`ulimit -n`,
/// which sets both the soft and the hard limit, so the server cannot
/// raise it), stderr merged into stdout as a terminal shows them.
#[track_caller]
pub fn start_limited(
    fds: usize,
    bin: &str,
    args: &[&str],
) -> (Listing, String) {
    let script = format!("ulimit -n {fds} && exec \"$0\" \"$@\" 2>&1");
    let mut command = vec!["-c", &script, bin];
    command.extend(args);
    start_server("bash", &command)
}

/// Runs `shown`, a shell command line as the book prints it, with
/// `cargo run -p listings --bin NAME --` replaced by the binary itself and
/// `address` appended unless blessing.
pub fn typed(shown: &str, bin: &str, address: &str) -> Finished {
    let name = std::path::Path::new(bin).file_name().unwrap();
    let cargo =
        format!("cargo run -p listings --bin {} --", name.to_string_lossy());
    let mut command = shown.replace(&cargo, bin);
    if !blessing() {
        command = format!("{command} {address}");
    }
    Listing::start("bash", &["-c", &command]).finish()
}

/// Connects to `addr`, with a read timeout that fails the test rather
/// than hanging it.
#[track_caller]
pub fn connect(addr: &str) -> TcpStream {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock
}

/// Sends one line, half-closes, and returns the whole reply. A server
/// that refuses us may close before our request arrives, and then reset
/// the connection; what it said before is still ours to read.
pub fn ask(addr: &str, line: &str) -> std::io::Result<String> {
    let mut sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let sent = sock.write_all(format!("{line}\n").as_bytes());
    let _ = sock.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            // No handler runs in this test process (the harness checks), but
            // one would end a read with a timeout, which is never restarted.
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) if reply.is_empty() => return Err(err),
            Err(_) => break,
        }
    }
    if reply.is_empty() {
        sent?;
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Connects, half-closes at once, and returns what the server said
/// before it closed too: a client with nothing to ask.
pub fn ask_nothing(addr: &str) -> String {
    let mut sock = connect(addr);
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    reply
}

/// `count` connections that say nothing.
pub fn silent_clients(addr: &str, count: usize) -> Vec<TcpStream> {
    (0..count).map(|_| connect(addr)).collect()
}

/// Sends `bytes` of `x` without a newline from a thread, and returns the
/// thread: it ends when the server has stopped reading, one way or
/// another.
pub fn flood(
    addr: &str,
    bytes: usize,
) -> thread::JoinHandle<std::io::Result<String>> {
    let mut sock = connect(addr);
    thread::spawn(move || {
        let sent = sock.write_all(&vec![b'x'; bytes]);
        let _ = sock.shutdown(Shutdown::Write);
        let mut reply = String::new();
        let read = sock.read_to_string(&mut reply);
        sent.and(read).map(|_| reply)
    })
}

/// `clients` clients at once, each of which must get exactly its own
/// reply, once.
#[track_caller]
pub fn many_at_once(addr: &str, clients: usize) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let (addr, barrier) = (addr.to_string(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                ask(&addr, &format!("client {i}"))
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let reply = handle.join().unwrap().unwrap();
        assert_eq!(reply, format!("server got: [client {i}]\n"));
    }
}

/// Opens `count` connections that say nothing, waits until the server
/// `pid` has accepted them all (one descriptor each), and then for as long
/// as a connection must be idle before a server may close it (a second).
pub fn idle_clients_held(
    pid: nix::unistd::Pid,
    addr: &str,
    count: usize,
) -> Vec<TcpStream> {
    let before = lasting_fds(pid);
    let idle = silent_clients(addr, count);
    wait_until("the server to accept every idle client", || {
        lasting_fds(pid) >= before + count
    });
    // Not a synchronisation: the time a connection must have been idle.
    thread::sleep(Duration::from_millis(1100));
    idle
}

/// Counts the connections of `idle` that the server has closed.
pub fn closed_by_the_server(idle: &[TcpStream]) -> usize {
    idle.iter()
        .filter(|sock| {
            let mut sock: &TcpStream = sock;
            sock.set_nonblocking(true).unwrap();
            matches!(sock.read(&mut [0; 16]), Ok(0))
        })
        .count()
}

/// Whether a TCP socket listens on `port` of 127.0.0.1. Asked of the
/// kernel's socket diagnostics for the socket with no peer: a lookup that
/// finds no connection falls back to the listening socket of the port.
/// Not /proc/net/tcp, which lists every socket of the machine, and took
/// seconds to read under the suite.
pub fn listening_on(port: u16) -> bool {
    server_end(port, 0).is_some_and(|(state, ..)| state == "0A")
}

// ---------------------------------------------------------------------------
// The promises

/// With `--count 1`, once its one client is in, the server closes its
/// listening socket while it waits for that client to finish: a new client
/// is refused at once (ECONNREFUSED), where an open listener would take it
/// into the backlog, keep it waiting up to the last client's deadline, and
/// then reset it (Linux 6.18).
#[track_caller]
pub fn stops_listening_once_its_count_is_reached(bin: &str) {
    let args = ["127.0.0.1:0", "--count", "1", "--timeout", "60"];
    stops_listening_once_its_count_is_reached_with(bin, &args);
}

/// As [`stops_listening_once_its_count_is_reached`], for a server started
/// with `args` (which must say `--count 1`): Listing 14-1 has no timeout.
#[track_caller]
pub fn stops_listening_once_its_count_is_reached_with(
    bin: &str,
    args: &[&str],
) {
    stops_listening_once_its_count_is_reached_asking(
        bin,
        args,
        b"bye\n",
        b"server got: [bye]\n",
    );
}

/// As [`stops_listening_once_its_count_is_reached_with`], for a server
/// whose last client sends `request` and must be answered `reply`: the
/// length-prefixed server of Listing 13-3 frames both.
#[track_caller]
pub fn stops_listening_once_its_count_is_reached_asking(
    bin: &str,
    args: &[&str],
    request: &[u8],
    reply: &[u8],
) {
    let (server, addr) = start_server(bin, args);
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(listening_on(port), "not listening before its count");
    // The one client the count allows; it says nothing for now.
    let last = connect(&addr);
    wait_until("the server to close its listening socket", || {
        !listening_on(port)
    });
    let refused = TcpStream::connect(&addr).expect_err("a client too many");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    // The last client is still served, and then the server ends.
    let mut last = last;
    last.write_all(request).unwrap();
    last.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    last.read_to_end(&mut got).unwrap();
    assert_eq!(
        got.escape_ascii().to_string(),
        reply.escape_ascii().to_string()
    );
    let out = server.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

/// `--count` counts the clients served. A client that connects and resets
/// while the server is stopped is accepted when it goes on (Linux 6.18),
/// and its `peer_addr` fails with ENOTCONN: nobody to serve, so `--count 1`
/// still serves the next client. A server that counted it would close its
/// listening socket, and refuse the next one.
#[track_caller]
pub fn counts_no_client_that_reset_in_the_queue(bin: &str) {
    use nix::sys::signal::{Signal, kill};
    let (server, addr) = start_server(bin, &["127.0.0.1:0", "--count", "1"]);
    let pid = server.pid();
    kill(pid, Signal::SIGSTOP).unwrap();
    wait_until("the server to stop", || all_threads_stopped(pid));
    reset_in_the_accept_queue(&addr);
    kill(pid, Signal::SIGCONT).unwrap();
    assert_eq!(ask(&addr, "next").unwrap(), "server got: [next]\n");
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

/// A connection that reset in the backlog has nobody to serve, and must
/// cost nobody a place: at its limit (`--max-conns 2`, with two idle
/// clients), a server that made room before it asked `peer_addr` closed
/// the longest idle client for a connection it then threw away.
#[track_caller]
pub fn evicts_nobody_for_a_client_that_reset_in_the_queue(bin: &str) {
    use nix::sys::signal::{Signal, kill};
    let (server, addr) =
        start_server(bin, &["127.0.0.1:0", "--max-conns", "2"]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut idle = [connect(&addr), connect(&addr)];
    for sock in &mut idle {
        sock.write_all(b"hi\n").unwrap();
        let mut reply = [0; 17];
        sock.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"server got: [hi]\n");
    }
    let answered = Instant::now();
    let pid = server.pid();
    kill(pid, Signal::SIGSTOP).unwrap();
    wait_until("the server to stop", || all_threads_stopped(pid));
    reset_in_the_accept_queue(&addr);
    // Idle long enough to be closed for a newcomer (a second, in each
    // server): the place is there to be given away.
    let idle_enough = Duration::from_millis(1200);
    thread::sleep(idle_enough.saturating_sub(answered.elapsed())); // A duration, not a wait.
    kill(pid, Signal::SIGCONT).unwrap();
    // The listener's queue (its unread count) empties once the server
    // has taken the connection; then a place given away would show as
    // the end of the stream on an idle client.
    wait_until("the server to take it", || {
        server_end(port, 0).is_some_and(|(_, queued, ..)| queued == 0)
    });
    for sock in &mut idle {
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let got = sock.read(&mut [0; 64]);
        assert!(
            matches!(&got, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "an idle client was closed for a client that had reset: {got:?}"
        );
    }
    server.signal(Signal::SIGTERM);
    let out = server.finish();
    assert!(
        out.stderr.contains("a client: "),
        "{:?} {}",
        out.stdout,
        out.stderr
    );
}

/// A client sends a line too long, and closes without reading the error
/// line, which makes its close a reset (Linux 6.18). The error was the
/// client's, and the log must name it: a server that logged how its drain
/// ended logged `Connection reset by peer` and lost the line too long.
/// `args` start the server with `--count 1`.
#[track_caller]
pub fn logs_a_line_too_long_from_a_client_that_leaves_unread(
    bin: &str,
    args: &[&str],
) {
    let (server, addr) = start_server(bin, args);
    let mut sock = connect(&addr);
    let peer = sock.local_addr().unwrap().to_string();
    sock.write_all(&[b'x'; 2000]).unwrap();
    // The error line has come, and stays unread: the close sends RST.
    sock.peek(&mut [0; 1]).unwrap();
    drop(sock);
    let out = server.finish();
    assert_line_too_long_logged(&out, &peer);
}

/// A client sends a line too long, reads the error line, and stays open
/// while the server drains its connection; at the limit of one connection
/// (`args`, with `--count 2`), a second client a second and a half later
/// has the first closed to make room. The eviction cut the drain short,
/// nothing more: the log must still name the line too long, and not
/// report the first client as one that was answered.
#[track_caller]
pub fn logs_a_line_too_long_from_a_client_closed_to_make_room(
    bin: &str,
    args: &[&str],
) {
    let (server, addr) = start_server(bin, args);
    let mut first = connect(&addr);
    let peer = first.local_addr().unwrap().to_string();
    first.write_all(&[b'x'; 2000]).unwrap();
    let mut reply = [0; 35];
    first.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"error: line longer than 1024 bytes\n");
    // Past the grace after which a stalled connection makes room.
    thread::sleep(Duration::from_millis(1500)); // The wait is the test.
    assert_eq!(ask(&addr, "next").unwrap(), "server got: [next]\n");
    let mut rest = Vec::new();
    let _ = first.read_to_end(&mut rest);
    let out = server.finish();
    assert_line_too_long_logged(&out, &peer);
    drop(first);
}

/// The log of a server whose client `peer` sent a line too long names the
/// error on stderr, in the one line it has for that client (how the drain
/// after it ended is no news: a reset, with the error line unread, made a
/// second line), and has no `answered` line for that client.
#[track_caller]
fn assert_line_too_long_logged(out: &Finished, peer: &str) {
    let logged = format!("{peer}: a line longer than 1024 bytes");
    let lines: Vec<_> = out
        .stderr
        .lines()
        .filter(|line| line.contains(&format!("{peer}: ")))
        .collect();
    assert!(
        matches!(&lines[..], [line] if line.ends_with(&logged)),
        "not one '{logged}' on stderr:\n{}\nstdout:\n{}",
        out.stderr,
        out.stdout.join("\n")
    );
    let answered = format!("{peer}: answered");
    assert!(
        !out.stdout.iter().any(|line| line.contains(&answered)),
        "'{answered}' on stdout for a failed client:\n{}",
        out.stdout.join("\n")
    );
}

/// Lines arrive cut anywhere, an empty one among them and the last without
/// a newline: each gets its own reply, and the server counts four.
#[track_caller]
pub fn answers_lines_cut_anywhere_and_a_last_one_without_newline(bin: &str) {
    let (server, addr) = start_server(bin, &["127.0.0.1:0", "--count", "1"]);
    let mut sock = connect(&addr);
    for piece in [&b"on"[..], b"e\ntw", b"o\n\nthr", b"ee"] {
        sock.write_all(piece).unwrap();
    }
    sock.shutdown(Shutdown::Write).unwrap();
    let mut replies = String::new();
    sock.read_to_string(&mut replies).unwrap();
    assert_eq!(
        replies,
        "server got: [one]\nserver got: [two]\nserver got: []\n\
         server got: [three]\n"
    );
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout[1].ends_with(": answered 4 lines"),
        "{:?}",
        out.stdout
    );
}

/// A line of the longest length, 1024 bytes, is answered whole, with a
/// newline and as the last line without one: the limit is on what comes
/// before the newline, and not one byte less.
#[track_caller]
pub fn answers_lines_of_the_longest_length(bin: &str) {
    let (server, addr) = start_server(bin, &["127.0.0.1:0", "--count", "1"]);
    let (a, b) = ("a".repeat(1024), "b".repeat(1024));
    let mut sock = connect(&addr);
    sock.write_all(format!("{a}\n{b}").as_bytes()).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, format!("server got: [{a}]\nserver got: [{b}]\n"));
    assert!(server.finish().status.success());
}

/// `count` clients connect and say nothing; another is served meanwhile,
/// and the silent ones are neither answered nor closed. Returns the
/// server, for the chapter's own checks (how many threads it took).
#[track_caller]
pub fn serves_others_while_clients_stay_silent(
    bin: &str,
    count: usize,
) -> Listing {
    let (server, addr) = start_server(bin, &["127.0.0.1:0"]);
    let silent = silent_clients(&addr, count);
    assert_eq!(ask(&addr, "hello").unwrap(), "server got: [hello]\n");
    for sock in &silent {
        sock.set_nonblocking(true).unwrap();
        let err = (&*sock).read(&mut [0; 1]).expect_err("no data, no end");
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
    }
    server
}

/// Ten clients send half a request and reset the connection (`SO_LINGER`
/// of zero); the server goes on serving, and logs a line for each at
/// most. No `--count`: a client that resets before the server accepts it
/// is no client served, and how many do varies from run to run.
#[track_caller]
pub fn outlives_clients_that_reset(bin: &str) {
    let (server, addr) = start_server(bin, &["127.0.0.1:0"]);
    for _ in 0..10 {
        let rude = connect(&addr);
        (&rude).write_all(b"half a requ").unwrap();
        crate::support::reset_on_close(&rude);
    }
    assert_eq!(
        ask(&addr, "still here").unwrap(),
        "server got: [still here]\n"
    );
    assert!(!is_dead(server.pid()), "the server ended");
    // And each cost a line of log at most, as the book says.
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    let logged = out.stderr.lines().count();
    assert!(
        logged <= 10,
        "{logged} lines for 10 resets:\n{}",
        out.stderr
    );
}

/// Linux 6.18. A client sends 8,000 empty lines, half-closes, reads
/// nothing, and resets the connection once the server has read every
/// request and the FIN, and holds replies that do not fit in the kernel:
/// 120,000 bytes of them, where the server's send buffer and the client's
/// receive buffer (4 KiB asked for) take some 98,000 here. The replies
/// never reach the client, and the log must say so: the client's error on
/// stderr, and no `answered` line. After the FIN, a `read` returns 0
/// whatever comes next (Chapter 13): a server that took the reset from
/// `read` saw the end of a client it had answered. The error, EPIPE for a
/// reset in CLOSE_WAIT, waits in `SO_ERROR`, for a write or `take_error`.
#[track_caller]
pub fn logs_a_reset_that_comes_after_the_half_close(bin: &str) {
    let (server, addr) =
        start_server(bin, &["127.0.0.1:0", "--count", "1", "--timeout", "60"]);
    let pid = server.pid();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut sock = TcpStream::from(sock);
    let client = sock.local_addr().unwrap();
    sock.write_all(&[b'\n'; 8000]).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    // The FIN is in (CLOSE_WAIT), and the server sleeps with replies it
    // cannot write: in a blocking write, or, having read every request,
    // in `poll` (a FIN not yet read would wake it at once). A server that
    // wrote everything has closed its end instead (LAST_ACK).
    wait_until(
        "the server to wait to write its replies",
        || match server_end(port, client.port()) {
            Some((state, unread, ..)) if state == "08" => {
                let writing = threads_blocked_in(pid, nix::libc::SYS_sendto);
                (unread == 0 || writing > 0) && all_threads_asleep(pid)
            }
            _ => true,
        },
    );
    let end = server_end(port, client.port());
    assert!(
        end.as_ref().is_some_and(|(state, ..)| state == "08"),
        "the server closed: its replies all fit in the kernel ({end:?})"
    );
    socket2::SockRef::from(&sock)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(sock);
    let out = server.finish();
    let answered = format!("{client}: answered");
    assert!(
        !out.stdout.iter().any(|line| line.contains(&answered)),
        "a client whose replies were lost reported answered:\n{}\nstderr:\n{}",
        out.stdout.join("\n"),
        out.stderr
    );
    let logged: Vec<_> = out
        .stderr
        .lines()
        .filter(|line| line.contains(&format!("{client}: ")))
        .collect();
    assert_eq!(
        logged,
        [format!(
            "{}: {client}: Broken pipe (os error 32)",
            std::path::Path::new(bin)
                .file_name()
                .unwrap()
                .to_string_lossy()
        )],
        "{}",
        out.stderr
    );
}

/// 64 MiB without a newline: the server refuses the line after 1024
/// bytes, never holds more than a little of it (peak RSS under 32 MiB),
/// and serves the next client.
#[track_caller]
pub fn refuses_a_long_line_and_keeps_little_memory(bin: &str) {
    let (server, addr) = start_server(bin, &["127.0.0.1:0"]);
    let reply = flood(&addr, 64 << 20).join().unwrap().unwrap();
    assert_eq!(reply, "error: line longer than 1024 bytes\n");
    let peak = status_kib(server.pid(), "VmHWM").unwrap();
    assert!(peak < 32 << 10, "peak {peak} kB");
    assert_eq!(ask(&addr, "next").unwrap(), "server got: [next]\n");
}

/// A client over the limit whose request, longer than one read (10,000
/// bytes), is in its socket before the server accepts it: the server is
/// stopped meanwhile. The server reads it all, without waiting, before it
/// writes its refusal and closes, so the close is a FIN: the client reads
/// the refusal, then the end of the stream. Bytes left unread would make
/// the close a reset, and the read after the refusal fail with
/// ECONNRESET. `args` leave room for two connections, which a client
/// being served and one behind it take first, each in the middle of a
/// request, so that neither is idle. A request stalled for a second may
/// still be closed to make room: a machine that pauses the test that long
/// has the new client served, and the test tries again.
#[track_caller]
pub fn refuses_with_the_end_of_the_stream_having_read_what_was_sent(
    bin: &str,
    args: &[&str],
) {
    use nix::sys::signal::Signal;
    unless_the_machine_paused(|| {
        let (server, addr) = start_server(bin, args);
        let pid = server.pid();
        let mut served = connect(&addr);
        let since = Instant::now();
        served.write_all(b"first\n").unwrap();
        served.read_exact(&mut [0; 20]).unwrap();
        served.write_all(b"sec").unwrap();
        let mut behind = connect(&addr);
        behind.write_all(b"wai").unwrap();
        server.signal(Signal::SIGSTOP);
        // Every thread: one that has not taken the stop yet may still
        // accept.
        wait_until("the server to stop", || all_threads_stopped(pid));
        let mut refused = connect(&addr);
        refused.write_all(&[b'x'; 10_000]).unwrap();
        // Served after a pause, it has its reply, not a deadline's wait.
        refused.shutdown(Shutdown::Write).unwrap();
        server.signal(Signal::SIGCONT);
        let mut reply = Vec::new();
        let read = refused.read_to_end(&mut reply);
        if !refused_while_held(&String::from_utf8_lossy(&reply), since) {
            return None;
        }
        assert_eq!(reply.escape_ascii().to_string(), "error: server busy\\n");
        read.expect("the end of the stream after the refusal, not a reset");
        drop((served, behind, server));
        Some(())
    });
}

/// Ten thousand requests of a kilobyte, sent while the replies are read
/// (Listing 13-2's client): the replies outrun the socket buffers many
/// times over, and every one arrives, in order.
#[track_caller]
pub fn writes_many_replies_as_the_client_reads_them(bin: &str) {
    let (server, addr) = start_server(bin, &["127.0.0.1:0", "--count", "1"]);
    let script = format!(
        "yes {} | head -n 10000 | \"$0\" client {addr} | sort | uniq -c",
        "x".repeat(1000)
    );
    let out =
        Listing::start("bash", &["-c", &script, bin!("tcp-lines")]).finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 1, "one kind of reply");
    assert!(
        out.stdout[0]
            .trim_start()
            .starts_with("10000 server got: [xxx")
    );
    assert!(server.finish().status.success());
}

/// The server's end of each of `clients`' connections to `port` on
/// 127.0.0.1 that is still established: the bytes in its send queue
/// (written, not yet acknowledged by the client's kernel) and in its
/// receive queue (arrived, not yet read by the server). Each is asked of
/// the kernel by its four-tuple (`server_end`), not looked for in
/// /proc/net/tcp, which lists every socket of the machine.
pub fn kernel_queues(port: u16, clients: &[TcpStream]) -> Vec<(u64, u64)> {
    clients
        .iter()
        .filter_map(|sock| {
            let client = sock.local_addr().ok()?.port();
            match server_end(port, client)? {
                (state, unread, unsent, _) if state == "01" => {
                    Some((unsent, unread))
                }
                _ => None,
            }
        })
        .collect()
}

/// Linux 6.18. Clients that send requests and never read the replies:
/// once their own buffers are full, the replies wait in the server's
/// kernel, in each connection's send buffer, and, once the
/// server stops reading, the requests wait in its receive buffer. Linux
/// grows a send buffer it sizes itself up to `tcp_wmem`'s maximum (4 MiB
/// by default), invisible in the server's memory; the server fixes both
/// sizes instead, so that each such client costs its kernel little.
#[track_caller]
pub fn holds_little_in_the_kernel_for_clients_that_never_read(bin: &str) {
    let (server, addr) = start_server(bin, &["127.0.0.1:0", "--timeout", "60"]);
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let clients: Vec<TcpStream> = (0..5)
        .map(|_| {
            let sock = connect(&addr);
            sock.set_nonblocking(true).unwrap();
            sock
        })
        .collect();
    // Requests until no client can send more, and the server holds
    // requests of each unread: it has stopped reading from every one, so
    // its buffers for each are as full as they get.
    let newlines = [b'\n'; 64 * 1024];
    wait_until("the server to stop reading from every client", || {
        let mut blocked = true;
        for mut sock in &clients {
            loop {
                match sock.write(&newlines) {
                    Ok(_) => blocked = false,
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                    Err(err) => panic!("{err}"),
                }
            }
        }
        blocked && {
            let queues = kernel_queues(port, &clients);
            queues.len() == clients.len()
                && queues.iter().all(|&(tx, rx)| tx > 0 && rx > 0)
        }
    });
    // The server's 64 KiB become 128 KiB, which a send may overrun by a
    // segment: some 165 KB to send, here. Sized by Linux, the send buffers
    // held 600 KB to 4 MB each.
    for (tx, rx) in kernel_queues(port, &clients) {
        let most = 256 * 1024;
        assert!(tx < most && rx < most, "{tx} bytes to send, {rx} to read");
    }
    drop((clients, server));
}

/// A client sends requests and never reads the replies: once the socket
/// buffers are full, the server's writes wait, until its deadline (one
/// second here) drops the client; everyone else is served meanwhile.
#[track_caller]
pub fn drops_a_client_that_does_not_read_its_replies(bin: &str) {
    let (server, addr) =
        start_server(bin, &["127.0.0.1:0", "--timeout", "1", "--count", "2"]);
    let mut slow = connect(&addr);
    let writer = thread::spawn(move || {
        let request = b"are you there?\n".repeat(1000);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if slow.write_all(&request).is_err() {
                return true;
            }
        }
        false
    });
    assert_eq!(ask(&addr, "fast").unwrap(), "server got: [fast]\n");
    assert!(writer.join().unwrap(), "the slow reader was dropped");
    let out = server.finish();
    assert!(out.stderr.contains(": timed out"), "{}", out.stderr);
}

/// One byte every 200 ms: each read comes well within a second, so a
/// timeout per read would never fire; the deadline per request (one second
/// here) does.
#[track_caller]
pub fn drops_a_client_that_trickles_its_request(bin: &str) {
    let (server, addr) =
        start_server(bin, &["127.0.0.1:0", "--timeout", "1", "--count", "1"]);
    let started = Instant::now();
    let mut trickle = connect(&addr);
    let mut dropped = false;
    while started.elapsed() < Duration::from_secs(20) {
        if trickle.write_all(b"x").is_err() {
            dropped = true;
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert!(dropped, "still connected after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(1));
    let out = server.finish();
    assert!(out.stderr.contains(": timed out"), "{}", out.stderr);
}

/// Connections that have each sent one byte of a request, and nothing
/// more, hold every place; past the grace of a second, the one stalled
/// longest gives its place to a new client, long before the ten-second
/// request deadline would have freed it. The server closed it, so its log
/// must not blame the client: the evicted connection's byte, read after the
/// server's own shutdown, once made a reply whose write failed, logged as
/// the client's "Broken pipe".
#[track_caller]
pub fn a_stalled_request_gives_up_its_place(bin: &str) {
    let (server, addr) =
        start_server(bin, &["127.0.0.1:0", "--max-conns", "2"]);
    let pid = server.pid();
    let before = lasting_fds(pid);
    let mut slow = silent_clients(&addr, 2);
    for sock in &mut slow {
        sock.write_all(b"x").unwrap();
    }
    wait_until("the server to accept both slow clients", || {
        lasting_fds(pid) >= before + 2
    });
    // Past the grace, and far from the ten-second deadline.
    thread::sleep(Duration::from_millis(1500)); // The wait is the test.
    let started = Instant::now();
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_until("a slow client to be closed", || {
        // The end of the stream, or a reset: anything but "nothing yet".
        slow.iter().any(|sock| {
            let mut sock: &TcpStream = sock;
            sock.set_nonblocking(true).unwrap();
            !matches!(
                sock.read(&mut [0; 64]),
                Err(ref e) if e.kind() == ErrorKind::WouldBlock
            )
        })
    });
    // The evicted connection's end and the new client's are closed, once
    // their log lines are written: one slow client is left.
    wait_until("the server to close what it evicted", || {
        lasting_fds(pid) <= before + 1
    });
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.stderr, "", "the eviction logged as the client's error");
    drop(slow);
}

/// At the limit, an idle connection makes room before one whose request
/// has begun, even when the idle one is the younger: the first byte of a
/// request marks a connection busy, and idle ones go first. Two places;
/// the older client sends half a line at once, the younger says nothing,
/// and both wait past the grace. A new client takes the idle one's place,
/// and the older client, its line finished, is still answered. A server
/// that took no note of the bytes that came would judge the older client
/// idle since it connected, the idlest of the two, and close it with its
/// request half sent.
#[track_caller]
pub fn an_idle_client_makes_room_before_a_request_that_has_begun(bin: &str) {
    let (server, addr) =
        start_server(bin, &["127.0.0.1:0", "--max-conns", "2"]);
    let pid = server.pid();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let before = lasting_fds(pid);
    let mut begun = connect(&addr);
    begun.write_all(b"hal").unwrap();
    let begun_port = begun.local_addr().unwrap().port();
    let idle = connect(&addr);
    wait_until(
        "the server to accept both clients and read the bytes",
        || {
            lasting_fds(pid) >= before + 2
                && server_end(port, begun_port)
                    .is_some_and(|(_, unread, ..)| unread == 0)
        },
    );
    // Both past the grace, and far from the ten-second deadline.
    thread::sleep(Duration::from_millis(1500)); // The wait is the test.
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    wait_until("the idle client to be closed", || {
        closed_by_the_server(std::slice::from_ref(&idle)) == 1
    });
    begun.write_all(b"f a line\n").unwrap();
    begun.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    begun.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server got: [half a line]\n", "the request begun");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    drop((server, idle));
}

/// Where eviction stops: a client that asks, however little, more often
/// than the grace is neither idle nor stalled for a grace, and keeps its
/// place for as long as it goes on. One place; the steady client sends an
/// empty line, reads the reply, and waits 0.4 s before the next, for three
/// times the grace; a new client that comes in each pause is refused. Once
/// the steady client stops asking, it is idle, and the first new client
/// past the grace takes its place.
#[track_caller]
pub fn keeps_a_client_that_asks_more_often_than_the_grace(
    bin: &str,
    args: &[&str],
) {
    let (server, addr) = start_server(bin, args);
    let mut steady = connect(&addr);
    let mut replies = BufReader::new(steady.try_clone().unwrap());
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(3) {
        steady.write_all(b"\n").unwrap();
        let mut reply = String::new();
        replies.read_line(&mut reply).unwrap();
        assert_eq!(reply, "server got: []\n", "round {rounds}");
        // The steady client's pace, under the grace: the wait is the test.
        thread::sleep(Duration::from_millis(400));
        let new = ask(&addr, "new").unwrap();
        assert_eq!(new, "error: server busy\n", "round {rounds}");
        rounds += 1;
    }
    assert!(rounds >= 5, "{rounds} rounds in {:?}", started.elapsed());
    // It stops asking, and is idle past the grace: the wait is the test.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    wait_until("the steady client to be closed", || {
        closed_by_the_server(std::slice::from_ref(&steady)) == 1
    });
    server.signal(nix::sys::signal::Signal::SIGTERM);
    drop((server, replies));
}

/// `max_conns` idle clients hold every place of `server`, listening on
/// `addr` (each idle past a second); three new clients are served all
/// the same, and stay connected, so that each must make room by closing
/// an idle client (one that left would free its place for the next). A
/// server whose limit is not `max_conns` fails: fewer places refuse an
/// idle client, and the wait for all of them to be accepted times out;
/// more leave an idle client unclosed (give the server a request deadline
/// far longer than the test, or the deadline closes the idle clients
/// instead). Returns the server and the idle clients, for the chapter's
/// own checks.
#[track_caller]
pub fn serves_new_clients_while_idle_ones_hold_every_place(
    server: Listing,
    addr: &str,
    max_conns: usize,
) -> (Listing, Vec<TcpStream>) {
    let idle = idle_clients_held(server.pid(), addr, max_conns);
    let mut new = Vec::new();
    for i in 0..3 {
        let mut sock = connect(addr);
        sock.write_all(format!("new {i}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(&sock).read_line(&mut reply).unwrap();
        assert_eq!(reply, format!("server got: [new {i}]\n"));
        new.push(sock);
    }
    wait_until("three idle clients to be closed to make room", || {
        closed_by_the_server(&idle) >= 3
    });
    drop(new);
    (server, idle)
}

/// With `ulimit -n 64`, below the default limit on connections: a hundred
/// idle clients take what the server allows, and a new client, once they
/// have been idle a second, must still be served, by the table making
/// room rather than by `accept`, which would fail first.
#[track_caller]
pub fn served_past_idle_clients_with_few_descriptors(bin: &str) {
    let (server, addr) =
        start_limited(64, bin, &["127.0.0.1:0", "--timeout", "600"]);
    let pid = server.pid();
    let idle = silent_clients(&addr, 100);
    wait_until("the server to hold forty idle clients", || {
        lasting_fds(pid) >= 3 + 1 + 40
    });
    // Not a synchronisation: the time a connection must have been idle.
    thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop(idle);
}

/// With `ulimit -n 64` and room in its table for more (`args`): a hundred
/// idle clients fill the descriptors, and `accept` fails. Then a client
/// closes one connection and opens another every 10 ms, for two seconds,
/// as an attacker can: each close gives the server one descriptor, which
/// it accepts with, and fails again. That is one shortage, and the server
/// must say so once, not once per connection (200 lines it was); a new
/// client is served once the crowd has gone.
#[track_caller]
pub fn logs_a_shortage_once_while_clients_come_and_go(
    bin: &str,
    args: &[&str],
) {
    let name = std::path::Path::new(bin).file_name().unwrap();
    let failure = format!("{}: accept: ", name.to_string_lossy());
    let mut command = vec!["127.0.0.1:0", "--timeout", "600"];
    command.extend(args);
    let (mut server, addr) = start_limited(64, bin, &command);
    let pid = server.pid();
    let mut held: std::collections::VecDeque<_> =
        silent_clients(&addr, 100).into();
    wait_until("all 64 descriptors in use", || lasting_fds(pid) == 64);
    let failed = server.next_line();
    assert!(failed.starts_with(&failure), "{failed}");
    for _ in 0..200 {
        held.pop_front();
        held.push_back(connect(&addr));
        thread::sleep(Duration::from_millis(10)); // The pace of the attack.
    }
    drop(held);
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    let again: Vec<_> = out
        .stdout
        .iter()
        .filter(|l| l.starts_with(&failure))
        .collect();
    assert_eq!(again.len(), 1, "logged {} times: {again:#?}", again.len());
}

/// With `ulimit -n 64` and room in its table for more (`args`): clients
/// connect one at a time until the descriptors are all in use and nobody
/// waits in the backlog. A blocking `accept` then fails at once all the
/// same (Linux takes the descriptor before it waits for a connection), so
/// an empty backlog after a success does not end the shortage. A client
/// closes one connection and opens another, a hundred times: the server
/// must say so once, not once per connection (about one line a cycle it
/// was, when a success with an empty backlog ended the shortage).
#[track_caller]
pub fn logs_a_shortage_once_while_exactly_enough_clients_come_and_go(
    bin: &str,
    args: &[&str],
) {
    let name = std::path::Path::new(bin).file_name().unwrap();
    let failure = format!("{}: accept: ", name.to_string_lossy());
    let mut command = vec!["127.0.0.1:0", "--timeout", "600"];
    command.extend(args);
    let (mut server, addr) = start_limited(64, bin, &command);
    let pid = server.pid();
    // As many clients as there are descriptors left, one at a time, each
    // accepted before the next connects: nobody waits in the backlog.
    let before = lasting_fds(pid);
    let mut held = std::collections::VecDeque::new();
    for open in before + 1..=64 {
        held.push_back(connect(&addr));
        wait_until("the server to accept", || lasting_fds(pid) >= open);
    }
    let failed = server.next_line();
    assert!(failed.starts_with(&failure), "{failed}");
    for _ in 0..100 {
        held.pop_front();
        wait_until("the server to close", || lasting_fds(pid) < 64);
        held.push_back(connect(&addr));
        wait_until("the server to accept", || lasting_fds(pid) == 64);
    }
    drop(held);
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    let again: Vec<_> = out
        .stdout
        .iter()
        .filter(|l| l.starts_with(&failure))
        .collect();
    assert_eq!(again.len(), 1, "logged {} times: {again:#?}", again.len());
}

/// The server's log goes into a pipe whose reader takes the first line
/// and goes, as `head -1` would. The first client's log line then fails
/// with EPIPE, and the server ends when the next client comes.
#[track_caller]
pub fn ends_at_the_next_connection_once_nobody_reads_its_log(bin: &str) {
    ends_once_nobody_reads_its_log_waiting_in(bin, nix::libc::SYS_accept4);
}

/// The system call a one-thread server waits in when it waits for
/// anything, a client included: `poll`, which glibc makes with the
/// system call of that name where the kernel has one (x86_64), and with
/// `ppoll` where it does not (aarch64).
#[cfg(target_arch = "x86_64")]
pub const POLL: i64 = nix::libc::SYS_poll;
#[cfg(not(target_arch = "x86_64"))]
pub const POLL: i64 = nix::libc::SYS_ppoll;

/// As `ends_at_the_next_connection_once_nobody_reads_its_log`, for a
/// server that waits for clients in the system call `waits_in`: `accept4`
/// for a thread of its own, `POLL` for a server of one thread, which then
/// waits for everything at once.
#[track_caller]
pub fn ends_once_nobody_reads_its_log_waiting_in(bin: &str, waits_in: i64) {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut command = std::process::Command::new(bin);
    command.arg("127.0.0.1:0");
    let server = Listing::spawn(&mut command, std::process::Stdio::from(write));
    drop(command); // our copy of the pipe's writing end
    let mut log = std::io::BufReader::new(std::fs::File::from(read));
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("Server listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .trim_end()
        .to_string();
    drop(log); // nobody reads the log any more
    assert_eq!(ask(&addr, "one").unwrap(), "server got: [one]\n");
    // Its connection ends before its log line is tried, and the line
    // fails with EPIPE a moment later; the server ends at the next client
    // after that. Another test's child may also hold the pipe's reading
    // end for a moment, between its fork and its exec, and let a line
    // through. So clients come until the server has ended. Each is
    // served, or refused by a listening socket already closed: a client
    // accepted only to be dropped, its request unread, got the end of the
    // stream or a reset instead of its reply. Each comes once the server
    // waits in `accept`, or has closed its listening socket: one that came
    // just before that close would wait in the backlog, and be reset by it.
    let pid = server.pid();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    wait_until("the server to end once nobody reads its log", || {
        wait_until("the server to accept, or to stop listening", || {
            threads_blocked_in(pid, waits_in) == 1 || !listening_on(port)
        });
        match ask(&addr, "more") {
            Ok(reply) => assert_eq!(reply, "server got: [more]\n"),
            Err(err) => assert_eq!(
                err.kind(),
                ErrorKind::ConnectionRefused,
                "a client after the log was gone: {err}"
            ),
        }
        is_dead(pid)
    });
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

/// Fills the pipe whose writing end is `end`, through an open file of its
/// own: O_NONBLOCK on a copy of a server's would make the server's writes
/// fail instead of wait.
pub fn fill_pipe(end: &impl std::os::fd::AsRawFd) {
    use std::os::unix::fs::OpenOptionsExt;
    let path = format!("/proc/self/fd/{}", end.as_raw_fd());
    let mut full = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    while full.write(&[b'.'; 4096]).is_ok() {}
}

/// Starts a server whose log goes into a pipe that is full and that
/// nobody reads, as when the terminal is paused or the log's reader is
/// stuck: writing a log line then waits. Returns the server, its address,
/// and the pipe's reading end, to keep open, unread.
#[track_caller]
pub fn start_with_full_log(
    bin: &str,
    args: &[&str],
) -> (Listing, String, std::io::BufReader<std::fs::File>) {
    use std::io::BufRead;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let filler = write.try_clone().unwrap();
    let mut command = std::process::Command::new(bin);
    command.args(args);
    let server = Listing::spawn(&mut command, std::process::Stdio::from(write));
    drop(command); // our copy of the pipe's writing end
    let mut log = std::io::BufReader::new(std::fs::File::from(read));
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("Server listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .trim_end()
        .to_string();
    fill_pipe(&filler);
    (server, addr, log)
}

/// Two hundred exchanges of a line and its reply on `sock`, so that the
/// client's kernel has left the "quick ACK" mode of a new connection and
/// delays its ACKs, as a connection that has talked for a while does:
/// only then does a write that waits for an ACK show its 40 ms.
#[track_caller]
pub fn past_quick_acks(sock: &mut TcpStream) {
    let mut reply = [0; 64];
    for _ in 0..200 {
        sock.write_all(b"warm\n").unwrap();
        sock.read_exact(&mut reply[..b"server got: [warm]\n".len()])
            .unwrap();
    }
}

/// Linux 6.18. Requests sent together are answered together: a client
/// that sends two lines in one write gets both replies in one read. After
/// a few hundred exchanges the client's kernel delays its ACKs (it leaves
/// the "quick ACK" mode of a new connection), and a server that writes
/// each reply on its own has the second held by Nagle's algorithm until
/// the first is acknowledged, 40 ms later on loopback (Chapter 18): the
/// client's read returned the first reply alone.
#[track_caller]
pub fn answers_requests_sent_together_in_one_write(bin: &str) {
    let (server, addr) = start_server(bin, &["127.0.0.1:0"]);
    let mut sock = connect(&addr);
    let mut reply = [0; 64];
    past_quick_acks(&mut sock);
    for round in 0..5 {
        sock.write_all(b"x\ny\n").unwrap();
        let n = loop {
            match sock.read(&mut reply) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                read => break read.unwrap(),
            }
        };
        assert_eq!(
            String::from_utf8_lossy(&reply[..n]),
            "server got: [x]\nserver got: [y]\n",
            "round {round}: the replies to two requests sent together, in \
             one read"
        );
    }
    drop((sock, server));
}

/// As [`start_with_full_log`], but stderr goes into the same pipe as
/// stdout, as under a service manager or `2>&1 | logger`: every line the
/// server writes, error or not, waits once the pipe is full.
#[track_caller]
pub fn start_with_full_shared_log(
    bin: &str,
    args: &[&str],
) -> (Listing, String, std::io::BufReader<std::fs::File>) {
    use std::io::BufRead;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let filler = write.try_clone().unwrap();
    let stdout = std::process::Stdio::from(write.try_clone().unwrap());
    let mut command = std::process::Command::new(bin);
    command.args(args);
    let server = Listing::spawn_with_stderr(&mut command, stdout, write);
    drop(command); // our copies of the pipe's writing end
    let mut log = std::io::BufReader::new(std::fs::File::from(read));
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("Server listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .trim_end()
        .to_string();
    fill_pipe(&filler);
    (server, addr, log)
}

/// Linux 6.18. The server's stdout and stderr are one pipe, full and
/// unread, as under a service manager whose log collector is stuck. While
/// the server is stopped, a hundred clients connect and reset in the
/// backlog: Linux hands each to `accept` all the same, and each costs the
/// accepting thread a log line. That thread must never wait for the log:
/// a new client is still answered. (A blocking write to stderr stopped it
/// at the first line, and nobody was accepted, refused or served any
/// more.) Once the log is read again, each reset has its line there, or
/// is counted among the lines dropped.
#[track_caller]
pub fn accepts_on_while_its_log_is_stuck_after_resets_in_the_queue(bin: &str) {
    // More than the queue of the accepting thread's lines holds (64).
    stuck_log_after_resets(bin, &["127.0.0.1:0"], 100, 0);
}

/// The server's log goes into a pipe that is full and that nobody reads
/// any more, as when the terminal is paused or the log's reader is stuck:
/// writing a log line then waits. A client that has had its reply must
/// still see the end of the stream, at once, not when the log moves again.
#[track_caller]
pub fn ends_a_connection_before_its_log_line_can_wait(bin: &str) {
    let (server, addr, log) = start_with_full_log(bin, &["127.0.0.1:0"]);
    let mut sock = TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(b"one\n").unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    let read = sock.read_to_string(&mut reply);
    assert!(
        read.is_ok(),
        "no end of the stream after {reply:?} while the log waits: {read:?}"
    );
    assert_eq!(reply, "server got: [one]\n");
    drop((server, log));
}

/// Linux 6.18. A client sends a million requests and reads nothing until
/// the server waits to write a reply, for room in the socket's buffers.
/// Stopped and continued there (Ctrl-Z and `fg`), the server's write,
/// which has a timeout, fails with EINTR though no handler is installed
/// (Chapter 3): the server must write again, and the client then gets
/// every reply, not a connection closed with "Interrupted system call".
#[track_caller]
pub fn writes_on_through_a_stop_and_continue(bin: &str) {
    use nix::sys::signal::Signal;
    let (server, addr) = start_server(bin, &["127.0.0.1:0", "--count", "1"]);
    let pid = server.pid();
    let sock = connect(&addr);
    let mut writer = sock.try_clone().unwrap();
    let requests = thread::spawn(move || {
        writer.write_all(&b"x\n".repeat(1_000_000)).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    wait_until("the server to wait for room to write a reply", || {
        crate::support::threads_waiting_to_send(pid) == 1
    });
    server.signal(Signal::SIGSTOP);
    wait_until("the server to stop", || all_threads_stopped(pid));
    server.signal(Signal::SIGCONT);
    let mut replies = Vec::new();
    (&sock).read_to_end(&mut replies).unwrap();
    requests.join().unwrap();
    assert_eq!(replies.len(), b"server got: [x]\n".len() * 1_000_000);
    let out = server.finish();
    assert!(!out.stderr.contains("Interrupted"), "{}", out.stderr);
}

/// Linux 6.18. A client sends `request`, which the server refuses with
/// `error` and its FIN, and then drains: it reads and throws away what
/// the client still sends, until the client closes. Stopped and continued
/// there (Ctrl-Z and `fg`), the server's read, which has a timeout, fails
/// with EINTR though no handler is installed (Chapter 3): the server must
/// read again, not close the connection early, with unread bytes that
/// make it a reset, and log "Interrupted system call".
#[track_caller]
pub fn drains_a_refused_client_through_a_stop_and_continue(
    bin: &str,
    args: &[&str],
    request: &[u8],
    error: &[u8],
) {
    use nix::sys::signal::Signal;
    let (server, addr) = start_server(bin, args);
    let pid = server.pid();
    let mut client = connect(&addr);
    client.write_all(request).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert!(reply.starts_with(error), "{:?}", reply.escape_ascii());
    wait_until("the server to drain the client", || {
        threads_waiting_in(pid, "wait_woken") == 1
    });
    server.signal(Signal::SIGSTOP);
    // Every thread, not only the first: a stop that a thread has not
    // taken yet when SIGCONT comes is cancelled, with no EINTR to see.
    wait_until("the server to stop", || all_threads_stopped(pid));
    server.signal(Signal::SIGCONT);
    wait_until("the server to drain again, or to end", || {
        threads_waiting_in(pid, "wait_woken") == 1 || is_dead(pid)
    });
    assert!(!is_dead(pid), "the server stopped draining");
    client.write_all(b"more").unwrap();
    drop(client);
    let out = server.finish();
    assert!(!out.stderr.contains("Interrupted"), "{}", out.stderr);
}

/// As `served_past_idle_clients_with_few_descriptors`, but the server
/// inherits twenty descriptors open without close-on-exec, as a careless
/// launcher leaves them: its default limit must leave room for them, or
/// `accept` fails before the table is full, no idle client is closed to
/// make room, and the new client waits for their deadlines.
#[track_caller]
pub fn served_past_idle_clients_with_inherited_descriptors(bin: &str) {
    let inherited: String =
        (3..23).map(|fd| format!(" {fd}</dev/null")).collect();
    let script = format!("ulimit -n 64 && exec \"$0\" \"$@\"{inherited} 2>&1");
    let (server, addr) = start_server(
        "bash",
        &["-c", &script, bin, "127.0.0.1:0", "--timeout", "600"],
    );
    let pid = server.pid();
    wait_until(
        "the server to hold its twenty inherited descriptors",
        || lasting_fds(pid) > 3 + 20,
    );
    let idle = silent_clients(&addr, 100);
    wait_until("the server to hold twenty idle clients", || {
        lasting_fds(pid) >= 3 + 20 + 1 + 20
    });
    // Not a synchronisation: the time a connection must have been idle.
    thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop(idle);
}

/// Whether `reply`, a new client's while every place is held by clients
/// whose requests or replies last moved at `since`, is the refusal. A
/// client that makes no progress for the grace of a second counts as
/// stalled (or idle), and a server at its limit closes it to make room:
/// if the reply came that late, the machine may have paused the test or
/// the server for as long, the new client may rightly have been served,
/// and the caller tries again (`unless_the_machine_paused`). Any other
/// reply sooner than the grace fails: every place was held.
#[track_caller]
pub fn refused_while_held(reply: &str, since: Instant) -> bool {
    let held = since.elapsed();
    if reply == "error: server busy\n" {
        return true;
    }
    assert!(
        held >= Duration::from_secs(1),
        "{reply:?} after {held:?}: under the grace of a second, every \
         place was held"
    );
    eprintln!("{reply:?} after {held:?}, past the grace: trying again");
    false
}

/// Runs `attempt` until it returns `Some`, at most five times: an attempt
/// returns `None` when its new client was answered only after the grace
/// (`refused_while_held`), which a pause of the machine explains once. A
/// server that makes the client wait for a place every time fails.
#[track_caller]
pub fn unless_the_machine_paused<T>(
    mut attempt: impl FnMut() -> Option<T>,
) -> T {
    (0..5).find_map(|_| attempt()).expect(
        "five times in a row, the new client was answered after the grace, \
         not refused",
    )
}

/// Attaches strace to every thread of `server`, and with `-f` to every
/// thread it starts later, so that each of their `write`s fails with
/// ENOSPC, as on a full disk; returns strace, whose stdout is the trace of
/// those writes, once every thread is traced. Attached after the ready
/// line, which is written. Not strace started with the server: without
/// `-f` it traces only the first thread, and a threaded server logs from
/// others; with `-f`, `when=2+` counts each thread's writes apart, and a
/// new thread's first write (its one log line) would go through.
/// Linux 6.18's strace.
#[track_caller]
pub fn fill_the_log_disk(server: &Listing) -> Listing {
    let pid = server.pid().to_string();
    let strace = Listing::start(
        "strace",
        &[
            "-f",
            "-p",
            &pid,
            "-qq",
            "-s",
            "256",
            "-o",
            "/dev/stdout",
            "-e",
            "trace=write",
            "-e",
            "inject=write:error=ENOSPC",
        ],
    );
    wait_until("strace to trace every thread of the server", || {
        every_thread_traced(&pid)
    });
    strace
}

/// True if every thread of process `pid` has a tracer (`TracerPid` in its
/// /proc status is not 0).
fn every_thread_traced(pid: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("status")).is_ok_and(
            |status| {
                status.lines().any(|line| {
                    line.starts_with("TracerPid:")
                        && line.split_whitespace().nth(1) != Some("0")
                })
            },
        )
    })
}

/// Waits for the trace of `fill_the_log_disk` to show a log line holding
/// `what` written and failed with ENOSPC: the disk was full for that line.
#[track_caller]
pub fn lost_to_a_full_disk(strace: &mut Listing, what: &str) {
    loop {
        let line = strace.next_line();
        if line.contains(what) && line.contains("ENOSPC") {
            return;
        }
    }
}

/// `bin` with its log disk full (`fill_the_log_disk`) once it has said it
/// listens: a full log loses its lines, and the clients are served on. A
/// client is answered and stays connected; another is answered and
/// leaves, whose line in the log fails; the first is still answered. The
/// trace shows that line failed, and the log holds none: the test cannot
/// pass with a disk that was never full. Only a log that nobody reads
/// (`BrokenPipe`) ends a server.
#[track_caller]
pub fn serves_on_when_its_log_disk_is_full(bin: &str) {
    if !crate::support::have("strace") {
        return;
    }
    let (server, addr) = start_server(bin, &["127.0.0.1:0"]);
    let mut strace = fill_the_log_disk(&server);
    let mut other = connect(&addr);
    let mut replies = BufReader::new(other.try_clone().unwrap());
    let mut reply = String::new();
    other.write_all(b"first\n").unwrap();
    replies.read_line(&mut reply).unwrap();
    assert_eq!(reply, "server got: [first]\n");
    assert_eq!(ask(&addr, "x").unwrap(), "server got: [x]\n");
    lost_to_a_full_disk(&mut strace, "answered");
    other.write_all(b"second\n").unwrap();
    reply.clear();
    replies.read_line(&mut reply).unwrap();
    assert_eq!(reply, "server got: [second]\n", "the server ended");
    other.shutdown(Shutdown::Write).unwrap();
    lost_to_a_full_disk(&mut strace, "answered");
    server.signal(nix::sys::signal::Signal::SIGKILL);
    let out = server.finish();
    assert_eq!(
        out.stdout.len(),
        1,
        "lines the full disk kept: {:?}",
        out.stdout
    );
}

/// `bin`, its stderr a regular file, which never stops moving: 200
/// clients reset in the backlog while the server is stopped, and once it
/// runs on, its accepting thread makes their 200 lines faster than the
/// thread that writes them is scheduled, so the queue of 64 may fill. Each
/// reset has its line or is counted among the dropped, and a count says
/// the log fell behind, not that it was not read: the file was.
#[track_caller]
pub fn counts_the_lines_a_burst_drops_as_the_log_falling_behind(bin: &str) {
    use nix::sys::signal::Signal;
    const RESETS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    let script = "exec \"$0\" 127.0.0.1:0 2>\"$1\"";
    let (server, addr) =
        start_server("bash", &["-c", script, bin, err.to_str().unwrap()]);
    let pid = server.pid();
    server.signal(Signal::SIGSTOP);
    wait_until("the server to stop", || all_threads_stopped(pid));
    for _ in 0..RESETS {
        reset_in_the_accept_queue(&addr);
    }
    server.signal(Signal::SIGCONT);
    assert_eq!(ask(&addr, "next").unwrap(), "server got: [next]\n");
    let dropped = regex::Regex::new(r"^\S+: (\d+) log lines dropped").unwrap();
    let mut text = String::new();
    wait_until("a line or a count for each reset", || {
        text = std::fs::read_to_string(&err).unwrap();
        let resets = text.lines().filter(|l| l.contains("not connected"));
        let counted: usize = text
            .lines()
            .filter_map(|l| dropped.captures(l))
            .map(|c| c[1].parse::<usize>().unwrap())
            .sum();
        resets.count() + counted == RESETS
    });
    for line in text.lines().filter(|l| dropped.is_match(l)) {
        assert!(line.ends_with(": the log fell behind"), "{line}");
    }
    drop(server);
}

/// [`logs_a_reset_that_comes_after_the_half_close`], for a server that
/// stops reading while its replies wait to be written, as Listing 30-1's
/// `Framed` does (its backpressure): it sleeps in `epoll_wait`, with
/// requests still unread and no thread in a `write`, which the shared
/// test's wait takes for a server still at work. Here the wait ends once
/// the server has the FIN (CLOSE_WAIT), holds replies it could not send,
/// and sleeps. The client, the reset and what the log must say are the
/// same (Linux 6.18).
#[track_caller]
pub fn logs_a_reset_that_comes_after_the_half_close_while_it_waits_to_write(
    bin: &str,
) {
    let (server, addr) =
        start_server(bin, &["127.0.0.1:0", "--count", "1", "--timeout", "60"]);
    let pid = server.pid();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut sock = TcpStream::from(sock);
    let client = sock.local_addr().unwrap();
    sock.write_all(&[b'\n'; 8000]).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    // Replies unsent, the FIN in, every thread asleep; or the server has
    // closed its end (LAST_ACK), having written everything.
    wait_until(
        "the server to wait to write its replies",
        || match server_end(port, client.port()) {
            Some((state, _, unsent, _)) if state == "08" => {
                unsent > 0 && all_threads_asleep(pid)
            }
            _ => true,
        },
    );
    let end = server_end(port, client.port());
    assert!(
        end.as_ref().is_some_and(|(state, ..)| state == "08"),
        "the server closed: its replies all fit in the kernel ({end:?})"
    );
    socket2::SockRef::from(&sock)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(sock);
    let out = server.finish();
    let answered = format!("{client}: answered");
    assert!(
        !out.stdout.iter().any(|line| line.contains(&answered)),
        "a client whose replies were lost reported answered:\n{}\nstderr:\n{}",
        out.stdout.join("\n"),
        out.stderr
    );
    let logged: Vec<_> = out
        .stderr
        .lines()
        .filter(|line| line.contains(&format!("{client}: ")))
        .collect();
    let name = std::path::Path::new(bin).file_name().unwrap();
    assert_eq!(
        logged,
        [format!(
            "{}: {client}: Broken pipe (os error 32)",
            name.to_string_lossy()
        )],
        "{}",
        out.stderr
    );
}

/// [`an_idle_client_makes_room_before_a_request_that_has_begun`], with
/// the older client finishing its line only well after the newcomer was
/// served: past the second in which Listing 30-1 still answers a request
/// begun on a connection it has closed to make room. A server that took
/// the begun connection for the idler of the two closed it, and passed
/// the shared test only by that second's grace; here its client gets no
/// reply. Closed or not, nothing else tells the two apart from outside.
#[track_caller]
pub fn keeps_a_request_begun_while_an_idle_client_makes_room(bin: &str) {
    let (server, addr) =
        start_server(bin, &["127.0.0.1:0", "--max-conns", "2"]);
    let pid = server.pid();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let before = lasting_fds(pid);
    let mut begun = connect(&addr);
    begun.write_all(b"hal").unwrap();
    let begun_port = begun.local_addr().unwrap().port();
    let idle = connect(&addr);
    wait_until(
        "the server to accept both clients and read the bytes",
        || {
            lasting_fds(pid) >= before + 2
                && server_end(port, begun_port)
                    .is_some_and(|(_, unread, ..)| unread == 0)
        },
    );
    // Both past the grace, and far from the ten-second deadline.
    thread::sleep(Duration::from_millis(1500)); // The wait is the test.
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    wait_until("the idle client to be closed", || {
        closed_by_the_server(std::slice::from_ref(&idle)) == 1
    });
    // Past the second an evicted request has to finish, still far from
    // the deadline: the wait is the test.
    thread::sleep(Duration::from_millis(1500));
    begun.write_all(b"f a line\n").unwrap();
    begun.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    let read = begun.read_to_string(&mut reply);
    assert_eq!(
        reply, "server got: [half a line]\n",
        "the request begun ({read:?})"
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    drop((server, idle));
}

/// [`accepts_on_while_its_log_is_stuck_after_resets_in_the_queue`], for a
/// server whose one queue of log lines, the reports' included, holds
/// `queue` lines, not 64: an eighth more resets than that, so that some
/// lines must be dropped, and counted. `args` start the server with a
/// backlog that takes them all.
#[track_caller]
pub fn accepts_on_while_its_log_is_stuck_after_more_resets_than_its_queue(
    bin: &str,
    queue: usize,
    args: &[&str],
) {
    // More than the queue of log lines holds.
    stuck_log_after_resets(bin, args, queue + queue / 8, 1);
}

/// What both tests of a stuck log after resets do: `resets_made` clients
/// reset in the queue of a stopped server started with `args`, whose log
/// is a full pipe; a new client is served; then the log, read again, has a
/// line or a count for each reset, and up to `more_dropped` more.
#[track_caller]
fn stuck_log_after_resets(
    bin: &str,
    args: &[&str],
    resets_made: usize,
    more_dropped: usize,
) {
    use nix::sys::signal::{Signal, kill};
    use std::os::fd::AsFd;
    let (server, addr, mut log) = start_with_full_shared_log(bin, args);
    let pid = server.pid();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    kill(pid, Signal::SIGSTOP).unwrap();
    wait_until("the server to stop", || all_threads_stopped(pid));
    let resets: Vec<_> = (0..resets_made)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let clients: Vec<u16> = resets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    // Established (01), not handshakes still waiting for their ACK.
    wait_until("the connections in the queue", || {
        clients.iter().all(|&client| {
            server_end(port, client).is_some_and(|(state, ..)| state == "01")
        })
    });
    for reset in &resets {
        crate::support::reset_on_close(reset);
    }
    drop(resets);
    wait_until("the resets to end the queued connections", || {
        clients
            .iter()
            .all(|&client| server_end(port, client).is_none())
    });
    kill(pid, Signal::SIGCONT).unwrap();
    let reply = ask(&addr, "next");
    assert!(
        matches!(&reply, Ok(r) if r == "server got: [next]\n"),
        "a new client after {resets_made} resets, the log stuck: {reply:?}"
    );
    // The log moves again: a line for each reset, or a count of the lines
    // dropped.
    nix::fcntl::fcntl(
        log.get_ref().as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut text = Vec::new();
    let dropped = regex::Regex::new(r"(\d+) log lines dropped").unwrap();
    let mut counted = (0, 0);
    wait_until("a line or a count for each reset", || {
        let _ = log.read_to_end(&mut text);
        let text = String::from_utf8_lossy(&text);
        let lines = text.lines();
        let reset = lines.clone().filter(|l| l.contains("not connected"));
        let dropped: usize = lines
            .filter_map(|l| dropped.captures(l))
            .map(|c| c[1].parse::<usize>().unwrap())
            .sum();
        counted = (reset.count(), dropped);
        counted.0 + counted.1 >= resets_made
    });
    // With one queue for every line, the next client's report may be
    // among those dropped: `more_dropped` says if it may.
    let total = counted.0 + counted.1;
    assert!(
        (resets_made..=resets_made + more_dropped).contains(&total),
        "{counted:?} for {resets_made} resets"
    );
    assert!(counted.1 > 0, "{counted:?}");
    drop(server);
}

/// A client halfway through a request when the log's reader goes away is
/// served all the same: the server stops accepting, finishes the
/// connections it holds, and only then ends, with success. Ended at once,
/// it would reset them, their requests unanswered. `waits_in` is the
/// system call the server waits for clients in, as for
/// `ends_once_nobody_reads_its_log_waiting_in`.
#[track_caller]
pub fn serves_its_clients_to_the_end_once_nobody_reads_its_log(
    bin: &str,
    waits_in: i64,
) {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut command = std::process::Command::new(bin);
    command.arg("127.0.0.1:0");
    let server = Listing::spawn(&mut command, std::process::Stdio::from(write));
    drop(command); // our copy of the pipe's writing end
    let mut log = BufReader::new(std::fs::File::from(read));
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("Server listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .trim_end()
        .to_string();
    // A client the server holds (its first reply says so), halfway
    // through its second request.
    let mut held = TcpStream::connect(&addr).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    held.write_all(b"first\n").unwrap();
    let mut replies = BufReader::new(held.try_clone().unwrap());
    let mut reply = String::new();
    replies.read_line(&mut reply).unwrap();
    assert_eq!(reply, "server got: [first]\n");
    held.write_all(b"half a li").unwrap();
    drop(log); // nobody reads the log any more
    // Clients come and go until a log line has failed, which the server
    // shows by closing its listening socket (or by ending). Each comes
    // once the server waits for it, or has stopped listening, as in
    // `ends_once_nobody_reads_its_log_waiting_in`.
    let pid = server.pid();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    wait_until(
        "the server to stop listening once nobody reads its log",
        || {
            wait_until(
                "the server to wait for clients, or to stop listening",
                || {
                    threads_blocked_in(pid, waits_in) == 1
                        || !listening_on(port)
                },
            );
            match ask(&addr, "one") {
                Ok(reply) => assert_eq!(reply, "server got: [one]\n"),
                Err(err) => assert_eq!(
                    err.kind(),
                    ErrorKind::ConnectionRefused,
                    "a client after the log was gone: {err}"
                ),
            }
            !listening_on(port)
        },
    );
    // The held client finishes its request: it is answered.
    let _ = held.write_all(b"ne\n");
    let _ = held.shutdown(Shutdown::Write);
    let mut rest = String::new();
    let read = replies.read_to_string(&mut rest);
    assert!(
        read.is_ok() && rest == "server got: [half a line]\n",
        "the client held when the log went: {read:?} {rest:?}"
    );
    drop((held, replies));
    wait_until("the server to end with its last client", || is_dead(pid));
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

/// A server (`bin`) started as a shell leaves it a descriptor numbered 100,
/// under a limit of 64 descriptors that it cannot raise. The limit bounds
/// the numbers of descriptors, not how many are open, so that one takes
/// no room from connections: the default limit on connections is 64 less
/// the sixteen kept, 48, and 48 idle clients hold every place. Counting it
/// (47 places) refuses the 48th idle client, and the wait for it fails.
/// Linux 6.18: a descriptor opened before `ulimit -n` lowers the limit
/// below its number stays open, and is passed on.
#[track_caller]
pub fn default_limit_leaves_no_room_for_a_descriptor_above_the_limit(
    bin: &str,
    args: &[&str],
) {
    let script =
        "exec 100</dev/null && ulimit -n 64 && exec \"$0\" \"$@\" 2>&1";
    let mut command = vec!["-c", script, bin, "127.0.0.1:0"];
    command.extend(args);
    let (server, addr) = start_server("bash", &command);
    let fds = crate::support::fds_of(server.pid());
    assert!(fds.iter().any(|(fd, _)| *fd == 100), "{fds:?}");
    let (_server, idle) =
        serves_new_clients_while_idle_ones_hold_every_place(server, &addr, 48);
    drop(idle);
}
