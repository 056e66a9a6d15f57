//! Replays every committed fuzz input through the entry points the fuzz
//! targets use (`midge::fuzzing`), on the stable toolchain: the hand-made
//! seeds (`fuzz/seeds/<target>/`) and the minimised corpora
//! (`fuzz/corpus/<target>/`). A regression in any parser of untrusted input
//! that the fuzzer once covered fails here, in `scripts/test.sh`, without
//! nightly. The crashes the fuzzer found are the named tests at the end.
//!
//! Owns: walking those directories. Must not: run the fuzzer, or pass when a
//! target's directories are missing or empty (a renamed target would then
//! silently stop being guarded).

use std::fs;
use std::path::{Path, PathBuf};

use midge::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted (empty if there is none).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs `target` on each input, naming the file that panics.
fn replay(name: &str, run: fn(&[u8]), files: &[PathBuf]) {
    for f in files {
        let data = fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target {name} fails on {} (replay: cargo +nightly fuzz run {name} {})",
            f.display(),
            f.display()
        );
    }
}

#[test]
fn every_target_has_seeds_and_a_corpus() {
    for (name, _) in TARGETS {
        assert!(
            !inputs("seeds", name).is_empty(),
            "fuzz/seeds/{name}/ is empty (python3 fuzz/make-seeds.py writes it)"
        );
        assert!(
            !inputs("corpus", name).is_empty(),
            "fuzz/corpus/{name}/ is empty (cargo +nightly fuzz cmin {name} fills it)"
        );
    }
}

#[test]
fn seeds_replay_without_a_finding() {
    for (name, run) in TARGETS {
        replay(name, *run, &inputs("seeds", name));
    }
}

#[test]
fn corpora_replay_without_a_finding() {
    for (name, run) in TARGETS {
        replay(name, *run, &inputs("corpus", name));
    }
}

/// Found by the broker target (issue 16): a client that never reads takes
/// over its own persistent session and subscribes to `r/#` again and again;
/// every SUBSCRIBE queued another copy of the retained QoS 1 `r/1`, past
/// `max_queued_messages` 2. QoS 1/2 retained copies are now bounded like
/// any other message (as Mosquitto: retain.c -> db__message_insert), and
/// the invariant holds the queue to the normal limit again.
#[test]
fn broker_retained_copies_on_resubscribe_stay_within_queue_limits() {
    let path = fuzz_dir().join("seeds/broker/regression-retained-resubscribe");
    let data = fs::read(&path).expect("regression input");
    midge::fuzzing::broker(&data);
}
