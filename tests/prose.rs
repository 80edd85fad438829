//! What the prose says about the rest of the book must be true.

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
