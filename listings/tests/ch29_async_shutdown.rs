//! Chapter 29, Graceful shutdown: Listing 29-1 (`async-daemon`), Listing
//! 10-1's daemon on tokio, run through the same tests as Listing 10-1,
//! with real clients in flight while it gets its signals, and held to the
//! same protocol.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::daemon::{
    self, Client, Daemon, logged_request, reconfigure, start_exactly,
};
use crate::support::{
    Listing, PATIENCE, as_pid_1, assert_died_of, assert_exited_with,
    assert_says_why_on_bad_worker_threads, assert_session_matches_book,
    assert_starts_or_says_why, cargo_run, dollar_question, have, open_fds,
    unread_by_server, unsent_by_server, wait_until,
};

fn start(args: &[&str]) -> Daemon {
    let mut all = vec!["127.0.0.1:0"];
    all.extend(args);
    start_exactly(bin!("async-daemon"), &all)
}

#[test]
fn async_daemon_shows_a_config_path_with_a_newline_escaped_in_one_line() {
    daemon::shows_a_config_path_with_a_newline_escaped_in_one_line(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_reloads_on_sighup_without_dropping_a_connection() {
    daemon::reloads_on_sighup_without_dropping_a_connection(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_answers_requests_that_came_together_in_one_write() {
    daemon::answers_requests_that_came_together_in_one_write(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_sends_each_reply_before_the_work_of_later_requests() {
    daemon::sends_each_reply_before_the_work_of_later_requests(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_sends_a_reply_that_follows_work_without_waiting_for_an_ack() {
    daemon::sends_a_reply_that_follows_work_without_waiting_for_an_ack(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_writes_each_line_of_its_log_whole_in_one_write() {
    daemon::writes_each_line_of_its_log_whole_in_one_write(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_counts_the_log_lines_it_could_not_write_once_the_reader_has_gone()
 {
    daemon::counts_the_log_lines_it_could_not_write_once_the_reader_has_gone(
        bin!("async-daemon"),
    );
}

#[test]
fn async_daemon_closes_a_trickled_request_at_its_idle_bound() {
    daemon::closes_a_trickled_request_at_its_idle_bound(bin!("async-daemon"));
}

#[test]
fn async_daemon_drains_every_request_in_flight_and_refuses_new_clients() {
    let (daemon, mut clients, sent) =
        daemon::sigterm_with_three_requests_in_flight(
            bin!("async-daemon"),
            r"\d+",
        );
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.reply(), Some(format!("hello, client{i}\n")));
        assert_eq!(client.reply(), None, "then the end");
    }
    // Gone at once: the server need not wait for them to close.
    drop(clients);
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
    assert_eq!(
        out.stdout.last().unwrap(),
        "All connections closed; exiting"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "within the deadline"
    );
}

#[test]
fn async_daemon_gives_up_at_the_deadline_with_status_1() {
    daemon::gives_up_at_the_deadline_with_status_1(bin!("async-daemon"));
}

/// How long `docker stop` waits, by default, between its SIGTERM and its
/// SIGKILL (`docker stop --time`); systemd waits 90 s, Kubernetes 30 s.
const DOCKER_STOP_GRACE: Duration = Duration::from_secs(10);

#[test]
fn async_daemon_drains_for_less_than_dockers_grace_period_by_default() {
    // The chapter's rule: the drain must end before the supervisor's
    // SIGKILL. The default must keep it under the shortest common one.
    let mut daemon = start(&[]);
    daemon.listing.signal(Signal::SIGTERM);
    let got = daemon.listing.expect(r"Got SIGTERM: .*at most (\d+) s");
    let deadline = Duration::from_secs(got[1].parse().expect("seconds"));
    daemon.listing.expect("All connections closed; exiting");
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
    assert!(
        deadline < DOCKER_STOP_GRACE,
        "the default drain, {deadline:?}, races docker's SIGKILL"
    );
    // And the chapter says what the listing does.
    let chapter = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch29-async-shutdown.md"
    ))
    .expect("the chapter");
    let words = ["zero", "one", "two", "three", "four", "five", "six"];
    let words = [&words[..], &["seven", "eight", "nine", "ten"]].concat();
    let secs = words[deadline.as_secs() as usize];
    let said = format!("`--drain-secs` ({secs} seconds by default");
    assert!(chapter.contains(&said), "the chapter does not say {said:?}");
}

#[test]
fn async_daemon_dies_of_a_second_signal_and_removes_its_directory_first() {
    daemon::dies_of_a_second_signal_and_removes_its_directory_first(bin!(
        "async-daemon"
    ));
}

#[test]
fn untracked_tasks_die_unanswered_with_the_process() {
    let mut daemon = start(&["--untracked"]);
    reconfigure(&mut daemon, "delay_ms = 3000\n");
    let mut client = Client::connect(daemon.addr);
    client.send("lost");
    logged_request(&mut daemon, "lost");
    daemon.listing.signal(Signal::SIGTERM);
    // Nobody tracks the connection: the drain finds nothing to wait for.
    daemon.listing.expect(
        r"Got SIGTERM: no new connections; draining 0 connection\(s\), at most \d+ s",
    );
    daemon.listing.expect("All connections closed; exiting");
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
    // The request was received, and is never answered: `main` never
    // returned; the daemon died of the signal with the task still at work,
    // and the kernel closed its socket.
    assert_eq!(client.reply(), None);
}

#[test]
fn async_daemon_as_pid_1_exits_143_after_a_clean_drain() {
    // The kernel drops a PID 1's own raise of SIGTERM: a daemon that ended
    // with emulate_default_handler fell through to abort(), dropped too,
    // and died of SIGSEGV (status 139).
    let Some((mut daemon, pid)) = as_pid_1(
        bin!("async-daemon"),
        &["127.0.0.1:0"],
        r"Listening on \S+ as pid 1; config \S+",
    ) else {
        return;
    };
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    daemon.expect("Got SIGTERM: no new connections; draining 0 .*");
    daemon.expect("All connections closed; exiting");
    // unshare exits with its child's status.
    let out = daemon.finish();
    assert_exited_with(&out, 143);
}

#[test]
fn async_daemon_session_matches_the_book() {
    let Some((out, terminal2)) = daemon::book_session(bin!("async-daemon"))
    else {
        return;
    };
    // `cargo run` execs the daemon: its status is the shell's `$?`.
    let status = [dollar_question(out.status)];
    assert_session_matches_book(
        "ch29-async-shutdown/29-01-async-daemon.out",
        &[
            (cargo_run("async-daemon", &[]), &out.stdout[..]),
            ("echo $?".to_string(), &status[..]),
        ],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch29-async-shutdown/29-01-terminal-2.out",
        &session,
    );
}

/// The log says who ended a connection: a client that closes is
/// `closed`; one the stop ends is `closed at the stop`, not the same line
/// as if its client had left. (An idle minute and a line too long have
/// words of their own too: the first is checked in the listing's unit
/// tests, on tokio's paused clock.)
#[test]
fn async_daemon_logs_a_connection_ended_by_the_stop_as_such() {
    let mut daemon = start(&[]);
    let mut client = Client::connect(daemon.addr);
    let port = client.stream.local_addr().unwrap().port();
    daemon
        .listing
        .expect(&format!(r"127\.0\.0\.1:{port}: connected"));
    daemon.listing.signal(Signal::SIGTERM);
    daemon.listing.expect(r"Got SIGTERM: .*");
    assert_eq!(client.reply(), None, "the end of the stream");
    drop(client);
    daemon
        .listing
        .expect(&format!(r"127\.0\.0\.1:{port}: closed at the stop"));
    daemon.listing.expect("All connections closed; exiting");
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
}

#[test]
fn async_daemon_rejects_bad_arguments_and_configurations_in_one_line() {
    daemon::rejects_bad_arguments_and_configurations_in_one_line(bin!(
        "async-daemon"
    ));
}

// ---------------------------------------------------------------------------
// Requests that arrive just before the signal, and after it

#[test]
fn async_daemon_answers_every_request_that_came_before_the_signal() {
    daemon::answers_every_request_that_came_before_the_signal(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_stops_taking_requests_from_a_client_that_keeps_sending() {
    daemon::stops_taking_requests_from_a_client_that_keeps_sending(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_gives_a_client_that_never_reads_five_seconds_after_the_stop() {
    daemon::gives_a_client_that_never_reads_five_seconds_after_the_stop(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_gives_a_client_that_keeps_taking_a_little_five_seconds_after_the_stop()
 {
    daemon::gives_a_client_that_keeps_taking_a_little_five_seconds_after_the_stop(bin!(
        "async-daemon"
    ));
}

/// A connection that is busy when the stop comes answers what had reached
/// the daemon by then, and nothing the client sends afterwards: the stop
/// is noted as it comes, not once the work in hand is done.
#[test]
fn async_daemon_busy_at_the_stop_answers_no_request_sent_after_it() {
    let mut daemon = start(&[]);
    reconfigure(&mut daemon, "delay_ms = 200\n");
    let mut client = Client::connect(daemon.addr);
    // Twenty requests in one write, read at once: four seconds of work.
    let early: String = (0..20).map(|i| format!("early{i}\n")).collect();
    client.stream.write_all(early.as_bytes()).unwrap();
    logged_request(&mut daemon, "early0");
    daemon.listing.signal(Signal::SIGTERM);
    // Two requests begun after the drain began: between them the task
    // waited 200 ms on its work, and the stop woke it there.
    let (mut draining, mut begun_after) = (false, 0);
    while begun_after < 2 {
        let line = daemon.listing.next_line();
        if line.contains("draining 1 connection(s)") {
            draining = true;
        } else if draining && line.contains(": request \"early") {
            begun_after += 1;
        }
    }
    client.stream.write_all(b"late\n").unwrap();
    let mut replies = Vec::new();
    while let Some(reply) = client.reply() {
        replies.push(reply);
    }
    let answered: Vec<_> =
        (0..20).map(|i| format!("hello, early{i}\n")).collect();
    assert_eq!(replies, answered);
    drop(client);
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
}

/// A line too long that the daemon first finds at the stop, among the
/// bytes that had come before it, is refused, and the log says so: the
/// daemon closed after a line too long, not merely at the stop.
#[test]
fn async_daemon_logs_a_line_too_long_found_at_the_stop_as_such() {
    use crate::support::unsent_by_server;
    let mut daemon = start(&[]);
    reconfigure(&mut daemon, "delay_ms = 1000\n");
    let mut client = Client::connect(daemon.addr);
    let port = client.stream.local_addr().unwrap().port();
    // A request, and in the same write the start of a line longer than
    // 64 KiB: the daemon reads a chunk of it, then works on the request.
    let mut bytes = b"a\n".to_vec();
    bytes.extend_from_slice(&[b'x'; 66_000]);
    client.stream.write_all(&bytes).unwrap();
    logged_request(&mut daemon, "a");
    wait_until("the rest to reach the daemon", || {
        unsent_by_server(port, daemon.addr.port()) == 0
    });
    daemon.listing.signal(Signal::SIGTERM);
    assert_eq!(client.reply().as_deref(), Some("hello, a\n"));
    assert_eq!(client.reply().as_deref(), Some("error: line too long\n"));
    assert_eq!(client.reply(), None);
    drop(client);
    // The connection's last line, whatever it says.
    let peer = format!("127.0.0.1:{port}: ");
    let ended = loop {
        let line = daemon.listing.next_line();
        if line.starts_with(&peer) && !line.contains(": request ") {
            break line;
        }
    };
    assert_eq!(ended, format!("{peer}closed after a line too long"));
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
}

/// Work that outlasts the five seconds from the stop: every request
/// received before it is still answered, since a reply that can go at once
/// goes, but the waits after the cutoff get no time. A client that reads
/// every reply and the end of the stream, and has not closed yet, is cut
/// off at once, logged `timed out`, not given five seconds more.
#[test]
fn async_daemon_answers_work_past_the_cutoff_then_closes_at_once() {
    let mut daemon = start(&[]);
    reconfigure(&mut daemon, "delay_ms = 300\n");
    let mut client = Client::connect(daemon.addr);
    // Twenty requests in one write: six seconds of work.
    let early: String = (0..20).map(|i| format!("early{i}\n")).collect();
    client.stream.write_all(early.as_bytes()).unwrap();
    logged_request(&mut daemon, "early0");
    let sent_term = Instant::now();
    daemon.listing.signal(Signal::SIGTERM);
    let mut replies = Vec::new();
    while let Some(reply) = client.reply() {
        replies.push(reply);
    }
    let ended = Instant::now();
    let answered: Vec<_> =
        (0..20).map(|i| format!("hello, early{i}\n")).collect();
    assert_eq!(replies, answered);
    assert!(
        sent_term.elapsed() > Duration::from_secs(5),
        "work outlasted"
    );
    // The client holds its end open: the daemon does not wait for it.
    while !daemon.listing.next_line().ends_with(": timed out") {}
    let waited = ended.elapsed();
    drop(client);
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
    assert!(
        waited < Duration::from_secs(2),
        "the close waited {waited:?}"
    );
}

/// A reply begun after the stop that cannot go gives up at the cutoff, not
/// five seconds after it began. Replies of 60 KB to a client with a small
/// receive buffer, which floods without reading, takes one burst of
/// replies four seconds after the stop, and then holds its end open: the
/// replies to what came before the stop fill the buffers again, and the
/// next one waits. With five seconds of its own it held the daemon to its
/// eight-second deadline.
#[test]
fn async_daemon_gives_up_a_reply_blocked_after_the_stop_at_the_cutoff() {
    let mut daemon = start(&[]);
    let greeting = "g".repeat(60_000);
    reconfigure(&mut daemon, &format!("greeting = {greeting}\n"));
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    socket.connect(&daemon.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    let port = stream.local_addr().unwrap().port();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let line = format!("{}\n", "x".repeat(1000));
        while writer.write_all(line.as_bytes()).is_ok() {}
    });
    let daemon_port = daemon.addr.port();
    wait_until("the daemon to stop reading", || {
        unsent_by_server(daemon_port, port) > 0
            && unsent_by_server(port, daemon_port) > 0
    });
    let sent_term = Instant::now();
    daemon.listing.signal(Signal::SIGTERM);
    // The client's pace, not a wait for the daemon.
    thread::sleep(Duration::from_secs(4));
    let mut reader = stream.try_clone().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut taken = 0;
    while taken < 2_500_000 {
        // The end of the stream ends the burst too: a daemon that gave up
        // before it wrote that much has closed, and read would return 0
        // for ever.
        match reader.read(&mut buf).expect("a burst of replies") {
            0 => break,
            n => taken += n,
        }
    }
    let out = daemon.finish();
    let took = sent_term.elapsed();
    drop(stream);
    sender.join().unwrap();
    let last = out.stdout.last().map(String::as_str);
    assert!(
        out.status.signal() == Some(Signal::SIGTERM as i32)
            && took < Duration::from_secs(7),
        "{:?} after {took:?}; last line {last:?}",
        out.status
    );
}

/// The trap of the stop, on tokio 1.54: a socket that `from_std` has just
/// registered is believed empty until the runtime's driver has seen it
/// ready, and a read returns `Pending` however many bytes the kernel holds;
/// one from tokio's own `accept` starts out readable, and the same read
/// takes the request at once. Each read is polled once, with the driver
/// kept from running since the socket was registered.
#[test]
fn a_socket_from_std_is_unread_until_tokios_driver_has_seen_it() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    use tokio::io::AsyncReadExt;
    /// Polls one read of `stream` once, as a task would the first time.
    fn first_read(stream: &mut tokio::net::TcpStream) -> Poll<usize> {
        let mut buf = [0u8; 64];
        let read = std::pin::pin!(stream.read(&mut buf));
        let mut context = Context::from_waker(Waker::noop());
        read.poll(&mut context).map(|n| n.expect("read"))
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Two clients, each with its request in the kernel before any accept.
    let clients = [TcpStream::connect(addr), TcpStream::connect(addr)];
    for mut client in clients.iter().map(|c| c.as_ref().unwrap()) {
        client.write_all(b"hello\n").unwrap();
        let port = client.local_addr().unwrap().port();
        wait_until("the request to reach the server", || {
            unread_by_server(addr.port(), port) == 6
        });
    }
    // As `accept_waiting` takes a client: std's accept, then `from_std`.
    let (taken, _) = listener.accept().unwrap();
    taken.set_nonblocking(true).unwrap();
    let mut from_std = tokio::net::TcpStream::from_std(taken).unwrap();
    assert_eq!(first_read(&mut from_std), Poll::Pending);
    // As the accept loop takes one: `block_on` returns as soon as the
    // accept is done, before its driver runs again.
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let (mut accepted, _) = runtime.block_on(listener.accept()).unwrap();
    assert_eq!(first_read(&mut accepted), Poll::Ready(6));
}

// ---------------------------------------------------------------------------
// The protocol of Chapter 10's daemon, byte for byte

/// The daemon's log is a pipe that nobody reads after the ready line, as
/// when its reader is stopped: the pipe fills, and still every request is
/// answered and SIGTERM stops the daemon, since no task waits for the log.
#[test]
fn async_daemon_serves_and_stops_while_nobody_reads_its_log() {
    daemon::serves_and_stops_while_nobody_reads_its_log(bin!("async-daemon"));
}

/// A client that goes on sending after the server's end of stream, and
/// never reads, holds its connection past the stop for as long as the
/// gentle close allows (PEER_TIMEOUT, 5 s), not longer: the default drain
/// of 8 s still ends in a death by SIGTERM.
#[test]
fn a_client_that_sends_after_the_end_of_stream_holds_the_close_five_seconds() {
    let mut daemon = start(&[]);
    let client = Client::connect(daemon.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = thread::spawn({
        let (stop, mut stream) = (Arc::clone(&stop), client.stream);
        move || {
            while !stop.load(Ordering::SeqCst)
                && stream.write_all(b"x\n").is_ok()
            {
                thread::sleep(Duration::from_millis(10));
            }
        }
    });
    logged_request(&mut daemon, "x");
    let sent_term = Instant::now();
    daemon.listing.signal(Signal::SIGTERM);
    while !daemon.listing.next_line().ends_with(": timed out") {}
    let held = sent_term.elapsed();
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
    assert!(held >= Duration::from_millis(4500), "closed after {held:?}");
}

/// A client that takes the reply it was slow to read just before that
/// reply's five seconds run out, and then neither reads nor closes, has
/// five seconds from the stop in all, as with Listing 10-1: not five for
/// the reply and five more for the close, which held the default drain of
/// 8 s to its deadline and ended it with status 1.
#[test]
fn async_daemon_gives_a_slow_reader_five_seconds_in_all_after_the_stop() {
    let mut daemon = start(&[]);
    let client = Client::connect(daemon.addr);
    let port = client.stream.local_addr().unwrap().port();
    let mut writer = client.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let line = format!("{}\n", "x".repeat(1000));
        // Until the daemon is gone: its close fails the next write.
        while writer.write_all(line.as_bytes()).is_ok() {}
    });
    logged_request(&mut daemon, "x+");
    // The client's receive window is shut, and so is the daemon's: its
    // reply waits, and it reads no more requests.
    let daemon_port = daemon.addr.port();
    wait_until("the daemon to stop reading", || {
        unsent_by_server(daemon_port, port) > 0
            && unsent_by_server(port, daemon_port) > 0
    });
    let sent_term = Instant::now();
    daemon.listing.signal(Signal::SIGTERM);
    // The client's pace, not a wait for the daemon: it makes room four
    // seconds after the stop, within the waiting reply's five.
    thread::sleep(Duration::from_secs(4));
    // Every reply, up to the daemon's end of stream; then the client holds
    // its end open, and its sender goes on.
    let mut reader = client.stream.try_clone().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while reader.read(&mut buf).expect("the replies") > 0 {}
    let out = daemon.finish();
    let took = sent_term.elapsed();
    drop(client);
    sender.join().unwrap();
    let last = out.stdout.last().map(String::as_str);
    assert!(
        out.status.signal() == Some(Signal::SIGTERM as i32)
            && took < Duration::from_secs(7),
        "{:?} after {took:?}; last line {last:?}",
        out.status
    );
}

/// Sends `bytes`, half-closes, and returns everything the daemon sent
/// back until it closed.
fn converse(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    converse_in_two(addr, bytes, b"")
}

/// Like [`converse`], in two writes, the second once the daemon has read
/// the first: so that the daemon reads the second by itself.
fn converse_in_two(addr: SocketAddr, first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut stream =
        TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut reader = stream.try_clone().unwrap();
    // Read while writing: a long request may be refused half-way.
    let replies = thread::spawn(move || {
        let mut replies = Vec::new();
        reader.read_to_end(&mut replies).map(|_| replies)
    });
    stream.write_all(first).expect("send");
    if !second.is_empty() {
        let (server, client) = (addr.port(), stream.local_addr().unwrap());
        wait_until("the daemon to read the first part", || {
            unread_by_server(server, client.port()) == 0
        });
        stream.write_all(second).expect("send");
    }
    stream.shutdown(Shutdown::Write).unwrap();
    replies.join().unwrap().expect("replies, then a clean end")
}

#[test]
fn async_daemon_speaks_sig_daemons_protocol_byte_for_byte() {
    let line = |len: usize| {
        let mut line = vec![b'x'; len];
        line.push(b'\n');
        line
    };
    let hello = |what: &str| format!("hello, {what}\n").into_bytes();
    // 64 KiB with its newline: the longest line, however the reads split
    // it.
    let longest = 64 * 1024 - 1;
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        // Not UTF-8: answered with U+FFFD, and the next line too.
        (
            b"caf\xe9\nnext\n".to_vec(),
            [hello("caf\u{fffd}"), hello("next")].concat(),
        ),
        // Trailing white space, CR included, is not part of a request.
        (
            b"dos\r\n  two  \n\n".to_vec(),
            [hello("dos"), hello("  two"), hello("")].concat(),
        ),
        // A last line without a newline is not a request.
        (b"one\nunfinished".to_vec(), hello("one")),
        (line(longest), hello(&"x".repeat(longest))),
        (line(longest + 1), b"error: line too long\n".to_vec()),
        // The longest between two short lines, in one write: the bytes
        // after its newline are the next line's, not its own.
        (
            [&b"a\n"[..], &line(longest), b"b\n"].concat(),
            [hello("a"), hello(&"x".repeat(longest)), hello("b")].concat(),
        ),
        // 16 MiB without a newline, more than the socket buffers hold:
        // refused while the client still sends, and read to its end, so
        // that the refusal arrives rather than a reset.
        (vec![b'x'; 16 << 20], b"error: line too long\n".to_vec()),
        // 64 KiB without a newline, then the end: not a request, and not
        // yet too long (Chapter 10 waits for the byte that makes it so).
        (vec![b'x'; 64 * 1024], Vec::new()),
    ];
    for bin in [bin!("sig-daemon"), bin!("async-daemon")] {
        let daemon = start_exactly(bin, &["127.0.0.1:0"]);
        for (i, (request, want)) in cases.iter().enumerate() {
            let got = converse(daemon.addr, request);
            assert!(
                got == *want,
                "{bin}, case {i}: got {:?}",
                String::from_utf8_lossy(&got[..got.len().min(200)])
            );
        }
        // 64 KiB less a byte, read; then two more bytes in one write:
        // the line is too long, although the daemon never held exactly
        // 64 KiB of it.
        let got = converse_in_two(daemon.addr, &[b'x'; 64 * 1024 - 1], b"xx");
        assert_eq!(got, b"error: line too long\n", "{bin}");
        // 64 KiB less a byte, read; then its newline alone: the longest
        // line still.
        let got = converse_in_two(daemon.addr, &[b'x'; 64 * 1024 - 1], b"\n");
        assert_eq!(got, hello(&"x".repeat(longest)), "{bin}");
    }
}

// ---------------------------------------------------------------------------
// Listing 29-2: five more tools

#[test]
fn async_shutdown_tools_output_matches_the_book() {
    let out = crate::support::run_clean(bin!("async-shutdown-tools"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stderr, "");
    assert_session_matches_book(
        "ch29-async-shutdown/29-02-async-shutdown-tools.out",
        &[(cargo_run("async-shutdown-tools", &[]), &out.stdout)],
    );
}

#[test]
fn async_daemon_says_so_when_it_cannot_accept_the_clients_still_queued() {
    const LIMIT: usize = 40;
    let mut daemon = daemon::start_with_fd_limit(bin!("async-daemon"), LIMIT);
    // `accept` fails with EMFILE once the table is full, whether or not a
    // client is queued; the daemon says so once, and then backs off.
    let emfile = "accept failed: Too many open files (os error 24)";
    let backing_off = format!("{emfile}; trying again, less often");
    let failing =
        regex::Regex::new(&format!("^{}$", regex::escape(&backing_off)))
            .unwrap();
    let (idle, said) =
        daemon::fill_with_idle_clients(&mut daemon, LIMIT, &failing);
    assert_eq!(said, 1);
    // It fails five or six times in half a second, and says nothing more.
    assert!(
        daemon.listing.no_line_within(Duration::from_millis(500)),
        "the log goes on"
    );
    let turned_away =
        format!("{emfile}; clients still queued, if any, are turned away");
    daemon::stop_resets_the_client_still_queued(
        daemon,
        idle,
        Some(&turned_away),
    );
}

// ---------------------------------------------------------------------------
// What the cancel-safety table says a dropped future loses

/// `read_to_end` under a timeout that expires: what it read stays in the
/// caller's `Vec`, and the next call appends to it. `read_exact` keeps
/// nothing it can account for: made again, it fills the buffer from the
/// start.
#[tokio::test(start_paused = true)]
async fn a_dropped_read_to_end_keeps_its_bytes_and_read_exact_starts_over() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
    use tokio::time::timeout;
    let (mut client, mut server) = duplex(64);
    client.write_all(b"abc").await.unwrap();
    let mut got = Vec::new();
    let read = timeout(Duration::from_secs(1), server.read_to_end(&mut got));
    assert!(read.await.is_err(), "the stream has not ended");
    assert_eq!(got, b"abc");
    client.write_all(b"def").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(server.read_to_end(&mut got).await.unwrap(), 3);
    assert_eq!(got, b"abcdef");

    let (mut client, mut server) = duplex(64);
    client.write_all(b"abc").await.unwrap();
    let mut buf = [0u8; 6];
    let read = timeout(Duration::from_secs(1), server.read_exact(&mut buf));
    assert!(read.await.is_err(), "only three of six bytes came");
    client.write_all(b"defghi").await.unwrap();
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"defghi", "the first three bytes are lost");
}

/// `SinkExt::send` on a `Framed`, under a timeout that expires while the
/// flush waits for a reader: the message is not lost. The first poll put
/// it, whole, in the `Framed`'s write buffer; only the flush was given up,
/// and a later flush delivers it. It is lost only if the future is dropped
/// before the `Framed` takes it, while a fuller buffer is being flushed.
#[tokio::test(start_paused = true)]
async fn a_dropped_framed_send_has_its_message_in_the_buffer() {
    use futures_util::SinkExt;
    use tokio::io::{AsyncReadExt, duplex};
    use tokio::time::timeout;
    use tokio_util::codec::{Framed, LinesCodec};
    let (client, mut server) = duplex(4);
    let mut framed = Framed::new(client, LinesCodec::new());
    let reply = "a reply".to_string();
    let sent = timeout(Duration::from_secs(1), framed.send(reply));
    assert!(sent.await.is_err(), "4 bytes of room, 8 to write: blocked");
    assert!(!framed.write_buffer().is_empty(), "part of it is waiting");
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 8];
        while got.len() < 8 {
            let n = server.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
    };
    let flush = SinkExt::<String>::flush(&mut framed);
    let (flushed, ()) = tokio::join!(flush, read);
    flushed.unwrap();
    assert_eq!(got, b"a reply\n", "delivered whole, once");
    // And the chapter's table says so.
    let send = table_row("`SinkExt::send`");
    assert!(send.contains("| no | the flush:"), "{send}");
}

/// `Signal::recv` is dropped each time another branch of a listing's
/// `select!` wins. A signal that comes while a `recv` waits, and is then
/// dropped without being polled again, stays in the stream; so does one
/// that comes while no `recv` exists at all. The next `recv` takes each at
/// once, and only once. A second stream for the same signal shows when
/// tokio has delivered it, without taking it from the first.
///
/// tokio's handler for SIGUSR2 would stay in the test process for every
/// test after this one, so the test runs itself again as a child, as
/// ch02's test of signal-hook's abort does, and the child does the work.
#[test]
fn a_dropped_signal_recv_leaves_the_signal_in_the_stream() {
    const IN_CHILD: &str = "CH29_DROPPED_SIGNAL_RECV";
    if std::env::var_os(IN_CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(dropped_signal_recv_in_this_process());
        return;
    }
    let name = "ch29_async_shutdown::a_dropped_signal_recv_leaves_the_signal_in_the_stream";
    let mut again = std::process::Command::new(
        std::env::current_exe().expect("this test binary"),
    );
    again
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1")
        .env("RUST_BACKTRACE", "0");
    let out =
        crate::support::Listing::spawn(&mut again, Stdio::piped()).finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert!(
        out.stdout.iter().any(|line| line.contains("1 passed")),
        "the child ran no test: {:?}",
        out.stdout
    );
}

async fn dropped_signal_recv_in_this_process() {
    use futures_util::FutureExt;
    use nix::sys::signal::raise;
    use tokio::signal::unix::{SignalKind, signal};
    use tokio::time::timeout;
    let kind = SignalKind::user_defined2();
    let mut stream = signal(kind).expect("a stream");
    let mut witness = signal(kind).expect("a second stream");
    {
        let mut waiting = Box::pin(stream.recv());
        assert!(waiting.as_mut().now_or_never().is_none(), "none yet");
        raise(Signal::SIGUSR2).expect("raise");
        timeout(PATIENCE, witness.recv()).await.expect("delivered");
    }
    let first = timeout(PATIENCE, stream.recv()).await;
    assert!(first.is_ok(), "lost with the dropped recv");
    assert!(stream.recv().now_or_never().is_none(), "taken once");
    raise(Signal::SIGUSR2).expect("raise");
    timeout(PATIENCE, witness.recv()).await.expect("delivered");
    let second = timeout(PATIENCE, stream.recv()).await;
    assert!(second.is_ok(), "lost while no recv existed");
}

/// `StreamExt::next` on a `Framed` is dropped when its `timeout` expires
/// or the other branch of 30-1's `select!` wins, maybe with part of a line
/// read. What it read stays in the `Framed`'s buffer, and the next `next`
/// returns the whole line.
#[tokio::test(start_paused = true)]
async fn a_dropped_framed_next_keeps_the_part_of_a_line_it_read() {
    use futures_util::StreamExt;
    use tokio::io::{AsyncWriteExt, duplex};
    use tokio::time::timeout;
    use tokio_util::codec::{Framed, LinesCodec};
    let (mut client, server) = duplex(64);
    let mut framed = Framed::new(server, LinesCodec::new());
    client.write_all(b"Spam").await.unwrap();
    let next = timeout(Duration::from_secs(1), framed.next());
    assert!(next.await.is_err(), "half a line");
    assert_eq!(&framed.read_buffer()[..], b"Spam", "taken from the stream");
    client.write_all(b" 004\n").await.unwrap();
    let line = framed.next().await.expect("a line").expect("no error");
    assert_eq!(line, "Spam 004");
}

/// The row of the chapter's cancel-safety table that begins with `future`.
fn table_row(future: &str) -> String {
    let chapter = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch29-async-shutdown.md"
    ))
    .expect("the chapter");
    let start = format!("| {future}");
    let row = chapter.lines().find(|line| line.starts_with(&start));
    row.unwrap_or_else(|| panic!("no row for {future}"))
        .to_string()
}

/// A future that loses only time when dropped is not cancel safe by the
/// chapter's own definition (made again, it does not pick up where the
/// last one was), nor by tokio's, which counts a place lost in a queue as
/// a loss: the table says "no", and what is lost. 30-1's accept loop
/// waits for a semaphore's permit in a `select!`, and tokio documents
/// that dropping `acquire_owned` loses its place in the queue: it has a
/// row too, which says so.
#[test]
fn the_table_counts_lost_time_as_a_loss() {
    for future in ["`sleep`", "`Backoff::failed`"] {
        let row = table_row(future);
        assert!(row.contains(" | no | "), "{row}");
    }
    let row = table_row("`Semaphore::acquire_owned`");
    assert!(
        row.contains(" | 30-1 | no | its place in the queue"),
        "{row}"
    );
    // A loss is a loss: a row says "yes" exactly when a drop loses nothing.
    let chapter = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch29-async-shutdown.md"
    ))
    .expect("the chapter");
    let header = "| Future | Where | Cancel safe? | What a drop loses |";
    let table = chapter.split(header).nth(1).expect("the table");
    let rows: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with("| "))
        .collect();
    assert!(rows.len() > 10, "{rows:#?}");
    for row in rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        let (safe, loss) = (cells[2], cells[3]);
        assert_eq!(safe == "yes", loss.starts_with("nothing"), "{row}");
    }
}

/// `Child::wait` under a timeout that expires: the child runs on, but the
/// wait's first poll closed its stdin.
#[tokio::test]
async fn a_dropped_child_wait_has_closed_the_childs_stdin() {
    use tokio::io::AsyncReadExt;
    use tokio::process::Command;
    use tokio::time::timeout;
    let mut child = Command::new("sh")
        .args(["-c", "cat; echo stdin closed; exec sleep 60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sh");
    assert!(timeout(Duration::ZERO, child.wait()).await.is_err());
    assert!(child.stdin.is_none());
    let mut stdout = child.stdout.take().unwrap();
    let mut said = [0u8; 13];
    timeout(PATIENCE, stdout.read_exact(&mut said))
        .await
        .expect("sh says so in time")
        .unwrap();
    assert_eq!(&said, b"stdin closed\n");
    assert_eq!(child.try_wait().unwrap(), None, "still running");
    child.kill().await.unwrap();
}

#[test]
fn async_daemon_hears_its_signals_at_once_while_accept_keeps_failing() {
    const LIMIT: usize = 40;
    let script = format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\"");
    let bin = bin!("async-daemon");
    let mut daemon =
        start_exactly("bash", &["-c", &script, bin, "127.0.0.1:0"]);
    let pid = daemon.listing.pid();
    let backing_off = "accept failed: Too many open files (os error 24); \
                       trying again, less often";
    // Idle clients until no descriptor is left, and one more in the queue.
    let mut idle = Vec::new();
    let mut failing = false;
    while open_fds(pid) < LIMIT {
        idle.push(Client::connect(daemon.addr));
        loop {
            let line = daemon.listing.next_line();
            if line == backing_off {
                failing = true;
                continue;
            }
            assert!(line.ends_with(": connected"), "{line}");
            break;
        }
    }
    let _queued = Client::connect(daemon.addr);
    if !failing {
        assert_eq!(daemon.listing.next_line(), backing_off);
    }
    // Not a synchronisation: the back-off grows to its second meanwhile.
    thread::sleep(Duration::from_secs(2));
    // Each signal is heard at once, not when the back-off's wait ends.
    for _ in 0..6 {
        let sent = Instant::now();
        daemon.listing.signal(Signal::SIGHUP);
        let line = daemon.listing.next_line();
        // The file cannot be opened either: no descriptor is left.
        assert!(line.starts_with("Reload failed"), "{line}");
        let heard = sent.elapsed();
        assert!(
            heard < Duration::from_millis(500),
            "reloaded after {heard:?}"
        );
    }
    let sent = Instant::now();
    daemon.listing.signal(Signal::SIGTERM);
    let line = daemon.listing.next_line();
    assert!(line.starts_with("accept failed"), "{line}");
    let line = daemon.listing.next_line();
    assert!(line.starts_with("Got SIGTERM"), "{line}");
    let heard = sent.elapsed();
    assert!(
        heard < Duration::from_millis(500),
        "stopped after {heard:?}"
    );
    drop(idle);
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
}

#[test]
fn async_daemon_logs_a_shortage_once_while_clients_come_and_go() {
    daemon::logs_a_shortage_once_while_clients_come_and_go(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_logs_a_reset_that_ends_its_gentle_close() {
    daemon::logs_a_reset_that_ends_its_gentle_close(bin!("async-daemon"));
}

#[test]
fn async_shutdown_listings_start_or_say_why_when_descriptors_are_short() {
    // tokio's runtime needs six descriptors to start, and its signal
    // driver panics when it cannot make its socket pair: each listing must
    // say so in one line instead, and the daemon leave no directory.
    let tmp = tempfile::tempdir().unwrap();
    let daemon = || {
        let mut command = std::process::Command::new(bin!("async-daemon"));
        command.arg("127.0.0.1:0").env("TMPDIR", tmp.path());
        command
    };
    let started = assert_starts_or_says_why(daemon, 4..=12, |listing| {
        listing.signal(Signal::SIGTERM);
    });
    assert!(started.contains(&12), "started at {started:?}");
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let tools = || std::process::Command::new(bin!("async-shutdown-tools"));
    let started = assert_starts_or_says_why(tools, 4..=12, |_| {});
    assert!(started.contains(&12), "started at {started:?}");
}

#[test]
fn async_daemon_never_says_it_listens_when_its_log_thread_is_refused() {
    // The main thread and tokio's one worker take the two threads allowed.
    daemon::never_says_it_listens_when_its_log_thread_is_refused(
        bin!("async-daemon"),
        2,
    );
}

#[test]
fn async_daemon_backs_off_and_says_so_once_a_run_when_descriptors_run_out() {
    daemon::backs_off_and_says_so_once_a_run_when_descriptors_run_out(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_shutdown_listings_say_why_when_tokio_worker_threads_is_bad() {
    // As in Chapter 28: a worker count tokio cannot read is an error in
    // one line, not tokio's panic, and the daemon leaves no directory.
    let tmp = tempfile::tempdir().unwrap();
    assert_says_why_on_bad_worker_threads(|| {
        let mut command = std::process::Command::new(bin!("async-daemon"));
        command.arg("127.0.0.1:0").env("TMPDIR", tmp.path());
        command
    });
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_says_why_on_bad_worker_threads(|| {
        std::process::Command::new(bin!("async-shutdown-tools"))
    });
}

#[test]
fn async_shutdown_tools_says_why_when_its_blocking_thread_is_refused() {
    // Three threads for the user: the main one, and the second runtime's
    // worker while the first one's, stopped by `shutdown_background`,
    // still counts, leave none for `spawn_blocking`, which then panics;
    // unwinding through the runtime waited for ever. Whoever wins, the run
    // succeeds, or fails in one line; the race goes both ways, so eight.
    for _ in 0..8 {
        let mut command =
            std::process::Command::new(bin!("async-shutdown-tools"));
        command.env("TOKIO_WORKER_THREADS", "1");
        let Some((mut command, _dir)) =
            crate::support::with_thread_limit(&command, 3)
        else {
            return;
        };
        let out = crate::support::Listing::spawn(&mut command, Stdio::piped())
            .finish();
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        if out.status.success() {
            assert_eq!(out.stdout.len(), 7, "{:?}", out.stdout);
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        let lines: Vec<_> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {:?}", out.stderr);
        assert!(
            lines[0].starts_with("async-shutdown-tools: cannot start "),
            "{}",
            lines[0]
        );
    }
}

/// A log that fills its disk: lines that cannot be written are counted
/// and reported on stderr, in one line, at the end.
#[test]
fn async_daemon_says_at_the_end_how_many_log_lines_it_could_not_write() {
    daemon::says_at_the_end_how_many_log_lines_it_could_not_write(bin!(
        "async-daemon"
    ));
}

/// A parent may leave SIGINT, SIGTERM and SIGHUP blocked (`env
/// --block-signal`, coreutils 9.1 here, does so and execs), and `exec`
/// keeps the mask, which every thread of tokio's runtime inherits. The
/// daemon keeps them blocked on purpose while the runtime starts, so that
/// its workers never take them, and unblocks them on the main thread
/// alone once its streams exist: that unblock must undo a parent's block
/// too. It used to run on after each of them, its signals pending.
#[test]
fn async_daemon_hears_signals_its_parent_had_blocked() {
    for stop in [Signal::SIGTERM, Signal::SIGINT] {
        let mut command = std::process::Command::new("env");
        command
            .arg("--block-signal=INT,TERM,HUP")
            .arg(bin!("async-daemon"))
            .arg("127.0.0.1:0");
        let mut daemon =
            crate::support::Listing::spawn(&mut command, Stdio::piped());
        let ready = daemon
            .expect(r"Listening on 127\.0\.0\.1:\d+ as pid \d+; config (.*)");
        daemon.signal(Signal::SIGHUP);
        daemon.expect(r"Reloaded .*: greeting .*");
        daemon.signal(stop);
        let draining = r"no new connections; draining 0 connection\(s\)";
        daemon.expect(&format!(r"Got {stop}: {draining}, at most \d+ s"));
        daemon.expect("All connections closed; exiting");
        let out = daemon.finish();
        assert_died_of(&out, stop);
        assert!(!Path::new(&ready[1]).exists(), "{} left behind", ready[1]);
    }
}

/// Listing 29-1 took the SIGINT left in its stream for a second signal,
/// and died of it at once, the reply lost.
#[test]
fn async_daemon_drains_under_the_longest_deadline_it_accepts() {
    daemon::drains_under_the_longest_deadline_it_accepts(bin!("async-daemon"));
}

#[test]
fn async_daemon_takes_a_ctrl_c_and_its_wrappers_sigterm_as_one_stop() {
    daemon::takes_a_ctrl_c_and_its_wrappers_sigterm_as_one_stop(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_takes_a_sigterm_and_a_sigint_that_come_together_as_one_stop() {
    daemon::takes_a_sigterm_and_a_sigint_that_come_together_as_one_stop(
        bin!("async-daemon"),
        false,
    );
}

#[test]
fn async_daemon_leaves_a_sigint_ignored_when_it_was_started_so() {
    daemon::leaves_a_sigint_ignored_when_it_was_started_so(bin!(
        "async-daemon"
    ));
}

#[test]
fn async_daemon_leaves_no_directory_when_sigterm_comes_as_it_starts() {
    daemon::leaves_no_directory_when_sigterm_comes_as_it_starts(bin!(
        "async-daemon"
    ));
}

/// Every start step before the ready line names itself, as in Listing
/// 10-1: here the reading of the listener's address (strace makes
/// `getsockname` fail).
#[test]
fn async_daemon_names_the_step_when_reading_its_address_fails() {
    if !have("strace") {
        return;
    }
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-q", "-o", "/dev/null", "-e", "trace=getsockname"])
        .args(["-e", "inject=getsockname:error=ENOBUFS"])
        .args([bin!("async-daemon"), "127.0.0.1:0"]);
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert_exited_with(&out, 1);
    assert!(out.stdout.is_empty(), "said {:?}", out.stdout);
    let want = "async-daemon: cannot read the address of 127.0.0.1:0: \
                No buffer space available";
    let lines: Vec<_> = out.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with(want),
        "{:?}",
        out.stderr
    );
}

/// A start that fails names its step, as Chapter 10's daemon does: a
/// configuration that cannot be read or parsed says so, with the file.
#[test]
fn async_daemon_names_the_step_when_its_configuration_cannot_be_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "delay_ms = soon\n").unwrap();
    let bad = bad.to_str().unwrap();
    let step = "cannot load the configuration: ";
    crate::support::assert_rejects(
        bin!("async-daemon"),
        &["127.0.0.1:0", "--config", missing],
        &format!("{step}{missing}: No such file or directory"),
    );
    crate::support::assert_rejects(
        bin!("async-daemon"),
        &["127.0.0.1:0", "--config", bad],
        &format!("{step}{bad} line 1: delay_ms: invalid digit"),
    );
}

#[test]
fn async_daemon_keeps_little_memory_while_long_requests_wait_for_its_log() {
    daemon::keeps_little_memory_while_long_requests_wait_for_its_log(bin!(
        "async-daemon"
    ));
}

/// Refused every thread (strace makes `clone3` fail), tokio's `build`
/// panics, and the panic hook of each multi-threaded tokio listing says
/// why in one line: one `write`, as every line of a log, so that another
/// writer of the same stderr cannot land in its middle. `writeln!` on
/// unbuffered stderr made it four.
#[test]
fn async_listings_say_in_one_write_that_their_runtime_cannot_start() {
    if !crate::support::can_trace() {
        return;
    }
    for name in [
        "async-ctrl-c",
        "async-signals",
        "async-daemon",
        "async-server",
        "async-shutdown-tools",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace");
        let mut command = std::process::Command::new("strace");
        command
            .args(["-f", "-qq", "-s", "4096", "-o"])
            .arg(&trace)
            .args(["-e", "trace=write,clone,clone3", "-e", "signal=none"])
            .args(["-e", "inject=clone:error=EAGAIN"])
            .args(["-e", "inject=clone3:error=EAGAIN", "--"])
            .arg(crate::support::bin_path(name))
            .env("TMPDIR", dir.path());
        let out = Listing::spawn(&mut command, Stdio::piped()).finish();
        assert_exited_with(&out, 1);
        let trace = fs::read_to_string(&trace).unwrap();
        let writes: Vec<_> = trace
            .lines()
            .filter(|line| line.contains(" write(2, "))
            .collect();
        let line = format!(
            "write(2, \"{name}: cannot start tokio's runtime: OS can't spawn \
             worker thread: "
        );
        assert!(
            writes.len() == 1 && writes[0].contains(&line),
            "{name}: {writes:#?}"
        );
    }
}

/// Which threads may take a stop signal, once the daemon is ready: the
/// runtime's workers keep the block they inherited from `main`, and the
/// main thread, which unblocked them, does not block them (Linux 6.18,
/// /proc/PID/task/TID/status). The log's thread, started after the
/// unblock, has the main thread's mask.
#[test]
fn async_daemon_workers_keep_the_stop_signals_blocked_and_main_takes_them() {
    // SIGHUP (1), SIGINT (2), SIGTERM (15), as bits of SigBlk.
    const STOP: u64 = 1 << 0 | 1 << 1 | 1 << 14;
    let daemon = start(&[]);
    let pid = daemon.listing.pid();
    // A new thread names itself once it runs; until then it shows the
    // process's name and, under load, the log thread was seen with every
    // stop signal still blocked. Read the masks once every thread but
    // main has its name.
    let mut seen = Vec::new();
    wait_until("every thread to have its name", || {
        seen = threads_and_blocked_stop_signals(pid, STOP);
        seen.iter()
            .all(|(tid, name, _)| *tid == pid || name != "async-daemon")
            && seen.iter().any(|(_, name, _)| name == "log")
    });
    let seen: Vec<(String, u64)> = seen
        .into_iter()
        .map(|(tid, name, blocked)| {
            (if tid == pid { "main".into() } else { name }, blocked)
        })
        .collect();
    let main = seen.iter().find(|(name, _)| name == "main");
    assert_eq!(main.map(|m| m.1), Some(0), "{seen:?}");
    let workers: Vec<u64> = seen
        .iter()
        .filter(|(name, _)| name.starts_with("tokio-rt-worker"))
        .map(|w| w.1)
        .collect();
    assert!(!workers.is_empty(), "{seen:?}");
    assert!(workers.iter().all(|&b| b == STOP), "{seen:?}");
    let log = seen.iter().find(|(name, _)| name == "log");
    assert_eq!(log.map(|l| l.1), Some(0), "{seen:?}");
    daemon.listing.signal(Signal::SIGTERM);
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
}

/// Each thread of process `pid`: its id, its name and which of `signals`
/// (bits of SigBlk) it blocks, read from /proc/PID/task.
fn threads_and_blocked_stop_signals(
    pid: Pid,
    signals: u64,
) -> Vec<(Pid, String, u64)> {
    let mut seen = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let tid = task.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let tid = Pid::from_raw(tid);
        let name = fs::read_to_string(task.join("comm")).unwrap();
        let status = fs::read_to_string(task.join("status")).unwrap();
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:\t"))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
            .unwrap();
        seen.push((tid, name.trim().to_string(), blocked & signals));
    }
    seen
}

/// Every `SinkExt` method that Listing 30-1 calls on a `Framed` (each sits
/// under a `timeout`) has a row of the table: a method called as
/// `framed.NAME(` or `SinkExt::<T>::NAME(`, of those `SinkExt` has.
#[test]
fn the_table_has_a_row_for_each_sink_method_30_1_calls() {
    let listing = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ch30-async-sockets/30-01-async-server.rs"
    ))
    .expect("Listing 30-1");
    let sink_methods = ["send", "send_all", "feed", "flush", "close"];
    let call =
        regex::Regex::new(r"(?:framed\.|SinkExt::<[^>]+>::)(\w+)\(").unwrap();
    let called: std::collections::BTreeSet<_> = call
        .captures_iter(&listing)
        .map(|c| c[1].to_string())
        .filter(|name| sink_methods.contains(&name.as_str()))
        .collect();
    assert!(called.len() >= 3, "{called:?}");
    for name in called {
        let row = table_row(&format!("`SinkExt::{name}` on a `Framed`"));
        assert!(row.contains(" | 30-1 | "), "{row}");
    }
}
