// ANCHOR: whole
// Listing 12-2: the same Ctrl-C seen from the parent's side. A child that
// catches SIGINT, cleans up and then exits with status 130 looks, to a
// shell's `$?`, just like a child that dies of SIGINT; but `waitpid`
// tells the two apart, and so does bash, which goes on with a script when
// its child "handled" the Ctrl-C and stops when the child died of it.
// dash, Debian's /bin/sh, stops either way.
//
// The program runs itself as the child (`--child exit130` or
// `--child reraise`), directly, under `bash -c` and under `dash -c`, and
// sends SIGINT to the child's whole process group, as Ctrl-C does.

use std::error::Error;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, ChildStdout, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, killpg, signal};
use nix::unistd::Pid;
use signal_hook::consts::SIGINT;
use signal_hook::{flag, low_level};

const USAGE: &str = "usage: sig-status [--child exit130|reraise]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-status: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: child
/// The child: waits for SIGINT, "cleans up", then ends one way or the
/// other. It gives up after ten seconds, so that it cannot outlive a
/// parent that died before sending the signal.
fn child(reraise: bool) -> Result<ExitCode, Box<dyn Error>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    flag::register(SIGINT, Arc::clone(&interrupted))?;
    writeln!(io::stdout(), "ready")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !interrupted.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            return Err("no SIGINT came".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    // ... clean up ...
    if reraise {
        low_level::emulate_default_handler(SIGINT)?;
    }
    Ok(ExitCode::from(130))
}
// ANCHOR_END: child

// ANCHOR: run
fn run() -> Result<ExitCode, Box<dyn Error>> {
    restore_sigpipe()?;
    if let Some(reraise) = parse_args().map_err(|e| format!("{e}; {USAGE}"))? {
        return child(reraise);
    }
    // Ignored on entry, SIGINT stays ignored in a non-interactive shell,
    // which may not take it back: there would be no Ctrl-C to show.
    if is_ignored(SIGINT)? {
        return Err("SIGINT is ignored here (a script's `&` job?), and the \
                    shells would inherit that: run it in the foreground"
            .into());
    }
    // A blocked SIGINT passes through exec too, and would never reach the
    // children: a Ctrl-C demonstration needs it unblocked.
    SigSet::from(Signal::SIGINT).thread_unblock()?;
    default_sigchld()?; // For `wait`: a parent may have left it ignored.
    let (mut out, me) = (io::stdout(), std::env::current_exe()?);
    for way in ["exit130", "reraise"] {
        let mut direct = Command::new(&me);
        direct.args(["--child", way]);
        let status = interrupt(&mut direct, false)?;
        writeln!(out, "{way:<8} child alone:   {}", describe(status))?;
        // `$0` is the first argument after the script.
        let script = r#""$0" --child "$1"; echo "  (the script went on)""#;
        for sh in ["bash", "dash"] {
            let mut shell = Command::new(sh);
            shell.args(["-c", script]).arg(&me).arg(way);
            match interrupt(&mut shell, true) {
                Ok(status) => {
                    writeln!(
                        out,
                        "{way:<8} under {sh} -c: {sh} {}",
                        describe(status)
                    )?;
                }
                Err(err) if is_not_found(&*err) => {
                    writeln!(
                        out,
                        "{way:<8} under {sh} -c: {sh} is not installed"
                    )?;
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `command` in a process group of its own, waits for the child's
/// "ready" (and, for a shell, until the shell waits for its child), sends
/// SIGINT to the whole group, and returns how it ended. What the command
/// prints after "ready" is passed on once it is reaped: if our reader has
/// gone, that write ends us by SIGPIPE, and no child is left to init.
fn interrupt(
    command: &mut Command,
    shell: bool,
) -> Result<ExitStatus, Box<dyn Error>> {
    let mut running = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let group = Pid::from_raw(running.id() as i32);
    let interrupted = match running.stdout.take() {
        Some(out) => ready_then_ctrl_c(out, group, shell),
        None => Err("no stdout".into()),
    };
    match interrupted {
        Ok(rest) => {
            let status = running.wait()?;
            let mut stdout = io::stdout();
            write!(stdout, "{rest}")?;
            stdout.flush()?;
            Ok(status)
        }
        Err(err) => {
            // The child waits for a SIGINT that will not come: end its
            // group, and reap it, before we report the error.
            let _ = killpg(group, Signal::SIGKILL);
            let _ = running.wait();
            Err(err)
        }
    }
}

/// Waits for the child's "ready" (and, for a shell, until the shell waits
/// for its child), sends SIGINT to the group, and returns the rest.
fn ready_then_ctrl_c(
    out: ChildStdout,
    group: Pid,
    shell: bool,
) -> Result<String, Box<dyn Error>> {
    let mut out = BufReader::new(out);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("the child said {line:?}").into());
    }
    if shell {
        // bash decides what a Ctrl-C means while it waits for its child;
        // one that comes sooner ends bash as it would end any script.
        // (dash dies of it either way.)
        wait_in_waitpid(group)?;
    }
    killpg(group, Signal::SIGINT)?; // What Ctrl-C does.
    let mut rest = String::new();
    out.read_to_string(&mut rest)?;
    Ok(rest)
}

/// Whether `signal` is ignored, as a parent may have left it. A null new
/// action makes `sigaction` only report the current one.
fn is_ignored(signal: i32) -> nix::Result<bool> {
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

/// True if `err` says that a program to run was not found.
fn is_not_found(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Waits until `pid` sleeps in `waitpid` (Linux: its wchan is `do_wait`).
fn wait_in_waitpid(pid: Pid) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let wchan = format!("/proc/{pid}/wchan");
    while std::fs::read_to_string(&wchan)? != "do_wait" {
        if Instant::now() > deadline {
            return Err("the shell never waited for its child".into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// What a parent learns from `waitpid`, and what a shell's `$?` says.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code} ($? = {code})"),
        (None, Some(n)) => {
            let name = Signal::try_from(n).map_or("?", Signal::as_str);
            format!("was killed by {name} ($? = {})", 128 + n)
        }
        _ => format!("{status}"),
    }
}
// ANCHOR_END: run

/// Gives SIGCHLD its default action. A parent may have left it ignored,
/// which passes through `exec`; then the kernel reaps our children itself,
/// and waiting for one fails with ECHILD (Listing 12-4).
fn default_sigchld() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map(drop)
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

/// Reads `[--child exit130|reraise]`: `None` for the parent.
fn parse_args() -> Result<Option<bool>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut child = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("child") => {
                child = Some(match args.value()?.string()?.as_str() {
                    "exit130" => false,
                    "reraise" => true,
                    other => {
                        return Err(format!(
                            "unknown child '{}'",
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
    Ok(child)
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
