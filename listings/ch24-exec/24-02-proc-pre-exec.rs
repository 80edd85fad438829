// ANCHOR: whole
// Listing 24-2: what `pre_exec` may do, between `fork` and `exec`, in the
// child that `Command` makes:
//
// - `alarm`: set an alarm, which survives `exec`: `sleep 5` dies of it
//   after a second.
// - `chdir DIR`: change directory with a path made before `fork`, and
//   report a failure as an `io::Error` that carries only errno, which
//   `spawn` returns to the parent.
// - `lock`: what it may not do. Another thread holds the lock on stdout
//   while `pre_exec` prints: the child waits for a lock whose owner does
//   not exist in it, and never reaches `exec`. A watchdog kills it after
//   two seconds.

use std::error::Error;
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Command, ExitCode, ExitStatus};
use std::sync::mpsc::channel;
use std::thread;
use std::time::Duration;

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction, signal,
};
use nix::unistd::{Pid, alarm, getpid, getppid};

const USAGE: &str = "usage: proc-pre-exec alarm|chdir DIR|lock";
/// How long the watchdog of `lock` lets the child try.
const WAIT: Duration = Duration::from_secs(2);

enum Demo {
    Alarm,
    Chdir(OsString),
    Lock,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("proc-pre-exec: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    // Before any child starts: each must stay a zombie until reaped.
    let chld = keep_own_zombies()?;
    match parse_args().map_err(|e| format!("{e}; {USAGE}"))? {
        Demo::Alarm => with_alarm(chld),
        Demo::Chdir(dir) => with_chdir(dir, chld),
        Demo::Lock => with_lock(chld),
    }
}

// ANCHOR: alarm
fn with_alarm(chld: SigAction) -> Result<(), Box<dyn Error>> {
    let mut command = Command::new("sleep");
    command.arg("5");
    sigchld_as_found(&mut command, chld);
    // SAFETY: `signal` (sigaction), `pthread_sigmask` and `alarm` are
    // system calls, async-signal-safe; an error is a bare errno, and
    // nothing here allocates.
    unsafe {
        command.pre_exec(|| {
            // `sleep` inherits whatever our parent did with SIGALRM:
            // ignored, or blocked, it would never end `sleep`.
            signal(Signal::SIGALRM, SigHandler::SigDfl)?;
            SigSet::from(Signal::SIGALRM).thread_unblock()?;
            alarm::set(1);
            Ok(())
        })
    };
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start sleep: {err}"))?;
    let status = child.wait()?;
    writeln!(
        io::stdout(),
        "sleep 5, with alarm(1) in pre_exec: {}",
        describe(status)
    )?;
    Ok(())
}
// ANCHOR_END: alarm

// ANCHOR: chdir
fn with_chdir(dir: OsString, chld: SigAction) -> Result<(), Box<dyn Error>> {
    // Made now, in the parent: the child must not allocate.
    let path = CString::new(dir.as_bytes())?;
    let mut command = Command::new("pwd");
    sigchld_as_found(&mut command, chld);
    // SAFETY: `chdir` is a system call, async-signal-safe; the closure
    // only reads `path`, and `last_os_error` holds errno without
    // allocating.
    unsafe {
        command.pre_exec(move || {
            if nix::libc::chdir(path.as_ptr()) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    };
    // An error returned by the closure comes back from `spawn`.
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start pwd: {err}"))?;
    let status = child.wait()?;
    let dir = dir.to_string_lossy();
    writeln!(
        io::stdout(),
        "pwd, with chdir({dir:?}) in pre_exec: {}",
        describe(status)
    )?;
    Ok(())
}
// ANCHOR_END: chdir

// ANCHOR: lock
fn with_lock(chld: SigAction) -> Result<(), Box<dyn Error>> {
    let (locked, is_locked) = channel();
    let (release, released) = channel::<()>();
    let holder = thread::Builder::new().spawn(move || {
        let stdout = io::stdout();
        let _lock = stdout.lock();
        let _ = locked.send(());
        // The watchdog: any child still here after WAIT is stuck.
        if released.recv_timeout(WAIT).is_err() {
            for child in children() {
                let _ = kill(child, Signal::SIGKILL);
            }
            let _ = released.recv();
        }
    });
    let holder =
        holder.map_err(|err| format!("cannot start a thread: {err}"))?;
    is_locked.recv()?;
    let mut command = Command::new("true");
    sigchld_as_found(&mut command, chld);
    let parent = getpid();
    // SAFETY: NONE. This breaks the rule on purpose: `println!` takes a
    // lock and may allocate. Never do this. (The two calls before it are
    // system calls, which may be made: should we die, the stuck child
    // dies with us instead of waiting for ever.)
    unsafe {
        command.pre_exec(move || {
            set_pdeathsig(Signal::SIGKILL)?;
            if getppid() != parent {
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            println!("in pre_exec");
            Ok(())
        })
    };
    // `spawn` returns once the child has called exec, or has died.
    let result = command.spawn().and_then(|mut child| child.wait());
    let _ = release.send(());
    holder.join().map_err(|_| "the lock holder panicked")?;
    let status = result?;
    writeln!(
        io::stdout(),
        "true, with println! in pre_exec: {}",
        describe(status)
    )?;
    Ok(())
}

/// The pids of this process's children, from /proc (Linux).
fn children() -> Vec<Pid> {
    let me = process::id().to_string();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the name in parentheses: the state, then the parent.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, t)| t.split(' ').nth(1));
        let pid = entry.file_name().to_str().and_then(|p| p.parse().ok());
        if let (Some(ppid), Some(pid)) = (ppid, pid) {
            if ppid == me {
                found.push(Pid::from_raw(pid));
            }
        }
    }
    found
}
// ANCHOR_END: lock

/// How a child ended, in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal().map(Signal::try_from)) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(Ok(signal))) => format!("killed by {signal}"),
        _ => format!("ended: {status}"),
    }
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on the next `println!`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and `println!` would panic.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Reads `alarm`, `chdir DIR` or `lock` from the command line.
fn parse_args() -> Result<Demo, lexopt::Error> {
    use lexopt::prelude::*;
    let mut words: Vec<OsString> = Vec::new();
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Value(value) if words.len() < 2 => words.push(value),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    let mut words = words.into_iter();
    let demo = match (words.next(), words.next()) {
        (Some(word), dir) => match (word.string()?.as_str(), dir) {
            ("alarm", None) => Demo::Alarm,
            ("chdir", Some(dir)) => Demo::Chdir(dir),
            ("lock", None) => Demo::Lock,
            ("chdir", None) => return Err("chdir needs a directory".into()),
            (demo @ ("alarm" | "lock"), Some(_)) => {
                return Err(format!("{demo} takes no argument").into());
            }
            (other, _) => {
                return Err(
                    format!("unknown demo '{}'", other.escape_debug()).into()
                );
            }
        },
        (None, _) => return Err("alarm, chdir DIR or lock?".into()),
    };
    Ok(demo)
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

/// Gives SIGCHLD its default action back, and returns the action found.
/// A parent that left it ignored passed that on through `exec` (Chapter
/// 24), and then the kernel reaps our children itself: every wait fails
/// with ECHILD, and a child's pid, or its group's id, may go to a stranger
/// as soon as the child exits, while we may still signal it.
fn keep_own_zombies() -> nix::Result<SigAction> {
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    unsafe { sigaction(Signal::SIGCHLD, &default) }
}

/// Gives the child that `command` starts SIGCHLD's action as we `found`
/// it, ignored perhaps: `keep_own_zombies` changed it for our own
/// waits, not for the programs we start (Chapter 12).
fn sigchld_as_found(command: &mut Command, found: SigAction) {
    // SAFETY: between fork and exec the child makes one system call,
    // sigaction, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            sigaction(Signal::SIGCHLD, &found)?;
            Ok(())
        })
    };
}
// ANCHOR_END: whole
