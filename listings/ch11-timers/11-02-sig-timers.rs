// ANCHOR: whole
// Listing 11-2: timers beyond `alarm`. POSIX timers (`timer_create`): as
// many as you like, each with its own clock, its own signal and a value
// that comes with it; here two one-shot timers on two real-time signals,
// then a fast periodic one whose expirations pile up while its signal is
// blocked: one signal waits, and the kernel counts the rest as overruns. Then Linux's timerfd,
// which needs no signal at all: a read returns how many times the timer
// expired. Counts and times that vary from run to run are marked
// "(measured)".

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::process::{self, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc::{self, c_int};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{
    ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags,
};

const USAGE: &str = "usage: sig-timers";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-timers: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let (a, b, c) =
        (libc::SIGRTMIN(), libc::SIGRTMIN() + 1, libc::SIGRTMIN() + 2);
    // Blocked, and taken with `sigtimedwait`, which also reports the
    // value and the overrun count of each signal.
    let signals = block(&[a, b, c])?;
    // Any of them our parent blocked and left pending came through `exec`
    // with the mask: throw it away, or it would pass for a timer's.
    while take(&signals, 0)?.is_some() {}

    let (mut out, start) = (io::stdout(), Instant::now());
    let _timer_a =
        PosixTimer::new(a, 1, Duration::from_millis(300), Duration::ZERO)?;
    let _timer_b =
        PosixTimer::new(b, 2, Duration::from_millis(600), Duration::ZERO)?;
    writeln!(out, "timer A: SIGRTMIN with value 1, once, after 300 ms")?;
    writeln!(out, "timer B: SIGRTMIN+1 with value 2, once, after 600 ms")?;
    for _ in 0..2 {
        let info = take(&signals, 5)?.ok_or("no timer signal within 5 s")?;
        let name = if info.si_signo == a {
            "SIGRTMIN"
        } else {
            "SIGRTMIN+1"
        };
        // SAFETY: a timer's siginfo carries a value.
        let value = unsafe { info.si_value() }.sival_ptr as usize;
        let took = start.elapsed().as_secs_f64();
        writeln!(
            out,
            "Took {name} with value {value} after {took:.2} s (measured)"
        )?;
    }

    let every = Duration::from_millis(10);
    let timer_c = PosixTimer::new(c, 3, every, every)?;
    writeln!(out, "timer C: SIGRTMIN+2 every 10 ms, blocked for 100 ms")?;
    thread::sleep(Duration::from_millis(100));
    // A timer has one signal at most queued: expirations while it waits
    // are counted, not queued.
    let info = take(&signals, 5)?.ok_or("timer C sent nothing")?;
    drop(timer_c);
    // SAFETY: a timer's siginfo carries an overrun count.
    let overrun = unsafe { info.si_overrun() };
    writeln!(
        out,
        "Took one SIGRTMIN+2: overrun count {overrun} (measured)"
    )?;

    let timerfd =
        TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)?;
    timerfd.set(
        Expiration::Interval(TimeSpec::from_duration(every)),
        TimerSetTimeFlags::empty(),
    )?;
    writeln!(out, "timerfd: every 10 ms, not read for 100 ms")?;
    thread::sleep(Duration::from_millis(100));
    let mut count = [0u8; 8];
    nix::unistd::read(timerfd.as_fd(), &mut count)?;
    let count = u64::from_ne_bytes(count);
    writeln!(out, "One read: the expiration count is {count} (measured)")?;
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: posix_timer
/// A POSIX timer that sends `signal` with `value`, first after `first`,
/// then every `every` (zero: once). nix 0.32's `SigevNotify::SigevSignal`
/// takes only its `Signal` enum, which has no real-time signals; a nix
/// `Timer` on one needs a `libc::sigevent` anyway, so this calls libc
/// directly.
struct PosixTimer(libc::timer_t);

impl PosixTimer {
    fn new(
        signal: c_int,
        value: usize,
        first: Duration,
        every: Duration,
    ) -> io::Result<Self> {
        // SAFETY: all-zero is a valid sigevent; the fields that matter are
        // set below.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_SIGNAL;
        event.sigev_signo = signal;
        event.sigev_value = libc::sigval {
            sival_ptr: value as *mut _,
        };
        let mut id = std::ptr::null_mut();
        // SAFETY: valid pointers; the kernel writes the new timer's id.
        cvt(unsafe {
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id)
        })
        .map_err(|err| {
            // EAGAIN: every timer holds a slot for its signal in the
            // user's queue of pending signals, and none is left; or, far
            // rarer, the kernel could not allocate the timer itself.
            let why = match err.raw_os_error() {
                Some(libc::EAGAIN) => {
                    "; probably no slot left for its \
                    signal under RLIMIT_SIGPENDING (ulimit -i)"
                }
                _ => "",
            };
            let name = match signal - libc::SIGRTMIN() {
                0 => "SIGRTMIN".to_string(),
                n => format!("SIGRTMIN+{n}"),
            };
            let what = format!("timer_create for a timer on {name}");
            io::Error::new(err.kind(), format!("{what}: {err}{why}"))
        })?;
        let timer = PosixTimer(id);
        timer.set(first, every)?;
        Ok(timer)
    }

    fn set(&self, first: Duration, every: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(every),
            it_value: timespec(first),
        };
        // SAFETY: `self.0` is a live timer; the old setting is not wanted.
        cvt(unsafe {
            libc::timer_settime(self.0, 0, &spec, std::ptr::null_mut())
        })
    }
}

impl Drop for PosixTimer {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a live timer, deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}
// ANCHOR_END: posix_timer

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos().into(),
    }
}

fn cvt(rc: c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Blocks `numbers` in this thread and returns them as a set.
fn block(numbers: &[c_int]) -> io::Result<libc::sigset_t> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the set before anything reads it.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &n in numbers {
            libc::sigaddset(set.as_mut_ptr(), n);
        }
        set.assume_init()
    };
    // SAFETY: a valid set; the old mask is not wanted.
    let rc = unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(set)
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Takes one signal of `set` with its siginfo; `None` if none came
/// within `secs` seconds.
fn take(
    set: &libc::sigset_t,
    secs: u64,
) -> io::Result<Option<libc::siginfo_t>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::uninit();
    loop {
        // What is left of the timeout: after an interruption, not all of
        // it again, or a stream of other signals would wait for ever.
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos().into(),
        };
        // SAFETY: valid pointers; the kernel fills `info` on success.
        let rc =
            unsafe { libc::sigtimedwait(set, info.as_mut_ptr(), &timeout) };
        match Errno::result(rc) {
            // SAFETY: filled by the successful call.
            Ok(_) => return Ok(Some(unsafe { info.assume_init() })),
            Err(Errno::EAGAIN) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
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
