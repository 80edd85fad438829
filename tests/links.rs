//! Every internal link and fragment of the HTML book resolves. mdBook
//! builds a book with broken links without a word.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::LazyLock;

use mdbook_driver::MDBook;
use regex::Regex;

use crate::support::{files_with_extension, normalize, read, workspace_root};

static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"\s(href|src)="([^"]*)""#).unwrap());
static ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"\sid="([^"]*)""#).unwrap());
static BASE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"<base href="([^"]*)""#).unwrap());

#[test]
fn every_internal_link_and_fragment_resolves() {
    let out = tempfile::tempdir().unwrap();
    let mut book = MDBook::load(workspace_root())
        .unwrap_or_else(|e| panic!("cannot load the book: {e:#}"));
    book.config.build.build_dir = out.path().to_path_buf();
    book.build()
        .unwrap_or_else(|e| panic!("cannot build the book: {e:#}"));
    let site = out.path();

    let pages = files_with_extension(site, "html");
    assert!(
        pages.iter().any(|p| p.ends_with("index.html")),
        "the HTML build in {} has no index.html",
        site.display()
    );
    let mut ids: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let html = read(page);
        let page_name = page.strip_prefix(site).unwrap().display();
        let page_dir = page.parent().unwrap();
        // mdBook gives 404.html `<base href="/">` (site-url) so that it
        // works at any depth; its relative links resolve against that.
        let base_dir = match BASE.captures(&html) {
            Some(base) => site.join(base[1].trim_start_matches('/')),
            None => page_dir.to_path_buf(),
        };
        for link in LINK.captures_iter(&html) {
            let attribute = &link[1];
            let url = decode_entities(&link[2]);
            if is_external(&url) {
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
                page.clone()
            } else if let Some(absolute) = address.strip_prefix('/') {
                site.join(percent_decode(absolute))
            } else {
                base_dir.join(percent_decode(address))
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
            let fragment = percent_decode(fragment);
            let target_ids = ids.entry(target.clone()).or_insert_with(|| {
                ID.captures_iter(&read(&target))
                    .map(|c| decode_entities(&c[1]))
                    .collect()
            });
            if !target_ids.contains(&fragment) {
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

fn is_external(url: &str) -> bool {
    const SCHEMES: [&str; 5] =
        ["http:", "https:", "mailto:", "javascript:", "data:"];
    let lower = url.to_ascii_lowercase();
    lower.starts_with("//") || SCHEMES.iter().any(|s| lower.starts_with(s))
}

/// Undoes the escaping HTML attributes need; mdBook writes these entities.
fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `%XX` escapes to bytes, read as UTF-8: ids hold the raw characters.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
