//! Sibling listings: whole programs that grew from one another, and share
//! most of their code because each must stand alone for a reader who
//! copies it. A fix to one must reach the others, so every item the
//! siblings share by name must be the same code in each, or be listed
//! here as different on purpose, with the reason.

use std::collections::BTreeMap;

use quote::ToTokens;
use syn::{Attribute, ImplItem, Item};

use crate::support::{read, workspace_root};

/// A family of listings, by path under `listings/`; the items it checks
/// (`only`, or, when that is empty, every item they share by name); the
/// items whose code differs on purpose, each with the reason; and what
/// differs everywhere at once, such as the program's name in its
/// messages: each listing's code is compared with those words replaced.
struct Family {
    files: &'static [&'static str],
    only: &'static [&'static str],
    different: &'static [(&'static str, &'static str)],
    renamed: Renamed,
}

/// Per listing of a family, words replaced before the comparison.
type Renamed =
    &'static [(&'static str, &'static [(&'static str, &'static str)])];

const FAMILIES: &[Family] = &[
    Family {
        files: &[
            "ch06-signal-hook/06-03-sig-hook-default.rs",
            "ch12-exiting/12-01-sig-cleanup.rs",
        ],
        // What to `kill`, inside or outside a PID namespace.
        only: &[
            "struct Whoami",
            "impl Whoami",
            "impl std :: fmt :: Display for Whoami",
            "fn whoami",
        ],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch18-options/18-02-net-dual-stack.rs",
            "ch18-options/18-04-net-nagle.rs",
            "ch18-options/18-05-net-keepalive.rs",
            "ch18-options/18-06-net-handover.rs",
        ],
        // The guard against a stranger who connects to a listener on
        // loopback before the listing's own client does.
        only: &["fn accept_own"],
        different: &[],
        renamed: &[],
    },
    Family {
        // 3-3 is 3-2 split by mode; Chapter 3 shows some of 3-2's claims
        // (the stop and continue, the trickle, the 64 KiB cap) on 3-3.
        only: &[],
        files: &[
            "ch03-sockets/03-02-socket-preview.rs",
            "ch03-sockets/03-03-socket-modes.rs",
        ],
        renamed: &[(
            "ch03-sockets/03-03-socket-modes.rs",
            &[("socket-modes", "socket-preview")],
        )],
        different: &[
            ("const USAGE", "3-3 runs one mode of three"),
            ("fn parse_args", "3-3 runs one mode of three"),
            ("fn main", "3-3's server ends when its log has no reader"),
            (
                "fn run",
                "3-2 runs a server and its clients in one process, 3-3 one \
                 mode",
            ),
            (
                "fn serve",
                "3-3 counts what it answered, and logs each answer and each \
                 failure with `log`",
            ),
            // `answer` and `client` differ only in the lines that
            // `DIFFERENT_LINES` names, and are compared but for those.
        ],
    },
    Family {
        only: &[],
        files: &[
            "ch14-servers/14-02-tcp-threads.rs",
            "ch14-servers/14-03-tcp-pool.rs",
            "ch16-unix/16-01-unix-server.rs",
        ],
        renamed: &[
            (
                "ch14-servers/14-03-tcp-pool.rs",
                &[("tcp-pool", "tcp-threads")],
            ),
            (
                "ch16-unix/16-01-unix-server.rs",
                &[
                    ("unix-server", "tcp-threads"),
                    ("UnixStream", "TcpStream"),
                    ("UnixListener", "TcpListener"),
                ],
            ),
        ],
        different: &[
            ("const USAGE", "each server has options of its own"),
            ("struct Config", "each server has options of its own"),
            ("fn parse_args", "each server has options of its own"),
            (
                "fn run",
                "a thread per connection, a pool, or a socket file",
            ),
            (
                "fn serve",
                "16-1 logs the peer's credentials, which TCP has not",
            ),
            (
                "struct Conns",
                "the pool counts queued connections and workers",
            ),
            (
                "impl Conns",
                "the pool counts queued connections and workers",
            ),
            (
                "struct Slot",
                "the pool counts queued connections and workers",
            ),
            (
                "impl Slot",
                "the pool counts queued connections and workers",
            ),
            (
                "impl Drop for Slot",
                "the pool counts queued connections and workers",
            ),
            (
                "struct Table",
                "the pool counts queued connections and workers",
            ),
            (
                "enum Since",
                "a connection in the pool's queue may wait with its request",
            ),
            (
                "fn answer",
                "the pool's evicting thread runs while others wait, so it \
                 is told when a reply is being written, which it spares",
            ),
            (
                "struct Deadline",
                "a pool's connection goes back into the queue between \
                 requests, with what it read of the next one",
            ),
            (
                "impl Read for Deadline < '_ >",
                "a pool's connection goes back into the queue between \
                 requests, with what it read of the next one",
            ),
            (
                "fn write_all_by",
                "the pool's evicting thread is told when a reply waits for \
                 room, a stall it closes; a thread's table sees it as a \
                 request busy for too long",
            ),
        ],
    },
    Family {
        // The one-client-at-a-time servers of Chapter 13 and 16-3 wait
        // after a failed `accept` with one `Backoff`, which logs with the
        // listing's `log`: the shape of 14-2's, whose `AcceptLog` they
        // have no need of.
        only: &["struct Backoff", "impl Backoff"],
        files: &[
            "ch13-streams/13-02-tcp-lines.rs",
            "ch13-streams/13-03-tcp-length.rs",
            "ch16-unix/16-03-unix-pass-fd.rs",
        ],
        renamed: &[],
        different: &[],
    },
    Family {
        only: &[],
        files: &[
            "ch06-signal-hook/06-01-sig-hook-flag.rs",
            "ch06-signal-hook/06-02-sig-hook-thread.rs",
            "ch06-signal-hook/06-03-sig-hook-default.rs",
            "ch12-exiting/12-01-sig-cleanup.rs",
        ],
        renamed: &[],
        different: &[
            ("const USAGE", "each program has options of its own"),
            ("fn parse_args", "each program has options of its own"),
            ("fn main", "each program shows its own way to stop"),
            ("fn run", "each program shows its own way to stop"),
        ],
    },
    Family {
        // 10-2 is a different daemon, but backs off after a failed
        // `accept` with 10-1's `Backoff`, and logs a shortage once; and
        // its log is 10-1's, written by a thread of its own.
        only: &[
            "struct Backoff",
            "impl Backoff",
            "struct Log",
            "const LOG_QUEUE",
            "const LOG_LINE",
            "static LOG",
            "fn start_log",
            "fn whole",
            "fn log",
            "fn flush_log",
        ],
        files: &[
            "ch10-daemon/10-01-sig-daemon.rs",
            "ch10-daemon/10-02-sig-notify.rs",
        ],
        renamed: &[],
        different: &[],
    },
    Family {
        only: &[],
        files: &[
            "ch10-daemon/10-01-sig-daemon.rs",
            "ch29-async-shutdown/29-01-async-daemon.rs",
        ],
        renamed: &[(
            "ch29-async-shutdown/29-01-async-daemon.rs",
            &[("async-daemon", "sig-daemon")],
        )],
        different: &[
            ("const USAGE", "29-1 is named async-daemon"),
            ("fn parse_args", "29-1 is named async-daemon"),
            ("fn main", "threads and signal-hook, or tokio"),
            ("fn run", "threads and signal-hook, or tokio"),
            ("fn serve", "threads and signal-hook, or tokio"),
            ("fn accept_waiting", "threads and signal-hook, or tokio"),
            ("fn drain", "threads and signal-hook, or tokio"),
            ("fn close_gently", "a blocking socket, or tokio's"),
            ("struct Server", "threads and signal-hook, or tokio"),
            ("impl Server", "threads and signal-hook, or tokio"),
            ("struct Backoff", "poll's timeout, or tokio's sleep"),
            ("impl Backoff", "poll's timeout, or tokio's sleep"),
            (
                "struct Args",
                "each shows its own mistakes: --flag-only and --no-backoff, or \
                 --untracked",
            ),
        ],
    },
    Family {
        only: &[],
        files: &[
            "ch16-unix/16-01-unix-server.rs",
            "ch30-async-sockets/30-01-async-server.rs",
        ],
        renamed: &[
            (
                "ch16-unix/16-01-unix-server.rs",
                &[
                    ("unix-server", "tcp-threads"),
                    ("UnixStream", "TcpStream"),
                    ("UnixListener", "TcpListener"),
                ],
            ),
            (
                "ch30-async-sockets/30-01-async-server.rs",
                // tokio's `Signal` takes the plain name there.
                &[("NixSignal", "Signal")],
            ),
        ],
        different: &[
            (
                "const USAGE",
                "30-1 serves TCP or a Unix socket, lines or frames",
            ),
            (
                "struct Config",
                "30-1 serves TCP or a Unix socket, lines or frames",
            ),
            (
                "enum Place",
                "30-1 serves TCP or a Unix socket, lines or frames",
            ),
            (
                "fn parse_args",
                "30-1 serves TCP or a Unix socket, lines or frames",
            ),
            ("fn main", "threads, or tokio"),
            ("fn run", "threads, or tokio"),
            ("fn serve", "threads, or tokio"),
            ("fn close_gently", "a blocking socket, or tokio's"),
            ("fn refuse", "a blocking socket, or tokio's"),
            ("impl Backoff", "thread::sleep, or tokio's sleep"),
            ("struct Slot", "30-1 evicts through a cancellation token"),
            ("impl Slot", "30-1 evicts through a cancellation token"),
            (
                "impl Drop for Slot",
                "30-1 evicts through a cancellation token",
            ),
            (
                "const SPARE_FDS",
                "tokio holds descriptors of its own: epoll, an eventfd, the \
                 signal socket pair",
            ),
            ("enum Line", "30-1's log is written by a thread of its own"),
            ("fn log", "30-1's log is written by a thread of its own"),
        ],
    },
    Family {
        files: &[
            "ch28-async-signals/28-01-async-ctrl-c.rs",
            "ch28-async-signals/28-02-async-signals.rs",
            "ch29-async-shutdown/29-01-async-daemon.rs",
            "ch30-async-sockets/30-01-async-server.rs",
        ],
        // How each multi-threaded tokio listing starts its runtime; the
        // rest of each is its own.
        only: &["fn runtime", "fn worker_threads"],
        different: &[],
        renamed: &[
            (
                "ch28-async-signals/28-02-async-signals.rs",
                &[("async-signals", "async-ctrl-c")],
            ),
            (
                "ch29-async-shutdown/29-01-async-daemon.rs",
                &[("async-daemon", "async-ctrl-c")],
            ),
            (
                "ch30-async-sockets/30-01-async-server.rs",
                &[("async-server", "async-ctrl-c")],
            ),
        ],
    },
    Family {
        files: &[
            "ch28-async-signals/28-02-async-signals.rs",
            "ch29-async-shutdown/29-01-async-daemon.rs",
            "ch30-async-sockets/30-01-async-server.rs",
            "ch31-async-children/31-02-async-child-kill.rs",
        ],
        // The tokio listings that stop on SIGINT, SIGTERM and SIGHUP block
        // them before the runtime starts, and unblock them on the main
        // thread once the streams exist: no signal comes while tokio
        // registers it.
        only: &["fn block_stop_signals", "fn unblock_stop_signals"],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch10-daemon/10-01-sig-daemon.rs",
            "ch28-async-signals/28-02-async-signals.rs",
            "ch29-async-shutdown/29-01-async-daemon.rs",
        ],
        // One rule for a stop signal that follows the first: within this
        // long, a wrapper passing it on, and the same stop. 28-2's
        // `same_stop` says "cleaning up on", not "draining on".
        only: &["const SAME_STOP"],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch28-async-signals/28-01-async-ctrl-c.rs",
            "ch29-async-shutdown/29-02-async-shutdown-tools.rs",
        ],
        // 29-2 also needs its panic hook for a later `spawn_blocking`, so
        // there the hook is a function of its own, and `runtime` differs.
        only: &["fn worker_threads"],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch28-async-signals/28-01-async-ctrl-c.rs",
            "ch28-async-signals/28-02-async-signals.rs",
            "ch31-async-children/31-02-async-child-kill.rs",
            "ch32-async-blocking/32-01-async-block.rs",
            "ch32-async-blocking/32-02-async-budget.rs",
        ],
        // The tokio listings that keep SIGPIPE ignored, so that a reader
        // who has gone does not end them before their clean-up: a line
        // nobody reads is not said, and any other failure to write is
        // reported at the end.
        only: &["fn say", "static UNSAID", "fn unsaid"],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch28-async-signals/28-01-async-ctrl-c.rs",
            "ch28-async-signals/28-02-async-signals.rs",
        ],
        // The two that wait for signals say they are ready with `ready`:
        // with no reader from the start there is nobody to serve, and they
        // end at once.
        only: &["fn ready"],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch31-async-children/31-01-async-child-feed.rs",
            "ch31-async-children/31-02-async-child-kill.rs",
            "ch32-async-blocking/32-02-async-budget.rs",
        ],
        // The single-threaded runtimes. (32-1 chooses its flavour from
        // its options, so it builds its own.)
        only: &["fn runtime"],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch17-udp/17-02-udp-echo.rs",
            "ch17-udp/17-03-udp-request.rs",
        ],
        // A datagram anyone may send, shown escaped and cut after 64
        // bytes: the server's request, the client's ignored datagram.
        only: &["const SHOWN", "fn shown"],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch10-daemon/10-01-sig-daemon.rs",
            "ch10-daemon/10-02-sig-notify.rs",
            "ch12-exiting/12-01-sig-cleanup.rs",
            "ch15-poll/15-03-net-load.rs",
            "ch16-unix/16-01-unix-server.rs",
            "ch16-unix/16-03-unix-pass-fd.rs",
            "ch22-fifos/22-01-fifo-spam.rs",
            "ch22-fifos/22-02-fifo-open.rs",
            "ch30-async-sockets/30-01-async-server.rs",
        ],
        // A path the user gave, escaped in every message that shows it;
        // 22-2's comes from TMPDIR. (29-1 shares it with 10-1 as it
        // shares everything.)
        only: &["fn escaped"],
        different: &[],
        renamed: &[],
    },
    Family {
        files: &[
            "ch19-ends/19-03-pipe-leak.rs",
            "ch23-pipelines/23-03-spawn-grandchild.rs",
        ],
        // Who holds a pipe's write end, found in /proc: every descriptor
        // open for writing, alone or with reading, names its holder.
        only: &["fn write_end_holders", "fn opened_for_writing"],
        different: &[],
        renamed: &[],
    },
];

/// An item of a family that may differ only in the lines named here, each
/// given as it reads in one of the files: those lines are left out of
/// every file's copy, and the rest is compared as usual.
struct Lines {
    files: &'static [&'static str],
    item: &'static str,
    lines: &'static [&'static str],
    why: &'static str,
}

const DIFFERENT_LINES: &[Lines] = &[
    Lines {
        files: &[
            "ch03-sockets/03-02-socket-preview.rs",
            "ch03-sockets/03-03-socket-modes.rs",
        ],
        item: "fn answer",
        lines: &[
            "fn answer(mut conn: TcpStream) -> io::Result<()>",
            "fn answer(mut conn: TcpStream) -> io::Result<Vec<u8>>",
            "Ok(())",
            "Ok(data[..n].to_vec())",
        ],
        why: "3-3 returns the request, for its log",
    },
    Lines {
        files: &[
            "ch03-sockets/03-02-socket-preview.rs",
            "ch03-sockets/03-03-socket-modes.rs",
        ],
        item: "fn client",
        lines: &[
            "fn client(addr: SocketAddr, name: &str) -> io::Result<Vec<u8>>",
            "fn client(addrs: &[SocketAddr], name: &str) -> io::Result<Vec<u8>>",
            "let mut sock = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;",
            "let mut sock = connect(addrs)?;",
        ],
        why: "3-3 tries every address a name gives, within CLIENT_TIMEOUT \
              in all",
    },
];

/// `items` of `path`, with the lines `DIFFERENT_LINES` names for the
/// family of `files` left out; a named line found in none of the files is
/// a problem, as a stale `different` entry is.
fn items_but_named_lines(
    files: &[&str],
    renamed: Renamed,
    problems: &mut Vec<String>,
) -> Vec<BTreeMap<String, String>> {
    let mut parsed: Vec<_> =
        files.iter().map(|path| items(path, renamed)).collect();
    for entry in DIFFERENT_LINES {
        if !entry.files.iter().all(|f| files.contains(f)) {
            continue;
        }
        // Compared without spaces: syn prints the tokens of an item and
        // of a line parsed alone with different spacing (`> >`, `>>`).
        let squeeze = |code: &str| code.split_whitespace().collect::<String>();
        for items in &mut parsed {
            if let Some(code) = items.get_mut(entry.item) {
                *code = squeeze(code);
            }
        }
        for line in entry.lines {
            let tokens: proc_macro2::TokenStream =
                line.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            let tokens = squeeze(&tokens.to_string());
            let mut found = false;
            for items in &mut parsed {
                if let Some(code) = items.get_mut(entry.item) {
                    found |= code.contains(&tokens);
                    *code = code.replace(&tokens, "");
                }
            }
            if !found {
                problems.push(format!(
                    "`{}`: no file of {:?} has the line `{line}`, named \
                     because {}",
                    entry.item, entry.files, entry.why
                ));
            }
        }
    }
    parsed
}

/// The top-level items of a listing by name (`fn serve`, `impl Table`,
/// `impl Drop for Table`), each as its tokens without attributes that are
/// documentation: what the compiler sees, not the comments around it.
fn items(path: &str, renamed: Renamed) -> BTreeMap<String, String> {
    let source = read(&workspace_root().join("listings").join(path));
    let file = syn::parse_file(&source)
        .unwrap_or_else(|e| panic!("listings/{path}: {e}"));
    let mut items = BTreeMap::new();
    for mut item in file.items {
        let name = match &item {
            Item::Fn(f) => format!("fn {}", f.sig.ident),
            Item::Struct(s) => format!("struct {}", s.ident),
            Item::Enum(e) => format!("enum {}", e.ident),
            Item::Const(c) => format!("const {}", c.ident),
            Item::Static(s) => format!("static {}", s.ident),
            Item::Type(t) => format!("type {}", t.ident),
            Item::Impl(i) => {
                let ty = i.self_ty.to_token_stream().to_string();
                match &i.trait_ {
                    Some((_, t, _)) => {
                        format!("impl {} for {ty}", t.to_token_stream())
                    }
                    None => format!("impl {ty}"),
                }
            }
            _ => continue,
        };
        strip_docs(&mut item);
        let mut code = item.to_token_stream().to_string();
        for (file, words) in renamed {
            if *file == path {
                for (from, to) in *words {
                    code = code.replace(from, to);
                }
            }
        }
        items.insert(name, code);
    }
    items
}

fn strip_docs(item: &mut Item) {
    let keep = |attrs: &mut Vec<Attribute>| {
        attrs.retain(|a| !a.path().is_ident("doc"));
    };
    match item {
        Item::Fn(f) => keep(&mut f.attrs),
        Item::Struct(s) => {
            keep(&mut s.attrs);
            for field in s.fields.iter_mut() {
                keep(&mut field.attrs);
            }
        }
        Item::Enum(e) => {
            keep(&mut e.attrs);
            for variant in &mut e.variants {
                keep(&mut variant.attrs);
            }
        }
        Item::Const(c) => keep(&mut c.attrs),
        Item::Static(s) => keep(&mut s.attrs),
        Item::Type(t) => keep(&mut t.attrs),
        Item::Impl(i) => {
            keep(&mut i.attrs);
            for inner in &mut i.items {
                match inner {
                    ImplItem::Fn(f) => keep(&mut f.attrs),
                    ImplItem::Const(c) => keep(&mut c.attrs),
                    ImplItem::Type(t) => keep(&mut t.attrs),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// The items shared by name between two listings whose code differs,
/// other than those in `different`.
fn drifted(
    (a, a_items): (&str, &BTreeMap<String, String>),
    (b, b_items): (&str, &BTreeMap<String, String>),
    different: &[(&str, &str)],
) -> Vec<String> {
    a_items
        .iter()
        .filter(|(name, code)| {
            b_items.get(*name).is_some_and(|other| other != *code)
                && !different.iter().any(|(item, _)| item == name)
        })
        .map(|(name, _)| format!("`{name}` differs between {a} and {b}"))
        .collect()
}

#[test]
fn sibling_listings_share_their_common_code_unchanged() {
    let mut problems = Vec::new();
    for family in FAMILIES {
        let mut parsed =
            items_but_named_lines(family.files, family.renamed, &mut problems);
        if !family.only.is_empty() {
            // A family that names its items: each has them all, and only
            // those are compared.
            for (path, items) in family.files.iter().zip(&mut parsed) {
                for name in family.only {
                    if !items.contains_key(*name) {
                        problems.push(format!("{path} has no `{name}`"));
                    }
                }
                items.retain(|name, _| family.only.contains(&name.as_str()));
            }
        }
        for (i, a) in family.files.iter().enumerate() {
            for (j, b) in family.files.iter().enumerate().skip(i + 1) {
                problems.extend(drifted(
                    (a, &parsed[i]),
                    (b, &parsed[j]),
                    family.different,
                ));
            }
        }
        // An item listed as different must still differ somewhere.
        for (item, _) in family.different {
            let versions: std::collections::BTreeSet<_> =
                parsed.iter().filter_map(|items| items.get(*item)).collect();
            if versions.len() < 2 {
                problems.push(format!(
                    "`{item}` is listed as different, but is the same in {:?}",
                    family.files
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "a fix to one sibling listing must reach the others, or the item \
         must be listed as different, with the reason:\n{}",
        problems.join("\n")
    );
}

/// The comparison sees code and ignores documentation.
#[test]
fn siblings_are_compared_by_code_not_comments() {
    let parse = |source: &str| {
        let file = syn::parse_file(source).unwrap();
        let mut map = BTreeMap::new();
        for mut item in file.items {
            if let Item::Fn(f) = &item {
                let name = format!("fn {}", f.sig.ident);
                strip_docs(&mut item);
                map.insert(name, item.to_token_stream().to_string());
            }
        }
        map
    };
    let a = parse("/// One.\nfn f() -> u8 { 1 } // a comment\nfn g() {}");
    let b = parse("/// Another.\nfn f() -> u8 {\n    1\n}\nfn g() { h() }");
    assert_eq!(
        drifted(("a", &a), ("b", &b), &[]),
        ["`fn g` differs between a and b"]
    );
    assert!(drifted(("a", &a), ("b", &b), &[("fn g", "why")]).is_empty());
}

/// Small functions that many listings carry, each the same code wherever
/// it is: a fix to one (such as unblocking the signal a parent left
/// blocked) must reach them all. With the fewest copies each must have.
const EVERYWHERE_THE_SAME: &[(&str, usize)] = &[
    ("fn restore_sigpipe", 50),
    ("fn unblock_sigpipe", 2),
    ("fn is_broken_pipe", 32),
    ("fn default_sigchld", 4),
    ("fn log", 11),
    ("fn keep_zombies", 9),
    ("fn keep_own_zombies", 11),
    ("fn sigchld_as_found", 11),
    ("fn unblock_sigchld", 3),
    ("fn ignore_sigxfsz", 4),
    ("fn waitid_raw", 7),
    ("fn reap_raw", 8),
    ("fn unexpected", 98),
];

/// Listings whose `log` is not the one line on stderr the others write
/// with one `write`, each with the reason.
const LOG_OF_ITS_OWN: &[(&str, &str)] = &[
    ("ch10-daemon/10-01-sig-daemon.rs", "a thread writes the log"),
    ("ch10-daemon/10-02-sig-notify.rs", "a thread writes the log"),
    (
        "ch29-async-shutdown/29-01-async-daemon.rs",
        "a thread writes the log",
    ),
    (
        "ch30-async-sockets/30-01-async-server.rs",
        "a thread writes the log",
    ),
];

/// `code` with the program's name in a `log` line replaced: each
/// listing's line starts with its own name.
fn without_program_name(code: &str) -> String {
    let start = "format ! (\"";
    let Some((before, after)) = code.split_once(start) else {
        return code.to_string();
    };
    match after.split_once(": {message}") {
        Some((_, rest)) => format!("{before}{start}NAME: {{message}}{rest}"),
        None => code.to_string(),
    }
}

#[test]
fn functions_many_listings_carry_are_the_same_code_in_each() {
    let root = workspace_root().join("listings");
    let mut versions: BTreeMap<&str, BTreeMap<String, Vec<String>>> =
        BTreeMap::new();
    for chapter in std::fs::read_dir(&root).expect("listings/") {
        let chapter = chapter.expect("an entry").path();
        let Some(name) = chapter.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with("ch") || !chapter.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&chapter).expect("a chapter") {
            let file = file.expect("an entry").path();
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let path = file.strip_prefix(&root).unwrap().to_str().unwrap();
            let mut items = items(path, &[]);
            for (function, _) in EVERYWHERE_THE_SAME {
                if *function == "fn log"
                    && LOG_OF_ITS_OWN.iter().any(|(file, _)| *file == path)
                {
                    continue;
                }
                let Some(code) = items.remove(*function) else {
                    continue;
                };
                let code = without_program_name(&code);
                // Where tokio's `signal` and `Signal` take the plain
                // names, a listing calls nix's by longer ones; some name
                // `io::ErrorKind` in full rather than import it.
                let code = code
                    .replace("nix :: sys :: signal :: signal", "signal")
                    .replace("NixSignal", "Signal")
                    .replace("io :: ErrorKind", "ErrorKind");
                let copies = versions.entry(function).or_default();
                copies.entry(code).or_default().push(path.to_string());
            }
        }
    }
    for (function, fewest) in EVERYWHERE_THE_SAME {
        let copies = versions.remove(function).unwrap_or_default();
        let count: usize = copies.values().map(Vec::len).sum();
        assert!(count >= *fewest, "`{function}`: only {count} copies");
        assert!(
            copies.len() == 1,
            "`{function}` differs between listings; one of each version:\n{}",
            copies
                .values()
                .map(|paths| format!(
                    "{} listings, e.g. {}",
                    paths.len(),
                    paths[0]
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
