//! The tests of every listing in the book, one module per chapter, in a
//! single test binary: Cargo runs test binaries one after another but the
//! tests inside one binary in parallel, so a slow chapter (the alarm waits
//! ten seconds) overlaps with all the others instead of adding to them.

#[macro_use]
mod support;

mod bench;
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
mod ch13_streams;
mod ch14_servers;
mod ch15_poll;
mod ch16_unix;
mod ch17_udp;
mod ch18_options;
mod ch19_ends;
mod ch20_atomicity;
mod ch21_capacity;
mod ch22_fifos;
mod ch23_pipelines;
mod ch24_exec;
mod ch25_orphans;
mod ch26_latency;
mod ch27_throughput;
mod ch28_async_signals;
mod ch29_async_shutdown;
mod ch30_async_sockets;
mod ch31_async_children;
mod ch32_async_blocking;
mod conventions;
mod daemon;
mod line_server;
mod socket_file;

/// The harness itself: nothing it starts outlives it.
mod harness;
