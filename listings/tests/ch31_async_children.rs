//! Chapter 31: child processes in tokio. Listing 31-1 feeds `tee` and
//! reads both of its outputs; Listing 31-2 drops, kills and waits for a
//! shell that started a grandchild.

use std::env;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use regex::Regex;

use crate::support::{
    KillGroupOnDrop, Listing, as_pid_1, assert_exited_with, assert_rejects,
    assert_session_matches_book_masking, assert_starts_or_says_why, cargo_run,
    children_of, finish_clean, group_is_gone, have, is_dead, pgid_of,
    run_clean, state_of, wait_until, with_sigchld_ignored,
};

/// The counts of a `Sent … of … bytes, got … on stdout and … on stderr`
/// line: sent, stdout, stderr, and how tee ended.
fn counts(line: &str) -> (usize, usize, usize, String) {
    let re = Regex::new(
        r"^Sent (\d+) of 1000000 bytes, got (\d+) on stdout and (\d+) on stderr; tee (.*)$",
    )
    .unwrap();
    let caps = re
        .captures(line)
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let n = |i: usize| caps[i].parse().unwrap();
    (n(1), n(2), n(3), caps[4].to_string())
}

#[test]
fn async_child_feed_join_gets_every_byte_back_on_both_pipes() {
    // A generous limit: this test is about the bytes, not the timeout.
    let out = run_clean(bin!("async-child-feed"), &["join", "--wait", "30"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout.len(), 1, "{:?}", out.stdout);
    let (sent, stdout, stderr, end) = counts(&out.stdout[0]);
    assert_eq!((sent, stdout, stderr), (1_000_000, 1_000_000, 1_000_000));
    assert_eq!(end, "exited with status 0");
}

/// Runs a way that must deadlock, with a limit of `wait` seconds; checks
/// that it is stopped by the timeout, tee killed, and nothing left.
fn deadlocked(way: &str, wait: &str) -> (usize, usize, usize) {
    let started = Instant::now();
    let out = run_clean(bin!("async-child-feed"), &[way, "--wait", wait]);
    assert_eq!(out.status.code(), Some(1), "{way}: {}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "async-child-feed: no end within {wait} s (a deadlock, or too \
             short a --wait): tee killed\n"
        )
    );
    let limit = Duration::from_secs(wait.parse().unwrap());
    assert!(started.elapsed() >= limit, "{way}: too soon");
    let (sent, stdout, stderr, end) = counts(&out.stdout[0]);
    assert_eq!(end, "was killed by SIGKILL", "{way}");
    (sent, stdout, stderr)
}

#[test]
fn async_child_feed_writing_everything_first_deadlocks_until_the_timeout() {
    let (sent, stdout, stderr) = deadlocked("write-first", "1");
    // At least tee's stdin pipe filled up; nothing was read yet.
    assert!((65536..1_000_000).contains(&sent), "{sent}");
    assert_eq!((stdout, stderr), (0, 0));
}

/// Chapter 31: "The sent count is exact": the listing counts a 4096-byte
/// piece once `write_all` has put it all in, and a non-blocking write of
/// at most `PIPE_BUF` bytes into a pipe goes in whole or not at all, so the
/// timeout never drops a half-written piece. Traced with `-ff`, one file a
/// process, the bytes that the listing's writes into tee's stdin returned
/// add up to the count it prints; pieces of 6000 bytes leave the last
/// one's first part uncounted, and the sum then exceeds the count.
#[test]
fn async_child_feed_counts_exactly_the_bytes_the_pipe_took() {
    if !crate::support::can_trace() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new("strace");
    command
        .args(["-ff", "-qq", "-s", "0", "-e", "trace=write,execve"])
        .args(["-e", "signal=none", "-o"])
        .arg(dir.path().join("t"))
        .args(["--", "setpriv", "--pdeathsig", "KILL", "--"])
        .arg(bin!("async-child-feed"))
        .args(["write-first", "--wait", "1"]);
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert_exited_with(&out, 1);
    let (sent, _, _, _) = counts(&out.stdout[0]);
    // A write into a pipe or socket of more than eight bytes (tokio's
    // wake-ups write eight into an eventfd) by any process but tee.
    // strace pads the result to a column.
    let write = Regex::new(r"^write\((\d+), .*, (\d+)\) += (\d+)$").unwrap();
    let mut took = 0;
    for file in fs::read_dir(dir.path()).unwrap() {
        let trace = fs::read_to_string(file.unwrap().path()).unwrap();
        if trace.lines().any(|l| {
            l.starts_with("execve(\"")
                && l.contains("/tee\"")
                && l.ends_with("= 0")
        }) {
            continue;
        }
        for call in trace.lines().filter_map(|l| write.captures(l)) {
            let (fd, asked): (u32, usize) =
                (call[1].parse().unwrap(), call[2].parse().unwrap());
            if fd > 2 && asked > 8 {
                took += call[3].parse::<usize>().unwrap();
            }
        }
    }
    assert!(took >= 65536, "the trace shows {took} bytes written");
    assert_eq!(sent, took, "the count against what the pipe took");
}

#[test]
fn async_child_feed_reading_stdout_first_deadlocks_on_a_full_stderr() {
    let (sent, stdout, stderr) = deadlocked("stdout-first", "1");
    // tee waits for room in its stderr pipe, which nobody reads: it
    // wrote at least that pipe's worth to stdout, not everything.
    assert!((65536..1_000_000).contains(&stdout), "{stdout}");
    assert!(sent < 1_000_000, "{sent}");
    assert_eq!(stderr, 0);
}

#[test]
fn async_child_feed_keeping_stdin_open_leaves_tee_waiting_for_more() {
    // Every byte goes through; the end of tee's output never comes. The
    // limit leaves time for a million bytes on a busy machine.
    let (sent, stdout, stderr) = deadlocked("keep-stdin", "10");
    assert_eq!((sent, stdout, stderr), (1_000_000, 1_000_000, 1_000_000));
}

#[test]
fn async_child_feed_output_matches_the_book() {
    let mut session = Vec::new();
    for way in ["write-first", "stdout-first", "keep-stdin", "join"] {
        let out = run_clean(bin!("async-child-feed"), &[way]);
        let mut lines = out.stdout;
        lines.extend(out.stderr.lines().map(String::from));
        session.push((cargo_run("async-child-feed", &[way]), lines));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    // How far each deadlock got depends on when tee ran.
    assert_session_matches_book_masking(
        "ch31-async-children/31-01-async-child-feed.out",
        &session,
        &[(
            r"Sent \d+ of 1000000 bytes, got \d+ on stdout and \d+ on stderr; tee was",
            "Sent <n> of 1000000 bytes, got <m> on stdout and <k> on stderr; tee was",
        )],
    );
}

/// Runs async-child-kill one way; checks that it succeeds and that
/// neither the shell nor its `sleep` is left; returns the output and the
/// two pids.
fn kill_way(way: &str) -> (Vec<String>, Pid, Pid) {
    let mut listing = Listing::start(bin!("async-child-kill"), &[way]);
    let first = listing.expect(
        r"sh \(pid (\d+)\) runs in a process group of its own; it started sleep \(pid (\d+)\)",
    );
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    let out = finish_clean(listing);
    assert!(out.status.success(), "{way}: {}", out.stderr);
    assert_eq!(out.stderr, "", "{way}");
    wait_until("the shell's group to end", || {
        group_is_gone(sh) && is_dead(sleep)
    });
    (out.stdout, sh, sleep)
}

/// Ctrl-C reaches the listing and not the group it made for `sh`, and so
/// do a `kill` of its pid and the SIGHUP of a terminal that closes: the
/// listing ends the group, then dies of the signal, leaving neither `sh`
/// nor `sleep` behind.
#[test]
fn async_child_kill_ends_the_group_when_it_is_stopped_itself() {
    for stop in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let mut listing = Listing::start(
            bin!("async-child-kill"),
            &["timeout", "--wait", "30"],
        );
        let first = listing.expect(
            r"sh \(pid (\d+)\) runs in a process group of its own; it started sleep \(pid (\d+)\)",
        );
        let sh = Pid::from_raw(first[1].parse().unwrap());
        let sleep = Pid::from_raw(first[2].parse().unwrap());
        let _cleanup = KillGroupOnDrop(sh);
        listing.signal(stop);
        // Before `finish`, which would wait for the end of stderr: `sleep`
        // holds it, for a minute, if nothing ends the group.
        wait_until("the shell's group to end", || {
            group_is_gone(sh) && is_dead(sleep)
        });
        let out = listing.finish();
        assert_eq!(out.status.signal(), Some(stop as i32), "{stop}");
    }
}

/// Whatever signal stops the listing, it ends sh's group with SIGKILL,
/// not with that signal: a group that ignores SIGTERM (`--ignore-term`)
/// is gone at once after a SIGTERM to the listing, long before the 30 s
/// after which the `timeout` way follows a SIGTERM of its own with
/// SIGKILL. Passed on, the SIGTERM would have left both running.
#[test]
fn async_child_kill_ends_the_group_with_sigkill_whatever_stopped_it() {
    let args = ["timeout", "--wait", "30", "--ignore-term"];
    let mut listing = Listing::start(bin!("async-child-kill"), &args);
    let first = listing.expect(
        r"sh \(pid (\d+)\) runs in a process group of its own; it started sleep \(pid (\d+)\)",
    );
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    let sent = Instant::now();
    listing.signal(Signal::SIGTERM);
    wait_until("the shell's group to end", || {
        group_is_gone(sh) && is_dead(sleep)
    });
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
    let out = listing.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    assert!(
        !out.stdout.iter().any(|l| l.contains("No exit within")),
        "{:?}",
        out.stdout
    );
}

/// Linux 6.18 here: an init's own raise of a signal at its default action
/// is dropped (`sig_task_ignored` in kernel/signal.c).
#[test]
fn async_child_kill_as_pid_1_exits_143_on_sigterm() {
    // The kernel drops a PID 1's own raise of SIGTERM: `die_of` then
    // returned an error, and the program exited 1, a failure.
    let ready = r"sh \(pid 2\) runs in a process group of its own; it started sleep \(pid 3\)";
    let args = ["timeout", "--wait", "30"];
    let Some((listing, pid)) = as_pid_1(bin!("async-child-kill"), &args, ready)
    else {
        return;
    };
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let out = listing.finish();
    assert_exited_with(&out, 143);
    assert_eq!(out.stderr, "");
}

#[test]
fn async_child_kill_a_dropped_child_runs_on() {
    let (out, sh, sleep) = kill_way("drop");
    assert_eq!(
        out[1..],
        [
            format!(
                "Dropped the Child: sh (pid {sh}) is still running, sleep \
                 (pid {sleep}) is still running"
            ),
            "Killed the group; tokio reaped sh in the background".into(),
        ]
    );
}

#[test]
fn async_child_kill_kill_on_drop_kills_the_child_but_not_the_grandchild() {
    let (out, sh, sleep) = kill_way("kill-on-drop");
    assert_eq!(
        out[1..],
        [
            format!(
                "Dropped the Child: sh (pid {sh}) is dead, sleep (pid \
                 {sleep}) is still running"
            ),
            // Not "in the background": the drop's `try_wait` often reaps
            // sh itself, once the SIGKILL has landed.
            "Killed the group; tokio has reaped sh, in the drop or in the \
             background"
                .into(),
        ]
    );
}

#[test]
fn async_child_kill_a_killed_child_stays_a_zombie_until_waited_for() {
    let started = Instant::now();
    let (out, sh, sleep) = kill_way("no-wait");
    assert_eq!(
        out[1..],
        [
            format!(
                "start_kill, no wait: one second later sh (pid {sh}) is a \
                 zombie"
            ),
            format!("wait: sh was killed by SIGKILL, and pid {sh} is gone"),
            format!("sleep (pid {sleep}) is still running"),
        ]
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(state_of(sh), None, "reaped");
}

#[test]
fn async_child_kill_a_wait_with_a_timeout_then_ends_the_whole_group() {
    let started = Instant::now();
    let (out, _, _) = kill_way("timeout");
    assert_eq!(
        out[1..],
        [
            "No exit within 1 s: sent SIGTERM to its process group",
            "sh was killed by SIGTERM",
            "End of stdout",
        ]
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn async_child_kill_follows_an_ignored_sigterm_with_sigkill() {
    let mut listing =
        Listing::start(bin!("async-child-kill"), &["timeout", "--ignore-term"]);
    let first = listing.expect(r"sh \(pid (\d+)\) .* sleep \(pid (\d+)\)");
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    let out = finish_clean(listing);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout[1..],
        [
            "No exit within 1 s: sent SIGTERM to its process group",
            "Still there 1 s later: sent SIGKILL",
            "sh was killed by SIGKILL",
            "End of stdout",
        ]
    );
    wait_until("the group to end", || group_is_gone(sh) && is_dead(sleep));
}

#[test]
fn async_child_kill_a_grandchild_holding_stdout_is_killed_with_the_group() {
    let started = Instant::now();
    let (out, _, _) = kill_way("pipe");
    assert_eq!(
        out[1..],
        [
            "sh exited with status 0",
            "No end of stdout within 1 s: killed its process group",
            "End of stdout",
        ]
    );
    // Without the kill, the end would come when `sleep 60` exits.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Writes an executable script called `name` into a new directory, and
/// returns the directory and a PATH that finds the script first. The
/// script finds the real commands by dropping its own directory from
/// PATH.
fn first_in_path(name: &str, script: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    crate::support::write_program(&dir.path().join(name), script);
    let path = env::var("PATH").unwrap_or_default();
    let path = format!("{}:{path}", dir.path().display());
    (dir, path)
}

/// A `sleep` that first starts a copy of itself in a session of its own,
/// out of its group's reach, holding stdout, and writes that copy's pid
/// beside itself; then it becomes the real `sleep`, in the group.
const HOLDER_OUTSIDE_THE_GROUP: &str = "#!/bin/sh
PATH=${PATH#*:}
setsid sleep \"$@\" 2>/dev/null &
echo $! > \"$0.outside\"
exec sleep \"$@\"
";

/// Kills, when dropped, the process whose pid a script wrote to a file.
struct KillPidInFileOnDrop(PathBuf);

impl Drop for KillPidInFileOnDrop {
    fn drop(&mut self) {
        let pid = fs::read_to_string(&self.0).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A `sleep` that waits for a word on the FIFO beside it, then writes a
/// line that is not UTF-8 (the byte 0xff) to the stdout it shares with
/// sh, and becomes the real `sleep`, holding that stdout.
const NOT_TEXT_LATER: &str = "#!/bin/sh
PATH=${PATH#*:}
read go < \"$0.go\"
printf '\\377\\n'
exec sleep \"$@\"
";

/// The `pipe` way drains the shell's stdout as bytes: a line that is not
/// UTF-8, written after sh has exited, is just more output, and the end
/// that does not come is met with the kill of the group. Read as UTF-8
/// lines, as it once was, the line failed the read, and the listing took
/// that failure for the end: "End of stdout", exit 0, and `sleep` left
/// running in the group.
#[test]
fn async_child_kill_drains_stdout_that_is_not_text_and_still_kills_the_group() {
    let (dir, path) = first_in_path("sleep", NOT_TEXT_LATER);
    let go = dir.path().join("sleep.go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Opened for reading and writing, a FIFO does not wait for the other
    // end (Linux, fifo(7)), and keeps what is written until `sleep` reads.
    let mut go = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&go)
        .unwrap();
    let mut command = Command::new(bin!("async-child-kill"));
    command.args(["pipe", "--wait", "2"]).env("PATH", path);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(r"sh \(pid (\d+)\) .* sleep \(pid (\d+)\)");
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    listing.expect("sh exited with status 0");
    std::io::Write::write_all(&mut go, b"go\n").unwrap();
    let out = listing.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    assert_eq!(
        out.stdout[1..],
        [
            "sh exited with status 0",
            "No end of stdout within 2 s: killed its process group",
            "End of stdout",
        ]
    );
    wait_until("sh's group to end", || group_is_gone(sh));
}

/// An `sh` that writes its pid beside itself, then runs a script of its
/// own in the real `sh`: it starts `sleep` in the background, as the
/// listing's does, but prints a line that is not UTF-8 before the pid.
const NOT_TEXT_FIRST: &str = "#!/bin/sh
echo $$ > \"$0.pid\"
PATH=${PATH#*:}
exec sh -c 'sleep 60 & printf \"\\377\\n\"; echo $!; wait'
";

/// A first line that is not a pid, even one that is not UTF-8, ends the
/// listing in one line after the kill of the whole group, `sleep`
/// included. Read as a UTF-8 line, as it once was, it failed the read,
/// and the listing returned that error at once: `kill_on_drop` killed sh,
/// and `sleep` ran on in the group.
#[test]
fn async_child_kill_kills_the_group_when_the_first_line_is_not_text() {
    let (dir, path) = first_in_path("sh", NOT_TEXT_FIRST);
    let mut command = Command::new(bin!("async-child-kill"));
    command.arg("pipe").env("PATH", path);
    let listing = Listing::spawn(&mut command, Stdio::piped());
    let out = listing.finish();
    let pid = fs::read_to_string(dir.path().join("sh.pid")).unwrap();
    let sh = Pid::from_raw(pid.trim().parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    wait_until("sh's group to end", || group_is_gone(sh));
    assert_exited_with(&out, 1);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(out.stderr, "async-child-kill: sh did not start sleep\n");
}

/// A `sleep` that waits for a word on the FIFO beside it (sh's pid line
/// first), writes 300 MB without a newline to the stdout it shares with
/// sh, marks beside itself that it has, and becomes the real
/// `sleep`, holding that stdout. `head` ends once the pipe has taken its
/// last write: the listing has read all but the pipe's 64 KiB by then.
const NO_NEWLINE: &str = "#!/bin/sh
PATH=${PATH#*:}
read go < \"$0.go\"
head -c 300000000 /dev/zero
: > \"$0.written\"
exec sleep \"$@\"
";

/// The peak resident memory of a running process, in KiB (`VmHWM` in
/// /proc/PID/status).
fn peak_memory_kib(pid: Pid) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = status.lines().find_map(|line| line.strip_prefix("VmHWM:"));
    let kib = field.and_then(|f| f.trim().strip_suffix(" kB"));
    kib.and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM for {pid}"))
}

/// The `pipe` way reads the shell's stdout through a buffer of a fixed
/// size: 300 MB without a newline leave its peak memory where it was
/// (3.5 MB here, in a debug build), read from /proc while it runs,
/// not from `wait4`, whose `ru_maxrss` counts the test process's own peak
/// in a child it forked. Read as lines, as it once was, the one line was
/// kept whole: a peak of about 300 MB. The listing is then stopped, and
/// ends the group.
#[test]
fn async_child_kill_drains_a_long_line_in_bounded_memory() {
    let (dir, path) = first_in_path("sleep", NO_NEWLINE);
    let written = dir.path().join("sleep.written");
    let go = dir.path().join("sleep.go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // As in the test above: no wait for the other end.
    let mut go = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&go)
        .unwrap();
    let mut command = Command::new(bin!("async-child-kill"));
    command.args(["pipe", "--wait", "60"]).env("PATH", path);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(r"sh \(pid (\d+)\) .* sleep \(pid (\d+)\)");
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    std::io::Write::write_all(&mut go, b"go\n").unwrap();
    wait_until("300 MB written", || written.exists());
    let peak = peak_memory_kib(listing.pid());
    listing.signal(Signal::SIGTERM);
    let out = listing.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    wait_until("sh's group to end", || group_is_gone(sh));
    eprintln!("peak {peak} KiB");
    assert!(peak < 64 * 1024, "peak memory {peak} KiB, for 300 MB read");
}

/// The holder of the pipe may have left the group, as a daemon does: here
/// a `sleep` that starts a copy of itself under `setsid`, holding stdout,
/// before it becomes the real `sleep` in the group. `killpg` finds the one
/// in the group and succeeds; the end of stdout still does not come. The
/// careful way gives up the same limit later, in one line, rather than
/// wait for the stranger (before, it waited for its whole minute).
#[test]
fn async_child_kill_gives_up_on_a_stdout_held_from_outside_the_group() {
    if !have("setsid") {
        eprintln!("skipped: no setsid");
        return;
    }
    let (dir, path) = first_in_path("sleep", HOLDER_OUTSIDE_THE_GROUP);
    let _outside = KillPidInFileOnDrop(dir.path().join("sleep.outside"));
    let mut command = Command::new(bin!("async-child-kill"));
    command.arg("pipe").env("PATH", path);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(r"sh \(pid (\d+)\) .* sleep \(pid (\d+)\)");
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    let out = listing.finish();
    assert_exited_with(&out, 1);
    assert_eq!(
        out.stdout[1..],
        [
            "sh exited with status 0",
            "No end of stdout within 1 s: killed its process group",
        ]
    );
    assert_eq!(
        out.stderr,
        "async-child-kill: stdout still held 1 s after the kill of its \
         group: by a process outside it\n"
    );
    assert_eq!(state_of(sh), None, "sh reaped");
}

/// Linux 6.18 here: an orphan of a PID namespace is handed to its init, and
/// tokio reaps only the children it started, each by its own pid. As pid 1,
/// the `pipe` way's `sleep` (inside pid 3) is adopted once tokio has reaped
/// sh; the test kills it, and a holder of stdout outside the group keeps
/// the listing waiting: the `sleep` stays a zombie of the listing through
/// the whole limit and the listing's kill of the group that follows it.
///
/// The holder dies with the namespace when the listing, its init, ends:
/// no `KillPidInFileOnDrop` here, since the pid the script writes is the
/// holder's inside the namespace (4), and out here names another process.
#[test]
fn async_child_kill_as_pid_1_leaves_an_adopted_orphan_a_zombie() {
    if !have("setsid") {
        eprintln!("skipped: no setsid");
        return;
    }
    let (_dir, path) = first_in_path("sleep", HOLDER_OUTSIDE_THE_GROUP);
    let path = format!("PATH={path}");
    let args = [&path[..], bin!("async-child-kill"), "pipe", "--wait", "2"];
    let ready = r"sh \(pid 2\) runs in a process group of its own; it started sleep \(pid 3\)";
    let Some((mut init, pid)) = as_pid_1("env", &args, ready) else {
        return;
    };
    init.expect("sh exited with status 0");
    // sh is reaped: the listing's one child now is the adopted `sleep`.
    let mut adopted = Vec::new();
    wait_until("the listing to adopt sleep", || {
        adopted = children_of(pid);
        adopted.len() == 1
    });
    let sleep = adopted[0];
    // sh printed the pid of its `sleep` as soon as it had started it: the
    // script may not have started the holder yet. Killed before, it leaves
    // no one holding stdout, and the listing, seeing the end, exits and
    // takes the namespace, and the zombie, with it at once.
    wait_until("sleep to start a holder outside the group", || {
        children_of(sleep)
            .into_iter()
            .any(|holder| pgid_of(holder) == Some(holder))
    });
    nix::sys::signal::kill(sleep, Signal::SIGKILL).unwrap();
    wait_until("sleep to die", || state_of(sleep) == Some('Z'));
    // Two seconds on, the listing has woken, killed the group, and still
    // not reaped it.
    init.expect("No end of stdout within 2 s: killed its process group");
    assert_eq!(state_of(sleep), Some('Z'), "reaped by the listing");
    // Beside the holder, whom the listing adopted from `sleep`.
    assert!(
        children_of(pid).contains(&sleep),
        "still the listing's child"
    );
    let out = init.finish();
    assert_exited_with(&out, 1);
}

/// Once a way has killed the group, the id may be given to a stranger's
/// group, and a signal that comes later must not make the listing use it
/// again. The holder outside the group keeps the listing waiting after its
/// kill; a SIGINT then, under strace, shows one `kill` of the group, the
/// way's own (before, the signal's path sent a second one).
#[test]
fn async_child_kill_stopped_after_its_own_kill_leaves_the_group_id_alone() {
    let Some((trace, sh, stdout)) = stopped_after(
        &["pipe", "--wait", "5"],
        &[
            "sh exited with status 0",
            "No end of stdout within 5 s: killed its process group",
        ],
    ) else {
        return;
    };
    assert_eq!(stdout.len(), 3, "{stdout:?}");
    let kills = format!("kill(-{sh}, SIGKILL)");
    assert_eq!(trace.matches(&kills).count(), 1, "{trace}");
}

/// The same for the `timeout` way's own SIGKILL, which follows an ignored
/// SIGTERM: a SIGINT after the shell is reaped shows one `kill` of the
/// group with SIGKILL. Before, that SIGKILL bypassed `Group::kill_all`,
/// and the signal's path sent a second one; so did the way itself, when
/// the end of stdout did not come.
#[test]
fn async_child_kill_stopped_after_its_sigkill_leaves_the_group_id_alone() {
    let Some((trace, sh, stdout)) = stopped_after(
        &["timeout", "--wait", "2", "--ignore-term"],
        &[
            "No exit within 2 s: sent SIGTERM to its process group",
            "Still there 2 s later: sent SIGKILL",
            "sh was killed by SIGKILL",
        ],
    ) else {
        return;
    };
    assert_eq!(stdout.len(), 4, "{stdout:?}");
    assert_eq!(trace.matches(&format!("kill(-{sh}, SIGTERM)")).count(), 1);
    let kills = format!("kill(-{sh}, SIGKILL)");
    assert_eq!(trace.matches(&kills).count(), 1, "{trace}");
}

/// Runs async-child-kill with `args` under strace, tracing `kill`, with a
/// `sleep` that leaves a holder of stdout outside the group; sends SIGINT
/// once `lines` have been printed. Returns the trace, the shell's pid and
/// the output, or `None` without setsid or strace.
fn stopped_after(
    args: &[&str],
    lines: &[&str],
) -> Option<(String, Pid, Vec<String>)> {
    if !have("setsid") || !have("strace") {
        eprintln!("skipped: no setsid or no strace");
        return None;
    }
    let (dir, path) = first_in_path("sleep", HOLDER_OUTSIDE_THE_GROUP);
    let _outside = KillPidInFileOnDrop(dir.path().join("sleep.outside"));
    let trace = dir.path().join("trace");
    // Not `-f`: strace would wait for the holder. The runtime has one
    // thread, the one traced.
    let mut command = Command::new("strace");
    command.args(["-q", "-e", "trace=kill", "-e", "signal=none", "-o"]);
    command.arg(&trace).arg("--");
    if have("setpriv") {
        // The listing dies with strace, should the test kill strace.
        command.args(["setpriv", "--pdeathsig", "KILL", "--"]);
    }
    command.arg(bin!("async-child-kill")).args(args);
    command.env("PATH", path);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(r"sh \(pid (\d+)\) .* sleep \(pid (\d+)\)");
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    for line in lines {
        listing.expect(&regex::escape(line));
    }
    let tracee = children_of(listing.pid())[0];
    nix::sys::signal::kill(tracee, Signal::SIGINT).unwrap();
    let out = listing.finish();
    Some((fs::read_to_string(&trace).unwrap(), sh, out.stdout))
}

/// A signal that comes while the shell is a zombie that no one has reaped
/// yet: the listing must kill the group while that zombie still holds the
/// group's id, before dropping the way's future, whose `Child` reaps a dead
/// shell as it is dropped. `no-wait` leaves the shell a zombie for a second;
/// a SIGINT then, under strace, shows the `kill` of the group before the
/// `wait4` that reaps the shell (before, the `wait4` came first, and with
/// no other member left the kill could have hit a stranger's group).
#[test]
fn async_child_kill_stopped_kills_the_group_before_it_reaps_the_shell() {
    if !have("strace") {
        eprintln!("skipped: no strace");
        return;
    }
    // The zombie lasts a second; a test slowed past it tries again.
    let (trace, sh) = (0..3)
        .find_map(|_| stop_no_wait_while_sh_is_a_zombie())
        .expect("a SIGINT within the second sh is a zombie, in three tries");
    let lines: Vec<&str> = trace.lines().collect();
    let killed = lines
        .iter()
        .position(|l| l.starts_with(&format!("kill(-{sh}, SIGKILL)")));
    let reaped = lines.iter().position(|l| {
        l.starts_with(&format!("wait4({sh}, "))
            && l.ends_with(&format!("= {sh}"))
    });
    let killed =
        killed.unwrap_or_else(|| panic!("no kill of the group: {trace}"));
    if let Some(reaped) = reaped {
        assert!(killed < reaped, "the shell reaped before the kill: {trace}");
    }
}

/// Runs the `no-wait` way under strace and sends SIGINT once its shell is
/// a zombie; returns the trace and the shell's pid, or `None` if the way
/// had already waited for the shell when the signal came.
fn stop_no_wait_while_sh_is_a_zombie() -> Option<(String, Pid)> {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    // Not `-f`: the runtime has one thread, the one traced.
    let mut command = Command::new("strace");
    command.args(["-q", "-e", "trace=kill,wait4", "-e", "signal=none", "-o"]);
    command.arg(&trace).arg("--");
    if have("setpriv") {
        // The listing dies with strace, should the test kill strace.
        command.args(["setpriv", "--pdeathsig", "KILL", "--"]);
    }
    command.arg(bin!("async-child-kill")).arg("no-wait");
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(r"sh \(pid (\d+)\) .* sleep \(pid (\d+)\)");
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    wait_until("sh to be a zombie", || state_of(sh) == Some('Z'));
    let tracee = children_of(listing.pid())[0];
    nix::sys::signal::kill(tracee, Signal::SIGINT).unwrap();
    let out = listing.finish();
    // More than the first line: the way went on to wait for sh.
    (out.stdout.len() == 1).then(|| (fs::read_to_string(&trace).unwrap(), sh))
}

/// A signal that comes while the listing waits for the shell's first line
/// is acted on at once: an `sh` that says nothing stands in for a slow
/// one. Before, the wait was outside the `select!`, tokio caught the
/// signal, and the listing waited on for the line.
#[test]
fn async_child_kill_stops_while_it_waits_for_the_first_line() {
    let (_dir, path) =
        first_in_path("sh", "#!/bin/sh\nPATH=${PATH#*:}\nexec sleep 60\n");
    let mut command = Command::new(bin!("async-child-kill"));
    command.arg("timeout").env("PATH", path);
    let listing = Listing::spawn(&mut command, Stdio::piped());
    // Its streams are made before it starts the shell.
    let mut sh = Vec::new();
    wait_until("the listing to start sh", || {
        sh = children_of(listing.pid());
        !sh.is_empty()
    });
    let _cleanup = KillGroupOnDrop(sh[0]);
    listing.signal(Signal::SIGINT);
    wait_until("sh's group to end", || group_is_gone(sh[0]));
    let out = listing.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGINT as i32));
    assert_eq!(out.stdout, Vec::<String>::new());
}

/// tokio's `spawn` forks first, then registers the child's pipes and its
/// pidfd with the runtime's `epoll`; when that fails (ENOSPC at
/// `fs.epoll.max_user_watches`), it returns the error and drops the child
/// unkilled and unreaped, `kill_on_drop` or not. strace makes every
/// `epoll_ctl` after the runtime's first two fail: the listing must say why
/// in one line, end the shell's group and reap the shell. Before it did,
/// `sh` and its `sleep 60` ran on without it.
#[test]
fn async_child_kill_ends_a_child_that_tokio_could_not_take() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trace = dir.path().join("trace");
    let trace_arg = trace.to_str().unwrap();
    let listing = Listing::start(
        "strace",
        &[
            "-o",
            trace_arg,
            "-e",
            "trace=clone,clone3,epoll_ctl,wait4",
            "-e",
            "inject=epoll_ctl:error=ENOSPC:when=3+",
            "--",
            bin!("async-child-kill"),
            "timeout",
        ],
    );
    let forked = Regex::new(r"(?m)^clone3?\(.*\) = (\d+)$").unwrap();
    let mut sh = None;
    wait_until("the listing to start sh", || {
        let text = fs::read_to_string(&trace).unwrap_or_default();
        sh = forked.captures(&text).map(|c| c[1].parse().unwrap());
        sh.is_some()
    });
    let sh = Pid::from_raw(sh.unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    wait_until("sh's group to end", || group_is_gone(sh));
    let out = listing.finish();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let text = fs::read_to_string(&trace).unwrap();
    let injected =
        Regex::new(r"epoll_ctl\(.*= -1 ENOSPC .*\(INJECTED\)").unwrap();
    assert!(injected.is_match(&text), "{text}");
    assert!(
        text.contains(&format!("wait4({sh}, ")),
        "sh was not reaped: {text}"
    );
    let said: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(said.len(), 1, "{}", out.stderr);
    assert!(said[0].starts_with("async-child-kill: "), "{}", out.stderr);
}

#[test]
fn async_child_kill_output_matches_the_book() {
    let mut session = Vec::new();
    for way in ["drop", "kill-on-drop", "no-wait", "timeout", "pipe"] {
        let (out, _, _) = kill_way(way);
        session.push((cargo_run("async-child-kill", &[way]), out));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book_masking(
        "ch31-async-children/31-02-async-child-kill.out",
        &session,
        &[],
    );
}

#[test]
fn async_children_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("async-child-feed"), &["later"], "unknown way");
    assert_rejects(bin!("async-child-feed"), &["--bytes", "-1"], "--bytes");
    assert_rejects(bin!("async-child-feed"), &["--wait", "x"], r#""x""#);
    // No exchange ends within 0 s: every run would be a timeout.
    assert_rejects(bin!("async-child-feed"), &["--wait", "0"], "at least 1");
    // More bytes than memory can hold: an error, not a panic or an abort.
    let most = usize::MAX.to_string();
    assert_rejects(
        bin!("async-child-feed"),
        &["--bytes", &most],
        "cannot hold",
    );
    assert_rejects(bin!("async-child-kill"), &["forget"], "unknown way");
    assert_rejects(bin!("async-child-kill"), &["--wait", "-1"], "--wait");
    // Every limit would elapse before the end of stdout could be seen, and
    // the listing would blame a holder outside the group that is not there.
    assert_rejects(bin!("async-child-kill"), &["--wait", "0"], "at least 1");
}

/// A tee that dies in the middle of the exchange is a failure, told and
/// reaped: not taken for our own stdout going away, with status 0.
#[test]
fn async_child_feed_reports_a_tee_that_dies_mid_exchange() {
    // `write-first` blocks in its write to tee's full stdin; a long limit
    // keeps the timeout out of it.
    let feed = Listing::start(
        bin!("async-child-feed"),
        &["write-first", "--wait", "60"],
    );
    let mut tee = Vec::new();
    wait_until("tee has started", || {
        tee = children_of(feed.pid());
        !tee.is_empty()
    });
    nix::sys::signal::kill(tee[0], nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = finish_clean(feed);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "async-child-feed: talking to tee: Broken pipe (os error 32)\n"
    );
    assert_eq!(out.stdout.len(), 1, "{:?}", out.stdout);
    assert!(
        out.stdout[0].ends_with("; tee was killed by SIGTERM"),
        "{:?}",
        out.stdout
    );
}

/// What the chapter says of how tokio waits on Linux: a pidfd in its
/// epoll set, then `wait4` with WNOHANG once the pidfd is readable. Linux
/// 6.18 here, which sends SIGCHLD to the parent whatever its disposition.
#[test]
fn tokio_waits_for_a_child_on_a_pidfd_then_reaps_it_with_wait4() {
    if !crate::support::have("strace") {
        return;
    }
    let feed = bin!("async-child-feed");
    let trace = ["-f", "-e", "trace=pidfd_open,wait4", "--", feed, "join"];
    let out = crate::support::run("strace", &trace);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("pidfd_open("), "{}", out.stderr);
    let reaped = Regex::new(
        r"wait4\(\d+, \[\{WIFEXITED\(s\) && WEXITSTATUS\(s\) == 0\}\], WNOHANG",
    )
    .unwrap();
    assert!(reaped.is_match(&out.stderr), "{}", out.stderr);
    // Between the two, the SIGCHLD the kernel sends every parent, which
    // strace shows although the program ignores it (the book says so).
    let opened = out.stderr.find("pidfd_open(").unwrap();
    let sigchld = out.stderr.find("--- SIGCHLD {si_signo=SIGCHLD");
    let sigchld = sigchld.expect(&out.stderr);
    let waited = reaped.find(&out.stderr).unwrap().start();
    assert!(opened < sigchld && sigchld < waited, "{}", out.stderr);
}

/// tokio installs a SIGCHLD handler only once a child goes to its orphan
/// queue: never while every child is awaited through its pidfd. The
/// `drop` way puts a running shell there; `kill-on-drop` may not, since
/// `PidfdReaper::drop` reaps a child the kill has already ended (tokio
/// 1.54.1). `strace -f` also records the shell, which (dash) installs a
/// SIGCHLD handler of its own for its `&` job: only the listing's own
/// lines count, and only a handler with signal-hook's signature, which
/// tokio registers through.
#[test]
fn tokio_handles_sigchld_only_for_a_dropped_child() {
    if !crate::support::have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trace");
    let traced = |bin: &str, args: &[&str]| {
        let log = log.to_str().unwrap();
        let trace = ["-f", "-qq", "-o", log, "-e", "trace=execve,rt_sigaction"];
        let mut trace = Vec::from(trace);
        trace.extend(["-e", "signal=none", "--", bin]);
        trace.extend(args);
        let out = crate::support::run("strace", &trace);
        assert!(out.status.success(), "{}", out.stderr);
        let log = fs::read_to_string(log).unwrap();
        (tokios_sigchld_handler(&log), log)
    };
    let (installed, log) =
        traced(bin!("async-child-feed"), &["join", "--bytes", "10"]);
    assert!(!installed, "{log}");
    let (installed, log) = traced(bin!("async-child-kill"), &["drop"]);
    assert!(installed, "{log}");
}

/// Whether a trace of `strace -f -o` (a pid at the start of every line),
/// whose first line is the listing's `execve`, shows a thread of the
/// listing install a SIGCHLD handler with signal-hook's signature: an
/// empty mask, `SA_RESTART|SA_SIGINFO`. The lines of a child, a process
/// that calls `execve` after the listing did, are left out.
fn tokios_sigchld_handler(log: &str) -> bool {
    let line = Regex::new(r"^(\d+) +(.*)$").unwrap();
    let handler = Regex::new(
        r"^rt_sigaction\(SIGCHLD, \{sa_handler=0x[0-9a-f]+, sa_mask=\[\], sa_flags=(?:SA_RESTORER\|)?SA_RESTART\|SA_SIGINFO[,}]",
    )
    .unwrap();
    let lines: Vec<(&str, &str)> = log
        .lines()
        .filter_map(|l| line.captures(l))
        .map(|c| (c.get(1).unwrap().as_str(), c.get(2).unwrap().as_str()))
        .collect();
    let children: Vec<&str> = (lines.iter().skip(1))
        .filter(|(_, call)| call.starts_with("execve("))
        .map(|(pid, _)| *pid)
        .collect();
    lines
        .iter()
        .any(|(pid, call)| !children.contains(pid) && handler.is_match(call))
}

/// tokio asks for a nonblocking pidfd (`PIDFD_NONBLOCK`, Linux 5.10), and
/// any error makes it wait through a SIGCHLD handler instead: ENOSYS of a
/// kernel before 5.3, EINVAL of one before 5.10, EPERM of a seccomp filter,
/// EMFILE of a full descriptor table. strace injects each error, on
/// Linux 6.18 here, whose own pidfd_open would succeed. The
/// handler has `SA_RESTART`, and not `SA_NOCLDSTOP`: calls that Linux never
/// restarts fail with EINTR as children end or stop (the book says so).
#[test]
fn tokio_falls_back_to_sigchld_whenever_pidfd_open_fails() {
    if !crate::support::have("strace") {
        return;
    }
    let handler = Regex::new(
        r"rt_sigaction\(SIGCHLD, \{sa_handler=0x[0-9a-f]+, sa_mask=\[\], sa_flags=(?:SA_RESTORER\|)?SA_RESTART\|SA_SIGINFO[,}]",
    )
    .unwrap();
    let asked = Regex::new(r"pidfd_open\(\d+, PIDFD_NONBLOCK\)").unwrap();
    for errno in ["ENOSYS", "EINVAL", "EPERM", "EMFILE"] {
        let inject = format!("inject=pidfd_open:error={errno}");
        let trace = [
            "-f",
            "-e",
            "trace=pidfd_open,rt_sigaction",
            "-e",
            &inject,
            "--",
            bin!("async-child-feed"),
            "join",
            "--bytes",
            "10",
        ];
        let out = crate::support::run("strace", &trace);
        assert!(out.status.success(), "{errno}: {}", out.stderr);
        assert!(asked.is_match(&out.stderr), "{errno}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("= -1 {errno} ")),
            "{errno}: {}",
            out.stderr
        );
        assert!(handler.is_match(&out.stderr), "{errno}: {}", out.stderr);
    }
}

/// Where `pidfd_open` fails, tokio waits for every child through SIGCHLD,
/// and it reaps a dropped `Child` from its orphan queue after a SIGCHLD
/// whatever the pidfd does. Under a parent that blocked SIGCHLD, each
/// listing that starts children through tokio still ends as a plain run
/// does, since it unblocks SIGCHLD before it builds the runtime. strace
/// makes `pidfd_open` fail with EPERM, as a seccomp filter does, on Linux
/// 6.18 here. Before the listings unblocked it, `async-block` never ended
/// and `async-child-kill drop` said "tokio has not reaped sh".
#[test]
fn tokio_listings_reap_their_children_under_a_blocked_sigchld_without_a_pidfd()
{
    if !have("strace") {
        return;
    }
    let rows: &[(&str, &[&str])] = &[
        (bin!("async-child-feed"), &["join", "--bytes", "10"]),
        (bin!("async-child-kill"), &["drop"]),
        (bin!("async-block"), &["wait", "--fix", "async"]),
    ];
    for (bin, args) in rows {
        let mut command = Command::new("env");
        command
            .arg("--block-signal=CHLD")
            .args(["strace", "-f", "-qq", "-o", "/dev/null"])
            .args(["-e", "trace=pidfd_open"])
            .args(["-e", "inject=pidfd_open:error=EPERM", "--", bin])
            .args(*args);
        let listing = Listing::spawn(&mut command, Stdio::piped());
        let out = listing.finish_within(Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{bin} {args:?}: {:?} {:?} {}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// PR_SET_PDEATHSIG and tokio's threads: which thread is the parent?

/// Starts `sleep 60` from the calling thread, in a group of its own, with
/// the death signal SIGKILL: it dies when that thread ends.
fn sleep_with_death_signal() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("sleep");
    command.arg("60").process_group(0);
    // SAFETY: between fork and exec: one system call, prctl, no
    // allocation, no lock.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        });
    }
    command.spawn().expect("start sleep")
}

/// Forks a child with a death signal from a task on a runtime with one
/// worker whose idle pool threads leave after 100 ms; with `in_place`,
/// the task then calls `block_in_place` for half a second. Returns
/// whether the child died within two seconds of the task's end.
fn death_signal_from_a_task(in_place: bool) -> bool {
    use crate::support::ChildExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(100))
        .enable_all()
        .build()
        .unwrap();
    let mut child = runtime.block_on(async move {
        tokio::spawn(async move {
            let child = sleep_with_death_signal();
            if in_place {
                tokio::task::block_in_place(|| {
                    std::thread::sleep(Duration::from_millis(500));
                });
            }
            child
        })
        .await
        .unwrap()
    });
    let _cleanup = KillGroupOnDrop(Pid::from_raw(child.id() as i32));
    // The runtime stays up: only a thread that leaves its pool can end.
    let died = child.wait_timeout(Duration::from_secs(2)).unwrap();
    drop(runtime);
    if died.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    died.is_some()
}

/// Linux 6.18 here: the death signal fires when the thread that forked the
/// child ends, not the process (prctl(2), PR_SET_PDEATHSIG).
#[test]
fn a_death_signal_set_from_a_task_holds_until_block_in_place_moves_it() {
    // A worker thread lives as long as its runtime: the child lives on.
    assert!(
        !death_signal_from_a_task(false),
        "killed without block_in_place"
    );
    // After block_in_place, the thread that forked the child may be the
    // one that ends up idle in the blocking pool, and it leaves it after
    // its keep-alive: the kernel kills the child.
    assert!(death_signal_from_a_task(true), "not killed");
}

#[test]
fn async_children_listings_start_or_say_why_when_descriptors_are_short() {
    // tokio's runtime needs six descriptors to start, and its signal
    // driver panics when it cannot make its socket pair: each listing must
    // say so in one line instead.
    // async-child-kill, once started, is stopped as a user would: its
    // SIGTERM ends the group, then the listing.
    for (bin, args, stop) in [
        (bin!("async-child-feed"), ["join", "--bytes", "1000"], None),
        (
            bin!("async-child-kill"),
            ["timeout", "--wait", "30"],
            Some(Signal::SIGTERM),
        ),
    ] {
        let command = || {
            let mut command = std::process::Command::new(bin);
            command.args(args);
            command
        };
        let stop = |listing: &Listing| {
            if let Some(stop) = stop {
                listing.signal(stop);
            }
        };
        // Eighteen: enough for the runtime, `tee`'s three pipes, the
        // socket pair by which a forked child reports a failed `exec` (the
        // `pre_exec` hook makes `Command` fork), and more.
        let started = assert_starts_or_says_why(command, 4..=18, stop);
        assert!(started.contains(&18), "{bin} started at {started:?}");
    }
}

/// Linux 6.18, as the comments of Listing 31-2 on `killpg` say: a group
/// whose one member is a zombie is still found, and `killpg` succeeds,
/// though the signal can do nothing to it; once that member is reaped,
/// no task has the group's id, and `killpg` fails with ESRCH.
#[test]
fn killpg_finds_a_group_of_one_zombie_and_fails_once_it_is_reaped() {
    use nix::errno::Errno;
    use nix::sys::signal::killpg;
    // In a group of its own, whose id is its pid.
    let shell = Listing::start("true", &[]);
    let pid = shell.pid();
    wait_until("true to be a zombie", || state_of(pid) == Some('Z'));
    assert_eq!(killpg(pid, Signal::SIGKILL), Ok(()));
    let out = shell.finish();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(killpg(pid, Signal::SIGKILL), Err(Errno::ESRCH));
}

/// A parent may leave SIGCHLD ignored (`env --ignore-signal`, coreutils
/// 9.1 here, does so and execs), and `exec` keeps it (Linux 6.18 here, as
/// execve(2) promises): the kernel then
/// reaps every child itself, tokio's wait fails with ECHILD, and sh's
/// pid, the group's id, is free the moment sh exits. The listing gives
/// SIGCHLD its default back before it starts its first child (the first
/// thing `run` does, inside the runtime). It used to exit 1
/// with `No child processes` and leave `sleep` running for its minute.
#[test]
fn async_child_kill_ends_the_group_when_its_parent_ignored_sigchld() {
    let mut command = with_sigchld_ignored(bin!("async-child-kill"), &["pipe"]);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let first = listing.expect(
        r"sh \(pid (\d+)\) runs in a process group of its own; it started sleep \(pid (\d+)\)",
    );
    let sh = Pid::from_raw(first[1].parse().unwrap());
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    let _cleanup = KillGroupOnDrop(sh);
    // Before `finish`: a `sleep` left running holds the listing's stderr.
    wait_until("the shell's group to end", || {
        group_is_gone(sh) && is_dead(sleep)
    });
    let out = finish_clean(listing);
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    assert_eq!(
        out.stdout[1..],
        [
            "sh exited with status 0",
            "No end of stdout within 1 s: killed its process group",
            "End of stdout",
        ]
    );
}

/// A parent may leave SIGINT, SIGTERM and SIGHUP blocked (`env
/// --block-signal`, coreutils 9.1 here, does so and execs), and `exec`
/// keeps the mask (Linux 6.18 here). The listing keeps them blocked on
/// purpose while it makes its streams, and then unblocks them on the main
/// thread, which runs the runtime and spawns sh through `Command`: that
/// unblock must undo a parent's block too, for the listing and for sh.
/// Then its own SIGTERM to the group ends sh, and a kill of the listing
/// ends it and the group. It used to send SIGKILL after
/// the SIGTERM sh could not take, and to run on after a kill of its own.
#[test]
fn async_child_kill_hears_signals_its_parent_had_blocked() {
    let sh_started = r"sh \(pid (\d+)\) runs in a process group of its own; it started sleep \(pid (\d+)\)";
    let blocked = |args: &[&str]| {
        let mut command = Command::new("env");
        command
            .arg("--block-signal=INT,TERM,HUP")
            .arg(bin!("async-child-kill"))
            .args(args);
        Listing::spawn(&mut command, Stdio::piped())
    };
    let mut careful = blocked(&["timeout", "--wait", "1"]);
    let pids = careful.expect(sh_started);
    let _group = KillGroupOnDrop(Pid::from_raw(pids[1].parse().unwrap()));
    careful.expect("No exit within 1 s: sent SIGTERM to its process group");
    careful.expect("sh was killed by SIGTERM");
    careful.expect("End of stdout");
    let out = finish_clean(careful);
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);

    for stop in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let mut listing = blocked(&["timeout", "--wait", "30"]);
        let pids = listing.expect(sh_started);
        let sh = Pid::from_raw(pids[1].parse().unwrap());
        let _group = KillGroupOnDrop(sh);
        listing.signal(stop);
        let out = finish_clean(listing);
        assert_eq!(out.status.signal(), Some(stop as i32), "{}", out.stderr);
        wait_until("sh's group to end", || group_is_gone(sh));
    }
}

/// Chapter 12's rule for Listings 31-1 and 31-2, and for Listing 32-1's
/// `wait` way, plain and with each fix: their `keep_own_zombies` set
/// SIGCHLD's default for their own waits, and started with SIGCHLD
/// ignored, they used to start `tee`, `sh` and `sleep` with the default.
/// A stand-in for each, first on PATH, records its /proc status, then
/// execs the real one.
#[test]
fn async_children_give_their_child_back_the_sigchld_they_found() {
    let programs = [
        (
            bin!("async-child-feed"),
            "tee",
            &["join", "--bytes", "10"][..],
        ),
        (
            bin!("async-child-kill"),
            "sh",
            &["timeout", "--wait", "1"][..],
        ),
        (bin!("async-block"), "sleep", &["wait", "--secs", "0"][..]),
        (
            bin!("async-block"),
            "sleep",
            &["wait", "--fix", "spawn-blocking", "--secs", "0"][..],
        ),
        (
            bin!("async-block"),
            "sleep",
            &[
                "wait",
                "--fix",
                "block-in-place",
                "--workers",
                "2",
                "--secs",
                "0",
            ][..],
        ),
        (
            bin!("async-block"),
            "sleep",
            &["wait", "--fix", "async", "--secs", "0"][..],
        ),
    ];
    for (listing, child, args) in programs {
        for ignored in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            if crate::support::status_recorder(dir.path(), child).is_none() {
                return;
            }
            let recorded = dir.path().join("status");
            let mut command = if ignored {
                crate::support::with_sigchld_ignored(listing, args)
            } else {
                let mut plain = Command::new(listing);
                plain.args(args);
                plain
            };
            let path = env::var("PATH").unwrap_or_default();
            command
                .env("PATH", format!("{}:{path}", dir.path().display()))
                .env("STATUS_FILE", &recorded);
            let out = crate::support::finish_clean(
                crate::support::Listing::spawn(&mut command, Stdio::piped()),
            );
            let what =
                format!("{child} of {args:?}, SIGCHLD ignored: {ignored}");
            assert!(out.status.success(), "{what}: {}", out.stderr);
            let status = fs::read_to_string(&recorded).expect(&what);
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
