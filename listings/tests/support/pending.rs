//! Starting a listing with a signal already pending, as when one comes
//! between its start and its first wait, and under a limit of threads.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use super::*;

/// A program, anyone may run, that starts `bin` with `args` and a SIGTERM
/// pending: `env` blocks it, `sh` sends it to itself and execs the
/// listing, which takes it once it unblocks SIGTERM. Returns the program
/// and the directories to keep while it runs.
pub fn with_sigterm_pending(
    bin: &str,
    args: &str,
) -> (PathBuf, [tempfile::TempDir; 2]) {
    let (listing, listing_dir) = reachable_by_anyone(Path::new(bin));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755))
        .unwrap();
    let script = dir.path().join("pending-term");
    write_program(
        &script,
        &format!(
            "#!/bin/sh
exec env --block-signal=TERM sh -c \
             'kill -TERM $$ && exec \"$0\" \"$@\"' '{}' {args}\n",
            listing.display()
        ),
    );
    (script, [listing_dir, dir])
}

/// Starts `bin` with a SIGTERM pending ([`with_sigterm_pending`]) as a
/// user allowed `threads` threads ([`with_thread_limit`]), for each
/// `(threads, args)` of `cases`: however many threads the system refuses
/// it, the listing must stop what it started, end by the signal, and say
/// nothing (`who`, what the message calls the listing). Returns at once
/// where the suite is not root.
#[track_caller]
pub fn assert_ends_by_a_pending_sigterm_with_threads_refused(
    bin: &str,
    cases: &[(u64, &str)],
    who: &str,
) {
    for &(threads, args) in cases {
        let (script, _dirs) = with_sigterm_pending(bin, args);
        let Some((mut command, _dir)) =
            with_thread_limit(&Command::new(&script), threads)
        else {
            return;
        };
        let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
        let what = format!("ulimit -u {threads}, {args}");
        assert_eq!(
            out.status.signal(),
            Some(Signal::SIGTERM as i32),
            "{what}: {:?} {}",
            out.status,
            out.stderr
        );
        assert_eq!(out.stderr, "", "{what}: an interrupted {who} says nothing");
    }
}
