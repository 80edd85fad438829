// ANCHOR: whole
// Listing 31-1: feeding a child and reading it, in tokio. The program
// sends `--bytes N` bytes (default 1000000) through `tee /dev/stderr`,
// which copies its stdin to its stdout and to its stderr, and counts what
// comes back on each, one of four ways:
//
// - `write-first`: all of stdin, then stdout, then stderr: deadlock;
// - `stdout-first`: stdin and stdout together, then stderr: deadlock once
//   tee has filled its stderr pipe;
// - `keep-stdin`: all three together, but stdin is never closed, so tee
//   never sees the end of its input: no end of its output either;
// - `join`: all three together, and stdin dropped once written: tee ends.
//
// A deadlock here is an await that never completes, not a blocked thread,
// so a plain `timeout` (`--wait SECS`, default 2) ends it: tee is killed,
// and reaped. SIGPIPE stays ignored: a tee that dies must not kill us, but
// make our write fail, an error we report; our own report is written with
// `writeln!`, and lost if nobody reads it, an error if it fails otherwise.

use std::error::Error;
use std::io::{self, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::runtime::{Builder, Runtime};

const USAGE: &str = "usage: async-child-feed \
                     [write-first|stdout-first|keep-stdin|join] \
                     [--bytes N] [--wait SECS]";

#[derive(Clone, Copy, PartialEq)]
enum Way {
    WriteFirst,
    StdoutFirst,
    KeepStdin,
    Join,
}

/// How many bytes have moved so far, each way.
#[derive(Default)]
struct Moved {
    sent: usize,
    out: usize,
    err: usize,
}

fn main() -> ExitCode {
    let ready = unblock_sigchld().map_err(io::Error::from);
    let ran = match ready.and_then(|()| runtime()) {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => Err(format!("cannot start tokio's runtime: {err}").into()),
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("async-child-feed: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
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
    let (way, bytes, wait) =
        parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Our children are ours to reap, even if our parent ignored SIGCHLD.
    let chld = keep_own_zombies()?;
    // More than memory can hold is an error, not an abort.
    let mut data = Vec::new();
    data.try_reserve_exact(bytes)
        .map_err(|_| format!("cannot hold {bytes} bytes in memory"))?;
    data.resize(bytes, b'x');
    let mut tee = Command::new("tee");
    sigchld_as_found(&mut tee, chld);
    let mut tee = tee
        .arg("/dev/stderr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Should `run` leave early by `?`, dropping `tee` kills it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot start tee: {err}"))?;
    let mut moved = Moved::default();

    let exchange = exchange(&mut tee, way, &data, &mut moved);
    let outcome = tokio::time::timeout(wait, exchange).await;
    if !matches!(outcome, Ok(Ok(()))) {
        // No end in time, or a pipe that failed because tee died: `kill`
        // sends SIGKILL, in case tee still runs, then waits, reaping it.
        tee.kill().await?;
    }
    let status = tee.wait().await?;
    let Moved { sent, out, err } = moved;
    let reported = writeln!(
        io::stdout(),
        "Sent {sent} of {bytes} bytes, got {out} on stdout and {err} on \
         stderr; tee {}",
        describe(status)
    );
    match outcome {
        Ok(Ok(())) if status.success() => {}
        Ok(Ok(())) => return Err(format!("tee {}", describe(status)).into()),
        // Not our stdout: tee's stdin, or one of its outputs.
        Ok(Err(err)) => return Err(format!("talking to tee: {err}").into()),
        Err(_) => {
            // A timeout cannot tell a deadlock from an exchange that needs
            // more time than it was given: say both.
            let secs = wait.as_secs();
            let why = "a deadlock, or too short a --wait";
            return Err(
                format!("no end within {secs} s ({why}): tee killed").into()
            );
        }
    }
    // Should nobody read our stdout any more, the report is lost, and the
    // outcome stands; a report that failed otherwise (a full disk) is an
    // error.
    match reported {
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(()),
        reported => Ok(reported?),
    }
}
// ANCHOR_END: run

// ANCHOR: exchange
/// Moves the data through tee one of the four ways. Only `join` ends.
async fn exchange(
    tee: &mut Child,
    way: Way,
    data: &[u8],
    moved: &mut Moved,
) -> io::Result<()> {
    // The outputs stay in `tee`, borrowed: if the exchange is dropped,
    // they stay open until tee has been killed.
    let stdout = tee.stdout.as_mut().ok_or(ErrorKind::BrokenPipe)?;
    let stderr = tee.stderr.as_mut().ok_or(ErrorKind::BrokenPipe)?;
    let Moved { sent, out, err } = moved;
    match way {
        Way::WriteFirst => {
            feed(tee.stdin.take(), data, sent).await?;
            count(stdout, out).await?;
            count(stderr, err).await?;
        }
        Way::StdoutFirst => {
            let feed = feed(tee.stdin.take(), data, sent);
            tokio::try_join!(feed, count(stdout, out))?;
            count(stderr, err).await?;
        }
        Way::KeepStdin => {
            // WRONG: stdin stays in `tee`, open, until the exchange is
            // over, and the exchange is over only once tee has seen the
            // end of its input.
            let stdin = tee.stdin.as_mut().ok_or(ErrorKind::BrokenPipe)?;
            tokio::try_join!(
                write_all(stdin, data, sent),
                count(stdout, out),
                count(stderr, err),
            )?;
        }
        Way::Join => {
            tokio::try_join!(
                feed(tee.stdin.take(), data, sent),
                count(stdout, out),
                count(stderr, err),
            )?;
        }
    }
    Ok(())
}

/// Writes `data` to tee's stdin, taken out of `tee`, then drops it: the
/// end of tee's input.
async fn feed(
    stdin: Option<ChildStdin>,
    data: &[u8],
    sent: &mut usize,
) -> io::Result<()> {
    let mut stdin = stdin.ok_or(ErrorKind::BrokenPipe)?;
    write_all(&mut stdin, data, sent).await
    // `stdin` is dropped here, which closes our write end of the pipe.
}
// ANCHOR_END: exchange

/// Writes `data` in pieces, counting what went in.
async fn write_all(
    stdin: &mut ChildStdin,
    data: &[u8],
    sent: &mut usize,
) -> io::Result<()> {
    for piece in data.chunks(4096) {
        stdin.write_all(piece).await?;
        *sent += piece.len();
    }
    Ok(())
}

/// Reads `from` to its end, counting what came.
async fn count(
    from: &mut (impl AsyncRead + Unpin),
    got: &mut usize,
) -> io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buf).await? {
            0 => return Ok(()),
            n => *got += n,
        }
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

/// Reads `[WAY] [--bytes N] [--wait SECS]`.
fn parse_args() -> Result<(Way, usize, Duration), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut way, mut bytes, mut wait) = (None, 1_000_000, 2);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("bytes") => bytes = args.value()?.parse()?,
            Long("wait") => {
                // Nothing ends within 0 s: every run would time out.
                match args.value()?.parse()? {
                    0 => return Err("--wait must be at least 1".into()),
                    secs => wait = secs,
                }
            }
            Value(value) if way.is_none() => {
                way = Some(match value.string()?.as_str() {
                    "write-first" => Way::WriteFirst,
                    "stdout-first" => Way::StdoutFirst,
                    "keep-stdin" => Way::KeepStdin,
                    "join" => Way::Join,
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
    let way = way.unwrap_or(Way::Join);
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
// ANCHOR_END: whole
