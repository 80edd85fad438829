// ANCHOR: whole
// Listing 27-5: a yardstick. Copies a buffer of SIZE bytes into another,
// over and over, until BYTES have been copied, and prints the rate: how
// fast this machine copies memory in user space. It is no limit for a
// pipe, which copies with the kernel's own routines and does much besides,
// or for `splice`, which copies nothing. A buffer that fits in the CPU's
// caches (64 KiB, the chunk of Listing 27-2) gives the fastest a copy can
// be; one far larger than the caches (64 MiB or more) gives the speed of
// main memory.

use std::error::Error;
use std::hint::black_box;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::time::Instant;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};

const USAGE: &str = "usage: bench-memcpy [--size N] [--bytes N]  \
                     (N: bytes, or with K, M or G for KiB, MiB, GiB)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("bench-memcpy: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let (size, bytes) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Both buffers hold real data: every page is touched before the clock
    // starts.
    // Memory the system cannot give is an error, not an abort.
    let mut from: Vec<u8> = Vec::new();
    from.try_reserve_exact(size)?;
    from.extend((0..size).map(|i| (i % 251) as u8));
    let mut to: Vec<u8> = Vec::new();
    to.try_reserve_exact(size)?;
    to.resize(size, 1);
    let copies = bytes.div_ceil(size as u64);
    let start = Instant::now();
    for _ in 0..copies {
        // `copy_from_slice` is a call to the C library's `memcpy`.
        // `black_box` keeps the compiler from skipping copies whose
        // result nobody reads.
        black_box(&mut to).copy_from_slice(black_box(&from));
    }
    let elapsed = start.elapsed();
    let copied = copies * size as u64;
    writeln!(
        io::stdout(),
        "memcpy of {size}-byte buffers: {copied} bytes; measured: {:.6} s, \
         {:.3} GiB/s",
        elapsed.as_secs_f64(),
        copied as f64 / f64::from(1 << 30) / elapsed.as_secs_f64(),
    )?;
    Ok(())
}
// ANCHOR_END: run

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on the next write.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// The largest buffer: 1 GiB.
const MAX_SIZE: usize = 1 << 30;

/// Reads `[--size N] [--bytes N]`: 16 GiB through 64 KiB by default.
fn parse_args() -> Result<(usize, u64), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut size, mut bytes) = (64 << 10, 16 << 30);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("size") => {
                size = args.value()?.parse_with(|text| {
                    usize::try_from(parse_size(text)?)
                        .map_err(|e| e.to_string())
                })?;
            }
            Long("bytes") => bytes = args.value()?.parse_with(parse_size)?,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if size == 0 || bytes == 0 {
        return Err("--size and --bytes must be at least 1".into());
    }
    // Two buffers of this size are allocated.
    if size > MAX_SIZE {
        return Err("--size must be from 1 to 1G".into());
    }
    Ok((size, bytes))
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

/// `65536`, `64K`, `1M`, `1G`: a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'K')) => (&text[..at], 10),
        Some((at, 'M')) => (&text[..at], 20),
        Some((at, 'G')) => (&text[..at], 30),
        _ => (text, 0),
    };
    let number: u64 = digits.parse().map_err(|e| format!("{e}"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}
// ANCHOR_END: whole
