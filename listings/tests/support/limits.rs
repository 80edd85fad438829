//! Starting listings with few file descriptors, as after `ulimit -n`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::resource::{Resource, setrlimit};

use super::*;

/// Makes the listing that `command` starts run with a limit of `soft`
/// file descriptors, and a hard limit of `hard` (`ulimit -S -n` and
/// `ulimit -H -n`), set between `fork` and `exec`: no shell in between
/// needs descriptors of its own, so even a limit of four can be tried.
pub fn with_fd_limit(
    command: &mut Command,
    soft: u64,
    hard: u64,
) -> &mut Command {
    // SAFETY: runs between fork and exec; `setrlimit` is one system call,
    // async-signal-safe, and its error is a raw errno: nothing allocates.
    unsafe {
        command.pre_exec(move || {
            setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
            Ok(())
        })
    }
}

/// Runs the listing that `command` makes under each limit of `fds`
/// descriptors (soft and hard) in turn, and asks what the introduction asks of every listing: a
/// one-line error, never a panic. At each limit the listing either fails
/// before it prints anything, with status 1 and one line on stderr that
/// names it and says that descriptors ran out; or it prints its first
/// line, `stop` ends it as its chapter does (a signal, or nothing for a
/// listing that ends by itself), and it ends without a panic, with one
/// line on stderr if it fails. Returns the limits at which it started.
#[track_caller]
pub fn assert_starts_or_says_why(
    command: impl Fn() -> Command,
    fds: impl IntoIterator<Item = u64>,
    stop: impl Fn(&Listing),
) -> Vec<u64> {
    let mut started = Vec::new();
    for limit in fds {
        let mut command = command();
        let bin = Path::new(command.get_program()).to_owned();
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        with_fd_limit(&mut command, limit, limit);
        let mut listing = Listing::spawn(&mut command, Stdio::piped());
        let first = listing.next_line_or_exit();
        if first.is_some() {
            started.push(limit);
            stop(&listing);
        }
        let out = listing.finish();
        let what = format!("{name} {args:?} under ulimit -n {limit}");
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        let lines: Vec<_> = out.stderr.lines().collect();
        if first.is_none() || out.status.code() == Some(1) {
            assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
            assert_eq!(lines.len(), 1, "{what}: one line: {:?}", out.stderr);
            assert!(lines[0].starts_with(&format!("{name}: ")), "{what}");
        }
        if first.is_none() {
            assert!(
                lines[0].contains("Too many open files"),
                "{what}: {}",
                lines[0]
            );
        }
    }
    started
}

/// Runs the listing that `command` makes under each limit of `fds`
/// descriptors (soft and hard) in turn, and asks that whatever fails for
/// want of a descriptor says which step it could not take, as chapter
/// 19's pipes do: status 0, or status 1 and one line of its own on
/// stderr, `NAME: cannot STEP: ERROR`, with EMFILE as the error. A bare errno
/// names no step; "cannot run \"seq\"" alone blames a command that never
/// ran, when this process had no descriptor left for the pipes that
/// starting it takes. Returns the lines, one per limit, empty where the
/// listing ended well.
#[track_caller]
pub fn assert_names_the_step_when_descriptors_run_out(
    command: impl Fn() -> Command,
    fds: impl IntoIterator<Item = u64>,
) -> Vec<String> {
    let mut said = Vec::new();
    for limit in fds {
        let mut command = command();
        let bin = Path::new(command.get_program()).to_owned();
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        let what = format!("{name} {args:?} under ulimit -n {limit}");
        with_fd_limit(&mut command, limit, limit);
        let out = Listing::spawn(&mut command, Stdio::null()).finish();
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        // The listing's own lines; the rest are its children's (a `sh`
        // with too few descriptors for its redirections says so, and
        // goes on).
        let lines: Vec<_> = out
            .stderr
            .lines()
            .filter(|line| line.starts_with(&format!("{name}: ")))
            .collect();
        if out.status.success() {
            assert_eq!(lines, [""; 0], "{what}");
            said.push(String::new());
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        assert_eq!(lines.len(), 1, "{what}: one line: {:?}", out.stderr);
        let line = lines[0];
        let step =
            line.strip_prefix(&format!("{name}: cannot "))
                .and_then(|rest| {
                    rest.strip_suffix(": EMFILE: Too many open files").or_else(
                        || {
                            rest.strip_suffix(
                                ": Too many open files (os error 24)",
                            )
                        },
                    )
                });
        let Some(step) = step else {
            panic!("{what}: names no step: {line}");
        };
        // `run "seq"`, `start sh`: a verb and a command, and nothing of
        // what this process ran out of.
        let words: Vec<_> = step.split(' ').collect();
        let blames = words.len() == 2 && ["run", "start"].contains(&words[0]);
        assert!(!blames, "{what}: blames a command it did not start: {line}");
        said.push(line.to_string());
    }
    said
}

/// Starts the listing that `command` makes with `TOKIO_WORKER_THREADS`
/// set to values tokio cannot read (zero, a word, nothing), which tokio's
/// multi-threaded runtime answers with a panic in `build`, and asks for
/// the one-line error of every listing instead: status 1 before any
/// output, and one line on stderr that names the listing and the variable.
#[track_caller]
pub fn assert_says_why_on_bad_worker_threads(command: impl Fn() -> Command) {
    for value in ["0", "many", ""] {
        let mut command = command();
        command.env("TOKIO_WORKER_THREADS", value);
        let bin = Path::new(command.get_program()).to_owned();
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let what = format!("{name} with TOKIO_WORKER_THREADS={value:?}");
        let mut listing = Listing::spawn(&mut command, Stdio::piped());
        let first = listing.next_line_or_exit();
        let out = listing.finish();
        assert_eq!(first, None, "{what}: started");
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        let lines: Vec<_> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line: {:?}", out.stderr);
        assert!(lines[0].starts_with(&format!("{name}: ")), "{what}");
        assert!(
            lines[0].contains("TOKIO_WORKER_THREADS"),
            "{what}: {}",
            lines[0]
        );
    }
}

/// The uids `with_thread_limit` picks from; a test that runs as a fixed
/// uid takes one outside them.
pub const THREAD_LIMIT_UIDS: std::ops::Range<u32> = 30_000..50_000;

/// The listing that `command` starts, made to run as a user that no other
/// process has (a uid made from this test's pid and a count of the calls,
/// so that neither two runs of the suite nor two tests running at once
/// share it), allowed `threads` processes and threads in all: its main
/// thread and `threads - 1` more ([`process_limited_as`]). `None`, with a
/// line on stderr, where the suite is not root, which alone may change
/// its user.
pub fn with_thread_limit(
    command: &Command,
    threads: u64,
) -> Option<(Command, tempfile::TempDir)> {
    if !super::need_root("run a listing as another user") {
        return None;
    }
    static CALLS: std::sync::atomic::AtomicU32 =
        std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Below 65534, `nobody`, which a container's map of users may end at,
    // and below the fixed uids of single tests (54320 and up).
    let id =
        THREAD_LIMIT_UIDS.start + (std::process::id() % 200) * 100 + call % 100;
    Some(process_limited_as(id, command, threads))
}

/// The program that `command` starts, made to run as user `uid` (and
/// group `uid`, with no other groups), allowed `processes` processes and
/// threads in all (`ulimit -u`, which counts every one of the user's,
/// zombies too): the caller picks a user that nothing else runs as, and
/// must be root. The program is a link (or a copy) in a directory of its
/// own that the user may enter (the checkout may be in one only we may
/// enter: CI clones into one), kept as long as the directory returned.
/// Set between `fork` and `exec`, before the harness's own settings, so
/// that the death signal outlives the change of user.
pub fn process_limited_as(
    uid: u32,
    command: &Command,
    processes: u64,
) -> (Command, tempfile::TempDir) {
    let (copy, dir) = reachable_by_anyone(Path::new(command.get_program()));
    let mut limited = Command::new(&copy);
    limited.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => limited.env(key, value),
            None => limited.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        limited.current_dir(dir);
    }
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(uid),
        nix::unistd::Gid::from_raw(uid),
    );
    // SAFETY: runs between fork and exec; `setrlimit`, `setgroups`,
    // `setgid` and `setuid` are single system calls, async-signal-safe,
    // and their errors are raw errnos: nothing allocates.
    unsafe {
        limited.pre_exec(move || {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            // Lowered after the change of user: set before, it would
            // count the user we leave.
            setrlimit(Resource::RLIMIT_NPROC, processes, processes)?;
            Ok(())
        });
    }
    (limited, dir)
}

/// Starts the listing that `command` makes as a user allowed one thread,
/// then two: the system refuses tokio's first worker thread, then its
/// second, and `build` panics. Asks for the one-line error of every
/// listing, status 1, and an end within the harness's patience (with two
/// threads, tokio's unwinding waited for the worker it had started,
/// forever).
#[track_caller]
pub fn assert_says_why_when_threads_are_refused(command: impl Fn() -> Command) {
    for threads in [1, 2] {
        let Some((mut command, _dir)) = with_thread_limit(&command(), threads)
        else {
            return;
        };
        let bin = Path::new(command.get_program()).to_owned();
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let what = format!("{name} under ulimit -u {threads}");
        let mut listing = Listing::spawn(&mut command, Stdio::piped());
        let first = listing.next_line_or_exit();
        let out = listing.finish();
        assert_eq!(first, None, "{what}: started");
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {:?} {}",
            out.status,
            out.stderr
        );
        let lines: Vec<_> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line: {:?}", out.stderr);
        let start = format!("{name}: cannot start tokio's runtime: ");
        assert!(lines[0].starts_with(&start), "{what}: {}", lines[0]);
    }
}

/// `program` where another user may run it: the checkout may be in a
/// directory only we may enter (CI clones into one). A second name for the
/// same file, in a directory of its own that anyone may enter, kept as
/// long as the directory returned; a copy only where the file system
/// refuses the link. (A copy is a file open for writing while other tests
/// fork, and a child that inherits it until its `exec` makes ours fail
/// with ETXTBSY.)
pub fn reachable_by_anyone(program: &Path) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let copy = dir.path().join(program.file_name().expect("a program"));
    if std::fs::hard_link(program, &copy).is_err() {
        std::fs::copy(program, &copy).expect("a copy of the listing");
    }
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("a directory others may enter");
    (copy, dir)
}
