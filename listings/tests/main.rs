//! The tests of every listing in the book, one module per chapter, in a
//! single test binary: Cargo runs test binaries one after another but the
//! tests inside one binary in parallel, so a slow chapter (the alarm waits
//! ten seconds) overlaps with all the others instead of adding to them.

#[macro_use]
mod support;

mod ch02_signals;
mod ch03_sockets;
mod ch04_pipes;
mod ch05_handlers;
mod ch06_signal_hook;
mod ch07_waiting;
mod ch08_eintr;
mod ch09_children;
mod ch10_daemon;
mod ch11_timers;
mod ch12_exiting;
mod conventions;
