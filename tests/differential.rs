//! Differential wire check: the raw-byte cases in `tests/differential/cases.txt`
//! are replayed by `tests/differential/wire.py` against the real Mosquitto
//! 2.0.11 (`/usr/sbin/mosquitto`, installed by `.ci/run`) and against midge,
//! and every reply, its order and every close must be the same byte for byte,
//! except the `deliberate:` cases the README documents, which must still
//! differ. Needs `python3` and `mosquitto`; fails (never skips) without them.
//!
//! `DIFF_ONLY=text cargo test --test differential -- --nocapture` runs the
//! cases whose name contains `text`.

use std::path::Path;
use std::process::Command;

#[test]
fn midge_answers_raw_packets_as_mosquitto_does() {
    let mosquitto =
        std::env::var("DIFF_MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into());
    assert!(
        Path::new(&mosquitto).exists(),
        "{mosquitto} not found: apt-get install mosquitto (the differential check needs the real broker)"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential");
    let out = Command::new("python3")
        .arg(dir.join("wire.py"))
        .arg(&mosquitto)
        .arg(env!("CARGO_BIN_EXE_midge"))
        .arg(dir.join("cases.txt"))
        .arg(std::env::var("DIFF_ONLY").unwrap_or_default())
        .output()
        .expect("python3 is needed for tests/differential/wire.py (apt-get install python3)");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "midge differs from Mosquitto on the wire:\n{}",
        text.lines()
            .filter(|l| !l.starts_with("SAME") && !l.starts_with("DELIBERATE"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(text.contains(" cases, 0 failing"), "{text}");
}
