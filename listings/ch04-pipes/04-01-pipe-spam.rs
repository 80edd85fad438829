// ANCHOR: whole
// Listing 4-1: Lutz's `pipe1.py`, ported to Rust: a forked child writes
// `Spam 000` to `Spam 004` into a pipe, over and over, sleeping 0 to 4
// seconds before each write; the parent reads up to 32 bytes at a time
// and reports what it got. `--count N` stops after N messages.
//
// Like the original, neither process closes the end of the pipe it does
// not use; Listing 4-3 shows why it should. Unlike the original, no
// process outlives the other for long: the child dies with its parent,
// and the parent notices a dead child within a few seconds.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, kill, signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, pipe2, read, write};

const USAGE: &str = "usage: pipe-spam [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-spam: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
/// Every message is `Spam NNN`: eight bytes, and no separator.
const MESSAGE_LEN: u64 = 8;

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let count = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let expected = match count {
        Some(n) => {
            Some(n.checked_mul(MESSAGE_LEN).ok_or("--count is too large")?)
        }
        None => None,
    };
    // Lutz's names are `pipein` and `pipeout`: the end this program reads
    // from, and the end it writes to.
    // Close-on-exec: no program this process may start inherits an end.
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    let parent = getpid();
    // Whatever sits in our stdout buffer would be copied into the child.
    io::stdout().flush()?;
    // SAFETY: the program has started no threads, so no lock can be held
    // by a thread that the child would not have.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let status = match child(parent, &write_end, count) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("pipe-spam child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // `_exit`, not `process::exit`: the child must not run the
            // parent's exit-time cleanup, such as flushing its buffers.
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            // Until the child is reaped, an error on the way, such as a
            // full disk, kills and reaps it.
            let mut child = Unreaped(Some(child));
            parent_reads(&mut child, &read_end, expected)?;
            // Only reached with --count: reap the child and check it.
            match child.wait(WaitPidFlag::empty())? {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => Err(format!("child ended badly: {status:?}").into()),
            }
        }
    }
}
// ANCHOR_END: run

// ANCHOR: child
fn child(
    parent: Pid,
    write_end: &OwnedFd,
    count: Option<u64>,
) -> Result<(), Box<dyn Error>> {
    die_with_parent(parent)?;
    let mut zzz = 0;
    let mut sent = 0;
    while count.is_none_or(|n| sent < n) {
        thread::sleep(Duration::from_secs(zzz));
        let msg = format!("Spam {zzz:03}");
        // A pipe write this small is atomic: it never goes in pieces.
        write(write_end, msg.as_bytes())?;
        zzz = (zzz + 1) % 5;
        sent += 1;
    }
    Ok(())
}

/// Asks the kernel to kill this process when its parent dies. Without it,
/// a child whose parent is killed is adopted by init (or the nearest
/// "subreaper") and, here, goes on writing into a pipe forever.
fn die_with_parent(parent: Pid) -> Result<(), Box<dyn Error>> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The parent may have died before that call: then we have been
    // adopted already, and no signal will come.
    if getppid() != parent {
        return Err("the parent is gone".into());
    }
    Ok(())
}
// ANCHOR_END: child

// ANCHOR: parent
/// How long the parent waits for bytes before it checks on the child:
/// longer than the child ever sleeps.
const CHECK_EVERY_MS: u16 = 5000;

fn parent_reads(
    child: &mut Unreaped,
    read_end: &OwnedFd,
    expected: Option<u64>,
) -> Result<(), Box<dyn Error>> {
    // The parent holds the write end too, so `read` will never report the
    // end of the stream: with --count we stop after the bytes we expect,
    // and if no byte comes for a while we check that the child lives.
    let (mut out, mut received) = (io::stdout(), 0);
    while expected.is_none_or(|total| received < total) {
        let mut ready = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
        if poll(&mut ready, PollTimeout::from(CHECK_EVERY_MS))? == 0 {
            match child.wait(WaitPidFlag::WNOHANG)? {
                WaitStatus::StillAlive => continue,
                status => {
                    return Err(format!("the child is gone: {status:?}").into());
                }
            }
        }
        let mut buf = [0; 32];
        let n = read(read_end, &mut buf)?;
        let text = String::from_utf8_lossy(&buf[..n]);
        writeln!(out, "Parent {} got [{text}] at {}", getpid(), unix_time())?;
        received += n as u64;
    }
    Ok(())
}
// ANCHOR_END: parent

/// A child not reaped yet. Dropped on an error path, it kills and reaps
/// it; once reaped, its pid is `None`: the number may be another's now.
struct Unreaped(Option<Pid>);

impl Unreaped {
    /// `waitpid` on the child. A status that says it ended says it is
    /// reaped; so does ECHILD: with SIGCHLD ignored, the kernel reaps the
    /// child itself the moment it exits.
    fn wait(&mut self, flags: WaitPidFlag) -> nix::Result<WaitStatus> {
        let pid = self.0.ok_or(Errno::ECHILD)?;
        let result = waitpid(pid, Some(flags));
        if matches!(
            result,
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                | Err(Errno::ECHILD)
        ) {
            self.0 = None;
        }
        result
    }
}

impl Drop for Unreaped {
    fn drop(&mut self) {
        let Some(pid) = self.0 else { return };
        // Only a child that is still there. With SIGCHLD ignored, one
        // that exits between this `waitpid` and the `kill` is reaped by
        // the kernel: a window of two system calls, which only a pidfd
        // closes (Chapter 9).
        if let Ok(WaitStatus::StillAlive) = self.wait(WaitPidFlag::WNOHANG) {
            // SIGKILL ends a stopped child too.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Seconds since the Unix epoch, like Python's `time.time()`.
fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |t| t.as_secs_f64())
}

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

/// Reads `[--count N]` from the command line.
fn parse_args() -> Result<Option<u64>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut count = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(count)
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
