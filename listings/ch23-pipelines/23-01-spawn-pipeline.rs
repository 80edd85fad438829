// ANCHOR: whole
// Listing 23-1: a pipeline, `producer | consumer`, run with
// `std::process::Command` the way a shell runs one. Stages are separated
// by a `|` argument (quote it for the shell): each stage's stdout becomes
// the next one's stdin, the first reads our stdin, the last writes to our
// stdout. All stages share one process group; Ctrl-C, `kill` and `kill
// -HUP` sent to this program are passed on to the whole group. Every
// stage's status is checked, as `set -o pipefail` does: the pipeline
// fails with the status of the last stage that failed. `--timeout SECS`
// stops the pipeline if it runs longer.

use std::error::Error;
use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Child, ChildStdout, Command, ExitCode, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getpid, getppid};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level::emulate_default_handler;
use wait_timeout::ChildExt;

const USAGE: &str = "usage: spawn-pipeline [--timeout SECS] \
                     COMMAND [ARG]... ['|' COMMAND [ARG]...]...";
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
    // Caught before the first stage starts, so that none is missed.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let mut children = start(&stages)?;
    let group = Pid::from_raw(children[0].id() as i32);

    // Pass each signal on to the whole pipeline, and remember it.
    let passed_on = Arc::new(AtomicI32::new(0));
    let remember = Arc::clone(&passed_on);
    thread::spawn(move || {
        for signal in signals.forever() {
            remember.store(signal, Ordering::SeqCst);
            if let Ok(signal) = Signal::try_from(signal) {
                let _ = killpg(group, signal);
            }
        }
    });

    let (statuses, timed_out) = wait_all(&mut children, group, timeout)?;
    let signal = passed_on.load(Ordering::SeqCst);
    if signal != 0 {
        // We were interrupted: end the way an interrupted program ends,
        // so that whoever started us knows (a shell script stops).
        emulate_default_handler(signal)?;
    }
    if timed_out {
        log(format_args!(
            "timed out after {} s",
            timeout.unwrap_or_default().as_secs()
        ));
        return Ok(ExitCode::from(TIMED_OUT));
    }
    Ok(pipefail(&stages, &statuses))
}
// ANCHOR_END: run

// ANCHOR: start
/// Starts every stage, each reading what the one before writes, all in
/// the process group of the first.
fn start(stages: &[Vec<OsString>]) -> Result<Vec<Child>, Box<dyn Error>> {
    let mut children: Vec<Child> = Vec::new();
    let mut previous: Option<ChildStdout> = None;
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
        die_with_parent(&mut command);
        match command.spawn() {
            Ok(mut child) => {
                previous = child.stdout.take();
                children.push(child);
            }
            Err(err) => {
                // Stop the stages already running before we give up.
                if let Some(first) = children.first() {
                    let group = Pid::from_raw(first.id() as i32);
                    let _ = killpg(group, Signal::SIGKILL);
                }
                for child in &mut children {
                    let _ = child.wait();
                }
                return Err(format!("cannot run {:?}: {err}", stage[0]).into());
            }
        }
    }
    Ok(children)
}

/// Makes the kernel kill the stage if this process dies, even by
/// SIGKILL, when nothing could pass a signal on (see Chapter 25).
fn die_with_parent(command: &mut Command) {
    let parent = getpid();
    // SAFETY: the closure runs between fork and exec, and makes only
    // async-signal-safe system calls; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
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

// ANCHOR: wait
/// Waits for every stage, until `timeout` if there is one; then stops the
/// group with SIGTERM, and with SIGKILL if that is not enough. Returns
/// every stage's status, and whether time ran out.
fn wait_all(
    children: &mut [Child],
    group: Pid,
    timeout: Option<Duration>,
) -> io::Result<(Vec<ExitStatus>, bool)> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut timed_out = false;
    let mut statuses = Vec::new();
    for child in children.iter_mut() {
        let status = match deadline {
            Some(deadline) if !timed_out => {
                let left = deadline.saturating_duration_since(Instant::now());
                match child.wait_timeout(left)? {
                    Some(status) => status,
                    None => {
                        timed_out = true;
                        // This child is not reaped yet, so the group still
                        // exists: its id cannot belong to anyone else.
                        let _ = killpg(group, Signal::SIGTERM);
                        stop(child, group)?
                    }
                }
            }
            _ if timed_out => stop(child, group)?,
            _ => child.wait()?,
        };
        statuses.push(status);
    }
    Ok((statuses, timed_out))
}

/// Waits GRACE for a stage that was sent SIGTERM, then kills the group.
fn stop(child: &mut Child, group: Pid) -> io::Result<ExitStatus> {
    match child.wait_timeout(GRACE)? {
        Some(status) => Ok(status),
        None => {
            let _ = killpg(group, Signal::SIGKILL);
            child.wait()
        }
    }
}

/// Reports every stage that failed, and returns the status of the last
/// one, as `set -o pipefail` does: 128 + N for a stage killed by signal N.
fn pipefail(stages: &[Vec<OsString>], statuses: &[ExitStatus]) -> ExitCode {
    let mut code = 0;
    for (stage, status) in stages.iter().zip(statuses) {
        let name = stage[0].to_string_lossy();
        if let Some(signal) = status.signal() {
            let what = Signal::try_from(signal)
                .map_or(signal.to_string(), |s| s.to_string());
            log(format_args!("{name}: killed by {what}"));
            code = 128 + signal;
        } else if let Some(status) = status.code().filter(|&c| c != 0) {
            log(format_args!("{name}: exited with status {status}"));
            code = status;
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
// ANCHOR_END: wait

/// One line on stderr. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a message that cannot be written is lost.
fn log(message: impl Display) {
    let _ = writeln!(io::stderr(), "spawn-pipeline: {message}");
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
                timeout = Some(Duration::from_secs(args.value()?.parse()?));
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            Value(first) => {
                words.push(first);
                words.extend(args.raw_args()?);
            }
            _ => return Err(arg.unexpected()),
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
// ANCHOR_END: whole
