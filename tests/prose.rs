//! What the prose says about the rest of the book must be true: the tests
//! it names exist, and where it promises more later it links there.

use std::ops::Range;
use std::sync::LazyLock;

use mdbook_markdown::pulldown_cmark::{Event, Tag, TagEnd};
use mdbook_markdown::{MarkdownOptions, new_cmark_parser};
use regex::Regex;

use crate::layout::listing_bins;
use crate::support::{
    files_with_extension, from_root, line_of, markdown_sources, read,
    workspace_root,
};

/// How a chapter cites the tests behind its claims: a paragraph of its
/// own, after the claim, that names each test by its full name (module and
/// function, as `cargo test` takes it), with "Checked by" linking to the
/// appendix that says how to run one.
const CHECKED_BY: &str = r#"<p class="checked"><a href="appendix-testing.html#running-one-test">Checked by</a>: "#;

/// Every test module's source, by module name (`ch02_signals`, `links`).
fn test_modules() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut modules = Vec::new();
    for dir in ["listings/tests", "tests"] {
        for file in files_with_extension(&root.join(dir), "rs") {
            let module =
                file.file_stem().unwrap().to_string_lossy().into_owned();
            modules.push((module, read(&file)));
        }
    }
    modules
}

/// A backticked snake_case name of four words or more: how the running
/// text used to quote a test.
static QUOTED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+){3,})`").unwrap()
});

/// A "Checked by" line, and the full names in it.
static CHECKED_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?m)^<p class="checked">.*$"#).unwrap());
static FULL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<code>([a-z0-9_]+)::([a-z0-9_]+)</code>").unwrap()
});

/// The problems of one chapter's citations: a "Checked by" line not in the
/// one form, a name in it that is no test of the module it names, and a
/// name quoted in running text (a test's, which belongs in a "Checked by"
/// line, or nobody's, a test renamed away).
fn citation_problems(
    file: &str,
    text: &str,
    modules: &[(String, String)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for line in CHECKED_LINE.find_iter(text) {
        let at = line_of(text, line.start());
        let rest = line.as_str().strip_prefix(CHECKED_BY);
        let well_formed = rest.is_some_and(|rest| {
            rest.ends_with(".</p>")
                && FULL_NAME
                    .replace_all(rest, "")
                    .trim_end_matches(".</p>")
                    .split(", ")
                    .all(|gap| gap.is_empty() || gap == "and" || gap == "and ")
        });
        if !well_formed {
            problems.push(format!(
                "{file}:{at}: a \"Checked by\" line is one line: {CHECKED_BY}<code>module::test</code>, <code>…</code>.</p>"
            ));
        }
        let names: Vec<_> = FULL_NAME.captures_iter(line.as_str()).collect();
        if names.is_empty() {
            problems.push(format!(
                "{file}:{at}: a \"Checked by\" line names no test"
            ));
        }
        for cap in names {
            let (module, test) = (&cap[1], &cap[2]);
            let found = modules.iter().any(|(m, source)| {
                m == module && source.contains(&format!("fn {test}()"))
            });
            if !found {
                problems
                    .push(format!("{file}:{at}: no test `{module}::{test}`"));
            }
        }
    }
    for cap in QUOTED_NAME.captures_iter(text) {
        let name = &cap[1];
        let at = line_of(text, cap.get(0).unwrap().start());
        let is_test = modules
            .iter()
            .any(|(_, source)| source.contains(&format!("fn {name}()")));
        if !is_test {
            problems.push(format!("{file}:{at}: no test named `{name}`"));
        } else {
            problems.push(format!(
                "{file}:{at}: `{name}` is a test: say in words what it shows, and name it in a \"Checked by\" line"
            ));
        }
    }
    problems
}

/// The chapters point readers at the tests behind their claims, so a
/// renamed or deleted test would leave the prose pointing at nothing, and
/// a test's name in the middle of a sentence reads like a log, not a book.
/// Every test a "Checked by" line names must exist in the module it names;
/// no running text quotes a test's name.
#[test]
fn every_test_named_in_the_prose_exists() {
    let modules = test_modules();
    let mut problems = Vec::new();
    for (path, text) in markdown_sources() {
        problems.extend(citation_problems(&from_root(&path), &text, &modules));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A listing that carries tests of its own (`test = true` in
/// `listings/Cargo.toml`) is run by none of the commands the book gives for
/// its other tests, `cargo test -p listings --test listings NAME`: the
/// prose that says so must give the one that does, with the binary's name.
#[test]
fn every_listing_with_tests_inside_says_how_to_run_them() {
    // Lines wrap anywhere, inside inline code too.
    let prose: String = markdown_sources()
        .iter()
        .flat_map(|(_, text)| text.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ");
    let with_tests: Vec<String> = listing_bins()
        .into_iter()
        .filter(|bin| bin.test)
        .map(|bin| bin.name)
        .collect();
    assert!(
        !with_tests.is_empty(),
        "no listing with tests of its own: is `test = true` still how \
         listings/Cargo.toml marks them?"
    );
    let missing: Vec<String> = with_tests
        .iter()
        .map(|bin| format!("cargo test -p listings --bin {bin}"))
        .filter(|command| !prose.contains(&format!("`{command}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "no chapter gives the command that runs these listings' own \
         tests:\n{}",
        missing.join("\n")
    );
}

/// The check above catches each way a citation goes wrong.
#[test]
fn citation_problems_are_caught() {
    let modules = vec![(
        "ch02_signals".to_string(),
        "#[test]\nfn alarm_rings_after_five_seconds() {}".to_string(),
    )];
    let good = format!(
        "{CHECKED_BY}<code>ch02_signals::alarm_rings_after_five_seconds</code>.</p>\n"
    );
    assert_eq!(
        citation_problems("f", &good, &modules),
        Vec::<String>::new()
    );
    let two = format!(
        "{CHECKED_BY}<code>ch02_signals::alarm_rings_after_five_seconds</code>, <code>ch02_signals::alarm_rings_after_five_seconds</code>.</p>\n"
    );
    assert_eq!(citation_problems("f", &two, &modules), Vec::<String>::new());
    let cases = [
        // A test that does not exist, or lives in another module.
        format!("{CHECKED_BY}<code>ch02_signals::alarm_never_rings_at_all</code>.</p>\n"),
        format!("{CHECKED_BY}<code>ch03_sockets::alarm_rings_after_five_seconds</code>.</p>\n"),
        // Not the one form: no link, words between names, no test at all.
        "<p class=\"checked\">Checked by <code>ch02_signals::alarm_rings_after_five_seconds</code>.</p>\n".to_string(),
        format!("{CHECKED_BY}<code>ch02_signals::alarm_rings_after_five_seconds</code> shows it.</p>\n"),
        format!("{CHECKED_BY}nothing.</p>\n"),
        // A test's name in running text, and a name that is no test's.
        "The alarm rings (`alarm_rings_after_five_seconds`).\n".to_string(),
        "See `a_test_renamed_long_ago`.\n".to_string(),
    ];
    for case in &cases {
        assert!(
            !citation_problems("f", case, &modules).is_empty(),
            "not caught: {case}"
        );
    }
}

/// A "Checked by" line sits under the paragraph whose claim it backs. Two
/// in a row mean that one has left its paragraph: the paragraph above then
/// seems to cite a test about something else, and the one it belonged to
/// cites none (Listing 12-4's `SIGCHLD` paragraph lost its line this way).
#[test]
fn every_checked_by_line_follows_a_paragraph_of_its_own() {
    let mut problems = Vec::new();
    for (path, text) in markdown_sources() {
        problems.extend(stacked_citations(&from_root(&path), &text));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The "Checked by" lines of `text` that follow another with nothing but
/// blank lines between, each as `file:line`.
fn stacked_citations(file: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut after_citation = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with(CHECKED_BY) {
            if after_citation {
                problems.push(format!(
                    "{file}:{}: a second \"Checked by\" line in a row: put \
                     it under the paragraph whose claim its tests check",
                    i + 1
                ));
            }
            after_citation = true;
        } else if !line.trim().is_empty() {
            after_citation = false;
        }
    }
    problems
}

#[test]
fn stacked_citations_are_caught() {
    let line = format!("{CHECKED_BY}<code>m::t</code>.</p>");
    let apart = format!("A claim.\n\n{line}\n\nAnother.\n\n{line}\n");
    assert!(stacked_citations("f", &apart).is_empty());
    let stacked = format!("A claim.\n\n{line}\n\n{line}\n");
    assert_eq!(
        stacked_citations("f", &stacked),
        [
            "f:5: a second \"Checked by\" line in a row: put it under the paragraph whose claim its tests check"
        ]
    );
}

/// What authors write when they promise more later in the book. A promise
/// of "a later chapter" with no link is a promise nobody checks: the
/// chapter may never come, or may come under another name. Case does not
/// matter; any run of spaces or a line break may stand between words. A
/// "part" followed by "of" is part of something else than the book ("the
/// next part of the listing"): see [`unlinked_forward_references`].
static FORWARD_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        \b(?:
            # a later chapter, the next part, later chapters, the
            # following chapter, a future appendix
            (?:(?:a|an|the|some)\s+)?
            (?:later|future|coming|upcoming|forthcoming|subsequent
              |following|next)
            \s+(?:chapter|part|appendix|volume)s?
            (?:\s+of\s+(?:the|this)\s+book)?
          # later in the book, further on in this part
          | (?:later|later\s+on|further\s+on)\s+in\s+(?:the|this)\s+
            (?:book|part|text)
          # a chapter of its own, its own chapter
          | (?:chapter|part)s?\s+of\s+(?:its|their)\s+own
          | (?:its|their)\s+own\s+(?:chapter|part)s?
          # a subject of its own (for a later chapter), a topic for
          # another chapter, a story for another day
          | (?:a\s+)?(?:subject|topic|story|matter|discussion)s?\s+
            (?:of|for|in)\s+(?:its|their)\s+own
            (?:\s+(?:for|in)\s+(?:another|a\s+later|a\s+future)\s+
              (?:chapter|part))?
          | (?:for|in)\s+(?:another|a\s+later|a\s+future|a\s+separate)
            \s+(?:chapter|part|day|time)
            (?:\s+of\s+(?:the|this)\s+book)?
          | another\s+chapter
          # we will come back to this, we'll return to it
          | (?:we['’]ll|we\s+will|we\s+shall|i['’]ll|i\s+will)\s+
            (?:come\s+back|return|get\s+back|revisit)
          # covered later, more on this later
          | (?:covered|discussed|explained|described|treated|addressed
              |revisited|explored|dealt\s+with)\s+later
          | more\s+(?:on|about)\s+(?:this|that|it|these|those)\s+later
        )\b",
    )
    .unwrap()
});

/// A chapter or listing named by number: `Chapter 7`, `Listing 7-2`. It
/// points forward when the number is above the current chapter's.
static NUMBERED_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:chapter|listing)\s+(\d+)(?:-\d+)?\b").unwrap()
});

/// Every promise of more later in the book (see [`FORWARD_REFERENCE`]),
/// and every mention of a later chapter or listing by number, must have a
/// link within the book in the same sentence, so that readers can follow
/// it and the link check holds it to a page that exists.
#[test]
fn every_forward_reference_links_where_it_points() {
    let mut problems = Vec::new();
    for (file, text) in markdown_sources() {
        // chNN-topic.md is chapter NN; other pages come after them all.
        let chapter: Option<u32> = file
            .file_name()
            .and_then(|name| name.to_str()?.strip_prefix("ch")?.get(..2))
            .and_then(|number| number.parse().ok());
        for (line, phrase) in unlinked_forward_references(&text, chapter) {
            problems.push(format!(
                "{}:{line}: \"{phrase}\" points later in the book, but its \
                 sentence has no link to where: link the chapter or section \
                 it means, or drop the promise",
                from_root(&file),
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} forward reference(s) without a link:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The phrases the test above finds, on made-up prose: what it must flag
/// and what it must let pass.
#[test]
fn forward_references_are_recognised_in_their_many_phrasings() {
    let flagged = [
        "A later chapter covers framing.",
        "Framing is a subject of its own for a later\nchapter.",
        "The NEXT chapter fixes it.",
        "More on this later.",
        "We'll come back to `SIGPIPE`.",
        "It deserves a chapter of its own.",
        "Later in the book, we fix it.",
        "It is covered later, in the following chapters.",
        "Chapter 9 shows how.",
        "See [the docs](https://docs.rs/nix/) and a later part.",
        "A later chapter covers it. See [Chapter 9](ch09-framing.md).",
        "The next part covers sockets.",
        "A later part of the book covers sockets.",
        "It is a subject for another chapter.",
    ];
    for text in flagged {
        assert_ne!(
            unlinked_forward_references(text, Some(4)),
            [],
            "not flagged: {text:?}"
        );
    }
    let passed = [
        "[A later chapter](ch09-framing.md) covers framing.",
        "The next section shows why.",
        "As Chapter 2 showed, and Listing 4-1 shows, it works.",
        "It returns later, e.g. after the alarm.",
        "```text\na later chapter\n```",
        "The handler runs later, between two bytecodes.",
        "The next part of the listing reads the pipe.",
        "In another part of the program, the child waits.",
        "Later in this part of the code, it closes the pipe.",
    ];
    for text in passed {
        let found = unlinked_forward_references(text, Some(4));
        assert_eq!(found, [], "flagged: {text:?}");
    }
    // Only the sentence with the promise counts, and its line is named.
    assert_eq!(
        unlinked_forward_references(
            "See [Chapter 2](ch02.md).\nA later\nchapter covers it.",
            Some(4)
        ),
        [(2, "A later chapter".to_string())]
    );
}

/// The (line, phrase) of every promise of more later in `markdown` whose
/// sentence has no link within the book. `chapter` is the number of the
/// chapter `markdown` is, if it is one: only higher numbers point forward.
fn unlinked_forward_references(
    markdown: &str,
    chapter: Option<u32>,
) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for sentence in sentences(markdown) {
        if sentence.links_within_book {
            continue;
        }
        let text = &sentence.text;
        let mut promises: Vec<Range<usize>> = FORWARD_REFERENCE
            .find_iter(text)
            .map(|m| m.range())
            .filter(|m| !is_part_of_something_else(text, m))
            .collect();
        for cap in NUMBERED_REFERENCE.captures_iter(text) {
            let number: u32 = cap[1].parse().unwrap();
            if chapter.is_some_and(|current| number > current) {
                promises.push(cap.get(0).unwrap().range());
            }
        }
        promises.sort_by_key(|promise| promise.start);
        for promise in promises {
            let line = line_of(markdown, sentence.source_offset(promise.start));
            let phrase = text[promise].split_whitespace();
            found.push((line, phrase.collect::<Vec<_>>().join(" ")));
        }
    }
    found
}

/// Whether the phrase at `range` of `text` ends in "part" and goes on with
/// "of": "the next part of the listing" is no part of the book.
fn is_part_of_something_else(text: &str, range: &Range<usize>) -> bool {
    let phrase = text[range.clone()].to_ascii_lowercase();
    let rest = text[range.end..].trim_start().to_ascii_lowercase();
    (phrase.ends_with("part") || phrase.ends_with("parts"))
        && rest.starts_with("of")
        && !rest[2..].starts_with(|c: char| c.is_alphanumeric())
}

/// One sentence of the prose, as readers see it: code blocks, inline code
/// and HTML left out, line breaks turned into spaces.
struct Sentence {
    text: String,
    /// Where pieces of `text` come from in the Markdown source: (offset in
    /// `text`, offset in the source), in order.
    origins: Vec<(usize, usize)>,
    /// Whether a link to a page of the book starts in it.
    links_within_book: bool,
}

impl Sentence {
    /// The offset in the Markdown source of byte `at` of the text.
    fn source_offset(&self, at: usize) -> usize {
        let (start, origin) = self
            .origins
            .iter()
            .take_while(|(start, _)| *start <= at)
            .last()
            .copied()
            .unwrap_or((0, 0));
        origin + (at - start)
    }
}

/// The sentences of a Markdown file, parsed as mdBook parses it. A block
/// (a paragraph, a heading, a list item, a table cell) ends a sentence;
/// inside one, a `.`, `!` or `?` followed by a space does, except after
/// "e.g." and the like.
fn sentences(markdown: &str) -> Vec<Sentence> {
    let mut sentences = Vec::new();
    let mut block = Block::default();
    let mut in_code_block = false;
    let parser = new_cmark_parser(markdown, &MarkdownOptions::default());
    for (event, range) in parser.into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(_)) => {
                block.split_into(&mut sentences);
                in_code_block = true;
            }
            Event::End(TagEnd::CodeBlock) => in_code_block = false,
            _ if in_code_block => {}
            Event::Start(Tag::Link { dest_url, .. })
                if !is_external(&dest_url) =>
            {
                block.links.push(block.text.len());
            }
            Event::Start(
                Tag::Link { .. }
                | Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::Superscript
                | Tag::Subscript
                | Tag::Image { .. },
            )
            | Event::End(
                TagEnd::Emphasis
                | TagEnd::Strong
                | TagEnd::Strikethrough
                | TagEnd::Superscript
                | TagEnd::Subscript
                | TagEnd::Link
                | TagEnd::Image,
            ) => {}
            Event::Start(_) | Event::End(_) => block.split_into(&mut sentences),
            Event::Text(text) => {
                // Escapes and entities make the text shorter than its
                // source; then the piece is placed at its start.
                let exact = text.len() == range.len();
                block.push(&text, range.start, exact);
            }
            // Inline code is not prose, but it stands in the sentence.
            Event::Code(_) => block.push("code", range.start, false),
            Event::SoftBreak | Event::HardBreak => {
                block.push(" ", range.start, false);
            }
            _ => {}
        }
    }
    block.split_into(&mut sentences);
    sentences
}

/// The text of one block of Markdown, gathered until the block ends.
#[derive(Default)]
struct Block {
    text: String,
    /// (offset in `text`, offset in the source, whether the piece from
    /// there on is a verbatim copy of its source)
    pieces: Vec<(usize, usize, bool)>,
    /// Offsets in `text` where a link within the book starts.
    links: Vec<usize>,
}

impl Block {
    fn push(&mut self, text: &str, source: usize, exact: bool) {
        self.pieces.push((self.text.len(), source, exact));
        self.text.push_str(text);
    }

    /// Cuts the block into sentences, appends them to `sentences` and
    /// starts the next block empty.
    fn split_into(&mut self, sentences: &mut Vec<Sentence>) {
        static END: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r#"[.!?]+["'”’)\]]*\s+"#).unwrap());
        static ABBREVIATION: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?i)\b(?:e\.g|i\.e|etc|cf|vs|fig|no)$").unwrap()
        });
        let block = std::mem::take(self);
        let mut cuts = vec![0];
        for end in END.find_iter(&block.text) {
            if !ABBREVIATION.is_match(&block.text[..end.start()]) {
                cuts.push(end.end());
            }
        }
        cuts.push(block.text.len());
        for span in cuts.windows(2) {
            let (start, end) = (span[0], span[1]);
            if block.text[start..end].trim().is_empty() {
                continue;
            }
            let origins = block
                .pieces
                .iter()
                .filter(|(at, _, _)| *at < end)
                .map(|&(at, source, exact)| {
                    // A piece that began before the sentence: its source
                    // offset moves along with the text when it is exact.
                    let skip = start.saturating_sub(at);
                    let source = if exact { source + skip } else { source };
                    (at.max(start) - start, source)
                })
                .collect::<Vec<_>>();
            // Keep only the last piece that began at or before the start.
            let first = origins.iter().rposition(|(at, _)| *at == 0);
            let origins = origins[first.unwrap_or(0)..].to_vec();
            sentences.push(Sentence {
                text: block.text[start..end].to_string(),
                origins,
                links_within_book: block
                    .links
                    .iter()
                    .any(|at| (start..end).contains(at)),
            });
        }
    }
}

/// Whether a link leaves the book: a URL with a scheme, or `//host`.
fn is_external(url: &str) -> bool {
    url.starts_with("//")
        || url.split_once(':').is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
}

/// A `cargo test` command the book shows with `--ignored` runs every
/// ignored test whose full name contains its filter: it must name exactly
/// one, or two tests run at once and their lines mix, and the reader sees
/// output the page does not show.
#[test]
fn every_ignored_test_command_shown_runs_one_test() {
    let ignored = ignored_tests(&test_modules());
    assert!(
        ignored
            .iter()
            .any(|name| name.starts_with("ch05_handlers::")),
        "found no ignored test: is `#[ignore = \"…\"]` still how they are marked?"
    );
    let outputs =
        files_with_extension(&workspace_root().join("listings"), "out")
            .into_iter()
            .map(|path| {
                let text = read(&path);
                (path, text)
            });
    let mut problems = Vec::new();
    // The tests' own comments and messages show such commands too, as do
    // their string constants, split over lines with a `\` at each end.
    let tests =
        files_with_extension(&workspace_root().join("listings/tests"), "rs")
            .into_iter()
            .map(|path| {
                let text = read(&path);
                (path, text)
            });
    for (path, text) in
        markdown_sources().into_iter().chain(outputs).chain(tests)
    {
        problems.extend(commands_running_other_than_one(
            &from_root(&path),
            &text,
            &ignored,
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The full names (`module::function`) of the tests marked `#[ignore]`.
fn ignored_tests(modules: &[(String, String)]) -> Vec<String> {
    static IGNORED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"#\[ignore[^\]]*\]\s*fn ([a-z0-9_]+)").unwrap()
    });
    modules
        .iter()
        .flat_map(|(module, source)| {
            IGNORED
                .captures_iter(source)
                .map(move |name| format!("{module}::{}", &name[1]))
        })
        .collect()
}

/// The shown `cargo test … --ignored` commands of `text` (a console line, a
/// backticked command, a Rust string continued over lines) whose filter
/// matches no ignored test, or more than one.
fn commands_running_other_than_one(
    file: &str,
    text: &str,
    ignored: &[String],
) -> Vec<String> {
    static COMMAND: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"cargo test -p listings --test listings(?:\s|\\\n)+([a-z0-9_:]+)(?:[^`"\n\\]|\\\n\s*|\\[^\n])*?--ignored"#,
        )
        .unwrap()
    });
    COMMAND
        .captures_iter(text)
        .filter_map(|command| {
            let filter = &command[1];
            let runs: Vec<&str> = ignored
                .iter()
                .filter(|name| name.contains(filter))
                .map(String::as_str)
                .collect();
            (runs.len() != 1).then(|| {
                format!(
                    "{file}:{}: `{filter}` runs {} ignored tests ({}): give \
                     the one whose output the page shows by its full name",
                    line_of(text, command.get(0).unwrap().start()),
                    runs.len(),
                    runs.join(", ")
                )
            })
        })
        .collect()
}

/// The check above catches a filter that runs two tests, and one that
/// runs none.
#[test]
fn commands_running_other_than_one_are_caught() {
    let ignored = ignored_tests(&[(
        "ch05_handlers".to_string(),
        "#[test]\n#[ignore = \"wrong\"]\nfn wrong_fails_soon() {}\n\
         #[test]\n#[ignore = \"wrong\"]\nfn wrong_fails_blocked() {}\n"
            .to_string(),
    )]);
    let shown = "$ cargo test -p listings --test listings ch05_handlers::wrong -- --ignored --nocapture\n\
                 $ cargo test -p listings --test listings ch05_handlers::wrong_fails_soon -- --ignored\n\
                 $ cargo test -p listings --test listings ch05_handlers::right -- --ignored\n";
    let problems = commands_running_other_than_one("f", shown, &ignored);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("f:1: `ch05_handlers::wrong` runs 2"));
    assert!(problems[1].starts_with("f:3: `ch05_handlers::right` runs 0"));
}

/// The kernel drops a signal sent to the init of a PID namespace whose
/// action is the default, but not all of them: `SIGKILL` and `SIGSTOP`
/// from an ancestor namespace still act (that is how `docker kill` ends a
/// container), and so does the signal of the init's own fault (Chapter
/// 12's aside). A sentence that says an init ignores or is shielded from
/// every signal names those that still reach it, `SIGKILL` at least, so
/// that a summary cannot drop what the body says.
#[test]
fn a_sentence_that_shields_pid_1_from_every_signal_names_sigkill() {
    static SHIELDED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\b(ignores|drops|shielded|immune)\b.{0,60}\bevery signal\b",
        )
        .unwrap()
    });
    let mut problems = Vec::new();
    for (path, text) in markdown_sources() {
        for block in text.split("\n\n") {
            let block = block.split_whitespace().collect::<Vec<_>>().join(" ");
            for sentence in block.split(". ") {
                let about_init =
                    sentence.contains("PID 1") || sentence.contains("an init");
                if about_init
                    && SHIELDED.is_match(sentence)
                    && !sentence.contains("SIGKILL")
                {
                    problems.push(format!("{}: {sentence}", from_root(&path)));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// ch19's aside on closed standard outputs names the Part IV listings that
/// end quietly, and those with children that die of SIGPIPE instead: the
/// record of both is the conventions test's table (`End::Exits(0)` and
/// `End::Sigpipe` rows), and the aside must name the same listings.
#[test]
fn the_closed_stdout_aside_of_ch19_matches_the_conventions_table() {
    let number_of: std::collections::BTreeMap<String, String> = listing_bins()
        .into_iter()
        .filter_map(|bin| {
            let file = bin.path.rsplit('/').next()?.to_string();
            let (chapter, rest) = file.split_once('-')?;
            let (listing, _) = rest.split_once('-')?;
            let listing: u32 = listing.parse().ok()?;
            Some((bin.name, format!("{chapter}-{listing}")))
        })
        .collect();
    let table = read(&workspace_root().join("listings/tests/conventions.rs"));
    let start = table.find("// Part IV.").expect("Part IV's rows");
    let end = start + table[start..].find("// The benchmarks").unwrap();
    let row = Regex::new(r#"(?s)abuse\(\s*"([a-z0-9-]+)",.*?End::(\w+\(?\d*)"#)
        .unwrap();
    let (mut quiet, mut sigpipe) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for caps in row.captures_iter(&table[start..end]) {
        let number = number_of[&caps[1]].clone();
        match &caps[2] {
            "Exits(0" => quiet.insert(number),
            "Sigpipe" => sigpipe.insert(number),
            _ => false,
        };
    }
    let chapter = read(&workspace_root().join("src/ch19-ends.md"));
    let from = chapter
        .find("**The listings that end quietly on a closed standard output.**")
        .expect("the aside");
    let aside = &chapter[from..from + chapter[from..].find("</div>").unwrap()];
    let split = aside
        .find("die of `SIGPIPE` instead")
        .expect("its SIGPIPE part");
    let stop = aside
        .find("signal leaves no child behind")
        .expect("its end");
    let numbers = Regex::new(r"\b\d{2}-\d+\b").unwrap();
    let named = |text: &str| -> std::collections::BTreeSet<String> {
        numbers
            .find_iter(text)
            .map(|m| m.as_str().to_string())
            .collect()
    };
    assert_eq!(named(&aside[..split]), quiet, "ending quietly");
    let dying = named(&aside[split..stop]);
    assert!(!dying.is_empty() && dying.is_subset(&sigpipe), "{dying:?}");
}

/// The check catches a filter that runs two tests in a test's doc comment
/// and in a Rust string continued over lines, and passes the full name.
#[test]
fn commands_running_other_than_one_are_caught_in_rust_sources() {
    let ignored = ignored_tests(&[(
        "ch05_handlers".to_string(),
        "#[test]\n#[ignore = \"wrong\"]\nfn wrong_fails_soon() {}\n\
         #[test]\n#[ignore = \"wrong\"]\nfn wrong_fails_blocked() {}\n"
            .to_string(),
    )]);
    let source = "/// run it with\n\
                  /// `cargo test -p listings --test listings ch05_handlers::wrong -- --ignored --nocapture`.\n\
                  const RUNS: &str = \"cargo test -p listings --test listings \\\n    \
                  ch05_handlers::wrong -- --ignored \\\n    --nocapture\";\n\
                  const ONE: &str = \"cargo test -p listings --test listings \\\n    \
                  ch05_handlers::wrong_fails_soon -- --ignored\";\n";
    let problems = commands_running_other_than_one("f.rs", source, &ignored);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("f.rs:2: `ch05_handlers::wrong` runs 2"));
    assert!(problems[1].starts_with("f.rs:3: `ch05_handlers::wrong` runs 2"));
}
