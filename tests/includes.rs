//! Every `{{#include}}` and `{{#rustdoc_include}}` names a file that exists
//! and an anchor that file has, and no directive is left in the book once
//! mdBook has expanded it. The other modules read includes through
//! [`includes_in`] too, so that every check sees exactly the directives
//! mdBook expands.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use mdbook_driver::MDBook;
use mdbook_driver::book::BookItem;
use mdbook_driver::builtin_renderers::CmdRenderer;
use regex::Regex;

use crate::support::{
    from_root, line_of, markdown_sources, normalize, read, workspace_root,
};

/// mdBook's own directive pattern (mdbook-driver 0.5.4,
/// `builtin_preprocessors/links.rs`), so that these tests see exactly the
/// directives mdBook expands and skip the escaped ones the way it does.
static DIRECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        \\\{\{\#.*\}\}
        |
        \{\{\s*\#([a-zA-Z0-9_]+)\s+([^}]+)\}\}",
    )
    .unwrap()
});

/// mdBook's anchor markers (`take_lines.rs`); they match anywhere on a
/// line, so `// ANCHOR: run` and `# ANCHOR: dependencies` both count.
pub static ANCHOR_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ANCHOR:\s*([\w_-]+)").unwrap());
pub static ANCHOR_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ANCHOR_END:\s*([\w_-]+)").unwrap());

/// One `{{#include}}` or `{{#rustdoc_include}}` in a Markdown file.
pub struct Include {
    /// The Markdown file and the line (1-based) the directive is on.
    pub file: PathBuf,
    pub line: usize,
    /// The directive as written, for messages.
    pub text: String,
    /// `include` or `rustdoc_include`.
    pub kind: String,
    /// The path as written, relative to the Markdown file.
    pub path: String,
    /// Everything after the first `:`, if there is one.
    pub spec: Option<String>,
}

impl Include {
    pub fn target(&self) -> PathBuf {
        normalize(&self.file.parent().unwrap().join(&self.path))
    }

    pub fn location(&self) -> String {
        format!("{}:{}: `{}`", from_root(&self.file), self.line, self.text)
    }
}

pub fn includes_in(file: &Path, text: &str) -> Vec<Include> {
    DIRECTIVE
        .captures_iter(text)
        .filter_map(|cap| {
            let kind = cap.get(1)?.as_str();
            if kind != "include" && kind != "rustdoc_include" {
                return None;
            }
            let whole = cap.get(0).unwrap();
            // Like mdBook, the first word is the target; later words are
            // properties, which only `{{#playground}}` has.
            let target = cap[2].split_whitespace().next()?;
            let (path, spec) = match target.split_once(':') {
                Some((path, spec)) => (path, Some(spec.to_string())),
                None => (target, None),
            };
            Some(Include {
                file: file.to_path_buf(),
                line: line_of(text, whole.start()),
                text: whole.as_str().to_string(),
                kind: kind.to_string(),
                path: path.to_string(),
                spec,
            })
        })
        .collect()
}

fn all_includes() -> Vec<Include> {
    markdown_sources()
        .iter()
        .flat_map(|(file, text)| includes_in(file, text))
        .collect()
}

/// What is wrong with the part after the path, if anything, given the
/// included file's text; phrased to follow the file's name.
fn anchor_problem(spec: &str, target_text: &str) -> Option<String> {
    let mut parts = spec.split(':');
    let anchor = parts.next().unwrap();
    // mdBook reads a number or an empty first part as a line range.
    if anchor.is_empty() || anchor.parse::<usize>().is_ok() {
        return Some(format!(
            "is cut by the line range `:{spec}`; line numbers drift when \
             the file changes, so name an anchor instead"
        ));
    }
    if parts.next().is_some() {
        return Some(format!(
            "is cut by `:{spec}`, but mdBook ignores everything after the \
             anchor `{anchor}`"
        ));
    }
    let marker_line = |re: &Regex, from: usize| {
        target_text
            .lines()
            .enumerate()
            .skip(from)
            .find(|(_, line)| {
                re.captures(line).is_some_and(|c| &c[1] == anchor)
            })
            .map(|(n, _)| n)
    };
    // mdBook takes the lines from the first start marker up to the first end
    // marker after it; an end marker before the start does not count.
    let Some(start) = marker_line(&ANCHOR_START, 0) else {
        return Some(format!("has no `ANCHOR: {anchor}`"));
    };
    if marker_line(&ANCHOR_END, start + 1).is_none() {
        return Some(format!(
            "has no `ANCHOR_END: {anchor}` after `ANCHOR: {anchor}` (line {})",
            start + 1
        ));
    }
    None
}

/// Whether the region of `anchor` is all of `text` but blank lines and
/// anchor markers. A whole-file include shows readers the markers of the
/// chapter's anchors; an anchor around the whole file hides them, because
/// mdBook strips markers nested in the region it takes.
pub fn anchor_covers_file(anchor: &str, text: &str) -> bool {
    let marks = |re: &Regex, line: &str| {
        re.captures(line).is_some_and(|c| &c[1] == anchor)
    };
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| marks(&ANCHOR_START, l)) else {
        return false;
    };
    let Some(end) = lines[start..]
        .iter()
        .position(|l| marks(&ANCHOR_END, l))
        .map(|n| start + n)
    else {
        return false;
    };
    lines[..start].iter().chain(&lines[end..]).all(|line| {
        line.trim().is_empty()
            || ANCHOR_START.is_match(line)
            || ANCHOR_END.is_match(line)
    })
}

#[test]
fn every_include_names_an_existing_file_and_anchor() {
    let includes = all_includes();
    assert!(
        !includes.is_empty(),
        "found no includes at all under src/: is the pattern wrong?"
    );
    let mut problems = Vec::new();
    for include in &includes {
        let target = include.target();
        let Ok(target_text) = std::fs::read_to_string(&target) else {
            problems.push(format!(
                "{}: cannot read {}",
                include.location(),
                from_root(&target)
            ));
            continue;
        };
        if let Some(spec) = &include.spec
            && let Some(problem) = anchor_problem(spec, &target_text)
        {
            problems.push(format!(
                "{}: {} {problem}",
                include.location(),
                from_root(&target)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} broken include(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The book as mdBook hands it to `mdbook test`, includes expanded.
fn preprocessed_chapters() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    let book = MDBook::load(&root)
        .unwrap_or_else(|e| panic!("cannot load the book: {e:#}"));
    // See build.rs: only the renderer's name matters.
    let renderer = CmdRenderer::new("test".to_string(), String::new());
    let (expanded, _) = book
        .preprocess_book(&renderer)
        .unwrap_or_else(|e| panic!("cannot preprocess the book: {e:#}"));
    expanded
        .iter()
        .filter_map(|item| match item {
            BookItem::Chapter(ch) => {
                Some((ch.path.clone()?, ch.content.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn no_directive_survives_preprocessing() {
    let src = workspace_root().join("src");
    let mut problems = Vec::new();
    for (path, content) in preprocessed_chapters() {
        let raw = read(&src.join(&path));
        for (offset, _) in content.match_indices("{{#") {
            let rest = &content[offset..];
            let end = rest.find("}}").map_or(rest.len(), |i| i + 2);
            let directive = rest[..end].lines().next().unwrap_or_default();
            // An escaped directive, `\{{#...}}`, is meant to reach readers
            // as text.
            if raw.contains(&format!("\\{directive}")) {
                continue;
            }
            // Point at the chapter's own line when the directive is
            // written there rather than in a file it includes.
            let line = match raw.find(directive) {
                Some(at) => line_of(&raw, at).to_string(),
                None => {
                    format!("line {} once expanded", line_of(&content, offset))
                }
            };
            problems.push(format!(
                "src/{}:{line}: `{directive}` is still there after \
                 preprocessing: mdBook could not read the file or does not \
                 know the directive",
                path.display(),
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} directive(s) left unexpanded:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
