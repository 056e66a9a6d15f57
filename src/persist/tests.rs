//! Persistence tests: round trips through real files in a temp dir, and
//! damage of every kind (truncation, flipped bytes, empty and zero-filled
//! files, a newer format) never stopping a load.

use super::*;
use crate::broker::testkit_pub::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "midge-persist-{}-{}-{}",
            tag,
            std::process::id(),
            n
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn opts(&self, journal: bool) -> Options {
        Options {
            path: self.0.join("midge.db"),
            journal,
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A broker with a retained message, a persistent session with a
/// subscription, a queued QoS 1 and QoS 2 message, and one QoS 2 message
/// received from it but not released.
fn busy_broker() -> Scenario {
    let mut sc = Scenario::new();
    sc.persistent_subscriber("keeper", "data/#", 2);
    sc.publish("pub", "data/1", b"one", 1, false);
    sc.publish("pub", "data/2", b"two", 2, false);
    sc.publish("pub", "config/x", b"retained-x", 1, true);
    sc
}

#[test]
fn snapshot_round_trip_restores_everything() {
    let dir = TempDir::new("rt");
    let sc = busy_broker();
    let state = sc.broker().export(sc.now());
    let (mut store, empty, report) = Store::open(dir.opts(false), 0).unwrap();
    assert!(empty.sessions.is_empty() && report.problems.is_empty());
    store.snapshot(&state, sc.now()).unwrap();

    let (_, loaded, report) = Store::open(dir.opts(false), 0).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(loaded.retained.len(), 1);
    assert_eq!(loaded.retained[0].payload(), b"retained-x");
    assert_eq!(loaded.sessions.len(), 1);
    let s = &loaded.sessions[0];
    assert_eq!(&*s.client_id, "keeper");
    assert_eq!(s.subs.len(), 1);
    let payloads: Vec<&[u8]> = s.messages.iter().map(|m| m.msg.payload()).collect();
    assert_eq!(
        payloads,
        vec![&b"one"[..], &b"two"[..], &b"retained-x"[..]][..2].to_vec()
    );

    // A fresh broker fed the state delivers the queue on reconnect.
    let mut sc2 = Scenario::new();
    sc2.import(loaded);
    let got = sc2.reconnect_and_collect("keeper");
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(
        sc2.retained_payload("config/x"),
        Some(b"retained-x".to_vec())
    );
}

#[test]
fn journal_replays_changes_after_the_snapshot() {
    let dir = TempDir::new("journal");
    let mut sc = Scenario::new();
    sc.broker_mut().set_journaling(true);
    let (mut store, _, _) = Store::open(dir.opts(true), 0).unwrap();
    store
        .snapshot(&sc.broker().export(sc.now()), sc.now())
        .unwrap();
    sc.persistent_subscriber("keeper", "j/#", 1);
    for i in 0..5u8 {
        sc.publish("pub", "j/t", &[b'0' + i], 1, false);
        let now = sc.now();
        store.append(sc.broker_mut(), now).unwrap();
    }
    sc.publish("pub", "j/keep", b"r", 0, true);
    let now = sc.now();
    store.append(sc.broker_mut(), now).unwrap();
    // No snapshot: a crash now must lose nothing.
    let (_, loaded, report) = Store::open(dir.opts(true), 0).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.journal_records > 5);
    let mut sc2 = Scenario::new();
    sc2.import(loaded);
    let got = sc2.reconnect_and_collect("keeper");
    assert_eq!(got, (0..5u8).map(|i| vec![b'0' + i]).collect::<Vec<_>>());
    assert_eq!(sc2.retained_payload("j/keep"), Some(b"r".to_vec()));
}

#[test]
fn acknowledged_messages_are_not_replayed() {
    let dir = TempDir::new("acked");
    let mut sc = Scenario::new();
    sc.broker_mut().set_journaling(true);
    let (mut store, _, _) = Store::open(dir.opts(true), 0).unwrap();
    store
        .snapshot(&sc.broker().export(sc.now()), sc.now())
        .unwrap();
    let sub = sc.online_persistent_subscriber("live", "a", 1);
    sc.publish("pub", "a", b"m1", 1, false);
    sc.ack_all(sub);
    sc.publish("pub", "a", b"m2", 1, false);
    let now = sc.now();
    store.append(sc.broker_mut(), now).unwrap();
    let (_, loaded, _) = Store::open(dir.opts(true), 0).unwrap();
    let payloads: Vec<Vec<u8>> = loaded.sessions[0]
        .messages
        .iter()
        .map(|m| m.msg.payload().to_vec())
        .collect();
    assert_eq!(payloads, vec![b"m2".to_vec()]);
}

fn write_snapshot(dir: &TempDir) -> Vec<u8> {
    let sc = busy_broker();
    let (mut store, _, _) = Store::open(dir.opts(false), 0).unwrap();
    store
        .snapshot(&sc.broker().export(sc.now()), sc.now())
        .unwrap();
    fs::read(&dir.opts(false).path).unwrap()
}

fn aside_files(dir: &TempDir) -> usize {
    fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .count()
}

#[test]
fn truncated_snapshot_loads_prefix_and_keeps_the_file_aside() {
    let dir = TempDir::new("trunc");
    let good = write_snapshot(&dir);
    let mut xs: u32 = 7;
    for _ in 0..40 {
        xs ^= xs << 13;
        xs ^= xs >> 17;
        xs ^= xs << 5;
        let cut = (xs as usize) % good.len();
        fs::write(&dir.opts(false).path, &good[..cut]).unwrap();
        let (_, state, report) = Store::open(dir.opts(false), 0).unwrap();
        assert!(!report.problems.is_empty(), "cut at {} not reported", cut);
        assert!(state.sessions.len() <= 1);
        assert!(aside_files(&dir) >= 1);
        for e in fs::read_dir(&dir.0).unwrap().flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[test]
fn flipped_bytes_are_detected() {
    let dir = TempDir::new("flip");
    let good = write_snapshot(&dir);
    let mut xs: u32 = 99;
    for _ in 0..60 {
        xs ^= xs << 13;
        xs ^= xs >> 17;
        xs ^= xs << 5;
        let mut bad = good.clone();
        let at = HEADER_LEN + (xs as usize) % (good.len() - HEADER_LEN);
        bad[at] ^= 1 << (xs % 8);
        fs::write(&dir.opts(false).path, &bad).unwrap();
        let (_, _, report) = Store::open(dir.opts(false), 0).unwrap();
        assert!(!report.problems.is_empty(), "flip at {} not detected", at);
    }
}

#[test]
fn empty_and_zero_filled_files_do_not_stop_start() {
    let dir = TempDir::new("zero");
    for content in [vec![], vec![0u8; 4096], vec![0xFFu8; 100]] {
        fs::write(&dir.opts(false).path, &content).unwrap();
        let (_, state, report) = Store::open(dir.opts(false), 0).unwrap();
        assert!(state.sessions.is_empty());
        assert!(!report.problems.is_empty());
        assert!(aside_files(&dir) >= 1, "damaged file kept aside");
    }
}

#[test]
fn newer_format_is_refused() {
    let dir = TempDir::new("newer");
    let mut good = write_snapshot(&dir);
    good[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_be_bytes());
    fs::write(&dir.opts(false).path, &good).unwrap();
    match Store::open(dir.opts(false), 0) {
        Err(e) => assert!(e.0.contains("newer"), "{}", e),
        Ok(_) => panic!("a newer format must be refused"),
    }
}

#[test]
fn torn_journal_tail_keeps_the_complete_records() {
    let dir = TempDir::new("torn");
    let mut sc = Scenario::new();
    sc.broker_mut().set_journaling(true);
    let (mut store, _, _) = Store::open(dir.opts(true), 0).unwrap();
    store
        .snapshot(&sc.broker().export(sc.now()), sc.now())
        .unwrap();
    sc.persistent_subscriber("keeper", "t", 1);
    sc.publish("pub", "t", b"first", 1, false);
    let now = sc.now();
    store.append(sc.broker_mut(), now).unwrap();
    sc.publish("pub", "t", b"second", 1, false);
    let now = sc.now();
    store.append(sc.broker_mut(), now).unwrap();
    let jpath = dir.opts(true).journal_path();
    let data = fs::read(&jpath).unwrap();
    fs::write(&jpath, &data[..data.len() - 3]).unwrap();
    let (_, loaded, report) = Store::open(dir.opts(true), 0).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let payloads: Vec<Vec<u8>> = loaded.sessions[0]
        .messages
        .iter()
        .map(|m| m.msg.payload().to_vec())
        .collect();
    assert_eq!(payloads, vec![b"first".to_vec()]);
}

#[test]
fn stale_journal_of_an_older_generation_is_ignored() {
    let dir = TempDir::new("stale");
    let mut sc = Scenario::new();
    sc.broker_mut().set_journaling(true);
    let (mut store, _, _) = Store::open(dir.opts(true), 0).unwrap();
    store
        .snapshot(&sc.broker().export(sc.now()), sc.now())
        .unwrap();
    sc.persistent_subscriber("keeper", "t", 1);
    sc.publish("pub", "t", b"once", 1, false);
    let now = sc.now();
    store.append(sc.broker_mut(), now).unwrap();
    let jpath = dir.opts(true).journal_path();
    let old_journal = fs::read(&jpath).unwrap();
    // Compact, then put the old journal back as if the crash came between
    // the snapshot rename and the journal reset.
    store
        .snapshot(&sc.broker().export(sc.now()), sc.now())
        .unwrap();
    fs::write(&jpath, &old_journal).unwrap();
    let (_, loaded, _) = Store::open(dir.opts(true), 0).unwrap();
    assert_eq!(loaded.sessions[0].messages.len(), 1, "not replayed twice");
}

#[test]
fn crc_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32_table(b"123456789"), 0xCBF4_3926);
}

/// The byte-at-a-time fallback of the Pi build (and, on a Pi, the ARMv8
/// instructions) agree with the CRC of every other build on records of
/// every length, so a database moves between machines.
#[test]
fn crc_fallback_agrees_on_every_length() {
    let data: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for len in 0..data.len() {
        assert_eq!(
            crc32_table(&data[..len]),
            crc32(&data[..len]),
            "length {len}"
        );
    }
}

/// `check_retain_source`: who published a retained message (client id,
/// username, listener port) survives a restart, so the broker can ask the
/// ACL again, as Mosquitto does with its database.
#[test]
fn retained_message_source_round_trips() {
    let dir = TempDir::new("src");
    let sc = busy_broker();
    let mut state = sc.broker().export(sc.now());
    let old = state.retained[0].clone();
    state.retained[0] = old.with_stored(crate::broker::Stored {
        source: Some(Box::new(crate::broker::Source {
            client_id: "writer".into(),
            username: Some("alice".into()),
            security: 3,
            port: 1884,
        })),
        ..crate::broker::Stored::new(old.qos, true)
    });
    let (mut store, _, _) = Store::open(dir.opts(false), 0).unwrap();
    store.snapshot(&state, sc.now()).unwrap();
    let (_, loaded, report) = Store::open(dir.opts(false), 0).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let src = loaded.retained[0]
        .source
        .as_deref()
        .expect("source restored");
    assert_eq!(&*src.client_id, "writer");
    assert_eq!(src.username.as_deref(), Some("alice"));
    assert_eq!(src.port, 1884);
    // The policy is found again from the port on the new configuration.
    assert_eq!(src.security, usize::MAX);
}

/// A session's next outgoing packet id survives a restart (Mosquitto keeps
/// its last one), so a reconnecting client sees ids continue.
#[test]
fn session_packet_id_round_trips() {
    let dir = TempDir::new("pid");
    let sc = busy_broker();
    let mut state = sc.broker().export(sc.now());
    state.sessions[0].next_packet_id = 77;
    let (mut store, _, _) = Store::open(dir.opts(false), 0).unwrap();
    store.snapshot(&state, sc.now()).unwrap();
    let (_, loaded, report) = Store::open(dir.opts(false), 0).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(loaded.sessions[0].next_packet_id, 77);
}

/// Loading applies SUB and UNSUB records through an index: a SUB on a
/// filter already there replaces its options, an UNSUB removes exactly
/// that filter, and the index follows the entry `swap_remove` moves.
#[test]
fn loaded_subscriptions_replace_and_remove_by_filter() {
    let opts = |qos| SubOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
        sub_id: 0,
    };
    let mut subs = ModelSubs::default();
    for (i, f) in ["a", "b", "c", "d"].iter().enumerate() {
        subs.set(
            f,
            opts(if i % 2 == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            }),
        );
    }
    subs.set("a", opts(QoS::ExactlyOnce));
    subs.remove("b"); // "d" moves into its place
    subs.remove("not there");
    subs.set("d", opts(QoS::AtMostOnce));
    subs.remove("c");
    let mut got: Vec<(&str, QoS)> = subs.list.iter().map(|(f, o)| (&**f, o.qos)).collect();
    got.sort_by_key(|&(f, _)| f);
    assert_eq!(got, [("a", QoS::ExactlyOnce), ("d", QoS::AtMostOnce)]);
    for (i, (f, _)) in subs.list.iter().enumerate() {
        assert_eq!(subs.index.get(f), Some(&i), "index of {f}");
    }
    assert_eq!(subs.index.len(), subs.list.len());
}
