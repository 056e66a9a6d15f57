//! bridge/events: what a link tells the outside world happened.
//!
//! Owns: `LinkEvent`, one variant per thing Mosquitto (or midge, where
//! Mosquitto says nothing) writes a log line about for a bridge: connecting,
//! a failed attempt and the delay before the next, the remote's refusal or
//! DISCONNECT, the subscriptions made on each side, a lost connection, a
//! dropped message, a stuck or idle link. A link queues them as they happen;
//! `net` takes them (`Link::take_events`) and words them as log lines.
//!
//! Must not: format log lines or call `log::` (`scripts/check-rooms.sh`
//! refuses it), so that a test on the fake clock can assert the sequence.

/// Something a link did that an operator may want to read about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// An attempt starts (Mosquitto: `Connecting bridge NAME (host:port)`).
    Connecting {
        name: String,
        host: String,
        port: u16,
    },
    /// The attempt failed before CONNACK (refused, unreachable, TLS...).
    ConnectFailed { name: String, why: String },
    /// The next attempt is due in `delay_ms` (None: never, e.g. `start_type
    /// once`, or `lazy` until the threshold is reached).
    Retry { name: String, delay_ms: Option<u64> },
    /// The remote's bytes broke the protocol.
    RemoteError { name: String, error: String },
    /// CONNACK with a non-zero code; `reason` is Mosquitto's wording.
    Refused { name: String, reason: String },
    /// The remote sent DISCONNECT (v5) with this reason.
    RemoteDisconnect { name: String, reason: u8 },
    /// A subscription on the remote for an `in`/`both` line.
    RemoteSubscribe { client_id: String, topic: String },
    /// A subscription on the local broker for an `out`/`both` line.
    LocalSubscribe { client_id: String, topic: String },
    /// The link was up and its connection to the remote ended.
    Lost { name: String, client_id: String },
    /// The local broker closed the link's local half.
    LocalClosed { name: String, client_id: String },
    /// The local broker refused the link's local half.
    LocalRefused {
        name: String,
        client_id: String,
        code: u8,
    },
    /// A message for the remote could not be sent and was dropped.
    Dropped {
        name: String,
        topic: String,
        error: String,
    },
    /// No CONNACK within the connect timeout.
    NoConnack { name: String },
    /// Keepalive failed (no PINGRESP in time).
    KeepaliveFailed { name: String, error: String },
    /// Messages wait and the remote acknowledged nothing for too long.
    Stuck { name: String },
    /// `start_type lazy`: idle for `idle_timeout` seconds, disconnecting.
    Idle { name: String, secs: u32 },
    /// Failover: connected to a secondary address, going back to the
    /// primary because it accepted a test connection.
    BackToPrimary {
        name: String,
        host: String,
        port: u16,
    },
}
