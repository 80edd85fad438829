//! Chapter 32: a blocking call inside a tokio task, on a runtime with one
//! thread or more, and the ways out (Listing 32-1); a task that never
//! waits, and tokio's budget (Listing 32-2).

use regex::Regex;

use crate::support::{
    assert_names_the_step_when_descriptors_run_out, assert_rejects,
    assert_session_matches_book_masking, assert_starts_or_says_why, cargo_run,
    run_clean,
};

/// What one run reported: what it waited for, how long the wait took,
/// how many ticks came meanwhile, the longest gap between ticks, when a
/// task spawned just before the wait first ran, and each worker's busy
/// time, longest first.
struct Report {
    outcome: String,
    took: f64,
    ticks: usize,
    gap: f64,
    spawned_ran: f64,
    busy: Vec<f64>,
}

fn block(args: &[&str]) -> Report {
    let out = run_clean(bin!("async-block"), args);
    assert!(out.status.success(), "{args:?}: {}", out.stderr);
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout.len(), 5, "{:?}", out.stdout);
    assert!(out.stdout[0].starts_with("Ticking every 100 ms; now waiting "));
    let line = |i: usize, pattern: &str| {
        let re = Regex::new(pattern).unwrap();
        let caps = re
            .captures(&out.stdout[i])
            .unwrap_or_else(|| panic!("{args:?}: {:?}", out.stdout[i]));
        caps.iter()
            .map(|m| m.map_or("", |m| m.as_str()).to_string())
            .collect::<Vec<_>>()
    };
    let waited = line(1, r"^(.*) after (\d+\.\d+) s$");
    let ticker = line(
        2,
        r"^the ticker: (\d+) ticks meanwhile, the longest gap (\d+\.\d+) s$",
    );
    let spawned = line(
        3,
        r"^a task spawned just before the wait: first ran after (\d+\.\d+) s$",
    );
    let busy = line(4, r"^each worker's busy time: (.*)$");
    Report {
        outcome: waited[1].clone(),
        took: waited[2].parse().unwrap(),
        ticks: ticker[1].parse().unwrap(),
        gap: ticker[2].parse().unwrap(),
        spawned_ran: spawned[1].parse().unwrap(),
        busy: busy[1]
            .split(", ")
            .map(|b| b.strip_suffix(" s").unwrap().parse().unwrap())
            .collect(),
    }
}

/// What each way gets once its wait is over.
fn outcome(way: &str) -> &'static str {
    match way {
        "wait" => "sleep 1 ended: exit status: 0",
        "read" => "read 6 bytes",
        _ => "got SIGUSR1",
    }
}

#[test]
fn async_block_a_blocking_call_in_a_task_stops_every_other_task() {
    for way in ["wait", "read", "signal"] {
        let report = block(&[way]);
        assert_eq!(report.outcome, outcome(way));
        // The wait took its second; the ticker, on the same thread, could
        // not run at all meanwhile, and its longest gap was as long; nor
        // could the task spawned just before. The one worker was busy.
        assert!(report.took >= 1.0, "{way}: {}", report.took);
        assert_eq!(report.ticks, 0, "{way}");
        assert!(report.gap >= 1.0, "{way}: {}", report.gap);
        assert!(report.spawned_ran >= 1.0, "{way}: {}", report.spawned_ran);
        assert_eq!(report.busy.len(), 1);
        assert!(report.busy[0] >= 1.0, "{way}: {:?}", report.busy);
    }
}

#[test]
fn async_block_spawn_blocking_and_async_waits_leave_the_runtime_free() {
    for way in ["wait", "read", "signal"] {
        for fix in ["spawn-blocking", "async"] {
            let report = block(&[way, "--fix", fix]);
            assert_eq!(report.outcome, outcome(way));
            assert!(report.took >= 1.0, "{way} {fix}: {}", report.took);
            // About ten; how many depends on the machine's load. At least
            // one came while the wait went on, and the spawned task ran
            // before the wait was over.
            assert!(report.ticks >= 1, "{way} {fix}: no tick");
            assert!(report.spawned_ran < 1.0, "{way} {fix}");
        }
    }
}

#[test]
fn async_block_on_two_workers_the_ticker_keeps_time_but_the_lifo_task_stalls() {
    for way in ["wait", "read", "signal"] {
        let report = block(&[way, "--workers", "2"]);
        assert_eq!(report.outcome, outcome(way));
        // The ticker runs on the other worker; the task spawned just
        // before the wait sits in the blocked worker's LIFO slot, which no
        // other worker may steal from, and waits for the wait to end.
        assert!(report.ticks >= 1, "{way}: no tick");
        assert!(report.spawned_ran >= 1.0, "{way}: {}", report.spawned_ran);
        // The metrics show one worker busy all along.
        assert_eq!(report.busy.len(), 2);
        assert!(report.busy[0] >= 1.0, "{way}: {:?}", report.busy);
        assert!(report.busy[1] < 0.5, "{way}: {:?}", report.busy);
    }
}

#[test]
fn async_block_block_in_place_hands_the_other_tasks_to_a_new_thread() {
    for way in ["wait", "read", "signal"] {
        let report = block(&[way, "--workers", "1", "--fix", "block-in-place"]);
        assert_eq!(report.outcome, outcome(way));
        // The worker's core, with its metrics, went to another thread: the
        // blocking call is no worker's busy time.
        assert_eq!(report.busy.len(), 1);
        assert!(report.busy[0] < 0.5, "{way}: {:?}", report.busy);
        // One worker, blocked, and yet everything else runs.
        assert!(report.ticks >= 1, "{way}: no tick");
        assert!(report.spawned_ran < 1.0, "{way}: {}", report.spawned_ran);
    }
}

/// What the listing's refusal rests on: `block_in_place` panics on the
/// current-thread scheduler, but not on the multi-threaded one with a
/// single worker.
#[test]
fn block_in_place_panics_on_the_current_thread_scheduler_only() {
    use tokio::runtime::Builder;
    let current = Builder::new_current_thread().build().unwrap();
    let panicked = std::panic::catch_unwind(|| {
        current.block_on(async { tokio::task::block_in_place(|| 1) })
    });
    assert!(
        panicked.is_err(),
        "no panic on the current-thread scheduler"
    );
    let one_worker = Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let got = one_worker.block_on(async { tokio::task::block_in_place(|| 1) });
    assert_eq!(got, 1);
}

/// What the chapter says of the blocking pool's limit: past it, a call
/// waits in a queue, with no error, until a busy thread comes free. One
/// blocking thread (`max_blocking_threads(1)`) stands for the 512 of the
/// default.
#[test]
fn a_blocking_call_past_the_pools_limit_waits_for_a_busy_thread() {
    use std::sync::mpsc;
    use std::time::Duration;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let (started, busy) = mpsc::channel();
    let (release, held) = mpsc::channel::<()>();
    let first = runtime.spawn_blocking(move || {
        started.send(()).unwrap();
        let _ = held.recv();
    });
    busy.recv().unwrap();
    let (ran, second_ran) = mpsc::channel();
    let second = runtime.spawn_blocking(move || ran.send(()).unwrap());
    // Not a synchronisation: the time in which it would have run, had the
    // pool started a thread for it.
    let early = second_ran.recv_timeout(Duration::from_millis(500));
    assert!(early.is_err(), "ran past the pool's limit");
    release.send(()).unwrap();
    second_ran
        .recv_timeout(crate::support::PATIENCE)
        .expect("run once the busy thread came free");
    runtime.block_on(async {
        first.await.unwrap();
        second.await.unwrap();
    });
}

/// What a sampler of tokio's stable metrics sees while a task blocks its
/// worker: a worker's busy time reaches the metrics only when the worker
/// comes back from its tasks, so it does not move while the call lasts,
/// like an idle worker's; the call's time shows all at once afterwards.
/// The blocked worker's park/unpark count stays even (unparked) and still;
/// an idle one's is odd (parked).
#[test]
fn a_blocked_worker_shows_in_its_park_count_not_in_its_busy_time() {
    use std::time::{Duration, Instant};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let metrics = runtime.metrics();
    let sample = || {
        (0..2)
            .map(|w| {
                let busy = metrics.worker_total_busy_duration(w);
                (busy, metrics.worker_park_unpark_count(w))
            })
            .collect::<Vec<_>>()
    };
    // Each worker's busy time, and its park/unpark count.
    type Sample = [(Duration, u64)];
    // Polls the metrics, with a deadline, until `ready` holds.
    let until = |ready: &dyn Fn(&Sample) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = sample();
            if ready(&now) {
                return now;
            }
            assert!(Instant::now() < deadline, "metrics stuck at {now:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // Both workers have started and gone to sleep once.
    until(&|now| now.iter().all(|&(_, parks)| parks % 2 == 1));
    let (started, blocking) = std::sync::mpsc::channel();
    let task = runtime.spawn(async move {
        started.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(1500)); // Blocks its worker.
    });
    blocking.recv().unwrap();
    // One worker has woken to run the task, and the other sleeps again.
    let one_awake =
        |now: &Sample| now.iter().filter(|s| s.1 % 2 == 0).count() == 1;
    let first = until(&one_awake);
    let blocked = (0..2).find(|&w| first[w].1 % 2 == 0).unwrap();
    // The measured condition is the blocked call itself: a second
    // sample, half a second later, well inside its second and a half.
    std::thread::sleep(Duration::from_millis(500));
    let second = sample();
    runtime.block_on(task).unwrap();
    // Neither its busy time nor its park/unpark count moved meanwhile.
    assert_eq!(first[blocked], second[blocked], "{first:?} {second:?}");
    assert_eq!(second[1 - blocked].1 % 2, 1, "the other parked: {second:?}");
    // Afterwards the whole call shows as that worker's busy time, once
    // the worker hands in its figures: after the task's end has already
    // woken `block_on`, so the metrics are polled for it.
    until(&|now| {
        now[blocked].0 - second[blocked].0 >= Duration::from_millis(1400)
    });
}

#[test]
fn async_block_output_matches_the_book() {
    let mut session = Vec::new();
    let runs: [&[&str]; 7] = [
        &["wait"],
        &["read"],
        &["signal"],
        &["signal", "--workers", "2"],
        &["signal", "--workers", "1", "--fix", "block-in-place"],
        &["signal", "--fix", "spawn-blocking"],
        &["signal", "--fix", "async"],
    ];
    for args in runs {
        let out = run_clean(bin!("async-block"), args);
        session.push((cargo_run("async-block", args), out.stdout));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    // While the runtime is free, how many ticks come depends on the load;
    // while it is blocked, none can.
    assert_session_matches_book_masking(
        "ch32-async-blocking/32-01-async-block.out",
        &session,
        &[(r": [1-9]\d* ticks meanwhile", ": <n> ticks meanwhile")],
    );
}

/// Once the wait is over, a SIGUSR1 finds again the action the listing
/// found at its start, the default here: death. The handler that signal-hook or tokio installed stays after the
/// iterator or the `Signal` is dropped, and used to swallow it.
#[test]
fn async_block_dies_of_a_second_sigusr1_after_the_wait() {
    use crate::support::{assert_died_of, is_dead, wait_until};
    use nix::sys::signal::Signal;
    for fix in SIGNAL_FIXES {
        let mut command = std::process::Command::new(bin!("async-block"));
        command.args(["signal", "--secs", "60"]).args(fix);
        let (block, reader) = blocked_writing_after_the_wait(command);
        block.signal(Signal::SIGUSR1);
        wait_until("the listing to die of SIGUSR1", || is_dead(block.pid()));
        let out = block.finish();
        assert_died_of(&out, Signal::SIGUSR1);
        drop(reader);
    }
}

/// Each fix of the `signal` way, as arguments.
const SIGNAL_FIXES: [&[&str]; 4] = [
    &[],
    &["--fix", "spawn-blocking"],
    &["--workers", "1", "--fix", "block-in-place"],
    &["--fix", "async"],
];

/// Starts `command`, the `signal` way waiting 60 s for the listing's own
/// SIGUSR1, and returns once the wait is over and the listing is blocked
/// writing its report, with the read end of its stdout. The test sends
/// the SIGUSR1 as soon as the thread that would send it is asleep, which
/// the listing starts only once the listener is in place. Its stdout is a
/// pipe the test fills after the first line: the listing blocks in the
/// write of its next line, after the wait. The read end holds the fill,
/// then whatever the listing writes after.
fn blocked_writing_after_the_wait(
    mut command: std::process::Command,
) -> (crate::support::Listing, std::fs::File) {
    use crate::support::{Listing, threads_blocked_in, wait_until};
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::libc::{SYS_clock_nanosleep, SYS_write};
    use nix::sys::signal::Signal;
    use std::fs::File;
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let (reader, writer) = nix::unistd::pipe().expect("a pipe");
    let (reader, mut writer) = (File::from(reader), File::from(writer));
    let stdout = writer.try_clone().expect("a second write end");
    let block = Listing::spawn(&mut command, Stdio::from(stdout));
    // The command holds a write end too: the reader sees the end of the
    // listing's output only once both are gone.
    drop(command);
    let pid = block.pid();
    // One byte at a time, so that nothing after the first line is taken.
    let mut first = Vec::new();
    let mut reader = BufReader::with_capacity(1, reader);
    reader
        .read_until(b'\n', &mut first)
        .expect("the first line");
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("Ticking"), "{first:?}");
    // Filled without blocking; the listing writes nothing meanwhile.
    let flags = OFlag::from_bits_truncate(
        fcntl(&writer, FcntlArg::F_GETFL).expect("F_GETFL"),
    );
    fcntl(&writer, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    while writer.write(&[b'x'; 4096]).is_ok() {}
    // The flag belongs to the open file description, the listing's too.
    fcntl(&writer, FcntlArg::F_SETFL(flags)).unwrap();
    drop(writer);
    wait_until("the thread that sends SIGUSR1 to sleep", || {
        threads_blocked_in(pid, SYS_clock_nanosleep) == 1
    });
    block.signal(Signal::SIGUSR1);
    wait_until("the listing to block writing after the wait", || {
        threads_blocked_in(pid, SYS_write) == 1
    });
    (block, reader.into_inner())
}

/// Under `ulimit -u`, the threads the listing starts (the peer that writes
/// the pipe, the one that sends SIGUSR1) and the one `spawn_blocking` asks
/// tokio for may be refused: a one-line error, status 1, never a panic.
/// With `--workers`, tokio's `build` asks for each worker, and
/// `block_in_place` for a thread to take over the worker. The user may
/// have one thread (the main one), then two, then three.
#[test]
fn async_block_says_why_in_one_line_when_a_thread_is_refused() {
    use std::process::{Command, Stdio};
    let runs: [&[&str]; 7] = [
        &["read"],
        &["signal"],
        &["read", "--fix", "spawn-blocking"],
        &["wait", "--fix", "spawn-blocking"],
        &["signal", "--fix", "spawn-blocking"],
        &["wait", "--workers", "2"],
        &["read", "--workers", "1", "--fix", "block-in-place"],
    ];
    for args in runs {
        for threads in [1, 2, 3] {
            let mut command = Command::new(bin!("async-block"));
            command.args(args).args(["--secs", "0"]);
            let Some((mut command, _dir)) =
                crate::support::with_thread_limit(&command, threads)
            else {
                return;
            };
            let what = format!("{args:?} under ulimit -u {threads}");
            let out =
                crate::support::Listing::spawn(&mut command, Stdio::piped())
                    .finish();
            if out.status.success() {
                // Two threads are enough for some: no thread refused. One
                // is enough for none, since each run starts a thread of its
                // own or asks tokio for one: a success then means that the
                // limit did not bite, and this test would prove nothing.
                assert!(threads > 1, "{what}: no thread refused");
                assert_eq!(out.stderr, "", "{what}");
                continue;
            }
            assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
            assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
            let lines: Vec<_> = out.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{what}: one line: {:?}", out.stderr);
            assert!(
                lines[0].starts_with("async-block: "),
                "{what}: {}",
                lines[0]
            );
            assert!(
                lines[0].contains("Resource temporarily unavailable"),
                "{what}: {}",
                lines[0]
            );
        }
    }
}

/// The child of the `wait` way is started before the thread that would
/// wait for it is refused; the panic hook exits at once, and no destructor
/// runs then. The child's death signal (`dies_with_us`) ends it when the
/// exit ends the thread that forked it: no `sleep` is left behind (built
/// without the death signal, `sleep 100` ran on, re-parented, and this
/// test failed; the hook's own kill and reap, since removed, added
/// nothing it could see).
#[test]
fn async_block_leaves_no_child_when_the_waiting_thread_is_refused() {
    use crate::support::{Listing, finish_clean};
    use std::process::{Command, Stdio};
    // The main thread and `sleep` fit; the thread that would wait does not.
    let runs: [(&[&str], u64); 2] = [
        (&["wait", "--fix", "spawn-blocking"], 2),
        (&["wait", "--workers", "1", "--fix", "block-in-place"], 3),
    ];
    for (args, threads) in runs {
        let mut command = Command::new(bin!("async-block"));
        command.args(args).args(["--secs", "100"]);
        let Some((mut command, _dir)) =
            crate::support::with_thread_limit(&command, threads)
        else {
            return;
        };
        let what = format!("{args:?} under ulimit -u {threads}");
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
    }
}

/// `kill -TERM` while the `wait` way waits: the program dies of it at
/// once, and no destructor runs, so nothing of its own can end its
/// `sleep`. The kernel does: the child asked for SIGKILL at its parent's
/// death before it ran `sleep`. Each fix, and the multi-threaded runtime,
/// whose workers start the child (before, `sleep 100` ran on, adopted by
/// init, holding the listing's stdout).
#[test]
fn async_block_takes_its_child_with_it_when_killed() {
    use crate::support::{Listing, assert_died_of, children_of, wait_until};
    use nix::sys::signal::Signal;
    let runs: [&[&str]; 4] = [
        &["wait"],
        &["wait", "--fix", "spawn-blocking"],
        &["wait", "--workers", "2", "--fix", "block-in-place"],
        &["wait", "--workers", "2", "--fix", "async"],
    ];
    for args in runs {
        let mut all = args.to_vec();
        all.extend(["--secs", "100"]);
        let mut listing = Listing::start(bin!("async-block"), &all);
        listing.expect("Ticking every 100 ms; now waiting .*");
        let pid = listing.pid();
        wait_until("the listing to start its sleep", || {
            !children_of(pid).is_empty()
        });
        listing.signal(Signal::SIGTERM);
        // Fails if `sleep` holds stdout, or is left in the group.
        let out = listing.finish_clean();
        assert_died_of(&out, Signal::SIGTERM);
    }
}

#[test]
fn async_block_rejects_bad_arguments_in_one_line() {
    assert_rejects(bin!("async-block"), &["spin"], "unknown way");
    assert_rejects(bin!("async-block"), &["--fix", "later"], "unknown fix");
    assert_rejects(bin!("async-block"), &["--secs", "-1"], "--secs");
    assert_rejects(bin!("async-block"), &["--workers", "0"], "zero");
    // More threads than the machine may give would make tokio panic.
    assert_rejects(
        bin!("async-block"),
        &["--workers", "100000"],
        "--workers is at most 64",
    );
    assert_rejects(
        bin!("async-block"),
        &["--fix", "block-in-place"],
        "--fix block-in-place needs --workers N",
    );
}

// ---------------------------------------------------------------------------
// Listing 32-2: tasks that never wait

/// How many ticks came while `async-budget ARGS` worked, and the longest
/// gap between two ticks.
fn budget(args: &[&str]) -> (usize, f64) {
    let out = run_clean(bin!("async-budget"), args);
    assert!(out.status.success(), "{args:?}: {}", out.stderr);
    assert_eq!(out.stdout.len(), 2, "{:?}", out.stdout);
    let re = Regex::new(
        r" in \d+\.\d+ s; the ticker: (\d+) ticks meanwhile, the longest gap (\d+\.\d+) s$",
    )
    .unwrap();
    let caps = re
        .captures(&out.stdout[1])
        .unwrap_or_else(|| panic!("{args:?}: {:?}", out.stdout[1]));
    (caps[1].parse().unwrap(), caps[2].parse().unwrap())
}

#[test]
fn async_budget_a_task_that_never_waits_stops_the_others() {
    let (ticks, gap) = budget(&["compute"]);
    assert_eq!(ticks, 0);
    assert!(gap >= 1.0, "{gap}");
    let (ticks, _) = budget(&["compute", "--yield-now"]);
    assert!(ticks >= 1, "no tick despite yield_now");
}

#[test]
fn async_budget_always_ready_reads_give_way_unless_unconstrained() {
    let (ticks, _) = budget(&["repeat"]);
    assert!(
        ticks >= 1,
        "no tick: the budget did not make the reads give way"
    );
    let (ticks, gap) = budget(&["repeat", "--unconstrained"]);
    assert_eq!(ticks, 0);
    assert!(gap >= 1.0, "{gap}");
}

#[test]
fn async_budget_output_matches_the_book() {
    let mut session = Vec::new();
    let runs: [&[&str]; 4] = [
        &["compute"],
        &["compute", "--yield-now"],
        &["repeat"],
        &["repeat", "--unconstrained"],
    ];
    for args in runs {
        let out = run_clean(bin!("async-budget"), args);
        session.push((cargo_run("async-budget", args), out.stdout));
    }
    let session: Vec<_> =
        session.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book_masking(
        "ch32-async-blocking/32-02-async-budget.out",
        &session,
        &[
            (r": [1-9]\d* ticks meanwhile", ": <n> ticks meanwhile"),
            (r"\d+ MiB read", "<n> MiB read"),
        ],
    );
}

#[test]
fn async_budget_rejects_bad_arguments_in_one_line() {
    let budget = bin!("async-budget");
    assert_rejects(budget, &["spin"], "unknown way");
    assert_rejects(budget, &["compute", "--unconstrained"], "goes with repeat");
    assert_rejects(budget, &["repeat", "--yield-now"], "goes with compute");
}

#[test]
fn async_blocking_listings_start_or_say_why_when_descriptors_are_short() {
    // tokio's runtime needs six descriptors to start, and its signal
    // driver panics when it cannot make its socket pair: each listing must
    // say so in one line instead.
    for (bin, args) in [
        (bin!("async-block"), &["read", "--secs", "0"][..]),
        (
            bin!("async-block"),
            &["read", "--secs", "0", "--workers", "2"],
        ),
        (bin!("async-budget"), &["compute", "--secs", "0"]),
    ] {
        let command = || {
            let mut command = std::process::Command::new(bin);
            command.args(args);
            command
        };
        let started = assert_starts_or_says_why(command, 4..=12, |_| {});
        assert!(started.contains(&12), "{bin} started at {started:?}");
    }
    // With the runtime started and no pair of descriptors left for
    // signal-hook's socket pair, the `signal` way must say that it could
    // not watch for SIGUSR1, not only "Too many open files".
    for fix in [&[][..], &["--fix", "spawn-blocking"]] {
        let command = || {
            let mut command = std::process::Command::new(bin!("async-block"));
            command.args(["signal", "--secs", "0"]).args(fix);
            command
        };
        let lines =
            assert_names_the_step_when_descriptors_run_out(command, 9..=10);
        let said = "async-block: cannot watch for SIGUSR1: Too many open files \
                    (os error 24)";
        assert_eq!(lines, [said; 2], "{fix:?}");
    }
}

/// Every way, under every limit of descriptors too low for it, says which
/// step it could not take: starting tokio's runtime, making the pipe,
/// starting `sleep`, watching for SIGUSR1. The first three said only
/// "Too many open files".
#[test]
fn async_block_names_the_step_under_every_descriptor_limit() {
    for way in [
        &["wait"][..],
        &["wait", "--fix", "async"],
        &["read"],
        &["read", "--fix", "async"],
        &["signal"],
    ] {
        let command = || {
            let mut command = std::process::Command::new(bin!("async-block"));
            command.args(way).args(["--secs", "0"]);
            command
        };
        let lines =
            assert_names_the_step_when_descriptors_run_out(command, 4..=13);
        assert!(
            lines[0].starts_with("async-block: cannot start tokio's runtime: "),
            "{way:?}: {lines:?}"
        );
        assert_eq!(lines.last().map(String::as_str), Some(""), "{way:?}");
    }
}

/// A parent may leave SIGUSR1 blocked (`env --block-signal`, coreutils
/// 9.1 here, does so and execs), and `exec` keeps the mask (Linux 6.18
/// here), which every
/// thread of the runtime inherits: the `signal` way must unblock it
/// before the runtime starts, or the signal it sends itself stays pending
/// and the wait never ends. It used to hang, each fix alike.
#[test]
fn async_block_hears_a_sigusr1_its_parent_had_blocked() {
    for fix in ["async", "spawn-blocking"] {
        let mut command = std::process::Command::new("env");
        command
            .arg("--block-signal=USR1")
            .arg(bin!("async-block"))
            .args(["signal", "--fix", fix, "--secs", "0"]);
        let listing = crate::support::Listing::spawn(
            &mut command,
            std::process::Stdio::piped(),
        );
        let out = crate::support::finish_clean(listing);
        assert!(
            out.status.success(),
            "{fix}: {:?} {}",
            out.status,
            out.stderr
        );
        let got = out.stdout.iter().any(|line| line.contains("got SIGUSR1"));
        assert!(got, "{fix}: {:?}", out.stdout);
    }
}

/// A parent may leave SIGUSR1 ignored (`env --ignore-signal`, coreutils
/// 9.1 here), and `exec` keeps an ignored action (Linux 6.18 here). It
/// must stay ignored, as Chapter 12 asks of a signal the user chose to
/// ignore: all along in the `wait` and `read` ways, which never listen
/// for SIGUSR1, and once the wait is over in the `signal` way, each fix.
/// Throwing a pending one away used to end with the default action put
/// back, and a SIGUSR1 sent during the wait then killed the listing; the
/// `signal` way used to put the default back after its wait, and a
/// SIGUSR1 sent then killed it.
#[test]
fn async_block_leaves_an_ignored_sigusr1_ignored() {
    use nix::sys::signal::Signal;
    use std::process::Command;
    let ignoring = |args: &[&str]| {
        let mut command = Command::new("env");
        command
            .arg("--ignore-signal=USR1")
            .arg(bin!("async-block"))
            .args(args);
        command
    };
    for way in ["wait", "read"] {
        let mut listing = crate::support::Listing::spawn(
            &mut ignoring(&[way, "--secs", "1"]),
            std::process::Stdio::piped(),
        );
        listing.expect(r"Ticking every 100 ms; now waiting .*");
        listing.signal(Signal::SIGUSR1);
        let out = crate::support::finish_clean(listing);
        assert!(
            out.status.success(),
            "{way}: {:?} {}",
            out.status,
            out.stderr
        );
        assert_eq!(out.stdout.len(), 5, "{way}: {:?}", out.stdout);
    }
    for fix in SIGNAL_FIXES {
        let args = [&["signal", "--secs", "60"], fix].concat();
        let (listing, mut reader) =
            blocked_writing_after_the_wait(ignoring(&args));
        listing.signal(Signal::SIGUSR1);
        // Read on a thread: the listing's end closes the pipe, and a
        // listing that hangs is killed when `finish` gives up.
        let report = std::thread::spawn(move || {
            let mut all = String::new();
            std::io::Read::read_to_string(&mut reader, &mut all).map(|_| all)
        });
        let out = crate::support::finish_clean(listing);
        let all = report.join().unwrap().expect("the report");
        assert!(
            out.status.success(),
            "{fix:?}: {:?} {}",
            out.status,
            out.stderr
        );
        let report: Vec<_> = all.trim_start_matches('x').lines().collect();
        assert_eq!(report.len(), 4, "{fix:?}: {report:?}");
        assert!(report[0].starts_with("got SIGUSR1 after "), "{report:?}");
    }
}
