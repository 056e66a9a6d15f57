//! Codec tests across modules: round trips of every packet in every version,
//! every malformed case the decoder must catch, framing boundaries, and
//! randomized inputs (fixed seeds) that must never panic.

use super::decode::{decode, fixed_header, peek_connect_version, DecodeError, Decoded};
use super::encode::{encode, encode_publish, remaining_length_size, write_remaining_length};
use super::packet_type as pt;
use super::properties::{Properties, Property, PropertyWriter};
use super::*;

const ALL: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];
const V3: [ProtocolVersion; 2] = [ProtocolVersion::V31, ProtocolVersion::V311];
const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------
// helpers

/// Length-prefixed bytes.
fn s(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    write_remaining_length(&mut v, body.len());
    v.extend_from_slice(body);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn props(list: &[Property<'_>]) -> Vec<u8> {
    let mut w = PropertyWriter::new();
    for p in list {
        w.push(*p);
    }
    w.as_bytes().to_vec()
}

/// Property block with its length prefix, as it appears in a v5 packet.
fn pblock(list: &[Property<'_>]) -> Vec<u8> {
    let raw = props(list);
    let mut v = Vec::new();
    write_remaining_length(&mut v, raw.len());
    v.extend_from_slice(&raw);
    v
}

fn dec(buf: &[u8], v: ProtocolVersion) -> Result<Packet<'_>, DecodeError> {
    match decode(buf, v, 0)? {
        Decoded::Packet(p, n) => {
            assert_eq!(n, buf.len(), "consumed length");
            Ok(p)
        }
        Decoded::Incomplete => panic!("unexpected Incomplete for {buf:02x?}"),
    }
}

fn err(buf: &[u8], v: ProtocolVersion) -> DecodeError {
    match decode(buf, v, 0) {
        Err(e) => e,
        other => panic!("expected an error for {buf:02x?} in {v:?}, got {other:?}"),
    }
}

fn sub_raw(list: &[(&str, u8)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (f, o) in list {
        v.extend(s(f.as_bytes()));
        v.push(*o);
    }
    v
}

fn unsub_raw(list: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for f in list {
        v.extend(s(f.as_bytes()));
    }
    v
}

/// Encode, decode, compare; re-encode to the same bytes; every strict
/// prefix must be Incomplete (never an error).
fn round_trip(p: &Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let mut bytes = vec![0xEE; 3]; // encode appends; make sure it does
    encode(p, v, &mut bytes);
    let bytes = bytes.split_off(3);
    match decode(&bytes, v, 0) {
        Ok(Decoded::Packet(q, n)) => {
            assert_eq!(&q, p, "round trip in {v:?}: {bytes:02x?}");
            assert_eq!(n, bytes.len());
            let mut again = Vec::new();
            encode(&q, v, &mut again);
            assert_eq!(again, bytes, "re-encode in {v:?}");
        }
        other => panic!("round trip of {p:?} in {v:?} gave {other:?} for {bytes:02x?}"),
    }
    // The exact size limit passes, one less fails.
    assert!(matches!(
        decode(&bytes, v, bytes.len() as u32),
        Ok(Decoded::Packet(..))
    ));
    assert_eq!(
        decode(&bytes, v, bytes.len() as u32 - 1),
        Err(DecodeError::PacketTooLarge)
    );
    for cut in 0..bytes.len() {
        assert_eq!(
            decode(&bytes[..cut], v, 0),
            Ok(Decoded::Incomplete),
            "prefix {cut} of {bytes:02x?} in {v:?}"
        );
    }
    // Trailing bytes of a following packet are not consumed.
    let mut two = bytes.clone();
    two.extend_from_slice(&[0xC0, 0x00]);
    match decode(&two, v, 0) {
        Ok(Decoded::Packet(_, n)) => assert_eq!(n, bytes.len()),
        other => panic!("{other:?}"),
    }
    bytes
}

struct Xorshift(u64);
impl Xorshift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// round trips

#[test]
fn round_trip_connect() {
    let cprops = props(&[
        Property::SessionExpiryInterval(3600),
        Property::ReceiveMaximum(100),
        Property::MaximumPacketSize(65_536),
        Property::TopicAliasMaximum(10),
        Property::RequestResponseInformation(1),
        Property::RequestProblemInformation(0),
        Property::UserProperty("a", "b"),
        Property::UserProperty("a", "c"),
        Property::AuthenticationMethod("SCRAM-SHA-1"),
        Property::AuthenticationData(b"\x00\x01"),
    ]);
    let wprops = props(&[
        Property::WillDelayInterval(30),
        Property::PayloadFormatIndicator(1),
        Property::MessageExpiryInterval(60),
        Property::ContentType("text/plain"),
        Property::ResponseTopic("resp/t"),
        Property::CorrelationData(b"corr"),
        Property::UserProperty("k", "v"),
    ]);
    for v in ALL {
        let v5 = v.is_v5();
        let pick = |raw: &'static [u8]| {
            if v5 {
                Properties::from_raw_unchecked(raw)
            } else {
                Properties::EMPTY
            }
        };
        let cp: &'static [u8] = Box::leak(cprops.clone().into_boxed_slice());
        let wp: &'static [u8] = Box::leak(wprops.clone().into_boxed_slice());
        let minimal = Connect {
            version: v,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::EMPTY,
            client_id: "client-1",
            will: None,
            username: None,
            password: None,
        };
        round_trip(&Packet::Connect(minimal), v);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let full = Connect {
                version: v,
                clean_start: qos != QoS::AtLeastOnce,
                keep_alive: 0xFFFF,
                properties: pick(cp),
                client_id: "cl\u{FFFF}ient",
                will: Some(Will {
                    topic: "will/topic",
                    payload: b"\x00bye\xff",
                    qos,
                    retain: qos == QoS::ExactlyOnce,
                    properties: pick(wp),
                }),
                username: Some("user"),
                password: Some(b"p\x00ss"),
            };
            round_trip(&Packet::Connect(full), v);
        }
        let user_only = Connect {
            username: Some(""),
            will: Some(Will {
                topic: "w",
                payload: b"",
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties::EMPTY,
            }),
            ..minimal
        };
        round_trip(&Packet::Connect(user_only), v);
        if v != V31 {
            // Empty client id with clean start is fine from 3.1.1 on.
            round_trip(
                &Packet::Connect(Connect {
                    client_id: "",
                    ..minimal
                }),
                v,
            );
        }
    }
    // v5 allows a password without a user name; v5 allows an empty client
    // id without clean start (the server assigns one).
    let pw_only = Connect {
        version: V5,
        clean_start: false,
        keep_alive: 10,
        properties: Properties::EMPTY,
        client_id: "",
        will: None,
        username: None,
        password: Some(b"secret"),
    };
    round_trip(&Packet::Connect(pw_only), V5);
}

#[test]
fn round_trip_connack() {
    let raw = props(&[
        Property::SessionExpiryInterval(0),
        Property::ReceiveMaximum(20),
        Property::MaximumQoS(1),
        Property::RetainAvailable(1),
        Property::MaximumPacketSize(1 << 20),
        Property::AssignedClientIdentifier("auto-XYZ"),
        Property::TopicAliasMaximum(5),
        Property::ReasonString("welcome"),
        Property::UserProperty("x", "y"),
        Property::WildcardSubscriptionAvailable(1),
        Property::SubscriptionIdentifierAvailable(1),
        Property::SharedSubscriptionAvailable(0),
        Property::ServerKeepAlive(120),
        Property::ResponseInformation("r/"),
        Property::ServerReference("elsewhere"),
        Property::AuthenticationMethod("m"),
        Property::AuthenticationData(b"d"),
    ]);
    for v in ALL {
        let codes: [(bool, u8); 4] = if v.is_v5() {
            [(false, 0), (true, 0), (false, 0x87), (false, 0x85)]
        } else {
            [(false, 0), (true, 0), (false, 5), (false, 2)]
        };
        for (sp, code) in codes {
            let c = Connack {
                session_present: sp,
                code,
                properties: Properties::EMPTY,
            };
            let bytes = round_trip(&Packet::Connack(c), v);
            assert_eq!(bytes.len(), if v.is_v5() { 5 } else { 4 });
        }
    }
    for code in [0x00, 0x80, 0x86, 0x87, 0x9F] {
        let c = Connack {
            session_present: code == 0,
            code,
            properties: Properties::from_raw_unchecked(&raw),
        };
        round_trip(&Packet::Connack(c), V5);
    }
}

#[test]
fn round_trip_publish() {
    let raw = props(&[
        Property::PayloadFormatIndicator(0),
        Property::MessageExpiryInterval(10),
        Property::TopicAlias(3),
        Property::ResponseTopic("reply"),
        Property::CorrelationData(b"id"),
        Property::UserProperty("u", "1"),
        Property::UserProperty("u", "2"),
        Property::SubscriptionIdentifier(1),
        Property::SubscriptionIdentifier(268_435_455),
        Property::ContentType("application/octet-stream"),
    ]);
    let big = vec![0x5Au8; 70_000];
    for v in ALL {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for retain in [false, true] {
                for payload in [&b""[..], b"hello", &big] {
                    let p = Publish {
                        dup: qos != QoS::AtMostOnce && retain,
                        qos,
                        retain,
                        topic: "a/b/c/\u{00e9}t\u{00e9}",
                        packet_id: if qos == QoS::AtMostOnce { 0 } else { 65_535 },
                        properties: Properties::EMPTY,
                        payload,
                    };
                    round_trip(&Packet::Publish(p), v);
                    if v.is_v5() {
                        let p = Publish {
                            properties: Properties::from_raw_unchecked(&raw),
                            ..p
                        };
                        round_trip(&Packet::Publish(p), v);
                    }
                }
            }
        }
    }
    // v5: empty topic with a topic alias.
    let alias = props(&[Property::TopicAlias(1)]);
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "",
        packet_id: 0,
        properties: Properties::from_raw_unchecked(&alias),
        payload: b"x",
    };
    round_trip(&Packet::Publish(p), V5);
    // 3.1 tolerates DUP on QoS 0.
    let p = Publish {
        dup: true,
        topic: "t",
        properties: Properties::EMPTY,
        ..p
    };
    round_trip(&Packet::Publish(p), V31);
}

#[test]
fn round_trip_acks() {
    let raw = props(&[
        Property::ReasonString("r"),
        Property::UserProperty("a", "b"),
    ]);
    fn wrap(ty: u8, a: Ack<'_>) -> Packet<'_> {
        match ty {
            pt::PUBACK => Packet::Puback(a),
            pt::PUBREC => Packet::Pubrec(a),
            pt::PUBREL => Packet::Pubrel(a),
            _ => Packet::Pubcomp(a),
        }
    }
    let kinds: [(u8, &[u8]); 4] = [
        (
            pt::PUBACK,
            &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
        ),
        (
            pt::PUBREC,
            &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
        ),
        (pt::PUBREL, &[0x00, 0x92]),
        (pt::PUBCOMP, &[0x00, 0x92]),
    ];
    for (ty, codes) in kinds {
        for v in ALL {
            let a = Ack {
                packet_id: 1,
                reason: 0,
                properties: Properties::EMPTY,
            };
            assert_eq!(round_trip(&wrap(ty, a), v).len(), 4);
        }
        for &code in codes {
            let a = Ack {
                packet_id: 0xBEEF,
                reason: code,
                properties: Properties::EMPTY,
            };
            let n = round_trip(&wrap(ty, a), V5).len();
            assert_eq!(n, if code == 0 { 4 } else { 5 });
            let a = Ack {
                properties: Properties::from_raw_unchecked(&raw),
                ..a
            };
            round_trip(&wrap(ty, a), V5);
        }
    }
    // 3.1.x drops the reason: encoding with a reason decodes as success.
    let mut out = Vec::new();
    let a = Ack {
        packet_id: 9,
        reason: 0x92,
        properties: Properties::from_raw_unchecked(&raw),
    };
    encode(&Packet::Pubcomp(a), V311, &mut out);
    assert_eq!(out, [0x70, 2, 0, 9]);
}

#[test]
fn round_trip_subscribe_family() {
    let sprops = props(&[
        Property::SubscriptionIdentifier(42),
        Property::UserProperty("k", "v"),
    ]);
    let rprops = props(&[
        Property::ReasonString("why"),
        Property::UserProperty("k", "v"),
    ]);
    let v3_filters = sub_raw(&[("a/+", 0), ("#", 1), ("$SYS/x", 2)]);
    let v5_filters = sub_raw(&[
        ("a/+", 0x00),
        ("b/#", 0x01 | 0x04),
        ("c", 0x02 | 0x08 | 0x10),
        ("$share/g/d", 0x01 | 0x20),
    ]);
    let unsub = unsub_raw(&["a/+", "#", "$share/g/d"]);
    for v in ALL {
        let v5 = v.is_v5();
        let s = Subscribe {
            packet_id: 10,
            properties: Properties::EMPTY,
            filters: SubscribeFilters::from_raw(if v5 { &v5_filters } else { &v3_filters }),
        };
        round_trip(&Packet::Subscribe(s), v);
        let sa = Suback {
            packet_id: 10,
            properties: Properties::EMPTY,
            codes: &[0, 1, 2, 0x80],
        };
        round_trip(&Packet::Suback(sa), v);
        let u = Unsubscribe {
            packet_id: 11,
            properties: Properties::EMPTY,
            filters: UnsubscribeFilters::from_raw(&unsub),
        };
        round_trip(&Packet::Unsubscribe(u), v);
        let ua = Unsuback {
            packet_id: 11,
            properties: Properties::EMPTY,
            codes: if v5 { &[0x00, 0x11, 0x87] } else { &[] },
        };
        let bytes = round_trip(&Packet::Unsuback(ua), v);
        if !v5 {
            assert_eq!(bytes, [0xB0, 2, 0, 11]);
        }
        if v5 {
            round_trip(
                &Packet::Subscribe(Subscribe {
                    properties: Properties::from_raw_unchecked(&sprops),
                    ..s
                }),
                v,
            );
            round_trip(
                &Packet::Suback(Suback {
                    properties: Properties::from_raw_unchecked(&rprops),
                    codes: &[
                        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
                    ],
                    ..sa
                }),
                v,
            );
            round_trip(
                &Packet::Unsubscribe(Unsubscribe {
                    properties: Properties::from_raw_unchecked(&props(&[Property::UserProperty(
                        "x", "",
                    )])),
                    ..u
                }),
                v,
            );
            round_trip(
                &Packet::Unsuback(Unsuback {
                    properties: Properties::from_raw_unchecked(&rprops),
                    codes: &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
                    ..ua
                }),
                v,
            );
        }
    }
    // Encoding v5 options for a 3.1.1 peer keeps only the QoS bits.
    let s = Subscribe {
        packet_id: 1,
        properties: Properties::EMPTY,
        filters: SubscribeFilters::from_raw(&v5_filters),
    };
    let mut out = Vec::new();
    encode(&Packet::Subscribe(s), V311, &mut out);
    match dec(&out, V311).unwrap() {
        Packet::Subscribe(d) => {
            let got: Vec<_> = d.filters.iter().map(|(f, o)| (f, o.to_byte())).collect();
            assert_eq!(
                got,
                vec![("a/+", 0), ("b/#", 1), ("c", 2), ("$share/g/d", 1)]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn round_trip_ping_disconnect_auth() {
    for v in ALL {
        assert_eq!(round_trip(&Packet::Pingreq, v), [0xC0, 0]);
        assert_eq!(round_trip(&Packet::Pingresp, v), [0xD0, 0]);
        let d = Disconnect {
            reason: 0,
            properties: Properties::EMPTY,
        };
        assert_eq!(round_trip(&Packet::Disconnect(d), v), [0xE0, 0]);
    }
    let dprops = props(&[
        Property::SessionExpiryInterval(0),
        Property::ReasonString("bye"),
        Property::ServerReference("other"),
        Property::UserProperty("a", "b"),
    ]);
    for reason in [0x00, 0x04, 0x8B, 0x8E, 0x98] {
        let d = Disconnect {
            reason,
            properties: Properties::EMPTY,
        };
        let b = round_trip(&Packet::Disconnect(d), V5);
        assert_eq!(b.len(), if reason == 0 { 2 } else { 3 });
        let d = Disconnect {
            reason,
            properties: Properties::from_raw_unchecked(&dprops),
        };
        round_trip(&Packet::Disconnect(d), V5);
    }
    // 3.1.x drops the reason.
    let mut out = Vec::new();
    let d = Disconnect {
        reason: 0x8B,
        properties: Properties::from_raw_unchecked(&dprops),
    };
    encode(&Packet::Disconnect(d), V311, &mut out);
    assert_eq!(out, [0xE0, 0]);

    let aprops = props(&[
        Property::AuthenticationMethod("SCRAM"),
        Property::AuthenticationData(b"abc"),
        Property::ReasonString("more"),
        Property::UserProperty("a", "b"),
    ]);
    let a = Auth {
        reason: 0,
        properties: Properties::EMPTY,
    };
    assert_eq!(round_trip(&Packet::Auth(a), V5), [0xF0, 0]);
    for reason in [0x00, 0x18, 0x19] {
        let a = Auth {
            reason,
            properties: Properties::from_raw_unchecked(&aprops),
        };
        round_trip(&Packet::Auth(a), V5);
        let a = Auth {
            reason,
            properties: Properties::EMPTY,
        };
        round_trip(&Packet::Auth(a), V5);
    }
    // AUTH does not exist before 5.0: nothing is written.
    let mut out = Vec::new();
    encode(&Packet::Auth(a), V311, &mut out);
    assert!(out.is_empty());
}

#[test]
fn publish_hot_path_matches_generic_encoder() {
    let base = props(&[
        Property::MessageExpiryInterval(5),
        Property::UserProperty("a", "b"),
    ]);
    let extra = [Property::SubscriptionIdentifier(7), Property::TopicAlias(2)];
    let mut out = Vec::new();
    let n = encode_publish(
        &mut out,
        V5,
        false,
        QoS::AtLeastOnce,
        true,
        "x/y",
        3,
        &base,
        &extra,
        b"data",
    );
    assert_eq!(n, out.len());
    let mut all = base.clone();
    for p in &extra {
        p.encode(&mut all);
    }
    let expect = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "x/y",
        packet_id: 3,
        properties: Properties::from_raw_unchecked(&all),
        payload: b"data",
    });
    assert_eq!(dec(&out, V5).unwrap(), expect);
    let mut generic = Vec::new();
    encode(&expect, V5, &mut generic);
    assert_eq!(generic, out);
    // 3.1.1: properties and extras vanish.
    out.clear();
    encode_publish(
        &mut out,
        V311,
        false,
        QoS::AtMostOnce,
        false,
        "x",
        99,
        &base,
        &extra,
        b"d",
    );
    assert_eq!(out, [0x30, 4, 0, 1, b'x', b'd']);
}

// ---------------------------------------------------------------------------
// framing

#[test]
fn remaining_length_boundaries() {
    let cases: &[(usize, usize)] = &[
        (127, 1),
        (128, 2),
        (16_383, 2),
        (16_384, 3),
        (2_097_151, 3),
        (2_097_152, 4),
        (268_435_455, 4),
    ];
    for &(len, size) in cases {
        assert_eq!(remaining_length_size(len), size);
        let mut hdr = vec![0x30];
        write_remaining_length(&mut hdr, len);
        assert_eq!(hdr.len(), 1 + size);
        assert_eq!(fixed_header(&hdr), Ok(Some((1 + size, len))));
        // Header alone: waiting for the body, unless the limit says no.
        assert_eq!(decode(&hdr, V311, 0), Ok(Decoded::Incomplete));
        let total = (1 + size + len) as u32;
        assert_eq!(decode(&hdr, V311, total), Ok(Decoded::Incomplete));
        assert_eq!(
            decode(&hdr, V311, total - 1),
            Err(DecodeError::PacketTooLarge)
        );
        for cut in 0..hdr.len() {
            assert_eq!(fixed_header(&hdr[..cut]), Ok(None));
        }
    }
    // Full packets at the boundaries that are cheap to allocate.
    for &(len, size) in &cases[..6] {
        let payload = vec![b'p'; len - 3];
        let mut out = Vec::new();
        let n = encode_publish(
            &mut out,
            V311,
            false,
            QoS::AtMostOnce,
            false,
            "t",
            0,
            &[],
            &[],
            &payload,
        );
        assert_eq!(n, 1 + size + len);
        match dec(&out, V311).unwrap() {
            Packet::Publish(p) => assert_eq!(p.payload.len(), len - 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode(&out[..out.len() - 1], V311, 0),
            Ok(Decoded::Incomplete)
        );
    }
}

#[test]
fn remaining_length_over_four_bytes() {
    let buf = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert_eq!(fixed_header(&buf), Err(DecodeError::RemainingLengthTooLong));
    assert_eq!(err(&buf, V311), DecodeError::RemainingLengthTooLong);
    // Detected as soon as the fifth byte would be needed.
    assert_eq!(
        decode(&[0x30, 0x80, 0x80, 0x80, 0x80], V5, 0),
        Err(DecodeError::RemainingLengthTooLong)
    );
    assert_eq!(
        decode(&[0x30, 0x80, 0x80, 0x80], V5, 0),
        Ok(Decoded::Incomplete)
    );
}

#[test]
fn max_packet_size_from_fixed_header_alone() {
    // A 256 MB claim with only five bytes present.
    let buf = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    assert_eq!(decode(&buf, V5, 1024), Err(DecodeError::PacketTooLarge));
    assert_eq!(decode(&buf, V5, 0), Ok(Decoded::Incomplete));
    // Two-byte header claiming 200 bytes against a 100 byte limit.
    assert_eq!(
        decode(&[0x30, 0xC8, 0x01], V311, 100),
        Err(DecodeError::PacketTooLarge)
    );
    assert_eq!(
        DecodeError::PacketTooLarge.reason_code().code(),
        reason::PACKET_TOO_LARGE
    );
}

#[test]
fn incomplete_is_never_an_error_on_empty_or_partial_header() {
    for v in ALL {
        assert_eq!(decode(&[], v, 0), Ok(Decoded::Incomplete));
        assert_eq!(decode(&[0x30], v, 0), Ok(Decoded::Incomplete));
        assert_eq!(decode(&[0x10, 0x80], v, 0), Ok(Decoded::Incomplete));
    }
}

// ---------------------------------------------------------------------------
// fixed header flags and packet types

#[test]
fn reserved_flags() {
    // The packets Mosquitto 2.0.11 checks: PUBREL, SUBSCRIBE, UNSUBSCRIBE
    // (0b0010) and DISCONNECT (0). Refused from the first byte alone.
    let checked: &[(u8, u8, Vec<u8>)] = &[
        (pt::PUBREL, 2, vec![0, 1]),
        (pt::SUBSCRIBE, 2, cat(&[&[0, 1], &sub_raw(&[("a", 0)])])),
        (pt::UNSUBSCRIBE, 2, cat(&[&[0, 1], &unsub_raw(&["a"])])),
        (pt::DISCONNECT, 0, vec![]),
    ];
    for (ty, good, body) in checked {
        let good_pkt = frame((ty << 4) | good, body);
        assert!(dec(&good_pkt, V311).is_ok(), "type {ty}");
        for flags in 0..16u8 {
            if flags == *good {
                continue;
            }
            let pkt = frame((ty << 4) | flags, body);
            assert_eq!(
                err(&pkt, V311),
                DecodeError::ReservedFlags,
                "type {ty} flags {flags}"
            );
            assert_eq!(decode(&pkt[..1], V311, 0), Err(DecodeError::ReservedFlags));
            // MQTT 3.1 does not reserve these bits (DUP/QoS on PUBREL etc.).
            assert!(dec(&pkt, V31).is_ok(), "3.1 type {ty} flags {flags}");
        }
    }
    // The rest Mosquitto lets through whatever their flags, and so does midge.
    let tolerated: &[(u8, Vec<u8>)] = &[
        (pt::CONNACK, vec![0, 0]),
        (pt::PUBACK, vec![0, 1]),
        (pt::PUBREC, vec![0, 1]),
        (pt::PUBCOMP, vec![0, 1]),
        (pt::SUBACK, vec![0, 1, 0]),
        (pt::UNSUBACK, vec![0, 1]),
        (pt::PINGREQ, vec![]),
        (pt::PINGRESP, vec![]),
    ];
    for (ty, body) in tolerated {
        for flags in 0..16u8 {
            let pkt = frame((ty << 4) | flags, body);
            assert!(dec(&pkt, V311).is_ok(), "type {ty} flags {flags}");
        }
    }
    assert!(dec(&frame(0x41, &[0, 1]), V5).is_ok());
    assert!(dec(&frame(0xF1, &[]), V5).is_ok());
    assert_eq!(
        err(&frame(0x80, &cat(&[&[0, 1, 0], &sub_raw(&[("a", 0)])])), V5),
        DecodeError::ReservedFlags
    );
    // CONNECT: reserved in 3.1.1 and 5.0, ignored for MQIsdp.
    let body = cat(&[&s(b"MQTT"), &[4, 2, 0, 60], &s(b"id")]);
    assert_eq!(err(&frame(0x11, &body), V311), DecodeError::ReservedFlags);
    let body31 = cat(&[&s(b"MQIsdp"), &[3, 2, 0, 60], &s(b"id")]);
    assert!(matches!(
        dec(&frame(0x11, &body31), V311),
        Ok(Packet::Connect(_))
    ));
}

#[test]
fn unknown_packet_types() {
    for v in ALL {
        assert_eq!(err(&[0x00, 0x00], v), DecodeError::UnknownPacketType);
        assert_eq!(decode(&[0x00], v, 0), Err(DecodeError::UnknownPacketType));
    }
    for v in V3 {
        assert_eq!(err(&[0xF0, 0x00], v), DecodeError::UnknownPacketType);
    }
    assert!(matches!(dec(&[0xF0, 0x00], V5), Ok(Packet::Auth(_))));
}

// ---------------------------------------------------------------------------
// PUBLISH

fn publish_bytes(
    first: u8,
    topic: &[u8],
    id: Option<u16>,
    v5_props: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = s(topic);
    if let Some(id) = id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    if let Some(p) = v5_props {
        body.extend_from_slice(p);
    }
    body.extend_from_slice(payload);
    frame(first, &body)
}

#[test]
fn publish_qos3() {
    for v in ALL {
        for flags in [0x06u8, 0x07, 0x0E, 0x0F] {
            let pkt = publish_bytes(0x30 | flags, b"t", Some(1), None, b"");
            assert_eq!(err(&pkt, v), DecodeError::InvalidQoS);
            assert_eq!(decode(&pkt[..1], v, 0), Err(DecodeError::InvalidQoS));
        }
    }
}

/// [MQTT-3.3.1-2] forbids DUP on QoS 0, but Mosquitto 2.0.11 accepts it and
/// delivers the message, so midge does too (every version).
#[test]
fn publish_dup_on_qos0_is_accepted_as_mosquitto_does() {
    let pkt = publish_bytes(0x38, b"t", None, None, b"x");
    let pkt5 = publish_bytes(0x38, b"t", None, Some(&[0]), b"x");
    assert!(matches!(dec(&pkt, V311), Ok(Packet::Publish(p)) if p.dup));
    assert!(matches!(dec(&pkt5, V5), Ok(Packet::Publish(p)) if p.dup));
    assert!(matches!(dec(&pkt, V31), Ok(Packet::Publish(p)) if p.dup));
}

#[test]
fn publish_wildcards_in_topic() {
    for topic in [&b"a/+"[..], b"#", b"a/#", b"+", b"a+b", b"sport/tennis#"] {
        for v in V3 {
            assert_eq!(
                err(&publish_bytes(0x30, topic, None, None, b""), v),
                DecodeError::WildcardInTopicName
            );
        }
        assert_eq!(
            err(&publish_bytes(0x32, topic, Some(1), Some(&[0]), b""), V5),
            DecodeError::WildcardInTopicName
        );
    }
}

#[test]
fn publish_bad_strings() {
    for v in V3 {
        assert_eq!(
            err(&publish_bytes(0x30, b"a\xff", None, None, b""), v),
            DecodeError::InvalidUtf8
        );
        // Overlong encoding of '/' and an encoded surrogate are not UTF-8.
        assert_eq!(
            err(&publish_bytes(0x30, b"a\xc0\xaf", None, None, b""), v),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            err(&publish_bytes(0x30, b"\xed\xa0\x80", None, None, b""), v),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            err(&publish_bytes(0x30, b"a\x00b", None, None, b""), v),
            DecodeError::NullCharacter
        );
        // U+FFFF and control characters are allowed (SHOULD NOT, not MUST NOT).
        let ok = publish_bytes(0x30, "a\u{FFFF}\u{1}".as_bytes(), None, None, b"");
        assert!(matches!(dec(&ok, v), Ok(Packet::Publish(p)) if p.topic == "a\u{FFFF}\u{1}"));
    }
    assert_eq!(
        err(&publish_bytes(0x30, b"\xff", None, Some(&[0]), b""), V5),
        DecodeError::InvalidUtf8
    );
    assert_eq!(
        err(&publish_bytes(0x30, b"\x00", None, Some(&[0]), b""), V5),
        DecodeError::NullCharacter
    );
    // The payload is opaque bytes.
    assert!(dec(&publish_bytes(0x30, b"t", None, None, b"\xff\x00"), V311).is_ok());
}

#[test]
fn publish_empty_topic() {
    for v in V3 {
        assert_eq!(
            err(&publish_bytes(0x30, b"", None, None, b"x"), v),
            DecodeError::EmptyTopic
        );
    }
    assert_eq!(
        err(&publish_bytes(0x30, b"", None, Some(&[0]), b"x"), V5),
        DecodeError::EmptyTopic
    );
    let other = pblock(&[Property::MessageExpiryInterval(1)]);
    assert_eq!(
        err(&publish_bytes(0x30, b"", None, Some(&other), b"x"), V5),
        DecodeError::EmptyTopic
    );
    let alias = pblock(&[Property::TopicAlias(4)]);
    match dec(&publish_bytes(0x30, b"", None, Some(&alias), b"x"), V5).unwrap() {
        Packet::Publish(p) => {
            assert_eq!(p.topic, "");
            assert_eq!(p.properties.topic_alias(), Some(4));
        }
        other => panic!("{other:?}"),
    }
    let zero = pblock(&[Property::TopicAlias(0)]);
    assert_eq!(
        err(&publish_bytes(0x30, b"t", None, Some(&zero), b"x"), V5),
        DecodeError::TopicAliasZero
    );
    assert_eq!(
        DecodeError::TopicAliasZero.reason_code().code(),
        reason::TOPIC_ALIAS_INVALID
    );
}

#[test]
fn publish_fields_and_truncation() {
    // QoS 1 with the packet id cut off by the remaining length.
    assert_eq!(
        err(&frame(0x32, &[0, 1, b't', 0]), V311),
        DecodeError::Truncated
    );
    // Topic length larger than the packet.
    assert_eq!(
        err(&frame(0x30, &[0, 9, b't']), V311),
        DecodeError::Truncated
    );
    // v5 property length larger than what is left.
    assert_eq!(
        err(&frame(0x30, &[0, 1, b't', 5, 1, 1]), V5),
        DecodeError::Truncated
    );
    // v5 property length varint too long.
    assert_eq!(
        err(
            &frame(0x30, &[0, 1, b't', 0x80, 0x80, 0x80, 0x80, 0x01]),
            V5
        ),
        DecodeError::VariableByteIntegerTooLong
    );
    // v5 PUBLISH missing the property length altogether.
    assert_eq!(err(&frame(0x30, &[0, 1, b't']), V5), DecodeError::Truncated);
    // Decoded fields.
    let pkt = publish_bytes(0x3D, b"x/y", Some(0x0102), None, b"pl");
    match dec(&pkt, V311).unwrap() {
        Packet::Publish(p) => {
            assert!(p.dup && p.retain);
            assert_eq!(p.qos, QoS::ExactlyOnce);
            assert_eq!(p.packet_id, 0x0102);
            assert_eq!(p.topic, "x/y");
            assert_eq!(p.payload, b"pl");
            assert!(p.properties.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn publish_property_rules() {
    let bad = [
        (
            pblock(&[Property::SessionExpiryInterval(1)]),
            DecodeError::PropertyNotAllowed,
        ),
        (
            pblock(&[Property::ReasonString("r")]),
            DecodeError::PropertyNotAllowed,
        ),
        (
            pblock(&[
                Property::MessageExpiryInterval(1),
                Property::MessageExpiryInterval(2),
            ]),
            DecodeError::DuplicateProperty,
        ),
        (
            pblock(&[Property::TopicAlias(1), Property::TopicAlias(1)]),
            DecodeError::DuplicateProperty,
        ),
        (vec![2, 0x7F, 0], DecodeError::InvalidPropertyId),
        (vec![2, 0x00, 0], DecodeError::InvalidPropertyId),
        (
            pblock(&[Property::SubscriptionIdentifier(0)]),
            DecodeError::InvalidPropertyValue,
        ),
    ];
    for (block, e) in bad {
        assert_eq!(
            err(&publish_bytes(0x30, b"t", None, Some(&block), b""), V5),
            e,
            "{block:02x?}"
        );
    }
    assert_eq!(
        DecodeError::PropertyNotAllowed.reason_code().code(),
        reason::MALFORMED_PACKET
    );
    assert_eq!(
        DecodeError::InvalidPropertyId.reason_code().code(),
        reason::MALFORMED_PACKET
    );
    assert_eq!(
        DecodeError::DuplicateProperty.reason_code().code(),
        reason::PROTOCOL_ERROR
    );
}

// ---------------------------------------------------------------------------
// packet identifiers

#[test]
fn zero_packet_ids() {
    for v in ALL {
        let p5: &[u8] = if v.is_v5() { &[0] } else { &[] };
        let cases: Vec<Vec<u8>> = vec![
            publish_bytes(0x32, b"t", Some(0), Some(p5), b""),
            publish_bytes(0x34, b"t", Some(0), Some(p5), b""),
            frame(0x40, &[0, 0]),
            frame(0x50, &[0, 0]),
            frame(0x62, &[0, 0]),
            frame(0x70, &[0, 0]),
            frame(0x82, &cat(&[&[0, 0], p5, &sub_raw(&[("a", 0)])])),
            frame(0x90, &cat(&[&[0, 0], p5, &[0]])),
            frame(0xA2, &cat(&[&[0, 0], p5, &unsub_raw(&["a"])])),
            frame(
                0xB0,
                &cat(&[&[0, 0], p5, if v.is_v5() { &[0] } else { &[] }]),
            ),
        ];
        for pkt in cases {
            assert_eq!(err(&pkt, v), DecodeError::ZeroPacketId, "{pkt:02x?} {v:?}");
        }
        // QoS 0 has no packet id at all: the bytes are payload.
        let q0 = publish_bytes(0x30, b"t", Some(0), Some(p5), b"");
        assert!(
            matches!(dec(&q0, v), Ok(Packet::Publish(p)) if p.packet_id == 0 && p.payload == [0, 0])
        );
    }
}

// ---------------------------------------------------------------------------
// acks

#[test]
fn ack_lengths() {
    for v in V3 {
        // Mosquitto reads the packet id and ignores what follows.
        assert!(
            matches!(dec(&frame(0x40, &[0, 1, 0]), v), Ok(Packet::Puback(a)) if a.packet_id == 1)
        );
        assert_eq!(err(&frame(0x40, &[0]), v), DecodeError::Truncated);
        assert_eq!(err(&frame(0xB0, &[0, 1, 0]), v), DecodeError::TrailingBytes);
    }
    // v5: 2 bytes => success; 3 => reason; 4 => reason + empty properties.
    let get = |b: &[u8]| match dec(&frame(0x50, b), V5).unwrap() {
        Packet::Pubrec(a) => (
            a.packet_id,
            a.reason,
            a.properties.reason_string().map(str::to_owned),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(get(&[0, 7]), (7, 0, None));
    assert_eq!(get(&[0, 7, 0x10]), (7, 0x10, None));
    assert_eq!(get(&[0, 7, 0x80, 0]), (7, 0x80, None));
    let with = cat(&[&[0, 7, 0x97], &pblock(&[Property::ReasonString("quota")])]);
    assert_eq!(get(&with), (7, 0x97, Some("quota".to_owned())));
    assert_eq!(get(&[0, 7, 0, 0, 0xFF]), (7, 0, None));
    assert_eq!(
        err(&frame(0x50, &[0, 7, 0, 3, 0x1F, 0]), V5),
        DecodeError::Truncated
    );
    // Reason codes outside the spec's table are accepted, as Mosquitto
    // does (it sends 0x95 in PUBACK itself).
    for (t, code) in [(0x40, 0x92), (0x40, 0x95), (0x62, 0x10), (0x70, 0x80)] {
        match decode(&frame(t, &[0, 1, code]), V5, 0) {
            Ok(Decoded::Packet(_, _)) => {}
            other => panic!("{:#x} {:#x}: {:?}", t, code, other.err()),
        }
    }
    // Properties other than reason string / user property.
    let bad = cat(&[&[0, 1, 0], &pblock(&[Property::ContentType("x")])]);
    assert_eq!(err(&frame(0x40, &bad), V5), DecodeError::PropertyNotAllowed);
    let dup = cat(&[
        &[0, 1, 0],
        &pblock(&[Property::ReasonString("a"), Property::ReasonString("b")]),
    ]);
    assert_eq!(err(&frame(0x40, &dup), V5), DecodeError::DuplicateProperty);
}

// ---------------------------------------------------------------------------
// SUBSCRIBE / UNSUBSCRIBE / SUBACK / UNSUBACK

fn subscribe_bytes(v: ProtocolVersion, list: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = vec![0, 1];
    if v.is_v5() {
        body.push(0);
    }
    for (f, o) in list {
        body.extend(s(f));
        body.push(*o);
    }
    frame(0x82, &body)
}

#[test]
fn subscribe_rules() {
    for v in ALL {
        if v == V31 {
            // 3.1 did not require a filter: Mosquitto answers an empty SUBACK.
            assert!(matches!(
                dec(&subscribe_bytes(v, &[]), v),
                Ok(Packet::Subscribe(_))
            ));
        } else {
            assert_eq!(
                err(&subscribe_bytes(v, &[]), v),
                DecodeError::NoTopicFilters
            );
        }
        assert_eq!(
            err(&subscribe_bytes(v, &[(b"", 0)]), v),
            DecodeError::EmptyTopic
        );
        assert_eq!(
            err(&subscribe_bytes(v, &[(b"a", 0), (b"", 0)]), v),
            DecodeError::EmptyTopic
        );
        assert_eq!(
            err(&subscribe_bytes(v, &[(b"a", 3)]), v),
            DecodeError::InvalidQoS
        );
        assert_eq!(
            err(&subscribe_bytes(v, &[(b"a\xff", 0)]), v),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            err(&subscribe_bytes(v, &[(b"a\x00", 0)]), v),
            DecodeError::NullCharacter
        );
        assert_eq!(
            err(&subscribe_bytes(v, &[(b"a", 0x40)]), v),
            DecodeError::ReservedSubscriptionOptions
        );
        assert_eq!(
            err(&subscribe_bytes(v, &[(b"a", 0x80)]), v),
            DecodeError::ReservedSubscriptionOptions
        );
        // Filter without its options byte.
        let mut cut = subscribe_bytes(v, &[(b"a", 0)]);
        cut.pop();
        cut[1] -= 1;
        assert_eq!(err(&cut, v), DecodeError::Truncated);
    }
    for v in V3 {
        for o in [0x04, 0x08, 0x10, 0x20] {
            assert_eq!(
                err(&subscribe_bytes(v, &[(b"a", o)]), v),
                DecodeError::ReservedSubscriptionOptions
            );
        }
    }
    // v5 option bits.
    assert_eq!(
        err(&subscribe_bytes(V5, &[(b"a", 0x30)]), V5),
        DecodeError::InvalidRetainHandling
    );
    // No Local on a shared subscription: let through, as Mosquitto does.
    assert!(dec(&subscribe_bytes(V5, &[(b"$share/g/a", 0x04)]), V5).is_ok());
    match dec(
        &subscribe_bytes(V5, &[(b"a/+", 0x2E), (b"$share/g/a", 0x01)]),
        V5,
    )
    .unwrap()
    {
        Packet::Subscribe(sub) => {
            let got: Vec<_> = sub.filters.iter().collect();
            assert_eq!(got.len(), 2);
            assert_eq!(sub.filters.len(), 2);
            assert_eq!(got[0].0, "a/+");
            assert_eq!(
                got[0].1,
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 2
                }
            );
            assert_eq!(got[1].1.qos, QoS::AtLeastOnce);
        }
        other => panic!("{other:?}"),
    }
    // Subscription identifier: at most one, non-zero.
    let two_ids = cat(&[
        &[0, 1],
        &pblock(&[
            Property::SubscriptionIdentifier(1),
            Property::SubscriptionIdentifier(2),
        ]),
        &sub_raw(&[("a", 0)]),
    ]);
    assert_eq!(
        err(&frame(0x82, &two_ids), V5),
        DecodeError::DuplicateProperty
    );
    let not_allowed = cat(&[
        &[0, 1],
        &pblock(&[Property::TopicAlias(2)]),
        &sub_raw(&[("a", 0)]),
    ]);
    assert_eq!(
        err(&frame(0x82, &not_allowed), V5),
        DecodeError::PropertyNotAllowed
    );
    // Only the packet id: no filters (v5 also needs the property length).
    assert_eq!(err(&frame(0x82, &[0, 1]), V5), DecodeError::Truncated);
    assert_eq!(
        err(&frame(0x82, &[0, 1]), V311),
        DecodeError::NoTopicFilters
    );
}

#[test]
fn unsubscribe_rules() {
    for v in ALL {
        let p5: &[u8] = if v.is_v5() { &[0] } else { &[] };
        if v == V31 {
            assert!(dec(&frame(0xA2, &cat(&[&[0, 1], p5])), v).is_ok());
        } else {
            assert_eq!(
                err(&frame(0xA2, &cat(&[&[0, 1], p5])), v),
                DecodeError::NoTopicFilters
            );
        }
        assert_eq!(
            err(&frame(0xA2, &cat(&[&[0, 1], p5, &s(b"")])), v),
            DecodeError::EmptyTopic
        );
        assert_eq!(
            err(&frame(0xA2, &cat(&[&[0, 1], p5, &s(b"\xfe")])), v),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            err(&frame(0xA2, &cat(&[&[0, 1], p5, &s(b"\x00")])), v),
            DecodeError::NullCharacter
        );
        assert_eq!(
            err(&frame(0xA2, &cat(&[&[0, 1], p5, &[0, 5, b'a']])), v),
            DecodeError::Truncated
        );
        match dec(
            &frame(0xA2, &cat(&[&[0, 1], p5, &unsub_raw(&["a/#", "b"])])),
            v,
        )
        .unwrap()
        {
            Packet::Unsubscribe(u) => {
                assert_eq!(u.filters.iter().collect::<Vec<_>>(), vec!["a/#", "b"])
            }
            other => panic!("{other:?}"),
        }
    }
    let sid = cat(&[
        &[0, 1],
        &pblock(&[Property::SubscriptionIdentifier(1)]),
        &unsub_raw(&["a"]),
    ]);
    assert_eq!(err(&frame(0xA2, &sid), V5), DecodeError::PropertyNotAllowed);
}

#[test]
fn suback_unsuback_rules() {
    // 3.1 allowed an empty SUBSCRIBE, answered by an empty SUBACK.
    assert!(matches!(dec(&frame(0x90, &[0, 1]), V31), Ok(Packet::Suback(s)) if s.codes.is_empty()));
    assert_eq!(err(&frame(0x90, &[0, 1]), V311), DecodeError::NoReturnCodes);
    for v in V3 {
        assert_eq!(
            err(&frame(0x90, &[0, 1, 3]), v),
            DecodeError::InvalidReasonCode
        );
        assert_eq!(
            err(&frame(0x90, &[0, 1, 0x87]), v),
            DecodeError::InvalidReasonCode
        );
    }
    assert_eq!(
        err(&frame(0x90, &[0, 1, 0]), V5),
        DecodeError::NoReturnCodes
    );
    assert_eq!(
        err(&frame(0x90, &[0, 1, 0, 3]), V5),
        DecodeError::InvalidReasonCode
    );
    assert_eq!(
        err(&frame(0xB0, &[0, 1, 0]), V5),
        DecodeError::NoReturnCodes
    );
    assert_eq!(
        err(&frame(0xB0, &[0, 1, 0, 0x10]), V5),
        DecodeError::InvalidReasonCode
    );
    assert_eq!(err(&frame(0xB0, &[0, 1]), V5), DecodeError::Truncated);
}

// ---------------------------------------------------------------------------
// PINGREQ / DISCONNECT / AUTH / CONNACK

#[test]
fn empty_packets_have_no_body() {
    // Mosquitto never reads a PINGREQ/PINGRESP body: a stray byte is skipped.
    for v in ALL {
        assert!(matches!(
            decode(&[0xC0, 1, 0], v, 0),
            Ok(Decoded::Packet(Packet::Pingreq, 3))
        ));
        assert!(matches!(
            decode(&[0xD0, 1, 0], v, 0),
            Ok(Decoded::Packet(Packet::Pingresp, 3))
        ));
    }
    for v in V3 {
        assert_eq!(err(&[0xE0, 1, 0], v), DecodeError::TrailingBytes);
    }
}

#[test]
fn disconnect_and_auth_v5_forms() {
    assert!(
        matches!(dec(&[0xE0, 0], V5), Ok(Packet::Disconnect(d)) if d.reason == 0 && d.properties.is_empty())
    );
    assert!(matches!(dec(&[0xE0, 1, 0x04], V5), Ok(Packet::Disconnect(d)) if d.reason == 4));
    assert!(matches!(dec(&[0xE0, 2, 0x8E, 0], V5), Ok(Packet::Disconnect(d)) if d.reason == 0x8E));
    assert_eq!(err(&[0xE0, 1, 0x03], V5), DecodeError::InvalidReasonCode);
    assert_eq!(err(&[0xE0, 1, 0x18], V5), DecodeError::InvalidReasonCode);
    assert_eq!(err(&[0xE0, 3, 0, 0, 0], V5), DecodeError::TrailingBytes);
    let wrong = cat(&[&[0], &pblock(&[Property::ReceiveMaximum(1)])]);
    assert_eq!(
        err(&frame(0xE0, &wrong), V5),
        DecodeError::PropertyNotAllowed
    );
    let sei = cat(&[&[0], &pblock(&[Property::SessionExpiryInterval(9)])]);
    assert!(matches!(dec(&frame(0xE0, &sei), V5),
        Ok(Packet::Disconnect(d)) if d.properties.session_expiry_interval() == Some(9)));
    // AUTH
    assert!(matches!(dec(&[0xF0, 0], V5), Ok(Packet::Auth(a)) if a.reason == 0));
    assert!(matches!(dec(&[0xF0, 2, 0x18, 0], V5), Ok(Packet::Auth(a)) if a.reason == 0x18));
    assert_eq!(err(&[0xF0, 2, 0x87, 0], V5), DecodeError::InvalidReasonCode);
    let wrong = cat(&[&[0x18], &pblock(&[Property::SessionExpiryInterval(1)])]);
    assert_eq!(
        err(&frame(0xF0, &wrong), V5),
        DecodeError::PropertyNotAllowed
    );
    let dup = cat(&[
        &[0x18],
        &pblock(&[
            Property::AuthenticationMethod("a"),
            Property::AuthenticationMethod("a"),
        ]),
    ]);
    assert_eq!(err(&frame(0xF0, &dup), V5), DecodeError::DuplicateProperty);
}

#[test]
fn connack_rules() {
    for v in V3 {
        assert!(matches!(dec(&[0x20, 2, 1, 0], v), Ok(Packet::Connack(c)) if c.session_present));
        assert_eq!(err(&[0x20, 2, 0, 6], v), DecodeError::InvalidReasonCode);
        assert_eq!(err(&[0x20, 3, 0, 0, 0], v), DecodeError::TrailingBytes);
        assert_eq!(err(&[0x20, 1, 0], v), DecodeError::Truncated);
    }
    assert_eq!(
        err(&[0x20, 2, 2, 0], V311),
        DecodeError::ReservedConnackFlags
    );
    assert!(dec(&[0x20, 2, 2, 0], V31).is_ok());
    assert_eq!(
        err(&[0x20, 3, 0x80, 0, 0], V5),
        DecodeError::ReservedConnackFlags
    );
    assert_eq!(
        err(&[0x20, 3, 0, 0x01, 0], V5),
        DecodeError::InvalidReasonCode
    );
    assert_eq!(err(&[0x20, 2, 0, 0], V5), DecodeError::Truncated);
    let bad = cat(&[&[0, 0], &pblock(&[Property::MaximumQoS(2)])]);
    assert_eq!(
        err(&frame(0x20, &bad), V5),
        DecodeError::InvalidPropertyValue
    );
    let bad = cat(&[&[0, 0], &pblock(&[Property::TopicAlias(2)])]);
    assert_eq!(err(&frame(0x20, &bad), V5), DecodeError::PropertyNotAllowed);
}

// ---------------------------------------------------------------------------
// CONNECT

fn connect_body(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    cat(&[&s(name), &[level, flags, 0, 30], rest])
}

#[test]
fn connect_protocol_name_and_level() {
    let id = s(b"c");
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTX", 4, 2, &id)), V311),
        DecodeError::BadProtocolName
    );
    assert_eq!(
        err(&frame(0x10, &connect_body(b"mqtt", 4, 2, &id)), V311),
        DecodeError::BadProtocolName
    );
    for (name, level) in [
        (&b"MQTT"[..], 3u8),
        (b"MQTT", 6),
        (b"MQIsdp", 4),
        (b"MQIsdp", 5),
        (b"MQTT", 0),
    ] {
        assert_eq!(
            err(&frame(0x10, &connect_body(name, level, 2, &id)), V311),
            DecodeError::UnsupportedProtocolVersion(level)
        );
    }
    assert_eq!(
        DecodeError::UnsupportedProtocolVersion(6)
            .reason_code()
            .code(),
        reason::UNSUPPORTED_PROTOCOL_VERSION
    );
    assert_eq!(
        reason::connack_v3_from_v5(
            DecodeError::UnsupportedProtocolVersion(6)
                .reason_code()
                .code()
        ),
        1
    );
    // The bridge bit (0x80) of Mosquitto bridges is accepted.
    let bridge = frame(0x10, &connect_body(b"MQTT", 0x84, 2, &id));
    assert!(matches!(dec(&bridge, V5), Ok(Packet::Connect(c)) if c.version == V311));
    let bridge31 = frame(0x10, &connect_body(b"MQIsdp", 0x83, 2, &id));
    assert!(matches!(dec(&bridge31, V5), Ok(Packet::Connect(c)) if c.version == V31));
    // CONNECT ignores the connection's version argument.
    let c5 = frame(0x10, &connect_body(b"MQTT", 5, 2, &cat(&[&[0], &id])));
    for v in ALL {
        assert!(matches!(dec(&c5, v), Ok(Packet::Connect(c)) if c.version == V5));
    }
    // Truncated before the level byte.
    assert_eq!(err(&frame(0x10, &s(b"MQTT")), V311), DecodeError::Truncated);
}

#[test]
fn connect_flags() {
    let id = s(b"c");
    // Reserved bit.
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 0x03, &id)), V311),
        DecodeError::ReservedConnectFlag
    );
    assert_eq!(
        err(
            &frame(0x10, &connect_body(b"MQTT", 5, 0x03, &cat(&[&[0], &id]))),
            V5
        ),
        DecodeError::ReservedConnectFlag
    );
    assert!(dec(&frame(0x10, &connect_body(b"MQIsdp", 3, 0x03, &id)), V31).is_ok());
    // Will QoS / retain without the will flag.
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 0x0A, &id)), V311),
        DecodeError::WillQoSWithoutWill
    );
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 0x12, &id)), V311),
        DecodeError::WillQoSWithoutWill
    );
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 0x22, &id)), V311),
        DecodeError::WillRetainWithoutWill
    );
    assert_eq!(
        err(
            &frame(0x10, &connect_body(b"MQTT", 5, 0x22, &cat(&[&[0], &id]))),
            V5
        ),
        DecodeError::WillRetainWithoutWill
    );
    // Will QoS 3, with and without the will flag.
    let will = cat(&[&id, &s(b"w"), &s(b"m")]);
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 0x1E, &will)), V311),
        DecodeError::InvalidQoS
    );
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 0x1A, &id)), V311),
        DecodeError::InvalidQoS
    );
    // Password without user name: 3.1 and 3.1.1 refuse, 5.0 accepts.
    let pw = cat(&[&id, &s(b"pw")]);
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 0x42, &pw)), V311),
        DecodeError::PasswordWithoutUsername
    );
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQIsdp", 3, 0x42, &pw)), V31),
        DecodeError::PasswordWithoutUsername
    );
    let pw5 = cat(&[&[0], &id, &s(b"pw")]);
    match dec(&frame(0x10, &connect_body(b"MQTT", 5, 0x42, &pw5)), V5).unwrap() {
        Packet::Connect(c) => {
            assert_eq!(c.username, None);
            assert_eq!(c.password, Some(&b"pw"[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connect_payload_rules() {
    // Zero-length client id.
    assert_eq!(
        err(
            &frame(0x10, &connect_body(b"MQIsdp", 3, 0x02, &s(b""))),
            V31
        ),
        DecodeError::ZeroLengthClientId
    );
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 0x00, &s(b""))), V311),
        DecodeError::ZeroLengthClientId
    );
    assert!(dec(&frame(0x10, &connect_body(b"MQTT", 4, 0x02, &s(b""))), V311).is_ok());
    assert!(dec(
        &frame(0x10, &connect_body(b"MQTT", 5, 0x00, &[0, 0, 0])),
        V5
    )
    .is_ok());
    assert_eq!(
        reason::connack_v3_from_v5(DecodeError::ZeroLengthClientId.reason_code().code()),
        2
    );
    // Bad strings.
    assert_eq!(
        err(
            &frame(0x10, &connect_body(b"MQTT", 4, 2, &s(b"\xff"))),
            V311
        ),
        DecodeError::InvalidUtf8
    );
    assert_eq!(
        err(
            &frame(0x10, &connect_body(b"MQTT", 4, 2, &s(b"a\x00"))),
            V311
        ),
        DecodeError::NullCharacter
    );
    let bad_user = cat(&[&s(b"c"), &s(b"\xc3")]);
    assert_eq!(
        err(
            &frame(0x10, &connect_body(b"MQTT", 4, 0x82, &bad_user)),
            V311
        ),
        DecodeError::InvalidUtf8
    );
    // Will topic must be a valid, non-empty topic name.
    for (topic, e) in [
        (&b"a/+"[..], DecodeError::WildcardInTopicName),
        (b"", DecodeError::EmptyTopic),
        (b"\x00", DecodeError::NullCharacter),
        (b"\xff", DecodeError::InvalidUtf8),
    ] {
        let will = cat(&[&s(b"c"), &s(topic), &s(b"m")]);
        assert_eq!(
            err(&frame(0x10, &connect_body(b"MQTT", 4, 0x06, &will)), V311),
            e
        );
    }
    // Trailing bytes after the last field.
    let extra = cat(&[&s(b"c"), &[0xAA]]);
    assert_eq!(
        err(&frame(0x10, &connect_body(b"MQTT", 4, 2, &extra)), V311),
        DecodeError::TrailingBytes
    );
    // Missing user name in 3.1.1 is truncation; old 3.1 clients get away with it.
    assert_eq!(
        err(
            &frame(0x10, &connect_body(b"MQTT", 4, 0xC2, &s(b"c"))),
            V311
        ),
        DecodeError::Truncated
    );
    match dec(
        &frame(0x10, &connect_body(b"MQIsdp", 3, 0xC2, &s(b"c"))),
        V31,
    )
    .unwrap()
    {
        Packet::Connect(c) => assert_eq!((c.username, c.password), (None, None)),
        other => panic!("{other:?}"),
    }
    let user_only = cat(&[&s(b"c"), &s(b"u")]);
    match dec(
        &frame(0x10, &connect_body(b"MQIsdp", 3, 0xC2, &user_only)),
        V31,
    )
    .unwrap()
    {
        Packet::Connect(c) => assert_eq!((c.username, c.password), (Some("u"), None)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn connect_properties() {
    let id = s(b"c");
    let cases = [
        (
            pblock(&[Property::ReceiveMaximum(0)]),
            DecodeError::InvalidPropertyValue,
        ),
        (
            pblock(&[Property::MaximumPacketSize(0)]),
            DecodeError::InvalidPropertyValue,
        ),
        (
            pblock(&[Property::RequestProblemInformation(3)]),
            DecodeError::InvalidPropertyValue,
        ),
        (
            pblock(&[Property::ReceiveMaximum(1), Property::ReceiveMaximum(2)]),
            DecodeError::DuplicateProperty,
        ),
        (
            pblock(&[Property::WillDelayInterval(1)]),
            DecodeError::PropertyNotAllowed,
        ),
        (
            pblock(&[Property::TopicAlias(1)]),
            DecodeError::PropertyNotAllowed,
        ),
        (vec![1, 0x2B], DecodeError::InvalidPropertyId),
    ];
    for (block, e) in cases {
        let body = connect_body(b"MQTT", 5, 2, &cat(&[&block, &id]));
        assert_eq!(err(&frame(0x10, &body), V5), e, "{block:02x?}");
    }
    // Will properties have their own allowlist.
    let will_cases = [
        (
            pblock(&[Property::SessionExpiryInterval(1)]),
            DecodeError::PropertyNotAllowed,
        ),
        (
            pblock(&[Property::TopicAlias(1)]),
            DecodeError::PropertyNotAllowed,
        ),
        (
            pblock(&[
                Property::WillDelayInterval(1),
                Property::WillDelayInterval(1),
            ]),
            DecodeError::DuplicateProperty,
        ),
    ];
    for (block, e) in will_cases {
        let body = connect_body(
            b"MQTT",
            5,
            0x06,
            &cat(&[&[0], &id, &block, &s(b"w"), &s(b"m")]),
        );
        assert_eq!(err(&frame(0x10, &body), V5), e, "{block:02x?}");
    }
    let good = pblock(&[
        Property::WillDelayInterval(7),
        Property::UserProperty("a", "b"),
    ]);
    let body = connect_body(
        b"MQTT",
        5,
        0x06,
        &cat(&[&[0], &id, &good, &s(b"w"), &s(b"m")]),
    );
    match dec(&frame(0x10, &body), V5).unwrap() {
        Packet::Connect(c) => {
            let w = c.will.unwrap();
            assert_eq!(w.properties.will_delay_interval(), Some(7));
            assert_eq!((w.topic, w.payload), ("w", &b"m"[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn peek_version() {
    let c = |name: &[u8], level: u8| frame(0x10, &connect_body(name, level, 2, &s(b"c")));
    assert_eq!(peek_connect_version(&c(b"MQTT", 5)), Some(V5));
    assert_eq!(peek_connect_version(&c(b"MQTT", 4)), Some(V311));
    assert_eq!(peek_connect_version(&c(b"MQIsdp", 3)), Some(V31));
    assert_eq!(peek_connect_version(&c(b"MQTT", 6)), None);
    assert_eq!(peek_connect_version(&c(b"XX", 4)), None);
    // Works on a CONNECT that will fail to decode (bad property).
    let bad = frame(
        0x10,
        &connect_body(b"MQTT", 5, 2, &cat(&[&[1, 0x7F], &s(b"c")])),
    );
    assert_eq!(decode(&bad, V311, 0), Err(DecodeError::InvalidPropertyId));
    assert_eq!(peek_connect_version(&bad), Some(V5));
    // And on a prefix.
    assert_eq!(peek_connect_version(&bad[..9]), Some(V5));
    assert_eq!(peek_connect_version(&bad[..5]), None);
    assert_eq!(peek_connect_version(&[0x30, 0]), None);
    assert_eq!(peek_connect_version(&[]), None);
}

// ---------------------------------------------------------------------------
// errors

#[test]
fn every_error_has_a_reason_and_a_message() {
    use DecodeError::*;
    let all = [
        RemainingLengthTooLong,
        VariableByteIntegerTooLong,
        PacketTooLarge,
        UnknownPacketType,
        ReservedFlags,
        InvalidQoS,
        WildcardInTopicName,
        InvalidUtf8,
        NullCharacter,
        EmptyTopic,
        TopicAliasZero,
        ZeroPacketId,
        NoTopicFilters,
        NoReturnCodes,
        Truncated,
        TrailingBytes,
        BadProtocolName,
        UnsupportedProtocolVersion(9),
        ReservedConnectFlag,
        WillQoSWithoutWill,
        WillRetainWithoutWill,
        PasswordWithoutUsername,
        ZeroLengthClientId,
        ReservedConnackFlags,
        InvalidPropertyId,
        DuplicateProperty,
        PropertyNotAllowed,
        InvalidPropertyValue,
        ReservedSubscriptionOptions,
        InvalidRetainHandling,
        InvalidReasonCode,
    ];
    for e in all {
        assert!(reason::is_error(e.reason_code().code()), "{e:?}");
        assert_ne!(
            reason::reason_name(e.reason_code().code()),
            "Unknown reason"
        );
        assert!(!e.to_string().is_empty());
        let _: &dyn std::error::Error = &e;
    }
    assert_eq!(
        UnsupportedProtocolVersion(9).to_string(),
        "unsupported protocol version 9"
    );
    assert_eq!(Truncated.reason_code().code(), reason::MALFORMED_PACKET);
    assert_eq!(
        WildcardInTopicName.reason_code().code(),
        reason::PROTOCOL_ERROR
    );
}

// ---------------------------------------------------------------------------
// randomized

/// Anything the decoder accepts must survive encode -> decode unchanged.
/// Returns whether it was accepted.
fn check_accepted(buf: &[u8], v: ProtocolVersion) -> bool {
    match decode(buf, v, 0) {
        Ok(Decoded::Packet(p, n)) => {
            assert!(n <= buf.len());
            let pv = match &p {
                Packet::Connect(c) => c.version,
                _ => v,
            };
            let mut out = Vec::new();
            encode(&p, pv, &mut out);
            match decode(&out, pv, 0) {
                Ok(Decoded::Packet(q, m)) => {
                    assert_eq!(q, p, "{buf:02x?}");
                    assert_eq!(m, out.len());
                }
                other => panic!("re-decode of {p:?} from {buf:02x?}: {other:?}"),
            }
            true
        }
        Ok(Decoded::Incomplete) | Err(_) => false,
    }
}

/// First bytes that pass the fixed-header checks in 3.1.1.
const VALID_FIRST: [u8; 16] = [
    0x10, 0x20, 0x30, 0x31, 0x32, 0x3B, 0x34, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xE0,
];

#[test]
fn random_bytes_never_panic() {
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut buf = Vec::with_capacity(96);
    let mut accepted = 0;
    for _ in 0..200_000 {
        buf.clear();
        let len = rng.below(96);
        for _ in 0..len {
            buf.push(rng.next() as u8);
        }
        // Bias towards plausible headers and short strings so that bodies,
        // not just fixed headers, get exercised.
        if len >= 4 && rng.below(2) == 0 {
            buf[0] = VALID_FIRST[rng.below(VALID_FIRST.len())];
            buf[1] = (len - 2).min(127) as u8;
            buf[2] = 0;
            buf[3] = rng.below(6) as u8;
        }
        for v in ALL {
            if check_accepted(&buf, v) {
                accepted += 1;
            }
            let _ = decode(&buf, v, rng.below(200) as u32);
            let _ = fixed_header(&buf);
            let _ = peek_connect_version(&buf);
        }
        for p in Properties::from_raw_unchecked(&buf).iter() {
            let _ = p.encoded_len();
        }
        let _ = SubscribeFilters::from_raw(&buf).iter().count();
        let _ = UnsubscribeFilters::from_raw(&buf).iter().count();
    }
    assert!(accepted > 5_000, "only {accepted} random inputs decoded");
}

#[test]
fn mutated_valid_packets_never_panic() {
    let mut seeds: Vec<(Vec<u8>, ProtocolVersion)> = Vec::new();
    let cp = props(&[
        Property::SessionExpiryInterval(5),
        Property::ReceiveMaximum(3),
        Property::UserProperty("k", "v"),
        Property::AuthenticationMethod("m"),
    ]);
    let wp = props(&[Property::WillDelayInterval(2), Property::ContentType("c")]);
    let pp = props(&[
        Property::TopicAlias(2),
        Property::SubscriptionIdentifier(300),
        Property::CorrelationData(b"x"),
    ]);
    let subs5 = sub_raw(&[("a/+", 0x15), ("$share/g/b", 0x01)]);
    let subs3 = sub_raw(&[("a/+", 1), ("b", 2)]);
    let unsubs = unsub_raw(&["a", "b/#"]);
    for v in ALL {
        let v5 = v.is_v5();
        let pick = |raw: &'static [u8]| {
            if v5 {
                Properties::from_raw_unchecked(raw)
            } else {
                Properties::EMPTY
            }
        };
        let cp: &'static [u8] = Box::leak(cp.clone().into_boxed_slice());
        let wp: &'static [u8] = Box::leak(wp.clone().into_boxed_slice());
        let pp: &'static [u8] = Box::leak(pp.clone().into_boxed_slice());
        let packets = [
            Packet::Connect(Connect {
                version: v,
                clean_start: true,
                keep_alive: 5,
                properties: pick(cp),
                client_id: "id",
                will: Some(Will {
                    topic: "w/t",
                    payload: b"bye",
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: pick(wp),
                }),
                username: Some("u"),
                password: Some(b"p"),
            }),
            Packet::Connack(Connack {
                session_present: true,
                code: 0,
                properties: pick(cp),
            }),
            Packet::Publish(Publish {
                dup: true,
                qos: QoS::ExactlyOnce,
                retain: false,
                topic: "a/b",
                packet_id: 77,
                properties: pick(pp),
                payload: b"payload",
            }),
            Packet::Pubrel(Ack {
                packet_id: 3,
                reason: 0,
                properties: Properties::EMPTY,
            }),
            Packet::Subscribe(Subscribe {
                packet_id: 4,
                properties: Properties::EMPTY,
                filters: SubscribeFilters::from_raw(if v5 { &subs5 } else { &subs3 }),
            }),
            Packet::Suback(Suback {
                packet_id: 4,
                properties: Properties::EMPTY,
                codes: &[0, 1, 0x80],
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 5,
                properties: Properties::EMPTY,
                filters: UnsubscribeFilters::from_raw(&unsubs),
            }),
            Packet::Unsuback(Unsuback {
                packet_id: 5,
                properties: Properties::EMPTY,
                codes: if v5 { &[0, 0x11] } else { &[] },
            }),
            Packet::Disconnect(Disconnect {
                reason: if v5 { 0x04 } else { 0 },
                properties: Properties::EMPTY,
            }),
        ];
        for p in packets {
            let mut out = Vec::new();
            encode(&p, v, &mut out);
            seeds.push((out, v));
        }
    }
    let mut rng = Xorshift(0xD1B5_4A32_D192_ED03);
    let mut buf = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for i in 0..150_000 {
        let (seed, v) = &seeds[i % seeds.len()];
        buf.clear();
        buf.extend_from_slice(seed);
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(buf.len());
            match rng.below(4) {
                0 => buf[at] = rng.next() as u8,
                1 => buf[at] ^= 1 << rng.below(8),
                2 => {
                    buf.truncate(at.max(1));
                }
                _ => buf.insert(at, rng.next() as u8),
            }
        }
        for v2 in [*v, ALL[rng.below(3)]] {
            if check_accepted(&buf, v2) {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
    }
    // Both outcomes must be common, or the mutations are not probing much.
    assert!(
        accepted > 20_000 && rejected > 20_000,
        "{accepted} / {rejected}"
    );
}

#[test]
fn debug_output_redacts_payloads_and_passwords() {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: 0,
        properties: Properties::default(),
        payload: b"secret-payload",
    };
    let text = format!("{p:?}");
    assert!(text.contains("payload: <14 bytes>"), "{text}");
    assert!(!text.contains("115, 101"), "{text}");
    let will = Will {
        topic: "w",
        payload: b"bye",
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    };
    let c = Connect {
        version: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: "c",
        will: Some(will),
        username: Some("u"),
        password: Some(b"hunter2"),
    };
    let text = format!("{c:?}");
    assert!(text.contains("password: Some(<7 bytes>)"), "{text}");
    assert!(text.contains("payload: <3 bytes>"), "{text}");
    assert!(!text.contains("104, 117"), "{text}");
}
