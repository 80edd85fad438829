//! The glossary, `src/appendix-glossary.md`, is a definition list: each
//! term once, in alphabetical order, and each definition links to the
//! section of a chapter where the book defines the term, in italics. A
//! heading renamed or a definition moved would otherwise leave the
//! glossary sending readers to a page top, or to a section that never
//! says what the word means. And the other way round: every word a chapter
//! sets in italics is a glossary term, or one of the few italics this file
//! lists as something else (emphasis, a variable, a title), so that a term
//! the book defines cannot be missing from the glossary.

use std::collections::{BTreeMap, HashSet};

use mdbook_markdown::pulldown_cmark::{Event, Tag, TagEnd};
use mdbook_markdown::{MarkdownOptions, new_cmark_parser};

use crate::support::{line_of, read, workspace_root};

/// One entry of the glossary.
struct Entry {
    term: String,
    line: usize,
    /// The internal links of its definition, as written.
    links: Vec<String>,
}

/// A section of a chapter: its heading's HTML id and the text of every
/// italic run from that heading to the next.
struct Section {
    id: String,
    italics: Vec<String>,
}

#[test]
fn every_glossary_term_is_defined_once_where_it_links() {
    let src = workspace_root().join("src");
    let glossary = read(&src.join("appendix-glossary.md"));
    let entries = entries(&glossary);
    assert!(
        entries.len() >= 20,
        "found only {} glossary entries: is it still a definition list?",
        entries.len()
    );
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut previous: Option<&Entry> = None;
    let mut chapters: BTreeMap<String, Vec<Section>> = BTreeMap::new();
    for entry in &entries {
        let place = format!("src/appendix-glossary.md:{}", entry.line);
        let key = normalized(&entry.term);
        if let Some(first) = seen.insert(key.clone(), entry.line) {
            problems.push(format!(
                "{place}: `{}` is defined twice (first at line {first})",
                entry.term
            ));
        }
        if let Some(previous) = previous
            && sort_key(&previous.term) > sort_key(&entry.term)
        {
            problems.push(format!(
                "{place}: `{}` comes after `{}`: keep the terms in \
                 alphabetical order",
                entry.term, previous.term
            ));
        }
        previous = Some(entry);
        let chapter_links: Vec<&String> = entry
            .links
            .iter()
            .filter(|link| link.starts_with("ch"))
            .collect();
        if chapter_links.is_empty() {
            problems
                .push(format!("{place}: `{}` links to no chapter", entry.term));
        }
        for link in chapter_links {
            let Some((file, fragment)) = link.split_once('#') else {
                problems.push(format!(
                    "{place}: `{}` links to {link}, a page, not the section \
                     that defines it",
                    entry.term
                ));
                continue;
            };
            let path = src.join(file);
            if !path.is_file() {
                problems.push(format!("{place}: {link}: no such chapter"));
                continue;
            }
            let sections = chapters
                .entry(file.to_string())
                .or_insert_with(|| sections(&read(&path)));
            let Some(section) = sections.iter().find(|s| s.id == fragment)
            else {
                problems.push(format!(
                    "{place}: {link}: {file} has no heading with that id"
                ));
                continue;
            };
            if !section
                .italics
                .iter()
                .any(|i| entry_names(i, &key) || is_other_name(i, &entry.term))
            {
                problems.push(format!(
                    "{place}: {link}: that section never sets `{}` in \
                     italics, as the book does where it defines a term",
                    entry.term
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the glossary:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A reader meets a term where the book first defines it, and the glossary
/// must send them there, not to a later, fuller treatment only: an entry
/// links to the first section, in reading order, that sets its term in
/// italics (it may link to later ones too).
#[test]
fn every_glossary_entry_links_to_where_the_book_first_defines_it() {
    let src = workspace_root().join("src");
    let entries = entries(&read(&src.join("appendix-glossary.md")));
    let mut chapters: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.starts_with("ch") && name.ends_with(".md")
        })
        .collect();
    chapters.sort();
    let places: Vec<(String, Section)> = chapters
        .iter()
        .flat_map(|path| {
            let file = path.file_name().unwrap().to_str().unwrap().to_string();
            sections(&read(path))
                .into_iter()
                .map(move |s| (file.clone(), s))
        })
        .collect();
    let mut problems = Vec::new();
    for entry in &entries {
        let first = places.iter().find(|(_, section)| {
            section.italics.iter().any(|i| {
                entry_spells(i, &entry.term) || is_other_name(i, &entry.term)
            })
        });
        let Some((file, section)) = first else {
            continue;
        };
        let here = format!("{file}#{}", section.id);
        if !entry.links.contains(&here) {
            problems.push(format!(
                "src/appendix-glossary.md:{}: `{}` is first defined at \
                 {here}, and the entry does not link there",
                entry.line, entry.term
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} glossary entries miss the first definition:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Whether `italic` is one of `OTHER_NAMES` for `term`: a chapter that
/// says `SIGSTOP` *stops* a process defines "Stopped" there, before any
/// chapter sets *stopped* itself, and the entry must link to it (reader
/// pass IBF 7: the entry skipped Chapter 2 while *stops* was listed as
/// mere emphasis).
fn is_other_name(italic: &str, term: &str) -> bool {
    OTHER_NAMES.iter().any(|(other, named)| {
        normalized(other) == normalized(italic)
            && normalized(named) == normalized(term)
    })
}

/// Italics in the chapters that are not terms, each with why.
const NOT_TERMS: &[(&str, &str)] = &[
    // The book's own conventions, explained in chapter 1.
    ("aside", "the book's convention"),
    ("italics", "the book's convention"),
    ("Terminal 1", "the book's convention"),
    ("Terminal 2", "the book's convention"),
    ("Terminal 3", "the book's convention"),
    // Variables and titles.
    ("i", "a variable"),
    ("k", "a variable"),
    ("M", "a variable"),
    ("n", "a variable"),
    ("Programming Python", "a title"),
    // Words of one listing, explained where it is shown.
    ("actions", "signal-hook's word, in chapter 6"),
    ("exfiltrator", "signal-hook's word, in chapter 11"),
    ("mailbox", "Listing 26-1's"),
    ("stamp", "Listing 27-1's"),
    ("ticks", "Listing 5-2's"),
    ("Rust’s time at most 5% above C’s", "chapter 26's target"),
    ("not decidable here", "a verdict of chapter 26's tables"),
    ("backpressure boundary", "tokio-util's word, in chapter 30"),
    ("file descriptor store", "systemd's word, in chapter 16"),
    ("idle", "a state of Listing 14-2's connections"),
    ("debug", "a cargo profile"),
    ("release", "a cargo profile"),
    // Lead-ins of paragraphs.
    ("Not across everything.", "a lead-in"),
    ("The parent is a thread.", "a lead-in"),
    ("The race.", "a lead-in"),
    ("Three programs, ported", "a lead-in"),
    // Choices a chapter weighs, named as it weighs them.
    ("limit per client address", "one of chapter 14's choices"),
    (
        "shorter idle timeout under pressure",
        "one of chapter 14's choices",
    ),
];

/// Italics that name a glossary term by another word, each with the term.
const OTHER_NAMES: &[(&str, &str)] = &[
    ("block", "Blocked signal"),
    ("blocked", "Blocked signal"),
    ("blocking", "Blocking call"),
    ("epoll instance", "epoll"),
    ("handshake", "Three-way handshake"),
    ("orphaned", "Orphaned group"),
    ("stops", "Stopped"),
    ("wait", "Voluntary switch"),
    ("worker", "Worker thread"),
];

/// Words set in italics for emphasis somewhere in the chapters.
#[rustfmt::skip]
const EMPHASIS: &[&str] = &[
    "after", "all", "and", "as", "asks", "at most", "before", "bytes",
    "continued", "died", "different", "drops", "every", "exited",
    "explicitly", "first one’s", "in itself", "in the middle of", "is", "it",
    "length", "list", "moves", "nest", "not", "now", "replaced", "Rust",
    "sent", "sigaction", "task", "that", "thread", "told", "waits",
    "wake", "well", "when it reads", "which", "while",
];

#[test]
fn every_term_a_chapter_sets_in_italics_has_a_glossary_entry() {
    let src = workspace_root().join("src");
    let glossary = read(&src.join("appendix-glossary.md"));
    let entries = entries(&glossary);
    let terms: Vec<String> = entries
        .iter()
        .map(|entry| normalized(&entry.term))
        .collect();
    let not_terms: Vec<String> = NOT_TERMS
        .iter()
        .map(|(italic, _)| *italic)
        .chain(EMPHASIS.iter().copied())
        .map(normalized)
        .collect();
    let mut problems = Vec::new();
    for (italic, term) in OTHER_NAMES {
        if !terms.contains(&normalized(term)) {
            problems.push(format!(
                "tests/glossary.rs names *{italic}* for `{term}`, which the \
                 glossary does not have"
            ));
        }
    }
    let not_terms: Vec<String> = not_terms
        .into_iter()
        .chain(OTHER_NAMES.iter().map(|(italic, _)| normalized(italic)))
        .collect();
    let mut used = HashSet::new();
    let mut chapters: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.starts_with("ch") && name.ends_with(".md")
        })
        .collect();
    chapters.sort();
    assert!(
        chapters.len() >= 30,
        "found only {} chapters",
        chapters.len()
    );
    for path in &chapters {
        let file = path.file_name().unwrap().to_str().unwrap();
        for section in sections(&read(path)) {
            for italic in &section.italics {
                let key = normalized(italic);
                used.insert(key.clone());
                if not_terms.contains(&key)
                    || terms.iter().any(|term| entry_spells(italic, term))
                {
                    continue;
                }
                // An italic that only shares a word with a term, as *steal*
                // does with "Steal time", is that term only where the term's
                // entry sends the reader: anywhere else it is another idea,
                // and the glossary would explain the wrong one.
                let here = format!("{file}#{}", section.id);
                let named: Vec<&Entry> = entries
                    .iter()
                    .filter(|entry| entry_names(italic, &entry.term))
                    .collect();
                if named.iter().any(|entry| entry.links.contains(&here)) {
                    continue;
                }
                if let Some(entry) = named.first() {
                    problems.push(format!(
                        "{here}: *{italic}* is not `{}`, whose entry links \
                         elsewhere (add an entry for it, or list it in \
                         tests/glossary.rs)",
                        entry.term
                    ));
                    continue;
                }
                problems.push(format!(
                    "{file}#{}: *{italic}* has no glossary entry (add one, \
                     or list it in tests/glossary.rs if it is not a term)",
                    section.id
                ));
            }
        }
    }
    // A word listed as no term that no chapter sets in italics any more
    // is stale.
    for key in &not_terms {
        if !used.contains(key) {
            problems.push(format!(
                "tests/glossary.rs lists *{key}* as no term, and no chapter \
                 sets it in italics"
            ));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} italic(s) without a glossary entry:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The definition list's terms, each with the links of its definitions.
fn entries(markdown: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut in_term = false;
    let parser = new_cmark_parser(markdown, &MarkdownOptions::default());
    for (event, range) in parser.into_offset_iter() {
        match event {
            Event::Start(Tag::DefinitionListTitle) => {
                in_term = true;
                entries.push(Entry {
                    term: String::new(),
                    line: line_of(markdown, range.start),
                    links: Vec::new(),
                });
            }
            Event::End(TagEnd::DefinitionListTitle) => in_term = false,
            Event::Text(text) | Event::Code(text) if in_term => {
                entries.last_mut().unwrap().term.push_str(&text);
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                if let Some(entry) = entries.last_mut() {
                    entry.links.push(dest_url.to_string());
                }
            }
            _ => {}
        }
    }
    entries
}

/// A chapter's headings, with the ids mdBook 0.5.4 gives them, and the
/// italic runs under each.
fn sections(markdown: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut used = HashSet::new();
    let mut heading: Option<(Option<String>, String)> = None;
    let mut italic: Option<String> = None;
    let parser = new_cmark_parser(markdown, &MarkdownOptions::default());
    for event in parser {
        match event {
            Event::Start(Tag::Heading { id, .. }) => {
                heading = Some((id.map(|id| id.to_string()), String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                let (explicit, text) = heading.take().unwrap();
                let id = match explicit {
                    Some(id) => id,
                    None => unique_id(&id_from_content(&text), &mut used),
                };
                sections.push(Section {
                    id,
                    italics: Vec::new(),
                });
            }
            Event::Start(Tag::Emphasis) => italic = Some(String::new()),
            Event::End(TagEnd::Emphasis) => {
                let text = italic.take().unwrap();
                if let Some(section) = sections.last_mut() {
                    section.italics.push(text);
                }
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some((_, heading)) = &mut heading {
                    heading.push_str(&text);
                }
                if let Some(italic) = &mut italic {
                    italic.push_str(&text);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(italic) = &mut italic {
                    italic.push(' ');
                }
            }
            _ => {}
        }
    }
    sections
}

/// mdBook 0.5.4's heading id (`id_from_content` in mdbook-html's
/// `utils.rs`, which is private): lower case, letters, digits, `_` and
/// `-` kept, white space made `-`, the rest dropped.
fn id_from_content(content: &str) -> String {
    content
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// A second heading with the same id gets `-1`, a third `-2`, as mdBook
/// numbers them.
fn unique_id(id: &str, used: &mut HashSet<String>) -> String {
    if used.insert(id.to_string()) {
        return id.to_string();
    }
    (1..)
        .map(|n| format!("{id}-{n}"))
        .find(|candidate| used.insert(candidate.clone()))
        .unwrap()
}

/// A term as compared: lower case, spaces collapsed.
fn normalized(term: &str) -> String {
    term.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The order of the glossary: letters and digits only, lower case, so
/// that `SA_RESTART` sorts as "sarestart" and `/proc` as "proc".
fn sort_key(term: &str) -> String {
    term.chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

/// Whether an italic run names the glossary's term: one contains the
/// other, and the shorter is at least four characters and half the
/// longer, so that *reaping* names "reap" and *process-directed* names
/// "process-directed signal", but *is* names nothing.
fn names(italic: &str, term: &str) -> bool {
    let italic = normalized(italic);
    // The term itself, or its plural, however short: *SYN*, *jobs*.
    if italic == term || italic.strip_suffix('s') == Some(term) {
        return true;
    }
    let (short, long) = if italic.len() <= term.len() {
        (italic.as_str(), term)
    } else {
        (term, italic.as_str())
    };
    long.contains(short) && short.len() >= 4 && 2 * short.len() >= long.len()
}

/// Whether an italic run spells a glossary entry's term, not only shares a
/// word with it: the term or its plural, or the other name in its
/// parentheses.
fn entry_spells(italic: &str, term: &str) -> bool {
    let italic = normalized(italic);
    let term = normalized(term);
    let spells =
        |term: &str| italic == term || italic.strip_suffix('s') == Some(term);
    spells(&term)
        || term
            .strip_suffix(')')
            .and_then(|t| t.split_once(" ("))
            .is_some_and(|(base, other)| spells(base) || spells(other))
}

/// Whether an italic run names a glossary entry's term, written as a term
/// and, in parentheses, another name for it: "Process id (pid)" is named by
/// *process id* and by *pid*, "Reset (RST)" by *reset* and *RST*.
fn entry_names(italic: &str, term: &str) -> bool {
    let term = normalized(term);
    if names(italic, &term) {
        return true;
    }
    match term.strip_suffix(')').and_then(|t| t.split_once(" (")) {
        Some((base, other)) => {
            names(italic, base) || normalized(italic) == other
        }
        None => false,
    }
}
