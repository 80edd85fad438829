//! Every output file of a listing (`*.out`, a real run that the listing
//! tests repeat, and `*.trace`, a real run under strace) is shown to
//! readers as output: included whole in a ```` ```console ```` block.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::includes::includes_in;
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
