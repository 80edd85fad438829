// ANCHOR: whole
// Listing 12-1: a temporary file that is removed by `Drop`, and four ways
// to end on SIGTERM or SIGINT (`--end`):
//
//   default   no handler: the signal's default action kills the process
//   exit      a handler sets a flag, and the loop calls process::exit
//   return    the loop returns, `main` returns an ExitCode of 128+n
//   reraise   the loop returns, and once everything is dropped, `main`
//             dies of the signal after all
//
// The file is `sig-cleanup.tmp` in `--dir DIR` (default: the current
// directory). Only the last two remove it.

use std::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{self, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::getpid;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::{flag, low_level};

const USAGE: &str =
    "usage: sig-cleanup --end default|exit|return|reraise [--dir DIR]";

#[derive(Clone, Copy, PartialEq)]
enum End {
    Default,
    Exit,
    Return,
    Reraise,
}

// ANCHOR: main
fn main() -> ExitCode {
    match run() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some((signal, End::Reraise))) => {
            // Every value of `run` has been dropped by now: the file is
            // gone. Tell the parent the truth: the signal ended us.
            let _ = io::stdout().flush();
            let _ = low_level::emulate_default_handler(signal);
            ExitCode::FAILURE // Only if the signal did not end us.
        }
        Ok(Some((signal, _))) => ExitCode::from(128 + signal as u8),
        // Nobody reads our output: we left through here, so Drop ran.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(io::stderr(), "sig-cleanup: {err}");
            ExitCode::FAILURE
        }
    }
}
// ANCHOR_END: main

// ANCHOR: run
/// A file that removes itself when dropped.
struct TempFile {
    path: PathBuf,
    _file: File,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if fs::remove_file(&self.path).is_ok() {
            let path = self.path.display();
            let _ = writeln!(io::stdout(), "Drop: removed {path}");
        }
    }
}

/// Returns the signal that stopped it, and how to end.
fn run() -> Result<Option<(i32, End)>, Box<dyn Error>> {
    // SIGPIPE stays ignored: a closed output is an error that returns
    // through `main`, so that Drop runs on the way.
    let (end, dir) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let stop = Arc::new(AtomicUsize::new(0));
    if end != End::Default {
        for number in [SIGTERM, SIGINT] {
            flag::register_usize(number, Arc::clone(&stop), number as usize)?;
        }
    }
    let path = dir.join("sig-cleanup.tmp");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let temp = TempFile { path, _file: file };
    let mut out = io::stdout();
    let pid = getpid();
    let shown = temp.path.display();
    writeln!(out, "Created {shown} as pid {pid}; try: kill {pid}")?;

    while stop.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(50));
    }
    let number = stop.load(Ordering::SeqCst) as i32;
    let name = Signal::try_from(number)?;
    match end {
        End::Exit => {
            writeln!(out, "Got {name}: process::exit(0)")?;
            process::exit(0); // Runs no destructor: the file stays.
        }
        _ => writeln!(out, "Got {name}: returning from run")?,
    }
    Ok(Some((number, end)))
}
// ANCHOR_END: run

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Reads `--end WAY [--dir DIR]` from the command line.
fn parse_args() -> Result<(End, PathBuf), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut end, mut dir) = (None, Path::new(".").to_path_buf());
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("end") => {
                end = Some(match args.value()?.string()?.as_str() {
                    "default" => End::Default,
                    "exit" => End::Exit,
                    "return" => End::Return,
                    "reraise" => End::Reraise,
                    other => {
                        return Err(format!("unknown end '{other}'").into());
                    }
                });
            }
            Long("dir") => dir = args.value()?.into(),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok((end.ok_or("which --end?")?, dir))
}
// ANCHOR_END: whole
