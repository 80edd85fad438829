// ANCHOR: whole
// Listing 12-1: a temporary file that is removed by `Drop`, and four ways
// to end on SIGTERM or SIGINT (`--end`):
//
//   default   no handler: the signal's default action kills the process
//   exit      a handler sets a flag, and the loop calls process::exit
//   return    the loop returns, `main` returns an ExitCode of 128+n
//   reraise   the loop returns, and once everything is dropped, `main`
//             dies of the signal after all
//
// The file is in a private directory, made with `mkdtemp` in `--dir DIR`
// (default: the system's, `$TMPDIR` or /tmp), which `Drop` removes with
// it. Only the last two ends remove them. Started with SIGINT ignored (a
// script's `&` job), it leaves it so, and stops on SIGTERM alone.

use std::error::Error;
use std::fs;
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::{flag, low_level};

const USAGE: &str =
    "usage: sig-cleanup --end default|exit|return|reraise [--dir DIR]";

#[derive(Clone, Copy, PartialEq)]
enum End {
    Default,
    Exit,
    Return,
    Reraise,
}

// ANCHOR: main
fn main() -> ExitCode {
    match run() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some((signal, End::Reraise))) => {
            // Every value of `run` has been dropped by now: the file is
            // gone. Tell the parent the truth: the signal ended us.
            let _ = io::stdout().flush();
            let _ = low_level::emulate_default_handler(signal);
            // Not reached: the signal ends us, or, as a PID namespace's
            // first process, which the raise cannot end, the function
            // aborts (see Chapter 12; Listing 10-1's `die_of` exits there).
            ExitCode::FAILURE
        }
        Ok(Some((signal, _))) => ExitCode::from(128 + signal as u8),
        // Nobody reads our output: we left through here, so Drop ran.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-cleanup: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}
// ANCHOR_END: main

// ANCHOR: run
/// A private temporary directory with a file in it, removed when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.dir).is_ok() {
            let dir = escaped(&self.dir);
            let _ = writeln!(io::stdout(), "Drop: removed {dir}/");
        }
    }
}

/// Returns the signal that stopped it, and how to end.
fn run() -> Result<Option<(i32, End)>, Box<dyn Error>> {
    // SIGPIPE stays ignored: a closed output is an error that returns
    // through `main`, so that Drop runs on the way.
    let (end, dir) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let stop = Arc::new(AtomicUsize::new(0));
    let stop_signals = stop_signals()?;
    block(&stop_signals)?;
    for &number in &stop_signals {
        if end != End::Default {
            flag::register_usize(number, Arc::clone(&stop), number as usize)?;
        }
    }
    // In every mode, and after the handlers: a parent's mask passes
    // through `exec`, and a signal already pending is delivered now.
    unblock(&stop_signals)?;
    let scratch = Scratch {
        dir: private_dir(&dir).map_err(|err| {
            format!("cannot make a directory in {}: {err}", escaped(&dir))
        })?,
    };
    let file = scratch.dir.join("file");
    let shown = escaped(&file);
    fs::write(&file, "temporary\n")
        .map_err(|err| format!("cannot write {shown}: {err}"))?;
    let mut out = io::stdout();
    let pid = whoami();
    let hint = match pid.to_kill() {
        Some(target) => format!("try: kill {target}"),
        None => "find its pid outside with: pgrep -n sig-cleanup".into(),
    };
    writeln!(out, "Created {shown} as {pid}; {hint}")?;

    while stop.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(50));
    }
    let number = stop.load(Ordering::SeqCst) as i32;
    let name = Signal::try_from(number)?;
    // From here on the signal decides how we end: a reader that has gone
    // makes these lines fail, and must not turn the stop into a success.
    match end {
        End::Exit => {
            let _ = writeln!(out, "Got {name}: process::exit(0)");
            process::exit(0); // Runs no destructor: the file stays.
        }
        _ => {
            let _ = writeln!(out, "Got {name}: returning from run");
        }
    }
    Ok(Some((number, end)))
}
// ANCHOR_END: run

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

/// `path` as a message shows it: escaped as `str::escape_debug` escapes
/// (a file name on Linux may hold any byte but `/` and NUL), so that a
/// newline in it cannot start a line of its own.
fn escaped(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

/// `mkdtemp`: a new directory in `parent` with mode 0700, under a name
/// nobody can guess or take first.
fn private_dir(parent: &Path) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let template = parent.join("sig-cleanup.XXXXXX");
    let mut bytes = template.into_os_string().into_vec();
    bytes.push(0);
    // SAFETY: `bytes` is a writable, NUL-terminated template, which
    // mkdtemp rewrites in place.
    let made = unsafe { nix::libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(io::Error::last_os_error());
    }
    bytes.pop();
    Ok(std::ffi::OsString::from_vec(bytes).into())
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Reads `--end WAY [--dir DIR]` from the command line.
fn parse_args() -> Result<(End, PathBuf), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut end, mut dir) = (None, std::env::temp_dir());
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("end") => {
                end = Some(match args.value()?.string()?.as_str() {
                    "default" => End::Default,
                    "exit" => End::Exit,
                    "return" => End::Return,
                    "reraise" => End::Reraise,
                    other => {
                        return Err(format!(
                            "unknown end '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                });
            }
            Long("dir") => dir = args.value()?.into(),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok((end.ok_or("which --end?")?, dir))
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
