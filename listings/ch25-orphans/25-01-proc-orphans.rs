// ANCHOR: whole
// Listing 25-1: three ways to make children end with their parent, and
// what each does when the parent is killed with SIGKILL, which no handler
// can catch. The parent starts `--children N` children (default 2), says
// so, and waits for them. The way is the first argument:
//
// - `none`: nothing; the children are `sleep SECS`.
// - `pdeathsig`: each `sleep` asks the kernel, in `pre_exec`, for SIGTERM
//   when its parent dies (Linux). `--from-thread` starts them from a
//   thread that exits at once, which the kernel counts as the parent.
// - `pipe`: the children are `cat`, reading a pipe whose write end only
//   the parent holds: when the parent dies, they read the end of it.
// - `group`: the `sleep`s share a process group of their own, which can
//   be killed as one: `kill -- -PGID`.
//
// `--for SECS` (default 3600) bounds the children's work. SIGINT, SIGTERM
// and SIGHUP make the parent stop its children, reap them, and then end
// by the signal it got (a SIGINT or SIGHUP that it was started with
// ignored stays ignored); SIGKILL gives it no chance.

use std::error::Error;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SendError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, killpg, raise,
    sigaction,
};
use nix::sys::wait::WaitPidFlag;
use nix::unistd::{Pid, getpgid, getpid, getppid, pipe2};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: proc-orphans none|pdeathsig|pipe|group \
                     [--children N] [--for SECS] [--from-thread]";

#[derive(Clone, Copy, PartialEq)]
enum Way {
    None,
    Pdeathsig,
    Pipe,
    Group,
}

struct Args {
    way: Way,
    children: usize,
    secs: u64,
    from_thread: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("proc-orphans: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    let chld = keep_own_zombies()?;
    // Caught before any child starts, so none is missed; kept until the
    // process ends, even if its thread is refused (Chapter 6).
    // Blocked while they are registered, so that none is lost (Chapter 6),
    // and while the children start: until its exec, a child runs our
    // handlers, which would take a signal meant for it, and lose it. Each
    // child unblocks them itself, at their default (`stop_signals_reset`).
    let caught = stop_signals()?;
    let all =
        SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]);
    all.thread_block()?;
    let signals = Signals::new(&caught)
        .map_err(|err| format!("cannot catch the stop signals: {err}"))?;
    let signals = Box::leak(Box::new(signals));
    let caught_set: SigSet = caught
        .iter()
        .filter_map(|&n| Signal::try_from(n).ok())
        .collect();
    // The lifeline, for `pipe`: the children read it; its write end stays
    // here, and only here (CLOEXEC).
    let (reader, writer) = match args.way {
        Way::Pipe => {
            let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)
                .map_err(|err| format!("cannot make the lifeline: {err}"))?;
            (Some(read_end), Some(write_end))
        }
        _ => (None, None),
    };
    let (way, n, secs) = (args.way, args.children, args.secs);
    let cannot = |err| format!("cannot start {}: {err}", name(way));
    let spawn = move || start(way, n, secs, reader, chld, caught_set);
    let started = if args.from_thread {
        // The thread that starts them exits here. It inherits our mask.
        match thread::Builder::new().spawn(spawn) {
            Ok(starter) => starter
                .join()
                .map_err(|_| "the starting thread panicked")?
                .map_err(cannot),
            Err(err) => Err(format!("cannot start a thread: {err}")),
        }
    } else {
        spawn().map_err(cannot)
    };
    // A parent that blocked them passed its mask on through `exec`: we
    // would never take them. Unblocked now, before any other thread
    // starts: a signal that came while the children started reaches
    // signal-hook's handler here.
    all.thread_unblock()?;
    let mut children = match started {
        Ok(children) => children,
        // No child runs: a spawn failed, and `start` has stopped the
        // others, or the thread that would start them was refused. A
        // signal that came meanwhile is signal-hook's, and no thread will
        // read it: we were asked to stop, so end by it, as once they run.
        Err(err) => match signals.pending().next() {
            Some(signal) => die_of(signal),
            None => return Err(err.into()),
        },
    };
    let pids: Vec<Pid> = children
        .iter()
        .map(|c| Pid::from_raw(c.id() as i32))
        .collect();
    let group = pids[0];
    let unreaped = Arc::new(Mutex::new(pids));
    let writer = Arc::new(Mutex::new(writer));
    // On a signal: stop the children, remember the signal, and tell the
    // timer, if any, that the children are stopped already.
    let (stopped, is_stopped) = channel();
    let got = Arc::new(AtomicI32::new(0));
    // Set once the first line is written, or has failed (below).
    let announced = Arc::new(AtomicBool::new(false));
    let handle = signals.handle();
    // The thread gets `signals` only once it runs: a refused thread's
    // closure is dropped, and with it whatever was moved in. It gives
    // them back when `handle` closes them.
    let (hand_over, handed) = channel::<&'static mut Signals>();
    let listener = thread::Builder::new().spawn({
        let (writer, got) = (Arc::clone(&writer), Arc::clone(&got));
        let (unreaped, announced) =
            (Arc::clone(&unreaped), Arc::clone(&announced));
        let caught = caught.clone();
        move || {
            let signals = handed.recv().ok()?;
            let mut forever = signals.forever();
            if let Some(signal) = forever.next() {
                got.store(signal, Ordering::SeqCst);
                stop(way, &unreaped, group, &writer);
                let _ = stopped.send(());
                if !announced.load(Ordering::SeqCst) {
                    // The main thread is still in its first write, which
                    // may never return (a full pipe that nobody reads):
                    // end here, once the children have.
                    restore_defaults(&caught);
                    wait_for_exits(&unreaped);
                    die_of(signal);
                }
            }
            // Another, while we reap: its default action, at once. Not
            // listened for, it would be swallowed by signal-hook's
            // handler, which stays installed.
            if let Some(signal) = forever.next() {
                die_of(signal);
            }
            Some(signals)
        }
    });
    // Handed over before our first write, which may wait for ever: a
    // signal that comes meanwhile must find a thread to stop the
    // children. If the thread was refused, the send gives them back.
    let kept = hand_over.send(signals).err().map(|SendError(s)| s);
    let started = match &listener {
        Ok(_) => {
            let said = announce(&args, &children);
            announced.store(true, Ordering::SeqCst);
            said.map_err(Box::<dyn Error>::from)
        }
        Err(err) => Err(format!("cannot start a thread: {err}").into()),
    };
    // For `pipe`, a timer: the `cat`s work until we close the lifeline,
    // after SECS, unless a signal has made the signal thread close it
    // first. We wait for the children meanwhile, as in the other ways.
    let started = started.and_then(|()| {
        if way != Way::Pipe {
            return Ok(());
        }
        let (writer, unreaped) = (Arc::clone(&writer), Arc::clone(&unreaped));
        let timer = thread::Builder::new().spawn(move || {
            let waited = is_stopped.recv_timeout(Duration::from_secs(secs));
            if waited == Err(RecvTimeoutError::Timeout) {
                stop(way, &unreaped, group, &writer);
            }
        });
        timer
            .map(drop)
            .map_err(|err| format!("cannot start a thread: {err}").into())
    });
    if let Err(err) = started {
        // Nobody reads our output, or no thread would watch for signals,
        // or close the lifeline in time (`ulimit -u` counts threads): stop
        // what we started, then leave. Stopped first, while signal-hook's
        // handler still takes the signals: once they have their default
        // action back, one ends us at once, with no chance to stop them.
        stop(way, &unreaped, group, &writer);
        restore_defaults(&caught);
        // One that came before is the handler's: ask for it, from the
        // signal thread, if it runs, then from the iterator, which it
        // gives back once closed.
        let signals = match listener {
            Ok(listener) => {
                handle.close();
                listener.join().ok().flatten()
            }
            Err(_) => kept,
        };
        let came = match got.load(Ordering::SeqCst) {
            0 => signals.and_then(|signals| signals.pending().next()),
            signal => Some(signal),
        };
        for child in &mut children {
            let _ = child.wait();
        }
        if let Some(signal) = came {
            die_of(signal);
        }
        return Err(err);
    }
    // Reap them all first, then report: a report that fails must not
    // leave a child unreaped.
    let mut statuses = Vec::new();
    for child in &mut children {
        statuses.push((child.id(), reap(child, &unreaped)?));
    }
    let mut out = io::stdout();
    for (pid, status) in statuses {
        writeln!(out, "{} {pid} {}", name(way), describe(status))?;
    }
    let signal = got.load(Ordering::SeqCst);
    if signal != 0 {
        die_of(signal);
    }
    Ok(())
}

/// Gives the signals we `caught` back their default action, death.
/// Nothing else does: signal-hook's handler stays installed for good, and
/// runs whatever is registered, or nothing.
fn restore_defaults(caught: &[i32]) {
    for &number in caught {
        let Ok(signal) = Signal::try_from(number) else {
            continue;
        };
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
    }
}

/// SIGTERM, SIGINT and SIGHUP, less those the parent left ignored: SIGINT
/// in a script's `&` job, SIGHUP under `nohup`. That was the user's
/// choice, which a handler would undo (Chapter 12).
fn stop_signals() -> io::Result<Vec<i32>> {
    let mut signals = vec![SIGTERM];
    for number in [SIGINT, SIGHUP] {
        if !is_ignored(number)? {
            signals.push(number);
        }
    }
    Ok(signals)
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

/// Dies of `signal`, by its default action, from any thread. The init of
/// a PID namespace (a container's PID 1) cannot: the kernel drops every
/// signal whose action for it is the default, even one it raises itself,
/// where signal-hook's `emulate_default_handler` would go on to `abort`
/// and end in a SIGSEGV (Chapter 12). There it exits with 128 + n, the
/// status a shell would report.
fn die_of(signal: i32) -> ! {
    if let Ok(signal) = Signal::try_from(signal) {
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        let _ = raise(signal); // The end, unless we are an init.
    }
    process::exit(128 + signal)
}
// ANCHOR_END: run

// ANCHOR: start
/// Starts `n` children the chosen way, each with SIGCHLD's action as we
/// found it, `chld`, and the stop signals we `caught` at their default.
/// The read end of the lifeline, if any, is closed here when they have
/// their copies.
fn start(
    way: Way,
    n: usize,
    secs: u64,
    reader: Option<OwnedFd>,
    chld: SigAction,
    caught: SigSet,
) -> io::Result<Vec<Child>> {
    let mut children: Vec<Child> = Vec::new();
    for _ in 0..n {
        let mut command = match &reader {
            Some(read_end) => {
                let mut cat = Command::new("cat");
                cat.stdin(read_end.try_clone()?).stdout(Stdio::null());
                cat
            }
            None => {
                let mut sleep = Command::new("sleep");
                sleep.arg(secs.to_string());
                sleep
            }
        };
        sigchld_as_found(&mut command, chld);
        stop_signals_reset(&mut command, caught);
        match way {
            Way::Pdeathsig => die_with_parent(&mut command),
            Way::Group => {
                // The first child leads a new group; the others join it.
                let group = children.first().map_or(0, |c| c.id() as i32);
                command.process_group(group);
            }
            Way::None | Way::Pipe => {}
        }
        match command.spawn() {
            Ok(child) => children.push(child),
            Err(err) => {
                // Out of processes, say: stop those already started, and
                // reap them, before giving up. Not reaped yet, their pids
                // are still theirs.
                for child in &mut children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(err);
            }
        }
    }
    Ok(children)
}

/// Gives the child that `command` starts the stop signals we `caught`
/// back their default action, then unblocks all three. Until exec, the
/// child has our handlers, which would take a signal meant for it, and
/// lose it, and `sleep` would run on: `run` keeps the three blocked while
/// the children start, and one that came meanwhile ends the child here.
/// One we found ignored stays ignored, as the user chose.
fn stop_signals_reset(command: &mut Command, caught: SigSet) {
    // SAFETY: the closure runs between fork and exec, and makes only
    // sigaction and sigprocmask calls, on sets made before the fork; it
    // allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for signal in caught.iter() {
                nix::sys::signal::signal(signal, SigHandler::SigDfl)?;
            }
            let all = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];
            SigSet::from_iter(all).thread_unblock()?;
            Ok(())
        })
    };
}

/// Asks the kernel to send the child SIGTERM when its parent dies, and
/// checks that the parent has not died already. SIGTERM is at its default
/// by then (`stop_signals_reset`, the hook before this one): a parent
/// dying now sends a signal that ends the child.
fn die_with_parent(command: &mut Command) {
    let parent = getpid();
    // SAFETY: the closure runs between fork and exec, and makes only
    // async-signal-safe system calls; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            if getppid() != parent {
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        })
    };
}
// ANCHOR_END: start

// ANCHOR: stop
/// Stops the children, however they were started: by closing the
/// lifeline, by killing their group, or one by one. Only children not
/// reaped yet are signalled, under the lock that `reap` takes: a reaped
/// child's pid, or the id of a group that none of them is in any more,
/// may already be a stranger's. Each is then continued: a child stopped by
/// SIGSTOP or Ctrl-Z takes its SIGTERM, or reads the end of its input,
/// only once it runs again.
fn stop(
    way: Way,
    unreaped: &Mutex<Vec<Pid>>,
    group: Pid,
    writer: &Mutex<Option<OwnedFd>>,
) {
    let unreaped = unreaped.lock().unwrap_or_else(PoisonError::into_inner);
    match way {
        Way::Pipe => drop(writer.lock().map(|mut end| end.take())),
        Way::Group => {
            // The group's id is theirs only while a child not reaped is in
            // it. A child that left it (`setsid`) keeps its own pid until
            // reaped: it gets the signal by that.
            let in_group = |&pid: &Pid| getpgid(Some(pid)) == Ok(group);
            if unreaped.iter().any(in_group) {
                let _ = killpg(group, Signal::SIGTERM);
            }
            for &pid in unreaped.iter().filter(|pid| !in_group(pid)) {
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
        Way::None | Way::Pdeathsig => {
            for &pid in unreaped.iter() {
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
    }
    for &pid in unreaped.iter() {
        let _ = kill(pid, Signal::SIGCONT);
    }
}

/// Waits until `child` has exited, then reaps it under the lock that
/// `stop` takes, and strikes it off: `stop` never signals it afterwards.
fn reap(
    child: &mut Child,
    unreaped: &Mutex<Vec<Pid>>,
) -> io::Result<ExitStatus> {
    let pid = Pid::from_raw(child.id() as i32);
    // WNOWAIT: report the exit, but leave the child a zombie, its pid
    // still its own.
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    while let Err(err) = waitid_raw(Some(pid), flags) {
        if err != Errno::EINTR {
            return Err(err.into());
        }
    }
    let mut unreaped = unreaped.lock().unwrap_or_else(PoisonError::into_inner);
    let status = child.wait()?;
    unreaped.retain(|&p| p != pid);
    Ok(status)
}

/// Waits until every child not reaped yet has exited, and leaves each a
/// zombie: for `reap`, if the main thread gets there, or else for whoever
/// adopts it once we are gone.
fn wait_for_exits(unreaped: &Mutex<Vec<Pid>>) {
    let pids = unreaped
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    for pid in pids {
        while waitid_raw(Some(pid), flags) == Err(Errno::EINTR) {}
    }
}
// ANCHOR_END: stop

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

/// Says who is who, with the command that kills the parent.
fn announce(args: &Args, children: &[Child]) -> io::Result<()> {
    let me = getpid();
    let mut line = format!("Parent {me} started");
    for child in children {
        let _ = write!(line, " {} {}", name(args.way), child.id());
    }
    if args.way == Way::Group {
        let _ = write!(line, " in process group {}", children[0].id());
    }
    if args.from_thread {
        line.push_str(", from a thread that has exited");
    }
    // Process 1 of a PID namespace of its own sees itself as 1, which any
    // other terminal takes for the machine's init. A namespace that kept
    // the machine's /proc (`unshare --pid --fork`, no `--mount-proc`)
    // still shows there the pid the rest of the machine knows us by.
    match pid_in_proc().filter(|&pid| pid != me) {
        Some(outside) => writeln!(
            io::stdout(),
            "{line}; try, from outside its PID namespace: kill -KILL {outside}"
        ),
        None => writeln!(io::stdout(), "{line}; try: kill -KILL {me}"),
    }
}

/// This process's pid as the /proc mounted here numbers it (Linux):
/// `/proc/self` names it so, in the PID namespace of whoever mounted it.
fn pid_in_proc() -> Option<Pid> {
    let link = std::fs::read_link("/proc/self").ok()?;
    link.to_str()?.parse().ok().map(Pid::from_raw)
}

fn name(way: Way) -> &'static str {
    if way == Way::Pipe { "cat" } else { "sleep" }
}

/// How a child ended, in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(signal)) => match Signal::try_from(signal) {
            Ok(named) => format!("was killed by {named}"),
            // A real-time signal (SIGRTMIN and above) has no name in nix.
            Err(_) => format!("was killed by signal {signal}"),
        },
        _ => format!("ended: {status}"),
    }
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
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

/// Reads `WAY [--children N] [--for SECS] [--from-thread]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        way: Way::None,
        children: 2,
        secs: 3600,
        from_thread: false,
    };
    let mut way = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("children") => args.children = parser.value()?.parse()?,
            Long("for") => args.secs = parser.value()?.parse()?,
            Long("from-thread") => args.from_thread = true,
            Value(value) if way.is_none() => {
                way = Some(match value.string()?.as_str() {
                    "none" => Way::None,
                    "pdeathsig" => Way::Pdeathsig,
                    "pipe" => Way::Pipe,
                    "group" => Way::Group,
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
    args.way = way.ok_or("none, pdeathsig, pipe or group?")?;
    if !(1..=100).contains(&args.children) {
        return Err("--children must be 1 to 100".into());
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
