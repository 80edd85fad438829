// ANCHOR: whole
// Listing 22-1: Lutz's `pipefifo.py`, ported to Rust: two unrelated
// processes talk through a named pipe. The reader creates the FIFO, in a
// private temporary directory unless `--fifo PATH` names one, prints its
// path, and prints every line a writer sends; it removes what it created
// when it ends, by the end of the stream, an error or a signal. The
// writer, given that path, sends `Spam 000` to `Spam 004` over and over,
// sleeping 0 to 4 seconds before each, as Listing 4-1's child does.
//
// `--count N` stops either side after N messages. `--no-wait` makes the
// writer fail at once if no reader has the FIFO open.
//
// The writer dies of SIGPIPE, like a filter, when nobody reads. The
// reader keeps SIGPIPE ignored and writes with `writeln!`: if its own
// output goes away, it leaves through `main`, and removes the FIFO.

use std::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigHandler, SigSet, Signal, raise, signal};
use nix::sys::stat::Mode;
use nix::unistd::{geteuid, getpid, mkdtemp, mkfifo};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: fifo-spam reader [--fifo PATH] [--count N] \
                     | writer PATH [--count N] [--no-wait]";
/// The longest line the reader takes, its newline included: `PIPE_BUF`
/// on Linux, the most that one writer among several can put in whole.
const MAX_LINE: u64 = 4096;

enum Role {
    Reader { fifo: Option<PathBuf> },
    Writer { fifo: PathBuf, no_wait: bool },
}

// ANCHOR: main
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if ENDING.load(Ordering::SeqCst) => {
            // A signal is ending us, and its thread removed the FIFO under
            // our feet: whatever failed here, let the signal finish.
            loop {
                thread::park();
            }
        }
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // One `write` for the whole line, so that writers sharing a
            // terminal do not mix their reports; and not `eprintln!`, which
            // panics if stderr is a closed pipe.
            let line = format!("fifo-spam: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}
// ANCHOR_END: main

fn run() -> Result<(), Box<dyn Error>> {
    let (mode, count) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    match mode {
        Role::Reader { fifo } => reader(fifo, count),
        Role::Writer { fifo, no_wait } => {
            restore_sigpipe()?;
            writer(&fifo, count, no_wait)
        }
    }
}

// ANCHOR: reader
fn reader(
    fifo: Option<PathBuf>,
    count: Option<usize>,
) -> Result<(), Box<dyn Error>> {
    // Caught before anything is made, so that a signal that comes while
    // we make the directory and the FIFO still removes them.
    // Blocked while they are registered, so that none is lost (Chapter 6).
    let ends = end_signals()?;
    block(&ends)?;
    let signals = Signals::new(&ends)
        .map_err(|err| format!("cannot watch for signals: {err}"))?;
    unblock(&ends)?;
    let made = Made::create(fifo)?;
    remove_on_signal(signals, made.0.clone())
        .map_err(|err| format!("cannot start a thread: {err}"))?;
    let path = &made.0.fifo;
    let mut out = io::stdout();
    let pid = getpid();
    writeln!(out, "Waiting for a writer on {} (pid {pid})", escaped(path))?;
    let first = fifo_at(path)?;
    // Blocks until a writer opens the FIFO too.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|err| not_opened(path, &err))?;
    check_ours_alone(&file, path, &first)?;
    let mut fifo = BufReader::new(file);
    let mut line = Vec::new();
    for _ in 0..count.unwrap_or(usize::MAX) {
        line.clear();
        // ANCHOR: capped
        // At most MAX_LINE bytes: a writer that never sends a newline must
        // not make us hold all it sends.
        let n = (&mut fifo).take(MAX_LINE).read_until(b'\n', &mut line)?;
        let text = match line.strip_suffix(b"\n") {
            _ if n == 0 => break, // The end of the stream.
            // "\r\n" too, as `lines()` would.
            Some(text) => text.strip_suffix(b"\r").unwrap_or(text),
            // MAX_LINE bytes and no newline: a longer line, unless the
            // stream ends right here (which waits for a byte or the end,
            // as the next line's read would).
            None if n as u64 == MAX_LINE && !fifo.fill_buf()?.is_empty() => {
                let e = format!("a line longer than {MAX_LINE} bytes, refused");
                return Err(e.into());
            }
            None => &line, // The last line, without its newline.
        };
        // ANCHOR_END: capped
        // Escaped: a control character printed raw, a "\r" or an escape
        // sequence, would act on the terminal instead of showing. A byte
        // that is not UTF-8 shows as Rust writes a byte, `\xff`, and the
        // reader goes on.
        let text: String = text
            .utf8_chunks()
            .map(|c| {
                let (valid, bad) = (c.valid(), c.invalid());
                format!("{}{}", valid.escape_debug(), bad.escape_ascii())
            })
            .collect();
        writeln!(out, "Parent {pid} got \"{text}\" at {}", unix_time())?;
    }
    if count.is_none() {
        writeln!(out, "End of stream: no writer has the FIFO open")?;
    }
    Ok(()) // Dropping `made`, here or on an error, removes the FIFO.
}
// ANCHOR_END: reader

// ANCHOR: made
/// What the reader created: the FIFO, unless it existed already, and the
/// private directory it made for it, if any.
#[derive(Clone)]
struct Created {
    fifo: PathBuf,
    created_fifo: bool,
    dir: Option<PathBuf>,
}

impl Created {
    /// Removes what we created; safe to call more than once.
    fn remove(&self) {
        if self.created_fifo {
            let _ = fs::remove_file(&self.fifo);
        }
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Removes what it holds when dropped: at the end of `reader`, whether it
/// returns normally or with an error.
struct Made(Created);

impl Made {
    fn create(fifo: Option<PathBuf>) -> Result<Made, Box<dyn Error>> {
        let (fifo, dir) = match fifo {
            Some(fifo) => (fifo, None),
            None => {
                // A directory only we can enter (mode 0700), with a name
                // nobody can guess or take first.
                let base = std::env::temp_dir();
                let dir =
                    mkdtemp(&base.join("fifo-spam.XXXXXX")).map_err(|err| {
                        let base = escaped(&base);
                        format!("cannot make a directory in {base}: {err}")
                    })?;
                (dir.join("fifo"), Some(dir))
            }
        };
        // From here on, dropping `made` removes the directory.
        let mut made = Made(Created {
            fifo,
            created_fifo: false,
            dir,
        });
        // Read and write for us only. An existing FIFO at a path we were
        // given is used as it is, and left in place afterwards.
        match mkfifo(&made.0.fifo, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(()) => made.0.created_fifo = true,
            Err(Errno::EEXIST) if made.0.dir.is_none() => {}
            Err(err) => {
                let fifo = escaped(&made.0.fifo);
                return Err(format!("{fifo}: {err}").into());
            }
        }
        Ok(made)
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        self.0.remove();
    }
}

/// SIGTERM, and SIGINT and SIGHUP unless the parent left them ignored:
/// SIGHUP under `nohup`, SIGINT in a job that a script starts with `&`.
/// Ignoring those was the user's choice, and signal-hook would replace the
/// "ignore" with its handler, and die of a signal meant for others.
/// SIGTERM is taken even if ignored: `kill` addresses it to us.
fn end_signals() -> io::Result<Vec<i32>> {
    let mut signals = vec![SIGTERM];
    for number in [SIGINT, SIGHUP] {
        if !is_ignored(number)? {
            signals.push(number);
        }
    }
    Ok(signals)
}

/// Set by the signal thread before it removes the FIFO: from then on, the
/// signal ends the process, whatever the main thread does.
static ENDING: AtomicBool = AtomicBool::new(false);

/// On the first of `signals`, removes the FIFO, then ends the process by
/// that signal's default action, as if we had never caught it: a shell
/// that started us sees that we were interrupted. The thread may be
/// refused (`ulimit -u` counts threads): an error, where `thread::spawn`
/// would panic.
fn remove_on_signal(mut signals: Signals, created: Created) -> io::Result<()> {
    thread::Builder::new().spawn(move || {
        if let Some(signal) = signals.forever().next() {
            ENDING.store(true, Ordering::SeqCst);
            created.remove();
            die_of(signal);
        }
    })?;
    Ok(())
}

/// Dies of `signal`, by its default action, from any thread. The init of
/// a PID namespace (a container's PID 1) cannot: the kernel drops every
/// signal whose action for it is the default, even one it raises itself,
/// where signal-hook's `emulate_default_handler` would go on to `abort`
/// and end in a SIGSEGV (Chapter 12). There it exits with 128 + n, the
/// status a shell would report.
fn die_of(signal: i32) -> ! {
    if let Ok(signal) = Signal::try_from(signal) {
        // SAFETY: the default action runs no code of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        let _ = raise(signal); // The end, unless we are an init.
    }
    process::exit(128 + signal)
}
// ANCHOR_END: made

/// Blocks `numbers` while signal-hook registers them: it installs its
/// handler in the kernel before it records what the handler is to do, and
/// a signal in between would run it for nothing, the default action
/// already gone. Blocked, the signal waits, pending, for `unblock`.
fn block(numbers: &[i32]) -> io::Result<()> {
    let mut set = SigSet::empty();
    for &number in numbers {
        set.add(Signal::try_from(number)?);
    }
    Ok(set.thread_block()?)
}

/// Unblocks `numbers`, once their handlers are in place. A parent's mask
/// passes through `exec`, and a blocked signal reaches neither a handler
/// nor its default action. Not before the handlers: a signal that came
/// while blocked is pending, and is delivered the moment it is unblocked.
fn unblock(numbers: &[i32]) -> io::Result<()> {
    let mut set = SigSet::empty();
    for &number in numbers {
        set.add(Signal::try_from(number)?);
    }
    Ok(set.thread_unblock()?)
}

/// Whether `signal` is ignored: inherited so from the parent, through
/// `exec`. A null new action makes `sigaction` only report the current one.
fn is_ignored(signal: i32) -> io::Result<bool> {
    let mut current = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: `current` is writable and as large as a `sigaction`; with a
    // null new action nothing is changed.
    let done = unsafe {
        nix::libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr())
    };
    nix::errno::Errno::result(done)?;
    // SAFETY: `sigaction` succeeded, and filled it in.
    let current = unsafe { current.assume_init() };
    Ok(current.sa_sigaction == nix::libc::SIG_IGN)
}

// ANCHOR: writer
fn writer(
    path: &Path,
    count: Option<usize>,
    no_wait: bool,
) -> Result<(), Box<dyn Error>> {
    let first = fifo_at(path)?;
    let flags = if no_wait { nix::libc::O_NONBLOCK } else { 0 };
    // Without O_NONBLOCK this blocks until a reader opens the FIFO; with
    // it, it fails at once with ENXIO if none has.
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(flags | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            // The reader says "Waiting" just before its `open`: say what
            // to do, for a writer started on that line.
            Some(nix::libc::ENXIO) if no_wait && is_fifo(path) => format!(
                "{}: no reader has it open yet (ENXIO); start the reader \
                 first and try again once it waits in open, or leave out \
                 --no-wait to wait for it",
                escaped(path)
            ),
            _ => not_opened(path, &err),
        })?;
    check_ours_alone(&file, path, &first)?;
    if no_wait {
        // Blocking writes from here on: wait while the pipe is full.
        let flags = OFlag::from_bits_retain(fcntl(&file, FcntlArg::F_GETFL)?);
        fcntl(&file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    }
    writeln!(
        io::stdout(),
        "Writing to {} (pid {})",
        escaped(path),
        getpid()
    )?;
    let mut fifo = file;
    let mut zzz = 0;
    for _ in 0..count.unwrap_or(usize::MAX) {
        thread::sleep(Duration::from_secs(zzz));
        // One `write` per line, far below PIPE_BUF: several writers may
        // share the FIFO without mixing their lines. If the reader has
        // gone, this write raises SIGPIPE, and the writer ends with it.
        fifo.write_all(format!("Spam {zzz:03}\n").as_bytes())?;
        zzz = (zzz + 1) % 5;
    }
    Ok(())
}

/// Refuses what is not a FIFO before it is opened: opening a device can
/// act at once (`/dev/ptmx` makes a pseudo-terminal, a watchdog starts
/// counting). Follows a symbolic link, as `open` will.
fn fifo_at(path: &Path) -> Result<fs::Metadata, Box<dyn Error>> {
    let meta = fs::metadata(path)
        .map_err(|err| format!("{}: {err}", escaped(path)))?;
    if !meta.file_type().is_fifo() {
        return Err(format!("{} is not a FIFO", escaped(path)).into());
    }
    Ok(meta)
}

/// Refuses, before a byte goes through it, a file that is not the FIFO
/// `fifo_at` saw (the path may have changed in between), or a FIFO that
/// someone else could open: another user's, or ours with a mode that lets
/// others in. They could read what is sent, or send lines of their own.
/// Checked on the file we opened, not on a path that may change.
fn check_ours_alone(
    file: &File,
    path: &Path,
    first: &fs::Metadata,
) -> Result<(), Box<dyn Error>> {
    let meta = file.metadata()?;
    if (meta.dev(), meta.ino()) != (first.dev(), first.ino()) {
        let why = format!("{} changed while we opened it", escaped(path));
        return Err(why.into());
    }
    let mode = meta.mode() & 0o777;
    if meta.uid() != geteuid().as_raw() || mode & 0o077 != 0 {
        let (uid, path) = (meta.uid(), escaped(path));
        let why =
            format!("{path} is not ours alone (owner {uid}, mode {mode:o})");
        return Err(why.into());
    }
    Ok(())
}

/// The error of an `open` of `path`, naming it. On Linux a Unix socket
/// fails every `open` with ENXIO, as a device with no driver does: that
/// path is not a FIFO, and the check above never gets to say so.
fn not_opened(path: &Path, err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(nix::libc::ENXIO) => format!("{} is not a FIFO", escaped(path)),
        _ => format!("{}: {err}", escaped(path)),
    }
}

/// Whether `path` is a FIFO, asked once a nonblocking `open` has failed
/// with ENXIO: a FIFO with no reader does that, and so does a socket.
fn is_fifo(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.file_type().is_fifo())
}
// ANCHOR_END: writer

/// `path` as a message shows it: escaped as `str::escape_debug` escapes
/// (a file name on Linux may hold any byte but `/` and NUL), so that a
/// newline in it cannot start a line of its own.
fn escaped(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Seconds since the Unix epoch, like Python's `time.time()`.
fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |t| t.as_secs_f64())
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

/// Reads `reader [--fifo PATH] [--count N]` or `writer PATH [--count N]
/// [--no-wait]` from the command line.
fn parse_args() -> Result<(Role, Option<usize>), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut mode, mut path, mut fifo, mut count) = (None, None, None, None);
    let mut no_wait = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Long("fifo") => fifo = Some(PathBuf::from(args.value()?)),
            Long("no-wait") => no_wait = true,
            Value(value) if mode.is_none() => mode = Some(value.string()?),
            Value(value) if path.is_none() => path = Some(PathBuf::from(value)),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    let mode = match (mode.as_deref(), path, fifo) {
        (Some("reader"), None, fifo) if !no_wait => Role::Reader { fifo },
        (Some("writer"), Some(fifo), None) => Role::Writer { fifo, no_wait },
        (Some("reader"), _, _) => {
            return Err("a reader takes only --fifo PATH and --count".into());
        }
        (Some("writer"), None, None) => {
            return Err("a writer needs the FIFO's path".into());
        }
        (Some("writer"), _, _) => {
            return Err("a writer takes the FIFO's path, not --fifo".into());
        }
        (Some(other), _, _) => {
            return Err(
                format!("unknown mode '{}'", other.escape_debug()).into()
            );
        }
        (None, _, _) => return Err("reader or writer?".into()),
    };
    Ok((mode, count))
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
