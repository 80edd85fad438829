// ANCHOR: whole
// Listing 3-2: the mode switch that goes with `socket_preview.py`: run the
// server alone, one client alone, or five client threads, so that two
// terminals (or `nc`) can talk to each other.
//
// Every mode takes `[HOST:PORT]` (default 127.0.0.1:50008); the server
// also takes `--count N` to stop after N connections.

use std::env;
use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;

const USAGE: &str =
    "usage: socket-modes server|client|threads [HOST:PORT] [--count N]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";

// ANCHOR: modes
enum Mode {
    /// Listen and answer until stopped.
    Server { count: Option<usize> },
    /// One client named `client`.
    Client,
    /// Five client threads, `client0` to `client4`, at once.
    Threads,
}

fn run() -> Result<(), Box<dyn Error>> {
    let (mode, addr) = parse_args()?;
    match mode {
        Mode::Server { count } => {
            let listener = TcpListener::bind(addr)
                .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
            println!("Server listening on {}", listener.local_addr()?);
            serve(&listener, count)?;
        }
        Mode::Client => {
            let reply = client(addr, "client")
                .map_err(|err| format!("{addr}: {err}"))?;
            println!("client got: [{reply}]");
        }
        Mode::Threads => {
            let clients: Vec<_> = (0..5)
                .map(|i| {
                    thread::spawn(move || client(addr, &format!("client{i}")))
                })
                .collect();
            for client in clients {
                let reply =
                    client.join().map_err(|_| "a client thread panicked")?;
                let reply = reply.map_err(|err| format!("{addr}: {err}"))?;
                println!("client got: [{reply}]");
            }
        }
    }
    Ok(())
}
// ANCHOR_END: modes

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("socket-modes: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: server
/// Answers each connection once, reports it, and closes it.
fn serve(listener: &TcpListener, count: Option<usize>) -> io::Result<()> {
    for conn in listener.incoming().take(count.unwrap_or(usize::MAX)) {
        // A client that misbehaves must not stop the server: report it and
        // go on with the next.
        match conn.and_then(answer) {
            Ok((peer, reply)) => println!("Answered {peer}: {reply}"),
            Err(err) => eprintln!("socket-modes: a connection failed: {err}"),
        }
    }
    Ok(())
}

fn answer(mut conn: TcpStream) -> io::Result<(SocketAddr, String)> {
    let peer = conn.peer_addr()?;
    let mut data = [0; 1024];
    let n = conn.read(&mut data)?;
    let reply =
        format!("server got: [{}]", String::from_utf8_lossy(&data[..n]));
    conn.write_all(reply.as_bytes())?;
    Ok((peer, reply))
}
// ANCHOR_END: server

/// Sends `name` and returns everything the server answers.
fn client(addr: SocketAddr, name: &str) -> io::Result<String> {
    let mut sock = TcpStream::connect(addr)?;
    sock.write_all(name.as_bytes())?;
    let mut reply = Vec::new();
    sock.read_to_end(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Reads `MODE [HOST:PORT] [--count N]` from the command line.
fn parse_args() -> Result<(Mode, SocketAddr), String> {
    let mut args = env::args().skip(1);
    let mode = args.next().ok_or(format!("which mode? {USAGE}"))?;
    let mut addr = None;
    let mut count = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => count = Some(parse_count(args.next())?),
            _ if addr.is_none() => addr = Some(parse_addr(&arg)?),
            _ => return Err(format!("unexpected argument '{arg}'; {USAGE}")),
        }
    }
    let mode = match (mode.as_str(), count) {
        ("server", count) => Mode::Server { count },
        ("client", None) => Mode::Client,
        ("threads", None) => Mode::Threads,
        ("client" | "threads", Some(_)) => {
            return Err(format!("only the server takes --count; {USAGE}"));
        }
        (other, _) => return Err(format!("unknown mode '{other}'; {USAGE}")),
    };
    Ok((mode, addr.map_or_else(|| parse_addr(DEFAULT_ADDR), Ok)?))
}

/// Resolves `HOST:PORT` (a name such as `localhost` works too) to the
/// first address it names.
fn parse_addr(arg: &str) -> Result<SocketAddr, String> {
    let bad = |why: String| format!("bad address '{arg}': {why}; {USAGE}");
    let mut addrs =
        arg.to_socket_addrs().map_err(|err| bad(err.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| bad("it names no address".into()))
}

fn parse_count(value: Option<String>) -> Result<usize, String> {
    let value = value.ok_or(format!("--count needs a number; {USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("--count needs a whole number, not '{value}'"))
}
// ANCHOR_END: whole
