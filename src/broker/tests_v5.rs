//! Core tests for MQTT 5.0 behaviour: the broker driven by bytes and a fake
//! clock, with every packet decoded as v5 so properties and reason codes can
//! be asserted against what the MQTT 5.0 specification requires.
//!
//! Must not: change broker state behind its back (only bytes, `tick`,
//! `connection_lost` and `shutdown` go in), or sleep for real.

use super::testkit::*;
use crate::protocol::reason;
use crate::protocol::{decode, Auth, Decoded, Packet, Property, PropertyWriter, ProtocolVersion};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// An owned decoded packet that, unlike `Got`, keeps v5 properties and
/// reason codes. Fields a packet does not have stay at their defaults.
#[derive(Debug, Clone, PartialEq, Default)]
struct Pk {
    name: &'static str,
    /// CONNACK code, ack / DISCONNECT / AUTH reason code.
    code: u8,
    sp: bool,
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    dup: bool,
    pid: u16,
    /// SUBACK / UNSUBACK reason codes.
    codes: Vec<u8>,
    /// Raw property block (without its length).
    props: Vec<u8>,
}

impl Pk {
    fn props(&self) -> Properties<'_> {
        Properties::from_raw_unchecked(&self.props)
    }
    fn is_pub(&self) -> bool {
        self.name == "PUBLISH"
    }
    fn sub_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.props().subscription_identifiers().collect();
        v.sort_unstable();
        v
    }
}

fn own(p: Packet<'_>) -> Pk {
    let mut k = Pk {
        name: p.name(),
        ..Pk::default()
    };
    match p {
        Packet::Connack(c) => {
            k.sp = c.session_present;
            k.code = c.code;
            k.props = c.properties.raw().to_vec();
        }
        Packet::Publish(p) => {
            k.topic = p.topic.to_string();
            k.payload = p.payload.to_vec();
            k.qos = p.qos as u8;
            k.retain = p.retain;
            k.dup = p.dup;
            k.pid = p.packet_id;
            k.props = p.properties.raw().to_vec();
        }
        Packet::Puback(a) | Packet::Pubrec(a) | Packet::Pubrel(a) | Packet::Pubcomp(a) => {
            k.pid = a.packet_id;
            k.code = a.reason;
            k.props = a.properties.raw().to_vec();
        }
        Packet::Suback(s) => {
            k.pid = s.packet_id;
            k.codes = s.codes.to_vec();
            k.props = s.properties.raw().to_vec();
        }
        Packet::Unsuback(u) => {
            k.pid = u.packet_id;
            k.codes = u.codes.to_vec();
            k.props = u.properties.raw().to_vec();
        }
        Packet::Disconnect(d) => {
            k.code = d.reason;
            k.props = d.properties.raw().to_vec();
        }
        Packet::Auth(a) => {
            k.code = a.reason;
            k.props = a.properties.raw().to_vec();
        }
        _ => {}
    }
    k
}

/// Everything in the connection's outbox, decoded in the connection's
/// protocol version (v5 keeps properties), and marked as written.
fn recv5(h: &mut H, id: ConnId) -> Vec<Pk> {
    let v = h.versions.get(&id).copied().unwrap_or(V3);
    let data = h.b.outbox(id).to_vec();
    h.b.outbox_written(id, data.len(), h.now);
    h.settle();
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        match decode(&data[off..], v, 0) {
            Ok(Decoded::Packet(p, n)) => {
                off += n;
                out.push(own(p));
            }
            other => panic!("outbox holds undecodable bytes: {:?}", other.err()),
        }
    }
    out
}

fn pubs(v: &[Pk]) -> Vec<Pk> {
    v.iter().filter(|p| p.is_pub()).cloned().collect()
}

fn payloads(v: &[Pk]) -> Vec<Vec<u8>> {
    v.iter()
        .filter(|p| p.is_pub())
        .map(|p| p.payload.clone())
        .collect()
}

fn writer(props: &[Property<'_>]) -> PropertyWriter {
    let mut w = PropertyWriter::new();
    for p in props {
        w.push(*p);
    }
    w
}

fn cfg() -> BrokerConfig {
    BrokerConfig {
        sys_interval: 0,
        ..BrokerConfig::default()
    }
}

/// Open a connection and send CONNECT in `version`; returns everything the
/// broker answered (CONNACK first, then anything queued for the session).
fn connect_v(
    h: &mut H,
    version: ProtocolVersion,
    client_id: &str,
    clean: bool,
    keep_alive: u16,
    props: &[Property<'_>],
    will: Option<Will<'_>>,
) -> (ConnId, Vec<Pk>) {
    let id = h.open();
    h.versions.insert(id, version);
    let w = writer(props);
    h.send(
        id,
        Packet::Connect(Connect {
            version,
            clean_start: clean,
            keep_alive,
            properties: w.as_properties(),
            client_id,
            will,
            username: None,
            password: None,
        }),
    );
    let got = recv5(h, id);
    (id, got)
}

fn connect5_full(
    h: &mut H,
    client_id: &str,
    clean: bool,
    props: &[Property<'_>],
    will: Option<Will<'_>>,
) -> (ConnId, Vec<Pk>) {
    connect_v(h, V5, client_id, clean, 60, props, will)
}

/// A v5 connection that must be accepted with nothing else sent.
fn c5(h: &mut H, client_id: &str, props: &[Property<'_>]) -> ConnId {
    let (id, got) = connect5_full(h, client_id, true, props, None);
    assert_eq!(got.len(), 1, "{:?}", got);
    assert_eq!((got[0].name, got[0].code), ("CONNACK", 0), "{:?}", got);
    id
}

/// A v3.1.1 connection that must be accepted.
fn c3(h: &mut H, client_id: &str) -> ConnId {
    let (id, got) = connect_v(h, V3, client_id, true, 60, &[], None);
    assert_eq!((got[0].name, got[0].code), ("CONNACK", 0), "{:?}", got);
    id
}

fn connack(got: &[Pk]) -> &Pk {
    let first = got.first().expect("an answer to CONNECT");
    assert_eq!(first.name, "CONNACK", "{:?}", got);
    first
}

/// SUBSCRIBE one filter with an options byte and an optional Subscription
/// Identifier (0 = none). Returns the SUBACK codes and what followed it.
fn sub5(h: &mut H, id: ConnId, filter: &str, opts: u8, sub_id: u32) -> (Vec<u8>, Vec<Pk>) {
    sub_many(h, id, &[(filter, opts)], sub_id)
}

fn sub_many(h: &mut H, id: ConnId, filters: &[(&str, u8)], sub_id: u32) -> (Vec<u8>, Vec<Pk>) {
    let mut raw = Vec::new();
    for (f, o) in filters {
        raw.extend_from_slice(&(f.len() as u16).to_be_bytes());
        raw.extend_from_slice(f.as_bytes());
        raw.push(*o);
    }
    let w = if sub_id != 0 {
        writer(&[Property::SubscriptionIdentifier(sub_id)])
    } else {
        PropertyWriter::new()
    };
    h.send(
        id,
        Packet::Subscribe(Subscribe {
            packet_id: 77,
            properties: w.as_properties(),
            filters: SubscribeFilters::from_raw(&raw),
        }),
    );
    let mut got = recv5(h, id);
    assert!(!got.is_empty(), "no SUBACK");
    let first = got.remove(0);
    assert_eq!((first.name, first.pid), ("SUBACK", 77), "{:?}", first);
    (first.codes, got)
}

#[allow(clippy::too_many_arguments)]
fn pub5(
    h: &mut H,
    id: ConnId,
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    pid: u16,
    props: &[Property<'_>],
) {
    let w = writer(props);
    h.send(
        id,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::from_u8(qos).unwrap(),
            retain,
            topic,
            packet_id: pid,
            properties: w.as_properties(),
            payload,
        }),
    );
}

fn disconnect5(h: &mut H, id: ConnId, code: u8, props: &[Property<'_>]) {
    let w = writer(props);
    h.send(
        id,
        Packet::Disconnect(Disconnect {
            reason: code,
            properties: w.as_properties(),
        }),
    );
}

fn will5<'a>(topic: &'a str, payload: &'a [u8], props: &'a PropertyWriter) -> Will<'a> {
    Will {
        topic,
        payload,
        qos: QoS::AtMostOnce,
        retain: false,
        properties: props.as_properties(),
    }
}

/// Asserts that the server sent exactly one DISCONNECT with `code` as its
/// last packet and asked for the connection to be closed.
fn assert_server_disconnect(h: &mut H, id: ConnId, code: u8) {
    let got = recv5(h, id);
    let last = got.last().expect("a DISCONNECT");
    assert_eq!((last.name, last.code), ("DISCONNECT", code), "{:?}", got);
    assert_eq!(
        got.iter().filter(|p| p.name == "DISCONNECT").count(),
        1,
        "{:?}",
        got
    );
    assert!(h.is_closed(id), "connection closed after DISCONNECT");
}

// ---------------------------------------------------------------- CONNACK

#[test]
fn connack_default_properties() {
    let mut h = H::with(cfg());
    let (id, got) = connect5_full(&mut h, "", true, &[], None);
    let ack = connack(&got);
    assert_eq!((ack.code, ack.sp), (0, false));
    let p = ack.props();
    // [MQTT-3.2.2-16]: an assigned id must be returned in the CONNACK.
    let assigned = p.assigned_client_identifier().expect("Assigned Client Id");
    assert!(assigned.starts_with("auto-"), "{}", assigned);
    assert_eq!(&*h.b.conns.get(id).unwrap().client_id, assigned);
    assert_eq!(p.receive_maximum(), Some(20));
    assert_eq!(p.topic_alias_maximum(), Some(10));
    // Absent means "2", "available", "no limit", "client's value".
    assert_eq!(p.maximum_qos(), None);
    assert_eq!(p.retain_available(), None);
    assert_eq!(p.maximum_packet_size(), None);
    assert_eq!(p.server_keep_alive(), None);
    assert_eq!(p.reason_string(), None);

    // A client that chose its own id is not assigned one.
    let (_, got) = connect5_full(&mut h, "mine", true, &[], None);
    assert_eq!(connack(&got).props().assigned_client_identifier(), None);
}

#[test]
fn connack_properties_follow_configuration() {
    let mut c = cfg();
    c.listeners[0].max_qos = QoS::AtLeastOnce;
    c.retain_available = false;
    c.max_packet_size = 1000;
    c.max_keepalive = 30;
    c.max_inflight_messages = 7;
    let mut h = H::with(c);
    let (id, got) = connect5_full(&mut h, "c", true, &[], None);
    let ack = connack(&got);
    assert_eq!(ack.code, 0);
    let p = ack.props();
    assert_eq!(p.maximum_qos(), Some(1));
    assert_eq!(p.retain_available(), Some(0));
    assert_eq!(p.maximum_packet_size(), Some(1000));
    assert_eq!(p.receive_maximum(), Some(7));
    // Keep alive 60 asked, 30 allowed: [MQTT-3.2.2-21] the client must use
    // the Server Keep Alive, and the server enforces it too.
    assert_eq!(p.server_keep_alive(), Some(30));
    h.advance(44_000);
    assert!(!h.is_closed(id), "1.5 x 30 s not yet reached");
    h.advance(2_000);
    assert_server_disconnect(&mut h, id, reason::KEEP_ALIVE_TIMEOUT);

    let mut c = cfg();
    c.listeners[0].max_qos = QoS::AtMostOnce;
    let mut h = H::with(c);
    let (_, got) = connect5_full(&mut h, "c", true, &[], None);
    assert_eq!(connack(&got).props().maximum_qos(), Some(0));
}

#[test]
fn keepalive_within_limit_has_no_server_keep_alive() {
    let mut c = cfg();
    c.max_keepalive = 120;
    let mut h = H::with(c);
    let (_, got) = connect5_full(&mut h, "c", true, &[], None);
    assert_eq!(connack(&got).props().server_keep_alive(), None);
}

#[test]
fn refused_connect_has_no_reason_string_by_default() {
    // Mosquitto 2.0's refusal is the bare code; midge matches it byte for byte.
    let mut c = cfg();
    c.listeners[0].allow_anonymous = false;
    let mut h = H::with(c);
    let (id, got) = connect5_full(&mut h, "anon", true, &[], None);
    let ack = connack(&got);
    assert_eq!(ack.code, reason::NOT_AUTHORIZED);
    assert!(!ack.sp);
    assert!(ack.props().reason_string().is_none(), "{:?}", ack);
    assert!(h.is_closed(id));
}

#[test]
fn refused_connect_carries_reason_string_when_enabled() {
    let mut c = cfg();
    c.listeners[0].allow_anonymous = false;
    c.connack_reason_strings = true;
    let mut h = H::with(c);
    let (id, got) = connect5_full(&mut h, "anon", true, &[], None);
    let ack = connack(&got);
    assert_eq!(ack.code, reason::NOT_AUTHORIZED);
    assert!(ack.props().reason_string().is_some(), "{:?}", ack);
    assert!(h.is_closed(id));
    // ...but not to a client that asked for no problem information.
    let (_, got) = connect5_full(
        &mut h,
        "anon2",
        true,
        &[Property::RequestProblemInformation(0)],
        None,
    );
    assert!(connack(&got).props().reason_string().is_none());
}

// ---------------------------------------------------------- session expiry

#[test]
fn session_expiry_zero_ends_session_at_disconnect() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[]);
    sub5(&mut h, s, "t", 1, 0);
    h.disconnect(s);
    assert!(h.is_closed(s));
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"lost", 1, false, 1, &[]);
    let (_, got) = connect5_full(&mut h, "s", false, &[], None);
    assert!(!connack(&got).sp, "no session kept with expiry 0");
    assert!(pubs(&got).is_empty());
}

#[test]
fn session_expiry_keeps_session_until_it_expires() {
    let mut h = H::with(cfg());
    let exp = [Property::SessionExpiryInterval(10)];
    let (s, _) = connect5_full(&mut h, "s", true, &exp, None);
    sub5(&mut h, s, "t", 1, 0);
    h.disconnect(s);
    let p = c5(&mut h, "p", &[]);
    h.advance(9_000);
    pub5(&mut h, p, "t", b"kept", 1, false, 1, &[]);
    let (s, got) = connect5_full(&mut h, "s", false, &exp, None);
    assert!(connack(&got).sp, "session present before expiry");
    assert_eq!(payloads(&got), vec![b"kept".to_vec()]);
    h.ack(s, Packet::Puback, got[1].pid);
    h.disconnect(s);

    // The interval counts again from this disconnect.
    h.advance(10_500);
    pub5(&mut h, p, "t", b"too late", 1, false, 2, &[]);
    let (_, got) = connect5_full(&mut h, "s", false, &exp, None);
    assert!(!connack(&got).sp, "session gone after expiry");
    assert!(pubs(&got).is_empty());
}

#[test]
fn session_expiry_max_never_expires() {
    let mut h = H::with(cfg());
    let exp = [Property::SessionExpiryInterval(u32::MAX)];
    let (s, _) = connect5_full(&mut h, "s", true, &exp, None);
    sub5(&mut h, s, "t", 1, 0);
    h.disconnect(s);
    // A hundred days later (jump the clock, then let timers run).
    h.now += 100 * 86_400_000;
    h.advance(2_000);
    let (_, got) = connect5_full(&mut h, "s", false, &exp, None);
    assert!(connack(&got).sp);
}

#[test]
fn disconnect_may_shorten_session_expiry() {
    let mut h = H::with(cfg());
    let (s, _) = connect5_full(
        &mut h,
        "s",
        true,
        &[Property::SessionExpiryInterval(600)],
        None,
    );
    sub5(&mut h, s, "t", 1, 0);
    disconnect5(&mut h, s, 0, &[Property::SessionExpiryInterval(0)]);
    assert!(recv5(&mut h, s).is_empty(), "no DISCONNECT back");
    let (_, got) = connect5_full(&mut h, "s", false, &[], None);
    assert!(!connack(&got).sp, "DISCONNECT set the expiry to 0");
}

#[test]
fn disconnect_may_lengthen_nonzero_session_expiry() {
    let mut h = H::with(cfg());
    let (s, _) = connect5_full(
        &mut h,
        "s",
        true,
        &[Property::SessionExpiryInterval(2)],
        None,
    );
    sub5(&mut h, s, "t", 1, 0);
    disconnect5(&mut h, s, 0, &[Property::SessionExpiryInterval(100)]);
    h.advance(10_000);
    let (_, got) = connect5_full(&mut h, "s", false, &[], None);
    assert!(connack(&got).sp, "expiry raised to 100 s at DISCONNECT");
}

#[test]
fn disconnect_setting_expiry_after_zero_is_protocol_error() {
    let mut h = H::with(cfg());
    let w = watcher(&mut h, "will/#");
    let wp = PropertyWriter::new();
    let (s, _) = connect5_full(&mut h, "s", true, &[], Some(will5("will/s", b"gone", &wp)));
    // Section 3.14.2.2.2: zero in CONNECT, non-zero in DISCONNECT is a
    // Protocol Error.
    disconnect5(&mut h, s, 0, &[Property::SessionExpiryInterval(30)]);
    assert_server_disconnect(&mut h, s, reason::PROTOCOL_ERROR);
    // Not a normal disconnection, so the will is published.
    assert_eq!(payloads(&recv5(&mut h, w)), vec![b"gone".to_vec()]);
    let (_, got) = connect5_full(&mut h, "s", false, &[], None);
    assert!(!connack(&got).sp);
}

// ------------------------------------------------------------------- wills

/// A v3.1.1 client subscribed to `filter`, used to observe wills.
fn watcher(h: &mut H, filter: &str) -> ConnId {
    let w = c3(h, "watcher");
    sub5(h, w, filter, 0, 0);
    w
}

#[test]
fn will_delay_publishes_after_the_delay() {
    let mut h = H::with(cfg());
    let w = watcher(&mut h, "will/#");
    let wp = writer(&[Property::WillDelayInterval(5)]);
    let (s, _) = connect5_full(
        &mut h,
        "s",
        true,
        &[Property::SessionExpiryInterval(60)],
        Some(will5("will/s", b"late", &wp)),
    );
    h.b.connection_lost(s, h.now);
    h.settle();
    h.advance(4_000);
    assert!(recv5(&mut h, w).is_empty(), "not before the delay");
    h.advance(1_500);
    let got = recv5(&mut h, w);
    assert_eq!(payloads(&got), vec![b"late".to_vec()]);
    assert_eq!(got[0].topic, "will/s");
    h.advance(60_000);
    assert!(recv5(&mut h, w).is_empty(), "sent once");
}

#[test]
fn will_delay_cancelled_by_reconnect() {
    let mut h = H::with(cfg());
    let w = watcher(&mut h, "will/#");
    let wp = writer(&[Property::WillDelayInterval(5)]);
    let exp = [Property::SessionExpiryInterval(60)];
    let (s, _) = connect5_full(&mut h, "s", true, &exp, Some(will5("will/s", b"x", &wp)));
    h.b.connection_lost(s, h.now);
    h.settle();
    h.advance(2_000);
    let (_, got) = connect5_full(&mut h, "s", false, &exp, None);
    assert!(connack(&got).sp);
    h.advance(70_000);
    assert!(recv5(&mut h, w).is_empty(), "[MQTT-3.1.3-9] no will");
}

#[test]
fn will_delay_capped_by_session_expiry() {
    let mut h = H::with(cfg());
    let w = watcher(&mut h, "will/#");
    let wp = writer(&[Property::WillDelayInterval(100)]);
    let (s, _) = connect5_full(
        &mut h,
        "s",
        true,
        &[Property::SessionExpiryInterval(3)],
        Some(will5("will/s", b"end", &wp)),
    );
    h.b.connection_lost(s, h.now);
    h.settle();
    h.advance(2_000);
    assert!(recv5(&mut h, w).is_empty());
    h.advance(1_500);
    assert_eq!(payloads(&recv5(&mut h, w)), vec![b"end".to_vec()]);
}

#[test]
fn will_with_delay_and_zero_session_expiry_goes_at_once() {
    let mut h = H::with(cfg());
    let w = watcher(&mut h, "will/#");
    let wp = writer(&[Property::WillDelayInterval(100)]);
    let (s, _) = connect5_full(&mut h, "s", true, &[], Some(will5("will/s", b"now", &wp)));
    h.b.connection_lost(s, h.now);
    h.settle();
    assert_eq!(payloads(&recv5(&mut h, w)), vec![b"now".to_vec()]);
}

#[test]
fn disconnect_with_will_reason_sends_will() {
    let mut h = H::with(cfg());
    let w = watcher(&mut h, "will/#");
    let wp = PropertyWriter::new();
    let (s, _) = connect5_full(&mut h, "s", true, &[], Some(will5("will/s", b"w", &wp)));
    disconnect5(&mut h, s, reason::DISCONNECT_WITH_WILL, &[]);
    assert!(h.is_closed(s));
    assert_eq!(payloads(&recv5(&mut h, w)), vec![b"w".to_vec()]);
}

#[test]
fn normal_disconnect_discards_will() {
    let mut h = H::with(cfg());
    let w = watcher(&mut h, "will/#");
    let wp = writer(&[Property::WillDelayInterval(2)]);
    let (s, _) = connect5_full(
        &mut h,
        "s",
        true,
        &[Property::SessionExpiryInterval(10)],
        Some(will5("will/s", b"w", &wp)),
    );
    disconnect5(&mut h, s, 0, &[]);
    assert!(h.is_closed(s));
    h.advance(20_000);
    assert!(recv5(&mut h, w).is_empty());
}

#[test]
fn will_properties_are_forwarded() {
    let mut h = H::with(cfg());
    let w = c5(&mut h, "watcher", &[]);
    sub5(&mut h, w, "will/#", 0, 0);
    let wp = writer(&[
        Property::ContentType("text/plain"),
        Property::UserProperty("k", "v"),
        Property::MessageExpiryInterval(30),
    ]);
    let (s, _) = connect5_full(&mut h, "s", true, &[], Some(will5("will/s", b"w", &wp)));
    h.b.connection_lost(s, h.now);
    h.settle();
    let got = pubs(&recv5(&mut h, w));
    assert_eq!(got.len(), 1);
    let p = got[0].props();
    assert_eq!(p.content_type(), Some("text/plain"));
    assert_eq!(p.user_properties().collect::<Vec<_>>(), vec![("k", "v")]);
    assert_eq!(p.message_expiry_interval(), Some(30));
    assert_eq!(p.will_delay_interval(), None, "not a PUBLISH property");
}

// ---------------------------------------------------------- message expiry

#[test]
fn message_expiry_drops_and_counts_down_queued_messages() {
    let mut h = H::with(cfg());
    let exp = [Property::SessionExpiryInterval(100)];
    let (s, _) = connect5_full(&mut h, "s", true, &exp, None);
    sub5(&mut h, s, "t", 1, 0);
    h.disconnect(s);
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "t",
        b"short",
        1,
        false,
        1,
        &[Property::MessageExpiryInterval(2)],
    );
    pub5(&mut h, p, "t", b"forever", 1, false, 2, &[]);
    pub5(
        &mut h,
        p,
        "t",
        b"ten",
        1,
        false,
        3,
        &[Property::MessageExpiryInterval(10)],
    );
    h.advance(4_000);
    let (_, got) = connect5_full(&mut h, "s", false, &exp, None);
    assert!(connack(&got).sp);
    let got = pubs(&got);
    // [MQTT-3.3.2-5]: the expired one is not delivered.
    assert_eq!(
        payloads(&got),
        vec![b"forever".to_vec(), b"ten".to_vec()],
        "{:?}",
        got
    );
    assert_eq!(got[0].props().message_expiry_interval(), None);
    // [MQTT-3.3.2-6]: the interval sent is what is left (10 - 4).
    assert_eq!(got[1].props().message_expiry_interval(), Some(6));
    // As in Mosquitto, which numbers messages as it queues them, the expired
    // one used up packet id 1.
    assert_eq!((got[0].pid, got[1].pid), (2, 3));
}

#[test]
fn message_expiry_sent_to_live_subscriber() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[]);
    sub5(&mut h, s, "t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "t",
        b"m",
        1,
        false,
        1,
        &[Property::MessageExpiryInterval(10)],
    );
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(got[0].props().message_expiry_interval(), Some(10));
}

#[test]
fn unacked_expired_message_is_not_resent() {
    let mut h = H::with(cfg());
    let exp = [Property::SessionExpiryInterval(100)];
    let (s, _) = connect5_full(&mut h, "s", true, &exp, None);
    sub5(&mut h, s, "t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "t",
        b"m",
        1,
        false,
        1,
        &[Property::MessageExpiryInterval(2)],
    );
    assert_eq!(pubs(&recv5(&mut h, s)).len(), 1);
    h.b.connection_lost(s, h.now);
    h.settle();
    h.advance(3_000);
    let (_, got) = connect5_full(&mut h, "s", false, &exp, None);
    assert!(connack(&got).sp);
    assert!(pubs(&got).is_empty(), "{:?}", got);
}

#[test]
fn retained_message_expiry() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "r",
        b"ret",
        1,
        true,
        1,
        &[Property::MessageExpiryInterval(5)],
    );
    h.advance(2_000);
    let a = c5(&mut h, "a", &[]);
    let (_, got) = sub5(&mut h, a, "r", 1, 0);
    assert_eq!(payloads(&got), vec![b"ret".to_vec()]);
    assert!(got[0].retain);
    assert_eq!(got[0].props().message_expiry_interval(), Some(3));
    h.advance(4_000);
    let b = c5(&mut h, "b", &[]);
    let (_, got) = sub5(&mut h, b, "r", 1, 0);
    assert!(got.is_empty(), "expired retained message: {:?}", got);
}

// ------------------------------------------------------ forwarded properties

#[test]
fn publish_properties_forwarded_in_order() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[]);
    sub5(&mut h, s, "t", 1, 0);
    let old = c3(&mut h, "old");
    sub5(&mut h, old, "t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "t",
        b"body",
        1,
        false,
        1,
        &[
            Property::PayloadFormatIndicator(1),
            Property::UserProperty("b", "1"),
            Property::ContentType("application/json"),
            Property::ResponseTopic("reply/here"),
            Property::UserProperty("a", "2"),
            Property::CorrelationData(b"\x00\x01corr"),
            Property::UserProperty("b", "3"),
            Property::TopicAlias(4),
        ],
    );
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("t", &b"body"[..]));
    let pr = m.props();
    assert_eq!(pr.payload_format_indicator(), Some(1));
    assert_eq!(pr.content_type(), Some("application/json"));
    assert_eq!(pr.response_topic(), Some("reply/here"));
    assert_eq!(pr.correlation_data(), Some(&b"\x00\x01corr"[..]));
    // [MQTT-3.3.2-18]: user properties in the order received.
    assert_eq!(
        pr.user_properties().collect::<Vec<_>>(),
        vec![("b", "1"), ("a", "2"), ("b", "3")]
    );
    // The publisher's topic alias is between it and the broker only.
    assert_eq!(pr.topic_alias(), None);

    // The v3.1.1 subscriber gets the message with no property block: its
    // decoder would otherwise mistake the properties for payload.
    let got = pubs(&recv5(&mut h, old));
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].topic.as_str(), &got[0].payload[..]),
        ("t", &b"body"[..])
    );
}

#[test]
fn v5_subscriber_receives_v3_publish() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[]);
    sub5(&mut h, s, "t", 1, 0);
    let p = c3(&mut h, "p");
    h.publish(p, "t", b"from v3", 1, false, 1);
    assert_eq!(recv5(&mut h, p)[0].name, "PUBACK");
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"from v3");
    assert_eq!(got[0].qos, 1);
    assert!(got[0].props.is_empty(), "{:?}", got[0].props());
}

// ------------------------------------------------- subscription identifiers

#[test]
fn subscription_identifiers_per_matching_subscription() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[]);
    sub5(&mut h, s, "a/+", 1, 1);
    sub5(&mut h, s, "a/#", 1, 2);
    sub5(&mut h, s, "a/b", 1, 0);
    sub5(&mut h, s, "x/#", 0, 268_435_455);
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "a/b", b"ab", 0, false, 0, &[]);
    pub5(&mut h, p, "a/c/d", b"acd", 0, false, 0, &[]);
    pub5(&mut h, p, "x/y", b"xy", 0, false, 0, &[]);
    let got = pubs(&recv5(&mut h, s));
    // v5 3.3.4: a copy per matching subscription, each with its own
    // identifier, in Mosquitto's order (literal, then `+`, then `#`).
    let ids: Vec<(Vec<u8>, Vec<u32>)> = got
        .iter()
        .map(|p| (p.payload.clone(), p.sub_ids()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (b"ab".to_vec(), vec![]),
            (b"ab".to_vec(), vec![1]),
            (b"ab".to_vec(), vec![2]),
            (b"acd".to_vec(), vec![2]),
            (b"xy".to_vec(), vec![268_435_455]),
        ]
    );
}

#[test]
fn subscription_identifier_on_retained_message_at_subscribe() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "r", b"ret", 0, true, 0, &[]);
    let s = c5(&mut h, "s", &[]);
    let (_, got) = sub5(&mut h, s, "r", 0, 42);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sub_ids(), vec![42]);
}

// ------------------------------------------------------ inbound topic alias

#[test]
fn inbound_topic_alias_routes_to_topic() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[]);
    sub5(&mut h, s, "x/#", 0, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "x/y",
        b"1",
        0,
        false,
        0,
        &[Property::TopicAlias(3)],
    );
    pub5(&mut h, p, "", b"2", 0, false, 0, &[Property::TopicAlias(3)]);
    // Re-map the alias to another topic.
    pub5(
        &mut h,
        p,
        "x/z",
        b"3",
        0,
        false,
        0,
        &[Property::TopicAlias(3)],
    );
    pub5(&mut h, p, "", b"4", 0, false, 0, &[Property::TopicAlias(3)]);
    pub5(&mut h, p, "", b"5", 1, false, 9, &[Property::TopicAlias(3)]);
    assert!(!h.is_closed(p));
    let acks = recv5(&mut h, p);
    assert_eq!((acks[0].name, acks[0].pid, acks[0].code), ("PUBACK", 9, 0));
    let got: Vec<(String, Vec<u8>)> = pubs(&recv5(&mut h, s))
        .into_iter()
        .map(|m| (m.topic, m.payload))
        .collect();
    let want: Vec<(String, Vec<u8>)> = [
        ("x/y", "1"),
        ("x/y", "2"),
        ("x/z", "3"),
        ("x/z", "4"),
        ("x/z", "5"),
    ]
    .iter()
    .map(|(t, p)| (t.to_string(), p.as_bytes().to_vec()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn inbound_topic_alias_zero_is_invalid() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "x",
        b"1",
        0,
        false,
        0,
        &[Property::TopicAlias(0)],
    );
    // [MQTT-3.3.2-8] makes it a protocol error; Mosquitto 2.0.11 answers
    // 0x81 Malformed Packet, and so does midge.
    assert_server_disconnect(&mut h, p, reason::MALFORMED_PACKET);
}

#[test]
fn inbound_topic_alias_above_maximum_is_invalid() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "x",
        b"1",
        0,
        false,
        0,
        &[Property::TopicAlias(10)],
    );
    assert!(!h.is_closed(p), "10 is the maximum and allowed");
    pub5(
        &mut h,
        p,
        "x",
        b"1",
        0,
        false,
        0,
        &[Property::TopicAlias(11)],
    );
    assert_server_disconnect(&mut h, p, reason::TOPIC_ALIAS_INVALID);
}

#[test]
fn inbound_topic_alias_not_allowed_when_maximum_zero() {
    let mut c = cfg();
    c.listeners[0].max_topic_alias = 0;
    let mut h = H::with(c);
    let (p, got) = connect5_full(&mut h, "p", true, &[], None);
    let tam = connack(&got).props().topic_alias_maximum();
    assert!(tam.is_none() || tam == Some(0), "{:?}", tam);
    pub5(
        &mut h,
        p,
        "x",
        b"1",
        0,
        false,
        0,
        &[Property::TopicAlias(1)],
    );
    assert_server_disconnect(&mut h, p, reason::TOPIC_ALIAS_INVALID);
}

#[test]
fn unknown_inbound_topic_alias_is_protocol_error() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "", b"1", 0, false, 0, &[Property::TopicAlias(2)]);
    assert_server_disconnect(&mut h, p, reason::PROTOCOL_ERROR);
}

// ----------------------------------------------------- outbound topic alias

#[test]
fn outbound_topic_alias_used_when_client_allows() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[Property::TopicAliasMaximum(5)]);
    sub5(&mut h, s, "a/#", 0, 0);
    let plain = c5(&mut h, "plain", &[]);
    sub5(&mut h, plain, "a/#", 0, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "a/b", b"1", 0, false, 0, &[]);
    pub5(&mut h, p, "a/b", b"2", 0, false, 0, &[]);
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].topic, "a/b");
    assert_eq!(got[0].props().topic_alias(), Some(1));
    assert_eq!(got[1].topic, "");
    assert_eq!(got[1].props().topic_alias(), Some(1));
    // [MQTT-3.1.2-27]: without Topic Alias Maximum, no alias at all.
    for m in pubs(&recv5(&mut h, plain)) {
        assert_eq!(m.topic, "a/b");
        assert_eq!(m.props().topic_alias(), None);
    }
}

#[test]
fn outbound_topic_aliases_never_exceed_client_maximum() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[Property::TopicAliasMaximum(2)]);
    sub5(&mut h, s, "#", 0, 0);
    let p = c5(&mut h, "p", &[]);
    let topics = ["t/1", "t/2", "t/3", "t/1", "t/3", "t/2", "t/4", "t/1"];
    for (i, t) in topics.iter().enumerate() {
        pub5(&mut h, p, t, &[i as u8], 0, false, 0, &[]);
    }
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(got.len(), topics.len());
    // Play the client: resolve aliases as section 3.3.2.3.4 describes.
    let mut map: std::collections::HashMap<u16, String> = Default::default();
    for (m, want) in got.iter().zip(topics.iter()) {
        let topic = match m.props().topic_alias() {
            Some(a) => {
                // [MQTT-3.1.2-26] / [MQTT-3.3.2-10]: within 1..=maximum.
                assert!((1..=2).contains(&a), "alias {}", a);
                if !m.topic.is_empty() {
                    map.insert(a, m.topic.clone());
                }
                map.get(&a).cloned().expect("alias known to the client")
            }
            None => m.topic.clone(),
        };
        assert_eq!(&topic, want);
    }
}

// ------------------------------------------------------------ flow control

#[test]
fn client_receive_maximum_limits_unacknowledged_publishes() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[Property::ReceiveMaximum(3)]);
    sub5(&mut h, s, "t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    for i in 0..100u16 {
        pub5(&mut h, p, "t", &i.to_be_bytes(), 1, false, i + 1, &[]);
    }
    assert_eq!(recv5(&mut h, p).len(), 100, "all PUBACKed");
    let mut unacked: Vec<u16> = Vec::new();
    let mut seen: Vec<u16> = Vec::new();
    let mut rounds = 0;
    while seen.len() < 100 {
        rounds += 1;
        assert!(rounds < 500, "stalled after {} messages", seen.len());
        for m in pubs(&recv5(&mut h, s)) {
            assert_eq!(m.qos, 1);
            unacked.push(m.pid);
            seen.push(u16::from_be_bytes([m.payload[0], m.payload[1]]));
        }
        // [MQTT-3.3.4-9]: never more than Receive Maximum in flight.
        assert!(unacked.len() <= 3, "{} unacknowledged", unacked.len());
        if seen.len() < 100 {
            assert_eq!(unacked.len(), 3, "window refilled to the maximum");
        }
        if !unacked.is_empty() {
            let pid = unacked.remove(0);
            h.ack(s, Packet::Puback, pid);
        }
    }
    assert_eq!(seen, (0..100).collect::<Vec<u16>>(), "in order");
}

/// A session with three QoS 1 messages in flight whose client comes back
/// allowing only two. The fuzzer found the old way of doing this (the third
/// moved back to the queue, past `max_queued_messages`, and later re-sent
/// under a new packet id): fuzz/findings/broker-queue-limit-crash-d2e25a8a.
fn three_in_flight_then_receive_maximum_2(h: &mut H) -> (ConnId, ConnId, Vec<Pk>, Vec<u16>) {
    let exp = Property::SessionExpiryInterval(300);
    let (s, _) = connect5_full(h, "s", true, &[exp, Property::ReceiveMaximum(3)], None);
    sub5(h, s, "t", 1, 0);
    let p = c5(h, "p", &[]);
    for (i, m) in [b"m0", b"m1", b"m2"].iter().enumerate() {
        pub5(h, p, "t", *m, 1, false, i as u16 + 1, &[]);
    }
    let first = pubs(&recv5(h, s));
    assert_eq!(payloads(&first), [b"m0", b"m1", b"m2"]);
    let ids: Vec<u16> = first.iter().map(|m| m.pid).collect();
    h.b.connection_lost(s, h.now);
    h.settle();
    // The queue fills to its limit while the client is away; m5 is dropped.
    for (i, m) in [b"m3", b"m4", b"m5"].iter().enumerate() {
        pub5(h, p, "t", *m, 1, false, i as u16 + 10, &[]);
    }
    let (s, got) = connect5_full(h, "s", false, &[exp, Property::ReceiveMaximum(2)], None);
    assert!(connack(&got).sp);
    h.b.check_invariants().unwrap();
    (s, p, pubs(&got), ids)
}

#[test]
fn smaller_receive_maximum_at_reconnect_holds_the_rest_under_their_ids() {
    let mut h = H::with(BrokerConfig {
        max_queued_messages: 2,
        ..cfg()
    });
    let (s, _, resent, ids) = three_in_flight_then_receive_maximum_2(&mut h);
    // [MQTT-3.3.4-9]: two re-sent now, with DUP and their own ids
    // [MQTT-4.4.0-1]; the queue is still within its limit.
    assert_eq!(payloads(&resent), [b"m0", b"m1"]);
    assert!(resent.iter().all(|m| m.dup), "{resent:?}");
    assert_eq!(resent.iter().map(|m| m.pid).collect::<Vec<_>>(), ids[..2]);
    // Each ack makes room for the next, oldest first; the held message
    // goes out under the id it had before the reconnect.
    h.ack(s, Packet::Puback, ids[0]);
    let next = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&next), [b"m2"]);
    assert_eq!((next[0].pid, next[0].dup), (ids[2], true));
    h.ack(s, Packet::Puback, ids[1]);
    let next = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&next), [b"m3"]);
    assert!(!next[0].dup && !ids.contains(&next[0].pid), "{next:?}");
    let m3 = next[0].pid;
    h.ack(s, Packet::Puback, ids[2]);
    h.ack(s, Packet::Puback, m3);
    let rest = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&rest), [b"m4"], "m5 was over the queue limit");
    h.b.check_invariants().unwrap();
}

#[test]
fn a_held_message_acknowledged_before_its_resend_is_not_sent_again() {
    let mut h = H::with(BrokerConfig {
        max_queued_messages: 2,
        ..cfg()
    });
    let (s, _, _, ids) = three_in_flight_then_receive_maximum_2(&mut h);
    // The client had m2 after all and acknowledges it while it is held.
    h.ack(s, Packet::Puback, ids[2]);
    assert!(pubs(&recv5(&mut h, s)).is_empty());
    h.ack(s, Packet::Puback, ids[0]);
    let next = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&next), [b"m3"], "m2 is not re-sent");
    h.b.check_invariants().unwrap();
}

#[test]
fn inbound_qos2_beyond_receive_maximum_is_disconnected() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    for pid in 1..=20u16 {
        pub5(&mut h, p, "t", b"q2", 2, false, pid, &[]);
    }
    let got = recv5(&mut h, p);
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|g| g.name == "PUBREC" && g.code == 0));
    // Releasing one makes room for one more.
    h.ack(p, Packet::Pubrel, 1);
    pub5(&mut h, p, "t", b"q2", 2, false, 21, &[]);
    let got = recv5(&mut h, p);
    assert_eq!(
        got.iter().map(|g| (g.name, g.pid)).collect::<Vec<_>>(),
        vec![("PUBCOMP", 1), ("PUBREC", 21)]
    );
    assert!(!h.is_closed(p));
    // [MQTT-3.3.4-7]: a 21st unreleased QoS 2 PUBLISH exceeds the Receive
    // Maximum the server sent; 0x93 per section 3.3.4 / 4.13.
    pub5(&mut h, p, "t", b"q2", 2, false, 22, &[]);
    assert_server_disconnect(&mut h, p, reason::RECEIVE_MAXIMUM_EXCEEDED);
}

#[test]
fn message_larger_than_client_maximum_packet_size_is_not_sent() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[Property::MaximumPacketSize(64)]);
    sub5(&mut h, s, "t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", &[b'x'; 100], 0, false, 0, &[]);
    pub5(&mut h, p, "t", b"small", 0, false, 0, &[]);
    pub5(&mut h, p, "t", &[b'y'; 100], 1, false, 1, &[]);
    pub5(&mut h, p, "t", b"small1", 1, false, 2, &[]);
    let got = pubs(&recv5(&mut h, s));
    // [MQTT-3.1.2-24]: the too-large ones are discarded, not sent.
    assert_eq!(payloads(&got), vec![b"small".to_vec(), b"small1".to_vec()]);
    h.ack(s, Packet::Puback, got[1].pid);
    let skey = h.b.conns.get(s).unwrap().session.unwrap();
    assert_eq!(h.b.sessions[skey].stored_len(), 0, "nothing left in flight");
}

#[test]
fn inbound_packet_over_max_packet_size_is_disconnected() {
    let mut h = H::with(BrokerConfig {
        max_packet_size: 128,
        ..cfg()
    });
    let (p, got) = connect5_full(&mut h, "p", true, &[], None);
    assert_eq!(connack(&got).props().maximum_packet_size(), Some(128));
    pub5(&mut h, p, "t", &[0u8; 100], 0, false, 0, &[]);
    assert!(!h.is_closed(p));
    pub5(&mut h, p, "t", &[0u8; 200], 0, false, 0, &[]);
    assert_server_disconnect(&mut h, p, reason::PACKET_TOO_LARGE);
}

// ---------------------------------------------------- subscription options

#[test]
fn no_local_skips_own_messages() {
    let mut h = H::with(cfg());
    let a = c5(&mut h, "a", &[]);
    sub5(&mut h, a, "t", 0x04 | 1, 0);
    let b = c5(&mut h, "b", &[]);
    sub5(&mut h, b, "t", 1, 0);
    pub5(&mut h, a, "t", b"from a", 0, false, 0, &[]);
    assert!(pubs(&recv5(&mut h, a)).is_empty(), "[MQTT-3.8.3-3]");
    assert_eq!(payloads(&recv5(&mut h, b)), vec![b"from a".to_vec()]);
    pub5(&mut h, b, "t", b"from b", 0, false, 0, &[]);
    assert_eq!(payloads(&recv5(&mut h, a)), vec![b"from b".to_vec()]);
}

#[test]
fn retain_as_published_keeps_retain_flag() {
    let mut h = H::with(cfg());
    let rap = c5(&mut h, "rap", &[]);
    sub5(&mut h, rap, "t", 0x08 | 1, 0);
    let plain = c5(&mut h, "plain", &[]);
    sub5(&mut h, plain, "t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"r", 0, true, 0, &[]);
    pub5(&mut h, p, "t", b"n", 0, false, 0, &[]);
    let got = pubs(&recv5(&mut h, rap));
    assert_eq!(
        got.iter().map(|m| m.retain).collect::<Vec<_>>(),
        vec![true, false]
    );
    // [MQTT-3.3.1-12]: without the option the flag is cleared on live messages.
    let got = pubs(&recv5(&mut h, plain));
    assert_eq!(
        got.iter().map(|m| m.retain).collect::<Vec<_>>(),
        vec![false, false]
    );
}

#[test]
fn retain_handling_options() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "r", b"ret", 0, true, 0, &[]);

    // 0: retained messages at every subscribe [MQTT-3.3.1-9].
    let a = c5(&mut h, "a", &[]);
    assert_eq!(
        payloads(&sub5(&mut h, a, "r", 1, 0).1),
        vec![b"ret".to_vec()]
    );
    assert_eq!(
        payloads(&sub5(&mut h, a, "r", 1, 0).1),
        vec![b"ret".to_vec()]
    );

    // 1: only when the subscription did not exist [MQTT-3.3.1-10].
    let b = c5(&mut h, "b", &[]);
    let (_, got) = sub5(&mut h, b, "r", 0x10 | 1, 0);
    assert_eq!(payloads(&got), vec![b"ret".to_vec()]);
    assert!(got[0].retain);
    let (_, got) = sub5(&mut h, b, "r", 0x10 | 1, 0);
    assert!(got.is_empty(), "subscription existed: {:?}", got);

    // 2: never [MQTT-3.3.1-11].
    let c = c5(&mut h, "c", &[]);
    assert!(sub5(&mut h, c, "r", 0x20 | 1, 0).1.is_empty());
    assert!(sub5(&mut h, c, "r", 0x20 | 1, 0).1.is_empty());
    // The subscription itself works.
    pub5(&mut h, p, "r", b"live", 0, false, 0, &[]);
    assert_eq!(payloads(&recv5(&mut h, c)), vec![b"live".to_vec()]);
}

// --------------------------------------------------- shared subscriptions

#[test]
fn shared_subscription_round_robin() {
    let mut h = H::with(cfg());
    let a = c5(&mut h, "a", &[]);
    let b = c5(&mut h, "b", &[]);
    assert_eq!(sub5(&mut h, a, "$share/g/t", 1, 0).0, vec![1]);
    assert_eq!(sub5(&mut h, b, "$share/g/t", 1, 0).0, vec![1]);
    let all = c5(&mut h, "all", &[]);
    sub5(&mut h, all, "t", 0, 0);
    let p = c5(&mut h, "p", &[]);
    for i in 0..10u8 {
        pub5(&mut h, p, "t", &[i], 0, false, 0, &[]);
    }
    let ga = payloads(&recv5(&mut h, a));
    let gb = payloads(&recv5(&mut h, b));
    assert_eq!((ga.len(), gb.len()), (5, 5), "{:?} / {:?}", ga, gb);
    let mut both: Vec<u8> = ga.iter().chain(gb.iter()).map(|p| p[0]).collect();
    both.sort_unstable();
    assert_eq!(both, (0..10).collect::<Vec<u8>>(), "each message once");
    assert_eq!(payloads(&recv5(&mut h, all)).len(), 10);
}

#[test]
fn shared_subscription_gets_no_retained_messages() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"ret", 0, true, 0, &[]);
    let a = c5(&mut h, "a", &[]);
    let (codes, got) = sub5(&mut h, a, "$share/g/t", 1, 0);
    assert_eq!(codes, vec![1]);
    // Section 4.8.2: no retained messages for a shared subscription.
    assert!(got.is_empty(), "{:?}", got);
}

#[test]
fn shared_subscription_unacked_message_moves_when_session_ends() {
    let mut h = H::with(cfg());
    let a = c5(&mut h, "a", &[]);
    let b = c5(&mut h, "b", &[]);
    sub5(&mut h, a, "$share/g/t", 1, 0);
    sub5(&mut h, b, "$share/g/t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"m1", 1, false, 1, &[]);
    let (first, second) = if pubs(&recv5(&mut h, a)).is_empty() {
        (b, a)
    } else {
        (a, b)
    };
    assert!(pubs(&recv5(&mut h, second)).is_empty());
    // The chosen member leaves without acknowledging; its session ends.
    h.disconnect(first);
    let got = pubs(&recv5(&mut h, second));
    assert_eq!(payloads(&got), vec![b"m1".to_vec()]);
    assert_eq!(got[0].qos, 1);
}

#[test]
fn shared_subscription_prefers_online_members() {
    let mut h = H::with(cfg());
    let exp = [Property::SessionExpiryInterval(100)];
    let (a, _) = connect5_full(&mut h, "a", true, &exp, None);
    let b = c5(&mut h, "b", &[]);
    sub5(&mut h, a, "$share/g/t", 1, 0);
    sub5(&mut h, b, "$share/g/t", 1, 0);
    h.disconnect(a);
    let p = c5(&mut h, "p", &[]);
    for i in 0..4u8 {
        pub5(&mut h, p, "t", &[i], 1, false, u16::from(i) + 1, &[]);
    }
    let got = pubs(&recv5(&mut h, b));
    assert_eq!(got.len(), 4, "all to the online member");
    let (_, got) = connect5_full(&mut h, "a", false, &exp, None);
    assert!(connack(&got).sp);
    assert!(pubs(&got).is_empty(), "nothing was queued for A: {:?}", got);
}

#[test]
fn shared_subscription_with_v311_member() {
    let mut h = H::with(cfg());
    let old = c3(&mut h, "old");
    let new = c5(&mut h, "new", &[]);
    assert_eq!(sub5(&mut h, old, "$share/g/t/#", 1, 0).0, vec![1]);
    assert_eq!(sub5(&mut h, new, "$share/g/t/#", 1, 0).0, vec![1]);
    let p = c5(&mut h, "p", &[]);
    for i in 0..4u8 {
        pub5(&mut h, p, "t/x", &[i], 0, false, 0, &[]);
    }
    let go = pubs(&recv5(&mut h, old));
    let gn = pubs(&recv5(&mut h, new));
    assert_eq!((go.len(), gn.len()), (2, 2));
    assert!(go.iter().all(|m| m.topic == "t/x"));
}

// ------------------------------------------------ server DISCONNECT codes

#[test]
fn takeover_sends_session_taken_over() {
    let mut h = H::with(cfg());
    let first = c5(&mut h, "same", &[]);
    let second = c5(&mut h, "same", &[]);
    assert_server_disconnect(&mut h, first, reason::SESSION_TAKEN_OVER);
    assert!(!h.is_closed(second));
}

#[test]
fn keepalive_timeout_sends_reason() {
    let mut h = H::with(cfg());
    let (id, _) = connect_v(&mut h, V5, "k", true, 10, &[], None);
    h.advance(14_000);
    assert!(!h.is_closed(id));
    h.advance(1_500);
    assert_server_disconnect(&mut h, id, reason::KEEP_ALIVE_TIMEOUT);
}

#[test]
fn malformed_packet_sends_reason() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "m", &[]);
    // PUBLISH "t" whose property block holds the unknown identifier 0x7F.
    h.raw(id, &[0x30, 0x05, 0x00, 0x01, b't', 0x01, 0x7F]);
    assert_server_disconnect(&mut h, id, reason::MALFORMED_PACKET);
}

#[test]
fn second_connect_closes_without_disconnect() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "c", &[]);
    h.send(
        id,
        Packet::Connect(Connect {
            version: V5,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::EMPTY,
            client_id: "c",
            will: None,
            username: None,
            password: None,
        }),
    );
    // Mosquitto closes the connection without a DISCONNECT.
    assert!(recv5(&mut h, id).is_empty());
    assert!(h.is_closed(id));
}

#[test]
fn publish_above_maximum_qos_is_disconnected() {
    let mut c = cfg();
    c.listeners[0].max_qos = QoS::AtLeastOnce;
    let mut h = H::with(c);
    let id = c5(&mut h, "c", &[]);
    pub5(&mut h, id, "t", b"x", 1, false, 1, &[]);
    assert_eq!(recv5(&mut h, id)[0].name, "PUBACK");
    pub5(&mut h, id, "t", b"x", 2, false, 2, &[]);
    assert_server_disconnect(&mut h, id, reason::QOS_NOT_SUPPORTED);
}

#[test]
fn retain_when_not_available_is_disconnected() {
    let mut h = H::with(BrokerConfig {
        retain_available: false,
        ..cfg()
    });
    let id = c5(&mut h, "c", &[]);
    pub5(&mut h, id, "t", b"x", 0, true, 0, &[]);
    assert_server_disconnect(&mut h, id, reason::RETAIN_NOT_SUPPORTED);
}

#[test]
fn shutdown_sends_server_shutting_down() {
    let mut h = H::with(cfg());
    let v5 = c5(&mut h, "v5", &[]);
    let v3 = c3(&mut h, "v3");
    let now = h.now;
    h.b.shutdown(now);
    h.settle();
    assert_server_disconnect(&mut h, v5, reason::SERVER_SHUTTING_DOWN);
    assert!(recv5(&mut h, v3).is_empty(), "no DISCONNECT in 3.1.1");
    assert!(h.is_closed(v3));
}

// -------------------------------------------------------------------- AUTH

#[test]
fn connect_with_authentication_method_is_refused() {
    let mut h = H::with(cfg());
    let (id, got) = connect5_full(
        &mut h,
        "c",
        true,
        &[Property::AuthenticationMethod("SCRAM-SHA-1")],
        None,
    );
    assert_eq!(got.len(), 1, "{:?}", got);
    assert_eq!(connack(&got).code, reason::BAD_AUTHENTICATION_METHOD);
    assert!(h.is_closed(id));
}

#[test]
fn auth_packet_without_auth_method_closes() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "c", &[]);
    let w = writer(&[Property::AuthenticationMethod("SCRAM-SHA-1")]);
    h.send(
        id,
        Packet::Auth(Auth {
            reason: reason::REAUTHENTICATE,
            properties: w.as_properties(),
        }),
    );
    // No authentication method at CONNECT: Mosquitto closes silently.
    assert!(recv5(&mut h, id).is_empty());
    assert!(h.is_closed(id));
}

// --------------------------------------------------- reason codes on acks

#[test]
fn pubrel_for_unknown_packet_id_gets_pubcomp_success() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "c", &[]);
    h.ack(id, Packet::Pubrel, 321);
    let got = recv5(&mut h, id);
    assert_eq!(
        got.iter()
            .map(|g| (g.name, g.pid, g.code))
            .collect::<Vec<_>>(),
        // Mosquitto answers 0, not 0x92: the client may be retrying a
        // release the broker already completed.
        vec![("PUBCOMP", 321, reason::SUCCESS)]
    );
    assert!(!h.is_closed(id));
}

#[test]
fn publish_to_sys_gets_not_authorized() {
    let mut h = H::with(cfg());
    let s = c3(&mut h, "s");
    sub5(&mut h, s, "$SYS/#", 0, 0);
    let id = c5(&mut h, "c", &[]);
    pub5(&mut h, id, "$SYS/x", b"fake", 1, false, 5, &[]);
    let got = recv5(&mut h, id);
    assert_eq!(
        got.iter()
            .map(|g| (g.name, g.pid, g.code))
            .collect::<Vec<_>>(),
        vec![("PUBACK", 5, reason::NOT_AUTHORIZED)]
    );
    assert!(recv5(&mut h, s).is_empty(), "not routed");
}

#[test]
fn publish_over_message_size_limit_gets_packet_too_large() {
    let mut h = H::with(BrokerConfig {
        message_size_limit: 10,
        ..cfg()
    });
    let s = c5(&mut h, "s", &[]);
    sub5(&mut h, s, "t", 1, 0);
    let id = c5(&mut h, "c", &[]);
    pub5(&mut h, id, "t", &[0u8; 11], 1, false, 5, &[]);
    pub5(&mut h, id, "t", &[0u8; 10], 1, false, 6, &[]);
    let got = recv5(&mut h, id);
    assert_eq!(
        got.iter()
            .map(|g| (g.name, g.pid, g.code))
            .collect::<Vec<_>>(),
        vec![
            ("PUBACK", 5, reason::PACKET_TOO_LARGE),
            ("PUBACK", 6, reason::SUCCESS)
        ]
    );
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(got.len(), 1, "only the message within the limit");
    assert_eq!(got[0].payload.len(), 10);
}

#[test]
fn unsuback_reports_missing_subscription() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "c", &[]);
    sub5(&mut h, id, "a", 1, 0);
    let mut raw = Vec::new();
    for f in ["a", "b"] {
        raw.extend_from_slice(&(f.len() as u16).to_be_bytes());
        raw.extend_from_slice(f.as_bytes());
    }
    h.send(
        id,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 9,
            properties: Properties::EMPTY,
            filters: UnsubscribeFilters::from_raw(&raw),
        }),
    );
    let got = recv5(&mut h, id);
    assert_eq!((got[0].name, got[0].pid), ("UNSUBACK", 9));
    assert_eq!(
        got[0].codes,
        vec![reason::SUCCESS, reason::NO_SUBSCRIPTION_EXISTED]
    );
}

#[test]
fn invalid_filter_is_malformed_packet() {
    // Mosquitto: "Invalid subscription string ..., disconnecting" with
    // DISCONNECT 0x81, and none of the packet's filters are granted.
    for bad in ["a/#/b", "x+", "$share/g+/t"] {
        let mut h = H::with(cfg());
        let id = c5(&mut h, "c", &[]);
        let mut raw = Vec::new();
        for f in ["ok/+", bad] {
            raw.extend_from_slice(&(f.len() as u16).to_be_bytes());
            raw.extend_from_slice(f.as_bytes());
            raw.push(1);
        }
        h.send(
            id,
            Packet::Subscribe(Subscribe {
                packet_id: 3,
                properties: Properties::EMPTY,
                filters: SubscribeFilters::from_raw(&raw),
            }),
        );
        assert_server_disconnect(&mut h, id, reason::MALFORMED_PACKET);
        assert!(
            h.b.sessions.iter().all(|(_, s)| s.subs.is_empty()),
            "{}",
            bad
        );
    }
}

// ------------------------------------------------------- further edge cases

#[test]
fn zero_keepalive_gets_server_keep_alive_when_limited() {
    let mut h = H::with(BrokerConfig {
        max_keepalive: 30,
        ..cfg()
    });
    let (id, got) = connect_v(&mut h, V5, "k0", true, 0, &[], None);
    assert_eq!(connack(&got).props().server_keep_alive(), Some(30));
    h.advance(46_000);
    assert_server_disconnect(&mut h, id, reason::KEEP_ALIVE_TIMEOUT);
}

#[test]
fn will_qos_above_maximum_is_refused() {
    let mut c = cfg();
    c.listeners[0].max_qos = QoS::AtLeastOnce;
    let mut h = H::with(c);
    let wp = PropertyWriter::new();
    let mut w = will5("will/s", b"w", &wp);
    w.qos = QoS::ExactlyOnce;
    let (id, got) = connect5_full(&mut h, "s", true, &[], Some(w));
    // [MQTT-3.2.2-12]: reject a Will QoS the server does not support.
    assert_eq!(connack(&got).code, reason::QOS_NOT_SUPPORTED, "{:?}", got);
    assert!(h.is_closed(id));
}

#[test]
fn will_retain_when_not_available_is_refused() {
    let mut h = H::with(BrokerConfig {
        retain_available: false,
        ..cfg()
    });
    let wp = PropertyWriter::new();
    let mut w = will5("will/s", b"w", &wp);
    w.retain = true;
    let (id, got) = connect5_full(&mut h, "s", true, &[], Some(w));
    // [MQTT-3.2.2-13]: reject a retained will when retain is not supported.
    assert_eq!(
        connack(&got).code,
        reason::RETAIN_NOT_SUPPORTED,
        "{:?}",
        got
    );
    assert!(h.is_closed(id));
}

#[test]
fn subscribe_above_maximum_qos_is_downgraded() {
    let mut c = cfg();
    c.listeners[0].max_qos = QoS::AtLeastOnce;
    let mut h = H::with(c);
    let id = c5(&mut h, "c", &[]);
    assert_eq!(sub5(&mut h, id, "t", 2, 0).0, vec![1]);
}

#[test]
fn queued_message_expires_while_window_is_full() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[Property::ReceiveMaximum(1)]);
    sub5(&mut h, s, "t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"first", 1, false, 1, &[]);
    pub5(
        &mut h,
        p,
        "t",
        b"short",
        1,
        false,
        2,
        &[Property::MessageExpiryInterval(2)],
    );
    pub5(
        &mut h,
        p,
        "t",
        b"long",
        1,
        false,
        3,
        &[Property::MessageExpiryInterval(100)],
    );
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&got), vec![b"first".to_vec()]);
    h.advance(3_000);
    h.send(s, Packet::Pingreq);
    recv5(&mut h, s);
    h.ack(s, Packet::Puback, got[0].pid);
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&got), vec![b"long".to_vec()]);
    assert_eq!(got[0].props().message_expiry_interval(), Some(97));
}

#[test]
fn qos2_counts_against_receive_maximum_until_pubcomp() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[Property::ReceiveMaximum(1)]);
    sub5(&mut h, s, "t", 2, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"a", 2, false, 1, &[]);
    pub5(&mut h, p, "t", b"b", 2, false, 2, &[]);
    h.ack(p, Packet::Pubrel, 1);
    h.ack(p, Packet::Pubrel, 2);
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&got), vec![b"a".to_vec()]);
    h.ack(s, Packet::Pubrec, got[0].pid);
    let got2 = recv5(&mut h, s);
    assert_eq!(
        got2.iter().map(|g| g.name).collect::<Vec<_>>(),
        vec!["PUBREL"],
        "still in flight until PUBCOMP"
    );
    h.ack(s, Packet::Pubcomp, got[0].pid);
    assert_eq!(payloads(&recv5(&mut h, s)), vec![b"b".to_vec()]);
}

#[test]
fn pubrec_with_error_code_frees_the_window() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[Property::ReceiveMaximum(1)]);
    sub5(&mut h, s, "t", 2, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"a", 2, false, 1, &[]);
    pub5(&mut h, p, "t", b"b", 2, false, 2, &[]);
    h.ack(p, Packet::Pubrel, 1);
    h.ack(p, Packet::Pubrel, 2);
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&got), vec![b"a".to_vec()]);
    h.send(
        s,
        Packet::Pubrec(Ack {
            packet_id: got[0].pid,
            reason: reason::UNSPECIFIED_ERROR,
            properties: Properties::EMPTY,
        }),
    );
    // [MQTT-4.3.3-4]: PUBREL only answers a PUBREC below 0x80, and
    // [MQTT-3.3.4-9]: the message no longer counts against Receive Maximum.
    let got = recv5(&mut h, s);
    assert_eq!(
        got.iter().map(|g| g.name).collect::<Vec<_>>(),
        vec!["PUBLISH"],
        "{:?}",
        got
    );
    assert_eq!(got[0].payload, b"b");
}

#[test]
fn client_sending_subscription_identifier_is_ignored() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[]);
    sub5(&mut h, s, "t", 0, 0);
    let p = c5(&mut h, "p", &[]);
    pub5(
        &mut h,
        p,
        "t",
        b"x",
        0,
        false,
        0,
        &[Property::SubscriptionIdentifier(3)],
    );
    // [MQTT-3.3.4-6] forbids it; Mosquitto strips it and delivers, and so
    // does midge: the subscriber never sees the client's identifier.
    assert!(recv5(&mut h, p).is_empty());
    assert!(!h.is_closed(p));
    let got = pubs(&recv5(&mut h, s));
    assert_eq!(payloads(&got), vec![b"x".to_vec()]);
    assert_eq!(got[0].props().subscription_identifiers().count(), 0);
}

#[test]
fn inbound_topic_aliases_do_not_survive_reconnect() {
    let mut h = H::with(cfg());
    let exp = [Property::SessionExpiryInterval(100)];
    let (p, _) = connect5_full(&mut h, "p", true, &exp, None);
    pub5(
        &mut h,
        p,
        "x",
        b"1",
        0,
        false,
        0,
        &[Property::TopicAlias(1)],
    );
    h.disconnect(p);
    let (p, got) = connect5_full(&mut h, "p", false, &exp, None);
    assert!(connack(&got).sp);
    // [MQTT-3.3.2-7]: aliases belong to the network connection.
    pub5(&mut h, p, "", b"2", 0, false, 0, &[Property::TopicAlias(1)]);
    assert_server_disconnect(&mut h, p, reason::PROTOCOL_ERROR);
}

/// [MQTT-3.8.3-4] calls No Local on a shared subscription a protocol error;
/// Mosquitto 2.0.11 grants it, and midge answers as Mosquitto does.
#[test]
fn no_local_on_shared_subscription_is_granted_as_mosquitto_does() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "c", &[]);
    let (codes, _) = sub_many(&mut h, id, &[("$share/g/t", 0x04 | 1)], 0);
    assert_eq!(codes, vec![1]);
}

/// `$share/g` (no filter) and `$share//t` (no group) are not shared
/// subscriptions: Mosquitto grants them as ordinary filters.
#[test]
fn malformed_share_forms_are_ordinary_filters() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "c", &[]);
    let (codes, _) = sub_many(&mut h, id, &[("$share/g", 1), ("$share//t", 1)], 0);
    assert_eq!(codes, vec![1, 1]);
}

#[test]
fn valid_shared_filter_is_granted() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "c", &[]);
    let (codes, _) = sub_many(&mut h, id, &[("$share/g/t", 1)], 0);
    assert_eq!(codes, vec![1]);
}

#[test]
fn shared_member_departure_moves_inflight_and_queued() {
    let mut h = H::with(cfg());
    let a = c5(&mut h, "a", &[Property::ReceiveMaximum(1)]);
    let b = c5(&mut h, "b", &[]);
    sub5(&mut h, a, "$share/g/t", 1, 0);
    sub5(&mut h, b, "$share/g/t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    for i in 0..4u8 {
        pub5(&mut h, p, "t", &[i], 1, false, u16::from(i) + 1, &[]);
    }
    let ga = payloads(&recv5(&mut h, a));
    let gb = payloads(&recv5(&mut h, b));
    assert_eq!(ga.len(), 1, "A's window is 1: {:?}", ga);
    assert_eq!(gb.len(), 2, "{:?}", gb);
    h.disconnect(a);
    let moved = payloads(&recv5(&mut h, b));
    let mut all: Vec<u8> = gb.iter().chain(moved.iter()).map(|p| p[0]).collect();
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2, 3], "nothing lost: moved {:?}", moved);
}

#[test]
fn unsubscribe_shared_subscription() {
    let mut h = H::with(cfg());
    let id = c5(&mut h, "c", &[]);
    sub5(&mut h, id, "$share/g/t", 1, 0);
    for want in [reason::SUCCESS, reason::NO_SUBSCRIPTION_EXISTED] {
        let raw = [&[0u8, 10][..], b"$share/g/t"].concat();
        h.send(
            id,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 3,
                properties: Properties::EMPTY,
                filters: UnsubscribeFilters::from_raw(&raw),
            }),
        );
        assert_eq!(recv5(&mut h, id)[0].codes, vec![want]);
    }
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"x", 0, false, 0, &[]);
    assert!(recv5(&mut h, id).is_empty());
}

#[test]
fn retained_delivery_respects_receive_maximum_and_packet_size() {
    let mut h = H::with(cfg());
    let p = c5(&mut h, "p", &[]);
    for i in 0..5u8 {
        let topic = format!("r/{}", i);
        pub5(&mut h, p, &topic, &[i; 4], 1, true, u16::from(i) + 1, &[]);
    }
    pub5(&mut h, p, "r/big", &[9u8; 200], 1, true, 9, &[]);
    let s = c5(
        &mut h,
        "s",
        &[
            Property::ReceiveMaximum(2),
            Property::MaximumPacketSize(100),
        ],
    );
    let (_, got) = sub5(&mut h, s, "r/#", 1, 0);
    assert_eq!(pubs(&got).len(), 2, "window of 2: {:?}", got);
    let mut total = pubs(&got);
    let mut pending: Vec<u16> = total.iter().map(|m| m.pid).collect();
    while let Some(pid) = pending.pop() {
        h.ack(s, Packet::Puback, pid);
        for m in pubs(&recv5(&mut h, s)) {
            pending.push(m.pid);
            total.push(m);
        }
        assert!(pending.len() <= 2);
    }
    assert_eq!(total.len(), 5, "the 200-byte one is never sent");
    assert!(total.iter().all(|m| m.payload.len() == 4 && m.retain));
}

#[test]
fn resend_on_reconnect_respects_new_receive_maximum() {
    let mut h = H::with(cfg());
    let (s, _) = connect5_full(
        &mut h,
        "s",
        true,
        &[
            Property::SessionExpiryInterval(100),
            Property::ReceiveMaximum(5),
        ],
        None,
    );
    sub5(&mut h, s, "t", 1, 0);
    let p = c5(&mut h, "p", &[]);
    for i in 0..5u8 {
        pub5(&mut h, p, "t", &[i], 1, false, u16::from(i) + 1, &[]);
    }
    assert_eq!(pubs(&recv5(&mut h, s)).len(), 5);
    h.b.connection_lost(s, h.now);
    h.settle();
    let (_, got) = connect5_full(
        &mut h,
        "s",
        false,
        &[
            Property::SessionExpiryInterval(100),
            Property::ReceiveMaximum(2),
        ],
        None,
    );
    assert!(connack(&got).sp);
    // [MQTT-3.3.4-9] holds for re-sent PUBLISHes too.
    assert!(
        pubs(&got).len() <= 2,
        "{} PUBLISHes with Receive Maximum 2",
        pubs(&got).len()
    );
}

#[test]
fn clean_start_discards_existing_session() {
    let mut h = H::with(cfg());
    let exp = [Property::SessionExpiryInterval(100)];
    let (s, _) = connect5_full(&mut h, "s", true, &exp, None);
    sub5(&mut h, s, "t", 1, 0);
    h.disconnect(s);
    let (s, got) = connect5_full(&mut h, "s", true, &exp, None);
    assert!(!connack(&got).sp, "[MQTT-3.2.2-2]");
    let p = c5(&mut h, "p", &[]);
    pub5(&mut h, p, "t", b"x", 0, false, 0, &[]);
    assert!(recv5(&mut h, s).is_empty(), "old subscription gone");
}

#[test]
fn disconnect_with_error_reason_keeps_will() {
    let mut h = H::with(cfg());
    let w = watcher(&mut h, "will/#");
    let wp = PropertyWriter::new();
    let (s, _) = connect5_full(&mut h, "s", true, &[], Some(will5("will/s", b"w", &wp)));
    disconnect5(&mut h, s, reason::UNSPECIFIED_ERROR, &[]);
    assert!(h.is_closed(s));
    assert_eq!(payloads(&recv5(&mut h, w)), vec![b"w".to_vec()]);
}

#[test]
fn resubscribe_replaces_subscription_identifier() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "s", &[]);
    let p = c5(&mut h, "p", &[]);
    // [MQTT-3.8.4-3]: each SUBSCRIBE replaces the subscription, identifier
    // included (none on the last one).
    for (sub_id, want) in [(1, vec![1]), (5, vec![5]), (0, vec![])] {
        sub5(&mut h, s, "a", 1, sub_id);
        pub5(&mut h, p, "a", b"m", 0, false, 0, &[]);
        let got = pubs(&recv5(&mut h, s));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].sub_ids(), want);
    }
}

/// Taking over a v5 session whose Session Expiry is 0 with Clean Start 0: as
/// in Mosquitto, nothing is resumed (session present 0, the old
/// subscriptions are gone). With an expiry the session carries over.
#[test]
fn takeover_resumes_only_a_session_meant_to_outlive_its_connection() {
    for (expiry, resumed) in [(0u32, false), (60, true)] {
        let mut h = H::with(cfg());
        let props = [Property::SessionExpiryInterval(expiry)];
        let (a, _) = connect5_full(&mut h, "tk", false, &props, None);
        sub5(&mut h, a, "tk/t", 0, 0);
        let (b, got) = connect5_full(&mut h, "tk", false, &[], None);
        assert!(h.is_closed(a));
        assert_eq!(
            (got[0].name, got[0].sp),
            ("CONNACK", resumed),
            "expiry {expiry}"
        );
        let p = c5(&mut h, "tkp", &[]);
        pub5(&mut h, p, "tk/t", b"x", 0, false, 0, &[]);
        assert_eq!(
            pubs(&recv5(&mut h, b)).len(),
            usize::from(resumed),
            "expiry {expiry}"
        );
    }
}

/// Overlapping subscriptions, one with Retain As Published: two copies, the
/// plain one (`t/+`) first, then `t/#` keeping the retain flag, as Mosquitto
/// sends them whatever order they were made in.
#[test]
fn overlapping_retain_as_published_gives_two_copies_in_tree_order() {
    let mut h = H::with(cfg());
    let s = c5(&mut h, "rap", &[]);
    sub5(&mut h, s, "t/#", 0x08 | 1, 0);
    sub5(&mut h, s, "t/+", 0, 0);
    let p = c5(&mut h, "rapp", &[]);
    pub5(&mut h, p, "t/a", b"x", 0, true, 0, &[]);
    let got: Vec<(u8, bool)> = pubs(&recv5(&mut h, s))
        .iter()
        .map(|p| (p.qos, p.retain))
        .collect();
    assert_eq!(got, vec![(0, false), (0, true)]);
}

/// A CONNACK larger than the client's Maximum Packet Size is not sent: the
/// connection closes, as with Mosquitto (which does not count the first
/// byte, so a limit of 10 still takes this 11-byte CONNACK).
#[test]
fn connack_over_client_maximum_packet_size_closes() {
    let mut h = H::with(cfg());
    let (id, got) = connect5_full(&mut h, "mps", true, &[Property::MaximumPacketSize(5)], None);
    assert!(got.is_empty(), "{got:?}");
    assert!(h.is_closed(id));
    let (id, got) = connect5_full(
        &mut h,
        "mps2",
        true,
        &[Property::MaximumPacketSize(10)],
        None,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(!h.is_closed(id));
}
