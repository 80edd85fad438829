// ANCHOR: whole
// Listing 4-1: Lutz's `pipe1.py`, ported to Rust: a forked child writes
// `Spam 000` to `Spam 004` into a pipe, over and over, sleeping 0 to 4
// seconds before each write; the parent reads up to 32 bytes at a time
// and reports what it got. `--count N` stops after N messages.
//
// Like the original, neither process closes the end of the pipe it does
// not use. Listing 4-3 shows why it should.

use std::env;
use std::error::Error;
use std::os::fd::OwnedFd;
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, getpid, pipe, read, write};

const USAGE: &str = "usage: pipe-spam [--count N]";
/// Every message is `Spam NNN`: eight bytes, and no separator.
const MESSAGE_LEN: u64 = 8;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pipe-spam: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let count = parse_args()?;
    let (pipe_in, pipe_out) = pipe()?;
    // SAFETY: the program has started no threads, so the child is an
    // exact copy of a single-threaded process and may do anything.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let status = match child(&pipe_out, count) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("pipe-spam child: {err}");
                    1
                }
            };
            process::exit(status);
        }
        ForkResult::Parent { child } => {
            parent(&pipe_in, count)?;
            // Only reached with --count: reap the child and check it.
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => Err(format!("child ended badly: {status:?}").into()),
            }
        }
    }
}
// ANCHOR_END: run

// ANCHOR: child
fn child(pipe_out: &OwnedFd, count: Option<u64>) -> nix::Result<()> {
    let mut zzz = 0;
    let mut sent = 0;
    while count.is_none_or(|n| sent < n) {
        thread::sleep(Duration::from_secs(zzz));
        let msg = format!("Spam {zzz:03}");
        // A pipe write this small is atomic: it never goes in pieces.
        write(pipe_out, msg.as_bytes())?;
        zzz = (zzz + 1) % 5;
        sent += 1;
    }
    Ok(())
}
// ANCHOR_END: child

// ANCHOR: parent
fn parent(pipe_in: &OwnedFd, count: Option<u64>) -> Result<(), Box<dyn Error>> {
    // The parent holds the write end too, so `read` will never report the
    // end of the stream: with --count we stop after the bytes we expect.
    let expected = count.map(|n| n * MESSAGE_LEN);
    let mut received = 0;
    while expected.is_none_or(|total| received < total) {
        let mut line = [0; 32];
        let n = read(pipe_in, &mut line)?;
        let text = String::from_utf8_lossy(&line[..n]);
        println!("Parent {} got [{text}] at {}", getpid(), unix_time());
        received += n as u64;
    }
    Ok(())
}
// ANCHOR_END: parent

/// Seconds since the Unix epoch, like Python's `time.time()`.
fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |t| t.as_secs_f64())
}

/// Reads `[--count N]` from the command line.
fn parse_args() -> Result<Option<u64>, String> {
    let mut args = env::args().skip(1);
    let mut count = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => count = Some(parse_count(args.next())?),
            _ => return Err(format!("unexpected argument '{arg}'; {USAGE}")),
        }
    }
    Ok(count)
}

fn parse_count(value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or(format!("--count needs a number; {USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("--count needs a whole number, not '{value}'"))
}
// ANCHOR_END: whole
