//! decode: bytes -> `Packet<'a>`, in place.
//!
//! Owns: framing (fixed header, remaining length, the packet size limit) and
//! every structural rule of the MQTT 3.1 / 3.1.1 / 5.0 wire format, each
//! violation reported as a `DecodeError` named after the spec statement it
//! enforces. Decoded packets borrow the input; nothing is copied or allocated.
//!
//! Must not: keep state between calls, apply broker policy (authorisation,
//! negotiated maxima, topic alias mapping, session rules) or panic on any
//! input. `Incomplete` means "wait for more bytes" and is only ever returned
//! for a prefix of something that could still be a valid packet frame.

pub use super::error::DecodeError;
use super::field::{read_binary, read_str, read_u16, read_u8, read_varint, take};
use super::packet_type as pt;
use super::properties::{Properties, PropertyContext};
use super::reason;
use super::{
    Ack, Auth, Connack, Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, Suback,
    Subscribe, SubscribeFilters, Unsuback, Unsubscribe, UnsubscribeFilters, Will,
};

/// Largest value a four-byte variable byte integer can hold.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Result of a decode attempt on a possibly partial buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decoded<'a> {
    /// The buffer holds a valid-so-far prefix; read more and call again.
    Incomplete,
    /// One packet and the total number of bytes it occupied (fixed header
    /// included); the caller drops that many bytes from the front.
    Packet(Packet<'a>, usize),
}

/// A Topic Name (PUBLISH or will topic): a string without wildcards. One
/// SIMD scan finds NUL and both wildcards. Emptiness is checked by callers
/// because v5 allows an empty name with a Topic Alias.
fn check_topic_name(bytes: &[u8]) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    match memchr::memchr3(0, b'+', b'#', bytes) {
        None => Ok(s),
        Some(i) if bytes.get(i) == Some(&0) => Err(DecodeError::NullCharacter),
        Some(_) => Err(DecodeError::WildcardInTopicName),
    }
}

/// Property length varint, then the block, validated for `ctx`.
fn read_properties<'a>(
    b: &mut &'a [u8],
    ctx: PropertyContext,
) -> Result<Properties<'a>, DecodeError> {
    let len = read_varint(b)?;
    let raw = take(b, len as usize)?;
    Properties::validate(raw, ctx)
}

fn read_packet_id(b: &mut &[u8]) -> Result<u16, DecodeError> {
    match read_u16(b)? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

fn expect_end(b: &[u8]) -> Result<(), DecodeError> {
    if b.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

// ---------------------------------------------------------------------------
// Reason codes each v5 packet may carry (the "Reason Code" tables of 3.x).

const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const SUBACK_V3_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

fn check_code(code: u8, allowed: &[u8]) -> Result<(), DecodeError> {
    if allowed.contains(&code) {
        Ok(())
    } else {
        Err(DecodeError::InvalidReasonCode)
    }
}

// ---------------------------------------------------------------------------
// Framing.

/// Parse only the fixed header. `Ok(None)`: need more bytes;
/// `Ok(Some((header_len, remaining_len)))` otherwise.
pub fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((2 + i, value)));
        }
    }
    Err(DecodeError::RemainingLengthTooLong)
}

/// Rules that need only the first byte, so garbage is refused before its
/// claimed body arrives. As Mosquitto 2.0.11's broker does, only the flags
/// whose packets it checks are checked: PUBREL, SUBSCRIBE and UNSUBSCRIBE
/// must carry 0b0010 and DISCONNECT 0 (3.1.1 and 5.0; MQTT 3.1 did not fix
/// them; CONNECT's are checked in `decode_connect`, by its own protocol
/// name), QoS 3 is refused; a DUP bit on QoS 0 and reserved bits
/// on PINGREQ or the acknowledgements are let through (the spec calls those
/// malformed; Mosquitto, and so midge, tolerates them).
fn check_first_byte(first: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let flags = first & 0x0F;
    let strict = version != ProtocolVersion::V31;
    match first >> 4 {
        0 => Err(DecodeError::UnknownPacketType),
        pt::AUTH if !version.is_v5() => Err(DecodeError::UnknownPacketType),
        pt::PUBLISH if (flags >> 1) & 3 == 3 => Err(DecodeError::InvalidQoS),
        pt::PUBREL | pt::SUBSCRIBE | pt::UNSUBSCRIBE if strict && flags != 0b0010 => {
            Err(DecodeError::ReservedFlags)
        }
        pt::DISCONNECT if strict && flags != 0 => Err(DecodeError::ReservedFlags),
        _ => Ok(()),
    }
}

/// Decode one packet from the front of `buf`.
///
/// `version` is the connection's negotiated version (ignored for CONNECT,
/// which carries its own). `max_packet_size` limits the total packet size
/// (fixed header + remaining length); 0 means only the protocol maximum.
/// The limit is enforced as soon as the fixed header is complete.
pub fn decode<'a>(
    buf: &'a [u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Decoded<'a>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(Decoded::Incomplete);
    };
    check_first_byte(first, version)?;
    let Some((header_len, remaining)) = fixed_header(buf)? else {
        return Ok(Decoded::Incomplete);
    };
    let total = header_len + remaining;
    if max_packet_size != 0 && total > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge);
    }
    let Some(body) = buf.get(header_len..total) else {
        return Ok(Decoded::Incomplete);
    };
    let packet = decode_body(first, body, version)?;
    Ok(Decoded::Packet(packet, total))
}

/// Protocol name and level of a (possibly incomplete or invalid) CONNECT,
/// read from the start of the packet (fixed header included).
fn peek_connect_name_level(buf: &[u8]) -> Option<(&[u8], u8)> {
    if buf.first()? >> 4 != pt::CONNECT {
        return None;
    }
    let (header_len, _) = fixed_header(buf).ok()??;
    let mut b = buf.get(header_len..)?;
    let name = read_binary(&mut b).ok()?;
    let level = read_u8(&mut b).ok()?;
    Some((name, level))
}

/// The protocol version a (possibly incomplete or invalid) CONNECT asks
/// for. Lets the broker answer a CONNECT that failed to decode with a
/// CONNACK in the client's own version. None if this is not a CONNECT or
/// the name/level is not one of the three supported pairs.
pub fn peek_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    let (name, level) = peek_connect_name_level(buf)?;
    protocol_version(name, level).ok()
}

/// Whether a CONNECT (fixed header included) carries the bridge bit (bit 7
/// of the protocol level, Mosquitto's `try_private`) on MQTT 3.1 or 3.1.1.
/// Bridges get no-local, retain-as-published subscriptions, so a message is
/// never echoed back over the link it came from.
pub fn peek_connect_bridge(buf: &[u8]) -> bool {
    matches!(peek_connect_name_level(buf),
        Some((name, l)) if (name == b"MQTT" || name == b"MQIsdp") && l & 0x80 != 0 && (l & 0x7F) < 5)
}

fn protocol_version(name: &[u8], level: u8) -> Result<ProtocolVersion, DecodeError> {
    // Bit 7 of the level marks a Mosquitto bridge ("try_private"); the
    // version itself is in the low bits.
    match (name, level & 0x7F) {
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V31),
        (b"MQTT", 4) => Ok(ProtocolVersion::V311),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQIsdp", _) | (b"MQTT", _) => Err(DecodeError::UnsupportedProtocolVersion(level)),
        _ => Err(DecodeError::BadProtocolName),
    }
}

fn decode_body<'a>(
    first: u8,
    body: &'a [u8],
    version: ProtocolVersion,
) -> Result<Packet<'a>, DecodeError> {
    let v5 = version.is_v5();
    match first >> 4 {
        pt::CONNECT => decode_connect(first, body).map(Packet::Connect),
        pt::CONNACK => decode_connack(body, version).map(Packet::Connack),
        pt::PUBLISH => decode_publish(first, body, v5).map(Packet::Publish),
        pt::PUBACK => decode_ack(body, v5).map(Packet::Puback),
        pt::PUBREC => decode_ack(body, v5).map(Packet::Pubrec),
        pt::PUBREL => decode_ack(body, v5).map(Packet::Pubrel),
        pt::PUBCOMP => decode_ack(body, v5).map(Packet::Pubcomp),
        pt::SUBSCRIBE => decode_subscribe(body, version).map(Packet::Subscribe),
        pt::SUBACK => decode_suback(body, version).map(Packet::Suback),
        pt::UNSUBSCRIBE => decode_unsubscribe(body, version).map(Packet::Unsubscribe),
        pt::UNSUBACK => decode_unsuback(body, v5).map(Packet::Unsuback),
        // Mosquitto reads nothing of these bodies, so neither does midge.
        pt::PINGREQ => Ok(Packet::Pingreq),
        pt::PINGRESP => Ok(Packet::Pingresp),
        pt::DISCONNECT => {
            if !v5 {
                return expect_end(body).map(|_| {
                    Packet::Disconnect(Disconnect {
                        reason: 0,
                        properties: Properties::EMPTY,
                    })
                });
            }
            let (reason, properties) =
                decode_reason_tail(body, PropertyContext::Disconnect, DISCONNECT_CODES)?;
            Ok(Packet::Disconnect(Disconnect { reason, properties }))
        }
        pt::AUTH if v5 => {
            let (reason, properties) = decode_reason_tail(body, PropertyContext::Auth, AUTH_CODES)?;
            Ok(Packet::Auth(Auth { reason, properties }))
        }
        _ => Err(DecodeError::UnknownPacketType),
    }
}

fn decode_connect(first: u8, body: &[u8]) -> Result<Connect<'_>, DecodeError> {
    let mut b = body;
    let name = read_binary(&mut b)?;
    let level = read_u8(&mut b)?;
    let version = protocol_version(name, level)?;
    let v31 = version == ProtocolVersion::V31;
    let v5 = version.is_v5();
    if !v31 && first & 0x0F != 0 {
        return Err(DecodeError::ReservedFlags);
    }
    let flags = read_u8(&mut b)?;
    if !v31 && flags & 0x01 != 0 {
        return Err(DecodeError::ReservedConnectFlag);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 3;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidQoS)?;
    if !will_flag && !v31 {
        if will_qos != QoS::AtMostOnce {
            return Err(DecodeError::WillQoSWithoutWill);
        }
        if will_retain {
            return Err(DecodeError::WillRetainWithoutWill);
        }
    }
    if password_flag && !username_flag && !v5 {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = read_u16(&mut b)?;
    let properties = if v5 {
        read_properties(&mut b, PropertyContext::Connect)?
    } else {
        Properties::EMPTY
    };
    let client_id = read_str(&mut b)?;
    if client_id.is_empty() && (v31 || (version == ProtocolVersion::V311 && !clean_start)) {
        return Err(DecodeError::ZeroLengthClientId);
    }
    let will = if will_flag {
        let properties = if v5 {
            read_properties(&mut b, PropertyContext::Will)?
        } else {
            Properties::EMPTY
        };
        let topic = check_topic_name(read_binary(&mut b)?)?;
        if topic.is_empty() {
            return Err(DecodeError::EmptyTopic);
        }
        let payload = read_binary(&mut b)?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    // Old 3.1 clients set the flags but leave the field out; Mosquitto
    // ignores the flag in that case, and so do we.
    let username = if username_flag && !(v31 && b.is_empty()) {
        Some(read_str(&mut b)?)
    } else {
        None
    };
    let password = if password_flag && !(v31 && b.is_empty()) {
        Some(read_binary(&mut b)?)
    } else {
        None
    };
    expect_end(b)?;
    Ok(Connect {
        version,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

fn decode_connack(body: &[u8], version: ProtocolVersion) -> Result<Connack<'_>, DecodeError> {
    let mut b = body;
    let flags = read_u8(&mut b)?;
    // 3.1 called this byte "reserved" without constraining it.
    if flags & 0xFE != 0 && version != ProtocolVersion::V31 {
        return Err(DecodeError::ReservedConnackFlags);
    }
    let code = read_u8(&mut b)?;
    let properties = if version.is_v5() {
        check_code(code, CONNACK_CODES)?;
        read_properties(&mut b, PropertyContext::Connack)?
    } else {
        if code > reason::CONNACK_NOT_AUTHORIZED {
            return Err(DecodeError::InvalidReasonCode);
        }
        Properties::EMPTY
    };
    expect_end(b)?;
    Ok(Connack {
        session_present: flags & 0x01 != 0,
        code,
        properties,
    })
}

/// The hot path: one length read, one UTF-8 check plus one memchr3 scan of
/// the topic, property validation only when properties are present.
fn decode_publish(first: u8, body: &[u8], v5: bool) -> Result<Publish<'_>, DecodeError> {
    let mut b = body;
    let topic = read_binary(&mut b)?;
    // check_first_byte already refused QoS 3.
    let qos = QoS::from_u8((first >> 1) & 3).ok_or(DecodeError::InvalidQoS)?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        read_packet_id(&mut b)?
    };
    let properties = if v5 {
        read_properties(&mut b, PropertyContext::Publish)?
    } else {
        Properties::EMPTY
    };
    let topic = check_topic_name(topic)?;
    if topic.is_empty() && !(v5 && properties.topic_alias().is_some()) {
        return Err(DecodeError::EmptyTopic);
    }
    Ok(Publish {
        dup: first & 0x08 != 0,
        qos,
        retain: first & 0x01 != 0,
        topic,
        packet_id,
        properties,
        payload: b,
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. The reason code is not checked against
/// the spec's table: Mosquitto accepts any value (only "below 0x80 or not"
/// changes what happens next), and it sends 0x95 in PUBACK/PUBREC itself.
fn decode_ack(body: &[u8], v5: bool) -> Result<Ack<'_>, DecodeError> {
    let mut b = body;
    let packet_id = read_packet_id(&mut b)?;
    let mut reason = 0;
    let mut properties = Properties::EMPTY;
    if v5 {
        // Remaining length 2: success, no properties; 3: reason only.
        if !b.is_empty() {
            reason = read_u8(&mut b)?;
        }
        if !b.is_empty() {
            properties = read_properties(&mut b, PropertyContext::Ack)?;
        }
    }
    // Bytes after the packet id (3.1.x) or the properties (5.0) are ignored,
    // as Mosquitto ignores them.
    Ok(Ack {
        packet_id,
        reason,
        properties,
    })
}

/// DISCONNECT and AUTH bodies: remaining length 0 means reason 0; a lone
/// reason byte means no properties.
fn decode_reason_tail<'a>(
    body: &'a [u8],
    ctx: PropertyContext,
    codes: &[u8],
) -> Result<(u8, Properties<'a>), DecodeError> {
    let mut b = body;
    if b.is_empty() {
        return Ok((0, Properties::EMPTY));
    }
    let reason = read_u8(&mut b)?;
    check_code(reason, codes)?;
    let properties = if b.is_empty() {
        Properties::EMPTY
    } else {
        read_properties(&mut b, ctx)?
    };
    expect_end(b)?;
    Ok((reason, properties))
}

/// No Local on a shared subscription ([MQTT-3.8.3-4] calls it a protocol
/// error) is let through, as Mosquitto 2.0.11 does.
fn decode_subscribe(body: &[u8], version: ProtocolVersion) -> Result<Subscribe<'_>, DecodeError> {
    let v5 = version.is_v5();
    let mut b = body;
    let packet_id = read_packet_id(&mut b)?;
    let properties = if v5 {
        read_properties(&mut b, PropertyContext::Subscribe)?
    } else {
        Properties::EMPTY
    };
    let raw = b;
    // MQTT 3.1 did not require a filter; Mosquitto answers an empty one with
    // an empty SUBACK / UNSUBACK.
    if b.is_empty() && version != ProtocolVersion::V31 {
        return Err(DecodeError::NoTopicFilters);
    }
    while !b.is_empty() {
        let filter = read_str(&mut b)?;
        if filter.is_empty() {
            return Err(DecodeError::EmptyTopic);
        }
        let opts = read_u8(&mut b)?;
        let reserved = if v5 { 0xC0 } else { 0xFC };
        if opts & reserved != 0 {
            return Err(DecodeError::ReservedSubscriptionOptions);
        }
        if opts & 0x03 == 3 {
            return Err(DecodeError::InvalidQoS);
        }
        if (opts >> 4) & 0x03 == 3 {
            return Err(DecodeError::InvalidRetainHandling);
        }
    }
    Ok(Subscribe {
        packet_id,
        properties,
        filters: SubscribeFilters::from_raw(raw),
    })
}

fn decode_suback(body: &[u8], version: ProtocolVersion) -> Result<Suback<'_>, DecodeError> {
    let v5 = version.is_v5();
    let mut b = body;
    let packet_id = read_packet_id(&mut b)?;
    let properties = if v5 {
        read_properties(&mut b, PropertyContext::Suback)?
    } else {
        Properties::EMPTY
    };
    // The answer to a 3.1 SUBSCRIBE without filters has no codes.
    if b.is_empty() && version != ProtocolVersion::V31 {
        return Err(DecodeError::NoReturnCodes);
    }
    let allowed = if v5 { SUBACK_CODES } else { SUBACK_V3_CODES };
    for &code in b {
        check_code(code, allowed)?;
    }
    Ok(Suback {
        packet_id,
        properties,
        codes: b,
    })
}

fn decode_unsubscribe(
    body: &[u8],
    version: ProtocolVersion,
) -> Result<Unsubscribe<'_>, DecodeError> {
    let v5 = version.is_v5();
    let mut b = body;
    let packet_id = read_packet_id(&mut b)?;
    let properties = if v5 {
        read_properties(&mut b, PropertyContext::Unsubscribe)?
    } else {
        Properties::EMPTY
    };
    let raw = b;
    // MQTT 3.1 did not require a filter; Mosquitto answers an empty one with
    // an empty SUBACK / UNSUBACK.
    if b.is_empty() && version != ProtocolVersion::V31 {
        return Err(DecodeError::NoTopicFilters);
    }
    while !b.is_empty() {
        if read_str(&mut b)?.is_empty() {
            return Err(DecodeError::EmptyTopic);
        }
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters: UnsubscribeFilters::from_raw(raw),
    })
}

fn decode_unsuback(body: &[u8], v5: bool) -> Result<Unsuback<'_>, DecodeError> {
    let mut b = body;
    let packet_id = read_packet_id(&mut b)?;
    if !v5 {
        expect_end(b)?;
        return Ok(Unsuback {
            packet_id,
            properties: Properties::EMPTY,
            codes: &[],
        });
    }
    let properties = read_properties(&mut b, PropertyContext::Unsuback)?;
    if b.is_empty() {
        return Err(DecodeError::NoReturnCodes);
    }
    for &code in b {
        check_code(code, UNSUBACK_CODES)?;
    }
    Ok(Unsuback {
        packet_id,
        properties,
        codes: b,
    })
}
