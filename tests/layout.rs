//! Where listings live and how they are numbered: every file under
//! `listings/chNN-*/` is a binary of the listings crate, named after its
//! file, shown in its chapter as Listing N-M and whole in the appendix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;

use crate::includes::{
    ANCHOR_END, ANCHOR_START, Include, anchor_covers_file, includes_in,
};
use crate::support::{
    files_with_extension, from_root, read, workspace_package, workspace_root,
};

/// A `[[bin]]` of `listings/Cargo.toml`.
pub struct Bin {
    pub name: String,
    /// Relative to `listings/`, as written in Cargo.toml.
    pub path: String,
    /// Whether `cargo test` builds its own tests (`test = true`).
    pub test: bool,
}

/// The binaries of the listings crate, as Cargo reads its manifest: the
/// one reading of `listings/Cargo.toml` that every check needing their
/// names or paths goes through.
pub fn listing_bins() -> Vec<Bin> {
    let listings = workspace_root().join("listings");
    let package = workspace_package("listings");
    let bins: Vec<Bin> = package["targets"]
        .as_array()
        .expect("cargo metadata lists targets")
        .iter()
        .filter(|target| target["kind"] == serde_json::json!(["bin"]))
        .map(|target| {
            let name = target["name"].as_str().expect("a name").to_string();
            let path = PathBuf::from(target["src_path"].as_str().unwrap());
            let path = path.strip_prefix(&listings).unwrap_or(&path);
            let path = path.to_string_lossy().replace('\\', "/");
            let test = target["test"] == serde_json::json!(true);
            Bin { name, path, test }
        })
        .collect();
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

    for bin in listing_bins() {
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
    let bins: BTreeSet<String> =
        listing_bins().into_iter().map(|b| b.path).collect();
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

/// The parts of the book, as the table of contents numbers them: `Part I`
/// to `Part VI`, in order. Chapters that say "Part III's servers" must
/// find it there, in the sidebar, where readers look.
#[test]
fn the_parts_are_numbered_in_the_table_of_contents() {
    const NUMERALS: [&str; 10] =
        ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"];
    static PART_TITLE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?m)^# (?:Part ([IVX]+): \S.*|(.*))$").unwrap()
    });
    static PART_NAMED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\bParts? ([IVX]+)\b").unwrap());
    let summary = read(&workspace_root().join("src").join("SUMMARY.md"));
    let mut problems = Vec::new();
    let mut parts = Vec::new();
    for cap in PART_TITLE.captures_iter(&summary) {
        match (cap.get(1), cap.get(2)) {
            (Some(numeral), _) => parts.push(numeral.as_str().to_string()),
            (None, Some(title)) if title.as_str() != "Summary" => problems
                .push(format!("a part without a number: # {}", title.as_str())),
            _ => {}
        }
    }
    let expected: Vec<&str> = NUMERALS[..parts.len()].to_vec();
    if parts != expected {
        problems.push(format!("parts {parts:?}, expected {expected:?}"));
    }
    for file in files_with_extension(&workspace_root().join("src"), "md") {
        let text = read(&file);
        for cap in PART_NAMED.captures_iter(&text) {
            if !parts.iter().any(|p| *p == cap[1]) {
                problems.push(format!(
                    "{}: names Part {}, which the table of contents lacks",
                    from_root(&file),
                    &cap[1]
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The chapters a chapter's test module (`chNN_topic`, named `file`)
/// borrows from, as `crate::chMM_…` paths in `text`, other than itself.
fn borrowed_chapters(file: &str, text: &str) -> BTreeSet<String> {
    static PATH: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"crate::(ch\d\d_\w+)").unwrap());
    PATH.captures_iter(text)
        .map(|c| c[1].to_string())
        .filter(|other| other != file)
        .collect()
}

/// A helper that two chapters' tests need belongs where every chapter
/// looks for shared code (`support/`, a contract such as `line_server.rs`
/// or `daemon.rs`, or Part V's `bench.rs`), not in one chapter borrowed
/// by another: there it changes for one chapter and breaks the other.
#[test]
fn no_chapter_test_module_borrows_from_another() {
    let tests = workspace_root().join("listings/tests");
    let mut problems = Vec::new();
    for file in files_with_extension(&tests, "rs") {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        if !name.starts_with("ch") {
            continue;
        }
        for other in borrowed_chapters(&name, &read(&file)) {
            problems.push(format!("listings/tests/{name}.rs uses {other}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn borrowing_between_chapters_is_caught() {
    let text = "use crate::ch05_handlers::trace_of_pipes;\n\
                use crate::support::run;\nuse crate::ch08_eintr::x;";
    assert_eq!(
        borrowed_chapters("ch08_eintr", text),
        BTreeSet::from(["ch05_handlers".to_string()])
    );
    let shared = "use crate::bench::{compile_c, published};";
    assert!(borrowed_chapters("ch27_throughput", shared).is_empty());
}
