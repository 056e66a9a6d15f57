//! session: the MQTT client state machine, with no socket and no clock.
//!
//! Owns: what one client connection knows and promises: CONNECT/CONNACK,
//! packet identifiers, the outgoing QoS 1/2 handshakes and their inflight
//! window (`-M` and the server's Receive Maximum), the incoming QoS 1/2
//! handshakes, inbound topic aliases, keepalive (PINGREQ when quiet, a
//! timeout when the server stays silent) and the debug lines Mosquitto's
//! library prints ("Client (null) sending CONNECT").
//!
//! Must not: touch sockets, files or the system clock. Bytes come in through
//! `feed`, go out through `take_output`/`output`, and time is always an
//! argument, so the command-line tools drive it with blocking sockets and
//! the bridge can drive it from mio.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::protocol::encode::{encode, encode_ack, encode_publish};
use crate::protocol::{
    decode, packet_type, reason, Connect, DecodeError, Decoded, Disconnect, Packet, Properties,
    PropertyWriter, ProtocolVersion, QoS, SubscribeFilters, UnsubscribeFilters, Will,
};

/// The Receive Maximum libmosquitto announces for itself, and the default
/// outgoing window (`-M`).
pub const DEFAULT_INFLIGHT: u16 = 20;

/// Everything CONNECT needs, owned.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub version: ProtocolVersion,
    /// None: send an empty client id (the server assigns one). MQTT 3.1 has
    /// no such thing, so there one is generated, like libmosquitto does.
    pub client_id: Option<String>,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<WillConfig>,
    /// Encoded v5 CONNECT properties (no length prefix). A Receive Maximum
    /// is appended unless one is already there.
    pub connect_properties: Vec<u8>,
    /// Our Receive Maximum (v5): how many QoS 1/2 messages the server may
    /// have unacknowledged towards us.
    pub receive_maximum: u16,
    /// Our outgoing window for QoS 1/2 publishes (`-M`).
    pub max_inflight: u16,
    /// Produce `Event::Log` lines, worded like libmosquitto's debug log.
    pub debug: bool,
    /// Announce a bridge: bit 7 of the CONNECT protocol level (3.1/3.1.1
    /// only; Mosquitto's `try_private`).
    pub bridge: bool,
    /// Behave like a Mosquitto bridge: QoS 1/2 publishes made while
    /// disconnected are queued; after CONNACK nothing is resent until the
    /// caller (having made its subscriptions) calls `resume`, which resends
    /// unfinished handshakes with DUP whether or not the server kept the
    /// session; a PINGREQ from the server is answered; a PUBREC or PUBREL
    /// for an unknown id gets a plain PUBREL or PUBCOMP (as Mosquitto).
    pub resume_by_caller: bool,
}

impl SessionConfig {
    pub fn new(version: ProtocolVersion) -> SessionConfig {
        SessionConfig {
            version,
            client_id: None,
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            connect_properties: Vec::new(),
            receive_maximum: DEFAULT_INFLIGHT,
            max_inflight: DEFAULT_INFLIGHT,
            debug: false,
            bridge: false,
            resume_by_caller: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WillConfig {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    /// Encoded v5 will properties (no length prefix).
    pub properties: Vec<u8>,
}

/// A received application message, owned (it outlives the read buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    /// Packet identifier; 0 for QoS 0.
    pub mid: u16,
    /// Raw v5 property block as received (empty in 3.1.x).
    pub properties: Vec<u8>,
}

impl Message {
    pub fn props(&self) -> Properties<'_> {
        Properties::from_raw_unchecked(&self.properties)
    }
}

/// What happened, in the order it happened. `Log` lines are interleaved
/// with the rest exactly where libmosquitto would print them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Log(String),
    /// CONNACK arrived. `code` is the 3.1.x return code or the v5 reason
    /// code; anything but 0 means refused (the session is then closed).
    Connack {
        code: u8,
        session_present: bool,
        properties: Vec<u8>,
    },
    Message(Message),
    /// A publish is complete: QoS 0 once queued for sending, QoS 1 on
    /// PUBACK, QoS 2 on PUBCOMP (or a failing PUBREC).
    Published {
        mid: u16,
        reason: u8,
        properties: Vec<u8>,
    },
    Subscribed {
        mid: u16,
        codes: Vec<u8>,
    },
    Unsubscribed {
        mid: u16,
        codes: Vec<u8>,
    },
    /// The server sent DISCONNECT (v5).
    Disconnected {
        reason: u8,
        properties: Vec<u8>,
    },
}

/// Why the session cannot go on. The connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The server broke the protocol (malformed or unexpected packet).
    Protocol(String),
    /// No PINGRESP (or anything else) within the keepalive.
    KeepaliveTimeout,
    /// An operation that needs a connection was called without one.
    NotConnected,
    /// The caller passed something the protocol cannot carry.
    InvalidArgument(&'static str),
    /// Payload over the MQTT maximum (268435455 bytes).
    PayloadTooLarge,
    /// The packet would exceed the server's Maximum Packet Size (v5).
    OversizePacket,
    /// QoS above the server's Maximum QoS (v5).
    QosNotSupported,
    /// Retained publish to a server without Retain Available (v5).
    RetainNotSupported,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Protocol(s) => write!(f, "protocol error: {s}"),
            SessionError::KeepaliveTimeout => f.write_str("keepalive timeout"),
            SessionError::NotConnected => f.write_str("not connected"),
            SessionError::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            SessionError::PayloadTooLarge => f.write_str("payload too large"),
            SessionError::OversizePacket => {
                f.write_str("packet larger than the server's maximum packet size")
            }
            SessionError::QosNotSupported => f.write_str("QoS not supported by the server"),
            SessionError::RetainNotSupported => f.write_str("retain not supported by the server"),
        }
    }
}

impl std::error::Error for SessionError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing sent yet (or closed and ready to be reconnected).
    Idle,
    /// CONNECT sent, waiting for CONNACK.
    Connecting,
    Connected,
    /// The server refused the CONNACK. Nothing more is read, but a
    /// DISCONNECT may still be sent (mosquitto_sub does).
    Refused,
    /// DISCONNECT sent or the connection is closed.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// What an outgoing QoS 1/2 publish waits for next.
enum Awaiting {
    Puback,
    Pubrec,
    Pubcomp,
}

#[derive(Clone, Debug)]
struct Outgoing {
    mid: u16,
    qos: QoS,
    retain: bool,
    topic: String,
    payload: Vec<u8>,
    properties: Vec<u8>,
    stage: Awaiting,
}

/// One MQTT client connection's state. See the module doc.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    /// Client id as known now: configured, generated (3.1) or assigned by
    /// the server (v5). None prints as "(null)" in debug lines.
    id: Option<String>,
    out: Vec<u8>,
    rx: Vec<u8>,
    /// Bytes of `rx` already decoded.
    rx_pos: usize,
    events: VecDeque<Event>,
    last_mid: u16,
    /// Sent QoS 1/2 publishes waiting for their handshake to finish.
    inflight: Vec<Outgoing>,
    /// QoS 1/2 publishes waiting for room in the inflight window.
    queued: VecDeque<Outgoing>,
    /// Incoming QoS 2 messages between PUBREC and PUBREL.
    incoming_qos2: HashMap<u16, Message>,
    server_receive_maximum: u16,
    server_topic_alias_maximum: u16,
    /// From a v5 CONNACK: Maximum QoS, Retain Available, Maximum Packet
    /// Size (0: no limit).
    server_maximum_qos: u8,
    server_retain_available: bool,
    server_maximum_packet_size: u32,
    aliases_in: HashMap<u16, String>,
    last_out: Option<Instant>,
    last_in: Option<Instant>,
    ping_outstanding: bool,
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        let id = config.client_id.clone();
        Session {
            config,
            state: State::Idle,
            id,
            out: Vec::new(),
            rx: Vec::new(),
            rx_pos: 0,
            events: VecDeque::new(),
            last_mid: 0,
            inflight: Vec::new(),
            queued: VecDeque::new(),
            incoming_qos2: HashMap::new(),
            server_receive_maximum: u16::MAX,
            server_topic_alias_maximum: 0,
            server_maximum_qos: 2,
            server_retain_available: true,
            server_maximum_packet_size: 0,
            aliases_in: HashMap::new(),
            last_out: None,
            last_in: None,
            ping_outstanding: false,
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn version(&self) -> ProtocolVersion {
        self.config.version
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Client id as currently known (None: not known to us).
    pub fn client_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The Topic Alias Maximum the server granted (v5 CONNACK), 0 if none.
    pub fn server_topic_alias_maximum(&self) -> u16 {
        self.server_topic_alias_maximum
    }

    fn log_id(&self) -> &str {
        self.id.as_deref().unwrap_or("(null)")
    }

    fn log(&mut self, line: impl FnOnce(&str) -> String) {
        if self.config.debug {
            let l = line(self.log_id());
            self.events.push_back(Event::Log(l));
        }
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forget the first `n` bytes of `output()` (they were written).
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.out.len());
        self.out.drain(..n);
    }

    /// Take every byte waiting to be written.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// QoS 1/2 publishes not yet completed (sent or waiting to be sent).
    pub fn pending_publishes(&self) -> usize {
        self.inflight.len() + self.queued.len()
    }

    /// True when another QoS 1/2 publish would be sent at once rather than
    /// queued.
    pub fn window_open(&self) -> bool {
        self.queued.is_empty() && self.inflight.len() < usize::from(self.window())
    }

    fn window(&self) -> u16 {
        self.config
            .max_inflight
            .max(1)
            .min(self.server_receive_maximum.max(1))
    }

    fn next_mid(&mut self) -> u16 {
        // Skip identifiers still in use by an unfinished handshake.
        for _ in 0..=u16::MAX {
            self.last_mid = self.last_mid.wrapping_add(1);
            if self.last_mid == 0 {
                self.last_mid = 1;
            }
            let mid = self.last_mid;
            let busy = self.inflight.iter().any(|o| o.mid == mid)
                || self.queued.iter().any(|o| o.mid == mid);
            if !busy {
                return mid;
            }
        }
        self.last_mid
    }

    fn sent(&mut self, now: Instant) {
        self.last_out = Some(now);
    }

    /// Start (or restart, after a lost connection) the connection: queue
    /// CONNECT. Unsent output and half-read input from an earlier
    /// connection are dropped.
    pub fn connect(&mut self, now: Instant) {
        self.out.clear();
        self.rx.clear();
        self.rx_pos = 0;
        self.ping_outstanding = false;
        self.aliases_in.clear();
        self.server_receive_maximum = u16::MAX;
        self.server_topic_alias_maximum = 0;
        self.server_maximum_qos = 2;
        self.server_retain_available = true;
        self.server_maximum_packet_size = 0;
        if self.id.is_none() && self.config.version == ProtocolVersion::V31 {
            // 3.1 forbids an empty client id; libmosquitto makes one up.
            self.id = Some(generate_client_id(now));
        }
        let mut props = PropertyWriter::new();
        let mut raw_props = self.config.connect_properties.clone();
        if self.config.version.is_v5() {
            let has_rm = Properties::from_raw_unchecked(&raw_props)
                .receive_maximum()
                .is_some();
            if !has_rm {
                props.push(crate::protocol::Property::ReceiveMaximum(
                    self.config.receive_maximum.max(1),
                ));
                raw_props.extend_from_slice(props.as_bytes());
            }
        }
        self.log(|id| format!("Client {id} sending CONNECT"));
        let will = self.config.will.as_ref().map(|w| Will {
            topic: &w.topic,
            payload: &w.payload,
            qos: w.qos,
            retain: w.retain,
            properties: Properties::from_raw_unchecked(&w.properties),
        });
        let connect = Connect {
            version: self.config.version,
            clean_start: self.config.clean_start,
            keep_alive: self.config.keep_alive,
            properties: Properties::from_raw_unchecked(&raw_props),
            client_id: self.id.as_deref().unwrap_or(""),
            will,
            username: self.config.username.as_deref(),
            password: self.config.password.as_deref(),
        };
        let mut out = Vec::new();
        encode(&Packet::Connect(connect), self.config.version, &mut out);
        if self.config.bridge && !self.config.version.is_v5() {
            crate::protocol::encode::mark_connect_bridge(&mut out);
        }
        self.out.extend_from_slice(&out);
        self.state = State::Connecting;
        self.last_in = Some(now);
        self.sent(now);
    }

    /// The connection is gone (closed by either side or broken). Inflight
    /// publishes stay and are resent after the next successful CONNACK that
    /// reports a present session.
    pub fn connection_lost(&mut self) {
        self.state = State::Closed;
        self.out.clear();
        self.rx.clear();
        self.rx_pos = 0;
        self.ping_outstanding = false;
    }

    /// Publish. Returns the message id (also assigned for QoS 0, as
    /// libmosquitto does, so debug lines and `Published` events match).
    /// QoS 1/2 messages beyond the inflight window are queued and sent as
    /// acknowledgements free the window. In v5 an empty `topic` is allowed
    /// when `properties` carries a Topic Alias.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        properties: &[u8],
        now: Instant,
    ) -> Result<u16, SessionError> {
        let offline_ok = self.config.resume_by_caller && qos != QoS::AtMostOnce;
        if self.state != State::Connected && !offline_ok {
            return Err(SessionError::NotConnected);
        }
        if topic.len() > usize::from(u16::MAX) {
            return Err(SessionError::InvalidArgument(
                "topic longer than 65535 bytes",
            ));
        }
        let mid = self.next_mid();
        if qos == QoS::AtMostOnce {
            self.send_publish(false, qos, retain, topic, mid, properties, payload, now);
            self.events.push_back(Event::Published {
                mid,
                reason: 0,
                properties: Vec::new(),
            });
            return Ok(mid);
        }
        let o = Outgoing {
            mid,
            qos,
            retain,
            topic: topic.to_string(),
            payload: payload.to_vec(),
            properties: properties.to_vec(),
            stage: if qos == QoS::AtLeastOnce {
                Awaiting::Puback
            } else {
                Awaiting::Pubrec
            },
        };
        if self.state == State::Connected && self.window_open() {
            self.send_outgoing(&o, false, now);
            self.inflight.push(o);
        } else {
            self.queued.push_back(o);
        }
        Ok(mid)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_publish(
        &mut self,
        dup: bool,
        qos: QoS,
        retain: bool,
        topic: &str,
        mid: u16,
        properties: &[u8],
        payload: &[u8],
        now: Instant,
    ) {
        self.log(|id| {
            format!(
                "Client {id} sending PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(dup),
                qos as u8,
                u8::from(retain),
                mid,
                if topic.is_empty() { "(null)" } else { topic },
                payload.len()
            )
        });
        encode_publish(
            &mut self.out,
            self.config.version,
            dup,
            qos,
            retain,
            topic,
            mid,
            if self.config.version.is_v5() {
                properties
            } else {
                &[]
            },
            &[],
            payload,
        );
        self.sent(now);
    }

    fn send_outgoing(&mut self, o: &Outgoing, dup: bool, now: Instant) {
        match o.stage {
            Awaiting::Puback | Awaiting::Pubrec => self.send_publish(
                dup,
                o.qos,
                o.retain,
                &o.topic,
                o.mid,
                &o.properties,
                &o.payload,
                now,
            ),
            Awaiting::Pubcomp => self.send_pubrel(o.mid, now),
        }
    }

    fn send_pubrel(&mut self, mid: u16, now: Instant) {
        self.log(|id| format!("Client {id} sending PUBREL (m{mid})"));
        encode_ack(
            &mut self.out,
            packet_type::PUBREL,
            self.config.version,
            mid,
            0,
        );
        self.sent(now);
    }

    /// Move queued publishes into the window while there is room.
    fn fill_window(&mut self, now: Instant) {
        while self.state == State::Connected && self.inflight.len() < usize::from(self.window()) {
            let Some(o) = self.queued.pop_front() else {
                break;
            };
            self.send_outgoing(&o, false, now);
            self.inflight.push(o);
        }
    }

    /// With `resume_by_caller`: resend every unfinished handshake with DUP
    /// (PUBREL where PUBREC was already received), oldest first, then send
    /// what was queued while the window was full or the link was down.
    pub fn resume(&mut self, now: Instant) {
        if self.state != State::Connected {
            return;
        }
        let inflight = std::mem::take(&mut self.inflight);
        for o in &inflight {
            self.send_outgoing(o, true, now);
        }
        self.inflight = inflight;
        self.fill_window(now);
    }

    /// Subscribe to `filters` (filter, options byte: QoS in bits 0-1, v5
    /// flags above) in one SUBSCRIBE. Returns its message id.
    pub fn subscribe(
        &mut self,
        filters: &[(&str, u8)],
        properties: &[u8],
        now: Instant,
    ) -> Result<u16, SessionError> {
        if self.state != State::Connected {
            return Err(SessionError::NotConnected);
        }
        if filters.is_empty() {
            return Err(SessionError::InvalidArgument("no topic filter"));
        }
        let mid = self.next_mid();
        let mut raw = Vec::new();
        for &(filter, opts) in filters {
            if filter.len() > usize::from(u16::MAX) {
                return Err(SessionError::InvalidArgument(
                    "filter longer than 65535 bytes",
                ));
            }
            raw.extend_from_slice(&(filter.len() as u16).to_be_bytes());
            raw.extend_from_slice(filter.as_bytes());
            raw.push(opts);
        }
        for &(filter, opts) in filters {
            self.log(|id| {
                format!(
                    "Client {id} sending SUBSCRIBE (Mid: {mid}, Topic: {filter}, QoS: {}, Options: 0x{:02x})",
                    opts & 0x03,
                    opts & 0xFC
                )
            });
        }
        let packet = Packet::Subscribe(crate::protocol::Subscribe {
            packet_id: mid,
            properties: Properties::from_raw_unchecked(properties),
            filters: SubscribeFilters::from_raw(&raw),
        });
        encode(&packet, self.config.version, &mut self.out);
        self.sent(now);
        Ok(mid)
    }

    /// Unsubscribe from `filters` in one UNSUBSCRIBE. Returns its message id.
    pub fn unsubscribe(
        &mut self,
        filters: &[&str],
        properties: &[u8],
        now: Instant,
    ) -> Result<u16, SessionError> {
        if self.state != State::Connected {
            return Err(SessionError::NotConnected);
        }
        if filters.is_empty() {
            return Err(SessionError::InvalidArgument("no topic filter"));
        }
        let mid = self.next_mid();
        let mut raw = Vec::new();
        for filter in filters {
            if filter.len() > usize::from(u16::MAX) {
                return Err(SessionError::InvalidArgument(
                    "filter longer than 65535 bytes",
                ));
            }
            raw.extend_from_slice(&(filter.len() as u16).to_be_bytes());
            raw.extend_from_slice(filter.as_bytes());
        }
        for filter in filters {
            self.log(|id| format!("Client {id} sending UNSUBSCRIBE (Mid: {mid}, Topic: {filter})"));
        }
        let packet = Packet::Unsubscribe(crate::protocol::Unsubscribe {
            packet_id: mid,
            properties: Properties::from_raw_unchecked(properties),
            filters: UnsubscribeFilters::from_raw(&raw),
        });
        encode(&packet, self.config.version, &mut self.out);
        self.sent(now);
        Ok(mid)
    }

    /// Queue DISCONNECT (v5: with `reason` and `properties`) and close the
    /// session. Does nothing unless connected, connecting or refused.
    pub fn disconnect(&mut self, reason: u8, properties: &[u8], now: Instant) {
        if !matches!(
            self.state,
            State::Connected | State::Connecting | State::Refused
        ) {
            return;
        }
        self.log(|id| format!("Client {id} sending DISCONNECT"));
        let packet = Packet::Disconnect(Disconnect {
            reason,
            properties: Properties::from_raw_unchecked(properties),
        });
        encode(&packet, self.config.version, &mut self.out);
        self.sent(now);
        self.state = State::Closed;
    }

    /// When `tick` must be called next (keepalive), if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.config.keep_alive == 0
            || !matches!(self.state, State::Connected | State::Connecting)
        {
            return None;
        }
        let ka = Duration::from_secs(u64::from(self.config.keep_alive));
        let out = self.last_out.map(|t| t + ka);
        let inn = self.last_in.map(|t| t + ka);
        match (out, inn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keepalive: send PINGREQ when the keepalive has passed without
    /// traffic; fail if the previous PINGREQ went unanswered that long.
    pub fn tick(&mut self, now: Instant) -> Result<(), SessionError> {
        let Some(deadline) = self.next_deadline() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        if self.ping_outstanding {
            return Err(SessionError::KeepaliveTimeout);
        }
        self.log(|id| format!("Client {id} sending PINGREQ"));
        encode(&Packet::Pingreq, self.config.version, &mut self.out);
        self.ping_outstanding = true;
        self.last_in = Some(now);
        self.sent(now);
        Ok(())
    }

    /// Bytes read from the server. Nothing is decoded here: `next_event`
    /// decodes one packet at a time, so a caller that stops in the middle
    /// (DISCONNECT from inside an event handler) leaves the rest unread and
    /// unanswered, as libmosquitto does.
    pub fn feed(&mut self, data: &[u8]) {
        if matches!(self.state, State::Connecting | State::Connected) {
            self.rx.extend_from_slice(data);
        }
    }

    /// Take the events already queued (not decoding anything more): the
    /// debug lines to print when a connection attempt fails.
    pub fn drain_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// The next event: queued ones first, then whatever the next complete
    /// packet from the server produces (answering what the protocol
    /// requires: PUBACK, PUBREC, PUBREL, PUBCOMP). `Ok(None)`: more bytes
    /// are needed. An error means the connection must be closed.
    pub fn next_event(&mut self, now: Instant) -> Result<Option<Event>, SessionError> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if !self.decode_one(now)? {
                return Ok(None);
            }
        }
    }

    /// Decode and handle one packet; false if none is complete.
    fn decode_one(&mut self, now: Instant) -> Result<bool, SessionError> {
        if !matches!(self.state, State::Connecting | State::Connected) {
            self.rx.clear();
            self.rx_pos = 0;
            return Ok(false);
        }
        let buf = std::mem::take(&mut self.rx);
        let rest = buf.get(self.rx_pos..).unwrap_or_default();
        let consumed = if let Some(n) = self.v3_connack_on_v5(rest) {
            Ok(Some(n))
        } else {
            match decode(rest, self.config.version, 0) {
                Ok(Decoded::Incomplete) => Ok(None),
                Ok(Decoded::Packet(packet, n)) => {
                    self.last_in = Some(now);
                    self.handle(packet, now).map(|()| Some(n))
                }
                Err(e) => Err(decode_error(e)),
            }
        };
        self.rx = buf;
        match consumed {
            Ok(Some(n)) => {
                self.rx_pos += n;
                if self.rx_pos >= self.rx.len() {
                    self.rx.clear();
                    self.rx_pos = 0;
                } else if self.rx_pos > 4096 && self.rx_pos * 2 > self.rx.len() {
                    self.rx.drain(..self.rx_pos);
                    self.rx_pos = 0;
                }
                if !matches!(self.state, State::Connecting | State::Connected) {
                    self.rx.clear();
                    self.rx_pos = 0;
                }
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                self.state = State::Closed;
                self.rx.clear();
                self.rx_pos = 0;
                Err(e)
            }
        }
    }

    /// A v3.x broker answers a v5 CONNECT with a 3.1.1 CONNACK "unacceptable
    /// protocol version", which is not a valid v5 CONNACK. libmosquitto
    /// reports it as v5 "Unsupported Protocol Version"; so do we.
    fn v3_connack_on_v5(&mut self, rest: &[u8]) -> Option<usize> {
        if self.state != State::Connecting || !self.config.version.is_v5() {
            return None;
        }
        match rest {
            [0x20, 2, _, code, ..] if *code != 0 && *code < 0x80 => {
                let code = reason::UNSUPPORTED_PROTOCOL_VERSION;
                self.log(|id| format!("Client {id} received CONNACK ({code})"));
                self.events.push_back(Event::Connack {
                    code,
                    session_present: false,
                    properties: Vec::new(),
                });
                self.state = State::Refused;
                Some(4)
            }
            _ => None,
        }
    }

    fn handle(&mut self, packet: Packet<'_>, now: Instant) -> Result<(), SessionError> {
        match packet {
            Packet::Connack(c) => {
                if self.state != State::Connecting {
                    return Err(SessionError::Protocol("unexpected CONNACK".into()));
                }
                if self.config.version.is_v5() {
                    if let Some(id) = c.properties.assigned_client_identifier() {
                        self.id = Some(id.to_string());
                    }
                    self.server_receive_maximum =
                        c.properties.receive_maximum().unwrap_or(u16::MAX);
                    self.server_topic_alias_maximum =
                        c.properties.topic_alias_maximum().unwrap_or(0);
                    if let Some(ka) = c.properties.server_keep_alive() {
                        self.config.keep_alive = ka;
                    }
                    self.server_maximum_qos = c.properties.maximum_qos().unwrap_or(2);
                    self.server_retain_available =
                        c.properties.retain_available().unwrap_or(1) != 0;
                    self.server_maximum_packet_size =
                        c.properties.maximum_packet_size().unwrap_or(0);
                }
                let code = c.code;
                self.log(|id| format!("Client {id} received CONNACK ({code})"));
                self.events.push_back(Event::Connack {
                    code,
                    session_present: c.session_present,
                    properties: c.properties.raw().to_vec(),
                });
                if code != 0 {
                    self.state = State::Refused;
                    return Ok(());
                }
                self.state = State::Connected;
                if self.config.resume_by_caller {
                    // `resume` does it, after the caller's subscriptions.
                    if !c.session_present {
                        self.incoming_qos2.clear();
                    }
                    return Ok(());
                }
                if c.session_present {
                    // Resume unfinished handshakes, oldest first.
                    let inflight = std::mem::take(&mut self.inflight);
                    for o in &inflight {
                        self.send_outgoing(o, true, now);
                    }
                    self.inflight = inflight;
                } else {
                    // The server forgot them; send them afresh.
                    let mut old = std::mem::take(&mut self.inflight);
                    for o in old.iter_mut() {
                        if o.stage == Awaiting::Pubcomp {
                            o.stage = Awaiting::Pubrec;
                        }
                    }
                    for o in old.into_iter().rev() {
                        self.queued.push_front(o);
                    }
                    self.incoming_qos2.clear();
                }
                self.fill_window(now);
                Ok(())
            }
            Packet::Publish(p) => self.handle_publish(p, now),
            Packet::Puback(a) => {
                let (mid, rc) = (a.packet_id, a.reason);
                self.log(|id| format!("Client {id} received PUBACK (Mid: {mid}, RC:{rc})"));
                self.complete(mid, Awaiting::Puback, rc, a.properties.raw(), now)
            }
            Packet::Pubrec(a) => {
                let mid = a.packet_id;
                self.log(|id| format!("Client {id} received PUBREC (Mid: {mid})"));
                if reason::is_error(a.reason) {
                    return self.complete(mid, Awaiting::Pubrec, a.reason, a.properties.raw(), now);
                }
                match self.inflight.iter_mut().find(|o| o.mid == mid) {
                    Some(o) if o.stage == Awaiting::Pubrec || o.stage == Awaiting::Pubcomp => {
                        o.stage = Awaiting::Pubcomp;
                        self.send_pubrel(mid, now);
                    }
                    _ => {
                        // Unknown id: v5 says PUBREL "Packet Identifier not
                        // found"; 3.1.x has no way to say so, answer anyway.
                        self.log(|id| format!("Client {id} sending PUBREL (m{mid})"));
                        let rc = if self.config.version.is_v5() && !self.config.resume_by_caller {
                            reason::PACKET_IDENTIFIER_NOT_FOUND
                        } else {
                            0
                        };
                        encode_ack(
                            &mut self.out,
                            packet_type::PUBREL,
                            self.config.version,
                            mid,
                            rc,
                        );
                        self.sent(now);
                    }
                }
                Ok(())
            }
            Packet::Pubrel(a) => {
                let mid = a.packet_id;
                self.log(|id| format!("Client {id} received PUBREL (Mid: {mid})"));
                let stored = self.incoming_qos2.remove(&mid);
                self.log(|id| format!("Client {id} sending PUBCOMP (m{mid})"));
                let rc = if stored.is_none()
                    && self.config.version.is_v5()
                    && !self.config.resume_by_caller
                {
                    reason::PACKET_IDENTIFIER_NOT_FOUND
                } else {
                    0
                };
                encode_ack(
                    &mut self.out,
                    packet_type::PUBCOMP,
                    self.config.version,
                    mid,
                    rc,
                );
                self.sent(now);
                if let Some(m) = stored {
                    self.events.push_back(Event::Message(m));
                }
                Ok(())
            }
            Packet::Pubcomp(a) => {
                let (mid, rc) = (a.packet_id, a.reason);
                self.log(|id| format!("Client {id} received PUBCOMP (Mid: {mid}, RC:{rc})"));
                self.complete(mid, Awaiting::Pubcomp, rc, a.properties.raw(), now)
            }
            Packet::Suback(s) => {
                self.log(|id| format!("Client {id} received SUBACK"));
                self.events.push_back(Event::Subscribed {
                    mid: s.packet_id,
                    codes: s.codes.to_vec(),
                });
                Ok(())
            }
            Packet::Unsuback(u) => {
                self.log(|id| format!("Client {id} received UNSUBACK"));
                self.events.push_back(Event::Unsubscribed {
                    mid: u.packet_id,
                    codes: u.codes.to_vec(),
                });
                Ok(())
            }
            Packet::Pingresp => {
                self.log(|id| format!("Client {id} received PINGRESP"));
                self.ping_outstanding = false;
                Ok(())
            }
            Packet::Disconnect(d) => {
                let rc = d.reason;
                self.log(|id| format!("Client {id} received DISCONNECT ({rc})"));
                self.events.push_back(Event::Disconnected {
                    reason: rc,
                    properties: d.properties.raw().to_vec(),
                });
                self.state = State::Closed;
                Ok(())
            }
            Packet::Auth(_) => Err(SessionError::Protocol(
                "AUTH received, but no authentication method was requested".into(),
            )),
            // A broker may ping its bridges (Mosquitto answers): in bridge
            // mode, so do we.
            Packet::Pingreq if self.config.resume_by_caller => {
                self.log(|id| format!("Client {id} sending PINGRESP"));
                encode(&Packet::Pingresp, self.config.version, &mut self.out);
                self.sent(now);
                Ok(())
            }
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::Pingreq => Err(SessionError::Protocol(format!(
                "{} is not sent by a server",
                packet.name()
            ))),
        }
    }

    fn complete(
        &mut self,
        mid: u16,
        expected: Awaiting,
        rc: u8,
        properties: &[u8],
        now: Instant,
    ) -> Result<(), SessionError> {
        let Some(i) = self.inflight.iter().position(|o| o.mid == mid) else {
            // Late or duplicate acknowledgement: nothing to finish.
            return Ok(());
        };
        let stage = self.inflight.get(i).map(|o| o.stage);
        let ok = stage == Some(expected)
            || (expected == Awaiting::Pubrec && stage == Some(Awaiting::Pubcomp));
        if !ok {
            return Err(SessionError::Protocol(format!(
                "acknowledgement for message {mid} does not match its QoS"
            )));
        }
        self.inflight.remove(i);
        self.events.push_back(Event::Published {
            mid,
            reason: rc,
            properties: properties.to_vec(),
        });
        self.fill_window(now);
        Ok(())
    }

    fn handle_publish(
        &mut self,
        p: crate::protocol::Publish<'_>,
        now: Instant,
    ) -> Result<(), SessionError> {
        if self.state != State::Connected {
            return Err(SessionError::Protocol("PUBLISH before CONNACK".into()));
        }
        let mut topic = p.topic.to_string();
        if self.config.version.is_v5() {
            if let Some(alias) = p.properties.topic_alias() {
                if topic.is_empty() {
                    match self.aliases_in.get(&alias) {
                        Some(t) => topic = t.clone(),
                        None => {
                            return Err(SessionError::Protocol(format!(
                                "unknown topic alias {alias}"
                            )))
                        }
                    }
                } else {
                    self.aliases_in.insert(alias, topic.clone());
                }
            }
        }
        let mid = if p.qos == QoS::AtMostOnce {
            0
        } else {
            p.packet_id
        };
        self.log(|id| {
            format!(
                "Client {id} received PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                mid,
                topic,
                p.payload.len()
            )
        });
        let message = Message {
            topic,
            payload: p.payload.to_vec(),
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            mid,
            properties: if self.config.version.is_v5() {
                p.properties.raw().to_vec()
            } else {
                Vec::new()
            },
        };
        match p.qos {
            QoS::AtMostOnce => self.events.push_back(Event::Message(message)),
            QoS::AtLeastOnce => {
                self.log(|id| format!("Client {id} sending PUBACK (m{mid}, rc0)"));
                encode_ack(
                    &mut self.out,
                    packet_type::PUBACK,
                    self.config.version,
                    mid,
                    0,
                );
                self.sent(now);
                self.events.push_back(Event::Message(message));
            }
            QoS::ExactlyOnce => {
                self.log(|id| format!("Client {id} sending PUBREC (m{mid}, rc0)"));
                encode_ack(
                    &mut self.out,
                    packet_type::PUBREC,
                    self.config.version,
                    mid,
                    0,
                );
                self.sent(now);
                // A resent PUBLISH (DUP) for a message already held is not
                // delivered twice.
                self.incoming_qos2.entry(mid).or_insert(message);
            }
        }
        Ok(())
    }
}

fn decode_error(e: DecodeError) -> SessionError {
    SessionError::Protocol(format!("malformed packet from server ({e:?})"))
}

/// libmosquitto's generated id for MQTT 3.1: "mosq-" and 18 characters
/// from [0-9A-Za-z] (23 in all, the 3.1 limit). Only needs to be unlikely
/// to collide, not secret.
pub fn generate_client_id(now: Instant) -> String {
    const CHARS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32)
        ^ (now.elapsed().as_nanos() as u64)
        | 1;
    let mut id = String::from("mosq-");
    for _ in 0..18 {
        // xorshift64*
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let c = CHARS
            .get((r >> 33) as usize % CHARS.len())
            .copied()
            .unwrap_or(b'x');
        id.push(char::from(c));
    }
    id
}

#[cfg(test)]
mod tests;
