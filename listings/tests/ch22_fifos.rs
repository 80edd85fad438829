//! Chapter 22, Named pipes: Listings 22-1 (`fifo-spam`) and 22-2
//! (`fifo-open`).
//!
//! Every FIFO the tests make, or make a listing make, lives in a temporary
//! directory that is removed when the test ends, passed or failed.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;
use tempfile::TempDir;

use crate::support::{
    Listing, assert_exited_with, assert_rejects,
    assert_session_matches_book_masking, bin_path, cargo_run, children_of,
    finish_clean, have, run_clean, shell, state_of, wait_until, wchan_of,
    with_thread_limit,
};

/// A `fifo-spam` reader that makes its private directory in `tmp`.
fn reader_in(tmp: &Path, args: &[&str]) -> (Listing, PathBuf) {
    let mut command = Command::new(bin_path("fifo-spam"));
    command.arg("reader").args(args).env("TMPDIR", tmp);
    let mut reader = Listing::spawn(&mut command, Stdio::piped());
    let line = reader.expect(r"Waiting for a writer on (\S+) \(pid (\d+)\)");
    assert_eq!(line[2], reader.pid().to_string());
    (reader, PathBuf::from(&line[1]))
}

fn tmp() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Whatever is left in a directory.
fn contents(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .expect("the directory")
        .map(|e| e.unwrap().path())
        .collect()
}

/// Removes a directory a listing was to remove, should a failing test
/// leave it behind.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fifo_spam_reader_makes_a_private_fifo_and_removes_it_at_the_end() {
    let tmp = tmp();
    let (mut reader, fifo) = reader_in(tmp.path(), &[]);
    let dir = fifo.parent().unwrap();
    assert_eq!(dir.parent().unwrap(), tmp.path());
    // The directory is the reader's alone, and so is the FIFO.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode();
    assert_eq!(mode(dir) & 0o777, 0o700);
    assert_eq!(mode(&fifo) & 0o777, 0o600);
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());

    let fifo_arg = fifo.to_str().unwrap();
    let writer = Listing::start(
        bin!("fifo-spam"),
        &["writer", fifo_arg, "--count", "6"],
    );
    let mut got = Vec::new();
    for _ in 0..6 {
        let line = reader.expect(r#"Parent (\d+) got "(.*)" at \d+\.\d+"#);
        assert_eq!(line[1], reader.pid().to_string());
        got.push(line[2].clone());
    }
    assert_eq!(
        got,
        [
            "Spam 000", "Spam 001", "Spam 002", "Spam 003", "Spam 004",
            "Spam 000"
        ]
    );
    let out = finish_clean(writer);
    assert!(out.status.success(), "{}", out.stderr);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout.last().unwrap(),
        "End of stream: no writer has the FIFO open"
    );
    assert!(
        contents(tmp.path()).is_empty(),
        "{:?}",
        contents(tmp.path())
    );
}

/// Three writers share the FIFO, and their nine lines come out whole.
/// Their writes, about a millisecond apart at every line, seldom meet:
/// this shows that the writers can share the FIFO, not that one `write`
/// per line keeps lines whole, which the strace test below shows.
#[test]
fn fifo_spam_writers_share_a_fifo_and_every_line_arrives_whole() {
    let tmp = tmp();
    let (mut reader, fifo) = reader_in(tmp.path(), &[]);
    // Hold a write end ourselves, so that the reader sees no end of the
    // stream between one writer's last line and the other's first.
    let keep_open = OpenOptions::new().write(true).open(&fifo).unwrap();
    let fifo_arg = fifo.to_str().unwrap();
    let writers: Vec<_> = (0..3)
        .map(|_| {
            Listing::start(
                bin!("fifo-spam"),
                &["writer", fifo_arg, "--count", "3"],
            )
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..9 {
        got.push(
            reader
                .expect(r#"Parent \d+ got "(.*)" at \d+\.\d+"#)
                .remove(1),
        );
    }
    for writer in writers {
        assert!(finish_clean(writer).status.success());
    }
    drop(keep_open);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 11, "{:?}", out.stdout);
    assert_eq!(out.stdout[10], "End of stream: no writer has the FIFO open");
    // Nine lines in, nine whole lines out, three of each.
    got.sort();
    let expected: Vec<_> = ["Spam 000", "Spam 001", "Spam 002"]
        .iter()
        .flat_map(|line| [*line; 3])
        .collect();
    assert_eq!(got, expected);
    assert!(contents(tmp.path()).is_empty());
}

/// Each line goes into the FIFO with one `write`, the whole line, which is
/// what keeps several writers' lines apart: strace shows the writer's
/// writes, one per line. The test of three writers above cannot show it
/// alone: the writers' writes, microseconds each, come about a millisecond
/// apart at every line, not only the first (strace -ttt: 0.1 to 1.6 ms),
/// so they seldom meet, and with each line split in two writes it passed
/// in 7 runs of 11.
#[test]
fn fifo_spam_writer_puts_each_line_in_with_one_write() {
    if !have("strace") {
        return;
    }
    let tmp = tmp();
    let (reader, fifo) = reader_in(tmp.path(), &[]);
    let trace = tmp.path().join("trace");
    let mut command = Command::new("strace");
    command
        .args(["-qq", "-e", "trace=write", "-e", "signal=none", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(bin_path("fifo-spam"))
        .arg("writer")
        .arg(&fifo)
        .args(["--count", "3"]);
    let writer = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(writer.status.success(), "{}", writer.stderr);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    // `write(FD, "…", N) = N` (strace pads before the `=`), to any
    // descriptor but standard output.
    let write =
        regex::Regex::new(r#"^write\((\d+), "(.*)", \d+\) += \d+$"#).unwrap();
    let trace = fs::read_to_string(&trace).unwrap();
    let to_fifo: Vec<String> = trace
        .lines()
        .filter_map(|line| write.captures(line))
        .filter(|w| &w[1] != "1")
        .map(|w| w[2].to_string())
        .collect();
    assert_eq!(
        to_fifo,
        [r"Spam 000\n", r"Spam 001\n", r"Spam 002\n"],
        "{trace}"
    );
}

/// A line may end in "\r\n", as lines of network protocols and of
/// Windows programs do: the reader drops the "\r" too, as `lines()` does.
/// A "\r" elsewhere in a line is kept, and printed escaped, as is every
/// control character: printed raw, an escape sequence such as ESC [2J
/// (clear the screen) acted on the terminal instead of showing.
#[test]
fn fifo_spam_reader_drops_the_carriage_return_of_a_crlf_line() {
    let tmp = tmp();
    let (mut reader, fifo) = reader_in(tmp.path(), &[]);
    // Blocks until the reader has the FIFO open too.
    let mut writer = OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(b"Spam 000\r\nSpam\r001\n").unwrap();
    writer.write_all(b"ab\x1b[2Jcd\n").unwrap();
    drop(writer);
    reader.expect(r#"^Parent \d+ got "Spam 000" at \d+\.\d+$"#);
    // Any other control character arrives escaped, as Rust writes it.
    reader.expect(r#"^Parent \d+ got "Spam\\r001" at \d+\.\d+$"#);
    reader.expect(r#"^Parent \d+ got "ab\\u\{1b\}\[2Jcd" at \d+\.\d+$"#);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
}

/// A byte that is not UTF-8, from any writer, is shown escaped as Rust
/// writes a byte, `\xff`, and the reader goes on: it used to end with
/// "stream did not contain valid UTF-8", and remove its FIFO, before the
/// next line.
#[test]
fn fifo_spam_reader_shows_a_byte_that_is_not_utf8_escaped_and_goes_on() {
    let tmp = tmp();
    let (mut reader, fifo) = reader_in(tmp.path(), &[]);
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            r"printf 'Spam 000\n\377 one bad byte\nSpam 001\n' >$1",
        ])
        .arg("sh")
        .arg(&fifo);
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(out.status.success(), "{}", out.stderr);
    reader.expect(r#"Parent \d+ got "Spam 000" at \d+\.\d+"#);
    reader.expect(r#"Parent \d+ got "\\xff one bad byte" at \d+\.\d+"#);
    reader.expect(r#"Parent \d+ got "Spam 001" at \d+\.\d+"#);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout.last().map(String::as_str),
        Some("End of stream: no writer has the FIFO open")
    );
}

/// A reader that should outlive its writers keeps a write end open: the
/// end of the stream does not come while writers come and go, one after
/// the other. The test holds that write end, as such a reader would.
/// Without it, the reader ends when the first writer exits, and the
/// second waits in `open` for a reader that is gone. (The test of three
/// writers above cannot show this: its writers run together.)
#[test]
fn fifo_spam_reader_outlives_writers_one_after_another_while_a_write_end_is_held()
 {
    let tmp = tmp();
    let (mut reader, fifo) = reader_in(tmp.path(), &[]);
    let keep_open = OpenOptions::new().write(true).open(&fifo).unwrap();
    let fifo_arg = fifo.to_str().unwrap();
    for _ in 0..3 {
        let args = ["writer", fifo_arg, "--count", "1"];
        let writer = run_clean(bin!("fifo-spam"), &args);
        assert!(writer.status.success(), "{}", writer.stderr);
        reader.expect(r#"Parent \d+ got "Spam 000" at \d+\.\d+"#);
    }
    drop(keep_open);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    // "Waiting…", three lines, and only then the end of the stream.
    assert_eq!(out.stdout.len(), 5, "{:?}", out.stdout);
    assert_eq!(out.stdout[4], "End of stream: no writer has the FIFO open");
    assert!(contents(tmp.path()).is_empty());
}

/// Why a reader that outlives its writers holds a write end instead of
/// opening the FIFO again at the end of the stream (Linux 6.18; POSIX
/// discards a pipe's bytes when its last descriptor closes). Between the
/// end of the stream and the reader's close, a writer's `open` and
/// `write` succeed, and its line goes with the pipe when the reader
/// closes: the new open reads an empty pipe. Held open with `O_RDWR`
/// (Linux), the FIFO never reaches the end of the stream, and the same
/// line arrives.
#[test]
fn fifo_reader_that_reopens_loses_a_line_that_a_held_write_end_keeps() {
    use std::io::{ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let linux = format!("Linux {}", crate::support::kernel());
    let tmp = tmp();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let open_reader = |rdwr: bool| {
        OpenOptions::new()
            .read(true)
            .write(rdwr)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(&fifo)
            .unwrap()
    };
    let send = |line: &[u8]| {
        let mut writer = OpenOptions::new().write(true).open(&fifo).unwrap();
        assert_eq!(writer.write(line).unwrap(), line.len(), "{linux}");
    };
    let read = |reader: &mut fs::File| {
        let mut buf = [0; 64];
        reader.read(&mut buf).map(|n| buf[..n].to_vec())
    };
    for rdwr in [false, true] {
        let mut reader = open_reader(rdwr);
        send(b"one\n");
        assert_eq!(read(&mut reader).unwrap(), b"one\n", "{linux}");
        let after = read(&mut reader);
        if rdwr {
            // A write end is open, ours: no end of the stream.
            let err = after.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::WouldBlock, "{linux}");
        } else {
            assert_eq!(after.unwrap(), b"", "end of stream; {linux}");
        }
        // A writer comes before the reader has reopened: accepted.
        send(b"two\n");
        if !rdwr {
            drop(reader);
            reader = open_reader(false);
        }
        let got = read(&mut reader).unwrap();
        let expected: &[u8] = if rdwr { b"two\n" } else { b"" };
        assert_eq!(got, expected, "O_RDWR: {rdwr}; {linux}");
    }
    // A writer that still has the FIFO open when the reader closes keeps
    // the pipe and its line for the reader's new open; what it loses is
    // its next write while no reader has the FIFO open (EPIPE here, where
    // SIGPIPE is ignored; SIGPIPE kills a writer that has its default).
    let mut reader = open_reader(false);
    send(b"one\n");
    assert_eq!(read(&mut reader).unwrap(), b"one\n", "{linux}");
    assert_eq!(read(&mut reader).unwrap(), b"", "end of stream; {linux}");
    let mut writer = OpenOptions::new().write(true).open(&fifo).unwrap();
    assert_eq!(writer.write(b"two\n").unwrap(), 4, "{linux}");
    drop(reader);
    let err = writer.write(b"three\n").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{linux}");
    let mut reader = open_reader(false);
    assert_eq!(read(&mut reader).unwrap(), b"two\n", "{linux}");
}

#[test]
fn fifo_spam_reader_removes_its_fifo_when_a_signal_ends_it() {
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // Once blocked in `open`, waiting for a writer: the "Waiting" line
        // comes just before the `open`, so the main thread (whose tid is
        // the pid) must be seen asleep in it...
        let tmp = tmp();
        let (reader, _) = reader_in(tmp.path(), &[]);
        wait_until("the reader to wait in open", || {
            wchan_of(reader.pid()) == "wait_for_partner"
        });
        reader.signal(signal);
        let out = finish_clean(reader);
        assert_eq!(out.status.signal(), Some(signal as i32), "{}", out.stderr);
        assert!(contents(tmp.path()).is_empty(), "{signal}: left behind");

        // ...and once reading from a writer.
        let tmp = self::tmp();
        let (mut reader, fifo) = reader_in(tmp.path(), &[]);
        let _writer = Listing::start(
            bin!("fifo-spam"),
            &["writer", fifo.to_str().unwrap()],
        );
        reader.next_line();
        reader.signal(signal);
        let out = finish_clean(reader);
        assert_eq!(out.status.signal(), Some(signal as i32), "{}", out.stderr);
        assert!(contents(tmp.path()).is_empty(), "{signal}: left behind");
    }
}

/// `nohup` starts a program with SIGHUP ignored, and a script's `&` with
/// SIGINT ignored: those signals are meant for others, and the reader must
/// leave them ignored, not catch them and die of them. A parent may also
/// leave SIGTERM blocked, through `exec`: the reader must unblock what it
/// catches. `env` plays both parents; SIGHUP and SIGINT come first, then
/// SIGTERM, and the reader must die of SIGTERM, its directory removed.
#[test]
fn fifo_spam_reader_keeps_ignored_signals_ignored_and_unblocks_the_others() {
    let tmp = tmp();
    let mut command = Command::new("env");
    command
        .args(["--ignore-signal=HUP", "--ignore-signal=INT"])
        .arg("--block-signal=TERM")
        .arg(bin_path("fifo-spam"))
        .arg("reader")
        .env("TMPDIR", tmp.path());
    let mut reader = Listing::spawn(&mut command, Stdio::piped());
    reader.expect(r"Waiting for a writer on \S+ \(pid \d+\)");
    reader.signal(Signal::SIGHUP);
    reader.signal(Signal::SIGINT);
    reader.signal(Signal::SIGTERM);
    let out = finish_clean(reader);
    let term = Some(Signal::SIGTERM as i32);
    assert_eq!(out.status.signal(), term, "{:?} {}", out.status, out.stderr);
    assert!(contents(tmp.path()).is_empty(), "left behind");
}

/// SIGTERM is the one stop signal the reader takes whatever it found: a
/// parent that left it ignored does not make the reader ignore `kill`.
/// It dies of it, its directory removed, as without `env`.
#[test]
fn fifo_spam_reader_stops_on_sigterm_even_when_started_with_it_ignored() {
    let tmp = tmp();
    let mut command = Command::new("env");
    command
        .arg("--ignore-signal=TERM")
        .arg(bin_path("fifo-spam"))
        .arg("reader")
        .env("TMPDIR", tmp.path());
    let mut reader = Listing::spawn(&mut command, Stdio::piped());
    reader.expect(r"Waiting for a writer on \S+ \(pid \d+\)");
    reader.signal(Signal::SIGTERM);
    let out = finish_clean(reader);
    let term = Some(Signal::SIGTERM as i32);
    assert_eq!(out.status.signal(), term, "{:?} {}", out.status, out.stderr);
    assert!(contents(tmp.path()).is_empty(), "left behind");
}

#[test]
fn fifo_spam_reader_as_pid_1_removes_its_fifo_and_exits_143_on_sigterm() {
    // The kernel drops a PID 1's own raise of SIGTERM: a reader that ended
    // with emulate_default_handler fell through to abort(), dropped too,
    // and died of SIGSEGV (status 139).
    let tmp = tmp();
    let fifo = tmp.path().join("fifo");
    let args = ["reader", "--fifo", fifo.to_str().unwrap()];
    let ready = r"Waiting for a writer on \S+ \(pid 1\)";
    let Some((reader, pid)) =
        crate::support::as_pid_1(bin!("fifo-spam"), &args, ready)
    else {
        return;
    };
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let out = finish_clean(reader);
    assert_exited_with(&out, 143);
    assert!(contents(tmp.path()).is_empty(), "left behind");
}

/// A signal that comes while the reader makes its directory and FIFO:
/// strace holds the reader for a second on its way out of the `mknodat`
/// that made the FIFO, and the test sends SIGTERM then.
#[test]
fn fifo_spam_reader_removes_its_fifo_when_a_signal_comes_while_it_makes_it() {
    if !have("strace") {
        return;
    }
    let tmp = tmp();
    let mut command = Command::new("strace");
    command
        .args(["-q", "-e", "trace=mknodat", "-e", "signal=none"])
        .args(["-e", "inject=mknodat:delay_exit=1000000", "--"])
        .arg(bin_path("fifo-spam"))
        .arg("reader")
        .env("TMPDIR", tmp.path());
    let traced = Listing::spawn(&mut command, Stdio::piped());
    let mut reader = None;
    wait_until("strace to hold fifo-spam in mknodat", || {
        reader = children_of(traced.pid()).into_iter().find(|&child| {
            fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "fifo-spam")
        });
        let made = contents(tmp.path())
            .iter()
            .any(|dir| dir.join("fifo").exists());
        made && reader.is_some_and(|pid| state_of(pid) == Some('t'))
    });
    nix::sys::signal::kill(reader.unwrap(), Signal::SIGTERM).unwrap();
    let out = finish_clean(traced);
    // strace ends the way the reader did.
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    assert!(contents(tmp.path()).is_empty(), "left behind");
}

#[test]
fn fifo_spam_reader_removes_its_fifo_when_it_fails() {
    let tmp = tmp();
    let (reader, fifo) = reader_in(tmp.path(), &[]);
    // A line longer than PIPE_BUF is an error for the reader. One write:
    // the reader, refusing the line, may be gone before a second.
    let mut fifo = OpenOptions::new().write(true).open(&fifo).unwrap();
    let mut line = vec![b'x'; 4097];
    line.push(b'\n');
    fifo.write_all(&line).unwrap();
    drop(fifo);
    let out = finish_clean(reader);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        "fifo-spam: a line longer than 4096 bytes, refused\n"
    );
    assert!(contents(tmp.path()).is_empty());
}

/// A last line of 4096 bytes without its newline, then the end of the
/// stream: the line is whole, not longer than the cap, and is printed.
/// The first version refused it as "longer than 4096 bytes".
#[test]
fn fifo_spam_reader_takes_a_last_line_of_4096_bytes_without_its_newline() {
    let tmp = tmp();
    let (reader, fifo) = reader_in(tmp.path(), &[]);
    let mut fifo = OpenOptions::new().write(true).open(&fifo).unwrap();
    fifo.write_all(&[b'a'; 4096]).unwrap();
    drop(fifo);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stderr, "");
    let stdout = out.stdout.join("\n");
    assert!(stdout.contains(&format!("got \"{}\"", "a".repeat(4096))));
    assert_eq!(
        out.stdout.last().map(String::as_str),
        Some("End of stream: no writer has the FIFO open")
    );
    assert!(contents(tmp.path()).is_empty());
}

#[test]
fn fifo_spam_reader_refuses_a_line_longer_than_pipe_buf() {
    let tmp = tmp();
    let (reader, fifo) = reader_in(tmp.path(), &[]);
    let mut fifo = OpenOptions::new().write(true).open(&fifo).unwrap();
    // A line of PIPE_BUF bytes, its newline included, is taken; one byte
    // more is refused before the reader holds the rest of it.
    let longest = format!("{}\n", "a".repeat(4095));
    fifo.write_all(longest.as_bytes()).unwrap();
    // The reader goes away while this waits: EPIPE, which is the point.
    let _ = fifo.write_all(&[b'b'; 100_000]);
    drop(fifo);
    let out = finish_clean(reader);
    let stdout = out.stdout.join("\n");
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "fifo-spam: a line longer than 4096 bytes, refused\n"
    );
    assert!(stdout.contains(&format!("got \"{}\"", "a".repeat(4095))));
    // Not a `b` anywhere: the "Waiting" line names the FIFO's path, in a
    // temporary directory with a random name, which had one in a CI run.
    assert!(!stdout.contains("got \"b"), "the long line was printed");
    assert!(contents(tmp.path()).is_empty());
}

#[test]
fn fifo_spam_reader_removes_its_fifo_when_its_output_goes_away() {
    let tmp = tmp();
    let mut command = Command::new(bin_path("fifo-spam"));
    command.arg("reader").env("TMPDIR", tmp.path());
    let stdout = crate::support::stdout_to_a_widowed_pipe(&mut command);
    let out = finish_clean(Listing::spawn(&mut command, stdout));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(contents(tmp.path()).is_empty());
}

/// Several writers may share one standard error (Chapter 22 starts them
/// from one shell), so each reports its failure in one `write`, as Chapter
/// 20's writers do; `writeln!` on stderr would write the prefix, the
/// message and the newline apart, and lines of writers failing together
/// would mix.
#[test]
fn fifo_spam_writer_reports_its_failure_in_one_write() {
    if !have("strace") {
        return;
    }
    let tmp = tmp();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
    let trace = tmp.path().join("trace");
    let out = crate::support::run(
        "strace",
        &[
            "-qq",
            "-s",
            "512",
            "-e",
            "trace=write",
            "-o",
            trace.to_str().unwrap(),
            "--",
            bin!("fifo-spam"),
            "writer",
            fifo.to_str().unwrap(),
            "--no-wait",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let trace = fs::read_to_string(&trace).unwrap();
    let to_stderr: Vec<&str> = trace
        .lines()
        .filter(|line| line.starts_with("write(2, "))
        .collect();
    assert_eq!(to_stderr.len(), 1, "{trace}");
    assert!(
        to_stderr[0].contains(r#"or leave out --no-wait to wait for it\n""#),
        "{trace}"
    );
}

#[test]
fn fifo_spam_writer_without_a_reader_fails_with_enxio_or_waits() {
    let tmp = tmp();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
    let fifo_arg = fifo.to_str().unwrap();
    let out = run_clean(bin!("fifo-spam"), &["writer", fifo_arg, "--no-wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        format!(
            "fifo-spam: {fifo_arg}: no reader has it open yet (ENXIO); start \
             the reader first and try again once it waits in open, or leave \
             out --no-wait to wait for it\n"
        )
    );
    // Without --no-wait, it waits in `open` for a reader.
    let mut writer = Listing::start(bin!("fifo-spam"), &["writer", fifo_arg]);
    let pid = writer.pid();
    wait_until("the writer to wait in open", || {
        wchan_of(pid) == "wait_for_partner"
    });
    assert!(writer.no_line_within(std::time::Duration::from_millis(200)));
}

/// A blocking `open` of a FIFO never fails with ENXIO (`fifo_open()` in
/// fs/pipe.c); on Linux (6.18 here) a Unix socket's does, with or without
/// O_NONBLOCK (`no_open()` in fs/inode.c, open(2)). The writer says the
/// path is not a FIFO, as its check of an ordinary file does; the first
/// version told the user to leave out a `--no-wait` they had not given.
#[test]
fn fifo_spam_writer_on_a_unix_socket_says_it_is_not_a_fifo() {
    let tmp = tmp();
    let socket = tmp.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let socket_arg = socket.to_str().unwrap();
    for args in [
        &["writer", socket_arg][..],
        &["writer", socket_arg, "--no-wait"],
    ] {
        let out = run_clean(bin!("fifo-spam"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!("fifo-spam: {socket_arg} is not a FIFO\n"),
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
    }
    assert!(
        fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
}

/// The reader's failed `open` names the path, as every other error of the
/// listing does: a dangling symbolic link given with `--fifo` (mkfifo finds
/// the link, EEXIST; open follows it, ENOENT), and a Unix socket, which is
/// not a FIFO. Both are left where they were. The first version printed a
/// bare "No such file or directory (os error 2)".
#[test]
fn fifo_spam_reader_names_the_path_it_cannot_open() {
    let tmp = tmp();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(tmp.path().join("nonexistent"), &link).unwrap();
    let socket = tmp.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (link_arg, socket_arg) =
        (link.to_str().unwrap(), socket.to_str().unwrap());
    let cases = [
        (
            link_arg,
            format!(
                "fifo-spam: {link_arg}: No such file or directory (os error 2)\n"
            ),
        ),
        (
            socket_arg,
            format!("fifo-spam: {socket_arg} is not a FIFO\n"),
        ),
    ];
    for (path, expected) in cases {
        let out = run_clean(bin!("fifo-spam"), &["reader", "--fifo", path]);
        assert_eq!(out.status.code(), Some(1), "{path}: {}", out.stderr);
        assert_eq!(out.stderr, expected, "{path}");
    }
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
}

#[test]
fn fifo_spam_writer_dies_of_sigpipe_once_the_reader_has_gone() {
    let tmp = tmp();
    let (reader, fifo) = reader_in(tmp.path(), &["--count", "1"]);
    let writer =
        Listing::start(bin!("fifo-spam"), &["writer", fifo.to_str().unwrap()]);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    // Its first line, the one it took, and no end of stream.
    assert_eq!(out.stdout.len(), 2, "{:?}", out.stdout);
    assert!(out.stdout[1].contains(r#" got "Spam 000" at "#));
    // Its second line, a second later, has nobody to read it.
    let out = finish_clean(writer);
    assert_eq!(out.status.signal(), Some(Signal::SIGPIPE as i32));
    assert!(contents(tmp.path()).is_empty());
}

#[test]
fn fifo_spam_reader_leaves_a_fifo_it_did_not_make() {
    let tmp = tmp();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
    let fifo_arg = fifo.to_str().unwrap();
    let mut command = Command::new(bin_path("fifo-spam"));
    command.args(["reader", "--fifo", fifo_arg, "--count", "1"]);
    let mut reader = Listing::spawn(&mut command, Stdio::piped());
    reader.next_line();
    let writer = Listing::start(
        bin!("fifo-spam"),
        &["writer", fifo_arg, "--count", "1"],
    );
    assert!(finish_clean(reader).status.success());
    finish_clean(writer);
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A path that is not a FIFO is refused, and left alone too.
    let file = tmp.path().join("file");
    fs::write(&file, "Spam\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let out = run_clean(bin!("fifo-spam"), &["reader", "--fifo", file_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .ends_with(&format!("fifo-spam: {file_arg} is not a FIFO\n"))
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "Spam\n");
    let out =
        finish_clean(Listing::start(bin!("fifo-spam"), &["writer", file_arg]));
    assert_eq!(out.stderr, format!("fifo-spam: {file_arg} is not a FIFO\n"));
    assert_eq!(fs::read_to_string(&file).unwrap(), "Spam\n");
}

/// A FIFO that others may open is refused by both sides before a byte goes
/// through it: one open to everyone (mode 0666) at a path given with
/// `--fifo`, and, when the test runs as root, one of the reader's own mode
/// but another user's. Either could be read or fed by someone else, the
/// original's second fault. The FIFO is left where it was.
#[test]
fn fifo_spam_refuses_a_fifo_that_others_may_open() {
    let tmp = tmp();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
    let fifo_arg = fifo.to_str().unwrap();
    let mut cases = vec![("open to everyone", 0o666, None)];
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { nix::libc::geteuid() } == 0 {
        cases.push(("another user's", 0o600, Some(54321)));
    }
    for (what, mode, owner) in cases {
        fs::set_permissions(&fifo, PermissionsExt::from_mode(mode)).unwrap();
        let uid = owner.map(nix::unistd::Uid::from_raw);
        nix::unistd::chown(&fifo, uid, None).unwrap();
        let expected = |uid: u32| {
            format!(
                "fifo-spam: {fifo_arg} is not ours alone (owner {uid}, mode \
                 {mode:o})\n"
            )
        };
        let uid = owner.unwrap_or_else(|| nix::unistd::geteuid().as_raw());

        // The reader, once a writer has opened the FIFO.
        let mut command = Command::new(bin_path("fifo-spam"));
        command.args(["reader", "--fifo", fifo_arg]);
        let mut reader = Listing::spawn(&mut command, Stdio::piped());
        reader.next_line();
        let mut writer = OpenOptions::new().write(true).open(&fifo).unwrap();
        let out = finish_clean(reader);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        assert_eq!(out.stderr, expected(uid), "{what}");
        assert_eq!(out.stdout.len(), 1, "{what}: {:?}", out.stdout);
        // Nobody reads: the reader took nothing, and is gone.
        assert!(writer.write_all(b"Spam\n").is_err(), "{what}");
        drop(writer);

        // The writer, with a reader waiting that gets nothing.
        let flags =
            nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC;
        let reader = nix::fcntl::open(
            &fifo,
            nix::fcntl::OFlag::O_RDONLY | flags,
            Mode::empty(),
        )
        .unwrap();
        let out = run_clean(bin!("fifo-spam"), &["writer", fifo_arg]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        assert_eq!(out.stderr, expected(uid), "{what}");
        assert_eq!(nix::unistd::read(&reader, &mut [0; 16]), Ok(0), "{what}");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }
}

/// The names the book shows for what varies: the private directory's
/// random name (in whatever TMPDIR is), the FIFO's line in `ls -l`.
const FIFO_MASKS: &[(&str, &str)] = &[
    (r"\S*/(fifo-spam|fifo-open)\.\w{6}", "/tmp/$1.XXXXXX"),
    (
        r"(?m)^(p[-rwx]{9}) +\d+ +\S+ +\S+ +\d+ +\w{3} +\d+ +[\d:]+ ",
        "$1 <owner and date> ",
    ),
];

#[test]
fn fifo_spam_output_matches_the_book() {
    // Terminal 1: a reader, in the system's temporary directory.
    let mut reader = Listing::start(bin!("fifo-spam"), &["reader"]);
    let line = reader.expect(r"Waiting for a writer on (\S+) \(pid \d+\)");
    let fifo = PathBuf::from(&line[1]);
    let dir = fifo.parent().unwrap().to_path_buf();
    let _cleanup = RemoveOnDrop(dir.clone());
    let pid = reader.pid();
    wait_until("the reader to wait in open", || {
        wchan_of(pid) == "wait_for_partner"
    });
    // Terminal 2.
    let fifo_arg = fifo.to_str().unwrap();
    let mut terminal2: Vec<(String, Vec<String>)> = [
        format!("ls -l {}", dir.display()),
        format!("cat /proc/{pid}/wchan; echo"),
    ]
    .into_iter()
    .map(|command| {
        let output = shell(&command);
        (command, output)
    })
    .collect();
    let writer_args = ["writer", fifo_arg, "--count", "3"];
    let writer = finish_clean(Listing::start(bin!("fifo-spam"), &writer_args));
    assert!(writer.status.success(), "{}", writer.stderr);
    terminal2.push((cargo_run("fifo-spam", &writer_args), writer.stdout));

    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    let terminal1 = out.stdout;
    assert!(!dir.exists(), "the reader left {}", dir.display());
    assert_session_matches_book_masking(
        "ch22-fifos/22-01-fifo-spam.out",
        &[(cargo_run("fifo-spam", &["reader"]), &terminal1[..])],
        FIFO_MASKS,
    );
    let session: Vec<_> =
        terminal2.iter().map(|(c, o)| (c.clone(), &o[..])).collect();
    assert_session_matches_book_masking(
        "ch22-fifos/22-01-terminal-2.out",
        &session,
        FIFO_MASKS,
    );
}

#[test]
fn fifo_open_follows_the_rules_and_removes_its_fifo() {
    let tmp = tmp();
    let mut command = Command::new(bin_path("fifo-open"));
    command.env("TMPDIR", tmp.path());
    let listing = Listing::spawn(&mut command, Stdio::piped());
    let out = finish_clean(listing);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout[1..],
        [
            "open O_WRONLY | O_NONBLOCK, no reader: ENXIO: No such device or address",
            "open O_RDONLY | O_NONBLOCK, no writer: opened",
            "read, no writer has opened it yet: 0 bytes, the end of the stream",
            "open O_WRONLY | O_NONBLOCK, a reader: opened",
            "read, a writer, nothing written: EAGAIN: Try again",
            "read, after a write of 4 bytes: 4 bytes",
            "read, after the writer closed it: 0 bytes, the end of the stream",
            "open O_RDWR, nobody else (undefined by POSIX): opened",
        ]
    );
    assert!(contents(tmp.path()).is_empty());
    // The book shows a run in the system's temporary directory.
    let out = finish_clean(Listing::start(bin!("fifo-open"), &[]));
    let dir = out.stdout[0]
        .trim_start_matches("A FIFO at ")
        .trim_end_matches("/fifo");
    assert!(!Path::new(dir).exists(), "fifo-open left {dir}");
    assert_session_matches_book_masking(
        "ch22-fifos/22-02-fifo-open.out",
        &[(cargo_run("fifo-open", &[]), &out.stdout[..])],
        FIFO_MASKS,
    );
}

#[test]
fn fifo_listings_reject_bad_arguments_in_one_line() {
    assert_rejects(bin!("fifo-spam"), &[], "reader or writer?");
    assert_rejects(
        bin!("fifo-spam"),
        &["writer"],
        "fifo-spam: a writer needs the FIFO's path; usage:",
    );
    assert_rejects(
        bin!("fifo-spam"),
        &["writer", "--fifo", "x"],
        "fifo-spam: a writer takes the FIFO's path, not --fifo; usage:",
    );
    assert_rejects(bin!("fifo-spam"), &["reader", "/tmp/x"], "a reader takes");
    assert_rejects(bin!("fifo-spam"), &["talker"], "unknown mode");
    assert_rejects(
        bin!("fifo-spam"),
        &["writer", "/nonexistent/fifo"],
        "No such file",
    );
    assert_rejects(bin!("fifo-open"), &["now"], "unexpected argument");
}

/// A Python program that does what Lutz's `pipefifo.py` does, written for
/// this test: with one argument, the FIFO's path, it makes the FIFO if the
/// path does not exist and reads it forever; with a second argument it
/// writes `Spam NNN` lines into it forever, sleeping 0 to 4 seconds before
/// each.
const LIKE_PIPEFIFO_PY: &str = r#"
import os, sys, time
fifoname = sys.argv[1]
def child():
    pipeout = os.open(fifoname, os.O_WRONLY)
    zzz = 0
    while True:
        time.sleep(zzz)
        os.write(pipeout, ('Spam %03d\n' % zzz).encode())
        zzz = (zzz + 1) % 5
def parent():
    pipein = open(fifoname, 'r')
    while True:
        line = pipein.readline()[:-1]
        print('Parent %d got "%s" at %s' % (os.getpid(), line, time.time()))
if not os.path.exists(fifoname):
    os.mkfifo(fifoname)
if len(sys.argv) == 2:
    parent()
else:
    child()
"#;

/// One side of the Python twin of `pipefifo.py`, with the usual umask,
/// 022, whatever the test's own is.
fn like_pipefifo_py(fifo: &Path, writer: bool) -> Listing {
    let mut command = Command::new("python3");
    command.args(["-u", "-c", LIKE_PIPEFIFO_PY]).arg(fifo);
    if writer {
        command.arg("child");
    }
    // SAFETY: `umask` is one async-signal-safe system call that cannot
    // fail; nothing allocates.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            nix::libc::umask(0o022);
            Ok(())
        });
    }
    Listing::spawn(&mut command, Stdio::piped())
}

/// The faults the chapter lists in the original: the FIFO, made readable
/// by everyone, stays after both sides have gone; the reader spins on the
/// end of the stream; a writer whose reader has gone dies of an uncaught
/// BrokenPipeError.
#[test]
fn pipefifo_py_spins_at_the_end_dies_without_a_reader_and_leaves_its_fifo() {
    if !have("python3") {
        return;
    }
    let tmp = tmp();
    let fifo = tmp.path().join("pipefifo");
    let mut reader = like_pipefifo_py(&fifo, false);
    wait_until("the reader to make the FIFO", || fifo.exists());
    let meta = fs::metadata(&fifo).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o777, 0o644, "prw-r--r--");

    // The end of the stream: `readline()` returns '' at once, every time.
    let writer = like_pipefifo_py(&fifo, true);
    reader.expect(r#"Parent \d+ got "Spam 000" at [\d.]+"#);
    drop(writer); // Killed, as by Ctrl-C.
    let empty = regex::Regex::new(r#"^Parent \d+ got "" at [\d.]+$"#).unwrap();
    for _ in 0..1000 {
        let line = reader.next_line();
        assert!(empty.is_match(&line), "{line:?}");
    }
    drop(reader);

    // A writer whose reader has gone: a traceback and status 1.
    let mut reader = like_pipefifo_py(&fifo, false);
    let writer = like_pipefifo_py(&fifo, true);
    reader.expect(r#"Parent \d+ got "Spam 000" at [\d.]+"#);
    drop(reader);
    let out = finish_clean(writer);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("BrokenPipeError"), "{}", out.stderr);

    // Nobody removed it.
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

/// The reader's signal thread may be refused (`ulimit -u` counts threads):
/// one line, and the FIFO and its directory removed, where `thread::spawn`
/// panicked (exit 101). Run as a user allowed one thread, its main one, in
/// a directory that user may write in.
#[test]
fn fifo_spam_reader_says_why_when_its_thread_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let mut command = Command::new(bin_path("fifo-spam"));
    command.arg("reader").env("TMPDIR", tmp.path());
    let Some((mut command, _dir)) = with_thread_limit(&command, 1) else {
        return;
    };
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_exited_with(&out, 1);
    assert_eq!(
        out.stderr,
        "fifo-spam: cannot start a thread: Resource temporarily unavailable \
         (os error 11)\n"
    );
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A nonblocking reader of a FIFO reads 0 bytes both before its first
/// writer and after its last; `poll` tells the two apart: the kernel
/// holds back POLLHUP until a writer has opened the FIFO (`pipe_poll` and
/// `fifo_open` in fs/pipe.c, the reader's `f_pipe` against `w_counter`).
#[test]
fn poll_tells_a_nonblocking_fifo_reader_not_yet_from_no_more() {
    use nix::fcntl::{OFlag, open};
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let linux = format!("Linux {}", crate::support::kernel());
    let tmp = tmp();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
    let flags = OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let reader = open(&fifo, OFlag::O_RDONLY | flags, Mode::empty()).unwrap();
    let events = || {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap();
        fds[0].revents().unwrap()
    };
    assert_eq!(events(), PollFlags::empty(), "not yet; {linux}");
    let writer = open(&fifo, OFlag::O_WRONLY | flags, Mode::empty()).unwrap();
    assert_eq!(events(), PollFlags::empty(), "a writer; {linux}");
    drop(writer);
    assert_eq!(events(), PollFlags::POLLHUP, "no more; {linux}");
}

/// A signal that the reader does not catch, and whose default action ends
/// a process, ends it on the spot: its directory stays, as after SIGKILL.
/// SIGUSR1 here; SIGQUIT (Ctrl-\) does the same, and may leave a core file
/// besides.
#[test]
fn fifo_spam_reader_ended_by_an_uncaught_signal_leaves_its_directory() {
    let tmp = tmp();
    let (reader, fifo) = reader_in(tmp.path(), &[]);
    let dir = fifo.parent().expect("the FIFO's directory").to_path_buf();
    reader.signal(Signal::SIGUSR1);
    let out = finish_clean(reader);
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGUSR1 as i32),
        "{}",
        out.stderr
    );
    assert_eq!(contents(tmp.path()), [dir]);
}

/// A temporary directory that cannot be made is named in the error: a
/// bare "ENOENT" would not say which file is missing (the FIFO's is not
/// even chosen yet). Listing 16-1 says it the same way. A TMPDIR with a
/// newline in it is named escaped, so the error stays one line.
#[test]
fn the_fifo_listings_name_the_directory_they_cannot_make() {
    for (listing, args) in
        [("fifo-spam", &["reader"][..]), ("fifo-open", &[][..])]
    {
        for base in ["/nonexistent", "/nonexistent\nsuch"] {
            let mut command = Command::new(bin_path(listing));
            command.args(args).env("TMPDIR", base);
            let spawned = Listing::spawn(&mut command, Stdio::piped());
            let out = finish_clean(spawned);
            assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
            assert_eq!(
                out.stderr,
                format!(
                    "{listing}: cannot make a directory in {}: \
                     ENOENT: No such file or directory\n",
                    base.escape_debug()
                )
            );
        }
    }
}

/// With one descriptor to spare (`ulimit -n 4`), signal-hook's
/// `socketpair` in `Signals::new` fails: the reader says what it could
/// not do, not a bare "Too many open files".
#[test]
fn fifo_spam_reader_says_what_failed_when_descriptors_run_out() {
    let tmp = tmp();
    let mut command = Command::new(bin_path("fifo-spam"));
    command.arg("reader").env("TMPDIR", tmp.path());
    crate::support::with_fd_limit(&mut command, 4, 4);
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "fifo-spam: cannot watch for signals: Too many open files \
         (os error 24)\n"
    );
    assert!(contents(tmp.path()).is_empty(), "left behind");
}

/// The directory each FIFO listing makes in TMPDIR is shown escaped in
/// its first line: a newline in TMPDIR cannot split that line in two.
#[test]
fn the_fifo_listings_show_a_tmpdir_with_a_newline_escaped() {
    let tmp = tmp();
    let base = tmp.path().join("spam\nfake line");
    fs::create_dir(&base).unwrap();
    let shown = regex::escape(&base.to_str().unwrap().replace('\n', "\\n"));
    let (reader, fifo) = {
        let mut command = Command::new(bin_path("fifo-spam"));
        command.arg("reader").env("TMPDIR", &base);
        let mut reader = Listing::spawn(&mut command, Stdio::piped());
        let waiting = format!(
            r"Waiting for a writer on ({shown}/fifo-spam\.\w{{6}}/fifo) \(pid \d+\)"
        );
        let line = reader.expect(&waiting);
        (reader, line[1].to_string())
    };
    reader.signal(Signal::SIGTERM);
    let out = finish_clean(reader);
    assert_eq!(out.stderr, "", "{fifo}");
    let mut command = Command::new(bin_path("fifo-open"));
    command.env("TMPDIR", &base);
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert!(out.status.success(), "{}", out.stderr);
    let first = format!(r"^A FIFO at {shown}/fifo-open\.\w{{6}}/fifo$");
    let first = regex::Regex::new(&first).unwrap();
    assert!(first.is_match(&out.stdout[0]), "{:?}", out.stdout);
    // Then the nine lines of Listing 22-2's output, no more.
    assert_eq!(out.stdout.len(), 9, "{:?}", out.stdout);
    assert!(out.stdout[1].starts_with("open "), "{:?}", out.stdout);
    assert_eq!(contents(&base), Vec::<PathBuf>::new(), "left behind");
}

/// The race the `ENDING` guard closes, forced (Linux 6.18, strace): the
/// reader's main thread is held on its way out of the `write` of its
/// "Waiting" line, the test sends SIGTERM then, and the signal thread
/// removes the FIFO and is held on entry to the `tgkill` that ends the
/// process. The main thread's look at the FIFO (`statx`, before its
/// `open`) fails with ENOENT first.
/// The reader must still die of SIGTERM, without a word; without the
/// guard it reported the missing FIFO and exited with status 1.
#[test]
fn fifo_spam_reader_dies_of_the_signal_when_its_fifo_goes_before_its_open() {
    if !have("strace") {
        return;
    }
    let tmp = tmp();
    let fifo = tmp.path().join("fifo");
    let trace = tmp.path().join("trace");
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", "signal=none", "-o"])
        .arg(&trace)
        .args(["-e", "trace=write,openat,statx,newfstatat,unlink,tgkill"])
        .args(["-e", "inject=write:delay_exit=1500000:when=1"])
        .args(["-e", "inject=tgkill:delay_enter=3000000", "--"])
        .arg(bin_path("fifo-spam"))
        .args(["reader", "--fifo"])
        .arg(&fifo);
    let mut traced = Listing::spawn(&mut command, Stdio::piped());
    traced.expect(r"Waiting for a writer on \S+ \(pid (\d+)\)");
    let mut reader = None;
    wait_until("strace to hold the reader in its first write", || {
        reader = children_of(traced.pid()).into_iter().find(|&child| {
            fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "fifo-spam")
        });
        reader.is_some_and(|pid| {
            state_of(pid) == Some('t')
                && fs::read_to_string(format!("/proc/{pid}/syscall"))
                    .is_ok_and(|call| call.starts_with("1 "))
        })
    });
    nix::sys::signal::kill(reader.unwrap(), Signal::SIGTERM).unwrap();
    let out = finish_clean(traced);
    let trace = fs::read_to_string(&trace).unwrap();
    // The race went the way this test is for: the FIFO was gone first.
    assert!(
        trace
            .lines()
            .any(|line| ["openat(", "statx(", "newfstatat("]
                .iter()
                .any(|call| line.contains(call))
                && line.contains("ENOENT")
                && line.contains(fifo.to_str().unwrap())),
        "{trace}"
    );
    // strace ends the way the reader did.
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32), "{trace}");
    assert_eq!(out.stderr, "", "{trace}");
    assert!(!fifo.exists(), "left behind");
}

/// A FIFO's path holding a newline (a Linux file name may hold any byte
/// but `/` and NUL) is shown escaped, `\n`, in the reader's line and the
/// writer's: each is one line, which the user's text cannot break.
#[test]
fn fifo_spam_shows_a_path_with_a_newline_escaped_in_one_line() {
    let tmp = tmp();
    let fifo = tmp.path().join("spam\nfake line");
    let fifo_arg = fifo.to_str().unwrap();
    let shown = regex::escape(&fifo_arg.replace('\n', "\\n"));
    let mut command = Command::new(bin_path("fifo-spam"));
    command.args(["reader", "--fifo", fifo_arg, "--count", "1"]);
    let mut reader = Listing::spawn(&mut command, Stdio::piped());
    reader.expect(&format!(r"Waiting for a writer on {shown} \(pid \d+\)"));
    let args = ["writer", fifo_arg, "--count", "1"];
    let writer = run_clean(bin!("fifo-spam"), &args);
    assert!(writer.status.success(), "{}", writer.stderr);
    let writing = format!(r"^Writing to {shown} \(pid \d+\)$");
    let writing = regex::Regex::new(&writing).unwrap();
    assert_eq!(writer.stdout.len(), 1, "{:?}", writer.stdout);
    assert!(writing.is_match(&writer.stdout[0]), "{:?}", writer.stdout);
    let out = finish_clean(reader);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 2, "{:?}", out.stdout);
}

/// Both sides look at the path before they open it: a device is refused
/// unopened. Opening `/dev/ptmx` makes a new pseudo-terminal, and other
/// devices do more (a tty can become a controlling terminal, a watchdog
/// starts counting). The first version opened the path, then found that
/// it was not a FIFO: strace showed `openat(..., "/dev/ptmx", ...) = 3`
/// before the error.
#[test]
fn fifo_spam_refuses_a_device_without_opening_it() {
    if !crate::support::can_trace() || !Path::new("/dev/ptmx").exists() {
        return;
    }
    let tmp = tmp();
    let trace = tmp.path().join("trace");
    for args in [
        &["writer", "/dev/ptmx"][..],
        &["writer", "/dev/ptmx", "--no-wait"],
        &["reader", "--fifo", "/dev/ptmx"],
    ] {
        let mut strace = vec!["-qq", "-f", "-e", "trace=openat,open"];
        strace.extend(["-o", trace.to_str().unwrap(), "--"]);
        strace.push(bin!("fifo-spam"));
        strace.extend(args);
        let out = crate::support::run("strace", &strace);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr, "fifo-spam: /dev/ptmx is not a FIFO\n",
            "{args:?}"
        );
        let trace = fs::read_to_string(&trace).unwrap();
        assert!(!trace.contains("\"/dev/ptmx\""), "{args:?}:\n{trace}");
    }
}

/// With one descriptor to spare (`ulimit -n 4`), the reader's open takes
/// it, and the writer's open fails with EMFILE. That is no rule of FIFOs,
/// and `fifo-open` must not show it as one of its outcomes: it says that
/// its descriptor table is full, in one line, and removes its directory.
#[test]
fn fifo_open_says_its_descriptor_table_is_full_not_a_fifo_rule() {
    let tmp = tmp();
    let mut command = Command::new(bin_path("fifo-open"));
    command.env("TMPDIR", tmp.path());
    crate::support::with_fd_limit(&mut command, 4, 4);
    let out = finish_clean(Listing::spawn(&mut command, Stdio::piped()));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "fifo-open: cannot open the FIFO (O_WRONLY | O_NONBLOCK, a reader): \
         our descriptor table is full: EMFILE: Too many open files\n"
    );
    let shown = out.stdout.iter().any(|line| line.contains("EMFILE"));
    assert!(!shown, "shown as an outcome: {:#?}", out.stdout);
    assert_eq!(
        out.stdout.last().map(String::as_str),
        Some(
            "read, no writer has opened it yet: 0 bytes, the end of the stream"
        )
    );
    assert!(contents(tmp.path()).is_empty(), "left behind");
}
