// ANCHOR: whole
// Listing 3-1: Lutz's `socket_preview.py`, ported to Rust: a server
// thread answers every connection with `server got: [<data>]`, and five
// client threads each send their name and print the reply.
//
// The server listens on 127.0.0.1:50008 unless an address is given;
// port 0 lets the kernel choose. `--count N` makes the server stop after
// N connections, so the program ends; without it the server runs forever.

use std::env;
use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;

const USAGE: &str = "usage: socket-preview [HOST:PORT] [--count N]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("socket-preview: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: preview
fn run() -> Result<(), Box<dyn Error>> {
    let (addr, count) = parse_args()?;
    // Bind (which also listens) before any client exists: a client can
    // never knock on a door that is not there yet.
    let listener = TcpListener::bind(addr)
        .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
    let addr = listener.local_addr()?;
    println!("Server listening on {addr}");
    let server = thread::spawn(move || serve(&listener, count));

    let clients: Vec<_> = (0..5)
        .map(|i| thread::spawn(move || client(addr, &format!("client{i}"))))
        .collect();
    for client in clients {
        let reply = client.join().map_err(|_| "a client thread panicked")??;
        println!("client got: [{reply}]");
    }
    server.join().map_err(|_| "the server thread panicked")??;
    Ok(())
}

/// Answers each connection once, then closes it (by dropping `conn`).
fn serve(listener: &TcpListener, count: Option<usize>) -> io::Result<()> {
    for conn in listener.incoming().take(count.unwrap_or(usize::MAX)) {
        let mut conn = conn?;
        let mut data = [0; 1024];
        let n = conn.read(&mut data)?;
        let reply =
            format!("server got: [{}]", String::from_utf8_lossy(&data[..n]));
        conn.write_all(reply.as_bytes())?;
    }
    Ok(())
}

/// Sends `name` and returns everything the server answers.
fn client(addr: SocketAddr, name: &str) -> io::Result<String> {
    let mut sock = TcpStream::connect(addr)?;
    sock.write_all(name.as_bytes())?;
    let mut reply = Vec::new();
    sock.read_to_end(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
// ANCHOR_END: preview

/// Reads `[HOST:PORT] [--count N]` from the command line.
fn parse_args() -> Result<(SocketAddr, Option<usize>), String> {
    let mut args = env::args().skip(1);
    let mut addr = None;
    let mut count = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => count = Some(parse_count(args.next())?),
            _ if addr.is_none() => addr = Some(parse_addr(&arg)?),
            _ => return Err(format!("unexpected argument '{arg}'; {USAGE}")),
        }
    }
    Ok((addr.map_or_else(|| parse_addr(DEFAULT_ADDR), Ok)?, count))
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
