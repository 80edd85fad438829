// ANCHOR: whole
// Listing 21-1: how much a pipe holds, and what a writer gets when it is
// full. The program asks the kernel for the pipe's size, fills the pipe
// with nonblocking writes until one fails with `WouldBlock`, and, with
// `--size BYTES`, asks for another size and fills it again. Last, it
// makes one blocking write into the full pipe, which waits until an
// alarm interrupts it a second later. Linux only: the sizes are Linux's
// `fcntl` operations F_GETPIPE_SZ and F_SETPIPE_SZ.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::process::{self, ExitCode};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc::c_int;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::{alarm, pipe2};

const USAGE: &str = "usage: pipe-capacity [--size BYTES]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pipe-capacity: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let size = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Both ends nonblocking: a write that would wait fails instead.
    let (read_end, write_end) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let (mut reader, mut writer) =
        (File::from(read_end), File::from(write_end));

    let capacity = fcntl(&writer, FcntlArg::F_GETPIPE_SZ)?;
    println!("A new pipe holds {capacity} bytes (F_GETPIPE_SZ)");
    fill(&mut writer)?;

    if let Some(size) = size {
        drain(&mut reader)?;
        let got = fcntl(&writer, FcntlArg::F_SETPIPE_SZ(size))
            .map_err(|err| format!("F_SETPIPE_SZ {size}: {err}"))?;
        println!("Asked for {size} bytes (F_SETPIPE_SZ): it now holds {got}");
        fill(&mut writer)?;
    }
    let max = fs::read_to_string("/proc/sys/fs/pipe-max-size")?;
    println!("Most a process may ask for: {}", max.trim());
    blocking_write(&writer)
}
// ANCHOR_END: run

// ANCHOR: fill
/// Writes 1024 bytes at a time until the pipe is full.
fn fill(writer: &mut File) -> io::Result<()> {
    let block = [b'x'; 1024];
    let mut total = 0;
    loop {
        match writer.write(&block) {
            Ok(n) => total += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                let kind = err.kind();
                println!("Filled with {total} bytes; then {kind:?}: {err}");
                return Ok(());
            }
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: fill

/// Reads until the pipe is empty.
fn drain(reader: &mut File) -> io::Result<()> {
    let mut buf = [0; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

// ANCHOR: block
/// Does nothing: its only job is to make the blocked `write` return.
extern "C" fn on_alarm(_: c_int) {}

/// One blocking write of one byte into the full pipe. An alarm comes a
/// second later; its handler is installed without SA_RESTART, so the
/// kernel does not restart the interrupted `write`, which fails with EINTR.
fn blocking_write(writer: &File) -> Result<(), Box<dyn Error>> {
    fcntl(writer, FcntlArg::F_SETFL(OFlag::empty()))?; // Blocking again.
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing at all, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGALRM, &action) }?;
    alarm::set(1);
    match nix::unistd::write(writer.as_fd(), b"x") {
        Err(err) => {
            println!("A blocking write waited for SIGALRM, then {err}");
            Ok(())
        }
        Ok(n) => Err(format!("a full pipe took {n} more bytes").into()),
    }
}
// ANCHOR_END: block

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on the next `println!`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// Reads `[--size BYTES]` from the command line.
fn parse_args() -> Result<Option<c_int>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut size = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("size") => {
                let bytes: u64 = args.value()?.parse()?;
                let bytes = c_int::try_from(bytes)
                    .map_err(|_| "--size is too large")?;
                size = Some(bytes);
            }
            Short('h') | Long("help") => {
                println!("{USAGE}");
                process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(size)
}
// ANCHOR_END: whole
