//! error: `DecodeError`, every way a received packet can break the MQTT
//! wire format, each variant named after the spec statement it enforces, and
//! the one mapping from those to reason codes.
//!
//! Owns: the variants, their text and `reason_code`.
//!
//! Must not: depend on the decoder, the encoder or properties (they all
//! depend on it), or carry data that would need an allocation.

use std::fmt;

use super::reason::ReasonCode;

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
    /// [MQTT-2.2.2-1] / [MQTT-2.2.2-2], checked where Mosquitto checks them:
    /// PUBREL, SUBSCRIBE, UNSUBSCRIBE 0b0010, CONNECT and DISCONNECT 0.
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
    /// a fixed end (e.g. a 3.1.1 UNSUBACK or DISCONNECT).
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
    pub fn reason_code(&self) -> ReasonCode {
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
            | ReservedSubscriptionOptions => ReasonCode::MalformedPacket,
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
            | InvalidReasonCode => ReasonCode::ProtocolError,
            TopicAliasZero => ReasonCode::TopicAliasInvalid,
            PacketTooLarge => ReasonCode::PacketTooLarge,
            UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
            ZeroLengthClientId => ReasonCode::ClientIdentifierNotValid,
        }
    }
}

impl From<&DecodeError> for ReasonCode {
    fn from(e: &DecodeError) -> ReasonCode {
        e.reason_code()
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
