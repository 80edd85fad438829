//! Servers on the book's default port, and servers out of descriptors.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::*;

/// Serialises the tests that bind the book's default port, 50008: only
/// blessing does, so that the outputs show the command a reader types.
/// It is the only such lock: a second one would let two tests bind the
/// port at once (`harness` checks that no other test file keeps one).
pub fn default_port() -> std::sync::MutexGuard<'static, ()> {
    static PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PORT.lock().unwrap_or_else(|e| e.into_inner())
}

/// `args`, plus `address` unless blessing: checks run on a free port,
/// blessing on the default one, as the book shows.
pub fn unless_blessing<'a>(args: &[&'a str], address: &'a str) -> Vec<&'a str> {
    let mut args = args.to_vec();
    if !blessing() {
        args.push(address);
    }
    args
}

/// Starts the one-client-at-a-time server `bin` with a soft limit of `fds`
/// descriptors, which leaves none for `accept`, and lets `client` connect
/// to the address it prints (from a thread, which returns what the client
/// got). The server must log the failure once (`failure`), sleep while it
/// lasts, using almost no CPU, and serve the client once `prlimit` makes room,
/// with no second line about the failure. Returns what the client got and
/// the server, which has just printed the line after the failure.
#[track_caller]
pub fn out_of_descriptors_waits_then_serves(
    bin: &str,
    args: &[&str],
    fds: usize,
    failure: &str,
    client: impl FnOnce(&str) -> std::thread::JoinHandle<String>,
) -> (String, Listing) {
    let script = format!("ulimit -S -n {fds} && exec \"$0\" \"$@\" 2>&1");
    let mut command = vec!["-c", &script, bin];
    command.extend(args);
    let mut server = Listing::start("bash", &command);
    let addr = server.expect(r"Server listening on (\S+)").remove(1);
    let pid = server.pid();
    let waiting = client(&addr);
    let failed = server.next_line();
    assert!(failed.starts_with(failure), "{failed}");
    assert_sleeps_for_two_seconds(pid);
    let room = nix::libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: prlimit only reads `room`; no old value is asked for.
    let raised = unsafe {
        nix::libc::prlimit(
            pid.as_raw(),
            nix::libc::RLIMIT_NOFILE,
            &room,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(raised, 0, "prlimit: {}", std::io::Error::last_os_error());
    let got = waiting.join().expect("the client thread");
    // The whole run of failures was one line: the next says who was served.
    let served = server.next_line();
    assert!(!served.starts_with(failure), "logged again: {served}");
    (got, server)
}

/// That the process `pid` waits rather than spins, for two seconds: looked
/// at every 50 ms, it is asleep (every thread in state S) nearly every
/// time, where a loop that retried at once would be running, or waiting
/// for a CPU (both R), every time; and it uses under 300 ms of CPU. Its
/// CPU time alone cannot tell them apart: on a busy machine a spinning
/// process gets only its share of a CPU (Listing 3-3 without its pause
/// used 240 to 980 ms in two seconds here).
#[track_caller]
pub fn assert_sleeps_for_two_seconds(pid: nix::unistd::Pid) {
    let (cpu, started) = (cpu_time(pid), Instant::now());
    let mut awake = 0;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50)); // The wait is the test.
        if !all_threads_asleep(pid) {
            awake += 1;
        }
    }
    let used = cpu_time(pid) - cpu;
    let lasted = started.elapsed();
    assert!(awake <= 10, "awake in {awake} of 40 looks in {lasted:?}");
    assert!(
        used < Duration::from_millis(300),
        "{used:?} of CPU in {lasted:?}"
    );
}

/// Whether this machine has IPv6 on loopback; says so if not.
pub fn ipv6() -> bool {
    let ok = std::net::UdpSocket::bind("[::1]:0").is_ok();
    if !ok {
        eprintln!("skipped: no IPv6 on loopback here");
    }
    ok
}

/// Whether `unshare` can give a program a private /etc/hosts here.
pub fn private_hosts_file() -> bool {
    if !have("unshare") {
        return false;
    }
    let probe = run("unshare", &["--map-root-user", "--mount", "true"]);
    if !probe.status.success() {
        assert!(std::env::var_os("CI").is_none(), "{}", probe.stderr);
        eprintln!("skipped: unshare cannot make a mount namespace here");
    }
    probe.status.success()
}

/// Debian's /etc/hosts: `localhost` names 127.0.0.1 and ::1, and
/// getaddrinfo puts ::1 first (RFC 6724), whatever the order here.
pub const DEBIAN_HOSTS: &str =
    "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";

/// Runs `bin` with `args` in a mount namespace of its own, where
/// /etc/hosts holds `hosts` (check `private_hosts_file` first).
pub fn run_with_hosts(hosts: &str, bin: &str, args: &[&str]) -> Finished {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), hosts).unwrap();
    let script = "mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"";
    let mut all = vec![
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
        file.path().to_str().unwrap(),
        bin,
    ];
    all.extend_from_slice(args);
    run("unshare", &all)
}

/// The type of a netlink message that reports an error (ENOENT: no such
/// socket) instead of a socket.
const NLMSG_ERROR: u16 = 2;

/// The kernel's answer to one `sock_diag` lookup of the TCP socket on
/// 127.0.0.1 that a packet from 127.0.0.1:`client` to port `server` would
/// reach: the connection, if there is one, or else the port's listener.
fn diag_lookup(server: u16, client: u16) -> Vec<u8> {
    use nix::sys::socket::{MsgFlags, recv};
    // linux/netlink.h: a request for one socket, named by `id`.
    const NLM_F_REQUEST: u16 = 1;
    const LOOPBACK: [u8; 4] = [127, 0, 0, 1];
    let mut id = Vec::with_capacity(40);
    id.extend_from_slice(&server.to_be_bytes());
    id.extend_from_slice(&client.to_be_bytes());
    id.extend_from_slice(&LOOPBACK);
    id.extend_from_slice(&[0; 12]);
    id.extend_from_slice(&LOOPBACK);
    id.extend_from_slice(&[0; 12]);
    id.extend_from_slice(&[0; 4]); // any interface
    let diag = diag_request(NLM_F_REQUEST, u32::MAX, &id); // every state
    let mut reply = [0; 512];
    let len = recv(diag.as_raw_fd(), &mut reply, MsgFlags::empty())
        .expect("a sock_diag reply");
    reply[..len].to_vec()
}

/// Sends one `sock_diag` request for TCP over IPv4 (linux/sock_diag.h,
/// linux/inet_diag.h: an `inet_diag_req_v2`): `flags` for the netlink
/// header, `states` a bit mask of TCP states, `id` the 40 bytes of its
/// `inet_diag_sockid` before the cookie, which is "none". Returns the
/// socket to read the answer from.
fn diag_request(flags: u16, states: u32, id: &[u8]) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
        sendto, socket,
    };
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    assert_eq!(id.len(), 40, "an inet_diag_sockid before its cookie");
    let mut request = Vec::with_capacity(72);
    request.extend_from_slice(&72u32.to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&flags.to_ne_bytes());
    request.extend_from_slice(&[0; 8]); // sequence number, port id
    request.extend_from_slice(&[
        nix::libc::AF_INET as u8,
        nix::libc::IPPROTO_TCP as u8,
    ]);
    request.extend_from_slice(&[0; 2]); // no extensions, padding
    request.extend_from_slice(&states.to_ne_bytes());
    request.extend_from_slice(id);
    request.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    let diag = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .expect("a sock_diag socket");
    sendto(
        diag.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .expect("a sock_diag request");
    diag
}

/// The server's end of a loopback connection, as the kernel's socket
/// diagnostics (`sock_diag`, what `ss` uses) report it: its state (`01`
/// established, `04` FIN_WAIT1: the server has closed its end, or
/// half-closed it, and its FIN waits behind what it sent), the bytes it
/// has received and not read, the bytes it has written that the client
/// has not taken, and its inode, 0 once the server has closed the socket
/// and the kernel alone finishes what was queued. `None` once it is gone.
///
/// Asked for by its four-tuple, the kernel looks the socket up in its
/// hash table: a look takes microseconds however many sockets the machine
/// holds. /proc/net/tcp lists every one of them, and a full run of the
/// suite leaves tens of thousands in TIME_WAIT: one look there took up to
/// three seconds on a loaded machine, longer than a server's gentle close
/// of a second (chapter 30's rounds, timed by those looks, sent the rest
/// of a request after the server had let the socket go).
pub fn server_end(server: u16, client: u16) -> Option<(String, u64, u64, u64)> {
    let reply = diag_lookup(server, client);
    let (reply, len) = (&reply[..], reply.len());
    let word =
        |at: usize| u32::from_ne_bytes(reply[at..at + 4].try_into().unwrap());
    // An error (ENOENT: no such socket), or an `inet_diag_msg` after the
    // 16-byte header: state at 17, ports at 20 and 22, then at 72 rqueue,
    // wqueue, uid, inode. A connection gone may be answered with the
    // listening socket of its port: not the one asked for.
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind == NLMSG_ERROR || len < 88 || reply[22..24] != client.to_be_bytes()
    {
        return None;
    }
    let state = format!("{:02X}", reply[17]);
    let (unread, unsent) = (u64::from(word(72)), u64::from(word(76)));
    Some((state, unread, unsent, u64::from(word(84))))
}

/// Sets a linger time of zero on `sock`, so that closing it sends RST
/// rather than FIN: the peer's next call fails with `ECONNRESET` (or
/// `EPIPE`). Every test that resets a connection on purpose does it so.
#[track_caller]
pub fn reset_on_close(sock: &impl std::os::fd::AsFd) {
    socket2::SockRef::from(sock)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER of zero");
}

/// Connects to `addr` (on 127.0.0.1) and resets the connection while it
/// waits in the listening socket's accept queue; the server must not take
/// it meanwhile (stopped, or busy with another client). Linux 6.18 then
/// hands the dead connection to the server's next `accept` all the same,
/// and its `peer_addr` fails with ENOTCONN: a client that gave up in the
/// queue.
///
/// The server's kernel takes each packet in its own time, so this waits
/// twice: for the client's last ACK to have put the connection in the
/// queue (established, 01), since a reset that comes first only ends the
/// handshake and queues nothing; and for the reset to have ended the
/// queued connection (the kernel no longer lists it), since a server let
/// go before that accepts it whole, and serves it (seen under load).
#[track_caller]
pub fn reset_in_the_accept_queue(addr: &str) {
    let server: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let reset = std::net::TcpStream::connect(addr).unwrap();
    let client = reset.local_addr().unwrap().port();
    wait_until("the connection in the queue", || {
        server_end(server, client).is_some_and(|(state, ..)| state == "01")
    });
    reset_on_close(&reset);
    drop(reset);
    wait_until("the reset to end the queued connection", || {
        server_end(server, client).is_none()
    });
}

/// Whether a TCP socket listens on `port` of 127.0.0.1: one `sock_diag`
/// lookup, as [`server_end`] makes, from a client port no connection
/// uses, which only the listener answers (state 0A, TCP_LISTEN).
pub fn listens_on(port: u16) -> bool {
    const TCP_LISTEN: u8 = 10;
    let reply = diag_lookup(port, 0);
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    kind != NLMSG_ERROR
        && reply.len() >= 88
        && reply[17] == TCP_LISTEN
        && reply[20..22] == port.to_be_bytes()
}

/// Every IPv4 TCP socket that listens on this machine, as `(port,
/// inode)`, from the kernel's socket diagnostics, as [`server_end`] asks.
///
/// Asked for listening sockets only, the kernel walks its table of
/// listeners and never the connections (`inet_diag_dump_icsk()`), so an
/// answer takes microseconds however many connections wait in TIME_WAIT.
/// /proc/net/tcp lists them all: with 22,000 of them, in a network
/// namespace of its own, one read of it took 180 ms where this took
/// 0.1 ms, and a full run of the suite on a loaded machine holds more.
pub fn tcp_listeners() -> Vec<(u16, u64)> {
    use nix::sys::socket::{MsgFlags, recv};
    // linux/netlink.h, linux/inet_diag.h: a dump of the sockets in the
    // states of the bit mask, here TCP_LISTEN (10), on any ports,
    // addresses and interface.
    const NLM_F_REQUEST_DUMP: u16 = 0x301;
    const NLMSG_DONE: u16 = 3;
    const LISTEN: u32 = 1 << 10;
    let diag = diag_request(NLM_F_REQUEST_DUMP, LISTEN, &[0; 40]);
    // The answer comes in datagrams of one or more messages each, until
    // NLMSG_DONE: each an `inet_diag_msg` after the 16-byte header, its
    // local port at 20 and its inode at 84, as in `server_end`.
    let mut listeners = Vec::new();
    let mut reply = vec![0; 32 * 1024];
    loop {
        let len = recv(diag.as_raw_fd(), &mut reply, MsgFlags::empty())
            .expect("a sock_diag reply");
        let mut at = 0;
        while at + 16 <= len {
            let field =
                |from: usize, n: usize| &reply[at + from..at + from + n];
            let size = u32::from_ne_bytes(field(0, 4).try_into().unwrap());
            let kind = u16::from_ne_bytes(field(4, 2).try_into().unwrap());
            match kind {
                NLMSG_DONE => return listeners,
                NLMSG_ERROR => panic!("sock_diag refused the dump"),
                _ if size >= 88 => {
                    let port =
                        u16::from_be_bytes(field(20, 2).try_into().unwrap());
                    let inode =
                        u32::from_ne_bytes(field(84, 4).try_into().unwrap());
                    listeners.push((port, u64::from(inode)));
                }
                _ => panic!("a sock_diag message of {size} bytes"),
            }
            // Messages start on four-byte boundaries.
            at += (size as usize).div_ceil(4) * 4;
        }
    }
}

/// Runs the server `bin` under strace, which makes every call of
/// `syscall` fail with `errno`, as a security policy (an LSM or seccomp)
/// that refuses it would: the call fails at once, and again on every try,
/// in whichever thread makes it (`-f`: Listing 3-2's server is a thread).
/// Once the server listens, lets it run for two seconds, then ends it
/// with SIGTERM. Returns the CPU time it used in those two seconds and
/// its stderr: a server that retried at once would write a line per try.
///
/// It also counts the calls refused in strace's own record, and requires
/// the server to have tried again, but rarely: a server that pauses makes
/// tens of calls in those seconds, one that retries at once tens of
/// thousands. The CPU time alone cannot tell them apart: under strace, a
/// spinning server spends most of its time stopped while strace reads
/// each call; Listing 3-3 without its pause used 150 to 380 ms of CPU in
/// two seconds here, under 300 ms whenever the machine was busy.
#[track_caller]
pub fn under_a_refused_call(
    bin: &str,
    args: &[&str],
    syscall: &str,
    errno: &str,
) -> (Duration, String) {
    let name = std::path::Path::new(bin).file_name().unwrap();
    let comm = format!("{}\n", name.to_string_lossy());
    let inject = format!("inject={syscall}:error={errno}");
    let trace = format!("trace={syscall}");
    let record = tempfile::NamedTempFile::new().unwrap();
    let path = record.path().to_str().unwrap();
    let mut strace = vec!["-f", "-qq", "-o", path, "-e", &trace];
    strace.extend(["-e", &inject, bin]);
    strace.extend(args);
    let mut server = Listing::start("strace", &strace);
    server.expect(r"Server listening on (\S+)");
    let tracer = server.pid();
    // strace's only child by now: its probes of the kernel have ended.
    let children = format!("/proc/{tracer}/task/{tracer}/children");
    let pid: i32 = std::fs::read_to_string(children)
        .unwrap()
        .trim()
        .parse()
        .expect("strace's child");
    let pid = nix::unistd::Pid::from_raw(pid);
    let named = std::fs::read_to_string(format!("/proc/{pid}/comm"));
    assert_eq!(named.unwrap(), comm);
    let (cpu, started) = (cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2)); // The wait is the test.
    let used = cpu_time(pid) - cpu;
    let lasted = started.elapsed();
    assert!(lasted < Duration::from_secs(10));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stderr = server.finish().stderr;
    // strace has ended: its record is whole. A refused call is one line,
    // `PID accept4(3, ...) = -1 EPERM (Operation not permitted) (INJECTED)`,
    // or two if another thread's call came between its start and its end
    // (`<unfinished ...>`, then `<... accept4 resumed>...`): count the ends.
    let record = std::fs::read_to_string(record.path()).unwrap();
    let ended = format!("= -1 {errno} (");
    let refused = record
        .lines()
        .filter(|l| l.contains(syscall) && l.contains(&ended))
        .filter(|l| l.ends_with("(INJECTED)"))
        .count();
    // At least one retry, and tens at most over the time it ran (2 s, and
    // its start): 100 is a call every 20 ms.
    assert!(
        (2..=100).contains(&refused),
        "{refused} calls of {syscall} refused while it ran \
         ({lasted:?} after it listened)"
    );
    (used, stderr)
}

/// Python makes a listening *Unix* socket, as a systemd unit with
/// `ListenStream=/run/x.sock` would pass, and waits until a client is in
/// its queue (the client has sent `hello\n` and half-closed). Then a
/// child of it takes the socket as descriptor 3 and becomes `bin` with
/// `args`, `$LISTEN_PID` its own and `$LISTEN_FDS` 1, while Python keeps a
/// copy: once the child has ended, Python prints whether the client is
/// still queued (`still queued: b'hello\n'`, or `gone`) and exits with
/// the child's status. `None` where there is no python3.
pub fn hand_a_listening_unix_socket(
    bin: &str,
    args: &[&str],
) -> Option<Finished> {
    use std::io::Write;
    const SCRIPT: &str = r#"
import os, select, socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[2])
listener.listen()
print("listening", flush=True)
select.select([listener], [], [])
pid = os.fork()
if pid == 0:
    os.dup2(listener.fileno(), 3)
    os.set_inheritable(3, True)
    env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
    env.pop("NOTIFY_SOCKET", None)
    os.execve(sys.argv[1], [sys.argv[1]] + sys.argv[3:], env)
_, status = os.waitpid(pid, 0)
listener.setblocking(False)
try:
    client, _ = listener.accept()
    print("still queued:", client.recv(100))
except BlockingIOError:
    print("gone")
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    if !have("python3") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listener.sock");
    let path = path.to_str().unwrap();
    let mut python = vec!["-c", SCRIPT, bin, path];
    python.extend(args);
    let mut server = Listing::start("python3", &python);
    assert_eq!(server.next_line(), "listening");
    let mut client = std::os::unix::net::UnixStream::connect(path).unwrap();
    client.write_all(b"hello\n").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    Some(server.finish())
}
