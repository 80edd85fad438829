//! What the book's checks have in common: where the book is, how to read
//! its files with error messages that name the file, and how to point at a
//! line.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use wait_timeout::ChildExt;

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

/// Runs `command` at the workspace root in a process group of its own,
/// with nothing on its standard input, and returns its standard output.
/// Panics with its standard error if it fails, and kills the whole group
/// if it is still running after `patience`.
#[track_caller]
pub fn output_within(mut command: Command, patience: Duration) -> String {
    let shown = format!("{command:?}");
    let mut child = command
        .current_dir(workspace_root())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let stdout = read_in_background(child.stdout.take().unwrap());
    let stderr = read_in_background(child.stderr.take().unwrap());
    let Some(status) = child.wait_timeout(patience).unwrap() else {
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
        panic!("{shown} still running after {patience:?}; killed");
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "{shown} failed ({status}):\n{stderr}");
    stdout
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

/// The cargo that runs these tests, or the one on the PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Cargo's own reading of the workspace's manifests (`cargo metadata
/// --no-deps`): the one way every check here learns what a manifest says.
pub fn workspace_package(name: &str) -> &'static Value {
    static METADATA: LazyLock<Value> = LazyLock::new(|| {
        let mut metadata = cargo();
        metadata.args(["metadata", "--no-deps", "--format-version=1"]);
        metadata.args(["--offline", "--locked"]);
        let json = output_within(metadata, Duration::from_secs(120));
        serde_json::from_str(&json).expect("cargo metadata prints JSON")
    });
    METADATA["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .find(|package| package["name"] == name)
        .unwrap_or_else(|| panic!("no package `{name}` in the workspace"))
}
