// ANCHOR: whole
// Listing 9-5: the two `sigaction` flags that exist for SIGCHLD alone, and
// SIGCHLD set to "ignore". For each, the parent forks a child and asks
// the kernel whether a SIGCHLD came, keeping SIGCHLD blocked so that it
// waits, pending, to be looked at:
//
//   default        a SIGCHLD when the child stops, continues, and exits
//   SA_NOCLDSTOP   one only when it exits
//   SA_NOCLDWAIT   the child leaves no zombie: `waitpid` fails with ECHILD
//   SIG_IGN        the same, and no SIGCHLD at all
//
// The child of the first two stops itself with SIGSTOP; continued, it
// says so through a pipe, and exits once the parent closes another. The
// others exit at once.

use std::error::Error;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{self, ExitCode};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::c_int;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, raise, sigaction,
    signal,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

const USAGE: &str = "usage: sig-chld-flags";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-chld-flags: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

extern "C" fn on_chld(_: c_int) {}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Blocked: a SIGCHLD the kernel sends waits, and `came` can ask.
    SigSet::from(Signal::SIGCHLD).thread_block()?;
    let handler = SigHandler::Handler(on_chld);
    for (name, disposition, flags) in [
        ("default", handler, SaFlags::empty()),
        ("SA_NOCLDSTOP", handler, SaFlags::SA_NOCLDSTOP),
        ("SA_NOCLDWAIT", handler, SaFlags::SA_NOCLDWAIT),
        ("SIG_IGN", SigHandler::SigIgn, SaFlags::empty()),
    ] {
        let action = SigAction::new(disposition, flags, SigSet::empty());
        // SAFETY: the handler does nothing at all.
        unsafe { sigaction(Signal::SIGCHLD, &action) }?;
        let report = if matches!(name, "default" | "SA_NOCLDSTOP") {
            stop_continue_exit()?
        } else {
            exit_unreaped()?
        };
        writeln!(io::stdout(), "{name:<13} {report}")?;
    }
    Ok(())
}

/// A child that stops and is continued, then exits: was each change
/// reported with a SIGCHLD?
fn stop_continue_exit() -> Result<String, Box<dyn Error>> {
    let (child, go, running) = fork_child(true)?;
    // Until the child is reaped, an error on the way kills and reaps it.
    let mut left = Unreaped(Some(child));
    let stopped = left.wait(WaitPidFlag::WUNTRACED)?;
    // Each status checked before the next step: a child that ended is
    // reaped, and its pid may be another process's now.
    if !matches!(stopped, WaitStatus::Stopped(_, Signal::SIGSTOP)) {
        return Err(format!("stop: {stopped:?}").into());
    }
    let on_stop = came()?;
    kill(child, Signal::SIGCONT)?;
    let continued = left.wait(WaitPidFlag::WCONTINUED)?;
    if !matches!(continued, WaitStatus::Continued(_)) {
        return Err(format!("continue: {continued:?}").into());
    }
    // The kernel tells the parent of a continue when the child runs
    // again: once it has written, it has.
    File::from(running).read_exact(&mut [0])?;
    let on_continue = came()?;
    drop(go); // The child may exit now.
    let exited = left.wait(WaitPidFlag::empty())?;
    let on_exit = came()?;
    if !matches!(exited, WaitStatus::Exited(_, 0)) {
        return Err(format!("exit: {exited:?}").into());
    }
    Ok(format!(
        "SIGCHLD on stop: {on_stop}, on continue: {on_continue}, \
         on exit: {on_exit}"
    ))
}

/// A child not reaped yet. Dropped on an error path, it kills and reaps
/// it; once reaped, its pid is `None`: the number may be another's now.
struct Unreaped(Option<Pid>);

impl Unreaped {
    /// `waitpid` on the child; a status that says it ended says it is
    /// reaped. So does EINVAL: nix 0.32 returns it for a child killed by a
    /// real-time signal, which its `Signal` cannot name, after the kernel
    /// has reaped the child.
    fn wait(&mut self, flags: WaitPidFlag) -> nix::Result<WaitStatus> {
        let pid = self.0.ok_or(Errno::ECHILD)?;
        let status = waitpid(pid, Some(flags));
        if matches!(
            status,
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                | Err(Errno::EINVAL)
        ) {
            self.0 = None;
        }
        status
    }
}

impl Drop for Unreaped {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SIGKILL ends a stopped child too.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// A child that exits at once: can it be reaped, and did SIGCHLD come?
fn exit_unreaped() -> Result<String, Box<dyn Error>> {
    let (child, _go, _running) = fork_child(false)?;
    // Waits until the child is gone; with no zombie to collect, fails.
    let waited = match waitpid(child, None) {
        Ok(status) => format!("{status:?}"),
        Err(Errno::ECHILD) => "ECHILD, no zombie".to_string(),
        Err(err) => return Err(err.into()),
    };
    Ok(format!("waitpid: {waited}; SIGCHLD on exit: {}", came()?))
}

/// Whether a SIGCHLD is pending, or comes within 100 ms; takes it if so.
/// (The kernel sends it as the child changes state, a moment after
/// `waitpid` may already have seen the change.)
fn came() -> nix::Result<bool> {
    let chld = SigSet::from(Signal::SIGCHLD);
    let timeout = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    loop {
        // SAFETY: valid pointers; the siginfo is not wanted.
        let taken = unsafe {
            nix::libc::sigtimedwait(
                chld.as_ref(),
                std::ptr::null_mut(),
                &timeout,
            )
        };
        match Errno::result(taken) {
            Ok(_) => return Ok(true),
            Err(Errno::EAGAIN) => return Ok(false),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err),
        }
    }
}

/// Forks a child that exits 0. If `stop`, it first stops itself; once
/// continued, it writes a byte into `running` and waits for the end of
/// `go`. Returns its pid, and the parent's ends of `go` and `running`.
fn fork_child(stop: bool) -> Result<(Pid, OwnedFd, OwnedFd), Box<dyn Error>> {
    let (go_read, go) = pipe2(OFlag::O_CLOEXEC)?;
    let (running, running_write) = pipe2(OFlag::O_CLOEXEC)?;
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop((go, running));
            if stop {
                let _ = raise(Signal::SIGSTOP);
                let _ = File::from(running_write).write_all(b"!");
                let _ = File::from(go_read).read(&mut [0]);
            }
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => Ok((child, go, running)),
    }
}
// ANCHOR_END: run

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
