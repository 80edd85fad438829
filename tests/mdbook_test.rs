//! `mdbook test`, as readers run it in their CI, through mdbook-driver:
//! rustdoc compiles and runs every Rust block of the expanded chapters as
//! edition 2024 against the listings' dependencies.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::includes::{ANCHOR_END, ANCHOR_START, includes_in};
use crate::support::{
    cargo, output_within, read, workspace_package, workspace_root,
};
use mdbook_driver::MDBook;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use wait_timeout::ChildExt;

#[test]
fn mdbook_test_passes() {
    let root = workspace_root();
    // `mdbook test` passes rustdoc only `-L`, never `--extern`, so the
    // directory must hold exactly one build of each crate a block names
    // (E0464 otherwise). target/debug/deps also holds the builds made for
    // mdbook-driver and skeptic, so the listings get a target dir of their
    // own; and since that one keeps stale builds after a version or feature
    // change, only this build's libraries are linked into a fresh directory.
    // The README's script builds and links them; this runs it to link
    // only, so that the two cannot do it differently.
    let target_dir = root.join("target").join("book-deps");
    std::fs::create_dir_all(&target_dir).unwrap();
    let lib_dir = tempfile::tempdir_in(&target_dir).unwrap();
    let mut link = Command::new("bash");
    link.arg(".ci/mdbook-test")
        .arg("--link-into")
        .arg(lib_dir.path());
    let command = format!("{link:?}");
    output_within(link, BUILD_PATIENCE);

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

/// The one line the README gives readers for `mdbook test` in their own
/// CI, the line `.ci/run` runs, and the line the publishing workflow runs
/// through `.ci/run` (as root), are one and the same; the test above runs the same
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
    // As root, keeping CI set: the tests that need root fail under CI
    // rather than skip (`need_root` in the listings' tests).
    assert!(
        workflow.lines().any(|line| {
            let line = line.trim();
            line.starts_with("run: sudo --preserve-env=CI,")
                && line.ends_with(" bash .ci/run")
        }),
        ".github/workflows/book.yml no longer runs .ci/run as root, with CI"
    );
}

/// The doctests, skeptic's and `mdbook test`'s, compile against the
/// dependencies of this package (skeptic passes `--extern` for each) and of
/// the listings crate (the script's build). The two lists are written twice,
/// since the listings' `[dependencies]` are shown in chapter 1 for readers
/// to copy and cannot say `workspace = true`; so they must be the same:
/// names, versions, default features and features.
#[test]
fn the_book_tests_depend_on_exactly_what_the_listings_do() {
    fn normal_dependencies(package: &str) -> Vec<String> {
        let mut found: Vec<String> = workspace_package(package)["dependencies"]
            .as_array()
            .expect("cargo metadata lists dependencies")
            .iter()
            .filter(|dependency| dependency["kind"].is_null())
            .map(|dependency| {
                let field = |key: &str| dependency[key].to_string();
                let mut features: Vec<String> = dependency["features"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|feature| feature.to_string())
                    .collect();
                features.sort();
                format!(
                    "{} {} default-features={} features=[{}]",
                    field("name"),
                    field("req"),
                    field("uses_default_features"),
                    features.join(","),
                )
            })
            .collect::<Vec<String>>();
        found.sort();
        found
    }
    let listings = normal_dependencies("listings");
    let tests = normal_dependencies("book-tests");
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|d| !b.contains(d)).cloned().collect()
    };
    assert!(
        listings == tests,
        "listings/Cargo.toml and tests/Cargo.toml differ in [dependencies]:\n\
         only the listings': {:#?}\nonly the tests': {:#?}",
        only(&listings, &tests),
        only(&tests, &listings)
    );
}

/// Chapter 1 tells a reader who copies a listing to add the dependencies
/// it shows from `listings/Cargo.toml`, by anchor; a crate the manifest
/// declares outside those blocks is one that a copied listing may use and
/// the reader was never told to add, so the copy does not build.
#[test]
fn chapter_1_shows_every_dependency_of_the_listings() {
    let root = workspace_root();
    let chapter = root.join("src").join("ch01-introduction.md");
    let manifest = root.join("listings").join("Cargo.toml");
    let lines: Vec<String> =
        read(&manifest).lines().map(str::to_string).collect();
    let mut shown = Vec::new();
    for include in includes_in(&chapter, &read(&chapter)) {
        if include.target() != manifest {
            continue;
        }
        let anchor = include.spec.clone().unwrap_or_default();
        let mut inside = false;
        for line in &lines {
            if ANCHOR_END.captures(line).is_some_and(|c| c[1] == *anchor) {
                inside = false;
            } else if ANCHOR_START
                .captures(line)
                .is_some_and(|c| c[1] == *anchor)
            {
                inside = true;
            } else if inside
                && let Some((name, _)) = line.split_once('=')
                && !line.trim_start().starts_with('#')
            {
                shown.push(name.trim().to_string());
            }
        }
    }
    let missing: Vec<String> = workspace_package("listings")["dependencies"]
        .as_array()
        .expect("cargo metadata lists dependencies")
        .iter()
        .filter(|dependency| dependency["kind"].is_null())
        .filter_map(|dependency| dependency["name"].as_str())
        .filter(|name| !shown.iter().any(|shown| shown == name))
        .map(str::to_string)
        .collect();
    assert!(
        missing.is_empty(),
        "listings/Cargo.toml declares {missing:?}, which no block of \
         src/ch01-introduction.md shows readers (shown: {shown:?})"
    );
}

/// Chapter 1 tells a reader who copies a listing to put the dependencies
/// it shows in place of the empty `[dependencies]` line that `cargo new`
/// wrote, the async ones under them, and the async tests' one
/// dev-dependency, in a table of its own, after them. The block it shows
/// begins with that line, so a reader who only adds it below has the
/// table twice, which Cargo refuses ("duplicate key"); done as the
/// chapter says, Cargo reads the manifest.
#[test]
fn chapter_1s_dependencies_replace_the_line_cargo_new_writes() {
    let root = workspace_root();
    let chapter = read(&root.join("src").join("ch01-introduction.md"));
    let said = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains(
            "in place of the empty `[dependencies]` line that `cargo new` wrote"
        ),
        "src/ch01-introduction.md no longer says where the dependencies go"
    );
    let manifest = read(&root.join("listings").join("Cargo.toml"));
    let shown = anchored(&manifest, "dependencies");
    let shown_async = anchored(&manifest, "async-dependencies");
    let shown_dev = anchored(&manifest, "async-dev-dependencies");
    assert!(
        shown.starts_with("[dependencies]\n"),
        "the dependencies chapter 1 shows no longer begin with [dependencies]"
    );
    // `cargo new` writes no [dev-dependencies]: the block brings its own.
    assert!(
        shown_dev.starts_with("[dev-dependencies]\n"),
        "the dev-dependency chapter 1 shows has no [dev-dependencies] line"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut new = cargo();
    new.args(["new", "--quiet", "--vcs", "none"])
        .arg(dir.path().join("copied"));
    output_within(new, Duration::from_secs(60));
    let path = dir.path().join("copied").join("Cargo.toml");
    let fresh = read(&path);
    assert!(
        fresh.ends_with("[dependencies]\n"),
        "`cargo new` no longer ends its manifest with an empty [dependencies]:\n{fresh}"
    );

    let appended = format!("{fresh}{shown}");
    let refused = cargo_reads(&path, &appended)
        .expect_err("a manifest with [dependencies] twice was read");
    assert!(refused.contains("duplicate key"), "{refused}");
    let replaced = format!(
        "{}{shown}{shown_async}{shown_dev}",
        fresh.strip_suffix("[dependencies]\n").unwrap()
    );
    if let Err(refused) = cargo_reads(&path, &replaced) {
        panic!(
            "the manifest chapter 1 describes is refused: {refused}\n{replaced}"
        );
    }
}

/// The lines between `# ANCHOR: name` and `# ANCHOR_END: name`.
fn anchored(text: &str, name: &str) -> String {
    let mut inside = false;
    let mut found = String::new();
    for line in text.lines() {
        if ANCHOR_END.captures(line).is_some_and(|c| &c[1] == name) {
            inside = false;
        } else if ANCHOR_START.captures(line).is_some_and(|c| &c[1] == name) {
            inside = true;
        } else if inside && !line.trim_start().starts_with('#') {
            found.push_str(line);
            found.push('\n');
        }
    }
    assert!(!found.is_empty(), "no anchor {name} in listings/Cargo.toml");
    found
}

/// Writes `text` to the manifest at `path` and asks Cargo to read it
/// (`cargo metadata --no-deps --offline`: no download, no build). Cargo's
/// error on stderr if it refuses.
fn cargo_reads(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).unwrap();
    let errors = path.with_file_name("errors");
    let mut metadata = cargo();
    metadata
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).unwrap())
        .process_group(0);
    let mut child = metadata.spawn().unwrap();
    let Some(status) = child.wait_timeout(Duration::from_secs(60)).unwrap()
    else {
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
        panic!("{metadata:?} still running after a minute; killed");
    };
    if status.success() {
        Ok(())
    } else {
        Err(read(&errors))
    }
}
