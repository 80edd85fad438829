//! Chapter 3, Sockets: Listings 3-1 (`socket-race`), 3-2
//! (`socket-preview`) and 3-3 (`socket-modes`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname,
    listen, setsockopt, socket, sockopt,
};

use nix::sys::signal::Signal;
use regex::Regex;

use crate::support::{
    Finished, Listing, Trace, assert_matches_book, assert_rejects,
    assert_session_matches_book, assert_session_matches_book_masking,
    assert_trace_matches_book, blessing, can_trace, cargo_run, default_port,
    have, kernel, out_of_descriptors_waits_then_serves, private_hosts_file,
    run, run_with_hosts, shell, state_of, strace_command, threads_blocked_in,
    wait_until, with_fd_limit,
};

/// The default port's lock, the one every chapter's tests share, taken
/// only when blessing: the book's outputs are real runs on the default
/// port, while checks append `127.0.0.1:0` and need not wait for one
/// another.
fn default_port_if_blessing() -> Option<std::sync::MutexGuard<'static, ()>> {
    blessing().then(default_port)
}

fn with_test_address<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut args = args.to_vec();
    if !blessing() {
        args.push("127.0.0.1:0");
    }
    args
}

/// Starts `socket-modes server` and returns it with the address it bound.
fn start_server(args: &[&str]) -> (Listing, String) {
    let mut server = Listing::start(bin!("socket-modes"), args);
    let addr = server
        .expect(r"Server listening on (127\.0\.0\.1:\d+)")
        .remove(1);
    (server, addr)
}

// ---------------------------------------------------------------------------
// Listing 3-1: the race

#[test]
fn socket_race_refuses_clients_before_listen_and_queues_them_after() {
    let out = run(bin!("socket-race"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let refused: Vec<_> = (0..5)
        .map(|i| format!("client{i} failed: Connection refused (os error 111)"))
        .collect();
    assert_eq!(out.stdout[..5], refused);
    assert!(
        out.stdout[5].starts_with("Server listening on 127.0.0.1:")
            && out.stdout[5].ends_with(", too late for them"),
        "{:?}",
        out.stdout[5]
    );
    assert_eq!(
        out.stdout[6],
        "A sixth client connected, though nobody has called accept"
    );
    assert_matches_book(
        "ch03-sockets/03-01-socket-race.out",
        "socket-race",
        &[],
        &out.stdout,
    );
}

/// Makes every `socket` call of the program that `command` starts fail
/// with EMFILE, as in a process out of descriptors: a seccomp filter,
/// installed between `fork` and `exec`. (A `ulimit -n` low enough to
/// refuse the program's first socket stops the dynamic loader first.)
fn with_socket_refused(command: &mut Command) -> &mut Command {
    use nix::libc::{self, sock_filter, sock_fprog};
    let op = |code: u32, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf,
        k,
    };
    let filter = [
        // The system call's number, at offset 0 of `seccomp_data`;
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0),
        // `socket` fails with EMFILE, everything else is allowed.
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            1,
            libc::SYS_socket as u32,
        ),
        op(
            libc::BPF_RET | libc::BPF_K,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EMFILE as u32,
        ),
        op(libc::BPF_RET | libc::BPF_K, 0, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: runs between fork and exec; two `prctl` calls, each one
    // system call, async-signal-safe; the filter was built before `fork`
    // and only read here.
    unsafe {
        command.pre_exec(move || {
            let program = sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Listing 3-1's server thread cannot make its socket, and the one line
/// of error says why: the main thread joins the thread that knows,
/// rather than report only that it failed.
#[test]
fn socket_race_says_why_its_server_thread_could_not_start() {
    let mut command = Command::new(bin!("socket-race"));
    with_socket_refused(&mut command);
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(out.stderr, "socket-race: EMFILE: Too many open files\n");
}

/// Out of descriptors, Listing 3-1's clients fail before they can knock
/// at all: nobody refused them, and the listing must not say that the
/// server was too late for them. With four descriptors, 0, 1, 2 and the
/// server's socket, every client's `socket` fails with EMFILE.
#[test]
fn socket_race_claims_no_race_when_its_clients_fail_otherwise() {
    let mut command = Command::new(bin!("socket-race"));
    with_fd_limit(&mut command, 4, 4);
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    let failed: Vec<_> = (0..5)
        .map(|i| format!("client{i} failed: Too many open files (os error 24)"))
        .collect();
    assert_eq!(out.stdout, failed, "and no 'too late for them'");
    assert_eq!(
        out.stderr,
        "socket-race: 0 of 5 clients were refused; this run shows no race\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

// ---------------------------------------------------------------------------
// Listing 3-2: the port

#[test]
fn preview_server_answers_each_client_with_its_own_name() {
    let mut preview = Listing::start(bin!("socket-preview"), &["127.0.0.1:0"]);
    let port = preview
        .expect(r"Server listening on 127\.0\.0\.1:(\d+)")
        .remove(1);
    assert_ne!(port, "0", "it prints the port the kernel chose");
    // It ends by itself once its five clients have their replies, as the
    // original does: its server thread is not waited for.
    let out = preview.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let expected: Vec<_> = (0..5)
        .map(|i| format!("client got: [server got: [client{i}]]"))
        .collect();
    assert_eq!(out.stdout[1..], expected);
}

#[test]
fn preview_output_matches_the_book() {
    let _port = default_port_if_blessing();
    let args = [];
    let out = run(bin!("socket-preview"), &with_test_address(&args));
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch03-sockets/03-02-socket-preview.out",
        "socket-preview",
        &args,
        &out.stdout,
    );
}

#[test]
fn preview_server_outlives_a_client_that_resets_its_connection() {
    // Five connections are its own clients'; the sixth is ours, reset at
    // once, and it must come first: the program ends after its own five.
    // The listing binds, then prints its address, and only then starts
    // its server and clients. So its stdout is a pipe already full: the
    // print waits, with the socket listening, while ours is queued.
    let held = Held::start();
    reset_at_once(&format!("127.0.0.1:{}", held.port));
    let (out, printed) = held.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(printed.lines().count(), 6, "all five clients answered");
    assert!(
        out.stderr
            .starts_with("socket-preview: a connection failed: "),
        "the reset was reported: {:?}",
        out.stderr
    );
}

/// Listing 3-2's own server, not only Listing 3-3's copy of it, closes in
/// three steps: a client that sends a megabyte, far more than the one
/// read of 1024 bytes, still gets its reply instead of a reset. As in the
/// test above, the listing waits to print its address into a full pipe,
/// so the megabyte's connection is the first its server accepts.
#[test]
fn preview_server_drains_a_megabyte_and_the_client_still_gets_its_reply() {
    let held = Held::start();
    // Queued before the listing's own clients exist.
    let sock = TcpStream::connect(("127.0.0.1", held.port)).unwrap();
    let sending = thread::spawn(move || send_a_megabyte_on(sock));
    let finishing = thread::spawn(move || held.finish());
    let reply = sending.join().unwrap().expect("the reply, not a reset");
    let reply = String::from_utf8(reply).unwrap();
    let got = reply
        .strip_prefix("server got: [")
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or_else(|| panic!("{reply:?}"));
    assert!(
        !got.is_empty() && got.len() <= 1024 && got.bytes().all(|b| b == b'A')
    );
    let (out, printed) = finishing.join().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(printed.lines().count(), 6, "all five clients answered");
}

/// Listing 3-2's own deadline: a client that connects first and says
/// nothing holds its server for five seconds at most, and the listing's
/// five clients, queued behind it, are all answered.
#[test]
fn preview_server_gives_a_silent_client_five_seconds_at_most() {
    let held = Held::start();
    // Queued before the listing's own clients exist, and silent.
    let _silent = TcpStream::connect(("127.0.0.1", held.port)).unwrap();
    let started = Instant::now();
    let (out, printed) = held.finish();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(printed.lines().count(), 6, "all five clients answered");
    assert!(took >= Duration::from_secs(4), "done after {took:?}");
    assert!(took < Duration::from_secs(8), "done after {took:?}");
    assert_eq!(
        out.stderr,
        "socket-preview: a connection failed: timed out\n"
    );
}

/// A reply that cannot be sent before the deadline is a timeout, and
/// Listing 3-2 says so, as Listing 3-3's `explain` does, rather than
/// "Resource temporarily unavailable". A send that runs out of time fails
/// with EAGAIN; here a seccomp filter makes the send of one reply, and
/// only that one, fail so at once: our request is 500 bytes, so its reply
/// is 514, and the listing's own clients' replies are 22.
#[test]
fn preview_server_reports_a_reply_it_cannot_send_in_time_as_a_timeout() {
    let held = Held::start_with(|command| {
        with_sends_of_length_failing(command, 514, nix::libc::EAGAIN);
    });
    let mut sock = TcpStream::connect(("127.0.0.1", held.port)).unwrap();
    sock.write_all(&[b'A'; 500]).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let (out, printed) = held.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(printed.lines().count(), 6, "all five clients answered");
    assert_eq!(
        out.stderr,
        "socket-preview: a connection failed: timed out\n"
    );
}

/// Makes every `sendto` of exactly `len` bytes by the program that
/// `command` starts fail with `errno`, with a seccomp filter installed
/// between `fork` and `exec`, as `with_socket_refused` does.
fn with_sends_of_length_failing(
    command: &mut Command,
    len: u32,
    errno: i32,
) -> &mut Command {
    use nix::libc::{self, sock_filter, sock_fprog};
    let op = |code: u32, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let equal = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let filter = [
        // The system call's number, at offset 0 of `seccomp_data`: not
        // `sendto`, jump to the last instruction, which allows it.
        op(load, 0, 0),
        op(equal, 3, libc::SYS_sendto as u32),
        // Its third argument, the length, low half, at offset 16 + 2 * 8.
        op(load, 0, 32),
        op(equal, 1, len),
        op(
            libc::BPF_RET | libc::BPF_K,
            0,
            libc::SECCOMP_RET_ERRNO | errno as u32,
        ),
        op(libc::BPF_RET | libc::BPF_K, 0, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: runs between fork and exec; two `prctl` calls, each one
    // system call, async-signal-safe; the filter was built before `fork`
    // and only read here.
    unsafe {
        command.pre_exec(move || {
            let program = sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Listing 3-2's server out of descriptors while its own five clients
/// wait: it pauses between tries of `accept` instead of spinning, and
/// answers them all once it has room again.
#[test]
fn preview_server_pauses_between_accepts_when_out_of_descriptors() {
    if !have("strace") {
        eprintln!("skipped: no strace");
        return;
    }
    // Nine descriptors: 0, 1, 2, the listener and the five clients'
    // sockets, none left for `accept`, which takes its descriptor before
    // it looks for a connection. strace holds the server's first `accept`
    // back for a second, so that every client has made its socket by
    // then; every later `accept` runs at once, and strace records each
    // one. A second is a delay, not a wait: a run in which that first
    // `accept` still found a descriptor free, a client being slower, shows
    // nothing about the server, and is made again.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let record = dir.path().join("accepts");
    let record = record.to_str().unwrap();
    let script = "ulimit -S -n 9 && exec \"$0\" \"$@\" 2>&1";
    let emfile = "socket-preview: a connection failed: Too many open files (os error 24)";
    let mut tries = 0;
    let preview = loop {
        tries += 1;
        let mut preview = Listing::start(
            "strace",
            &[
                "-f",
                "-ttt",
                "-o",
                record,
                "-e",
                "trace=accept4",
                "-e",
                "inject=accept4:delay_enter=1s:when=1",
                "--",
                "bash",
                "-c",
                script,
                bin!("socket-preview"),
                "127.0.0.1:0",
            ],
        );
        preview.expect(r"Server listening on 127\.0\.0\.1:\d+");
        let failed = preview.next_line();
        if failed == emfile {
            break preview;
        }
        let accepts = std::fs::read_to_string(record).expect("strace's record");
        let first = accepts
            .lines()
            .find(|l| l.contains("accept4("))
            .unwrap_or("");
        assert!(
            !first.contains("EMFILE") && tries < 3,
            "{failed:?} after {tries} tries; first accept: {first:?}"
        );
    };
    // One second of failing: a pause of 100 ms allows about ten tries,
    // where a loop that retried at once would make thousands.
    thread::sleep(Duration::from_secs(1));
    let tracee = crate::support::children_of(preview.pid());
    assert_eq!(tracee.len(), 1, "strace runs one program: {tracee:?}");
    let room = nix::libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: prlimit only reads `room`; no old value is asked for.
    let raised = unsafe {
        nix::libc::prlimit(
            tracee[0].as_raw(),
            nix::libc::RLIMIT_NOFILE,
            &room,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(raised, 0, "prlimit: {}", std::io::Error::last_os_error());
    let out = preview.finish();
    assert!(out.status.success(), "{:?}", out.stdout);
    let replies = &out.stdout[2..];
    let expected: Vec<_> = (0..5)
        .map(|i| format!("client got: [server got: [client{i}]]"))
        .collect();
    assert_eq!(replies, expected, "one failure line, then every reply");
    // "About ten times a second": a pause of ACCEPT_PAUSE, 100 ms, before
    // each new try. Each failed `accept` is stamped (`-ttt`, seconds after
    // the pid); the shortest time between two is the pause itself, which a
    // loaded machine can only make longer, and a second of failing holds
    // several of them. A loop that retried at once, or one that waited a
    // second, fails here.
    let accepts = std::fs::read_to_string(record).expect("strace's record");
    let failed: Vec<f64> = accepts
        .lines()
        .filter(|l| l.contains("EMFILE"))
        .map(|l| {
            let stamp = l.split_whitespace().nth(1);
            stamp.and_then(|t| t.parse().ok()).expect("a time stamp")
        })
        .collect();
    let shortest = failed
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(f64::INFINITY, f64::min);
    assert!(
        (3..=30).contains(&failed.len()) && (0.09..0.5).contains(&shortest),
        "{} failed accepts in about a second, the closest {shortest:.3} s \
         apart",
        failed.len()
    );
}

/// Listing 3-2 held between `listen` and its own clients: it binds, then
/// prints its address, and only then starts its server and clients, so
/// with its stdout a pipe already full, the print waits with the socket
/// listening, and a connection the test makes now is the first accepted.
struct Held {
    preview: Listing,
    port: u16,
    output: std::fs::File,
    filled: usize,
}

impl Held {
    fn start() -> Held {
        Held::start_with(|_| ())
    }

    /// `start`, with `setup` applied to the command first.
    fn start_with(setup: impl FnOnce(&mut Command)) -> Held {
        let (output, stdout) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
        let output = std::fs::File::from(output);
        let filled = fill(&stdout);
        let mut command = std::process::Command::new(bin!("socket-preview"));
        command.arg("127.0.0.1:0");
        setup(&mut command);
        let preview =
            Listing::spawn(&mut command, std::process::Stdio::from(stdout));
        // The command holds our copy of the write end: without this, the
        // pipe would never end.
        drop(command);
        let mut port = None;
        wait_until("socket-preview to listen", || {
            port = listening_port(preview.pid());
            port.is_some()
        });
        Held {
            preview,
            port: port.unwrap(),
            output,
            filled,
        }
    }

    /// Lets it print, reads what it prints to the end, and waits for it:
    /// how it ended, and what it printed after the bytes that filled the
    /// pipe.
    fn finish(self) -> (Finished, String) {
        let Held {
            preview,
            mut output,
            filled,
            ..
        } = self;
        let reading = thread::spawn(move || {
            let mut all = Vec::new();
            output.read_to_end(&mut all).map(|_| all)
        });
        let out = preview.finish();
        let printed = reading.join().unwrap().expect("its output");
        (
            out,
            String::from_utf8_lossy(&printed[filled..]).into_owned(),
        )
    }
}

/// Writes into a pipe until it is full, without waiting; returns how many
/// bytes went in. The pipe is left in blocking mode for its next writer.
fn fill(pipe: &impl AsRawFd) -> usize {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let fd = pipe.as_raw_fd();
    let set = |flags: OFlag| {
        // SAFETY: the descriptor is open for the duration of the call.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFL(flags)).expect("F_SETFL")
    };
    set(OFlag::O_NONBLOCK);
    let chunk = [b'.'; 4096];
    let mut filled = 0;
    loop {
        // SAFETY: as above.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match nix::unistd::write(borrowed, &chunk) {
            Ok(n) => filled += n,
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(err) => panic!("filling the pipe: {err}"),
        }
    }
    set(OFlag::empty());
    filled
}

/// The port of the TCP socket that `pid` listens on: its descriptors name
/// socket inodes, and the kernel's socket diagnostics name the inode and
/// port of every listening socket. (Not /proc/net/tcp, which lists every
/// connection too, tens of thousands in TIME_WAIT in a full run of the
/// suite, and takes seconds to read on a loaded machine.)
fn listening_port(pid: nix::unistd::Pid) -> Option<u16> {
    let inodes: Vec<u64> = crate::support::fds_of(pid)
        .into_iter()
        .filter_map(|(_, target)| {
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    crate::support::tcp_listeners()
        .into_iter()
        .find(|(_, inode)| inodes.contains(inode))
        .map(|(port, _)| port)
}

/// Connects, then resets the connection without a word: with a linger
/// time of zero, closing sends RST, and the server's next call fails.
fn reset_at_once(addr: &str) {
    let rude = TcpStream::connect(addr).expect("connect");
    crate::support::reset_on_close(&rude);
}

// ---------------------------------------------------------------------------
// Listing 3-3: the modes

#[test]
fn servers_listen_on_loopback_port_50008_by_default() {
    let _port = default_port();
    // Another program may hold the port; then the error names the address
    // that was tried, which is just as good a witness.
    let mut server =
        Listing::start(bin!("socket-modes"), &["server", "--count", "1"]);
    match server.next_line_or_exit() {
        Some(line) => {
            assert_eq!(line, "Server listening on 127.0.0.1:50008");
            let client = run(bin!("socket-modes"), &["client"]);
            assert!(client.status.success(), "{}", client.stderr);
            assert!(server.finish().status.success());
        }
        None => {
            let out = server.finish();
            assert!(
                out.stderr.starts_with(
                    "socket-modes: cannot listen on 127.0.0.1:50008: "
                ),
                "{}",
                out.stderr
            );
        }
    }
}

#[test]
fn server_mode_answers_client_and_threads_modes_in_other_processes() {
    let (mut server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "6"]);

    let client = run(bin!("socket-modes"), &["client", &addr]);
    assert!(client.status.success(), "{}", client.stderr);
    assert_eq!(client.stdout, ["client got: [server got: [client]]"]);
    server.expect(r"Answered 127\.0\.0\.1:\d+: server got: \[client\]");

    let threads = run(bin!("socket-modes"), &["threads", &addr]);
    assert!(threads.status.success(), "{}", threads.stderr);
    let expected: Vec<_> = (0..5)
        .map(|i| format!("client got: [server got: [client{i}]]"))
        .collect();
    assert_eq!(threads.stdout, expected);

    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    // The threads connect in any order; each is answered exactly once.
    let mut answered: Vec<_> = out.stdout[2..]
        .iter()
        .map(|line| line.split_once(": ").expect("Answered <peer>: <reply>").1)
        .collect();
    answered.sort();
    let expected: Vec<_> =
        (0..5).map(|i| format!("server got: [client{i}]")).collect();
    assert_eq!(answered, expected);
}

#[test]
fn server_waits_without_spinning_when_out_of_descriptors_and_recovers() {
    // A soft limit of four descriptors: 0, 1, 2 and the listening socket.
    // Every `accept` fails with EMFILE, at once, while a client waits; it
    // is answered once `prlimit` gives room again from outside, and the
    // whole run of failures was one line.
    let (reply, server) = out_of_descriptors_waits_then_serves(
        bin!("socket-modes"),
        &["server", "127.0.0.1:0", "--count", "1"],
        4,
        "socket-modes: a connection failed: Too many open files (os error 24)",
        |addr| {
            let mut client = TcpStream::connect(addr).expect("queued");
            client.write_all(b"patient").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            thread::spawn(move || {
                let mut reply = String::new();
                client.read_to_string(&mut reply).expect("the reply");
                reply
            })
        },
    );
    assert_eq!(reply, "server got: [patient]");
    let out = server.finish();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 3, "nothing more: {:?}", out.stdout);
    assert!(
        out.stdout[2].starts_with("Answered 127.0.0.1:")
            && out.stdout[2].ends_with(": server got: [patient]"),
        "{:?}",
        out.stdout
    );
}

/// `socket-modes server | head -1`, as the chapter runs it: the server
/// prints its address, and its reader goes. Waiting in `accept`, it does
/// not notice until the next connection, which it answers in full; only
/// then does its log line fail with `BrokenPipe`, and it ends through
/// `main`, status 0, without a word.
#[test]
fn server_whose_log_reader_left_answers_the_next_client_then_ends() {
    use std::io::BufRead;
    let (reader, writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
    let mut command = Command::new(bin!("socket-modes"));
    command.args(["server", "127.0.0.1:0"]);
    let server = Listing::spawn(&mut command, Stdio::from(writer));
    // The command holds our copy of the write end: without this, the
    // reader would not be the only one to go.
    drop(command);
    // `head -1`: one line, then gone.
    let mut first = String::new();
    std::io::BufReader::new(std::fs::File::from(reader))
        .read_line(&mut first)
        .expect("the server's first line");
    let addr = first
        .trim_end()
        .strip_prefix("Server listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    let client = run(bin!("socket-modes"), &["client", &addr]);
    assert!(client.status.success(), "{}", client.stderr);
    assert_eq!(client.stdout, ["client got: [server got: [client]]"]);
    let out = server.finish();
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    assert_eq!(out.stderr, "", "it ends without a word");
}

#[test]
fn server_mode_outlives_a_client_that_hangs_up_at_once() {
    let (server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    reset_at_once(&addr);
    let client = run(bin!("socket-modes"), &["client", &addr]);
    assert!(client.status.success(), "{}", client.stderr);
    assert_eq!(client.stdout, ["client got: [server got: [client]]"]);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("socket-modes: "),
        "the reset was reported: {:?}",
        out.stderr
    );
}

#[test]
fn a_silent_client_holds_up_the_next_one_for_five_seconds_at_most() {
    let (mut server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    // Connects first, and says nothing: the server is stuck with it.
    let _silent = TcpStream::connect(&addr).expect("connect");
    let started = Instant::now();
    let client = run(bin!("socket-modes"), &["client", &addr]);
    let waited = started.elapsed();
    assert!(client.status.success(), "{}", client.stderr);
    assert_eq!(client.stdout, ["client got: [server got: [client]]"]);
    // Served after the silent one timed out, never before, and soon after:
    // the client's own timeout of ten seconds is not what bounds it.
    assert!(waited >= Duration::from_secs(4), "served after {waited:?}");
    assert!(waited < Duration::from_secs(8), "served after {waited:?}");
    server.expect(r"Answered 127\.0\.0\.1:\d+: server got: \[client\]");
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.ends_with(": timed out after 5 s\n"),
        "{:?}",
        out.stderr
    );
}

/// The five seconds are per connection, not per peer: a peer that opens
/// two connections and says nothing on either holds the server, which
/// takes one connection at a time, for two deadlines, ten seconds, and a
/// client queued behind them waits that long for its reply.
#[test]
fn two_silent_connections_hold_up_the_next_client_for_two_deadlines() {
    let (mut server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    // `connect` returns once the kernel has completed the connection and
    // queued it: the two silent ones are queued first, in this order.
    let _silent = [(); 2].map(|()| TcpStream::connect(&addr).expect("connect"));
    let pid = server.pid();
    wait_until("the server to wait for the first silent request", || {
        threads_blocked_in(pid, nix::libc::SYS_recvfrom) == 1
    });
    let started = Instant::now();
    let mut client = TcpStream::connect(&addr).expect("connect");
    // Our own patience is far longer than the two deadlines, so that what
    // we measure is the server's, not ours (Listing 3-3's client gives up
    // after ten seconds, and may do so just as its turn comes).
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client.write_all(b"client").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client
        .read_to_string(&mut reply)
        .expect("a reply within 30 s");
    let waited = started.elapsed();
    assert_eq!(reply, "server got: [client]");
    assert!(waited >= Duration::from_secs(9), "served after {waited:?}");
    assert!(waited < Duration::from_secs(14), "served after {waited:?}");
    server.expect(r"Answered 127\.0\.0\.1:\d+: server got: \[client\]");
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let timeouts = out
        .stderr
        .lines()
        .filter(|line| line.ends_with(": timed out after 5 s"))
        .count();
    assert_eq!(timeouts, 2, "{:?}", out.stderr);
}

#[test]
fn a_slow_client_holds_up_the_next_one_for_five_seconds_at_most() {
    let (mut server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    // Sends one byte just before the server's deadline, and never closes:
    // the read, the reply and the drain all share one deadline.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    let started = Instant::now();
    let dripper = thread::spawn(move || {
        // The slowness is the experiment, not a way to wait for anything.
        thread::sleep(Duration::from_millis(4500));
        let _ = slow.write_all(b"s");
        slow
    });
    let client = run(bin!("socket-modes"), &["client", &addr]);
    let waited = started.elapsed();
    assert!(client.status.success(), "{}", client.stderr);
    // Two timeouts one after the other would take over nine seconds.
    assert!(waited < Duration::from_secs(8), "served after {waited:?}");
    let _slow = dripper.join().unwrap();
    server.expect(r"Answered 127\.0\.0\.1:\d+: server got: \[client\]");
    // The slow one got its reply, but never closed: its time ran out.
    let out = server.finish();
    assert!(out.status.success());
    assert!(
        out.stderr.ends_with(": timed out after 5 s\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn server_survives_being_stopped_and_continued_in_the_middle_of_a_read() {
    let (mut server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    let mut client = TcpStream::connect(&addr).expect("connect");
    // Stopped and continued while it waits in `recvfrom` with a timeout:
    // Linux (6.18 here) makes that read fail with EINTR, and the server
    // tries again.
    // In `recvfrom` itself, not still in `accept`, where it sleeps too
    // but a stop changes nothing.
    let pid = server.pid();
    let reading = || threads_blocked_in(pid, nix::libc::SYS_recvfrom) == 1;
    wait_until("the server to wait for the request", reading);
    server.signal(Signal::SIGSTOP);
    wait_until("the server to stop", || state_of(pid) == Some('T'));
    server.signal(Signal::SIGCONT);
    wait_until("the server to wait again", reading);
    client.write_all(b"stopped").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server got: [stopped]", "Linux {}", kernel());
    server.expect(r"Answered 127\.0\.0\.1:\d+: server got: \[stopped\]");
    let out = server.finish();
    assert_eq!(out.stderr, "", "no error on the way");
}

#[test]
fn client_gives_up_on_a_server_that_never_answers() {
    // Listening, so the connection completes, but nobody ever accepts.
    let mute = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = mute.local_addr().unwrap().to_string();
    let started = Instant::now();
    assert_rejects(
        bin!("socket-modes"),
        &["client", &addr],
        &format!("{addr}: timed out after 10 s"),
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[test]
fn client_gives_up_on_a_server_that_trickles_its_reply() {
    // A byte every half second: each read succeeds within its timeout, so
    // only one deadline for the whole exchange ends the client.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let until = Instant::now() + Duration::from_secs(40);
        while Instant::now() < until && conn.write_all(b"x").is_ok() {
            thread::sleep(Duration::from_millis(500));
        }
    });
    let started = Instant::now();
    assert_rejects(
        bin!("socket-modes"),
        &["client", &addr],
        &format!("{addr}: timed out after 10 s"),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// The original's server closes a connection only when `accept` returns
/// the next one: the port's client, which reads the reply to its end,
/// waits its ten seconds for an end that does not come, and gives up.
#[test]
fn client_waits_in_vain_for_the_original_server_to_end_its_reply() {
    if !have("python3") {
        return;
    }
    let original = "import socket\n\
        sock = socket.socket()\n\
        sock.bind(('127.0.0.1', 0))\n\
        sock.listen(5)\n\
        print(sock.getsockname()[1], flush=True)\n\
        while True:\n\
        \x20   conn, addr = sock.accept()\n\
        \x20   data = conn.recv(1024)\n\
        \x20   conn.send(('server got: [%s]' % data).encode())\n";
    let mut server = Listing::start("python3", &["-c", original]);
    let addr = format!("127.0.0.1:{}", server.expect(r"(\d+)").remove(1));
    let started = Instant::now();
    assert_rejects(
        bin!("socket-modes"),
        &["client", &addr],
        &format!("{addr}: timed out after 10 s"),
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
    drop(server);
}

/// The original's server thread, reset by a client before it reads:
/// `recv` raises, the exception ends the thread, and the listening socket,
/// a local variable of that thread's function, is closed with it. Every
/// client that comes after is refused. The reset comes from a client that
/// closes with SO_LINGER set to 0; the five clients start once the server
/// thread has ended (`join`), so nothing here depends on timing.
#[test]
fn the_original_server_dies_of_a_reset_and_every_later_client_is_refused() {
    if !have("python3") {
        return;
    }
    let original = "import socket, struct, threading\n\
        listener = None\n\
        def server():\n\
        \x20   sock = socket.socket()\n\
        \x20   sock.bind(('127.0.0.1', 0))\n\
        \x20   sock.listen(5)\n\
        \x20   global listener\n\
        \x20   listener = sock.getsockname()\n\
        \x20   ready.set()\n\
        \x20   while True:\n\
        \x20       conn, addr = sock.accept()\n\
        \x20       data = conn.recv(1024)\n\
        \x20       conn.send(('server got: [%s]' % data).encode())\n\
        ready = threading.Event()\n\
        thread = threading.Thread(target=server, daemon=True)\n\
        thread.start()\n\
        ready.wait()\n\
        rude = socket.socket()\n\
        linger = struct.pack('ii', 1, 0)\n\
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)\n\
        rude.connect(listener)\n\
        rude.close()\n\
        thread.join()\n\
        for i in range(5):\n\
        \x20   sock = socket.socket()\n\
        \x20   try:\n\
        \x20       sock.connect(listener)\n\
        \x20       print('client%d connected' % i)\n\
        \x20   except ConnectionRefusedError:\n\
        \x20       print('client%d refused' % i)\n";
    let out = run("python3", &["-c", original]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("ConnectionResetError"),
        "the server thread's end: {}",
        out.stderr
    );
    let refused: Vec<_> =
        (0..5).map(|i| format!("client{i} refused")).collect();
    assert_eq!(out.stdout, refused, "{}", out.stderr);
}

/// A reply longer than the client accepts is an error in one line, not
/// its first 64 KiB printed as if they were the whole reply; a reply of
/// exactly 64 KiB is whole.
#[test]
fn client_refuses_a_reply_longer_than_64_kib() {
    for len in [64 * 1024, 64 * 1024 + 1] {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            conn.read_to_end(&mut request).expect("the request");
            // The client may stop reading before the end: ignore that.
            let _ = conn.write_all(&vec![b'x'; len]);
        });
        if len == 64 * 1024 {
            let out = run(bin!("socket-modes"), &["client", &addr]);
            assert!(out.status.success(), "{}", out.stderr);
            let whole = format!("client got: [{}]", "x".repeat(len));
            assert!(out.stdout == [whole], "not the whole reply");
        } else {
            assert_rejects(
                bin!("socket-modes"),
                &["client", &addr],
                &format!("{addr}: the reply is longer than 65536 bytes"),
            );
        }
        server.join().expect("the server thread");
    }
}

#[test]
fn client_gives_up_connecting_to_a_server_whose_queue_is_full() {
    // A backlog of 0 admits one connection; the kernel drops the SYN of
    // the next, and that client's connect hangs until it gives up.
    let full = tcp_socket();
    bind(full.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind");
    listen(&full, Backlog::new(0).unwrap()).expect("listen");
    let bound: SockaddrIn = getsockname(full.as_raw_fd()).expect("address");
    let addr = bound.to_string();
    let _first = TcpStream::connect(&addr).expect("the queue's one place");
    assert_rejects(
        bin!("socket-modes"),
        &["client", &addr],
        &format!("{addr}: timed out after 10 s"),
    );
}

/// While the queue is full the kernel drops each SYN, and the client's
/// kernel sends it again until the first of two limits, then `connect`
/// fails with ETIMEDOUT: a count, `tcp_syn_retries` resends (six by
/// default), and a time, what that many resends take if every wait
/// doubles from one second (127 s for six). Since Linux 6.5 the first
/// five resends come a second apart (`tcp_syn_linear_timeouts`, 4, after
/// the first) and the count grows by four: ten resends, and about two
/// minutes, by default. `TCP_SYNCNT` sets `tcp_syn_retries` for one
/// socket: with one, the time limit is 3 s and comes first; on Linux 6.18
/// the SYNs went at 0, 1 and 2 s, two resends, and the wait ended at
/// about 3 s (before 6.5: one resend, at 1 s). Linux's behaviour
/// (`tcp_conn_request()` drops the SYN; `tcp_write_timeout()` gives up).
#[test]
fn a_connect_to_a_full_queue_retries_then_fails_with_etimedout() {
    let full = tcp_socket();
    bind(full.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind");
    listen(&full, Backlog::new(0).unwrap()).expect("listen");
    let bound: SockaddrIn = getsockname(full.as_raw_fd()).expect("address");
    let _first =
        TcpStream::connect(bound.to_string()).expect("the queue's one place");
    let late = tcp_socket();
    let one: nix::libc::c_int = 1;
    // SAFETY: `one` outlives the call, which only reads it.
    let set = unsafe {
        nix::libc::setsockopt(
            late.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_SYNCNT,
            (&raw const one).cast(),
            size_of_val(&one) as nix::libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "TCP_SYNCNT: {}", std::io::Error::last_os_error());
    let started = Instant::now();
    let result = nix::sys::socket::connect(late.as_raw_fd(), &bound);
    let took = started.elapsed();
    let linux = kernel();
    assert_eq!(result, Err(nix::errno::Errno::ETIMEDOUT), "Linux {linux}");
    assert!(
        (Duration::from_millis(2500)..Duration::from_secs(10)).contains(&took),
        "gave up after {took:?} (Linux {linux})"
    );
    // The kernel counts the SYNs it sent again (`tcpi_retransmits`), and
    // the count stays after it gave up: two, a second apart, since 6.5;
    // one, after a second, before.
    let resent = syn_resends(&late);
    let expected = if at_least_linux(6, 5) { 2 } else { 1 };
    assert_eq!(
        resent, expected,
        "SYN resent {resent} times (Linux {linux})"
    );
}

/// True if the running kernel is Linux `major`.`minor` or later.
fn at_least_linux(major: u32, minor: u32) -> bool {
    let release = kernel();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    found >= (major, minor)
}

/// How many times the kernel sent `sock`'s SYN again, from
/// `getsockopt(TCP_INFO)`: `tcpi_retransmits`, the retransmissions since
/// the last one answered, which for a connection never made is all of
/// them.
fn syn_resends(sock: &OwnedFd) -> u8 {
    use nix::libc;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable and `len` says how large it is.
    let done = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(done, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    // SAFETY: zeroed, then filled in by the kernel.
    unsafe { info.assume_init() }.tcpi_retransmits
}

#[test]
fn a_client_cannot_forge_a_line_of_the_server_log() {
    let (mut server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    let mut forger = TcpStream::connect(&addr).expect("connect");
    forger
        .write_all(b"it's]\nAnswered 127.0.0.1:1: server got: [forged\x1b[2J")
        .unwrap();
    forger.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    forger.read_to_end(&mut reply).unwrap();
    // The reply is the client's own bytes back; the log escapes them,
    // quote marks included.
    let logged = server.expect(r"Answered 127\.0\.0\.1:\d+: (.*)").remove(1);
    assert_eq!(
        logged,
        r"server got: [it\'s]\nAnswered 127.0.0.1:1: server got: [forged\x1b[2J]"
    );
    let out = server.finish();
    assert_eq!(out.stdout.len(), 2, "one line per client: {:?}", out.stdout);
}

/// Sends a megabyte, half-closes, and reads the reply to its end.
fn send_a_megabyte(addr: &str) -> std::io::Result<Vec<u8>> {
    send_a_megabyte_on(TcpStream::connect(addr)?)
}

/// `send_a_megabyte` on a connection already made. Its send buffer is
/// kept small (64 KiB asked for, which the kernel doubles to 128 KiB):
/// with the kernel's own sizes, a megabyte fits in the buffers
/// of the two ends at once, the write returns before the server has read
/// anything, and a server that closed without draining would go unseen.
fn send_a_megabyte_on(mut sock: TcpStream) -> std::io::Result<Vec<u8>> {
    setsockopt(&sock, sockopt::SndBuf, &(64 * 1024))?;
    // Linux (6.18 here) doubles it, for its own bookkeeping: socket(7).
    let granted = nix::sys::socket::getsockopt(&sock, sockopt::SndBuf)?;
    assert_eq!(granted, 128 * 1024, "the send buffer the kernel granted");
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.write_all(&vec![b'A'; 1 << 20])?;
    sock.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    sock.read_to_end(&mut reply)?;
    Ok(reply)
}

/// A thread the kernel refuses is one line of error, not a panic. The
/// refusal comes from RLIMIT_NPROC, which counts every thread of a user
/// and which root is exempt from: as root, the listing runs as `nobody`.
#[test]
fn thread_listings_report_a_thread_they_cannot_start_in_one_line() {
    if !have("prlimit") || !have("setpriv") {
        return;
    }
    for (name, bin, args) in [
        ("socket-race", bin!("socket-race"), &[][..]),
        (
            "socket-preview",
            bin!("socket-preview"),
            &["127.0.0.1:0"][..],
        ),
        (
            "socket-modes",
            bin!("socket-modes"),
            &["threads", "127.0.0.1:9"],
        ),
    ] {
        // The listing where `nobody` may run it, wherever the checkout is.
        let (copy, _dir) =
            crate::support::reachable_by_anyone(std::path::Path::new(bin));
        let mut command = if nix::unistd::geteuid().is_root() {
            let mut setpriv = std::process::Command::new("setpriv");
            setpriv.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "prlimit",
            ]);
            setpriv
        } else {
            std::process::Command::new("prlimit")
        };
        command.arg("--nproc=1:1").arg(&copy).args(args);
        let out =
            Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", out.stderr);
        let lines: Vec<_> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {:?}", out.stderr);
        assert!(
            lines[0].starts_with(&format!("{name}: cannot start a thread: ")),
            "{}",
            lines[0]
        );
    }
}

#[test]
fn a_server_that_closes_with_unread_data_resets_the_connection() {
    // The original's way: read once, reply, close.
    let naive = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = naive.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut conn, _) = naive.accept().expect("accept");
        let mut data = [0; 1024];
        let n = conn.read(&mut data).expect("read");
        let _ = conn.write_all(&data[..n]);
    });
    let err = send_a_megabyte(&addr).expect_err("the kernel sends RST");
    // The client's first call after the RST, writing or reading, fails
    // with ECONNRESET; a half-close that comes first finds a connection
    // that no longer exists (ENOTCONN).
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::NotConnected
        ),
        "{err}"
    );
    server.join().unwrap();
}

/// A reset is reported once. `tcp_reset()` leaves ECONNRESET as the
/// socket's pending error, and the first call that fails takes it: here
/// the write under way. After that the connection is simply closed: a
/// write fails with EPIPE, and a read returns what had arrived before the
/// reset, then 0, the end of the stream. Linux 6.18 here.
#[test]
fn a_reset_is_reported_once_then_writes_get_epipe_and_reads_the_end() {
    let naive = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = naive.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut conn, _) = naive.accept().expect("accept");
        let mut data = [0; 1024];
        let n = conn.read(&mut data).expect("read");
        let _ = conn.write_all(&data[..n]);
    });
    let mut sock = TcpStream::connect(addr).expect("connect");
    // The small send buffer of `send_a_megabyte_on`: the server closes
    // while most of the megabyte is still to be written.
    setsockopt(&sock, sockopt::SndBuf, &(64 * 1024)).expect("SO_SNDBUF");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let first = sock
        .write_all(&vec![b'A'; 1 << 20])
        .expect_err("the kernel sends RST");
    server.join().unwrap();
    let second = sock.write(b"A").expect_err("the connection is gone");
    let linux = kernel();
    assert_eq!(
        (first.kind(), second.kind()),
        (ErrorKind::ConnectionReset, ErrorKind::BrokenPipe),
        "Linux {linux}: {first}; {second}"
    );
    let mut echoed = [0; 2048];
    let n = sock.read(&mut echoed).expect("what came before the reset");
    assert!(
        (1..=1024).contains(&n) && echoed[..n].iter().all(|&b| b == b'A'),
        "Linux {linux}: {n} bytes"
    );
    let end = sock.read(&mut echoed);
    assert_eq!(end.map_err(|e| e.kind()), Ok(0), "Linux {linux}");
}

#[test]
fn a_client_that_sends_a_megabyte_still_gets_its_reply() {
    let (mut server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    let reply = send_a_megabyte(&addr).expect("no reset");
    let reply = String::from_utf8(reply).unwrap();
    let got = reply
        .strip_prefix("server got: [")
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or_else(|| panic!("{reply:?}"));
    // One read of at most 1024 bytes, as in the original.
    assert!(
        !got.is_empty() && got.len() <= 1024 && got.bytes().all(|b| b == b'A')
    );
    server.expect(r"Answered 127\.0\.0\.1:\d+: server got: \[A+\]");
    assert!(server.finish().status.success());
}

#[test]
fn client_tries_every_address_a_name_resolves_to() {
    // Some machines forbid user namespaces; CI's does not.
    if !private_hosts_file() {
        return;
    }
    // A name that resolves to ::1 first and 127.0.0.1 second, in a mount
    // namespace of the client's own, where /etc/hosts says so.
    let (server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    let port = addr.rsplit_once(':').unwrap().1;
    let target = format!("both:{port}");
    let client = run_with_hosts(
        "::1 both\n127.0.0.1 both\n",
        bin!("socket-modes"),
        &["client", &target],
    );
    assert!(client.status.success(), "{}", client.stderr);
    assert_eq!(client.stdout, ["client got: [server got: [client]]"]);
    assert!(server.finish().status.success());
}

/// The client's error says "timed out after 10 s", and means it: when a
/// name gives two addresses and neither answers, the two attempts share
/// the ten seconds, five each, rather than take ten each. Two full queues
/// on one port, at 127.0.0.1 and 127.0.0.2, both named `twofull`.
#[test]
fn client_gives_up_on_every_address_within_its_ten_seconds() {
    if !private_hosts_file() {
        return;
    }
    let full = |ip: [u8; 4], port: u16| {
        let sock = tcp_socket();
        let [a, b, c, d] = ip;
        bind(sock.as_raw_fd(), &SockaddrIn::new(a, b, c, d, port))
            .expect("bind");
        listen(&sock, Backlog::new(0).unwrap()).expect("listen");
        let bound: SockaddrIn = getsockname(sock.as_raw_fd()).expect("name");
        // A backlog of 0 admits one: take it, and the queue is full.
        let first = TcpStream::connect(bound.to_string()).expect("first");
        (sock, first, bound.port())
    };
    let (_one, _first_one, port) = full([127, 0, 0, 1], 0);
    let (_two, _first_two, _) = full([127, 0, 0, 2], port);
    let started = Instant::now();
    let client = run_with_hosts(
        "127.0.0.1 twofull\n127.0.0.2 twofull\n",
        bin!("socket-modes"),
        &["client", &format!("twofull:{port}")],
    );
    let took = started.elapsed();
    assert_eq!(client.status.code(), Some(1), "{}", client.stderr);
    assert!(
        client.stderr.ends_with("timed out after 10 s\n"),
        "{}",
        client.stderr
    );
    assert!(took < Duration::from_secs(15), "gave up after {took:?}");
}

/// An address that never answers cannot starve the ones after it: each
/// address gets its share of the ten seconds. `mixed` names 127.0.0.1,
/// a full queue that drops every SYN, then 127.0.0.2, where the server
/// listens on the same port; the client gives up on the first after five
/// seconds and gets its reply from the second.
#[test]
fn client_gives_a_later_address_its_turn_when_the_first_never_answers() {
    if !private_hosts_file() {
        return;
    }
    let full = tcp_socket();
    bind(full.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind");
    listen(&full, Backlog::new(0).unwrap()).expect("listen");
    let bound: SockaddrIn = getsockname(full.as_raw_fd()).expect("address");
    // A backlog of 0 admits one: take it, and the queue is full.
    let _first =
        TcpStream::connect(bound.to_string()).expect("the queue's one place");
    let port = bound.port();
    let live = format!("127.0.0.2:{port}");
    let (server, addr) = {
        let mut server = Listing::start(
            bin!("socket-modes"),
            &["server", &live, "--count", "1"],
        );
        let addr = server
            .expect(r"Server listening on (127\.0\.0\.2:\d+)")
            .remove(1);
        (server, addr)
    };
    assert_eq!(addr, live);
    let started = Instant::now();
    let client = run_with_hosts(
        "127.0.0.1 mixed\n127.0.0.2 mixed\n",
        bin!("socket-modes"),
        &["client", &format!("mixed:{port}")],
    );
    let took = started.elapsed();
    assert!(client.status.success(), "after {took:?}: {}", client.stderr);
    assert_eq!(client.stdout, ["client got: [server got: [client]]"]);
    assert!(server.finish().status.success());
    // Five seconds on the first address, then the second at once.
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(9)).contains(&took),
        "connected after {took:?}"
    );
}

#[test]
fn two_terminal_session_matches_the_book() {
    if !have("ss") {
        return;
    }
    let _port = default_port_if_blessing();
    let server_args = ["server", "--count", "1"];
    let (server, addr) = start_server(&with_test_address(&server_args));
    // The client goes to the address the server really bound.
    let client_args = ["client"];
    let mut run_args = client_args.to_vec();
    if !blessing() {
        run_args.push(&addr);
    }
    let client = run(bin!("socket-modes"), &run_args);
    assert!(client.status.success(), "{}", client.stderr);
    let server = server.finish();
    assert!(server.status.success(), "{}", server.stderr);
    // One side of the connection now waits in TIME_WAIT: the one whose
    // FIN went first, which depends on scheduling.
    let client_port = server.stdout[1]
        .strip_prefix("Answered 127.0.0.1:")
        .and_then(|rest| rest.split_once(':'))
        .expect("Answered 127.0.0.1:<port>: ...")
        .0;
    // Both ends, in either order: a port number alone may also belong to
    // another connection on this machine.
    let server_port = addr.rsplit_once(':').unwrap().1;
    let (c, s) = (client_port, server_port);
    let ss = format!(
        "ss -tan state time-wait \
         '( sport = :{c} and dport = :{s} ) or ( sport = :{s} and dport = :{c} )'"
    );
    let time_wait = shell(&ss);
    // Both sides wait if the two FINs crossed, a simultaneous close, which
    // the chapter allows for: then `ss` lists two entries.
    assert!(
        matches!(time_wait.len(), 2 | 3),
        "one side waits, or both: {time_wait:?}"
    );
    // The chapter describes the run it shows: the server's side waiting.
    // Either side may, so a new recording keeps only such a run.
    if blessing() {
        let local = time_wait[1].split_whitespace().nth(2).unwrap_or("");
        assert_eq!(time_wait.len(), 2, "both sides wait: bless again");
        assert_eq!(local, addr, "the client's side waits: bless again");
    }
    // The book shows one entry; with two, the first is compared (ports
    // aside, the two entries read alike).
    let time_wait = &time_wait[..2];
    assert_session_matches_book(
        "ch03-sockets/03-03-server.out",
        &[(cargo_run("socket-modes", &server_args), &server.stdout)],
    );
    assert_session_matches_book(
        "ch03-sockets/03-03-client.out",
        &[
            (cargo_run("socket-modes", &client_args), &client.stdout),
            (ss, time_wait),
        ],
    );
}

#[test]
fn rebinding_needs_so_reuseaddr_while_time_wait_lasts() {
    use nix::errno::Errno;

    // One connection, closed by the server first: a client that does not
    // half-close, like the original's, waits for the server's end of the
    // stream. The server's side of it now waits in TIME_WAIT on the
    // server's port.
    let (server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    let mut client = TcpStream::connect(&addr).expect("connect");
    client.write_all(b"client").unwrap();
    client.read_to_end(&mut Vec::new()).unwrap();
    drop(client);
    assert!(server.finish().status.success());

    // A socket without SO_REUSEADDR, as Python makes by default, may not
    // bind that port yet.
    let plain = tcp_socket();
    let sockaddr: SockaddrIn = addr.parse().expect("an IPv4 address");
    let bound = bind(plain.as_raw_fd(), &sockaddr);
    assert_eq!(bound, Err(Errno::EADDRINUSE), "Linux {}", kernel());
    drop(plain);

    // TcpListener::bind sets SO_REUSEADDR, so the server restarts at once.
    let (server, again) = start_server(&["server", &addr, "--count", "1"]);
    assert_eq!(again, addr);
    drop(server);
}

#[test]
fn after_a_server_without_so_reuseaddr_even_tcp_listener_must_wait() {
    use nix::sys::socket::accept;

    // The original's listener: no SO_REUSEADDR. It closes a connection
    // first, and its TIME_WAIT keeps the flag the listener had.
    let plain = tcp_socket();
    bind(plain.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind");
    listen(&plain, Backlog::new(5).unwrap()).expect("listen");
    let bound: SockaddrIn = getsockname(plain.as_raw_fd()).expect("address");
    let addr = bound.to_string();
    let mut client = TcpStream::connect(&addr).expect("connect");
    let conn = accept(&plain).expect("accept");
    // Server closes first: FIN from the server, then the client's.
    drop(conn);
    client.read_to_end(&mut Vec::new()).unwrap();
    drop(client);
    drop(plain);
    // On Linux both sockets need SO_REUSEADDR; the new one alone is not
    // enough, for as long as the old connection waits.
    let err = TcpListener::bind(&addr).expect_err("the port is held");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "Linux {}", kernel());
}

/// Runs a client that is not part of this crate, with `sh -c`, and
/// returns what it printed. `$PORT` in `script` is the server's port.
fn foreign_client(tool: &str, script: &str) -> Option<String> {
    if !have(tool) {
        return None;
    }
    let (server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    let port = addr.rsplit_once(':').unwrap().1;
    let client = run("sh", &["-c", &script.replace("$PORT", port)]);
    assert!(client.status.success(), "{tool}: {}", client.stderr);
    assert!(server.finish().status.success());
    Some(client.stdout.join("\n"))
}

#[test]
fn server_answers_a_bash_client() {
    // bash's /dev/tcp is a TCP client in every Linux bash.
    let reply = foreign_client(
        "bash",
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/$PORT; printf bash >&3; cat <&3'",
    );
    if let Some(reply) = reply {
        assert_eq!(reply, "server got: [bash]");
    }
}

#[test]
fn server_answers_a_python_client() {
    // The original's client, in the original's language: it neither
    // half-closes nor reads to the end.
    let reply = foreign_client(
        "python3",
        "python3 -c 'import socket
s = socket.create_connection((\"127.0.0.1\", $PORT))
s.sendall(b\"python\")
print(s.recv(1024).decode())'",
    );
    if let Some(reply) = reply {
        assert_eq!(reply, "server got: [python]");
    }
}

#[test]
fn server_answers_netcat() {
    // -N: shut down the sending side at the end of input, as a client does.
    let reply = foreign_client("nc", "printf netcat | nc -N 127.0.0.1 $PORT");
    if let Some(reply) = reply {
        assert_eq!(reply, "server got: [netcat]");
    }
}

#[test]
fn socket_listings_reject_bad_arguments_in_one_line() {
    let preview = bin!("socket-preview");
    let modes = bin!("socket-modes");
    assert_rejects(
        preview,
        &["127.0.0.1:99999"],
        "bad address '127.0.0.1:99999'",
    );
    assert_rejects(preview, &["no-port"], "bad address 'no-port'");
    assert_rejects(preview, &["--count", "5"], "invalid option '--count'");
    assert_rejects(modes, &[], "which mode?");
    assert_rejects(modes, &["serve"], "unknown mode 'serve'");
    assert_rejects(modes, &["client", "--count", "1"], "only the server");
    assert_rejects(
        modes,
        &["server", "192.0.2.1:50008"],
        "cannot listen on 192.0.2.1:50008",
    );
    assert_rejects(
        bin!("socket-race"),
        &["127.0.0.1:0"],
        "unexpected argument",
    );
}

#[test]
fn client_without_a_server_fails_in_one_line() {
    // A socket that is bound but not listening holds a port where every
    // connection is refused, and no other test can take it meanwhile.
    let holder = tcp_socket();
    bind(holder.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))
        .expect("bind a free port");
    let bound: SockaddrIn =
        getsockname(holder.as_raw_fd()).expect("the bound address");
    let addr = bound.to_string();
    assert_rejects(
        bin!("socket-modes"),
        &["client", &addr],
        &format!("{addr}: Connection refused"),
    );
}

/// A plain TCP socket, without the options `TcpListener` sets.
fn tcp_socket() -> OwnedFd {
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("a TCP socket")
}

#[test]
fn std_socket_writes_pass_msg_nosignal() {
    if !have("strace") {
        return;
    }
    // The client's one write, seen by the kernel: `sendto` with the flag
    // that turns SIGPIPE into an EPIPE error.
    let (server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    let traced = run(
        "strace",
        &[
            "-f",
            "-e",
            "trace=sendto",
            "--",
            bin!("socket-modes"),
            "client",
            &addr,
        ],
    );
    assert!(traced.status.success(), "{}", traced.stderr);
    assert!(
        traced
            .stderr
            .lines()
            .any(|l| l.contains(r#"sendto(3, "client", 6, MSG_NOSIGNAL"#)),
        "{}",
        traced.stderr
    );
    assert!(server.finish().status.success());
}

/// Copies 4096 bytes from `source` into a connection that its peer has
/// reset, on a thread that blocks SIGPIPE; returns the copy's error and
/// whether the copy raised SIGPIPE (which then stays pending there).
fn copy_into_a_reset_connection(
    mut source: impl Read + Send + 'static,
) -> (ErrorKind, bool) {
    use nix::sys::signal::SigSet;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    crate::support::reset_on_close(&peer);
    drop(peer);
    wait_until("the reset", || sock.take_error().unwrap().is_some());
    thread::spawn(move || {
        let mut pipe = SigSet::empty();
        pipe.add(Signal::SIGPIPE);
        pipe.thread_block().unwrap();
        let error = std::io::copy(&mut source, &mut sock)
            .expect_err("a copy into a reset connection");
        let raised = sigpipe_pending();
        if raised {
            pipe.wait().unwrap(); // take it before the thread ends
        }
        (error.kind(), raised)
    })
    .join()
    .unwrap()
}

/// True if SIGPIPE is pending for the calling thread or its process.
fn sigpipe_pending() -> bool {
    // SAFETY: all zeros is a valid, empty sigset_t.
    let mut set: nix::libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigpending only writes the set it is given.
    assert_eq!(unsafe { nix::libc::sigpending(&mut set) }, 0);
    // SAFETY: sigismember only reads the set, which sigpending filled.
    unsafe { nix::libc::sigismember(&set, nix::libc::SIGPIPE) == 1 }
}

/// `io::copy` into a socket: from a pipe it splices, with no flag, and
/// raises SIGPIPE; from a file or a socket it writes with MSG_NOSIGNAL,
/// and only fails with EPIPE. Rust 1.95's std.
#[test]
fn io_copy_into_a_socket_raises_sigpipe_only_from_a_pipe() {
    let broken = ErrorKind::BrokenPipe;
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(&[b'x'; 4096]).unwrap();
    drop(writer);
    assert_eq!(copy_into_a_reset_connection(reader), (broken, true));

    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&[b'x'; 4096]).unwrap();
    std::io::Seek::rewind(&mut file).unwrap();
    assert_eq!(copy_into_a_reset_connection(file), (broken, false));

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut sender =
        TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (receiver, _) = listener.accept().unwrap();
    sender.write_all(&[b'x'; 4096]).unwrap();
    drop(sender);
    assert_eq!(copy_into_a_reset_connection(receiver), (broken, false));
}

#[test]
fn a_backlog_of_five_does_not_limit_a_server_to_five_connections() {
    let sock = tcp_socket();
    bind(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind");
    listen(&sock, Backlog::new(5).unwrap()).expect("listen");
    let listener = TcpListener::from(sock);
    let addr = listener.local_addr().unwrap();
    // Twenty connections open at once, each accepted as it comes.
    let mut open = Vec::new();
    for _ in 0..20 {
        let client = TcpStream::connect(addr).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        open.push((client, accepted));
    }
    assert_eq!(open.len(), 20);
}

// ---------------------------------------------------------------------------
// What the kernel sees

#[test]
fn server_and_client_traces_show_accept_half_close_and_the_end() {
    if !can_trace() {
        return;
    }
    let _port = default_port_if_blessing();
    let server_trace = Trace {
        calls: "socket,setsockopt,bind,listen,accept4,recvfrom,sendto,\
                shutdown,close,write",
        signals: "none",
        from: Some("socket("),
    };
    // `poll,ppoll` as POLL_CALLS says, written out for readers to type.
    let client_trace = Trace {
        calls: "socket,connect,poll,ppoll,sendto,shutdown,recvfrom,close,\
                write",
        signals: "none",
        from: Some("socket("),
    };
    assert!(client_trace.calls.contains(crate::support::POLL_CALLS));
    let server_args = ["server", "--count", "1"];
    let mut server = Listing::start_traced(
        bin!("socket-modes"),
        &with_test_address(&server_args),
        &server_trace,
    );
    let addr = server
        .expect(r"Server listening on (127\.0\.0\.1:\d+)")
        .remove(1);
    let client_args = ["client"];
    let mut run_args = client_args.to_vec();
    if !blessing() {
        run_args.push(&addr);
    }
    let client =
        Listing::start_traced(bin!("socket-modes"), &run_args, &client_trace)
            .finish();
    assert!(client.status.success(), "{}", client.stderr);
    let server = server.finish();
    assert!(server.status.success(), "{}", server.stderr);
    // Each side half-closes with shutdown, and each sees the other's FIN
    // as a read of 0 bytes.
    let calls = |trace: &str| trace.replace(char::is_whitespace, "");
    for trace in [&server.stderr, &client.stderr] {
        assert!(calls(trace).contains("SHUT_WR)=0"), "{trace}");
        assert!(
            calls(trace).contains(r#""",4096,0,NULL,NULL)=0"#)
                || calls(trace).contains(r#""",32,0,NULL,NULL)=0"#),
            "{trace}"
        );
    }
    assert_trace_matches_book(
        "ch03-sockets/03-03-server.trace",
        &strace_command("socket-modes", &server_args, &server_trace),
        &server_trace,
        &server.stderr,
        &[],
    );
    assert_trace_matches_book(
        "ch03-sockets/03-03-client.trace",
        &strace_command("socket-modes", &client_args, &client_trace),
        &client_trace,
        &client.stderr,
        // How long `connect` may still wait: what is left of 10 s.
        &[(r"(events=POLLOUT\}\], 1, )\d+", "$1<ms>")],
    );
}

/// A server of the original's kind, in Python, for Terminal 1: it waits
/// for the client's FIN (POLLRDHUP), so that the client has sent and
/// half-closed before the reset, every time; then it reads only 3 of the
/// 6 bytes of `client`, replies with them, and closes with 3 unread.
const RESETTING_SERVER: &str = r#"python3 -c 'import select, socket
s = socket.create_server(("127.0.0.1", 50008))
c, _ = s.accept()
p = select.poll(); p.register(c, select.POLLRDHUP); p.poll()
c.sendall(c.recv(3)); c.close()'"#;

#[test]
fn client_trace_shows_the_reset_of_a_server_that_left_bytes_unread() {
    if !can_trace() || !have("python3") {
        return;
    }
    let _port = default_port_if_blessing();
    // Terminal 1, as the book shows it; checks run it on a free port.
    let typed = if blessing() {
        RESETTING_SERVER.to_string()
    } else {
        RESETTING_SERVER.replace("50008", "0")
    };
    let server = Listing::start("bash", &["-c", &typed]);
    let mut port = None;
    wait_until("the Python server to listen", || {
        port = crate::support::children_of(server.pid())
            .into_iter()
            .chain([server.pid()])
            .find_map(listening_port);
        port.is_some()
    });
    let trace = Trace {
        calls: "socket,connect,sendto,shutdown,recvfrom,close",
        signals: "none",
        from: Some("socket("),
    };
    let addr = format!("127.0.0.1:{}", port.unwrap());
    let args = with_test_address(&["client"]);
    let args: Vec<&str> = args
        .iter()
        .map(|&a| if a == "127.0.0.1:0" { addr.as_str() } else { a })
        .collect();
    let client =
        Listing::start_traced(bin!("socket-modes"), &args, &trace).finish();
    let served = server.finish();
    assert!(served.status.success(), "{}", served.stderr);
    assert_eq!(client.status.code(), Some(1), "{}", client.stderr);
    assert!(client.stderr.contains("ECONNRESET"), "{}", client.stderr);
    assert_session_matches_book_masking(
        "ch03-sockets/03-03-reset-server.out",
        &[(RESETTING_SERVER.to_string(), &[] as &[String])],
        &[],
    );
    assert_trace_matches_book(
        "ch03-sockets/03-03-reset.trace",
        &strace_command("socket-modes", &args, &trace),
        &trace,
        &client.stderr,
        &[],
    );
}

/// The command that counted how often the original fails to restart, run
/// small: it runs, and counts within the tries it made.
#[test]
fn rerun_original_counts_the_second_runs_that_cannot_bind() {
    if !have("python3") || !have("ss") {
        return;
    }
    let script =
        concat!(env!("CARGO_MANIFEST_DIR"), "/ch03-sockets/rerun-original");
    let out = run(script, &["--tries", "3"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout[0], "3 tries, each two runs in a row on a fresh port",
        "{:#?}",
        out.stdout
    );
    let failed = out.stdout[1]
        .strip_prefix("second run failed with 'Address already in use': ")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{:#?}", out.stdout));
    assert!(failed <= 3, "{failed}");
    // Each connection ends in TIME_WAIT on one side at least; a try fails
    // exactly when its first run left one on the server's side.
    let (server_side, client_side) = Regex::new(
        r"^after a first run, in TIME_WAIT on the server's side: (\d+) of 15, \d+ to \d+ a run; on the clients' side: (\d+), \d+ to \d+ a run$",
    )
    .unwrap()
    .captures(&out.stdout[2])
    .map(|c| (c[1].parse::<u32>().unwrap(), c[2].parse::<u32>().unwrap()))
    .unwrap_or_else(|| panic!("{:#?}", out.stdout));
    assert!(server_side + client_side >= 15, "{:#?}", out.stdout);
    let spared = out.stdout[3]
        .strip_prefix("tries that left none on the server's side: ")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{:#?}", out.stdout));
    assert_eq!(failed + spared, 3, "{:#?}", out.stdout);
    // Not only the totals: try by try, the failures are the tries that
    // left a connection in TIME_WAIT on the server's side.
    assert_eq!(
        out.stdout[4],
        "tries that failed with none on the server's side, or left one \
         there and did not fail: 0",
        "{:#?}",
        out.stdout
    );
    assert!(
        out.stdout[5].starts_with("load average "),
        "{:#?}",
        out.stdout
    );
}

/// A client of the counted program that fails otherwise than refused (a
/// name that does not resolve, a reset) raises in its thread, which leaves
/// the run's exit status 0: both counting commands must say the run failed,
/// not count it as clean. A `sitecustomize` module, which Python imports at
/// start-up from `PYTHONPATH`, makes every `connect` fail with a reset.
#[test]
fn counting_commands_fail_when_a_client_fails_otherwise() {
    if !have("python3") || !have("ss") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sitecustomize.py"),
        "import socket\n\
         def reset(self, address):\n\
         \x20   raise ConnectionResetError('reset by the test')\n\
         socket.socket.connect = reset\n",
    )
    .unwrap();
    for (name, flag) in
        [("race-original", "--runs"), ("rerun-original", "--tries")]
    {
        let script =
            format!("{}/ch03-sockets/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut command = Command::new(&script);
        command.args([flag, "1"]).env("PYTHONPATH", dir.path());
        let out = Listing::spawn(&mut command, Stdio::piped()).finish();
        assert_eq!(out.status.code(), Some(1), "{name}: {:#?}", out.stdout);
        assert!(
            out.stderr.starts_with(&format!("{name}: a run failed"))
                && out.stderr.contains("reset by the test"),
            "{name}: {}",
            out.stderr
        );
    }
}

#[test]
fn race_original_counts_the_clients_that_connect_before_the_server_listens() {
    if !have("python3") {
        return;
    }
    let script =
        concat!(env!("CARGO_MANIFEST_DIR"), "/ch03-sockets/race-original");
    let out = run(script, &["--runs", "3"]);
    assert!(out.status.success(), "{}", out.stderr);
    let counted = Regex::new(
        r"^3 runs of the original, each on a fresh port\nruns with a client refused: ([0-3])\nclients refused: (\d+) of 15\nload average [\d.]+ at the end$",
    )
    .unwrap();
    let all = out.stdout.join("\n");
    let found = counted
        .captures(&all)
        .unwrap_or_else(|| panic!("{:#?}", out.stdout));
    let (runs, clients): (u32, u32) =
        (found[1].parse().unwrap(), found[2].parse().unwrap());
    assert!(runs <= clients && clients <= 5 * runs, "{:#?}", out.stdout);
    assert_rejects(script, &["--runs", "0"], "--runs must be");
}

/// Linux 6.18: a security policy (an LSM hook, `security_socket_accept()`,
/// or a seccomp filter) can make every `accept` fail at once, and again on
/// every try; strace plays one with EPERM for two seconds. The server must
/// wait `ACCEPT_PAUSE` after each failure and report the run once. It used
/// to wait only when out of descriptors or memory, and to retry any other
/// failure at once: thousands of lines, and all the CPU it could get.
fn pauses_and_reports_once_when_accept_keeps_failing(
    bin: &str,
    args: &[&str],
    name: &str,
) {
    if !have("strace") {
        eprintln!("skipped: no strace");
        return;
    }
    let (cpu, stderr) =
        crate::support::under_a_refused_call(bin, args, "accept4", "EPERM");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            format!(
                "{name}: a connection failed: Operation not permitted \
                 (os error 1)"
            )
            .as_str()
        ),
        "{} lines",
        lines.len()
    );
    assert_eq!(lines.len(), 1, "{:?}", &lines[..lines.len().min(5)]);
    assert!(cpu < Duration::from_millis(300), "{cpu:?} of CPU in 2 s");
}

#[test]
fn preview_server_pauses_and_reports_once_when_accept_keeps_failing() {
    pauses_and_reports_once_when_accept_keeps_failing(
        bin!("socket-preview"),
        &["127.0.0.1:0"],
        "socket-preview",
    );
}

#[test]
fn server_mode_pauses_and_reports_once_when_accept_keeps_failing() {
    pauses_and_reports_once_when_accept_keeps_failing(
        bin!("socket-modes"),
        &["server", "127.0.0.1:0"],
        "socket-modes",
    );
}

/// Connects to `addr`, sends `request` and returns, from a thread, the
/// server's whole reply.
fn patient_client(addr: &str, request: &str) -> thread::JoinHandle<String> {
    let mut client = TcpStream::connect(addr).expect("queued");
    client.write_all(request.as_bytes()).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    thread::spawn(move || {
        let mut reply = String::new();
        client.read_to_string(&mut reply).expect("the reply");
        reply
    })
}

/// Sets the soft limit on descriptors of `pid` to `fds`.
fn set_descriptor_limit(pid: nix::unistd::Pid, fds: u64) {
    let limit = nix::libc::rlimit {
        rlim_cur: fds,
        rlim_max: 64,
    };
    // SAFETY: prlimit only reads `limit`; no old value is asked for.
    let set = unsafe {
        nix::libc::prlimit(
            pid.as_raw(),
            nix::libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// 3-3 reports "only the first failure of a run, until it next takes a
/// connection": a second run of failures, after a client was answered, is
/// reported again, once. Linux 6.18: `accept` takes its descriptor before
/// it waits (`__sys_accept4_file()`), so a limit lowered while the server
/// waits in `accept` lets that call take the next client, and makes the
/// one after it fail.
#[test]
fn server_reports_a_second_run_of_failures_after_a_client() {
    let failure =
        "socket-modes: a connection failed: Too many open files (os error 24)";
    let mut addr = String::new();
    let (reply, mut server) = out_of_descriptors_waits_then_serves(
        bin!("socket-modes"),
        &["server", "127.0.0.1:0", "--count", "3"],
        4,
        failure,
        |at| {
            addr = at.to_string();
            patient_client(at, "first")
        },
    );
    assert_eq!(reply, "server got: [first]");
    let pid = server.pid();
    let accepting = || threads_blocked_in(pid, nix::libc::SYS_accept4) == 1;
    wait_until("the server to wait in accept", accepting);
    set_descriptor_limit(pid, 4);
    // The call under way has its descriptor: the next client is answered.
    let second = patient_client(&addr, "second");
    assert_eq!(
        second.join().expect("the client thread"),
        "server got: [second]"
    );
    let answered = server.next_line();
    assert!(answered.ends_with(": server got: [second]"), "{answered}");
    // The next `accept` fails at once: a new run, reported again.
    assert_eq!(server.next_line(), failure);
    let third = patient_client(&addr, "third");
    set_descriptor_limit(pid, 64);
    assert_eq!(
        third.join().expect("the client thread"),
        "server got: [third]"
    );
    let out = server.finish();
    assert!(out.status.success(), "{:?}", out.status);
    // Two runs of failures, a line each, and three clients answered.
    let failures = out.stdout.iter().filter(|l| *l == failure).count();
    assert_eq!(failures, 2, "{:?}", out.stdout);
    assert_eq!(out.stdout.len(), 6, "{:?}", out.stdout);
    assert!(
        out.stdout[5].ends_with(": server got: [third]"),
        "{:?}",
        out.stdout
    );
}

/// Which error a reset brings depends on the state it finds. Linux 6.18,
/// `tcp_reset()` in net/ipv4/tcp_input.c: a socket in CLOSE_WAIT (it has
/// taken the other side's FIN) gets EPIPE, an established one ECONNRESET.
/// So a server that does steps 1 and 3 of `answer` but not the drain
/// gives a client still sending "Broken pipe", and the original's plain
/// close gives it "Connection reset by peer".
#[test]
fn a_reset_after_the_servers_fin_is_epipe_and_without_it_econnreset() {
    let linux = kernel();
    let half_closed = megabyte_to_a_server_that_does_not_drain(true);
    assert_eq!(
        half_closed.kind(),
        ErrorKind::BrokenPipe,
        "Linux {linux}: {half_closed}"
    );
    let plain = megabyte_to_a_server_that_does_not_drain(false);
    assert_eq!(
        plain.kind(),
        ErrorKind::ConnectionReset,
        "Linux {linux}: {plain}"
    );
}

/// `send_a_megabyte_on` to a server that reads once, replies, half-closes
/// if told to, and closes with the rest unread: the client's error.
fn megabyte_to_a_server_that_does_not_drain(
    half_close: bool,
) -> std::io::Error {
    let limit = Duration::from_secs(10);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let sock = TcpStream::connect_timeout(&addr, limit).expect("connect");
    sock.set_write_timeout(Some(limit)).unwrap();
    // The connection is queued already: this accept does not wait.
    let (mut conn, _) = listener.accept().expect("accept");
    let server = thread::spawn(move || {
        conn.set_read_timeout(Some(limit)).unwrap();
        conn.set_write_timeout(Some(limit)).unwrap();
        let mut data = [0; 1024];
        let n = conn.read(&mut data).expect("read");
        conn.write_all(&data[..n]).expect("reply");
        if half_close {
            conn.shutdown(Shutdown::Write).expect("half-close");
        }
    });
    let err = send_a_megabyte_on(sock).expect_err("the kernel sends RST");
    server.join().expect("the server thread");
    err
}
