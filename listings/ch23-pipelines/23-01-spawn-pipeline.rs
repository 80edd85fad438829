// ANCHOR: whole
// Listing 23-1: a pipeline, `producer | consumer`, run with
// `std::process::Command` the way a shell runs one. Stages are separated
// by a `|` argument (quote it for the shell): each stage's stdout becomes
// the next one's stdin, the first reads our stdin, the last writes to our
// stdout. All stages share one process group; Ctrl-C, `kill` and `kill
// -HUP` sent to this program are passed on to the whole group, and to a
// stage that has left it (`setsid`) by its pid, as `--timeout` is. At a
// terminal, the stages' group gets the terminal while this program has
// it; Ctrl-Z stops the pipeline and this program together, as a shell's
// job, and Ctrl-C, once it has ended the stages, ends this program's
// group, a script that ran it included. So run it alone in its shell's
// job: piped into `less`, it would take the terminal from `less` too.
// Every stage's status is checked, as `set -o pipefail` does: the
// pipeline fails with the status of the last stage that failed.
// `--timeout SECS` stops the pipeline if it runs longer.

use std::error::Error;
use std::ffi::OsString;
use std::fmt::Display;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Child, ChildStdout, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, kill, killpg,
    raise, sigaction, signal,
};
use nix::sys::wait::WaitPidFlag;
use nix::unistd::{
    Pid, getpgid, getpgrp, getpid, getppid, getsid, tcgetpgrp, tcsetpgrp,
};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: spawn-pipeline [--timeout SECS] \
                     COMMAND [ARG]... ['|' COMMAND [ARG]...]...";
/// What `--help` adds to the usage: the program hands the terminal of its
/// shell's job to the stages, and would take it from anything beside it.
const ALONE: &str = "run it alone in its shell's job (its own process \
                     group): at a terminal, never in a pipe with another \
                     command, whose terminal it would take";
/// How long stages get to end after SIGTERM before they get SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// The status `timeout(1)` exits with when time runs out.
const TIMED_OUT: u8 = 124;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            log(err);
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<ExitCode, Box<dyn Error>> {
    let (timeout, stages) =
        parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    let chld = keep_own_zombies()?;
    // Caught before the first stage starts, so that none is missed, and
    // blocked while they are registered, so that none is lost (Chapter 6).
    passed_signals().thread_block()?;
    let passed = passed_signals();
    let numbers = passed.iter().map(|s| s as i32);
    let mut signals = Signals::new(numbers).map_err(|err| {
        format!("cannot catch the signals it passes on: {err}")
    })?;
    // Our terminal, if any: the stages will get it while we have it.
    let terminal = Terminal::controlling();
    if terminal.is_some() {
        stoppable_by_tstp()?;
    }
    // `exec` kept the signal mask our parent left us, and `Command` passes
    // it on to each stage. Had our parent blocked SIGINT, SIGTERM or
    // SIGHUP, neither we nor the stages would ever take them; had it
    // blocked SIGPIPE, a producer whose consumer has gone would fail with
    // EPIPE instead of dying of the signal (`Command` restores only its
    // action). SIGPIPE is unblocked now, for us and the stages. The three
    // we pass on stay blocked while the stages start: until its exec, a
    // stage runs our handlers, which would take one and lose it, so each
    // stage unblocks them itself, at their default (`die_with_parent`).
    // Unblocked here afterwards, before any thread starts: for us, and
    // for our threads, which inherit this thread's mask.
    SigSet::from(Signal::SIGPIPE).thread_unblock()?;
    let children = start(&stages, terminal.as_ref(), chld);
    passed_signals().thread_unblock()?;
    let children = match children {
        Ok(children) => children,
        // A stage could not run, and `start` has ended the others. A
        // signal that came meanwhile waited, blocked, and signal-hook's
        // handler has just taken it: we were interrupted, so end by it,
        // as we do once the stages run, rather than report.
        Err(err) => match signals.pending().next() {
            Some(signal) => return Ok(die_of(signal, None)),
            None => return Err(err),
        },
    };
    let pids: Vec<Pid> = children
        .iter()
        .map(|c| Pid::from_raw(c.id() as i32))
        .collect();
    let group = Arc::new(Group::new(pids[0], &pids));
    // At a terminal, SIGTSTP too, now that no stage is left to run our
    // handler before its exec: once `fg` has given the terminal to us and
    // not to the stages, Ctrl-Z reaches us alone (see `suspend`).
    let tstp = match terminal {
        Some(_) => signals.add_signal(Signal::SIGTSTP as i32),
        None => Ok(()),
    };

    // Pass each signal on to the whole pipeline, and remember it; pass
    // SIGTSTP on only, for `wait_all` to see the stages stop. The thread
    // gets `signals` only once it runs: should the system refuse it, a
    // signal that came meanwhile is still ours to ask for.
    let passed_on = Arc::new(AtomicI32::new(0));
    let (remember, stages_group) = (Arc::clone(&passed_on), Arc::clone(&group));
    let (hand_over, handed) = channel::<Signals>();
    let passer = move || {
        let Ok(mut signals) = handed.recv() else {
            return;
        };
        for signal in signals.forever() {
            if signal == Signal::SIGTSTP as i32 {
                stages_group.signal(Signal::SIGTSTP);
                continue;
            }
            remember.store(signal, Ordering::SeqCst);
            if let Ok(signal) = Signal::try_from(signal) {
                stages_group.signal(signal);
                // A stopped stage takes the signal once it runs again.
                stages_group.signal(Signal::SIGCONT);
            }
        }
    };
    // The watchdog first, then the signal thread.
    let started = match tstp {
        Ok(()) => watch(timeout, &group)
            .and_then(|watchdog| {
                thread::Builder::new().spawn(passer).map(|_| watchdog)
            })
            .map_err(|err| format!("cannot start a thread: {err}")),
        Err(err) => Err(format!("cannot catch SIGTSTP: {err}")),
    };
    let (finished, timed_out) = match started {
        Ok(watchdog) => {
            // It waits for them: the send cannot fail.
            let _ = hand_over.send(signals);
            watchdog
        }
        Err(why) => {
            // Out of threads (`ulimit -u`): nothing would pass a signal
            // on, or keep the time. End the stages; then, as when a stage
            // cannot run, end by a signal that came meanwhile, which
            // signal-hook's handler has taken, or say why.
            group.signal(Signal::SIGKILL);
            let _ = wait_all(&pids, &group, None);
            if let Some(terminal) = &terminal {
                terminal.take_back(group.id);
            }
            let tstp = Signal::SIGTSTP as i32;
            return match signals.pending().find(|&signal| signal != tstp) {
                Some(signal) => Ok(die_of(signal, None)),
                None => Err(why.into()),
            };
        }
    };

    let statuses = wait_all(&pids, &group, terminal.as_ref());
    drop(finished); // The watchdog, if any, ends.
    if let Some(terminal) = &terminal {
        terminal.take_back(group.id);
    }
    let statuses = statuses?;
    let mut signal = passed_on.load(Ordering::SeqCst);
    // Where the signal we end by goes: to us alone, or to our group.
    let mut job = None;
    if signal == 0 {
        // Ctrl-C at the terminal went to the stages, which had our job's
        // terminal, and not to our group. Whoever sent it, a stage that
        // died of SIGINT or SIGQUIT ends us too, unless we found that
        // signal ignored; and if we have the
        // terminal back, our whole group, as the key would have: a shell
        // script that ran us stops only if its shell gets the signal.
        signal = interrupted(&statuses);
        job = terminal.as_ref().filter(|t| t.foreground()).map(|t| t.ours);
    }
    if signal != 0 {
        // We were interrupted: end the way an interrupted program ends,
        // so that whoever started us sees it in our status.
        return Ok(die_of(signal, job));
    }
    if timed_out.load(Ordering::SeqCst) {
        let secs = timeout.unwrap_or_default().as_secs();
        log(format_args!("timed out after {secs} s"));
        return Ok(ExitCode::from(TIMED_OUT));
    }
    Ok(pipefail(&stages, &statuses))
}

/// Dies of `signal`, by its default action: raised, or sent to `job`,
/// our own process group, so that every process in it gets it too. The
/// init of a PID namespace (a container's PID 1) cannot: the kernel drops
/// every signal whose action for it is the default, even one it sends
/// itself (Chapter 12). There it exits with 128 + n, the status a shell
/// would report.
fn die_of(signal: i32, job: Option<Pid>) -> ExitCode {
    if let Ok(signal) = Signal::try_from(signal) {
        // The default action of SIGQUIT (Ctrl-\) dumps core: we pass on
        // how a stage ended, we did not crash, so no core file of ours.
        let _ = nix::sys::prctl::set_dumpable(false);
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        // The end, unless we are an init.
        let _ = match job {
            Some(group) => killpg(group, signal),
            None => raise(signal),
        };
    }
    ExitCode::from(128 + signal as u8)
}
// ANCHOR_END: run

// ANCHOR: start
/// Starts every stage, each reading what the one before writes, all in
/// the process group of the first; at a terminal, that group is made its
/// foreground. Each gets SIGCHLD's action as we found it, `chld`.
fn start(
    stages: &[Vec<OsString>],
    terminal: Option<&Terminal>,
    chld: SigAction,
) -> Result<Vec<Child>, Box<dyn Error>> {
    let mut children: Vec<Child> = Vec::new();
    let mut previous: Option<ChildStdout> = None;
    // Whether we have the terminal now, to have it back if a stage fails.
    let ours = terminal.filter(|terminal| terminal.foreground());
    for (i, stage) in stages.iter().enumerate() {
        let mut command = Command::new(&stage[0]);
        command.args(&stage[1..]);
        if let Some(stdout) = previous.take() {
            // Moved into the command, and closed in this process when the
            // command is dropped: the next stage holds the only read end.
            command.stdin(stdout);
        }
        if i + 1 < stages.len() {
            command.stdout(process::Stdio::piped());
        }
        // Group 0 makes the first stage lead a new group; the others
        // join it.
        let group = children.first().map_or(0, |first| first.id() as i32);
        command.process_group(group);
        sigchld_as_found(&mut command, chld);
        die_with_parent(&mut command);
        if let Some(terminal) = terminal {
            terminal.give_to_stage(&mut command);
        }
        match command.spawn() {
            Ok(mut child) => {
                previous = child.stdout.take();
                children.push(child);
            }
            Err(err) => {
                // Take the terminal back: a first stage that could not run
                // gave it to its own group before its exec failed. Then
                // stop the stages already running before we give up.
                if let Some(terminal) = ours {
                    let _ = set_foreground(&terminal.tty, terminal.ours);
                }
                // Each stage by its pid too, for one that left the group:
                // none is reaped yet, so every pid is still its own.
                if let Some(first) = children.first() {
                    let _ = killpg(
                        Pid::from_raw(first.id() as i32),
                        Signal::SIGKILL,
                    );
                }
                for child in &mut children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                // EMFILE is our own table: the pipe to the next stage, or
                // the socket pair `Command` makes to hear of a failed
                // exec, found no descriptor free (exec itself takes
                // none). Not the stage's doing: it never ran.
                let ours = err.raw_os_error() == Some(libc::EMFILE);
                let why = if ours {
                    "this process is out of descriptors: "
                } else {
                    ""
                };
                return Err(
                    format!("cannot run {:?}: {why}{err}", stage[0]).into()
                );
            }
        }
    }
    Ok(children)
}

/// The signals this program catches and passes on to the stages: SIGTERM,
/// and SIGINT and SIGHUP unless our parent left them ignored (a script's
/// `&` job, `nohup`). Those stay ignored, for us and for the stages, as
/// the user chose. A set built on the stack: it may be made between fork
/// and exec, where `sigaction` is safe too.
fn passed_signals() -> SigSet {
    let mut set = SigSet::from(Signal::SIGTERM);
    for signal in [Signal::SIGINT, Signal::SIGHUP] {
        if !is_ignored(signal) {
            set.add(signal);
        }
    }
    set
}

/// Whether `signal` is ignored. A null new action makes `sigaction` only
/// report the current one; it cannot fail for a valid signal.
fn is_ignored(signal: Signal) -> bool {
    let mut current = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        let number = signal as i32;
        nix::libc::sigaction(number, std::ptr::null(), current.as_mut_ptr())
    };
    // SAFETY: zeroed, and filled in when `sigaction` succeeded.
    let current = unsafe { current.assume_init() };
    done == 0 && current.sa_sigaction == nix::libc::SIG_IGN
}

/// Makes the kernel kill the stage if this process dies, even by
/// SIGKILL, when nothing could pass a signal on (see Chapter 25).
fn die_with_parent(command: &mut Command) {
    let parent = getpid();
    // SAFETY: the closure runs between fork and exec, and makes only
    // async-signal-safe system calls (sigaction, pthread_sigmask, prctl,
    // getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Until exec, this stage has our handlers, and ours catch the
            // signals we pass on: a Ctrl-C that came now would run ours and
            // be lost, and the stage would run on. `run` blocked them while
            // we fork: their default action, then unblocked, and one that
            // came meanwhile ends the stage here.
            for caught in passed_signals().iter() {
                signal(caught, SigHandler::SigDfl)?;
            }
            passed_signals().thread_unblock()?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if getppid() != parent {
                // The parent died before the line above: nobody is left
                // to wait for this stage.
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        })
    };
}
// ANCHOR_END: start

// ANCHOR: terminal
/// The controlling terminal of this program, if it has one.
struct Terminal {
    tty: Arc<File>,
    /// Our own process group: the shell's job.
    ours: Pid,
}

impl Terminal {
    fn controlling() -> Option<Terminal> {
        // Our controlling terminal, whichever descriptors point at it;
        // there is none in a daemon, a cron job or CI.
        let tty = File::open("/dev/tty").ok()?;
        let ours = getpgrp();
        Some(Terminal {
            tty: Arc::new(tty),
            ours,
        })
    }

    /// Whether our group has the terminal: we run in the foreground.
    fn foreground(&self) -> bool {
        tcgetpgrp(self.tty.as_fd()) == Ok(self.ours)
    }

    /// Makes the stage give its group the terminal before it execs, if we
    /// have it: so that the stage owns it before it can read from it.
    fn give_to_stage(&self, command: &mut Command) {
        let (tty, ours) = (Arc::clone(&self.tty), self.ours);
        // SAFETY: between fork and exec, the closure makes system calls
        // only (ioctl, getpgrp, pthread_sigmask) and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if tcgetpgrp(tty.as_fd()) == Ok(ours) {
                    set_foreground(&tty, getpgrp())?;
                }
                Ok(())
            })
        };
    }

    /// Takes the terminal back from the stages' group, if it has it.
    fn take_back(&self, group: Pid) {
        if tcgetpgrp(self.tty.as_fd()) == Ok(group) {
            let _ = set_foreground(&self.tty, self.ours);
        }
    }

    /// Whether our shell would see us stop: the first of our ancestors
    /// outside our group, usually the shell that made it a job, is in our
    /// session, and may continue us. Where there is none, the group is
    /// orphaned, and the kernel discards SIGTSTP.
    fn can_stop(&self) -> bool {
        let session = getsid(None);
        let mut ancestor = getppid();
        while getpgid(Some(ancestor)) == Ok(self.ours) {
            match parent_of(ancestor) {
                Some(parent) => ancestor = parent,
                None => return false,
            }
        }
        getsid(Some(ancestor)) == session
    }

    /// A stage has stopped, `why` telling how: SIGTSTP for Ctrl-Z,
    /// SIGTTIN or SIGTTOU for using a terminal it does not own. Stop with
    /// it, with our whole group, so that our shell sees the job stop. Once the
    /// shell continues us, give the stages the terminal if we have it,
    /// and continue them; a stage that needs the terminal goes on only
    /// once we have it (`fg`): until then we stop again. If we have it
    /// already, `fg` gave it to us while the job ran, with no SIGCONT,
    /// and it goes on at once.
    fn suspend(&self, group: &Group, why: Signal) -> nix::Result<()> {
        let needs_terminal = matches!(why, Signal::SIGTTIN | Signal::SIGTTOU);
        let mut stop = !(needs_terminal && self.foreground());
        self.take_back(group.id);
        while stop && self.can_stop() {
            self.stop_job()?;
            stop = needs_terminal && !self.foreground();
        }
        if self.foreground() {
            set_foreground(&self.tty, group.id)?;
        } else if needs_terminal {
            return Ok(()); // Nobody can give it the terminal.
        }
        group.signal(Signal::SIGCONT);
        Ok(())
    }

    /// Sends SIGTSTP to our whole group, as Ctrl-Z would: a script that
    /// started us stops too, and its shell sees the job stop. Our catch of
    /// SIGTSTP is set aside meanwhile, so that the signal stops us. Returns
    /// once a SIGCONT has come.
    fn stop_job(&self) -> nix::Result<()> {
        let default = SigAction::new(
            SigHandler::SigDfl,
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the default action runs no code of ours, and the action
        // put back is the one that was there.
        let caught = unsafe { sigaction(Signal::SIGTSTP, &default) }?;
        let stopped = killpg(self.ours, Signal::SIGTSTP);
        // SAFETY: signal-hook's handler, as it was installed.
        unsafe { sigaction(Signal::SIGTSTP, &caught) }?;
        stopped
    }
}

/// Makes SIGTSTP stop this process, as a job-control shell does for its
/// jobs: `suspend` stops with it, and would loop for ever if a parent
/// had left it blocked, which survives exec (see Chapter 24). A parent
/// may also have left it ignored, which survives too: the stages, which
/// inherit our action, would not stop at Ctrl-Z. They get the default.
fn stoppable_by_tstp() -> nix::Result<()> {
    // SAFETY: the default action installs no handler.
    unsafe { signal(Signal::SIGTSTP, SigHandler::SigDfl) }?;
    SigSet::from(Signal::SIGTSTP).thread_unblock()
}

/// The parent of process `pid`, from /proc/PID/stat (Linux): the field
/// after the state, which follows the command name in parentheses.
fn parent_of(pid: Pid) -> Option<Pid> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = stat.rsplit_once(") ")?;
    let ppid = fields.split(' ').nth(1)?.parse().ok()?;
    Some(Pid::from_raw(ppid))
}

/// Makes `group` the terminal's foreground process group. A process that
/// is not in the foreground may do so only with SIGTTOU blocked or
/// ignored; otherwise the kernel stops it with SIGTTOU, as it stops a
/// background job that tries to take the terminal.
fn set_foreground(tty: &File, group: Pid) -> nix::Result<()> {
    let ttou = SigSet::from(Signal::SIGTTOU);
    let old = ttou.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let result = tcsetpgrp(tty, group);
    old.thread_set_mask()?;
    result
}
// ANCHOR_END: terminal

// ANCHOR: wait
/// The stages' process group, and the stages not reaped yet. While one
/// of them is in the group, the group's id is in use; once none is, the
/// same number could belong to a stranger's group. The lock makes "signal
/// the group" and "reap a stage" happen one after the other, never at
/// once.
struct Group {
    id: Pid,
    unreaped: Mutex<Vec<Pid>>,
}

impl Group {
    fn new(id: Pid, stages: &[Pid]) -> Group {
        let unreaped = Mutex::new(stages.to_vec());
        Group { id, unreaped }
    }

    /// Sends `signal` to every stage not yet reaped: to the group, while
    /// one of them is in it, and by its pid to each that has left it, with
    /// `setsid` say, and so no longer keeps the group's id. Not reaped, it
    /// keeps its own pid.
    fn signal(&self, signal: Signal) {
        let unreaped = self.lock();
        let in_group = |&pid: &Pid| getpgid(Some(pid)) == Ok(self.id);
        if unreaped.iter().any(in_group) {
            let _ = killpg(self.id, signal);
        }
        for &pid in unreaped.iter().filter(|pid| !in_group(pid)) {
            let _ = kill(pid, signal);
        }
    }

    /// Reaps a stage that has ended, and counts it.
    fn reap(&self, pid: Pid) -> nix::Result<ExitStatus> {
        let mut unreaped = self.lock();
        let status = reap_raw(pid)?;
        unreaped.retain(|&stage| stage != pid);
        Ok(status)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pid>> {
        self.unreaped.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits until every stage has ended, and returns their statuses in
/// order. A stage that stops makes us stop too, at a terminal.
fn wait_all(
    pids: &[Pid],
    group: &Group,
    terminal: Option<&Terminal>,
) -> nix::Result<Vec<ExitStatus>> {
    let mut statuses = vec![None; pids.len()];
    while statuses.contains(&None) {
        // A stage that has ended or stopped: any child of ours, even one
        // that left the group. Children survive exec, so a process that
        // exec'd us may have left us others: those are reaped and their
        // stops ignored. WNOWAIT leaves an ended one a zombie, unreaped,
        // until `reap` takes it under the lock.
        let flags =
            WaitPidFlag::WEXITED | WaitPidFlag::WSTOPPED | WaitPidFlag::WNOWAIT;
        let (pid, status) = match waitid_raw(None, flags) {
            Ok(Some(report)) => report,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(err) => return Err(err),
        };
        if let Some(why) = status.stopped_signal() {
            // Take the report, so that the next waitid waits for news.
            // WSTOPPED alone never reaps: a stage that has died since is
            // left for the next waitid, and this one fails with ECHILD.
            let stopped = WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG;
            match waitid_raw(Some(pid), stopped) {
                Ok(_) | Err(Errno::ECHILD) => {}
                Err(err) => return Err(err),
            }
            let why = Signal::try_from(why)?;
            if let Some(terminal) = terminal.filter(|_| pids.contains(&pid)) {
                terminal.suspend(group, why)?;
            }
            continue;
        }
        let status = group.reap(pid)?;
        if let Some(i) = pids.iter().position(|&p| p == pid) {
            statuses[i] = Some(status);
        }
    }
    Ok(statuses.into_iter().flatten().collect())
}

/// With a timeout, a thread that sends the stages SIGTERM (and SIGCONT)
/// when it runs out, and SIGKILL GRACE later, unless the pipeline has finished, which
/// dropping the returned sender says. The flag says whether time ran out.
fn watch(
    timeout: Option<Duration>,
    group: &Arc<Group>,
) -> io::Result<(std::sync::mpsc::Sender<()>, Arc<AtomicBool>)> {
    let (finished, done) = channel::<()>();
    let timed_out = Arc::new(AtomicBool::new(false));
    if let Some(timeout) = timeout {
        let (group, flag) = (Arc::clone(group), Arc::clone(&timed_out));
        thread::Builder::new().spawn(move || {
            let late = |wait| {
                done.recv_timeout(wait) == Err(RecvTimeoutError::Timeout)
            };
            if late(timeout) {
                flag.store(true, Ordering::SeqCst);
                group.signal(Signal::SIGTERM);
                // A stopped stage takes it once it runs again.
                group.signal(Signal::SIGCONT);
                if late(GRACE) {
                    group.signal(Signal::SIGKILL);
                }
            }
        })?;
    }
    Ok((finished, timed_out))
}

/// The signal a stage died of, if it is one a terminal sends: SIGINT for
/// Ctrl-C, SIGQUIT for `Ctrl-\`. 0 otherwise, and 0 for one that we found
/// ignored (a script's `&` job, `nohup`): the user chose not to be ended
/// by it, so the stage is reported as any other that failed.
fn interrupted(statuses: &[ExitStatus]) -> i32 {
    let by_terminal = [Signal::SIGINT, Signal::SIGQUIT];
    statuses
        .iter()
        .filter_map(|status| status.signal())
        .filter_map(|signal| Signal::try_from(signal).ok())
        .find(|&signal| by_terminal.contains(&signal) && !is_ignored(signal))
        .map_or(0, |signal| signal as i32)
}

/// Reports every stage that failed, and returns the status of the last
/// one, as `set -o pipefail` does: 128 + N for a stage killed by signal N.
fn pipefail(stages: &[Vec<OsString>], statuses: &[ExitStatus]) -> ExitCode {
    let mut code = 0;
    for (stage, status) in stages.iter().zip(statuses) {
        // Escaped: a newline in the name must not start a line.
        let name = stage[0].to_string_lossy();
        let name = name.escape_debug();
        if let Some(signal) = status.signal() {
            // A real-time signal (SIGRTMIN and above) has no name in nix.
            match Signal::try_from(signal) {
                Ok(named) => log(format_args!("{name}: killed by {named}")),
                Err(_) => {
                    log(format_args!("{name}: killed by signal {signal}"))
                }
            }
            code = 128 + signal;
        } else if let Some(status) = status.code().filter(|&s| s != 0) {
            log(format_args!("{name}: exited with status {status}"));
            code = status;
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
// ANCHOR_END: wait

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

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a message that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("spawn-pipeline: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
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

/// Reads `[--timeout SECS] COMMAND [ARG]... ['|' COMMAND [ARG]...]...`.
/// Everything from the first command on belongs to the stages, options
/// included, and need not be UTF-8.
fn parse_args() -> Result<(Option<Duration>, Vec<Vec<OsString>>), lexopt::Error>
{
    use lexopt::prelude::*;
    let mut timeout = None;
    let mut words = Vec::new();
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("timeout") => {
                // For `timeout(1)`, 0 means no limit; here it would end
                // every stage at once.
                match args.value()?.parse()? {
                    0 => return Err("--timeout must be at least 1".into()),
                    secs => timeout = Some(Duration::from_secs(secs)),
                }
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}; {ALONE}");
                process::exit(0);
            }
            Value(first) => {
                words.push(first);
                words.extend(args.raw_args()?);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    let stages: Vec<Vec<OsString>> = words
        .split(|word| word == "|")
        .map(<[OsString]>::to_vec)
        .collect();
    if stages.iter().any(Vec::is_empty) {
        return Err("every stage needs a command".into());
    }
    Ok((timeout, stages))
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
