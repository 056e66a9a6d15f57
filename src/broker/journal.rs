//! Durable-state changes, as the broker makes them: the journal feed for
//! persistence, and the exported / imported state for snapshots.
//!
//! Owns: `JournalOp` (what changed in durable state: retained messages and
//! sessions that outlive their connection), `State` (all durable state at
//! one instant), and the conversion between `State` and the live broker.
//!
//! Must not: write files or read the clock; `persist` does that. Times here
//! are broker-clock milliseconds or durations relative to `now`.

use std::rc::Rc;

use smallvec::SmallVec;

use crate::protocol::QoS;

use super::session::{Incoming, Inflight, Message, OutState, Outgoing, Session, SubOptions};
use super::Broker;

/// One change to durable state, in the order it happened.
#[derive(Debug, Clone)]
pub enum JournalOp {
    Retain(Message),
    Unretain(Box<str>),
    /// A persistent session exists (or changed its expiry / username).
    Session {
        client_id: Rc<str>,
        username: Option<Box<str>>,
        expiry: u32,
    },
    EndSession(Rc<str>),
    Sub {
        client_id: Rc<str>,
        filter: Box<str>,
        opts: SubOptions,
    },
    Unsub {
        client_id: Rc<str>,
        filter: Box<str>,
    },
    /// A message entered a persistent session (queue or in flight).
    Enqueue {
        client_id: Rc<str>,
        msg: Message,
        qos: QoS,
        retain: bool,
        sub_ids: SmallVec<[u32; 1]>,
    },
    /// It left (acknowledged, expired or dropped).
    Done {
        client_id: Rc<str>,
        msg: Message,
    },
    /// A QoS 2 message was sent with this packet id (so a restart re-sends
    /// it under the same id and the receiver can recognise it).
    Sent {
        client_id: Rc<str>,
        msg: Message,
        packet_id: u16,
    },
    /// PUBREC arrived for it: only PUBREL/PUBCOMP remain.
    Released {
        client_id: Rc<str>,
        msg: Message,
        packet_id: u16,
    },
    /// An incoming QoS 2 message was received (PUBREC sent) / released.
    In2 {
        client_id: Rc<str>,
        packet_id: u16,
        /// The message, routed at its release.
        msg: Option<Message>,
    },
    In2Done {
        client_id: Rc<str>,
        packet_id: u16,
    },
}

/// The journal feed: ops since the last `take_journal`, and a change count
/// for `autosave_on_changes`.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub on: bool,
    pub ops: Vec<JournalOp>,
    pub changes: u64,
}

impl Journal {
    #[inline]
    pub fn push(&mut self, op: impl FnOnce() -> JournalOp) {
        self.changes += 1;
        if self.on {
            self.ops.push(op());
        }
    }
}

/// Where a stored outgoing message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredState {
    /// Not yet sent, or sent without a record of it (QoS 0/1): sent afresh.
    Queued,
    /// QoS 2 PUBLISH sent under this packet id, no PUBREC yet.
    Sent(u16),
    /// PUBREC received for this packet id; PUBREL pending.
    Released(u16),
}

#[derive(Debug, Clone)]
pub struct StoredOut {
    pub msg: Message,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: SmallVec<[u32; 1]>,
    pub state: StoredState,
}

#[derive(Debug, Clone)]
pub struct StoredSession {
    pub client_id: Rc<str>,
    pub username: Option<Box<str>>,
    pub expiry: u32,
    /// How long it had been offline at `now` (0 if it was connected).
    pub offline_ms: u64,
    pub subs: Vec<(Box<str>, SubOptions)>,
    pub messages: Vec<StoredOut>,
    pub incoming_qos2: Vec<Incoming>,
    /// The next outgoing packet id (0: not known), kept across a restart as
    /// Mosquitto keeps its last one.
    pub next_packet_id: u16,
}

/// All durable state at one instant. Message expiry deadlines are on the
/// broker clock of the `export` (see `persist` for the conversion).
#[derive(Debug, Clone, Default)]
pub struct State {
    pub retained: Vec<Message>,
    pub sessions: Vec<StoredSession>,
}

impl Broker {
    /// Record changes for the journal from now on.
    pub fn set_journaling(&mut self, on: bool) {
        self.journal.on = on;
        if !on {
            self.journal.ops.clear();
        }
    }

    /// The changes since the last call (empty unless journaling is on).
    pub fn take_journal(&mut self, out: &mut Vec<JournalOp>) {
        out.clear();
        std::mem::swap(out, &mut self.journal.ops);
    }

    /// Durable-state changes since start, for `autosave_on_changes`.
    pub fn change_count(&self) -> u64 {
        self.journal.changes
    }

    /// Everything that must survive a restart.
    pub fn export(&self, now: u64) -> State {
        let mut retained = Vec::with_capacity(self.router.retained.len());
        self.router.retained.for_each(|m| {
            // $SYS is the broker's own and is rebuilt at start.
            if !m.expired(now) && !m.topic().starts_with("$SYS") {
                retained.push(m.clone())
            }
        });
        let sessions = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expiry_interval > 0)
            .map(|(_, s)| export_session(s, now))
            .collect();
        State { retained, sessions }
    }

    /// Load state saved by `export` (at start-up, before any client).
    pub fn import(&mut self, state: State, now: u64) {
        for m in state.retained {
            if !m.expired(now) {
                self.router.retain(m);
            }
        }
        for st in state.sessions {
            if self.sessions.find(&st.client_id).is_some() {
                continue;
            }
            let mut s = Session::new(st.client_id.clone());
            s.persisted = true;
            s.username = st.username;
            s.expiry_interval = st.expiry;
            s.disconnected_at = now.saturating_sub(st.offline_ms);
            s.incoming_qos2 = st.incoming_qos2.into_iter().collect();
            if st.next_packet_id != 0 {
                s.next_packet_id = st.next_packet_id;
            }
            for m in st.messages {
                if m.msg.expired(now) && !matches!(m.state, StoredState::Released(_)) {
                    continue;
                }
                let out = Outgoing {
                    msg: m.msg,
                    qos: m.qos,
                    retain: m.retain,
                    sub_ids: m.sub_ids,
                    group: super::session::NO_GROUP,
                };
                match m.state {
                    StoredState::Queued => s.push_queue(out),
                    StoredState::Sent(packet_id) => s.inflight.push_back(Inflight {
                        packet_id,
                        state: OutState::AwaitPubrec,
                        out,
                        held: false,
                    }),
                    StoredState::Released(packet_id) => s.inflight.push_back(Inflight {
                        packet_id,
                        state: OutState::AwaitPubcomp,
                        out,
                        held: false,
                    }),
                }
            }
            let subs = st.subs;
            let key = self.sessions.insert(s);
            for (filter, opts) in subs {
                self.router.subscribe(&filter, key, opts);
                if let Some(s) = self.sessions.get_mut(key) {
                    s.subs.push((filter, opts));
                }
            }
            if let Some(s) = self.sessions.get(key) {
                if s.expiry_interval != u32::MAX {
                    let t = s.disconnected_at + u64::from(s.expiry_interval) * 1000;
                    self.next_check = self.next_check.min(t);
                }
            }
        }
    }
}

fn export_session(s: &Session, now: u64) -> StoredSession {
    let mut messages = Vec::with_capacity(s.inflight.len() + s.queue.len());
    for f in s.inflight.iter() {
        let state = match (f.state, f.out.qos) {
            (OutState::AwaitPubcomp, _) => StoredState::Released(f.packet_id),
            (_, QoS::ExactlyOnce) => StoredState::Sent(f.packet_id),
            _ => StoredState::Queued,
        };
        messages.push(stored(&f.out, state));
    }
    for o in s.queue.iter() {
        messages.push(stored(o, StoredState::Queued));
    }
    StoredSession {
        client_id: s.client_id.clone(),
        username: s.username.clone(),
        expiry: s.expiry_interval,
        offline_ms: if s.conn.is_some() {
            0
        } else {
            now.saturating_sub(s.disconnected_at)
        },
        subs: s.subs.clone(),
        messages,
        incoming_qos2: s.incoming_qos2.to_vec(),
        next_packet_id: s.next_packet_id,
    }
}

fn stored(o: &Outgoing, state: StoredState) -> StoredOut {
    StoredOut {
        msg: o.msg.clone(),
        qos: o.qos,
        retain: o.retain,
        sub_ids: o.sub_ids.clone(),
        state,
    }
}
