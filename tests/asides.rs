//! Asides, as the introduction describes them: detail a reader may skip,
//! in a box of its own, `theme/listings.css`'s `.aside`. In the Markdown
//! an aside is
//!
//! ```text
//! <div class="aside">
//!
//! **A title in bold.** The detail, in ordinary Markdown.
//!
//! </div>
//! ```
//!
//! and nothing else: the blank line after the opening tag is what makes
//! mdBook read the inside as Markdown rather than raw HTML, and an aside
//! inside a listing would end up between its code and its caption.

use crate::support::{from_root, markdown_sources};

/// What this check knows of one line of a chapter.
#[derive(Clone, Copy, PartialEq)]
enum Div {
    Aside,
    Listing,
    Other,
}

#[test]
fn every_aside_is_well_formed() {
    let mut problems = Vec::new();
    let mut asides = 0;
    for (file, text) in markdown_sources() {
        let name = from_root(&file);
        asides += check(&name, &text, &mut problems);
    }
    assert!(
        asides > 0,
        "found no aside at all: is the markup still the same?"
    );
    assert!(
        problems.is_empty(),
        "{} problem(s) with asides:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Checks the asides of one file; returns how many it has.
fn check(name: &str, text: &str, problems: &mut Vec<String>) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut open: Vec<(Div, usize)> = Vec::new();
    let mut fence: Option<&str> = None;
    let mut count = 0;
    for (i, line) in lines.iter().enumerate() {
        let place = format!("{name}:{}", i + 1);
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        // An aside written some other way, such as a block quote titled
        // "Aside", looks like none of the others.
        let unboxed = trimmed.trim_start_matches(['>', ' ']);
        if trimmed.starts_with('>') && unboxed.starts_with("**Aside") {
            problems.push(format!(
                "{place}: an aside is a `<div class=\"aside\">`, not a \
                 block quote"
            ));
            continue;
        }
        if without_code_spans(line).contains("class=\"aside\"")
            && *line != "<div class=\"aside\">"
        {
            problems.push(format!(
                "{place}: an aside opens with `<div class=\"aside\">` alone \
                 on its line, at its start"
            ));
            continue;
        }
        if *line == "<div class=\"aside\">" {
            count += 1;
            if open.iter().any(|(div, _)| *div == Div::Listing) {
                problems.push(format!("{place}: an aside inside a listing"));
            }
            if open.iter().any(|(div, _)| *div == Div::Aside) {
                problems.push(format!("{place}: an aside inside an aside"));
            }
            if lines.get(i + 1).is_none_or(|next| !next.trim().is_empty()) {
                problems.push(format!(
                    "{place}: no blank line after `<div class=\"aside\">`, \
                     so mdBook would not read its inside as Markdown"
                ));
            }
            match lines[i + 1..].iter().find(|l| !l.trim().is_empty()) {
                Some(first) if first.starts_with("**") => {
                    if first[2..].find("**").is_none_or(|end| end == 0) {
                        problems.push(format!(
                            "{place}: the aside's bold title is not closed"
                        ));
                    }
                }
                Some(first) if first.trim() == "</div>" => {
                    problems.push(format!("{place}: an empty aside"));
                }
                _ => problems.push(format!(
                    "{place}: an aside opens with its title in bold, \
                     `**Title.**`"
                )),
            }
            open.push((Div::Aside, i));
        } else if trimmed.starts_with("<div") {
            let div = if trimmed.contains("class=\"listing\"") {
                Div::Listing
            } else {
                Div::Other
            };
            if div == Div::Listing
                && open.iter().any(|(div, _)| *div == Div::Aside)
            {
                problems.push(format!("{place}: a listing inside an aside"));
            }
            open.push((div, i));
        } else if trimmed.starts_with("</div>") {
            match open.pop() {
                Some((Div::Aside, start)) => {
                    if !lines[i - 1].trim().is_empty() {
                        problems.push(format!(
                            "{place}: no blank line before the `</div>` \
                             that closes the aside of line {}",
                            start + 1
                        ));
                    }
                }
                Some(_) => {}
                None => {
                    problems.push(format!("{place}: `</div>` closes nothing"))
                }
            }
        }
    }
    for (div, start) in open {
        if div == Div::Aside {
            problems.push(format!(
                "{name}:{}: an aside that is never closed with `</div>`",
                start + 1
            ));
        }
    }
    count
}

/// `line` without its `code spans`, which only show markup.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect()
}

/// The check itself, on small pieces of Markdown, each with one fault.
#[test]
fn the_aside_check_finds_each_fault() {
    let good =
        "Text.\n\n<div class=\"aside\">\n\n**Title.** Detail.\n\n</div>\n";
    let cases = [
        (good, None),
        (
            "<div class=\"aside\">\n\n**Title.** Detail.\n",
            Some("never closed"),
        ),
        ("<div class=\"aside\">\n\n</div>\n", Some("empty aside")),
        (
            "<div class=\"aside\">\n**Title.** Detail.\n\n</div>\n",
            Some("no blank line after"),
        ),
        (
            "<div class=\"aside\">\n\nDetail, no title.\n\n</div>\n",
            Some("title in bold"),
        ),
        (
            "<div class=\"aside\">\n\n**Title. Detail.\n\n</div>\n",
            Some("not closed"),
        ),
        (
            "<div class=\"listing\">\n\n<div class=\"aside\">\n\n**T.** D.\n\n\
             </div>\n\n</div>\n",
            Some("inside a listing"),
        ),
        (
            "<div class=\"aside\">\n\n**T.** D.\n\n<div class=\"listing\">\n\
             </div>\n\n</div>\n",
            Some("listing inside an aside"),
        ),
        (
            "  <div class=\"aside\">\n\n**T.** D.\n\n</div>\n",
            Some("alone on its line"),
        ),
        ("```text\n<div class=\"aside\">\n```\n", None),
        ("> **Aside: a title.** Detail.\n", Some("not a block quote")),
        ("> **Not an aside.** A quotation.\n", None),
        ("Write `<div class=\"aside\">` to open one.\n", None),
    ];
    for (markdown, fault) in cases {
        let mut problems = Vec::new();
        check("case", markdown, &mut problems);
        match fault {
            None => assert!(problems.is_empty(), "{markdown:?}: {problems:?}"),
            Some(fault) => assert!(
                problems.iter().any(|p| p.contains(fault)),
                "{markdown:?}: expected {fault:?}, got {problems:?}"
            ),
        }
    }
}

/// The chapters of Part I, which every reader starts with.
const PART_ONE: [&str; 4] = [
    "ch01-introduction.md",
    "ch02-signals.md",
    "ch03-sockets.md",
    "ch04-pipes.md",
];

/// Part I tells a story: what the original does, what it gets wrong, the
/// port. How often a race struck on the book's machine, run after run and
/// load average after load average, is evidence for the curious, and it
/// goes in an aside: in the running text it buried the one rule each of
/// those paragraphs had to say (issue 19's reader pass).
#[test]
fn part_one_keeps_its_measurement_counts_in_asides() {
    let src = crate::support::workspace_root().join("src");
    let mut problems = Vec::new();
    for chapter in PART_ONE {
        let text = crate::support::read(&src.join(chapter));
        problems.extend(counts_outside_asides(chapter, &text));
    }
    assert!(
        problems.is_empty(),
        "{} measurement(s) or bits of the book's history in Part I's \
         running text; move them into an aside and keep the rule in the \
         text:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// What marks a line as a report on the book's own runs rather than as
/// the story: the machine's load average, or an earlier version of a
/// listing or a count.
const MEASUREMENT_MARKS: [&str; 2] = ["load average", "earlier version"];

/// The lines of `text`, outside asides, code blocks and figures, that
/// report a measurement or the book's own history (`MEASUREMENT_MARKS`).
fn counts_outside_asides(name: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (mut fence, mut aside, mut figure) = (false, false, false);
    // The paragraph of running text being read, joined into one line,
    // since a mark may be broken across two: its first line and its words.
    let mut paragraph: Option<(usize, String)> = None;
    for (i, line) in text.lines().chain([""]).enumerate() {
        let trimmed = line.trim_start();
        let structure = trimmed.is_empty()
            || trimmed.starts_with("```")
            || trimmed.starts_with("~~~")
            || trimmed.starts_with("<div")
            || trimmed.starts_with("</div>")
            || trimmed.starts_with("<figure")
            || trimmed.starts_with("</figure>");
        if (structure || fence || aside || figure)
            && let Some((start, words)) = paragraph.take()
            && is_marked(&words)
        {
            problems.push(format!("src/{name}:{}: {words}", start + 1));
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = !fence;
        } else if fence {
            // Code: never running text.
        } else if line == "<div class=\"aside\">" {
            aside = true;
        } else if aside && trimmed.starts_with("</div>") {
            aside = false;
        } else if trimmed.starts_with("<figure") {
            figure = true;
        } else if trimmed.starts_with("</figure>") {
            figure = false;
        } else if !structure && !aside && !figure {
            let (_, words) = paragraph.get_or_insert((i, String::new()));
            words.push(' ');
            words.push_str(trimmed);
        }
    }
    problems
}

/// True if `text`, code spans aside, carries one of `MEASUREMENT_MARKS`.
fn is_marked(text: &str) -> bool {
    let words = without_code_spans(text).to_lowercase();
    MEASUREMENT_MARKS.iter().any(|mark| words.contains(mark))
}

#[test]
fn counts_outside_asides_are_caught() {
    let inside = "Rule.\n\n<div class=\"aside\">\n\n**How often.** At load \
                  averages of 8, 3 of 12.\n\n</div>\n";
    assert!(counts_outside_asides("f", inside).is_empty());
    let outside = "Rule. At a load average of 8, it struck 3 of 12 times.\n";
    assert_eq!(counts_outside_asides("f", outside).len(), 1);
    let history = "A loop that spun: an earlier\nversion of Listing 3-3 \
                   did.\n";
    assert_eq!(counts_outside_asides("f", history).len(), 1);
    let code = "```console\n$ cat /proc/loadavg # load average\n```\n";
    assert!(counts_outside_asides("f", code).is_empty());
}

/// First sentences after an aside that say "also" or "too" of something
/// the running text before the aside said, each with what that is. Any
/// other such sentence leans on the aside, which a reader may have
/// skipped.
const LEANS_ON_THE_TEXT_BEFORE: &[(&str, &str, &str)] = &[
    (
        "ch03-sockets.md",
        "The client half-closes too",
        "the server's half-close, in the steps before",
    ),
    (
        "ch16-unix.md",
        "A lock is also something",
        "the lock's other dangers, before",
    ),
    (
        "ch16-unix.md",
        "A server should also remove",
        "the lock file it must keep, before",
    ),
    (
        "ch25-orphans.md",
        "**`pipe`.** The children end",
        "the ends of the other modes, before",
    ),
    (
        "ch30-async-sockets.md",
        "And once three quarters",
        "the evictions of the paragraph before",
    ),
];

/// Asides hold the detail a reader may skip, so the running text after
/// one must stand without it: a first sentence that says "also" or "too"
/// reads, to a reader who skipped the aside, as "as well as" something
/// they never read. (Chapter 6 said "Every listing in this chapter also
/// blocks its signals" right after the aside that holds the start-up
/// rule: reader pass HA-2.)
#[test]
fn the_text_after_an_aside_stands_without_it() {
    let mut problems = Vec::new();
    for (file, text) in markdown_sources() {
        let name = from_root(&file);
        let short = name.rsplit('/').next().unwrap_or(&name).to_string();
        for sentence in first_sentences_after_asides(&text) {
            let allowed =
                LEANS_ON_THE_TEXT_BEFORE.iter().any(|(f, start, _)| {
                    *f == short && sentence.starts_with(start)
                });
            if leans_back(&sentence) && !allowed {
                problems.push(format!("{name}: {sentence:?}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "running text that leans on the aside before it:\n{}",
        problems.join("\n")
    );
}

/// True if `sentence` says "also" or "too".
fn leans_back(sentence: &str) -> bool {
    sentence
        .split(|c: char| !c.is_alphanumeric())
        .any(|word| word.eq_ignore_ascii_case("also") || word == "too")
}

/// The first sentence of the paragraph after each aside of `text`, past
/// blank lines and "Checked by" lines, joined into one line.
fn first_sentences_after_asides(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut found, mut fence, mut aside) = (Vec::new(), false, false);
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        }
        if fence {
            continue;
        }
        if *line == "<div class=\"aside\">" {
            aside = true;
        } else if aside && line.starts_with("</div>") {
            aside = false;
            let paragraph: Vec<&str> = lines[i + 1..]
                .iter()
                .skip_while(|l| {
                    l.trim().is_empty() || l.starts_with("<p class=\"checked\"")
                })
                .take_while(|l| !l.trim().is_empty())
                .copied()
                .collect();
            let joined = paragraph.join(" ");
            let end = joined
                .find(". ")
                .or_else(|| joined.find(": "))
                .map_or(joined.len(), |at| at + 1);
            found.push(joined[..end].to_string());
        }
    }
    found
}

#[test]
fn text_that_leans_on_an_aside_is_found() {
    let text = "Rule.\n\n<div class=\"aside\">\n\n**T.** Detail.\n\n</div>\n\n\
                Every listing also does it. More.\n";
    assert_eq!(
        first_sentences_after_asides(text),
        ["Every listing also does it."]
    );
    assert!(leans_back("Every listing also does it."));
    assert!(leans_back("The client half-closes too:"));
    assert!(!leans_back("Every listing blocks its signals first."));
    assert!(!leans_back("A tool, a total."));
}
