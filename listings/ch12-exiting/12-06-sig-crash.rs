// ANCHOR: whole
// Listing 12-6: the signals a program causes itself. A bad memory access
// is SIGSEGV, sent by the kernel to the thread whose instruction faulted;
// SIGQUIT (Ctrl-\) and SIGABRT end a process and dump its core. The
// program runs each case in a child of its own (itself, `--case NAME`),
// in a private temporary directory, where a core file would land, and
// reports how each child ended:
//
//   bad-read       a read from a page mapped with no access: SIGSEGV
//   returns        the same, with a handler that returns: the read runs
//                  again, and faults again
//   overflow       unbounded recursion: Rust's own handler reports it
//   no-onstack     the same, with a handler of ours without SA_ONSTACK
//   onstack        the same, with SA_ONSTACK: on the alternate stack
//   quit           raise(SIGQUIT), with RLIMIT_CORE 0, then its hard limit

use std::error::Error;
use std::ffi::OsString;
use std::fs;
use std::io::{self, ErrorKind, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{self, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nix::libc::{self, c_int, c_void};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction, signal,
};

const USAGE: &str = "usage: sig-crash [--case NAME]";
const CASES: [(&str, &str); 7] = [
    ("bad-read", "bad read, no handler of ours"),
    ("returns", "bad read, handler returns"),
    ("overflow", "stack overflow, Rust's handler"),
    ("no-onstack", "stack overflow, no SA_ONSTACK"),
    ("onstack", "stack overflow, SA_ONSTACK"),
    ("quit", "SIGQUIT, RLIMIT_CORE 0"),
    ("quit-core", "SIGQUIT, RLIMIT_CORE hard limit"),
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads our output: we left through here, so Drop ran.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("sig-crash: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    // SIGPIPE stays ignored: a closed output is an error that returns
    // through `main`, so that Drop removes the private directory.
    if let Some(case) = parse_args().map_err(|e| format!("{e}; {USAGE}"))? {
        return crash(&case);
    }
    default_sigchld()?; // For `output`: it may have come ignored.
    let dir = PrivateDir::new()?;
    let me = std::env::current_exe()?;
    let mut stdout = io::stdout();
    for (case, label) in CASES {
        let out = Command::new(&me)
            .args(["--case", case])
            .current_dir(&dir.0)
            .output()?;
        // What the child said, on stdout or stderr: its first line.
        let said = [&out.stdout, &out.stderr]
            .iter()
            .find_map(|text| {
                let text = String::from_utf8_lossy(text);
                text.lines().find(|l| !l.is_empty()).map(String::from)
            })
            .map_or(String::new(), |line| format!("{line:?}; "));
        let label = format!("{label}:");
        writeln!(stdout, "{label:<32} {said}{}", ending(out.status))?;
        // Emptied, not removed and made again: that would be a directory
        // of mode 0755, under a name that anyone could take meanwhile.
        for entry in fs::read_dir(&dir.0)? {
            let entry = entry?;
            writeln!(stdout, "{:<32} it left {:?}", "", entry.file_name())?;
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// "killed by SIGSEGV, core dumped: false".
fn ending(status: ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(n), _) => {
            let name = Signal::try_from(n).map_or("?", Signal::as_str);
            let core = status.core_dumped();
            format!("killed by {name}, core dumped: {core}")
        }
        (None, code) => format!("exited with {code:?}"),
    }
}
// ANCHOR_END: run

// ANCHOR: crash
/// How many times `on_segv` ran.
static RAN: AtomicUsize = AtomicUsize::new(0);
/// Set for `onstack`: the handler says that it ran, and gives up at once.
static ONSTACK: AtomicBool = AtomicBool::new(false);

/// Counts, and after 1000 runs gives the signal its default action back;
/// returning from a fault runs the faulting instruction again.
extern "C" fn on_segv(_: c_int) {
    let n = RAN.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 1000 || ONSTACK.load(Ordering::SeqCst) {
        let line: &[u8] = if n == 1000 {
            b"handler ran 1000 times\n"
        } else {
            b"handler ran, on the alternate stack\n"
        };
        // SAFETY: `write` and `signal` are async-signal-safe.
        unsafe {
            libc::write(libc::STDOUT_FILENO, line.as_ptr().cast(), line.len());
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        }
    }
}

fn crash(case: &str) -> Result<(), Box<dyn Error>> {
    let (_, hard) = getrlimit(Resource::RLIMIT_CORE)?;
    let core = if case == "quit-core" { hard } else { 0 };
    setrlimit(Resource::RLIMIT_CORE, core, hard)?;
    // A parent's mask passes through `exec`, and a fault on a blocked
    // SIGSEGV or SIGBUS is forced: the kernel puts the default action back
    // first, and no handler, ours or Rust's, would run.
    let mut faults = SigSet::from(Signal::SIGSEGV);
    faults.add(Signal::SIGBUS);
    faults.thread_unblock()?;
    let handler = |flags| -> nix::Result<()> {
        let action = SigAction::new(
            SigHandler::Handler(on_segv),
            flags,
            SigSet::empty(),
        );
        // SAFETY: the handler makes async-signal-safe calls only.
        unsafe { sigaction(Signal::SIGSEGV, &action) }.map(drop)
    };
    match case {
        "bad-read" => read_no_access(),
        "returns" => {
            handler(SaFlags::empty())?;
            read_no_access()
        }
        "overflow" => recurse(0).map(drop),
        "no-onstack" => {
            handler(SaFlags::empty())?;
            recurse(0).map(drop)
        }
        "onstack" => {
            ONSTACK.store(true, Ordering::SeqCst);
            // Rust's runtime gave the main thread an alternate stack.
            handler(SaFlags::SA_ONSTACK)?;
            recurse(0).map(drop)
        }
        "quit" | "quit-core" => {
            // To die of SIGQUIT, take its default action: a parent may have
            // started us with it ignored (as a script starts a `&` job) or
            // blocked, and both pass through fork and exec.
            // SAFETY: the default action runs no code of ours.
            unsafe { signal(Signal::SIGQUIT, SigHandler::SigDfl) }?;
            SigSet::from(Signal::SIGQUIT).thread_unblock()?;
            raise(Signal::SIGQUIT).map_err(Into::into)
        }
        other => {
            Err(format!("no case named '{}'", other.escape_debug()).into())
        }
    }
}

/// Reads a byte from a page mapped with no access at all: the read
/// faults. The read is one machine instruction, written in `asm!`: it is
/// the hardware's, outside Rust's rules about what may be read.
fn read_no_access() -> Result<(), Box<dyn Error>> {
    // SAFETY: a new anonymous mapping, used only by the read below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(io::Error::last_os_error().into());
    }
    read_byte(page);
    Err("the read did not fault".into())
}

#[cfg(target_arch = "x86_64")]
fn read_byte(at: *mut c_void) {
    // SAFETY: the instruction only reads, and the page cannot be read:
    // the kernel stops it before it reads anything.
    unsafe {
        std::arch::asm!("mov {0}, byte ptr [{1}]", out(reg_byte) _, in(reg) at)
    };
}

#[cfg(target_arch = "aarch64")]
fn read_byte(at: *mut c_void) {
    // SAFETY: as above.
    unsafe { std::arch::asm!("ldrb {0:w}, [{1}]", out(reg) _, in(reg) at) };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn read_byte(at: *mut c_void) {
    // SAFETY: none, on these architectures: a volatile read of memory
    // that cannot be read, which faults in practice.
    let _ = unsafe { std::ptr::read_volatile(at as *const u8) };
}

/// Calls itself until the stack runs out.
fn recurse(depth: u64) -> Result<u64, Box<dyn Error>> {
    let frame = std::hint::black_box([depth; 64]);
    if std::hint::black_box(depth) == u64::MAX {
        return Ok(frame[0]);
    }
    Ok(recurse(depth + 1)? + frame[1])
}
// ANCHOR_END: crash

/// Gives SIGCHLD its default action. A parent may have left it ignored,
/// which passes through `exec`; then the kernel reaps our children itself,
/// and waiting for one fails with ECHILD (Listing 12-4).
fn default_sigchld() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map(drop)
}

/// A directory only we can use, removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    /// `mkdtemp`: a new directory with mode 0700, under a name nobody can
    /// guess or take first.
    fn new() -> io::Result<PrivateDir> {
        use std::os::unix::ffi::OsStringExt;
        let template = std::env::temp_dir().join("sig-crash.XXXXXX");
        let mut bytes = template.into_os_string().into_vec();
        bytes.push(0);
        // SAFETY: `bytes` is a writable, NUL-terminated template, which
        // mkdtemp rewrites in place.
        let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if made.is_null() {
            return Err(io::Error::last_os_error());
        }
        bytes.pop();
        Ok(PrivateDir(OsString::from_vec(bytes).into()))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Reads `[--case NAME]`: `None` for the parent.
fn parse_args() -> Result<Option<String>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut case = None;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("case") => case = Some(args.value()?.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(case)
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
