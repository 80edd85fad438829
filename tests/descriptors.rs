//! Every pipe a listing makes is close-on-exec, as the introduction
//! promises, unless the listing says, beside the call, that it leaks on
//! purpose. A plain `pipe()` leaks both ends into every program a child
//! later runs, which keeps the pipe open there (chapter 19).

use std::sync::LazyLock;

use regex::Regex;

use crate::support::{files_with_extension, from_root, read, workspace_root};

/// A call of nix's `pipe()` (or libc's), not a method or another
/// function whose name ends in `pipe`, and not `pipe2`.
static PIPE_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^.\w])(?:libc::)?pipe\((?:\)\?|[^)])").unwrap()
});

#[test]
fn every_pipe_a_listing_makes_is_close_on_exec_or_says_why() {
    let mut problems = Vec::new();
    for file in files_with_extension(&workspace_root().join("listings"), "rs") {
        let name = from_root(&file);
        if !name.starts_with("listings/ch") {
            continue;
        }
        let text = read(&file);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap();
            if !PIPE_CALL.is_match(code) {
                continue;
            }
            let said = line.contains("on purpose")
                || i > 0 && lines[i - 1].contains("on purpose");
            if !said {
                problems.push(format!(
                    "{name}:{}: `pipe()` makes descriptors that leak \
                     through exec: use `pipe2(OFlag::O_CLOEXEC)`, or say \
                     in a comment on this line or the one before that it \
                     leaks on purpose",
                    i + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
