// ANCHOR: whole
// Listing 23-2: feeding a child and reading its output at once. The
// program sends `--bytes N` bytes (default 1000000) through `cat` and
// counts what comes back, one of three ways:
//
// - `write-first`: write all of stdin, then read stdout. Once both pipes
//   are full, `cat` waits for us to read and we wait for it to read: a
//   deadlock. Each write waits for room with `poll`, until `--wait SECS`
//   (default 2) after the start; then `cat` is killed.
// - `thread`: a second thread writes while the main thread reads.
// - `output`: a second thread writes while `wait_with_output` reads
//   stdout and stderr together, then reaps `cat`.
//
// The run fails if `cat` is killed in the deadlock, or, the other ways,
// if its stdin closes before it has taken every byte.
//
// SIGPIPE stays ignored: a `cat` that dies must not kill us, but make our
// write fail, and our own output is written with `writeln!`.

use std::error::Error;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{self, Child, ChildStdin, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction,
};

const USAGE: &str = "usage: spawn-deadlock [write-first|thread|output] \
                     [--bytes N] [--wait SECS]";

/// The most `--bytes` may ask for: the data is built in memory first.
const MAX_BYTES: usize = 1 << 28;
/// The longest `--wait`, an hour: a deadline far beyond it cannot be
/// computed (`Instant` would overflow).
const MAX_WAIT: u64 = 3600;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    WriteFirst,
    Thread,
    Output,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Our own stdout has no reader any more.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("spawn-deadlock: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let (way, bytes, wait) =
        parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped.
    let chld = keep_own_zombies()?;
    let mut out = io::stdout();
    let mut command = Command::new("cat");
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    sigchld_as_found(&mut command, chld);
    if way == Way::Output {
        // Read by `wait_with_output`, together with stdout. The other ways
        // read stdout only: a stderr piped there and never read would fill,
        // and the child would wait in its write for ever.
        command.stderr(Stdio::piped());
    }
    let cat = command
        .spawn()
        .map_err(|err| format!("cannot start cat: {err}"))?;
    let data = vec![b'x'; bytes];
    let total = data.len();
    let (report, late, sent) = match way {
        Way::WriteFirst => {
            let (report, late) = write_first(cat, data, wait)?;
            (report, late, total)
        }
        Way::Thread => with_thread(cat, data).map(|(r, n)| (r, false, n))?,
        Way::Output => with_output(cat, data).map(|(r, n)| (r, false, n))?,
    };
    writeln!(out, "{report}")?;
    if late {
        return Err(
            format!("deadlock: cat killed after {} s", wait.as_secs()).into()
        );
    }
    if sent < total {
        // `cat` ended, or closed its stdin, before taking everything.
        return Err(format!(
            "cat's stdin closed after {sent} of {total} bytes"
        )
        .into());
    }
    Ok(())
}

// ANCHOR: write_first
/// The deadlock: all of stdin first, then stdout. Returns the report, and
/// whether `cat` had to be killed.
fn write_first(
    mut cat: Child,
    data: Vec<u8>,
    wait: Duration,
) -> Result<(String, bool), Box<dyn Error>> {
    let mut stdin = cat.stdin.take().ok_or("no stdin")?;
    let deadline = Instant::now() + wait;
    let (mut written, mut late) = (0, false);
    for chunk in data.chunks(PIPE_BUF) {
        if !room_before(&stdin, deadline)? {
            // The deadlock: kill `cat`. Child::kill signals only a child
            // that has not been reaped, and we reap it only below.
            cat.kill()?;
            late = true;
            break;
        }
        if stdin.write_all(chunk).is_err() {
            break; // `cat` is gone; its status will say how.
        }
        written += chunk.len();
    }
    drop(stdin); // The end of cat's input.
    let got = read_all(&mut cat)?;
    let status = cat.wait()?;
    let report = format!(
        "Wrote {written} of {} bytes, got {got} back; cat {}",
        data.len(),
        describe(status)
    );
    Ok((report, late))
}
// ANCHOR_END: write_first

// ANCHOR: room
/// The most bytes a write puts into a pipe in one piece (Linux's).
const PIPE_BUF: usize = 4096;

/// Waits until the pipe has room for a write of up to PIPE_BUF bytes, but
/// not past `deadline`: false if no room came. `poll` reports a pipe
/// writable while one of its page slots is free, enough for PIPE_BUF
/// bytes; the time limit is part of the call, so nothing can slip
/// between setting it and waiting. It is rounded up to whole
/// milliseconds: rounded down, the last fraction of one would be a
/// `poll` of 0 ms, which returns at once, again and again.
fn room_before(pipe: &ChildStdin, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_nanos().div_ceil(1_000_000);
        let ms = u16::try_from(ms).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if Instant::now() >= deadline => return Ok(false),
            Ok(0) | Err(Errno::EINTR) => {} // Not there yet: again.
            Ok(_) => return Ok(true),
            Err(err) => return Err(err.into()),
        }
    }
}
// ANCHOR_END: room

// ANCHOR: thread
/// Way out 1: another thread writes stdin while this one reads stdout.
/// Returns the report, and how many bytes went into cat's stdin.
fn with_thread(
    mut cat: Child,
    data: Vec<u8>,
) -> Result<(String, usize), Box<dyn Error>> {
    let stdin = cat.stdin.take().ok_or("no stdin")?;
    let writer = start_writer(&mut cat, stdin, data)?;
    let got = read_all(&mut cat)?;
    let sent = writer.join().map_err(|_| "the writer panicked")?;
    let status = cat.wait()?;
    let report = format!(
        "Sent {sent} bytes, got {got} back; cat {}",
        describe(status)
    );
    Ok((report, sent))
}

/// Way out 2: another thread writes stdin; `wait_with_output` reads
/// stdout and stderr together until both end, then reaps the child.
fn with_output(
    mut cat: Child,
    data: Vec<u8>,
) -> Result<(String, usize), Box<dyn Error>> {
    let stdin = cat.stdin.take().ok_or("no stdin")?;
    let writer = start_writer(&mut cat, stdin, data)?;
    let output = cat.wait_with_output()?;
    let sent = writer.join().map_err(|_| "the writer panicked")?;
    let report = format!(
        "Sent {sent} bytes, got {} back and {} on stderr; cat {}",
        output.stdout.len(),
        output.stderr.len(),
        describe(output.status)
    );
    Ok((report, sent))
}

/// Starts the thread that feeds `cat`. `thread::spawn` would panic if
/// the system refused it (`ulimit -u` counts threads); then `cat` is
/// ended and reaped, and the error returned.
fn start_writer(
    cat: &mut Child,
    stdin: ChildStdin,
    data: Vec<u8>,
) -> Result<thread::JoinHandle<usize>, Box<dyn Error>> {
    let started = thread::Builder::new().spawn(move || feed(stdin, data));
    started.map_err(|err| {
        let _ = cat.kill();
        let _ = cat.wait();
        format!("cannot start a thread: {err}").into()
    })
}

/// Writes `data` and closes stdin; returns how much was written. Not
/// `write_all`, whose error would hide how much went in before it: `cat`
/// may take part of the data and exit, and then a write fails (EPIPE).
fn feed(mut stdin: ChildStdin, data: Vec<u8>) -> usize {
    let mut sent = 0;
    while sent < data.len() {
        match stdin.write(&data[sent..]) {
            Ok(0) => break, // Cannot happen with a pipe; never spin on it.
            Ok(n) => sent += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => break, // `cat` is gone; its status will say how.
        }
    }
    sent
}
// ANCHOR_END: thread

/// Reads cat's stdout to its end; returns how many bytes came.
fn read_all(cat: &mut Child) -> Result<u64, Box<dyn Error>> {
    let mut stdout = cat.stdout.take().ok_or("no stdout")?;
    let mut buf = [0; 64 * 1024];
    let mut got = 0;
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got += n as u64,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("reading cat: {err}").into()),
        }
    }
}

/// How a child ended, in words.
fn describe(status: process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal().map(Signal::try_from)) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(Ok(signal))) => format!("was killed by {signal}"),
        _ => format!("ended: {status}"),
    }
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Reads `[write-first|thread|output] [--bytes N] [--wait SECS]`.
fn parse_args() -> Result<(Way, usize, Duration), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut way, mut bytes, mut wait) = (None, 1_000_000, 2);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("bytes") => bytes = args.value()?.parse()?,
            Long("wait") => wait = args.value()?.parse()?,
            Value(value) if way.is_none() => {
                way = Some(match value.string()?.as_str() {
                    "write-first" => Way::WriteFirst,
                    "thread" => Way::Thread,
                    "output" => Way::Output,
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
    if bytes > MAX_BYTES {
        return Err(format!("--bytes must be at most {MAX_BYTES}").into());
    }
    if wait == 0 || wait > MAX_WAIT {
        return Err(format!("--wait must be from 1 to {MAX_WAIT}").into());
    }
    let way = way.unwrap_or(Way::WriteFirst);
    Ok((way, bytes, Duration::from_secs(wait)))
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
