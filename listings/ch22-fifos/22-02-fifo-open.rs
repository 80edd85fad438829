// ANCHOR: whole
// Listing 22-2: the rules for opening a FIFO, tried one after another on
// a FIFO in a private temporary directory, which the program removes when
// it ends. Only opens that cannot wait are tried: nonblocking ones, and a
// last `O_RDWR` one, which Linux never makes wait (POSIX leaves it
// undefined). A blocking open of one end alone waits for the other side,
// as Listing 22-1 shows.
//
// SIGPIPE stays ignored, and the output is written with `writeln!`: if
// nobody reads it any more, the error ends the program through `main`,
// and the directory is still removed on the way.

use std::error::Error;
use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::{mkdtemp, mkfifo, read, write};

const USAGE: &str = "usage: fifo-open";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("fifo-open: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: run
fn run() -> Result<(), Box<dyn Error>> {
    parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let out = &mut io::stdout();
    let dir = PrivateDir::new()?;
    let fifo = dir.0.join("fifo");
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR)?;
    writeln!(out, "A FIFO at {}", escaped(&fifo))?;

    let nonblocking = OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let write_only = OFlag::O_WRONLY | nonblocking;
    let read_only = OFlag::O_RDONLY | nonblocking;
    try_open(out, &fifo, write_only, "O_WRONLY | O_NONBLOCK, no reader")?;
    let reader =
        try_open(out, &fifo, read_only, "O_RDONLY | O_NONBLOCK, no writer")?
            .ok_or("cannot open it for reading")?;
    try_read(out, &reader, "no writer has opened it yet")?;
    let writer =
        try_open(out, &fifo, write_only, "O_WRONLY | O_NONBLOCK, a reader")?
            .ok_or("cannot open it for writing")?;
    try_read(out, &reader, "a writer, nothing written")?;
    write(&writer, b"Spam")?;
    try_read(out, &reader, "after a write of 4 bytes")?;
    drop(writer);
    try_read(out, &reader, "after the writer closed it")?;
    drop(reader);
    let both = OFlag::O_RDWR | OFlag::O_CLOEXEC; // Blocking, even.
    try_open(out, &fifo, both, "O_RDWR, nobody else (undefined by POSIX)")?;
    Ok(()) // Dropping `dir` removes the directory and the FIFO.
}

/// Opens `fifo` with `flags`, and says what happened. No descriptor left
/// to open it with is no rule of FIFOs: that ends the program instead.
fn try_open(
    out: &mut impl Write,
    fifo: &Path,
    flags: OFlag,
    what: &str,
) -> io::Result<Option<OwnedFd>> {
    match open(fifo, flags, Mode::empty()) {
        Ok(fd) => {
            writeln!(out, "open {what}: opened")?;
            Ok(Some(fd))
        }
        Err(err @ (Errno::EMFILE | Errno::ENFILE)) => {
            let full = match err {
                Errno::EMFILE => "our descriptor table is full",
                _ => "the system's table of open files is full",
            };
            let step = format!("cannot open the FIFO ({what})");
            Err(io::Error::other(format!("{step}: {full}: {err}")))
        }
        Err(err) => {
            writeln!(out, "open {what}: {err}")?;
            Ok(None)
        }
    }
}

/// Reads from the nonblocking read end, and says what happened.
fn try_read(
    out: &mut impl Write,
    reader: &OwnedFd,
    when: &str,
) -> io::Result<()> {
    let mut buf = [0; 64];
    match read(reader, &mut buf) {
        Ok(0) => writeln!(out, "read, {when}: 0 bytes, the end of the stream"),
        Ok(n) => writeln!(out, "read, {when}: {n} bytes"),
        Err(err) => writeln!(out, "read, {when}: {err}"),
    }
}
// ANCHOR_END: run

/// A directory only we can enter, removed with all it holds when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> Result<PrivateDir, String> {
        let base = std::env::temp_dir();
        match mkdtemp(&base.join("fifo-open.XXXXXX")) {
            Ok(dir) => Ok(PrivateDir(dir)),
            Err(err) => {
                let base = escaped(&base);
                Err(format!("cannot make a directory in {base}: {err}"))
            }
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

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
