//! Servers on the book's default port, and servers out of descriptors.

use std::time::{Duration, Instant};

use super::*;

/// Serialises the tests that bind the book's default port, 50008: only
/// blessing does, so that the outputs show the command a reader types.
/// It is the only such lock: a second one would let two tests bind the
/// port at once (`harness` checks that no other test file keeps one).
pub fn default_port() -> std::sync::MutexGuard<'static, ()> {
    static PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PORT.lock().unwrap_or_else(|e| e.into_inner())
}

/// `args`, plus `address` unless blessing: checks run on a free port,
/// blessing on the default one, as the book shows.
pub fn unless_blessing<'a>(args: &[&'a str], address: &'a str) -> Vec<&'a str> {
    let mut args = args.to_vec();
    if !blessing() {
        args.push(address);
    }
    args
}

/// Starts the one-client-at-a-time server `bin` with a soft limit of `fds`
/// descriptors, which leaves none for `accept`, and lets `client` connect
/// to the address it prints (from a thread, which returns what the client
/// got). The server must log the failure once (`failure`), use almost no
/// CPU while it lasts, and serve the client once `prlimit` makes room,
/// with no second line about the failure. Returns what the client got and
/// the server, which has just printed the line after the failure.
#[track_caller]
pub fn out_of_descriptors_waits_then_serves(
    bin: &str,
    args: &[&str],
    fds: usize,
    failure: &str,
    client: impl FnOnce(&str) -> std::thread::JoinHandle<String>,
) -> (String, Listing) {
    let script = format!("ulimit -S -n {fds} && exec \"$0\" \"$@\" 2>&1");
    let mut command = vec!["-c", &script, bin];
    command.extend(args);
    let mut server = Listing::start("bash", &command);
    let addr = server.expect(r"Server listening on (\S+)").remove(1);
    let pid = server.pid();
    let waiting = client(&addr);
    let failed = server.next_line();
    assert!(failed.starts_with(failure), "{failed}");
    // It waits between tries: over two seconds it uses almost no CPU,
    // where a loop that retried at once would use all it could get.
    let (cpu, started) = (cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2)); // The wait is the test.
    let used = cpu_time(pid) - cpu;
    assert!(
        used < Duration::from_millis(300),
        "{used:?} of CPU in {:?}",
        started.elapsed()
    );
    let room = nix::libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: prlimit only reads `room`; no old value is asked for.
    let raised = unsafe {
        nix::libc::prlimit(
            pid.as_raw(),
            nix::libc::RLIMIT_NOFILE,
            &room,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(raised, 0, "prlimit: {}", std::io::Error::last_os_error());
    let got = waiting.join().expect("the client thread");
    // The whole run of failures was one line: the next says who was served.
    let served = server.next_line();
    assert!(!served.starts_with(failure), "logged again: {served}");
    (got, server)
}

/// Whether this machine has IPv6 on loopback; says so if not.
pub fn ipv6() -> bool {
    let ok = std::net::UdpSocket::bind("[::1]:0").is_ok();
    if !ok {
        eprintln!("skipped: no IPv6 on loopback here");
    }
    ok
}

/// Whether `unshare` can give a program a private /etc/hosts here.
pub fn private_hosts_file() -> bool {
    if !have("unshare") {
        return false;
    }
    let probe = run("unshare", &["--map-root-user", "--mount", "true"]);
    if !probe.status.success() {
        assert!(std::env::var_os("CI").is_none(), "{}", probe.stderr);
        eprintln!("skipped: unshare cannot make a mount namespace here");
    }
    probe.status.success()
}

/// Debian's /etc/hosts: `localhost` names 127.0.0.1 and ::1, and
/// getaddrinfo puts ::1 first (RFC 6724), whatever the order here.
pub const DEBIAN_HOSTS: &str =
    "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";

/// Runs `bin` with `args` in a mount namespace of its own, where
/// /etc/hosts holds `hosts` (check `private_hosts_file` first).
pub fn run_with_hosts(hosts: &str, bin: &str, args: &[&str]) -> Finished {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), hosts).unwrap();
    let script = "mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"";
    let mut all = vec![
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
        file.path().to_str().unwrap(),
        bin,
    ];
    all.extend_from_slice(args);
    run("unshare", &all)
}
