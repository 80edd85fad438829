//! Chapter 20, Boundaries and atomicity: Listings 20-1 (`pipe-writers`)
//! and 20-2 (`pipe-frames`).

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};

use crate::support::{
    Finished, Listing, assert_rejects, assert_session_matches_book,
    assert_session_matches_book_masking, cargo_run, children_of, finish_clean,
    have, kernel, need_root, reachable_by_anyone, reaps_in, run, run_clean,
    traced_for_reaps, wait_until, with_child_killed_by_a_real_time_signal,
    with_output_closed,
};

/// The numbers N and M of the last line, "Writes cut…: N of M".
fn cut(out: &Finished) -> (usize, usize) {
    let line = out.stdout.last().expect("a last line");
    let (text, numbers) = line.rsplit_once(": ").expect("…: N of M");
    assert_eq!(text, "Writes cut by other writers");
    let (n, m) = numbers.split_once(" of ").expect("N of M");
    (n.parse().expect("a count"), m.parse().expect("a count"))
}

/// The promise of POSIX: a write of at most PIPE_BUF bytes is never
/// mixed with another writer's bytes, whoever reads. Writes of 4096 bytes
/// under the listing's reader cannot show it alone: 4096 is also one page,
/// and a reader that empties the pipe at every read leaves whole-page
/// writes that fit uncut, promise or not (the test below). So writes that
/// are not a whole page are held to zero too, under readers of one page
/// and of less, which are first seen to cut writes of PIPE_BUF + 1 bytes:
/// these runs could show a cut write if the kernel made one.
#[test]
fn pipe_writers_never_cut_writes_of_pipe_buf_bytes() {
    let linux = format!("Linux {}", kernel());
    for read_size in ["4096", "1000"] {
        let args = ["--size", "4097", "--writes", "200"];
        let args = [&args[..], &["--read-size", read_size]].concat();
        let over = run_clean(bin!("pipe-writers"), &args);
        assert!(over.status.success(), "{}", over.stderr);
        let (n, writes) = cut(&over);
        assert!(
            n > 0,
            "{n} of {writes} cut by reads of {read_size}; {linux}"
        );
    }
    for (size, read_size) in [(4096, 65536), (4095, 4096), (3000, 1000)] {
        let (size_arg, read_arg) = (size.to_string(), read_size.to_string());
        let args = ["--size", &size_arg, "--read-size", &read_arg];
        let out = run_clean(bin!("pipe-writers"), &args);
        assert!(out.status.success(), "{}", out.stderr);
        let each = 1000 * size;
        assert_eq!(
            out.stdout[..2],
            [
                format!(
                    "4 writers, 1000 writes of {size} bytes each; PIPE_BUF \
                     is 4096"
                ),
                format!("Read {} bytes: {each} from each writer", 4 * each),
            ]
        );
        assert_eq!(
            cut(&out),
            (0, 4000),
            "an atomic write of {size} bytes was cut, reads of {read_size}"
        );
    }
}

#[test]
fn pipe_writers_deliver_every_byte_of_larger_writes_cut_or_not() {
    // No promise above PIPE_BUF: the count of cut writes is whatever it
    // is (the book shows one run). Every byte of every writer still
    // arrives, cut or not.
    let out =
        run_clean(bin!("pipe-writers"), &["--size", "4097", "--writes", "200"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout[1], "Read 3277600 bytes: 819400 from each writer");
    assert_eq!(cut(&out).1, 800);
}

/// Whole-page writes that fit the pipe came through uncut with the
/// listing's reader, which empties the pipe at every read: its 16 slots
/// come free together. A reader that takes one page per read frees one
/// slot at a time, and a writer of two pages copies one, waits, and is
/// cut. Written on Linux 6.18 (`pipe_read` and `pipe_write` in
/// fs/pipe.c); twenty cut writes of 800 is far below what it cuts.
#[test]
fn pipe_writers_whole_page_writes_are_cut_by_a_reader_of_one_page() {
    let linux = format!("Linux {}", kernel());
    let args = ["--size", "8192", "--writes", "200"];
    let whole = run_clean(bin!("pipe-writers"), &args);
    assert!(whole.status.success(), "{}", whole.stderr);
    assert_eq!(cut(&whole), (0, 800), "{linux}");
    let paged = [&args[..], &["--read-size", "4096"]].concat();
    let paged = run_clean(bin!("pipe-writers"), &paged);
    assert!(paged.status.success(), "{}", paged.stderr);
    assert_eq!(
        paged.stdout[1],
        "Read 6553600 bytes: 1638400 from each writer"
    );
    let (n, writes) = cut(&paged);
    assert!(n > 20, "{n} of {writes} cut; {linux}");
    // Three pages do not divide the pipe's sixteen: with the same reader
    // of 64 KiB, a writer finds too few slots left, and is cut.
    let three = ["--size", "12288", "--writes", "200"];
    let three = run_clean(bin!("pipe-writers"), &three);
    assert!(three.status.success(), "{}", three.stderr);
    let (n, writes) = cut(&three);
    assert!(n > 0, "{n} of {writes} writes of three pages cut; {linux}");
}

#[test]
fn pipe_writers_counts_each_cut_write_once() {
    // A write larger than the pipe always goes in in parts, so nearly
    // every one is cut, and with one-page reads most are cut many times:
    // a count of pieces, or of runs of odd length, exceeds the number of
    // writes; this may not. (With 64 KiB reads a 65537-byte write is cut
    // at most once, and a count of pieces would pass unseen.)
    let out = run_clean(
        bin!("pipe-writers"),
        &["--size", "65537", "--writes", "100", "--read-size", "4096"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let (n, writes) = cut(&out);
    assert_eq!(writes, 400);
    assert!(n <= writes, "{n} of {writes}");
}

/// A `fork` refused half-way: as a user allowed three processes
/// (`ulimit -u 3`), the listing and two writers, the third `fork` fails.
/// The two writers already started, blocked on the full pipe, must not be
/// left behind for whoever adopts them: the listing closes the pipe, which
/// kills them at their next write, and reaps both (strace shows its two
/// `wait4`) before it reports, in one line. It used to return at once and
/// reap neither.
#[test]
fn pipe_writers_reaps_the_writers_it_started_when_a_fork_fails() {
    if !need_root("run the listing as another user") {
        return;
    }
    if !have("setpriv") || !have("strace") {
        return;
    }
    let (copy, dir) = reachable_by_anyone(Path::new(bin!("pipe-writers")));
    let trace = dir.path().join("trace");
    // A user id nothing else on the machine runs as, so that the limit
    // counts this listing's processes alone.
    let script = format!("ulimit -u 3 && exec {}", copy.display());
    let out = run(
        "strace",
        &[
            "-f",
            "-qq",
            "-e",
            "trace=wait4",
            "-o",
            trace.to_str().unwrap(),
            "setpriv",
            "--reuid=54320",
            "--regid=54320",
            "--clear-groups",
            "bash",
            "-c",
            &script,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "pipe-writers: cannot start writer 2: EAGAIN: Try again\n"
    );
    // A `wait4` that returned a pid, whole or resumed after other
    // processes' lines: `wait4(PID, …) = PID`, `<... wait4 resumed>… = PID`.
    let trace = std::fs::read_to_string(&trace).unwrap();
    let returned = regex::Regex::new(r"wait4.* = [1-9][0-9]*$").unwrap();
    let reaped = trace.lines().filter(|line| returned.is_match(line)).count();
    assert_eq!(reaped, 2, "{trace}");
}

#[test]
fn pipe_writers_output_matches_the_book() {
    let atomic = run_clean(bin!("pipe-writers"), &[]);
    let larger_args = ["--size", "4097", "--writes", "200"];
    let larger = run_clean(bin!("pipe-writers"), &larger_args);
    // How many writes above PIPE_BUF are cut varies from run to run;
    // the test above holds writes of at most PIPE_BUF bytes to zero.
    let masks = [(r"(by other writers: )\d+( of 800)", "${1}<n>${2}")];
    assert_session_matches_book_masking(
        "ch20-atomicity/20-01-pipe-writers.out",
        &[
            (cargo_run("pipe-writers", &[]), &atomic.stdout[..]),
            (cargo_run("pipe-writers", &larger_args), &larger.stdout[..]),
        ],
        &masks,
    );
    // Not a whole page, under a reader of one page, which cuts the larger
    // writes.
    let atomic_args = ["--size", "4095", "--read-size", "4096"];
    let atomic = run_clean(bin!("pipe-writers"), &atomic_args);
    let larger_args = [&larger_args[..], &["--read-size", "4096"]].concat();
    let larger = run_clean(bin!("pipe-writers"), &larger_args);
    assert_session_matches_book_masking(
        "ch20-atomicity/20-01-read-size.out",
        &[
            (cargo_run("pipe-writers", &atomic_args), &atomic.stdout[..]),
            (cargo_run("pipe-writers", &larger_args), &larger.stdout[..]),
        ],
        &masks,
    );
}

/// What `pipe-frames` prints for the four messages, framed by length.
fn four_messages() -> Vec<String> {
    vec![
        r#"Got 8 bytes: "Spam 000""#.to_string(),
        r#"Got 9 bytes: "two\nlines""#.to_string(),
        r#"Got 0 bytes: """#.to_string(),
        r#"Got 100000 bytes: "xxxxxxxxxxxx"..."#.to_string(),
    ]
}

#[test]
fn pipe_frames_lines_split_a_message_that_holds_a_newline() {
    let out = run_clean(bin!("pipe-frames"), &["lines"]);
    assert!(out.status.success(), "{}", out.stderr);
    let mut expected = four_messages();
    expected.splice(
        1..2,
        [
            r#"Got 3 bytes: "two""#.to_string(),
            r#"Got 5 bytes: "lines""#.to_string(),
        ],
    );
    expected.push("Sent 4 messages, received 5".into());
    assert_eq!(out.stdout, expected);
}

#[test]
fn pipe_frames_length_prefix_keeps_every_message_whole() {
    let out = run_clean(bin!("pipe-frames"), &["length"]);
    assert!(out.status.success(), "{}", out.stderr);
    let mut expected = four_messages();
    expected.push("Sent 4 messages, received 4".into());
    assert_eq!(out.stdout, expected);
}

#[test]
fn pipe_frames_notices_a_stream_cut_inside_a_message() {
    let out = run_clean(bin!("pipe-frames"), &["cut"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, four_messages());
    assert_eq!(
        out.stderr,
        "pipe-frames: the stream ended after 3 bytes of a message of 9 \
         bytes\n"
    );
}

/// A length over the reader's limit (1 MiB) is refused before anything
/// is allocated or read: without the check, the reader allocated 4 GiB
/// (Linux 6.18 lends it, untouched) and reported a stream cut short.
#[test]
fn pipe_frames_refuses_a_length_over_its_limit() {
    let out = run_clean(bin!("pipe-frames"), &["huge"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, four_messages());
    assert_eq!(
        out.stderr,
        "pipe-frames: a message of 4294967295 bytes is over the limit\n"
    );
}

/// A line cut short counts every byte that came: the first version
/// popped the last byte before it counted, and said 2 of the 3.
#[test]
fn pipe_frames_notices_a_stream_cut_inside_a_line() {
    let out = run_clean(bin!("pipe-frames"), &["cut-line"]);
    assert_eq!(out.status.code(), Some(1));
    let mut expected = four_messages();
    expected.splice(
        1..2,
        [
            r#"Got 3 bytes: "two""#.to_string(),
            r#"Got 5 bytes: "lines""#.to_string(),
        ],
    );
    assert_eq!(out.stdout, expected);
    assert_eq!(
        out.stderr,
        "pipe-frames: the stream ended after 3 bytes of a line\n"
    );
}

/// Nobody reads the output (a closed pipe, Linux 6.18): in every mode
/// the parent ends quietly, through `main`, once it has reaped its child.
/// The first version restored SIGPIPE's default, died of it at its first
/// line, and left its child to whoever adopted it.
#[test]
fn pipe_frames_reaps_its_child_when_its_reader_is_gone() {
    for framing in ["lines", "length", "cut", "cut-line", "huge"] {
        let Some(out) = with_output_closed(bin!("pipe-frames"), &[framing])
        else {
            return;
        };
        assert!(out.status.success(), "{framing}: {}", out.stderr);
        assert_eq!(out.stderr, "", "{framing}");
        assert_eq!(out.stdout, ["parent: 0", "none"], "{framing}");
    }
}

/// The child killed by a real-time signal, SIGRTMIN+1, while strace
/// holds its first write: nix 0.32's `waitpid` reaped it and then failed
/// with EINVAL, and the listing said "EINVAL: Invalid argument". The
/// stream ends at a message's edge, after one message or none, so the
/// parent's reading succeeds, and the child's death is the failure.
#[test]
fn pipe_frames_reports_a_child_killed_by_a_real_time_signal() {
    if !have("strace") {
        return;
    }
    let (out, signal) = with_child_killed_by_a_real_time_signal(
        bin!("pipe-frames"),
        &["length"],
        "write",
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!("pipe-frames: the child failed: signal: {signal}\n")
    );
}

#[test]
fn pipe_frames_output_matches_the_book() {
    let mut session = Vec::new();
    for framing in ["lines", "length", "cut", "huge"] {
        let out = run_clean(bin!("pipe-frames"), &[framing]);
        let mut lines = out.stdout;
        lines.extend(out.stderr.lines().map(String::from));
        session.push((cargo_run("pipe-frames", &[framing]), lines));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book(
        "ch20-atomicity/20-02-pipe-frames.out",
        &session,
    );
}

#[test]
fn atomicity_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("pipe-writers"), &["--writers", "27"], "1 to 26");
    assert_rejects(bin!("pipe-writers"), &["--size", "0"], "--size");
    assert_rejects(bin!("pipe-writers"), &["--read-size", "0"], "--read-size");
    assert_rejects(
        bin!("pipe-writers"),
        &["--writes", "18446744073709551615", "--size", "2"],
        "too large",
    );
    assert_rejects(bin!("pipe-frames"), &[], "which framing?");
    assert_rejects(bin!("pipe-frames"), &["words"], "unknown framing");
}

/// Writers that fail, killed here with `SIGKILL` while they write, are
/// all reaped before the program reports the first failure: strace
/// counts four reaps for four writers. The first version returned at the
/// first failed writer, and left the other three zombies.
#[test]
fn pipe_writers_reaps_every_writer_when_writers_fail() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    // Far more writes than the test lets them make.
    let args = ["--writes", "1000000000"];
    let mut command = traced_for_reaps(bin!("pipe-writers"), &args, &trace);
    let mut writers = Listing::spawn(&mut command, Stdio::piped());
    writers.next_line(); // Written before the first fork.
    let strace = writers.pid();
    let mut started = Vec::new();
    wait_until("the four writers to start", || {
        started = children_of(strace)
            .first()
            .map(|&listing| children_of(listing))
            .unwrap_or_default();
        started.len() == 4
    });
    for &writer in &started {
        kill(writer, Signal::SIGKILL).unwrap();
    }
    let out = finish_clean(writers);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("pipe-writers: a writer failed: signal: 9 (SIGKILL)"),
        "{}",
        out.stderr
    );
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(reaps_in(&trace), 4, "{trace}");
}

/// A writer killed by a real-time signal, SIGRTMIN+1, before its first
/// write: nix 0.32's `waitpid` reaped it and then failed with EINVAL, for
/// want of a name for the signal, and the listing said "cannot wait for a
/// writer: EINVAL: Invalid argument" of a writer it had reaped.
#[test]
fn pipe_writers_reports_a_writer_killed_by_a_real_time_signal() {
    if !have("strace") {
        return;
    }
    let args = ["--writers", "1", "--writes", "1000000000"];
    let (out, signal) = with_child_killed_by_a_real_time_signal(
        bin!("pipe-writers"),
        &args,
        "write",
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!("pipe-writers: a writer failed: signal: {signal}\n")
    );
}

/// Writers that fail together share standard error: each must report with
/// one `write` of its whole line, as the chapter advises, or their lines
/// mix. strace makes every writer's second write fail with EIO, and then
/// finds each writer's report in one `write`. With `writeln!`, six
/// writes a line (the test below), the four reports came mixed, as the
/// chapter shows: "pipe-writers child: pipe-writers child: ...
/// Input/output errorInput/output error ... (os error 5 (os error 5)55".
#[test]
fn pipe_writers_report_a_failed_writer_in_one_write() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let out = run(
        "strace",
        &["-f", "-qq", "-s", "256", "-e", "trace=write", "-o"]
            .into_iter()
            .chain([trace.to_str().unwrap()])
            .chain(["-e", "inject=write:error=EIO:when=2", "--"])
            .chain([bin!("pipe-writers"), "--writers", "4", "--writes", "2"])
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let trace = std::fs::read_to_string(&trace).unwrap();
    // `PID write(2, "…"`, whole or to be resumed; the listing is the pid
    // that writes the first line of its output.
    let write = regex::Regex::new(r#"^(\d+) +write\((\d+), "(.*?)""#).unwrap();
    let writes: Vec<(String, String, String)> = trace
        .lines()
        .filter_map(|line| write.captures(line))
        .map(|w| (w[1].to_string(), w[2].to_string(), w[3].to_string()))
        .collect();
    let listing = &writes.first().expect("a first write").0;
    let reports: Vec<&str> = writes
        .iter()
        .filter(|(pid, fd, _)| pid != listing && fd == "2")
        .map(|(_, _, text)| text.as_str())
        .collect();
    let line = r"pipe-writers child: Input/output error (os error 5)\n";
    assert_eq!(reports, [line; 4], "{trace}");
    // The listing's own report of the failed writers is its own second
    // write, and fails too: nothing says "a writer failed" on the terminal.
    let own: Vec<(&str, &str)> = writes
        .iter()
        .filter(|(pid, _, _)| pid == listing)
        .map(|(_, fd, text)| (fd.as_str(), text.as_str()))
        .collect();
    assert_eq!(
        own,
        [
            (
                "1",
                r"4 writers, 2 writes of 4096 bytes each; PIPE_BUF is 4096\n"
            ),
            ("2", r"pipe-writers: a writer failed: exit status: 1\n"),
        ],
        "{trace}"
    );
    // strace pads the pid to a column: one space or more after it.
    let failed = "write(2, \"pipe-writers: a writer failed";
    assert!(
        trace.lines().any(|l| {
            l.strip_prefix(listing.as_str()).is_some_and(|rest| {
                rest.trim_start().starts_with(failed)
                    && l.ends_with(") (INJECTED)")
            })
        }),
        "{trace}"
    );
    assert_eq!(
        out.stdout,
        ["4 writers, 2 writes of 4096 bytes each; PIPE_BUF is 4096"]
    );
}

/// Why the chapter's listings format a line before they write it: standard
/// error has no buffer, so `writeln!` writes each piece of its format, and
/// each piece of every argument's own `Display`, with a `write` of its own.
/// The report of a failed writer, with an `io::Error`, is six. The test
/// runs itself again, as a child, under strace, which counts them.
#[test]
fn writeln_to_stderr_writes_each_piece_of_a_line_apart() {
    const IN_CHILD: &str = "CH20_WRITELN_TO_STDERR";
    if std::env::var_os(IN_CHILD).is_some() {
        use std::io::Write;
        let err = std::io::Error::from_raw_os_error(5);
        writeln!(std::io::stderr(), "pipe-writers child: {err}").unwrap();
        return;
    }
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let exe = std::env::current_exe().expect("this test binary");
    let name =
        "ch20_atomicity::writeln_to_stderr_writes_each_piece_of_a_line_apart";
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-qq", "-s", "256", "-e", "trace=write", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1");
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    let trace = std::fs::read_to_string(&trace).unwrap();
    let write = regex::Regex::new(r#"write\(2, "(.*?)""#).unwrap();
    let pieces: Vec<&str> = trace
        .lines()
        .filter_map(|line| Some(write.captures(line)?.get(1)?.as_str()))
        .collect();
    assert_eq!(
        pieces,
        [
            "pipe-writers child: ",
            "Input/output error",
            " (os error ",
            "5",
            ")",
            r"\n"
        ],
        "{trace}"
    );
}

/// A packet pipe, `pipe2(O_DIRECT)` (Linux 3.4): three writes come back
/// as three reads, where an ordinary pipe returns them in one; a read
/// with a buffer smaller than the packet gets its first bytes, and the
/// rest of that packet is gone. An empty write makes no packet: the read
/// after "th" gets "four", not an empty one.
#[test]
fn a_packet_pipe_keeps_the_boundaries_of_writes() {
    use nix::fcntl::OFlag;
    use nix::unistd::{pipe2, read, write};
    let words: [&[u8]; 3] = [b"one", b"two", b"three"];
    let packets = |flags| {
        let (reader, writer) = pipe2(flags).unwrap();
        for word in words {
            write(&writer, word).unwrap();
        }
        let mut buf = [0; 100];
        let n = read(&reader, &mut buf).unwrap();
        buf[..n].to_vec()
    };
    // Written on Linux 6.18; O_DIRECT pipes exist since 3.4.
    let linux = format!("Linux {}", kernel());
    assert_eq!(packets(OFlag::O_CLOEXEC), b"onetwothree", "{linux}");
    assert_eq!(
        packets(OFlag::O_CLOEXEC | OFlag::O_DIRECT),
        b"one",
        "{linux}"
    );

    let (reader, writer) = pipe2(OFlag::O_CLOEXEC | OFlag::O_DIRECT).unwrap();
    for word in words.iter().chain(&[&b""[..], &b"four"[..]]) {
        write(&writer, word).unwrap();
    }
    let mut got = Vec::new();
    for size in [100, 100, 2, 100] {
        let mut buf = vec![0; size];
        let n = read(&reader, &mut buf).unwrap();
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got, ["one", "two", "th", "four"], "{linux}");
}

/// The reader refuses a length of nearly 4 GiB before it allocates for
/// it. Output alone cannot tell: Linux lends a zeroed allocation of that
/// size untouched, so a reader that allocated first would print the same.
/// Under a 1 GiB limit on its address space (`prlimit --as`) such a reader
/// aborts on the failed allocation; the listing gives its one-line error.
#[test]
fn pipe_frames_refuses_a_huge_length_before_it_allocates() {
    if !have("prlimit") {
        return;
    }
    let limit = format!("--as={}", 1u64 << 30);
    let out = run_clean("prlimit", &[&limit, bin!("pipe-frames"), "huge"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, four_messages());
    assert_eq!(
        out.stderr,
        "pipe-frames: a message of 4294967295 bytes is over the limit\n"
    );
}
