// ANCHOR: whole
// Listing 9-6: job control, both sides of it. Run in a terminal, the
// program plays a shell: it starts a job (itself, with `--job`) in a
// process group of its own, in the background, and follows it with
// `waitid(WEXITED | WSTOPPED | WCONTINUED)`:
//
// 1. The job reads the terminal from the background: the kernel stops it
//    with SIGTTIN.
// 2. The shell gives it the terminal (`tcsetpgrp`) and continues it with
//    SIGCONT: `fg`. The job reads a line (press Enter), turns the
//    terminal's echo off, as an editor would, and waits for keys.
// 3. Ctrl-Z sends SIGTSTP to the job: it puts the terminal back as it
//    found it and stops itself. The shell takes the terminal back, and
//    continues the job in the foreground again; the job turns its mode
//    back on.
// 4. `q` ends the job. So does Ctrl-C, or any signal that ends a process:
//    the job puts the terminal back first, then dies of the signal.

use std::error::Error;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Command, ExitCode, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, killpg, sigaction,
    signal,
};
use nix::sys::termios::{
    LocalFlags, SetArg, SpecialCharacterIndices, Termios, tcgetattr, tcsetattr,
};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Pid, getpgrp, isatty, tcgetpgrp, tcsetpgrp};
use signal_hook::consts::{SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: sig-jobs";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-jobs: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, Box<dyn Error>> {
    restore_sigpipe()?;
    let job = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    if !isatty(io::stdin())? {
        return Err("standard input is not a terminal".into());
    }
    if job { job_main() } else { shell_main() }
}

// ANCHOR: shell
/// The shell's side: start the job in the background, then `fg` it, and
/// follow its stops and continues until it exits.
fn shell_main() -> Result<ExitCode, Box<dyn Error>> {
    let shell = getpgrp();
    if tcgetpgrp(io::stdin())? != shell {
        return Err("run me in the foreground".into());
    }
    // The terminal's modes as we found them: a job that a signal ends may
    // not have put them back (SIGKILL leaves it no chance).
    let modes = tcgetattr(io::stdin())?;
    // A shell in the background must still take the terminal back: with
    // SIGTTOU ignored, `tcsetpgrp` does not stop it. What this changed is
    // given back to the job, as Listing 12-3 teaches.
    let ignore =
        SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: ignoring runs no code.
    let ttou = unsafe { sigaction(Signal::SIGTTOU, &ignore) }?;
    // And SIGCHLD at its default, which a parent may have left ignored:
    // then the kernel would reap the job itself, and `waitpid` would fail
    // with ECHILD. Given back to the job too.
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    let chld = unsafe { sigaction(Signal::SIGCHLD, &default) }?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("--job").process_group(0);
    // SAFETY: between fork and exec the child makes two system calls,
    // sigaction, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            sigaction(Signal::SIGTTOU, &ttou)?;
            sigaction(Signal::SIGCHLD, &chld)?;
            Ok(())
        })
    };
    let mut out = io::stdout();
    writeln!(out, "Shell: starting a job in the background")?;
    out.flush()?;
    let job = Pid::from_raw(command.spawn()?.id() as i32);
    // Until the job is reaped, an error on the way kills and reaps it, and
    // puts back the modes we found: the shell errs only while the job is
    // stopped, but a SIGSTOP stops it with its own modes still set. Then
    // the terminal is given back to our group, declared first so that it
    // is dropped last: the job may hold it when a step fails.
    let _terminal = TakeBack(shell);
    let mut left = Unreaped {
        pid: Some(job),
        modes: modes.clone(),
    };
    let mut seen = Vec::new();
    loop {
        let status = left.wait_status()?;
        if status.continued() {
            // The job runs, and may print: say so later, once it is still.
            seen.push("continued".to_string());
        } else if let Some(signal) = status.stopped_signal() {
            tcsetpgrp(io::stdin(), shell)?; // The terminal is ours again.
            seen.push(format!("stopped by {}", signal_name(signal)));
            let echo = echo_is_on()?;
            let what = seen.join(", then ");
            writeln!(
                out,
                "Shell: the job, pid {job}, {what}; echo is on: {echo}"
            )?;
            seen.clear();
            writeln!(out, "Shell: fg: the terminal is the job's; SIGCONT")?;
            out.flush()?;
            tcsetpgrp(io::stdin(), job)?;
            killpg(job, Signal::SIGCONT)?;
        } else {
            tcsetpgrp(io::stdin(), shell)?;
            // Ended by a signal that gave it no chance to put the
            // terminal back (SIGKILL): put back the modes we found.
            let restored = status.signal().is_some() && put_back(&modes)?;
            seen.push(describe(status));
            writeln!(
                out,
                "Shell: the job, pid {job}, {}",
                seen.join(", then ")
            )?;
            if restored {
                writeln!(out, "Shell: the terminal's modes put back")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
}
// ANCHOR_END: shell

/// A job not reaped yet. Dropped on an error path, it kills and reaps it,
/// and puts back the terminal's modes as the shell found them, since a
/// killed job cannot; once reaped, its pid is `None`: the number may be
/// another's now.
struct Unreaped {
    pid: Option<Pid>,
    modes: Termios,
}

impl Unreaped {
    /// Waits for the job to stop, continue or end; an end says it is
    /// reaped, whatever signal killed it: not nix's `waitpid`, which fails
    /// with EINVAL at a real-time signal, the job reaped, its pid kept.
    fn wait_status(&mut self) -> nix::Result<ExitStatus> {
        let pid = self.pid.ok_or(Errno::ECHILD)?;
        let flags = WaitPidFlag::WEXITED
            | WaitPidFlag::WSTOPPED
            | WaitPidFlag::WCONTINUED;
        // Without WNOHANG, a report or an error: never `None`.
        let (_, status) = waitid_raw(Some(pid), flags)?.ok_or(Errno::ECHILD)?;
        if status.code().is_some() || status.signal().is_some() {
            self.pid = None;
        }
        Ok(status)
    }
}

impl Drop for Unreaped {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SIGKILL ends a stopped job too.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            // Allowed from the background: SIGTTOU is ignored.
            let _ = put_back(&self.modes);
        }
    }
}

/// Puts back the terminal's `modes` if what is set differs from them in
/// any flag or control character (a job changed them and died); true if
/// it did.
fn put_back(modes: &Termios) -> nix::Result<bool> {
    let now = tcgetattr(io::stdin())?;
    if now.input_flags == modes.input_flags
        && now.output_flags == modes.output_flags
        && now.control_flags == modes.control_flags
        && now.local_flags == modes.local_flags
        && now.control_chars == modes.control_chars
    {
        return Ok(false);
    }
    tcsetattr(io::stdin(), SetArg::TCSADRAIN, modes)?;
    Ok(true)
}

/// The terminal's foreground group, given back to the shell's when
/// dropped: on an error path after `fg`, the killed job's group would keep
/// it, and whoever started the shell (a script, say) would be left in the
/// background of its own terminal: its next read from the terminal would
/// stop it (SIGTTIN), or fail with EIO where its group is orphaned.
struct TakeBack(Pid);

impl Drop for TakeBack {
    fn drop(&mut self) {
        // Allowed from the background: SIGTTOU is ignored.
        let _ = tcsetpgrp(io::stdin(), self.0);
    }
}

// ANCHOR: job
/// What the job has done to the terminal. Both threads change the
/// terminal, and each change is made with its `Mode` under one lock.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Cooked,   // Not yet anything.
    Raw,      // Echo and line editing off.
    Released, // Put back for a stop, to be taken again.
    Done,     // Put back for good, after `q`.
}

/// The job's side: read a line, set the terminal to its own mode, and
/// read keys until `q`; on Ctrl-Z give the terminal back, then stop; on
/// Ctrl-C, Ctrl-\, SIGTERM or SIGHUP give it back, then die of the signal.
fn job_main() -> Result<ExitCode, Box<dyn Error>> {
    let original = tcgetattr(io::stdin())?;
    let mode = Arc::new(Mutex::new(Mode::Cooked));
    // The signals that end a process, less any the job was started with
    // ignored (`nohup`'s SIGHUP, a script's `&`): that was the user's
    // choice, and signal-hook would replace the "ignore" (Chapter 12).
    let mut taken = vec![SIGTSTP, SIGCONT];
    for ending in [SIGINT, SIGQUIT, SIGTERM, SIGHUP] {
        if !is_ignored(ending)? {
            taken.push(ending);
        }
    }
    // Blocked while signal-hook installs the handlers: one that came
    // after a handler went in, before signal-hook knew what it was for,
    // would be lost (Chapter 6). Blocked, it waits for the unblocking.
    let mut registering = SigSet::empty();
    for &number in &taken {
        registering.add(Signal::try_from(number)?);
    }
    registering.thread_block()?;
    let signals = Signals::new(&taken)
        .map_err(|err| format!("cannot watch for signals: {err}"))?;
    // Unblocked, now that they have a handler: a parent's mask passes
    // through `exec`, and our shell's `Command` passed its own on. A
    // blocked Ctrl-Z or Ctrl-C would only wait (Chapter 12). And SIGTTIN,
    // which stops us when we read from the background: a parent may have
    // left it ignored or blocked, both pass through `exec`, and either
    // makes the kernel fail that read with EIO instead. So its default
    // action too.
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGTTIN, SigHandler::SigDfl) }?;
    let mut unblocked = registering;
    unblocked.add(Signal::SIGTTIN);
    unblocked.thread_unblock()?;
    let (theirs, ours) = (original.clone(), Arc::clone(&mode));
    // Never dropped, not even by a thread the system refuses: dropped, it
    // closes its socket's read end before it takes its handlers away, and
    // a signal between the two would write to a socket nobody reads, and
    // SIGPIPE, at its default, would end us (Listing 6-2).
    let signals = Box::leak(Box::new(signals));
    thread::Builder::new()
        .spawn(move || {
            for signal in signals.forever() {
                let _ = on_signal(signal, &theirs, &ours);
            }
        })
        .map_err(|err| format!("cannot start a thread: {err}"))?;
    let mut out = io::stdout();
    writeln!(out, "Job: reading the terminal")?;
    let mut line = String::new();
    io::stdin().read_line(&mut line)?; // SIGTTIN, while in the background.
    {
        // A Ctrl-Z now waits for the lock, and finds the terminal ours.
        let mut mode = lock(&mode);
        set_raw(&original)?;
        *mode = Mode::Raw;
    }
    writeln!(out, "Job: echo is off; Ctrl-Z stops me, q ends me")?;
    let mut key = [0u8; 1];
    // A read of 0 bytes is the end of input (a terminal hung up), not `q`.
    let ending = loop {
        match io::stdin().read(&mut key)? {
            0 => break "end of input",
            _ if key[0] == b'q' => break "q",
            _ => {}
        }
    };
    {
        // Done: a SIGCONT after this, from a Ctrl-Z just after `q`, finds
        // nothing to take again, and the terminal stays put back.
        let mut mode = lock(&mode);
        *mode = Mode::Done;
        tcsetattr(io::stdin(), SetArg::TCSADRAIN, &original)?;
    }
    writeln!(out, "Job: {ending}: terminal put back; exiting")?;
    Ok(ExitCode::SUCCESS)
}

/// On SIGTSTP: put the terminal back, then stop by SIGTSTP itself, with
/// its default action. On SIGCONT after such a stop: take it again. On a
/// signal that ends a process: put the terminal back, then die of it.
fn on_signal(
    signal: i32,
    original: &Termios,
    mode: &Mutex<Mode>,
) -> io::Result<()> {
    let mut mode = lock(mode);
    if signal != SIGCONT {
        if *mode == Mode::Raw {
            *mode = Mode::Released;
            // After a hang-up the terminal is gone: end anyway.
            let _ = tcsetattr(io::stdin(), SetArg::TCSADRAIN, original);
            let name = Signal::try_from(signal)?;
            let what = if signal == SIGTSTP {
                "stopping"
            } else {
                "ending"
            };
            let mut out = io::stdout();
            let _ = writeln!(out, "Job: {name}: terminal put back; {what}");
            let _ = out.flush();
        }
        drop(mode); // Not held while stopped: `q` may come first.
        by_default(Signal::try_from(signal)?)?;
    } else if *mode == Mode::Released {
        set_raw(original)?;
        *mode = Mode::Raw;
        let mut out = io::stdout();
        writeln!(out, "Job: SIGCONT: echo is off again; q ends me")?;
        out.flush()?;
    }
    Ok(())
}

/// The terminal's mode, locked; a thread that panicked holding the lock
/// (none does) would leave the mode as valid as any.
fn lock(mode: &Mutex<Mode>) -> MutexGuard<'_, Mode> {
    mode.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Lets `signal`'s default action happen: SIGTSTP stops the process, and
/// the shell sees SIGTSTP (in an orphaned process group the kernel drops
/// it, as it would the real Ctrl-Z; SIGSTOP would stop even there); the
/// others end it, and the shell sees the signal that did. This thread
/// does not block them, so the `raise` is delivered to it at once; after
/// a stop, the handler goes back once the process is continued.
fn by_default(signal: Signal) -> nix::Result<()> {
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours; the old action,
    // signal-hook's handler, is put back as it was.
    let hook = unsafe { sigaction(signal, &default)? };
    let raised = nix::sys::signal::raise(signal);
    // SAFETY: as above; `hook` is the action sigaction returned.
    unsafe { sigaction(signal, &hook)? };
    raised
}

/// Echo and line editing off, one key at a time; signals from keys on.
/// Out of canonical mode a read waits for VMIN bytes or VTIME tenths of a
/// second, left over from whoever set them last (`stty min 0` makes every
/// read return 0 bytes at once): so a read waits for one key, unbounded.
fn set_raw(original: &Termios) -> nix::Result<()> {
    let mut raw = original.clone();
    raw.local_flags
        .remove(LocalFlags::ECHO | LocalFlags::ICANON);
    raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    tcsetattr(io::stdin(), SetArg::TCSADRAIN, &raw)
}
// ANCHOR_END: job

/// Whether `signal` is ignored: inherited so from the parent, through
/// `exec`. A null new action makes `sigaction` only report the current one.
fn is_ignored(signal: i32) -> io::Result<bool> {
    let mut current = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        nix::libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr())
    };
    Errno::result(done)?;
    // SAFETY: `sigaction` succeeded, and filled it in.
    let current = unsafe { current.assume_init() };
    Ok(current.sa_sigaction == nix::libc::SIG_IGN)
}

/// Whether the terminal echoes what is typed.
fn echo_is_on() -> nix::Result<bool> {
    Ok(tcgetattr(io::stdin())?
        .local_flags
        .contains(LocalFlags::ECHO))
}

/// "exited with status 0", "was killed by SIGKILL", "was killed by
/// signal 34".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(signal)) => format!("was killed by {}", signal_name(signal)),
        _ => format!("changed state: {status}"),
    }
}

/// "SIGTSTP", or "signal 34" for a real-time signal, which nix's `Signal`
/// does not name.
fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map_or(format!("signal {signal}"), |s| s.to_string())
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

/// Reads `[--job]`: true for the job.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut job = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("job") => job = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(job)
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
