// Why this build script exists: skeptic turns the Rust code blocks of
// Markdown files into tests, but it reads the files as they are, and the
// book's chapters hold `{{#include}}` and `{{#rustdoc_include}}` directives
// where the listings go; raw, those do not compile. So this script expands
// the book exactly as mdBook does, with mdbook-driver's `MDBook::load` and
// `preprocess_book` (the same call `mdbook test` makes, under the same
// renderer name, "test"), writes each chapter's expanded text to
// `OUT_DIR/book/`, and hands those files to `skeptic::generate_doc_tests`,
// which writes `OUT_DIR/skeptic-tests.rs` for `skeptic.rs` to include.
// skeptic names each test after its file's stem, so a chapter's path is
// flattened (`a/b.md` becomes `a_b.md`) to keep names unique and readable.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;
use std::time::SystemTime;

use mdbook_driver::MDBook;
use mdbook_driver::book::BookItem;
use mdbook_driver::builtin_renderers::CmdRenderer;

fn main() {
    for input in ["../src", "../listings", "../book.toml"] {
        println!("cargo:rerun-if-changed={input}");
    }

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("the tests package lives one level below the workspace root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("book");

    let book = MDBook::load(root).unwrap_or_else(|e| {
        fail(&format!(
            "cannot load the book at {}: {e:#}",
            root.display()
        ))
    });
    // `preprocess_book` wants a renderer only for its name, which decides
    // which preprocessors run; `CmdRenderer` is the one public renderer
    // type whose name we choose, and its command is never run.
    let renderer = CmdRenderer::new("test".to_string(), String::new());
    let (expanded, _) = book.preprocess_book(&renderer).unwrap_or_else(|e| {
        fail(&format!("preprocessing the book failed: {e:#}"))
    });

    fs::create_dir_all(&out_dir).unwrap_or_else(|e| {
        fail(&format!("cannot create {}: {e}", out_dir.display()))
    });
    let mut written = BTreeSet::new();
    for item in expanded.iter() {
        let BookItem::Chapter(chapter) = item else {
            continue;
        };
        // Draft chapters (listed in SUMMARY.md without a file) have no path.
        let Some(path) = chapter.path.as_ref() else {
            continue;
        };
        let name = path.to_string_lossy().replace(['/', '\\'], "_");
        write_if_changed(&out_dir.join(&name), &chapter.content);
        written.insert(name);
    }
    remove_stale(&out_dir, &written);

    let docs: Vec<PathBuf> = written.iter().map(|n| out_dir.join(n)).collect();
    skeptic::generate_doc_tests(&docs);
}

/// Writes `contents` unless the file already holds exactly that, and then
/// dates the file back to the epoch.
///
/// skeptic prints `cargo:rerun-if-changed` for every file it is given, and
/// cargo reruns a build script when such a file is newer than the script's
/// previous run; these files are written *during* the run, so they always
/// would be, and every `cargo test` would redo this script and recompile
/// the skeptic tests. The real inputs are watched through `../src`,
/// `../listings` and `../book.toml` above.
fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(contents) {
        fs::write(path, contents).unwrap_or_else(|e| {
            fail(&format!("cannot write {}: {e}", path.display()))
        });
    }
    let file = fs::File::options().write(true).open(path);
    if let Err(e) = file.and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH)) {
        fail(&format!("cannot set the time of {}: {e}", path.display()));
    }
}

/// Removes chapters of earlier runs that the book no longer has, so that a
/// renamed chapter leaves no stray file behind to puzzle whoever looks here.
fn remove_stale(dir: &Path, keep: &BTreeSet<String>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| {
        fail(&format!("cannot list {}: {e}", dir.display()))
    });
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: book-tests build script: {message}");
    process::exit(1);
}
