// ANCHOR: whole
// Listing 13-4: how a TCP connection ends badly, and what each side sees.
// Three short scenes on loopback, each with a fresh connection:
//
// 1. The server closes with SO_LINGER set to zero seconds, which makes
//    the kernel reset the connection (RST) instead of ending it (FIN).
// 2. The server closes normally, and the client goes on writing; the
//    reset that comes after the FIN reads as the end of the stream.
// 3. The same as 2, but a child process writes through a `File`, which
//    uses write(2) and so has no MSG_NOSIGNAL to protect it.
//
// Every wait for the peer's packets is a `read` or a `poll` with a
// deadline, never a sleep: the output is the same on every run.

use std::error::Error;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{self, ExitCode};
use std::time::Duration;

use nix::libc::linger;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

const USAGE: &str = "usage: tcp-reset";
/// How long to wait for a packet that is certain to come.
const PATIENCE_MS: u16 = 10_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("tcp-reset: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let listener = TcpListener::bind("127.0.0.1:0")?;

    writeln!(
        io::stdout(),
        "1. The server closes with SO_LINGER 0: a reset, not a FIN"
    )?;
    let (mut client, server) = connected(&listener)?;
    let abort = linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&server, sockopt::Linger, &abort)?;
    drop(server);
    report("client read", client.read(&mut [0; 64]))?;
    report("client read", client.read(&mut [0; 64]))?;
    report("client write", client.write(b"hello"))?;

    writeln!(
        io::stdout(),
        "2. The server closes normally; the client writes anyway"
    )?;
    let (mut client, server) = connected(&listener)?;
    drop(server);
    report("client write", client.write(b"hello"))?;
    // The server's kernel answers those bytes with RST, since no socket
    // is left to read them. Wait for it.
    wait_for_hangup(&client)?;
    // The FIN came before the reset: `read` says the stream has ended,
    // and the reset's error waits in SO_ERROR.
    report("client read", client.read(&mut [0; 64]))?;
    let pending = client.take_error()?;
    let pending = pending.map_or("none".to_string(), |err| err.to_string());
    writeln!(io::stdout(), "   client SO_ERROR: {pending}")?;
    report("client write", client.write(b"hello"))?;

    writeln!(
        io::stdout(),
        "3. The same, written by a child through a File (write(2))"
    )?;
    let (client, server) = connected(&listener)?;
    drop(server);
    io::stdout().flush()?;
    // SAFETY: this program starts no threads, so no lock can be held.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SIGPIPE's action is the default here: see `run`'s first
            // line. A child inherits it.
            let status = match write_twice(client) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => match waitpid(child, None)? {
            WaitStatus::Signaled(_, signal, _) => {
                writeln!(
                    io::stdout(),
                    "   the child was killed by {signal:?}"
                )?;
            }
            status => writeln!(io::stdout(), "   the child ended: {status:?}")?,
        },
    }
    Ok(())
}

/// In the child: the first write is accepted, the peer's kernel resets
/// the connection, and the second write raises SIGPIPE.
fn write_twice(client: TcpStream) -> Result<(), Box<dyn Error>> {
    let mut file = File::from(OwnedFd::from(client));
    file.write_all(b"hello")?;
    wait_for_hangup(&file)?;
    file.write_all(b"hello")?;
    Ok(())
}
// ANCHOR_END: run

/// A new connection through `listener`: (client end, server end). The
/// client's reads wait PATIENCE_MS at most, then fail with `WouldBlock`.
fn connected(listener: &TcpListener) -> io::Result<(TcpStream, TcpStream)> {
    let client = TcpStream::connect(listener.local_addr()?)?;
    let patience = Duration::from_millis(PATIENCE_MS.into());
    client.set_read_timeout(Some(patience))?;
    let (server, _) = listener.accept()?;
    Ok((client, server))
}

/// Waits until the connection is dead: `poll` reports `POLLHUP` once the
/// kernel has received the peer's RST.
fn wait_for_hangup(sock: &impl AsFd) -> Result<(), Box<dyn Error>> {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::empty())];
    loop {
        if poll(&mut fds, PollTimeout::from(PATIENCE_MS))? == 0 {
            return Err("the reset never came".into());
        }
        let events = fds[0].revents().unwrap_or(PollFlags::empty());
        if events.contains(PollFlags::POLLHUP) {
            return Ok(());
        }
    }
}

/// Prints what one call returned.
fn report(what: &str, result: io::Result<usize>) -> io::Result<()> {
    match result {
        Ok(n) => writeln!(io::stdout(), "   {what}: {n} bytes"),
        Err(err) => writeln!(io::stdout(), "   {what}: {err}"),
    }
}

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
