// ANCHOR: whole
// Listing 9-2: reaping on SIGCHLD. The parent forks a burst of children
// (`--children N`, 20 by default) that all exit at the same moment, and
// reaps them as SIGCHLD reports them: on each wake-up it calls
// `waitpid(-1, WNOHANG)` until no exited child is left, because one
// SIGCHLD may stand for many children. With `--one-per-signal` it reaps
// only one child per wake-up, the common mistake, and zombies are left.
// `--hold` keeps SIGCHLD blocked until every child has exited, so that the
// merging this chapter is about happens every time.
//
// With `--command` it also starts `true` with std's `Command`, as any
// library might, and waits for it with `Child::wait` at the end:
// `waitpid(-1)` reaps that child too, and `Child::wait` then fails. With
// `--own` it reaps only the children it forked, by pid, as a program that
// does not own every child must.

use std::error::Error;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction,
};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};
use signal_hook::consts::SIGCHLD;
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: sig-reaper [--children N] [--one-per-signal] \
                     [--hold] [--command] [--own]";
/// How long the parent waits for another SIGCHLD before giving up.
const QUIET: Duration = Duration::from_secs(2);

struct Args {
    children: usize,
    one_per_signal: bool,
    hold: bool,
    command: bool,
    own: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output: we left through `run`, which reaped
        // every child it started.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-reaper: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let sigchld = SigSet::from(Signal::SIGCHLD);
    let found = SigSet::thread_get_mask()?;
    if args.hold {
        sigchld.thread_block()?;
    } else {
        // A parent's mask passes through `exec` (Chapter 12): blocked,
        // SIGCHLD would never wake us, and no child would be reaped.
        sigchld.thread_unblock()?;
    }
    // The action SIGCHLD had, ignored perhaps, for `Command`'s child to
    // get back: `Signals::new` replaces it with a handler of its own.
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    let chld = unsafe { sigaction(Signal::SIGCHLD, &default) }?;
    // Before the first fork, so that no SIGCHLD can come too early.
    let signals = Signals::new([SIGCHLD])
        .map_err(|err| format!("cannot watch for SIGCHLD: {err}"))?;
    // From here on every way out, an error's too, reaps what was started.
    let mut started = Started::from(fork_children(args.children)?);
    let n = started.mine.len();
    // Another part of the program starts a child of its own.
    let mut out = io::stdout();
    if args.command {
        let mut command = Command::new("true");
        command.stdin(Stdio::null());
        // `Command` passes our mask on: give the child back the one we
        // found, not our SIGCHLD blocked by `--hold`, and SIGCHLD's action
        // as we found it, not the default that `exec` makes of our
        // handler (Chapter 12).
        // SAFETY: between fork and exec the child makes two system calls,
        // sigaction and sigprocmask, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                sigaction(Signal::SIGCHLD, &chld)?;
                Ok(found.thread_set_mask()?)
            })
        };
        started.other = Some(command.spawn()?);
        writeln!(out, "Forked {n} children and started `true`; they exit now")?;
    } else {
        writeln!(out, "Forked {n} children; they exit together now")?;
    }
    // Closing the last write end of the "go" pipe: every child's read
    // returns at once, and every child exits.
    started.go = None;
    let Started { mine, other, .. } = &mut started;
    if args.hold {
        // Wait until each one is a zombie, without reaping any.
        let others = other.iter().map(|c| Pid::from_raw(c.id() as i32));
        for pid in mine.iter().copied().chain(others) {
            waitid_raw(Some(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)?;
        }
        sigchld.thread_unblock()?;
    }

    // The iterator on a thread, so that the wait for it has a deadline.
    let (tx, wake_ups) = mpsc::channel();
    // Never dropped, not even by a thread that the system refuses: the
    // handler stays installed while `handle` lives, and a SIGCHLD then
    // (from a child still exiting, or `Command`'s) would write to a closed
    // socket: EPIPE here, where SIGPIPE is ignored, but death by SIGPIPE in
    // a program that restores its default (Listing 6-2).
    let signals = Box::leak(Box::new(signals));
    let handle = signals.handle();
    let waiter = thread::Builder::new().spawn(move || {
        for _ in signals.forever() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    // Refused, the error returns, and `started` reaps the children.
    let waiter =
        waiter.map_err(|err| format!("cannot start a thread: {err}"))?;
    let (mut woken, mut stolen) = (0, 0);
    while !mine.is_empty() {
        match wake_ups.recv_timeout(QUIET) {
            Ok(()) => woken += 1,
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        stolen += reap(mine, args.own, args.one_per_signal)?;
    }
    handle.close();
    let _ = waiter.join();
    let reaped = n - mine.len();
    let theirs = match stolen {
        0 => String::new(),
        _ => format!(", and {stolen} that was not ours"),
    };
    let plural = if woken == 1 { "" } else { "s" };
    writeln!(
        out,
        "{woken} wake-up{plural} on SIGCHLD; reaped {reaped} of {n} children{theirs}"
    )?;
    let mut failure = None;
    if let Some(child) = other {
        match child.wait() {
            Ok(status) => writeln!(out, "Child::wait on `true`: {status}")?,
            Err(err) => {
                writeln!(out, "Child::wait on `true`: {err}")?;
                failure =
                    Some("`Command`'s child was reaped by waitpid(-1)".into());
            }
        }
    }
    if !mine.is_empty() {
        let left = mine.len();
        writeln!(out, "{left} zombies left; reaping them before leaving")?;
        for pid in mine.drain(..) {
            waitid_raw(Some(pid), WaitPidFlag::WEXITED)?;
        }
        failure = Some(format!("{left} children were not reaped on SIGCHLD"));
    }
    failure.map_or(Ok(()), |why| Err(why.into()))
}

/// Reaps exited children without blocking: any child of this process
/// (`waitpid(-1)`, here `waitid` with P_ALL) or, with `own`, only the pids
/// in `mine`; all that have exited, or only one, whatever killed them
/// (`waitid_raw`). Removes from `mine` each one reaped; returns how many
/// were not in it.
fn reap(mine: &mut Vec<Pid>, own: bool, only_one: bool) -> nix::Result<usize> {
    let mut stolen = 0;
    let candidates = if own {
        mine.iter().copied().map(Some).collect()
    } else {
        vec![None]
    };
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
    for pid in candidates {
        loop {
            match waitid_raw(pid, flags) {
                Ok(None) | Err(Errno::ECHILD) => break,
                Ok(Some((reaped, _))) => {
                    match mine.iter().position(|&p| p == reaped) {
                        Some(i) => drop(mine.remove(i)),
                        None => stolen += 1,
                    }
                }
                Err(err) => return Err(err),
            }
            if only_one {
                return Ok(stolen);
            }
            if own {
                break; // One pid, reaped.
            }
        }
    }
    Ok(stolen)
}
// ANCHOR_END: run

/// The children, and the pipe whose closing tells them all to exit.
struct Children {
    pids: Vec<Pid>,
    go: OwnedFd,
}

/// What the parent has started and not yet reaped: its children (`mine`),
/// the "go" pipe until it lets them go, and `Command`'s child. Dropped on
/// every way out of `run`, an error's included, it lets the children go
/// and reaps each one left, so that none is left to init.
struct Started {
    mine: Vec<Pid>,
    go: Option<OwnedFd>,
    other: Option<Child>,
}

impl From<Children> for Started {
    fn from(children: Children) -> Started {
        let go = Some(children.go);
        Started {
            mine: children.pids,
            go,
            other: None,
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.go = None; // Every child's read returns: they exit.
        for pid in self.mine.drain(..) {
            let _ = waitpid(pid, None);
        }
        if let Some(other) = &mut self.other {
            let _ = other.wait(); // At once if already waited for.
        }
    }
}

/// Forks `n` children that each wait for the "go" pipe to close (which
/// also happens if this process dies) and then exit with their number.
fn fork_children(n: usize) -> Result<Children, Box<dyn Error>> {
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|err| format!("cannot make the children's pipe: {err}"))?;
    io::stdout().flush()?;
    let mut pids = Vec::new();
    for i in 0..n {
        // SAFETY: no other thread exists yet, so no lock is held by one.
        let forked = match unsafe { fork() } {
            Ok(forked) => forked,
            Err(err) => {
                // Refused part-way (`ulimit -u`, say): let the children
                // we have go, and reap them before we report it.
                drop(go_write);
                for pid in pids {
                    let _ = waitpid(pid, None);
                }
                return Err(
                    format!("cannot fork child {}: {err}", i + 1).into()
                );
            }
        };
        match forked {
            ForkResult::Child => {
                // Close our copy of the write end, or the pipe would never
                // report its end; then wait for the parent to close its.
                drop(go_write);
                let _ = File::from(go_read).read(&mut [0; 1]);
                // SAFETY: `_exit` only ends the process.
                unsafe { nix::libc::_exit((i % 256) as i32) }
            }
            ForkResult::Parent { child } => pids.push(child),
        }
    }
    drop(go_read);
    Ok(Children { pids, go: go_write })
}

/// Waits as `waitid` does, for `child` or, if `None`, any child, and
/// returns the pid of the child it reports, with its status as `waitpid`
/// would give it; `None` if WNOHANG found no news. Not nix's `waitid`:
/// nix 0.32 turns a status into a `Signal`, which names no real-time
/// signal, so a child killed by SIGRTMIN makes it fail with EINVAL, the
/// report taken, and a caller that gives up leaves the other children.
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

/// True if `err` says that the reader of our output has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Reads `[--children N] [--one-per-signal] [--hold]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        children: 20,
        one_per_signal: false,
        hold: false,
        command: false,
        own: false,
    };
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("children") => parsed.children = args.value()?.parse()?,
            Long("one-per-signal") => parsed.one_per_signal = true,
            Long("hold") => parsed.hold = true,
            Long("command") => parsed.command = true,
            Long("own") => parsed.own = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if parsed.children == 0 || parsed.children > 1000 {
        return Err("--children must be between 1 and 1000".into());
    }
    Ok(parsed)
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
