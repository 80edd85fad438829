//! The book's index of system calls and APIs, `src/appendix-index.md`, is
//! generated from the listings and must be up to date: a listing that
//! starts or stops using an API changes the index, and this test fails
//! until it is regenerated with `BLESS=1 cargo test -p book-tests index`.
//!
//! What counts as a use, read from each listing's source with `syn` and
//! the tokens it makes (no type checking, so the rules stay simple and
//! predictable; comments and string literals are never code):
//!
//! - a function or associated function of nix, libc, signal-hook,
//!   socket2, tokio, tokio-util or the parts of std that talk to the
//!   kernel (`net`, `os`, `process`, `thread`, `fs`, `io`, `sync`), called
//!   by a path, through the file's `use` declarations or written out in
//!   full, anywhere, inside macros such as `tokio::select!` too:
//!   `fork()`, `alarm::set(…)`, `task::spawn_blocking(…)`;
//! - an attribute such as `#[tokio::main]`;
//! - a method call `.name(…)` listed in [`METHODS`] for a type the file
//!   imports, or for a type that one it imports hands out (a `Child` from
//!   a `Command`): `.accept()` in a file that imports `TcpListener`.
//!
//! [`SYSTEM_CALLS`] names the system calls behind the APIs it knows; an
//! API it does not know still gets its row, with that column empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use regex::Regex;
use syn::visit::Visit;

use crate::support::{files_with_extension, from_root, read, workspace_root};

/// Where the index lives, relative to the workspace root.
const INDEX: &str = "src/appendix-index.md";

/// Path prefixes whose functions the index lists.
const INDEXED: &[&str] = &[
    "nix::",
    "libc::",
    "signal_hook::",
    "socket2::",
    "std::net::",
    "std::os::",
    "std::process::",
    "std::thread::",
    "std::fs::",
    "std::io::",
    "std::sync::",
    "tokio::",
    "tokio_util::",
];

/// Calls that are plumbing, not the subject of any chapter.
const IGNORED: &[&str] = &[
    "std::io::Error::new",
    "std::io::Error::other",
    "std::io::Error::from",
    "std::io::Error::from_raw_os_error",
    "std::io::Error::last_os_error",
    "std::io::ErrorKind",
    "std::sync::Arc::new",
    "std::sync::Arc::clone",
    "std::sync::mpsc::channel",
    "nix::sys::signal::Signal::iterator",
    "nix::sys::time::TimeSpec::from_duration",
    "socket2::Domain::for_address",
    "std::sync::mpsc::sync_channel",
];

/// Types whose associated functions only name a value: which signal
/// `tokio::signal::unix::signal` is for.
const VALUES: &[&str] = &["tokio::signal::unix::SignalKind::"];

/// Associated functions that only build a value.
const CONSTRUCTORS: &[&str] = &[
    "new",
    "empty",
    "from",
    "default",
    "with_capacity",
    "all",
    "try_from",
    "from_raw",
    "from_bits_retain",
];

/// Functions that only build a value, yet are what a chapter is about.
const BUILT_ON_PURPOSE: &[&str] = &[
    "tokio_util::sync::CancellationToken::new",
    "tokio_util::task::TaskTracker::new",
];

/// Types whose methods count where the file imports a type that hands
/// them out, without naming them: `Command::spawn` gives a `Child`.
const HANDED_OUT: &[(&str, &[&str])] = &[
    ("std::process::Child", &["std::process::Command"]),
    ("tokio::process::Child", &["tokio::process::Command"]),
    ("std::net::TcpStream", &["std::net::TcpListener"]),
    (
        "std::os::unix::net::UnixStream",
        &["std::os::unix::net::UnixListener"],
    ),
    (
        "tokio::signal::unix::Signal",
        &["tokio::signal::unix::signal"],
    ),
];

/// Methods the index recognises, by the type that has them: a call
/// `.method(` counts for each of these types that the file imports.
const METHODS: &[(&str, &[&str])] = &[
    (
        "std::net::TcpListener",
        &["accept", "incoming", "local_addr", "set_nonblocking"],
    ),
    (
        "std::net::TcpStream",
        &[
            "shutdown",
            "set_read_timeout",
            "set_write_timeout",
            "peer_addr",
        ],
    ),
    ("std::net::UdpSocket", &["send_to", "recv_from", "connect"]),
    (
        "std::os::unix::net::UnixListener",
        &["accept", "incoming", "local_addr"],
    ),
    (
        "std::os::unix::net::UnixStream",
        &["shutdown", "set_read_timeout", "pair"],
    ),
    (
        "std::os::unix::process::CommandExt",
        &["pre_exec", "process_group", "exec"],
    ),
    (
        "std::os::unix::process::ExitStatusExt",
        &["signal", "core_dumped"],
    ),
    ("std::process::Command", &["spawn", "output", "status"]),
    ("std::process::Child", &["wait", "try_wait", "kill"]),
    (
        "tokio::process::Command",
        &["spawn", "kill_on_drop", "output", "status"],
    ),
    (
        "tokio::process::Child",
        &["wait", "kill", "start_kill", "wait_with_output"],
    ),
    (
        "tokio_util::sync::CancellationToken",
        &["cancel", "cancelled", "child_token"],
    ),
    (
        "tokio_util::task::TaskTracker",
        &["spawn", "close", "wait", "track_future"],
    ),
    ("std::io::BufRead", &["lines", "read_line"]),
    (
        "std::io::Read",
        &["read_to_end", "read_to_string", "read_exact"],
    ),
    ("std::io::Write", &["write_all", "flush"]),
    ("std::sync::Barrier", &["wait"]),
    ("std::thread::Builder", &["spawn"]),
    (
        "signal_hook::iterator::Signals",
        &["forever", "pending", "wait"],
    ),
    (
        "tokio::net::TcpListener",
        &["accept", "local_addr", "into_std"],
    ),
    ("tokio::net::UnixListener", &["accept", "local_addr"]),
    (
        "tokio::net::TcpSocket",
        &["bind", "listen", "set_reuseaddr"],
    ),
    ("tokio::signal::unix::Signal", &["recv"]),
    (
        "socket2::Socket",
        &[
            "bind",
            "listen",
            "set_only_v6",
            "set_reuse_address",
            "set_reuse_port",
        ],
    ),
];

/// The system calls behind an API, as `name(section)`, for the APIs the
/// index knows; each links to its manual page.
const SYSTEM_CALLS: &[(&str, &str)] = &[
    ("libc::_exit", "_exit(2)"),
    ("nix::poll::poll", "poll(2)"),
    ("nix::sys::prctl::set_pdeathsig", "prctl(2)"),
    ("nix::sys::signal::kill", "kill(2)"),
    ("nix::sys::signal::killpg", "killpg(3)"),
    ("nix::sys::signal::sigaction", "sigaction(2)"),
    ("nix::sys::signal::signal", "sigaction(2)"),
    ("nix::sys::socket::accept", "accept(2)"),
    ("nix::sys::socket::bind", "bind(2)"),
    ("nix::sys::socket::connect", "connect(2)"),
    ("nix::sys::socket::getsockname", "getsockname(2)"),
    ("nix::sys::socket::listen", "listen(2)"),
    ("nix::sys::socket::recvmsg", "recvmsg(2)"),
    ("nix::sys::socket::sendmsg", "sendmsg(2)"),
    ("nix::sys::socket::setsockopt", "setsockopt(2)"),
    ("nix::sys::socket::socket", "socket(2)"),
    ("nix::sys::socket::socketpair", "socketpair(2)"),
    ("nix::sys::wait::waitpid", "waitpid(2)"),
    ("nix::unistd::alarm::set", "alarm(2)"),
    ("nix::unistd::fork", "fork(2)"),
    ("nix::unistd::getpid", "getpid(2)"),
    ("nix::unistd::getppid", "getppid(2)"),
    ("nix::unistd::pause", "pause(2)"),
    ("nix::unistd::pipe", "pipe(2)"),
    ("nix::unistd::read", "read(2)"),
    ("nix::unistd::write", "write(2)"),
    (
        "signal_hook::iterator::Signals::new",
        "sigaction(2), socketpair(2)",
    ),
    ("signal_hook::iterator::Signals::forever", "recvfrom(2)"),
    ("std::io::Write::flush", "write(2)"),
    ("std::io::Write::write_all", "write(2)"),
    ("std::io::Read::read_to_end", "read(2)"),
    ("std::io::BufRead::lines", "read(2)"),
    ("std::net::TcpListener::accept", "accept4(2)"),
    (
        "std::net::TcpListener::bind",
        "socket(2), bind(2), listen(2)",
    ),
    ("std::net::TcpListener::incoming", "accept4(2)"),
    ("std::net::TcpListener::local_addr", "getsockname(2)"),
    ("std::net::TcpStream::connect", "socket(2), connect(2)"),
    (
        "std::net::TcpStream::connect_timeout",
        "socket(2), connect(2), poll(2)",
    ),
    ("std::net::TcpStream::set_read_timeout", "setsockopt(2)"),
    ("std::net::TcpStream::set_write_timeout", "setsockopt(2)"),
    ("std::net::TcpStream::shutdown", "shutdown(2)"),
    ("std::process::Command::spawn", "posix_spawn(3)"),
    ("std::process::exit", "exit(3)"),
    ("libc::chdir", "chdir(2)"),
    ("libc::execv", "execv(3)"),
    ("libc::getitimer", "getitimer(2)"),
    ("libc::kill", "kill(2)"),
    ("libc::open", "open(2)"),
    ("libc::pthread_kill", "pthread_kill(3)"),
    ("libc::pthread_self", "pthread_self(3)"),
    ("libc::pthread_sigmask", "pthread_sigmask(3)"),
    ("libc::setitimer", "setitimer(2)"),
    ("libc::sigaction", "sigaction(2)"),
    ("libc::sigaddset", "sigaddset(3)"),
    ("libc::sigemptyset", "sigemptyset(3)"),
    ("libc::sigtimedwait", "sigtimedwait(2)"),
    ("libc::sysconf", "sysconf(3)"),
    ("libc::timer_create", "timer_create(2)"),
    ("libc::timer_delete", "timer_delete(2)"),
    ("libc::timer_settime", "timer_settime(2)"),
    ("libc::waitid", "waitid(2)"),
    ("libc::waitpid", "waitpid(2)"),
    ("libc::write", "write(2)"),
    ("nix::errno::Errno::last", "errno(3)"),
    ("nix::errno::Errno::last_raw", "errno(3)"),
    ("nix::errno::Errno::set_raw", "errno(3)"),
    ("nix::fcntl::fcntl", "fcntl(2)"),
    ("nix::fcntl::open", "open(2)"),
    ("nix::fcntl::splice", "splice(2)"),
    ("nix::fcntl::vmsplice", "vmsplice(2)"),
    ("nix::sys::prctl::set_child_subreaper", "prctl(2)"),
    ("nix::sys::prctl::set_dumpable", "prctl(2)"),
    ("nix::sys::resource::getrusage", "getrusage(2)"),
    (
        "nix::sys::signal::SigSet::thread_get_mask",
        "pthread_sigmask(3)",
    ),
    ("nix::sys::signal::pthread_sigmask", "pthread_sigmask(3)"),
    ("nix::sys::signal::raise", "raise(3)"),
    ("nix::sys::signal::sigprocmask", "sigprocmask(2)"),
    ("nix::sys::signalfd::SignalFd::with_flags", "signalfd(2)"),
    ("nix::sys::socket::getsockopt", "getsockopt(2)"),
    ("nix::sys::socket::recv", "recv(2)"),
    ("nix::sys::socket::send", "send(2)"),
    ("nix::sys::stat::fstat", "fstat(2)"),
    ("nix::sys::stat::umask", "umask(2)"),
    ("nix::sys::wait::waitid", "waitid(2)"),
    ("nix::unistd::alarm::cancel", "alarm(2)"),
    ("nix::unistd::dup3_raw", "dup3(2)"),
    ("nix::unistd::dup2_stdin", "dup2(2)"),
    ("nix::unistd::dup2_stdout", "dup2(2)"),
    ("nix::unistd::execvp", "execvp(3)"),
    ("nix::unistd::getpgid", "getpgid(2)"),
    ("nix::unistd::getpgrp", "getpgrp(2)"),
    ("nix::unistd::getsid", "getsid(2)"),
    ("nix::unistd::geteuid", "geteuid(2)"),
    ("nix::unistd::isatty", "isatty(3)"),
    ("nix::time::clock_gettime", "clock_gettime(2)"),
    ("nix::sys::utsname::uname", "uname(2)"),
    ("nix::sys::termios::tcgetattr", "termios(3)"),
    ("nix::sys::termios::tcsetattr", "termios(3)"),
    ("nix::sys::resource::getrlimit", "getrlimit(2)"),
    ("nix::sys::resource::setrlimit", "getrlimit(2)"),
    ("nix::sys::mman::madvise", "madvise(2)"),
    ("nix::sys::mman::mmap_anonymous", "mmap(2)"),
    ("nix::sys::eventfd::EventFd::from_flags", "eventfd(2)"),
    ("nix::sched::sched_getaffinity", "sched_getaffinity(2)"),
    ("nix::sched::sched_setaffinity", "sched_setaffinity(2)"),
    ("nix::fcntl::Flock::lock", "flock(2)"),
    ("libc::dup2", "dup2(2)"),
    ("libc::fcntl", "fcntl(2)"),
    ("libc::ioctl", "ioctl(2)"),
    ("libc::mkdtemp", "mkdtemp(3)"),
    ("libc::mmap", "mmap(2)"),
    ("libc::sigismember", "sigsetops(3)"),
    ("libc::signal", "signal(2)"),
    ("libc::sigpending", "sigpending(2)"),
    ("libc::syscall", "syscall(2)"),
    ("nix::unistd::gettid", "gettid(2)"),
    ("nix::unistd::mkdtemp", "mkdtemp(3)"),
    ("nix::unistd::mkfifo", "mkfifo(3)"),
    ("nix::unistd::pipe2", "pipe2(2)"),
    ("nix::unistd::setpgid", "setpgid(2)"),
    ("nix::unistd::setsid", "setsid(2)"),
    ("nix::unistd::sysconf", "sysconf(3)"),
    ("nix::unistd::tcgetpgrp", "tcgetpgrp(3)"),
    ("nix::unistd::tcsetpgrp", "tcsetpgrp(3)"),
    ("signal_hook::flag::register", "sigaction(2)"),
    (
        "signal_hook::flag::register_conditional_shutdown",
        "sigaction(2)",
    ),
    ("signal_hook::flag::register_usize", "sigaction(2)"),
    ("signal_hook::iterator::Signals::pending", "recvfrom(2)"),
    ("signal_hook::iterator::Signals::wait", "recvfrom(2)"),
    (
        "signal_hook::low_level::emulate_default_handler",
        "sigaction(2), sigprocmask(2), raise(3)",
    ),
    ("signal_hook::low_level::register", "sigaction(2)"),
    ("std::fs::remove_dir", "rmdir(2)"),
    ("std::fs::remove_file", "unlink(2)"),
    ("std::fs::read_link", "readlink(2)"),
    ("std::fs::set_permissions", "chmod(2)"),
    ("std::net::TcpStream::peer_addr", "getpeername(2)"),
    ("std::net::UdpSocket::bind", "socket(2), bind(2)"),
    ("std::net::UdpSocket::connect", "connect(2)"),
    ("std::net::UdpSocket::recv_from", "recvfrom(2)"),
    ("std::net::UdpSocket::send_to", "sendto(2)"),
    (
        "std::os::unix::net::UnixListener::bind",
        "socket(2), bind(2), listen(2)",
    ),
    ("std::os::unix::net::UnixListener::incoming", "accept4(2)"),
    (
        "std::os::unix::net::UnixStream::connect",
        "socket(2), connect(2)",
    ),
    ("std::os::unix::net::UnixStream::pair", "socketpair(2)"),
    (
        "std::os::unix::net::UnixStream::set_read_timeout",
        "setsockopt(2)",
    ),
    ("std::os::unix::net::UnixStream::shutdown", "shutdown(2)"),
    (
        "std::process::Command::output",
        "posix_spawn(3), waitpid(2)",
    ),
    (
        "std::process::Command::status",
        "posix_spawn(3), waitpid(2)",
    ),
    ("std::process::Stdio::piped", "pipe2(2)"),
    ("std::process::id", "getpid(2)"),
    ("std::process::Child::wait", "waitpid(2)"),
    ("std::process::Child::try_wait", "waitpid(2)"),
    ("std::process::Child::kill", "kill(2)"),
    ("socket2::Socket::new", "socket(2)"),
    ("socket2::Socket::bind", "bind(2)"),
    ("socket2::Socket::listen", "listen(2)"),
    ("socket2::Socket::set_only_v6", "setsockopt(2)"),
    ("socket2::Socket::set_reuse_address", "setsockopt(2)"),
    ("socket2::Socket::set_reuse_port", "setsockopt(2)"),
    ("std::thread::Builder::spawn", "clone3(2)"),
    ("std::thread::sleep", "clock_nanosleep(2)"),
    ("std::thread::spawn", "clone3(2)"),
    ("tokio::net::TcpListener::accept", "accept4(2)"),
    (
        "tokio::net::TcpListener::bind",
        "socket(2), bind(2), listen(2)",
    ),
    ("tokio::net::TcpSocket::new_v4", "socket(2)"),
    ("tokio::net::TcpSocket::new_v6", "socket(2)"),
    ("tokio::net::TcpSocket::bind", "bind(2)"),
    ("tokio::net::TcpSocket::listen", "listen(2)"),
    ("tokio::net::TcpSocket::set_reuseaddr", "setsockopt(2)"),
    (
        "tokio::net::UnixListener::bind",
        "socket(2), bind(2), listen(2)",
    ),
    ("tokio::net::UnixListener::accept", "accept4(2)"),
    ("tokio::signal::unix::signal", "sigaction(2), socketpair(2)"),
];

/// One listing: its number, its chapter page, and its source.
struct Listing {
    number: String,
    page: String,
    source: String,
}

/// Every listing, in book order, from `listings/chNN-topic/NN-MM-*.rs`.
fn listings() -> Vec<Listing> {
    static NAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^ch(\d\d)-([a-z0-9-]+)/(\d\d)-(\d\d)-[a-z0-9-]+\.rs$")
            .unwrap()
    });
    let root = workspace_root().join("listings");
    let mut found = Vec::new();
    for file in files_with_extension(&root, "rs") {
        let relative = file.strip_prefix(&root).unwrap().to_string_lossy();
        let Some(cap) = NAME.captures(&relative) else {
            continue;
        };
        let chapter: u32 = cap[1].parse().unwrap();
        let number: u32 = cap[4].parse().unwrap();
        found.push((
            (chapter, number),
            Listing {
                number: format!("{chapter}-{number}"),
                page: format!("ch{}-{}.md", &cap[1], &cap[2]),
                source: read(&file),
            },
        ));
    }
    found.sort_by_key(|(key, _)| *key);
    found.into_iter().map(|(_, listing)| listing).collect()
}

/// The names a file's `use` declarations bring in, each with its full
/// path: `use std::io::{self, Write}` gives `io` → `std::io` and `Write`
/// → `std::io::Write`. `nix::libc` is spelled `libc`. Declarations inside
/// functions count too.
fn imports(file: &syn::File) -> BTreeMap<String, String> {
    struct Uses(BTreeMap<String, String>);
    impl<'ast> Visit<'ast> for Uses {
        fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
            use_tree("", &item.tree, &mut self.0);
        }
    }
    let mut uses = Uses(BTreeMap::new());
    uses.visit_file(file);
    uses.0
}

/// Adds the names of one use tree, under `prefix`.
fn use_tree(
    prefix: &str,
    tree: &syn::UseTree,
    names: &mut BTreeMap<String, String>,
) {
    match tree {
        syn::UseTree::Path(path) => {
            let prefix = format!("{prefix}{}::", path.ident);
            use_tree(&prefix, &path.tree, names);
        }
        syn::UseTree::Name(name) if name.ident == "self" => {
            let module = prefix.trim_end_matches("::");
            let last = module.rsplit("::").next().unwrap_or(module);
            names.insert(last.to_string(), canonical(module));
        }
        syn::UseTree::Name(name) => {
            let full = canonical(&format!("{prefix}{}", name.ident));
            names.insert(name.ident.to_string(), full);
        }
        syn::UseTree::Rename(rename) => {
            let full = canonical(&format!("{prefix}{}", rename.ident));
            names.insert(rename.rename.to_string(), full);
        }
        syn::UseTree::Group(group) => {
            for tree in &group.items {
                use_tree(prefix, tree, names);
            }
        }
        syn::UseTree::Glob(_) => {}
    }
}

/// `#[cfg(test)] mod tests { … }`, and anything else only tests build.
fn is_cfg_test(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Mod(module) => &module.attrs,
        syn::Item::Fn(function) => &function.attrs,
        syn::Item::Use(import) => &import.attrs,
        _ => return false,
    };
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Path>()
                .is_ok_and(|path| path.is_ident("test"))
    })
}

/// `nix::libc::x` and `libc::x` are the same item.
fn canonical(path: &str) -> String {
    path.strip_prefix("nix::libc::")
        .map_or_else(|| path.to_string(), |rest| format!("libc::{rest}"))
}

/// What the tokens of a file call: paths followed by arguments
/// (`a::b::c(…)`, `a::b::<T>(…)`), methods (`.name(…)`), and attribute
/// paths (`#[tokio::main]`), each as written.
#[derive(Default)]
struct Calls {
    paths: BTreeSet<String>,
    /// Each method called, with the type whose function starts its chain
    /// where the call is written so (`thread::Builder::new()….spawn(…)`),
    /// as written.
    methods: BTreeSet<(String, Option<String>)>,
}

impl Calls {
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        // The type of the function call that starts the chain of method
        // calls being read, if one does.
        let mut root: Option<String> = None;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Punct(p)
                    if matches!(p.as_char(), ';' | ',' | '=') =>
                {
                    root = None;
                    i += 1;
                }
                TokenTree::Group(group) => {
                    let inner = group.stream();
                    if group.delimiter() == Delimiter::Bracket
                        && i > 0
                        && is_punct(&tokens[i - 1], '#')
                    {
                        // An attribute: its path is what it uses.
                        let path =
                            path_at(&inner.into_iter().collect::<Vec<_>>(), 0)
                                .0;
                        if !path.is_empty() {
                            self.paths.insert(path);
                        }
                    }
                    self.scan(group.stream());
                    i += 1;
                }
                TokenTree::Ident(ident) => {
                    let after_dot = i > 0 && is_punct(&tokens[i - 1], '.');
                    let after_fn = i > 0
                        && matches!(&tokens[i - 1], TokenTree::Ident(k) if k == "fn");
                    let (path, next) = path_at(&tokens, i);
                    let called = tokens.get(next).is_some_and(|t| {
                        matches!(t, TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis)
                    });
                    if called && !after_fn {
                        if after_dot {
                            self.methods
                                .insert((ident.to_string(), root.clone()));
                        } else {
                            root = path
                                .rsplit_once("::")
                                .map(|(ty, _)| ty.to_string());
                            self.paths.insert(path);
                        }
                    } else if !after_dot {
                        // A variable or a keyword: its type is unknown.
                        root = None;
                    }
                    i = next.max(i + 1);
                }
                _ => i += 1,
            }
        }
    }
}

fn is_punct(token: &TokenTree, c: char) -> bool {
    matches!(token, TokenTree::Punct(p) if p.as_char() == c)
}

/// The path that starts at `tokens[start]` (`a::b::c`, with any
/// `::<…>` left out), and the index of the token after it.
fn path_at(tokens: &[TokenTree], start: usize) -> (String, usize) {
    let mut path = String::new();
    let mut i = start;
    while let Some(TokenTree::Ident(ident)) = tokens.get(i) {
        path.push_str(&ident.to_string());
        i += 1;
        let colons = tokens.get(i).is_some_and(|t| is_punct(t, ':'))
            && tokens.get(i + 1).is_some_and(|t| is_punct(t, ':'));
        if !colons {
            break;
        }
        i += 2;
        if tokens.get(i).is_some_and(|t| is_punct(t, '<')) {
            // A turbofish: skip to the matching `>`; the call follows.
            let mut depth = 0;
            while let Some(token) = tokens.get(i) {
                if is_punct(token, '<') {
                    depth += 1;
                } else if is_punct(token, '>') {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                i += 1;
            }
            break;
        }
        path.push_str("::");
    }
    (path, i)
}

/// The APIs `source` uses, as full paths.
fn apis_used(source: &str) -> BTreeSet<String> {
    let file = syn::parse_file(source).expect("a listing that parses");
    // A listing's own tests may name types the program does not (std's
    // `UnixStream::pair` to drive tokio's): a method call counts for a
    // type only where the same part names it. The tests also see the
    // program's imports (`use super::*`).
    let (tests, program): (Vec<syn::Item>, Vec<syn::Item>) =
        file.items.into_iter().partition(is_cfg_test);
    let part = |items| syn::File {
        shebang: None,
        attrs: Vec::new(),
        items,
    };
    let (program, tests) = (part(program), part(tests));
    let mut used = used_in(&program, &imports(&program));
    let mut names = imports(&program);
    names.extend(imports(&tests));
    used.extend(used_in(&tests, &names));
    used
}

/// What one part of a listing calls, given the names it imports.
fn used_in(
    file: &syn::File,
    names: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut calls = Calls::default();
    calls.scan(file.to_token_stream());
    let mut used = BTreeSet::new();
    for written in &calls.paths {
        let head = written.split("::").next().unwrap();
        let full = match names.get(head) {
            Some(path) => {
                canonical(&format!("{path}{}", &written[head.len()..]))
            }
            None if written.contains("::") => canonical(written),
            None => continue,
        };
        used.insert(full);
    }
    // The types the file names: imported, or written before a call of
    // one of their functions (`process::Command::new(…)`).
    let mut named: BTreeSet<String> = names.values().cloned().collect();
    named.extend(
        used.iter()
            .filter_map(|path| Some(path.rsplit_once("::")?.0.to_string())),
    );
    let imported = |ty: &str| {
        named.contains(ty)
            || HANDED_OUT.iter().any(|(handed, by)| {
                *handed == ty && by.iter().any(|b| named.contains(*b))
            })
    };
    for (method, root) in &calls.methods {
        // A chain that starts with a type's function is that type's (in
        // Listing 12-5, `.spawn` after `thread::Builder::new()` is not
        // `Command`'s, which the file imports too); otherwise every
        // imported type that has the method counts.
        let root = root.as_ref().map(|written| {
            let head = written.split("::").next().unwrap();
            match names.get(head) {
                Some(path) => {
                    canonical(&format!("{path}{}", &written[head.len()..]))
                }
                None => canonical(written),
            }
        });
        let of_root = METHODS.iter().find(|(ty, methods)| {
            Some(*ty) == root.as_deref() && methods.contains(&method.as_str())
        });
        if let Some((ty, _)) = of_root {
            used.insert(format!("{ty}::{method}"));
            continue;
        }
        for (ty, methods) in METHODS {
            if methods.contains(&method.as_str()) && imported(ty) {
                used.insert(format!("{ty}::{method}"));
            }
        }
    }
    used.retain(|path| {
        let last = path.rsplit("::").next().unwrap_or_default();
        let known = SYSTEM_CALLS.iter().any(|(api, _)| api == path)
            || BUILT_ON_PURPOSE.contains(&path.as_str());
        INDEXED.iter().any(|prefix| path.starts_with(prefix))
            && !IGNORED.contains(&path.as_str())
            && !VALUES.iter().any(|prefix| path.starts_with(prefix))
            // Building a value (`PollFd::new`, `SigSet::empty`) is not
            // using the kernel, unless the tables say it is.
            && (known || !CONSTRUCTORS.contains(&last))
            // A function, not a tuple struct or a variant.
            && last.starts_with(|c: char| c.is_lowercase() || c == '_')
    });
    used
}

/// The index page, as Markdown.
fn generate() -> String {
    let mut uses: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for listing in listings() {
        for api in apis_used(&listing.source) {
            uses.entry(api)
                .or_default()
                .push((listing.number.clone(), listing.page.clone()));
        }
    }
    let mut page = String::from(
        "# Appendix: index of system calls and APIs\n\
         \n\
         Every function of nix, libc, signal-hook and socket2 that a \
         listing of this book calls, every function of the standard \
         library's modules that deal with the system (`net`, `os`, \
         `process`, `thread`, `fs`, `io` and `sync`), and what the async \
         listings of Part VI use of tokio and tokio-util, with the system \
         calls behind it, where the index knows them, and the listings \
         that call it. Each listing \
         number links to the listing in its chapter; each system call to \
         its manual page.\n\
         \n\
         <!-- Generated from the listings by tests/index.rs: do not edit. \
         Regenerate with `BLESS=1 cargo test -p book-tests index`. -->\n\
         \n\
         | API | System calls | Listings |\n\
         | --- | --- | --- |\n",
    );
    for (api, places) in &uses {
        let calls = SYSTEM_CALLS
            .iter()
            .find(|(known, _)| known == api)
            .map_or_else(String::new, |(_, calls)| man_links(calls));
        let listings: Vec<String> = places
            .iter()
            .map(|(number, page)| {
                // A non-breaking hyphen: "4-4" never wraps as "4-" / "4".
                let shown = number.replace('-', "\u{2011}");
                format!("[{shown}]({page}#listing-{number})")
            })
            .collect();
        page.push_str(&format!(
            "| `{api}` | {calls} | {} |\n",
            listings.join(", ")
        ));
    }
    page
}

/// `poll(2), kill(2)` as links to man7.org.
fn man_links(calls: &str) -> String {
    calls
        .split(", ")
        .map(|call| {
            let (name, section) = call
                .trim_end_matches(')')
                .split_once('(')
                .expect("name(section)");
            format!(
                "[`{name}`({section})](https://man7.org/linux/man-pages/\
                 man{section}/{name}.{section}.html)"
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The APIs of nix and libc that make no system call and wrap no C
/// library function with a manual page of its own.
const USER_SPACE_ONLY: &[&str] = &[
    "nix::errno::Errno::result",
    "nix::sys::signal::SigSet::from_iter",
    "nix::sys::signal::SigSet::from_sigset_t_unchecked",
    "nix::sys::stat::Mode::from_bits_truncate",
];

/// nix and libc are thin layers over the system: a reader who meets one of
/// their functions in the index wants its manual page. Every nix or libc
/// function the index lists links to one, unless it is on
/// [`USER_SPACE_ONLY`].
#[test]
fn every_nix_and_libc_function_links_its_manual_page() {
    let index = read(&workspace_root().join("src/appendix-index.md"));
    let row =
        Regex::new(r"(?m)^\| `((?:nix|libc)::[A-Za-z0-9_:]+)` \|([^|]*)\|")
            .unwrap();
    let missing: Vec<_> = row
        .captures_iter(&index)
        .filter(|cap| {
            cap[2].trim().is_empty() && !USER_SPACE_ONLY.contains(&&cap[1])
        })
        .map(|cap| cap[1].to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "no manual page in SYSTEM_CALLS for: {}",
        missing.join(", ")
    );
}

#[test]
fn the_index_of_system_calls_and_apis_is_up_to_date() {
    let path = workspace_root().join(INDEX);
    let generated = generate();
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the index");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "{} is not what the listings say; regenerate it with \
         `BLESS=1 cargo test -p book-tests index` and read the diff",
        from_root(Path::new(&path))
    );
}

#[test]
fn the_index_reads_use_trees_and_calls() {
    let source = r#"
        use nix::unistd::{alarm, fork, ForkResult};
        use std::io::{self, Write};
        use std::net::{TcpListener as Listener};
        use std::process::Command;
        use tokio::task;
        #[tokio::main]
        async fn main() {
            alarm::set(5);
            let _ = fork();
            io::stdout().flush();
            nix::libc::_exit(0);
            let l = Listener::bind("x");
            l.accept(); // fork() in a comment
            let usage = "a string that goes on \
                         to the next line, pause()";
            nix::unistd::getpid();
            let _ = nix::libc::getppid();
            let n = "7".parse::<u32>();
            let status = Command::new("true").spawn().unwrap().wait();
            tokio::select! {
                _ = task::spawn_blocking(|| 1) => {}
            }
        }
        fn pause() {}
    "#;
    let used: Vec<String> = apis_used(source).into_iter().collect();
    assert_eq!(
        used,
        [
            "libc::_exit",
            "libc::getppid",
            "nix::unistd::alarm::set",
            "nix::unistd::fork",
            "nix::unistd::getpid",
            "std::io::Write::flush",
            "std::io::stdout",
            "std::net::TcpListener::accept",
            "std::net::TcpListener::bind",
            "std::process::Child::wait",
            "std::process::Command::spawn",
            "tokio::main",
            "tokio::task::spawn_blocking",
        ]
    );
    // Std's `UnixStream`, named only by the listing's tests, must not
    // make the program's call of tokio's `shutdown` std's.
    let tested = r#"
        use tokio::net::UnixStream;
        async fn close(mut s: UnixStream) {
            s.shutdown().await;
        }
        #[cfg(test)]
        mod tests {
            fn pair() {
                let _ = std::os::unix::net::UnixStream::pair();
            }
        }
    "#;
    assert_eq!(
        apis_used(tested).into_iter().collect::<Vec<_>>(),
        ["std::os::unix::net::UnixStream::pair"]
    );
    // Two imported types with a `spawn`: a chain that starts with one of
    // them is that one's; a variable's call counts for both.
    let both = r#"
        use std::process::Command;
        use std::thread;
        fn main() {
            let t = thread::Builder::new().name("a".into()).spawn(|| 1);
            let status = Command::new("true").status();
        }
    "#;
    assert_eq!(
        apis_used(both).into_iter().collect::<Vec<_>>(),
        [
            "std::process::Command::status",
            "std::thread::Builder::spawn"
        ]
    );
    let unknown = r#"
        use std::process::Command;
        use std::thread::Builder;
        fn start(builder: Builder) {
            let t = builder.spawn(|| 1);
        }
    "#;
    assert_eq!(
        apis_used(unknown).into_iter().collect::<Vec<_>>(),
        [
            "std::process::Command::spawn",
            "std::thread::Builder::spawn"
        ]
    );
}
