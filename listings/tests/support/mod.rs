//! Runs the book's listings as real processes, for the chapter tests.
//!
//! Every listing starts in a process group of its own, and the whole group
//! is killed when its [`Listing`] is dropped, so a forked child never
//! outlives a test, even a failing one. Output is read by helper threads,
//! so every wait has a deadline: a test never sleeps to synchronise, it
//! waits for the line that says the listing is ready.
//!
//! When the test binary itself is killed (Ctrl-C, a CI timeout, SIGKILL),
//! no `Drop` runs. So every listing is also started with the parent-death
//! signal set to SIGKILL (Linux's `PR_SET_PDEATHSIG`): the kernel kills it
//! when its parent goes. Two things follow from how that works:
//!
//! - The "parent" is the *thread* that started the listing, not the test
//!   process. libtest runs each test on a thread of its own, so a listing
//!   dies at the latest when the test that started it ends, which is
//!   right; but a listing started from a helper thread would die when that
//!   thread ends. Start listings on the test's own thread, as every test
//!   here does; the threads of this module only read output.
//! - The signal reaches the listing process only, not the children it
//!   forks: a forked child gets its parent's death signal cleared, and its
//!   parent is the listing. The listings that fork see to that themselves
//!   (their children ask for the same signal when the listing dies);
//!   this module sees to the listing process. `harness.rs` tests it.
//!
//! The module is split by concern; every item is re-exported here, so a
//! chapter's tests `use crate::support::{...}` whatever file it lives in.

/// The path of a listing's binary, by the name readers type after `--bin`.
#[macro_export]
macro_rules! bin {
    ($name:literal) => {
        env!(concat!("CARGO_BIN_EXE_", $name))
    };
}

mod claims;
mod limits;
mod net;
mod outputs;
mod pending;
mod process;
mod procfs;
mod traces;

pub use claims::*;
pub use limits::*;
pub use net::*;
pub use outputs::*;
pub use pending::*;
pub use process::*;
pub use procfs::*;
pub use traces::*;
