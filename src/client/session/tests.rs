//! Unit tests for the session state machine: bytes in, bytes and events
//! out, with a fake clock.

use super::*;
use crate::protocol::Property;

fn t0() -> Instant {
    Instant::now()
}

fn cfg(version: ProtocolVersion) -> SessionConfig {
    let mut c = SessionConfig::new(version);
    c.debug = true;
    c
}

/// Connect and accept: a session in `Connected` with its output cleared.
fn connected(c: SessionConfig, now: Instant) -> Session {
    let v5 = c.version.is_v5();
    let mut s = Session::new(c);
    s.connect(now);
    s.take_output();
    if v5 {
        s.feed(&[0x20, 3, 0, 0, 0]);
    } else {
        s.feed(&[0x20, 2, 0, 0]);
    }
    let mut got_connack = false;
    while let Some(e) = s.next_event(now).unwrap() {
        got_connack |= matches!(e, Event::Connack { code: 0, .. });
    }
    assert!(got_connack);
    assert_eq!(s.state(), State::Connected);
    s
}

fn events(s: &mut Session, now: Instant) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = s.next_event(now).unwrap() {
        v.push(e);
    }
    v
}

fn logs(ev: &[Event]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Log(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

fn without_logs(ev: Vec<Event>) -> Vec<Event> {
    ev.into_iter()
        .filter(|e| !matches!(e, Event::Log(_)))
        .collect()
}

#[test]
fn connect_bytes_v311_with_everything() {
    let mut c = cfg(ProtocolVersion::V311);
    c.client_id = Some("id".into());
    c.clean_start = false;
    c.keep_alive = 10;
    c.username = Some("u".into());
    c.password = Some(b"p".to_vec());
    c.will = Some(WillConfig {
        topic: "w".into(),
        payload: b"bye".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Vec::new(),
    });
    let mut s = Session::new(c);
    s.connect(t0());
    assert_eq!(
        s.take_output(),
        [
            0x10, 28, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xEC, 0, 10, 0, 2, b'i', b'd', 0, 1, b'w',
            0, 3, b'b', b'y', b'e', 0, 1, b'u', 0, 1, b'p'
        ]
    );
    assert_eq!(s.state(), State::Connecting);
    assert_eq!(logs(&s.drain_events()), ["Client id sending CONNECT"]);
}

#[test]
fn connect_v5_adds_receive_maximum_like_libmosquitto() {
    let mut s = Session::new(cfg(ProtocolVersion::V5));
    s.connect(t0());
    // Same bytes mosquitto_pub -V 5 sends: properties 21 00 14, empty id.
    assert_eq!(
        s.take_output(),
        [0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 3, 0x21, 0, 20, 0, 0]
    );
    let mut c = cfg(ProtocolVersion::V5);
    c.connect_properties = vec![0x21, 0, 3];
    let mut s = Session::new(c);
    s.connect(t0());
    let out = s.take_output();
    assert_eq!(out.iter().filter(|&&b| b == 0x21).count(), 1, "{out:?}");
}

#[test]
fn v31_gets_a_generated_id() {
    let mut s = Session::new(cfg(ProtocolVersion::V31));
    s.connect(t0());
    let id = s.client_id().unwrap().to_string();
    assert_eq!(id.len(), 23);
    assert!(id.starts_with("mosq-"));
    assert!(id[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
    let out = s.take_output();
    assert_eq!(&out[2..10], b"\0\x06MQIsdp");
}

#[test]
fn connack_refused_and_assigned_id() {
    let now = t0();
    let mut s = Session::new(cfg(ProtocolVersion::V311));
    s.connect(now);
    s.take_output();
    s.feed(&[0x20, 2, 0, 5, 0x30]);
    let ev = events(&mut s, now);
    assert_eq!(
        ev,
        [
            Event::Log("Client (null) sending CONNECT".into()),
            Event::Log("Client (null) received CONNACK (5)".into()),
            Event::Connack {
                code: 5,
                session_present: false,
                properties: vec![]
            }
        ]
    );
    assert_eq!(s.state(), State::Refused);
    // mosquitto_sub still says goodbye.
    s.disconnect(0, &[], now);
    assert_eq!(s.take_output(), [0xE0, 0]);
    assert_eq!(s.state(), State::Closed);

    let mut s = Session::new(cfg(ProtocolVersion::V5));
    s.connect(now);
    let mut w = PropertyWriter::new();
    w.push(Property::AssignedClientIdentifier("auto-1"));
    w.push(Property::ReceiveMaximum(1));
    let mut connack = vec![0x20, 0, 0, 0, w.len() as u8];
    connack.extend_from_slice(w.as_bytes());
    connack[1] = (connack.len() - 2) as u8;
    s.feed(&connack);
    let ev = events(&mut s, now);
    assert_eq!(
        logs(&ev),
        [
            "Client (null) sending CONNECT",
            "Client auto-1 received CONNACK (0)"
        ]
    );
    assert_eq!(s.client_id(), Some("auto-1"));
    // The server's Receive Maximum of 1 closes the window after one publish.
    s.publish("t", b"1", QoS::AtLeastOnce, false, &[], now)
        .unwrap();
    assert!(!s.window_open());
}

#[test]
fn v3_connack_answering_v5_reads_as_unsupported_version() {
    let now = t0();
    let mut s = Session::new(cfg(ProtocolVersion::V5));
    s.connect(now);
    s.feed(&[0x20, 2, 0, 1]);
    let ev = without_logs(events(&mut s, now));
    assert_eq!(
        ev,
        [Event::Connack {
            code: 0x84,
            session_present: false,
            properties: vec![]
        }]
    );
}

#[test]
fn qos1_and_qos2_publish_handshakes() {
    let now = t0();
    let mut s = connected(cfg(ProtocolVersion::V311), now);
    let m1 = s
        .publish("a/b", b"hi", QoS::AtLeastOnce, true, &[], now)
        .unwrap();
    assert_eq!(m1, 1);
    assert_eq!(
        s.take_output(),
        [0x33, 9, 0, 3, b'a', b'/', b'b', 0, 1, b'h', b'i']
    );
    s.feed(&[0x40, 2, 0, 1]);
    let ev = events(&mut s, now);
    assert_eq!(
        logs(&ev),
        [
            "Client (null) sending PUBLISH (d0, q1, r1, m1, 'a/b', ... (2 bytes))",
            "Client (null) received PUBACK (Mid: 1, RC:0)"
        ]
    );
    assert_eq!(
        without_logs(ev),
        [Event::Published {
            mid: 1,
            reason: 0,
            properties: vec![]
        }]
    );

    let m2 = s
        .publish("t", b"", QoS::ExactlyOnce, false, &[], now)
        .unwrap();
    assert_eq!(m2, 2);
    s.take_output();
    s.feed(&[0x50, 2, 0, 2]);
    let ev = events(&mut s, now);
    assert!(without_logs(ev.clone()).is_empty());
    assert_eq!(s.take_output(), [0x62, 2, 0, 2]);
    s.feed(&[0x70, 2, 0, 2]);
    let ev2 = events(&mut s, now);
    assert_eq!(
        logs(&ev).into_iter().chain(logs(&ev2)).collect::<Vec<_>>(),
        [
            "Client (null) sending PUBLISH (d0, q2, r0, m2, 't', ... (0 bytes))",
            "Client (null) received PUBREC (Mid: 2)",
            "Client (null) sending PUBREL (m2)",
            "Client (null) received PUBCOMP (Mid: 2, RC:0)"
        ]
    );
    assert_eq!(s.pending_publishes(), 0);
    // QoS 0 still gets an id and an immediate Published.
    let m3 = s
        .publish("t", b"x", QoS::AtMostOnce, false, &[], now)
        .unwrap();
    assert_eq!(m3, 3);
    assert_eq!(s.take_output(), [0x30, 4, 0, 1, b't', b'x']);
}

#[test]
fn inflight_window_queues_and_drains_in_order() {
    let now = t0();
    let mut c = cfg(ProtocolVersion::V311);
    c.max_inflight = 2;
    c.debug = false;
    let mut s = connected(c, now);
    for i in 0..5u8 {
        s.publish("t", &[i], QoS::AtLeastOnce, false, &[], now)
            .unwrap();
    }
    assert_eq!(s.pending_publishes(), 5);
    let out = s.take_output();
    // Only two PUBLISH packets went out.
    assert_eq!(out.iter().filter(|&&b| b == 0x32).count(), 2);
    s.feed(&[0x40, 2, 0, 1, 0x40, 2, 0, 2]);
    let ev = events(&mut s, now);
    assert_eq!(ev.len(), 2);
    let out = s.take_output();
    // The next two, ids 3 and 4, in order.
    assert_eq!(
        out,
        [0x32, 6, 0, 1, b't', 0, 3, 2, 0x32, 6, 0, 1, b't', 0, 4, 3]
    );
    assert_eq!(s.pending_publishes(), 3);
}

#[test]
fn incoming_qos1_and_qos2() {
    let now = t0();
    let mut s = connected(cfg(ProtocolVersion::V311), now);
    // QoS 1 "a" = "x", id 7: PUBACK first, then the message.
    s.feed(&[0x32, 6, 0, 1, b'a', 0, 7, b'x']);
    let ev = events(&mut s, now);
    assert_eq!(
        logs(&ev),
        [
            "Client (null) received PUBLISH (d0, q1, r0, m7, 'a', ... (1 bytes))",
            "Client (null) sending PUBACK (m7, rc0)"
        ]
    );
    assert_eq!(s.take_output(), [0x40, 2, 0, 7]);
    let msgs: Vec<_> = without_logs(ev);
    assert!(matches!(&msgs[..], [Event::Message(m)] if m.mid == 7 && m.payload == b"x"));

    // QoS 2 id 9, sent twice (the second with DUP): delivered once, on PUBREL.
    s.feed(&[
        0x34, 6, 0, 1, b'b', 0, 9, b'y', 0x3C, 6, 0, 1, b'b', 0, 9, b'y',
    ]);
    let ev = events(&mut s, now);
    assert!(without_logs(ev).is_empty());
    assert_eq!(s.take_output(), [0x50, 2, 0, 9, 0x50, 2, 0, 9]);
    s.feed(&[0x62, 2, 0, 9]);
    let ev = events(&mut s, now);
    assert_eq!(
        logs(&ev),
        [
            "Client (null) received PUBREL (Mid: 9)",
            "Client (null) sending PUBCOMP (m9)"
        ]
    );
    assert_eq!(s.take_output(), [0x70, 2, 0, 9]);
    let msgs = without_logs(ev);
    assert!(
        matches!(&msgs[..], [Event::Message(m)] if m.topic == "b" && m.qos == QoS::ExactlyOnce)
    );
}

#[test]
fn subscribe_and_unsubscribe() {
    let now = t0();
    let mut s = connected(cfg(ProtocolVersion::V5), now);
    let mid = s
        .subscribe(&[("a/#", 0x21), ("b", 0)], &[0x0B, 5], now)
        .unwrap();
    assert_eq!(mid, 1);
    assert_eq!(
        s.take_output(),
        [0x82, 15, 0, 1, 2, 0x0B, 5, 0, 3, b'a', b'/', b'#', 0x21, 0, 1, b'b', 0]
    );
    s.feed(&[0x90, 5, 0, 1, 0, 1, 0x87]);
    let ev = events(&mut s, now);
    assert_eq!(
        logs(&ev),
        [
            "Client (null) sending SUBSCRIBE (Mid: 1, Topic: a/#, QoS: 1, Options: 0x20)",
            "Client (null) sending SUBSCRIBE (Mid: 1, Topic: b, QoS: 0, Options: 0x00)",
            "Client (null) received SUBACK"
        ]
    );
    assert!(without_logs(ev).contains(&Event::Subscribed {
        mid: 1,
        codes: vec![1, 0x87]
    }));
    let mid = s.unsubscribe(&["a/#"], &[], now).unwrap();
    assert_eq!(s.take_output(), [0xA2, 8, 0, 2, 0, 0, 3, b'a', b'/', b'#']);
    s.feed(&[0xB0, 4, 0, mid as u8, 0, 0]);
    let ev = without_logs(events(&mut s, now));
    assert_eq!(
        ev,
        [Event::Unsubscribed {
            mid: 2,
            codes: vec![0]
        }]
    );
}

#[test]
fn keepalive_ping_and_timeout() {
    let now = t0();
    let mut c = cfg(ProtocolVersion::V311);
    c.keep_alive = 10;
    let mut s = connected(c, now);
    let deadline = s.next_deadline().unwrap();
    assert!(deadline <= now + Duration::from_secs(10));
    s.tick(now + Duration::from_secs(5)).unwrap();
    assert!(!s.has_output());
    let later = now + Duration::from_secs(11);
    s.tick(later).unwrap();
    assert_eq!(s.take_output(), [0xC0, 0]);
    // Answered: no timeout.
    s.feed(&[0xD0, 0]);
    let ev = events(&mut s, later);
    assert!(logs(&ev).contains(&"Client (null) received PINGRESP".to_string()));
    s.tick(later + Duration::from_secs(11)).unwrap();
    assert_eq!(s.take_output(), [0xC0, 0]);
    // Not answered within another keepalive: give up.
    assert_eq!(
        s.tick(later + Duration::from_secs(22)),
        Err(SessionError::KeepaliveTimeout)
    );
}

#[test]
fn inbound_topic_alias() {
    let now = t0();
    let mut s = connected(cfg(ProtocolVersion::V5), now);
    // "t/x" with alias 3, then empty topic with alias 3.
    s.feed(&[0x30, 10, 0, 3, b't', b'/', b'x', 3, 0x23, 0, 3, b'1']);
    s.feed(&[0x30, 7, 0, 0, 3, 0x23, 0, 3, b'2']);
    let ev = without_logs(events(&mut s, now));
    let topics: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some((m.topic.clone(), m.payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        topics,
        [
            ("t/x".to_string(), b"1".to_vec()),
            ("t/x".to_string(), b"2".to_vec())
        ]
    );
    // An alias never set is a protocol error.
    s.feed(&[0x30, 6, 0, 0, 3, 0x23, 0, 4]);
    assert!(matches!(s.next_event(now), Err(SessionError::Protocol(_))));
}

#[test]
fn packets_after_disconnect_are_not_read() {
    let now = t0();
    let mut s = connected(cfg(ProtocolVersion::V311), now);
    s.subscribe(&[("a", 1)], &[], now).unwrap();
    s.take_output();
    // SUBACK and two QoS 1 messages arrive in one read.
    s.feed(&[
        0x90, 3, 0, 1, 1, 0x32, 5, 0, 1, b'a', 0, 1, 0x32, 5, 0, 1, b'a', 0, 2,
    ]);
    let mut saw = Vec::new();
    while let Some(e) = s.next_event(now).unwrap() {
        if let Event::Subscribed { .. } = e {
            // Like mosquitto_sub -E: disconnect as soon as SUBACK arrives.
            s.disconnect(0, &[], now);
        }
        saw.push(e);
    }
    assert!(!saw.iter().any(|e| matches!(e, Event::Message(_))));
    // Nothing was acknowledged: only DISCONNECT went out.
    assert_eq!(s.take_output(), [0xE0, 0]);
}

#[test]
fn resume_resends_with_dup_when_session_present() {
    let now = t0();
    let mut c = cfg(ProtocolVersion::V311);
    c.debug = false;
    c.clean_start = false;
    c.client_id = Some("c".into());
    let mut s = connected(c, now);
    s.publish("t", b"1", QoS::AtLeastOnce, false, &[], now)
        .unwrap();
    s.take_output();
    s.connection_lost();
    s.connect(now);
    s.take_output();
    s.feed(&[0x20, 2, 1, 0]);
    let ev = events(&mut s, now);
    assert!(matches!(
        &ev[..],
        [Event::Connack {
            session_present: true,
            ..
        }]
    ));
    assert_eq!(s.take_output(), [0x3A, 6, 0, 1, b't', 0, 1, b'1']);
}

#[test]
fn unexpected_and_malformed_packets_fail() {
    let now = t0();
    let mut s = connected(cfg(ProtocolVersion::V311), now);
    s.feed(&[0x10, 0]);
    assert!(matches!(s.next_event(now), Err(SessionError::Protocol(_))));
    assert_eq!(s.state(), State::Closed);
    // A truncated PUBACK (a 3-byte one is tolerated, as Mosquitto does).
    let mut s = connected(cfg(ProtocolVersion::V311), now);
    s.feed(&[0x40, 1, 0]);
    assert!(s.next_event(now).is_err());
    // A second CONNACK.
    let mut s = connected(cfg(ProtocolVersion::V311), now);
    s.feed(&[0x20, 2, 0, 0]);
    assert!(s.next_event(now).is_err());
}

#[test]
fn not_connected_refuses_operations() {
    let now = t0();
    let mut s = Session::new(cfg(ProtocolVersion::V311));
    assert_eq!(
        s.publish("t", b"", QoS::AtMostOnce, false, &[], now),
        Err(SessionError::NotConnected)
    );
    assert_eq!(
        s.subscribe(&[("t", 0)], &[], now),
        Err(SessionError::NotConnected)
    );
    s.disconnect(0, &[], now);
    assert!(!s.has_output());
}

#[test]
fn random_server_bytes_never_panic() {
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    let now = t0();
    for round in 0..400 {
        let v = match round % 3 {
            0 => ProtocolVersion::V31,
            1 => ProtocolVersion::V311,
            _ => ProtocolVersion::V5,
        };
        let mut c = cfg(v);
        c.debug = round % 2 == 0;
        let mut s = connected(c, now);
        let _ = s.publish("t", b"x", QoS::ExactlyOnce, false, &[], now);
        for _ in 0..20 {
            let len = (x % 16) as usize;
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Bias towards valid packet types and small lengths.
                b.push(if b.is_empty() {
                    (x as u8) & 0xF2
                } else {
                    (x as u8) % 8
                });
            }
            s.feed(&b);
            while let Ok(Some(_)) = s.next_event(now) {}
            let _ = s.tick(now + Duration::from_secs(x % 200));
            s.take_output();
        }
    }
}
