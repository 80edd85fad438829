// ANCHOR: whole
// Listing 19-2: what a writer gets when nobody can read any more. Three
// writers write into a pipe whose every read end is closed: this process,
// with SIGPIPE ignored as the Rust runtime leaves it; a forked child that
// first gives SIGPIPE back its default action; and `yes`, started with
// `std::process::Command`.
//
// The program keeps SIGPIPE ignored for itself, so it writes its own
// report with `writeln!` and ends quietly if that report has no reader.

use std::error::Error;
use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, ChildStdout, Command, ExitCode, ExitStatus, Stdio};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::{ForkResult, Pid, fork, pipe2, write};

const USAGE: &str = "usage: pipe-epipe";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-epipe: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: ignored
fn run() -> Result<(), Box<dyn Error>> {
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`,
    // and our child and `yes` would inherit it: blocked, the signal
    // kills neither. Ignored here, unblocked it changes nothing for us.
    SigSet::from(Signal::SIGPIPE).thread_unblock()?;
    // Before any child starts: each must stay a zombie until reaped.
    let chld = keep_own_zombies()?;
    let mut out = io::stdout();

    // 1. SIGPIPE ignored, as the Rust runtime set it before `main`: the
    // write fails with the error EPIPE.
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    drop(read_end); // Nobody can read now.
    match write(&write_end, b"Spam\n") {
        Ok(n) => writeln!(out, "SIGPIPE ignored: wrote {n} bytes")?,
        Err(err) => writeln!(out, "SIGPIPE ignored: write failed: {err}")?,
    }
    // ANCHOR_END: ignored

    // ANCHOR: default
    // 2. The default action, restored in a forked child: the write kills
    // the child before `write` can return.
    out.flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            // SAFETY: the default action runs no code of ours.
            let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
            let _ = write(&write_end, b"Spam\n"); // This kills the child.
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(1) }
        }
        ForkResult::Parent { child } => {
            // Through `reap_raw`, below: nix's `waitpid` fails for a
            // child killed by a signal it has no name for.
            let status = reap_raw(child)?;
            match status.signal().map(Signal::try_from) {
                Some(Ok(signal)) => writeln!(
                    out,
                    "SIGPIPE at its default action: the child was killed \
                     by {signal}"
                )?,
                _ => writeln!(out, "the child ended with {status}")?,
            }
        }
    }
    // ANCHOR_END: default

    // ANCHOR: command
    // 3. A program started by `Command`: it reads as much as it likes of
    // `yes`, then drops the read end, the only one.
    let mut yes = Command::new("yes");
    yes.stdout(Stdio::piped());
    sigchld_as_found(&mut yes, chld);
    let mut yes = yes
        .spawn()
        .map_err(|err| format!("cannot start yes: {err}"))?;
    let reader = BufReader::new(yes.stdout.take().ok_or("no stdout")?);
    // Whatever fails from here on, `yes` is ended and reaped before we
    // return: left alone it would outlive us, for someone else to reap.
    let ignored = match first_line_then_setting(reader, yes.id()) {
        Ok(ignored) => ignored,
        Err(err) => {
            let _ = yes.kill();
            let _ = yes.wait();
            return Err(err);
        }
    };
    let status = yes.wait()?;
    let ending = match status.signal().map(Signal::try_from) {
        Some(Ok(signal)) => format!("was killed by {signal}"),
        _ => format!("ended with {status}"),
    };
    let setting = if ignored { "ignored" } else { "its default" };
    writeln!(
        out,
        "yes, started by Command with SIGPIPE at {setting}: it {ending}"
    )?;
    Ok(())
}

/// Reads `yes`'s first line, then says whether `yes` ignores SIGPIPE;
/// drops the read end, the only one, on its way out.
fn first_line_then_setting(
    mut reader: BufReader<ChildStdout>,
    pid: u32,
) -> Result<bool, Box<dyn Error>> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    ignores_sigpipe(pid)
}
// ANCHOR_END: command

/// Whether process `pid` ignores SIGPIPE, signal 13: bit 12 of the
/// `SigIgn` mask in /proc/PID/status (Linux), which has bit n-1 for
/// signal n.
fn ignores_sigpipe(pid: u32) -> Result<bool, Box<dyn Error>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or("no SigIgn line")?;
    Ok(mask & (1 << (Signal::SIGPIPE as i32 - 1)) != 0)
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

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
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

// ANCHOR: sigchld
/// Gives SIGCHLD its default action back, and returns the action found.
/// A parent that left it ignored passed that on through `exec` (Chapter
/// 24), and then the kernel reaps our children itself: every wait fails
/// with ECHILD, and a child's pid, or its group's id, may go to a stranger
/// as soon as the child exits, while we may still signal it.
fn keep_own_zombies() -> nix::Result<SigAction> {
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    unsafe { sigaction(Signal::SIGCHLD, &default) }
}

/// Gives the child that `command` starts SIGCHLD's action as we `found`
/// it, ignored perhaps: `keep_own_zombies` changed it for our own
/// waits, not for the programs we start (Chapter 12).
fn sigchld_as_found(command: &mut Command, found: SigAction) {
    // SAFETY: between fork and exec the child makes one system call,
    // sigaction, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            sigaction(Signal::SIGCHLD, &found)?;
            Ok(())
        })
    };
}
// ANCHOR_END: sigchld
// ANCHOR_END: whole
