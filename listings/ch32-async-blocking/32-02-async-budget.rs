// ANCHOR: whole
// Listing 32-2: a task that never waits. A ticker task ticks every 100 ms
// on a runtime with one thread, while another task works for `--secs N`
// (1 by default), one of two ways:
//
// - `compute`: computes, and reaches no `.await` that could wait, so the
//   thread is never given back; `--yield-now` makes it call
//   `tokio::task::yield_now().await` every millisecond;
// - `repeat`: reads from `tokio::io::repeat`, a reader that is always
//   ready. Every read completes at once, and yet the ticker keeps time:
//   tokio's budget makes a task give way after so many operations.
//   `--unconstrained` runs the reads in `tokio::task::coop::unconstrained`,
//   which takes the budget away.

use std::error::Error;
use std::hint::black_box;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::process::{self, ExitCode};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::mpsc;
use tokio::task::{self, coop};
use tokio::time::{interval, sleep};

const USAGE: &str = "usage: async-budget [compute|repeat] [--yield-now] \
                     [--unconstrained] [--secs N]";

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Compute,
    Repeat,
}

struct Args {
    way: Way,
    yield_now: bool,
    unconstrained: bool,
    secs: u64,
}

fn main() -> ExitCode {
    let ran = parse_args()
        .map_err(|e| format!("{e}; {USAGE}").into())
        .and_then(|args| runtime()?.block_on(run(args)));
    let ran = ran.and_then(|()| Ok(unsaid()?));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written;
            // and one write, so that no other writer splits the line.
            let line = format!("async-budget: {err}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// A runtime with one thread, with an error where `build` would panic: the
/// six descriptors tokio opens as it starts are taken first, and given back,
/// since it makes its signal socket pair with `expect` (Chapter 28).
fn runtime() -> io::Result<Runtime> {
    let room = [
        UnixStream::pair()?,
        UnixStream::pair()?,
        UnixStream::pair()?,
    ];
    drop(room);
    Builder::new_current_thread().enable_all().build()
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    // Unbounded: the ticks are read only once the wait is over, ten a
    // second of `--secs`, a few bytes each, which a run of hours holds.
    let (tx, mut ticks) = mpsc::unbounded_channel();
    let ticker = tokio::spawn(async move {
        let mut every = interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            if tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    sleep(Duration::from_millis(300)).await;
    let takes = Duration::from_secs(args.secs);
    let what = match (args.way, args.yield_now, args.unconstrained) {
        (Way::Compute, false, _) => "computing, never waiting",
        (Way::Compute, true, _) => "computing, with yield_now every ms",
        (Way::Repeat, _, false) => "reading from io::repeat",
        (Way::Repeat, _, true) => "reading from io::repeat, unconstrained",
    };
    say(format!("Ticking every 100 ms; now {what}"));

    let (way, yield_now, unconstrained) =
        (args.way, args.yield_now, args.unconstrained);
    let work = tokio::spawn(async move {
        let started = Instant::now();
        let done = match way {
            Way::Compute => compute(takes, yield_now).await,
            Way::Repeat => read_repeat(takes, unconstrained).await,
        };
        (started, done)
    });
    let (started, done) = work.await?;
    let done = done?;
    let ended = Instant::now();
    sleep(Duration::from_millis(300)).await;
    ticker.abort();

    let mut times = Vec::new();
    while let Ok(tick) = ticks.try_recv() {
        times.push(tick);
    }
    let meanwhile = times.iter().filter(|t| (started..ended).contains(*t));
    let longest = times.windows(2).map(|w| w[1] - w[0]).max();
    let longest = longest.unwrap_or_default().as_secs_f64();
    say(format!(
        "{done} in {:.2} s; the ticker: {} ticks meanwhile, the longest gap \
         {longest:.2} s",
        (ended - started).as_secs_f64(),
        meanwhile.count()
    ));
    Ok(())
}

// ANCHOR: compute
/// Stands in for real work: arithmetic, for `takes`, with no `.await` in
/// the loop unless `yield_now`.
async fn compute(takes: Duration, yield_now: bool) -> io::Result<String> {
    let started = Instant::now();
    let mut last_yield = started;
    let mut value: u64 = 1;
    while started.elapsed() < takes {
        value = black_box(value.wrapping_mul(6_364_136_223_846_793_005));
        if yield_now && last_yield.elapsed() >= Duration::from_millis(1) {
            // Back to the scheduler, which runs whatever else is ready and
            // then this task again.
            task::yield_now().await;
            last_yield = Instant::now();
        }
    }
    Ok("computed".to_string())
}
// ANCHOR_END: compute

// ANCHOR: repeat
/// Reads 4 KiB at a time, for `takes`, from a reader that is never empty.
async fn read_repeat(
    takes: Duration,
    unconstrained: bool,
) -> io::Result<String> {
    let reads = async move {
        let mut source = tokio::io::repeat(b'x');
        let mut buf = [0u8; 4096];
        let started = Instant::now();
        let mut reads: u64 = 0;
        while started.elapsed() < takes {
            source.read_exact(&mut buf).await?;
            reads += 1;
        }
        io::Result::Ok(reads)
    };
    let reads = if unconstrained {
        // WRONG, here: no budget, so nothing else runs.
        coop::unconstrained(reads).await?
    } else {
        reads.await?
    };
    Ok(format!("{} MiB read", (reads * 4096) >> 20))
}
// ANCHOR_END: repeat

/// Prints a line, if anyone still reads our output. A write that fails
/// otherwise (a full disk) is kept for `main` to report, at the end.
fn say(line: String) {
    match writeln!(io::stdout(), "{line}") {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            let mut unsaid = UNSAID.lock().unwrap_or_else(|e| e.into_inner());
            unsaid.get_or_insert(err);
        }
        _ => {}
    }
}

/// The first failure of `say` that was not a reader gone away.
static UNSAID: Mutex<Option<io::Error>> = Mutex::new(None);

/// Fails with the first failure of `say` that was not a reader gone away.
fn unsaid() -> io::Result<()> {
    let mut unsaid = UNSAID.lock().unwrap_or_else(|e| e.into_inner());
    unsaid.take().map_or(Ok(()), Err)
}

/// Reads `[compute|repeat] [--yield-now] [--unconstrained] [--secs N]`.
fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        way: Way::Compute,
        yield_now: false,
        unconstrained: false,
        secs: 1,
    };
    let mut way_seen = false;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("yield-now") => parsed.yield_now = true,
            Long("unconstrained") => parsed.unconstrained = true,
            Long("secs") => parsed.secs = args.value()?.parse()?,
            Value(value) if !way_seen => {
                parsed.way = match value.string()?.as_str() {
                    "compute" => Way::Compute,
                    "repeat" => Way::Repeat,
                    other => {
                        return Err(format!(
                            "unknown way '{}'",
                            other.escape_debug()
                        )
                        .into());
                    }
                };
                way_seen = true;
            }
            Short('h') | Long("help") => {
                let _ = writeln!(io::stdout(), "{USAGE}");
                process::exit(0);
            }
            _ => return Err(unexpected(arg)),
        }
    }
    match (parsed.way, parsed.yield_now, parsed.unconstrained) {
        (Way::Compute, _, true) => {
            Err("--unconstrained goes with repeat".into())
        }
        (Way::Repeat, true, _) => Err("--yield-now goes with compute".into()),
        _ => Ok(parsed),
    }
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
