//! Every output file of a listing (`*.out`, a real run that the listing
//! tests repeat, and `*.trace`, a real run under strace) is shown to
//! readers as output: included whole in a ```` ```console ```` block.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::includes::includes_in;
use crate::layout::listing_bins;
use crate::support::{
    files_with_extension, from_root, markdown_sources, read, workspace_root,
};

#[test]
fn every_output_file_is_shown_in_a_console_block() {
    let mut in_console = HashSet::new();
    let mut elsewhere: HashMap<PathBuf, Vec<String>> = HashMap::new();
    for (file, text) in markdown_sources() {
        let console_lines = lines_in_fences(&text, "console");
        for include in includes_in(&file, &text) {
            if include.kind != "include" {
                continue;
            }
            if console_lines.contains(&include.line) && include.spec.is_none() {
                in_console.insert(include.target());
            } else {
                elsewhere
                    .entry(include.target())
                    .or_default()
                    .push(include.location());
            }
        }
    }
    let listings = workspace_root().join("listings");
    let mut problems = Vec::new();
    let outputs = files_with_extension(&listings, "out");
    let traces = files_with_extension(&listings, "trace");
    for out in outputs.into_iter().chain(traces) {
        if in_console.contains(&out) {
            continue;
        }
        let mut problem = format!(
            "{}: not included whole inside a ```console block",
            from_root(&out)
        );
        match elsewhere.get(&out) {
            Some(places) => {
                let _ = write!(problem, "; included at {}", places.join(", "));
            }
            None => problem.push_str(" of any chapter"),
        }
        problems.push(problem);
    }
    assert!(
        problems.is_empty(),
        "{} output file(s) not shown as output:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The line numbers (1-based) inside fenced code blocks whose info string's
/// first word is `language`. CommonMark fences: three or more backticks or
/// tildes, indented at most three spaces, closed by a run of the same
/// character at least as long with nothing after it.
fn lines_in_fences(text: &str, language: &str) -> HashSet<usize> {
    let mut lines = HashSet::new();
    let mut open: Option<(char, usize, bool)> = None;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let trimmed = &line[indent..];
        let fence_char = trimmed.chars().next().filter(|c| "`~".contains(*c));
        let fence = fence_char
            .map(|c| (c, trimmed.len() - trimmed.trim_start_matches(c).len()));
        match (open, fence) {
            (Some((c, len, _)), Some((fc, flen)))
                if indent < 4
                    && fc == c
                    && flen >= len
                    && trimmed[flen..].trim().is_empty() =>
            {
                open = None;
            }
            (Some((_, _, wanted)), _) => {
                if wanted {
                    lines.insert(n + 1);
                }
            }
            (None, Some((c, len))) if indent < 4 && len >= 3 => {
                let info = trimmed[len..].trim();
                let first = info
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .next()
                    .unwrap_or_default();
                open = Some((c, len, first == language));
            }
            (None, _) => {}
        }
    }
    lines
}

/// A session in two or more terminals is recorded in one run, so a pid
/// that a command of Terminal 2 (or 3) names, `kill -HUP 1234` or
/// `/proc/1234/`, is one that the session printed: in another terminal's
/// output, or earlier in its own. The tests that compare sessions mask
/// pids, so only this check sees two terminals from different runs.
#[test]
fn every_pid_a_terminal_names_was_printed_in_its_session() {
    let marker = regex::Regex::new(
        r"\*Terminal (\d)\*|\{\{#include \.\./(listings/[^}]+\.out)\}\}",
    )
    .unwrap();
    // The pid is the last number of a `kill` command.
    let named = regex::Regex::new(r"\bkill\b.*\b(\d+)\b|/proc/(\d+)/").unwrap();
    let number = regex::Regex::new(r"\b\d+\b").unwrap();
    let mut problems = Vec::new();
    let mut sessions = 0;
    for (file, text) in markdown_sources() {
        // Each session: the files of its terminals, Terminal 1 first.
        let mut found: Vec<Vec<String>> = Vec::new();
        let mut terminal = None;
        for m in marker.captures_iter(&text) {
            if let Some(n) = m.get(1) {
                terminal = Some(n.as_str().to_string());
            } else if let Some(term) = terminal.take() {
                if term == "1" {
                    found.push(Vec::new());
                }
                if let Some(session) = found.last_mut() {
                    session.push(m[2].to_string());
                }
            }
        }
        for session in found.iter().filter(|session| session.len() > 1) {
            sessions += 1;
            let outputs: Vec<(String, String)> = session
                .iter()
                .map(|out| (out.clone(), read(&workspace_root().join(out))))
                .collect();
            for (i, (out, shown)) in outputs.iter().enumerate() {
                let mut printed: HashSet<&str> = HashSet::new();
                for (j, (_, other)) in outputs.iter().enumerate() {
                    if j != i {
                        printed.extend(
                            number.find_iter(other).map(|m| m.as_str()),
                        );
                    }
                }
                for line in shown.lines() {
                    if line.starts_with("$ ") {
                        for pid in named.captures_iter(line) {
                            let pid =
                                pid.get(1).or(pid.get(2)).unwrap().as_str();
                            if !printed.contains(pid) {
                                problems.push(format!(
                                    "{}: {out}: `{line}` names pid {pid}, which \
                                     the session ({}) never printed",
                                    from_root(&file),
                                    session.join(", ")
                                ));
                            }
                        }
                    }
                    printed.extend(number.find_iter(line).map(|m| m.as_str()));
                }
            }
        }
    }
    assert!(sessions >= 10, "only {sessions} sessions found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A server that a session starts in Terminal 1 and that does not end by
/// itself still holds its address when the reader reaches the next
/// session; if that session starts a server on the same address, it fails
/// with `Address already in use`, unless the book said to stop the first.
/// Read in the order of `SUMMARY.md`, as a reader goes: a server starts
/// when a Terminal 1 command prints `listening on ADDR`, or when a
/// paragraph that names Terminal 1 tells the reader to type a `cargo run`
/// of a listing that listens (on the address its sessions print). It ends
/// by itself with `--count`, with a line of its own name as its last
/// (an error), with a later command in the same terminal, or with a `kill`
/// in another terminal; otherwise only a "Ctrl-C" in the prose stops it,
/// and the check takes any Ctrl-C as stopping every server left.
#[test]
fn a_server_left_running_is_stopped_before_the_next_takes_its_address() {
    let root = workspace_root();
    let summary = read(&root.join("src").join("SUMMARY.md"));
    let chapter = regex::Regex::new(r"\]\((ch\d\d-[^)]+\.md)\)").unwrap();
    let chapters: Vec<(String, String)> = chapter
        .captures_iter(&summary)
        .map(|c| (c[1].to_string(), read(&root.join("src").join(&c[1]))))
        .collect();
    assert!(chapters.len() >= 30, "only {} chapters", chapters.len());
    let outputs: HashMap<String, String> =
        files_with_extension(&root.join("listings"), "out")
            .into_iter()
            .map(|path| (from_root(&path), read(&path)))
            .collect();
    let problems = servers_left_running(&chapters, &outputs);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn servers_left_running_are_caught() {
    let outputs: HashMap<String, String> = [
        (
            "listings/a.out",
            "$ cargo run -p listings --bin srv\nServer listening on 127.0.0.1:50008\n",
        ),
        (
            "listings/b.out",
            "$ cargo run -p listings --bin srv -- --count 1\nServer listening on 127.0.0.1:50008\n",
        ),
        ("listings/kill.out", "$ kill -KILL $(pgrep -n srv)\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let session = |file: &str| {
        format!(
            "*Terminal 1*\n\n```console\n{{{{#include ../{file}}}}}\n```\n\n"
        )
    };
    let case = |text: String| {
        servers_left_running(&[("ch99-x.md".to_string(), text)], &outputs)
    };
    // Two sessions on one address, nothing said between: caught.
    let twice = session("listings/a.out") + &session("listings/b.out");
    assert_eq!(case(twice).len(), 1);
    // Said: not caught.
    let said = session("listings/a.out")
        + "Stop it with Ctrl-C.\n\n"
        + &session("listings/b.out");
    assert!(case(said).is_empty());
    // A server started by the prose in Terminal 1, then a session: caught.
    let prose =
        "Start it in Terminal 1: `cargo run -p listings --bin\nsrv`.\n\n"
            .to_string()
            + &session("listings/b.out");
    assert_eq!(case(prose).len(), 1);
    // Killed from Terminal 2: not caught.
    let killed = session("listings/a.out")
        + "*Terminal 2*\n\n```console\n{{#include ../listings/kill.out}}\n```\n\n"
        + &session("listings/b.out");
    assert!(case(killed).is_empty());
    // With --count it ends by itself: not caught.
    let counted = session("listings/b.out") + &session("listings/a.out");
    assert!(case(counted).is_empty());
}

/// The problems [`a_server_left_running_is_stopped_before_the_next_takes_its_address`]
/// reports, for `chapters` (name and text, in reading order) and the
/// output files they include (path from the workspace root, and text).
fn servers_left_running(
    chapters: &[(String, String)],
    outputs: &HashMap<String, String>,
) -> Vec<String> {
    let listening = regex::Regex::new(r"(?i:listening) on (\S+)").unwrap();
    let bin = regex::Regex::new(r"--bin\s+([\w-]+)").unwrap();
    // Where each listing listens by default: what its sessions print.
    let mut address: HashMap<String, String> = HashMap::new();
    for text in outputs.values() {
        for command in text.split("\n$ ").map(|c| c.trim_start_matches("$ ")) {
            let first = command.lines().next().unwrap_or_default();
            if let (Some(b), Some(l)) =
                (bin.captures(first), listening.captures(command))
            {
                address
                    .entry(b[1].to_string())
                    .or_insert_with(|| l[1].trim_end_matches(',').to_string());
            }
        }
    }
    let event = regex::Regex::new(
        r"\*Terminal (\d)\*|\{\{#include \.\./(listings/[^}]+\.out)\}\}|`(cargo run -p listings --bin\s[^`]+)`|(Ctrl-C)",
    )
    .unwrap();
    let mut problems = Vec::new();
    // Address -> where the server on it was started.
    let mut running: HashMap<String, String> = HashMap::new();
    for (name, text) in chapters {
        let mut terminal = None;
        for m in event.captures_iter(text) {
            let at = format!(
                "src/{name}:{}",
                crate::support::line_of(text, m.get(0).unwrap().start())
            );
            if let Some(n) = m.get(1) {
                terminal = Some(n.as_str().to_string());
            } else if m.get(4).is_some() {
                running.clear();
            } else if let Some(command) = m.get(3) {
                let command = command.as_str();
                let start = text[..m.get(0).unwrap().start()]
                    .rfind("\n\n")
                    .unwrap_or(0);
                let end = m.get(0).unwrap().end();
                let end =
                    text[end..].find("\n\n").map_or(text.len(), |e| e + end);
                let paragraph = &text[start..end];
                let Some(b) = bin.captures(command) else {
                    continue;
                };
                let Some(addr) = address.get(&b[1]) else {
                    continue;
                };
                if command.contains("--count")
                    || !paragraph.contains("Terminal 1")
                {
                    continue;
                }
                if let Some(first) = running.get(addr) {
                    problems.push(format!(
                        "{at}: starts `{}` on {addr}, which the server started at {first} still holds: say to stop it (Ctrl-C)",
                        &b[1]
                    ));
                }
                running.insert(addr.clone(), at);
            } else if let Some(file) = m.get(2) {
                let Some(out) = outputs.get(file.as_str()) else {
                    continue;
                };
                let term = terminal.take();
                if term.as_deref() != Some("1") {
                    if out.lines().any(|l| l.starts_with("$ kill")) {
                        running.clear();
                    }
                    continue;
                }
                let commands: Vec<&str> = out
                    .split("\n$ ")
                    .map(|c| c.trim_start_matches("$ "))
                    .collect();
                for (i, command) in commands.iter().enumerate() {
                    let Some(l) = listening.captures(command) else {
                        continue;
                    };
                    let addr = l[1].trim_end_matches(',').to_string();
                    if let Some(first) = running.get(&addr) {
                        problems.push(format!(
                            "{at}: {} starts a server on {addr}, which the server started at {first} still holds: say to stop it (Ctrl-C)",
                            file.as_str()
                        ));
                    }
                    let first = command.lines().next().unwrap_or_default();
                    let own_name = bin
                        .captures(first)
                        .map(|b| format!("{}: ", &b[1]))
                        .unwrap_or_default();
                    let last =
                        command.trim_end().lines().last().unwrap_or_default();
                    let ended = first.contains("--count")
                        || i + 1 < commands.len()
                        || (!own_name.is_empty()
                            && last.starts_with(&own_name));
                    if ended {
                        running.remove(&addr);
                    } else {
                        running
                            .insert(addr, format!("{at} ({})", file.as_str()));
                    }
                }
            }
        }
    }
    problems
}

/// A program that another terminal stops with `kill -STOP` and continues
/// with `kill -CONT` is no longer its terminal's foreground job: bash took
/// the terminal back when it stopped, so Ctrl-C there no longer reaches
/// it, and a loop that never ends by itself runs on in the background. A
/// session that continues a program must see it end: the program was
/// started with `--count`, or a later `kill` in the session ends it. So
/// must a paragraph that names a listing and has the reader continue it:
/// it starts the listing with `--count`.
#[test]
fn a_program_continued_from_another_terminal_still_ends() {
    let marker = regex::Regex::new(
        r"\*Terminal (\d)\*|\{\{#include \.\./(listings/[^}]+\.out)\}\}",
    )
    .unwrap();
    let ending = regex::Regex::new(
        r"^\$ .*\bkill (-(TERM|KILL|INT|HUP|QUIT|9|15) )?\d+\s*$",
    )
    .unwrap();
    let binaries: Vec<String> = listing_bins()
        .into_iter()
        .map(|bin| format!("`{}`", bin.name))
        .collect();
    assert!(binaries.len() > 50, "only {} binaries", binaries.len());
    let mut problems = Vec::new();
    let (mut sessions, mut paragraphs) = (0, 0);
    for (file, text) in markdown_sources() {
        // Each session: the outputs of its terminals, Terminal 1 first.
        let mut found: Vec<Vec<String>> = Vec::new();
        let mut terminal = None;
        for m in marker.captures_iter(&text) {
            if let Some(n) = m.get(1) {
                terminal = Some(n.as_str().to_string());
            } else if let Some(term) = terminal.take() {
                if term == "1" {
                    found.push(Vec::new());
                }
                if let Some(session) = found.last_mut() {
                    session.push(m[2].to_string());
                }
            }
        }
        for session in &found {
            let lines: Vec<String> = session
                .iter()
                .flat_map(|out| {
                    read(&workspace_root().join(out))
                        .lines()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect();
            let Some(cont) =
                lines.iter().position(|l| l.starts_with("$ kill -CONT"))
            else {
                continue;
            };
            sessions += 1;
            let counted = lines
                .iter()
                .any(|l| l.starts_with("$ cargo run") && l.contains("--count"));
            let killed = lines[cont..].iter().any(|l| ending.is_match(l));
            if !counted && !killed {
                problems.push(format!(
                    "{}: the session {} continues a program with `kill -CONT` \
                     that was started without --count and that no later \
                     `kill` ends",
                    from_root(&file),
                    session.join(", ")
                ));
            }
        }
        for paragraph in text.split("\n\n") {
            let names_a_listing = paragraph.contains("`cargo run -p listings")
                || binaries
                    .iter()
                    .any(|name| paragraph.contains(name.as_str()));
            if paragraph.trim_start().starts_with("```")
                || !paragraph.contains("`kill -CONT")
                || !names_a_listing
            {
                continue;
            }
            paragraphs += 1;
            if !paragraph.contains("--count") {
                let first = paragraph.trim().lines().next().unwrap_or("");
                problems.push(format!(
                    "{}: the paragraph that begins `{first}` has the reader \
                     continue a listing started without --count, which then \
                     runs on in the background",
                    from_root(&file)
                ));
            }
        }
    }
    assert!(sessions >= 3, "only {sessions} sessions continue a program");
    assert!(paragraphs >= 1, "no paragraph continues a program");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A session that starts a listing as the first process of a new PID
/// namespace (`unshare --pid`) shows the pids the listing's children get
/// there, and runs the built binary, `target/debug/NAME`, as a reader does
/// after `cargo build -p listings`: under `cargo run`, Cargo is the
/// namespace's first process, and its threads and the commands it starts
/// take the next pids before it hands over to the listing, so the reader's
/// children would get higher numbers than the session shows (pid 5 where
/// it shows 2, with Cargo 1.95). Prose that has the reader type such a
/// command follows the same rule.
#[test]
fn a_session_in_a_new_pid_namespace_runs_the_built_binary() {
    let in_new_pid_namespace = |command: &str| {
        command.contains("unshare ") && command.contains("--pid")
    };
    let mut problems = Vec::new();
    let mut sessions = 0;
    let listings = workspace_root().join("listings");
    for out in files_with_extension(&listings, "out") {
        for command in read(&out).lines().filter_map(|l| l.strip_prefix("$ ")) {
            if !in_new_pid_namespace(command) {
                continue;
            }
            sessions += 1;
            if command.contains("cargo run")
                || !command.contains("target/debug/")
            {
                problems.push(format!("{}: $ {command}", from_root(&out)));
            }
        }
    }
    for (file, text) in markdown_sources() {
        for paragraph in text.split("\n\n") {
            let joined =
                paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
            let runs_cargo_there =
                joined.split('`').skip(1).step_by(2).any(|code| {
                    in_new_pid_namespace(code) && code.contains("cargo run")
                });
            if runs_cargo_there {
                let first = paragraph.trim().lines().next().unwrap_or("");
                problems.push(format!(
                    "{}: the paragraph that begins `{first}` runs `cargo run` \
                     in a new PID namespace",
                    from_root(&file)
                ));
            }
        }
    }
    assert!(
        sessions >= 3,
        "only {sessions} sessions in a new PID namespace"
    );
    assert!(
        problems.is_empty(),
        "run target/debug/NAME, not cargo run, as the first process of a \
         new PID namespace:\n{}",
        problems.join("\n")
    );
}
