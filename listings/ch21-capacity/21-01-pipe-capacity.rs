// ANCHOR: whole
// Listing 21-1: how much a pipe holds, and what a writer gets when it is
// full. The program asks the kernel for the pipe's size, fills the pipe
// with nonblocking writes of `--write-size BYTES` (default 1024) until one
// fails with `WouldBlock`, and, with `--size BYTES`, asks for another size
// and fills it again. Last, it waits for room in the full pipe twice: with
// `poll` and a timeout, and with a blocking write that an alarm interrupts
// a second later (`--late`: an alarm that rings before the write begins,
// which then waits for good). `--write-sizes A,B,...` only fills a new
// pipe with writes of each size in turn and says how much went in. Linux
// only: the sizes are Linux's `fcntl` operations F_GETPIPE_SZ and
// F_SETPIPE_SZ.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc::{c_int, c_long};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::{SysconfVar, alarm, pipe2, sysconf};

const USAGE: &str = "usage: pipe-capacity [--size BYTES] \
                     [--write-size BYTES] [--late] [--write-sizes A,B,...]";

struct Args {
    size: Option<c_int>,
    write_size: usize,
    late: bool,
    write_sizes: Vec<usize>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("pipe-capacity: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    if !args.write_sizes.is_empty() {
        return fill_each(&args.write_sizes, args.size);
    }
    // Both ends nonblocking: a write that would wait fails instead.
    let (read_end, write_end) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    let (mut reader, mut writer) =
        (File::from(read_end), File::from(write_end));

    let capacity = fcntl(&writer, FcntlArg::F_GETPIPE_SZ)?;
    let page = sysconf(SysconfVar::PAGE_SIZE)?.ok_or("no page size")?;
    let pages = c_long::from(capacity) / page;
    writeln!(
        io::stdout(),
        "A new pipe holds {capacity} bytes (F_GETPIPE_SZ): {pages} pages \
         of {page}"
    )?;
    fill(&mut writer, args.write_size)?;

    if let Some(size) = args.size {
        drain(&mut reader)?;
        let got = fcntl(&writer, FcntlArg::F_SETPIPE_SZ(size))
            .map_err(|err| format!("F_SETPIPE_SZ {size}: {err}"))?;
        writeln!(
            io::stdout(),
            "Asked for {size} bytes (F_SETPIPE_SZ): it now holds {got}"
        )?;
        fill(&mut writer, args.write_size)?;
    }
    let max_path = "/proc/sys/fs/pipe-max-size";
    let max = fs::read_to_string(max_path)
        .map_err(|err| format!("{max_path}: {err}"))?;
    writeln!(
        io::stdout(),
        "Most an unprivileged process may ask for: {}",
        max.trim()
    )?;
    // Blocking again: O_NONBLOCK off, every other status flag kept.
    let flags = OFlag::from_bits_retain(fcntl(&writer, FcntlArg::F_GETFL)?);
    fcntl(&writer, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    wait_with_poll(&writer)?;
    blocking_write(&writer, usize::try_from(page)?, args.late)
}
// ANCHOR_END: run

// ANCHOR: fill
/// Writes `size` bytes at a time until the pipe is full, and says how
/// many writes and bytes went in.
fn fill(writer: &mut File, size: usize) -> io::Result<()> {
    let (writes, total, err) = fill_quietly(writer, size)?;
    let kind = err.kind();
    writeln!(
        io::stdout(),
        "Filled by {writes} writes of {size} bytes: {total} bytes; \
         then {kind:?}: {err}"
    )?;
    Ok(())
}

/// Writes until a write fails with `WouldBlock`; returns how many writes
/// went in, how many bytes, and that error.
fn fill_quietly(
    writer: &mut File,
    size: usize,
) -> io::Result<(usize, usize, io::Error)> {
    let block = vec![b'x'; size];
    let (mut writes, mut total) = (0, 0);
    loop {
        match writer.write(&block) {
            Ok(n) => (writes, total) = (writes + 1, total + n),
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                return Ok((writes, total, err));
            }
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: fill

// ANCHOR: fill_each
/// `--write-sizes`: fills a new pipe (of `size` bytes, if given) with
/// writes of each size in turn.
fn fill_each(
    sizes: &[usize],
    size: Option<c_int>,
) -> Result<(), Box<dyn Error>> {
    for &write_size in sizes {
        let (_reader, write_end) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot make a pipe: {e}"))?;
        let mut writer = File::from(write_end);
        if let Some(size) = size {
            fcntl(&writer, FcntlArg::F_SETPIPE_SZ(size))
                .map_err(|err| format!("F_SETPIPE_SZ {size}: {err}"))?;
        }
        let (writes, total, _) = fill_quietly(&mut writer, write_size)?;
        writeln!(
            io::stdout(),
            "{write_size:>4}-byte writes: {writes:>5} went in, {total:>5} \
             bytes"
        )?;
    }
    Ok(())
}
// ANCHOR_END: fill_each

/// Reads until the pipe is empty.
fn drain(reader: &mut File) -> io::Result<()> {
    let mut buf = [0; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

// ANCHOR: poll
/// Waits at most a second for room in the full pipe: a time limit that
/// the waiting call takes itself.
fn wait_with_poll(writer: &File) -> io::Result<()> {
    let mut fds = [PollFd::new(writer.as_fd(), PollFlags::POLLOUT)];
    let ready = poll(&mut fds, PollTimeout::from(1000_u16))?;
    let outcome = if ready == 0 { "no room came" } else { "room" };
    writeln!(
        io::stdout(),
        "poll for room in the full pipe, at most 1 s: {outcome}"
    )?;
    Ok(())
}
// ANCHOR_END: poll

// ANCHOR: block
/// Set by the handler: the alarm has rung.
static RANG: AtomicBool = AtomicBool::new(false);

/// Records the alarm; its real job is to make the blocked `write` return.
extern "C" fn on_alarm(_: c_int) {
    RANG.store(true, Ordering::SeqCst);
}

/// One blocking write of a whole page, `page` bytes, into the full pipe:
/// it adds nothing to the last page, however much room that has, and
/// finds no free slot, so no part of it fits. An alarm comes a
/// second later; its handler is installed without SA_RESTART, so the
/// kernel does not restart the interrupted `write`, which fails with EINTR.
/// With `late`, the alarm rings before the write begins.
fn blocking_write(
    writer: &File,
    page: usize,
    late: bool,
) -> Result<(), Box<dyn Error>> {
    let block = vec![b'x'; page];
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe { sigaction(Signal::SIGALRM, &action) }?;
    // A parent that blocked SIGALRM passed its mask on through `exec`:
    // blocked, the alarm would only wait, and so would the write.
    SigSet::from(Signal::SIGALRM).thread_unblock()?;
    alarm::set(1);
    if late {
        // A busy machine, standing in for bad luck: two seconds pass
        // between setting the alarm and starting the write.
        thread::sleep(Duration::from_secs(2));
        let rang = RANG.load(Ordering::SeqCst);
        writeln!(
            io::stdout(),
            "Before the write began, the alarm had rung: {rang} (pid {})",
            process::id()
        )?;
    }
    match nix::unistd::write(writer.as_fd(), &block) {
        Err(err) => {
            writeln!(
                io::stdout(),
                "A blocking write waited for SIGALRM, then {err}"
            )?;
            Ok(())
        }
        Ok(n) => Err(format!("a full pipe took {n} more bytes").into()),
    }
}
// ANCHOR_END: block

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

/// The most a write may be here: 1 MiB, the most a pipe may hold unless
/// the administrator raises /proc/sys/fs/pipe-max-size.
const MAX_WRITE: usize = 1 << 20;

/// Reads `[--size BYTES] [--write-size BYTES] [--late]
/// [--write-sizes A,B,...]` from the command line.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        size: None,
        write_size: 1024,
        late: false,
        write_sizes: Vec::new(),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("size") => {
                let bytes: u64 = parser.value()?.parse()?;
                let bytes = c_int::try_from(bytes)
                    .map_err(|_| "--size is too large")?;
                args.size = Some(bytes);
            }
            Long("write-size") => {
                args.write_size = write_size(&parser.value()?.string()?)?;
            }
            Long("write-sizes") => {
                args.write_sizes = parser
                    .value()?
                    .string()?
                    .split(',')
                    .map(write_size)
                    .collect::<Result<_, _>>()?;
            }
            Long("late") => args.late = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
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

/// A write size: 1 byte to MAX_WRITE.
fn write_size(text: &str) -> Result<usize, lexopt::Error> {
    match text.parse() {
        Ok(n) if (1..=MAX_WRITE).contains(&n) => Ok(n),
        _ => Err(format!(
            "a write size is 1 to {MAX_WRITE} bytes, not {text:?}"
        )
        .into()),
    }
}
// ANCHOR_END: whole
