// ANCHOR: whole
// Listing 9-3: an orphan and its new parent. The parent forks a middle
// child, which forks a grandchild and exits at once. The grandchild is
// now an orphan, and the kernel gives it a new parent: the init process of
// its PID namespace, or, with `--subreaper`, the nearest ancestor that
// asked for orphans with `PR_SET_CHILD_SUBREAPER`, here the parent. The
// grandchild says who its parent is, before and after.

use std::error::Error;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{self, ExitCode};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, send, socketpair,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, pipe2};

const USAGE: &str = "usage: sig-orphan [--subreaper]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output: we left through `run`, which reaped
        // every child it started.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-orphan: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigchld()?;
    let subreaper = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    if subreaper {
        nix::sys::prctl::set_child_subreaper(true)?;
    }
    let (mut out, parent) = (io::stdout(), getpid());
    writeln!(out, "Parent: pid {parent}, subreaper: {subreaper}")?;
    // The parent writes to `ask` when the grandchild should look again;
    // the grandchild holds `done` open until it has finished. `ask` is a
    // socket, not a pipe: see `adopt`.
    let (ask_read, ask_write) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let (done_read, done_write) = pipe2(OFlag::O_CLOEXEC)?;
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    let middle = match unsafe { fork() }? {
        ForkResult::Child => {
            drop((ask_write, done_read));
            let status = match middle_child(ask_read, done_write) {
                Ok(()) => 0,
                // Nobody reads our output: end quietly, as `main` does.
                Err(err) if err.kind() == ErrorKind::BrokenPipe => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("sig-orphan middle child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((ask_read, done_write));
    let adopted = adopt(middle, ask_write, done_read, subreaper);
    if adopted.is_err() {
        // A step that failed (a line that stdout refused, say) leaves no
        // child behind: `ask` is closed by now, so the grandchild ends, and
        // every child left is reaped, an adopted grandchild included.
        while waitpid(Pid::from_raw(-1), None).is_ok() {}
    }
    adopted
}

/// The parent's part once the middle child exists: reaps it, has the
/// grandchild look again, and, as its subreaper, reaps it too.
fn adopt(
    middle: Pid,
    ask: OwnedFd,
    done: OwnedFd,
    subreaper: bool,
) -> Result<(), Box<dyn Error>> {
    let mut out = io::stdout();
    // Once the middle child is reaped, its exit is complete, and the
    // grandchild has been given its new parent.
    let status = describe(waitpid(middle, None)?);
    writeln!(out, "Parent: the middle child {status}")?;
    // The grandchild may be gone by now (killed, or never forked). A write
    // to a pipe would raise SIGPIPE, which ends a program that has its
    // default action; `send` with MSG_NOSIGNAL fails with EPIPE whatever
    // the action. Made a message, the error is not taken for our output
    // closing: `main` reports it.
    send(ask.as_raw_fd(), b"?", MsgFlags::MSG_NOSIGNAL)
        .map_err(|err| format!("cannot ask the grandchild to look: {err}"))?;
    drop(ask);
    let mut done = File::from(done);
    done.read_to_end(&mut Vec::new())?; // Until the grandchild is done.
    if subreaper {
        // It is our child now: ours to reap.
        let status = describe(waitpid(Pid::from_raw(-1), None)?);
        writeln!(out, "Parent: reaped the grandchild, which {status}")?;
    }
    Ok(())
}

/// Forks the grandchild, waits until it has looked at its parent, and
/// exits without waiting for it.
fn middle_child(ask: OwnedFd, done: OwnedFd) -> io::Result<()> {
    let (looked_read, looked_write) = pipe2(OFlag::O_CLOEXEC)?;
    io::stdout().flush()?;
    // SAFETY: the forking process has one thread, so no lock is held.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(looked_read);
            let status = match grandchild(ask, done, looked_write) {
                Ok(()) => 0,
                // Nobody reads our output: end quietly, as `main` does.
                Err(err) if err.kind() == ErrorKind::BrokenPipe => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("sig-orphan grandchild: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            drop(looked_write);
            File::from(looked_read).read_to_end(&mut Vec::new())?;
            writeln!(
                io::stdout(),
                "Middle child: pid {}, forked the grandchild, pid {child}; \
                 exiting",
                getpid()
            )?;
            Ok(())
        }
    }
}

fn grandchild(ask: OwnedFd, done: OwnedFd, looked: OwnedFd) -> io::Result<()> {
    writeln!(io::stdout(), "Grandchild: my parent is pid {}", getppid())?;
    drop(looked); // The middle child may exit now.
    // Wait until the parent asks; end of file if it died instead.
    let mut byte = [0u8; 1];
    if File::from(ask).read(&mut byte)? == 1 {
        writeln!(
            io::stdout(),
            "Grandchild: my parent is now pid {}",
            getppid()
        )?;
    }
    drop(done);
    Ok(())
}

/// "exited with status 0", "was killed by SIGKILL".
fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("was killed by {signal}"),
        other => format!("changed state: {other:?}"),
    }
}
// ANCHOR_END: run

/// True if `err` says that the reader of our output has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Gives SIGCHLD its default action back. A parent may have left it
/// ignored, which passes through `exec`; ignored, it makes the kernel
/// reap our children itself, and every `waitpid` fail with ECHILD.
fn restore_sigchld() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map(drop)
}

/// Reads `[--subreaper]` from the command line.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut subreaper = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("subreaper") => subreaper = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(subreaper)
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
