//! Chapter 4, Pipes: Listings 4-1 (`pipe-spam`), 4-2 (`pipe-glued`), 4-3
//! (`pipe-lines`) and 4-4 (`fork-exit`).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::prctl;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use regex::Regex;

use crate::support::{
    Listing, Trace, assert_matches_book, assert_rejects,
    assert_session_matches_book, assert_traced_run_matches_book, can_trace,
    cargo_run, children_of, have, kernel, run, shell, state_of, wait_until,
};

/// What the child writes, in order: `Spam 000` to `Spam 004`, then again.
fn spam(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("Spam {:03}", i % 5)).collect()
}

/// The one child of `parent`, once it has been forked.
fn only_child(parent: Pid) -> Pid {
    let mut children = Vec::new();
    wait_until("the fork", || {
        children = children_of(parent);
        !children.is_empty()
    });
    assert_eq!(children.len(), 1, "exactly one child: {children:?}");
    children[0]
}

/// True once `pid` is gone or a zombie: it no longer runs.
fn is_dead(pid: Pid) -> bool {
    matches!(state_of(pid), None | Some('Z'))
}

#[test]
fn pipe_spam_forks_and_every_message_reaches_the_parent_in_order() {
    let mut spam_run = Listing::start(bin!("pipe-spam"), &["--count", "6"]);
    let pid = spam_run.pid().to_string();
    let first = spam_run.expect(r"Parent (\d+) got \[(.*)\] at \d+\.\d+");
    assert_eq!(first[1], pid, "the parent is the process we started");
    only_child(spam_run.pid());

    let out = spam_run.finish();
    assert!(
        out.status.success(),
        "child or parent failed: {}",
        out.stderr
    );
    // Reads may glue messages together (`Spam 004Spam 000`), so compare
    // the bytes, not the reads.
    let mut received = String::new();
    for line in &out.stdout {
        let (_, rest) = line.split_once(" got [").expect("Parent … got [");
        let (bytes, _) = rest.rsplit_once("] at ").expect("] at <time>");
        received.push_str(bytes);
    }
    assert_eq!(received, spam(6).concat());
}

#[test]
fn pipe_spam_output_and_descriptors_match_the_book() {
    if !have("pgrep") {
        return;
    }
    // Five messages come at least a second apart, so no read can glue two
    // of them: the output is the same on every run.
    let args = ["--count", "5"];
    let mut spam_run = Listing::start(bin!("pipe-spam"), &args);
    spam_run.next_line();
    // What a second terminal shows meanwhile: both processes hold both
    // ends, 3 to read (r) and 4 to write (w).
    let parent = spam_run.pid();
    let child = only_child(parent);
    let terminal2: Vec<_> = [
        format!("pgrep -l -P {parent}"),
        format!("ls -l /proc/{parent}/fd/3 /proc/{parent}/fd/4"),
        format!("ls -l /proc/{child}/fd/3 /proc/{child}/fd/4"),
    ]
    .into_iter()
    .map(|command| {
        let output = shell(&command);
        (command, output)
    })
    .collect();
    assert_eq!(terminal2[0].1, [format!("{child} pipe-spam")]);
    let out = spam_run.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch04-pipes/04-01-pipe-spam.out",
        "pipe-spam",
        &args,
        &out.stdout,
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch04-pipes/04-01-terminal-2.out", &session);
}

#[test]
fn pipe_spam_child_dies_with_its_parent_however_the_parent_dies() {
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGKILL,
    ] {
        let mut spam_run = Listing::start(bin!("pipe-spam"), &[]);
        spam_run.next_line();
        let child = only_child(spam_run.pid());
        spam_run.signal(signal);
        // Says which signal it was, should the listing not die of it.
        let parent = spam_run.pid();
        wait_until(&format!("pipe-spam to die of {signal}"), || {
            is_dead(parent)
        });
        // Checked before `finish`, which ends by killing the listing's
        // process group, the orphan included.
        wait_until(&format!("the child to die after {signal}"), || {
            is_dead(child)
        });
        let out = spam_run.finish();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(signal as i32), "{signal}");
    }
}

/// The race that `die_with_parent` closes: the parent dies after `fork`
/// but before its child has asked for `PR_SET_PDEATHSIG`, so no signal
/// will ever come, and only the child's `getppid` check sees that it has
/// been adopted. strace holds the child for two seconds on its way into
/// `prctl`, and the parent is killed then. A child that got past the check
/// would write its first message and sleep before the next: it must be
/// gone instead. Linux 6.18 here; `prctl` is the child's only call to it.
#[test]
fn pipe_spam_child_leaves_when_its_parent_died_before_it_asked_for_pdeathsig() {
    if !have("strace") {
        return;
    }
    let mut command = Command::new("strace");
    command
        .args(["-f", "-q", "-o", "/dev/null", "--seccomp-bpf"])
        .args(["-e", "trace=prctl", "-e", "signal=none"])
        .arg("--inject=prctl:delay_enter=2000000")
        .arg("--")
        .arg(bin!("pipe-spam"));
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
                crate::support::threads_blocked_in(child, nix::libc::SYS_prctl)
                    == 1
            })
            .map(|child| (parent, child));
        held.is_some()
    });
    let (parent, child) = held.unwrap();
    kill(parent, Signal::SIGKILL).unwrap();
    wait_until(
        "the child to leave, or to sleep before its next write",
        || {
            is_dead(child)
                || crate::support::threads_blocked_in(
                    child,
                    nix::libc::SYS_clock_nanosleep,
                ) == 1
        },
    );
    let survived = !is_dead(child);
    drop(traced); // Kills the group, the child with it.
    assert!(
        !survived,
        "{child} went on writing after its parent had died (Linux {})",
        kernel()
    );
}

#[test]
fn pipe_spam_parent_notices_within_seconds_that_its_child_was_killed() {
    let mut spam_run = Listing::start(bin!("pipe-spam"), &[]);
    spam_run.next_line();
    let child = only_child(spam_run.pid());
    nix::sys::signal::kill(child, Signal::SIGKILL).unwrap();
    let started = Instant::now();
    let out = spam_run.finish();
    // The parent polls for five seconds at a time, then checks: the
    // chapter's "within five seconds", with room for a loaded machine.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        format!(
            "pipe-spam: the child is gone: Signaled(Pid({child}), SIGKILL, \
             false)\n"
        )
    );
    // It reaped the child: no zombie is left.
    assert_eq!(state_of(child), None);
}

#[test]
fn pipe_glued_reads_two_writes_as_one_every_time() {
    for _ in 0..20 {
        let out = run(bin!("pipe-glued"), &[]);
        assert!(out.status.success(), "{}", out.stderr);
        let [wrote1, wrote2, got] = &out.stdout[..] else {
            panic!("three lines expected: {:?}", out.stdout);
        };
        let child = wrote1.split(' ').nth(1).unwrap();
        assert_eq!(*wrote1, format!("Child {child} wrote [Spam 004]"));
        assert_eq!(*wrote2, format!("Child {child} wrote [Spam 000]"));
        let parent = got.split(' ').nth(1).unwrap();
        assert_ne!(parent, child, "two processes: the fork happened");
        assert_eq!(
            *got,
            format!(
                "Parent {parent} got [Spam 004Spam 000] in one read of 16 bytes"
            )
        );
    }
}

#[test]
fn pipe_glued_output_matches_the_book() {
    let out = run(bin!("pipe-glued"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch04-pipes/04-02-pipe-glued.out",
        "pipe-glued",
        &[],
        &out.stdout,
    );
}

#[test]
fn pipe_lines_delivers_each_message_as_a_line_and_ends_by_itself() {
    let mut lines = Listing::start(bin!("pipe-lines"), &["--count", "6"]);
    let pid = lines.pid().to_string();
    let mut received = Vec::new();
    for _ in 0..6 {
        let got = lines.expect(r"Parent (\d+) got \[(.*)\] at \d+\.\d+");
        assert_eq!(got[1], pid);
        received.push(got[2].clone());
    }
    assert_eq!(received, spam(6), "one message per line, in order");
    // The parent saw the end of the stream because every write end is
    // closed once the child exits; with --count it then reaps the child.
    let out = lines.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 6);
}

#[test]
fn pipe_lines_output_and_descriptors_match_the_book() {
    if !have("pgrep") {
        return;
    }
    let args = ["--count", "6"];
    let mut lines = Listing::start(bin!("pipe-lines"), &args);
    lines.next_line();
    // Each process kept only its own end: the parent 3, the child 4.
    let parent = lines.pid();
    let child = only_child(parent);
    let terminal2: Vec<_> = [
        format!("pgrep -l -P {parent}"),
        format!("ls /proc/{parent}/fd /proc/{child}/fd"),
        format!("ls -l /proc/{parent}/fd/3 /proc/{child}/fd/4"),
        format!("grep flags /proc/{parent}/fdinfo/3 /proc/{child}/fdinfo/4"),
    ]
    .into_iter()
    .map(|command| {
        let output = shell(&command);
        (command, output)
    })
    .collect();
    let out = lines.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch04-pipes/04-03-pipe-lines.out",
        "pipe-lines",
        &args,
        &out.stdout,
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch04-pipes/04-03-terminal-2.out", &session);
}

/// The open-file flags of descriptor `fd` of `pid`, from the `flags:`
/// line of /proc/PID/fdinfo/FD (in octal there).
fn fd_flags(pid: Pid, fd: u32) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .unwrap_or_else(|err| panic!("fdinfo of {fd} in {pid}: {err}"));
    let octal = info
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .expect("a flags line");
    u32::from_str_radix(octal.trim(), 8).expect("octal flags")
}

/// Asserts that every pipe end `pid` holds is marked close-on-exec, and
/// returns how many it holds.
fn assert_pipe_ends_close_on_exec(pid: Pid) -> usize {
    let ends: Vec<u32> = crate::support::fds_of(pid)
        .into_iter()
        .filter(|(fd, target)| *fd > 2 && target.starts_with("pipe:"))
        .map(|(fd, _)| fd)
        .collect();
    for &fd in &ends {
        let flags = fd_flags(pid, fd);
        assert_ne!(
            flags & nix::libc::O_CLOEXEC as u32,
            0,
            "descriptor {fd} of {pid} has flags {flags:o}: no O_CLOEXEC"
        );
    }
    ends.len()
}

#[test]
fn pipe_listings_make_both_ends_close_on_exec() {
    // Listing 4-1 keeps both ends in both processes; 4-3 one in each.
    for (bin, held) in [(bin!("pipe-spam"), 2), (bin!("pipe-lines"), 1)] {
        let mut listing = Listing::start(bin, &[]);
        listing.next_line();
        let child = only_child(listing.pid());
        assert_eq!(assert_pipe_ends_close_on_exec(listing.pid()), held);
        assert_eq!(assert_pipe_ends_close_on_exec(child), held);
    }
}

/// A Python program that does what Lutz's `pipe2.py` does: newlines, both
/// unused ends closed, and a parent that reads lines with `readline()`
/// but never looks for the end of the stream. It names its child first,
/// for the test to kill.
const LIKE_PIPE2_PY: &str = "import os, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    zzz = 0
    while True:
        time.sleep(zzz)
        os.write(w, b'Spam %03d\\n' % zzz)
        zzz = (zzz + 1) % 5
else:
    print('child', pid, flush=True)
    os.close(w)
    lines = os.fdopen(r)
    while True:
        line = lines.readline()[:-1]
        print('Parent %d got [%s] at %s' % (os.getpid(), line, time.time()))
";

#[test]
fn pipe2_py_busy_loops_once_its_child_is_gone() {
    if !have("python3") {
        return;
    }
    let mut parent = Listing::start("python3", &["-c", LIKE_PIPE2_PY]);
    let child = parent.expect(r"^child (\d+)$").remove(1);
    let child = Pid::from_raw(child.parse().expect("a pid"));
    nix::sys::signal::kill(child, Signal::SIGKILL).expect("kill the child");
    // `readline()` returns '' at the end of the stream, at once and every
    // time: the parent never waits again. (Lines the child wrote before
    // it died come first.)
    let empty = Regex::new(r"^Parent \d+ got \[\] at [\d.]+$").unwrap();
    let mut line = parent.next_line();
    while line.starts_with("Parent") && line.contains("got [Spam") {
        line = parent.next_line();
    }
    for _ in 0..1000 {
        assert!(empty.is_match(&line), "{line:?}");
        line = parent.next_line();
    }
}

/// A subreaper, in Python: it starts the command of its arguments as
/// a shell would (SIGPIPE at its default), reaps every process that ends
/// below it, orphans included, and says how each ended.
const REAPER: &str = "
import os, subprocess, sys
subprocess.Popen(sys.argv[1:])
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if os.WIFSIGNALED(status):
        how = 'killed by signal %d' % os.WTERMSIG(status)
    else:
        how = 'exited with %d' % os.waitstatus_to_exitcode(status)
    print('reaped', pid, how, flush=True)
";

#[test]
fn pipe_lines_child_dies_of_sigpipe_at_its_next_write_after_the_parent() {
    // Killing the parent leaves the child an orphan, which a subreaper
    // adopts: the test runs the listing under one, to see how the child
    // ended, not only that it did.
    if !have("python3") {
        return;
    }
    let mut command = Command::new("python3");
    command.args(["-c", REAPER, bin!("pipe-lines")]);
    // SAFETY: prctl() is async-signal-safe, and nothing allocates.
    unsafe {
        command.pre_exec(|| {
            prctl::set_child_subreaper(true).map_err(io::Error::from)
        });
    }
    let mut reaper = Listing::spawn(&mut command, Stdio::piped());
    reaper.next_line();
    let lines = only_child(reaper.pid());
    let child = only_child(lines);
    kill(lines, Signal::SIGKILL).unwrap();
    // No pdeathsig here: the child lives until it next writes, at most
    // four seconds later, and that write kills it.
    let started = Instant::now();
    let (mut parent_ended, mut child_ended) = (None, None);
    while parent_ended.is_none() || child_ended.is_none() {
        let line = reaper.next_line();
        if let Some(how) = line.strip_prefix(&format!("reaped {lines} ")) {
            parent_ended = Some(how.to_owned());
        } else if let Some(how) = line.strip_prefix(&format!("reaped {child} "))
        {
            child_ended = Some(how.to_owned());
        }
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(parent_ended.as_deref(), Some("killed by signal 9"));
    assert_eq!(child_ended.as_deref(), Some("killed by signal 13"));
    let out = reaper.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

/// An ignored SIGCHLD passes through `exec` like an ignored SIGPIPE, and
/// then the kernel reaps the children itself: the parent's `waitpid`
/// fails with ECHILD, which the listings report in one line. `env
/// --ignore-signal` plays the parent. Linux keeps the ignored SIGCHLD
/// through `exec`, as execve(2) says; seen on Linux 6.18.
#[test]
fn pipe_listings_get_echild_when_started_with_sigchld_ignored() {
    for (name, bin, args) in [
        ("pipe-spam", bin!("pipe-spam"), &["--count", "1"][..]),
        ("pipe-glued", bin!("pipe-glued"), &[][..]),
        ("pipe-lines", bin!("pipe-lines"), &["--count", "1"][..]),
        ("fork-exit", bin!("fork-exit"), &[][..]),
    ] {
        let mut command = Command::new("env");
        command.args(["--ignore-signal=CHLD", bin]).args(args);
        let out = Listing::spawn(&mut command, Stdio::piped()).finish();
        let linux = kernel();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {} (Linux {linux})",
            out.stderr
        );
        let echild = format!("{name}: ECHILD: No child processes\n");
        assert_eq!(out.stderr, echild, "Linux {linux}");
    }
}

/// With SIGCHLD ignored, the kernel reaps a child the moment it exits, and
/// its pid is free for any new process: a listing that then sent it
/// SIGKILL could kill a stranger. strace shows each `kill` the two
/// listings with a kill-and-reap guard make; a `kill` answered with ESRCH
/// hit a pid that no longer named the child. Listing 4-1 reaches its guard
/// through the ECHILD of its last `waitpid`. Listing 4-3 reaches its own
/// through a full disk, once its child has exited: strace holds each
/// process's first `write` for half a second, the parent's to stdout among
/// them, while the child, whose `write` has returned, exits. That is a
/// delay, not a wait: a run counts only if the trace shows the guard's
/// `waitpid` with WNOHANG answered by ECHILD, the child already reaped,
/// and a run in which the child was slower is made again.
#[test]
fn pipe_listings_never_signal_a_child_the_kernel_has_reaped() {
    if !have("strace") {
        return;
    }
    let full = || {
        let disk = std::fs::OpenOptions::new().write(true).open("/dev/full");
        Stdio::from(disk.expect("/dev/full"))
    };
    let traced = |bin: &str, stdout: Stdio| {
        let mut command = Command::new("strace");
        command.args(["-f", "-q", "-e", "trace=kill,wait4,write"]);
        command.args(["-e", "signal=none", "-e"]);
        command.arg("inject=write:delay_enter=500000:when=1");
        command.args(["--", "env", "--ignore-signal=CHLD"]);
        command.args([bin, "--count", "1"]);
        Listing::spawn(&mut command, stdout).finish()
    };
    let signalled_freed_pid = |name: &str, stderr: &str| {
        let freed: Vec<_> = stderr
            .lines()
            .filter(|line| line.contains("kill(") && line.contains("ESRCH"))
            .collect();
        assert!(
            freed.is_empty(),
            "{name} signalled a reaped pid: {freed:#?}"
        );
    };
    let echild =
        |line: &&str| line.contains("wait4(") && line.contains("ECHILD");

    let out = traced(bin!("pipe-spam"), Stdio::piped());
    assert_eq!(out.status.code(), Some(1), "pipe-spam: {}", out.stderr);
    assert!(out.stderr.lines().any(|l| echild(&l)), "{}", out.stderr);
    signalled_freed_pid("pipe-spam", &out.stderr);

    let reached = (0..5).any(|_| {
        let out = traced(bin!("pipe-lines"), full());
        assert_eq!(out.status.code(), Some(1), "pipe-lines: {}", out.stderr);
        signalled_freed_pid("pipe-lines", &out.stderr);
        let guard = |line: &&str| echild(line) && line.contains("WNOHANG");
        out.stderr.lines().any(|l| guard(&l))
    });
    assert!(reached, "in five runs the child never exited in time");
}

#[test]
fn fork_exit_prints_the_buffered_half_line_twice_with_process_exit() {
    let out = run(bin!("fork-exit"), &["--std-exit"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        ["[written before fork] [written before fork] [parent done]"]
    );
    let out = run(bin!("fork-exit"), &[]);
    assert_eq!(out.stdout, ["[written before fork] [parent done]"]);
    assert_session_matches_book(
        "ch04-pipes/04-04-fork-exit.out",
        &[
            (
                cargo_run("fork-exit", &["--std-exit"]),
                &run(bin!("fork-exit"), &["--std-exit"]).stdout,
            ),
            (cargo_run("fork-exit", &[]), &out.stdout),
        ],
    );
}

#[test]
fn pipe_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("pipe-spam"), &["--count", "x"], r#"argument "x""#);
    assert_rejects(bin!("pipe-spam"), &["now"], r#"unexpected argument "now""#);
    assert_rejects(
        bin!("pipe-spam"),
        &["--count", "2305843009213693952"],
        "--count is too large",
    );
    assert_rejects(bin!("pipe-lines"), &["--count"], "missing argument");
    assert_rejects(bin!("pipe-glued"), &["--count", "2"], "invalid option");
    assert_rejects(bin!("fork-exit"), &["--exit"], "invalid option");
}

// ---------------------------------------------------------------------------
// What the kernel sees

#[test]
fn pipe_glued_trace_shows_two_writes_and_one_read_of_16_bytes() {
    if !can_trace() {
        return;
    }
    let trace = Trace {
        calls: "pipe2,clone,close,write,wait4,read",
        signals: "none",
        from: Some("pipe2("),
    };
    let out = assert_traced_run_matches_book(
        "ch04-pipes/04-02-pipe-glued.trace",
        "pipe-glued",
        &[],
        &trace,
    );
    let glued = Regex::new(r#"read\(3, "Spam 004Spam 000", 32\) += 16"#);
    assert!(glued.unwrap().is_match(&out.stderr), "{}", out.stderr);
}

#[test]
fn pipe_lines_trace_shows_each_end_closed_and_the_end_of_the_stream() {
    if !can_trace() {
        return;
    }
    let trace = Trace {
        calls: "pipe2,clone,close,write,read,wait4",
        signals: "none",
        from: Some("pipe2("),
    };
    let out = assert_traced_run_matches_book(
        "ch04-pipes/04-03-pipe-lines.trace",
        "pipe-lines",
        &["--count", "1"],
        &trace,
    );
    assert!(out.stderr.contains(r#"read(3, "", "#), "{}", out.stderr);
}

/// The command that measured how `pipe-glued | head -1` ends, run small:
/// every run ends in one of the three ways the chapter describes, and the
/// counts add up.
#[test]
fn head_race_counts_the_three_ends_of_pipe_glued_into_head() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ch04-pipes/head-race");
    let out = run(script, &["--runs", "20", bin!("pipe-glued")]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout[0].starts_with("20 runs of: "),
        "{:#?}",
        out.stdout
    );
    assert_eq!(out.stdout[2].split_whitespace().next(), Some("status"));
    let mut total = 0;
    for row in &out.stdout[3..] {
        let fields: Vec<_> = row.split_whitespace().collect();
        assert!(["0", "1", "141"].contains(&fields[0]), "{row}");
        assert!(!row.ends_with("unexpected"), "{row}");
        total += fields[1].parse::<u32>().expect("a count");
    }
    assert_eq!(total, 20, "{:#?}", out.stdout);
    assert_rejects(script, &["--runs", "0"], "--runs must be");
    assert_rejects(script, &["--frobnicate"], "unknown option");
}

#[test]
fn glue_count_counts_the_glued_reads_of_the_original_and_the_port() {
    if !have("python3") || !have("taskset") {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ch04-pipes/glue-count");
    let out = run(script, &["--runs", "1", "--pin", bin!("pipe-spam")]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout[0].starts_with("1 runs of each, pinned to CPU 0; Linux "),
        "{:#?}",
        out.stdout
    );
    let counted = Regex::new(
        r"^the original glued Spam 004 and Spam 000 in [01]\nthe port glued them in [01]\nload average [\d.]+ at the end$",
    )
    .unwrap();
    let rest = out.stdout[1..].join("\n");
    assert!(counted.is_match(&rest), "{:#?}", out.stdout);
    assert_rejects(script, &["--runs", "0"], "--runs must be");
}

/// PEP 446 (Python 3.4): the originals' pipes and sockets are
/// close-on-exec already, as the ports' are.
#[test]
fn python_pipes_and_sockets_are_close_on_exec() {
    if !have("python3") {
        return;
    }
    let script = "import fcntl, os, socket\n\
        r, w = os.pipe()\n\
        s = socket.socket()\n\
        for fd in (r, w, s.fileno()):\n\
        \x20   print(bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC))\n";
    let out = run("python3", &["-c", script]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, ["True", "True", "True"]);
}
