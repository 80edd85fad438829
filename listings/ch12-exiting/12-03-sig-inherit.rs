// ANCHOR: whole
// Listing 12-3: what a child inherits. The parent ignores SIGINT, blocks
// SIGUSR1 and catches SIGTERM; then it starts `cat /proc/self/status`
// four ways and decodes what each child reports: with
// `std::process::Command`, with a Command that resets the signals in
// `pre_exec`, with `fork` and `exec` by hand, and with `fork` alone (the
// child reads the file itself). Last, it shows what an ignored SIGINT
// means: a `sleep` started by Command survives `kill -INT`.

use std::error::Error;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{self, Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::libc::c_int;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction, signal,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, dup2_stdout, execvp, fork, pipe2};

const USAGE: &str = "usage: sig-inherit";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sig-inherit: {err}");
            ExitCode::FAILURE
        }
    }
}

extern "C" fn on_term(_: c_int) {}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // SAFETY: ignoring runs no code; the handler does nothing at all.
    unsafe {
        signal(Signal::SIGINT, SigHandler::SigIgn)?;
        let action = SigAction::new(
            SigHandler::Handler(on_term),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        sigaction(Signal::SIGTERM, &action)?;
    }
    SigSet::from(Signal::SIGUSR1).thread_block()?;

    let own = fs::read_to_string("/proc/self/status")?;
    println!("{:<14} {}", "parent", summary(&own));
    let output = Command::new("cat").arg("/proc/self/status").output()?;
    let status = String::from_utf8_lossy(&output.stdout);
    println!("{:<14} {}", "Command", summary(&status));
    let output = clean_command("cat").arg("/proc/self/status").output()?;
    let status = String::from_utf8_lossy(&output.stdout);
    println!("{:<14} {}", "Command, reset", summary(&status));
    println!("{:<14} {}", "fork + exec", summary(&forked(true)?));
    println!("{:<14} {}", "fork alone", summary(&forked(false)?));

    // The ignored SIGINT, at work.
    let mut sleeper = Command::new("sleep").arg("30").spawn()?;
    let pid = Pid::from_raw(sleeper.id() as i32);
    wait_until_ignored(pid, Signal::SIGINT)?;
    kill(pid, Signal::SIGINT)?;
    thread::sleep(Duration::from_millis(200));
    let alive = sleeper.try_wait()?.is_none();
    println!("sleep, sent SIGINT: still running after 200 ms: {alive}");
    sleeper.kill()?;
    sleeper.wait()?;
    Ok(())
}

// ANCHOR: clean
/// A `Command` whose program starts with no standard signal blocked and
/// none ignored, whatever this process has done to its own.
fn clean_command(program: &str) -> Command {
    let mut command = Command::new(program);
    // SAFETY: between fork and exec the child only makes system calls
    // that are async-signal-safe: sigaction and sigprocmask.
    unsafe {
        command.pre_exec(|| {
            // Dispositions first, the mask last: a signal that arrives
            // once it is unblocked meets the default action, never a
            // handler of ours running in the child.
            for n in 1..32 {
                if let Ok(signal) = Signal::try_from(n) {
                    if !matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
                        let _ = signal_default(signal);
                    }
                }
            }
            SigSet::empty().thread_set_mask()?;
            Ok(())
        })
    };
    command
}

/// Sets `signal` back to its default action.
fn signal_default(signal: Signal) -> nix::Result<SigHandler> {
    // SAFETY: the default action runs no code of ours.
    unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }
}
// ANCHOR_END: clean

/// Forks a child that writes its /proc/self/status into a pipe, by
/// running `cat` (with `exec`) or by itself, and returns what it wrote.
fn forked(exec: bool) -> Result<String, Box<dyn Error>> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    // Prepared before the fork: the child should not allocate.
    let cat = CString::new("cat")?;
    let args = [cat.clone(), CString::new("/proc/self/status")?];
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(read_end);
            if exec {
                if dup2_stdout(&write_end).is_ok() {
                    let _ = execvp(&cat, &args);
                }
            } else {
                let _ = copy_status(write_end);
            }
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut text = String::new();
            File::from(read_end).read_to_string(&mut text)?;
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(text),
                other => Err(format!("the child failed: {other:?}").into()),
            }
        }
    }
}

fn copy_status(to: OwnedFd) -> io::Result<()> {
    let text = fs::read("/proc/self/status")?;
    File::from(to).write_all(&text)
}
// ANCHOR_END: run

// ANCHOR: decode
/// "ignores SIGINT SIGPIPE; blocks SIGUSR1; catches SIGTERM", from the
/// SigIgn, SigBlk and SigCgt masks of a /proc/PID/status.
fn summary(status: &str) -> String {
    let list = |field: &str| {
        let mask = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        let names: Vec<_> = (1..=31)
            .filter(|n| mask & (1 << (n - 1)) != 0)
            .filter_map(|n| Signal::try_from(n).ok())
            .map(Signal::as_str)
            .collect();
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(" ")
        }
    };
    format!(
        "ignores {:<16} blocks {:<8} catches {}",
        list("SigIgn:"),
        list("SigBlk:"),
        list("SigCgt:")
    )
}
// ANCHOR_END: decode

/// Waits until `pid` has exec'ed and its status shows `signal` ignored.
fn wait_until_ignored(pid: Pid, signal: Signal) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let name = status.lines().next().unwrap_or_default();
        if name.ends_with("sleep") && summary(&status).contains(signal.as_str())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the child did not start".into());
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on the next `println!`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// Takes no arguments but `--help`.
fn parse_args() -> Result<(), lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = lexopt::Parser::from_env();
    if let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => {
                println!("{USAGE}");
                process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(())
}
// ANCHOR_END: whole
