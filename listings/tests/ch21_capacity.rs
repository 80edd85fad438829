//! Chapter 21, Capacity and blocking: Listings 21-1 (`pipe-capacity`)
//! and 21-2 (`pipe-deadlock`).

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::support::{
    Listing, assert_rejects, assert_session_matches_book,
    assert_session_matches_book_masking, cargo_run, children_of, finish_clean,
    group_is_gone, run_clean, shell, state_of, wait_until, wchan_of,
};

#[test]
fn pipe_capacity_is_64_kib_and_a_full_pipe_makes_writers_wait() {
    let started = Instant::now();
    let out = run_clean(bin!("pipe-capacity"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "A new pipe holds 65536 bytes (F_GETPIPE_SZ)",
            "Filled with 65536 bytes; then WouldBlock: Resource temporarily \
             unavailable (os error 11)",
            "Most a process may ask for: 1048576",
            "A blocking write waited for SIGALRM, then EINTR: Interrupted \
             system call",
        ]
    );
    // The blocking write waited for the alarm, a second after it began.
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn pipe_capacity_rounds_a_size_up_to_a_power_of_two_pages() {
    for (asked, got) in [
        ("0", 4096),
        ("4096", 4096),
        ("4097", 8192),
        ("65537", 131072),
        ("100000", 131072),
        ("1048576", 1048576),
    ] {
        let out = run_clean(bin!("pipe-capacity"), &["--size", asked]);
        assert!(out.status.success(), "{asked}: {}", out.stderr);
        assert_eq!(
            out.stdout[2],
            format!(
                "Asked for {asked} bytes (F_SETPIPE_SZ): it now holds {got}"
            )
        );
        assert!(
            out.stdout[3].starts_with(&format!("Filled with {got} bytes;")),
            "{:?}",
            out.stdout
        );
    }
}

#[test]
fn pipe_capacity_output_matches_the_book() {
    let args = ["--size", "100000"];
    let out = run_clean(bin!("pipe-capacity"), &args);
    assert_session_matches_book(
        "ch21-capacity/21-01-pipe-capacity.out",
        &[(cargo_run("pipe-capacity", &args), &out.stdout[..])],
    );
}

#[test]
fn pipe_deadlock_happens_as_soon_as_the_output_exceeds_the_pipe() {
    // 65536 bytes fit: waiting first works, by luck of size.
    let out =
        run_clean(bin!("pipe-deadlock"), &["--bytes", "65536", "--wait", "5"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout[1..],
        ["The child exited with status 0", "Read 65536 bytes"]
    );
    // One byte more, and the child waits for a reader that waits for it.
    let out =
        run_clean(bin!("pipe-deadlock"), &["--bytes", "65537", "--wait", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stdout[1..],
        [
            "Gave up waiting: the child has not exited, and the pipe holds \
             65536 bytes",
            "Read 65537 bytes; then the child exited with status 0",
        ]
    );
    assert_eq!(
        out.stderr,
        "pipe-deadlock: waitpid before reading: a deadlock\n"
    );
}

#[test]
fn pipe_deadlock_reading_first_gets_every_byte_then_reaps() {
    let out = run_clean(
        bin!("pipe-deadlock"),
        &["--read-first", "--bytes", "1000000"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        ["Read 1000000 bytes", "The child exited with status 0"]
    );
}

#[test]
fn pipe_deadlock_child_waits_in_write_and_the_parent_in_waitpid() {
    // Terminal 1 runs it with a long wait; Terminal 2 looks at the child,
    // then ends the parent's wait early with the alarm's own signal.
    let args = ["--wait", "60"];
    let mut deadlock = Listing::start(bin!("pipe-deadlock"), &args);
    let first =
        deadlock.expect(r"Waiting for the child \(pid (\d+)\) before reading");
    let child = Pid::from_raw(first[1].parse().unwrap());
    let parent = deadlock.pid();
    assert_eq!(children_of(parent), [child]);
    wait_until("the child to block writing", || {
        wchan_of(child).ends_with("pipe_write")
    });
    wait_until("the parent to block in waitpid", || {
        state_of(parent) == Some('S') && wchan_of(parent).contains("wait")
    });
    let terminal2: Vec<_> = [
        format!("cat /proc/{child}/wchan; echo"),
        format!("grep State /proc/{child}/status"),
        format!("kill -ALRM {parent}"),
    ]
    .into_iter()
    .map(|command| {
        let output = shell(&command);
        (command, output)
    })
    .collect();
    let out = finish_clean(deadlock);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let mut terminal1 = out.stdout;
    terminal1.extend(out.stderr.lines().map(String::from));
    wait_until("pipe-deadlock's processes to end", || group_is_gone(parent));

    let read_first = run_clean(bin!("pipe-deadlock"), &["--read-first"]);
    assert_session_matches_book(
        "ch21-capacity/21-02-pipe-deadlock.out",
        &[
            (cargo_run("pipe-deadlock", &args), &terminal1[..]),
            (
                cargo_run("pipe-deadlock", &["--read-first"]),
                &read_first.stdout[..],
            ),
        ],
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    // Linux 6.x names the place `anon_pipe_write`; older kernels,
    // `pipe_write`.
    assert_session_matches_book_masking(
        "ch21-capacity/21-02-terminal-2.out",
        &session,
        &[(r"\b(anon_)?pipe_write\b", "pipe_write")],
    );
}

#[test]
fn o_nonblock_is_shared_by_a_duplicate_but_cloexec_is_not() {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    use std::os::fd::{FromRawFd, OwnedFd};
    let (_reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    // A second descriptor for the same write end, close-on-exec too.
    let copy = fcntl(&writer, FcntlArg::F_DUPFD_CLOEXEC(10)).unwrap();
    // SAFETY: the descriptor is new and ours alone.
    let copy = unsafe { OwnedFd::from_raw_fd(copy) };
    let status = |fd: &OwnedFd| {
        OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap())
    };
    let descriptor = |fd: &OwnedFd| {
        FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap())
    };
    assert!(!status(&copy).contains(OFlag::O_NONBLOCK));
    // O_NONBLOCK, set through one descriptor, shows through the other:
    // it belongs to the open file description they share.
    fcntl(&writer, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    assert!(status(&copy).contains(OFlag::O_NONBLOCK));
    // FD_CLOEXEC, cleared on one, stays on the other: it is per descriptor.
    fcntl(&writer, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let cleared = descriptor(&writer);
    // Back on at once: a test must not leak descriptors into the
    // programs other tests start meanwhile.
    fcntl(&writer, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
    assert!(!cleared.contains(FdFlag::FD_CLOEXEC));
    assert!(descriptor(&copy).contains(FdFlag::FD_CLOEXEC));
}

#[test]
fn capacity_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("pipe-capacity"), &["--size", "-1"], "--size");
    assert_rejects(
        bin!("pipe-capacity"),
        &["--size", "4294967296"],
        "--size is too large",
    );
    assert_rejects(bin!("pipe-deadlock"), &["--wait", "0"], "at least 1");
    assert_rejects(bin!("pipe-deadlock"), &["--bytes", "x"], r#""x""#);
}
