// ANCHOR: whole
// Listing 14-1: a thread per connection, the way most tutorials write it.
// It answers each line with `server got: [<line>]`, many clients at once.
// It also has five flaws that real clients find, which Chapter 14 shows
// one by one; Listings 14-2 and 14-3 fix them.
//
// `tcp-naive [HOST:PORT] [--count N]`: N connections, then it stops.

use std::error::Error;
use std::fmt::Display;
use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{self, ExitCode};
use std::thread::{self, JoinHandle};

const USAGE: &str = "usage: tcp-naive [HOST:PORT] [--count N]";
const DEFAULT_ADDR: &str = "127.0.0.1:50008";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads the log any more: that ends the server.
        Err(err) if is_broken_pipe(&*err) => ExitCode::SUCCESS,
        Err(err) => {
            log(format_args!("{err}"));
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: naive
fn run() -> Result<(), Box<dyn Error>> {
    let (spec, count) = parse_args().map_err(|e| format!("{e}; {USAGE}"))?;
    let addrs = resolve(&spec)?;
    // Flaw 5: std listens with a backlog of 128, whatever the load.
    let listener = TcpListener::bind(&addrs[..])
        .map_err(|err| format!("cannot listen on {spec}: {err}"))?;
    writeln!(
        io::stdout(),
        "Server listening on {}",
        listener.local_addr()?
    )?;
    let mut threads = Vec::new();
    for conn in listener.incoming().take(count.unwrap_or(usize::MAX)) {
        // Flaw 1: one failed `accept` ends the server.
        let conn = conn?;
        // Flaw 4: no limit. Every connection gets a thread, however
        // many come.
        // A thread the system refuses ends the server too, as Flaw 1.
        let thread = thread::Builder::new()
            .spawn(move || {
                let peer = conn.peer_addr().map(|p| p.to_string());
                if let Err(err) = answer(conn) {
                    let peer = peer.unwrap_or_else(|_| "a client".into());
                    log(format_args!("{peer}: {err}"));
                }
            })
            .map_err(|err| format!("cannot start a thread: {err}"))?;
        // Kept, to be waited for; those already finished are let go.
        threads.retain(|t: &JoinHandle<()>| !t.is_finished());
        threads.push(thread);
    }
    // With --count: stop listening first, or a client past the count would
    // wait in the backlog and be reset at the end. Then the last clients
    // are answered before the process ends, which would close their
    // sockets with their requests unread.
    drop(listener);
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn answer(conn: TcpStream) -> io::Result<()> {
    // Flaw 2: no timeouts. A client that says nothing, or reads nothing,
    // keeps its thread, and its file descriptor, forever.
    let mut writer = &conn;
    // Flaw 3: `lines()` has no maximum: a line without a newline grows
    // in memory for as long as the client keeps sending.
    for line in BufReader::new(&conn).lines() {
        writeln!(writer, "server got: [{}]", line?)?;
    }
    Ok(())
}
// ANCHOR_END: naive

/// One line on stderr, formatted whole, then written with one `write`:
/// stderr is unbuffered, and `writeln!` would write each piece on its
/// own, letting another process writing to the same pipe land inside the
/// line. Not `eprintln!`, which panics if stderr is a
/// closed pipe: a log that cannot be written is lost.
fn log(message: impl Display) {
    let line = format!("tcp-naive: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// True if `err` says that the reader of a pipe we wrote to has gone.
fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
}

/// Every address `HOST:PORT` names (`localhost` may name several).
fn resolve(spec: &str) -> Result<Vec<SocketAddr>, String> {
    let bad = |why: &dyn Display| {
        format!("bad address '{}': {why}", spec.escape_debug())
    };
    let addrs: Vec<_> = spec.to_socket_addrs().map_err(|e| bad(&e))?.collect();
    if addrs.is_empty() {
        return Err(bad(&"it names no address"));
    }
    Ok(addrs)
}

/// Reads `[HOST:PORT] [--count N]` from the command line.
fn parse_args() -> Result<(String, Option<usize>), lexopt::Error> {
    use lexopt::prelude::*;
    let (mut spec, mut count) = (None, None);
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("count") => count = Some(args.value()?.parse()?),
            Value(value) if spec.is_none() => spec = Some(value.string()?),
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    Ok((spec.unwrap_or_else(|| DEFAULT_ADDR.into()), count))
}

/// lexopt's error for an argument we did not expect, with an unknown
/// option escaped as lexopt escapes a value: a newline the user typed in
/// it must not start a second line of error.
fn unexpected(arg: lexopt::Arg<'_>) -> lexopt::Error {
    match arg.unexpected() {
        lexopt::Error::UnexpectedOption(option) => {
            format!("invalid option '{}'", option.escape_debug()).into()
        }
        other => other,
    }
}
// ANCHOR_END: whole
