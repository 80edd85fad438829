//! Outputs shown in the book: comparing a real run with the `.out` file,
//! normalising what varies, and blessing.

use regex::Regex;
use std::fs;
use std::path::Path;
use std::sync::LazyLock;

use super::*;

/// True when the outputs in the book are to be rewritten from real runs:
/// `BLESS=1 cargo test -p listings`. Read the diff before committing it.
pub fn blessing() -> bool {
    std::env::var_os("BLESS").is_some()
}

/// Compares a real run with the output file the book shows, or rewrites
/// that file when blessing.
///
/// `file` is relative to `listings/`. Its first line is the command that
/// produced it, built here from `bin` and `args`, which must be the
/// arguments the run used (a check run may add an address after them).
#[track_caller]
pub fn assert_matches_book(
    file: &str,
    bin: &str,
    args: &[&str],
    stdout: &[String],
) {
    assert_session_matches_book(file, &[(cargo_run(bin, args), stdout)]);
}

/// The command line a reader types to run `bin` with `args`.
pub fn cargo_run(bin: &str, args: &[&str]) -> String {
    let mut command = format!("cargo run -p listings --bin {bin}");
    if !args.is_empty() {
        command = format!("{command} -- {}", args.join(" "));
    }
    command
}

/// The command line a reader types to run `bin` with `args` once built
/// (`cargo build -p listings`, from the top of a clone): for a session
/// whose numbers `cargo run` would change, such as pids in a new PID
/// namespace, where Cargo's own threads and commands take the first ones.
pub fn built(bin: &str, args: &[&str]) -> String {
    let mut command = format!("target/debug/{bin}");
    for arg in args {
        command = format!("{command} {arg}");
    }
    command
}

/// Like [`assert_matches_book`], for a session of several commands, each
/// shown as `$ command` followed by what it printed. The commands are
/// the ones the test really ran, as a reader would type them.
///
/// Only what truly varies between runs is normalised, on both sides:
/// clock times, pids, port numbers, inode numbers, the owner and date
/// columns of `ls -l`.
#[track_caller]
pub fn assert_session_matches_book<S: AsRef<str>>(
    file: &str,
    session: &[(String, &[S])],
) {
    assert_session_matches_book_masking(file, session, &[]);
}

/// What varies with the clock, matched in the text as printed: asctime
/// pads a day of the month below 10 with a space (`Sat Dec  5`), which the
/// collapsing of spaces below would otherwise turn into something no rule
/// recognises.
pub(crate) static CLOCK_RULES: LazyLock<Vec<(Regex, &str)>> =
    LazyLock::new(|| {
        compile(&[
            // Python's time.asctime(): `Wed Nov 25 16:44:09 2026`, `Sat Dec  5`
            (
                r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\b",
                "<time>",
            ),
            // Python's time.time() after "at": `at 1795627555.2590373`, and
            // `at 1795627555` in the one run in a billion that lands on a
            // whole second (Rust prints such an f64 without a fraction).
            (r"\bat \d{9,11}(?:\.\d+)?\b", "at <time>"),
        ])
    });

pub(crate) fn compile(
    rules: &[(&str, &'static str)],
) -> Vec<(Regex, &'static str)> {
    rules
        .iter()
        .map(|&(pattern, placeholder)| {
            (Regex::new(pattern).expect("a valid regex"), placeholder)
        })
        .collect()
}

/// What else differs from run to run, matched after runs of spaces have
/// been collapsed to one.
pub(crate) static RULES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
    compile(&[
        (r"\b(pid|Parent|Child) \d+\b", "$1 <pid>"),
        (r"\b127\.0\.0\.1:\d+\b", "127.0.0.1:<port>"),
        (r"\[::1\]:\d+\b", "[::1]:<port>"),
        (r"\blocalhost:\d+\b", "localhost:<port>"),
        // `pipe:[38187]`, `socket:[38190]` in /proc/PID/fd
        (r"\b(pipe|socket):\[\d+\]", "$1:[<inode>]"),
        // `ls -l`: permissions, links, owner, group, size, date
        (
            r"(?m)^([-bcdlps][-rwxsStT]{9}) +\d+ +\S+ +\S+ +\d+ +\w{3} +\d+ +[\d:]+ ",
            "$1 <owner and date> ",
        ),
        (r"/proc/\d+/", "/proc/<pid>/"),
        // Temporary directories made by the tests (tempfile's names),
        // and the private directory of unix-server (Listing 16-1).
        (r"\S*/\.tmp[0-9A-Za-z]{6}\b", "<tempdir>"),
        (
            r"\S*/unix-server\.[0-9A-Za-z]{6}\b",
            "<tmp>/unix-server.XXXXXX",
        ),
        // Who connected to a Unix socket: the tests' user.
        (r"\(uid \d+\)", "(uid <uid>)"),
        // Calls counted by Listing 15-1
        (r"\b\d+ reads,", "<n> reads,"),
        // Measured durations: `after 1.00 s`, `44.1 ms`
        (r"\b\d+\.\d+ (s|ms)\b", "<duration> $1"),
        // Memory sizes in /proc/PID/status: `VmHWM:    2412 kB`
        (r"\b(Vm[A-Za-z]+):\s+\d+ kB", "$1: <size> kB"),
        (r"([sd]port = :)\d+", "$1<port>"),
        (r"\b(pgrep -l -P|kill -\w+|kill) \d+\b", "$1 <pid>"),
        // `pgrep -l`: pid and name
        (r"(?m)^\d+ ([\w-]+)$", "<pid> $1"),
        // What a listing measured and marks as such: `0.30 s (measured)`.
        (r"\b\d+(\.\d+)?( s)? \(measured\)", "<measured>"),
        // A user id: 0 for root, something else in a reader's shell.
        (r"\buid \d+\b", "uid <uid>"),
        // The pid of `/bin/kill -q 42 -s RTMIN 9642`.
        (r"\b(kill .*-s \S+) \d+\b", "$1 <pid>"),
        // The port of `nc -N 127.0.0.1 41129`.
        (r"\b(nc(?: -\w+)* \S+) \d+\b", "$1 <port>"),
        // A private directory made by mkdtemp: `/tmp/sig-daemon.Ab12Cd`.
        (r"\S*/([\w-]+)\.[A-Za-z0-9]{6}/", "<tmp>/$1.<random>/"),
    ])
});

/// Replaces what differs from run to run with placeholders: first what
/// the clock decides, then, once runs of spaces are collapsed (columns
/// padded to the width of what varies, as in `ss` output), everything
/// else.
pub(crate) fn normalise(text: &str) -> String {
    static SPACES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(" +").expect("a valid regex"));
    let mut text = text.to_string();
    for (re, placeholder) in CLOCK_RULES.iter() {
        text = re.replace_all(&text, *placeholder).into_owned();
    }
    text = SPACES.replace_all(&text, " ").into_owned();
    for (re, placeholder) in RULES.iter() {
        text = re.replace_all(&text, *placeholder).into_owned();
    }
    text
}

/// Like [`assert_session_matches_book`], with extra rules `(pattern,
/// placeholder)` for what varies in this one output only, such as a count
/// the kernel's scheduling decides or the random name of a temporary
/// directory. They apply to both sides, before the usual rules.
#[track_caller]
pub fn assert_session_matches_book_masking<S: AsRef<str>>(
    file: &str,
    session: &[(String, &[S])],
    masks: &[(&str, &str)],
) {
    let masks: Vec<(Regex, &str)> = masks
        .iter()
        .map(|(pattern, to)| (Regex::new(pattern).expect("a valid regex"), *to))
        .collect();
    let mask = |text: &str| {
        masks
            .iter()
            .fold(text.to_string(), |text, (re, placeholder)| {
                re.replace_all(&text, *placeholder).into_owned()
            })
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let mut actual = String::new();
    for (command, output) in session {
        actual.push_str(&format!("$ {command}\n"));
        for line in *output {
            actual.push_str(line.as_ref());
            actual.push('\n');
        }
    }
    if blessing() {
        fs::write(&path, &actual).expect("write the output file");
        record_environment();
        return;
    }
    let shown = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("{file}: {err}; create it with BLESS=1 cargo test -p listings")
    });
    let want = normalise(&mask(&shown));
    let got = normalise(&mask(&actual));
    assert!(
        want == got,
        "{file} no longer matches a real run (normalised; - the book, \
         + this run):\n{}{}\
         If the new output is right: BLESS=1 cargo test -p listings",
        line_diff(&want, &got),
        kernel_note()
    );
}

/// Like [`assert_session_matches_book`], for programs that measure time:
/// on each line, whatever follows `measured:` (durations, rates, counts of
/// context switches) differs from run to run, and is left out of the
/// comparison on both sides. Everything before it, the protocol and the
/// byte counts, must match.
#[track_caller]
pub fn assert_measurements_match_book<S: AsRef<str>>(
    file: &str,
    session: &[(String, &[S])],
) {
    assert_session_matches_book_masking(
        file,
        session,
        &[("measured: .*", "measured: <varies>")],
    );
}

/// The normaliser on its own, for what varies with the calendar and the
/// clock: the suite runs on any day, so each case here is one a run on
/// some day of the year would meet.
mod normalise_tests {
    use chrono::{Datelike, Duration, FixedOffset, NaiveDate, TimeZone};

    use super::normalise;

    /// `time.asctime()` as the listings print it (`%e` pads the day).
    fn asctime(at: chrono::DateTime<FixedOffset>) -> String {
        at.format("%a %b %e %H:%M:%S %Y").to_string()
    }

    #[track_caller]
    fn assert_time_hidden(time: &str) {
        assert_eq!(
            normalise(&format!("Setting at {time}\nGot alarm 14 at {time}")),
            "Setting at <time>\nGot alarm 14 at <time>",
            "{time:?}"
        );
    }

    #[test]
    fn normalise_hides_asctime_on_a_day_below_ten() {
        assert_time_hidden("Sat Dec  5 00:19:07 2026");
        assert_time_hidden("Mon Jun  1 12:00:00 2026");
    }

    #[test]
    fn normalise_hides_asctime_at_midnight_and_at_a_new_year() {
        assert_time_hidden("Sat Dec  5 00:00:00 2026");
        assert_time_hidden("Thu Dec 31 23:59:59 2026");
        assert_time_hidden("Fri Jan  1 00:00:00 2027");
    }

    /// Every day of a leap year, at the first, a middle and the last
    /// second of the day, in time zones east and west of UTC, on both
    /// sides of the date line and at a quarter hour.
    #[test]
    fn normalise_hides_asctime_on_every_day_in_any_time_zone() {
        let zones = [0, 5 * 3600 + 45 * 60, -10 * 3600, 14 * 3600, -12 * 3600];
        let first = NaiveDate::from_ymd_opt(2028, 1, 1).unwrap();
        for zone in zones {
            let zone = FixedOffset::east_opt(zone).unwrap();
            for day in 0..366 {
                let date = first + Duration::days(day);
                for (h, m, s) in [(0, 0, 0), (9, 59, 59), (23, 59, 59)] {
                    let local = date.and_hms_opt(h, m, s).unwrap();
                    let at = zone.from_local_datetime(&local).unwrap();
                    assert_time_hidden(&asctime(at));
                }
            }
            assert_eq!((first + Duration::days(365)).year(), 2028);
        }
    }

    #[test]
    fn normalise_hides_unix_times_with_and_without_a_fraction() {
        for time in ["1795627555.2590373", "1795627555", "999999999.5"] {
            assert_eq!(
                normalise(&format!("Parent 12 got [Spam 000] at {time}")),
                "Parent <pid> got [Spam 000] at <time>"
            );
        }
        // A number that is not a time is left alone.
        assert_eq!(
            normalise("wrote 1795627555 bytes"),
            "wrote 1795627555 bytes"
        );
    }

    #[test]
    fn normalise_hides_ls_dates_recent_and_old() {
        for date in ["Dec  5 03:14", "Dec 25 23:59", "Jan  1  2025"] {
            let line = format!("prw-r--r-- 1 root root 0 {date} /tmp/x");
            assert_eq!(
                normalise(&line),
                "prw-r--r-- <owner and date> /tmp/x",
                "{line:?}"
            );
        }
    }
}

/// The lines that differ between `want` and `got`, `-` and `+`, with two
/// lines of context around each change and `...` between distant ones.
pub fn line_diff(want: &str, got: &str) -> String {
    let diff = similar::TextDiff::from_lines(want, got);
    let mut text = String::new();
    for (i, group) in diff.grouped_ops(2).iter().enumerate() {
        if i > 0 {
            text.push_str("...\n");
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                text.push(sign);
                text.push_str(change.value());
                if change.missing_newline() {
                    text.push('\n');
                }
            }
        }
    }
    text
}

/// One run in the log of `listings/ch15-poll/runs/record`: what it ran
/// (net-load's arguments), how idle the CPUs were before it, when it
/// started and ended (seconds of the day, UTC), and the ticks it logged
/// after it: of the whole run, CPUs busy, net-load and its servers,
/// everything else (may be below zero), steal.
#[derive(Debug)]
pub struct LoggedRun {
    pub args: String,
    pub idle: u32,
    pub day: String,
    pub start: String,
    pub started: u32,
    pub ended: u32,
    pub ticks: i64,
    pub busy: i64,
    pub own: i64,
    pub others: i64,
    pub steal: i64,
}

/// Reads a record log (`file` relative to `listings/`), and checks its
/// first line: the commit and the sha256 of the sources the runs
/// measured, which must be those of the sources now (the files it names,
/// one after another, through `sha256sum`), so that the reports beside
/// it describe the code on these pages. Returns the runs, in order.
#[track_caller]
pub fn record_log(file: &str) -> Vec<LoggedRun> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let log = fs::read_to_string(&path).unwrap();
    let first = log.lines().next().unwrap_or_default();
    let named = first
        .split_once("; sha256 of ")
        .and_then(|(_, rest)| rest.rsplit_once(": "));
    let Some((sources, digest)) = named else {
        panic!("{file}: no sources named in its first line: {first}")
    };
    let sources: Vec<&str> = sources.split(' ').collect();
    let script = "cd \"$1\" && shift && cat \"$@\" | sha256sum";
    let mut args = vec!["-c", script, "sh", root];
    args.extend(&sources);
    let out = run("sh", &args);
    let now = out.stdout.first().and_then(|l| l.split(' ').next());
    assert_eq!(
        now,
        Some(digest),
        "{file}: the sources ({sources:?}) changed since the runs were \
         made: record them again (listings/ch15-poll/runs/README.md)"
    );
    let clock = |line: &str| -> (String, String, u32) {
        let mut words = line.split_whitespace();
        let day = words.next().unwrap_or_default().to_string();
        let time = words.next().unwrap_or_default();
        let hms: Vec<u32> =
            time.split(':').map(|x| x.parse().unwrap()).collect();
        (
            day,
            time[..5].to_string(),
            hms[0] * 3600 + hms[1] * 60 + hms[2],
        )
    };
    let mut runs: Vec<LoggedRun> = Vec::new();
    for line in log.lines().skip(1) {
        if let Some((head, args)) = line.split_once("; running net-load ") {
            let idle = head.rsplit("CPUs ").next().unwrap_or_default();
            let (day, start, started) = clock(line);
            runs.push(LoggedRun {
                args: args.to_string(),
                idle: idle.split(' ').next().unwrap().parse().unwrap(),
                day,
                start,
                started,
                ended: 0,
                ticks: 0,
                busy: 0,
                own: 0,
                others: 0,
                steal: 0,
            });
        } else if let Some((head, rest)) = line.split_once(" done: of ") {
            let run = runs.last_mut().expect("a run ends before it starts");
            assert!(
                head.ends_with(&format!("net-load {}", run.args)),
                "{line}"
            );
            // "6002 ticks, CPUs busy 1380, net-load and its servers 1330,
            // everything else 50, steal 45"
            let numbers: Vec<i64> = rest
                .split([' ', ','])
                .filter_map(|w| w.parse().ok())
                .collect();
            assert_eq!(numbers.len(), 5, "{line}");
            run.ended = clock(line).2;
            (run.ticks, run.busy, run.own, run.others, run.steal) =
                (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4]);
        } else {
            panic!("{file}: a line of neither kind: {line}");
        }
    }
    assert!(
        runs.iter().all(|r| r.ended > 0),
        "{file}: a run never ended"
    );
    runs
}
