// ANCHOR: whole
// Listing 12-4: a program meant to run as PID 1, the first process of a
// container. The kernel protects the init process of a PID namespace: it
// drops every signal whose action for it is the default, so SIGTERM and
// SIGINT do nothing to a PID 1 that does not take them itself, and only
// SIGKILL, sent from outside the namespace, ends it. With `--handle` it
// takes SIGTERM and SIGINT (blocked, with sigwait) and exits cleanly.
// Either way it reaps the orphans that are re-parented to it, as init
// must. Try it with `unshare --pid --fork` (as root, or add
// `--map-root-user`).

use std::error::Error;
use std::io::{self, Write};
use std::process::{self, ExitCode};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid};

const USAGE: &str = "usage: sig-init [--handle]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sig-init: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let handle = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let mut waited = SigSet::from(Signal::SIGCHLD);
    if handle {
        waited.add(Signal::SIGTERM);
        waited.add(Signal::SIGINT);
    }
    // Blocked, and taken with sigwait. The kernel never drops a blocked
    // signal, not even for PID 1; SIGTERM without `--handle` is not
    // blocked, has its default action, and is dropped.
    waited.thread_block()?;
    println!("Running as pid {}; handling SIGTERM: {handle}", getpid());
    io::stdout().flush()?;
    loop {
        match waited.wait()? {
            Signal::SIGCHLD => reap_all()?,
            other => {
                println!("Got {other}: exiting cleanly");
                return Ok(());
            }
        }
    }
}

/// Reaps every child that has exited: init adopts orphans, and must.
fn reap_all() -> nix::Result<()> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(()),
            Ok(_) => {}
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: run

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on the next `println!`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// Reads `[--handle]` from the command line.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut handle = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("handle") => handle = true,
            Short('h') | Long("help") => {
                println!("{USAGE}");
                process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(handle)
}
// ANCHOR_END: whole
