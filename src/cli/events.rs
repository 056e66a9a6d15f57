//! cli/events: the broker's events as Mosquitto's log lines.
//!
//! Owns: the text and level of every line the broker core causes
//! (`New client connected from ...`, `Client x disconnected.`, the
//! `subscribe`/`unsubscribe` log types ...), written through `log` so
//! every `log_dest`, including `$SYS/broker/log/#`, gets them.
//!
//! Must not: decide anything; it only words what the broker reports.

use log::Level;

use crate::broker::{Event, Gone, PublishInfo};
use crate::protocol::ProtocolVersion;

/// One log line: its level, `log` target (the `subscribe`/`unsubscribe`
/// log types have their own) and text.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    pub level: Level,
    pub target: &'static str,
    pub text: String,
}

fn line(level: Level, text: String) -> Line {
    Line {
        level,
        target: "midge",
        text,
    }
}

fn publish_text(what: &str, p: &PublishInfo<'_>, dup: bool) -> String {
    let d = if dup {
        format!("d{}, ", u8::from(p.dup))
    } else {
        String::new()
    };
    format!(
        "{} {} ({}q{}, r{}, m{}, '{}', ... ({} bytes))",
        what,
        p.client_id,
        d,
        p.qos as u8,
        u8::from(p.retain),
        p.packet_id,
        p.topic,
        p.payload_len
    )
}

fn connected(
    peer: &str,
    client_id: &str,
    version: ProtocolVersion,
    clean_start: bool,
    keepalive: u16,
    username: Option<&str>,
) -> String {
    let level = match version {
        ProtocolVersion::V31 => 1,
        ProtocolVersion::V311 => 2,
        ProtocolVersion::V5 => 5,
    };
    let user = username.map(|u| format!(", u'{u}'")).unwrap_or_default();
    format!(
        "New client connected from {} as {} (p{}, c{}, k{}{}).",
        peer,
        client_id,
        level,
        u8::from(clean_start),
        keepalive,
        user
    )
}

/// The lines Mosquitto writes for `e` (most events have one; a denied
/// UNSUBSCRIBE has two, as in Mosquitto).
pub fn lines(e: &Event<'_>) -> Vec<Line> {
    use Level::{Debug, Info, Warn};
    let one = |level, text| vec![line(level, text)];
    match *e {
        Event::Connected {
            peer,
            client_id,
            version,
            clean_start,
            keepalive,
            username,
        } => one(
            Info,
            connected(peer, client_id, version, clean_start, keepalive, username),
        ),
        Event::Disconnected { client_id, why } => one(
            Info,
            match why {
                Gone::Disconnected => format!("Client {client_id} disconnected."),
                Gone::ClosedConnection => format!("Client {client_id} closed its connection."),
                Gone::ProtocolError => {
                    format!("Client {client_id} disconnected due to protocol error.")
                }
            },
        ),
        Event::RefusedNotAuthorised => one(
            Info,
            "Client <unknown> disconnected, not authorised.".into(),
        ),
        Event::RefusedNoCertificateName => one(
            Info,
            "Client <unknown> disconnected, no certificate name.".into(),
        ),
        Event::RefusedWillTooLarge { client_id } => one(
            Debug,
            format!("Client {client_id} connected with too large Will payload"),
        ),
        Event::UnsupportedProtocol {
            client_id,
            level,
            peer,
        } => one(
            Info,
            format!("Client {client_id} using unsupported protocol version {level} from {peer}."),
        ),
        Event::NotConnectFirst { peer } => one(
            Info,
            format!(
                "Client <unknown> from {peer} sent a packet other than CONNECT first, disconnecting."
            ),
        ),
        Event::Malformed { client_id, error } => one(
            Info,
            format!("Client {client_id} disconnected due to malformed packet: {error}."),
        ),
        Event::ConnackTooLarge { client_id } => one(
            Info,
            format!(
                "Client {client_id} disconnected: CONNACK larger than its maximum packet size."
            ),
        ),
        Event::TakenOver { client_id } => one(
            Info,
            format!("Client {client_id} already connected, closing old connection."),
        ),
        Event::KeepaliveTimeout { client_id } => one(
            Info,
            format!("Client {client_id} has exceeded timeout, disconnecting."),
        ),
        Event::SessionExpired { client_id } => one(
            Info,
            format!("Expiring client {client_id} due to timeout."),
        ),
        Event::WillDenied { client_id, topic } => one(
            Info,
            format!("Denied will of client {client_id} on topic '{topic}'."),
        ),
        Event::ControlDenied { client_id } => one(
            Info,
            format!("Denied PUBLISH from {client_id} to the dynamic security control topic."),
        ),
        Event::PublishTooLarge(ref p) => one(
            Info,
            format!("{}.", publish_text("Dropped too large PUBLISH from", p, false)),
        ),
        Event::PublishDenied(ref p) => one(Debug, publish_text("Denied PUBLISH from", p, true)),
        Event::ReusedPacketId {
            client_id,
            packet_id,
        } => one(
            Warn,
            format!("Reused message ID {packet_id} from {client_id} detected. Clearing from storage."),
        ),
        Event::OutOfMemory => one(
            Warn,
            "Out of memory (memory_limit): disconnecting a publisher.".into(),
        ),
        Event::DroppingOutgoing { client_id } => one(
            Info,
            format!("Outgoing messages are being dropped for client {client_id}."),
        ),
        Event::InvalidSubscription { client_id } => one(
            Info,
            format!("Invalid subscription string from {client_id}, disconnecting."),
        ),
        Event::SubscribeDenied { client_id, filter } => one(
            Debug,
            format!("Denied SUBSCRIBE from {client_id} to '{filter}'"),
        ),
        Event::Subscribed {
            client_id,
            qos,
            filter,
        } => vec![Line {
            level: Info,
            target: "subscribe",
            text: format!("{client_id} {} {filter}", qos as u8),
        }],
        Event::InvalidUnsubscription { client_id } => one(
            Info,
            format!("Invalid unsubscription string from {client_id}, disconnecting."),
        ),
        Event::UnsubscribeDenied { client_id, filter } => vec![
            line(
                Debug,
                format!("Denied UNSUBSCRIBE from {client_id} to '{filter}'"),
            ),
            unsubscribed(client_id, filter),
        ],
        Event::Unsubscribed { client_id, filter } => vec![unsubscribed(client_id, filter)],
    }
}

fn unsubscribed(client_id: &str, filter: &str) -> Line {
    Line {
        level: Level::Info,
        target: "unsubscribe",
        text: format!("{client_id} {filter}"),
    }
}

/// The broker's event sink in the running broker: each line through `log`.
/// Events that can come once per message are not worded at all when
/// their level or log type is switched off.
pub fn log_event(e: &Event<'_>) {
    let gate = match e {
        Event::Subscribed { .. } => Some((Level::Info, "subscribe")),
        Event::Unsubscribed { .. } => Some((Level::Info, "unsubscribe")),
        Event::PublishDenied(_)
        | Event::SubscribeDenied { .. }
        | Event::RefusedWillTooLarge { .. } => Some((Level::Debug, module_path!())),
        _ => None,
    };
    if let Some((level, target)) = gate {
        if !log::log_enabled!(target: target, level) {
            return;
        }
    }
    for l in lines(e) {
        match l.target {
            "subscribe" => log::log!(target: "subscribe", l.level, "{}", l.text),
            "unsubscribe" => log::log!(target: "unsubscribe", l.level, "{}", l.text),
            _ => log::log!(l.level, "{}", l.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DecodeError, QoS};

    fn texts(e: Event<'_>) -> Vec<String> {
        lines(&e).into_iter().map(|l| l.text).collect()
    }

    /// The wording Mosquitto 2.0 uses, which users' log greps depend on.
    #[test]
    fn lines_read_as_mosquittos() {
        assert_eq!(
            texts(Event::Connected {
                peer: "127.0.0.1:40000",
                client_id: "c1",
                version: ProtocolVersion::V311,
                clean_start: true,
                keepalive: 60,
                username: Some("alice"),
            }),
            ["New client connected from 127.0.0.1:40000 as c1 (p2, c1, k60, u'alice')."]
        );
        assert_eq!(
            texts(Event::Disconnected {
                client_id: "c1",
                why: Gone::ClosedConnection
            }),
            ["Client c1 closed its connection."]
        );
        assert_eq!(
            texts(Event::Malformed {
                client_id: "<unknown>",
                error: DecodeError::InvalidQoS
            }),
            ["Client <unknown> disconnected due to malformed packet: invalid QoS 3."]
        );
        let p = PublishInfo {
            client_id: "c1",
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            packet_id: 7,
            topic: "a/b",
            payload_len: 12,
        };
        assert_eq!(
            texts(Event::PublishDenied(p)),
            ["Denied PUBLISH from c1 (d0, q1, r1, m7, 'a/b', ... (12 bytes))"]
        );
        assert_eq!(
            texts(Event::PublishTooLarge(p)),
            ["Dropped too large PUBLISH from c1 (q1, r1, m7, 'a/b', ... (12 bytes))."]
        );
    }

    #[test]
    fn subscribe_lines_go_to_their_log_types() {
        let l = lines(&Event::Subscribed {
            client_id: "c1",
            qos: QoS::ExactlyOnce,
            filter: "x/#",
        });
        assert_eq!((l[0].target, l[0].text.as_str()), ("subscribe", "c1 2 x/#"));
        let l = lines(&Event::UnsubscribeDenied {
            client_id: "c1",
            filter: "x/#",
        });
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].level, Level::Debug);
        assert_eq!((l[1].target, l[1].text.as_str()), ("unsubscribe", "c1 x/#"));
    }
}
