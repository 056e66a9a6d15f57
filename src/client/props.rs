//! props: v5 properties given on the command line (`-D command name value`).
//!
//! Owns: Mosquitto's property names and which packet each may go in
//! (`mosquitto_string_to_property_info`, `mosquitto_property_check_command`),
//! parsing a `-D` triple with `cfg_parse_property`'s checks and messages,
//! `mosquitto_property_check_all` (ranges, duplicates), and encoding a list
//! into the wire form the codec takes.
//!
//! Must not: know about sockets or the tools' control flow, or use
//! `options` (which uses this file): the string rule both need,
//! `valid_utf8_mosquitto`, lives here.

use crate::protocol::properties::id;
use crate::protocol::{Property, PropertyWriter};

/// The packet a property list is for (`mosquitto_string_to_command`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Connect,
    Connack,
    Publish,
    Puback,
    Pubrec,
    Pubrel,
    Pubcomp,
    Subscribe,
    Suback,
    Unsubscribe,
    Unsuback,
    Disconnect,
    Auth,
    Will,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        let s = s.to_ascii_lowercase();
        Some(match s.as_str() {
            "connect" => Command::Connect,
            "connack" => Command::Connack,
            "publish" => Command::Publish,
            "puback" => Command::Puback,
            "pubrec" => Command::Pubrec,
            "pubrel" => Command::Pubrel,
            "pubcomp" => Command::Pubcomp,
            "subscribe" => Command::Subscribe,
            "suback" => Command::Suback,
            "unsubscribe" => Command::Unsubscribe,
            "unsuback" => Command::Unsuback,
            "disconnect" => Command::Disconnect,
            "auth" => Command::Auth,
            "will" => Command::Will,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Byte,
    U16,
    U32,
    Varint,
    Binary,
    Str,
    Pair,
}

/// (name, identifier, value type), as libmosquitto spells them.
const NAMES: &[(&str, u8, Kind)] = &[
    (
        "payload-format-indicator",
        id::PAYLOAD_FORMAT_INDICATOR,
        Kind::Byte,
    ),
    (
        "message-expiry-interval",
        id::MESSAGE_EXPIRY_INTERVAL,
        Kind::U32,
    ),
    ("content-type", id::CONTENT_TYPE, Kind::Str),
    ("response-topic", id::RESPONSE_TOPIC, Kind::Str),
    ("correlation-data", id::CORRELATION_DATA, Kind::Binary),
    (
        "subscription-identifier",
        id::SUBSCRIPTION_IDENTIFIER,
        Kind::Varint,
    ),
    (
        "session-expiry-interval",
        id::SESSION_EXPIRY_INTERVAL,
        Kind::U32,
    ),
    (
        "assigned-client-identifier",
        id::ASSIGNED_CLIENT_IDENTIFIER,
        Kind::Str,
    ),
    ("server-keep-alive", id::SERVER_KEEP_ALIVE, Kind::U16),
    (
        "authentication-method",
        id::AUTHENTICATION_METHOD,
        Kind::Str,
    ),
    ("authentication-data", id::AUTHENTICATION_DATA, Kind::Binary),
    (
        "request-problem-information",
        id::REQUEST_PROBLEM_INFORMATION,
        Kind::Byte,
    ),
    ("will-delay-interval", id::WILL_DELAY_INTERVAL, Kind::U32),
    (
        "request-response-information",
        id::REQUEST_RESPONSE_INFORMATION,
        Kind::Byte,
    ),
    ("response-information", id::RESPONSE_INFORMATION, Kind::Str),
    ("server-reference", id::SERVER_REFERENCE, Kind::Str),
    ("reason-string", id::REASON_STRING, Kind::Str),
    ("receive-maximum", id::RECEIVE_MAXIMUM, Kind::U16),
    ("topic-alias-maximum", id::TOPIC_ALIAS_MAXIMUM, Kind::U16),
    ("topic-alias", id::TOPIC_ALIAS, Kind::U16),
    ("maximum-qos", id::MAXIMUM_QOS, Kind::Byte),
    ("retain-available", id::RETAIN_AVAILABLE, Kind::Byte),
    ("user-property", id::USER_PROPERTY, Kind::Pair),
    ("maximum-packet-size", id::MAXIMUM_PACKET_SIZE, Kind::U32),
    (
        "wildcard-subscription-available",
        id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        Kind::Byte,
    ),
    (
        "subscription-identifier-available",
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        Kind::Byte,
    ),
    (
        "shared-subscription-available",
        id::SHARED_SUBSCRIPTION_AVAILABLE,
        Kind::Byte,
    ),
];

fn lookup(name: &str) -> Option<(u8, Kind)> {
    NAMES
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, i, k)| (i, k))
}

/// `mosquitto_property_check_command`: may `identifier` appear in `cmd`?
pub fn allowed(cmd: Command, identifier: u8) -> bool {
    use Command as C;
    match identifier {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => matches!(cmd, C::Publish | C::Will),
        id::SUBSCRIPTION_IDENTIFIER => matches!(cmd, C::Publish | C::Subscribe),
        id::SESSION_EXPIRY_INTERVAL => matches!(cmd, C::Connect | C::Connack | C::Disconnect),
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => {
            matches!(cmd, C::Connect | C::Connack | C::Auth)
        }
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => cmd == C::Connack,
        id::WILL_DELAY_INTERVAL => cmd == C::Will,
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => cmd == C::Connect,
        id::SERVER_REFERENCE => matches!(cmd, C::Connack | C::Disconnect),
        id::REASON_STRING => {
            !matches!(cmd, C::Connect | C::Publish | C::Subscribe | C::Unsubscribe)
        }
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => {
            matches!(cmd, C::Connect | C::Connack)
        }
        id::TOPIC_ALIAS => cmd == C::Publish,
        id::USER_PROPERTY => true,
        _ => false,
    }
}

/// One property value, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    Varint(u32),
    Binary(Vec<u8>),
    Str(String),
    Pair(String, String),
}

/// An ordered property list (a `mosquitto_property *` chain).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PropList {
    pub items: Vec<(u8, Value)>,
}

/// Why `check_all` refused a list (libmosquitto error numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// MOSQ_ERR_PROTOCOL: bad value or not allowed in this packet.
    Protocol,
    /// MOSQ_ERR_DUPLICATE_PROPERTY
    Duplicate,
}

impl CheckError {
    /// `mosquitto_strerror` of the error.
    pub fn text(self) -> &'static str {
        match self {
            CheckError::Protocol => super::messages::strerror(super::messages::err::PROTOCOL),
            CheckError::Duplicate => {
                super::messages::strerror(super::messages::err::DUPLICATE_PROPERTY)
            }
        }
    }
}

impl PropList {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, identifier: u8, value: Value) {
        self.items.push((identifier, value));
    }

    pub fn has(&self, identifier: u8) -> bool {
        self.items.iter().any(|(i, _)| *i == identifier)
    }

    /// `mosquitto_property_check_all`.
    pub fn check_all(&self, cmd: Command) -> Result<(), CheckError> {
        for (n, (ident, value)) in self.items.iter().enumerate() {
            let bad_value = match (*ident, value) {
                (
                    id::REQUEST_PROBLEM_INFORMATION
                    | id::REQUEST_RESPONSE_INFORMATION
                    | id::MAXIMUM_QOS
                    | id::RETAIN_AVAILABLE
                    | id::WILDCARD_SUBSCRIPTION_AVAILABLE
                    | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
                    | id::SHARED_SUBSCRIPTION_AVAILABLE,
                    Value::Byte(v),
                ) => *v > 1,
                (id::MAXIMUM_PACKET_SIZE, Value::U32(v)) => *v == 0,
                (id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS, Value::U16(v)) => *v == 0,
                _ => false,
            };
            if bad_value || !allowed(cmd, *ident) {
                return Err(CheckError::Protocol);
            }
            if *ident != id::USER_PROPERTY
                && self
                    .items
                    .iter()
                    .skip(n + 1)
                    .any(|(other, _)| other == ident)
            {
                return Err(CheckError::Duplicate);
            }
        }
        Ok(())
    }

    /// Wire form, without the length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = PropertyWriter::new();
        for (ident, value) in &self.items {
            if let Some(p) = to_property(*ident, value) {
                w.push(p);
            }
        }
        w.as_bytes().to_vec()
    }
}

fn to_property(ident: u8, v: &Value) -> Option<Property<'_>> {
    Some(match (ident, v) {
        (id::PAYLOAD_FORMAT_INDICATOR, Value::Byte(b)) => Property::PayloadFormatIndicator(*b),
        (id::REQUEST_PROBLEM_INFORMATION, Value::Byte(b)) => {
            Property::RequestProblemInformation(*b)
        }
        (id::REQUEST_RESPONSE_INFORMATION, Value::Byte(b)) => {
            Property::RequestResponseInformation(*b)
        }
        (id::MAXIMUM_QOS, Value::Byte(b)) => Property::MaximumQoS(*b),
        (id::RETAIN_AVAILABLE, Value::Byte(b)) => Property::RetainAvailable(*b),
        (id::WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(b)) => {
            Property::WildcardSubscriptionAvailable(*b)
        }
        (id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(b)) => {
            Property::SubscriptionIdentifierAvailable(*b)
        }
        (id::SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(b)) => {
            Property::SharedSubscriptionAvailable(*b)
        }
        (id::SERVER_KEEP_ALIVE, Value::U16(v)) => Property::ServerKeepAlive(*v),
        (id::RECEIVE_MAXIMUM, Value::U16(v)) => Property::ReceiveMaximum(*v),
        (id::TOPIC_ALIAS_MAXIMUM, Value::U16(v)) => Property::TopicAliasMaximum(*v),
        (id::TOPIC_ALIAS, Value::U16(v)) => Property::TopicAlias(*v),
        (id::MESSAGE_EXPIRY_INTERVAL, Value::U32(v)) => Property::MessageExpiryInterval(*v),
        (id::SESSION_EXPIRY_INTERVAL, Value::U32(v)) => Property::SessionExpiryInterval(*v),
        (id::WILL_DELAY_INTERVAL, Value::U32(v)) => Property::WillDelayInterval(*v),
        (id::MAXIMUM_PACKET_SIZE, Value::U32(v)) => Property::MaximumPacketSize(*v),
        (id::SUBSCRIPTION_IDENTIFIER, Value::Varint(v)) => Property::SubscriptionIdentifier(*v),
        (id::CONTENT_TYPE, Value::Str(s)) => Property::ContentType(s),
        (id::RESPONSE_TOPIC, Value::Str(s)) => Property::ResponseTopic(s),
        (id::ASSIGNED_CLIENT_IDENTIFIER, Value::Str(s)) => Property::AssignedClientIdentifier(s),
        (id::AUTHENTICATION_METHOD, Value::Str(s)) => Property::AuthenticationMethod(s),
        (id::RESPONSE_INFORMATION, Value::Str(s)) => Property::ResponseInformation(s),
        (id::SERVER_REFERENCE, Value::Str(s)) => Property::ServerReference(s),
        (id::REASON_STRING, Value::Str(s)) => Property::ReasonString(s),
        (id::CORRELATION_DATA, Value::Binary(b)) => Property::CorrelationData(b),
        (id::AUTHENTICATION_DATA, Value::Binary(b)) => Property::AuthenticationData(b),
        (id::USER_PROPERTY, Value::Pair(k, v)) => Property::UserProperty(k, v),
        _ => return None,
    })
}

/// Which of the tool's lists a `-D` goes to, and its encoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub command: Command,
    pub identifier: u8,
    pub value: Value,
    /// Arguments consumed after `-D` (3, or 4 for user-property).
    pub consumed: usize,
}

/// C's `atol`: leading blanks, a sign, digits; stops at anything else;
/// saturates instead of overflowing.
pub fn atol(s: &[u8]) -> i64 {
    let mut i = 0;
    while s
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C))
    {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
        let d = i64::from(c - b'0');
        v = if neg {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
        i += 1;
    }
    v
}

/// C's `atoi` on glibc: `(int)strtol(s)`.
pub fn atoi(s: &[u8]) -> i32 {
    atol(s) as i32
}

/// Parse `-D command name value [value]` (`args` starts at the command).
/// The error is the full message Mosquitto prints (with its blank line).
pub fn parse_property(args: &[Vec<u8>]) -> Result<Parsed, String> {
    const NOT_ENOUGH: &str =
        "Error: --property argument given but not enough arguments specified.\n\n";
    if args.len() < 3 {
        return Err(NOT_ENOUGH.into());
    }
    let text = |i: usize| {
        String::from_utf8_lossy(args.get(i).map(Vec::as_slice).unwrap_or_default()).into_owned()
    };
    let cmdname = text(0);
    let Some(command) = Command::parse(&cmdname) else {
        return Err("Error: Invalid command given in --property argument.\n\n".into());
    };
    let propname = text(1);
    let Some((identifier, kind)) = lookup(&propname) else {
        return Err("Error: Invalid property name given in --property argument.\n\n".into());
    };
    if !allowed(command, identifier) {
        return Err(format!(
            "Error: {propname} property not allowed for {cmdname} in --property argument.\n\n"
        ));
    }
    let (key, value, consumed) = if identifier == id::USER_PROPERTY {
        if args.len() < 4 {
            return Err(NOT_ENOUGH.into());
        }
        (
            args.get(2).cloned(),
            args.get(3).cloned().unwrap_or_default(),
            4,
        )
    } else {
        (None, args.get(2).cloned().unwrap_or_default(), 3)
    };
    let not_supported = || {
        Err(format!(
            "Error: {propname} property not supported for {cmdname} in --property argument.\n\n"
        ))
    };
    match command {
        Command::Publish if identifier == id::SUBSCRIPTION_IDENTIFIER => return not_supported(),
        Command::Subscribe
            if identifier != id::SUBSCRIPTION_IDENTIFIER && identifier != id::USER_PROPERTY =>
        {
            return not_supported()
        }
        Command::Connect
        | Command::Publish
        | Command::Subscribe
        | Command::Unsubscribe
        | Command::Disconnect
        | Command::Will => {}
        _ => return not_supported(),
    }
    let range = |v: i64, max: i64| -> Result<i64, String> {
        if v < 0 || v > max {
            Err(format!(
                "Error: Property value ({v}) out of range for property {propname}.\n\n"
            ))
        } else {
            Ok(v)
        }
    };
    let utf8 = |b: Vec<u8>| -> Result<String, String> {
        match String::from_utf8(b) {
            Ok(s) if valid_utf8_mosquitto(&s) => Ok(s),
            _ => Err(format!(
                "Error adding property {propname} {}\n",
                kind_number(kind)
            )),
        }
    };
    let value = match kind {
        Kind::Byte => Value::Byte(range(atol(&value), 255)? as u8),
        Kind::U16 => Value::U16(range(atol(&value), 65535)? as u16),
        Kind::U32 => Value::U32(range(atol(&value), i64::from(u32::MAX))? as u32),
        Kind::Varint => Value::Varint(range(atol(&value), 268_435_455)? as u32),
        Kind::Binary => {
            if value.len() > usize::from(u16::MAX) {
                return Err(format!(
                    "Error: Property value too long for property {propname}.\n\n"
                ));
            }
            Value::Binary(value)
        }
        Kind::Str => Value::Str(utf8(value)?),
        Kind::Pair => Value::Pair(utf8(key.unwrap_or_default())?, utf8(value)?),
    };
    Ok(Parsed {
        command,
        identifier,
        value,
        consumed,
    })
}

/// libmosquitto's MQTT_PROP_TYPE_* numbers, printed in one error message.
fn kind_number(k: Kind) -> u8 {
    match k {
        Kind::Byte => 1,
        Kind::U16 => 2,
        Kind::U32 => 3,
        Kind::Varint => 4,
        Kind::Binary => 5,
        Kind::Str => 6,
        Kind::Pair => 7,
    }
}

/// Mosquitto's `mosquitto_validate_utf8` on top of Rust's UTF-8 check: no
/// U+0000, no control characters (U+0001-U+001F, U+007F-U+009F) and no
/// non-characters.
pub fn valid_utf8_mosquitto(s: &str) -> bool {
    s.len() <= 65535
        && s.chars().all(|c| {
            let cp = u32::from(c);
            !(cp <= 0x1F
                || (0x7F..=0x9F).contains(&cp)
                || (0xFDD0..=0xFDEF).contains(&cp)
                || cp & 0xFFFE == 0xFFFE)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn messages_match_mosquitto() {
        let cases: &[(&[&str], &str)] = &[
            (&["publish"], "Error: --property argument given but not enough arguments specified.\n\n"),
            (&["publish", "foo", "bar"], "Error: Invalid property name given in --property argument.\n\n"),
            (&["foo", "bar", "baz"], "Error: Invalid command given in --property argument.\n\n"),
            (&["publish", "user-property", "a"], "Error: --property argument given but not enough arguments specified.\n\n"),
            (&["connect", "content-type", "x"], "Error: content-type property not allowed for connect in --property argument.\n\n"),
            (&["publish", "payload-format-indicator", "300"], "Error: Property value (300) out of range for property payload-format-indicator.\n\n"),
            (&["publish", "subscription-identifier", "1"], "Error: subscription-identifier property not supported for publish in --property argument.\n\n"),
            (&["subscribe", "user-property"], "Error: --property argument given but not enough arguments specified.\n\n"),
        ];
        for (a, msg) in cases {
            assert_eq!(parse_property(&args(a)).unwrap_err(), *msg, "{a:?}");
        }
    }

    #[test]
    fn values_parse_like_atol() {
        let p = parse_property(&args(&["publish", "message-expiry-interval", "abc"])).unwrap();
        assert_eq!(p.value, Value::U32(0));
        let p = parse_property(&args(&["PUBLISH", "Content-Type", "text/plain"])).unwrap();
        assert_eq!(
            (p.command, p.value),
            (Command::Publish, Value::Str("text/plain".into()))
        );
        let p = parse_property(&args(&["connect", "user-property", "k", "v"])).unwrap();
        assert_eq!(p.consumed, 4);
        assert_eq!(atoi(b"  -12x"), -12);
        assert_eq!(atoi(b"99999999999999999999999"), -1);
        assert_eq!(atol(b"+7"), 7);
    }

    #[test]
    fn check_all_like_mosquitto() {
        let mut l = PropList::default();
        l.push(id::TOPIC_ALIAS, Value::U16(0));
        assert_eq!(l.check_all(Command::Publish), Err(CheckError::Protocol));
        let mut l = PropList::default();
        l.push(id::CONTENT_TYPE, Value::Str("a".into()));
        l.push(id::CONTENT_TYPE, Value::Str("b".into()));
        assert_eq!(l.check_all(Command::Publish), Err(CheckError::Duplicate));
        let mut l = PropList::default();
        l.push(id::USER_PROPERTY, Value::Pair("a".into(), "b".into()));
        l.push(id::USER_PROPERTY, Value::Pair("a".into(), "b".into()));
        l.push(id::RECEIVE_MAXIMUM, Value::U16(5));
        assert_eq!(l.check_all(Command::Connect), Ok(()));
        assert_eq!(
            l.encode(),
            [0x26, 0, 1, b'a', 0, 1, b'b', 0x26, 0, 1, b'a', 0, 1, b'b', 0x21, 0, 5]
        );
    }
}
