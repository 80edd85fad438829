// ANCHOR: whole
// Listing 27-2: throughput. A parent sends BYTES to a forked child, in
// writes of CHUNK bytes, over a pipe, a Unix socket pair or a TCP
// connection on loopback, or over a pipe without copying: `vmsplice` on
// the sending side, then `read` or `splice` on the receiving side. The
// child counts what it gets and reports back; the parent times the whole
// transfer and prints one line. `--cpus` chooses where the two processes
// run, as in Listing 26-1. `--pipe-size` makes the pipe larger or
// smaller than its default, and `--huge` puts every buffer in transparent
// huge pages, where the kernel offers them.
//
// Every loop takes what the kernel gives: a read or a write may move fewer
// bytes than asked, and that is no error. The C program of Listing 27-4
// speaks the same protocol and prints the same line.

use std::error::Error;
use std::fs::File;
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice, vmsplice};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::mman::{MmapAdvise, madvise};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, pipe2};

const USAGE: &str = "usage: bench-throughput \
                     [--via pipe|unix|tcp|vmsplice|splice] \
                     [--cpus same|different|any] [--bytes N] [--chunk N] \
                     [--pipe-size N] [--huge]  \
                     (N: bytes, or with K, M or G for KiB, MiB, GiB)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("bench-throughput: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// The mechanisms this program can measure.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Pipe,
    Unix,
    Tcp,
    /// A pipe: `vmsplice` in, `read` out.
    Vmsplice,
    /// A pipe: `vmsplice` in, `splice` out to /dev/null.
    Splice,
}

/// Where the two processes run.
#[derive(Clone, Copy)]
enum Cpus {
    Same,
    Different,
    Any,
}

struct Args {
    via: Via,
    cpus: Cpus,
    bytes: u64,
    chunk: usize,
    /// The pipe's capacity, if not the default.
    pipe_size: Option<usize>,
    /// Buffers in transparent huge pages.
    huge: bool,
}

/// What the child found, sent back to the parent at the end.
struct Report {
    received: u64,
    reads: u64,
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before the child starts: it must stay a zombie until reaped.
    keep_zombies()?;
    let (parent_cpu, child_cpu) = choose_cpus(args.cpus)?;
    let (rx, tx) = channel(&args)?;
    // The pipe's capacity, as the kernel set it: a power of two pages.
    let pipe_size = match args.pipe_size {
        Some(_) => Some(fcntl(tx.as_fd(), FcntlArg::F_GETPIPE_SZ)?),
        None => None,
    };
    // The child says on this pipe when it is ready, and in the end what
    // it received.
    let (report_rx, report_tx) = pipe2(OFlag::O_CLOEXEC)?;
    let parent = getpid();
    pin_to(parent_cpu)?;
    // SAFETY: the program has started no threads, so no lock can be held
    // by a thread that the child would not have.
    let child = match unsafe { fork() }? {
        ForkResult::Child => {
            drop((tx, report_rx));
            let report = File::from(report_tx);
            let status = match child(&args, parent, child_cpu, rx, report) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("bench-throughput child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((rx, report_tx));
    // Made, and every page touched, before the clock starts; kept until
    // the child has reported: until then, the pipe may still refer to its
    // pages.
    let mut ring = Ring::new(&tx, &args)?;
    let mut report = File::from(report_rx);
    let mut ready = [0];
    report.read_exact(&mut ready)?;
    let before = getrusage(UsageWho::RUSAGE_SELF)?;
    let start = Instant::now();
    let sent = match args.via {
        Via::Vmsplice | Via::Splice => send_vmsplice(tx, args.bytes, &mut ring),
        _ => send(tx, args.bytes, &mut ring),
    };
    // Our end is closed now, whatever happened: the child sees the end of
    // the stream, and answers with what it got.
    let result =
        sent.and_then(|writes| Ok((writes, read_report(&mut report)?)));
    let elapsed = start.elapsed();
    let after = getrusage(UsageWho::RUSAGE_SELF)?;
    // If the child failed, that is the news, more than a broken pipe.
    match waitpid(child, None)? {
        WaitStatus::Exited(_, 0) => {}
        status => return Err(format!("the child failed: {status:?}").into()),
    }
    let (writes, got) = result?;
    if got.received != args.bytes {
        return Err(format!("the child received {} bytes", got.received).into());
    }
    let children = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let waits = after.voluntary_context_switches()
        - before.voluntary_context_switches()
        + children.voluntary_context_switches();
    let preemptions = after.involuntary_context_switches()
        - before.involuntary_context_switches()
        + children.involuntary_context_switches();

    // Measured. From here on, we are a filter: if nobody reads our output,
    // SIGPIPE ends us quietly (see the introduction); any other failure to
    // write it is an error like the others.
    restore_sigpipe()?;
    let chunks = args.bytes.div_ceil(args.chunk as u64) as f64;
    let mut options = String::new();
    if let Some(size) = pipe_size {
        options += &format!(", a pipe of {size} bytes");
    }
    if args.huge {
        options += ", huge pages";
    }
    writeln!(
        io::stdout(),
        "{} on {}{}: {} bytes in {}-byte writes, {} received; measured: \
         {:.6} s, {:.3} GiB/s, {} writes, {} reads, {:.2} waits and {:.2} \
         preemptions per chunk",
        via_name(args.via),
        placement(parent_cpu, child_cpu),
        options,
        args.bytes,
        args.chunk,
        got.received,
        elapsed.as_secs_f64(),
        gib_per_s(args.bytes, elapsed),
        writes,
        got.reads,
        waits as f64 / chunks,
        preemptions as f64 / chunks,
    )?;
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: child
fn child(
    args: &Args,
    parent: Pid,
    cpu: Option<usize>,
    rx: OwnedFd,
    mut report: File,
) -> Result<(), Box<dyn Error>> {
    die_with_parent(parent)?;
    pin_to(cpu)?;
    let mut buffer = Buffers::new(1, args.chunk, args.huge)?;
    report.write_all(b"r")?; // Ready: start the clock.
    let got = match args.via {
        Via::Splice => receive_splice(rx, args.chunk)?,
        _ => receive(File::from(rx), buffer.buffer(0))?,
    };
    let mut message = got.received.to_ne_bytes().to_vec();
    message.extend_from_slice(&got.reads.to_ne_bytes());
    report.write_all(&message)?;
    Ok(())
}

fn read_report(report: &mut File) -> io::Result<Report> {
    let mut message = [0; 16];
    report.read_exact(&mut message)?;
    let (received, reads) = message.split_at(8);
    Ok(Report {
        received: u64::from_ne_bytes(received.try_into().expect("8 bytes")),
        reads: u64::from_ne_bytes(reads.try_into().expect("8 bytes")),
    })
}
// ANCHOR_END: child

// ANCHOR: send
/// Sends `total` bytes in writes of at most a chunk, from the buffers of
/// `ring`, each chunk stamped with its number (see `check_stamps`), then
/// closes the stream. Returns the number of `write` calls.
fn send(tx: OwnedFd, total: u64, ring: &mut Ring) -> io::Result<u64> {
    let mut tx = File::from(tx);
    let chunk = ring.chunk;
    let (mut sent, mut writes, mut number) = (0, 0, 0);
    while sent < total {
        let len = chunk.min((total - sent) as usize);
        let buffer = ring.buffer(number);
        buffer[0] = number as u8;
        let mut rest = &buffer[..len];
        while !rest.is_empty() {
            // A write may take fewer bytes than offered: a signal can
            // interrupt it midway. Then we send the rest.
            match tx.write(rest) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            writes += 1;
        }
        sent += len as u64;
        number += 1;
    }
    Ok(writes)
}

/// Reads until the end of the stream into `buffer`, a chunk long,
/// checking the stamps.
fn receive(mut rx: File, buffer: &mut [u8]) -> io::Result<Report> {
    let chunk = buffer.len();
    let (mut received, mut reads) = (0, 0);
    loop {
        // A read returns what is there, up to `chunk` bytes: less is
        // normal, and only 0 means the end.
        let n = match rx.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        check_stamps(&buffer[..n], received, chunk as u64)?;
        received += n as u64;
        reads += 1;
    }
    Ok(Report { received, reads })
}

/// Checks the first byte of every chunk that starts within `data`, which
/// is byte `offset` onwards of the stream: chunk number k starts with k,
/// modulo 256. One comparison per chunk, and bytes lost, doubled or out of
/// order would not get past it.
fn check_stamps(data: &[u8], offset: u64, chunk: u64) -> io::Result<()> {
    let mut start = offset.next_multiple_of(chunk);
    while start < offset + data.len() as u64 {
        let (expected, got) =
            ((start / chunk) as u8, data[(start - offset) as usize]);
        if got != expected {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("byte {start}: expected stamp {expected}, got {got}"),
            ));
        }
        start += chunk;
    }
    Ok(())
}

/// `count` buffers of `len` bytes each, one after another, starting at a
/// page boundary (a huge page's, with `huge`). They hold a pattern, not
/// zeros: a fresh zeroed buffer may be backed by one shared page of
/// zeros, which is faster to copy from than real data would be.
struct Buffers {
    memory: Vec<u8>,
    start: usize,
    len: usize,
}

/// The size of a transparent huge page on x86-64 and most other Linux
/// machines; a huge page must start at a multiple of it.
const HUGE_PAGE: usize = 2 << 20;

impl Buffers {
    fn new(count: usize, len: usize, huge: bool) -> io::Result<Buffers> {
        let align = if huge { HUGE_PAGE } else { page_size() };
        let size = count * len;
        // Whole pages: a huge page is used only where all of it lies
        // within the advised range.
        let span = size.next_multiple_of(align);
        // Room to start at a boundary; nothing is written yet. Memory the
        // system cannot give is an error, not an abort.
        let mut memory: Vec<u8> = Vec::new();
        memory
            .try_reserve_exact(span + align)
            .map_err(io::Error::other)?;
        let start = memory.as_ptr().align_offset(align);
        if huge {
            // SAFETY: `start` is less than `align`, so the pointer stays
            // within the vector's allocation of `span + align` bytes.
            let at = unsafe { memory.as_mut_ptr().add(start) };
            let at = std::ptr::NonNull::new(at.cast()).expect("not null");
            // SAFETY: the range lies within the vector's allocation, and
            // the advice changes how it is backed, never its contents.
            unsafe { madvise(at, span, MmapAdvise::MADV_HUGEPAGE) }?;
        }
        // The first writes: only now does the kernel back the pages.
        memory.extend((0..start + size).map(|i| (i % 251) as u8));
        Ok(Buffers { memory, start, len })
    }

    /// Buffer `i`.
    fn buffer(&mut self, i: usize) -> &mut [u8] {
        let from = self.start + i * self.len;
        &mut self.memory[from..from + self.len]
    }
}
// ANCHOR_END: send

// ANCHOR: vmsplice
/// Sends like `send`, but with `vmsplice`, from the buffers of `ring`:
/// the pipe gets references to our pages instead of a copy of them.
fn send_vmsplice(tx: OwnedFd, total: u64, ring: &mut Ring) -> io::Result<u64> {
    let chunk = ring.chunk;
    let (mut sent, mut writes, mut number) = (0, 0, 0);
    while sent < total {
        let len = chunk.min((total - sent) as usize);
        let buffer = ring.buffer(number);
        buffer[0] = number as u8;
        let mut rest = &buffer[..len];
        while !rest.is_empty() {
            // SAFETY: the pipe keeps referring to these pages after the
            // call returns, until the reader has taken them out. We write
            // to this buffer again only when the ring comes round to it,
            // and by then its pages have left the pipe: see `Ring`.
            let n = match unsafe {
                vmsplice(&tx, &[IoSlice::new(rest)], SpliceFFlags::empty())
            } {
                Ok(n) => n,
                Err(nix::Error::EINTR) => continue,
                Err(err) => return Err(err.into()),
            };
            // Short "writes" are the rule here: `vmsplice` adds what fits
            // in the pipe and returns.
            rest = &rest[n..];
            writes += 1;
        }
        sent += len as u64;
        number += 1;
    }
    Ok(writes)
}

/// Page-aligned buffers of `chunk` bytes, used in turn. A pipe holds at
/// most `capacity` bytes of pages. Once the buffers sent after buffer i
/// add up to that much, none of buffer i's pages can still be in the pipe,
/// so it is safe to write to it again: one buffer more than it takes to
/// fill the pipe. A `write` copies, so it needs one buffer only.
struct Ring {
    memory: Buffers,
    chunk: usize,
    buffers: usize,
}

impl Ring {
    /// Enough buffers of `args.chunk` bytes to send into `tx`.
    fn new(tx: &OwnedFd, args: &Args) -> io::Result<Ring> {
        let buffers = match args.via {
            Via::Vmsplice | Via::Splice => {
                let capacity = fcntl(tx.as_fd(), FcntlArg::F_GETPIPE_SZ)?;
                (capacity as usize).div_ceil(args.chunk) + 1
            }
            _ => 1,
        };
        Ok(Ring {
            memory: Buffers::new(buffers, args.chunk, args.huge)?,
            chunk: args.chunk,
            buffers,
        })
    }

    fn buffer(&mut self, number: u64) -> &mut [u8] {
        self.memory.buffer((number % self.buffers as u64) as usize)
    }
}

/// Moves everything from the pipe to /dev/null with `splice`: no byte is
/// copied, and none is seen, so there is no stamp to check.
fn receive_splice(rx: OwnedFd, chunk: usize) -> io::Result<Report> {
    let null = File::options().write(true).open("/dev/null")?;
    let (mut received, mut reads) = (0, 0);
    loop {
        let n = match splice(
            &rx,
            None,
            &null,
            None,
            chunk,
            SpliceFFlags::empty(),
        ) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(err) => return Err(err.into()),
        };
        received += n as u64;
        reads += 1;
    }
    Ok(Report { received, reads })
}

fn page_size() -> usize {
    // SAFETY: `sysconf` only reads a value.
    let size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}
// ANCHOR_END: vmsplice

// ANCHOR: channel
/// The receiving and the sending end of a channel, made before the fork.
fn channel(args: &Args) -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(match args.via {
        Via::Pipe | Via::Vmsplice | Via::Splice => {
            let (rx, tx) = pipe2(OFlag::O_CLOEXEC)?;
            if let Some(size) = args.pipe_size {
                // The kernel rounds up to a power of two pages, and
                // refuses more than /proc/sys/fs/pipe-max-size to a
                // process without privileges.
                let wanted = i32::try_from(size).unwrap_or(i32::MAX);
                fcntl(tx.as_fd(), FcntlArg::F_SETPIPE_SZ(wanted)).map_err(
                    |e| io::Error::other(format!("--pipe-size {size}: {e}")),
                )?;
            }
            (rx, tx)
        }
        Via::Unix => {
            let (rx, tx) = UnixStream::pair()?;
            (rx.into(), tx.into())
        }
        Via::Tcp => {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            let tx = TcpStream::connect(listener.local_addr()?)?;
            let (rx, _) = listener.accept()?;
            (rx.into(), tx.into())
        }
    })
}
// ANCHOR_END: channel

fn gib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / f64::from(1 << 30) / elapsed.as_secs_f64()
}

/// The CPUs for the parent and the child, among those this process may
/// use; `None` leaves a process to the scheduler.
fn choose_cpus(
    cpus: Cpus,
) -> Result<(Option<usize>, Option<usize>), Box<dyn Error>> {
    let allowed = sched_getaffinity(Pid::from_raw(0))?;
    let usable: Vec<usize> = (0..CpuSet::count())
        .filter(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .collect();
    Ok(match (cpus, usable.as_slice()) {
        (Cpus::Any, _) => (None, None),
        (Cpus::Same, [first, ..]) => (Some(*first), Some(*first)),
        (Cpus::Different, [first, second, ..]) => (Some(*first), Some(*second)),
        _ => return Err("--cpus different needs two CPUs".into()),
    })
}

/// Restricts this process to one CPU.
fn pin_to(cpu: Option<usize>) -> nix::Result<()> {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(Pid::from_raw(0), &set)?;
    }
    Ok(())
}

fn placement(parent: Option<usize>, child: Option<usize>) -> String {
    match (parent, child) {
        (Some(a), Some(b)) if a == b => format!("CPU {a}"),
        (Some(a), Some(b)) => format!("CPUs {a} and {b}"),
        _ => "any CPU".to_string(),
    }
}

fn via_name(via: Via) -> &'static str {
    match via {
        Via::Pipe => "pipe",
        Via::Unix => "unix",
        Via::Tcp => "tcp",
        Via::Vmsplice => "vmsplice",
        Via::Splice => "splice",
    }
}

/// Asks the kernel to kill this process when its parent dies.
fn die_with_parent(parent: Pid) -> Result<(), Box<dyn Error>> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The parent may have died before that call: then we have been
    // adopted already, and no signal will come.
    if getppid() != parent {
        return Err("the parent is gone".into());
    }
    Ok(())
}

/// Gives SIGPIPE back its default action, which Rust sets to "ignore"
/// before `main`.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

/// Gives SIGCHLD its default action back. A parent that left it ignored
/// passed that on through `exec` (Chapter 24), and then the kernel reaps
/// our child itself: the final `waitpid` fails with ECHILD.
fn keep_zombies() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }?;
    Ok(())
}

/// The largest chunk: a buffer of it is allocated in each process, and
/// the sizes of the buffers then fit in a `usize` with room to spare.
const MAX_CHUNK: usize = 1 << 30;

/// Reads `[--via V] [--cpus C] [--bytes N] [--chunk N]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        via: Via::Pipe,
        cpus: Cpus::Same,
        bytes: 1 << 30,
        chunk: 64 << 10,
        pipe_size: None,
        huge: false,
    };
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("via") => {
                parsed.via = match args.value()?.string()?.as_str() {
                    "pipe" => Via::Pipe,
                    "unix" => Via::Unix,
                    "tcp" => Via::Tcp,
                    "vmsplice" => Via::Vmsplice,
                    "splice" => Via::Splice,
                    other => {
                        return Err(format!(
                            "no --via '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                }
            }
            Long("cpus") => {
                parsed.cpus = match args.value()?.string()?.as_str() {
                    "same" => Cpus::Same,
                    "different" => Cpus::Different,
                    "any" => Cpus::Any,
                    other => {
                        return Err(format!(
                            "no --cpus '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                }
            }
            Long("bytes") => {
                parsed.bytes = args.value()?.parse_with(parse_size)?
            }
            Long("chunk") => {
                parsed.chunk = args.value()?.parse_with(|text| {
                    usize::try_from(parse_size(text)?)
                        .map_err(|e| e.to_string())
                })?;
            }
            Long("pipe-size") => {
                let size = args.value()?.parse_with(parse_size)?;
                parsed.pipe_size =
                    Some(usize::try_from(size).map_err(|e| e.to_string())?);
            }
            Long("huge") => parsed.huge = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if parsed.bytes == 0 || parsed.pipe_size == Some(0) {
        return Err("--bytes and --pipe-size must be at least 1".into());
    }
    if !(1..=MAX_CHUNK).contains(&parsed.chunk) {
        return Err("--chunk must be from 1 to 1G".into());
    }
    let zero_copy = matches!(parsed.via, Via::Vmsplice | Via::Splice);
    if parsed.pipe_size.is_some() && matches!(parsed.via, Via::Unix | Via::Tcp)
    {
        return Err("--pipe-size is for pipe, vmsplice and splice".into());
    }
    if zero_copy && parsed.chunk % page_size() != 0 {
        let page = page_size();
        return Err(format!("--chunk must be a multiple of {page}").into());
    }
    Ok(parsed)
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

/// `65536`, `64K`, `1M`, `1G`: a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'K')) => (&text[..at], 10),
        Some((at, 'M')) => (&text[..at], 20),
        Some((at, 'G')) => (&text[..at], 30),
        _ => (text, 0),
    };
    let number: u64 = digits.parse().map_err(|e| format!("{e}"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}
// ANCHOR_END: whole
