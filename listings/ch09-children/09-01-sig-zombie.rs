// ANCHOR: whole
// Listing 9-1: a zombie, made visible and then reaped. A child exits at
// once; the parent waits for that without reaping it (`waitid` with
// WNOWAIT), so the child stays a zombie, a line in the process table that
// holds its exit status. The parent reaps it when it gets SIGUSR1. With
// `--std` the child is a program started with `std::process::Command`,
// and the parent drops its `Child` handle first: std neither waits nor
// kills when a `Child` is dropped, so the zombie is the same.

use std::error::Error;
use std::io::{self, ErrorKind, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{self, Command, ExitCode, Stdio};

use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction,
};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid};

const USAGE: &str = "usage: sig-zombie [--std]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output: we left through `run`, which reaped
        // every child it started.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-zombie: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let chld = restore_sigchld()?;
    let std_child = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Blocked now, taken later with sigwait: no handler needed.
    let usr1 = SigSet::from(Signal::SIGUSR1);
    let found = usr1.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let child = if std_child {
        let mut command = Command::new("true");
        command.stdin(Stdio::null());
        // `Command` passes our mask on, and SIGCHLD ignored if we found
        // it so: give the child back what we found, not SIGUSR1 blocked
        // and SIGCHLD at its default (Chapter 12).
        // SAFETY: between fork and exec the child makes two system calls,
        // sigaction and sigprocmask, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                sigaction(Signal::SIGCHLD, &chld)?;
                Ok(found.thread_set_mask()?)
            })
        };
        let child = command.spawn()?;
        let pid = Pid::from_raw(child.id() as i32);
        drop(child); // Neither waits nor kills.
        pid
    } else {
        io::stdout().flush()?;
        // SAFETY: no other thread exists, so no lock can be held by one.
        match unsafe { fork() }? {
            // SAFETY: `_exit` only ends the process.
            ForkResult::Child => unsafe { nix::libc::_exit(7) },
            ForkResult::Parent { child } => child,
        }
    };
    let shown = show_then_reap(child, &usr1);
    if shown.is_err() {
        // A step that failed (a line that stdout refused, say) leaves no
        // zombie behind: reaping one already reaped fails, and is nothing.
        let _ = waitpid(child, None);
    }
    shown
}

/// Says where to look at the zombie, waits for SIGUSR1, and reaps it.
fn show_then_reap(child: Pid, usr1: &SigSet) -> Result<(), Box<dyn Error>> {
    // Wait until the child has exited, but leave it unreaped.
    waitid(Id::Pid(child), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)?;
    let (mut out, parent) = (io::stdout(), getpid());
    writeln!(
        out,
        "Child {child} has exited and is a zombie until it is reaped"
    )?;
    writeln!(out, "Look: grep State /proc/{child}/status")?;
    writeln!(out, "Then reap it: kill -USR1 {parent}")?;
    usr1.wait()?;
    match waitpid(child, None)? {
        WaitStatus::Exited(_, code) => {
            writeln!(out, "Reaped it: status {code}")?
        }
        other => writeln!(out, "Reaped it: {other:?}")?,
    }
    let gone = !Path::new(&format!("/proc/{child}/stat")).exists();
    writeln!(out, "/proc/{child}/stat is gone: {gone}")?;
    Ok(())
}
// ANCHOR_END: run

/// True if `err` says that the reader of our output has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Gives SIGCHLD its default action back, and returns the action found,
/// for a child of ours to get back. A parent may have left it ignored,
/// which passes through `exec`; ignored, it makes the kernel reap our
/// children itself, and every `waitpid` fail with ECHILD.
fn restore_sigchld() -> nix::Result<SigAction> {
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    unsafe { sigaction(Signal::SIGCHLD, &default) }
}

/// Reads `[--std]` from the command line.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut std_child = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("std") => std_child = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(std_child)
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
