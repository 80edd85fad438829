//! Chapter 8, Interrupted system calls: Listings 8-1 (`sig-eintr`) and
//! 8-2 (`sig-restart-table`).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{
    Listing, assert_rejects, assert_session_matches_book, can_trace, cargo_run,
    have, run, server_end, shell, signal_as_its_handler_goes_in, state_of,
    wait_until,
};

#[test]
fn sig_eintr_read_fails_with_eintr_without_sa_restart() {
    // Kernel behaviour, seen on Linux 6.18: a `read` of a pipe that a
    // handler interrupts fails with EINTR unless SA_RESTART is set.
    let mut eintr = Listing::start(bin!("sig-eintr"), &[]);
    eintr.expect("SIGUSR1 handler installed with SA_RESTART: false");
    eintr.expect(r"Reading an empty pipe as pid \d+; try: kill -USR1 \d+");
    wait_until("the read to block", || state_of(eintr.pid()) == Some('S'));
    eintr.signal(Signal::SIGUSR1);
    eintr.expect("Handler: SIGUSR1 arrived");
    eintr.expect(r"read failed with EINTR; the handler ran 1 time\(s\)");
    assert!(eintr.finish().status.success());
}

#[test]
fn sig_eintr_read_is_restarted_with_sa_restart_and_with_signal_hook() {
    let mut session = Vec::new();
    for args in [&[][..], &["--restart"][..], &["--signal-hook"][..]] {
        let restart = !args.is_empty();
        let mut eintr = Listing::start(bin!("sig-eintr"), args);
        eintr.expect(&format!(
            "SIGUSR1 handler installed with SA_RESTART: {restart}"
        ));
        eintr.next_line();
        let pid = eintr.pid();
        wait_until("the read to block", || state_of(pid) == Some('S'));
        let usr1 = format!("kill -USR1 {pid}");
        let mut typed = vec![(usr1.clone(), shell(&usr1))];
        eintr.expect("Handler: SIGUSR1 arrived");
        if restart {
            // The read went on: asleep again, nothing printed.
            assert!(eintr.no_line_within(Duration::from_millis(500)));
            assert_eq!(state_of(pid), Some('S'));
            let usr2 = format!("kill -USR2 {pid}");
            typed.push((usr2.clone(), shell(&usr2)));
            eintr.expect(
                r"read returned 1 byte\(s\) \[!\]; the handler ran 1 time\(s\)",
            );
        } else {
            eintr
                .expect(r"read failed with EINTR; the handler ran 1 time\(s\)");
        }
        let out = eintr.finish();
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        session.push((cargo_run("sig-eintr", args), out.stdout, typed));
    }
    for (i, name) in ["plain", "restart", "signal-hook"].iter().enumerate() {
        let (command, stdout, typed) = &session[i];
        assert_session_matches_book(
            &format!("ch08-eintr/08-01-sig-eintr-{name}.out"),
            &[(command.clone(), stdout)],
        );
        let typed: Vec<_> =
            typed.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
        assert_session_matches_book(
            &format!("ch08-eintr/08-01-sig-eintr-{name}-terminal-2.out"),
            &typed,
        );
    }
}

#[test]
fn sig_restart_table_says_which_calls_give_up_and_matches_the_book() {
    // Kernel behaviour, seen on Linux 6.18: which calls SA_RESTART
    // restarts and which give up with EINTR all the same (the lists in
    // signal(7)).
    let out = run(bin!("sig-restart-table"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let row = |call: &str| -> (String, String) {
        let line = out
            .stdout
            .iter()
            .find(|l| l.starts_with(call))
            .unwrap_or_else(|| panic!("no row for {call}"));
        let cells: Vec<_> = line[36..].split_whitespace().collect();
        (cells[0].to_string(), cells[1].to_string())
    };
    let both = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(row("std File::read"), both("Err(Interrupted)", "Ok"));
    assert_eq!(row("std Read::read_exact"), both("Ok", "Ok"));
    // io::copy's documentation promises to retry Interrupted; the splice
    // it hands a pipe to is not retried (std 1.95, kernel_copy/linux.rs).
    assert_eq!(row("std io::copy"), both("Err(Interrupted)", "Ok"));
    assert_eq!(row("nix unistd::read"), both("Err(EINTR)", "Ok"));
    // A FIFO's open waits for the other side, and a handler without
    // SA_RESTART fails it with EINTR (fifo_open's wait_for_partner): std
    // opens again (cvt_r around open64 in std 1.95's sys/fs/unix.rs), so an
    // alarm cannot end File::open; nix's open hands the EINTR back.
    assert_eq!(row("std File::open, FIFO"), both("Ok", "Ok"));
    assert_eq!(row("nix fcntl::open, FIFO"), both("Err(EINTR)", "Ok"));
    assert_eq!(
        row("std TcpStream::read, read_timeout"),
        both("Err(Interrupted)", "Err(Interrupted)")
    );
    assert_eq!(row("std TcpListener::accept"), both("Ok", "Ok"));
    assert_eq!(row("nix poll"), both("Err(EINTR)", "Err(EINTR)"));
    assert_eq!(row("std thread::sleep"), both("Ok", "Ok"));
    assert_eq!(row("nix sys::wait::waitpid"), both("Err(EINTR)", "Ok"));
    assert_session_matches_book(
        "ch08-eintr/08-02-sig-restart-table.out",
        &[(cargo_run("sig-restart-table", &[]), &out.stdout)],
    );
}

/// Listing 8-2's `accept` row drops its client as soon as it has
/// connected: Linux hands `accept` a connection whose client has closed it
/// already. The handshake put the connection in the listener's queue
/// before the close, and the client's FIN only moves it to CLOSE_WAIT
/// there; `accept` takes it, and reads the end of the stream. Seen on
/// Linux 6.18. The listener is nonblocking, so that a connection that was
/// not queued fails the test instead of hanging it.
#[test]
fn accept_takes_a_connection_whose_client_has_already_closed() {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let client = TcpStream::connect(server).unwrap();
    let from = client.local_addr().unwrap();
    drop(client);
    // 08: CLOSE_WAIT, the client's FIN received, nobody has accepted.
    wait_until("the queued connection to get the client's FIN", || {
        server_end(server.port(), from.port())
            .is_some_and(|(state, ..)| state == "08")
    });
    listener.set_nonblocking(true).unwrap();
    let (mut conn, peer) = listener.accept().expect("the closed connection");
    assert_eq!(peer, from);
    conn.set_nonblocking(false).unwrap();
    assert_eq!(conn.read(&mut [0; 1]).unwrap(), 0, "the end of the stream");
}

/// A row says something only if interruptions landed while its call ran.
/// strace makes every `tgkill` fail, so that the helper's `pthread_kill`
/// reaches nothing: each call then returns only once the helper gives up
/// and ends its wait, and a table printed so would read `Ok` in every
/// cell, as if every call were restarted. The listing must stop at the
/// first cell, with a one-line error, instead.
#[test]
fn sig_restart_table_stops_when_no_interruption_lands() {
    if !have("strace") {
        return;
    }
    let out = Listing::start(
        "strace",
        &[
            "-f",
            "-q",
            "-o",
            "/dev/null",
            "-e",
            "trace=tgkill",
            "-e",
            "inject=tgkill:error=EPERM",
            bin!("sig-restart-table"),
        ],
    )
    .finish();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stdout);
    assert_eq!(out.stdout.len(), 1, "a row was printed: {:?}", out.stdout);
    assert_eq!(
        out.stderr.trim(),
        "sig-restart-table: std File::read, pipe: no SIGUSR1 landed while \
         it ran"
    );
}

#[test]
fn sig_restart_table_prints_the_same_table_when_started_with_sigchld_ignored() {
    // An ignored SIGCHLD passes through exec, and makes the kernel reap
    // the `sleep` children itself: `Child::wait` and `waitpid` would fail
    // with ECHILD, and the two rows would be about that, not about EINTR.
    let mut command = std::process::Command::new("env");
    command.args(["--ignore-signal=CHLD", bin!("sig-restart-table")]);
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let plain = run(bin!("sig-restart-table"), &[]);
    for call in ["std Child::wait", "nix sys::wait::waitpid"] {
        let row = |lines: &[String]| {
            lines.iter().find(|l| l.starts_with(call)).cloned()
        };
        assert_eq!(row(&out.stdout), row(&plain.stdout), "{call}");
    }
}

/// Chapter 12's rule, for the `sleep` children of Listing 8-2: a child
/// gets back what the program found, not what it changed. The listing puts
/// SIGCHLD at its default and unblocks SIGUSR1 (and SIGPIPE) for itself;
/// started with SIGCHLD ignored and SIGUSR1 blocked, each child must set
/// both back before it execs `sleep`. Under strace, each child's last
/// `rt_sigaction` of SIGCHLD and last mask before its `execve` are what
/// `sleep` starts with. (The children made neither call, and started
/// `sleep` with SIGCHLD at its default and SIGUSR1 unblocked.) A child
/// lives some 30 ms before the listing kills it: too short for a program
/// of the test's to report reliably from inside it. strace 6.1.
#[test]
fn sig_restart_table_gives_its_children_back_the_mask_and_sigchld_it_found() {
    if !crate::support::have("strace") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trace = dir.path().join("trace");
    let mut command = std::process::Command::new("strace");
    command.args(["-f", "-q", "-o", trace.to_str().unwrap()]);
    command.args(["-e", "trace=rt_sigaction,rt_sigprocmask,execve"]);
    command.args(["-e", "signal=none", "env", "--ignore-signal=CHLD"]);
    command.args(["--block-signal=USR1", bin!("sig-restart-table")]);
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let text = std::fs::read_to_string(&trace).expect("the trace");
    // The children that ran `sleep`: an `execve` of it that did not fail
    // (strace may split the one that succeeds into two lines).
    let mut sleeps: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sleep\", [\"sleep\"") && !l.contains("= -1"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    sleeps.dedup();
    // Two rows start a child, once without SA_RESTART and once with.
    assert_eq!(sleeps.len(), 4, "{text}");
    for pid in sleeps {
        let own: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(pid))
            .take_while(|l| !l.contains("execve("))
            .collect();
        let last =
            |call: &str| own.iter().rev().find(|l| l.contains(call)).copied();
        let chld = last("rt_sigaction(SIGCHLD, {").unwrap_or_default();
        assert!(chld.contains("sa_handler=SIG_IGN"), "{pid}: {own:#?}");
        let mask = last("rt_sigprocmask(SIG_SETMASK, [").unwrap_or_default();
        assert!(mask.contains("SIG_SETMASK, [USR1],"), "{pid}: {own:#?}");
    }
}

#[test]
fn eintr_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(
        bin!("sig-eintr"),
        &["--restart", "--signal-hook"],
        "--signal-hook",
    );
    assert_rejects(
        bin!("sig-restart-table"),
        &["now"],
        r#"unexpected argument "now""#,
    );
}

#[test]
fn sig_eintr_never_closes_the_pipe_its_handler_writes_into() {
    if !can_trace() {
        return;
    }
    // SIGUSR2's handler writes into the pipe: the read returns, whenever
    // the signal comes.
    let trace = crate::support::trace_of_pipes(
        bin!("sig-eintr"),
        &[],
        Some(Signal::SIGUSR2),
    );
    let closed = crate::support::pipe_ends_closed(&trace);
    assert_eq!(closed, Vec::<u32>::new(), "{trace}");
}

#[test]
fn eintr_listings_are_interrupted_even_when_started_with_their_signals_blocked()
{
    // A parent's mask passes through exec: blocked, SIGUSR1 would only
    // wait, the read would never fail, and the table would stop at its
    // first call, in which no interruption landed.
    let mut command = std::process::Command::new("env");
    command.args(["--block-signal=USR1,USR2", bin!("sig-eintr")]);
    let mut eintr = Listing::spawn(&mut command, std::process::Stdio::piped());
    eintr.next_line();
    eintr.next_line();
    wait_until("the read to block", || state_of(eintr.pid()) == Some('S'));
    eintr.signal(Signal::SIGUSR1);
    eintr.expect("Handler: SIGUSR1 arrived");
    eintr.expect(r"read failed with EINTR; the handler ran 1 time\(s\)");
    let out = eintr.finish();
    assert!(out.status.success(), "sig-eintr: {}", out.stderr);

    let mut command = std::process::Command::new("env");
    command.args(["--block-signal=USR1", bin!("sig-restart-table")]);
    let out =
        Listing::spawn(&mut command, std::process::Stdio::piped()).finish();
    assert!(out.status.success(), "{}", out.stderr);
    let row = |lines: &[String], call: &str| {
        lines.iter().find(|l| l.starts_with(call)).cloned()
    };
    let call = "nix unistd::read, pipe";
    assert_eq!(
        row(&out.stdout, call).as_deref(),
        Some(format!("{call:<36} {:<20} Ok", "Err(EINTR)").as_str()),
        "{:#?}",
        out.stdout
    );
}

/// signal-hook installs its handler before it records what the handler is
/// to do (Chapter 6): a SIGUSR1 in between would run it for nothing, and
/// be lost, unless the listing blocks it while it registers. strace sends
/// one just as the handler goes in; the handler must run, once, when the
/// listing unblocks it, before the read starts.
#[test]
fn sig_eintr_signal_hook_takes_a_sigusr1_that_comes_while_it_registers() {
    if !have("strace") {
        return;
    }
    // Its first line, printed once the handlers are in.
    let ready = "SIGUSR1 handler installed with SA_RESTART: true";
    let bin = bin!("sig-eintr");
    let mut eintr = signal_as_its_handler_goes_in(
        bin,
        &["--signal-hook"],
        Signal::SIGUSR1,
        ready,
    );
    // Lost, the SIGUSR1 would leave no line of its handler's.
    eintr.expect("Handler: SIGUSR1 arrived");
    eintr.expect(ready);
    let reading = r"Reading an empty pipe as pid (\d+); try: kill -USR1 \d+";
    let pid = eintr.expect(reading)[1].parse().expect("a pid");
    let pid = nix::unistd::Pid::from_raw(pid);
    wait_until("the read to block", || state_of(pid) == Some('S'));
    nix::sys::signal::kill(pid, Signal::SIGUSR2).expect("the listing is alive");
    eintr.expect(
        r"read returned 1 byte\(s\) \[!\]; the handler ran 1 time\(s\)",
    );
    let out = eintr.finish();
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
}

/// The SIGUSR2 handler writes a byte into the pipe: were the pipe full (a
/// burst of SIGUSR2 with nobody reading), a blocking write would hang the
/// handler, and the program with it (Chapter 5). The write end is
/// non-blocking, the read end, whose `read` this listing is about, not:
/// their flags in /proc/<pid>/fdinfo.
#[test]
fn sig_eintr_handler_writes_into_a_non_blocking_pipe() {
    for args in [&[][..], &["--restart"], &["--signal-hook"]] {
        let mut eintr = Listing::start(bin!("sig-eintr"), args);
        eintr.expect("SIGUSR1 handler installed with SA_RESTART: .*");
        eintr.expect(r"Reading an empty pipe as pid \d+; try: kill -USR1 \d+");
        let pid = eintr.pid();
        let pipes: Vec<(u32, u32)> = crate::support::fds_of(pid)
            .into_iter()
            // Not 0, 1 and 2: stdout and stderr are the test's pipes.
            .filter(|(fd, target)| *fd > 2 && target.starts_with("pipe:"))
            .map(|(fd, _)| {
                let info =
                    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                        .expect("fdinfo");
                let flags = info
                    .lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                    .expect("flags");
                (fd, flags)
            })
            .collect();
        let nonblock = nix::libc::O_NONBLOCK as u32;
        let access = |flags: u32| flags & nix::libc::O_ACCMODE as u32;
        let write_end: Vec<_> = pipes
            .iter()
            .filter(|(_, f)| access(*f) == nix::libc::O_WRONLY as u32)
            .collect();
        let read_end: Vec<_> = pipes
            .iter()
            .filter(|(_, f)| access(*f) == nix::libc::O_RDONLY as u32)
            .collect();
        assert_eq!((write_end.len(), read_end.len()), (1, 1), "{pipes:?}");
        assert_ne!(write_end[0].1 & nonblock, 0, "{args:?}: write end");
        assert_eq!(read_end[0].1 & nonblock, 0, "{args:?}: read end");
    }
}

#[test]
fn sig_restart_table_kills_and_reaps_every_child_even_when_a_wait_gives_up() {
    if !can_trace() {
        return;
    }
    // Without SA_RESTART, nix's `waitpid` gives up at the first
    // interruption, before the helper kills the `sleep 60` it waits for:
    // that child must still be killed and reaped by the listing, not left
    // to its parent-death signal when the listing exits.
    let trace = crate::support::Trace {
        calls: "clone,clone3,wait4",
        signals: "none",
        from: None,
    };
    let listing = Listing::start_traced(bin!("sig-restart-table"), &[], &trace);
    let out = listing.finish();
    assert!(out.status.success(), "{}", out.stderr);
    // strace cuts a call in two when another process's line comes in
    // between: join `clone(... <unfinished ...>` to its `<... resumed>`.
    let mut cut = std::collections::HashMap::new();
    let mut calls = Vec::new();
    for line in out.stderr.lines() {
        // `[pid  1234] call`, or `call` alone while there is one process.
        let (pid, call) = match line.strip_prefix("[pid") {
            Some(rest) => {
                rest.trim_start().split_once("] ").unwrap_or(("", rest))
            }
            None => ("", line),
        };
        if let Some(start) = call.strip_suffix(" <unfinished ...>") {
            cut.insert(pid.to_string(), start.to_string());
        } else if let Some((_, end)) = call.split_once(" resumed>") {
            // A call the listing started while it was strace's only
            // process has no `[pid N]`, and may resume with one, once a
            // child exists: an unprefixed start is the listing's.
            let start = cut
                .remove(pid)
                .or_else(|| cut.remove(""))
                .unwrap_or_default();
            calls.push(format!("{start}{end}"));
        } else {
            calls.push(call.to_string());
        }
    }
    let process = regex::Regex::new(r"^clone3?\((.*)\)\s+= (\d+)$").unwrap();
    let reaped = regex::Regex::new(r"^wait4\(.*\)\s+= (\d+)$").unwrap();
    let (mut forked, mut waited) = (Vec::new(), Vec::new());
    for call in &calls {
        if let Some(c) = process.captures(call) {
            if !c[1].contains("CLONE_THREAD") {
                forked.push(c[2].to_string());
            }
        } else if let Some(c) = reaped.captures(call) {
            waited.push(c[1].to_string());
        }
    }
    assert!(
        forked.len() >= 4,
        "no children in the trace:\n{}",
        out.stderr
    );
    let unreaped: Vec<_> =
        forked.iter().filter(|p| !waited.contains(p)).collect();
    assert!(
        unreaped.is_empty(),
        "not reaped: {unreaped:?}\n{}",
        out.stderr
    );
}

/// Python, with a handler for SIGUSR1 installed with SA_RESTART
/// (`restart`) or without (`interrupt`): the main thread writes 1 MiB
/// into a pipe nobody reads, which blocks once the pipe's 64 KiB are
/// full; another thread waits until the write sleeps in the kernel (its
/// wchan) and sends the main thread SIGUSR1. Prints what `write` returned.
const SHORT_WRITE: &str = r#"
import os, signal, sys, threading, time
signal.signal(signal.SIGUSR1, lambda *_: None)
signal.siginterrupt(signal.SIGUSR1, sys.argv[1] == "interrupt")
r, w = os.pipe()
main = threading.main_thread()
tid = threading.get_native_id()
def poke():
    wchan = f"/proc/self/task/{tid}/wchan"
    for _ in range(30000):
        with open(wchan) as f:
            if "pipe_write" in f.read():
                break
        time.sleep(0.001)
    signal.pthread_kill(main.ident, signal.SIGUSR1)
threading.Thread(target=poke).start()
print(os.write(w, b"x" * (1 << 20)))
"#;

/// Kernel behaviour, seen on Linux 6.18 (signal(7)): a blocking write
/// that has moved some bytes when a handler runs returns that short count,
/// with SA_RESTART or without; it is neither failed nor restarted.
#[test]
fn a_write_interrupted_after_some_bytes_returns_a_short_count_either_way() {
    if !have("python3") {
        return;
    }
    for flags in ["interrupt", "restart"] {
        let out = run("python3", &["-c", SHORT_WRITE, flags]);
        assert!(out.status.success(), "{flags}: {}", out.stderr);
        assert_eq!(out.stdout, ["65536"], "{flags}");
    }
}
