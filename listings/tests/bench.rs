//! What the tests of Part V share: chapter 26 measures latency and
//! chapter 27 throughput with the same placements, the same C twins, the
//! same one-line reports and the same published results.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

use crate::support::*;

/// The CPUs this test process may run on.
pub fn usable_cpus() -> Vec<usize> {
    let allowed = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
    (0..CpuSet::count())
        .filter(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .collect()
}

/// The placements this machine can offer: `different` needs two CPUs.
pub fn placements() -> Vec<&'static str> {
    if usable_cpus().len() >= 2 {
        vec!["same", "different", "any"]
    } else {
        vec!["same", "any"]
    }
}

/// What a line must say about where the two processes ran.
pub fn placement_pattern(cpus: &str) -> &'static str {
    match cpus {
        "same" => r"CPU (\d+)",
        "different" => r"CPUs (\d+) and (\d+)",
        _ => "any CPU",
    }
}

/// Compiles a C reference with `cc -O2`, as the benchmark command does,
/// into `dir`; returns the binary.
pub fn compile_c(source: &str, dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    let binary = dir.join(source.file_stem().unwrap());
    let out = Command::new("cc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

/// The part of a result line before `measured:`: what was moved, over
/// what, where. Rust and C must agree on it exactly.
pub fn protocol(line: &str) -> &str {
    line.split_once("; measured: ")
        .unwrap_or_else(|| panic!("no measurement in {line:?}"))
        .0
}

/// Runs one program once and returns its one line.
pub fn one_line(bin: &str, args: &[&str]) -> String {
    let out = run(bin, args);
    assert!(out.status.success(), "{bin} {args:?}: {}", out.stderr);
    assert_eq!(out.stdout.len(), 1, "{bin} {args:?}: {:?}", out.stdout);
    out.stdout[0].clone()
}

/// Runs `bin` with its standard output on /dev/full, where every write
/// fails with ENOSPC, and checks that it says so in one line on stderr and
/// exits with status 1: no panic, and no silent success.
#[track_caller]
pub fn assert_reports_a_full_stdout(bin: &Path, name: &str, args: &[&str]) {
    let full = fs::File::options().write(true).open("/dev/full").unwrap();
    let out =
        Listing::spawn(Command::new(bin).args(args), full.into()).finish();
    assert_eq!(out.status.code(), Some(1), "{name}: {}", out.stderr);
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{name}: one line, got {:?}", out.stderr);
    assert!(
        lines[0].starts_with(&format!("{name}: "))
            && lines[0].contains("No space left on device"),
        "{:?}",
        lines[0]
    );
}

/// The published runs, from listings/bench/raw.json.
pub fn published() -> serde_json::Value {
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/raw.json");
    serde_json::from_str(&fs::read_to_string(raw).unwrap()).unwrap()
}

/// The median over the published runs that match `what` of `field`.
pub fn median_of(
    runs: &serde_json::Value,
    what: &[(&str, serde_json::Value)],
    field: &str,
) -> f64 {
    let mut values: Vec<f64> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| what.iter().all(|(k, v)| &r[*k] == v))
        .map(|r| r[field].as_f64().unwrap())
        .collect();
    assert!(!values.is_empty(), "no published run is {what:?}");
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

/// The samples of a published profile that fell in one kind of work:
/// proportional to CPU time, for runs that move the same bytes.
pub fn profile_samples(raw: &serde_json::Value, name: &str, work: &str) -> f64 {
    let profile = &raw["profiles"][name];
    let share = profile["categories"][work].as_f64().unwrap_or(0.0) / 100.0;
    share * profile["samples"].as_f64().unwrap()
}

/// Rust's time over C's, round by round, for every row of both verdict
/// tables ("latency pipe same block", "throughput tcp different"), sorted.
pub fn ratios_by_row(raw: &serde_json::Value) -> BTreeMap<String, Vec<f64>> {
    ratios_by_row_at(raw, "p50")
}

/// As `ratios_by_row`, with the latency rows compared at `percentile`
/// ("p50", "p99", "p999") instead of the median.
pub fn ratios_by_row_at(
    raw: &serde_json::Value,
    percentile: &str,
) -> BTreeMap<String, Vec<f64>> {
    let mut rows: BTreeMap<String, BTreeMap<String, BTreeMap<u64, f64>>> =
        BTreeMap::new();
    for run in raw["runs"].as_array().unwrap() {
        let kind = run["kind"].as_str().unwrap();
        let mut row = format!(
            "{kind} {} {}",
            run["mechanism"].as_str().unwrap(),
            run["placement"].as_str().unwrap()
        );
        let field = if kind == "latency" {
            row += &format!(" {}", run["wait"].as_str().unwrap());
            percentile
        } else {
            "rate"
        };
        rows.entry(row)
            .or_default()
            .entry(run["language"].as_str().unwrap().to_string())
            .or_default()
            .insert(
                run["round"].as_u64().unwrap(),
                run[field].as_f64().unwrap(),
            );
    }
    rows.into_iter()
        .map(|(row, by_language)| {
            let (rust, c) = (&by_language["rust"], &by_language["c"]);
            let mut ratios: Vec<f64> = rust
                .iter()
                .filter_map(|(round, r)| {
                    let c = c.get(round)?;
                    // Time: C's rate over Rust's is Rust's time over C's.
                    Some(if row.starts_with("latency") {
                        r / c
                    } else {
                        c / r
                    })
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            (row, ratios)
        })
        .collect()
}

/// The median of Rust's time over C's in one row, and its 95% interval.
pub fn rust_over_c(raw: &serde_json::Value, row: &str) -> (f64, f64, f64) {
    let rows = ratios_by_row(raw);
    let ratios = &rows[row];
    let (n, k) = (ratios.len(), interval_rank(ratios.len() as u64) as usize);
    assert!(k > 0, "{row}: too few rounds for an interval");
    let median = (ratios[(n - 1) / 2] + ratios[n / 2]) / 2.0;
    (median, ratios[k - 1], ratios[n - k])
}

/// k for n ratios: the interval from the k-th lowest to the k-th highest
/// holds their median with probability 95% at least (0: no interval).
pub fn interval_rank(n: u64) -> u64 {
    let total = 2f64.powi(n as i32);
    let (mut cumulative, mut k) = (0.0, 0);
    for j in 0..n {
        cumulative += binomial(n, j) / total;
        if cumulative > 0.025 {
            break;
        }
        k = j + 1;
    }
    k
}

/// The binomial coefficient n choose j, as a float.
fn binomial(n: u64, j: u64) -> f64 {
    (0..j).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64)
}

/// The probability that the interval of n ratios leaves the median out.
pub fn miss_probability(n: u64) -> f64 {
    let k = interval_rank(n);
    2.0 * (0..k).map(|j| binomial(n, j)).sum::<f64>() / 2f64.powi(n as i32)
}

/// The probability that `m` or more of `n` independent events happen,
/// each with probability `p`.
pub fn at_least(n: u64, p: f64, m: u64) -> f64 {
    (m..=n)
        .map(|j| {
            binomial(n, j) * p.powi(j as i32) * (1.0 - p).powi((n - j) as i32)
        })
        .sum()
}

/// One round of a row of the verdict tables, as the command ran it:
/// whether Rust went first, and Rust's time over C's.
pub struct Pair {
    pub rust_first: bool,
    pub ratio: f64,
}

impl Pair {
    /// The second run's time over the first's.
    pub fn second_over_first(&self) -> f64 {
        if self.rust_first {
            1.0 / self.ratio
        } else {
            self.ratio
        }
    }
}

/// Every row of both verdict tables, keyed as in `ratios_by_row`, with
/// its rounds in order. `raw.json` lists the runs in the order they ran
/// (`measure` in `listings/bench/run` appends each run as it ends), so the
/// two runs of a pair stand next to each other, after one speed check.
pub fn pairs_in_order(raw: &serde_json::Value) -> BTreeMap<String, Vec<Pair>> {
    let mut runs: BTreeMap<(String, u64), Vec<(usize, &serde_json::Value)>> =
        BTreeMap::new();
    for (i, run) in raw["runs"].as_array().unwrap().iter().enumerate() {
        let kind = run["kind"].as_str().unwrap();
        let mut row = format!(
            "{kind} {} {}",
            run["mechanism"].as_str().unwrap(),
            run["placement"].as_str().unwrap()
        );
        if kind == "latency" {
            row += &format!(" {}", run["wait"].as_str().unwrap());
        }
        runs.entry((row, run["round"].as_u64().unwrap()))
            .or_default()
            .push((i, run));
    }
    let mut rows: BTreeMap<String, Vec<Pair>> = BTreeMap::new();
    for ((row, round), pair) in runs {
        let [(i, a), (j, b)] = pair[..] else {
            panic!("{row}, round {round}: {} runs, not a pair", pair.len())
        };
        assert_eq!(j, i + 1, "{row}, round {round}: the pair's runs apart");
        assert_eq!(a["speed"], b["speed"], "{row}, round {round}: two checks");
        let (rust, c, rust_first) = if a["language"] == "rust" {
            (a, b, true)
        } else {
            (b, a, false)
        };
        let ratio = if row.starts_with("latency") {
            rust["p50"].as_f64().unwrap() / c["p50"].as_f64().unwrap()
        } else {
            c["rate"].as_f64().unwrap() / rust["rate"].as_f64().unwrap()
        };
        rows.entry(row)
            .or_default()
            .push(Pair { rust_first, ratio });
    }
    rows
}

/// The median of `values` (not empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

/// Rust's time over C's in the rounds where Rust went first and in those
/// where C did: each group's ratios, sorted.
pub fn by_first(pairs: &[Pair]) -> (Vec<f64>, Vec<f64>) {
    let group = |rust_first: bool| {
        let mut ratios: Vec<f64> = pairs
            .iter()
            .filter(|p| p.rust_first == rust_first)
            .map(|p| p.ratio)
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
    };
    (group(true), group(false))
}
