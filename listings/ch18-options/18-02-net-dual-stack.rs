// ANCHOR: whole
// Listing 18-2: one IPv6 socket for both IPv4 and IPv6, or not. Whether a
// socket bound to the IPv6 wildcard address `::` also accepts IPv4 clients
// is the option IPV6_V6ONLY, which must be set before `bind`. Four scenes,
// each on a fresh port; each binds `::`, all interfaces, for the moment it
// lasts, and accepts only the connection it makes itself.

use std::error::Error;
use std::io::{self, ErrorKind, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{self, ExitCode};
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use socket2::{Domain, Socket, Type};

const USAGE: &str = "usage: net-dual-stack";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("net-dual-stack: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let default = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")?;
    writeln!(
        io::stdout(),
        "The default here: /proc/sys/net/ipv6/bindv6only is {}",
        default.trim()
    )?;

    writeln!(
        io::stdout(),
        "1. [::] with IPV6_V6ONLY off: IPv4 clients come in too"
    )?;
    let listener = ipv6_wildcard(false)?;
    let port = listener.local_addr()?.port();
    let client = TcpStream::connect(("127.0.0.1", port))?;
    let (_, peer) = accept_own(&listener, &client)?;
    writeln!(
        io::stdout(),
        "   a client of 127.0.0.1 is seen as {}",
        peer.ip()
    )?;

    writeln!(io::stdout(), "2. ... and the IPv4 port is taken with them")?;
    let v4 = bind_v4(port);
    writeln!(
        io::stdout(),
        "   binding 0.0.0.0 on the same port: {}",
        outcome(&v4)
    )?;
    drop(listener);

    writeln!(io::stdout(), "3. [::] with IPV6_V6ONLY on: IPv6 only")?;
    let (listener, v4) = v6_only_pair()?;
    let port = listener.local_addr()?.port();
    // Our IPv4 socket holds the port, and does not listen: nobody can.
    let refused = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    );
    writeln!(
        io::stdout(),
        "   a client of 127.0.0.1: {}",
        outcome(&refused)
    )?;
    // It did: `v6_only_pair` returns the two sockets only then.
    writeln!(io::stdout(), "   binding 0.0.0.0 on the same port: ok")?;
    drop((listener, v4));

    writeln!(io::stdout(), "4. IPV6_V6ONLY set after bind")?;
    let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
    writeln!(io::stdout(), "   {}", outcome(&socket.set_only_v6(true)))?;
    Ok(())
}

/// A listening socket on `[::]`, port chosen by the kernel, with
/// IPV6_V6ONLY set as asked: socket2 lets us set it between `socket` and
/// `bind`, where it must go. SO_REUSEADDR goes there too, as
/// `TcpListener::bind` sets it: a server restarted without it fails to
/// bind while its old connections are in TIME_WAIT (Chapter 3).
fn ipv6_wildcard(only_v6: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_only_v6(only_v6)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
    // std's backlog on Linux: a smaller one makes a burst of clients
    // wait (Chapter 14).
    socket.listen(128)?;
    Ok(socket.into())
}

/// An IPv6-only listener on `[::]`, and an IPv4 socket bound to 0.0.0.0
/// on the same port. For an IPv6-only socket the kernel picks a port
/// without looking at IPv4, where another program may already use it:
/// a client of 127.0.0.1 would then reach that program. So we bind the
/// IPv4 socket at once, and ask for another port while it is in use.
fn v6_only_pair() -> io::Result<(TcpListener, Socket)> {
    let mut tries = 0;
    loop {
        let listener = ipv6_wildcard(true)?;
        match bind_v4(listener.local_addr()?.port()) {
            Ok(v4) => return Ok((listener, v4)),
            Err(err) if err.kind() == ErrorKind::AddrInUse && tries < 100 => {
                tries += 1;
            }
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: run

/// Accepts connections until the one from `client`, our own, comes; any
/// other (someone else reaching the wildcard address) is closed at once.
/// Ours by address and port: a stranger on another address may have the
/// same port. (Our 127.0.0.1 arrives as `::ffff:127.0.0.1`, which
/// `to_canonical` turns back into 127.0.0.1.)
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

/// An IPv4 socket bound to 0.0.0.0 on `port`, without SO_REUSEADDR.
fn bind_v4(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    Ok(socket)
}

/// "ok", or the error.
fn outcome<T>(result: &io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(err) => err.to_string(),
    }
}

/// Gives SIGPIPE back its default action: this is a filter, which ends
/// quietly, like `cat`, when its output goes away.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Takes no arguments but `--help`.
fn parse_args() -> Result<(), lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = lexopt::Parser::from_env();
    if let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(())
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
