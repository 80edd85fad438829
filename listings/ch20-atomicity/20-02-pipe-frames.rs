// ANCHOR: whole
// Listing 20-2: two ways to mark where a message ends in a byte stream. A
// forked child sends four messages through a pipe, one of them holding a
// newline and one larger than the pipe; the parent reads them back and
// prints what it got.
//
// - `lines`: each message ends with a newline;
// - `length`: each message follows its length, as four bytes;
// - `cut`: like `length`, but the child dies half-way through its last
//   message, and the reader must notice;
// - `cut-line`: like `lines`, but the child dies half-way through its
//   last line;
// - `huge`: like `length`, but the child then sends a length of 4 GiB,
//   which the reader must refuse before allocating anything.

use std::error::Error;
use std::fs::File;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{self, ExitCode, ExitStatus};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

const USAGE: &str = "usage: pipe-frames lines|length|cut|cut-line|huge";
/// The largest message the reader accepts: a corrupt or hostile length
/// must not make it allocate gigabytes.
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq)]
enum Framing {
    Lines,
    Length,
    Cut,
    CutLine,
    Huge,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output any more: the end, once the child is
        // reaped (`run` waits for it first).
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-frames: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// What the child sends: a short message, one with a newline inside, an
/// empty one, and one larger than a pipe holds.
fn messages() -> Vec<Vec<u8>> {
    vec![
        b"Spam 000".to_vec(),
        b"two\nlines".to_vec(),
        Vec::new(),
        vec![b'x'; 100_000],
    ]
}

fn run() -> Result<(), Box<dyn Error>> {
    // SIGPIPE stays ignored, as Rust leaves it: a parent killed by it
    // would leave its child unreaped. A closed stdout is an error that
    // `run` returns once the child is reaped; `main` then ends quietly,
    // with status 0 and no message.
    let framing = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    keep_zombies()?;
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            drop(read_end);
            // A child whose reader is gone dies quietly of SIGPIPE.
            let _ = restore_sigpipe();
            let status = match send(write_end, framing) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("pipe-frames child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let received = receive(File::from(read_end), framing);
            let status = reap_raw(child)?;
            // Our own failure first: a parent that stopped reading, its
            // output full, killed the child with SIGPIPE.
            let received = received?;
            if !status.success() {
                return Err(format!("the child failed: {status}").into());
            }
            writeln!(
                io::stdout(),
                "Sent {} messages, received {received}",
                messages().len()
            )?;
            Ok(())
        }
    }
}

// ANCHOR: send
/// Sends every message with one `write_all`, its frame included: a frame
/// of at most PIPE_BUF bytes then goes into the pipe in one piece, even
/// with other writers.
fn send(write_end: OwnedFd, framing: Framing) -> io::Result<()> {
    let mut pipe = File::from(write_end);
    for message in messages() {
        let frame = match framing {
            Framing::Lines | Framing::CutLine => [&message[..], b"\n"].concat(),
            Framing::Length | Framing::Cut | Framing::Huge => {
                let len = u32::try_from(message.len())
                    .map_err(|_| io::Error::other("message too long"))?;
                [&len.to_be_bytes()[..], &message].concat()
            }
        };
        pipe.write_all(&frame)?;
    }
    if framing == Framing::Cut {
        // A length that promises 9 bytes, then 3 of them, then exit.
        pipe.write_all(&[0, 0, 0, 9, b'S', b'p', b'a'])?;
    }
    if framing == Framing::CutLine {
        // The first 3 bytes of a line, without its newline, then exit.
        pipe.write_all(b"Spa")?;
    }
    if framing == Framing::Huge {
        // The largest length four bytes can hold, and nothing after it.
        pipe.write_all(&u32::MAX.to_be_bytes())?;
    }
    Ok(())
}
// ANCHOR_END: send

// ANCHOR: receive
/// Prints every message until the end of the stream; returns how many.
fn receive(pipe: File, framing: Framing) -> io::Result<usize> {
    let mut reader = BufReader::new(pipe);
    let mut count = 0;
    loop {
        let message = match framing {
            Framing::Lines | Framing::CutLine => read_line_frame(&mut reader)?,
            Framing::Length | Framing::Cut | Framing::Huge => {
                read_frame(&mut reader)?
            }
        };
        let Some(message) = message else {
            return Ok(count);
        };
        count += 1;
        let shown = String::from_utf8_lossy(&message[..message.len().min(12)]);
        let more = if message.len() > 12 { "..." } else { "" };
        writeln!(io::stdout(), "Got {} bytes: {shown:?}{more}", message.len())?;
    }
}

/// One message up to a newline, which is not part of it; `None` at the
/// end of the stream.
fn read_line_frame(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(cut_short(line.len(), "a line"));
    }
    line.pop();
    Ok(Some(line))
}

/// One message after its four-byte length; `None` if the stream ends
/// before the first byte of the length, an error if it ends after it.
fn read_frame(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0; 4];
    match read_full(reader, &mut len)? {
        0 => return Ok(None),
        4 => {}
        got => return Err(cut_short(got, "a length")),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        let why = format!("a message of {len} bytes is over the limit");
        return Err(io::Error::new(ErrorKind::InvalidData, why));
    }
    let mut message = vec![0; len];
    let got = read_full(reader, &mut message)?;
    if got < len {
        return Err(cut_short(got, &format!("a message of {len} bytes")));
    }
    Ok(Some(message))
}

/// Reads until `buf` is full or the stream ends, however many reads that
/// takes; returns how many bytes it got. (`read_exact` does the same, but
/// cannot say how much it got before the end.)
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(got)
}

fn cut_short(got: usize, what: &str) -> io::Error {
    let why = format!("the stream ended after {got} bytes of {what}");
    io::Error::new(ErrorKind::UnexpectedEof, why)
}
// ANCHOR_END: receive

/// True if `err` says that the reader of our output has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Reaps `child` with `waitpid`, which blocks until it has ended, and
/// returns how it ended, whatever the signal: raw, into std's
/// `ExitStatus`. Not nix's `waitpid`: nix 0.32 turns a status into a
/// `Signal`, which names no real-time signal, so a child killed by
/// SIGRTMIN makes it fail with EINVAL, after the kernel reaped it.
fn reap_raw(child: Pid) -> nix::Result<ExitStatus> {
    let mut status = 0;
    // SAFETY: `waitpid` writes only `status`, which is ours.
    let done = unsafe { libc::waitpid(child.as_raw(), &mut status, 0) };
    Errno::result(done)?;
    Ok(ExitStatus::from_raw(status))
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`. Called in the child only, after `fork` (two system
/// calls, no allocation): a child whose reader, the parent, has gone
/// dies quietly at its next write, like `cat`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Reads `lines|length|cut|cut-line|huge` from the command line.
fn parse_args() -> Result<Framing, lexopt::Error> {
    use lexopt::prelude::*;
    let mut framing = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Value(value) if framing.is_none() => {
                framing = Some(match value.string()?.as_str() {
                    "lines" => Framing::Lines,
                    "length" => Framing::Length,
                    "cut" => Framing::Cut,
                    "cut-line" => Framing::CutLine,
                    "huge" => Framing::Huge,
                    other => {
                        return Err(format!(
                            "unknown framing '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                });
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    framing.ok_or_else(|| "which framing?".into())
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

/// Gives SIGCHLD its default action back. A parent that left it ignored
/// passed that on through `exec` (Chapter 24), and then the kernel reaps
/// our children itself: every wait fails with ECHILD, and a child's pid,
/// or its group's id, may go to a stranger as soon as the child exits,
/// while we may still signal it.
fn keep_zombies() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }?;
    Ok(())
}
// ANCHOR_END: whole
