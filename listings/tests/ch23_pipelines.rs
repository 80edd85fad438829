//! Chapter 23, Pipelines with `Command`: Listings 23-1 (`spawn-pipeline`),
//! 23-2 (`spawn-deadlock`) and 23-3 (`spawn-grandchild`).

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::support::{
    KillGroupOnDrop, Listing, assert_rejects, assert_session_matches_book,
    assert_session_matches_book_masking, cargo_run, children_of, finish_clean,
    group_is_gone, is_dead, pgid_of, run_clean, wait_until,
};

/// The stages of a running pipeline, once all `n` have started and
/// joined their group, and that group.
fn stages(pipeline: &Listing, n: usize) -> (Vec<Pid>, Pid) {
    let mut stages = Vec::new();
    // A stage joins the group between fork and exec: until then, it is
    // in the listing's group.
    wait_until("the stages to start and join their group", || {
        stages = children_of(pipeline.pid());
        stages.len() == n
            && stages.iter().all(|&s| {
                pgid_of(s).is_some_and(|group| group != pipeline.pid())
            })
    });
    let group = pgid_of(stages[0]).expect("a stage's group");
    for &stage in &stages {
        assert_eq!(pgid_of(stage), Some(group), "one group for all");
    }
    assert!(stages.contains(&group), "a stage leads the group");
    (stages, group)
}

#[test]
fn spawn_pipeline_passes_each_stdout_to_the_next_stdin() {
    let out = run_clean(
        bin!("spawn-pipeline"),
        &["seq", "1", "5", "|", "tr", "1-5", "a-e", "|", "sort", "-r"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, ["e", "d", "c", "b", "a"]);
    assert_eq!(out.stderr, "");
    // Every line written is read: a hundred thousand in, as many out.
    let out = run_clean(
        bin!("spawn-pipeline"),
        &["seq", "100000", "|", "cat", "|", "wc", "-l"],
    );
    assert_eq!(out.stdout, ["100000"]);
}

#[test]
fn spawn_pipeline_fails_with_the_last_failing_stage_like_pipefail() {
    let out = run_clean(
        bin!("spawn-pipeline"),
        &[
            "sh",
            "-c",
            "exit 3",
            "|",
            "sh",
            "-c",
            "cat; exit 4",
            "|",
            "cat",
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        out.stderr,
        "spawn-pipeline: sh: exited with status 3\n\
         spawn-pipeline: sh: exited with status 4\n"
    );
    // `head` exits after two lines; `yes` dies of SIGPIPE at its next
    // write, and pipefail counts that as a failure: 128 + 13.
    let out =
        run_clean(bin!("spawn-pipeline"), &["yes", "|", "head", "-n", "2"]);
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(out.stdout, ["y", "y"]);
    assert_eq!(out.stderr, "spawn-pipeline: yes: killed by SIGPIPE\n");
}

#[test]
fn spawn_pipeline_passes_ctrl_c_to_the_whole_group_and_ends_by_it() {
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let pipeline = Listing::start(
            bin!("spawn-pipeline"),
            &["sleep", "60", "|", "sleep", "60"],
        );
        let (stages, group) = stages(&pipeline, 2);
        let _cleanup = KillGroupOnDrop(group);
        // Ctrl-C signals the terminal's foreground process group, which
        // is the listing's; the stages' group is not in it.
        killpg(pipeline.pid(), signal).unwrap();
        let out = finish_clean(pipeline);
        assert_eq!(out.status.signal(), Some(signal as i32), "{}", out.stderr);
        assert_eq!(out.stderr, "", "an interrupted pipeline says nothing");
        for stage in stages {
            assert!(is_dead(stage), "{signal}: a stage lives on");
        }
        wait_until("the pipeline to end", || group_is_gone(group));
    }
}

#[test]
fn spawn_pipeline_stages_die_with_it_when_it_is_killed() {
    let pipeline =
        Listing::start(bin!("spawn-pipeline"), &["sleep", "60", "|", "cat"]);
    let (_, group) = stages(&pipeline, 2);
    let _cleanup = KillGroupOnDrop(group);
    pipeline.signal(Signal::SIGKILL);
    let out = finish_clean(pipeline);
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
    // Nobody could pass SIGKILL on: the kernel does, as PR_SET_PDEATHSIG.
    wait_until("the stages to die", || group_is_gone(group));
}

#[test]
fn spawn_pipeline_stops_a_pipeline_that_runs_past_its_timeout() {
    let started = Instant::now();
    let pipeline = Listing::start(
        bin!("spawn-pipeline"),
        &["--timeout", "1", "sleep", "60", "|", "cat"],
    );
    let (_, group) = stages(&pipeline, 2);
    let _cleanup = KillGroupOnDrop(group);
    let out = finish_clean(pipeline);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(out.stderr, "spawn-pipeline: timed out after 1 s\n");
    assert!(started.elapsed() >= Duration::from_secs(1));
    wait_until("the stages to end", || group_is_gone(group));

    // A stage that ignores SIGTERM gets SIGKILL, two seconds later.
    let started = Instant::now();
    let pipeline = Listing::start(
        bin!("spawn-pipeline"),
        &["--timeout", "1", "sh", "-c", "trap '' TERM; sleep 60"],
    );
    let (_, group) = stages(&pipeline, 1);
    let _cleanup = KillGroupOnDrop(group);
    let out = finish_clean(pipeline);
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() >= Duration::from_secs(3));
    wait_until("the stage to end", || group_is_gone(group));
}

#[test]
fn spawn_pipeline_stops_the_stages_it_started_when_one_cannot_start() {
    let pipeline = Listing::start(
        bin!("spawn-pipeline"),
        &["sleep", "60", "|", "no-such-program"],
    );
    let pgid = pipeline.pid();
    let out = finish_clean(pipeline);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        "spawn-pipeline: cannot run \"no-such-program\": No such file or \
         directory (os error 2)\n"
    );
    // `sleep` ran in the pipeline's own group; it is gone too.
    wait_until("everything to end", || {
        group_is_gone(pgid) && children_of(pgid).is_empty()
    });
}

#[test]
fn spawn_pipeline_output_matches_the_book() {
    let sorted = ["seq", "1", "5", "|", "tr", "1-5", "a-e", "|", "sort", "-r"];
    let head = ["yes", "|", "head", "-n", "2"];
    let mut session = Vec::new();
    for args in [&sorted[..], &head[..]] {
        let out = run_clean(bin!("spawn-pipeline"), args);
        let mut lines = out.stdout;
        lines.extend(out.stderr.lines().map(String::from));
        // The shell needs `|` quoted; the book shows it so.
        let shown: Vec<_> = args
            .iter()
            .map(|a| if *a == "|" { "'|'" } else { a })
            .collect();
        session.push((cargo_run("spawn-pipeline", &shown), lines));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch23-pipelines/23-01-spawn-pipeline.out",
        &session,
    );
}

#[test]
fn spawn_deadlock_writing_everything_first_deadlocks_until_the_watchdog() {
    let started = Instant::now();
    let out = run_clean(bin!("spawn-deadlock"), &["--wait", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        "spawn-deadlock: deadlock: cat killed after 1 s\n"
    );
    let caps = regex::Regex::new(
        r"^Wrote (\d+) of 1000000 bytes, got (\d+) back; cat was killed by SIGKILL$",
    )
    .unwrap()
    .captures(&out.stdout[0])
    .unwrap_or_else(|| panic!("{:?}", out.stdout));
    // At least cat's stdin pipe was filled, and not everything went in.
    let written: usize = caps[1].parse().unwrap();
    assert!((65536..1_000_000).contains(&written), "{written}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn spawn_deadlock_a_writer_thread_gets_every_byte_back_either_way() {
    for way in ["thread", "output"] {
        // A generous watchdog: on a loaded machine a million bytes may
        // take a while, and this test is not about the watchdog.
        let out = run_clean(bin!("spawn-deadlock"), &[way, "--wait", "30"]);
        assert!(out.status.success(), "{way}: {}", out.stderr);
        let also = if way == "output" {
            " and 0 on stderr"
        } else {
            ""
        };
        assert_eq!(
            out.stdout,
            [format!(
                "Sent 1000000 bytes, got 1000000 back{also}; cat exited with \
                 status 0"
            )]
        );
    }
}

#[test]
fn spawn_deadlock_output_matches_the_book() {
    let mut session = Vec::new();
    for way in ["write-first", "thread", "output"] {
        let out = run_clean(bin!("spawn-deadlock"), &[way]);
        let mut lines = out.stdout;
        lines.extend(out.stderr.lines().map(String::from));
        session.push((cargo_run("spawn-deadlock", &[way]), lines));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    // How far the writer got before the deadlock, and how much of it cat
    // passed on, depend on when cat ran.
    assert_session_matches_book_masking(
        "ch23-pipelines/23-02-spawn-deadlock.out",
        &session,
        &[(
            r"Wrote \d+ of 1000000 bytes, got \d+",
            "Wrote <n> of 1000000 bytes, got <m>",
        )],
    );
}

#[test]
fn reading_stdout_to_its_end_first_deadlocks_on_a_full_stderr() {
    use std::io::Read;
    // A child that fills stderr before it writes a byte to stdout.
    let script = "head -c 100000 /dev/zero >&2; echo done";
    let spawn = || {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    // Stdout to its end first, in a thread so that the test can give up:
    // the end never comes, since the child waits for room in stderr.
    let mut child = spawn();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = tx.send(stdout.read_to_string(&mut text).map(|_| text));
    });
    let waited = rx.recv_timeout(Duration::from_secs(2));
    assert!(waited.is_err(), "stdout ended: {waited:?}");
    let group = Pid::from_raw(child.id() as i32);
    killpg(group, Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // Both at once, as wait_with_output reads them: every byte.
    let out = spawn().wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"done\n");
    assert_eq!(out.stderr.len(), 100_000);
}

/// Runs spawn-grandchild, checks that nothing is left behind (in its
/// group, and in the child's when it made one), and returns its output
/// with the pid of the grandchild and how long it took.
fn grandchild(args: &[&str]) -> (Vec<String>, Pid, Duration) {
    let started = Instant::now();
    let mut listing = Listing::start(bin!("spawn-grandchild"), args);
    let first = listing.expect(r"Child (\d+) started sleep as pid (\d+)");
    let child = Pid::from_raw(first[1].parse().unwrap());
    let sleep = Pid::from_raw(first[2].parse().unwrap());
    let pgid = listing.pid();
    let out = finish_clean(listing);
    assert!(out.status.success(), "{args:?}: {}", out.stderr);
    let took = started.elapsed();
    wait_until("every process to end", || {
        group_is_gone(pgid) && group_is_gone(child) && is_dead(sleep)
    });
    (out.stdout, sleep, took)
}

#[test]
fn spawn_grandchild_holds_a_leaked_write_end_until_it_exits() {
    let (out, sleep, took) = grandchild(&[]);
    assert_eq!(
        out[1..],
        [
            "The child has exited".to_string(),
            format!(
                "No end of stream: sleep (pid {sleep}) has the write end as \
                 descriptor 4"
            ),
            "End of stream once sleep had exited".to_string(),
        ]
    );
    assert!(took >= Duration::from_secs(5), "sleep 5 held it: {took:?}");
}

#[test]
fn spawn_grandchild_cloexec_keeps_the_pipe_out_of_a_careful_grandchild() {
    let (out, _, _) = grandchild(&["--cloexec"]);
    assert_eq!(out[1..], ["The child has exited", "End of stream"]);
    // It cannot close the stdout that a careless grandchild inherits.
    let (out, sleep, _) = grandchild(&["--cloexec", "--careless"]);
    assert_eq!(
        out[2],
        format!(
            "No end of stream: sleep (pid {sleep}) has the write end as descriptor 1"
        )
    );
}

#[test]
fn spawn_grandchild_killing_the_group_ends_every_grandchild() {
    for args in [&["--group"][..], &["--group", "--careless"]] {
        let (out, _, took) = grandchild(args);
        assert_eq!(
            out[1..],
            [
                "The child has exited; killed its process group",
                "End of stream"
            ]
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
}

#[test]
fn spawn_grandchild_output_matches_the_book() {
    let mut session = Vec::new();
    for args in [
        &[][..],
        &["--cloexec"],
        &["--careless", "--cloexec"],
        &["--group"],
    ] {
        let (out, _, _) = grandchild(args);
        session.push((cargo_run("spawn-grandchild", args), out));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book_masking(
        "ch23-pipelines/23-03-spawn-grandchild.out",
        &session,
        &[(r"started sleep as pid \d+", "started sleep as pid <pid>")],
    );
}

/// The Linux alternative to wait-timeout: a pidfd, a descriptor for a
/// process, which `poll` reports readable once the process has exited.
#[test]
fn a_pidfd_becomes_readable_when_its_process_exits() {
    let mut sleep = Command::new("sleep")
        .arg("0.5")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // SAFETY: pidfd_open takes a pid and flags, and returns a new
    // descriptor or -1.
    let fd =
        unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, sleep.id(), 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptor is new and ours alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    // Not yet: the process runs.
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
    // Readable within a deadline once it exits; then `wait` reaps it.
    assert_eq!(poll(&mut fds, PollTimeout::from(30_000u16)).unwrap(), 1);
    assert!(sleep.wait().unwrap().success());
}

#[test]
fn pipeline_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("spawn-pipeline"), &[], "every stage needs a command");
    assert_rejects(bin!("spawn-pipeline"), &["ls", "|"], "every stage needs");
    assert_rejects(bin!("spawn-pipeline"), &["--timeout", "x", "ls"], r#""x""#);
    assert_rejects(bin!("spawn-deadlock"), &["later"], "unknown way");
    assert_rejects(bin!("spawn-deadlock"), &["--bytes", "-1"], "--bytes");
    assert_rejects(bin!("spawn-grandchild"), &["--fix"], "invalid option");
}
