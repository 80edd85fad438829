//! Chapter 10, Shutdown and reload: Listing 10-1 (`sig-daemon`), run as a
//! real server, with real clients in flight while it gets its signals, and
//! Listing 10-2 (`sig-notify`), with a real notification socket and Debian's
//! `systemd-socket-activate` handing it its listening socket.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::daemon::{
    self, Client, Daemon, ignoring_sigint, logged_request, reconfigure,
    start_command,
};
use crate::support::{
    Listing, PATIENCE, Trace, as_pid_1, assert_died_of, assert_exited_with,
    assert_rejects, assert_session_matches_book, blessing, can_trace,
    cargo_run, default_port, hand_a_listening_unix_socket, have, runnable_time,
    shell, signal_in, state_of, wait_until,
};

fn start(args: &[&str]) -> Daemon {
    let mut all = vec!["127.0.0.1:0"];
    all.extend(args);
    start_exactly(&all)
}

/// Starts the daemon with exactly `args`.
fn start_exactly(args: &[&str]) -> Daemon {
    daemon::start_exactly(bin!("sig-daemon"), args)
}

/// Whether `pid` sleeps in a kernel function whose name contains `name`.
fn in_kernel_function(pid: nix::unistd::Pid, name: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/wchan"))
        .is_ok_and(|wchan| wchan.contains(name))
        && state_of(pid) == Some('S')
}

/// Reads lines until one matches `pattern`; at most twelve.
fn until(listing: &mut Listing, pattern: &str) {
    let re = regex::Regex::new(&format!("^{pattern}$")).unwrap();
    for _ in 0..12 {
        if re.is_match(&listing.next_line()) {
            return;
        }
    }
    panic!("no line matching /{pattern}/");
}

#[test]
fn sig_daemon_reloads_on_sighup_without_dropping_a_connection() {
    daemon::reloads_on_sighup_without_dropping_a_connection(bin!("sig-daemon"));
}

#[test]
fn sig_daemon_shows_a_config_path_with_a_newline_escaped_in_one_line() {
    daemon::shows_a_config_path_with_a_newline_escaped_in_one_line(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_answers_requests_that_came_together_in_one_write() {
    daemon::answers_requests_that_came_together_in_one_write(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_sends_each_reply_before_the_work_of_later_requests() {
    daemon::sends_each_reply_before_the_work_of_later_requests(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_sends_a_reply_that_follows_work_without_waiting_for_an_ack() {
    daemon::sends_a_reply_that_follows_work_without_waiting_for_an_ack(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_writes_each_line_of_its_log_whole_in_one_write() {
    daemon::writes_each_line_of_its_log_whole_in_one_write(bin!("sig-daemon"));
}

#[test]
fn sig_daemon_counts_the_log_lines_it_could_not_write_once_the_reader_has_gone()
{
    daemon::counts_the_log_lines_it_could_not_write_once_the_reader_has_gone(
        bin!("sig-daemon"),
    );
}

#[test]
fn sig_daemon_closes_a_trickled_request_at_its_idle_bound() {
    daemon::closes_a_trickled_request_at_its_idle_bound(bin!("sig-daemon"));
}

#[test]
fn sig_daemon_drains_every_request_in_flight_and_refuses_new_clients() {
    let (daemon, clients, sent) =
        daemon::sigterm_with_three_requests_in_flight(bin!("sig-daemon"), "8");
    // Each client closes once it has read the end, as a client does: the
    // server waits for that close (up to 5 s), within the deadline.
    for (i, mut client) in clients.into_iter().enumerate() {
        assert_eq!(client.reply(), Some(format!("hello, client{i}\n")));
        assert_eq!(client.reply(), None, "then the end");
    }
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
    assert_eq!(
        out.stdout.last().unwrap(),
        "All connections closed; dying of SIGTERM"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "within the deadline"
    );
}

#[test]
fn sig_daemon_stops_taking_requests_from_a_client_that_keeps_sending() {
    daemon::stops_taking_requests_from_a_client_that_keeps_sending(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_gives_a_client_that_never_reads_five_seconds_after_the_stop() {
    daemon::gives_a_client_that_never_reads_five_seconds_after_the_stop(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_gives_a_client_that_keeps_taking_a_little_five_seconds_after_the_stop()
 {
    daemon::gives_a_client_that_keeps_taking_a_little_five_seconds_after_the_stop(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_answers_every_request_that_came_before_the_signal() {
    // The chapter counts the rounds in words: all of them, half frozen.
    let said = match 2 * daemon::ROUNDS_OF_EACH {
        80 => {
            "gets its reply, eighty times, half of them with the daemon frozen"
        }
        rounds => panic!("ch10 says eighty rounds; the test runs {rounds}"),
    };
    let chapter = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch10-daemon.md"
    ))
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(chapter.contains(said), "ch10 does not say {said:?}");
    daemon::answers_every_request_that_came_before_the_signal(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_gives_up_at_the_deadline_with_status_1() {
    daemon::gives_up_at_the_deadline_with_status_1(bin!("sig-daemon"));
}

#[test]
fn sig_daemon_dies_of_a_second_signal_and_removes_its_directory_first() {
    daemon::dies_of_a_second_signal_and_removes_its_directory_first(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_drains_under_the_longest_deadline_it_accepts() {
    daemon::drains_under_the_longest_deadline_it_accepts(bin!("sig-daemon"));
}

#[test]
fn sig_daemon_takes_a_ctrl_c_and_its_wrappers_sigterm_as_one_stop() {
    daemon::takes_a_ctrl_c_and_its_wrappers_sigterm_as_one_stop(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_takes_a_sigterm_and_a_sigint_that_come_together_as_one_stop() {
    daemon::takes_a_sigterm_and_a_sigint_that_come_together_as_one_stop(
        bin!("sig-daemon"),
        true,
    );
}

#[test]
fn sig_daemon_flag_only_does_not_wake_a_blocked_accept() {
    let mut daemon = start(&["--flag-only"]);
    let pid = daemon.listing.pid();
    // Once the main thread waits in accept() (the kernel's function for
    // that is `inet_csk_accept`), send SIGTERM.
    let in_accept = || in_kernel_function(pid, "accept");
    wait_until("the daemon to wait in accept()", in_accept);
    daemon.listing.signal(Signal::SIGTERM);
    // The flag is set, but accept() goes on waiting: nothing happens.
    assert!(
        daemon.listing.no_line_within(Duration::from_secs(2)),
        "{:?}",
        daemon.listing.transcript()
    );
    assert!(in_accept(), "still in accept()");
    // Only the next client wakes it, and then it stops.
    let mut client = Client::connect(daemon.addr);
    // The connection's thread and the main thread log at the same time.
    until(
        &mut daemon.listing,
        r"Got SIGTERM: no new connections; draining 1 connection\(s\), .*",
    );
    assert_eq!(client.reply(), None);
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
}

#[test]
fn sig_daemon_session_matches_the_book() {
    let Some((out, terminal2)) = daemon::book_session(bin!("sig-daemon"))
    else {
        return;
    };
    let status = ["143".to_string()];
    assert_session_matches_book(
        "ch10-daemon/10-01-sig-daemon.out",
        &[
            (cargo_run("sig-daemon", &[]), &out.stdout[..]),
            ("echo $?".to_string(), &status[..]),
        ],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch10-daemon/10-01-terminal-2.out", &session);
}

#[test]
fn sig_daemon_drain_deadline_is_the_same_in_the_figure_and_the_prose() {
    // The session's "at most N s" is a real run with the default deadline;
    // Figure 10-1 (its label and its description) and the prose quote N.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let read =
        |path: &str| fs::read_to_string(format!("{root}/{path}")).unwrap();
    let number = |text: &str, pattern: &str| -> String {
        let found = regex::Regex::new(pattern).unwrap().captures(text);
        found.unwrap_or_else(|| panic!("no {pattern:?}"))[1].to_string()
    };
    let run = read("listings/ch10-daemon/10-01-sig-daemon.out");
    let default = number(&run, r"draining 0 connection\(s\), at most (\d+) s");
    let figure = read("src/figures/ch10-daemon-life.svg");
    let chapter = read("src/ch10-daemon.md");
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    let quoted = [
        number(&figure, r">--drain-secs (\d+)<"),
        number(&figure, r"--drain-secs, (\d+) s by default"),
        number(
            &chapter,
            r"The deadline, `--drain-secs`, is (\d+) s by default",
        ),
    ];
    assert_eq!(quoted, [default.clone(), default.clone(), default]);
}

#[test]
fn sig_daemon_rejects_bad_arguments_and_configurations_in_one_line() {
    daemon::rejects_bad_arguments_and_configurations_in_one_line(bin!(
        "sig-daemon"
    ));
    let notify = bin!("sig-notify");
    assert_rejects(notify, &["--config"], "missing argument");
    assert_rejects(notify, &["127.0.0.1:0", "x"], r#"unexpected argument "x""#);
    assert_rejects(
        notify,
        &["127.0.0.1:0", "--config", "/no/such/file"],
        "No such file",
    );
}

#[test]
fn sig_daemon_flag_only_tells_sigint_from_sigterm() {
    let mut daemon = start(&["--flag-only"]);
    let pid = daemon.listing.pid();
    wait_until("the daemon to wait in accept()", || {
        in_kernel_function(pid, "accept")
    });
    daemon.listing.signal(Signal::SIGINT);
    let mut client = Client::connect(daemon.addr);
    until(&mut daemon.listing, r"Got SIGINT: no new connections; .*");
    assert_eq!(client.reply(), None);
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGINT);
}

#[test]
fn sig_daemon_answers_a_line_of_64_kib_and_refuses_a_longer_one() {
    let daemon = start(&[]);
    // 65,535 bytes and the newline, 64 KiB: the longest line there is,
    // however the reads split it, as in 29-1 (whose test sends the same
    // bytes to both daemons). Sent in one write between two short lines,
    // so that the read that brings its newline brings the next line too
    // (the daemon counted those bytes, and refused it).
    let line = "x".repeat(65_535);
    let mut client = Client::connect(daemon.addr);
    let three = format!("a\n{line}\nb\n");
    client.stream.write_all(three.as_bytes()).unwrap();
    assert_eq!(client.reply().as_deref(), Some("hello, a\n"));
    let reply = client.reply().unwrap_or_default();
    let start = &reply[..reply.len().min(30)];
    let whole = reply == format!("hello, {line}\n");
    assert!(whole, "the longest line: {} bytes, {start:?}…", reply.len());
    assert_eq!(client.reply().as_deref(), Some("hello, b\n"));
    // One byte more is refused, with its newline or, without one, once a
    // second byte more leaves no doubt. (65,536 bytes and the end of the
    // stream are no request, and not yet too long: 29-1's test.)
    for end in ["\n", "x"] {
        let mut flood = Client::connect(daemon.addr);
        let longer = format!("{line}x{end}");
        flood.stream.write_all(longer.as_bytes()).unwrap();
        flood.stream.shutdown(Shutdown::Write).unwrap();
        let refused = flood.reply();
        assert_eq!(
            refused.as_deref(),
            Some("error: line too long\n"),
            "{end:?}"
        );
        assert_eq!(flood.reply(), None);
    }
    drop(client);
    daemon.listing.signal(Signal::SIGTERM);
    let out = daemon.finish();
    assert_died_of(&out, Signal::SIGTERM);
}

#[test]
fn sig_daemon_sends_each_reply_in_one_write() {
    // A reply written in several small pieces meets Nagle's algorithm: the
    // second piece waits for the client to acknowledge the first, and
    // Linux delays that by 40 ms or more, for every request of a client
    // that waits for each reply. strace shows each send the daemon makes;
    // its log goes to stdout with `write`, and signal-hook's wake-ups are
    // sent with MSG_DONTWAIT alone, so a reply's sends are those with
    // MSG_DONTWAIT|MSG_NOSIGNAL, the flags of the listing's `send_all`.
    if !can_trace() {
        return;
    }
    let trace = Trace {
        calls: "sendto",
        signals: "none",
        from: None,
    };
    let mut daemon =
        Listing::start_traced(bin!("sig-daemon"), &["127.0.0.1:0"], &trace);
    let ready = daemon.expect(r"Listening on (\S+) as pid \d+; config \S+");
    let addr: SocketAddr = ready[1].parse().unwrap();
    let mut client = Client::connect(addr);
    for n in 0..3 {
        client.send(&format!("request {n}"));
        assert_eq!(client.reply(), Some(format!("hello, request {n}\n")));
    }
    drop(client);
    nix::sys::signal::kill(daemon.tracee(), Signal::SIGTERM).unwrap();
    let out = daemon.finish();
    let sends: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| {
            line.contains("sendto(")
                && line.contains("MSG_DONTWAIT|MSG_NOSIGNAL")
        })
        .collect();
    assert_eq!(sends.len(), 3, "{sends:#?}");
    for (n, send) in sends.iter().enumerate() {
        let reply = format!(r#""hello, request {n}\n""#);
        assert!(send.contains(&reply), "{send}");
    }
}

#[test]
fn sig_daemon_closes_gently_and_waits_for_the_client_to_close() {
    let mut daemon = start(&[]);
    let mut client = Client::connect(daemon.addr);
    client.send("first");
    logged_request(&mut daemon, "first");
    assert_eq!(client.reply().as_deref(), Some("hello, first\n"));
    daemon.listing.signal(Signal::SIGTERM);
    daemon
        .listing
        .expect(r"Got SIGTERM: .*draining 1 connection\(s\).*");
    // The server half-closes: the client sees the end of the stream...
    assert_eq!(client.reply(), None);
    // ...and the server keeps reading, discarding, until the client
    // closes too, rather than closing with unread bytes (which would send
    // a reset): for now, nothing more is logged.
    client.send("late, and never answered");
    assert!(
        daemon.listing.no_line_within(Duration::from_secs(1)),
        "{:?}",
        daemon.listing.transcript()
    );
    drop(client);
    daemon
        .listing
        .expect(r"127\.0\.0\.1:\d+: closed at the stop");
    daemon
        .listing
        .expect("All connections closed; dying of SIGTERM");
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
}

#[test]
fn sig_daemon_closes_anyway_when_the_client_does_not_close_in_5_s() {
    let mut daemon = start(&[]);
    let mut client = Client::connect(daemon.addr);
    client.send("first");
    logged_request(&mut daemon, "first");
    assert_eq!(client.reply().as_deref(), Some("hello, first\n"));
    // Taken before the signal: the connection starts its five seconds
    // when it sees the stop, after the signal, and so never before this.
    // Taken once the log line is read, it had the test's own delays in
    // it: a stall of 100 ms on a busy machine failed a correct daemon.
    let stopped = Instant::now();
    daemon.listing.signal(Signal::SIGTERM);
    daemon.listing.expect(r"Got SIGTERM: .*");
    assert_eq!(client.reply(), None);
    // The client keeps its end open: five seconds, then the server gives
    // up on it, says so in words, and the drain ends.
    // Five seconds, not more: a PEER_TIMEOUT of 7 s passed when only the
    // lower bound was checked.
    daemon.listing.expect(r"127\.0\.0\.1:\d+: timed out");
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(4900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    daemon
        .listing
        .expect("All connections closed; dying of SIGTERM");
    // Dead of the signal, its private directory removed (`finish`), while
    // the client still holds its end.
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
    drop(client);
}

/// A Unix datagram socket standing in for the service manager's
/// notification socket, in a temporary directory.
struct Manager {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        Manager {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The next datagram, its lines joined with spaces.
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = loop {
            // No handler runs in this test process (the harness checks), but
            // one would end a read with a timeout, which is never restarted.
            match self.socket.recv(&mut buf) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                other => break other.expect("a notification"),
            }
        };
        String::from_utf8_lossy(&buf[..n]).replace('\n', " ")
    }
}

/// Starts `sig-notify` on a free port with `env` set; returns it and its
/// address once it listens.
fn start_notify(env: &[(&str, &str)], args: &[&str]) -> (Listing, SocketAddr) {
    let mut command = std::process::Command::new(bin!("sig-notify"));
    command
        .arg("127.0.0.1:0")
        .args(args)
        .envs(env.iter().copied());
    let mut listing =
        Listing::spawn(&mut command, std::process::Stdio::piped());
    let ready =
        listing.expect(r"Listening on (\S+) \(bound by us\) as pid \d+");
    (listing, ready[1].parse().unwrap())
}

/// The line a client of `sig-notify` gets.
fn greeting(addr: SocketAddr) -> String {
    let mut client = Client::connect(addr);
    let line = client.reply().expect("a greeting");
    assert_eq!(client.reply(), None, "then the end");
    line
}

#[test]
fn sig_notify_tells_the_manager_ready_reloading_and_stopping() {
    let manager = Manager::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting");
    fs::write(&config, "hello\n").unwrap();
    let socket = manager.path.to_str().unwrap();
    let (mut notify, addr) = start_notify(
        &[("NOTIFY_SOCKET", socket)],
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(
        manager.next(),
        format!("READY=1 STATUS=Listening on {addr}")
    );
    assert_eq!(greeting(addr), "hello\n");
    fs::write(&config, "bonjour\n").unwrap();
    // CLOCK_MONOTONIC, in microseconds: the same clock as the daemon's.
    let monotonic_usec = || {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .unwrap();
        now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000
    };
    let before = monotonic_usec();
    notify.signal(Signal::SIGHUP);
    let reloading = manager.next();
    let after = monotonic_usec();
    let re = regex::Regex::new(r"^RELOADING=1 MONOTONIC_USEC=(\d+)$").unwrap();
    let usec: u64 = re.captures(&reloading).expect(&reloading)[1]
        .parse()
        .unwrap();
    // Read by the daemon between our two readings of the same clock.
    assert!(
        before <= usec && usec <= after,
        "{usec} not in {before}..={after}"
    );
    assert_eq!(manager.next(), r#"READY=1 STATUS=Greeting "bonjour""#);
    notify.expect(r#"Reloaded: Greeting "bonjour""#);
    assert_eq!(greeting(addr), "bonjour\n");
    notify.signal(Signal::SIGTERM);
    assert_eq!(manager.next(), "STOPPING=1");
    notify.expect("Got SIGTERM: stopping");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// `status` cuts a STATUS= value once its escaped text passes 80 bytes,
/// the bound on the datagram it keeps: not 80 characters. A greeting of
/// 80 crabs, 4 bytes each, shows 20 of them. Counted in characters, as
/// it once was, it showed all 80, 320 bytes.
#[test]
fn sig_notify_cuts_a_status_after_80_bytes_whatever_its_characters() {
    let manager = Manager::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting");
    fs::write(&config, "hello\n").unwrap();
    let socket = manager.path.to_str().unwrap();
    let (notify, _) = start_notify(
        &[("NOTIFY_SOCKET", socket)],
        &["--config", config.to_str().unwrap()],
    );
    assert!(manager.next().starts_with("READY=1 "));
    fs::write(&config, "🦀".repeat(80)).unwrap();
    notify.signal(Signal::SIGHUP);
    assert!(manager.next().starts_with("RELOADING=1 "));
    let shown = "🦀".repeat(20);
    assert_eq!(
        manager.next(),
        format!("READY=1 STATUS=Greeting \"{shown}\"… (320 bytes)")
    );
    notify.signal(Signal::SIGTERM);
    assert_eq!(manager.next(), "STOPPING=1");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// A manager that stops reading its socket (stalled, or a stand-in
/// suspended with Ctrl-Z) lets its queue fill, and a send to it would
/// then wait until it reads: the main thread, the daemon's only reader of
/// signals, must not wait there for ever. Reloads fill the queue until a
/// notification is refused, and then SIGTERM must still end the daemon.
#[test]
fn sig_notify_stops_while_its_manager_does_not_read() {
    let manager = Manager::new(); // Never read.
    let socket = manager.path.to_str().unwrap();
    let (mut notify, _) = start_notify(&[("NOTIFY_SOCKET", socket)], &[]);
    let refused = |line: &str| line.starts_with("Cannot tell the manager ");
    let mut full = false;
    for _ in 0..1000 {
        notify.signal(Signal::SIGHUP);
        loop {
            let line = notify.next_line();
            full |= refused(&line);
            if line.starts_with("Reloaded: ") {
                break;
            }
        }
        if full {
            break;
        }
    }
    assert!(full, "the manager's queue never filled");
    notify.signal(Signal::SIGTERM);
    loop {
        let line = notify.next_line();
        if line == "Got SIGTERM: stopping" {
            break;
        }
        assert!(refused(&line), "{line:?}");
    }
    let out = notify.finish();
    assert_died_of(&out, Signal::SIGTERM);
    let stopping = out
        .stdout
        .iter()
        .any(|line| line.starts_with("Cannot tell the manager STOPPING=1: "));
    assert!(stopping, "{:#?}", out.stdout);
}

/// A period of a microsecond, which the manager's rules allow, would be a
/// ping every half microsecond: a loop that never sleeps (its `poll`
/// timeout rounds down to 0 ms). The daemon pings at most once a
/// millisecond: its n-th ping cannot come sooner than n ms after it
/// started. (It spun: 57,927 pings in two seconds.)
#[test]
fn sig_notify_pings_at_most_once_a_millisecond_for_a_tiny_period() {
    let manager = Manager::new();
    let socket = manager.path.to_str().unwrap();
    let env = [("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "1")];
    let started = Instant::now();
    let (notify, _) = start_notify(&env, &[]);
    assert!(manager.next().starts_with("READY=1"));
    for _ in 0..50 {
        assert_eq!(manager.next(), "WATCHDOG=1");
    }
    let since = started.elapsed();
    assert!(since >= Duration::from_millis(50), "50 pings in {since:?}");
    notify.signal(Signal::SIGTERM);
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

#[test]
fn sig_notify_pings_the_watchdog_twice_per_period() {
    let manager = Manager::new();
    let socket = manager.path.to_str().unwrap();
    // A period of a second: a ping every half second. The manager's rule
    // is a ping within every period; twice per period leaves room.
    let env = [("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "1000000")];
    // Taken before the daemon starts, and so before its clock does: its
    // n-th ping cannot come sooner than n half periods after this. A gap
    // measured between datagrams as the test takes them has the test's
    // own delays in it, which a busy machine makes long: "not sooner than
    // 400 ms after READY=1" failed once in four runs (392 ms) when READY=1
    // was taken late.
    let started = Instant::now();
    let (notify, _) = start_notify(&env, &[]);
    assert!(manager.next().starts_with("READY=1"));
    let mut last = Instant::now();
    for n in 1..=3 {
        assert_eq!(manager.next(), "WATCHDOG=1");
        let since = started.elapsed();
        let gap = last.elapsed();
        last = Instant::now();
        // Not sooner than half a period each, and within the period.
        let soonest = Duration::from_millis(500) * n;
        assert!(since >= soonest, "ping {n} after {since:?} in all");
        assert!(gap < Duration::from_secs(1), "ping {n} after {gap:?}");
    }
    notify.signal(Signal::SIGTERM);
    assert_died_of(&notify.finish(), Signal::SIGTERM);

    // Another process's watchdog is not ours, and a period of 0 asks for
    // no pings: none at all, for a second, five periods of 200 ms. (A
    // bound, not a wait: a late ping could only make this pass wrongly.)
    for not_ours in [
        [("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")],
        [("WATCHDOG_USEC", "0"), ("WATCHDOG_PID", "")],
    ] {
        let manager = Manager::new();
        let socket = manager.path.to_str().unwrap();
        let mut env = vec![("NOTIFY_SOCKET", socket)];
        env.extend(not_ours.iter().filter(|(_, value)| !value.is_empty()));
        let (notify, _) = start_notify(&env, &[]);
        assert!(manager.next().starts_with("READY=1"));
        manager
            .socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let quiet = loop {
            match manager.socket.recv(&mut [0; 64]) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        assert!(quiet.is_err(), "{not_ours:?}: a datagram: {quiet:?}");
        notify.signal(Signal::SIGTERM);
        assert_died_of(&notify.finish(), Signal::SIGTERM);
    }
}

#[test]
fn sig_notify_dies_of_sigint_when_it_was_not_ignored() {
    let manager = Manager::new();
    let socket = manager.path.to_str().unwrap();
    let (mut notify, _) = start_notify(&[("NOTIFY_SOCKET", socket)], &[]);
    assert!(manager.next().starts_with("READY=1"));
    notify.signal(Signal::SIGINT);
    assert_eq!(manager.next(), "STOPPING=1");
    notify.expect("Got SIGINT: stopping");
    assert_died_of(&notify.finish(), Signal::SIGINT);
}

/// The state of a TCP connection, `tcpi_state`, from `getsockopt(TCP_INFO)`.
fn tcp_state(stream: &TcpStream) -> u8 {
    tcp_info(stream).tcpi_state
}

/// The peer has ended its side (FIN), and no reset came: TCP_CLOSE_WAIT.
const TCP_CLOSE_WAIT: u8 = 8;

/// Whether what was sent on `stream` has been acknowledged, or refused
/// with a reset (which closes it), from `getsockopt(TCP_INFO)`.
fn acknowledged_or_reset(stream: &TcpStream) -> bool {
    let info = tcp_info(stream);
    const TCP_CLOSE: u8 = 7;
    info.tcpi_state == TCP_CLOSE || info.tcpi_unacked == 0
}

/// `getsockopt(TCP_INFO)` on `stream`.
fn tcp_info(stream: &TcpStream) -> nix::libc::tcp_info {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable and `len` says how large it is.
    let done = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
    // SAFETY: zeroed, then filled in by the kernel.
    unsafe { info.assume_init() }
}

#[test]
fn sig_notify_greets_a_client_that_sent_a_request_first() {
    // A client that sends something before it reads (an HTTP probe, say)
    // leaves bytes the server never reads, and a socket closed with unread
    // bytes sends a reset instead of a FIN, which ends the client's
    // stream with ECONNRESET. With the daemon frozen, every request is in
    // its socket before it accepts.
    let (notify, addr) = start_notify(&[], &[]);
    notify.signal(Signal::SIGSTOP);
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut client = Client::connect(addr);
        client.stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        wait_until("the kernel to acknowledge the request", || {
            acknowledged_or_reset(&client.stream)
        });
        clients.push(client);
    }
    notify.signal(Signal::SIGCONT);
    let mut bad = Vec::new();
    for (n, client) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        match client.reader.read_to_end(&mut got) {
            Ok(_) if got == b"hello\n" => {}
            other => bad.push(format!("client {n}: {other:?} {got:?}")),
        }
    }
    assert!(bad.is_empty(), "{} of 5: {bad:#?}", bad.len());
    // Half-closed first, the daemon's end came before any reset could,
    // so the reads above succeed either way. What its reading until the
    // client closes buys is that no reset comes after the end at all: the
    // connection waits in CLOSE_WAIT for the client, instead of being
    // CLOSE, reset, which would have thrown away a greeting not yet sent.
    for (n, client) in clients.iter().enumerate() {
        assert_eq!(tcp_state(&client.stream), TCP_CLOSE_WAIT, "client {n}");
    }
    drop(clients);
    notify.signal(Signal::SIGTERM);
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

#[test]
fn sig_notify_greets_every_client_that_connected_before_the_stop() {
    // Five clients connect while the daemon is frozen, and SIGTERM comes
    // before it runs again: it wakes to a queue of connections and the
    // signal in one `poll`. Every client that connected before the signal
    // is the daemon's to greet; a listener closed with connections still
    // queued resets them. Accepting one client per round, the daemon reset
    // four of the five, every time.
    let (notify, addr) = start_notify(&[], &[]);
    notify.signal(Signal::SIGSTOP);
    wait_until("the daemon to stop", || {
        crate::support::all_threads_stopped(notify.pid())
    });
    let mut clients: Vec<Client> =
        (0..5).map(|_| Client::connect(addr)).collect();
    notify.signal(Signal::SIGTERM);
    notify.signal(Signal::SIGCONT);
    let mut bad = Vec::new();
    for (n, client) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        match client.reader.read_to_end(&mut got) {
            Ok(_) if got == b"hello\n" => {}
            other => bad.push(format!("client {n}: {other:?} {got:?}")),
        }
    }
    drop(clients);
    let out = notify.finish();
    assert!(
        bad.is_empty(),
        "{} of 5: {bad:#?}\n{:#?}",
        bad.len(),
        out.stdout
    );
    assert_died_of(&out, Signal::SIGTERM);
}

#[test]
fn sig_notify_half_closes_before_it_drains() {
    // The client's end of the stream is the half-close's FIN, sent with
    // the greeting; without it the client would see the end only once the
    // drain has waited its second for the client to close first. strace
    // shows the call (on the connection's thread: strace follows threads).
    if !can_trace() {
        return;
    }
    let trace = Trace {
        calls: "shutdown",
        signals: "none",
        from: None,
    };
    let mut notify =
        Listing::start_traced(bin!("sig-notify"), &["127.0.0.1:0"], &trace);
    let ready = notify.expect(r"Listening on (\S+) \(bound by us\) as pid \d+");
    let addr: SocketAddr = ready[1].parse().unwrap();
    let mut client = Client::connect(addr);
    client.stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(client.reply().as_deref(), Some("hello\n"));
    assert_eq!(client.reply(), None);
    drop(client);
    nix::sys::signal::kill(notify.tracee(), Signal::SIGTERM).unwrap();
    let out = notify.finish();
    let half_closes = out
        .stderr
        .lines()
        .filter(|line| line.contains("shutdown(") && line.contains("SHUT_WR"))
        .count();
    assert_eq!(half_closes, 1, "{}", out.stderr);
}

#[test]
fn sig_notify_refuses_a_descriptor_3_that_does_not_listen() {
    // A UDP socket has an address, as a listening socket has, but nobody
    // can connect to it: taken as the listener, the daemon would say it
    // listens and serve nobody. bash's /dev/udp makes one, as descriptor 3;
    // `exec` keeps bash's pid, so that $LISTEN_PID names the daemon.
    let script = r#"exec 3<>/dev/udp/127.0.0.1/9
        export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0""#;
    let mut command = std::process::Command::new("bash");
    command.args(["-c", script, bin!("sig-notify")]);
    let listing = Listing::spawn(&mut command, std::process::Stdio::piped());
    let out = listing.finish();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?} {:?}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        out.stderr.trim_end(),
        "sig-notify: descriptor 3 is not a listening socket"
    );
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
}

#[test]
fn sig_notify_refuses_listen_fds_when_descriptor_3_is_not_open() {
    // $LISTEN_PID names the daemon and $LISTEN_FDS says one, but nothing
    // was passed: descriptor 3 is free, and the first descriptor the
    // daemon makes (its signalfd) would get that number. Taken as the
    // manager's socket, and closed as not listening, it would be closed a
    // second time by its owner; std's debug build aborts on that.
    let script = r#"exec 3<&-
        export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0""#;
    let mut command = std::process::Command::new("bash");
    command.args(["-c", script, bin!("sig-notify")]);
    let listing = Listing::spawn(&mut command, std::process::Stdio::piped());
    let out = listing.finish();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?} {:?}",
        out.status,
        out.stderr
    );
    assert_eq!(
        out.stderr.trim_end(),
        "sig-notify: LISTEN_FDS=1, but descriptor 3 is not open"
    );
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
}

#[test]
fn sig_notify_goes_on_when_the_manager_does_not_listen() {
    // A name in the abstract namespace that nothing has bound.
    let socket = format!("@sig-notify-nobody-{}", std::process::id());
    let (mut notify, addr) = start_notify(&[("NOTIFY_SOCKET", &socket)], &[]);
    notify.expect(
        r"Cannot tell the manager READY=1: Connection refused \(os error 111\)",
    );
    assert_eq!(greeting(addr), "hello\n");
    notify.signal(Signal::SIGTERM);
    notify.expect("Cannot tell the manager STOPPING=1: .*");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// systemd (256 and later) also reads a `$NOTIFY_SOCKET` of the form
/// `vsock:CID:PORT`, for a virtual machine's manager. 10-2 speaks only
/// AF_UNIX: it must say so in one line, not take the value for a relative
/// path and log that no such file exists.
#[test]
fn sig_notify_says_which_forms_of_notify_socket_it_supports() {
    // The last with a newline, which must not start a line of its own.
    for socket in ["vsock:2:1234", "run/notify", "run/a\nb"] {
        let (mut notify, addr) =
            start_notify(&[("NOTIFY_SOCKET", socket)], &[]);
        notify.expect(&format!(
            "Cannot tell the manager READY=1: NOTIFY_SOCKET={}: \
             only an absolute path or an @abstract name is supported",
            regex::escape(&socket.escape_debug().to_string())
        ));
        assert_eq!(greeting(addr), "hello\n");
        notify.signal(Signal::SIGTERM);
        assert_died_of(&notify.finish(), Signal::SIGTERM);
    }
}

#[test]
fn sig_notify_binds_itself_when_the_descriptors_are_not_for_it() {
    // LISTEN_PID names another process: the variables were inherited, and
    // descriptor 3, if any, is not ours to take.
    let env = [("LISTEN_PID", "1"), ("LISTEN_FDS", "1")];
    let (notify, addr) = start_notify(&env, &[]);
    assert_eq!(greeting(addr), "hello\n");
    notify.signal(Signal::SIGTERM);
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

#[test]
fn sig_notify_binds_itself_when_listen_fds_says_nothing_was_passed() {
    // $LISTEN_PID names the daemon, but $LISTEN_FDS is 0 or unset: nothing
    // was passed (sd_listen_fds(3) returns 0), so it binds its own address.
    for script in [
        r#"export LISTEN_PID=$$ LISTEN_FDS=0; exec "$0" 127.0.0.1:0"#,
        r#"unset LISTEN_FDS; export LISTEN_PID=$$; exec "$0" 127.0.0.1:0"#,
    ] {
        let mut command = std::process::Command::new("bash");
        command.args(["-c", script, bin!("sig-notify")]);
        let mut notify =
            Listing::spawn(&mut command, std::process::Stdio::piped());
        let ready =
            notify.expect(r"Listening on (\S+) \(bound by us\) as pid \d+");
        assert_eq!(greeting(ready[1].parse().unwrap()), "hello\n", "{script}");
        notify.signal(Signal::SIGTERM);
        assert_died_of(&notify.finish(), Signal::SIGTERM);
    }
    // Two descriptors, of which it would serve one: refused, in words;
    // and in one line, whatever the variable holds.
    for (count, shown) in [("2", "2"), ("2\n3", r"2\n3")] {
        let script = r#"export LISTEN_PID=$$ LISTEN_FDS="$1"; exec "$0""#;
        let mut command = std::process::Command::new("bash");
        command.args(["-c", script, bin!("sig-notify"), count]);
        let out =
            Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
        assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
        let line = format!("sig-notify: LISTEN_FDS={shown}: want one\n");
        assert_eq!(out.stderr, line);
    }
}

/// What the user gives `sig-notify`, a configuration path or a variable
/// of its environment, holding a newline, is shown escaped, `\n`, in one
/// line: on stderr when it cannot start, in its log when it goes on.
#[test]
fn sig_notify_shows_a_path_or_a_variable_with_a_newline_escaped_in_one_line() {
    let escaped = |text: &str| text.replace('\n', "\\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting\nfake line");
    let shown = escaped(config.to_str().unwrap());
    let out = crate::support::run(
        bin!("sig-notify"),
        &["127.0.0.1:0", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "sig-notify: cannot read the greeting: {shown}: \
             No such file or directory (os error 2)\n"
        )
    );
    // Descriptor 3 passed, in a number with a line after it.
    let script = "export LISTEN_PID=$$ LISTEN_FDS='2\nfake line'; exec \"$0\"";
    let mut command = std::process::Command::new("bash");
    command.args(["-c", script, bin!("sig-notify")]);
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
    assert_eq!(
        out.stderr,
        "sig-notify: LISTEN_FDS=2\\nfake line: want one\n"
    );
    // Started, then its file gone at the reload; and a manager's socket
    // it cannot use, at every notification.
    fs::write(&config, "hello\n").unwrap();
    let socket = "run/notify\nfake line";
    let (mut notify, _) = start_notify(
        &[("NOTIFY_SOCKET", socket)],
        &["--config", config.to_str().unwrap()],
    );
    let cannot = |state: &str| {
        format!(
            "Cannot tell the manager {state}: NOTIFY_SOCKET={}: only an \
             absolute path or an @abstract name is supported",
            escaped(socket)
        )
    };
    assert_eq!(notify.next_line(), cannot("READY=1"));
    fs::remove_file(&config).unwrap();
    notify.signal(Signal::SIGHUP);
    assert_eq!(notify.next_line(), cannot("RELOADING=1"));
    assert_eq!(
        notify.next_line(),
        format!(
            "Reload failed, keeping the old greeting: {shown}: \
             No such file or directory (os error 2)"
        )
    );
    assert_eq!(notify.next_line(), cannot("READY=1"));
    notify.signal(Signal::SIGTERM);
    assert_eq!(notify.next_line(), cannot("STOPPING=1"));
    assert_eq!(notify.next_line(), "Got SIGTERM: stopping");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

#[test]
fn sig_notify_finishes_the_greetings_in_flight_before_it_dies() {
    // A greeting too big for the socket buffers keeps its thread writing
    // until the client reads. SIGTERM comes meanwhile: the daemon must
    // finish that reply before it dies, or the client gets part of it and
    // then a clean end, which looks like the whole reply.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting");
    let big = "g".repeat(16 << 20);
    fs::write(&config, &big).unwrap();
    let (mut notify, addr) =
        start_notify(&[], &["--config", config.to_str().unwrap()]);
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // The greeting has begun: its thread is writing, and cannot finish.
    client.peek(&mut [0u8; 1]).unwrap();
    notify.signal(Signal::SIGTERM);
    notify.expect("Got SIGTERM: stopping");
    let mut got = Vec::new();
    let end = client.read_to_end(&mut got);
    assert!(end.is_ok(), "{end:?} after {} bytes", got.len());
    assert_eq!(
        got.len(),
        big.len() + 1,
        "the whole greeting and its newline"
    );
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// Unlike Listing 10-1's drain, 10-2's hears no second signal: its main
/// thread reads the signalfd only in its loop, and while it waits for the
/// greetings in flight the signals stay blocked, and pending. A Ctrl-C
/// after the SIGTERM must neither end it at once (the greeting cut short)
/// nor change what it dies of; it stays pending until the end. A version
/// that unblocked its signals for the drain died of the SIGINT at once.
#[test]
fn sig_notify_hears_no_second_signal_while_it_finishes_its_greetings() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting");
    let big = "g".repeat(16 << 20);
    fs::write(&config, &big).unwrap();
    let (mut notify, addr) =
        start_notify(&[], &["--config", config.to_str().unwrap()]);
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // The greeting has begun: its thread is writing, and cannot finish.
    client.peek(&mut [0u8; 1]).unwrap();
    let pid = notify.pid();
    notify.signal(Signal::SIGTERM);
    notify.expect("Got SIGTERM: stopping");
    notify.signal(Signal::SIGINT);
    let sigint = Signal::SIGINT as i32;
    wait_until("the SIGINT to wait, pending", || {
        crate::support::pending_signals(pid).contains(&sigint)
    });
    let mut got = Vec::new();
    let end = client.read_to_end(&mut got);
    assert!(end.is_ok(), "{end:?} after {} bytes", got.len());
    assert_eq!(got.len(), big.len() + 1, "the whole greeting");
    let out = notify.finish();
    assert_died_of(&out, Signal::SIGTERM);
    let heard = out.stdout.iter().any(|line| line.contains("SIGINT"));
    assert!(!heard, "{:#?}", out.stdout);
}

#[test]
fn sig_notify_exits_1_when_a_slow_reader_outlasts_the_drain() {
    // A client that reads its greeting, too big for the socket buffers,
    // a little at a time: every write the daemon makes goes on, and the
    // greeting takes longer than the drain's three seconds. At the end of
    // those the daemon must say that it gives up, and exit 1, as Listing
    // 10-1 does at its deadline: dying of SIGTERM would tell the manager
    // that the stop was clean, with the greeting cut short.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting");
    let big = "g".repeat(8 << 20);
    fs::write(&config, &big).unwrap();
    let (mut notify, addr) =
        start_notify(&[], &["--config", config.to_str().unwrap()]);
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // The greeting has begun: its thread is writing, and cannot finish.
    client.peek(&mut [0u8; 1]).unwrap();
    let reader = std::thread::spawn(move || {
        // 64 KiB every 100 ms: 8 MiB would take 13 s.
        let mut got = 0;
        let mut chunk = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = client.read(&mut chunk) {
            got += n;
            std::thread::sleep(Duration::from_millis(100));
        }
        got
    });
    let sent = Instant::now();
    notify.signal(Signal::SIGTERM);
    notify.expect("Got SIGTERM: stopping");
    notify.expect(r"Deadline passed with 1 greeting\(s\) unfinished; exiting");
    let out = notify.finish();
    assert_exited_with(&out, 1);
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
    let got = reader.join().unwrap();
    assert!(got < big.len(), "cut short: {got} bytes");
}

#[test]
fn sig_notify_dies_of_sigterm_even_when_started_with_it_ignored() {
    // An ignored SIGTERM still reaches the signalfd, since it is blocked;
    // to die of it, the daemon must give it its default action back.
    let mut command = std::process::Command::new("env");
    command.args(["--ignore-signal=TERM", bin!("sig-notify"), "127.0.0.1:0"]);
    let mut notify = Listing::spawn(&mut command, std::process::Stdio::piped());
    notify.expect(r"Listening on \S+ \(bound by us\) as pid \d+");
    notify.signal(Signal::SIGTERM);
    notify.expect("Got SIGTERM: stopping");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// Terminal 1 of the book's session: a stand-in for the service manager's
/// notification socket, in Linux's abstract namespace (no file), printing
/// each datagram on a line.
const RECEIVER: &str = r#"python3 -c 'import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0sig-notify")
while True:
    print(s.recv(999).decode().replace("\n", " "), flush=True)'"#;

/// Whether a Unix socket is bound to `@name` (/proc/net/unix).
fn bound_abstract(name: &str) -> bool {
    let table = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let wanted = format!("@{name}");
    table.lines().any(|line| line.ends_with(&wanted))
}

#[test]
fn sig_notify_session_under_systemd_socket_activate_matches_the_book() {
    if !have("systemd-socket-activate") || !have("python3") || !have("nc") {
        return;
    }
    let _port = default_port();
    // The book's port and name when blessing; free ones otherwise.
    let name = match blessing() {
        true => "sig-notify".to_string(),
        false => format!("sig-notify-{}", std::process::id()),
    };
    let receiver_command = RECEIVER.replace("sig-notify", &name);
    // The command a reader types at the top of a clone, after `cargo build
    // -p listings`: the binary by its path there, from there.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let binary = Path::new(bin!("sig-notify"));
    let (binary, shown_binary) = match binary.strip_prefix(root) {
        Ok(relative) => (relative.to_path_buf(), None),
        // A target directory elsewhere: run it by its own path.
        Err(_) => (binary.to_path_buf(), Some("target/debug/sig-notify")),
    };
    let mut receiver = Listing::start("bash", &["-c", &receiver_command]);
    wait_until("the receiver to bind", || bound_abstract(&name));
    let (mut activate, port) = loop {
        let port = match blessing() {
            true => 50008,
            false => {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                probe.local_addr().unwrap().port()
            }
        };
        let listen = format!("127.0.0.1:{port}");
        let env = format!("NOTIFY_SOCKET=@{name}");
        let mut command = std::process::Command::new("systemd-socket-activate");
        command
            .args(["-l", &listen, "-E", &env])
            .arg(&binary)
            .current_dir(root);
        let activate =
            Listing::spawn(&mut command, std::process::Stdio::piped());
        let pid = activate.pid();
        wait_until("systemd-socket-activate to listen", || {
            crate::support::listens_on(port) || crate::support::is_dead(pid)
        });
        if crate::support::listens_on(port) {
            break (activate, port);
        }
        assert!(
            !blessing(),
            "port 50008 is taken: {}",
            activate.finish().stderr
        );
        // Another process took the port between probe and bind: again.
    };
    let mut terminal3: Vec<(String, Vec<String>)> = Vec::new();
    let type_in = |terminal3: &mut Vec<_>, command: String| {
        terminal3.push((command.clone(), shell(&command)));
    };
    // The first client starts the daemon, with the socket as descriptor 3.
    type_in(&mut terminal3, format!("nc -N 127.0.0.1 {port} </dev/null"));
    let ready = activate.expect(&format!(
        r"Listening on 127\.0\.0\.1:{port} \(descriptor 3, from the service manager\) as pid (\d+)"
    ));
    assert_eq!(ready[1], activate.pid().to_string(), "exec'd, same pid");
    assert_eq!(terminal3[0].1, ["hello"]);
    type_in(&mut terminal3, format!("kill -HUP {}", ready[1]));
    activate.expect(r#"Reloaded: Greeting "hello""#);
    type_in(&mut terminal3, format!("kill -TERM {}", ready[1]));
    activate.expect("Got SIGTERM: stopping");
    let out = activate.finish();
    assert_died_of(&out, Signal::SIGTERM);
    let mut notified = Vec::new();
    while notified.last().map(String::as_str) != Some("STOPPING=1") {
        notified.push(receiver.next_line());
    }
    assert_eq!(notified.len(), 4, "{notified:?}");
    assert!(notified[1].starts_with("RELOADING=1 MONOTONIC_USEC="));

    // The three terminals, as the book shows them.
    let mut masks = vec![
        (r"sig-notify-\d+", "sig-notify"),
        (r"MONOTONIC_USEC=\d+", "MONOTONIC_USEC=<n>"),
    ];
    if shown_binary.is_some() {
        masks.push((r"Execing \S+ \(\S+\)", "Execing <the binary>"));
    }
    let shown = RECEIVER.to_string();
    crate::support::assert_session_matches_book_masking(
        "ch10-daemon/10-02-terminal-1.out",
        &[(shown, &notified)],
        &masks,
    );
    let command = format!(
        "systemd-socket-activate -l 127.0.0.1:{port} -E NOTIFY_SOCKET=@{name} {}",
        shown_binary.map_or(binary.display().to_string(), String::from)
    );
    let mut terminal2: Vec<String> =
        out.stderr.lines().map(String::from).collect();
    terminal2.extend(out.stdout);
    crate::support::assert_session_matches_book_masking(
        "ch10-daemon/10-02-terminal-2.out",
        &[(command, &terminal2)],
        &masks,
    );
    // The session ends in a death by SIGTERM, after which a reader's
    // interactive bash prints a line the recorded output leaves out: the
    // chapter says so. (It said so only for Listing 10-1's session.)
    let chapter = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch10-daemon.md"
    ))
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = "interactive bash in Terminal 2 also prints `Terminated`";
    assert!(chapter.contains(said), "ch10 does not say {said:?}");
    let terminal3: Vec<_> =
        terminal3.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    crate::support::assert_session_matches_book_masking(
        "ch10-daemon/10-02-terminal-3.out",
        &terminal3,
        &masks,
    );
}

#[test]
fn sig_daemon_leaves_a_sigint_ignored_when_it_was_started_so() {
    daemon::leaves_a_sigint_ignored_when_it_was_started_so(bin!("sig-daemon"));
}

#[test]
fn sig_notify_leaves_a_sigint_ignored_when_it_was_started_so() {
    let mut command = ignoring_sigint(bin!("sig-notify"));
    command.arg("127.0.0.1:0");
    let mut notify = Listing::spawn(&mut command, std::process::Stdio::piped());
    let ready = notify.expect(r"Listening on (\S+) \(bound by us\) as pid \d+");
    let addr: SocketAddr = ready[1].parse().unwrap();
    let pid = notify.pid();
    // Neither blocked nor taken from the signalfd: ignored, as it came.
    assert!(signal_in(pid, "SigIgn:", Signal::SIGINT));
    assert!(!signal_in(pid, "SigBlk:", Signal::SIGINT));
    notify.signal(Signal::SIGINT);
    assert_eq!(greeting(addr), "hello\n");
    notify.signal(Signal::SIGTERM);
    notify.expect("Got SIGTERM: stopping");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

#[test]
fn sig_daemon_leaves_no_directory_when_sigterm_comes_as_it_starts() {
    daemon::leaves_no_directory_when_sigterm_comes_as_it_starts(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_leaves_no_directory_when_descriptors_run_out_as_it_starts() {
    // With the table nearly full, the daemon fails somewhere on its way to
    // listening: before its private directory, while it writes the
    // configuration into it, or after. Each limit must end in a one-line
    // error and an empty TMPDIR. (Removing a directory tree opens it: a
    // `Drop` that needs a descriptor cannot run when there is none.)
    for fds in 4..=13 {
        let tmp = tempfile::tempdir().unwrap();
        let script = format!("ulimit -n {fds} && exec \"$0\" \"$@\"");
        let mut command = std::process::Command::new("bash");
        command
            .args(["-c", &script, bin!("sig-daemon"), "127.0.0.1:0"])
            .env("TMPDIR", tmp.path());
        let out =
            Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
        let why = format!("limit {fds}: {:?} {:?}", out.status, out.stderr);
        assert_eq!(out.status.code(), Some(1), "{why}");
        assert_eq!(out.stderr.lines().count(), 1, "{why}");
        // Every step that can fail comes before "Listening on …", which
        // whoever waits for it takes for "ready" (it came before the log
        // thread and the drain's pipes, with 10 to 14 descriptors); and
        // the line names the step that failed.
        assert!(out.stdout.is_empty(), "{why}: said {:?}", out.stdout);
        assert!(out.stderr.starts_with("sig-daemon: cannot "), "{why}");
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "limit {fds}: left behind: {left:?}");
    }
}

/// The threads of `pid` other than its main thread.
fn other_threads(pid: nix::unistd::Pid) -> Vec<i32> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&tid| tid != pid.as_raw())
        .collect()
}

/// Whether thread `tid` of `pid` has `signal` pending for itself.
fn thread_pending(pid: nix::unistd::Pid, tid: i32, signal: Signal) -> bool {
    let path = format!("/proc/{pid}/task/{tid}/status");
    let status = fs::read_to_string(path).unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigPnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    mask & (1 << (signal as i32 - 1)) != 0
}

/// Sends `signal` to thread `tid` of process `pid`.
fn tgkill(pid: nix::unistd::Pid, tid: i32, signal: Signal) {
    // SAFETY: tgkill takes plain integers and sends a signal, no more.
    let sent = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_tgkill,
            pid.as_raw(),
            tid,
            signal as i32,
        )
    };
    assert_eq!(sent, 0, "tgkill: {}", std::io::Error::last_os_error());
}

#[test]
fn sig_daemon_closes_gently_even_when_a_signal_interrupts_the_wait() {
    let mut daemon = start(&[]);
    let pid = daemon.listing.pid();
    let mut client = Client::connect(daemon.addr);
    client.send("first");
    logged_request(&mut daemon, "first");
    assert_eq!(client.reply().as_deref(), Some("hello, first\n"));
    daemon.listing.signal(Signal::SIGTERM);
    daemon.listing.expect(r"Got SIGTERM: .*");
    assert_eq!(client.reply(), None);
    // The connection's thread now waits, with a timeout, for the client
    // to close. A SIGHUP sent to that thread interrupts the wait: a read
    // with a timeout is not restarted, and must be tried again.
    let mut thread = 0;
    wait_until("the connection thread to wait for the client", || {
        let waiting = other_threads(pid).into_iter().find(|tid| {
            let wchan = format!("/proc/{pid}/task/{tid}/wchan");
            fs::read_to_string(wchan).is_ok_and(|w| w == "wait_woken")
        });
        thread = waiting.unwrap_or(0);
        waiting.is_some()
    });
    tgkill(pid, thread, Signal::SIGHUP);
    wait_until("the thread to take the SIGHUP", || {
        !thread_pending(pid, thread, Signal::SIGHUP)
    });
    drop(client);
    daemon
        .listing
        .expect(r"127\.0\.0\.1:\d+: closed at the stop");
    daemon
        .listing
        .expect("All connections closed; dying of SIGTERM");
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
}

/// Reads `client` slowly, 4 KiB every 10 ms, until told to go on, then
/// to its end; returns how many bytes came. A sender blocked on a full
/// socket gives up after its write timeout (sig-notify's is one second)
/// without a byte of progress: read a little at a time, a 16 MiB greeting
/// goes on for most of a minute, and yet never stalls that long.
fn read_slowly(
    mut client: TcpStream,
) -> (
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<std::io::Result<usize>>,
) {
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let (go_on, told) = channel();
    let reader = std::thread::spawn(move || {
        let (mut got, mut chunk) = (0, [0u8; 4096]);
        while let Err(RecvTimeoutError::Timeout) =
            told.recv_timeout(Duration::from_millis(10))
        {
            match client.read(&mut chunk)? {
                0 => return Ok(got),
                n => got += n,
            }
        }
        let mut rest = Vec::new();
        Ok(got + client.read_to_end(&mut rest)?)
    });
    (go_on, reader)
}

#[test]
fn sig_notify_dies_of_sigterm_when_a_sighup_is_pending_too() {
    // A greeting too big for the socket buffers, to a client that reads it
    // slowly, holds the daemon between reading the SIGTERM from its
    // signalfd and dying of it: it waits for that greeting, for at most
    // three seconds. A SIGHUP sent then stays pending. It is sent to the
    // thread (tgkill): the kernel takes a thread's own pending signals
    // before the process's, so a SIGHUP sent with `kill` would lose to
    // the SIGTERM that `raise` sends to the thread anyway. A client that
    // did not read at all until then lost the end of its greeting when a
    // loaded machine took more than a second over these steps: the
    // daemon's write timeout.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting");
    let big = "g".repeat(16 << 20);
    fs::write(&config, &big).unwrap();
    let (mut notify, addr) =
        start_notify(&[], &["--config", config.to_str().unwrap()]);
    let client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.peek(&mut [0u8; 1]).unwrap(); // The greeting has begun.
    let (go_on, reader) = read_slowly(client);
    let pid = notify.pid();
    notify.signal(Signal::SIGTERM);
    notify.expect("Got SIGTERM: stopping");
    tgkill(pid, pid.as_raw(), Signal::SIGHUP);
    wait_until("the SIGHUP to be pending", || {
        thread_pending(pid, pid.as_raw(), Signal::SIGHUP)
    });
    let _ = go_on.send(()); // Gone already if the greeting ended.
    let got = reader.join().unwrap().unwrap();
    assert_eq!(got, big.len() + 1, "the whole greeting");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

#[test]
fn sig_daemon_as_pid_1_exits_143_after_a_clean_drain() {
    // The kernel drops a PID 1's own raise of SIGTERM: a daemon that only
    // raised it fell through to abort(), and died of SIGSEGV (status 139).
    let Some((mut daemon, pid)) = as_pid_1(
        bin!("sig-daemon"),
        &["127.0.0.1:0"],
        r"Listening on \S+ as pid 1; config \S+",
    ) else {
        return;
    };
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    daemon.expect(r"Got SIGTERM: .*");
    daemon.expect("All connections closed; dying of SIGTERM");
    // unshare exits with its child's status.
    let out = daemon.finish();
    assert_exited_with(&out, 143);
}

#[test]
fn sig_notify_as_pid_1_exits_143_on_sigterm() {
    let Some((mut notify, pid)) = as_pid_1(
        bin!("sig-notify"),
        &["127.0.0.1:0"],
        r"Listening on \S+ \(bound by us\) as pid 1",
    ) else {
        return;
    };
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    notify.expect("Got SIGTERM: stopping");
    let out = notify.finish();
    assert_exited_with(&out, 143);
}

#[test]
fn sig_daemon_unblocks_the_signals_its_parent_left_blocked() {
    // A parent that blocks signals for sigwait or a signalfd passes its
    // mask on, through exec; `env --block-signal` plays that parent.
    let mut command = std::process::Command::new("env");
    command.args(["--block-signal=HUP,INT,TERM", bin!("sig-daemon")]);
    command.arg("127.0.0.1:0");
    let mut daemon = start_command(command);
    let pid = daemon.listing.pid();
    // Waited for, not read once: glibc's pthread_create blocks every
    // signal in the calling thread for a moment, and the daemon starts
    // threads after it says it is listening.
    wait_until("the daemon to unblock HUP, INT and TERM", || {
        [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM]
            .iter()
            .all(|&signal| !signal_in(pid, "SigBlk:", signal))
    });
    reconfigure(&mut daemon, "greeting = hi\n");
    daemon.listing.signal(Signal::SIGTERM);
    until(
        &mut daemon.listing,
        "All connections closed; dying of SIGTERM",
    );
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
}

#[test]
fn sig_notify_pauses_instead_of_spinning_when_descriptors_run_out() {
    // Five descriptors at rest (0 to 2, the listener, the signalfd): with
    // a limit of five, every `accept` fails, and a waiting client keeps
    // the listener readable.
    let script = "ulimit -n 5 && exec \"$0\" \"$@\"";
    let mut command = std::process::Command::new("bash");
    command.args(["-c", script, bin!("sig-notify"), "127.0.0.1:0"]);
    let mut notify = Listing::spawn(&mut command, std::process::Stdio::piped());
    let ready = notify.expect(r"Listening on (\S+) \(bound by us\) as pid \d+");
    let addr: SocketAddr = ready[1].parse().unwrap();
    let pid = notify.pid();
    let _waiting = Client::connect(addr);
    notify.expect(
        r"accept: Too many open files \(os error 24\); trying again, less often",
    );
    // Two seconds with the client waiting: nothing more logged, and the
    // process asleep nearly all the time, where retrying at once it never
    // slept.
    let (busy, started) = (runnable_time(pid), Instant::now());
    assert!(notify.no_line_within(Duration::from_secs(2)));
    let awake = runnable_time(pid) - busy;
    eprintln!(
        "sig-notify out of descriptors: {awake:?} awake in {:?}",
        started.elapsed()
    );
    assert!(awake < Duration::from_millis(500), "{awake:?} awake in 2 s");
    notify.signal(Signal::SIGTERM);
    notify.expect("Got SIGTERM: stopping");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// Room for one client (`ulimit -n 6`), held by a client that stays
/// connected, and the next one waiting: `accept` fails. Then, five times,
/// the held client goes, the waiting one is served and held, and another
/// comes to wait: each success reset the pause and the next failure was
/// logged again, a line per client for one shortage. As Listing 10-1's
/// back-off does, the shortage is logged once.
#[test]
fn sig_notify_logs_a_shortage_of_descriptors_once_while_clients_come_and_go() {
    let script = "ulimit -n 6 && exec \"$0\" \"$@\"";
    let mut command = std::process::Command::new("bash");
    command.args(["-c", script, bin!("sig-notify"), "127.0.0.1:0"]);
    let mut notify = Listing::spawn(&mut command, std::process::Stdio::piped());
    let ready = notify.expect(r"Listening on (\S+) \(bound by us\) as pid \d+");
    let addr: SocketAddr = ready[1].parse().unwrap();
    let mut held = Client::connect(addr);
    assert_eq!(held.reply().as_deref(), Some("hello\n"));
    let mut waiting = Client::connect(addr);
    let failure = "accept: Too many open files (os error 24); ";
    let failed = notify.next_line();
    assert!(failed.starts_with(failure), "{failed}");
    for _ in 0..5 {
        drop(held); // Its descriptor closes: the waiting one is served.
        assert_eq!(waiting.reply().as_deref(), Some("hello\n"));
        held = waiting;
        waiting = Client::connect(addr);
    }
    drop((held, waiting));
    notify.signal(Signal::SIGTERM);
    let out = notify.finish();
    let again: Vec<_> = out
        .stdout
        .iter()
        .filter(|l| l.starts_with(failure))
        .collect();
    // The transcript holds every line, the first failure's included.
    assert_eq!(again.len(), 1, "logged {} times: {again:#?}", again.len());
}

/// A log that nobody reads (a reader that stopped, a terminal suspended)
/// fills its pipe after a few thousand requests. The daemon must go on
/// answering, and still die of SIGTERM: no thread waits for the log.
#[test]
fn sig_daemon_serves_and_stops_while_nobody_reads_its_log() {
    daemon::serves_and_stops_while_nobody_reads_its_log(bin!("sig-daemon"));
}

/// A client's long lines, queued for a log nobody reads, cost the daemon
/// little memory: the log shows the start of a long request and its length.
#[test]
fn sig_daemon_keeps_little_memory_while_long_requests_wait_for_its_log() {
    daemon::keeps_little_memory_while_long_requests_wait_for_its_log(bin!(
        "sig-daemon"
    ));
}

/// A log that fills its disk: lines that cannot be written are counted
/// and reported on stderr, in one line, at the end.
#[test]
fn sig_daemon_says_at_the_end_how_many_log_lines_it_could_not_write() {
    daemon::says_at_the_end_how_many_log_lines_it_could_not_write(bin!(
        "sig-daemon"
    ));
}

/// The same for `sig-notify`, whose log is 10-1's code: its line on
/// stderr names `sig-notify`, not the program the code was copied from.
/// It logs no line per client, so a reload of a long greeting is the line
/// that does not fit.
#[test]
fn sig_notify_says_at_the_end_how_many_log_lines_it_could_not_write() {
    let manager = Manager::new();
    let dir = tempfile::tempdir().unwrap();
    let (log, config) = (dir.path().join("log"), dir.path().join("greeting"));
    fs::write(&config, "g".repeat(600)).unwrap();
    // One block of 512 bytes (dash's unit): the ready line fits, and the
    // reload's line does not.
    let script = "ulimit -f 1; exec \"$0\" 127.0.0.1:0 \"$@\"";
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", script, bin!("sig-notify"), "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &manager.path);
    let file = fs::File::create(&log).unwrap();
    let notify = Listing::spawn(&mut command, std::process::Stdio::from(file));
    assert!(manager.next().starts_with("READY=1 "));
    notify.signal(Signal::SIGHUP);
    assert!(manager.next().starts_with("RELOADING=1 "));
    assert!(manager.next().starts_with("READY=1 STATUS=Greeting "));
    notify.signal(Signal::SIGTERM);
    let out = notify.finish();
    assert_died_of(&out, Signal::SIGTERM);
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", out.stderr);
    assert!(
        lines[0].starts_with("sig-notify: ")
            && lines[0].contains("log line(s) not written: File too large"),
        "{}",
        lines[0]
    );
    assert!(fs::metadata(&log).unwrap().len() <= 512);
}

/// The lines `no-backoff` prints: a header, a line per run, a summary per
/// mode.
const NO_BACKOFF_LINES: [&str; 3] = [
    r"^\S+sig-daemon, \d+ CPUs, load average [\d. ]+; a limit of 16 descriptors, one client waiting, [\d.]+ s a run$",
    r"^(--no-backoff|back-off): [\d,]+ failures logged, thread awake \d+\.\d\d s, thread ran \d+\.\d\d s, process CPU \d+\.\d\d s$",
    r"^(--no-backoff|back-off): failures logged ([\d,]+) to ([\d,]+) \(median [\d,.]+\); thread awake (\d+\.\d\d) to (\d+\.\d\d) s \(median [\d.]+\); thread ran (\d+\.\d\d) to (\d+\.\d\d) s \(median [\d.]+\); process CPU (\d+\.\d\d) to (\d+\.\d\d) s \(median [\d.]+\)$",
];

/// Which of `NO_BACKOFF_LINES` each line is; fails on any other line.
fn no_backoff_kinds(lines: &[String]) -> Vec<usize> {
    let patterns: Vec<_> = NO_BACKOFF_LINES
        .iter()
        .map(|p| regex::Regex::new(p).unwrap())
        .collect();
    lines
        .iter()
        .map(|line| {
            patterns
                .iter()
                .position(|p| p.is_match(line))
                .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        })
        .collect()
}

/// `listings/ch10-daemon/no-backoff`, run small: without its back-off
/// the daemon logs failed accepts by the thousand, with it none, in the
/// format of the recorded run that the chapter shows; and the chapter's
/// sentence quotes that recorded run's spread. (Not a timed test: the
/// counts are only compared with zero.)
#[test]
fn no_backoff_measures_the_spin_and_the_chapter_quotes_its_recorded_run() {
    if !have("python3") {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ch10-daemon/no-backoff");
    let args = ["--runs", "1", "--secs", "0.5", bin!("sig-daemon")];
    let out = crate::support::run(script, &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(no_backoff_kinds(&out.stdout), [0, 1, 2, 1, 2]);
    let failures = |line: &str| -> u64 {
        let count = line.split(": ").nth(1).unwrap().split(' ').next();
        count.unwrap().replace(',', "").parse().unwrap()
    };
    assert!(failures(&out.stdout[1]) > 100, "{:#?}", out.stdout);
    assert_eq!(failures(&out.stdout[3]), 0, "{:#?}", out.stdout);

    let recorded = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ch10-daemon/10-01-no-backoff.out"
    ))
    .unwrap();
    let recorded: Vec<String> = recorded.lines().map(String::from).collect();
    assert_eq!(recorded[0], "$ listings/ch10-daemon/no-backoff");
    let kinds = no_backoff_kinds(&recorded[1..]);
    assert_eq!(kinds, [0, 1, 1, 1, 1, 2, 1, 1, 1, 1, 2]);
    let summary = regex::Regex::new(NO_BACKOFF_LINES[2]).unwrap();
    let spin = summary.captures(&recorded[6]).unwrap();
    let backoff = summary.captures(&recorded[11]).unwrap();
    let chapter = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch10-daemon.md"
    ))
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    for quoted in [
        format!("between {} and {} failed", &spin[2], &spin[3]),
        format!("for {} to {} of the two seconds", &spin[4], &spin[5]),
        // The accepting thread's own time on a CPU, and the process's,
        // which its log thread's adds to: each said of what it measures.
        format!("ran for only {} to {} s", &spin[6], &spin[7]),
        format!(
            "log thread included, got {} to {} s of CPU",
            &spin[8], &spin[9]
        ),
        format!("awake for {} to {} s of the two", &backoff[4], &backoff[5]),
    ] {
        assert!(chapter.contains(&quoted), "ch10 does not say {quoted:?}");
    }
}

#[test]
fn sig_daemon_logs_a_reset_that_ends_its_gentle_close() {
    daemon::logs_a_reset_that_ends_its_gentle_close(bin!("sig-daemon"));
}

#[test]
fn sig_daemon_never_says_it_listens_when_its_log_thread_is_refused() {
    daemon::never_says_it_listens_when_its_log_thread_is_refused(
        bin!("sig-daemon"),
        1,
    );
}

/// A step of the start that fails names itself in the one line, and
/// nothing is said on stdout: here `getsockname`, which reads the address
/// the ready line gives, fails under strace. (Both said a bare "No buffer
/// space available".) Linux 6.18, strace 6.1.
#[test]
fn daemons_name_the_step_when_reading_their_address_fails() {
    if !have("strace") {
        return;
    }
    for (bin, step) in [
        (
            bin!("sig-daemon"),
            "cannot read the address of 127.0.0.1:0: ",
        ),
        (
            bin!("sig-notify"),
            "cannot read the listening socket's address: ",
        ),
    ] {
        let mut command = std::process::Command::new("strace");
        command
            .args(["-q", "-o", "/dev/null", "-e", "trace=getsockname"])
            .args(["-e", "inject=getsockname:error=ENOBUFS"])
            .args([bin, "127.0.0.1:0"]);
        let out =
            Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
        assert_exited_with(&out, 1);
        assert!(out.stdout.is_empty(), "{bin}: said {:?}", out.stdout);
        let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
        let want = format!("{name}: {step}No buffer space available");
        let lines: Vec<_> = out.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with(&want),
            "{bin}: {:?}",
            out.stderr
        );
    }
}

/// Making the listener non-blocking is a step of the start too: it fails
/// before the ready line, naming itself. std does it with
/// `ioctl(FIONBIO)`; the listener's is 10-1's fourth (after its three
/// wake-up channels') and 10-2's first. (10-1 made it after the line, with
/// a bare "Bad file descriptor".) Linux 6.18, strace 6.1.
#[test]
fn daemons_name_the_step_when_making_their_listener_non_blocking_fails() {
    if !have("strace") {
        return;
    }
    for (bin, nth) in [(bin!("sig-daemon"), 4), (bin!("sig-notify"), 1)] {
        let mut command = std::process::Command::new("strace");
        command
            .args(["-q", "-o", "/dev/null", "-e", "trace=ioctl"])
            .arg(format!("--inject=ioctl:error=EBADF:when={nth}"))
            .args([bin, "127.0.0.1:0"]);
        let out =
            Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
        assert_exited_with(&out, 1);
        assert!(out.stdout.is_empty(), "{bin}: said {:?}", out.stdout);
        let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
        let want = format!(
            "{name}: cannot make the listening socket non-blocking: \
             Bad file descriptor"
        );
        let lines: Vec<_> = out.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with(&want),
            "{bin}: {:?}",
            out.stderr
        );
    }
}

/// Listing 10-2 the same: no "Listening on …" (nor READY=1, which comes
/// after it) from a start that then fails.
#[test]
fn sig_notify_never_says_it_listens_when_its_log_thread_is_refused() {
    daemon::never_says_it_listens_when_its_log_thread_is_refused(
        bin!("sig-notify"),
        1,
    );
}

#[test]
fn sig_daemon_backs_off_and_says_so_once_a_run_when_descriptors_run_out() {
    daemon::backs_off_and_says_so_once_a_run_when_descriptors_run_out(bin!(
        "sig-daemon"
    ));
}

#[test]
fn sig_daemon_logs_a_shortage_once_while_clients_come_and_go() {
    daemon::logs_a_shortage_once_while_clients_come_and_go(bin!("sig-daemon"));
}

/// 10-2's log is its stdout, and a stdout that nobody reads fills. Each
/// watchdog ping that finds no manager logs a line, one a millisecond:
/// the pipe is soon full, and a thread of the daemon waits to write. A
/// `SIGTERM` must still end it, as it does 10-1: were the main thread the
/// one that waits, it would never read its signal.
#[test]
fn sig_notify_stops_while_nobody_reads_its_log() {
    use crate::support::threads_waiting_in;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (log, log_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
    let mut command = std::process::Command::new(bin!("sig-notify"));
    command
        .arg("127.0.0.1:0")
        .env("NOTIFY_SOCKET", dir.path().join("nobody"))
        .env("WATCHDOG_USEC", "2000");
    let listing =
        Listing::spawn(&mut command, std::process::Stdio::from(log_end));
    // The ready line, and then not another byte.
    let mut log = fs::File::from(log);
    let (mut ready, mut byte) = (Vec::new(), [0u8]);
    while ready.last() != Some(&b'\n') {
        assert_eq!(log.read(&mut byte).expect("read the log"), 1, "{ready:?}");
        ready.push(byte[0]);
    }
    let pid = listing.pid();
    crate::support::wait_until("a thread to wait on the full log", || {
        threads_waiting_in(pid, "anon_pipe_write")
            + threads_waiting_in(pid, "pipe_write")
            > 0
    });
    listing.signal(Signal::SIGTERM);
    assert_died_of(&listing.finish(), Signal::SIGTERM);
    drop(log);
}

#[test]
fn sig_notify_stops_even_when_another_process_took_the_client_it_polled() {
    // A manager may pass one listening socket to several processes
    // (systemd.service(5), `Sockets=`). `poll` then wakes each of them for
    // one client, and only one gets it: on a blocking listener the others
    // would wait in `accept`, signals blocked, deaf to SIGTERM until the
    // next client. strace holds the daemon for a second as it enters
    // `accept4`, and the test, which kept a copy of the socket, takes the
    // client meanwhile.
    if !have("strace") {
        assert!(std::env::var_os("CI").is_none(), "no strace");
        eprintln!("skipped: no strace");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut command = std::process::Command::new("strace");
    command
        .args(["-q", "-o", "/dev/null", "-e", "trace=accept4"])
        .args(["-e", "inject=accept4:delay_enter=1000000"])
        .args(["--", "setpriv", "--pdeathsig", "KILL", "--", "bash", "-c"])
        .arg(
            r#"exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1
            exec "$0""#,
        )
        .arg(bin!("sig-notify"));
    // The socket goes in as standard input, the one descriptor the harness
    // neither replaces after this (std sets up 0, 1 and 2 before any
    // `pre_exec`) nor closes; bash makes it descriptor 3, and `exec` keeps
    // bash's pid for $LISTEN_PID. SAFETY: runs between fork and exec;
    // `dup2` is one system call, async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if nix::libc::dup2(shared, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut notify = Listing::spawn(&mut command, std::process::Stdio::piped());
    notify.expect(r"Listening on \S+ \(descriptor 3, .*\) as pid \d+");
    let daemon = crate::support::children_of(notify.pid())[0];
    let _client = TcpStream::connect(addr).unwrap();
    wait_until("the daemon to enter accept4", || {
        state_of(daemon) == Some('t')
    });
    let (_taken, _) = listener.accept().unwrap();
    nix::sys::signal::kill(daemon, Signal::SIGTERM).unwrap();
    notify.expect("Got SIGTERM: stopping");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// `O_NONBLOCK` is a flag of the open file description, which every
/// descriptor of a passed socket shares (fcntl(2); Linux 6.18): the
/// daemon's `set_nonblocking` on descriptor 3 makes the manager's copy,
/// and any other holder's, non-blocking too. The test, as the manager,
/// passes a blocking socket, keeps its copy, and looks at that copy once
/// the daemon listens; the chapter must say so. (It did not: it gave the
/// shared socket as the reason for the flag, and never said that the flag
/// is shared.)
#[test]
fn sig_notify_makes_a_passed_socket_non_blocking_for_every_holder() {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let non_blocking = |listener: &std::net::TcpListener| {
        let flags = fcntl(listener, FcntlArg::F_GETFL).unwrap();
        OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK)
    };
    assert!(!non_blocking(&listener), "std's listener starts blocking");
    let shared = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut command = std::process::Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--", "bash", "-c"]);
    command.arg(
        r#"exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1
        exec "$0""#,
    );
    command.arg(bin!("sig-notify"));
    // As in the test above: the socket goes in as standard input, and bash
    // makes it descriptor 3. SAFETY: runs between fork and exec; `dup2` is
    // one system call, async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if nix::libc::dup2(shared, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut notify = Listing::spawn(&mut command, std::process::Stdio::piped());
    let ready =
        notify.expect(r"Listening on \S+ \(descriptor 3, .*\) as pid (\d+)");
    assert!(
        non_blocking(&listener),
        "the manager's copy is non-blocking"
    );
    let pid = nix::unistd::Pid::from_raw(ready[1].parse().unwrap());
    // Close-on-exec is the descriptor's own flag, which bash's `exec 3<&0`
    // leaves off: the daemon sets it (O_CLOEXEC, octal 02000000 in the
    // `flags:` of /proc/PID/fdinfo, Linux 6.18).
    let fdinfo = fs::read_to_string(format!("/proc/{pid}/fdinfo/3")).unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .map(|flags| u32::from_str_radix(flags.trim(), 8).unwrap())
        .unwrap();
    assert_ne!(
        flags & 0o2000000,
        0,
        "descriptor 3 is not close-on-exec: {fdinfo}"
    );
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    assert_died_of(&notify.finish(), Signal::SIGTERM);
    let chapter = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch10-daemon.md"
    ))
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    for said in [
        "The flag is the socket's, not the daemon's:",
        "`NonBlocking=yes`",
    ] {
        assert!(chapter.contains(said), "ch10 does not say {said:?}");
    }
}

/// Refused the thread that would greet a client (`ulimit -u`, say; here
/// strace fails every `clone3` after the log's thread with EAGAIN), the
/// daemon closes the client unserved: it must say so, once, and back off
/// as for a failed `accept`, as Listing 10-1 does. (It closed the client
/// without a word, and took the next one at once.) Linux 6.18, strace 6.1.
#[test]
fn sig_notify_says_so_when_a_client_cannot_get_its_thread() {
    says_so_when_a_client_cannot_get_its_thread(
        bin!("sig-notify"),
        r"Listening on (\S+) \(bound by us\) as pid (\d+)",
    );
}

/// Listing 10-1 refused a client's thread: the same line, naming the
/// client and the step that failed.
#[test]
fn sig_daemon_says_so_when_a_client_cannot_get_its_thread() {
    says_so_when_a_client_cannot_get_its_thread(
        bin!("sig-daemon"),
        r"Listening on (\S+) as pid (\d+); config .*",
    );
}

/// The log line names the step that failed, starting the client's
/// thread, and the client: not `accept`, which succeeded, and whose
/// EAGAIN on a non-blocking listener means only that no client waits.
/// (Both daemons logged `accept: Resource temporarily unavailable`.)
fn says_so_when_a_client_cannot_get_its_thread(program: &str, ready: &str) {
    if !have("strace") {
        return;
    }
    let mut command = std::process::Command::new("strace");
    command.args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=clone3"]);
    command.args(["-e", "signal=none"]);
    command.args(["-e", "inject=clone3:error=EAGAIN:when=2+"]);
    command.args([program, "127.0.0.1:0"]);
    let mut daemon = Listing::spawn(&mut command, std::process::Stdio::piped());
    let ready = daemon.expect(ready);
    let addr: SocketAddr = ready[1].parse().unwrap();
    let pid = nix::unistd::Pid::from_raw(ready[2].parse().unwrap());
    let mut client = Client::connect(addr);
    let peer = client.stream.local_addr().unwrap();
    assert_eq!(client.reply(), None, "closed unserved");
    daemon.expect(&format!(
        "{}: not served: cannot start a thread: Resource temporarily \
         unavailable \\(os error 11\\); trying again, less often",
        regex::escape(&peer.to_string())
    ));
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    daemon.expect("Got SIGTERM: .*");
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
}

/// The log says who, or what, ended each connection, in 29-1's words: a
/// client that closes is `closed`; a line too long, `closed after a line
/// too long`; the stop, `closed at the stop`. (All three said `closed`.)
/// The idle bound, `closed after N s without a request`, has a test of
/// its own, with `--idle-secs 2`.
#[test]
fn sig_daemon_logs_who_ended_each_connection() {
    let mut daemon = start(&[]);
    let port = |client: &Client| client.stream.local_addr().unwrap().port();
    // A line too long: refused, then the daemon half-closes.
    let mut long = Client::connect(daemon.addr);
    long.stream.write_all(&[b'x'; 70_000]).unwrap();
    assert_eq!(long.reply().as_deref(), Some("error: line too long\n"));
    assert_eq!(long.reply(), None);
    let at = port(&long);
    drop(long);
    daemon
        .listing
        .expect(&format!(r"127\.0\.0\.1:{at}: connected"));
    daemon
        .listing
        .expect(&format!(r"127\.0\.0\.1:{at}: closed after a line too long"));
    // A client that asks, reads, and closes.
    let mut client = Client::connect(daemon.addr);
    client.send("hi");
    assert_eq!(client.reply().as_deref(), Some("hello, hi\n"));
    let at = port(&client);
    drop(client);
    daemon
        .listing
        .expect(&format!(r"127\.0\.0\.1:{at}: connected"));
    daemon
        .listing
        .expect(&format!(r#"127\.0\.0\.1:{at}: request "hi""#));
    daemon
        .listing
        .expect(&format!(r"127\.0\.0\.1:{at}: closed"));
    // An idle client that the stop ends.
    let mut idle = Client::connect(daemon.addr);
    let at = port(&idle);
    daemon
        .listing
        .expect(&format!(r"127\.0\.0\.1:{at}: connected"));
    daemon.listing.signal(Signal::SIGTERM);
    daemon.listing.expect(r"Got SIGTERM: .*");
    assert_eq!(idle.reply(), None, "the end of the stream");
    drop(idle);
    daemon
        .listing
        .expect(&format!(r"127\.0\.0\.1:{at}: closed at the stop"));
    daemon
        .listing
        .expect("All connections closed; dying of SIGTERM");
    assert_died_of(&daemon.finish(), Signal::SIGTERM);
}

/// A configuration that cannot be loaded is a step of the start that
/// fails, and its one line names the step and the file, as every other
/// step's does. (10-1 named only the file, 10-2 neither: "sig-notify: No
/// such file or directory (os error 2)".) A reload that fails names the
/// file too, in the log.
#[test]
fn daemons_name_the_step_when_their_configuration_cannot_be_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let bad = dir.path().join("bad.conf");
    fs::write(&bad, "delay_ms = soon\n").unwrap();
    let bad = bad.to_str().unwrap();
    let daemon = bin!("sig-daemon");
    let step = "cannot load the configuration: ";
    assert_rejects(
        daemon,
        &["127.0.0.1:0", "--config", missing],
        &format!("{step}{missing}: No such file or directory"),
    );
    assert_rejects(
        daemon,
        &["127.0.0.1:0", "--config", bad],
        &format!("{step}{bad} line 1: delay_ms: invalid digit"),
    );
    assert_rejects(
        bin!("sig-notify"),
        &["127.0.0.1:0", "--config", missing],
        &format!("cannot read the greeting: {missing}: No such file"),
    );
    // The chapter's example, as a reader runs it.
    let shown = crate::support::run(daemon, &["--config", "/nonexistent"]);
    assert_eq!(shown.status.code(), Some(1), "{}", shown.stderr);
    let lines: Vec<_> = shown.stderr.lines().collect();
    assert_session_matches_book(
        "ch10-daemon/10-01-start-failure.out",
        &[(
            "target/debug/sig-daemon --config /nonexistent".to_string(),
            &lines,
        )],
    );
    // A reload that fails: logged with the file, and the greeting kept.
    let config = dir.path().join("greeting");
    fs::write(&config, "hey\n").unwrap();
    let path = config.to_str().unwrap();
    let (mut notify, addr) = start_notify(&[], &["--config", path]);
    fs::remove_file(&config).unwrap();
    notify.signal(Signal::SIGHUP);
    notify.expect(&format!(
        "Reload failed, keeping the old greeting: {}: No such file or \
         directory \\(os error 2\\)",
        regex::escape(path)
    ));
    assert_eq!(greeting(addr), "hey\n");
    notify.signal(Signal::SIGTERM);
    notify.expect("Got SIGTERM: stopping");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// Out of descriptors at the stop, the daemon cannot accept the clients
/// still queued, and closing the listening socket resets them, their
/// requests unanswered; the drain goes on, and the daemon dies of
/// SIGTERM as after any drain. Nothing in the log speaks of them: the
/// last failure of `accept` was logged when the shortage began.
#[test]
fn sig_daemon_resets_the_clients_still_queued_when_it_cannot_accept_them() {
    const LIMIT: usize = 40;
    let mut daemon = daemon::start_with_fd_limit(bin!("sig-daemon"), LIMIT);
    let backing_off =
        "accept: Too many open files (os error 24); trying again, less often";
    let failing =
        regex::Regex::new(&format!("^{}$", regex::escape(backing_off)))
            .unwrap();
    let (idle, _) =
        daemon::fill_with_idle_clients(&mut daemon, LIMIT, &failing);
    // Nothing said at the stop of the clients still queued.
    let out = daemon::stop_resets_the_client_still_queued(daemon, idle, None);
    assert!(
        !out.stdout.iter().any(|line| line.contains("lost")),
        "{:#?}",
        out.stdout
    );
}

/// A greeting that takes more than a second to send, to a client that sent
/// a request first and reads steadily: the daemon must still read that
/// request after its half-close, or its close sends a reset that throws
/// away the rest of the greeting. The second once ran from before the
/// greeting was written, so a long greeting left no time to read, and the
/// client got part of it and ECONNRESET.
#[test]
fn sig_notify_sends_a_long_greeting_whole_to_a_client_that_sent_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting");
    let greeting = "x".repeat(8 << 20);
    fs::write(&config, &greeting).unwrap();
    let (notify, addr) =
        start_notify(&[], &["--config", config.to_str().unwrap()]);
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    // A small window, so that the greeting waits in the daemon's send
    // buffer and its `write_all` lasts as long as the reading does.
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut client = TcpStream::from(sock);
    client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 64 << 10];
    let end = loop {
        match client.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(err) => break Err(err),
        }
        // A steady, slow reader: never a second's pause, but well over a
        // second in all.
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = started.elapsed();
    assert!(
        end.is_ok() && got.len() == greeting.len() + 1,
        "{end:?} after {} of {} bytes, in {took:?}",
        got.len(),
        greeting.len() + 1
    );
    assert!(took > Duration::from_secs(1), "too quick to test: {took:?}");
    drop(client);
    notify.signal(Signal::SIGTERM);
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}

/// `--idle-secs 0` once closed every connection before reading its request,
/// even one already waiting in the socket ("closed after 0 s without a
/// request"), where many daemons take 0 for "no limit": both daemons now
/// refuse it in one line.
#[test]
fn daemons_refuse_an_idle_limit_of_zero() {
    for daemon in [bin!("sig-daemon"), bin!("async-daemon")] {
        assert_rejects(
            daemon,
            &["127.0.0.1:0", "--idle-secs", "0"],
            "--idle-secs must be at least 1",
        );
    }
}

/// A daemon's start error is the line a supervisor collects from every
/// process that shares its stderr, so it goes out in one `write`, as the
/// log's lines do: `writeln!` on the unbuffered stderr once wrote the
/// name, the message and the newline each on its own, and a second
/// daemon failing at the same moment could land between them. The three
/// daemons share this `main`; a bad option and a missing configuration
/// each end `run` with an error.
#[test]
fn daemons_write_their_start_error_with_one_write() {
    if !can_trace() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("writes");
    let mut failures = Vec::new();
    for (name, bin) in [
        ("sig-daemon", bin!("sig-daemon")),
        ("sig-notify", bin!("sig-notify")),
        ("async-daemon", bin!("async-daemon")),
    ] {
        for args in [&["--no-such-option"][..], &["--config", "/nonexistent"]] {
            let mut command = std::process::Command::new("strace");
            command
                .args(["-f", "-q", "-s", "4096", "-e", "trace=write"])
                .args(["-e", "signal=none", "-o"])
                .arg(&log)
                .arg("--")
                .arg(bin)
                .args(args);
            let out = Listing::spawn(&mut command, std::process::Stdio::null())
                .finish();
            let traced = fs::read_to_string(&log).expect("strace's log");
            let writes: Vec<&str> = traced
                .lines()
                .filter_map(|line| line.split_once("write(2, ").map(|(_, w)| w))
                .collect();
            let whole = writes.len() == 1
                && writes[0].starts_with(&format!("\"{name}: "))
                && writes[0].contains("\\n\", ")
                && writes[0].matches("\\n").count() == 1;
            if out.status.code() != Some(1) || !whole {
                failures.push(format!(
                    "{name} {args:?}: {:?}, {writes:#?}",
                    out.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The test process catches no signal: the harness checks before it starts
/// each listing, and wait-timeout, whose `SIGCHLD` handler once interrupted
/// the tests' reads with a timeout, runs only in a child process of its
/// own. A comment that explains a retry on EINTR by a handler in this
/// process tells the reader of the tests the opposite of their rule.
#[test]
fn no_test_comment_blames_a_handler_in_the_test_process() {
    let stale = regex::Regex::new(
        r"wait-timeout's (handler|SIGCHLD)|installed\s+(//\s*)?by\s+(//\s*)?wait-timeout|test process catch(es) SIGCHLD",
    )
    .unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = [tests.clone(), tests.join("support")]
        .into_iter()
        .flat_map(|dir| fs::read_dir(dir).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect::<Vec<_>>();
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for found in stale.find_iter(&text) {
            let line = text[..found.start()].lines().count();
            problems.push(format!(
                "{}:{line}: {}",
                file.display(),
                found.as_str()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// signal-hook's handlers stay installed until the process ends (nothing
/// unregisters them), and each writes its byte to its channel with a
/// plain `send`: a channel whose read end is closed makes that `send` fail
/// with EPIPE and raise SIGPIPE, which a copy of the listing that restores
/// SIGPIPE's default dies of (Listing 6-2). So the read ends live as long
/// as the process: under strace, none of the three channels made at the
/// start is closed, a SIGTERM and the drain after it included. (They were
/// closed when `run` returned, up to a second before the process died,
/// while `flush_log` waited.) Linux 6.18, strace 6.1.
#[test]
fn sig_daemon_keeps_its_signal_channels_open_while_its_handlers_may_run() {
    if !can_trace() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let mut command = std::process::Command::new("strace");
    command.args(["-f", "-qq", "-e", "trace=socketpair,close"]);
    command.args(["-e", "signal=none", "-o"]).arg(&trace);
    command.arg("--").arg(bin!("sig-daemon")).arg("127.0.0.1:0");
    let mut listing =
        Listing::spawn(&mut command, std::process::Stdio::piped());
    let ready = listing.expect(r"Listening on \S+ as pid (\d+); config \S+");
    let pid = nix::unistd::Pid::from_raw(ready[1].parse().unwrap());
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    assert_died_of(&listing.finish(), Signal::SIGTERM);
    let text = fs::read_to_string(&trace).unwrap();
    let pair = regex::Regex::new(
        r"socketpair\(AF_UNIX, SOCK_STREAM\|SOCK_CLOEXEC, 0, \[(\d+), \d+\]\) = 0",
    )
    .unwrap();
    let made: Vec<(usize, String)> = pair
        .captures_iter(&text)
        .take(3)
        .map(|c| (c.get(0).unwrap().end(), c[1].to_string()))
        .collect();
    assert_eq!(
        made.len(),
        3,
        "three channels (SIGHUP, SIGTERM, SIGINT): {text}"
    );
    for (end, fd) in made {
        assert!(
            !text[end..].contains(&format!("close({fd})")),
            "the read end {fd} of a signal channel was closed:\n{text}"
        );
    }
}

/// A Unix socket that listens passes `SO_ACCEPTCONN`, but the daemon
/// serves TCP: its address is no IPv4 or IPv6 one (std's `local_addr`
/// fails on it), and the daemon refuses it in one line before it takes
/// anything from the queue.
#[test]
fn sig_notify_refuses_a_listening_unix_socket_and_takes_no_client() {
    let Some(out) = hand_a_listening_unix_socket(bin!("sig-notify"), &[])
    else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "sig-notify: descriptor 3 is not a listening TCP socket\n"
    );
    assert_eq!(out.stdout, ["listening", r"still queued: b'hello\n'"]);
}

/// systemd reads a notification into a buffer of PIPE_BUF bytes, 4096 on
/// Linux, and ignores a longer one whole (in `manager_dispatch_notify_fd`
/// of its `src/core/manager.c` in 252, in `notify_recv_with_fds` of
/// `src/shared/notify-recv.c` now). The READY=1
/// that ends a reload once carried the whole greeting in STATUS=: after a
/// reload to a greeting of 5000 bytes it took some 5030, and the manager,
/// never told that the reload was over, would wait until its timeout. Each
/// datagram is read here whole, with a buffer far larger than systemd's.
#[test]
fn sig_notify_ends_a_reload_to_a_long_greeting_with_a_ready_systemd_reads() {
    const SYSTEMD_READS: usize = nix::libc::PIPE_BUF;
    let manager = Manager::new();
    let next = || {
        let mut buf = vec![0u8; 1 << 16];
        let n = loop {
            match manager.socket.recv(&mut buf) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                other => break other.expect("a notification"),
            }
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(n < SYSTEMD_READS, "a datagram of {n} bytes: {text:.200}");
        text
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greeting");
    fs::write(&config, "hello\n").unwrap();
    let socket = manager.path.to_str().unwrap();
    let (notify, addr) = start_notify(
        &[("NOTIFY_SOCKET", socket)],
        &["--config", config.to_str().unwrap()],
    );
    assert!(next().starts_with("READY=1\n"));
    let long = "g".repeat(5000);
    fs::write(&config, &long).unwrap();
    notify.signal(Signal::SIGHUP);
    assert!(next().starts_with("RELOADING=1\n"));
    let ready = next();
    let lines: Vec<_> = ready.lines().collect();
    assert_eq!(lines.len(), 2, "{ready:.200}");
    assert_eq!(lines[0], "READY=1");
    assert!(
        lines[1].starts_with("STATUS=Greeting \"ggg")
            && lines[1].ends_with("… (5000 bytes)"),
        "{:.200}",
        lines[1]
    );
    assert_eq!(greeting(addr), format!("{long}\n"));
    notify.signal(Signal::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    assert_died_of(&notify.finish(), Signal::SIGTERM);
}
