//! bridge: outgoing links to other brokers (Mosquitto's `connection`
//! sections), sans IO.
//!
//! Owns: one `Link` per `connection` section. A link is two halves. To the
//! remote broker it is an MQTT client (`client::Session`, bytes in and out,
//! no socket). To the local broker it is an ordinary connection on a pseudo
//! `ConnId`: it feeds the broker CONNECT, SUBSCRIBE, PUBLISH and
//! acknowledgements through `Broker::receive` and reads the broker's outbox
//! for that connection, exactly like a socket client. So what the broker
//! already does for a persistent session (queueing QoS 1/2 while the client
//! is away, `max_queued_messages`, persistence, the journal) is what keeps
//! bridged messages while the remote is unreachable: the local half is
//! disconnected from the broker whenever the remote half is down, and a
//! local message is acknowledged to the broker only once the remote
//! acknowledged it. Also owned here: topic remapping, the reconnect
//! schedule (`restart_timeout`, failover between addresses, `start_type`),
//! keepalive and stuck-link detection, notifications and the per-link
//! `$SYS` counters.
//!
//! Must not: touch sockets, DNS, TLS or the system clock. `net` opens the
//! connection the link asks for (`poll_connect`), hands it the bytes it
//! reads (`remote_input`) and writes `remote_output`; time is always an
//! argument (milliseconds on the loop clock), so timing is tested with a
//! fake clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::broker::{Broker, ConnId};
use crate::client::session::{Event as SessionEvent, Session, SessionConfig, WillConfig};
use crate::config::{
    Bridge, BridgeDirection, BridgeProtocol, BridgeRestart, BridgeStartType, BridgeTopic,
};
use crate::protocol::encode::{encode, encode_ack, encode_publish};
use crate::protocol::{
    decode, packet_type, Connect, Decoded, Packet, Properties, PropertyWriter, ProtocolVersion,
    QoS, SubscribeFilters,
};

mod events;
#[cfg(test)]
mod tests;

pub use events::LinkEvent;

/// One `topic` line, with its local and remote filters worked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub direction: BridgeDirection,
    pub qos: QoS,
    /// The filter subscribed to on the local broker (out, both).
    pub local_topic: String,
    /// The filter subscribed to on the remote broker (in, both).
    pub remote_topic: String,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl Mapping {
    pub fn new(t: &BridgeTopic) -> Mapping {
        let lp = t.local_prefix.clone().unwrap_or_default();
        let rp = t.remote_prefix.clone().unwrap_or_default();
        Mapping {
            direction: t.direction,
            qos: QoS::from_u8(t.qos).unwrap_or(QoS::AtMostOnce),
            local_topic: format!("{lp}{}", t.pattern),
            remote_topic: format!("{rp}{}", t.pattern),
            local_prefix: lp,
            remote_prefix: rp,
        }
    }

    fn goes_out(&self) -> bool {
        self.direction != BridgeDirection::In
    }

    fn comes_in(&self) -> bool {
        self.direction != BridgeDirection::Out
    }
}

/// The remote topic for a message published locally on `topic`, by the
/// first `out`/`both` line whose local filter matches it; None if none does.
pub fn remap_out(maps: &[Mapping], topic: &str) -> Option<String> {
    let m = maps
        .iter()
        .find(|m| m.goes_out() && crate::topic::matches(&m.local_topic, topic))?;
    let rest = topic.strip_prefix(m.local_prefix.as_str()).unwrap_or(topic);
    Some(format!("{}{rest}", m.remote_prefix))
}

/// The local topic for a message the remote sent on `topic`, by the first
/// `in`/`both` line whose remote filter matches it; None if none does.
pub fn remap_in(maps: &[Mapping], topic: &str) -> Option<String> {
    let m = maps
        .iter()
        .find(|m| m.comes_in() && crate::topic::matches(&m.remote_topic, topic))?;
    let rest = topic
        .strip_prefix(m.remote_prefix.as_str())
        .unwrap_or(topic);
    Some(format!("{}{rest}", m.local_prefix))
}

/// Where the link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; the next attempt is due at this time (ms), if ever.
    Waiting(Option<u64>),
    /// `net` is opening the connection (name resolution, TCP, TLS) or the
    /// CONNECT is out and CONNACK not yet in; given up at this time (ms).
    Connecting(u64),
    /// CONNACK received.
    Up,
}

/// Counters published under `$SYS/broker/connection/<name>/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages sent to the remote (acknowledged, for QoS 1/2).
    pub sent: u64,
    /// Messages received from the remote and handed to the local broker.
    pub received: u64,
    /// Messages the remote refused or that could not be sent at all.
    pub dropped: u64,
    /// Successful connections after the first.
    pub reconnects: u64,
    /// Connection attempts that failed or connections that were lost.
    pub failures: u64,
}

/// An outgoing message on its way to the remote: the local broker's
/// packet id and its QoS.
#[derive(Clone, Copy, Debug)]
struct Forwarded {
    local_mid: u16,
    qos: QoS,
}

/// One bridge. See the module doc.
pub struct Link {
    cfg: Bridge,
    maps: Vec<Mapping>,
    remote_clientid: String,
    local_clientid: String,
    notification_topic: String,
    epoch: Instant,
    state: LinkState,
    session: Option<Session>,
    /// The pseudo connection to the local broker; `key` is fixed, `gen`
    /// changes on every new local connection.
    local: ConnId,
    local_up: bool,
    local_version: ProtocolVersion,
    /// Remote packet id -> the local message it carries.
    forwarded: HashMap<u16, Forwarded>,
    /// Packet ids of our publishes into the local broker.
    local_mid: u16,
    cur_address: usize,
    /// Last restart delay (ms), for the jittered backoff.
    backoff_ms: u64,
    rng: u64,
    /// Set when the remote connection must be closed by `net`.
    drop_requested: bool,
    /// `start_type once`: an attempt was made.
    attempted: bool,
    /// Ever connected (for the reconnect counter).
    connected_before: bool,
    /// Last message in either direction (ms), for `idle_timeout`.
    last_activity: u64,
    /// Last acknowledgement from the remote (or the connection), for
    /// stuck-link detection (ms).
    last_progress: u64,
    /// When to try again to open the local half, if the broker closed it.
    local_retry_at: Option<u64>,
    stats: LinkStats,
    stats_published: Option<(LinkStats, u64, bool)>,
    /// What happened since `net` last took them (`take_events`).
    events: Vec<LinkEvent>,
    /// Failover without `round_robin`: up on a secondary address, when to
    /// test the primary next (ms).
    primary_retry: Option<u64>,
    /// A test connection to the primary is out (`poll_probe`).
    probing: bool,
}

/// How often, while up on a secondary address, the primary is tried again
/// (Mosquitto 2.0: `primary_retry = now + 5` seconds in bridge.c).
pub const PRIMARY_RETRY_MS: u64 = 5000;

/// What `net` needs to open the remote connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Link {
    /// A link for `cfg`, using pseudo connection slot `key` on the local
    /// broker. `hostname` makes the default client id (`hostname.name`).
    /// `epoch` is the instant the loop clock counts milliseconds from.
    pub fn new(cfg: Bridge, key: u32, hostname: &str, epoch: Instant, seed: u64) -> Link {
        let remote_clientid = cfg
            .remote_clientid
            .clone()
            .unwrap_or_else(|| format!("{hostname}.{}", cfg.name));
        let local_clientid = cfg
            .local_clientid
            .clone()
            .unwrap_or_else(|| format!("local.{remote_clientid}"));
        let notification_topic = cfg
            .notification_topic
            .clone()
            .unwrap_or_else(|| format!("$SYS/broker/connection/{remote_clientid}/state"));
        let maps = cfg.topics.iter().map(Mapping::new).collect();
        let local_version = match cfg.protocol_version {
            BridgeProtocol::Mqtt50 => ProtocolVersion::V5,
            _ => ProtocolVersion::V311,
        };
        let state = match cfg.start_type {
            BridgeStartType::Lazy => LinkState::Waiting(None),
            _ => LinkState::Waiting(Some(0)),
        };
        let mut link = Link {
            cfg,
            maps,
            remote_clientid,
            local_clientid,
            notification_topic,
            epoch,
            state,
            session: None,
            local: ConnId { key, gen: 0 },
            local_up: false,
            local_version,
            forwarded: HashMap::new(),
            local_mid: 0,
            cur_address: 0,
            backoff_ms: 0,
            rng: seed | 1,
            drop_requested: false,
            attempted: false,
            connected_before: false,
            last_activity: 0,
            last_progress: 0,
            local_retry_at: None,
            stats: LinkStats::default(),
            stats_published: None,
            events: Vec::new(),
            primary_retry: None,
            probing: false,
        };
        link.session = Some(Session::new(link.session_config()));
        link
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &Bridge {
        &self.cfg
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    pub fn remote_clientid(&self) -> &str {
        &self.remote_clientid
    }

    pub fn local_clientid(&self) -> &str {
        &self.local_clientid
    }

    /// The pseudo connection id of the local half (current generation).
    pub fn local_id(&self) -> ConnId {
        self.local
    }

    /// Whether `id` is (any generation of) this link's local half.
    pub fn owns(&self, id: ConnId) -> bool {
        id.key == self.local.key
    }

    /// The events since the last call, oldest first; `net` words them.
    pub fn take_events(&mut self) -> Vec<LinkEvent> {
        std::mem::take(&mut self.events)
    }

    fn instant(&self, now: u64) -> Instant {
        self.epoch + Duration::from_millis(now)
    }

    /// At start-up: the notification state is `0` until the link is up,
    /// and the local half connects and subscribes, for good: from then on
    /// the broker hands it the link's messages whether or not the remote
    /// is reachable (as Mosquitto, which subscribes locally before its
    /// first connection attempt). What the link has not yet delivered stays
    /// unacknowledged on the broker (in flight to the local half, or queued
    /// behind it), so it is in the broker's persistence.
    pub fn start(&mut self, broker: &mut Broker, now: u64) {
        if self.cfg.notifications {
            broker.publish_internal(&self.notification_topic, b"0", true, now);
        }
        self.local_connect(broker, now);
        self.publish_stats(broker, now, true);
    }

    /// If a connection attempt is due, start it: the address to connect to.
    /// `net` then calls `transport_up` or `connect_failed`.
    pub fn poll_connect(&mut self, broker: &Broker, now: u64) -> Option<Target> {
        match self.state {
            LinkState::Waiting(Some(t)) if now >= t => {}
            LinkState::Waiting(None) if self.cfg.start_type == BridgeStartType::Lazy => {
                let queued = broker.queued_for(&self.local_clientid);
                if queued < self.cfg.threshold as usize || queued == 0 {
                    return None;
                }
            }
            _ => return None,
        }
        if self.cfg.addresses.is_empty() {
            self.state = LinkState::Waiting(None);
            return None;
        }
        self.cur_address %= self.cfg.addresses.len();
        let (host, port) = self.cfg.addresses.get(self.cur_address)?.clone();
        self.events.push(LinkEvent::Connecting {
            name: self.cfg.name.clone(),
            host: host.clone(),
            port,
        });
        self.attempted = true;
        self.drop_requested = false;
        let limit = u64::from(self.cfg.keepalive_interval.max(5)) * 1000;
        self.state = LinkState::Connecting(now + limit);
        Some(Target { host, port })
    }

    /// The stream to the remote is open (TCP connected; TLS may still be
    /// handshaking underneath): queue CONNECT.
    pub fn transport_up(&mut self, now: u64) {
        let at = self.instant(now);
        if self.session.is_none() {
            self.session = Some(Session::new(self.session_config()));
        }
        if let Some(s) = self.session.as_mut() {
            s.connect(at);
        }
    }

    /// The remote session's settings; one `Session` lives as long as the
    /// link, so packet ids and unfinished handshakes carry over reconnects.
    fn session_config(&self) -> SessionConfig {
        let version = match self.cfg.protocol_version {
            BridgeProtocol::Mqtt31 => ProtocolVersion::V31,
            BridgeProtocol::Mqtt311 => ProtocolVersion::V311,
            BridgeProtocol::Mqtt50 => ProtocolVersion::V5,
        };
        let mut sc = SessionConfig::new(version);
        sc.client_id = Some(self.remote_clientid.clone());
        sc.clean_start = self.cfg.cleansession;
        sc.keep_alive = self.cfg.keepalive_interval;
        sc.username = self.cfg.remote_username.clone();
        sc.password = self.cfg.remote_password.clone().map(String::into_bytes);
        sc.bridge = self.cfg.try_private;
        sc.resume_by_caller = true;
        if self.cfg.notifications && !self.cfg.notifications_local_only {
            sc.will = Some(WillConfig {
                topic: self.notification_topic.clone(),
                payload: b"0".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Vec::new(),
            });
        }
        if version.is_v5() && self.cfg.max_packet_size > 0 {
            // As Mosquitto 2.0: no Session Expiry Interval (the remote
            // session ends with the connection), Receive Maximum 20.
            let mut props = PropertyWriter::new();
            props.push(crate::protocol::Property::MaximumPacketSize(
                self.cfg.max_packet_size,
            ));
            sc.connect_properties = props.as_bytes().to_vec();
        }
        sc
    }

    /// The connection attempt failed before CONNACK (name resolution, TCP,
    /// TLS, refused, timed out): try the next address after the restart
    /// delay.
    pub fn connect_failed(&mut self, broker: &mut Broker, why: &str, now: u64) {
        self.events.push(LinkEvent::ConnectFailed {
            name: self.cfg.name.clone(),
            why: why.to_string(),
        });
        self.went_down(broker, now, true);
    }

    /// Bytes waiting for the remote.
    pub fn remote_output(&self) -> &[u8] {
        self.session.as_ref().map(|s| s.output()).unwrap_or(&[])
    }

    /// `n` bytes of `remote_output` were written.
    pub fn remote_written(&mut self, n: usize) {
        if let Some(s) = self.session.as_mut() {
            s.consume_output(n);
        }
    }

    /// `net` must close the remote connection (and then call
    /// `remote_closed`).
    pub fn wants_drop(&self) -> bool {
        self.drop_requested
    }

    /// Failover back to the primary, as Mosquitto 2.0 does with
    /// `round_robin false`: while up on a secondary address, every
    /// `PRIMARY_RETRY_MS` `net` opens a plain TCP connection to the first
    /// address (and closes it at once). Returns that address when such a
    /// test is due; `net` answers with `probe_result`.
    pub fn poll_probe(&mut self, now: u64) -> Option<Target> {
        if self.probing || self.state != LinkState::Up || self.primary_retry.is_none_or(|t| now < t)
        {
            return None;
        }
        let (host, port) = self.cfg.addresses.first()?.clone();
        self.probing = true;
        self.primary_retry = None;
        Some(Target { host, port })
    }

    /// Whether a test connection to the primary is out.
    pub fn probing(&self) -> bool {
        self.probing
    }

    /// The primary accepted (`true`) or refused the test connection. If
    /// it accepted, the link drops its connection to the secondary and,
    /// after the usual restart delay, connects to the primary (Mosquitto
    /// closes the bridge socket and sets the next address to the first).
    pub fn probe_result(&mut self, reachable: bool, now: u64) {
        if !self.probing {
            return;
        }
        self.probing = false;
        if self.state != LinkState::Up {
            return;
        }
        if reachable {
            if let Some((host, port)) = self.cfg.addresses.first().cloned() {
                self.events.push(LinkEvent::BackToPrimary {
                    name: self.cfg.name.clone(),
                    host,
                    port,
                });
            }
            self.drop_requested = true;
        } else {
            self.primary_retry = Some(now + PRIMARY_RETRY_MS);
        }
    }

    /// Bytes read from the remote.
    pub fn remote_input(&mut self, data: &[u8], broker: &mut Broker, now: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.feed(data);
        self.process_remote(broker, now);
    }

    fn process_remote(&mut self, broker: &mut Broker, now: u64) {
        let at = self.instant(now);
        loop {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            let ev = match s.next_event(at) {
                Ok(Some(ev)) => ev,
                Ok(None) => return,
                Err(e) => {
                    self.events.push(LinkEvent::RemoteError {
                        name: self.cfg.name.clone(),
                        error: e.to_string(),
                    });
                    self.drop_requested = true;
                    return;
                }
            };
            match ev {
                SessionEvent::Connack { code, .. } => {
                    if code != 0 {
                        self.events.push(LinkEvent::Refused {
                            name: self.cfg.name.clone(),
                            reason: connack_text(code, self.local_version.is_v5()),
                        });
                        self.drop_requested = true;
                        return;
                    }
                    self.remote_connected(broker, now);
                }
                SessionEvent::Message(m) => self.incoming(broker, m, now),
                SessionEvent::Published { mid, reason, .. } => {
                    self.last_progress = now;
                    if let Some(f) = self.forwarded.remove(&mid) {
                        if crate::protocol::reason::is_error(reason) {
                            self.stats.dropped += 1;
                        } else {
                            self.stats.sent += 1;
                        }
                        self.ack_local(broker, f, now);
                    }
                }
                SessionEvent::Disconnected { reason, .. } => {
                    self.events.push(LinkEvent::RemoteDisconnect {
                        name: self.cfg.name.clone(),
                        reason,
                    });
                    self.drop_requested = true;
                    return;
                }
                SessionEvent::Subscribed { .. }
                | SessionEvent::Unsubscribed { .. }
                | SessionEvent::Log(_) => {}
            }
        }
    }

    /// CONNACK 0: bring up the local half, subscribe both ways, notify.
    fn remote_connected(&mut self, broker: &mut Broker, now: u64) {
        self.state = LinkState::Up;
        self.probing = false;
        self.primary_retry =
            (!self.cfg.round_robin && self.cur_address != 0).then_some(now + PRIMARY_RETRY_MS);
        self.backoff_ms = 0;
        self.last_activity = now;
        if self.connected_before {
            self.stats.reconnects += 1;
        }
        self.connected_before = true;
        let at = self.instant(now);
        let v5 = self.local_version.is_v5();
        if let Some(s) = self.session.as_mut() {
            for m in &self.maps {
                if m.comes_in() {
                    self.events.push(LinkEvent::RemoteSubscribe {
                        client_id: self.local_clientid.clone(),
                        topic: m.remote_topic.clone(),
                    });
                    // v5: No Local (no echo of what we publish there) and
                    // Retain As Published, what the bridge bit gives 3.1.x.
                    let opts = m.qos as u8 | if v5 { 0x0C } else { 0 };
                    let _ = s.subscribe(&[(m.remote_topic.as_str(), opts)], &[], at);
                } else if self.cfg.attempt_unsubscribe {
                    let _ = s.unsubscribe(&[m.remote_topic.as_str()], &[], at);
                }
            }
            // What was in flight or queued while the link was down.
            s.resume(at);
            if self.cfg.notifications && !self.cfg.notifications_local_only {
                let _ = s.publish(
                    &self.notification_topic,
                    b"1",
                    QoS::AtLeastOnce,
                    true,
                    &[],
                    at,
                );
            }
        }
        self.last_progress = now;
        if self.cfg.notifications {
            broker.publish_internal(&self.notification_topic, b"1", true, now);
        }
        if self.local_up {
            self.local_subscribe(broker, now);
        } else {
            self.local_connect(broker, now);
        }
        self.publish_stats(broker, now, true);
    }

    fn next_local_mid(&mut self) -> u16 {
        self.local_mid = self.local_mid.wrapping_add(1).max(1);
        self.local_mid
    }

    /// Open the local half and subscribe to the `out` topics.
    fn local_connect(&mut self, broker: &mut Broker, now: u64) {
        if self.local_up {
            return;
        }
        self.local.gen = self.local.gen.wrapping_add(1);
        let id = self.local;
        broker.open(id, usize::MAX, "bridge", now);
        self.local_up = true;
        let v5 = self.local_version.is_v5();
        let clean = self.cfg.effective_local_cleansession();
        let mut props = PropertyWriter::new();
        if v5 && !clean {
            props.push(crate::protocol::Property::SessionExpiryInterval(u32::MAX));
        }
        let connect = Connect {
            version: self.local_version,
            clean_start: clean,
            keep_alive: 0,
            properties: Properties::from_raw_unchecked(props.as_bytes()),
            client_id: &self.local_clientid,
            will: None,
            username: self.cfg.local_username.as_deref(),
            password: self.cfg.local_password.as_deref().map(str::as_bytes),
        };
        let mut buf = Vec::new();
        encode(&Packet::Connect(connect), self.local_version, &mut buf);
        if !v5 {
            crate::protocol::encode::mark_connect_bridge(&mut buf);
        }
        broker.receive(id, &buf, now);
        self.local_subscribe(broker, now);
    }

    /// Subscribe the local half to the `out`/`both` topics, at most at the
    /// QoS of the topic line. Done again on every connection to the remote
    /// (as Mosquitto), so the retained messages of those topics, including
    /// ones set while the link was down, go out with the retain flag.
    fn local_subscribe(&mut self, broker: &mut Broker, now: u64) {
        let id = self.local;
        let v5 = self.local_version.is_v5();
        let mut buf = Vec::new();
        let mut raw = Vec::new();
        let outs: Vec<Mapping> = self.maps.iter().filter(|m| m.goes_out()).cloned().collect();
        for m in &outs {
            self.events.push(LinkEvent::LocalSubscribe {
                client_id: self.local_clientid.clone(),
                topic: m.local_topic.clone(),
            });
            raw.clear();
            raw.extend_from_slice(&(m.local_topic.len() as u16).to_be_bytes());
            raw.extend_from_slice(m.local_topic.as_bytes());
            raw.push(m.qos as u8 | if v5 { 0x0C } else { 0 });
            let mid = self.next_local_mid();
            let packet = Packet::Subscribe(crate::protocol::Subscribe {
                packet_id: mid,
                properties: Properties::from_raw_unchecked(&[]),
                filters: SubscribeFilters::from_raw(&raw),
            });
            buf.clear();
            encode(&packet, self.local_version, &mut buf);
            broker.receive(id, &buf, now);
        }
        self.local_ready(broker, now);
    }

    /// The local broker closed the local half (taken over, or refused).
    pub fn local_closed(&mut self, broker: &mut Broker, now: u64) {
        if !self.local_up {
            return;
        }
        self.local_up = false;
        broker.release(self.local, now);
        // Acknowledgements for the old local connection's packet ids would
        // hit the wrong messages on a new one: the broker sends them again.
        self.forwarded.clear();
        self.events.push(LinkEvent::LocalClosed {
            name: self.cfg.name.clone(),
            client_id: self.local_clientid.clone(),
        });
        self.local_retry_at = Some(now + 5000);
    }

    /// The local broker has written to the local half: handle its packets.
    pub fn local_ready(&mut self, broker: &mut Broker, now: u64) {
        // Bounded: each round handles what is there; acks we send may make
        // the broker write more, which the next round takes.
        for _ in 0..64 {
            if !self.local_up {
                return;
            }
            let id = self.local;
            let data = broker.outbox(id).to_vec();
            if data.is_empty() {
                return;
            }
            broker.outbox_written(id, data.len(), now);
            let mut off = 0;
            while off < data.len() {
                match decode(&data[off..], self.local_version, 0) {
                    Ok(Decoded::Packet(p, n)) => {
                        off += n;
                        self.handle_local(broker, p, now);
                    }
                    Ok(Decoded::Incomplete) | Err(_) => break,
                }
            }
        }
    }

    fn handle_local(&mut self, broker: &mut Broker, p: Packet<'_>, now: u64) {
        let id = self.local;
        match p {
            Packet::Connack(c) if c.code != 0 => {
                self.events.push(LinkEvent::LocalRefused {
                    name: self.cfg.name.clone(),
                    client_id: self.local_clientid.clone(),
                    code: c.code,
                });
            }
            Packet::Publish(p) => self.outgoing(broker, p, now),
            Packet::Pubrel(a) => {
                let mut buf = Vec::new();
                encode_ack(
                    &mut buf,
                    packet_type::PUBCOMP,
                    self.local_version,
                    a.packet_id,
                    0,
                );
                broker.receive(id, &buf, now);
            }
            Packet::Pubrec(a) => {
                let mut buf = Vec::new();
                encode_ack(
                    &mut buf,
                    packet_type::PUBREL,
                    self.local_version,
                    a.packet_id,
                    0,
                );
                broker.receive(id, &buf, now);
            }
            // PUBACK/PUBCOMP for our publishes, SUBACK, DISCONNECT: nothing
            // to do (a DISCONNECT is followed by the broker closing us).
            _ => {}
        }
    }

    /// A message from the local broker for the remote.
    fn outgoing(&mut self, broker: &mut Broker, p: crate::protocol::Publish<'_>, now: u64) {
        let local = Forwarded {
            local_mid: p.packet_id,
            qos: p.qos,
        };
        let Some(topic) = remap_out(&self.maps, p.topic) else {
            // Not ours (cannot happen: we only subscribe to our topics).
            self.ack_local(broker, local, now);
            return;
        };
        if self.state != LinkState::Up && self.cfg.effective_local_cleansession() {
            // A clean local session keeps nothing for a link that is down
            // (Mosquitto's local_cleansession true): released, counted.
            self.stats.dropped += 1;
            self.ack_local(broker, local, now);
            return;
        }
        let retain = p.retain && self.cfg.outgoing_retain;
        let props = if self.local_version.is_v5() {
            strip_local_only(p.properties.raw())
        } else {
            Vec::new()
        };
        let at = self.instant(now);
        self.last_activity = now;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match s.publish(&topic, p.payload, p.qos, retain, &props, at) {
            Ok(mid) => {
                if p.qos == QoS::AtMostOnce {
                    self.stats.sent += 1;
                    // The session reports QoS 0 as published at once.
                } else {
                    self.forwarded.insert(mid, local);
                }
            }
            Err(crate::client::session::SessionError::NotConnected) => {
                // QoS 0 while the remote is unreachable: gone, as in
                // Mosquitto, but counted.
                self.stats.dropped += 1;
            }
            Err(e) => {
                self.events.push(LinkEvent::Dropped {
                    name: self.cfg.name.clone(),
                    topic: topic.to_string(),
                    error: e.to_string(),
                });
                self.stats.dropped += 1;
                self.ack_local(broker, local, now);
            }
        }
    }

    /// The remote has the message: release it on the local broker.
    fn ack_local(&mut self, broker: &mut Broker, f: Forwarded, now: u64) {
        let kind = match f.qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => packet_type::PUBACK,
            QoS::ExactlyOnce => packet_type::PUBREC,
        };
        if !self.local_up {
            return;
        }
        let mut buf = Vec::new();
        encode_ack(&mut buf, kind, self.local_version, f.local_mid, 0);
        broker.receive(self.local, &buf, now);
        self.local_ready(broker, now);
    }

    /// A message from the remote for the local broker.
    fn incoming(&mut self, broker: &mut Broker, m: crate::client::session::Message, now: u64) {
        let Some(topic) = remap_in(&self.maps, &m.topic) else {
            return;
        };
        if !self.local_up {
            self.stats.dropped += 1;
            return;
        }
        self.last_activity = now;
        self.stats.received += 1;
        let mid = if m.qos == QoS::AtMostOnce {
            0
        } else {
            self.next_local_mid()
        };
        let props = if self.local_version.is_v5() {
            strip_local_only(&m.properties)
        } else {
            Vec::new()
        };
        let mut buf = Vec::new();
        encode_publish(
            &mut buf,
            self.local_version,
            false,
            m.qos,
            m.retain,
            &topic,
            mid,
            &props,
            &[],
            &m.payload,
        );
        broker.receive(self.local, &buf, now);
        self.local_ready(broker, now);
    }

    /// The remote connection is closed (by either side).
    pub fn remote_closed(&mut self, broker: &mut Broker, now: u64) {
        if matches!(self.state, LinkState::Waiting(_)) {
            return;
        }
        if self.state == LinkState::Up {
            self.events.push(LinkEvent::Lost {
                name: self.cfg.name.clone(),
                client_id: self.local_clientid.clone(),
            });
        }
        self.went_down(broker, now, self.state != LinkState::Up);
    }

    fn went_down(&mut self, broker: &mut Broker, now: u64, failed_attempt: bool) {
        let was_up = self.state == LinkState::Up;
        self.primary_retry = None;
        self.probing = false;
        if let Some(s) = self.session.as_mut() {
            s.connection_lost();
        }
        self.drop_requested = false;
        self.stats.failures += 1;
        if was_up && self.cfg.notifications {
            broker.publish_internal(&self.notification_topic, b"0", true, now);
        }
        if failed_attempt && !self.cfg.addresses.is_empty() {
            // Failover: the next attempt goes to the next address.
            self.cur_address = (self.cur_address + 1) % self.cfg.addresses.len();
        } else if !self.cfg.round_robin {
            // A lost link starts again from the first address.
            self.cur_address = 0;
        }
        let next = match self.cfg.start_type {
            BridgeStartType::Once => None,
            BridgeStartType::Lazy if was_up => None,
            _ => Some(now + self.restart_delay()),
        };
        self.state = LinkState::Waiting(next);
        self.events.push(LinkEvent::Retry {
            name: self.cfg.name.clone(),
            delay_ms: next.map(|t| t - now),
        });
        self.publish_stats(broker, now, true);
    }

    /// Milliseconds before the next attempt: constant, or Mosquitto-style
    /// decorrelated jitter between `base` and three times the last delay,
    /// capped.
    pub fn restart_delay(&mut self) -> u64 {
        match self.cfg.restart_timeout {
            BridgeRestart::Constant(s) => u64::from(s) * 1000,
            BridgeRestart::Backoff { base, cap } => {
                let base = u64::from(base.max(1)) * 1000;
                let cap = (u64::from(cap) * 1000).max(base);
                let hi = (self.backoff_ms.max(base) * 3).min(cap);
                let span = hi.saturating_sub(base) + 1;
                let d = base + self.random() % span;
                self.backoff_ms = d.min(cap);
                self.backoff_ms
            }
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: only needs to spread reconnects, not be secret.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11
    }

    /// When `tick` must run next (ms).
    pub fn next_deadline(&self) -> Option<u64> {
        let mut t = match self.state {
            LinkState::Waiting(t) => t,
            LinkState::Connecting(t) => Some(t),
            LinkState::Up => None,
        };
        let mut add = |x: u64| t = Some(t.map_or(x, |y| y.min(x)));
        if self.cfg.start_type == BridgeStartType::Lazy && self.state == LinkState::Up {
            // The threshold needs no timer: `poll_connect` runs on every
            // loop pass, and messages arriving make passes.
            add(self.last_activity + u64::from(self.cfg.idle_timeout) * 1000);
        }
        if let Some(s) = &self.session {
            if let Some(d) = s.next_deadline() {
                add(d.saturating_duration_since(self.epoch).as_millis() as u64);
            }
        }
        if self.state == LinkState::Up && self.awaiting_acks() {
            add(self.last_progress + self.stuck_after());
        }
        if let Some(r) = self.local_retry_at {
            add(r);
        }
        if self.state == LinkState::Up {
            if let Some(r) = self.primary_retry {
                add(r);
            }
        }
        if let Some((_, at, _)) = self.stats_published {
            add(at + 10_000);
        }
        t
    }

    /// Messages sent to the remote and not yet acknowledged.
    fn awaiting_acks(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.pending_publishes() > 0)
    }

    /// A message not acknowledged for this long means the remote is stuck.
    fn stuck_after(&self) -> u64 {
        u64::from(self.cfg.keepalive_interval.max(5)) * 2000
    }

    /// Timers: connect timeout, keepalive, stuck acknowledgements, lazy
    /// idle timeout, `$SYS` counters.
    pub fn tick(&mut self, broker: &mut Broker, now: u64) {
        self.publish_stats(broker, now, false);
        if self.local_retry_at.is_some_and(|t| now >= t) {
            self.local_retry_at = None;
            self.local_connect(broker, now);
        }
        match self.state {
            LinkState::Connecting(t) if now >= t => {
                self.events.push(LinkEvent::NoConnack {
                    name: self.cfg.name.clone(),
                });
                self.drop_requested = true;
                return;
            }
            LinkState::Up => {}
            _ => return,
        }
        let at = self.instant(now);
        if let Some(s) = self.session.as_mut() {
            if let Err(e) = s.tick(at) {
                self.events.push(LinkEvent::KeepaliveFailed {
                    name: self.cfg.name.clone(),
                    error: e.to_string(),
                });
                self.drop_requested = true;
                return;
            }
        }
        if self.awaiting_acks() && now >= self.last_progress + self.stuck_after() {
            self.events.push(LinkEvent::Stuck {
                name: self.cfg.name.clone(),
            });
            self.drop_requested = true;
            return;
        }
        if self.cfg.start_type == BridgeStartType::Lazy
            && self.forwarded.is_empty()
            && now >= self.last_activity + u64::from(self.cfg.idle_timeout) * 1000
        {
            self.events.push(LinkEvent::Idle {
                name: self.cfg.name.clone(),
                secs: self.cfg.idle_timeout,
            });
            let at = self.instant(now);
            if let Some(s) = self.session.as_mut() {
                s.disconnect(0, &[], at);
            }
            self.drop_requested = true;
        }
    }

    /// `$SYS/broker/connection/<name>/{sent,received,dropped,reconnects,
    /// queued,connected}`, retained; at most every 10 s unless `now` says so.
    fn publish_stats(&mut self, broker: &mut Broker, now: u64, force: bool) {
        let up = self.state == LinkState::Up;
        if let Some((old, at, was_up)) = self.stats_published {
            if !force && (old == self.stats && was_up == up || now < at + 10_000) {
                if now >= at + 10_000 {
                    self.stats_published = Some((old, now, was_up));
                }
                return;
            }
        }
        let base = format!("$SYS/broker/connection/{}", self.cfg.name);
        let queued = broker.queued_for(&self.local_clientid);
        let s = self.stats;
        let items: [(&str, u64); 6] = [
            ("connected", u64::from(up)),
            ("queued", queued as u64),
            ("sent", s.sent),
            ("received", s.received),
            ("dropped", s.dropped),
            ("reconnects", s.reconnects),
        ];
        for (k, v) in items {
            broker.publish_internal(&format!("{base}/{k}"), v.to_string().as_bytes(), true, now);
        }
        self.stats_published = Some((s, now, up));
    }
}

/// Properties that belong to one hop and must not be forwarded: Topic
/// Alias (per connection) and Subscription Identifier (the local
/// subscription's). Everything else (expiry, content type, user
/// properties, response topic, correlation data) travels.
fn strip_local_only(raw: &[u8]) -> Vec<u8> {
    let mut w = PropertyWriter::new();
    for p in Properties::from_raw_unchecked(raw).iter() {
        match p {
            crate::protocol::Property::TopicAlias(_)
            | crate::protocol::Property::SubscriptionIdentifier(_) => {}
            other => {
                w.push(other);
            }
        }
    }
    w.as_bytes().to_vec()
}

/// Mosquitto's words for a refused CONNACK.
fn connack_text(code: u8, v5: bool) -> String {
    if v5 {
        return format!("{} (reason code {code})", reason_name(code));
    }
    match code {
        1 => "unacceptable protocol version".into(),
        2 => "identifier rejected".into(),
        3 => "broker unavailable".into(),
        4 => "bad user name or password".into(),
        5 => "not authorised".into(),
        _ => format!("unknown reason {code}"),
    }
}

fn reason_name(code: u8) -> &'static str {
    match code {
        0x84 => "unsupported protocol version",
        0x85 => "client identifier not valid",
        0x86 => "bad user name or password",
        0x87 => "not authorised",
        0x88 => "server unavailable",
        0x8A => "banned",
        _ => "refused",
    }
}
