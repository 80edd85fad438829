//! Chapter 11, Timers and real-time signals: Listings 11-1
//! (`sig-alarm-limits`), 11-2 (`sig-timers`), 11-3 (`sig-count`) and 11-4
//! (`sig-queue`).

use crate::support::{
    Listing, assert_matches_book, assert_rejects, assert_session_matches_book,
    cargo_run, have, need_root, run, shell, signal_after_iterator_closes,
    signal_as_its_handler_goes_in, start_with_pending,
};

/// The number a listing printed just before " (measured)".
fn measured(line: &str) -> f64 {
    let re = regex::Regex::new(r"(\d+(?:\.\d+)?)( s)? \(measured\)").unwrap();
    re.captures(line)
        .unwrap_or_else(|| panic!("no measured value in {line:?}"))[1]
        .parse()
        .unwrap()
}

#[test]
fn sig_alarm_limits_whole_seconds_one_timer_shared_with_setitimer() {
    let out = run(bin!("sig-alarm-limits"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let lines = &out.stdout;
    assert_eq!(lines.len(), 6, "{lines:?}");
    // Lower bounds only: a loaded machine makes signals late, not early.
    assert!(measured(&lines[0]) >= 0.99, "{}", lines[0]);
    assert_eq!(
        lines[1],
        "alarm(5) returned None; alarm(2) returned Some(5)"
    );
    assert!(measured(&lines[2]) >= 1.99, "{}", lines[2]);
    assert_eq!(lines[3], "alarm(0) returned None: nothing is left");
    assert!(measured(&lines[4]) >= 0.99, "{}", lines[4]);
    assert_eq!(
        lines[5],
        "alarm(0) returned Some(1); the interval timer is off: true"
    );
    assert_matches_book(
        "ch11-timers/11-01-sig-alarm-limits.out",
        "sig-alarm-limits",
        &[],
        &out.stdout,
    );
}

#[test]
fn sig_timers_posix_timers_carry_values_and_count_overruns() {
    let out = run(bin!("sig-timers"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let lines = &out.stdout;
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert!(lines[2].starts_with("Took SIGRTMIN with value 1 after"));
    assert!(measured(&lines[2]) >= 0.29);
    assert!(lines[3].starts_with("Took SIGRTMIN+1 with value 2 after"));
    assert!(measured(&lines[3]) >= 0.59);
    // Blocked for 100 ms of 10 ms ticks: one signal, the rest counted.
    // Both timers are armed before their 100 ms sleep starts, so at least
    // ten ticks are due when the listing looks. The signal stands for the
    // first, the overrun count for the rest: at least 9 (Linux 6.18:
    // when the signal is taken, `posixtimer_deliver_signal` moves the
    // timer past now with `hrtimer_forward_now` and reports the ticks
    // after the first). The timerfd counts every expiration: at least 10.
    // Load can only raise both.
    eprintln!("sig-timers: {} / {}", lines[5], lines[7]);
    assert!(measured(&lines[5]) >= 9.0, "{}", lines[5]);
    assert!(measured(&lines[7]) >= 10.0, "{}", lines[7]);
    assert_matches_book(
        "ch11-timers/11-02-sig-timers.out",
        "sig-timers",
        &[],
        &out.stdout,
    );
}

/// Real-time signals queue: a parent that blocked them may leave several
/// of each pending, and `exec` keeps them all. Listing 11-2 must throw
/// every one away before it starts its timers, not just the first, or a
/// leftover passes for a timer's signal.
#[test]
fn sig_timers_throws_away_every_queued_signal_its_parent_left() {
    let pending = "RTMIN,RTMIN,RTMIN,RTMIN+1,RTMIN+1,RTMIN+2";
    let out = start_with_pending(pending, bin!("sig-timers"), &[]).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let lines = &out.stdout;
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert!(
        lines[2].starts_with("Took SIGRTMIN with value 1 after"),
        "{lines:?}"
    );
    assert!(
        lines[3].starts_with("Took SIGRTMIN+1 with value 2 after"),
        "{lines:?}"
    );
    assert!(measured(&lines[5]) >= 9.0, "{}", lines[5]);
}

#[test]
fn sig_count_standard_signals_merge_and_real_time_signals_queue() {
    // Kernel behaviour, seen on Linux 6.18: a standard signal pending
    // once at most (`legacy_queue()`), a real-time one queued each time
    // it is sent (`__send_signal_locked()`, kernel/signal.c).
    let out = run(bin!("sig-count"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    // Each row: scheme, signal, sent, seen, and "(measured)" if it is.
    let seen = |scheme: &str, signal: &str| -> String {
        let row = out.stdout.iter().find_map(|line| {
            let words: Vec<_> = line.split_whitespace().collect();
            let end = words.len() - usize::from(line.ends_with("(measured)"));
            let (sig, sent, seen) =
                (words[end - 3], words[end - 2], words[end - 1]);
            (line.starts_with(scheme) && sig == signal && sent == "1000")
                .then(|| seen.to_string())
        });
        row.unwrap_or_else(|| {
            panic!("no row {scheme} {signal}: {:?}", out.stdout)
        })
    };
    assert_eq!(seen("handler, blocked while sent", "SIGUSR1"), "1");
    assert_eq!(seen("handler, blocked while sent", "SIGRTMIN"), "1000");
    let running: u32 = seen("handler, not blocked", "SIGUSR1").parse().unwrap();
    assert!((1..=1000).contains(&running));
    assert_eq!(seen("handler, not blocked", "SIGRTMIN"), "1000");
    assert_eq!(seen("signalfd", "SIGUSR1"), "1");
    assert_eq!(seen("signalfd", "SIGRTMIN"), "1000");
    assert_eq!(seen("signal-hook iterator", "SIGUSR1"), "1");
    assert_eq!(seen("signal-hook iterator", "SIGRTMIN"), "1");
    eprintln!("sig-count: handler, not blocked, SIGUSR1: {running} of 1000");
    assert_matches_book(
        "ch11-timers/11-03-sig-count.out",
        "sig-count",
        &[],
        &out.stdout,
    );
}

#[test]
fn sig_count_survives_a_sigusr1_after_its_iterator_row() {
    // The iterator's row makes a `Signals` for SIGUSR1, then one for
    // SIGRTMIN. Had the first been dropped once counted, it would close
    // its socket before signal-hook unregistered its action, and a
    // SIGUSR1 from anyone in between would make that action's write raise
    // SIGPIPE, at its default here: no last rows, a death by SIGPIPE.
    // strace holds it there, if it ever closes that socket.
    if !have("strace") {
        return;
    }
    let out = signal_after_iterator_closes(
        bin!("sig-count"),
        &["--count", "10"],
        nix::sys::signal::Signal::SIGUSR1,
        |count| {
            // The header and six rows; the iterator's come next.
            for _ in 0..7 {
                count.next_line();
            }
        },
    );
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(out.stdout.len(), 9, "{:?}", out.stdout);
}

/// The "seen" column of `sig-count`'s row for `scheme` and `signal`.
fn seen_in(stdout: &[String], scheme: &str, signal: &str) -> u64 {
    let line = stdout
        .iter()
        .find(|l| {
            l.starts_with(scheme) && l.split_whitespace().any(|w| w == signal)
        })
        .unwrap_or_else(|| panic!("no row {scheme} {signal}: {stdout:?}"));
    let words: Vec<_> = line
        .trim_end_matches(" (measured)")
        .split_whitespace()
        .collect();
    words[words.len() - 1].parse().expect("a count")
}

#[test]
fn sig_count_kill_drops_real_time_signals_past_the_queue_limit() {
    // Kernel behaviour, seen on Linux 6.18 (kernel/signal.c).
    // RLIMIT_SIGPENDING bounds the signals queued for a user. `sigqueue`
    // of a real-time signal fails past it, but `kill` succeeds, and the real-time signals it
    // sends beyond the limit only set the pending bit, which goes with the
    // last one queued: they add no delivery.
    if !have("prlimit") {
        return;
    }
    // The limit counts every process of the user. As root, the run is made
    // as a user nothing else runs as (uid 54321), so no slot is held
    // elsewhere and the blocked rows must see exactly the limit: one more
    // would be a delivery added past it. prlimit first, as root: setpriv
    // then execs the listing with root's right to enter the checkout, which
    // may be a directory of mode 700.
    let alone = nix::unistd::geteuid().is_root() && have("setpriv");
    let mut args = vec!["--sigpending=100"];
    if alone {
        args.extend([
            "setpriv",
            "--reuid=54321",
            "--regid=54321",
            "--clear-groups",
        ]);
    }
    args.push(bin!("sig-count"));
    let out = run("prlimit", &args);
    // sig-count exits 1 if a single `kill` of its sender failed.
    assert!(out.status.success(), "a kill failed: {}", out.stderr);
    let blocked = seen_in(&out.stdout, "handler, blocked", "SIGRTMIN");
    let running = seen_in(&out.stdout, "handler, not blocked", "SIGRTMIN");
    let signalfd = seen_in(&out.stdout, "signalfd", "SIGRTMIN");
    eprintln!(
        "sig-count under RLIMIT_SIGPENDING 100, SIGRTMIN of 1000: blocked \
         {blocked}, running {running}, signalfd {signalfd}"
    );
    if alone {
        assert_eq!(blocked, 100, "blocked row");
        assert_eq!(signalfd, 100, "signalfd row");
    } else {
        // Not root: the user's other pending signals can only lower
        // these; the pending bit keeps one at least.
        assert!((1..=100).contains(&blocked), "{blocked}");
        assert!((1..=100).contains(&signalfd), "{signalfd}");
    }
    assert!((1..=1000).contains(&running), "{running}");
}

#[test]
fn sig_queue_says_who_sent_each_signal_and_with_what_value() {
    if !have("/bin/kill") {
        return;
    }
    let args = ["--count", "2"];
    let mut queue = Listing::start(bin!("sig-queue"), &args);
    queue.expect(r"Waiting for SIGUSR1 and SIGRTMIN as pid \d+");
    let pid = queue.pid();
    let mut terminal2 = Vec::new();
    let mut type_in = |command: String| {
        terminal2.push((command.clone(), shell(&command)));
    };
    type_in(format!("/bin/kill -q 42 -s RTMIN {pid}"));
    queue.expect(
        r"SIGRTMIN: sent with sigqueue by pid \d+ \(uid \d+\), value 42",
    );
    type_in(format!("kill -USR1 {pid}"));
    queue.expect(r"SIGUSR1: sent with kill by pid \d+ \(uid \d+\)");
    let out = queue.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_session_matches_book(
        "ch11-timers/11-04-sig-queue.out",
        &[(cargo_run("sig-queue", &args), &out.stdout)],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch11-timers/11-04-terminal-2.out", &session);
}

/// Past RLIMIT_SIGPENDING, `sigqueue` fails only for a real-time signal
/// (EAGAIN). A standard one is still delivered, but with no siginfo queued:
/// it arrives as SI_USER from pid 0, and its value is lost
/// (`__send_signal_locked()` and `collect_signal()`, kernel/signal.c; seen
/// on Linux 6.18). A limit of 0 is past for the first signal.
#[test]
fn sig_queue_past_the_queue_limit_a_standard_signal_loses_its_sender() {
    use nix::libc;
    if !have("prlimit") {
        return;
    }
    let mut command = std::process::Command::new("prlimit");
    command.args(["--sigpending=0", bin!("sig-queue"), "--count", "2"]);
    let mut queue = Listing::spawn(&mut command, std::process::Stdio::piped());
    queue.expect(r"Waiting for SIGUSR1 and SIGRTMIN as pid \d+");
    let pid = queue.pid().as_raw(); // prlimit execs the listing.
    let value = libc::sigval {
        sival_ptr: 42 as *mut libc::c_void,
    };
    // SAFETY: plain system calls on the listing's pid.
    let rt = unsafe { libc::sigqueue(pid, libc::SIGRTMIN(), value) };
    let rt_errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((rt, rt_errno), (-1, Some(libc::EAGAIN)));
    // SAFETY: as above.
    let usr1 = unsafe { libc::sigqueue(pid, libc::SIGUSR1, value) };
    assert_eq!(usr1, 0, "{}", std::io::Error::last_os_error());
    queue.expect(r"SIGUSR1: sent with kill by pid 0 \(uid 0\)");
    // `kill` of a standard signal ignores the limit (Linux 6.18: for
    // `si_code >= 0`, `__send_signal_locked()` sets `override_rlimit`):
    // its siginfo is queued, and it keeps its sender.
    queue.signal(nix::sys::signal::Signal::SIGUSR1);
    let me = std::process::id();
    queue.expect(&format!(r"SIGUSR1: sent with kill by pid {me} \(uid \d+\)"));
    assert!(queue.finish().status.success());
}

/// 11-4 is a reporting program, and ends quietly as a filter does: it
/// gives SIGPIPE its default action (the introduction's conventions check
/// that), and so keeps its iterator until the process ends. Had it
/// dropped it after `--count` signals, it would close its socket before
/// signal-hook unregistered its action, and a SIGUSR1 from anyone in
/// between would make that action's write raise SIGPIPE: a death by
/// SIGPIPE after its report. strace holds that close, if it comes, and
/// sends the SIGUSR1 then.
#[test]
fn sig_queue_survives_a_sigusr1_after_its_last_report() {
    if !have("strace") {
        return;
    }
    let out = signal_after_iterator_closes(
        bin!("sig-queue"),
        &["--count", "1"],
        nix::sys::signal::Signal::SIGUSR1,
        |queue| {
            queue.expect(r"Waiting for SIGUSR1 and SIGRTMIN as pid \d+");
            nix::sys::signal::kill(
                queue.tracee(),
                nix::sys::signal::Signal::SIGUSR1,
            )
            .expect("kill");
            queue.expect(r"SIGUSR1: sent with kill by pid \d+ \(uid \d+\)");
        },
    );
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(out.stdout.len(), 2, "{:?}", out.stdout);
}

#[test]
fn sig_queue_names_the_process_that_sent_the_signal() {
    let mut queue = Listing::start(bin!("sig-queue"), &["--count", "1"]);
    queue.next_line();
    queue.signal(nix::sys::signal::Signal::SIGUSR1); // From this process.
    let me = std::process::id();
    queue.expect(&format!(r"SIGUSR1: sent with kill by pid {me} \(uid \d+\)"));
    assert!(queue.finish().status.success());
}

#[test]
fn timer_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(
        bin!("sig-alarm-limits"),
        &["1"],
        r#"unexpected argument "1""#,
    );
    assert_rejects(bin!("sig-timers"), &["--fast"], "invalid option");
    assert_rejects(bin!("sig-count"), &["--count", "0"], "between 1 and 10000");
    assert_rejects(bin!("sig-queue"), &["--count", "x"], r#"argument "x""#);
}

/// Each listing's opening comment names the marker it puts on what varies
/// from run to run; a reader copies the whole file, comment and all, so
/// the marker it names must be the one its output shows.
#[test]
fn timer_listings_mark_what_varies_as_their_comments_say() {
    let marker = regex::Regex::new(r#"marked\s+"([^"]+)""#).unwrap();
    for (listing, out) in [
        ("11-01-sig-alarm-limits.rs", "11-01-sig-alarm-limits.out"),
        ("11-02-sig-timers.rs", "11-02-sig-timers.out"),
        ("11-03-sig-count.rs", "11-03-sig-count.out"),
    ] {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ch11-timers");
        let read = |file| std::fs::read_to_string(format!("{dir}/{file}"));
        let source = read(listing).unwrap();
        let opening: String = source
            .lines()
            .take_while(|line| line.starts_with("//"))
            .map(|line| line.trim_start_matches('/').trim())
            .collect::<Vec<_>>()
            .join(" ");
        let named = &marker
            .captures(&opening)
            .unwrap_or_else(|| panic!("{listing} names no marker"))[1];
        assert!(
            read(out).unwrap().contains(named),
            "{listing} says it marks {named:?}, which {out} never shows"
        );
    }
}

/// The lines of an output file of chapter 11 after its command, which
/// must be `command`.
fn shown_after(file: &str, command: &str) -> Vec<String> {
    let path = format!("{}/ch11-timers/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().map(String::from);
    assert_eq!(lines.next().as_deref(), Some(&*format!("$ {command}")));
    lines.collect()
}

#[test]
fn sig_count_runs_shown_come_from_the_commands_shown() {
    // Two runs the chapter shows, of the commands on their files' first
    // lines: the numbers are luck, but each must be possible, and the
    // prose's "99, not 100" and the counts it quotes must hold.
    let row = regex::Regex::new(
        r"^(handler, blocked while sent|handler, not blocked|signalfd|signal-hook iterator) +(SIGUSR1|SIGRTMIN) +1000  (\d+)( \(measured\))?$",
    )
    .unwrap();
    let seen = |line: &str| -> (String, u32) {
        let caps = row.captures(line).unwrap_or_else(|| panic!("{line:?}"));
        (caps[1].to_string(), caps[3].parse().unwrap())
    };
    let unblocked = "for run in $(seq 7); do target/debug/sig-count | grep \
                     \"not blocked  *SIGUSR1\"; done";
    let runs = shown_after("11-03-unblocked-runs.out", unblocked);
    assert_eq!(runs.len(), 7);
    for line in &runs {
        let (scheme, count) = seen(line);
        assert_eq!(scheme, "handler, not blocked");
        assert!((1..=1000).contains(&count), "{line}");
    }
    let again = unblocked
        .replace("seq 7", "seq 1")
        .replace("target/debug/sig-count", bin!("sig-count"));
    let out = shell(&again);
    assert_eq!(out.len(), 1, "{out:?}");
    seen(&out[0]);

    let limited = "grep SigQ /proc/self/status; for run in 1 2; do \
                   prlimit --sigpending=100 target/debug/sig-count | \
                   grep SIGRTMIN; echo \"exit ${PIPESTATUS[0]}\"; done";
    let runs = shown_after("11-03-sigpending.out", limited);
    assert_eq!(runs.len(), 11, "{runs:#?}");
    let queued = regex::Regex::new(r"^SigQ:\t(\d+)/\d+$").unwrap();
    let others: u32 = queued
        .captures(&runs[0])
        .unwrap_or_else(|| panic!("{:?}", runs[0]))[1]
        .parse()
        .unwrap();
    // The prose says the snapshot read one just before these runs, and
    // that it is only a snapshot: what the shown blocked rows saw is the
    // hundred less that one, which the recorded runs must bear out.
    assert_eq!(others, 1, "the prose says SigQ read one");
    let mut running = Vec::new();
    for run in runs[1..].chunks(5) {
        assert_eq!(run[4], "exit 0");
        for line in &run[..4] {
            let (scheme, count) = seen(line);
            match &*scheme {
                "handler, not blocked" => running.push(count),
                "signal-hook iterator" => assert_eq!(count, 1),
                _ => assert_eq!(count, 100 - others, "{line}"),
            }
        }
    }
    // The handler that runs while the signals come frees a slot with each
    // one it takes, so it may see more than the limit: the prose quotes
    // the two counts shown, which must be at least the blocked rows'.
    assert!(running.iter().all(|&n| n >= 100 - others), "{running:?}");
    let chapter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch11-timers.md"
    ))
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    let quoted = format!("a few more, {} and {}:", running[0], running[1]);
    assert!(chapter.contains(&quoted), "ch11 does not say {quoted:?}");
    let snapshot = "It read one just before these runs; it is a snapshot";
    assert!(chapter.contains(snapshot), "ch11 does not say {snapshot:?}");
}

/// Kernel behaviour, seen on Linux 6.18 (kernel/time/posix-timers.c): a
/// POSIX timer holds a slot of RLIMIT_SIGPENDING from `timer_create` on,
/// armed or not, and `timer_create` fails with EAGAIN when none is left.
/// Listing 11-2 makes three timers. The limit counts every process of the
/// user, so the run is made as a user no other test runs as (uid 54324;
/// the sig-count test runs as 54321 at the same time, and Chapter 21's
/// pipe-capacity tests as 54323):
/// under a limit of two, timers A and B run, and the third fails, in one
/// line. Root only (`setpriv`); skipped otherwise.
#[test]
fn sig_timers_needs_a_pending_signal_slot_for_each_timer() {
    if !need_root("run the listing as another user")
        || !have("prlimit")
        || !have("setpriv")
    {
        return;
    }
    // prlimit first, as root: setpriv then execs the listing with root's
    // right to enter the checkout, which may be a directory of mode 700.
    let args = [
        "--sigpending=2",
        "setpriv",
        "--reuid=54324",
        "--regid=54324",
        "--clear-groups",
        bin!("sig-timers"),
    ];
    let out = run("prlimit", &args);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let firsts: Vec<&str> = out
        .stdout
        .iter()
        .map(|l| l.split(" after ").next().unwrap())
        .collect();
    assert_eq!(
        firsts,
        [
            "timer A: SIGRTMIN with value 1, once,",
            "timer B: SIGRTMIN+1 with value 2, once,",
            "Took SIGRTMIN with value 1",
            "Took SIGRTMIN+1 with value 2",
        ]
    );
    assert_eq!(
        out.stderr,
        "sig-timers: timer_create for a timer on SIGRTMIN+2: Resource \
         temporarily unavailable (os error 11); probably no slot left for its \
         signal under RLIMIT_SIGPENDING (ulimit -i)\n"
    );
    let chapter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch11-timers.md"
    ))
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = "as a user with nothing else running, under `prlimit --sigpending=2`, Listing 11-2 stops at its third timer";
    assert!(chapter.contains(said), "ch11 does not say {said:?}");
}

#[test]
fn sig_count_reaps_its_sender_even_when_waitpid_is_interrupted() {
    // Every handler of Listing 11-3 has SA_RESTART, so its `waitpid` is
    // never interrupted today; one a library installs without it would
    // be. strace fails the first `wait4` with EINTR, as that handler
    // would: the listing must wait on, reap the sender, and finish its
    // table, not give up with the sender still running.
    if !have("strace") {
        return;
    }
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-q", "-o", "/dev/null", "-e", "trace=wait4"])
        .args(["-e", "inject=wait4:error=EINTR:when=1"])
        .args([bin!("sig-count"), "--count", "5"])
        .stdin(std::process::Stdio::null());
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(out.stdout.len(), 9, "{:?}", out.stdout);
}

#[test]
fn sig_count_works_even_when_started_with_sigchld_ignored() {
    // An ignored SIGCHLD passes through exec, and makes the kernel reap
    // the sender itself: `waitpid` would fail with ECHILD.
    let mut command = std::process::Command::new("env");
    command
        .args(["--ignore-signal=CHLD", bin!("sig-count"), "--count", "5"])
        .stdin(std::process::Stdio::null());
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(out.stdout.len(), 9, "{:?}", out.stdout);
}

#[test]
fn sig_queue_shows_a_negative_value_as_the_int_that_was_sent() {
    // sigqueue(3) sends an int or a pointer; /bin/kill sends an int, which
    // fills half of the pointer-sized union.
    if !have("/bin/kill") {
        return;
    }
    let mut queue = Listing::start(bin!("sig-queue"), &["--count", "1"]);
    queue.expect(r"Waiting for SIGUSR1 and SIGRTMIN as pid \d+");
    let pid = queue.pid();
    shell(&format!("/bin/kill --queue=-1 -s RTMIN {pid}"));
    queue.expect(
        r"SIGRTMIN: sent with sigqueue by pid \d+ \(uid \d+\), value -1",
    );
    assert!(queue.finish().status.success());
}

#[test]
fn sig_queue_reports_even_when_started_with_its_signals_blocked() {
    // A parent's mask passes through exec: blocked, neither signal would
    // reach signal-hook's handler, and nothing would ever be reported.
    let mut command = std::process::Command::new("env");
    command.args(["--block-signal=USR1,RTMIN", bin!("sig-queue")]);
    command.args(["--count", "2"]);
    let mut queue = Listing::spawn(&mut command, std::process::Stdio::piped());
    queue.next_line();
    queue.signal(nix::sys::signal::Signal::SIGUSR1);
    queue.expect(r"SIGUSR1: sent with kill by pid \d+ \(uid \d+\)");
    // SAFETY: `kill` with a valid pid and signal number.
    let sent =
        unsafe { nix::libc::kill(queue.pid().as_raw(), nix::libc::SIGRTMIN()) };
    assert_eq!(sent, 0, "kill");
    queue.expect(r"SIGRTMIN: sent with kill by pid \d+ \(uid \d+\)");
    let out = queue.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

/// nix 0.32's `SigevNotify::SigevSignal` takes nix's `Signal` enum, which
/// has no real-time signals; a `SigEvent` made from a `libc::sigevent`
/// carries any number, and nix's `Timer` takes it (Chapter 11 says why
/// Listing 11-2 calls libc all the same). Never armed, the timer sends
/// nothing to the test process.
#[test]
fn nix_timer_takes_a_real_time_signal_only_through_a_libc_sigevent() {
    use nix::libc;
    use nix::sys::signal::{SigEvent, Signal};
    use nix::sys::timer::Timer;
    use nix::time::ClockId;

    assert!(Signal::try_from(libc::SIGRTMIN()).is_err());
    // SAFETY: a `sigevent` of zeros is valid; the fields a signal needs
    // are set below.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_SIGNAL;
    sev.sigev_signo = libc::SIGRTMIN();
    let event = SigEvent::from(&sev);
    assert_eq!(event.sigevent().sigev_signo, libc::SIGRTMIN());
    let timer = Timer::new(ClockId::CLOCK_MONOTONIC, event);
    assert!(timer.is_ok(), "{timer:?}");
}

/// signal-hook installs its handler before it records what the handler is
/// to do (Chapter 6): a SIGUSR1 in between would be lost, unless the
/// listing blocks it while it registers. strace sends one just as the
/// handler goes in; the listing must report it.
#[test]
fn sig_queue_takes_a_sigusr1_that_comes_while_it_registers() {
    if !have("strace") {
        return;
    }
    let ready = r"Waiting for SIGUSR1 and SIGRTMIN as pid \d+";
    let bin = bin!("sig-queue");
    let args = ["--count", "1"];
    let mut queue = signal_as_its_handler_goes_in(
        bin,
        &args,
        nix::sys::signal::Signal::SIGUSR1,
        ready,
    );
    queue.expect(ready);
    // Lost, the SIGUSR1 would leave it waiting until PATIENCE runs out.
    // strace's injected signal comes with si_code SI_KERNEL.
    queue.expect("SIGUSR1: sent by the kernel");
    let out = queue.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
}

/// Interrupted, the `sigtimedwait` that waits for timer A must wait on
/// only for what is left of its five seconds: strace makes that call (the
/// second; the first finds nothing left pending by the parent) fail with
/// EINTR once, holding the process stopped for 300 ms first, and the next
/// call must ask for at least 300 ms less. Without the delay the retry
/// follows within microseconds, and a listing that takes the whole timeout
/// again (its deadline computed inside the loop) asks for a few nanoseconds
/// more or less at random. strace's delay timer runs on CLOCK_MONOTONIC, the
/// clock of `Instant`, so a busy machine can only make the difference larger.
#[test]
fn sig_timers_waits_only_for_what_is_left_after_eintr() {
    if !have("strace") {
        return;
    }
    let args = [
        "-q",
        "-e",
        "trace=rt_sigtimedwait",
        "-e",
        "inject=rt_sigtimedwait:error=EINTR:delay_enter=300000:when=2",
        bin!("sig-timers"),
    ];
    let out = Listing::start("strace", &args).finish();
    assert!(out.status.success(), "{}", out.stderr);
    // strace writes its trace on stderr: the timeout of each call.
    let re = regex::Regex::new(
        r"^rt_sigtimedwait\(.*\{tv_sec=(\d+), tv_nsec=(\d+)\}",
    )
    .unwrap();
    let timeouts: Vec<std::time::Duration> = out
        .stderr
        .lines()
        .filter_map(|line| re.captures(line))
        .map(|c| {
            std::time::Duration::new(
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
            )
        })
        .collect();
    assert!(timeouts.len() >= 3, "{}", out.stderr);
    let (first, retry) = (timeouts[1], timeouts[2]);
    assert!(first > std::time::Duration::from_secs(4), "{}", out.stderr);
    assert!(
        first.saturating_sub(retry) >= std::time::Duration::from_millis(300),
        "not 300 ms less after 300 ms stopped; the whole timeout again \
         after EINTR?\n{}",
        out.stderr
    );
}

/// The one line Listing 11-2 prints when `timer_create` fails must say that
/// it was `timer_create`, for which timer, and, for EAGAIN, that the user's
/// RLIMIT_SIGPENDING probably has no slot left: "Resource temporarily
/// unavailable" alone sends the reader looking for a busy resource.
/// "Probably": `timer_create` also fails with EAGAIN when the kernel cannot
/// allocate the timer (timer_create(2); `alloc_posix_timer` in
/// kernel/time/posix-timers.c returns no timer for either cause). Under a limit of
/// zero the first timer fails for any user, root included (Linux 6.18
/// as here).
#[test]
fn sig_timers_says_timer_create_found_no_pending_signal_slot() {
    if !have("prlimit") {
        return;
    }
    let out = run("prlimit", &["--sigpending=0", bin!("sig-timers")]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(
        out.stderr,
        "sig-timers: timer_create for a timer on SIGRTMIN: Resource \
         temporarily unavailable (os error 11); probably no slot left for its \
         signal under RLIMIT_SIGPENDING (ulimit -i)\n"
    );
}

/// With one to three descriptors to spare (`ulimit -n 4` to `6`),
/// signal-hook cannot make the socket pair of the iterator's count (each
/// of its two signals keeps one): `sig-count` must say that it could not
/// watch for signals, not only "Too many open files".
#[test]
fn sig_count_names_the_step_when_descriptors_run_out() {
    use crate::support::assert_names_the_step_when_descriptors_run_out;
    let command = || std::process::Command::new(bin!("sig-count"));
    let lines = assert_names_the_step_when_descriptors_run_out(command, 4..=6);
    let said = "sig-count: cannot watch for signals: Too many open files \
                (os error 24)";
    assert_eq!(lines, [said; 3]);
}
