//! The book-wide conventions of the introduction, checked for every
//! listing: what a program does when its output is closed early, when an
//! argument is not UTF-8, when asked for `--help`. Every binary of
//! listings/Cargo.toml must have a row in `abuses`, so a new listing is
//! covered as soon as it exists.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{
    ChildExt, Listing, PATIENCE, bin_path, children_of, die_with_this_thread,
    have, is_dead, listing_names, need_root, run,
    signal_as_its_handler_goes_in_with, signal_in,
};

/// Listings that no test runs: Listing 5-1 is wrong on purpose, and may
/// hang or abort; Chapter 5 says so. They are compiled like all others.
const NEVER_RUN: [&str; 1] = ["sig-wrong-handler"];

/// Listings that, without a terminal, say so and exit before they write
/// anything, so that a full disk cannot reach them here. Chapter 9's
/// `sig_jobs_in_a_terminal_keeps_the_output_conventions` gives `sig-jobs`
/// a pseudo-terminal, and runs it with /dev/full and with a closed pipe.
const NEEDS_A_TERMINAL: [&str; 1] = ["sig-jobs"];

/// The listings the table-driven tests run: all but `NEVER_RUN`.
fn runnable_listings() -> Vec<String> {
    listing_names()
        .into_iter()
        .filter(|name| !NEVER_RUN.contains(&name.as_str()))
        .collect()
}

/// How a listing must end once its stdout is closed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// Killed by SIGPIPE, the default action restored: what a filter such
    /// as `cat` does.
    Sigpipe,
    /// Exits with this status, having treated `BrokenPipe` as the end.
    Exits(i32),
}

/// One way to run a listing until it writes to its closed stdout.
struct Abuse {
    bin: &'static str,
    args: Vec<String>,
    end: End,
    /// What must be running first, such as a server for a client; kept
    /// alive until the check is over.
    _peer: Option<Listing>,
    /// A temporary directory for the peer's files, removed after it.
    _dir: Option<tempfile::TempDir>,
    /// Whether `_dir` must be empty once the listing has ended, but for
    /// `leaves`: the listing made files there and promises to remove them.
    scratch: bool,
    /// The names `_dir` may still hold when `scratch` is set: files the
    /// listing keeps by design, such as the lock beside a socket file.
    leaves: &'static [&'static str],
}

fn abuse(bin: &'static str, args: &[&str], end: End) -> Abuse {
    let args = args.iter().map(|a| a.to_string()).collect();
    Abuse {
        bin,
        args,
        end,
        _peer: None,
        _dir: None,
        scratch: false,
        leaves: &[],
    }
}

/// A `socket-modes` server on a free port, and its address.
fn server() -> (Listing, String) {
    let mut server = Listing::start(
        bin!("socket-modes"),
        &["server", "127.0.0.1:0", "--count", "6"],
    );
    let addr = server.expect(r"Server listening on (\S+)").remove(1);
    (server, addr)
}

/// A client of `server_bin`, which is started first on a free port; the
/// client's arguments are `before`, the server's address, then `after`.
fn served(
    server_bin: &'static str,
    client_bin: &'static str,
    before: &[&str],
    after: &[&str],
    end: End,
) -> Abuse {
    let mut server = Listing::start(
        &bin_path(server_bin).to_string_lossy(),
        &["server", "127.0.0.1:0"],
    );
    let addr = server.expect(r"Server listening on (\S+)").remove(1);
    let mut args = before.to_vec();
    args.push(&addr);
    args.extend(after);
    let mut abuse = abuse(client_bin, &args, end);
    abuse._peer = Some(server);
    abuse
}

/// `unix-server` on a path in a temporary directory, which goes with the
/// check, whatever becomes of the server. Once it has ended, the socket
/// file must be gone: only its lock stays, as Chapter 16 says.
fn unix_server() -> Abuse {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("server.sock");
    let mut abuse =
        abuse("unix-server", &[path.to_str().unwrap()], End::Exits(0));
    abuse._dir = Some(dir);
    abuse.scratch = true;
    abuse.leaves = &["server.sock.lock"];
    abuse
}

/// `async-server` on a Unix socket in a temporary directory: the socket
/// file must go even when the log does.
fn async_server_unix() -> Abuse {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("async.sock");
    let path = path.to_str().unwrap();
    let mut abuse = abuse("async-server", &["--unix", path], End::Exits(0));
    abuse._dir = Some(dir);
    abuse
}

/// `unix-pass-fd fetch` from a server on a path in a temporary directory,
/// which must outlive the check, as the server does.
fn unix_pass_fd() -> Abuse {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("pass.sock");
    let file = dir.path().join("file");
    std::fs::write(&file, "contents\n").expect("a file to pass");
    let (path, file) = (path.to_str().unwrap(), file.to_str().unwrap());
    let mut server = Listing::start(
        &bin_path("unix-pass-fd").to_string_lossy(),
        &["serve", path, file],
    );
    server.expect(r"Server listening on .*");
    let mut abuse = abuse("unix-pass-fd", &["fetch", path], End::Sigpipe);
    abuse._peer = Some(server);
    abuse._dir = Some(dir);
    abuse
}

/// `udp-request` to a `udp-echo` on a free port, which answers at once.
fn udp_request() -> Abuse {
    let mut server = Listing::start(
        &bin_path("udp-echo").to_string_lossy(),
        &["127.0.0.1:0"],
    );
    let addr = server.expect(r"Server listening on (\S+)").remove(1);
    let mut abuse = abuse("udp-request", &[&addr, "x"], End::Sigpipe);
    abuse._peer = Some(server);
    abuse
}

/// For each listing, a run whose first write to stdout comes at once.
fn abuses() -> Vec<Abuse> {
    let mut all = part_one_abuses();
    all.extend(later_abuses());
    all
}

/// The rows of Part I's listings, chapters 2 to 4.
fn part_one_abuses() -> Vec<Abuse> {
    let with_server = |mode: &'static str| {
        let (server, addr) = server();
        let mut abuse = abuse("socket-modes", &[mode, &addr], End::Sigpipe);
        abuse._peer = Some(server);
        abuse
    };
    vec![
        abuse("alarm-pause", &["--count", "1"], End::Sigpipe),
        abuse("alarm", &["--count", "1"], End::Sigpipe),
        // It may be catching SIGPIPE itself, so it cannot rely on it.
        abuse("catch-signal", &["USR1"], End::Exits(0)),
        abuse("catch-signal", &["PIPE"], End::Exits(0)),
        abuse("socket-race", &[], End::Sigpipe),
        abuse("socket-preview", &["127.0.0.1:0"], End::Sigpipe),
        // A server treats a closed log as the end, and leaves by `main`.
        abuse("socket-modes", &["server", "127.0.0.1:0"], End::Exits(0)),
        with_server("client"),
        with_server("threads"),
        // The parent dies of SIGPIPE; its child must not outlive it.
        abuse("pipe-spam", &[], End::Sigpipe),
        // The child dies of SIGPIPE on its first report, and the parent
        // reports that as the error it is.
        abuse("pipe-glued", &[], End::Exits(1)),
        abuse("pipe-lines", &[], End::Sigpipe),
        abuse("fork-exit", &["--std-exit"], End::Sigpipe),
    ]
}

/// The rows of Parts II to VI.
fn later_abuses() -> Vec<Abuse> {
    vec![
        // Part II, Signals.
        abuse("sig-flag", &[], End::Sigpipe),
        abuse("sig-write", &[], End::Sigpipe),
        abuse("sig-selfpipe", &[], End::Sigpipe),
        abuse("sig-errno", &[], End::Sigpipe),
        abuse("sig-action", &[], End::Sigpipe),
        abuse("sig-hook-flag", &[], End::Sigpipe),
        abuse("sig-hook-thread", &[], End::Sigpipe),
        abuse("sig-hook-default", &[], End::Sigpipe),
        abuse("sig-coalesce", &[], End::Sigpipe),
        abuse("sig-wait", &["pause"], End::Sigpipe),
        abuse("sig-signalfd", &[], End::Sigpipe),
        abuse("sig-threads", &["handler"], End::Sigpipe),
        abuse("sig-eintr", &[], End::Sigpipe),
        abuse("sig-restart-table", &[], End::Sigpipe),
        // Programs with children keep SIGPIPE ignored and leave through
        // `main`, after reaping what they started.
        abuse("sig-zombie", &[], End::Exits(0)),
        abuse("sig-reaper", &[], End::Exits(0)),
        abuse("sig-orphan", &[], End::Exits(0)),
        abuse("sig-group", &[], End::Exits(0)),
        abuse("sig-chld-flags", &[], End::Sigpipe),
        // It needs a terminal: without one it says so, and exits 1.
        abuse("sig-jobs", &[], End::Exits(1)),
        // Like the four above.
        abuse("sig-pidfd", &[], End::Exits(0)),
        // A server: a log closed before its ready line ends it, through
        // `main`, which also removes its private configuration directory
        // (one closed later, it serves on, and counts the lines lost).
        abuse("sig-daemon", &["127.0.0.1:0"], End::Exits(0)),
        abuse("sig-notify", &["127.0.0.1:0"], End::Exits(0)),
        abuse("sig-alarm-limits", &[], End::Sigpipe),
        abuse("sig-timers", &[], End::Sigpipe),
        abuse("sig-count", &[], End::Sigpipe),
        abuse("sig-queue", &[], End::Sigpipe),
        // It leaves through `main` so that Drop removes its file.
        in_scratch_dir("sig-cleanup", &["--end", "return"], End::Exits(0)),
        abuse("sig-status", &[], End::Sigpipe),
        abuse("sig-inherit", &[], End::Sigpipe),
        abuse("sig-init", &[], End::Sigpipe),
        abuse("sig-test-threads", &["--isolate"], End::Sigpipe),
        // It leaves through `main` so that Drop removes its directory.
        abuse("sig-crash", &[], End::Exits(0)),
        // Part III, Sockets. Demonstrations are filters; servers treat a
        // closed log as the end; clients are filters.
        abuse("tcp-split", &[], End::Sigpipe),
        abuse("tcp-lines", &["server", "127.0.0.1:0"], End::Exits(0)),
        served("tcp-lines", "tcp-lines", &["client"], &["x"], End::Sigpipe),
        abuse("tcp-length", &["server", "127.0.0.1:0"], End::Exits(0)),
        served(
            "tcp-length",
            "tcp-length",
            &["client"],
            &["x"],
            End::Sigpipe,
        ),
        abuse("tcp-reset", &[], End::Sigpipe),
        abuse("tcp-naive", &["127.0.0.1:0"], End::Exits(0)),
        abuse("tcp-threads", &["127.0.0.1:0"], End::Exits(0)),
        abuse("tcp-pool", &["127.0.0.1:0"], End::Exits(0)),
        abuse("poll-spin", &[], End::Sigpipe),
        abuse("poll-server", &["127.0.0.1:0"], End::Exits(0)),
        abuse("net-load", &[], End::Sigpipe),
        abuse("epoll-modes", &[], End::Sigpipe),
        abuse("poll-connect", &[], End::Sigpipe),
        // It must remove its socket file even when its log goes away.
        unix_server(),
        // It has a child to reap: it leaves through `main`, after the
        // child, which sees the end of the stream, has exited.
        abuse("unix-pair", &[], End::Exits(0)),
        unix_pass_fd(),
        abuse("udp-datagrams", &[], End::Sigpipe),
        abuse("udp-echo", &["127.0.0.1:0"], End::Exits(0)),
        udp_request(),
        abuse("net-resolve", &["127.0.0.1:9"], End::Sigpipe),
        abuse("net-dual-stack", &[], End::Sigpipe),
        abuse("net-reuse", &[], End::Sigpipe),
        abuse("net-nagle", &["--rounds", "1"], End::Sigpipe),
        abuse("net-keepalive", &[], End::Sigpipe),
        abuse("net-handover", &[], End::Sigpipe),
        // Part IV. Filters die of SIGPIPE; a program that writes to
        // children, or removes files on the way out, leaves through `main`.
        // Each has a child to reap: it leaves through `main`, once reaped.
        abuse("pipe-no-eof", &["--close"], End::Exits(0)),
        abuse("pipe-epipe", &[], End::Exits(0)),
        abuse("pipe-leak", &["--cloexec"], End::Exits(0)),
        abuse("pipe-writers", &["--writes", "1"], End::Sigpipe),
        abuse("pipe-frames", &["lines"], End::Exits(0)),
        abuse("pipe-capacity", &[], End::Sigpipe),
        // It has a child to reap: it leaves through `main`, once reaped.
        abuse("pipe-deadlock", &[], End::Exits(0)),
        abuse("fifo-spam", &["reader"], End::Exits(0)),
        with_fifo_reader(),
        abuse("fifo-open", &[], End::Exits(0)),
        // `echo` dies of SIGPIPE, and the pipeline fails as pipefail says.
        abuse("spawn-pipeline", &["echo", "Spam"], End::Exits(141)),
        abuse(
            "spawn-deadlock",
            &["thread", "--bytes", "10"],
            End::Exits(0),
        ),
        abuse("spawn-grandchild", &["--cloexec"], End::Sigpipe),
        abuse("proc-exec", &["command"], End::Exits(0)),
        abuse("proc-pre-exec", &["chdir", "/"], End::Sigpipe),
        abuse("proc-orphans", &["none", "--for", "60"], End::Exits(0)),
        abuse("orphan-hangup", &[], End::Exits(0)),
        // The benchmarks keep SIGPIPE ignored while they measure, so that a
        // dead peer is an error they report, and restore the default
        // before they print their one line.
        abuse("bench-pingpong", &["--count", "10"], End::Sigpipe),
        abuse("bench-naive", &[], End::Sigpipe),
        abuse("bench-throughput", &["--bytes", "64K"], End::Sigpipe),
        abuse("bench-vmsplice-reuse", &[], End::Sigpipe),
        abuse("bench-memcpy", &["--bytes", "64K"], End::Sigpipe),
        // Part VI, async. The signal demonstrations are filters; a log
        // closed before the ready line ends the daemon and the server.
        abuse("async-ctrl-c", &[], End::Exits(0)),
        abuse("async-signals", &[], End::Exits(0)),
        abuse("async-daemon", &["127.0.0.1:0"], End::Exits(0)),
        abuse("async-shutdown-tools", &[], End::Exits(0)),
        abuse("async-server", &["127.0.0.1:0"], End::Exits(0)),
        async_server_unix(),
        // Programs with children keep SIGPIPE ignored and
        // leave through `main`, after reaping what they started.
        abuse("async-child-feed", &["join"], End::Exits(0)),
        abuse("async-child-kill", &["timeout"], End::Exits(0)),
        abuse("async-block", &["--fix", "async"], End::Exits(0)),
        // No child here: it keeps SIGPIPE ignored all the same, says
        // nothing more once its reader is gone, and exits 0 at its end.
        abuse("async-budget", &["repeat"], End::Exits(0)),
    ]
}

/// A `fifo-spam` writer, with a reader waiting on a FIFO in a temporary
/// directory that the reader removes.
fn with_fifo_reader() -> Abuse {
    // The reader makes its private directory in TMPDIR: ours, so that
    // nothing is left behind when the reader is killed.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(bin_path("fifo-spam"));
    command.arg("reader").env("TMPDIR", dir.path());
    let mut reader = Listing::spawn(&mut command, Stdio::piped());
    let fifo = reader.expect(r"Waiting for a writer on (\S+) \(pid \d+\)");
    let mut abuse = abuse("fifo-spam", &["writer", &fifo[1]], End::Sigpipe);
    abuse._peer = Some(reader);
    abuse._dir = Some(dir);
    abuse
}

/// A row for a listing that makes files: `--dir` names a fresh directory,
/// which must be empty again when the listing has ended.
fn in_scratch_dir(bin: &'static str, args: &[&str], end: End) -> Abuse {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().to_str().expect("a UTF-8 path").to_string();
    let mut args: Vec<&str> = args.to_vec();
    args.extend(["--dir", &path]);
    let mut abuse = abuse(bin, &args, end);
    abuse._dir = Some(dir);
    abuse.scratch = true;
    abuse
}

#[test]
fn every_listing_has_a_row_in_the_abuse_table() {
    let covered: Vec<_> = abuses().iter().map(|a| a.bin).collect();
    for name in runnable_listings() {
        assert!(
            covered.contains(&name.as_str()),
            "{name} has no row in `abuses` in listings/tests/conventions.rs"
        );
    }
}

#[test]
fn every_listing_ends_quietly_when_its_stdout_is_closed() {
    for abuse in abuses() {
        let command = Command::new(bin_path(abuse.bin));
        ends_quietly(abuse, command);
    }
}

/// A parent that blocked SIGPIPE passes its mask on through `exec`, and a
/// blocked SIGPIPE only goes pending: the write fails with EPIPE, and
/// `println!` panics. The listings unblock it with its default action,
/// and end exactly as they do above. `env --block-signal` plays that
/// parent.
#[test]
fn every_listing_ends_quietly_when_its_parent_left_sigpipe_blocked() {
    for abuse in abuses() {
        let mut command = Command::new("env");
        command.arg("--block-signal=PIPE").arg(bin_path(abuse.bin));
        ends_quietly(abuse, command);
    }
}

/// Rows whose stdout is first written by a program that is not ours,
/// which the listing starts on it: that program reports the full disk in
/// its own words (coreutils' `write error: No space left on device`), and
/// the listing then says in one line of its own how the program ended.
const FOREIGN_WRITERS: &[(&str, &str)] = &[
    // `echo` is the pipeline's one stage; the pipeline reports its exit 1.
    ("spawn-pipeline", "echo"),
    // `pwd`, started in the directory the hook chose, prints first.
    ("proc-pre-exec", "pwd"),
];

/// Rows whose stdout is first written by a forked child of the listing:
/// the child says the error, then the parent says how the child ended,
/// so a full disk takes two lines. Every other listing says it in one.
const TWO_PROCESSES_REPORT: &[&str] = &["pipe-glued"];

/// An output that fails otherwise than by going away: `/dev/full`, whose
/// every write fails with ENOSPC, as on a full disk. `println!` panics on
/// it; the listings write with `writeln!` and say so in one line (two
/// for `TWO_PROCESSES_REPORT`; after the program's own line for
/// `FOREIGN_WRITERS`), exit 1, and leave nothing behind.
#[test]
fn every_listing_reports_a_full_disk_in_one_line() {
    for abuse in abuses() {
        if NEEDS_A_TERMINAL.contains(&abuse.bin) {
            continue;
        }
        let what = format!("{} {:?}", abuse.bin, abuse.args);
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let mut command = Command::new(bin_path(abuse.bin));
        command.args(&abuse.args);
        let listing = Listing::spawn(&mut command, Stdio::from(full));
        // Forked children too: none is left once the listing has ended.
        let out = listing.finish_clean();
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        let mut lines: Vec<_> = out.stderr.lines().collect();
        let foreign = FOREIGN_WRITERS.iter().find(|(bin, _)| *bin == abuse.bin);
        if let Some((_, program)) = foreign {
            // The program's own words first, then the listing's one line.
            assert!(
                lines.len() == 2
                    && lines[0].starts_with(&format!("{program}: "))
                    && lines[0].ends_with("No space left on device")
                    && lines[1].starts_with(&format!("{}: ", abuse.bin)),
                "{what}: {}",
                out.stderr
            );
            lines.remove(0);
        }
        let expected = if TWO_PROCESSES_REPORT.contains(&abuse.bin) {
            2
        } else {
            1
        };
        assert!(
            lines.len() == expected
                && lines.iter().all(|line| line.starts_with(abuse.bin)),
            "{what}: {}",
            out.stderr
        );
        assert!(
            foreign.is_some()
                || lines[0].ends_with("No space left on device (os error 28)"),
            "{what}: {}",
            out.stderr
        );
    }
}

/// Listings whose forked children leave children of their own for
/// another process to reap, as their chapter says, each with why. Their
/// first process must still reap every child it makes.
const ORPHANS_GRANDCHILDREN: &[(&str, &str)] = &[(
    "orphan-hangup",
    "Chapter 25: it kills the parent of a process group on purpose, so \
     that process 1 or a subreaper adopts the members, and reaps them",
)];

/// Every child a listing makes is reaped by a process of the listing, on
/// the path where its stdout is a full disk too: each row of `abuses`
/// (but `NEEDS_A_TERMINAL`) runs with stdout on /dev/full under `strace
/// -ff -o DIR/t` (one file per process and thread: no `[pid N]` prefix,
/// no call cut in two), tracing the calls that make a process and those
/// that reap one. Each process made (threads, `CLONE_THREAD`, apart) must
/// be reaped by a `wait4` or `waitid` of the trace. What a program the
/// listing execs makes (`sh`'s background `sleep`) is that program's to
/// reap: see `support::unreaped_children`. Every row runs before the
/// check reports, so that one run names every listing that fails.
#[test]
fn every_listing_reaps_its_children_even_when_its_stdout_is_a_full_disk() {
    if !crate::support::have("strace") {
        return;
    }
    let mut failures = Vec::new();
    for abuse in abuses() {
        if NEEDS_A_TERMINAL.contains(&abuse.bin) {
            continue;
        }
        let orphans =
            ORPHANS_GRANDCHILDREN.iter().any(|(b, _)| *b == abuse.bin);
        let args: Vec<&str> = abuse.args.iter().map(String::as_str).collect();
        let bin = bin_path(abuse.bin);
        let (out, unreaped) = crate::support::unreaped_with_stdout_full(
            bin.to_str().expect("a UTF-8 path"),
            &args,
        );
        let unreaped: Vec<String> = unreaped
            .into_iter()
            .filter(|(by_first, _)| *by_first || !orphans)
            .map(|(_, line)| line)
            .collect();
        if !unreaped.is_empty() {
            failures.push(format!(
                "{} {:?} ({:?}, {:?}) left unreaped:\n  {}",
                abuse.bin,
                abuse.args,
                out.status,
                out.stderr.trim_end(),
                unreaped.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs `command`, the listing of `abuse` or a program that execs it,
/// with the arguments of `abuse` and a stdout that nobody reads, and
/// checks that it ends as `abuse.end` says, without a word, and leaves
/// no process and no file behind.
fn ends_quietly(abuse: Abuse, mut command: Command) {
    // A pipe whose read end is already closed: the first write fails.
    command.args(&abuse.args);
    let stdout = crate::support::stdout_to_a_widowed_pipe(&mut command);
    let listing = Listing::spawn(&mut command, stdout);
    // Forked children too: none is left once the listing has ended.
    let out = listing.finish_clean();
    let what = format!("{} {:?}", abuse.bin, abuse.args);
    assert!(
        !out.stderr.contains("panicked"),
        "{what} panicked: {}",
        out.stderr
    );
    let ended = match (out.status.signal(), out.status.code()) {
        (Some(signal), _) if signal == Signal::SIGPIPE as i32 => End::Sigpipe,
        (_, Some(code)) => End::Exits(code),
        _ => panic!("{what}: {:?}", out.status),
    };
    assert_eq!(ended, abuse.end, "{what}: {}", out.stderr);
    if ended == End::Sigpipe || ended == End::Exits(0) {
        assert_eq!(out.stderr, "", "{what} says nothing");
    }
    // And no files it made.
    if let (Some(dir), true) = (&abuse._dir, abuse.scratch) {
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("the scratch directory")
            .map(|entry| entry.expect("an entry").file_name())
            .filter(|name| !abuse.leaves.iter().any(|kept| name == *kept))
            .collect();
        assert!(left.is_empty(), "{what} left {left:?} behind");
    }
}

#[test]
fn every_listing_rejects_an_argument_that_is_not_utf8() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    // A listing whose first argument is a path takes any bytes there (a
    // Linux file name is bytes): it gets the byte as an option's value.
    const PATH_FIRST: &[(&str, &str)] = &[("unix-server", "--count")];
    for name in runnable_listings() {
        let mut command = Command::new(bin_path(&name));
        if let Some((_, option)) = PATH_FIRST.iter().find(|(n, _)| *n == name) {
            command.arg(option);
        }
        command.arg(OsStr::from_bytes(b"\xff"));
        let out = Listing::spawn(&mut command, Stdio::piped()).finish();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", out.stderr);
        let lines: Vec<_> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: one line: {:?}", out.stderr);
        assert!(lines[0].starts_with(&format!("{name}: ")), "{}", lines[0]);
        assert!(lines[0].contains(r#""\xFF""#), "{}", lines[0]);
    }
}

/// A bad argument with stderr on a full disk: the error cannot be shown,
/// but the listing still exits 1, not 101 as a panic in `eprintln!`
/// would.
#[test]
fn every_listing_exits_1_on_bad_arguments_even_when_stderr_is_a_full_disk() {
    for name in runnable_listings() {
        let bin = bin_path(&name);
        let bin = bin.to_str().expect("a UTF-8 path");
        let status =
            crate::support::status_with_stderr_full(bin, &["--no-such-option"]);
        assert_eq!(status, Some(1), "{name}");
    }
}

#[test]
fn every_listing_reports_bad_arguments_even_with_stderr_closed() {
    for name in runnable_listings() {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let mut child = Command::new(bin_path(&name))
            .arg("--no-such-option")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer)
            .process_group(0)
            .spawn()
            .expect("start the listing");
        use crate::support::ChildExt;
        let status = child
            .wait_timeout(crate::support::PATIENCE)
            .expect("wait")
            .unwrap_or_else(|| panic!("{name} hangs"));
        // Exit 1 as usual, or killed by SIGPIPE like a filter: not a
        // panic (101), which would also have nowhere to go.
        let sigpipe = status.signal() == Some(Signal::SIGPIPE as i32);
        assert!(status.code() == Some(1) || sigpipe, "{name}: {status:?}");
    }
}

#[test]
fn every_listing_answers_help_with_its_usage() {
    for name in runnable_listings() {
        let out = run(bin_path(&name).to_str().unwrap(), &["--help"]);
        assert!(out.status.success(), "{name}: {}", out.stderr);
        assert_eq!(out.stdout.len(), 1, "{name}: {:?}", out.stdout);
        assert!(
            out.stdout[0].starts_with(&format!("usage: {name}")),
            "{name}: {:?}",
            out.stdout[0]
        );
    }
}

/// `--help` on a full disk: the usage is lost, and the listing still
/// exits 0, as asked, without a panic (`let _ = writeln!`, not
/// `println!`, which panics there).
#[test]
fn every_listing_answers_help_on_a_full_disk_without_a_panic() {
    for name in runnable_listings() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let mut command = Command::new(bin_path(&name));
        command.arg("--help");
        let out = Listing::spawn(&mut command, Stdio::from(full)).finish();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", out.stderr);
        assert_eq!(out.stderr, "", "{name} says nothing");
    }
}

/// Whether `SIGPIPE` (13) is ignored by `pid`, from its `SigIgn` mask.
fn ignores_sigpipe(status: &str) -> bool {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("a SigIgn line");
    mask & (1 << (Signal::SIGPIPE as i32 - 1)) != 0
}

/// std's `Command` gives SIGPIPE its default action back in the child
/// (`do_exec` in std's sys/process/unix/unix.rs, and `POSIX_SPAWN_SETSIGDEF`
/// on its posix_spawn path). The child is started by std alone: `run` and
/// `Listing` set every signal to its default in the child themselves, and
/// would hide a `Command` that did not. A plain `Command` goes through
/// posix_spawn; one with a `pre_exec` hook, here the harness's own that
/// only asks for SIGKILL when the test dies, through fork and exec.
#[test]
fn rust_ignores_sigpipe_but_command_children_get_the_default_back() {
    // This test binary is a Rust program: the runtime ignored SIGPIPE.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(ignores_sigpipe(&own));
    // A program it starts with Command has the default again.
    let plain = Command::new("cat");
    assert!(!ignores_sigpipe(&status_of_cat(plain)), "posix_spawn");
    let mut hooked = Command::new("cat");
    die_with_this_thread(&mut hooked);
    assert!(!ignores_sigpipe(&status_of_cat(hooked)), "fork and exec");
}

/// What `cat /proc/self/status` prints when `command` starts it, with
/// nothing added that touches its signals.
fn status_of_cat(mut command: Command) -> String {
    let mut child = command
        .arg("/proc/self/status")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cat");
    // The file is a few KiB: all of it fits in the pipe, and cat exits.
    let Some(status) = child.wait_timeout(PATIENCE).expect("wait") else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("cat /proc/self/status still running after {PATIENCE:?}");
    };
    assert!(status.success(), "cat: {status:?}");
    let mut text = String::new();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    stdout.read_to_string(&mut text).expect("cat's output");
    text
}

/// `fork` and `exec` pass on what the parent set SIGPIPE to, whatever it
/// is; `Command`, which resets it, is the test above.
#[test]
fn fork_and_exec_keep_an_ignored_sigpipe_and_fork_keeps_the_default() {
    // A shell ignores SIGPIPE, then forks and execs `cat`: the child
    // starts with SIGPIPE ignored, a reset did not happen.
    let out = run("sh", &["-c", "trap '' PIPE; cat /proc/self/status"]);
    assert!(ignores_sigpipe(&out.stdout.join("\n")));
    // pipe-lines restores the default before it forks, and its child,
    // which never ran Rust's start-up code, has the default too.
    let mut lines = Listing::start(bin!("pipe-lines"), &[]);
    lines.next_line();
    let parent = lines.pid();
    let child = crate::support::children_of(parent)[0];
    let status = |pid| std::fs::read_to_string(format!("/proc/{pid}/status"));
    assert!(!ignores_sigpipe(&status(parent).unwrap()));
    assert!(!ignores_sigpipe(&status(child).unwrap()));
}

/// A system that refuses a thread (`ulimit -u`, which counts every
/// thread and process of a user) makes `thread::spawn` panic. Every row
/// runs as a user of its own allowed its main thread only, twice: with a
/// stdout that nobody reads, after which it must end as `ends_quietly`
/// expects of it; and with /dev/null, which lets it go on to the threads
/// it starts later, after which it must exit 0, or still be running a
/// second later (it is then killed). Either way, the other end allowed is
/// status 1 with one line that names the listing: the error of every
/// listing, never a panic. All rows run before the check reports, so that
/// one run lists every listing that fails. Root only (it changes user);
/// skipped otherwise.
#[test]
fn every_listing_says_why_when_a_thread_is_refused() {
    if !need_root("run a listing as another user") {
        return;
    }
    let mut failures = Vec::new();
    for abuse in abuses() {
        for closed in [true, false] {
            let Some(failure) = refused_a_thread(&abuse, closed) else {
                continue;
            };
            failures.push(failure);
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "under ulimit -u 1:\n{}",
        failures.join("\n")
    );
}

/// Runs the listing of `abuse` allowed one thread, with its stdout a pipe
/// whose reader is gone (`closed`) or /dev/null; what went wrong, if
/// anything.
fn refused_a_thread(abuse: &Abuse, closed: bool) -> Option<String> {
    let mut plain = Command::new(bin_path(abuse.bin));
    plain.args(&abuse.args);
    let (mut command, _copy) = crate::support::with_thread_limit(&plain, 1)?;
    let stdout = if closed {
        crate::support::stdout_to_a_widowed_pipe(&mut command)
    } else {
        Stdio::null()
    };
    let listing = Listing::spawn(&mut command, stdout);
    let pgid = listing.pid();
    let mut killed = false;
    if !closed {
        // A bound, not a way to synchronise: a listing slow to fail on a
        // loaded machine can only make this pass wrongly, never fail.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !is_dead(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !is_dead(pgid) {
            let _ = nix::sys::signal::killpg(pgid, Signal::SIGKILL);
            killed = true;
        }
    }
    let out = listing.finish_clean();
    let what = format!(
        "{} {:?} with stdout {}",
        abuse.bin,
        abuse.args,
        if closed { "closed" } else { "/dev/null" }
    );
    let lines: Vec<_> = out.stderr.lines().collect();
    let ended = match (out.status.signal(), out.status.code()) {
        (Some(signal), _) if signal == Signal::SIGPIPE as i32 => {
            Some(End::Sigpipe)
        }
        (_, Some(code)) => Some(End::Exits(code)),
        _ => None,
    };
    let normal = if closed {
        ended == Some(abuse.end)
    } else {
        killed || ended == Some(End::Exits(0))
    };
    let one_line = out.status.code() == Some(1)
        && lines.len() == 1
        && lines[0].starts_with(&format!("{}: ", abuse.bin));
    let quiet = !out.stderr.contains("panicked");
    (!(quiet && (normal || one_line)))
        .then(|| format!("{what}: {:?} {:?}", out.status, out.stderr))
}

/// Part I's listings and the arguments of a run that writes to stdout at
/// once. Their lines of error are one `write` each too: Chapter 4's
/// parents and children share one stderr, and any program's stderr may
/// be a pipe that other processes write to.
const PART_ONE_LISTINGS: [(&str, &[&str]); 10] = [
    ("alarm-pause", &["--count", "1"]),
    ("alarm", &["--count", "1"]),
    ("catch-signal", &["USR1"]),
    ("socket-race", &[]),
    ("socket-preview", &["127.0.0.1:0"]),
    ("socket-modes", &["server", "127.0.0.1:0"]),
    ("pipe-spam", &[]),
    ("pipe-glued", &[]),
    ("pipe-lines", &[]),
    ("fork-exit", &[]),
];

/// The strings of the `write(2, …)` calls of `bin args` under `strace -f`,
/// with stdout as given: each process's lines of error.
fn writes_to_stderr(bin: &str, args: &[&str], stdout: Stdio) -> Vec<String> {
    writes_to_stderr_with(bin, args, stdout, &[])
}

/// Each line of error of a Part I listing is one `write`, formatted whole
/// first (the bad option of every listing is
/// `every_listing_writes_its_line_of_error_with_one_write`'s): a full disk
/// under stdout gives the parent's line, and in Listing 4-2 the child's
/// before it.
#[test]
fn every_part_one_listing_writes_a_line_of_error_with_one_write() {
    if !crate::support::can_trace() {
        return;
    }
    let mut failures = Vec::new();
    for (name, args) in PART_ONE_LISTINGS {
        let disk = std::fs::OpenOptions::new().write(true).open("/dev/full");
        let full =
            writes_to_stderr(name, args, Stdio::from(disk.expect("/dev/full")));
        if full.is_empty() || !full.iter().all(|w| is_one_whole_line(name, w)) {
            failures.push(format!("{name} {args:?} > /dev/full: {full:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// "It explains a mistake in one line", and that line is one `write`:
/// formatted whole first, then written with one `write_all`. `eprintln!`
/// and `writeln!` on the unbuffered stderr write each piece of their
/// format on its own, so another writer of the same pipe (a parent, a
/// child, a second server logging to the same file) can land between
/// them; one `write` of at most `PIPE_BUF` bytes into a pipe is never
/// split (Chapter 20). Every listing, told an option it does not know.
#[test]
fn every_listing_writes_its_line_of_error_with_one_write() {
    if !crate::support::can_trace() {
        return;
    }
    // One after another: all of them take about 3 s under strace here.
    let mut failures = Vec::new();
    for name in runnable_listings() {
        let option = ["--no-such-option"];
        let writes = writes_to_stderr(&name, &option, Stdio::null());
        let whole = |write: &String| {
            write.starts_with(&format!("\"{name}: "))
                && is_one_whole_line(&name, write)
        };
        if writes.len() != 1 || !whole(&writes[0]) {
            failures.push(format!("{name}: {writes:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The listings that rely on a signal to end a wait, or to learn that a
/// child ended, each run with arguments that end it, and the signals it
/// relies on: SIGALRM and the timers' SIGRTMIN, which end a wait the
/// listing bounded itself; SIGCHLD, whose disposition decides whether a
/// child stays a zombie for `waitpid` (ignored, the kernel reaps it at
/// once, and every wait fails with ECHILD); SIGTSTP and SIGCONT, for the
/// listings that stop and continue their children.
const WAITS_ON_SIGNALS: &[(&str, &[&str], &[&str])] = &[
    ("alarm-pause", &["--count", "1"], &["ALRM"]),
    ("alarm", &["--count", "1"], &["ALRM"]),
    ("sig-wait", &["pause", "--count", "1"], &["ALRM"]),
    ("sig-wait", &["suspend", "--count", "1"], &["ALRM"]),
    ("sig-wait", &["sigwait", "--count", "1"], &["ALRM"]),
    ("sig-wait", &["timedwait", "--count", "1"], &["ALRM"]),
    ("sig-alarm-limits", &[], &["ALRM"]),
    ("sig-timers", &[], &["RTMIN"]),
    ("sig-count", &[], &["RTMIN", "CHLD"]),
    ("poll-connect", &[], &["ALRM"]),
    ("pipe-capacity", &[], &["ALRM", "CHLD"]),
    ("pipe-deadlock", &[], &["ALRM", "CHLD"]),
    ("pipe-deadlock", &["--read-first"], &["ALRM", "CHLD"]),
    ("proc-exec", &["command"], &["ALRM", "CHLD"]),
    ("proc-exec", &["fork"], &["ALRM", "CHLD"]),
    ("proc-pre-exec", &["alarm"], &["ALRM", "CHLD"]),
    ("proc-pre-exec", &["chdir", "/"], &["CHLD"]),
    ("pipe-spam", &["--count", "2"], &["CHLD"]),
    ("pipe-glued", &[], &["CHLD"]),
    ("pipe-lines", &["--count", "2"], &["CHLD"]),
    ("fork-exit", &[], &["CHLD"]),
    ("fork-exit", &["--std-exit"], &["CHLD"]),
    ("sig-reaper", &["--children", "2"], &["CHLD"]),
    ("sig-group", &[], &["CHLD", "TSTP", "CONT"]),
    ("sig-chld-flags", &[], &["CHLD", "TSTP", "CONT"]),
    ("sig-pidfd", &[], &["CHLD"]),
    ("sig-status", &[], &["CHLD"]),
    ("sig-test-threads", &["--isolate"], &["CHLD"]),
    ("sig-crash", &[], &["CHLD"]),
    ("sig-restart-table", &[], &["CHLD"]),
    ("unix-pair", &[], &["CHLD"]),
    ("net-handover", &[], &["CHLD"]),
    ("pipe-no-eof", &["--close"], &["CHLD"]),
    ("pipe-leak", &["--cloexec"], &["CHLD"]),
    ("pipe-epipe", &[], &["CHLD"]),
    ("pipe-writers", &["--writes", "1"], &["CHLD"]),
    ("pipe-frames", &["length"], &["CHLD"]),
    (
        "spawn-pipeline",
        &["echo", "Spam"],
        &["CHLD", "TSTP", "CONT"],
    ),
    ("spawn-deadlock", &["thread", "--bytes", "10"], &["CHLD"]),
    ("spawn-grandchild", &["--cloexec"], &["CHLD"]),
    ("spawn-grandchild", &["--group"], &["CHLD"]),
    (
        "proc-orphans",
        &["none", "--for", "1"],
        &["CHLD", "TSTP", "CONT"],
    ),
    ("orphan-hangup", &[], &["CHLD", "TSTP", "CONT"]),
    ("bench-pingpong", &["--count", "10"], &["CHLD"]),
    (
        "bench-pingpong",
        &["--via", "signal", "--count", "10"],
        &["USR1", "USR2", "CHLD"],
    ),
    (
        "bench-naive",
        &["--chunk", "65536", "--count", "4"],
        &["CHLD"],
    ),
    ("bench-throughput", &["--bytes", "64K"], &["CHLD"]),
    ("async-child-feed", &["join"], &["CHLD"]),
    ("async-child-kill", &["timeout"], &["CHLD"]),
    ("async-child-kill", &["drop"], &["CHLD"]),
    ("async-child-kill", &["kill-on-drop"], &["CHLD"]),
    ("async-child-kill", &["pipe"], &["CHLD"]),
    ("async-block", &["wait"], &["CHLD"]),
    ("async-block", &["wait", "--fix", "async"], &["CHLD"]),
    ("async-block", &["signal"], &["USR1"]),
];

/// Rows that end otherwise when their parent left SIGCHLD ignored: each
/// waits for a child that the kernel, told by an ignored SIGCHLD to reap
/// it at once, has already reaped (ECHILD). Chapter 4's four do so on
/// purpose: the chapter shows that ECHILD, and
/// `ch04_pipes::pipe_listings_get_echild_when_started_with_sigchld_ignored`
/// checks its one line. The other rows end alike: each that starts a
/// child gives SIGCHLD its default back first (`keep_zombies`, or
/// `default_sigchld`). The check fails once a row listed here ends alike,
/// so that it leaves this list.
const ECHILD_WHEN_SIGCHLD_IGNORED: &[&str] =
    &["pipe-spam", "pipe-glued", "pipe-lines", "fork-exit"];

/// Rows that die when their parent blocked the signal and left it
/// pending (the third way below): a row that unblocks it before a handler
/// is in place takes the default action, which kills. None today: 24-1's
/// `clean_slate` and 32-1's `unblock_usr1` throw such a signal away
/// first. A row listed here must still fail, so that it leaves the list
/// once fixed.
const DIES_OF_A_SIGNAL_LEFT_PENDING: &[(&str, &str)] = &[];

/// The rows that wait on a timer they set, the line that reports the wait
/// over, and the least time that line can come after the listing starts:
/// a parent's pending signal would end the wait at once, and the line
/// would come early, though the ending, numbers aside, looks the same.
/// A lower bound only: load can only make a line later.
const TIMER_WAITS: &[(&str, &[&str], &str, Duration)] = &[
    (
        "alarm-pause",
        &["--count", "1"],
        "Got alarm",
        Duration::from_secs(5),
    ),
    (
        "alarm",
        &["--count", "1"],
        "Got alarm",
        Duration::from_secs(5),
    ),
    (
        "sig-wait",
        &["pause", "--count", "1"],
        "Round 1: SIGALRM",
        SECOND,
    ),
    (
        "sig-wait",
        &["suspend", "--count", "1"],
        "Round 1: SIGALRM",
        SECOND,
    ),
    (
        "sig-wait",
        &["sigwait", "--count", "1"],
        "Round 1: SIGALRM",
        SECOND,
    ),
    (
        "sig-wait",
        &["timedwait", "--count", "1"],
        "Round 1: SIGALRM",
        SECOND,
    ),
    ("sig-alarm-limits", &[], "alarm(1): SIGALRM", SECOND),
    (
        "sig-timers",
        &[],
        "Took SIGRTMIN",
        Duration::from_millis(300),
    ),
    // A poll of 500 ms, then a timer's first signal 200 ms later.
    (
        "poll-connect",
        &[],
        "   connect: EINTR",
        Duration::from_millis(700),
    ),
    // A poll of 1 s, then alarm(1).
    (
        "pipe-capacity",
        &[],
        "A blocking write",
        Duration::from_secs(2),
    ),
    (
        "pipe-deadlock",
        &[],
        "Gave up waiting",
        Duration::from_secs(2),
    ),
    (
        "proc-pre-exec",
        &["alarm"],
        "sleep 5, with alarm(1)",
        SECOND,
    ),
];

const SECOND: Duration = Duration::from_secs(1);

/// How a run ended, and its stdout with every number made `N`: pids,
/// times and counts vary from run to run, and so does a plural that
/// follows a count (Listing 9-2's "1 wake-up", "2 wake-ups"). Also each line of stdout with
/// the time it came, counted from just before the start.
fn ending(command: &mut Command) -> (String, Vec<(Duration, String)>) {
    let started = Instant::now();
    let mut listing = Listing::spawn(command, Stdio::piped());
    let mut lines = Vec::new();
    while let Some(line) = listing.next_line_or_exit() {
        lines.push((started.elapsed(), line));
    }
    let out = listing.finish();
    let number = regex::Regex::new(r"[0-9]+").unwrap();
    let stdout = number.replace_all(&out.stdout.join("\n"), "N").into_owned();
    let plural = regex::Regex::new(r"\bN (wake-up)s?\b").unwrap();
    let stdout = plural.replace_all(&stdout, "N ${1}s").into_owned();
    (format!("{:?}\n{stdout}\n{}", out.status, out.stderr), lines)
}

/// The rows of Listing 11-3's table (`scheme  signal  sent  seen`) that
/// say more signals were seen than sent.
fn counted_more_than_sent(
    lines: &[(Duration, String)],
) -> impl Iterator<Item = &str> {
    let row =
        regex::Regex::new(r" ([0-9]+)  ([0-9]+)( \(measured\))?$").unwrap();
    lines
        .iter()
        .map(|(_, line)| line.as_str())
        .filter(move |line| {
            row.captures(line).is_some_and(|c| {
                c[2].parse::<u64>().unwrap() > c[1].parse::<u64>().unwrap()
            })
        })
}

/// A parent may start a listing with a signal blocked or ignored: `exec`
/// keeps both, and a shell, a supervisor or a test harness does so (a
/// background job of a non-interactive shell ignores SIGINT). A signal
/// that came while it was blocked passes through `exec` too, pending.
/// Each listing that relies on a signal to end a wait ends as a plain run
/// does (same status, stdout and stderr, numbers aside) under `env
/// --block-signal=SIG`, under `env --ignore-signal=SIG` (coreutils 9's
/// `env`), and with SIG blocked and pending (`env` blocks it, `sh` sends
/// it to itself and execs the listing), for each signal of its row in
/// `WAITS_ON_SIGNALS`. Left pending, a signal must not end a wait on a
/// timer early either (`TIMER_WAITS`), nor pass for one of the signals
/// Listing 11-3 counts. Seen on Linux 6.18: a pending SIGCHLD, SIGTSTP or
/// SIGCONT changes no row's ending today; they stay, since a listing that
/// counted SIGCHLDs, or unblocked SIGTSTP at its default action, would
/// end otherwise.
#[test]
fn every_listing_that_waits_on_a_signal_ends_alike_when_its_parent_blocked_or_ignored_it()
 {
    let mut failures = Vec::new();
    for (bin, args, signals) in WAITS_ON_SIGNALS {
        let path = bin_path(bin);
        let (plain, _) = ending(Command::new(&path).args(*args));
        for signal in *signals {
            for how in ["block", "ignore", "pending"] {
                let mut command = Command::new("env");
                if how == "pending" {
                    command.arg(format!("--block-signal={signal}"));
                    command.args([
                        "sh",
                        "-c",
                        &format!("kill -{signal} $$ && exec \"$0\" \"$@\""),
                    ]);
                } else {
                    command.arg(format!("--{how}-signal={signal}"));
                }
                command.arg(&path).args(*args);
                let (got, lines) = ending(&mut command);
                let known = match how {
                    "ignore" => {
                        *signal == "CHLD"
                            && ECHILD_WHEN_SIGCHLD_IGNORED.contains(bin)
                    }
                    "pending" => {
                        DIES_OF_A_SIGNAL_LEFT_PENDING.contains(&(bin, signal))
                    }
                    _ => false,
                };
                let list = if how == "ignore" {
                    "ECHILD_WHEN_SIGCHLD_IGNORED"
                } else {
                    "DIES_OF_A_SIGNAL_LEFT_PENDING"
                };
                if known && got == plain {
                    failures.push(format!(
                        "{bin} {args:?} with SIG{signal} {how} is fixed: \
                         take it off {list}"
                    ));
                } else if !known && got != plain {
                    failures.push(format!(
                        "{bin} {args:?} with SIG{signal} {how}:\n\
                         plain: {plain}\n{how}: {got}"
                    ));
                }
                // Listing 11-3 counts the signals a child sends it: one
                // its parent left pending is not among them.
                if *bin == "sig-count" {
                    failures.extend(counted_more_than_sent(&lines).map(
                        |line| format!("{bin} with SIG{signal} {how}: {line}"),
                    ));
                }
                let timer =
                    TIMER_WAITS.iter().find(|(b, a, ..)| b == bin && a == args);
                if let (false, Some((_, _, start, least))) = (known, timer) {
                    let came = lines.iter().find(|(_, l)| l.starts_with(start));
                    match came {
                        Some((at, _)) if at >= least => {}
                        _ => failures.push(format!(
                            "{bin} {args:?} with SIG{signal} {how}: \
                             {start:?} not at least {least:?} after the \
                             start: {lines:?}"
                        )),
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The listings that catch SIGINT to end, each with arguments that keep
/// it running until a signal ends it (`{dir}` names a fresh directory),
/// and the signals of its own that a parent may leave ignored on purpose
/// and that would end it: SIGINT in a script's `&` job, and SIGHUP under
/// `nohup` where SIGHUP would end it too. Each prints a line once its
/// handlers are in place. `sig-jobs` is not a row: it needs a terminal
/// (`NEEDS_A_TERMINAL`), and Chapter 9's
/// `sig_jobs_job_dies_of_a_sigterm_that_comes_while_it_registers` sends
/// its job SIGTERM as it registers, in a pseudo-terminal.
const ENDED_BY_SIGINT: &[(&str, &[&str], &[Signal])] = &[
    ("sig-flag", &[], &[Signal::SIGINT]),
    ("sig-selfpipe", &[], &[Signal::SIGINT]),
    ("sig-hook-flag", &["--cleanup-secs", "0"], &[Signal::SIGINT]),
    ("sig-hook-thread", &[], &[Signal::SIGINT]),
    ("sig-hook-default", &[], &[Signal::SIGINT]),
    ("sig-signalfd", &[], &[Signal::SIGINT]),
    ("sig-daemon", &["127.0.0.1:0"], &[Signal::SIGINT]),
    ("sig-notify", &["127.0.0.1:0"], &[Signal::SIGINT]),
    (
        "sig-cleanup",
        &["--end", "reraise", "--dir", "{dir}"],
        &[Signal::SIGINT],
    ),
    ("sig-init", &["--exit"], &[Signal::SIGINT]),
    ("unix-server", &[], &[Signal::SIGINT, Signal::SIGHUP]),
    (
        "unix-pass-fd",
        &["serve", "{dir}/pass.sock", "/dev/null"],
        &[Signal::SIGINT, Signal::SIGHUP],
    ),
    ("fifo-spam", &["reader"], &[Signal::SIGINT, Signal::SIGHUP]),
    (
        "spawn-pipeline",
        &["sh", "-c", "echo Ready; exec sleep 60"],
        &[Signal::SIGINT, Signal::SIGHUP],
    ),
    (
        "proc-orphans",
        &["none", "--for", "60"],
        &[Signal::SIGINT, Signal::SIGHUP],
    ),
    ("async-daemon", &["127.0.0.1:0"], &[Signal::SIGINT]),
    (
        "async-server",
        &["127.0.0.1:0"],
        &[Signal::SIGINT, Signal::SIGHUP],
    ),
    (
        "async-child-kill",
        &["timeout", "--wait", "60"],
        &[Signal::SIGINT, Signal::SIGHUP],
    ),
    ("async-ctrl-c", &[], &[Signal::SIGINT]),
    ("async-signals", &["--cleanup-secs", "0"], &[Signal::SIGINT]),
];

/// Rows of `ENDED_BY_SIGINT` that take SIGINT over even when they find it
/// ignored, each with why. The check fails once such a row keeps it
/// ignored, so that it leaves this list.
const TAKE_AN_IGNORED_SIGINT: &[(&str, &str)] = &[
    (
        "async-ctrl-c",
        "Chapter 28: it is what tokio's `ctrl_c` does, which takes SIGINT \
         whatever it finds; Chapter 29's daemon shows the check",
    ),
    (
        "async-signals",
        "Chapter 28: it shows tokio's signal streams as they are; Chapter \
         29's daemon shows the check",
    ),
];

/// How a row ended: its status and stderr. Its stdout is drained, and
/// only counted: ticks and pids differ from run to run.
fn ended_by(
    bin: &str,
    args: &[&str],
    ignored: Option<Signal>,
    signals: &[Signal],
) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dir_path = dir.path().to_str().expect("a UTF-8 path");
    let args: Vec<String> =
        args.iter().map(|a| a.replace("{dir}", dir_path)).collect();
    let mut command = Command::new("env");
    if let Some(signal) = ignored {
        command.arg(format!("--ignore-signal={}", &signal.as_str()[3..]));
    }
    // Private directories go in ours, and go with it.
    command
        .arg(bin_path(bin))
        .args(&args)
        .env("TMPDIR", dir.path());
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    listing.next_line(); // Its handlers are in place.
    let pid = listing.pid();
    let mut kept = Vec::new();
    if let Some(signal) = ignored {
        // The listing, and each child it has started by now.
        for process in std::iter::once(pid).chain(children_of(pid)) {
            let field = |name| signal_in(process, name, signal);
            if !field("SigIgn:") || field("SigCgt:") {
                kept.push(format!("{signal} not ignored in {process}"));
            }
        }
    }
    for &signal in signals {
        listing.signal(signal);
    }
    if let Some(signal) = ignored {
        // An ignored signal is discarded as it is sent: never pending.
        if !is_dead(pid) && !signal_in(pid, "SigIgn:", signal) {
            kept.push(format!("{signal} no longer ignored after one came"));
        }
    }
    let out = listing.finish_clean();
    (format!("{:?}\n{}", out.status, out.stderr), kept)
}

/// What Chapters 10 and 12 teach: a SIGINT that a parent left ignored (a
/// script starts its `&` jobs so), or a SIGHUP (`nohup`), is the user's
/// choice, which a program keeps. Each row of `ENDED_BY_SIGINT` starts
/// with the signal ignored (`env --ignore-signal`), must still have it
/// ignored, not caught, once it says it is ready (SigIgn and SigCgt in
/// /proc/PID/status), and so must each child it has started by then, and
/// then ends on that signal followed by SIGTERM
/// exactly as it ends on SIGTERM alone: the signal changed nothing.
#[test]
fn every_listing_that_ends_on_sigint_keeps_it_ignored_when_it_was_started_so() {
    let mut failures = Vec::new();
    for (bin, args, signals) in ENDED_BY_SIGINT {
        let (plain, _) = ended_by(bin, args, None, &[Signal::SIGTERM]);
        for &signal in *signals {
            let (got, kept) =
                ended_by(bin, args, Some(signal), &[signal, Signal::SIGTERM]);
            let taken = !kept.is_empty() || got != plain;
            let known = signal == Signal::SIGINT
                && TAKE_AN_IGNORED_SIGINT.iter().any(|(b, _)| b == bin);
            if known && !taken {
                failures.push(format!(
                    "{bin} keeps an ignored {signal}: take it off \
                     TAKE_AN_IGNORED_SIGINT"
                ));
            } else if !known && taken {
                failures.push(format!(
                    "{bin} {args:?} started with {signal} ignored: {kept:?}\n\
                     SIGTERM alone: {plain}\n{signal}, SIGTERM: {got}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Rows of `ENDED_BY_SIGINT` that lose a SIGTERM that comes while they
/// register it: they let signal-hook's registry, which tokio registers
/// through too, install its handler with the signal unblocked (Chapter 6,
/// "Flags, and the second Ctrl-C"). The check fails once such a row takes
/// the signal, so that it leaves this list.
const LOSE_A_SIGTERM_WHILE_THEY_REGISTER: &[&str] = &[];

/// Rows of `ENDED_BY_SIGINT` this check leaves out, each with why.
const NOT_INJECTED_AT_REGISTERING: &[(&str, &str)] = &[
    (
        "sig-signalfd",
        "it takes SIGTERM from a signalfd, with no handler",
    ),
    (
        "sig-notify",
        "it takes SIGTERM from a signalfd, with no handler",
    ),
    (
        "sig-init",
        "as an init it takes SIGTERM with sigwait, with no handler; its \
         service, which has one, is a row of ALSO_ENDED_BY_SIGTERM",
    ),
    (
        "async-ctrl-c",
        "it installs no handler for SIGTERM, which ends it at its default \
         action (Chapter 28)",
    ),
];

/// Rows that end on SIGTERM, not on SIGINT, for the same check: 12-4's
/// service, run on its own (`--child`), as its init runs it.
const ALSO_ENDED_BY_SIGTERM: &[(&str, &[&str])] = &[("sig-init", &["--child"])];

/// What Chapter 6 teaches: signal-hook installs its handler for a signal
/// before it records what the handler is to do, and a signal in between
/// is lost unless the listing blocked it first. Each row of
/// `ENDED_BY_SIGINT` is sent SIGTERM by strace at the `rt_sigaction` that
/// installs the handler for it (`signal_as_its_handler_goes_in`), and
/// must end as it ends on a SIGTERM sent once it is ready: same status,
/// same stderr. So must each row of `ALSO_ENDED_BY_SIGTERM`.
#[test]
fn every_listing_that_ends_on_sigterm_takes_one_that_comes_while_it_registers()
{
    if !have("strace") {
        return;
    }
    let mut failures = Vec::new();
    let rows = ENDED_BY_SIGINT
        .iter()
        .filter(|(bin, ..)| {
            !NOT_INJECTED_AT_REGISTERING.iter().any(|(b, _)| b == bin)
        })
        .map(|(bin, args, _)| (bin, args))
        .chain(ALSO_ENDED_BY_SIGTERM.iter().map(|(bin, args)| (bin, args)));
    for (bin, args) in rows {
        let (plain, _) = ended_by(bin, args, None, &[Signal::SIGTERM]);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let dir_path = dir.path().to_str().expect("a UTF-8 path");
        let args: Vec<String> =
            args.iter().map(|a| a.replace("{dir}", dir_path)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let path = bin_path(bin);
        let path = path.to_str().expect("a UTF-8 path");
        let ending = std::panic::catch_unwind(|| {
            let listing = signal_as_its_handler_goes_in_with(
                path,
                &args,
                Some(dir.path()),
                Signal::SIGTERM,
                ".*",
            );
            let out = listing.finish_within(Duration::from_secs(15));
            format!("{:?}\n{}", out.status, out.stderr)
        });
        let known = LOSE_A_SIGTERM_WHILE_THEY_REGISTER.contains(bin);
        match ending {
            Ok(got) if got == plain && known => failures.push(format!(
                "{bin} takes a SIGTERM while it registers: take it off \
                 LOSE_A_SIGTERM_WHILE_THEY_REGISTER"
            )),
            Ok(got) if got == plain || known => {}
            Err(_) if known => {}
            Ok(got) => failures.push(format!(
                "{bin} {args:?}, SIGTERM as it registers:\n\
                 SIGTERM once ready: {plain}\nas it registers: {got}"
            )),
            Err(panic) => failures.push(format!(
                "{bin} {args:?}, SIGTERM as it registers: {}",
                panic
                    .downcast_ref::<String>()
                    .map_or("a panic", |message| message.as_str())
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Part IV's listings, the arguments of a run that writes to stdout at
/// once, and whether that run forks a child of the listing's own that
/// reports its errors on the stderr it shares with its parent.
/// Not 23-1 (`spawn-pipeline`), whose stages write its output: its errors
/// go through `log`, which the book's siblings check keeps the same code,
/// one `write`, in every listing that has one.
const PART_FOUR_LISTINGS: [(&str, &[&str], bool); 14] = [
    ("pipe-no-eof", &["--close"], true),
    ("pipe-epipe", &[], false),
    ("pipe-leak", &["--cloexec"], false),
    ("pipe-writers", &["--writes", "1"], false),
    ("pipe-frames", &["length"], true),
    ("pipe-capacity", &[], false),
    ("pipe-deadlock", &["--read-first"], true),
    ("fifo-open", &[], false),
    ("spawn-deadlock", &["thread", "--bytes", "10"], false),
    ("spawn-grandchild", &["--group"], false),
    ("proc-exec", &["command"], false),
    ("proc-pre-exec", &["alarm"], false),
    ("proc-orphans", &["none", "--for", "1"], false),
    ("orphan-hangup", &[], false),
];

/// The strings of the `write(2, …)` calls of `bin args` under `strace -f`
/// with these options of strace's added, such as a fault to inject.
fn writes_to_stderr_with(
    bin: &str,
    args: &[&str],
    stdout: Stdio,
    strace_options: &[&str],
) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("writes");
    let mut command = Command::new("strace");
    command
        .args(["-f", "-q", "-s", "4096", "-e", "trace=write"])
        .args(strace_options)
        .args(["-e", "signal=none", "-o"])
        .arg(&log)
        .arg("--")
        .arg(bin_path(bin))
        .args(args);
    Listing::spawn(&mut command, stdout).finish();
    std::fs::read_to_string(&log)
        .expect("strace's log")
        .lines()
        .filter_map(|line| line.split_once("write(2, ").map(|(_, w)| w))
        .map(String::from)
        .collect()
}

/// Whether a `write` that strace shows holds one whole line of `name`'s,
/// its newline last.
fn is_one_whole_line(name: &str, write: &str) -> bool {
    write.starts_with(&format!("\"{name}"))
        && write.contains("\\n\", ")
        && write.matches("\\n").count() == 1
}

/// Each line of error of a Part IV listing is one `write`, formatted whole
/// first, for the reason Chapter 20 gives: `writeln!` writes each piece of
/// its format on its own, and another writer of the same stderr can land
/// between them (the bad option of every listing is
/// `every_listing_writes_its_line_of_error_with_one_write`'s). A full
/// disk under stdout gives the parent's line; and where the listing's
/// child reports its own errors, a first `write` that fails in every
/// process (the child's is into the pipe) gives the child's line, and the
/// parent's if it has one.
#[test]
fn every_part_four_listing_writes_a_line_of_error_with_one_write() {
    if !crate::support::can_trace() {
        return;
    }
    let mut failures = Vec::new();
    for (name, args, child) in PART_FOUR_LISTINGS {
        let disk = std::fs::OpenOptions::new().write(true).open("/dev/full");
        let full =
            writes_to_stderr(name, args, Stdio::from(disk.expect("/dev/full")));
        if full.is_empty() || !full.iter().all(|w| is_one_whole_line(name, w)) {
            failures.push(format!("{name} {args:?} > /dev/full: {full:#?}"));
        }
        if child {
            let inject = ["-e", "inject=write:error=EIO:when=1"];
            let failed =
                writes_to_stderr_with(name, args, Stdio::null(), &inject);
            let of_child = format!("\"{name} child: ");
            if !failed.iter().any(|w| w.starts_with(&of_child))
                || !failed.iter().all(|w| is_one_whole_line(name, w))
            {
                failures.push(format!(
                    "{name} {args:?}, first writes failing: {failed:#?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A test that runs a listing as another user (`setpriv --reuid=N`, or a
/// `pre_exec` helper such as `hold_pipes_as(N, …)`) to meet a per-user
/// limit (pending signals, pipe pages) shares that limit with every other
/// process of the user: tests run in parallel, so each numeric uid belongs
/// to one test function (or to one helper that a single test calls), and
/// none lies among the uids `with_thread_limit` picks for itself.
/// `nobody` (65534) is the shared exception, for tests that only need to
/// lack root's rights.
#[test]
fn every_uid_a_test_runs_as_belongs_to_one_test() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let fixed = regex::Regex::new(r"(?:--reuid=|_as\()(\d+)\b").unwrap();
    let function = regex::Regex::new(r"\bfn (\w+)").unwrap();
    let mut owners = std::collections::BTreeMap::<u32, Vec<String>>::new();
    let mut pending = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            for uid in fixed.captures_iter(&text) {
                let at = uid.get(0).unwrap().start();
                let Some(owner) = function.captures_iter(&text[..at]).last()
                else {
                    panic!("{name}: uid {} outside any function", &uid[1]);
                };
                let (fn_at, owner) = (owner.get(0).unwrap().start(), &owner[1]);
                let attributes =
                    &text[text[..fn_at].rfind("\n\n").unwrap_or(0)..fn_at];
                if !attributes.contains("test]") {
                    // A helper: it belongs to the one test that calls it.
                    let calls = text.matches(&format!("{owner}(")).count();
                    assert_eq!(
                        calls, 2,
                        "{name}: {owner} holds uid {} \
                        and is called more than once",
                        &uid[1]
                    );
                }
                let key = format!("{name}::{owner}");
                let uid: u32 = uid[1].parse().unwrap();
                let tests = owners.entry(uid).or_default();
                if !tests.contains(&key) {
                    tests.push(key);
                }
            }
        }
    }
    assert!(!owners.is_empty(), "no fixed uid found in {root}");
    let shared: Vec<String> = owners
        .iter()
        .filter(|&(&uid, tests)| uid != 65534 && tests.len() > 1)
        .map(|(uid, tests)| format!("uid {uid}: {}", tests.join(", ")))
        .collect();
    assert!(shared.is_empty(), "uids shared by tests: {shared:?}");
    let picked: Vec<_> = owners
        .keys()
        .filter(|uid| crate::support::THREAD_LIMIT_UIDS.contains(uid))
        .collect();
    assert!(
        picked.is_empty(),
        "uids with_thread_limit may pick: {picked:?}"
    );
}

/// Where each listing that checks a `HOST:PORT` with its `resolve` takes
/// the address (`ADDRESS` stands for it), with what else its usage needs.
const TAKES_AN_ADDRESS: &[(&str, &[&str])] = &[
    ("socket-preview", &[ADDRESS]),
    ("socket-modes", &["server", ADDRESS]),
    ("socket-modes", &["client", ADDRESS]),
    ("socket-modes", &["threads", ADDRESS]),
    ("sig-daemon", &[ADDRESS]),
    ("tcp-lines", &["server", ADDRESS]),
    ("tcp-lines", &["client", ADDRESS, "x"]),
    ("tcp-length", &["server", ADDRESS]),
    ("tcp-length", &["client", ADDRESS, "x"]),
    ("tcp-naive", &[ADDRESS]),
    ("tcp-threads", &[ADDRESS]),
    ("tcp-pool", &[ADDRESS]),
    ("poll-server", &[ADDRESS]),
    ("udp-echo", &[ADDRESS]),
    ("udp-request", &[ADDRESS, "x"]),
    ("async-daemon", &[ADDRESS]),
    ("async-server", &[ADDRESS]),
];

/// A `HOST:PORT` with a newline in it, which names no address.
const ADDRESS: &str = "a\nb:1";

/// Listings that take a `HOST:PORT` but have no `resolve`, with how
/// their error about a bad one starts: sig-notify binds its address
/// itself, and net-resolve shows what getaddrinfo makes of it.
const NAMES_AN_ADDRESS: &[(&str, &[&str], &str)] = &[
    ("sig-notify", &[ADDRESS], "cannot listen on "),
    ("net-resolve", &[ADDRESS], "cannot resolve "),
];

/// "It explains a mistake in one line", even when the mistake is an
/// address with a newline in it: `resolve` (and the listings without one,
/// in their own error) quotes it escaped, as lexopt quotes a bad
/// argument, so that the user's text cannot start a second line that
/// looks like one of the listing's own.
#[test]
fn every_listing_that_resolves_an_address_reports_a_bad_one_in_one_line() {
    let rows = TAKES_AN_ADDRESS
        .iter()
        .map(|&(name, args)| (name, args, "bad address "))
        .chain(NAMES_AN_ADDRESS.iter().copied());
    let mut failures = Vec::new();
    for (name, args, start) in rows {
        failures.extend(failure_of_row(name, args, |out| {
            let lines: Vec<_> = out.stderr.lines().collect();
            !out.status.success()
                && lines.len() == 1
                && lines[0].starts_with(&format!("{name}: {start}"))
        }));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every listing with a `resolve` has its row.
    for (name, source) in listing_sources() {
        let listed = TAKES_AN_ADDRESS.iter().any(|(bin, _)| *bin == name);
        assert!(
            listed || !source.contains("fn resolve("),
            "{name} has a `resolve` but no row in TAKES_AN_ADDRESS"
        );
    }
}

/// Runs one row of a table, `name args` with its output read, and says
/// what it did unless `ok` holds of that.
fn failure_of_row(
    name: &str,
    args: &[&str],
    ok: impl Fn(&crate::support::Finished) -> bool,
) -> Option<String> {
    let mut command = Command::new(bin_path(name));
    command.args(args);
    let out = Listing::spawn(&mut command, Stdio::piped()).finish();
    let said = (&out.stdout, &out.stderr);
    (!ok(&out)).then(|| format!("{name} {args:?}: {said:?}"))
}

/// Each binary of listings/Cargo.toml with the source of its listing.
fn listing_sources() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let mut name = "";
    let mut sources = Vec::new();
    for line in manifest.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = n.trim_matches('"');
        } else if let Some(path) = line.strip_prefix("path = ") {
            let source =
                std::fs::read_to_string(dir.join(path.trim_matches('"')))
                    .expect("a listing's source");
            sources.push((name.to_string(), source));
        }
    }
    sources
}

/// Whether `out` is a failure reported in exactly one line of `name`'s
/// that shows `shown`, the user's text escaped.
fn one_line_showing(
    name: &str,
    out: &crate::support::Finished,
    shown: &str,
) -> bool {
    !out.status.success()
        && out.stderr.ends_with('\n')
        && out.stderr.matches('\n').count() == 1
        && out.stderr.starts_with(&format!("{name}: "))
        && out.stderr.contains(shown)
}

/// Options no listing knows, each with a newline in it.
const UNKNOWN_OPTIONS: [&str; 2] = ["--a\nb", "-\n"];

/// "It explains a mistake in one line", whatever the user typed. lexopt
/// quotes a bad value escaped but an unknown option as it came, so each
/// listing's `unexpected` escapes the option itself: a newline in it must
/// not start a second line that looks like one of the listing's own.
#[test]
fn every_listing_reports_an_unknown_option_in_one_line() {
    let mut failures = Vec::new();
    for name in runnable_listings() {
        for option in UNKNOWN_OPTIONS {
            let mut command = Command::new(bin_path(&name));
            command.arg(option);
            let out = Listing::spawn(&mut command, Stdio::piped()).finish();
            let shown = format!("'{}'", option.escape_debug());
            if !one_line_showing(&name, &out, &shown) {
                failures.push(format!("{name} {option:?}: {:?}", out.stderr));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Where each listing that takes a word from a fixed set (a mode, a way,
/// an end, a case…) takes it, `WORD` standing for the word, with what
/// else its usage needs. Also the words a listing parses itself, such as
/// 21-1's sizes.
const TAKES_A_WORD: &[(&str, &[&str])] = &[
    ("socket-modes", &[WORD]),
    ("sig-wait", &[WORD]),
    ("sig-threads", &[WORD]),
    ("sig-cleanup", &["--end", WORD]),
    ("sig-status", &["--child", WORD]),
    ("sig-test-threads", &["--case", WORD]),
    ("sig-crash", &["--case", WORD]),
    ("tcp-lines", &[WORD]),
    ("tcp-length", &[WORD]),
    ("unix-pass-fd", &[WORD]),
    ("pipe-frames", &[WORD]),
    ("pipe-capacity", &["--write-size", WORD]),
    ("pipe-capacity", &["--write-sizes", WORD]),
    ("fifo-spam", &[WORD]),
    ("spawn-deadlock", &[WORD]),
    ("proc-exec", &[WORD]),
    ("proc-pre-exec", &[WORD]),
    ("proc-orphans", &[WORD]),
    ("orphan-hangup", &["--stop", WORD]),
    ("bench-pingpong", &["--via", WORD]),
    ("bench-pingpong", &["--cpus", WORD]),
    ("bench-pingpong", &["--wait", WORD]),
    ("bench-throughput", &["--via", WORD]),
    ("bench-throughput", &["--cpus", WORD]),
    ("async-server", &["--frames", WORD]),
    ("async-child-feed", &[WORD]),
    ("async-child-kill", &[WORD]),
    ("async-block", &[WORD]),
    ("async-block", &["--fix", WORD]),
    ("async-budget", &[WORD]),
];

/// A word with a newline in it, which names no mode, way or end.
const WORD: &str = "a\nb";

/// Listings that read text with lexopt's `string()` but neither take a
/// word from a fixed set nor an address, with what the text is.
const TAKES_OTHER_TEXT: &[(&str, &str)] =
    &[("unix-server", "a socket's PATH or @NAME, shown as a path")];

/// The same for a mode, a way, an end: a word the listing does not know
/// is quoted escaped (`escape_debug`, or `{:?}`), so that the error is
/// one line whatever was typed.
#[test]
fn every_listing_that_takes_a_word_reports_an_unknown_one_in_one_line() {
    let failures: Vec<_> = TAKES_A_WORD
        .iter()
        .filter_map(|&(name, args)| {
            failure_of_row(name, args, |out| {
                one_line_showing(name, out, r"a\nb")
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every listing that reads text has its row in one table or another.
    for (name, source) in listing_sources() {
        let has_row = TAKES_A_WORD.iter().any(|(bin, _)| *bin == name)
            || TAKES_AN_ADDRESS.iter().any(|(bin, _)| *bin == name)
            || NAMES_AN_ADDRESS.iter().any(|(bin, ..)| *bin == name)
            || TAKES_OTHER_TEXT.iter().any(|(bin, _)| *bin == name);
        assert!(
            has_row || !source.contains(".string()?"),
            "{name} reads text but has no row in TAKES_A_WORD"
        );
    }
}

/// Where each listing that takes a file's path takes it (`PATH` stands
/// for it), with what else its usage needs.
const TAKES_A_PATH: &[(&str, &[&str])] = &[
    ("sig-daemon", &["127.0.0.1:0", "--config", PATH]),
    ("sig-notify", &["127.0.0.1:0", "--config", PATH]),
    ("sig-cleanup", &["--end", "exit", "--dir", PATH]),
    ("unix-server", &[PATH]),
    ("unix-pass-fd", &["fetch", PATH]),
    ("unix-pass-fd", &["serve", PATH, PATH]),
    ("fifo-spam", &["writer", PATH]),
    ("fifo-spam", &["reader", "--fifo", PATH]),
    ("async-daemon", &["127.0.0.1:0", "--config", PATH]),
    ("async-server", &["--unix", PATH]),
    ("net-load", &["--record", PATH]),
    ("bench-pingpong", &["--times", PATH]),
];

/// A path with a newline in it (a Linux file name may hold any byte but
/// `/` and NUL), in a directory that does not exist: every listing fails
/// on it at once.
const PATH: &str = "/no such dir/a\nb";

/// Listings whose error about a bad path names no path, with what else
/// their usage needs: 24-2's `chdir` runs in the child, whose failed
/// `exec` is all the parent hears of (its output shows the path with
/// `{:?}`). The error must still be one line.
const PATH_NOT_NAMED: &[(&str, &[&str])] =
    &[("proc-pre-exec", &["chdir", PATH])];

/// "It explains a mistake in one line", even when the mistake is a path
/// with a newline in it: each listing shows a path it was given escaped
/// (`escaped(path)`, which the book's siblings check keeps the same code
/// in every listing that has one), so that the user's text cannot start a
/// second line that looks like one of the listing's own.
#[test]
fn every_listing_that_takes_a_path_reports_a_bad_one_in_one_line() {
    let shown = PATH.escape_debug().to_string();
    let rows = TAKES_A_PATH
        .iter()
        .map(|&(name, args)| (name, args, shown.as_str()))
        .chain(PATH_NOT_NAMED.iter().map(|&(name, args)| (name, args, "")));
    let mut failures = Vec::new();
    for (name, args, shown) in rows {
        failures.extend(failure_of_row(name, args, |out| {
            one_line_showing(name, out, shown) && out.stdout.is_empty()
        }));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every listing whose usage names a PATH, FILE or DIR has its row.
    let usage = regex::Regex::new(r#"(?s)const USAGE: &str =(.*?)";"#).unwrap();
    let takes = regex::Regex::new(r"\b(PATH|FILE|DIR)\b").unwrap();
    let mut found = Vec::new();
    for (name, source) in listing_sources() {
        let Some(text) = usage.captures(&source) else {
            continue;
        };
        if takes.is_match(&text[1]) {
            let has_row = TAKES_A_PATH.iter().any(|(bin, _)| *bin == name)
                || PATH_NOT_NAMED.iter().any(|(bin, _)| *bin == name);
            assert!(has_row, "{name} takes a path but has no row");
            found.push(name);
        }
    }
    // The check finds what the tables hold.
    for (bin, _) in TAKES_A_PATH.iter().chain(PATH_NOT_NAMED) {
        let found = found.iter().any(|name| name == *bin);
        assert!(found, "{bin}'s usage names no path");
    }
}
