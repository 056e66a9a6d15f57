//! invariants: what must hold between any two calls into the broker, checked
//! on demand by the fuzz targets and the corpus replay (`crate::fuzzing`
//! drives the broker with arbitrary bytes and asks after every step).
//!
//! Owns: `Broker::check_invariants`. Must not: change state, or be called on
//! the hot path (it walks every session and decodes every outbox).

use std::collections::HashSet;

use super::Broker;
use crate::protocol::{decode, Decoded, ProtocolVersion};

impl Broker {
    /// Checks the broker's internal bounds and returns the first violation:
    /// packet ids in flight unique and non-zero in each direction; each
    /// session's queued byte count equal to what its queue holds; queues
    /// within `max_queued_messages` / `max_queued_bytes`, not counting
    /// retained copies (a new subscription's retained matches are queued
    /// whatever the limit, as Mosquitto sends them all); and every outbox a sequence of whole MQTT packets valid
    /// for the connection's protocol version.
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
            // Retained copies queued for a new subscription are exempt
            // from the limits (`Delivery::unbounded`); everything else is
            // bounded. The fuzzer showed that a client which never reads
            // and subscribes again and again gets one more retained copy
            // per SUBSCRIBE (regression input
            // fuzz/seeds/broker/regression-retained-resubscribe).
            let max_msgs = self.cfg.max_queued_messages as usize;
            let live = s.queue.iter().filter(|o| !o.retain).count();
            if max_msgs > 0 && live > max_msgs {
                return Err(format!(
                    "{who}: {live} queued besides retained copies, limit {max_msgs}"
                ));
            }
            let max_bytes = self.cfg.max_queued_bytes as usize;
            let retained_bytes: usize = s
                .queue
                .iter()
                .filter(|o| o.retain)
                .map(|o| o.msg.cost())
                .sum();
            if max_bytes > 0 && s.queued_bytes > max_bytes + retained_bytes {
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
