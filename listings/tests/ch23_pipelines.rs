//! Chapter 23, Pipelines with `Command`: Listings 23-1 (`spawn-pipeline`),
//! 23-2 (`spawn-deadlock`) and 23-3 (`spawn-grandchild`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::support::{
    ChildExt, KillGroupOnDrop, Listing, PATIENCE, all_threads_stopped,
    as_pid_1, assert_died_of, assert_exited_with, assert_rejects,
    assert_session_matches_book, assert_session_matches_book_masking,
    cargo_run, children_of, finish_clean, group_is_gone, have, is_dead, kernel,
    like_a_listing, pgid_of, ppid_of, reaps_with_stdout_full, run_clean,
    state_of, threads_blocked_in, wait_until, with_sigchld_ignored,
    with_thread_limit, write_program,
};

/// The stages of a running pipeline, once all `n` have started and
/// joined their group, and that group.
fn stages(pipeline: &Listing, n: usize) -> (Vec<Pid>, Pid) {
    stages_of(pipeline.pid(), n)
}

/// The same, for the pipeline whose process is `pipeline`.
fn stages_of(pipeline: Pid, n: usize) -> (Vec<Pid>, Pid) {
    let own = pgid_of(pipeline);
    let deadline = Instant::now() + PATIENCE;
    // A stage joins the group between fork and exec: until then, it is
    // in the listing's group.
    let stages = loop {
        let stages = children_of(pipeline);
        let groups: Vec<_> = stages.iter().map(|&s| pgid_of(s)).collect();
        if stages.len() == n && groups.iter().all(|g| g.is_some() && *g != own)
        {
            break stages;
        }
        assert!(
            Instant::now() < deadline,
            "waited {PATIENCE:?} for {n} stages of {pipeline} (group \
             {own:?}, state {:?}) to join their group: {stages:?} in \
             {groups:?}",
            state_of(pipeline)
        );
        thread::sleep(Duration::from_millis(5));
    };
    let group = pgid_of(stages[0]).expect("a stage's group");
    for &stage in &stages {
        assert_eq!(pgid_of(stage), Some(group), "one group for all");
    }
    assert!(stages.contains(&group), "a stage leads the group");
    (stages, group)
}

#[test]
fn spawn_pipeline_passes_each_stdout_to_the_next_stdin() {
    let out = run_clean(
        bin!("spawn-pipeline"),
        &["seq", "1", "5", "|", "tr", "1-5", "a-e", "|", "sort", "-r"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, ["e", "d", "c", "b", "a"]);
    assert_eq!(out.stderr, "");
    // Every line written is read: a hundred thousand in, as many out.
    let out = run_clean(
        bin!("spawn-pipeline"),
        &["seq", "100000", "|", "cat", "|", "wc", "-l"],
    );
    assert_eq!(out.stdout, ["100000"]);
}

/// A stage's name is the user's text: a newline in it is shown escaped,
/// so that each failed stage still takes one line.
#[test]
fn spawn_pipeline_reports_a_stage_named_with_a_newline_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("exit\n3");
    write_program(&program, "#!/bin/sh\nexit 3\n");
    let program = program.to_str().expect("a UTF-8 path");
    let out = run_clean(bin!("spawn-pipeline"), &[program]);
    assert_eq!(out.status.code(), Some(3));
    let shown = program.escape_debug();
    assert_eq!(
        out.stderr,
        format!("spawn-pipeline: {shown}: exited with status 3\n")
    );
}

#[test]
fn spawn_pipeline_fails_with_the_last_failing_stage_like_pipefail() {
    let out = run_clean(
        bin!("spawn-pipeline"),
        &[
            "sh",
            "-c",
            "exit 3",
            "|",
            "sh",
            "-c",
            "cat; exit 4",
            "|",
            "cat",
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        out.stderr,
        "spawn-pipeline: sh: exited with status 3\n\
         spawn-pipeline: sh: exited with status 4\n"
    );
    // `head` exits after two lines; `yes` dies of SIGPIPE at its next
    // write, and pipefail counts that as a failure: 128 + 13.
    let out =
        run_clean(bin!("spawn-pipeline"), &["yes", "|", "head", "-n", "2"]);
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(out.stdout, ["y", "y"]);
    assert_eq!(out.stderr, "spawn-pipeline: yes: killed by SIGPIPE\n");
}

/// The last stage traps the signal and says so on the listing's stdout,
/// which is its own: a listing that died without passing the signal on
/// would leave its stages to the parent-death `SIGKILL`, which no trap
/// sees, and the test would read nothing.
#[test]
fn spawn_pipeline_passes_ctrl_c_to_the_whole_group_and_ends_by_it() {
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let name = &signal.as_str()[3..];
        // `sh` runs `sleep` in the background with SIGINT ignored, so
        // the trap ends it; its output goes elsewhere, so that it holds
        // none of the listing's pipes should it outlive the test. SIGTERM
        // and SIGHUP, sent to the whole group, may have ended it first:
        // the trap's `kill` then finds no process, and must not say so.
        let trap = format!(
            "trap 'echo took {name}; kill $! 2>/dev/null; exit 0' {name}; \
             sleep 60 >/dev/null 2>&1 & wait"
        );
        let pipeline = Listing::start(
            bin!("spawn-pipeline"),
            &["sleep", "60", "|", "sh", "-c", &trap],
        );
        let (stages, group) = stages(&pipeline, 2);
        let _cleanup = KillGroupOnDrop(group);
        // The trap is set once `sh` has started its `sleep`.
        wait_until("the last stage to set its trap", || {
            stages.iter().any(|&stage| !children_of(stage).is_empty())
        });
        // The listing's group, as `kill -INT -PGID` would; a terminal
        // sends Ctrl-C to the stages instead, which have it (the tests
        // at a terminal, below).
        killpg(pipeline.pid(), signal).unwrap();
        let out = finish_clean(pipeline);
        assert_eq!(out.status.signal(), Some(signal as i32), "{}", out.stderr);
        assert_eq!(out.stderr, "", "an interrupted pipeline says nothing");
        assert_eq!(out.stdout, [format!("took {name}")], "{signal}");
        for stage in stages {
            assert!(is_dead(stage), "{signal}: a stage lives on");
        }
        wait_until("the pipeline to end", || group_is_gone(group));
    }
}

/// A shell script stops for a command killed by SIGINT only if its shell
/// got the SIGINT too (Chapter 12): `kill -INT` sent to the listing alone
/// ends it by the signal, and the script sees status 130 and goes on.
#[test]
fn spawn_pipeline_sent_sigint_alone_lets_the_script_that_ran_it_go_on() {
    let script = format!(
        "{} sleep 60 '|' sleep 60; echo \"continued: $?\"",
        bin!("spawn-pipeline")
    );
    for shell in ["bash", "sh"] {
        if !have(shell) {
            continue;
        }
        let mut command = Command::new(shell);
        command.args(["-c", &script]);
        let script = Listing::spawn(&mut command, Stdio::piped());
        let listing = spawn_pipeline_under(script.pid());
        let (_, group) = stages_of(listing, 2);
        let _cleanup = KillGroupOnDrop(group);
        nix::sys::signal::kill(listing, Signal::SIGINT).unwrap();
        let out = finish_clean(script);
        assert_eq!(out.stdout, ["continued: 130"], "{shell}: {}", out.stderr);
        assert!(out.status.success(), "{shell}: {:?}", out.status);
    }
}

/// The listing, once the shell `shell` has started it as its child.
fn spawn_pipeline_under(shell: Pid) -> Pid {
    let mut listing = None;
    wait_until("the shell to start spawn-pipeline", || {
        listing = children_of(shell).into_iter().find(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "spawn-pipeline")
        });
        listing.is_some()
    });
    listing.unwrap()
}

/// A parent may leave SIGINT, SIGTERM and SIGHUP blocked (`env
/// --block-signal`, coreutils 8.31, does so and execs), and `exec` keeps
/// the mask: the listing must unblock the signals it passes on, for
/// itself and for its stages, which inherit its mask through `Command`.
/// It used to run on after each of them, its stages with it.
#[test]
fn spawn_pipeline_ends_by_a_signal_its_parent_had_blocked() {
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let mut command = Command::new("env");
        command
            .arg("--block-signal=INT,TERM,HUP")
            .arg(bin!("spawn-pipeline"))
            .args(["sleep", "60", "|", "sleep", "60"]);
        let pipeline = Listing::spawn(&mut command, Stdio::piped());
        let (stages, group) = stages(&pipeline, 2);
        let _cleanup = KillGroupOnDrop(group);
        pipeline.signal(signal);
        let out = finish_clean(pipeline);
        assert_eq!(out.status.signal(), Some(signal as i32), "{}", out.stderr);
        for stage in stages {
            assert!(is_dead(stage), "{signal}: a stage lives on");
        }
        wait_until("the pipeline to end", || group_is_gone(group));
    }
}

/// A signal that comes while the stages start waits, blocked, until they
/// have started; when one of them cannot run, the listing must still end
/// by that signal, saying nothing, as it does once they run. Here the
/// signal is pending before the listing starts (`env` blocks it, `sh`
/// sends it to itself and execs the listing), which puts the listing in
/// the same state without a race: the signal is there while it starts
/// its stages. It used to report the stage it could not run and exit 1,
/// the signal swallowed by signal-hook's handler, which nothing read.
#[test]
fn spawn_pipeline_ends_by_a_signal_that_came_while_a_stage_could_not_start() {
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let name = &signal.as_str()[3..];
        let mut command = Command::new("env");
        command
            .arg(format!("--block-signal={name}"))
            .args([
                "sh",
                "-c",
                &format!("kill -{name} $$ && exec \"$0\" \"$@\""),
            ])
            .arg(bin!("spawn-pipeline"))
            .args(["sleep", "60", "|", "no-such-program"]);
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert_eq!(
            out.status.signal(),
            Some(signal as i32),
            "{signal}: {:?} {}",
            out.status,
            out.stderr
        );
        assert_eq!(
            out.stderr, "",
            "{signal}: an interrupted pipeline says nothing"
        );
    }
}

/// Ctrl-\ kills a stage with SIGQUIT, and the listing ends by the same
/// signal, but without a core dump of its own: it did not crash, and
/// SIGQUIT's default action dumps core (coreutils' `timeout` takes the
/// same care). Run where the kernel would write one: core files allowed
/// (`ulimit -c unlimited`, where the limits let us), in a directory of its
/// own. It used to dump core.
#[test]
fn spawn_pipeline_ends_by_sigquit_without_dumping_core() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("sh");
    command.current_dir(dir.path()).args([
        "-c",
        "ulimit -c unlimited 2>/dev/null; exec \"$0\" \"$@\"",
        bin!("spawn-pipeline"),
        "sh",
        "-c",
        "ulimit -c 0; kill -QUIT $$",
    ]);
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(out.status.signal(), Some(Signal::SIGQUIT as i32));
    assert!(!out.status.core_dumped(), "the listing dumped core");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn spawn_pipeline_as_pid_1_exits_143_when_stopped_by_sigterm() {
    // The kernel drops a PID 1's own raise of SIGTERM: a runner that ended
    // with emulate_default_handler fell through to abort(), dropped too,
    // and died of SIGSEGV (status 139).
    let stage = ["sh", "-c", "echo started && exec sleep 60"];
    let Some((pipeline, pid)) =
        as_pid_1(bin!("spawn-pipeline"), &stage, "started")
    else {
        return;
    };
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let out = finish_clean(pipeline);
    assert_exited_with(&out, 143);
}

#[test]
fn spawn_pipeline_stages_die_with_it_when_it_is_killed() {
    let pipeline =
        Listing::start(bin!("spawn-pipeline"), &["sleep", "60", "|", "cat"]);
    let (_, group) = stages(&pipeline, 2);
    let _cleanup = KillGroupOnDrop(group);
    pipeline.signal(Signal::SIGKILL);
    let out = finish_clean(pipeline);
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
    // Nobody could pass SIGKILL on: the kernel does, as PR_SET_PDEATHSIG.
    wait_until("the stages to die", || group_is_gone(group));
}

#[test]
fn spawn_pipeline_stops_a_pipeline_that_runs_past_its_timeout() {
    let started = Instant::now();
    let pipeline = Listing::start(
        bin!("spawn-pipeline"),
        &["--timeout", "1", "sleep", "60", "|", "cat"],
    );
    let (_, group) = stages(&pipeline, 2);
    let _cleanup = KillGroupOnDrop(group);
    let out = finish_clean(pipeline);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(out.stderr, "spawn-pipeline: timed out after 1 s\n");
    assert!(started.elapsed() >= Duration::from_secs(1));
    wait_until("the stages to end", || group_is_gone(group));

    // A stage that ignores SIGTERM gets SIGKILL, two seconds later.
    let started = Instant::now();
    let pipeline = Listing::start(
        bin!("spawn-pipeline"),
        &["--timeout", "1", "sh", "-c", "trap '' TERM; sleep 60"],
    );
    let (_, group) = stages(&pipeline, 1);
    let _cleanup = KillGroupOnDrop(group);
    let out = finish_clean(pipeline);
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() >= Duration::from_secs(3));
    wait_until("the stage to end", || group_is_gone(group));
}

/// A stage that has stopped takes the watchdog's SIGTERM only once it
/// runs again: the watchdog continues it, as `timeout(1)` does. Before,
/// the SIGTERM stayed pending and the stage got SIGKILL two seconds
/// later, its trap never run. (Should the stage stop only after the
/// timeout, it takes SIGTERM at once: the test passes either way once
/// fixed.)
#[test]
fn spawn_pipeline_timeout_continues_a_stopped_stage_so_it_takes_sigterm() {
    let pipeline = Listing::start(
        bin!("spawn-pipeline"),
        &[
            "--timeout",
            "1",
            "sh",
            "-c",
            "trap 'echo took TERM; exit 0' TERM; kill -STOP $$; sleep 60",
        ],
    );
    let (_, group) = stages(&pipeline, 1);
    let _cleanup = KillGroupOnDrop(group);
    let out = finish_clean(pipeline);
    assert_eq!(out.status.code(), Some(124), "{}", out.stderr);
    assert_eq!(out.stdout, ["took TERM"], "{}", out.stderr);
}

#[test]
fn spawn_pipeline_stops_the_stages_it_started_when_one_cannot_start() {
    let pipeline = Listing::start(
        bin!("spawn-pipeline"),
        &["sleep", "60", "|", "no-such-program"],
    );
    let out = finish_clean(pipeline);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        "spawn-pipeline: cannot run \"no-such-program\": No such file or \
         directory (os error 2)\n"
    );
}

/// The stages already running are killed and reaped before the error is
/// reported. After it, nothing would tell: `sleep` is in the stages' group,
/// not the listing's, and its parent-death signal ends it once the listing
/// exits. So strace holds the listing two seconds on its way into the
/// write of its error line, and the test looks for its children then.
#[test]
fn spawn_pipeline_reaps_the_stages_it_started_before_it_reports() {
    if !have("strace") || !have("setpriv") {
        return;
    }
    let mut command = Command::new("strace");
    command
        .args(["-q", "-o", "/dev/null", "-e", "trace=write"])
        .args(["-e", "inject=write:delay_enter=2000000"])
        .args(["--", "setpriv", "--pdeathsig", "KILL", "--"])
        .args([
            bin!("spawn-pipeline"),
            "sleep",
            "60",
            "|",
            "no-such-program",
        ]);
    let traced = Listing::spawn(&mut command, Stdio::piped());
    let pipeline = traced_listing(&traced);
    wait_until("the listing to be held in its write", || {
        threads_blocked_in(pipeline, nix::libc::SYS_write) == 1
            && state_of(pipeline) == Some('t')
    });
    // Running, or a zombie not reaped: either is listed.
    let left = children_of(pipeline);
    let out = finish_clean(traced);
    assert!(left.is_empty(), "stages left when it reported: {left:?}");
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
}

#[test]
fn spawn_pipeline_output_matches_the_book() {
    let sorted = ["seq", "1", "5", "|", "tr", "1-5", "a-e", "|", "sort", "-r"];
    let head = ["yes", "|", "head", "-n", "2"];
    let mut session = Vec::new();
    for args in [&sorted[..], &head[..]] {
        let out = run_clean(bin!("spawn-pipeline"), args);
        let mut lines = out.stdout;
        lines.extend(out.stderr.lines().map(String::from));
        // The shell needs `|` quoted; the book shows it so.
        let shown: Vec<_> = args
            .iter()
            .map(|a| if *a == "|" { "'|'" } else { a })
            .collect();
        session.push((cargo_run("spawn-pipeline", &shown), lines));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch23-pipelines/23-01-spawn-pipeline.out",
        &session,
    );
}

#[test]
fn spawn_deadlock_writing_everything_first_deadlocks_until_the_deadline() {
    let started = Instant::now();
    let out = run_clean(bin!("spawn-deadlock"), &["--wait", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        "spawn-deadlock: deadlock: cat killed after 1 s\n"
    );
    let caps = regex::Regex::new(
        r"^Wrote (\d+) of 1000000 bytes, got (\d+) back; cat was killed by SIGKILL$",
    )
    .unwrap()
    .captures(&out.stdout[0])
    .unwrap_or_else(|| panic!("{:?}", out.stdout));
    // At least cat's stdin pipe was filled, and not everything went in.
    let written: usize = caps[1].parse().unwrap();
    assert!((65536..1_000_000).contains(&written), "{written}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn spawn_deadlock_a_writer_thread_gets_every_byte_back_either_way() {
    for way in ["thread", "output"] {
        let out = run_clean(bin!("spawn-deadlock"), &[way]);
        assert!(out.status.success(), "{way}: {}", out.stderr);
        let also = if way == "output" {
            " and 0 on stderr"
        } else {
            ""
        };
        assert_eq!(
            out.stdout,
            [format!(
                "Sent 1000000 bytes, got 1000000 back{also}; cat exited with \
                 status 0"
            )]
        );
    }
}

/// Both ways out must survive a child that writes to stderr: one that
/// fills a pipe there before it ends its stdout would wait in that write
/// for ever if stderr were piped and nobody read it, the deadlock of
/// `reading_stdout_to_its_end_first_deadlocks_on_a_full_stderr`. A
/// stand-in `cat`, first on PATH, writes 100000 bytes to stderr, then runs
/// the real `cat`. `thread` used to pipe stderr and never read it.
#[test]
fn spawn_deadlock_a_writer_thread_survives_a_child_that_fills_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("cat");
    write_program(
        &cat,
        "#!/bin/sh\nhead -c 100000 /dev/zero >&2\nPATH=${PATH#*:}\nexec cat\n",
    );
    let path = std::env::var("PATH").unwrap_or_default();
    for (way, also) in [("thread", ""), ("output", " and 100000 on stderr")] {
        let mut command = Command::new(bin!("spawn-deadlock"));
        command
            .args([way, "--bytes", "1000"])
            .env("PATH", format!("{}:{path}", dir.path().display()));
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert!(out.status.success(), "{way}: {:?}", out.status);
        assert_eq!(
            out.stdout,
            [format!(
                "Sent 1000 bytes, got 1000 back{also}; cat exited with status 0"
            )],
            "{way}"
        );
    }
}

/// A child that stops reading before the end: a stand-in `cat`, first on
/// PATH, takes 100000 bytes (`head -c`) and exits 0. The count must say
/// what went into its stdin before the write failed, not 0, and the run
/// must fail, since most of the data never got there. It used to say
/// "Sent 0 bytes" and exit 0.
#[test]
fn spawn_deadlock_a_writer_thread_reports_a_child_that_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    write_program(&dir.path().join("cat"), "#!/bin/sh\nexec head -c 100000\n");
    let path = std::env::var("PATH").unwrap_or_default();
    for (way, also) in [("thread", ""), ("output", " and 0 on stderr")] {
        let mut command = Command::new(bin!("spawn-deadlock"));
        command
            .arg(way)
            .env("PATH", format!("{}:{path}", dir.path().display()));
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert_eq!(out.status.code(), Some(1), "{way}: {}", out.stderr);
        let caps = regex::Regex::new(&format!(
            r"^Sent (\d+) bytes, got 100000 back{also}; cat exited with status 0$"
        ))
        .unwrap()
        .captures(&out.stdout[0])
        .unwrap_or_else(|| panic!("{way}: {:?}", out.stdout));
        // At least what `head` read went in, and not everything.
        let sent: usize = caps[1].parse().unwrap();
        assert!((100_000..1_000_000).contains(&sent), "{way}: {sent}");
        assert_eq!(
            out.stderr,
            format!(
                "spawn-deadlock: cat's stdin closed after {sent} of 1000000 \
                 bytes\n"
            ),
            "{way}"
        );
    }
}

/// Runs `bin` with `args` under strace, which holds each `wait4` for
/// `delay` on its way out, after the child is reaped, and returns the
/// trace of `kill` and `wait4` calls, after checking that the listing
/// ended as it would have.
fn traced_with_slow_reaping(bin: &str, args: &[&str], delay: &str) -> String {
    let mut command = Command::new("strace");
    command
        .args(["-f", "-q", "-e", "trace=kill,wait4", "-e", "signal=none"])
        .arg(format!("--inject=wait4:delay_exit={delay}"))
        .args(["--", "setpriv", "--pdeathsig", "KILL", "--", bin])
        .args(args);
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(out.status.code().is_some(), "{args:?}: {}", out.stderr);
    out.stderr
}

/// The same rule for one child: signal it only while it is not reaped.
/// Each reap of `cat` is held for three seconds, past the two of
/// `--wait`: a watchdog thread that fired then would signal a pid that
/// may already be a stranger's, and get ESRCH here.
#[test]
fn spawn_deadlock_never_signals_cat_once_it_is_reaped() {
    if !have("strace") || !have("setpriv") {
        return;
    }
    for way in ["write-first", "thread"] {
        let args = [way, "--wait", "2"];
        let trace =
            traced_with_slow_reaping(bin!("spawn-deadlock"), &args, "3000000");
        let kills: Vec<_> = trace
            .lines()
            .filter(|line| line.contains("kill("))
            .collect();
        assert!(
            kills.iter().all(|kill| kill.ends_with("= 0")),
            "{way}: a kill that missed:\n{trace}"
        );
        // Only the deadlock kills cat, once.
        assert_eq!(kills.len(), usize::from(way == "write-first"), "{trace}");
    }
}

/// A C library to preload that counts the calls to `poll` for one
/// descriptor with a time limit of 0 ms that found nothing ready, and
/// says how many at exit. (std's start-up polls descriptors 0 to 2 once,
/// with 0 ms: three descriptors, not counted.)
const COUNT_POLLS_THAT_DO_NOT_WAIT: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>
static int no_wait;
int poll(struct pollfd *fds, nfds_t n, int timeout) {
    static int (*real)(struct pollfd *, nfds_t, int);
    if (!real) real = (int (*)(struct pollfd *, nfds_t, int))dlsym(RTLD_NEXT, "poll");
    int ready = real(fds, n, timeout);
    if (n == 1 && timeout == 0 && ready == 0)
        __atomic_add_fetch(&no_wait, 1, __ATOMIC_RELAXED);
    return ready;
}
__attribute__((destructor)) static void report(void) {
    char line[80];
    int len = snprintf(line, sizeof line, "pid %d: %d polls of 0 ms\n", (int)getpid(), no_wait);
    if (len > 0) write(2, line, (size_t)len);
}
"#;

/// `room_before` hands `poll` the time left, rounded up to a whole
/// millisecond, and gives up once the deadline has passed. Rounded down,
/// as it first was, the wait ended short of the deadline, and the loop
/// then called `poll` with 0 ms, which returns at once, until the
/// deadline had passed: once in most runs here, 1228 times in one. Now
/// the wait that times out lasts to the deadline, and no poll of 0 ms is
/// left.
#[test]
fn spawn_deadlock_waits_for_room_without_spinning_at_the_deadline() {
    if !have("cc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("count-polls.c");
    let library = dir.path().join("count-polls.so");
    std::fs::write(&source, COUNT_POLLS_THAT_DO_NOT_WAIT).unwrap();
    let built = Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let mut command = Command::new(bin!("spawn-deadlock"));
    command
        .args(["write-first", "--wait", "1"])
        .env("LD_PRELOAD", &library);
    let listing = Listing::spawn(&mut command, Stdio::piped());
    let counted = format!("pid {}: ", listing.pid());
    let out = finish_clean(listing);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let polls: usize = out
        .stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix(&counted)?.strip_suffix(" polls of 0 ms")
        })
        .unwrap_or_else(|| panic!("no count: {}", out.stderr))
        .parse()
        .unwrap();
    assert_eq!(polls, 0, "polls of 0 ms at the deadline");
}

#[test]
fn spawn_deadlock_output_matches_the_book() {
    let mut session = Vec::new();
    for way in ["write-first", "thread", "output"] {
        let out = run_clean(bin!("spawn-deadlock"), &[way]);
        let mut lines = out.stdout;
        lines.extend(out.stderr.lines().map(String::from));
        session.push((cargo_run("spawn-deadlock", &[way]), lines));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    // How far the writer got before the deadlock, and how much of it cat
    // passed on, depend on when cat ran.
    assert_session_matches_book_masking(
        "ch23-pipelines/23-02-spawn-deadlock.out",
        &session,
        &[(
            r"Wrote \d+ of 1000000 bytes, got \d+",
            "Wrote <n> of 1000000 bytes, got <m>",
        )],
    );
}

/// What the chapter promises of `write-first`, where the numbers vary
/// from run to run (Linux 6.18, pipes of 64 KiB): the writes stop past
/// both full pipes (128 KiB) and at most one pipe further, what `cat`
/// read and could not write; what comes back is at least `cat`'s full
/// stdout, one pipe, and at most all that `cat` read, the writes less
/// the pipe left in its stdin. Five runs, each to its one-second
/// deadlock; only the bounds are checked, never how often each end comes.
#[test]
fn spawn_deadlock_write_first_stops_and_gets_back_within_the_pipes() {
    const PIPE: u64 = 65536;
    let line = regex::Regex::new(
        r"^Wrote (\d+) of 1000000 bytes, got (\d+) back; cat was killed by SIGKILL$",
    )
    .unwrap();
    for run in 1..=5 {
        let out = finish_clean(Listing::start(
            bin!("spawn-deadlock"),
            &["write-first", "--wait", "1"],
        ));
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        let report = out.stdout.first().map(String::as_str).unwrap_or("");
        let numbers = line
            .captures(report)
            .unwrap_or_else(|| panic!("run {run}: {report:?}"));
        let (wrote, got): (u64, u64) =
            (numbers[1].parse().unwrap(), numbers[2].parse().unwrap());
        let what = format!("run {run}, Linux {}: {report}", kernel());
        assert!(2 * PIPE < wrote && wrote <= 3 * PIPE, "{what}");
        assert!(PIPE <= got && got <= wrote - PIPE, "{what}");
    }
}

#[test]
fn reading_stdout_to_its_end_first_deadlocks_on_a_full_stderr() {
    use std::io::Read;
    // A child that fills stderr before it writes a byte to stdout.
    let script = "head -c 100000 /dev/zero >&2; echo done";
    let spawn = || {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    // Stdout to its end first, in a thread so that the test can give up:
    // the end never comes, since the child waits for room in stderr.
    let mut child = spawn();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = tx.send(stdout.read_to_string(&mut text).map(|_| text));
    });
    let waited = rx.recv_timeout(Duration::from_secs(2));
    assert!(waited.is_err(), "stdout ended: {waited:?}");
    let group = Pid::from_raw(child.id() as i32);
    killpg(group, Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // Both at once, as wait_with_output reads them: every byte.
    let out = spawn().wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"done\n");
    assert_eq!(out.stderr.len(), 100_000);
}

/// The live processes whose command line is `sleep SECS`, with a number
/// no other test uses: the background job of a stand-in `sh`, which the
/// test has no pid of its own to reach by, and which may be in no group the
/// test knows. Dropped, it kills every one still there, should the test
/// fail half-way. (A zombie's command line is empty: it does not count.)
struct Sleepers(&'static str);

impl Sleepers {
    fn pids(&self) -> Vec<Pid> {
        let cmdline = format!("sleep\0{}\0", self.0);
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c == cmdline.as_bytes())
            })
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .map(Pid::from_raw)
            .collect()
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
}

/// Runs spawn-grandchild, checks that nothing is left behind (in its
/// group, and in the child's when it made one), and returns its output
/// with the pid of the grandchild and how long it took.
fn grandchild(args: &[&str]) -> (Vec<String>, Pid, Duration) {
    let started = Instant::now();
    let mut listing = Listing::start(bin!("spawn-grandchild"), args);
    let first = listing.expect(r"Child (\d+) started sleep as pid (\d+)");
    let child = Pid::from_raw(first[1].parse().unwrap());
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    // The listing's group: `finish_clean`; the child's: here.
    let out = finish_clean(listing);
    assert!(out.status.success(), "{args:?}: {}", out.stderr);
    let took = started.elapsed();
    wait_until("every process to end", || {
        group_is_gone(child) && is_dead(sleep)
    });
    (out.stdout, sleep, took)
}

#[test]
fn spawn_grandchild_holds_a_leaked_write_end_until_it_exits() {
    let (out, sleep, took) = grandchild(&[]);
    assert_eq!(
        out[1..],
        [
            "The child has exited".to_string(),
            format!(
                "No end of stream: sleep (pid {sleep}) has the write end as \
                 descriptor 4"
            ),
            "End of stream once sleep had exited".to_string(),
        ]
    );
    assert!(took >= Duration::from_secs(5), "sleep 5 held it: {took:?}");
}

#[test]
fn spawn_grandchild_cloexec_keeps_the_pipe_out_of_a_careful_grandchild() {
    let (out, _, _) = grandchild(&["--cloexec"]);
    assert_eq!(out[1..], ["The child has exited", "End of stream"]);
    // It cannot close the stdout that a careless grandchild inherits.
    let (out, sleep, _) = grandchild(&["--cloexec", "--careless"]);
    assert_eq!(
        out[2],
        format!(
            "No end of stream: sleep (pid {sleep}) has the write end as descriptor 1"
        )
    );
}

#[test]
fn spawn_grandchild_killing_the_group_ends_every_grandchild() {
    for args in [&["--group"][..], &["--group", "--careless"]] {
        let (out, _, took) = grandchild(args);
        assert_eq!(
            out[1..],
            [
                "The child has exited; killed its process group",
                "End of stream"
            ]
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
}

/// A member of the group that is stopped keeps the listing's SIGTERM
/// pending, and the pipe open, until it runs again: `--group` must
/// continue the group too, as Listing 23-1 does for its stages. A stand-in
/// `sh`, first on PATH, stops its background `sleep 31342` and prints its
/// line only once the kernel shows it stopped. The listing runs under a
/// subreaper of the same session, as in a container whose first process
/// shares it: else the kernel finds the group orphaned when the child
/// exits, and its own SIGHUP and SIGCONT end the `sleep` (Chapter 25).
/// The listing used to send SIGTERM alone: no end of stream came, and it
/// waited for a minute.
#[test]
fn spawn_grandchild_group_ends_a_stopped_grandchild_too() {
    if !have("python3") {
        return;
    }
    let job = Sleepers("31342");
    let dir = tempfile::tempdir().unwrap();
    let sh = dir.path().join("sh");
    // The job holds the pipe as its stdout; its state is the third field
    // of /proc/PID/stat.
    let script = "#!/bin/sh\n\
                  sleep 31342 &\n\
                  kill -STOP $!\n\
                  until [ \"$(cut -d' ' -f3 /proc/$!/stat)\" = T ]; do\n\
                  sleep 0.01\n\
                  done\n\
                  echo \"Child $$ started sleep as pid $!\"\n";
    write_program(&sh, script);
    let mut command =
        grandchild_under_a_subreaper(&["--group", "--cloexec"], dir.path());
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout[1..],
        [
            "The child has exited; killed its process group",
            "End of stream"
        ]
    );
    wait_until("the stopped job to end", || job.pids().is_empty());
}

/// `spawn-grandchild` with `args`, its child a stand-in `sh` that runs
/// `script`, first on PATH; and the directory that holds it, to keep
/// while the listing runs.
fn grandchild_with_stand_in_sh(
    script: &str,
    args: &[&str],
) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write_program(&dir.path().join("sh"), script);
    let path = std::env::var("PATH").unwrap_or_default();
    let mut command = Command::new(bin!("spawn-grandchild"));
    command
        .args(args)
        .env("PATH", format!("{}:{path}", dir.path().display()));
    (command, dir)
}

/// Chapter 23: "The wait for the child's line has a limit, two seconds",
/// whatever the child writes. A child that writes without end and never a
/// newline kept `poll(0)` ready once the limit had passed, and the listing
/// read on for ever (its line growing a byte a read); one that trickles
/// bytes without a newline, or ends without one, gets its own words too.
#[test]
fn spawn_grandchild_stops_waiting_for_a_line_that_never_comes_whole() {
    let cases = [
        (
            "#!/bin/sh\nexec cat /dev/zero\n",
            "the child said no whole line in its first 1024 bytes",
        ),
        (
            "#!/bin/sh\nwhile :; do printf x; sleep 0.05; done\n",
            "the child said no whole line in 2000 ms",
        ),
        ("#!/bin/sh\nprintf abc\n", "the child said no whole line"),
        ("#!/bin/sh\nexit 0\n", "the child said nothing"),
    ];
    for (script, why) in cases {
        let (mut command, _dir) = grandchild_with_stand_in_sh(script, &[]);
        let started = Instant::now();
        let out = Listing::spawn(&mut command, Stdio::piped()).finish();
        assert_eq!(
            out.stderr,
            format!("spawn-grandchild: {why}\n"),
            "{script}"
        );
        assert_eq!(out.status.code(), Some(1), "{script}");
        assert!(started.elapsed() < Duration::from_secs(10), "{script}");
    }
}

/// `spawn-grandchild` with `args`, run by a python3 parent that is a
/// subreaper (PR_SET_CHILD_SUBREAPER, 36), so that a grandchild orphaned
/// by the listing is adopted there, not by the machine's init; `dir`, with
/// a stand-in `sh`, comes first on PATH.
fn grandchild_under_a_subreaper(
    args: &[&str],
    dir: &std::path::Path,
) -> Command {
    let path = std::env::var("PATH").unwrap_or_default();
    let subreaper = "import ctypes, subprocess, sys\n\
                     ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n\
                     sys.exit(subprocess.call(sys.argv[1:]))\n";
    let mut command = Command::new("python3");
    command
        .args(["-c", subreaper, bin!("spawn-grandchild")])
        .args(args)
        .env("PATH", format!("{}:{path}", dir.display()));
    command
}

/// The group reaches only the grandchildren that stay in it: a job that
/// starts a session of its own, as a daemon does, escapes `--group`, and
/// holds the pipe until it ends. A stand-in `sh`, first on PATH, runs
/// `setsid sleep 31356 &`, whose stdout is the pipe (`setsid(1)`, not a
/// group's leader, calls `setsid(2)` and execs `sleep`, so `$!` is
/// `sleep`), and prints its line once `sleep` runs in its new session.
/// The listing kills the group and reports no end of stream, while
/// `sleep`, orphaned, has been adopted by the subreaper the test runs the
/// listing under; the test then kills `sleep` itself, and the end comes.
#[test]
fn spawn_grandchild_group_misses_a_grandchild_in_a_session_of_its_own() {
    if !have("setsid") || !have("python3") {
        return;
    }
    let job = Sleepers("31356");
    let dir = tempfile::tempdir().unwrap();
    let sh = dir.path().join("sh");
    // The line only once the job runs `sleep` in its own session (the
    // second and sixth fields of /proc/PID/stat): before, the listing's
    // `killpg` would still reach it.
    let script = "#!/bin/sh\n\
                  setsid sleep 31356 &\n\
                  until [ \"$(cut -d' ' -f2,6 /proc/$!/stat)\" = \"(sleep) $!\" ]\n\
                  do sleep 0.01; done\n\
                  echo \"Child $$ started sleep as pid $!\"\n";
    write_program(&sh, script);
    let mut command = grandchild_under_a_subreaper(
        &["--careless", "--cloexec", "--group"],
        dir.path(),
    );
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(r"Child (\d+) started sleep as pid (\d+)");
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    listing.expect("The child has exited; killed its process group");
    let line = listing.next_line();
    assert_eq!(
        line,
        format!(
            "No end of stream: sleep (pid {sleep}) has the write end as \
             descriptor 1"
        ),
        "Linux {}",
        kernel()
    );
    assert_eq!(nix::unistd::getsid(Some(sleep)), Ok(sleep), "its session");
    assert_eq!(
        ppid_of(sleep),
        Some(listing.pid()),
        "adopted by the subreaper"
    );
    drop(job); // Kills the sleep: the end of the stream comes.
    let out = finish_clean(listing);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout[3..], ["End of stream once sleep had exited"]);
}

/// With `--group`, an output that fails (a full disk, or a reader gone,
/// which ends the listing by SIGPIPE) must not keep the group from being
/// killed: the listing used to fail at its first write, before `killpg`,
/// and its `sleep 5` ran on, holding the listing's stderr, which the test
/// reads to its end, for five seconds.
#[test]
fn spawn_grandchild_group_kills_the_group_even_when_its_output_fails() {
    for what in ["full", "gone"] {
        let started = Instant::now();
        let mut command = Command::new(bin!("spawn-grandchild"));
        command.arg("--group");
        let stdout = match what {
            "full" => {
                let file =
                    std::fs::OpenOptions::new().write(true).open("/dev/full");
                Stdio::from(file.expect("/dev/full"))
            }
            _ => crate::support::stdout_to_a_widowed_pipe(&mut command),
        };
        let out = finish_clean(Listing::spawn(&mut command, stdout));
        let took = started.elapsed();
        match what {
            "full" => assert_eq!(out.status.code(), Some(1), "{}", out.stderr),
            _ => assert_eq!(out.status.signal(), Some(Signal::SIGPIPE as i32)),
        }
        assert!(took < Duration::from_secs(4), "{what}: took {took:?}");
    }
}

/// A child that fails before its line, having started a background
/// process that does not hold the pipe: with `--group`, the listing still
/// kills the group before it reports that the child said nothing. A
/// stand-in `sh`, first on PATH, is that child. The listing used to report
/// at once and leave the background process running.
#[test]
fn spawn_grandchild_group_kills_the_group_when_the_child_says_nothing() {
    let job = Sleepers("31336");
    let (mut command, _dir) = grandchild_with_stand_in_sh(
        "#!/bin/sh\nsleep 31336 >/dev/null 2>&1 &\nexit 3\n",
        &["--group", "--cloexec"],
    );
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stderr, "spawn-grandchild: the child said nothing\n");
    wait_until("the background process to end", || job.pids().is_empty());
}

/// A child that exits without a word while its background job holds the
/// pipe: no end of stream comes, so the listing's wait for the line must
/// have a limit. A stand-in `sh`, first on PATH, starts `sleep 31338`
/// with the pipe as its stdout and exits. With `--group` the listing
/// gives up after its two seconds, kills the group and reports in one
/// line. Its read used to have no limit and block until `sleep` ended.
#[test]
fn spawn_grandchild_gives_up_on_a_silent_child_whose_job_holds_the_pipe() {
    gives_up_on_a_silent_child(
        "31338",
        "#!/bin/sh\nsleep 31338 2>/dev/null &\nexit 0\n",
        "the background process to end",
    );
}

/// A child that says nothing and runs on, its stdout the pipe: past the
/// two seconds the listing kills it, or its wait for the child would last
/// as long as the child runs. A stand-in `sh`, first on PATH, runs `sleep
/// 31344` in the foreground and prints nothing; `--group` then ends that
/// `sleep` with the group. The test above has a child that exits at once,
/// and passed with the kill removed; this one then waited for `sleep`.
#[test]
fn spawn_grandchild_kills_a_silent_child_that_runs_on() {
    gives_up_on_a_silent_child(
        "31344",
        "#!/bin/sh\nsleep 31344\n",
        "the child's sleep to end",
    );
}

/// Runs `spawn-grandchild --group --cloexec`, its child a stand-in `sh`
/// running `script`, which starts `sleep <sleep>` and prints nothing:
/// the listing must give up after its two seconds, in one line, well
/// within ten, and leave no `sleep` behind (`what` names the wait for it).
#[track_caller]
fn gives_up_on_a_silent_child(sleep: &'static str, script: &str, what: &str) {
    let job = Sleepers(sleep);
    let (mut command, _dir) =
        grandchild_with_stand_in_sh(script, &["--group", "--cloexec"]);
    let started = Instant::now();
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "spawn-grandchild: the child said nothing in 2000 ms\n"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_until(what, || job.pids().is_empty());
}

/// A holder that outlives the last wait: the listing has named it, and no
/// end of stream comes. It must say so and fail, not exit 0 as if the
/// stream had ended. A stand-in `sh`, first on PATH, starts `sleep 31364`
/// with the pipe as its stdout, says its line, and exits; `--wait 1`
/// makes the last wait one second. The listing used to end there with
/// status 0 and no word about it.
#[test]
fn spawn_grandchild_fails_when_the_end_of_stream_never_comes() {
    let job = Sleepers("31364");
    let script = "#!/bin/sh\n\
                  sleep 31364 2>/dev/null &\n\
                  echo \"Child $$ started sleep as pid $!\"\n";
    let (mut command, _dir) =
        grandchild_with_stand_in_sh(script, &["--cloexec", "--wait", "1"]);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(r"Child (\d+) started sleep as pid (\d+)");
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    // The holder is left running on purpose. Look at it once the listing
    // has exited but before `finish`: dropping the `Listing` kills its
    // group, the holder with it, and a look after that races the SIGKILL.
    // The test has not reaped the listing, so it waits as a zombie.
    let pid = listing.pid();
    wait_until("spawn-grandchild to exit", || is_dead(pid));
    assert!(!is_dead(sleep), "the holder still runs");
    let out = listing.finish();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stdout);
    assert_eq!(
        out.stdout[1..],
        [
            "The child has exited".to_string(),
            format!(
                "No end of stream: sleep (pid {sleep}) has the write end as \
                 descriptor 1"
            ),
        ]
    );
    assert_eq!(
        out.stderr,
        "spawn-grandchild: no end of stream after 1 s more: the write end \
         is still held\n"
    );
    drop(job);
}

/// The last wait is a limit on the whole wait, not on a quiet spell: a
/// holder that keeps writing must not keep the listing waiting. The first
/// version polled with the full limit again after every line, and waited
/// as long as such a holder ran, then exited 0.
#[test]
fn spawn_grandchild_fails_when_a_holder_keeps_writing_past_the_limit() {
    let script = "#!/bin/sh\n\
                  python3 -c 'import time\nwhile True: print(\"tick\", \
                  flush=True); time.sleep(0.2)' 2>/dev/null &\n\
                  echo \"Child $$ started sleep as pid $!\"\n";
    let (mut command, _dir) =
        grandchild_with_stand_in_sh(script, &["--cloexec", "--wait", "1"]);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(r"Child (\d+) started sleep as pid (\d+)");
    /// The holder runs on after the listing, whatever the test's end.
    struct Holder(Pid);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, Signal::SIGKILL);
        }
    }
    let _holder = Holder(Pid::from_raw(first[2].parse().unwrap()));
    let out = listing.finish();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stdout);
    assert_eq!(
        out.stderr,
        "spawn-grandchild: no end of stream after 1 s more: the write end \
         is still held\n"
    );
    assert!(
        out.stdout.iter().any(|line| line == "tick"),
        "{:?}",
        out.stdout
    );
}

#[test]
fn spawn_grandchild_output_matches_the_book() {
    let mut session = Vec::new();
    for args in [
        &[][..],
        &["--cloexec"],
        &["--careless", "--cloexec"],
        &["--group"],
    ] {
        let (out, _, _) = grandchild(args);
        session.push((cargo_run("spawn-grandchild", args), out));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book_masking(
        "ch23-pipelines/23-03-spawn-grandchild.out",
        &session,
        &[(r"started sleep as pid \d+", "started sleep as pid <pid>")],
    );
}

/// The Linux alternative to wait-timeout: a pidfd, a descriptor for a
/// process, which `poll` reports readable once the process has exited.
#[test]
fn a_pidfd_becomes_readable_when_its_process_exits() {
    let mut sleep = Command::new("sleep")
        .arg("0.5")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // SAFETY: pidfd_open takes a pid and flags, and returns a new
    // descriptor or -1.
    let fd =
        unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, sleep.id(), 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptor is new and ours alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    // Not yet: the process runs.
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
    // Readable within a deadline once it exits; then `wait` reaps it.
    // (No handler runs in this test process, as the harness checks; one
    // would interrupt poll, which is never restarted.)
    let ready = loop {
        match poll(&mut fds, PollTimeout::from(30_000u16)) {
            Err(nix::errno::Errno::EINTR) => continue,
            result => break result.unwrap(),
        }
    };
    assert_eq!(ready, 1, "Linux {}", kernel());
    assert!(sleep.wait().unwrap().success());
}

/// A program run at a terminal of its own: the test makes a
/// pseudo-terminal, whose far end, the *master*, it holds; the program
/// starts a new session with the other end as its controlling terminal
/// and its stdin, stdout and stderr, as a login shell in a terminal
/// window would. The test types into the master and reads what the
/// terminal shows.
struct AtTerminal {
    child: Child,
    master: File,
    shown: Receiver<Vec<u8>>,
    /// Everything the terminal has shown so far.
    screen: Vec<u8>,
    /// Whether `finish` has reaped the program: from then on its pid, the
    /// id of its group, may be anyone's.
    reaped: bool,
}

impl AtTerminal {
    /// bash, with no start-up files, running `script` at the terminal.
    fn bash(script: &str) -> AtTerminal {
        AtTerminal::start("bash", &["--norc", "--noprofile", "-c", script])
    }

    fn start(program: &str, args: &[&str]) -> AtTerminal {
        use nix::fcntl::OFlag;
        use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
        use std::os::unix::fs::OpenOptionsExt;
        // Close-on-exec from the start: no other test's child may get
        // either end, or the terminal would outlive this test's program.
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let master = posix_openpt(flags).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(ptsname_r(&master).unwrap())
            .unwrap();
        let master = File::from(OwnedFd::from(master));
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        like_a_listing(&mut command);
        // SAFETY: between fork and exec, two system calls: a new session,
        // then the terminal on stdin as its controlling terminal.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(command); // Its copies of the terminal's end.
        let (tx, shown) = channel();
        let mut reader = master.try_clone().unwrap();
        thread::spawn(move || {
            let mut buf = [0; 4096];
            // Once nothing has the terminal open, reads fail with EIO.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        AtTerminal {
            child,
            master,
            shown,
            screen: Vec::new(),
            reaped: false,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Types `keys`, as a user at the keyboard: Ctrl-C is "\x03", Ctrl-D
    /// "\x04", Ctrl-Z "\x1a".
    fn type_keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until the terminal shows `text` (after what it showed
    /// before); fails at once if `gone_wrong` finds a reason, and after
    /// PATIENCE otherwise.
    fn wait_for(
        &mut self,
        text: &str,
        gone_wrong: impl Fn() -> Option<String>,
    ) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = String::from_utf8_lossy(&self.screen);
            if screen.contains(text) {
                let at = screen.find(text).unwrap() + text.len();
                self.screen.drain(..at);
                return;
            }
            if let Some(why) = gone_wrong() {
                panic!("{why}; the terminal shows {screen:?}");
            }
            assert!(
                Instant::now() < deadline,
                "waited {PATIENCE:?} for {text:?}; the terminal shows {screen:?}"
            );
            if let Ok(bytes) = self.shown.recv_timeout(Duration::from_millis(5))
            {
                self.screen.extend(bytes);
            }
        }
    }

    /// How the program ended, within PATIENCE.
    fn finish(mut self) -> std::process::ExitStatus {
        self.reap()
    }

    /// Waits for the program to end, within PATIENCE, and reaps it.
    fn reap(&mut self) -> std::process::ExitStatus {
        let status = self
            .child
            .wait_timeout(PATIENCE)
            .unwrap()
            .expect("the program to end");
        self.reaped = true;
        status
    }

    /// How the program ended, within PATIENCE, and everything the
    /// terminal showed that `wait_for` has not taken, up to the moment
    /// nothing has the terminal open any more.
    fn finish_showing(mut self) -> (std::process::ExitStatus, String) {
        let status = self.reap();
        let deadline = Instant::now() + PATIENCE;
        // The reader ends, and the channel with it, once the terminal is
        // closed everywhere: by then nothing more can be shown.
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.shown.recv_timeout(left) {
                Ok(bytes) => self.screen.extend(bytes),
                Err(_) => break,
            }
        }
        (status, String::from_utf8_lossy(&self.screen).into_owned())
    }
}

impl Drop for AtTerminal {
    fn drop(&mut self) {
        // The session's first group: the program, and what it started in
        // its own group. Groups it made for others die with them. Chapter
        // 23's rule: signalled by the program's pid only while it is not
        // reaped; once it is, only while a process is left in its group.
        if self.reaped {
            drop(KillGroupOnDrop(self.pid()));
        } else {
            let _ = killpg(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The reason to give up on a pipeline at once: a stage stopped.
fn a_stage_stopped(stages: &[Pid]) -> Option<String> {
    stages
        .iter()
        .find(|&&stage| state_of(stage) == Some('T'))
        .map(|stage| format!("stage {stage} stopped"))
}

/// At a terminal, the stages' group must own it, or a stage that reads it
/// is stopped by SIGTTIN, and a listing that waits without WUNTRACED
/// waits for ever.
#[test]
fn spawn_pipeline_at_a_terminal_gives_the_terminal_to_its_stages() {
    let mut terminal = AtTerminal::start(bin!("spawn-pipeline"), &["cat"]);
    let (stages, group) = stages_of(terminal.pid(), 1);
    let _cleanup = KillGroupOnDrop(group);
    terminal.type_keys("hello\n");
    // The terminal echoes the line as typed, and `cat` writes it back.
    terminal.wait_for("hello\r\nhello\r\n", || a_stage_stopped(&stages));
    assert_eq!(
        nix::unistd::tcgetpgrp(&terminal.master).ok(),
        Some(group),
        "the stages' group is the terminal's foreground"
    );
    terminal.type_keys("\x04"); // Ctrl-D: the end of cat's input.
    let status = terminal.finish();
    assert!(status.success(), "{status:?}");
}

/// Ctrl-C at a terminal goes to its foreground group, the stages, and
/// not to the listing; the listing then ends by SIGINT too, as a shell
/// expects of a program the user interrupted.
#[test]
fn spawn_pipeline_at_a_terminal_ctrl_c_ends_the_stages_and_then_itself() {
    let mut terminal =
        AtTerminal::start(bin!("spawn-pipeline"), &["sleep", "60", "|", "cat"]);
    let (stages, group) = stages_of(terminal.pid(), 2);
    let _cleanup = KillGroupOnDrop(group);
    wait_until("the stages to own the terminal", || {
        nix::unistd::tcgetpgrp(&terminal.master).ok() == Some(group)
    });
    terminal.type_keys("\x03");
    let status = terminal.finish();
    assert_eq!(status.signal(), Some(Signal::SIGINT as i32), "{status:?}");
    for stage in stages {
        assert!(is_dead(stage), "a stage lives on");
    }
}

/// Ctrl-C at a terminal stops a shell script that ran the listing, as it
/// stops one that ran the stages itself. A shell without job control runs
/// the listing in its own group, the terminal's foreground; bash and dash
/// stop only when they got the SIGINT themselves while they waited (bash's
/// "wait and cooperative exit"; Chapter 12), not because a command died
/// of it. The listing hands that group's terminal to the stages, so the
/// key reaches the stages alone, and the listing must send the signal on
/// to its own group once it has the terminal back. It used to end by
/// SIGINT alone, and the script went on: "continued: 130".
#[test]
fn spawn_pipeline_at_a_terminal_ctrl_c_stops_the_script_that_ran_it() {
    let script = format!(
        "{} sleep 60 '|' cat; echo \"continued: $?\"",
        bin!("spawn-pipeline")
    );
    for shell in ["bash", "sh"] {
        if !have(shell) {
            continue;
        }
        let mut terminal = AtTerminal::start(shell, &["-c", &script]);
        let listing = spawn_pipeline_under(terminal.pid());
        let (stages, group) = stages_of(listing, 2);
        let _cleanup = KillGroupOnDrop(group);
        wait_until("the stages to own the terminal", || {
            nix::unistd::tcgetpgrp(&terminal.master).ok() == Some(group)
        });
        terminal.type_keys("\x03");
        let (status, screen) = terminal.finish_showing();
        assert_eq!(
            status.signal(),
            Some(Signal::SIGINT as i32),
            "{shell}: {status:?}, the terminal shows {screen:?} (Linux {})",
            kernel()
        );
        assert!(!screen.contains("continued"), "{shell}: {screen:?}");
        for stage in stages {
            assert!(is_dead(stage), "{shell}: a stage lives on");
        }
    }
}

/// Ctrl-Z under a shell with job control: the stages stop, the listing
/// stops with them, so that the shell sees its job stopped; `fg`
/// continues the listing, which gives the stages the terminal back and
/// continues them.
#[test]
fn spawn_pipeline_at_a_terminal_stops_and_continues_with_its_stages() {
    if !have("bash") {
        return;
    }
    // Run by bash itself, and by a script that bash runs: the script must
    // stop too, or bash, which waits for the script, never sees its job
    // stop.
    for command in ["{} cat", "sh -c '{} cat; echo the script goes on'"] {
        let command = command.replace("{}", bin!("spawn-pipeline"));
        let script = format!(
            "set -m; echo READY; {command}; echo \"stopped: $?\"; \
             fg; echo \"done: $?\""
        );
        let mut terminal = AtTerminal::bash(&script);
        terminal.wait_for("READY", || None);
        let mut listing = None;
        wait_until("bash to start spawn-pipeline", || {
            listing = descendants(terminal.pid()).into_iter().find(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim_end() == "spawn-pipeline")
            });
            listing.is_some()
        });
        let (stages, group) = stages_of(listing.unwrap(), 1);
        let _cleanup = KillGroupOnDrop(group);
        terminal.type_keys("one\n");
        terminal.wait_for("one\r\none\r\n", || a_stage_stopped(&stages));
        terminal.type_keys("\x1a"); // Ctrl-Z
        // 148 = 128 + SIGTSTP: bash saw its job stop.
        terminal.wait_for("stopped: 148", || None);
        // bash runs `fg`, and the listing continues its stage.
        wait_until("the stage to be continued", || {
            state_of(stages[0]) != Some('T')
        });
        terminal.type_keys("two\n");
        terminal.wait_for("two\r\ntwo\r\n", || a_stage_stopped(&stages));
        terminal.type_keys("\x04");
        terminal.wait_for("done: 0", || None);
        assert!(terminal.finish().success(), "{command}");
    }
}

/// Children survive `exec`: a program exec'd by a shell that had started
/// a job of its own inherits that job as its child. Here the job stops
/// itself with SIGSTOP; the program must not take that for a stage's stop,
/// take the terminal from `cat` and stop the whole job. It used to: `cat`,
/// in the background, was stopped by SIGTTIN as soon as it read.
#[test]
fn spawn_pipeline_at_a_terminal_ignores_the_stop_of_a_child_it_did_not_start() {
    if !have("bash") {
        return;
    }
    let script = format!(
        "set -m; echo READY; \
         sh -c 'sh -c \"kill -STOP \\$\\$\" & exec {} cat'; \
         echo \"ended: $?\"",
        bin!("spawn-pipeline")
    );
    let mut terminal = AtTerminal::bash(&script);
    terminal.wait_for("READY", || None);
    let comm = |pid: Pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|comm| comm.trim_end().to_string())
            .unwrap_or_default()
    };
    let mut found = None;
    wait_until("spawn-pipeline to start cat, and its job to stop", || {
        let Some(listing) = descendants(terminal.pid())
            .into_iter()
            .find(|&pid| comm(pid) == "spawn-pipeline")
        else {
            return false;
        };
        let children = children_of(listing);
        let cat = children.iter().copied().find(|&c| comm(c) == "cat");
        let job_stopped = children
            .iter()
            .any(|&c| comm(c) == "sh" && state_of(c) == Some('T'));
        found = cat.filter(|_| job_stopped).map(|cat| (listing, cat));
        found.is_some()
    });
    let (listing, cat) = found.unwrap();
    let _job = KillGroupOnDrop(pgid_of(listing).expect("the job's group"));
    let _stages = KillGroupOnDrop(pgid_of(cat).expect("the stages' group"));
    terminal.type_keys("one\n");
    terminal.wait_for("one\r\none\r\n", || a_stage_stopped(&[cat]));
    terminal.type_keys("\x04");
    terminal.wait_for("ended: 0", || None);
}

/// A wait made around std's back takes the status that a `Child` needs:
/// here a wait for the child's group reaps it, and `Child::wait` then
/// fails with ECHILD. A program that waits for any child, as Listing 23-1
/// does, must own every child it has.
#[test]
fn a_wait_for_a_group_takes_the_status_a_child_needed() {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let mut child = Command::new("true").process_group(0).spawn().unwrap();
    let group = Pid::from_raw(child.id() as i32);
    let status = waitid(Id::PGid(group), WaitPidFlag::WEXITED).unwrap();
    assert_eq!(status.pid(), Some(group), "Linux {}", kernel());
    let err = child.wait().unwrap_err();
    let linux = kernel();
    assert_eq!(
        err.raw_os_error(),
        Some(nix::libc::ECHILD),
        "{err} (Linux {linux})"
    );
}

/// Until exec, a stage runs the program's handlers, and the program
/// catches SIGINT, SIGTERM and SIGHUP (signal-hook): a Ctrl-C that reaches
/// a stage once it has joined the stages' group, before its exec, would
/// run that handler and be lost, and the stage would run on. strace holds
/// the stage for two seconds on its way out of a system call: `setpgid`,
/// which std makes before the hooks, then `getppid`, in `die_with_parent`.
/// The test sends SIGINT to the stages' group then, as Ctrl-C would, and
/// the stage must die of it instead of running `sleep`.
#[test]
fn spawn_pipeline_stage_dies_of_a_sigint_that_comes_before_its_exec() {
    if !have("strace") {
        return;
    }
    for (call, number) in [
        ("setpgid", nix::libc::SYS_setpgid),
        ("getppid", nix::libc::SYS_getppid),
    ] {
        let mut command = Command::new("strace");
        command
            .args(["-f", "-q", "-o", "/dev/null", "--seccomp-bpf"])
            .args(["-e", &format!("trace={call}"), "-e", "signal=none"])
            .arg(format!("--inject={call}:delay_exit=2000000"))
            .arg("--")
            .arg(bin!("spawn-pipeline"))
            .args(["sleep", "60"]);
        let traced = Listing::spawn(&mut command, Stdio::piped());
        let mut held = None;
        wait_until("the stage to be held in its call", || {
            let Some(&pipeline) = children_of(traced.pid()).first() else {
                return false;
            };
            held = children_of(pipeline).first().copied().filter(|&stage| {
                threads_blocked_in(stage, number) == 1
                    && state_of(stage) == Some('t')
            });
            held.is_some()
        });
        let stage = held.unwrap();
        let group = pgid_of(stage).expect("the stages' group");
        killpg(group, Signal::SIGINT).unwrap();
        wait_until("the stage to die, or to run sleep", || {
            is_dead(stage)
                || std::fs::read_to_string(format!("/proc/{stage}/comm"))
                    .is_ok_and(|name| name.trim() == "sleep")
        });
        let survived = !is_dead(stage);
        drop(traced); // Kills the group, the program with it.
        assert!(!survived, "{call}: {stage} ran sleep after a SIGINT");
    }
}

/// The race that `die_with_parent`'s `getppid` check closes: the program
/// dies after a stage's `fork`, before the stage has asked for
/// `PR_SET_PDEATHSIG`, so that no signal will ever come. strace holds the
/// stage for two seconds on its way into `prctl`, the stage's only call to
/// it, and the program is killed then. The stage must end in its hook;
/// with the check left out, it ran `sleep`, adopted, in a group of its own
/// that nothing would kill. Linux 6.18 here.
#[test]
fn spawn_pipeline_stage_ends_when_the_program_died_before_it_asked_for_pdeathsig()
 {
    if !have("strace") {
        return;
    }
    let mut command = Command::new("strace");
    command
        .args(["-f", "-q", "-o", "/dev/null", "--seccomp-bpf"])
        .args(["-e", "trace=prctl", "-e", "signal=none"])
        .arg("--inject=prctl:delay_enter=2000000")
        .arg("--")
        .arg(bin!("spawn-pipeline"))
        .args(["sleep", "60"]);
    let traced = Listing::spawn(&mut command, Stdio::piped());
    let mut held = None;
    wait_until("the stage to be held on its way into prctl", || {
        let Some(&pipeline) = children_of(traced.pid()).first() else {
            return false;
        };
        held = children_of(pipeline)
            .first()
            .copied()
            .filter(|&stage| {
                threads_blocked_in(stage, nix::libc::SYS_prctl) == 1
                    && state_of(stage) == Some('t')
            })
            .map(|stage| (pipeline, stage));
        held.is_some()
    });
    let (pipeline, stage) = held.unwrap();
    // The stage leads the stages' group (std's `setpgid` came first).
    let _cleanup = KillGroupOnDrop(stage);
    nix::sys::signal::kill(pipeline, Signal::SIGKILL).unwrap();
    wait_until("the stage to end, or to run sleep", || {
        is_dead(stage)
            || std::fs::read_to_string(format!("/proc/{stage}/comm"))
                .is_ok_and(|name| name.trim() == "sleep")
    });
    let survived = !is_dead(stage);
    drop(traced);
    assert!(
        !survived,
        "{stage} ran sleep, the program dead (Linux {})",
        kernel()
    );
}

/// Every process below `pid`: children, their children, and so on.
fn descendants(pid: Pid) -> Vec<Pid> {
    let mut found = children_of(pid);
    let mut i = 0;
    while i < found.len() {
        let more = children_of(found[i]);
        found.extend(more);
        i += 1;
    }
    found
}

/// Started in the background (`&`), the listing leaves the terminal to
/// the shell; `cat` stops at its first read (SIGTTIN), the listing stops
/// with it, so that bash sees its job stopped, and `fg` gives the stages
/// the terminal. Also with SIGTSTP ignored or blocked by whoever started
/// the listing, which exec keeps: the listing must still stop, not spin.
#[test]
fn spawn_pipeline_started_in_the_background_waits_for_fg() {
    if !have("bash") {
        return;
    }
    for prefix in ["", "env --ignore-signal=TSTP ", "env --block-signal=TSTP "]
    {
        let script = format!(
            "set -m; {prefix}{} cat & read -r go; fg; echo \"done: $?\"",
            bin!("spawn-pipeline")
        );
        let mut terminal = AtTerminal::bash(&script);
        let listing = spawn_pipeline_under(terminal.pid());
        let (stages, group) = stages_of(listing, 1);
        let _cleanup = KillGroupOnDrop(group);
        // Every thread of the listing: the kernel tells bash that its job
        // stopped (SIGCHLD) only once the last thread has stopped, while
        // the first may show `T` before. And bash's `fg` sends SIGCONT
        // only to a job it knows to be stopped (`start_job`, jobs.c):
        // typed before, `fg` would give the listing the terminal and leave
        // it stopped.
        wait_until("cat and spawn-pipeline to stop", || {
            state_of(stages[0]) == Some('T') && all_threads_stopped(listing)
        });
        terminal.type_keys("go\n"); // bash's `read`, then `fg`.
        wait_until("the stages to own the terminal, and cat to go on", || {
            nix::unistd::tcgetpgrp(&terminal.master).ok() == Some(group)
                && state_of(stages[0]) != Some('T')
        });
        terminal.type_keys("hi\n");
        terminal.wait_for("hi\r\nhi\r\n", || a_stage_stopped(&stages));
        terminal.type_keys("\x04");
        terminal.wait_for("done: 0", || None);
        assert!(terminal.finish().success(), "{prefix}");
    }
}

/// `fg` of a job that is running, not stopped: bash gives the terminal to
/// the listing's group and sends no SIGCONT (`start_job`, jobs.c, only
/// continues a job it knows to be stopped), so the listing is not told.
/// Its stage, in the background, waits on a FIFO that the test opens only
/// once `fg` has run. Then either the stage reads a line the test types,
/// gets SIGTTIN, and the listing, which has the terminal, must hand it
/// over and continue the stage rather than stop the job (bash used to
/// report it stopped, 148); or the test types Ctrl-Z, which reaches the
/// listing's group, not the stages', and the listing must stop its stage
/// too (it used to stop alone, the stage running on).
#[test]
fn spawn_pipeline_brought_to_the_foreground_while_it_runs_hands_over_the_terminal()
 {
    use std::os::unix::fs::OpenOptionsExt;
    if !have("bash") {
        return;
    }
    for ctrl_z in [false, true] {
        let dir = tempfile::TempDir::new().unwrap();
        let gate = dir.path().join("gate");
        nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let stage = format!(
            "read -r go < '{}'; read -r x && echo \"got: $x\"",
            gate.display()
        );
        let after_fg = if ctrl_z {
            "echo \"stopped: $?\"; read -r again; fg; echo \"status: $?\""
        } else {
            "echo \"status: $?\""
        };
        let script = format!(
            "set -m; {} sh -c '{}' & read -r go; fg; {after_fg}",
            bin!("spawn-pipeline"),
            stage.replace('\'', "'\\''"),
        );
        let mut terminal = AtTerminal::bash(&script);
        let listing = spawn_pipeline_under(terminal.pid());
        let (stages, group) = stages_of(listing, 1);
        let _cleanup = KillGroupOnDrop(group);
        terminal.type_keys("go\n"); // bash's `read`, then `fg`.
        wait_until("fg to give the listing's group the terminal", || {
            nix::unistd::tcgetpgrp(&terminal.master).ok() == pgid_of(listing)
        });
        assert_ne!(state_of(stages[0]), Some('T'), "the job was running");
        if ctrl_z {
            terminal.type_keys("\x1a");
            terminal.wait_for("stopped: 148", || None);
            assert_eq!(
                state_of(stages[0]),
                Some('T'),
                "bash reports the job stopped: its stage must be stopped \
                 too (Linux {})",
                kernel()
            );
            terminal.type_keys("again\n"); // bash's `read`, then `fg`.
        }
        // The stage's first read, of the FIFO: it goes on to the terminal.
        let mut opened = None;
        wait_until("the stage to open the FIFO", || {
            opened = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&gate)
                .ok();
            opened.is_some()
        });
        opened.unwrap().write_all(b"\n").unwrap();
        terminal.type_keys("hello\n");
        terminal.wait_for("got: hello\r\nstatus: 0", || {
            (state_of(listing) == Some('T') && all_threads_stopped(listing))
                .then(|| format!("spawn-pipeline stopped (Linux {})", kernel()))
        });
        assert!(terminal.finish().success(), "ctrl_z: {ctrl_z}");
    }
}

/// A first stage that cannot run has already, in its `pre_exec` hook,
/// given the terminal to its own group, empty once it has failed: the
/// listing must take the terminal back before it reports, or, with the
/// terminal's `tostop` flag set, writing its message stops it (SIGTTOU)
/// and bash sees its job stop (status 150) instead of fail.
#[test]
fn spawn_pipeline_at_a_terminal_takes_it_back_when_a_stage_cannot_run() {
    if !have("bash") || !have("stty") {
        return;
    }
    let script = format!(
        "set -m; stty tostop; {} no-such-program-p4f; echo \"status: $?\"",
        bin!("spawn-pipeline")
    );
    let mut terminal = AtTerminal::bash(&script);
    terminal.wait_for(r#"cannot run "no-such-program-p4f""#, || None);
    terminal.wait_for("status: 1\r\n", || None);
    assert!(terminal.finish().success());
}

/// At its end the listing takes the terminal back from the stages' group,
/// for a script that ran it: without job control, nobody else does. Here
/// `sh`, the terminal's session leader, runs the listing with `true` as
/// its one stage, then changes the terminal's settings, which only a
/// process of the foreground group may do. With `take_back` left out of
/// `run`, `stty` failed with EIO (the script's group, orphaned, was in the
/// background) while every other test of the chapter passed.
#[test]
fn spawn_pipeline_at_a_terminal_gives_it_back_to_the_script_that_ran_it() {
    if !have("stty") {
        return;
    }
    let script = format!(
        "{} true; stty sane; echo \"stty: $?\"",
        bin!("spawn-pipeline")
    );
    let mut terminal = AtTerminal::start("sh", &["-c", &script]);
    terminal.wait_for("stty: 0", || None);
    assert!(terminal.finish().success());
}

/// The pid of `spawn-pipeline` under `traced`, a strace that runs it:
/// strace's child once it runs the listing (strace forks a child or two
/// of its own first, to test what ptrace can do).
fn traced_listing(traced: &Listing) -> Pid {
    let mut pipeline = None;
    wait_until("strace to start spawn-pipeline", || {
        pipeline = children_of(traced.pid()).into_iter().find(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "spawn-pipeline")
        });
        pipeline.is_some()
    });
    pipeline.unwrap()
}

/// `spawn-pipeline sleep 60` run by strace with the options `strace`,
/// under setpriv's death signal: strace's run, the listing's pid, its one
/// stage once it runs, and the stage's group, killed when dropped.
fn traced_sleep_pipeline(
    strace: &[&str],
) -> (Listing, Pid, Pid, KillGroupOnDrop) {
    let mut command = Command::new("strace");
    command
        .args(strace)
        .args(["--", "setpriv", "--pdeathsig", "KILL", "--"])
        .args([bin!("spawn-pipeline"), "sleep", "60"]);
    let traced = Listing::spawn(&mut command, Stdio::piped());
    let pipeline = traced_listing(&traced);
    let (stages, group) = stages_of(pipeline, 1);
    (traced, pipeline, stages[0], KillGroupOnDrop(group))
}

/// Chapter 23's rule, `killpg` only while a stage of the group is not
/// reaped, where it matters: a signal that comes just after the last
/// stage is reaped. strace holds the listing's main thread for two
/// seconds on its way out of the `wait4` that reaped the stage, and the
/// test sends SIGTERM then. The listing must end by it without
/// signalling the group, whose id may already be a stranger's: here it
/// would fail with ESRCH.
#[test]
fn spawn_pipeline_never_signals_its_group_once_every_stage_is_reaped() {
    if !have("strace") || !have("setpriv") {
        return;
    }
    let (traced, pipeline, stage, group) = traced_sleep_pipeline(&[
        "-f",
        "-q",
        "-e",
        "trace=kill,wait4",
        "-e",
        "signal=none",
        "-e",
        "inject=wait4:delay_exit=2000000",
    ]);
    nix::sys::signal::kill(stage, Signal::SIGKILL).unwrap();
    wait_until("the stage to be reaped, and wait4 held", || {
        children_of(pipeline).is_empty() && state_of(pipeline) == Some('t')
    });
    nix::sys::signal::kill(pipeline, Signal::SIGTERM).unwrap();
    let out = finish_clean(traced);
    // strace ends the way the listing did.
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    let stray = format!("kill(-{}, ", group.0);
    assert!(
        !out.stderr.contains(&stray),
        "signalled its group after reaping it:\n{}",
        out.stderr
    );
}

/// A stage that stops, and dies before the listing has taken the news of
/// the stop: taking it must not reap the stage, outside the lock and with
/// its status lost. strace, on the listing's main thread alone (a traced
/// stage would not stop as others do), holds each `waitid` two seconds on
/// its way out. The test stops the stage, and while the main thread holds
/// that news, sends the listing SIGTERM, which its signal thread passes on
/// with SIGCONT: the stage dies. The listing must end by SIGTERM, not fail
/// with ECHILD for a stage it reaped without knowing.
#[test]
fn spawn_pipeline_keeps_the_status_of_a_stage_that_died_after_it_stopped() {
    if !have("strace") || !have("setpriv") {
        return;
    }
    let (traced, pipeline, stage, _group) = traced_sleep_pipeline(&[
        "-q",
        "-o",
        "/dev/null",
        "-e",
        "trace=waitid",
        "-e",
        "inject=waitid:delay_exit=2000000",
    ]);
    nix::sys::signal::kill(stage, Signal::SIGSTOP).unwrap();
    wait_until("the stage to stop, and waitid to be held", || {
        state_of(stage) == Some('T') && state_of(pipeline) == Some('t')
    });
    nix::sys::signal::kill(pipeline, Signal::SIGTERM).unwrap();
    wait_until("the stage to die", || state_of(stage) == Some('Z'));
    let out = finish_clean(traced);
    // strace ends the way the listing did.
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGTERM as i32),
        "{:?}: {}",
        out.status,
        out.stderr
    );
}

/// A stage may leave the group, as `setsid` does: the listing still
/// waits for it, its own child, and reports its status.
#[test]
fn spawn_pipeline_waits_for_a_stage_that_left_the_group() {
    if !have("setsid") {
        return;
    }
    let out = run_clean(
        bin!("spawn-pipeline"),
        &["true", "|", "setsid", "sh", "-c", "sleep 0.5; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    assert_eq!(out.stderr, "spawn-pipeline: setsid: exited with status 3\n");
}

/// A stage that left the group, as `setsid` does, when a later stage
/// cannot start: the listing must kill it by its pid, not only the group,
/// and report at once. It used to wait for it: here, for a minute. The
/// stage must have left the group before the listing signals, or the
/// group's SIGKILL would reach it: strace stops the listing with SIGSTOP
/// at its first `wait4`, std's reap of the stage that could not run,
/// before any `kill`; the test waits until strace reports it stopped and
/// `setsid` has made its session, then continues it. (The first version
/// held the listing's `kill` for a second, and trusted `setsid` to be
/// done by then.)
#[test]
fn spawn_pipeline_kills_a_stage_that_left_the_group_when_another_cannot_run() {
    if !have("setsid") || !have("strace") || !have("setpriv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let mut command = Command::new("strace");
    command
        .args(["-q", "-e", "trace=wait4", "-o"])
        .arg(&trace)
        .args(["-e", "inject=wait4:signal=STOP:when=1"])
        .args(["--", "setpriv", "--pdeathsig", "KILL", "--"])
        .args([bin!("spawn-pipeline"), "sleep", "60", "|", "setsid"])
        .args(["sleep", "61", "|", "no-such-program"]);
    let started = Instant::now();
    let traced = Listing::spawn(&mut command, Stdio::piped());
    let pipeline = traced_listing(&traced);
    wait_until(
        "the listing to stop, and a stage to leave the group",
        || {
            std::fs::read_to_string(&trace)
                .is_ok_and(|t| t.contains("--- stopped by SIGSTOP ---"))
                && children_of(pipeline)
                    .iter()
                    .any(|&stage| nix::unistd::getsid(Some(stage)) == Ok(stage))
        },
    );
    nix::sys::signal::kill(pipeline, Signal::SIGCONT).unwrap();
    let out = finish_clean(traced);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "spawn-pipeline: cannot run \"no-such-program\": No such file or \
         directory (os error 2)\n"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

/// A stage that left the group, as `setsid` does, is not spared by a
/// signal passed on or by `--timeout`: the listing signals it by its pid
/// too, as coreutils' `timeout` signals its command. It used to signal the
/// group only, and wait for that stage to end: here, a minute.
#[test]
fn spawn_pipeline_signals_a_stage_that_left_the_group_too() {
    if !have("setsid") {
        return;
    }
    let args = ["sleep", "60", "|", "setsid", "sleep", "61"];
    let pipeline = Listing::start(bin!("spawn-pipeline"), &args);
    let pid = pipeline.pid();
    let _cleanup = KillGroupOnDrop(pid);
    wait_until("a stage to start a session of its own", || {
        children_of(pid)
            .iter()
            .any(|&stage| nix::unistd::getsid(Some(stage)) == Ok(stage))
    });
    killpg(pid, Signal::SIGTERM).unwrap();
    let out = finish_clean(pipeline);
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));

    let started = Instant::now();
    let mut timed = vec!["--timeout", "1"];
    timed.extend(args);
    let out = run_clean(bin!("spawn-pipeline"), &timed);
    assert_eq!(out.status.code(), Some(124), "{}", out.stderr);
    assert_eq!(out.stderr, "spawn-pipeline: timed out after 1 s\n");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// The limit of the test above, which the chapter states: as the first
/// stage, the group's leader, `setsid(1)` cannot leave the group, so it
/// forks, exits at once, and its command runs on as a grandchild in a
/// session of its own. No `killpg`, no pid the listing knows, and no
/// PR_SET_PDEATHSIG (a fork does not inherit it) reaches that command: the
/// listing ends by the SIGTERM it passed on, and `sleep 31348` runs on
/// until the test kills it. With `setsid` moved to the second stage
/// (`cat | setsid sleep 31348`), the same test fails: that `sleep` is the
/// stage itself, and dies of the SIGTERM sent to its pid.
#[test]
fn spawn_pipeline_cannot_reach_the_command_of_setsid_as_its_first_stage() {
    if !have("setsid") {
        return;
    }
    let job = Sleepers("31348");
    let args = ["setsid", "sleep", "31348", "|", "cat"];
    let pipeline = Listing::start(bin!("spawn-pipeline"), &args);
    let pid = pipeline.pid();
    wait_until("setsid's command to run in a session of its own", || {
        job.pids()
            .iter()
            .any(|&p| nix::unistd::getsid(Some(p)) == Ok(p))
    });
    let sleep = job.pids()[0];
    // And `cat` must have left the listing's group, which a stage does
    // between its fork and its exec: one still in it takes the SIGTERM
    // sent to that group itself, and may die of it before the listing has
    // passed it on, which then ends by pipefail's 143, not by the signal.
    // A stage that runs `cat` has left.
    wait_until("cat to run, outside the listing's group", || {
        children_of(pid).iter().any(|&stage| {
            std::fs::read_to_string(format!("/proc/{stage}/comm"))
                .is_ok_and(|comm| comm == "cat\n")
        })
    });
    killpg(pid, Signal::SIGTERM).unwrap();
    wait_until("the listing to end", || is_dead(pid));
    assert!(
        !is_dead(sleep) && ppid_of(sleep) != Some(pid),
        "setsid's sleep {sleep} ended with the listing (Linux {})",
        kernel()
    );
    // It holds the listing's stderr: killed now, so that the end comes.
    drop(job);
    let out = finish_clean(pipeline);
    assert_died_of(&out, Signal::SIGTERM);
    assert_eq!(out.stderr, "");
}

/// The system may refuse a thread (`ulimit -u` counts threads): once the
/// stages run, the thread that passes signals on, or with `--timeout` the
/// watchdog, cannot start. The listing must end its stages and say why in
/// one line; it used to panic (exit 101).
#[test]
fn spawn_pipeline_says_why_when_a_thread_is_refused() {
    // The main thread and the stage fill a limit of 2, so the signal
    // thread is refused, or with `--timeout` the watchdog, which starts
    // first; with one more, the signal thread, the watchdog running.
    for (threads, args) in [
        (2, &["sleep", "60"][..]),
        (2, &["--timeout", "60", "sleep", "60"][..]),
        (3, &["--timeout", "60", "sleep", "60"][..]),
    ] {
        let mut command = Command::new(bin!("spawn-pipeline"));
        command.args(args);
        let Some((mut command, _dir)) = with_thread_limit(&command, threads)
        else {
            return;
        };
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        let what = format!("ulimit -u {threads}, {args:?}");
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            "spawn-pipeline: cannot start a thread: Resource temporarily \
             unavailable (os error 11)\n",
            "{what}"
        );
    }
}

/// A signal that came while the stages started, when the system then
/// refuses a thread: the listing ends its stages, as above, and then ends
/// by the signal, as it does once the stages run, rather than report the
/// thread. The signal is pending before the listing starts (`env` blocks
/// it, `sh` sends it to itself and execs the listing), the same state
/// without a race: signal-hook's handler takes it once `run` unblocks it.
/// Refused are the signal thread (a limit of 2: the main thread and the
/// stage), the watchdog (2, with `--timeout`), and the signal thread with
/// the watchdog running (3). It used to exit 1 with "cannot start a
/// thread", the signal gone with the `Signals` moved into the refused
/// thread's closure.
#[test]
fn spawn_pipeline_ends_by_a_signal_that_came_while_a_thread_was_refused() {
    crate::support::assert_ends_by_a_pending_sigterm_with_threads_refused(
        bin!("spawn-pipeline"),
        &[
            (2, "sleep 60"),
            (2, "--timeout 60 sleep 60"),
            (3, "--timeout 60 sleep 60"),
        ],
        "pipeline",
    );
}

/// Out of descriptors before anything starts: with four (0, 1, 2 and one
/// free), signal-hook's `socketpair` in `Signals::new` fails with EMFILE.
/// The one line must say what could not be done; it used to be a bare
/// "Too many open files (os error 24)".
#[test]
fn spawn_pipeline_says_what_failed_when_descriptors_run_out() {
    let mut command = Command::new(bin!("spawn-pipeline"));
    command.args(["true", "|", "true"]);
    crate::support::with_fd_limit(&mut command, 4, 4);
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "spawn-pipeline: cannot catch the signals it passes on: Too many \
         open files (os error 24)\n"
    );
}

/// Chapter 12's rule: give a child back what you found. `keep_zombies`
/// sets SIGCHLD's default action, for the listing's own waits; started
/// with SIGCHLD ignored, the listing must still start its stages with it
/// ignored. The stage prints its own /proc status. The stages used to get
/// the default.
#[test]
fn spawn_pipeline_gives_its_stages_back_the_sigchld_it_found() {
    let args = ["cat", "/proc/self/status", "|", "cat"];
    for ignored in [false, true] {
        let mut command = with_sigchld_ignored(bin!("spawn-pipeline"), &args);
        if !ignored {
            command = Command::new(bin!("spawn-pipeline"));
            command.args(args);
        }
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert!(out.status.success(), "{}", out.stderr);
        let status = out.stdout.join("\n");
        assert_eq!(
            crate::support::signal_in_status(
                &status,
                "SigIgn:",
                Signal::SIGCHLD
            ),
            ignored,
            "started with SIGCHLD ignored: {ignored}\n{status}"
        );
    }
}

/// The writer thread of `thread` and `output` may be refused (`ulimit -u`
/// counts threads) once `cat` runs: one line, and `cat` reaped, where
/// `thread::spawn` panicked (exit 101). The main thread and `cat` fill the
/// limit.
#[test]
fn spawn_deadlock_says_why_when_its_writer_thread_is_refused() {
    for way in ["thread", "output"] {
        let mut command = Command::new(bin!("spawn-deadlock"));
        command.arg(way);
        let Some((mut command, _dir)) = with_thread_limit(&command, 2) else {
            return;
        };
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert!(!out.stderr.contains("panicked"), "{way}: {}", out.stderr);
        assert_eq!(out.status.code(), Some(1), "{way}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            "spawn-deadlock: cannot start a thread: Resource temporarily \
             unavailable (os error 11)\n",
            "{way}"
        );
    }
}

#[test]
fn pipeline_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("spawn-pipeline"), &[], "every stage needs a command");
    assert_rejects(bin!("spawn-pipeline"), &["ls", "|"], "every stage needs");
    assert_rejects(bin!("spawn-pipeline"), &["--timeout", "x", "ls"], r#""x""#);
    // For `timeout(1)`, 0 means no limit; here it would kill every stage
    // at once: refused.
    assert_rejects(
        bin!("spawn-pipeline"),
        &["--timeout", "0", "sleep", "60"],
        "--timeout",
    );
    assert_rejects(bin!("spawn-deadlock"), &["later"], "unknown way");
    assert_rejects(bin!("spawn-deadlock"), &["--bytes", "-1"], "--bytes");
    // More than it could ever hold in memory: refused, not a panic.
    let huge = u64::MAX.to_string();
    assert_rejects(bin!("spawn-deadlock"), &["--bytes", &huge], "--bytes");
    // A deadline past what `Instant` can hold: refused, not a panic.
    assert_rejects(bin!("spawn-deadlock"), &["--wait", &huge], "--wait");
    // A wait of nothing would report a deadlock that never happened.
    assert_rejects(bin!("spawn-deadlock"), &["--wait", "0"], "--wait");
    assert_rejects(bin!("spawn-grandchild"), &["--fix"], "invalid option");
}

/// The program hands its job's terminal to the stages, and takes it from
/// anything else in that job: its `--help` says to run it alone there.
#[test]
fn spawn_pipeline_help_says_to_run_it_alone_in_its_job() {
    let out = run_clean(bin!("spawn-pipeline"), &["--help"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 1, "{:?}", out.stdout);
    assert!(
        out.stdout[0].contains(
            "run it alone in its shell's job (its own process group)"
        ),
        "{:?}",
        out.stdout[0]
    );
}

/// With its output on /dev/full, the program still kills the child's
/// group (`--group`) and reaps the child before it reports; strace
/// counts one reap. The first version wrote the child's line between
/// `killpg` and `waitpid`, and returned there, the child unreaped.
#[test]
fn spawn_grandchild_reaps_the_child_when_its_output_fails() {
    if !have("strace") {
        return;
    }
    for args in [&["--group"][..], &["--careless", "--group"]] {
        let (out, reaped) =
            reaps_with_stdout_full(bin!("spawn-grandchild"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            "spawn-grandchild: No space left on device (os error 28)\n",
            "{args:?}"
        );
        assert_eq!(reaped, 1, "{args:?}");
    }
}

/// Started with `SIGCHLD` ignored, which `exec` keeps, both programs set
/// its default back before their first child: every child stays a zombie
/// until reaped, so that its pid and its group's id stay its own. The
/// first versions failed with ECHILD, and 23-3 then never killed the
/// group, whose `sleep` ran on.
#[test]
fn spawn_pipeline_and_grandchild_survive_an_ignored_sigchld() {
    let mut pipeline = with_sigchld_ignored(
        bin!("spawn-pipeline"),
        &["echo", "hi", "|", "cat"],
    );
    let out = finish_clean(Listing::spawn(&mut pipeline, Stdio::piped()));
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(out.stdout, ["hi"]);

    let mut grandchild =
        with_sigchld_ignored(bin!("spawn-grandchild"), &["--group"]);
    let started = Instant::now();
    let out = finish_clean(Listing::spawn(&mut grandchild, Stdio::piped()));
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(
        out.stdout[1..],
        [
            "The child has exited; killed its process group",
            "End of stream"
        ]
    );
    // Its `sleep 5` was killed, not waited for.
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// A child that cannot start, here with no `sh` on PATH: the one line
/// names the program. It used to say only "No such file or directory",
/// which names no file.
#[test]
fn spawn_grandchild_names_the_child_it_cannot_start() {
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(bin!("spawn-grandchild"));
    command.env("PATH", empty.path());
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "spawn-grandchild: cannot start sh: No such file or directory (os \
         error 2)\n"
    );
}

/// `--timeout` against coreutils' `timeout -k`, for a stage that ignores
/// SIGTERM and so needs the SIGKILL: the listing exits with 124, while
/// `timeout`, which sends SIGKILL to its whole group, itself included,
/// ends with 137 (coreutils 9.1 here). The chapter once said the listing
/// exits with 124 "as timeout(1) does", which holds only when SIGTERM
/// suffices.
#[test]
fn spawn_pipeline_exits_124_after_sigkill_where_timeout_k_ends_with_137() {
    if !have("timeout") {
        return;
    }
    let stage = ["sh", "-c", "trap '' TERM; sleep 60"];
    let mut args = vec!["--timeout", "1"];
    args.extend(stage);
    let out = run_clean(bin!("spawn-pipeline"), &args);
    assert_eq!(out.status.code(), Some(124), "{}", out.stderr);
    let mut args = vec!["-k", "1", "1"];
    args.extend(stage);
    let out = run_clean("timeout", &args);
    // Killed by its own SIGKILL: status 137 in a shell.
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
}

/// A stage killed by a real-time signal, which nix 0.32's `WaitStatus`
/// cannot name: the listing once failed with "EINVAL: Invalid argument"
/// and left the other stages to the parent-death SIGKILL. It reports the
/// death as pipefail would (128 + n), and, asked to stop afterwards,
/// passes SIGTERM on to the stages left and ends by it.
#[test]
fn spawn_pipeline_reports_a_stage_killed_by_a_real_time_signal() {
    let rtmin = nix::libc::SIGRTMIN();
    let pipeline =
        Listing::start(bin!("spawn-pipeline"), &["sleep", "60", "|", "cat"]);
    let _cleanup = KillGroupOnDrop(pipeline.pid());
    let (first, _) = stages(&pipeline, 2);
    // SAFETY: a plain kill(2) of a stage not yet reaped.
    assert_eq!(unsafe { nix::libc::kill(first[0].as_raw(), rtmin) }, 0);
    let out = finish_clean(pipeline);
    assert_eq!(
        out.stderr,
        format!("spawn-pipeline: sleep: killed by signal {rtmin}\n")
    );
    assert_eq!(out.status.code(), Some(128 + rtmin));

    let pipeline = Listing::start(
        bin!("spawn-pipeline"),
        &["sleep", "60", "|", "sleep", "61"],
    );
    let pid = pipeline.pid();
    let _cleanup = KillGroupOnDrop(pid);
    let (stages, _) = stages(&pipeline, 2);
    // SAFETY: as above.
    assert_eq!(unsafe { nix::libc::kill(stages[0].as_raw(), rtmin) }, 0);
    wait_until("the listing to reap the killed stage", || {
        children_of(pid) == [stages[1]]
    });
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let out = finish_clean(pipeline);
    assert_eq!(out.stderr, "");
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    assert!(is_dead(stages[1]), "the second stage was left running");
}

/// A child killed by a real-time signal, with `--group`: the listing once
/// failed with "EINVAL: Invalid argument" at its wait, before `killpg`,
/// and left the group's `sleep 31377` running. A stand-in `sh`, first on
/// PATH, starts it, says its line, and kills itself with SIGRTMIN; the
/// listing kills the group, reports, and says how the child ended.
#[test]
fn spawn_grandchild_group_kills_the_group_of_a_child_killed_by_a_real_time_signal()
 {
    let job = Sleepers("31377");
    let (mut command, _dir) = grandchild_with_stand_in_sh(
        "#!/bin/sh\nsleep 31377 >/dev/null 2>&1 &\n\
         echo \"Child $$ started sleep as pid $!\"\nkill -s RTMIN $$\n",
        &["--group", "--cloexec"],
    );
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    let rtmin = nix::libc::SIGRTMIN();
    assert!(
        out.stderr.starts_with(&format!(
            "spawn-grandchild: the child failed: signal: {rtmin}"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stdout[1..],
        ["The child has exited; killed its process group"]
    );
    wait_until("the group's sleep to end", || job.pids().is_empty());
}

/// Chapter 12's rule for Listings 23-2 and 23-3 too: their `keep_zombies`
/// set SIGCHLD's default for their own waits, and started with SIGCHLD
/// ignored, they used to start `cat` and `sh` with the default. A
/// stand-in for each, first on PATH, records its /proc status, then execs
/// the real one; `--group` ends the shell's `sleep` at once.
#[test]
fn spawn_deadlock_and_grandchild_give_their_child_back_the_sigchld_it_found() {
    let programs = [
        (
            bin!("spawn-deadlock"),
            "cat",
            &["thread", "--bytes", "10"][..],
        ),
        (bin!("spawn-grandchild"), "sh", &["--group"][..]),
    ];
    for (listing, child, args) in programs {
        for ignored in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            if crate::support::status_recorder(dir.path(), child).is_none() {
                return;
            }
            let recorded = dir.path().join("status");
            let mut command = with_sigchld_ignored(listing, args);
            if !ignored {
                command = Command::new(listing);
                command.args(args);
            }
            let path = std::env::var("PATH").unwrap_or_default();
            command
                .env("PATH", format!("{}:{path}", dir.path().display()))
                .env("STATUS_FILE", &recorded);
            let out =
                finish_clean(Listing::spawn(&mut command, Stdio::piped()));
            let what =
                format!("{child}, started with SIGCHLD ignored: {ignored}");
            assert!(out.status.success(), "{what}: {}", out.stderr);
            let status = std::fs::read_to_string(&recorded).expect(&what);
            assert_eq!(
                crate::support::signal_in_status(
                    &status,
                    "SigIgn:",
                    Signal::SIGCHLD
                ),
                ignored,
                "{what}"
            );
        }
    }
}

/// A SIGINT or SIGQUIT the listing found ignored (a script's `&` job,
/// `nohup`) is the user's choice, which Chapter 12 keeps for the program
/// too: a stage that dies of it (here one that gives it its default
/// action and sends it to itself) is reported, and the listing exits with
/// 128 + n, as a shell would report the stage. Found at its default, the
/// listing ends by the signal, as before. It used to set the ignored
/// signal to its default and die of it.
#[test]
fn spawn_pipeline_does_not_die_of_a_signal_it_found_ignored() {
    for (signal, name) in [(Signal::SIGINT, "INT"), (Signal::SIGQUIT, "QUIT")] {
        let stage = [
            &format!("--default-signal={name}"),
            "sh",
            "-c",
            &format!("ulimit -c 0; kill -{name} $$"),
        ];
        for ignored in [false, true] {
            let mut command = Command::new("env");
            if ignored {
                command.arg(format!("--ignore-signal={name}"));
            }
            command.arg(bin!("spawn-pipeline")).arg("env").args(stage);
            let out =
                finish_clean(Listing::spawn(&mut command, Stdio::piped()));
            if !ignored {
                assert_eq!(out.status.signal(), Some(signal as i32), "{name}");
                continue;
            }
            assert_exited_with(&out, 128 + signal as i32);
            assert_eq!(
                out.stderr,
                format!("spawn-pipeline: env: killed by {signal}\n")
            );
        }
    }
}

/// A child that closes its stdout without a line and works on: the end
/// of the stream is as good as silence, and the listing kills the child
/// then, at once, not only past its two seconds. A stand-in `sh`, first on
/// PATH, execs `sleep 31379` with its stdout closed; the listing says the
/// child said nothing, names no limit, and leaves no `sleep` running.
#[test]
fn spawn_grandchild_kills_a_child_that_closes_its_stdout_without_a_line() {
    let job = Sleepers("31379");
    let (mut command, _dir) = grandchild_with_stand_in_sh(
        "#!/bin/sh\nexec sleep 31379 >&-\n",
        &["--cloexec"],
    );
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stderr, "spawn-grandchild: the child said nothing\n");
    wait_until("the child's sleep to end", || job.pids().is_empty());
}

/// A stage that cannot start has the stages already running killed by
/// their group too, not only each by its pid: a stage's own background
/// job, a grandchild of the listing, is reached only by the group (fork
/// clears the parent-death signal, so nothing else ends it). strace holds
/// the listing five seconds on its way into its second fork, the second
/// stage's, so that the first stage's job is running by then.
#[test]
fn spawn_pipeline_kills_a_stages_background_job_when_a_later_one_cannot_start()
{
    if !have("strace") {
        return;
    }
    let job = Sleepers("31999");
    let mut command = Command::new("strace");
    command
        .args(["-q", "-o", "/dev/null", "-e", "trace=clone,clone3"])
        .args(["-e", "inject=clone:delay_enter=5000000:when=2", "--"])
        .arg(bin!("spawn-pipeline"))
        .args(["sh", "-c", "sleep 31999 & wait", "|", "no-such-program"]);
    let pipeline = Listing::spawn(&mut command, Stdio::piped());
    wait_until("the first stage's job to start", || !job.pids().is_empty());
    let out = finish_clean(pipeline);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot run \"no-such-program\""),
        "{}",
        out.stderr
    );
    wait_until("the first stage's job to end", || job.pids().is_empty());
}

/// A descriptor open for reading and writing holds the write end too:
/// Listing 23-3 names its holder as well as `sleep`, as Listing 19-3
/// does. While `spawn-grandchild` waits its two seconds for the end, this
/// test process opens `sleep`'s leaked write end again through /proc with
/// `O_RDWR` (a new open of the pipe, 2 in the low bits of its flags), its
/// only hold on the pipe; it closes it once both holders are named, so
/// the end comes when `sleep` exits. The listing used to name `sleep`
/// alone, then wait in vain for an end that this unnamed holder kept away.
#[test]
fn spawn_grandchild_names_a_holder_that_has_the_pipe_open_for_reading_and_writing()
 {
    use std::os::fd::AsRawFd;
    let mut listing = Listing::start(bin!("spawn-grandchild"), &[]);
    let first = listing.expect(r"Child (\d+) started sleep as pid (\d+)");
    let child = Pid::from_raw(first[1].parse().unwrap());
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    let both = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{sleep}/fd/4"))
        .unwrap();
    let info = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        both.as_raw_fd()
    ))
    .unwrap();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
    let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
    assert_eq!(flags & 0o3, 0o2, "O_RDWR");
    let me = std::process::id();
    let name = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(listing.next_line(), "The child has exited");
    let mut holders = vec![listing.next_line(), listing.next_line()];
    holders.sort();
    let mut expected = vec![
        format!(
            "No end of stream: sleep (pid {sleep}) has the write end as \
             descriptor 4"
        ),
        format!(
            "No end of stream: {} (pid {me}) has the write end as \
             descriptor {}",
            name.trim_end(),
            both.as_raw_fd()
        ),
    ];
    expected.sort();
    assert_eq!(holders, expected);
    drop(both);
    assert_eq!(listing.next_line(), "End of stream once sleep had exited");
    let out = finish_clean(listing);
    assert!(out.status.success(), "{}", out.stderr);
    wait_until("every process to end", || {
        group_is_gone(child) && is_dead(sleep)
    });
}

/// Four to eight descriptors: each step of 23-1 and 23-3 that runs out
/// says what it could not do. 23-3's pipe was a bare "EMFILE: Too many
/// open files"; 23-1 said `cannot run "seq"` when it was this process
/// that had no descriptor left for the pipes that start `seq`.
#[test]
fn pipelines_name_the_step_when_descriptors_run_out() {
    use crate::support::assert_names_the_step_when_descriptors_run_out;

    let pipeline = || {
        let mut command = Command::new(bin!("spawn-pipeline"));
        command.args(["seq", "1", "3", "|", "cat", "|", "cat"]);
        command
    };
    let said = assert_names_the_step_when_descriptors_run_out(pipeline, 4..=8);
    assert!(said.iter().all(|line| !line.is_empty()), "{said:?}");
    for ways in [&["--group"][..], &["--cloexec"], &["--group", "--cloexec"]] {
        let grandchild = || {
            let mut command = Command::new(bin!("spawn-grandchild"));
            command.args(ways);
            command
        };
        assert_names_the_step_when_descriptors_run_out(grandchild, 4..=8);
    }
}
