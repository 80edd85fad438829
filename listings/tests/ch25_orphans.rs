//! Chapter 25, A child that must not outlive its parent: Listing 25-1
//! (`proc-orphans`), killed every way.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::support::{
    Finished, KillGroupOnDrop, Listing, assert_died_of, assert_exited_with,
    assert_rejects, assert_session_matches_book_masking, cargo_run,
    children_of, dollar_question, finish_clean, group_is_gone, have, is_dead,
    kernel, pending_signals, pgid_of, pid_namespaces, ppid_of, run, shell,
    state_of, threads_blocked_in, wait_until, wchan_of, with_sigchld_ignored,
    with_thread_limit, write_program,
};

/// Starts proc-orphans and returns it with the pids of its children,
/// read from the line in which it names them.
fn start(args: &[&str]) -> (Listing, Vec<Pid>) {
    let (orphans, pids, _) = start_with_line(args);
    (orphans, pids)
}

fn start_with_line(args: &[&str]) -> (Listing, Vec<Pid>, String) {
    read_children(Listing::start(bin!("proc-orphans"), args))
}

fn read_children(mut orphans: Listing) -> (Listing, Vec<Pid>, String) {
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
        assert!(!is_dead(child), "{child} lives on (Linux {})", kernel());
    }
    // The test's clean-up kills the group they are still in.
    drop(orphans);
    wait_until("the orphans to die with the group", || group_is_gone(group));
}

#[test]
fn proc_orphans_pdeathsig_children_die_with_a_parent_killed_with_sigkill() {
    let (orphans, children) = start(&["pdeathsig", "--for", "60"]);
    kill_parent(&orphans, &children);
    let linux = format!("Linux {}", kernel());
    wait_until(&format!("{linux} to kill the children"), || {
        children.iter().all(|&c| is_dead(c))
    });
}

/// A subreaper, in Python: it starts the command of its arguments, passes
/// on its first line, kills it with SIGKILL, then reaps every process
/// that ends below it, orphans included, and says how each ended.
const KILL_AND_REAP: &str = "
import os, signal, subprocess, sys
command = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
print(command.stdout.readline(), end='', flush=True)
os.kill(command.pid, signal.SIGKILL)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == command.pid:
        continue
    if os.WIFSIGNALED(status):
        how = 'killed by ' + signal.Signals(os.WTERMSIG(status)).name
    else:
        how = 'exited with %d' % os.waitstatus_to_exitcode(status)
    print('reaped', pid, how, flush=True)
";

/// Not only dead: the children die of the signal their hook asked for,
/// SIGTERM. Whoever adopts them reaps them and alone sees how they
/// ended, so the test runs the listing under a subreaper that says so.
#[test]
fn proc_orphans_pdeathsig_children_die_of_sigterm_when_the_parent_is_killed() {
    use std::os::unix::process::CommandExt;
    if !have("python3") {
        return;
    }
    let mut command = Command::new("python3");
    command
        .args(["-c", KILL_AND_REAP, bin!("proc-orphans")])
        .args(["pdeathsig", "--for", "60"]);
    // SAFETY: prctl() is async-signal-safe, and nothing allocates.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_child_subreaper(true)
                .map_err(std::io::Error::from)
        });
    }
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(out.status.success(), "{}", out.stderr);
    let mut expected: Vec<String> = regex::Regex::new(r"sleep (\d+)")
        .unwrap()
        .captures_iter(&out.stdout[0])
        .map(|c| format!("reaped {} killed by SIGTERM", &c[1]))
        .collect();
    assert_eq!(expected.len(), 2, "{:?}", out.stdout);
    let mut reaped = out.stdout[1..].to_vec();
    reaped.sort();
    expected.sort();
    assert_eq!(reaped, expected, "Linux {}", kernel());
}

/// A fourth way, Linux's: a parent that is process 1 of a PID namespace
/// of its own. When it dies, even by SIGKILL, the kernel kills every
/// other process of the namespace (`zap_pid_ns_processes()`, in
/// kernel/pid_namespace.c): here `none`, whose children outlive a parent
/// that is not an init, loses them at once.
#[test]
fn proc_orphans_none_children_die_with_a_parent_that_is_a_namespaces_init() {
    if !pid_namespaces() {
        return;
    }
    let args = ["--map-root-user", "--pid", "--fork", "--mount-proc"];
    let mut command = Command::new("unshare");
    command
        .args(args)
        .args([bin!("proc-orphans"), "none", "--for", "60"]);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let line = listing.next_line();
    assert!(line.starts_with("Parent 1 started"), "{line}");
    let parent = children_of(listing.pid())[0];
    let children = children_of(parent);
    assert_eq!(children.len(), 2, "{line}");
    kill(parent, Signal::SIGKILL).unwrap();
    wait_until(
        &format!("Linux {} to kill the namespace's processes", kernel()),
        || children.iter().all(|&c| is_dead(c)),
    );
    let _ = finish_clean(listing);
}

/// The parent's first line names the command that kills it from another
/// terminal. As process 1 of a PID namespace of its own, its `getpid()` is
/// 1, which any other terminal takes for the machine's init; under
/// `unshare` without `--mount-proc` the namespace keeps the machine's
/// /proc, which names the parent as the rest of the machine does, and the
/// hint must use that pid. The session is the chapter's: Terminal 1 starts
/// the listing so; Terminal 2 lists the children, types the hint, and
/// finds them gone. The first version printed `try: kill -KILL 1`.
#[test]
fn proc_orphans_as_a_namespaces_init_names_the_pid_to_kill_from_outside() {
    if !pid_namespaces() {
        return;
    }
    let args = ["none", "--for", "600"];
    let namespace = ["--user", "--map-root-user", "--pid", "--fork"];
    let mut command = Command::new("unshare");
    command.args(namespace).arg(bin!("proc-orphans")).args(args);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let line = listing.next_line();
    // unshare's child, the listing, as the rest of the machine numbers it.
    let parent = children_of(listing.pid())[0];
    let hint = regex::Regex::new(
        r"^Parent 1 started sleep \d+ sleep \d+; try, from outside its PID namespace: (kill -KILL (\d+))$",
    )
    .unwrap();
    let caps = hint.captures(&line).unwrap_or_else(|| panic!("{line}"));
    assert_eq!(caps[2].parse::<i32>().unwrap(), parent.as_raw(), "{line}");
    let children = children_of(parent);
    assert_eq!(children.len(), 2, "{line}");
    // Terminal 2. `ps -p` with no process left exits with 1: its output
    // is what the reader sees all the same.
    let typed = |command: &str| -> Vec<String> {
        Listing::start("bash", &["-c", command]).finish().stdout
    };
    let mut session = Vec::new();
    let listed = format!("ps -o pid,ppid,comm --ppid {parent}");
    session.push((listed.clone(), typed(&listed)));
    let kill = caps[1].to_string();
    session.push((kill.clone(), typed(&kill)));
    wait_until(
        &format!("Linux {} to kill the namespace's processes", kernel()),
        || children.iter().all(|&c| is_dead(c)),
    );
    let gone = format!("ps -o pid,comm -p {},{}", children[0], children[1]);
    session.push((gone.clone(), typed(&gone)));
    let out = finish_clean(listing);
    // util-linux 2.38.1's unshare, this book's, fails on its way out when
    // its child was killed by SIGKILL (util-linux issue #2614): it tries to
    // give SIGKILL its default action before it raises it.
    let version = run("unshare", &["--version"]).stdout.join(" ");
    if version.ends_with(" 2.38.1") {
        assert_eq!(out.status.code(), Some(1), "{version}: {:?}", out.status);
        assert_eq!(
            out.stderr,
            "unshare: sigprocmask unblock failed: Invalid argument\n",
            "{version}"
        );
    }
    let masks = &[
        (r"(sleep) \d+", "$1 <pid>"),
        (r"--ppid \d+", "--ppid <pid>"),
        (r"-p \d+,\d+", "-p <pid>,<pid>"),
        (r"(?m)^ *\d+ +\d+ +(\w+)$", "<pid> <ppid> $1"),
    ];
    // Terminal 1 shows the listing's line, then what unshare wrote to
    // stderr as it ended, and the shell's `$?` after it: the book's block
    // is util-linux 2.38.1's.
    let mut shown = vec![line];
    shown.extend(out.stderr.lines().map(str::to_string));
    let status = dollar_question(out.status);
    assert_session_matches_book_masking(
        "ch25-orphans/25-01-pid-namespace.out",
        &[
            (
                format!(
                    "unshare {} target/debug/proc-orphans {}",
                    namespace.join(" "),
                    args.join(" ")
                ),
                &shown[..],
            ),
            ("echo $?".to_string(), &[status][..]),
        ],
        masks,
    );
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book_masking(
        "ch25-orphans/25-01-pid-namespace-terminal-2.out",
        &session,
        masks,
    );
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
    let waited = format!("the cats to read the end (Linux {})", kernel());
    wait_until(&waited, || children.iter().all(|&c| is_dead(c)));
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
        assert!(!is_dead(child), "{child} lives on (Linux {})", kernel());
    }
    // What `kill -KILL -- -PGID` does.
    killpg(group, Signal::SIGKILL).unwrap();
    wait_until("the group to die", || group_is_gone(group));
}

/// A child may leave the children's group, as a worker that calls `setsid`
/// does: asked to stop, the parent must still reach it, by its pid, as
/// Listing 23-1 reaches a stage that left its group. A stand-in `sleep`
/// first on PATH runs the real one under `setsid(1)` in every child but
/// the leader. The parent used to `killpg` the group alone: the child
/// outside it never got SIGTERM, and the parent waited out its `--for`.
#[test]
fn proc_orphans_group_stops_a_child_that_left_the_group() {
    if !have("setsid") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let sleep = dir.path().join("sleep");
    write_program(
        &sleep,
        &format!(
            "#!/bin/sh\nPATH='{path}'\n\
             read -r _ _ _ _ group _ < /proc/$$/stat\n\
             if [ \"$group\" = $$ ]; then exec sleep \"$@\"; fi\n\
             exec setsid sleep \"$@\"\n"
        ),
    );
    let mut command = Command::new(bin!("proc-orphans"));
    command
        .args(["group", "--for", "100"])
        .env("PATH", format!("{}:{path}", dir.path().display()));
    let listing = Listing::spawn(&mut command, Stdio::piped());
    let (orphans, children, _) = read_children(listing);
    let (parent, left) = (orphans.pid(), children[1]);
    // Neither child is in the listing's group, which its drop kills.
    let _cleanup = (KillGroupOnDrop(children[0]), KillGroupOnDrop(left));
    wait_until("a child to start a session of its own", || {
        nix::unistd::getsid(Some(left)) == Ok(left)
    });
    orphans.signal(Signal::SIGTERM);
    wait_until("the parent to end", || is_dead(parent));
    let out = finish_clean(orphans);
    assert_died_of(&out, Signal::SIGTERM);
    for &child in &children {
        assert!(is_dead(child), "{child} outlived its parent");
    }
}

/// Listing 25-1 keeps Chapter 23's rule: it signals a child, or the
/// children's group, only while a child is not reaped. strace holds the
/// parent for two seconds on its way out of each `wait4`; the test kills
/// both children itself, and sends SIGTERM while the parent is held after
/// the second reap. The parent must end by it without a `kill` or
/// `killpg`, which could only reach a reaped pid, ESRCH here and a
/// stranger on a busy machine.
#[test]
fn proc_orphans_never_signals_a_child_once_it_is_reaped() {
    if !have("strace") || !have("setpriv") {
        return;
    }
    let named = regex::Regex::new(r"(?:Parent|sleep) (\d+)").unwrap();
    let call = regex::Regex::new(r"^(?:\[pid +\d+\] )?kill\(").unwrap();
    for way in ["none", "group"] {
        let mut command = Command::new("strace");
        command
            .args(["-f", "-q", "-e", "trace=kill,wait4", "-e", "signal=none"])
            .arg("--inject=wait4:delay_exit=2000000")
            .args(["--", "setpriv", "--pdeathsig", "KILL", "--"])
            .args([bin!("proc-orphans"), way, "--for", "60"]);
        let mut traced = Listing::spawn(&mut command, Stdio::piped());
        let line = traced.next_line();
        let numbers: Vec<Pid> = named
            .captures_iter(&line)
            .map(|c| Pid::from_raw(c[1].parse().unwrap()))
            .collect();
        let (parent, children) = (numbers[0], &numbers[1..]);
        let _cleanup = KillGroupOnDrop(children[0]);
        for &child in children {
            kill(child, Signal::SIGKILL).unwrap();
        }
        wait_until("both children reaped, and the last wait4 held", || {
            children_of(parent).is_empty() && state_of(parent) == Some('t')
        });
        kill(parent, Signal::SIGTERM).unwrap();
        let out = finish_clean(traced);
        assert_eq!(
            out.status.signal(),
            Some(Signal::SIGTERM as i32),
            "{way}: {}",
            out.stderr
        );
        let kills: Vec<_> =
            out.stderr.lines().filter(|l| call.is_match(l)).collect();
        assert!(
            kills.is_empty(),
            "{way}: signalled after reaping: {kills:?}"
        );
    }
}

/// Who gets SIGHUP when a process group becomes orphaned with a stopped
/// member. POSIX says every member, then SIGCONT to every member, and so
/// does Linux's source (`kill_orphaned_pgrp` in kernel/exit.c); Debian's
/// 6.1 and 7.2 kernels, booted under QEMU, do exactly that. The kernels of
/// this book's machines, vendor builds for Firecracker virtual machines
/// (releases `6.18.44-fc-v1252`, `-v1272` and the like), send SIGHUP to the stopped
/// members only, and SIGCONT to every member.
#[derive(Debug, PartialEq)]
enum OrphanHangup {
    EveryMember,
    StoppedMembersOnly,
}

/// What this test expects of the kernel it runs on, and that kernel's name.
fn orphan_hangup_here() -> (OrphanHangup, String) {
    let release = kernel();
    let firecracker_build = regex::Regex::new(r"-fc-v\d+$").unwrap();
    if firecracker_build.is_match(&release) {
        (OrphanHangup::StoppedMembersOnly, release)
    } else {
        (OrphanHangup::EveryMember, release)
    }
}

/// The session a process belongs to, or `None` once it is gone.
fn sid_of(pid: Pid) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, tail) = stat.rsplit_once(") ")?;
    tail.split(' ').nth(3).map(String::from)
}

#[test]
fn proc_orphans_group_orphaned_with_a_stopped_member_gets_sighup_and_sigcont() {
    let (expected, kernel) = orphan_hangup_here();
    // Stop the group's leader in one run and the other member in another:
    // the rule must not depend on which one.
    for stopped in 0..2 {
        // In a session of its own, so that whoever adopts the children is
        // in another session, whatever started `cargo test`.
        let args = ["group", "--for", "60"];
        let (orphans, children, _) = read_children(
            Listing::start_in_new_session(bin!("proc-orphans"), &args),
        );
        let _cleanup = KillGroupOnDrop(children[0]);
        let running = children[1 - stopped];
        let stopped = children[stopped];
        kill(stopped, Signal::SIGSTOP).unwrap();
        wait_until("the child to stop", || state_of(stopped) == Some('T'));
        kill_parent(&orphans, &children);
        // Orphaned: the parent that adopted them (PID 1 here) is in
        // another session, so no member has a parent in the same session.
        let adopter = ppid_of(running).expect("the running member");
        assert_ne!(
            sid_of(adopter),
            sid_of(running),
            "adopted by {adopter} in the same session: not orphaned"
        );
        // The stopped member dies of SIGHUP on every kernel. The kernel
        // sent all its signals while the parent died, before the stopped
        // member could run again, so once it is dead, any SIGHUP for the
        // running member has been sent too.
        wait_until("SIGHUP to end the stopped member", || is_dead(stopped));
        match expected {
            OrphanHangup::EveryMember => wait_until(
                &format!("SIGHUP to end the running member too ({kernel})"),
                || is_dead(running),
            ),
            OrphanHangup::StoppedMembersOnly => {
                let state = state_of(running);
                let pending = pending_signals(running);
                assert!(
                    state == Some('S') && !pending.contains(&1),
                    "on {kernel}, expected the running member alive and \
                     asleep with no SIGHUP pending, as on this book's \
                     machines; got state {state:?}, pending {pending:?}"
                );
            }
        }
    }
}

/// Listing 25-2 reports what this kernel does, whichever member it stops,
/// and its report is the one the book shows, on the kernel the book shows.
#[test]
fn orphan_hangup_reports_whom_this_kernel_hangs_up() {
    for stop in ["other", "leader"] {
        let out = run(bin!("orphan-hangup"), &["--stop", stop]);
        let lines = check_orphan_hangup_report(&out, stop);
        if orphan_hangup_here().0 == OrphanHangup::StoppedMembersOnly
            && stop == "other"
        {
            let masks = &[
                (
                    r"Group \d+: \d+ running, \d+ stopped; their parent \d+",
                    "Group <pgid>: <pid> running, <pid> stopped; their parent <pid>",
                ),
                (r"(?m)^\d+ \((stopped|running)\)", "<pid> ($1)"),
                (r"adopted by \d+", "adopted by <pid>"),
                (r"(?m)^Linux \S+:", "Linux <release>:"),
            ];
            assert_session_matches_book_masking(
                "ch25-orphans/25-02-orphan-hangup.out",
                &[(cargo_run("orphan-hangup", &[]), &lines[..])],
                masks,
            );
        }
    }
}

/// Where the process that adopts the members shares the session Listing
/// 25-2 was started in, their group would not be orphaned; the listing's
/// parent starts a session of its own so that it is, wherever it runs.
/// Here the listing is process 1 of a new PID namespace, so it adopts the
/// members itself, in the test's session, as the first process of a
/// container adopts them in the shell's session that started it.
#[test]
fn orphan_hangup_orphans_its_group_when_its_adopter_shares_our_session() {
    if !pid_namespaces() {
        return;
    }
    let args = [
        "--map-root-user",
        "--pid",
        "--fork",
        "--mount-proc",
        bin!("orphan-hangup"),
    ];
    let out = run("unshare", &args);
    let lines = check_orphan_hangup_report(&out, "other");
    assert!(
        lines[1].ends_with("adopted by 1")
            && lines[2].ends_with("adopted by 1"),
        "adopted by the namespace's process 1, the listing: {lines:?}"
    );
}

/// Checks the report of one run of Listing 25-2, which stopped `stop`,
/// against what this kernel is expected to do; returns its lines.
#[track_caller]
fn check_orphan_hangup_report(out: &Finished, stop: &str) -> Vec<String> {
    let (expected, kernel) = orphan_hangup_here();
    let first_line = regex::Regex::new(
        r"^Group (\d+): (\d+) running, (\d+) stopped; their parent \d+ killed$",
    )
    .unwrap();
    let adopted_by = regex::Regex::new(r"; adopted by (\d+)$").unwrap();
    assert!(out.status.success(), "{stop}: {}", out.stderr);
    let lines = &out.stdout;
    assert_eq!(lines.len(), 4, "{lines:?}");
    let pids = first_line
        .captures(&lines[0])
        .unwrap_or_else(|| panic!("{lines:?}"));
    let (leader, running, stopped) = (&pids[1], &pids[2], &pids[3]);
    let adopter = lines
        .iter()
        .find_map(|line| adopted_by.captures(line))
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| panic!("no member reported: {lines:?}"));
    let leader_stopped = leader == stopped;
    assert_eq!(leader_stopped, stop == "leader", "{lines:?}");
    assert_eq!(leader_stopped, leader != running, "{lines:?}");
    let running_got = match expected {
        OrphanHangup::EveryMember => "SIGHUP, SIGCONT",
        OrphanHangup::StoppedMembersOnly => "SIGCONT",
    };
    let verdict = match expected {
        OrphanHangup::EveryMember => {
            "SIGHUP reached every member, as POSIX says"
        }
        OrphanHangup::StoppedMembersOnly => {
            "SIGHUP reached the stopped member only"
        }
    };
    assert_eq!(
        lines[1..],
        [
            format!(
                "{stopped} (stopped): SIGHUP, SIGCONT; adopted by {adopter}"
            ),
            format!("{running} (running): {running_got}; adopted by {adopter}"),
            format!("Linux {kernel}: {verdict}"),
        ],
        "expected {expected:?} on {kernel}"
    );
    lines.clone()
}

#[test]
fn proc_orphans_pdeathsig_fires_when_the_thread_that_started_them_exits() {
    let args = ["pdeathsig", "--for", "60", "--from-thread"];
    let orphans = Listing::start(bin!("proc-orphans"), &args);
    let out = finish_clean(orphans);
    assert!(out.status.success(), "{}", out.stderr);
    // The parent lived on; the thread that forked them had gone.
    assert!(out.stdout[0].contains(", from a thread that has exited; try: "));
    assert_eq!(out.stdout.len(), 3, "{:?}", out.stdout);
    for line in &out.stdout[1..] {
        assert!(
            line.ends_with(" was killed by SIGTERM"),
            "{line} (Linux {})",
            kernel()
        );
    }
    assert_session_matches_book_masking(
        "ch25-orphans/25-01-from-thread.out",
        &[(cargo_run("proc-orphans", &args), &out.stdout[..])],
        &[(r"(sleep) \d+", "$1 <pid>")],
    );
}

/// The worst moment for `pdeathsig`: the parent dies after its child has
/// asked for SIGTERM and checked `getppid`, before the child has called
/// exec. Until exec, the child runs the parent's handlers, and the parent
/// catches SIGTERM (signal-hook): the signal would run that handler and
/// be lost, and `sleep` would run on. strace holds the child for two
/// seconds on its way out of `getppid`, the parent is killed then, and the
/// child must die of SIGTERM instead of running `sleep`.
#[test]
fn proc_orphans_pdeathsig_child_dies_when_its_parent_dies_just_before_exec() {
    if !have("strace") {
        return;
    }
    let ran = pdeathsig_child_runs_sleep_when_its_parent_dies_in(
        "getppid",
        nix::libc::SYS_getppid,
        "delay_exit",
    );
    assert!(
        !ran,
        "the child ran sleep, its parent dead (Linux {})",
        kernel()
    );
}

/// The other moment: the parent dies before its child has asked for
/// anything. No signal will ever come; the hook's `getppid` check must end
/// the child, which finds itself adopted. strace holds the child for two
/// seconds on its way into `prctl`, and the parent is killed then. With
/// the check left out, the child ran `sleep`.
#[test]
fn proc_orphans_pdeathsig_child_ends_when_its_parent_dies_before_it_asks() {
    if !have("strace") {
        return;
    }
    let ran = pdeathsig_child_runs_sleep_when_its_parent_dies_in(
        "prctl",
        nix::libc::SYS_prctl,
        "delay_enter",
    );
    assert!(
        !ran,
        "the child ran sleep, its parent dead (Linux {})",
        kernel()
    );
}

/// Runs `proc-orphans pdeathsig` with one child under strace, which holds
/// the child for two seconds in the system call `call` (`when`:
/// `delay_enter` on its way in, `delay_exit` on its way out); kills the
/// parent then, and says whether the child went on to run `sleep`.
fn pdeathsig_child_runs_sleep_when_its_parent_dies_in(
    call: &str,
    number: i64,
    when: &str,
) -> bool {
    let args = ["pdeathsig", "--children", "1", "--for", "60"];
    let mut command = Command::new("strace");
    command
        .args(["-f", "-q", "-o", "/dev/null", "--seccomp-bpf"])
        .args(["-e", &format!("trace={call}"), "-e", "signal=none"])
        .arg(format!("--inject={call}:{when}=2000000"))
        .arg("--")
        .arg(bin!("proc-orphans"))
        .args(args);
    let traced = Listing::spawn(&mut command, Stdio::piped());
    let mut held = None;
    wait_until(&format!("the child to be held in {call}"), || {
        let parents = children_of(traced.pid());
        let Some(&parent) = parents.first() else {
            return false;
        };
        let child = children_of(parent).first().copied();
        held = child
            .filter(|&c| {
                threads_blocked_in(c, number) == 1 && state_of(c) == Some('t')
            })
            .map(|c| (parent, c));
        held.is_some()
    });
    let (parent, child) = held.unwrap();
    kill(parent, Signal::SIGKILL).unwrap();
    wait_until("the child to die, or to run sleep", || {
        is_dead(child)
            || std::fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|name| name.trim() == "sleep")
    });
    let ran = !is_dead(child);
    drop(traced); // Kills the group, the child with it.
    ran
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

/// A parent may leave SIGINT, SIGTERM and SIGHUP blocked (`env
/// --block-signal`, coreutils 8.31, does so and execs), and `exec` keeps
/// the mask: the parent must unblock the signals it stops on, for itself
/// and for its children, which inherit its mask through `Command`. It
/// used to run on after each of them, its children with it.
#[test]
fn proc_orphans_stops_on_a_signal_its_own_parent_had_blocked() {
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let mut command = Command::new("env");
        command
            .arg("--block-signal=INT,TERM,HUP")
            .arg(bin!("proc-orphans"))
            .args(["none", "--for", "60"]);
        let listing = Listing::spawn(&mut command, Stdio::piped());
        let (orphans, children, _) = read_children(listing);
        orphans.signal(signal);
        let out = finish_clean(orphans);
        assert_eq!(out.status.signal(), Some(signal as i32), "{}", out.stderr);
        for &child in &children {
            assert!(is_dead(child), "{signal}: {child} lives");
        }
    }
}

#[test]
fn proc_orphans_as_pid_1_stops_its_children_and_exits_143_on_sigterm() {
    // The kernel drops a PID 1's own raise of SIGTERM: a parent that ended
    // with emulate_default_handler fell through to abort(), dropped too,
    // and died of SIGSEGV (status 139).
    let args = ["group", "--for", "60"];
    let ready = r"Parent 1 started sleep \d+ sleep \d+ in process group .*";
    let Some((orphans, pid)) =
        crate::support::as_pid_1(bin!("proc-orphans"), &args, ready)
    else {
        return;
    };
    kill(pid, Signal::SIGTERM).unwrap();
    let out = finish_clean(orphans);
    assert_exited_with(&out, 143);
    assert_eq!(out.stdout.len(), 3, "{:?}", out.stdout);
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
        (r"(?m)^ *\d+ +\d+ +\d+ +(\w+)$", "<pid> <ppid> <pgid> $1"),
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

/// A child that cannot start, with nothing on PATH: the one line names
/// the program, `sleep` or `cat`. It used to say only "No such file or
/// directory", which names no file.
#[test]
fn proc_orphans_names_the_child_it_cannot_start() {
    let empty = tempfile::tempdir().unwrap();
    for (way, program) in [("none", "sleep"), ("pipe", "cat")] {
        let mut command = Command::new(bin!("proc-orphans"));
        command.arg(way).env("PATH", empty.path());
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert_eq!(out.status.code(), Some(1), "{way}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!(
                "proc-orphans: cannot start {program}: No such file or \
                 directory (os error 2)\n"
            ),
            "{way}"
        );
    }
}

/// Out of descriptors before any child starts, each step says what it
/// could not do: with four (0, 1, 2 and one free), signal-hook's
/// `socketpair` in `Signals::new` fails with EMFILE; with five, it gets
/// two, and `pipe`'s lifeline, a pipe, cannot be made. Both used to be
/// the bare error, which named neither.
#[test]
fn proc_orphans_says_what_failed_when_descriptors_run_out() {
    for (limit, what) in [
        (
            4,
            "cannot catch the stop signals: Too many open files (os error 24)",
        ),
        (5, "cannot make the lifeline: EMFILE: Too many open files"),
    ] {
        let mut command = Command::new(bin!("proc-orphans"));
        command.arg("pipe");
        crate::support::with_fd_limit(&mut command, limit, limit);
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert_eq!(out.status.code(), Some(1), "{limit}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!("proc-orphans: {what}\n"),
            "ulimit -n {limit}"
        );
    }
}

/// When a spawn fails half-way, the children already started are stopped
/// and reaped, not left behind. Run as a user of its own allowed four
/// processes and threads (`ulimit -u`, which does not bind root), the
/// listing's fourth spawn fails: its main thread and three `sleep`s are
/// all it may have. The `sleep`s are in the listing's group, which must
/// be empty once it has reported. The user is one no other process has,
/// this run's alone, so that the limit counts nothing else: the first
/// version used a fixed one, which a second run of the suite at the same
/// time shared, and looked for its `sleep`s by their arguments, which the
/// other run's had too.
#[test]
fn proc_orphans_leaves_no_child_behind_when_a_spawn_fails() {
    let mut command = Command::new(bin!("proc-orphans"));
    command.args(["none", "--children", "10", "--for", "60"]);
    let Some((mut command, _dir)) = with_thread_limit(&command, 4) else {
        return;
    };
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?} {}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        out.stderr,
        "proc-orphans: cannot start sleep: Resource temporarily unavailable \
         (os error 11)\n"
    );
}

/// A signal that comes while the children start, when a later spawn then
/// fails: the parent stops those it started, as it does, and ends by the
/// signal, as it does once they run, rather than report the failed spawn.
/// The signal is pending before the listing starts (`env` blocks it, `sh`
/// sends it to itself and execs the listing), the same state without a
/// race; the spawn fails as above, under a limit of four processes. It
/// used to exit 1 with the spawn's error, the signal taken by
/// signal-hook's handler and never read.
#[test]
fn proc_orphans_ends_by_a_signal_that_came_while_a_spawn_failed() {
    let (script, _dirs) = with_sigterm_pending("none --children 10 --for 60");
    let Some((mut command, _dir)) =
        with_thread_limit(&Command::new(&script), 4)
    else {
        return;
    };
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_died_of(&out, Signal::SIGTERM);
    assert_eq!(out.stderr, "", "an interrupted parent says nothing");
}

/// A program, anyone may run, that starts proc-orphans with `args` and a
/// SIGTERM pending, and the directories to keep while it runs.
fn with_sigterm_pending(
    args: &str,
) -> (std::path::PathBuf, [tempfile::TempDir; 2]) {
    crate::support::with_sigterm_pending(bin!("proc-orphans"), args)
}

/// The same signal, when what is refused is a thread: the one that
/// starts the children with `--from-thread` (a limit of one: the main
/// thread), or the one that watches for signals (three: the main thread
/// and two children). The parent stops what it started, and ends by the
/// signal. It used to exit 1 with "cannot start a thread": the starting
/// thread's refusal was reported at once, and the watching thread's took
/// the leaked iterator with the refused closure, the signal with it.
#[test]
fn proc_orphans_ends_by_a_signal_that_came_while_a_thread_was_refused() {
    crate::support::assert_ends_by_a_pending_sigterm_with_threads_refused(
        bin!("proc-orphans"),
        &[
            (1, "none --children 1 --for 60 --from-thread"),
            (3, "none --children 2 --for 60"),
        ],
        "parent",
    );
}

/// And when nobody reads its output: the parent's first line fails with
/// EPIPE, which it takes quietly (status 0), but a signal that came first
/// ends it. It used to exit 0, the signal lost with the iterator moved
/// into the closure of a thread it never started.
#[test]
fn proc_orphans_ends_by_a_signal_that_came_before_its_output_failed() {
    let (script, _dirs) = with_sigterm_pending("none --children 1 --for 60");
    let mut command = Command::new(&script);
    let stdout = crate::support::stdout_to_a_widowed_pipe(&mut command);
    let out = finish_clean(Listing::spawn(&mut command, stdout));
    assert_died_of(&out, Signal::SIGTERM);
    assert_eq!(out.stderr, "", "an interrupted parent says nothing");
}

/// The system may refuse the thread that watches for signals (`ulimit -u`
/// counts threads) once the children run: the parent must stop and reap
/// them, and say why in one line. It used to panic (exit 101) and leave
/// its `sleep`s behind. Here the main thread and two children fill the
/// limit. The thread starts before the parent's first line, which it
/// then never writes; the children are in its group, which
/// `finish_clean` sees empty.
#[test]
fn proc_orphans_stops_its_children_when_a_thread_is_refused() {
    let mut command = Command::new(bin!("proc-orphans"));
    command.args(["none", "--children", "2", "--for", "60"]);
    let Some((mut command, _dir)) = with_thread_limit(&command, 3) else {
        return;
    };
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_exited_with(&out, 1);
    assert_eq!(out.stdout, Vec::<String>::new());
    assert_eq!(
        out.stderr,
        "proc-orphans: cannot start a thread: Resource temporarily \
         unavailable (os error 11)\n"
    );
}

/// A child stopped by SIGSTOP (or Ctrl-Z) takes the SIGTERM that `stop`
/// sends it, or reads the end of its input, only once it runs again: the
/// parent continues it, as Listing 23-1 continues its stages. The first
/// version sent SIGTERM alone, and the parent, told to stop, waited for a
/// stopped child for ever.
#[test]
fn proc_orphans_continues_a_stopped_child_it_stops() {
    for way in ["none", "group", "pipe"] {
        let (orphans, children) =
            start(&[way, "--children", "1", "--for", "60"]);
        let (parent, child) = (orphans.pid(), children[0]);
        // With `group` the child is outside the listing's group, which
        // the listing's `Drop` kills: stopped, it would outlive a failure.
        let _cleanup = (way == "group").then(|| KillGroupOnDrop(child));
        kill(child, Signal::SIGSTOP).unwrap();
        wait_until("the child to stop", || state_of(child) == Some('T'));
        orphans.signal(Signal::SIGTERM);
        wait_until(&format!("{way}: the parent to end"), || is_dead(parent));
        let out = finish_clean(orphans);
        assert_died_of(&out, Signal::SIGTERM);
        assert!(is_dead(child), "{way}: the child outlived its parent");
    }
}

/// Holds `child` stopped in a way that the SIGCONT `stop` sends cannot
/// end: this process traces it (`PTRACE_SEIZE`), and a traced process
/// stopped by a signal waits for its tracer, which never lets it go on.
/// The SIGTERM that `stop` sends then stays pending, and the parent waits
/// for the child for as long as the test likes. `None` where this process
/// may not trace (a container that forbids `ptrace`).
fn hold_stopped(child: Pid) -> Option<Traced> {
    use nix::libc;
    // SAFETY: PTRACE_SEIZE reads no memory of ours; its pointers are null.
    let seized = unsafe {
        libc::ptrace(libc::PTRACE_SEIZE, child.as_raw(), 0usize, 0usize)
    };
    if seized != 0 {
        return None;
    }
    let traced = Traced(child);
    kill(child, Signal::SIGSTOP).unwrap();
    wait_until("the child to stop", || state_of(child) == Some('t'));
    Some(traced)
}

/// A child this process traces: dropping it kills the child and reaps
/// it as its tracer, which must see it die before its parent can.
struct Traced(Pid);

impl Drop for Traced {
    fn drop(&mut self) {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        let _ = kill(self.0, Signal::SIGKILL);
        while let Ok(status) = waitpid(self.0, Some(WaitPidFlag::__WALL)) {
            if matches!(
                status,
                WaitStatus::Exited(..) | WaitStatus::Signaled(..)
            ) {
                break;
            }
        }
    }
}

/// A second signal while the parent reaps ends it by its default action.
/// A child held stopped (`hold_stopped`) holds the parent in its wait: the
/// first SIGTERM makes it stop its children, and SIGTERM stays pending in
/// the held one. The parent used to drop signal-hook's iterator there, and
/// signal-hook's handler, which stays installed, swallowed the SIGINT: the
/// parent waited on, and only SIGKILL ended it.
#[test]
fn proc_orphans_dies_of_a_second_signal_while_it_reaps() {
    let (orphans, children) =
        start(&["none", "--children", "1", "--for", "60"]);
    let child = children[0];
    let Some(held) = hold_stopped(child) else {
        return;
    };
    orphans.signal(Signal::SIGTERM);
    dies_of_sigint_while_it_reaps(orphans, child, held);
}

/// Once the parent has stopped `child`, which `held` keeps from ending
/// (its SIGTERM pending), a SIGINT must end the parent by its default
/// action, there and then.
#[track_caller]
fn dies_of_sigint_while_it_reaps(orphans: Listing, child: Pid, held: Traced) {
    let parent = orphans.pid();
    wait_until("the parent to stop its child", || {
        pending_signals(child).contains(&(Signal::SIGTERM as i32))
    });
    orphans.signal(Signal::SIGINT);
    wait_until("the parent to die of SIGINT", || is_dead(parent));
    drop(held);
    let out = finish_clean(orphans);
    assert_died_of(&out, Signal::SIGINT);
}

/// When the parent cannot announce its children (nobody reads its
/// output), it stops them, gives the signals it catches their default
/// action back, and reaps them; meanwhile a signal must have its default
/// action. Its stdout
/// is a full pipe: the parent blocks in the write of its first line, the
/// test holds its child stopped, then closes the pipe's read end. The parent
/// stops the child, whose SIGTERM stays pending, and waits. It used to
/// leave signal-hook's handler in place, which swallowed SIGINT.
#[test]
fn proc_orphans_dies_of_a_signal_while_it_reaps_after_its_output_failed() {
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

    let mut command = Command::new(bin!("proc-orphans"));
    command.args(["none", "--children", "1", "--for", "60"]);
    let orphans = Listing::spawn(&mut command, Stdio::from(writer));
    let parent = orphans.pid();
    // `pipe_write`, or `anon_pipe_write` as Linux 6.18 names it.
    wait_until("the parent to block writing its first line", || {
        wchan_of(parent).ends_with("pipe_write")
    });
    let child = children_of(parent)[0];
    let Some(held) = hold_stopped(child) else {
        return;
    };
    drop(reader);
    // Past the default actions it gives back, which come after it has
    // stopped the child: waiting for it.
    wait_until("the parent to reap", || wchan_of(parent) == "do_wait");
    dies_of_sigint_while_it_reaps(orphans, child, held);
}

/// Started with `SIGCHLD` ignored, which `exec` keeps, the parent sets its
/// default back before its first child: it reaps both children and
/// reports how they ended, where the first version failed with ECHILD.
#[test]
fn proc_orphans_reaps_its_children_when_started_with_sigchld_ignored() {
    let mut orphans =
        with_sigchld_ignored(bin!("proc-orphans"), &["none", "--for", "1"]);
    let out = finish_clean(Listing::spawn(&mut orphans, Stdio::piped()));
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(out.stdout.len(), 3, "{:?}", out.stdout);
    for line in &out.stdout[1..] {
        assert!(line.ends_with(" exited with status 0"), "{line}");
    }
}

/// Chapter 12's rule: give a child back what you found. `keep_zombies`
/// sets SIGCHLD's default action, for the parent's own waits; started
/// with SIGCHLD ignored, the parent must still start every child with it
/// ignored, whichever way. The children used to get the default.
#[test]
fn proc_orphans_gives_its_children_back_the_sigchld_it_found() {
    for way in ["none", "pdeathsig", "pipe", "group"] {
        for ignored in [false, true] {
            let args = [way, "--children", "1", "--for", "60"];
            let mut command = with_sigchld_ignored(bin!("proc-orphans"), &args);
            if !ignored {
                command = Command::new(bin!("proc-orphans"));
                command.args(args);
            }
            let listing = Listing::spawn(&mut command, Stdio::piped());
            let (orphans, children, _) = read_children(listing);
            let child = children[0];
            let _cleanup = (way == "group").then(|| KillGroupOnDrop(child));
            let seen =
                crate::support::signal_in(child, "SigIgn:", Signal::SIGCHLD);
            orphans.signal(Signal::SIGTERM);
            let out = finish_clean(orphans);
            assert_died_of(&out, Signal::SIGTERM);
            assert_eq!(
                seen, ignored,
                "{way}, started with SIGCHLD ignored: {ignored}"
            );
        }
    }
}

/// A cgroup of this test's own, below the cgroup it runs in: made on the
/// cgroup2 mount, emptied with `cgroup.kill` and removed when dropped.
/// `None` where it cannot be made or used (no cgroup2 mount, not root, a
/// kernel older than 5.14 without `cgroup.kill`).
struct OwnCgroup(std::path::PathBuf);

impl OwnCgroup {
    fn new() -> Option<OwnCgroup> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        let mount = mounts.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| fields[1].to_string())
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|line| line.strip_prefix("0::"))?;
        let dir = std::path::Path::new(&mount)
            .join(own.trim_start_matches('/'))
            .join(format!("book-ch25-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cgroup = OwnCgroup(dir);
        // A process must be able to move in (root, or a delegated subtree).
        let probe = format!("echo 0 > '{}/cgroup.procs'", cgroup.0.display());
        let moved = Listing::start("sh", &["-c", &probe]).finish();
        let usable =
            moved.status.success() && cgroup.0.join("cgroup.kill").exists();
        usable.then_some(cgroup)
    }

    /// The pids of its processes, and of those in the cgroups below.
    fn procs(&self) -> Vec<Pid> {
        let mut found = Vec::new();
        for dir in [self.0.clone(), self.0.join("below")] {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs"));
            found.extend(
                procs
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|pid| pid.parse().ok().map(Pid::from_raw)),
            );
        }
        found
    }

    /// Whether a live process is left in it or below (`cgroup.events`).
    fn populated(&self) -> bool {
        let events = std::fs::read_to_string(self.0.join("cgroup.events"));
        !events.unwrap_or_default().contains("populated 0")
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        let deadline = std::time::Instant::now() + crate::support::PATIENCE;
        while self.populated() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = std::fs::remove_dir(self.0.join("below"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// What the chapter says of `cgroup.kill` (Linux 5.14): one write kills
/// every process of a cgroup and of the cgroups below it, whatever its
/// group, its session or its parent. In a cgroup of the test's own (as
/// root; skipped where none can be made), a shell moves itself in, starts
/// a `sleep` in a session of its own and one that a subshell leaves to be
/// adopted, and execs a third; a shell in a cgroup below execs a fourth.
/// First each shell's process group is killed, as `kill -- -PGID` would:
/// that ends the adopted `sleep` too, which adoption does not take out of
/// its group, and leaves only the one in a session of its own. Then `1`
/// into `cgroup.kill`: the kernel reports the cgroup empty, and all four
/// are dead. Linux 6.18 here.
#[test]
fn cgroup_kill_ends_every_process_of_a_cgroup_and_below() {
    let Some(cgroup) = OwnCgroup::new() else {
        eprintln!("skipped: no cgroup of our own with cgroup.kill");
        return;
    };
    let below = cgroup.0.join("below");
    std::fs::create_dir(&below).unwrap();
    let moved = |dir: &std::path::Path| {
        format!("echo 0 > '{}/cgroup.procs'", dir.display())
    };
    let top = format!(
        "{} && {{ setsid sleep 31350 & (sleep 31351 &); exec sleep 31352; }}",
        moved(&cgroup.0)
    );
    let low = format!("{} && exec sleep 31353", moved(&below));
    let top = Listing::start("sh", &["-c", &top]);
    let low = Listing::start("sh", &["-c", &low]);
    let sleeps = || {
        let procs = cgroup.procs();
        let all_sleep = procs.iter().all(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sleep\0"))
        });
        (procs.len() == 4 && all_sleep).then_some(procs)
    };
    wait_until("four sleeps in the cgroups", || sleeps().is_some());
    let pids = sleeps().unwrap();
    let sessions: Vec<_> =
        pids.iter().map(|&p| nix::unistd::getsid(Some(p))).collect();
    assert!(
        pids.iter().zip(&sessions).any(|(&p, &s)| s == Ok(p)),
        "one sleep leads a session of its own: {pids:?} {sessions:?}"
    );
    // Each shell leads its group (`Listing::start`), and has become a
    // `sleep` by exec.
    for shell in [&top, &low] {
        killpg(shell.pid(), Signal::SIGKILL).unwrap();
    }
    let escaped: Vec<Pid> = pids
        .iter()
        .zip(&sessions)
        .filter(|&(&p, &s)| s == Ok(p))
        .map(|(&p, _)| p)
        .collect();
    wait_until("only the sleep in a session of its own to be left", || {
        cgroup.procs() == escaped
    });
    std::fs::write(cgroup.0.join("cgroup.kill"), "1").unwrap();
    wait_until("the cgroup to be empty", || !cgroup.populated());
    for pid in pids {
        assert!(
            is_dead(pid),
            "{pid} outlived cgroup.kill (Linux {})",
            kernel()
        );
    }
    for shell in [top, low] {
        assert_died_of(&shell.finish(), Signal::SIGKILL);
    }
}

/// Until its exec, a child runs the parent's handlers, and the parent
/// catches SIGTERM, SIGINT and SIGHUP (signal-hook): a `kill -- -PGID`
/// that reaches a `group` child once it has joined its group, before its
/// exec, would run that handler and be lost, and `sleep` would run on.
/// strace holds the child for two seconds on its way out of `setpgid`,
/// which std makes before the hooks; the test signals the children's
/// group then, and the child must die of the signal instead of running
/// `sleep`. It ran `sleep` while the parent unblocked the three before it
/// started its children. Linux 6.18 here.
#[test]
fn proc_orphans_child_dies_of_a_signal_that_comes_before_its_exec() {
    if !have("strace") {
        return;
    }
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let args = ["group", "--children", "1", "--for", "60"];
        let mut command = Command::new("strace");
        command
            .args(["-f", "-q", "-o", "/dev/null", "--seccomp-bpf"])
            .args(["-e", "trace=setpgid", "-e", "signal=none"])
            .arg("--inject=setpgid:delay_exit=2000000")
            .arg("--")
            .arg(bin!("proc-orphans"))
            .args(args);
        let traced = Listing::spawn(&mut command, Stdio::piped());
        let mut held = None;
        wait_until("the child to be held in setpgid", || {
            let Some(&parent) = children_of(traced.pid()).first() else {
                return false;
            };
            held = children_of(parent).first().copied().filter(|&child| {
                threads_blocked_in(child, nix::libc::SYS_setpgid) == 1
                    && state_of(child) == Some('t')
            });
            held.is_some()
        });
        let child = held.unwrap();
        let group = pgid_of(child).expect("the children's group");
        assert_eq!(group, child, "the child leads its group");
        killpg(group, signal).unwrap();
        wait_until("the child to die, or to run sleep", || {
            is_dead(child)
                || std::fs::read_to_string(format!("/proc/{child}/comm"))
                    .is_ok_and(|name| name.trim() == "sleep")
        });
        let survived = !is_dead(child);
        drop(traced); // Kills the group, the parent with it.
        if survived {
            let _ = killpg(group, Signal::SIGKILL);
        }
        assert!(
            !survived,
            "{signal}: {child} ran sleep (Linux {})",
            kernel()
        );
    }
}

/// A child killed by a real-time signal, which nix 0.32's `waitid` cannot
/// name: the listing once failed with "Invalid argument" and left the
/// other child running, adopted by process 1. It reaps and reports that
/// child as any other, and stops the rest when asked.
#[test]
fn proc_orphans_carries_on_when_a_child_dies_of_a_real_time_signal() {
    let rtmin = nix::libc::SIGRTMIN();
    for way in ["none", "pdeathsig", "group"] {
        let (orphans, children) = start(&[way, "--for", "60"]);
        let parent = orphans.pid();
        // SAFETY: a plain kill(2) of a child not yet reaped.
        assert_eq!(unsafe { nix::libc::kill(children[0].as_raw(), rtmin) }, 0);
        wait_until("the parent to reap the killed child", || {
            children_of(parent) == children[1..]
        });
        orphans.signal(Signal::SIGTERM);
        let out = finish_clean(orphans);
        assert_eq!(out.stderr, "", "{way}");
        assert_eq!(
            out.stdout[1..],
            [
                format!("sleep {} was killed by signal {rtmin}", children[0]),
                format!("sleep {} was killed by SIGTERM", children[1]),
            ],
            "{way}"
        );
        assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32), "{way}");
        assert!(is_dead(children[1]), "{way}: {} left running", children[1]);
    }
}

/// Listing 25-2 on a machine slow to kill the parent: strace holds the
/// program's one `kill`, of the parent, six seconds, past a member's five
/// seconds of patience. The running member gives up while its parent
/// lives, and reports that parent as its own. The listing once printed a
/// verdict all the same, which on this kernel and on POSIX's alike says
/// "the stopped member only"; it now says the run is inconclusive, and
/// fails.
#[test]
fn orphan_hangup_names_no_kernel_when_a_member_gave_up_before_the_orphaning() {
    if !have("strace") {
        return;
    }
    let out = run(
        "strace",
        &[
            "-q",
            "-o",
            "/dev/null",
            "-e",
            "trace=kill",
            "-e",
            "inject=kill:delay_enter=6000000:when=1",
            bin!("orphan-hangup"),
        ],
    );
    assert_eq!(
        out.stderr,
        "orphan-hangup: inconclusive: a member gave up before its group was \
         orphaned; run it again\n"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !out.stdout.iter().any(|line| line.starts_with("Linux ")),
        "a verdict: {:?}",
        out.stdout
    );
}

/// In the `pipe` way too, the parent waits for its children, not for the
/// clock: `cat`s killed by someone else are reaped and reported at once,
/// and the parent ends, long before `--for` runs out. It used to sleep out
/// `--for` before its first wait, the dead `cat`s zombies all that time.
#[test]
fn proc_orphans_pipe_reaps_and_reports_children_that_die_before_for_ends() {
    let (mut orphans, children) = start(&["pipe", "--for", "3600"]);
    for &child in &children {
        kill(child, Signal::SIGKILL).unwrap();
    }
    // Each line within PATIENCE, a bound far below `--for`.
    let mut reported: Vec<String> =
        children.iter().map(|_| orphans.next_line()).collect();
    reported.sort();
    let mut expected: Vec<String> = children
        .iter()
        .map(|child| format!("cat {child} was killed by SIGKILL"))
        .collect();
    expected.sort();
    assert_eq!(reported, expected);
    let out = finish_clean(orphans);
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

/// The `pipe` way's timer is a thread too, which the system may refuse
/// once the signal thread runs: the parent closes the lifeline, reaps the
/// `cat`s and says why in one line, as when the signal thread is refused.
/// The main thread, two `cat`s and the signal thread fill the limit.
#[test]
fn proc_orphans_pipe_stops_its_children_when_its_timer_is_refused() {
    let mut command = Command::new(bin!("proc-orphans"));
    command.args(["pipe", "--children", "2", "--for", "3600"]);
    let Some((mut command, _dir)) = with_thread_limit(&command, 4) else {
        return;
    };
    let (orphans, children, _) =
        read_children(Listing::spawn(&mut command, Stdio::piped()));
    let out = finish_clean(orphans);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_exited_with(&out, 1);
    assert_eq!(
        out.stderr,
        "proc-orphans: cannot start a thread: Resource temporarily \
         unavailable (os error 11)\n"
    );
    for &child in &children {
        assert!(is_dead(child), "{child} lives");
    }
}

/// A pipe whose read end is returned unread, and its write end, which the
/// listing gets, full: a write to it waits until someone reads.
fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (reader, writer) = nix::unistd::pipe().expect("a pipe");
    // Filled without blocking; then the listing gets a blocking end.
    let flags = OFlag::from_bits_truncate(
        fcntl(&writer, FcntlArg::F_GETFL).expect("F_GETFL"),
    );
    fcntl(&writer, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    while nix::unistd::write(&writer, &[b'x'; 4096]).is_ok() {}
    fcntl(&writer, FcntlArg::F_SETFL(flags)).unwrap();
    (reader, writer)
}

/// A parent whose first line waits in `write` (its stdout a full pipe
/// whose reader reads nothing, as a stopped pager's) must still stop on a
/// signal: stop its children, and end by the signal once they have. It
/// used to run on, its children with it, until SIGKILL: signal-hook's
/// handler took the SIGTERM, the `write` went on waiting (the handler is
/// installed with SA_RESTART), and the thread that reads the signals was
/// started only after that first line.
#[test]
fn proc_orphans_stops_on_a_signal_while_its_first_line_waits() {
    let (reader, writer) = full_pipe();
    let mut command = Command::new(bin!("proc-orphans"));
    command.args(["none", "--children", "2", "--for", "3600"]);
    let orphans = Listing::spawn(&mut command, Stdio::from(writer));
    let parent = orphans.pid();
    // `pipe_write`, or `anon_pipe_write` as Linux 6.18 names it.
    wait_until("the parent to block writing its first line", || {
        wchan_of(parent).ends_with("pipe_write")
    });
    let children = children_of(parent);
    assert_eq!(children.len(), 2, "{children:?}");
    orphans.signal(Signal::SIGTERM);
    // Within PATIENCE, and no process of its group left.
    let out = finish_clean(orphans);
    assert_died_of(&out, Signal::SIGTERM);
    for &child in &children {
        assert!(is_dead(child), "{child} lives");
    }
    drop(reader);
}

/// Where no thread will stop the children (nobody reads the parent's
/// output, or the signal thread is refused), the parent stops them before
/// it gives the signals it catches their default action back: a signal
/// that comes once the defaults are back ends the parent at once, and its
/// children must be on their way out by then. strace sends SIGTERM as the
/// last of those calls, the one for SIGHUP, returns. The parent used to
/// give the defaults back first, then stop its children: it died of that
/// SIGTERM and left them running, adopted by process 1.
#[test]
fn proc_orphans_stops_its_children_before_it_gives_back_the_default_actions() {
    if !have("strace") {
        return;
    }
    let args = ["none", "--children", "2", "--for", "3600"];
    // Its first line fails (EPIPE); or its first thread, the signal
    // thread, is refused, as under `ulimit -u`.
    for refuse in [None, Some("clone3:error=EAGAIN:when=1")] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("calls");
        let probe = sigaction_traced(&args, refuse, &log, None);
        finish_clean(probe);
        let calls = std::fs::read_to_string(&log).expect("strace's log");
        let actions: Vec<&str> = calls
            .lines()
            .filter(|line| line.starts_with("rt_sigaction("))
            .collect();
        let given_back = "rt_sigaction(SIGHUP, {sa_handler=SIG_DFL";
        let nth = actions
            .iter()
            .rposition(|call| call.starts_with(given_back))
            .unwrap_or_else(|| panic!("{refuse:?}: no default back:\n{calls}"))
            + 1;
        let held = sigaction_traced(
            &args,
            refuse,
            std::path::Path::new("/dev/null"),
            Some(nth),
        );
        // The listing, its children and strace share the group that
        // `finish_clean` waits to see empty.
        let out = finish_clean(held);
        assert_died_of(&out, Signal::SIGTERM);
    }
}

/// `proc-orphans args` under strace, which follows its main thread only,
/// logs its `rt_sigaction` calls to `log`, and sends it SIGTERM as the
/// `nth` returns, if asked. Its stdout is a pipe nobody reads, unless
/// `refuse` makes a call fail (strace's `inject=`): then the test reads it.
/// Through `setpriv --pdeathsig KILL`, as in [`Listing::start_traced`].
fn sigaction_traced(
    args: &[&str],
    refuse: Option<&str>,
    log: &std::path::Path,
    nth: Option<usize>,
) -> Listing {
    let mut command = Command::new("strace");
    command
        .args(["-qq", "-o"])
        .arg(log)
        .args(["-e", "signal=none"]);
    match refuse {
        Some(inject) => {
            // strace tampers only with the calls it traces.
            let call = inject.split(':').next().expect("a call");
            command.args(["-e", &format!("trace=rt_sigaction,{call}")]);
            command.args(["-e", &format!("inject={inject}")]);
        }
        None => {
            command.args(["-e", "trace=rt_sigaction"]);
        }
    }
    if let Some(nth) = nth {
        let send = format!("inject=rt_sigaction:signal=SIGTERM:when={nth}");
        command.args(["-e", &send]);
    }
    command.args(["--", "setpriv", "--pdeathsig", "KILL", "--"]);
    command.arg(bin!("proc-orphans")).args(args);
    if refuse.is_some() {
        return Listing::spawn(&mut command, Stdio::piped());
    }
    let stdout = crate::support::stdout_to_a_widowed_pipe(&mut command);
    Listing::spawn(&mut command, stdout)
}

/// 25-2's parent asks for PR_SET_PDEATHSIG and then checks, with
/// `getppid`, that the program is still its parent: if the program died
/// before the request, no signal will ever come, and the parent must not
/// go on to start the session and the group. strace holds the parent
/// two seconds on its way into `prctl`, and the program is killed then.
#[test]
fn orphan_hangup_parent_starts_nothing_when_the_program_dies_before_it_asks() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let mut command = Command::new("strace");
    command
        .args(["-f", "-q", "--seccomp-bpf", "-o"])
        .arg(&trace)
        .args(["-e", "trace=prctl,setsid,clone,clone3", "-e", "signal=none"])
        .arg("--inject=prctl:delay_enter=2000000")
        .arg("--")
        .arg(bin!("orphan-hangup"));
    let traced = Listing::spawn(&mut command, Stdio::piped());
    let mut held = None;
    wait_until("the parent to be held in prctl", || {
        let Some(&program) = children_of(traced.pid()).first() else {
            return false;
        };
        held = children_of(program)
            .first()
            .copied()
            .filter(|&parent| {
                threads_blocked_in(parent, nix::libc::SYS_prctl) == 1
                    && state_of(parent) == Some('t')
            })
            .map(|parent| (program, parent));
        held.is_some()
    });
    let (program, parent) = held.unwrap();
    kill(program, Signal::SIGKILL).unwrap();
    // strace ends when the last process it follows has: the parent, and
    // any member it started, which gives up within its 5 s.
    let _ = traced.finish();
    let trace = std::fs::read_to_string(&trace).unwrap();
    let pid = parent.to_string();
    let of_parent: Vec<&str> = trace
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(&pid))
        .collect();
    let after_prctl: Vec<&&str> = of_parent
        .iter()
        .skip_while(|line| !line.contains("prctl("))
        .filter(|line| line.contains("setsid(") || line.contains("clone"))
        .collect();
    assert!(
        of_parent.iter().any(|line| line.contains("prctl(")),
        "no prctl traced: {trace}"
    );
    assert!(
        after_prctl.is_empty(),
        "the parent went on, its program dead (Linux {}): {after_prctl:?}",
        kernel()
    );
}

/// Four to eight descriptors: 25-2's pipe for the reports, its one
/// descriptor of its own, was a bare "EMFILE: Too many open files" at
/// four; it must say what it could not make.
#[test]
fn orphan_hangup_names_the_step_when_descriptors_run_out() {
    use crate::support::assert_names_the_step_when_descriptors_run_out;

    let command = || Command::new(bin!("orphan-hangup"));
    let said = assert_names_the_step_when_descriptors_run_out(command, 4..=8);
    assert!(!said[0].is_empty(), "{said:?}");
}
