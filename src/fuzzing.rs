//! fuzzing: the entry points of the fuzz targets in `fuzz/` (cargo-fuzz,
//! nightly) and of `tests/fuzz_corpus.rs`, which replays every committed
//! corpus file through the same functions on the stable toolchain.
//!
//! Owns: turning one arbitrary byte string into calls on a public entry
//! point of each room that reads untrusted input (the packet decoder and
//! encoder, the sans-IO broker with a fake clock, the config parser with
//! `include_dir`, password, ACL and dynamic-security files, `$CONTROL`
//! commands, the persistence loader, the WebSocket codec and HTTP upgrade,
//! the client tools' options and `-F` formats), and the invariants checked
//! after each call. An entry point panics only when an invariant breaks:
//! that panic is the fuzzer's finding.
//!
//! Must not: be used by the broker or the tools at run time; touch the
//! network; read or write files other than its own include directory under
//! the system temp dir (the config target) — options that would make the
//! parsers read arbitrary paths are neutralised here, not in the parsers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::acl::{Access, AclFile};
use crate::auth::dynsec::DynSec;
use crate::auth::password::{self, HashKind, PasswordFile};
use crate::auth::Policy;
use crate::broker::{Broker, BrokerConfig, ConnId, ListenerSettings};
use crate::client::format::{self, OutputOptions};
use crate::client::localtime::tm_at;
use crate::client::options::Tool;
use crate::client::session::Message;
use crate::protocol::websocket::{self, handshake, FrameDecoder, Role};
use crate::protocol::{decode, encode, Decoded, Packet, Properties, PropertyContext, QoS};
use crate::protocol::{fixed_header, peek_connect_version, ProtocolVersion};

/// One entry point: name (the fuzz target's and the corpus directory's) and
/// the function fed with each input.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `fuzz/run-all.sh` runs them.
pub const TARGETS: &[Target] = &[
    ("packet", packet),
    ("broker", broker),
    ("config", config),
    ("password_file", password_file),
    ("acl_file", acl_file),
    ("dynsec", dynsec),
    ("persist", persist),
    ("websocket", websocket),
    ("client_options", client_options),
    ("format", format),
];

/// The first byte (selector) and the rest.
fn split_selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (b, rest),
        None => (0, &[]),
    }
}

/// Up to `max` parts separated by NUL (the last part keeps any further NULs).
fn nul_parts(data: &[u8], max: usize) -> Vec<&[u8]> {
    data.splitn(max, |&b| b == 0).collect()
}

// ---- protocol ------------------------------------------------------------------

/// The packet decoder on 3.1, 3.1.1 and 5.0 (selector byte: version, and a
/// maximum packet size), every packet it accepts encoded again and decoded
/// back to the same packet and the same bytes.
pub fn packet(data: &[u8]) {
    let (sel, bytes) = split_selector(data);
    let version = match sel % 3 {
        0 => ProtocolVersion::V31,
        1 => ProtocolVersion::V311,
        _ => ProtocolVersion::V5,
    };
    let max = u32::from(sel >> 2) * 8;
    let _ = fixed_header(bytes);
    let _ = peek_connect_version(bytes);
    let mut rest = bytes;
    for _ in 0..64 {
        match decode(rest, version, max) {
            Ok(Decoded::Packet(p, n)) => {
                assert!(n > 0 && n <= rest.len(), "decode claimed {n} bytes");
                if max != 0 {
                    assert!(n <= max as usize, "a packet over the maximum size");
                }
                round_trip(&p, version);
                rest = rest.get(n..).unwrap_or_default();
            }
            Ok(Decoded::Incomplete) | Err(_) => break,
        }
    }
}

/// encode(p) decodes to p, and encodes to the same bytes again.
fn round_trip(p: &Packet<'_>, version: ProtocolVersion) {
    let v = match p {
        Packet::Connect(c) => c.version,
        _ => version,
    };
    let mut first = Vec::new();
    encode::encode(p, v, &mut first);
    match decode(&first, v, 0) {
        Ok(Decoded::Packet(q, n)) => {
            assert_eq!(n, first.len(), "{} re-decoded short", p.name());
            assert_eq!(*p, q, "{} changed in a round trip", p.name());
            let mut second = Vec::new();
            encode::encode(&q, v, &mut second);
            assert_eq!(first, second, "{} encodes differently", p.name());
        }
        other => panic!("encoded {} does not decode: {other:?}", p.name()),
    }
}

// ---- broker --------------------------------------------------------------------

/// Most connections the broker target opens at once.
const MAX_CONNS: usize = 6;

/// The sans-IO broker driven by a script of operations on up to six
/// connections over two listeners (one with a mount point) and a fake
/// clock: open, bytes in, clock forward (timers run), connection lost,
/// stop or resume reading a connection's outbox. After every step the
/// broker's invariants must hold (`Broker::check_invariants`: in-flight ids,
/// queue limits, every outbox whole valid packets) and every outbox that is
/// read is decoded and drained as the network layer would.
///
/// Selector byte: limits and switches. Then operations: `op conn arg...`.
pub fn broker(data: &[u8]) {
    let (sel, mut ops) = split_selector(data);
    let mounted = ListenerSettings {
        mount_point: Some("m/".to_string()),
        security: 1,
        ..ListenerSettings::default()
    };
    let cfg = BrokerConfig {
        max_inflight_messages: u16::from(sel & 3),
        max_queued_messages: u32::from((sel >> 2) & 3) * 2,
        max_queued_bytes: if sel & 0x10 != 0 { 64 } else { 0 },
        queue_qos0_messages: sel & 0x20 != 0,
        upgrade_outgoing_qos: sel & 0x40 != 0,
        max_packet_size: if sel & 0x80 != 0 { 200 } else { 0 },
        // `$SYS` publishing costs more than everything else in a tick:
        // on for a quarter of the inputs only.
        sys_interval: if sel & 0x30 == 0x30 { 10 } else { 0 },
        persistent_client_expiration: Some(30),
        listeners: vec![ListenerSettings::default(), mounted],
        ..BrokerConfig::default()
    };
    let mut now: u64 = 1_000_000;
    let mut b = Broker::new(cfg, now);
    // Listener 1 has an ACL: the checks and their delivery filtering run too.
    if let Ok(acl) = AclFile::parse(
        "topic read public/#\npattern readwrite c/%c/#\nuser u\ntopic a/#\n",
        "fuzz-acl",
    ) {
        b.set_security(
            1,
            Policy {
                acl: Some(acl),
                ..Policy::default()
            },
        );
    }
    let mut conns: Vec<Option<(ConnId, Vec<u8>, bool)>> = Vec::new();
    let mut gen = 0u32;
    let mut closing = Vec::new();
    let byte = |ops: &mut &[u8]| match ops.split_first() {
        Some((&a, rest)) => {
            *ops = rest;
            a
        }
        None => 0,
    };
    while !ops.is_empty() {
        let op = byte(&mut ops);
        let slot = usize::from(byte(&mut ops)) % MAX_CONNS;
        match op % 6 {
            0 => {
                // Open a connection in `slot` (replacing a closed one).
                if conns.len() <= slot {
                    conns.resize_with(slot + 1, || None);
                }
                if conns[slot].is_none() {
                    gen += 1;
                    let id = ConnId {
                        key: slot as u32,
                        gen,
                    };
                    b.open(id, usize::from(op >> 7), "127.0.0.1:1", now);
                    conns[slot] = Some((id, Vec::new(), true));
                }
            }
            1 | 2 => {
                // Bytes in: a length then that many bytes (the rest if short).
                let n = usize::from(byte(&mut ops));
                let n = if op % 6 == 2 { n * 16 } else { n };
                let (chunk, rest) = ops.split_at(n.min(ops.len()));
                ops = rest;
                if let Some(Some((id, rx, _))) = conns.get_mut(slot) {
                    rx.extend_from_slice(chunk);
                    if b.wants_read(*id) {
                        let used = b.receive(*id, rx, now);
                        assert!(used <= rx.len(), "receive used more than it was given");
                        rx.drain(..used);
                    }
                    // The network layer's rx buffer is bounded by the
                    // maximum packet size; past that the connection goes.
                    if rx.len() > 64 * 1024 {
                        b.connection_lost(*id, now);
                    }
                }
            }
            3 => {
                // The clock moves on (up to ~70 s) and timers run.
                now += u64::from(byte(&mut ops)) * 277;
                b.tick(now);
            }
            4 => {
                if let Some(Some((id, _, _))) = conns.get(slot) {
                    b.connection_lost(*id, now);
                }
            }
            _ => {
                // Stop or resume reading this connection's outbox.
                if let Some(Some((_, _, reading))) = conns.get_mut(slot) {
                    *reading = !*reading;
                }
            }
        }
        if let Err(e) = b.check_invariants() {
            panic!("broker invariant broken: {e}");
        }
        for c in conns.iter_mut().flatten() {
            if c.2 {
                let n = b.outbox(c.0).len();
                if n > 0 {
                    b.outbox_written(c.0, n, now);
                }
            }
        }
        b.take_closing(&mut closing);
        for id in closing.drain(..) {
            b.release(id, now);
            for c in conns.iter_mut() {
                if c.as_ref().is_some_and(|(cid, _, _)| *cid == id) {
                    *c = None;
                }
            }
        }
        if let Err(e) = b.check_invariants() {
            panic!("broker invariant broken after closing: {e}");
        }
    }
    b.shutdown(now);
}

// ---- config --------------------------------------------------------------------

/// This process's include directory for the config target.
fn include_dir() -> Option<std::path::PathBuf> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("midge-fuzz-include-{}", std::process::id()));
        std::fs::create_dir_all(&d).ok()?;
        Some(d)
    })
    .clone()
}

/// `mosquitto.conf` parsing, with includes: the input's NUL-separated parts
/// are the main file and up to three files of an include directory, which
/// the main file names as `@INC@` (e.g. `include_dir @INC@`).
pub fn config(data: &[u8]) {
    let parts = nul_parts(data, 4);
    let main = parts.first().copied().unwrap_or_default();
    let mut text = String::from_utf8_lossy(main).into_owned();
    if text.contains("@INC@") {
        if let Some(dir) = include_dir() {
            // Replace last run's files with this input's.
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            for (i, part) in parts.iter().skip(1).enumerate() {
                let name = ["a.conf", "B.conf", "b.conf"][i % 3];
                let _ = std::fs::write(dir.join(name), part);
            }
            text = text.replace("@INC@", &dir.display().to_string());
        }
    }
    if let Err(e) = crate::config::parse_str(&text, "fuzz.conf") {
        // Errors carry file:line; the line is within the file.
        let _ = e.to_string();
    }
}

// ---- auth ----------------------------------------------------------------------

/// Password hashing cost allowed per check: a file can ask for 2^31
/// PBKDF2 iterations (its owner's choice, as in Mosquitto), which would
/// only measure the CPU here.
const MAX_FUZZ_ITERATIONS: u32 = 100;

fn cheap(kind: Option<HashKind>) -> bool {
    match kind {
        Some(HashKind::Pbkdf2Sha512 { iterations }) => iterations <= MAX_FUZZ_ITERATIONS,
        Some(_) => true,
        None => false,
    }
}

/// Password files: parse, then verify each user (whose hash is cheap
/// enough) with the wrong password and with one taken from the input.
pub fn password_file(data: &[u8]) {
    let (file, _warnings) = PasswordFile::parse_bytes(data, "fuzz-passwd");
    for line in data.split(|&b| b == b'\n').take(16) {
        let Some((user, field)) = password::split_entry(line) else {
            continue;
        };
        let user = String::from_utf8_lossy(user);
        if cheap(file.kind_of(&user)) {
            assert!(!file.verify(&user, b"\xff not the password"));
            let _ = file.verify(&user, line);
        }
        if let Some(field) = field.and_then(|f| std::str::from_utf8(f).ok()) {
            if cheap(password::hash_kind(field)) {
                let _ = password::verify_hash(field, b"pw");
            }
        }
    }
    let _ = (file.len(), file.is_empty());
}

/// ACL files: parse the first NUL-separated part, then check every access
/// for the (client id, username, topic) triples of the following lines.
pub fn acl_file(data: &[u8]) {
    let parts = nul_parts(data, 2);
    let Ok(acl) = AclFile::parse_bytes(parts.first().copied().unwrap_or_default(), "fuzz-acl")
    else {
        return;
    };
    let _ = (acl.rule_count(), acl.warnings());
    let queries = parts.get(1).copied().unwrap_or_default();
    let text = String::from_utf8_lossy(queries);
    let mut lines = text.lines();
    let policy = Policy {
        acl: Some(acl),
        deny_special_chars: true,
        ..Policy::default()
    };
    for _ in 0..8 {
        let (Some(id), Some(user), Some(topic)) = (lines.next(), lines.next(), lines.next()) else {
            break;
        };
        let user = (!user.is_empty()).then_some(user);
        for access in [
            Access::Read,
            Access::Write,
            Access::Subscribe,
            Access::Unsubscribe,
        ] {
            let plain = policy
                .acl
                .as_ref()
                .is_some_and(|a| a.check(id, user, topic, access));
            let _ = crate::auth::acl::dollar_topic_allowed(topic, access);
            let guarded = policy.allows(id, user, topic, access);
            // The special-character guard only ever takes rights away.
            assert!(
                !guarded || plain || topic.starts_with('$'),
                "guard added a right"
            );
        }
    }
}

/// Dynamic security: the first NUL-separated part is the JSON file (or,
/// when it does not load, a fresh `init` configuration), each further part
/// a `$CONTROL/dynamic-security/v1` payload. After each command the
/// configuration saved to JSON must load again and save identically; the
/// response must be JSON that `midge_ctrl` can render.
pub fn dynsec(data: &[u8]) {
    let parts = nul_parts(data, 9);
    let text = String::from_utf8_lossy(parts.first().copied().unwrap_or_default());
    let mut ds = DynSec::from_json(&text).unwrap_or_else(|_| base_dynsec());
    let mut saved = check_saved(&ds);
    for payload in parts.iter().skip(1) {
        let h = ds.handle_control(payload);
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&h.response);
        assert!(parsed.is_ok(), "response is not JSON: {}", h.response);
        let _ = crate::client::ctrl::response::render(h.response.as_bytes());
        if h.changed {
            saved = check_saved(&ds);
        } else {
            // Not flagged as changed: the broker would not save, so nothing
            // the file holds may have changed either.
            assert_eq!(ds.to_json(), saved, "changed without `changed` set");
        }
        let _ = ds.decide(Some("admin"), "$CONTROL/dynamic-security/v1", Access::Write);
        let _ = ds.decide(None, "a/b", Access::Read);
        let _ = ds.has_client("admin");
    }
    let _ = crate::client::ctrl::response::render(parts.last().copied().unwrap_or_default());
}

/// A configuration with an admin, made once (hashing is slow) and cloned.
fn base_dynsec() -> DynSec {
    static BASE: std::sync::OnceLock<DynSec> = std::sync::OnceLock::new();
    BASE.get_or_init(|| DynSec::init("admin", "adminpw"))
        .clone()
}

/// The saved file loads and saves identically; returns it.
fn check_saved(ds: &DynSec) -> String {
    let json = ds.to_json();
    match DynSec::from_json(&json) {
        Ok(again) => assert_eq!(
            again.to_json(),
            json,
            "saved configuration changed on reload"
        ),
        Err(e) => panic!("saved configuration does not load: {e}\n{json}"),
    }
    json
}

// ---- persistence -----------------------------------------------------------------

/// The persistence loader. Selector bit 0 clear: the rest is a snapshot and
/// a journal as raw bytes (split at the first `MIDGEDB` after the start).
/// Set: the rest is records (`[file][len][record type + body]...`) framed
/// with correct lengths and checksums, so the record decoder is reached.
pub fn persist(data: &[u8]) {
    let (sel, rest) = split_selector(data);
    let now = 5_000_000;
    if sel & 1 == 0 {
        let split = rest
            .windows(7)
            .skip(1)
            .position(|w| w == b"MIDGEDB")
            .map_or(rest.len(), |i| i + 1);
        let (snap, journal) = rest.split_at(split);
        let snap = (!snap.is_empty()).then_some(snap);
        let journal = (!journal.is_empty()).then_some(journal);
        let _ = crate::persist::load_bytes(snap, journal, now);
        return;
    }
    let mut snap_records: Vec<&[u8]> = Vec::new();
    let mut journal_records: Vec<&[u8]> = Vec::new();
    let mut rest = rest;
    while let [which, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        if body.is_empty() {
            continue;
        }
        if which & 1 == 0 {
            snap_records.push(body);
        } else {
            journal_records.push(body);
        }
    }
    let generation = u64::from(sel >> 1);
    let snap = crate::persist::file_bytes(false, generation, &snap_records);
    let journal = crate::persist::file_bytes(true, generation, &journal_records);
    let snap = (sel & 2 == 0).then_some(snap.as_slice());
    let _ = crate::persist::load_bytes(snap, Some(&journal), now);
}

// ---- websocket -------------------------------------------------------------------

/// The WebSocket side of a websockets listener and of the clients.
/// Selector bit 0: 0 = the HTTP upgrade (a request head, answered, and the
/// client's check of a response), 1 = the frame codec (server role when bit
/// 1 is clear) fed in chunks, whose application bytes must come out the
/// same when framed again and decoded by a fresh codec.
pub fn websocket(data: &[u8]) {
    let (sel, rest) = split_selector(data);
    if sel & 1 == 0 {
        if let Some(end) = handshake::find_head_end(rest, 0) {
            if let Some(req) = handshake::Request::parse(rest.get(..end).unwrap_or_default()) {
                let mut wire = Vec::new();
                let _ = handshake::answer_upgrade(&req, &mut wire);
                let _ = req.forwarded_for();
            }
        }
        let _ = handshake::parse_handshake_response(rest, "dGhlIHNhbXBsZSBub25jZQ==");
        return;
    }
    let role = if sel & 2 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let max = if sel & 4 == 0 { 1 << 20 } else { 300 };
    let mut dec = FrameDecoder::new(role).with_max_frame_size(max);
    let (mut app, mut wire) = (Vec::new(), Vec::new());
    let mut mask = || [1u8, 2, 3, 4];
    let chunk = usize::from(sel >> 3) + 1;
    for piece in rest.chunks(chunk) {
        if dec.feed(piece, &mut app, &mut wire, &mut mask).is_err() {
            break;
        }
    }
    assert!(
        app.len() <= rest.len(),
        "the codec made up application bytes"
    );
    // Framed again the way the peer would send them, the bytes survive.
    let peer_mask = match role {
        Role::Server => Some([9, 8, 7, 6]),
        Role::Client => None,
    };
    let mut again = Vec::new();
    websocket::encode_frame(2, &app, peer_mask, &mut again);
    let mut fresh = FrameDecoder::new(role);
    let (mut app2, mut wire2) = (Vec::new(), Vec::new());
    let r = fresh.feed(&again, &mut app2, &mut wire2, &mut mask);
    assert!(r.is_ok(), "a valid frame was refused: {r:?}");
    assert_eq!(app2, app, "application bytes changed when framed again");
}

// ---- client tools ----------------------------------------------------------------

/// The tools' command lines: selector picks `midge_pub`, `midge_sub`,
/// `midge_rr` or `midge_ctrl`; the rest is NUL-separated arguments. `-o`
/// (an options file) is turned into `-d`: the fuzzer must not make the
/// parser read whatever path it guesses (`/dev/zero` never ends).
pub fn client_options(data: &[u8]) {
    let (sel, rest) = split_selector(data);
    let args: Vec<Vec<u8>> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == 0)
            .take(64)
            .map(|a| {
                if a == b"-o" {
                    b"-d".to_vec()
                } else {
                    a.to_vec()
                }
            })
            .collect()
    };
    match sel % 4 {
        0 => drop(crate::client::options::load(Tool::Pub, &args)),
        1 => drop(crate::client::options::load(Tool::Sub, &args)),
        2 => drop(crate::client::options::load(Tool::Rr, &args)),
        _ => drop(crate::client::ctrl::options::parse(&args)),
    }
    let _ = crate::client::options::options_file_lines(rest);
}

/// `-F` formats: selector bits are `-v`, end of line and `--pretty`; the
/// rest is the format, a payload and v5 properties (NUL-separated; the
/// properties are used only when they are valid, as a received message's
/// are). Checked and rendered; output is bounded by the field-width cap.
pub fn format(data: &[u8]) {
    let (sel, rest) = split_selector(data);
    let parts = nul_parts(rest, 3);
    let fmt = parts.first().copied().unwrap_or_default().to_vec();
    let payload = parts.get(1).copied().unwrap_or_default().to_vec();
    let raw = parts.get(2).copied().unwrap_or_default();
    let properties = match Properties::validate(raw, PropertyContext::Publish) {
        Ok(_) => raw.to_vec(),
        Err(_) => Vec::new(),
    };
    let _ = format::check_format(&fmt);
    let opts = OutputOptions {
        format: Some(fmt.clone()),
        verbose: sel & 1 != 0,
        eol: sel & 2 != 0,
        pretty: sel & 4 != 0,
    };
    let m = Message {
        topic: "fuzz/topic".to_string(),
        payload,
        qos: QoS::AtLeastOnce,
        retain: sel & 8 != 0,
        dup: false,
        mid: 7,
        properties,
    };
    static CLOCK: AtomicU64 = AtomicU64::new(0);
    let mut now = || {
        let t = CLOCK.fetch_add(1, Ordering::Relaxed);
        tm_at(1_700_000_000 + (t % 1000) as i64, 5, 3600, "CET")
    };
    let r = format::render(&opts, &m, &mut now);
    // Each byte of the format yields at most one field, each field at most
    // the width cap plus what the message holds (hex doubles the payload,
    // JSON may escape each byte to six).
    let bound = (fmt.len() + 1)
        * (format::MAX_FIELD_WIDTH + 6 * (m.payload.len() + 64 + m.properties.len()));
    assert!(
        r.stdout.len() <= bound,
        "output of {} bytes",
        r.stdout.len()
    );
    let _ = format::render(
        &OutputOptions {
            format: None,
            ..opts
        },
        &m,
        &mut now,
    );
}
