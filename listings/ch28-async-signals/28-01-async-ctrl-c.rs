// ANCHOR: whole
// Listing 28-1: how most tokio programs stop: wait for Ctrl-C, then clean
// up (`--cleanup-secs`, 3 by default) and exit. It has three flaws, which
// the chapter shows one by one: SIGTERM, what `kill`, systemd and
// `docker stop` send, ends it at once without any clean-up (or, as PID 1
// of a container, does nothing at all); a second Ctrl-C during the
// clean-up does nothing either; and tokio's handler for SIGINT stays
// installed after the program has stopped listening.

use std::error::Error;
use std::process::{self, ExitCode};
use std::time::Duration;

use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::getpid;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: async-ctrl-c [--cleanup-secs N]";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("async-ctrl-c: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
async fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let cleanup = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // What `tokio::signal::ctrl_c()` does, in two steps: install the
    // handler (now, before we say we are ready), then wait.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let pid = getpid();
    println!("Working as pid {pid}; stop me with Ctrl-C");

    interrupt.recv().await;
    // Nobody listens for SIGINT any more.
    drop(interrupt);
    let secs = cleanup.as_secs();
    println!("Got Ctrl-C: cleaning up for {secs} s");
    tokio::time::sleep(cleanup).await;
    println!("Clean exit");
    Ok(())
}
// ANCHOR_END: run

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on the next `println!`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .map(drop)
}

/// Reads `[--cleanup-secs N]`.
fn parse_args() -> Result<Duration, lexopt::Error> {
    use lexopt::prelude::*;
    let mut cleanup = Duration::from_secs(3);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("cleanup-secs") => {
                cleanup = Duration::from_secs(args.value()?.parse()?);
            }
            Short('h') | Long("help") => {
                println!("{USAGE}");
                process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(cleanup)
}
// ANCHOR_END: whole
