//! Sessions: the state of one client id that may outlive its connection.
//!
//! Owns: subscriptions of the session (by filter), the outgoing QoS 1/2
//! in-flight window, the queue of messages waiting for the window or for the
//! client to come back, and the incoming QoS 2 packet ids not yet released;
//! and the rules for which of a PUBLISH's properties travel with a stored
//! message and how large a packet a client takes.
//!
//! Must not: talk to connections; `broker` does that. (Property bytes kept
//! with a message are re-encoded here, nothing else.)

use std::collections::VecDeque;
use std::rc::Rc;

use smallvec::SmallVec;

use crate::protocol::QoS;

pub use super::message::{Message, Source, Stored};
use super::ConnId;

/// Options of one subscription as granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    /// v5 Subscription Identifier, 0 when absent.
    pub sub_id: u32,
}

/// Where an outgoing QoS>0 message stands in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitPuback,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitPubrec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubcomp,
}

#[derive(Clone, Debug)]
pub struct Outgoing {
    pub msg: Message,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: SmallVec<[u32; 1]>,
    /// Shared subscription group it came through (`NO_GROUP` if
    /// none), so it can go to another member if this session ends.
    pub group: u32,
}

#[derive(Clone, Debug)]
pub struct Inflight {
    pub packet_id: u16,
    pub state: OutState,
    pub out: Outgoing,
    /// Held back after a reconnect: the client now allows fewer in flight
    /// (Receive Maximum) than the session had sent, so this one is re-sent,
    /// under its own packet id, once the window has room again.
    pub held: bool,
}

/// An incoming QoS 2 message between PUBREC and PUBREL. It is routed when
/// the client releases it, as Mosquitto does, so a subscriber sees it only
/// once the publisher has committed to it.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub packet_id: u16,
    /// None: already routed (restored from a format-1 database, which
    /// routed at PUBLISH); the release only completes the handshake.
    pub msg: Option<Message>,
}

#[derive(Debug)]
pub struct Session {
    pub client_id: Rc<str>,
    pub username: Option<Box<str>>,
    /// Index of the security policy (password file, ACL) it connected under.
    pub security: usize,
    /// The live connection, if any.
    pub conn: Option<ConnId>,
    /// Seconds the session outlives its connection: 0 ends it at
    /// disconnect, u32::MAX never expires.
    pub expiry_interval: u32,
    /// Broker clock (ms) when the connection went away.
    pub disconnected_at: u64,
    pub subs: Vec<(Box<str>, SubOptions)>,
    pub inflight: VecDeque<Inflight>,
    /// How many in-flight entries are `held` (waiting to be re-sent).
    pub held: usize,
    pub queue: VecDeque<Outgoing>,
    pub queued_bytes: usize,
    /// Incoming QoS 2 messages received but not yet released by PUBREL.
    pub incoming_qos2: SmallVec<[Incoming; 1]>,
    pub next_packet_id: u16,
    /// De-duplication marker for overlapping subscriptions: the publish
    /// sequence number that last matched this session, and where.
    pub match_seq: u64,
    pub match_idx: u32,
    /// A `Session` journal op was written for it (so its end must be too).
    pub persisted: bool,
    /// Its last connection spoke MQTT 5: overlapping subscriptions then get
    /// a copy each, as from Mosquitto, instead of one merged copy.
    pub v5: bool,
    /// Messages are being dropped for a full queue (logged once per episode).
    pub dropping: bool,
}

impl Session {
    pub fn new(client_id: Rc<str>) -> Session {
        Session {
            client_id,
            username: None,
            security: 0,
            conn: None,
            expiry_interval: 0,
            disconnected_at: 0,
            v5: false,
            subs: Vec::new(),
            inflight: VecDeque::new(),
            held: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            incoming_qos2: SmallVec::new(),
            next_packet_id: 1,
            match_seq: 0,
            match_idx: 0,
            persisted: false,
            dropping: false,
        }
    }

    /// Next free packet id for an outgoing message (never 0, never one in flight).
    pub fn alloc_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            if self.next_packet_id == 0 {
                self.next_packet_id = 1;
            }
            if id != 0 && !self.inflight.iter().any(|f| f.packet_id == id) {
                return id;
            }
        }
    }

    /// Where the incoming QoS 2 message with this packet id waits, if any.
    pub fn find_incoming(&self, packet_id: u16) -> Option<usize> {
        self.incoming_qos2
            .iter()
            .position(|i| i.packet_id == packet_id)
    }

    pub fn find_inflight(&self, packet_id: u16) -> Option<usize> {
        self.inflight.iter().position(|f| f.packet_id == packet_id)
    }

    pub fn sub_index(&self, filter: &str) -> Option<usize> {
        self.subs.iter().position(|(f, _)| &**f == filter)
    }

    /// Whether one more message of `payload` bytes may be queued within
    /// `max_queued_messages` / `max_queued_bytes` (0: no limit).
    pub fn queue_has_room(&self, max_msgs: u32, max_bytes: u64, payload: usize) -> bool {
        let over_msgs = max_msgs > 0 && self.queue.len() >= max_msgs as usize;
        let over_bytes = max_bytes > 0 && (self.queued_bytes + payload) as u64 > max_bytes;
        !(over_msgs || over_bytes)
    }

    /// The exchange at `i` of the in-flight window is over. The window's
    /// capacity is given back once it empties, as the queue's is.
    pub fn finish_inflight(&mut self, i: usize) -> Option<Inflight> {
        let f = self.inflight.remove(i);
        if f.as_ref().is_some_and(|f| f.held) {
            self.held -= 1;
        }
        if self.inflight.is_empty() && self.inflight.capacity() > INFLIGHT_KEEP {
            self.inflight = VecDeque::new();
        }
        f
    }

    /// On reconnect: of the messages in flight, as many as `window` allows
    /// are re-sent now and the newest of the rest are `held` until acks
    /// make room. They stay in flight with their packet ids, because a
    /// resumed session re-sends under the original ids [MQTT-4.4.0-1] and
    /// the new Receive Maximum must still be respected [MQTT-3.3.4-9].
    /// PUBRELs are never held: the client already has those messages.
    pub fn hold_beyond(&mut self, window: usize) {
        self.held = 0;
        let mut sent = self.inflight.len();
        for f in self.inflight.iter_mut().rev() {
            f.held = sent > window && f.state != OutState::AwaitPubcomp;
            if f.held {
                self.held += 1;
                sent -= 1;
            }
        }
    }

    pub fn push_queue(&mut self, out: Outgoing) {
        self.queued_bytes += out.msg.cost();
        self.queue.push_back(out);
    }

    pub fn pop_queue(&mut self) -> Option<Outgoing> {
        let out = self.queue.pop_front()?;
        if self.queue.is_empty() {
            self.dropping = false;
            // A burst's capacity is given back once the queue drains, so an
            // idle session holds no more than a few slots (without this the
            // broker's memory creeps up to every session's largest backlog).
            if self.queue.capacity() > QUEUE_KEEP {
                self.queue = VecDeque::new();
            }
        }
        self.queued_bytes = self.queued_bytes.saturating_sub(out.msg.cost());
        Some(out)
    }

    /// `max_inflight_bytes` (0 = no limit): is there room for one more?
    /// Counted only when the option is set.
    pub fn inflight_bytes_below(&self, limit: u64) -> bool {
        limit == 0
            || (self
                .inflight
                .iter()
                .map(|f| f.out.msg.cost())
                .sum::<usize>() as u64)
                < limit
    }

    /// Messages this session holds that a client would still receive.
    pub fn stored_len(&self) -> usize {
        self.inflight.len() + self.queue.len()
    }
}

/// The properties of an incoming PUBLISH (or will) that are forwarded to
/// subscribers: Payload Format Indicator, Content Type, Response Topic,
/// Correlation Data and User Properties. Topic Alias, Subscription
/// Identifier and Message Expiry Interval are written per delivery; a
/// will's Will Delay Interval is not a PUBLISH property at all.
pub(super) fn publish_props_to_store(raw: &[u8]) -> Box<[u8]> {
    if raw.is_empty() {
        return Box::default();
    }
    let mut out = Vec::new();
    filter_forwarded_props(raw, &mut out);
    out.into_boxed_slice()
}

pub(super) fn filter_forwarded_props(raw: &[u8], out: &mut Vec<u8>) {
    let props = crate::protocol::Properties::from_raw_unchecked(raw);
    for p in props.iter() {
        match p {
            crate::protocol::Property::PayloadFormatIndicator(_)
            | crate::protocol::Property::ContentType(_)
            | crate::protocol::Property::ResponseTopic(_)
            | crate::protocol::Property::CorrelationData(_)
            | crate::protocol::Property::UserProperty(..) => p.encode(out),
            _ => {}
        }
    }
}

/// Whether an `n`-byte packet breaks the client's Maximum Packet Size (0: no
/// limit). Counted as Mosquitto 2.0.11 counts it, without the first byte of
/// the fixed header, so a packet exactly one byte over the spec's total still
/// goes out, as it does from Mosquitto.
pub(super) fn too_large_for(max_packet_out: u32, n: usize) -> bool {
    max_packet_out != 0 && n.saturating_sub(1) > max_packet_out as usize
}

/// `Outgoing::group` of a message that did not come through a shared
/// subscription.
pub(super) const NO_GROUP: u32 = u32::MAX;

/// Slots an empty session queue may keep (more is freed when it drains).
const QUEUE_KEEP: usize = 16;
/// Slots an empty in-flight window may keep.
const INFLIGHT_KEEP: usize = 8;

/// Every session, by slot key and by client id.
#[derive(Debug, Default)]
pub struct Sessions {
    /// Boxed so the slab's spare capacity costs a pointer, not a Session.
    slab: slab::Slab<Box<Session>>,
    /// Keys share the session's client id allocation.
    by_client_id: std::collections::HashMap<Rc<str>, usize>,
}

impl Sessions {
    /// Add a session under its client id (replacing the index entry of an
    /// older one with the same id). Returns its key.
    pub fn insert(&mut self, s: Session) -> usize {
        let cid = s.client_id.clone();
        let key = self.slab.insert(Box::new(s));
        self.by_client_id.insert(cid, key);
        key
    }
    /// Take a session out; its client id is forgotten if it still names it.
    pub fn remove(&mut self, key: usize) -> Option<Box<Session>> {
        let s = self.slab.try_remove(key)?;
        if self.by_client_id.get(&*s.client_id) == Some(&key) {
            self.by_client_id.remove(&*s.client_id);
        }
        Some(s)
    }
    /// The key of the session with this client id.
    pub fn find(&self, client_id: &str) -> Option<usize> {
        self.by_client_id.get(client_id).copied()
    }
    pub fn get(&self, key: usize) -> Option<&Session> {
        self.slab.get(key).map(|s| &**s)
    }
    pub fn get_mut(&mut self, key: usize) -> Option<&mut Session> {
        self.slab.get_mut(key).map(|s| &mut **s)
    }
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Session)> {
        self.slab.iter().map(|(k, s)| (k, &**s))
    }
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Session)> {
        self.slab.iter_mut().map(|(k, s)| (k, &mut **s))
    }
    pub fn len(&self) -> usize {
        self.slab.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}

impl std::ops::Index<usize> for Sessions {
    type Output = Session;
    fn index(&self, key: usize) -> &Session {
        &self.slab[key]
    }
}
