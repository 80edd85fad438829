//! Chapter 12, Exiting well, and testing signal code: Listings 12-1
//! (`sig-cleanup`), 12-2 (`sig-status`), 12-3 (`sig-inherit`), 12-4
//! (`sig-init`) and 12-5 (`sig-test-threads`).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{
    Listing, assert_matches_book, assert_rejects, assert_session_matches_book,
    cargo_run, children_of, have, pending_signals, run, state_of, wait_until,
};

/// What a shell's `$?` shows for `status`: the code, or 128 + the signal.
fn dollar_question(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(signal)) => (128 + signal).to_string(),
        _ => unreachable!("a finished process"),
    }
}

/// Runs `sig-cleanup --end END` in `dir`, sends SIGTERM, and returns how
/// it ended and what it printed.
fn cleanup_run(end: &str, dir: &Path) -> (ExitStatus, Vec<String>) {
    let mut command = Command::new(bin!("sig-cleanup"));
    command.args(["--end", end]).current_dir(dir);
    let mut cleanup = Listing::spawn(&mut command, Stdio::piped());
    cleanup.expect(r"Created \./sig-cleanup\.tmp as pid \d+; try: kill \d+");
    cleanup.signal(Signal::SIGTERM);
    let out = cleanup.finish();
    (out.status, out.stdout)
}

#[test]
fn sig_cleanup_leaves_its_file_behind_unless_it_unwinds() {
    let term = Some(Signal::SIGTERM as i32);
    for (end, signal, code, left) in [
        ("default", term, None, true),
        ("exit", None, Some(0), true),
        ("return", None, Some(143), false),
        ("reraise", term, None, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (status, _) = cleanup_run(end, dir.path());
        assert_eq!((status.signal(), status.code()), (signal, code), "{end}");
        let file = dir.path().join("sig-cleanup.tmp");
        assert_eq!(file.exists(), left, "{end}: is the file left behind?");
    }
}

#[test]
fn sig_cleanup_sessions_match_the_book() {
    let mut session = Vec::new();
    for end in ["default", "reraise"] {
        let dir = tempfile::tempdir().unwrap();
        let (status, stdout) = cleanup_run(end, dir.path());
        session.push((cargo_run("sig-cleanup", &["--end", end]), stdout));
        session.push(("echo $?".to_string(), vec![dollar_question(status)]));
        let listing: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        session.push(("ls".to_string(), listing));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch12-exiting/12-01-sig-cleanup.out", &session);
}

#[test]
fn sig_status_a_shell_tells_exit_130_from_death_by_sigint() {
    if !have("bash") {
        return;
    }
    let out = run(bin!("sig-status"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "exit130  child alone:   exited with status 130 ($? = 130)",
            "  (the script went on)",
            "exit130  under bash -c: bash exited with status 0 ($? = 0)",
            "reraise  child alone:   was killed by SIGINT ($? = 130)",
            "reraise  under bash -c: bash was killed by SIGINT ($? = 130)",
        ]
    );
    assert_matches_book(
        "ch12-exiting/12-02-sig-status.out",
        "sig-status",
        &[],
        &out.stdout,
    );
}

#[test]
fn sig_inherit_children_keep_the_mask_and_what_is_ignored() {
    let out = run(bin!("sig-inherit"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let row = |who: &str| -> String {
        let line = out.stdout.iter().find(|l| l.starts_with(who)).expect(who);
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    // std resets SIGPIPE for a Command (not shown: it was restored to the
    // default already) but keeps the mask and SIGINT ignored, unless
    // pre_exec resets them; exec resets what was caught; fork alone
    // changes nothing.
    let parent = row("parent");
    assert!(
        parent.starts_with("parent ignores SIGINT blocks SIGUSR1 catches")
            && parent.ends_with("SIGTERM"),
        "{parent:?}"
    );
    assert_eq!(
        row("Command"),
        "Command ignores SIGINT blocks SIGUSR1 catches -"
    );
    assert_eq!(
        row("fork + exec"),
        "fork + exec ignores SIGINT blocks SIGUSR1 catches -"
    );
    assert_eq!(row("fork alone")[11..], row("parent")[7..]);
    assert_eq!(
        out.stdout.last().unwrap(),
        "sleep, sent SIGINT: still running after 200 ms: true"
    );
    assert_matches_book(
        "ch12-exiting/12-03-sig-inherit.out",
        "sig-inherit",
        &[],
        &out.stdout,
    );
}

/// `unshare` with a new PID namespace, as root or through a user
/// namespace; `None` where the machine allows neither (skipped locally).
fn pid_namespace(args: &[&str]) -> Option<Listing> {
    if !have("unshare") {
        return None;
    }
    let probe = run("unshare", &["--map-root-user", "--pid", "--fork", "true"]);
    if !probe.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare: {}",
            probe.stderr
        );
        eprintln!("skipped: no PID namespace here: {}", probe.stderr);
        return None;
    }
    let mut all = vec!["--map-root-user", "--pid", "--fork", bin!("sig-init")];
    all.extend(args);
    Some(Listing::start("unshare", &all))
}

/// The pid, seen from outside, of the process `unshare` runs.
fn inside(unshare: &Listing) -> nix::unistd::Pid {
    let mut children = Vec::new();
    wait_until("unshare to fork", || {
        children = children_of(unshare.pid());
        !children.is_empty()
    });
    children[0]
}

#[test]
fn sig_init_as_pid_1_drops_sigterm_until_it_takes_it_itself() {
    let Some(mut init) = pid_namespace(&[]) else {
        return;
    };
    init.expect("Running as pid 1; handling SIGTERM: false");
    let pid = inside(&init);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    // Dropped, not pending: nothing will ever deliver it.
    assert!(init.no_line_within(Duration::from_secs(1)));
    assert_eq!(pending_signals(pid), Vec::<i32>::new());
    assert!(matches!(state_of(pid), Some('S')), "still running");
    nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    wait_until("SIGKILL to end it", || {
        matches!(state_of(pid), None | Some('Z'))
    });
    drop(init);

    let Some(mut init) = pid_namespace(&["--handle"]) else {
        return;
    };
    init.expect("Running as pid 1; handling SIGTERM: true");
    let pid = inside(&init);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    init.expect("Got SIGTERM: exiting cleanly");
    let out = init.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let command =
        "unshare --map-root-user --pid --fork target/debug/sig-init --handle";
    assert_session_matches_book(
        "ch12-exiting/12-04-sig-init.out",
        &[(command.to_string(), &out.stdout)],
    );
}

#[test]
fn sig_init_outside_a_namespace_dies_of_sigterm_like_anyone() {
    let mut init = Listing::start(bin!("sig-init"), &[]);
    init.expect(r"Running as pid \d+; handling SIGTERM: false");
    init.signal(Signal::SIGTERM);
    let out = init.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
}

#[test]
fn sig_test_threads_one_test_kills_the_other_unless_isolated() {
    let threads = run(bin!("sig-test-threads"), &[]);
    assert_eq!(
        threads.status.signal(),
        Some(Signal::SIGUSR1 as i32),
        "{:?}",
        threads.status
    );
    assert_eq!(threads.stdout, ["running 2 tests"]);
    let isolated = run(bin!("sig-test-threads"), &["--isolate"]);
    assert!(isolated.status.success(), "{}", isolated.stderr);
    assert_eq!(isolated.stdout.last().unwrap(), "2 passed; 0 failed");
    let session = [
        (cargo_run("sig-test-threads", &[]), threads.stdout.clone()),
        ("echo $?".to_string(), vec![dollar_question(threads.status)]),
        (
            cargo_run("sig-test-threads", &["--isolate"]),
            isolated.stdout.clone(),
        ),
    ];
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch12-exiting/12-05-sig-test-threads.out",
        &session,
    );
}

#[test]
fn exiting_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("sig-cleanup"), &[], "which --end?");
    assert_rejects(
        bin!("sig-cleanup"),
        &["--end", "later"],
        "unknown end 'later'",
    );
    assert_rejects(bin!("sig-status"), &["--child", "x"], "unknown child 'x'");
    assert_rejects(
        bin!("sig-inherit"),
        &["now"],
        r#"unexpected argument "now""#,
    );
    assert_rejects(bin!("sig-init"), &["--pid"], "invalid option");
    assert_rejects(bin!("sig-test-threads"), &["--case"], "missing argument");
}
