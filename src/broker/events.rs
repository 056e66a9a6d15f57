//! broker/events: what the core tells the outside world happened.
//!
//! Owns: `Event`, one variant per thing Mosquitto writes a log line about
//! (a client connected, was refused, went away; a message was dropped; a
//! subscription was made or denied ...), borrowing its strings from the
//! broker so emitting one allocates nothing; and `EventSink`, the callback
//! the broker hands each event to as it happens.
//!
//! Must not: format log lines or call `log::`. The sink's owner (`cli`)
//! turns events into Mosquitto's log lines and `$SYS/broker/log/#`; tests
//! collect them under the fake clock.

use crate::protocol::{DecodeError, ProtocolVersion, QoS};

/// Why a connected client went away, for its log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// It sent DISCONNECT.
    Disconnected,
    /// Its socket closed or failed.
    ClosedConnection,
    /// A protocol violation.
    ProtocolError,
}

/// A PUBLISH as a log line describes it.
#[derive(Clone, Copy, Debug)]
pub struct PublishInfo<'a> {
    pub client_id: &'a str,
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub packet_id: u16,
    pub topic: &'a str,
    pub payload_len: usize,
}

/// Something the broker did that an operator may want to read about.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    Connected {
        peer: &'a str,
        client_id: &'a str,
        version: ProtocolVersion,
        clean_start: bool,
        keepalive: u16,
        username: Option<&'a str>,
    },
    /// A connection ended (only when `connection_messages` is on).
    Disconnected {
        client_id: &'a str,
        why: Gone,
    },
    /// CONNECT refused: the credentials or ACL said no.
    RefusedNotAuthorised,
    /// CONNECT refused: `use_identity_as_username` and no certificate name.
    RefusedNoCertificateName,
    /// CONNECT refused: the will is larger than `message_size_limit`.
    RefusedWillTooLarge {
        client_id: &'a str,
    },
    /// CONNECT with a protocol version midge does not speak.
    UnsupportedProtocol {
        client_id: &'a str,
        level: u8,
        peer: &'a str,
    },
    /// The first packet was not CONNECT.
    NotConnectFirst {
        peer: &'a str,
    },
    /// A packet could not be decoded; the connection is closed.
    Malformed {
        client_id: &'a str,
        error: DecodeError,
    },
    /// The CONNACK would exceed the client's Maximum Packet Size.
    ConnackTooLarge {
        client_id: &'a str,
    },
    /// A new connection took over this client id.
    TakenOver {
        client_id: &'a str,
    },
    /// No packet within 1.5 × keep-alive.
    KeepaliveTimeout {
        client_id: &'a str,
    },
    /// An offline session reached its expiry.
    SessionExpired {
        client_id: &'a str,
    },
    /// A will the ACL does not allow was not published.
    WillDenied {
        client_id: &'a str,
        topic: &'a str,
    },
    /// A PUBLISH to the dynamic-security control topic without the right.
    ControlDenied {
        client_id: &'a str,
    },
    PublishTooLarge(PublishInfo<'a>),
    PublishDenied(PublishInfo<'a>),
    /// A QoS 2 packet id was reused with new content.
    ReusedPacketId {
        client_id: &'a str,
        packet_id: u16,
    },
    /// `memory_limit` reached: a 3.1.x publisher is disconnected.
    OutOfMemory,
    /// A session's queue is full: its messages are now being dropped.
    DroppingOutgoing {
        client_id: &'a str,
    },
    InvalidSubscription {
        client_id: &'a str,
    },
    SubscribeDenied {
        client_id: &'a str,
        filter: &'a str,
    },
    Subscribed {
        client_id: &'a str,
        qos: QoS,
        filter: &'a str,
    },
    InvalidUnsubscription {
        client_id: &'a str,
    },
    UnsubscribeDenied {
        client_id: &'a str,
        filter: &'a str,
    },
    Unsubscribed {
        client_id: &'a str,
        filter: &'a str,
    },
}

/// Where events go. The default drops them.
pub type EventSink = Box<dyn FnMut(&Event<'_>)>;

pub(crate) fn discard() -> EventSink {
    Box::new(|_| {})
}
