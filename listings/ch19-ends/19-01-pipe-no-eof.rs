// ANCHOR: whole
// Listing 19-1: a parent that keeps its copy of the write end never sees
// the end of the stream. A forked child writes three lines and exits; the
// parent reads until the end of the stream, giving up once its child has
// exited and another second has passed with nothing to read. `--close`
// adds the one line that fixes it.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{self, ExitCode, ExitStatus};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, Signal};
use nix::sys::wait::WaitPidFlag;
use nix::unistd::{ForkResult, Pid, fork, pipe2, read, write};

const USAGE: &str = "usage: pipe-no-eof [--close]";
/// How long the parent waits for a byte before it looks at its child.
const QUIET_MS: u16 = 1000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output any more: the end, once the child is
        // reaped (`run` waits for it first).
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-no-eof: {err}\n");
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
    let close = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    keep_zombies()?;
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            drop(read_end);
            let status = match child(write_end) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("pipe-no-eof child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            if close {
                drop(write_end); // The parent never writes.
            }
            let result = parent(&read_end, child);
            if result.is_err() {
                // Our output failed, say. The child writes three short
                // lines and exits whatever we do: reap it before we
                // report, unless that is done already (ECHILD).
                let _ = reap_raw(child);
            }
            result
        }
    }
}

/// Writes three lines, one `write` each, and returns, which closes the
/// child's write end.
fn child(write_end: OwnedFd) -> nix::Result<()> {
    for n in 1..=3 {
        write(&write_end, format!("line {n}\n").as_bytes())?;
    }
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: parent
/// Prints every line until the end of the stream. If nothing comes for
/// QUIET_MS, it reaps the child if it has exited; once the child is gone
/// and nothing comes for another QUIET_MS, it gives up.
fn parent(read_end: &OwnedFd, child: Pid) -> Result<(), Box<dyn Error>> {
    let mut child_status = None;
    let mut buf = [0; 1024];
    loop {
        let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(QUIET_MS))? == 0 {
            if child_status.is_some() {
                return Err("no end of stream a second after the child \
                            exited: a write end is still open"
                    .into());
            }
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
            if let Some((_, status)) = waitid_raw(Some(child), flags)? {
                writeln!(io::stdout(), "The child has {}", describe(status))?;
                child_status = Some(status);
            }
            continue;
        }
        let n = read(read_end, &mut buf)?;
        if n == 0 {
            writeln!(io::stdout(), "End of stream")?;
            break;
        }
        // A read returns what the pipe holds, up to the buffer: here
        // one line or several, whole, since each went in with one
        // `write` and all three fit the buffer. A reader of a longer
        // stream keeps what follows the last newline for the next read:
        // PIPE_BUF keeps writers from mixing, and says nothing of where
        // a read ends.
        for line in String::from_utf8_lossy(&buf[..n]).lines() {
            writeln!(io::stdout(), "Parent got [{line}]")?;
        }
    }
    // Reaped already if it exited while we waited: a second wait would
    // fail with ECHILD.
    let status = match child_status {
        Some(status) => status,
        None => {
            let status = reap_raw(child)?;
            writeln!(io::stdout(), "The child has {}", describe(status))?;
            status
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err("the child failed".into())
    }
}
// ANCHOR_END: parent

/// How a child ended, in words. A real-time signal (SIGRTMIN and above)
/// has no name in nix: it goes by its number.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal().map(|n| (n, Signal::try_from(n))) {
        Some((_, Ok(signal))) => format!("been killed by {signal}"),
        Some((n, Err(_))) => format!("been killed by signal {n}"),
        None => format!("changed state: {status}"),
    }
}

/// Waits as `waitid` does, for `child` or, if `None`, any child, and
/// returns the pid of the child it reports, with its status as `waitpid`
/// would give it; `None` if WNOHANG found no news. Not nix's `waitid`:
/// nix 0.32 turns a status into a `Signal`, which names no real-time
/// signal, so a child killed by SIGRTMIN makes it fail with EINVAL, the
/// report taken and the status lost.
fn waitid_raw(
    child: Option<Pid>,
    flags: WaitPidFlag,
) -> nix::Result<Option<(Pid, ExitStatus)>> {
    let (idtype, id) = match child {
        Some(pid) => (libc::P_PID, pid.as_raw() as libc::id_t),
        None => (libc::P_ALL, 0),
    };
    // SAFETY: zeros are a valid `siginfo_t`.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `waitid` writes only `info`, which is ours.
    let done = unsafe { libc::waitid(idtype, id, &mut info, flags.bits()) };
    Errno::result(done)?;
    // SAFETY: `waitid` filled in a child's report, or left the zeros.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    // The status packed as `waitpid` packs it, for `ExitStatus`.
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_KILLED => status,
        libc::CLD_DUMPED => status | 0x80,
        libc::CLD_CONTINUED => 0xffff,
        _ => (status << 8) | 0x7f, // CLD_STOPPED, CLD_TRAPPED
    };
    Ok(Some((Pid::from_raw(pid), ExitStatus::from_raw(raw))))
}

/// Reaps `child` with `waitpid`, which blocks until it has ended, and
/// returns how it ended, whatever the signal: raw, as `waitid_raw`.
fn reap_raw(child: Pid) -> nix::Result<ExitStatus> {
    let mut status = 0;
    // SAFETY: `waitpid` writes only `status`, which is ours.
    let done = unsafe { libc::waitpid(child.as_raw(), &mut status, 0) };
    Errno::result(done)?;
    Ok(ExitStatus::from_raw(status))
}

/// True if `err` says that the reader of our output has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Reads `[--close]` from the command line.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut close = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("close") => close = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(close)
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
