//! Black-box MQTT 3.1.1 (and 3.1) behaviour of the broker binary, as a client sees it:
//! QoS 0/1/2 flows and downgrades, overlapping subscriptions, retained messages, wills,
//! keepalive, persistent sessions, client ids, takeover, unsubscribe, QoS 2 duplicate
//! suppression, the inflight window, re-delivery with DUP, and `$SYS`.
//!
//! Every test starts its own broker (see `common`), so tests run in parallel. Tests must not
//! rely on sleeps to prove absence: they publish a marker after the message that must not
//! arrive, and check that the marker is the next thing delivered.

mod common;

use common::*;
use rumqttc::{QoS, SubscribeReasonCode};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// QoS end to end
// ---------------------------------------------------------------------------------------------

/// Publisher and subscriber are both rumqttc; the subscription is QoS 2 so the message
/// arrives at the QoS it was published with.
fn end_to_end(q: u8) {
    let broker = TestBroker::start("");
    let mut sub = Mqtt::connect(broker.port, &format!("e2e-sub-{q}"));
    assert_eq!(
        sub.subscribe("e2e/#", 2),
        vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    let mut publisher = Mqtt::connect(broker.port, &format!("e2e-pub-{q}"));
    // Binary payload with zero bytes and every byte value, larger than one small read.
    let payload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    publisher.publish("e2e/some/topic", q, false, &payload);
    publisher.publish("e2e/marker", q, false, b"end");

    let got = sub.publishes_until("e2e/marker", WAIT);
    assert_eq!(got.len(), 1, "exactly one copy delivered");
    let p = &got[0];
    assert_eq!(p.topic, "e2e/some/topic");
    assert_eq!(&p.payload[..], &payload[..], "payload intact");
    assert_eq!(qos_num(p.qos), q, "delivered at the published QoS");
    assert!(!p.retain, "live message must not carry the retain flag");
}

#[test]
fn qos0_end_to_end() {
    end_to_end(0);
}

#[test]
fn qos1_end_to_end() {
    end_to_end(1);
}

#[test]
fn qos2_end_to_end() {
    end_to_end(2);
}

#[test]
fn delivery_qos_is_minimum_of_publish_and_subscription() {
    let broker = TestBroker::start("");
    let mut sub = RawClient::connected(broker.port, "down-sub");
    assert_eq!(
        sub.subscribe(&[("d/q0", 0), ("d/q1", 1), ("d/q2", 2)]),
        vec![0, 1, 2]
    );
    let mut publisher = Mqtt::connect(broker.port, "down-pub");

    // QoS 2 publish to a QoS 1 subscription arrives as QoS 1.
    publisher.publish("d/q1", 2, false, b"two-to-one");
    let p = sub.expect_publish(WAIT);
    assert_eq!((p.topic.as_str(), p.qos), ("d/q1", 1));
    assert_eq!(p.payload, b"two-to-one");
    assert_ne!(p.pid, 0, "QoS 1 PUBLISH carries a non-zero packet id");
    sub.send(&ack_packet(PUBACK, p.pid));

    // QoS 2 publish to a QoS 0 subscription arrives as QoS 0.
    publisher.publish("d/q0", 2, false, b"two-to-zero");
    let p = sub.expect_publish(WAIT);
    assert_eq!((p.topic.as_str(), p.qos), ("d/q0", 0));

    // QoS 1 publish to a QoS 2 subscription is not upgraded.
    publisher.publish("d/q2", 1, false, b"one-stays-one");
    let p = sub.expect_publish(WAIT);
    assert_eq!((p.topic.as_str(), p.qos), ("d/q2", 1));
    sub.send(&ack_packet(PUBACK, p.pid));
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
    let broker = TestBroker::start("");
    let mut sub = RawClient::connected(broker.port, "overlap-sub");
    assert_eq!(sub.subscribe(&[("a/#", 0)]), vec![0]);
    assert_eq!(sub.subscribe(&[("a/b", 1)]), vec![1]);
    let mut publisher = RawClient::connected(broker.port, "overlap-pub");

    publisher.publish("a/b", b"both", 2, false);
    publisher.publish("a/marker", b"", 2, false);
    let got = sub.publishes_until("a/marker", WAIT);
    assert_eq!(
        got.len(),
        1,
        "one copy for overlapping subscriptions: {got:?}"
    );
    assert_eq!(got[0].topic, "a/b");
    assert_eq!(
        got[0].qos, 1,
        "highest granted QoS of the matching subscriptions"
    );
    sub.send(&ack_packet(PUBACK, got[0].pid));

    // A topic matched only by the QoS 0 wildcard is delivered at QoS 0.
    publisher.publish("a/c", b"one", 2, false);
    let p = sub.expect_publish(WAIT);
    assert_eq!((p.topic.as_str(), p.qos), ("a/c", 0));
}

#[test]
fn wildcard_filters_match_as_specified() {
    let broker = TestBroker::start("");
    let mut sub = RawClient::connected(broker.port, "match-sub");
    sub.subscribe(&[("sport/#", 0), ("+/+/x", 0), ("end", 0)]);
    let mut publisher = RawClient::connected(broker.port, "match-pub");
    for t in [
        "sport",        // `#` also matches the parent level
        "sport/tennis", // one level
        "sport/a/b/c",  // many levels
        "sports",       // no: different first level
        "q/w/x",        // `+/+/x`
        "q/w/e/x",      // no: too many levels
        "/w/x",         // `+` matches an empty level
        "Sport/tennis", // no: case sensitive
    ] {
        publisher.publish(t, t.as_bytes(), 0, false);
    }
    publisher.publish("end", b"", 0, false);
    let got: Vec<String> = sub
        .publishes_until("end", WAIT)
        .into_iter()
        .map(|p| p.topic)
        .collect();
    assert_eq!(
        got,
        vec!["sport", "sport/tennis", "sport/a/b/c", "q/w/x", "/w/x"]
    );
}

// ---------------------------------------------------------------------------------------------
// Retained messages
// ---------------------------------------------------------------------------------------------

#[test]
fn retained_message_is_stored_replaced_and_deleted() {
    let broker = TestBroker::start("");
    let mut publisher = RawClient::connected(broker.port, "ret-pub");
    publisher.publish("r/t", b"v1", 1, true);

    // A new subscriber gets the stored message, flagged as retained.
    let mut sub1 = RawClient::connected(broker.port, "ret-sub1");
    sub1.subscribe(&[("r/t", 0)]);
    let p = sub1.expect_publish(WAIT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("r/t", &b"v1"[..])
    );
    assert!(
        p.retain,
        "stored message delivered on subscribe has RETAIN set"
    );

    // Replace: the existing subscriber sees it live (RETAIN 0), a new one gets only v2.
    publisher.publish("r/t", b"v2", 1, true);
    let p = sub1.expect_publish(WAIT);
    assert_eq!(p.payload, b"v2");
    assert!(
        !p.retain,
        "a message matching an established subscription has RETAIN 0 (MQTT-3.3.1-9)"
    );
    let mut sub2 = RawClient::connected(broker.port, "ret-sub2");
    sub2.subscribe(&[("r/t", 0), ("r/marker", 0)]);
    publisher.publish("r/marker", b"", 0, false);
    let got = sub2.publishes_until("r/marker", WAIT);
    assert_eq!(got.len(), 1, "only the latest retained message: {got:?}");
    assert_eq!(got[0].payload, b"v2");
    assert!(got[0].retain);

    // Delete with an empty retained payload.
    publisher.publish("r/t", b"", 1, true);
    let p = sub1.expect_publish(WAIT);
    assert_eq!((p.topic.as_str(), p.payload.len()), ("r/t", 0));
    let mut sub3 = RawClient::connected(broker.port, "ret-sub3");
    sub3.subscribe(&[("r/t", 0), ("r/marker", 0)]);
    publisher.publish("r/marker", b"", 0, false);
    let got = sub3.publishes_until("r/marker", WAIT);
    assert!(got.is_empty(), "retained message was deleted: {got:?}");
}

#[test]
fn retained_messages_reach_wildcard_subscribers() {
    let broker = TestBroker::start("");
    let mut publisher = RawClient::connected(broker.port, "retw-pub");
    publisher.publish("w/x", b"1", 0, true);
    publisher.publish("q/x", b"2", 1, true);
    publisher.publish("w/y/z", b"3", 2, true);
    publisher.publish("w/y", b"not kept", 0, false);

    let mut all = RawClient::connected(broker.port, "retw-all");
    all.subscribe(&[("#", 0)]);
    publisher.publish("marker", b"", 0, false);
    let mut got: Vec<(String, Vec<u8>, bool)> = all
        .publishes_until("marker", WAIT)
        .into_iter()
        .map(|p| (p.topic, p.payload, p.retain))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("q/x".to_string(), b"2".to_vec(), true),
            ("w/x".to_string(), b"1".to_vec(), true),
            ("w/y/z".to_string(), b"3".to_vec(), true),
        ]
    );

    let mut plus = RawClient::connected(broker.port, "retw-plus");
    plus.subscribe(&[("+/x", 0)]);
    publisher.publish("m/x", b"", 0, false);
    let mut got: Vec<(String, bool)> = plus
        .publishes_until("m/x", WAIT)
        .into_iter()
        .map(|p| (p.topic, p.retain))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("q/x".to_string(), true), ("w/x".to_string(), true)]
    );
}

#[test]
fn hash_does_not_match_sys_topics_but_sys_hash_does() {
    let broker = TestBroker::start("sys_interval 1\n");
    let mut publisher = RawClient::connected(broker.port, "sys-pub");
    publisher.publish("plain/t", b"p", 0, true);

    let mut all = RawClient::connected(broker.port, "sys-all");
    all.subscribe(&[("#", 0)]);
    // Wait until the broker has published at least one $SYS update while `#` was subscribed:
    // the first uptime message is the retained one, the second is a live update.
    let mut watcher = RawClient::connected(broker.port, "sys-watch");
    watcher.subscribe(&[("$SYS/broker/uptime", 0)]);
    watcher.expect_publish(Duration::from_secs(4));
    watcher.expect_publish(Duration::from_secs(4));
    publisher.publish("marker", b"", 0, false);
    let got: Vec<String> = all
        .publishes_until("marker", WAIT)
        .into_iter()
        .map(|p| p.topic)
        .collect();
    assert!(
        got.iter().any(|t| t == "plain/t"),
        "`#` gets ordinary retained messages: {got:?}"
    );
    assert!(
        got.iter().all(|t| !t.starts_with('$')),
        "`#` must not match topics starting with `$`: {got:?}"
    );

    all.subscribe(&[("$SYS/#", 0)]);
    let deadline = Instant::now() + WAIT;
    loop {
        let p = all
            .next_publish(deadline.saturating_duration_since(Instant::now()))
            .expect("`$SYS/#` delivers $SYS/broker/version");
        if p.topic == "$SYS/broker/version" {
            assert!(p.retain, "$SYS/broker/version is retained");
            break;
        }
        assert!(p.topic.starts_with("$SYS/"), "unexpected topic {}", p.topic);
    }
}

// ---------------------------------------------------------------------------------------------
// Wills
// ---------------------------------------------------------------------------------------------

#[test]
fn will_is_published_when_socket_drops_without_disconnect() {
    let broker = TestBroker::start("");
    let mut sub = RawClient::connected(broker.port, "will-sub");
    sub.subscribe(&[("will/#", 1)]);

    let c = Connect::new("will-drop").will("will/drop", b"gone", 1, true);
    let (mut doomed, _, rc) = RawClient::connect_with(broker.port, &c);
    assert_eq!(rc, 0);
    doomed.ping();
    let _ = doomed.stream.shutdown(std::net::Shutdown::Both);
    drop(doomed);

    let p = sub.expect_publish(WAIT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice(), p.qos),
        ("will/drop", &b"gone"[..], 1)
    );
    sub.send(&ack_packet(PUBACK, p.pid));

    // The will was retained, so a later subscriber gets it too.
    let mut late = RawClient::connected(broker.port, "will-late");
    late.subscribe(&[("will/drop", 0)]);
    let p = late.expect_publish(WAIT);
    assert_eq!(p.payload, b"gone");
    assert!(p.retain, "retained will is stored");
}

#[test]
fn will_is_not_published_after_clean_disconnect() {
    let broker = TestBroker::start("");
    let mut sub = RawClient::connected(broker.port, "nowill-sub");
    sub.subscribe(&[("will/#", 0)]);

    let c = Connect::new("nowill").will("will/nowill", b"gone", 0, false);
    let (mut polite, _, rc) = RawClient::connect_with(broker.port, &c);
    assert_eq!(rc, 0);
    polite.send(&DISCONNECT_BYTES);
    // The broker closes the connection after DISCONNECT; only then is the marker sent, so a
    // wrongly published will would already be queued ahead of it.
    polite.expect_closed(WAIT);
    publish_once(broker.port, "will/marker", b"", 0, false);
    let got = sub.publishes_until("will/marker", WAIT);
    assert!(got.is_empty(), "will published after DISCONNECT: {got:?}");
}

#[test]
fn will_is_published_on_keepalive_timeout() {
    let broker = TestBroker::start("");
    let mut sub = RawClient::connected(broker.port, "kawill-sub");
    sub.subscribe(&[("will/#", 0)]);

    let c = Connect::new("kawill")
        .keepalive(1)
        .will("will/ka", b"timed out", 0, false);
    let start = Instant::now();
    let (_silent, _, rc) = RawClient::connect_with(broker.port, &c);
    assert_eq!(rc, 0);
    // Keepalive 1 s: the broker must give up after 1.5 s of silence; allow slack for load.
    let p = sub.expect_publish(Duration::from_millis(3500) + keepalive_tick_slack());
    let elapsed = start.elapsed();
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("will/ka", &b"timed out"[..])
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "will sent after {elapsed:?}, before the keepalive had expired"
    );
}

// ---------------------------------------------------------------------------------------------
// Keepalive
// ---------------------------------------------------------------------------------------------

#[test]
fn silent_client_is_closed_after_keepalive() {
    let broker = TestBroker::start("");
    let start = Instant::now();
    let (mut silent, _, rc) =
        RawClient::connect_with(broker.port, &Connect::new("silent").keepalive(1));
    assert_eq!(rc, 0);
    silent.expect_closed(Duration::from_secs(3) + keepalive_tick_slack());
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}, before the 1 s keepalive had expired"
    );
}

#[test]
fn pingreq_gets_pingresp_and_keeps_the_connection_alive() {
    let broker = TestBroker::start("");
    let (mut c, _, rc) = RawClient::connect_with(broker.port, &Connect::new("pinger").keepalive(1));
    assert_eq!(rc, 0);
    // Pinging every 0.5 s for 3 s (twice the 1.5 s grace) must keep the connection open.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        c.send(&PINGREQ_BYTES);
        let p = c.expect_kind(PINGRESP, Duration::from_secs(2));
        assert_eq!(p.body.len(), 0, "PINGRESP has no body");
        std::thread::sleep(Duration::from_millis(500));
    }
    c.ping();
}

// ---------------------------------------------------------------------------------------------
// Sessions and client ids
// ---------------------------------------------------------------------------------------------

#[test]
fn persistent_session_keeps_subscriptions_and_queues_messages() {
    let broker = TestBroker::start("");
    let (mut s, present) = Mqtt::connect_opts(options(broker.port, "persist", false));
    assert!(!present, "no session existed before the first connect");
    s.subscribe("p/t", 1);
    s.disconnect();

    let mut publisher = Mqtt::connect(broker.port, "persist-pub");
    for i in 0..3 {
        publisher.publish("p/t", 1, false, format!("offline {i}").as_bytes());
    }

    let (mut s, present) = Mqtt::connect_opts(options(broker.port, "persist", false));
    assert!(
        present,
        "CONNACK session present after reconnecting with clean session 0"
    );
    for i in 0..3 {
        let p = s.expect_publish(WAIT);
        assert_eq!(p.topic, "p/t");
        assert_eq!(
            p.payload,
            format!("offline {i}").as_bytes(),
            "queued in order"
        );
        assert_eq!(p.qos, QoS::AtLeastOnce);
    }
    // The subscription itself survived too: live messages still arrive.
    publisher.publish("p/t", 1, false, b"live");
    assert_eq!(s.expect_publish(WAIT).payload, &b"live"[..]);
    s.disconnect();

    // Clean session 1 discards the session: session present is 0, and stays 0 afterwards.
    let (s, present) = Mqtt::connect_opts(options(broker.port, "persist", true));
    assert!(!present, "session present must be 0 with clean session 1");
    s.disconnect();
    let (s, present) = Mqtt::connect_opts(options(broker.port, "persist", false));
    assert!(
        !present,
        "the clean-session connect discarded the old session"
    );
    s.disconnect();
}

#[test]
fn zero_length_client_id_needs_clean_session() {
    let broker = TestBroker::start("");
    let (mut ok, present, rc) = RawClient::connect_with(broker.port, &Connect::new(""));
    assert_eq!(rc, 0, "empty client id with clean session is accepted");
    assert!(!present);
    assert_eq!(ok.subscribe(&[("z/t", 0)]), vec![0]);
    ok.publish("z/t", b"self", 0, false);
    assert_eq!(ok.expect_publish(WAIT).payload, b"self");

    let (mut refused, present, rc) =
        RawClient::connect_with(broker.port, &Connect::new("").clean(false));
    assert_eq!(
        rc, 2,
        "CONNACK 2 (identifier rejected) for empty id without clean session"
    );
    assert!(!present);
    refused.expect_closed(WAIT);
    ok.ping();
}

#[test]
fn second_connection_with_same_client_id_takes_over() {
    let broker = TestBroker::start("");
    let mut first = RawClient::connected(broker.port, "twin");
    first.subscribe(&[("twin/t", 0)]);
    let mut second = RawClient::connected(broker.port, "twin");
    first.expect_closed(WAIT);
    second.ping();
    // The clean-session takeover did not inherit the first connection's subscription.
    second.subscribe(&[("twin/marker", 0)]);
    publish_once(broker.port, "twin/t", b"old sub", 0, false);
    publish_once(broker.port, "twin/marker", b"", 0, false);
    assert!(second.publishes_until("twin/marker", WAIT).is_empty());
}

#[test]
fn unsubscribe_stops_delivery() {
    let broker = TestBroker::start("");
    let mut sub = RawClient::connected(broker.port, "unsub-sub");
    sub.subscribe(&[("u/t", 1), ("u/marker", 0)]);
    let mut publisher = RawClient::connected(broker.port, "unsub-pub");
    publisher.publish("u/t", b"before", 0, false);
    assert_eq!(sub.expect_publish(WAIT).payload, b"before");

    let pid = 0x1234;
    sub.send(&unsubscribe_packet(pid, &["u/t"]));
    let ack = sub.expect_kind(UNSUBACK, WAIT);
    assert_eq!(ack.pid(), Some(pid), "UNSUBACK echoes the packet id");

    publisher.publish("u/t", b"after", 0, false);
    publisher.publish("u/marker", b"", 0, false);
    let got = sub.publishes_until("u/marker", WAIT);
    assert!(got.is_empty(), "delivered after UNSUBSCRIBE: {got:?}");
}

// ---------------------------------------------------------------------------------------------
// QoS state machines
// ---------------------------------------------------------------------------------------------

#[test]
fn qos2_duplicate_publish_is_delivered_once() {
    let broker = TestBroker::start("");
    let mut sub = RawClient::connected(broker.port, "dup2-sub");
    sub.subscribe(&[("q2/#", 0)]);
    let mut publisher = RawClient::connected(broker.port, "dup2-pub");

    let pid = 7;
    publisher.send(&publish_packet("q2/t", b"once", 2, false, false, pid));
    assert_eq!(publisher.expect_kind(PUBREC, WAIT).pid(), Some(pid));
    // Re-sent before PUBREL, as a client does after losing the PUBREC.
    publisher.send(&publish_packet("q2/t", b"once", 2, false, true, pid));
    assert_eq!(publisher.expect_kind(PUBREC, WAIT).pid(), Some(pid));
    publisher.send(&ack_packet(PUBREL, pid));
    assert_eq!(publisher.expect_kind(PUBCOMP, WAIT).pid(), Some(pid));

    // After PUBCOMP the packet id is free again: a new message with it is a new message.
    publisher.send(&publish_packet("q2/t", b"second", 2, false, false, pid));
    assert_eq!(publisher.expect_kind(PUBREC, WAIT).pid(), Some(pid));
    publisher.send(&ack_packet(PUBREL, pid));
    assert_eq!(publisher.expect_kind(PUBCOMP, WAIT).pid(), Some(pid));

    publisher.publish("q2/marker", b"", 2, false);
    let got: Vec<Vec<u8>> = sub
        .publishes_until("q2/marker", WAIT)
        .into_iter()
        .map(|p| p.payload)
        .collect();
    assert_eq!(got, vec![b"once".to_vec(), b"second".to_vec()]);
}

#[test]
fn max_inflight_messages_limits_unacknowledged_deliveries() {
    let broker = TestBroker::start("max_inflight_messages 2\n");
    let mut sub = RawClient::connected(broker.port, "window-sub");
    sub.subscribe(&[("win/t", 1)]);
    let mut publisher = RawClient::connected(broker.port, "window-pub");
    for i in 0..10 {
        publisher.publish("win/t", format!("{i}").as_bytes(), 1, false);
    }

    let first = sub.expect_publish(WAIT);
    let second = sub.expect_publish(WAIT);
    assert_eq!(
        sub.next_publish(Duration::from_millis(500)),
        None,
        "a third PUBLISH while two are unacknowledged"
    );
    sub.send(&ack_packet(PUBACK, first.pid));
    let third = sub.expect_publish(WAIT);
    let mut got = vec![first, second, third];
    // Mosquitto 2.0.11 releases two queued messages per PUBACK here (three unacknowledged
    // with a window of 2); midge keeps the window exact.
    if !testing_mosquitto() {
        assert_eq!(
            sub.next_publish(Duration::from_millis(300)),
            None,
            "window is 2 again after one ack"
        );
    }
    sub.send(&ack_packet(PUBACK, got[1].pid));
    sub.send(&ack_packet(PUBACK, got[2].pid));
    while got.len() < 10 {
        let p = sub.expect_publish(WAIT);
        sub.send(&ack_packet(PUBACK, p.pid));
        got.push(p);
    }
    let payloads: Vec<String> = got
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected, "all ten, in order");
    assert!(got.iter().all(|p| p.qos == 1 && !p.dup));
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_on_reconnect() {
    let broker = TestBroker::start("");
    let session = Connect::new("resend").clean(false);
    let (mut sub, _, rc) = RawClient::connect_with(broker.port, &session);
    assert_eq!(rc, 0);
    sub.subscribe(&[("rs/t", 1)]);
    let mut publisher = RawClient::connected(broker.port, "resend-pub");
    publisher.publish("rs/t", b"a", 1, false);
    publisher.publish("rs/t", b"b", 1, false);
    let a = sub.expect_publish(WAIT);
    let b = sub.expect_publish(WAIT);
    assert!(!a.dup && !b.dup, "first delivery has DUP 0");
    let _ = sub.stream.shutdown(std::net::Shutdown::Both);
    drop(sub);

    let (mut sub, present, rc) = RawClient::connect_with(broker.port, &session);
    assert_eq!(rc, 0);
    assert!(present, "session present after reconnect");
    for before in [&a, &b] {
        let p = sub.expect_publish(WAIT);
        assert!(p.dup, "re-sent PUBLISH has DUP set: {p:?}");
        assert_eq!(p.pid, before.pid, "same packet id on re-send");
        assert_eq!(p.payload, before.payload);
        assert_eq!(p.qos, 1);
        sub.send(&ack_packet(PUBACK, p.pid));
    }
    publisher.publish("rs/t", b"c", 1, false);
    let c = sub.expect_publish(WAIT);
    assert_eq!(c.payload, b"c");
    assert!(!c.dup, "new message has DUP 0");
    sub.send(&ack_packet(PUBACK, c.pid));
    sub.ping();

    // Everything was acknowledged, so nothing is re-sent on the next reconnect.
    drop(sub);
    let (mut sub, present, _) = RawClient::connect_with(broker.port, &session);
    assert!(present);
    sub.subscribe(&[("rs/marker", 0)]);
    publisher.publish("rs/marker", b"", 0, false);
    let got = sub.publishes_until("rs/marker", WAIT);
    assert!(got.is_empty(), "acknowledged messages re-sent: {got:?}");
}

// ---------------------------------------------------------------------------------------------
// MQTT 3.1
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt31_client_connects_and_exchanges_messages() {
    let broker = TestBroker::start("");
    let c = Connect::new("v31-client").protocol(Protocol::V31);
    let (mut v31, present, rc) = RawClient::connect_with(broker.port, &c);
    assert_eq!((present, rc), (false, 0), "MQIsdp level 3 accepted");
    assert_eq!(v31.subscribe(&[("v31/#", 1)]), vec![1]);

    // 3.1 to itself.
    v31.publish("v31/self", b"hello", 1, false);
    let p = v31.expect_publish(WAIT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice(), p.qos),
        ("v31/self", &b"hello"[..], 1)
    );
    v31.send(&ack_packet(PUBACK, p.pid));

    // 3.1.1 client to the 3.1 client and back.
    let mut v311 = Mqtt::connect(broker.port, "v311-client");
    v311.subscribe("v311/#", 2);
    v311.publish("v31/from311", 2, false, b"x");
    let p = v31.expect_publish(WAIT);
    assert_eq!((p.topic.as_str(), p.qos), ("v31/from311", 1));
    v31.send(&ack_packet(PUBACK, p.pid));
    v31.publish("v311/from31", b"y", 2, false);
    let p = v311.expect_publish(WAIT);
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("v311/from31", &b"y"[..])
    );
}

// ---------------------------------------------------------------------------------------------
// $SYS
// ---------------------------------------------------------------------------------------------

#[test]
fn sys_broker_version_is_retained_and_uptime_is_published() {
    let broker = TestBroker::start("sys_interval 1\n");
    let mut sub = RawClient::connected(broker.port, "sys-reader");
    sub.subscribe(&[("$SYS/broker/version", 0)]);
    let p = sub.expect_publish(WAIT);
    assert_eq!(p.topic, "$SYS/broker/version");
    assert!(p.retain, "version is retained");
    assert!(!p.payload.is_empty(), "version text is not empty");

    sub.subscribe(&[("$SYS/broker/uptime", 0)]);
    let p = sub.expect_publish(Duration::from_secs(3));
    assert_eq!(p.topic, "$SYS/broker/uptime");
    assert!(!p.payload.is_empty());
}
