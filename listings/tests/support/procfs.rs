//! What /proc says about a running process: its children, state, signals,
//! descriptors, memory, CPU time and threads.

use nix::unistd::Pid;
use std::fs;
use std::time::Duration;

use super::*;

/// The pids of the processes whose parent is `pid`, read from /proc.
pub fn children_of(pid: Pid) -> Vec<Pid> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The fields after the command name, which is in parentheses and
        // may contain spaces: state, then the parent's pid.
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid = tail.split(' ').nth(1).and_then(|p| p.parse().ok());
        let own = head.split(' ').next().and_then(|p| p.parse().ok());
        if let (Some(ppid), Some(own)) = (ppid, own)
            && Pid::from_raw(ppid) == pid
        {
            children.push(Pid::from_raw(own));
        }
    }
    children
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in
/// parentheses and may contain spaces): state, ppid, pgrp, ... `None` once
/// the process is gone.
pub(crate) fn stat_fields(pid: Pid) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, tail) = stat.rsplit_once(") ")?;
    Some(tail.split(' ').map(String::from).collect())
}

/// The state letter of a process (`R`, `S`, `T` for stopped, `Z` for a
/// zombie), or `None` if it is gone.
pub fn state_of(pid: Pid) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The signals pending for a process as a whole (`ShdPnd` in
/// /proc/<pid>/status), as signal numbers.
pub fn pending_signals(pid: Pid) -> Vec<i32> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("ShdPnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    (1..=64).filter(|n| mask & (1 << (n - 1)) != 0).collect()
}

/// Whether `pid` catches, ignores or blocks `signal`, from the SigCgt,
/// SigIgn or SigBlk line of its /proc status.
pub fn signal_in(
    pid: Pid,
    field: &str,
    signal: nix::sys::signal::Signal,
) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    signal_in_status(&status, field, signal)
}

/// The same, from the text of a /proc status that a child read of itself.
pub fn signal_in_status(
    status: &str,
    field: &str,
    signal: nix::sys::signal::Signal,
) -> bool {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect(field);
    mask & (1 << (signal as i32 - 1)) != 0
}

/// Those of `signals` that `pid`'s main thread still blocks, from the
/// SigBlk line of its /proc status: for a listing started with them
/// blocked, which must unblock each signal it handles.
pub fn still_blocked(
    pid: Pid,
    signals: &[nix::sys::signal::Signal],
) -> Vec<nix::sys::signal::Signal> {
    signals
        .iter()
        .copied()
        .filter(|&signal| signal_in(pid, "SigBlk:", signal))
        .collect()
}

/// The open descriptors of a process and what each names (`pipe:[123]`,
/// `/dev/null`), from /proc/<pid>/fd, in order; empty once it is gone.
pub fn fds_of(pid: Pid) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<(u32, String)> = entries
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

/// The parent of a process, or `None` once it is gone.
pub fn ppid_of(pid: Pid) -> Option<Pid> {
    stat_fields(pid)?.get(1)?.parse().ok().map(Pid::from_raw)
}

/// The process group of a process, or `None` once it is gone.
pub fn pgid_of(pid: Pid) -> Option<Pid> {
    stat_fields(pid)?.get(2)?.parse().ok().map(Pid::from_raw)
}

/// Where in the kernel a sleeping process waits (/proc/<pid>/wchan), such
/// as `pipe_write`; empty if it runs or is gone.
pub fn wchan_of(pid: Pid) -> String {
    fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// How long the threads of `pid` have been running or ready to run,
/// waiting only for a CPU: the sum of the first two numbers of each
/// thread's schedstat. Unlike CPU time, it tells a spinning thread on a
/// busy machine, where it gets little CPU, from a sleeping one.
pub fn runnable_time(pid: Pid) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            fs::read_to_string(task.path().join("schedstat")).ok()
        })
        .flat_map(|stat| {
            stat.split_whitespace()
                .take(2)
                .filter_map(|n| n.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    Duration::from_nanos(ns)
}

/// How many times the threads of `pid` have gone to sleep of their own
/// accord: the sum of each thread's `voluntary_ctxt_switches`. A loop
/// that sleeps a millisecond between tries adds a thousand a second.
pub fn sleeps_of(pid: Pid) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

/// How many threads of `pid` sleep in the kernel function `wchan`, such
/// as `wait_woken`, where a blocking read or send of a TCP socket waits.
pub fn threads_waiting_in(pid: Pid, wchan: &str) -> usize {
    threads_where(pid, "wchan", |at| at == wchan)
}

/// How many threads of `pid` are blocked in the system call numbered
/// `number` (`libc::SYS_sendto`): the first field of their
/// /proc/<pid>/task/<tid>/syscall, which says "running" while they run.
pub fn threads_blocked_in(pid: Pid, number: i64) -> usize {
    threads_where(pid, "syscall", |call| {
        call.split(' ').next() == Some(&number.to_string())
    })
}

/// How many threads of `pid` wait for room to send a reply: in a blocking
/// `send`, or, as Listing 14-3's workers do, in `poll` for POLLOUT (no
/// server this counts for blocks in `poll` for anything else).
pub fn threads_waiting_to_send(pid: Pid) -> usize {
    threads_blocked_in(pid, nix::libc::SYS_sendto)
        + threads_blocked_in(pid, nix::libc::SYS_poll)
}

/// True once every thread of `pid` is stopped (state `T`).
pub fn all_threads_stopped(pid: Pid) -> bool {
    all_threads_in_state(pid, 'T')
}

/// True while every thread of `pid` sleeps (state `S`), waiting in the
/// kernel for something to happen: none runs, and none has been woken and
/// waits for a CPU (a thread woken is `R` at once).
pub fn all_threads_asleep(pid: Pid) -> bool {
    all_threads_in_state(pid, 'S')
}

/// True if `pid` is there and every thread of it is in `state`.
fn all_threads_in_state(pid: Pid, state: char) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command's closing parenthesis.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with(state))
        })
    })
}

/// How many threads of `pid` have a /proc/<pid>/task/<tid>/`file` whose
/// text passes `test`.
fn threads_where(pid: Pid, file: &str, test: impl Fn(&str) -> bool) -> usize {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            fs::read_to_string(task.path().join(file)).is_ok_and(|t| test(&t))
        })
        .count()
}

/// True once `pid` no longer runs: gone, or a zombie waiting to be reaped.
pub fn is_dead(pid: Pid) -> bool {
    matches!(state_of(pid), None | Some('Z'))
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`), or `None`
/// once the process is gone.
pub fn status_kib(pid: Pid, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The CPU time a process has used so far, user and system, from
/// `/proc/<pid>/stat`.
pub fn cpu_time(pid: Pid) -> Duration {
    let fields = stat_fields(pid).unwrap_or_default();
    // utime and stime, fields 14 and 15 of stat; 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // In clock ticks of USER_HZ, which Linux keeps at 100 a second.
    Duration::from_millis(ticks * 10)
}

/// The number of threads of a process (`Threads` in /proc/<pid>/status).
pub fn threads_of(pid: Pid) -> usize {
    status_kib(pid, "Threads").unwrap_or(0) as usize
}

/// The number of file descriptors a process has open.
pub fn open_fds(pid: Pid) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The descriptors `pid` keeps: all it has open but a file under /sys or
/// /proc, which a thread opens for a moment. glibc's malloc (Debian's
/// 2.36), the first time it must decide how many arenas threads may have,
/// reads /sys/devices/system/cpu/online (`get_nprocs`), in the thread
/// whose first allocation makes the ninth arena, and on a busy machine in
/// several threads at once; and glibc reads /proc/self/maps when std asks
/// where the main thread's stack is, as a program starts. Counted, such
/// a file passes for a client accepted, or, counted in a `before`, hides
/// one: seen in CI with Listing 16-1 ("client 8 of 9", the server idle in
/// `accept`), made certain with strace holding the
/// file open. A test that waits for a server to accept or to close
/// clients, or to fill its table of descriptors, counts these instead.
/// (An epoll, a pipe or an eventfd of a server's own does count: it
/// takes a place in the table for as long as the server runs.)
pub fn lasting_fds(pid: Pid) -> usize {
    fds_of(pid)
        .iter()
        .filter(|(_, what)| {
            !what.starts_with("/sys/") && !what.starts_with("/proc/")
        })
        .count()
}

impl Listing {
    /// The stdout lines read so far, for a session whose listing is
    /// killed rather than left to finish.
    pub fn transcript(&self) -> Vec<String> {
        self.transcript.clone()
    }
}

/// How many bytes the server's end of a loopback connection has received
/// and not read (`rx_queue` in /proc/net/tcp); 0 once it is gone.
pub fn unread_by_server(server: u16, client: u16) -> u64 {
    server_end(server, client).map_or(0, |(_, unread, ..)| unread)
}

/// How many bytes the server's end of a loopback connection has written
/// and the client has not taken (`tx_queue` in /proc/net/tcp); 0 once it
/// is gone. It stays above zero while the client's receive window is shut.
pub fn unsent_by_server(server: u16, client: u16) -> u64 {
    server_end(server, client).map_or(0, |(_, _, unsent, _)| unsent)
}
