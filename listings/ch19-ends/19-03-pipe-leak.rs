// ANCHOR: whole
// Listing 19-3: a descriptor that leaks into a child keeps a pipe open.
// The program makes a pipe, starts `cat` as a helper that runs until its
// stdin is closed, writes one line into the pipe and closes its own write
// end. Made with `pipe`, the write end leaks into `cat`, and the reader
// sees no end of stream while `cat` lives; made with `pipe2(O_CLOEXEC)`
// (`--cloexec`), `exec` closes it in `cat`, and the end comes at once.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{self, Child, Command, ExitCode, Stdio};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction,
};
use nix::unistd::{pipe, pipe2};

const USAGE: &str = "usage: pipe-leak [--cloexec]";
/// How long the reader waits for the end of the stream before it looks
/// for whoever holds the pipe open.
const QUIET_MS: u16 = 1000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output any more: the end, once the child is
        // reaped (`run` waits for it first).
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-leak: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    // SIGPIPE stays ignored, as Rust leaves it: a parent killed by it
    // would leave its child unreaped. A closed stdout is an error that
    // `run` returns once the child is reaped; `main` then ends quietly,
    // with status 0 and no message.
    let cloexec = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    let chld = keep_own_zombies()?;
    // ANCHOR: pipe
    let (read_end, write_end) = if cloexec {
        pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot make a pipe: {e}"))?
    } else {
        // Not close-on-exec, on purpose: the leak to show.
        pipe().map_err(|e| format!("cannot make a pipe: {e}"))?
    };
    // ANCHOR_END: pipe
    // A helper that knows nothing of our pipe, and runs as long as we
    // keep its stdin open, as a long-running child would.
    let mut helper = Command::new("cat");
    helper.stdin(Stdio::piped()).stdout(Stdio::null());
    sigchld_as_found(&mut helper, chld);
    let mut helper = helper
        .spawn()
        .map_err(|err| format!("cannot start cat: {err}"))?;
    let result = show(&mut helper, read_end, write_end);
    // Whatever happened, our output failing included: `cat` reads the
    // end of its input once we close its stdin, and we reap it.
    drop(helper.stdin.take());
    helper.wait()?;
    result
}

/// Writes a line into the pipe, drops our write end, and reads until
/// the end of the stream; if it does not come, says who holds the pipe
/// open, and ends `cat` to see the end come.
fn show(
    helper: &mut Child,
    read_end: OwnedFd,
    write_end: OwnedFd,
) -> Result<(), Box<dyn Error>> {
    writeln!(io::stdout(), "Started cat as pid {}", helper.id())?;

    let mut writer = File::from(write_end);
    writer.write_all(b"hello\n")?;
    drop(writer); // Our only write end, as far as we know.

    let mut reader = File::from(read_end);
    let inode = reader.metadata()?.ino();
    if read_until_end(&mut reader)? {
        writeln!(io::stdout(), "End of stream at once")?;
    } else {
        for (name, pid, fd) in write_end_holders(inode) {
            writeln!(
                io::stdout(),
                "No end of stream: {name} (pid {pid}) has the write end as descriptor {fd}"
            )?;
        }
        drop(helper.stdin.take()); // `cat` reads the end of its input.
        helper.wait()?;
        if read_until_end(&mut reader)? {
            writeln!(io::stdout(), "End of stream once cat had exited")?;
        }
    }
    Ok(())
}
// ANCHOR_END: run

/// Prints what arrives, until the end of the stream (true) or until
/// nothing has come for QUIET_MS (false).
fn read_until_end(reader: &mut File) -> io::Result<bool> {
    let mut buf = [0; 1024];
    loop {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(QUIET_MS))? == 0 {
            return Ok(false);
        }
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        for line in String::from_utf8_lossy(&buf[..n]).lines() {
            writeln!(io::stdout(), "Reader got [{line}]")?;
        }
    }
}

// ANCHOR: holders
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
// ANCHOR_END: holders

/// True if `err` says that the reader of our output has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Reads `[--cloexec]` from the command line.
fn parse_args() -> Result<bool, lexopt::Error> {
    use lexopt::prelude::*;
    let mut cloexec = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("cloexec") => cloexec = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(cloexec)
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
// ANCHOR_END: whole
