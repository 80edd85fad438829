//! Chapter 2, Signals: Listings 2-1 (`alarm`) and 2-2 (`catch-signal`).

use std::time::{Duration, Instant};

use crate::support::{Listing, assert_matches_book, assert_rejects, run};
use chrono::NaiveDateTime;
use nix::sys::signal::Signal;

const TIME: &str =
    r"([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})";

fn parse_asctime(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|err| panic!("{text:?} is not asctime: {err}"))
}

#[test]
fn alarm_rings_five_seconds_after_it_is_set() {
    // Lines reach the test late on a loaded machine, never early, so the
    // time since the start is a safe lower bound: alarm k cannot have rung
    // before 5k seconds. The time between the two lines of a round is an
    // upper bound only; it allows for a process woken late.
    let started = Instant::now();
    let mut alarm = Listing::start(bin!("alarm"), &["--count", "2"]);
    for round in 1..=2 {
        let set = alarm.expect(&format!("Setting at {TIME}"));
        let set_seen = Instant::now();
        let got = alarm.expect(&format!("Got alarm 14 at {TIME}"));
        let since_start = started.elapsed();
        assert!(
            since_start >= Duration::from_secs(5 * round),
            "alarm {round} rang after only {since_start:?}"
        );
        let waited = set_seen.elapsed();
        assert!(waited < Duration::from_secs(8), "waited {waited:?}");
        // The program's own clock agrees: the alarm is set after the first
        // line is printed, so whole seconds differ by at least 5.
        let printed = parse_asctime(&got[1]) - parse_asctime(&set[1]);
        assert!((5..=7).contains(&printed.num_seconds()), "{printed}");
    }
    let out = alarm.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 4, "nothing printed after the last alarm");
}

#[test]
fn alarm_output_matches_the_book() {
    let args = ["--count", "2"];
    let out = run(bin!("alarm"), &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch02-signals/02-01-alarm.out",
        "alarm",
        &args,
        &out.stdout,
    );
}

#[test]
fn alarm_bad_count_output_matches_the_book() {
    let args = ["--count", "five"];
    let out = run(bin!("alarm"), &args);
    assert_eq!(out.status.code(), Some(1));
    let stderr: Vec<_> = out.stderr.lines().map(String::from).collect();
    assert_matches_book(
        "ch02-signals/02-01-alarm-bad-count.out",
        "alarm",
        &args,
        &stderr,
    );
}

#[test]
fn alarm_rejects_bad_arguments_in_one_line() {
    assert_rejects(bin!("alarm"), &["--count", "five"], "whole number");
    assert_rejects(bin!("alarm"), &["--count"], "needs a number");
    assert_rejects(bin!("alarm"), &["5"], "unexpected argument '5'");
}

/// Starts `catch-signal` and waits until it says its handler is in place.
fn start_catcher(args: &[&str]) -> (Listing, Vec<String>) {
    let mut catcher = Listing::start(bin!("catch-signal"), args);
    let ready = catcher.expect(
        r"Waiting for (SIG\w+) \((\d+)\) as pid (\d+); try: kill -(\w+) (\d+)",
    );
    let pid = catcher.pid().to_string();
    assert_eq!((&ready[3], &ready[5]), (&pid, &pid), "it names its own pid");
    (catcher, ready)
}

#[test]
fn catch_signal_reports_each_signal_sent_with_kill() {
    let (mut catcher, ready) = start_catcher(&["USR1", "--count", "3"]);
    assert_eq!(
        (&*ready[1], &*ready[2], &*ready[4]),
        ("SIGUSR1", "10", "USR1")
    );
    for _ in 0..3 {
        // One at a time: two of the same signal sent before the handler
        // runs are merged into one by the kernel.
        catcher.signal(Signal::SIGUSR1);
        catcher.expect(&format!("Got signal 10 at {TIME}"));
    }
    let out = catcher.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn catch_signal_takes_numbers_and_names() {
    for (arg, signal) in [
        ("12", Signal::SIGUSR2),
        ("sighup", Signal::SIGHUP),
        ("TERM", Signal::SIGTERM),
    ] {
        let (mut catcher, ready) = start_catcher(&[arg, "--count", "1"]);
        assert_eq!(ready[1], signal.as_str());
        catcher.signal(signal);
        catcher.expect(&format!("Got signal {} at {TIME}", signal as i32));
        assert!(catcher.finish().status.success());
    }
}

#[test]
fn catch_signal_is_killed_by_a_signal_it_does_not_catch() {
    let (catcher, _) = start_catcher(&["USR1"]);
    catcher.signal(Signal::SIGUSR2);
    let out = catcher.finish();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(Signal::SIGUSR2 as i32));
}

#[test]
fn catch_signal_output_matches_the_book() {
    let args = ["USR1", "--count", "2"];
    let (mut catcher, _) = start_catcher(&args);
    for _ in 0..2 {
        catcher.signal(Signal::SIGUSR1);
        catcher.next_line();
    }
    let out = catcher.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch02-signals/02-02-catch-signal.out",
        "catch-signal",
        &args,
        &out.stdout,
    );
}

#[test]
fn catch_signal_refuses_what_cannot_be_caught() {
    assert_rejects(bin!("catch-signal"), &["KILL"], "SIGKILL cannot be caught");
    assert_rejects(bin!("catch-signal"), &["19"], "SIGSTOP cannot be caught");
    assert_rejects(bin!("catch-signal"), &["SEGV"], "SIGSEGV cannot be caught");
    assert_rejects(bin!("catch-signal"), &["99"], "unknown signal '99'");
    assert_rejects(bin!("catch-signal"), &["NOPE"], "unknown signal 'NOPE'");
    assert_rejects(bin!("catch-signal"), &[], "which signal?");
}
