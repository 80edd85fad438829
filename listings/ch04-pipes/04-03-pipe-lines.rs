// ANCHOR: whole
// Listing 4-3: Lutz's `pipe2.py`, ported to Rust: the fix for Listing 4-1.
// Each message ends with a newline, each process closes the end of the
// pipe it does not use, and the parent reads whole lines. `--count N`
// makes the child stop after N messages, and the parent then sees the
// end of the stream by itself.

use std::env;
use std::error::Error;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, getpid, pipe};

const USAGE: &str = "usage: pipe-lines [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pipe-lines: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let count = parse_args()?;
    let (pipe_in, pipe_out) = pipe()?;
    // SAFETY: no other thread exists, so the child may do anything.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(pipe_in); // The child only writes.
            let status = match child(File::from(pipe_out), count) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("pipe-lines child: {err}");
                    1
                }
            };
            process::exit(status);
        }
        ForkResult::Parent { child } => {
            drop(pipe_out); // The parent only reads.
            parent(File::from(pipe_in))?;
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => Err(format!("child ended badly: {status:?}").into()),
            }
        }
    }
}
// ANCHOR_END: run

// ANCHOR: child
fn child(mut pipe_out: File, count: Option<u64>) -> std::io::Result<()> {
    let mut zzz = 0;
    let mut sent = 0;
    while count.is_none_or(|n| sent < n) {
        thread::sleep(Duration::from_secs(zzz));
        // One `write` per message, newline included.
        pipe_out.write_all(format!("Spam {zzz:03}\n").as_bytes())?;
        zzz = (zzz + 1) % 5;
        sent += 1;
    }
    Ok(()) // Dropping `pipe_out` closes the last write end.
}
// ANCHOR_END: child

// ANCHOR: parent
fn parent(pipe_in: File) -> std::io::Result<()> {
    // `lines` ends when every write end is closed: the child's exit.
    for line in BufReader::new(pipe_in).lines() {
        let line = line?;
        println!("Parent {} got [{line}] at {}", getpid(), unix_time());
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
