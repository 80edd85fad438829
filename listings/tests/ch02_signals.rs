//! Chapter 2, Signals: Listings 2-1 (`alarm-pause`), 2-2 (`alarm`) and 2-3
//! (`catch-signal`).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{FixedOffset, NaiveDateTime, Timelike, Utc};
use nix::sys::signal::Signal;
use regex::Regex;

use crate::support::{
    Listing, Trace, assert_matches_book, assert_rejects,
    assert_session_matches_book, assert_trace_matches_book,
    assert_traced_run_matches_book, can_trace, cargo_run, have,
    pending_signals, run, shell, signal_after_iterator_closes, state_of,
    strace_command, wait_until, wchan_of,
};

const TIME: &str =
    r"([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})";

fn parse_asctime(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|err| panic!("{text:?} is not asctime: {err}"))
}

/// Checks one round of an alarm loop: `Setting at`, then `Got alarm 14`
/// five seconds later by the program's own clock and by ours.
fn expect_one_alarm(alarm: &mut Listing, started: Instant, round: u32) {
    // Lines reach the test late on a loaded machine, never early, so the
    // time since the start is a safe lower bound: alarm k cannot have rung
    // before 5k seconds. The time between the two lines of a round is an
    // upper bound only; it allows for a process woken late.
    let set = alarm.expect(&format!("Setting at {TIME}"));
    let set_seen = Instant::now();
    let got = alarm.expect(&format!("Got alarm 14 at {TIME}"));
    let since_start = started.elapsed();
    assert!(
        since_start >= Duration::from_secs(5 * u64::from(round)),
        "alarm {round} rang after only {since_start:?}"
    );
    let waited = set_seen.elapsed();
    assert!(waited < Duration::from_secs(8), "waited {waited:?}");
    // The program's own clock agrees: the alarm is set after the first
    // line is printed, so whole seconds differ by at least 5.
    let printed = parse_asctime(&got[1]) - parse_asctime(&set[1]);
    assert!((5..=7).contains(&printed.num_seconds()), "{printed}");
}

#[test]
fn alarm_pause_rings_after_five_seconds_when_nothing_is_late() {
    let started = Instant::now();
    let mut alarm = Listing::start(bin!("alarm-pause"), &["--count", "1"]);
    expect_one_alarm(&mut alarm, started, 1);
    let out = alarm.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn alarm_pause_loses_the_wake_up_when_the_alarm_comes_before_pause() {
    let args = ["--late", "--count", "1"];
    let mut alarm = Listing::start(bin!("alarm-pause"), &args);
    alarm.expect(&format!("Setting at {TIME}"));
    // The handler ran during the "busy" six seconds, before `pause`.
    let pid = alarm
        .expect(
            r"Calling pause\(\) as pid (\d+); the handler has run already: true",
        )
        .remove(1);
    assert_eq!(pid, alarm.pid().to_string());
    // Now it waits in `pause` for a signal that has already come: state
    // S, sleeping, with nothing pending, for as long as we care to look.
    wait_until("alarm-pause to sleep in pause()", || {
        state_of(alarm.pid()) == Some('S')
    });
    assert_eq!(pending_signals(alarm.pid()), Vec::<i32>::new());
    assert!(
        alarm.no_line_within(Duration::from_secs(2)),
        "pause() returned without a new signal"
    );
    // Only a new signal wakes it: the reader sends one from a second
    // terminal.
    let kill = format!("kill -ALRM {pid}");
    let typed = shell(&kill);
    alarm.expect(&format!("Got alarm 14 at {TIME}"));
    let out = alarm.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch02-signals/02-01-alarm-pause-late.out",
        "alarm-pause",
        &args,
        &out.stdout,
    );
    assert_session_matches_book(
        "ch02-signals/02-01-terminal-2.out",
        &[(kill, &typed)],
    );
}

#[test]
fn alarm_pause_fix_keeps_the_alarm_that_rings_before_the_wait() {
    // The same bad luck as above, with SIGALRM blocked: it stays pending,
    // the handler has not run, and sigsuspend returns without a new one.
    let args = ["--late", "--fix", "--count", "1"];
    let out = run(bin!("alarm-pause"), &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 3, "{:?}", out.stdout);
    assert!(
        out.stdout[1].ends_with("the handler has run already: false"),
        "{:?}",
        out.stdout
    );
    assert_matches_book(
        "ch02-signals/02-01-alarm-pause-fix.out",
        "alarm-pause",
        &args,
        &out.stdout,
    );
}

/// Python's own way to the same fix, in the language of the original:
/// block SIGALRM with `signal.pthread_sigmask`, set the alarm, be late,
/// and take the pending signal with `signal.sigwait`.
#[test]
fn python_blocks_sigalrm_and_sigwait_takes_the_alarm_that_came_early() {
    if !crate::support::have("python3") {
        return;
    }
    let script = "import signal, time\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n\
        signal.alarm(1)\n\
        time.sleep(2)\n\
        print('got', signal.sigwait({signal.SIGALRM}).name)\n";
    let started = Instant::now();
    let out = run("python3", &["-c", script]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, ["got SIGALRM"]);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Real-time signals queue, up to `RLIMIT_SIGPENDING`; beyond it `kill`
/// still makes the signal pending, as a bit that merges like a standard
/// signal's and has lost its sender, while `sigqueue` fails with EAGAIN.
/// Linux's `__send_signal_locked()`; seen on Linux 6.18.
#[test]
fn real_time_signals_beyond_the_queue_limit_merge_and_sigqueue_fails() {
    if !crate::support::have("python3") {
        return;
    }
    let script = "import ctypes, errno, os, resource, signal\n\
        sig = signal.SIGRTMIN + 2\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, {sig})\n\
        def take():\n\
        \x20   got = []\n\
        \x20   while (info := signal.sigtimedwait({sig}, 0)) is not None:\n\
        \x20       got.append(info.si_pid == os.getpid() and 'me' or \n\
        \x20                  'pid %d' % info.si_pid)\n\
        \x20   return ' '.join(got) or 'nothing'\n\
        os.kill(os.getpid(), sig); os.kill(os.getpid(), sig)\n\
        print('under the limit:', take())\n\
        resource.setrlimit(resource.RLIMIT_SIGPENDING, (0, 0))\n\
        os.kill(os.getpid(), sig); os.kill(os.getpid(), sig)\n\
        print('beyond it:', take())\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        ret = libc.sigqueue(os.getpid(), sig, ctypes.c_void_p(0))\n\
        print('sigqueue:', ret, errno.errorcode[ctypes.get_errno()], take())\n";
    let out = run("python3", &["-c", script]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "under the limit: me me",
            "beyond it: pid 0",
            "sigqueue: -1 EAGAIN nothing",
        ]
    );
}

/// The mask is per thread: a thread started before SIGALRM was blocked
/// takes the alarm that comes while the main thread is busy, and the
/// main thread's wait finds nothing pending. Started after the block, the
/// thread inherits it, and the signal waits for the main thread.
#[test]
fn a_thread_started_before_the_block_takes_the_signal() {
    if !crate::support::have("python3") {
        return;
    }
    let script = "import signal, sys, threading, time\n\
        signal.signal(signal.SIGALRM, lambda n, f: print('the handler ran'))\n\
        def start():\n\
        \x20   other = threading.Thread(target=time.sleep, args=(3,))\n\
        \x20   other.start()\n\
        \x20   return other\n\
        if sys.argv[1] == 'before': other = start()\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n\
        if sys.argv[1] == 'after': other = start()\n\
        signal.alarm(1)\n\
        time.sleep(2)\n\
        got = signal.sigtimedwait({signal.SIGALRM}, 2)\n\
        print('waited:', got and signal.Signals(got.si_signo).name)\n\
        other.join()\n";
    let before = run("python3", &["-c", script, "before"]);
    assert!(before.status.success(), "{}", before.stderr);
    assert_eq!(before.stdout, ["the handler ran", "waited: None"]);
    let after = run("python3", &["-c", script, "after"]);
    assert!(after.status.success(), "{}", after.stderr);
    assert_eq!(after.stdout, ["waited: SIGALRM"]);
}

/// A parent that blocked a signal passes its mask on, through `exec`, and
/// neither nix's `sigaction` nor signal-hook unblocks it: a listing that
/// did not unblock the signal it waits for would wait for ever. `env
/// --block-signal` plays that parent.
#[test]
fn signal_listings_unblock_the_signal_their_parent_left_blocked() {
    let blocked = |signal: &str, bin: &str, args: &[&str]| {
        let mut command = Command::new("env");
        command
            .arg(format!("--block-signal={signal}"))
            .arg(bin)
            .args(args);
        Listing::spawn(&mut command, Stdio::piped())
    };
    let mut alarms: Vec<_> = [bin!("alarm"), bin!("alarm-pause")]
        .into_iter()
        .map(|bin| blocked("ALRM", bin, &["--count", "1"]))
        .collect();
    for alarm in &mut alarms {
        alarm.expect(&format!("Setting at {TIME}"));
    }
    for mut alarm in alarms {
        alarm.expect(&format!("Got alarm 14 at {TIME}"));
        let out = alarm.finish();
        assert!(out.status.success(), "{}", out.stderr);
    }
    for signal in ["USR1", "RTMIN+2"] {
        let args = [signal, "--count", "1"];
        let mut catcher = blocked(signal, bin!("catch-signal"), &args);
        let ready =
            catcher.expect(r"Waiting for \S+ \((\d+)\) as pid \d+; try: .*");
        shell(&format!("kill -{signal} {}", catcher.pid()));
        catcher.expect(&format!("Got signal {} at {TIME}", ready[1]));
        let out = catcher.finish();
        assert!(out.status.success(), "{}", out.stderr);
    }
}

/// The signals `pid` blocks, from the `SigBlk` line of its status (the
/// main thread's mask: a single-threaded listing has no other).
fn blocked_signals(pid: nix::unistd::Pid) -> Vec<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the listing's status");
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigBlk:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("a SigBlk line");
    (1..=64).filter(|n| mask & (1 << (n - 1)) != 0).collect()
}

/// `catch-signal ARGS` started by `sh`, which inherits from `env` a mask
/// that blocks `blocked`, sends itself `sent` and execs the catcher: the
/// catcher has the same pid, the same mask, and the signal pending.
fn catcher_left_pending(blocked: &str, sent: &str, args: &[&str]) -> Listing {
    let mut command = Command::new("env");
    command
        .arg(format!("--block-signal={blocked}"))
        .args([
            "sh",
            "-c",
            &format!("kill -{sent} $$ && exec \"$0\" \"$@\""),
        ])
        .arg(bin!("catch-signal"))
        .args(args);
    Listing::spawn(&mut command, Stdio::piped())
}

/// The rule's second half, for the catcher: a signal its parent left
/// pending came before the `Waiting for` line that every sender waits
/// for, and it is the parent's. It reaches the handler at the unblock and
/// is thrown away: once back in its wait, the catcher has reported
/// nothing, and a signal sent now is its first.
#[test]
fn catch_signal_does_not_report_a_signal_its_parent_left_pending() {
    let mut catcher = catcher_left_pending("USR1", "USR1", &["USR1"]);
    catcher.expect(r"Waiting for SIGUSR1 \(10\) as pid \d+; try: .*");
    let pid = catcher.pid();
    // Sleeping: in its wait, past anything it had to print first.
    wait_until("the catcher to wait", || state_of(pid) == Some('S'));
    catcher.signal(Signal::SIGTERM);
    let out = catcher.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    assert_eq!(out.stdout.len(), 1, "it reported: {:?}", out.stdout);
}

/// The rule's first half: the catcher unblocks the signal it waits for,
/// and leaves the rest of the mask as its parent set it. A SIGTERM that
/// parent blocked and left pending stays blocked and pending, the
/// parent's; emptying the whole mask would deliver it at its default
/// action, and end the catcher before it said a word.
#[test]
fn catch_signal_unblocks_its_own_signal_only() {
    let mut catcher =
        catcher_left_pending("USR1,TERM", "TERM", &["USR1", "--count", "1"]);
    catcher.expect(r"Waiting for SIGUSR1 \(10\) as pid \d+; try: .*");
    let pid = catcher.pid();
    let term = Signal::SIGTERM as i32;
    assert_eq!(blocked_signals(pid), [term], "only SIGUSR1 unblocked");
    assert_eq!(pending_signals(pid), [term], "SIGTERM still pending");
    catcher.signal(Signal::SIGUSR1);
    catcher.expect(&format!("Got signal 10 at {TIME}"));
    let out = catcher.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

/// The original's shape under CPython, started with SIGALRM blocked: the
/// alarm rings and stays pending, and `signal.pause()` waits for ever.
#[test]
fn python_pauses_for_ever_when_its_parent_left_sigalrm_blocked() {
    if !crate::support::have("python3") {
        return;
    }
    let script = "import signal\n\
        signal.signal(signal.SIGALRM, lambda n, f: print('Got alarm', n))\n\
        signal.alarm(1)\n\
        print('pausing', flush=True)\n\
        signal.pause()\n";
    let mut command = Command::new("env");
    command.args(["--block-signal=ALRM", "python3", "-c", script]);
    let mut original = Listing::spawn(&mut command, Stdio::piped());
    original.expect("pausing");
    let pid = original.pid();
    wait_until("the alarm to ring and stay pending", || {
        pending_signals(pid).contains(&(Signal::SIGALRM as i32))
    });
    assert_eq!(state_of(pid), Some('S'), "still waiting in pause()");
    assert!(original.no_line_within(Duration::from_secs(1)));
}

#[test]
fn alarm_pause_keeps_a_signal_that_comes_while_it_is_stopped() {
    let mut alarm = Listing::start(bin!("alarm-pause"), &["--count", "1"]);
    alarm.expect(&format!("Setting at {TIME}"));
    let pid = alarm.pid();
    // Stop it once it sleeps in pause(), and let the alarm ring.
    wait_until("pause()", || state_of(pid) == Some('S'));
    alarm.signal(Signal::SIGSTOP);
    wait_until("SIGALRM to be pending", || {
        pending_signals(pid).contains(&(Signal::SIGALRM as i32))
    });
    assert_eq!(state_of(pid), Some('T'), "still stopped");
    // Continued, it runs the handler at once, and pause() returns.
    alarm.signal(Signal::SIGCONT);
    alarm.expect(&format!("Got alarm 14 at {TIME}"));
    assert!(alarm.finish().status.success());
}

#[test]
fn alarm_rings_five_seconds_after_it_is_set() {
    let started = Instant::now();
    let mut alarm = Listing::start(bin!("alarm"), &["--count", "2"]);
    for round in 1..=2 {
        expect_one_alarm(&mut alarm, started, round);
    }
    let out = alarm.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 4, "nothing printed after the last alarm");
}

/// Pending signals pass through `exec` as the mask does: a parent that
/// blocked SIGALRM and had one arrive hands it on, and the listing's
/// unblock delivers it at once. It is no alarm the listing set, and each
/// alarm loop must still wait its five seconds. `sh` plays that parent:
/// it blocks SIGALRM (through `env`), sends itself one, and execs.
#[test]
fn alarm_listings_ignore_an_alarm_their_parent_left_pending() {
    for bin in [bin!("alarm"), bin!("alarm-pause")] {
        let mut command = Command::new("env");
        command.args([
            "--block-signal=ALRM",
            "sh",
            "-c",
            "kill -ALRM $$; exec \"$0\" --count 1",
            bin,
        ]);
        let started = Instant::now();
        let mut alarm = Listing::spawn(&mut command, Stdio::piped());
        expect_one_alarm(&mut alarm, started, 1);
        let out = alarm.finish();
        assert!(out.status.success(), "{bin}: {}", out.stderr);
    }
}

/// An alarm crosses `exec` too: its timer belongs to the process. Python
/// plays a parent that set one for two seconds and then exec'd the
/// listing. The listing's own alarm would replace it, but only once its
/// first line is written, and a write waits as long as its reader makes
/// it: strace holds that first `write` for three seconds, and the
/// inherited alarm rings inside it. A loop that left it set would take
/// it for its own and report it at once; each alarm loop cancels it
/// instead, and its own alarm comes five seconds after that write, eight
/// at least after the start. Listing 2-1 runs both ways, `--fix` being
/// the one whose blocked SIGALRM would stay pending for `sigsuspend`.
#[test]
fn alarm_listings_cancel_an_alarm_they_inherit_through_exec() {
    if !have("python3") || !have("strace") {
        return;
    }
    let script = "import os, signal, sys\n\
        signal.alarm(2)\n\
        os.execv(sys.argv[1], sys.argv[1:])\n";
    // The interpreter itself, not a wrapper script that runs others
    // first: strace must hold the listing's first write, no one else's.
    let python = run("python3", &["-c", "import sys; print(sys.executable)"])
        .stdout
        .remove(0);
    for (bin, args) in [
        (bin!("alarm"), &["--count", "1"][..]),
        (bin!("alarm-pause"), &["--count", "1"][..]),
        (bin!("alarm-pause"), &["--fix", "--count", "1"][..]),
    ] {
        let mut command = Command::new("strace");
        command
            .args(["-q", "-o", "/dev/null", "-e", "trace=write"])
            .args(["-e", "signal=none"])
            .arg("--inject=write:delay_enter=3000000:when=1")
            .args(["--", &python, "-c", script, bin])
            .args(args);
        let started = Instant::now();
        let mut alarm = Listing::spawn(&mut command, Stdio::piped());
        alarm.expect(&format!("Setting at {TIME}"));
        alarm.expect(&format!("Got alarm 14 at {TIME}"));
        // Lines reach the test late, never early: a lower bound.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(8),
            "{bin} {args:?}: an alarm after only {took:?}"
        );
        let out = alarm.finish();
        assert!(
            out.status.success(),
            "{bin}: {:?} {}",
            out.status,
            out.stderr
        );
    }
}

#[test]
fn alarm_survives_a_sigalrm_as_it_ends() {
    // Dropped, `signals` would close the socket it reads before signal-hook
    // unregisters its handler's action, and a SIGALRM in between would
    // make that action's write raise SIGPIPE, which the listing has at its
    // default action: it would die of SIGPIPE, not exit 0. strace holds it
    // there, if it ever closes that socket, and the SIGALRM comes then.
    if !have("strace") {
        return;
    }
    let out = signal_after_iterator_closes(
        bin!("alarm"),
        &["--count", "1"],
        Signal::SIGALRM,
        |alarm| {
            alarm.expect(&format!("Setting at {TIME}"));
            // Rung early, rather than wait five seconds: its byte waits.
            let pid = alarm.tracee();
            nix::sys::signal::kill(pid, Signal::SIGALRM).expect("kill");
            alarm.expect(&format!("Got alarm 14 at {TIME}"));
        },
    );
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

#[test]
fn alarm_output_matches_the_book() {
    let args = ["--count", "2"];
    let out = run(bin!("alarm"), &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch02-signals/02-02-alarm.out",
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
        "ch02-signals/02-02-alarm-bad-count.out",
        "alarm",
        &args,
        &stderr,
    );
}

#[test]
fn alarm_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("alarm"), &["--fix"], "invalid option '--fix'");
    for bin in [bin!("alarm"), bin!("alarm-pause")] {
        assert_rejects(bin, &["--count", "five"], r#"argument "five""#);
        assert_rejects(bin, &["--count"], "missing argument");
        assert_rejects(bin, &["5"], r#"unexpected argument "5""#);
        assert_rejects(bin, &["--count", "-1"], r#"argument "-1""#);
    }
}

/// What the original's printing handler does to a `print` that is blocked,
/// at a terminal (a pseudo-terminal whose reader has stopped reading):
/// the handler runs inside it, and its line lands in the middle of the
/// interrupted one. The original's own alarms never come at such a
/// moment; one sent from outside does.
#[test]
fn a_python_handler_that_prints_runs_inside_a_blocked_print() {
    if !crate::support::have("python3") {
        return;
    }
    let printer = "import signal\n\
        signal.signal(signal.SIGALRM, lambda n, f: print('Got alarm', n))\n\
        for i in range(100000): print('Spam %d' % i)\n";
    // Runs the printer on a terminal, reads nothing until it is blocked
    // in `write` (as /proc/PID/syscall says), sends SIGALRM, then reads
    // everything.
    let driver = "import os, pty, signal, sys, time\n\
        pid, tty = pty.fork()\n\
        if pid == 0: os.execvp('python3', ['python3', '-c', sys.argv[1]])\n\
        write = {'x86_64': '1', 'aarch64': '64'}[os.uname().machine]\n\
        while open('/proc/%d/syscall' % pid).read().split()[0] != write:\n\
        \x20   time.sleep(0.01)\n\
        os.kill(pid, signal.SIGALRM)\n\
        out = b''\n\
        while True:\n\
        \x20   try: chunk = os.read(tty, 65536)\n\
        \x20   except OSError: break\n\
        \x20   if not chunk: break\n\
        \x20   out += chunk\n\
        os.waitpid(pid, 0)\n\
        print([l for l in out.decode().splitlines() if 'alarm' in l][0])\n";
    let out = run("python3", &["-c", driver, printer]);
    assert!(out.status.success(), "{}", out.stderr);
    let found = Regex::new(r"^Spam \d+Got alarm 14$").unwrap();
    assert!(found.is_match(&out.stdout[0]), "{:?}", out.stdout);
}

/// Starts `catch-signal` and waits until it says its handler is in place.
fn start_catcher(args: &[&str]) -> (Listing, Vec<String>) {
    let mut catcher = Listing::start(bin!("catch-signal"), args);
    let ready = catcher.expect(
        r"Waiting for (SIG[\w+-]+) \((\d+)\) as pid (\d+); try: kill -([\w+-]+) (\d+)",
    );
    let pid = catcher.pid().to_string();
    assert_eq!((&ready[3], &ready[5]), (&pid, &pid), "it names its own pid");
    (catcher, ready)
}

/// The `Waiting for` line comes only once the handler is in place. With
/// its stdout a pipe that is already full, the catcher blocks in the
/// write of that line, and by then the kernel must list the signal as
/// caught (`SigCgt`).
#[test]
fn catch_signal_installs_its_handler_before_it_says_so() {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::io::Write;
    let (reader, mut writer) = std::io::pipe().expect("a pipe");
    // Filled without blocking; then the listing gets a blocking end.
    let flags = OFlag::from_bits_truncate(
        fcntl(&writer, FcntlArg::F_GETFL).expect("F_GETFL"),
    );
    fcntl(&writer, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    while writer.write(&[b'x'; 4096]).is_ok() {}
    fcntl(&writer, FcntlArg::F_SETFL(flags)).unwrap();

    let mut command = Command::new(bin!("catch-signal"));
    command.arg("USR1");
    let catcher = Listing::spawn(&mut command, Stdio::from(writer));
    let pid = catcher.pid();
    // `pipe_write`, or `anon_pipe_write` as Linux 6.18 names it.
    wait_until("the catcher to block writing its first line", || {
        wchan_of(pid).ends_with("pipe_write")
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the catcher's status");
    let caught = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("a SigCgt line");
    let usr1 = 1 << (Signal::SIGUSR1 as i32 - 1);
    assert_ne!(caught & usr1, 0, "SigCgt {caught:x}: no handler yet");
    drop(catcher);
    drop(reader);
}

#[test]
fn catch_signal_reports_each_signal_sent_with_kill() {
    let (mut catcher, ready) = start_catcher(&["USR1", "--count", "3"]);
    assert_eq!(
        (&*ready[1], &*ready[2], &*ready[4]),
        ("SIGUSR1", "10", "USR1")
    );
    for _ in 0..3 {
        // One at a time: two of the same signal sent before the first is
        // handled may be merged into one.
        catcher.signal(Signal::SIGUSR1);
        catcher.expect(&format!("Got signal 10 at {TIME}"));
    }
    let out = catcher.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

/// The listings print the local time, whatever the time zone: here one
/// 5 h 45 min east of UTC (a POSIX `TZ` string, which needs no time zone
/// database), far from the UTC the tests otherwise give every listing.
#[test]
fn catch_signal_prints_the_local_time_of_the_time_zone_it_is_given() {
    let mut command = Command::new(bin!("catch-signal"));
    command
        .args(["USR1", "--count", "1"])
        .env("TZ", "<+0545>-05:45");
    let mut catcher = Listing::spawn(&mut command, Stdio::piped());
    catcher
        .expect(r"Waiting for SIGUSR1 \(10\) as pid \d+; try: kill -USR1 \d+");
    let zone = FixedOffset::east_opt(5 * 3600 + 45 * 60).unwrap();
    // asctime drops the fraction of a second: whole seconds compare.
    let before = Utc::now().with_timezone(&zone).naive_local();
    catcher.signal(Signal::SIGUSR1);
    let got = catcher.expect(&format!("Got signal 10 at {TIME}"));
    let after = Utc::now().with_timezone(&zone).naive_local();
    let printed = parse_asctime(&got[1]);
    assert!(
        before.with_nanosecond(0).unwrap() <= printed && printed <= after,
        "printed {printed}, expected between {before} and {after}"
    );
    assert!(catcher.finish().status.success());
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
fn catch_signal_takes_real_time_signals_by_kill_l_names() {
    let rtmin = nix::libc::SIGRTMIN();
    let rtmax = nix::libc::SIGRTMAX();
    for (arg, number, name) in [
        ("RTMIN+2", rtmin + 2, "SIGRTMIN+2"),
        ("sigrtmax-1", rtmax - 1, "SIGRTMAX-1"),
        (&*rtmin.to_string(), rtmin, "SIGRTMIN"),
    ] {
        let (mut catcher, ready) = start_catcher(&[arg, "--count", "1"]);
        assert_eq!((&*ready[1], &*ready[2]), (name, &*number.to_string()));
        // Sent the way the listing suggests, by the shell's own `kill`.
        let pid = catcher.pid();
        shell(&format!("kill -{} {pid}", &ready[4]));
        catcher.expect(&format!("Got signal {number} at {TIME}"));
        assert!(catcher.finish().status.success());
    }
}

#[test]
fn catch_signal_is_killed_by_a_signal_it_does_not_catch() {
    let (catcher, _) = start_catcher(&["USR1"]);
    catcher.signal(Signal::SIGUSR2);
    let out = catcher.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGUSR2 as i32));
}

#[test]
fn catch_signal_merges_signals_sent_while_it_is_stopped() {
    let (mut catcher, _) = start_catcher(&["USR1"]);
    let pid = catcher.pid();
    catcher.signal(Signal::SIGSTOP);
    wait_until("the catcher to stop", || state_of(pid) == Some('T'));
    for _ in 0..3 {
        catcher.signal(Signal::SIGUSR1);
    }
    // The kernel keeps one bit per standard signal: pending or not.
    assert_eq!(pending_signals(pid), [Signal::SIGUSR1 as i32]);
    catcher.signal(Signal::SIGCONT);
    catcher.expect(&format!("Got signal 10 at {TIME}"));
    // Wait until it is back in its wait, then end it: only one line came.
    wait_until("the catcher to wait again", || state_of(pid) == Some('S'));
    catcher.signal(Signal::SIGTERM);
    let out = catcher.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    assert_eq!(
        out.stdout.len(),
        2,
        "three signals, one line: {:?}",
        out.stdout
    );
}

#[test]
fn two_terminal_catch_signal_session_matches_the_book() {
    // Terminal 1 runs the catcher; terminal 2 types these commands.
    let args = ["USR1", "--count", "2"];
    let (mut catcher, ready) = start_catcher(&args);
    let pid = catcher.pid();
    let mut terminal2 = Vec::new();
    let mut type_in = |command: String| {
        let output = shell(&command);
        terminal2.push((command, output));
    };
    type_in(format!("kill -USR1 {pid}"));
    catcher.expect(&format!("Got signal 10 at {TIME}"));
    type_in(format!("kill -STOP {pid}"));
    wait_until("the catcher to stop", || state_of(pid) == Some('T'));
    type_in(format!(
        "kill -USR1 {pid}; kill -USR1 {pid}; kill -USR1 {pid}"
    ));
    type_in(format!("grep ShdPnd /proc/{pid}/status"));
    type_in(format!("kill -CONT {pid}"));
    let out = catcher.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout[0], ready[0]);
    assert_session_matches_book(
        "ch02-signals/02-03-catch-signal.out",
        &[(cargo_run("catch-signal", &args), &out.stdout)],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch02-signals/02-03-terminal-2.out", &session);
}

#[test]
fn catch_signal_refuses_what_cannot_be_caught() {
    let catch = bin!("catch-signal");
    assert_rejects(catch, &["KILL"], "SIGKILL cannot be caught");
    assert_rejects(catch, &["19"], "SIGSTOP cannot be caught");
    assert_rejects(catch, &["SEGV"], "SIGSEGV cannot be caught");
    // Not in FORBIDDEN, but a fault signal too, and the Rust runtime's own
    // handler, which signal-hook would chain to, resets it to the default.
    assert_rejects(catch, &["BUS"], "SIGBUS cannot be caught");
    assert_rejects(catch, &["99"], r#"argument "99": no such signal"#);
    // What bash's `kill` sends but no handler can take: the null signal,
    // by number and by bash's name for it, and glibc's own two, whose
    // `sigaction` fails with EINVAL.
    assert_rejects(catch, &["0"], r#"argument "0": no such signal"#);
    assert_rejects(catch, &["EXIT"], r#"argument "EXIT": no such signal"#);
    assert_rejects(catch, &["32"], r#"argument "32": no such signal"#);
    assert_rejects(catch, &["33"], r#"argument "33": no such signal"#);
    assert_rejects(catch, &["RTMAX+1"], "no such signal");
    assert_rejects(catch, &["RTMIN+"], "no such signal");
    // Offsets that overflow an int: one line, not a panic.
    assert_rejects(catch, &["RTMIN+2147483647"], "no such signal");
    assert_rejects(catch, &["RTMAX-2147483647"], "no such signal");
    assert_rejects(catch, &["RTMIN+99999999999"], "no such signal");
    // Counted out of the real-time range and onto a standard signal: no
    // name for SIGIO (29) or SIGSYS (31), and bash's `kill` agrees.
    assert_rejects(catch, &["RTMAX-35"], "no such signal");
    assert_rejects(catch, &["rtmax-33"], "no such signal");
    assert_rejects(catch, &["NOPE"], r#"argument "NOPE": no such signal"#);
    assert_rejects(catch, &[], "which signal?");
}

/// Why Listing 2-3 checks `FORBIDDEN` itself: signal-hook 0.4.6, asked to
/// register SIGKILL, panics instead of returning an error, and the process
/// then aborts, because a destructor run by the unwinding panics again on
/// the lock that the first panic poisoned. The test runs itself again, as
/// a child, to let that child abort.
#[test]
fn signal_hook_aborts_the_process_on_a_forbidden_signal() {
    const IN_CHILD: &str = "CH02_REGISTER_A_FORBIDDEN_SIGNAL";
    if std::env::var_os(IN_CHILD).is_some() {
        let _ =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGKILL]);
        return;
    }
    let name =
        "ch02_signals::signal_hook_aborts_the_process_on_a_forbidden_signal";
    // Started as every listing is, with a deadline, in a process group
    // that dies with this test: should the child hang instead of
    // aborting, the test fails rather than waits for ever.
    let mut again =
        Command::new(std::env::current_exe().expect("this test binary"));
    again
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1")
        .env("RUST_BACKTRACE", "0");
    let out = Listing::spawn(&mut again, Stdio::piped()).finish();
    let stderr = &out.stderr;
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGABRT as i32),
        "{:?}: {stderr}",
        out.status
    );
    assert!(
        stderr.contains("Attempted to register forbidden signal 9"),
        "{stderr}"
    );
    assert!(stderr.contains("PoisonError"), "{stderr}");
}

/// Why Listing 2-3 refuses SIGBUS, which signal-hook does not: the Rust
/// runtime's own handler for it, installed before `main`, runs first
/// (signal-hook calls the action it replaced), and for a fault that is
/// not a stack overflow puts the default action back. So the first
/// `kill -BUS` reaches signal-hook's iterator, and leaves SIGBUS no longer
/// caught (`SigCgt`); the second ends the process, by SIGBUS. The test
/// runs itself again as a child, as the one above does, with core dumps
/// off, so that no core file is left where the test ran.
#[test]
fn a_second_sigbus_ends_a_process_that_registered_it_with_signal_hook() {
    const IN_CHILD: &str = "CH02_REGISTER_SIGBUS";
    let caught = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let mask = status
            .lines()
            .find_map(|line| line.strip_prefix("SigCgt:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect("a SigCgt line");
        mask & (1 << (Signal::SIGBUS as i32 - 1)) != 0
    };
    if std::env::var_os(IN_CHILD).is_some() {
        use nix::sys::resource::{Resource, setrlimit};
        setrlimit(Resource::RLIMIT_CORE, 0, 0).expect("no core dump");
        let mut signals =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGBUS])
                .expect("SIGBUS registered");
        let me = nix::unistd::getpid();
        println!("caught before: {}", caught());
        nix::sys::signal::kill(me, Signal::SIGBUS).expect("kill");
        let got = signals.forever().next().expect("a signal");
        println!("got {got}; caught after: {}", caught());
        nix::sys::signal::kill(me, Signal::SIGBUS).expect("kill");
        // Only if signal-hook caught it again does this wait end.
        let again = signals.forever().next();
        println!("caught again: {again:?}");
        return;
    }
    let name = "ch02_signals::\
        a_second_sigbus_ends_a_process_that_registered_it_with_signal_hook";
    let mut again =
        Command::new(std::env::current_exe().expect("this test binary"));
    again
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1");
    let out = Listing::spawn(&mut again, Stdio::piped()).finish();
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGBUS as i32),
        "{:?}: {:?} {}",
        out.status,
        out.stdout,
        out.stderr
    );
    // libtest writes the test's name on the line of its first output.
    let said = out.stdout.join("\n");
    assert!(
        said.contains("caught before: true")
            && said.contains("got 7; caught after: false")
            && !said.contains("caught again"),
        "Linux {}: {said}",
        crate::support::kernel()
    );
}

/// Asked to catch SIGPIPE, the catcher must still end. Dropped, its
/// `signals` would close the socket it reads while signal-hook's handler
/// still writes to the other end: a SIGPIPE then makes that write fail
/// with EPIPE and raise SIGPIPE again, blocked until the handler returns
/// and delivered at once after it, to the same handler, for ever, and
/// the main thread never gets back to unregister it. strace holds the
/// catcher there, if it ever closes that socket, and the SIGPIPE comes
/// then.
#[test]
fn catch_signal_catching_sigpipe_ends_after_a_sigpipe_as_it_ends() {
    if !have("strace") {
        return;
    }
    let out = signal_after_iterator_closes(
        bin!("catch-signal"),
        &["PIPE", "--count", "1"],
        Signal::SIGPIPE,
        |catcher| {
            catcher.expect(r"Waiting for SIGPIPE \(13\) as pid \d+; try: .*");
            let pid = catcher.tracee();
            nix::sys::signal::kill(pid, Signal::SIGPIPE).expect("kill");
            catcher.expect(&format!("Got signal 13 at {TIME}"));
        },
    );
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

// ---------------------------------------------------------------------------
// What the kernel sees

#[test]
fn alarm_pause_trace_shows_the_alarm_ringing_before_pause() {
    if !can_trace() {
        return;
    }
    let args = ["--late", "--count", "1"];
    let trace = Trace {
        calls: "rt_sigaction,alarm,clock_nanosleep,pause,rt_sigreturn,write",
        signals: "SIGALRM",
        from: None,
    };
    let mut alarm = Listing::start_traced(bin!("alarm-pause"), &args, &trace);
    alarm.expect(&format!("Setting at {TIME}"));
    let pid = alarm.tracee();
    alarm.expect(&format!(
        r"Calling pause\(\) as pid {pid}; the handler has run already: true"
    ));
    wait_until("alarm-pause to sleep in pause()", || {
        state_of(pid) == Some('S')
    });
    shell(&format!("kill -ALRM {pid}"));
    alarm.expect(&format!("Got alarm 14 at {TIME}"));
    let out = alarm.finish();
    assert!(out.status.success(), "{}", out.stderr);
    // The handler was installed without SA_RESTART, and the first SIGALRM
    // came from the kernel, the second from kill.
    let trace_text = out.stderr.replace(char::is_whitespace, "");
    assert!(
        trace_text.contains("SIGALRM,{sa_handler="),
        "{}",
        out.stderr
    );
    assert!(trace_text.contains("si_code=SI_KERNEL"), "{}", out.stderr);
    assert!(trace_text.contains("si_code=SI_USER"), "{}", out.stderr);
    assert_trace_matches_book(
        "ch02-signals/02-01-alarm-pause-late.trace",
        &strace_command("alarm-pause", &args, &trace),
        &trace,
        &out.stderr,
        &[],
    );
}

#[test]
fn alarm_trace_shows_the_handler_write_and_the_restarted_read() {
    if !can_trace() {
        return;
    }
    let trace = Trace {
        calls: "rt_sigaction,socketpair,alarm,recvfrom,sendto,rt_sigreturn,\
                write",
        signals: "SIGALRM",
        from: None,
    };
    let out = assert_traced_run_matches_book(
        "ch02-signals/02-02-alarm.trace",
        "alarm",
        &["--count", "1"],
        &trace,
    );
    assert!(
        out.stderr.contains("SA_RESTART|SA_SIGINFO")
            && out.stderr.contains("ERESTARTSYS"),
        "{}",
        out.stderr
    );
}

/// With one descriptor to spare (`ulimit -n 4`), signal-hook cannot make
/// the socket pair its handler writes to: each listing must say that it
/// could not watch for its signal, not only "Too many open files".
#[test]
fn signal_listings_name_the_step_when_descriptors_run_out() {
    use crate::support::assert_names_the_step_when_descriptors_run_out;
    for (bin, args, said) in [
        (
            bin!("alarm"),
            &["--count", "1"][..],
            "alarm: cannot watch for SIGALRM",
        ),
        (
            bin!("catch-signal"),
            &["USR1", "--count", "1"],
            "catch-signal: cannot watch for SIGUSR1",
        ),
    ] {
        let command = || {
            let mut command = std::process::Command::new(bin);
            command.args(args);
            command
        };
        let lines =
            assert_names_the_step_when_descriptors_run_out(command, [4]);
        let emfile = ": Too many open files (os error 24)";
        assert_eq!(lines, [format!("{said}{emfile}")]);
    }
}
