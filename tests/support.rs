//! What the book's checks have in common: where the book is, how to read
//! its files with error messages that name the file, and how to point at a
//! line.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// The workspace root: the directory holding `book.toml`, `src/` and
/// `listings/`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives one level below the workspace root")
        .to_path_buf()
}

/// Reads a UTF-8 file, panicking with its path on failure.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir` (recursively) whose name ends with `.{ext}`,
/// sorted so that failure lists come out in a stable order.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| {
                    panic!("cannot list {}: {e}", dir.display())
                })
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every Markdown file of the book's source directory, `src/**/*.md`, with
/// its contents; also those SUMMARY.md does not list, since a chapter may
/// include one, and then its own includes reach readers too.
pub fn markdown_sources() -> Vec<(PathBuf, String)> {
    files_with_extension(&workspace_root().join("src"), "md")
        .into_iter()
        .map(|path| {
            let text = read(&path);
            (path, text)
        })
        .collect()
}

/// `path` relative to the workspace root, for messages.
pub fn from_root(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// `path` with `.` and `..` resolved lexically, so that two spellings of a
/// file compare equal without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
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
