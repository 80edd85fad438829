// ANCHOR: whole
// Listing 18-1: what a name resolves to, and connecting to each address in
// turn. It prints every address `getaddrinfo` returns for HOST:PORT, in
// the order it returns them, then tries each, with a timeout, until one
// accepts, and says what happened to every attempt.
//
// `net-resolve HOST:PORT [--timeout MS]`

use std::error::Error;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{self, ExitCode};
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str = "usage: net-resolve HOST:PORT [--timeout MS]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("net-resolve: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let (spec, timeout) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // `to_socket_addrs` calls getaddrinfo, which may read /etc/hosts, ask
    // a DNS server, or both; it blocks, with no timeout of ours.
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|err| {
            format!("cannot resolve '{}': {err}", spec.escape_debug())
        })?
        .collect();
    writeln!(io::stdout(), "{spec} resolves to:")?;
    for addr in &addrs {
        writeln!(io::stdout(), "  {addr}")?;
    }
    match connect_to_any(&addrs, timeout)? {
        Some((addr, sock)) => {
            writeln!(
                io::stdout(),
                "connected to {addr} from {}",
                sock.local_addr()?
            )?;
            Ok(())
        }
        None => Err(format!("no address of '{spec}' accepted").into()),
    }
}

/// Tries each address in order, each for at most `timeout`, and returns
/// the first connection made. Reports every failure on the way.
fn connect_to_any(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> io::Result<Option<(SocketAddr, TcpStream)>> {
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(sock) => return Ok(Some((*addr, sock))),
            Err(err) => writeln!(io::stdout(), "{addr}: {err}")?,
        }
    }
    Ok(None)
}
// ANCHOR_END: run

/// Gives SIGPIPE back its default action: this is a filter, which ends
/// quietly, like `cat`, when its output goes away.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Reads `HOST:PORT [--timeout MS]`.
fn parse_args() -> Result<(String, Duration), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut spec, mut timeout) = (None, 2000);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("timeout") => timeout = args.value()?.parse()?,
            Value(value) if spec.is_none() => spec = Some(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if !(1..=60_000).contains(&timeout) {
        return Err("--timeout must be from 1 to 60000 ms".into());
    }
    let spec = spec.ok_or("which HOST:PORT?")?;
    Ok((spec, Duration::from_millis(timeout)))
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
