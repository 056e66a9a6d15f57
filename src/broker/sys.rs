//! `$SYS/broker/...`: the broker's own counters, published as retained QoS 0
//! messages every `sys_interval` seconds, each only when its value changed
//! (as Mosquitto does). The version is published once at start.
//!
//! Must not: keep counters of its own; they live in `Stats` and are updated
//! where the events happen.

use std::collections::HashMap;

use crate::protocol::QoS;

use super::Broker;

#[derive(Debug, Default)]
pub(super) struct SysState {
    pub next_publish: u64,
    last: HashMap<&'static str, String>,
}

impl Broker {
    pub(super) fn sys_startup(&mut self, now: u64) {
        if self.cfg.sys_interval == 0 {
            return;
        }
        let version = self.cfg.version.clone();
        self.sys_value("$SYS/broker/version", version, now);
        self.sys.next_publish = now;
    }

    fn sys_value(&mut self, topic: &'static str, value: String, now: u64) {
        if self.sys.last.get(topic) == Some(&value) {
            return;
        }
        self.route(
            usize::MAX,
            topic,
            value.as_bytes(),
            &[],
            None,
            QoS::AtMostOnce,
            true,
            None,
            now,
        );
        self.sys.last.insert(topic, value);
    }

    pub(super) fn sys_publish(&mut self, now: u64) {
        self.sys.next_publish = now + u64::from(self.cfg.sys_interval) * 1000;
        let connected = self.stats.clients_connected;
        let disconnected = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_none())
            .count() as u64;
        let stored: usize = self
            .sessions
            .iter()
            .map(|(_, s)| s.stored_len())
            .sum::<usize>()
            + self.retained.len();
        let st = self.stats.clone();
        let values: [(&'static str, String); 17] = [
            (
                "$SYS/broker/uptime",
                format!("{} seconds", self.uptime(now)),
            ),
            ("$SYS/broker/clients/connected", connected.to_string()),
            ("$SYS/broker/clients/active", connected.to_string()),
            ("$SYS/broker/clients/disconnected", disconnected.to_string()),
            ("$SYS/broker/clients/inactive", disconnected.to_string()),
            (
                "$SYS/broker/clients/total",
                (connected + disconnected).to_string(),
            ),
            (
                "$SYS/broker/clients/maximum",
                st.clients_maximum.to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                st.msgs_received.to_string(),
            ),
            ("$SYS/broker/messages/sent", st.msgs_sent.to_string()),
            ("$SYS/broker/messages/stored", stored.to_string()),
            ("$SYS/broker/store/messages/count", stored.to_string()),
            (
                "$SYS/broker/publish/messages/received",
                st.pub_msgs_received.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                st.pub_msgs_sent.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/dropped",
                st.pub_msgs_dropped.to_string(),
            ),
            ("$SYS/broker/bytes/received", st.bytes_received.to_string()),
            ("$SYS/broker/bytes/sent", st.bytes_sent.to_string()),
            (
                "$SYS/broker/subscriptions/count",
                self.tree.len().to_string(),
            ),
        ];
        for (topic, value) in values {
            self.sys_value(topic, value, now);
        }
        let heap = (self.cfg.memory_used)();
        if heap > 0 {
            self.sys_value("$SYS/broker/heap/current", heap.to_string(), now);
        }
        let retained = self.retained.len().to_string();
        self.sys_value("$SYS/broker/retained messages/count", retained, now);
    }
}
