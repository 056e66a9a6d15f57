//! Core tests: the broker driven by bytes and a fake clock, no sockets.

use super::testkit::*;

#[test]
fn connect_gets_connack_without_session() {
    let mut h = H::new();
    let (_, ack) = h.connect_full("c1", true, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: false, code: 0 });
}

#[test]
fn mqtt31_connect_accepted() {
    let mut h = H::new();
    let (_, ack) = h.connect_full("c31", true, 60, None, ProtocolVersion::V31);
    assert_eq!(ack, Got::Connack { sp: false, code: 0 });
}

#[test]
fn empty_client_id_with_clean_session_is_assigned() {
    let mut h = H::new();
    let (id, ack) = h.connect_full("", true, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: false, code: 0 });
    let cid = h.b.conns.get(id).unwrap().client_id.to_string();
    assert!(cid.starts_with("auto-"), "{}", cid);
    assert_eq!(cid.len(), "auto-".len() + 36, "uuid-like: {}", cid);
}

#[test]
fn empty_client_id_without_clean_session_is_rejected() {
    let mut h = H::new();
    let (id, ack) = h.connect_full("", false, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: false, code: 2 });
    assert!(h.is_closed(id));
}

#[test]
fn empty_client_id_refused_when_not_allowed() {
    let mut cfg = BrokerConfig {
        sys_interval: 0,
        ..BrokerConfig::default()
    };
    cfg.listeners[0].allow_zero_length_clientid = false;
    let mut h = H::with(cfg);
    let (id, ack) = h.connect_full("", true, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: false, code: 2 });
    assert!(h.is_closed(id));
}

#[test]
fn anonymous_refused_when_not_allowed() {
    let mut cfg = BrokerConfig {
        sys_interval: 0,
        ..BrokerConfig::default()
    };
    cfg.listeners[0].allow_anonymous = false;
    let mut h = H::with(cfg);
    let (id, ack) = h.connect_full("anon", true, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: false, code: 5 });
    assert!(h.is_closed(id));
}

#[test]
fn first_packet_not_connect_closes() {
    let mut h = H::new();
    let id = h.open();
    h.raw(id, &[0xC0, 0x00]); // PINGREQ
    assert!(h.is_closed(id));
    assert!(h.recv(id).is_empty());
}

#[test]
fn garbage_closes_and_others_keep_working() {
    let mut h = H::new();
    let sub = h.connect("sub", true);
    h.subscribe(sub, "t", 0);
    let bad = h.open();
    h.raw(bad, &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]); // 5-byte remaining length
    assert!(h.is_closed(bad));
    let p = h.connect("pub", true);
    h.publish(p, "t", b"still here", 0, false, 0);
    assert_eq!(pub_of(&h.recv(sub)[0]).unwrap().1, b"still here");
}

#[test]
fn huge_length_claim_is_not_buffered_when_limited() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        max_packet_size: 1024,
        ..BrokerConfig::default()
    });
    let id = h.open();
    h.raw(id, &[0x10, 0xFF, 0xFF, 0xFF, 0x7F]);
    assert!(h.is_closed(id));
}

#[test]
fn unsupported_protocol_version_gets_connack_1() {
    let mut h = H::new();
    let id = h.open();
    // CONNECT "MQTT" level 9.
    h.raw(
        id,
        &[
            0x10, 0x0e, 0, 4, b'M', b'Q', b'T', b'T', 9, 0x02, 0, 60, 0, 2, b'c', b'1',
        ],
    );
    assert_eq!(h.recv(id), vec![Got::Connack { sp: false, code: 1 }]);
    assert!(h.is_closed(id));
}

#[test]
fn second_connect_is_protocol_error() {
    let mut h = H::new();
    let id = h.connect("c", true);
    h.send(
        id,
        Packet::Connect(Connect {
            version: V3,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::EMPTY,
            client_id: "c",
            will: None,
            username: None,
            password: None,
        }),
    );
    assert!(h.is_closed(id));
}

#[test]
fn qos0_qos1_qos2_delivery_and_downgrade() {
    let mut h = H::new();
    let s2 = h.connect("s2", true);
    let s1 = h.connect("s1", true);
    assert_eq!(h.subscribe(s2, "a/b", 2), vec![2]);
    assert_eq!(h.subscribe(s1, "a/b", 1), vec![1]);
    let p = h.connect("p", true);

    h.publish(p, "a/b", b"zero", 0, false, 0);
    assert!(h.recv(p).is_empty());
    assert_eq!(pub_of(&h.recv(s2)[0]).unwrap().2, 0);

    h.publish(p, "a/b", b"one", 1, false, 5);
    assert_eq!(h.recv(p), vec![Got::Puback(5)]);
    let g = h.recv(s2);
    let (_, payload, qos, _, _, pid) = pub_of(&g[0]).unwrap();
    assert_eq!((payload, qos), (&b"one"[..], 1));
    h.ack(s2, Packet::Puback, pid);

    h.publish(p, "a/b", b"two", 2, false, 6);
    assert_eq!(h.recv(p), vec![Got::Pubrec(6)]);
    h.ack(p, Packet::Pubrel, 6);
    assert_eq!(h.recv(p), vec![Got::Pubcomp(6)]);
    // QoS 2 subscriber: full handshake.
    let g = h.recv(s2);
    let (_, _, qos, _, _, pid) = pub_of(&g[0]).unwrap();
    assert_eq!(qos, 2);
    h.ack(s2, Packet::Pubrec, pid);
    assert_eq!(h.recv(s2), vec![Got::Pubrel(pid)]);
    h.ack(s2, Packet::Pubcomp, pid);
    assert!(h
        .b
        .sessions
        .iter()
        .all(|(_, s)| s.inflight.is_empty() || s.client_id.as_ref() == "s1"));
    // QoS 1 subscriber got the QoS 2 message downgraded.
    let g = h.recv(s1);
    let qs: Vec<u8> = g.iter().filter_map(pub_of).map(|p| p.2).collect();
    assert_eq!(qs, vec![0, 1, 1]);
}

#[test]
fn qos2_duplicate_is_not_delivered_twice() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "x", 2);
    let p = h.connect("p", true);
    h.publish(p, "x", b"once", 2, false, 9);
    h.send(
        p,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "x",
            packet_id: 9,
            properties: Properties::EMPTY,
            payload: b"once",
        }),
    );
    assert_eq!(h.recv(p), vec![Got::Pubrec(9), Got::Pubrec(9)]);
    h.ack(p, Packet::Pubrel, 9);
    assert_eq!(h.recv(p), vec![Got::Pubcomp(9)]);
    let n = h.recv(s).iter().filter(|g| pub_of(g).is_some()).count();
    assert_eq!(n, 1);
    // After release, the same packet id is a new message.
    h.publish(p, "x", b"again", 2, false, 9);
    h.ack(p, Packet::Pubrel, 9);
    assert_eq!(h.recv(s).iter().filter(|g| pub_of(g).is_some()).count(), 1);
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "a/#", 0);
    h.subscribe(s, "a/b", 2);
    h.subscribe(s, "+/b", 1);
    let p = h.connect("p", true);
    h.publish(p, "a/b", b"m", 2, false, 1);
    h.ack(p, Packet::Pubrel, 1);
    let pubs: Vec<_> = h
        .recv(s)
        .iter()
        .filter_map(|g| pub_of(g).map(|p| p.2))
        .collect();
    assert_eq!(pubs, vec![2]);
}

#[test]
fn retained_store_replace_delete_and_wildcards() {
    let mut h = H::new();
    let p = h.connect("p", true);
    h.publish(p, "home/temp", b"20", 0, true, 0);
    h.publish(p, "home/temp", b"21", 1, true, 1);
    h.recv(p);
    let s = h.connect("s", true);
    h.subscribe(s, "home/+", 1);
    let g = h.recv(s);
    let (t, pl, q, r, _, _) = pub_of(&g[0]).unwrap();
    assert_eq!((t, pl, q, r), ("home/temp", &b"21"[..], 1, true));
    // Live messages to an existing subscriber carry retain=0 (3.1.1).
    h.publish(p, "home/temp", b"22", 0, true, 0);
    assert!(!pub_of(&h.recv(s)[0]).unwrap().3);
    // Empty payload deletes.
    h.publish(p, "home/temp", b"", 0, true, 0);
    h.recv(s);
    let s2 = h.connect("s2", true);
    h.subscribe(s2, "#", 0);
    assert!(h.recv(s2).is_empty());
    assert_eq!(h.b.router.retained.len(), 0);
}

#[test]
fn hash_does_not_match_sys_topics() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 10,
        ..BrokerConfig::default()
    });
    h.advance(1000);
    let s = h.connect("s", true);
    h.subscribe(s, "#", 0);
    assert!(h.recv(s).is_empty(), "no $SYS through #");
    h.subscribe(s, "$SYS/broker/version", 0);
    let g = h.recv(s);
    let (t, pl, _, r, _, _) = pub_of(&g[0]).unwrap();
    assert_eq!(t, "$SYS/broker/version");
    assert!(r);
    assert!(String::from_utf8_lossy(pl).starts_with("midge version"));
}

#[test]
fn sys_values_published_every_interval() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 10,
        ..BrokerConfig::default()
    });
    let s = h.connect("s", true);
    h.subscribe(s, "$SYS/broker/uptime", 0);
    h.recv(s);
    h.advance(10_500);
    let g = h.recv(s);
    let ups: Vec<String> = g
        .iter()
        .filter_map(pub_of)
        .map(|p| String::from_utf8_lossy(p.1).to_string())
        .collect();
    assert!(!ups.is_empty());
    assert!(ups.last().unwrap().ends_with(" seconds"));
    h.subscribe(s, "$SYS/broker/clients/connected", 0);
    let g = h.recv(s);
    assert_eq!(pub_of(&g[0]).unwrap().1, b"1");
}

#[test]
fn will_sent_on_connection_loss_not_after_disconnect() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "will/#", 0);
    let (a, _) = h.connect_full("a", true, 60, Some(will("will/a", b"gone")), V3);
    h.b.connection_lost(a, h.now);
    h.settle();
    assert_eq!(pub_of(&h.recv(s)[0]).unwrap().1, b"gone");

    let (b, _) = h.connect_full("b", true, 60, Some(will("will/b", b"gone")), V3);
    h.disconnect(b);
    assert!(h.is_closed(b));
    h.b.connection_lost(b, h.now);
    assert!(h.recv(s).is_empty());
}

#[test]
fn will_sent_on_protocol_error() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "w", 0);
    let (a, _) = h.connect_full("a", true, 60, Some(will("w", b"bad")), V3);
    h.raw(a, &[0x20, 0x02, 0, 0]); // CONNACK from a client
    assert!(h.is_closed(a));
    assert_eq!(pub_of(&h.recv(s)[0]).unwrap().1, b"bad");
}

#[test]
fn keepalive_timeout_closes_and_sends_will() {
    let mut h = H::new();
    let s = h.connect_full("s", true, 0, None, V3).0;
    h.subscribe(s, "w", 0);
    let (a, _) = h.connect_full("a", true, 2, Some(will("w", b"timeout")), V3);
    h.advance(2_500);
    assert!(!h.is_closed(a), "not before 1.5 x keepalive");
    h.send(a, Packet::Pingreq);
    assert_eq!(h.recv(a), vec![Got::Pingresp]);
    h.advance(2_500);
    assert!(!h.is_closed(a), "activity resets the timer");
    h.advance(1_000);
    assert!(h.is_closed(a));
    assert_eq!(pub_of(&h.recv(s)[0]).unwrap().1, b"timeout");
}

#[test]
fn connect_timeout_drops_silent_connections() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let mut h = H::new();
    let sink = seen.clone();
    h.b.set_event_sink(Box::new(move |e| sink.borrow_mut().push(format!("{e:?}"))));
    let id = h.open();
    h.raw(id, &[0x10, 0x10, 0x00]); // half a CONNECT
    h.advance(5_000);
    assert!(!h.is_closed(id));
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
    h.advance(20_000);
    assert!(h.is_closed(id));
    // Logged as Mosquitto logs it: "Client <unknown> has exceeded timeout".
    assert_eq!(
        *seen.borrow(),
        ["KeepaliveTimeout { client_id: \"<unknown>\" }"]
    );
}

#[test]
fn takeover_closes_first_connection() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "w", 0);
    // Persistent old session and persistent new one: will discarded.
    let (a1, _) = h.connect_full("dup", false, 60, Some(will("w", b"will1")), V3);
    let (a2, ack) = h.connect_full("dup", false, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: true, code: 0 });
    assert!(h.is_closed(a1));
    assert!(!h.is_closed(a2));
    assert!(h.recv(s).is_empty());
    // Clean new connection: the old will is sent (Mosquitto 2.0).
    let (a3, _) = h.connect_full("dup2", false, 60, Some(will("w", b"will2")), V3);
    let (_, ack) = h.connect_full("dup2", true, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: false, code: 0 });
    assert!(h.is_closed(a3));
    assert_eq!(pub_of(&h.recv(s)[0]).unwrap().1, b"will2");
}

#[test]
fn persistent_session_keeps_subscriptions_and_queues() {
    let mut h = H::new();
    let s = h.connect("ps", false);
    h.subscribe(s, "q/#", 1);
    h.disconnect(s);
    h.release_closed();
    let p = h.connect("p", true);
    h.publish(p, "q/1", b"m1", 1, false, 1);
    h.publish(p, "q/2", b"m2", 2, false, 2);
    h.ack(p, Packet::Pubrel, 2);
    h.publish(p, "q/3", b"m0", 0, false, 0);
    let (s, ack) = h.connect_full("ps", false, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: true, code: 0 });
    let got: Vec<_> = h
        .recv(s)
        .iter()
        .filter_map(|g| pub_of(g).map(|p| (p.1.to_vec(), p.2)))
        .collect();
    assert_eq!(got, vec![(b"m1".to_vec(), 1), (b"m2".to_vec(), 1)]);
    // Clean session discards it.
    h.disconnect(s);
    let (_, ack) = h.connect_full("ps", true, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: false, code: 0 });
}

#[test]
fn queue_qos0_messages_when_enabled() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        queue_qos0_messages: true,
        ..BrokerConfig::default()
    });
    let s = h.connect("ps", false);
    h.subscribe(s, "q", 0);
    h.disconnect(s);
    let p = h.connect("p", true);
    h.publish(p, "q", b"zero", 0, false, 0);
    let (s, _) = h.connect_full("ps", false, 60, None, V3);
    assert_eq!(pub_of(&h.recv(s)[0]).unwrap().1, b"zero");
}

#[test]
fn max_queued_messages_drops_excess() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        max_queued_messages: 3,
        ..BrokerConfig::default()
    });
    let s = h.connect("ps", false);
    h.subscribe(s, "q", 1);
    h.disconnect(s);
    let p = h.connect("p", true);
    for i in 0..10u16 {
        h.publish(p, "q", format!("{}", i).as_bytes(), 1, false, i + 1);
    }
    let (s, _) = h.connect_full("ps", false, 60, None, V3);
    let got: Vec<Vec<u8>> = h
        .recv(s)
        .iter()
        .filter_map(|g| pub_of(g).map(|p| p.1.to_vec()))
        .collect();
    assert_eq!(got, vec![b"0".to_vec(), b"1".to_vec(), b"2".to_vec()]);
}

#[test]
fn inflight_window_holds_the_rest_in_order() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        max_inflight_messages: 2,
        ..BrokerConfig::default()
    });
    let s = h.connect("s", true);
    h.subscribe(s, "w", 1);
    let p = h.connect("p", true);
    for i in 0..10u16 {
        h.publish(p, "w", &[b'0' + i as u8], 1, false, i + 1);
    }
    let mut seen = Vec::new();
    let mut rounds = 0;
    while seen.len() < 10 && rounds < 20 {
        rounds += 1;
        let g = h.recv(s);
        let pubs: Vec<_> = g.iter().filter_map(pub_of).map(|p| (p.1[0], p.5)).collect();
        assert!(pubs.len() <= 2, "window of 2: got {}", pubs.len());
        for (b, pid) in pubs {
            seen.push(b);
            h.ack(s, Packet::Puback, pid);
        }
    }
    assert_eq!(seen, (0..10).map(|i| b'0' + i).collect::<Vec<_>>());
}

#[test]
fn unacked_messages_resent_with_dup_on_reconnect() {
    let mut h = H::new();
    let s = h.connect("r", false);
    h.subscribe(s, "t", 2);
    let p = h.connect("p", true);
    h.publish(p, "t", b"a", 1, false, 1);
    h.publish(p, "t", b"b", 2, false, 2);
    h.ack(p, Packet::Pubrel, 2);
    let g = h.recv(s);
    let first: Vec<_> = g.iter().filter_map(pub_of).map(|p| (p.5, p.4)).collect();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|(_, dup)| !dup));
    h.b.connection_lost(s, h.now);
    h.settle();
    h.release_closed();
    let (s, ack) = h.connect_full("r", false, 60, None, V3);
    assert_eq!(ack, Got::Connack { sp: true, code: 0 });
    let again: Vec<_> = h
        .recv(s)
        .iter()
        .filter_map(pub_of)
        .map(|p| (p.5, p.4))
        .collect();
    assert_eq!(
        again,
        first
            .iter()
            .map(|(pid, _)| (*pid, true))
            .collect::<Vec<_>>()
    );
}

#[test]
fn pubrel_resent_after_pubrec_on_reconnect() {
    let mut h = H::new();
    let s = h.connect("r", false);
    h.subscribe(s, "t", 2);
    let p = h.connect("p", true);
    h.publish(p, "t", b"a", 2, false, 1);
    h.ack(p, Packet::Pubrel, 1);
    let g = h.recv(s);
    let pid = pub_of(&g[0]).unwrap().5;
    h.ack(s, Packet::Pubrec, pid);
    assert_eq!(h.recv(s), vec![Got::Pubrel(pid)]);
    h.b.connection_lost(s, h.now);
    h.settle();
    let (s, _) = h.connect_full("r", false, 60, None, V3);
    assert_eq!(h.recv(s), vec![Got::Pubrel(pid)]);
    h.ack(s, Packet::Pubcomp, pid);
    assert!(h.b.sessions.iter().all(|(_, x)| x.inflight.is_empty()));
}

#[test]
fn unsubscribe_stops_delivery() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "u/#", 0);
    let mut raw = Vec::new();
    raw.extend_from_slice(&3u16.to_be_bytes());
    raw.extend_from_slice(b"u/#");
    h.send(
        s,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 4,
            properties: Properties::EMPTY,
            filters: UnsubscribeFilters::from_raw(&raw),
        }),
    );
    assert_eq!(h.recv(s), vec![Got::Unsuback(4)]);
    let p = h.connect("p", true);
    h.publish(p, "u/1", b"x", 0, false, 0);
    assert!(h.recv(s).is_empty());
    assert_eq!(h.b.router.subscription_count(), 0);
}

#[test]
fn clean_session_removed_at_disconnect() {
    let mut h = H::new();
    let s = h.connect("gone", true);
    h.subscribe(s, "t", 1);
    h.disconnect(s);
    assert!(h.b.sessions.find("gone").is_none());
    assert_eq!(h.b.router.subscription_count(), 0);
}

#[test]
fn persistent_client_expiration_ends_offline_sessions() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        persistent_client_expiration: Some(60),
        ..BrokerConfig::default()
    });
    let s = h.connect("ps", false);
    h.subscribe(s, "t", 1);
    h.disconnect(s);
    h.advance(30_000);
    assert!(h.b.sessions.find("ps").is_some());
    h.advance(31_000);
    assert!(h.b.sessions.find("ps").is_none());
}

#[test]
fn invalid_filter_closes_without_suback() {
    // Mosquitto treats an invalid filter as a malformed packet: no SUBACK,
    // the connection is closed.
    let mut h = H::new();
    let s = h.connect("s", true);
    let mut raw = Vec::new();
    raw.extend_from_slice(&5u16.to_be_bytes());
    raw.extend_from_slice(b"a/#/b");
    raw.push(1);
    h.send(
        s,
        Packet::Subscribe(Subscribe {
            packet_id: 3,
            properties: Properties::EMPTY,
            filters: SubscribeFilters::from_raw(&raw),
        }),
    );
    assert!(h.recv(s).is_empty());
    assert!(h.is_closed(s));
}

#[test]
fn qos2_inbound_is_delivered_at_pubrel_not_publish() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "x", 2);
    let p = h.connect("p", true);
    h.publish(p, "x", b"held", 2, false, 4);
    assert_eq!(h.recv(p), vec![Got::Pubrec(4)]);
    assert!(h.recv(s).is_empty(), "nothing routed before PUBREL");
    h.ack(p, Packet::Pubrel, 4);
    assert_eq!(h.recv(p), vec![Got::Pubcomp(4)]);
    let g = h.recv(s);
    assert_eq!(pub_of(&g[0]).unwrap().1, b"held");
}

#[test]
fn qos2_reused_packet_id_with_new_content_replaces_held_message() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "#", 2);
    let p = h.connect("p", true);
    h.publish(p, "x", b"first", 2, false, 4);
    h.publish(p, "y", b"second", 2, false, 4);
    assert_eq!(h.recv(p), vec![Got::Pubrec(4), Got::Pubrec(4)]);
    h.ack(p, Packet::Pubrel, 4);
    let got: Vec<Vec<u8>> = h
        .recv(s)
        .iter()
        .filter_map(pub_of)
        .map(|p| p.1.to_vec())
        .collect();
    assert_eq!(got, vec![b"second".to_vec()]);
}

#[test]
fn pubrel_for_unknown_id_gets_pubcomp() {
    let mut h = H::new();
    let p = h.connect("p", true);
    h.ack(p, Packet::Pubrel, 77);
    assert_eq!(h.recv(p), vec![Got::Pubcomp(77)]);
    assert!(!h.is_closed(p));
}

#[test]
fn publish_to_sys_is_not_routed() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "$SYS/#", 0);
    let p = h.connect("p", true);
    h.publish(p, "$SYS/broker/version", b"fake", 1, true, 1);
    assert_eq!(h.recv(p), vec![Got::Puback(1)]);
    assert!(h.recv(s).is_empty());
}

#[test]
fn partial_packets_are_reassembled_by_caller() {
    let mut h = H::new();
    let id = h.open();
    let mut buf = Vec::new();
    encode(
        &Packet::Connect(Connect {
            version: V3,
            clean_start: true,
            keep_alive: 30,
            properties: Properties::EMPTY,
            client_id: "split",
            will: None,
            username: None,
            password: None,
        }),
        V3,
        &mut buf,
    );
    let used = h.b.receive(id, &buf[..5], h.now);
    assert_eq!(used, 0, "incomplete packet is left for later");
    let used = h.b.receive(id, &buf, h.now);
    assert_eq!(used, buf.len());
    assert_eq!(h.recv(id), vec![Got::Connack { sp: false, code: 0 }]);
}

#[test]
fn memory_limit_refuses_publishes_but_keeps_serving() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        memory_limit: 1000,
        memory_used: || 5000,
        ..BrokerConfig::default()
    });
    let s = h.connect("s", true);
    h.subscribe(s, "m", 1);
    let p = h.connect("p", true);
    h.publish(p, "m", b"zero", 0, false, 0);
    assert!(h.recv(s).is_empty(), "QoS 0 dropped");
    assert!(!h.is_closed(p));
    h.publish(p, "m", b"one", 1, false, 1);
    assert!(
        h.is_closed(p),
        "v3 publisher of QoS 1 is dropped, as Mosquitto"
    );
    assert!(h.recv(s).is_empty());
    h.send(s, Packet::Pingreq);
    assert_eq!(h.recv(s), vec![Got::Pingresp], "others still served");
}

#[test]
fn mount_point_prefixes_and_strips_topics() {
    let mut cfg = BrokerConfig {
        sys_interval: 0,
        ..BrokerConfig::default()
    };
    let mut mounted = cfg.listeners[0].clone();
    mounted.mount_point = Some("site1/".to_string());
    cfg.listeners.push(mounted);
    let mut h = H::with(cfg);
    let plain = h.connect("plain", true);
    h.subscribe(plain, "#", 0);
    // A client on the mounted listener (index 1).
    let m = ConnId { key: 100, gen: 1 };
    h.b.open(m, 1, "127.0.0.1:1", h.now);
    h.send(
        m,
        Packet::Connect(Connect {
            version: V3,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::EMPTY,
            client_id: "mounted",
            will: None,
            username: None,
            password: None,
        }),
    );
    h.recv(m);
    h.subscribe(m, "in/#", 0);
    h.publish(m, "out/x", b"up", 0, false, 0);
    let g = h.recv(plain);
    assert_eq!(pub_of(&g[0]).unwrap().0, "site1/out/x");
    h.publish(plain, "site1/in/y", b"down", 0, false, 0);
    let g = h.recv(m);
    assert_eq!(pub_of(&g[0]).unwrap().0, "in/y", "mount point stripped");
    h.publish(plain, "in/y", b"other", 0, false, 0);
    assert!(h.recv(m).is_empty(), "outside the mount point");
}

#[test]
fn every_retained_match_reaches_a_new_subscriber_past_the_outbox_limit() {
    let mut h = H::new();
    let p = h.connect("p", true);
    let payload = vec![b'x'; 1024];
    for i in 0..3000 {
        h.publish(p, &format!("r/{}", i), &payload, 0, true, 0);
    }
    let s = h.connect("s", true);
    h.subscribe(s, "r/#", 0);
    let mut got = 0;
    for _ in 0..100 {
        let n = h.recv(s).iter().filter(|g| pub_of(g).is_some()).count();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, 3000, "3 MB of retained messages, none dropped");
}

#[test]
fn qos0_to_a_slow_subscriber_waits_in_its_queue_in_order() {
    let mut h = H::new();
    let s = h.connect("s", true);
    h.subscribe(s, "t", 0);
    let p = h.connect("p", true);
    let payload = vec![b'y'; 4096];
    // Nothing is read by the subscriber while 1.5 MB arrive.
    for i in 0..400u32 {
        let mut m = payload.clone();
        m[..4].copy_from_slice(&i.to_be_bytes());
        h.publish(p, "t", &m, 0, false, 0);
    }
    let mut seen = Vec::new();
    for _ in 0..100 {
        let g = h.recv(s);
        if g.is_empty() {
            break;
        }
        for x in g.iter().filter_map(pub_of) {
            seen.push(u32::from_be_bytes([x.1[0], x.1[1], x.1[2], x.1[3]]));
        }
    }
    assert_eq!(seen, (0..400).collect::<Vec<_>>());
}

#[test]
fn max_inflight_bytes_limits_the_window_by_size() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        max_inflight_bytes: 250,
        ..BrokerConfig::default()
    });
    let s = h.connect("s", true);
    h.subscribe(s, "b", 1);
    let p = h.connect("p", true);
    for i in 0..6u16 {
        h.publish(p, "b", &[b'0' + i as u8; 100], 1, false, i + 1);
    }
    // 100-byte payloads: the third one crosses 250 bytes, the fourth waits.
    let first: Vec<u16> = h.recv(s).iter().filter_map(pub_of).map(|x| x.5).collect();
    assert_eq!(first.len(), 3, "{:?}", first);
    h.ack(s, Packet::Puback, first[0]);
    let more = h.recv(s).iter().filter(|g| pub_of(g).is_some()).count();
    assert_eq!(more, 1);
}

/// Random and mutated traffic from many connections, in both protocol
/// versions, with the clock moving: the broker must never panic, and must
/// keep serving a well-behaved client afterwards.
#[test]
fn random_traffic_never_panics() {
    let mut rng: u64 = 0x5eed_1234_abcd_0001;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Valid packets to mutate: CONNECT (3.1.1 and 5), SUBSCRIBE, PUBLISH
    // at each QoS, acks, PINGREQ, DISCONNECT.
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut b = Vec::new();
        encode(
            &Packet::Connect(Connect {
                version: v,
                clean_start: false,
                keep_alive: 5,
                properties: Properties::EMPTY,
                client_id: "fz",
                will: Some(will("w/t", b"bye")),
                username: None,
                password: None,
            }),
            v,
            &mut b,
        );
        seeds.push(b);
        let mut raw = Vec::new();
        raw.extend_from_slice(&3u16.to_be_bytes());
        raw.extend_from_slice(b"f/#");
        raw.push(2);
        let mut b = Vec::new();
        encode(
            &Packet::Subscribe(Subscribe {
                packet_id: 3,
                properties: Properties::EMPTY,
                filters: SubscribeFilters::from_raw(&raw),
            }),
            v,
            &mut b,
        );
        seeds.push(b);
        for (q, pid) in [
            (QoS::AtMostOnce, 0),
            (QoS::AtLeastOnce, 7),
            (QoS::ExactlyOnce, 8),
        ] {
            let mut b = Vec::new();
            encode(
                &Packet::Publish(Publish {
                    dup: false,
                    qos: q,
                    retain: pid == 7,
                    topic: "f/x",
                    packet_id: pid,
                    properties: Properties::EMPTY,
                    payload: b"payload",
                }),
                v,
                &mut b,
            );
            seeds.push(b);
        }
    }
    seeds.push(vec![0x62, 2, 0, 8]); // PUBREL 8
    seeds.push(vec![0x40, 2, 0, 1]); // PUBACK 1
    seeds.push(vec![0xC0, 0]);
    seeds.push(vec![0xE0, 0]);

    let mut h = H::with(BrokerConfig {
        sys_interval: 1,
        max_packet_size: 4096,
        ..BrokerConfig::default()
    });
    // Keepalive 0: the run advances the clock far past any keepalive.
    let good = h.connect_full("good", true, 0, None, V3).0;
    h.subscribe(good, "f/#", 1);
    let mut conns: Vec<ConnId> = Vec::new();
    let rounds: u32 = std::env::var("MIDGE_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for round in 0..rounds {
        if conns.len() < 8 || next() % 16 == 0 {
            conns.push(h.open());
        }
        let id = conns[(next() as usize) % conns.len()];
        let mut bytes = Vec::new();
        for _ in 0..(1 + next() % 3) {
            let seed = &seeds[(next() as usize) % seeds.len()];
            let mut p = seed.clone();
            match next() % 4 {
                0 => {}
                1 => {
                    let i = (next() as usize) % p.len();
                    p[i] ^= 1 << (next() % 8);
                }
                2 => p.truncate((next() as usize) % p.len()),
                _ => {
                    for _ in 0..(next() % 8) {
                        p.push(next() as u8);
                    }
                }
            }
            bytes.extend_from_slice(&p);
        }
        // Feed in random splits, keeping the unconsumed tail as the
        // network layer does.
        let mut pending: Vec<u8> = Vec::new();
        let mut off = 0;
        while off < bytes.len() {
            let end = (off + 1 + (next() as usize) % 16).min(bytes.len());
            pending.extend_from_slice(&bytes[off..end]);
            off = end;
            let used = h.b.receive(id, &pending, h.now);
            assert!(used <= pending.len());
            pending.drain(..used);
        }
        h.settle();
        let _ = h.b.outbox(id).len();
        h.b.outbox_written(id, h.b.outbox(id).len(), h.now);
        if round % 97 == 0 {
            h.b.connection_lost(id, h.now);
            h.settle();
        }
        if round % 50 == 0 {
            // The good client reads and acknowledges what it was sent.
            for g in h.recv(good) {
                if let Some((_, _, qos, _, _, pid)) = pub_of(&g) {
                    match qos {
                        1 => h.ack(good, Packet::Puback, pid),
                        2 => {
                            h.ack(good, Packet::Pubrec, pid);
                            h.ack(good, Packet::Pubcomp, pid);
                        }
                        _ => {}
                    }
                }
            }
            h.advance(700);
            h.release_closed();
            conns.retain(|c| !h.is_closed(*c));
        }
    }
    // The well-behaved client is still served.
    let p = h.connect("after", true);
    h.publish(p, "f/final", b"ok", 0, false, 0);
    let got: Vec<Vec<u8>> = h
        .recv(good)
        .iter()
        .filter_map(pub_of)
        .map(|x| x.1.to_vec())
        .collect();
    assert!(got.iter().any(|x| x == b"ok"), "good client lost service");
}

// ------------------------------------------- answered as Mosquitto 2.0.11 does

/// MQTT 3.1 has no session-present flag: the CONNACK byte stays 0 even when
/// the session is resumed (its subscription still works).
#[test]
fn mqtt31_resumed_session_connack_has_no_session_present() {
    let mut h = H::new();
    let (a, _) = h.connect_full("p31", false, 60, None, ProtocolVersion::V31);
    h.subscribe(a, "t31", 0);
    h.disconnect(a);
    let (b, ack) = h.connect_full("p31", false, 60, None, ProtocolVersion::V31);
    assert_eq!(ack, Got::Connack { sp: false, code: 0 });
    let p = h.connect("pub31", true);
    h.publish(p, "t31", b"x", 0, false, 0);
    assert!(h.recv(b).iter().any(|g| matches!(g, Got::Publish { .. })));
}

/// Packets only a server sends are read and ignored from a client, as
/// Mosquitto does; the connection stays up.
#[test]
fn server_only_packets_from_a_client_are_ignored() {
    let mut h = H::new();
    let id = h.connect("srvpk", true);
    h.raw(id, &[0x90, 3, 0, 1, 0]); // SUBACK
    h.raw(id, &[0xB0, 2, 0, 1]); // UNSUBACK
    h.raw(id, &[0xD0, 0]); // PINGRESP
    h.raw(id, &[0xC3, 1, 0xFF]); // PINGREQ with reserved bits and a body
    assert!(!h.is_closed(id));
    assert_eq!(h.recv(id), vec![Got::Pingresp]);
    h.raw(id, &[0x20, 2, 0, 0]); // CONNACK closes, as in Mosquitto
    assert!(h.is_closed(id));
}

/// MQTT 3.1 allowed a SUBSCRIBE / UNSUBSCRIBE without filters: Mosquitto
/// answers an empty SUBACK / UNSUBACK.
#[test]
fn mqtt31_empty_subscribe_gets_empty_suback() {
    let mut h = H::new();
    let (id, _) = h.connect_full("e31", true, 60, None, ProtocolVersion::V31);
    h.raw(id, &[0x82, 2, 0, 9]);
    h.raw(id, &[0xA2, 2, 0, 10]);
    assert_eq!(h.recv(id), vec![Got::Suback(9, vec![]), Got::Unsuback(10)]);
    assert!(!h.is_closed(id));
    // 3.1.1 requires a filter: the connection is closed.
    let id = h.connect("e311", true);
    h.raw(id, &[0x82, 2, 0, 9]);
    assert!(h.is_closed(id));
}

/// A DUP bit on a QoS 0 PUBLISH ([MQTT-3.3.1-2]) is tolerated as Mosquitto
/// tolerates it: the message is delivered, without DUP.
#[test]
fn dup_on_qos0_is_delivered() {
    let mut h = H::new();
    let s = h.connect("dups", true);
    h.subscribe(s, "d", 0);
    let p = h.connect("dupp", true);
    h.raw(p, &[0x38, 4, 0, 1, b'd', b'x']);
    assert!(!h.is_closed(p));
    let got = h.recv(s);
    assert!(
        matches!(&got[..], [Got::Publish { payload, dup: false, .. }] if payload == b"x"),
        "{got:?}"
    );
}

/// A message queued while the ACL allowed it is dropped when it would be
/// sent after a reload took the right away, and (as in Mosquitto, which
/// numbers messages as it queues them) its packet id is used up.
#[test]
fn queued_message_rechecked_against_a_reloaded_acl() {
    use crate::auth::acl::AclFile;
    use crate::auth::Policy;
    let policy = |text: &str| Policy {
        passwords: None,
        acl: Some(AclFile::parse(text, "acl").unwrap()),
        deny_special_chars: true,
        dynsec: None,
    };
    let mut h = H::new();
    h.b.set_security(0, policy("topic readwrite one\ntopic readwrite two\n"));
    let s = h.connect("q", false);
    h.subscribe(s, "one", 1);
    h.subscribe(s, "two", 1);
    h.disconnect(s);
    let p = h.connect("pp", true);
    h.publish(p, "two", b"2", 1, false, 1);
    h.publish(p, "one", b"1", 1, false, 2);
    h.b.set_security(0, policy("topic readwrite one\n"));
    let (s, _) = h.connect_full("q", false, 60, None, V3);
    let got: Vec<(String, u16)> = h
        .recv(s)
        .into_iter()
        .filter_map(|g| match g {
            Got::Publish { topic, pid, .. } => Some((topic, pid)),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![("one".to_string(), 2)]);
}

/// The core reports what happened as events, in order and at the fake
/// clock's pace: connect, subscribe, and a keep-alive timeout 1.5 × 10 s
/// later (one line, as Mosquitto writes one). The core logs nothing itself.
#[test]
fn events_follow_the_fake_clock() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let mut h = H::new();
    let sink = seen.clone();
    h.b.set_event_sink(Box::new(move |e| sink.borrow_mut().push(format!("{e:?}"))));
    let (id, ack) = h.connect_full("sensor", true, 10, None, V3);
    assert!(matches!(ack, Got::Connack { code: 0, .. }), "{ack:?}");
    h.subscribe(id, "a/+", 1);
    let before = seen.borrow().len();
    h.advance(14_000);
    assert_eq!(
        seen.borrow().len(),
        before,
        "nothing before 1.5 × keep-alive"
    );
    h.advance(2_000);
    let seen = seen.borrow();
    let kinds: Vec<&str> = seen
        .iter()
        .map(|s| s.split([' ', '(']).next().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["Connected", "Subscribed", "KeepaliveTimeout"],
        "{seen:#?}"
    );
    assert!(seen[0].contains("client_id: \"sensor\""), "{}", seen[0]);
    assert!(seen[1].contains("filter: \"a/+\""), "{}", seen[1]);
}

/// The session `id`'s queue length and the broker's dropped count.
fn queued_and_dropped(h: &H, id: &str) -> (usize, u64) {
    let s = h.b.sessions.iter().find(|(_, s)| &*s.client_id == id);
    let queued = s.map_or(0, |(_, s)| s.queue.len());
    (queued, h.b.stats().pub_msgs_dropped)
}

/// SUBSCRIBE `filter` without reading anything back.
fn subscribe_unread(h: &mut H, id: ConnId, filter: &str, qos: u8) {
    let mut raw = Vec::new();
    raw.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    raw.extend_from_slice(filter.as_bytes());
    raw.push(qos);
    h.send(
        id,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::EMPTY,
            filters: SubscribeFilters::from_raw(&raw),
        }),
    );
}

/// Issue 16: a client that never reads and subscribes again and again got
/// one more copy of every matching retained message per SUBSCRIBE, exempt
/// from `max_queued_messages`. QoS 1/2 retained copies are now bounded like
/// any message (Mosquitto: retain__process -> db__message_insert), and the
/// ones past the limit are counted as dropped.
#[test]
fn resubscribing_never_reading_client_keeps_qos1_retained_copies_within_the_queue_limit() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        max_queued_messages: 5,
        max_inflight_messages: 2,
        ..BrokerConfig::default()
    });
    let p = h.connect("p", true);
    for i in 0..3u16 {
        h.publish(p, &format!("r/{i}"), b"keep", 1, true, i + 1);
        h.recv(p);
    }
    let s = h.connect("s", true);
    for _ in 0..50 {
        subscribe_unread(&mut h, s, "r/#", 1);
        h.b.check_invariants().unwrap();
    }
    let (queued, dropped) = queued_and_dropped(&h, "s");
    assert_eq!(queued, 5, "2 in flight, 5 queued, the rest dropped");
    assert_eq!(dropped, 50 * 3 - 2 - 5);
}

/// QoS 0 retained copies are admitted whole while the client is within its
/// queue limits when the SUBSCRIBE's retained matches start (Mosquitto
/// admits them while its unwritten packets are below the limit, and writes
/// none of them before the SUBSCRIBE is handled), so a reading client gets
/// every match; a client that never reads is over the limit after one such
/// burst and later SUBSCRIBEs add nothing.
#[test]
fn resubscribing_never_reading_client_gets_qos0_retained_copies_only_while_within_the_limit() {
    let mut h = H::with(BrokerConfig {
        sys_interval: 0,
        max_queued_messages: 5,
        ..BrokerConfig::default()
    });
    let p = h.connect("p", true);
    // 20 x 64 KiB: more than the 1 MiB outbox, so copies wait in the queue.
    let payload = vec![b'x'; 64 * 1024];
    for i in 0..20 {
        h.publish(p, &format!("r/{i}"), &payload, 0, true, 0);
    }
    let s = h.connect("s", true);
    subscribe_unread(&mut h, s, "r/#", 0);
    let (first, dropped) = queued_and_dropped(&h, "s");
    assert!(first > 0 && first < 20, "outbox then queue: {first}");
    assert_eq!(dropped, 0, "a client within its limits gets every match");
    subscribe_unread(&mut h, s, "r/#", 0);
    let (second, _) = queued_and_dropped(&h, "s");
    assert!(
        second >= 5,
        "the second burst started below the limit: {second}"
    );
    for _ in 0..50 {
        subscribe_unread(&mut h, s, "r/#", 0);
        h.b.check_invariants().unwrap();
    }
    let (after, dropped) = queued_and_dropped(&h, "s");
    assert_eq!(after, second, "no more copies once over the limit");
    assert_eq!(dropped, 50 * 20);
}

/// Issue 16 (soak): a persistent session's queue and in-flight window kept
/// the capacity of their largest backlog forever, so across thousands of
/// churning sessions the broker's heap crept up for minutes (10 000-client
/// soak: +1.4 MB in 90 s with a constant population). Drained, they give
/// the capacity back.
#[test]
fn drained_session_gives_back_its_backlog_capacity() {
    let mut h = H::new();
    let s = h.connect("ps", false);
    h.subscribe(s, "q/#", 1);
    h.disconnect(s);
    h.release_closed();
    let p = h.connect("p", true);
    for i in 0..200u16 {
        h.publish(p, "q/1", b"backlog", 1, false, i + 1);
    }
    let capacity = |h: &H| {
        let (_, s) =
            h.b.sessions
                .iter()
                .find(|(_, s)| &*s.client_id == "ps")
                .unwrap();
        (
            s.queue.len(),
            s.queue.capacity(),
            s.inflight.len(),
            s.inflight.capacity(),
        )
    };
    let (queued, queue_cap, _, _) = capacity(&h);
    assert!(
        queued >= 100 && queue_cap >= queued,
        "backlog {queued} queued"
    );
    let (s, _) = h.connect_full("ps", false, 60, None, V3);
    let mut got = 0;
    for _ in 0..1000 {
        let pids: Vec<u16> = h
            .recv(s)
            .iter()
            .filter_map(|g| pub_of(g).map(|p| p.5))
            .collect();
        if pids.is_empty() {
            break;
        }
        got += pids.len();
        for pid in pids {
            h.ack(s, Packet::Puback, pid);
        }
    }
    assert_eq!(got, 200, "the whole backlog arrives");
    let (queued, queue_cap, inflight, inflight_cap) = capacity(&h);
    assert_eq!((queued, inflight), (0, 0));
    assert!(queue_cap <= 16, "queue keeps {queue_cap} slots");
    assert!(
        inflight_cap <= 8,
        "in-flight window keeps {inflight_cap} slots"
    );
}
