//! Chapter 12, Exiting well, and testing signal code: Listings 12-1
//! (`sig-cleanup`), 12-2 (`sig-status`), 12-3 (`sig-inherit`), 12-4
//! (`sig-init`) and 12-5 (`sig-test-threads`).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{
    Listing, Trace, assert_matches_book, assert_rejects,
    assert_session_matches_book, assert_session_matches_book_masking,
    assert_trace_matches_book, bin_path, blessing, can_trace, cargo_run,
    dollar_question, forked_and_reaped, have, pending_signals, pid_namespaces,
    run, shell, signal_after_iterator_closes_disk_full, start_with_pending,
    state_of, wait_until,
};

/// Runs `sig-cleanup --end END`, its private directory made in `dir` (the
/// system's temporary directory if `None`), sends SIGTERM with the `kill`
/// it suggests, and returns how it ended, what it printed, the private
/// directory, and the `kill` command.
fn cleanup_run(
    end: &str,
    dir: Option<&Path>,
) -> (ExitStatus, Vec<String>, PathBuf, String) {
    let mut args = vec!["--end", end];
    if let Some(dir) = dir {
        args.extend(["--dir", dir.to_str().unwrap()]);
    }
    let mut cleanup = Listing::start(bin!("sig-cleanup"), &args);
    let made =
        cleanup.expect(r"Created (\S+)/file as pid \d+; try: (kill \d+)");
    shell(&made[2]);
    let out = cleanup.finish();
    (
        out.status,
        out.stdout,
        PathBuf::from(&made[1]),
        made[2].clone(),
    )
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
        let (status, _, private, _) = cleanup_run(end, Some(dir.path()));
        assert_eq!((status.signal(), status.code()), (signal, code), "{end}");
        assert!(private.starts_with(dir.path()), "{}", private.display());
        let file = private.join("file");
        assert_eq!(file.exists(), left, "{end}: is the file left behind?");
        assert_eq!(private.exists(), left, "{end}: and its directory?");
    }
}

#[test]
fn sig_cleanup_stopped_after_its_reader_has_gone_still_ends_by_the_signal() {
    // `| head -1`: the reader takes the first line and goes. The stop
    // signal that comes later must still decide how the process ends,
    // though the "Got ..." line it then writes fails with EPIPE.
    // The reader and its pipe are made in the listing's child, never
    // here: a child another test thread forks while this process holds
    // the read end would hold it too, and the "Got ..." line would not
    // fail.
    for (end, signal, code) in [
        ("reraise", Some(Signal::SIGTERM as i32), None),
        ("return", None, Some(143)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(bin!("sig-cleanup"));
        command.args(["--end", end, "--dir"]).arg(dir.path());
        let head = crate::support::stdout_to_a_reader_of_one_line(&mut command);
        let mut cleanup = Listing::spawn(&mut command, head);
        let first = cleanup.next_line();
        assert!(first.starts_with("Created "), "{end}: {first:?}");
        // `head` copied the line and goes; once it has, the pipe has no
        // reader left. It is in the listing's group, the listing alone
        // stays.
        let group = cleanup.pid();
        crate::support::wait_until("the reader to go", || {
            crate::support::survivors_in_group(group).len() == 1
        });
        cleanup.signal(Signal::SIGTERM);
        let out = cleanup.finish();
        assert_eq!(
            (out.status.signal(), out.status.code()),
            (signal, code),
            "{end}: {}",
            out.stderr
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{end}: left behind: {left:?}");
    }
}

#[test]
fn sig_cleanup_leaves_nothing_in_the_directory_it_runs_in() {
    // Run from a fresh directory, as a reader runs it from the top of a
    // clone: nothing appears there, whatever the end.
    for end in ["default", "reraise"] {
        let here = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let mut command = Command::new(bin!("sig-cleanup"));
        command
            .args(["--end", end])
            .current_dir(here.path())
            .env("TMPDIR", elsewhere.path());
        let mut cleanup = Listing::spawn(&mut command, Stdio::piped());
        cleanup.next_line();
        cleanup.signal(Signal::SIGTERM);
        cleanup.finish();
        let left: Vec<_> = std::fs::read_dir(here.path()).unwrap().collect();
        assert!(left.is_empty(), "{end}: {left:?}");
    }
}

#[test]
fn sig_cleanup_leaves_a_sigint_ignored_when_it_was_started_so() {
    // Started as a script starts a job with `&`: `env` ignores SIGINT and
    // execs the listing (the harness gives every listing default signals).
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("env");
    command
        .arg("--ignore-signal=INT")
        .arg(bin!("sig-cleanup"))
        .args(["--end", "reraise", "--dir", dir.path().to_str().unwrap()]);
    let mut cleanup = Listing::spawn(&mut command, Stdio::piped());
    cleanup.next_line();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", cleanup.pid()))
            .unwrap();
    let sigint = 1 << (Signal::SIGINT as i32 - 1);
    for (field, set) in [("SigIgn:", true), ("SigCgt:", false)] {
        let mask = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect(field);
        assert_eq!(mask & sigint != 0, set, "SIGINT in {field}");
    }
    // Discarded: caught, it would end the run before the SIGTERM.
    cleanup.signal(Signal::SIGINT);
    cleanup.signal(Signal::SIGTERM);
    cleanup.expect("Got SIGTERM: returning from run");
    let out = cleanup.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn sig_cleanup_stops_even_when_started_with_its_signals_blocked() {
    // A parent's mask passes through exec (Listing 12-3): started with
    // SIGTERM and SIGINT blocked, as `env --block-signal` starts it, the
    // listing unblocks them itself, or the `kill` it suggests does nothing.
    for end in ["default", "reraise"] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("env");
        command
            .arg("--block-signal=TERM,INT")
            .arg(bin!("sig-cleanup"))
            .args(["--end", end, "--dir", dir.path().to_str().unwrap()]);
        let mut cleanup = Listing::spawn(&mut command, Stdio::piped());
        cleanup.next_line();
        cleanup.signal(Signal::SIGTERM);
        let out = cleanup.finish();
        assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32), "{end}");
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, usize::from(end == "default"), "{end}");
    }
}

#[test]
fn sig_cleanup_handles_a_sigterm_already_pending_when_it_starts() {
    // Blocked and pending at `exec`, SIGTERM is delivered the moment the
    // listing unblocks it: with the handler in place first, `--end return`
    // still makes its file, sees the flag, removes both and exits 143,
    // rather than dying of the signal before its first line.
    let dir = tempfile::tempdir().unwrap();
    let args = ["--end", "return", "--dir", dir.path().to_str().unwrap()];
    let mut cleanup = start_with_pending("TERM", bin!("sig-cleanup"), &args);
    cleanup.expect(r"Created \S+/file as pid \d+; try: kill \d+");
    cleanup.expect("Got SIGTERM: returning from run");
    let out = cleanup.finish();
    assert_eq!(out.status.code(), Some(143), "{:?}", out.status);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn sig_cleanup_sessions_match_the_book() {
    // Checks run in a temporary directory; blessing in the system's, as a
    // reader's run does, and then removes what `default` left there.
    let scratch = tempfile::tempdir().unwrap();
    let dir = (!blessing()).then_some(scratch.path());
    let (mut session, mut terminal2) = (Vec::new(), Vec::new());
    for end in ["default", "reraise"] {
        let (status, stdout, private, kill) = cleanup_run(end, dir);
        terminal2.push((kill, Vec::<String>::new()));
        session.push((cargo_run("sig-cleanup", &["--end", end]), stdout));
        session.push(("echo $?".to_string(), vec![dollar_question(status)]));
        let shown = format!("{}/", private.display());
        let ls = run("ls", &[&shown]);
        let mut listing = ls.stdout;
        listing.extend(ls.stderr.lines().map(String::from));
        session.push((format!("ls {shown}"), listing));
        if end == "default" {
            assert!(private.exists());
            let rm = run("rm", &["-r", &shown]);
            assert!(rm.status.success(), "{}", rm.stderr);
            session.push((format!("rm -r {shown}"), rm.stdout));
        } else {
            assert!(!private.exists());
        }
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch12-exiting/12-01-sig-cleanup.out", &session);
    assert_chapter_names_what_bash_prints(Signal::SIGTERM);
    let terminal2: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch12-exiting/12-01-terminal-2.out",
        &terminal2,
    );
}

/// What a shell stores in `$?` for a command killed by signal n: 128 + n
/// in bash and dash, and 256 + n in ksh93, as POSIX allows (it promises
/// only a number above 128). A command that exits 143 shows 143 in all
/// three: only ksh tells it from a death by SIGTERM.
#[test]
fn shells_store_128_plus_n_for_a_death_by_signal_but_ksh_256_plus_n() {
    let script = "sh -c 'kill -TERM $$'; echo $?; sh -c 'exit 143'; echo $?";
    for (shell, killed) in [("bash", "143"), ("dash", "143"), ("ksh", "271")] {
        if !have(shell) {
            continue;
        }
        let out = run(shell, &["-c", script]);
        assert!(out.status.success(), "{shell}: {}", out.stderr);
        assert_eq!(out.stdout, [killed, "143"], "{shell}");
    }
}

#[test]
fn sig_status_a_shell_tells_exit_130_from_death_by_sigint() {
    if !have("bash") || !have("dash") {
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
            "exit130  under dash -c: dash was killed by SIGINT ($? = 130)",
            "reraise  child alone:   was killed by SIGINT ($? = 130)",
            "reraise  under bash -c: bash was killed by SIGINT ($? = 130)",
            "reraise  under dash -c: dash was killed by SIGINT ($? = 130)",
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
fn dash_waits_for_its_child_then_dies_of_the_sigint() {
    // What chapter 12 says of dash: on Ctrl-C it still waits for the
    // command it runs, and only then dies of the SIGINT, whatever the
    // command's status. The command here takes half a second over its
    // clean-up, then exits 130.
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::CommandExt;
    if !have("bash") || !have("dash") {
        return;
    }
    let child = "trap 'sleep 0.5; echo cleaned up; exit 130' INT; \
                 echo ready; sleep 30 >/dev/null & wait";
    let mut dash = Command::new("dash");
    // Started from a script's background job, the test runner has SIGINT
    // ignored, and a shell started with it ignored may not catch it.
    crate::support::default_signals(&mut dash);
    let mut dash = dash
        .args(["-c", r#"bash -c "$0"; echo "the script went on""#, child])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("dash");
    let group = nix::unistd::Pid::from_raw(dash.id() as i32);
    let mut out = BufReader::new(dash.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    wait_until("dash to wait for its child", || {
        crate::support::wchan_of(group) == "do_wait"
    });
    let sent = std::time::Instant::now();
    nix::sys::signal::killpg(group, Signal::SIGINT).unwrap(); // Ctrl-C.
    let status = dash.wait().unwrap();
    let took = sent.elapsed();
    let _ = nix::sys::signal::killpg(group, Signal::SIGKILL); // The sleep.
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGINT as i32), "{status:?}");
    assert_eq!(rest, "cleaned up\n");
    // Dead at once, it would have ended long before the child's clean-up.
    assert!(
        took >= Duration::from_millis(500),
        "dash ended after {took:?}"
    );
}

#[test]
fn sig_inherit_children_keep_the_mask_and_what_is_ignored() {
    // Started with SIGHUP ignored, as `nohup` would start it.
    let bin = bin!("sig-inherit");
    let out = run("env", &["--ignore-signal=HUP", bin]);
    assert!(out.status.success(), "{}", out.stderr);
    let row = |who: &str| -> String {
        let line = out.stdout.iter().find(|l| l.starts_with(who)).expect(who);
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    // The first row is read before `restore_sigpipe`: it shows the
    // runtime's ignored SIGPIPE. std resets SIGPIPE for a Command (not
    // shown: it was restored to the default already) but keeps the mask
    // and SIGINT ignored. Resetting
    // everything loses the user's SIGHUP; restoring what the program
    // changed keeps it; the thread's mask reaches the child, the ignored
    // SIGINT does not go; exec resets what was caught; fork alone changes
    // nothing.
    let started = row("started with");
    assert!(
        started.starts_with(
            "started with ignores SIGHUP SIGPIPE blocks - catches"
        ),
        "{started:?}"
    );
    let parent = row("parent");
    assert!(
        parent.starts_with("parent ignores SIGHUP SIGINT blocks SIGUSR1")
            && parent.ends_with("SIGTERM"),
        "{parent:?}"
    );
    for (who, expected) in [
        ("Command", "ignores SIGHUP SIGINT blocks SIGUSR1 catches -"),
        ("reset all", "ignores - blocks - catches -"),
        ("restored", "ignores SIGHUP blocks - catches -"),
        ("thread mask", "ignores SIGHUP SIGINT blocks - catches -"),
        (
            "fork + exec",
            "ignores SIGHUP SIGINT blocks SIGUSR1 catches -",
        ),
    ] {
        assert_eq!(row(who), format!("{who} {expected}"));
    }
    assert_eq!(row("fork alone")[11..], row("parent")[7..]);
    assert_eq!(
        out.stdout.last().unwrap(),
        "sleep, sent SIGINT then SIGKILL: killed by SIGKILL"
    );
    assert_session_matches_book(
        "ch12-exiting/12-03-sig-inherit.out",
        &[(
            format!(
                "env --ignore-signal=HUP {}",
                cargo_run("sig-inherit", &[])
            ),
            &out.stdout,
        )],
    );
}

#[test]
fn sig_inherit_trace_shows_where_each_child_gets_its_mask() {
    // The posix_spawn child (clone3 with CLONE_VM|CLONE_VFORK) sets the
    // mask it was handed, the spawning thread's, just before execve; the
    // forked child of pre_exec sets its own.
    if !can_trace() {
        return;
    }
    let trace = Trace {
        calls: "clone,clone3,execve,rt_sigprocmask",
        signals: "none",
        from: None,
    };
    let shown = "strace -f -q -z -s 80 -e trace=clone,clone3,execve,\
                 rt_sigprocmask -e signal=none target/debug/sig-inherit";
    // `-z` leaves out the calls that failed: the execve of each directory
    // of PATH where `cat` is not, which differ from machine to machine.
    let path = bin_path("sig-inherit");
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-q", "-z", "-s", "80"])
        .args(["-e", &format!("trace={}", trace.calls), "-e", "signal=none"])
        .args(["--", "setpriv", "--pdeathsig", "KILL", "--"])
        .arg(&path);
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let child_sets_mask = regex::Regex::new(
        r"(?m)^\[pid +(\d+)\] rt_sigprocmask\(SIG_SETMASK, \[USR1\], NULL, 8\) = 0$",
    )
    .unwrap();
    assert!(child_sets_mask.is_match(&out.stderr), "{}", out.stderr);
    assert!(out.stderr.contains("clone3({flags=CLONE_VM|CLONE_VFORK"));
    assert_trace_matches_book(
        "ch12-exiting/12-03-sig-inherit.trace",
        shown,
        &trace,
        &out.stderr,
        &[(r"/\* \d+ vars \*/", "/* <n> vars */")],
    );
}

/// `unshare` with a new PID namespace, as root or through a user
/// namespace; `None` where the machine allows neither (skipped locally).
fn pid_namespace(args: &[&str]) -> Option<Listing> {
    if !pid_namespaces() {
        return None;
    }
    let mut all = vec!["--map-root-user", "--pid", "--fork", bin!("sig-init")];
    all.extend(args);
    Some(Listing::start("unshare", &all))
}

/// The service, `sig-init --child`, on a full disk: its first line fails
/// with ENOSPC, and it ends with a one-line error. Had it dropped its
/// iterator on the way out, the socket would close before signal-hook
/// unregistered its action, and the SIGTERM its init passes on in that
/// moment would raise SIGPIPE: a death by SIGPIPE, which the init would
/// report as status 141. strace fails the write, holds that close if it
/// comes, and sends the SIGTERM then.
#[test]
fn sig_init_child_on_a_full_disk_survives_a_sigterm_as_it_ends() {
    if !have("strace") {
        return;
    }
    let out = signal_after_iterator_closes_disk_full(
        bin!("sig-init"),
        &["--child"],
        Signal::SIGTERM,
        |_| {},
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?}: {}",
        out.status,
        out.stderr
    );
    assert!(out.stderr.starts_with("sig-init: "), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// Waits for `sig-init`'s two first lines, and returns the pids of it and
/// of its child as seen from outside the namespace.
fn init_started(
    init: &mut Listing,
    on_term: &str,
) -> (nix::unistd::Pid, nix::unistd::Pid) {
    let pid = |s: &str| nix::unistd::Pid::from_raw(s.parse().unwrap());
    let me = init.expect(&format!(
        r"Running as pid 1 \(pid (\d+) outside\); on SIGTERM: {on_term}"
    ));
    let child = init.expect(r"Child: running as pid 2 \(pid (\d+) outside\)");
    (pid(&me[1]), pid(&child[1]))
}

/// `sig-init --forward` outside a namespace, begun: its first line, with
/// its pid, which it returns, then its service's.
#[track_caller]
fn forwarder_started(init: &mut Listing) -> nix::unistd::Pid {
    let me = init
        .expect(r"Running as pid (\d+); on SIGTERM: forward it to the child");
    init.expect(r"Child: running as pid \d+");
    nix::unistd::Pid::from_raw(me[1].parse().unwrap())
}

/// The end of a `sig-init --forward` run, once it has been sent SIGTERM:
/// it passes it on to its service, pid `service` (a pattern) as it sees
/// it, which cleans up and dies of it, and the init exits 143.
#[track_caller]
fn assert_passes_sigterm_on_and_exits_143(mut init: Listing, service: &str) {
    init.expect(&format!("Got SIGTERM: passing it on to pid {service}"));
    init.expect("Child: got SIGTERM; cleaning up");
    init.expect("Child was killed by SIGTERM; exiting with 143");
    assert_eq!(init.finish().status.code(), Some(143));
}

/// `sig-init --forward` as the init of a new PID namespace, by the `exec`
/// that ends `sh -c "{before} exec sig-init --forward"`: `before` starts
/// a `sleep` that runs beside the service, the init's child or an orphan
/// it adopted (`what` it is, for the message). The init's line, then the
/// service's, whose number inside must match `inside` (a pattern).
/// Returns the init, its pid, the service's pid, the service's number
/// inside, and the sleep's pid.
#[track_caller]
fn init_beside_a_sleep(
    before: &str,
    inside: &str,
    what: &str,
) -> (
    Listing,
    nix::unistd::Pid,
    nix::unistd::Pid,
    String,
    nix::unistd::Pid,
) {
    let script = format!("{before} exec {} --forward", bin!("sig-init"));
    let args = ["--map-root-user", "--pid", "--fork", "sh", "-c", &script];
    let mut init = Listing::start("unshare", &args);
    let pid = |s: &str| nix::unistd::Pid::from_raw(s.parse().unwrap());
    let me = init.expect(
        r"Running as pid 1 \(pid (\d+) outside\); on SIGTERM: forward .*",
    );
    let me = pid(&me[1]);
    let service = init.expect(&format!(
        r"Child: running as pid ({inside}) \(pid (\d+) outside\)"
    ));
    let (number, service) = (service[1].clone(), pid(&service[2]));
    let children = format!("/proc/{me}/task/{me}/children");
    let listed =
        std::fs::read_to_string(children).expect("the init's children");
    let others: Vec<_> = listed
        .split_whitespace()
        .map(pid)
        .filter(|&p| p != service)
        .collect();
    assert_eq!(others.len(), 1, "{what}: {listed:?}");
    (init, me, service, number, others[0])
}

#[test]
fn sig_init_as_pid_1_drops_sigterm_until_it_takes_it_itself() {
    let Some(mut init) = pid_namespace(&[]) else {
        return;
    };
    let (pid, _) = init_started(&mut init, "nothing");
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    // Dropped, not pending: nothing will ever deliver it.
    assert!(init.no_line_within(Duration::from_secs(1)));
    assert_eq!(pending_signals(pid), Vec::<i32>::new());
    assert!(matches!(state_of(pid), Some('S')), "still running");
    nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    wait_until("SIGKILL to end it", || {
        matches!(state_of(pid), None | Some('Z'))
    });
}

#[test]
fn sig_init_that_exits_at_once_takes_its_child_down_without_a_clean_up() {
    let Some(mut init) = pid_namespace(&["--exit"]) else {
        return;
    };
    let (pid, child) = init_started(&mut init, "exit");
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    init.expect("Got SIGTERM: exiting at once");
    // When a namespace's init exits, the kernel kills everything else in
    // it with SIGKILL: the child's clean-up line never comes.
    let out = init.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        !out.stdout.iter().any(|l| l.contains("cleaning up")),
        "{:?}",
        out.stdout
    );
    assert!(
        matches!(state_of(child), None | Some('Z')),
        "the child is gone"
    );
}

#[test]
fn sig_init_forwards_sigterm_and_exits_with_the_childs_status() {
    let Some(mut init) = pid_namespace(&["--forward"]) else {
        return;
    };
    let (pid, _) = init_started(&mut init, "forward it to the child");
    let kill = format!("kill -TERM {pid}");
    let terminal2 = shell(&kill);
    init.expect("Got SIGTERM: passing it on to pid 2");
    init.expect("Child: got SIGTERM; cleaning up");
    // The service cleaned up and died of the signal, as Listing 12-1
    // teaches; the init, which cannot, passes that on as 128 + 15.
    init.expect("Child was killed by SIGTERM; exiting with 143");
    let out = init.finish();
    assert_eq!(out.status.code(), Some(143), "{}", out.stderr);
    let command = format!(
        "unshare --map-root-user --pid --fork {}",
        crate::support::built("sig-init", &["--forward"])
    );
    assert_session_matches_book(
        "ch12-exiting/12-04-sig-init.out",
        &[(command, &out.stdout)],
    );
    assert_session_matches_book(
        "ch12-exiting/12-04-terminal-2.out",
        &[(kill, &terminal2)],
    );
}

/// `--forward` passes each signal on as itself, as tini does: a SIGINT
/// reaches the service as SIGINT, and this service handles only SIGTERM,
/// so it dies of the default action, without its clean-up, and the init
/// exits 130. The header and the chapter say so.
#[test]
fn sig_init_forwards_sigint_as_sigint_which_its_child_does_not_handle() {
    let Some(mut init) = pid_namespace(&["--forward"]) else {
        return;
    };
    let (pid, _) = init_started(&mut init, "forward it to the child");
    nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
    init.expect("Got SIGINT: passing it on to pid 2");
    init.expect("Child was killed by SIGINT; exiting with 130");
    let out = init.finish();
    assert_eq!(out.status.code(), Some(130), "{}", out.stderr);
    assert!(
        !out.stdout.iter().any(|l| l.contains("cleaning up")),
        "{:?}",
        out.stdout
    );
}

/// `--forward` waits for, and passes on, SIGTERM and SIGINT alone. A
/// SIGHUP, meant to make the service reload, reaches the init only, with
/// its default action, and the kernel drops it: nothing is printed,
/// nothing stays pending, the service runs on, and a SIGTERM after it
/// ends the run as usual. A version that waited for SIGHUP too passed it
/// on, and the service, which does not handle it, died of it (129).
#[test]
fn sig_init_as_pid_1_drops_a_sighup_and_its_service_never_hears_it() {
    let Some(mut init) = pid_namespace(&["--forward"]) else {
        return;
    };
    let (pid, child) = init_started(&mut init, "forward it to the child");
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    assert!(
        init.no_line_within(Duration::from_secs(1)),
        "{:?}",
        init.transcript()
    );
    assert_eq!(pending_signals(pid), Vec::<i32>::new(), "dropped");
    assert_eq!(state_of(child), Some('S'), "the service runs on");
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    assert_passes_sigterm_on_and_exits_143(init, "2");
}

/// `--forward` passes the signal to the service it started, and to no
/// one else, and exits once that one is reaped: another process of the
/// namespace (here a `sleep` that the shell started before it became the
/// init, by `exec`) hears nothing, and is killed with the namespace when
/// the init exits. The service is held stopped while the test looks, so
/// that the init cannot exit meanwhile. A version that passed the signal
/// to every process of the namespace (`kill(-1, …)`) killed the `sleep`.
#[test]
fn sig_init_passes_the_signal_to_its_service_alone_and_waits_for_no_other() {
    if !pid_namespaces() {
        return;
    }
    let (mut init, me, service, _, sleep) = init_beside_a_sleep(
        "sleep 1000 &",
        "3",
        "the sleep beside the service",
    );
    nix::sys::signal::kill(service, Signal::SIGSTOP).unwrap();
    wait_until("the service to stop", || state_of(service) == Some('T'));
    nix::sys::signal::kill(me, Signal::SIGTERM).unwrap();
    init.expect("Got SIGTERM: passing it on to pid 3");
    // Said before it is sent: once the SIGTERM waits, pending, in the
    // stopped service, the init's `kill` is done. The sleep has none, and
    // runs on.
    let term = Signal::SIGTERM as i32;
    wait_until("the SIGTERM to wait in the stopped service", || {
        pending_signals(service).contains(&term)
    });
    assert_eq!(state_of(sleep), Some('S'), "the sleep got a signal");
    assert_eq!(pending_signals(sleep), Vec::<i32>::new());
    nix::sys::signal::kill(service, Signal::SIGCONT).unwrap();
    init.expect("Child: got SIGTERM; cleaning up");
    init.expect("Child was killed by SIGTERM; exiting with 143");
    let out = init.finish();
    assert_eq!(out.status.code(), Some(143), "{}", out.stderr);
    wait_until("the kernel to end the sleep with the namespace", || {
        matches!(state_of(sleep), None | Some('Z'))
    });
}

/// An orphan of the namespace is re-parented to its init, and the init
/// must reap it when it ends. Here a `sleep` whose parent, a subshell,
/// has exited before the shell becomes the init by `exec`: the test kills
/// it, and it must not stay a zombie. A version that reaped its service
/// alone left it `Z` until the init exited.
#[test]
fn sig_init_as_pid_1_reaps_an_orphan_it_adopted() {
    if !pid_namespaces() {
        return;
    }
    let (init, me, _, inside, orphan) =
        init_beside_a_sleep("(sleep 1000 &);", r"\d+", "the adopted sleep");
    nix::sys::signal::kill(orphan, Signal::SIGKILL).unwrap();
    wait_until("the init to reap the orphan", || state_of(orphan).is_none());
    nix::sys::signal::kill(me, Signal::SIGTERM).unwrap();
    assert_passes_sigterm_on_and_exits_143(init, &inside);
}

/// A child that ended before the init took SIGCHLD in hand (here one
/// already a zombie when its parent became the init by `exec`) sends no
/// SIGCHLD the init will take: it must be reaped all the same. (It stayed
/// a zombie until the init ended.)
#[test]
fn sig_init_reaps_a_zombie_it_inherits_through_exec() {
    if !have("python3") {
        return;
    }
    // WNOWAIT: wait until the child is a zombie, and leave it one.
    let script = format!(
        "import os, sys\n\
         pid = os.fork()\n\
         if pid == 0:\n    os._exit(0)\n\
         os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)\n\
         print(f'zombie {{pid}}', flush=True)\n\
         os.execv({init:?}, [{init:?}, '--forward'])\n",
        init = bin!("sig-init")
    );
    let mut init = Listing::start("python3", &["-c", &script]);
    let zombie = init.expect(r"zombie (\d+)")[1].parse().unwrap();
    let zombie = nix::unistd::Pid::from_raw(zombie);
    forwarder_started(&mut init);
    wait_until("the init to reap the zombie", || state_of(zombie).is_none());
    init.signal(Signal::SIGTERM);
    assert_passes_sigterm_on_and_exits_143(init, r"\d+");
}

#[test]
fn sig_init_outside_a_namespace_dies_of_sigterm_like_anyone() {
    let mut init = Listing::start(bin!("sig-init"), &[]);
    init.expect(r"Running as pid \d+; on SIGTERM: nothing");
    init.expect(r"Child: running as pid \d+");
    init.signal(Signal::SIGTERM);
    // Its child, told by the parent-death signal, cleans up and exits.
    init.expect("Child: got SIGTERM; cleaning up");
    let out = init.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
}

/// A SIGTERM passed on before the service has taken SIGTERM in hand
/// finds it at its default action: `exec` reset it, and the service was
/// given the init's first mask, SIGTERM unblocked. It dies at once, with
/// no clean-up, and the init reports the same 143 as after a clean stop;
/// the chapter says so. strace holds the service for a second at the end
/// of its `exec` (its first `execve`: strace counts each process's calls
/// apart, and the init's own `exec` is not held), the window a slow
/// service's start would be. The test sends the init its SIGTERM when
/// the init's first line comes, about when it starts the service, and
/// the init passes it on once `spawn` has returned, well within the
/// second; a service that got past the window would print its `running`
/// line, which fails the test. Linux 6.18, strace 6.1.
#[test]
fn sig_init_forwarding_to_a_service_still_starting_kills_it_without_a_clean_up()
{
    if !have("strace") {
        return;
    }
    let mut command = Command::new("strace");
    command.args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=execve"]);
    command.args(["-e", "inject=execve:delay_exit=1000000:when=1"]);
    command.args([bin!("sig-init"), "--forward"]);
    let mut init = Listing::spawn(&mut command, Stdio::piped());
    let me = init
        .expect(r"Running as pid (\d+); on SIGTERM: forward it to the child");
    let pid = nix::unistd::Pid::from_raw(me[1].parse().unwrap());
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    init.expect(r"Got SIGTERM: passing it on to pid \d+");
    init.expect("Child was killed by SIGTERM; exiting with 143");
    let out = init.finish();
    assert_eq!(out.status.code(), Some(143), "{}", out.stderr);
    assert!(
        !out.stdout.iter().any(|l| l.starts_with("Child:")),
        "the service never ran its code: {:?}",
        out.stdout
    );
    let chapter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch12-exiting.md"
    ))
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = "A status of 143 says that `SIGTERM` ended the service, \
                not that the service cleaned up.";
    assert!(chapter.contains(said), "ch12 does not say {said:?}");
}

#[test]
fn sig_init_forwards_and_exits_even_when_started_with_sigchld_ignored() {
    // An ignored SIGCHLD passes through exec, and with it the kernel
    // reaps the child itself and sends no SIGCHLD at all: an init that
    // waits for one would wait for ever after its child died.
    let mut command = Command::new("env");
    command.args(["--ignore-signal=CHLD", bin!("sig-init"), "--forward"]);
    let mut init = Listing::spawn(&mut command, Stdio::piped());
    forwarder_started(&mut init);
    init.signal(Signal::SIGTERM);
    assert_passes_sigterm_on_and_exits_143(init, r"\d+");
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
    assert_chapter_names_what_bash_prints(Signal::SIGUSR1);
}

/// A recorded session whose command dies of `signal` leaves out the line
/// that a reader's interactive bash prints then (bash 5.2, from
/// `strsignal`): the chapter must name it. (It did not, for 12-1's and
/// 12-5's sessions.)
fn assert_chapter_names_what_bash_prints(signal: Signal) {
    let line = match signal {
        Signal::SIGTERM => "Terminated",
        Signal::SIGUSR1 => "User defined signal 1",
        other => panic!("no line known for {other}"),
    };
    let chapter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch12-exiting.md"
    ))
    .unwrap();
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = format!("interactive bash also prints `{line}`");
    assert!(chapter.contains(&said), "ch12 does not say {said:?}");
}

#[test]
fn sig_test_threads_holds_when_started_with_sigusr1_blocked() {
    // A parent's mask passes through exec. Blocked, the raised SIGUSR1
    // would stay pending: the flag test would fail even when isolated,
    // and the threaded run would not die of it.
    let blocked = |args: &[&str]| {
        let mut command = Command::new("env");
        command
            .args(["--block-signal=USR1", bin!("sig-test-threads")])
            .args(args);
        Listing::spawn(&mut command, Stdio::piped()).finish()
    };
    let threads = blocked(&[]);
    assert_eq!(threads.status.signal(), Some(Signal::SIGUSR1 as i32));
    let isolated = blocked(&["--isolate"]);
    assert!(isolated.status.success(), "{:?}", isolated.stdout);
    assert_eq!(isolated.stdout.last().unwrap(), "2 passed; 0 failed");
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
    assert_rejects(bin!("sig-init"), &["--handle"], "invalid option");
    assert_rejects(bin!("sig-test-threads"), &["--case"], "missing argument");
    assert_rejects(bin!("sig-crash"), &["--case", "x"], "no case named 'x'");
}

#[test]
fn sig_cleanup_shows_the_directory_it_was_given_escaped_in_one_line() {
    // A newline in `--dir` must not start a line that looks like one of
    // the program's own: every message shows the path escaped.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("a\nb");
    std::fs::create_dir(&dir).unwrap();
    let shown = dir.to_str().unwrap().escape_debug().to_string();
    let mut command = Command::new(bin!("sig-cleanup"));
    command.args(["--end", "return", "--dir"]).arg(&dir);
    let mut cleanup = Listing::spawn(&mut command, Stdio::piped());
    let created = cleanup.next_line();
    assert!(
        created.starts_with(&format!("Created {shown}/sig-cleanup."))
            && created.contains("/file as pid "),
        "{created:?}"
    );
    cleanup.signal(Signal::SIGTERM);
    let out = cleanup.finish();
    assert_eq!(out.status.code(), Some(143), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 3, "one line a message: {:?}", out.stdout);
    assert_eq!(out.stdout[1], "Got SIGTERM: returning from run");
    assert!(
        out.stdout[2].starts_with(&format!("Drop: removed {shown}/")),
        "{:?}",
        out.stdout[2]
    );
    // A directory that is not there: one line, which names it.
    let missing = parent.path().join("gone\nx");
    let missing = missing.to_str().unwrap();
    assert_rejects(
        bin!("sig-cleanup"),
        &["--end", "return", "--dir", missing],
        &missing.escape_debug().to_string(),
    );
}

/// The system calls that make a file descriptor, and with them those that
/// start and replace processes, so that the check below knows whose calls
/// it reads.
const MAKERS: &str = "pipe,pipe2,socket,socketpair,accept,accept4,open,openat,\
                      signalfd,signalfd4,timerfd_create,eventfd2,\
                      epoll_create1,memfd_create,dup,fcntl,pidfd_open,\
                      clone,clone3,fork,vfork,execve";

/// The calls in a `strace -f` trace of `bin` that made a descriptor
/// without close-on-exec. Only the listing's own processes count: calls
/// made before it started (by `setpriv`) or by a program it ran (`cat`,
/// `sleep`) are someone else's.
fn made_without_cloexec(trace: &str, bin: &str) -> Vec<String> {
    use std::collections::HashMap;
    let prefixed = regex::Regex::new(r"^\[pid +(\d+)\] (.*)$").unwrap();
    let started =
        regex::Regex::new(r"^(?:clone3?|v?fork)\(.*= (\d+)$").unwrap();
    let exec = regex::Regex::new(r#"^execve\("([^"]*)".* = 0$"#).unwrap();
    let mut ours: HashMap<u32, bool> = HashMap::new();
    let mut pending: HashMap<u32, String> = HashMap::new();
    let mut first = None;
    let mut bad = Vec::new();
    for raw in trace.lines() {
        let (pid, rest) = match prefixed.captures(raw) {
            Some(c) => (c[1].parse().unwrap(), c[2].to_string()),
            None => (*first.get_or_insert(0), raw.to_string()),
        };
        // Join a call that strace cut in two.
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, head.to_string());
            continue;
        } else if let Some((_, tail)) = rest.split_once(" resumed>") {
            match pending.remove(&pid) {
                Some(head) => format!("{head}{tail}"),
                None => continue,
            }
        } else {
            rest
        };
        let mine = *ours.entry(pid).or_insert(false);
        if let Some(c) = exec.captures(&line) {
            ours.insert(pid, c[1].ends_with(&format!("/{bin}")));
            continue;
        }
        if let Some(c) = started.captures(&line) {
            ours.insert(c[1].parse().unwrap(), mine);
            continue;
        }
        if !mine || line.ends_with("= -1") || line.contains("= -1 E") {
            continue;
        }
        let call = line.split('(').next().unwrap_or("");
        let cloexec = match call {
            "pipe2" => line.contains("O_CLOEXEC"),
            "open" | "openat" => line.contains("O_CLOEXEC"),
            "socket" | "socketpair" | "accept4" => {
                line.contains("SOCK_CLOEXEC")
            }
            "signalfd4" => line.contains("SFD_CLOEXEC"),
            "timerfd_create" => line.contains("TFD_CLOEXEC"),
            "eventfd2" => line.contains("EFD_CLOEXEC"),
            "epoll_create1" => line.contains("EPOLL_CLOEXEC"),
            "memfd_create" => line.contains("MFD_CLOEXEC"),
            "pidfd_open" => true, // Always close-on-exec.
            "fcntl" => !line.contains("F_DUPFD,"),
            "pipe" | "accept" | "signalfd" | "dup" => false,
            _ => true,
        };
        if !cloexec {
            bad.push(line);
        }
    }
    bad
}

/// Runs `bin` under strace until it ends by itself or, once it is ready,
/// is sent `signal`; returns the calls that made a descriptor without
/// close-on-exec.
fn leaky_calls(
    bin: &str,
    args: &[&str],
    signal: Option<Signal>,
) -> Vec<String> {
    let trace = Trace {
        calls: MAKERS,
        signals: "none",
        from: None,
    };
    let path = bin_path(bin);
    let mut listing =
        Listing::start_traced(path.to_str().unwrap(), args, &trace);
    if let Some(signal) = signal {
        listing.next_line();
        let pid = listing.tracee();
        nix::sys::signal::kill(pid, signal).unwrap();
    }
    let out = listing.finish();
    made_without_cloexec(&out.stderr, bin)
}

#[test]
fn every_descriptor_a_part_ii_listing_makes_is_close_on_exec() {
    if !can_trace() {
        return;
    }
    let term = Some(Signal::SIGTERM);
    let runs: &[(&str, &[&str], Option<Signal>)] = &[
        ("sig-selfpipe", &[], term),
        ("sig-errno", &[], None),
        ("sig-signalfd", &[], term),
        // SIGUSR2's handler feeds the read, whenever it comes.
        ("sig-eintr", &[], Some(Signal::SIGUSR2)),
        ("sig-restart-table", &[], None),
        ("sig-reaper", &["--hold"], None),
        ("sig-orphan", &["--subreaper"], None),
        ("sig-group", &[], None),
        ("sig-daemon", &["127.0.0.1:0"], term),
        ("sig-timers", &[], None),
        ("sig-count", &[], None),
        ("sig-inherit", &[], None),
    ];
    let mut leaks = Vec::new();
    for (bin, args, signal) in runs {
        for call in leaky_calls(bin, args, *signal) {
            leaks.push(format!("{bin}: {call}"));
        }
    }
    assert!(leaks.is_empty(), "made without close-on-exec:\n{leaks:#?}");
}

/// The signals blocked in a thread, from the `SigBlk` line of its status
/// in /proc (a mask belongs to a thread).
fn blocked(status_path: &str) -> String {
    let status = std::fs::read_to_string(status_path).expect(status_path);
    let line = status.lines().find(|l| l.starts_with("SigBlk:"));
    line.expect("a SigBlk line").to_string()
}

#[test]
fn libtest_runs_each_test_on_a_new_thread_with_the_main_threads_mask() {
    // Chapter 12: masks cannot leak from one test into the next, because
    // each test runs on a thread of its own, which libtest names after it.
    let me = std::thread::current();
    assert_eq!(
        me.name(),
        Some(
            "ch12_exiting::\
             libtest_runs_each_test_on_a_new_thread_with_the_main_threads_mask"
        )
    );
    let pid = nix::unistd::getpid();
    assert_ne!(nix::unistd::gettid(), pid, "not the main thread");
    // Its mask is the main thread's, whatever earlier tests blocked on
    // their own threads. (For the moment it creates a thread, glibc's
    // `pthread_create` blocks every signal in the creating thread, and
    // libtest's main thread creates one per test: read it between two.)
    let main = format!("/proc/self/task/{pid}/status");
    let mut at_rest = String::new();
    wait_until("the main thread between two spawns", || {
        at_rest = blocked(&main);
        !at_rest.ends_with("fffffffffffbfeff")
    });
    assert_eq!(blocked("/proc/thread-self/status"), at_rest);
    // A thread takes its creator's mask: a test's blocked signal goes with
    // the threads it starts, and ends with them.
    nix::sys::signal::SigSet::from(Signal::SIGUSR2)
        .thread_block()
        .unwrap();
    let child = std::thread::spawn(|| blocked("/proc/thread-self/status"))
        .join()
        .unwrap();
    assert_eq!(child, blocked("/proc/thread-self/status"));
    assert_ne!(child, at_rest);
}

#[test]
fn sig_crash_shows_how_a_program_dies_of_its_own_faults() {
    // In a temporary directory of our own: the listing makes its private
    // one there, and must leave nothing behind, core files included.
    let tmp = tempfile::tempdir().unwrap();
    let mut command = Command::new(bin!("sig-crash"));
    command.env("TMPDIR", tmp.path());
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let rows: Vec<String> = out
        .stdout
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let expected = [
        "bad read, no handler of ours: killed by SIGSEGV, core dumped: false",
        "bad read, handler returns: \"handler ran 1000 times\"; killed by \
         SIGSEGV, core dumped: false",
        "stack overflow, no SA_ONSTACK: killed by SIGSEGV, core dumped: false",
        "stack overflow, SA_ONSTACK: \"handler ran, on the alternate \
         stack\"; killed by SIGSEGV, core dumped: false",
        "SIGQUIT, RLIMIT_CORE 0: killed by SIGQUIT, core dumped: false",
    ];
    for row in expected {
        assert!(rows.iter().any(|r| r == row), "no {row:?} in {rows:#?}");
    }
    assert!(
        rows.iter().any(|r| r.starts_with("stack overflow, Rust's handler: \"thread 'main'")
            && r.ends_with("has overflowed its stack\"; killed by SIGABRT, core dumped: false")),
        "{rows:#?}"
    );
    // Whether a core is written, and where, is the machine's choice:
    // checked where the kernel writes it as `core` in the working
    // directory, as on the machine that recorded the book's output.
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern")
        .unwrap_or_default();
    if pattern.trim() == "core" {
        let hard = rows
            .iter()
            .position(|r| r.starts_with("SIGQUIT, RLIMIT_CORE hard limit:"))
            .expect("the hard limit row");
        assert_eq!(
            rows[hard],
            "SIGQUIT, RLIMIT_CORE hard limit: killed by SIGQUIT, core dumped: true"
        );
        assert_eq!(rows[hard + 1], "it left \"core\"");
        assert_session_matches_book_masking(
            "ch12-exiting/12-06-sig-crash.out",
            &[(cargo_run("sig-crash", &[]), &out.stdout)],
            &[(r"\(\d+\) has overflowed", "(<tid>) has overflowed")],
        );
    } else {
        eprintln!("core_pattern is {pattern:?}: the core row is not checked");
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn sig_init_as_pid_1_outlives_a_closed_output() {
    // Its output is a pipe whose reader is gone. The kernel drops SIGPIPE
    // for PID 1, so `println!` would panic (status 101), and the child
    // would die with the init; the init goes on, and its child, which is
    // no init, dies of SIGPIPE on its first line: 128 + 13.
    if pid_namespace(&["--help"]).is_none() {
        return;
    }
    let mut command = std::process::Command::new("unshare");
    command.args(["--map-root-user", "--pid", "--fork", bin!("sig-init")]);
    command.arg("--forward");
    let stdout = crate::support::stdout_to_a_widowed_pipe(&mut command);
    let init = Listing::spawn(&mut command, stdout);
    let out = init.finish();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(out.status.code(), Some(128 + 13), "{:?}", out.status);
}

#[test]
fn sig_cleanup_as_pid_1_cleans_up_then_cannot_die_of_its_signal() {
    // The raise after the clean-up is dropped for an init, and
    // emulate_default_handler's abort ends in a SIGSEGV; unshare then dies
    // of its child's signal. No core: RLIMIT_CORE 0, in a directory of its
    // own.
    if pid_namespace(&["--help"]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("prlimit");
    command
        .args(["--core=0", "unshare", "--map-root-user", "--pid", "--fork"])
        .args([bin!("sig-cleanup"), "--end", "reraise", "--dir"])
        .arg(dir.path())
        .current_dir(dir.path());
    let mut cleanup = Listing::spawn(&mut command, Stdio::piped());
    // The `kill` it suggests is for the reader's shell, outside: not
    // `kill 1`, the machine's init, but its own pid as seen from there.
    let made = cleanup.expect(
        r"Created \S+/file as pid 1 \(pid (\d+) outside\); try: kill (\d+)",
    );
    assert_eq!(made[1], made[2], "{made:?}");
    let unshare = cleanup.pid();
    let children = std::fs::read_to_string(format!(
        "/proc/{unshare}/task/{unshare}/children"
    ))
    .unwrap();
    assert_eq!(children.trim(), made[2], "unshare's child");
    shell(&format!("kill {}", made[2]));
    cleanup.expect("Got SIGTERM: returning from run");
    cleanup.expect(r"Drop: removed \S+/");
    let out = cleanup.finish();
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGSEGV as i32),
        "{:?}",
        out.status
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no core");
}

/// Starts `bin args` as `env OPTION bin args`, e.g.
/// `--ignore-signal=QUIT`: as a parent may start it, with a signal
/// ignored or blocked, which pass through fork and exec.
fn run_under_env(
    option: &str,
    bin: &str,
    args: &[&str],
) -> crate::support::Finished {
    let mut command = Command::new("env");
    command.arg(option).arg(bin).args(args);
    Listing::spawn(&mut command, Stdio::piped()).finish()
}

#[test]
fn sig_status_refuses_to_run_with_sigint_ignored() {
    // A non-interactive shell cannot take back a SIGINT ignored on entry:
    // under `&` in a script, bash and dash would simply go on.
    let out = run_under_env("--ignore-signal=INT", bin!("sig-status"), &[]);
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stdout);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("SIGINT is ignored"), "{}", out.stderr);
}

#[test]
fn sig_status_children_take_sigint_even_when_started_with_it_blocked() {
    if !have("bash") || !have("dash") {
        return;
    }
    let out = run_under_env("--block-signal=INT", bin!("sig-status"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    for row in [
        "exit130  child alone:   exited with status 130 ($? = 130)",
        "reraise  child alone:   was killed by SIGINT ($? = 130)",
        "reraise  under bash -c: bash was killed by SIGINT ($? = 130)",
    ] {
        assert!(
            out.stdout.iter().any(|l| l == row),
            "{row}: {:?}",
            out.stdout
        );
    }
}

#[test]
fn sig_crash_dies_of_sigquit_even_if_it_was_ignored_or_blocked() {
    // A script's `&` job starts with SIGQUIT ignored.
    for option in ["--ignore-signal=QUIT", "--block-signal=QUIT"] {
        let out = run_under_env(option, bin!("sig-crash"), &["--case", "quit"]);
        assert_eq!(
            out.status.signal(),
            Some(Signal::SIGQUIT as i32),
            "{option}: {:?} {}",
            out.status,
            out.stderr
        );
        assert!(!out.status.core_dumped(), "{option}: RLIMIT_CORE is 0");
    }
}

#[test]
fn sig_crash_handlers_run_even_when_started_with_sigsegv_blocked() {
    // A parent's mask passes through exec. A fault on a blocked SIGSEGV
    // is forced: the kernel puts back the default action and unblocks it
    // (force_sig_info_to_task(), kernel/signal.c; Linux 6.18 here), so
    // neither the listing's handler nor Rust's would ever run. Each case
    // unblocks SIGSEGV and SIGBUS first.
    for (case, said) in [
        ("returns", "handler ran 1000 times"),
        ("onstack", "handler ran, on the alternate stack"),
        ("overflow", "has overflowed its stack"),
    ] {
        for option in ["--block-signal=SEGV", "--block-signal=SEGV,BUS"] {
            let out =
                run_under_env(option, bin!("sig-crash"), &["--case", case]);
            let both = format!("{}{}", out.stdout.join("\n"), out.stderr);
            assert!(both.contains(said), "{case} {option}: {both:?}");
        }
    }
}

#[test]
fn listings_that_wait_for_children_work_even_when_started_with_sigchld_ignored()
{
    // An ignored SIGCHLD passes through exec, and makes the kernel reap
    // the children itself: `waitpid` would fail with ECHILD. Each listing
    // puts SIGCHLD back to its default before it starts a child.
    for (bin, args) in [
        (bin!("sig-status"), &[][..]),
        (bin!("sig-inherit"), &[]),
        (bin!("sig-test-threads"), &["--isolate"]),
        (bin!("sig-crash"), &[]),
    ] {
        let out = run_under_env("--ignore-signal=CHLD", bin, args);
        assert!(
            out.status.success(),
            "{bin}: {:?} {}",
            out.status,
            out.stderr
        );
        assert_eq!(out.stderr, "", "{bin}");
    }
}

#[test]
fn sig_inherit_gives_a_child_back_the_sigchld_it_found_ignored() {
    // SIGCHLD is the fourth thing it changes: put back to its default for
    // its own waits, and given back by `restored`, as it was found.
    let out = run_under_env("--ignore-signal=CHLD", bin!("sig-inherit"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let row = |who: &str| {
        out.stdout
            .iter()
            .find(|line| line.starts_with(who))
            .unwrap_or_else(|| panic!("{who}: {:?}", out.stdout))
            .clone()
    };
    assert!(row("started with").contains("SIGCHLD"), "{:?}", out.stdout);
    assert!(!row("parent").contains("SIGCHLD"), "{:?}", out.stdout);
    assert!(!row("Command").contains("SIGCHLD"), "{:?}", out.stdout);
    assert!(row("restored").contains("SIGCHLD"), "{:?}", out.stdout);
}

/// Started with SIGPIPE blocked, the listing's first row must say so, and
/// `restored` must give the child that mask back: `restore_sigpipe`'s
/// unblocking is one of the changes this program makes, and "only what
/// this program changed" is undone. (The row was read after that
/// unblocking, and showed `blocks -`; `restored` gave the child an
/// unblocked SIGPIPE.) `Command` passes the mask as it is now.
#[test]
fn sig_inherit_notes_and_gives_back_a_sigpipe_found_blocked() {
    let out = run_under_env("--block-signal=PIPE", bin!("sig-inherit"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let row = |who: &str| {
        let line = out
            .stdout
            .iter()
            .find(|line| line.starts_with(who))
            .unwrap_or_else(|| panic!("{who}: {:?}", out.stdout));
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let blocks = |who: &str| {
        let row = row(who);
        let (_, after) = row.split_once(" blocks ").expect("a blocks column");
        let (list, _) = after.split_once(" catches ").expect("catches");
        list.to_string()
    };
    assert_eq!(blocks("started with"), "SIGPIPE", "{:?}", out.stdout);
    assert_eq!(blocks("parent"), "SIGUSR1", "{:?}", out.stdout);
    assert_eq!(blocks("Command"), "SIGUSR1", "{:?}", out.stdout);
    assert_eq!(blocks("restored"), "SIGPIPE", "{:?}", out.stdout);
}

/// Where `tool` is on the test's own PATH.
fn on_path(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|file| file.is_file())
        .unwrap_or_else(|| panic!("no {tool} on PATH"))
}

/// `fork + exec`'s child cannot run `cat`: it must not look like a child
/// that did. The listing runs alone on a private PATH, whose `cat` is the
/// test's: it runs the real one, and on its fourth run (`thread mask`)
/// takes itself away, so that the fifth `cat`, `fork + exec`'s `execvp`,
/// is not found. The child exited 0, and the listing printed a row for a
/// child with nothing ignored, blocked or caught, and exited 0; it must
/// exit 127, as a shell says "not found", and the listing say so.
#[test]
fn sig_inherit_says_so_when_its_forked_child_cannot_exec() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("cat");
    let script = format!(
        "#!/bin/sh\n\
         echo >> \"$0.runs\"\n\
         n=0\n\
         while read -r _; do n=$((n + 1)); done < \"$0.runs\"\n\
         if [ \"$n\" -ge 4 ]; then {rm} -f \"$0\"; fi\n\
         exec {cat} \"$@\"\n",
        rm = on_path("rm").display(),
        cat = on_path("cat").display(),
    );
    // Written by a child, not by this process: a file of ours open for
    // writing is inherited by every child another test forks meanwhile,
    // until its `exec`, and an `execve` of the file then fails with
    // ETXTBSY ("sig-inherit: Text file busy", seen in a full run).
    let made = Command::new("sh")
        .args(["-c", "printf %s \"$2\" > \"$1\" && chmod 755 \"$1\""])
        .args(["sh", cat.to_str().unwrap(), &script])
        .status()
        .unwrap();
    assert!(made.success(), "the test's cat: {made:?}");
    // For the `sleep` that follows, reached only when the failure is
    // missed.
    std::os::unix::fs::symlink(on_path("sleep"), dir.path().join("sleep"))
        .unwrap();
    let mut command = Command::new(bin!("sig-inherit"));
    command.env("PATH", dir.path());
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?}: {:#?}",
        out.status,
        out.stdout
    );
    // One line, naming the row, as for the other children.
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("sig-inherit: the fork + exec child failed")
            && out.stderr.contains("127"),
        "{}",
        out.stderr
    );
    let forked = out.stdout.iter().any(|line| line.starts_with("fork"));
    assert!(!forked, "{:#?}", out.stdout);
}

#[test]
fn sig_init_leaves_a_sigint_ignored_when_it_was_started_so() {
    // A script's `&` job starts with SIGINT ignored. Blocked for `sigwait`,
    // an ignored SIGINT would still be queued, and taken: the init must
    // not block it then.
    let mut command = Command::new("env");
    command.args(["--ignore-signal=INT", bin!("sig-init"), "--exit"]);
    let mut init = Listing::spawn(&mut command, Stdio::piped());
    init.expect(r"Running as pid \d+; on SIGTERM: exit");
    init.expect(r"Child: running as pid \d+");
    init.signal(Signal::SIGINT);
    assert!(
        init.no_line_within(Duration::from_secs(1)),
        "SIGINT was taken"
    );
    init.signal(Signal::SIGTERM);
    init.expect("Got SIGTERM: exiting at once");
    assert!(init.finish().status.success());
}

#[test]
fn sig_inherit_ends_and_reaps_its_sleep_when_the_sigint_cannot_be_sent() {
    // strace makes the first `kill`, the SIGINT to `sleep 30`, fail. The
    // listing reports that in one line, and its `sleep` must not outlive
    // it unreaped: every child it started, it reaps. (strace waits for
    // every process it traces: a `sleep` left running holds it 30 s.)
    if !crate::support::have("strace") {
        return;
    }
    let refused = [
        "trace=clone,clone3,vfork,wait4,kill",
        "inject=kill:error=EPERM:when=1",
    ];
    let (out, started, reaped, text) =
        forked_and_reaped(bin!("sig-inherit"), &[], &refused, Stdio::piped());
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("sig-inherit: EPERM"),
        "{}",
        out.stderr
    );
    assert!(started.len() >= 7, "{text}");
    assert_eq!(reaped, started, "{text}");
}

#[test]
fn sig_inherit_restored_child_runs_no_handler_of_its_parent() {
    // strace stops each child with SIGSTOP, which no mask holds back, at
    // its first dup2 (its stdout onto the pipe), which a forked child
    // makes before its `pre_exec`. There the test sends SIGTERM to the
    // third, `restored`'s, and lets each go on with SIGCONT. The parent
    // catches SIGTERM: its handler would run in that child and the signal
    // be lost, unless the parent blocked every signal for the fork; then
    // the signal waits, and kills the child once the closure has put the
    // default action back and set the mask, and the listing says so.
    // (strace once sent SIGTERM to every child itself: the `posix_spawn`
    // children of `Command` and `thread mask` died of it too, and the
    // listing, which checks each child, now stops at the first.)
    if !crate::support::have("strace") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trace = dir.path().join("trace");
    let strace = [
        "-f",
        "-q",
        "-o",
        trace.to_str().expect("a UTF-8 path"),
        "-e",
        "trace=clone,clone3,dup2",
        "-e",
        "inject=dup2:signal=SIGSTOP:when=1",
        bin!("sig-inherit"),
    ];
    let listing = Listing::start("strace", &strace);
    let stopped =
        regex::Regex::new(r"(?m)^(\d+) +--- stopped by SIGSTOP ---$").unwrap();
    let mut seen: Vec<nix::unistd::Pid> = Vec::new();
    wait_until("the listing to end", || {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        for caps in stopped.captures_iter(&text) {
            let pid = nix::unistd::Pid::from_raw(caps[1].parse().unwrap());
            if seen.contains(&pid) {
                continue;
            }
            seen.push(pid);
            if seen.len() == 3 {
                nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
            }
            nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
        }
        state_of(listing.pid()) == Some('Z')
    });
    let out = listing.finish();
    let text = std::fs::read_to_string(&trace).expect("the trace");
    let restored = seen.get(2).unwrap_or_else(|| panic!("{text}"));
    let ended = format!("{restored} +++ killed by SIGTERM +++");
    assert!(
        text.lines().any(|l| l
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            == ended),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?}: {}",
        out.status,
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("sig-inherit: the restored child failed")
            && out.stderr.contains("SIGTERM"),
        "{}",
        out.stderr
    );
}

#[test]
fn sig_init_forwards_even_when_started_with_sigterm_blocked() {
    // The child gets the mask the init started with, SIGTERM blocked here:
    // the service unblocks the signal it handles, or it would never come.
    let mut command = Command::new("env");
    command.args(["--block-signal=TERM", bin!("sig-init"), "--forward"]);
    let mut init = Listing::spawn(&mut command, Stdio::piped());
    forwarder_started(&mut init);
    init.signal(Signal::SIGTERM);
    assert_passes_sigterm_on_and_exits_143(init, r"\d+");
}

#[test]
fn sig_crash_keeps_its_directory_private_for_every_case() {
    // mkdtemp makes it 0700, once; emptying it between cases keeps it so,
    // where removing and re-creating it would make it 0755, under a name
    // that anyone could take in between.
    if !can_trace() {
        return;
    }
    let mut command = Command::new("strace");
    command
        .args(["-f", "-q", "-e", "trace=mkdir,mkdirat", "-e", "signal=none"])
        .arg(bin_path("sig-crash"));
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let made: Vec<_> =
        out.stderr.lines().filter(|l| l.contains("mkdir")).collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].contains("sig-crash.") && made[0].contains("0700"));
}

#[test]
fn sig_status_ends_and_reaps_its_child_when_it_cannot_send_the_ctrl_c() {
    // strace makes the first `kill`, the Ctrl-C to the first child's
    // group, fail. The listing reports that in one line; the child, which
    // waits for that SIGINT, must not outlive it unreaped.
    if !crate::support::have("strace") {
        return;
    }
    let refused = [
        "trace=clone,clone3,wait4,kill",
        "inject=kill:error=EPERM:when=1",
    ];
    let (out, started, reaped, text) =
        forked_and_reaped(bin!("sig-status"), &[], &refused, Stdio::piped());
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("sig-status: EPERM"),
        "{}",
        out.stderr
    );
    assert_eq!(started.len(), 1, "{text}");
    assert_eq!(reaped, started, "{text}");
}

/// The service gets the mask the init started with, SIGPIPE blocked here,
/// as Listing 12-3's children do: the init reads it before its own
/// `restore_sigpipe` unblocks SIGPIPE. The service unblocks SIGPIPE at
/// once itself, so the test reads the mask the init's child sets just
/// before its `execve`, in a strace trace. strace 6.1, Linux 6.18.
#[test]
fn sig_init_gives_its_service_a_sigpipe_found_blocked() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let mut command = Command::new("strace");
    command.args(["-f", "-qq", "-e", "trace=rt_sigprocmask,execve", "-o"]);
    command.arg(&trace);
    command.args(["env", "--block-signal=PIPE", bin!("sig-init")]);
    command.arg("--forward");
    let mut init = Listing::spawn(&mut command, Stdio::piped());
    let pid = forwarder_started(&mut init);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    init.expect(r"Got SIGTERM: passing it on to pid \d+");
    init.expect("Child: got SIGTERM; cleaning up");
    init.expect("Child was killed by SIGTERM; exiting with 143");
    assert_eq!(init.finish().status.code(), Some(143));
    let trace = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let exec = lines
        .iter()
        .position(|line| line.contains("execve(") && line.contains("--child"))
        .unwrap_or_else(|| panic!("no execve of the service: {trace}"));
    let child = lines[exec].split_whitespace().next().unwrap();
    let set = lines[..exec]
        .iter()
        .rev()
        // strace pads the pid to five places: "123   rt_sigprocmask(".
        .find(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some(child)
                && words
                    .next()
                    .is_some_and(|w| w.starts_with("rt_sigprocmask("))
        })
        .unwrap_or_else(|| panic!("no mask set by {child}: {trace}"));
    assert!(set.contains("SIG_SETMASK, [PIPE]"), "{set}");
}

/// `unshare --mount-proc` gives the namespace a /proc of its own, whose
/// NSpid line lists only the pid inside: a pid 1 there suggests no `kill
/// 1`, which from the reader's shell outside would signal the machine's
/// init, but says how to find its pid from there.
fn under_mount_proc(bin: &str, args: &[&str]) -> Option<Listing> {
    if !pid_namespaces() {
        return None;
    }
    let mut command = Command::new("unshare");
    command.args(["--map-root-user", "--pid", "--fork", "--mount-proc"]);
    command.arg(bin).args(args);
    Some(Listing::spawn(&mut command, Stdio::piped()))
}

/// SIGKILL to `unshare`'s child, the namespace's init.
fn kill_init_of(listing: &Listing) {
    let unshare = listing.pid();
    let children = std::fs::read_to_string(format!(
        "/proc/{unshare}/task/{unshare}/children"
    ))
    .unwrap();
    let child = nix::unistd::Pid::from_raw(children.trim().parse().unwrap());
    nix::sys::signal::kill(child, Signal::SIGKILL).unwrap();
}

#[test]
fn sig_cleanup_as_pid_1_with_its_own_proc_suggests_no_kill_1() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let Some(mut cleanup) = under_mount_proc(
        bin!("sig-cleanup"),
        &["--end", "default", "--dir", dir_arg],
    ) else {
        return;
    };
    cleanup.expect(
        r"Created \S+/file as pid 1; find its pid outside with: pgrep -n sig-cleanup",
    );
    kill_init_of(&cleanup);
    cleanup.finish();
}

#[test]
fn sig_init_as_pid_1_with_its_own_proc_says_how_to_find_its_pid() {
    let Some(mut init) = under_mount_proc(bin!("sig-init"), &["--forward"])
    else {
        return;
    };
    let hint = init.expect(
        r"Running as pid 1 \(find it outside with: (pgrep [^)]+)\); on SIGTERM: forward it to the child",
    );
    // The hint must name the init, not its service, which has the same
    // name and is younger: the first version said `pgrep -n`, the newest,
    // and a SIGTERM sent there went to the service. Run it here within
    // the namespace (`--ns`), so that other tests' sig-init are not seen.
    let unshare = init.pid();
    let children = || {
        std::fs::read_to_string(format!(
            "/proc/{unshare}/task/{unshare}/children"
        ))
        .unwrap_or_default()
    };
    let pid1: i32 = children().trim().parse().unwrap();
    wait_until("the init's service to start", || {
        std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children"))
            .is_ok_and(|c| !c.trim().is_empty())
    });
    let mut words: Vec<String> =
        hint[1].split_whitespace().map(str::to_string).collect();
    words.extend([
        "--ns".into(),
        pid1.to_string(),
        "--nslist".into(),
        "pid".into(),
    ]);
    let found = std::process::Command::new(&words[0])
        .args(&words[1..])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        pid1.to_string(),
        "{:?} named another process than the init",
        hint[1]
    );
    kill_init_of(&init);
    init.finish();
}

/// Without `--exit` or `--forward`, SIGTERM keeps its default action:
/// outside a namespace the init dies of it, even when its parent left it
/// blocked (coreutils' `env --block-signal`). The first version never
/// unblocked it in that mode, and the SIGTERM stayed queued.
#[test]
fn sig_init_without_a_flag_dies_of_sigterm_its_parent_had_blocked() {
    let mut init =
        Listing::start("env", &["--block-signal=TERM", bin!("sig-init")]);
    init.expect(r"Running as pid \d+; on SIGTERM: nothing");
    init.signal(Signal::SIGTERM);
    let out = init.finish();
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGTERM as i32),
        "{}",
        out.stderr
    );
}

/// `sig-status | head -1`: the reader goes after the first line, while
/// the listing runs its `bash -c` child. Passing on what the script
/// printed then kills the listing by SIGPIPE, which it keeps at its
/// default, so it must have reaped that child first, not leave it to init.
/// The first version wrote before it waited. Run under `strace -f` with a
/// pipe whose reader reads one line and closes it; strace 6.1, Linux 6.18.
#[test]
fn sig_status_reaps_its_child_before_a_reader_gone_after_one_line_kills_it() {
    if !have("strace") {
        return;
    }
    // `head -n 1` and its pipe are made in strace's child, never here
    // (`stdout_to_a_reader_of_one_line` says why).
    let (out, started, reaped, text) = crate::support::forked_and_reaped_with(
        bin!("sig-status"),
        &[],
        &[],
        crate::support::stdout_to_a_reader_of_one_line,
    );
    let line = out.stdout.join("\n");
    assert!(line.starts_with("exit130  child alone:"), "{line:?}");
    // strace ends as its tracee did: by SIGPIPE, at a write after that line.
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGPIPE as i32),
        "{:?} {}",
        out.status,
        out.stderr
    );
    assert!(started.len() >= 2, "the direct child and a shell: {text}");
    assert_eq!(reaped, started, "every child reaped: {text}");
}

/// `all_blocked` puts the spawning thread's mask back when `spawn`
/// returns, and on the fork path std returns only once the child's
/// `execve` has closed its close-on-exec pipe: strace delays each
/// process's first `execve` by 0.3 s, and the parent's `SIG_SETMASK` comes
/// at least that long after the child's last mask call. strace 6.1, Linux
/// 6.18; `-ff` writes each process's calls to a file of its own.
#[test]
fn sig_inherit_all_blocked_keeps_the_mask_until_the_child_has_execd() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let prefix = dir.path().join("trace");
    let mut command = Command::new("strace");
    command.args(["-ff", "-q", "-ttt", "-o"]).arg(&prefix);
    command.args(["-e", "trace=clone,clone3,execve,rt_sigprocmask"]);
    command.args(["-e", "signal=none"]);
    command.args(["-e", "inject=execve:delay_enter=300000:when=1"]);
    command.arg(bin!("sig-inherit"));
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let of = |pid: &str| {
        let path = format!("{}.{pid}", prefix.display());
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // Each line: seconds since the epoch, then the call.
    let time = |line: &str| -> f64 {
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    // The listing's own file: the one with `all_blocked`'s block.
    let all_blocked = "rt_sigprocmask(SIG_BLOCK, ~[RTMIN RT_1], [USR1]";
    let parent = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .find(|calls| calls.contains(all_blocked))
        .expect("a process that ran all_blocked");
    let mut calls = parent.lines();
    calls.find(|l| l.contains(all_blocked));
    let forked = calls.find(|l| l.contains(" clone(")).expect("the fork");
    let child = forked.rsplit(" = ").next().unwrap();
    let back = calls
        .find(|l| l.contains("rt_sigprocmask(SIG_SETMASK, [USR1], NULL"))
        .expect("the mask put back");
    let child_calls = of(child);
    let last = child_calls
        .lines()
        .rfind(|l| l.contains("rt_sigprocmask("))
        .unwrap_or_else(|| panic!("no mask call in the child:\n{child_calls}"));
    let held = time(back) - time(last);
    assert!(held >= 0.3, "held {held} s:\n{last}\n{back}");
}

/// An init reaps whatever killed its children, real-time signals included,
/// which nix 0.32's `waitpid` cannot name: the listing once failed with
/// "sig-init: EINVAL: Invalid argument" at an orphan killed by SIGRTMIN,
/// and an init that exits ends every process of its namespace, the
/// service included. It reaps the orphan and carries on, and reports a
/// service killed so as 128 + n (Linux 6.18: SIGRTMIN is 34 with glibc).
#[test]
fn sig_init_carries_on_when_a_child_dies_of_a_real_time_signal() {
    if !pid_namespaces() {
        return;
    }
    let rtmin = nix::libc::SIGRTMIN();
    let (mut init, me, service, _, orphan) =
        init_beside_a_sleep("(sleep 1000 &);", r"\d+", "the adopted sleep");
    // SAFETY: a plain kill(2) of a process not yet reaped.
    assert_eq!(unsafe { nix::libc::kill(orphan.as_raw(), rtmin) }, 0);
    wait_until("the init to reap the orphan", || state_of(orphan).is_none());
    assert_eq!(state_of(me).map(|s| s != 'Z'), Some(true), "the init ended");
    assert_eq!(state_of(service).map(|s| s != 'Z'), Some(true));
    // SAFETY: as above, the service.
    assert_eq!(unsafe { nix::libc::kill(service.as_raw(), rtmin) }, 0);
    init.expect(&format!(
        "Child was killed by signal {rtmin}; exiting with {}",
        128 + rtmin
    ));
    let out = init.finish();
    assert_eq!(out.status.code(), Some(128 + rtmin), "{}", out.stderr);
    assert!(!out.stderr.contains("Invalid argument"), "{}", out.stderr);
}

/// A signal the kernel sends itself is not dropped for an init when it is
/// `SIGKILL`: a busy PID 1 under `RLIMIT_CPU` (1, 3) outlives the
/// `SIGXCPU` of the soft limit, which kills the same loop when it is no
/// init, and dies at the hard limit of the kernel's `SIGKILL`, which a
/// shell reports as 137 (Linux 6.18). The OOM killer's `SIGKILL`, the
/// other one the chapter names, cannot be provoked here.
#[test]
fn a_busy_pid_1_dies_of_the_kernels_sigkill_at_its_hard_cpu_limit() {
    if !pid_namespaces() {
        return;
    }
    let busy = "echo $$; while :; do :; done";
    let limit = ["--cpu=1:3"];
    let mut plain = Command::new("prlimit");
    plain.args(limit).args(["sh", "-c", busy]);
    let mut plain = Listing::spawn(&mut plain, Stdio::piped());
    plain.next_line();
    let out = plain.finish_within(Duration::from_secs(120));
    assert_eq!(
        dollar_question(out.status),
        "152",
        "SIGXCPU: {:?}",
        out.status
    );

    // Without --fork, unshare's shell stays outside the namespace and its
    // first child is the init: the shell reports how it ended, as `$?`.
    // (`unshare --fork` of util-linux 2.38 exits 1 when its child dies of
    // SIGKILL, failing to raise it.)
    let mut init = Command::new("prlimit");
    init.args(limit)
        .args(["unshare", "--map-root-user", "--pid"])
        .args(["sh", "-c", r#"sh -c "$1"; echo "$?""#, "sh", busy]);
    let mut init = Listing::spawn(&mut init, Stdio::piped());
    assert_eq!(init.next_line(), "1", "the loop is the namespace's init");
    let out = init.finish_within(Duration::from_secs(120));
    assert_eq!(
        out.stdout.last().map(String::as_str),
        Some("137"),
        "{:?}",
        out.stdout
    );
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

/// A `cat` child that fails must not pass for one that inherited nothing:
/// it printed nothing, and the row of a child with nothing ignored,
/// blocked or caught is the result the listing exists to measure. The
/// listing runs alone on a private PATH whose `cat` exits 1 from its first
/// run, saying nothing, so that the listing's own line is the only one:
/// it must stop at the first child, `Command`, exit 1 and name the row.
/// (It printed four false rows, `Command` to `thread mask`, before
/// `fork + exec` found its child's failure.)
#[test]
fn sig_inherit_says_so_when_a_command_child_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("cat");
    // Written by a child, not by this process (ETXTBSY: see
    // `sig_inherit_says_so_when_its_forked_child_cannot_exec`).
    let made = Command::new("sh")
        .args(["-c", "printf %s \"$2\" > \"$1\" && chmod 755 \"$1\""])
        .args(["sh", cat.to_str().unwrap(), "#!/bin/sh\nexit 1\n"])
        .status()
        .unwrap();
    assert!(made.success(), "the test's cat: {made:?}");
    // For the `sleep` that follows, reached only when the failure is
    // missed.
    std::os::unix::fs::symlink(on_path("sleep"), dir.path().join("sleep"))
        .unwrap();
    let mut command = Command::new(bin!("sig-inherit"));
    command.env("PATH", dir.path());
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?}: {:#?}",
        out.status,
        out.stdout
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("sig-inherit: ")
            && out.stderr.contains("Command"),
        "{}",
        out.stderr
    );
    let command = out.stdout.iter().any(|line| line.starts_with("Command "));
    assert!(!command, "{:#?}", out.stdout);
}

/// With one descriptor to spare (`ulimit -n 4`), signal-hook cannot make
/// the socket pair its handler writes to: `sig-init`'s service must say
/// that it could not watch for SIGTERM, not only "Too many open files";
/// and `sig-init` itself, that it could not start the service.
#[test]
fn sig_init_service_names_the_step_when_descriptors_run_out() {
    use crate::support::assert_names_the_step_when_descriptors_run_out;
    let child = || {
        let mut command = std::process::Command::new(bin!("sig-init"));
        command.arg("--child");
        command
    };
    let lines = assert_names_the_step_when_descriptors_run_out(child, [4]);
    let said = "sig-init: cannot watch for SIGTERM: Too many open files \
                (os error 24)";
    assert_eq!(lines, [said]);
    // The init itself, with no room for the descriptors that starting
    // its service takes, says so (it said only "Too many open files").
    let init = || std::process::Command::new(bin!("sig-init"));
    let lines = assert_names_the_step_when_descriptors_run_out(init, [4, 5]);
    let said = "sig-init: cannot start the service: this process is out of \
                descriptors: Too many open files (os error 24)";
    assert_eq!(lines, [said; 2]);
}
