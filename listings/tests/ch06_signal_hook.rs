//! Chapter 6, signal-hook, properly: Listings 6-1 (`sig-hook-flag`), 6-2
//! (`sig-hook-thread`), 6-3 (`sig-hook-default`) and 6-4 (`sig-coalesce`).

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{
    Listing, assert_rejects, assert_session_matches_book, cargo_run,
    pending_signals, shell, state_of, wait_until,
};

/// Waits until `signal` is no longer pending for the listing: delivered.
fn delivered(listing: &Listing, signal: Signal) {
    let pid = listing.pid();
    wait_until(&format!("{signal} to be delivered"), || {
        !pending_signals(pid).contains(&(signal as i32))
    });
}

#[test]
fn sig_hook_flag_second_signal_exits_at_once_with_status_1() {
    let args = ["--cleanup-secs", "30"];
    let mut hook = Listing::start(bin!("sig-hook-flag"), &args);
    hook.expect(r"Working as pid \d+; stop me with Ctrl-C or kill \d+");
    hook.signal(Signal::SIGINT);
    hook.expect("Cleaning up for 30 s; a second signal stops me now");
    let second = Instant::now();
    hook.signal(Signal::SIGINT);
    let out = hook.finish();
    assert!(second.elapsed() < Duration::from_secs(10), "not at once");
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    assert_eq!(out.stdout.len(), 2, "no clean exit: {:?}", out.stdout);
}

#[test]
fn sig_hook_flag_without_force_ignores_a_second_signal() {
    let args = ["--no-force", "--cleanup-secs", "2"];
    let mut hook = Listing::start(bin!("sig-hook-flag"), &args);
    hook.next_line();
    hook.signal(Signal::SIGINT);
    hook.expect("Cleaning up for 2 s; signals are ignored meanwhile");
    let cleaning = Instant::now();
    hook.signal(Signal::SIGINT);
    delivered(&hook, Signal::SIGINT);
    hook.signal(Signal::SIGTERM);
    delivered(&hook, Signal::SIGTERM);
    // Both arrived, and changed nothing: the clean-up runs its course.
    hook.expect("Clean exit");
    assert!(cleaning.elapsed() >= Duration::from_secs(1));
    let out = hook.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn sig_hook_flag_sessions_match_the_book() {
    for (args, file) in [
        (&["--no-force"][..], "06-01-sig-hook-flag-no-force"),
        (&[][..], "06-01-sig-hook-flag"),
    ] {
        let mut hook = Listing::start(bin!("sig-hook-flag"), args);
        hook.next_line();
        let pid = hook.pid();
        let mut terminal2 = Vec::new();
        let command = format!("kill -INT {pid}");
        terminal2.push((command.clone(), shell(&command)));
        hook.next_line(); // Cleaning up ...
        terminal2.push((command.clone(), shell(&command)));
        delivered(&hook, Signal::SIGINT);
        let out = hook.finish();
        let code = out.status.code().expect("an exit, not a signal");
        assert_eq!(code, if args.is_empty() { 1 } else { 0 });
        assert_session_matches_book(
            &format!("ch06-signal-hook/{file}.out"),
            &[
                (cargo_run("sig-hook-flag", args), &out.stdout),
                ("echo $?".into(), &[code.to_string()]),
            ],
        );
        let session: Vec<_> =
            terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
        assert_session_matches_book(
            &format!("ch06-signal-hook/{file}-terminal-2.out"),
            &session,
        );
    }
}

#[test]
fn sig_hook_thread_closes_its_iterator_and_exits() {
    let mut thread = Listing::start(bin!("sig-hook-thread"), &[]);
    thread.expect(r"Working as pid \d+; try: kill -HUP \d+");
    let pid = thread.pid();
    let mut terminal2 = Vec::new();
    let mut type_in = |command: String| {
        terminal2.push((command.clone(), shell(&command)));
    };
    type_in(format!("kill -HUP {pid}"));
    thread.expect("Signal thread: SIGHUP, would reload");
    type_in(format!("kill -USR1 {pid}"));
    thread.expect(r"Signal thread: SIGUSR1, ticks so far: \d+ \(measured\)");
    type_in(format!("kill -TERM {pid}"));
    thread.expect("Main thread: stopping on signal 15");
    thread.expect("Main thread: closing the iterator, joining its thread");
    thread.expect("Signal thread: iterator closed, leaving");
    thread.expect("Clean exit");
    let out = thread.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_session_matches_book(
        "ch06-signal-hook/06-02-sig-hook-thread.out",
        &[(cargo_run("sig-hook-thread", &[]), &out.stdout)],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch06-signal-hook/06-02-terminal-2.out",
        &session,
    );
}

#[test]
fn sig_hook_thread_without_close_never_ends_and_only_sigkill_stops_it() {
    let mut thread = Listing::start(bin!("sig-hook-thread"), &["--no-close"]);
    thread.next_line();
    thread.signal(Signal::SIGTERM);
    thread.expect("Main thread: stopping on signal 15");
    thread.expect("Main thread: joining the signal thread");
    // The join waits for a loop that nothing ends.
    assert!(thread.no_line_within(Duration::from_secs(2)));
    assert_eq!(state_of(thread.pid()), Some('S'));
    // Another SIGTERM is caught by the iterator, as the first was.
    thread.signal(Signal::SIGTERM);
    delivered(&thread, Signal::SIGTERM);
    assert!(thread.no_line_within(Duration::from_millis(500)));
    thread.signal(Signal::SIGKILL);
    let out = thread.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
}

#[test]
fn sig_hook_default_cleans_up_and_dies_of_the_signal() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut hook = Listing::start(bin!("sig-hook-default"), &[]);
        hook.next_line();
        hook.signal(signal);
        hook.expect(&format!("Got {signal}: cleaning up"));
        hook.expect(&format!("Cleaned up; dying of {signal}"));
        let out = hook.finish();
        assert_eq!(out.status.signal(), Some(signal as i32), "{}", out.stderr);
    }
}

#[test]
fn sig_hook_default_sessions_match_the_book() {
    let (mut session, mut terminal2) = (Vec::new(), Vec::new());
    for args in [&[][..], &["--exit-code"][..]] {
        let mut hook = Listing::start(bin!("sig-hook-default"), args);
        hook.expect(r"Working as pid \d+; stop me with Ctrl-C or kill \d+");
        let kill = format!("kill {}", hook.pid());
        terminal2.push((kill.clone(), shell(&kill)));
        let out = hook.finish();
        let expected = if args.is_empty() { None } else { Some(143) };
        assert_eq!(out.status.code(), expected, "{:?}", out.status);
        assert_eq!(
            out.status.signal(),
            args.is_empty().then_some(Signal::SIGTERM as i32)
        );
        session.push((cargo_run("sig-hook-default", args), out.stdout));
        let status = dollar_question(out.status);
        session.push(("echo $?".to_string(), vec![status]));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch06-signal-hook/06-03-sig-hook-default.out",
        &session,
    );
    let terminal2: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch06-signal-hook/06-03-terminal-2.out",
        &terminal2,
    );
}

/// What a shell's `$?` shows: the status, or 128 + the signal.
fn dollar_question(status: std::process::ExitStatus) -> String {
    status
        .code()
        .or(status.signal().map(|n| 128 + n))
        .map_or("?".into(), |n| n.to_string())
}

#[test]
fn sig_coalesce_reports_again_a_signal_delivered_during_its_report() {
    // A SIGUSR1 that comes while the loop body works on the first one's
    // report is not merged into it: it is reported once more.
    let mut counter =
        Listing::start(bin!("sig-coalesce"), &["--busy-ms", "1000"]);
    counter.next_line();
    let pid = counter.pid();
    counter.signal(Signal::SIGUSR1);
    // The report's work is a sleep: wait until the loop is in it.
    wait_until("the loop to work on the report", || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .is_ok_and(|w| w.contains("nanosleep"))
    });
    counter.signal(Signal::SIGUSR1);
    delivered(&counter, Signal::SIGUSR1);
    counter.signal(Signal::SIGTERM);
    counter
        .expect("SIGUSR1: handler ran 2 times, iterator reported it 2 times");
    assert!(counter.finish().status.success());
}

#[test]
fn sig_coalesce_counts_one_for_a_hundred_sent_while_it_is_stopped() {
    let mut counter = Listing::start(bin!("sig-coalesce"), &[]);
    counter
        .expect(r"Counting SIGUSR1 as pid \d+; kill -TERM \d+ for the totals");
    let pid = counter.pid();
    let mut terminal2 = Vec::new();
    let mut type_in = |command: String| {
        terminal2.push((command.clone(), shell(&command)));
    };
    type_in(format!("kill -STOP {pid}"));
    wait_until("the counter to stop", || state_of(pid) == Some('T'));
    type_in(format!("for i in $(seq 100); do kill -USR1 {pid}; done"));
    type_in(format!("grep ShdPnd /proc/{pid}/status"));
    assert_eq!(pending_signals(pid), [Signal::SIGUSR1 as i32]);
    type_in(format!("kill -CONT {pid}"));
    type_in(format!("kill -TERM {pid}"));
    counter
        .expect("SIGUSR1: handler ran 1 times, iterator reported it 1 times");
    let out = counter.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_session_matches_book(
        "ch06-signal-hook/06-04-sig-coalesce.out",
        &[(cargo_run("sig-coalesce", &[]), &out.stdout)],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch06-signal-hook/06-04-terminal-2.out",
        &session,
    );
}

/// Sends 1000 SIGUSR1 as fast as bash can while the counter runs, busy
/// `busy_ms` per report, and returns (handler runs, iterator reports).
fn count_while_running(busy_ms: &str) -> (u64, u64) {
    let mut counter =
        Listing::start(bin!("sig-coalesce"), &["--busy-ms", busy_ms]);
    counter.next_line();
    let pid = counter.pid();
    shell(&format!("for i in $(seq 1000); do kill -USR1 {pid}; done"));
    // Let the last of them be delivered before asking for the totals.
    counter.signal(Signal::SIGTERM);
    let totals = counter.expect(
        r"SIGUSR1: handler ran (\d+) times, iterator reported it (\d+) times",
    );
    let out = counter.finish();
    assert!(out.status.success(), "{}", out.stderr);
    (totals[1].parse().unwrap(), totals[2].parse().unwrap())
}

#[test]
fn sig_coalesce_sees_at_least_one_of_many_sent_while_it_runs() {
    // What is guaranteed: at least one, at most what was sent, and the
    // iterator never reports more than the handler saw. The counts
    // themselves depend on timing; the chapter gives them from a run.
    for busy_ms in ["0", "10"] {
        let (handled, reported) = count_while_running(busy_ms);
        eprintln!(
            "sig-coalesce --busy-ms {busy_ms}: sent 1000, handler ran \
             {handled}, iterator reported {reported}"
        );
        assert!((1..=1000).contains(&handled), "{handled}");
        assert!((1..=handled).contains(&reported), "{reported}");
    }
}

#[test]
fn signal_hook_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(
        bin!("sig-hook-flag"),
        &["--cleanup-secs", "-1"],
        r#"argument "-1""#,
    );
    assert_rejects(bin!("sig-hook-thread"), &["--count"], "missing argument");
    assert_rejects(
        bin!("sig-hook-default"),
        &["now"],
        r#"unexpected argument "now""#,
    );
    assert_rejects(
        bin!("sig-coalesce"),
        &["--busy-ms", "x"],
        r#"argument "x""#,
    );
}
