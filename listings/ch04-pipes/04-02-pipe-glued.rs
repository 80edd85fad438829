// ANCHOR: whole
// Listing 4-2: the glued read from Listing 4-1, made to happen every time.
// The child writes `Spam 004` and `Spam 000` with two separate `write`
// calls and exits; only then does the parent read, and one read returns
// both messages as one run of bytes.

use std::env;
use std::error::Error;
use std::os::fd::OwnedFd;
use std::process::{self, ExitCode};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, getpid, pipe, read, write};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pipe-glued: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    if let Some(arg) = env::args().nth(1) {
        return Err(format!("takes no arguments, not '{arg}'").into());
    }
    let (pipe_in, pipe_out) = pipe()?;
    // SAFETY: no other thread exists, so the child may do anything.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(pipe_in);
            let status = match child(&pipe_out) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("pipe-glued child: {err}");
                    1
                }
            };
            process::exit(status);
        }
        ForkResult::Parent { child } => {
            drop(pipe_out);
            // Wait until the child has written both messages and exited:
            // this is what a busy scheduler sometimes does by accident.
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => {}
                status => {
                    return Err(format!("child ended badly: {status:?}").into());
                }
            }
            let mut buf = [0; 32];
            let n = read(&pipe_in, &mut buf)?;
            let text = String::from_utf8_lossy(&buf[..n]);
            println!(
                "Parent {} got [{text}] in one read of {n} bytes",
                getpid()
            );
        }
    }
    Ok(())
}

fn child(pipe_out: &OwnedFd) -> nix::Result<()> {
    for msg in ["Spam 004", "Spam 000"] {
        write(pipe_out, msg.as_bytes())?;
        println!("Child {} wrote [{msg}]", getpid());
    }
    Ok(())
}
// ANCHOR_END: run
// ANCHOR_END: whole
