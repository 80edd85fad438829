//! What the tests of Listing 10-1 (`sig-daemon`) and Listing 29-1
//! (`async-daemon`) share: the same daemon, once on threads and once on
//! tokio, started, reconfigured and spoken to the same way. Each chapter's
//! tests hold its own listing to the protocol through these.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use crate::support::{Finished, Listing, PATIENCE, blessing};

/// A started daemon: its address, its configuration file.
pub struct Daemon {
    pub listing: Listing,
    pub addr: SocketAddr,
    pub config: PathBuf,
    /// The daemon's TMPDIR, where it makes its private directory: a test
    /// that ends it with SIGKILL, which runs no `Drop`, leaves nothing in
    /// the system's. `None` when blessing, so that the book shows /tmp.
    pub tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Waits for the daemon to end, and checks that it left nothing in its
    /// TMPDIR: every way it ends by itself removes its private directory.
    #[track_caller]
    pub fn finish(self) -> Finished {
        let out = self.listing.finish();
        if let Some(tmp) = &self.tmp {
            let left: Vec<_> = fs::read_dir(tmp.path())
                .expect("the daemon's TMPDIR")
                .map(|entry| entry.unwrap().file_name())
                .collect();
            assert!(
                left.is_empty(),
                "left in its TMPDIR: {left:?}; {:?}; {:#?}",
                out.status,
                out.stdout
            );
        }
        out
    }
}

/// A temporary directory for a daemon's TMPDIR, unless blessing.
pub fn private_tmp(command: &mut Command) -> Option<tempfile::TempDir> {
    if blessing() {
        return None;
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    command.env("TMPDIR", tmp.path());
    Some(tmp)
}

/// Starts `bin` (either daemon) with exactly `args`.
pub fn start_exactly(bin: &str, args: &[&str]) -> Daemon {
    let mut command = Command::new(bin);
    command.args(args);
    start_command(command)
}

/// Starts the daemon that `command` runs, in a TMPDIR of its own, and
/// waits for its readiness line.
pub fn start_command(mut command: Command) -> Daemon {
    let tmp = private_tmp(&mut command);
    let mut listing = Listing::spawn(&mut command, Stdio::piped());
    let ready =
        listing.expect(r"Listening on (\S+) as pid (\d+); config (\S+)");
    assert_eq!(ready[2], listing.pid().to_string());
    Daemon {
        listing,
        addr: ready[1].parse().expect("an address"),
        config: PathBuf::from(&ready[3]),
        tmp,
    }
}

/// Replaces the configuration and has the daemon reload it.
pub fn reconfigure(daemon: &mut Daemon, text: &str) {
    fs::write(&daemon.config, text).expect("write the configuration");
    daemon.listing.signal(Signal::SIGHUP);
    daemon.listing.expect("Reloaded .*");
}

/// Waits for the daemon's log line saying a connection said `request`.
pub fn logged_request(daemon: &mut Daemon, request: &str) {
    daemon.listing.expect(r"127\.0\.0\.1:\d+: connected");
    daemon
        .listing
        .expect(&format!(r#"127\.0\.0\.1:\d+: request "{request}""#));
}

/// A client connection with timeouts on every wait.
pub struct Client {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream =
            TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub fn send(&mut self, line: &str) {
        writeln!(self.stream, "{line}").expect("send a request");
    }

    /// The next line of reply, or `None` at the end of the stream.
    pub fn reply(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).expect("read a reply") {
            0 => None,
            _ => Some(line),
        }
    }
}
