//! Chapter 3, Sockets: Listings 3-1 (`socket-preview`) and 3-2
//! (`socket-modes`).

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname,
    setsockopt, socket, sockopt,
};
use std::process::Command;
use std::sync::Mutex;

use crate::support::{
    Listing, assert_matches_book, assert_rejects, blessing, run,
};

/// The book's outputs are real runs of the commands it shows, on the
/// default port. Only blessing uses that port, one run at a time; checks
/// append `127.0.0.1:0` and let the kernel choose.
static DEFAULT_PORT: Mutex<()> = Mutex::new(());

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

#[test]
fn preview_server_answers_each_client_with_its_own_name() {
    let mut preview = Listing::start(
        bin!("socket-preview"),
        &["127.0.0.1:0", "--count", "5"],
    );
    let port = preview
        .expect(r"Server listening on 127\.0\.0\.1:(\d+)")
        .remove(1);
    assert_ne!(port, "0", "it prints the port the kernel chose");
    let out = preview.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let expected: Vec<_> = (0..5)
        .map(|i| format!("client got: [server got: [client{i}]]"))
        .collect();
    assert_eq!(out.stdout[1..], expected);
}

#[test]
fn preview_output_matches_the_book() {
    let _port = DEFAULT_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let args = ["--count", "5"];
    let out = run(bin!("socket-preview"), &with_test_address(&args));
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch03-sockets/03-01-socket-preview.out",
        "socket-preview",
        &args,
        &out.stdout,
    );
}

#[test]
fn servers_listen_on_loopback_port_50008_by_default() {
    let _port = DEFAULT_PORT.lock().unwrap_or_else(|e| e.into_inner());
    // Another program may hold the port; then the error names the address
    // that was tried, which is just as good a witness.
    let mut server =
        Listing::start(bin!("socket-modes"), &["server", "--count", "1"]);
    let line = server.next_line_or_exit();
    match line {
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
fn server_mode_outlives_a_client_that_hangs_up_at_once() {
    let (server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "2"]);
    // Connect, then reset the connection without a word: with a linger
    // time of zero, closing sends RST, and the server's read fails.
    let rude = std::net::TcpStream::connect(&addr).expect("connect");
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&rude, sockopt::Linger, &linger).expect("SO_LINGER");
    drop(rude);
    let client = run(bin!("socket-modes"), &["client", &addr]);
    assert!(client.status.success(), "{}", client.stderr);
    assert_eq!(client.stdout, ["client got: [server got: [client]]"]);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("socket-modes: a connection failed: "),
        "the reset was reported: {:?}",
        out.stderr
    );
}

#[test]
fn two_terminal_session_matches_the_book() {
    let _port = DEFAULT_PORT.lock().unwrap_or_else(|e| e.into_inner());
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
    assert_matches_book(
        "ch03-sockets/03-02-server.out",
        "socket-modes",
        &server_args,
        &server.stdout,
    );
    assert_matches_book(
        "ch03-sockets/03-02-client.out",
        "socket-modes",
        &client_args,
        &client.stdout,
    );
}

#[test]
fn rebinding_needs_so_reuseaddr_while_time_wait_lasts() {
    use nix::errno::Errno;

    // One connection, closed by the server first: the server's side of
    // it now waits in TIME_WAIT on the server's port.
    let (server, addr) =
        start_server(&["server", "127.0.0.1:0", "--count", "1"]);
    let client = run(bin!("socket-modes"), &["client", &addr]);
    assert!(client.status.success(), "{}", client.stderr);
    assert!(server.finish().status.success());

    // A socket without SO_REUSEADDR, as Python makes by default, may not
    // bind that port yet.
    let plain = tcp_socket();
    let sockaddr: SockaddrIn = addr.parse().expect("an IPv4 address");
    assert_eq!(bind(plain.as_raw_fd(), &sockaddr), Err(Errno::EADDRINUSE));
    drop(plain);

    // TcpListener::bind sets SO_REUSEADDR, so the server restarts at once.
    let (server, again) = start_server(&["server", &addr, "--count", "1"]);
    assert_eq!(again, addr);
    drop(server);
}

/// Runs a client that is not part of this crate, with `sh -c`, and
/// returns what it printed. `$PORT` in `script` is the server's port.
fn foreign_client(tool: &str, script: &str) -> Option<String> {
    if Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        // CI installs every tool; a reader's machine may lack one.
        assert!(std::env::var_os("CI").is_none(), "{tool} is missing in CI");
        eprintln!("skipped: {tool} is not installed");
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
    // The original's client, in the original's language.
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
    assert_rejects(
        bin!("socket-preview"),
        &["127.0.0.1:99999"],
        "bad address '127.0.0.1:99999'",
    );
    assert_rejects(
        bin!("socket-preview"),
        &["no-port"],
        "bad address 'no-port'",
    );
    assert_rejects(bin!("socket-preview"), &["--count", "x"], "whole number");
    assert_rejects(bin!("socket-modes"), &[], "which mode?");
    assert_rejects(bin!("socket-modes"), &["serve"], "unknown mode 'serve'");
    assert_rejects(
        bin!("socket-modes"),
        &["client", "--count", "1"],
        "only the server",
    );
    assert_rejects(
        bin!("socket-modes"),
        &["server", "192.0.2.1:50008"],
        "cannot listen on 192.0.2.1:50008",
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
