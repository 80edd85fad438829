//! Runs the book's listings as real processes, for the chapter tests.
//!
//! Every listing starts in a process group of its own, and the whole group
//! is killed when its [`Listing`] is dropped, so a forked child never
//! outlives a test, even a failing one. Output is read by helper threads,
//! so every wait has a deadline: a test never sleeps to synchronise, it
//! waits for the line that says the listing is ready.

// Each chapter's test file uses its own part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use regex::Regex;
use wait_timeout::ChildExt;

/// The path of a listing's binary, by the name readers type after `--bin`.
#[macro_export]
macro_rules! bin {
    ($name:literal) => {
        env!(concat!("CARGO_BIN_EXE_", $name))
    };
}

/// How long any single wait may take before the test fails. Generous,
/// because the suite must pass on a loaded machine; a healthy run never
/// comes near it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running listing.
pub struct Listing {
    child: Child,
    lines: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stdout line read so far, in order.
    transcript: Vec<String>,
}

/// What a listing printed, and how it ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Listing {
    /// Starts `bin` with `args` in a new process group, stdin closed.
    pub fn start(bin: &str, args: &[&str]) -> Listing {
        Listing::spawn(Command::new(bin).args(args), Stdio::piped())
    }

    /// Starts `command` in a new process group, stdin closed, stderr read
    /// by the test, stdout as given: `Stdio::piped()` for the test to read
    /// it line by line, or anything else, such as a pipe nobody reads.
    pub fn spawn(command: &mut Command, stdout: Stdio) -> Listing {
        // SAFETY: `close_range` is a system call, async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                // A listing starts with 0, 1 and 2 only, whatever
                // descriptors the test runner inherited without
                // close-on-exec: what /proc/PID/fd shows must not depend
                // on who ran `cargo test`. CLOEXEC rather than closing
                // keeps std's own pipe that reports a failed exec.
                use nix::libc::{CLOSE_RANGE_CLOEXEC, c_int, close_range};
                close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC as c_int);
                Ok(())
            })
        };
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));

        // Without a pipe to read, the channel is closed from the start:
        // to `next_line`, stdout has ended.
        let (tx, lines) = channel();
        if let Some(stdout) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let (tx, stderr) = channel();
        let mut pipe = child.stderr.take().expect("stderr is piped");
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        Listing {
            child,
            lines,
            stderr,
            transcript: Vec::new(),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `signal` to the listing's own process (not its group).
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("the listing is alive");
    }

    /// The next line of stdout; fails the test after `PATIENCE`.
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                self.transcript.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "no line within {PATIENCE:?}; so far: {:#?}",
                self.transcript
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait_timeout(PATIENCE);
                let stderr = self.take_stderr();
                panic!(
                    "stdout closed early ({status:?}); so far: {:#?}\n\
                     stderr: {stderr}",
                    self.transcript
                )
            }
        }
    }

    /// The next line of stdout, or `None` if the listing closed stdout
    /// (usually by exiting) instead.
    pub fn next_line_or_exit(&mut self) -> Option<String> {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                self.transcript.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no line within {PATIENCE:?}")
            }
        }
    }

    /// True if no line comes within `time` and stdout stays open: for a
    /// listing that must be waiting. A bound, not a way to synchronise: a
    /// late line on a loaded machine can only make this pass wrongly,
    /// never fail wrongly.
    pub fn no_line_within(&mut self, time: Duration) -> bool {
        match self.lines.recv_timeout(time) {
            Ok(line) => {
                self.transcript.push(line);
                false
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// The next line, which must match `pattern`; returns its captures.
    pub fn expect(&mut self, pattern: &str) -> Vec<String> {
        let line = self.next_line();
        let re = Regex::new(&format!("^{pattern}$")).expect("a valid regex");
        let caps = re
            .captures(&line)
            .unwrap_or_else(|| panic!("expected /{pattern}/, got {line:?}"));
        caps.iter()
            .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
            .collect()
    }

    /// Waits for the listing to exit and for its stdout to close, then
    /// returns everything it printed.
    pub fn finish(mut self) -> Finished {
        let status = self
            .child
            .wait_timeout(PATIENCE)
            .expect("wait for the listing")
            .unwrap_or_else(|| {
                panic!(
                    "still running after {PATIENCE:?}: {:#?}",
                    self.transcript
                )
            });
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.transcript.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the listing exited but its stdout stayed open")
                }
            }
        }
        Finished {
            status,
            stdout: std::mem::take(&mut self.transcript),
            stderr: self.take_stderr(),
        }
    }

    fn take_stderr(&self) -> String {
        self.stderr
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| "(stderr still open or already read)".into())
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        // Kill the whole group, forked children included; it may already
        // be gone, which is fine.
        let _ = killpg(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Runs a listing that ends by itself and returns what it printed.
pub fn run(bin: &str, args: &[&str]) -> Finished {
    Listing::start(bin, args).finish()
}

/// Asserts that bad arguments get one line on stderr, naming the program,
/// nothing on stdout, and exit status 1: no panic, no usage essay.
pub fn assert_rejects(bin: &str, args: &[&str], complaint: &str) {
    let out = run(bin, args);
    let name = Path::new(bin).file_name().unwrap().to_string_lossy();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name} {args:?}: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error, got {:?}", out.stderr);
    assert!(
        lines[0].starts_with(&format!("{name}: "))
            && lines[0].contains(complaint),
        "expected '{name}: …{complaint}…', got {:?}",
        lines[0]
    );
}

/// The pids of the processes whose parent is `pid`, read from /proc.
pub fn children_of(pid: Pid) -> Vec<Pid> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The fields after the command name, which is in parentheses and
        // may contain spaces: state, then the parent's pid.
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid = tail.split(' ').nth(1).and_then(|p| p.parse().ok());
        let own = head.split(' ').next().and_then(|p| p.parse().ok());
        if let (Some(ppid), Some(own)) = (ppid, own)
            && Pid::from_raw(ppid) == pid
        {
            children.push(Pid::from_raw(own));
        }
    }
    children
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in
/// parentheses and may contain spaces): state, ppid, pgrp, ... `None` once
/// the process is gone.
fn stat_fields(pid: Pid) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, tail) = stat.rsplit_once(") ")?;
    Some(tail.split(' ').map(String::from).collect())
}

/// The state letter of a process (`R`, `S`, `T` for stopped, `Z` for a
/// zombie), or `None` if it is gone.
pub fn state_of(pid: Pid) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Waits, up to `PATIENCE`, until `ready` holds; fails the test with
/// `what` otherwise. For conditions only /proc can tell: the state of a
/// process, its pending signals. It polls; it never sleeps for longer
/// than the next look.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// True if no live process is in process group `pgid`: all gone, or
/// zombies waiting for a parent to reap them.
pub fn group_is_gone(pgid: Pid) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().all(|entry| {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok())
        else {
            return true;
        };
        match stat_fields(Pid::from_raw(pid)) {
            Some(fields) => fields[0] == "Z" || fields[2] != pgid.to_string(),
            None => true,
        }
    })
}

/// The signals pending for a process as a whole (`ShdPnd` in
/// /proc/<pid>/status), as signal numbers.
pub fn pending_signals(pid: Pid) -> Vec<i32> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("ShdPnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    (1..=64).filter(|n| mask & (1 << (n - 1)) != 0).collect()
}

/// The path of any listing's binary, by name: they all sit together.
pub fn bin_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_alarm")).with_file_name(name)
}

/// The names of every listing, from the `[[bin]]` tables of
/// listings/Cargo.toml.
pub fn listing_names() -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let text = fs::read_to_string(&manifest).expect("listings/Cargo.toml");
    let manifest: toml::Table = text.parse().expect("valid TOML");
    let bins = manifest["bin"].as_array().expect("[[bin]] tables");
    bins.iter()
        .map(|bin| bin["name"].as_str().expect("a name").to_string())
        .collect()
}

/// Whether `tool` is installed. On a reader's machine a test that needs a
/// missing tool is skipped, with a note; in CI (`CI` set) it fails, since
/// `.ci/run` installs every tool.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is missing in CI");
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

/// Runs a shell command line with `bash -c`, with a deadline, in a
/// process group of its own that dies with it, and returns its output
/// lines. For the commands the book tells readers to type.
pub fn shell(command: &str) -> Vec<String> {
    let out = Listing::start("bash", &["-c", command]).finish();
    assert!(out.status.success(), "`{command}` failed: {}", out.stderr);
    out.stdout
}

// ----------------------------------------------------------------------------
// Outputs shown in the book.

/// True when the outputs in the book are to be rewritten from real runs:
/// `BLESS=1 cargo test -p listings`. Read the diff before committing it.
pub fn blessing() -> bool {
    std::env::var_os("BLESS").is_some()
}

/// Compares a real run with the output file the book shows, or rewrites
/// that file when blessing.
///
/// `file` is relative to `listings/`. Its first line is the command that
/// produced it, built here from `bin` and `args`, which must be the
/// arguments the run used (a check run may add an address after them).
pub fn assert_matches_book(
    file: &str,
    bin: &str,
    args: &[&str],
    stdout: &[String],
) {
    assert_session_matches_book(file, &[(cargo_run(bin, args), stdout)]);
}

/// The command line a reader types to run `bin` with `args`.
pub fn cargo_run(bin: &str, args: &[&str]) -> String {
    let mut command = format!("cargo run -p listings --bin {bin}");
    if !args.is_empty() {
        command = format!("{command} -- {}", args.join(" "));
    }
    command
}

/// Like [`assert_matches_book`], for a session of several commands, each
/// shown as `$ command` followed by what it printed. The commands are
/// the ones the test really ran, as a reader would type them.
///
/// Only what truly varies between runs is normalised, on both sides:
/// clock times, pids, port numbers, inode numbers, the owner and date
/// columns of `ls -l`.
pub fn assert_session_matches_book<S: AsRef<str>>(
    file: &str,
    session: &[(String, &[S])],
) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let mut actual = String::new();
    for (command, output) in session {
        actual.push_str(&format!("$ {command}\n"));
        for line in *output {
            actual.push_str(line.as_ref());
            actual.push('\n');
        }
    }
    if blessing() {
        fs::write(&path, &actual).expect("write the output file");
        return;
    }
    let shown = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("{file}: {err}; create it with BLESS=1 cargo test -p listings")
    });
    let (want, got) = (normalise(&shown), normalise(&actual));
    assert!(
        want == got,
        "{file} no longer matches a real run.\n--- in the book (normalised)\n{want}\
         --- this run (normalised)\n{got}\
         If the new output is right: BLESS=1 cargo test -p listings"
    );
}

/// Replaces what differs from run to run with placeholders.
fn normalise(text: &str) -> String {
    let rules = [
        // Python's time.asctime(): Wed Nov 25 16:44:09 2026
        (
            r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\b",
            "<time>",
        ),
        // Python's time.time(): 1795627555.2590373
        (r"\b\d{9,11}\.\d+\b", "<time>"),
        (r"\b(pid|Parent|Child) \d+\b", "$1 <pid>"),
        (r"\b127\.0\.0\.1:\d+\b", "127.0.0.1:<port>"),
        (r"\[::1\]:\d+\b", "[::1]:<port>"),
        // `pipe:[38187]`, `socket:[38190]` in /proc/PID/fd
        (r"\b(pipe|socket):\[\d+\]", "$1:[<inode>]"),
        // `ls -l`: permissions, links, owner, group, size, date
        (
            r"(?m)^([-lrwxs]{10}) +\d+ +\S+ +\S+ +\d+ +\w{3} +\d+ +[\d:]+ ",
            "$1 <owner and date> ",
        ),
        (r"/proc/\d+/", "/proc/<pid>/"),
        (r"([sd]port = :)\d+", "$1<port>"),
        (r"\b(pgrep -l -P|kill -\w+|kill) \d+\b", "$1 <pid>"),
        // `pgrep -l`: pid and name
        (r"(?m)^\d+ ([\w-]+)$", "<pid> $1"),
        // What a listing measured and marks as such: `0.30 s (measured)`.
        (r"\b\d+(\.\d+)?( s)? \(measured\)", "<measured>"),
        // A user id: 0 for root, something else in a reader's shell.
        (r"\buid \d+\b", "uid <uid>"),
        // The pid of `/bin/kill -q 42 -s RTMIN 9642`.
        (r"\b(kill .*-s \S+) \d+\b", "$1 <pid>"),
        // The port of `nc -N 127.0.0.1 41129`.
        (r"\b(nc(?: -\w+)* \S+) \d+\b", "$1 <port>"),
        // A private directory made by mkdtemp: `/tmp/sig-daemon.Ab12Cd`.
        (r"\S*/([\w-]+)\.[A-Za-z0-9]{6}/", "<tmp>/$1.<random>/"),
    ];
    // Columns padded to the width of what varies: `ss` output.
    let mut text = Regex::new(" +")
        .unwrap()
        .replace_all(text, " ")
        .into_owned();
    for (pattern, placeholder) in rules {
        let re = Regex::new(pattern).expect("a valid regex");
        text = re.replace_all(&text, placeholder).into_owned();
    }
    text
}

impl Listing {
    /// Every stdout line read so far, for a failing test to show.
    pub fn transcript(&self) -> &[String] {
        &self.transcript
    }
}
