//! Chapter 6, signal-hook, properly: Listings 6-1 (`sig-hook-flag`), 6-2
//! (`sig-hook-thread`), 6-3 (`sig-hook-default`) and 6-4 (`sig-coalesce`).

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{
    Listing, assert_died_of, assert_rejects, assert_session_matches_book,
    cargo_run, dollar_question, have, like_a_listing, pending_signals, run,
    shell, signal_after_iterator_closes,
    signal_after_iterator_closes_thread_refused, signal_as_its_handler_goes_in,
    start_with_pending, state_of, still_blocked, wait_until,
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

/// A Ctrl-C reaches the terminal's whole foreground group, and a wrapper
/// in that group (a script that passes the Ctrl-C on as SIGTERM) sends
/// its own signal a moment later: to `register_conditional_shutdown`,
/// that is a second signal, and the clean-up is cut short. Chapter 10's
/// daemon counts a second signal only a second after the first.
#[test]
fn sig_hook_flag_takes_a_wrappers_sigterm_after_a_ctrl_c_for_a_second_signal() {
    let args = ["--cleanup-secs", "30"];
    let mut hook = Listing::start(bin!("sig-hook-flag"), &args);
    hook.expect(r"Working as pid \d+; stop me with Ctrl-C or kill \d+");
    nix::sys::signal::killpg(hook.pid(), Signal::SIGINT).expect("the group");
    hook.expect("Cleaning up for 30 s; a second signal stops me now");
    hook.signal(Signal::SIGTERM);
    let out = hook.finish();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    assert_eq!(out.stdout.len(), 2, "no clean exit: {:?}", out.stdout);
}

#[test]
fn sig_hook_flag_stopped_by_its_count_exits_at_once_on_a_signal() {
    // No signal asked it to stop: `--count` did. It says that a signal
    // now stops it at once, and one does.
    let args = ["--count", "1", "--cleanup-secs", "30"];
    let mut hook = Listing::start(bin!("sig-hook-flag"), &args);
    hook.next_line();
    hook.expect("Cleaning up for 30 s; a second signal stops me now");
    let signalled = Instant::now();
    hook.signal(Signal::SIGINT);
    let out = hook.finish();
    assert!(signalled.elapsed() < Duration::from_secs(10), "not at once");
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    assert_eq!(out.stdout.len(), 2, "no clean exit: {:?}", out.stdout);
}

#[test]
fn sig_hook_flag_without_force_a_second_signal_changes_nothing() {
    let args = ["--no-force", "--cleanup-secs", "2"];
    let mut hook = Listing::start(bin!("sig-hook-flag"), &args);
    hook.next_line();
    hook.signal(Signal::SIGINT);
    hook.expect(
        "Cleaning up for 2 s; a second signal changes nothing meanwhile",
    );
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
fn sig_hook_thread_survives_a_signal_once_its_signal_thread_has_gone() {
    // signal-hook's handlers stay registered for as long as a `Handle`
    // lives (the main thread keeps one), and wake the iterator with a
    // `send` on a socket pair. Had the signal thread dropped its iterator,
    // closing the pair's read end, a signal would make that `send` fail
    // with EPIPE and raise SIGPIPE, which the listing has at its default
    // action. strace holds the main thread's last write ("Clean exit", its
    // third) for three seconds; the signal comes then, with the signal
    // thread gone.
    if !have("strace") {
        return;
    }
    let mut command = std::process::Command::new("strace");
    command.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=write",
        "-e",
        "inject=write:delay_enter=3000000:when=3",
        bin!("sig-hook-thread"),
        "--count",
        "1",
    ]);
    let mut thread = Listing::spawn(&mut command, std::process::Stdio::piped());
    let pid = thread.expect(r"Working as pid (\d+); try: kill -HUP \d+")[1]
        .parse()
        .expect("a pid");
    thread.expect("Main thread: closing the iterator, joining its thread");
    thread.expect("Signal thread: iterator closed, leaving");
    let tasks = format!("/proc/{pid}/task");
    wait_until("the signal thread to end", || {
        std::fs::read_dir(&tasks).map_or(0, Iterator::count) == 1
    });
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, Signal::SIGUSR1).expect("kill");
    thread.expect("Clean exit");
    let out = thread.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
}

#[test]
fn sig_hook_thread_refused_its_thread_survives_a_signal_as_it_ends() {
    // The thread refused, its closure goes, and with it anything it owns:
    // had that been the iterator (as when the thread was the one to leak
    // it), its socket would close while the main thread's `Handle` keeps
    // signal-hook's action registered, and a signal then would make that
    // action's write raise SIGPIPE: death by SIGPIPE, not the one-line
    // error. strace refuses the thread and holds that close, if it comes.
    if !have("strace") {
        return;
    }
    let out = signal_after_iterator_closes_thread_refused(
        bin!("sig-hook-thread"),
        &[],
        Signal::SIGUSR1,
        |_| {},
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?}: {}",
        out.status,
        out.stderr
    );
    assert!(
        out.stderr
            .starts_with("sig-hook-thread: cannot start a thread: "),
        "{}",
        out.stderr
    );
}

#[test]
fn sig_hook_thread_without_close_hangs_until_a_signal_it_did_not_register() {
    let mut thread = Listing::start(bin!("sig-hook-thread"), &["--no-close"]);
    thread.next_line();
    thread.signal(Signal::SIGTERM);
    thread.expect("Main thread: stopping on signal 15");
    thread.expect("Main thread: joining the signal thread");
    // The join waits for a loop that nothing ends.
    assert!(thread.no_line_within(Duration::from_secs(2)));
    assert_eq!(state_of(thread.pid()), Some('S'));
    // Another SIGTERM, or a SIGINT, is caught by the iterator, as the
    // first was, and passed on to a main thread that no longer listens.
    for stop in [Signal::SIGTERM, Signal::SIGINT] {
        thread.signal(stop);
        delivered(&thread, stop);
    }
    assert!(thread.no_line_within(Duration::from_millis(500)));
    assert_eq!(state_of(thread.pid()), Some('S'));
    // A signal it never registered keeps its default action: SIGUSR2's
    // ends it, as SIGKILL would.
    thread.signal(Signal::SIGUSR2);
    let out = thread.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGUSR2 as i32));
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
fn sig_hook_default_exits_143_even_if_a_second_sigterm_comes_as_it_ends() {
    // With --exit-code it returns from `run`. Had it dropped `signals`
    // there, the socket signal-hook's action writes to would be closed
    // before the action is unregistered, and a second SIGTERM in between
    // would make that write raise SIGPIPE: a death by SIGPIPE, not status
    // 143. strace holds it there, if it ever closes that socket.
    if !have("strace") {
        return;
    }
    let out = signal_after_iterator_closes(
        bin!("sig-hook-default"),
        &["--exit-code"],
        Signal::SIGTERM,
        |hook| {
            hook.expect(&format!(
                r"Working as pid \d+; stop me with Ctrl-C or kill \d+{HOST}"
            ));
            nix::sys::signal::kill(hook.tracee(), Signal::SIGTERM)
                .expect("kill");
            hook.expect("Got SIGTERM: cleaning up");
            hook.expect("Cleaned up; exiting with status 143");
        },
    );
    assert_eq!(
        out.status.code(),
        Some(143),
        "{:?}: {}",
        out.status,
        out.stderr
    );
}

#[test]
fn sig_hook_default_sessions_match_the_book() {
    let (mut session, mut terminal2) = (Vec::new(), Vec::new());
    for args in [&[][..], &["--exit-code"][..]] {
        let mut hook = Listing::start(bin!("sig-hook-default"), args);
        hook.expect(&format!(
            r"Working as pid \d+; stop me with Ctrl-C or kill \d+{HOST}"
        ));
        let kill = format!("kill {}", hook.pid());
        terminal2.push((kill.clone(), shell(&kill)));
        let out = hook.finish();
        let expected = if args.is_empty() { None } else { Some(143) };
        assert_eq!(out.status.code(), expected, "{:?}", out.status);
        assert_eq!(
            out.status.signal(),
            args.is_empty().then_some(Signal::SIGTERM as i32)
        );
        // The book's run is on the host; in a container the first line
        // also says how to find the pid from the host, and no more.
        let shown = out.stdout.iter().map(|l| l.replace(HOST_HINT, ""));
        session.push((cargo_run("sig-hook-default", args), shown.collect()));
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

/// Starts `bin` with SIGINT ignored, as a script starts a job with `&`
/// (the harness gives every listing default signals, so `env` ignores
/// SIGINT and then execs the listing, which keeps the pid), and checks,
/// once it has said it is ready, that SIGINT is still ignored and not
/// caught.
fn start_ignoring_sigint(bin: &str, args: &[&str]) -> Listing {
    let mut command = std::process::Command::new("env");
    command.arg("--ignore-signal=INT").arg(bin).args(args);
    let mut listing =
        Listing::spawn(&mut command, std::process::Stdio::piped());
    listing.next_line();
    assert_eq!(
        sigint_in(listing.pid()),
        (true, false),
        "SIGINT (ignored, caught)"
    );
    listing
}

/// Whether `pid` ignores SIGINT, and whether it catches it, from the
/// SigIgn and SigCgt masks of its /proc status.
fn sigint_in(pid: nix::unistd::Pid) -> (bool, bool) {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let has = |field: &str| {
        let mask = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect(field);
        mask & (1 << (Signal::SIGINT as i32 - 1)) != 0
    };
    (has("SigIgn:"), has("SigCgt:"))
}

#[test]
fn sig_hook_flag_leaves_a_sigint_ignored_when_it_was_started_so() {
    let args = ["--cleanup-secs", "2"];
    let mut hook = start_ignoring_sigint(bin!("sig-hook-flag"), &args);
    // Discarded by the kernel: an ignored signal is never even pending.
    hook.signal(Signal::SIGINT);
    hook.signal(Signal::SIGTERM);
    hook.expect("Cleaning up for 2 s; a second signal stops me now");
    // Caught, this would be the second signal, and exit with status 1.
    hook.signal(Signal::SIGINT);
    hook.expect("Clean exit");
    let out = hook.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

#[test]
fn sig_hook_thread_leaves_a_sigint_ignored_when_it_was_started_so() {
    let mut thread = start_ignoring_sigint(bin!("sig-hook-thread"), &[]);
    thread.signal(Signal::SIGINT);
    // Caught, SIGINT would have stopped the main thread before this.
    thread.signal(Signal::SIGHUP);
    thread.expect("Signal thread: SIGHUP, would reload");
    thread.signal(Signal::SIGTERM);
    thread.expect("Main thread: stopping on signal 15");
    let out = thread.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

#[test]
fn sig_hook_default_leaves_a_sigint_ignored_when_it_was_started_so() {
    let mut hook = start_ignoring_sigint(bin!("sig-hook-default"), &[]);
    hook.signal(Signal::SIGINT);
    hook.signal(Signal::SIGTERM);
    hook.expect("Got SIGTERM: cleaning up");
    let out = hook.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
}

#[test]
fn signal_hook_listings_stop_even_when_started_with_their_signals_blocked() {
    // A parent's mask passes through exec: started with their signals
    // blocked, as `env --block-signal` starts them, each listing unblocks
    // those it handles itself, or `kill` would leave them pending for
    // ever. Its first line comes after the unblock: by then none of them
    // may be blocked (SIGTERM ends each below, and alone would not tell).
    let start = |bin: &str, args: &[&str], handled: &[Signal]| {
        let mut command = std::process::Command::new("env");
        command
            .arg("--block-signal=TERM,INT,HUP,USR1")
            .arg(bin)
            .args(args);
        let mut listing =
            Listing::spawn(&mut command, std::process::Stdio::piped());
        listing.next_line();
        let blocked = still_blocked(listing.pid(), handled);
        assert!(blocked.is_empty(), "{bin} left {blocked:?} blocked");
        listing.signal(Signal::SIGTERM);
        listing
    };
    let stop = [Signal::SIGTERM, Signal::SIGINT];
    let args = ["--cleanup-secs", "0"];
    let mut flag = start(bin!("sig-hook-flag"), &args, &stop);
    flag.expect("Cleaning up for 0 s; a second signal stops me now");
    flag.expect("Clean exit");
    let out = flag.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    let handled = [Signal::SIGHUP, Signal::SIGUSR1, stop[0], stop[1]];
    let mut thread = start(bin!("sig-hook-thread"), &[], &handled);
    thread.expect("Main thread: stopping on signal 15");
    let out = thread.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    let mut hook = start(bin!("sig-hook-default"), &[], &stop);
    hook.expect("Got SIGTERM: cleaning up");
    let out = hook.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
}

#[test]
fn signal_hook_listings_handle_a_signal_already_pending_when_they_start() {
    // Blocked and pending at `exec`, a signal is delivered the moment the
    // listing unblocks it: its handler must be in place by then, or the
    // default action ends the listing before it has said a word.
    let args = ["--cleanup-secs", "0"];
    let mut flag = start_with_pending("TERM", bin!("sig-hook-flag"), &args);
    flag.expect(r"Working as pid \d+; stop me with Ctrl-C or kill \d+");
    flag.expect("Cleaning up for 0 s; a second signal stops me now");
    flag.expect("Clean exit");
    let out = flag.finish();
    assert!(out.status.success(), "sig-hook-flag: {:?}", out.status);

    let mut hook = start_with_pending("TERM", bin!("sig-hook-default"), &[]);
    hook.expect(&format!(
        r"Working as pid \d+; stop me with Ctrl-C or kill \d+{HOST}"
    ));
    hook.expect("Got SIGTERM: cleaning up");
    let out = hook.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));

    // 6-2's signal thread and main thread print in either order.
    let bin = bin!("sig-hook-thread");
    let mut thread = start_with_pending("HUP,USR1", bin, &[]);
    let mut lines: Vec<String> = (0..3).map(|_| thread.next_line()).collect();
    lines.sort();
    assert!(lines[0].starts_with("Signal thread: SIGHUP"), "{lines:?}");
    assert!(lines[1].starts_with("Signal thread: SIGUSR1"), "{lines:?}");
    assert!(lines[2].starts_with("Working as pid"), "{lines:?}");
    thread.signal(Signal::SIGTERM);
    thread.expect("Main thread: stopping on signal 15");
    let out = thread.finish();
    assert!(out.status.success(), "sig-hook-thread: {:?}", out.status);
}

#[test]
fn sig_hook_thread_takes_sighup_and_sigusr1_even_when_started_with_them_blocked()
 {
    // 6-2 handles SIGHUP and SIGUSR1 too, and its first line suggests
    // `kill -HUP`: blocked by a parent, they would stay pending for ever.
    let mut command = std::process::Command::new("env");
    command.args(["--block-signal=HUP,USR1", bin!("sig-hook-thread")]);
    let mut thread = Listing::spawn(&mut command, std::process::Stdio::piped());
    thread.next_line();
    thread.signal(Signal::SIGHUP);
    thread.expect("Signal thread: SIGHUP, would reload");
    thread.signal(Signal::SIGUSR1);
    thread.expect(r"Signal thread: SIGUSR1, ticks so far: \d+ \(measured\)");
    thread.signal(Signal::SIGTERM);
    thread.expect("Main thread: stopping on signal 15");
    let out = thread.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
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
    // Kernel behaviour, seen on Linux 6.18: one pending bit per standard
    // signal, so a hundred sent to a stopped process leave one pending
    // (`legacy_queue()` in `__send_signal_locked()`, kernel/signal.c).
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

#[test]
fn sig_coalesce_survives_a_sigusr1_as_it_ends() {
    // A sender that goes on after SIGTERM: had the counter dropped
    // `signals` as `run` returns, a SIGUSR1 between the closing of its
    // socket and the unregistering of signal-hook's action would make
    // that action's write raise SIGPIPE, and the counter would die of it
    // after printing its totals. strace holds it there, if it ever closes
    // that socket, and the SIGUSR1 comes then.
    if !have("strace") {
        return;
    }
    let out = signal_after_iterator_closes(
        bin!("sig-coalesce"),
        &[],
        Signal::SIGUSR1,
        |counter| {
            counter.expect(
                r"Counting SIGUSR1 as pid \d+; kill -TERM \d+ for the totals",
            );
            nix::sys::signal::kill(counter.tracee(), Signal::SIGTERM)
                .expect("kill");
            counter.expect(
                "SIGUSR1: handler ran 0 times, iterator reported it 0 times",
            );
        },
    );
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
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

/// The counts of one `--busy-ms` row of `coalesce-count`'s output:
/// (handler runs, iterator reports), run by run.
fn coalesce_row(line: &str, busy_ms: u32) -> Vec<(u64, u64)> {
    let row = regex::Regex::new(&format!(
        r"^--busy-ms {busy_ms}: handler ran ([\d, ]+); iterator reported ([\d, ]+)$"
    ))
    .unwrap();
    let caps = row
        .captures(line)
        .unwrap_or_else(|| panic!("not a --busy-ms {busy_ms} row: {line:?}"));
    let numbers = |list: &str| -> Vec<u64> {
        list.split(", ")
            .map(|n| n.parse().expect("a count"))
            .collect()
    };
    let (ran, reported) = (numbers(&caps[1]), numbers(&caps[2]));
    assert_eq!(ran.len(), reported.len(), "{line}");
    ran.into_iter().zip(reported).collect()
}

/// What standard signals guarantee of each run: at least one delivery, no
/// more than were sent, at least one report, no more than deliveries.
fn assert_coalesce_runs_hold(runs: &[(u64, u64)], sent: u64) {
    for &(handled, reported) in runs {
        assert!((1..=sent).contains(&handled), "{handled} of {sent}");
        assert!((1..=handled).contains(&reported), "{reported} of {handled}");
    }
}

#[test]
fn coalesce_count_counts_what_the_handler_and_the_iterator_see() {
    if !have("python3") || !have("bash") {
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ch06-signal-hook/coalesce-count"
    );
    let args = ["--runs", "2", "--sends", "50", bin!("sig-coalesce")];
    let out = run(script, &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 4, "{:#?}", out.stdout);
    assert!(
        out.stdout[0].starts_with(
            "50 SIGUSR1s sent by a bash loop, 2 runs each; Linux "
        ),
        "{:#?}",
        out.stdout
    );
    for (line, busy_ms) in [(&out.stdout[1], 0), (&out.stdout[2], 10)] {
        let runs = coalesce_row(line, busy_ms);
        assert_eq!(runs.len(), 2, "{line}");
        assert_coalesce_runs_hold(&runs, 50);
    }
    assert!(
        out.stdout[3].starts_with("load average "),
        "{:#?}",
        out.stdout
    );
    assert_rejects(script, &["--runs", "0"], "must be at least 1");
}

#[test]
fn coalesce_count_output_in_the_book_holds_and_the_chapter_quotes_it() {
    // The counts shown come from a real run of the command on its first
    // line; they cannot be compared with a new run, but they must hold
    // what standard signals guarantee, and the prose must quote them.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ch06-signal-hook");
    let shown =
        std::fs::read_to_string(format!("{dir}/coalesce-count.out")).unwrap();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines[0],
        "$ listings/ch06-signal-hook/coalesce-count --runs 10"
    );
    assert!(
        lines[1]
            .starts_with("1000 SIGUSR1s sent by a bash loop, 10 runs each; ")
    );
    let mut all = coalesce_row(lines[2], 0);
    all.extend(coalesce_row(lines[3], 10));
    assert_eq!(all.len(), 20);
    assert_coalesce_runs_hold(&all, 1000);
    assert!(lines[4].starts_with("load average "), "{shown}");
    assert_eq!(lines.len(), 5, "{shown}");

    let chapter =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../src/ch06-signal-hook.md");
    let text = std::fs::read_to_string(chapter).unwrap();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let quoted = regex::Regex::new(
        r"the handler ran between (\d+) and (\d+) times for a thousand sent, and the iterator reported as few as (\d+)",
    )
    .unwrap();
    let caps = quoted.captures(&text).expect("the chapter quotes the run");
    let number = |i: usize| caps[i].parse::<u64>().unwrap();
    let handled = all.iter().map(|&(h, _)| h);
    let reported = all.iter().map(|&(_, r)| r);
    assert_eq!(
        number(1),
        handled.clone().min().unwrap(),
        "fewest deliveries"
    );
    assert_eq!(number(2), handled.max().unwrap(), "most deliveries");
    assert_eq!(number(3), reported.min().unwrap(), "fewest reports");
    // The run shares the machine with whatever else runs: the prose must
    // say how busy it was, as the run's last line does, for the fewest
    // deliveries are the receiver waiting for a core.
    let load = lines[4]
        .strip_prefix("load average ")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a load average");
    assert!(
        text.contains(&format!("load average of {load} ")),
        "the chapter does not say the load average, {load}, of the run"
    );
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

#[test]
fn sig_coalesce_counts_even_when_started_with_its_signals_blocked() {
    // A parent's mask passes through exec: blocked, SIGUSR1 and SIGTERM
    // would stay pending, and the `kill -TERM` it suggests would do nothing.
    let mut command = std::process::Command::new("env");
    command
        .arg("--block-signal=TERM,USR1")
        .arg(bin!("sig-coalesce"));
    let mut coalesce =
        Listing::spawn(&mut command, std::process::Stdio::piped());
    coalesce
        .expect(r"Counting SIGUSR1 as pid \d+; kill -TERM \d+ for the totals");
    coalesce.signal(Signal::SIGUSR1);
    coalesce.signal(Signal::SIGTERM);
    coalesce
        .expect("SIGUSR1: handler ran 1 times, iterator reported it 1 times");
    let out = coalesce.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

#[test]
fn sig_coalesce_does_not_count_a_sigusr1_its_parent_left_pending() {
    // A SIGUSR1 that came while the parent had it blocked passes through
    // `exec`, pending. Nobody sent it to the counter: counted, the stopped
    // session's hundred would read "2 times" (seen before the fix).
    let mut coalesce = start_with_pending("USR1", bin!("sig-coalesce"), &[]);
    coalesce
        .expect(r"Counting SIGUSR1 as pid \d+; kill -TERM \d+ for the totals");
    coalesce.signal(Signal::SIGTERM);
    coalesce
        .expect("SIGUSR1: handler ran 0 times, iterator reported it 0 times");
    let out = coalesce.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

#[test]
fn sig_hook_flag_takes_a_sigint_that_comes_while_it_registers() {
    // Listing 6-1 registers two actions per signal, the conditional
    // shutdown first. A SIGINT between the two would run the first alone,
    // find the flag unset, and be lost: neither the default action (gone)
    // nor the flag (not yet there). strace sends SIGINT as the listing
    // installs signal-hook's handler for it, the `rt_sigaction` that sets
    // a handler for SIGINT; the listing must stop on it at once.
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trace = dir.path().join("trace");
    // Started as a listing is, every signal at its default: started with
    // SIGINT ignored (a test run from a script's `&` job), the listing
    // rightly installs no handler for it, and there is nothing to find.
    let mut probe = std::process::Command::new("strace");
    let probe = like_a_listing(&mut probe)
        .args(["-qq", "-e", "trace=rt_sigaction", "-o"])
        .arg(&trace)
        .args([bin!("sig-hook-flag"), "--count", "0", "--cleanup-secs", "0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("strace runs");
    assert!(probe.success(), "{probe:?}");
    let calls = std::fs::read_to_string(&trace).expect("the trace");
    let install = calls
        .lines()
        .position(|call| call.starts_with("rt_sigaction(SIGINT, {"))
        .expect("a handler installed for SIGINT")
        + 1;
    let mut command = std::process::Command::new("strace");
    command
        .args(["-qq", "-o", "/dev/null", "-e", "trace=rt_sigaction", "-e"])
        .arg(format!("inject=rt_sigaction:signal=SIGINT:when={install}"))
        .args([bin!("sig-hook-flag"), "--cleanup-secs", "0"]);
    let mut hook = Listing::spawn(&mut command, std::process::Stdio::piped());
    hook.expect(r"Working as pid \d+; stop me with Ctrl-C or kill \d+");
    // Lost, the SIGINT would leave it working until PATIENCE runs out.
    hook.expect("Cleaning up for 0 s; a second signal stops me now");
    hook.expect("Clean exit");
    let out = hook.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
}

// A single action is no safer than 6-1's two: signal-hook installs its
// handler before it records the action, and a signal in between runs the
// handler, finds nothing to do, and is gone, the default action with it
// (`signal_as_its_handler_goes_in` says where). strace sends SIGTERM just
// as the handler for it goes in; each listing must stop on it.

#[test]
fn sig_hook_thread_takes_a_sigterm_that_comes_while_it_registers() {
    if !have("strace") {
        return;
    }
    let ready = r"Working as pid \d+; try: kill -HUP \d+";
    let bin = bin!("sig-hook-thread");
    let mut hook =
        signal_as_its_handler_goes_in(bin, &[], Signal::SIGTERM, ready);
    hook.expect(ready);
    // Lost, the SIGTERM would leave it ticking until PATIENCE runs out.
    hook.expect("Main thread: stopping on signal 15");
    hook.expect("Main thread: closing the iterator, joining its thread");
    hook.expect("Signal thread: iterator closed, leaving");
    hook.expect("Clean exit");
    let out = hook.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
}

#[test]
fn sig_hook_default_takes_a_sigterm_that_comes_while_it_registers() {
    if !have("strace") {
        return;
    }
    let ready =
        &format!(r"Working as pid \d+; stop me with Ctrl-C or kill \d+{HOST}");
    let bin = bin!("sig-hook-default");
    let mut hook =
        signal_as_its_handler_goes_in(bin, &[], Signal::SIGTERM, ready);
    hook.expect(ready);
    // Lost, the SIGTERM would leave it waiting until PATIENCE runs out.
    hook.expect("Got SIGTERM: cleaning up");
    hook.expect("Cleaned up; dying of SIGTERM");
    // strace ends as its tracee did: killed by the same signal.
    assert_died_of(&hook.finish(), Signal::SIGTERM);
}

#[test]
fn sig_coalesce_takes_a_sigterm_that_comes_while_it_registers() {
    if !have("strace") {
        return;
    }
    let ready = r"Counting SIGUSR1 as pid \d+; kill -TERM \d+ for the totals";
    let bin = bin!("sig-coalesce");
    let mut hook =
        signal_as_its_handler_goes_in(bin, &[], Signal::SIGTERM, ready);
    hook.expect(ready);
    // Lost, the SIGTERM would leave it counting until PATIENCE runs out.
    hook.expect("SIGUSR1: handler ran 0 times, iterator reported it 0 times");
    let out = hook.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
}

/// Run as the first process of a PID namespace (`unshare --pid`, a
/// container), 6-3 is pid 1 there; the `kill` it suggests is for the
/// reader's shell, outside, so it names the pid that shell knows, not 1,
/// the machine's init. Stopped that way, it cleans up, and then cannot die
/// of the signal (Chapter 12): its status is the SIGSEGV of glibc's abort.
#[test]
fn sig_hook_default_as_pid_1_suggests_a_pid_the_reader_can_kill() {
    if !crate::support::pid_namespaces() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("prlimit");
    command
        .args(["--core=0", "unshare", "--map-root-user", "--pid", "--fork"])
        .arg(bin!("sig-hook-default"))
        .current_dir(dir.path());
    let mut hook = Listing::spawn(&mut command, std::process::Stdio::piped());
    let working = hook.expect(
        r"Working as pid 1 \(pid (\d+) outside\); stop me with Ctrl-C or kill (\d+)",
    );
    assert_eq!(working[1], working[2], "{working:?}");
    let unshare = hook.pid();
    let children = std::fs::read_to_string(format!(
        "/proc/{unshare}/task/{unshare}/children"
    ))
    .unwrap();
    assert_eq!(children.trim(), working[2], "unshare's child");
    shell(&format!("kill {}", working[2]));
    hook.expect("Got SIGTERM: cleaning up");
    let out = hook.finish();
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGSEGV as i32),
        "{:?} {}",
        out.status,
        out.stderr
    );
}

/// Under `unshare --mount-proc` the namespace has a /proc of its own, and
/// NSpid lists only the pid inside: as pid 1 there, the listing suggests
/// no `kill 1` (the machine's init, from the reader's shell outside), but
/// how to find its pid from outside.
#[test]
fn sig_hook_default_as_pid_1_with_its_own_proc_suggests_no_kill_1() {
    if !crate::support::pid_namespaces() {
        return;
    }
    let mut command = std::process::Command::new("prlimit");
    command.args(["--core=0", "unshare", "--map-root-user", "--pid"]);
    command.args(["--fork", "--mount-proc", bin!("sig-hook-default")]);
    command.arg("--exit-code");
    let mut hook = Listing::spawn(&mut command, std::process::Stdio::piped());
    hook.expect(
        r"Working as pid 1; stop me with Ctrl-C or find my pid outside with: pidof sig-hook-default",
    );
    let unshare = hook.pid();
    let children = std::fs::read_to_string(format!(
        "/proc/{unshare}/task/{unshare}/children"
    ))
    .unwrap();
    let child = nix::unistd::Pid::from_raw(children.trim().parse().unwrap());
    nix::sys::signal::kill(child, Signal::SIGKILL).unwrap();
    hook.finish();
}

/// Without /proc (a chroot, a bare container) Listing 6-3 cannot read
/// NSpid, and still runs: the pid it prints is the one it knows, and a
/// SIGTERM ends it as anywhere else. Root only (a mount namespace of its
/// own, in which /proc is unmounted); skipped with the reason otherwise.
#[test]
fn sig_hook_default_runs_without_proc() {
    if !have("unshare") {
        eprintln!("skipped: no unshare here");
        return;
    }
    let probe =
        run("unshare", &["--mount", "--propagation", "private", "true"]);
    if !probe.status.success() {
        eprintln!("skipped: no mount namespace here: {}", probe.stderr);
        return;
    }
    let mut command = std::process::Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c"]);
    command.arg(format!(
        // Every /proc mounted there: under `unshare --mount-proc` the
        // machine's lies below the namespace's own.
        "while umount -l /proc 2>/dev/null; do :; done; \
         test ! -e /proc/self && exec {}",
        bin!("sig-hook-default")
    ));
    let mut hook = Listing::spawn(&mut command, std::process::Stdio::piped());
    // With no /proc it cannot tell whether the host knows it by another
    // pid, so the hint must be there, not merely allowed.
    let working = hook.expect(&format!(
        r"Working as pid (\d+); stop me with Ctrl-C or kill (\d+){}",
        regex::escape(HOST_HINT)
    ));
    assert_eq!(working[1], hook.pid().to_string(), "{working:?}");
    assert_eq!(working[2], working[1], "{working:?}");
    hook.signal(Signal::SIGTERM);
    hook.expect("Got SIGTERM: cleaning up");
    hook.expect("Cleaned up; dying of SIGTERM");
    let out = hook.finish();
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGTERM as i32),
        "{:?} {}",
        out.status,
        out.stderr
    );
}

/// What Listing 6-3 adds to its first line where the host knows it by a
/// pid it cannot see (a PID namespace whose /proc is its own, as in a
/// container, or no /proc at all), and a pattern for it, there or not.
const HOST_HINT: &str = " (from the host: pidof sig-hook-default)";
const HOST: &str = r"(?: \(from the host: pidof sig-hook-default\))?";

/// Not pid 1 but pid 2 of a namespace with a /proc of its own, as under a
/// shell or an init such as tini in a container: NSpid lists only the pid
/// inside. 6-3 suggests both ways: `kill 2`, right from a shell in the same
/// container (here the namespace's own shell runs it, once told to through
/// a FIFO), and `pidof` from the host, where pid 2 is another process (on
/// Linux 6.18, `kthreadd`).
#[test]
fn sig_hook_default_as_pid_2_with_its_own_proc_suggests_kill_2_inside_and_pidof_outside()
 {
    if !crate::support::pid_namespaces() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut command = std::process::Command::new("unshare");
    command.args(["--map-root-user", "--pid", "--fork", "--mount-proc"]);
    command.args(["sh", "-c"]).arg(format!(
        "{} --exit-code & read go < {}; kill 2; wait",
        bin!("sig-hook-default"),
        go.display()
    ));
    let mut hook = Listing::spawn(&mut command, std::process::Stdio::piped());
    hook.expect(&format!(
        r"Working as pid 2; stop me with Ctrl-C or kill 2{}",
        regex::escape(HOST_HINT)
    ));
    std::fs::write(&go, "kill 2\n").unwrap();
    hook.expect("Got SIGTERM: cleaning up");
    hook.expect("Cleaned up; exiting with status 143");
    let out = hook.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
}

/// With one descriptor to spare (`ulimit -n 4`), signal-hook cannot make
/// the socket pair its handler writes to: each listing must say that it
/// could not watch for signals, not only "Too many open files".
#[test]
fn signal_hook_listings_name_the_step_when_descriptors_run_out() {
    use crate::support::assert_names_the_step_when_descriptors_run_out;
    for name in ["sig-hook-thread", "sig-hook-default", "sig-coalesce"] {
        let bin = crate::support::bin_path(name);
        let command = || std::process::Command::new(&bin);
        let lines =
            assert_names_the_step_when_descriptors_run_out(command, [4]);
        let said =
            "cannot watch for signals: Too many open files (os error 24)";
        assert_eq!(lines, [format!("{name}: {said}")]);
    }
}
