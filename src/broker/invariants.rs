//! invariants: what must hold between any two calls into the broker, checked
//! on demand by the fuzz targets and the corpus replay (`crate::fuzzing`
//! drives the broker with arbitrary bytes and asks after every step).
//!
//! Owns: `Broker::check_invariants`. Must not: change state, or be called on
//! the hot path (it walks every session and decodes every outbox).

use std::collections::HashSet;

use super::Broker;
use crate::protocol::{decode, Decoded, ProtocolVersion, QoS};

impl Broker {
    /// Checks the broker's internal bounds and returns the first violation:
    /// packet ids in flight unique and non-zero in each direction; each
    /// session's queued byte count equal to what its queue holds; queues
    /// within `max_queued_messages` / `max_queued_bytes`, not counting
    /// QoS 0 retained copies for a new subscription (see below); and every
    /// outbox a sequence of whole MQTT packets valid for the connection's
    /// protocol version.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (_, s) in self.sessions.iter() {
            let who = &s.client_id;
            let mut ids = HashSet::new();
            for f in &s.inflight {
                if f.packet_id == 0 || !ids.insert(f.packet_id) {
                    return Err(format!(
                        "{who}: outgoing packet id {} in flight twice or zero",
                        f.packet_id
                    ));
                }
            }
            let mut ids = HashSet::new();
            for m in &s.incoming_qos2 {
                if m.packet_id == 0 || !ids.insert(m.packet_id) {
                    return Err(format!(
                        "{who}: incoming QoS 2 packet id {} held twice or zero",
                        m.packet_id
                    ));
                }
            }
            let bytes: usize = s.queue.iter().map(|o| o.msg.cost()).sum();
            if bytes != s.queued_bytes {
                return Err(format!(
                    "{who}: queued_bytes {} but the queue holds {bytes}",
                    s.queued_bytes
                ));
            }
            // Every queued message is within the limits except QoS 0
            // retained copies for a new subscription, admitted whole when
            // the subscription's retained matches started with the queue
            // within its limits (`Delivery::unbounded`, as Mosquitto):
            // they can push the queue past the limit once, never again
            // while it stays there. The fuzzer found the unbounded version
            // of this (every SUBSCRIBE one more copy; regression input
            // fuzz/seeds/broker/regression-retained-resubscribe).
            let burst = |o: &&super::session::Outgoing| o.retain && o.qos == QoS::AtMostOnce;
            let max_msgs = self.cfg.max_queued_messages as usize;
            let bounded = s.queue.iter().filter(|o| !burst(o)).count();
            if max_msgs > 0 && bounded > max_msgs {
                return Err(format!(
                    "{who}: {bounded} queued besides QoS 0 retained copies, limit {max_msgs}"
                ));
            }
            let max_bytes = self.cfg.max_queued_bytes as usize;
            let burst_bytes: usize = s.queue.iter().filter(burst).map(|o| o.msg.cost()).sum();
            if max_bytes > 0 && s.queued_bytes > max_bytes + burst_bytes {
                return Err(format!(
                    "{who}: {} bytes queued, limit {max_bytes}",
                    s.queued_bytes
                ));
            }
        }
        for c in self.conns.iter() {
            let version: ProtocolVersion = c.version;
            let mut rest = c.outbox.pending();
            while !rest.is_empty() {
                match decode(rest, version, 0) {
                    Ok(Decoded::Packet(_, n)) if n > 0 && n <= rest.len() => {
                        rest = rest.get(n..).unwrap_or_default();
                    }
                    Ok(Decoded::Packet(..)) => {
                        return Err(format!("{}: outbox decoder made no progress", c.peer))
                    }
                    Ok(_) => {
                        return Err(format!(
                            "{}: outbox ends in a partial packet ({} bytes)",
                            c.peer,
                            rest.len()
                        ))
                    }
                    Err(e) => {
                        return Err(format!(
                            "{}: outbox holds an invalid packet ({e:?}): {:02x?}",
                            c.peer,
                            rest.get(..rest.len().min(64)).unwrap_or_default()
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
