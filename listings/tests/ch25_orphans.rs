//! Chapter 25, A child that must not outlive its parent: Listing 25-1
//! (`proc-orphans`), killed every way.

use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::support::{
    KillGroupOnDrop, Listing, assert_rejects,
    assert_session_matches_book_masking, cargo_run, finish_clean,
    group_is_gone, have, is_dead, pgid_of, ppid_of, shell, state_of,
    wait_until,
};

/// Starts proc-orphans and returns it with the pids of its children,
/// read from the line in which it names them.
fn start(args: &[&str]) -> (Listing, Vec<Pid>) {
    let (orphans, pids, _) = start_with_line(args);
    (orphans, pids)
}

fn start_with_line(args: &[&str]) -> (Listing, Vec<Pid>, String) {
    let mut orphans = Listing::start(bin!("proc-orphans"), args);
    let line = orphans.next_line();
    let pids = regex::Regex::new(r"(?:sleep|cat) (\d+)")
        .unwrap()
        .captures_iter(&line)
        .map(|c| Pid::from_raw(c[1].parse().unwrap()))
        .collect();
    (orphans, pids, line)
}

/// Kills the parent with SIGKILL and waits until it is gone, so that its
/// children have been handed to a new parent. The caller keeps `orphans`
/// alive while it looks at the children: dropping it kills the listing's
/// whole group, which would do the children's dying for them.
fn kill_parent(orphans: &Listing, children: &[Pid]) {
    let parent = orphans.pid();
    orphans.signal(Signal::SIGKILL);
    wait_until("the parent to die", || is_dead(parent));
    wait_until("its children to be adopted or gone", || {
        children.iter().all(|&c| ppid_of(c) != Some(parent))
    });
}

#[test]
fn proc_orphans_none_children_outlive_a_parent_killed_with_sigkill() {
    let (orphans, children) = start(&["none", "--for", "60"]);
    assert_eq!(children.len(), 2);
    let parent = orphans.pid();
    // The children are in the parent's group: kill only the parent.
    let group = pgid_of(children[0]).unwrap();
    assert_eq!(group, parent);
    orphans.signal(Signal::SIGKILL);
    wait_until("the parent to die", || is_dead(parent));
    wait_until("the children to be adopted", || {
        children
            .iter()
            .all(|&c| ppid_of(c).is_some_and(|p| p != parent))
    });
    for &child in &children {
        // Alive: asleep, or, on a busy machine, just being scheduled.
        assert!(!is_dead(child), "{child} lives on");
    }
    // The test's clean-up kills the group they are still in.
    drop(orphans);
    wait_until("the orphans to die with the group", || group_is_gone(group));
}

#[test]
fn proc_orphans_pdeathsig_children_die_with_a_parent_killed_with_sigkill() {
    let (orphans, children) = start(&["pdeathsig", "--for", "60"]);
    kill_parent(&orphans, &children);
    wait_until("the kernel to kill the children", || {
        children.iter().all(|&c| is_dead(c))
    });
}

#[test]
fn proc_orphans_pipe_children_end_when_the_lifeline_breaks() {
    let (orphans, children) = start(&["pipe", "--for", "60"]);
    // Each `cat` reads the lifeline on fd 0; only the parent can write.
    let parent = orphans.pid();
    let lifeline = crate::support::fds_of(children[0])[0].1.clone();
    assert!(lifeline.starts_with("pipe:["), "{lifeline}");
    for &child in &children {
        assert_eq!(crate::support::fds_of(child)[0].1, lifeline);
    }
    let parent_ends: Vec<_> = crate::support::fds_of(parent)
        .into_iter()
        .filter(|(_, target)| *target == lifeline)
        .collect();
    assert_eq!(parent_ends.len(), 1, "the write end only: {parent_ends:?}");
    kill_parent(&orphans, &children);
    wait_until("the cats to read the end", || {
        children.iter().all(|&c| is_dead(c))
    });
}

#[test]
fn proc_orphans_group_survives_a_parent_killed_with_sigkill_until_killed_as_one()
 {
    let (orphans, children) = start(&["group", "--for", "60"]);
    let _cleanup = KillGroupOnDrop(children[0]);
    let group = pgid_of(children[0]).unwrap();
    assert_eq!(group, children[0]);
    assert_ne!(group, orphans.pid());
    kill_parent(&orphans, &children);
    for &child in &children {
        // Alive: asleep, or, on a busy machine, just being scheduled.
        assert!(!is_dead(child), "{child} lives on");
    }
    // What `kill -KILL -- -PGID` does.
    killpg(group, Signal::SIGKILL).unwrap();
    wait_until("the group to die", || group_is_gone(group));
}

#[test]
fn proc_orphans_group_with_a_stopped_member_gets_sighup_when_orphaned() {
    // POSIX: when a group is orphaned (no member has a parent in another
    // group of the same session) and one of its members is stopped, the
    // kernel sends every member SIGHUP, then SIGCONT.
    let (orphans, children) = start(&["group", "--for", "60"]);
    let _cleanup = KillGroupOnDrop(children[0]);
    nix::sys::signal::kill(children[0], Signal::SIGSTOP).unwrap();
    wait_until("the child to stop", || state_of(children[0]) == Some('T'));
    kill_parent(&orphans, &children);
    wait_until("SIGHUP to end the whole group", || {
        children.iter().all(|&c| is_dead(c))
    });
}

#[test]
fn proc_orphans_pdeathsig_fires_when_the_thread_that_started_them_exits() {
    let args = ["pdeathsig", "--for", "60", "--from-thread"];
    let orphans = Listing::start(bin!("proc-orphans"), &args);
    let pgid = orphans.pid();
    let out = finish_clean(orphans);
    assert!(out.status.success(), "{}", out.stderr);
    // The parent lived on; the thread that forked them had gone.
    assert!(out.stdout[0].contains(", from a thread that has exited; try: "));
    assert_eq!(out.stdout.len(), 3, "{:?}", out.stdout);
    for line in &out.stdout[1..] {
        assert!(line.ends_with(" was killed by SIGTERM"), "{line}");
    }
    wait_until("everything to end", || group_is_gone(pgid));
    assert_session_matches_book_masking(
        "ch25-orphans/25-01-from-thread.out",
        &[(cargo_run("proc-orphans", &args), &out.stdout[..])],
        &[(r"(sleep) \d+", "$1 <pid>")],
    );
}

#[test]
fn proc_orphans_stops_its_children_when_asked_to_stop() {
    for way in ["none", "pdeathsig", "pipe", "group"] {
        for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            let (orphans, children) = start(&[way, "--for", "60"]);
            let group = pgid_of(children[0]).unwrap();
            orphans.signal(signal);
            let out = finish_clean(orphans);
            assert_eq!(out.status.signal(), Some(signal as i32), "{way}");
            assert_eq!(out.stdout.len(), 3, "{way}: {:?}", out.stdout);
            for &child in &children {
                assert!(is_dead(child), "{way} {signal}: {child} lives");
            }
            wait_until("the children's group to end", || group_is_gone(group));
        }
    }
}

#[test]
fn proc_orphans_children_end_by_themselves_after_their_work() {
    for way in ["none", "pdeathsig", "pipe", "group"] {
        let orphans =
            Listing::start(bin!("proc-orphans"), &[way, "--for", "1"]);
        let out = finish_clean(orphans);
        assert!(out.status.success(), "{way}: {}", out.stderr);
        for line in &out.stdout[1..] {
            assert!(line.ends_with(" exited with status 0"), "{way}: {line}");
        }
    }
}

#[test]
fn proc_orphans_session_matches_the_book() {
    if !have("pgrep") {
        return;
    }
    // Terminal 1: a group of sleepers.
    let (orphans, children, announced) =
        start_with_line(&["group", "--for", "600"]);
    let _cleanup = KillGroupOnDrop(children[0]);
    let announced = [announced];
    let parent = orphans.pid();
    let group = children[0];
    // Terminal 2: kill the parent; the group lives on; kill the group.
    let first = format!("kill -KILL {parent}");
    let output = shell(&first);
    let mut session = vec![(first, output)];
    wait_until("the parent to die", || is_dead(parent));
    wait_until("its children to be adopted", || {
        children
            .iter()
            .all(|&c| ppid_of(c).is_some_and(|p| p != parent))
    });
    for command in [
        format!("ps -o pid,ppid,pgid,comm -p $(pgrep -d, -g {group})"),
        format!("kill -KILL -- -{group}"),
    ] {
        let output = shell(&command);
        session.push((command, output));
    }
    wait_until("the group to die", || group_is_gone(group));
    drop(orphans);
    let masks = &[
        // `ps`: pid, parent, group, name; the pids vary, the parent is 1
        // (or a subreaper, on a desktop).
        (r"(?m)^ *\d+ +(\d+) +\d+ +(\w+)$", "<pid> $1 <pgid> $2"),
        (r"process group \d+", "process group <pgid>"),
        (r"(sleep) \d+", "$1 <pid>"),
        (r"-g \d+\)", "-g <pgid>)"),
        (r"-- -\d+", "-- -<pgid>"),
    ];
    assert_session_matches_book_masking(
        "ch25-orphans/25-01-proc-orphans.out",
        &[(
            cargo_run("proc-orphans", &["group", "--for", "600"]),
            &announced[..],
        )],
        masks,
    );
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book_masking(
        "ch25-orphans/25-01-terminal-2.out",
        &session,
        masks,
    );
}

#[test]
fn orphans_listing_rejects_bad_arguments_in_one_line() {
    assert_rejects(
        bin!("proc-orphans"),
        &[],
        "none, pdeathsig, pipe or group?",
    );
    assert_rejects(bin!("proc-orphans"), &["all"], "unknown way");
    assert_rejects(
        bin!("proc-orphans"),
        &["none", "--children", "0"],
        "1 to 100",
    );
    assert_rejects(bin!("proc-orphans"), &["none", "--for", "x"], r#""x""#);
}
