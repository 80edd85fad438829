//! Chapter 24, fork, dup2 and exec by hand beside `Command`: Listings 24-1
//! (`proc-exec`) and 24-2 (`proc-pre-exec`).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    Listing, assert_rejects, assert_session_matches_book, bin_path, cargo_run,
    finish_clean, group_is_gone, have, run_clean, shell, wait_until,
};

/// What `proc-exec` says about `cat`: the lines after the one that
/// names how it was started.
fn cat_report(way: &str) -> Vec<String> {
    let out = run_clean(bin!("proc-exec"), &[way]);
    assert!(out.status.success(), "{way}: {}", out.stderr);
    let at = out
        .stdout
        .iter()
        .position(|line| line.starts_with("cat, started by"))
        .expect("a line about cat");
    out.stdout[at + 1..].to_vec()
}

#[test]
fn proc_exec_by_hand_passes_on_the_mask_ignored_signals_and_leaks() {
    assert_eq!(
        cat_report("fork"),
        [
            "  blocked: SIGUSR1",
            "  ignored: SIGUSR2 SIGPIPE",
            "  caught: none",
            "  descriptors: 0 1 2",
            "  from pipe(): 3 4",
            "  from pipe2(O_CLOEXEC): none",
        ]
    );
}

#[test]
fn proc_exec_command_restores_sigpipe_and_nothing_else() {
    // std resets SIGPIPE to its default in the child; the signal mask and
    // every other ignored signal pass through, as they do by hand.
    assert_eq!(
        cat_report("command"),
        [
            "  blocked: SIGUSR1",
            "  ignored: SIGUSR2",
            "  caught: none",
            "  descriptors: 0 1 2",
            "  from pipe(): 3 4",
            "  from pipe2(O_CLOEXEC): none",
        ]
    );
}

#[test]
fn proc_exec_output_matches_the_book() {
    let command = run_clean(bin!("proc-exec"), &["command"]);
    let fork = run_clean(bin!("proc-exec"), &["fork"]);
    assert_session_matches_book(
        "ch24-exec/24-01-proc-exec.out",
        &[
            (cargo_run("proc-exec", &["command"]), &command.stdout[..]),
            (cargo_run("proc-exec", &["fork"]), &fork.stdout[..]),
        ],
    );
}

#[test]
fn proc_exec_by_hand_reports_a_failed_exec_through_its_cloexec_pipe() {
    for (way, error) in [
        (
            "fork",
            "proc-exec: cannot run cat: No such file or directory (os error 2)\n",
        ),
        (
            "command",
            "proc-exec: No such file or directory (os error 2)\n",
        ),
    ] {
        let mut command = Command::new(bin_path("proc-exec"));
        command.arg(way).env("PATH", "/nonexistent");
        let listing = Listing::spawn(&mut command, Stdio::piped());
        let pgid = listing.pid();
        let out = finish_clean(listing);
        assert_eq!(out.status.code(), Some(1), "{way}");
        assert_eq!(out.stderr, error, "{way}");
        wait_until("proc-exec to end", || group_is_gone(pgid));
    }
}

#[test]
fn command_uses_posix_spawn_unless_pre_exec_needs_a_fork() {
    if !have("strace") {
        return;
    }
    let dir = bin_path("proc-exec")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let mut session = Vec::new();
    for args in ["proc-exec command", "proc-pre-exec alarm"] {
        let shown = format!(
            "strace -f -e trace=clone,clone3 target/debug/{args} 2>&1 \
             >/dev/null | grep -o 'clone3\\?(.*flags=[A-Z_|]*'"
        );
        let output = shell(&shown.replace("target/debug", &dir));
        session.push((shown, output));
    }
    // glibc's posix_spawn: a clone that shares memory (CLONE_VM) and
    // stops the parent until exec (CLONE_VFORK). A plain fork shares
    // nothing.
    assert_eq!(session[0].1, ["clone3({flags=CLONE_VM|CLONE_VFORK"]);
    assert!(session[1].1[0].starts_with("clone(child_stack=NULL, flags="));
    assert!(!session[1].1[0].contains("CLONE_VM"));
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch24-exec/24-01-strace.out", &session);
}

#[test]
fn proc_pre_exec_alarm_set_before_exec_kills_sleep() {
    let started = Instant::now();
    let out = run_clean(bin!("proc-pre-exec"), &["alarm"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        ["sleep 5, with alarm(1) in pre_exec: killed by SIGALRM"]
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn proc_pre_exec_chdir_error_comes_back_from_spawn() {
    let out = run_clean(bin!("proc-pre-exec"), &["chdir", "/"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "/",
            r#"pwd, with chdir("/") in pre_exec: exited with status 0"#
        ]
    );
    let out = run_clean(bin!("proc-pre-exec"), &["chdir", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        "proc-pre-exec: cannot start pwd: No such file or directory (os \
         error 2)\n"
    );
}

#[test]
fn proc_pre_exec_println_waits_forever_for_a_lock_held_by_another_thread() {
    let started = Instant::now();
    let out = run_clean(bin!("proc-pre-exec"), &["lock"]);
    assert!(out.status.success(), "{}", out.stderr);
    // The child never printed, never reached exec: the watchdog killed
    // it two seconds later.
    assert_eq!(
        out.stdout,
        ["true, with println! in pre_exec: killed by SIGKILL"]
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[test]
fn proc_pre_exec_output_matches_the_book() {
    let mut session = Vec::new();
    for args in [
        &["alarm"][..],
        &["chdir", "/tmp"],
        &["chdir", "/nonexistent"],
        &["lock"],
    ] {
        let out = run_clean(bin!("proc-pre-exec"), args);
        let mut lines = out.stdout;
        lines.extend(out.stderr.lines().map(String::from));
        assert!(out.status.signal().is_none());
        session.push((cargo_run("proc-pre-exec", args), lines));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch24-exec/24-02-proc-pre-exec.out", &session);
}

#[test]
fn command_makes_its_own_pipes_close_on_exec() {
    use std::os::fd::AsRawFd;
    const O_CLOEXEC: u32 = 0o2000000;
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ours = [
        cat.stdin.as_ref().unwrap().as_raw_fd(),
        cat.stdout.as_ref().unwrap().as_raw_fd(),
    ];
    for fd in ours {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags =
            info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
        let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
        assert_ne!(flags & O_CLOEXEC, 0, "fd {fd}: {flags:o}");
    }
    drop(cat.stdin.take());
    assert!(cat.wait().unwrap().success());
}

#[test]
fn exec_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("proc-exec"), &[], "command or fork?");
    assert_rejects(bin!("proc-exec"), &["spawn"], "unknown way");
    assert_rejects(bin!("proc-pre-exec"), &["chdir"], "needs a directory");
    assert_rejects(
        bin!("proc-pre-exec"),
        &["lock", "now"],
        "takes no argument",
    );
}
