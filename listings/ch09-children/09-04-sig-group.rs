// ANCHOR: whole
// Listing 9-4: one signal for a whole process group. The parent forks
// three children, as a shell starts a pipeline: A leads a new process
// group, B joins it, and C gets a group of its own. Then the parent sends
// SIGTERM to A's group with `kill(-pgid, SIGTERM)`, which is what a
// terminal does with SIGINT when you press Ctrl-C. A and B die; C does
// not, until the parent signals it by its pid.

use std::error::Error;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{self, ExitCode};

use nix::fcntl::OFlag;
use nix::sys::signal::{
    SigHandler, SigSet, SigmaskHow, Signal, kill, killpg, signal,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpgid, pipe2, setpgid};

const USAGE: &str = "usage: sig-group";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output: we left through `run`, which reaped
        // every child it started.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-group: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigchld()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // The children wait for this pipe's end: our word, or our exit.
    let (wait_read, wait_write) = pipe2(OFlag::O_CLOEXEC)?;
    let mut children: Vec<(&str, Pid)> = Vec::new();
    // The children must die of SIGTERM, but a parent may have started us
    // with it ignored or blocked, and both pass through fork. Each child
    // puts the default action back; until it has, SIGTERM is blocked, so
    // that one sent meanwhile waits instead of being discarded.
    let term = SigSet::from(Signal::SIGTERM);
    let our_mask = term.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    io::stdout().flush()?; // Nothing buffered for a child to print again.
    for name in ["A", "B", "C"] {
        // A and C lead new groups (0 means "my own pid"); B joins A's.
        let group = match name {
            "B" => children[0].1,
            _ => Pid::from_raw(0),
        };
        // SAFETY: no other thread exists, so no lock can be held by one.
        let forked = match unsafe { fork() } {
            Ok(forked) => forked,
            Err(err) => {
                // Refused part-way (`ulimit -u`, say): let the children we
                // have go, and reap them before we report it.
                let_go(wait_write, &children);
                return Err(format!("cannot fork child {name}: {err}").into());
            }
        };
        match forked {
            ForkResult::Child => {
                drop(wait_write);
                child(group, wait_read)
            }
            ForkResult::Parent { child } => {
                // The parent makes the same call, as shells do, so that
                // the group is set whichever process runs first.
                let group = if group.as_raw() == 0 { child } else { group };
                children.push((name, child));
                if let Err(err) = setpgid(child, group) {
                    let_go(wait_write, &children);
                    return Err(err.into());
                }
            }
        }
    }
    let done = our_mask
        .thread_set_mask()
        .map_err(Into::into)
        .and_then(|()| kill_and_reap(&children));
    if done.is_err() {
        // A failed step, a line stdout refused say: the children still
        // waiting are let go, and every one is reaped before we report it.
        let_go(wait_write, &children);
    }
    done
}

/// Lets the children waiting for our word go, by closing our end of
/// their pipe, and reaps every one of them (one reaped already fails
/// with ECHILD, which is nothing to report now).
fn let_go(wait_write: OwnedFd, children: &[(&str, Pid)]) {
    drop(wait_write);
    for (_, pid) in children {
        let _ = waitpid(*pid, None);
    }
}

/// Says where each child is, kills A's group, then C, and reaps all three.
fn kill_and_reap(children: &[(&str, Pid)]) -> Result<(), Box<dyn Error>> {
    let (mut out, group_of_a) = (io::stdout(), getpgid(Some(children[0].1))?);
    for (name, pid) in children {
        let pgid = getpgid(Some(*pid))?;
        let place = if pgid == group_of_a {
            "A's group"
        } else {
            "a group of its own"
        };
        writeln!(out, "Child {name} is in {place}")?;
    }
    writeln!(out, "Parent: kill(-pgid, SIGTERM) to A's group")?;
    killpg(group_of_a, Signal::SIGTERM)?;
    for (name, pid) in &children[..2] {
        writeln!(out, "Child {name} {}", describe(waitpid(*pid, None)?))?;
    }
    let (name, pid) = children[2];
    writeln!(
        out,
        "Child {name} is still running; kill(pid, SIGTERM) to it"
    )?;
    kill(pid, Signal::SIGTERM)?;
    writeln!(out, "Child {name} {}", describe(waitpid(pid, None)?))?;
    Ok(())
}

/// Takes SIGTERM's default action, joins `group` (0: a new one of its
/// own), then waits for the end of the parent's pipe.
fn child(group: Pid, wait: OwnedFd) -> ! {
    // SAFETY: the default action runs no code of ours.
    let _ = unsafe { signal(Signal::SIGTERM, SigHandler::SigDfl) };
    let _ = SigSet::from(Signal::SIGTERM).thread_unblock();
    let _ = setpgid(Pid::from_raw(0), group);
    let _ = File::from(wait).read(&mut [0; 1]);
    // SAFETY: `_exit` only ends the process.
    unsafe { nix::libc::_exit(0) }
}
// ANCHOR_END: run

/// "exited with status 0", "was killed by SIGTERM".
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
