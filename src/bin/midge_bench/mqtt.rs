//! A tiny client-side MQTT 3.1.1 / 5.0 codec for the load generator.
//!
//! Owns: encoding the handful of packets a benchmark client sends (CONNECT,
//! SUBSCRIBE, PUBLISH, PUBACK, PINGREQ, DISCONNECT) straight into a caller's
//! `Vec<u8>`, and decoding the packets a broker sends back, borrowing from the
//! receive buffer. It must not use the midge library: the benchmark has to
//! measure any broker with code that shares nothing with the one under test.
//! It must not allocate per message: encoders append to an existing buffer.

/// MQTT control packet types (high nibble of the fixed header).
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const SUBACK: u8 = 9;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

/// Largest value the four-byte remaining-length encoding can carry.
const MAX_REMAINING: usize = 268_435_455;

/// Appends the variable-length "remaining length" field.
pub fn put_remaining_len(buf: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    // Benchmark strings are short; clamp rather than panic if one is not.
    let len = s.len().min(usize::from(u16::MAX));
    put_u16(buf, len as u16);
    buf.extend_from_slice(s.get(..len).unwrap_or_default());
}

/// CONNECT with no will and no credentials; a clean session unless
/// `persistent` (then v5 asks for a session that never expires).
pub fn connect(buf: &mut Vec<u8>, client_id: &str, keepalive: u16, v5: bool, persistent: bool) {
    let id = client_id.as_bytes();
    // protocol name (6) + level (1) + flags (1) + keepalive (2) + id
    let mut rem = 10 + 2 + id.len();
    if v5 {
        rem += if persistent { 6 } else { 1 };
    }
    buf.push(0x10);
    put_remaining_len(buf, rem);
    put_str(buf, b"MQTT");
    buf.push(if v5 { 5 } else { 4 });
    buf.push(if persistent { 0x00 } else { 0x02 }); // clean session / clean start
    put_u16(buf, keepalive);
    if v5 {
        if persistent {
            buf.extend_from_slice(&[5, 0x11, 0xFF, 0xFF, 0xFF, 0xFF]);
        } else {
            buf.push(0);
        }
    }
    put_str(buf, id);
}

/// SUBSCRIBE to one filter.
pub fn subscribe(buf: &mut Vec<u8>, packet_id: u16, filter: &str, qos: u8, v5: bool) {
    let f = filter.as_bytes();
    let mut rem = 2 + 2 + f.len() + 1;
    if v5 {
        rem += 1;
    }
    buf.push(0x82);
    put_remaining_len(buf, rem);
    put_u16(buf, packet_id);
    if v5 {
        buf.push(0);
    }
    put_str(buf, f);
    buf.push(qos & 3);
}

/// Where the mutable parts of an encoded PUBLISH sit, relative to its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLayout {
    /// Total encoded size.
    pub len: usize,
    /// Offset of the packet identifier, if QoS > 0.
    pub pid_at: Option<usize>,
    /// Offset of the payload.
    pub payload_at: usize,
}

/// Appends a PUBLISH and says where its packet id and payload landed, so a
/// caller can encode once and then patch sequence numbers in place.
pub fn publish(
    buf: &mut Vec<u8>,
    topic: &[u8],
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    retain: bool,
    v5: bool,
) -> PublishLayout {
    let start = buf.len();
    let mut rem = 2 + topic.len() + payload.len();
    if qos > 0 {
        rem += 2;
    }
    if v5 {
        rem += 1;
    }
    let rem = rem.min(MAX_REMAINING);
    buf.push(0x30 | ((qos & 3) << 1) | u8::from(retain));
    put_remaining_len(buf, rem);
    put_str(buf, topic);
    let mut pid_at = None;
    if qos > 0 {
        pid_at = Some(buf.len() - start);
        put_u16(buf, packet_id);
    }
    if v5 {
        buf.push(0);
    }
    let payload_at = buf.len() - start;
    buf.extend_from_slice(payload);
    PublishLayout {
        len: buf.len() - start,
        pid_at,
        payload_at,
    }
}

/// Writes a topic made of `prefix` and up to two decimal numbers separated by
/// `/` directly into `out`, avoiding a `format!` per message.
pub fn topic_with_numbers(out: &mut Vec<u8>, prefix: &[u8], nums: &[u64]) {
    out.clear();
    out.extend_from_slice(prefix);
    for (i, n) in nums.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        put_decimal(out, *n);
    }
}

/// Appends `n` in decimal.
pub fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// PUBACK for a received QoS 1 PUBLISH (reason "success" is implied in v5
/// when the remaining length is 2).
pub fn puback(buf: &mut Vec<u8>, packet_id: u16) {
    buf.push(0x40);
    buf.push(2);
    put_u16(buf, packet_id);
}

pub fn pingreq(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&[0xC0, 0]);
}

pub fn disconnect(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&[0xE0, 0]);
}

/// A decoded broker-to-client packet, borrowing from the receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    ConnAck {
        code: u8,
    },
    SubAck {
        packet_id: u16,
        codes: &'a [u8],
    },
    Publish {
        qos: u8,
        retain: bool,
        dup: bool,
        packet_id: u16,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    PubAck {
        packet_id: u16,
    },
    PingResp,
    Disconnect {
        code: u8,
    },
    /// Anything else; the benchmark does not act on it.
    Other {
        kind: u8,
    },
}

/// Result of trying to take one packet off the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A packet and the number of bytes it occupied.
    Packet(Packet<'a>, usize),
    /// More bytes are needed; `need` is the full packet size when known.
    Incomplete { need: Option<usize> },
    /// The bytes cannot be MQTT from a broker.
    Malformed(&'static str),
}

fn get_u16(b: &[u8], at: usize) -> Option<u16> {
    let hi = *b.get(at)?;
    let lo = *b.get(at + 1)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// Decodes a variable byte integer at the start of `b`: (value, bytes used).
fn get_varint(b: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
    let mut value = 0usize;
    let mut mult = 1usize;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        value += usize::from(byte & 0x7F) * mult;
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
        mult *= 128;
    }
    Err("variable byte integer longer than 4 bytes")
}

/// Takes one packet off the front of `buf`.
pub fn parse(buf: &[u8], v5: bool) -> Parsed<'_> {
    let Some(&first) = buf.first() else {
        return Parsed::Incomplete { need: None };
    };
    let (rem, len_bytes) = match get_varint(buf.get(1..).unwrap_or_default()) {
        Ok(Some(v)) => v,
        Ok(None) => return Parsed::Incomplete { need: None },
        Err(e) => return Parsed::Malformed(e),
    };
    let total = 1 + len_bytes + rem;
    let Some(body) = buf.get(1 + len_bytes..total) else {
        return Parsed::Incomplete { need: Some(total) };
    };
    let kind = first >> 4;
    let packet = match kind {
        CONNACK => {
            let Some(&code) = body.get(1) else {
                return Parsed::Malformed("short CONNACK");
            };
            Packet::ConnAck { code }
        }
        PUBLISH => {
            let qos = (first >> 1) & 3;
            let Some(tlen) = get_u16(body, 0) else {
                return Parsed::Malformed("short PUBLISH");
            };
            let tend = 2 + usize::from(tlen);
            let Some(topic) = body.get(2..tend) else {
                return Parsed::Malformed("PUBLISH topic overruns packet");
            };
            let mut at = tend;
            let mut packet_id = 0;
            if qos > 0 {
                let Some(id) = get_u16(body, at) else {
                    return Parsed::Malformed("PUBLISH without packet id");
                };
                packet_id = id;
                at += 2;
            }
            if v5 {
                match get_varint(body.get(at..).unwrap_or_default()) {
                    Ok(Some((plen, used))) => at += used + plen,
                    _ => return Parsed::Malformed("bad PUBLISH properties"),
                }
            }
            let Some(payload) = body.get(at..) else {
                return Parsed::Malformed("PUBLISH properties overrun packet");
            };
            Packet::Publish {
                qos,
                retain: first & 1 == 1,
                dup: first & 8 == 8,
                packet_id,
                topic,
                payload,
            }
        }
        PUBACK => {
            let Some(packet_id) = get_u16(body, 0) else {
                return Parsed::Malformed("short PUBACK");
            };
            Packet::PubAck { packet_id }
        }
        SUBACK => {
            let Some(packet_id) = get_u16(body, 0) else {
                return Parsed::Malformed("short SUBACK");
            };
            let mut at = 2;
            if v5 {
                match get_varint(body.get(at..).unwrap_or_default()) {
                    Ok(Some((plen, used))) => at += used + plen,
                    _ => return Parsed::Malformed("bad SUBACK properties"),
                }
            }
            let Some(codes) = body.get(at..) else {
                return Parsed::Malformed("SUBACK properties overrun packet");
            };
            Packet::SubAck { packet_id, codes }
        }
        PINGRESP => Packet::PingResp,
        DISCONNECT => Packet::Disconnect {
            code: body.first().copied().unwrap_or(0),
        },
        _ => Packet::Other { kind },
    };
    Parsed::Packet(packet, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remaining_len_size(len: usize) -> usize {
        match len {
            0..=127 => 1,
            128..=16_383 => 2,
            16_384..=2_097_151 => 3,
            _ => 4,
        }
    }

    fn roundtrip_len(n: usize) -> usize {
        let mut b = Vec::new();
        put_remaining_len(&mut b, n);
        assert_eq!(b.len(), remaining_len_size(n), "size of {n}");
        match get_varint(&b) {
            Ok(Some((v, used))) => {
                assert_eq!(used, b.len());
                v
            }
            other => panic!("decode {n}: {other:?}"),
        }
    }

    #[test]
    fn remaining_length_boundaries() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            assert_eq!(roundtrip_len(n), n);
        }
        assert!(get_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
        assert_eq!(get_varint(&[0x80]), Ok(None));
    }

    #[test]
    fn publish_roundtrip_v3_and_v5() {
        for v5 in [false, true] {
            for qos in [0u8, 1] {
                let mut b = Vec::new();
                let lay = publish(&mut b, b"a/b", b"hello", qos, 77, true, v5);
                assert_eq!(lay.len, b.len());
                assert_eq!(b.get(lay.payload_at..), Some(&b"hello"[..]));
                match parse(&b, v5) {
                    Parsed::Packet(
                        Packet::Publish {
                            qos: q,
                            retain,
                            packet_id,
                            topic,
                            payload,
                            ..
                        },
                        used,
                    ) => {
                        assert_eq!(used, b.len());
                        assert_eq!(q, qos);
                        assert!(retain);
                        assert_eq!(packet_id, if qos > 0 { 77 } else { 0 });
                        assert_eq!(topic, b"a/b");
                        assert_eq!(payload, b"hello");
                    }
                    other => panic!("{other:?}"),
                }
                // Every strict prefix is incomplete, never malformed.
                for cut in 0..b.len() {
                    let prefix = b.get(..cut).unwrap_or_default();
                    assert!(matches!(parse(prefix, v5), Parsed::Incomplete { .. }));
                }
            }
        }
    }

    #[test]
    fn suback_and_connack() {
        assert_eq!(
            parse(&[0x20, 2, 0, 0], false),
            Parsed::Packet(Packet::ConnAck { code: 0 }, 4)
        );
        assert_eq!(
            parse(&[0x90, 3, 0, 5, 1], false),
            Parsed::Packet(
                Packet::SubAck {
                    packet_id: 5,
                    codes: &[1]
                },
                5
            )
        );
        assert_eq!(
            parse(&[0x90, 4, 0, 5, 0, 0x80], true),
            Parsed::Packet(
                Packet::SubAck {
                    packet_id: 5,
                    codes: &[0x80]
                },
                6
            )
        );
        assert!(matches!(parse(&[0x20, 1, 0], false), Parsed::Malformed(_)));
    }

    #[test]
    fn connect_and_subscribe_are_well_formed() {
        let mut b = Vec::new();
        connect(&mut b, "abc", 0, false, false);
        assert_eq!(b.get(1).copied(), Some((b.len() - 2) as u8));
        b.clear();
        subscribe(&mut b, 1, "x/#", 1, true);
        assert_eq!(b.get(1).copied(), Some((b.len() - 2) as u8));
        assert_eq!(b.last().copied(), Some(1));
    }

    #[test]
    fn decimal_topics() {
        let mut t = Vec::new();
        topic_with_numbers(&mut t, b"w/", &[0, 12345]);
        assert_eq!(t, b"w/0/12345");
        topic_with_numbers(&mut t, b"", &[u64::MAX]);
        assert_eq!(t, u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let n = (x % 64) as usize;
            let slice = buf.get(..n).unwrap_or_default();
            let _ = parse(slice, x & 1 == 0);
        }
    }
}
