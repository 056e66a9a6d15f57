//! encode: `Packet` -> bytes, appended to a caller-owned buffer.
//!
//! Owns: the byte layout of every packet in each protocol version, the
//! variable byte integer writer, and the allocation-free fast paths the
//! broker uses per message (`encode_publish`, `encode_ack`,
//! `encode_pingresp`).
//!
//! Must not: validate or police content (the caller decides what is sent;
//! strings over 65535 bytes are cut so framing stays consistent, sizes over
//! the protocol maximum are the caller's bug), allocate anything except by
//! growing `out`, or fail: every function writes something well-framed.

use super::field::{clamp, write_binary};
pub use super::field::{remaining_length_size, varint_size, write_remaining_length, write_varint};
use super::packet_type as pt;
use super::properties::{Properties, Property};
use super::{Packet, ProtocolVersion, QoS};

fn write_properties(out: &mut Vec<u8>, props: Properties<'_>) {
    write_varint(out, props.raw().len() as u32);
    out.extend_from_slice(props.raw());
}

/// Prepend the fixed header to the body written since `start`. Used for the
/// rarely sent packets, where one small memmove is cheaper to maintain than
/// a second length computation.
fn finish(out: &mut Vec<u8>, start: usize, first: u8) {
    let body_len = out.len() - start;
    let before = out.len();
    out.push(first);
    write_remaining_length(out, body_len);
    let header_len = out.len() - before;
    if let Some(packet) = out.get_mut(start..) {
        packet.rotate_right(header_len);
    }
}

/// Encode a PUBLISH: the per-subscriber hot path. `props` is an encoded
/// property block (no length prefix) and `extra` is appended after it
/// (subscription identifiers, a topic alias, a rewritten expiry). In 3.1.x
/// no properties are written. `packet_id` is ignored for QoS 0. Returns the
/// number of bytes appended; allocates only by growing `out` (once).
#[allow(clippy::too_many_arguments)]
pub fn encode_publish(
    out: &mut Vec<u8>,
    version: ProtocolVersion,
    dup: bool,
    qos: QoS,
    retain: bool,
    topic: &str,
    packet_id: u16,
    props: &[u8],
    extra: &[Property<'_>],
    payload: &[u8],
) -> usize {
    let topic = clamp(topic.as_bytes());
    let mut remaining = 2 + topic.len() + payload.len();
    if qos != QoS::AtMostOnce {
        remaining += 2;
    }
    let mut props_len = 0;
    if version.is_v5() {
        props_len = props.len() + extra.iter().map(Property::encoded_len).sum::<usize>();
        remaining += varint_size(props_len as u32) + props_len;
    }
    let total = 1 + remaining_length_size(remaining) + remaining;
    out.reserve(total);
    let first = (pt::PUBLISH << 4) | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain);
    out.push(first);
    write_remaining_length(out, remaining);
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic);
    if qos != QoS::AtMostOnce {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    if version.is_v5() {
        write_varint(out, props_len as u32);
        out.extend_from_slice(props);
        for p in extra {
            p.encode(out);
        }
    }
    out.extend_from_slice(payload);
    total
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP without properties. v5 uses the short
/// 2-byte form for reason 0 and the 3-byte form otherwise; 3.1.x drops the
/// reason. `packet_type` is one of `packet_type::PUBACK..=PUBCOMP`.
pub fn encode_ack(
    out: &mut Vec<u8>,
    packet_type: u8,
    version: ProtocolVersion,
    packet_id: u16,
    reason: u8,
) {
    let flags = if packet_type == pt::PUBREL { 0b0010 } else { 0 };
    let id = packet_id.to_be_bytes();
    if version.is_v5() && reason != 0 {
        out.extend_from_slice(&[(packet_type << 4) | flags, 3, id[0], id[1], reason]);
    } else {
        out.extend_from_slice(&[(packet_type << 4) | flags, 2, id[0], id[1]]);
    }
}

pub fn encode_pingresp(out: &mut Vec<u8>) {
    out.extend_from_slice(&[pt::PINGRESP << 4, 0]);
}

/// Set the bridge bit (bit 7 of the protocol level) of the 3.1/3.1.1
/// CONNECT that starts `buf`, as a Mosquitto bridge with `try_private` does.
/// False (nothing changed) if `buf` does not start with such a CONNECT.
pub fn mark_connect_bridge(buf: &mut [u8]) -> bool {
    let Ok(Some((header_len, _))) = super::decode::fixed_header(buf) else {
        return false;
    };
    if buf.first().map(|b| b >> 4) != Some(pt::CONNECT) {
        return false;
    }
    let name_len = match (buf.get(header_len), buf.get(header_len + 1)) {
        (Some(&a), Some(&b)) => usize::from(u16::from_be_bytes([a, b])),
        _ => return false,
    };
    match buf.get_mut(header_len + 2 + name_len) {
        Some(level) if (3..=4).contains(level) => {
            *level |= 0x80;
            true
        }
        _ => false,
    }
}

/// Encode any packet for a connection speaking `version`. In 3.1/3.1.1,
/// properties and v5-only fields are omitted (an Ack's reason, UNSUBACK
/// codes, DISCONNECT reason); AUTH does not exist there and writes nothing.
/// CONNECT takes its protocol name and level from `version`. In v5 an Ack
/// with reason 0 and no properties uses the 2-byte form, a DISCONNECT with
/// reason 0 and no properties has remaining length 0.
pub fn encode(packet: &Packet<'_>, version: ProtocolVersion, out: &mut Vec<u8>) {
    let v5 = version.is_v5();
    let start = out.len();
    match packet {
        Packet::Connect(c) => {
            let (name, level): (&[u8], u8) = match version {
                ProtocolVersion::V31 => (b"MQIsdp", 3),
                ProtocolVersion::V311 => (b"MQTT", 4),
                ProtocolVersion::V5 => (b"MQTT", 5),
            };
            write_binary(out, name);
            out.push(level);
            let mut flags = u8::from(c.clean_start) << 1;
            if let Some(w) = &c.will {
                flags |= 0x04 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
            }
            if c.password.is_some() {
                flags |= 0x40;
            }
            if c.username.is_some() {
                flags |= 0x80;
            }
            out.push(flags);
            out.extend_from_slice(&c.keep_alive.to_be_bytes());
            if v5 {
                write_properties(out, c.properties);
            }
            write_binary(out, c.client_id.as_bytes());
            if let Some(w) = &c.will {
                if v5 {
                    write_properties(out, w.properties);
                }
                write_binary(out, w.topic.as_bytes());
                write_binary(out, w.payload);
            }
            if let Some(u) = c.username {
                write_binary(out, u.as_bytes());
            }
            if let Some(p) = c.password {
                write_binary(out, p);
            }
            finish(out, start, pt::CONNECT << 4);
        }
        Packet::Connack(c) => {
            out.push(u8::from(c.session_present));
            out.push(c.code);
            if v5 {
                write_properties(out, c.properties);
            }
            finish(out, start, pt::CONNACK << 4);
        }
        Packet::Publish(p) => {
            encode_publish(
                out,
                version,
                p.dup,
                p.qos,
                p.retain,
                p.topic,
                p.packet_id,
                p.properties.raw(),
                &[],
                p.payload,
            );
        }
        Packet::Puback(a) | Packet::Pubrec(a) | Packet::Pubrel(a) | Packet::Pubcomp(a) => {
            let ty = match packet {
                Packet::Puback(_) => pt::PUBACK,
                Packet::Pubrec(_) => pt::PUBREC,
                Packet::Pubrel(_) => pt::PUBREL,
                _ => pt::PUBCOMP,
            };
            if v5 && !a.properties.is_empty() {
                out.extend_from_slice(&a.packet_id.to_be_bytes());
                out.push(a.reason);
                write_properties(out, a.properties);
                let flags = if ty == pt::PUBREL { 0b0010 } else { 0 };
                finish(out, start, (ty << 4) | flags);
            } else {
                encode_ack(out, ty, version, a.packet_id, a.reason);
            }
        }
        Packet::Subscribe(s) => {
            out.extend_from_slice(&s.packet_id.to_be_bytes());
            if v5 {
                write_properties(out, s.properties);
            }
            for (filter, opts) in s.filters.iter() {
                write_binary(out, filter.as_bytes());
                // 3.1.x has only the requested QoS in this byte.
                let byte = if v5 { opts.to_byte() } else { opts.qos as u8 };
                out.push(byte);
            }
            finish(out, start, (pt::SUBSCRIBE << 4) | 0b0010);
        }
        Packet::Suback(s) => {
            out.extend_from_slice(&s.packet_id.to_be_bytes());
            if v5 {
                write_properties(out, s.properties);
            }
            out.extend_from_slice(s.codes);
            finish(out, start, pt::SUBACK << 4);
        }
        Packet::Unsubscribe(u) => {
            out.extend_from_slice(&u.packet_id.to_be_bytes());
            if v5 {
                write_properties(out, u.properties);
            }
            for filter in u.filters.iter() {
                write_binary(out, filter.as_bytes());
            }
            finish(out, start, (pt::UNSUBSCRIBE << 4) | 0b0010);
        }
        Packet::Unsuback(u) => {
            out.extend_from_slice(&u.packet_id.to_be_bytes());
            if v5 {
                write_properties(out, u.properties);
                out.extend_from_slice(u.codes);
            }
            finish(out, start, pt::UNSUBACK << 4);
        }
        Packet::Pingreq => out.extend_from_slice(&[pt::PINGREQ << 4, 0]),
        Packet::Pingresp => encode_pingresp(out),
        Packet::Disconnect(d) => {
            if v5 && (d.reason != 0 || !d.properties.is_empty()) {
                out.push(d.reason);
                // Remaining length 1 (reason only) is allowed for DISCONNECT.
                if !d.properties.is_empty() {
                    write_properties(out, d.properties);
                }
            }
            finish(out, start, pt::DISCONNECT << 4);
        }
        Packet::Auth(a) => {
            if !v5 {
                return;
            }
            // Unlike DISCONNECT, AUTH has no reason-only form.
            if a.reason != 0 || !a.properties.is_empty() {
                out.push(a.reason);
                write_properties(out, a.properties);
            }
            finish(out, start, pt::AUTH << 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_sizes_at_boundaries() {
        let cases: &[(usize, usize)] = &[
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (268_435_455, 4),
        ];
        for &(v, n) in cases {
            assert_eq!(remaining_length_size(v), n, "{v}");
            assert_eq!(varint_size(v as u32), n, "{v}");
            let mut out = Vec::new();
            write_remaining_length(&mut out, v);
            assert_eq!(out.len(), n, "{v}");
            // Continuation bit on all but the last byte.
            for (i, b) in out.iter().enumerate() {
                assert_eq!(b & 0x80 != 0, i + 1 < n);
            }
        }
        let mut out = Vec::new();
        write_varint(&mut out, 321);
        assert_eq!(out, [0xC1, 0x02]);
        // Over the protocol maximum: visibly invalid (5 bytes), not wrapped.
        assert_eq!(remaining_length_size(268_435_456), 5);
    }

    #[test]
    fn publish_returns_bytes_written_and_appends() {
        let mut out = vec![0xAA];
        let n = encode_publish(
            &mut out,
            ProtocolVersion::V311,
            false,
            QoS::AtLeastOnce,
            true,
            "a/b",
            7,
            &[0x23, 0, 1],
            &[Property::TopicAlias(1)],
            b"hi",
        );
        assert_eq!(n, out.len() - 1);
        assert_eq!(
            &out[1..],
            &[0x33, 9, 0, 3, b'a', b'/', b'b', 0, 7, b'h', b'i'][..]
        );
    }

    #[test]
    fn publish_v5_concatenates_props_and_extra() {
        let mut out = Vec::new();
        let n = encode_publish(
            &mut out,
            ProtocolVersion::V5,
            true,
            QoS::ExactlyOnce,
            false,
            "t",
            0x0102,
            &[0x01, 0x01],
            &[
                Property::SubscriptionIdentifier(200),
                Property::TopicAlias(3),
            ],
            b"",
        );
        assert_eq!(n, out.len());
        assert_eq!(
            out,
            [0x3C, 14, 0, 1, b't', 1, 2, 8, 0x01, 0x01, 0x0B, 0xC8, 0x01, 0x23, 0, 3]
        );
    }

    #[test]
    fn ack_short_forms() {
        let mut out = Vec::new();
        encode_ack(&mut out, pt::PUBACK, ProtocolVersion::V5, 5, 0);
        assert_eq!(out, [0x40, 2, 0, 5]);
        out.clear();
        encode_ack(&mut out, pt::PUBREC, ProtocolVersion::V5, 5, 0x10);
        assert_eq!(out, [0x50, 3, 0, 5, 0x10]);
        out.clear();
        encode_ack(&mut out, pt::PUBREL, ProtocolVersion::V311, 0x1234, 0x92);
        assert_eq!(out, [0x62, 2, 0x12, 0x34]);
        out.clear();
        encode_ack(&mut out, pt::PUBCOMP, ProtocolVersion::V31, 1, 0);
        assert_eq!(out, [0x70, 2, 0, 1]);
        out.clear();
        encode_pingresp(&mut out);
        assert_eq!(out, [0xD0, 0]);
    }

    #[test]
    fn finish_prepends_multi_byte_header() {
        let mut out = vec![9, 9];
        let start = out.len();
        out.extend(std::iter::repeat_n(7u8, 200));
        finish(&mut out, start, 0x90);
        assert_eq!(&out[..5], &[9, 9, 0x90, 0xC8, 0x01]);
        assert_eq!(out.len(), 2 + 3 + 200);
        assert!(out[5..].iter().all(|&b| b == 7));
    }
}
