//! properties: MQTT 5.0 properties, read in place and written without a
//! length prefix.
//!
//! Owns: the property identifiers and their value types, the per-packet
//! allowlists (`PropertyContext`), validation of a received property block
//! (`Properties::validate`), lazy typed access to a validated block (getters,
//! `iter`) and the writer used to build property blocks (`PropertyWriter`).
//!
//! Must not: allocate while reading (a received block is only ever a borrowed
//! slice of the read buffer), panic on any byte sequence (the iterator just
//! stops on bytes it cannot parse), or decide broker policy (e.g. whether a
//! Topic Alias is within the negotiated maximum; that needs session state).

use super::error::DecodeError;
use super::field::{
    read_binary, read_str, read_u16, read_u32, read_u8, read_varint, varint_size, write_binary,
    write_varint,
};

/// Property identifiers (MQTT 5.0 section 2.2.2.2).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Which packet (or part of one) a property block belongs to; selects the
/// allowlist used by `Properties::validate`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PropertyContext {
    Connect,
    /// The will properties inside CONNECT's payload.
    Will,
    Connack,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    Subscribe,
    Suback,
    Unsubscribe,
    Unsuback,
    Disconnect,
    Auth,
}

/// A bit per property id (all ids are below 64).
const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1u64 << ids[i];
        i += 1;
    }
    m
}

impl PropertyContext {
    /// The properties the MQTT 5.0 property table (section 2.2.2.2) allows here.
    fn allowed(self) -> u64 {
        use id::*;
        match self {
            PropertyContext::Connect => mask(&[
                SESSION_EXPIRY_INTERVAL,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REQUEST_PROBLEM_INFORMATION,
                REQUEST_RESPONSE_INFORMATION,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
            ]),
            PropertyContext::Will => mask(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                WILL_DELAY_INTERVAL,
                USER_PROPERTY,
            ]),
            PropertyContext::Connack => mask(&[
                SESSION_EXPIRY_INTERVAL,
                ASSIGNED_CLIENT_IDENTIFIER,
                SERVER_KEEP_ALIVE,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                RESPONSE_INFORMATION,
                SERVER_REFERENCE,
                REASON_STRING,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                MAXIMUM_QOS,
                RETAIN_AVAILABLE,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE,
            ]),
            PropertyContext::Publish => mask(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                SUBSCRIPTION_IDENTIFIER,
                TOPIC_ALIAS,
                USER_PROPERTY,
            ]),
            PropertyContext::Ack | PropertyContext::Suback | PropertyContext::Unsuback => {
                mask(&[REASON_STRING, USER_PROPERTY])
            }
            PropertyContext::Subscribe => mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
            PropertyContext::Unsubscribe => mask(&[USER_PROPERTY]),
            PropertyContext::Disconnect => mask(&[
                SESSION_EXPIRY_INTERVAL,
                SERVER_REFERENCE,
                REASON_STRING,
                USER_PROPERTY,
            ]),
            PropertyContext::Auth => mask(&[
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REASON_STRING,
                USER_PROPERTY,
            ]),
        }
    }
}

/// One property with its value borrowed from the block it was read from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Property<'a> {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(&'a str),
    ResponseTopic(&'a str),
    CorrelationData(&'a [u8]),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(&'a str),
    ServerKeepAlive(u16),
    AuthenticationMethod(&'a str),
    AuthenticationData(&'a [u8]),
    RequestProblemInformation(u8),
    WillDelayInterval(u32),
    RequestResponseInformation(u8),
    ResponseInformation(&'a str),
    ServerReference(&'a str),
    ReasonString(&'a str),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQoS(u8),
    RetainAvailable(u8),
    UserProperty(&'a str, &'a str),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(u8),
    SubscriptionIdentifierAvailable(u8),
    SharedSubscriptionAvailable(u8),
}

impl Property<'_> {
    /// The property identifier byte.
    pub fn id(&self) -> u8 {
        use id::*;
        match self {
            Property::PayloadFormatIndicator(_) => PAYLOAD_FORMAT_INDICATOR,
            Property::MessageExpiryInterval(_) => MESSAGE_EXPIRY_INTERVAL,
            Property::ContentType(_) => CONTENT_TYPE,
            Property::ResponseTopic(_) => RESPONSE_TOPIC,
            Property::CorrelationData(_) => CORRELATION_DATA,
            Property::SubscriptionIdentifier(_) => SUBSCRIPTION_IDENTIFIER,
            Property::SessionExpiryInterval(_) => SESSION_EXPIRY_INTERVAL,
            Property::AssignedClientIdentifier(_) => ASSIGNED_CLIENT_IDENTIFIER,
            Property::ServerKeepAlive(_) => SERVER_KEEP_ALIVE,
            Property::AuthenticationMethod(_) => AUTHENTICATION_METHOD,
            Property::AuthenticationData(_) => AUTHENTICATION_DATA,
            Property::RequestProblemInformation(_) => REQUEST_PROBLEM_INFORMATION,
            Property::WillDelayInterval(_) => WILL_DELAY_INTERVAL,
            Property::RequestResponseInformation(_) => REQUEST_RESPONSE_INFORMATION,
            Property::ResponseInformation(_) => RESPONSE_INFORMATION,
            Property::ServerReference(_) => SERVER_REFERENCE,
            Property::ReasonString(_) => REASON_STRING,
            Property::ReceiveMaximum(_) => RECEIVE_MAXIMUM,
            Property::TopicAliasMaximum(_) => TOPIC_ALIAS_MAXIMUM,
            Property::TopicAlias(_) => TOPIC_ALIAS,
            Property::MaximumQoS(_) => MAXIMUM_QOS,
            Property::RetainAvailable(_) => RETAIN_AVAILABLE,
            Property::UserProperty(_, _) => USER_PROPERTY,
            Property::MaximumPacketSize(_) => MAXIMUM_PACKET_SIZE,
            Property::WildcardSubscriptionAvailable(_) => WILDCARD_SUBSCRIPTION_AVAILABLE,
            Property::SubscriptionIdentifierAvailable(_) => SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            Property::SharedSubscriptionAvailable(_) => SHARED_SUBSCRIPTION_AVAILABLE,
        }
    }

    /// Append identifier and value. Strings and binary data longer than
    /// 65535 bytes are cut to 65535 so the framing stays consistent; callers
    /// are expected to respect the limit. A Subscription Identifier above
    /// 268435455 cannot be represented and must not be passed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.id());
        match *self {
            Property::PayloadFormatIndicator(v)
            | Property::RequestProblemInformation(v)
            | Property::RequestResponseInformation(v)
            | Property::MaximumQoS(v)
            | Property::RetainAvailable(v)
            | Property::WildcardSubscriptionAvailable(v)
            | Property::SubscriptionIdentifierAvailable(v)
            | Property::SharedSubscriptionAvailable(v) => out.push(v),
            Property::ServerKeepAlive(v)
            | Property::ReceiveMaximum(v)
            | Property::TopicAliasMaximum(v)
            | Property::TopicAlias(v) => out.extend_from_slice(&v.to_be_bytes()),
            Property::MessageExpiryInterval(v)
            | Property::SessionExpiryInterval(v)
            | Property::WillDelayInterval(v)
            | Property::MaximumPacketSize(v) => out.extend_from_slice(&v.to_be_bytes()),
            Property::SubscriptionIdentifier(v) => write_varint(out, v),
            Property::ContentType(s)
            | Property::ResponseTopic(s)
            | Property::AssignedClientIdentifier(s)
            | Property::AuthenticationMethod(s)
            | Property::ResponseInformation(s)
            | Property::ServerReference(s)
            | Property::ReasonString(s) => write_binary(out, s.as_bytes()),
            Property::CorrelationData(b) | Property::AuthenticationData(b) => write_binary(out, b),
            Property::UserProperty(k, v) => {
                write_binary(out, k.as_bytes());
                write_binary(out, v.as_bytes());
            }
        }
    }

    /// Bytes `encode` appends.
    pub fn encoded_len(&self) -> usize {
        let bin = |n: usize| 2 + n.min(usize::from(u16::MAX));
        1 + match *self {
            Property::PayloadFormatIndicator(_)
            | Property::RequestProblemInformation(_)
            | Property::RequestResponseInformation(_)
            | Property::MaximumQoS(_)
            | Property::RetainAvailable(_)
            | Property::WildcardSubscriptionAvailable(_)
            | Property::SubscriptionIdentifierAvailable(_)
            | Property::SharedSubscriptionAvailable(_) => 1,
            Property::ServerKeepAlive(_)
            | Property::ReceiveMaximum(_)
            | Property::TopicAliasMaximum(_)
            | Property::TopicAlias(_) => 2,
            Property::MessageExpiryInterval(_)
            | Property::SessionExpiryInterval(_)
            | Property::WillDelayInterval(_)
            | Property::MaximumPacketSize(_) => 4,
            Property::SubscriptionIdentifier(v) => varint_size(v),
            Property::ContentType(s)
            | Property::ResponseTopic(s)
            | Property::AssignedClientIdentifier(s)
            | Property::AuthenticationMethod(s)
            | Property::ResponseInformation(s)
            | Property::ServerReference(s)
            | Property::ReasonString(s) => bin(s.len()),
            Property::CorrelationData(b) | Property::AuthenticationData(b) => bin(b.len()),
            Property::UserProperty(k, v) => bin(k.len()) + bin(v.len()),
        }
    }
}

/// Read one property off the front of `b`. Structural errors only: unknown
/// identifier, value running past the end, strings that are not valid MQTT
/// UTF-8. Value ranges and per-packet rules are `validate`'s job.
fn read_property<'a>(b: &mut &'a [u8]) -> Result<Property<'a>, DecodeError> {
    use id::*;
    let ident = read_u8(b)?;
    Ok(match ident {
        PAYLOAD_FORMAT_INDICATOR => Property::PayloadFormatIndicator(read_u8(b)?),
        MESSAGE_EXPIRY_INTERVAL => Property::MessageExpiryInterval(read_u32(b)?),
        CONTENT_TYPE => Property::ContentType(read_str(b)?),
        RESPONSE_TOPIC => Property::ResponseTopic(read_str(b)?),
        CORRELATION_DATA => Property::CorrelationData(read_binary(b)?),
        SUBSCRIPTION_IDENTIFIER => Property::SubscriptionIdentifier(read_varint(b)?),
        SESSION_EXPIRY_INTERVAL => Property::SessionExpiryInterval(read_u32(b)?),
        ASSIGNED_CLIENT_IDENTIFIER => Property::AssignedClientIdentifier(read_str(b)?),
        SERVER_KEEP_ALIVE => Property::ServerKeepAlive(read_u16(b)?),
        AUTHENTICATION_METHOD => Property::AuthenticationMethod(read_str(b)?),
        AUTHENTICATION_DATA => Property::AuthenticationData(read_binary(b)?),
        REQUEST_PROBLEM_INFORMATION => Property::RequestProblemInformation(read_u8(b)?),
        WILL_DELAY_INTERVAL => Property::WillDelayInterval(read_u32(b)?),
        REQUEST_RESPONSE_INFORMATION => Property::RequestResponseInformation(read_u8(b)?),
        RESPONSE_INFORMATION => Property::ResponseInformation(read_str(b)?),
        SERVER_REFERENCE => Property::ServerReference(read_str(b)?),
        REASON_STRING => Property::ReasonString(read_str(b)?),
        RECEIVE_MAXIMUM => Property::ReceiveMaximum(read_u16(b)?),
        TOPIC_ALIAS_MAXIMUM => Property::TopicAliasMaximum(read_u16(b)?),
        TOPIC_ALIAS => Property::TopicAlias(read_u16(b)?),
        MAXIMUM_QOS => Property::MaximumQoS(read_u8(b)?),
        RETAIN_AVAILABLE => Property::RetainAvailable(read_u8(b)?),
        USER_PROPERTY => {
            let k = read_str(b)?;
            Property::UserProperty(k, read_str(b)?)
        }
        MAXIMUM_PACKET_SIZE => Property::MaximumPacketSize(read_u32(b)?),
        WILDCARD_SUBSCRIPTION_AVAILABLE => Property::WildcardSubscriptionAvailable(read_u8(b)?),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => Property::SubscriptionIdentifierAvailable(read_u8(b)?),
        SHARED_SUBSCRIPTION_AVAILABLE => Property::SharedSubscriptionAvailable(read_u8(b)?),
        // Identifiers are variable byte integers, but every defined one fits
        // in a single byte, so anything else (including 0x80..) is unknown.
        _ => return Err(DecodeError::InvalidPropertyId),
    })
}

/// Value rules that the property table states as "It is a Protocol Error ...".
fn check_value(p: &Property<'_>) -> Result<(), DecodeError> {
    let ok = match *p {
        // Mosquitto 2.0.11 passes any Payload Format Indicator and any Response Topic on
        // (it checks neither), and midge is wire-identical to it there.
        Property::RequestProblemInformation(v)
        | Property::RequestResponseInformation(v)
        | Property::MaximumQoS(v)
        | Property::RetainAvailable(v)
        | Property::WildcardSubscriptionAvailable(v)
        | Property::SubscriptionIdentifierAvailable(v)
        | Property::SharedSubscriptionAvailable(v) => v <= 1,
        Property::ReceiveMaximum(v) => v != 0,
        Property::MaximumPacketSize(v) => v != 0,
        Property::SubscriptionIdentifier(v) => v != 0,
        // [MQTT-3.3.2-8]: a Topic Alias of 0 is not permitted.
        Property::TopicAlias(0) => return Err(DecodeError::TopicAliasZero),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidPropertyValue)
    }
}

/// A validated block of v5 properties: the bytes after the property-length
/// varint, borrowed from the packet. Getters return the first occurrence.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Properties<'a> {
    raw: &'a [u8],
}

impl Properties<'static> {
    /// No properties (also what 3.1.x packets carry).
    pub const EMPTY: Properties<'static> = Properties { raw: &[] };
}

macro_rules! getter {
    ($(#[$m:meta])* $name:ident, $variant:ident, $t:ty) => {
        $(#[$m])*
        pub fn $name(&self) -> Option<$t> {
            self.iter().find_map(|p| match p {
                Property::$variant(v) => Some(v),
                _ => None,
            })
        }
    };
}

impl<'a> Properties<'a> {
    /// Wrap bytes without validating them (e.g. properties this process
    /// encoded itself). Iteration over bad bytes stops early, never panics.
    pub fn from_raw_unchecked(raw: &'a [u8]) -> Self {
        Properties { raw }
    }

    /// The encoded properties, without the length prefix.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn iter(&self) -> PropertyIter<'a> {
        PropertyIter { rest: self.raw }
    }

    /// Check a received block against the rules for `ctx`: every identifier
    /// known and allowed there, no duplicates (except User Property and, in
    /// PUBLISH, Subscription Identifier), values in range.
    pub fn validate(raw: &'a [u8], ctx: PropertyContext) -> Result<Properties<'a>, DecodeError> {
        let allowed = ctx.allowed();
        let mut seen = 0u64;
        let mut rest = raw;
        while !rest.is_empty() {
            let p = read_property(&mut rest)?;
            let ident = p.id();
            // Every id produced by read_property is below 64.
            let bit = 1u64 << ident;
            if allowed & bit == 0 {
                return Err(DecodeError::PropertyNotAllowed);
            }
            let repeatable = ident == id::USER_PROPERTY
                || (ident == id::SUBSCRIPTION_IDENTIFIER && ctx == PropertyContext::Publish);
            if !repeatable {
                if seen & bit != 0 {
                    return Err(DecodeError::DuplicateProperty);
                }
                seen |= bit;
            }
            check_value(&p)?;
        }
        Ok(Properties { raw })
    }

    getter!(session_expiry_interval, SessionExpiryInterval, u32);
    getter!(receive_maximum, ReceiveMaximum, u16);
    getter!(maximum_packet_size, MaximumPacketSize, u32);
    getter!(topic_alias_maximum, TopicAliasMaximum, u16);
    getter!(topic_alias, TopicAlias, u16);
    getter!(message_expiry_interval, MessageExpiryInterval, u32);
    getter!(will_delay_interval, WillDelayInterval, u32);
    getter!(payload_format_indicator, PayloadFormatIndicator, u8);
    getter!(request_problem_information, RequestProblemInformation, u8);
    getter!(request_response_information, RequestResponseInformation, u8);
    getter!(authentication_method, AuthenticationMethod, &'a str);
    getter!(authentication_data, AuthenticationData, &'a [u8]);
    getter!(content_type, ContentType, &'a str);
    getter!(response_topic, ResponseTopic, &'a str);
    getter!(correlation_data, CorrelationData, &'a [u8]);
    getter!(reason_string, ReasonString, &'a str);
    getter!(
        assigned_client_identifier,
        AssignedClientIdentifier,
        &'a str
    );
    getter!(server_keep_alive, ServerKeepAlive, u16);
    getter!(maximum_qos, MaximumQoS, u8);
    getter!(retain_available, RetainAvailable, u8);
    getter!(response_information, ResponseInformation, &'a str);
    getter!(server_reference, ServerReference, &'a str);
    getter!(
        wildcard_subscription_available,
        WildcardSubscriptionAvailable,
        u8
    );
    getter!(
        subscription_identifier_available,
        SubscriptionIdentifierAvailable,
        u8
    );
    getter!(
        shared_subscription_available,
        SharedSubscriptionAvailable,
        u8
    );

    /// Every Subscription Identifier, in order (PUBLISH may carry several).
    pub fn subscription_identifiers(&self) -> impl Iterator<Item = u32> + 'a {
        self.iter().filter_map(|p| match p {
            Property::SubscriptionIdentifier(v) => Some(v),
            _ => None,
        })
    }

    /// Every User Property (name, value), in order; order is significant
    /// and must be kept when forwarding [MQTT-3.3.2-18].
    pub fn user_properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.iter().filter_map(|p| match p {
            Property::UserProperty(k, v) => Some((k, v)),
            _ => None,
        })
    }
}

impl<'a> IntoIterator for Properties<'a> {
    type Item = Property<'a>;
    type IntoIter = PropertyIter<'a>;
    fn into_iter(self) -> PropertyIter<'a> {
        self.iter()
    }
}

/// Iterator over a property block; ends at the first byte it cannot parse.
#[derive(Clone, Debug)]
pub struct PropertyIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = Property<'a>;
    fn next(&mut self) -> Option<Property<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        match read_property(&mut self.rest) {
            Ok(p) => Some(p),
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

/// Accumulates encoded properties (without the length prefix), e.g. for a
/// CONNACK or the extra properties of a forwarded PUBLISH.
#[derive(Default, Clone, Debug)]
pub struct PropertyWriter {
    buf: Vec<u8>,
}

impl PropertyWriter {
    pub fn new() -> Self {
        PropertyWriter { buf: Vec::new() }
    }

    pub fn push(&mut self, p: Property<'_>) -> &mut Self {
        p.encode(&mut self.buf);
        self
    }

    /// Append properties already encoded by another writer.
    pub fn extend_raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(encoded);
        self
    }

    /// View the written bytes as a property block (not re-validated).
    pub fn as_properties(&self) -> Properties<'_> {
        Properties::from_raw_unchecked(&self.buf)
    }

    /// The encoded bytes, without the length prefix.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(props: &[Property<'_>]) -> Vec<u8> {
        let mut w = PropertyWriter::new();
        for p in props {
            w.push(*p);
        }
        w.as_bytes().to_vec()
    }

    fn all_properties() -> Vec<Property<'static>> {
        vec![
            Property::PayloadFormatIndicator(1),
            Property::MessageExpiryInterval(0xDEAD_BEEF),
            Property::ContentType("text/plain"),
            Property::ResponseTopic("reply/here"),
            Property::CorrelationData(b"\x00\x01\xff"),
            Property::SubscriptionIdentifier(268_435_455),
            Property::SessionExpiryInterval(u32::MAX),
            Property::AssignedClientIdentifier("auto-1"),
            Property::ServerKeepAlive(30),
            Property::AuthenticationMethod("SCRAM"),
            Property::AuthenticationData(b"data"),
            Property::RequestProblemInformation(0),
            Property::WillDelayInterval(5),
            Property::RequestResponseInformation(1),
            Property::ResponseInformation("resp/"),
            Property::ServerReference("other:1883"),
            Property::ReasonString("because"),
            Property::ReceiveMaximum(10),
            Property::TopicAliasMaximum(0),
            Property::TopicAlias(7),
            Property::MaximumQoS(1),
            Property::RetainAvailable(0),
            Property::UserProperty("k", "v"),
            Property::MaximumPacketSize(1024),
            Property::WildcardSubscriptionAvailable(1),
            Property::SubscriptionIdentifierAvailable(0),
            Property::SharedSubscriptionAvailable(1),
        ]
    }

    #[test]
    fn every_property_encodes_and_iterates_back() {
        let props = all_properties();
        for p in &props {
            let mut out = Vec::new();
            p.encode(&mut out);
            assert_eq!(out.len(), p.encoded_len(), "{p:?}");
            assert_eq!(out[0], p.id());
            let back: Vec<_> = Properties::from_raw_unchecked(&out).iter().collect();
            assert_eq!(back, vec![*p]);
        }
        let raw = block(&props);
        let back: Vec<_> = Properties::from_raw_unchecked(&raw).iter().collect();
        assert_eq!(back, props);
    }

    #[test]
    fn getters_return_first_occurrence() {
        let raw = block(&[
            Property::UserProperty("a", "1"),
            Property::SubscriptionIdentifier(3),
            Property::TopicAlias(9),
            Property::UserProperty("b", "2"),
            Property::SubscriptionIdentifier(4),
            Property::MessageExpiryInterval(60),
            Property::ContentType("ct"),
        ]);
        let p = Properties::validate(&raw, PropertyContext::Publish).unwrap();
        assert_eq!(p.topic_alias(), Some(9));
        assert_eq!(p.message_expiry_interval(), Some(60));
        assert_eq!(p.content_type(), Some("ct"));
        assert_eq!(p.response_topic(), None);
        assert_eq!(p.subscription_identifiers().collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(
            p.user_properties().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "2")]
        );
        assert!(Properties::EMPTY.is_empty());
        assert_eq!(Properties::EMPTY.topic_alias(), None);
    }

    #[test]
    fn connack_getters() {
        let raw = block(&[
            Property::ReceiveMaximum(20),
            Property::MaximumQoS(1),
            Property::RetainAvailable(0),
            Property::MaximumPacketSize(4096),
            Property::AssignedClientIdentifier("auto"),
            Property::TopicAliasMaximum(10),
            Property::ServerKeepAlive(60),
            Property::WildcardSubscriptionAvailable(0),
            Property::SubscriptionIdentifierAvailable(1),
            Property::SharedSubscriptionAvailable(0),
            Property::SessionExpiryInterval(100),
            Property::ReasonString("ok"),
            Property::ResponseInformation("ri"),
            Property::ServerReference("sr"),
            Property::AuthenticationMethod("m"),
            Property::AuthenticationData(b"d"),
        ]);
        let p = Properties::validate(&raw, PropertyContext::Connack).unwrap();
        assert_eq!(p.receive_maximum(), Some(20));
        assert_eq!(p.maximum_qos(), Some(1));
        assert_eq!(p.retain_available(), Some(0));
        assert_eq!(p.maximum_packet_size(), Some(4096));
        assert_eq!(p.assigned_client_identifier(), Some("auto"));
        assert_eq!(p.topic_alias_maximum(), Some(10));
        assert_eq!(p.server_keep_alive(), Some(60));
        assert_eq!(p.wildcard_subscription_available(), Some(0));
        assert_eq!(p.subscription_identifier_available(), Some(1));
        assert_eq!(p.shared_subscription_available(), Some(0));
        assert_eq!(p.session_expiry_interval(), Some(100));
        assert_eq!(p.reason_string(), Some("ok"));
        assert_eq!(p.response_information(), Some("ri"));
        assert_eq!(p.server_reference(), Some("sr"));
        assert_eq!(p.authentication_method(), Some("m"));
        assert_eq!(p.authentication_data(), Some(&b"d"[..]));
    }

    #[test]
    fn duplicates_rejected_except_repeatable() {
        let dup = block(&[Property::ContentType("a"), Property::ContentType("b")]);
        assert_eq!(
            Properties::validate(&dup, PropertyContext::Publish),
            Err(DecodeError::DuplicateProperty)
        );
        let users = block(&[
            Property::UserProperty("a", "1"),
            Property::UserProperty("a", "1"),
        ]);
        for ctx in [
            PropertyContext::Connect,
            PropertyContext::Will,
            PropertyContext::Connack,
            PropertyContext::Publish,
            PropertyContext::Ack,
            PropertyContext::Subscribe,
            PropertyContext::Suback,
            PropertyContext::Unsubscribe,
            PropertyContext::Unsuback,
            PropertyContext::Disconnect,
            PropertyContext::Auth,
        ] {
            assert!(Properties::validate(&users, ctx).is_ok(), "{ctx:?}");
        }
        let subids = block(&[
            Property::SubscriptionIdentifier(1),
            Property::SubscriptionIdentifier(2),
        ]);
        assert!(Properties::validate(&subids, PropertyContext::Publish).is_ok());
        assert_eq!(
            Properties::validate(&subids, PropertyContext::Subscribe),
            Err(DecodeError::DuplicateProperty)
        );
    }

    #[test]
    fn disallowed_and_unknown_rejected() {
        let sei = block(&[Property::SessionExpiryInterval(1)]);
        assert_eq!(
            Properties::validate(&sei, PropertyContext::Publish),
            Err(DecodeError::PropertyNotAllowed)
        );
        assert!(Properties::validate(&sei, PropertyContext::Connect).is_ok());
        assert!(Properties::validate(&sei, PropertyContext::Disconnect).is_ok());
        let ta = block(&[Property::TopicAlias(1)]);
        assert_eq!(
            Properties::validate(&ta, PropertyContext::Will),
            Err(DecodeError::PropertyNotAllowed)
        );
        let wdi = block(&[Property::WillDelayInterval(1)]);
        assert_eq!(
            Properties::validate(&wdi, PropertyContext::Connect),
            Err(DecodeError::PropertyNotAllowed)
        );
        assert!(Properties::validate(&wdi, PropertyContext::Will).is_ok());
        for bad_id in [0x00u8, 0x04, 0x0A, 0x14, 0x2B, 0x7F, 0x80, 0xFF] {
            assert_eq!(
                Properties::validate(&[bad_id, 0, 0, 0, 0], PropertyContext::Publish),
                Err(DecodeError::InvalidPropertyId),
                "id {bad_id:#x}"
            );
        }
        // Every (id, context) pair the allowlist refuses is refused by validate.
        for p in all_properties() {
            let raw = block(&[p]);
            for ctx in [PropertyContext::Ack, PropertyContext::Unsubscribe] {
                let expect_ok = matches!(p, Property::UserProperty(..))
                    || (ctx == PropertyContext::Ack && matches!(p, Property::ReasonString(_)));
                assert_eq!(
                    Properties::validate(&raw, ctx).is_ok(),
                    expect_ok,
                    "{p:?} {ctx:?}"
                );
            }
        }
    }

    #[test]
    fn bad_values_rejected() {
        let cases: &[(Property<'_>, PropertyContext)] = &[
            (Property::ReceiveMaximum(0), PropertyContext::Connect),
            (Property::MaximumPacketSize(0), PropertyContext::Connect),
            (
                Property::RequestProblemInformation(2),
                PropertyContext::Connect,
            ),
            (
                Property::RequestResponseInformation(7),
                PropertyContext::Connect,
            ),
            (
                Property::SubscriptionIdentifier(0),
                PropertyContext::Subscribe,
            ),
            (Property::MaximumQoS(2), PropertyContext::Connack),
            (Property::RetainAvailable(2), PropertyContext::Connack),
            (
                Property::WildcardSubscriptionAvailable(2),
                PropertyContext::Connack,
            ),
            (
                Property::SubscriptionIdentifierAvailable(2),
                PropertyContext::Connack,
            ),
            (
                Property::SharedSubscriptionAvailable(2),
                PropertyContext::Connack,
            ),
        ];
        for (p, ctx) in cases {
            assert_eq!(
                Properties::validate(&block(&[*p]), *ctx),
                Err(DecodeError::InvalidPropertyValue),
                "{p:?}"
            );
        }
        assert_eq!(
            Properties::validate(&block(&[Property::TopicAlias(0)]), PropertyContext::Publish),
            Err(DecodeError::TopicAliasZero)
        );
    }

    #[test]
    fn bad_strings_and_truncation_rejected() {
        // Content type with invalid UTF-8, then with U+0000.
        assert_eq!(
            Properties::validate(&[0x03, 0, 2, b'a', 0xFF], PropertyContext::Publish),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            Properties::validate(&[0x03, 0, 2, b'a', 0], PropertyContext::Publish),
            Err(DecodeError::NullCharacter)
        );
        // User property value truncated.
        assert_eq!(
            Properties::validate(&[0x26, 0, 1, b'k', 0, 5, b'v'], PropertyContext::Publish),
            Err(DecodeError::Truncated)
        );
        // Four-byte integer cut short.
        assert_eq!(
            Properties::validate(&[0x02, 0, 0, 1], PropertyContext::Publish),
            Err(DecodeError::Truncated)
        );
        // Subscription identifier longer than four varint bytes.
        assert_eq!(
            Properties::validate(
                &[0x0B, 0x80, 0x80, 0x80, 0x80, 0x01],
                PropertyContext::Publish
            ),
            Err(DecodeError::VariableByteIntegerTooLong)
        );
    }

    #[test]
    fn iterator_stops_quietly_on_garbage() {
        let raw = [0x23, 0, 5, 0x03, 0, 9, b'x'];
        let got: Vec<_> = Properties::from_raw_unchecked(&raw).iter().collect();
        assert_eq!(got, vec![Property::TopicAlias(5)]);
        let got: Vec<_> = Properties::from_raw_unchecked(&[0xFF, 1, 2])
            .iter()
            .collect();
        assert!(got.is_empty());
    }

    #[test]
    fn writer_basics() {
        let mut w = PropertyWriter::new();
        assert!(w.is_empty());
        w.push(Property::ReceiveMaximum(5))
            .push(Property::UserProperty("x", "y"));
        assert_eq!(w.len(), 3 + 1 + 3 + 3);
        assert_eq!(w.as_properties().receive_maximum(), Some(5));
        assert!(Properties::validate(w.as_bytes(), PropertyContext::Connack).is_ok());
        w.clear();
        assert!(w.is_empty());
        assert!(w.as_properties().is_empty());
    }

    #[test]
    fn long_strings_are_cut_consistently() {
        let long = "x".repeat(70_000);
        let p = Property::ReasonString(&long);
        let mut out = Vec::new();
        p.encode(&mut out);
        assert_eq!(out.len(), p.encoded_len());
        assert_eq!(out.len(), 1 + 2 + 65_535);
        let back = Properties::from_raw_unchecked(&out)
            .reason_string()
            .unwrap();
        assert_eq!(back.len(), 65_535);
    }
}
