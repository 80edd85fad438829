// ANCHOR: whole
// Listing 26-1: round-trip latency. A parent and a forked child pass a
// message back and forth: the parent sends, the child answers, COUNT
// times, over a pair of pipes, a Unix socket pair, a TCP connection on
// loopback, a signal, a pair of eventfds, or a page of shared memory. The
// parent times every round trip, then prints one line from a histogram of
// the times: the mean, the median, the tail and the worst. `--cpus` chooses where the two
// processes run: both on one CPU, on two different CPUs, or wherever the
// scheduler likes. `--wait spin` makes each side poll for its message
// instead of sleeping until it comes. `--times FILE` writes every round
// trip's time into FILE, in nanoseconds, one a line, in the order they
// were made.
//
// The C program of Listing 26-2 speaks the same protocol and prints the
// same line; the benchmark command runs both, side by side.

use std::error::Error;
use std::fs::File;
use std::hint::spin_loop;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction, signal,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, pipe2};

/// Every round trip's time is kept, 8 bytes each: at most 800 MB.
const MAX_COUNT: u64 = 100_000_000;

/// Round trips made, untimed, before the timed ones: the child is ready,
/// both processes have run the loop's code, and its first page faults and
/// cache misses are behind them.
const WARM_UP: u64 = 500;

const USAGE: &str = "usage: bench-pingpong \
                     [--via pipe|unix|tcp|signal|eventfd|shm] \
                     [--cpus same|different|any] [--wait block|spin] \
                     [--count N] [--size BYTES] [--times FILE]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("bench-pingpong: {err}\n");
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
    Signal,
    Eventfd,
    Shm,
}

/// Where the two processes run.
#[derive(Clone, Copy, PartialEq)]
enum Cpus {
    Same,
    Different,
    Any,
}

/// How a process waits for its message.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// Asleep in the kernel until the message comes.
    Block,
    /// Asking again and again, on a CPU of its own.
    Spin,
}

struct Args {
    via: Via,
    cpus: Cpus,
    wait: Wait,
    count: u64,
    /// Bytes per message, for the byte streams.
    size: usize,
    /// Where to write every round trip's time, if anywhere.
    times: Option<PathBuf>,
}

/// What the parent measured.
struct Timing {
    elapsed: Duration,
    /// Every round trip's time, in nanoseconds, in the order made.
    times: Vec<u64>,
    /// The same times, counted in a histogram.
    round_trips: Histogram<u64>,
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Before any child starts: each must stay a zombie until reaped. And
    // before `Channel::new`, which may install a SIGCHLD handler of ours.
    keep_zombies()?;
    // Opened now, so that a path that cannot be written ends the program
    // before anything is measured.
    let times_file = match &args.times {
        Some(path) => Some((create(path)?, path)),
        None => None,
    };
    let (parent_cpu, child_cpu) = choose_cpus(args.cpus)?;
    // Both ends exist before the fork, so that both processes have them.
    let channel = Channel::new(&args)?;
    let parent = getpid();
    pin_to(parent_cpu)?;
    // SAFETY: the program has started no threads, so no lock can be held
    // by a thread that the child would not have.
    let child = match unsafe { fork() }? {
        ForkResult::Child => {
            let status = match child(channel, parent, child_cpu, args.count) {
                Ok(()) => 0,
                Err(err) => {
                    // One write, as in `main`: the parent shares stderr.
                    let line = format!("bench-pingpong child: {err}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => child,
    };
    let end = channel.end(Side::Parent, child)?;
    let before = getrusage(UsageWho::RUSAGE_SELF)?;
    let timing = time_round_trips(end, args.count)?;
    let after = getrusage(UsageWho::RUSAGE_SELF)?;
    match waitpid(child, None)? {
        WaitStatus::Exited(_, 0) => {}
        status => return Err(format!("the child failed: {status:?}").into()),
    }
    // How often the two processes gave up their CPU: to wait for a
    // message (a voluntary context switch), or because the scheduler
    // chose to run another (an involuntary one, a preemption). The
    // child's are counted once it has been reaped.
    let children = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let waits = after.voluntary_context_switches()
        - before.voluntary_context_switches()
        + children.voluntary_context_switches();
    let preemptions = after.involuntary_context_switches()
        - before.involuntary_context_switches()
        + children.involuntary_context_switches();
    // Written after the clock stopped, never while it ran.
    if let Some((file, path)) = times_file {
        write_times(file, &timing.times)
            .map_err(|err| format!("{}: {err}", shown(path)))?;
    }

    // Measured. From here on, we are a filter: if nobody reads our output,
    // SIGPIPE ends us quietly (see the introduction); any other failure to
    // write it is an error like the others.
    restore_sigpipe()?;
    let n = args.count as f64;
    // The switches were counted over the warm-up too: shared out over
    // every round trip made.
    let all = (args.count + WARM_UP) as f64;
    let times = &timing.round_trips;
    let micros = |ns: u64| ns as f64 / 1000.0;
    writeln!(
        io::stdout(),
        "{} on {}{}: {} round trips of {}; measured: {:.6} s; µs per round \
         trip: mean {:.3}, p50 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}; \
         {:.2} waits and {:.2} preemptions per round trip",
        via_name(args.via),
        placement(parent_cpu, child_cpu),
        if args.wait == Wait::Spin {
            ", spinning"
        } else {
            ""
        },
        args.count,
        message(&args),
        timing.elapsed.as_secs_f64(),
        timing.elapsed.as_secs_f64() * 1e6 / n,
        micros(times.value_at_quantile(0.5)),
        micros(times.value_at_quantile(0.99)),
        micros(times.value_at_quantile(0.999)),
        micros(times.max()),
        waits as f64 / all,
        preemptions as f64 / all,
    )?;
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: loops
/// The parent's side: `WARM_UP` round trips, untimed, so that the child
/// is ready (pinned to its CPU, waiting) and neither process meets its
/// loop for the first time on the clock; then `count` timed ones; then it
/// tells the child to stop.
fn time_round_trips(
    mut end: Box<dyn End>,
    count: u64,
) -> Result<Timing, Box<dyn Error>> {
    // Every round trip's time, in ns, in memory allocated and written
    // before the clock starts: storing one in the loop is a single move,
    // as in the C twin, and the histogram is built after the last one.
    let slots = usize::try_from(count)?;
    let mut times: Vec<u64> = Vec::new();
    times.try_reserve_exact(slots)?;
    times.resize(slots, 1);
    for _ in 0..WARM_UP {
        round_trip(&mut *end)?;
    }
    let start = Instant::now();
    let mut last = start;
    for time in &mut times {
        round_trip(&mut *end)?;
        // One reading of the clock per round trip: the end of one round
        // trip is the start of the next.
        let now = Instant::now();
        *time = u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX);
        last = now;
    }
    end.stop()?;
    let elapsed = last - start;
    // From 1 ns to 100 s, to three significant digits; a value beyond the
    // bounds goes into the last counter.
    let mut round_trips = Histogram::new_with_bounds(1, 100_000_000_000, 3)?;
    for &time in &times {
        round_trips.saturating_record(time);
    }
    Ok(Timing {
        elapsed,
        times,
        round_trips,
    })
}

fn round_trip(end: &mut dyn End) -> Result<(), Box<dyn Error>> {
    end.send()?;
    if !end.receive()? {
        return Err("the child is gone".into());
    }
    Ok(())
}

/// The child's side: answer every message until told to stop, and check
/// that there were as many as the parent meant to send.
fn child(
    channel: Channel,
    parent: Pid,
    cpu: Option<usize>,
    count: u64,
) -> Result<(), Box<dyn Error>> {
    die_with_parent(parent)?;
    pin_to(cpu)?;
    let mut end = channel.end(Side::Child, parent)?;
    let mut answered: u64 = 0;
    while end.receive()? {
        end.send()?;
        answered += 1;
    }
    // The parent's warm-up round trips, then the timed ones.
    if answered.checked_sub(WARM_UP) != Some(count) {
        return Err(format!("answered {answered} messages").into());
    }
    Ok(())
}
// ANCHOR_END: loops

// ANCHOR: end
/// One process's end of a channel.
trait End {
    /// Sends one message to the other process.
    fn send(&mut self) -> io::Result<()>;
    /// Waits for the other process's next message: `false` if it has
    /// stopped, or is gone, instead.
    fn receive(&mut self) -> io::Result<bool>;
    /// Tells the other process to stop, and closes this end.
    fn stop(self: Box<Self>) -> io::Result<()>;
}

/// An end of a byte stream: a pipe pair or a socket. Each message starts
/// with a byte that counts up, so that each side can check that it got
/// the message it expected. The end of the stream says "stop".
struct Stream<R, W> {
    rx: R,
    tx: W,
    /// The message to send, and room for the one to receive.
    outgoing: Vec<u8>,
    incoming: Vec<u8>,
    received: u8,
}

impl<R: Read, W: Write> End for Stream<R, W> {
    fn send(&mut self) -> io::Result<()> {
        let mut rest = &self.outgoing[..];
        while !rest.is_empty() {
            match self.tx.write(rest) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                // No room yet, on a descriptor that never waits (`--wait
                // spin`), or a signal came: try again.
                Err(err) if retry(&err) => spin_loop(),
                Err(err) => return Err(err),
            }
        }
        self.outgoing[0] = self.outgoing[0].wrapping_add(1);
        Ok(())
    }

    fn receive(&mut self) -> io::Result<bool> {
        // A read returns what has arrived, which may be part of a
        // message: read until the whole message is here.
        let mut got = 0;
        while got < self.incoming.len() {
            match self.rx.read(&mut self.incoming[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(err) if retry(&err) => spin_loop(),
                Err(err) => return Err(err),
            }
        }
        if self.incoming[0] != self.received {
            let (want, got) = (self.received, self.incoming[0]);
            let error = format!("expected message {want}, got {got}");
            return Err(io::Error::new(ErrorKind::InvalidData, error));
        }
        self.received = self.received.wrapping_add(1);
        Ok(true)
    }

    fn stop(self: Box<Self>) -> io::Result<()> {
        Ok(()) // Dropping `tx` closes it: the other side reads the end.
    }
}

/// Errors after which a read or a write is simply made again.
fn retry(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}
// ANCHOR_END: end

// ANCHOR: signals
/// An end that sends SIGUSR1 and waits for it with `sigwait`. Nothing is
/// carried but the signal itself. SIGUSR2 says "stop"; for the parent,
/// SIGCHLD says that the child is gone. All three are blocked before the
/// fork, in both processes: none is delivered, so none can kill, and
/// each waits, pending, until `sigwait` takes it.
struct Signals {
    peer: Pid,
    waited_for: SigSet,
}

impl End for Signals {
    fn send(&mut self) -> io::Result<()> {
        Ok(kill(self.peer, Signal::SIGUSR1)?)
    }

    fn receive(&mut self) -> io::Result<bool> {
        // A process that has not taken the previous signal yet cannot be
        // sent a new one: signals of one kind do not queue, but here no
        // message is sent before the last one was answered.
        Ok(self.waited_for.wait()? == Signal::SIGUSR1)
    }

    fn stop(self: Box<Self>) -> io::Result<()> {
        Ok(kill(self.peer, Signal::SIGUSR2)?)
    }
}

fn blocked_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGCHLD] {
        set.add(signal);
    }
    set
}
// ANCHOR_END: signals

// ANCHOR: eventfds
/// An end made of two eventfds, one each way. An eventfd holds a 64-bit
/// counter: a write adds to it, a read waits until it is not zero, then
/// returns it and resets it to zero. A message is 1; "stop" is 2.
struct Eventfds {
    rx: EventFd,
    tx: EventFd,
}

const STOP: u64 = 2;

/// An eventfd has no end of stream: if the child died, the parent would
/// wait forever. So the parent has a SIGCHLD handler write this into the
/// eventfd it waits on: any value but 1 means "no answer is coming".
const CHILD_GONE: u64 = 1 << 32;

/// The eventfd the handler writes to; -1 for none.
static GONE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn child_gone(_: nix::libc::c_int) {
    // The calls below may set errno, which the code this handler
    // interrupted may be about to read: give it back as it was.
    let saved = Errno::last_raw();
    let fd = GONE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let value = CHILD_GONE.to_ne_bytes();
        // SAFETY: `write` is async-signal-safe, and the buffer is ours.
        unsafe { nix::libc::write(fd, value.as_ptr().cast(), value.len()) };
    }
    if let Some(page) = GONE_PAGE.get() {
        page.to_parent.close(CLOSED_BY_DEATH);
    }
    Errno::set_raw(saved);
}

impl End for Eventfds {
    fn send(&mut self) -> io::Result<()> {
        self.tx.write(1)?;
        Ok(())
    }

    fn receive(&mut self) -> io::Result<bool> {
        loop {
            // Without `--wait spin` the read waits; with it, it fails
            // with EAGAIN while the counter is zero.
            match self.rx.read() {
                Ok(value) => return Ok(value == 1),
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => spin_loop(),
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn stop(self: Box<Self>) -> io::Result<()> {
        // Before this eventfd closes: its number may soon name another
        // file, which the handler must not write into.
        GONE_FD.store(-1, Ordering::SeqCst);
        self.tx.write(STOP)?;
        Ok(())
    }
}
// ANCHOR_END: eventfds

// ANCHOR: shm
/// A page of memory that both processes share: a mapping made with
/// `MAP_SHARED` before the fork stays shared after it. Each direction is
/// a counter of messages sent, which the receiver watches.
#[repr(C)]
struct Page {
    to_child: Mailbox,
    to_parent: Mailbox,
}

#[repr(C)]
struct Mailbox {
    /// Messages sent so far; a futex word, too.
    sent: AtomicU32,
    /// Not 0 once the sender has stopped (or, for the parent's mailbox,
    /// once the child has died).
    closed: AtomicU32,
}

const CLOSED_BY_STOP: u32 = 1;
const CLOSED_BY_DEATH: u32 = 2;

impl Mailbox {
    fn post(&self, wait: Wait) -> io::Result<()> {
        // Release: whatever was written before, `closed` above all, is
        // seen by a receiver that sees the new count.
        self.sent.fetch_add(1, Ordering::Release);
        if wait == Wait::Block {
            futex_wake(&self.sent)?;
        }
        Ok(())
    }

    fn close(&self, why: u32) {
        self.closed.store(why, Ordering::Relaxed);
        // Async-signal-safe, as the SIGCHLD handler needs: an atomic
        // add and a system call.
        self.sent.fetch_add(1, Ordering::Release);
        let _ = futex_wake(&self.sent);
    }

    /// Waits until the count differs from `seen`, then returns it.
    fn collect(&self, seen: u32, wait: Wait) -> io::Result<u32> {
        loop {
            let now = self.sent.load(Ordering::Acquire);
            if now != seen {
                return Ok(now);
            }
            match wait {
                Wait::Spin => spin_loop(),
                Wait::Block => futex_wait(&self.sent, seen)?,
            }
        }
    }
}

/// An end that sends by counting up in shared memory.
struct Shared {
    rx: &'static Mailbox,
    tx: &'static Mailbox,
    wait: Wait,
    seen: u32,
}

impl End for Shared {
    fn send(&mut self) -> io::Result<()> {
        self.tx.post(self.wait)
    }

    fn receive(&mut self) -> io::Result<bool> {
        self.seen = self.rx.collect(self.seen, self.wait)?;
        Ok(self.rx.closed.load(Ordering::Relaxed) == 0)
    }

    fn stop(self: Box<Self>) -> io::Result<()> {
        self.tx.close(CLOSED_BY_STOP);
        Ok(())
    }
}

/// The parent's page, for the SIGCHLD handler.
static GONE_PAGE: std::sync::OnceLock<&'static Page> =
    std::sync::OnceLock::new();

/// Sleeps until another process wakes `word`, unless it no longer holds
/// `expected`. Not `FUTEX_PRIVATE_FLAG`: a private futex is known by its
/// address in one process, and would never meet the other process's wake.
fn futex_wait(word: &AtomicU32, expected: u32) -> io::Result<()> {
    use nix::libc::{FUTEX_WAIT, SYS_futex, syscall, timespec};
    let no_timeout = std::ptr::null::<timespec>();
    // SAFETY: the kernel reads the word, which lives as long as the
    // mapping: as long as the process.
    let r = unsafe {
        syscall(SYS_futex, word.as_ptr(), FUTEX_WAIT, expected, no_timeout)
    };
    match r {
        0 => Ok(()),
        _ => match io::Error::last_os_error() {
            // EAGAIN: the word had changed already; EINTR: a signal.
            err if retry(&err) => Ok(()),
            err => Err(err),
        },
    }
}

/// Wakes one process sleeping on `word`, if one is.
fn futex_wake(word: &AtomicU32) -> io::Result<()> {
    use nix::libc::{FUTEX_WAKE, SYS_futex, syscall};
    // SAFETY: as for `futex_wait`; the kernel does not even read the word.
    let r = unsafe { syscall(SYS_futex, word.as_ptr(), FUTEX_WAKE, 1) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A page shared with the children this process will fork.
fn shared_page() -> nix::Result<&'static Page> {
    let length = NonZeroUsize::new(size_of::<Page>()).expect("not empty");
    let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh anonymous mapping, zeroed, which overlaps nothing.
    let memory =
        unsafe { mmap_anonymous(None, length, rw, MapFlags::MAP_SHARED)? };
    // SAFETY: zero bytes are a valid `Page` (all counters 0), the mapping
    // is aligned to a page, and it is never unmapped, so it lives as long
    // as the process: 'static.
    Ok(unsafe { memory.cast::<Page>().as_ref() })
}
// ANCHOR_END: shm

// ANCHOR: channel
/// Both ends of a channel, made before the fork.
enum Channel {
    /// Two pipes: one to the child, one to the parent.
    Pipes {
        to_child: (OwnedFd, OwnedFd),
        to_parent: (OwnedFd, OwnedFd),
        size: usize,
    },
    /// A connected pair of Unix stream sockets.
    Unix(UnixStream, UnixStream, usize),
    /// Both ends of a TCP connection on loopback.
    Tcp(TcpStream, TcpStream, usize),
    /// Signals, blocked now; the ends need the other's pid.
    Signals,
    /// One eventfd to the child, one to the parent.
    Eventfds {
        to_child: EventFd,
        to_parent: EventFd,
    },
    /// A shared page.
    Shm(&'static Page, Wait),
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Parent,
    Child,
}

impl Channel {
    fn new(args: &Args) -> Result<Channel, Box<dyn Error>> {
        // With `--wait spin`, reads never wait: they fail with EAGAIN
        // while nothing has arrived, and the loops above ask again.
        let spin = args.wait == Wait::Spin;
        let size = args.size;
        Ok(match args.via {
            Via::Pipe => {
                let mut flags = OFlag::O_CLOEXEC;
                flags.set(OFlag::O_NONBLOCK, spin);
                Channel::Pipes {
                    to_child: pipe2(flags)?,
                    to_parent: pipe2(flags)?,
                    size,
                }
            }
            Via::Unix => {
                let (a, b) = UnixStream::pair()?;
                a.set_nonblocking(spin)?;
                b.set_nonblocking(spin)?;
                Channel::Unix(a, b, size)
            }
            Via::Tcp => {
                // Connect to ourselves: the kernel completes the handshake
                // before `accept`, so no process waits for the other.
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                let client = TcpStream::connect(listener.local_addr()?)?;
                let (server, _) = listener.accept()?;
                for end in [&client, &server] {
                    // Send each message at once, never waiting to fill a
                    // segment (Nagle's algorithm).
                    end.set_nodelay(true)?;
                    end.set_nonblocking(spin)?;
                }
                Channel::Tcp(server, client, size)
            }
            Via::Signal => {
                blocked_signals().thread_block()?;
                // A SIGUSR1 or SIGUSR2 that our parent left pending passes
                // through `exec`, and `sigwait` would take it for a message.
                // Ignoring a signal throws away one pending, blocked or not.
                for signal in [Signal::SIGUSR1, Signal::SIGUSR2] {
                    // SAFETY: neither action runs any code of ours.
                    unsafe {
                        nix::sys::signal::signal(signal, SigHandler::SigIgn)?;
                        nix::sys::signal::signal(signal, SigHandler::SigDfl)?;
                    }
                }
                // SIGCHLD also comes when the child stops or continues
                // (`kill -STOP`), unless its action says SA_NOCLDSTOP:
                // only the child's end must wake the parent.
                let ends_only = SigAction::new(
                    SigHandler::SigDfl,
                    SaFlags::SA_NOCLDSTOP,
                    SigSet::empty(),
                );
                // SAFETY: the default action runs no code of ours.
                unsafe { sigaction(Signal::SIGCHLD, &ends_only) }?;
                Channel::Signals
            }
            Via::Eventfd => {
                let mut flags = EfdFlags::EFD_CLOEXEC;
                flags.set(EfdFlags::EFD_NONBLOCK, spin);
                let to_parent = EventFd::from_flags(flags)?;
                GONE_FD.store(to_parent.as_raw_fd(), Ordering::SeqCst);
                install_child_gone()?;
                Channel::Eventfds {
                    to_child: EventFd::from_flags(flags)?,
                    to_parent,
                }
            }
            Via::Shm => {
                let page = shared_page()?;
                let _ = GONE_PAGE.set(page);
                install_child_gone()?;
                Channel::Shm(page, args.wait)
            }
        })
    }

    /// This process's end; the other process's end is closed here.
    fn end(self, side: Side, peer: Pid) -> io::Result<Box<dyn End>> {
        let parent = side == Side::Parent;
        Ok(match self {
            Channel::Pipes {
                to_child,
                to_parent,
                size,
            } => {
                let (rx, tx) = if parent {
                    (to_parent.0, to_child.1)
                } else {
                    (to_child.0, to_parent.1)
                };
                stream(File::from(rx), File::from(tx), size)
            }
            Channel::Unix(parents, childs, size) => {
                let mine = if parent { parents } else { childs };
                stream(mine.try_clone()?, mine, size)
            }
            Channel::Tcp(parents, childs, size) => {
                let mine = if parent { parents } else { childs };
                stream(mine.try_clone()?, mine, size)
            }
            Channel::Signals => {
                let mut waited_for = SigSet::empty();
                waited_for.add(Signal::SIGUSR1);
                waited_for.add(if parent {
                    Signal::SIGCHLD
                } else {
                    Signal::SIGUSR2
                });
                Box::new(Signals { peer, waited_for })
            }
            Channel::Eventfds {
                to_child,
                to_parent,
            } => {
                let (rx, tx) = if parent {
                    (to_parent, to_child)
                } else {
                    (to_child, to_parent)
                };
                Box::new(Eventfds { rx, tx })
            }
            Channel::Shm(page, wait) => {
                let (rx, tx) = if parent {
                    (&page.to_parent, &page.to_child)
                } else {
                    (&page.to_child, &page.to_parent)
                };
                Box::new(Shared {
                    rx,
                    tx,
                    wait,
                    seen: 0,
                })
            }
        })
    }
}

/// The parent's SIGCHLD handler, for the channels without an end of
/// stream: eventfds and shared memory.
fn install_child_gone() -> nix::Result<()> {
    let handler = SigAction::new(
        SigHandler::Handler(child_gone),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler only loads atomics, adds to one, and calls
    // `write` and `futex`, all async-signal-safe.
    unsafe { sigaction(Signal::SIGCHLD, &handler) }?;
    // A parent may have started us with SIGCHLD blocked: the mask passes
    // through `exec`, and a blocked SIGCHLD would never run the handler.
    // None left pending by that parent comes now: `keep_zombies` set the
    // default action first, and that throws a pending SIGCHLD away.
    SigSet::from(Signal::SIGCHLD).thread_unblock()
}

fn stream<R: Read + 'static, W: Write + 'static>(
    rx: R,
    tx: W,
    size: usize,
) -> Box<dyn End> {
    // Not all zeros: the first byte counts, the others are a pattern.
    let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    Box::new(Stream {
        rx,
        tx,
        outgoing: message.clone(),
        incoming: message,
        received: 0,
    })
}
// ANCHOR_END: channel

// ANCHOR: placement
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

/// Restricts this process to one CPU: the kernel moves it there at once,
/// and the scheduler never runs it anywhere else.
fn pin_to(cpu: Option<usize>) -> nix::Result<()> {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(Pid::from_raw(0), &set)?;
    }
    Ok(())
}
// ANCHOR_END: placement

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
        Via::Signal => "signal",
        Via::Eventfd => "eventfd",
        Via::Shm => "shm",
    }
}

fn message(args: &Args) -> String {
    match args.via {
        Via::Pipe | Via::Unix | Via::Tcp if args.size == 1 => "1 byte".into(),
        Via::Pipe | Via::Unix | Via::Tcp => format!("{} bytes", args.size),
        Via::Signal => "a signal".into(),
        Via::Eventfd => "8 bytes".into(),
        Via::Shm => "a 4-byte count".into(),
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

/// Creates the file for `--times`; an error names it.
fn create(path: &Path) -> Result<File, String> {
    File::create(path).map_err(|err| format!("{}: {err}", shown(path)))
}

/// A path as an error shows it: on one line, whatever it holds.
fn shown(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

/// Every time, in nanoseconds, one a line.
fn write_times(file: File, times: &[u64]) -> io::Result<()> {
    let mut out = io::BufWriter::new(file);
    for time in times {
        writeln!(out, "{time}")?;
    }
    out.flush()
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

/// The largest message: four times a pipe's default capacity.
const MAX_SIZE: usize = 256 << 10;

/// Reads `[--via V] [--cpus C] [--wait W] [--count N] [--size BYTES]
/// [--times FILE]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        via: Via::Pipe,
        cpus: Cpus::Same,
        wait: Wait::Block,
        count: 200_000,
        size: 1,
        times: None,
    };
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("via") => {
                parsed.via = match args.value()?.string()?.as_str() {
                    "pipe" => Via::Pipe,
                    "unix" => Via::Unix,
                    "tcp" => Via::Tcp,
                    "signal" => Via::Signal,
                    "eventfd" => Via::Eventfd,
                    "shm" => Via::Shm,
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
            Long("wait") => {
                parsed.wait = match args.value()?.string()?.as_str() {
                    "block" => Wait::Block,
                    "spin" => Wait::Spin,
                    other => {
                        return Err(format!(
                            "no --wait '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                }
            }
            Long("count") => parsed.count = args.value()?.parse()?,
            Long("size") => parsed.size = args.value()?.parse()?,
            Long("times") => parsed.times = Some(args.value()?.into()),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if !(1..=MAX_COUNT).contains(&parsed.count) {
        return Err(format!("--count must be from 1 to {MAX_COUNT}").into());
    }
    if !(1..=MAX_SIZE).contains(&parsed.size) {
        return Err(format!("--size must be from 1 to {MAX_SIZE}").into());
    }
    let stream = matches!(parsed.via, Via::Pipe | Via::Unix | Via::Tcp);
    if parsed.size != 1 && !stream {
        return Err("--size is for pipe, unix and tcp".into());
    }
    if parsed.wait == Wait::Spin && parsed.via == Via::Signal {
        return Err("--wait spin needs a descriptor or shm".into());
    }
    // Two spinning processes on one CPU would each spin until the
    // scheduler stops it, a whole time slice per message.
    if parsed.wait == Wait::Spin && parsed.cpus != Cpus::Different {
        return Err("--wait spin needs --cpus different".into());
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

/// Gives SIGCHLD its default action back. A parent that left it ignored
/// passed that on through `exec` (Chapter 24), and then the kernel reaps
/// our children itself: every wait fails with ECHILD, and a child's pid,
/// or its group's id, may go to a stranger as soon as the child exits,
/// while we may still signal it.
fn keep_zombies() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }?;
    Ok(())
}
// ANCHOR_END: whole
