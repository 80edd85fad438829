//! The harness itself: no listing outlives the test binary that started
//! it, even when that binary is killed and no `Drop` runs; and every
//! listing starts with the signals at their defaults, whatever the test
//! runner inherited.

use std::env;
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SigHandler, SigSet, Signal, killpg};
use nix::unistd::Pid;

use crate::support::{
    ENVIRONMENT, Listing, PATIENCE, children_of, finish_clean, have, need_root,
    shell,
};

/// The helper test below, by its full name in this binary.
const HELPER: &str = "harness::helper_holds_listings_until_killed";
/// Set for the helper when the test below runs it: the helper holds its
/// listings only then, so that `cargo test -- --ignored` does not hang.
const HOLD: &str = "LISTINGS_HARNESS_HOLD";

/// Runs this very test binary as a child, has it start two listings that
/// never end (one of them forks), kills it with SIGKILL, so that nothing of
/// it runs, no `Drop` either, and checks that the listings die too.
#[test]
fn no_listing_outlives_a_killed_test_binary() {
    let exe = env::current_exe().expect("the path of this test binary");
    let mut command = Command::new(exe);
    command
        .args(["--ignored", "--exact", HELPER, "--nocapture"])
        .env(HOLD, "1");
    let mut inner = Listing::spawn(&mut command, Stdio::piped());
    let listings = loop {
        let line = inner.next_line();
        if let Some(pids) = line.strip_prefix("listings: ") {
            break pids_in(pids);
        }
    };
    // Whatever happens below, the listings' groups, forked children
    // included, are killed when this test ends.
    let _groups = KillGroupsOnDrop(listings.clone());
    let forked = pids_in(inner.expect("forked: (.*)").remove(1).as_str());
    assert_eq!(listings.len(), 2, "two listings: {listings:?}");
    assert!(!forked.is_empty(), "pipe-spam forked: {forked:?}");
    let mut children = children_of(inner.pid());
    children.sort();
    assert_eq!(children, listings, "the listings are its children");
    let alive: Vec<Process> =
        listings.iter().map(|&p| Process::of(p)).collect();

    inner.signal(Signal::SIGKILL);

    let deadline = Instant::now() + PATIENCE;
    for process in &alive {
        while process.is_alive() {
            assert!(
                Instant::now() < deadline,
                "listing {} still alive {PATIENCE:?} after the test binary \
                 that started it was killed",
                process.pid
            );
            // Polling /proc; the deadline above bounds the wait.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A listing starts with no signal ignored and none blocked, even when the
/// test runner was started with some: here a `pre_exec` of the test's own
/// stands in for such a runner (its changes are what a forked child would
/// inherit), and the harness's, which runs after it, must undo them.
#[test]
fn listings_start_with_no_signal_ignored_or_blocked() {
    let mut command = Command::new("cat");
    command.arg("/proc/self/status");
    // SAFETY: between fork and exec, only sigaction and pthread_sigmask
    // (through nix, on the stack): async-signal-safe, no allocation.
    unsafe {
        command.pre_exec(|| {
            for signal in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP] {
                signal::signal(signal, SigHandler::SigIgn)?;
            }
            let mut blocked = SigSet::empty();
            blocked.add(Signal::SIGUSR1);
            blocked.add(Signal::SIGTERM);
            blocked.thread_block()?;
            Ok(())
        });
    }
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    // Signals 32 and 33 are glibc's own, which no program may change (its
    // sigaction refuses them); glibc's posix_spawn, which cargo starts the
    // test binary with, leaves them ignored. Every other signal counts.
    let glibc_own = 0b11 << 31;
    let mask = |field: &str| {
        let line = out.stdout.iter().find(|l| l.starts_with(field));
        let hex = line.expect(field)[field.len()..].trim();
        u64::from_str_radix(hex, 16).expect("a hex mask") & !glibc_own
    };
    let (ignored, blocked) = (mask("SigIgn:"), mask("SigBlk:"));
    assert!(
        ignored == 0 && blocked == 0,
        "ignored {ignored:#x}, blocked {blocked:#x} (bit n - 1 is signal n)"
    );
}

/// Not a test on its own: [`no_listing_outlives_a_killed_test_binary`]
/// runs it in a child process. Starts `catch-signal USR1`, which waits for
/// signals forever, and `pipe-spam`, which forks a child and never ends,
/// prints their pids and holds them until it is killed.
#[test]
#[ignore = "a helper, run by no_listing_outlives_a_killed_test_binary"]
fn helper_holds_listings_until_killed() {
    if env::var_os(HOLD).is_none() {
        return;
    }
    // On this thread, the test's own: see the support module.
    let mut catcher = Listing::start(bin!("catch-signal"), &["USR1"]);
    catcher.expect(r"Waiting for SIGUSR1 \(10\) as pid \d+; .*");
    let mut spam = Listing::start(bin!("pipe-spam"), &[]);
    // The child writes its first message at once, so it exists by now.
    spam.expect(r"Parent \d+ got \[Spam 000\] at .*");
    let forked = children_of(spam.pid());
    println!("listings: {} {}", catcher.pid(), spam.pid());
    println!("forked: {}", join(&forked));
    // Killed long before this, by the test that runs this helper; should
    // that test fail to, the listings die as this helper returns.
    let deadline = Instant::now() + PATIENCE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        thread::park_timeout(left);
    }
    panic!("not killed within {PATIENCE:?}");
}

/// A process as it was seen alive: its pid and its start time, so that a
/// new process that reuses the pid is not taken for it.
struct Process {
    pid: Pid,
    start_time: String,
}

impl Process {
    fn of(pid: Pid) -> Process {
        let (_, start_time) =
            state_and_start(pid).expect("the listing is alive");
        Process { pid, start_time }
    }

    /// Alive: still there and not a zombie (dead, waiting to be reaped by
    /// whichever process inherited it).
    fn is_alive(&self) -> bool {
        state_and_start(self.pid).is_some_and(|(state, start)| {
            start == self.start_time && !matches!(state, 'Z' | 'X')
        })
    }
}

/// The state letter and start time of `pid`, from `/proc/<pid>/stat`, or
/// `None` once it is gone.
fn state_and_start(pid: Pid) -> Option<(char, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, in parentheses and maybe with spaces: the
    // state is field 3 and the start time field 22.
    let (_, fields) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = fields.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19)?.to_string()))
}

/// Kills the process groups of `.0` when dropped.
struct KillGroupsOnDrop(Vec<Pid>);

impl Drop for KillGroupsOnDrop {
    fn drop(&mut self) {
        for &group in &self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

fn pids_in(text: &str) -> Vec<Pid> {
    let mut pids: Vec<Pid> = text
        .split_whitespace()
        .map(|p| Pid::from_raw(p.parse().expect("a pid")))
        .collect();
    pids.sort();
    pids
}

fn join(pids: &[Pid]) -> String {
    let pids: Vec<String> = pids.iter().map(Pid::to_string).collect();
    pids.join(" ")
}

/// The helper test below, and the variable that makes it do its work.
const ENV_HELPER: &str = "harness::helper_shows_a_listings_environment";
const SHOW_ENV: &str = "LISTINGS_HARNESS_SHOW_ENV";

/// A listing's environment does not depend on who ran `cargo test`: this
/// test binary is run again, as from a shell in New Zealand with a German
/// locale in a narrow terminal, and a command it starts as the tests start
/// every listing must see the harness's own clock, locale and terminal.
#[test]
fn listings_get_the_same_environment_whoever_runs_the_tests() {
    let exe = env::current_exe().expect("the path of this test binary");
    let mut command = Command::new(exe);
    command
        .args(["--ignored", "--exact", ENV_HELPER, "--nocapture"])
        .env(SHOW_ENV, "1")
        .env("TZ", "Pacific/Chatham")
        .env("LANG", "de_DE.UTF-8")
        .env("LC_ALL", "de_DE.UTF-8")
        .env("LANGUAGE", "de")
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "20")
        .env("LINES", "5");
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let seen: Vec<&str> = out
        .stdout
        .iter()
        .filter_map(|line| line.strip_prefix("env: "))
        .collect();
    assert!(
        !seen.is_empty(),
        "the helper printed nothing: {:?}",
        out.stdout
    );
    for (name, value) in ENVIRONMENT {
        let got: Vec<&str> = seen
            .iter()
            .filter_map(|line| line.strip_prefix(&format!("{name}=")))
            .collect();
        let want: Vec<&str> = value.into_iter().collect();
        assert_eq!(got, want, "{name} in a listing's environment");
    }
}

/// Run by the test above, in the environment it sets: prints the
/// environment of a command started the way every listing is.
#[test]
#[ignore = "a helper, run by listings_get_the_same_environment_whoever_runs_the_tests"]
fn helper_shows_a_listings_environment() {
    if env::var_os(SHOW_ENV).is_none() {
        return;
    }
    for line in shell("env") {
        println!("env: {line}");
    }
}

/// The book's default port, 50008, has one lock, `support::default_port`:
/// a test file that kept a lock of its own would let its tests bind the
/// port while another chapter's blessing holds it.
#[test]
fn the_default_port_has_one_lock() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut own_locks = Vec::new();
    for entry in fs::read_dir(dir).expect("the tests' directory") {
        let path = entry.expect("an entry of the tests' directory").path();
        // support/ is a directory of its own, with no extension: the lock
        // lives there.
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = fs::read_to_string(&path).expect("a test file");
        for line in source.lines() {
            let line = line.trim_start();
            if line.starts_with("static ") && line.contains("Mutex") {
                own_locks.push(format!("{}: {line}", path.display()));
            }
        }
    }
    assert!(
        own_locks.is_empty(),
        "use support::default_port: {own_locks:#?}"
    );
}

/// `finish_clean` fails when a listing leaves a process in its group,
/// here a background `sleep` with its output elsewhere. It used to pass:
/// it let the `Listing` go, whose `Drop` kills the group, and only then
/// looked for what was left. (Takes PATIENCE.)
#[test]
fn finish_clean_fails_when_a_listing_leaves_a_process_behind() {
    let script = "sleep 31341 >/dev/null 2>&1 & exit 0";
    let listing = Listing::start("sh", &["-c", script]);
    // Either way the `Listing` is dropped in there, and `sleep` with it.
    let checked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            finish_clean(listing)
        }));
    assert!(
        checked.is_err(),
        "finish_clean passed with `sleep` left in the group"
    );
}

/// A listing still running after PATIENCE fails the test with its command
/// line, so that a check that runs a table of listings, such as
/// `conventions::every_listing_ends_quietly_when_its_stdout_is_closed`,
/// says which row hung, and with what its group still holds. It used to
/// say only `still running after 30s: []`. Stdout goes nowhere, as in that
/// check. The failure is the one `finish` gives after `PATIENCE`, here
/// after a second.
#[test]
fn a_listing_that_outlasts_patience_is_named_in_the_failure() {
    let mut command = Command::new("sleep");
    command.arg("31342");
    let listing = Listing::spawn(&mut command, Stdio::null());
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        listing.finish_within(Duration::from_secs(1))
    }));
    let failure = failed.err().expect("finish returned while `sleep` runs");
    let message = failure
        .downcast_ref::<String>()
        .map_or("(not a formatted message)", String::as_str);
    assert!(message.contains("`sleep 31342`"), "{message}");
    // And what its group holds: the process itself, still sleeping.
    assert!(message.contains("pid "), "{message}");
}

/// The helper test below, and the variable that makes it do its work.
const NS_HELPER: &str = "harness::helper_asks_for_pid_namespaces";
const ASK_NS: &str = "LISTINGS_HARNESS_ASK_NS";

/// The PID-1 tests run only where `unshare` can make a PID namespace.
/// Where `unshare` is not installed they are skipped, with a line that
/// says so; under CI, whose machines have it, its absence fails them
/// instead of letting every one of them pass unseen. This test binary is
/// run again with a PATH that holds a shell and nothing else.
#[test]
fn pid_1_tests_fail_under_ci_when_unshare_is_missing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::os::unix::fs::symlink("/bin/sh", dir.path().join("sh"))
        .expect("a link to sh");
    let ask = |ci: bool| {
        let exe = env::current_exe().expect("the path of this test binary");
        let mut command = Command::new(exe);
        command
            .args(["--ignored", "--exact", NS_HELPER, "--nocapture"])
            .env(ASK_NS, "1")
            .env("PATH", dir.path());
        if ci {
            command.env("CI", "1");
        } else {
            command.env_remove("CI");
        }
        Listing::spawn(&mut command, Stdio::piped()).finish()
    };
    let local = ask(false);
    assert!(local.status.success(), "{}", local.stderr);
    assert_eq!(
        local
            .stdout
            .iter()
            .filter(|l| l.starts_with("pid namespaces: "))
            .collect::<Vec<_>>(),
        ["pid namespaces: false"]
    );
    assert!(
        local.stderr.contains("skipped: unshare is not installed"),
        "{}",
        local.stderr
    );
    let ci = ask(true);
    assert!(!ci.status.success(), "{:?}", ci.stdout);
    assert!(
        ci.stderr.contains("unshare is missing in CI"),
        "{}",
        ci.stderr
    );
}

/// Run by the test above, in the environment it sets: asks whether PID
/// namespaces can be made.
#[test]
#[ignore = "a helper, run by pid_1_tests_fail_under_ci_when_unshare_is_missing"]
fn helper_asks_for_pid_namespaces() {
    if env::var_os(ASK_NS).is_none() {
        return;
    }
    println!("pid namespaces: {}", crate::support::pid_namespaces());
}

/// A listing starts with umask 022 whoever runs the tests: a runner with
/// umask 077 (set here in the child, before the harness's own hooks) or
/// 002 would otherwise change the modes the book's sessions show.
#[test]
fn listings_get_the_usual_umask_whoever_runs_the_tests() {
    let mut command = Command::new("sh");
    command.args(["-c", "umask"]);
    // SAFETY: `umask` is one async-signal-safe system call that cannot
    // fail; nothing allocates.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            nix::libc::umask(0o077);
            Ok(())
        });
    }
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert_eq!(out.stdout, ["0022"], "{}", out.stderr);
}

/// The helper test below, and the variable that makes it do its work.
const ROOT_HELPER: &str = "harness::helper_asks_for_root";
const ASK_ROOT: &str = "LISTINGS_HARNESS_ASK_ROOT";

/// The tests that need root (they run a listing as another user, forge a
/// datagram, set a limit for another user) skip, with a line, where the
/// suite is not root; under CI, which runs as root, they fail instead, so
/// that none of them passes there without checking anything. This test
/// binary is run again as `nobody`, with and without CI set.
#[test]
fn root_only_tests_fail_under_ci_when_not_root() {
    if !need_root("run this test binary as another user") || !have("setpriv") {
        return;
    }
    let exe = env::current_exe().expect("the path of this test binary");
    let (copy, _dir) = crate::support::reachable_by_anyone(&exe);
    let ask = |ci: bool| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&copy)
            .args(["--ignored", "--exact", ROOT_HELPER, "--nocapture"])
            .args(["--test-threads", "1"])
            .env(ASK_ROOT, "1");
        if ci {
            command.env("CI", "1");
        } else {
            command.env_remove("CI");
        }
        Listing::spawn(&mut command, Stdio::piped()).finish()
    };
    let local = ask(false);
    assert!(local.status.success(), "{}", local.stderr);
    assert!(
        local.stdout.iter().any(|l| l.ends_with("root: false")),
        "{:?}",
        local.stdout
    );
    assert!(
        local.stderr.contains("skipped: only root can "),
        "{}",
        local.stderr
    );
    let ci = ask(true);
    assert!(!ci.status.success(), "{:?}", ci.stdout);
    assert!(ci.stderr.contains("and CI runs as root"), "{}", ci.stderr);
}

/// Run by the test above, as `nobody`: asks whether the tests run as root.
#[test]
#[ignore = "a helper, run by root_only_tests_fail_under_ci_when_not_root"]
fn helper_asks_for_root() {
    if env::var_os(ASK_ROOT).is_none() {
        return;
    }
    println!("root: {}", need_root("answer as root"));
}

/// Every test that skips for want of root says so through `need_root`, the
/// one place that fails under CI instead: a skip written by hand would pass
/// there unseen, as five such tests and a silent `return` once did.
#[test]
fn every_test_that_needs_root_asks_need_root() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = vec![];
    let mut dirs = vec![dir];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("the tests folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("harness.rs")
                && !path.ends_with("support/process.rs")
            {
                files.push(path);
            }
        }
    }
    // Not read: this file, which holds the check and its test, and the one
    // that holds `need_root`.
    let by_hand = ["skipped: only root", "return; // Not root"];
    let mut found = vec![];
    for path in files {
        let text = fs::read_to_string(&path).expect("a test file");
        for (n, line) in text.lines().enumerate() {
            if by_hand.iter().any(|s| line.contains(s)) {
                found.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "skips written by hand:\n{}",
        found.join("\n")
    );
}

/// `Claims` lists every failed check of a chapter at once, and passes
/// only when none failed: a republished benchmark moves dozens of quoted
/// figures, and one build per figure to find them would be the price of
/// stopping at the first.
#[test]
fn claims_list_every_failure_at_once() {
    use crate::support::Claims;
    let text = "The pool's p99 was\n  2.8 to 8.4 ms in five runs.";
    let ok = Claims::new("ch99", text);
    ok.says("p99 was 2.8 to 8.4 ms");
    ok.never_says("p99 was 3.0");
    ok.eq(2 + 2, 4, "sum");
    ok.check(true, "true");
    ok.finish();
    let failed = std::panic::catch_unwind(|| {
        let claims = Claims::new("ch99", text);
        claims.says("p99 was 2.9 to 8.4 ms");
        claims.eq("2.8", "2.9", "low p99");
        claims.check(false, "the pool was lowest");
        claims.says("in five runs");
        claims.finish();
    });
    let message = failed.unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("3 claim(s) of ch99 fail:\n"),
        "{message}"
    );
    assert!(message.contains("ch99 does not say: p99 was 2.9 to 8.4 ms"));
    assert!(
        message.contains(r#"low p99: the data give "2.8", expected "2.9""#)
    );
    assert!(message.ends_with("the pool was lowest"), "{message}");
    // Forgetting `finish` still fails.
    let forgot = std::panic::catch_unwind(|| {
        Claims::new("ch99", text).check(false, "forgotten");
    });
    assert!(forgot.is_err());
    // Two chapters' claims at once: each one's failures are listed.
    let both = std::panic::catch_unwind(|| {
        let first = Claims::new("ch98", text);
        first.says("p99 was 9 ms");
        let second = Claims::new("ch99", text);
        second.check(false, "the pool was lowest");
        Claims::finish_all([first, second]);
    });
    let message = both.unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert_eq!(
        message,
        "2 claim(s) fail:\nch98: ch98 does not say: p99 was 9 ms\n\
         ch99: the pool was lowest"
    );
    let fine = [Claims::new("ch98", text), Claims::new("ch99", text)];
    Claims::finish_all(fine);
}
