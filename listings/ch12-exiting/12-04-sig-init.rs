// ANCHOR: whole
// Listing 12-4: a program meant to run as PID 1, the first process of a
// container, with one child, the "service". The kernel protects the init
// process of a PID namespace: it drops every signal whose action for it is
// the default, so SIGTERM and SIGINT do nothing to a PID 1 that does not
// take them itself, and only SIGKILL, sent from outside the namespace,
// ends it. How it ends decides the child's fate:
//
//   (default)   SIGTERM is not taken: it is dropped
//   --exit      WRONG: it takes SIGTERM and exits at once; the kernel then
//               kills every other process of the namespace with SIGKILL,
//               the child included, which gets no chance to clean up
//   --forward   it passes SIGTERM and SIGINT on to the child, each as
//               itself (as tini does), waits for it, and exits with its
//               status: 143 for a child that died of SIGTERM after
//               cleaning up. The child must handle each one it may get:
//               this one handles SIGTERM only, and a SIGINT passed on
//               kills it by the default action, with no clean-up (130).
//               Only those two: tini passes on every signal it can take,
//               SIGHUP included
//
// Either way it reaps the orphans that are re-parented to it, as init
// must. Try it with `unshare --pid --fork` (as root, or add
// `--map-root-user`). The child is this program, run with `--child`.

use std::error::Error;
use std::fs;
use std::io::{self, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Command, ExitCode, ExitStatus, Stdio};

use nix::errno::Errno;
use nix::libc;
use nix::sys::prctl;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction, signal,
};
use nix::sys::wait::WaitPidFlag;
use nix::unistd::{Pid, getpid, getppid};
use signal_hook::consts::SIGTERM;
use signal_hook::iterator::Signals;
use signal_hook::low_level;

const USAGE: &str = "usage: sig-init [--exit | --forward]";

#[derive(Clone, Copy, PartialEq)]
enum OnTerm {
    Nothing,
    Exit,
    Forward,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-init: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<ExitCode, Box<dyn Error>> {
    // The mask the service is given, noted before `restore_sigpipe`
    // unblocks SIGPIPE, as in Listing 12-3.
    let found_mask = SigSet::thread_get_mask()?;
    restore_sigpipe()?;
    let on_term = match parse_args().map_err(|e| format!("{e}; {USAGE}"))? {
        None => return child(),
        Some(on_term) => on_term,
    };
    // SIGCHLD at its default: a parent may have left it ignored, which
    // passes through `exec`, and then the kernel would reap our children
    // itself and send no SIGCHLD at all, for us to wait for in vain.
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    let found = unsafe { sigaction(Signal::SIGCHLD, &default) }?;
    let mut waited = SigSet::from(Signal::SIGCHLD);
    if on_term != OnTerm::Nothing {
        waited.add(Signal::SIGTERM);
        // Not a SIGINT ignored on entry (a script's `&` job): blocked, it
        // would be queued all the same, and taken.
        if !is_ignored(Signal::SIGINT)? {
            waited.add(Signal::SIGINT);
        }
    } else {
        // Left to their default actions, which the kernel drops for PID 1:
        // a parent that blocked them must not leave them queued instead.
        let mut stop = SigSet::from(Signal::SIGTERM);
        if !is_ignored(Signal::SIGINT)? {
            stop.add(Signal::SIGINT);
        }
        stop.thread_unblock()?;
    }
    // Blocked, and taken with sigwait. The kernel never drops a blocked
    // signal, not even for PID 1; SIGTERM that is not blocked has its
    // default action, and is dropped.
    waited.thread_block()?;
    let what = match on_term {
        OnTerm::Nothing => "nothing",
        OnTerm::Exit => "exit",
        OnTerm::Forward => "forward it to the child",
    };
    say(format_args!("Running as {}; on SIGTERM: {what}", whoami()?));
    let service = start_child(found_mask, found)?;
    // A child that ended before SIGCHLD was blocked (or one already a
    // zombie when we became the init by `exec`) sent no SIGCHLD we will
    // take: reap first, as if one had come, then on every SIGCHLD.
    let mut signal = Signal::SIGCHLD;
    loop {
        if signal == Signal::SIGCHLD {
            // The child, and any orphan re-parented to us.
            if let Some(status) = reap_all(service)? {
                let code = exit_code(status);
                say(format_args!(
                    "Child {}; exiting with {code}",
                    describe(status)
                ));
                return Ok(ExitCode::from(code));
            }
        } else if on_term == OnTerm::Forward {
            say(format_args!("Got {signal}: passing it on to pid {service}"));
            kill(service, signal)?;
        } else {
            say(format_args!("Got {signal}: exiting at once"));
            return Ok(ExitCode::SUCCESS);
        }
        signal = waited.wait()?;
    }
}

/// Reaps every child that has exited, as init must; returns the status
/// of `service` if it was one of them. Whatever killed it: an orphan that
/// died of a real-time signal must not make the init give up, and end
/// the namespace with it (`waitid_raw`).
fn reap_all(service: Pid) -> nix::Result<Option<ExitStatus>> {
    let mut found = None;
    loop {
        match waitid_raw(None, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
            Ok(None) | Err(Errno::ECHILD) => return Ok(found),
            Ok(Some((pid, status))) if pid == service => found = Some(status),
            Ok(Some(_)) => {} // An orphan, now reaped.
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: run

// ANCHOR: child
/// The service: waits for SIGTERM, cleans up, and dies of it (Listing
/// 12-1). It is not the init, so the signal's default action works.
fn child() -> Result<ExitCode, Box<dyn Error>> {
    // Never dropped, even on an error: it would close its socket before
    // signal-hook stops writing to it, and a SIGTERM then would raise
    // SIGPIPE, at its default here (Listing 6-2). Blocked while it is
    // registered, so that a SIGTERM passed on meanwhile is not lost
    // (Chapter 6). One passed on before this line, while the program was
    // still starting, met SIGTERM's default action (`exec` resets it) and
    // killed it with no clean-up: the init reports 143 all the same.
    SigSet::from(Signal::SIGTERM).thread_block()?;
    let signals = Signals::new([SIGTERM])
        .map_err(|err| format!("cannot watch for SIGTERM: {err}"))?;
    let signals = Box::leak(Box::new(signals));
    // Our mask is the one the init started with: a parent may have blocked
    // SIGTERM, and blocked it would never come.
    SigSet::from(Signal::SIGTERM).thread_unblock()?;
    let mut out = io::stdout();
    writeln!(out, "Child: running as {}", whoami()?)?;
    out.flush()?;
    signals.forever().next();
    writeln!(out, "Child: got SIGTERM; cleaning up")?;
    out.flush()?;
    low_level::emulate_default_handler(SIGTERM)?;
    Err("SIGTERM did not end the child".into())
}

/// Starts this program with `--child`, with the signal mask and the
/// SIGCHLD action this process started with (the child must not inherit
/// our blocked SIGTERM), and told to stop, with SIGTERM, if we die first.
fn start_child(mask: SigSet, chld: SigAction) -> io::Result<Pid> {
    let parent = getpid();
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("--child").stdin(Stdio::null());
    // SAFETY: between fork and exec the child makes four system calls
    // and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            prctl::set_pdeathsig(Signal::SIGTERM)?;
            if getppid() != parent {
                return Err(io::ErrorKind::Other.into()); // Orphaned already.
            }
            sigaction(Signal::SIGCHLD, &chld)?; // As we found it.
            Ok(mask.thread_set_mask()?)
        })
    };
    let child = command.spawn().map_err(|err| {
        // EMFILE is our own table: the descriptors `Command` makes before
        // it forks found none free. Not the service's doing: it never ran.
        let ours = err.raw_os_error() == Some(libc::EMFILE);
        let why = if ours {
            "this process is out of descriptors: "
        } else {
            ""
        };
        io::Error::new(
            err.kind(),
            format!("cannot start the service: {why}{err}"),
        )
    })?;
    Ok(Pid::from_raw(child.id() as i32))
}
// ANCHOR_END: child

/// "pid 1 (pid 4242 outside)" inside a PID namespace, "pid 4242" outside:
/// the NSpid line of /proc/self/status lists the pid in every namespace
/// from the outermost in, and /proc here is the outermost's.
fn whoami() -> io::Result<String> {
    let status = fs::read_to_string("/proc/self/status").map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot read /proc/self/status: {err}"),
        )
    })?;
    let pids: Vec<&str> = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .map(|pids| pids.split_whitespace().collect())
        .unwrap_or_default();
    Ok(match pids.as_slice() {
        [outside, .., inside] => {
            format!("pid {inside} (pid {outside} outside)")
        }
        // pid 1 of a namespace whose /proc is its own (`unshare
        // --mount-proc`): `kill 1` outside would signal the machine's init.
        // The oldest of the name, since the service, younger, has it too.
        _ if getpid().as_raw() == 1 => {
            "pid 1 (find it outside with: pgrep -o -x sig-init)".into()
        }
        _ => format!("pid {}", getpid()),
    })
}

/// Whether `signal` is ignored, as a parent may have left it. A null new
/// action makes `sigaction` only report the current one.
fn is_ignored(signal: Signal) -> nix::Result<bool> {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        libc::sigaction(signal as i32, std::ptr::null(), current.as_mut_ptr())
    };
    Errno::result(done)?;
    // SAFETY: `sigaction` succeeded, and filled it in.
    let current = unsafe { current.assume_init() };
    Ok(current.sa_sigaction == libc::SIG_IGN)
}

/// The status an init passes on: the child's, or 128 + n for a death by
/// signal n, as bash and dash would say it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (_, Some(signal)) => 128 + signal as u8,
        _ => 1,
    }
}

/// "exited with status 0", "was killed by SIGKILL", "was killed by
/// signal 34".
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

/// One line of the init's on stdout. As PID 1 a closed output cannot end
/// it: the kernel drops SIGPIPE's default action too, and the write fails
/// with EPIPE, where `println!` would panic. The line is lost; the init,
/// and with it every process of the namespace, goes on. A full disk is
/// met alike: an init that ended on it would end every process with it.
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(io::stdout(), "{line}");
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`: when whoever reads our output goes away, we end quietly,
/// like `cat`, instead of failing on its next write. Not as PID 1
/// (see `say`).
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Reads `[--exit | --forward]`, or `--child`: `None` for the child.
fn parse_args() -> Result<Option<OnTerm>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut on_term = Some(OnTerm::Nothing);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("exit") => on_term = Some(OnTerm::Exit),
            Long("forward") => on_term = Some(OnTerm::Forward),
            Long("child") => on_term = None,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(on_term)
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
