// ANCHOR: whole
// Listing 8-2: which calls give up when a signal handler interrupts them,
// measured. For each blocking call in the table, the main thread starts
// the call, and a helper thread interrupts it with SIGUSR1 every 10 ms.
// After three interruptions the helper makes the call's wait come true
// (writes the byte, connects, kills the child...). A call that gives up
// returns an error at the first interruption; a call that is restarted, by
// the kernel or by std, returns Ok. Each call runs twice: with a handler
// installed without SA_RESTART, then with it.

use std::env;
use std::error::Error;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{self, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::libc::{self, c_int};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction, signal,
};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, mkfifo, pipe2};

const USAGE: &str = "usage: sig-restart-table";
/// Interruptions before the helper ends the wait.
const HITS: u64 = 3;
const EVERY: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-restart-table: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// True while the main thread is inside the call being measured.
static IN_CALL: AtomicBool = AtomicBool::new(false);
/// Interruptions that landed while it was.
static HIT: AtomicU64 = AtomicU64::new(0);
/// What `main` found, for the `sleep` children to get back (Chapter 12).
static FOUND: OnceLock<Found> = OnceLock::new();

/// The signal mask, and SIGCHLD's action, before this program changed
/// them.
#[derive(Clone, Copy)]
struct Found {
    mask: SigSet,
    chld: SigAction,
}

extern "C" fn on_usr1(_: c_int) {
    if IN_CALL.load(Ordering::SeqCst) {
        HIT.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a call returned: `Ok`, or the error it gave up with.
type Outcome = Result<(), String>;
/// The call, run on the main thread.
type Call = Box<dyn FnOnce() -> Outcome>;
/// What makes the call's wait come true, run by the helper.
type Finish = Box<dyn FnOnce() + Send>;
/// Sets up a fresh call and what finishes it.
type Setup = fn() -> io::Result<(Call, Finish)>;

// ANCHOR: cases
/// Each blocking call in the table, set up afresh.
fn cases() -> Vec<(&'static str, Setup)> {
    vec![
        ("std File::read, pipe", || {
            let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
            let mut file = File::from(read_end);
            Ok((
                Box::new(move || std_outcome(file.read(&mut [0; 1]))),
                put_a_byte(write_end),
            ))
        }),
        ("std Read::read_exact, pipe", || {
            let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
            let mut file = File::from(read_end);
            Ok((
                Box::new(move || std_outcome(file.read_exact(&mut [0; 1]))),
                put_a_byte(write_end),
            ))
        }),
        ("std io::copy, pipe to /dev/null", || {
            let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
            let mut file = File::from(read_end);
            let mut null = File::options().write(true).open("/dev/null")?;
            Ok((
                // On Linux, std hands this copy to `splice`.
                Box::new(move || std_outcome(io::copy(&mut file, &mut null))),
                put_a_byte(write_end),
            ))
        }),
        ("nix unistd::read, pipe", || {
            let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
            Ok((
                Box::new(move || {
                    nix_outcome(nix::unistd::read(&read_end, &mut [0; 1]))
                }),
                put_a_byte(write_end),
            ))
        }),
        ("std File::open, FIFO", || {
            let fifo = Fifo::make()?;
            let finish = open_both_ends(&fifo);
            // `fifo` goes into the call, which removes it once it returns.
            Ok((Box::new(move || std_outcome(File::open(&fifo.0))), finish))
        }),
        ("nix fcntl::open, FIFO", || {
            let fifo = Fifo::make()?;
            let finish = open_both_ends(&fifo);
            Ok((
                Box::new(move || {
                    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
                    nix_outcome(open(&fifo.0, flags, Mode::empty()))
                }),
                finish,
            ))
        }),
        ("std TcpStream::read, no timeout", || {
            let (mut client, server) = tcp_pair()?;
            Ok((
                Box::new(move || std_outcome(client.read(&mut [0; 1]))),
                send_a_byte(server),
            ))
        }),
        ("std TcpStream::read, read_timeout", || {
            let (mut client, server) = tcp_pair()?;
            client.set_read_timeout(Some(Duration::from_secs(10)))?;
            Ok((
                Box::new(move || std_outcome(client.read(&mut [0; 1]))),
                send_a_byte(server),
            ))
        }),
        ("std TcpListener::accept", || {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            Ok((
                Box::new(move || std_outcome(listener.accept())),
                // Closed at once: `accept` still takes the connection,
                // which waits in the queue with the client's FIN.
                Box::new(move || drop(TcpStream::connect(addr))),
            ))
        }),
        ("nix poll, 10 s timeout", || {
            let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
            Ok((
                Box::new(move || {
                    let mut fds =
                        [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
                    nix_outcome(poll(&mut fds, PollTimeout::from(10_000u16)))
                }),
                put_a_byte(write_end),
            ))
        }),
        ("std thread::sleep, 100 ms", || {
            Ok((
                Box::new(|| {
                    let start = Instant::now();
                    thread::sleep(Duration::from_millis(100));
                    if start.elapsed() >= Duration::from_millis(100) {
                        Ok(())
                    } else {
                        Err("woke early".into())
                    }
                }),
                Box::new(|| {}),
            ))
        }),
        ("std Child::wait", || {
            let mut child = sleeper()?;
            let pid = child_pid(&child);
            Ok((
                Box::new(move || std_outcome(child.wait())),
                Box::new(move || {
                    let _ = kill(pid, Signal::SIGKILL);
                }),
            ))
        }),
        ("nix sys::wait::waitpid", || {
            let child = sleeper()?;
            let pid = child_pid(&child);
            Ok((
                Box::new(move || {
                    let first = waitpid(pid, None);
                    // Given up, the child still runs: wait on until the
                    // helper kills it, so that it is reaped. The row
                    // shows the first outcome.
                    let mut last = first;
                    while last == Err(Errno::EINTR) {
                        last = waitpid(pid, None);
                    }
                    nix_outcome(first)
                }),
                Box::new(move || {
                    let _ = kill(pid, Signal::SIGKILL);
                }),
            ))
        }),
        ("std mpsc::Receiver::recv", || {
            let (tx, rx) = mpsc::channel::<()>();
            Ok((
                Box::new(move || rx.recv().map_err(|e| e.to_string())),
                Box::new(move || {
                    let _ = tx.send(());
                }),
            ))
        }),
    ]
}
// ANCHOR_END: cases

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    // The mask as found, before `restore_sigpipe` unblocks SIGPIPE and
    // each row SIGUSR1: the `sleep` children get it back.
    let mask = SigSet::thread_get_mask()?;
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let chld = restore_sigchld()?; // For the rows that wait for a child.
    let _ = FOUND.set(Found { mask, chld });
    // SAFETY: `pthread_self` has no preconditions.
    let main_thread = unsafe { libc::pthread_self() };
    let mut out = io::stdout();
    writeln!(out, "{:<36} {:<20} SA_RESTART", "call", "no SA_RESTART")?;
    for (name, setup) in cases() {
        let mut row = format!("{name:<36}");
        for flags in [SaFlags::empty(), SaFlags::SA_RESTART] {
            let action = SigAction::new(
                SigHandler::Handler(on_usr1),
                flags,
                SigSet::empty(),
            );
            // SAFETY: the handler only touches atomics.
            unsafe { sigaction(Signal::SIGUSR1, &action) }?;
            // A parent's mask passes through `exec`: blocked, every
            // interruption would only wait, and no cell could be measured.
            SigSet::from(Signal::SIGUSR1).thread_unblock()?;
            let (call, finish) = setup()?;
            let (outcome, landed) = measure(main_thread, call, finish)?;
            // With no interruption inside it, a call's `Ok` says only that
            // its wait came true, not that it was restarted.
            if landed == 0 {
                let why = format!("{name}: no SIGUSR1 landed while it ran");
                return Err(why.into());
            }
            let cell = match outcome {
                Ok(()) => "Ok".to_string(),
                Err(err) => format!("Err({err})"),
            };
            row.push_str(&format!(" {cell:<20}"));
        }
        writeln!(out, "{}", row.trim_end())?;
    }
    Ok(())
}

/// Runs `call` on this thread while a helper interrupts it every 10 ms,
/// and runs `finish` once three interruptions have landed while it runs
/// (or five seconds have passed); returns what the call returned, and how
/// many interruptions landed. Without a helper, runs `finish` then
/// `call`, which ends what the row started (a child is killed and
/// reaped), and fails.
fn measure(
    main: libc::pthread_t,
    call: Call,
    finish: Finish,
) -> io::Result<(Outcome, u64)> {
    HIT.store(0, Ordering::SeqCst);
    let done = Arc::new(AtomicBool::new(false));
    let helper_done = Arc::clone(&done);
    // The thread id goes over as an integer: `pthread_t` is one on Linux.
    let main = main as usize;
    // `finish` goes over once the helper runs: kept here if it cannot.
    let (give, take) = mpsc::channel::<Finish>();
    let helper = thread::Builder::new().spawn(move || {
        let mut finish = take.recv().ok();
        let started = Instant::now();
        while !helper_done.load(Ordering::SeqCst) {
            // SAFETY: the main thread outlives this helper, which it joins.
            unsafe {
                libc::pthread_kill(main as libc::pthread_t, libc::SIGUSR1)
            };
            thread::sleep(EVERY);
            let enough = HIT.load(Ordering::SeqCst) >= HITS
                || started.elapsed() > Duration::from_secs(5);
            if enough {
                if let Some(finish) = finish.take() {
                    finish();
                }
            }
        }
    });
    let helper = match helper {
        Ok(helper) => helper,
        Err(err) => {
            finish();
            let _ = call();
            let why = format!("cannot start a thread: {err}");
            return Err(io::Error::new(err.kind(), why));
        }
    };
    let _ = give.send(finish);
    IN_CALL.store(true, Ordering::SeqCst);
    let outcome = call();
    IN_CALL.store(false, Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    let _ = helper.join();
    Ok((outcome, HIT.load(Ordering::SeqCst)))
}
// ANCHOR_END: run

fn std_outcome<T>(result: io::Result<T>) -> Outcome {
    match result {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == ErrorKind::Interrupted => {
            Err("Interrupted".into())
        }
        Err(err) => Err(err.to_string()),
    }
}

fn nix_outcome<T>(result: nix::Result<T>) -> Outcome {
    result.map(drop).map_err(|err| format!("{err:?}"))
}

fn put_a_byte(write_end: OwnedFd) -> Finish {
    Box::new(move || drop(File::from(write_end).write_all(b"!")))
}

/// A FIFO of our own, removed when dropped. Opening it to read waits
/// until something opens it to write.
struct Fifo(PathBuf);

impl Fifo {
    fn make() -> nix::Result<Fifo> {
        let name = format!("sig-restart-table-{}.fifo", process::id());
        let path = env::temp_dir().join(name);
        mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR)?;
        Ok(Fifo(path))
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Opens the FIFO to read and write, which never waits, and closes it:
/// a reader waiting in `open` sees a writer come, and returns.
fn open_both_ends(fifo: &Fifo) -> Finish {
    let path = fifo.0.clone();
    Box::new(move || drop(File::options().read(true).write(true).open(path)))
}

fn send_a_byte(mut server: TcpStream) -> Finish {
    Box::new(move || drop(server.write_all(b"!")))
}

/// Two ends of a TCP connection on loopback.
fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((client, server))
}

/// A child that would sleep for a minute; the helper kills it sooner, and
/// the kernel does if this process dies first. It gets back the mask and
/// SIGCHLD's action that `main` found, not what this program made of them
/// (Chapter 12).
fn sleeper() -> io::Result<std::process::Child> {
    let parent = nix::unistd::getpid();
    let found = *FOUND
        .get()
        .ok_or_else(|| io::Error::other("sleeper before run"))?;
    let mut command = Command::new("sleep");
    command.arg("60").stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: between fork and exec the child makes four system calls,
    // all async-signal-safe, and allocates nothing: `found` was copied
    // into the closure before the fork.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(ErrorKind::Other.into()); // Orphaned already.
            }
            sigaction(Signal::SIGCHLD, &found.chld)?;
            found.mask.thread_set_mask()?;
            Ok(())
        })
    };
    command.spawn()
}

fn child_pid(child: &std::process::Child) -> Pid {
    Pid::from_raw(child.id() as i32)
}

/// Gives SIGCHLD its default action back, and returns the action found,
/// for a child of ours to get back. A parent may have left it ignored,
/// which passes through `exec`; ignored, it makes the kernel reap our
/// children itself, and every `waitpid` fail with ECHILD.
fn restore_sigchld() -> nix::Result<SigAction> {
    let default =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    unsafe { sigaction(Signal::SIGCHLD, &default) }
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

/// Takes no arguments but `--help`.
fn parse_args() -> Result<(), lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = lexopt::Parser::from_env();
    if let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(())
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
