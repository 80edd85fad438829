//! Chapter 28, Signals in async code: Listings 28-1 (`async-ctrl-c`) and
//! 28-2 (`async-signals`), sent real signals while they run on tokio.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{
    Finished, Listing, as_pid_1, assert_died_of, assert_exited_with,
    assert_rejects, assert_says_why_on_bad_worker_threads,
    assert_says_why_when_threads_are_refused, assert_session_matches_book,
    assert_starts_or_says_why, cargo_run, dollar_question, pending_signals,
    shell, signal_in, state_of, wait_until,
};

/// Starts `bin` and waits for its readiness line, which ends with its pid.
fn start(bin: &str, args: &[&str], ready: &str) -> Listing {
    let mut listing = Listing::start(bin, args);
    let pid = listing.expect(ready);
    assert_eq!(pid[1], listing.pid().to_string());
    listing
}

const CTRL_C_READY: &str = r"Working as pid (\d+); stop me with Ctrl-C";
const SIGNALS_READY: &str =
    r"Waiting for signals as pid (\d+): HUP reloads, TERM or INT stops";

/// The signals a process catches (`SigCgt` in /proc/PID/status), as
/// numbers.
fn caught_signals(pid: Pid) -> Vec<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    (1..=64).filter(|n| mask & (1 << (n - 1)) != 0).collect()
}

/// The book's two terminals of one session must name one process: the pid
/// that Terminal 1 prints is the one Terminal 2 signals. The masks of
/// `assert_session_matches_book` hide pids in each file alone, so a pair
/// recorded in different runs would pass them.
fn assert_terminals_name_one_pid(terminal1: &str, terminal2: &str) {
    let read = |file: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let printed = read(terminal1);
    let printed = regex::Regex::new(r"as pid (\d+)")
        .unwrap()
        .captures(&printed)
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| panic!("{terminal1}: no pid"));
    let used = regex::Regex::new(r"(?:kill -\w+ |/proc/)(\d+)").unwrap();
    let terminal = read(terminal2);
    let pids: Vec<&str> = used
        .captures_iter(&terminal)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(!pids.is_empty(), "{terminal2}: no pid");
    assert!(
        pids.iter().all(|pid| *pid == printed),
        "{terminal1} prints pid {printed}, {terminal2} uses {pids:?}"
    );
}

/// Waits out the second after the stop in which Listing 28-2 takes a stop
/// signal as part of the same stop (`SAME_STOP`), measured from before its
/// "Got …: cleaning up" line, which the caller has read: a signal sent
/// after this is a second signal. A wait on the clock, since the rule is
/// one.
fn past_the_same_stop() {
    std::thread::sleep(Duration::from_millis(1200));
}

// ---------------------------------------------------------------------------
// Listing 28-1: Ctrl-C only

/// `SigCgt` in /proc/PID/status, one bit per caught signal, as Linux 6.18
/// here shows it.
#[test]
fn async_ctrl_c_ignores_a_second_ctrl_c_because_tokio_keeps_its_handler() {
    let mut listing =
        start(bin!("async-ctrl-c"), &["--cleanup-secs", "3"], CTRL_C_READY);
    let pid = listing.pid();
    let mut terminal2 = Vec::new();
    let int = format!("kill -INT {pid}");
    terminal2.push((int.clone(), shell(&int)));
    listing.expect("Got Ctrl-C: cleaning up for 3 s");
    // The stream is gone; the handler is not. The second Ctrl-C is caught
    // and dropped: no line, no death.
    terminal2.push((int.clone(), shell(&int)));
    let grep = format!("grep SigCgt /proc/{pid}/status");
    terminal2.push((grep.clone(), shell(&grep)));
    assert!(caught_signals(pid).contains(&(Signal::SIGINT as i32)));
    listing.expect("Clean exit");
    let out = listing.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    assert_session_matches_book(
        "ch28-async-signals/28-01-async-ctrl-c.out",
        &[(cargo_run("async-ctrl-c", &[]), &out.stdout)],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch28-async-signals/28-01-terminal-2.out",
        &session,
    );
    assert_terminals_name_one_pid(
        "ch28-async-signals/28-01-async-ctrl-c.out",
        "ch28-async-signals/28-01-terminal-2.out",
    );
}

#[test]
fn async_ctrl_c_dies_of_sigterm_without_cleaning_up() {
    let listing = start(bin!("async-ctrl-c"), &[], CTRL_C_READY);
    listing.signal(Signal::SIGTERM);
    let out = listing.finish();
    assert_died_of(&out, Signal::SIGTERM);
    assert_eq!(out.stdout.len(), 1, "no clean-up: {:?}", out.stdout);
}

/// A parent may leave SIGINT blocked (`env --block-signal`, coreutils 9.1
/// here, does so and execs), and `exec` keeps the mask (Linux 6.18 here, as
/// execve(2) promises), which every thread
/// of tokio's runtime inherits. Listing 28-1 does not unblock it, one more
/// of its flaws: Ctrl-C stays pending, tokio's handler never runs, and the
/// program runs on. Listing 28-2 unblocks its signals before the runtime.
#[test]
fn async_ctrl_c_never_hears_a_ctrl_c_its_parent_had_blocked() {
    let mut command = std::process::Command::new("env");
    command.arg("--block-signal=INT").arg(bin!("async-ctrl-c"));
    let mut listing =
        Listing::spawn(&mut command, std::process::Stdio::piped());
    listing.expect(CTRL_C_READY);
    let pid = listing.pid();
    listing.signal(Signal::SIGINT);
    wait_until("SIGINT to be pending", || {
        pending_signals(pid).contains(&(Signal::SIGINT as i32))
    });
    assert!(
        listing.no_line_within(Duration::from_secs(1)),
        "no clean-up"
    );
    assert!(matches!(state_of(pid), Some('S')), "still running");
    listing.signal(Signal::SIGKILL);
    let out = listing.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
}

/// Linux 6.18 here: the init of a PID namespace is sent no signal whose
/// action is the default, except SIGKILL and SIGSTOP from outside the
/// namespace (`sig_task_ignored` in kernel/signal.c).
#[test]
fn async_ctrl_c_as_pid_1_of_a_container_does_not_even_die_of_sigterm() {
    let Some((mut init, pid)) = as_pid_1(
        bin!("async-ctrl-c"),
        &[],
        "Working as pid 1; stop me with Ctrl-C",
    ) else {
        return;
    };
    // What `docker stop` sends first. Pid 1 of a namespace gets only the
    // signals it has a handler for: SIGTERM is dropped, not pending.
    kill(pid, Signal::SIGTERM).unwrap();
    assert!(init.no_line_within(Duration::from_secs(1)));
    assert_eq!(pending_signals(pid), Vec::<i32>::new());
    assert!(matches!(state_of(pid), Some('S')), "still running");
    // What `docker stop` sends ten seconds later.
    kill(pid, Signal::SIGKILL).unwrap();
    wait_until("SIGKILL to end it", || {
        matches!(state_of(pid), None | Some('Z'))
    });
}

// ---------------------------------------------------------------------------
// Listing 28-2: SIGHUP, SIGTERM and SIGINT, streams made once

#[test]
fn async_signals_reloads_on_hup_and_dies_of_a_second_term() {
    let mut listing = start(bin!("async-signals"), &[], SIGNALS_READY);
    let pid = listing.pid();
    let mut terminal2 = Vec::new();
    let hup = format!("kill -HUP {pid}");
    terminal2.push((hup.clone(), shell(&hup)));
    listing.expect("Got SIGHUP: reloading, which takes 1 s");
    listing.expect("Reloaded");
    let term = format!("kill -TERM {pid}");
    terminal2.push((term.clone(), shell(&term)));
    listing.expect(
        "Got SIGTERM: cleaning up for 3 s; a second signal stops me now",
    );
    // A second or more after the first, so not the same stop; heard at
    // once: the clean-up would end with "Clean exit" instead.
    past_the_same_stop();
    terminal2.push((term.clone(), shell(&term)));
    listing.expect("Got SIGTERM again: exiting now");
    let out = listing.finish();
    assert_died_of(&out, Signal::SIGTERM);
    // Then `echo $?`: 143, 128 + SIGTERM, since it died of the signal.
    let status = dollar_question(out.status);
    assert_session_matches_book(
        "ch28-async-signals/28-02-async-signals.out",
        &[
            (cargo_run("async-signals", &[]), &out.stdout),
            ("echo $?".to_string(), &[status][..]),
        ],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch28-async-signals/28-02-terminal-2.out",
        &session,
    );
    assert_terminals_name_one_pid(
        "ch28-async-signals/28-02-async-signals.out",
        "ch28-async-signals/28-02-terminal-2.out",
    );
}

#[test]
fn async_signals_takes_two_terms_sent_together_for_one() {
    // Both SIGTERMs sent while the reload runs, before anything listens
    // again: they make one. (Pasted at once, the three lines may not even
    // reload: the test after this one.)
    let mut listing = start(bin!("async-signals"), &[], SIGNALS_READY);
    listing.signal(Signal::SIGHUP);
    listing.expect("Got SIGHUP: reloading, which takes 1 s");
    listing.signal(Signal::SIGTERM);
    listing.signal(Signal::SIGTERM);
    listing.expect("Reloaded");
    listing.expect(
        "Got SIGTERM: cleaning up for 3 s; a second signal stops me now",
    );
    listing.expect("Clean exit");
    let out = listing.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    // Without the reload, the loop may hear the first before the second
    // comes, and the clean-up hear the second: within a second, the same
    // stop. Before that rule, bash's two `kill`s ended by SIGTERM in most
    // runs, and a few milliseconds between them (the pause of the second
    // `kill` here, not a wait for anything) in every run.
    for _ in 0..3 {
        let mut listing = start(bin!("async-signals"), &[], SIGNALS_READY);
        listing.signal(Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(20));
        listing.signal(Signal::SIGTERM);
        listing.expect(
            "Got SIGTERM: cleaning up for 3 s; a second signal stops me now",
        );
        let mut next = listing.next_line();
        if next.starts_with("Got SIGTERM within 1 s of SIGTERM") {
            next = listing.next_line();
        }
        assert_eq!(next, "Clean exit");
        let out = listing.finish();
        assert!(out.status.success(), "{:?} {:?}", out.status, out.stdout);
    }
}

/// Terminal 2's three lines pasted at once: nothing waits between them.
/// The three signals may all reach tokio's handler before the loop wakes,
/// and `select!`, which picks among ready branches at random, may then
/// take SIGTERM before SIGHUP: no reload (1 to 3 runs in 10 here). The
/// session still ends by its clean-up with status 0, the two SIGTERMs one
/// stop, whether they merge or the clean-up hears the second within its
/// first second.
#[test]
fn async_signals_pasted_hup_and_two_terms_stop_once_with_or_without_a_reload() {
    let reload = [
        "Got SIGHUP: reloading, which takes 1 s".to_string(),
        "Reloaded".to_string(),
    ];
    let stop = "Got SIGTERM: cleaning up for 1 s; a second signal stops me now";
    let same =
        "Got SIGTERM within 1 s of SIGTERM: the same stop, cleaning up on";
    for _ in 0..6 {
        let listing = start(
            bin!("async-signals"),
            &["--cleanup-secs", "1"],
            SIGNALS_READY,
        );
        listing.signal(Signal::SIGHUP);
        listing.signal(Signal::SIGTERM);
        listing.signal(Signal::SIGTERM);
        let out = listing.finish();
        assert!(out.status.success(), "{:?} {:?}", out.status, out.stdout);
        let mut lines = &out.stdout[1..];
        lines = lines.strip_prefix(&reload[..]).unwrap_or(lines);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(
            lines == [stop, "Clean exit"]
                || lines == [stop, same, "Clean exit"],
            "{:?}",
            out.stdout
        );
    }
}

/// A Ctrl-C reaches the terminal's whole foreground group, and a wrapper in
/// it, a script or a Python program that runs the listing (`p.wait()`, and
/// `p.terminate()` on KeyboardInterrupt), passes it on a moment later as
/// SIGTERM. That is the same stop, not a second signal: the clean-up goes
/// on, with and without `--hook`, whether the wrapper's signal comes before
/// the loop has taken the first (both pending at once) or during the
/// clean-up. Taken for a second signal, it killed the listing, status -15
/// under the wrapper, in both modes.
#[test]
fn async_signals_takes_a_ctrl_c_and_its_wrappers_sigterm_as_one_stop() {
    for hook in [false, true] {
        for wait_for_the_clean_up in [false, true] {
            let args: &[&str] = if hook { &["--hook"] } else { &[] };
            let mut listing = start(bin!("async-signals"), args, SIGNALS_READY);
            let pid = listing.pid();
            nix::sys::signal::killpg(pid, Signal::SIGINT).expect("the group");
            if wait_for_the_clean_up {
                listing.expect(
                    "Got SIGINT: cleaning up for 3 s; a second signal stops me now",
                );
            }
            listing.signal(Signal::SIGTERM);
            if !wait_for_the_clean_up {
                // Both may be there when the loop wakes: either is the stop.
                listing.expect(
                    r"Got SIG(INT|TERM): cleaning up for 3 s; a second signal stops me now",
                );
            }
            listing.expect(
                r"Got SIG(TERM|INT) within 1 s of SIG(INT|TERM): the same stop, cleaning up on",
            );
            listing.expect("Clean exit");
            let out = listing.finish();
            let case = format!("hook: {hook}; waited: {wait_for_the_clean_up}");
            assert!(
                out.status.success(),
                "{case}: {:?} {:?}",
                out.status,
                out.stdout
            );
            let second =
                out.stdout.iter().any(|line| line.contains("exiting now"));
            assert!(!second, "{case}: {:#?}", out.stdout);
        }
    }
}

/// The same Ctrl-C and wrapper's SIGTERM, sent while a reload runs: both
/// wait in their streams, the loop takes one when the reload ends, and the
/// clean-up hears the other at once, seconds after the two came. Each is
/// judged by when it came, so they are one stop, with and without
/// `--hook`. Judged by when the clean-up heard it, the second killed the
/// listing, in both modes.
#[test]
fn async_signals_takes_a_ctrl_c_and_its_wrappers_sigterm_during_a_reload_as_one_stop()
 {
    for hook in [false, true] {
        let mut args = vec!["--reload-secs", "3", "--cleanup-secs", "1"];
        if hook {
            args.push("--hook");
        }
        let mut listing = start(bin!("async-signals"), &args, SIGNALS_READY);
        let pid = listing.pid();
        listing.signal(Signal::SIGHUP);
        listing.expect("Got SIGHUP: reloading, which takes 3 s");
        nix::sys::signal::killpg(pid, Signal::SIGINT).expect("the group");
        listing.signal(Signal::SIGTERM);
        listing.expect("Reloaded");
        listing.expect(
            r"Got SIG(INT|TERM): cleaning up for 1 s; a second signal stops me now",
        );
        listing.expect(
            r"Got SIG(TERM|INT) within 1 s of SIG(INT|TERM): the same stop, cleaning up on",
        );
        listing.expect("Clean exit");
        let out = listing.finish();
        assert!(
            out.status.success(),
            "hook: {hook}: {:?} {:?}",
            out.status,
            out.stdout
        );
    }
}

/// Linux 6.18 here: an init's own raise of a signal at its default action
/// is dropped (`sig_task_ignored` in kernel/signal.c).
#[test]
fn async_signals_as_pid_1_exits_143_on_a_second_term() {
    // The kernel drops a PID 1's own raise of SIGTERM: `die_of` that ended
    // with emulate_default_handler fell through to abort(), dropped too,
    // and died of SIGSEGV (status 139).
    let Some((mut init, pid)) = as_pid_1(
        bin!("async-signals"),
        &[],
        "Waiting for signals as pid 1: HUP reloads, TERM or INT stops",
    ) else {
        return;
    };
    kill(pid, Signal::SIGTERM).unwrap();
    init.expect(
        "Got SIGTERM: cleaning up for 3 s; a second signal stops me now",
    );
    past_the_same_stop();
    kill(pid, Signal::SIGTERM).unwrap();
    init.expect("Got SIGTERM again: exiting now");
    let out = init.finish();
    assert_exited_with(&out, 143);
}

#[test]
fn async_signals_exits_0_after_a_clean_up_that_nothing_interrupts() {
    let mut listing = start(
        bin!("async-signals"),
        &["--cleanup-secs", "1"],
        SIGNALS_READY,
    );
    listing.signal(Signal::SIGINT);
    listing.expect(
        "Got SIGINT: cleaning up for 1 s; a second signal stops me now",
    );
    listing.expect("Clean exit");
    let out = listing.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
}

#[test]
fn signal_streams_made_in_the_loop_lose_a_term_sent_during_a_reload() {
    let args = ["--in-loop", "--reload-secs", "3", "--cleanup-secs", "1"];
    let mut listing = start(bin!("async-signals"), &args, SIGNALS_READY);
    let pid = listing.pid();
    let mut terminal2 = Vec::new();
    let hup = format!("kill -HUP {pid}");
    terminal2.push((hup.clone(), shell(&hup)));
    listing.expect("Got SIGHUP: reloading, which takes 3 s");
    // The reload has three seconds to go.
    let term = format!("kill -TERM {pid}");
    terminal2.push((term.clone(), shell(&term)));
    listing.expect("Reloaded");
    // Caught by tokio, heard by the old stream, which the loop dropped.
    assert!(listing.no_line_within(Duration::from_secs(2)));
    assert!(matches!(state_of(pid), Some('S' | 'R')), "still running");
    // The next one finds a stream waiting, and works.
    terminal2.push((term.clone(), shell(&term)));
    listing.expect(
        "Got SIGTERM: cleaning up for 1 s; a second signal stops me now",
    );
    listing.expect("Clean exit");
    let out = listing.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    assert_session_matches_book(
        "ch28-async-signals/28-02-in-loop.out",
        &[(cargo_run("async-signals", &args), &out.stdout)],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch28-async-signals/28-02-in-loop-terminal-2.out",
        &session,
    );
    assert_terminals_name_one_pid(
        "ch28-async-signals/28-02-in-loop.out",
        "ch28-async-signals/28-02-in-loop-terminal-2.out",
    );
}

#[test]
fn signal_streams_made_once_keep_a_term_sent_during_a_reload() {
    let args = ["--reload-secs", "3", "--cleanup-secs", "1"];
    let mut listing = start(bin!("async-signals"), &args, SIGNALS_READY);
    listing.signal(Signal::SIGHUP);
    listing.expect("Got SIGHUP: reloading, which takes 3 s");
    listing.signal(Signal::SIGTERM);
    listing.expect("Reloaded");
    listing.expect(
        "Got SIGTERM: cleaning up for 1 s; a second signal stops me now",
    );
    listing.expect("Clean exit");
    assert!(listing.finish().status.success());
}

/// A stop signal that comes while a reload runs waits in its stream, and
/// the clean-up starts only when the reload ends. A second signal, sent
/// at once after the "cleaning up" line but seconds after the first, is
/// a second signal all the same: the window is timed from when the first
/// came, with and without `--hook`, and both end alike.
#[test]
fn async_signals_times_the_same_stop_from_the_first_signal_not_the_clean_up() {
    for hook in [false, true] {
        let mut args = vec!["--reload-secs", "3", "--cleanup-secs", "3"];
        if hook {
            args.push("--hook");
        }
        let mut listing = start(bin!("async-signals"), &args, SIGNALS_READY);
        listing.signal(Signal::SIGHUP);
        listing.expect("Got SIGHUP: reloading, which takes 3 s");
        let first = Instant::now();
        listing.signal(Signal::SIGTERM);
        listing.expect("Reloaded");
        listing.expect(
            "Got SIGTERM: cleaning up for 3 s; a second signal stops me now",
        );
        // The reload took its seconds: more than SAME_STOP since the first.
        while first.elapsed() < Duration::from_millis(1200) {
            past_the_same_stop();
        }
        listing.signal(Signal::SIGTERM);
        let out = listing.finish();
        assert_eq!(
            out.status.signal(),
            Some(Signal::SIGTERM as i32),
            "hook: {hook}; {:?} {:?}",
            out.status,
            out.stdout
        );
        assert!(
            !out.stdout.iter().any(|l| l.contains("the same stop")),
            "hook: {hook}; {:?}",
            out.stdout
        );
    }
}

/// A `SIGTERM` and, well over a second later, a `SIGINT`, both while a
/// reload runs: the loop takes one when the reload ends, and the clean-up
/// hears the other at once. They came seconds apart, so the second is a
/// second signal, whichever one the loop took, and ends the process.
/// Timed from the later of the two, the earlier one "came before the
/// stop's start" and was taken for the same stop: the listing printed
/// "within 1 s" and cleaned up to its end. With `--hook` the handler ends
/// it during the reload, by the same rule: a test near the end of this
/// file.
#[test]
fn async_signals_takes_a_term_and_an_int_seconds_apart_during_a_reload_for_two()
{
    two_signals_seconds_apart_during_a_reload(
        Signal::SIGINT,
        r"Got SIG(TERM|INT): cleaning up for 3 s; a second signal stops me now",
        r"Got (SIGINT after SIGTERM|SIGTERM after SIGINT): exiting now",
        &[Signal::SIGTERM, Signal::SIGINT],
        &[false],
    );
}

/// The same with two `SIGTERM`s, without `--hook`: the stream merges the
/// two, and only the handler's note tells that a second came. With
/// `--hook` the handler ends it during the reload: a test near the end of
/// this file.
#[test]
fn async_signals_takes_two_terms_seconds_apart_during_a_reload_for_two() {
    two_signals_seconds_apart_during_a_reload(
        Signal::SIGTERM,
        "Got SIGTERM: cleaning up for 3 s; a second signal stops me now",
        "Got SIGTERM again: exiting now",
        &[Signal::SIGTERM],
        &[false],
    );
}

/// Sends a `SIGTERM` while a six-second reload runs, then `second` more
/// than `SAME_STOP` later, the reload still running; with `--hook` as
/// `hooks` says, expects the clean-up line `cleaning_up`, then `exiting`, no
/// "the same stop", and an end by one of `ends_by`.
#[track_caller]
fn two_signals_seconds_apart_during_a_reload(
    second: Signal,
    cleaning_up: &str,
    exiting: &str,
    ends_by: &[Signal],
    hooks: &[bool],
) {
    for &hook in hooks {
        let mut args = vec!["--reload-secs", "6", "--cleanup-secs", "3"];
        if hook {
            args.push("--hook");
        }
        let mut listing = start(bin!("async-signals"), &args, SIGNALS_READY);
        listing.signal(Signal::SIGHUP);
        listing.expect("Got SIGHUP: reloading, which takes 6 s");
        let first = Instant::now();
        listing.signal(Signal::SIGTERM);
        // Past SAME_STOP after the first, with the reload still running:
        // it prints nothing until it ends.
        while first.elapsed() < Duration::from_millis(1500) {
            assert!(
                listing.no_line_within(Duration::from_millis(300)),
                "hook: {hook}: the reload ended too soon to test"
            );
        }
        listing.signal(second);
        listing.expect("Reloaded");
        listing.expect(cleaning_up);
        listing.expect(exiting);
        let out = listing.finish();
        assert!(
            !out.stdout.iter().any(|l| l.contains("the same stop")),
            "hook: {hook}; {:?}",
            out.stdout
        );
        assert!(
            ends_by
                .iter()
                .any(|&signal| out.status.signal() == Some(signal as i32)),
            "hook: {hook}; {:?} {:?}",
            out.status,
            out.stdout
        );
    }
}

/// The book's `--stuck` session. The second `SIGTERM`, sent a second and
/// a half after the "cleaning up" line, is caught by tokio's handler, but
/// the task that would act on it is asleep in `std::thread::sleep`: it
/// prints nothing, runs its clean-up to the end, `Clean exit`, and exits
/// 0, as if the signal had never come.
#[test]
fn a_blocked_task_cannot_hear_the_second_signal() {
    let args = ["--stuck", "--cleanup-secs", "3"];
    let mut listing = start(bin!("async-signals"), &args, SIGNALS_READY);
    let term = format!("kill -TERM {}", listing.pid());
    let mut terminal2 = vec![(term.clone(), shell(&term))];
    listing.expect(
        "Got SIGTERM: cleaning up for 3 s; a second signal stops me now",
    );
    // The gap the session asks the reader for, past SAME_STOP: the second
    // is a second signal, and, heard, would end the process at once.
    assert!(
        listing.no_line_within(A_SECOND_AND_A_HALF),
        "the clean-up ended too soon to test: {:?}",
        listing.finish().stdout
    );
    let second = Instant::now();
    terminal2.push((term.clone(), shell(&term)));
    listing.expect("Clean exit");
    // At the clean-up's end, not at once.
    assert!(second.elapsed() >= Duration::from_millis(500));
    let out = listing.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    assert_two_terminals_match_book(
        "ch28-async-signals/28-02-stuck",
        cargo_run("async-signals", &args),
        &out,
        &terminal2,
    );
}

/// The book's `--stuck --hook` session, the same two `kill -TERM`s: the
/// second ends the process in signal-hook's handler, at once, though the
/// task still sleeps in its clean-up, with eight seconds of it to go.
#[test]
fn signal_hooks_action_ends_it_even_while_the_task_is_blocked() {
    let args = ["--stuck", "--hook", "--cleanup-secs", "10"];
    let mut listing = start(bin!("async-signals"), &args, SIGNALS_READY);
    let term = format!("kill -TERM {}", listing.pid());
    let mut terminal2 = vec![(term.clone(), shell(&term))];
    listing.expect(
        "Got SIGTERM: cleaning up for 10 s; a second signal stops me now",
    );
    assert!(
        listing.no_line_within(A_SECOND_AND_A_HALF),
        "a line during the clean-up: {:?}",
        listing.finish().stdout
    );
    let second = Instant::now();
    terminal2.push((term.clone(), shell(&term)));
    let out = listing.finish();
    assert_died_of(&out, Signal::SIGTERM);
    // Stuck, the listing would have run its clean-up for eight seconds
    // more, and ended with `Clean exit`.
    assert!(
        second.elapsed() < Duration::from_secs(4),
        "not at once: {:?}",
        second.elapsed()
    );
    assert!(!out.stdout.iter().any(|l| l == "Clean exit"));
    assert_two_terminals_match_book(
        "ch28-async-signals/28-02-stuck-hook",
        cargo_run("async-signals", &args),
        &out,
        &terminal2,
    );
}

/// How far apart the book's `--stuck` sessions send their two `SIGTERM`s,
/// counted from the "cleaning up" line, which the first brings: past
/// `SAME_STOP`, with room for a reader's hands, and within the shortest
/// clean-up, three seconds.
const A_SECOND_AND_A_HALF: Duration = Duration::from_millis(1500);

/// Compares a session of two terminals with the book's `NAME.out` (what
/// `command` printed, then `echo $?` and its status: `cargo run` execs
/// the listing, so `$?` is the listing's) and `NAME-terminal-2.out` (the
/// commands of `terminal2` and what each printed), and checks that both
/// name one pid.
#[track_caller]
fn assert_two_terminals_match_book(
    name: &str,
    command: String,
    out: &Finished,
    terminal2: &[(String, Vec<String>)],
) {
    let status = dollar_question(out.status);
    let terminal1 = format!("{name}.out");
    let terminal2_file = format!("{name}-terminal-2.out");
    assert_session_matches_book(
        &terminal1,
        &[
            (command, &out.stdout[..]),
            ("echo $?".to_string(), &[status][..]),
        ],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(&terminal2_file, &session);
    assert_terminals_name_one_pid(&terminal1, &terminal2_file);
}

/// Linux 6.18 here, as the test above.
#[test]
fn signal_hooks_action_as_pid_1_exits_143_even_while_the_task_is_blocked() {
    // signal-hook's register_conditional_default calls
    // emulate_default_handler, whose raise the kernel drops for a PID 1:
    // it went on to abort() and the process died of SIGSEGV (status 139).
    let args = ["--stuck", "--hook", "--cleanup-secs", "20"];
    let ready = "Waiting for signals as pid 1: HUP reloads, TERM or INT stops";
    let Some((mut init, pid)) = as_pid_1(bin!("async-signals"), &args, ready)
    else {
        return;
    };
    kill(pid, Signal::SIGTERM).unwrap();
    init.expect(
        "Got SIGTERM: cleaning up for 20 s; a second signal stops me now",
    );
    past_the_same_stop();
    let second = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    let out = init.finish();
    assert_eq!(out.status.code(), Some(143), "{:?}", out.status);
    assert!(second.elapsed() < Duration::from_secs(20), "not stuck");
}

#[test]
fn async_signal_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(
        bin!("async-ctrl-c"),
        &["--cleanup-secs", "soon"],
        r#"argument "soon""#,
    );
    assert_rejects(bin!("async-ctrl-c"), &["x"], "unexpected argument");
    assert_rejects(
        bin!("async-signals"),
        &["--reload-secs", "-1"],
        r#"argument "-1""#,
    );
    assert_rejects(
        bin!("async-signals"),
        &["--cleanup-secs", "99999999999999999999"],
        "number too large",
    );
}

#[test]
fn async_signal_listings_start_or_say_why_when_descriptors_are_short() {
    // tokio's runtime needs six descriptors to start, and its signal
    // driver panics when it cannot make its socket pair: at four to eight
    // descriptors, each listing must say so in one line instead.
    for bin in [bin!("async-ctrl-c"), bin!("async-signals")] {
        let command = || {
            let mut command = std::process::Command::new(bin);
            command.args(["--cleanup-secs", "0"]);
            command
        };
        let started = assert_starts_or_says_why(command, 4..=12, |listing| {
            listing.signal(Signal::SIGINT);
        });
        assert_eq!(started, [9, 10, 11, 12], "{bin}");
    }
}

#[test]
fn async_signal_listings_say_why_when_tokio_worker_threads_is_bad() {
    // tokio's multi-threaded runtime panics in `build` on a worker count
    // it cannot read from TOKIO_WORKER_THREADS: each listing must read it
    // first and say so in one line instead.
    for bin in [bin!("async-ctrl-c"), bin!("async-signals")] {
        assert_says_why_on_bad_worker_threads(|| {
            std::process::Command::new(bin)
        });
    }
}

#[test]
fn multi_threaded_listings_say_why_when_the_system_refuses_a_thread() {
    // tokio's multi-threaded runtime panics in `build` when the system
    // refuses a worker thread, and with one worker started already it
    // waited for it forever: each listing must say why in one line and
    // exit. This chapter's listings, and those of Chapters 29 and 30.
    // Two workers whatever the machine: tokio starts one per CPU, and on
    // one CPU (or under `taskset -c 0`) the main thread and its one
    // worker fit under a limit of two, and nothing is refused.
    for (bin, arg) in [
        (bin!("async-ctrl-c"), None),
        (bin!("async-signals"), None),
        (bin!("async-daemon"), Some("127.0.0.1:0")),
        (bin!("async-shutdown-tools"), None),
        (bin!("async-server"), Some("127.0.0.1:0")),
    ] {
        assert_says_why_when_threads_are_refused(|| {
            let mut command = std::process::Command::new(bin);
            command.args(arg).env("TOKIO_WORKER_THREADS", "2");
            command
        });
    }
}

/// A parent may leave SIGINT, SIGTERM and SIGHUP blocked (`env
/// --block-signal`, coreutils 9.1 here, does so and execs), and `exec`
/// keeps the mask (Linux 6.18 here), which every thread of tokio's
/// runtime inherits. The listing keeps them blocked on purpose while the
/// runtime starts, so that its workers never take them, and unblocks them
/// on the main thread alone once its streams exist: that unblock must undo
/// a parent's block too. It used to run on after each of them, its
/// signals pending.
#[test]
fn async_signals_hears_signals_its_parent_had_blocked() {
    for stop in [Signal::SIGTERM, Signal::SIGINT] {
        let mut command = std::process::Command::new("env");
        command
            .arg("--block-signal=INT,TERM,HUP")
            .arg(bin!("async-signals"))
            .args(["--reload-secs", "0", "--cleanup-secs", "0"]);
        let mut listing =
            Listing::spawn(&mut command, std::process::Stdio::piped());
        listing.expect(SIGNALS_READY);
        listing.signal(Signal::SIGHUP);
        listing.expect("Got SIGHUP: reloading, which takes 0 s");
        listing.expect("Reloaded");
        listing.signal(stop);
        listing.expect(&format!(
            "Got {stop}: cleaning up for 0 s; a second signal stops me now"
        ));
        listing.expect("Clean exit");
        let out = listing.finish();
        assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    }
}

/// Why the chapter restores a default only where nothing listens again:
/// tokio installs its handler for a signal once per process, and does not
/// look again, so a `Signal` made after a hand-made `SIG_DFL` never hears
/// its signal, and the next one takes the default action. The test runs
/// itself again, as a child, to let that child die of it (tokio 1.54.1).
#[test]
fn a_signal_stream_made_after_a_hand_made_default_never_hears_it() {
    const IN_CHILD: &str = "CH28_LISTEN_AGAIN_AFTER_SIG_DFL";
    if std::env::var_os(IN_CHILD).is_some() {
        listen_again_after_a_hand_made_default();
        return;
    }
    let name = "ch28_async_signals::\
                a_signal_stream_made_after_a_hand_made_default_never_hears_it";
    let mut command =
        std::process::Command::new(std::env::current_exe().expect("this"));
    command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1");
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert_died_of(&out, Signal::SIGUSR1);
    assert!(
        out.stderr.contains("heard the first SIGUSR1"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("heard the second"), "{}", out.stderr);
}

/// The child of the test above: hears SIGUSR1 once, restores its default
/// as Listing 32-1's `put_back` does, listens again, and sends it
/// once more. Each wait is bounded, so that the child ends either way.
fn listen_again_after_a_hand_made_default() {
    use nix::sys::signal::{SigHandler, signal};
    use tokio::signal::unix::{SignalKind, signal as listen};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let me = nix::unistd::getpid();
    runtime.block_on(async {
        let limit = Duration::from_secs(5);
        let mut usr1 = listen(SignalKind::user_defined1()).expect("listen");
        kill(me, Signal::SIGUSR1).expect("send SIGUSR1");
        tokio::time::timeout(limit, usr1.recv())
            .await
            .expect("the first");
        eprintln!("heard the first SIGUSR1");
        // SAFETY: the default action runs no code of ours.
        unsafe { signal(Signal::SIGUSR1, SigHandler::SigDfl) }.expect("dfl");
        drop(usr1);
        let mut again = listen(SignalKind::user_defined1()).expect("again");
        kill(me, Signal::SIGUSR1).expect("send SIGUSR1 again");
        if tokio::time::timeout(limit, again.recv()).await.is_ok() {
            eprintln!("heard the second SIGUSR1");
        }
    });
}

/// The threads of `pid` (from /proc/PID/task) and, of those, the ones that
/// block `signal` (`SigBlk` in their status), by name and id.
fn threads_blocking(pid: Pid, signal: Signal) -> (usize, Vec<String>) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let (mut threads, mut blocking) = (0, Vec::new());
    for task in tasks {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status"))
                .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_default()
                .to_string()
        };
        threads += 1;
        let mask = u64::from_str_radix(&field("SigBlk:"), 16).unwrap_or(0);
        if mask & (1 << (signal as i32 - 1)) != 0 {
            blocking.push(format!("{} ({})", field("Name:"), field("Pid:")));
        }
    }
    (threads, blocking)
}

/// A parent may leave SIGPIPE blocked (`env --block-signal`, coreutils 9.1
/// here), and every thread inherits the mask of the thread that starts it
/// (Linux 6.18 here, as pthread_create(3) says): both listings unblock it
/// in `main`, before the runtime starts its workers, so that no program a
/// task starts inherits it blocked (they keep it ignored themselves).
/// Unblocked inside `block_on`, as before, it stayed blocked on every
/// worker.
#[test]
fn async_signal_listings_unblock_sigpipe_on_every_thread() {
    let listings = [
        (bin!("async-ctrl-c"), CTRL_C_READY, Signal::SIGINT),
        (bin!("async-signals"), SIGNALS_READY, Signal::SIGTERM),
    ];
    for (bin, ready, stop) in listings {
        let mut command = std::process::Command::new("env");
        command
            .arg("--block-signal=PIPE")
            .arg(bin)
            .args(["--cleanup-secs", "0"]);
        let mut listing =
            Listing::spawn(&mut command, std::process::Stdio::piped());
        listing.expect(ready);
        // A worker may not have run yet: glibc's pthread_create starts a
        // thread with every signal blocked (glibc 2.36 here), and the
        // thread restores the mask it inherited, and takes its name, only
        // once it runs. A worker that kept SIGPIPE blocked keeps it so, and
        // this wait fails.
        wait_until(&format!("{bin}: no thread to block SIGPIPE"), || {
            threads_blocking(listing.pid(), Signal::SIGPIPE)
                .1
                .is_empty()
        });
        let (threads, _) = threads_blocking(listing.pid(), Signal::SIGPIPE);
        assert!(threads > 1, "{bin}: the runtime's workers are running");
        listing.signal(stop);
        let out = listing.finish();
        assert!(
            out.status.success(),
            "{bin}: {:?} {}",
            out.status,
            out.stderr
        );
    }
}

/// Starts `bin` with its stdout a pipe whose reader reads the readiness
/// line and goes away, as `| head -n 1` does; returns once the read end
/// is closed in this process. A child that another test thread forks in
/// that moment holds a copy until its `exec` (the end is close-on-exec),
/// and a write then may still succeed: the test is weaker, never wrong.
fn start_with_a_reader_that_leaves(
    bin: &str,
    args: &[&str],
    ready: &str,
) -> Listing {
    use std::io::BufRead;
    let (reader, writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut command = std::process::Command::new(bin);
    command.args(args);
    let listing = Listing::spawn(&mut command, writer.into());
    drop(command);
    let (tx, rx) = std::sync::mpsc::channel();
    let reading = std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(std::fs::File::from(reader));
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // The read end closes here, with `reader`.
    });
    // The listing dies with the test, and its end of the pipe with it.
    let line = rx.recv_timeout(crate::support::PATIENCE).expect("a line");
    reading.join().unwrap();
    let pid = regex::Regex::new(ready)
        .unwrap()
        .captures(line.trim_end())
        .unwrap_or_else(|| panic!("{bin}: not ready: {line:?}"));
    assert_eq!(pid[1], listing.pid().to_string());
    listing
}

/// Both listings keep SIGPIPE ignored: a reader of their output that has
/// gone (`| head -n 1`, a closed terminal window's pipe) must not end
/// them before their clean-up. They did once give it its default action
/// back, like Part I's filters, and died of it at the first line of the
/// stop ("Got SIGTERM: cleaning up…"), at once and with no clean-up. The
/// stop runs its whole clean-up (one second here) and exits 0, with
/// nothing on stderr: the lines nobody reads are not an error.
#[test]
fn async_signal_listings_clean_up_though_their_reader_has_gone() {
    let listings = [
        (bin!("async-ctrl-c"), CTRL_C_READY, Signal::SIGINT),
        (bin!("async-signals"), SIGNALS_READY, Signal::SIGTERM),
    ];
    for (bin, ready, stop) in listings {
        let listing = start_with_a_reader_that_leaves(
            bin,
            &["--cleanup-secs", "1"],
            ready,
        );
        let sent = Instant::now();
        listing.signal(stop);
        let out = listing.finish();
        let took = sent.elapsed();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{bin}: {:?} {}",
            out.status,
            out.stderr
        );
        assert!(
            took >= Duration::from_secs(1),
            "{bin}: exited {took:?} after {stop}, before its clean-up"
        );
    }
}

/// The Summary gives the stop signals the two steps that Listing 28-2
/// takes: blocked before the runtime is built, so that its threads inherit
/// the mask and a signal that comes while tokio registers waits, pending;
/// unblocked on the main thread once the streams exist. It used to say to
/// unblock the signals you rely on before building the runtime, the
/// opposite of the first step, with no word of the second.
#[test]
fn chapter_28_summary_blocks_the_stop_signals_first_and_unblocks_them_last() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let read =
        |path: &str| std::fs::read_to_string(format!("{root}/{path}")).unwrap();
    let listing = read("listings/ch28-async-signals/28-02-async-signals.rs");
    let at = |text: &str| {
        listing
            .find(text)
            .unwrap_or_else(|| panic!("28-2 lacks {text:?}"))
    };
    assert!(at("block_stop_signals())") < at("runtime())"));
    assert!(at("Signals::new()?;") < at("    unblock_stop_signals()?;"));

    let chapter = read("src/ch28-async-signals.md");
    let summary = chapter.split("\n## Summary\n").nth(1).expect("a Summary");
    let bullets: Vec<String> = summary
        .split("\n- ")
        .skip(1)
        .map(|b| b.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let steps = [
        "Block the stop signals",
        "before you build the runtime",
        "unblock them",
        "once their streams exist",
    ];
    let in_order = |bullet: &String| {
        let places: Option<Vec<usize>> =
            steps.iter().map(|step| bullet.find(step)).collect();
        places.is_some_and(|p| p.windows(2).all(|w| w[0] < w[1]))
    };
    assert_eq!(
        bullets.iter().filter(|b| in_order(b)).count(),
        1,
        "no bullet says, in order, {steps:?}: {bullets:#?}"
    );
    // No other bullet may tell the reader to unblock them early.
    let stop = ["stop signals", "SIGINT", "SIGTERM", "SIGHUP", "rely on"];
    for bullet in bullets.iter().filter(|b| b.starts_with("Unblock")) {
        for name in stop {
            assert!(!bullet.contains(name), "{name:?} in {bullet:?}");
        }
    }
}

/// With `--hook`, a second `SIGTERM` a second and a half after the first,
/// both during a six-second reload, ends the process in the handler, while
/// the task still reloads: `note` judges a repeat of one signal by the
/// first arrival it keeps, without waiting for the task to take the stop.
/// It once did nothing until the reload was over, and then printed
/// "Reloaded", the clean-up line and "Got SIGTERM again".
#[test]
fn signal_hooks_action_ends_it_on_a_second_term_while_a_reload_runs() {
    hook_ends_it_on_a_second_signal_while_a_reload_runs(Signal::SIGTERM);
}

/// With `--hook`, a `SIGTERM` and, a second and a half later, a `SIGINT`
/// (a service manager's stop, then the user's Ctrl-C), both during a
/// six-second reload, end the process in the handler too: `note` judges a
/// stop signal by the earliest first arrival it keeps of either. It once
/// compared a signal with its own kept arrival alone, let the `SIGINT`
/// through to its stream, and died only once the reload was over, after
/// "Reloaded"; a reload that never ended would never have let it die.
#[test]
fn signal_hooks_action_ends_it_on_a_term_then_an_int_while_a_reload_runs() {
    hook_ends_it_on_a_second_signal_while_a_reload_runs(Signal::SIGINT);
}

/// Runs 28-2 with `--hook` and a six-second reload, sends `SIGTERM`, then
/// `second` a second and a half later, and wants a death by `second`
/// before "Reloaded".
#[track_caller]
fn hook_ends_it_on_a_second_signal_while_a_reload_runs(second: Signal) {
    let args = ["--hook", "--reload-secs", "6", "--cleanup-secs", "3"];
    let mut listing = start(bin!("async-signals"), &args, SIGNALS_READY);
    listing.signal(Signal::SIGHUP);
    listing.expect("Got SIGHUP: reloading, which takes 6 s");
    let first = Instant::now();
    listing.signal(Signal::SIGTERM);
    // Past SAME_STOP after the first, with the reload still running.
    while first.elapsed() < Duration::from_millis(1500) {
        assert!(
            listing.no_line_within(Duration::from_millis(300)),
            "the reload ended too soon to test"
        );
    }
    listing.signal(second);
    let out = listing.finish();
    assert_eq!(
        out.status.signal(),
        Some(second as i32),
        "{:?} {:?}",
        out.status,
        out.stdout
    );
    assert!(
        !out.stdout.iter().any(|l| l == "Reloaded"),
        "it waited for the reload: {:?}",
        out.stdout
    );
}

/// What the chapter warns of after `block_stop_signals`: the workers of a
/// runtime built with the stop signals blocked keep them blocked, and a
/// child spawned from a task there inherits the block, since std's
/// `Command`, which tokio's uses, leaves the mask alone (Linux 6.18 and
/// Rust's std here). Spawned from a task with a `pre_exec` that empties
/// the mask, or from `block_on`'s thread once it has unblocked them, the
/// child has none of them blocked. The test blocks the three on its own
/// thread, as 28-2's `main` does, builds a runtime of two workers, and
/// reads each child's `SigBlk` once it runs `sleep`.
#[test]
fn a_child_spawned_from_a_worker_inherits_the_blocked_stop_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    use tokio::process::{Child, Command};
    let stops =
        SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]);
    stops.thread_block().expect("block the stop signals");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let sleep = || {
        let mut command = Command::new("sleep");
        command.arg("30").kill_on_drop(true);
        command
    };
    let children: Vec<(&str, Child)> = runtime.block_on(async {
        let plain = tokio::spawn(async move { sleep().spawn() });
        let emptied = tokio::spawn(async move {
            let mut command = sleep();
            // SAFETY: pthread_sigmask is async-signal-safe and allocates
            // nothing.
            unsafe {
                command.pre_exec(|| {
                    let none = SigSet::empty();
                    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&none), None)
                        .map_err(std::io::Error::from)
                })
            };
            command.spawn()
        });
        let plain = plain.await.expect("task").expect("spawn");
        let emptied = emptied.await.expect("task").expect("spawn");
        // block_on's own future runs on this thread, which unblocks them
        // as 28-2's `run` does once its streams exist.
        stops.thread_unblock().expect("unblock");
        let main = sleep().spawn().expect("spawn");
        vec![
            ("from a worker", plain),
            ("from a worker, mask emptied in pre_exec", emptied),
            ("from block_on's thread, unblocked", main),
        ]
    });
    let mut blocked = Vec::new();
    for (how, child) in &children {
        let pid = Pid::from_raw(child.id().expect("running") as i32);
        // Read the mask of `sleep`, not of the child before its exec.
        wait_until(&format!("{how}: sleep runs"), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == "sleep")
        });
        let held: Vec<Signal> = stops
            .iter()
            .filter(|&signal| signal_in(pid, "SigBlk:", signal))
            .collect();
        blocked.push((*how, held));
    }
    runtime.block_on(async {
        for (_, mut child) in children {
            let _ = child.kill().await;
        }
    });
    let all = vec![Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM];
    assert_eq!(
        blocked,
        [
            ("from a worker", all),
            ("from a worker, mask emptied in pre_exec", vec![]),
            ("from block_on's thread, unblocked", vec![]),
        ]
    );
}

/// What the chapter says of the blocking pool: only the workers, started
/// in `build`, inherit the mask of the thread that builds the runtime. A
/// thread of the blocking pool is started later, by the thread whose
/// `spawn_blocking` first needs it, and takes that thread's mask (tokio
/// 1.54.1, `runtime/blocking/pool.rs`). The test blocks the three stop
/// signals, as 28-2's `main` does, builds a runtime of two workers, has a
/// worker start a blocking thread and keeps that one busy, so that the
/// next `spawn_blocking`, from `block_on`'s thread once it has unblocked
/// them, must start a thread of its own. Each reads its own mask.
#[test]
fn a_blocking_thread_takes_the_mask_of_the_thread_that_started_it() {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let stops =
        SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]);
    let blocked_here = move || {
        let mut mask = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut mask))
            .expect("read the mask");
        let held: Vec<Signal> = stops
            .iter()
            .filter(|&signal| mask.contains(signal))
            .collect();
        (std::thread::current().id(), held)
    };
    stops.thread_block().expect("block the stop signals");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let (from_worker, from_block_on) = runtime.block_on(async move {
        let (release, busy) = std::sync::mpsc::channel::<()>();
        let (started, first) = tokio::sync::oneshot::channel();
        let worker = tokio::spawn(async move {
            tokio::task::spawn_blocking(move || {
                let _ = started.send(blocked_here());
                // Busy until the second has read its mask.
                let _ = busy.recv_timeout(Duration::from_secs(30));
            })
            .await
        });
        let from_worker = first.await.expect("the first blocking thread");
        stops.thread_unblock().expect("unblock");
        let from_block_on = tokio::task::spawn_blocking(blocked_here)
            .await
            .expect("the second blocking thread");
        release.send(()).expect("release the first");
        worker.await.expect("task").expect("blocking task");
        (from_worker, from_block_on)
    });
    assert_ne!(from_worker.0, from_block_on.0, "one thread, reused");
    let all = vec![Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM];
    assert_eq!(
        [
            ("from a worker", from_worker.1),
            ("from block_on", from_block_on.1)
        ],
        [("from a worker", all), ("from block_on", vec![])]
    );
}

// ---------------------------------------------------------------------------
// The aside "A reaper inside a tokio program"

/// The look of a reaper, `waitid(P_ALL, …, WEXITED | WNOHANG | WNOWAIT)`,
/// reports the first zombie in the order the kernel keeps the children:
/// the order they were started (`copy_process` adds each at the tail of
/// its parent's list, `do_wait_thread` walks it from the head), not the
/// order they exited. Linux 6.18 here. A Python parent starts an older
/// child, which waits on a pipe, then a younger, which exits at once; it
/// waits for each to be a zombie with a `waitid` of its pid and
/// `WNOWAIT`, which leaves it one, never with a sleep. The look reports
/// the younger while it is the only zombie, and the older, three times
/// over, once both are: the older hides the younger, which exited first,
/// until it is reaped by its pid, as tokio reaps its children; then the
/// look reports the younger. A process of its own, for a look at every
/// child of the test program would find the zombies of other tests.
#[test]
fn a_wnowait_look_reports_the_older_zombie_though_the_younger_exited_first() {
    if !crate::support::have("python3") {
        return;
    }
    let script = "import os\n\
         LOOK = os.WEXITED | os.WNOHANG | os.WNOWAIT\n\
         def look():\n    \
             found = os.waitid(os.P_ALL, 0, LOOK)\n    \
             names = {older: 'older', younger: 'younger'}\n    \
             return names.get(found.si_pid, str(found.si_pid))\n\
         def zombie(pid):\n    \
             os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)\n\
         r, w = os.pipe()\n\
         older = os.fork()\n\
         if older == 0:\n    os.close(w)\n    os.read(r, 1)\n    os._exit(0)\n\
         os.close(r)\n\
         younger = os.fork()\n\
         if younger == 0:\n    os._exit(0)\n\
         zombie(younger)\n\
         print('alone:', look())\n\
         os.close(w)\n\
         zombie(older)\n\
         print('both:', look(), look(), look())\n\
         os.waitpid(older, 0)\n\
         print('older reaped:', look())\n\
         os.waitpid(younger, 0)\n";
    let out = crate::support::run("python3", &["-c", script]);
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(
        out.stdout,
        [
            "alone: younger",
            "both: older older older",
            "older reaped: younger",
        ]
    );
}
