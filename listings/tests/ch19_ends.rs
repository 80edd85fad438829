//! Chapter 19, Ends, EOF and EPIPE: Listings 19-1 (`pipe-no-eof`), 19-2
//! (`pipe-epipe`) and 19-3 (`pipe-leak`).

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::support::{
    Listing, assert_rejects, assert_session_matches_book, cargo_run,
    children_of, fds_of, finish_clean, have, reaps_with_stdout_full, run_clean,
    wait_until, with_child_killed_by_a_real_time_signal, with_output_closed,
};

fn three_lines() -> Vec<String> {
    (1..=3).map(|n| format!("Parent got [line {n}]")).collect()
}

#[test]
fn pipe_no_eof_never_sees_the_end_while_it_holds_a_write_end() {
    let started = Instant::now();
    let mut no_eof = Listing::start(bin!("pipe-no-eof"), &[]);
    for line in three_lines() {
        assert_eq!(no_eof.next_line(), line);
    }
    // While it waits, the parent holds both ends: 3 to read, 4 to write,
    // one pipe.
    let parent = no_eof.pid();
    let fds = fds_of(parent);
    let pipe = &fds.iter().find(|(fd, _)| *fd == 3).expect("fd 3").1;
    assert!(pipe.starts_with("pipe:["), "{fds:?}");
    assert!(fds.contains(&(4, pipe.clone())), "{fds:?}");
    // Both ends link to the same `pipe:[N]`: the access mode in fdinfo
    // (its octal `flags`, O_ACCMODE) tells the read end from the write
    // end, as Listing 19-3 tells them.
    let mode = |fd: i32| {
        let path = format!("/proc/{parent}/fdinfo/{fd}");
        let info = std::fs::read_to_string(&path).expect(&path);
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:"));
        let flags = i32::from_str_radix(flags.expect(&info).trim(), 8);
        flags.expect(&info) & nix::libc::O_ACCMODE
    };
    assert_eq!(mode(3), nix::libc::O_RDONLY, "fd 3 is not the read end");
    assert_eq!(mode(4), nix::libc::O_WRONLY, "fd 4 is not the write end");
    let out = finish_clean(no_eof);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stdout[3..], ["The child has exited with status 0"]);
    assert_eq!(
        out.stderr,
        "pipe-no-eof: no end of stream a second after the child exited: \
         a write end is still open\n"
    );
    // A second of quiet to notice the child, another one after it.
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[test]
fn pipe_no_eof_sees_the_end_once_it_closes_its_write_end() {
    let no_eof = Listing::start(bin!("pipe-no-eof"), &["--close"]);
    let out = finish_clean(no_eof);
    assert!(out.status.success(), "{}", out.stderr);
    let mut expected = three_lines();
    expected.push("End of stream".into());
    expected.push("The child has exited with status 0".into());
    assert_eq!(out.stdout, expected);
}

/// A child slower than the parent's second of patience: the parent reaps
/// it while it waits, then reads its lines and the end of the stream, and
/// must not try to reap it again, which fails with ECHILD. strace holds
/// the child's first write 1.2 s, past the parent's first `poll`, and the
/// parent's first `waitid` 2 s, by when the child has written and exited.
#[test]
fn pipe_no_eof_reaps_a_child_slower_than_its_patience_once() {
    if !have("strace") {
        return;
    }
    let out = run_clean(
        "strace",
        &[
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=write,waitid",
            "-e",
            "inject=write:delay_enter=1200000:when=1",
            "-e",
            "inject=waitid:delay_enter=2000000:when=1",
            "--",
            bin!("pipe-no-eof"),
            "--close",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let mut expected = vec!["The child has exited with status 0".to_string()];
    expected.extend(three_lines());
    expected.push("End of stream".into());
    assert_eq!(out.stdout, expected);
}

/// A child killed by a real-time signal, SIGRTMIN+1, before its first
/// write: nix 0.32's `waitpid` reaped it and then failed with EINVAL, for
/// want of a name for the signal, and the listing reported "EINVAL:
/// Invalid argument" instead of the child. Both waits report it now: the
/// WNOHANG poll of the first run, and the last wait of the run with
/// `--close`, which then fails because the child did.
#[test]
fn pipe_no_eof_reports_a_child_killed_by_a_real_time_signal() {
    if !have("strace") {
        return;
    }
    for (args, complaint) in [
        (
            &[][..],
            "no end of stream a second after the child exited: a write end \
             is still open",
        ),
        (&["--close"][..], "the child failed"),
    ] {
        let (out, signal) = with_child_killed_by_a_real_time_signal(
            bin!("pipe-no-eof"),
            args,
            "write",
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, format!("pipe-no-eof: {complaint}\n"));
        assert_eq!(
            out.stdout.last().map(String::as_str),
            Some(&*format!("The child has been killed by signal {signal}")),
            "{args:?}"
        );
    }
}

#[test]
fn pipe_no_eof_output_matches_the_book() {
    let wrong = run_clean(bin!("pipe-no-eof"), &[]);
    let mut wrong_lines = wrong.stdout.clone();
    wrong_lines.extend(wrong.stderr.lines().map(String::from));
    let fixed = run_clean(bin!("pipe-no-eof"), &["--close"]);
    assert!(fixed.status.success());
    assert_session_matches_book(
        "ch19-ends/19-01-pipe-no-eof.out",
        &[
            (cargo_run("pipe-no-eof", &[]), &wrong_lines[..]),
            (cargo_run("pipe-no-eof", &["--close"]), &fixed.stdout[..]),
        ],
    );
}

#[test]
fn pipe_epipe_gets_epipe_ignored_dies_by_default_and_command_restores() {
    let epipe = Listing::start(bin!("pipe-epipe"), &[]);
    let out = finish_clean(epipe);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "SIGPIPE ignored: write failed: EPIPE: Broken pipe",
            "SIGPIPE at its default action: the child was killed by SIGPIPE",
            "yes, started by Command with SIGPIPE at its default: it was \
             killed by SIGPIPE",
        ]
    );
    assert_session_matches_book(
        "ch19-ends/19-02-pipe-epipe.out",
        &[(cargo_run("pipe-epipe", &[]), &out.stdout[..])],
    );
}

/// The forked child killed by SIGRTMIN+1 before it restores SIGPIPE's
/// default action: nix 0.32's `waitpid` reaped it and then failed with
/// EINVAL, and the listing ended there with "EINVAL: Invalid argument".
/// It now says how the child ended, and goes on to `yes`.
#[test]
fn pipe_epipe_reports_a_child_killed_by_a_real_time_signal() {
    if !have("strace") {
        return;
    }
    let (out, signal) = with_child_killed_by_a_real_time_signal(
        bin!("pipe-epipe"),
        &[],
        "rt_sigaction",
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout[1],
        format!("the child ended with signal: {signal}")
    );
    assert!(
        out.stdout[2].starts_with("yes, started by Command"),
        "{:?}",
        out.stdout
    );
}

/// A parent that blocked SIGPIPE passes its mask on through `exec`, and
/// std's `Command` passes it on again (it resets SIGPIPE's action, not the
/// mask): blocked, the signal kills neither the forked child nor `yes`,
/// whose writes fail with EPIPE instead. The listing must unblock it to
/// show what it says. `env --block-signal` plays that parent.
#[test]
fn pipe_epipe_shows_the_same_when_the_parent_left_sigpipe_blocked() {
    let mut command = std::process::Command::new("env");
    command.arg("--block-signal=PIPE").arg(bin!("pipe-epipe"));
    let epipe = Listing::spawn(&mut command, std::process::Stdio::piped());
    let out = finish_clean(epipe);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        [
            "SIGPIPE ignored: write failed: EPIPE: Broken pipe",
            "SIGPIPE at its default action: the child was killed by SIGPIPE",
            "yes, started by Command with SIGPIPE at its default: it was \
             killed by SIGPIPE",
        ],
        "{}",
        out.stderr
    );
}

/// A `yes` whose first line is not UTF-8, so that reading it fails after
/// the spawn: a stand-in, first on PATH, that prints one such line and
/// then stays, silent, with the pipe open. The listing must end and reap
/// it before it reports the error in one line. It used to return at once
/// and leave the stand-in running in its group.
#[test]
fn pipe_epipe_ends_and_reaps_yes_when_reading_its_line_fails() {
    let dir = tempfile::tempdir().unwrap();
    let yes = dir.path().join("yes");
    // Written by a child, not by this process: a file this process holds
    // open for writing can be inherited by a child another test forks in
    // that instant, and the listing's spawn of it then fails with ETXTBSY.
    crate::support::write_program(
        &yes,
        "#!/bin/sh\nprintf '\\377\\n'\nexec sleep 31337 2>/dev/null\n",
    );
    let path = std::env::var("PATH").unwrap_or_default();
    let mut command = std::process::Command::new(bin!("pipe-epipe"));
    command.env("PATH", format!("{}:{path}", dir.path().display()));
    let epipe = Listing::spawn(&mut command, std::process::Stdio::piped());
    // The stand-in holds neither of the test's pipes (its stdout is the
    // listing's pipe, its stderr /dev/null): only a look at the group
    // before it is killed can see it left behind.
    let out = finish_clean(epipe);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "pipe-epipe: stream did not contain valid UTF-8\n"
    );
}

/// Runs pipe-leak and returns its output, after checking that `cat` and
/// everything else it started are gone.
fn pipe_leak(args: &[&str]) -> Vec<String> {
    let mut leak = Listing::start(bin!("pipe-leak"), args);
    let line = leak.expect(r"Started cat as pid (\d+)");
    let cat = Pid::from_raw(line[1].parse().unwrap());
    if args.is_empty() {
        // Without --cloexec it waits a second for the end: time enough
        // to see that `cat` is its child, and holds the pipe.
        assert_eq!(children_of(leak.pid()), [cat]);
    }
    let out = finish_clean(leak);
    assert!(out.status.success(), "{}", out.stderr);
    out.stdout
}

#[test]
fn pipe_leak_write_end_made_by_pipe_leaks_into_cat() {
    let out = pipe_leak(&[]);
    let cat = out[0].rsplit(' ').next().unwrap();
    assert_eq!(
        out[1..],
        [
            "Reader got [hello]".to_string(),
            format!(
                "No end of stream: cat (pid {cat}) has the write end as \
                 descriptor 4"
            ),
            "End of stream once cat had exited".to_string(),
        ]
    );
}

#[test]
fn pipe_leak_write_end_made_with_cloexec_stays_out_of_cat() {
    let out = pipe_leak(&["--cloexec"]);
    assert_eq!(out[1..], ["Reader got [hello]", "End of stream at once"]);
}

#[test]
fn pipe_leak_output_matches_the_book() {
    let leaked = pipe_leak(&[]);
    let tight = pipe_leak(&["--cloexec"]);
    assert_session_matches_book(
        "ch19-ends/19-03-pipe-leak.out",
        &[
            (cargo_run("pipe-leak", &[]), &leaked[..]),
            (cargo_run("pipe-leak", &["--cloexec"]), &tight[..]),
        ],
    );
}

/// The `flags` of a descriptor of this process, from /proc/self/fdinfo.
fn flags_of(fd: &impl AsRawFd) -> u32 {
    let info = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        fd.as_raw_fd()
    ))
    .unwrap();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
    u32::from_str_radix(flags.trim(), 8).unwrap()
}

#[test]
fn std_makes_pipes_files_and_sockets_close_on_exec_and_so_does_pipe2() {
    const O_CLOEXEC: u32 = 0o2000000;
    let (reader, writer) = std::io::pipe().unwrap();
    assert_ne!(flags_of(&reader) & O_CLOEXEC, 0);
    assert_ne!(flags_of(&writer) & O_CLOEXEC, 0);
    let file = std::fs::File::open("/dev/null").unwrap();
    assert_ne!(flags_of(&file) & O_CLOEXEC, 0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_ne!(flags_of(&listener) & O_CLOEXEC, 0);
    let (one, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    assert_ne!(flags_of(&one) & O_CLOEXEC, 0);
    let (reader, writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    assert_ne!(flags_of(&reader) & O_CLOEXEC, 0);
    assert_ne!(flags_of(&writer) & O_CLOEXEC, 0);
}

/// A `Command` keeps the stdin, stdout and stderr it was given until it
/// is dropped: `spawn` borrows it, and the child gets copies. So a parent
/// that keeps its `Command` holds the write end of the pipe it gave as
/// stdout, and reading the `PipeReader` never comes to the end of the
/// stream, even once the child has exited. `POLLHUP` on the read end says
/// that no write end is left (`pipe_poll` in fs/pipe.c), without waiting.
#[test]
fn a_kept_command_holds_the_write_end_it_was_given() {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::io::Read;
    use std::os::fd::AsFd;
    let hung_up = |reader: &std::io::PipeReader| {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap();
        fds[0].revents().unwrap().contains(PollFlags::POLLHUP)
    };
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut command = std::process::Command::new("echo");
    command.arg("hello");
    let out = Listing::spawn(&mut command, writer.into()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let mut buf = [0; 64];
    let n = reader.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello\n");
    // `echo` has exited; the `Command` still holds the write end.
    assert!(!hung_up(&reader));
    drop(command);
    // Another test's `fork` may hold a copy of the write end until its
    // `exec` closes it: a moment, so wait for the event.
    wait_until("the end of the stream", || hung_up(&reader));
    assert_eq!(reader.read(&mut buf).unwrap(), 0); // The end of the stream.
}

#[test]
fn ends_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("pipe-no-eof"), &["--count", "2"], "invalid option");
    assert_rejects(bin!("pipe-epipe"), &["now"], r#"unexpected argument"#);
    assert_rejects(bin!("pipe-leak"), &["--close"], "invalid option");
}

/// A parent whose output fails (stdout on /dev/full) still reaps its
/// child before it reports, with and without `--close`: strace counts one
/// reap. The first version returned at once, and left that to process 1.
#[test]
fn pipe_no_eof_reaps_its_child_when_its_output_fails() {
    if !have("strace") {
        return;
    }
    for args in [&["--close"][..], &[]] {
        let (out, reaped) = reaps_with_stdout_full(bin!("pipe-no-eof"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr, "pipe-no-eof: No space left on device (os error 28)\n",
            "{args:?}"
        );
        assert_eq!(reaped, 1, "{args:?}");
    }
}

/// Whatever fails once `cat` runs, here the program's first line, `cat`
/// is ended (its stdin closed) and reaped before the program reports.
#[test]
fn pipe_leak_reaps_cat_when_its_output_fails() {
    if !have("strace") {
        return;
    }
    for args in [&["--cloexec"][..], &[]] {
        let (out, reaped) = reaps_with_stdout_full(bin!("pipe-leak"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr, "pipe-leak: No space left on device (os error 28)\n",
            "{args:?}"
        );
        assert_eq!(reaped, 1, "{args:?}");
    }
}

/// Nobody reads the output (a closed pipe, Linux 6.18): with and without
/// `--close`, the parent ends quietly, through `main`, once it has reaped
/// its child. The first version restored SIGPIPE's default, died of it at
/// its first line, and left its child to whoever adopted it.
#[test]
fn pipe_no_eof_reaps_its_child_when_its_reader_is_gone() {
    for args in [&["--close"][..], &[]] {
        let Some(out) = with_output_closed(bin!("pipe-no-eof"), args) else {
            return;
        };
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, "", "{args:?}");
        assert_eq!(out.stdout, ["parent: 0", "none"], "{args:?}");
    }
}

/// The same for `cat`: with a closed pipe as its output the program ends
/// quietly, once `cat` is ended and reaped. The first version died of
/// SIGPIPE and left `cat` to whoever adopted it.
#[test]
fn pipe_leak_reaps_cat_when_its_reader_is_gone() {
    for args in [&["--cloexec"][..], &[]] {
        let Some(out) = with_output_closed(bin!("pipe-leak"), args) else {
            return;
        };
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, "", "{args:?}");
        assert_eq!(out.stdout, ["parent: 0", "none"], "{args:?}");
    }
}

/// An open file in flight, sent with `SCM_RIGHTS` and not received yet,
/// holds its pipe end open although no process has a descriptor for it:
/// the reader sees no end of the stream until the message is discarded,
/// with the socket that held it.
#[test]
fn a_write_end_in_flight_keeps_the_end_of_the_stream_away() {
    use nix::fcntl::OFlag;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use nix::unistd::{pipe2, read};
    use std::io::IoSlice;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC).unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let fds = [writer.as_raw_fd()];
    sendmsg::<()>(
        ours.as_raw_fd(),
        &[IoSlice::new(b"x")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    drop(writer); // No descriptor for the write end is left anywhere.
    let readable = |ms: u16| {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
    };
    let linux = format!("Linux {}", crate::support::kernel());
    assert!(
        !readable(200),
        "{linux}: the end came with the end in flight"
    );
    drop((ours, theirs)); // Discards the message, and the file in it.
    assert!(readable(5000), "{linux}");
    assert_eq!(read(&reader, &mut [0; 1]).unwrap(), 0, "{linux}");
}

/// A write that has put some of its bytes in when the last read end
/// closes returns that count, not EPIPE (`pipe_write` in fs/pipe.c: the
/// error only if nothing was copied); the next write gets EPIPE. This test
/// process ignores SIGPIPE, as every Rust program does.
#[test]
fn a_write_cut_short_by_the_last_reader_returns_its_count_then_epipe() {
    use nix::errno::Errno;
    use nix::fcntl::OFlag;
    use nix::unistd::{pipe2, write};
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC).unwrap();
    let unread = |fd: &std::os::fd::OwnedFd| {
        let mut n: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer.
        let res = unsafe {
            nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut n)
        };
        Errno::result(res).unwrap();
        n
    };
    let big = std::thread::spawn(move || {
        let first = write(&writer, &[b'x'; 100_000]);
        (first, write(&writer, b"x"))
    });
    // FIONREAD takes the pipe's lock, which the writer holds while it
    // copies: 65536 unread means it has filled the pipe and waits.
    wait_until("the pipe to be full", || unread(&reader) == 65536);
    drop(reader);
    let (first, second) = big.join().unwrap();
    let linux = format!("Linux {}", crate::support::kernel());
    assert_eq!(first, Ok(65536), "{linux}");
    assert_eq!(second, Err(Errno::EPIPE), "{linux}");
}

/// The same cut-short write raises SIGPIPE all the same (`pipe_write` in
/// fs/pipe.c sends the signal before it chooses between the count and
/// EPIPE): a writer with the default action dies in that write, with its
/// first 65536 bytes in the pipe, and never sees the count. The writer
/// makes that one `write` and no other, so only that write can kill it:
/// had it raised nothing, the writer would report the count and exit 0.
/// (`dd`, which this test used before, writes the rest of a short write
/// again, and that second write's SIGPIPE would kill it all the same.)
/// Python ignores SIGPIPE at startup; the writer sets the default back.
#[test]
fn a_write_cut_short_by_the_last_reader_raises_sigpipe_all_the_same() {
    use nix::errno::Errno;
    use nix::fcntl::OFlag;
    use nix::unistd::pipe2;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    if !have("python3") {
        return;
    }
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC).unwrap();
    let unread = |fd: &std::os::fd::OwnedFd| {
        let mut n: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer.
        let res = unsafe {
            nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut n)
        };
        Errno::result(res).unwrap();
        n
    };
    let one_write = "import os, signal, sys\n\
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n\
        n = os.write(1, bytes(100000))\n\
        print('one write returned', n, 'and no signal', file=sys.stderr)\n";
    let mut command = Command::new("python3");
    command.args(["-c", one_write]);
    let one = Listing::spawn(&mut command, Stdio::from(writer));
    drop(command); // Our copy of the write end: only the writer writes now.
    // FIONREAD takes the pipe's lock, which the writer holds while it
    // copies: 65536 unread means its write has filled the pipe and waits.
    wait_until("the pipe to be full", || unread(&reader) == 65536);
    drop(reader);
    let out = one.finish();
    let linux = format!("Linux {}", crate::support::kernel());
    assert_eq!(
        out.status.signal(),
        Some(nix::libc::SIGPIPE),
        "{linux}: {:?}: {}",
        out.status,
        out.stderr
    );
}

/// Chapter 12's rule for Listings 19-2 and 19-3: their `keep_zombies`
/// sets SIGCHLD's default for their own waits, and started with SIGCHLD
/// ignored, they used to start `yes` and `cat` with the default. A
/// stand-in for each, first on PATH, records its /proc status, then execs
/// the real one.
#[test]
fn pipe_epipe_and_leak_give_their_child_back_the_sigchld_they_found() {
    use nix::sys::signal::Signal;
    use std::process::{Command, Stdio};
    let programs = [(bin!("pipe-epipe"), "yes"), (bin!("pipe-leak"), "cat")];
    for (listing, child) in programs {
        for ignored in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            if crate::support::status_recorder(dir.path(), child).is_none() {
                return;
            }
            let recorded = dir.path().join("status");
            let mut command = if ignored {
                crate::support::with_sigchld_ignored(listing, &[])
            } else {
                Command::new(listing)
            };
            let path = std::env::var("PATH").unwrap_or_default();
            command
                .env("PATH", format!("{}:{path}", dir.path().display()))
                .env("STATUS_FILE", &recorded);
            let out =
                finish_clean(Listing::spawn(&mut command, Stdio::piped()));
            let what =
                format!("{child}, started with SIGCHLD ignored: {ignored}");
            assert!(out.status.success(), "{what}: {}", out.stderr);
            let status = std::fs::read_to_string(&recorded).expect(&what);
            assert_eq!(
                crate::support::signal_in_status(
                    &status,
                    "SigIgn:",
                    Signal::SIGCHLD
                ),
                ignored,
                "{what}"
            );
        }
    }
}

/// std sets close-on-exec as it creates each descriptor, not afterwards:
/// reading the flags later cannot tell `pipe2(O_CLOEXEC)` from `pipe`
/// followed by `fcntl(F_SETFD)`, the pattern that leaks in a threaded
/// program. Under strace (Linux 6.18), the child run of this test makes a
/// pipe, opens a file, a TCP socket and a socket pair, and gives a command
/// a piped stdout: each creating call carries `O_CLOEXEC` or
/// `SOCK_CLOEXEC`, none is a bare `pipe`, and no `F_SETFD` follows.
#[test]
fn std_sets_close_on_exec_in_the_call_that_creates_each_descriptor() {
    const IN_CHILD: &str = "CH19_CLOEXEC_IN_CHILD";
    if std::env::var_os(IN_CHILD).is_some() {
        let _pipe = std::io::pipe().unwrap();
        let _file = std::fs::File::open("/dev/null").unwrap();
        let _listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _pair = std::os::unix::net::UnixStream::pair().unwrap();
        let out = std::process::Command::new("true")
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success());
        return;
    }
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let exe = std::env::current_exe().expect("this test binary");
    let name = "ch19_ends::\
                std_sets_close_on_exec_in_the_call_that_creates_each_descriptor";
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-qq", "-e"])
        .arg("trace=pipe,pipe2,openat,socket,socketpair,fcntl")
        .arg("-o")
        .arg(&trace)
        .arg("--")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1");
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    let trace = std::fs::read_to_string(&trace).unwrap();
    let calls = |name: &str| {
        trace
            .lines()
            .filter(|line| line.contains(&format!(" {name}(")))
            .collect::<Vec<_>>()
    };
    assert!(calls("pipe").is_empty(), "{trace}");
    assert!(!trace.contains("F_SETFD"), "{trace}");
    // std::io::pipe, then the pipe behind Stdio::piped().
    let pipes = calls("pipe2");
    assert!(pipes.len() >= 2, "{trace}");
    assert!(pipes.iter().all(|l| l.contains("O_CLOEXEC")), "{trace}");
    let opens = calls("openat");
    assert!(opens.iter().any(|l| l.contains("\"/dev/null\"")), "{trace}");
    assert!(opens.iter().all(|l| l.contains("O_CLOEXEC")), "{trace}");
    for socket in ["socket", "socketpair"] {
        let made = calls(socket);
        assert!(!made.is_empty(), "{trace}");
        assert!(made.iter().all(|l| l.contains("SOCK_CLOEXEC")), "{trace}");
    }
}

/// A descriptor open for reading and writing holds the write end too:
/// Listing 19-3 names its holder as well as `cat`. While `pipe-leak`
/// waits its second for the end, this test process opens `cat`'s leaked
/// write end again through /proc with `O_RDWR` (a new open of the pipe,
/// flags 2 in the low bits), its only hold on the pipe; it closes it once
/// both holders are named, so the end comes when `cat` exits.
#[test]
fn pipe_leak_names_a_holder_that_has_the_pipe_open_for_reading_and_writing() {
    let mut leak = Listing::start(bin!("pipe-leak"), &[]);
    let line = leak.expect(r"Started cat as pid (\d+)");
    let cat = line[1].clone();
    assert_eq!(leak.next_line(), "Reader got [hello]");
    let both = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{cat}/fd/4"))
        .unwrap();
    assert_eq!(flags_of(&both) & 0o3, 0o2, "O_RDWR");
    let me = std::process::id();
    let name = std::fs::read_to_string("/proc/self/comm").unwrap();
    let mut holders = vec![leak.next_line(), leak.next_line()];
    holders.sort();
    let mut expected = vec![
        format!(
            "No end of stream: cat (pid {cat}) has the write end as \
             descriptor 4"
        ),
        format!(
            "No end of stream: {} (pid {me}) has the write end as \
             descriptor {}",
            name.trim_end(),
            both.as_raw_fd()
        ),
    ];
    expected.sort();
    assert_eq!(holders, expected);
    drop(both);
    assert_eq!(leak.next_line(), "End of stream once cat had exited");
    let out = finish_clean(leak);
    assert!(out.status.success(), "{}", out.stderr);
}

/// A listing that cannot make its pipe, or cannot fork, says which call
/// failed, as it does for a child it cannot start: a bare errno ("EAGAIN:
/// Try again") names neither. Four descriptors leave no room for a pipe
/// beside stdin, stdout and stderr; a user allowed one process may not
/// fork (root only, skipped otherwise).
#[test]
fn pipe_listings_name_the_call_when_a_pipe_or_a_fork_is_refused() {
    use std::process::{Command, Stdio};

    use crate::support::with_fd_limit;

    let runs: [(&str, &str, &[&str], bool); 7] = [
        ("pipe-no-eof", bin!("pipe-no-eof"), &[], true),
        ("pipe-epipe", bin!("pipe-epipe"), &[], true),
        ("pipe-leak", bin!("pipe-leak"), &[], false),
        ("pipe-writers", bin!("pipe-writers"), &[], false),
        ("pipe-frames", bin!("pipe-frames"), &["length"], true),
        ("pipe-capacity", bin!("pipe-capacity"), &[], false),
        ("pipe-deadlock", bin!("pipe-deadlock"), &[], true),
    ];
    let last_line = |command: &mut Command| {
        let out = Listing::spawn(command, Stdio::null()).finish();
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        let lines: Vec<_> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        lines[0].to_string()
    };
    for (name, bin, args, forks) in runs {
        let mut command = Command::new(bin);
        command.args(args);
        with_fd_limit(&mut command, 4, 4);
        assert_eq!(
            last_line(&mut command),
            format!("{name}: cannot make a pipe: EMFILE: Too many open files")
        );
        if !forks {
            continue;
        }
        let mut plain = Command::new(bin);
        plain.args(args);
        let Some((mut command, _dir)) =
            crate::support::with_thread_limit(&plain, 1)
        else {
            continue;
        };
        assert_eq!(
            last_line(&mut command),
            format!("{name}: cannot fork: EAGAIN: Try again")
        );
    }
}

/// std's `Command` gives SIGPIPE its default action back in the child,
/// not its mask: a `yes` started by a parent that blocked SIGPIPE, and
/// never unblocked by anyone, is not killed when its reader goes, but
/// sees its write fail with EPIPE and exits with status 1 (GNU yes's
/// "Broken pipe" line). Here the test's own thread is that parent, for
/// the spawn only. A plain `Command`, not `Listing`, which gives every
/// listing the default mask. yes is killed if it outlives its patience.
#[test]
fn yes_started_by_command_with_sigpipe_blocked_exits_1_on_epipe() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    use nix::sys::signal::{SigSet, SigmaskHow, Signal};

    if !have("yes") {
        return;
    }
    let (read_end, write_end) = std::io::pipe().unwrap();
    let old = SigSet::from(Signal::SIGPIPE)
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .unwrap();
    let child = Command::new("yes")
        .stdin(Stdio::null())
        .stdout(write_end)
        .stderr(Stdio::piped())
        .spawn();
    old.thread_set_mask().unwrap();
    let mut child = child.unwrap();
    let mut line = String::new();
    BufReader::new(read_end).read_line(&mut line).unwrap();
    assert_eq!(line, "y\n");
    // The reader dropped: yes's next write finds no reader.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("yes did not end");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("Broken pipe"), "{stderr}");
}
