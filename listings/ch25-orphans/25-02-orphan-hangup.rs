// ANCHOR: whole
// Listing 25-2: whom the kernel sends SIGHUP when a process group is
// orphaned with a stopped member. POSIX says every member; run this to see
// what your kernel does. The program forks a parent, which starts a session
// of its own and forks two members into a process group of their own,
// stops one of them, and waits.
// The program then kills that parent with SIGKILL, which orphans the
// group, and each member reports the signals it got: they block SIGHUP and
// SIGCONT and take them with `sigtimedwait`, so that they live to tell.
// `--stop leader` stops the group's leader instead of the other member.

use std::error::Error;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{self, ExitCode};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, kill, killpg};
use nix::sys::utsname::uname;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{
    ForkResult, Pid, fork, getpid, getppid, pipe2, setpgid, setsid,
};

const USAGE: &str = "usage: orphan-hangup [--stop leader|other]";
/// How long a member waits for a signal, and we for their reports.
const PATIENCE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("orphan-hangup: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let stop_leader = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    keep_zombies()?;
    // One pipe for every report: first the parent's line, who is who, then
    // a line from each member. Close-on-exec, though nothing here execs.
    let (reports, reports_w) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make the pipe for the reports: {e}"))?;
    io::stdout().flush()?;
    // Taken before the fork: the parent compares it with its `getppid`.
    let program = getpid();
    // SAFETY: no other thread exists, so no lock can be held by one.
    let forked = unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))?;
    let parent = match forked {
        ForkResult::Child => {
            drop(reports);
            let status = match parent(program, stop_leader, &reports_w) {
                Ok(never) => match never {},
                Err(_) => 1,
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { libc::_exit(status) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(reports_w);
    let mut reports = BufReader::new(File::from(reports));
    let mut who = String::new();
    reports.read_line(&mut who)?;
    let pids: Vec<Pid> = who
        .split_whitespace()
        .filter_map(|p| p.parse().ok().map(Pid::from_raw))
        .collect();
    let [leader, running, stopped] = pids[..] else {
        kill(parent, Signal::SIGKILL)?;
        waitpid(parent, None)?;
        return Err("the parent did not start the group".into());
    };

    // The parent dies; its children go to a new parent, in another session.
    kill(parent, Signal::SIGKILL)?;
    waitpid(parent, None)?;
    let got = collect_reports(reports, leader)?;

    let mut out = io::stdout().lock();
    writeln!(
        out,
        "Group {leader}: {running} running, {stopped} stopped; \
         their parent {parent} killed"
    )?;
    for (role, pid) in [("stopped", stopped), ("running", running)] {
        match got.iter().find(|r| r.pid == pid) {
            Some(r) => writeln!(
                out,
                "{pid} ({role}): {}; adopted by {}",
                r.signals.join(", "),
                r.adopter
            )?,
            None => writeln!(out, "{pid} ({role}): no report")?,
        }
    }
    // A member whose patience ran out before its parent died reports that
    // parent: its group was not orphaned yet, and its "no signal" says
    // nothing of the kernel. Slow to kill the parent, a busy machine would
    // otherwise have us name the wrong kind of kernel.
    let parent_name = parent.to_string();
    if got.iter().any(|r| r.adopter == parent_name) {
        return Err("inconclusive: a member gave up before its group was \
                    orphaned; run it again"
            .into());
    }
    let hung_up = |pid| {
        got.iter()
            .any(|r| r.pid == pid && r.signals.contains(&"SIGHUP".into()))
    };
    let verdict = match (hung_up(stopped), hung_up(running)) {
        (true, true) => "SIGHUP reached every member, as POSIX says",
        (true, false) => "SIGHUP reached the stopped member only",
        (false, _) => "no SIGHUP for the stopped member: not orphaned?",
    };
    writeln!(
        out,
        "Linux {}: {verdict}",
        uname()?.release().to_string_lossy()
    )?;
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: parent
/// The parent: starts a session, forks the two members into a group of
/// their own, stops one, tells the program who is who, then waits to be
/// killed.
fn parent(
    program: Pid,
    stop_leader: bool,
    reports: &OwnedFd,
) -> Result<std::convert::Infallible, Box<dyn Error>> {
    // Die with the program, so that nothing of this is left behind. If the
    // program died before we asked, no signal will come: start nothing.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if getppid() != program {
        return Err("the program has died".into());
    }
    // A session of our own: whoever adopts the members is outside it, so
    // our death orphans their group wherever this runs, even where the
    // process that adopts them shares the session we were started in.
    setsid()?;
    // Blocked before the members are forked, so that they inherit the
    // mask: a SIGHUP then waits for them to take it, instead of killing.
    let hangup = SigSet::from_iter([Signal::SIGHUP, Signal::SIGCONT]);
    hangup.thread_block()?;
    let leader = fork_member(None, reports)?;
    let other = fork_member(Some(leader), reports)?;
    let (stopped, running) = if stop_leader {
        (leader, other)
    } else {
        (other, leader)
    };
    kill(stopped, Signal::SIGSTOP)?;
    // As their parent, we can wait until it has stopped.
    match waitpid(stopped, Some(WaitPidFlag::WUNTRACED))? {
        WaitStatus::Stopped(..) => {}
        status => return Err(format!("not stopped: {status:?}").into()),
    }
    let line = format!("{leader} {running} {stopped}\n");
    nix::unistd::write(reports, line.as_bytes())?;
    loop {
        nix::unistd::pause();
    }
}

/// Forks a member of the group `group` (a new group if `None`), which
/// reports on `reports` and ends. Both sides call `setpgid`, so the group
/// is set whichever runs first.
fn fork_member(group: Option<Pid>, reports: &OwnedFd) -> nix::Result<Pid> {
    let pgid = |me: Pid| group.unwrap_or(me);
    // SAFETY: this process has one thread.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let me = getpid();
            let status = match setpgid(me, pgid(me))
                .map_err(io::Error::from)
                .and_then(|()| member(reports))
            {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            setpgid(child, pgid(child))?;
            Ok(child)
        }
    }
}
// ANCHOR_END: parent

// ANCHOR: member
/// A member: takes SIGHUP and SIGCONT as they come, until SIGCONT or
/// `PATIENCE` without a signal, then reports them in one line, which one
/// `write` puts in the pipe whole: pid, new parent, signals.
fn member(reports: &OwnedFd) -> io::Result<()> {
    let hangup = SigSet::from_iter([Signal::SIGHUP, Signal::SIGCONT]);
    let mut signals = Vec::new();
    // SIGHUP has the lower number: when both are pending, it comes first.
    while let Some(signal) = timed_wait(&hangup, PATIENCE)? {
        signals.push(signal.as_str());
        if signal == Signal::SIGCONT {
            break;
        }
    }
    let line = format!("{} {} {}\n", getpid(), getppid(), signals.join(","));
    let written = nix::unistd::write(reports, line.as_bytes())?;
    if written < line.len() {
        return Err(io::Error::other("report cut short"));
    }
    Ok(())
}

/// `sigtimedwait`, which nix 0.32 does not wrap: a signal of `set`, or
/// `None` after `patience` without one. Linux may end the wait with EINTR
/// when the process is stopped and continued: then wait again.
fn timed_wait(set: &SigSet, patience: Duration) -> io::Result<Option<Signal>> {
    let timeout = libc::timespec {
        tv_sec: patience.as_secs() as libc::time_t,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: valid pointers; the siginfo is not wanted.
        let number = unsafe {
            libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &timeout)
        };
        match Errno::result(number) {
            Ok(number) => return Ok(Signal::try_from(number).ok()),
            Err(Errno::EAGAIN) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}
// ANCHOR_END: member

/// What one member reported.
struct Report {
    pid: Pid,
    adopter: String,
    signals: Vec<String>,
}

/// Reads the members' reports until both have closed the pipe. If that
/// takes longer than a member's patience, one is still stopped (its group
/// was not orphaned after all): then the group is killed, while a member
/// still alive keeps its id valid.
fn collect_reports(
    reports: BufReader<File>,
    group: Pid,
) -> io::Result<Vec<Report>> {
    let deadline = Instant::now() + PATIENCE + Duration::from_secs(1);
    // What the reader had already taken in after the parent's line.
    let mut text = String::from_utf8_lossy(reports.buffer()).into_owned();
    let pipe = reports.into_inner();
    let mut buf = [0; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) => {
                let _ = killpg(group, Signal::SIGKILL);
                break;
            }
            Ok(_) => match (&pipe).read(&mut buf)? {
                0 => break,
                n => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            },
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(BufReader::new(text.as_bytes())
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let pid = fields.next()?.parse().ok().map(Pid::from_raw)?;
            let adopter = fields.next()?.to_string();
            let signals = fields
                .next()
                .filter(|s| !s.is_empty())
                .map_or(vec!["no signal".into()], |s| {
                    s.split(',').map(String::from).collect()
                });
            Some(Report {
                pid,
                adopter,
                signals,
            })
        })
        .collect())
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Gives SIGCHLD its default action back. A parent that left it ignored
/// passed that on through `exec` (Chapter 24), and then the kernel reaps
/// our children itself: every wait fails with ECHILD, and a child's pid,
/// or its group's id, may go to a stranger as soon as the child exits,
/// while we may still signal it.
fn keep_zombies() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }?;
    Ok(())
}

/// Reads `[--stop leader|other]`: true to stop the leader.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut stop_leader = false;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("stop") => {
                stop_leader = match parser.value()?.string()?.as_str() {
                    "leader" => true,
                    "other" => false,
                    other => {
                        return Err(format!(
                            "unknown member '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                };
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(stop_leader)
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
