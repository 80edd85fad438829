//! Chapter 32: a blocking call inside a tokio task, on a runtime with one
//! thread, and the two ways out.

use regex::Regex;

use crate::support::{
    assert_rejects, assert_session_matches_book_masking, cargo_run, run_clean,
};

/// What one run reported: what it waited for, how long the wait took,
/// how many ticks came meanwhile, and the longest gap between ticks.
struct Report {
    outcome: String,
    took: f64,
    ticks: usize,
    gap: f64,
}

fn block(args: &[&str]) -> Report {
    let out = run_clean(bin!("async-block"), args);
    assert!(out.status.success(), "{args:?}: {}", out.stderr);
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout.len(), 2, "{:?}", out.stdout);
    assert!(out.stdout[0].starts_with("Ticking every 100 ms; now waiting "));
    let re = Regex::new(
        r"^(.*) after (\d+\.\d+) s; meanwhile (\d+) ticks, the longest gap (\d+\.\d+) s$",
    )
    .unwrap();
    let caps = re
        .captures(&out.stdout[1])
        .unwrap_or_else(|| panic!("{args:?}: {:?}", out.stdout[1]));
    Report {
        outcome: caps[1].to_string(),
        took: caps[2].parse().unwrap(),
        ticks: caps[3].parse().unwrap(),
        gap: caps[4].parse().unwrap(),
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
        // not run at all meanwhile, and its longest gap was as long.
        assert!(report.took >= 1.0, "{way}: {}", report.took);
        assert_eq!(report.ticks, 0, "{way}");
        assert!(report.gap >= 1.0, "{way}: {}", report.gap);
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
            // one came while the wait went on.
            assert!(report.ticks >= 1, "{way} {fix}: no tick");
        }
    }
}

#[test]
fn async_block_on_two_workers_the_ticker_keeps_time_beside_a_blocked_one() {
    for way in ["wait", "read", "signal"] {
        let report = block(&[way, "--workers", "2"]);
        assert_eq!(report.outcome, outcome(way));
        // The ticker runs on the other worker.
        assert!(report.ticks >= 1, "{way}: no tick");
    }
}

#[test]
fn async_block_output_matches_the_book() {
    let mut session = Vec::new();
    let runs: [&[&str]; 6] = [
        &["wait"],
        &["read"],
        &["signal"],
        &["signal", "--workers", "2"],
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
        &[(r"meanwhile [1-9]\d* ticks", "meanwhile <n> ticks")],
    );
}

#[test]
fn async_block_rejects_bad_arguments_in_one_line() {
    assert_rejects(bin!("async-block"), &["spin"], "unknown way");
    assert_rejects(bin!("async-block"), &["--fix", "later"], "unknown fix");
    assert_rejects(bin!("async-block"), &["--secs", "-1"], "--secs");
    assert_rejects(bin!("async-block"), &["--workers", "0"], "zero");
}
