//! Runs the book's listings as real processes, for the chapter tests.
//!
//! Every listing starts in a process group of its own, and the whole group
//! is killed when its [`Listing`] is dropped, so a forked child never
//! outlives a test, even a failing one. Output is read by helper threads,
//! so every wait has a deadline: a test never sleeps to synchronise, it
//! waits for the line that says the listing is ready.
//!
//! When the test binary itself is killed (Ctrl-C, a CI timeout, SIGKILL),
//! no `Drop` runs. So every listing is also started with the parent-death
//! signal set to SIGKILL (Linux's `PR_SET_PDEATHSIG`): the kernel kills it
//! when its parent goes. Two things follow from how that works:
//!
//! - The "parent" is the *thread* that started the listing, not the test
//!   process. libtest runs each test on a thread of its own, so a listing
//!   dies at the latest when the test that started it ends, which is
//!   right; but a listing started from a helper thread would die when that
//!   thread ends. Start listings on the test's own thread, as every test
//!   here does; the threads of this module only read output.
//! - The signal reaches the listing process only, not the children it
//!   forks: a forked child gets its parent's death signal cleared, and its
//!   parent is the listing. The listings that fork see to that themselves
//!   (their children ask for the same signal when the listing dies);
//!   this module sees to the listing process. `harness.rs` tests it.

// Each chapter's test file uses its own part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::prctl;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpid, getppid};
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

    /// Starts `command` as [`Listing::start`] does: in a new process
    /// group, stdin closed, stderr read by this module, killed by the
    /// kernel if the calling thread dies first; stdout as given:
    /// `Stdio::piped()` for the test to read it line by line, or anything
    /// else, such as a pipe nobody reads.
    pub fn spawn(command: &mut Command, stdout: Stdio) -> Listing {
        command.process_group(0);
        Listing::spawn_as_is(command, stdout)
    }

    /// Starts `bin` as [`Listing::start`] does, but in a new session
    /// rather than only a new group: for a test whose outcome depends on
    /// the session, which must not be the one `cargo test` was started in
    /// (in a container, the first process may share it).
    pub fn start_in_new_session(bin: &str, args: &[&str]) -> Listing {
        let mut command = Command::new(bin);
        command.args(args);
        // SAFETY: runs between fork and exec; `setsid` is one
        // async-signal-safe system call, and its error is a raw errno,
        // built without allocating. It also makes a new process group,
        // which `spawn`'s `process_group(0)` would forbid (a group leader
        // cannot start a session), so it is not asked for.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                Ok(())
            });
        }
        Listing::spawn_as_is(&mut command, Stdio::piped())
    }

    fn spawn_as_is(command: &mut Command, stdout: Stdio) -> Listing {
        let program = command.get_program().to_string_lossy().into_owned();
        die_with_this_thread(command);
        only_standard_descriptors(command);
        default_signals(command);
        same_environment(command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {program}: {err}"));

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

/// Makes the child that `command` starts ask the kernel for SIGKILL when
/// its parent, the calling thread, dies (see the module's documentation).
fn die_with_this_thread(command: &mut Command) {
    // Taken before the fork: the child compares its parent with it.
    let parent = getpid();
    let set_death_signal = move || {
        prctl::set_pdeathsig(Signal::SIGKILL)?;
        // If the test process died between the fork and the line above,
        // no signal will come: the child has been handed to another
        // process already. Then it must not run at all. (The calling
        // thread alone cannot end meanwhile: `spawn` waits for the exec.)
        if getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed. It makes two system calls,
    // prctl and getppid, and builds its error from a raw errno, without
    // allocating; it locks nothing.
    unsafe {
        command.pre_exec(set_death_signal);
    }
}

/// Makes a listing start with descriptors 0, 1 and 2 only, whatever the
/// test runner inherited without close-on-exec: what /proc/PID/fd shows
/// must not depend on who ran `cargo test`. Marking them close-on-exec
/// rather than closing them keeps std's own pipe that reports a failed
/// exec.
fn only_standard_descriptors(command: &mut Command) {
    // SAFETY: runs between fork and exec; `close_range` is one system
    // call, async-signal-safe, and nothing allocates.
    unsafe {
        command.pre_exec(|| {
            use nix::libc::{CLOSE_RANGE_CLOEXEC, c_int, close_range};
            close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC as c_int);
            Ok(())
        });
    }
}

/// Makes a listing start with every signal at its default action and none
/// blocked, whatever the test runner inherited. A shell starts background
/// jobs with SIGINT and SIGQUIT ignored, `nohup` ignores SIGHUP, and both
/// pass through fork and exec: a test that sends Ctrl-C must not depend on
/// how `cargo test` was started.
fn default_signals(command: &mut Command) {
    // SAFETY: runs between fork and exec; `signal` (sigaction) and
    // `sigprocmask` are async-signal-safe system calls, and nothing
    // allocates. The signals glibc keeps for itself refuse with EINVAL,
    // which is ignored, as are SIGKILL and SIGSTOP, which cannot change.
    unsafe {
        command.pre_exec(|| {
            use nix::libc::{
                SIG_DFL, SIG_SETMASK, SIGRTMAX, sigemptyset, signal,
                sigprocmask, sigset_t,
            };
            for signo in 1..=SIGRTMAX() {
                signal(signo, SIG_DFL);
            }
            let mut none: sigset_t = std::mem::zeroed();
            sigemptyset(&mut none);
            sigprocmask(SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// What the environment of every listing and command holds, whoever ran
/// `cargo test`, unless the test sets the variable itself: the clock in
/// UTC (a time zone with summer time would make two local times five
/// seconds apart differ by an hour once a year), the C locale's formats
/// (`ls -l` writes dates in the reader's language otherwise), and no
/// terminal (no colours, no width).
pub const ENVIRONMENT: [(&str, Option<&str>); 6] = [
    ("TZ", Some("UTC")),
    ("LC_ALL", Some("C.UTF-8")),
    ("LANGUAGE", None),
    ("TERM", Some("dumb")),
    ("COLUMNS", None),
    ("LINES", None),
];

/// Gives `command` the [`ENVIRONMENT`], leaving alone what the test set.
fn same_environment(command: &mut Command) {
    let set: Vec<_> = command.get_envs().map(|(k, _)| k.to_owned()).collect();
    for (name, value) in ENVIRONMENT {
        if set.iter().any(|k| k == name) {
            continue;
        }
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
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
    assert_session_matches_book_masking(file, session, &[]);
}

/// What varies with the clock, matched in the text as printed: asctime
/// pads a day of the month below 10 with a space (`Sat Dec  5`), which the
/// collapsing of spaces below would otherwise turn into something no rule
/// recognises.
static CLOCK_RULES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
    compile(&[
        // Python's time.asctime(): `Wed Nov 25 16:44:09 2026`, `Sat Dec  5`
        (
            r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\b",
            "<time>",
        ),
        // Python's time.time() after "at": `at 1795627555.2590373`, and
        // `at 1795627555` in the one run in a billion that lands on a
        // whole second (Rust prints such an f64 without a fraction).
        (r"\bat \d{9,11}(?:\.\d+)?\b", "at <time>"),
    ])
});

fn compile(rules: &[(&str, &'static str)]) -> Vec<(Regex, &'static str)> {
    rules
        .iter()
        .map(|&(pattern, placeholder)| {
            (Regex::new(pattern).expect("a valid regex"), placeholder)
        })
        .collect()
}

/// What else differs from run to run, matched after runs of spaces have
/// been collapsed to one.
static RULES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
    compile(&[
        (r"\b(pid|Parent|Child) \d+\b", "$1 <pid>"),
        (r"\b127\.0\.0\.1:\d+\b", "127.0.0.1:<port>"),
        (r"\[::1\]:\d+\b", "[::1]:<port>"),
        (r"\blocalhost:\d+\b", "localhost:<port>"),
        // `pipe:[38187]`, `socket:[38190]` in /proc/PID/fd
        (r"\b(pipe|socket):\[\d+\]", "$1:[<inode>]"),
        // `ls -l`: permissions, links, owner, group, size, date
        (
            r"(?m)^([-bcdlps][-rwxsStT]{9}) +\d+ +\S+ +\S+ +\d+ +\w{3} +\d+ +[\d:]+ ",
            "$1 <owner and date> ",
        ),
        (r"/proc/\d+/", "/proc/<pid>/"),
        // Temporary directories made by the tests (tempfile's names),
        // and the private directory of unix-server (Listing 16-1).
        (r"\S*/\.tmp[0-9A-Za-z]{6}\b", "<tempdir>"),
        (r"\S*/unix-server-\d+-\d+\b", "<tmp>/unix-server-<pid>-<n>"),
        // Who connected to a Unix socket: the tests' user.
        (r"\(uid \d+\)", "(uid <uid>)"),
        // Datagrams that survived a full receive buffer (Listing 17-1)
        (r"\breceived \d+ of\b", "received <n> of"),
        // Calls counted by Listing 15-1
        (r"\b\d+ reads,", "<n> reads,"),
        // Measured durations: `after 1.00 s`, `44.1 ms`
        (r"\b\d+\.\d+ (s|ms)\b", "<duration> $1"),
        // Memory sizes in /proc/PID/status: `VmHWM:    2412 kB`
        (r"\b(Vm[A-Za-z]+):\s+\d+ kB", "$1: <size> kB"),
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
    ])
});

/// Replaces what differs from run to run with placeholders: first what
/// the clock decides, then, once runs of spaces are collapsed (columns
/// padded to the width of what varies, as in `ss` output), everything
/// else.
fn normalise(text: &str) -> String {
    static SPACES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(" +").expect("a valid regex"));
    let mut text = text.to_string();
    for (re, placeholder) in CLOCK_RULES.iter() {
        text = re.replace_all(&text, *placeholder).into_owned();
    }
    text = SPACES.replace_all(&text, " ").into_owned();
    for (re, placeholder) in RULES.iter() {
        text = re.replace_all(&text, *placeholder).into_owned();
    }
    text
}

// ----------------------------------------------------------------------------
// Added with Part IV (pipes and processes).

/// Like [`assert_session_matches_book`], with extra rules `(pattern,
/// placeholder)` for what varies in this one output only, such as a count
/// the kernel's scheduling decides or the random name of a temporary
/// directory. They apply to both sides, before the usual rules.
pub fn assert_session_matches_book_masking<S: AsRef<str>>(
    file: &str,
    session: &[(String, &[S])],
    masks: &[(&str, &str)],
) {
    let mask = |text: &str| {
        masks
            .iter()
            .fold(text.to_string(), |text, (pattern, placeholder)| {
                let re = Regex::new(pattern).expect("a valid regex");
                re.replace_all(&text, *placeholder).into_owned()
            })
    };
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
        record_environment();
        return;
    }
    let shown = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("{file}: {err}; create it with BLESS=1 cargo test -p listings")
    });
    let want = normalise(&mask(&shown));
    let got = normalise(&mask(&actual));
    assert!(
        want == got,
        "{file} no longer matches a real run.\n--- in the book (normalised)\n{want}\
         --- this run (normalised)\n{got}{}\
         If the new output is right: BLESS=1 cargo test -p listings",
        kernel_note()
    );
}

/// The open descriptors of a process and what each names (`pipe:[123]`,
/// `/dev/null`), from /proc/<pid>/fd, in order; empty once it is gone.
pub fn fds_of(pid: Pid) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<(u32, String)> = entries
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

/// The parent of a process, or `None` once it is gone.
pub fn ppid_of(pid: Pid) -> Option<Pid> {
    stat_fields(pid)?.get(1)?.parse().ok().map(Pid::from_raw)
}

/// The process group of a process, or `None` once it is gone.
pub fn pgid_of(pid: Pid) -> Option<Pid> {
    stat_fields(pid)?.get(2)?.parse().ok().map(Pid::from_raw)
}

/// Where in the kernel a sleeping process waits (/proc/<pid>/wchan), such
/// as `pipe_write`; empty if it runs or is gone.
pub fn wchan_of(pid: Pid) -> String {
    fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// True once `pid` no longer runs: gone, or a zombie waiting to be reaped.
pub fn is_dead(pid: Pid) -> bool {
    matches!(state_of(pid), None | Some('Z'))
}

/// Kills a process group when dropped, if anything still lives in it: for
/// the children a listing puts in a group of their own, which the
/// listing's clean-up cannot reach once the listing is dead, even when a
/// test fails half-way. While a member lives, the group's id is its own.
pub struct KillGroupOnDrop(pub Pid);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if !group_is_gone(self.0) {
            let _ = killpg(self.0, Signal::SIGKILL);
        }
    }
}

/// Waits for a listing to end, as [`Listing::finish`] does, and then
/// until no process of its group is left: forked children included.
pub fn finish_clean(listing: Listing) -> Finished {
    let pgid = listing.pid();
    let out = listing.finish();
    wait_until("the listing's processes to end", || group_is_gone(pgid));
    out
}

/// Runs a listing that ends by itself, as [`run`] does, and checks that
/// none of its processes is left.
pub fn run_clean(bin: &str, args: &[&str]) -> Finished {
    finish_clean(Listing::start(bin, args))
}

/// `unshare` running `bin` with `args` as PID 1 of a new PID namespace, as
/// root or through a user namespace, and the pid of `bin` seen from
/// outside once it has printed a line matching `ready`; `None` where the
/// machine allows neither (skipped locally).
pub fn as_pid_1(
    bin: &str,
    args: &[&str],
    ready: &str,
) -> Option<(Listing, Pid)> {
    if !have("unshare") {
        return None;
    }
    let probe = run("unshare", &["--map-root-user", "--pid", "--fork", "true"]);
    if !probe.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare: {}",
            probe.stderr
        );
        eprintln!("skipped: no PID namespace here: {}", probe.stderr);
        return None;
    }
    let mut all = vec!["--map-root-user", "--pid", "--fork", bin];
    all.extend(args);
    let mut listing = Listing::start("unshare", &all);
    listing.expect(ready);
    let unshare = listing.pid();
    let children =
        fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap();
    let inside: i32 = children.trim().parse().expect("one child");
    Some((listing, Pid::from_raw(inside)))
}

/// Makes `command` start as [`Listing::spawn`] starts a listing (killed
/// by the kernel if the calling thread dies first, descriptors 0, 1 and 2
/// only, every signal at its default, the book's environment), but leaves
/// its process group, its session and its standard streams to the caller:
/// for a test that gives a program a terminal of its own.
pub fn like_a_listing(command: &mut Command) -> &mut Command {
    die_with_this_thread(command);
    only_standard_descriptors(command);
    default_signals(command);
    same_environment(command);
    command
}

// ----------------------------------------------------------------------------
// Outputs of programs that measure (added with Part V).

/// Like [`assert_session_matches_book`], for programs that measure time:
/// on each line, whatever follows `measured:` (durations, rates, counts of
/// context switches) differs from run to run, and is left out of the
/// comparison on both sides. Everything before it, the protocol and the
/// byte counts, must match.
pub fn assert_measurements_match_book<S: AsRef<str>>(
    file: &str,
    session: &[(String, &[S])],
) {
    assert_session_matches_book_masking(
        file,
        session,
        &[("measured: .*", "measured: <varies>")],
    );
}

// ----------------------------------------------------------------------------
// Part III, Sockets: servers on the book's default port, and what /proc
// says about a running server.

/// Serialises the tests that bind the book's default port, 50008: only
/// blessing does, so that the outputs show the command a reader types.
/// It is the only such lock: a second one would let two tests bind the
/// port at once (`harness` checks that no other test file keeps one).
pub fn default_port() -> std::sync::MutexGuard<'static, ()> {
    static PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PORT.lock().unwrap_or_else(|e| e.into_inner())
}

/// `args`, plus `address` unless blessing: checks run on a free port,
/// blessing on the default one, as the book shows.
pub fn unless_blessing<'a>(args: &[&'a str], address: &'a str) -> Vec<&'a str> {
    let mut args = args.to_vec();
    if !blessing() {
        args.push(address);
    }
    args
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`), or `None`
/// once the process is gone.
pub fn status_kib(pid: Pid, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The CPU time a process has used so far, user and system, from
/// `/proc/<pid>/stat`.
pub fn cpu_time(pid: Pid) -> Duration {
    let fields = stat_fields(pid).unwrap_or_default();
    // utime and stime, fields 14 and 15 of stat; 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // In clock ticks of USER_HZ, which Linux keeps at 100 a second.
    Duration::from_millis(ticks * 10)
}

/// The number of threads of a process (`Threads` in /proc/<pid>/status).
pub fn threads_of(pid: Pid) -> usize {
    status_kib(pid, "Threads").unwrap_or(0) as usize
}

/// The number of file descriptors a process has open.
pub fn open_fds(pid: Pid) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

impl Listing {
    /// The stdout lines read so far, for a session whose listing is
    /// killed rather than left to finish.
    pub fn transcript(&self) -> Vec<String> {
        self.transcript.clone()
    }
}

// ----------------------------------------------------------------------------
// System-call traces shown in the book: what the kernel sees.

/// Which system calls and signals a trace shows, as strace's `-e trace=`
/// and `-e signal=` take them, and where the part the book shows begins.
pub struct Trace {
    /// `-e trace=`: the calls that matter, e.g. `pipe2,clone,write,read`.
    pub calls: &'static str,
    /// `-e signal=`: the signals shown, or `none`.
    pub signals: &'static str,
    /// The first line the book shows contains this (`pipe2(`): the lines
    /// before it, the dynamic loader's and Rust's runtime's, become one
    /// `...` line. `None` shows everything the program did.
    pub from: Option<&'static str>,
}

/// strace's longest string, `-s`: long enough for every line a listing
/// prints, so that a varying pid never moves where a string is cut.
const TRACE_STRING_LIMIT: &str = "80";

/// The file, relative to `listings/`, that says what recorded the book's
/// traces and outputs: the version of strace and the architecture, since
/// the format of a trace and some of its calls differ between them, and
/// the kernel, whose behaviour the outputs show.
const RECORDED_WITH: &str = "traces-recorded-with.txt";

/// strace's version line, the machine's architecture, and the kernel's
/// release (`Linux 6.18.44-fc-v1252`), one to a line.
fn recording_environment() -> String {
    let version = Command::new("strace")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let version = version.lines().next().unwrap_or("").to_string();
    format!(
        "{version}\n{}\nLinux {}\n",
        std::env::consts::ARCH,
        kernel()
    )
}

/// The release of the running kernel, as `uname -r` prints it.
pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// What recorded the book's traces and outputs, as [`recording_environment`]
/// wrote it.
fn recorded_environment() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDED_WITH);
    fs::read_to_string(&path).unwrap_or_default()
}

/// Rewrites [`RECORDED_WITH`], when blessing; without strace, which only
/// the traces need, its line stays as it was.
fn record_environment() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDED_WITH);
    let mut text = recording_environment();
    if text.starts_with('\n') {
        let recorded = recorded_environment();
        text = format!("{}{text}", recorded.lines().next().unwrap_or(""));
    }
    fs::write(path, text).expect("write");
}

/// A sentence for a failure message when the book's outputs and traces
/// were recorded on another kernel than this one; empty otherwise.
fn kernel_note() -> String {
    let recorded = recorded_environment();
    let recorded = recorded.lines().nth(2).unwrap_or("an unknown kernel");
    let here = format!("Linux {}", kernel());
    if recorded == here {
        return String::new();
    }
    format!(
        "\nThe book recorded this on {recorded} (listings/{RECORDED_WITH}); \
         this is {here}, whose behaviour may differ.\n"
    )
}

/// Whether the trace tests can run: strace is installed (see [`have`]),
/// and it is the version, on the architecture, that recorded the book's
/// traces. Elsewhere they are skipped with a note; in CI they fail. The
/// kernel may differ: a failure then says so.
pub fn can_trace() -> bool {
    if !have("strace") {
        return false;
    }
    if blessing() {
        return true;
    }
    let strace_and_arch =
        |text: &str| text.lines().take(2).collect::<Vec<_>>().join(" ");
    let recorded = strace_and_arch(&recorded_environment());
    let here = strace_and_arch(&recording_environment());
    if recorded == here {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "traces recorded with {recorded:?}, CI has {here:?}: \
         BLESS=1 cargo test -p listings, and read the diff"
    );
    eprintln!("skipped: traces recorded with {recorded:?}, this is {here:?}");
    false
}

/// The command a reader types to see the trace, after
/// `cargo build -p listings`.
pub fn strace_command(bin: &str, args: &[&str], trace: &Trace) -> String {
    let mut command = format!(
        "strace -f -q -s {TRACE_STRING_LIMIT} -e trace={}",
        trace.calls
    );
    if trace.signals != "all" {
        command = format!("{command} -e signal={}", trace.signals);
    }
    command = format!("{command} target/debug/{bin}");
    for arg in args {
        command = format!("{command} {arg}");
    }
    command
}

impl Listing {
    /// Starts `bin` with `args` as [`Listing::start`] does, but under
    /// `strace -f`, following every process and thread it starts; the
    /// trace arrives on stderr, in [`Finished::stderr`]. [`Listing::pid`]
    /// is strace's; [`Listing::tracee`] is the listing's.
    ///
    /// strace forks the listing, and a forked child loses its parent-death
    /// signal, so the listing is started through `setpriv --pdeathsig
    /// KILL`: when strace dies with the test, the listing dies too. That
    /// adds an `execve`, which the trace leaves out with everything before
    /// it.
    pub fn start_traced(bin: &str, args: &[&str], trace: &Trace) -> Listing {
        let mut calls = trace.calls.to_string();
        if !calls.split(',').any(|call| call == "execve") {
            calls.push_str(",execve");
        }
        let mut command = Command::new("strace");
        command.args(["-f", "-q", "-s", TRACE_STRING_LIMIT]);
        command.args(["-e", &format!("trace={calls}")]);
        command.args(["-e", &format!("signal={}", trace.signals)]);
        command.arg("--");
        // Without setpriv (util-linux) the trace is the same, but a listing
        // could outlive a killed test; CI has it.
        let setpriv = Command::new("sh")
            .args(["-c", "command -v setpriv"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(setpriv || std::env::var_os("CI").is_none(), "no setpriv");
        if setpriv {
            command.args(["setpriv", "--pdeathsig", "KILL", "--"]);
        }
        command.arg(bin).args(args);
        Listing::spawn(&mut command, Stdio::piped())
    }

    /// The pid of the listing that strace traces: strace's one child.
    pub fn tracee(&self) -> Pid {
        let mut children = Vec::new();
        wait_until("strace to start the listing", || {
            children = children_of(self.pid());
            !children.is_empty()
        });
        children[0]
    }
}

/// Compares the trace of a real run with the `.trace` file the book shows,
/// or rewrites that file when blessing. `file` is relative to `listings/`;
/// its first line is the command a reader types, from [`strace_command`].
///
/// strace interleaves the lines of several processes as they happen, and
/// cuts a call in two (`<unfinished ...>`, `<... resumed>`) when another
/// process's line comes in between, so only each process's own sequence
/// of calls is compared, in order, with its cut calls joined. Normalised
/// on both sides: pids, addresses, ports, times, a user id, and, where a
/// string holds one of those, the byte counts that go with it;
/// `extra_rules` adds (pattern, replacement) pairs for one trace.
pub fn assert_trace_matches_book(
    file: &str,
    command: &str,
    trace: &Trace,
    stderr: &str,
    extra_rules: &[(&str, &str)],
) {
    let shown_part = program_part(stderr, trace);
    let actual = format!("$ {command}\n{shown_part}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    if blessing() {
        fs::write(&path, &actual).expect("write the trace file");
        record_environment();
        return;
    }
    let shown = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("{file}: {err}; create it with BLESS=1 cargo test -p listings")
    });
    let want = describe(&per_process(&shown, extra_rules));
    let got = describe(&per_process(&actual, extra_rules));
    assert!(
        want == got,
        "{file} no longer matches a real run.\n--- in the book, each \
         process's calls (normalised)\n{want}--- this run\n{got}{}\
         If the new trace is right: BLESS=1 cargo test -p listings",
        kernel_note()
    );
}

/// The lines of a trace that the book shows: after the listing's own
/// `execve`, from the first line that contains `trace.from`.
fn program_part(stderr: &str, trace: &Trace) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    // The listing's execve is the last successful one that strace did not
    // prefix with a pid: strace's own run of setpriv comes first, and it
    // prefixes a line only while it traces more than one process, so a
    // program that the listing starts, and that execs, comes later with a
    // prefix.
    let exec = lines
        .iter()
        .rposition(|line| line.starts_with("execve(") && line.ends_with("= 0"))
        .map_or(0, |i| i + 1);
    let mut shown: Vec<&str> = lines[exec..].to_vec();
    if !trace.calls.split(',').any(|call| call == "execve") {
        shown.retain(|line| !line.contains("execve("));
    }
    let mut text = String::new();
    if let Some(from) = trace.from {
        let start = shown
            .iter()
            .position(|line| line.contains(from))
            .unwrap_or_else(|| panic!("no line with {from:?} in\n{stderr}"));
        if start > 0 {
            text.push_str("...\n");
        }
        shown.drain(..start);
    }
    for line in shown {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// A string literal as strace prints it, with `...` if it was cut.
const STRACE_STRING: &str = r#""(?:[^"\\]|\\.)*"(?:\.\.\.)?"#;

/// Splits a trace into each process's lines, in the order the processes
/// were started, each line normalised: pids become `<pid1>` for the
/// first process, `<pid2>` for the one it started first, and so on.
fn per_process(trace: &str, extra_rules: &[(&str, &str)]) -> Vec<Vec<String>> {
    let prefixed = Regex::new(r"^\[pid +(\d+)\] (.*)$").unwrap();
    let started =
        Regex::new(r"^(?:<\.\.\. )?(?:clone3?|v?fork)\b.* = (\d+)$").unwrap();
    let lines: Vec<(Option<u32>, String)> = trace
        .lines()
        .filter(|line| !line.starts_with("$ ") && *line != "...")
        .map(|line| match prefixed.captures(line) {
            Some(c) => (c[1].parse().ok(), c[2].to_string()),
            None => (None, line.to_string()),
        })
        .collect();

    // strace prefixes a line with `[pid N]` only while it traces more than
    // one process, so the first process is the one that no clone made.
    let children: Vec<u32> = lines
        .iter()
        .filter_map(|(_, rest)| started.captures(rest))
        .filter_map(|c| c[1].parse().ok())
        .collect();
    let first = lines
        .iter()
        .filter_map(|(pid, _)| *pid)
        .find(|pid| !children.contains(pid))
        // No line of the first process was prefixed: no number is its pid.
        .unwrap_or(u32::MAX);

    // An unprefixed line belongs to the one process still alive, or, at
    // the moment a second one starts, to the first.
    let mut alive = vec![first];
    let mut streams: Vec<(u32, Vec<String>)> = Vec::new();
    let mut pending: Vec<(u32, String)> = Vec::new();
    for (pid, rest) in lines {
        let owner =
            pid.unwrap_or(if alive.len() == 1 { alive[0] } else { first });
        if !alive.contains(&owner) {
            alive.push(owner);
        }
        if let Some(c) = started.captures(&rest)
            && let Ok(child) = c[1].parse::<u32>()
            && !alive.contains(&child)
        {
            alive.push(child);
        }
        if rest.starts_with("+++ ") {
            alive.retain(|&p| p != owner);
        }
        // Join a call that strace cut in two.
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.push((owner, head.to_string()));
            continue;
        } else if rest.starts_with("<... ") && rest.contains(" resumed>") {
            let tail = rest.split_once(" resumed>").unwrap().1;
            match pending.iter().position(|(p, _)| *p == owner) {
                Some(i) => format!("{}{tail}", pending.remove(i).1),
                None => rest.clone(),
            }
        } else {
            rest
        };
        match streams.iter_mut().find(|(p, _)| *p == owner) {
            Some((_, stream)) => stream.push(line),
            None => streams.push((owner, vec![line])),
        }
    }

    // Order: the first process, then each process's children in the
    // order it started them, whatever order their lines came in.
    let mut order = vec![first];
    let mut i = 0;
    while i < order.len() {
        if let Some((_, stream)) = streams.iter().find(|(p, _)| *p == order[i])
        {
            for line in stream {
                if let Some(c) = started.captures(line)
                    && let Ok(child) = c[1].parse::<u32>()
                    && !order.contains(&child)
                {
                    order.push(child);
                }
            }
        }
        i += 1;
    }
    for (pid, _) in &streams {
        if !order.contains(pid) {
            order.push(*pid);
        }
    }
    order
        .iter()
        .filter_map(|pid| streams.iter().find(|(p, _)| p == pid))
        .map(|(_, stream)| {
            stream
                .iter()
                .map(|line| normalise_call(line, &order, extra_rules))
                .collect()
        })
        .collect()
}

/// Normalises one line of a trace: the pids of the traced processes
/// outside strings, then what varies anywhere.
fn normalise_call(
    line: &str,
    pids: &[u32],
    extra_rules: &[(&str, &str)],
) -> String {
    let strings = Regex::new(STRACE_STRING).unwrap();
    // Pids outside strings, as whole numbers; the book's rules below
    // take care of those inside (`Parent 1234`).
    let mut out = String::new();
    let mut last = 0;
    let mut string_varies = false;
    let replace_pids = |text: &str| {
        let number = Regex::new(r"\b\d+\b").unwrap();
        number
            .replace_all(text, |c: &regex::Captures| {
                match pids.iter().position(|p| c[0].parse() == Ok(*p)) {
                    Some(i) => format!("<pid{}>", i + 1),
                    None => c[0].to_string(),
                }
            })
            .into_owned()
    };
    for m in strings.find_iter(line) {
        out.push_str(&replace_pids(&line[last..m.start()]));
        let string = normalise(m.as_str());
        string_varies |= string != m.as_str();
        out.push_str(&string);
        last = m.end();
    }
    out.push_str(&replace_pids(&line[last..]));

    let mut rules: Vec<(&str, &str)> = vec![
        // Where strace's columns line up depends on what came before.
        (r"\s+", " "),
        (r"\b0x[0-9a-f]{5,}\b", "0x<addr>"),
        (r"\bsi_pid=\d+", "si_pid=<pid>"),
        (r"\bsi_uid=\d+", "si_uid=<uid>"),
        (r"\bhtons\(\d+\)", "htons(<port>)"),
        // Time left, as strace shows a timespec or a raw timeval.
        (r"\btv_nsec=[1-9]\d*", "tv_nsec=<ns>"),
        (r"\btv_sec=\d+, tv_nsec=<ns>", "tv_sec=<s>, tv_nsec=<ns>"),
        (
            r#"(SO_(?:RCV|SND)TIMEO(?:_OLD)?, )"(?:[^"\\]|\\.)*""#,
            "$1<timeval>",
        ),
    ];
    // A string that held a pid, a time or a port may have a different
    // length: so do the count that goes with it and the call's result.
    if string_varies {
        rules.push((
            r#"^(\w+\(\w+, "(?:[^"\\]|\\.)*"(?:\.\.\.)?, )\d+(.*= )\d+$"#,
            "$1<len>$2<len>",
        ));
    }
    rules.extend_from_slice(extra_rules);
    for (pattern, replacement) in rules {
        let re = Regex::new(pattern).expect("a valid regex");
        out = re.replace_all(&out, replacement).into_owned();
    }
    // And the book's rules for outputs, for what the listing itself wrote
    // among strace's lines (its stderr), and for the strings.
    normalise(&out)
}

/// A normalised trace as text, one block per process.
fn describe(processes: &[Vec<String>]) -> String {
    let mut text = String::new();
    for (i, lines) in processes.iter().enumerate() {
        text.push_str(&format!("process {}:\n", i + 1));
        for line in lines {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

/// Runs the listing `bin` (its name, as readers type it) with `args` to
/// its end under strace, checks that it succeeded, and compares its trace
/// with `file` (see [`assert_trace_matches_book`]). Returns the run.
pub fn assert_traced_run_matches_book(
    file: &str,
    bin: &str,
    args: &[&str],
    trace: &Trace,
) -> Finished {
    let out =
        Listing::start_traced(bin_path(bin).to_str().unwrap(), args, trace)
            .finish();
    assert!(out.status.success(), "{bin}: {}", out.stderr);
    let command = strace_command(bin, args, trace);
    assert_trace_matches_book(file, &command, trace, &out.stderr, &[]);
    out
}

/// The normaliser on its own, for what varies with the calendar and the
/// clock: the suite runs on any day, so each case here is one a run on
/// some day of the year would meet.
mod normalise_tests {
    use chrono::{Datelike, Duration, FixedOffset, NaiveDate, TimeZone};

    use super::normalise;

    /// `time.asctime()` as the listings print it (`%e` pads the day).
    fn asctime(at: chrono::DateTime<FixedOffset>) -> String {
        at.format("%a %b %e %H:%M:%S %Y").to_string()
    }

    #[track_caller]
    fn assert_time_hidden(time: &str) {
        assert_eq!(
            normalise(&format!("Setting at {time}\nGot alarm 14 at {time}")),
            "Setting at <time>\nGot alarm 14 at <time>",
            "{time:?}"
        );
    }

    #[test]
    fn normalise_hides_asctime_on_a_day_below_ten() {
        assert_time_hidden("Sat Dec  5 00:19:07 2026");
        assert_time_hidden("Mon Jun  1 12:00:00 2026");
    }

    #[test]
    fn normalise_hides_asctime_at_midnight_and_at_a_new_year() {
        assert_time_hidden("Sat Dec  5 00:00:00 2026");
        assert_time_hidden("Thu Dec 31 23:59:59 2026");
        assert_time_hidden("Fri Jan  1 00:00:00 2027");
    }

    /// Every day of a leap year, at the first, a middle and the last
    /// second of the day, in time zones east and west of UTC, on both
    /// sides of the date line and at a quarter hour.
    #[test]
    fn normalise_hides_asctime_on_every_day_in_any_time_zone() {
        let zones = [0, 5 * 3600 + 45 * 60, -10 * 3600, 14 * 3600, -12 * 3600];
        let first = NaiveDate::from_ymd_opt(2028, 1, 1).unwrap();
        for zone in zones {
            let zone = FixedOffset::east_opt(zone).unwrap();
            for day in 0..366 {
                let date = first + Duration::days(day);
                for (h, m, s) in [(0, 0, 0), (9, 59, 59), (23, 59, 59)] {
                    let local = date.and_hms_opt(h, m, s).unwrap();
                    let at = zone.from_local_datetime(&local).unwrap();
                    assert_time_hidden(&asctime(at));
                }
            }
            assert_eq!((first + Duration::days(365)).year(), 2028);
        }
    }

    #[test]
    fn normalise_hides_unix_times_with_and_without_a_fraction() {
        for time in ["1795627555.2590373", "1795627555", "999999999.5"] {
            assert_eq!(
                normalise(&format!("Parent 12 got [Spam 000] at {time}")),
                "Parent <pid> got [Spam 000] at <time>"
            );
        }
        // A number that is not a time is left alone.
        assert_eq!(
            normalise("wrote 1795627555 bytes"),
            "wrote 1795627555 bytes"
        );
    }

    #[test]
    fn normalise_hides_ls_dates_recent_and_old() {
        for date in ["Dec  5 03:14", "Dec 25 23:59", "Jan  1  2025"] {
            let line = format!("prw-r--r-- 1 root root 0 {date} /tmp/x");
            assert_eq!(
                normalise(&line),
                "prw-r--r-- <owner and date> /tmp/x",
                "{line:?}"
            );
        }
    }
}
