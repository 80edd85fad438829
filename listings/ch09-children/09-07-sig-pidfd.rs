// ANCHOR: whole
// Listing 9-7: signalling a process by pidfd rather than by pid. A pid is
// a number that the kernel gives out again once its process is reaped; a
// pidfd, from `pidfd_open`, is a file descriptor that names one process
// and no other, for as long as it is open. The parent forks child A,
// opens a pidfd for it, kills it with `pidfd_send_signal`, sees it exit
// by polling the pidfd, and reaps it. Then it makes the kernel give A's
// pid to a new child, B, which needs `ns_last_pid`: it tries that only
// as the init of a PID namespace of its own, where it may write it and
// moves no one else's pids (run it under `unshare`). `kill` with A's
// number would now reach B, and A's pidfd refuses with ESRCH.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::{self, ExitCode};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::{self, c_int};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, pipe2};

const USAGE: &str = "usage: sig-pidfd";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output: we left through `run`, which reaped
        // every child it started.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-pidfd: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: pidfd
/// `pidfd_open(2)`, which nix 0.32 does not wrap: a descriptor that names
/// process `pid`, close-on-exec.
fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call, with a pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// `pidfd_send_signal(2)`: `signal` to the process that `pidfd` names, or
/// ESRCH if that process has ended, whoever has its pid now.
fn pidfd_send_signal(pidfd: &OwnedFd, signal: Signal) -> nix::Result<()> {
    let (fd, sig) = (pidfd.as_raw_fd(), signal as c_int);
    // SAFETY: a plain system call; no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd, sig, 0usize, 0)
    };
    Errno::result(rc).map(drop)
}
// ANCHOR_END: pidfd

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigchld()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let a = fork_child()?;
    // Until A is reaped, an error on the way kills and reaps it.
    let mut a_left = Unreaped(Some(a.pid));
    let (mut out, pidfd) = (io::stdout(), pidfd_open(a.pid)?);
    writeln!(
        out,
        "Child A: pid {}; its pidfd is descriptor {}",
        a.pid,
        pidfd.as_raw_fd()
    )?;
    // SIGKILL, which nothing ignores or blocks: A has our dispositions and
    // mask, and a parent may have started us with SIGTERM ignored.
    pidfd_send_signal(&pidfd, Signal::SIGKILL)?;
    writeln!(out, "pidfd_send_signal(SIGKILL) to A: sent")?;
    // A pidfd becomes readable when its process ends. `poll` is never
    // restarted: in a program with handlers, a signal ends it with EINTR.
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            other => {
                other?;
                break;
            }
        }
    }
    writeln!(out, "poll on A's pidfd: readable, A has ended")?;
    let status = a_left.reap()?;
    writeln!(
        out,
        "waitpid: A {}; pid {} is free",
        describe(status),
        a.pid
    )?;

    // Reuse A's number: ask the kernel to give out A's pid next.
    if !reuse_next(a.pid)? {
        writeln!(
            out,
            "Not the first process of a PID namespace: no reuse here"
        )?;
        return Ok(());
    }
    let b = fork_child()?;
    let mut b_left = Unreaped(Some(b.pid));
    if b.pid != a.pid {
        let why = format!("child B got pid {}, not A's {}", b.pid, a.pid);
        return Err(why.into());
    }
    writeln!(out, "Child B: pid {}, A's number", b.pid)?;
    kill(a.pid, None)?; // Signal 0: only asks whether it would reach.
    writeln!(out, "kill({}, 0): succeeds, it reaches B", a.pid)?;
    match pidfd_send_signal(&pidfd, Signal::SIGKILL) {
        Err(Errno::ESRCH) => {
            writeln!(out, "A's pidfd: ESRCH, A is gone; B is left alone")?
        }
        other => return Err(format!("A's pidfd: {other:?}").into()),
    }
    drop(b.go); // B exits once its pipe ends.
    let status = b_left.reap()?;
    writeln!(out, "waitpid: B {}", describe(status))?;
    Ok(())
}

/// A child not reaped yet. Dropped on an error path, it kills and reaps
/// it; once reaped, its pid is `None`: the number may be another's now.
struct Unreaped(Option<Pid>);

impl Unreaped {
    /// Waits for the child and reaps it; forgets its pid once the kernel
    /// has reaped it: on success, and on EINVAL too, which nix 0.32
    /// returns for a child killed by a real-time signal, a signal its
    /// `Signal` cannot name.
    fn reap(&mut self) -> nix::Result<WaitStatus> {
        let pid = self.0.ok_or(Errno::ECHILD)?;
        let status = waitpid(pid, None);
        if matches!(status, Ok(_) | Err(Errno::EINVAL)) {
            self.0 = None;
        }
        status
    }
}

impl Drop for Unreaped {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Makes `pid` the next pid the kernel gives out in this PID namespace,
/// if this process is its init; `false` if not. An init without the
/// capability (a container's, often) fails, and says where.
fn reuse_next(pid: Pid) -> io::Result<bool> {
    if getpid().as_raw() != 1 {
        return Ok(false);
    }
    let (last, before) = ("/proc/sys/kernel/ns_last_pid", pid.as_raw() - 1);
    fs::write(last, before.to_string()).map_err(|err| {
        io::Error::new(err.kind(), format!("cannot write {last}: {err}"))
    })?;
    Ok(true)
}
// ANCHOR_END: run

/// A child, and the write end of the pipe whose end tells it to exit.
struct Child {
    pid: Pid,
    go: OwnedFd,
}

/// Forks a child that waits for the end of a pipe, then exits 0.
fn fork_child() -> Result<Child, Box<dyn Error>> {
    let (go_read, go) = pipe2(OFlag::O_CLOEXEC)?;
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(go);
            let _ = File::from(go_read).read(&mut [0]);
            // SAFETY: `_exit` only ends the process.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => Ok(Child { pid: child, go }),
    }
}

/// "exited with status 0", "was killed by SIGKILL".
fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("was killed by {signal}"),
        other => format!("changed state: {other:?}"),
    }
}

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
