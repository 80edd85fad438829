// ANCHOR: whole
// Listing 3-1: the race in `socket_preview.py`, made to happen every time.
// The original's server thread binds and listens while five client
// threads, started at the same moment, connect. A client that comes
// before `listen` is refused. Here the server thread binds, then waits
// until every client has tried before it listens: the unlucky schedule,
// forced, so that you can see what it does.

use std::error::Error;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{self, ExitCode};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Barrier};
use std::thread;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname,
    listen, setsockopt, socket, sockopt,
};

const USAGE: &str = "usage: socket-race";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("socket-race: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: race
const CLIENTS: usize = 5;

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let (addr_tx, addr_rx) = mpsc::channel();
    // The clients and the server meet here once every client has tried.
    let tried = Arc::new(Barrier::new(CLIENTS + 1));
    let server = {
        let tried = Arc::clone(&tried);
        spawn(move || server(&addr_tx, &tried))?
    };
    let Ok(addr) = addr_rx.recv() else {
        // The server gave up before it had an address: its error says why.
        return match server.join() {
            Ok(Err(err)) => Err(err.into()),
            _ => Err("the server thread failed".into()),
        };
    };

    let clients = (0..CLIENTS)
        .map(|_| {
            let tried = Arc::clone(&tried);
            spawn(move || {
                let connected = TcpStream::connect(addr);
                tried.wait();
                connected
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut results = Vec::new();
    for client in clients {
        results.push(client.join().map_err(|_| "a client panicked")?);
    }
    let listener = server.join().map_err(|_| "the server panicked")??;

    let mut out = io::stdout();
    let mut refused = 0;
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(_) => writeln!(out, "client{i} connected")?,
            Err(err) => {
                writeln!(out, "client{i} failed: {err}")?;
                if err.kind() == ErrorKind::ConnectionRefused {
                    refused += 1;
                }
            }
        }
    }
    // "Too late" only if every client was refused: a client that failed
    // for another reason (out of descriptors, say) shows no race at all.
    if refused < CLIENTS {
        let why = format!("{refused} of {CLIENTS} clients were refused");
        return Err(format!("{why}; this run shows no race").into());
    }
    writeln!(out, "Server listening on {addr}, too late for them")?;
    // Nobody calls `accept`, yet this connect succeeds: the kernel
    // completes connections to a listening socket and queues them.
    TcpStream::connect(addr)?;
    writeln!(
        out,
        "A sixth client connected, though nobody has called accept"
    )?;
    drop(listener);
    Ok(())
}

/// The original's server thread up to `listen`, with the moment between
/// `bind` and `listen` stretched until the clients have come and gone.
fn server(
    addr_tx: &Sender<SocketAddr>,
    tried: &Barrier,
) -> nix::Result<OwnedFd> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&sock, sockopt::ReuseAddr, &true)?;
    bind(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))?;
    let bound: SockaddrIn = getsockname(sock.as_raw_fd())?;
    let _ = addr_tx.send(SocketAddr::V4(bound.into()));
    tried.wait();
    listen(&sock, Backlog::new(5)?)?;
    Ok(sock)
}

/// `thread::spawn`, but an error instead of a panic when the system
/// refuses another thread (`ulimit -u`, or out of memory).
fn spawn<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<thread::JoinHandle<T>, String> {
    thread::Builder::new()
        .spawn(work)
        .map_err(|err| format!("cannot start a thread: {err}"))
}
// ANCHOR_END: race

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on its next write.
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
