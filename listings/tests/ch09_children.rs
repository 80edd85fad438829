//! Chapter 9, Children: Listings 9-1 (`sig-zombie`), 9-2 (`sig-reaper`),
//! 9-3 (`sig-orphan`) and 9-4 (`sig-group`).

use nix::unistd::Pid;

use crate::support::{
    Listing, assert_matches_book, assert_rejects, assert_session_matches_book,
    cargo_run, run, shell, state_of,
};

#[test]
fn sig_zombie_stays_a_zombie_until_it_is_reaped() {
    for args in [&[][..], &["--std"][..]] {
        let mut zombie = Listing::start(bin!("sig-zombie"), args);
        let line = zombie.expect(
            r"Child (\d+) has exited and is a zombie until it is reaped",
        );
        let child = Pid::from_raw(line[1].parse().unwrap());
        zombie.expect(&format!(r"Look: grep State /proc/{child}/status"));
        zombie.expect(r"Then reap it: kill -USR1 \d+");
        // Exited, not reaped: state Z, for as long as the parent waits.
        assert_eq!(state_of(child), Some('Z'));
        let look = format!("grep State /proc/{child}/status");
        let looked = shell(&look);
        assert_eq!(looked, ["State:\tZ (zombie)"]);
        let reap = format!("kill -USR1 {}", zombie.pid());
        let reaped = shell(&reap);
        let code = if args.is_empty() { 7 } else { 0 };
        zombie.expect(&format!("Reaped it: status {code}"));
        zombie.expect(&format!("/proc/{child}/stat is gone: true"));
        let out = zombie.finish();
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(state_of(child), None);
        if args.is_empty() {
            assert_matches_book(
                "ch09-children/09-01-sig-zombie.out",
                "sig-zombie",
                args,
                &out.stdout,
            );
            assert_session_matches_book(
                "ch09-children/09-01-terminal-2.out",
                &[(look, &looked), (reap, &reaped)],
            );
        }
    }
}

/// A run of `sig-reaper` as a terminal shows it: stdout, then stderr.
fn reaper(args: &[&str]) -> (Option<i32>, Vec<String>) {
    let out = run(bin!("sig-reaper"), args);
    let mut shown = out.stdout;
    shown.extend(out.stderr.lines().map(String::from));
    (out.status.code(), shown)
}

#[test]
fn sig_reaper_reaps_every_child_of_a_merged_sigchld() {
    let held = ["--hold"];
    let (code, out) = reaper(&held);
    assert_eq!(code, Some(0), "{out:?}");
    assert_eq!(out[1], "1 wake-ups on SIGCHLD; reaped 20 of 20 children");
    let wrong = ["--hold", "--one-per-signal"];
    let (code, bad) = reaper(&wrong);
    assert_eq!(code, Some(1));
    assert_eq!(
        bad[1..],
        [
            "1 wake-ups on SIGCHLD; reaped 1 of 20 children",
            "19 zombies left; reaping them before leaving",
            "sig-reaper: 19 children were not reaped on SIGCHLD",
        ]
    );
    assert_session_matches_book(
        "ch09-children/09-02-sig-reaper.out",
        &[
            (cargo_run("sig-reaper", &held), &out),
            (cargo_run("sig-reaper", &wrong), &bad),
        ],
    );
}

#[test]
fn sig_reaper_waitpid_minus_1_steals_the_status_of_a_command_child() {
    let stealing = ["--hold", "--command"];
    let (code, stole) = reaper(&stealing);
    assert_eq!(code, Some(1), "{stole:?}");
    assert_eq!(
        stole[1..],
        [
            "1 wake-ups on SIGCHLD; reaped 20 of 20 children, and 1 that \
             was not ours",
            "Child::wait on `true`: No child processes (os error 10)",
            "sig-reaper: `Command`'s child was reaped by waitpid(-1)",
        ]
    );
    let owning = ["--hold", "--command", "--own"];
    let (code, own) = reaper(&owning);
    assert_eq!(code, Some(0), "{own:?}");
    assert_eq!(
        own[1..],
        [
            "1 wake-ups on SIGCHLD; reaped 20 of 20 children",
            "Child::wait on `true`: exit status: 0",
        ]
    );
    assert_session_matches_book(
        "ch09-children/09-02-sig-reaper-command.out",
        &[
            (cargo_run("sig-reaper", &stealing), &stole),
            (cargo_run("sig-reaper", &owning), &own),
        ],
    );
}

#[test]
fn sig_reaper_reaps_a_burst_however_the_sigchlds_fall() {
    // Without --hold the number of wake-ups depends on timing; reaping
    // everything on each of them gets all children every time.
    let re = regex::Regex::new(
        r"^(\d+) wake-ups on SIGCHLD; reaped 50 of 50 children$",
    )
    .unwrap();
    for args in [&["--children", "50"][..], &["--children", "50", "--own"]] {
        let out = run(bin!("sig-reaper"), args);
        assert!(out.status.success(), "{}", out.stderr);
        let wake_ups: u32 = re.captures(&out.stdout[1]).expect("a summary")[1]
            .parse()
            .unwrap();
        eprintln!("sig-reaper {args:?}: {wake_ups} wake-ups");
        assert!((1..=50).contains(&wake_ups));
    }
}

#[test]
fn sig_orphan_is_adopted_by_init_or_by_its_subreaper() {
    let parent_of = |line: &str| -> i32 {
        line.rsplit(' ').next().unwrap().parse().expect("a pid")
    };
    let plain = run(bin!("sig-orphan"), &[]);
    assert!(plain.status.success(), "{}", plain.stderr);
    assert_eq!(plain.stdout.len(), 5, "{:?}", plain.stdout);
    let parent = parent_of(&plain.stdout[0].replace(", subreaper: false", ""));
    let middle = parent_of(&plain.stdout[1]);
    let adopter = parent_of(&plain.stdout[4]);
    assert!(adopter != middle && adopter != parent, "{:?}", plain.stdout);
    eprintln!("sig-orphan: the orphan was adopted by pid {adopter}");

    let reaper = run(bin!("sig-orphan"), &["--subreaper"]);
    assert!(reaper.status.success(), "{}", reaper.stderr);
    let parent = parent_of(&reaper.stdout[0].replace(", subreaper: true", ""));
    assert_eq!(parent_of(&reaper.stdout[4]), parent, "{:?}", reaper.stdout);
    assert_eq!(
        reaper.stdout[5],
        "Parent: reaped the grandchild, which exited with status 0"
    );
    assert_session_matches_book(
        "ch09-children/09-03-sig-orphan.out",
        &[
            (cargo_run("sig-orphan", &[]), &plain.stdout),
            (cargo_run("sig-orphan", &["--subreaper"]), &reaper.stdout),
        ],
    );
}

#[test]
fn sig_group_kills_the_group_but_not_the_child_outside_it() {
    let out = run(bin!("sig-group"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "Child A is in A's group",
            "Child B is in A's group",
            "Child C is in a group of its own",
            "Parent: kill(-pgid, SIGTERM) to A's group",
            "Child A was killed by SIGTERM",
            "Child B was killed by SIGTERM",
            "Child C is still running; kill(pid, SIGTERM) to it",
            "Child C was killed by SIGTERM",
        ]
    );
    assert_matches_book(
        "ch09-children/09-04-sig-group.out",
        "sig-group",
        &[],
        &out.stdout,
    );
}

#[test]
fn children_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("sig-zombie"), &["--fork"], "invalid option");
    assert_rejects(
        bin!("sig-reaper"),
        &["--children", "0"],
        "between 1 and 1000",
    );
    assert_rejects(bin!("sig-reaper"), &["--children", "x"], r#"argument "x""#);
    assert_rejects(
        bin!("sig-orphan"),
        &["now"],
        r#"unexpected argument "now""#,
    );
    assert_rejects(bin!("sig-group"), &["now"], r#"unexpected argument "now""#);
    assert_rejects(bin!("sig-chld-flags"), &["-x"], "invalid option");
}

#[test]
fn sig_chld_flags_say_when_sigchld_comes_and_who_reaps() {
    let out = run(bin!("sig-chld-flags"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let rows: Vec<String> = out
        .stdout
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows,
        [
            "default SIGCHLD on stop: true, on continue: true, on exit: true",
            "SA_NOCLDSTOP SIGCHLD on stop: false, on continue: false, on \
             exit: true",
            "SA_NOCLDWAIT waitpid: ECHILD, no zombie; SIGCHLD on exit: true",
            "SIG_IGN waitpid: ECHILD, no zombie; SIGCHLD on exit: false",
        ]
    );
    assert_matches_book(
        "ch09-children/09-05-sig-chld-flags.out",
        "sig-chld-flags",
        &[],
        &out.stdout,
    );
}
