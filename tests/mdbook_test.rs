//! `mdbook test`, as readers run it in their CI, through mdbook-driver:
//! rustdoc compiles and runs every Rust block of the expanded chapters as
//! edition 2024 against the listings' dependencies.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mdbook_driver::MDBook;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use wait_timeout::ChildExt;

use crate::layout::listing_bins;
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
    let (command, libraries) = build_listings_dependencies(&root, &target_dir);
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
        panic!("`mdbook test` with the libraries of `{command}` failed: {e:#}");
    }
}

/// How long the build of the listings may take: minutes when cold on a
/// loaded machine, under a second when nothing changed.
const BUILD_PATIENCE: Duration = Duration::from_secs(600);

/// Builds the dependencies of the listings crate into `target_dir` and
/// returns the command, for messages, and their library files (rlibs, and
/// proc-macro dylibs should one appear), as cargo reports them, fresh or
/// rebuilt.
///
/// Every binary of the crate has the same dependencies, and the doctests
/// need only those, so one binary is built: the others would cost seconds
/// on a cold run, and every edit of a listing would rebuild its binary here
/// for nothing.
fn build_listings_dependencies(
    root: &Path,
    target_dir: &Path,
) -> (String, Vec<PathBuf>) {
    let bin = &listing_bins(&mut Vec::new())[0].name;
    let command = format!(
        "cargo build -p listings --bin {bin} --target-dir {}",
        target_dir.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "-p", "listings", "--bin", bin])
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--message-format=json")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.display()));
    let stdout = read_in_background(child.stdout.take().unwrap());
    let stderr = read_in_background(child.stderr.take().unwrap());
    let status = child.wait_timeout(BUILD_PATIENCE).unwrap();
    let Some(status) = status else {
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
        panic!("`{command}` still running after {BUILD_PATIENCE:?}; killed");
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "`{command}` failed:\n{stderr}");
    let libraries: Vec<PathBuf> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .flat_map(|message| match message["filenames"].as_array() {
            Some(names) => names
                .iter()
                .filter_map(|name| name.as_str().map(PathBuf::from))
                .collect(),
            None => Vec::new(),
        })
        .filter(|file| {
            file.extension().is_some_and(|ext| {
                ["rlib", "so", "dylib", "dll"].iter().any(|l| ext == *l)
            })
        })
        .collect();
    assert!(
        !libraries.is_empty(),
        "`{command} --message-format=json` reported no libraries:\n{stdout}"
    );
    (command, libraries)
}

/// Reads all of `pipe` on a thread of its own, so that neither of a
/// child's two pipes can fill up and stall it while the other is read.
fn read_in_background(
    mut pipe: impl Read + Send + 'static,
) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The one line the README gives readers for `mdbook test` in their own
/// CI, the line `.ci/run` runs, and the line the publishing workflow runs
/// through `.ci/run`, are one and the same; the test above runs the same
/// doctests through mdbook-driver, so that `cargo test` covers them on a
/// machine without the `mdbook` binary.
#[test]
fn readme_ci_and_workflow_run_mdbook_test_the_same_way() {
    const LINE: &str = "bash .ci/mdbook-test";
    let root = workspace_root();
    let readme = crate::support::read(&root.join("README.md"));
    assert!(
        readme.lines().any(|line| line.trim() == LINE),
        "README.md no longer gives `{LINE}` on a line of its own"
    );
    let ci = crate::support::read(&root.join(".ci/run"));
    assert!(
        ci.lines().any(|line| line.trim() == LINE),
        ".ci/run no longer runs `{LINE}`"
    );
    assert!(
        !ci.contains("mdbook test -L"),
        ".ci/run runs `mdbook test` another way than the README's line"
    );
    let workflows = root.join(".github").join("workflows");
    let workflow = crate::support::read(&workflows.join("book.yml"));
    assert!(
        workflow
            .lines()
            .any(|line| line.trim() == "run: bash .ci/run"),
        ".github/workflows/book.yml no longer runs .ci/run"
    );
}
