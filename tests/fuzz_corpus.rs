//! Replays the minimised corpora of the fuzz targets (`fuzz/corpus/decode`
//! and `fuzz/corpus/config`) through the harnesses the targets call
//! (`wsgate::fuzzing`), so that every input the fuzzers kept is checked
//! by the ordinary test run. A missing or empty corpus directory fails.

use std::path::{Path, PathBuf};

/// The files of `fuzz/corpus/<target>`, sorted; panics when the directory
/// is missing or holds no file.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus {} holds no file",
        dir.display()
    );
    files
}

/// Runs `harness` on every file of the target's corpus, naming the file
/// when it panics.
fn replay(target: &str, mut harness: impl FnMut(&[u8])) -> usize {
    let files = corpus(target);
    for file in &files {
        let data =
            std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness(&data)));
        if let Err(panic) = run {
            eprintln!("{target}: {} fails", file.display());
            std::panic::resume_unwind(panic);
        }
    }
    files.len()
}

#[test]
fn the_decode_corpus_replays() {
    let mut protocol_errors = 0;
    let mut events = 0;
    let n = replay("decode", |data| {
        let decoded = wsgate::fuzzing::decode(data);
        events += decoded.events.len();
        protocol_errors += usize::from(decoded.end.is_err());
    });
    // A corpus that only ever fails at the first byte exercises little.
    assert!(events > 0, "{n} inputs and not one event");
    assert!(protocol_errors > 0, "{n} inputs and not one protocol error");
}

#[test]
fn the_config_corpus_replays() {
    let mut valid = 0;
    let mut refused = 0;
    let n = replay("config", |data| match wsgate::fuzzing::config(data) {
        Ok(()) => valid += 1,
        Err(_) => refused += 1,
    });
    assert!(valid > 0, "{n} configs and not one valid");
    assert!(refused > 0, "{n} configs and not one refused");
}
