//! Claims a chapter makes about published figures, checked all at once.
//!
//! A chapter that quotes a benchmark quotes dozens of its figures, and a
//! new run moves most of them. A test that stopped at the first figure
//! that moved would need one build and one run per figure to list them
//! all; [`Claims`] records every failed check instead, and fails once, at
//! the end, with the whole list. Use it for checks of prose against data;
//! keep `assert!` for what later checks depend on (a file that must
//! parse, a row that must exist).

use std::cell::RefCell;
use std::fmt::Debug;

/// Failed checks, collected; [`Claims::finish`] (or dropping it) fails
/// the test with all of them.
pub struct Claims {
    /// The chapter's text with every run of whitespace made one space,
    /// so that a phrase matches across the source's line breaks.
    text: String,
    /// Which chapter, for the messages.
    name: &'static str,
    failures: RefCell<Vec<String>>,
    finished: RefCell<bool>,
}

impl Claims {
    /// Claims about `text`, the chapter called `name` in the messages.
    pub fn new(name: &'static str, text: &str) -> Claims {
        Claims {
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            name,
            failures: RefCell::new(Vec::new()),
            finished: RefCell::new(false),
        }
    }

    /// The chapter contains `phrase` (whitespace-insensitive).
    pub fn says(&self, phrase: &str) {
        let phrase = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
        if !self.text.contains(&phrase) {
            self.fail(format!("{} does not say: {phrase}", self.name));
        }
    }

    /// The chapter does not contain `phrase`.
    pub fn never_says(&self, phrase: &str) {
        let phrase = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
        if self.text.contains(&phrase) {
            self.fail(format!("{} still says: {phrase}", self.name));
        }
    }

    /// `condition` holds; `what` says what it means when it does not.
    pub fn check(&self, condition: bool, what: impl Into<String>) {
        if !condition {
            self.fail(what.into());
        }
    }

    /// `actual` equals `expected`, the value the prose or the test states.
    pub fn eq<T: PartialEq + Debug>(&self, actual: T, expected: T, what: &str) {
        if actual != expected {
            self.fail(format!(
                "{what}: the data give {actual:?}, expected {expected:?}"
            ));
        }
    }

    /// Records a failure.
    pub fn fail(&self, message: String) {
        self.failures.borrow_mut().push(message);
    }

    /// Fails the test if any check of any of `all` failed, listing every
    /// one, chapter by chapter: one chapter's failures do not hide
    /// another's.
    pub fn finish_all<const N: usize>(all: [Claims; N]) {
        let mut lines = Vec::new();
        let mut count = 0;
        for claims in all {
            *claims.finished.borrow_mut() = true;
            let failures = claims.failures.take();
            count += failures.len();
            lines.extend(
                failures.iter().map(|f| format!("{}: {f}", claims.name)),
            );
        }
        assert!(
            lines.is_empty(),
            "{count} claim(s) fail:\n{}",
            lines.join("\n")
        );
    }

    /// Fails the test if any check failed, listing every one.
    pub fn finish(self) {
        *self.finished.borrow_mut() = true;
        let failures = self.failures.take();
        assert!(
            failures.is_empty(),
            "{} claim(s) of {} fail:\n{}",
            failures.len(),
            self.name,
            failures.join("\n")
        );
    }
}

impl Drop for Claims {
    /// A test that forgot `finish` still fails on what it collected
    /// (unless it is already panicking).
    fn drop(&mut self) {
        let failures = self.failures.take();
        if !*self.finished.borrow()
            && !failures.is_empty()
            && !std::thread::panicking()
        {
            panic!(
                "{} claim(s) of {} fail:\n{}",
                failures.len(),
                self.name,
                failures.join("\n")
            );
        }
    }
}
