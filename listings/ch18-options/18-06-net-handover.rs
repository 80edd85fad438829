// ANCHOR: whole
// Listing 18-6: restarting a server without dropping a connection. Two
// scenes, each with twenty clients that connect and wait in a listening
// socket's queue:
//
// 1. SO_REUSEPORT: a new listener shares the port, and the old one
//    closes. The clients that the kernel had queued on the old one are
//    reset, unless the sysctl `net.ipv4.tcp_migrate_req` is 1 (Linux
//    5.14 and later), which moves them to the new one.
// 2. The old process hands the listening socket itself to the new one,
//    which it starts with the socket as descriptor 3 (the convention of
//    systemd's LISTEN_FDS and LISTEN_PID), and then finishes the
//    connection it was serving. The queue never closes: no client is
//    lost.
//
// `net-handover` takes no arguments; `net-handover --inherit N` is the
// new process, which serves clients on the socket it inherits until N of
// them have sent the listing's own request. Linux.

use std::env;
use std::error::Error;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{self, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::getpid;
use socket2::{Domain, SockRef, Socket, Type};

const USAGE: &str = "usage: net-handover [--inherit N]";
/// How many clients wait in the queue in each scene.
const CLIENTS: usize = 20;
/// Where a listening socket handed over by `exec` is: after stdin,
/// stdout and stderr, as systemd passes them (`LISTEN_FDS=1`).
const HANDED_OVER: RawFd = 3;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("net-handover: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let chld = keep_own_zombies()?;
    match parse_args().map_err(|e| format!("{e}; {USAGE}"))? {
        Some(count) => new_process(count),
        None => {
            reuseport()?;
            handover(chld)
        }
    }
}

// ANCHOR: reuseport
/// Scene 1: an old and a new listener on one port with SO_REUSEPORT; the
/// old closes with the connections the kernel gave it still queued.
fn reuseport() -> Result<(), Box<dyn Error>> {
    let migrate = fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .map_or_else(|_| "absent".into(), |v| v.trim().to_string());
    writeln!(
        io::stdout(),
        "1. SO_REUSEPORT, the old listener closes (tcp_migrate_req: {migrate})"
    )?;
    let old = reuse_port_listener("127.0.0.1:0".parse()?)?;
    let new = reuse_port_listener(old.local_addr()?)?;
    let clients = connect_all(old.local_addr()?)?;
    drop(old);
    // Each client sent a line; the new listener answers whatever reaches
    // it, and a client queued on the old one has been reset.
    let (answered, reset) = serve_every_client(&new, &clients)?;
    writeln!(
        io::stdout(),
        "   of {CLIENTS} clients: {answered} (measured) answered by the new \
         listener, {reset} (measured) reset"
    )?;
    Ok(())
}

/// Accepts and answers on `new` until each client has its answer or has
/// been reset. Not until the queue is once empty: the kernel queues a
/// connection when the client's last ACK of the handshake arrives, which
/// on a loaded machine can be after the client's `connect` has returned
/// and after the queue was seen empty. Such a client would never be
/// accepted. `poll` waits for either a connection or a client's news.
/// Only our own clients are answered, known by their addresses: anyone
/// else on the port, a stranger that resets or says nothing, is closed
/// and logged in one line, and the scene goes on.
fn serve_every_client(
    new: &TcpListener,
    clients: &[TcpStream],
) -> io::Result<(usize, usize)> {
    new.set_nonblocking(true)?;
    let by = Instant::now() + REQUEST_TIME;
    let ours = clients
        .iter()
        .map(TcpStream::local_addr)
        .collect::<io::Result<Vec<SocketAddr>>>()?;
    let mut waiting: Vec<&TcpStream> = clients.iter().collect();
    let (mut answered, mut reset) = (0, 0);
    while !waiting.is_empty() {
        loop {
            match new.accept() {
                Ok((_, peer)) if !ours.contains(&peer) => {
                    log_client(peer, "not one of ours; closed");
                }
                Ok((conn, peer)) => {
                    if let Err(err) = answer(&conn, "the new listener") {
                        log_client(peer, &why(&err));
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                // Out of descriptors (EMFILE): say so, not "no more queued".
                Err(err) => return Err(err),
            }
        }
        let left = by
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(ErrorKind::TimedOut)?;
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let flags = PollFlags::POLLIN;
        let mut fds: Vec<PollFd> = std::iter::once(new.as_fd())
            .chain(waiting.iter().map(|client| client.as_fd()))
            .map(|fd| PollFd::new(fd, flags))
            .collect();
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
        // A client with news has its answer, or its reset, to read.
        let news: Vec<bool> =
            fds[1..].iter().map(|fd| fd.any() == Some(true)).collect();
        drop(fds);
        let mut still = Vec::new();
        for (client, news) in waiting.into_iter().zip(news) {
            if !news {
                still.push(client);
                continue;
            }
            match reply(client) {
                Ok(_) => answered += 1,
                Err(err) if err.kind() == ErrorKind::ConnectionReset => {
                    reset += 1
                }
                Err(err) => return Err(err),
            }
        }
        waiting = still;
    }
    Ok((answered, reset))
}

/// A listening socket with SO_REUSEPORT (and SO_REUSEADDR, as std sets).
fn reuse_port_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}
// ANCHOR_END: reuseport

// ANCHOR: handover
/// Scene 2: the old process serves one client; twenty more wait in the
/// queue. It starts the new process with the listening socket, which
/// serves them, and finishes its own client meanwhile: draining.
fn handover(chld: SigAction) -> Result<(), Box<dyn Error>> {
    writeln!(
        io::stdout(),
        "2. The old process hands its listening socket to a new one"
    )?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let first = connect_one(addr)?;
    let (serving, _) = accept_own(&listener, &first)?;
    let clients = connect_all(addr)?;
    writeln!(
        io::stdout(),
        "   old: serving 1 client, {CLIENTS} waiting in the queue"
    )?;
    // systemd's convention: LISTEN_FDS says how many sockets, and
    // LISTEN_PID whom they are for, so that a program they start does not
    // take them for its own. The pid is known only after the fork, and
    // `Command` sets the environment before it: a shell in between sets
    // LISTEN_PID to its own pid, which `exec` keeps.
    let mut new = Command::new("sh");
    new.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(env::current_exe()?)
        .args(["--inherit", &CLIENTS.to_string()]);
    new.env("LISTEN_FDS", "1");
    sigchld_as_found(&mut new, chld);
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec only `dup2` and `fcntl` run, system
    // calls that allocate nothing and take no lock, and an error is made
    // from errno, which allocates nothing either. A copy of the socket on
    // descriptor 3, without close-on-exec, is all the new program
    // inherits of it; std's own descriptors are closed by `exec`.
    unsafe {
        new.pre_exec(move || {
            let done = if fd == HANDED_OVER {
                // Already there: only the close-on-exec flag must go.
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                // The copy that `dup2` makes is not close-on-exec.
                libc::dup2(fd, HANDED_OVER)
            };
            if done == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Its report comes through a pipe, to be printed after ours.
    let mut new = new.stdout(Stdio::piped()).spawn()?;
    // From here on the queue is the new process's as much as ours: we
    // accept no more, and close our copy of the socket.
    drop(listener);
    // Whatever fails from here on, the new process is waited for before
    // the error is reported: every child reaped. Nothing is written to
    // stdout before that either: if its reader has gone (`| head`), the
    // write kills us (SIGPIPE), and would leave the new process to init.
    let finished =
        answer(&serving, "the old process").and_then(|_| reply(&first));
    let mut report = String::new();
    let read = new
        .stdout
        .take()
        .map_or(Ok(0), |mut out| out.read_to_string(&mut report));
    let status = new.wait()?;
    writeln!(io::stdout(), "   old: finished its client, {}", finished?)?;
    read?;
    if !status.success() {
        return Err(format!("the new process ended badly: {status}").into());
    }
    write!(io::stdout(), "{report}")?;
    let (mut answered, mut lost) = (0, 0);
    for client in &clients {
        match reply(client) {
            Ok(line) if line.contains("the new process") => answered += 1,
            _ => lost += 1,
        }
    }
    writeln!(
        io::stdout(),
        "   of {CLIENTS} clients: {answered} answered by the new process, \
         {lost} lost"
    )?;
    Ok(())
}

/// The new process: the listening socket is descriptor 3; it serves
/// clients on it until `count` of them have sent REQUEST, and ends.
fn new_process(count: usize) -> Result<(), Box<dyn Error>> {
    // As sd_listen_fds(3) checks: the socket is ours only if LISTEN_PID
    // is our pid; otherwise the variables were meant for another process.
    let ours = env::var("LISTEN_PID") == Ok(getpid().to_string());
    if !ours || env::var("LISTEN_FDS").as_deref() != Ok("1") {
        return Err("--inherit: no listening socket handed over".into());
    }
    // As sd_listen_fds(3) does, too: the descriptor must be open, and is
    // made close-on-exec, so that no program this one starts inherits the
    // listening socket (and keeps the port, with a queue nobody serves).
    // SAFETY: `fcntl` on a number touches no memory of ours; on a number
    // that is not an open descriptor it fails with EBADF.
    let flags =
        unsafe { libc::fcntl(HANDED_OVER, libc::F_SETFD, libc::FD_CLOEXEC) };
    if flags == -1 {
        let err = io::Error::last_os_error();
        return Err(
            format!("--inherit: descriptor {HANDED_OVER}: {err}").into()
        );
    }
    // SAFETY: descriptor 3 is open, and by the convention above this
    // process owns it; nothing else here uses it.
    let socket = unsafe { OwnedFd::from_raw_fd(HANDED_OVER) };
    // Listening is not enough: a Unix socket that listens would lose its
    // first client at `accept`, which has no `SocketAddr` for it.
    let sock = SockRef::from(&socket);
    let tcp = sock.is_listener().unwrap_or(false)
        && matches!(sock.domain(), Ok(Domain::IPV4 | Domain::IPV6))
        && matches!(sock.r#type(), Ok(Type::STREAM));
    if !tcp {
        let why =
            format!("descriptor {HANDED_OVER} is not a listening TCP socket");
        return Err(format!("--inherit: {why}").into());
    }
    let listener = TcpListener::from(socket);
    // The queue is ours alone now: ending on one client's error (a reset,
    // a silence past the timeout) would close it and reset every client
    // waiting in it. That client is logged, not counted, and we go on.
    // So is anyone whose request is not our clients' own: served, but
    // counted, it would leave one of ours in the queue when we end.
    let mut served = 0;
    while served < count {
        let (conn, peer) = listener.accept()?;
        match answer(&conn, "the new process") {
            Ok(request) if request == REQUEST => served += 1,
            Ok(_) => log_client(peer, "not one of ours; served, not counted"),
            Err(err) => log_client(peer, &why(&err)),
        }
    }
    writeln!(
        io::stdout(),
        "   new (pid {}): took the socket, served {count}",
        getpid()
    )?;
    Ok(())
}
// ANCHOR_END: handover

/// Connects CLIENTS clients, which wait in the listening socket's queue.
fn connect_all(addr: SocketAddr) -> io::Result<Vec<TcpStream>> {
    (0..CLIENTS).map(|_| connect_one(addr)).collect()
}

/// What each of our clients sends: the new process counts only this.
const REQUEST: &[u8] = b"hello\n";

/// Connects a client that sends REQUEST and half-closes.
fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut client = TcpStream::connect(addr)?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    client.write_all(REQUEST)?;
    client.shutdown(Shutdown::Write)?;
    Ok(client)
}

/// Accepts connections until the one from `client`, our own, comes; any
/// other (someone else on this machine, which can reach 127.0.0.1 too) is
/// closed at once, as Listing 18-2 does. Ours by address and port.
fn accept_own(
    listener: &TcpListener,
    client: &TcpStream,
) -> io::Result<(TcpStream, SocketAddr)> {
    let ours = client.local_addr()?;
    loop {
        let (conn, peer) = listener.accept()?;
        if (peer.ip().to_canonical(), peer.port()) == (ours.ip(), ours.port()) {
            return Ok((conn, peer));
        }
    }
}

/// Logs what became of the connection from `peer`, in one line written
/// whole (not `eprintln!`, which panics if stderr cannot be written).
fn log_client(peer: SocketAddr, what: &str) {
    let line = format!("net-handover: a client ({peer}): {what}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Why a client's request failed: "timed out" for its deadline.
fn why(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".into(),
        _ => err.to_string(),
    }
}

/// The longest request a client may send.
const MAX_REQUEST: usize = 1024;
/// How long a client has to send its whole request.
const REQUEST_TIME: Duration = Duration::from_secs(10);

/// Reads a client's request to its end, answers who served it, ends the
/// stream, and returns the request. The request has a length limit and a deadline for the
/// whole of it (Chapter 14): a client that sends without end, or a byte
/// at a time, fails here instead of holding the one process that serves
/// the queue.
fn answer(mut conn: &TcpStream, who: &str) -> io::Result<Vec<u8>> {
    conn.set_nonblocking(false)?;
    let by = Instant::now() + REQUEST_TIME;
    let (mut request, mut buf) = (Vec::new(), [0; 512]);
    loop {
        let left = by
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(ErrorKind::TimedOut)?;
        conn.set_read_timeout(Some(left))?;
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if request.len() + n > MAX_REQUEST => {
                let what = format!("a request longer than {MAX_REQUEST} bytes");
                return Err(io::Error::new(ErrorKind::InvalidData, what));
            }
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    // One write: a reply in pieces waits on Nagle's algorithm (18-4).
    conn.write_all(format!("served by {who}\n").as_bytes())?;
    conn.shutdown(Shutdown::Write)?;
    Ok(request)
}

/// A client's reply, to its end.
fn reply(mut client: &TcpStream) -> io::Result<String> {
    let mut reply = String::new();
    client.read_to_string(&mut reply)?;
    Ok(reply.trim_end().to_string())
}

/// Gives SIGPIPE back its default action: this is a filter.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Gives SIGCHLD its default action back, and returns the action found.
/// A parent that left it ignored passed that on through `exec` (Chapter
/// 24), and then the kernel reaps our children itself: the wait for the
/// new process fails with ECHILD, after a handover that went well.
fn keep_own_zombies() -> nix::Result<SigAction> {
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    unsafe { sigaction(Signal::SIGCHLD, &default) }
}

/// Gives the child that `command` starts SIGCHLD's action as we `found`
/// it, ignored perhaps: `keep_own_zombies` changed it for our own
/// wait, not for the programs we start (Chapter 12).
fn sigchld_as_found(command: &mut Command, found: SigAction) {
    // SAFETY: between fork and exec the child makes one system call,
    // sigaction, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            sigaction(Signal::SIGCHLD, &found)?;
            Ok(())
        })
    };
}

/// Reads `[--inherit N]`.
fn parse_args() -> Result<Option<usize>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut inherit = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("inherit") => {
                let count: usize = args.value()?.parse()?;
                if !(1..=1000).contains(&count) {
                    return Err("--inherit must be from 1 to 1000".into());
                }
                inherit = Some(count);
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(inherit)
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
