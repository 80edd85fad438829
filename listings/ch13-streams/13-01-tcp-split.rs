// ANCHOR: whole
// Listing 13-1: a stream is not a message. One side of a TCP connection
// sends three messages with three writes; the other reads them the way
// Listing 3-2's server does, at most 1024 bytes per `read`, and finds
// two messages glued together in one read and the third cut in half.
//
// Nothing here depends on timing: the reader waits until the sender's
// FIN has arrived, so every byte is already queued when it reads, and
// what one `read` returns depends only on the size of its buffer.

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{self, ExitCode};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str = "usage: tcp-split";
/// What Listing 3-2's server reads at once.
const READ_SIZE: usize = 1024;
/// How long the reader waits for the sender's FIN.
const PATIENCE_MS: u16 = 10_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("tcp-split: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let messages = [b"one".to_vec(), b"two".to_vec(), vec![b'3'; 1200]];

    // Both ends in one thread: `connect` completes as soon as the
    // listening socket exists, before anybody calls `accept`.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut sender = TcpStream::connect(listener.local_addr()?)?;
    let (mut reader, _) = listener.accept()?;

    for message in &messages {
        sender.write_all(message)?;
    }
    sender.shutdown(Shutdown::Write)?;
    let sizes: Vec<_> = messages.iter().map(|m| m.len().to_string()).collect();
    writeln!(
        io::stdout(),
        "sent {} messages, one write each ({} bytes), then FIN",
        messages.len(),
        sizes.join(", ")
    )?;

    wait_for_fin(&reader)?;
    let mut buf = [0; READ_SIZE];
    let mut offset = 0;
    for number in 1.. {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            writeln!(
                io::stdout(),
                "read {number}: 0 bytes: the end of the stream"
            )?;
            break;
        }
        writeln!(
            io::stdout(),
            "read {number}: {n} bytes: {}",
            describe(&messages, offset, offset + n)
        )?;
        offset += n;
    }
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: wait
/// Waits until the peer's FIN has arrived. TCP delivers in order, so by
/// then every byte sent before it is in our receive queue. `POLLRDHUP`
/// (Linux) reports a peer that has shut down its sending side; nix 0.32
/// has no name for it, so it comes from libc.
fn wait_for_fin(sock: &TcpStream) -> Result<(), Box<dyn Error>> {
    let rdhup = PollFlags::from_bits_retain(nix::libc::POLLRDHUP);
    let mut fds = [PollFd::new(sock.as_fd(), rdhup)];
    if poll(&mut fds, PollTimeout::from(PATIENCE_MS))? == 0 {
        return Err("the sender's FIN never came".into());
    }
    Ok(())
}
// ANCHOR_END: wait

/// Says which messages the bytes `start..end` of the stream belong to.
fn describe(messages: &[Vec<u8>], start: usize, end: usize) -> String {
    let mut parts = Vec::new();
    let mut first = 0;
    for (i, message) in messages.iter().enumerate() {
        let last = first + message.len();
        let (from, to) = (start.max(first), end.min(last));
        if from < to {
            let part = if from == first && to == last {
                "all".to_string()
            } else if from == first {
                format!("the first {}", to - from)
            } else if to == last {
                format!("the last {}", to - from)
            } else {
                format!("{} from the middle", to - from)
            };
            parts.push(format!("{part} of message {}", i + 1));
        }
        first = last;
    }
    parts.join(", ")
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
