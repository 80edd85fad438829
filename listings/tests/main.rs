//! The tests of every listing in the book, one module per chapter, in a
//! single test binary: Cargo runs test binaries one after another but the
//! tests inside one binary in parallel, so a slow chapter (the alarm waits
//! ten seconds) overlaps with all the others instead of adding to them.

#[macro_use]
mod support;

mod ch02_signals;
mod ch03_sockets;
mod ch04_pipes;
mod ch13_streams;
mod ch14_servers;
mod ch15_poll;
mod ch16_unix;
mod ch17_udp;
mod ch18_options;
mod conventions;
