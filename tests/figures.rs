//! Figures that draw a listing's run quote its numbers: the sizes of the
//! reads, how much went into a pipe. The numbers come from the `.out` file
//! the chapter shows beside the figure, and when a run is blessed again the
//! picture must follow, as the prose does. Each quote names the figure,
//! what it says, and where the output says the same; the two must agree.

use regex::Regex;

use crate::support::{files_with_extension, read, workspace_root};

/// One number drawn in a figure, and the output it comes from: each
/// pattern has one group, which captures the number.
struct Quote {
    figure: &'static str,
    figure_says: &'static str,
    output: &'static str,
    output_says: &'static str,
}

const QUOTES: &[Quote] = &[
    // Figure 13-1: Listing 13-1's three writes and three reads.
    Quote {
        figure: "ch13-stream-cuts.svg",
        figure_says: r">the third write: (\d+) bytes of ",
        output: "ch13-streams/13-01-tcp-split.out",
        output_says: r"\(3, 3, (\d+) bytes\)",
    },
    Quote {
        figure: "ch13-stream-cuts.svg",
        figure_says: r">read 1: (\d+) bytes, ",
        output: "ch13-streams/13-01-tcp-split.out",
        output_says: r"read 1: (\d+) bytes: ",
    },
    Quote {
        figure: "ch13-stream-cuts.svg",
        figure_says: r"the first (\d+) bytes of the third",
        output: "ch13-streams/13-01-tcp-split.out",
        output_says: r"the first (\d+) of message 3",
    },
    Quote {
        figure: "ch13-stream-cuts.svg",
        figure_says: r">read 2: (\d+)<",
        output: "ch13-streams/13-01-tcp-split.out",
        output_says: r"read 2: (\d+) bytes: ",
    },
    // Figure 21-1: a new pipe filled with writes of 1000 and of 2049 bytes.
    Quote {
        figure: "ch21-pipe-pages.svg",
        figure_says: r">(\d+) writes: \d+ bytes, 96 bytes",
        output: "ch21-capacity/21-01-write-sizes.out",
        output_says: r"1000-byte writes: +(\d+) went in",
    },
    Quote {
        figure: "ch21-pipe-pages.svg",
        figure_says: r">\d+ writes: (\d+) bytes, 96 bytes",
        output: "ch21-capacity/21-01-write-sizes.out",
        output_says: r"1000-byte writes: +\d+ went in, (\d+) bytes",
    },
    Quote {
        figure: "ch21-pipe-pages.svg",
        figure_says: r">(\d+) writes: \d+ bytes, 2047 bytes",
        output: "ch21-capacity/21-01-write-sizes.out",
        output_says: r"2049-byte writes: +(\d+) went in",
    },
    Quote {
        figure: "ch21-pipe-pages.svg",
        figure_says: r">\d+ writes: (\d+) bytes, 2047 bytes",
        output: "ch21-capacity/21-01-write-sizes.out",
        output_says: r"2049-byte writes: +\d+ went in, (\d+) bytes",
    },
];

/// The one number `pattern` captures in `text`, if it matches once.
fn quoted(text: &str, pattern: &str) -> Result<String, String> {
    let re = Regex::new(pattern).expect("a valid pattern");
    let found: Vec<String> =
        re.captures_iter(text).map(|c| c[1].to_string()).collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("nothing matches {pattern:?}")),
        _ => Err(format!("{pattern:?} matches {} times", found.len())),
    }
}

#[test]
fn figures_quote_the_outputs_they_draw() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for q in QUOTES {
        let figure = read(&root.join("src/figures").join(q.figure));
        let output = read(&root.join("listings").join(q.output));
        match (
            quoted(&figure, q.figure_says),
            quoted(&output, q.output_says),
        ) {
            (Ok(drawn), Ok(run)) if drawn == run => {}
            (Ok(drawn), Ok(run)) => problems.push(format!(
                "{}: draws {drawn} where {} says {run}",
                q.figure, q.output
            )),
            (drawn, run) => {
                for err in [drawn.err(), run.err()].into_iter().flatten() {
                    problems
                        .push(format!("{} / {}: {err}", q.figure, q.output));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A figure that names a type or an enum variant of the code it draws, in
/// its picture or in the text a screen reader reads (`CancellationToken`,
/// nix's `StillAlive`), names one that a listing of its chapter uses: when
/// a listing moves to other calls, the figure must follow, as the prose
/// does. Such a name is a word in CamelCase, with a capital inside it; the
/// chapter is the figure's prefix, `ch09-` for the listings of
/// `listings/ch09-*`.
#[test]
fn figures_name_only_identifiers_their_chapters_listings_use() {
    let root = workspace_root();
    let camel = Regex::new(r"\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b")
        .expect("a valid pattern");
    let mut named = 0;
    let mut problems = Vec::new();
    for figure in files_with_extension(&root.join("src/figures"), "svg") {
        let name = figure.file_name().unwrap().to_string_lossy().into_owned();
        let Some((chapter, _)) = name.split_once('-') else {
            continue;
        };
        let listings: String = std::fs::read_dir(root.join("listings"))
            .expect("the listings directory")
            .map(|entry| entry.expect("a listings entry").path())
            .filter(|dir| {
                dir.file_name()
                    .is_some_and(|d| d.to_string_lossy().starts_with(chapter))
            })
            .flat_map(|dir| files_with_extension(&dir, "rs"))
            .map(|file| read(&file))
            .collect();
        let text = read(&figure);
        for word in camel.find_iter(&text).map(|m| m.as_str()) {
            named += 1;
            if !listings.contains(word) {
                problems.push(format!(
                    "src/figures/{name} names {word}, which no listing of \
                     listings/{chapter}-* uses"
                ));
            }
        }
    }
    assert!(named >= 2, "only {named} identifiers named in figures");
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
