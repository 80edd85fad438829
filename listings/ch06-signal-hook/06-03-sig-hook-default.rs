// ANCHOR: whole
// Listing 6-3: clean up, then die of the signal. It waits for SIGTERM or
// SIGINT with signal-hook's iterator, cleans up in ordinary code, and then
// lets the signal's default action end it, so that its parent sees "killed
// by SIGTERM", the truth. With `--exit-code` it exits with status 128+n
// instead, as many programs do; Chapter 12 compares the two. Started with
// SIGINT ignored (a script's `&` job), it leaves it so.

use std::error::Error;
use std::fs;
use std::io::{self, Write};
use std::process::{self, ExitCode};

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level;

const USAGE: &str = "usage: sig-hook-default [--exit-code]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-hook-default: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<ExitCode, Box<dyn Error>> {
    restore_sigpipe()?;
    let exit_code = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let stop_signals = stop_signals()?;
    // Never dropped: it would close its socket before signal-hook stops
    // writing to it, and a second signal then would raise SIGPIPE, now at
    // its default, in place of the exit status (Listing 6-2). Blocked
    // while it registers them, as there.
    block(&stop_signals)?;
    let signals = Signals::new(&stop_signals)
        .map_err(|err| format!("cannot watch for signals: {err}"))?;
    let signals = Box::leak(Box::new(signals));
    unblock(&stop_signals)?; // Once the handlers are in place.
    let mut out = io::stdout();
    // "pid 4242; stop me with Ctrl-C or kill 4242". In a container the
    // pid to kill may differ from getpid(): see `how_to_stop`.
    writeln!(out, "Working as {}", how_to_stop())?;

    let number = signals.forever().next().ok_or("iterator closed")?;
    let name = Signal::try_from(number)?;
    writeln!(out, "Got {name}: cleaning up")?;
    // ... close files, remove temporary files, tell peers ...
    if exit_code {
        writeln!(out, "Cleaned up; exiting with status {}", 128 + number)?;
        return Ok(ExitCode::from(128 + number as u8));
    }
    writeln!(out, "Cleaned up; dying of {name}")?;
    out.flush()?;
    // Puts back the default action, unblocks the signal and raises it:
    // the process ends here, killed by `number`.
    low_level::emulate_default_handler(number)?;
    Err(format!("{name} did not end the process").into())
}
// ANCHOR_END: run

/// "pid 4242; stop me with Ctrl-C or kill 4242": the pid, and what to
/// `kill` from another terminal, which in a PID namespace of our own (a
/// container) may be a pid that only a shell outside knows, or none.
fn how_to_stop() -> String {
    let pid = whoami();
    let how = match pid.to_kill() {
        // Right from a shell in the same container, not from the host.
        Some(target) if hidden_from_host(&pid) => {
            format!("or kill {target} (from the host: pidof sig-hook-default)")
        }
        Some(target) => format!("or kill {target}"),
        None => "or find my pid outside with: pidof sig-hook-default".into(),
    };
    format!("{pid}; stop me with Ctrl-C {how}")
}

/// This process's pid, and, in a PID namespace of its own (`unshare
/// --pid`, a container), the pid the reader's shell outside knows it by:
/// there, `kill 1` would signal the machine's init.
struct Whoami {
    here: u32,
    outside: Option<u32>,
}

impl Whoami {
    /// The pid a shell outside can `kill`: none for pid 1 of a namespace
    /// whose /proc is its own (`unshare --mount-proc`, a container), where
    /// NSpid lists no pid outside and `kill 1` would signal the machine's
    /// init.
    fn to_kill(&self) -> Option<u32> {
        match self.outside {
            Some(outside) => Some(outside),
            None if self.here == 1 => None,
            None => Some(self.here),
        }
    }
}

/// "pid 4242", or "pid 1 (pid 4242 outside)" in a PID namespace.
impl std::fmt::Display for Whoami {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "pid {}", self.here)?;
        match self.outside {
            Some(outside) => write!(f, " (pid {outside} outside)"),
            None => Ok(()),
        }
    }
}

/// Reads the NSpid line of /proc/self/status, which lists the pid in
/// every namespace from /proc's own (the machine's, unless /proc was
/// mounted anew, as `unshare --mount-proc` does) to ours, as Listing
/// 12-4 does. Without /proc (a chroot, a bare container) there is no such
/// line: the pid inside is all it knows, and that is no reason to refuse
/// to run.
fn whoami() -> Whoami {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let pids: Vec<u32> = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .map(|pids| pids.split_whitespace().filter_map(|p| p.parse().ok()))
        .into_iter()
        .flatten()
        .collect();
    match pids.as_slice() {
        [outside, .., here] => Whoami {
            here: *here,
            outside: Some(*outside),
        },
        _ => Whoami {
            here: process::id(),
            outside: None,
        },
    }
}

/// Whether the host knows this process by a pid it cannot see: NSpid
/// lists none outside, and its PID namespace is not the machine's, whose
/// inode number is 4026531836 on every Linux since 3.8 (PROC_PID_INIT_INO),
/// or there is no /proc to tell.
fn hidden_from_host(pid: &Whoami) -> bool {
    pid.outside.is_none()
        && !fs::read_link("/proc/self/ns/pid")
            .is_ok_and(|ns| ns.as_os_str() == "pid:[4026531836]")
}

/// SIGINT and SIGTERM, less a SIGINT that the parent left ignored (a job
/// that a script starts with `&`): ignoring it was the user's choice, and
/// signal-hook's `register` would replace the "ignore" with its handler.
fn stop_signals() -> io::Result<Vec<i32>> {
    let int_ignored = is_ignored(SIGINT)?;
    Ok([SIGINT, SIGTERM]
        .into_iter()
        .filter(|&number| !(number == SIGINT && int_ignored))
        .collect())
}

/// Blocks `numbers` while signal-hook registers them: it installs its
/// handler in the kernel before it records what the handler is to do, and
/// a signal in between would run it for nothing, the default action
/// already gone. Blocked, the signal waits, pending, for `unblock`.
fn block(numbers: &[i32]) -> io::Result<()> {
    let mut set = SigSet::empty();
    for &number in numbers {
        set.add(Signal::try_from(number)?);
    }
    Ok(set.thread_block()?)
}

/// Unblocks `numbers`, once their handlers are in place. A parent's mask
/// passes through `exec`, and a blocked signal reaches neither a handler
/// nor its default action. Not before the handlers: a signal that came
/// while blocked is pending, and is delivered the moment it is unblocked.
fn unblock(numbers: &[i32]) -> io::Result<()> {
    let mut set = SigSet::empty();
    for &number in numbers {
        set.add(Signal::try_from(number)?);
    }
    Ok(set.thread_unblock()?)
}

/// Whether `signal` is ignored: inherited so from the parent, through
/// `exec`. A null new action makes `sigaction` only report the current one.
fn is_ignored(signal: i32) -> io::Result<bool> {
    let mut current = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        nix::libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr())
    };
    nix::errno::Errno::result(done)?;
    // SAFETY: `sigaction` succeeded, and filled it in.
    let current = unsafe { current.assume_init() };
    Ok(current.sa_sigaction == nix::libc::SIG_IGN)
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

/// Reads `[--exit-code]` from the command line.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut exit_code = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("exit-code") => exit_code = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(exit_code)
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
