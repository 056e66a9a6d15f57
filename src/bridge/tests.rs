//! Link tests: a real `Broker` as the local side, the remote played by the
//! test (bytes decoded and answered by hand), and a fake clock
//! (milliseconds passed in). No sockets, no sleeps.

use super::*;
use crate::broker::BrokerConfig;
use crate::config::BridgeTopic;

fn topic(p: &str, d: BridgeDirection, qos: u8, lp: Option<&str>, rp: Option<&str>) -> BridgeTopic {
    BridgeTopic {
        pattern: p.to_string(),
        direction: d,
        qos,
        local_prefix: lp.map(str::to_string),
        remote_prefix: rp.map(str::to_string),
    }
}

fn bridge() -> Bridge {
    let mut b = Bridge::new("up");
    b.addresses = vec![("127.0.0.1".into(), 1883), ("127.0.0.2".into(), 1884)];
    b.topics = vec![
        topic("out/#", BridgeDirection::Out, 1, None, None),
        topic("in/#", BridgeDirection::In, 1, None, None),
        topic("x/#", BridgeDirection::Both, 2, Some("loc/"), Some("rem/")),
    ];
    b.keepalive_interval = 10;
    b
}

fn link(b: Bridge) -> (Link, Broker) {
    let broker = Broker::new(BrokerConfig::default(), 0);
    (Link::new(b, 0, "host", Instant::now(), 7), broker)
}

/// Every packet the link wrote for the remote, taken out.
fn remote_packets(l: &mut Link, v: ProtocolVersion) -> Vec<Vec<u8>> {
    let out = l.remote_output().to_vec();
    l.remote_written(out.len());
    let mut off = 0;
    let mut packets = Vec::new();
    while off < out.len() {
        match decode(&out[off..], v, 0) {
            Ok(Decoded::Packet(_, n)) => {
                packets.push(out[off..off + n].to_vec());
                off += n;
            }
            _ => panic!("the link wrote a bad packet"),
        }
    }
    packets
}

fn dup_of(raw: &[u8]) -> bool {
    raw[0] & 0x08 != 0
}

fn publish_of(raw: &[u8]) -> (String, Vec<u8>, u8, bool, u16) {
    match decode(raw, ProtocolVersion::V311, 0) {
        Ok(Decoded::Packet(Packet::Publish(p), _)) => (
            p.topic.to_string(),
            p.payload.to_vec(),
            p.qos as u8,
            p.retain,
            p.packet_id,
        ),
        other => panic!("not a PUBLISH: {other:?}"),
    }
}

/// Connect the link to a remote that accepts it.
fn bring_up(l: &mut Link, b: &mut Broker, now: u64) -> Vec<Vec<u8>> {
    assert!(l.poll_connect(b, now).is_some());
    l.transport_up(now);
    let connect = remote_packets(l, ProtocolVersion::V311);
    assert_eq!(connect.len(), 1);
    l.remote_input(&[0x20, 2, 0, 0], b, now);
    assert_eq!(l.state(), LinkState::Up);
    connect
}

/// A local client publishing on the local broker.
fn local_publish(b: &mut Broker, topic: &str, payload: &[u8], qos: QoS, mid: u16, now: u64) {
    let id = ConnId { key: 9, gen: 1 };
    if !b.is_connected(id) {
        b.open(id, 0, "test", now);
        let mut buf = Vec::new();
        let c = Connect {
            version: ProtocolVersion::V311,
            clean_start: true,
            keep_alive: 0,
            properties: Properties::from_raw_unchecked(&[]),
            client_id: "pub",
            will: None,
            username: None,
            password: None,
        };
        encode(&Packet::Connect(c), ProtocolVersion::V311, &mut buf);
        b.receive(id, &buf, now);
    }
    let mut buf = Vec::new();
    encode_publish(
        &mut buf,
        ProtocolVersion::V311,
        false,
        qos,
        false,
        topic,
        mid,
        &[],
        &[],
        payload,
    );
    b.receive(id, &buf, now);
}

#[test]
fn topics_are_remapped_by_the_first_matching_line() {
    let maps: Vec<Mapping> = bridge().topics.iter().map(Mapping::new).collect();
    assert_eq!(remap_out(&maps, "out/a/b").as_deref(), Some("out/a/b"));
    assert_eq!(remap_out(&maps, "in/a"), None, "in lines do not go out");
    assert_eq!(remap_out(&maps, "loc/x/1").as_deref(), Some("rem/x/1"));
    assert_eq!(remap_in(&maps, "rem/x/1").as_deref(), Some("loc/x/1"));
    assert_eq!(remap_in(&maps, "in/z").as_deref(), Some("in/z"));
    assert_eq!(remap_in(&maps, "out/z"), None);
    // `""` as the pattern: the prefixes are whole topics.
    let t = topic(
        "",
        BridgeDirection::Both,
        0,
        Some("here/t"),
        Some("there/t"),
    );
    let maps = vec![Mapping::new(&t)];
    assert_eq!(remap_out(&maps, "here/t").as_deref(), Some("there/t"));
    assert_eq!(remap_in(&maps, "there/t").as_deref(), Some("here/t"));
    assert_eq!(remap_in(&maps, "there/t/x"), None);
}

#[test]
fn default_client_ids_and_notification_topic_are_mosquittos() {
    let (l, _) = link(bridge());
    assert_eq!(l.remote_clientid(), "host.up");
    assert_eq!(l.local_clientid(), "local.host.up");
    assert_eq!(l.notification_topic, "$SYS/broker/connection/host.up/state");
}

#[test]
fn backoff_stays_between_base_and_cap_and_constant_is_constant() {
    let (mut l, _) = link(bridge());
    let mut seen = Vec::new();
    for _ in 0..50 {
        let d = l.restart_delay();
        assert!((5_000..=30_000).contains(&d), "{d}");
        seen.push(d);
    }
    assert!(seen.iter().any(|&d| d > 15_000), "grows towards the cap");
    assert!(seen.windows(2).any(|w| w[0] != w[1]), "jittered");
    let mut b = bridge();
    b.restart_timeout = BridgeRestart::Constant(3);
    let (mut l, _) = link(b);
    assert_eq!(l.restart_delay(), 3000);
    assert_eq!(l.restart_delay(), 3000);
}

#[test]
fn connect_carries_the_bridge_bit_will_and_client_id() {
    let (mut l, mut b) = link(bridge());
    let t = l.poll_connect(&b, 0).unwrap();
    assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 1883));
    l.transport_up(0);
    let out = l.remote_output().to_vec();
    // Protocol level 4 with bit 7 set: a 3.1.1 bridge.
    assert_eq!(out.get(8), Some(&0x84));
    match decode(&out, ProtocolVersion::V311, 0) {
        Ok(Decoded::Packet(Packet::Connect(c), _)) => {
            assert_eq!(c.client_id, "host.up");
            assert!(!c.clean_start);
            assert_eq!(c.keep_alive, 10);
            let w = c.will.expect("notification will");
            assert_eq!(w.topic, "$SYS/broker/connection/host.up/state");
            assert_eq!(w.payload, b"0");
            assert!(w.retain);
        }
        other => panic!("{other:?}"),
    }
    l.remote_written(out.len());
    l.remote_input(&[0x20, 2, 0, 0], &mut b, 0);
    assert_eq!(l.state(), LinkState::Up);
}

#[test]
fn a_local_message_is_released_only_when_the_remote_acknowledges_it() {
    let (mut l, mut b) = link(bridge());
    l.start(&mut b, 0);
    bring_up(&mut l, &mut b, 0);
    let setup = remote_packets(&mut l, ProtocolVersion::V311);
    // UNSUBSCRIBE out/#, SUBSCRIBE in/#, SUBSCRIBE rem/x/#, PUBLISH state 1.
    assert_eq!(setup.len(), 4);
    local_publish(&mut b, "loc/x/1", b"hello", QoS::AtLeastOnce, 1, 10);
    l.local_ready(&mut b, 10);
    let sent = remote_packets(&mut l, ProtocolVersion::V311);
    assert_eq!(sent.len(), 1);
    let (t, p, q, _, mid) = publish_of(&sent[0]);
    assert_eq!((t.as_str(), p.as_slice(), q), ("rem/x/1", &b"hello"[..], 1));
    assert_eq!(
        b.queued_for("local.host.up"),
        1,
        "held until the remote acks"
    );
    // The remote goes away without acknowledging: the broker still holds it.
    l.remote_closed(&mut b, 20);
    assert_eq!(b.queued_for("local.host.up"), 1);
    // Back: the message is sent again, with DUP and its packet id, and
    // released by the PUBACK.
    let now = match l.state() {
        LinkState::Waiting(Some(t)) => t,
        s => panic!("{s:?}"),
    };
    bring_up(&mut l, &mut b, now);
    let again = remote_packets(&mut l, ProtocolVersion::V311);
    let resent: Vec<_> = again
        .iter()
        .filter(|p| p[0] >> 4 == packet_type::PUBLISH && publish_of(p).0 == "rem/x/1")
        .collect();
    assert_eq!(resent.len(), 1);
    assert!(dup_of(resent[0]));
    assert_eq!(publish_of(resent[0]).4, mid);
    let mut ack = Vec::new();
    encode_ack(&mut ack, packet_type::PUBACK, ProtocolVersion::V311, mid, 0);
    l.remote_input(&ack, &mut b, now + 1);
    assert_eq!(b.queued_for("local.host.up"), 0);
    assert_eq!(l.stats().sent, 1);
    assert_eq!(l.stats().reconnects, 1);
}

#[test]
fn remote_messages_reach_local_subscribers_remapped() {
    let (mut l, mut b) = link(bridge());
    l.start(&mut b, 0);
    bring_up(&mut l, &mut b, 0);
    remote_packets(&mut l, ProtocolVersion::V311);
    let mut buf = Vec::new();
    encode_publish(
        &mut buf,
        ProtocolVersion::V311,
        false,
        QoS::AtLeastOnce,
        true,
        "rem/x/7",
        5,
        &[],
        &[],
        b"cmd",
    );
    l.remote_input(&buf, &mut b, 5);
    // PUBACK to the remote.
    let acks = remote_packets(&mut l, ProtocolVersion::V311);
    assert_eq!(acks, vec![vec![0x40, 2, 0, 5]]);
    assert_eq!(l.stats().received, 1);
    // Retained locally under the local prefix: a new subscriber gets it.
    let id = ConnId { key: 9, gen: 1 };
    local_publish(&mut b, "other", b"", QoS::AtMostOnce, 0, 6);
    let mut sub = Vec::new();
    let raw = [&[0u8, 7][..], b"loc/x/#", &[1]].concat();
    encode(
        &Packet::Subscribe(crate::protocol::Subscribe {
            packet_id: 3,
            properties: Properties::from_raw_unchecked(&[]),
            filters: SubscribeFilters::from_raw(&raw),
        }),
        ProtocolVersion::V311,
        &mut sub,
    );
    b.receive(id, &sub, 7);
    let out = b.outbox(id).to_vec();
    let found = out.windows(7).any(|w| w == b"loc/x/7");
    assert!(found, "retained message under loc/x/7");
}

#[test]
fn no_connack_in_time_drops_and_fails_over_to_the_next_address() {
    let (mut l, mut b) = link(bridge());
    l.poll_connect(&b, 0).unwrap();
    l.transport_up(0);
    l.tick(&mut b, 9_999);
    assert!(!l.wants_drop());
    l.tick(&mut b, 10_000);
    assert!(l.wants_drop(), "no CONNACK within the keepalive");
    l.remote_closed(&mut b, 10_000);
    let next = match l.state() {
        LinkState::Waiting(Some(t)) => t,
        s => panic!("{s:?}"),
    };
    assert!((15_000..=25_000).contains(&next), "{next}");
    assert!(l.poll_connect(&b, next - 1).is_none());
    let t = l.poll_connect(&b, next).unwrap();
    assert_eq!(t.host, "127.0.0.2", "failover to the second address");
}

#[test]
fn a_silent_remote_is_detected_by_keepalive() {
    let (mut l, mut b) = link(bridge());
    l.start(&mut b, 0);
    bring_up(&mut l, &mut b, 0);
    remote_packets(&mut l, ProtocolVersion::V311);
    l.tick(&mut b, 10_000);
    let ping = remote_packets(&mut l, ProtocolVersion::V311);
    assert_eq!(ping, vec![vec![0xC0, 0]]);
    assert!(!l.wants_drop());
    l.tick(&mut b, 20_000);
    assert!(l.wants_drop(), "no PINGRESP");
}

#[test]
fn a_remote_that_never_acknowledges_is_dropped_even_if_it_answers_pings() {
    let (mut l, mut b) = link(bridge());
    l.start(&mut b, 0);
    bring_up(&mut l, &mut b, 0);
    remote_packets(&mut l, ProtocolVersion::V311);
    local_publish(&mut b, "out/1", b"x", QoS::AtLeastOnce, 1, 0);
    l.local_ready(&mut b, 0);
    let mut t = 0;
    while !l.wants_drop() && t < 60_000 {
        t += 1_000;
        l.tick(&mut b, t);
        l.remote_input(&[0xD0, 0], &mut b, t);
        remote_packets(&mut l, ProtocolVersion::V311);
    }
    assert!(l.wants_drop());
    assert!((20_000..=21_000).contains(&t), "{t}");
}

#[test]
fn once_does_not_restart_and_lazy_waits_for_the_threshold() {
    let mut c = bridge();
    c.start_type = BridgeStartType::Once;
    let (mut l, mut b) = link(c);
    l.poll_connect(&b, 0).unwrap();
    l.connect_failed(&mut b, "refused", 1);
    assert_eq!(l.state(), LinkState::Waiting(None));
    assert!(l.poll_connect(&b, 1_000_000).is_none());

    let mut c = bridge();
    c.start_type = BridgeStartType::Lazy;
    c.threshold = 2;
    let (mut l, mut b) = link(c);
    assert!(l.poll_connect(&b, 0).is_none(), "lazy: nothing queued");
    // The local half's session exists (it was up once) and collects.
    l.state = LinkState::Waiting(Some(0));
    l.start(&mut b, 0);
    bring_up(&mut l, &mut b, 0);
    l.remote_closed(&mut b, 1);
    assert_eq!(l.state(), LinkState::Waiting(None));
    local_publish(&mut b, "out/1", b"1", QoS::AtLeastOnce, 1, 2);
    assert!(l.poll_connect(&b, 3).is_none(), "1 queued, threshold 2");
    local_publish(&mut b, "out/2", b"2", QoS::AtLeastOnce, 2, 4);
    assert!(l.poll_connect(&b, 5).is_some(), "threshold reached");
}

#[test]
fn lazy_link_disconnects_when_idle() {
    let mut c = bridge();
    c.start_type = BridgeStartType::Lazy;
    c.idle_timeout = 30;
    c.notifications = false;
    let (mut l, mut b) = link(c);
    l.state = LinkState::Waiting(Some(0));
    l.start(&mut b, 0);
    bring_up(&mut l, &mut b, 0);
    remote_packets(&mut l, ProtocolVersion::V311);
    l.tick(&mut b, 29_000);
    l.remote_input(&[0xD0, 0], &mut b, 29_000);
    assert!(!l.wants_drop());
    l.tick(&mut b, 30_000);
    assert!(l.wants_drop(), "idle for idle_timeout");
}

#[test]
fn v5_remote_subscriptions_use_no_local_and_retain_as_published() {
    let mut c = bridge();
    c.protocol_version = BridgeProtocol::Mqtt50;
    let (mut l, mut b) = link(c);
    l.poll_connect(&b, 0).unwrap();
    l.transport_up(0);
    let out = l.remote_output().to_vec();
    assert_eq!(out.get(8), Some(&5), "no bridge bit on MQTT 5");
    l.remote_written(out.len());
    // v5 CONNACK: flags, reason, no properties.
    l.remote_input(&[0x20, 3, 0, 0, 0], &mut b, 0);
    assert_eq!(l.state(), LinkState::Up);
    let pk = remote_packets(&mut l, ProtocolVersion::V5);
    let subs: Vec<_> = pk
        .iter()
        .filter(|p| p[0] >> 4 == packet_type::SUBSCRIBE)
        .collect();
    assert_eq!(subs.len(), 2);
    for s in subs {
        let opts = *s.last().unwrap();
        assert_eq!(opts & 0x0C, 0x0C, "no local + retain as published");
    }
}

#[test]
fn messages_are_queued_before_the_remote_was_ever_reached() {
    let (mut l, mut b) = link(bridge());
    l.start(&mut b, 0);
    local_publish(&mut b, "out/1", b"1", QoS::AtLeastOnce, 1, 1);
    local_publish(&mut b, "out/2", b"0", QoS::AtMostOnce, 0, 1);
    local_publish(&mut b, "elsewhere", b"x", QoS::AtLeastOnce, 2, 1);
    l.local_ready(&mut b, 1);
    assert_eq!(
        b.queued_for("local.host.up"),
        1,
        "QoS 1 on an out topic only"
    );
    bring_up(&mut l, &mut b, 5);
    let sent: Vec<_> = remote_packets(&mut l, ProtocolVersion::V311)
        .iter()
        .filter(|p| p[0] >> 4 == packet_type::PUBLISH)
        .map(|p| publish_of(p))
        .filter(|p| p.0 == "out/1")
        .collect();
    assert_eq!(sent.len(), 1);
}

#[test]
fn local_cleansession_true_keeps_nothing_while_the_link_is_down() {
    let mut c = bridge();
    c.cleansession = true;
    let (mut l, mut b) = link(c);
    l.start(&mut b, 0);
    local_publish(&mut b, "out/1", b"1", QoS::AtLeastOnce, 1, 1);
    l.local_ready(&mut b, 1);
    assert_eq!(b.queued_for("local.host.up"), 0, "released, not queued");
    assert_eq!(l.stats().dropped, 1);
}

#[test]
fn a_ping_from_the_remote_is_answered() {
    let (mut l, mut b) = link(bridge());
    l.start(&mut b, 0);
    bring_up(&mut l, &mut b, 0);
    remote_packets(&mut l, ProtocolVersion::V311);
    l.remote_input(&[0xC0, 0], &mut b, 1);
    assert!(!l.wants_drop());
    assert_eq!(
        remote_packets(&mut l, ProtocolVersion::V311),
        vec![vec![0xD0, 0]]
    );
}

/// The events of connect, refusal, backoff and a lost link, in order, on
/// the fake clock: what `net` words as Mosquitto's log lines.
#[test]
fn events_of_connect_fail_backoff_and_loss() {
    let mut b = bridge();
    b.restart_timeout = BridgeRestart::Constant(3);
    b.topics.truncate(1);
    let (mut l, mut br) = link(b);
    l.start(&mut br, 0);
    let name = || "up".to_string();
    let cid = || "local.host.up".to_string();
    assert_eq!(
        l.take_events(),
        vec![LinkEvent::LocalSubscribe {
            client_id: cid(),
            topic: "out/#".into()
        }]
    );
    assert!(l.poll_connect(&br, 0).is_some());
    l.connect_failed(&mut br, "Connection refused", 10);
    assert_eq!(
        l.take_events(),
        vec![
            LinkEvent::Connecting {
                name: name(),
                host: "127.0.0.1".into(),
                port: 1883
            },
            LinkEvent::ConnectFailed {
                name: name(),
                why: "Connection refused".into()
            },
            LinkEvent::Retry {
                name: name(),
                delay_ms: Some(3000)
            },
        ]
    );
    // Nothing is due before the delay; then the next address.
    assert!(l.poll_connect(&br, 3009).is_none());
    assert!(l.take_events().is_empty());
    bring_up(&mut l, &mut br, 3010);
    assert_eq!(
        l.take_events().first(),
        Some(&LinkEvent::Connecting {
            name: name(),
            host: "127.0.0.2".into(),
            port: 1884
        })
    );
    l.remote_closed(&mut br, 5000);
    assert_eq!(
        l.take_events(),
        vec![
            LinkEvent::Lost {
                name: name(),
                client_id: cid()
            },
            LinkEvent::Retry {
                name: name(),
                delay_ms: Some(3000)
            },
        ]
    );
}

/// With `round_robin false`, a link up on a secondary address tests the
/// primary every 5 s (Mosquitto 2.0's `primary_retry`), and once the primary
/// accepts a connection, drops the secondary and reconnects to the primary
/// after the restart delay. With `round_robin true` it stays.
#[test]
fn back_to_the_primary_unless_round_robin() {
    for round_robin in [false, true] {
        let mut b = bridge();
        b.round_robin = round_robin;
        b.restart_timeout = BridgeRestart::Constant(1);
        let (mut l, mut br) = link(b);
        l.start(&mut br, 0);
        assert!(l.poll_connect(&br, 0).is_some());
        l.connect_failed(&mut br, "Connection refused", 0);
        let connect = bring_up(&mut l, &mut br, 1000);
        assert_eq!(connect.len(), 1);
        assert!(l.poll_probe(1000).is_none());
        if round_robin {
            assert!(l.poll_probe(1_000_000).is_none(), "round robin stays");
            assert_eq!(l.next_deadline().filter(|&d| d < 6000 + 1), None);
            continue;
        }
        assert_eq!(l.next_deadline(), Some(6000));
        assert!(l.poll_probe(5999).is_none());
        let primary = Target {
            host: "127.0.0.1".into(),
            port: 1883,
        };
        assert_eq!(l.poll_probe(6000), Some(primary.clone()));
        assert!(l.poll_probe(6000).is_none(), "one probe at a time");
        // Still down: try again 5 s later, the link stays up meanwhile.
        l.probe_result(false, 6100);
        assert!(!l.wants_drop());
        assert_eq!(l.state(), LinkState::Up);
        assert!(l.poll_probe(11_099).is_none());
        assert_eq!(l.poll_probe(11_100), Some(primary.clone()));
        l.take_events();
        l.probe_result(true, 11_200);
        assert!(l.wants_drop());
        assert_eq!(
            l.take_events(),
            vec![LinkEvent::BackToPrimary {
                name: "up".into(),
                host: "127.0.0.1".into(),
                port: 1883
            }]
        );
        l.remote_closed(&mut br, 11_200);
        assert!(l.poll_connect(&br, 12_199).is_none());
        assert_eq!(l.poll_connect(&br, 12_200), Some(primary));
    }
}
