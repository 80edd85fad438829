// ANCHOR: whole
// Listing 23-3: a grandchild that keeps a pipe open after the child has
// exited. The child is a shell that starts `sleep 5` in the background
// and exits at once; the parent reads the child's stdout, a pipe it made,
// until the end of the stream. The end comes only when no process has the
// write end open any more, and `sleep` may have it:
//
// - made with `pipe`, the pipe's own descriptors leak into the shell, and
//   from there into `sleep`, although `sleep`'s stdout is /dev/null;
// - `--cloexec` makes them with `pipe2(O_CLOEXEC)`: `exec` closes them;
// - `--careless` lets `sleep` inherit the shell's stdout itself, which no
//   flag on our side can close;
// - `--group` starts the shell in a process group of its own, and kills
//   the group once the shell has exited: that ends every grandchild.
//
// Once it has named whoever holds the write end, it waits `--wait SECS`
// (60) more for the end of the stream, and fails if none comes.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, killpg, sigaction,
    signal,
};
use nix::sys::wait::WaitPidFlag;
use nix::unistd::{Pid, pipe, pipe2};

const USAGE: &str =
    "usage: spawn-grandchild [--cloexec] [--careless] [--group] [--wait SECS]";
/// How long the parent waits for the end of the stream, once the child
/// has exited, before it looks for whoever holds the pipe open.
const QUIET_MS: u16 = 2000;
/// How long it then waits for the end, unless `--wait` says otherwise.
const LAST_WAIT: Duration = Duration::from_secs(60);

struct Args {
    cloexec: bool,
    careless: bool,
    group: bool,
    /// The last wait for the end of the stream.
    wait: Duration,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("spawn-grandchild: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    let chld = keep_own_zombies()?;
    let (read_end, write_end) = if args.cloexec {
        pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot make a pipe: {e}"))?
    } else {
        // Not close-on-exec, on purpose: the leak to show.
        pipe().map_err(|e| format!("cannot make a pipe: {e}"))?
    };
    let script = if args.careless {
        r#"sleep 5 & echo "Child $$ started sleep as pid $!""#
    } else {
        r#"sleep 5 >/dev/null & echo "Child $$ started sleep as pid $!""#
    };
    let mut command = Command::new("sh");
    command.args(["-c", script]).stdout(write_end);
    sigchld_as_found(&mut command, chld);
    if args.group {
        command.process_group(0);
    }
    let child = command.spawn().map_err(|err| spawn_error("sh", &err))?;
    // The command holds our write end until it is dropped: drop it now.
    drop(command);
    let child = Pid::from_raw(child.id() as i32);

    let mut reader = File::from(read_end);
    let inode = reader.metadata()?.ino();
    // The child's one line, or why it said nothing. A grandchild can
    // hold the pipe open after the child has gone without a word, so
    // the wait has a limit. Whenever no line comes, at the end of the
    // stream or past the limit, a child that still runs is killed:
    // waiting for it below must not block either.
    let line = read_line(&mut reader, QUIET_MS);
    if line.is_err() {
        // Not reaped yet, so the pid is still our child's.
        let _ = kill(child, Signal::SIGKILL);
    }
    // ANCHOR: reap
    // Wait for the child to exit, but leave it a zombie for now: while it
    // is one, its pid, and so its group's id, cannot be given to anyone
    // else, and killing that group cannot hit a stranger.
    waitid_raw(Some(child), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)?;
    // The group is killed, and the child reaped, before we write a byte,
    // or report that the child said nothing: a write that fails, a
    // SIGPIPE that ends us, or a child that failed before its line must
    // not leave the group running, or the child unreaped.
    let killed = if args.group {
        // Then SIGCONT: a member that is stopped takes SIGTERM, and lets
        // the pipe go, only once it runs again.
        killpg(child, Signal::SIGTERM)
            .and_then(|()| killpg(child, Signal::SIGCONT))
    } else {
        Ok(())
    };
    let status = reap_raw(child)?;
    killed?;
    write!(io::stdout(), "{}", line?)?;
    if args.group {
        writeln!(
            io::stdout(),
            "The child has exited; killed its process group"
        )?;
    } else {
        writeln!(io::stdout(), "The child has exited")?;
    }
    if !status.success() {
        return Err(format!("the child failed: {status}").into());
    }
    // ANCHOR_END: reap
    if read_for(&mut reader, Duration::from_millis(QUIET_MS.into()))? {
        writeln!(io::stdout(), "End of stream")?;
        return Ok(());
    }
    for (name, pid, fd) in write_end_holders(inode) {
        writeln!(
            io::stdout(),
            "No end of stream: {name} (pid {pid}) has the write end as descriptor {fd}"
        )?;
    }
    if read_for(&mut reader, args.wait)? {
        writeln!(io::stdout(), "End of stream once sleep had exited")?;
        return Ok(());
    }
    let secs = args.wait.as_secs();
    Err(format!(
        "no end of stream after {secs} s more: the write end is still held"
    )
    .into())
}
// ANCHOR_END: run

/// Why `program` did not start. EMFILE is this process's own table: the
/// socket pair that `Command` makes before it forks, to hear of a failed
/// exec, found no descriptor free (exec itself takes none). Not
/// `program`'s doing: it never ran.
fn spawn_error(program: &str, err: &io::Error) -> String {
    if err.raw_os_error() == Some(libc::EMFILE) {
        format!(
            "cannot start {program}: this process is out of descriptors: {err}"
        )
    } else {
        format!("cannot start {program}: {err}")
    }
}

/// Waits as `waitid` does, for `child` or, if `None`, any child, and
/// returns the pid of the child it reports, with its status as `waitpid`
/// would give it; `None` if WNOHANG found no news. Not nix's `waitid`:
/// nix 0.32 turns a status into a `Signal`, which names no real-time
/// signal, so a child killed by SIGRTMIN makes it fail with EINVAL, the
/// report taken, and a caller that gives up leaves the other children.
fn waitid_raw(
    child: Option<Pid>,
    flags: WaitPidFlag,
) -> nix::Result<Option<(Pid, ExitStatus)>> {
    let (idtype, id) = match child {
        Some(pid) => (libc::P_PID, pid.as_raw() as libc::id_t),
        None => (libc::P_ALL, 0),
    };
    // SAFETY: zeros are a valid `siginfo_t`.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `waitid` writes only `info`, which is ours.
    let done = unsafe { libc::waitid(idtype, id, &mut info, flags.bits()) };
    Errno::result(done)?;
    // SAFETY: `waitid` filled in a child's report, or left the zeros.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    // The status packed as `waitpid` packs it, for `ExitStatus`.
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_KILLED => status,
        libc::CLD_DUMPED => status | 0x80,
        libc::CLD_CONTINUED => 0xffff,
        _ => (status << 8) | 0x7f, // CLD_STOPPED, CLD_TRAPPED
    };
    Ok(Some((Pid::from_raw(pid), ExitStatus::from_raw(raw))))
}

/// Reaps `child` with `waitpid`, which blocks until it has ended, and
/// returns how it ended, whatever the signal: raw, as `waitid_raw`.
fn reap_raw(child: Pid) -> nix::Result<ExitStatus> {
    let mut status = 0;
    // SAFETY: `waitpid` writes only `status`, which is ours.
    let done = unsafe { libc::waitpid(child.as_raw(), &mut status, 0) };
    Errno::result(done)?;
    Ok(ExitStatus::from_raw(status))
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

/// Reads one line, however many reads it takes, if it comes within
/// `limit_ms`.
fn read_line(reader: &mut File, limit_ms: u16) -> io::Result<String> {
    let deadline = Instant::now() + Duration::from_millis(limit_ms.into());
    let mut line = Vec::new();
    let mut byte = [0];
    let no_line = |line: &[u8], why: &str| {
        let said = if line.is_empty() {
            "nothing"
        } else {
            "no whole line"
        };
        io::Error::other(format!("the child said {said}{why}"))
    };
    while line.last() != Some(&b'\n') {
        let left = deadline.saturating_duration_since(Instant::now());
        // Checked here too, not only by poll: a child that writes without
        // a newline would keep poll(0) ready for ever.
        let late = format!(" in {limit_ms} ms");
        if left.is_zero() {
            return Err(no_line(&line, &late));
        }
        let left = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(left))? == 0 {
            return Err(no_line(&line, &late));
        }
        if reader.read(&mut byte)? == 0 {
            return Err(no_line(&line, ""));
        }
        if line.len() == LINE_MAX {
            let why = format!(" in its first {LINE_MAX} bytes");
            return Err(no_line(&line, &why));
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The longest first line we wait for: the child's is one short sentence.
const LINE_MAX: usize = 1024;

/// Prints the lines that come, until the end of the stream (true) or
/// until `limit` has passed (false). One deadline for the whole wait: a
/// holder that keeps writing must not keep us waiting.
fn read_for(reader: &mut File, limit: Duration) -> io::Result<bool> {
    let deadline = Instant::now().checked_add(limit);
    let mut buf = [0; 1024];
    loop {
        let left = match deadline {
            Some(deadline) => {
                deadline.saturating_duration_since(Instant::now())
            }
            None => limit,
        };
        // Checked here too, not only by poll: a holder that always has
        // something written would keep poll(0) ready for ever.
        if left.is_zero() {
            return Ok(false);
        }
        // poll's limit, 24 days, at most.
        let left = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, left)? == 0 {
            return Ok(false);
        }
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        write!(io::stdout(), "{}", String::from_utf8_lossy(&buf[..n]))?;
    }
}

/// Every process that has the pipe with this inode open for writing: its
/// name, its pid, and the descriptor, found in /proc (Linux), as `lsof`
/// would find them.
fn write_end_holders(inode: u64) -> Vec<(String, u32, u32)> {
    let target = format!("pipe:[{inode}]");
    let mut found = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for proc in procs.flatten() {
        let Some(pid) = proc.file_name().to_str().and_then(|s| s.parse().ok())
        else {
            continue;
        };
        // Other users' processes cannot be read: skip them.
        let Ok(fds) = fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Some(n) = fd.file_name().to_str().and_then(|s| s.parse().ok())
            else {
                continue;
            };
            let is_pipe = fs::read_link(fd.path())
                .is_ok_and(|link| link.as_os_str() == target.as_str());
            if is_pipe && opened_for_writing(pid, n) {
                let name = fs::read_to_string(proc.path().join("comm"))
                    .unwrap_or_default();
                found.push((name.trim_end().to_string(), pid, n));
            }
        }
    }
    found
}

/// Whether descriptor `fd` of `pid` is open for writing, alone or with
/// reading, from the octal `flags` line of /proc/PID/fdinfo/FD: an
/// `O_RDWR` descriptor holds the write end as surely as an `O_WRONLY` one.
fn opened_for_writing(pid: u32, fd: u32) -> bool {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"));
    let flags = info.ok().and_then(|info| {
        let line = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
        i32::from_str_radix(line.trim(), 8).ok()
    });
    flags.is_some_and(|flags| {
        let mode = OFlag::from_bits_retain(flags) & OFlag::O_ACCMODE;
        mode != OFlag::O_RDONLY
    })
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

/// Reads `[--cloexec] [--careless] [--group] [--wait SECS]` from the
/// command line.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        cloexec: false,
        careless: false,
        group: false,
        wait: LAST_WAIT,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("cloexec") => args.cloexec = true,
            Long("careless") => args.careless = true,
            Long("group") => args.group = true,
            Long("wait") => {
                args.wait = Duration::from_secs(parser.value()?.parse()?);
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(args)
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
