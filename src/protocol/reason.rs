//! reason: MQTT 5.0 reason codes and MQTT 3.1.x CONNACK return codes.
//!
//! Owns: `ReasonCode` (the typed v5 reason code the broker decides with),
//! the numeric constants the encoders and clients use, the v5 -> 3.1.x
//! CONNACK mapping and the names used in log lines.
//!
//! Must not: decide which code a situation deserves (that is the broker's
//! call; `DecodeError::reason_code` covers decoding failures).

pub const SUCCESS: u8 = 0x00;
pub const NORMAL_DISCONNECTION: u8 = 0x00;
pub const GRANTED_QOS_0: u8 = 0x00;
pub const GRANTED_QOS_1: u8 = 0x01;
pub const GRANTED_QOS_2: u8 = 0x02;
pub const DISCONNECT_WITH_WILL: u8 = 0x04;
pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
pub const REAUTHENTICATE: u8 = 0x19;
pub const UNSPECIFIED_ERROR: u8 = 0x80;
pub const MALFORMED_PACKET: u8 = 0x81;
pub const PROTOCOL_ERROR: u8 = 0x82;
pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
pub const NOT_AUTHORIZED: u8 = 0x87;
pub const SERVER_UNAVAILABLE: u8 = 0x88;
pub const SERVER_BUSY: u8 = 0x89;
pub const BANNED: u8 = 0x8A;
pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
pub const SESSION_TAKEN_OVER: u8 = 0x8E;
pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
pub const TOPIC_NAME_INVALID: u8 = 0x90;
pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
pub const PACKET_TOO_LARGE: u8 = 0x95;
pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
pub const QUOTA_EXCEEDED: u8 = 0x97;
pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
pub const USE_ANOTHER_SERVER: u8 = 0x9C;
pub const SERVER_MOVED: u8 = 0x9D;
pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;

/// An MQTT 5.0 reason code, as the broker decides it. The wire carries
/// the byte (`code`); 3.1.x clients get `connack_v3` or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReasonCode {
    Success = 0x00,
    GrantedQos1 = 0x01,
    GrantedQos2 = 0x02,
    DisconnectWithWill = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    Reauthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUsernameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QosNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    /// 0x00 in a DISCONNECT.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// 0x00 in a SUBACK.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The byte on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason code this byte stands for, if any.
    pub fn from_code(code: u8) -> Option<ReasonCode> {
        use ReasonCode::*;
        const ALL: [ReasonCode; 43] = [
            Success,
            GrantedQos1,
            GrantedQos2,
            DisconnectWithWill,
            NoMatchingSubscribers,
            NoSubscriptionExisted,
            ContinueAuthentication,
            Reauthenticate,
            UnspecifiedError,
            MalformedPacket,
            ProtocolError,
            ImplementationSpecificError,
            UnsupportedProtocolVersion,
            ClientIdentifierNotValid,
            BadUsernameOrPassword,
            NotAuthorized,
            ServerUnavailable,
            ServerBusy,
            Banned,
            ServerShuttingDown,
            BadAuthenticationMethod,
            KeepAliveTimeout,
            SessionTakenOver,
            TopicFilterInvalid,
            TopicNameInvalid,
            PacketIdentifierInUse,
            PacketIdentifierNotFound,
            ReceiveMaximumExceeded,
            TopicAliasInvalid,
            PacketTooLarge,
            MessageRateTooHigh,
            QuotaExceeded,
            AdministrativeAction,
            PayloadFormatInvalid,
            RetainNotSupported,
            QosNotSupported,
            UseAnotherServer,
            ServerMoved,
            SharedSubscriptionsNotSupported,
            ConnectionRateExceeded,
            MaximumConnectTime,
            SubscriptionIdentifiersNotSupported,
            WildcardSubscriptionsNotSupported,
        ];
        ALL.into_iter().find(|r| r.code() == code)
    }

    /// A failure (0x80 and above).
    pub fn is_error(self) -> bool {
        is_error(self.code())
    }

    /// The 3.1.x CONNACK return code a v3 client gets instead.
    pub fn connack_v3(self) -> u8 {
        connack_v3_from_v5(self.code())
    }

    /// Its name in logs and Reason Strings.
    pub fn name(self) -> &'static str {
        reason_name(self.code())
    }
}

impl From<ReasonCode> for u8 {
    fn from(r: ReasonCode) -> u8 {
        r.code()
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// 3.1.x SUBACK failure return code.
pub const SUBACK_FAILURE: u8 = 0x80;

/// 3.1.x CONNACK return codes.
pub const CONNACK_ACCEPTED: u8 = 0;
pub const CONNACK_UNACCEPTABLE_PROTOCOL: u8 = 1;
pub const CONNACK_IDENTIFIER_REJECTED: u8 = 2;
pub const CONNACK_SERVER_UNAVAILABLE: u8 = 3;
pub const CONNACK_BAD_USERNAME_PASSWORD: u8 = 4;
pub const CONNACK_NOT_AUTHORIZED: u8 = 5;

/// True for reason codes that report a failure (0x80 and above).
pub fn is_error(code: u8) -> bool {
    code >= 0x80
}

/// Map a v5 CONNACK reason code to the nearest 3.1.x return code, the way
/// Mosquitto picks its v3 answers: authentication failures become "bad user
/// name or password", authorisation-like refusals "not authorised", and
/// anything without a 3.1.x equivalent "server unavailable".
pub fn connack_v3_from_v5(code: u8) -> u8 {
    match code {
        SUCCESS => CONNACK_ACCEPTED,
        UNSUPPORTED_PROTOCOL_VERSION => CONNACK_UNACCEPTABLE_PROTOCOL,
        CLIENT_IDENTIFIER_NOT_VALID => CONNACK_IDENTIFIER_REJECTED,
        BAD_USERNAME_OR_PASSWORD => CONNACK_BAD_USERNAME_PASSWORD,
        NOT_AUTHORIZED | BANNED | BAD_AUTHENTICATION_METHOD => CONNACK_NOT_AUTHORIZED,
        _ => CONNACK_SERVER_UNAVAILABLE,
    }
}

/// Human-readable name of a v5 reason code, for logs. 0x00 reads "Success"
/// whatever the packet (it also means "Normal disconnection" and "Granted
/// QoS 0").
pub fn reason_name(code: u8) -> &'static str {
    match code {
        0x00 => "Success",
        0x01 => "Granted QoS 1",
        0x02 => "Granted QoS 2",
        0x04 => "Disconnect with Will Message",
        0x10 => "No matching subscribers",
        0x11 => "No subscription existed",
        0x18 => "Continue authentication",
        0x19 => "Re-authenticate",
        0x80 => "Unspecified error",
        0x81 => "Malformed Packet",
        0x82 => "Protocol Error",
        0x83 => "Implementation specific error",
        0x84 => "Unsupported Protocol Version",
        0x85 => "Client Identifier not valid",
        0x86 => "Bad User Name or Password",
        0x87 => "Not authorized",
        0x88 => "Server unavailable",
        0x89 => "Server busy",
        0x8A => "Banned",
        0x8B => "Server shutting down",
        0x8C => "Bad authentication method",
        0x8D => "Keep Alive timeout",
        0x8E => "Session taken over",
        0x8F => "Topic Filter invalid",
        0x90 => "Topic Name invalid",
        0x91 => "Packet Identifier in use",
        0x92 => "Packet Identifier not found",
        0x93 => "Receive Maximum exceeded",
        0x94 => "Topic Alias invalid",
        0x95 => "Packet too large",
        0x96 => "Message rate too high",
        0x97 => "Quota exceeded",
        0x98 => "Administrative action",
        0x99 => "Payload format invalid",
        0x9A => "Retain not supported",
        0x9B => "QoS not supported",
        0x9C => "Use another server",
        0x9D => "Server moved",
        0x9E => "Shared Subscriptions not supported",
        0x9F => "Connection rate exceeded",
        0xA0 => "Maximum connect time",
        0xA1 => "Subscription identifiers not supported",
        0xA2 => "Wildcard Subscriptions not supported",
        _ => "Unknown reason",
    }
}

/// Name of a 3.1.x CONNACK return code, for logs.
pub fn connack_v3_name(code: u8) -> &'static str {
    match code {
        CONNACK_ACCEPTED => "Connection Accepted",
        CONNACK_UNACCEPTABLE_PROTOCOL => "Connection Refused: unacceptable protocol version",
        CONNACK_IDENTIFIER_REJECTED => "Connection Refused: identifier rejected",
        CONNACK_SERVER_UNAVAILABLE => "Connection Refused: server unavailable",
        CONNACK_BAD_USERNAME_PASSWORD => "Connection Refused: bad user name or password",
        CONNACK_NOT_AUTHORIZED => "Connection Refused: not authorised",
        _ => "Connection Refused: unknown reason",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_mapping() {
        assert_eq!(connack_v3_from_v5(SUCCESS), 0);
        assert_eq!(connack_v3_from_v5(UNSUPPORTED_PROTOCOL_VERSION), 1);
        assert_eq!(connack_v3_from_v5(CLIENT_IDENTIFIER_NOT_VALID), 2);
        assert_eq!(connack_v3_from_v5(SERVER_UNAVAILABLE), 3);
        assert_eq!(connack_v3_from_v5(SERVER_BUSY), 3);
        assert_eq!(connack_v3_from_v5(UNSPECIFIED_ERROR), 3);
        assert_eq!(connack_v3_from_v5(BAD_USERNAME_OR_PASSWORD), 4);
        assert_eq!(connack_v3_from_v5(NOT_AUTHORIZED), 5);
        assert_eq!(connack_v3_from_v5(BANNED), 5);
        for code in 0..=255u8 {
            assert!(connack_v3_from_v5(code) <= CONNACK_NOT_AUTHORIZED);
        }
    }

    #[test]
    fn every_code_maps_to_its_enum_and_back() {
        for code in 0..=255u8 {
            match ReasonCode::from_code(code) {
                Some(r) => {
                    assert_eq!(r.code(), code);
                    assert_ne!(r.name(), "Unknown reason", "{code:#x}");
                }
                None => assert_eq!(reason_name(code), "Unknown reason", "{code:#x}"),
            }
        }
        assert_eq!(
            ReasonCode::NotAuthorized.connack_v3(),
            CONNACK_NOT_AUTHORIZED
        );
        assert_eq!(u8::from(ReasonCode::PacketTooLarge), PACKET_TOO_LARGE);
        assert!(ReasonCode::QuotaExceeded.is_error() && !ReasonCode::GrantedQos2.is_error());
    }

    #[test]
    fn names() {
        assert_eq!(reason_name(PACKET_TOO_LARGE), "Packet too large");
        assert_eq!(reason_name(0x03), "Unknown reason");
        assert_eq!(
            reason_name(WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED),
            "Wildcard Subscriptions not supported"
        );
        assert!(is_error(MALFORMED_PACKET) && !is_error(GRANTED_QOS_2));
        assert_eq!(
            connack_v3_name(4),
            "Connection Refused: bad user name or password"
        );
    }
}
