// ANCHOR: whole
// Listing 21-2: the deadlock of Listing 4-2, made to happen. A forked
// child writes `--bytes N` bytes into a pipe, `--write-size W` bytes at a
// time (default 4096), and exits; the parent waits for the child first
// and reads after, as Listing 4-2 does. Once N is more than the pipe
// holds, which depends on W, the child blocks in `write` and the parent
// in `waitpid`, each waiting for the other. An alarm ends the parent's wait
// after `--wait SECS` (default 2); the parent then reports, reads to
// unblock the child, and fails. `--read-first` reads while the child
// writes, and reaps it after: the fix.

use std::error::Error;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{self, ExitCode, ExitStatus};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::{self, c_int};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::{ForkResult, Pid, alarm, fork, pipe2};

const USAGE: &str = "usage: pipe-deadlock [--bytes N] [--write-size W] \
                     [--read-first] [--wait SECS]";
/// The largest write the child makes: 1 MiB.
const MAX_WRITE: usize = 1 << 20;

struct Args {
    bytes: usize,
    write_size: usize,
    read_first: bool,
    wait: u32,
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
            let line = format!("pipe-deadlock: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    // SIGPIPE stays ignored, as Rust leaves it: a parent killed by it
    // would leave its child unreaped. A closed stdout is an error that
    // `run` returns once the child is reaped; `main` then ends quietly,
    // with status 0 and no message.
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
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
            let status = match child(write_end, args.bytes, args.write_size) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("pipe-deadlock child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let result = parent(child, File::from(read_end), &args);
            if result.is_err() {
                // The pipe is closed by now, so a child still writing dies
                // at its next write; reap it, unless that is done (ECHILD).
                let _ = reap_raw(child);
            }
            result
        }
    }
}

/// Waits for the child and reads its output, in the order `args` asks.
fn parent(
    child: Pid,
    mut pipe: File,
    args: &Args,
) -> Result<(), Box<dyn Error>> {
    if args.read_first {
        // The fix: read everything while the child writes...
        let n = io::copy(&mut pipe, &mut io::sink())?;
        writeln!(io::stdout(), "Read {n} bytes")?;
        // ...and reap it once the stream has ended.
        let status = reap_raw(child)?;
        writeln!(io::stdout(), "The child {}", describe(status))?;
        return Ok(());
    }
    writeln!(
        io::stdout(),
        "Parent {} waits for its child (pid {child}) before reading",
        process::id()
    )?;
    io::stdout().flush()?;
    match wait_at_most(child, args.wait)? {
        Some(status) => {
            writeln!(io::stdout(), "The child {}", describe(status))?;
            let n = io::copy(&mut pipe, &mut io::sink())?;
            writeln!(io::stdout(), "Read {n} bytes")?;
            Ok(())
        }
        None => {
            let unread = unread_bytes(&pipe)?;
            writeln!(
                io::stdout(),
                "Gave up waiting: the child has not exited, and the pipe \
                 holds {unread} bytes"
            )?;
            // Reading is what unblocks the child.
            let n = io::copy(&mut pipe, &mut io::sink())?;
            let status = reap_raw(child)?;
            writeln!(
                io::stdout(),
                "Read {n} bytes; then the child {}",
                describe(status)
            )?;
            Err("waitpid before reading: a deadlock".into())
        }
    }
}

/// Writes `bytes` bytes, `write_size` at a time.
fn child(
    write_end: OwnedFd,
    bytes: usize,
    write_size: usize,
) -> io::Result<()> {
    let mut pipe = File::from(write_end);
    let block = vec![b'x'; write_size];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len());
        pipe.write_all(&block[..n])?;
        left -= n;
    }
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: bounded
/// Does nothing: its only job is to make the blocked `waitpid` return.
extern "C" fn on_alarm(_: c_int) {}

/// Waits for the child, for at most `secs` seconds: an alarm interrupts
/// `waitpid`, whose handler is installed without SA_RESTART, so the call
/// fails with EINTR instead of starting again. `None` if it did. The
/// action and the alarm that the program had before are put back, on
/// every path.
fn wait_at_most(child: Pid, secs: u32) -> nix::Result<Option<ExitStatus>> {
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing at all, which is async-signal-safe.
    let old_action = unsafe { sigaction(Signal::SIGALRM, &action) }?;
    let waited = wait_under_alarm(child, secs);
    // SAFETY: the action put back is the one that was there before.
    let restored = unsafe { sigaction(Signal::SIGALRM, &old_action) };
    let waited = waited?;
    restored?;
    Ok(waited)
}

/// `waitpid` under an alarm of `secs` seconds. The process has one alarm:
/// setting ours returns the seconds left of any it had, which is set again
/// afterwards, less the time waited; if it fell due meanwhile, it rings a
/// second later.
fn wait_under_alarm(child: Pid, secs: u32) -> nix::Result<Option<ExitStatus>> {
    // A parent that blocked SIGALRM passed its mask on through `exec`:
    // blocked, the alarm would only wait, and so would `waitpid`.
    SigSet::from(Signal::SIGALRM).thread_unblock()?;
    let start = Instant::now();
    let old_alarm = alarm::set(secs);
    let result = reap_raw(child);
    match old_alarm {
        Some(left) => {
            let waited = u32::try_from(start.elapsed().as_secs());
            let waited = waited.unwrap_or(u32::MAX);
            alarm::set(left.saturating_sub(waited).max(1));
        }
        None => {
            alarm::cancel();
        }
    }
    match result {
        Ok(status) => Ok(Some(status)),
        Err(Errno::EINTR) => Ok(None),
        Err(err) => Err(err),
    }
}

/// How many bytes wait in the pipe, unread: the `FIONREAD` ioctl.
fn unread_bytes(pipe: &File) -> nix::Result<c_int> {
    let mut n: c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer we pass.
    let res = unsafe {
        nix::libc::ioctl(pipe.as_raw_fd(), nix::libc::FIONREAD, &mut n)
    };
    Errno::result(res).map(|_| n)
}
// ANCHOR_END: bounded

/// True if `err` says that the reader of our output has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// How a child ended, in words. A real-time signal (SIGRTMIN and above)
/// has no name in nix: it goes by its number.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal().map(|n| (n, Signal::try_from(n))) {
        Some((_, Ok(signal))) => format!("was killed by {signal}"),
        Some((n, Err(_))) => format!("was killed by signal {n}"),
        None => format!("changed state: {status}"),
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

/// Reads `[--bytes N] [--write-size W] [--read-first] [--wait SECS]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        bytes: 100_000,
        write_size: 4096,
        read_first: false,
        wait: 2,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("bytes") => args.bytes = parser.value()?.parse()?,
            Long("write-size") => {
                args.write_size = parser.value()?.parse()?;
            }
            Long("read-first") => args.read_first = true,
            Long("wait") => args.wait = parser.value()?.parse()?,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if args.wait == 0 {
        return Err("--wait must be at least 1".into());
    }
    if !(1..=MAX_WRITE).contains(&args.write_size) {
        return Err(format!("--write-size must be 1 to {MAX_WRITE}").into());
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
