//! Chapter 30, Async sockets: Listing 30-1 (`async-server`), Part III's
//! framed server on tokio, facing the clients that Chapters 14 and 15's
//! servers face, over TCP and over a Unix socket; and the comparison mode
//! of Listing 15-3 (`net-load --with-async`), run small.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::ch13_streams::{connect, start_server, typed};
use crate::ch14_servers::{flood, many_at_once, silent_clients, start_limited};
use crate::support::{
    Listing, assert_rejects, assert_session_matches_book,
    assert_session_matches_book_masking, blessing, cargo_run, cpu_time,
    default_port, have, open_fds, run, shell, status_kib, threads_of,
    unless_blessing, wait_until,
};

const SERVER: &str = bin!("async-server");

/// Sends a line, half-closes, and returns all the server sent back. Like
/// Chapter 14's `ask`, but with `read_to_end`, which tries again a read
/// that a signal interrupted: this test process catches SIGCHLD
/// (wait-timeout's handler), and a socket read with a timeout fails with
/// EINTR, SA_RESTART or not, when any child of any test ends meanwhile.
fn ask(addr: &str, line: &str) -> std::io::Result<String> {
    let mut sock = std::net::TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let sent = sock.write_all(format!("{line}\n").as_bytes());
    let _ = sock.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let read = sock.read_to_end(&mut reply);
    if reply.is_empty() {
        read?;
        sent?;
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// The most threads this server has: the main thread, a worker per CPU
/// (tokio's default runtime; the server needs no blocking threads), and
/// the thread that writes its log.
fn few_threads() -> usize {
    2 + thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn async_server_answers_lines_cut_anywhere_and_a_last_one_without_newline() {
    let (server, addr) = start_server(SERVER, &["127.0.0.1:0", "--count", "1"]);
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

#[test]
fn async_server_serves_others_while_clients_stay_silent() {
    let (server, addr) = start_server(SERVER, &["127.0.0.1:0"]);
    let silent = silent_clients(&addr, 100);
    assert_eq!(ask(&addr, "hello").unwrap(), "server got: [hello]\n");
    for sock in &silent {
        sock.set_nonblocking(true).unwrap();
        let err = (&*sock).read(&mut [0; 1]).expect_err("no data, no end");
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
    }
    // A hundred and one connections, in a thread per CPU.
    let threads = threads_of(server.pid());
    assert!(threads <= few_threads(), "{threads} threads");
}

#[test]
fn async_server_outlives_clients_that_reset() {
    let (server, addr) =
        start_server(SERVER, &["127.0.0.1:0", "--count", "11"]);
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    for _ in 0..10 {
        let rude = connect(&addr);
        (&rude).write_all(b"half a requ").unwrap();
        nix::sys::socket::setsockopt(
            &rude,
            nix::sys::socket::sockopt::Linger,
            &linger,
        )
        .unwrap();
    }
    assert_eq!(
        ask(&addr, "still here").unwrap(),
        "server got: [still here]\n"
    );
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn async_server_refuses_a_long_line_and_keeps_little_memory() {
    let (server, addr) = start_server(SERVER, &["127.0.0.1:0"]);
    let reply = flood(&addr, 64 << 20).join().unwrap().unwrap();
    assert_eq!(reply, "error: line longer than 1024 bytes\n");
    let peak = status_kib(server.pid(), "VmHWM").unwrap();
    assert!(peak < 32 << 10, "peak {peak} kB");
    assert_eq!(ask(&addr, "next").unwrap(), "server got: [next]\n");
}

#[test]
fn async_server_refuses_a_line_that_is_not_utf8() {
    let (server, addr) = start_server(SERVER, &["127.0.0.1:0", "--count", "2"]);
    let mut sock = connect(&addr);
    sock.write_all(b"caf\xe9\nmore\n").unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "error: line is not UTF-8\n");
    assert_eq!(ask(&addr, "next").unwrap(), "server got: [next]\n");
    let out = server.finish();
    assert!(
        out.stderr.contains(": a line that is not UTF-8"),
        "{}",
        out.stderr
    );
}

#[test]
fn async_server_writes_many_replies_as_the_client_reads_them() {
    let (server, addr) = start_server(SERVER, &["127.0.0.1:0", "--count", "1"]);
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

#[test]
fn async_server_drops_a_client_that_does_not_read_its_replies() {
    let (server, addr) = start_server(
        SERVER,
        &["127.0.0.1:0", "--timeout", "1", "--count", "2"],
    );
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

#[test]
fn async_server_drops_a_client_that_trickles_its_request() {
    let (server, addr) = start_server(
        SERVER,
        &["127.0.0.1:0", "--timeout", "1", "--count", "1"],
    );
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

#[test]
fn async_server_backs_off_and_recovers_when_file_descriptors_run_out() {
    let (mut server, addr) =
        start_limited(32, SERVER, &["127.0.0.1:0", "--max-conns", "100"]);
    let pid = server.pid();
    // tokio has descriptors of its own (epoll, a wake-up, the signal
    // pipe): fill what is left.
    let free = 32 - open_fds(pid);
    let silent = silent_clients(&addr, free);
    wait_until("all 32 descriptors in use", || open_fds(pid) == 32);
    let waiting = thread::spawn({
        let addr = addr.clone();
        move || ask(&addr, "patient")
    });
    let failed = server.next_line();
    assert_eq!(
        failed,
        "async-server: accept: Too many open files (os error 24); \
         trying again, less often"
    );
    // The listening socket stays ready all along; without the back-off
    // the accept loop would fail again at once, again and again.
    let cpu = cpu_time(pid);
    thread::sleep(Duration::from_secs(2));
    let used = cpu_time(pid) - cpu;
    assert!(used < Duration::from_millis(300), "{used:?} of CPU");
    drop(silent);
    assert_eq!(waiting.join().unwrap().unwrap(), "server got: [patient]\n");
    let mut logged = 0;
    while logged < free + 1 {
        let line = server.next_line();
        if line.ends_with(" lines") {
            logged += 1;
        } else {
            assert!(line.starts_with("async-server: accept: "), "{line}");
        }
    }
}

/// A client that sends requests and never reads a reply, until the
/// server is stuck writing a reply to it: the server's end of the
/// connection then holds requests it does not read, and their number
/// stays the same, as /proc/net/tcp shows.
fn stuck_client(addr: &str) -> std::net::TcpStream {
    let mut sock = connect(addr);
    sock.set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let requests = b"are you there?\n".repeat(1000);
    let started = Instant::now();
    while sock.write_all(&requests).is_ok() {
        assert!(started.elapsed() < Duration::from_secs(30), "still read");
    }
    let server = sock.peer_addr().unwrap().port();
    let client = sock.local_addr().unwrap().port();
    let mut last = (0, 0);
    wait_until("the server to stop reading the client", || {
        let now = unread_by_server(server, client);
        let same = now == last.0;
        last = (now, if same && now > 0 { last.1 + 1 } else { 0 });
        thread::sleep(Duration::from_millis(20));
        last.1 >= 5
    });
    sock
}

/// How many bytes the server's end of a loopback connection has received
/// and not read: `rx_queue` in /proc/net/tcp, where ports are in hex.
pub fn unread_by_server(server: u16, client: u16) -> u64 {
    let table = fs::read_to_string("/proc/net/tcp").unwrap();
    let (local, remote) = (format!(":{server:04X}"), format!(":{client:04X}"));
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[1].ends_with(&local) && f[2].ends_with(&remote))
        .and_then(|f| u64::from_str_radix(f[4].split(':').nth(1)?, 16).ok())
        .unwrap_or(0)
}

#[test]
fn async_server_tells_a_client_that_it_is_busy_when_no_one_is_idle() {
    let (server, addr) = start_server(
        SERVER,
        &["127.0.0.1:0", "--max-conns", "2", "--timeout", "30"],
    );
    // Both slots hold a connection stuck in the middle of a reply.
    let _stuck = [stuck_client(&addr), stuck_client(&addr)];
    assert_eq!(ask(&addr, "third").unwrap(), "error: server busy\n");
    drop(server);
}

#[test]
fn async_server_serves_a_new_client_while_1000_idle_connections_are_held() {
    // A long timeout: a crowded server's shorter wait, a minute, does not
    // end any of them while the test runs.
    let (server, addr) = start_server(
        SERVER,
        &["127.0.0.1:0", "--max-conns", "1000", "--timeout", "600"],
    );
    let pid = server.pid();
    let before = open_fds(pid);
    let mut idle = silent_clients(&addr, 1000);
    wait_until("1000 connections accepted", || {
        open_fds(pid) >= before + 1000
    });
    // Every slot is taken; the connection that has waited longest, and
    // only that one, makes room for the new client.
    assert_eq!(ask(&addr, "new").unwrap(), "server got: [new]\n");
    let oldest = &mut idle[0];
    oldest
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    oldest.read_to_end(&mut rest).expect("the oldest is closed");
    assert!(rest.is_empty());
    for sock in &idle[1..] {
        sock.set_nonblocking(true).unwrap();
        let err = (&*sock).read(&mut [0; 1]).expect_err("no data, no end");
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
    }
    drop(idle);
    server.signal(Signal::SIGTERM);
    let out = server.finish();
    assert!(
        out.stderr
            .contains(": closed to make room for a new client"),
        "{}",
        out.stderr
    );
}

#[test]
fn async_server_gives_each_of_many_clients_its_own_reply() {
    let (server, addr) =
        start_server(SERVER, &["127.0.0.1:0", "--count", "200"]);
    many_at_once(&addr, 200);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 201);
}

#[test]
fn async_server_dies_of_sigterm_like_the_servers_before_it() {
    let (server, _) = start_server(SERVER, &["127.0.0.1:0"]);
    server.signal(Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
}

#[test]
fn async_server_session_matches_the_book() {
    let _port = default_port();
    let server_args = ["--count", "3"];
    let script = "exec \"$0\" \"$@\" 2>&1";
    let mut command = vec!["-c", script, SERVER];
    let with_address = unless_blessing(&server_args, "127.0.0.1:0");
    command.extend(&with_address);
    let (server, addr) = start_server("bash", &command);
    let lines = "printf 'one\\ntwo\\nthree' | cargo run -p listings --bin tcp-lines -- client";
    let long = "head -c 2000 /dev/zero | tr '\\0' x | cargo run -p listings --bin tcp-lines -- client";
    let mut terminal2 = Vec::new();
    for shown in [lines, long] {
        let out = typed(shown, bin!("tcp-lines"), &addr);
        assert!(out.status.success(), "{}", out.stderr);
        terminal2.push((shown.to_string(), out.stdout));
    }
    let shown = format!(
        "{} 127.0.0.1:50008 four",
        cargo_run("tcp-lines", &["client"])
    );
    let out = run(bin!("tcp-lines"), &["client", &addr, "four"]);
    terminal2.push((shown, out.stdout));
    let server = server.finish();
    assert!(server.status.success());
    assert_session_matches_book(
        "ch30-async-sockets/30-01-server.out",
        &[(cargo_run("async-server", &server_args), &server.stdout)],
    );
    let terminal2: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch30-async-sockets/30-01-client.out",
        &terminal2,
    );
}

// ---------------------------------------------------------------------------
// Length-prefixed frames, with Listing 13-3's client

#[test]
fn async_server_speaks_listing_13_3s_frames() {
    let (server, addr) = start_server(
        SERVER,
        &["127.0.0.1:0", "--frames", "length", "--count", "1"],
    );
    let out = run(
        bin!("tcp-length"),
        &["client", &addr, "hello", "", "a line\nwith a newline"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "server got: [hello]",
            "server got: []",
            // The client shows what it got with Rust's escapes.
            "server got: [a line\\nwith a newline]",
        ]
    );
    let out = server.finish();
    assert!(
        out.stdout[1].ends_with(": answered 3 frames"),
        "{:?}",
        out.stdout
    );
}

#[test]
fn async_server_refuses_a_frame_over_the_maximum_before_reading_it() {
    let (server, addr) = start_server(
        SERVER,
        &["127.0.0.1:0", "--frames", "length", "--count", "2"],
    );
    let mut sock = connect(&addr);
    // A header that claims four gigabytes, and a little of the body.
    sock.write_all(&u32::MAX.to_be_bytes()).unwrap();
    sock.write_all(&[b'x'; 1000]).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    sock.read_to_end(&mut reply).expect("a FIN, not a reset");
    assert!(reply.is_empty());
    let peak = status_kib(server.pid(), "VmHWM").unwrap();
    assert!(peak < 32 << 10, "peak {peak} kB");
    let next = run(bin!("tcp-length"), &["client", &addr, "next"]);
    assert_eq!(next.stdout, ["server got: [next]"]);
    let out = server.finish();
    assert!(
        out.stderr.contains(": frame size too big"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// Unix sockets

/// Sends `lines` over a Unix socket, half-closes, returns the replies.
fn ask_unix(path: &Path, lines: &str) -> String {
    let mut sock = UnixStream::connect(path).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.write_all(lines.as_bytes()).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn async_server_on_a_unix_socket_names_its_peer_by_the_kernels_word() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.sock");
    let (server, shown) = start_server_at(&path, &["--count", "1"]);
    assert_eq!(shown, path.to_str().unwrap());
    assert_eq!(
        ask_unix(&path, "one\ntwo\n"),
        "server got: [one]\nserver got: [two]\n"
    );
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let uid = own_uid();
    assert_eq!(
        out.stdout[1],
        format!("pid {} (uid {uid}): answered 2 lines", std::process::id())
    );
    assert!(!path.exists(), "the socket file is left behind");
}

/// The tests' effective user id, from /proc.
fn own_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        .expect("an effective uid")
}

/// Starts the server on a Unix socket at `path`; returns the path it
/// printed.
fn start_server_at(path: &Path, args: &[&str]) -> (Listing, String) {
    let mut all = vec!["--unix", path.to_str().unwrap()];
    all.extend(args);
    let mut server = Listing::start(SERVER, &all);
    let shown = server.expect(r"Server listening on (.+)").remove(1);
    (server, shown)
}

#[test]
fn async_server_replaces_a_stale_socket_file_but_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.sock");
    // A server that died without removing its file leaves exactly this.
    drop(UnixListener::bind(&path).unwrap());
    assert!(fs::metadata(&path).unwrap().file_type().is_socket());
    // Nobody listens, so a connection is refused. A child that another
    // test forks at this moment holds a copy of the listener until its
    // exec closes it, and until then a connection is queued: wait that out.
    wait_until("the stale socket file to refuse connections", || {
        UnixStream::connect(&path)
            .is_err_and(|err| err.kind() == ErrorKind::ConnectionRefused)
    });
    let (server, _) = start_server_at(&path, &["--count", "1"]);
    // While it runs, a second server must not take the path from it.
    let dir_path = path.to_str().unwrap();
    assert_rejects(
        SERVER,
        &["--unix", dir_path],
        &format!("another server is using {dir_path}"),
    );
    assert_eq!(ask_unix(&path, "hi\n"), "server got: [hi]\n");
    assert!(server.finish().status.success());
    // A file that is not a socket is never removed.
    let file = dir.path().join("notes.txt");
    fs::write(&file, "keep me\n").unwrap();
    let file = file.to_str().unwrap();
    assert_rejects(
        SERVER,
        &["--unix", file],
        &format!("{file} exists and is not a socket"),
    );
    assert_eq!(fs::read_to_string(file).unwrap(), "keep me\n");
}

#[test]
fn async_server_removes_its_socket_file_then_dies_of_the_signal() {
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.sock");
        let (server, _) = start_server_at(&path, &[]);
        server.signal(signal);
        let out = server.finish();
        assert_eq!(out.status.signal(), Some(signal as i32), "{signal}");
        assert!(!path.exists(), "{signal}: the socket file is left");
    }
}

#[test]
fn async_server_removes_its_socket_file_when_its_log_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.sock");
    // A pipe whose read end is already closed: the ready line fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut command = std::process::Command::new(SERVER);
    command.args(["--unix", path.to_str().unwrap()]);
    let out = Listing::spawn(&mut command, writer.into()).finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    assert_eq!(out.stderr, "");
    assert!(!path.exists(), "the socket file is left behind");
}

#[test]
fn async_server_unix_session_matches_the_book() {
    if !have("nc") {
        return;
    }
    // The book shows a path in /tmp; the check runs in a private one.
    let dir = tempfile::tempdir().unwrap();
    let book_path = "/tmp/async.sock";
    let path = if blessing() {
        book_path.to_string()
    } else {
        dir.path().join("async.sock").to_str().unwrap().to_string()
    };
    let (server, _) = start_server_at(Path::new(&path), &["--count", "1"]);
    let command = format!("printf 'hello\\n' | nc -N -U {book_path}");
    let reply = shell(&command.replace(book_path, &path));
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let _ = fs::remove_file(format!("{path}.lock"));
    let masks = [(r"\S*/async\.sock", "<path>")];
    assert_session_matches_book_masking(
        "ch30-async-sockets/30-01-unix-server.out",
        &[(
            cargo_run("async-server", &["--unix", book_path, "--count", "1"]),
            &out.stdout,
        )],
        &masks,
    );
    assert_session_matches_book_masking(
        "ch30-async-sockets/30-01-unix-client.out",
        &[(command, &reply)],
        &masks,
    );
}

#[test]
fn async_server_rejects_bad_arguments_in_one_line() {
    assert_rejects(SERVER, &["--timeout", "0"], "--timeout must be at least 1");
    assert_rejects(
        SERVER,
        &["--max-conns", "0"],
        "--max-conns must be at least 1",
    );
    assert_rejects(SERVER, &["--backlog", "99999999999"], "--backlog");
    assert_rejects(SERVER, &["127.0.0.1:99999"], "bad address");
    assert_rejects(
        SERVER,
        &["--frames", "json"],
        "--frames is lines or length",
    );
    assert_rejects(
        SERVER,
        &["127.0.0.1:0", "--unix", "/tmp/x.sock"],
        "not both",
    );
    assert_rejects(
        SERVER,
        &["--unix", "/no/such/dir/x.sock"],
        "cannot open /no/such/dir/x.sock.lock",
    );
}

// ---------------------------------------------------------------------------
// Listing 15-3's comparison, run small: every reply of every server is
// right. The figures are the benchmark's business, not the tests'.

#[test]
fn load_generator_compares_the_async_server_and_every_reply_is_right() {
    let out = run(
        bin!("net-load"),
        &[
            "--with-async",
            "--clients",
            "50",
            "--rounds",
            "1",
            "--idle",
            "300",
            "--seconds",
            "1",
            "--conns",
            "4",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let rows: Vec<Vec<&str>> = out
        .stdout
        .iter()
        .map(|line| line.split_whitespace().collect())
        .collect();
    let servers = ["tcp-threads", "poll-server", "async-server"];
    let of = |len: usize| -> Vec<&Vec<&str>> {
        rows.iter()
            .filter(|r| r.len() == len && servers.contains(&r[0]))
            .collect()
    };
    let burst = of(9);
    assert_eq!(burst.len(), 3, "{:#?}", out.stdout);
    for row in burst {
        assert_eq!(
            row[2..5],
            ["50", "0", "0"],
            "{row:?}: right, wrong, failed"
        );
    }
    let idle = of(6);
    assert_eq!(idle.len(), 3, "{:#?}", out.stdout);
    let tokio = idle.iter().find(|r| r[0] == "async-server").unwrap();
    assert_eq!(tokio[1], "300");
    let threads: usize = tokio[5].parse().unwrap();
    assert!(threads <= few_threads(), "{threads} threads");
    let requests = of(5);
    assert_eq!(requests.len(), 3, "{:#?}", out.stdout);
    for row in requests {
        assert_eq!(row[1], "4", "{row:?}: connections");
        assert!(row[2].parse::<u64>().unwrap() > 0, "{row:?}: requests");
        assert_eq!(row[4], "0", "{row:?}: wrong replies");
    }
}

#[test]
fn idle_memory_measures_a_server_holding_idle_connections() {
    if !have("python3") {
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ch30-async-sockets/idle-memory"
    );
    let out = run(script, &["--connections", "20", "--runs", "2", SERVER]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 4, "{:#?}", out.stdout);
    for run in &out.stdout[1..3] {
        assert!(run.ends_with(" KiB per connection"), "{run}");
    }
    assert!(out.stdout[3].starts_with("per connection: median "));
}

#[test]
fn request_cost_measures_each_servers_cpu_per_request() {
    if !have("python3") {
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ch30-async-sockets/request-cost"
    );
    let servers = [bin!("tcp-threads"), bin!("poll-server"), SERVER];
    let mut args = vec!["--requests", "300", "--runs", "2"];
    let traced = have("strace");
    if traced {
        args.push("--strace");
    }
    args.extend(servers);
    let out = run(script, &args);
    assert!(out.status.success(), "{}", out.stderr);
    let cost = regex::Regex::new(
        r"^(\S+): user [\d.]+ \[[\d.]+-[\d.]+\], system [\d.]+ \[[\d.]+-[\d.]+\], total (\d+\.\d\d) \[(\d+\.\d\d)-[\d.]+\]$",
    )
    .unwrap();
    let named: Vec<&str> = out
        .stdout
        .iter()
        .filter_map(|line| cost.captures(line))
        .map(|c| {
            // The total comes in nanoseconds, not in ticks of 10 ms: even
            // 300 requests, less than a tick, show some time.
            let least: f64 = c[3].parse().unwrap();
            assert!(least > 0.0, "{}", &c[0]);
            c.get(1).unwrap().as_str()
        })
        .collect();
    assert!(
        out.stdout[1].starts_with("resolution: total 1 ns a run (schedstat); "),
        "{:#?}",
        out.stdout
    );
    assert_eq!(
        named,
        ["tcp-threads", "poll-server", "async-server"],
        "{:#?}",
        out.stdout
    );
    if traced {
        // One read and one write per request at least, whatever the
        // server: the counts are per request, not per run.
        let calls: Vec<&String> = out
            .stdout
            .iter()
            .filter(|line| line.starts_with("  system calls per request: "))
            .collect();
        assert_eq!(calls.len(), 3, "{:#?}", out.stdout);
        for line in calls {
            assert!(line.contains("recvfrom 1.0"), "{line}");
        }
    }
}

/// A log that nobody reads (a reader that stopped, a terminal suspended)
/// fills its pipe after a couple of thousand connections. The server must
/// go on serving, and still die of SIGTERM: no task waits for the log.
#[test]
fn async_server_serves_and_stops_while_nobody_reads_its_log() {
    let (log, log_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
    let mut command = std::process::Command::new(SERVER);
    command.arg("127.0.0.1:0");
    let server = Listing::spawn(&mut command, log_end.into());
    drop(command);
    // The ready line, and then not another byte.
    let mut log = fs::File::from(log);
    let mut ready = Vec::new();
    let mut byte = [0u8];
    while ready.last() != Some(&b'\n') {
        assert_eq!(log.read(&mut byte).expect("read the log"), 1, "{ready:?}");
        ready.push(byte[0]);
    }
    let ready = String::from_utf8(ready).unwrap();
    let addr = ready.trim_end().rsplit(' ').next().expect("an address");
    // Each connection logs a line of about 35 bytes: 3000 of them are
    // more than a pipe and the server's queue of log lines hold.
    for n in 0..3000 {
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.write_all(format!("r{n}\n").as_bytes()).unwrap();
        sock.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        let read = sock.read_to_string(&mut reply);
        assert_eq!(reply, format!("server got: [r{n}]\n"), "{n}: {read:?}");
    }
    server.signal(Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    drop(log);
}
