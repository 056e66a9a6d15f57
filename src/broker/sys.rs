//! `$SYS/broker/...`: the broker's own counters, published as retained QoS 0
//! messages every `sys_interval` seconds, each only when its value changed
//! (as Mosquitto does), under Mosquitto's topic names. The version is
//! published once at start.
//!
//! Must not: keep event counters of its own; they live in `Stats` and are
//! updated where the events happen. Only the load averages (which need the
//! previous sample) are kept here.

use std::collections::HashMap;

use crate::protocol::QoS;

use super::Broker;

/// Exponentially smoothed per-minute rates over 1, 5 and 15 minutes.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    last_count: u64,
    avg: [f64; 3],
}

impl Load {
    fn update(&mut self, count: u64, interval_s: f64) {
        let delta = count.saturating_sub(self.last_count) as f64;
        self.last_count = count;
        let per_min = delta * 60.0 / interval_s.max(1.0);
        for (avg, period) in self.avg.iter_mut().zip([60.0, 300.0, 900.0]) {
            let k = (-interval_s / period).exp();
            *avg = per_min + k * (*avg - per_min);
        }
    }
}

const LOADS: [&str; 9] = [
    "messages/received",
    "messages/sent",
    "publish/dropped",
    "publish/received",
    "publish/sent",
    "bytes/received",
    "bytes/sent",
    "sockets",
    "connections",
];

#[derive(Debug, Default)]
pub(super) struct SysState {
    pub next_publish: u64,
    last: HashMap<String, String>,
    loads: [Load; 9],
    last_sample: Option<u64>,
    heap_max: usize,
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

    fn sys_value(&mut self, topic: &str, value: String, now: u64) {
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
        self.sys.last.insert(topic.to_string(), value);
    }

    pub(super) fn sys_publish(&mut self, now: u64) {
        self.sys.next_publish = now + u64::from(self.cfg.sys_interval) * 1000;
        let heap = (self.cfg.memory_used)();
        self.sys.heap_max = self.sys.heap_max.max(heap);
        let mut values = self.sys_counters(now);
        if heap > 0 {
            values.push(("heap/current".into(), heap.to_string()));
            values.push(("heap/maximum".into(), self.sys.heap_max.to_string()));
        }
        self.sys_loads(now, &mut values);
        for (name, value) in values {
            self.sys_value(&format!("$SYS/broker/{}", name), value, now);
        }
    }

    /// The `$SYS/broker/...` counters (names below `$SYS/broker/`, values).
    fn sys_counters(&self, now: u64) -> Vec<(String, String)> {
        let connected = self.stats.clients_connected;
        let mut disconnected = 0u64;
        let mut inflight = 0usize;
        let mut stored = self.router.retained.len();
        let mut store_bytes = 0usize;
        for (_, s) in self.sessions.iter() {
            if s.conn.is_none() {
                disconnected += 1;
            }
            inflight += s.inflight.len();
            stored += s.stored_len();
            store_bytes += s.queued_bytes;
            store_bytes += s.inflight.iter().map(|f| f.out.msg.cost()).sum::<usize>();
        }
        self.router.retained.for_each(|m| store_bytes += m.cost());
        let st = &self.stats;
        vec![
            ("uptime".into(), format!("{} seconds", self.uptime(now))),
            ("clients/connected".into(), connected.to_string()),
            ("clients/active".into(), connected.to_string()),
            ("clients/disconnected".into(), disconnected.to_string()),
            ("clients/inactive".into(), disconnected.to_string()),
            (
                "clients/total".into(),
                (connected + disconnected).to_string(),
            ),
            ("clients/maximum".into(), st.clients_maximum.to_string()),
            ("clients/expired".into(), st.clients_expired.to_string()),
            ("messages/received".into(), st.msgs_received.to_string()),
            ("messages/sent".into(), st.msgs_sent.to_string()),
            ("messages/stored".into(), stored.to_string()),
            ("messages/inflight".into(), inflight.to_string()),
            ("store/messages/count".into(), stored.to_string()),
            ("store/messages/bytes".into(), store_bytes.to_string()),
            (
                "publish/messages/received".into(),
                st.pub_msgs_received.to_string(),
            ),
            ("publish/messages/sent".into(), st.pub_msgs_sent.to_string()),
            (
                "publish/messages/dropped".into(),
                st.pub_msgs_dropped.to_string(),
            ),
            (
                "publish/bytes/received".into(),
                st.pub_bytes_received.to_string(),
            ),
            ("publish/bytes/sent".into(), st.pub_bytes_sent.to_string()),
            ("bytes/received".into(), st.bytes_received.to_string()),
            ("bytes/sent".into(), st.bytes_sent.to_string()),
            (
                "subscriptions/count".into(),
                self.router.subscription_count().to_string(),
            ),
            (
                "shared_subscriptions/count".into(),
                self.router.shared_member_count().to_string(),
            ),
            (
                "retained messages/count".into(),
                self.router.retained.len().to_string(),
            ),
        ]
    }

    /// Load averages: per-minute rates smoothed over 1, 5 and 15 minutes,
    /// in the order of LOADS (none on the first sample).
    fn sys_loads(&mut self, now: u64, values: &mut Vec<(String, String)>) {
        let st = &self.stats;
        let counts = [
            st.msgs_received,
            st.msgs_sent,
            st.pub_msgs_dropped,
            st.pub_msgs_received,
            st.pub_msgs_sent,
            st.bytes_received,
            st.bytes_sent,
            st.connections_total,
            st.connections_total,
        ];
        if let Some(prev) = self.sys.last_sample {
            let interval = (now.saturating_sub(prev) as f64 / 1000.0).max(0.001);
            for (i, name) in LOADS.iter().enumerate() {
                self.sys.loads[i].update(counts[i], interval);
                for (j, span) in ["1min", "5min", "15min"].iter().enumerate() {
                    values.push((
                        format!("load/{}/{}", name, span),
                        format!("{:.2}", self.sys.loads[i].avg[j]),
                    ));
                }
            }
        } else {
            for (load, &count) in self.sys.loads.iter_mut().zip(counts.iter()) {
                load.last_count = count;
            }
        }
        self.sys.last_sample = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::Load;

    #[test]
    fn load_average_converges_to_the_rate() {
        let mut l = Load::default();
        for i in 1..=400u64 {
            l.update(i * 100, 10.0); // 100 per 10 s = 600 per minute
        }
        assert!((l.avg[0] - 600.0).abs() < 1.0, "{:?}", l.avg);
        assert!((l.avg[2] - 600.0).abs() < 60.0, "{:?}", l.avg);
    }
}
