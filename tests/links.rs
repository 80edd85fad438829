//! Every internal link and fragment of the HTML book resolves. mdBook
//! builds a book with broken links without a word.
//!
//! Pages are read as a browser reads them: parsed into a DOM by scraper,
//! on html5ever 0.39, the very parser mdBook's HTML renderer uses. So
//! attribute values arrive with their entities decoded, and text that only
//! looks like markup (in a script, a comment or a code block) is not taken
//! for a link or an id. The browser is one with JavaScript off: mdBook's
//! pages hold the sidebar for such readers, an `<iframe>` of `toc.html`,
//! in `<noscript>`, whose content is only markup when scripting is off.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use html5ever::driver::{self, ParseOpts};
use html5ever::tendril::TendrilSink;
use html5ever::tree_builder::TreeBuilderOpts;
use mdbook_driver::MDBook;
use percent_encoding::percent_decode_str;
use scraper::{Html, HtmlTreeSink};

use crate::support::{files_with_extension, normalize, read, workspace_root};

/// What the link check needs of one HTML page.
struct Page {
    /// The `href` and `src` attributes of its elements, in document order,
    /// as (attribute name, value).
    links: Vec<(&'static str, String)>,
    /// The `id` of every element.
    ids: HashSet<String>,
    /// The `href` of its first `<base href>`, if it has one.
    base: Option<String>,
}

impl Page {
    fn parse(html: &str) -> Page {
        let options = ParseOpts {
            tree_builder: TreeBuilderOpts {
                scripting_enabled: false,
                ..TreeBuilderOpts::default()
            },
            ..ParseOpts::default()
        };
        let sink = HtmlTreeSink::new(Html::new_document());
        let document = driver::parse_document(sink, options).one(html);
        let mut page = Page {
            links: Vec::new(),
            ids: HashSet::new(),
            base: None,
        };
        for element in document.root_element().descendent_elements() {
            let element = element.value();
            if let Some(id) = element.id() {
                page.ids.insert(id.to_string());
            }
            for attribute in ["href", "src"] {
                if let Some(url) = element.attr(attribute) {
                    page.links.push((attribute, url.to_string()));
                }
            }
            if element.name() == "base" && page.base.is_none() {
                page.base = element.attr("href").map(str::to_string);
            }
        }
        page
    }
}

#[test]
fn every_internal_link_and_fragment_resolves() {
    let out = tempfile::tempdir().unwrap();
    let mut book = MDBook::load(workspace_root())
        .unwrap_or_else(|e| panic!("cannot load the book: {e:#}"));
    book.config.build.build_dir = out.path().to_path_buf();
    // Where the book is published (book.toml's `site-url`): an absolute
    // link into the book starts with it.
    let site_url = book
        .config
        .html_config()
        .and_then(|html| html.site_url)
        .unwrap_or_else(|| "/".to_string());
    book.build()
        .unwrap_or_else(|e| panic!("cannot build the book: {e:#}"));
    let site = out.path();
    let in_site = |absolute: &str| {
        let path = absolute
            .strip_prefix(site_url.as_str())
            .or_else(|| absolute.strip_prefix('/'))
            .unwrap_or(absolute);
        site.join(percent_decoded(path))
    };

    let pages: BTreeMap<PathBuf, Page> = files_with_extension(site, "html")
        .into_iter()
        .map(|path| {
            let page = Page::parse(&read(&path));
            (path, page)
        })
        .collect();
    assert!(
        pages.keys().any(|p| p.ends_with("index.html")),
        "the HTML build in {} has no index.html",
        site.display()
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, page) in &pages {
        let page_name = path.strip_prefix(site).unwrap().display();
        // mdBook gives 404.html `<base href="SITE-URL">` so that it works
        // at any depth; its relative links resolve against that.
        let base_dir = match &page.base {
            Some(base) => in_site(base),
            None => path.parent().unwrap().to_path_buf(),
        };
        for (attribute, url) in &page.links {
            if is_external(url) {
                continue;
            }
            checked += 1;
            let (address, fragment) = match url.split_once('#') {
                Some((address, fragment)) => (address, Some(fragment)),
                None => (url.as_str(), None),
            };
            let address = address.split('?').next().unwrap();
            let target = if address.is_empty() {
                // A bare `#fragment` is checked against the page itself,
                // even under `<base>`: there a browser would look in the
                // site's index page, but the only such links are the
                // heading self-links mdBook puts on its own 404 page.
                path.clone()
            } else if address.starts_with('/') {
                in_site(address)
            } else {
                base_dir.join(percent_decoded(address))
            };
            let mut target = normalize(&target);
            if target.is_dir() {
                target.push("index.html");
            }
            if !target.starts_with(site) || !target.is_file() {
                problems.push(format!(
                    "{page_name}: {attribute}=\"{url}\": no such file"
                ));
                continue;
            }
            let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
                continue;
            };
            let fragment = percent_decoded(fragment);
            if !has_id(&pages, &target, &fragment) {
                problems.push(format!(
                    "{page_name}: {attribute}=\"{url}\": {} has no \
                     id=\"{fragment}\"",
                    target.strip_prefix(site).unwrap().display()
                ));
            }
        }
    }
    // mdBook writes each image twice (for its zoom), so one broken image
    // would be reported twice in a row.
    problems.dedup();
    assert!(
        checked > 0,
        "found no internal links at all in the HTML book"
    );
    assert!(
        problems.is_empty(),
        "{} broken link(s) in the HTML book:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Whether the page at `target` has an element with the id `fragment`:
/// a page of the book, parsed already, or any other file a link points
/// into with a fragment.
fn has_id(pages: &BTreeMap<PathBuf, Page>, target: &Path, id: &str) -> bool {
    match pages.get(target) {
        Some(page) => page.ids.contains(id),
        None => Page::parse(&read(target)).ids.contains(id),
    }
}

fn is_external(url: &str) -> bool {
    const SCHEMES: [&str; 5] =
        ["http:", "https:", "mailto:", "javascript:", "data:"];
    let lower = url.to_ascii_lowercase();
    lower.starts_with("//") || SCHEMES.iter().any(|s| lower.starts_with(s))
}

/// `%XX` escapes to bytes, read as UTF-8: ids hold the raw characters.
fn percent_decoded(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}
