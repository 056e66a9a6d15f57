//! persist: durable state on disk — snapshots, and (midge-only) a journal.
//!
//! Owns: the file format, writing snapshots atomically (temp file, fsync,
//! rename, directory fsync), appending journal records with one fsync per
//! event-loop pass (group commit), and loading both back with damage
//! detection. A damaged file is moved aside, the valid prefix is used, and
//! what was lost is reported; a file from a newer format is refused.
//!
//! Must not: know sockets or MQTT packets. It reads `broker::journal::State`
//! and `JournalOp`s and the wall clock, which it converts to and from the
//! broker's monotonic milliseconds.
//!
//! # Format (version 3)
//!
//! Both files: header `MIDGEDB\0`, u32 format version, u8 kind (1 snapshot,
//! 2 journal), u64 generation; then records. All integers big-endian.
//!
//! A record: u32 length of (type + body), u32 CRC-32 (IEEE) of (type +
//! body), u8 type, body. Strings and byte strings are u32 length + bytes.
//!
//! | type | record | body |
//! |---|---|---|
//! | 1 | MSG | u64 id, str topic, bytes payload, bytes v5 properties, u8 qos, u8 retain, u8 has expiry, i64 expiry (wall ms) |
//! | 2 | RETAIN | u64 message id |
//! | 3 | UNRETAIN | str topic |
//! | 4 | SESSION | str client id, u8 has username, str username, u32 expiry interval, u64 offline ms |
//! | 5 | END_SESSION | str client id |
//! | 6 | SUB | str client id, str filter, u8 options byte, u32 subscription id |
//! | 7 | UNSUB | str client id, str filter |
//! | 8 | ENQUEUE | str client id, u64 message id, u8 qos, u8 retain, u8 n, n × u32 subscription ids |
//! | 9 | DONE | str client id, u64 message id |
//! | 10 | SENT | str client id, u64 message id, u16 packet id |
//! | 11 | RELEASED | str client id, u64 message id, u16 packet id |
//! | 12 | IN2 | str client id, u16 packet id (format 1: a QoS 2 message already routed, waiting for PUBREL) |
//! | 13 | IN2_DONE | str client id, u16 packet id |
//! | 14 | SAVED_AT | i64 wall ms (snapshot: when it was taken) |
//! | 15 | END | u64 number of records before it (a snapshot is complete only with it) |
//! | 16 | IN2_MSG | str client id, u16 packet id, u64 message id (an incoming QoS 2 message, routed at PUBREL) |
//! | 17 | MSG_SOURCE | u64 message id, str client id, u8 has username, str username, u16 listener port (who published a retained message, for `check_retain_source`) |
//! | 18 | SESSION_PID | str client id, u16 next outgoing packet id (snapshots only) |
//!
//! Format 2 added IN2_MSG, format 3 MSG_SOURCE and SESSION_PID; older files
//! load unchanged.
//!
//! A journal belongs to the snapshot with the same generation; a journal
//! of another generation was compacted into a newer snapshot already and is
//! ignored.

use crate::broker::Stored;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use smallvec::SmallVec;

use crate::broker::journal::{JournalOp, State, StoredOut, StoredSession, StoredState};
use crate::broker::session::Incoming;
use crate::broker::{Message, SubOptions};
use crate::protocol::{QoS, SubscriptionOptions};

pub const FORMAT_VERSION: u32 = 3;
const MAGIC: &[u8; 8] = b"MIDGEDB\0";
const KIND_SNAPSHOT: u8 = 1;
const KIND_JOURNAL: u8 = 2;
const HEADER_LEN: usize = 8 + 4 + 1 + 8;
/// No record may claim more than this (a payload is at most 256 MB).
const MAX_RECORD: usize = 300 * 1024 * 1024;

mod rec {
    pub const MSG: u8 = 1;
    pub const RETAIN: u8 = 2;
    pub const UNRETAIN: u8 = 3;
    pub const SESSION: u8 = 4;
    pub const END_SESSION: u8 = 5;
    pub const SUB: u8 = 6;
    pub const UNSUB: u8 = 7;
    pub const ENQUEUE: u8 = 8;
    pub const DONE: u8 = 9;
    pub const SENT: u8 = 10;
    pub const RELEASED: u8 = 11;
    pub const IN2: u8 = 12;
    pub const IN2_DONE: u8 = 13;
    pub const SAVED_AT: u8 = 14;
    pub const END: u8 = 15;
    pub const IN2_MSG: u8 = 16;
    pub const MSG_SOURCE: u8 = 17;
    pub const SESSION_PID: u8 = 18;
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// CRC-32 (IEEE 802.3) as the record format uses it. Elsewhere `crc32fast`
/// picks the fastest implementation the CPU has (PCLMULQDQ, ...).
#[cfg(not(target_arch = "aarch64"))]
fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// CRC-32 (IEEE 802.3) on 64-bit ARM: the ARMv8 CRC32 instructions, which
/// every Raspberry Pi from the 3 on has and which `crc32fast` would use as
/// well, with a 1 KB table for a core without them. `crc32fast` is not used
/// here because its fallback tables (24 KB of read-only data, slice-by-16
/// plus combine tables) alone would put the Pi build over its 2 MiB budget
/// (README "Raspberry Pi").
#[cfg(target_arch = "aarch64")]
fn crc32(data: &[u8]) -> u32 {
    if std::arch::is_aarch64_feature_detected!("crc") {
        // SAFETY: the CPU has just been found to implement the CRC32
        // instructions these intrinsics compile to.
        unsafe { crc32_armv8(data) }
    } else {
        crc32_table(data)
    }
}

/// CRC-32 a byte at a time: the fallback of a core without CRC32
/// instructions.
#[cfg(any(target_arch = "aarch64", test))]
fn crc32_table(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "crc")]
unsafe fn crc32_armv8(data: &[u8]) -> u32 {
    use std::arch::aarch64::{__crc32b, __crc32d};
    let mut c = !0u32;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        c = __crc32d(c, u64::from_le_bytes(b));
    }
    for &b in words.remainder() {
        c = __crc32b(c, b);
    }
    !c
}

/// The byte-at-a-time table of the reflected IEEE polynomial 0xEDB88320.
#[cfg(any(target_arch = "aarch64", test))]
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Encodes records into a buffer.
struct Enc<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Enc<'a> {
    fn begin(out: &'a mut Vec<u8>, kind: u8) -> Enc<'a> {
        let start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        out.push(kind);
        Enc { out, start }
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.out.extend_from_slice(b);
        self
    }
    fn end(&mut self) {
        let body = &self.out[self.start + 8..];
        let len = body.len() as u32;
        let crc = crc32(body);
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
        self.out[self.start + 4..self.start + 8].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Reads one record body.
struct Dec<'a> {
    b: &'a [u8],
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }
    fn i64(&mut self) -> Option<i64> {
        self.u64().map(|v| v as i64)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

fn header(kind: u8, generation: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    h.push(kind);
    h.extend_from_slice(&generation.to_be_bytes());
    h
}

/// Where persistence writes, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The snapshot file (`persistence_location` + `persistence_file`).
    pub path: PathBuf,
    pub journal: bool,
}

impl Options {
    fn journal_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".journal");
        PathBuf::from(p)
    }
}

/// What loading found, for the log.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub retained: usize,
    pub sessions: usize,
    pub messages: usize,
    pub journal_records: usize,
    /// Damage found: one sentence each (what, where, what was lost, where
    /// the damaged file was moved).
    pub problems: Vec<String>,
}

/// A file from a newer midge, or unreadable for a reason that must stop
/// start-up rather than be overwritten.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Durable state replayed from records.
#[derive(Default)]
struct Model {
    msgs: HashMap<u64, Message>,
    retained: HashMap<Box<str>, u64>,
    order: Vec<Rc<str>>,
    sessions: HashMap<Rc<str>, ModelSession>,
    saved_at: Option<i64>,
    max_id: u64,
}

#[derive(Default)]
struct ModelSession {
    username: Option<Box<str>>,
    expiry: u32,
    offline_ms: u64,
    subs: ModelSubs,
    messages: Vec<(u64, StoredOut)>,
    /// Incoming QoS 2: packet id and the message id (None: format 1).
    in2: Vec<(u16, Option<u64>)>,
    next_pid: u16,
}

/// A session's subscriptions while records are applied: a SUB replaces the
/// options of a filter already there, an UNSUB removes it, each found
/// through the index (a linear search made loading 10 000 filters of one
/// client quadratic). Order is not kept across removals, as in the
/// broker's own list (which removes with `swap_remove` too).
#[derive(Default)]
struct ModelSubs {
    list: Vec<(Box<str>, SubOptions)>,
    index: HashMap<Box<str>, usize>,
}

impl ModelSubs {
    fn set(&mut self, filter: &str, opts: SubOptions) {
        match self.index.get(filter) {
            Some(&i) => {
                if let Some(e) = self.list.get_mut(i) {
                    e.1 = opts;
                }
            }
            None => {
                self.index.insert(filter.into(), self.list.len());
                self.list.push((filter.into(), opts));
            }
        }
    }

    fn remove(&mut self, filter: &str) {
        let Some(i) = self.index.remove(filter) else {
            return;
        };
        self.list.swap_remove(i);
        if let Some((moved, _)) = self.list.get(i) {
            self.index.insert(moved.clone(), i);
        }
    }
}

impl Model {
    fn session(&mut self, client_id: &str) -> Option<&mut ModelSession> {
        self.sessions.get_mut(client_id)
    }

    /// Apply one record; false when it is not understood.
    fn apply(&mut self, kind: u8, body: &[u8], wall_now: i64, now: u64) -> bool {
        let mut d = Dec { b: body };
        self.apply_inner(kind, &mut d, wall_now, now).is_some()
    }

    fn apply_inner(&mut self, kind: u8, d: &mut Dec<'_>, wall_now: i64, now: u64) -> Option<()> {
        match kind {
            rec::MSG => {
                let id = d.u64()?;
                let topic = d.str()?;
                let payload = d.bytes()?;
                let props = d.bytes()?;
                let qos = QoS::from_u8(d.u8()?)?;
                let retain = d.u8()? != 0;
                let has_expiry = d.u8()? != 0;
                let expiry_wall = d.i64()?;
                let expiry_at = has_expiry.then(|| {
                    let left = expiry_wall.saturating_sub(wall_now).max(0) as u64;
                    now + left
                });
                self.max_id = self.max_id.max(id);
                let m = Message::new(
                    topic,
                    props,
                    payload,
                    Stored {
                        expiry_at,
                        persist_id: std::cell::Cell::new(id),
                        ..Stored::new(qos, retain)
                    },
                );
                self.msgs.insert(id, m);
            }
            rec::SESSION_PID => {
                let cid = d.str()?;
                let pid = d.u16()?;
                self.session(cid)?.next_pid = pid;
            }
            rec::MSG_SOURCE => {
                let id = d.u64()?;
                let client_id = d.str()?;
                let has_user = d.u8()? != 0;
                let user = d.str()?;
                let port = d.u16()?;
                let m = self.msgs.get_mut(&id)?;
                if let Some(m) = m.stored_mut() {
                    m.source = Some(Box::new(crate::broker::session::Source {
                        client_id: client_id.into(),
                        username: has_user.then(|| user.into()),
                        security: usize::MAX,
                        port,
                    }));
                }
            }
            rec::RETAIN => {
                let id = d.u64()?;
                let m = self.msgs.get(&id)?;
                self.retained.insert(m.topic().into(), id);
            }
            rec::UNRETAIN => {
                self.retained.remove(d.str()?);
            }
            rec::SESSION => {
                let cid = d.str()?;
                let has_user = d.u8()? != 0;
                let user = d.str()?;
                let expiry = d.u32()?;
                let offline = d.u64()?;
                if !self.sessions.contains_key(cid) {
                    let rc: Rc<str> = cid.into();
                    self.order.push(rc.clone());
                    self.sessions.insert(rc, ModelSession::default());
                }
                let s = self.session(cid)?;
                s.username = has_user.then(|| user.into());
                s.expiry = expiry;
                s.offline_ms = offline;
            }
            rec::END_SESSION => {
                let cid = d.str()?;
                self.sessions.remove(cid);
                self.order.retain(|c| &**c != cid);
            }
            rec::SUB => {
                let cid = d.str()?;
                let filter = d.str()?;
                let o = SubscriptionOptions::from_byte(d.u8()?);
                let sub_id = d.u32()?;
                let opts = SubOptions {
                    qos: o.qos,
                    no_local: o.no_local,
                    retain_as_published: o.retain_as_published,
                    retain_handling: o.retain_handling,
                    sub_id,
                };
                self.session(cid)?.subs.set(filter, opts);
            }
            rec::UNSUB => {
                let cid = d.str()?;
                let filter = d.str()?;
                self.session(cid)?.subs.remove(filter);
            }
            rec::ENQUEUE => {
                let cid = d.str()?;
                let id = d.u64()?;
                let qos = QoS::from_u8(d.u8()?)?;
                let retain = d.u8()? != 0;
                let n = d.u8()?;
                let mut sub_ids = SmallVec::new();
                for _ in 0..n {
                    sub_ids.push(d.u32()?);
                }
                let msg = self.msgs.get(&id)?.clone();
                let s = self.session(cid)?;
                s.messages.push((
                    id,
                    StoredOut {
                        msg,
                        qos,
                        retain,
                        sub_ids,
                        state: StoredState::Queued,
                    },
                ));
            }
            rec::DONE => {
                let cid = d.str()?;
                let id = d.u64()?;
                let s = self.session(cid)?;
                if let Some(i) = s.messages.iter().position(|(m, _)| *m == id) {
                    s.messages.remove(i);
                }
            }
            rec::SENT | rec::RELEASED => {
                let cid = d.str()?;
                let id = d.u64()?;
                let pid = d.u16()?;
                let s = self.session(cid)?;
                let released = kind == rec::RELEASED;
                if let Some((_, m)) = s
                    .messages
                    .iter_mut()
                    .find(|(m, o)| *m == id && (released || o.state == StoredState::Queued))
                {
                    m.state = if released {
                        StoredState::Released(pid)
                    } else {
                        StoredState::Sent(pid)
                    };
                }
            }
            rec::IN2 | rec::IN2_MSG => {
                let cid = d.str()?;
                let pid = d.u16()?;
                let msg = if kind == rec::IN2_MSG {
                    let id = d.u64()?;
                    self.msgs.contains_key(&id).then_some(id)?;
                    Some(id)
                } else {
                    None
                };
                let s = self.session(cid)?;
                s.in2.retain(|(p, _)| *p != pid);
                s.in2.push((pid, msg));
            }
            rec::IN2_DONE => {
                let cid = d.str()?;
                let pid = d.u16()?;
                let s = self.session(cid)?;
                s.in2.retain(|(p, _)| *p != pid);
            }
            rec::SAVED_AT => {
                self.saved_at = Some(d.i64()?);
            }
            _ => return None,
        }
        Some(())
    }

    fn into_state(mut self, wall_now: i64) -> State {
        let mut retained: Vec<Message> = self
            .retained
            .values()
            .filter_map(|id| self.msgs.get(id).cloned())
            .collect();
        retained.sort_unstable_by(|a, b| a.topic().cmp(b.topic()));
        // Sessions were offline for the saved time plus the time the broker
        // was down.
        let down = self
            .saved_at
            .map(|t| wall_now.saturating_sub(t).max(0) as u64)
            .unwrap_or(0);
        let mut sessions = Vec::new();
        for cid in self.order.drain(..) {
            if let Some(s) = self.sessions.remove(&cid) {
                sessions.push(StoredSession {
                    client_id: cid,
                    username: s.username,
                    expiry: s.expiry,
                    offline_ms: s.offline_ms.saturating_add(down),
                    subs: s.subs.list,
                    messages: s.messages.into_iter().map(|(_, m)| m).collect(),
                    incoming_qos2: s
                        .in2
                        .into_iter()
                        .map(|(packet_id, id)| Incoming {
                            packet_id,
                            msg: id.and_then(|id| self.msgs.get(&id).cloned()),
                        })
                        .collect(),
                    next_packet_id: s.next_pid,
                });
            }
        }
        State { retained, sessions }
    }
}

/// What the snapshot and journal bytes hold, before anything is moved on
/// disk.
struct DecodedFiles {
    state: State,
    report: LoadReport,
    generation: u64,
    next_id: u64,
    /// Some when the file's tail is damaged: the index of the problem that
    /// says so (None when no problem was recorded).
    snapshot_cut: Option<Option<usize>>,
    journal_cut: Option<Option<usize>>,
}

/// One file for [`decode_files`]: its bytes (None: no such file; Err: the
/// message saying it cannot be read) and its name for messages.
type FileBytes<'a> = (Result<Option<&'a [u8]>, String>, &'a str);

/// The loader without the disk: snapshot and journal bytes in, the state
/// and a report of every damage out.
fn decode_files(
    snapshot: FileBytes<'_>,
    journal: FileBytes<'_>,
    now: u64,
) -> Result<DecodedFiles, LoadError> {
    let wall_now = wall_ms();
    let mut report = LoadReport::default();
    let mut model = Model::default();
    let mut generation = 0u64;
    let mut snapshot_cut = None;
    let mut journal_cut = None;
    match snapshot.0 {
        Ok(Some(data)) => {
            let before = report.problems.len();
            let (_, g, complete) = read_records(
                data,
                KIND_SNAPSHOT,
                &mut model,
                wall_now,
                now,
                &mut report.problems,
                snapshot.1,
            )?;
            generation = g;
            if !complete {
                snapshot_cut = Some(last_new(&report.problems, before));
            }
        }
        Ok(None) => {}
        Err(e) => report.problems.push(e),
    }
    match journal.0 {
        Ok(Some(data)) => {
            let name = journal.1;
            // Peek the generation first: a journal of another generation is
            // already part of the snapshot.
            let jgen = data
                .get(13..21)
                .map(|g| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(g);
                    u64::from_be_bytes(a)
                })
                .unwrap_or(u64::MAX);
            if jgen == generation && data.len() >= HEADER_LEN {
                let before = report.problems.len();
                let (n, _, complete) = read_records(
                    data,
                    KIND_JOURNAL,
                    &mut model,
                    wall_now,
                    now,
                    &mut report.problems,
                    name,
                )?;
                report.journal_records = n;
                if !complete {
                    journal_cut = Some(last_new(&report.problems, before));
                }
            } else if data.len() >= 12 {
                let version = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
                if version > FORMAT_VERSION {
                    return Err(LoadError(format!(
                        "Error: {} was written by a newer midge (format version {}). Refusing to start rather than overwrite it.",
                        name, version
                    )));
                }
            }
        }
        Ok(None) => {}
        Err(e) => report.problems.push(e),
    }
    let next_id = model.max_id + 1;
    let state = model.into_state(wall_now);
    report.retained = state.retained.len();
    report.sessions = state.sessions.len();
    report.messages = state.sessions.iter().map(|s| s.messages.len()).sum();
    Ok(DecodedFiles {
        state,
        report,
        generation,
        next_id,
        snapshot_cut,
        journal_cut,
    })
}

/// A snapshot (`journal` false, ended with the end marker) or a journal
/// holding `records` (each a record type byte and its body), framed with
/// lengths and checksums as midge writes them. Lets the fuzz targets reach
/// past the checksums into the record decoder; nothing else needs it.
pub fn file_bytes(journal: bool, generation: u64, records: &[&[u8]]) -> Vec<u8> {
    let kind = if journal { KIND_JOURNAL } else { KIND_SNAPSHOT };
    let mut out = header(kind, generation);
    let end = [rec::END];
    let tail: &[&[u8]] = if journal { &[] } else { &[&end] };
    for body in records.iter().chain(tail) {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32(body).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// The index of the last problem added since there were `before`.
fn last_new(problems: &[String], before: usize) -> Option<usize> {
    (problems.len() > before).then(|| problems.len() - 1)
}

/// Loads a snapshot and a journal from bytes, as [`Store::open`] loads
/// them from files but touching nothing on disk (the fuzz targets and the
/// corpus replay use it). A damaged file is reported, never fatal; a newer
/// format is the error.
pub fn load_bytes(
    snapshot: Option<&[u8]>,
    journal: Option<&[u8]>,
    now: u64,
) -> Result<(State, LoadReport), LoadError> {
    let f = decode_files(
        (Ok(snapshot), "snapshot"),
        (Ok(journal), "snapshot.journal"),
        now,
    )?;
    Ok((f.state, f.report))
}

/// Read records from a file's bytes into the model. Returns (records
/// applied, generation, complete) or the reason the file cannot be used at
/// all. `complete` is false when the tail is damaged.
fn read_records(
    data: &[u8],
    kind: u8,
    model: &mut Model,
    wall_now: i64,
    now: u64,
    problems: &mut Vec<String>,
    name: &str,
) -> Result<(usize, u64, bool), LoadError> {
    if data.len() < HEADER_LEN || &data[..8] != MAGIC {
        problems.push(format!(
            "{} is not a midge persistence file (bad header); nothing loaded from it",
            name
        ));
        return Ok((0, 0, false));
    }
    let version = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    if version > FORMAT_VERSION {
        return Err(LoadError(format!(
            "Error: {} was written by a newer midge (format version {}, this midge reads up to {}). Refusing to start rather than overwrite it.",
            name, version, FORMAT_VERSION
        )));
    }
    if data[12] != kind {
        problems.push(format!("{} has the wrong file kind; ignored", name));
        return Ok((0, 0, false));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&data[13..21]);
    let generation = u64::from_be_bytes(g);
    let mut off = HEADER_LEN;
    let mut count = 0usize;
    let mut ended = false;
    while off < data.len() {
        let Some(h) = data.get(off..off + 8) else {
            problems.push(format!(
                "{}: truncated record header at byte {} ({} bytes lost)",
                name,
                off,
                data.len() - off
            ));
            return Ok((count, generation, false));
        };
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let body = match data.get(off + 8..off + 8 + len) {
            Some(b) if len > 0 && len <= MAX_RECORD => b,
            _ => {
                problems.push(format!(
                    "{}: damaged record at byte {} ({} bytes from there lost)",
                    name,
                    off,
                    data.len() - off
                ));
                return Ok((count, generation, false));
            }
        };
        if crc32(body) != crc {
            problems.push(format!(
                "{}: checksum mismatch in record at byte {} ({} bytes from there lost)",
                name,
                off,
                data.len() - off
            ));
            return Ok((count, generation, false));
        }
        let (t, rest) = (body[0], &body[1..]);
        if t == rec::END {
            ended = true;
            off += 8 + len;
            break;
        }
        if !model.apply(t, rest, wall_now, now) {
            problems.push(format!(
                "{}: record of type {} at byte {} could not be applied; skipped",
                name, t, off
            ));
        }
        count += 1;
        off += 8 + len;
    }
    if kind == KIND_SNAPSHOT && !ended {
        problems.push(format!(
            "{}: snapshot has no end marker (it was cut short); the {} records before the cut were loaded",
            name, count
        ));
        return Ok((count, generation, false));
    }
    if ended && off < data.len() {
        problems.push(format!(
            "{}: {} unexpected bytes after the end marker ignored",
            name,
            data.len() - off
        ));
    }
    Ok((count, generation, true))
}

/// Move a damaged file aside (never delete it) and say where.
fn keep_aside(path: &Path) -> String {
    let stamp = wall_ms() / 1000;
    // Never overwrite an earlier copy, even one from the same second.
    let aside = (0u32..)
        .map(|n| {
            let mut a = path.as_os_str().to_owned();
            match n {
                0 => a.push(format!(".corrupt-{}", stamp)),
                n => a.push(format!(".corrupt-{}-{}", stamp, n)),
            }
            PathBuf::from(a)
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| with_suffix(path, ".corrupt"));
    match fs::rename(path, &aside) {
        Ok(()) => format!("the damaged file was kept as {}", aside.display()),
        Err(e) => format!("could not move the damaged file aside: {}", e),
    }
}

/// The persistence store of a running broker.
pub struct Store {
    opts: Options,
    generation: u64,
    next_id: u64,
    journal: Option<File>,
    /// Message ids whose MSG record is in the current generation's files.
    written: HashSet<u64>,
    buf: Vec<u8>,
    ops: Vec<JournalOp>,
    /// Journal size, to compact with a snapshot when it grows.
    journal_bytes: u64,
    pub fsyncs: u64,
    pub bytes_written: u64,
}

/// Past this size the journal is compacted into a snapshot.
const JOURNAL_COMPACT_BYTES: u64 = 64 * 1024 * 1024;

impl Store {
    /// Load what is on disk. Damage is reported, never fatal; a newer
    /// format is fatal.
    pub fn open(opts: Options, now: u64) -> Result<(Store, State, LoadReport), LoadError> {
        let read = |path: &Path| match fs::read(path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: cannot be read: {}", path.display(), e)),
        };
        let jpath = opts.journal_path();
        let snapshot = read(&opts.path);
        let journal = read(&jpath);
        let mut files = decode_files(
            (
                snapshot
                    .as_ref()
                    .map(|d| d.as_deref())
                    .map_err(String::clone),
                &opts.path.display().to_string(),
            ),
            (
                journal
                    .as_ref()
                    .map(|d| d.as_deref())
                    .map_err(String::clone),
                &jpath.display().to_string(),
            ),
            now,
        )?;
        // A file with a damaged tail is moved aside, and the problem that
        // found the damage says where it went.
        for (cut, path) in [
            (files.snapshot_cut, &opts.path),
            (files.journal_cut, &jpath),
        ] {
            if let Some(at) = cut {
                let note = keep_aside(path);
                if let Some(problem) = at.and_then(|i| files.report.problems.get_mut(i)) {
                    problem.push_str("; ");
                    problem.push_str(&note);
                }
            }
        }
        let (generation, next_id, state, report) =
            (files.generation, files.next_id, files.state, files.report);
        let store = Store {
            opts,
            generation,
            next_id,
            journal: None,
            written: HashSet::new(),
            buf: Vec::new(),
            ops: Vec::new(),
            journal_bytes: 0,
            fsyncs: 0,
            bytes_written: 0,
        };
        Ok((store, state, report))
    }

    pub fn journaling(&self) -> bool {
        self.opts.journal
    }

    fn id_of(&mut self, m: &Message) -> u64 {
        let id = m.persist_id.get();
        if id != 0 {
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        m.persist_id.set(id);
        id
    }

    fn encode_msg(&mut self, m: &Message, wall_now: i64, now: u64) -> u64 {
        let id = self.id_of(m);
        if self.written.insert(id) {
            let mut e = Enc::begin(&mut self.buf, rec::MSG);
            e.u64(id)
                .bytes(m.topic().as_bytes())
                .bytes(m.payload())
                .bytes(m.props())
                .u8(m.qos as u8)
                .u8(u8::from(m.retain));
            match m.expiry_at {
                Some(t) => {
                    let left = t.saturating_sub(now) as i64;
                    e.u8(1).i64(wall_now.saturating_add(left));
                }
                None => {
                    e.u8(0).i64(0);
                }
            }
            e.end();
            if let Some(src) = &m.source {
                Enc::begin(&mut self.buf, rec::MSG_SOURCE)
                    .u64(id)
                    .bytes(src.client_id.as_bytes())
                    .u8(u8::from(src.username.is_some()))
                    .bytes(src.username.as_deref().unwrap_or("").as_bytes())
                    .u16(src.port)
                    .end();
            }
        }
        id
    }

    fn encode_op(&mut self, op: &JournalOp, wall_now: i64, now: u64) {
        match op {
            JournalOp::Retain(m) => {
                let id = self.encode_msg(m, wall_now, now);
                Enc::begin(&mut self.buf, rec::RETAIN).u64(id).end();
            }
            JournalOp::Unretain(t) => {
                Enc::begin(&mut self.buf, rec::UNRETAIN)
                    .bytes(t.as_bytes())
                    .end();
            }
            JournalOp::Session {
                client_id,
                username,
                expiry,
            } => {
                self.encode_session(client_id, username.as_deref(), *expiry, 0);
            }
            JournalOp::EndSession(c) => {
                Enc::begin(&mut self.buf, rec::END_SESSION)
                    .bytes(c.as_bytes())
                    .end();
            }
            JournalOp::Sub {
                client_id,
                filter,
                opts,
            } => self.encode_sub(client_id, filter, opts),
            JournalOp::Unsub { client_id, filter } => {
                Enc::begin(&mut self.buf, rec::UNSUB)
                    .bytes(client_id.as_bytes())
                    .bytes(filter.as_bytes())
                    .end();
            }
            JournalOp::Enqueue {
                client_id,
                msg,
                qos,
                retain,
                sub_ids,
            } => {
                let id = self.encode_msg(msg, wall_now, now);
                self.encode_enqueue(client_id, id, *qos, *retain, sub_ids);
            }
            JournalOp::Done { client_id, msg } => {
                let id = self.id_of(msg);
                Enc::begin(&mut self.buf, rec::DONE)
                    .bytes(client_id.as_bytes())
                    .u64(id)
                    .end();
            }
            JournalOp::Sent {
                client_id,
                msg,
                packet_id,
            } => {
                let id = self.id_of(msg);
                Enc::begin(&mut self.buf, rec::SENT)
                    .bytes(client_id.as_bytes())
                    .u64(id)
                    .u16(*packet_id)
                    .end();
            }
            JournalOp::Released {
                client_id,
                msg,
                packet_id,
            } => {
                let id = self.id_of(msg);
                Enc::begin(&mut self.buf, rec::RELEASED)
                    .bytes(client_id.as_bytes())
                    .u64(id)
                    .u16(*packet_id)
                    .end();
            }
            JournalOp::In2 {
                client_id,
                packet_id,
                msg,
            } => self.encode_in2(client_id, *packet_id, msg.as_ref(), wall_now, now),
            JournalOp::In2Done {
                client_id,
                packet_id,
            } => {
                Enc::begin(&mut self.buf, rec::IN2_DONE)
                    .bytes(client_id.as_bytes())
                    .u16(*packet_id)
                    .end();
            }
        }
    }

    fn encode_in2(&mut self, cid: &str, pid: u16, msg: Option<&Message>, wall_now: i64, now: u64) {
        match msg {
            Some(m) => {
                let id = self.encode_msg(m, wall_now, now);
                Enc::begin(&mut self.buf, rec::IN2_MSG)
                    .bytes(cid.as_bytes())
                    .u16(pid)
                    .u64(id)
                    .end();
            }
            None => {
                Enc::begin(&mut self.buf, rec::IN2)
                    .bytes(cid.as_bytes())
                    .u16(pid)
                    .end();
            }
        }
    }

    fn encode_session(&mut self, cid: &str, user: Option<&str>, expiry: u32, offline: u64) {
        Enc::begin(&mut self.buf, rec::SESSION)
            .bytes(cid.as_bytes())
            .u8(u8::from(user.is_some()))
            .bytes(user.unwrap_or("").as_bytes())
            .u32(expiry)
            .u64(offline)
            .end();
    }

    fn encode_sub(&mut self, cid: &str, filter: &str, o: &SubOptions) {
        let byte = SubscriptionOptions {
            qos: o.qos,
            no_local: o.no_local,
            retain_as_published: o.retain_as_published,
            retain_handling: o.retain_handling,
        }
        .to_byte();
        Enc::begin(&mut self.buf, rec::SUB)
            .bytes(cid.as_bytes())
            .bytes(filter.as_bytes())
            .u8(byte)
            .u32(o.sub_id)
            .end();
    }

    fn encode_enqueue(&mut self, cid: &str, id: u64, qos: QoS, retain: bool, sub_ids: &[u32]) {
        let n = sub_ids.len().min(255);
        let mut e = Enc::begin(&mut self.buf, rec::ENQUEUE);
        e.bytes(cid.as_bytes())
            .u64(id)
            .u8(qos as u8)
            .u8(u8::from(retain))
            .u8(n as u8);
        for &s in &sub_ids[..n] {
            e.u32(s);
        }
        e.end();
    }

    /// Write a whole snapshot of `state` atomically, then start a fresh
    /// journal for it.
    pub fn snapshot(&mut self, state: &State, now: u64) -> io::Result<()> {
        let wall_now = wall_ms();
        let generation = self.generation + 1;
        self.buf.clear();
        self.buf
            .extend_from_slice(&header(KIND_SNAPSHOT, generation));
        self.written.clear();
        Enc::begin(&mut self.buf, rec::SAVED_AT).i64(wall_now).end();
        let mut count = 1u64;
        for m in &state.retained {
            let id = self.encode_msg(m, wall_now, now);
            Enc::begin(&mut self.buf, rec::RETAIN).u64(id).end();
            count += 2;
        }
        for s in &state.sessions {
            self.encode_session(&s.client_id, s.username.as_deref(), s.expiry, s.offline_ms);
            count += 1;
            if s.next_packet_id != 0 {
                Enc::begin(&mut self.buf, rec::SESSION_PID)
                    .bytes(s.client_id.as_bytes())
                    .u16(s.next_packet_id)
                    .end();
                count += 1;
            }
            for (f, o) in &s.subs {
                self.encode_sub(&s.client_id, f, o);
                count += 1;
            }
            for m in &s.messages {
                let id = self.encode_msg(&m.msg, wall_now, now);
                self.encode_enqueue(&s.client_id, id, m.qos, m.retain, &m.sub_ids);
                count += 2;
                match m.state {
                    StoredState::Queued => {}
                    StoredState::Sent(pid) => {
                        Enc::begin(&mut self.buf, rec::SENT)
                            .bytes(s.client_id.as_bytes())
                            .u64(id)
                            .u16(pid)
                            .end();
                        count += 1;
                    }
                    StoredState::Released(pid) => {
                        Enc::begin(&mut self.buf, rec::RELEASED)
                            .bytes(s.client_id.as_bytes())
                            .u64(id)
                            .u16(pid)
                            .end();
                        count += 1;
                    }
                }
            }
            for i in &s.incoming_qos2 {
                count += 1 + u64::from(
                    i.msg
                        .as_ref()
                        .is_some_and(|m| !self.written.contains(&m.persist_id.get())),
                );
                self.encode_in2(&s.client_id, i.packet_id, i.msg.as_ref(), wall_now, now);
            }
        }
        Enc::begin(&mut self.buf, rec::END).u64(count).end();

        let tmp = with_suffix(&self.opts.path, ".new");
        write_synced(&tmp, &self.buf)?;
        fs::rename(&tmp, &self.opts.path)?;
        sync_dir(&self.opts.path);
        self.bytes_written += self.buf.len() as u64;
        self.fsyncs += 1;
        self.generation = generation;
        self.buf.clear();
        if self.opts.journal {
            self.start_journal()?;
        }
        Ok(())
    }

    fn start_journal(&mut self) -> io::Result<()> {
        let jpath = self.opts.journal_path();
        let tmp = with_suffix(&jpath, ".new");
        write_synced(&tmp, &header(KIND_JOURNAL, self.generation))?;
        fs::rename(&tmp, &jpath)?;
        sync_dir(&jpath);
        self.journal = Some(OpenOptions::new().append(true).open(&jpath)?);
        self.journal_bytes = HEADER_LEN as u64;
        self.fsyncs += 1;
        Ok(())
    }

    /// Append the broker's changes of this pass and make them durable with
    /// one fsync. Returns whether the journal wants compacting.
    pub fn append(&mut self, broker: &mut crate::broker::Broker, now: u64) -> io::Result<bool> {
        let mut ops = std::mem::take(&mut self.ops);
        broker.take_journal(&mut ops);
        if ops.is_empty() {
            self.ops = ops;
            return Ok(false);
        }
        if self.journal.is_none() {
            self.start_journal()?;
        }
        let wall_now = wall_ms();
        self.buf.clear();
        for op in ops.iter() {
            self.encode_op(op, wall_now, now);
        }
        ops.clear();
        self.ops = ops;
        let Some(f) = self.journal.as_mut() else {
            return Ok(false);
        };
        f.write_all(&self.buf)?;
        f.sync_data()?;
        self.fsyncs += 1;
        self.bytes_written += self.buf.len() as u64;
        self.journal_bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(self.journal_bytes > JOURNAL_COMPACT_BYTES)
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Snapshot and journal files hold every client's messages: owner-only
/// (0600), as Mosquitto creates its database under umask 0077.
const FILE_MODE: u32 = 0o600;

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    // A `.new` left by an older run keeps its old mode through open(2).
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    f.write_all(data)?;
    f.sync_all()
}

/// fsync the directory holding `path`, so a rename survives power loss.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Read a whole file (helper for tests and tools).
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests;
