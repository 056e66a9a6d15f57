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

use std::fmt;

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

/// Why a packet was refused. Doc comments cite the normative statement
/// (MQTT 3.1.1 numbering unless marked v5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Remaining length (or another variable byte integer used as it) has a
    /// fifth byte; at most four are allowed (section 2.2.3, v5 1.5.5).
    RemainingLengthTooLong,
    /// A variable byte integer inside the packet (property length,
    /// subscription identifier) is longer than four bytes (v5 1.5.5).
    VariableByteIntegerTooLong,
    /// Total packet size over the receiver's maximum packet size
    /// (v5 [MQTT-3.2.2-15] / [MQTT-3.1.2-24]; the broker's own limit).
    PacketTooLarge,
    /// Packet type 0 (reserved), or 15 (AUTH) before MQTT 5.0 (section 2.2.1).
    UnknownPacketType,
    /// Fixed header flags other than those defined for the packet type
    /// [MQTT-2.2.2-1] / [MQTT-2.2.2-2]: PUBREL, SUBSCRIBE, UNSUBSCRIBE
    /// 0b0010, others 0.
    ReservedFlags,
    /// QoS 3 in a PUBLISH [MQTT-3.3.1-4], a will [MQTT-3.1.2-14] or a
    /// subscription request [MQTT-3.8.3-4].
    InvalidQoS,
    /// Wildcard (`+` or `#`) in a Topic Name [MQTT-3.3.2-2], including a
    /// will topic.
    WildcardInTopicName,
    /// A string is not well-formed UTF-8 [MQTT-1.5.3-1] (v5 [MQTT-1.5.4-1]).
    InvalidUtf8,
    /// A string contains U+0000 [MQTT-1.5.3-2] (v5 [MQTT-1.5.4-2]).
    NullCharacter,
    /// Zero-length Topic Name or Topic Filter [MQTT-4.7.3-1]; in v5 an empty
    /// PUBLISH topic is allowed only together with a Topic Alias (v5 3.3.2.1).
    EmptyTopic,
    /// Topic Alias property with value 0 (v5 [MQTT-3.3.2-8]).
    TopicAliasZero,
    /// Packet identifier 0 where one is required [MQTT-2.3.1-1].
    ZeroPacketId,
    /// SUBSCRIBE [MQTT-3.8.3-3] or UNSUBSCRIBE [MQTT-3.10.3-2] without any
    /// topic filter.
    NoTopicFilters,
    /// SUBACK or UNSUBACK (v5) without any return/reason code: they carry
    /// one per topic filter and a (UN)SUBSCRIBE has at least one (3.9.3,
    /// v5 3.11.3).
    NoReturnCodes,
    /// A field runs past the end of the packet (remaining length too small
    /// for its contents).
    Truncated,
    /// Bytes left over after the last field, where the packet's layout has
    /// a fixed end (e.g. 3.1.1 PUBACK is exactly 2 bytes, PINGREQ is empty).
    TrailingBytes,
    /// CONNECT protocol name is neither `MQTT` nor `MQIsdp` [MQTT-3.1.2-1].
    BadProtocolName,
    /// Protocol level not supported for the given protocol name
    /// [MQTT-3.1.2-2]. Carries the level byte as received.
    UnsupportedProtocolVersion(u8),
    /// Reserved bit 0 of the CONNECT flags is set [MQTT-3.1.2-3].
    ReservedConnectFlag,
    /// Will QoS non-zero while the Will Flag is 0 [MQTT-3.1.2-13]
    /// (v5 [MQTT-3.1.2-11]).
    WillQoSWithoutWill,
    /// Will Retain set while the Will Flag is 0 [MQTT-3.1.2-15]
    /// (v5 [MQTT-3.1.2-13]).
    WillRetainWithoutWill,
    /// Password flag without user name flag, 3.1 / 3.1.1 only
    /// [MQTT-3.1.2-22]; MQTT 5.0 allows it.
    PasswordWithoutUsername,
    /// Zero-length Client Identifier where the version forbids it: always
    /// in 3.1 (1 to 23 characters), with Clean Session 0 in 3.1.1
    /// [MQTT-3.1.3-8]. Answered with CONNACK "identifier rejected".
    ZeroLengthClientId,
    /// Reserved bits 7-1 of the CONNACK acknowledge flags are set
    /// (3.1.1 section 3.2.2.1, v5 3.2.2.1.1). MQTT 3.1 did not reserve them.
    ReservedConnackFlags,
    /// Property identifier not defined by MQTT 5.0 (v5 2.2.2.2: malformed).
    InvalidPropertyId,
    /// A property that may appear once appears twice (v5 2.2.2.2 / 3.x.2.x
    /// "It is a Protocol Error to include ... more than once").
    DuplicateProperty,
    /// A property not allowed in this packet (v5 2.2.2.2: malformed).
    PropertyNotAllowed,
    /// A property value out of range (e.g. Receive Maximum 0, Maximum Packet
    /// Size 0, a 0/1 flag with another value, Subscription Identifier 0, a
    /// Response Topic with wildcards [MQTT-3.3.2-14]).
    InvalidPropertyValue,
    /// Reserved bits in a SUBSCRIBE options byte: bits 7-2 in 3.1.1
    /// [MQTT-3.8.3-4], bits 7-6 in 5.0 [MQTT-3.8.3-5].
    ReservedSubscriptionOptions,
    /// Retain Handling 3 in a subscription (v5 3.8.3.1).
    InvalidRetainHandling,
    /// A reason / return code not defined for this packet type
    /// (v5 [MQTT-3.2.2-8], [MQTT-3.4.2-1], [MQTT-3.5.2-1], [MQTT-3.6.2-1],
    /// [MQTT-3.7.2-1], [MQTT-3.9.3-2], [MQTT-3.11.3-2], [MQTT-3.14.2-1],
    /// [MQTT-3.15.2-1]; 3.1.1 CONNACK codes above 5 (reserved) and SUBACK
    /// codes other than 0, 1, 2, 0x80 [MQTT-3.9.3-2]).
    InvalidReasonCode,
}

impl DecodeError {
    /// The MQTT 5.0 reason code to send (CONNACK for a bad CONNECT,
    /// otherwise DISCONNECT). For 3.1.x CONNACK use
    /// `reason::connack_v3_from_v5`.
    pub fn reason_code(&self) -> u8 {
        use DecodeError::*;
        match self {
            RemainingLengthTooLong
            | VariableByteIntegerTooLong
            | ReservedFlags
            | InvalidQoS
            | InvalidUtf8
            | NullCharacter
            | NoReturnCodes
            | Truncated
            | TrailingBytes
            | ReservedConnectFlag
            | WillQoSWithoutWill
            | WillRetainWithoutWill
            | PasswordWithoutUsername
            | ReservedConnackFlags
            | InvalidPropertyId
            | PropertyNotAllowed
            | ReservedSubscriptionOptions => reason::MALFORMED_PACKET,
            // Mosquitto answers these with "protocol error" too.
            UnknownPacketType
            | WildcardInTopicName
            | EmptyTopic
            | ZeroPacketId
            | NoTopicFilters
            | BadProtocolName
            | DuplicateProperty
            | InvalidPropertyValue
            | InvalidRetainHandling
            | InvalidReasonCode => reason::PROTOCOL_ERROR,
            TopicAliasZero => reason::TOPIC_ALIAS_INVALID,
            PacketTooLarge => reason::PACKET_TOO_LARGE,
            UnsupportedProtocolVersion(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
            ZeroLengthClientId => reason::CLIENT_IDENTIFIER_NOT_VALID,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError::*;
        let s = match self {
            RemainingLengthTooLong => "remaining length longer than four bytes",
            VariableByteIntegerTooLong => "variable byte integer longer than four bytes",
            PacketTooLarge => "packet larger than the maximum packet size",
            UnknownPacketType => "unknown packet type",
            ReservedFlags => "invalid fixed header flags",
            InvalidQoS => "invalid QoS 3",
            WildcardInTopicName => "wildcard in topic name",
            InvalidUtf8 => "string is not valid UTF-8",
            NullCharacter => "string contains U+0000",
            EmptyTopic => "empty topic",
            TopicAliasZero => "topic alias 0",
            ZeroPacketId => "packet identifier 0",
            NoTopicFilters => "no topic filters",
            NoReturnCodes => "no return codes",
            Truncated => "field runs past the end of the packet",
            TrailingBytes => "unexpected bytes at the end of the packet",
            BadProtocolName => "invalid protocol name",
            UnsupportedProtocolVersion(v) => {
                return write!(f, "unsupported protocol version {v}");
            }
            ReservedConnectFlag => "reserved CONNECT flag set",
            WillQoSWithoutWill => "will QoS set without will flag",
            WillRetainWithoutWill => "will retain set without will flag",
            PasswordWithoutUsername => "password without username",
            ZeroLengthClientId => "zero length client identifier not allowed",
            ReservedConnackFlags => "reserved CONNACK flags set",
            InvalidPropertyId => "unknown property identifier",
            DuplicateProperty => "duplicate property",
            PropertyNotAllowed => "property not allowed in this packet",
            InvalidPropertyValue => "invalid property value",
            ReservedSubscriptionOptions => "reserved subscription option bits set",
            InvalidRetainHandling => "invalid retain handling 3",
            InvalidReasonCode => "invalid reason code for this packet",
        };
        f.write_str(s)
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------
// Field readers. Each takes `&mut &[u8]` and advances it past what it read.
// Shared with `properties`.

pub(crate) fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if b.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

pub(crate) fn read_u8(b: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&v, tail) = b.split_first().ok_or(DecodeError::Truncated)?;
    *b = tail;
    Ok(v)
}

pub(crate) fn read_u16(b: &mut &[u8]) -> Result<u16, DecodeError> {
    let s = take(b, 2)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

pub(crate) fn read_u32(b: &mut &[u8]) -> Result<u32, DecodeError> {
    let s = take(b, 4)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Variable byte integer of at most four bytes.
pub(crate) fn read_varint(b: &mut &[u8]) -> Result<u32, DecodeError> {
    let mut value = 0u32;
    for i in 0..4 {
        let byte = read_u8(b)?;
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::VariableByteIntegerTooLong)
}

/// Two-byte length followed by that many bytes.
pub(crate) fn read_binary<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = read_u16(b)?;
    take(b, usize::from(n))
}

/// UTF-8 encoded string: well-formed, no U+0000 (MQTT 1.5.3 / v5 1.5.4).
/// Other code points (U+FFFF, control characters) are allowed.
pub(crate) fn read_str<'a>(b: &mut &'a [u8]) -> Result<&'a str, DecodeError> {
    check_str(read_binary(b)?)
}

pub(crate) fn check_str(bytes: &[u8]) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if memchr::memchr(0, bytes).is_some() {
        return Err(DecodeError::NullCharacter);
    }
    Ok(s)
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

/// The protocol version a (possibly incomplete or invalid) CONNECT asks
/// for, read from the start of the packet (fixed header included). Lets the
/// broker answer a CONNECT that failed to decode with a CONNACK in the
/// client's own version. None if this is not a CONNECT or the name/level is
/// not one of the three supported pairs.
pub fn peek_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    if buf.first()? >> 4 != pt::CONNECT {
        return None;
    }
    let (header_len, _) = fixed_header(buf).ok()??;
    let mut b = buf.get(header_len..)?;
    let name = read_binary(&mut b).ok()?;
    let level = read_u8(&mut b).ok()?;
    protocol_version(name, level).ok()
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
        pt::SUBACK => decode_suback(body, v5).map(Packet::Suback),
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

fn decode_suback(body: &[u8], v5: bool) -> Result<Suback<'_>, DecodeError> {
    let mut b = body;
    let packet_id = read_packet_id(&mut b)?;
    let properties = if v5 {
        read_properties(&mut b, PropertyContext::Suback)?
    } else {
        Properties::EMPTY
    };
    if b.is_empty() {
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
