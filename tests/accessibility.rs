//! Accessibility basics a reader meets on every page: headings in order,
//! a text alternative for every picture, and a language on every code
//! block (for highlighting, and for screen readers and search engines
//! that read it). Contrast needs a browser: `.ci/browser-check.py`
//! measures it in every theme.
//!
//! The Markdown is read as mdBook reads it (pulldown-cmark), and the HTML
//! in it as a browser does (scraper, on html5ever): the figure checks see
//! a `<figure>`, its `<figcaption>` and the picture inside it, not lines
//! that look like them. Regular expressions read only prose ("Figure
//! 2-1 shows…") and file names.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::LazyLock;

use mdbook_markdown::pulldown_cmark::{CodeBlockKind, Event, Tag, TagEnd};
use mdbook_markdown::{MarkdownOptions, new_cmark_parser};
use regex::Regex;
use scraper::{CaseSensitivity, ElementRef, Html, Selector};

use crate::includes::{Include, includes_in};
use crate::support::{
    files_with_extension, from_root, line_of, markdown_sources, read,
    workspace_root,
};

/// Each page starts with its one level-1 heading, and no heading skips a
/// level on the way down (an `###` right under a `#` would leave a screen
/// reader's outline with a hole in it).
#[test]
fn headings_start_at_one_and_go_down_one_level_at_a_time() {
    let mut problems = Vec::new();
    for (file, text) in markdown_sources() {
        if file.ends_with("SUMMARY.md") {
            continue;
        }
        let mut previous = 0;
        let parser = new_cmark_parser(&text, &MarkdownOptions::default());
        for (event, range) in parser.into_offset_iter() {
            let Event::Start(Tag::Heading { level, .. }) = event else {
                continue;
            };
            let level = level as usize;
            let line = line_of(&text, range.start);
            let place = format!("{}:{line}", from_root(&file));
            if previous == 0 && level != 1 {
                problems.push(format!("{place}: the first heading is not `#`"));
            } else if previous != 0 && level == 1 {
                problems.push(format!("{place}: a second `#` heading"));
            } else if level > previous + 1 {
                problems.push(format!(
                    "{place}: a level-{level} heading right under level \
                     {previous}"
                ));
            }
            previous = level;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every fenced code block names its language: `rust`, `console`,
/// `toml`, `text`...
#[test]
fn every_code_block_names_its_language() {
    let mut problems = Vec::new();
    for (file, text) in markdown_sources() {
        let parser = new_cmark_parser(&text, &MarkdownOptions::default());
        for (event, range) in parser.into_offset_iter() {
            let Event::Start(Tag::CodeBlock(kind)) = event else {
                continue;
            };
            let language = match &kind {
                CodeBlockKind::Fenced(info) => {
                    info.split([',', ' ']).next().unwrap_or("").to_string()
                }
                CodeBlockKind::Indented => String::new(),
            };
            if language.is_empty() {
                problems.push(format!(
                    "{}:{}: a code block without a language",
                    from_root(&file),
                    line_of(&text, range.start)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `<img>` has alt text, and so has every Markdown image. The
/// Markdown is read as mdBook reads it, and its HTML as a browser does, so
/// that code blocks that show an `<img>` are not pictures.
#[test]
fn every_image_has_alt_text() {
    let img = Selector::parse("img").unwrap();
    let mut problems = Vec::new();
    for (file, text) in markdown_sources() {
        let mut report = |offset: usize| {
            problems.push(format!(
                "{}:{}: an image without alt text",
                from_root(&file),
                line_of(&text, offset)
            ));
        };
        // An HTML block comes a line at a time; a Markdown image's alt
        // text is the text between its start and its end.
        let mut block: Option<(usize, String)> = None;
        let mut image: Option<(usize, String)> = None;
        let parser = new_cmark_parser(&text, &MarkdownOptions::default());
        for (event, range) in parser.into_offset_iter() {
            match event {
                Event::Start(Tag::HtmlBlock) => {
                    block = Some((range.start, String::new()))
                }
                Event::Html(html) => match block.as_mut() {
                    Some((_, lines)) => lines.push_str(&html),
                    None => block = Some((range.start, html.to_string())),
                },
                Event::InlineHtml(html) => {
                    let fragment = Html::parse_fragment(&html);
                    if fragment.select(&img).any(|i| !has_alt(&i)) {
                        report(range.start);
                    }
                }
                Event::End(TagEnd::HtmlBlock) => {
                    if let Some((start, html)) = block.take() {
                        let fragment = Html::parse_fragment(&html);
                        if fragment.select(&img).any(|i| !has_alt(&i)) {
                            report(start);
                        }
                    }
                }
                Event::Start(Tag::Image { .. }) => {
                    image = Some((range.start, String::new()))
                }
                Event::Text(words) | Event::Code(words) => {
                    if let Some((_, alt)) = image.as_mut() {
                        alt.push_str(&words);
                    }
                }
                Event::End(TagEnd::Image) => {
                    if let Some((start, alt)) = image.take()
                        && alt.trim().is_empty()
                    {
                        report(start);
                    }
                }
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Whether an `<img>` has alt text that says something.
fn has_alt(img: &ElementRef) -> bool {
    img.value()
        .attr("alt")
        .is_some_and(|alt| !alt.trim().is_empty())
}

/// The HTML of one Markdown page, read as mdBook reads the Markdown and
/// as a browser reads the HTML.
struct PageHtml {
    file: PathBuf,
    text: String,
    /// Its `{{#include}}`s of figures (SVG files).
    figures: Vec<Include>,
    /// Each HTML block that may hold a caption, parsed alone, with the
    /// bytes of the page it spans.
    blocks: Vec<(Range<usize>, Html)>,
    /// All the page's HTML in one fragment, in order, so that a `<figure>`
    /// opened in one block holds the caption of a later one. Each
    /// `{{#include}}` of a figure sits in it as an `<x-include>` element
    /// whose `data-line` is the line of the directive.
    whole: String,
    /// `whole`, parsed when first asked for.
    parsed: OnceCell<Html>,
}

impl PageHtml {
    fn read(file: PathBuf, text: String) -> PageHtml {
        let figures: Vec<Include> = includes_in(&file, &text)
            .into_iter()
            .filter(|i| i.target().extension().is_some_and(|e| e == "svg"))
            .collect();
        let lines: BTreeSet<usize> = figures.iter().map(|i| i.line).collect();
        let mut marked = BTreeSet::new();
        let mut marker = |line: usize, html: &mut String| {
            if lines.contains(&line) && marked.insert(line) {
                write!(html, "<x-include data-line=\"{line}\"></x-include>")
                    .unwrap();
                true
            } else {
                false
            }
        };
        // The offset each line starts at, to find an event's line at once.
        let starts: Vec<usize> = [0]
            .into_iter()
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut blocks = Vec::new();
        let mut whole = String::new();
        let mut block: Option<(Range<usize>, String)> = None;
        let parser = new_cmark_parser(&text, &MarkdownOptions::default());
        for (event, range) in parser.into_offset_iter() {
            let line = starts.partition_point(|&start| start <= range.start);
            match event {
                Event::Start(Tag::HtmlBlock) => {
                    block = Some((range, String::new()))
                }
                Event::Html(html) => {
                    let into = match block.as_mut() {
                        Some((_, lines)) => lines,
                        None => &mut whole,
                    };
                    // A directive written inside an HTML block is spliced
                    // into it by mdBook.
                    if !marker(line, into) {
                        into.push_str(&html);
                    }
                }
                Event::InlineHtml(html) => whole.push_str(&html),
                Event::Text(_) => {
                    marker(line, &mut whole);
                }
                Event::End(TagEnd::HtmlBlock) => {
                    if let Some((range, html)) = block.take() {
                        whole.push_str(&html);
                        // Only a block with a caption is read alone.
                        if html.contains("caption") {
                            blocks.push((range, Html::parse_fragment(&html)));
                        }
                    }
                }
                _ => {}
            }
        }
        PageHtml {
            file,
            text,
            figures,
            blocks,
            whole,
            parsed: OnceCell::new(),
        }
    }

    /// All the page's HTML, as one fragment.
    fn whole(&self) -> &Html {
        self.parsed
            .get_or_init(|| Html::parse_fragment(&self.whole))
    }

    /// Whether the page shows `include` (one of its `figures`) inside a
    /// `<figure class="figure" id="figure-…">` with a `<figcaption>Figure
    /// N-M: …`.
    fn frames(&self, include: &Include) -> bool {
        static MARKER: LazyLock<Selector> =
            LazyLock::new(|| Selector::parse("x-include").unwrap());
        let line = include.line.to_string();
        let figure = self
            .whole()
            .select(&MARKER)
            .find(|m| m.value().attr("data-line") == Some(&line))
            .and_then(|m| figure_around(&m));
        figure.is_some_and(|figure| {
            let element = figure.value();
            element.has_class("figure", CaseSensitivity::CaseSensitive)
                && element.id().is_some_and(|id| id.starts_with("figure-"))
                && figcaption_of(&figure)
                    .is_some_and(|c| figure_number(&c).is_some())
        })
    }

    /// `file:line` of byte `offset`, for messages.
    fn place(&self, offset: usize) -> String {
        format!("{}:{}", from_root(&self.file), line_of(&self.text, offset))
    }

    /// Its figure captions, `Figure N-M: …` (the `<figcaption>` of a drawn
    /// figure, or the `<p class="caption">` under a plot): N, M and the
    /// bytes of the HTML block that holds the caption.
    fn captions(&self) -> Vec<(u32, u32, Range<usize>)> {
        static CAPTION: LazyLock<Selector> =
            LazyLock::new(|| Selector::parse("figcaption, p.caption").unwrap());
        let mut found = Vec::new();
        for (range, html) in &self.blocks {
            for caption in html.select(&CAPTION) {
                if let Some((n, m)) = figure_number(&caption) {
                    found.push((n, m, range.clone()));
                }
            }
        }
        found
    }
}

/// The pages of the book, read once for the figure checks.
fn pages() -> Vec<PageHtml> {
    markdown_sources()
        .into_iter()
        .map(|(file, text)| PageHtml::read(file, text))
        .collect()
}

/// N and M of a caption whose text starts `Figure N-M:`.
fn figure_number(caption: &ElementRef) -> Option<(u32, u32)> {
    let text = caption.text().collect::<String>();
    let (number, _) =
        text.trim_start().strip_prefix("Figure ")?.split_once(':')?;
    let (n, m) = number.split_once('-')?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

/// The `<figcaption>` of a `<figure>`: the first, among its descendants.
fn figcaption_of<'a>(figure: &ElementRef<'a>) -> Option<ElementRef<'a>> {
    static FIGCAPTION: LazyLock<Selector> =
        LazyLock::new(|| Selector::parse("figcaption").unwrap());
    figure.select(&FIGCAPTION).next()
}

/// The `<figure>` around `element`, if one is.
fn figure_around<'a>(element: &ElementRef<'a>) -> Option<ElementRef<'a>> {
    element
        .ancestors()
        .filter_map(ElementRef::wrap)
        .find(|a| a.value().name() == "figure")
}

/// The figures are SVG written inline into the page, so that they take
/// the theme's colours. Each is a picture with a text alternative: `role=
/// "img"` and `aria-labelledby` naming its `<title>` and `<desc>`; it has
/// no blank line, which would end the HTML block in Markdown and turn the
/// rest of the picture into text; its ids are its own; and a chapter shows
/// it inside a `<figure class="figure" id="figure-N-M">` with a
/// `<figcaption>Figure N-M: …`.
#[test]
fn every_figure_is_labelled_and_shown_with_a_caption() {
    let root = Selector::parse("svg").unwrap();
    let with_id = Selector::parse("[id]").unwrap();
    let figures = workspace_root().join("src").join("figures");
    let pages = pages();
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for svg in files_with_extension(&figures, "svg") {
        let text = read(&svg);
        let name = from_root(&svg);
        if text.lines().any(|line| line.trim().is_empty()) {
            problems.push(format!("{name}: a blank line ends the HTML block"));
        }
        // Read as the browser reads the page it is written into.
        let picture = Html::parse_fragment(&text);
        let labels = picture.select(&root).next().and_then(|svg| {
            let svg = svg.value();
            let is_figure =
                svg.has_class("figure", CaseSensitivity::CaseSensitive);
            (text.starts_with("<svg ")
                && is_figure
                && svg.attr("role") == Some("img"))
            .then(|| svg.attr("aria-labelledby"))
            .flatten()
        });
        match labels {
            None => problems.push(format!(
                "{name}: must start with <svg class=\"figure\" … role=\"img\" \
                 aria-labelledby=\"…\">"
            )),
            Some(labels) => {
                for id in labels.split_whitespace() {
                    let label = picture.select(&with_id).find(|element| {
                        element.value().id() == Some(id)
                            && ["title", "desc"]
                                .contains(&element.value().name())
                            && !element
                                .text()
                                .collect::<String>()
                                .trim()
                                .is_empty()
                    });
                    if label.is_none() {
                        problems.push(format!(
                            "{name}: no non-empty <title> or <desc> with id {id}"
                        ));
                    }
                }
            }
        }
        for element in picture.select(&with_id) {
            let id = element.value().id().unwrap_or_default();
            if !ids.insert(id.to_string()) {
                problems.push(format!("{name}: id {id} is used twice"));
            }
        }
        // Shown in a chapter, inside <figure> … <figcaption>Figure N-M:.
        let mut shown = false;
        for page in &pages {
            for include in &page.figures {
                if include.target() != svg {
                    continue;
                }
                shown = true;
                if !page.frames(include) {
                    problems.push(format!(
                        "{}: {name} is not inside <figure class=\"figure\" \
                         id=\"figure-N-M\"> with a <figcaption>Figure N-M: …",
                        include.location()
                    ));
                }
            }
        }
        if !shown {
            problems.push(format!("{name}: no chapter includes it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every figure is pointed at from the prose of its chapter ("Figure 2-1
/// shows …"), outside its own caption: a figure nobody mentions is met
/// with no word of what to look at in it.
#[test]
fn every_figure_is_mentioned_by_its_chapter() {
    let mut problems = Vec::new();
    for page in pages() {
        let captions = page.captions();
        let mut prose = page.text.clone();
        for (_, _, range) in &captions {
            prose.replace_range(range.clone(), &" ".repeat(range.len()));
        }
        for (n, m, range) in &captions {
            let mention = Regex::new(&format!(r"\bFigure {n}-{m}\b")).unwrap();
            if !mention.is_match(&prose) {
                problems.push(format!(
                    "{}: no sentence mentions Figure {n}-{m}",
                    page.place(range.start)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Figures are numbered per chapter in order of appearance, Figure N-M in
/// chapter N, whether drawn (`<figure id="figure-N-M">` with its
/// `<figcaption>Figure N-M: …`) or plotted (a `<p class="caption">Figure
/// N-M: …` under an included plot); and every "Figure N-M" the prose
/// mentions is one of them. A figure moved to another place or chapter
/// without renumbering, or a mention left behind, fails here.
#[test]
fn figures_are_numbered_in_order_and_every_mention_finds_its_figure() {
    static CHAPTER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^ch(\d\d)-.*\.md$").unwrap());
    static MENTION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\bFigure (\d+)-(\d+)\b").unwrap());
    let drawn = Selector::parse(r#"figure.figure[id^="figure-"]"#).unwrap();
    let mut problems = Vec::new();
    let mut numbered = BTreeSet::new();
    let mut mentions = Vec::new();
    for page in pages() {
        let name = page.file.file_name().unwrap().to_string_lossy();
        let chapter: Option<u32> =
            CHAPTER.captures(&name).map(|c| c[1].parse().unwrap());
        let captions = page.captions();
        let mut next = 1;
        for (n, m, range) in captions.iter().cloned() {
            if chapter != Some(n) || m != next {
                problems.push(format!(
                    "{}: Figure {n}-{m} where Figure {}-{next} comes next",
                    page.place(range.start),
                    chapter.map_or("?".to_string(), |c| c.to_string())
                ));
            }
            numbered.insert((n, m));
            next = m + 1;
        }
        // Only a page with a <figure> has one to check.
        let figures = page.text.contains("<figure").then(|| page.whole());
        for figure in figures.into_iter().flat_map(|w| w.select(&drawn)) {
            let id = figure.value().id().unwrap();
            let number = id.strip_prefix("figure-").unwrap();
            let captioned = figcaption_of(&figure)
                .and_then(|c| figure_number(&c))
                .is_some_and(|(n, m)| format!("{n}-{m}") == number);
            if !captioned {
                let at = page.text.find(&format!("id=\"{id}\"")).unwrap_or(0);
                problems.push(format!(
                    "{}: <figure id=\"{id}\"> has no <figcaption>Figure \
                     {number}:",
                    page.place(at)
                ));
            }
        }
        for line_start in
            page.text.match_indices('\n').map(|(i, _)| i + 1).chain([0])
        {
            if captions.iter().any(|(_, _, r)| r.contains(&line_start)) {
                continue;
            }
            let line = page.text[line_start..].lines().next().unwrap_or("");
            for cap in MENTION.captures_iter(line) {
                let (n, m): (u32, u32) =
                    (cap[1].parse().unwrap(), cap[2].parse().unwrap());
                mentions.push(((n, m), page.place(line_start)));
            }
        }
    }
    for (figure, at) in mentions {
        if !numbered.contains(&figure) {
            problems.push(format!(
                "{at}: mentions Figure {}-{}, which no caption has",
                figure.0, figure.1
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The figure checks read the page's structure, not its lines: a figure
/// is framed only by the `<figure>` around it, with its own caption, and
/// a caption is found wherever its block starts.
#[test]
fn figures_are_read_from_the_structure_of_the_page() {
    let page = |text: &str| {
        PageHtml::read(workspace_root().join("src/ch09-x.md"), text.into())
    };
    let framed = |text: &str| {
        let page = page(text);
        let frames: Vec<bool> =
            page.figures.iter().map(|i| page.frames(i)).collect();
        frames
    };
    let inside = "Figure 9-1 shows it.\n\n\
                  <figure class=\"figure\" id=\"figure-9-1\">\n\n\
                  {{#include figures/a.svg}}\n\n\
                  <figcaption>Figure 9-1: A <code>b</code>.</figcaption>\n\
                  </figure>\n";
    assert_eq!(framed(inside), [true]);
    let caption_outside =
        inside.replace("\n\n<figcaption>", "\n\n</figure>\n<figcaption>");
    assert_eq!(framed(&caption_outside), [false]);
    let no_figure = inside.replace("<figure class=\"figure\"", "<div");
    assert_eq!(framed(&no_figure), [false]);
    let in_a_code_block = format!("```html\n{inside}```\n");
    assert!(page(&in_a_code_block).captions().is_empty());
    let captions: Vec<(u32, u32)> =
        page(inside).captions().iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(captions, [(9, 1)]);
}
