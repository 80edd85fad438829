// ANCHOR: whole
// Listing 26-1: round-trip latency. A parent and a forked child pass a
// small message back and forth: the parent sends, the child answers, COUNT
// times, over a pair of pipes, a Unix socket pair, a TCP connection on
// loopback, a signal, or a pair of eventfds. The parent times the round
// trips and prints one line. `--cpus` chooses where the two processes run:
// both on one CPU, on two different CPUs, or wherever the scheduler likes.
//
// The C program of Listing 26-2 speaks the same protocol and prints the
// same line; the benchmark command runs both, side by side.

use std::error::Error;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::eventfd::EventFd;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction, signal,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, pipe};

const USAGE: &str = "usage: bench-pingpong \
                     [--via pipe|unix|tcp|signal|eventfd] \
                     [--cpus same|different|any] [--count N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(io::stderr(), "bench-pingpong: {err}");
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
    count: u64,
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let (parent_cpu, child_cpu) = choose_cpus(args.cpus)?;
    // Both ends exist before the fork, so that both processes have them.
    let channel = Channel::new(args.via)?;
    let parent = getpid();
    pin_to(parent_cpu)?;
    // SAFETY: the program has started no threads, so no lock can be held
    // by a thread that the child would not have.
    let child = match unsafe { fork() }? {
        ForkResult::Child => {
            let status = match child(channel, parent, child_cpu, args.count) {
                Ok(()) => 0,
                Err(err) => {
                    let _ =
                        writeln!(io::stderr(), "bench-pingpong child: {err}");
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
    let elapsed = time_round_trips(end, args.count)?;
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

    // Measured. From here on, we are a filter: if nobody reads our output,
    // SIGPIPE ends us quietly (see the introduction).
    restore_sigpipe()?;
    let n = args.count as f64;
    println!(
        "{} on {}: {} round trips of {}; measured: {:.6} s, {:.3} µs per \
         round trip, {:.2} waits and {:.2} preemptions per round trip",
        via_name(args.via),
        placement(parent_cpu, child_cpu),
        args.count,
        message(args.via),
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / n,
        waits as f64 / n,
        preemptions as f64 / n,
    );
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: loops
/// The parent's side: one round trip to be sure that the child is ready
/// (pinned to its CPU, waiting), then `count` timed ones; then it tells
/// the child to stop.
fn time_round_trips(
    mut end: Box<dyn End>,
    count: u64,
) -> Result<Duration, Box<dyn Error>> {
    round_trip(&mut *end)?;
    let start = Instant::now();
    for _ in 0..count {
        round_trip(&mut *end)?;
    }
    let elapsed = start.elapsed();
    end.stop()?;
    Ok(elapsed)
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
    // The parent's warm-up round trip, then the timed ones.
    if answered.checked_sub(1) != Some(count) {
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

/// An end of a byte stream: a pipe pair or a socket. Each message is one
/// byte, which counts up, so that each side can check that it got the
/// message it expected. The end of the stream says "stop".
struct Stream<R, W> {
    rx: R,
    tx: W,
    sent: u8,
    received: u8,
}

impl<R: Read, W: Write> End for Stream<R, W> {
    fn send(&mut self) -> io::Result<()> {
        self.tx.write_all(&[self.sent])?;
        self.sent = self.sent.wrapping_add(1);
        Ok(())
    }

    fn receive(&mut self) -> io::Result<bool> {
        let mut byte = [0];
        // One byte comes whole or not at all: a read of one byte cannot
        // be short. `read_exact` also retries a read that a signal
        // interrupted (EINTR).
        match self.rx.read_exact(&mut byte) {
            Ok(()) if byte[0] == self.received => {
                self.received = self.received.wrapping_add(1);
                Ok(true)
            }
            Ok(()) => Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("expected byte {}, got {}", self.received, byte[0]),
            )),
            Err(err) if err.kind() == ErrorKind::UnexpectedEof => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn stop(self: Box<Self>) -> io::Result<()> {
        Ok(()) // Dropping `tx` closes it: the other side reads the end.
    }
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
    let fd = GONE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let value = CHILD_GONE.to_ne_bytes();
        // SAFETY: `write` is async-signal-safe, and the buffer is ours.
        unsafe { nix::libc::write(fd, value.as_ptr().cast(), value.len()) };
    }
}

impl End for Eventfds {
    fn send(&mut self) -> io::Result<()> {
        self.tx.write(1)?;
        Ok(())
    }

    fn receive(&mut self) -> io::Result<bool> {
        Ok(self.rx.read()? == 1)
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

// ANCHOR: channel
/// Both ends of a channel, made before the fork.
enum Channel {
    /// Two pipes: one to the child, one to the parent.
    Pipes {
        to_child: (OwnedFd, OwnedFd),
        to_parent: (OwnedFd, OwnedFd),
    },
    /// A connected pair of Unix stream sockets.
    Unix(UnixStream, UnixStream),
    /// Both ends of a TCP connection on loopback.
    Tcp(TcpStream, TcpStream),
    /// Signals, blocked now; the ends need the other's pid.
    Signals,
    /// One eventfd to the child, one to the parent.
    Eventfds {
        to_child: EventFd,
        to_parent: EventFd,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Parent,
    Child,
}

impl Channel {
    fn new(via: Via) -> Result<Channel, Box<dyn Error>> {
        Ok(match via {
            Via::Pipe => Channel::Pipes {
                to_child: pipe()?,
                to_parent: pipe()?,
            },
            Via::Unix => {
                let (a, b) = UnixStream::pair()?;
                Channel::Unix(a, b)
            }
            Via::Tcp => {
                // Connect to ourselves: the kernel completes the handshake
                // before `accept`, so no process waits for the other.
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                let client = TcpStream::connect(listener.local_addr()?)?;
                let (server, _) = listener.accept()?;
                // Send each byte at once, never waiting to fill a segment
                // (Nagle's algorithm).
                client.set_nodelay(true)?;
                server.set_nodelay(true)?;
                Channel::Tcp(server, client)
            }
            Via::Signal => {
                blocked_signals().thread_block()?;
                Channel::Signals
            }
            Via::Eventfd => {
                let to_parent = EventFd::new()?;
                GONE_FD.store(to_parent.as_raw_fd(), Ordering::SeqCst);
                let handler = SigAction::new(
                    SigHandler::Handler(child_gone),
                    SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
                    SigSet::empty(),
                );
                // SAFETY: the handler only loads an atomic and calls
                // `write`, both async-signal-safe.
                unsafe { sigaction(Signal::SIGCHLD, &handler) }?;
                Channel::Eventfds {
                    to_child: EventFd::new()?,
                    to_parent,
                }
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
            } => {
                let (rx, tx) = if parent {
                    (to_parent.0, to_child.1)
                } else {
                    (to_child.0, to_parent.1)
                };
                stream(File::from(rx), File::from(tx))
            }
            Channel::Unix(parents, childs) => {
                let mine = if parent { parents } else { childs };
                stream(mine.try_clone()?, mine)
            }
            Channel::Tcp(parents, childs) => {
                let mine = if parent { parents } else { childs };
                stream(mine.try_clone()?, mine)
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
        })
    }
}

fn stream<R: Read + 'static, W: Write + 'static>(rx: R, tx: W) -> Box<dyn End> {
    Box::new(Stream {
        rx,
        tx,
        sent: 0,
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
    }
}

fn message(via: Via) -> &'static str {
    match via {
        Via::Pipe | Via::Unix | Via::Tcp => "1 byte",
        Via::Signal => "a signal",
        Via::Eventfd => "8 bytes",
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
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// Reads `[--via V] [--cpus C] [--count N]` from the command line.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        via: Via::Pipe,
        cpus: Cpus::Same,
        count: 200_000,
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
                    other => return Err(format!("no --via {other}").into()),
                }
            }
            Long("cpus") => {
                parsed.cpus = match args.value()?.string()?.as_str() {
                    "same" => Cpus::Same,
                    "different" => Cpus::Different,
                    "any" => Cpus::Any,
                    other => return Err(format!("no --cpus {other}").into()),
                }
            }
            Long("count") => parsed.count = args.value()?.parse()?,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if parsed.count == 0 {
        return Err("--count must be at least 1".into());
    }
    Ok(parsed)
}
// ANCHOR_END: whole
