//! Chapter 14, A server that real clients cannot break: Listings 14-1
//! (`tcp-naive`), 14-2 (`tcp-threads`) and 14-3 (`tcp-pool`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::line_server::{
    self, ask, connect, idle_clients_held, many_at_once, silent_clients,
    start_limited, start_server,
};
use crate::support::{
    Listing, assert_rejects, assert_session_matches_book,
    assert_session_matches_book_masking, assert_sleeps_for_two_seconds,
    blessing, cargo_run, default_port, fds_of, have, lasting_fds, server_end,
    status_kib, threads_blocked_in, threads_of, threads_waiting_to_send,
    unless_blessing, wait_until, with_fd_limit,
};

/// A python3 script for Terminal 2, as the book shows it (port 50008),
/// and as the test runs it (on `addr`).
pub fn python(shown: &str, addr: &str) -> Vec<String> {
    let port = addr.rsplit_once(':').unwrap().1;
    let out =
        Listing::start("bash", &["-c", &shown.replace("50008", port)]).finish();
    assert!(out.status.success(), "{}", out.stderr);
    out.stdout
}

// ---------------------------------------------------------------------------
// Listing 14-1: the naive server

const TWELVE: &str = r#"python3 -c '
import socket
conns = [socket.create_connection(("127.0.0.1", 50008)) for _ in range(12)]
print(len(conns), "connections open")
def closed(c):
    try:
        return c.recv(1) == b""
    except ConnectionResetError:  # reset: closed before it was accepted
        return True
print("the server closed", sum(closed(c) for c in conns))'"#;

#[test]
fn naive_server_dies_when_it_runs_out_of_file_descriptors() {
    if !have("python3") {
        return;
    }
    let _port = default_port();
    // 16 descriptors: 0, 1, 2, the listening socket and 12 connections.
    let (server, addr) = start_limited(
        16,
        bin!("tcp-naive"),
        &unless_blessing(&[], "127.0.0.1:0"),
    );
    let terminal2 = python(TWELVE, &addr);
    assert_eq!(terminal2, ["12 connections open", "the server closed 12"]);
    let out = server.finish();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stdout);
    assert_eq!(
        out.stdout[1..],
        ["tcp-naive: Too many open files (os error 24)"]
    );
    assert_session_matches_book(
        "ch14-servers/14-01-server.out",
        &[(
            format!("(ulimit -n 16 && {})", cargo_run("tcp-naive", &[])),
            &out.stdout,
        )],
    );
    assert_session_matches_book(
        "ch14-servers/14-01-client.out",
        &[(TWELVE.to_string(), &terminal2)],
    );
}

#[test]
fn a_connection_still_in_the_backlog_is_reset_when_the_server_dies() {
    // Linux 6.18. A server that dies closes its listening socket, and a
    // connection the kernel had completed but nobody had accepted goes
    // with it: its client reads ECONNRESET, not the end of the stream.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut queued =
        std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    queued
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    drop(listener);
    let err = queued.read(&mut [0; 1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[test]
fn linux_keeps_a_server_off_a_port_that_a_client_left_in_time_wait() {
    // Linux 6.18. The port is one that `connect` chose for a client of
    // this test, from the ephemeral range (32768-60999 by default), as it
    // may choose 50008. The client closes first, so its end waits in
    // TIME_WAIT; that socket, made without SO_REUSEADDR, keeps a server
    // from binding the port even with SO_REUSEADDR, which tcp-threads sets.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client =
        std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let port = client.local_addr().unwrap().port();
    let (mut conn, _) = listener.accept().unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(conn.read(&mut [0; 1]).unwrap(), 0);
    drop(conn);
    // The server's FIN has come: the client, which closed first, is in
    // TIME_WAIT.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(client.read(&mut [0; 1]).unwrap(), 0);
    drop((client, listener));
    let addr = format!("127.0.0.1:{port}");
    let out = crate::support::run(bin!("tcp-threads"), &[&addr]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "tcp-threads: cannot listen on {addr}: Address already in use \
             (os error 98)\n"
        )
    );
}

#[test]
fn linux_accepts_a_client_that_reset_in_the_queue_and_its_first_call_fails() {
    // Linux 6.18: no ECONNABORTED, as the BSDs give, for a client that
    // reset its connection while it waited in the queue. `accept` hands
    // over the connection anyway; `peer_addr` then fails with ENOTCONN,
    // and a read with ECONNRESET.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client =
        std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let client_port = client.local_addr().unwrap().port();
    assert!(
        server_end(port, client_port).is_some(),
        "queued, and listed"
    );
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    // The reset has reached the queued connection once the kernel's
    // table of connections no longer has it.
    wait_until("the reset to arrive", || {
        server_end(port, client_port).is_none()
    });
    let (mut conn, _) = listener.accept().expect("accepted anyway");
    let err = conn.peer_addr().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::ENOTCONN), "{err}");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let err = conn.read(&mut [0; 1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[test]
fn naive_server_holds_a_line_without_newline_in_memory() {
    let (server, addr) = start_server(bin!("tcp-naive"), &["127.0.0.1:0"]);
    let before = status_kib(server.pid(), "VmRSS").unwrap();
    // 64 MiB without a newline, and the connection left open: the
    // server keeps all of it, waiting for the end of the line.
    let mut sock = connect(&addr);
    sock.write_all(&vec![b'x'; 64 << 20]).unwrap();
    wait_until("the server to hold 64 MiB", || {
        status_kib(server.pid(), "VmRSS").unwrap_or(0) >= before + (64 << 10)
    });
}

/// The median time, in ms, of 21 exchanges on one connection: a line
/// sent in one write, then its reply read, before the next.
fn median_exchange_ms(addr: &str) -> f64 {
    use std::io::BufRead;
    let sock = connect(addr);
    let mut replies = std::io::BufReader::new(&sock);
    let mut times: Vec<f64> = (0..21)
        .map(|i| {
            let began = Instant::now();
            (&sock).write_all(format!("q{i}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            replies.read_line(&mut reply).unwrap();
            assert_eq!(reply, format!("server got: [q{i}]\n"));
            began.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[test]
fn naive_server_makes_a_client_that_waits_for_each_reply_wait_for_the_delayed_ack()
 {
    // Linux 6.18. `writeln!` on the bare socket sends each reply in three
    // pieces; the second waits (Nagle) for the client to acknowledge the
    // first, which the client delays by 40 ms at least (Chapter 18).
    // Listing 14-2 builds the reply and writes it once: however busy the
    // machine, which slows both alike, it is faster by most of those
    // 40 ms.
    let (_naive, addr) = start_server(bin!("tcp-naive"), &["127.0.0.1:0"]);
    let naive = median_exchange_ms(&addr);
    let (_threads, addr) = start_server(bin!("tcp-threads"), &["127.0.0.1:0"]);
    let threads = median_exchange_ms(&addr);
    assert!(naive >= 30.0, "tcp-naive: {naive} ms");
    assert!(threads <= naive - 20.0, "tcp-threads: {threads} ms");
}

#[test]
fn naive_server_keeps_a_thread_for_every_silent_client() {
    let (server, addr) = start_server(bin!("tcp-naive"), &["127.0.0.1:0"]);
    let pid = server.pid();
    let _silent = silent_clients(&addr, 20);
    // The main thread and one per client, and no timeout to end them.
    wait_until("a thread per client", || threads_of(pid) == 21);
    assert_eq!(lasting_fds(pid), 3 + 1 + 20);
}

#[test]
fn naive_server_answers_its_last_client_before_it_stops() {
    // `--count 1`: the server stops after one connection, but only once
    // that connection's thread has answered. It returned as soon as it had
    // started the thread, and the process's end closed the socket with
    // the request unread: the client got a reset, never its reply.
    let (server, addr) =
        start_server(bin!("tcp-naive"), &["127.0.0.1:0", "--count", "1"]);
    assert_eq!(ask(&addr, "x").unwrap(), "server got: [x]\n");
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn naive_server_stops_listening_once_its_count_is_reached() {
    // While it waits for its last threads, it no longer listens: a client
    // past the count is refused at once. Left open until the end, the
    // listening socket took that client into its backlog, and the end of
    // the process reset it, its request unread (checked).
    line_server::stops_listening_once_its_count_is_reached_with(
        bin!("tcp-naive"),
        &["127.0.0.1:0", "--count", "1"],
    );
}

#[test]
fn naive_memory_session_matches_the_book() {
    naive_and_fixed_memory_session("tcp-naive", "14-01-memory.out", |kib| {
        assert!(kib >= 64 << 10, "peak {kib} kB: it held the whole line");
    });
}

/// Terminal 2 of a memory check: 64 MiB without a newline, through `nc`,
/// then the server's peak memory, `VmHWM`, from /proc.
fn naive_and_fixed_memory_session(bin: &str, file: &str, check: fn(u64)) {
    if !have("nc") {
        return;
    }
    let _port = default_port();
    let path = crate::support::bin_path(bin);
    let (server, addr) = start_server(
        path.to_str().unwrap(),
        &unless_blessing(&[], "127.0.0.1:0"),
    );
    let port = addr.rsplit_once(':').unwrap().1;
    let flood = "head -c 64M /dev/zero | tr '\\0' x | nc -N 127.0.0.1 50008 | head -c 40; echo";
    // The book names the server by `pgrep -n`, the newest process of that
    // name, as a reader's terminal would; the test, which may share the
    // machine with other servers of that name, gives its own server's pid.
    let shown_peak = format!("grep VmHWM /proc/$(pgrep -n {bin})/status");
    let mut session = Vec::new();
    for command in [flood.to_string(), shown_peak] {
        let run = command
            .replace("50008", port)
            .replace(&format!("$(pgrep -n {bin})"), &server.pid().to_string());
        let out = Listing::start("bash", &["-c", &run]).finish();
        assert!(out.status.success(), "{command}: {}", out.stderr);
        session.push((command, out.stdout));
    }
    let peak = status_kib(server.pid(), "VmHWM").unwrap();
    check(peak);
    let session: Vec<_> = session
        .iter()
        .map(|(command, out)| (command.clone(), &out[..]))
        .collect();
    assert_session_matches_book(&format!("ch14-servers/{file}"), &session);
}

// ---------------------------------------------------------------------------
// Listing 14-2: a thread per connection, with limits

#[test]
fn threaded_memory_session_matches_the_book() {
    naive_and_fixed_memory_session("tcp-threads", "14-02-memory.out", |kib| {
        assert!(kib < 32 << 10, "peak {kib} kB: it kept at most a line");
    });
}

#[test]
fn threaded_server_serves_others_while_a_client_stays_silent() {
    // The silent client was not timed out to make room: it is still
    // connected, and nothing has been said to it.
    line_server::serves_others_while_clients_stay_silent(
        bin!("tcp-threads"),
        1,
    );
}

#[test]
fn threaded_server_outlives_clients_that_reset() {
    line_server::outlives_clients_that_reset(bin!("tcp-threads"));
}

#[test]
fn threaded_server_logs_a_line_per_connection_polite_or_reset() {
    // Ten clients that connect and half-close at once, and ten that send
    // a byte and reset: a line each, on stdout for the first, on stderr
    // for the second (at most: the test does not wait for them all).
    // Resets cost the log no more than polite clients do.
    let (mut server, addr) =
        start_server(bin!("tcp-threads"), &["127.0.0.1:0"]);
    for _ in 0..10 {
        assert_eq!(line_server::ask_nothing(&addr), "");
        let logged = server.next_line();
        assert!(logged.ends_with(": answered 0 lines"), "{logged}");
    }
    for _ in 0..10 {
        let rude = connect(&addr);
        (&rude).write_all(b"x").unwrap();
        crate::support::reset_on_close(&rude);
    }
    assert_eq!(ask(&addr, "last").unwrap(), "server got: [last]\n");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    let resets = out.stderr.lines().count();
    assert!(
        resets <= 10,
        "{resets} lines for 10 resets:\n{}",
        out.stderr
    );
}

#[test]
fn threaded_server_drains_a_refused_client_through_a_stop_and_continue() {
    line_server::drains_a_refused_client_through_a_stop_and_continue(
        bin!("tcp-threads"),
        &["127.0.0.1:0", "--count", "1"],
        &[b'x'; 2000],
        b"error: line longer than 1024 bytes\n",
    );
}

#[test]
fn pool_drains_a_refused_client_through_a_stop_and_continue() {
    line_server::drains_a_refused_client_through_a_stop_and_continue(
        bin!("tcp-pool"),
        &["127.0.0.1:0", "--count", "1"],
        &[b'x'; 2000],
        b"error: line longer than 1024 bytes\n",
    );
}

#[test]
fn threaded_server_refuses_a_long_line_and_keeps_little_memory() {
    line_server::refuses_a_long_line_and_keeps_little_memory(bin!(
        "tcp-threads"
    ));
}

#[test]
fn threaded_server_drops_a_client_that_does_not_read_its_replies() {
    line_server::drops_a_client_that_does_not_read_its_replies(bin!(
        "tcp-threads"
    ));
}

#[test]
fn threaded_server_holds_little_in_the_kernel_for_clients_that_never_read() {
    line_server::holds_little_in_the_kernel_for_clients_that_never_read(bin!(
        "tcp-threads"
    ));
}

#[test]
fn pool_holds_little_in_the_kernel_for_clients_that_never_read() {
    line_server::holds_little_in_the_kernel_for_clients_that_never_read(bin!(
        "tcp-pool"
    ));
}

#[test]
fn threaded_server_drops_a_client_that_trickles_its_request() {
    line_server::drops_a_client_that_trickles_its_request(bin!("tcp-threads"));
}

#[test]
fn threaded_server_waits_and_recovers_when_file_descriptors_run_out() {
    // 16 descriptors, and a limit on connections above what they allow.
    let (mut server, addr) = start_limited(
        16,
        bin!("tcp-threads"),
        &["127.0.0.1:0", "--max-conns", "100"],
    );
    let pid = server.pid();
    let silent = silent_clients(&addr, 12);
    wait_until("all 16 descriptors in use", || lasting_fds(pid) == 16);
    let failed = server.next_line();
    assert!(
        failed.starts_with("tcp-threads: accept: Too many open files"),
        "{failed}"
    );
    // A client that comes now waits in the queue. The server meanwhile
    // does not spin: over two seconds it sleeps.
    let waiting = thread::spawn({
        let addr = addr.clone();
        move || ask(&addr, "patient")
    });
    assert_sleeps_for_two_seconds(pid);
    // Descriptors come back, and the waiting client is served.
    drop(silent);
    assert_eq!(waiting.join().unwrap().unwrap(), "server got: [patient]\n");
    // One line for the whole run of failures, however long it lasted:
    // the next thirteen are the clients', and no failure. (A new shortage
    // would need ten seconds without a failure first.)
    for _ in 0..13 {
        let line = server.next_line();
        assert!(
            line.ends_with(" line") || line.ends_with(" lines"),
            "logged again: {line}"
        );
    }
}

#[test]
fn threaded_server_logs_a_shortage_of_descriptors_once_while_clients_come_and_go()
 {
    line_server::logs_a_shortage_once_while_clients_come_and_go(
        bin!("tcp-threads"),
        &["--max-conns", "1000"],
    );
}

#[test]
fn pool_logs_a_shortage_of_descriptors_once_while_clients_come_and_go() {
    line_server::logs_a_shortage_once_while_clients_come_and_go(
        bin!("tcp-pool"),
        &[],
    );
}

#[test]
fn threaded_server_logs_a_shortage_once_while_exactly_enough_clients_come_and_go()
 {
    line_server::logs_a_shortage_once_while_exactly_enough_clients_come_and_go(
        bin!("tcp-threads"),
        &["--max-conns", "1000"],
    );
}

#[test]
fn pool_logs_a_shortage_once_while_exactly_enough_clients_come_and_go() {
    line_server::logs_a_shortage_once_while_exactly_enough_clients_come_and_go(
        bin!("tcp-pool"),
        &["--workers", "100"],
    );
}

#[test]
fn threaded_server_keeps_its_default_limit_below_the_descriptors() {
    line_server::served_past_idle_clients_with_few_descriptors(bin!(
        "tcp-threads"
    ));
}

#[test]
fn threaded_server_leaves_room_in_its_default_limit_for_inherited_descriptors()
{
    line_server::served_past_idle_clients_with_inherited_descriptors(bin!(
        "tcp-threads"
    ));
}

#[test]
fn pool_serves_past_idle_clients_with_few_descriptors() {
    // The pool's limit, workers and queue, is not kept below the
    // descriptors: `accept` fails first, and the shedding makes room.
    line_server::served_past_idle_clients_with_few_descriptors(bin!(
        "tcp-pool"
    ));
}

#[test]
fn pool_serves_past_idle_clients_with_fewer_descriptors_than_workers() {
    // Twenty descriptors and 32 workers: every connection accepted goes
    // straight to a free worker, none waits in the queue, and the shedding
    // once never began. The new client waited in the backlog for the idle
    // ones' whole deadline (600 s here; the read timeout of `ask` ends the
    // test after 30).
    let (server, addr) = start_limited(
        20,
        bin!("tcp-pool"),
        &["127.0.0.1:0", "--timeout", "600"],
    );
    let pid = server.pid();
    let idle = silent_clients(&addr, 30);
    wait_until("the server to hold twelve idle clients", || {
        lasting_fds(pid) >= 3 + 1 + 12
    });
    // Not a synchronisation: the time a connection must have been idle.
    thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop(idle);
}

const BUSY: &str = r#"python3 -c '
import socket
quiet = [socket.create_connection(("127.0.0.1", 50008)) for _ in range(2)]
third = socket.create_connection(("127.0.0.1", 50008))
print("the third client got:", third.recv(100).decode().strip())
for q in quiet:
    q.shutdown(socket.SHUT_WR)
    q.recv(1)'"#;

#[test]
fn threaded_server_tells_a_client_over_the_limit_that_it_is_busy() {
    if !have("python3") {
        return;
    }
    let _port = default_port();
    let args = ["--max-conns", "2"];
    let (mut server, addr) = start_server(
        bin!("tcp-threads"),
        &unless_blessing(&args, "127.0.0.1:0"),
    );
    let terminal2 = python(BUSY, &addr);
    assert_eq!(terminal2, ["the third client got: error: server busy"]);
    // The two quiet clients, once they half-close; the refused one is
    // not logged.
    let mut terminal1 = vec![format!("Server listening on {addr}")];
    terminal1.push(
        server
            .expect(r"127\.0\.0\.1:\d+: answered 0 lines")
            .remove(0),
    );
    terminal1.push(
        server
            .expect(r"127\.0\.0\.1:\d+: answered 0 lines")
            .remove(0),
    );
    if blessing() {
        terminal1[0] = "Server listening on 127.0.0.1:50008".into();
    }
    assert_session_matches_book(
        "ch14-servers/14-02-server.out",
        &[(cargo_run("tcp-threads", &args), &terminal1)],
    );
    assert_session_matches_book(
        "ch14-servers/14-02-client.out",
        &[(BUSY.to_string(), &terminal2)],
    );
}

#[test]
fn threaded_server_serves_a_new_client_while_a_thousand_idle_ones_hold_every_place()
 {
    // The default limit, 1000 connections (no --max-conns), all taken by
    // idle clients; the one idle longest makes room for each new client.
    // Descriptors are no bound here: a soft limit of 1024, which the
    // server raises to the hard one, 4096. The request deadline is an
    // hour, so that only the making of room closes an idle client.
    let mut command = std::process::Command::new(bin!("tcp-threads"));
    command.args(["127.0.0.1:0", "--timeout", "3600"]);
    with_fd_limit(&mut command, 1024, 4096);
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let addr = server
        .expect(r"Server listening on (127\.0\.0\.1:\d+)")
        .remove(1);
    let (server, idle) =
        line_server::serves_new_clients_while_idle_ones_hold_every_place(
            server, &addr, 1000,
        );
    assert!(lasting_fds(server.pid()) <= 1000 + 10);
    drop(idle);
}

#[test]
fn pool_serves_a_new_client_while_a_thousand_idle_ones_wait() {
    // 32 workers hold idle clients and 968 more wait in the queue.
    let (server, addr) = start_server(bin!("tcp-pool"), &["127.0.0.1:0"]);
    let idle = idle_clients_held(server.pid(), &addr, 1000);
    let started = Instant::now();
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop(idle);
}

const MAKE_ROOM: &str = r#"python3 -c '
import socket, time
quiet = [socket.create_connection(("127.0.0.1", 50008)) for _ in range(2)]
time.sleep(1.5)
third = socket.create_connection(("127.0.0.1", 50008))
third.sendall(b"hello\n")
third.shutdown(socket.SHUT_WR)
print("the third client got:", third.recv(100).decode().strip())
print("the first quiet client got:", quiet[0].recv(100) or "the end")'"#;

#[test]
fn pool_serves_a_new_client_while_a_thousand_stalled_ones_wait() {
    // Not idle: each has sent one byte of a request, and no more. Without
    // a grace for stalled requests, 32 workers would wait for their
    // ten-second deadlines, 32 at a time: some five minutes.
    let (server, addr) = start_server(bin!("tcp-pool"), &["127.0.0.1:0"]);
    let before = lasting_fds(server.pid());
    let stalled: Vec<_> = (0..1000)
        .map(|_| {
            let mut sock = connect(&addr);
            sock.write_all(b"x").unwrap();
            sock
        })
        .collect();
    wait_until("the server to accept every stalled client", || {
        lasting_fds(server.pid()) >= before + 1000
    });
    // Not a synchronisation: the time a request must have stalled.
    thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop(stalled);
}

#[test]
fn pool_serves_a_new_client_behind_many_that_sent_a_line_and_went_silent() {
    // Each sends one whole line, then nothing (half of them one byte of a
    // next line, in the same segment), and takes no reply. In the queue
    // each is a client waiting for a worker, rightly spared; answered, each
    // held its worker for the second of grace, two workers at a time:
    // twenty of them kept a new client waiting ten seconds.
    let (server, addr) =
        start_server(bin!("tcp-pool"), &["127.0.0.1:0", "--workers", "2"]);
    let before = lasting_fds(server.pid());
    let silent: Vec<_> = (0..20)
        .map(|i| {
            let mut sock = connect(&addr);
            let sent: &[u8] = if i % 2 == 0 { b"x\n" } else { b"x\ny" };
            sock.write_all(sent).unwrap();
            sock
        })
        .collect();
    wait_until("the server to accept every silent client", || {
        lasting_fds(server.pid()) >= before + 20
    });
    let started = Instant::now();
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "served after {waited:?}");
    drop(silent);
}

#[test]
fn pool_serves_a_new_client_behind_many_that_flood_and_read_nothing() {
    // Each sends 20,000 requests at once (40 KB of "x\n") with a small
    // receive buffer, and takes no reply. In the queue each is a client
    // waiting for a worker with a whole request, rightly spared; taken,
    // each filled its buffers with replies and held its worker for the
    // second of grace, two workers at a time: twenty of them kept a new
    // client waiting ten seconds.
    let (server, addr) =
        start_server(bin!("tcp-pool"), &["127.0.0.1:0", "--workers", "2"]);
    let sockaddr: std::net::SocketAddr = addr.parse().unwrap();
    let flood = b"x\n".repeat(20_000);
    let flooders: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                None,
            )
            .unwrap();
            sock.set_recv_buffer_size(4096).unwrap();
            sock.connect(&sockaddr.into()).unwrap();
            let mut sock = std::net::TcpStream::from(sock);
            sock.set_write_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            // A client the pool has shed already fails here: no matter.
            let _ = sock.write_all(&flood);
            sock
        })
        .collect();
    // `accept` takes the connections in order: the new one is queued
    // behind every flooding one.
    let started = Instant::now();
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "served after {waited:?}");
    drop(flooders);
    drop(server);
}

#[test]
fn pool_keeps_a_queued_client_whose_whole_request_has_come() {
    // One worker, held by a client that stalls for a second; behind it in
    // the queue, a client that has sent its whole request and half-closed,
    // without a newline, and waits for its reply: it is not a stalled one.
    let (server, addr) =
        start_server(bin!("tcp-pool"), &["127.0.0.1:0", "--workers", "1"]);
    let mut staller = connect(&addr);
    staller.write_all(b"x").unwrap();
    let mut patient = connect(&addr);
    patient.write_all(b"whole").unwrap();
    patient.shutdown(Shutdown::Write).unwrap();
    let _third = connect(&addr);
    patient
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reply = String::new();
    patient.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server got: [whole]\n");
    drop((server, staller));
}

#[test]
fn threaded_server_closes_the_client_idle_longest_to_make_room() {
    if !have("python3") {
        return;
    }
    let _port = default_port();
    let args = ["--max-conns", "2"];
    let (mut server, addr) = start_server(
        bin!("tcp-threads"),
        &unless_blessing(&args, "127.0.0.1:0"),
    );
    let terminal2 = python(MAKE_ROOM, &addr);
    assert_eq!(
        terminal2,
        [
            "the third client got: server got: [hello]",
            "the first quiet client got: the end"
        ]
    );
    // The evicted client's line and the third's come in either order: two
    // threads race to write them.
    let mut terminal1 = vec![format!("Server listening on {addr}")];
    let mut counts = Vec::new();
    for _ in 0..3 {
        let line = server.expect(r"127\.0\.0\.1:\d+: answered (\d) lines?");
        counts.push(line[1].clone());
        terminal1.push(line[0].clone());
    }
    counts.sort();
    assert_eq!(counts, ["0", "0", "1"]);
    if blessing() {
        terminal1[0] = "Server listening on 127.0.0.1:50008".into();
    }
    assert_session_matches_book_masking(
        "ch14-servers/14-02-evict-server.out",
        &[(cargo_run("tcp-threads", &args), &terminal1)],
        &[(r"answered \d lines?", "answered <n> lines")],
    );
    assert_session_matches_book(
        "ch14-servers/14-02-evict-client.out",
        &[(MAKE_ROOM.to_string(), &terminal2)],
    );
}

#[test]
fn threaded_server_evicts_a_request_stalled_past_the_grace() {
    line_server::a_stalled_request_gives_up_its_place(bin!("tcp-threads"));
}

#[test]
fn threaded_server_makes_room_with_an_idle_client_before_a_request_begun() {
    line_server::an_idle_client_makes_room_before_a_request_that_has_begun(
        bin!("tcp-threads"),
    );
}

#[test]
fn threaded_server_keeps_a_client_that_asks_more_often_than_the_grace() {
    line_server::keeps_a_client_that_asks_more_often_than_the_grace(
        bin!("tcp-threads"),
        &["127.0.0.1:0", "--max-conns", "1"],
    );
}

#[test]
fn threaded_server_stops_listening_once_its_count_is_reached() {
    line_server::stops_listening_once_its_count_is_reached(bin!("tcp-threads"));
}

#[test]
fn pool_stops_listening_once_its_count_is_reached() {
    line_server::stops_listening_once_its_count_is_reached(bin!("tcp-pool"));
}

#[test]
fn threaded_server_count_leaves_out_a_client_that_reset_in_the_queue() {
    line_server::counts_no_client_that_reset_in_the_queue(bin!("tcp-threads"));
}

#[test]
fn pool_count_leaves_out_a_client_that_reset_in_the_queue() {
    line_server::counts_no_client_that_reset_in_the_queue(bin!("tcp-pool"));
}

#[test]
fn threaded_server_logs_a_line_too_long_from_a_client_that_leaves_unread() {
    line_server::logs_a_line_too_long_from_a_client_that_leaves_unread(
        bin!("tcp-threads"),
        &["127.0.0.1:0", "--count", "1"],
    );
}

#[test]
fn pool_logs_a_line_too_long_from_a_client_that_leaves_unread() {
    line_server::logs_a_line_too_long_from_a_client_that_leaves_unread(
        bin!("tcp-pool"),
        &["127.0.0.1:0", "--count", "1"],
    );
}

#[test]
fn threaded_server_logs_a_line_too_long_from_a_client_closed_to_make_room() {
    line_server::logs_a_line_too_long_from_a_client_closed_to_make_room(
        bin!("tcp-threads"),
        &["127.0.0.1:0", "--max-conns", "1", "--count", "2"],
    );
}

#[test]
fn pool_logs_a_line_too_long_from_a_client_closed_to_make_room() {
    line_server::logs_a_line_too_long_from_a_client_closed_to_make_room(
        bin!("tcp-pool"),
        &["127.0.0.1:0", "--workers", "1", "--count", "2"],
    );
}

#[test]
fn pool_at_its_count_still_closes_a_client_that_went_idle_while_others_wait() {
    // One worker and a count of three: the third client closes the queue,
    // and no connection can go back into it. The first one is answered
    // once the other two wait, then says nothing. It must be shed after
    // its second of grace, as before the count, not hold the worker for
    // its whole deadline (thirty seconds here) while the others wait.
    let args = ["127.0.0.1:0", "--workers", "1", "--count", "3"];
    let (server, addr) = start_server(
        bin!("tcp-pool"),
        &[&args[..], &["--timeout", "30"]].concat(),
    );
    let mut first = connect(&addr);
    let mut waiting = silent_clients(&addr, 2);
    // `first` is shed once it has been idle a second while others wait,
    // so its request must come sooner: not `listening_on`, which once
    // read /proc/net/tcp and took up to 0.8 s while other tests held
    // thousands of sockets. A connection refused says the listener is closed; one made
    // before that is a fourth client, past the count, never accepted.
    wait_until("the server to close its listening socket", || {
        std::net::TcpStream::connect(&addr).is_err()
    });
    first.write_all(b"first\n").unwrap();
    let mut reply = [0; 20];
    first.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"server got: [first]\n");
    let started = Instant::now();
    waiting[0].write_all(b"next\n").unwrap();
    waiting[0].shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    waiting[0].read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server got: [next]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop((first, waiting, server));
}

#[test]
fn threaded_server_gives_each_of_many_clients_its_own_reply() {
    let (server, addr) =
        start_server(bin!("tcp-threads"), &["127.0.0.1:0", "--count", "200"]);
    many_at_once(&addr, 200);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 201);
}

// ---------------------------------------------------------------------------
// Listing 14-3: a pool

#[test]
fn pool_gives_each_of_many_clients_its_own_reply() {
    let (server, addr) =
        start_server(bin!("tcp-pool"), &["127.0.0.1:0", "--count", "200"]);
    many_at_once(&addr, 200);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 201);
}

// Everything a connection goes through is Listing 14-2's: the same
// promises, through the pool's own reading and writing.

#[test]
fn pool_answers_lines_cut_anywhere_and_a_last_one_without_newline() {
    line_server::answers_lines_cut_anywhere_and_a_last_one_without_newline(
        bin!("tcp-pool"),
    );
}

#[test]
fn pool_answers_lines_of_the_longest_length() {
    line_server::answers_lines_of_the_longest_length(bin!("tcp-pool"));
}

#[test]
fn threaded_server_answers_lines_of_the_longest_length() {
    line_server::answers_lines_of_the_longest_length(bin!("tcp-threads"));
}

#[test]
fn pool_ends_at_the_next_connection_once_nobody_reads_its_log() {
    line_server::ends_at_the_next_connection_once_nobody_reads_its_log(bin!(
        "tcp-pool"
    ));
}

#[test]
fn threaded_server_ends_at_the_next_connection_once_nobody_reads_its_log() {
    line_server::ends_at_the_next_connection_once_nobody_reads_its_log(bin!(
        "tcp-threads"
    ));
}

#[test]
fn pool_ends_a_connection_before_its_log_line_can_wait() {
    line_server::ends_a_connection_before_its_log_line_can_wait(bin!(
        "tcp-pool"
    ));
}

#[test]
fn threaded_server_ends_a_connection_before_its_log_line_can_wait() {
    line_server::ends_a_connection_before_its_log_line_can_wait(bin!(
        "tcp-threads"
    ));
}

#[test]
fn threaded_server_answers_requests_sent_together_in_one_write() {
    line_server::answers_requests_sent_together_in_one_write(bin!(
        "tcp-threads"
    ));
}

#[test]
fn pool_answers_requests_sent_together_in_one_write() {
    line_server::answers_requests_sent_together_in_one_write(bin!("tcp-pool"));
}

#[test]
fn threaded_server_accepts_on_while_its_log_is_stuck_after_resets() {
    line_server::accepts_on_while_its_log_is_stuck_after_resets_in_the_queue(
        bin!("tcp-threads"),
    );
}

#[test]
fn pool_accepts_on_while_its_log_is_stuck_after_resets() {
    line_server::accepts_on_while_its_log_is_stuck_after_resets_in_the_queue(
        bin!("tcp-pool"),
    );
}

#[test]
fn threaded_server_keeps_the_places_of_threads_that_wait_for_the_log() {
    // The log is a full pipe that nobody reads; `--max-conns 2`. A client
    // is answered, and its thread waits to log it; a second is silent.
    // After the grace, a new client has the silent one closed, whose
    // thread then waits to log too, and is told the server is busy: a
    // thread keeps its place until it ends, so the limit still bounds
    // threads and descriptors. The table gave a waiting thread's place
    // away, and each new client, a second apart, started one more thread.
    let args = ["127.0.0.1:0", "--max-conns", "2"];
    let (server, addr, _log) =
        line_server::start_with_full_log(bin!("tcp-threads"), &args);
    let pid = server.pid();
    // One thread waits in `write`, any other for the lock on stdout; the
    // thread that writes the accepting thread's lines waits for one, in
    // `futex` too.
    let waiting_for_the_log = || {
        (threads_blocked_in(pid, nix::libc::SYS_write)
            + threads_blocked_in(pid, nix::libc::SYS_futex))
        .saturating_sub(1)
    };
    assert_eq!(ask(&addr, "one").unwrap(), "server got: [one]\n");
    let mut silent = connect(&addr);
    wait_until("a thread to wait for the log", || {
        waiting_for_the_log() == 1
    });
    thread::sleep(Duration::from_millis(1100)); // The grace is the test.
    assert_eq!(ask(&addr, "two").unwrap(), "error: server busy\n");
    assert_eq!(silent.read_to_end(&mut Vec::new()).unwrap(), 0, "closed");
    wait_until("two threads to wait for the log", || {
        waiting_for_the_log() == 2
    });
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(ask(&addr, "three").unwrap(), "error: server busy\n");
    // The main thread, the accepting thread's log, and the two that wait;
    // 0, 1, 2, the listening socket and their two connections.
    assert_eq!(threads_of(pid), 4);
    assert_eq!(lasting_fds(pid), 6);
    // The chapter gives the same count.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../src/ch14-servers.md");
    let text = std::fs::read_to_string(path).unwrap();
    let chapter = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        chapter.contains(
            "refused, a second apart, and four threads: the main thread,"
        ),
        "chapter 14 does not count the four threads"
    );
}

#[test]
fn pool_serves_nobody_new_once_its_workers_wait_for_the_log() {
    // The log is a full pipe that nobody reads; one worker, a queue of
    // one. The first client is answered, and the worker then waits to log
    // it, for as long as the log does not move. The next client waits in
    // the queue, its request unanswered, and the one after finds the
    // queue full. The threads stay the same: the main thread, the
    // worker, the one that sheds idle connections, and the one that
    // writes the accepting thread's lines.
    let args = ["127.0.0.1:0", "--workers", "1", "--queue", "1"];
    let (server, addr, _log) =
        line_server::start_with_full_log(bin!("tcp-pool"), &args);
    let pid = server.pid();
    assert_eq!(ask(&addr, "one").unwrap(), "server got: [one]\n");
    wait_until("the worker to wait for the log", || {
        threads_blocked_in(pid, nix::libc::SYS_write) == 1
    });
    let mut queued = connect(&addr);
    queued.write_all(b"two\n").unwrap();
    queued.shutdown(Shutdown::Write).unwrap();
    assert_eq!(ask(&addr, "three").unwrap(), "error: server busy\n");
    queued.set_nonblocking(true).unwrap();
    let err = queued.read(&mut [0; 64]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
    assert_eq!(threads_of(pid), 4);
}

#[test]
fn pool_writes_on_through_a_stop_and_continue() {
    line_server::writes_on_through_a_stop_and_continue(bin!("tcp-pool"));
}

#[test]
fn threaded_server_writes_on_through_a_stop_and_continue() {
    line_server::writes_on_through_a_stop_and_continue(bin!("tcp-threads"));
}

#[test]
fn pool_serves_others_while_clients_stay_silent() {
    // Fewer silent clients than workers: nobody waits, nobody is shed.
    drop(line_server::serves_others_while_clients_stay_silent(
        bin!("tcp-pool"),
        8,
    ));
}

#[test]
fn pool_outlives_clients_that_reset() {
    line_server::outlives_clients_that_reset(bin!("tcp-pool"));
}

#[test]
fn pool_refuses_a_long_line_and_keeps_little_memory() {
    line_server::refuses_a_long_line_and_keeps_little_memory(bin!("tcp-pool"));
}

#[test]
fn pool_writes_many_replies_as_the_client_reads_them() {
    line_server::writes_many_replies_as_the_client_reads_them(bin!("tcp-pool"));
}

#[test]
fn pool_drops_a_client_that_does_not_read_its_replies() {
    line_server::drops_a_client_that_does_not_read_its_replies(bin!(
        "tcp-pool"
    ));
}

#[test]
fn pool_drops_a_client_that_trickles_its_request() {
    line_server::drops_a_client_that_trickles_its_request(bin!("tcp-pool"));
}

#[test]
fn pool_refuses_with_the_end_of_the_stream_having_read_what_was_sent() {
    line_server::refuses_with_the_end_of_the_stream_having_read_what_was_sent(
        bin!("tcp-pool"),
        &["127.0.0.1:0", "--workers", "1", "--queue", "1"],
    );
}

#[test]
fn threaded_server_refuses_with_the_end_of_the_stream_having_read_what_was_sent()
 {
    line_server::refuses_with_the_end_of_the_stream_having_read_what_was_sent(
        bin!("tcp-threads"),
        &["127.0.0.1:0", "--max-conns", "2"],
    );
}

#[test]
fn pool_closes_a_client_idle_since_its_reply_while_others_wait() {
    // One worker, held by a silent client; behind it, two clients whose
    // whole requests have come. The server is stopped for over a second,
    // so that when it goes on, all three are a second old at once: the
    // silent one is shed and the two are waiting, and the pool's thread
    // has nothing left to time. The worker answers the first of the two,
    // which then says nothing more. Idle from its reply on, it must be
    // shed a second later, so the thread must be told; the last client is
    // served then, not after the idle one's ten-second request deadline.
    let (server, silent, mut kept) =
        pool_serves_the_third_once_the_first_is_shed(b"kept\n", "last");
    // The idle one had its reply, and then the end of the stream.
    let mut reply = String::new();
    kept.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server got: [kept]\n");
    drop((silent, server));
}

/// `tcp-pool --workers 1`, its worker held by a silent client; behind it
/// a second client that has sent `second` and keeps its connection open,
/// and a third that sends the request `third` and half-closes. All three
/// a second old at once, the silent one is shed, and the third is served
/// within five seconds, not after the second one's ten-second deadline.
/// Returns the server, the silent client and the second.
#[track_caller]
fn pool_serves_the_third_once_the_first_is_shed(
    second: &[u8],
    third: &str,
) -> (Listing, TcpStream, TcpStream) {
    let (server, addr) =
        start_server(bin!("tcp-pool"), &["127.0.0.1:0", "--workers", "1"]);
    let pid = server.pid();
    let before = lasting_fds(pid);
    let silent = connect(&addr);
    let mut waiting = connect(&addr);
    waiting.write_all(second).unwrap();
    let mut last = connect(&addr);
    last.write_all(format!("{third}\n").as_bytes()).unwrap();
    last.shutdown(Shutdown::Write).unwrap();
    wait_until("the server to accept all three", || {
        lasting_fds(pid) >= before + 3
    });
    age_every_connection_a_second(&server);
    let started = Instant::now();
    let mut reply = String::new();
    last.read_to_string(&mut reply).unwrap();
    let waited = started.elapsed();
    assert_eq!(reply, format!("server got: [{third}]\n"));
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    (server, silent, waiting)
}

#[test]
fn pool_sheds_a_client_drained_after_a_too_long_line_while_others_wait() {
    // One worker, held by a silent client; behind it, a client that has
    // sent more than a line without a newline and keeps its connection
    // open, and a polite one. The server is stopped for over a second, so
    // that when it goes on all three are a second old at once: the silent
    // one is shed, and the other two have whole requests (a line too long
    // is whole: it gets the error), so the pool's thread has nothing left
    // to time. The worker takes the long one, sends the error and drains
    // it. Busy with a request from then on, it must be shed a second
    // later, so the thread must be told; the polite client is served
    // then, not after the long one's ten-second drain.
    let (server, silent, mut long) =
        pool_serves_the_third_once_the_first_is_shed(&[b'x'; 2000], "polite");
    // The long one had its error, and then the end of the stream.
    let mut reply = Vec::new();
    long.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"error: line longer than 1024 bytes\n");
    drop((silent, server));
}

#[test]
fn pool_keeps_a_queued_client_whose_line_is_already_too_long() {
    // One worker, held by a client that stalls for a second. Behind it,
    // a client that has sent one byte more than a line may have, with no
    // newline: its request is whole (too long, and it will get the error),
    // so it is a client waiting for a worker, not one that stalls. A
    // client that has sent a line's worth and no newline is stalling: it
    // is shed, and sees the end of the stream with no reply.
    let (server, addr) =
        start_server(bin!("tcp-pool"), &["127.0.0.1:0", "--workers", "1"]);
    let mut staller = connect(&addr);
    staller.write_all(b"x").unwrap();
    let mut long = connect(&addr);
    long.write_all(&[b'x'; 1025]).unwrap();
    let started = Instant::now();
    let mut short = connect(&addr);
    short.write_all(&[b'x'; 1024]).unwrap();
    let mut reply = Vec::new();
    short.read_to_end(&mut reply).unwrap();
    let waited = started.elapsed();
    assert_eq!(reply.escape_ascii().to_string(), "", "a stalled client");
    // Shed after a second, not served once its request deadline is over.
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    let mut reply = [0; 35];
    long.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"error: line longer than 1024 bytes\n");
    drop((server, staller));
}

/// Stops the server for over a second, so that every connection it holds
/// is a second old at once when it goes on: what it sheds, it sheds
/// together.
fn age_every_connection_a_second(server: &Listing) {
    use nix::sys::signal::Signal;
    let pid = server.pid();
    server.signal(Signal::SIGSTOP);
    wait_until("the server to stop", || {
        crate::support::all_threads_stopped(pid)
    });
    // Not a synchronisation: the age every connection must reach.
    thread::sleep(Duration::from_millis(1100));
    server.signal(Signal::SIGCONT);
}

/// `tcp-pool --workers 1`, its worker reading from a first client, and a
/// silent second client in its queue: the server, its pid, the first
/// client, the silent one, and the server's descriptor for the silent
/// one's connection.
#[track_caller]
fn one_worker_serving_one_client()
-> (Listing, nix::unistd::Pid, TcpStream, TcpStream, u32) {
    let (server, addr) =
        start_server(bin!("tcp-pool"), &["127.0.0.1:0", "--workers", "1"]);
    let pid = server.pid();
    let before = lasting_fds(pid);
    let long = connect(&addr);
    wait_until("the worker to take the client", || {
        lasting_fds(pid) > before
            && threads_blocked_in(pid, nix::libc::SYS_recvfrom) == 1
    });
    let silent = connect(&addr);
    // Accepted is not yet queued: the accepting thread counts the
    // connection among those waiting for a worker after `accept` has
    // returned it, and until then a worker that has answered a request
    // sees nobody waiting and reads on. Blocked in `accept` again (looked
    // at after the descriptor is seen: the same call sleeps no more once
    // it has one), it has queued the silent client.
    wait_until("the server to queue the silent client", || {
        lasting_fds(pid) > before + 1
            && threads_blocked_in(pid, nix::libc::SYS_accept4) == 1
    });
    let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let fd = server_fd_of(pid, port, &silent);
    (server, pid, long, silent, fd)
}

/// The descriptor `pid` has for the server's end of `client`'s
/// connection to `port`: the socket whose inode the kernel's socket
/// diagnostics give for it.
#[track_caller]
fn server_fd_of(pid: nix::unistd::Pid, port: u16, client: &TcpStream) -> u32 {
    let client = client.local_addr().unwrap().port();
    let (.., inode) = server_end(port, client).expect("the server's end");
    let socket = format!("socket:[{inode}]");
    fds_of(pid)
        .into_iter()
        .find_map(|(fd, what)| (what == socket).then_some(fd))
        .expect("the server's descriptor for the client")
}

/// How many threads of `pid` are blocked in the system call numbered
/// `number` on descriptor `fd`: its first argument, the second field of
/// /proc/<pid>/task/<tid>/syscall (in hex).
fn threads_blocked_on(pid: nix::unistd::Pid, number: i64, fd: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let (number, fd) = (number.to_string(), format!("{fd:#x}"));
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("syscall")).is_ok_and(
                |call| {
                    let mut fields = call.split(' ');
                    fields.next() == Some(&number) && fields.next() == Some(&fd)
                },
            )
        })
        .count()
}

/// Ends `client`'s requests: its reply is the error for a line too long
/// (it sent one), then the end of the stream.
#[track_caller]
fn assert_gets_the_error_for_a_line_too_long(client: &mut TcpStream) {
    let mut error = Vec::new();
    client.shutdown(Shutdown::Write).unwrap();
    client.read_to_end(&mut error).unwrap();
    assert_eq!(
        error.escape_ascii().to_string(),
        "error: line longer than 1024 bytes\\n"
    );
}

#[test]
fn pool_answers_a_line_too_long_that_came_with_a_request_rather_than_queue_it()
{
    // One worker, serving a client; a silent one waits in the queue. The
    // client sends a line and, in the same segment, more than a line may
    // have without a newline: once the line is answered, the rest is a
    // whole request too (too long: it gets the error), and the worker
    // answers it there and then. Put back into the queue, it would wait
    // behind the silent client, which holds the worker until it has been
    // idle a second and is shed, and only then get the error. So the
    // silent client is still open when the error has come; unless the
    // machine paused the test for a second, and the server rightly shed
    // it meanwhile: then the test tries again, five times at most.
    let answered_first = (0..5).any(|_| {
        let (server, _, mut long, silent, _) = one_worker_serving_one_client();
        let started = Instant::now();
        let mut sent = b"a\n".to_vec();
        sent.extend_from_slice(&[b'x'; 2000]);
        long.write_all(&sent).unwrap();
        let mut reply = [0; 16];
        long.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"server got: [a]\n");
        assert_gets_the_error_for_a_line_too_long(&mut long);
        let shed = line_server::closed_by_the_server(&[silent]) == 1;
        let waited = started.elapsed();
        drop(server);
        if shed {
            eprintln!("the silent client shed first, after {waited:?}");
        }
        !shed
    });
    assert!(
        answered_first,
        "five times in a row, the silent client was shed before the line \
         too long was answered: the connection went back into the queue"
    );
}

#[test]
fn pool_counts_what_a_queued_connection_carries_toward_a_line_too_long() {
    // One worker, serving a client; a silent one waits in the queue. The
    // client sends a line and 600 bytes of the next, which goes back into
    // the queue with them, and then 600 bytes more: a line too long,
    // though its socket holds only 600 of it. The server is stopped for
    // over a second, so that the sweep finds the queued connection a
    // second old while the silent one holds the worker. The queue must
    // count the bytes it carries, or take it for a stalled client and
    // shed it: its client would never see the error.
    let (server, pid, mut long, silent, silent_fd) =
        one_worker_serving_one_client();
    let mut sent = b"a\n".to_vec();
    sent.extend_from_slice(&[b'x'; 600]);
    long.write_all(&sent).unwrap();
    let mut reply = [0; 16];
    long.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"server got: [a]\n");
    // Put back, the long one waits in the queue with its 600 bytes, and
    // the worker reads from the silent one's socket; not from the long
    // one's, as it would if it had kept the client.
    wait_until("the worker to serve the silent client", || {
        threads_blocked_on(pid, nix::libc::SYS_recvfrom, silent_fd) == 1
    });
    long.write_all(&[b'x'; 600]).unwrap();
    age_every_connection_a_second(&server);
    assert_gets_the_error_for_a_line_too_long(&mut long);
    drop((silent, server));
}

#[test]
fn pool_waits_without_spinning_and_sheds_only_for_a_client_in_the_backlog() {
    // 16 descriptors: twelve silent clients, each with a worker of its
    // own, fill them, and `accept` fails while nobody waits. The pool backs
    // off: over two seconds it uses almost no CPU, and, with nobody in the
    // backlog, it leaves the idle clients alone. A client that comes then
    // waits in the backlog, and the idle ones are shed for it.
    let (mut server, addr) = start_limited(
        16,
        bin!("tcp-pool"),
        &["127.0.0.1:0", "--timeout", "600"],
    );
    let pid = server.pid();
    let silent = silent_clients(&addr, 12);
    wait_until("all 16 descriptors in use", || lasting_fds(pid) == 16);
    let failed = server.next_line();
    assert!(
        failed.starts_with("tcp-pool: accept: Too many open files"),
        "{failed}"
    );
    assert_sleeps_for_two_seconds(pid);
    assert_eq!(
        line_server::closed_by_the_server(&silent),
        0,
        "idle clients shed with nobody waiting"
    );
    let started = Instant::now();
    assert_eq!(ask(&addr, "patient").unwrap(), "server got: [patient]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop(silent);
}

#[test]
fn pool_closes_idle_clients_once_a_second_old_while_others_wait() {
    // Two workers, two silent clients: the third waits in the queue until
    // the silent ones have been idle for a second, and no longer; with a
    // timeout of ten, it used to wait the whole ten.
    let (server, addr) =
        start_server(bin!("tcp-pool"), &["127.0.0.1:0", "--workers", "2"]);
    let started = Instant::now();
    let mut silent = silent_clients(&addr, 2);
    assert_eq!(ask(&addr, "third").unwrap(), "server got: [third]\n");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "served after {waited:?}"
    );
    assert!(waited < Duration::from_secs(9), "served after {waited:?}");
    // Each silent client finds the end of the stream.
    for sock in &mut silent {
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut rest = Vec::new();
        // `read_to_end` retries a read that a signal interrupted.
        assert_eq!(sock.read_to_end(&mut rest).unwrap(), 0);
    }
    drop(server);
}

/// Two clients, each holding a worker or a thread of the server at
/// `addr`: each sends a flood of empty lines, hundreds of thousands of
/// requests, until the server stops reading because its write of a reply
/// waits for room, and then reads nothing. (A client that takes a
/// mebibyte every few seconds keeps it waiting the same way, each reply
/// within its own deadline, for as long as it likes; one that reads
/// nothing keeps it until the reply's deadline, which the servers are
/// given long.) Then `ask` for a reply of our own, and how long it took.
fn asked_behind_clients_that_do_not_take_their_replies(
    addr: &str,
    until_stopped: impl FnOnce(),
) -> (String, Duration) {
    let blocked: Vec<_> = (0..2)
        .map(|_| {
            let mut sock = connect(addr);
            sock.set_write_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let flood = vec![b'\n'; 64 * 1024];
            while sock.write_all(&flood).is_ok() {}
            sock
        })
        .collect();
    // A client's write gives up after 300 ms without progress, which a
    // loaded machine can take although the server has not stopped.
    until_stopped();
    // Not a synchronisation: the time a reply must have waited.
    thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    let reply = ask(addr, "third");
    let waited = started.elapsed();
    drop(blocked);
    (reply.unwrap(), waited)
}

/// `bin` with `args`, whose two workers or connection threads each wait
/// (`stopped`, what the wait is for) to send a reply to a client that
/// does not read: a third client is answered within five seconds.
#[track_caller]
fn assert_served_behind_two_that_do_not_take_their_replies(
    bin: &str,
    args: &[&str],
    stopped: &str,
) {
    let (server, addr) = start_server(bin, args);
    let until_stopped = || {
        wait_until(stopped, || threads_waiting_to_send(server.pid()) == 2);
    };
    let (reply, waited) = asked_behind_clients_that_do_not_take_their_replies(
        &addr,
        until_stopped,
    );
    assert_eq!(reply, "server got: [third]\n");
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop(server);
}

#[test]
fn pool_closes_clients_that_do_not_take_their_replies_while_others_wait() {
    // Two workers, each waiting to write a reply to a client that does not
    // read. A worker that has waited a second for room is stalled, as one
    // waiting for the rest of a request is; without that, the third
    // client waited for the reply's deadline, twenty seconds here, and
    // behind clients that read slowly, for ever.
    let args = ["127.0.0.1:0", "--workers", "2", "--timeout", "20"];
    // Each worker has stopped once it waits in a send. Until then it is
    // still answering the flood it has read, busy and not stalled, which
    // on a loaded machine took long enough to fail the bound below.
    assert_served_behind_two_that_do_not_take_their_replies(
        bin!("tcp-pool"),
        &args,
        "both workers to wait for room to send",
    );
}

#[test]
fn threaded_server_evicts_a_client_that_does_not_take_its_replies() {
    // Both places of `--max-conns 2` held by threads that wait to write a
    // reply: each has been busy with its request for over a second, and
    // the older gives up its place.
    let args = ["127.0.0.1:0", "--max-conns", "2", "--timeout", "20"];
    // Each connection's thread has stopped once it waits in a send.
    assert_served_behind_two_that_do_not_take_their_replies(
        bin!("tcp-threads"),
        &args,
        "both connection threads to wait for room to send",
    );
}

#[test]
fn pool_tells_a_client_that_finds_the_queue_full_that_it_is_busy() {
    // One client is being served: it has had a reply, so the worker has
    // it. The next waits in the queue. Each has begun a request, so that
    // neither is idle, and the pool closes neither unless it stalls for a
    // second: a machine that pauses the test that long has the third
    // served, and the test tries again.
    line_server::unless_the_machine_paused(|| {
        let (server, addr) = start_server(
            bin!("tcp-pool"),
            &["127.0.0.1:0", "--workers", "1", "--queue", "1"],
        );
        let mut served = connect(&addr);
        let since = Instant::now();
        served.write_all(b"first\n").unwrap();
        served.read_exact(&mut [0; 20]).unwrap();
        served.write_all(b"sec").unwrap();
        let mut queued = connect(&addr);
        queued.write_all(b"wai").unwrap();
        // The accepting thread takes connections in order: the third
        // finds the queue full.
        let reply = ask(&addr, "third").unwrap();
        drop((server, served, queued));
        line_server::refused_while_held(&reply, since).then_some(())
    });
}

#[test]
fn pool_does_not_log_the_connections_it_shed_as_errors_of_their_clients() {
    use std::io::BufRead;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // One worker, kept by a client that sends a request every 100 ms and
    // so is never idle for a second. Behind it, ten clients wait in the
    // queue, idle, or stalled after one byte of a request; after a second
    // the pool sheds them, and each closes as soon as it sees the end of
    // the stream, as an attacker that reconnects would. When the worker
    // takes them, they are over on both sides: `peer_addr` fails with
    // ENOTCONN, and the pool used to log a client's error for each
    // connection it had shed itself. A stalled one's byte, read after
    // the pool's own shutdown, made a reply whose write failed: logged as
    // the client's "Broken pipe", until the worker learned it was shed.
    let (server, addr) = start_server(
        bin!("tcp-pool"),
        &["127.0.0.1:0", "--workers", "1", "--count", "11"],
    );
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut chatty = std::io::BufReader::new(connect(&addr));
    chatty.get_mut().write_all(b"first\n").unwrap();
    let mut reply = String::new();
    chatty.read_line(&mut reply).unwrap();
    assert_eq!(reply, "server got: [first]\n");
    let chatter = thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100)); // The pace.
                chatty.get_mut().write_all(b"again\n").unwrap();
                reply.clear();
                chatty.read_line(&mut reply).unwrap();
                assert_eq!(reply, "server got: [again]\n");
            }
            chatty.get_mut().shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            chatty.read_to_end(&mut rest).unwrap();
        }
    });
    let mut shed = silent_clients(&addr, 10);
    let ports: Vec<u16> = shed
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    for sock in shed.iter_mut().skip(1).step_by(2) {
        sock.write_all(b"x").unwrap();
    }
    for mut sock in shed {
        let mut rest = Vec::new();
        // `read_to_end` retries a read that a signal interrupted.
        assert_eq!(sock.read_to_end(&mut rest).unwrap(), 0);
    }
    // Each shed connection has the client's FIN too: the server's end
    // waits in TIME_WAIT (state 06).
    wait_until("ten shed connections over on both sides", || {
        ports.iter().all(|&client| {
            server_end(port, client).is_some_and(|(state, ..)| state == "06")
        })
    });
    stop.store(true, Ordering::Relaxed);
    chatter.join().unwrap();
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stderr, "", "the pool logged its own shedding");
    let answered = out.stdout.iter().filter(|l| l.contains(": answered "));
    assert_eq!(answered.count(), 11, "{:#?}", out.stdout);
}

#[test]
fn pool_after_a_refusal_leaves_alone_an_idle_client_that_nobody_waits_for() {
    // A refused client once counted for ever among those waiting for a
    // worker: from then on the pool closed any connection idle for a
    // second, though nobody waited.
    // The first, answered, is idle: once the queued one waits, the pool
    // closes it after a second. A machine that pauses the test that long
    // has the third served, and the test tries again.
    let refused = line_server::unless_the_machine_paused(|| {
        let (server, addr) = start_server(
            bin!("tcp-pool"),
            &["127.0.0.1:0", "--workers", "1", "--queue", "1"],
        );
        let mut served = connect(&addr);
        let since = Instant::now();
        served.write_all(b"first\n").unwrap();
        served.read_exact(&mut [0; 20]).unwrap();
        let mut queued = connect(&addr);
        queued.write_all(b"second\n").unwrap();
        let reply = ask(&addr, "third").unwrap();
        line_server::refused_while_held(&reply, since)
            .then_some((server, addr, served, queued))
    });
    let (server, addr, served, mut queued) = refused;
    // The first two end; the one worker is free again.
    drop(served);
    queued.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    queued.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "server got: [second]\n");
    // A client that pauses between two lines for longer than the grace
    // of a second: nobody waits, so it keeps its connection.
    let mut slow = connect(&addr);
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"one\n").unwrap();
    let mut reply = [0; 18];
    slow.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"server got: [one]\n");
    thread::sleep(Duration::from_millis(2500)); // The pause is the test.
    let _ = slow.write_all(b"two\n");
    let _ = slow.shutdown(Shutdown::Write);
    let mut rest = String::new();
    let read = slow.read_to_string(&mut rest).map(|_| rest);
    assert_eq!(
        read.as_deref().ok(),
        Some("server got: [two]\n"),
        "the pool closed a client that nobody waited for"
    );
    drop(server);
}

#[test]
fn server_listings_reject_bad_arguments_in_one_line() {
    for bin in [bin!("tcp-threads"), bin!("tcp-pool")] {
        assert_rejects(
            bin,
            &["--timeout", "0"],
            "--timeout must be at least 1",
        );
        assert_rejects(
            bin,
            &["--timeout", "99999999999999999999"],
            "--timeout",
        );
        assert_rejects(bin, &["--timeout", "100000"], "at most 86400");
        assert_rejects(
            bin,
            &["--backlog", "0"],
            "--backlog must be at least 1",
        );
        assert_rejects(bin, &["--backlog", "x"], "--backlog");
        assert_rejects(bin, &["127.0.0.1:99999"], "bad address");
        assert_rejects(
            bin,
            &["192.0.2.1:50008"],
            "cannot listen on 192.0.2.1:50008",
        );
    }
    assert_rejects(bin!("tcp-threads"), &["--max-conns", "0"], "at least 1");
    assert_rejects(bin!("tcp-pool"), &["--workers", "0"], "at least 1");
    assert_rejects(bin!("tcp-pool"), &["--queue", "-1"], "--queue");
    // Made in full at the start: a number too large is refused, not a
    // panic (a channel of that many slots, or that many threads).
    let pool = bin!("tcp-pool");
    let huge = "18446744073709551615";
    assert_rejects(pool, &["--queue", huge], "--queue is at most 100000");
    assert_rejects(pool, &["--workers", huge], "--workers is at most 10000");
    assert_rejects(bin!("tcp-naive"), &["--count", "x"], "--count");
}

/// Allowed its main thread only (`ulimit -u 1`), the naive server is
/// refused the thread of its first client, and ends in one line.
#[test]
fn naive_server_ends_in_one_line_when_a_thread_is_refused() {
    let mut plain =
        std::process::Command::new(crate::support::bin_path("tcp-naive"));
    plain.arg("127.0.0.1:0");
    let Some((mut command, _dir)) =
        crate::support::with_thread_limit(&plain, 1)
    else {
        return;
    };
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let addr = server.expect(r"Server listening on (\S+)")[1].clone();
    let _client = std::net::TcpStream::connect(addr).expect("connect");
    let out = server.finish();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().collect::<Vec<_>>(),
        [
            "tcp-naive: cannot start a thread: Resource temporarily unavailable \
          (os error 11)"
        ],
    );
}

/// Refused a client's thread (`ulimit -u 2`: its main thread and the one
/// that writes the accepting thread's log lines), the threaded server tells that client it is busy, as it tells one over its
/// limit, and does not count it: with `--count 1` it still takes the next.
/// (It counted the client first, then dropped it unanswered: the first
/// client read the end of the stream, the second was refused.)
#[test]
fn threaded_server_refuses_a_client_whose_thread_is_refused() {
    let mut plain =
        std::process::Command::new(crate::support::bin_path("tcp-threads"));
    plain.args(["127.0.0.1:0", "--count", "1"]);
    let Some((mut command, _dir)) =
        crate::support::with_thread_limit(&plain, 2)
    else {
        return;
    };
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let addr = server.expect(r"Server listening on (\S+)")[1].clone();
    for client in ["first", "second"] {
        let mut sock = std::net::TcpStream::connect(&addr)
            .unwrap_or_else(|err| panic!("{client}: {err}"));
        sock.set_read_timeout(Some(crate::support::PATIENCE))
            .unwrap();
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut sock, &mut reply).unwrap();
        assert_eq!(reply, "error: server busy\n", "{client}");
    }
}

/// Allowed its main thread only, the pool is refused its first worker. It
/// ends in one line that says what it could not start, and before it says
/// that it listens: a client that took that line for "ready" would connect
/// to a server about to end. (It printed the bare errno, after the line.)
#[test]
fn pool_ends_in_one_line_when_a_worker_thread_is_refused() {
    let mut plain =
        std::process::Command::new(crate::support::bin_path("tcp-pool"));
    plain.arg("127.0.0.1:0");
    let Some((mut command, _dir)) =
        crate::support::with_thread_limit(&plain, 1)
    else {
        return;
    };
    let server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let out = server.finish();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, Vec::<String>::new(), "no 'listening' line");
    assert_eq!(
        out.stderr.lines().collect::<Vec<_>>(),
        [
            "tcp-pool: cannot start a thread: Resource temporarily unavailable \
          (os error 11)"
        ],
    );
}

#[test]
fn threaded_server_evicts_nobody_for_a_client_that_reset_in_the_queue() {
    line_server::evicts_nobody_for_a_client_that_reset_in_the_queue(bin!(
        "tcp-threads"
    ));
}

/// Chapter 14's aside on a full queue gives the number of SYN retries
/// made a second apart as this machine's
/// `net.ipv4.tcp_syn_linear_timeouts` (Linux 6.5 and later): the first
/// version said the waits doubled from the first, which 6.18 does not do.
#[test]
fn chapter_14_gives_the_linear_syn_retries_of_this_kernel() {
    let Ok(linear) =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
    else {
        return; // Before Linux 6.5: no such setting.
    };
    let chapter = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../src/ch14-servers.md"),
    )
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    // The setting counts the linear timeouts after the first: with 4,
    // five retries come a second apart (ccce324dabfe: "1,1,1,1,1,2,4,8").
    let linear: usize = linear.trim().parse().unwrap();
    let words = ["one", "two", "three", "four", "five", "six", "seven"];
    let said = format!(
        "makes {} retries a second apart: the first timeout, then \
         `net.ipv4.tcp_syn_linear_timeouts` more ({linear} here, new in \
         Linux 6.5)",
        words[linear]
    );
    assert!(chapter.contains(&said), "chapter 14 does not say {said:?}");
}

#[test]
fn threaded_server_serves_on_when_its_log_disk_is_full() {
    line_server::serves_on_when_its_log_disk_is_full(bin!("tcp-threads"));
}

#[test]
fn pool_serves_on_when_its_log_disk_is_full() {
    line_server::serves_on_when_its_log_disk_is_full(bin!("tcp-pool"));
}

#[test]
fn threaded_server_counts_the_lines_a_burst_drops_as_the_log_falling_behind() {
    line_server::counts_the_lines_a_burst_drops_as_the_log_falling_behind(
        bin!("tcp-threads"),
    );
}

#[test]
fn pool_counts_the_lines_a_burst_drops_as_the_log_falling_behind() {
    line_server::counts_the_lines_a_burst_drops_as_the_log_falling_behind(
        bin!("tcp-pool"),
    );
}

#[test]
fn threaded_server_serves_its_clients_to_the_end_once_nobody_reads_its_log() {
    line_server::serves_its_clients_to_the_end_once_nobody_reads_its_log(
        bin!("tcp-threads"),
        nix::libc::SYS_accept4,
    );
}

#[test]
fn pool_serves_its_clients_to_the_end_once_nobody_reads_its_log() {
    line_server::serves_its_clients_to_the_end_once_nobody_reads_its_log(
        bin!("tcp-pool"),
        nix::libc::SYS_accept4,
    );
}

/// A client of the pool that sends forty thousand requests at once, with
/// a small receive buffer, while another client waits in the queue; it
/// reads its replies as soon as the worker waits for room to send them
/// (a pause of milliseconds), or, unless `reads`, never. Returns Ok if
/// it read every reply, or else why it got no more, and the server's
/// stderr.
/// How the flooding client of `flood_while_another_waits` reads its
/// replies, once the worker waits for room to send them.
#[derive(PartialEq)]
enum Reading {
    /// Not at all.
    Never,
    /// As fast as it can.
    AtOnce,
    /// 4 KiB every 20 ms, about 200 KB/s: slowly, but never stopping
    /// for long.
    Steadily,
}

fn flood_while_another_waits(reading: Reading) -> (Result<(), String>, String) {
    let reads = reading != Reading::Never;
    // One worker, and a queue of one: the connection the worker serves
    // cannot go back into the queue, and the one queued waits there.
    let (mut server, addr) = start_server(
        bin!("tcp-pool"),
        &[
            "127.0.0.1:0",
            "--workers",
            "1",
            "--queue",
            "1",
            "--timeout",
            "20",
        ],
    );
    let pid = server.pid();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // A client with a small receive buffer, which the worker holds: it
    // has had a reply.
    let sockaddr: std::net::SocketAddr = addr.parse().unwrap();
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&sockaddr.into()).unwrap();
    let mut bulk = TcpStream::from(sock);
    bulk.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    bulk.write_all(b"first\n").unwrap();
    let mut first = [0; 20];
    bulk.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"server got: [first]\n");
    let bulk_port = bulk.local_addr().unwrap().port();
    // Another client, queued with a whole request: others wait for a
    // worker, from now on.
    let mut queued = connect(&addr);
    queued.write_all(b"wait\n").unwrap();
    wait_until("the accepting thread to queue the second client", || {
        server_end(port, 0).is_some_and(|(_, backlog, ..)| backlog == 0)
            && threads_blocked_in(pid, nix::libc::SYS_accept4) == 1
    });
    // Forty thousand requests at once, their replies not read until the
    // worker waits for room to send them, or has shed the connection
    // (its end of the connection, half-closed by the client, is no longer
    // in CLOSE_WAIT).
    let requests = 40_000;
    bulk.write_all(&b"\n".repeat(requests)).unwrap();
    bulk.shutdown(Shutdown::Write).unwrap();
    wait_until("the worker to wait for room, or to shed the client", || {
        threads_waiting_to_send(pid) == 1
            || server_end(port, bulk_port)
                .is_none_or(|(state, ..)| state != "08")
    });
    if !reads {
        wait_until("the pool to shed the client", || {
            server_end(port, bulk_port).is_none_or(|(state, ..)| state != "08")
        });
    }
    // Read at once: a pause of milliseconds.
    let mut replies = Vec::new();
    // The longest time between two reads of a steady reader: a loaded
    // machine can pause it for the grace, and then it did not read
    // steadily.
    let mut longest = Duration::ZERO;
    let read = if reading == Reading::Steadily {
        let mut piece = [0; 4096];
        let mut last = Instant::now();
        loop {
            let result = bulk.read(&mut piece);
            longest = longest.max(last.elapsed());
            last = Instant::now();
            match result {
                Ok(0) => break Ok(replies.len()),
                Ok(n) => replies.extend_from_slice(&piece[..n]),
                Err(err) => break Err(err),
            }
            // The pace of the reader under test, not a synchronisation.
            thread::sleep(Duration::from_millis(20));
        }
    } else {
        bulk.read_to_end(&mut replies)
    };
    if !reads {
        // Its worker logs it, on stderr first if it says why: the line
        // on stdout comes once both are written. (The first stdout line
        // after the ready line is its: the other client is still queued.)
        server
            .expect(&format!(r"127\.0\.0\.1:{bulk_port}: answered \d+ lines"));
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    drop(queued);
    let expected = b"server got: []\n".repeat(requests);
    let outcome = match read {
        Ok(_) if replies == expected => Ok(()),
        _ => Err(format!(
            "{read:?} after {} bytes of {}, reads at most {} ms apart; \
             stderr: {}",
            replies.len(),
            expected.len(),
            longest.as_millis(),
            out.stderr
        )),
    };
    (outcome, out.stderr)
}

#[test]
fn pool_keeps_a_client_whose_reading_pauses_less_than_the_grace() {
    // One worker; a client that sends forty thousand requests at once,
    // with a small receive buffer, and starts to read only once the
    // worker waits for room to send; another client waits in the queue.
    // Shed at once, with no grace, it was reset after a few thousand
    // replies. Its reading starts milliseconds after the worker's wait
    // begins: only a machine that pauses this test for the grace (0.1 s)
    // explains a shed, and not three times in a row.
    let mut failures = Vec::new();
    while failures.len() < 3 {
        match flood_while_another_waits(Reading::AtOnce).0 {
            Ok(()) => return,
            Err(why) => failures.push(why),
        }
    }
    panic!("the client was cut off each time: {failures:#?}");
}

/// Whether a failure's reads were 80 ms or more apart, as its message
/// says ("reads at most 123 ms apart").
fn longest_gap(why: &str) -> bool {
    why.split_once("reads at most ")
        .and_then(|(_, rest)| rest.split_once(" ms apart"))
        .and_then(|(ms, _)| ms.parse::<u64>().ok())
        .is_some_and(|ms| ms >= 80)
}

#[test]
fn pool_keeps_a_client_that_reads_slowly_but_steadily() {
    // As above, but the client takes 4 KiB every 20 ms. Its kernel,
    // with a small receive buffer, acknowledges each piece, and the grace
    // counts from the last acknowledgement. Timed from the last time a
    // send found no room, which the kernel reports only once a third of
    // the send buffer is free, it was shed after about 20 KB (reset, with
    // its requests unread). Again, only a machine that pauses the reader
    // for the grace explains a shed, and not three times in a row.
    // A try in which the reader itself paused for 80 ms or more proves
    // nothing either way (a loaded machine, running the whole suite, did
    // that); only three cut-offs of a reader that kept its pace fail.
    let (mut failures, mut paused) = (Vec::new(), Vec::new());
    while failures.len() < 3 && paused.len() < 20 {
        match flood_while_another_waits(Reading::Steadily).0 {
            Ok(()) => return,
            Err(why) if longest_gap(&why) => {
                paused.push(why);
            }
            Err(why) => failures.push(why),
        }
    }
    panic!("the client was cut off: {failures:#?}, paused: {paused:#?}");
}

#[test]
fn pool_logs_why_it_sheds_a_client_that_takes_no_replies() {
    // As above, but the client never reads: once the grace is over, the
    // pool sheds it, and says why in one line, where the log said only
    // what it had answered, as for a client that finished.
    let (outcome, stderr) = flood_while_another_waits(Reading::Never);
    assert!(outcome.is_err(), "a client that reads nothing was kept");
    let why = "shed, its replies unacknowledged for 100 ms while others waited";
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("tcp-pool: 127.0.0.1:"), "{stderr}");
    assert!(lines[0].ends_with(why), "{stderr}");
}

/// Listing 14-3's comments that say when a connection is shed, its
/// opening comment and the evicting thread's, name the grace of a reply
/// that finds the buffers full, REPLY_GRACE, a tenth of a second. They
/// said "a second" and "at once" for it, a grace of the code's before.
#[test]
fn pool_comments_give_a_blocked_reply_its_grace() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ch14-servers/14-03-tcp-pool.rs"
    );
    let source = std::fs::read_to_string(path).expect("Listing 14-3");
    let words = |lines: Vec<&str>| {
        let lines: Vec<&str> =
            lines.iter().map(|line| line.trim_start()).collect();
        lines.join(" ")
    };
    let header = words(
        source
            .lines()
            .skip(1)
            .map_while(|line| line.strip_prefix("//"))
            .collect(),
    );
    let before_shed: Vec<&str> = source
        .lines()
        .take_while(|line| !line.contains("fn shed_idle_while_others_wait"))
        .collect();
    let shed = words(
        before_shed
            .iter()
            .rev()
            .map_while(|line| line.trim_start().strip_prefix("///"))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect(),
    );
    assert!(
        source.contains(
            "const REPLY_GRACE: Duration = Duration::from_millis(100);"
        ),
        "REPLY_GRACE changed: say so in the comments"
    );
    assert!(
        header.contains("for a tenth of a second (REPLY_GRACE)"),
        "{header}"
    );
    assert!(
        header.contains("a second or more (EVICT_AFTER)"),
        "{header}"
    );
    assert!(!header.contains("at once"), "{header}");
    assert!(
        shed.contains(
            "whose reply has found the socket's buffers full for \
                       REPLY_GRACE"
        ),
        "{shed}"
    );
}

#[test]
fn threaded_server_takes_no_room_from_its_default_limit_for_a_descriptor_above_it()
 {
    line_server::default_limit_leaves_no_room_for_a_descriptor_above_the_limit(
        bin!("tcp-threads"),
        &["--timeout", "3600"],
    );
}

/// A shell that passes `tcp-naive` descriptors 10 and 100 under the limit
/// the chapter advises, `ulimit -n 17`: one more than sixteen for the one
/// numbered below it, none for the one above. The book's session follows:
/// twelve connections, then the server runs out. Raised for both (18), the
/// server would have room for a thirteenth and never fail, and the script
/// would wait for ever.
#[test]
fn naive_server_under_the_advised_limit_runs_out_after_twelve_connections() {
    if !have("python3") {
        return;
    }
    let script = "exec 100</dev/null && ulimit -n 17 && \
                  exec \"$0\" \"$@\" 10</dev/null 2>&1";
    let (server, addr) =
        start_server("bash", &["-c", script, bin!("tcp-naive"), "127.0.0.1:0"]);
    let fds = fds_of(server.pid());
    let inherited = [10, 100].map(|n| fds.iter().any(|(fd, _)| *fd == n));
    assert_eq!(inherited, [true, true], "{fds:?}");
    let terminal2 = python(TWELVE, &addr);
    assert_eq!(terminal2, ["12 connections open", "the server closed 12"]);
    let out = server.finish();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stdout);
    assert_eq!(
        out.stdout[1..],
        ["tcp-naive: Too many open files (os error 24)"]
    );
}
