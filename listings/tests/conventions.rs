//! The book-wide conventions of the introduction, checked for every
//! listing: what a program does when its output is closed early, when an
//! argument is not UTF-8, when asked for `--help`. Every binary of
//! listings/Cargo.toml must have a row in `abuses`, so a new listing is
//! covered as soon as it exists.

use std::io::pipe;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use crate::support::{
    Listing, bin_path, group_is_gone, listing_names, run, wait_until,
};

/// Listings that no test runs: Listing 5-1 is wrong on purpose, and may
/// hang or abort; Chapter 5 says so. They are compiled like all others.
const NEVER_RUN: [&str; 1] = ["sig-wrong-handler"];

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
    /// A directory for the files the listing makes, removed afterwards.
    _dir: Option<tempfile::TempDir>,
}

fn abuse(bin: &'static str, args: &[&str], end: End) -> Abuse {
    let args = args.iter().map(|a| a.to_string()).collect();
    Abuse {
        bin,
        args,
        end,
        _peer: None,
        _dir: None,
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

/// For each listing, a run whose first write to stdout comes at once.
fn abuses() -> Vec<Abuse> {
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
        abuse("sig-flag", &[], End::Sigpipe),
        abuse("sig-write", &[], End::Sigpipe),
        abuse("sig-selfpipe", &[], End::Sigpipe),
        abuse("sig-errno", &[], End::Sigpipe),
        abuse("sig-hook-flag", &[], End::Sigpipe),
        abuse("sig-hook-thread", &[], End::Sigpipe),
        abuse("sig-hook-default", &[], End::Sigpipe),
        abuse("sig-coalesce", &[], End::Sigpipe),
        abuse("sig-wait", &["pause"], End::Sigpipe),
        abuse("sig-signalfd", &[], End::Sigpipe),
        abuse("sig-threads", &["handler"], End::Sigpipe),
        abuse("sig-eintr", &[], End::Sigpipe),
        abuse("sig-restart-table", &[], End::Sigpipe),
        abuse("sig-zombie", &[], End::Sigpipe),
        // The children exit when the parent's death closes their pipe.
        abuse("sig-reaper", &[], End::Sigpipe),
        abuse("sig-orphan", &[], End::Sigpipe),
        abuse("sig-group", &[], End::Sigpipe),
        // A server: a closed log ends it, through `main`, which also
        // removes its private configuration directory.
        abuse("sig-daemon", &["127.0.0.1:0"], End::Exits(0)),
        abuse("sig-alarm-limits", &[], End::Sigpipe),
        abuse("sig-timers", &[], End::Sigpipe),
        abuse("sig-count", &[], End::Sigpipe),
        abuse("sig-queue", &[], End::Exits(0)),
        // It leaves through `main` so that Drop removes its file.
        in_scratch_dir("sig-cleanup", &["--end", "return"], End::Exits(0)),
        abuse("sig-status", &[], End::Sigpipe),
        abuse("sig-inherit", &[], End::Sigpipe),
        abuse("sig-init", &[], End::Sigpipe),
        abuse("sig-test-threads", &["--isolate"], End::Sigpipe),
    ]
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
        // A pipe whose read end is already closed: the first write fails.
        let (reader, writer) = pipe().expect("a pipe");
        drop(reader);
        let mut command = Command::new(bin_path(abuse.bin));
        command.args(&abuse.args);
        let listing = Listing::spawn(&mut command, Stdio::from(writer));
        let pgid = listing.pid();
        let out = listing.finish();
        let what = format!("{} {:?}", abuse.bin, abuse.args);
        assert!(
            !out.stderr.contains("panicked"),
            "{what} panicked: {}",
            out.stderr
        );
        let ended = match (out.status.signal(), out.status.code()) {
            (Some(signal), _) if signal == Signal::SIGPIPE as i32 => {
                End::Sigpipe
            }
            (_, Some(code)) => End::Exits(code),
            _ => panic!("{what}: {:?}", out.status),
        };
        assert_eq!(ended, abuse.end, "{what}: {}", out.stderr);
        if ended == End::Sigpipe || ended == End::Exits(0) {
            assert_eq!(out.stderr, "", "{what} says nothing");
        }
        // Forked children too.
        wait_until(&format!("the processes of {what} to end"), || {
            group_is_gone(pgid)
        });
        // And the files it made.
        if let Some(dir) = &abuse._dir {
            let left: Vec<_> = std::fs::read_dir(dir.path())
                .expect("the scratch directory")
                .collect();
            assert!(left.is_empty(), "{what} left {left:?} behind");
        }
    }
}

#[test]
fn every_listing_rejects_an_argument_that_is_not_utf8() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    for name in runnable_listings() {
        let mut command = Command::new(bin_path(&name));
        command.arg(OsStr::from_bytes(b"\xff"));
        let out = Listing::spawn(&mut command, Stdio::piped()).finish();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", out.stderr);
        let lines: Vec<_> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: one line: {:?}", out.stderr);
        assert!(lines[0].starts_with(&format!("{name}: ")), "{}", lines[0]);
        assert!(lines[0].contains(r#""\xFF""#), "{}", lines[0]);
    }
}

#[test]
fn every_listing_reports_bad_arguments_even_with_stderr_closed() {
    for name in runnable_listings() {
        let (reader, writer) = pipe().expect("a pipe");
        drop(reader);
        let mut child = Command::new(bin_path(&name))
            .arg("--no-such-option")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer)
            .process_group(0)
            .spawn()
            .expect("start the listing");
        use wait_timeout::ChildExt;
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

/// Whether `SIGPIPE` (13) is ignored by `pid`, from its `SigIgn` mask.
fn ignores_sigpipe(status: &str) -> bool {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("a SigIgn line");
    mask & (1 << (Signal::SIGPIPE as i32 - 1)) != 0
}

#[test]
fn rust_ignores_sigpipe_but_command_children_get_the_default_back() {
    // This test binary is a Rust program: the runtime ignored SIGPIPE.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(ignores_sigpipe(&own));
    // A program it starts with Command has the default again.
    let child = run("cat", &["/proc/self/status"]);
    assert!(!ignores_sigpipe(&child.stdout.join("\n")));
}

#[test]
fn a_forked_child_inherits_the_sigpipe_disposition_of_its_parent() {
    // pipe-lines restores the default before it forks; both have it. A
    // listing that keeps Rust's setting (catch-signal) ignores SIGPIPE.
    let mut lines = Listing::start(bin!("pipe-lines"), &[]);
    lines.next_line();
    let parent = lines.pid();
    let status = |pid| std::fs::read_to_string(format!("/proc/{pid}/status"));
    let child = crate::support::children_of(parent)[0];
    assert!(!ignores_sigpipe(&status(parent).unwrap()));
    assert!(!ignores_sigpipe(&status(child).unwrap()));
    drop(lines);
    let mut catcher = Listing::start(bin!("catch-signal"), &["USR1"]);
    catcher.next_line();
    assert!(ignores_sigpipe(&status(catcher.pid()).unwrap()));
}
