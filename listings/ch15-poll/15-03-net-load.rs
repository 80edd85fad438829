// ANCHOR: whole
// Listing 15-3: the benchmark of Part III's servers. It starts each
// server itself, from the binaries next to its own (so build them all
// first, in the same profile), puts it under three kinds of load, and
// prints what it measured, with the machine and the date:
//
// 1. a burst of clients at once, each of which must get exactly its own
//    reply, once: latency from the moment they were all let go to the
//    end of the reply;
// 2. many idle connections (10,000 by default), more than most servers'
//    limits, held by one client that never says a word, then new
//    clients, one after another: their latency, and the server's memory
//    (RSS) and threads, from /proc;
// 3. one client that sends a mebibyte without a newline: the server's
//    peak memory.
//
// With `--with-async` it measures Part VI's tokio server (Listing 30-1)
// beside the threaded and `poll` servers instead: the burst, the idle
// connections, and the throughput of one-byte requests (`--seconds` a
// turn, on `--conns` connections). Each of the two timed kinds of load
// measures its servers in rounds, in an order drawn for the run.
//
// With `--pin` the servers run on one CPU and the benchmark's clients on
// the others, so that a server's threads and the clients' do not share
// a CPU.
//
// `net-load [--clients N] [--rounds N] [--idle N] [--garbage BYTES]
// [--with-async] [--pin] [--seconds N] [--conns N]
// [--record FILE | --book]`.
// The report goes to stdout, and to a file after the command that made
// it: `target/net-load/15-03-net-load.out` (or `30-02-…` with
// `--with-async`), next to the build; or FILE; or, with `--book`, the
// file the book includes, which only its maintainers should rewrite.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::{Pid, getpid, getppid};

const USAGE: &str = "usage: net-load [--clients N] [--rounds N] [--idle N] \
                     [--garbage BYTES] [--with-async] [--pin] [--seconds N] \
                     [--conns N] [--record FILE | --book]";
/// How many new clients the idle scenario times, one after another.
const NEW_CLIENTS: usize = 200;
/// How long a connection must have been idle before a server may close it
/// to make room for a new one: the idle clients wait that long, as those
/// of a real attack would have.
const IDLE_AGE: Duration = Duration::from_millis(1100);
/// The longest any one wait may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(30);
/// How the latency tables count a client that got no right reply.
const LAST_RANK: &str = "percentiles are of all clients: one not answered right ranks last, shown as -";

struct Config {
    clients: usize,
    /// As many as one balanced set of the rows needs unless given.
    rounds: Option<usize>,
    idle: usize,
    garbage: usize,
    with_async: bool,
    /// The servers on one CPU, net-load's clients on the others.
    pin: bool,
    seconds: usize,
    conns: usize,
    record: Option<PathBuf>,
    book: bool,
    /// The command line, as the report shows it: without `--record` and
    /// `--book`, which say where the report goes, not what it measures.
    shown: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("net-load: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    restore_sigpipe()?;
    let config = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    // Ten thousand idle connections are ten thousand descriptors here
    // too, besides the servers' own. The servers get back the soft limit
    // we were given (Chapter 14): each raises its own.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let _ = GIVEN_FD_LIMIT.set((soft, hard));
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let mut report = Report::new(&config)?;
    report.line(&machine()?)?;
    if config.pin {
        // Before any thread starts: each inherits this thread's CPUs.
        let (servers, said) = pin()?;
        let _ = SERVER_CPUS.set(servers);
        report.line(&said)?;
    }
    if config.with_async {
        return compare_async(&config, &mut report);
    }

    let rows = [
        ("tcp-threads", 128),
        ("tcp-threads", 1024),
        ("tcp-pool", 1024),
        ("poll-server", 1024),
    ];
    burst_table(&mut report, &config, &rows)?;

    idle_table(
        &mut report,
        config.idle,
        &["tcp-threads", "tcp-pool", "poll-server"],
    )?;

    report.line("")?;
    report.line(&format!(
        "{} bytes without a newline from one client: peak RSS (VmHWM), MiB",
        config.garbage
    ))?;
    report.line(&format!("{:<12} {:>8} {:>8}", "server", "before", "after"))?;
    for name in ["tcp-naive", "tcp-threads", "poll-server"] {
        let server = Server::start(name, &[])?;
        report.line(&garbage_row(&server, config.garbage)?)?;
    }
    Ok(())
}

/// The burst table: each row's server started, given one burst to warm
/// up, then measured in `turns`; under each row its p99 in each round,
/// with its place in the round, and what its bursts cost.
fn burst_table(
    report: &mut Report,
    config: &Config,
    rows: &[(&'static str, i32)],
) -> Result<(), Box<dyn Error>> {
    let clients = config.clients;
    let rounds = config.rounds.unwrap_or(balanced_set(rows.len()));
    let order = order(rounds, rows.len());
    report.line("")?;
    report.line(&format!(
        "{clients} clients at once (rounds: {rounds}, {order}, after a \
         burst each to warm up); latency from the clients' release to the \
         end of the reply, in ms"
    ))?;
    report.line(LAST_RANK)?;
    report.line(&format!(
        "{:<12} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>8}",
        "server",
        "backlog",
        "right",
        "wrong",
        "failed",
        "p50",
        "p99",
        "max",
        ">= 1 s"
    ))?;
    let mut servers = Vec::new();
    for (name, backlog) in rows {
        let backlog = backlog.to_string();
        servers.push(Server::start(name, &["--backlog", &backlog])?);
    }
    // A first burst for each, not counted: a server's first burst pays
    // for its first page faults and threads, and so would the row that
    // happened to go first.
    for server in &servers {
        burst(server.addr, clients)?;
    }
    // Each row's clients, its p99 in each round with its place in it,
    // and what its bursts cost: the server's CPU time, the machine's, and
    // the kernel's TCP counters, taken around each burst.
    let mut results: Vec<Vec<Outcome>> =
        rows.iter().map(|_| Vec::new()).collect();
    let mut by_round: Vec<String> =
        rows.iter().map(|_| String::new()).collect();
    let mut costs = vec![Cost::default(); rows.len()];
    for (turn, row) in turns(rounds, rows.len()).into_iter().enumerate() {
        let before = Cost::now(&servers[row])?;
        let outcomes = burst(servers[row].addr, clients)?;
        costs[row].add(&before, &Cost::now(&servers[row])?);
        let place = turn % rows.len() + 1;
        let p99 = ms(p99_of(&outcomes));
        let _ = write!(by_round[row], " {} (place {place})", p99.trim());
        results[row].extend(outcomes);
    }
    drop(servers);
    for (((name, backlog), results), (by_round, cost)) in
        rows.iter().zip(&results).zip(by_round.iter().zip(&costs))
    {
        report.line(&burst_row(name, *backlog, results))?;
        report.line(&format!("  p99 by round, ms:{by_round}"))?;
        let bursts = if rounds == 1 { "burst" } else { "bursts" };
        report.line(&format!("  {rounds} {bursts}: {cost}"))?;
    }
    Ok(())
}

// ANCHOR: burst
/// What one client of a burst saw: its latency, or what went wrong.
enum Outcome {
    Right(Duration),
    Wrong,
    Failed(io::ErrorKind),
}

/// `clients` clients, started together by a barrier; each sends one line
/// with its own number, half-closes, and reads the reply to its end.
fn burst(addr: SocketAddr, clients: usize) -> io::Result<Vec<Outcome>> {
    let start = Arc::new(Barrier::new(clients));
    let released = Arc::new(OnceLock::new());
    let mut handles = Vec::new();
    for i in 0..clients {
        let (start, released) = (Arc::clone(&start), Arc::clone(&released));
        let client = move || {
            let began = released_at(&start, &released);
            let expected = format!("server got: [client {i}]\n");
            match exchange(addr, &format!("client {i}")) {
                Ok(reply) if reply == expected => {
                    Outcome::Right(began.elapsed())
                }
                Ok(_) => Outcome::Wrong,
                Err(err) => Outcome::Failed(err.kind()),
            }
        };
        let thread = thread::Builder::new().stack_size(64 * 1024);
        let started = thread.spawn(client).map_err(|err| {
            let why = format!(
                "{clients} clients at once: cannot start a thread: {err}"
            );
            io::Error::new(err.kind(), why)
        })?;
        handles.push(started);
    }
    let panicked = || Outcome::Failed(io::ErrorKind::Other);
    Ok(handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| panicked()))
        .collect())
}

/// Waits at `start` with the others, and returns the moment the barrier
/// let them all go, the same for every client: the first of them to run
/// again sets it. A clock started by each client when it next gets a CPU
/// would leave out that wait, and hide a server that keeps the CPUs busy.
fn released_at(start: &Barrier, released: &OnceLock<Instant>) -> Instant {
    start.wait();
    *released.get_or_init(Instant::now)
}

/// One request and its whole reply, each wait bounded.
fn exchange(addr: SocketAddr, line: &str) -> io::Result<String> {
    let mut sock = TcpStream::connect_timeout(&addr, PATIENCE)?;
    sock.set_read_timeout(Some(PATIENCE))?;
    sock.set_write_timeout(Some(PATIENCE))?;
    sock.write_all(format!("{line}\n").as_bytes())?;
    sock.shutdown(Shutdown::Write)?;
    let mut reply = String::new();
    sock.take(4096).read_to_string(&mut reply)?;
    Ok(reply)
}

/// One row of the burst table, and a line for each kind of failure. A
/// client that waited a second or more almost certainly lost a packet of
/// its handshake (its SYN, or the ACK that ends it), sent again a second
/// later.
fn burst_row(name: &str, backlog: i32, results: &[Outcome]) -> String {
    let mut times = Vec::new();
    let (mut wrong, mut failures) = (0, Vec::new());
    for result in results {
        match result {
            Outcome::Right(time) => times.push(*time),
            Outcome::Wrong => wrong += 1,
            Outcome::Failed(kind) => failures.push(*kind),
        }
    }
    times.sort();
    let all = results.len();
    let slow = times.iter().filter(|t| t.as_secs() >= 1).count();
    let mut row = format!(
        "{name:<12} {backlog:>7} {:>6} {wrong:>6} {:>6} {:>7} {:>7} {:>7} \
         {slow:>8}",
        times.len(),
        failures.len(),
        ms(percentile(&times, all, 50)),
        ms(percentile(&times, all, 99)),
        ms(percentile(&times, all, 100)),
    );
    failures.sort_by_key(|kind| format!("{kind:?}"));
    failures.dedup_by(|a, b| a == b);
    for kind in failures {
        let n = results
            .iter()
            .filter(|r| matches!(r, Outcome::Failed(k) if *k == kind))
            .count();
        let _ = write!(row, "\n  {n} failed: {}", io::Error::from(kind));
    }
    row
}

/// The p99 of one round's clients, as `burst_row` takes it.
fn p99_of(results: &[Outcome]) -> Option<Duration> {
    let mut times: Vec<Duration> = results
        .iter()
        .filter_map(|r| match r {
            Outcome::Right(time) => Some(*time),
            _ => None,
        })
        .collect();
    times.sort();
    percentile(&times, results.len(), 99)
}

/// The nearest-rank percentile of `all` clients, of which the sorted
/// `times` are those answered right: the smallest value with at least `p`
/// percent of all the clients at or below it. The others rank last, as if
/// never answered, so a percentile that lands on one of them is `None`.
fn percentile(times: &[Duration], all: usize, p: usize) -> Option<Duration> {
    let rank = (all * p).div_ceil(100);
    times.get(rank.checked_sub(1)?).copied()
}
// ANCHOR_END: burst

// ANCHOR: idle
/// For each server: `idle` connections that never say a word, from one
/// client, then new clients one after another. Each server keeps its own
/// limit on connections, and a long idle timeout, so that only the limit
/// stands between the idle connections and the new clients.
fn idle_table(
    report: &mut Report,
    idle: usize,
    servers: &[&'static str],
) -> Result<(), Box<dyn Error>> {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let needed = idle as u64 + 2 * NEW_CLIENTS as u64 + 100;
    if hard < needed {
        return Err(format!(
            "--idle {idle} needs {needed} file descriptors; the limit here \
             is {hard} (ulimit -Hn)"
        )
        .into());
    }
    report.line("")?;
    report.line(&format!(
        "{idle} idle connections, then {NEW_CLIENTS} new clients one after \
         another; latency in ms"
    ))?;
    report.line(LAST_RANK)?;
    report.line(&format!(
        "{:<12} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "server", "idle held", "new p50", "new p99", "RSS MiB", "threads"
    ))?;
    for &name in servers {
        let server = Server::start(name, &["--timeout", "600"])?;
        report.line(&idle_row(&server, idle)?)?;
    }
    Ok(())
}

/// Opens `idle` connections that say nothing, waits until the server has
/// taken all it will (its descriptors stop changing) and until they have
/// been idle long enough to be closed for a new client; reads the
/// server's memory and threads from /proc, then times NEW_CLIENTS new
/// clients. A new client that is refused, or fails, is counted, below the
/// row.
fn idle_row(server: &Server, idle: usize) -> Result<String, Box<dyn Error>> {
    let before = open_fds(server.pid());
    let mut held = Vec::with_capacity(idle);
    for _ in 0..idle {
        let sock = TcpStream::connect_timeout(&server.addr, PATIENCE)
            .map_err(|err| format!("an idle connection: {err}"))?;
        held.push(sock);
    }
    let deadline = Instant::now() + PATIENCE;
    let mut last = (open_fds(server.pid()), Instant::now());
    while last.1.elapsed() < Duration::from_millis(500) {
        if Instant::now() > deadline {
            return Err(format!("{} never settled", server.name).into());
        }
        thread::sleep(Duration::from_millis(50));
        let now = open_fds(server.pid());
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    thread::sleep(IDLE_AGE);
    // What the idle connections cost the server: one descriptor each that
    // it holds, and its memory and threads.
    let holds = open_fds(server.pid()).saturating_sub(before);
    let rss = status_field(server.pid(), "VmRSS")?;
    let threads = status_field(server.pid(), "Threads")?;
    let (mut times, mut refused, mut failed) = (Vec::new(), 0, 0);
    for i in 0..NEW_CLIENTS {
        let began = Instant::now();
        match exchange(server.addr, &format!("new {i}")) {
            Ok(reply) if reply == format!("server got: [new {i}]\n") => {
                times.push(began.elapsed());
            }
            Ok(reply) if reply.starts_with("error: server busy") => {
                refused += 1;
            }
            _ => failed += 1,
        }
    }
    times.sort();
    let mut row = format!(
        "{:<12} {holds:>9} {:>8} {:>8} {:>8.1} {threads:>8}",
        server.name,
        ms(percentile(&times, NEW_CLIENTS, 50)),
        ms(percentile(&times, NEW_CLIENTS, 99)),
        rss as f64 / 1024.0,
    );
    if refused > 0 {
        let _ =
            write!(row, "\n  {refused} new clients told the server is busy");
    }
    if failed > 0 {
        let _ = write!(row, "\n  {failed} new clients failed");
    }
    drop(held);
    Ok(row)
}
// ANCHOR_END: idle

// ANCHOR: garbage
/// Sends `bytes` of `x` and no newline, half-closes, reads whatever the
/// server answers until it closes: by then it has read every byte. The
/// server's peak resident memory before and after.
fn garbage_row(
    server: &Server,
    bytes: usize,
) -> Result<String, Box<dyn Error>> {
    let before = status_field(server.pid(), "VmHWM")?;
    let without_end = || -> io::Result<()> {
        let mut sock = TcpStream::connect_timeout(&server.addr, PATIENCE)?;
        sock.set_read_timeout(Some(PATIENCE))?;
        sock.set_write_timeout(Some(PATIENCE))?;
        sock.write_all(&vec![b'x'; bytes])?;
        sock.shutdown(Shutdown::Write)?;
        io::copy(&mut sock, &mut io::sink()).map(drop)
    };
    without_end().map_err(|err| format!("a line without an end: {err}"))?;
    let after = status_field(server.pid(), "VmHWM")?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(format!(
        "{:<12} {:>8.1} {:>8.1}",
        server.name,
        mib(before),
        mib(after)
    ))
}
// ANCHOR_END: garbage

/// The order in which `rounds` rounds measure `rows` rows, drawn for this
/// run from a Williams design. Its rounds take the rows in the order 0,
/// 1, n-1, 2, n-2, ..., each plus the round's number, modulo n; with an
/// odd number of rows, as many rounds again take that order backwards.
/// Over one whole set of those rounds (n, or 2n when n is odd), each row
/// takes every place equally often and follows every other row equally
/// often, so neither a row's place nor the row before it favours any row.
/// A run then draws which row is which, whether every round is read
/// backwards, and the order of the rounds within each set: none of these
/// undoes the balance, and together they give a row many sequences of
/// places from run to run, not a handful.
fn turns(rounds: usize, rows: usize) -> Vec<usize> {
    let base: Vec<usize> = (0..rows)
        .map(|j| match j {
            0 => 0,
            j if j % 2 == 1 => j.div_ceil(2),
            j => rows - j / 2,
        })
        .collect();
    let backwards = random_below(2) == 1;
    let mut set: Vec<Vec<usize>> = Vec::new();
    let halves: &[bool] = if rows % 2 == 0 {
        &[false]
    } else {
        &[false, true]
    };
    for &mirror in halves {
        for round in 0..rows {
            let mut order: Vec<usize> =
                base.iter().map(|b| (b + round) % rows).collect();
            if mirror != backwards {
                order.reverse();
            }
            set.push(order);
        }
    }
    let relabel = shuffled(rows);
    let mut order = Vec::with_capacity(rounds * rows);
    while order.len() < rounds * rows {
        for k in shuffled(set.len()) {
            order.extend(set[k].iter().map(|&row| relabel[row]));
        }
    }
    order.truncate(rounds * rows);
    order
}

/// How the report names the order of `rounds` rounds of `rows` rows:
/// balanced only over whole sets of rounds.
fn order(rounds: usize, rows: usize) -> String {
    let set = balanced_set(rows);
    if rounds % set == 0 {
        "rows in a balanced order drawn for this run".to_string()
    } else {
        format!("rows in turn, balanced only over {set} rounds at a time")
    }
}

/// How many rounds make one balanced set of `rows` rows: see `turns`.
fn balanced_set(rows: usize) -> usize {
    if rows % 2 == 0 { rows } else { 2 * rows }
}

/// 0..n in an order drawn at random, each order as likely as any other.
fn shuffled(n: usize) -> Vec<usize> {
    let mut items: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        items.swap(i, random_below(i as u64 + 1) as usize);
    }
    items
}

/// A number from 0 to n - 1, drawn at random. `RandomState` is seeded
/// from the system's random source; no crate is needed for a few draws.
/// (The remainder favours small numbers by at most n in 2^64.)
fn random_below(n: u64) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(n) % n
}

/// What a row's bursts cost: the server's CPU time (user and system, all
/// its threads, the ended ones too); the time all the machine's CPUs ran
/// code (the server, the clients, the kernel's work for both and anything
/// else), and the steal, the time the host gave to other machines while
/// this one had work; and four of the kernel's TCP counters, which count
/// for the whole machine: connections the accept queue had no room for,
/// SYN cookies sent and failed, and handshake packets (SYN or SYN-ACK)
/// sent again.
#[derive(Clone, Default)]
struct Cost {
    cpu_ticks: u64,
    busy_ticks: u64,
    steal_ticks: u64,
    overflows: u64,
    cookies_sent: u64,
    cookies_failed: u64,
    syn_retrans: u64,
}

impl Cost {
    fn now(server: &Server) -> Result<Cost, Box<dyn Error>> {
        let pid = server.child.id();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // After the name in parentheses, which may hold spaces: utime and
        // stime are the 12th and 13th fields (14 and 15 of the whole).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> u64 {
            fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0)
        };
        // The first line of /proc/stat, all CPUs: "cpu user nice system
        // idle iowait irq softirq steal ...", in the same ticks.
        let stat = fs::read_to_string("/proc/stat")?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let netstat = fs::read_to_string("/proc/net/netstat")?;
        let mut tcp = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) =
            (tcp.next().unwrap_or(""), tcp.next().unwrap_or(""));
        let counter = |name: &str| -> u64 {
            let at = names.split_whitespace().position(|n| n == name);
            at.and_then(|i| values.split_whitespace().nth(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Cost {
            cpu_ticks: ticks(11) + ticks(12),
            busy_ticks: field(0) + field(1) + field(2) + field(5) + field(6),
            steal_ticks: field(7),
            overflows: counter("ListenOverflows"),
            cookies_sent: counter("SyncookiesSent"),
            cookies_failed: counter("SyncookiesFailed"),
            syn_retrans: counter("TCPSynRetrans"),
        })
    }

    /// Adds what changed from `before` to `after`.
    fn add(&mut self, before: &Cost, after: &Cost) {
        self.cpu_ticks += after.cpu_ticks.saturating_sub(before.cpu_ticks);
        self.busy_ticks += after.busy_ticks.saturating_sub(before.busy_ticks);
        self.steal_ticks +=
            after.steal_ticks.saturating_sub(before.steal_ticks);
        self.overflows += after.overflows.saturating_sub(before.overflows);
        self.cookies_sent +=
            after.cookies_sent.saturating_sub(before.cookies_sent);
        self.cookies_failed +=
            after.cookies_failed.saturating_sub(before.cookies_failed);
        self.syn_retrans +=
            after.syn_retrans.saturating_sub(before.syn_retrans);
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        // /proc counts CPU time in clock ticks, `sysconf(_SC_CLK_TCK)` a
        // second (100 on Linux, whatever the kernel's own tick rate).
        let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&t| t > 0)
            .unwrap_or(100) as u64;
        let ms = |ticks: u64| ticks * 1000 / per_second;
        write!(
            f,
            "server CPU {} ms, all CPUs busy {} ms, steal {} ms; queue full \
             {}, SYN cookies sent {}, failed {}; handshake packets sent again \
             {}",
            ms(self.cpu_ticks),
            ms(self.busy_ticks),
            ms(self.steal_ticks),
            self.overflows,
            self.cookies_sent,
            self.cookies_failed,
            self.syn_retrans
        )
    }
}

/// Part VI's comparison: the tokio server beside the threaded and `poll`
/// servers, on the burst, idle connections, and one-byte requests.
fn compare_async(
    config: &Config,
    report: &mut Report,
) -> Result<(), Box<dyn Error>> {
    const SERVERS: [&str; 3] = ["tcp-threads", "poll-server", "async-server"];
    let rows = SERVERS.map(|name| (name, 1024));
    burst_table(report, config, &rows)?;

    idle_table(report, config.idle, &SERVERS)?;

    requests_table(report, config, &SERVERS)
}

/// The requests table: each server started, given one turn to warm up,
/// then `--seconds` of one-byte requests a turn, its turns in the order
/// `turns` draws, as the burst's; under each row its rate in each round,
/// with its place in the round.
fn requests_table(
    report: &mut Report,
    config: &Config,
    names: &[&'static str],
) -> Result<(), Box<dyn Error>> {
    let (conns, seconds) = (config.conns, config.seconds);
    let rounds = config.rounds.unwrap_or(balanced_set(names.len()));
    let time = Duration::from_secs(seconds as u64);
    let order = order(rounds, names.len());
    report.line("")?;
    report.line(&format!(
        "one-byte requests on {conns} connections, one request at a time on \
         each, {seconds} s a turn (rounds: {rounds}, {order}, after a turn \
         each to warm up)"
    ))?;
    report.line(&format!(
        "{:<12} {:>5} {:>10} {:>10} {:>7}",
        "server", "conns", "requests", "per second", "wrong"
    ))?;
    let mut servers = Vec::new();
    for name in names {
        servers.push(Server::start(name, &[])?);
    }
    for server in &servers {
        requests(server, conns, time)?;
    }
    let mut totals = vec![(0, 0); names.len()];
    let mut by_round: Vec<String> =
        names.iter().map(|_| String::new()).collect();
    for (turn, row) in turns(rounds, names.len()).into_iter().enumerate() {
        let (right, wrong) = requests(&servers[row], conns, time)?;
        totals[row].0 += right;
        totals[row].1 += wrong;
        let place = turn % names.len() + 1;
        let rate = right as f64 / time.as_secs_f64();
        let _ = write!(by_round[row], " {rate:.0} (place {place})");
    }
    drop(servers);
    for ((name, (right, wrong)), by_round) in
        names.iter().zip(totals).zip(by_round)
    {
        let per_second = right as f64 / (time.as_secs_f64() * rounds as f64);
        report.line(&format!(
            "{name:<12} {conns:>5} {right:>10} {per_second:>10.0} {wrong:>7}"
        ))?;
        report.line(&format!("  per second by round:{by_round}"))?;
    }
    Ok(())
}

// ANCHOR: requests
/// `conns` clients, each on a connection of its own, each sending a
/// one-byte line and reading its reply, again and again, for `time`:
/// how many replies came back right, and how many were wrong.
fn requests(
    server: &Server,
    conns: usize,
    time: Duration,
) -> Result<(u64, u64), Box<dyn Error>> {
    let start = Arc::new(Barrier::new(conns + 1));
    let mut handles = Vec::new();
    for _ in 0..conns {
        let connected = || -> io::Result<TcpStream> {
            let sock = TcpStream::connect_timeout(&server.addr, PATIENCE)?;
            sock.set_read_timeout(Some(PATIENCE))?;
            sock.set_write_timeout(Some(PATIENCE))?;
            Ok(sock)
        };
        let sock = connected()
            .map_err(|err| format!("a client's connection: {err}"))?;
        let start = Arc::clone(&start);
        let client =
            thread::Builder::new().spawn(move || -> io::Result<(u64, u64)> {
                let mut reader = BufReader::new(sock.try_clone()?);
                let mut sock = sock;
                let mut reply = String::new();
                let (mut right, mut wrong) = (0, 0);
                start.wait();
                let began = Instant::now();
                while began.elapsed() < time {
                    sock.write_all(b"x\n")?;
                    reply.clear();
                    reader.read_line(&mut reply)?;
                    if reply == "server got: [x]\n" {
                        right += 1;
                    } else {
                        wrong += 1;
                    }
                }
                Ok((right, wrong))
            });
        // Those started wait at `start` until the process ends.
        handles.push(
            client.map_err(|err| format!("cannot start a thread: {err}"))?,
        );
    }
    start.wait();
    let (mut right, mut wrong) = (0, 0);
    for handle in handles {
        let (r, w) = handle
            .join()
            .map_err(|_| "a client panicked")?
            .map_err(|err| format!("a client's requests: {err}"))?;
        right += r;
        wrong += w;
    }
    Ok((right, wrong))
}
// ANCHOR_END: requests

/// A number from `/proc/PID/status`: in kB for sizes.
fn status_field(pid: Pid, field: &str) -> Result<u64, Box<dyn Error>> {
    let path = format!("/proc/{pid}/status");
    let status =
        fs::read_to_string(&path).map_err(|err| format!("{path}: {err}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status").into())
}

fn open_fds(pid: Pid) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

fn ms(time: Option<Duration>) -> String {
    time.map_or("-".into(), |t| format!("{:.1}", t.as_secs_f64() * 1000.0))
}

/// The CPU model, the number of CPUs, the kernel, the build and the date.
fn machine() -> Result<String, Box<dyn Error>> {
    let read = |path: &str| {
        fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))
    };
    let cpuinfo = read("/proc/cpuinfo")?;
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, model)| model.trim());
    // The machine's CPUs, online: not `available_parallelism`, which
    // counts those this process may use (one, under `taskset -c 0`).
    let cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease")?;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    // The day in UTC, as the record script's log gives it, whatever the
    // time zone.
    let date = chrono::Utc::now().format("%Y-%m-%d");
    // The load average, the first number in /proc/loadavg: a damped
    // average, with a time constant of a minute, of the tasks running,
    // waiting to run or in uninterruptible sleep, which says how busy the
    // machine was, not how busy it is now.
    let loadavg = read("/proc/loadavg")?;
    let load = loadavg.split_whitespace().next().unwrap_or("?");
    Ok(format!(
        "machine: {model}, {cpus} CPUs, Linux {}; {build} build; {date}\n\
         load average at the start: {load}",
        kernel.trim()
    ))
}

/// With `--pin`: the CPUs the servers run on.
static SERVER_CPUS: OnceLock<CpuSet> = OnceLock::new();

/// Splits the CPUs this process may use: the last for the servers, the
/// others for this thread, and so for every thread it starts later, the
/// clients. Returns the servers' set and a line for the report.
fn pin() -> Result<(CpuSet, String), Box<dyn Error>> {
    let allowed = sched_getaffinity(Pid::from_raw(0))?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .collect();
    let Some((&last, others)) =
        cpus.split_last().filter(|(_, o)| !o.is_empty())
    else {
        return Err("--pin needs two CPUs; this process may use one".into());
    };
    let (mut servers, mut clients) = (CpuSet::new(), CpuSet::new());
    servers.set(last)?;
    for &cpu in others {
        clients.set(cpu)?;
    }
    sched_setaffinity(Pid::from_raw(0), &clients)?;
    let list: Vec<String> = others.iter().map(usize::to_string).collect();
    let said = format!(
        "pinned: the servers on CPU {last}, net-load's clients on CPU {}",
        list.join(", ")
    );
    Ok((servers, said))
}

/// The limits on descriptors this program was given, soft and hard,
/// before it raised its own: the servers it starts get them back.
static GIVEN_FD_LIMIT: OnceLock<(u64, u64)> = OnceLock::new();

// ANCHOR: server
/// A server under test, started from the binary of that name next to
/// ours, on a free port, and killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(
        name: &'static str,
        args: &[&str],
    ) -> Result<Server, Box<dyn Error>> {
        let path = sibling(name)?;
        let parent = getpid();
        let given = GIVEN_FD_LIMIT.get().copied();
        let pinned = SERVER_CPUS.get().copied();
        let mut command = Command::new(&path);
        command
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: between `fork` and `exec` in a program with threads,
        // nothing may allocate or lock (Chapter 24). `setrlimit`,
        // `sched_setaffinity`, `prctl` and `getppid` are system calls, and an error made from an errno
        // allocates nothing, unlike `io::Error::other`.
        unsafe {
            command.pre_exec(move || {
                // The soft limit we were given, not the one we raised.
                if let Some((soft, hard)) = given {
                    setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
                }
                // With `--pin`, the servers' CPU, for all their threads.
                if let Some(cpus) = pinned {
                    sched_setaffinity(Pid::from_raw(0), &cpus)?;
                }
                // The server dies with us, even if we are killed. (The
                // signal comes when the thread that forked ends: this
                // program starts every server from its main thread.)
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                if getppid() != parent {
                    // The benchmark is gone already: no such process.
                    return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
                Ok(())
            })
        };
        let mut child = command
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", path.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (first, line) = mpsc::channel();
        let mut server = Server {
            name,
            child,
            addr: ([127, 0, 0, 1], 0).into(),
        };
        // The server logs every connection: read its log to the end, or
        // the pipe fills up and the server stops. Refused a thread,
        // `server` is dropped: its child killed and reaped.
        thread::Builder::new()
            .spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let _ = first.send(lines.next());
                lines.for_each(drop);
            })
            .map_err(|err| format!("cannot start a thread: {err}"))?;
        let ready = line
            .recv_timeout(PATIENCE)
            .ok()
            .flatten()
            .and_then(Result::ok);
        let addr = ready
            .as_deref()
            .and_then(|l| l.strip_prefix("Server listening on "))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("{name} did not say where it listens"))?;
        server.addr = addr;
        Ok(server)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
// ANCHOR_END: server

/// The binary `name` in the directory of this program's own.
fn sibling(name: &str) -> Result<PathBuf, Box<dyn Error>> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.is_file() {
        return Err(format!(
            "no {} next to {}: build all the listings first \
             (cargo build --release -p listings)",
            name,
            me.display()
        )
        .into());
    }
    Ok(path)
}

/// The report: to stdout as it comes, and to a file, rewritten after each
/// line, which starts with the command that made it.
struct Report {
    text: String,
    file: PathBuf,
}

impl Report {
    /// The file is FILE with `--record FILE`; the book's own with
    /// `--book`, from the top of the repository; otherwise one under the
    /// build directory, `target/`, next to this program's: never a file
    /// of the book's unless asked.
    fn new(config: &Config) -> Result<Report, Box<dyn Error>> {
        let name = if config.with_async {
            "30-02-net-load.out"
        } else {
            "15-03-net-load.out"
        };
        let file = if let Some(record) = &config.record {
            record.clone()
        } else if config.book {
            let chapter = if config.with_async {
                "listings/ch30-async-sockets"
            } else {
                "listings/ch15-poll"
            };
            if !Path::new(chapter).is_dir() {
                return Err(format!(
                    "--book: no {chapter} here; run it from the top of \
                     the book's repository"
                )
                .into());
            }
            Path::new(chapter).join(name)
        } else {
            // target/release/net-load: target/net-load/NAME.
            let me = std::env::current_exe()?;
            let target = me
                .parent()
                .and_then(Path::parent)
                .ok_or("no directory above this program's")?;
            target.join("net-load").join(name)
        };
        // The command as run from the workspace, by the build that ran.
        let build = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let text = format!("$ target/{build}/net-load{}\n", config.shown);
        // Only the directory of our own file under target/ is made: a
        // FILE the user names goes where they named it, as with a shell's
        // `>`, and a mistyped directory is an error, not a new directory.
        if let (None, Some(dir)) = (&config.record, file.parent()) {
            fs::create_dir_all(dir).map_err(|err| {
                format!("cannot make {}: {err}", escaped(dir))
            })?;
        }
        let report = Report { text, file };
        // Written at once, so that a FILE we cannot write stops us before
        // the load test, not after its first line.
        report.write()?;
        Ok(report)
    }

    fn line(&mut self, line: &str) -> io::Result<()> {
        writeln!(io::stdout(), "{line}")?;
        self.text.push_str(line);
        self.text.push('\n');
        self.write()
    }

    fn write(&self) -> io::Result<()> {
        fs::write(&self.file, &self.text).map_err(|err| {
            let why = format!("cannot write {}: {err}", escaped(&self.file));
            io::Error::new(err.kind(), why)
        })
    }
}

/// `path` as a message shows it: escaped as `str::escape_debug` escapes
/// (a file name on Linux may hold any byte but `/` and NUL), so that a
/// newline in it cannot start a line of its own, in the log or on stderr.
fn escaped(path: &Path) -> String {
    path.display().to_string().escape_debug().to_string()
}

/// Gives SIGPIPE back its default action: the report is a filter's output.
fn restore_sigpipe() -> nix::Result<()> {
    // SAFETY: the default action runs no code of ours.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    // A parent that blocked SIGPIPE passed its mask on through `exec`:
    // blocked, the signal would only wait, and writes would fail with EPIPE.
    SigSet::from(Signal::SIGPIPE).thread_unblock()
}

fn parse_args() -> Result<Config, lexopt::Error> {
    use lexopt::prelude::*;
    let mut config = Config {
        clients: 500,
        rounds: None,
        idle: 10_000,
        garbage: 1 << 20,
        with_async: false,
        pin: false,
        seconds: 1,
        conns: 32,
        record: None,
        book: false,
        shown: String::new(),
    };
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        let shown = &mut config.shown;
        match arg {
            Long("clients") => {
                config.clients = within("--clients", 10_000, &mut args, shown)?
            }
            Long("rounds") => {
                config.rounds = Some(within("--rounds", 100, &mut args, shown)?)
            }
            Long("idle") => {
                config.idle = within("--idle", 100_000, &mut args, shown)?
            }
            Long("garbage") => {
                config.garbage = within("--garbage", 1 << 30, &mut args, shown)?
            }
            Long("with-async") => {
                config.with_async = true;
                shown.push_str(" --with-async");
            }
            Long("pin") => {
                config.pin = true;
                shown.push_str(" --pin");
            }
            Long("seconds") => {
                config.seconds = within("--seconds", 600, &mut args, shown)?
            }
            Long("conns") => {
                config.conns = within("--conns", 1000, &mut args, shown)?
            }
            Long("record") => config.record = Some(args.value()?.into()),
            Long("book") => config.book = true,
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    if config.book && config.record.is_some() {
        return Err("--record and --book both say where: choose one".into());
    }
    Ok(config)
}

/// lexopt's error for an argument we did not expect, with an unknown
/// option escaped as lexopt escapes a value: a newline the user typed in
/// it must not start a second line of error.
fn unexpected(arg: lexopt::Arg<'_>) -> lexopt::Error {
    match arg.unexpected() {
        lexopt::Error::UnexpectedOption(option) => {
            format!("invalid option '{}'", option.escape_debug()).into()
        }
        other => other,
    }
}

/// The value of option `name`, from 1 to `most`; appended, with the
/// option, to `shown`.
fn within(
    name: &str,
    most: usize,
    args: &mut lexopt::Parser,
    shown: &mut String,
) -> Result<usize, lexopt::Error> {
    use lexopt::prelude::*;
    let number: usize = args.value()?.parse()?;
    if !(1..=most).contains(&number) {
        return Err(format!("{name} must be from 1 to {most}").into());
    }
    let _ = write!(shown, " {name} {number}");
    Ok(number)
}
// Unit tests (`cargo test`).
#[cfg(test)]
mod tests {
    use super::*;

    /// Each whole set of rounds of `rows` rows in `order`: every row in
    /// every place equally often, and right after every other row equally
    /// often.
    fn assert_balanced(order: &[usize], rows: usize) {
        let rounds: Vec<&[usize]> = order.chunks(rows).collect();
        let set = balanced_set(rows);
        let times = set / rows;
        for set in rounds.chunks(set) {
            for row in 0..rows {
                let mut places: Vec<usize> = set
                    .iter()
                    .map(|r| r.iter().position(|&x| x == row).unwrap())
                    .collect();
                places.sort();
                let each: Vec<usize> =
                    (0..rows).flat_map(|p| [p].repeat(times)).collect();
                assert_eq!(places, each, "row {row} in {order:?}");
            }
            let mut pairs: Vec<(usize, usize)> = set
                .iter()
                .flat_map(|r| r.windows(2).map(|w| (w[0], w[1])))
                .collect();
            pairs.sort();
            let mut each: Vec<(usize, usize)> = (0..rows)
                .flat_map(|a| (0..rows).map(move |b| (a, b)))
                .filter(|(a, b)| a != b)
                .flat_map(|pair| [pair].repeat(times))
                .collect();
            each.sort();
            assert_eq!(pairs, each, "every ordered pair: {order:?}");
        }
    }

    #[test]
    fn every_drawn_order_is_balanced_over_each_whole_set_of_rounds() {
        for rows in [3, 4] {
            for _ in 0..50 {
                let rounds = 2 * balanced_set(rows);
                let order = turns(rounds, rows);
                assert_eq!(order.len(), rounds * rows);
                assert_balanced(&order, rows);
            }
        }
        // Four rows take four rounds to balance; three take six.
        assert_eq!((balanced_set(4), balanced_set(3)), (4, 6));
        // A partial set is cut short, not padded.
        assert_eq!(turns(5, 4).len(), 20);
    }

    #[test]
    fn draws_give_a_row_many_sequences_of_places() {
        // Relabelling one square gave a row only four sequences of places
        // in four rounds (the square's columns); drawing the order of the
        // rounds and their direction too gives it many more.
        let sequences: std::collections::HashSet<Vec<usize>> = (0..200)
            .map(|_| {
                turns(4, 4)
                    .chunks(4)
                    .map(|r| r.iter().position(|&x| x == 0).unwrap())
                    .collect()
            })
            .collect();
        assert!(sequences.len() > 8, "{sequences:?}");
    }

    #[test]
    fn clients_that_failed_rank_last_in_the_percentiles() {
        // 98 clients answered in 1 ms, one reset, one wrong: the p50 is
        // theirs, but the p99 and the max land on a client that failed.
        let fast = Duration::from_millis(1);
        let mut results: Vec<_> =
            (0..98).map(|_| Outcome::Right(fast)).collect();
        results.push(Outcome::Failed(io::ErrorKind::ConnectionReset));
        results.push(Outcome::Wrong);
        let row = burst_row("server", 128, &results);
        let first: Vec<_> =
            row.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            first,
            ["server", "128", "98", "1", "1", "1.0", "-", "-", "0"]
        );
        assert_eq!(row.lines().nth(1), Some("  1 failed: connection reset"));
        // When all are answered, the p99 of 100 is the 99th smallest.
        let times: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(
            percentile(&times, 100, 99),
            Some(Duration::from_millis(99))
        );
        assert_eq!(
            percentile(&times, 100, 100),
            Some(Duration::from_millis(100))
        );
        assert_eq!(percentile(&times[..98], 100, 99), None);
        assert_eq!(percentile(&[], 0, 50), None);
    }

    #[test]
    fn every_client_of_a_burst_is_timed_from_the_same_moment() {
        // Each client's clock starts when the barrier released them all,
        // not when the client next ran: the same instant for all.
        let start = Arc::new(Barrier::new(8));
        let released = Arc::new(OnceLock::new());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let start = Arc::clone(&start);
                let released = Arc::clone(&released);
                thread::spawn(move || released_at(&start, &released))
            })
            .collect();
        let clocks: Vec<Instant> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(clocks.iter().all(|c| *c == clocks[0]), "{clocks:?}");
    }
}
// ANCHOR_END: whole
