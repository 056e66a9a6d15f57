//! broker/connections: one entry per network connection.
//!
//! Owns: each connection's protocol state (`Client`), its unsent bytes
//! (`Outbox`), the dirty and closing lists the network layer drains every
//! pass, and a small pool of drained outbox buffers, so a busy connection
//! neither holds a buffer while idle nor allocates one per delivery.
//!
//! Must not: route, queue or decide anything about sessions; it only knows
//! slots, bytes and counters.

use std::rc::Rc;

use super::{ConnId, Stats, WillMsg};
use crate::protocol::ProtocolVersion;

/// Past this many unsent bytes a connection is treated as congested: QoS 0
/// messages to it are dropped and QoS 1/2 wait in the session queue.
pub const OUTBOX_SOFT_LIMIT: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Accepted, waiting for CONNECT.
    New,
    Connected,
    /// Being closed; nothing more is read or written except what is queued.
    Closing,
}

/// Unsent bytes for one connection. Written at the end, consumed from the front.
#[derive(Debug, Default)]
pub struct Outbox {
    pub(crate) buf: Vec<u8>,
    start: usize,
}

impl Outbox {
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or(&[])
    }
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `n` bytes were written. A drained buffer is handed back (cleared)
    /// for the pool, so an idle connection holds none.
    fn consume(&mut self, n: usize) -> Option<Vec<u8>> {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            return Some(std::mem::take(&mut self.buf));
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        None
    }
}

#[derive(Debug)]
pub(crate) struct Client {
    pub id: ConnId,
    pub listener: usize,
    pub peer: Box<str>,
    pub state: State,
    pub version: ProtocolVersion,
    /// Shared with the session.
    pub client_id: Rc<str>,
    pub clean_start: bool,
    pub keepalive_ms: u64,
    pub last_rx: u64,
    pub connected_at: u64,
    pub session: Option<usize>,
    /// Boxed: most clients have none.
    pub will: Option<Box<WillMsg>>,
    pub outbox: Outbox,
    pub dirty: bool,
    /// The client's Maximum Packet Size (v5), 0 = none.
    pub max_packet_out: u32,
    /// The client's Receive Maximum (v5), 65535 for v3.
    pub receive_max: u16,
    /// Topic aliases both ways (v5), allocated on first use: most
    /// connections never have any.
    pub aliases: Option<Box<Aliases>>,
    /// The client's Topic Alias Maximum (v5): aliases midge may assign.
    pub topic_alias_max_out: u16,
    pub request_problem_info: bool,
    /// Name from the TLS client certificate, for `use_identity_as_username`.
    pub cert_username: Option<Box<str>>,
    /// The listener's `mount_point`.
    pub mount: Option<Rc<str>>,
    /// A 3.1.x bridge (bridge bit in its CONNECT): its subscriptions are
    /// no-local and retain-as-published, as in Mosquitto.
    pub bridge: bool,
}

/// A connection's topic aliases.
#[derive(Debug, Default)]
pub(crate) struct Aliases {
    /// Inbound, index = alias - 1.
    pub inbound: Vec<Option<Box<str>>>,
    /// Assigned by midge, by topic.
    pub outbound: std::collections::HashMap<Box<str>, u16>,
}

/// Drained outbox buffers kept for reuse: at least this many, and as many
/// as connections written to in one recent pass (a fan-out to N
/// subscribers needs N buffers every pass; a smaller pool would make the
/// rest grow a fresh buffer by reallocation each time) ...
const POOL_BUFFERS: usize = 64;
/// ... and none larger than this (a burst's buffer is freed, not kept).
const POOL_BUFFER_MAX: usize = 64 * 1024;

/// Connections by slot, plus the lists the network layer drains every pass.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    /// Boxed so the slot vector's spare capacity costs a pointer, not a Client.
    slots: Vec<Option<Box<Client>>>,
    dirty: Vec<ConnId>,
    pub closing: Vec<ConnId>,
    /// Drained outbox buffers (empty, with capacity), handed to the next
    /// connection that writes: delivery allocates nothing in steady state.
    pool: Vec<Vec<u8>>,
    /// How many buffers the pool may hold: follows the number of
    /// connections written to in a pass, decaying slowly once bursts stop.
    pool_cap: usize,
}

impl Connections {
    /// A new connection in slot `id.key` (replacing whatever was there).
    pub fn insert(&mut self, client: Client) {
        let key = client.id.key as usize;
        if self.slots.len() <= key {
            self.slots.resize_with(key + 1, || None);
        }
        self.slots[key] = Some(Box::new(client));
    }
    /// Forget the slot of `id` (the network layer closed the socket).
    pub fn remove(&mut self, id: ConnId) {
        if let Some(slot) = self.slots.get_mut(id.key as usize) {
            if slot.as_ref().is_some_and(|c| c.id == id) {
                if let Some(c) = slot.take() {
                    self.recycle(c.outbox.buf);
                }
            }
        }
    }
    pub fn get(&self, id: ConnId) -> Option<&Client> {
        match self.slots.get(id.key as usize) {
            Some(Some(c)) if c.id == id => Some(c),
            _ => None,
        }
    }
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Client> {
        match self.slots.get_mut(id.key as usize) {
            Some(Some(c)) if c.id == id => Some(c),
            _ => None,
        }
    }
    /// The client, marked as having output to flush this pass, with an
    /// outbox buffer from the pool when it had none.
    pub fn writer(&mut self, id: ConnId) -> Option<&mut Client> {
        match self.slots.get_mut(id.key as usize) {
            Some(Some(c)) if c.id == id && c.state != State::Closing => {
                if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(id);
                }
                if c.outbox.buf.capacity() == 0 {
                    if let Some(buf) = self.pool.pop() {
                        c.outbox.buf = buf;
                    }
                }
                Some(c)
            }
            _ => None,
        }
    }
    /// Encode one packet into the outbox of `id` and count it for `$SYS`.
    /// Returns the bytes written (None when the connection is gone or
    /// closing).
    pub fn send(
        &mut self,
        id: ConnId,
        stats: &mut Stats,
        encode: impl FnOnce(&mut Vec<u8>, ProtocolVersion),
    ) -> Option<usize> {
        let c = self.writer(id)?;
        let start = c.outbox.buf.len();
        encode(&mut c.outbox.buf, c.version);
        let n = c.outbox.buf.len() - start;
        stats.msgs_sent += 1;
        stats.bytes_sent += n as u64;
        Some(n)
    }
    /// Like `send`, also to a connection that is closing (its DISCONNECT).
    pub fn send_last(
        &mut self,
        id: ConnId,
        stats: &mut Stats,
        encode: impl FnOnce(&mut Vec<u8>, ProtocolVersion),
    ) -> Option<usize> {
        let c = self.get_mut(id)?;
        let state = std::mem::replace(&mut c.state, State::Connected);
        let n = self.send(id, stats, encode);
        if let Some(c) = self.get_mut(id) {
            c.state = state;
        }
        n
    }
    /// `n` bytes of the outbox of `id` reached the socket. Returns the
    /// client, or None when it is gone.
    pub fn written(&mut self, id: ConnId, n: usize) -> Option<&mut Client> {
        let c = self.get_mut(id)?;
        let drained = c.outbox.consume(n);
        if let Some(buf) = drained {
            self.recycle(buf);
        }
        self.get_mut(id)
    }
    fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0
            && buf.capacity() <= POOL_BUFFER_MAX
            && self.pool.len() < self.pool_cap.max(POOL_BUFFERS)
        {
            buf.clear();
            self.pool.push(buf);
        }
    }
    /// Connections with bytes to flush since the last call.
    pub fn take_dirty(&mut self, out: &mut Vec<ConnId>) {
        out.clear();
        std::mem::swap(out, &mut self.dirty);
        self.pool_cap = out.len().max(self.pool_cap - self.pool_cap / 64);
        let keep = self.pool_cap.max(POOL_BUFFERS);
        if self.pool.len() > keep {
            self.pool.truncate(keep);
        }
        for id in out.iter() {
            if let Some(c) = self.get_mut(*id) {
                c.dirty = false;
            }
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.slots.iter().filter_map(|s| s.as_deref())
    }
}
