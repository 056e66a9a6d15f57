//! broker: the sans-IO MQTT core.
//!
//! Owns: connections' protocol state, sessions, the subscription tree, the
//! retained store, QoS state machines, wills, keepalive and `$SYS`.
//! Input is bytes (`receive`) and events (`open`, `connection_lost`, `tick`)
//! with the time passed in as milliseconds on a monotonic clock; output is
//! bytes in per-connection outboxes (`take_dirty` + `outbox`) and close
//! requests (`take_closing`).
//!
//! Must not: touch sockets, files, the clock, or mio. Everything here is
//! testable by feeding bytes and advancing a fake clock.

mod connect;
mod connections;
pub mod events;
mod invariants;
pub mod journal;
mod message;
mod publish;
mod router;
pub mod session;
mod subscribe;
mod sys;
#[cfg(test)]
mod testkit;
#[cfg(test)]
pub(crate) mod testkit_pub;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v5;

use std::rc::Rc;

pub(crate) use connections::{Client, Connections, State};
pub use connections::{Outbox, OUTBOX_SOFT_LIMIT};

use crate::protocol::encode;
use crate::protocol::reason;
use crate::protocol::ReasonCode;
use crate::protocol::{decode, DecodeError, Decoded, Packet, ProtocolVersion, QoS};
pub(crate) use router::Hit;
use router::Router;

pub use events::{Event, EventSink, Gone, PublishInfo};
pub use message::{Message, Source, Stored};
pub use session::{Session, Sessions, SubOptions};

/// Identifies one network connection. `key` is the slot (shared with the
/// network layer's slab); `gen` makes a recycled slot distinguishable, so a
/// stale id never reaches a newer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: u32,
    pub gen: u32,
}

/// Security and protocol settings of one listener.
#[derive(Clone, Debug)]
pub struct ListenerSettings {
    pub port: u16,
    pub allow_anonymous: bool,
    pub allow_zero_length_clientid: bool,
    pub auto_id_prefix: String,
    pub max_qos: QoS,
    pub max_topic_alias: u16,
    pub mount_point: Option<String>,
    pub use_username_as_clientid: bool,
    /// The username comes from the TLS client certificate, not CONNECT.
    pub use_identity_as_username: bool,
    /// Index into the broker's security policies (`Broker::set_security`).
    pub security: usize,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            port: 1883,
            allow_anonymous: true,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".to_string(),
            max_qos: QoS::ExactlyOnce,
            max_topic_alias: 10,
            mount_point: None,
            use_username_as_clientid: false,
            use_identity_as_username: false,
            security: 0,
        }
    }
}

/// Broker-wide limits and switches (built from `config::Config` by main).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// 0 = no limit.
    pub max_inflight_messages: u16,
    pub max_inflight_bytes: u64,
    /// 0 = no limit.
    pub max_queued_messages: u32,
    pub max_queued_bytes: u64,
    pub queue_qos0_messages: bool,
    pub message_size_limit: u32,
    pub max_packet_size: u32,
    pub max_keepalive: u16,
    /// Seconds; 0 disables `$SYS`.
    pub sys_interval: u32,
    pub retain_available: bool,
    /// Seconds a v3 persistent session survives its client; None = forever.
    pub persistent_client_expiration: Option<u64>,
    pub upgrade_outgoing_qos: bool,
    pub connection_messages: bool,
    /// v5 CONNACK refusals carry a Reason String (midge-only, default off).
    pub connack_reason_strings: bool,
    /// Only client ids starting with this may connect (deprecated Mosquitto option).
    pub clientid_prefixes: Option<String>,
    /// Re-check the publisher's write access when sending a retained message.
    pub check_retain_source: bool,
    /// `memory_limit` in bytes (0 = none), checked against `memory_used`.
    pub memory_limit: u64,
    /// Live heap bytes (the process's allocator counter; tests pass a fake).
    pub memory_used: fn() -> usize,
    /// Milliseconds a new connection may take to send CONNECT.
    pub connect_timeout_ms: u64,
    pub listeners: Vec<ListenerSettings>,
    pub version: String,
    /// Seed for generated client ids.
    pub seed: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_inflight_messages: 20,
            max_inflight_bytes: 0,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            message_size_limit: 0,
            max_packet_size: 0,
            max_keepalive: 65535,
            sys_interval: 10,
            retain_available: true,
            persistent_client_expiration: None,
            upgrade_outgoing_qos: false,
            connection_messages: true,
            connack_reason_strings: false,
            clientid_prefixes: None,
            check_retain_source: true,
            memory_limit: 0,
            memory_used: || 0,
            connect_timeout_ms: 20_000,
            listeners: vec![ListenerSettings::default()],
            version: format!("midge version {}", env!("CARGO_PKG_VERSION")),
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// Writes to `$SYS` (but a bridge's `$SYS/broker/connection/<name>/state`)
/// and to `$share/...` are refused whatever the ACL says, as in Mosquitto.
pub(crate) fn dollar_write_denied(topic: &str) -> bool {
    if let Some(rest) = topic.strip_prefix("$SYS") {
        let mut levels = rest.split('/');
        let bridge_state = levels.next() == Some("")
            && levels.next() == Some("broker")
            && levels.next() == Some("connection")
            && levels.next().is_some()
            && levels.next() == Some("state")
            && levels.next().is_none();
        return !bridge_state;
    }
    topic.starts_with("$share")
}

/// Why a connection ends; decides the log line, the will and a v5 DISCONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Client sent DISCONNECT (will discarded unless v5 reason 0x04).
    ClientDisconnect {
        send_will: bool,
    },
    /// Socket closed or failed.
    Lost,
    KeepaliveTimeout,
    /// A protocol violation; carries the v5 reason code of the DISCONNECT
    /// a v5 client is told.
    Protocol(ReasonCode),
    /// A protocol violation closed without a DISCONNECT: Mosquitto tells a
    /// v5 client why only for faults in PUBLISH, SUBSCRIBE and UNSUBSCRIBE,
    /// an unknown packet type and an oversized packet (see `decode_failed`).
    Violation,
    TakenOver {
        send_will: bool,
    },
    /// CONNACK refused the connection.
    Refused,
    ServerShutdown,
}

impl CloseReason {
    /// Whether the connection's will is published (or delayed): not after
    /// a normal DISCONNECT (v5: unless 0x04), a refusal or a shutdown.
    fn sends_will(self) -> bool {
        match self {
            CloseReason::ClientDisconnect { send_will } | CloseReason::TakenOver { send_will } => {
                send_will
            }
            CloseReason::Lost
            | CloseReason::KeepaliveTimeout
            | CloseReason::Protocol(_)
            | CloseReason::Violation => true,
            CloseReason::Refused | CloseReason::ServerShutdown => false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct WillMsg {
    pub msg: Message,
    pub delay: u32,
    /// Message Expiry Interval, counted from when the will is published.
    pub expiry: Option<u32>,
}

/// Counters behind `$SYS`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub msgs_received: u64,
    pub msgs_sent: u64,
    pub pub_msgs_received: u64,
    pub pub_msgs_sent: u64,
    pub pub_msgs_dropped: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub clients_connected: u64,
    pub clients_maximum: u64,
    pub connections_total: u64,
    pub pub_bytes_received: u64,
    pub pub_bytes_sent: u64,
    pub clients_expired: u64,
}

/// Per-publish match result: one entry per receiving session.
#[derive(Debug, Clone)]
struct Target {
    session: usize,
    qos: QoS,
    retain_as_published: bool,
    sub_ids: smallvec::SmallVec<[u32; 1]>,
}

/// The broker core. One per process; single-threaded.
pub struct Broker {
    pub(crate) cfg: BrokerConfig,
    pub(crate) conns: Connections,
    pub(crate) sessions: Sessions,
    pub(crate) router: Router,
    pub(crate) stats: Stats,
    pub(crate) security: Vec<crate::auth::Policy>,
    dynsec_changed: Vec<usize>,
    pub(crate) journal: journal::Journal,
    targets: Vec<Target>,
    shared_hits: Vec<u32>,
    retained_scratch: Vec<Message>,
    publish_seq: u64,
    rng: u64,
    started_at: u64,
    last_tick: u64,
    next_check: u64,
    sys: sys::SysState,
    shutting_down: bool,
    /// v5 wills waiting out their Will Delay Interval: (client id, due, will).
    delayed_wills: Vec<(Rc<str>, u64, WillMsg)>,
    /// Where events go (`set_event_sink`); dropped by default.
    events: EventSink,
}

impl Broker {
    pub fn new(cfg: BrokerConfig, now: u64) -> Broker {
        let rng = cfg.seed | 1;
        let mut b = Broker {
            cfg,
            conns: Connections::default(),
            sessions: Sessions::default(),
            router: Router::new(now),
            events: events::discard(),
            stats: Stats::default(),
            security: Vec::new(),
            dynsec_changed: Vec::new(),
            journal: Default::default(),
            targets: Vec::new(),
            shared_hits: Vec::new(),
            retained_scratch: Vec::new(),
            publish_seq: 0,
            rng,
            started_at: now,
            last_tick: now,
            next_check: now,
            sys: Default::default(),
            shutting_down: false,
            delayed_wills: Vec::new(),
        };
        b.sys_startup(now);
        b
    }

    /// Hand every event to `sink` from now on (the caller logs them).
    pub fn set_event_sink(&mut self, sink: EventSink) {
        self.events = sink;
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A connection was accepted on `listener`.
    pub fn open(&mut self, id: ConnId, listener: usize, peer: &str, now: u64) {
        let mount: Option<Rc<str>> = self
            .cfg
            .listeners
            .get(listener)
            .and_then(|l| l.mount_point.as_deref())
            .map(Into::into);
        self.conns.insert(Client {
            id,
            listener,
            peer: peer.into(),
            state: State::New,
            version: ProtocolVersion::V311,
            client_id: "".into(),
            clean_start: true,
            keepalive_ms: 0,
            last_rx: now,
            connected_at: now,
            session: None,
            will: None,
            outbox: Outbox::default(),
            dirty: false,
            max_packet_out: 0,
            receive_max: u16::MAX,
            aliases: None,
            topic_alias_max_out: 0,
            request_problem_info: true,
            cert_username: None,
            mount,
            bridge: false,
        });
        self.stats.connections_total += 1;
        self.next_check = self.next_check.min(now + self.cfg.connect_timeout_ms);
    }

    /// SIGHUP: new limits and listener security settings. Listeners
    /// themselves stay as they were bound (as in Mosquitto).
    pub fn reload_config(&mut self, mut cfg: BrokerConfig) {
        if cfg.listeners.len() != self.cfg.listeners.len() {
            cfg.listeners = self.cfg.listeners.clone();
        }
        cfg.seed = self.cfg.seed;
        cfg.version = self.cfg.version.clone();
        self.cfg = cfg;
    }

    /// Install (or replace, on SIGHUP) the password file and ACL of security
    /// policy `idx`. Connected clients stay connected; later checks use it.
    pub fn set_security(&mut self, idx: usize, policy: crate::auth::Policy) {
        if self.security.len() <= idx {
            self.security.resize_with(idx + 1, Default::default);
        }
        self.security[idx] = policy;
    }

    /// ACL check for one session (true when no ACL applies).
    pub(crate) fn acl_allows(
        &self,
        skey: usize,
        topic: &str,
        access: crate::auth::acl::Access,
    ) -> bool {
        let Some(s) = self.sessions.get(skey) else {
            return false;
        };
        match self.security.get(s.security) {
            Some(p) => p.allows(&s.client_id, s.username.as_deref(), topic, access),
            None => true,
        }
    }

    /// A PUBLISH to `$CONTROL/dynamic-security/v1`: handled by the built-in
    /// plugin of the publisher's security policy, not routed. Returns the
    /// ack reason code, or None when no plugin is loaded (routed as usual).
    pub(crate) fn dynsec_control(
        &mut self,
        origin: usize,
        payload: &[u8],
        now: u64,
    ) -> Option<ReasonCode> {
        let (idx, client_id, username) = {
            let s = self.sessions.get(origin)?;
            (s.security, s.client_id.clone(), s.username.clone())
        };
        self.security.get(idx)?.dynsec.as_ref()?;
        if !self.acl_allows(
            origin,
            crate::auth::dynsec::CONTROL_TOPIC,
            crate::auth::acl::Access::Write,
        ) {
            (self.events)(&Event::ControlDenied {
                client_id: &client_id,
            });
            return Some(ReasonCode::NotAuthorized);
        }
        let d = self.security.get_mut(idx)?.dynsec.as_mut()?;
        let crate::auth::dynsec::Handled {
            response,
            changed,
            kick,
            kick_anonymous,
        } = d.handle_control(payload);
        let _ = username;
        if changed && !self.dynsec_changed.contains(&idx) {
            self.dynsec_changed.push(idx);
        }
        self.publish_internal(
            crate::auth::dynsec::RESPONSE_TOPIC,
            response.as_bytes(),
            false,
            now,
        );
        // Clients whose rights changed under them are disconnected, as the
        // plugin does (they reconnect under the new configuration).
        let victims: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| match s.username.as_deref() {
                Some(u) => kick.iter().any(|k| k == u),
                None => kick_anonymous,
            })
            .filter_map(|(_, s)| s.conn)
            .collect();
        for v in victims {
            self.close(
                v,
                CloseReason::Protocol(ReasonCode::AdministrativeAction),
                now,
            );
        }
        Some(ReasonCode::Success)
    }

    /// Security policies whose dynamic-security configuration changed since
    /// the last call (the caller saves them to their files).
    pub fn take_dynsec_changes(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.dynsec_changed)
    }

    /// The dynamic-security configuration of a policy, to save.
    pub fn dynsec(&self, idx: usize) -> Option<&crate::auth::dynsec::DynSec> {
        self.security.get(idx)?.dynsec.as_ref()
    }

    /// The TLS layer read the client's certificate name (or found none).
    pub fn set_cert_username(&mut self, id: ConnId, name: Option<String>) {
        if let Some(c) = self.conns.get_mut(id) {
            c.cert_username = name.map(Into::into);
        }
    }

    /// Feed bytes read from the connection. Returns how many were consumed;
    /// the caller keeps the rest (an incomplete packet) and offers it again
    /// with more bytes appended.
    pub fn receive(&mut self, id: ConnId, buf: &[u8], now: u64) -> usize {
        let mut off = 0;
        while off < buf.len() {
            let Some(c) = self.conns.get_mut(id) else {
                return buf.len();
            };
            if c.state == State::Closing {
                return buf.len();
            }
            let rest = &buf[off..];
            if c.state == State::New && rest[0] >> 4 != crate::protocol::packet_type::CONNECT {
                (self.events)(&Event::NotConnectFirst { peer: &c.peer });
                self.close(id, CloseReason::Protocol(ReasonCode::ProtocolError), now);
                return buf.len();
            }
            if c.state == State::New {
                c.bridge = crate::protocol::peek_connect_bridge(rest);
            }
            let version = c.version;
            match decode(rest, version, self.cfg.max_packet_size) {
                Ok(Decoded::Incomplete) => return off,
                Ok(Decoded::Packet(packet, n)) => {
                    off += n;
                    c.last_rx = now;
                    self.stats.msgs_received += 1;
                    self.stats.bytes_received += n as u64;
                    self.handle(id, packet, now);
                }
                Err(e) => {
                    self.decode_failed(id, e, rest[0] >> 4, now);
                    return buf.len();
                }
            }
        }
        off
    }

    fn handle(&mut self, id: ConnId, packet: Packet<'_>, now: u64) {
        let Some(c) = self.conns.get(id) else { return };
        let connected = c.state == State::Connected;
        if !connected {
            if let Packet::Connect(p) = packet {
                self.handle_connect(id, &p, now);
            }
            return;
        }
        match packet {
            Packet::Publish(p) => self.handle_publish(id, &p, now),
            Packet::Puback(a) => self.handle_puback(id, a.packet_id, now),
            Packet::Pubrec(a) => self.handle_pubrec(id, a.packet_id, a.reason, now),
            Packet::Pubrel(a) => self.handle_pubrel(id, a.packet_id, now),
            Packet::Pubcomp(a) => self.handle_pubcomp(id, a.packet_id, now),
            Packet::Subscribe(s) => self.handle_subscribe(id, &s, now),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(id, &u, now),
            Packet::Pingreq => {
                self.conns
                    .send(id, &mut self.stats, |buf, _| encode::encode_pingresp(buf));
            }
            Packet::Disconnect(d) => self.handle_disconnect(id, &d, now),
            // Only a server sends these; Mosquitto 2.0.11 reads and ignores
            // them from a client, and so does midge.
            Packet::Suback(_) | Packet::Unsuback(_) | Packet::Pingresp => {}
            // [MQTT-3.1.0-2] a second CONNECT is a protocol violation. No
            // enhanced authentication method is configured, so no AUTH
            // exchange can be in progress. A CONNACK from a client closes it
            // too, as in Mosquitto.
            Packet::Connect(_) | Packet::Auth(_) | Packet::Connack(_) => {
                self.close(id, CloseReason::Violation, now)
            }
        }
    }

    /// A packet could not be decoded; `packet_type` is its fixed header's type.
    fn decode_failed(&mut self, id: ConnId, e: DecodeError, packet_type: u8, now: u64) {
        use crate::protocol::packet_type as pt;
        let Some(c) = self.conns.get(id) else { return };
        let name = if c.client_id.is_empty() {
            "<unknown>"
        } else {
            &c.client_id
        };
        if c.state == State::New {
            if let DecodeError::UnsupportedProtocolVersion(level) = e {
                (self.events)(&Event::UnsupportedProtocol {
                    client_id: name,
                    level,
                    peer: &c.peer,
                });
                // Always in the 3.1.1 form: the client's version is unknown.
                self.send_connack(id, false, reason::CONNACK_UNACCEPTABLE_PROTOCOL, false);
                self.close(id, CloseReason::Refused, now);
                return;
            }
            if e == DecodeError::ZeroLengthClientId {
                // [MQTT-3.1.3-8]: CONNACK 0x02, then close.
                self.send_connack(id, false, reason::CONNACK_IDENTIFIER_REJECTED, false);
                self.close(id, CloseReason::Refused, now);
                return;
            }
            // Any other fault in a CONNECT closes the connection without a
            // CONNACK, for v5 too (section 4.13.1 allows either; Mosquitto
            // answers none).
        }
        (self.events)(&Event::Malformed {
            client_id: name,
            error: e,
        });
        // Which faults get a v5 DISCONNECT, and with which code, follows
        // Mosquitto 2.0.11: only PUBLISH, SUBSCRIBE and UNSUBSCRIBE faults and
        // an unknown packet type are answered; a repeated property, or a
        // fault in any other packet, closes the connection without a word.
        let why = match (e, packet_type) {
            (DecodeError::PacketTooLarge, _) => CloseReason::Protocol(e.reason_code()),
            (DecodeError::RemainingLengthTooLong, _) => CloseReason::Violation,
            (DecodeError::DuplicateProperty, _) => CloseReason::Violation,
            (_, pt::SUBSCRIBE | pt::UNSUBSCRIBE) => {
                CloseReason::Protocol(ReasonCode::MalformedPacket)
            }
            (DecodeError::TopicAliasZero, pt::PUBLISH) => {
                CloseReason::Protocol(ReasonCode::MalformedPacket)
            }
            (_, pt::PUBLISH) => CloseReason::Protocol(e.reason_code()),
            (DecodeError::UnknownPacketType, 0) => CloseReason::Protocol(ReasonCode::ProtocolError),
            _ => CloseReason::Violation,
        };
        self.close(id, why, now);
    }

    /// The socket was closed by the peer or failed.
    pub fn connection_lost(&mut self, id: ConnId, now: u64) {
        self.close(id, CloseReason::Lost, now);
    }

    /// Connections with bytes to flush since the last call.
    pub fn take_dirty(&mut self, out: &mut Vec<ConnId>) {
        self.conns.take_dirty(out);
    }

    /// Connections the broker wants closed (after flushing what they have).
    pub fn take_closing(&mut self, out: &mut Vec<ConnId>) {
        out.clear();
        std::mem::swap(out, &mut self.conns.closing);
    }

    pub fn outbox(&self, id: ConnId) -> &[u8] {
        self.conns
            .get(id)
            .map(|c| c.outbox.pending())
            .unwrap_or(&[])
    }

    /// `n` bytes of the outbox were written to the socket.
    pub fn outbox_written(&mut self, id: ConnId, n: usize, now: u64) {
        let was_congested = self
            .conns
            .get(id)
            .is_some_and(|c| c.outbox.len() >= OUTBOX_SOFT_LIMIT);
        let Some(c) = self.conns.written(id, n) else {
            return;
        };
        if was_congested && c.outbox.len() < OUTBOX_SOFT_LIMIT / 2 {
            if let Some(s) = c.session {
                self.pump(s, now);
            }
        }
    }

    /// Whether the network layer should keep reading from this connection:
    /// a client that does not read its own responses is not served further.
    pub fn wants_read(&self, id: ConnId) -> bool {
        self.conns
            .get(id)
            .is_some_and(|c| c.state != State::Closing && c.outbox.len() < OUTBOX_SOFT_LIMIT)
    }

    /// The network layer closed the socket: forget the slot.
    pub fn release(&mut self, id: ConnId, now: u64) {
        if self
            .conns
            .get(id)
            .is_some_and(|c| c.state != State::Closing)
        {
            self.close(id, CloseReason::Lost, now);
        }
        self.conns.remove(id);
    }

    pub fn is_connected(&self, id: ConnId) -> bool {
        self.conns
            .get(id)
            .is_some_and(|c| c.state == State::Connected)
    }

    /// Begin an orderly shutdown: v5 clients get DISCONNECT 0x8B, every
    /// connection is closed. Wills are not sent (as Mosquitto).
    pub fn shutdown(&mut self, now: u64) {
        self.shutting_down = true;
        let ids: Vec<ConnId> = self.conns.iter().map(|c| c.id).collect();
        for id in ids {
            self.close(id, CloseReason::ServerShutdown, now);
        }
    }

    /// Earliest time (broker clock, ms) at which `tick` has work to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut t = self.next_check.max(self.last_tick + 1000);
        if self.cfg.sys_interval > 0 {
            t = t.min(self.sys.next_publish);
        }
        Some(t)
    }

    /// Run timers: keepalive, connect timeout, session expiry, `$SYS`.
    pub fn tick(&mut self, now: u64) {
        if self.cfg.sys_interval > 0 && now >= self.sys.next_publish {
            self.sys_publish(now);
        }
        if now < self.next_check || now < self.last_tick + 1000 {
            return;
        }
        self.last_tick = now;
        let mut next = now + 3_600_000;
        let mut timed_out: Vec<(ConnId, bool)> = Vec::new();
        for c in self.conns.iter() {
            match c.state {
                State::New => {
                    let t = c.connected_at + self.cfg.connect_timeout_ms;
                    if now >= t {
                        timed_out.push((c.id, false));
                    } else {
                        next = next.min(t);
                    }
                }
                State::Connected if c.keepalive_ms > 0 => {
                    let t = c.last_rx + c.keepalive_ms;
                    if now >= t {
                        timed_out.push((c.id, true));
                    } else {
                        next = next.min(t);
                    }
                }
                _ => {}
            }
        }
        for (id, connected) in timed_out {
            if connected {
                if let Some(c) = self.conns.get(id) {
                    (self.events)(&Event::KeepaliveTimeout {
                        client_id: &c.client_id,
                    });
                }
                self.close(id, CloseReason::KeepaliveTimeout, now);
            } else {
                // No CONNECT in time: Mosquitto's line for a client it has
                // no id for yet.
                (self.events)(&Event::KeepaliveTimeout {
                    client_id: "<unknown>",
                });
                self.close(
                    id,
                    CloseReason::Protocol(ReasonCode::MaximumConnectTime),
                    now,
                );
            }
        }
        // Offline sessions that have expired.
        let mut expired = Vec::new();
        for (key, s) in self.sessions.iter() {
            if s.conn.is_none() && s.expiry_interval != u32::MAX {
                let t = s.disconnected_at + u64::from(s.expiry_interval) * 1000;
                if now >= t {
                    expired.push(key);
                } else {
                    next = next.min(t);
                }
            }
        }
        for key in expired {
            if let Some(s) = self.sessions.get(key) {
                (self.events)(&Event::SessionExpired {
                    client_id: &s.client_id,
                });
                self.stats.clients_expired += 1;
                // A will still waiting goes now that its session is over.
                let cid = s.client_id.clone();
                for w in self.delayed_wills.iter_mut() {
                    if *w.0 == *cid {
                        w.1 = now;
                    }
                }
            }
            self.remove_session(key, now);
        }
        self.send_due_wills(now, &mut next);
        self.router.prune_retained(now);
        self.next_check = next;
    }

    /// Close a connection for `why`: will, session detach, log, v5 DISCONNECT.
    pub(crate) fn close(&mut self, id: ConnId, why: CloseReason, now: u64) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.state == State::Closing {
            return;
        }
        let was_connected = c.state == State::Connected;
        if was_connected && c.version.is_v5() {
            self.send_disconnect(id, &why);
        }
        let c = match self.conns.get_mut(id) {
            Some(c) => c,
            None => return,
        };
        c.state = State::Closing;
        let client_id = c.client_id.clone();
        let will = c.will.take();
        let session = c.session.take();
        self.conns.closing.push(id);
        if !was_connected {
            return;
        }
        self.stats.clients_connected = self.stats.clients_connected.saturating_sub(1);
        if self.cfg.connection_messages {
            let gone = match why {
                CloseReason::ClientDisconnect { .. } => Some(Gone::Disconnected),
                CloseReason::Lost => Some(Gone::ClosedConnection),
                CloseReason::Protocol(_) | CloseReason::Violation => Some(Gone::ProtocolError),
                _ => None,
            };
            if let Some(why) = gone {
                (self.events)(&Event::Disconnected {
                    client_id: &client_id,
                    why,
                });
            }
        }
        let expiry = session
            .and_then(|k| self.sessions.get(k))
            .map(|s| s.expiry_interval)
            .unwrap_or(0);
        if let Some(s) = session {
            self.detach_session(s, id, now);
        }
        if why.sends_will() && !self.shutting_down {
            if let Some(w) = will {
                self.leave_will(client_id, *w, expiry, now);
            }
        }
    }

    /// v5: DISCONNECT from the server with the close's reason, where the
    /// spec allows it (keep-alive, protocol faults, takeover, shutdown).
    fn send_disconnect(&mut self, id: ConnId, why: &CloseReason) {
        let code = match *why {
            CloseReason::KeepaliveTimeout => ReasonCode::KeepAliveTimeout,
            CloseReason::Protocol(code) => code,
            CloseReason::TakenOver { .. } => ReasonCode::SessionTakenOver,
            CloseReason::ServerShutdown => ReasonCode::ServerShuttingDown,
            _ => return,
        };
        let d = Packet::Disconnect(crate::protocol::Disconnect {
            reason: code.code(),
            properties: crate::protocol::Properties::EMPTY,
        });
        // Written even though the connection is already closing: it is the
        // last thing the client is told.
        self.conns
            .send_last(id, &mut self.stats, |buf, v| encode::encode(&d, v, buf));
    }

    /// The will goes at the earlier of its delay and the end of the
    /// session [MQTT-3.1.3-9]: now, or from the delayed-will list.
    fn leave_will(&mut self, client_id: Rc<str>, w: WillMsg, expiry: u32, now: u64) {
        let delay = w.delay.min(expiry);
        if delay == 0 {
            self.publish_will(&w, now);
        } else {
            let due = now + u64::from(delay) * 1000;
            self.delayed_wills.push((client_id, due, w));
            self.next_check = self.next_check.min(due);
        }
    }

    /// A client id came back: its delayed will is not sent.
    pub(crate) fn cancel_delayed_will(&mut self, client_id: &str) {
        self.delayed_wills.retain(|(c, _, _)| &**c != client_id);
    }

    fn send_due_wills(&mut self, now: u64, next: &mut u64) {
        let mut i = 0;
        while i < self.delayed_wills.len() {
            let t = self.delayed_wills[i].1;
            if t <= now {
                let (_, _, w) = self.delayed_wills.swap_remove(i);
                self.publish_will(&w, now);
            } else {
                *next = (*next).min(t);
                i += 1;
            }
        }
    }

    fn detach_session(&mut self, key: usize, id: ConnId, now: u64) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.conn != Some(id) {
            return;
        }
        s.conn = None;
        s.disconnected_at = now;
        if s.expiry_interval == 0 {
            self.remove_session(key, now);
        } else if s.expiry_interval != u32::MAX {
            let t = now + u64::from(s.expiry_interval) * 1000;
            self.next_check = self.next_check.min(t);
        }
    }

    pub(crate) fn remove_session(&mut self, key: usize, now: u64) {
        let Some(s) = self.sessions.remove(key) else {
            return;
        };
        if s.persisted {
            self.journal
                .push(|| journal::JournalOp::EndSession(s.client_id.clone()));
        }
        for (filter, _) in s.subs.iter() {
            self.router.unsubscribe(filter, key);
        }
        // Messages this session got through a shared subscription and never
        // acknowledged go to another member of the group [MQTT-4.8.2-?].
        let unacked = s
            .inflight
            .into_iter()
            .filter(|f| f.state != session::OutState::AwaitPubcomp)
            .map(|f| f.out)
            .chain(s.queue);
        let reroute: Vec<session::Outgoing> =
            unacked.filter(|o| o.group != session::NO_GROUP).collect();
        for o in reroute {
            self.redeliver_shared(o, now);
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough for client ids, not for secrets.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Number of clients currently connected.
    pub fn connected_count(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| c.state == State::Connected)
            .count()
    }

    /// A human-readable dump of the subscription tree (SIGUSR2).
    pub fn dump_subscriptions(&self) -> String {
        let mut out = String::new();
        self.router.for_each_subscription(|filter, key, opts| {
            let id = self
                .sessions
                .get(key as usize)
                .map(|s| &*s.client_id)
                .unwrap_or("?");
            out.push_str(&format!("{} {} (QoS {})\n", filter, id, opts.qos as u8));
        });
        out
    }

    /// Publish a message from the broker itself (QoS 0), e.g. log lines.
    pub fn publish_internal(&mut self, topic: &str, payload: &[u8], retain: bool, now: u64) {
        self.route(
            usize::MAX,
            topic,
            payload,
            &[],
            None,
            QoS::AtMostOnce,
            retain,
            None,
            now,
        );
    }

    /// Messages held for the session of `client_id` (in flight plus
    /// queued); 0 if there is no such session. A bridge's `threshold` and
    /// `$SYS` queue count read it.
    pub fn queued_for(&self, client_id: &str) -> usize {
        self.sessions
            .find(client_id)
            .and_then(|k| self.sessions.get(k))
            .map_or(0, |s| s.stored_len())
    }

    /// Uptime in seconds.
    pub fn uptime(&self, now: u64) -> u64 {
        now.saturating_sub(self.started_at) / 1000
    }
}
