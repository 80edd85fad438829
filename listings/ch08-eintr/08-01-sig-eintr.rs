// ANCHOR: whole
// Listing 8-1: a blocking `read` and a signal. The program reads from an
// empty pipe, and a handler for SIGUSR1 says when it runs. Installed
// without SA_RESTART (the default here), the read fails with EINTR as soon
// as the handler returns. With `--restart` or `--signal-hook` the kernel
// restarts the read instead, and it goes on waiting; SIGUSR2 then puts a
// byte into the pipe, and the read returns it. The program reads back the
// flags it got from the kernel, so that it cannot fool itself.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc::{self, c_int};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction, signal,
};
use nix::unistd::{getpid, pipe2, read};
use signal_hook::consts::{SIGUSR1, SIGUSR2};

const USAGE: &str = "usage: sig-eintr [--restart | --signal-hook]";

#[derive(Clone, Copy, PartialEq)]
enum Install {
    Plain,
    Restart,
    SignalHook,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-eintr: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// How many times the SIGUSR1 handler ran.
static RAN: AtomicU64 = AtomicU64::new(0);
/// The write end of the pipe, for the SIGUSR2 handler.
static FEED: AtomicI32 = AtomicI32::new(-1);

/// Says that it ran, with one `write` of a fixed message.
fn on_usr1() {
    const MSG: &[u8] = b"Handler: SIGUSR1 arrived\n";
    RAN.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `write` is async-signal-safe; MSG is static.
    unsafe { libc::write(libc::STDOUT_FILENO, MSG.as_ptr().cast(), MSG.len()) };
}

/// Puts one byte into the pipe, so that the read has something to return.
fn on_usr2() {
    let fd = FEED.load(Ordering::SeqCst);
    // SAFETY: `write` is async-signal-safe; the byte is static.
    unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
}

extern "C" fn usr1_handler(_: c_int) {
    let saved = Errno::last_raw();
    on_usr1();
    Errno::set_raw(saved);
}

extern "C" fn usr2_handler(_: c_int) {
    let saved = Errno::last_raw();
    on_usr2();
    Errno::set_raw(saved);
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let install = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Never closed: the SIGUSR2 handler writes into it for as long as it
    // is installed, which is until the process ends (Listing 5-4).
    let (read_end, write_end): &'static (OwnedFd, OwnedFd) =
        Box::leak(Box::new(pipe2(OFlag::O_CLOEXEC)?));
    // The handler's end does not block: with the pipe full (a burst of
    // SIGUSR2, nobody reading) a blocking write would wait for the very
    // thread it interrupted, forever (Listing 5-4); this one drops the
    // byte. The read end, whose `read` this listing is about, blocks.
    fcntl(write_end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    FEED.store(write_end.as_raw_fd(), Ordering::SeqCst);
    // Blocked while the handlers go in: signal-hook installs its handler
    // before it records the action, and a signal in between would run it
    // for nothing (Chapter 6). Blocked, it waits for the unblock below.
    let handled = SigSet::from_iter([Signal::SIGUSR1, Signal::SIGUSR2]);
    handled.thread_block()?;
    match install {
        Install::SignalHook => {
            // SAFETY: both actions only make async-signal-safe calls.
            unsafe {
                signal_hook::low_level::register(SIGUSR1, on_usr1)?;
                signal_hook::low_level::register(SIGUSR2, on_usr2)?;
            }
        }
        Install::Plain | Install::Restart => {
            let flags = match install {
                Install::Restart => SaFlags::SA_RESTART,
                _ => SaFlags::empty(),
            };
            for (caught, handler) in [
                (Signal::SIGUSR1, usr1_handler as extern "C" fn(c_int)),
                (Signal::SIGUSR2, usr2_handler),
            ] {
                let action = SigAction::new(
                    SigHandler::Handler(handler),
                    flags,
                    SigSet::empty(),
                );
                // SAFETY: the handlers are async-signal-safe.
                unsafe { sigaction(caught, &action) }?;
            }
        }
    }
    // Unblocked once they are in, and a parent's mask passes through
    // `exec`: blocked, the signals would only wait, and the read would
    // never be interrupted (Chapter 12).
    handled.thread_unblock()?;
    let restart = installed_with_restart(Signal::SIGUSR1)?;
    let (mut out, pid) = (io::stdout(), getpid());
    writeln!(out, "SIGUSR1 handler installed with SA_RESTART: {restart}")?;
    writeln!(
        out,
        "Reading an empty pipe as pid {pid}; try: kill -USR1 {pid}"
    )?;

    let mut buf = [0u8; 16];
    match read(read_end, &mut buf) {
        Ok(n) => writeln!(
            out,
            "read returned {n} byte(s) [{}]; the handler ran {} time(s)",
            buf[..n].escape_ascii(),
            RAN.load(Ordering::SeqCst)
        )?,
        Err(Errno::EINTR) => writeln!(
            out,
            "read failed with EINTR; the handler ran {} time(s)",
            RAN.load(Ordering::SeqCst)
        )?,
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

/// Asks the kernel how the handler for `signal` was installed.
fn installed_with_restart(signal: Signal) -> nix::Result<bool> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: a null new action only reads the current one into `old`.
    let rc = unsafe {
        libc::sigaction(signal as c_int, std::ptr::null(), old.as_mut_ptr())
    };
    Errno::result(rc)?;
    // SAFETY: `sigaction` succeeded, so it filled `old`.
    let old = unsafe { old.assume_init() };
    Ok(old.sa_flags & libc::SA_RESTART != 0)
}
// ANCHOR_END: run

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

/// Reads `[--restart | --signal-hook]` from the command line.
fn parse_args() -> Result<Install, lexopt::Error> {
    use lexopt::prelude::*;
    let mut install = Install::Plain;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("restart") if install == Install::Plain => {
                install = Install::Restart;
            }
            Long("signal-hook") if install == Install::Plain => {
                install = Install::SignalHook;
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(install)
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
