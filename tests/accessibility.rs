//! Accessibility basics a reader meets on every page: headings in order,
//! a text alternative for every picture, and a language on every code
//! block (for highlighting, and for screen readers and search engines
//! that read it). Contrast needs a browser: `.ci/browser-check.py`
//! measures it in every theme.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use mdbook_markdown::pulldown_cmark::{CodeBlockKind, Event, Tag, TagEnd};
use mdbook_markdown::{MarkdownOptions, new_cmark_parser};
use regex::Regex;
use scraper::{ElementRef, Html, Selector};

use crate::includes::includes_in;
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

/// The figures are SVG written inline into the page, so that they take
/// the theme's colours. Each is a picture with a text alternative: `role=
/// "img"` and `aria-labelledby` naming its `<title>` and `<desc>`; it has
/// no blank line, which would end the HTML block in Markdown and turn the
/// rest of the picture into text; its ids are its own; and a chapter shows
/// it inside a `<figure>` with a numbered `<figcaption>`.
#[test]
fn every_figure_is_labelled_and_shown_with_a_caption() {
    let root = Selector::parse("svg").unwrap();
    let with_id = Selector::parse("[id]").unwrap();
    let figures = workspace_root().join("src").join("figures");
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
            let is_figure = svg
                .has_class("figure", scraper::CaseSensitivity::CaseSensitive);
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
        for (file, text) in markdown_sources() {
            for include in includes_in(&file, &text) {
                if include.target() != svg {
                    continue;
                }
                shown = true;
                let lines: Vec<&str> = text.lines().collect();
                let before = lines[..include.line - 1].iter().rev().take(3);
                let after = lines[include.line..].iter().take(3);
                let opened = before.into_iter().any(|l| {
                    l.starts_with("<figure class=\"figure\" id=\"figure-")
                });
                let captioned = after
                    .into_iter()
                    .any(|l| l.starts_with("<figcaption>Figure "));
                if !opened || !captioned {
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
    static CAPTION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?m)^(?:<figcaption>|<p class="caption">)Figure (\d+-\d+):"#,
        )
        .unwrap()
    });
    let mut problems = Vec::new();
    for (file, text) in markdown_sources() {
        let prose: String = text
            .lines()
            .filter(|line| !CAPTION.is_match(line))
            .collect::<Vec<_>>()
            .join("\n");
        for cap in CAPTION.captures_iter(&text) {
            let id = &cap[1];
            let mention = Regex::new(&format!(r"\bFigure {id}\b")).unwrap();
            if !mention.is_match(&prose) {
                problems.push(format!(
                    "{}:{}: no sentence mentions Figure {id}",
                    from_root(&file),
                    line_of(&text, cap.get(0).unwrap().start())
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
    static CAPTION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?m)^(?:<figcaption>|<p class="caption">)Figure (\d+)-(\d+):"#,
        )
        .unwrap()
    });
    static FIGURE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?ms)^<figure class="figure" id="figure-(\d+)-(\d+)">(.*?)^</figure>"#,
        )
        .unwrap()
    });
    static MENTION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\bFigure (\d+)-(\d+)\b").unwrap());
    let mut problems = Vec::new();
    let mut numbered = BTreeSet::new();
    let mut mentions = Vec::new();
    for (file, text) in markdown_sources() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let place =
            |offset| format!("{}:{}", from_root(&file), line_of(&text, offset));
        let chapter: Option<u32> =
            CHAPTER.captures(&name).map(|c| c[1].parse().unwrap());
        let mut next = 1;
        for cap in CAPTION.captures_iter(&text) {
            let (n, m): (u32, u32) =
                (cap[1].parse().unwrap(), cap[2].parse().unwrap());
            let at = place(cap.get(0).unwrap().start());
            if chapter != Some(n) || m != next {
                problems.push(format!(
                    "{at}: Figure {n}-{m} where Figure {}-{next} comes next",
                    chapter.map_or("?".to_string(), |c| c.to_string())
                ));
            }
            numbered.insert((n, m));
            next = m + 1;
        }
        for cap in FIGURE.captures_iter(&text) {
            let caption =
                format!("<figcaption>Figure {}-{}:", &cap[1], &cap[2]);
            if !cap[3].contains(&caption) {
                problems.push(format!(
                    "{}: <figure id=\"figure-{}-{}\"> has no {caption}",
                    place(cap.get(0).unwrap().start()),
                    &cap[1],
                    &cap[2]
                ));
            }
        }
        for line_start in
            text.match_indices('\n').map(|(i, _)| i + 1).chain([0])
        {
            let line = text[line_start..].lines().next().unwrap_or("");
            if CAPTION.is_match(line) {
                continue;
            }
            for cap in MENTION.captures_iter(line) {
                let (n, m): (u32, u32) =
                    (cap[1].parse().unwrap(), cap[2].parse().unwrap());
                mentions.push(((n, m), place(line_start)));
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
