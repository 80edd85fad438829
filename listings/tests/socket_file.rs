//! The servers on a Unix socket path: Listings 16-1 (`unix-server PATH`)
//! and 30-1 (`async-server --unix PATH`) take the path the same way,
//! with the same code (`claim_path`), and must keep the same promises
//! about the files there: a live socket is never taken, a lock file is
//! never opened through a link or a FIFO, nor left open to other users,
//! nor made beside a file that is not a socket. The promises are written
//! here once; each chapter's tests call them with its server. A server is
//! given as its binary and the arguments that come before the path.

use std::fs;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;

use crate::support::{Listing, assert_rejects, have, need_root, run};

/// `setpriv` arguments that run a command as the user `nobody`.
pub const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
];

/// Whether the test can run commands as another user; says why not.
pub fn can_switch_users() -> bool {
    need_root("run a client as another user") && have("setpriv")
}

/// A temporary directory that other users may enter, for the tests that
/// connect as another user.
pub fn open_dir() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub fn path_in(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_string()
}

/// A Unix stream socket bound to `path` that does not listen yet: a
/// program between its `bind` and its `listen`.
pub fn bound_stream_socket(path: &str) -> socket2::Socket {
    let socket = socket2::Socket::new(
        socket2::Domain::UNIX,
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket
        .bind(&socket2::SockAddr::unix(path).unwrap())
        .unwrap();
    socket
}

/// `before`, then `path`, then `after`: a server's command line.
fn args<'a>(
    before: &[&'a str],
    path: &'a str,
    after: &[&'a str],
) -> Vec<&'a str> {
    [before, &[path], after].concat()
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

/// Serves one client on `path`, and ends.
#[track_caller]
fn serve_one(bin: &str, before: &[&str], path: &str, line: &str) {
    let mut server =
        Listing::start(bin, &args(before, path, &["--count", "1"]));
    server.expect(r"Server listening on .+");
    assert_eq!(
        ask(path, &format!("{line}\n")),
        format!("server got: [{line}]\n")
    );
    let out = server.finish();
    assert!(out.status.success(), "{}", out.stderr);
}

/// Linux 6.18. A program that takes no lock (a test, `nc -lU`, an older
/// server) holds the path: the lock is free, the file is live. The
/// server refuses the path, and leaves the file as it was; the same with
/// the program's backlog full (the probe's `connect` fails with EAGAIN),
/// and with a live datagram socket (EPROTOTYPE, which unix_find_bsd()
/// returns only once it has found a socket bound to the file).
pub fn leaves_alone_a_live_socket_of_a_program_that_takes_no_lock(
    bin: &str,
    before: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "server.sock");
    let other = UnixListener::bind(&path).unwrap();
    refused_as_in_use_and_left_alone(bin, before, &path);
    let _client = UnixStream::connect(&path).unwrap();
    drop(other);
    fs::remove_file(&path).unwrap();
    let full = bound_stream_socket(&path);
    full.listen(0).unwrap();
    let _queued = UnixStream::connect(&path).unwrap();
    refused_as_in_use_and_left_alone(bin, before, &path);
    drop(full);
    fs::remove_file(&path).unwrap();
    let datagram = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    refused_as_in_use_and_left_alone(bin, before, &path);
    drop(datagram);
}

/// Asks that the server refuse `path`, a live socket of a program that
/// takes no lock, saying so, and leave the file as it was.
#[track_caller]
fn refused_as_in_use_and_left_alone(bin: &str, before: &[&str], path: &str) {
    let inode = fs::metadata(path).unwrap().ino();
    assert_rejects(
        bin,
        &args(before, path, &[]),
        &format!("{path} is in use by a program that takes no lock"),
    );
    assert_eq!(
        fs::metadata(path).unwrap().ino(),
        inode,
        "the file replaced"
    );
}

/// The lock file is opened never through a symbolic link (which would
/// let anyone make the server create a file anywhere), and never when it
/// is someone else's: in a directory anyone may write, someone else made
/// it first, and can hold its lock.
pub fn will_not_lock_a_file_of_another_user_or_a_symlink(
    bin: &str,
    before: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "s.sock");
    let elsewhere = path_in(&dir, "elsewhere");
    std::os::unix::fs::symlink(&elsewhere, format!("{path}.lock")).unwrap();
    assert_rejects(
        bin,
        &args(before, &path, &[]),
        &format!("cannot open {path}.lock: Too many levels of symbolic links"),
    );
    assert!(!Path::new(&elsewhere).exists(), "made through the link");
    if !can_switch_users() {
        return;
    }
    // Not sticky, as /tmp is: there, Linux's fs.protected_regular may
    // refuse even root's open of it, before the server can look at its
    // owner.
    let open = open_dir();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o777))
        .unwrap();
    let path = path_in(&open, "t.sock");
    let mut command = AS_NOBODY.to_vec();
    let lock = format!("{path}.lock");
    command.extend(["touch", &lock]);
    assert!(run(command[0], &command[1..]).status.success());
    assert_rejects(
        bin,
        &args(before, &path, &[]),
        &format!("cannot open {lock}: it belongs to uid "),
    );
}

/// A lock file is opened by name in a directory others may write, so
/// what is found there is checked before it is used. A hard link to a
/// file of ours passes the owner check, and setting the lock's mode would
/// set that file's (as root, any root file's on the same file system). A
/// FIFO with no reader makes a plain `open` wait for ever, deaf to the
/// signals the server has taken over by then.
pub fn will_not_lock_a_hard_link_or_a_fifo(bin: &str, before: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "s.sock");
    let victim = path_in(&dir, "victim");
    fs::write(&victim, "precious\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    fs::hard_link(&victim, format!("{path}.lock")).unwrap();
    assert_rejects(
        bin,
        &args(before, &path, &[]),
        &format!("cannot use {path}.lock: it is not a file of its own"),
    );
    let mode = fs::metadata(&victim).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "the linked file's mode is unchanged");
    fs::remove_file(format!("{path}.lock")).unwrap();
    nix::unistd::mkfifo(
        Path::new(&format!("{path}.lock")),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    assert_rejects(
        bin,
        &args(before, &path, &[]),
        &format!("cannot open {path}.lock: No such device or address"),
    );
}

/// The lock file is made 0600, whatever the umask, and an older one is
/// set to 0600: `flock` needs only a descriptor open for reading, so a
/// lock file others may read is one they can hold for ever, keeping the
/// server out. Here `nobody` cannot open it, and the server starts again.
pub fn keeps_its_lock_file_from_other_users(bin: &str, before: &[&str]) {
    let dir = open_dir();
    let path = path_in(&dir, "u.sock");
    let lock = format!("{path}.lock");
    // One made by an older version, with the umask's mode.
    fs::write(&lock, "").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    serve_one(bin, before, &path, "one");
    let mode = fs::metadata(&lock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    fs::remove_file(&lock).unwrap();
    serve_one(bin, before, &path, "two");
    let mode = fs::metadata(&lock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "made with the umask's mode");
    if !can_switch_users() || !have("flock") {
        return;
    }
    let mut command = AS_NOBODY.to_vec();
    command.extend(["flock", "-n", &lock, "echo", "held"]);
    let out = run(command[0], &command[1..]);
    assert!(out.stdout.is_empty(), "nobody held the lock");
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    serve_one(bin, before, &path, "three");
}

/// A file that is not a socket is left alone, and no lock file is made
/// beside it: a typo that names someone's file or directory must cost
/// nothing. A server that made PATH.lock before it looked, and kept it,
/// run as root on /etc/passwd, would leave /etc/passwd.lock, and then
/// `useradd` would refuse to run ("existing lock file without a PID").
pub fn will_not_remove_a_file_that_is_not_a_socket(bin: &str, before: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir, "precious");
    fs::write(&path, "keep me").unwrap();
    let sub = path_in(&dir, "directory");
    fs::create_dir(&sub).unwrap();
    let inside = format!("{sub}/.");
    for path in [&path, &sub, &inside] {
        assert_rejects(
            bin,
            &args(before, path, &[]),
            &format!("{path} exists and is not a socket"),
        );
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    let mut left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .chain(fs::read_dir(&sub).unwrap())
        .map(|entry| entry.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["directory", "precious"], "no lock file beside them");
}

/// An empty path, a directory's path and a path too long for sun_path can
/// never be bound: the server says so in one line, and leaves nothing
/// behind, not even a lock file (once `.lock` in the working directory,
/// DIR/.lock, and PATH.lock).
pub fn makes_no_lock_file_for_a_path_that_names_no_socket(
    bin: &str,
    before: &[&str],
) {
    let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("x".repeat(120));
    let long = long.to_str().unwrap();
    let slash = format!("{}/", dir.path().display());
    for (path, complaint) in [
        ("", "'' names no socket file".to_string()),
        (&slash, format!("'{slash}' names no socket file")),
        (
            long,
            format!(
                "cannot listen on {long}: path must be shorter than SUN_LEN"
            ),
        ),
    ] {
        let mut command = std::process::Command::new(bin);
        command
            .args(args(before, path, &[]))
            .current_dir(dir.path());
        let out =
            Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
        assert_eq!(out.status.code(), Some(1), "{path}: {}", out.stderr);
        assert_eq!(out.stderr, format!("{name}: {complaint}\n"));
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{path}: left {left:?}");
    }
}
