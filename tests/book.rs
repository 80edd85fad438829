//! Checks of the book as a whole, the ones `mdbook build` does not make: it
//! exits 0 with a missing include file, an unknown anchor or a broken link
//! (see DESIGN.md, "Tool facts"), so every such drift would reach readers
//! silently without these tests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use book_tests::{
    files_with_extension, from_root, markdown_sources, read, workspace_root,
};
use mdbook_driver::MDBook;
use mdbook_driver::book::BookItem;
use mdbook_driver::builtin_renderers::CmdRenderer;
use regex::Regex;

// ---------------------------------------------------------------------------
// Includes

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
static ANCHOR_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ANCHOR:\s*([\w_-]+)").unwrap());
static ANCHOR_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ANCHOR_END:\s*([\w_-]+)").unwrap());

/// One `{{#include}}` or `{{#rustdoc_include}}` in a Markdown file.
struct Include {
    /// The Markdown file and the line (1-based) the directive is on.
    file: PathBuf,
    line: usize,
    /// The directive as written, for messages.
    text: String,
    /// `include` or `rustdoc_include`.
    kind: String,
    /// The path as written, relative to the Markdown file.
    path: String,
    /// Everything after the first `:`, if there is one.
    spec: Option<String>,
}

impl Include {
    fn target(&self) -> PathBuf {
        normalize(&self.file.parent().unwrap().join(&self.path))
    }

    fn location(&self) -> String {
        format!("{}:{}: `{}`", from_root(&self.file), self.line, self.text)
    }
}

fn includes_in(file: &Path, text: &str) -> Vec<Include> {
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
fn anchor_covers_file(anchor: &str, text: &str) -> bool {
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

// ---------------------------------------------------------------------------
// Links

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

// ---------------------------------------------------------------------------
// mdbook test

#[test]
fn mdbook_test_passes() {
    let root = workspace_root();
    // `mdbook test` passes rustdoc only `-L`, never `--extern`, so the
    // directory must hold exactly one build of each crate a block names
    // (E0464 otherwise). target/debug/deps also holds the builds made for
    // mdbook-driver and skeptic, so the listings get a target dir of their
    // own; and since that one keeps stale builds after a version or feature
    // change, only this build's libraries are linked into a fresh directory.
    let target_dir = root.join("target").join("book-deps");
    let libraries = build_listings(&root, &target_dir);
    let lib_dir = tempfile::tempdir_in(&target_dir).unwrap();
    for library in &libraries {
        let link = lib_dir.path().join(library.file_name().unwrap());
        std::fs::hard_link(library, &link)
            .or_else(|_| std::fs::copy(library, &link).map(drop))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot link {} into {}: {e}",
                    library.display(),
                    lib_dir.path().display()
                )
            });
    }

    let mut book = MDBook::load(&root)
        .unwrap_or_else(|e| panic!("cannot load the book: {e:#}"));
    // rustdoc's own report is printed above this message on failure.
    if let Err(e) = book.test(vec![lib_dir.path().to_str().unwrap()]) {
        panic!(
            "`mdbook test` with the libraries of `cargo build -p listings \
             --target-dir {}` failed: {e:#}",
            target_dir.display()
        );
    }
}

/// Builds the listings crate into `target_dir` and returns the library
/// files (rlibs, and proc-macro dylibs should one appear) of that build,
/// as cargo reports them, fresh or rebuilt.
fn build_listings(root: &Path, target_dir: &Path) -> Vec<PathBuf> {
    static FILENAMES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""filenames":\[([^\]]*)\]"#).unwrap());
    static STRING: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""((?:[^"\\]|\\.)*)""#).unwrap());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "-p", "listings", "--message-format=json"])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.display()));
    assert!(
        output.status.success(),
        "`cargo build -p listings --target-dir {}` failed:\n{}",
        target_dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let libraries: Vec<PathBuf> = stdout
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter_map(|line| FILENAMES.captures(line))
        .flat_map(|names| {
            STRING
                .captures_iter(&names[1])
                .map(|name| PathBuf::from(name[1].replace("\\\\", "\\")))
                .collect::<Vec<_>>()
        })
        .filter(|file| {
            file.extension().is_some_and(|ext| {
                ["rlib", "so", "dylib", "dll"].iter().any(|l| ext == *l)
            })
        })
        .collect();
    assert!(
        !libraries.is_empty(),
        "`cargo build -p listings --message-format=json` reported no \
         libraries:\n{stdout}"
    );
    libraries
}

// ---------------------------------------------------------------------------
// Listings

/// A `[[bin]]` of `listings/Cargo.toml`.
struct Bin {
    name: String,
    /// Relative to `listings/`, as written in Cargo.toml.
    path: String,
}

/// The `[[bin]]` tables of `listings/Cargo.toml`. Only flat `key = "value"`
/// lines are read, which is all the file uses for binaries; a bin without
/// a name or a path is reported as a problem.
fn listing_bins(problems: &mut Vec<String>) -> Vec<Bin> {
    static KEY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"^\s*(name|path)\s*=\s*"([^"]*)"\s*(#.*)?$"#).unwrap()
    });
    let manifest = workspace_root().join("listings").join("Cargo.toml");
    let mut tables: Vec<(usize, Option<String>, Option<String>)> = Vec::new();
    let mut in_bin = false;
    for (n, line) in read(&manifest).lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_bin = trimmed == "[[bin]]";
            if in_bin {
                tables.push((n + 1, None, None));
            }
        } else if in_bin && let Some(cap) = KEY.captures(line) {
            let table = tables.last_mut().unwrap();
            let value = Some(cap[2].to_string());
            match &cap[1] {
                "name" => table.1 = value,
                _ => table.2 = value,
            }
        }
    }
    let mut bins = Vec::new();
    for (line, name, path) in tables {
        match (name, path) {
            (Some(name), Some(path)) => bins.push(Bin { name, path }),
            _ => problems.push(format!(
                "listings/Cargo.toml:{line}: [[bin]] without both \
                 `name = \"...\"` and `path = \"...\"`"
            )),
        }
    }
    assert!(!bins.is_empty(), "no [[bin]] found in listings/Cargo.toml");
    bins
}

#[test]
fn every_listing_is_shown_in_its_chapter_and_whole_in_the_appendix() {
    static LISTING_PATH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?x)
            ^ch(\d\d)-([a-z0-9]+(?:-[a-z0-9]+)*)           # chNN-topic
            /(\d\d)-(\d\d)-([a-z0-9]+(?:-[a-z0-9]+)*)\.rs$ # /NN-MM-name.rs",
        )
        .unwrap()
    });
    let src = workspace_root().join("src");
    let appendix = src.join("appendix-listings.md");
    let appendix_includes = includes_in(&appendix, &read(&appendix));
    let mut problems = Vec::new();
    let mut chapters: BTreeMap<PathBuf, (String, Vec<Include>)> =
        BTreeMap::new();

    for bin in listing_bins(&mut problems) {
        let Some(cap) = LISTING_PATH.captures(&bin.path) else {
            problems.push(format!(
                "listings/Cargo.toml: bin `{}` has path `{}`, not \
                 `chNN-<topic>/NN-MM-{}.rs`",
                bin.name, bin.path, bin.name
            ));
            continue;
        };
        let (dir_number, topic) = (&cap[1], &cap[2]);
        let (number, listing, stem) = (&cap[3], &cap[4], &cap[5]);
        if dir_number != number {
            problems.push(format!(
                "listings/{}: file number {number} is not its directory's \
                 chapter {dir_number}",
                bin.path
            ));
        }
        if stem != bin.name {
            problems.push(format!(
                "listings/{}: bin is named `{}`, so the file should be \
                 `{number}-{listing}-{}.rs`",
                bin.path, bin.name, bin.name
            ));
        }
        let included = workspace_root().join("listings").join(&bin.path);

        let chapter = src.join(format!("ch{dir_number}-{topic}.md"));
        if !chapter.is_file() {
            problems.push(format!(
                "listings/{}: there is no chapter {} to show it",
                bin.path,
                from_root(&chapter)
            ));
        } else {
            let (text, includes) =
                chapters.entry(chapter.clone()).or_insert_with(|| {
                    let text = read(&chapter);
                    let includes = includes_in(&chapter, &text);
                    (text, includes)
                });
            if !includes
                .iter()
                .any(|i| i.kind == "rustdoc_include" && i.target() == included)
            {
                problems.push(format!(
                    "{}: no `{{{{#rustdoc_include ../listings/{}...}}}}`",
                    from_root(&chapter),
                    bin.path
                ));
            }
            let label = format!(
                "Listing {}-{}",
                number.trim_start_matches('0'),
                listing.trim_start_matches('0')
            );
            let label_re =
                Regex::new(&format!(r"{}\b", regex::escape(&label))).unwrap();
            if !label_re.is_match(text) {
                problems.push(format!(
                    "{}: never says `{label}` for listings/{}",
                    from_root(&chapter),
                    bin.path
                ));
            }
        }

        let listing_text = read(&included);
        let has_markers = listing_text
            .lines()
            .any(|l| ANCHOR_START.is_match(l) || ANCHOR_END.is_match(l));
        let (mut whole, mut shows_markers) = (false, false);
        for include in appendix_includes
            .iter()
            .filter(|i| i.kind == "include" && i.target() == included)
        {
            match &include.spec {
                // mdBook strips markers only inside an anchored region, so
                // a plain include would show readers, and their copy
                // button, the chapter's `// ANCHOR:` comments.
                None if has_markers => {
                    shows_markers = true;
                    problems.push(format!(
                        "{}: shows readers the ANCHOR comments of \
                         listings/{}; put one anchor around the whole file \
                         and include that",
                        include.location(),
                        bin.path
                    ));
                }
                None => whole = true,
                Some(anchor) => {
                    whole |= anchor_covers_file(anchor, &listing_text);
                }
            }
        }
        if !whole && !shows_markers {
            problems.push(format!(
                "{}: does not include listings/{} whole (`{{{{#include \
                 ../listings/{}}}}}`, or an anchor around all of it)",
                from_root(&appendix),
                bin.path,
                bin.path
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} listing(s) out of place:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_listing_file_is_a_binary() {
    let listings = workspace_root().join("listings");
    let mut problems = Vec::new();
    let bins: BTreeSet<String> = listing_bins(&mut problems)
        .into_iter()
        .map(|b| b.path)
        .collect();
    let chapter_dirs = std::fs::read_dir(&listings)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && p.file_name().unwrap().to_string_lossy().starts_with("ch")
        });
    for dir in chapter_dirs {
        for file in files_with_extension(&dir, "rs") {
            let relative = file.strip_prefix(&listings).unwrap();
            let relative = relative.to_string_lossy().replace('\\', "/");
            if !bins.contains(&relative) {
                problems.push(format!(
                    "listings/{relative}: not a [[bin]] in \
                     listings/Cargo.toml, so nothing compiles or tests it"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} listing file(s) not built:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

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
    for out in files_with_extension(&listings, "out") {
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

// ---------------------------------------------------------------------------
// Small helpers

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// `path` with `.` and `..` resolved lexically, so that two spellings of a
/// file compare equal without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Tests the prose names

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
