//! Chapter 4, Pipes: Listings 4-1 (`pipe-spam`), 4-2 (`pipe-glued`) and
//! 4-3 (`pipe-lines`).

use crate::support::{
    Listing, assert_matches_book, assert_rejects, children_of, run,
};

/// What the child writes, in order: `Spam 000` to `Spam 004`, then again.
fn spam(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("Spam {:03}", i % 5)).collect()
}

#[test]
fn pipe_spam_forks_and_every_message_reaches_the_parent_in_order() {
    let mut spam_run = Listing::start(bin!("pipe-spam"), &["--count", "6"]);
    let pid = spam_run.pid().to_string();
    let first = spam_run.expect(r"Parent (\d+) got \[(.*)\] at \d+\.\d+");
    assert_eq!(first[1], pid, "the parent is the process we started");
    // The child sleeps before its next message, so it is alive now: a
    // second process, forked by the first.
    assert_eq!(children_of(spam_run.pid()).len(), 1, "exactly one child");

    let out = spam_run.finish();
    assert!(
        out.status.success(),
        "child or parent failed: {}",
        out.stderr
    );
    // Reads may glue messages together (`Spam 004Spam 000`), so compare
    // the bytes, not the reads.
    let mut received = String::new();
    for line in &out.stdout {
        let (_, rest) = line.split_once(" got [").expect("Parent … got [");
        let (bytes, _) = rest.rsplit_once("] at ").expect("] at <time>");
        received.push_str(bytes);
    }
    assert_eq!(received, spam(6).concat());
}

#[test]
fn pipe_spam_output_matches_the_book() {
    // Five messages come at least a second apart, so no read can glue two
    // of them: the output is the same on every run.
    let args = ["--count", "5"];
    let out = run(bin!("pipe-spam"), &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch04-pipes/04-01-pipe-spam.out",
        "pipe-spam",
        &args,
        &out.stdout,
    );
}

#[test]
fn pipe_glued_reads_two_writes_as_one_every_time() {
    for _ in 0..20 {
        let out = run(bin!("pipe-glued"), &[]);
        assert!(out.status.success(), "{}", out.stderr);
        let [wrote1, wrote2, got] = &out.stdout[..] else {
            panic!("three lines expected: {:?}", out.stdout);
        };
        let child = wrote1.split(' ').nth(1).unwrap();
        assert_eq!(*wrote1, format!("Child {child} wrote [Spam 004]"));
        assert_eq!(*wrote2, format!("Child {child} wrote [Spam 000]"));
        let parent = got.split(' ').nth(1).unwrap();
        assert_ne!(parent, child, "two processes: the fork happened");
        assert_eq!(
            *got,
            format!(
                "Parent {parent} got [Spam 004Spam 000] in one read of 16 bytes"
            )
        );
    }
}

#[test]
fn pipe_glued_output_matches_the_book() {
    let out = run(bin!("pipe-glued"), &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch04-pipes/04-02-pipe-glued.out",
        "pipe-glued",
        &[],
        &out.stdout,
    );
}

#[test]
fn pipe_lines_delivers_each_message_as_a_line_and_ends_by_itself() {
    let mut lines = Listing::start(bin!("pipe-lines"), &["--count", "6"]);
    let pid = lines.pid().to_string();
    let mut received = Vec::new();
    for _ in 0..6 {
        let got = lines.expect(r"Parent (\d+) got \[(.*)\] at \d+\.\d+");
        assert_eq!(got[1], pid);
        received.push(got[2].clone());
    }
    assert_eq!(received, spam(6), "one message per line, in order");
    // The parent saw the end of the stream because every write end is
    // closed once the child exits; with --count it then reaps the child.
    let out = lines.finish();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 6);
}

#[test]
fn pipe_lines_output_matches_the_book() {
    let args = ["--count", "6"];
    let out = run(bin!("pipe-lines"), &args);
    assert!(out.status.success(), "{}", out.stderr);
    assert_matches_book(
        "ch04-pipes/04-03-pipe-lines.out",
        "pipe-lines",
        &args,
        &out.stdout,
    );
}

#[test]
fn pipe_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("pipe-spam"), &["--count", "-1"], "whole number");
    assert_rejects(bin!("pipe-spam"), &["now"], "unexpected argument 'now'");
    assert_rejects(bin!("pipe-lines"), &["--count"], "needs a number");
    assert_rejects(bin!("pipe-glued"), &["--count", "2"], "no arguments");
}
