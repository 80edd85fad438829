// ANCHOR: whole
// Listing 24-1: what a program inherits across `exec`, started by hand
// (`fork`: fork, dup2, exec) or by `std::process::Command` (`command`).
// Before it starts anything, the program blocks SIGUSR1, ignores SIGUSR2,
// catches SIGALRM, and makes two pipes, one with `pipe` and one with
// `pipe2(O_CLOEXEC)`. Then it starts `cat` with its stdin and stdout
// connected to us, checks that `cat` runs by sending it a line and
// reading it back, and prints, from /proc (Linux), the signals `cat` has
// blocked, ignored and caught, and the descriptors it has open, beside
// its own.
//
// SIGPIPE stays ignored, as the Rust runtime set it, because that is part
// of what a child inherits; our own output is written with `writeln!`.

use std::env;
use std::error::Error;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::raw::c_char;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{self, Command, ExitCode, ExitStatus, Stdio};
use std::ptr;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::{self, c_int};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, kill,
    sigaction, signal, sigprocmask,
};
use nix::sys::stat::fstat;
use nix::unistd::{
    ForkResult, Pid, dup2_stdin, dup2_stdout, fork, pipe, pipe2, write,
};

const USAGE: &str = "usage: proc-exec command|fork";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("proc-exec: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Does nothing; it is there to be caught.
extern "C" fn on_alarm(_: c_int) {}

// ANCHOR: setup
fn run() -> Result<(), Box<dyn Error>> {
    let by_hand = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    clean_slate()?;
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::from(Signal::SIGUSR1)),
        None,
    )?;
    // SAFETY: ignoring runs no code of ours.
    unsafe { signal(Signal::SIGUSR2, SigHandler::SigIgn) }?;
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing at all, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGALRM, &action) }?;
    // Both pipes stay open in this process until it ends, where a child
    // can inherit them. `leaky` is not close-on-exec, on purpose.
    let leaky = pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let tight = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    let pipes = Pipes {
        leaky: fstat(&leaky.0)?.st_ino,
        tight: fstat(&tight.0)?.st_ino,
    };

    let mut out = io::stdout();
    writeln!(out, "proc-exec (pid {}):", process::id())?;
    writeln!(out, "{}", inherited(process::id(), &pipes)?)?;
    let (pid, stdin, stdout) = if by_hand {
        writeln!(out, "cat, started by fork, dup2 and execv:")?;
        spawn_by_hand()?
    } else {
        writeln!(out, "cat, started by Command:")?;
        spawn_with_command()?
    };
    // ANCHOR_END: setup
    let result = report(pid, File::from(stdin), File::from(stdout), &pipes);
    // `cat`'s input is closed by now, so it exits: reap it whatever the
    // result, unless that is done already (ECHILD).
    if result.is_err() {
        let _ = reap_raw(pid);
    }
    result
}

/// How long `cat` has to echo our line.
const ECHO_LIMIT: Duration = Duration::from_secs(5);

/// Checks that `cat` runs, prints what it inherited, and reaps it.
fn report(
    pid: Pid,
    mut stdin: File,
    stdout: File,
    pipes: &Pipes,
) -> Result<(), Box<dyn Error>> {
    // Proof that `cat` runs its own code: exec is over. Whatever else
    // runs under that name, or a `cat` that died, fails the proof, and
    // is reaped and reported, not described as if it were `cat`.
    let deadline = Instant::now() + ECHO_LIMIT;
    let echoed = stdin
        .write_all(b"ready\n")
        .and_then(|()| line_before(&stdout, deadline));
    if !matches!(&echoed, Ok(Some(line)) if line == "ready\n") {
        // A program that reads and does not answer, such as `sort`,
        // would keep us waiting: not reaped, the pid is still its own.
        // Killed before its input ends, so that the status says so.
        let _ = kill(pid, Signal::SIGKILL);
        drop(stdin);
        let status = reap_raw(pid)?;
        let within = match echoed {
            Ok(None) => format!(" within {} s", ECHO_LIMIT.as_secs()),
            _ => String::new(),
        };
        return Err(
            format!("cat did not echo our line{within}: {status}").into()
        );
    }
    writeln!(io::stdout(), "{}", inherited(pid.as_raw() as u32, pipes)?)?;
    drop(stdin); // The end of cat's input: it exits.
    reap_raw(pid)?;
    Ok(())
}

/// One line from `from`, or `None` if none has come by `deadline`. The
/// end of the stream before a newline gives what came.
fn line_before(from: &File, deadline: Instant) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0];
    while line.last() != Some(&b'\n') {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, limit) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
        match (&*from).read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

// ANCHOR: clean_slate
/// Empties the signal mask, and gives back its default action to every
/// signal this process was started ignoring, SIGPIPE apart, which the
/// Rust runtime ignores itself. Without this, what our own parent left
/// us would show below as if we had set it: `nohup` ignores SIGHUP, and
/// a shell script's background job starts ignoring SIGINT and SIGQUIT.
/// That is for this demonstration only, which must show just what it
/// set: a program that shows nothing keeps what its user left ignored,
/// and restores only what it changed itself (Chapter 12).
/// A signal the parent left blocked and pending is thrown away first:
/// unblocked at its default action, it would end this process. Every
/// signal counts, the real-time ones too (SIGRTMIN to SIGRTMAX), whose
/// default action ends a process as well; nix's `Signal` has none of
/// them, so the calls are libc's. The C library keeps the two numbers
/// below SIGRTMIN for itself, and refuses to change them.
fn clean_slate() -> Result<(), Box<dyn Error>> {
    use nix::libc::{SIG_DFL, SIG_ERR, SIG_IGN, SIGPIPE, SIGRTMAX, SIGRTMIN};
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let pending = mask(&status, "SigPnd") | mask(&status, "ShdPnd");
    let ignored = mask(&status, "SigIgn");
    for number in (1..32).chain(SIGRTMIN()..=SIGRTMAX()) {
        if (ignored | pending) & bit(number) != 0 && number != SIGPIPE {
            // Ignoring a signal discards it if it is pending (POSIX,
            // sigaction); then back to the default.
            for action in [SIG_IGN, SIG_DFL] {
                // SAFETY: neither action runs code of ours.
                if unsafe { nix::libc::signal(number, action) } == SIG_ERR {
                    return Err(io::Error::last_os_error().into());
                }
            }
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}
// ANCHOR_END: clean_slate

// ANCHOR: command
/// `cat` with stdin and stdout piped, by `Command`. The `Child` is
/// dropped without waiting: the caller reaps `cat` by its pid.
fn spawn_with_command() -> Result<(Pid, OwnedFd, OwnedFd), Box<dyn Error>> {
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| {
            // EMFILE is our own table: the pipes `Command` makes for cat
            // found no descriptor free. Not cat's doing: it never ran.
            let ours = err.raw_os_error() == Some(libc::EMFILE);
            let why = if ours {
                "this process is out of descriptors: "
            } else {
                ""
            };
            format!("cannot run cat: {why}{err}")
        })?;
    let stdin = cat.stdin.take().ok_or("no stdin")?;
    let stdout = cat.stdout.take().ok_or("no stdout")?;
    Ok((Pid::from_raw(cat.id() as i32), stdin.into(), stdout.into()))
}
// ANCHOR_END: command

// ANCHOR: by_hand
/// `cat` with stdin and stdout piped, by hand, as `Command` would if it
/// did nothing else.
fn spawn_by_hand() -> Result<(Pid, OwnedFd, OwnedFd), Box<dyn Error>> {
    let (stdin_r, stdin_w) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe for cat's stdin: {e}"))?;
    let (stdout_r, stdout_w) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe for cat's stdout: {e}"))?;
    // A third pipe only to report a failed exec: on success, exec closes
    // the child's end (CLOEXEC) and the parent reads the end of stream.
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe for exec's errors: {e}"))?;
    // Everything the child needs is made before `fork`: after it, the
    // child makes system calls and nothing else, so it allocates nothing.
    // Every path where `cat` may be, as execvp would try them, and argv,
    // the array of C pointers that exec takes, ending with a null.
    let paths = candidates("cat")?;
    let name = CString::new("cat")?;
    let argv = [name.as_ptr(), ptr::null()];
    io::stdout().flush()?;
    // SAFETY: no other thread exists, so no lock can be held by one.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            // dup2 makes fd 0 and 1 without CLOEXEC: they survive exec,
            // while the originals close.
            let dups =
                dup2_stdin(&stdin_r).and_then(|_| dup2_stdout(&stdout_w));
            let errno = match dups {
                Ok(_) => exec_first(&paths, &argv),
                Err(errno) => errno,
            };
            // Only reached if something failed: send errno, no message,
            // since building one would allocate.
            let _ = write(&report_w, &(errno as i32).to_ne_bytes());
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            drop((stdin_r, stdout_w, report_w));
            let mut errno = [0; 4];
            let mut report = File::from(report_r);
            if read_full(&mut report, &mut errno)? == errno.len() {
                reap_raw(child)?;
                let err =
                    io::Error::from_raw_os_error(i32::from_ne_bytes(errno));
                return Err(format!("cannot run cat: {err}").into());
            }
            Ok((child, stdin_w, stdout_r))
        }
    }
}

/// Tries `execv` with each path in turn, as glibc's `execvp` does with
/// `PATH`; returns only if it failed, with the error to report: EACCES if
/// some place refused, else the last place's error. Between `fork` and
/// `exec` it reads what was made before, and allocates nothing.
fn exec_first(paths: &[CString], argv: &[*const c_char; 2]) -> Errno {
    let (mut last, mut refused) = (Errno::ENOENT, false);
    for path in paths {
        // SAFETY: `path` and every string in `argv` end in a NUL, and
        // `argv` ends with a null pointer; all live until exec.
        unsafe { nix::libc::execv(path.as_ptr(), argv.as_ptr()) };
        match Errno::last() {
            // Not there: try the next place.
            errno @ (Errno::ENOENT
            | Errno::ENOTDIR
            | Errno::ESTALE
            | Errno::ENODEV
            | Errno::ETIMEDOUT) => last = errno,
            // There, but not ours to run: remember it, and try on.
            Errno::EACCES => refused = true,
            // Found, but it would not run: execvp stops here too.
            errno => return errno,
        }
    }
    if refused { Errno::EACCES } else { last }
}

/// The paths where `execvp` would look for `program`: each directory of
/// PATH, or of the C library's default when PATH is not set.
fn candidates(program: &str) -> Result<Vec<CString>, Box<dyn Error>> {
    let path = env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    let mut paths = Vec::new();
    for dir in env::split_paths(&path) {
        let full = dir.join(program).into_os_string().into_vec();
        paths.push(CString::new(full)?);
    }
    Ok(paths)
}
// ANCHOR_END: by_hand

/// Reaps `child` with `waitpid`, which blocks until it has ended, and
/// returns how it ended, whatever the signal: raw, into std's
/// `ExitStatus`. Not nix's `waitpid`: nix 0.32 turns a status into a
/// `Signal`, which names no real-time signal, so a child killed by
/// SIGRTMIN makes it fail with EINVAL, after the kernel reaped it.
fn reap_raw(child: Pid) -> nix::Result<ExitStatus> {
    let mut status = 0;
    // SAFETY: `waitpid` writes only `status`, which is ours.
    let done = unsafe { libc::waitpid(child.as_raw(), &mut status, 0) };
    Errno::result(done)?;
    Ok(ExitStatus::from_raw(status))
}

/// Reads until `buf` is full or the stream ends; returns how much came.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(got)
}

// ANCHOR: inherited
/// The inodes of the two pipes made before starting `cat`.
struct Pipes {
    leaky: u64,
    tight: u64,
}

/// The standard signals `pid` blocks, ignores and catches, and the
/// descriptors it has open, from /proc/PID (Linux).
fn inherited(pid: u32, pipes: &Pipes) -> Result<String, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let mut lines = Vec::new();
    for (field, what) in [
        ("SigBlk", "blocked"),
        ("SigIgn", "ignored"),
        ("SigCgt", "caught"),
    ] {
        lines.push(format!("  {what}: {}", signal_names(mask(&status, field))));
    }
    let (mut leaky, mut tight, mut other) = (vec![], vec![], vec![]);
    let mut fds: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("cannot list /proc/{pid}/fd: {e}"))?
        .flatten()
        .filter_map(|fd| fd.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    for fd in fds {
        // The directory listing had a descriptor of its own, gone now.
        let Ok(link) = fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
            continue;
        };
        let link = link.to_string_lossy();
        if link == format!("pipe:[{}]", pipes.leaky) {
            leaky.push(fd.to_string());
        } else if link == format!("pipe:[{}]", pipes.tight) {
            tight.push(fd.to_string());
        } else {
            other.push(fd.to_string());
        }
    }
    lines.push(format!("  descriptors: {}", other.join(" ")));
    lines.push(format!("  from pipe(): {}", none_if_empty(&leaky)));
    lines.push(format!(
        "  from pipe2(O_CLOEXEC): {}",
        none_if_empty(&tight)
    ));
    Ok(lines.join("\n"))
}

/// A signal mask from /proc/PID/status, such as `SigIgn`: a hexadecimal
/// number in which bit n-1 stands for signal n.
fn mask(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// The bit of signal number `n` in such a mask.
fn bit(n: i32) -> u64 {
    1 << (n - 1)
}

/// The names of the standard signals (1 to 31) whose bits are set.
fn signal_names(mask: u64) -> String {
    let names: Vec<String> = (1..=31)
        .filter(|&n| mask & bit(n) != 0)
        .map(|n| Signal::try_from(n).map_or(n.to_string(), |s| s.to_string()))
        .collect();
    none_if_empty(&names)
}
// ANCHOR_END: inherited

fn none_if_empty(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(" ")
    }
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Reads `command|fork`; true for `fork`.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut by_hand = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Value(value) if by_hand.is_none() => {
                by_hand = Some(match value.string()?.as_str() {
                    "command" => false,
                    "fork" => true,
                    other => {
                        return Err(format!(
                            "unknown way '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                });
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    by_hand.ok_or_else(|| "command or fork?".into())
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
