//! Starting listings as processes in groups of their own, with deadlines on
//! every wait, and what they printed.

use nix::libc;
use nix::sys::prctl;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpid, getppid};
use regex::Regex;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// How long any single wait may take before the test fails. Generous,
/// because the suite must pass on a loaded machine; a healthy run never
/// comes near it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running listing.
pub struct Listing {
    pub(super) child: Child,
    pub(super) lines: Receiver<String>,
    pub(super) stderr: Receiver<String>,
    /// Every stdout line read so far, in order.
    pub(super) transcript: Vec<String>,
    /// The program and its arguments, for messages.
    pub(super) command_line: String,
}

/// What a listing printed, and how it ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

/// Fails the test, showing the status and stderr, unless `out` ended by
/// `signal`.
#[track_caller]
pub fn assert_died_of(out: &Finished, signal: Signal) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(signal as i32),
        "{:?}: {}",
        out.status,
        out.stderr
    );
}

/// What a shell's `$?` shows for `status`: the code, or 128 + the signal
/// that ended the process. A status from `wait` is always one of the two.
pub fn dollar_question(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(signal)) => (128 + signal).to_string(),
        _ => unreachable!("a finished process: {status:?}"),
    }
}

/// Fails the test, showing the status and stderr, unless `out` exited
/// with `code`: 143 (128 + SIGTERM) is how a PID 1, which cannot die of a
/// signal it raises itself, reports that SIGTERM ended it.
#[track_caller]
pub fn assert_exited_with(out: &Finished, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{:?}: {}",
        out.status,
        out.stderr
    );
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

    /// As [`Listing::spawn`], but with stderr on `stderr`: for a test of
    /// what the listing does when its error log is not read, as under a
    /// service manager or `2>&1 | logger` (give stdout the same pipe).
    /// Its stderr is then not this module's to read, and `finish` shows
    /// it empty.
    pub fn spawn_with_stderr(
        command: &mut Command,
        stdout: Stdio,
        stderr: OwnedFd,
    ) -> Listing {
        command.process_group(0).stderr(stderr);
        Listing::spawn_with(command, stdout, None)
    }

    fn spawn_as_is(command: &mut Command, stdout: Stdio) -> Listing {
        Listing::spawn_with(command, stdout, Some(Stdio::piped()))
    }

    /// Starts `command`; `stderr`, if given, replaces what the command
    /// was given, and must be `Stdio::piped()`, which this module reads.
    fn spawn_with(
        command: &mut Command,
        stdout: Stdio,
        stderr: Option<Stdio>,
    ) -> Listing {
        no_signal_caught_in_the_test_process();
        let program = command.get_program().to_string_lossy().into_owned();
        let command_line = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|word| word.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        die_with_this_thread(command);
        only_standard_descriptors(command);
        default_signals(command);
        usual_umask(command);
        same_environment(command);
        command.stdin(Stdio::null()).stdout(stdout);
        if let Some(stderr) = stderr {
            command.stderr(stderr);
        }
        let mut child = command
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
        match child.stderr.take() {
            Some(mut pipe) => {
                thread::spawn(move || {
                    let mut text = String::new();
                    let _ = pipe.read_to_string(&mut text);
                    let _ = tx.send(text);
                });
            }
            None => tx.send(String::new()).expect("the receiver is here"),
        }
        Listing {
            child,
            lines,
            stderr,
            transcript: Vec::new(),
            command_line,
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
        self.next_line_or_exit_within(PATIENCE)
    }

    /// As `next_line_or_exit`, with a patience of `time`: for a program
    /// whose steps may each take longer than `PATIENCE` on a loaded
    /// machine (the benchmark command).
    #[track_caller]
    pub fn next_line_or_exit_within(
        &mut self,
        time: Duration,
    ) -> Option<String> {
        match self.lines.recv_timeout(time) {
            Ok(line) => {
                self.transcript.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no line within {time:?}; so far: {:#?}",
                    self.transcript
                )
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
    #[track_caller]
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
    /// returns everything it printed. What is left of its group is killed
    /// afterwards, unseen: a test that says nothing may be left uses
    /// [`Listing::finish_clean`].
    #[track_caller]
    pub fn finish(mut self) -> Finished {
        self.wait_for_the_end()
    }

    /// Waits for the listing as [`Listing::finish`] does, then, before
    /// anything is killed, until no process of its group is left; fails
    /// the test naming those that stay. `finish` alone cannot tell: its
    /// wait for stdout to close sees only a process that holds the pipe,
    /// and the group is killed when the `Listing` is dropped, so a wait
    /// for the group after it always succeeds. The group is still killed
    /// at the end, so a survivor dies with the failing test.
    #[track_caller]
    pub fn finish_clean(mut self) -> Finished {
        let pgid = self.pid();
        let out = self.wait_for_the_end();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = survivors_in_group(pgid);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` ended ({:?}) but left {} process(es) in its group \
                 after {PATIENCE:?}:\n  {}\nstderr: {}",
                self.command_line,
                out.status,
                left.len(),
                left.join("\n  "),
                out.stderr
            );
            thread::sleep(Duration::from_millis(5));
        }
        out
    }

    #[track_caller]
    fn wait_for_the_end(&mut self) -> Finished {
        self.wait_for_the_end_within(PATIENCE)
    }

    /// [`Listing::finish`], failing after `patience` instead of
    /// `PATIENCE`: for a test of the failure itself.
    #[track_caller]
    pub fn finish_within(mut self, patience: Duration) -> Finished {
        self.wait_for_the_end_within(patience)
    }

    #[track_caller]
    fn wait_for_the_end_within(&mut self, patience: Duration) -> Finished {
        let status = self
            .child
            .wait_timeout(patience)
            .expect("wait for the listing")
            .unwrap_or_else(|| {
                // Named, program and arguments: a check that runs a table
                // of listings must say which row hung.
                panic!(
                    "`{}` still running after {patience:?}; its group \
                     holds:\n  {}\nstdout so far: {:#?}",
                    self.command_line,
                    survivors_in_group(self.pid()).join("\n  "),
                    self.transcript
                )
            });
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.transcript.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`{}` exited but its stdout stayed open; its group \
                     holds:\n  {}",
                    self.command_line,
                    survivors_in_group(self.pid()).join("\n  ")
                ),
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
pub(crate) fn die_with_this_thread(command: &mut Command) {
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
pub(crate) fn only_standard_descriptors(command: &mut Command) {
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
pub(crate) fn default_signals(command: &mut Command) {
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

/// Makes a listing start with the usual umask, 022, whatever the test
/// runner's: the modes of the files a listing makes, which the book's
/// outputs show (`srwxr-xr-x`), must not depend on the user who runs the
/// tests (002 is the default for ordinary users on many systems). It runs
/// after any hook of the test's own.
pub(crate) fn usual_umask(command: &mut Command) {
    // SAFETY: runs between fork and exec; `umask` is one
    // async-signal-safe system call that cannot fail; nothing allocates.
    unsafe {
        command.pre_exec(|| {
            nix::libc::umask(0o022);
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
pub(crate) fn same_environment(command: &mut Command) {
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

/// Starts `bin` with `signals` (names such as "HUP,USR1") blocked *and
/// pending*, as a parent that blocked them leaves them when one comes
/// before it runs the program: `env` blocks them, the shell sends each to
/// itself, and `exec` keeps both the mask and the pending set
/// (signal(7)). A listing that unblocks a signal before its handler is in
/// place takes the default action for it at that moment.
pub fn start_with_pending(signals: &str, bin: &str, args: &[&str]) -> Listing {
    let kills: Vec<String> = signals
        .split(',')
        .map(|s| format!("kill -{s} $$"))
        .collect();
    let script = format!(r#"{} && exec "$@""#, kills.join(" && "));
    let mut command = Command::new("env");
    command
        .arg(format!("--block-signal={signals}"))
        .args(["sh", "-c", &script, "sh", bin])
        .args(args);
    Listing::spawn(&mut command, Stdio::piped())
}

/// Makes the child that `command` starts write its stdout into a pipe
/// whose read end is already closed, as `| head -c0` leaves it; returns
/// the stdout to start it with, which the pipe then replaces. The pipe is
/// made in the child, between fork and exec. Made in the test process,
/// with its read end closed at once, it still has a reader for a moment in
/// any child that another test thread forks meanwhile, until that child's
/// `exec` (or its end, without close-on-exec): a listing's first writes
/// can succeed in that moment, and the listing then ends otherwise.
pub fn stdout_to_a_widowed_pipe(command: &mut Command) -> Stdio {
    // SAFETY: runs in the child between fork and exec, after its stdio is
    // set up: `pipe2`, `close` and `dup2` are async-signal-safe system
    // calls, nothing allocates, and an error is a raw errno.
    unsafe {
        command.pre_exec(|| {
            let mut ends = [0; 2];
            if libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(ends[0]);
            let moved = match libc::dup2(ends[1], 1) {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            };
            libc::close(ends[1]);
            moved
        });
    }
    Stdio::null()
}

/// Makes the child that `command` starts write its stdout into a pipe
/// whose reader, `head -n 1`, copies the first line to the stdout returned
/// here (which the test reads as the listing's) and goes, closing the
/// pipe: `listing | head -n 1`. The pipe and its reader are made in the
/// child, between fork and exec, so that the read end never exists in
/// this process: made here, even close-on-exec, it is held for a moment by
/// any child another test thread forks meanwhile, and the listing's writes
/// after the first line could succeed then. The reader is forked twice
/// (its parent ends at once), so that it is no child of the program the
/// child becomes (strace would report an unknown child), and it stays in
/// the listing's process group, which dies with the test.
pub fn stdout_to_a_reader_of_one_line(command: &mut Command) -> Stdio {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let head = std::env::split_paths(&paths)
        .map(|dir| dir.join("head"))
        .find(|path| path.is_file())
        .expect("head on PATH");
    let head = CString::new(head.as_os_str().as_bytes()).unwrap();
    // SAFETY: runs in the child between fork and exec, after its stdio is
    // set up: `pipe2`, `fork`, `dup2`, `close_range`, `execv`, `_exit`,
    // `waitpid` and `close` are async-signal-safe, nothing allocates (the
    // arguments were made before), and an error is a raw errno.
    unsafe {
        command.pre_exec(move || {
            let mut ends = [0; 2];
            if libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) == -1 {
                return Err(io::Error::last_os_error());
            }
            let middle = libc::fork();
            if middle == 0 {
                let reader = libc::fork();
                if reader == 0 {
                    // The reader: the pipe on stdin, stdout and stderr the
                    // child's, nothing else open after its exec.
                    libc::dup2(ends[0], 0);
                    libc::close_range(
                        3,
                        u32::MAX,
                        libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
                    );
                    let argv =
                        [head.as_ptr(), c"-n1".as_ptr(), std::ptr::null()];
                    libc::execv(head.as_ptr(), argv.as_ptr());
                    libc::_exit(127);
                }
                libc::_exit(if reader == -1 { 1 } else { 0 });
            }
            if middle == -1 {
                return Err(io::Error::last_os_error());
            }
            let mut status = 0;
            libc::waitpid(middle, &mut status, 0);
            if status != 0 {
                return Err(io::Error::from_raw_os_error(libc::EAGAIN));
            }
            libc::close(ends[0]);
            let moved = match libc::dup2(ends[1], 1) {
                -1 => Err(io::Error::last_os_error()),
                _ => Ok(()),
            };
            libc::close(ends[1]);
            moved
        });
    }
    Stdio::piped()
}

/// Runs a listing that ends by itself and returns what it printed.
pub fn run(bin: &str, args: &[&str]) -> Finished {
    Listing::start(bin, args).finish()
}

/// Asserts that bad arguments get one line on stderr, naming the program,
/// nothing on stdout, and exit status 1: no panic, no usage essay.
#[track_caller]
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

/// The exit status of `bin` run with `args` and its stderr on a full disk
/// (`2>/dev/full`): an error it cannot report is still status 1, where
/// `eprintln!` would panic and make it 101.
pub fn status_with_stderr_full(bin: &str, args: &[&str]) -> Option<i32> {
    let mut command = Command::new("sh");
    command
        .args(["-c", "exec \"$0\" \"$@\" 2>/dev/full", bin])
        .args(args);
    Listing::spawn(&mut command, Stdio::piped())
        .finish()
        .status
        .code()
}

/// Waits, up to `PATIENCE`, until `ready` holds; fails the test with
/// `what` otherwise. For conditions only /proc can tell: the state of a
/// process, its pending signals. It polls; it never sleeps for longer
/// than the next look.
#[track_caller]
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
    members_of_group(pgid).is_empty()
}

/// The live processes (zombies apart) of process group `pgid`, read from
/// /proc.
fn members_of_group(pgid: Pid) -> Vec<(Pid, Vec<String>)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        panic!("cannot read /proc");
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = Pid::from_raw(entry.file_name().to_str()?.parse().ok()?);
            let fields = stat_fields(pid)?;
            (fields[0] != "Z" && fields[2] == pgid.to_string())
                .then_some((pid, fields))
        })
        .collect()
}

/// One line for each live process of group `pgid`: its pid, command line,
/// state, parent and descriptors, to say which process a listing left and
/// why no pipe showed it (its stdout and stderr elsewhere).
pub fn survivors_in_group(pgid: Pid) -> Vec<String> {
    members_of_group(pgid)
        .into_iter()
        .map(|(pid, fields)| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .unwrap_or_default();
            let fds: Vec<String> = fds_of(pid)
                .into_iter()
                .map(|(fd, target)| format!("{fd}→{target}"))
                .collect();
            format!(
                "pid {pid} `{}`, state {}, parent {}, fds [{}]",
                cmdline.trim_end(),
                fields[0],
                fields[1],
                fds.join(", ")
            )
        })
        .collect()
}

/// The path of any listing's binary, by name: they all sit together.
pub fn bin_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_alarm")).with_file_name(name)
}

/// The names of every listing: the binaries of this crate, as Cargo reads
/// listings/Cargo.toml (`cargo metadata`).
pub fn listing_names() -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut metadata = Command::new(cargo);
    metadata.args(["metadata", "--no-deps", "--format-version=1"]);
    metadata.args(["--offline", "--locked", "--manifest-path"]);
    metadata.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    let out = Listing::spawn(&mut metadata, Stdio::piped()).finish();
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        out.stderr
    );
    let metadata: serde_json::Value =
        serde_json::from_str(&out.stdout.join("\n")).expect("JSON");
    let package = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|package| package["name"] == "listings")
        .expect("the listings package");
    package["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|target| target["kind"] == serde_json::json!(["bin"]))
        .map(|target| target["name"].as_str().expect("a name").to_string())
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

/// Whether the tests run as root, which alone may run a listing as another
/// user, make raw sockets or change limits for others. On a reader's
/// machine a test that needs root is skipped, with a line saying what
/// only root can do; in CI (`CI` set), which runs as root, it fails, so
/// that a root-only check can never pass there unseen.
pub fn need_root(what: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "only root can {what}, and CI runs as root"
        );
        eprintln!("skipped: only root can {what}");
    }
    root
}

/// Runs a shell command line with `bash -c`, with a deadline, in a
/// process group of its own that dies with it, and returns its output
/// lines. For the commands the book tells readers to type.
pub fn shell(command: &str) -> Vec<String> {
    let out = Listing::start("bash", &["-c", command]).finish();
    assert!(out.status.success(), "`{command}` failed: {}", out.stderr);
    out.stdout
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

/// Waits for a listing to end and then until no process of its group is
/// left, before the group is killed: [`Listing::finish_clean`].
#[track_caller]
pub fn finish_clean(listing: Listing) -> Finished {
    listing.finish_clean()
}

/// Runs a listing that ends by itself, as [`run`] does, and checks that
/// none of its processes is left.
#[track_caller]
pub fn run_clean(bin: &str, args: &[&str]) -> Finished {
    finish_clean(Listing::start(bin, args))
}

/// Python, a subreaper (PR_SET_CHILD_SUBREAPER), runs a listing with its
/// stdout a pipe whose read end is already closed, as `| head -c0` would
/// leave it; it prints how the listing ended, then what the listing left
/// behind: `none`, or a child orphaned to Python, which it then kills.
const OUTPUT_CLOSED: &str = r#"
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
r, w = os.pipe()
os.close(r)
listing = subprocess.Popen(sys.argv[1:], stdout=w, start_new_session=True)
os.close(w)
print("parent:", listing.wait(), flush=True)
try:
    pid, _ = os.waitpid(-1, os.WNOHANG)
    print("orphaned, and ended" if pid else "orphaned, and running")
except ChildProcessError:
    print("none")
try:
    os.killpg(listing.pid, signal.SIGKILL)
except ProcessLookupError:
    pass
"#;

/// Runs `bin` with `args` and its stdout a pipe nobody reads (see
/// `OUTPUT_CLOSED`): stdout says `parent: STATUS` (negative: killed by
/// that signal), then `none` if the listing reaped every child it started.
/// `None` where python3 is missing.
pub fn with_output_closed(bin: &str, args: &[&str]) -> Option<Finished> {
    if !have("python3") {
        return None;
    }
    let mut argv = vec!["-c", OUTPUT_CLOSED, bin];
    argv.extend_from_slice(args);
    Some(Listing::start("python3", &argv).finish())
}

/// Whether `unshare` can make a new PID namespace here, as root or through
/// a user namespace. Where it cannot, or is not installed ([`have`]), the
/// test is skipped with a line on stderr, except under CI, whose machines
/// allow it: there it fails.
pub fn pid_namespaces() -> bool {
    if !have("unshare") {
        return false;
    }
    let probe = run("unshare", &["--map-root-user", "--pid", "--fork", "true"]);
    if !probe.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare: {}",
            probe.stderr
        );
        eprintln!("skipped: no PID namespace here: {}", probe.stderr);
    }
    probe.status.success()
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
    if !pid_namespaces() {
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

/// `wait` with a deadline, as the wait-timeout crate offers, but without
/// a SIGCHLD handler: that crate installs one in the test process, whose
/// every run then interrupts other tests' calls that the kernel never
/// restarts (a read with a timeout, `poll`), even under SA_RESTART
/// (signal(7)). A pidfd becomes readable when its process ends, and
/// waiting on it catches no signal.
pub trait ChildExt {
    /// The exit status, or `None` if the child still runs at `timeout`.
    fn wait_timeout(
        &mut self,
        timeout: Duration,
    ) -> io::Result<Option<ExitStatus>>;
}

impl ChildExt for Child {
    fn wait_timeout(
        &mut self,
        timeout: Duration,
    ) -> io::Result<Option<ExitStatus>> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::{AsFd, FromRawFd, OwnedFd};
        if let Some(status) = self.try_wait()? {
            return Ok(Some(status));
        }
        // SAFETY: pidfd_open takes a pid and flags, and returns a new
        // descriptor (close-on-exec, always) or -1. The child is ours and
        // unreaped, so its pid cannot have been reused.
        let fd = unsafe {
            libc::syscall(libc::SYS_pidfd_open, self.id() as libc::pid_t, 0)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor is new and ours alone.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) if left.is_zero() => return self.try_wait(),
                Ok(0) => {}
                Ok(_) => return self.wait().map(Some),
                Err(nix::errno::Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// The signals this test process catches, from `SigCgt` in
/// /proc/self/status, without std's own (SIGSEGV and SIGBUS, which
/// report a stack overflow) and glibc's 32 and 33.
fn signals_caught_in_the_test_process() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("status");
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("a SigCgt line");
    let bit = |signal: Signal| 1 << (signal as i32 - 1);
    let std_own = bit(Signal::SIGSEGV) | bit(Signal::SIGBUS) | 0b11 << 31;
    mask & !std_own
}

/// A handler installed in the test process stays for every test after
/// it, and interrupts their calls that the kernel never restarts (see
/// [`ChildExt`]): a test that installs one must run in a child process
/// of its own (as the ch02 test of signal-hook's abort does).
fn no_signal_caught_in_the_test_process() {
    let caught = signals_caught_in_the_test_process();
    assert!(
        caught == 0,
        "a test installed a signal handler in the test process (mask \
         {caught:#x}; bit n - 1 is signal n): it must run in a child \
         process of its own"
    );
}

/// A command that runs `bin` with `args` and `SIGCHLD` ignored, as a
/// parent that ignores it leaves it through `exec`: the kernel then reaps
/// the program's children itself, unless the program sets the default
/// back. coreutils' `env --ignore-signal` (8.31) sets it and execs `bin`,
/// after the set-up of [`Listing::spawn`], which gives every signal its
/// default action.
pub fn with_sigchld_ignored(bin: &str, args: &[&str]) -> Command {
    let mut command = Command::new("env");
    command.args(["--ignore-signal=CHLD", bin]).args(args);
    command
}

/// Puts in `dir` a stand-in for the program `name` that a listing starts:
/// it writes its own /proc status to the file that `$STATUS_FILE` names,
/// the signal settings it started with, and then execs the real `name`,
/// found on `$PATH` without `dir`, with its arguments. Put `dir` first
/// on the listing's `PATH`. Written in Python, which leaves `SIGCHLD` as
/// it found it (Perl, for one, resets an ignored one); `None` without
/// python3.
pub fn status_recorder(dir: &Path, name: &str) -> Option<PathBuf> {
    if !have("python3") {
        return None;
    }
    // The interpreter itself, not a wrapper script that may run `sh`.
    let python = run("python3", &["-c", "import sys; print(sys.executable)"]);
    let python = python.stdout.first()?.clone();
    let program = dir.join(name);
    write_program(
        &program,
        &format!(
            "#!{python}
import os, shutil, sys
with open(\"/proc/self/status\") as status:
    text = status.read()
with open(os.environ[\"STATUS_FILE\"], \"w\") as out:
    out.write(text)
here = os.path.dirname(os.path.abspath(__file__))
path = os.pathsep.join(d for d in os.environ[\"PATH\"].split(os.pathsep)
                       if os.path.abspath(d) != here)
real = shutil.which({name:?}, path=path)
os.execv(real, [{name:?}] + sys.argv[1:])
"
        ),
    );
    Some(program)
}

/// Writes `text` to `path` as a program that anyone may run, from a child
/// process, so that the test process never has the file open for writing.
/// Had it written the file itself, a child that another test forked in
/// that instant would keep a copy of the descriptor until its own `exec`,
/// and an `exec` of the file meanwhile fails with ETXTBSY ("Text file
/// busy"): a listing's spawn of a stand-in written so failed once.
pub fn write_program(path: &Path, text: &str) {
    let made = Command::new("sh")
        .args(["-c", "printf %s \"$2\" > \"$1\" && chmod 755 \"$1\""])
        .arg("sh")
        .arg(path)
        .arg(text)
        .stdin(Stdio::null())
        .status()
        .expect("sh, to write a program");
    assert!(made.success(), "writing {}: {made:?}", path.display());
}
