// ANCHOR: whole
// Listing 20-1: several writers, one pipe. Each forked writer makes
// `--writes` writes of `--size` bytes into the same pipe, every byte of
// writer 0 an `a`, of writer 1 a `b`, and so on; the parent reads it all
// and counts the bytes of each writer, and the writes that another
// writer's bytes cut, reading `--read-size` bytes at a time (64 KiB, the
// whole pipe, unless told otherwise). Writes of at most PIPE_BUF bytes are
// never cut; larger ones may be.

use std::error::Error;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{self, ExitCode, ExitStatus};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::{self, PIPE_BUF};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

const USAGE: &str = "usage: pipe-writers [--writers N] [--writes N] \
                     [--size BYTES] [--read-size BYTES]";

struct Args {
    writers: u8,
    writes: usize,
    size: usize,
    read_size: usize,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-writers: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    // Restored before `fork`: a writer whose reader has died is killed
    // by its next write.
    restore_sigpipe()?;
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    keep_zombies()?;
    writeln!(
        io::stdout(),
        "{} writers, {} writes of {} bytes each; PIPE_BUF is {PIPE_BUF}",
        args.writers,
        args.writes,
        args.size
    )?;
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    let mut children = Vec::new();
    for writer in 0..args.writers {
        io::stdout().flush()?;
        // SAFETY: no other thread exists, so no lock can be held by one.
        let forked = match unsafe { fork() } {
            Ok(forked) => forked,
            Err(err) => {
                // Out of processes (`ulimit -u`), say. The writers already
                // started must not be left behind: with no reader, their
                // next write kills them (SIGPIPE); reap them, then say why.
                drop((read_end, write_end));
                for &child in &children {
                    let _ = reap_raw(child);
                }
                return Err(
                    format!("cannot start writer {writer}: {err}").into()
                );
            }
        };
        match forked {
            ForkResult::Child => {
                drop(read_end);
                let letter = b'a' + writer;
                let status = match write_blocks(write_end, letter, &args) {
                    Ok(()) => 0,
                    Err(err) => {
                        // The whole line in one `write`: writers that fail
                        // together share stderr, and must not mix lines.
                        let line = format!("pipe-writers child: {err}\n");
                        let _ = io::stderr().write_all(line.as_bytes());
                        1
                    }
                };
                // SAFETY: `_exit` only ends the process.
                unsafe { nix::libc::_exit(status) }
            }
            ForkResult::Parent { child } => children.push(child),
        }
    }
    // The writers hold the only write ends now: once they have all
    // exited, the parent sees the end of the stream.
    drop(write_end);
    // Reaped even if reading failed: the read end is closed by then, so
    // a writer still writing dies at its next write.
    let counts = read_and_count(File::from(read_end), &args);
    let reaped = reap(&children);
    let counts = counts?;
    reaped?;
    counts.report(&args)?;
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: write
/// Makes `writes` writes of `size` bytes, every byte `letter`. For a
/// blocking pipe, `write_all` is one `write` call per block, unless a
/// signal interrupts it; none does here.
fn write_blocks(
    write_end: std::os::fd::OwnedFd,
    letter: u8,
    args: &Args,
) -> io::Result<()> {
    let mut pipe = File::from(write_end);
    let block = vec![letter; args.size];
    for _ in 0..args.writes {
        pipe.write_all(&block)?;
    }
    Ok(())
}
// ANCHOR_END: write

// ANCHOR: count
/// What the reader saw.
struct Counts {
    /// Bytes from each writer.
    bytes: Vec<usize>,
    /// Writes that another writer's bytes cut, each counted once.
    cut: usize,
}

/// Reads the stream to its end. Where the writer changes, the one before
/// was cut in the middle of a write if its byte count so far is not a
/// whole number of writes; a write cut twice or more counts once.
fn read_and_count(mut pipe: File, args: &Args) -> io::Result<Counts> {
    let writers = usize::from(args.writers);
    let mut counts = Counts {
        bytes: vec![0; writers],
        cut: 0,
    };
    // The write of each writer counted last as cut, by its number.
    let mut last_cut: Vec<Option<usize>> = vec![None; writers];
    let mut previous = None;
    let mut buf = vec![0; args.read_size];
    loop {
        let n = pipe.read(&mut buf)?;
        if n == 0 {
            return Ok(counts);
        }
        for &byte in &buf[..n] {
            let writer = usize::from(byte.wrapping_sub(b'a'));
            if writer >= writers {
                return Err(io::Error::other(format!("stray byte {byte}")));
            }
            if let Some(before) = previous.filter(|&w| w != writer) {
                let done = counts.bytes[before];
                let write = done / args.size;
                if done % args.size != 0 && last_cut[before] != Some(write) {
                    counts.cut += 1;
                    last_cut[before] = Some(write);
                }
            }
            counts.bytes[writer] += 1;
            previous = Some(writer);
        }
    }
}

impl Counts {
    fn report(&self, args: &Args) -> io::Result<()> {
        let total: usize = self.bytes.iter().sum();
        let each = args.writes * args.size;
        if self.bytes.iter().all(|&n| n == each) {
            writeln!(
                io::stdout(),
                "Read {total} bytes: {each} from each writer"
            )?;
        } else {
            writeln!(
                io::stdout(),
                "Read {total} bytes: {:?} from the writers",
                self.bytes
            )?;
        }
        let writes = args.writes * usize::from(args.writers);
        writeln!(
            io::stdout(),
            "Writes cut by other writers: {} of {writes}",
            self.cut
        )
    }
}
// ANCHOR_END: count

/// Waits for every writer, and fails if one failed: only once all are
/// reaped, so that one failure leaves no other writer a zombie.
fn reap(children: &[Pid]) -> Result<(), Box<dyn Error>> {
    let mut failed = None;
    for &child in children {
        let failure = match reap_raw(child) {
            Ok(status) if status.success() => continue,
            Ok(status) => format!("a writer failed: {status}"),
            Err(err) => format!("cannot wait for a writer: {err}"),
        };
        failed.get_or_insert(failure);
    }
    match failed {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
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
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on its next write.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Reads `[--writers N] [--writes N] [--size BYTES] [--read-size BYTES]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        writers: 4,
        writes: 1000,
        size: PIPE_BUF,
        read_size: 64 * 1024,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("writers") => args.writers = parser.value()?.parse()?,
            Long("writes") => args.writes = parser.value()?.parse()?,
            Long("size") => args.size = parser.value()?.parse()?,
            Long("read-size") => args.read_size = parser.value()?.parse()?,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if !(1..=26).contains(&args.writers) {
        return Err("--writers must be 1 to 26".into());
    }
    if args.size == 0 || args.size > 1 << 24 {
        return Err("--size must be 1 to 16777216".into());
    }
    if args.read_size == 0 || args.read_size > 1 << 24 {
        return Err("--read-size must be 1 to 16777216".into());
    }
    if args.writes.checked_mul(args.size).is_none() {
        return Err("--writes times --size is too large".into());
    }
    Ok(args)
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
