//! Chapter 16, Unix domain sockets: Listings 16-1 (`unix-server`), 16-2
//! (`unix-pair`) and 16-3 (`unix-pass-fd`).
//!
//! Every socket file of these tests lives in a temporary directory that
//! is removed when the test ends, pass or fail; servers that make their
//! own private directory are checked to remove it.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::socket_file::{
    self, AS_NOBODY, bound_stream_socket, can_switch_users, open_dir, path_in,
};
use crate::support::{
    Listing, as_pid_1, assert_died_of, assert_matches_book, assert_rejects,
    assert_session_matches_book, blessing, cargo_run, finish_clean, have,
    is_dead, run, threads_blocked_in, threads_of, wait_until,
};

/// Starts a listing that prints `Server listening on <address>`.
fn start(bin: &str, args: &[&str]) -> (Listing, String) {
    let mut server = Listing::start(bin, args);
    let address = server.expect(r"Server listening on (.+)").remove(1);
    (server, address)
}

/// Starts `unix-server` without a path, so that it makes its private
/// directory, but inside `tmp` (its TMPDIR): if the test fails and the
/// server is killed, the directory goes with `tmp`.
fn start_private(tmp: &TempDir, args: &[&str]) -> (Listing, String) {
    let mut command = std::process::Command::new(bin!("unix-server"));
    command.args(args).env("TMPDIR", tmp.path());
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let address = server.expect(r"Server listening on (.+)").remove(1);
    (server, address)
}

/// Sends `lines` over a Unix socket, half-closes, returns the replies.
fn ask(path: &str, lines: &str) -> String {
    let mut sock = UnixStream::connect(path).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.write_all(lines.as_bytes()).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    reply
}

/// Whether the tests run as root, which may act as another user.
fn root() -> bool {
    uid() == 0
}

/// The tests' user id.
fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { nix::libc::geteuid() }
}

/// A user id that no other process on the machine has, for a test that
/// depends on a count the kernel keeps per user: 2,000,000,000 plus this
/// process's id, if the user namespace maps it; says why not otherwise.
fn a_user_of_its_own() -> Option<u32> {
    let user = 2_000_000_000 + std::process::id();
    let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let mapped = map.lines().any(|line| {
        let fields: Vec<u64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        matches!(fields[..], [first, _, count]
            if (first..first + count).contains(&u64::from(user)))
    });
    if !mapped {
        eprintln!("skipped: user {user} is not mapped in this namespace");
    }
    mapped.then_some(user)
}

// ---------------------------------------------------------------------------
// Listing 16-1: the server on a path

#[test]
fn unix_server_answers_in_a_private_directory_and_logs_who_connected() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start_private(&tmp, &["--count", "1"]);
    let dir = Path::new(&path).parent().unwrap().to_path_buf();
    let mode = fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "only its owner may enter");
    assert!(fs::metadata(&path).unwrap().file_type().is_socket());
    assert_eq!(
        ask(&path, "one\ntwo"),
        "server got: [one]\nserver got: [two]\n"
    );
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    // The kernel's word on who connected: this test process.
    let me = std::process::id();
    let uid = uid();
    assert_eq!(
        out.stdout[1],
        format!("pid {me} (uid {uid}): answered 2 lines")
    );
    // Both the socket and the directory are gone.
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn unix_server_session_matches_the_book() {
    if !have("nc") || !have("stat") {
        return;
    }
    let args = ["--count", "1"];
    // Blessing shows the directory a reader gets, in /tmp; checks keep
    // it inside a temporary directory of their own.
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = if blessing() {
        start(bin!("unix-server"), &args)
    } else {
        start_private(&tmp, &args)
    };
    let dir = Path::new(&path).parent().unwrap().display().to_string();
    let mut terminal2 = Vec::new();
    for command in [
        format!("stat -c '%A %n' {dir} {path}"),
        format!("printf 'one\\ntwo' | nc -U -N {path}"),
    ] {
        let out = Listing::start("bash", &["-c", &command]).finish();
        assert!(out.status.success(), "{command}: {}", out.stderr);
        terminal2.push((command, out.stdout));
    }
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_session_matches_book(
        "ch16-unix/16-01-server.out",
        &[(cargo_run("unix-server", &args), &out.stdout)],
    );
    let terminal2: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch16-unix/16-01-client.out", &terminal2);
}

#[test]
fn unix_server_removes_its_socket_when_interrupted_and_dies_of_the_signal() {
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(&dir, "server.sock");
        let (server, _) = start(bin!("unix-server"), &[&path]);
        server.signal(signal);
        let out = server.finish();
        assert_eq!(out.status.signal(), Some(signal as i32), "{}", out.stderr);
        assert!(!Path::new(&path).exists(), "{signal:?} left {path}");
    }
}

#[test]
fn unix_server_killed_by_sigkill_leaves_its_private_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start_private(&tmp, &[]);
    server.signal(Signal::SIGKILL);
    assert_eq!(server.finish().status.signal(), Some(9));
    let meta = fs::symlink_metadata(&path).expect("the socket stays");
    assert!(meta.file_type().is_socket(), "{path}");
}

#[test]
fn unix_servers_leave_alone_a_socket_that_another_bound_at_their_path() {
    // Someone removes a running server's socket file and binds a socket of
    // their own at the path: when the first server ends, that socket is
    // not its to remove. unix-pass-fd used to remove any socket it found
    // there, and a second server on the path became unreachable.
    let dir = open_dir();
    let (path, file) = (path_in(&dir, "server.sock"), secret(&dir));
    for args in [
        [bin!("unix-server"), &path].as_slice(),
        &[bin!("unix-pass-fd"), "serve", &path, &file],
    ] {
        let (server, _) = start(args[0], &args[1..]);
        fs::remove_file(&path).unwrap();
        let other = UnixListener::bind(&path).unwrap();
        server.signal(Signal::SIGTERM);
        let out = server.finish();
        assert_eq!(out.status.signal(), Some(15), "{}", out.stderr);
        assert!(
            UnixStream::connect(&path).is_ok(),
            "{} removed a socket it had not bound",
            args[0]
        );
        drop(other);
        fs::remove_file(&path).unwrap();
    }
}

/// A parent that blocked SIGINT, SIGTERM or SIGHUP passed its mask on
/// through `exec` (signal(7)), and signal-hook installs handlers without
/// unblocking them. The first version of both servers ran on through
/// `kill -TERM` from such a parent, its socket file in place; each now
/// unblocks the three, as Listing 30-1 does. Linux 6.18, coreutils 9's
/// `env --block-signal`.
#[test]
fn unix_servers_remove_their_socket_on_a_signal_their_parent_had_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let (path, file) = (path_in(&dir, "server.sock"), secret(&dir));
    for args in [
        [bin!("unix-server"), &path].as_slice(),
        &[bin!("unix-pass-fd"), "serve", &path, &file],
    ] {
        let mut command = std::process::Command::new("env");
        command.arg("--block-signal=INT,TERM,HUP").args(args);
        let mut server =
            Listing::spawn(&mut command, std::process::Stdio::piped());
        server.expect(r"Server listening on .+");
        server.signal(Signal::SIGTERM);
        assert_died_of(&server.finish(), Signal::SIGTERM);
        assert!(!Path::new(&path).exists(), "{} left {path}", args[0]);
    }
}

#[test]
fn unix_servers_remove_their_socket_on_a_signal_that_comes_just_after_bind() {
    // strace holds each server for a second as `bind` returns, and
    // SIGTERM comes meanwhile. With its handlers installed only after
    // `bind`, a server died of the signal's default action there, and
    // left its socket file behind (which unix-pass-fd then refuses to
    // start on). Installed before, they keep the signal until the thread
    // that removes the file is running.
    if !have("strace") {
        return;
    }
    let dir = open_dir();
    let (path, file) = (path_in(&dir, "server.sock"), secret(&dir));
    for args in [
        [bin!("unix-server"), &path].as_slice(),
        &[bin!("unix-pass-fd"), "serve", &path, &file],
    ] {
        let mut strace = vec!["-o", "/dev/null", "-e", "trace=bind"];
        strace.extend(["-e", "inject=bind:delay_exit=1000000"]);
        strace.extend(args);
        let server = Listing::start("strace", &strace);
        wait_until("the socket file", || Path::new(&path).exists());
        let tracer = server.pid();
        let children = fs::read_to_string(format!(
            "/proc/{tracer}/task/{tracer}/children"
        ))
        .unwrap();
        let pid: i32 = children.trim().parse().expect("one child");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            Signal::SIGTERM,
        )
        .unwrap();
        let out = server.finish();
        assert!(
            !Path::new(&path).exists(),
            "{} left {path}: {:?} {}",
            args[0],
            out.status,
            out.stderr
        );
    }
}

#[test]
fn pass_fd_server_changes_no_mode_through_a_symlink_put_at_its_path() {
    // Linux 6.18. unix-pass-fd's socket file is for everyone to connect
    // to. The server made it so with a chmod by name after `bind`, and
    // chmod follows a symbolic link: strace holds the server for a second
    // as `bind` returns, a link to a file of mode 0600 takes the socket's
    // place, and the chmod made that file 0666 (as root, any file). The
    // mode now comes with `bind` itself.
    if !have("strace") {
        return;
    }
    let dir = open_dir();
    let (path, file) = (path_in(&dir, "server.sock"), secret(&dir));
    let target = path_in(&dir, "private");
    fs::write(&target, "mine\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    let mut args = vec!["-o", "/dev/null", "-e", "trace=bind"];
    args.extend(["-e", "inject=bind:delay_exit=1000000"]);
    args.extend([bin!("unix-pass-fd"), "serve", &path, &file]);
    let mut server = Listing::start("strace", &args);
    wait_until("the socket file", || Path::new(&path).exists());
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    server.expect("Server listening on .+");
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    let tracer = server.pid();
    let children =
        fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children"))
            .unwrap();
    let pid: i32 = children.trim().parse().expect("one child");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM)
        .unwrap();
    server.finish();
    assert_eq!(mode, 0o600, "the server chmodded {target} through a link");
}

#[test]
fn unix_servers_as_pid_1_remove_their_socket_and_exit_143_on_sigterm() {
    // The kernel drops a PID 1's own raise of SIGTERM: servers that ended
    // with emulate_default_handler fell through to abort(), dropped too,
    // and died of SIGSEGV (status 139).
    let dir = open_dir();
    let (path, file) = (path_in(&dir, "server.sock"), secret(&dir));
    for args in [
        [bin!("unix-server"), &path].as_slice(),
        &[bin!("unix-pass-fd"), "serve", &path, &file],
    ] {
        let ready = "Server listening on .+";
        let Some((server, pid)) = as_pid_1(args[0], &args[1..], ready) else {
            return;
        };
        nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
        let out = server.finish();
        assert_eq!(
            out.status.code(),
            Some(143),
            "{}: {:?}: {}",
            args[0],
            out.status,
            out.stderr
        );
        assert!(!Path::new(&path).exists(), "{} left {path}", args[0]);
    }
}

#[test]
fn a_stale_socket_file_refuses_bind_and_the_server_replaces_it() {
    // Linux 6.18: bind() fails with EADDRINUSE on a socket file that no
    // socket holds any more, as on any existing file.
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "server.sock");
    let (server, _) = start(bin!("unix-server"), &[&path]);
    // Killed without a chance to clean up: the file stays.
    server.signal(Signal::SIGKILL);
    drop(server);
    assert!(fs::metadata(&path).unwrap().file_type().is_socket());
    // Nobody listens: connecting is refused, and a plain bind fails.
    let err = UnixStream::connect(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let err = UnixListener::bind(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    // The server takes the lock, removes the stale file, and binds.
    let (server, again) = start(bin!("unix-server"), &[&path, "--count", "1"]);
    assert_eq!(again, path);
    assert_eq!(ask(&path, "back"), "server got: [back]\n");
    assert!(server.finish().status.success());
    assert!(!Path::new(&path).exists());
}

/// A stale socket the server may not remove (root's, in a sticky
/// directory, the server run as `nobody`): the one line of error names
/// the file and what failed, not just "Operation not permitted".
#[test]
fn unix_server_names_a_stale_socket_it_cannot_remove() {
    if !can_switch_users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let sticky = dir.path().join("sticky");
    fs::create_dir(&sticky).unwrap();
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    let path = sticky.join("s.sock");
    drop(UnixListener::bind(&path).unwrap());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    let path = path.to_str().unwrap();
    let mut args = AS_NOBODY[1..].to_vec();
    args.extend(["--", bin!("unix-server"), path]);
    let out = run(AS_NOBODY[0], &args);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "unix-server: cannot remove the stale socket {path}: \
             Operation not permitted (os error 1)\n"
        )
    );
}

#[test]
fn a_second_server_on_the_same_path_is_refused_and_the_first_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "server.sock");
    let (first, _) = start(bin!("unix-server"), &[&path, "--count", "1"]);
    assert_rejects(
        bin!("unix-server"),
        &[&path],
        &format!("another server is using {path}"),
    );
    assert_eq!(ask(&path, "still mine"), "server got: [still mine]\n");
    assert!(first.finish().status.success());
}

#[test]
fn unix_server_leaves_alone_a_live_socket_of_a_program_that_takes_no_lock() {
    socket_file::leaves_alone_a_live_socket_of_a_program_that_takes_no_lock(
        bin!("unix-server"),
        &[],
    );
}

#[test]
fn unix_server_takes_a_bound_socket_that_does_not_listen_for_stale() {
    use std::os::unix::fs::MetadataExt;
    // Linux 6.18. unix_stream_connect() refuses a stream socket in any
    // state but listening: a live socket between its program's `bind` and
    // `listen` answers the probe as a stale file does, and loses its file.
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "server.sock");
    let bound = bound_stream_socket(&path);
    let inode = fs::metadata(&path).unwrap().ino();
    let (server, _) = start(bin!("unix-server"), &[&path, "--count", "1"]);
    assert_ne!(fs::metadata(&path).unwrap().ino(), inode);
    assert_eq!(ask(&path, "mine now"), "server got: [mine now]\n");
    assert!(server.finish().status.success());
    drop(bound);
}

#[test]
fn another_user_cannot_open_the_lock_file_and_keep_the_server_out() {
    socket_file::keeps_its_lock_file_from_other_users(bin!("unix-server"), &[]);
}

#[test]
fn unix_server_will_not_lock_a_file_of_another_user_or_a_symlink() {
    socket_file::will_not_lock_a_file_of_another_user_or_a_symlink(
        bin!("unix-server"),
        &[],
    );
}

#[test]
fn unix_server_will_not_lock_a_hard_link_or_a_fifo() {
    socket_file::will_not_lock_a_hard_link_or_a_fifo(bin!("unix-server"), &[]);
}

#[test]
fn std_binds_a_path_of_107_bytes_and_refuses_108() {
    // Linux: sun_path is 108 bytes, and std keeps one for the NUL.
    let dir = tempfile::tempdir().unwrap();
    let named = |len: usize| {
        let base = dir.path().as_os_str().len() + 1;
        dir.path().join("x".repeat(len - base))
    };
    let longest = named(107);
    assert_eq!(longest.as_os_str().len(), 107);
    assert!(UnixListener::bind(&longest).is_ok());
    let err = UnixListener::bind(named(108)).unwrap_err();
    assert!(err.to_string().contains("shorter than SUN_LEN"), "{err}");
}

#[test]
fn unix_server_will_not_remove_a_file_that_is_not_a_socket() {
    socket_file::will_not_remove_a_file_that_is_not_a_socket(
        bin!("unix-server"),
        &[],
    );
}

/// A path as `str::escape_debug` shows it: a newline as `\n`.
fn escaped(path: &str) -> String {
    path.replace('\n', "\\n")
}

/// A socket path holding a newline (any byte but `/` and NUL may be in a
/// Linux file name), or an abstract name holding one, is shown escaped in
/// one line: in the ready line, and in an error on stderr.
#[test]
fn unix_server_shows_a_path_with_a_newline_escaped_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "socket\nfake line");
    let shown = regex::escape(&escaped(&path));
    let mut server =
        Listing::start(bin!("unix-server"), &[&path, "--count", "1"]);
    server.expect(&format!("Server listening on {shown}"));
    assert_eq!(ask(&path, "hi"), "server got: [hi]\n");
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 2, "{:?}", out.stdout);
    // A file that is not a socket, refused in one line.
    let file = path_in(&dir, "precious\nfake line");
    fs::write(&file, "keep me").unwrap();
    let why = format!("{} exists and is not a socket", escaped(&file));
    assert_rejects(bin!("unix-server"), &[&file], &why);
    // An abstract name says nothing of files, but is the user's text too.
    let name = format!("{}\nfake line", abstract_name("newline"));
    let mut server =
        Listing::start(bin!("unix-server"), &[&name, "--count", "1"]);
    server.expect(&format!(
        "Server listening on {}",
        regex::escape(&escaped(&name))
    ));
    assert_eq!(ask_abstract(&name[1..], "hi"), "server got: [hi]\n");
    assert!(server.finish().status.success());
}

/// As `unix-server`: the socket's path, FILE, and a path `fetch` cannot
/// reach, each holding a newline, are each shown escaped in one line.
#[test]
fn pass_fd_shows_paths_with_a_newline_escaped_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "pass\nfake line.sock");
    let file = path_in(&dir, "shared\nfake line");
    fs::write(&file, "passed\n").unwrap();
    let args = ["serve", &path, &file, "--count", "1"];
    let (server, address) = start(bin!("unix-pass-fd"), &args);
    assert_eq!(address, escaped(&path));
    let out = run(bin!("unix-pass-fd"), &["fetch", &path]);
    assert_eq!(out.stdout, ["passed"], "{}", out.stderr);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    // `fetch` connected: its pid, which the test cannot know beforehand.
    let file_shown = regex::escape(&escaped(&file));
    let sent = format!(r"^pid \d+ \(uid {}\): sent {file_shown}$", uid());
    assert_eq!(out.stdout.len(), 2, "{:?}", out.stdout);
    let sent = regex::Regex::new(&sent).unwrap();
    assert!(sent.is_match(&out.stdout[1]), "{:?}", out.stdout);
    let missing = path_in(&dir, "no\nsuch file");
    let why = format!("{}: No such file", escaped(&missing));
    assert_rejects(bin!("unix-pass-fd"), &["fetch", &missing], &why);
    let args = ["serve", &path, &missing];
    assert_rejects(bin!("unix-pass-fd"), &args, &why);
}

/// A Linux file name is bytes: both listings take a socket path (and
/// 16-3 a FILE) that is not UTF-8, serve on it, and show it as `Path`'s
/// `display` does, escaped. An abstract name may be any bytes too.
#[test]
fn unix_listings_take_paths_that_are_not_utf_8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &[u8]| dir.path().join(std::ffi::OsStr::from_bytes(name));
    let shown = |path: &std::path::Path| {
        path.display().to_string().escape_debug().to_string()
    };
    let path = at(b"server\xff.sock");
    let mut command = std::process::Command::new(bin!("unix-server"));
    command.arg(&path).args(["--count", "1"]);
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    assert_eq!(
        server.next_line(),
        format!("Server listening on {}", shown(&path))
    );
    let mut sock = UnixStream::connect(&path).expect("connect");
    sock.write_all(b"hello\n").unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server got: [hello]\n");
    assert!(server.finish().status.success());
    let mut command = std::process::Command::new(bin!("unix-server"));
    command
        .arg(std::ffi::OsStr::from_bytes(b"@book\xff"))
        .args(["--count", "0"]);
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    assert_eq!(server.next_line(), "Server listening on @book\u{fffd}");
    drop(server);
    let (path, file) = (at(b"pass\xff.sock"), at(b"shared\xfe"));
    fs::write(&file, "passed\n").unwrap();
    let mut command = std::process::Command::new(bin!("unix-pass-fd"));
    command
        .arg("serve")
        .arg(&path)
        .arg(&file)
        .args(["--count", "1"]);
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    assert_eq!(
        server.next_line(),
        format!("Server listening on {}", shown(&path))
    );
    let mut command = std::process::Command::new(bin!("unix-pass-fd"));
    command.arg("fetch").arg(&path);
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert_eq!(out.stdout, ["passed"], "{}", out.stderr);
    assert!(server.finish().status.success());
}

#[test]
fn unix_server_makes_no_lock_file_for_a_path_that_names_no_socket() {
    socket_file::makes_no_lock_file_for_a_path_that_names_no_socket(
        bin!("unix-server"),
        &[],
    );
}

#[test]
fn nobody_can_take_the_name_of_the_private_directory_first() {
    // Linux 6.18. The server runs twice as PID 1 of a new PID namespace,
    // with the same TMPDIR: everything another user could predict is the
    // same in both runs, the pid too. A name built from those would be
    // the same twice, and could be made first; mkdtemp's random names
    // differ (the same six characters twice: once in 62^6 runs).
    if !have("unshare") {
        return;
    }
    let probe = run("unshare", &["--map-root-user", "--pid", "--fork", "true"]);
    if !probe.status.success() {
        assert!(std::env::var_os("CI").is_none(), "{}", probe.stderr);
        eprintln!("skipped: no PID namespace here: {}", probe.stderr);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for _ in 0..2 {
        let mut command = std::process::Command::new("unshare");
        command
            .args(["--map-root-user", "--pid", "--fork", bin!("unix-server")])
            .args(["--count", "0"])
            .env("TMPDIR", tmp.path());
        let out =
            Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
        assert!(out.status.success(), "{}", out.stderr);
        let shown = out.stdout[0].strip_prefix("Server listening on ").unwrap();
        let dir = Path::new(shown).parent().unwrap().to_path_buf();
        assert_eq!(dir.parent(), Some(tmp.path()));
        assert!(!dir.exists(), "{} is still there", dir.display());
        names.push(dir);
    }
    assert_ne!(names[0], names[1], "the same name for the same pid");
}

/// Where the book's sessions put their files, as a reader types them. The
/// tests run in a temporary directory of their own, and show it as this.
const SHOWN_DIR: &str = "/tmp";

/// `text` with the test's temporary directory shown as [`SHOWN_DIR`].
fn as_shown(text: &str, dir: &TempDir) -> String {
    text.replace(dir.path().to_str().unwrap(), SHOWN_DIR)
}

#[test]
fn stale_socket_session_matches_the_book() {
    if !have("nc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "demo.sock");
    let (server, _) = start(bin!("unix-server"), &[&path]);
    let first = server.transcript();
    // The server prints no pid: the reader names it by `pgrep -n`, the
    // newest process of that name; the test, which may share the machine
    // with other servers of that name, by its own.
    let mut terminal2 = Vec::new();
    for (command, shown) in [
        (
            format!("kill -KILL {}", server.pid()),
            r#"kill -KILL $(pgrep -n -x -u "$(id -u)" unix-server)"#
                .to_string(),
        ),
        (format!("ls -l {path}"), format!("ls -l {path}")),
        (
            format!("nc -U -N {path} < /dev/null"),
            format!("nc -U -N {path} < /dev/null"),
        ),
    ] {
        let out = Listing::start("bash", &["-c", &command]).finish();
        // nc fails, and says why on stderr, as a terminal shows it.
        let mut shows: Vec<_> =
            out.stdout.iter().map(|l| as_shown(l, &dir)).collect();
        shows.extend(out.stderr.lines().map(|l| as_shown(l, &dir)));
        terminal2.push((as_shown(&shown, &dir), shows));
    }
    // Terminal 1's shell reports how its job ended, as bash words a
    // death by SIGKILL.
    assert_eq!(server.finish().status.signal(), Some(9));
    let mut first = first;
    first.push("Killed".to_string());
    let args = [path.as_str()];
    let (again, _) = start(bin!("unix-server"), &args);
    let second = again.transcript();
    // Ctrl-C, as the book stops it: the server removes its socket, and
    // the lock file stays for the reader to remove, as the text says.
    again.signal(Signal::SIGINT);
    assert_died_of(&again.finish(), Signal::SIGINT);
    assert!(!Path::new(&path).exists(), "{path} is left behind");
    let lock = format!("{path}.lock");
    assert!(Path::new(&lock).exists(), "{lock} is gone");
    let shown = |lines: &[String]| -> Vec<String> {
        lines.iter().map(|l| as_shown(l, &dir)).collect()
    };
    // Terminal 1's two runs are shown apart, with Terminal 2's commands
    // between them, in the order a reader types them: a server started
    // again before Terminal 2's `nc` would accept its connection.
    assert_session_matches_book(
        "ch16-unix/16-01-stale-server.out",
        &[(
            as_shown(&cargo_run("unix-server", &[&path]), &dir),
            &shown(&first),
        )],
    );
    let terminal2: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch16-unix/16-01-stale-client.out", &terminal2);
    assert_session_matches_book(
        "ch16-unix/16-01-stale-again.out",
        &[(
            as_shown(&cargo_run("unix-server", &args), &dir),
            &shown(&second),
        )],
    );
}

/// `SO_PEERCRED` carries one group, the client's effective one, and not
/// the groups it is a member of besides: a client run as `nobody`, with
/// `nogroup` its group and `users` (gid 100) a supplementary group, shows
/// `nogroup` there, and `users` only in `SO_PEERGROUPS` (Linux 4.13; the
/// test expects Linux 6.18).
#[test]
fn so_peercred_gives_the_clients_group_and_so_peergroups_its_others() {
    use nix::sys::socket::{getsockopt, sockopt};
    use std::os::fd::AsRawFd;
    // The system's Python: `nobody` may not run one under `/root`.
    let python = "/usr/bin/python3";
    if !can_switch_users() || !Path::new(python).exists() {
        return;
    }
    let dir = open_dir();
    let path = path_in(&dir, "groups.sock");
    let listener = UnixListener::bind(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    let connect = "import socket, sys\n\
                   s = socket.socket(socket.AF_UNIX)\n\
                   s.connect(sys.argv[1])\n\
                   s.recv(1)\n";
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--groups=100"])
        .args([python, "-c", connect, &path]);
    let client = Listing::spawn(&mut command, std::process::Stdio::piped());
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    wait_until("the client to connect", || {
        accepted = listener.accept().ok();
        accepted.is_some() || is_dead(client.pid())
    });
    let Some((conn, _)) = accepted else {
        panic!("the client did not connect: {}", client.finish().stderr);
    };
    conn.set_nonblocking(false).unwrap();
    let cred = getsockopt(&conn, sockopt::PeerCredentials).unwrap();
    assert_eq!((cred.uid(), cred.gid()), (65534, 65534), "nobody, nogroup");
    let mut groups = [0 as nix::libc::gid_t; 16];
    let mut len = std::mem::size_of_val(&groups) as nix::libc::socklen_t;
    // SAFETY: the buffer and its length are valid for the call, which
    // writes at most `len` bytes and sets `len` to what it wrote.
    let done = unsafe {
        nix::libc::getsockopt(
            conn.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
    let count = len as usize / size_of::<nix::libc::gid_t>();
    assert_eq!(groups[..count], [100], "users only");
    drop(conn);
    let out = client.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn only_its_owner_can_reach_a_socket_in_a_private_directory() {
    if !can_switch_users() || !have("nc") {
        return;
    }
    // A TMPDIR that anyone may enter: what stops `nobody` must be the
    // private directory itself.
    let tmp = open_dir();
    let (server, path) = start_private(&tmp, &[]);
    // And a socket file anyone may write to, which alone would let
    // `nobody` in (the next test): only the directory is left to refuse.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    let mut command = AS_NOBODY.to_vec();
    command.extend(["nc", "-U", "-N", &path]);
    let out = run(command[0], &command[1..]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    // Root, whom file permissions never stop (CAP_DAC_OVERRIDE), gets in.
    let script = format!("printf root | nc -U -N {path}");
    let out = run("sh", &["-c", &script]);
    assert_eq!(out.stdout, ["server got: [root]"], "{}", out.stderr);
    drop(server);
}

#[test]
fn connecting_needs_write_permission_on_the_socket_file() {
    // Linux 6.18: unix_find_bsd() asks for MAY_WRITE on the socket file.
    if !can_switch_users() || !have("nc") {
        return;
    }
    // A directory anyone may enter, and the socket file as the umask
    // made it, rwxr-xr-x: others may not write, so they may not connect.
    let dir = open_dir();
    let path = path_in(&dir, "server.sock");
    let (server, _) = start(bin!("unix-server"), &[&path]);
    let mut command = AS_NOBODY.to_vec();
    command.extend(["nc", "-U", "-N", &path]);
    let out = run(command[0], &command[1..]);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    // Once others may write, they may connect.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    let script =
        format!("printf nobody | {} nc -U -N {path}", AS_NOBODY.join(" "));
    let out = run("sh", &["-c", &script]);
    assert_eq!(out.stdout, ["server got: [nobody]"], "{}", out.stderr);
    drop(server);
}

/// A name in the abstract namespace that no other test uses.
fn abstract_name(what: &str) -> String {
    format!("@book-{what}-{}", std::process::id())
}

#[test]
fn an_abstract_socket_has_no_file_and_answers_netcat_and_python() {
    let name = abstract_name("abstract");
    let (server, shown) = start(bin!("unix-server"), &[&name, "--count", "2"]);
    assert_eq!(shown, name);
    if have("nc") {
        let out = run("sh", &["-c", &format!("printf nc | nc -U -N {name}")]);
        assert_eq!(out.stdout, ["server got: [nc]"], "{}", out.stderr);
    } else {
        assert_eq!(ask_abstract(&name[1..], "nc"), "server got: [nc]\n");
    }
    if have("python3") {
        // In Python, and in C, an abstract name starts with a zero byte.
        let script = format!(
            "import socket\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.connect('\\0{}')\n\
             s.sendall(b'py\\n')\n\
             s.shutdown(socket.SHUT_WR)\n\
             print(s.recv(100).decode().strip())",
            &name[1..]
        );
        let out = run("python3", &["-c", &script]);
        assert_eq!(out.stdout, ["server got: [py]"], "{}", out.stderr);
    } else {
        assert_eq!(ask_abstract(&name[1..], "py"), "server got: [py]\n");
    }
    assert!(server.finish().status.success());
}

fn ask_abstract(name: &str, line: &str) -> String {
    use std::os::linux::net::SocketAddrExt;
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    let mut sock = UnixStream::connect_addr(&addr).unwrap();
    sock.write_all(format!("{line}\n").as_bytes()).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn a_unix_socket_closed_with_unread_bytes_resets_its_peer_after_the_data() {
    // Linux 6.18: unix_release_sock() sets ECONNRESET on the peer of a
    // socket closed with bytes in its receive queue.
    // Like TCP: the reply arrives, then an error instead of the end.
    let (mut client, mut server) = UnixStream::pair().unwrap();
    client.write_all(b"request").unwrap();
    server.write_all(b"reply").unwrap();
    drop(server); // `request` was never read
    let mut reply = [0; 5];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"reply");
    let after = client.read(&mut [0; 16]).unwrap_err();
    assert_eq!(after.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn unix_server_refuses_a_client_over_the_limit_and_the_client_reads_why() {
    // A stalled request makes room for a new client once it has waited a
    // second (Listing 14-2's grace): a run that took that long, on a
    // loaded machine, shows an eviction, not a refusal, and is tried
    // again. One that took less cannot have evicted: the server marked
    // the request after `began`, and took the new client before its
    // reply came.
    for _ in 0..5 {
        let began = std::time::Instant::now();
        let reply = a_client_over_the_limit_of_one();
        if reply == "error: server busy\n" {
            return;
        }
        let took = began.elapsed();
        assert!(took >= Duration::from_secs(1), "{reply:?} after {took:?}");
    }
    panic!("five tries each took the second of grace or longer");
}

/// What a client reads from a server with room for one connection, whose
/// one client has sent half a request, when it sends 10,000 bytes before
/// the server (stopped meanwhile) accepts it.
fn a_client_over_the_limit_of_one() -> String {
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start_private(&tmp, &["--max-conns", "1"]);
    // Not idle, so that it is not closed to make room for the next.
    let mut first = UnixStream::connect(&path).unwrap();
    first.write_all(b"half a li").unwrap();
    // The request is waiting before the server accepts the connection:
    // stopped, it cannot accept meanwhile. Every thread must have
    // stopped: one that has not taken the stop yet may still accept.
    server.signal(Signal::SIGSTOP);
    let pid = server.pid();
    wait_until("the server to stop", || {
        crate::support::all_threads_stopped(pid)
    });
    // More than one read of the server's: it reads until nothing is left.
    let mut second = UnixStream::connect(&path).unwrap();
    second.write_all(&[b'x'; 10_000]).unwrap();
    server.signal(Signal::SIGCONT);
    second
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server read it before it refused, so the refusal ends with the
    // end of the stream, not with ECONNRESET.
    let mut reply = String::new();
    second.read_to_string(&mut reply).unwrap();
    drop((first, server));
    reply
}

// Listing 14-2's promises, which Listing 16-1 keeps on a Unix socket.

/// Chapter 16 shows none of 16-1's serving half: it sends the reader to
/// Chapter 14, and to the whole file, "under the names it has in Listing
/// 14-2". Each name the chapter gives is defined in both files, and
/// Chapter 14, which it says explains each piece, names it too.
#[test]
fn unix_server_serves_with_the_pieces_chapter_16_names_from_listing_14_2() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| fs::read_to_string(root.join(path)).unwrap();
    let chapter = read("../src/ch16-unix.md");
    let explained = read("../src/ch14-servers.md");
    let fixed = read("ch14-servers/14-02-tcp-threads.rs");
    let unix = read("ch16-unix/16-01-unix-server.rs");
    for name in [
        "Conns",
        "Slot",
        "answer",
        "Deadline",
        "write_all_by",
        "read_line",
        "close_gently",
        "AcceptLog",
        "Backoff",
        "raise_fd_limit",
        "default_max_conns",
        "inherited_fds",
    ] {
        assert!(chapter.contains(&format!("`{name}`")), "ch16 names {name}");
        assert!(
            explained.contains(&format!("`{name}`")),
            "ch14 names {name}"
        );
        let defined =
            regex::Regex::new(&format!(r"(?m)^(fn|struct) {name}\b")).unwrap();
        assert!(defined.is_match(&fixed), "14-2 defines {name}");
        assert!(defined.is_match(&unix), "16-1 defines {name}");
    }
}

/// Sends `pieces` on one connection to the server at `path`, then
/// half-closes, and returns the replies.
fn ask_in_pieces(path: &str, pieces: &[&[u8]]) -> String {
    let mut sock = UnixStream::connect(path).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for piece in pieces {
        sock.write_all(piece).unwrap();
    }
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    reply
}

/// Whether a Unix socket at `path` is listening (/proc/net/unix: the flag
/// `__SO_ACCEPTCON`, 00010000, in the fourth column).
fn listening_at(path: &str) -> bool {
    let table = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table.lines().any(|line| {
        let fields: Vec<_> = line.split_whitespace().collect();
        fields.get(3) == Some(&"00010000") && fields.get(7) == Some(&path)
    })
}

/// At `--count`, the server closes its listening socket before it waits
/// for its last clients: a new client is refused at once, rather than
/// taken into the backlog by the kernel, kept waiting up to the last
/// client's deadline, and then reset (Linux 6.18).
#[test]
fn unix_server_stops_listening_once_its_count_is_reached() {
    let tmp = TempDir::new().unwrap();
    let (server, path) =
        start_private(&tmp, &["--count", "1", "--timeout", "60"]);
    // The one client the count allows; it says nothing for now.
    let mut last = UnixStream::connect(&path).unwrap();
    wait_until("the server to close its listening socket", || {
        !listening_at(&path)
    });
    let refused = UnixStream::connect(&path).expect_err("a client too many");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    // The last client is still served, and then the server ends.
    last.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    last.write_all(b"bye\n").unwrap();
    last.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    last.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server got: [bye]\n");
    let out = server.finish();
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
}

#[test]
fn unix_server_answers_lines_cut_anywhere_and_a_last_one_without_newline() {
    let tmp = TempDir::new().unwrap();
    let (server, path) = start_private(&tmp, &["--count", "1"]);
    let pieces = [&b"on"[..], b"e\ntw", b"o\n\nthr", b"ee"];
    assert_eq!(
        ask_in_pieces(&path, &pieces),
        "server got: [one]\nserver got: [two]\nserver got: []\n\
         server got: [three]\n"
    );
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout[1].ends_with(": answered 4 lines"),
        "{:?}",
        out.stdout
    );
}

#[test]
fn unix_server_answers_lines_of_the_longest_length() {
    let tmp = TempDir::new().unwrap();
    let (server, path) = start_private(&tmp, &["--count", "1"]);
    let (a, b) = ("a".repeat(1024), "b".repeat(1024));
    let request = format!("{a}\n{b}");
    assert_eq!(
        ask_in_pieces(&path, &[request.as_bytes()]),
        format!("server got: [{a}]\nserver got: [{b}]\n")
    );
    assert!(server.finish().status.success());
}

#[test]
fn unix_server_drops_a_client_that_trickles_its_request() {
    // One byte every 200 ms: each read comes well within a second; the
    // deadline for the whole request (one second here) ends it.
    let tmp = TempDir::new().unwrap();
    let (server, path) =
        start_private(&tmp, &["--timeout", "1", "--count", "1"]);
    let started = std::time::Instant::now();
    let mut trickle = UnixStream::connect(&path).unwrap();
    let mut dropped = false;
    while started.elapsed() < Duration::from_secs(20) {
        if trickle.write_all(b"x").is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200)); // The pace.
    }
    assert!(dropped, "still connected after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(1));
    let out = server.finish();
    assert!(out.stderr.contains(": timed out"), "{}", out.stderr);
}

#[test]
fn unix_server_drops_a_client_that_does_not_read_its_replies() {
    // Requests and never a read: once the socket's buffer is full, the
    // server's write waits, until the reply's deadline (one second here)
    // drops the client; another is served meanwhile.
    let tmp = TempDir::new().unwrap();
    let (server, path) =
        start_private(&tmp, &["--timeout", "1", "--count", "2"]);
    let mut slow = UnixStream::connect(&path).unwrap();
    let writer = std::thread::spawn(move || {
        let request = b"are you there?\n".repeat(1000);
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if slow.write_all(&request).is_err() {
                return true;
            }
        }
        false
    });
    assert_eq!(ask(&path, "fast\n"), "server got: [fast]\n");
    assert!(writer.join().unwrap(), "the slow reader was dropped");
    let out = server.finish();
    assert!(out.stderr.contains(": timed out"), "{}", out.stderr);
}

#[test]
fn unix_server_makes_room_with_the_idle_client_first_counting_from_its_last_reply()
 {
    // Three places: a client idle since its reply, the oldest; one that
    // stalls in the middle of a request; one idle since it connected.
    // Each new client, once all three are past the grace of a second,
    // closes an idle one, the longest idle first, before the stalled one.
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start_private(&tmp, &["--max-conns", "3"]);
    let mut replied = UnixStream::connect(&path).unwrap();
    replied
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    replied.write_all(b"hello\n").unwrap();
    let mut reply = [0; 20];
    replied.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"server got: [hello]\n");
    // The order is the test: each is idle or stalled since a later time.
    std::thread::sleep(Duration::from_millis(300));
    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled.write_all(b"hal").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let silent = UnixStream::connect(&path).unwrap();
    // Past the grace for all three.
    std::thread::sleep(Duration::from_millis(1100));
    let open = |sock: &UnixStream| {
        let mut sock = sock;
        sock.set_nonblocking(true).unwrap();
        let read = sock.read(&mut [0; 64]);
        sock.set_nonblocking(false).unwrap();
        matches!(read, Err(ref e) if e.kind() == ErrorKind::WouldBlock)
    };
    let states = || [open(&replied), open(&stalled), open(&silent)];
    // A new client that stays, taking the place it was given.
    let newcomer = |line: &str| {
        let mut sock = UnixStream::connect(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        sock.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut reply = vec![0; 15 + line.len()];
        sock.read_exact(&mut reply).unwrap();
        assert_eq!(reply, format!("server got: [{line}]\n").as_bytes());
        sock
    };
    let first = newcomer("one");
    wait_until("a client to be closed", || states() != [true; 3]);
    assert_eq!(states(), [false, true, true], "replied, stalled, silent");
    let second = newcomer("two");
    wait_until("another client to be closed", || {
        states() != [false, true, true]
    });
    assert_eq!(states(), [false, true, false], "replied, stalled, silent");
    drop((first, second, server));
}

#[test]
fn unix_server_lets_go_at_once_of_a_client_that_left_before_its_reply() {
    // The client sends a request and closes before the server has read
    // it (stopped meanwhile): writing the reply fails with EPIPE, and the
    // server logs that and moves on, rather than trying again until the
    // reply's ten-second deadline.
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start_private(&tmp, &["--count", "1"]);
    let pid = server.pid();
    server.signal(Signal::SIGSTOP);
    wait_until("the server to stop", || {
        crate::support::all_threads_stopped(pid)
    });
    let mut gone = UnixStream::connect(&path).unwrap();
    gone.write_all(b"hello\n").unwrap();
    drop(gone);
    server.signal(Signal::SIGCONT);
    let started = std::time::Instant::now();
    let out = server.finish();
    let took = started.elapsed();
    assert!(out.stderr.contains("Broken pipe"), "{}", out.stderr);
    assert!(took < Duration::from_secs(5), "ended after {took:?}");
}

/// Starts `unix-server ARGS` in `tmp` under `ulimit` settings (`limits`,
/// such as `-n 16`), its stderr merged into stdout, as a terminal shows.
fn start_private_limited(
    tmp: &TempDir,
    limits: &str,
    args: &[&str],
) -> (Listing, String) {
    let script = format!("ulimit {limits} && exec \"$0\" \"$@\" 2>&1");
    let mut command = std::process::Command::new("bash");
    command
        .args(["-c", &script, bin!("unix-server")])
        .args(args)
        .env("TMPDIR", tmp.path());
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let address = server.expect(r"Server listening on (.+)").remove(1);
    (server, address)
}

#[test]
fn unix_server_keeps_its_default_limit_below_the_descriptors() {
    // A hundred idle clients under `ulimit -n 64`; once they have been
    // idle a second, a new client is served: the table, not `accept`,
    // says no at the limit, and makes room.
    use crate::support::open_fds;
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) =
        start_private_limited(&tmp, "-n 64", &["--timeout", "600"]);
    let pid = server.pid();
    let idle: Vec<_> = (0..100)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    wait_until("the server to hold forty idle clients", || {
        open_fds(pid) >= 3 + 1 + 40
    });
    // Not a synchronisation: the time a connection must have been idle.
    std::thread::sleep(Duration::from_millis(1100));
    let started = std::time::Instant::now();
    assert_eq!(ask(&path, "new\n"), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop((server, idle));
}

/// unix-server at the abstract address `@<prefix>-<our pid>`, its log
/// (stdout) the pipe of `read` and `write`, once it has said it listens
/// there: the server, the address's name, and the reading end.
fn logging_to_a_pipe(
    prefix: &str,
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
) -> (Listing, String, std::io::BufReader<fs::File>) {
    use std::io::BufRead;
    let name = format!("{prefix}-{}", std::process::id());
    let mut command = std::process::Command::new(bin!("unix-server"));
    command.arg(format!("@{name}"));
    let server = Listing::spawn(&mut command, std::process::Stdio::from(write));
    drop(command); // our copy of the pipe's writing end
    let mut log = std::io::BufReader::new(fs::File::from(read));
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert_eq!(line, format!("Server listening on @{name}\n"));
    (server, name, log)
}

#[test]
fn unix_server_ends_at_the_next_connection_once_nobody_reads_its_log() {
    // The server's log goes into a pipe whose reader reads the first line
    // and goes, as `head -1` would. The first client's log line then fails
    // with EPIPE, and the server ends when the next client comes, as
    // Listing 14-2 does.
    use std::os::linux::net::SocketAddrExt;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (server, name, log) = logging_to_a_pipe("unix-server-log", read, write);
    drop(log); // nobody reads the log any more
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let mut first = UnixStream::connect_addr(&addr).unwrap();
    first.write_all(b"one\n").unwrap();
    first.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    first.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server got: [one]\n");
    // Its connection ends before its log line is tried, and the line
    // fails with EPIPE a moment later; the server ends at the next client
    // after that. Another test's child may also hold the pipe's reading
    // end for a moment, between its fork and its exec, and let a line
    // through. So clients come until it has ended. Each is served, or
    // refused by a socket already closed: one accepted only to be dropped,
    // its request unread, would get a reset instead of its reply. Each
    // comes once the server waits in `accept`, or has ended: one that came
    // just before the listener's close would wait in the backlog, and be
    // reset by that close.
    let pid = server.pid();
    wait_until("the server to end once nobody reads its log", || {
        wait_until("the server to accept, or to end", || {
            crate::support::threads_blocked_in(pid, nix::libc::SYS_accept4) == 1
                || is_dead(pid)
        });
        match UnixStream::connect_addr(&addr) {
            Ok(mut next) => {
                next.write_all(b"more\n").unwrap();
                next.shutdown(Shutdown::Write).unwrap();
                let mut reply = String::new();
                let read = next.read_to_string(&mut reply);
                assert_eq!(
                    (read.map_err(|e| e.kind()), reply.as_str()),
                    (Ok(19), "server got: [more]\n"),
                    "a client after the log was gone"
                );
            }
            Err(err) => assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "a client after the log was gone: {err}"
            ),
        }
        is_dead(pid)
    });
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn unix_server_ends_a_connection_before_its_log_line_can_wait() {
    // The server's log goes into a pipe that is full and that nobody
    // reads, as when the terminal is paused: a log line waits. The client
    // that had its reply still sees the end of the stream at once.
    use std::os::fd::AsRawFd;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let filler = write.try_clone().unwrap();
    let (server, name, log) =
        logging_to_a_pipe("unix-server-full-log", read, write);
    // Fill the pipe through an open file of its own: O_NONBLOCK on a copy
    // of the server's would make its writes fail instead of wait.
    let mut full = fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", filler.as_raw_fd()))
        .unwrap();
    drop(filler);
    while full.write(&[b'.'; 4096]).is_ok() {}
    drop(full);
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let mut client = UnixStream::connect_addr(&addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"one\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    let read = client.read_to_string(&mut reply);
    assert!(
        read.is_ok(),
        "no end of the stream after {reply:?} while the log waits: {read:?}"
    );
    assert_eq!(reply, "server got: [one]\n");
    drop((server, log));
}

#[test]
fn unix_server_keeps_the_places_of_threads_that_wait_for_the_log() {
    // Listing 14-2's table, on a Unix socket: with the log a full pipe
    // that nobody reads, a thread that waits to log keeps its place until
    // it ends, evicted or not, and `--max-conns` still bounds the threads.
    // (The table gave a waiting thread's place away: each new client, a
    // second apart, started one more thread.)
    use std::os::linux::net::SocketAddrExt;
    use std::thread;
    let name = abstract_name("full-log-places");
    let args = [name.as_str(), "--max-conns", "2"];
    let (server, shown, _log) =
        crate::line_server::start_with_full_log(bin!("unix-server"), &args);
    assert_eq!(shown, name);
    let pid = server.pid();
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(&name[1..]).unwrap();
    let connect = || {
        let sock = UnixStream::connect_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        sock
    };
    // A server that refuses us may close before our request comes, or
    // with it unread: the write fails, or the read after its answer fails
    // with ECONNRESET. What it said is still ours to read.
    let ask = |line: &str| {
        let mut sock = connect();
        let _ = sock.write_all(format!("{line}\n").as_bytes());
        let _ = sock.shutdown(Shutdown::Write);
        let mut reply = Vec::new();
        let read = sock.read_to_end(&mut reply);
        assert!(read.is_ok() || !reply.is_empty(), "{read:?}");
        String::from_utf8(reply).unwrap()
    };
    // One thread waits in `write`, any other for the lock on stdout; the
    // thread that writes the accepting thread's lines waits for one, in
    // `futex` too.
    let waiting_for_the_log = || {
        (threads_blocked_in(pid, nix::libc::SYS_write)
            + threads_blocked_in(pid, nix::libc::SYS_futex))
        .saturating_sub(1)
    };
    assert_eq!(ask("one"), "server got: [one]\n");
    let mut silent = connect();
    wait_until("a thread to wait for the log", || {
        waiting_for_the_log() == 1
    });
    thread::sleep(Duration::from_millis(1100)); // The grace is the test.
    assert_eq!(ask("two"), "error: server busy\n");
    assert_eq!(silent.read_to_end(&mut Vec::new()).unwrap(), 0, "closed");
    wait_until("two threads to wait for the log", || {
        waiting_for_the_log() == 2
    });
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(ask("three"), "error: server busy\n");
    // Before the clients: the main thread, the signals' thread and the
    // accepting thread's log.
    assert_eq!(threads_of(pid), 5);
}

#[test]
fn unix_server_raises_its_soft_limit_on_descriptors_to_the_hard_one() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = "-S -n 64 && ulimit -H -n 4096";
    let (server, _) = start_private_limited(&tmp, limits, &[]);
    let limits =
        fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let open_files: Vec<u64> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(open_files, [4096, 4096], "{limits}");
}

#[test]
fn unix_server_backs_off_and_logs_once_when_descriptors_run_out() {
    use crate::support::cpu_time;
    let tmp = tempfile::tempdir().unwrap();
    // The silent clients must outlive the test: with the default ten
    // seconds, a loaded machine saw one time out and log a line.
    let args = ["--max-conns", "100", "--timeout", "600"];
    let (mut server, path) = start_private_limited(&tmp, "-n 16", &args);
    let pid = server.pid();
    // Silent clients until the server has no descriptor left.
    let silent = silent_clients_until(&mut server, &path, 16);
    // One more waits in the queue; the server fails to accept it, and
    // keeps failing, without spinning and without a line per failure.
    let waiting = UnixStream::connect(&path).unwrap();
    let failed = server.next_line();
    assert!(
        failed.starts_with("unix-server: accept: Too many open files"),
        "{failed}"
    );
    let cpu = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time(pid) - cpu;
    assert!(used < Duration::from_millis(300), "{used:?} of CPU");
    assert!(
        server.no_line_within(Duration::from_millis(100)),
        "a line per failure: {:?}",
        server.transcript()
    );
    drop((silent, waiting));
}

#[test]
fn unix_server_accepts_on_while_its_error_log_is_stuck() {
    // Linux 6.18. Stderr is a full pipe that nobody reads; stdout is read.
    // Under `ulimit -n 16`, silent clients take every descriptor, and one
    // more waits in the queue: `accept` fails, and the backoff logs it, on
    // stderr, where the line waits. When the silent clients leave, their
    // threads log on stdout and end, and the client in the queue must be
    // served. (Written by the accepting thread itself, the line stopped
    // that thread in `write` for as long as the log did not move, and the
    // client waited for ever.)
    let tmp = tempfile::tempdir().unwrap();
    let (log, stderr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    crate::line_server::fill_pipe(&stderr);
    let script = "ulimit -n 16 && exec \"$0\" \"$@\"";
    let mut command = std::process::Command::new("bash");
    command
        .args(["-c", script, bin!("unix-server")])
        .args(["--max-conns", "100", "--timeout", "600"])
        .env("TMPDIR", tmp.path());
    let mut server = Listing::spawn_with_stderr(
        &mut command,
        std::process::Stdio::piped(),
        stderr,
    );
    drop(command); // our copy of the pipe's writing end
    let path = server.expect(r"Server listening on (.+)").remove(1);
    let pid = server.pid();
    let silent = silent_clients_until(&mut server, &path, 16);
    let mut waiting = UnixStream::connect(&path).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    waiting.write_all(b"waiting\n").unwrap();
    waiting.shutdown(Shutdown::Write).unwrap();
    wait_until("the failure of `accept` to wait for the log", || {
        threads_blocked_in(pid, nix::libc::SYS_write) == 1
    });
    drop(silent);
    let mut reply = String::new();
    let read = waiting.read_to_string(&mut reply);
    assert!(
        read.is_ok() && reply == "server got: [waiting]\n",
        "the client in the queue, once descriptors came back: {read:?}, \
         {reply:?}"
    );
    drop((server, log));
}

/// Silent clients of `server`, listening at `path`, connected one at a
/// time, each accepted before the next connects, until the server holds
/// `fds` descriptors (its last one taken); fails the test, saying what the
/// server was doing, if one is not accepted within the harness's patience.
fn silent_clients_until(
    server: &mut Listing,
    path: &str,
    fds: usize,
) -> Vec<UnixStream> {
    let pid = server.pid();
    let mut silent = Vec::new();
    loop {
        let before = crate::support::lasting_fds(pid);
        if before >= fds {
            return silent;
        }
        silent.push(UnixStream::connect(path).unwrap());
        let deadline = std::time::Instant::now() + crate::support::PATIENCE;
        while crate::support::lasting_fds(pid) <= before {
            if std::time::Instant::now() > deadline {
                not_accepted(server, &silent);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Fails the test with what the server was doing when it did not accept
/// the last of `silent`: alive or not, where it waited, its descriptors,
/// which clients it had closed, and what it printed.
fn not_accepted(server: &mut Listing, silent: &[UnixStream]) -> ! {
    use crate::support::{fds_of, state_of, wchan_of};
    let pid = server.pid();
    let closed: Vec<usize> = (0..silent.len())
        .filter(|&i| {
            let mut conn = &silent[i];
            let _ = conn.set_nonblocking(true);
            let ended = matches!(conn.read(&mut [0; 64]), Ok(0));
            let _ = conn.set_nonblocking(false);
            ended
        })
        .collect();
    for _ in 0..20 {
        if server.no_line_within(Duration::from_millis(50)) {
            break;
        }
    }
    panic!(
        "the server did not accept client {} of {}: state {:?}, waiting \
         in {:?}, descriptors {:?}, clients it had closed {closed:?}, \
         output {:?}",
        silent.len() - 1,
        silent.len(),
        state_of(pid),
        wchan_of(pid),
        fds_of(pid),
        server.transcript()
    )
}

/// The start of the line the server logs when `accept` fails.
const ACCEPT_FAILED: &str = "unix-server: accept: ";

/// unix-server under `ulimit -n 64`, with room for a thousand clients
/// that may each stay ten minutes, and its socket's path.
fn with_64_descriptors(tmp: &TempDir) -> (Listing, String) {
    let args = ["--max-conns", "1000", "--timeout", "600"];
    start_private_limited(tmp, "-n 64", &args)
}

/// The end of a shortage of descriptors: `held`, the clients that made
/// it, leave; a new client must be served, and the server, stopped, must
/// have logged the shortage once in all.
#[track_caller]
fn logged_the_shortage_once(
    server: Listing,
    path: &str,
    held: std::collections::VecDeque<UnixStream>,
) {
    drop(held);
    assert_eq!(ask(path, "new\n"), "server got: [new]\n");
    server.signal(Signal::SIGTERM);
    let out = server.finish();
    let again: Vec<_> = out
        .stdout
        .iter()
        .filter(|l| l.starts_with(ACCEPT_FAILED))
        .collect();
    assert_eq!(again.len(), 1, "logged {} times: {again:#?}", again.len());
}

#[test]
fn unix_server_logs_a_shortage_of_descriptors_once_while_clients_come_and_go() {
    // As for Listing 14-2: a hundred idle clients fill 64 descriptors;
    // then one connection is closed and another opened every 10 ms, for
    // two seconds. Each close let the server accept once, fail again, and
    // log again: 200 lines for one shortage.
    use crate::support::open_fds;
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, path) = with_64_descriptors(&tmp);
    let pid = server.pid();
    let mut held: std::collections::VecDeque<_> = (0..100)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    wait_until("all 64 descriptors in use", || open_fds(pid) == 64);
    let failed = server.next_line();
    assert!(failed.starts_with(ACCEPT_FAILED), "{failed}");
    for _ in 0..200 {
        held.pop_front();
        held.push_back(UnixStream::connect(&path).unwrap());
        std::thread::sleep(Duration::from_millis(10)); // The attack's pace.
    }
    logged_the_shortage_once(server, &path, held);
}

#[test]
fn unix_server_logs_a_shortage_once_while_exactly_enough_clients_come_and_go() {
    // As for Listing 14-2: clients connect one at a time until the 64
    // descriptors are all in use and nobody waits in the backlog, where a
    // blocking `accept` still fails at once. Then one connection is
    // closed and another opened, a hundred times: each success with an
    // empty backlog ended the shortage, and the next failure logged again.
    use crate::support::open_fds;
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, path) = with_64_descriptors(&tmp);
    let pid = server.pid();
    // As many clients as there are descriptors left, one at a time, each
    // accepted before the next connects: nobody waits in the backlog.
    let before = open_fds(pid);
    let mut held = std::collections::VecDeque::new();
    for open in before + 1..=64 {
        held.push_back(UnixStream::connect(&path).unwrap());
        wait_until("the server to accept", || open_fds(pid) >= open);
    }
    let failed = server.next_line();
    assert!(failed.starts_with(ACCEPT_FAILED), "{failed}");
    for _ in 0..100 {
        held.pop_front();
        wait_until("the server to close", || open_fds(pid) < 64);
        held.push_back(UnixStream::connect(&path).unwrap());
        wait_until("the server to accept", || open_fds(pid) == 64);
    }
    logged_the_shortage_once(server, &path, held);
}

#[test]
fn unix_server_serves_a_new_client_while_a_thousand_idle_ones_hold_every_place()
{
    // The default limit, 1000 connections (no --max-conns), all taken by
    // idle clients; the one idle longest makes room for each new client.
    // The new clients stay connected, so that each must make room (one
    // that left would free its place for the next), and the request
    // deadline is an hour, so that only the making of room closes an idle
    // client: with the default ten seconds, the deadline closed them, and
    // a server with room for 1001 passed.
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start_private(&tmp, &["--timeout", "3600"]);
    let before = crate::support::open_fds(server.pid());
    let idle: Vec<_> = (0..1000)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    wait_until("the server to accept every idle client", || {
        crate::support::open_fds(server.pid()) >= before + 1000
    });
    // Not a synchronisation: the time a connection must have been idle.
    std::thread::sleep(Duration::from_millis(1100));
    let mut new = Vec::new();
    for i in 0..3 {
        let mut sock = UnixStream::connect(&path).unwrap();
        sock.set_read_timeout(Some(crate::support::PATIENCE))
            .unwrap();
        sock.write_all(format!("new {i}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(&sock),
            &mut reply,
        )
        .unwrap();
        assert_eq!(reply, format!("server got: [new {i}]\n"));
        new.push(sock);
    }
    let closed = |idle: &[UnixStream]| {
        idle.iter()
            .filter(|sock| {
                let mut sock: &UnixStream = sock;
                sock.set_nonblocking(true).unwrap();
                matches!(sock.read(&mut [0; 16]), Ok(0))
            })
            .count()
    };
    wait_until("three idle clients to be closed to make room", || {
        closed(&idle) >= 3
    });
    drop((new, server));
}

#[test]
fn unix_server_evicts_a_request_stalled_past_the_grace() {
    // Two places, both held by clients that sent one byte and no more.
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start_private(&tmp, &["--max-conns", "2"]);
    let pid = server.pid();
    let before = crate::support::lasting_fds(pid);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut sock = UnixStream::connect(&path).unwrap();
            sock.write_all(b"x").unwrap();
            sock
        })
        .collect();
    wait_until("the server to accept both slow clients", || {
        crate::support::lasting_fds(pid) >= before + 2
    });
    // Past the grace, and far from the ten-second deadline.
    std::thread::sleep(Duration::from_millis(1500)); // The wait is the test.
    assert_eq!(ask(&path, "new\n"), "server got: [new]\n");
    wait_until("a slow client to be closed", || {
        slow.iter().any(|sock| {
            let mut sock: &UnixStream = sock;
            sock.set_nonblocking(true).unwrap();
            !matches!(
                sock.read(&mut [0; 64]),
                Err(ref e) if e.kind() == ErrorKind::WouldBlock
            )
        })
    });
    // The evicted connection's end and the new client's are closed once
    // their log lines are written: one slow client is left. The eviction
    // is the server's doing, not an error of the client's to log.
    wait_until("the server to close what it evicted", || {
        crate::support::lasting_fds(pid) <= before + 1
    });
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.stderr, "", "the eviction logged as the client's error");
    drop(slow);
}

// ---------------------------------------------------------------------------
// Listing 16-2: socketpair and fork

#[test]
fn unix_pair_parent_and_child_talk_both_ways() {
    let out = run(bin!("unix-pair"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 4);
    let parent = out.stdout[0].split(' ').nth(1).unwrap().to_string();
    let child = out.stdout[3].split(' ').nth(1).unwrap().to_string();
    assert_ne!(parent, child);
    for (i, line) in out.stdout[..3].iter().enumerate() {
        let n = i + 1;
        assert_eq!(
            *line,
            format!(
                "Parent {parent} sent ping {n}, got: pong {n} from Child {child}"
            )
        );
    }
    assert_matches_book(
        "ch16-unix/16-02-unix-pair.out",
        "unix-pair",
        &[],
        &out.stdout,
    );
}

/// Each line goes to the socket in one system call. `writeln!` on a
/// socket, which has no buffer, writes each piece of its format on its
/// own: "ping ", the number, "\n", each a `sendto` of its own (and, on a
/// stream, a segment), and, on a `SOCK_SEQPACKET` pair, a message.
#[test]
fn unix_pair_sends_each_line_in_one_write() {
    if !have("strace") {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let trace = tmp.path().join("trace");
    let trace = trace.to_str().unwrap();
    let args = ["-f", "-qq", "-o", trace, "-e", "trace=sendto,sendmsg"];
    let mut args = args.to_vec();
    args.extend([bin!("unix-pair"), "--count", "3"]);
    let out = run("strace", &args);
    assert!(out.status.success(), "{}", out.stderr);
    let text = fs::read_to_string(trace).unwrap();
    let sends: Vec<&str> =
        text.lines().filter(|l| l.contains("send")).collect();
    // Three pings and three pongs.
    assert_eq!(sends.len(), 6, "{sends:#?}");
}

#[test]
fn unix_pair_child_ends_when_the_parent_is_killed() {
    let mut pair = Listing::start(bin!("unix-pair"), &["--count", "100000000"]);
    pair.next_line();
    let parent = pair.pid();
    let child = crate::support::children_of(parent)[0];
    pair.signal(Signal::SIGKILL);
    // Its end of the pair closes with it; the child reads the end of the
    // stream and exits.
    wait_until("the child to end", || {
        matches!(crate::support::state_of(child), None | Some('Z'))
    });
    // Nothing of its group is left, seen before the group is killed.
    finish_clean(pair);
}

#[test]
fn unix_pair_says_how_its_child_died_not_that_a_pipe_broke() {
    // The child killed mid-talk: the parent's next write to the pair
    // fails (EPIPE) or its read sees the end; either way the cause is the
    // child's death, and the one line says so, not "Broken pipe", which
    // in this book means our own output's reader went away.
    let mut pair = Listing::start(bin!("unix-pair"), &["--count", "100000000"]);
    pair.next_line();
    let child = crate::support::children_of(pair.pid())[0];
    nix::sys::signal::kill(child, Signal::SIGKILL).unwrap();
    let out = pair.finish();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("SIGKILL"), "{}", out.stderr);
    assert!(!out.stderr.contains("Broken pipe"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// Python, a subreaper (PR_SET_CHILD_SUBREAPER), reads one line of a long
/// talk and closes the pipe, as `| head -1` would; it prints how the
/// parent ended, then what it left: `none`, or a child orphaned to Python.
const PAIR_READER_GOES: &str = r#"
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pair = subprocess.Popen([sys.argv[1], "--count", "100000000"],
                        stdout=subprocess.PIPE, start_new_session=True)
pair.stdout.readline()
pair.stdout.close()
print("parent:", pair.wait())
try:
    pid, _ = os.waitpid(-1, os.WNOHANG)
    print("orphaned, and ended" if pid else "orphaned, and running")
except ChildProcessError:
    print("none")
try:
    os.killpg(pair.pid, signal.SIGKILL)
except ProcessLookupError:
    pass
"#;

/// Nobody reads the parent's output any more (Linux 6.18): it ends
/// quietly, as every listing does, but through `main`, after it has
/// reaped its child. The first version died of SIGPIPE mid-talk, and left
/// its child to be reaped by whoever inherited it.
#[test]
fn unix_pair_reaps_its_child_when_its_reader_goes() {
    if !have("python3") {
        return;
    }
    let out =
        Listing::start("python3", &["-c", PAIR_READER_GOES, bin!("unix-pair")])
            .finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, ["parent: 0", "none"], "{}", out.stderr);
}

#[test]
fn unix_pair_reaps_its_child_when_its_output_fails() {
    // With stdout full, the parent's first line of output fails and it
    // exits 1; "every child reaped" holds on that path too: its own
    // `wait4` reaps the child it forked before it exits.
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let trace_arg = trace.to_str().unwrap();
    let mut strace = std::process::Command::new("strace");
    strace.args(["-f", "-q", "-o", trace_arg, "-e", "trace=clone,wait4"]);
    strace.arg(bin!("unix-pair"));
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out =
        Listing::spawn(&mut strace, std::process::Stdio::from(full)).finish();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("No space left"), "{}", out.stderr);
    let text = fs::read_to_string(&trace).unwrap();
    let parent = text.split_whitespace().next().unwrap_or_default();
    let line = regex::Regex::new(r"^(\d+) .*(clone|wait4).* = (\d+)$").unwrap();
    let (mut forked, mut reaped) = (Vec::new(), Vec::new());
    for caps in text.lines().filter_map(|l| line.captures(l)) {
        if &caps[1] == parent {
            match &caps[2] {
                "clone" => forked.push(caps[3].to_string()),
                _ => reaped.push(caps[3].to_string()),
            }
        }
    }
    assert_eq!(forked.len(), 1, "{text}");
    assert_eq!(reaped, forked, "reaped before it exited:\n{text}");
}

/// An ignored SIGCHLD passes through `exec`, and then the kernel reaps
/// the child itself and `waitpid` fails with ECHILD (Chapter 4 shows it).
/// The listing gives SIGCHLD its default back before it forks, so a
/// parent that left it ignored (`env --ignore-signal`) gets the same talk
/// and the same ending as any other. Seen on Linux 6.18: before the fix,
/// the three pings, then `unix-pair: ECHILD: No child processes`.
#[test]
fn unix_pair_reaps_its_child_when_started_with_sigchld_ignored() {
    let mut command = std::process::Command::new("env");
    command.args(["--ignore-signal=CHLD", bin!("unix-pair")]);
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    let linux = crate::support::kernel();
    assert!(out.status.success(), "{} (Linux {linux})", out.stderr);
    assert_eq!(out.stdout.len(), 4, "{:?}", out.stdout);
    assert!(out.stdout[3].ends_with(" exited"), "{:?}", out.stdout);
}

#[test]
fn a_seqpacket_socketpair_keeps_message_boundaries() {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::AsRawFd;
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let (mut a, mut b) = (UnixStream::from(a), UnixStream::from(b));
    a.write_all(b"one").unwrap();
    a.write_all(b"two").unwrap();
    let mut buf = [0; 64];
    // Two writes, two reads, each of one whole message.
    assert_eq!(b.read(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"one");
    assert_eq!(b.read(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"two");
    // A buffer too small for a message: its start, and the rest is lost,
    // not left for the next read.
    a.write_all(b"three four").unwrap();
    a.write_all(b"five").unwrap();
    assert_eq!(b.read(&mut buf[..5]).unwrap(), 5);
    assert_eq!(&buf[..5], b"three");
    assert_eq!(b.read(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"five");
    // `recvmsg` says what `read` cannot: the message was cut (MSG_TRUNC).
    a.write_all(b"six seven").unwrap();
    let mut small = [0; 3];
    let mut iov = [std::io::IoSliceMut::new(&mut small)];
    let msg = nix::sys::socket::recvmsg::<()>(
        b.as_raw_fd(),
        &mut iov,
        None,
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    assert_eq!(msg.bytes, 3);
    assert!(msg.flags.contains(nix::sys::socket::MsgFlags::MSG_TRUNC));
    // And `recv` with the flag MSG_TRUNC, as for UDP: it copies what fits,
    // and returns the message's real length (`unix_dgram_recvmsg()`).
    a.write_all(b"eight nine").unwrap();
    let n = nix::sys::socket::recv(
        b.as_raw_fd(),
        &mut small,
        nix::sys::socket::MsgFlags::MSG_TRUNC,
    )
    .unwrap();
    assert_eq!((n, &small), (10, b"eig"));
    // Larger than the send buffer: refused whole, never split. Linux 6.18:
    // the limit is the send buffer less 32 bytes (`unix_dgram_sendmsg`).
    let err = a.write(&vec![b'x'; 1 << 20]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EMSGSIZE));
    let sndbuf: usize =
        nix::sys::socket::getsockopt(&a, nix::sys::socket::sockopt::SndBuf)
            .unwrap();
    assert_eq!(a.write(&vec![b'x'; sndbuf - 32]).unwrap(), sndbuf - 32);
    let mut whole = vec![0; sndbuf];
    assert_eq!(b.read(&mut whole).unwrap(), sndbuf - 32);
    let err = a.write(&vec![b'x'; sndbuf - 31]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EMSGSIZE));
}

/// Sends a descriptor with no byte of data over a socketpair of `kind`,
/// and returns how many bytes and descriptors the other end receives:
/// `None` if nothing arrived at all.
fn descriptors_without_data(
    kind: nix::sys::socket::SockType,
) -> Option<(usize, usize)> {
    use nix::sys::socket::{
        AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
        recvmsg, sendmsg, socketpair,
    };
    use std::os::fd::AsRawFd;
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let (a, b) = socketpair(AddressFamily::Unix, kind, None, flags).unwrap();
    let passed = [a.as_raw_fd()];
    let rights = [ControlMessage::ScmRights(&passed)];
    let sent =
        sendmsg::<()>(a.as_raw_fd(), &[], &rights, MsgFlags::empty(), None)
            .unwrap();
    assert_eq!(sent, 0);
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let mut buf = [0; 16];
    let mut data = [std::io::IoSliceMut::new(&mut buf)];
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = match recvmsg::<()>(
        b.as_raw_fd(),
        &mut data,
        Some(&mut space),
        flags,
    ) {
        Err(nix::errno::Errno::EAGAIN) => return None,
        result => result.unwrap(),
    };
    let mut fds = 0;
    for cmsg in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            fds += received.len();
            for fd in received {
                nix::unistd::close(fd).unwrap();
            }
        }
    }
    Some((msg.bytes, fds))
}

#[test]
fn a_stream_socket_passes_no_descriptor_without_a_byte_of_data() {
    // Linux 6.18: on a stream socket, sendmsg with no data sends nothing,
    // its descriptors included, and says it sent 0 bytes; a seqpacket or
    // datagram socket delivers them in an empty message.
    use nix::sys::socket::SockType;
    assert_eq!(descriptors_without_data(SockType::Stream), None);
    assert_eq!(descriptors_without_data(SockType::SeqPacket), Some((0, 1)));
    assert_eq!(descriptors_without_data(SockType::Datagram), Some((0, 1)));
}

// ---------------------------------------------------------------------------
// Listing 16-3: passing a descriptor

/// A file only its owner may read, in a directory anyone may enter.
fn secret(dir: &TempDir) -> String {
    let path = path_in(dir, "secret");
    fs::write(&path, "the secret\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Where Terminal 1 makes its secret: a directory that anyone may enter and
/// only `root` may write.
const SECRET_DIR: &str = "/srv";

/// What Terminal 1 types first: a file that only `root` may read.
const MAKE_SECRET: &str = "(umask 077 && printf 'the secret\\n' > /srv/secret)";

/// Terminal 1's secret is its owner's only from the moment it exists. A
/// file made with the shell's umask (022: `-rw-r--r--`) and then given
/// `chmod 600` can be opened by anyone in between, and a descriptor, once
/// open, reads on after the chmod. Run with a `chmod` that does nothing,
/// the file must still be born `-rw-------`.
#[test]
fn the_sessions_secret_is_never_readable_by_others_even_for_a_moment() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("bin");
    fs::create_dir(&fake).unwrap();
    let chmod = fake.join("chmod");
    fs::write(&chmod, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&chmod, fs::Permissions::from_mode(0o755)).unwrap();
    let make = MAKE_SECRET.replace(SECRET_DIR, dir.path().to_str().unwrap());
    let script =
        format!("umask 022 && PATH={}:$PATH && {make}", fake.display());
    let made = Listing::start("bash", &["-c", &script]).finish();
    assert!(made.status.success(), "{}", made.stderr);
    let mode = fs::metadata(dir.path().join("secret")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o600, "born {:o}", mode & 0o777);
}

/// Terminal 1's secret cannot be caught by a name that another user made
/// first. The umask applies only to a file that `>` creates: `>` opens
/// without `O_EXCL`, and writes into a file that exists, which keeps its
/// owner and mode (or follows a symbolic link, or feeds a FIFO). Here
/// `nobody` tries to make the name first, in a directory standing for the
/// one the session names: `/tmp`, sticky and open to all, or one only
/// `root` may write. The secret must still be `root`'s, `-rw-------`.
#[test]
fn the_sessions_secret_stays_roots_when_another_user_made_its_name_first() {
    if !can_switch_users() {
        return;
    }
    let dir = open_dir();
    let mut make = MAKE_SECRET.to_string();
    for (shown, mode) in [("/tmp", 0o1777), (SECRET_DIR, 0o755)] {
        let standing = dir.path().join(&shown[1..]);
        fs::create_dir(&standing).unwrap();
        fs::set_permissions(&standing, fs::Permissions::from_mode(mode))
            .unwrap();
        make = make
            .replace(&format!("{shown}/"), &format!("{}/", standing.display()));
    }
    let file = make.rsplit("> ").next().unwrap().trim_end_matches(')');
    let as_nobody = AS_NOBODY.join(" ");
    // Refused where only root may write; that is the point.
    run(
        "bash",
        &[
            "-c",
            &format!("{as_nobody} sh -c ': > {file}; chmod 644 {file}'"),
        ],
    );
    let made = run("bash", &["-c", &make]);
    assert!(made.status.success(), "{}", made.stderr);
    let meta = fs::metadata(file).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (0, 0o600),
        "{file}: owner {}, mode {:o}",
        meta.uid(),
        meta.mode() & 0o777
    );
    let peek = run("bash", &["-c", &format!("{as_nobody} cat {file}")]);
    assert!(peek.stdout.is_empty(), "nobody reads {:?}", peek.stdout);
}

#[test]
fn a_passed_descriptor_reads_a_file_its_receiver_may_not_open() {
    if !can_switch_users() {
        return;
    }
    // One directory standing for each of the session's, named so that they
    // sort as theirs do (`ls` lists its arguments in order).
    let top = open_dir();
    let [secret_dir, socket_dir] = [SECRET_DIR, SHOWN_DIR].map(|shown| {
        let standing = top.path().join(&shown[1..]);
        fs::create_dir(&standing).unwrap();
        fs::set_permissions(&standing, fs::Permissions::from_mode(0o755))
            .unwrap();
        standing.to_str().unwrap().to_string()
    });
    let make = MAKE_SECRET.replace(SECRET_DIR, &secret_dir);
    let made = Listing::start("bash", &["-c", &make]).finish();
    assert!(made.status.success(), "{}", made.stderr);
    let file = format!("{secret_dir}/secret");
    let path = format!("{socket_dir}/pass.sock");
    // Both directories as the session shows them.
    let as_shown = |text: &str| {
        text.replace(&secret_dir, SECRET_DIR)
            .replace(&socket_dir, SHOWN_DIR)
    };
    let args = ["serve", &path, &file, "--count", "1"];
    let (server, _) = start(bin!("unix-pass-fd"), &args);
    let fetch = format!(
        "{} {} fetch {path}",
        AS_NOBODY.join(" "),
        bin!("unix-pass-fd")
    );
    let shown_fetch = format!(
        "{} target/debug/unix-pass-fd fetch {path}",
        AS_NOBODY.join(" ")
    );
    let mut terminal2 = Vec::new();
    for (command, shown) in [
        (
            format!("ls -l {file} {path}"),
            format!("ls -l {file} {path}"),
        ),
        (
            format!("{} cat {file}", AS_NOBODY.join(" ")),
            format!("{} cat {file}", AS_NOBODY.join(" ")),
        ),
        (fetch, shown_fetch),
    ] {
        let out = Listing::start("bash", &["-c", &command]).finish();
        let mut shows: Vec<_> =
            out.stdout.iter().map(|l| as_shown(l)).collect();
        shows.extend(out.stderr.lines().map(&as_shown));
        terminal2.push((as_shown(&shown), shows));
    }
    assert!(terminal2[1].1[0].ends_with("Permission denied"));
    assert_eq!(terminal2[2].1, ["the secret"]);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout[1].contains("(uid 65534): sent "),
        "{:?}",
        out.stdout
    );
    assert!(!Path::new(&path).exists());
    let served: Vec<_> = out.stdout.iter().map(|l| as_shown(l)).collect();
    assert_session_matches_book(
        "ch16-unix/16-03-server.out",
        &[
            (MAKE_SECRET.to_string(), &[] as &[String]),
            (as_shown(&cargo_run("unix-pass-fd", &args)), &served),
        ],
    );
    let terminal2: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book("ch16-unix/16-03-client.out", &terminal2);
}

/// Terminal 2's command works from a clone that `nobody` may not reach,
/// such as one inside `/root`: `setpriv` runs the program while it still
/// has root's capabilities, which go only at that `exec`, and the program
/// as `nobody` then needs only the socket. Shown with the binary named
/// from the clone's top, as the session names it, and by its full path.
#[test]
fn the_sessions_client_runs_from_a_clone_that_nobody_may_enter() {
    if !can_switch_users() {
        return;
    }
    let dir = open_dir();
    let (file, path) = (path_in(&dir, "secret"), path_in(&dir, "pass.sock"));
    fs::write(&file, "the secret\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let root_only = tempfile::tempdir().unwrap();
    fs::set_permissions(root_only.path(), fs::Permissions::from_mode(0o700))
        .unwrap();
    let clone = root_only.path().join("book");
    fs::create_dir_all(clone.join("target/debug")).unwrap();
    let binary = clone.join("target/debug/unix-pass-fd");
    fs::copy(bin!("unix-pass-fd"), &binary).unwrap();
    let binary = binary.to_str().unwrap();
    let as_nobody = AS_NOBODY.join(" ");
    let out = run("bash", &["-c", &format!("{as_nobody} test -e {binary}")]);
    assert!(!out.status.success(), "nobody reaches {binary}");
    let args = ["serve", &path, &file, "--count", "2"];
    let (server, _) = start(bin!("unix-pass-fd"), &args);
    for fetch in [
        format!(
            "cd {} && {as_nobody} target/debug/unix-pass-fd fetch {path}",
            clone.to_str().unwrap()
        ),
        format!("cd / && {as_nobody} {binary} fetch {path}"),
    ] {
        let out = run("bash", &["-c", &fetch]);
        assert_eq!(out.stdout, ["the secret"], "{fetch}: {}", out.stderr);
    }
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn python_receives_a_descriptor_from_the_server() {
    if !have("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "pass.sock"));
    let (server, _) = start(
        bin!("unix-pass-fd"),
        &["serve", &path, &file, "--count", "1"],
    );
    let script = format!(
        "import os, socket\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect('{path}')\n\
         note, fds, flags, _ = socket.recv_fds(s, 256, 1)\n\
         print(len(fds), os.read(fds[0], 100).decode().strip())"
    );
    let out = run("python3", &["-c", &script]);
    assert_eq!(out.stdout, ["1 the secret"], "{}", out.stderr);
    assert!(server.finish().status.success());
}

#[test]
fn fetch_receives_a_descriptor_from_python() {
    if !have("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "py.sock"));
    // A server in Python that sends an open file, then says it is ready
    // by printing, and removes its socket file when done.
    let script = format!(
        "import os, socket\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.bind('{path}')\n\
         s.listen()\n\
         print('ready', flush=True)\n\
         c, _ = s.accept()\n\
         f = os.open('{file}', os.O_RDONLY)\n\
         socket.send_fds(c, [b'x'], [f])\n\
         c.close()\n\
         os.unlink('{path}')"
    );
    let mut python = Listing::start("python3", &["-c", &script]);
    python.expect("ready");
    let out = run(bin!("unix-pass-fd"), &["fetch", &path]);
    assert_eq!(out.stdout, ["the secret"], "{}", out.stderr);
    assert!(python.finish().status.success());
}

/// Sends `fetch` a pipe's read end and `extra` more descriptors in one
/// message; returns how many descriptors it holds while it copies from
/// the pipe, and what it said on stderr.
fn fetch_given_more_descriptors(extra: usize) -> (usize, String) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::io::IoSlice;
    use std::os::fd::{AsRawFd, RawFd};
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "many.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut fetch = Listing::start(bin!("unix-pass-fd"), &["fetch", &path]);
    let (conn, _) = listener.accept().unwrap();
    // Close-on-exec: no listing another test starts may hold the pipe.
    let (reader, writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut writer = fs::File::from(writer);
    let null = fs::File::open("/dev/null").unwrap();
    let mut fds: Vec<RawFd> = vec![reader.as_raw_fd()];
    fds.extend(std::iter::repeat_n(null.as_raw_fd(), extra));
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(b"x")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    drop(reader);
    writer.write_all(b"through the pipe\n").unwrap();
    // Once the line is out, fetch has received, and is copying.
    fetch.expect("through the pipe");
    let held = crate::support::open_fds(fetch.pid());
    drop(writer);
    let out = fetch.finish();
    assert!(out.status.success(), "{}", out.stderr);
    (held, out.stderr)
}

#[test]
fn fetch_closes_and_reports_descriptors_beyond_the_one_it_asked_for() {
    // Linux 6.18: with room for one descriptor, the kernel installed two
    // and set MSG_CTRUNC, and nix refused to hand them over.
    let (alone, said) = fetch_given_more_descriptors(0);
    assert_eq!(said, "");
    for extra in [2, 9, 252] {
        for _ in 0..3 {
            let (held, said) = fetch_given_more_descriptors(extra);
            assert_eq!(held, alone, "{extra} extra descriptors: {said}");
            assert_eq!(
                said,
                format!(
                    "unix-pass-fd: closed {extra} descriptors more than \
                     asked for\n"
                )
            );
        }
    }
}

#[test]
fn fetch_with_a_full_descriptor_table_says_so_and_ends() {
    // Linux 6.18 (scm_detach_fds) and nix 0.32.
    // 0, 1, 2 and the socket: no room for the descriptor that comes. The
    // kernel closes it and sets MSG_CTRUNC, and nix's `cmsgs` fails with
    // ENOBUFS, "No buffer space available", which names no cause.
    let dir = tempfile::tempdir().unwrap();
    let (path, file) = (path_in(&dir, "server.sock"), secret(&dir));
    let (server, _) = start(
        bin!("unix-pass-fd"),
        &["serve", &path, &file, "--count", "1"],
    );
    let script = "ulimit -n 4 && exec \"$0\" fetch \"$1\"";
    let out = run("bash", &["-c", script, bin!("unix-pass-fd"), &path]);
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stdout);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert!(
        out.stderr
            .contains("our descriptor table is full (MSG_CTRUNC)"),
        "{}",
        out.stderr
    );
    assert!(server.finish().status.success());
}

#[test]
fn a_passed_descriptor_shares_its_file_offset_with_the_sender() {
    // Linux 6.18: SCM_RIGHTS installs a new descriptor for the sender's
    // open file description, offset and all.
    use nix::sys::socket::{
        ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg,
    };
    use std::io::{IoSlice, IoSliceMut, Seek, SeekFrom};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let dir = tempfile::tempdir().unwrap();
    let file = secret(&dir);
    let (a, b) = UnixStream::pair().unwrap();
    let mut mine = fs::File::open(&file).unwrap();
    let fds = [mine.as_raw_fd()];
    sendmsg::<()>(
        a.as_raw_fd(),
        &[IoSlice::new(b"x")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    let mut byte = [0];
    let mut data = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        b.as_raw_fd(),
        &mut data,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let Some(ControlMessageOwned::ScmRights(got)) = msg.cmsgs().unwrap().next()
    else {
        panic!("no descriptor");
    };
    // SAFETY: received just now; this test owns it alone.
    let mut theirs = fs::File::from(unsafe { OwnedFd::from_raw_fd(got[0]) });
    // Another number, the same open file: reading through one moves the
    // offset of both.
    assert_ne!(theirs.as_raw_fd(), mine.as_raw_fd());
    let mut four = [0; 4];
    theirs.read_exact(&mut four).unwrap();
    assert_eq!(mine.stream_position().unwrap(), 4);
    mine.seek(SeekFrom::Start(0)).unwrap();
    assert_eq!(theirs.stream_position().unwrap(), 0);
}

#[test]
fn pass_fd_server_opens_the_file_anew_for_each_client() {
    // Two clients, one after the other, each read the whole file. A
    // server that opened it once and passed that one descriptor to both
    // would give them one offset (the test above), left at the end of the
    // file by the first: the second would read nothing.
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "pass.sock"));
    let (server, _) = start(
        bin!("unix-pass-fd"),
        &["serve", &path, &file, "--count", "2"],
    );
    for client in ["first", "second"] {
        let out = run(bin!("unix-pass-fd"), &["fetch", &path]);
        assert_eq!(out.stdout, ["the secret"], "{client}: {}", out.stderr);
    }
    assert!(server.finish().status.success());
}

#[test]
fn unix_listings_reject_bad_arguments_in_one_line() {
    let server = bin!("unix-server");
    assert_rejects(server, &["--timeout", "0"], "--timeout must be at least 1");
    assert_rejects(server, &["a", "b"], "unexpected argument");
    let dir = tempfile::tempdir().unwrap();
    let missing = path_in(&dir, "no/such/dir/s.sock");
    assert_rejects(server, &[&missing], "cannot open");
    let long = format!("{}/{}", dir.path().display(), "x".repeat(120));
    assert_rejects(server, &[&long], "cannot listen on");
    assert_rejects(bin!("unix-pair"), &["--count", "x"], "--count");
    let pass = bin!("unix-pass-fd");
    assert_rejects(pass, &[], "which mode?");
    assert_rejects(pass, &["serve", "x"], "serve needs PATH and FILE");
    assert_rejects(pass, &["fetch"], "fetch needs PATH");
    let socket = path_in(&dir, "s.sock");
    let nothing = path_in(&dir, "nothing");
    assert_rejects(pass, &["serve", &socket, &nothing], "No such file");
    assert_rejects(pass, &["fetch", &socket], "No such file");
    assert!(!Path::new(&socket).exists());
}

#[test]
fn pass_fd_server_waits_without_spinning_when_out_of_descriptors() {
    // Six descriptors: 0, 1, 2, the listening socket and signal-hook's
    // two, none left for `accept`.
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "full.sock"));
    let (got, _server) = crate::support::out_of_descriptors_waits_then_serves(
        bin!("unix-pass-fd"),
        &["serve", &path, &file],
        6,
        "unix-pass-fd: accept: Too many open files",
        |path| {
            let path = path.to_string();
            std::thread::spawn(move || {
                run(bin!("unix-pass-fd"), &["fetch", &path])
                    .stdout
                    .join("\n")
            })
        },
    );
    assert_eq!(got, "the secret");
}

/// The texts of an SVG figure of the book, in the order they are drawn.
fn figure_texts(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../src/figures")
        .join(name);
    let svg = fs::read_to_string(&path).expect("the figure");
    let text = regex::Regex::new(r"<text[^>]*>([^<]*)</text>").unwrap();
    text.captures_iter(&svg).map(|c| c[1].to_string()).collect()
}

/// The inode of the socket behind `fd` of `pid`, from its /proc link.
fn socket_inode(pid: nix::unistd::Pid, fd: u32) -> Option<String> {
    let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let link = link.to_string_lossy();
    let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
    Some(inode.to_string())
}

#[test]
fn figure_16_1_numbers_the_servers_descriptors_as_the_server_does() {
    // The figure draws the server's table: signal-hook's socket pair as 3
    // and 4 (registered before bind, so that a signal just after bind
    // still removes the socket file), then the listener as 5.
    let texts = figure_texts("ch16-scm-rights.svg");
    let label = |name: &str| {
        let at = texts.iter().position(|t| t == name).expect(name);
        texts[at - 1].clone()
    };
    assert_eq!(label("signal-hook"), "3 4", "{texts:?}");
    assert_eq!(label("listener"), "5", "{texts:?}");
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "pass.sock"));
    let (server, _) = start(
        bin!("unix-pass-fd"),
        &["serve", &path, &file, "--count", "1"],
    );
    let pid = server.pid();
    let unix = fs::read_to_string("/proc/net/unix").unwrap();
    // /proc/net/unix: the inode is the seventh field, the path the eighth.
    let path_of = |inode: &str| {
        unix.lines().find_map(|line| {
            let fields: Vec<_> = line.split_whitespace().collect();
            (fields.get(6) == Some(&inode)).then(|| fields.get(7).copied())
        })
    };
    for fd in [3, 4] {
        let inode = socket_inode(pid, fd).unwrap_or_else(|| panic!("{fd}"));
        assert_eq!(path_of(&inode), Some(None), "fd {fd}: an unnamed socket");
    }
    let listener = socket_inode(pid, 5).expect("fd 5 a socket");
    assert_eq!(path_of(&listener), Some(Some(path.as_str())));
    drop(server);
}

#[test]
fn unix_server_logs_a_line_too_long_from_a_client_that_leaves_unread() {
    // Linux 6.18. As Chapter 14's servers: a client that sends a line too
    // long and closes without reading the error makes the server's drain
    // fail with ECONNRESET; the log must still name the line too long.
    let tmp = TempDir::new().unwrap();
    let (server, path) = start_private(&tmp, &["--count", "1"]);
    let client = UnixStream::connect(&path).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (&client).write_all(&[b'x'; 2000]).unwrap();
    // The error line has come, and stays unread.
    let flags = nix::sys::socket::MsgFlags::MSG_PEEK;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
    nix::sys::socket::recv(fd, &mut [0; 1], flags).unwrap();
    drop(client);
    let out = server.finish();
    let who = format!("pid {} (uid ", std::process::id());
    assert!(
        out.stderr
            .lines()
            .any(|line| line.starts_with(&format!("unix-server: {who}"))
                && line.ends_with(": a line longer than 1024 bytes")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stdout.iter().any(|line| line.contains("answered")),
        "{:?}",
        out.stdout
    );
}

#[test]
fn unix_server_drains_a_refused_client_through_a_stop_and_continue() {
    // Linux 6.18. As Chapter 14's servers: stopped and continued while it
    // drains a client whose line was too long, the server's read, which
    // has a timeout, fails with EINTR; it must read again, not end the
    // connection with "Interrupted system call".
    use crate::support::{all_threads_stopped, threads_waiting_in};
    let tmp = TempDir::new().unwrap();
    let (server, path) = start_private(&tmp, &["--count", "1"]);
    let pid = server.pid();
    // signal-hook's thread reads a socket of its own there too: once it
    // does, a second thread there is the one that drains.
    let reading = "unix_stream_read_generic";
    wait_until("signal-hook's thread to wait for a signal", || {
        threads_waiting_in(pid, reading) == 1
    });
    let before = 1;
    let mut client = UnixStream::connect(&path).expect("connect");
    client.write_all(&[b'x'; 2000]).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"error: line longer than 1024 bytes\n");
    wait_until("the server to drain the client", || {
        threads_waiting_in(pid, reading) == before + 1
    });
    server.signal(Signal::SIGSTOP);
    wait_until("the server to stop", || all_threads_stopped(pid));
    server.signal(Signal::SIGCONT);
    wait_until("the server to drain again, or to end", || {
        threads_waiting_in(pid, reading) == before + 1 || is_dead(pid)
    });
    assert!(!is_dead(pid), "the server stopped draining");
    client.write_all(b"more").unwrap();
    drop(client);
    let out = server.finish();
    assert!(!out.stderr.contains("Interrupted"), "{}", out.stderr);
}

#[test]
fn unix_server_writes_on_through_a_stop_and_continue() {
    // Linux 6.18. As Chapter 14's servers: stopped and continued while it
    // waits for room to write a reply, the server's write, which has a
    // timeout, fails with EINTR; it must write again, and the client,
    // which sent a million requests before reading, gets every reply.
    use crate::support::{all_threads_stopped, threads_blocked_in};
    let tmp = TempDir::new().unwrap();
    let (server, path) = start_private(&tmp, &["--count", "1"]);
    let pid = server.pid();
    let sock = UnixStream::connect(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = sock.try_clone().unwrap();
    let requests = std::thread::spawn(move || {
        writer.write_all(&b"x\n".repeat(1_000_000)).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    wait_until("the server to wait for room to write a reply", || {
        threads_blocked_in(pid, nix::libc::SYS_sendto) == 1
    });
    server.signal(Signal::SIGSTOP);
    wait_until("the server to stop", || all_threads_stopped(pid));
    server.signal(Signal::SIGCONT);
    let mut replies = Vec::new();
    (&sock).read_to_end(&mut replies).unwrap();
    requests.join().unwrap();
    assert_eq!(replies.len(), b"server got: [x]\n".len() * 1_000_000);
    let out = server.finish();
    assert!(!out.stderr.contains("Interrupted"), "{}", out.stderr);
}

/// `unix-pass-fd serve` of a file anyone may read, for 41 clients, run
/// by `setpriv` with the options `as_user` under `ulimit -n 32`; forty
/// clients that connect and never read, then one `fetch`. Returns the
/// socket's path, what `fetch` printed, and, once the forty have gone,
/// what the server did.
fn fetch_past_forty_unread_clients(
    as_user: &[&str],
) -> (String, crate::support::Finished, crate::support::Finished) {
    let dir = TempDir::new().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let file = path_in(&dir, "public");
    fs::write(&file, "public\n").unwrap();
    let path = path_in(&dir, "pass.sock");
    let script = "ulimit -n 32 && exec \"$@\"";
    let mut args = vec!["-c", script, "sh"];
    args.extend(as_user);
    // Forty clients that do not read, and one that does.
    args.extend([bin!("unix-pass-fd"), "serve", &path, &file, "--count"]);
    args.push("41");
    let (server, _) = start("bash", &args);
    let unread: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();
    let out = run(bin!("unix-pass-fd"), &["fetch", &path]);
    drop(unread);
    (path, out, server.finish())
}

#[test]
fn descriptors_in_flight_count_against_the_senders_limit() {
    // Linux 6.18. A descriptor sent and not yet received counts against
    // the sending user, and past the sender's RLIMIT_NOFILE every
    // `sendmsg` with SCM_RIGHTS fails with ETOOMANYREFS (unless the sender
    // has CAP_SYS_RESOURCE or CAP_SYS_ADMIN, as root does). Clients that
    // connect and never read keep theirs in flight: 40 of them stop a
    // server with a limit of 32, for everyone. The count is the user's,
    // machine-wide (`current_user()->unix_inflight`), so the server runs
    // as a user of its own: as `nobody`, it shared the count with the test
    // below, whose server had 40 in flight when ours began and none when
    // our `fetch` came, and `fetch` was served.
    if !can_switch_users() {
        return;
    }
    let Some(user) = a_user_of_its_own() else {
        return;
    };
    let (reuid, regid) = (format!("--reuid={user}"), format!("--regid={user}"));
    let as_user = ["setpriv", &reuid, &regid, "--clear-groups"];
    let (path, out, log) = fetch_past_forty_unread_clients(&as_user);
    assert_eq!(
        out.stderr.trim_end(),
        format!("unix-pass-fd: {path}: the server hung up")
    );
    assert!(
        log.stderr.contains("a client: ETOOMANYREFS"),
        "{}",
        log.stderr
    );
}

#[test]
fn cap_sys_admin_exempts_a_sender_from_the_limit_on_descriptors_in_flight() {
    // Linux 6.18. `too_many_unix_fds()` exempts CAP_SYS_ADMIN as well as
    // CAP_SYS_RESOURCE: the same forty silent clients as above do not stop
    // a server that runs as `nobody` with CAP_SYS_ADMIN alone.
    if !can_switch_users() {
        return;
    }
    let mut as_nobody = AS_NOBODY.to_vec();
    as_nobody.extend(["--inh-caps=+sys_admin", "--ambient-caps=+sys_admin"]);
    let (_, out, log) = fetch_past_forty_unread_clients(&as_nobody);
    assert_eq!(out.stdout, ["public"], "{}", out.stderr);
    assert!(!log.stderr.contains("ETOOMANYREFS"), "{}", log.stderr);
}

#[test]
fn fetch_waits_on_through_a_stop_and_continue() {
    // Linux 6.18. Stopped and continued (Ctrl-Z, `fg`) while it waits for
    // its descriptor, fetch's `recvmsg`, which has a timeout, fails with
    // EINTR though no handler is installed (Chapter 3): it must wait on,
    // not give up the file.
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "slow.sock");
    let file = path_in(&dir, "note");
    fs::write(&file, "handed over\n").unwrap();
    let listener = UnixListener::bind(&path).unwrap();
    let fetch = Listing::start(bin!("unix-pass-fd"), &["fetch", &path]);
    let pid = fetch.pid();
    let (conn, _) = listener.accept().unwrap();
    wait_until("fetch to wait for its descriptor", || {
        crate::support::wchan_of(pid) == "unix_stream_read_generic"
    });
    fetch.signal(Signal::SIGSTOP);
    wait_until("fetch to stop", || {
        crate::support::state_of(pid) == Some('T')
    });
    fetch.signal(Signal::SIGCONT);
    let note = fs::File::open(&file).unwrap();
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(b"note")],
        &[ControlMessage::ScmRights(&[note.as_raw_fd()])],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .ok();
    drop(conn);
    let out = fetch.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, ["handed over"]);
}

/// A failed `accept` is no client: `--count 1` still serves one. strace
/// makes the first `accept4` fail with ECONNABORTED, before the kernel
/// takes the waiting connection off the queue; the server used to count
/// that failure as its one client and leave, and the client, still in
/// the listening socket's queue, was reset (ECONNRESET).
#[test]
fn unix_pass_fd_does_not_count_a_failed_accept_as_a_client() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "pass.sock"));
    let strace = [
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=accept4",
        "-e",
        "inject=accept4:error=ECONNABORTED:when=1",
        bin!("unix-pass-fd"),
        "serve",
        &path,
        &file,
        "--count",
        "1",
    ];
    let (server, _) = start("strace", &strace);
    let fetched = run(bin!("unix-pass-fd"), &["fetch", &path]);
    assert_eq!(fetched.stdout, ["the secret"], "{}", fetched.stderr);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "unix-pass-fd: accept: Software caused connection abort (os error \
         103)\n"
    );
}

#[test]
fn fetch_says_it_timed_out_when_no_descriptor_comes() {
    // A server that accepts and sends nothing: after fetch's 10 s, the
    // error names the timeout, not EAGAIN ("Try again").
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "silent.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let out = run(bin!("unix-pass-fd"), &["fetch", &path]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(
        out.stderr,
        format!("unix-pass-fd: {path}: timed out waiting for the descriptor\n")
    );
}

#[test]
fn fetch_gives_up_on_a_server_whose_queue_is_full() {
    // Linux 6.18: a Unix stream `connect` to a listener whose queue is
    // full waits until the server accepts (`unix_stream_connect()`), for
    // ever unless the socket's SO_SNDTIMEO bounds it. A listener with a
    // backlog of 0 that never accepts, one client queued: fetch must end
    // within its ten seconds and say why. Before the fix it hung in
    // `connect` (wchan `unix_wait_for_peer`).
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "full.sock");
    let listener = bound_stream_socket(&path);
    listener.listen(0).unwrap();
    // One connection waiting fills a queue of 0: its length is over it.
    let _queued = UnixStream::connect(&path).unwrap();
    let started = std::time::Instant::now();
    let fetch = Listing::start(bin!("unix-pass-fd"), &["fetch", &path]);
    crate::support::wait_until("fetch to end, or 20 s", || {
        is_dead(fetch.pid()) || started.elapsed() > Duration::from_secs(20)
    });
    let linux = crate::support::kernel();
    assert!(
        is_dead(fetch.pid()),
        "fetch still waits after 20 s (Linux {linux})"
    );
    let out = fetch.finish();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "unix-pass-fd: {path}: timed out waiting for the server to accept\n"
        )
    );
}

#[test]
fn fetch_keeps_its_ten_seconds_through_a_stop_and_continue() {
    // Linux 6.18: stopped and continued while its `recvmsg` waits with a
    // timeout, fetch gets EINTR (signal(7)) and waits again. Six seconds
    // in, a stop and a continue must not give it ten more: it ends about
    // ten seconds after it started, not sixteen.
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "stopped.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let started = std::time::Instant::now();
    let fetch = Listing::start(bin!("unix-pass-fd"), &["fetch", &path]);
    let pid = fetch.pid();
    // The subject is the passing of time: six of fetch's ten seconds.
    std::thread::sleep(Duration::from_secs(6));
    fetch.signal(Signal::SIGSTOP);
    crate::support::wait_until("fetch to stop", || {
        crate::support::state_of(pid) == Some('T')
    });
    fetch.signal(Signal::SIGCONT);
    let out = fetch.finish();
    let took = started.elapsed();
    assert_eq!(
        out.stderr,
        format!("unix-pass-fd: {path}: timed out waiting for the descriptor\n")
    );
    assert!(took < Duration::from_secs(14), "took {took:?}");
}

#[test]
fn fetch_receives_its_descriptor_close_on_exec() {
    // Linux 6.18: MSG_CMSG_CLOEXEC sets O_CLOEXEC (octal 02000000 in the
    // `flags:` of /proc/PID/fdinfo) on the descriptor as it arrives.
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "cloexec.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut fetch = Listing::start(bin!("unix-pass-fd"), &["fetch", &path]);
    let (conn, _) = listener.accept().unwrap();
    // Close-on-exec here: no listing another test starts may hold it.
    let (reader, writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let pipe =
        fs::read_link(format!("/proc/self/fd/{}", reader.as_raw_fd())).unwrap();
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(b"x")],
        &[ControlMessage::ScmRights(&[reader.as_raw_fd()])],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    drop(reader);
    let mut writer = fs::File::from(writer);
    writer.write_all(b"through the pipe\n").unwrap();
    // Once the line is out, fetch holds the pipe and copies from it.
    fetch.expect("through the pipe");
    let pid = fetch.pid();
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).unwrap();
    let received: Vec<_> = fds
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            (target == pipe).then(|| entry.file_name())
        })
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    let fd = received[0].to_string_lossy();
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .map(|octal| u32::from_str_radix(octal.trim(), 8).unwrap())
        .unwrap();
    assert_ne!(flags & 0o2000000, 0, "not close-on-exec: {info}");
    drop(writer);
    let out = fetch.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

/// Refused a client's thread (`ulimit -u 3`: its main thread, the one
/// that waits for signals and the one that writes the accepting thread's
/// log lines), the server tells that client it is busy, as it
/// tells one over its limit, and does not count it: with `--count 1` it
/// still takes the next. (It counted the client first, then dropped it:
/// the first client read the end of the stream, and one that had sent a
/// request had its read reset.)
#[test]
fn unix_server_refuses_a_client_whose_thread_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777))
        .unwrap();
    let mut plain = std::process::Command::new(bin!("unix-server"));
    plain.args(["--count", "1"]).env("TMPDIR", tmp.path());
    let Some((mut command, _dir)) =
        crate::support::with_thread_limit(&plain, 3)
    else {
        return;
    };
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let path = server.expect(r"Server listening on (.+)").remove(1);
    for client in ["first", "second"] {
        let mut sock = UnixStream::connect(&path)
            .unwrap_or_else(|err| panic!("{client}: {err}"));
        sock.set_read_timeout(Some(crate::support::PATIENCE))
            .unwrap();
        let mut reply = String::new();
        sock.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "error: server busy\n", "{client}");
    }
}

/// As `unix_server_keeps_its_default_limit_below_the_descriptors`, but the
/// server inherits twenty descriptors open without close-on-exec, as a
/// careless launcher leaves them: its default limit must leave room for
/// them, or `accept` fails before the table is full, no idle client is
/// closed to make room, and the new client waits for their deadlines.
#[test]
fn unix_server_leaves_room_in_its_default_limit_for_inherited_descriptors() {
    use crate::support::lasting_fds;
    let tmp = tempfile::tempdir().unwrap();
    let inherited: String =
        (3..23).map(|fd| format!(" {fd}</dev/null")).collect();
    let script = format!("ulimit -n 64 && exec \"$0\" \"$@\"{inherited} 2>&1");
    let mut command = std::process::Command::new("bash");
    command
        .args(["-c", &script, bin!("unix-server"), "--timeout", "600"])
        .env("TMPDIR", tmp.path());
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let path = server.expect(r"Server listening on (.+)").remove(1);
    let pid = server.pid();
    wait_until(
        "the server to hold its twenty inherited descriptors",
        || lasting_fds(pid) > 3 + 20,
    );
    let idle: Vec<_> = (0..100)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    wait_until("the server to hold twenty idle clients", || {
        lasting_fds(pid) >= 3 + 20 + 1 + 20
    });
    // Not a synchronisation: the time a connection must have been idle.
    std::thread::sleep(Duration::from_millis(1100));
    let started = std::time::Instant::now();
    assert_eq!(ask(&path, "new\n"), "server got: [new]\n");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    drop((server, idle));
}

/// The path that the thread `tid` of `pid`, held on its way into
/// `mkdir`, is about to make: the call's first argument, read from
/// /proc/<pid>/task/<tid>/syscall, points at it in the process's memory.
fn path_being_made(pid: nix::unistd::Pid) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileExt;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let call = fs::read_to_string(task.path().join("syscall")).ok()?;
        let mut fields = call.split(' ');
        if fields.next() != Some(&nix::libc::SYS_mkdir.to_string()) {
            continue;
        }
        let at = fields.next()?.strip_prefix("0x")?;
        let at = u64::from_str_radix(at, 16).ok()?;
        let mem = fs::File::open(format!("/proc/{pid}/mem")).ok()?;
        let mut bytes = [0; 256];
        let n = mem.read_at(&mut bytes, at).ok()?;
        let end = bytes[..n].iter().position(|&b| b == 0)?;
        let path = std::ffi::OsStr::from_bytes(&bytes[..end]);
        return Some(std::path::PathBuf::from(path));
    }
    None
}

#[test]
fn a_directory_someone_else_made_under_the_servers_own_name_is_not_used() {
    // Linux 6.18, glibc's mkdtemp, which calls mkdir. strace holds the
    // server's first `mkdir` on its way in; the test reads the name it is
    // about to make and makes that directory first, open to all and, as
    // root, another user's: a stand-in for someone who guessed the name.
    // The server must neither use it nor give up, but make another of its
    // own, mode 0700. A copy of the listing that made a name from its pid
    // (`create_dir` of unix-server.<pid>) ended here: "cannot make a
    // directory ...: File exists".
    if !have("strace") {
        return;
    }
    let tmp = open_dir();
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-q", "-o", "/dev/null", "-e", "trace=mkdir"])
        .args(["-e", "signal=none"])
        .arg("--inject=mkdir:delay_enter=3000000:when=1")
        .args(["--", bin!("unix-server"), "--count", "1"])
        .env("TMPDIR", tmp.path());
    let mut server = Listing::spawn(&mut command, std::process::Stdio::piped());
    let mut planted = None;
    crate::support::wait_until("strace to hold the server's mkdir", || {
        planted = crate::support::children_of(server.pid())
            .first()
            .and_then(|&pid| path_being_made(pid));
        planted.is_some()
    });
    let planted = planted.unwrap();
    assert_eq!(planted.parent(), Some(tmp.path()), "{}", planted.display());
    fs::create_dir(&planted).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o777)).unwrap();
    if root() {
        std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    }
    let shown = server.expect(r"Server listening on (.+)").remove(1);
    let dir = Path::new(&shown).parent().unwrap().to_path_buf();
    assert_eq!(dir.parent(), Some(tmp.path()));
    assert_ne!(dir, planted, "the server took the planted directory");
    let meta = fs::metadata(&dir).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700, "{}", dir.display());
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(ask(&shown, "mine\n"), "server got: [mine]\n");
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    // The stranger's directory is as it was; the server's is gone.
    assert!(fs::read_dir(&planted).unwrap().next().is_none());
    assert_eq!(fs::metadata(&planted).unwrap().mode() & 0o7777, 0o777);
    assert!(!dir.exists(), "{} is still there", dir.display());
}

/// Linux 6.18: a security policy (an LSM hook, `security_socket_accept()`,
/// or a seccomp filter) can make every `accept` fail at once, before any
/// wait for a client; strace plays one with EPERM. The server must pause
/// after each failure and log the run of them once. It used to retry at
/// once, with a line per failure: tens of thousands of lines in two
/// seconds, and all the CPU it could get.
#[test]
fn pass_fd_server_pauses_and_logs_once_when_accept_keeps_failing() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "refused.sock"));
    let (cpu, stderr) = crate::support::under_a_refused_call(
        bin!("unix-pass-fd"),
        &["serve", &path, &file],
        "accept4",
        "EPERM",
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            "unix-pass-fd: accept: Operation not permitted (os error 1); \
             trying again, less often"
        ),
        "{} lines",
        lines.len()
    );
    assert_eq!(lines.len(), 1, "{:?}", &lines[..lines.len().min(5)]);
    assert!(cpu < Duration::from_millis(300), "{cpu:?} of CPU in 2 s");
    assert!(!Path::new(&path).exists());
}

/// Only EWOULDBLOCK from `flock` means that another server holds the
/// lock. Any other failure (ENOLCK: a file system without locks, or a
/// kernel out of lock records; strace plays it here) must be named as
/// itself, in one line; the server used to say "another server is using
/// PATH", of a server that did not exist.
#[test]
fn unix_server_names_a_failed_lock_and_blames_no_other_server() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "nolock.sock");
    let out = run(
        "strace",
        &[
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=flock",
            "-e",
            "inject=flock:error=ENOLCK",
            bin!("unix-server"),
            &path,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(
        out.stderr,
        format!(
            "unix-server: cannot lock {path}.lock: No locks available (os \
             error 37)\n"
        )
    );
    assert!(!Path::new(&path).exists());
}

/// The numbers of Figure 16-1 and its caption are those a run of the pair
/// under strace gives (Linux 6.18, glibc): the server's connection and
/// the file it opens and sends, the client's socket and the number the
/// file arrives as. Every number the figure draws is checked, so that a
/// listing that opened something more, or sooner, changes the figure.
#[test]
fn figure_16_1_draws_the_numbers_a_traced_run_gives() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "pass.sock"));
    let (server_trace, client_trace) =
        (path_in(&dir, "server.trace"), path_in(&dir, "client.trace"));
    let (server, _) = start(
        "strace",
        &[
            "-f",
            "-qq",
            "-o",
            &server_trace,
            "-e",
            "trace=accept4,openat,sendmsg,close",
            bin!("unix-pass-fd"),
            "serve",
            &path,
            &file,
            "--count",
            "1",
        ],
    );
    let fetched = run(
        "strace",
        &[
            "-f",
            "-qq",
            "-o",
            &client_trace,
            "-e",
            "trace=socket,recvmsg",
            bin!("unix-pass-fd"),
            "fetch",
            &path,
        ],
    );
    assert_eq!(fetched.stdout, ["the secret"], "{}", fetched.stderr);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let server_trace = fs::read_to_string(&server_trace).unwrap();
    let client_trace = fs::read_to_string(&client_trace).unwrap();
    // The first number a line of the trace gives, as `pattern` finds it.
    let traced = |trace: &str, pattern: &str| -> Vec<String> {
        let pattern = regex::Regex::new(pattern).unwrap();
        let found = trace.lines().find_map(|line| pattern.captures(line));
        let found = found.unwrap_or_else(|| panic!("{pattern}: {trace}"));
        found
            .iter()
            .skip(1)
            .map(|c| c.unwrap().as_str().into())
            .collect()
    };
    let accepted = traced(&server_trace, r"accept4\((\d+), .*\) = (\d+)$");
    let (listener, conn) = (&accepted[0], &accepted[1]);
    let sent = traced(
        &server_trace,
        r"sendmsg\((\d+), .*SCM_RIGHTS, cmsg_data=\[(\d+)\]",
    );
    assert_eq!(&sent[0], conn, "{server_trace}");
    let sent = &sent[1];
    // The file sent is the one opened for this client, and closed after.
    let after_accept = server_trace.split_once("accept4(").unwrap().1;
    let opened = format!(r#"openat(AT_FDCWD, "{file}", "#);
    let opened = after_accept.lines().find(|line| line.contains(&opened));
    assert!(
        opened.is_some_and(|line| line.ends_with(&format!(" = {sent}"))),
        "{server_trace}"
    );
    let after_send = after_accept.split_once("sendmsg(").unwrap().1;
    assert!(
        after_send.contains(&format!(" close({sent}) ")),
        "{server_trace}"
    );
    let socket = traced(&client_trace, r"socket\(AF_UNIX, .*\) = (\d+)$");
    let socket = &socket[0];
    let received = traced(
        &client_trace,
        r"recvmsg\((\d+), .*SCM_RIGHTS, cmsg_data=\[(\d+)\]",
    );
    assert_eq!(&received[0], socket, "{client_trace}");
    let received = &received[1];

    let texts = figure_texts("ch16-scm-rights.svg");
    let label = |name: &str| {
        let at = texts.iter().position(|t| t == name).expect(name);
        texts[at - 1].clone()
    };
    assert_eq!(&label("listener"), listener, "{texts:?}");
    assert_eq!(&label("connection"), conn, "{texts:?}");
    assert_eq!(&label("secret"), sent, "{texts:?}");
    assert_eq!(&label("socket"), socket, "{texts:?}");
    assert_eq!(&label("secret (new)"), received, "{texts:?}");
    // The numbers in the figure's notes; with the labels above, and the
    // numbers no trace gives (the standard streams, signal-hook's pair,
    // which the older test checks, and the offset), every text of the
    // figure with a digit in it.
    let notes = [
        format!("SCM_RIGHTS [{sent}]"),
        format!("by the server's {sent} and the client's {received}"),
        format!("sendmsg({conn}, …, [{sent}], …)"),
        format!("then close({sent}): the file"),
        format!("client's {received}"),
        format!("recvmsg({socket}, …, MSG_CMSG_CLOEXEC)"),
        format!("installs it as {received}, close-on-exec"),
    ];
    for text in &notes {
        assert!(texts.contains(text), "{text:?} not in {texts:?}");
    }
    let untraced = ["0-2", "3 4", "offset 0, read-only: shared"];
    let labels = [listener, conn, sent, socket, received];
    for text in &texts {
        assert!(
            !text.contains(|c: char| c.is_ascii_digit())
                || notes.contains(text)
                || labels.contains(&text)
                || untraced.contains(&text.as_str()),
            "{text:?}: a number the test does not check, in {texts:?}"
        );
    }
    // The description read aloud in its place says the same numbers.
    let svg = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../src/figures/ch16-scm-rights.svg"),
    )
    .unwrap();
    for said in [
        format!("{listener}, the listening socket; {conn}, the connection"),
        format!("{sent}, the secret file"),
        format!("{socket}, its socket; and {received}, new"),
        format!("between the server's {conn} and the client's {socket}"),
        format!(
            "sendmsg on {conn} with an SCM_RIGHTS message carrying \
                 descriptor {sent}:"
        ),
        format!("recvmsg on {socket}, with MSG_CMSG_CLOEXEC"),
        format!("as descriptor {received}, close-on-exec"),
        format!("The server's {sent} and the client's {received} now refer"),
        format!(
            "closes {sent} after sending, the file stays open through \
                 the client's {received}."
        ),
    ] {
        assert!(svg.contains(&said), "the figure's description: {said:?}");
    }
    let chapter = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/ch16-unix.md"),
    )
    .unwrap();
    let caption = chapter
        .lines()
        .find(|line| line.starts_with("<figcaption>Figure 16-1:"))
        .expect("the caption");
    assert!(
        caption.contains(&format!(
            "the server's {sent} and the client's {received} are two names"
        )),
        "{caption}"
    );
}

/// Linux 6.18: a Unix client that connects, writes and closes while the
/// server is stopped, before it could be accepted, is still handed over
/// by `accept` (`unix_accept()` takes the queued socket whatever its
/// peer did since): no `accept` error, as other systems' ECONNABORTED would
/// be. The server counts it (`--count 1` ends) and tries to serve it;
/// the descriptor has nowhere to go, and the log says so.
#[test]
fn unix_pass_fd_accepts_a_client_that_left_while_it_waited_in_the_queue() {
    use crate::support::all_threads_stopped;
    let dir = tempfile::tempdir().unwrap();
    let (file, path) = (secret(&dir), path_in(&dir, "pass.sock"));
    let (server, _) = start(
        bin!("unix-pass-fd"),
        &["serve", &path, &file, "--count", "1"],
    );
    let pid = server.pid();
    server.signal(Signal::SIGSTOP);
    wait_until("the server to stop", || all_threads_stopped(pid));
    let mut gone = UnixStream::connect(&path).unwrap();
    gone.write_all(b"never read\n").unwrap();
    drop(gone);
    server.signal(Signal::SIGCONT);
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stderr.contains("accept"), "{}", out.stderr);
    assert_eq!(out.stderr, "unix-pass-fd: a client: EPIPE: Broken pipe\n");
}

/// Linux 6.18: a plain `read` of a message that carries a descriptor
/// returns its bytes, and the kernel, with no room to install the
/// descriptor, closes it. The descriptor passed is a pipe's
/// write end, whose other copy is closed: while the message waits, the
/// pipe stays open; once the byte is read, the pipe's reader sees its end.
#[test]
fn a_plain_read_takes_the_bytes_and_the_kernel_closes_the_descriptors() {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let (sender, mut receiver) = UnixStream::pair().unwrap();
    let (mut pipe_reader, pipe_writer) = std::io::pipe().unwrap();
    let passed = [pipe_writer.as_raw_fd()];
    let data = [std::io::IoSlice::new(b"x")];
    let rights = [ControlMessage::ScmRights(&passed)];
    let sent = sendmsg::<()>(
        sender.as_raw_fd(),
        &data,
        &rights,
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(sent, 1);
    drop(pipe_writer);
    // In flight, the descriptor still holds the pipe's write end open.
    let flags = nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&pipe_reader, nix::fcntl::FcntlArg::F_SETFL(flags))
        .unwrap();
    let mut buf = [0; 16];
    let open = pipe_reader.read(&mut buf).unwrap_err();
    assert_eq!(open.kind(), ErrorKind::WouldBlock);
    assert_eq!(receiver.read(&mut buf).unwrap(), 1);
    assert_eq!(&buf[..1], b"x");
    // The end of the pipe shows that no copy of its write end is left, in
    // this process or any: the kernel closed the one it carried. (Counting
    // this process's descriptors would not: other tests open and close
    // theirs meanwhile.) A child that another test forked meanwhile holds
    // a copy until its `exec` closes it (close-on-exec), so the end may
    // come a moment later: under load one read found the pipe still open.
    wait_until("the pipe's end", || match pipe_reader.read(&mut buf) {
        Ok(n) => {
            assert_eq!(n, 0, "the pipe's end");
            true
        }
        Err(err) if err.kind() == ErrorKind::WouldBlock => false,
        Err(err) => panic!("reading the pipe: {err}"),
    });
    sender.shutdown(Shutdown::Both).unwrap();
}

/// With one descriptor to spare (`ulimit -n 4`), signal-hook cannot make
/// the socket pair its handler writes to: the server and `unix-pass-fd
/// serve` must say that they could not watch for signals, not only "Too
/// many open files", and leave no socket file behind.
#[test]
fn unix_servers_name_the_step_when_descriptors_run_out() {
    use crate::support::assert_names_the_step_when_descriptors_run_out;
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("socket");
    let file = tmp.path().join("file");
    std::fs::write(&file, "passed\n").unwrap();
    let server = || {
        let mut command = std::process::Command::new(bin!("unix-server"));
        command.arg(&socket);
        command
    };
    let pass_fd = || {
        let mut command = std::process::Command::new(bin!("unix-pass-fd"));
        command.arg("serve").arg(&socket).arg(&file);
        command
    };
    let said = "cannot watch for signals: Too many open files (os error 24)";
    for (name, lines) in [
        (
            "unix-server",
            assert_names_the_step_when_descriptors_run_out(server, [4]),
        ),
        (
            "unix-pass-fd",
            assert_names_the_step_when_descriptors_run_out(pass_fd, [4]),
        ),
    ] {
        assert_eq!(lines, [format!("{name}: {said}")]);
        assert!(!socket.exists(), "{name} left {socket:?}");
    }
}
