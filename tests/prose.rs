//! What the prose says about the rest of the book must be true: the tests
//! it names exist, and where it promises more later it links there.

use std::ops::Range;
use std::sync::LazyLock;

use mdbook_markdown::pulldown_cmark::{Event, Tag, TagEnd};
use mdbook_markdown::{MarkdownOptions, new_cmark_parser};
use regex::Regex;

use crate::support::{
    files_with_extension, from_root, line_of, markdown_sources, read,
    workspace_root,
};

/// The chapters point readers at tests by name (`alarm_rings_…`), so a
/// renamed or deleted test would leave the prose pointing at nothing.
/// Every backticked snake_case name of four words or more must be a test
/// function in `listings/tests/` or `tests/`.
#[test]
fn every_test_named_in_the_prose_exists() {
    let root = workspace_root();
    let name = Regex::new(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+){3,})`").unwrap();
    let mut sources = String::new();
    for dir in ["listings/tests", "tests"] {
        for file in files_with_extension(&root.join(dir), "rs") {
            sources.push_str(&read(&file));
        }
    }
    let mut problems = Vec::new();
    for (file, text) in markdown_sources() {
        for cap in name.captures_iter(&text) {
            let test = &cap[1];
            if !sources.contains(&format!("fn {test}()")) {
                let line = line_of(&text, cap.get(0).unwrap().start());
                problems.push(format!(
                    "{}:{line}: no test named `{test}`",
                    from_root(&file)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
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
