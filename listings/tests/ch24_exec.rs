//! Chapter 24, fork, dup2 and exec by hand beside `Command`: Listings 24-1
//! (`proc-exec`) and 24-2 (`proc-pre-exec`).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    Listing, assert_rejects, assert_session_matches_book, bin_path, cargo_run,
    children_of, finish_clean, have, is_dead, kernel, run_clean, shell,
    state_of, threads_blocked_in, wait_until, wchan_of, with_thread_limit,
    write_program,
};

/// What `proc-exec` says about `cat`: the lines after the one that
/// names how it was started.
fn cat_report(way: &str) -> Vec<String> {
    let out = run_clean(bin!("proc-exec"), &[way]);
    assert!(out.status.success(), "{way}: {}", out.stderr);
    let at = out
        .stdout
        .iter()
        .position(|line| line.starts_with("cat, started by"))
        .expect("a line about cat");
    out.stdout[at + 1..].to_vec()
}

#[test]
fn proc_exec_by_hand_passes_on_the_mask_ignored_signals_and_leaks() {
    assert_eq!(
        cat_report("fork"),
        [
            "  blocked: SIGUSR1",
            "  ignored: SIGUSR2 SIGPIPE",
            "  caught: none",
            "  descriptors: 0 1 2",
            "  from pipe(): 3 4",
            "  from pipe2(O_CLOEXEC): none",
        ]
    );
}

#[test]
fn proc_exec_command_restores_sigpipe_and_nothing_else() {
    // std resets SIGPIPE to its default in the child; the signal mask and
    // every other ignored signal pass through, as they do by hand.
    assert_eq!(
        cat_report("command"),
        [
            "  blocked: SIGUSR1",
            "  ignored: SIGUSR2",
            "  caught: none",
            "  descriptors: 0 1 2",
            "  from pipe(): 3 4",
            "  from pipe2(O_CLOEXEC): none",
        ]
    );
}

#[test]
fn proc_exec_output_matches_the_book() {
    let command = run_clean(bin!("proc-exec"), &["command"]);
    let fork = run_clean(bin!("proc-exec"), &["fork"]);
    assert_session_matches_book(
        "ch24-exec/24-01-proc-exec.out",
        &[
            (cargo_run("proc-exec", &["command"]), &command.stdout[..]),
            (cargo_run("proc-exec", &["fork"]), &fork.stdout[..]),
        ],
    );
}

#[test]
fn proc_exec_by_hand_reports_a_failed_exec_through_its_cloexec_pipe() {
    // A directory whose `cat` is there but cannot run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cat"), "not a program").unwrap();
    let unrunnable = format!("{}:/nonexistent", dir.path().display());
    // One whose `cat` is a link to itself, before the real one: execvp
    // stops at the first error that is not "not here" (ELOOP), and so
    // must the listing, which used to try on and run /usr/bin/cat.
    let looped = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("cat", looped.path().join("cat")).unwrap();
    let looped = format!("{}:/usr/bin:/bin", looped.path().display());
    // A PATH whose last entry is a file, not a directory: execvp keeps
    // the error of the last place it tried (ENOTDIR), not ENOENT, and so
    // must the listing, which used to say ENOENT whatever it met.
    let file = tempfile::NamedTempFile::new().unwrap();
    let not_a_dir = format!("/nonexistent:{}", file.path().display());
    for (path, why) in [
        ("/nonexistent", "No such file or directory (os error 2)"),
        (&not_a_dir[..], "Not a directory (os error 20)"),
        (&unrunnable[..], "Permission denied (os error 13)"),
        (
            &looped[..],
            "Too many levels of symbolic links (os error 40)",
        ),
    ] {
        for (way, error) in [
            ("fork", format!("proc-exec: cannot run cat: {why}\n")),
            ("command", format!("proc-exec: cannot run cat: {why}\n")),
        ] {
            let mut command = Command::new(bin_path("proc-exec"));
            command.arg(way).env("PATH", path);
            let listing = Listing::spawn(&mut command, Stdio::piped());
            let out = finish_clean(listing);
            assert_eq!(out.status.code(), Some(1), "{way} {path}");
            assert_eq!(out.stderr, error, "{way} {path}");
        }
    }
}

/// A `cat` that runs but is not `cat` (here `false`, which exits 1
/// without reading), and one that dies of a real-time signal (a script
/// that kills itself with SIGRTMIN): the listing's proof that `cat`
/// runs, the line sent and read back, must fail, and say how the child
/// ended. It used to describe the dead process as `cat` and exit 0
/// (`command`), or take the EPIPE of its write to `cat` for a closed
/// stdout of its own and exit 0 in silence (`fork`); and it reaped with
/// nix's `waitpid`, which names no real-time signal and failed with
/// EINVAL ("proc-exec: EINVAL: Invalid argument"), both ways.
#[test]
fn proc_exec_fails_when_cat_does_not_echo_its_line() {
    let Some(false_program) = ["/usr/bin/false", "/bin/false"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
    else {
        return;
    };
    // A link, not a copy: no file open for writing that a child forked
    // by another test could hold while this one execs it (ETXTBSY).
    let exits = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(false_program, exits.path().join("cat"))
        .unwrap();
    // Written by another process (`write_program`), for the same reason.
    let killed = tempfile::tempdir().unwrap();
    write_program(&killed.path().join("cat"), "#!/bin/sh\nkill -s RTMIN $$\n");
    let rtmin = nix::libc::SIGRTMIN();
    for (dir, ended) in [
        (&exits, "exit status: 1".to_string()),
        (&killed, format!("signal: {rtmin}")),
    ] {
        for way in ["fork", "command"] {
            let mut command = Command::new(bin_path("proc-exec"));
            command.arg(way).env("PATH", dir.path());
            let listing = Listing::spawn(&mut command, Stdio::piped());
            let out = finish_clean(listing);
            assert_eq!(out.status.code(), Some(1), "{way}: {}", out.stderr);
            assert_eq!(
                out.stderr,
                format!("proc-exec: cat did not echo our line: {ended}\n"),
                "{way}"
            );
        }
    }
}

/// A `cat` that reads its input and does not echo it line by line (here
/// `sort`, which answers only at the end of its input): the line never
/// comes back, and the listing, which keeps `cat`'s stdin open while it
/// waits, must give up after its limit, kill the stand-in and reap it. It
/// used to wait for the line for ever, both ways.
#[test]
fn proc_exec_gives_up_on_a_cat_that_never_echoes() {
    let Some(sort) = ["/usr/bin/sort", "/bin/sort"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
    else {
        return;
    };
    // A link, as above.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(sort, dir.path().join("cat")).unwrap();
    for way in ["fork", "command"] {
        let mut command = Command::new(bin_path("proc-exec"));
        command.arg(way).env("PATH", dir.path());
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert_eq!(out.status.code(), Some(1), "{way}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(
                "proc-exec: cat did not echo our line within 5 s: "
            ) && out.stderr.contains("SIGKILL")
                && out.stderr.lines().count() == 1,
            "{way}: {}",
            out.stderr
        );
    }
}

/// A report that cannot be written once `cat` runs: the reader of the
/// listing's stdout leaves after the line `cat, started by …`, and only
/// then does a stand-in `cat`, first on PATH, echo the line the listing
/// sent (it waits for a word on a FIFO first). The listing's next write
/// fails with EPIPE, and it ends quietly, as it does at `| head`; but it
/// must reap `cat` first, as strace's one `wait4` that returns a pid
/// shows. It used to return at once and leave `cat` to whoever adopted it.
#[test]
fn proc_exec_reaps_cat_when_its_report_cannot_be_written() {
    use std::io::BufRead;
    use std::os::unix::fs::OpenOptionsExt;
    if !have("strace") {
        return;
    }
    // `wait4(PID, …) = PID`, whole or resumed after other lines.
    let returned = regex::Regex::new(r"wait4.* = [1-9][0-9]*$").unwrap();
    for (way, started) in [
        ("fork", "cat, started by fork, dup2 and execv:"),
        ("command", "cat, started by Command:"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        nix::unistd::mkfifo(&go, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let cat = dir.path().join("cat");
        write_program(
            &cat,
            &format!(
                "#!/bin/sh\nIFS= read -r line\nread word < '{}'\n\
                 printf '%s\\n' \"$line\"\n\
                 while IFS= read -r line; do printf '%s\\n' \"$line\"; done\n",
                go.display()
            ),
        );
        let trace = dir.path().join("trace");
        let (read_end, write_end) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let path = std::env::var("PATH").unwrap_or_default();
        let mut command = Command::new("strace");
        command
            .args(["-f", "-qq", "-e", "trace=wait4", "-o"])
            .arg(&trace)
            .arg(bin_path("proc-exec"))
            .arg(way)
            .env("PATH", format!("{}:{path}", dir.path().display()));
        let listing = Listing::spawn(&mut command, write_end.into());
        drop(command);
        let mut lines = std::io::BufReader::new(std::fs::File::from(read_end));
        let mut line = String::new();
        while line.trim_end() != started {
            line.clear();
            assert!(lines.read_line(&mut line).unwrap() > 0, "{way}");
        }
        drop(lines); // The reader leaves...
        // ...and only now does the stand-in echo.
        // Non-blocking, so that the test cannot hang: ENXIO until the
        // stand-in opens the FIFO to read.
        let mut writer = None;
        wait_until("the stand-in cat to open its FIFO", || {
            writer = std::fs::File::options()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&go)
                .ok();
            writer.is_some()
        });
        std::io::Write::write_all(&mut writer.unwrap(), b"go\n").unwrap();
        let out = finish_clean(listing);
        assert!(out.status.success(), "{way}: {}", out.stderr);
        assert_eq!(out.stderr, "", "{way}");
        let trace = std::fs::read_to_string(&trace).unwrap();
        let reaped = trace.lines().filter(|l| returned.is_match(l)).count();
        assert_eq!(reaped, 1, "{way}: {trace}");
    }
}

/// What `fork` does not copy (fork(2)): the child starts with no pending
/// signal, no alarm, and none of its parent's process-associated record
/// locks, but it shares the open file description locks. Shown with
/// Python, whose `os.fork` is the plain system call, since a Rust test
/// must not fork (the harness has threads). Each side reads its timer
/// with `getitimer`, which leaves it running: the first version asked
/// `alarm(0)`, which cancels it, so the parent forked with no alarm left
/// and the child's 0 proved nothing.
#[test]
fn fork_leaves_pending_signals_the_alarm_and_record_locks_behind() {
    if !have("python3") {
        return;
    }
    let script = r#"
import fcntl, os, signal, struct, sys, tempfile
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.kill(os.getpid(), signal.SIGUSR1)
signal.alarm(3600)
lock = tempfile.TemporaryFile()
fcntl.lockf(lock, fcntl.LOCK_EX)
def alarm_set():
    return signal.getitimer(signal.ITIMER_REAL)[0] > 0
print("parent", sorted(s.name for s in signal.sigpending()), alarm_set())
pid = os.fork()
if pid == 0:
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = "got the lock"
    except OSError:
        locked = "lock held by the parent"
    print("child", sorted(s.name for s in signal.sigpending()), alarm_set(), locked)
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
# An open file description lock (F_OFD_SETLK) is the description's, which
# the child shares: with the parent's descriptor closed, the child's copy
# still holds it against another open, until the child closes it too.
def ofd_lock(fd):
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 here).
    try:
        flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 10, 0)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, flock)
        return "free"
    except OSError:
        return "held"
ofd = tempfile.TemporaryFile()
ofd_lock(ofd.fileno())
closed_r, closed_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(closed_w)
    os.read(closed_r, 1)
    other = os.open(f"/proc/self/fd/{ofd.fileno()}", os.O_RDWR)
    shared = ofd_lock(other)
    ofd.close()
    print("child ofd lock", shared, "then", ofd_lock(other))
    sys.stdout.flush()
    os._exit(0)
ofd.close()
os.close(closed_w)
os.waitpid(pid, 0)
"#;
    let out = run_clean("python3", &["-c", script]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "parent ['SIGUSR1'] True",
            "child [] False lock held by the parent",
            "child ofd lock held then free",
        ],
        "Linux {}",
        kernel()
    );
}

/// A C library to preload that ends a child with status 99, and says
/// so, if it calls malloc, calloc, realloc or one of the aligned
/// allocators between `fork` and `exec`: its `pthread_atfork` handler
/// marks the child, and `exec` starts the next program without the mark.
/// Its constructor takes LD_PRELOAD out of the environment, so that the
/// programs the listing starts run without it: a shell stage's own forks
/// are the shell's business, not the listing's.
/// Rust's default allocator, `System`, calls malloc, calloc and realloc,
/// and posix_memalign for an alignment above 16 bytes or larger than the
/// size; the preloaded functions stand in front of all of them.
const NO_MALLOC_AFTER_FORK: &str = r#"
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static volatile int forked;
static void in_child(void) { forked = 1; }
__attribute__((constructor)) static void init(void) {
    unsetenv("LD_PRELOAD");
    pthread_atfork(NULL, NULL, in_child);
}
static void caught(void) {
    static const char msg[] = "allocation between fork and exec\n";
    write(2, msg, sizeof msg - 1);
    _exit(99);
}
void *malloc(size_t n) { if (forked) caught(); return __libc_malloc(n); }
void *calloc(size_t n, size_t m) {
    if (forked) caught();
    return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
    if (forked) caught();
    return __libc_realloc(p, n);
}
void *memalign(size_t align, size_t n) {
    if (forked) caught();
    return __libc_memalign(align, n);
}
void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
int posix_memalign(void **p, size_t align, size_t n) {
    if (align % sizeof(void *) != 0 || (align & (align - 1)) != 0)
        return EINVAL;
    void *got = memalign(align, n);
    if (got == NULL) return ENOMEM;
    *p = got;
    return 0;
}
"#;

/// A run of a listing that reaches its `pre_exec` hooks, short and
/// bounded: the listing, its arguments and, for one that waits for a
/// signal, the start of the line after which the test sends it, and the
/// status it then exits with.
type HookRun = (
    &'static str,
    &'static [&'static str],
    Option<(&'static str, nix::sys::signal::Signal, i32)>,
);

/// One run for each listing whose source has a `pre_exec` hook, and 24-1,
/// which forks by hand: `every_pre_exec_hook_is_checked_for_allocations`
/// fails on a listing that has a hook and no row here, in
/// `HOOKS_RUN_AT_A_TERMINAL` or in `HOOKS_NOT_RUN`. 24-2's `lock` is left out: its hook
/// deadlocks on purpose, and the watchdog kills the child in it.
const HOOK_RUNS: &[HookRun] = {
    use nix::sys::signal::Signal::{SIGTERM, SIGUSR1};
    &[
        ("sig-restart-table", &[], None),
        ("sig-zombie", &["--std"], Some(("Then reap it", SIGUSR1, 0))),
        ("sig-reaper", &["--command", "--own"], None),
        (
            "sig-init",
            &["--forward"],
            Some(("Child: running as pid", SIGTERM, 143)),
        ),
        (
            "net-load",
            &[
                "--clients",
                "1",
                "--rounds",
                "1",
                "--idle",
                "1",
                "--garbage",
                "1",
                "--record",
                "/dev/null",
            ],
            None,
        ),
        ("net-handover", &[], None),
        ("pipe-epipe", &[], None),
        ("pipe-leak", &["--cloexec"], None),
        ("spawn-pipeline", &["true", "|", "true"], None),
        ("spawn-deadlock", &["thread", "--bytes", "10"], None),
        ("spawn-grandchild", &["--cloexec", "--group"], None),
        ("proc-exec", &["fork"], None),
        ("proc-pre-exec", &["alarm"], None),
        ("proc-pre-exec", &["chdir", "/"], None),
        ("proc-orphans", &["pdeathsig", "--for", "0"], None),
        ("async-child-feed", &["join", "--bytes", "10"], None),
        ("async-child-kill", &["timeout"], None),
        ("async-block", &["wait", "--secs", "0"], None),
    ]
};

/// The listings with a hook that the check cannot run, and why.
const HOOKS_NOT_RUN: &[(&str, &str)] = &[(
    "sig-inherit",
    "its run of six ways also forks by hand, in a program with one \
     thread: the child of `fork + exec` calls nix's `execvp`, which \
     builds its array of pointers in a `Vec`, and the child of `fork \
     alone` reads a file without any `exec`; the library ends both",
)];

/// The listings whose hooks are run at a terminal, by `script`: 9-6 needs
/// one, and 23-1 adds a hook there, which gives the stages the terminal.
const HOOKS_RUN_AT_A_TERMINAL: &[&str] = &["sig-jobs", "spawn-pipeline"];

/// A program that allocates in the child of its `fork`: the library must
/// end that child with status 99.
const ALLOCATES_AFTER_FORK: &str = r#"
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int status;
    pid_t child = fork();
    if (child == 0) {
        void *volatile got = malloc(100);
        (void)got;
        _exit(0);
    }
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
"#;

/// Every listing that runs code of its own between `fork` and `exec`
/// allocates nothing there, as Chapter 24's rule 2 asks. nix's `execvp`
/// did: the first version of Listing 24-1 was caught.
#[test]
fn listings_allocate_nothing_between_fork_and_exec() {
    if !have("cc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("no-malloc-after-fork.c");
    let library = dir.path().join("no-malloc-after-fork.so");
    std::fs::write(&source, NO_MALLOC_AFTER_FORK).unwrap();
    let built = Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    // The library catches an allocation: a C program's child that calls
    // malloc after `fork` ends with status 99.
    let control = dir.path().join("allocates-after-fork");
    let control_source = dir.path().join("allocates-after-fork.c");
    std::fs::write(&control_source, ALLOCATES_AFTER_FORK).unwrap();
    let built = Command::new("cc")
        .arg("-o")
        .arg(&control)
        .arg(&control_source)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let caught = Command::new(&control)
        .env("LD_PRELOAD", &library)
        .output()
        .unwrap();
    assert_eq!(caught.status.code(), Some(99), "{caught:?}");
    for (bin, args, signal_after) in HOOK_RUNS {
        let mut command = Command::new(bin_path(bin));
        command.args(*args).env("LD_PRELOAD", &library);
        let mut listing = Listing::spawn(&mut command, Stdio::piped());
        let mut code = 0;
        if let Some((line, signal, then)) = signal_after {
            while !listing.next_line().starts_with(line) {}
            listing.signal(*signal);
            code = *then;
        }
        let out = finish_clean(listing);
        assert!(
            !out.stderr.contains("allocation between fork and exec"),
            "{bin} {args:?}: {}",
            out.stderr
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "{bin} {args:?}: {}",
            out.stderr
        );
        assert!(!out.stdout.is_empty() || *bin == "spawn-pipeline");
    }
    // Listing 23-1 adds a second hook at a terminal, which gives the
    // stages the terminal: `script` runs it at a terminal of its own,
    // with the library preloaded into the listing alone.
    if !have("script") {
        return;
    }
    let line = format!(
        "env LD_PRELOAD={} {} true '|' true",
        library.display(),
        bin_path("spawn-pipeline").display()
    );
    let mut command = Command::new("script");
    command.args(["-qec", &line, "/dev/null"]);
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(
        !out.stdout
            .join("\n")
            .contains("allocation between fork and exec"),
        "spawn-pipeline at a terminal: {:?}",
        out.stdout
    );
    assert!(out.status.success(), "{:?} {}", out.stdout, out.stderr);
    // Listing 9-6 starts its job, itself with `--job`, only at a terminal;
    // the job's first line shows that it got past its hook to `exec`. It
    // then waits for keys: the test ends it by killing `script`, whose
    // terminal hangs up on the job and its shell.
    let line = format!(
        "env LD_PRELOAD={} {}",
        library.display(),
        bin_path("sig-jobs").display()
    );
    let mut command = Command::new("script");
    command.args(["-qec", &line, "/dev/null"]);
    let mut jobs = Listing::spawn(&mut command, Stdio::piped());
    loop {
        let shown = jobs.next_line();
        assert!(
            !shown.contains("allocation between fork and exec"),
            "sig-jobs: {shown}"
        );
        if shown.starts_with("Job: reading the terminal") {
            break;
        }
    }
}

#[test]
fn command_uses_posix_spawn_unless_pre_exec_needs_a_fork() {
    if !have("strace") {
        return;
    }
    let dir = bin_path("proc-exec")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let mut session = Vec::new();
    for args in ["proc-exec command", "proc-pre-exec alarm"] {
        let shown = format!(
            "strace -f -e trace=clone,clone3 target/debug/{args} 2>&1 \
             >/dev/null | grep -o 'clone3\\?(.*flags=[A-Z_|]*'"
        );
        let output = shell(&shown.replace("target/debug", &dir));
        session.push((shown, output));
    }
    // glibc's posix_spawn: a clone that shares memory (CLONE_VM) and
    // stops the parent until exec (CLONE_VFORK). A plain fork shares
    // nothing.
    assert_eq!(session[0].1, ["clone3({flags=CLONE_VM|CLONE_VFORK"]);
    assert!(session[1].1[0].starts_with("clone(child_stack=NULL, flags="));
    assert!(!session[1].1[0].contains("CLONE_VM"));
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch24-exec/24-01-strace.out", &session);
}

#[test]
fn proc_pre_exec_alarm_set_before_exec_kills_sleep() {
    let started = Instant::now();
    let out = run_clean(bin!("proc-pre-exec"), &["alarm"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        ["sleep 5, with alarm(1) in pre_exec: killed by SIGALRM"]
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn proc_pre_exec_chdir_error_comes_back_from_spawn() {
    let out = run_clean(bin!("proc-pre-exec"), &["chdir", "/"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "/",
            r#"pwd, with chdir("/") in pre_exec: exited with status 0"#
        ]
    );
    let out = run_clean(bin!("proc-pre-exec"), &["chdir", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        "proc-pre-exec: cannot start pwd: No such file or directory (os \
         error 2)\n"
    );
}

#[test]
fn proc_pre_exec_println_waits_forever_for_a_lock_held_by_another_thread() {
    let started = Instant::now();
    let out = run_clean(bin!("proc-pre-exec"), &["lock"]);
    assert!(out.status.success(), "{}", out.stderr);
    // The child never printed, never reached exec: the watchdog killed
    // it two seconds later.
    assert_eq!(
        out.stdout,
        ["true, with println! in pre_exec: killed by SIGKILL"]
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// Killed while its watchdog waits, the listing leaves no child stuck on
/// the lock: the child dies with it.
#[test]
fn proc_pre_exec_lock_child_dies_with_its_parent() {
    let listing = Listing::start(bin!("proc-pre-exec"), &["lock"]);
    let parent = listing.pid();
    wait_until("the child to wait for the lock", || {
        children_of(parent)
            .iter()
            .any(|&child| wchan_of(child).contains("futex"))
    });
    listing.signal(nix::sys::signal::Signal::SIGTERM);
    let out = finish_clean(listing);
    assert_eq!(out.status.signal(), Some(nix::libc::SIGTERM));
}

/// The race that the `lock` hook's `getppid` check closes: the listing
/// dies after `fork`, before its child has asked for `PR_SET_PDEATHSIG`,
/// so that no signal will ever come, and the child would go on to wait
/// for the lock on stdout for good. strace holds the child for two seconds
/// on its way into `prctl`, its only call to it, and the listing is
/// killed then. The child must end in its hook; with the check left out,
/// it waited on the lock (a futex). Linux 6.18 here.
#[test]
fn proc_pre_exec_lock_child_ends_when_its_parent_died_before_it_asked() {
    if !have("strace") {
        return;
    }
    let mut command = Command::new("strace");
    command
        .args(["-f", "-q", "-o", "/dev/null", "--seccomp-bpf"])
        .args(["-e", "trace=prctl", "-e", "signal=none"])
        .arg("--inject=prctl:delay_enter=2000000")
        .arg("--")
        .arg(bin!("proc-pre-exec"))
        .arg("lock");
    let traced = Listing::spawn(&mut command, Stdio::piped());
    let mut held = None;
    wait_until("the child to be held on its way into prctl", || {
        let Some(&parent) = children_of(traced.pid()).first() else {
            return false;
        };
        held = children_of(parent)
            .first()
            .copied()
            .filter(|&child| {
                threads_blocked_in(child, nix::libc::SYS_prctl) == 1
                    && state_of(child) == Some('t')
            })
            .map(|child| (parent, child));
        held.is_some()
    });
    let (parent, child) = held.unwrap();
    nix::sys::signal::kill(parent, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("the child to end, or to wait for the lock", || {
        is_dead(child) || wchan_of(child).contains("futex")
    });
    let survived = !is_dead(child);
    drop(traced); // Kills the group, a stuck child with it.
    assert!(
        !survived,
        "{child} waited for the lock, its parent dead (Linux {})",
        kernel()
    );
}

#[test]
fn proc_pre_exec_output_matches_the_book() {
    let mut session = Vec::new();
    for args in [
        &["alarm"][..],
        &["chdir", "/tmp"],
        &["chdir", "/nonexistent"],
        &["lock"],
    ] {
        let out = run_clean(bin!("proc-pre-exec"), args);
        let mut lines = out.stdout;
        lines.extend(out.stderr.lines().map(String::from));
        assert!(out.status.signal().is_none());
        session.push((cargo_run("proc-pre-exec", args), lines));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch24-exec/24-02-proc-pre-exec.out", &session);
}

#[test]
fn command_makes_its_own_pipes_close_on_exec() {
    use std::os::fd::AsRawFd;
    const O_CLOEXEC: u32 = 0o2000000;
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ours = [
        cat.stdin.as_ref().unwrap().as_raw_fd(),
        cat.stdout.as_ref().unwrap().as_raw_fd(),
    ];
    for fd in ours {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags =
            info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
        let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
        assert_ne!(flags & O_CLOEXEC, 0, "fd {fd}: {flags:o}");
    }
    drop(cat.stdin.take());
    assert!(cat.wait().unwrap().success());
}

/// A pipe that std makes for `Stdio::piped()`, or the /dev/null it opens
/// for `Stdio::null()`, is not moved off 0, 1 or 2: in a program that has
/// closed its descriptor 0, the child's stdin is opened as that 0. glibc's `posix_spawn` clears close-on-exec for
/// `adddup2(0, 0)`; std's fork path calls `dup2(0, 0)`, which leaves it,
/// so `exec` closes `cat`'s stdin, and `cat` fails with EBADF. Reopened on
/// /dev/null first, 0 is taken and the pipe lands above 2. The test
/// binary runs again as the child, started with 0 closed (`exec 0<&-`),
/// which std's runtime reopens on /dev/null before `main`: the child
/// closes it itself. Were the pipe moved above 2, as the chapter once
/// said, the `fork` line would read `[hello]` and exit 0. Linux 6.18 and
/// glibc 2.36 here.
#[test]
fn a_stdin_pipe_on_a_closed_descriptor_0_survives_posix_spawn_but_not_a_fork() {
    const IN_CHILD: &str = "CH24_STDIN_PIPE_ON_0";
    if std::env::var_os(IN_CHILD).is_some() {
        feed_cat_after_closing_descriptor_0();
        return;
    }
    let exe = std::env::current_exe().expect("this test binary");
    let name = "ch24_exec::\
                a_stdin_pipe_on_a_closed_descriptor_0_survives_posix_spawn_but_not_a_fork";
    let mut command = Command::new("sh");
    command
        .args(["-c", r#"exec "$0" "$@" 0<&-"#])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1");
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    // SAFETY: glibc returns a static, nul-terminated string.
    let glibc =
        unsafe { std::ffi::CStr::from_ptr(nix::libc::gnu_get_libc_version()) };
    let here = format!("Linux {}, glibc {}", kernel(), glibc.to_string_lossy());
    // libtest's own lines come around the child's, which begin "= ".
    let said: Vec<_> = out
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("= "))
        .collect();
    assert_eq!(
        said,
        [
            "started: 0 is /dev/null",
            "closed 0, posix_spawn: cat echoed [hello], exit 0",
            "closed 0, fork: cat echoed [], exit 1, cat: -: Bad file descriptor",
            "closed 0, fork, null: cat echoed [], exit 1, cat: -: Bad file descriptor",
            "0 on /dev/null, fork: cat echoed [hello], exit 0",
        ],
        "{here}"
    );
}

/// The child of the test above: `cat` fed one line through
/// `Stdio::piped()`, after it closes descriptor 0, with and without a
/// `pre_exec` hook (an empty one, which only makes std fork), with
/// `Stdio::null()` and a hook, and again with a pipe and a hook once 0 is
/// /dev/null.
fn feed_cat_after_closing_descriptor_0() {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    use std::os::unix::process::CommandExt;
    let fd0 = || match std::fs::read_link("/proc/self/fd/0") {
        Ok(path) => path.display().to_string(),
        Err(_) => "closed".to_string(),
    };
    // After a newline: libtest has begun a line that names the test.
    println!("\n= started: 0 is {}", fd0());
    nix::unistd::close(0).expect("close 0");
    let cat = |stdin: Stdio, hook: bool| {
        let mut command = Command::new("cat");
        command
            .env("LC_ALL", "C")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if hook {
            // SAFETY: the hook does nothing.
            unsafe { command.pre_exec(|| Ok(())) };
        }
        let mut cat = command.spawn().expect("cat");
        // EPIPE when cat's stdin is closed: its report says so.
        if let Some(mut pipe) = cat.stdin.take() {
            let _ = pipe.write_all(b"hello\n");
        }
        let out = cat.wait_with_output().expect("cat's end");
        let mut report = format!(
            "cat echoed [{}], exit {}",
            String::from_utf8_lossy(&out.stdout).trim_end(),
            out.status.code().map_or("none".into(), |c| c.to_string())
        );
        if let Some(first) = String::from_utf8_lossy(&out.stderr).lines().next()
        {
            report = format!("{report}, {first}");
        }
        report
    };
    println!("= closed 0, posix_spawn: {}", cat(Stdio::piped(), false));
    println!("= closed 0, fork: {}", cat(Stdio::piped(), true));
    println!("= closed 0, fork, null: {}", cat(Stdio::null(), true));
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .expect("/dev/null");
    assert_eq!(null.into_raw_fd(), 0, "the lowest free descriptor");
    println!("= 0 on /dev/null, fork: {}", cat(Stdio::piped(), true));
}

/// std sends the parent only the errno of a hook's error: one that has
/// none, an `ErrorKind` made into an `io::Error` here, comes back from
/// `spawn` as EINVAL, its kind lost.
#[test]
fn a_pre_exec_error_without_an_errno_comes_back_as_einval() {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("true");
    // SAFETY: the hook only returns an error that holds no allocation.
    unsafe {
        command.pre_exec(|| Err(std::io::ErrorKind::PermissionDenied.into()))
    };
    let err = command.spawn().map(|_| ()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EINVAL), "{err}");
}

#[test]
fn exec_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("proc-exec"), &[], "command or fork?");
    assert_rejects(bin!("proc-exec"), &["spawn"], "unknown way");
    assert_rejects(bin!("proc-pre-exec"), &["chdir"], "needs a directory");
    assert_rejects(
        bin!("proc-pre-exec"),
        &["lock", "now"],
        "takes no argument",
    );
}

/// A program that cannot start, with nothing on PATH: the one line names
/// it, as `chdir` always did. `alarm` used to say only "No such file or
/// directory", which names no file.
#[test]
fn proc_pre_exec_names_the_program_it_cannot_start() {
    let empty = tempfile::tempdir().unwrap();
    for (args, program) in [(&["alarm"][..], "sleep"), (&["chdir", "/"], "pwd")]
    {
        let mut command = Command::new(bin_path("proc-pre-exec"));
        command.args(args).env("PATH", empty.path());
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!(
                "proc-pre-exec: cannot start {program}: No such file or \
                 directory (os error 2)\n"
            ),
            "{args:?}"
        );
    }
}

/// `lock` needs a second thread, which the system may refuse (`ulimit -u`
/// counts threads): one line, where `thread::spawn` panicked (exit 101).
#[test]
fn proc_pre_exec_lock_says_why_when_its_thread_is_refused() {
    let mut command = Command::new(bin_path("proc-pre-exec"));
    command.arg("lock");
    let Some((mut command, _dir)) = with_thread_limit(&command, 1) else {
        return;
    };
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "proc-pre-exec: cannot start a thread: Resource temporarily \
         unavailable (os error 11)\n"
    );
}

/// `sleep` inherits the mask and the ignored signals of `proc-pre-exec`,
/// which inherited them from its own parent: the hook gives SIGALRM its
/// default action and unblocks it, or `sleep` would ignore the alarm, or
/// never receive it, and sleep its five seconds. `env` plays a parent
/// that ignored or blocked it.
#[test]
fn proc_pre_exec_alarm_kills_sleep_whatever_the_parent_did_with_sigalrm() {
    for how in ["--ignore-signal=ALRM", "--block-signal=ALRM"] {
        let started = Instant::now();
        let mut command = Command::new("env");
        command.arg(how).arg(bin!("proc-pre-exec")).arg("alarm");
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        let took = started.elapsed();
        assert!(out.status.success(), "{how}: {}", out.stderr);
        assert_eq!(
            out.stdout,
            ["sleep 5, with alarm(1) in pre_exec: killed by SIGALRM"],
            "{how}"
        );
        assert!(took < Duration::from_secs(5), "{how}: {took:?}");
    }
}

/// A parent may leave a real-time signal blocked and pending, or ignored,
/// and `exec` keeps both. `clean_slate` must throw the pending one away
/// before it empties the mask, since SIGRTMIN's default action, like that
/// of every real-time signal, ends the process; and give the ignored one
/// its default back, or `cat` inherits it. A stand-in `cat`, first on
/// PATH, says on stderr what it ignores, then runs the real one. The first
/// version looked at the standard signals alone: the listing died of
/// SIGRTMIN, and `cat` ignored it.
#[test]
fn proc_exec_clears_real_time_signals_its_parent_left_pending_or_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("cat");
    write_program(
        &cat,
        "#!/bin/sh\nsed -n 's/^SigIgn:/cat ignores/p' /proc/$$/status >&2\n\
         PATH=${PATH#*:}\nexec cat\n",
    );
    let path = std::env::var("PATH").unwrap_or_default();
    let rtmin_bit = 1u64 << (nix::libc::SIGRTMIN() - 1);
    for way in ["command", "fork"] {
        for how in ["pending", "ignored"] {
            let mut command = Command::new("env");
            if how == "pending" {
                command.arg("--block-signal=RTMIN").args([
                    "sh",
                    "-c",
                    "kill -s RTMIN $$ && exec \"$0\" \"$@\"",
                ]);
            } else {
                command.arg("--ignore-signal=RTMIN");
            }
            command
                .arg(bin_path("proc-exec"))
                .arg(way)
                .env("PATH", format!("{}:{path}", dir.path().display()));
            let out =
                finish_clean(Listing::spawn(&mut command, Stdio::piped()));
            assert!(
                out.status.success(),
                "{way}, RTMIN {how}: {:?}",
                out.status
            );
            let ignores = out
                .stderr
                .lines()
                .find_map(|l| l.strip_prefix("cat ignores"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                .unwrap_or_else(|| {
                    panic!("{way}, RTMIN {how}: {}", out.stderr)
                });
            assert_eq!(ignores & rtmin_bit, 0, "{way}, RTMIN {how}");
        }
    }
}

/// glibc's `posix_spawn` (`spawni.c`) sets the two signals that glibc
/// keeps for itself, 32 and 33, to be ignored in the child, and exec keeps
/// that; std's fork path leaves the child whatever its parent has, here
/// this test's own disposition, which may be ignored too if `cargo test`
/// was itself started by `posix_spawn`. Seen with glibc 2.36.
#[test]
fn posix_spawn_starts_a_child_with_glibcs_own_signals_ignored() {
    use std::os::unix::process::CommandExt;
    fn sig_ign(status: &str) -> u64 {
        let hex = status
            .lines()
            .find_map(|line| line.strip_prefix("SigIgn:"))
            .expect("a SigIgn line");
        u64::from_str_radix(hex.trim(), 16).expect("a hexadecimal mask")
    }
    fn child_sig_ign(command: &mut Command) -> u64 {
        let out = command.args(["SigIgn", "/proc/self/status"]).output();
        sig_ign(&String::from_utf8_lossy(&out.expect("grep").stdout))
    }
    let glibcs_own = 0b11u64 << 31; // Signals 32 and 33.
    let ours = sig_ign(&std::fs::read_to_string("/proc/self/status").unwrap());
    let spawned = child_sig_ign(&mut Command::new("grep"));
    let mut forked = Command::new("grep");
    // SAFETY: the hook does nothing; it only makes std fork.
    unsafe { forked.pre_exec(|| Ok(())) };
    let forked = child_sig_ign(&mut forked);
    assert_eq!(spawned & glibcs_own, glibcs_own, "posix_spawn: {spawned:x}");
    assert_eq!(forked & glibcs_own, ours & glibcs_own, "fork: {forked:x}");
}

/// Chapter 12's rule: give a child back what you found. `keep_zombies`
/// sets SIGCHLD's default action, for the listing's own waits; started
/// with SIGCHLD ignored, the listing must still start `sleep` and `pwd`
/// with it ignored. A stand-in for each, first on `PATH`, records its
/// /proc status and execs the real one. They used to get the default.
#[test]
fn proc_pre_exec_gives_its_children_back_the_sigchld_it_found() {
    for (name, demo) in
        [("sleep", &["alarm"][..]), ("pwd", &["chdir", "/"][..])]
    {
        for ignored in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            if crate::support::status_recorder(dir.path(), name).is_none() {
                return;
            }
            let recorded = dir.path().join("status");
            let mut command = crate::support::with_sigchld_ignored(
                bin!("proc-pre-exec"),
                demo,
            );
            if !ignored {
                command = Command::new(bin!("proc-pre-exec"));
                command.args(demo);
            }
            let path = std::env::var("PATH").unwrap_or_default();
            command
                .env("PATH", format!("{}:{path}", dir.path().display()))
                .env("STATUS_FILE", &recorded);
            let out =
                finish_clean(Listing::spawn(&mut command, Stdio::piped()));
            let what =
                format!("{name}, started with SIGCHLD ignored: {ignored}");
            assert!(out.status.success(), "{what}: {}", out.stderr);
            let status = std::fs::read_to_string(&recorded).expect(&what);
            assert_eq!(
                crate::support::signal_in_status(
                    &status,
                    "SigIgn:",
                    nix::sys::signal::Signal::SIGCHLD
                ),
                ignored,
                "{what}"
            );
        }
    }
}

/// The allocation check runs every listing whose source asks for a
/// `pre_exec` hook: the list of them is read from the sources, so a hook
/// added to a listing without a row fails here.
#[test]
fn every_pre_exec_hook_is_checked_for_allocations() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    // `name = "..."` comes before `path = "..."` in every `[[bin]]`.
    let mut bins = std::collections::HashMap::new();
    let mut name = None;
    for line in manifest.lines() {
        if let Some(value) = line.strip_prefix("name = ") {
            name = Some(value.trim_matches('"').to_string());
        } else if let Some(value) = line.strip_prefix("path = ") {
            bins.insert(value.trim_matches('"').to_string(), name.take());
        }
    }
    let mut hooked = Vec::new();
    for chapter in std::fs::read_dir(root).unwrap() {
        let chapter = chapter.unwrap().path();
        let Some(dir) = chapter.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !dir.starts_with("ch") || !chapter.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&chapter).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("pre_exec(") {
                let path = file.strip_prefix(root).unwrap();
                let path = path.to_str().unwrap().to_string();
                match bins.get(&path) {
                    Some(Some(bin)) => hooked.push(bin.clone()),
                    _ => panic!("{path} has a pre_exec hook and no binary"),
                }
            }
        }
    }
    assert!(hooked.len() >= 18, "too few hooks found: {hooked:?}");
    let mut missing: Vec<_> = hooked
        .iter()
        .filter(|bin| {
            !HOOK_RUNS.iter().any(|run| run.0 == bin.as_str())
                && !HOOKS_RUN_AT_A_TERMINAL.contains(&bin.as_str())
                && !HOOKS_NOT_RUN.iter().any(|(not, _)| not == bin)
        })
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "listings with a pre_exec hook that the allocation check never runs: \
         {missing:?}"
    );
}

/// Four to eight descriptors: each step of 24-1 that runs out says what
/// it could not do, both ways. Its two pipes, the pipes `fork` makes for
/// `cat`, and its reads of /proc were a bare "EMFILE: Too many open
/// files", or "Too many open files (os error 24)" once it had printed
/// its first line; `command` said "cannot run cat" for pipes of its own.
#[test]
fn proc_exec_names_the_step_when_descriptors_run_out() {
    use crate::support::assert_names_the_step_when_descriptors_run_out;

    for way in ["command", "fork"] {
        let command = || {
            let mut command = Command::new(bin!("proc-exec"));
            command.arg(way);
            command
        };
        let said =
            assert_names_the_step_when_descriptors_run_out(command, 4..=8);
        assert!(said.iter().all(|line| !line.is_empty()), "{way}: {said:?}");
    }
}
