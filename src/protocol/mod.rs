//! protocol: the MQTT wire format for 3.1, 3.1.1 and 5.0.
//!
//! Owns: the `Packet<'a>` type, which borrows the read buffer it was decoded
//! from (nothing is copied), the decoder (`decode`), the encoder (`encode`),
//! v5 properties (`properties`) and reason codes (`reason`); and the other
//! wire formats midge speaks: WebSocket framing and its HTTP upgrade
//! (`websocket`) and base64 (`base64`).
//!
//! Must not: know about sessions, sockets, clocks or configuration. It depends
//! on nothing else in the crate. Every malformed input is a `DecodeError`,
//! never a panic.

pub mod base64;
pub mod decode;
pub mod encode;
pub mod error;
pub(crate) mod field;
pub mod properties;
pub mod reason;
#[cfg(test)]
mod tests;
pub mod websocket;

pub use decode::{
    decode, fixed_header, peek_connect_bridge, peek_connect_version, DecodeError, Decoded,
};
pub use properties::{Properties, Property, PropertyContext, PropertyWriter};
pub use reason::ReasonCode;

/// The protocol level byte of CONNECT.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V31 = 3,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V311 = 4,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5 = 5,
}

impl ProtocolVersion {
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
    /// Mosquitto's log notation: p2 (3.1), p4 (3.1.1), p5.
    pub fn level(self) -> u8 {
        self as u8
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Fixed-header packet type numbers.
pub mod packet_type {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (v5 only; empty otherwise).
    pub properties: Properties<'a>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    pub version: ProtocolVersion,
    /// "Clean session" in 3.1.x, "clean start" in 5.0.
    pub clean_start: bool,
    pub keep_alive: u16,
    pub properties: Properties<'a>,
    pub client_id: &'a str,
    pub will: Option<Will<'a>>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Connack<'a> {
    pub session_present: bool,
    /// 3.1.x return code (0..=5) or 5.0 reason code.
    pub code: u8,
    pub properties: Properties<'a>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty only in v5 with a Topic Alias property.
    pub topic: &'a str,
    /// 0 for QoS 0 (no packet id on the wire).
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub payload: &'a [u8],
}

/// Application bytes in `Debug` output: their length only. Payloads and
/// passwords are the users' data and secrets; a debug log or a failed
/// assertion must not print them.
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl std::fmt::Debug for Will<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Will")
            .field("topic", &self.topic)
            .field("payload", &Redacted(self.payload.len()))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("properties", &self.properties)
            .finish()
    }
}

impl std::fmt::Debug for Connect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("version", &self.version)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("properties", &self.properties)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.map(|p| Redacted(p.len())))
            .finish()
    }
}

impl std::fmt::Debug for Publish<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("packet_id", &self.packet_id)
            .field("properties", &self.properties)
            .field("payload", &Redacted(self.payload.len()))
            .finish()
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ack<'a> {
    pub packet_id: u16,
    /// 0 (success) in 3.1.x.
    pub reason: u8,
    pub properties: Properties<'a>,
}

/// Subscription options byte of SUBSCRIBE (the requested QoS in 3.1.x).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained at subscribe, 1: only if the subscription is new, 2: never.
    pub retain_handling: u8,
}

impl SubscriptionOptions {
    pub fn from_byte(b: u8) -> SubscriptionOptions {
        SubscriptionOptions {
            qos: QoS::from_u8(b & 3).unwrap_or(QoS::AtMostOnce),
            no_local: b & 0x04 != 0,
            retain_as_published: b & 0x08 != 0,
            retain_handling: (b >> 4) & 3,
        }
    }
    pub fn to_byte(self) -> u8 {
        (self.qos as u8)
            | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | (self.retain_handling << 4)
    }
}

/// The topic filters of a SUBSCRIBE, validated at decode and read lazily.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SubscribeFilters<'a> {
    /// Raw payload: (u16 length, filter, options byte)*. Already validated.
    pub(crate) raw: &'a [u8],
}

impl<'a> SubscribeFilters<'a> {
    /// Wrap an already-validated payload. Used by the decoder and by tests
    /// that build packets; `iter` stops quietly on anything malformed.
    pub fn from_raw(raw: &'a [u8]) -> Self {
        SubscribeFilters { raw }
    }
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, SubscriptionOptions)> + 'a {
        let mut rest = self.raw;
        std::iter::from_fn(move || {
            let (s, after) = split_str(rest)?;
            let (&opts, after) = after.split_first()?;
            rest = after;
            Some((s, SubscriptionOptions::from_byte(opts)))
        })
    }
    pub fn len(&self) -> usize {
        self.iter().count()
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// The topic filters of an UNSUBSCRIBE, validated at decode and read lazily.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UnsubscribeFilters<'a> {
    pub(crate) raw: &'a [u8],
}

impl<'a> UnsubscribeFilters<'a> {
    pub fn from_raw(raw: &'a [u8]) -> Self {
        UnsubscribeFilters { raw }
    }
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut rest = self.raw;
        std::iter::from_fn(move || {
            let (s, after) = split_str(rest)?;
            rest = after;
            Some(s)
        })
    }
    pub fn len(&self) -> usize {
        self.iter().count()
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Split a length-prefixed UTF-8 string off the front of `b`. Returns None
/// when it does not fit or is not UTF-8 (only reached on unvalidated input).
fn split_str(b: &[u8]) -> Option<(&str, &[u8])> {
    if b.len() < 2 {
        return None;
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let body = b.get(2..2 + n)?;
    let s = std::str::from_utf8(body).ok()?;
    Some((s, &b[2 + n..]))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Subscribe<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub filters: SubscribeFilters<'a>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Suback<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    /// One granted QoS / reason code per filter.
    pub codes: &'a [u8],
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Unsubscribe<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub filters: UnsubscribeFilters<'a>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Unsuback<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    /// v5 reason codes, one per filter; empty in 3.1.x.
    pub codes: &'a [u8],
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Disconnect<'a> {
    /// 0 (normal) in 3.1.x.
    pub reason: u8,
    pub properties: Properties<'a>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Auth<'a> {
    pub reason: u8,
    pub properties: Properties<'a>,
}

/// One decoded MQTT control packet, borrowing the buffer it came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    Connack(Connack<'a>),
    Publish(Publish<'a>),
    Puback(Ack<'a>),
    Pubrec(Ack<'a>),
    Pubrel(Ack<'a>),
    Pubcomp(Ack<'a>),
    Subscribe(Subscribe<'a>),
    Suback(Suback<'a>),
    Unsubscribe(Unsubscribe<'a>),
    Unsuback(Unsuback<'a>),
    Pingreq,
    Pingresp,
    Disconnect(Disconnect<'a>),
    Auth(Auth<'a>),
}

impl Packet<'_> {
    /// Name as used in Mosquitto's debug log ("Received PUBLISH ...").
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::Connack(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::Puback(_) => "PUBACK",
            Packet::Pubrec(_) => "PUBREC",
            Packet::Pubrel(_) => "PUBREL",
            Packet::Pubcomp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::Suback(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::Unsuback(_) => "UNSUBACK",
            Packet::Pingreq => "PINGREQ",
            Packet::Pingresp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}
