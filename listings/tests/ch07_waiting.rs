//! Chapter 7, Waiting without a race, and signals with threads: Listings
//! 7-1 (`sig-wait`), 7-2 (`sig-signalfd`) and 7-3 (`sig-threads`).

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{
    Listing, POLL_CALLS, assert_matches_book, assert_rejects,
    assert_session_matches_book, cargo_run, have, pending_signals, run, shell,
    start_with_pending, state_of, wait_until,
};

#[test]
fn sig_wait_pause_loses_the_alarm_that_rings_between_check_and_pause() {
    let args = ["pause", "--late", "--count", "1"];
    let mut wait = Listing::start(bin!("sig-wait"), &args);
    wait.expect(r"Waiting for alarms as pid \d+");
    wait.expect(r"Round 1: alarm\(1\) set");
    wait.expect("\\(late\\) handler ran: true; SIGALRM pending: false");
    let pid = wait.pid();
    // In pause(), for a signal that has come and gone: asleep, with
    // nothing pending, and nothing happens.
    wait_until("pause()", || state_of(pid) == Some('S'));
    assert_eq!(pending_signals(pid), Vec::<i32>::new());
    assert!(
        wait.no_line_within(Duration::from_secs(2)),
        "pause returned"
    );
    // Only a new signal wakes it: the one Terminal 2 sends.
    let kill = format!("kill -ALRM {pid}");
    let terminal2 = shell(&kill);
    wait.expect("Round 1: SIGALRM taken by pause");
    let out = wait.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch07-waiting/07-01-sig-wait-pause.out",
        "sig-wait",
        &args,
        &out.stdout,
    );
    assert_session_matches_book(
        "ch07-waiting/07-01-terminal-2.out",
        &[(kill, &terminal2)],
    );
}

#[test]
fn sig_wait_blocking_methods_keep_the_alarm_that_came_early() {
    let mut session = Vec::new();
    for (method, taken_by) in [
        ("suspend", "sigsuspend"),
        ("sigwait", "sigwait"),
        ("timedwait", "sigtimedwait"),
    ] {
        let args = [method, "--late", "--count", "1"];
        let out = run(bin!("sig-wait"), &args);
        assert!(out.status.success(), "{method}: {}", out.stderr);
        assert_eq!(
            out.stdout[2],
            "(late) handler ran: false; SIGALRM pending: true"
        );
        assert_eq!(
            out.stdout[3],
            format!("Round 1: SIGALRM taken by {taken_by}")
        );
        session.push((cargo_run("sig-wait", &args), out.stdout));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch07-waiting/07-01-sig-wait-late.out",
        &session,
    );
}

#[test]
fn sig_wait_suspend_takes_the_alarm_when_started_with_it_blocked() {
    // A parent that blocked SIGALRM for its own sigwait or signalfd passes
    // its mask on, through exec; `env --block-signal` plays that parent.
    // The mask that sigsuspend installs must still let SIGALRM in.
    let mut command = std::process::Command::new("env");
    command.arg("--block-signal=ALRM").arg(bin!("sig-wait"));
    command.args(["suspend", "--count", "1"]);
    let mut wait = Listing::spawn(&mut command, std::process::Stdio::piped());
    wait.expect(r"Waiting for alarms as pid \d+");
    wait.expect(r"Round 1: alarm\(1\) set");
    wait.expect("Round 1: SIGALRM taken by sigsuspend");
    let out = wait.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn sig_wait_pause_takes_the_alarm_when_started_with_it_blocked() {
    // Blocked by a parent, SIGALRM would stay pending, and `pause` would
    // wait for ever even without `--late`: `pause` mode unblocks it.
    let mut command = std::process::Command::new("env");
    command.arg("--block-signal=ALRM").arg(bin!("sig-wait"));
    command.args(["pause", "--count", "1"]);
    let mut wait = Listing::spawn(&mut command, std::process::Stdio::piped());
    wait.expect(r"Waiting for alarms as pid \d+");
    wait.expect(r"Round 1: alarm\(1\) set");
    wait.expect("Round 1: SIGALRM taken by pause");
    let out = wait.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn sig_wait_takes_one_alarm_per_round_with_every_method() {
    for method in ["pause", "suspend", "sigwait", "timedwait"] {
        let started = Instant::now();
        let out = run(bin!("sig-wait"), &[method, "--count", "2"]);
        assert!(out.status.success(), "{method}: {}", out.stderr);
        assert_eq!(out.stdout.len(), 5, "{method}: {:?}", out.stdout);
        // Two alarms of one second each cannot take less than two.
        assert!(started.elapsed() >= Duration::from_secs(2));
    }
}

#[test]
fn sig_wait_timedwait_gives_up_after_its_timeout() {
    let started = Instant::now();
    let args = [
        "timedwait",
        "--alarm-secs",
        "5",
        "--timeout-secs",
        "1",
        "--count",
        "1",
    ];
    let out = run(bin!("sig-wait"), &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout[2], "Round 1: no signal within 1 s");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_matches_book(
        "ch07-waiting/07-01-sig-wait-timedwait.out",
        "sig-wait",
        &args,
        &out.stdout,
    );
}

#[test]
fn sig_signalfd_reads_each_signal_and_its_sender_lowest_number_first() {
    // Kernel behaviour, seen on Linux 6.18: of the standard signals
    // pending, `next_signal()` (kernel/signal.c) hands out the lowest
    // number first, whatever the order they came in.
    let mut fd = Listing::start(bin!("sig-signalfd"), &[]);
    fd.expect(r"Waiting as pid \d+; try: kill -USR1 \d+, or type a line");
    let pid = fd.pid();
    let mut terminal2 = Vec::new();
    let mut type_in = |command: String| {
        terminal2.push((command.clone(), shell(&command)));
    };
    type_in(format!("kill -USR1 {pid}"));
    fd.expect(r"signalfd: SIGUSR1 from pid \d+ \(uid \d+\)");
    type_in(format!("kill -STOP {pid}"));
    wait_until("the listing to stop", || state_of(pid) == Some('T'));
    type_in(format!("kill -USR1 {pid}; kill -HUP {pid}"));
    type_in(format!("kill -CONT {pid}"));
    // Two pending signals are read lowest number first: 1 before 10.
    fd.expect(r"signalfd: SIGHUP from pid \d+ \(uid \d+\)");
    fd.expect(r"signalfd: SIGUSR1 from pid \d+ \(uid \d+\)");
    type_in(format!("kill -TERM {pid}"));
    fd.expect(r"signalfd: SIGTERM from pid \d+ \(uid \d+\)");
    let out = fd.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_session_matches_book(
        "ch07-waiting/07-02-sig-signalfd.out",
        &[(cargo_run("sig-signalfd", &[]), &out.stdout)],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch07-waiting/07-02-terminal-2.out", &session);
}

#[test]
fn sig_signalfd_leaves_a_sigint_ignored_when_it_was_started_so() {
    // Started as a script's `&` job, with SIGINT ignored: blocked for the
    // signalfd, an ignored signal would still be queued and read.
    let mut command = std::process::Command::new("env");
    command.arg("--ignore-signal=INT").arg(bin!("sig-signalfd"));
    let mut fd = Listing::spawn(&mut command, std::process::Stdio::piped());
    fd.next_line();
    // Discarded by the kernel at once; queued, it would be read first,
    // before SIGUSR1 (2 before 10), and would stop the listing.
    fd.signal(Signal::SIGINT);
    fd.signal(Signal::SIGUSR1);
    fd.expect(r"signalfd: SIGUSR1 from pid \d+ \(uid \d+\)");
    fd.signal(Signal::SIGTERM);
    fd.expect(r"signalfd: SIGTERM from pid \d+ \(uid \d+\)");
    let out = fd.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn sig_signalfd_sender_pid_is_the_process_that_sent() {
    let mut fd = Listing::start(bin!("sig-signalfd"), &["--count", "1"]);
    fd.next_line();
    fd.signal(Signal::SIGUSR1); // From this test process.
    let me = std::process::id();
    fd.expect(&format!(r"signalfd: SIGUSR1 from pid {me} \(uid \d+\)"));
    assert!(fd.finish().status.success());
}

/// Runs `sig-threads MODE`, sends `n` SIGUSR1 one at a time with the
/// `kill` it suggests, and returns the names of the threads that took
/// them, what it printed, and the commands typed.
fn takers(mode: &str, n: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
    let count = n.to_string();
    let mut threads =
        Listing::start(bin!("sig-threads"), &[mode, "--count", &count]);
    let ready = threads.expect(r"\d threads in pid \d+; try: (kill -USR1 \d+)");
    let (mut names, mut typed) = (Vec::new(), Vec::new());
    for i in 1..=n {
        shell(&ready[1]);
        typed.push(ready[1].clone());
        let line = threads.expect(&format!(r"SIGUSR1 #{i}: thread (\S+) .*"));
        names.push(line[1].clone());
    }
    let out = threads.finish();
    assert!(out.status.success(), "{mode}: {}", out.stderr);
    (names, out.stdout, typed)
}

#[test]
fn sig_threads_a_process_signal_goes_to_a_thread_that_does_not_block_it() {
    // The kernel prefers the main thread when it does not block the
    // signal; otherwise it picks another thread that does not. Seen on
    // Linux 6.18 (`complete_signal()` and `wants_signal()` in
    // kernel/signal.c): Linux's choice, not a promise.
    let (names, handler, mut typed) = takers("handler", 3);
    assert_eq!(names, ["main"; 3]);
    let (names, _, _) = takers("mask-main", 3);
    assert!(names.iter().all(|n| n.starts_with("worker-")), "{names:?}");
    // Blocked everywhere before any thread started: only sigwait takes it.
    let (names, sigwait, more) = takers("sigwait", 3);
    assert_eq!(names, ["signals"; 3]);
    typed.extend(more);
    let no_output: [&str; 0] = [];
    let terminal2: Vec<_> =
        typed.iter().map(|c| (c.clone(), &no_output[..])).collect();
    assert_session_matches_book(
        "ch07-waiting/07-03-terminal-2.out",
        &terminal2,
    );
    assert_session_matches_book(
        "ch07-waiting/07-03-sig-threads.out",
        &[
            (
                cargo_run("sig-threads", &["handler", "--count", "3"]),
                &handler,
            ),
            (
                cargo_run("sig-threads", &["sigwait", "--count", "3"]),
                &sigwait,
            ),
        ],
    );
}

#[test]
fn sig_threads_blocked_in_one_thread_only_the_signal_kills_the_process() {
    let args = ["sigwait-late"];
    let mut threads = Listing::start(bin!("sig-threads"), &args);
    let ready = threads.expect(r"\d threads in pid \d+; try: (kill -USR1 \d+)");
    let terminal2 = shell(&ready[1]);
    let out = threads.finish();
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGUSR1 as i32),
        "{:?}",
        out.status
    );
    assert_eq!(out.stdout.len(), 1, "{:?}", out.stdout);
    // 128 + 10, as a shell's `$?` says it.
    let status = ["138".to_string()];
    assert_session_matches_book(
        "ch07-waiting/07-03-sig-threads-late.out",
        &[
            (cargo_run("sig-threads", &args), &out.stdout[..]),
            ("echo $?".to_string(), &status[..]),
        ],
    );
    assert_session_matches_book(
        "ch07-waiting/07-03-late-terminal-2.out",
        &[(ready[1].clone(), &terminal2)],
    );
}

#[test]
fn waiting_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("sig-wait"), &[], "which method?");
    assert_rejects(bin!("sig-wait"), &["nap"], "unknown method 'nap'");
    assert_rejects(
        bin!("sig-wait"),
        &["pause", "--alarm-secs", "0"],
        "at least 1",
    );
    // A zero timeout would give up on every round at once, before any
    // alarm could ring: a loop that prints without end.
    assert_rejects(
        bin!("sig-wait"),
        &["timedwait", "--timeout-secs", "0"],
        "--timeout-secs must be at least 1",
    );
    assert_rejects(bin!("sig-signalfd"), &["--count", "x"], r#"argument "x""#);
    assert_rejects(bin!("sig-threads"), &["all"], "unknown mode 'all'");
}

#[test]
fn sig_signalfd_polls_again_when_poll_fails_with_eintr() {
    // No handler in Listing 7-2 can interrupt its `poll`, so strace
    // makes the call fail with EINTR itself, three times in a row. The
    // first `poll` is the Rust runtime's own, which checks descriptors 0
    // to 2 before `main`; the listing's are the second onwards.
    if !have("strace") {
        return;
    }
    let mut fd = Listing::start(
        "strace",
        &[
            "-f",
            "-q",
            "-o",
            "/dev/null",
            "-e",
            &format!("trace={POLL_CALLS}"),
            "-e",
            &format!("inject={POLL_CALLS}:error=EINTR:when=2..4"),
            bin!("sig-signalfd"),
            "--count",
            "1",
        ],
    );
    let ready = fd.expect(r"Waiting as pid (\d+); try: .*");
    let pid = nix::unistd::Pid::from_raw(ready[1].parse().unwrap());
    nix::sys::signal::kill(pid, Signal::SIGUSR1).unwrap();
    fd.expect(r"signalfd: SIGUSR1 from pid \d+ \(uid \d+\)");
    let out = fd.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn sig_threads_handler_modes_take_sigusr1_even_when_started_with_it_blocked() {
    // A parent's mask passes through exec, and every thread starts from
    // the main thread's: blocked there, SIGUSR1 would reach no thread, and
    // the handler modes would wait for ever.
    for mode in ["handler", "mask-main"] {
        let mut command = std::process::Command::new("env");
        command.args(["--block-signal=USR1", bin!("sig-threads")]);
        command.args([mode, "--count", "1"]);
        let mut threads =
            Listing::spawn(&mut command, std::process::Stdio::piped());
        threads.expect(r"4 threads in pid \d+; try: kill -USR1 \d+");
        threads.signal(Signal::SIGUSR1);
        threads.expect(r"SIGUSR1 #1: thread \S+ ran the handler");
        let out = threads.finish();
        assert!(out.status.success(), "{mode}: {}", out.stderr);
    }
}

/// Whether a thread of `pid` waits in a kernel function named `like`
/// (its /proc wchan).
fn a_thread_waits_in(pid: nix::unistd::Pid, like: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("wchan"))
            .is_ok_and(|w| w.contains(like))
    })
}

#[test]
fn sig_threads_does_not_report_a_sigusr1_its_parent_left_pending() {
    // A SIGUSR1 that came while the parent had it blocked passes through
    // `exec`, pending. Taken, it would be reported though nobody sent it,
    // and in mask-main by the main thread, at its unblock, before the
    // workers exist (seen before the fix: each mode reported "#1" and
    // ended with no signal sent).
    for (mode, waits_in) in [
        ("handler", "nanosleep"),
        ("mask-main", "nanosleep"),
        ("sigwait", "sigtimedwait"),
    ] {
        let bin = bin!("sig-threads");
        let mut threads =
            start_with_pending("USR1", bin, &[mode, "--count", "1"]);
        threads.expect(r"\d threads in pid \d+; try: kill -USR1 \d+");
        let pid = threads.pid();
        // Waiting for its first signal (the handler modes poll a counter
        // between sleeps), or already ended: it took the parent's.
        let ended = || !matches!(state_of(pid), Some('S' | 'R'));
        wait_until("sig-threads to wait for a signal", || {
            a_thread_waits_in(pid, waits_in) || ended()
        });
        assert!(!ended(), "{mode}: ended with no SIGUSR1 sent");
        threads.signal(Signal::SIGUSR1);
        let line = threads.next_line();
        assert!(line.starts_with("SIGUSR1 #1: thread "), "{mode}: {line}");
        if mode == "mask-main" {
            assert!(line.contains("thread worker-"), "{mode}: {line}");
        }
        let out = threads.finish();
        assert!(out.status.success(), "{mode}: {}", out.stderr);
    }
}

#[test]
fn sig_wait_timedwait_does_not_take_an_alarm_left_over_from_a_timeout() {
    // The first round times out after 1 s; strace holds the cancel,
    // `alarm(0)`, for 2 s, so that the 2 s alarm rings in between and
    // waits, pending. The second round must time out too, not take it.
    if !have("strace") {
        return;
    }
    let mut wait = Listing::start(
        "strace",
        &[
            "-f",
            "-q",
            "-o",
            "/dev/null",
            "-e",
            "trace=alarm",
            "-e",
            "inject=alarm:delay_enter=2000000:when=2",
            bin!("sig-wait"),
            "timedwait",
            "--alarm-secs",
            "2",
            "--timeout-secs",
            "1",
            "--count",
            "2",
        ],
    );
    wait.expect(r"Waiting for alarms as pid \d+");
    wait.expect(r"Round 1: alarm\(2\) set");
    wait.expect("Round 1: no signal within 1 s");
    wait.expect(r"Round 2: alarm\(2\) set");
    wait.expect("Round 2: no signal within 1 s");
    let out = wait.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

/// Interrupted, `sigtimedwait` must wait on only for what is left of its
/// timeout, not the whole of it again: strace makes the round's call fail
/// with EINTR once (the first call is the one that takes a signal left
/// pending by the parent, with no timeout), holding the process stopped for
/// 300 ms first, and the next call must ask for at least 300 ms less than
/// that call did. Without the delay the retry follows within microseconds,
/// and a listing that takes the whole timeout again (its deadline computed
/// inside the loop) asks for a few nanoseconds more or less at random.
/// strace's delay timer runs on CLOCK_MONOTONIC, the clock of `Instant`, so
/// a busy machine can only make the difference larger.
#[test]
fn sig_wait_timedwait_waits_only_for_what_is_left_after_eintr() {
    if !have("strace") {
        return;
    }
    let args = [
        "-q",
        "-e",
        "trace=rt_sigtimedwait",
        "-e",
        "inject=rt_sigtimedwait:error=EINTR:delay_enter=300000:when=2",
        bin!("sig-wait"),
        "timedwait",
        "--alarm-secs",
        "5",
        "--timeout-secs",
        "2",
        "--count",
        "1",
    ];
    let out = Listing::start("strace", &args).finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout[2], "Round 1: no signal within 2 s");
    // strace writes its trace on stderr: the timeout of each call.
    let re = regex::Regex::new(
        r"^rt_sigtimedwait\(.*\{tv_sec=(\d+), tv_nsec=(\d+)\}.*\) += (.*)$",
    )
    .unwrap();
    let calls: Vec<(Duration, String)> = out
        .stderr
        .lines()
        .filter_map(|line| re.captures(line))
        .map(|c| {
            let secs: u64 = c[1].parse().unwrap();
            let nanos: u32 = c[2].parse().unwrap();
            (Duration::new(secs, nanos), c[3].to_string())
        })
        .collect();
    assert!(calls.len() >= 3, "{}", out.stderr);
    let (first, retry) = (calls[1].0, calls[2].0);
    assert!(first > Duration::from_secs(1), "{}", out.stderr);
    assert!(first <= Duration::from_secs(2), "{}", out.stderr);
    assert!(calls[1].1.contains("EINTR"), "{}", out.stderr);
    assert!(
        first.saturating_sub(retry) >= Duration::from_millis(300),
        "not 300 ms less after 300 ms stopped; the whole timeout again \
         after EINTR?\n{}",
        out.stderr
    );
}
