//! `mdbook test`, as readers run it in their CI, through mdbook-driver:
//! rustdoc compiles and runs every Rust block of the expanded chapters as
//! edition 2024 against the listings' dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use mdbook_driver::MDBook;
use regex::Regex;

use crate::support::workspace_root;

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
