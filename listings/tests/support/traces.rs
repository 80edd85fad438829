//! System-call traces shown in the book: running a listing under strace and
//! comparing what the kernel saw.

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use regex::Regex;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::LazyLock;

use super::*;

/// Which system calls and signals a trace shows, as strace's `-e trace=`
/// and `-e signal=` take them, and where the part the book shows begins.
pub struct Trace {
    /// `-e trace=`: the calls that matter, e.g. `pipe2,clone,write,read`.
    pub calls: &'static str,
    /// `-e signal=`: the signals shown, or `none`.
    pub signals: &'static str,
    /// The first line the book shows contains this (`pipe2(`): the lines
    /// before it, the dynamic loader's and Rust's runtime's, become one
    /// `...` line. `None` shows everything the program did.
    pub from: Option<&'static str>,
}

/// strace's longest string, `-s`: long enough for every line a listing
/// prints, so that a varying pid never moves where a string is cut.
pub(crate) const TRACE_STRING_LIMIT: &str = "80";

/// The file, relative to `listings/`, that says what recorded the book's
/// traces and outputs: the version of strace and the architecture, since
/// the format of a trace and some of its calls differ between them, and
/// the kernel, whose behaviour the outputs show.
pub(crate) const RECORDED_WITH: &str = "traces-recorded-with.txt";

/// strace's version line, the machine's architecture, and the kernel's
/// release (`Linux 6.18.44-fc-v1272`), one to a line.
pub(crate) fn recording_environment() -> String {
    let version = Command::new("strace")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let version = version.lines().next().unwrap_or("").to_string();
    format!(
        "{version}\n{}\nLinux {}\n",
        std::env::consts::ARCH,
        kernel()
    )
}

/// The release of the running kernel, as `uname -r` prints it.
pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// What recorded the book's traces and outputs, as [`recording_environment`]
/// wrote it.
pub(crate) fn recorded_environment() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDED_WITH);
    fs::read_to_string(&path).unwrap_or_default()
}

/// Rewrites [`RECORDED_WITH`], when blessing; without strace, which only
/// the traces need, its line stays as it was.
pub(crate) fn record_environment() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDED_WITH);
    let mut text = recording_environment();
    if text.starts_with('\n') {
        let recorded = recorded_environment();
        text = format!("{}{text}", recorded.lines().next().unwrap_or(""));
    }
    fs::write(path, text).expect("write");
}

/// A sentence for a failure message when the book's outputs and traces
/// were recorded on another kernel than this one; empty otherwise.
pub(crate) fn kernel_note() -> String {
    let recorded = recorded_environment();
    let recorded = recorded.lines().nth(2).unwrap_or("an unknown kernel");
    let here = format!("Linux {}", kernel());
    if recorded == here {
        return String::new();
    }
    format!(
        "\nThe book recorded this on {recorded} (listings/{RECORDED_WITH}); \
         this is {here}, whose behaviour may differ.\n"
    )
}

/// Whether the trace tests can run: strace is installed (see [`have`]),
/// and it is the version, on the architecture, that recorded the book's
/// traces. Elsewhere they are skipped with a note; in CI they fail. The
/// kernel may differ: a failure then says so.
pub fn can_trace() -> bool {
    if !have("strace") {
        return false;
    }
    if blessing() {
        return true;
    }
    let strace_and_arch =
        |text: &str| text.lines().take(2).collect::<Vec<_>>().join(" ");
    let recorded = strace_and_arch(&recorded_environment());
    let here = strace_and_arch(&recording_environment());
    if recorded == here {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "traces recorded with {recorded:?}, CI has {here:?}: \
         BLESS=1 cargo test -p listings, and read the diff"
    );
    eprintln!("skipped: traces recorded with {recorded:?}, this is {here:?}");
    false
}

/// The command a reader types to see the trace, after
/// `cargo build -p listings`.
pub fn strace_command(bin: &str, args: &[&str], trace: &Trace) -> String {
    let mut command = format!(
        "strace -f -q -s {TRACE_STRING_LIMIT} -e trace={}",
        trace.calls
    );
    if trace.signals != "all" {
        command = format!("{command} -e signal={}", trace.signals);
    }
    command = format!("{command} target/debug/{bin}");
    for arg in args {
        command = format!("{command} {arg}");
    }
    command
}

impl Listing {
    /// Starts `bin` with `args` as [`Listing::start`] does, but under
    /// `strace -f`, following every process and thread it starts; the
    /// trace arrives on stderr, in [`Finished::stderr`]. [`Listing::pid`]
    /// is strace's; [`Listing::tracee`] is the listing's.
    ///
    /// strace forks the listing, and a forked child loses its parent-death
    /// signal, so the listing is started through `setpriv --pdeathsig
    /// KILL`: when strace dies with the test, the listing dies too. That
    /// adds an `execve`, which the trace leaves out with everything before
    /// it.
    pub fn start_traced(bin: &str, args: &[&str], trace: &Trace) -> Listing {
        let mut calls = trace.calls.to_string();
        if !calls.split(',').any(|call| call == "execve") {
            calls.push_str(",execve");
        }
        let mut command = Command::new("strace");
        command.args(["-f", "-q", "-s", TRACE_STRING_LIMIT]);
        command.args(["-e", &format!("trace={calls}")]);
        command.args(["-e", &format!("signal={}", trace.signals)]);
        command.arg("--");
        // Without setpriv (util-linux) the trace is the same, but a listing
        // could outlive a killed test; CI has it.
        let setpriv = Command::new("sh")
            .args(["-c", "command -v setpriv"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(setpriv || std::env::var_os("CI").is_none(), "no setpriv");
        if setpriv {
            command.args(["setpriv", "--pdeathsig", "KILL", "--"]);
        }
        command.arg(bin).args(args);
        Listing::spawn(&mut command, Stdio::piped())
    }

    /// The pid of the listing that strace traces: strace's one child.
    pub fn tracee(&self) -> Pid {
        let mut children = Vec::new();
        wait_until("strace to start the listing", || {
            children = children_of(self.pid());
            !children.is_empty()
        });
        children[0]
    }
}

/// Compares the trace of a real run with the `.trace` file the book shows,
/// or rewrites that file when blessing. `file` is relative to `listings/`;
/// its first line is the command a reader types, from [`strace_command`].
///
/// strace interleaves the lines of several processes as they happen, and
/// cuts a call in two (`<unfinished ...>`, `<... resumed>`) when another
/// process's line comes in between, so only each process's own sequence
/// of calls is compared, in order, with its cut calls joined. Normalised
/// on both sides: pids, addresses, ports, times, a user id, and, where a
/// string holds one of those, the byte counts that go with it;
/// `extra_rules` adds (pattern, replacement) pairs for one trace.
#[track_caller]
pub fn assert_trace_matches_book(
    file: &str,
    command: &str,
    trace: &Trace,
    stderr: &str,
    extra_rules: &[(&str, &str)],
) {
    let shown_part = program_part(stderr, trace);
    let actual = format!("$ {command}\n{shown_part}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    if blessing() {
        fs::write(&path, &actual).expect("write the trace file");
        record_environment();
        return;
    }
    let shown = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("{file}: {err}; create it with BLESS=1 cargo test -p listings")
    });
    let want = describe(&per_process(&shown, extra_rules));
    let got = describe(&per_process(&actual, extra_rules));
    assert!(
        want == got,
        "{file} no longer matches a real run (each process's calls, \
         normalised; - the book, + this run):\n{}{}\
         If the new trace is right: BLESS=1 cargo test -p listings",
        line_diff(&want, &got),
        kernel_note()
    );
}

/// The lines of a trace that the book shows: after the listing's own
/// `execve`, from the first line that contains `trace.from`.
pub(crate) fn program_part(stderr: &str, trace: &Trace) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    // The listing's execve is the last successful one that strace did not
    // prefix with a pid: strace's own run of setpriv comes first, and it
    // prefixes a line only while it traces more than one process, so a
    // program that the listing starts, and that execs, comes later with a
    // prefix.
    let exec = lines
        .iter()
        .rposition(|line| line.starts_with("execve(") && line.ends_with("= 0"))
        .map_or(0, |i| i + 1);
    let mut shown: Vec<&str> = lines[exec..].to_vec();
    if !trace.calls.split(',').any(|call| call == "execve") {
        shown.retain(|line| !line.contains("execve("));
    }
    let mut text = String::new();
    if let Some(from) = trace.from {
        let start = shown
            .iter()
            .position(|line| line.contains(from))
            .unwrap_or_else(|| panic!("no line with {from:?} in\n{stderr}"));
        if start > 0 {
            text.push_str("...\n");
        }
        shown.drain(..start);
    }
    for line in shown {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// A string literal as strace prints it, with `...` if it was cut.
pub(crate) const STRACE_STRING: &str = r#""(?:[^"\\]|\\.)*"(?:\.\.\.)?"#;

/// Splits a trace into each process's lines, in the order the processes
/// were started, each line normalised: pids become `<pid1>` for the
/// first process, `<pid2>` for the one it started first, and so on.
pub(crate) fn per_process(
    trace: &str,
    extra_rules: &[(&str, &str)],
) -> Vec<Vec<String>> {
    static PREFIXED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\[pid +(\d+)\] (.*)$").unwrap());
    static STARTED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:<\.\.\. )?(?:clone3?|v?fork)\b.* = (\d+)$").unwrap()
    });
    let (prefixed, started) = (&*PREFIXED, &*STARTED);
    let extra_rules: Vec<(Regex, &str)> = extra_rules
        .iter()
        .map(|(pattern, to)| (Regex::new(pattern).expect("a valid regex"), *to))
        .collect();
    let lines: Vec<(Option<u32>, String)> = trace
        .lines()
        .filter(|line| !line.starts_with("$ ") && *line != "...")
        .map(|line| match prefixed.captures(line) {
            Some(c) => (c[1].parse().ok(), c[2].to_string()),
            None => (None, line.to_string()),
        })
        .collect();

    // strace prefixes a line with `[pid N]` only while it traces more than
    // one process, so the first process is the one that no clone made.
    let children: Vec<u32> = lines
        .iter()
        .filter_map(|(_, rest)| started.captures(rest))
        .filter_map(|c| c[1].parse().ok())
        .collect();
    let first = lines
        .iter()
        .filter_map(|(pid, _)| *pid)
        .find(|pid| !children.contains(pid))
        // No line of the first process was prefixed: no number is its pid.
        .unwrap_or(u32::MAX);

    // An unprefixed line belongs to the one process still alive, or, at
    // the moment a second one starts, to the first.
    let mut alive = vec![first];
    let mut streams: Vec<(u32, Vec<String>)> = Vec::new();
    let mut pending: Vec<(u32, String)> = Vec::new();
    for (pid, rest) in lines {
        let owner =
            pid.unwrap_or(if alive.len() == 1 { alive[0] } else { first });
        if !alive.contains(&owner) {
            alive.push(owner);
        }
        if let Some(c) = started.captures(&rest)
            && let Ok(child) = c[1].parse::<u32>()
            && !alive.contains(&child)
        {
            alive.push(child);
        }
        if rest.starts_with("+++ ") {
            alive.retain(|&p| p != owner);
        }
        // Join a call that strace cut in two.
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.push((owner, head.to_string()));
            continue;
        } else if rest.starts_with("<... ") && rest.contains(" resumed>") {
            let tail = rest.split_once(" resumed>").unwrap().1;
            match pending.iter().position(|(p, _)| *p == owner) {
                Some(i) => format!("{}{tail}", pending.remove(i).1),
                None => rest.clone(),
            }
        } else {
            rest
        };
        match streams.iter_mut().find(|(p, _)| *p == owner) {
            Some((_, stream)) => stream.push(line),
            None => streams.push((owner, vec![line])),
        }
    }

    // Order: the first process, then each process's children in the
    // order it started them, whatever order their lines came in.
    let mut order = vec![first];
    let mut i = 0;
    while i < order.len() {
        if let Some((_, stream)) = streams.iter().find(|(p, _)| *p == order[i])
        {
            for line in stream {
                if let Some(c) = started.captures(line)
                    && let Ok(child) = c[1].parse::<u32>()
                    && !order.contains(&child)
                {
                    order.push(child);
                }
            }
        }
        i += 1;
    }
    for (pid, _) in &streams {
        if !order.contains(pid) {
            order.push(*pid);
        }
    }
    order
        .iter()
        .filter_map(|pid| streams.iter().find(|(p, _)| p == pid))
        .map(|(_, stream)| {
            stream
                .iter()
                .map(|line| normalise_call(line, &order, &extra_rules))
                .collect()
        })
        .collect()
}

/// Normalises one line of a trace: the pids of the traced processes
/// outside strings, then what varies anywhere.
pub(crate) fn normalise_call(
    line: &str,
    pids: &[u32],
    extra_rules: &[(Regex, &str)],
) -> String {
    static STRINGS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(STRACE_STRING).unwrap());
    static NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b\d+\b").unwrap());
    static RULES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
        [
            // Where strace's columns line up depends on what came before.
            (r"\s+", " "),
            (r"\b0x[0-9a-f]{5,}\b", "0x<addr>"),
            (r"\bsi_pid=\d+", "si_pid=<pid>"),
            (r"\bsi_uid=\d+", "si_uid=<uid>"),
            (r"\bhtons\(\d+\)", "htons(<port>)"),
            // Time left, as strace shows a timespec or a raw timeval.
            (r"\btv_nsec=[1-9]\d*", "tv_nsec=<ns>"),
            (r"\btv_sec=\d+, tv_nsec=<ns>", "tv_sec=<s>, tv_nsec=<ns>"),
            (
                r#"(SO_(?:RCV|SND)TIMEO(?:_OLD)?, )"(?:[^"\\]|\\.)*""#,
                "$1<timeval>",
            ),
        ]
        .into_iter()
        .map(|(pattern, to)| (Regex::new(pattern).expect("a valid regex"), to))
        .collect()
    });
    // A string that held a pid, a time or a port may have a different
    // length: so do the count that goes with it and the call's result.
    static LENGTHS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"^(\w+\(\w+, "(?:[^"\\]|\\.)*"(?:\.\.\.)?, )\d+(.*= )\d+$"#,
        )
        .unwrap()
    });
    // Pids outside strings, as whole numbers; the book's rules below
    // take care of those inside (`Parent 1234`).
    let mut out = String::new();
    let mut last = 0;
    let mut string_varies = false;
    let replace_pids = |text: &str| {
        NUMBER
            .replace_all(text, |c: &regex::Captures| {
                match pids.iter().position(|p| c[0].parse() == Ok(*p)) {
                    Some(i) => format!("<pid{}>", i + 1),
                    None => c[0].to_string(),
                }
            })
            .into_owned()
    };
    for m in STRINGS.find_iter(line) {
        out.push_str(&replace_pids(&line[last..m.start()]));
        let string = normalise(m.as_str());
        string_varies |= string != m.as_str();
        out.push_str(&string);
        last = m.end();
    }
    out.push_str(&replace_pids(&line[last..]));

    for (re, replacement) in RULES.iter() {
        out = re.replace_all(&out, *replacement).into_owned();
    }
    if string_varies {
        out = LENGTHS.replace_all(&out, "$1<len>$2<len>").into_owned();
    }
    for (re, replacement) in extra_rules {
        out = re.replace_all(&out, *replacement).into_owned();
    }
    // And the book's rules for outputs, for what the listing itself wrote
    // among strace's lines (its stderr), and for the strings.
    normalise(&out)
}

/// A normalised trace as text, one block per process.
pub(crate) fn describe(processes: &[Vec<String>]) -> String {
    let mut text = String::new();
    for (i, lines) in processes.iter().enumerate() {
        text.push_str(&format!("process {}:\n", i + 1));
        for line in lines {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

/// Runs the listing `bin` (its name, as readers type it) with `args` to
/// its end under strace, checks that it succeeded, and compares its trace
/// with `file` (see [`assert_trace_matches_book`]). Returns the run.
#[track_caller]
pub fn assert_traced_run_matches_book(
    file: &str,
    bin: &str,
    args: &[&str],
    trace: &Trace,
) -> Finished {
    let out =
        Listing::start_traced(bin_path(bin).to_str().unwrap(), args, trace)
            .finish();
    assert!(out.status.success(), "{bin}: {}", out.stderr);
    let command = strace_command(bin, args, trace);
    assert_trace_matches_book(file, &command, trace, &out.stderr, &[]);
    out
}

/// The ends of the pipes a traced listing made (`pipe2([3, 4], ...)`) that
/// it later closed (`close(3)`): a handler that writes into a pipe must
/// find it open until the process ends.
pub fn pipe_ends_closed(trace: &str) -> Vec<u32> {
    let made = regex::Regex::new(r"pipe2\(\[(\d+), (\d+)\]").unwrap();
    let closed = regex::Regex::new(r"close\((\d+)\)\s+= 0").unwrap();
    let (mut open, mut made_any, mut closed_ends) =
        (Vec::new(), false, Vec::new());
    for line in trace.lines() {
        if let Some(c) = made.captures(line) {
            open.extend([c[1].parse::<u32>().unwrap(), c[2].parse().unwrap()]);
            made_any = true;
        } else if let Some(c) = closed.captures(line) {
            let fd: u32 = c[1].parse().unwrap();
            if let Some(i) = open.iter().position(|&end| end == fd) {
                open.remove(i);
                closed_ends.push(fd);
            }
        }
    }
    assert!(made_any, "no pipe2 in the trace:\n{trace}");
    closed_ends
}

/// The trace of `bin` run to its end, once ready sent `signal` if any,
/// with only the calls that make and close descriptors.
pub fn trace_of_pipes(
    bin: &str,
    args: &[&str],
    signal: Option<Signal>,
) -> String {
    let trace = Trace {
        calls: "pipe2,close",
        signals: "none",
        from: None,
    };
    let mut listing = Listing::start_traced(bin, args, &trace);
    if let Some(signal) = signal {
        listing.next_line();
        nix::sys::signal::kill(listing.tracee(), signal).unwrap();
    }
    let out = listing.finish();
    assert!(out.status.success(), "{bin}: {}", out.stderr);
    out.stderr
}

/// Runs `bin` with `args` under strace, brought by `drive` to where it
/// drops its first signal-hook iterator or exits, and sends `signal` at
/// the moment
/// after signal-hook's iterator has closed the reading end of its socket
/// pair and before signal-hook has unregistered the action that writes to
/// it. Returns how the run ended.
///
/// signal-hook 0.4.6 drops an iterator's fields in the order they are
/// declared (`SignalDelivery`, src/iterator/backend.rs:237): the socket
/// it reads first, then its `Handle`, and only the last `Handle` to go
/// unregisters the actions (`DeliveryState`'s `Drop`, line 65). In
/// between, a signal makes the action's `send`, which has no MSG_NOSIGNAL
/// (src/low_level/pipe.rs:143), fail with EPIPE and raise SIGPIPE: a
/// listing that gave SIGPIPE its default action dies of it (seen on Linux
/// 6.18.44). strace holds that `close` as it returns, for ten seconds.
///
/// It takes two runs, each driven by `drive` in the same way:
/// the first logs the listing's `socketpair` and `close` calls, to learn
/// which `close` of its thread is the one of the first iterator's socket;
/// the second holds that one. A listing that keeps its iterator until the
/// process ends never makes that `close`, and has no such moment: then
/// the first run, to which no signal was sent, is the one returned.
pub fn signal_after_iterator_closes(
    bin: &str,
    args: &[&str],
    signal: Signal,
    drive: impl FnMut(&mut Listing),
) -> Finished {
    signal_after_closing(bin, args, None, signal, drive)
}

/// [`signal_after_iterator_closes`], with the listing's first thread
/// refused: its first `clone3` fails with EAGAIN, as under `ulimit -u`.
pub fn signal_after_iterator_closes_thread_refused(
    bin: &str,
    args: &[&str],
    signal: Signal,
    drive: impl FnMut(&mut Listing),
) -> Finished {
    let refuse = ("clone3", "clone3:error=EAGAIN:when=1");
    signal_after_closing(bin, args, Some(refuse), signal, drive)
}

/// [`signal_after_iterator_closes`], with the listing's first write
/// failing with ENOSPC, as on a full disk.
pub fn signal_after_iterator_closes_disk_full(
    bin: &str,
    args: &[&str],
    signal: Signal,
    drive: impl FnMut(&mut Listing),
) -> Finished {
    let full = ("write", "write:error=ENOSPC:when=1");
    signal_after_closing(bin, args, Some(full), signal, drive)
}

/// Starts `bin args` under strace, which sends it `signal` at the
/// `rt_sigaction` that installs a handler for that signal, the first one
/// to do so. signal-hook-registry 1.4.8 (src/lib.rs:672-681) installs its
/// handler in the kernel before it records the signal's actions: a signal
/// delivered when that call returns runs the handler, which finds no
/// action, and falls back on the previous action only if that was a
/// function, not the default. A listing that blocks the signal first
/// holds it pending, and takes it when it unblocks it.
///
/// A first run finds which call that is: it logs every `rt_sigaction`,
/// waits for a line of output that matches `ready` (printed once the
/// listing has registered), and ends the listing with SIGTERM. Both runs go through
/// `setpriv --pdeathsig KILL`, when it is installed, as
/// [`Listing::start_traced`] does.
pub fn signal_as_its_handler_goes_in(
    bin: &str,
    args: &[&str],
    signal: Signal,
    ready: &str,
) -> Listing {
    signal_as_its_handler_goes_in_with(bin, args, None, signal, ready)
}

/// [`signal_as_its_handler_goes_in`], with `TMPDIR` set to `tmpdir`, if
/// given, for a listing that makes private directories there.
pub fn signal_as_its_handler_goes_in_with(
    bin: &str,
    args: &[&str],
    tmpdir: Option<&Path>,
    signal: Signal,
    ready: &str,
) -> Listing {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("calls");
    let mut probe = sigaction_traced(bin, args, tmpdir, &log, None);
    probe.expect(ready);
    let mut pid = None;
    wait_until("strace to start the listing", || {
        pid = children_of(probe.pid()).into_iter().find(|child| {
            fs::read_link(format!("/proc/{child}/exe"))
                .is_ok_and(|exe| exe == Path::new(bin))
        });
        pid.is_some()
    });
    let pid = pid.expect("found");
    // SIGTERM, not SIGKILL: the listings this serves end on it, and
    // remove what they made, a socket's path, before the second run.
    nix::sys::signal::kill(pid, Signal::SIGTERM).expect("the listing is alive");
    probe.finish();
    let calls = fs::read_to_string(&log).expect("strace's log");
    let install = format!("rt_sigaction({signal}, {{sa_handler=0x");
    let nth = calls
        .lines()
        .filter(|line| line.starts_with("rt_sigaction("))
        .position(|call| call.starts_with(&install))
        .unwrap_or_else(|| {
            panic!("no handler installed for {signal}:\n{calls}")
        })
        + 1;
    let inject = Some((signal, nth));
    sigaction_traced(bin, args, tmpdir, Path::new("/dev/null"), inject)
}

/// `bin args` under strace, logging its `rt_sigaction` calls to `log`,
/// and sending it `signal` at the `nth` of them, if asked.
fn sigaction_traced(
    bin: &str,
    args: &[&str],
    tmpdir: Option<&Path>,
    log: &Path,
    inject: Option<(Signal, usize)>,
) -> Listing {
    let mut command = Command::new("strace");
    if let Some(tmpdir) = tmpdir {
        command.env("TMPDIR", tmpdir);
    }
    command.args(["-qq", "-o"]).arg(log);
    command.args(["-e", "signal=none", "-e", "trace=rt_sigaction"]);
    if let Some((signal, nth)) = inject {
        let send = format!("inject=rt_sigaction:signal={signal}:when={nth}");
        command.args(["-e", &send]);
    }
    command.arg("--");
    let setpriv = Command::new("sh")
        .args(["-c", "command -v setpriv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if setpriv {
        command.args(["setpriv", "--pdeathsig", "KILL", "--"]);
    }
    command.arg(bin).args(args);
    Listing::spawn(&mut command, Stdio::piped())
}

/// `tamper`: a call for strace to trace too, and what to inject.
fn signal_after_closing(
    bin: &str,
    args: &[&str],
    tamper: Option<(&str, &str)>,
    signal: Signal,
    mut drive: impl FnMut(&mut Listing),
) -> Finished {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("calls");
    let mut first = iterator_traced(bin, args, &log, tamper, None);
    drive(&mut first);
    let out = first.finish();
    let calls = fs::read_to_string(&log).expect("strace's log");
    assert!(calls.contains("socketpair("), "no iterator made:\n{calls}");
    let Some((fd, nth)) = iterator_close(&calls) else {
        return out;
    };
    let mut held = iterator_traced(bin, args, &log, tamper, Some(nth));
    drive(&mut held);
    // The child of strace that runs `bin`: strace forks a short-lived one
    // of its own first, to probe the kernel, and the listing's own may
    // still run strace's code, or setpriv's.
    let mut pid = None;
    wait_until("strace to start the listing", || {
        pid = children_of(held.pid()).into_iter().find(|child| {
            fs::read_link(format!("/proc/{child}/exe"))
                .is_ok_and(|exe| exe == Path::new(bin))
        });
        pid.is_some()
    });
    let pid = pid.expect("found");
    // In the `close`, at its return: /proc/PID/syscall gives the number
    // of the call a stopped process is in, then its arguments.
    let closing = format!("{} {fd:#x} ", nix::libc::SYS_close);
    wait_until("the iterator's socket to be closed", || {
        fs::read_to_string(format!("/proc/{pid}/syscall"))
            .is_ok_and(|call| call.starts_with(&closing))
    });
    nix::sys::signal::kill(pid, signal).expect("the listing is alive");
    held.finish()
}

/// `bin args` under `strace -f`, logging `socketpair` and `close` to
/// `log`, tampering as `tamper` says if any, and holding the `nth`
/// `close` of a thread, if any, as it returns. Through `setpriv
/// --pdeathsig KILL`, as in [`Listing::start_traced`], when it is
/// installed.
fn iterator_traced(
    bin: &str,
    args: &[&str],
    log: &Path,
    tamper: Option<(&str, &str)>,
    nth: Option<usize>,
) -> Listing {
    let mut command = Command::new("strace");
    command.args(["-f", "-qq", "-o"]).arg(log);
    command.args(["-e", "signal=none"]);
    match tamper {
        Some((call, inject)) => {
            // strace tampers only with the calls it traces.
            command.args(["-e", &format!("trace=socketpair,close,{call}")]);
            command.args(["-e", &format!("inject={inject}")]);
        }
        None => {
            command.args(["-e", "trace=socketpair,close"]);
        }
    }
    if let Some(nth) = nth {
        let hold = format!("inject=close:delay_exit=10000000:when={nth}");
        command.args(["-e", &hold]);
    }
    command.arg("--");
    let setpriv = Command::new("sh")
        .args(["-c", "command -v setpriv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if setpriv {
        command.args(["setpriv", "--pdeathsig", "KILL", "--"]);
    }
    command.arg(bin).args(args);
    Listing::spawn(&mut command, Stdio::piped())
}

/// In a log of `socketpair` and `close` calls (`strace -f -o`, each line
/// after its pid), the first iterator's reading end, the first of the
/// pair signal-hook makes, and which `close` of its thread closes it,
/// counting from 1 as strace's `when=` does; `None` if none does.
fn iterator_close(calls: &str) -> Option<(u32, usize)> {
    let pair = Regex::new(r"^\d+ +socketpair\(.*\[(\d+), \d+\]\) = 0").unwrap();
    let close = Regex::new(r"^(\d+) +close\((\d+)").unwrap();
    let mut reading: Option<u32> = None;
    let mut closes = std::collections::HashMap::<&str, usize>::new();
    for line in calls.lines() {
        if let Some(c) = pair.captures(line)
            && reading.is_none()
        {
            reading = Some(c[1].parse().ok()?);
        } else if let Some(c) = close.captures(line) {
            let thread = c.get(1)?.as_str();
            let count = closes.entry(thread).or_default();
            *count += 1;
            if let Some(fd) = reading
                && c[2].parse() == Ok(fd)
            {
                return Some((fd, *count));
            }
        }
    }
    None
}

/// The lines of a trace made with `strace -f -o FILE` (each line starts
/// with its pid), with every call that strace cut in two, because another
/// process's line came between its start and its end
/// (`PID write(1, "…"… <unfinished ...>`, then `PID <... write resumed>)
/// = -1 ENOSPC`), joined back into one line, where the start was. Each
/// line comes back as `PID call`, one space between: strace pads a pid to
/// five places (`5678  write(…`), so that the spacing depends on how
/// high the machine's pids have counted.
pub fn joined_calls(trace: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    // For each pid with a call cut in two: where its start is in `lines`.
    let mut open: Vec<(String, usize)> = Vec::new();
    for line in trace.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            open.push((pid.to_string(), lines.len()));
            lines.push(format!("{pid} {head}"));
        } else if rest.starts_with("<... ")
            && let Some((_, tail)) = rest.split_once(" resumed>")
            && let Some(i) = open.iter().position(|(p, _)| p == pid)
        {
            let (_, at) = open.remove(i);
            lines[at].push_str(tail);
        } else {
            lines.push(format!("{pid} {rest}"));
        }
    }
    lines
}

#[test]
fn joined_calls_joins_calls_cut_in_two_and_spaces_every_pid_alike() {
    let trace = "\
5678  write(1, \"a\\n\", 2) = 2
5678  write(1, \"old: finished\\n\", 14 <unfinished ...>
12345 write(1, \"new\\n\", 4) = 4
5678  <... write resumed>) = -1 ENOSPC (No space left on device) (INJECTED)
12345 wait4(-1,  <unfinished ...>
5678  wait4(12345, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 12345
12345 <... wait4 resumed>0x7ffc, 0, NULL) = -1 ECHILD (No child processes)
";
    assert_eq!(
        joined_calls(trace),
        [
            "5678 write(1, \"a\\n\", 2) = 2",
            "5678 write(1, \"old: finished\\n\", 14) = -1 ENOSPC (No space \
             left on device) (INJECTED)",
            "12345 write(1, \"new\\n\", 4) = 4",
            "12345 wait4(-1, 0x7ffc, 0, NULL) = -1 ECHILD (No child processes)",
            "5678 wait4(12345, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, \
             NULL) = 12345",
        ]
    );
}

/// How many children the processes of a trace reaped: each `wait4` that
/// returned a pid, whole or resumed after other lines.
pub fn reaps_in(trace: &str) -> usize {
    static REAPED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"wait4.* = [1-9][0-9]*$").unwrap());
    trace.lines().filter(|line| REAPED.is_match(line)).count()
}

/// `strace -f -qq -e trace=wait4 -o TRACE` followed by `bin args`: a
/// command that leaves its trace in `trace`, for [`reaps_in`].
pub fn traced_for_reaps(bin: &str, args: &[&str], trace: &Path) -> Command {
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", "trace=wait4", "-o"])
        .arg(trace)
        .arg(bin)
        .args(args);
    command
}

/// Runs `bin` with `args` under strace with its stdout on /dev/full,
/// where every write fails (ENOSPC) as on a full disk, and returns how it
/// ended, once none of its processes is left, and how many children it
/// reaped ([`reaps_in`]).
pub fn reaps_with_stdout_full(bin: &str, args: &[&str]) -> (Finished, usize) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let full = fs::File::options().write(true).open("/dev/full").unwrap();
    let listing =
        Listing::spawn(&mut traced_for_reaps(bin, args, &trace), full.into());
    let out = finish_clean(listing);
    let reaped = reaps_in(&fs::read_to_string(&trace).unwrap());
    (out, reaped)
}

/// `poll` as strace must be asked for it: glibc's `poll()` is the system
/// call `poll` where the kernel has one (x86_64) and `ppoll` where it does
/// not (aarch64), so a filter of `poll` alone traces nothing there, and
/// an injection into it never happens. strace knows both names on both
/// (aarch64's from its 32-bit ARM personality). Every filter and every
/// injection of the tests that names `poll` uses this.
pub const POLL_CALLS: &str = "poll,ppoll";

/// Whether a line of strace's output is a call that [`POLL_CALLS`]
/// traces, `poll(` or `ppoll(`, with or without `-f`'s `[pid N] `.
pub fn is_poll_call(line: &str) -> bool {
    let call = match line.strip_prefix("[pid ") {
        Some(rest) => rest.split_once("] ").map_or("", |(_, call)| call),
        None => line,
    };
    call.starts_with("poll(") || call.starts_with("ppoll(")
}

#[test]
fn a_poll_call_is_poll_or_ppoll_and_nothing_else() {
    // Recorded from `poll-server` on x86_64 (strace 6.1), and the same line
    // with the call renamed, as aarch64 has it: no machine of the book's
    // runs the second, so the parse is checked here.
    let recorded = "poll([{fd=3, events=POLLIN}], 1, -1)    = 1 \
                    ([{fd=3, revents=POLLIN}])";
    let renamed = format!("p{recorded}");
    for line in [recorded, &renamed] {
        assert!(is_poll_call(line), "{line}");
        assert!(is_poll_call(&format!("[pid  4242] {line}")), "{line}");
    }
    for other in [
        "accept4(3, NULL, NULL, SOCK_CLOEXEC) = 4",
        "epoll_wait(3, [], 8, 0) = 0",
        "[pid  4242] epoll_pwait(3, [], 8, 0, NULL, 8) = 0",
        "<... poll resumed>) = 1",
        "",
    ] {
        assert!(!is_poll_call(other), "{other}");
    }
    // strace knows every name in the filter (here; aarch64's strace
    // knows `poll` from its 32-bit personality).
    if have("strace") {
        let out = Command::new("strace")
            .args(["-qq", "-o", "/dev/null", "-e"])
            .arg(format!("trace={POLL_CALLS}"))
            .arg("true")
            .output()
            .expect("strace");
        assert!(out.status.success(), "{out:?}");
    }
}

/// The system calls that make a process or a thread, that replace a
/// program, and that reap a child: what [`unreaped_children`] reads.
pub const PROCESS_CALLS: &str = "clone,clone3,fork,vfork,execve,wait4,waitid";

/// `strace -ff -qq -e trace=PROCESS_CALLS -o DIR/t` followed by `bin
/// args`: a command that leaves one file of calls per process and thread
/// of the listing in `dir` (`t.PID`), for [`unreaped_children`]. With
/// `-ff` no line has a `[pid N]` prefix and no call is cut in two, since
/// no other process's line can come between its start and its end.
pub fn traced_per_process(bin: &str, args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new("strace");
    command
        .args(["-ff", "-qq", "-e", &format!("trace={PROCESS_CALLS}")])
        .args(["-e", "signal=none", "-o"])
        .arg(dir.join("t"))
        .arg(bin)
        .args(args);
    command
}

/// From the files of a trace of `bin` by [`traced_per_process`]: each
/// process that the listing's own code made and that no process of the
/// trace reaped, as the line that made it, after the pid of its maker,
/// and whether that maker was the listing's first process.
///
/// The listing's own code runs in its first process and in every process
/// or thread it makes, until one of them execs another program (`sh`):
/// what that program makes is its own to reap, and when the listing ends
/// it by killing its group, its orphans go to init. A thread
/// (`CLONE_THREAD`) is not reaped. A reap is a `wait4` that returned the
/// child's pid with an exit or a death (not a stop or a continue), or a
/// `waitid` without `WNOWAIT` that reported one (`si_code=CLD_EXITED`,
/// `CLD_KILLED`, `CLD_DUMPED`), by any process of the trace.
pub fn unreaped_children(dir: &Path, bin: &str) -> Vec<(bool, String)> {
    static MADE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:clone3?|v?fork)\(.* = ([1-9][0-9]*)$").unwrap()
    });
    static EXEC: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"^execve\("([^"]*)",.* = 0$"#).unwrap());
    static WAIT4: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^wait4\(.* = ([1-9][0-9]*)$").unwrap());
    static WAITID: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^waitid\(.*si_code=CLD_(?:EXITED|KILLED|DUMPED), si_pid=([0-9]+),.* = 0$",
        )
        .unwrap()
    });
    let mut files: Vec<(u32, String)> = Vec::new();
    for entry in fs::read_dir(dir).expect("strace's directory").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("t.").and_then(|p| p.parse().ok())
        {
            let text = fs::read_to_string(entry.path()).expect("a trace file");
            files.push((pid, text));
        }
    }
    let children: Vec<u32> = files
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter_map(|line| MADE.captures(line))
        .filter_map(|c| c[1].parse().ok())
        .collect();
    // The listing: the one process no process of the trace made.
    let mut queue: Vec<(u32, bool)> = files
        .iter()
        .filter(|(pid, _)| !children.contains(pid))
        .map(|(pid, _)| (*pid, false))
        .collect();
    let (mut owed, mut reaped) = (Vec::new(), Vec::new());
    while let Some((pid, mut foreign)) = queue.pop() {
        let Some((_, text)) = files.iter().find(|(p, _)| *p == pid) else {
            continue;
        };
        for line in text.lines() {
            if let Some(c) = EXEC.captures(line) {
                foreign = &c[1] != bin;
            } else if let Some(c) = MADE.captures(line) {
                let child: u32 = c[1].parse().expect("a pid");
                queue.push((child, foreign));
                if !foreign && !line.contains("CLONE_THREAD") {
                    let first = !children.contains(&pid);
                    owed.push((child, first, format!("{pid} {line}")));
                }
            } else if let Some(c) = WAIT4.captures(line) {
                if !line.contains("WIFSTOPPED")
                    && !line.contains("WIFCONTINUED")
                {
                    reaped.push(c[1].parse::<u32>().expect("a pid"));
                }
            } else if let Some(c) = WAITID.captures(line)
                && !line.contains("WNOWAIT")
            {
                reaped.push(c[1].parse().expect("a pid"));
            }
        }
    }
    owed.into_iter()
        .filter(|(child, _, _)| !reaped.contains(child))
        .map(|(_, first, line)| (first, line))
        .collect()
}

/// Runs `bin` with `args` under strace, as [`traced_per_process`] does,
/// with its stdout on /dev/full, where every write fails (ENOSPC) as on a
/// full disk, and returns how it ended, once none of its processes is
/// left, and the children it left unreaped ([`unreaped_children`]).
pub fn unreaped_with_stdout_full(
    bin: &str,
    args: &[&str],
) -> (Finished, Vec<(bool, String)>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let full = fs::File::options().write(true).open("/dev/full").unwrap();
    let mut command = traced_per_process(bin, args, dir.path());
    let out = finish_clean(Listing::spawn(&mut command, full.into()));
    (out, unreaped_children(dir.path(), bin))
}

/// Runs `bin` under `strace -f` with `inject` (further `-e` options; a
/// `trace=` among them replaces the default set, and must name the calls
/// counted here and each that an `inject=` aims at, since strace injects
/// only into calls it traces) and stdout as given, and returns how it ended,
/// the pids of the processes it started (`clone`, `clone3`, `vfork`:
/// `Command` uses any of them) and those its own `wait4` reaped, each
/// sorted, and the trace. A `wait4` that reports a stop or a continue, or
/// returns 0 (`WNOHANG`, nothing yet), reaps nothing.
pub fn forked_and_reaped(
    bin: &str,
    args: &[&str],
    inject: &[&str],
    stdout: Stdio,
) -> (Finished, Vec<String>, Vec<String>, String) {
    forked_and_reaped_with(bin, args, inject, |_| stdout)
}

/// `forked_and_reaped`, with stdout made from the command that starts
/// strace: `support::stdout_to_a_widowed_pipe`, say, whose pipe is made in
/// that command's child, so that no other test thread's child holds it.
pub fn forked_and_reaped_with(
    bin: &str,
    args: &[&str],
    inject: &[&str],
    stdout: impl FnOnce(&mut Command) -> Stdio,
) -> (Finished, Vec<String>, Vec<String>, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trace = dir.path().join("trace");
    let mut command = Command::new("strace");
    command.args(["-f", "-q", "-o"]).arg(&trace);
    command.args(["-e", "trace=clone,clone3,vfork,wait4,waitid"]);
    for what in inject {
        command.args(["-e", what]);
    }
    command.arg(bin).args(args);
    let stdout = stdout(&mut command);
    let out = Listing::spawn(&mut command, stdout).finish();
    let text = fs::read_to_string(&trace).expect("the trace");
    // One call to a line, whether or not another process cut it in two.
    let calls = joined_calls(&text);
    let line =
        Regex::new(r"^(\d+) (clone3?|vfork|wait4)\(.* = ([1-9]\d*)$").unwrap();
    let parent = text.split_whitespace().next().unwrap_or_default();
    let (mut forked, mut reaped) = (Vec::new(), Vec::new());
    for caps in calls.iter().filter_map(|l| line.captures(l)) {
        if caps[0].contains("WIFSTOPPED") || caps[0].contains("WIFCONTINUED") {
            continue;
        }
        if &caps[1] == parent {
            let pid = caps[3].to_string();
            match &caps[2] {
                "wait4" => reaped.push(pid),
                _ => forked.push(pid),
            }
        }
    }
    forked.sort();
    reaped.sort();
    (out, forked, reaped, text)
}

/// Runs `bin args` under strace, which holds each process's first `call`
/// (`write`, say) 1.2 s, and kills the listing's first child with
/// SIGRTMIN+1 while it is held, before the child has done what it was
/// forked for: a test of a listing's wait for a child killed by a signal
/// that nix 0.32's `Signal` has no name for (SIGRTMIN and above), where
/// nix's `waitpid` fails with EINVAL and loses the status it reaped. The
/// child is found in /proc, as the child of strace's child. Returns what
/// the listing printed, and the signal's number (35 with glibc).
pub fn with_child_killed_by_a_real_time_signal(
    bin: &str,
    args: &[&str],
    call: &str,
) -> (Finished, i32) {
    let signal = nix::libc::SIGRTMIN() + 1;
    let trace = format!("trace={call}");
    let inject = format!("inject={call}:delay_enter=1200000:when=1");
    let mut command = vec!["-f", "-qq", "-o", "/dev/null", "-e", &trace];
    command.extend(["-e", &inject, "--", bin]);
    command.extend(args);
    let listing = Listing::start("strace", &command);
    let strace = listing.pid();
    let mut child = None;
    wait_until("the listing's child to start", || {
        child = children_of(strace)
            .first()
            .and_then(|&listing| children_of(listing).first().copied());
        child.is_some()
    });
    let child = child.expect("a child");
    // SAFETY: a plain kill(2) of a child not yet reaped: its parent waits
    // for it, and strace holds it.
    assert_eq!(unsafe { nix::libc::kill(child.as_raw(), signal) }, 0);
    (finish_clean(listing), signal)
}
