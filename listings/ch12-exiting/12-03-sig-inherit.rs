// ANCHOR: whole
// Listing 12-3: what a child inherits, and how to give it back only what
// this program changed. The program notes the signal settings it was
// started with (run it with SIGHUP ignored, as `nohup` does), then ignores
// SIGINT, blocks SIGUSR1, catches SIGTERM and puts SIGCHLD at its default. Then it starts
// `cat /proc/self/status` six ways and decodes what each child reports:
//
//   Command      std::process::Command as it is
//   reset all    WRONG: pre_exec puts every signal back to its default,
//                and throws away the SIGHUP that the user ignored
//   restored     pre_exec puts back only what this program changed
//   thread mask  the spawning thread's mask set for the moment of `spawn`
//   fork + exec  by hand
//   fork alone   the child reads the file itself
//
// Last, it shows what an ignored SIGINT means: a `sleep` started by
// Command, sent SIGINT and then SIGKILL, dies of the SIGKILL.

use std::error::Error;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Child, Command, ExitCode, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::libc::c_int;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, kill,
    sigaction, signal,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, dup2_stdout, execvp, fork, pipe2};

const USAGE: &str = "usage: sig-inherit";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-inherit: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

extern "C" fn on_term(_: c_int) {}

// ANCHOR: run
/// What this program replaced when it changed its signal settings.
#[derive(Clone, Copy)]
struct Saved {
    int: SigAction,
    term: SigAction,
    chld: SigAction,
    mask: SigSet,
}

fn run() -> Result<(), Box<dyn Error>> {
    // What `main` found, noted before the first change, `restore_sigpipe`
    // (which unblocks SIGPIPE): the mask is given back as it was found.
    let started = fs::read_to_string("/proc/self/status")?;
    let found_mask = SigSet::thread_get_mask()?;
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let ignore =
        SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    let catch = SigAction::new(
        SigHandler::Handler(on_term),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // Each change of an action returns what it replaced: that is what to
    // give back. The mask to give back is the one `main` found.
    let saved = Saved {
        // SAFETY: ignoring runs no code.
        int: unsafe { sigaction(Signal::SIGINT, &ignore) }?,
        // SAFETY: the handler does nothing at all.
        term: unsafe { sigaction(Signal::SIGTERM, &catch) }?,
        // For our own waits: ignored, as a parent may leave it, SIGCHLD
        // makes the kernel reap the children, and `wait` fail (ECHILD).
        // SAFETY: the default action runs no code of ours.
        chld: unsafe { sigaction(Signal::SIGCHLD, &default) }?,
        mask: {
            SigSet::from(Signal::SIGUSR1).thread_block()?;
            found_mask
        },
    };

    let mut out = io::stdout();
    let mut row = |who: &str, status: &str| {
        writeln!(out, "{who:<12} {}", summary(status))
    };
    row("started with", &started)?;
    row("parent", &fs::read_to_string("/proc/self/status")?)?;
    // A child that failed, or was killed before it printed, printed
    // nothing: that must not pass for a child that inherited nothing.
    let mut child =
        |who: &str, out: io::Result<Output>| -> Result<(), Box<dyn Error>> {
            let out = out?;
            if !out.status.success() {
                return Err(
                    format!("the {who} child failed: {}", out.status).into()
                );
            }
            row(who, &String::from_utf8_lossy(&out.stdout))?;
            Ok(())
        };
    let cat = |mut command: Command| {
        let command = command.arg("/proc/self/status");
        command.stdout(Stdio::piped()).spawn()?.wait_with_output()
    };
    child("Command", cat(Command::new("cat")))?;
    child("reset all", cat(reset_all("cat")))?;
    child("restored", all_blocked(restoring("cat", saved)))?;
    child("thread mask", with_thread_mask(saved.mask, "cat"))?;
    row("fork + exec", &forked(true)?)?;
    row("fork alone", &forked(false)?)?;

    // The ignored SIGINT, at work: a SIGINT, then a SIGKILL, which the
    // `sleep` cannot ignore. Had the SIGINT acted, the kernel would have
    // marked it dying of SIGINT already, and dropped the SIGKILL.
    let mut sleeper = Command::new("sleep").arg("30").spawn()?;
    let sent = send_sigint(&sleeper);
    // Sent even if the SIGINT was not: ended and reaped whatever
    // happened, before an error is reported.
    let _ = sleeper.kill();
    let status = sleeper.wait()?;
    sent?;
    let signal = status.signal().and_then(|n| Signal::try_from(n).ok());
    writeln!(
        out,
        "sleep, sent SIGINT then SIGKILL: killed by {}",
        signal.map_or("no signal", Signal::as_str)
    )?;
    Ok(())
}

/// Sends SIGINT to `sleeper`, once it runs with SIGINT ignored.
fn send_sigint(sleeper: &Child) -> Result<(), Box<dyn Error>> {
    let pid = Pid::from_raw(sleeper.id() as i32);
    wait_until_ignored(pid, Signal::SIGINT)?;
    kill(pid, Signal::SIGINT)?;
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: restore
/// A `Command` whose program starts with the signal settings this process
/// started with: what `run` changed is put back, and nothing else, so
/// that what the user chose (a SIGHUP ignored by `nohup`) passes on.
fn restoring(program: &str, saved: Saved) -> Command {
    let mut command = Command::new(program);
    // SAFETY: between fork and exec the child makes four system calls,
    // all async-signal-safe, and allocates nothing: `saved` was copied
    // into the closure before the fork.
    unsafe {
        command.pre_exec(move || {
            // Dispositions first, the mask last: a signal unblocked here
            // never runs one of our handlers in the child.
            sigaction(Signal::SIGINT, &saved.int)?;
            sigaction(Signal::SIGTERM, &saved.term)?;
            sigaction(Signal::SIGCHLD, &saved.chld)?;
            saved.mask.thread_set_mask()?;
            Ok(())
        })
    };
    command
}

/// Spawns `command`, a `restoring` one, with every signal blocked in this
/// thread until the child exists. std's fork blocks nothing: the child
/// starts with our handlers and our mask, and until its closure has put
/// the dispositions back, a signal we catch would run our handler in it.
/// Blocked, the signal waits, and the closure's last call sets the mask.
fn all_blocked(mut command: Command) -> io::Result<Output> {
    let ours = SigSet::all().thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let spawned = command
        .arg("/proc/self/status")
        .stdout(Stdio::piped())
        .spawn();
    let back = ours.thread_set_mask();
    let out = spawned?.wait_with_output()?;
    back?;
    Ok(out)
}

/// Starts `program` with this thread's mask set to `mask` for the moment
/// of the spawn: std's posix_spawn gives the child the spawning thread's
/// mask. Dispositions it cannot change; and a signal that `mask` unblocks
/// may be delivered to this thread meanwhile.
fn with_thread_mask(mask: SigSet, program: &str) -> io::Result<Output> {
    let ours = mask.thread_swap_mask(SigmaskHow::SIG_SETMASK)?;
    let spawned = Command::new(program)
        .arg("/proc/self/status")
        .stdout(Stdio::piped())
        .spawn();
    let back = ours.thread_set_mask();
    let out = spawned?.wait_with_output()?;
    back?;
    Ok(out)
}
// ANCHOR_END: restore

/// WRONG: puts every standard signal back to its default in the child,
/// and empties its mask. That also undoes what this program was started
/// with on purpose: a SIGHUP ignored by `nohup`, or a SIGINT ignored by
/// the shell that started a background job.
fn reset_all(program: &str) -> Command {
    let mut command = Command::new(program);
    // SAFETY: between fork and exec the child only makes system calls
    // that are async-signal-safe: sigaction and sigprocmask.
    unsafe {
        command.pre_exec(|| {
            for n in 1..32 {
                let Ok(signal) = Signal::try_from(n) else {
                    continue;
                };
                if !matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
                    let _ = signal_default(signal);
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

/// Forks a child that writes its /proc/self/status into a pipe, by
/// running `cat` (with `exec`) or by itself, and returns what it wrote.
fn forked(exec: bool) -> Result<String, Box<dyn Error>> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    // Prepared before the fork. The child still allocates (nix's `execvp`
    // builds its argument array, `copy_status` reads into a Vec), which is
    // safe only because this program has one thread: in a threaded one,
    // prepare every pointer first and call `execv` (Chapter 24, Listing 24-1).
    let cat = CString::new("cat")?;
    let args = [cat.clone(), CString::new("/proc/self/status")?];
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(read_end);
            // A step that fails must not pass for success: 127 if `cat`
            // could not be run, as a shell says it, 1 if the copy failed.
            let status = if exec {
                if dup2_stdout(&write_end).is_ok() {
                    let _ = execvp(&cat, &args); // Returns only if it failed.
                }
                127
            } else {
                match copy_status(write_end) {
                    Ok(()) => 0,
                    Err(_) => 1,
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut text = String::new();
            File::from(read_end).read_to_string(&mut text)?;
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(text),
                other => {
                    let who = if exec { "fork + exec" } else { "fork alone" };
                    Err(format!("the {who} child failed: {other:?}").into())
                }
            }
        }
    }
}

fn copy_status(to: OwnedFd) -> io::Result<()> {
    let text = fs::read("/proc/self/status")?;
    File::from(to).write_all(&text)
}

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
        "ignores {:<14} blocks {:<8} catches {}",
        list("SigIgn:"),
        list("SigBlk:"),
        list("SigCgt:")
    )
}
// ANCHOR_END: decode

/// Waits until `pid` has exec'ed, gone to sleep, and shows `signal`
/// ignored. The name changes part-way through `execve`; "sleeping" comes
/// only once `sleep` runs its own code, so a signal sent then cannot cut
/// the `execve` short (which would hide it from a trace).
fn wait_until_ignored(pid: Pid, signal: Signal) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let name = status.lines().next().unwrap_or_default();
        let asleep = status.lines().any(|line| line.starts_with("State:\tS"));
        let ignored = status
            .lines()
            .find_map(|line| line.strip_prefix("SigIgn:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal as i32 - 1)) != 0);
        if name.ends_with("sleep") && asleep && ignored {
            return Ok(());
        }
        if Instant::now() > deadline {
            let signal = signal.as_str();
            return Err(
                format!("sleep did not start with {signal} ignored").into()
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
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
