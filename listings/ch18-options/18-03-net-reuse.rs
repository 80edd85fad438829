// ANCHOR: whole
// Listing 18-3: what SO_REUSEADDR and SO_REUSEPORT allow on Linux. Each
// scene makes two TCP sockets on the same loopback port, with the options
// set before `bind` (through socket2), and reports what `bind` and
// `listen` said. The last scene lets two listening sockets share a port,
// and counts the connections each one gets.

use std::error::Error;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{self, ExitCode};
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use socket2::{Domain, Socket, Type};

const USAGE: &str = "usage: net-reuse";
/// Connections to spread over two sockets sharing a port.
const CONNECTIONS: usize = 100;

/// The options of one socket.
#[derive(Clone, Copy)]
struct Opts {
    reuse_addr: bool,
    reuse_port: bool,
    /// Listen after binding?
    listen: bool,
    /// Bind 0.0.0.0 rather than 127.0.0.1?
    wildcard: bool,
}

const PLAIN: Opts = Opts {
    reuse_addr: false,
    reuse_port: false,
    listen: true,
    wildcard: false,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("net-reuse: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let addr_reuse = Opts {
        reuse_addr: true,
        ..PLAIN
    };
    let scenes = [
        ("no options", PLAIN, PLAIN),
        ("SO_REUSEADDR on both", addr_reuse, addr_reuse),
        (
            "SO_REUSEADDR on both, 0.0.0.0 then 127.0.0.1",
            Opts {
                wildcard: true,
                ..addr_reuse
            },
            addr_reuse,
        ),
    ];
    for (number, (what, first, second)) in (1..).zip(scenes) {
        writeln!(io::stdout(), "{number}. {what}")?;
        let (first, port) = open(first, 0)?;
        writeln!(
            io::stdout(),
            "   second socket: {}",
            outcome(&open(second, port))
        )?;
        drop(first);
    }

    writeln!(
        io::stdout(),
        "4. SO_REUSEADDR on both, the first not listening yet"
    )?;
    let (first, port) = open(
        Opts {
            listen: false,
            ..addr_reuse
        },
        0,
    )?;
    let second = open(addr_reuse, port);
    writeln!(io::stdout(), "   second socket: {}", outcome(&second))?;
    writeln!(
        io::stdout(),
        "   first socket's listen: {}",
        outcome(&first.listen(16))
    )?;
    drop((first, second));

    writeln!(io::stdout(), "5. SO_REUSEPORT on both")?;
    let shared = Opts {
        reuse_port: true,
        ..PLAIN
    };
    let (first, port) = open(shared, 0)?;
    let (second, _) = open(shared, port)?;
    writeln!(io::stdout(), "   second socket: ok")?;
    let (a, b) = spread(first.into(), second.into(), port)?;
    writeln!(
        io::stdout(),
        "   of {CONNECTIONS} connections, each socket accepted some: {}",
        a > 0 && b > 0
    )?;
    Ok(())
}

/// Makes a socket with `opts`, binds it to `port` (0: any), and listens
/// if asked; returns it and the port it got.
fn open(opts: Opts, port: u16) -> io::Result<(Socket, u16)> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    // Both options decide what `bind` allows: they are useless after it.
    socket.set_reuse_address(opts.reuse_addr)?;
    socket.set_reuse_port(opts.reuse_port)?;
    let ip = if opts.wildcard {
        [0, 0, 0, 0]
    } else {
        [127, 0, 0, 1]
    };
    socket.bind(&SocketAddr::from((ip, port)).into())?;
    if opts.listen {
        socket.listen(CONNECTIONS as i32)?;
    }
    let port = socket.local_addr()?.as_socket().map_or(0, |a| a.port());
    Ok((socket, port))
}
// ANCHOR_END: run

/// Makes CONNECTIONS connections to `port` and counts how many each
/// listening socket has in its queue.
fn spread(
    a: TcpListener,
    b: TcpListener,
    port: u16,
) -> io::Result<(usize, usize)> {
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        clients
            .push(TcpStream::connect_timeout(&addr, Duration::from_secs(10))?);
    }
    Ok((queued(&a)?, queued(&b)?))
}

/// How many connections wait in a listening socket's queue: accepted
/// until `accept` would block. Any other failure (EMFILE, out of
/// descriptors) is an error, not an empty queue.
fn queued(listener: &TcpListener) -> io::Result<usize> {
    listener.set_nonblocking(true)?;
    let mut count = 0;
    loop {
        match listener.accept() {
            Ok(_) => count += 1,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                return Ok(count);
            }
            Err(err) => return Err(err),
        }
    }
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
