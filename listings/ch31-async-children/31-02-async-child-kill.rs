// ANCHOR: whole
// Listing 31-2: ending a tokio child, and what `kill_on_drop` does not
// do. The child is a shell that starts `sleep 60` in the background,
// prints its pid, and waits for it, in a process group of its own. One
// of five ways:
//
// - `drop`: the `Child` is dropped: both processes go on running;
// - `kill-on-drop`: the same with `kill_on_drop(true)`: the shell is
//   killed, but not the `sleep` it started;
// - `no-wait`: `start_kill` and no `wait`: the shell stays a zombie until
//   it is waited for;
// - `timeout`: the careful way: a wait with a time limit (`--wait SECS`,
//   at least 1, default 1), then SIGTERM to the whole group, then a wait;
// - `pipe`: the shell exits at once, but `sleep` still holds its stdout:
//   the careful way kills the group when the end of stdout does not come.
//
// The shell's stdout is read as bytes, into buffers of a fixed size: what
// `sleep` writes there, text or not, with newlines or without, costs no
// memory, and a read that fails counts as an end that has not come.
//
// `--ignore-term` makes the shell, and so `sleep`, ignore SIGTERM: the
// careful way follows up with SIGKILL. Ctrl-C, a `kill` of this program or
// the hangup of its terminal ends the group with SIGKILL, then this
// program by that signal.
//
// Every way cleans up after itself before it ends. Our own output may go
// away: SIGPIPE stays ignored, and what we cannot print is not printed,
// so that the clean-up still runs.

use std::cell::Cell;
use std::error::Error;
use std::fs;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, killpg, sigaction,
};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdout, Command};
use tokio::runtime::{Builder, Runtime};
use tokio::signal::unix::{Signal as TokioSignal, SignalKind, signal};
use tokio::time::{sleep, timeout};

const USAGE: &str = "usage: async-child-kill \
                     [drop|kill-on-drop|no-wait|timeout|pipe] [--wait SECS] \
                     [--ignore-term]";

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Drop,
    KillOnDrop,
    NoWait,
    Timeout,
    Pipe,
}

/// How long any wait for a state in /proc may take.
const PATIENCE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let ready = block_stop_signals().and_then(|()| Ok(unblock_sigchld()?));
    let ran = match ready.and_then(|()| runtime()) {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => Err(format!("cannot start tokio's runtime: {err}").into()),
    };
    let ran = ran.and_then(|()| Ok(unsaid()?));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("async-child-kill: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP on the main thread, before the
/// runtime starts its threads: they inherit the mask, and never take
/// these signals. signal-hook's registry, which tokio registers through,
/// installs a handler before it records what the handler is to do, and a
/// signal that comes in between finds nothing to do and is lost (Chapter
/// 6). Blocked, it waits, pending, until `run` has made its streams and
/// unblocks the three on the main thread, the one thread left to take
/// them.
fn block_stop_signals() -> io::Result<()> {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGTERM};
    Ok(SigSet::from_iter([SIGINT, SIGTERM, SIGHUP]).thread_block()?)
}

/// Unblocks SIGINT, SIGTERM and SIGHUP on the calling thread, the main
/// thread, on which `block_on` runs `run`, once `run` has made their
/// streams: blocked by `block_stop_signals`, or by a parent, which passed
/// its mask on through `exec`, they would never reach tokio's handler. A
/// signal that came meanwhile, or that the parent left pending, reaches
/// it now.
fn unblock_stop_signals() -> io::Result<()> {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGTERM};
    Ok(SigSet::from_iter([SIGINT, SIGTERM, SIGHUP]).thread_unblock()?)
}

/// tokio learns that a child has ended from SIGCHLD wherever it does not
/// wait on a pidfd: for a `Child` dropped before its process was reaped
/// (the orphan queue), and for every child where `pidfd_open` fails. A
/// parent that blocked SIGCHLD passed its mask on through `exec`, and every
/// thread the runtime starts would inherit it: such a child would never be
/// reaped, and a wait for it would never end. Unblocked on the main thread
/// before the runtime starts its threads; a SIGCHLD left pending then takes
/// its default action, which does nothing.
fn unblock_sigchld() -> nix::Result<()> {
    SigSet::from(Signal::SIGCHLD).thread_unblock()
}

/// A runtime with one thread, as `#[tokio::main(flavor = "current_thread")]`
/// builds, with an error where `build` would panic: the six descriptors tokio
/// opens as it starts are taken first, and given back, since it makes its
/// signal socket pair with `expect` (Chapter 28).
fn runtime() -> io::Result<Runtime> {
    let room = [
        UnixStream::pair()?,
        UnixStream::pair()?,
        UnixStream::pair()?,
    ];
    drop(room);
    Builder::new_current_thread().enable_all().build()
}

// ANCHOR: run
async fn run() -> Result<(), Box<dyn Error>> {
    let (way, limit, ignore_term) =
        parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Our children are ours to reap, even if our parent ignored SIGCHLD:
    // until sh is reaped, its pid keeps the group's id ours.
    let chld = keep_own_zombies()?;
    let script = match way {
        Way::Pipe => "sleep 60 & echo $!",
        _ => "sleep 60 & echo $!; wait",
    };
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    // Ctrl-C, a `kill` of our pid, or the hangup of our terminal reaches
    // us and not sh's group: we end the group with SIGKILL, whichever
    // came, then die of it. Made before sh starts, and only then let in:
    // `main` blocked them, so that none comes while tokio registers it.
    let mut int = unless_ignored(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = unless_ignored(SignalKind::hangup())?;
    unblock_stop_signals()?;
    let before = children_of_this_thread();
    let mut sh = Command::new("sh");
    sigchld_as_found(&mut sh, chld);
    let spawned = sh
        .args(["-c", &format!("{trap}{script}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .kill_on_drop(way != Way::Drop)
        .spawn();
    let mut sh = match spawned {
        Ok(sh) => sh,
        Err(err) => {
            end_unclaimed_child(before);
            return Err(err.into());
        }
    };
    let pid = Pid::from_raw(sh.id().ok_or("sh has gone")? as i32);
    // Set by a way once it has killed the group for good: from then on,
    // nothing keeps the group's id from being given to someone else.
    let killed = Cell::new(false);
    let group = Group {
        pid,
        killed: &killed,
    };
    // Everything that waits on sh, its first line included, runs in the
    // `select!` below, so that a signal is acted on whenever it comes.
    let ended = async move {
        let mut stdout = sh.stdout.take().ok_or("no stdout")?;
        let Some(grandchild) = first_line(&mut stdout).await else {
            // sh is not reaped yet: its pid is still the group's id.
            group.kill_all()?;
            return Err("sh did not start sleep".into());
        };
        say(format!(
            "sh (pid {pid}) runs in a process group of its own; it \
             started sleep (pid {grandchild})"
        ));
        let ended = match way {
            Way::Drop | Way::KillOnDrop => {
                return dropped(sh, group, grandchild).await;
            }
            Way::NoWait => no_wait(&mut sh, group, grandchild).await,
            Way::Timeout | Way::Pipe => {
                supervise(&mut sh, stdout, limit, group).await
            }
        };
        // A way that failed before it killed the group failed before it
        // reaped sh, which is still here: its pid is still the group's id.
        if ended.is_err() && !group.is_killed() {
            let _ = group.kill_all();
        }
        ended
    };
    // Polled through `&mut`, so that `select!` does not drop it.
    let mut ended = Box::pin(ended);
    let stop = tokio::select! {
        ended = &mut ended => return ended,
        () = next(&mut int) => Signal::SIGINT,
        _ = term.recv() => Signal::SIGTERM,
        () = next(&mut hup) => Signal::SIGHUP,
    };
    // The group's id names no one else's group while a member, alive or a
    // zombie, is not reaped. The way's future still holds `sh`, unreaped
    // unless the way has waited for it; dropping it would reap a dead `sh`
    // on the spot. So the group is killed first, and the future dropped
    // after. Once the way has killed the group itself, the id may be free,
    // and given to a stranger's group: leave it. Then die of the signal.
    if !killed.get() {
        let _ = killpg(pid, Signal::SIGKILL);
    }
    drop(ended);
    die_of(stop)
}

/// tokio's `spawn` forks first, then registers the child's pipes and its
/// pidfd with the runtime's `epoll`. If that fails (`epoll` at
/// `fs.epoll.max_user_watches`, say), it returns the error and drops the
/// child, neither killed nor reaped: `kill_on_drop` belongs to a `Child`
/// that was never made. The child is the one this thread has now and did
/// not have `before`: end its group, and reap it. Its pid is the group's
/// id, and ours to use until we reap it.
fn end_unclaimed_child(before: Option<Vec<Pid>>) {
    let (Some(before), Some(now)) = (before, children_of_this_thread()) else {
        return;
    };
    for pid in now.into_iter().filter(|pid| !before.contains(pid)) {
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
}

/// The children that this thread has forked and not reaped yet, from
/// `/proc/thread-self/children` (Linux), or `None` if it cannot be read.
fn children_of_this_thread() -> Option<Vec<Pid>> {
    let list = fs::read_to_string("/proc/thread-self/children").ok()?;
    let pids = list.split_whitespace().filter_map(|pid| pid.parse().ok());
    Some(pids.map(Pid::from_raw).collect())
}

/// The longest first line taken from sh: a pid, of at most 7 digits on
/// Linux (`pid_max` is at most 2^22), and its newline, with room to spare.
const FIRST_LINE: usize = 32;

/// The pid that sh prints on its first line, read as bytes, FIRST_LINE
/// of them at most; `None` if the line is longer, is not a pid, or cannot
/// be read. What came after the newline is the rest of sh's output, which
/// nobody reads.
async fn first_line(stdout: &mut ChildStdout) -> Option<Pid> {
    let mut line = [0; FIRST_LINE];
    let mut filled = 0;
    while filled < line.len() {
        match stdout.read(&mut line[filled..]).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => filled += read,
        }
        if let Some(end) = line[..filled].iter().position(|&b| b == b'\n') {
            let pid = std::str::from_utf8(&line[..end]).ok()?.parse().ok()?;
            return (pid > 0).then(|| Pid::from_raw(pid));
        }
    }
    None
}

/// sh's process group, and whether a way has killed it.
#[derive(Clone, Copy)]
struct Group<'a> {
    pid: Pid,
    killed: &'a Cell<bool>,
}

impl Group<'_> {
    /// Asks every member to end, with SIGTERM. A member may catch or
    /// ignore it and run on, keeping the group's id in use: nothing is
    /// noted.
    fn terminate(self) -> nix::Result<()> {
        killpg(self.pid, Signal::SIGTERM)
    }

    /// Kills every member with SIGKILL, and notes that the group's id is
    /// no longer ours to use.
    fn kill_all(self) -> nix::Result<()> {
        self.killed.set(true);
        killpg(self.pid, Signal::SIGKILL)
    }

    /// Whether `kill_all` has been called.
    fn is_killed(self) -> bool {
        self.killed.get()
    }
}

/// Ends the process by `stop`, as its default action would have. The
/// init of a PID namespace (a container's PID 1) cannot: the kernel drops
/// the signal it raises. There it exits with 128 + n, as a shell reports.
fn die_of(stop: Signal) -> ! {
    // SAFETY: the default action runs no code of ours.
    let _ = unsafe { nix::sys::signal::signal(stop, SigHandler::SigDfl) };
    let _ = SigSet::from(stop).thread_unblock();
    let _ = nix::sys::signal::raise(stop); // The end, unless we are an init.
    process::exit(128 + stop as i32)
}
// ANCHOR_END: run

/// A stream of `kind`, or none if our parent left that signal ignored
/// (SIGINT in a script's `&` job, SIGHUP under `nohup`): the user chose
/// that, and a stream would take it over.
fn unless_ignored(kind: SignalKind) -> io::Result<Option<TokioSignal>> {
    let mut current = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action, `sigaction` only reports the current one.
    let done = unsafe {
        let number = kind.as_raw_value();
        nix::libc::sigaction(number, std::ptr::null(), current.as_mut_ptr())
    };
    nix::errno::Errno::result(done)?;
    // SAFETY: `sigaction` succeeded, and filled it in.
    let current = unsafe { current.assume_init() };
    if current.sa_sigaction == nix::libc::SIG_IGN {
        return Ok(None);
    }
    signal(kind).map(Some)
}

/// The next signal of `stream`; without a stream, it never comes.
async fn next(stream: &mut Option<TokioSignal>) {
    match stream {
        Some(stream) => drop(stream.recv().await),
        None => std::future::pending().await,
    }
}

// ANCHOR: dropped
/// Drops the `Child`, and looks at what is left.
async fn dropped(
    sh: Child,
    group: Group<'_>,
    grandchild: Pid,
) -> Result<(), Box<dyn Error>> {
    let pid = group.pid;
    drop(sh);
    // A kill takes effect soon, but not at once: give it a second.
    until(Duration::from_secs(1), || is_dead(pid)).await;
    let ran_on = !is_dead(pid);
    say(format!(
        "Dropped the Child: sh (pid {pid}) {}, sleep (pid {grandchild}) {}",
        life(pid),
        life(grandchild)
    ));
    // Clean up. `sleep` runs, so the group's id is still in use and
    // cannot name anyone else's group.
    group.kill_all()?;
    // Nothing waits for sh here. The drop tried `try_wait` first, and
    // reaped sh there if it had ended already (the SIGKILL of
    // `kill_on_drop` may have landed by then); a sh still running went on
    // tokio's queue of orphans, which reaps it in the background while
    // the runtime runs. Still running a second later, it went there.
    if !until(PATIENCE, || state_of(pid).is_none()).await {
        return Err("tokio has not reaped sh".into());
    }
    until(PATIENCE, || is_dead(grandchild)).await;
    let line = if ran_on {
        "Killed the group; tokio reaped sh in the background"
    } else {
        "Killed the group; tokio has reaped sh, in the drop or in the \
         background"
    };
    say(line.into());
    Ok(())
}
// ANCHOR_END: dropped

// ANCHOR: no_wait
/// Kills the shell without waiting for it, then waits.
async fn no_wait(
    sh: &mut Child,
    group: Group<'_>,
    grandchild: Pid,
) -> Result<(), Box<dyn Error>> {
    let pid = group.pid;
    sh.start_kill()?; // SIGKILL, and nothing more.
    until(PATIENCE, || state_of(pid) == Some('Z')).await;
    sleep(Duration::from_secs(1)).await;
    say(format!(
        "start_kill, no wait: one second later sh (pid {pid}) {}",
        state(pid)
    ));
    let status = sh.wait().await?;
    say(format!(
        "wait: sh {}, and pid {pid} {}",
        describe(status),
        state(pid)
    ));
    // `kill_on_drop` and `start_kill` reach one process; `sleep` lives on,
    // and its group's id is still in use.
    say(format!("sleep (pid {grandchild}) {}", state(grandchild)));
    group.kill_all()?;
    until(PATIENCE, || is_dead(grandchild)).await;
    Ok(())
}
// ANCHOR_END: no_wait

// ANCHOR: supervise
/// The careful way: wait for the shell with a time limit, then stop its
/// whole group; always reap it; then expect the end of its stdout within
/// the same limit, and if it does not come, kill whoever is left in the
/// group, since one of them may hold the pipe, and wait the same limit
/// again: a holder outside the group is out of reach.
async fn supervise(
    sh: &mut Child,
    mut stdout: ChildStdout,
    limit: Duration,
    group: Group<'_>,
) -> Result<(), Box<dyn Error>> {
    let secs = limit.as_secs();
    let status = match timeout(limit, sh.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            // Not reaped yet, so its pid is still the group's id.
            group.terminate()?;
            say(format!(
                "No exit within {secs} s: sent SIGTERM to its process group"
            ));
            match timeout(limit, sh.wait()).await {
                Ok(status) => status?,
                Err(_) => {
                    // SIGTERM can be caught or ignored; SIGKILL cannot.
                    group.kill_all()?;
                    say(format!("Still there {secs} s later: sent SIGKILL"));
                    sh.wait().await?
                }
            }
        }
    };
    say(format!("sh {}", describe(status)));
    let outside = || {
        format!(
            "stdout still held {secs} s after the kill of its group: by a \
             process outside it"
        )
    };
    // A read that fails is an end that has not come: whoever holds the
    // pipe may still run.
    if !matches!(timeout(limit, drain(&mut stdout)).await, Ok(Ok(()))) {
        // Killed above, with sh: everyone in the group has had the limit
        // to die, and its id may be free. Leave it.
        if group.is_killed() {
            return Err(outside().into());
        }
        // sh is reaped. The group's id is still ours while a member,
        // alive or a zombie, is not reaped: the holder of the pipe, alive,
        // unless it left the group. `killpg` succeeds if it finds any
        // member, a zombie included, and fails with ESRCH only if it finds
        // none (`__kill_pgrp_info` in kernel/signal.c). So success does
        // not mean that the holder is dead: it may have left the group.
        match group.kill_all() {
            Ok(()) => say(format!(
                "No end of stdout within {secs} s: killed its process group"
            )),
            Err(err) => {
                return Err(format!("stdout held from outside: {err}").into());
            }
        }
        timeout(limit, drain(&mut stdout))
            .await
            .map_err(|_| outside())??;
    }
    say("End of stdout".to_string());
    Ok(())
}

/// Reads what is left of sh's stdout, and drops it, one buffer at a time,
/// until its end: what the holder writes costs no memory.
async fn drain(stdout: &mut ChildStdout) -> io::Result<()> {
    let mut buffer = [0; 8192];
    while stdout.read(&mut buffer).await? > 0 {}
    Ok(())
}
// ANCHOR_END: supervise

/// Polls `ready` every 10 ms, sleeping in the runtime, until it holds
/// (true) or `limit` has passed (false).
async fn until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let waited = timeout(limit, async {
        while !ready() {
            sleep(Duration::from_millis(10)).await;
        }
    });
    waited.await.is_ok()
}

/// The state letter of a process from /proc/PID/stat (Linux), or `None`
/// once it is gone.
fn state_of(pid: Pid) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(") ")?.1.chars().next()
}

fn is_dead(pid: Pid) -> bool {
    matches!(state_of(pid), None | Some('Z'))
}

/// Whether a process runs, in words.
fn life(pid: Pid) -> &'static str {
    if is_dead(pid) {
        "is dead"
    } else {
        "is still running"
    }
}

/// A process's state, in words.
fn state(pid: Pid) -> &'static str {
    match state_of(pid) {
        None => "is gone",
        Some('Z') => "is a zombie",
        Some(_) => "is still running",
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

/// How a child ended, in words.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal().map(Signal::try_from)) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(Ok(signal))) => format!("was killed by {signal}"),
        _ => format!("ended: {status}"),
    }
}

/// Prints a line, if anyone still reads our output: without a reader we
/// go on, since the clean-up matters more than the report. A write that
/// fails otherwise (a full disk) is kept for `main` to report, at the end.
fn say(line: String) {
    match writeln!(io::stdout(), "{line}") {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            let mut unsaid = UNSAID.lock().unwrap_or_else(|e| e.into_inner());
            unsaid.get_or_insert(err);
        }
        _ => {}
    }
}

/// The first failure of `say` that was not a reader gone away.
static UNSAID: Mutex<Option<io::Error>> = Mutex::new(None);

/// Fails with the first failure of `say` that was not a reader gone away.
fn unsaid() -> io::Result<()> {
    let mut unsaid = UNSAID.lock().unwrap_or_else(|e| e.into_inner());
    unsaid.take().map_or(Ok(()), Err)
}

/// Reads `[WAY] [--wait SECS] [--ignore-term]`.
fn parse_args() -> Result<(Way, Duration, bool), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut way, mut wait, mut ignore_term) = (None, 1, false);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("wait") => {
                // A limit of 0 s elapses before the end of stdout can be
                // seen, and a holder outside the group would be blamed.
                match args.value()?.parse()? {
                    0 => return Err("--wait must be at least 1".into()),
                    secs => wait = secs,
                }
            }
            Long("ignore-term") => ignore_term = true,
            Value(value) if way.is_none() => {
                way = Some(match value.string()?.as_str() {
                    "drop" => Way::Drop,
                    "kill-on-drop" => Way::KillOnDrop,
                    "no-wait" => Way::NoWait,
                    "timeout" => Way::Timeout,
                    "pipe" => Way::Pipe,
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
    let way = way.unwrap_or(Way::Timeout);
    Ok((way, Duration::from_secs(wait), ignore_term))
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
