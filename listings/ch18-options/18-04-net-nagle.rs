// ANCHOR: whole
// Listing 18-4: the stall of Nagle's algorithm meeting delayed
// acknowledgements, measured. A client sends requests of two parts, a
// header and a body, to a server that answers once it has both; it times
// ROUNDS round trips three ways: two writes, two writes with TCP_NODELAY,
// and one write of both parts. For each it prints the first round trip,
// then the least, the median and the greatest of the rest.
//
// `net-nagle [--rounds N]`

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str = "usage: net-nagle [--rounds N]";
const HEADER: &[u8] = b"HEAD";
const BODY: &[u8] = b"body";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("net-nagle: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let rounds = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    for (what, nodelay, one_write) in [
        ("two writes", false, false),
        ("two writes, TCP_NODELAY", true, false),
        ("one write", false, true),
    ] {
        let (mut client, server) = connected()?;
        client.set_nodelay(nodelay)?;
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let began = Instant::now();
            if one_write {
                client.write_all(&[HEADER, BODY].concat())?;
            } else {
                client.write_all(HEADER)?;
                client.write_all(BODY)?;
            }
            client.read_exact(&mut [0; 2])?;
            times.push(began.elapsed());
        }
        drop(client);
        server.join().map_err(|_| "the server thread panicked")??;
        // The first round trip apart: a new connection acknowledges at
        // once. Then the spread of the rest, not only their middle.
        let ms = |time: Duration| time.as_secs_f64() * 1000.0;
        let first = times.remove(0);
        times.sort();
        write!(io::stdout(), "{what:<24} first {:.2} ms", ms(first))?;
        if let (Some(&least), Some(&most)) = (times.first(), times.last()) {
            let median = times[times.len() / 2];
            write!(
                io::stdout(),
                "; then min {:.2} ms, median {:.2} ms, max {:.2} ms",
                ms(least),
                ms(median),
                ms(most)
            )?;
        }
        writeln!(io::stdout())?;
    }
    Ok(())
}

/// A connected client, and a server thread that reads each request whole
/// and answers `ok`, until the client hangs up.
fn connected() -> io::Result<(TcpStream, thread::JoinHandle<io::Result<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (mut conn, _) = accept_own(&listener, &client)?;
    let timeout = Some(Duration::from_secs(10));
    client.set_read_timeout(timeout)?;
    conn.set_read_timeout(timeout)?;
    let server = thread::Builder::new()
        .spawn(move || {
            let mut request = [0; HEADER.len() + BODY.len()];
            loop {
                match conn.read_exact(&mut request) {
                    Ok(()) => conn.write_all(b"ok")?,
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                }
            }
        })
        .map_err(|err| {
            io::Error::new(err.kind(), format!("cannot start a thread: {err}"))
        })?;
    Ok((client, server))
}
// ANCHOR_END: run

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

/// Gives SIGPIPE back its default action: this is a filter, which ends
/// quietly, like `cat`, when its output goes away.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Reads `[--rounds N]`.
fn parse_args() -> Result<usize, lexopt::Error> {
    use lexopt::prelude::*;
    let mut rounds = 20;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("rounds") => rounds = args.value()?.parse()?,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if !(1..=1000).contains(&rounds) {
        return Err("--rounds must be from 1 to 1000".into());
    }
    Ok(rounds)
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
