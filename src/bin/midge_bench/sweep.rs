//! Scenarios for the cost-growth sweeps of `scripts/bench.sh sweep`: what
//! one more subscription costs when a broker already holds many.
//!
//! Owns the `subs` scenario: `--subs N` distinct filters spread over
//! `--conns C` connections (so a million filters need no million sockets),
//! the time and memory to subscribe them, then the routing rate of
//! publishes that each match exactly one of them. The other sweeps (idle
//! connections, retained messages, fan-out) reuse `conns`, `retained` and
//! `fanout` with growing sizes. Like every scenario it must not touch
//! sockets itself (that is `net`) and returns one JSON line.

use std::time::Instant;

use crate::mqtt::{self, Packet};
use crate::net::{Net, State};
use crate::procfs::{self, Meter};
use crate::scenarios::{
    client_id, cost_fields, establish_all, fill_payload, footer, header, io_err, is_stale,
    loss_fields, patch, poll, read_u64, role_map, Flow, Opts, Spec, Step, MAX_PENDING, POLL_TICK,
};

/// Filters per SUBSCRIBE packet.
const PER_PACKET: usize = 64;

/// Filter `i`: `sw/<i / 1000>/<i % 1000>/+`, so the tree is three levels
/// deep with at most 1 000 children per node, and a wildcard at the end.
fn filter(out: &mut Vec<u8>, i: u64) {
    out.clear();
    mqtt::topic_with_numbers(out, b"sw/", &[i / 1000, i % 1000]);
    out.extend_from_slice(b"/+");
}

/// The topic matched by filter `i` and no other.
fn topic(out: &mut Vec<u8>, i: u64) {
    out.clear();
    mqtt::topic_with_numbers(out, b"sw/", &[i / 1000, i % 1000]);
    out.extend_from_slice(b"/x");
}

/// One SUBSCRIBE for `filters` (indices), QoS 0 each.
fn subscribe_many(buf: &mut Vec<u8>, packet_id: u16, filters: &[u64], v5: bool) {
    let mut f = Vec::with_capacity(24);
    let mut body = Vec::with_capacity(filters.len() * 24 + 3);
    body.extend_from_slice(&packet_id.to_be_bytes());
    if v5 {
        body.push(0);
    }
    for &i in filters {
        filter(&mut f, i);
        body.extend_from_slice(&(f.len() as u16).to_be_bytes());
        body.extend_from_slice(&f);
        body.push(0);
    }
    buf.push(0x82);
    mqtt::put_remaining_len(buf, body.len());
    buf.extend_from_slice(&body);
}

/// The `k`-th publish goes to this filter: a multiplicative hash walks the
/// whole set instead of the cache-friendly order the filters were made in.
fn target(k: u64, n: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

/// `--subs N` distinct filters over `--conns C` connections: subscribe
/// time and broker memory per subscription, then one publisher routing
/// publishes that each match exactly one filter, for `--duration`.
pub fn subs(o: &Opts) -> Result<String, String> {
    let n = o.subs.unwrap_or(100_000).max(1) as u64;
    let c = o.conns.clamp(1, usize::try_from(n).unwrap_or(usize::MAX));
    let window = o.window.unwrap_or(500).max(1);
    procfs::raise_nofile(c as u64 + 64);
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    // --persistent: the filters live in persistent sessions (start-up time
    // of a broker loading them).
    net.persistent = o.persistent;
    let mut specs: Vec<Spec> = (0..c).map(|i| (client_id("ssub", i), None)).collect();
    specs.push((client_id("pub", 0), None));
    let ids = establish_all(&mut net, &specs, o)?;
    let (&publisher, sub_ids) = ids.split_last().ok_or("no clients")?;
    let roles = role_map(&net, sub_ids);

    // Subscribe: filter i belongs to connection i % c.
    let rss0 = o.broker_pid.and_then(procfs::rss_bytes);
    let meter = Meter::start(o.broker_pid);
    let mut packets = 0u64;
    let mut batch = Vec::with_capacity(PER_PACKET);
    for (conn, &id) in sub_ids.iter().enumerate() {
        let mut i = conn as u64;
        let mut pid = 1u16;
        while i < n {
            batch.clear();
            while i < n && batch.len() < PER_PACKET {
                batch.push(i);
                i += c as u64;
            }
            let tx = net.tx(id).ok_or("subscriber closed before subscribing")?;
            subscribe_many(tx, pid, &batch, o.v5);
            pid = pid.checked_add(1).unwrap_or(1);
            packets += 1;
        }
    }
    let (mut acked, mut granted, mut refused) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + o.timeout;
    while acked < packets {
        if Instant::now() >= deadline {
            return Err(format!(
                "subs: {acked} of {packets} SUBACKs within {:?}",
                o.timeout
            ));
        }
        if sub_ids.iter().any(|&id| net.state(id) == State::Closed) {
            return Err(format!(
                "subs: a subscriber was closed after {acked} SUBACKs ({})",
                net.stats.first_error.as_deref().unwrap_or("?")
            ));
        }
        net.flush();
        poll(&mut net, POLL_TICK, &mut |_, p| {
            if let Packet::SubAck { codes, .. } = p {
                acked += 1;
                for &code in codes.iter() {
                    if code < 0x80 {
                        granted += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
        })?;
    }
    let sub_cost = meter.stop(Instant::now());
    let rss1 = o.broker_pid.and_then(procfs::rss_bytes);

    // Route: each publish matches exactly filter `target(k)`, owned by
    // connection `target(k) % c`.
    let mut payload = Vec::new();
    fill_payload(&mut payload, o.payload.max(8), 0);
    let mut t = Vec::with_capacity(32);
    let count = o.count.unwrap_or(u64::MAX);
    let (mut sent, mut delivered, mut written_off, mut misrouted, mut stale) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut flow = Flow::start(o);
    loop {
        let outstanding = sent.saturating_sub(delivered + written_off);
        match flow.step(
            Instant::now(),
            sent >= count,
            outstanding,
            outstanding >= window,
        ) {
            Step::Done => break,
            Step::Drain => {}
            Step::Stall => written_off += outstanding,
            Step::Send => {
                let room = window.saturating_sub(outstanding).min(count - sent);
                if room > 0 && net.pending(publisher) <= MAX_PENDING {
                    if let Some(tx) = net.tx(publisher) {
                        for _ in 0..room {
                            let f = target(sent, n);
                            topic(&mut t, f);
                            let lay = mqtt::publish(tx, &t, &payload, 0, 0, false, o.v5);
                            let start = tx.len() - lay.len;
                            patch(tx, start + lay.payload_at, &f.to_be_bytes());
                            sent += 1;
                        }
                    }
                }
            }
        }
        net.flush();
        let before = delivered;
        poll(&mut net, POLL_TICK, &mut |id, p| {
            if is_stale(p) {
                stale += 1;
                return;
            }
            if let Packet::Publish { payload, .. } = p {
                let role = roles.get(id).copied().unwrap_or(u32::MAX);
                match read_u64(payload, 0) {
                    Some(f) if role != u32::MAX && f % c as u64 == u64::from(role) => {
                        delivered += 1
                    }
                    _ => misrouted += 1,
                }
            }
        })?;
        if delivered != before {
            flow.progressed(Instant::now());
        }
    }
    let cost = flow.cost();
    let mut j = header(o, "subs");
    cost_fields(&mut j, &cost, delivered);
    loss_fields(&mut j, sent, delivered);
    j.int("subscriptions", n)
        .int("sub_conns", c as u64)
        .int("granted", granted)
        .int("refused", refused)
        .num("subscribe_secs", sub_cost.secs)
        .num(
            "subs_per_sec",
            if sub_cost.secs > 0.0 {
                n as f64 / sub_cost.secs
            } else {
                f64::NAN
            },
        )
        .opt_num("subscribe_broker_cpu_secs", sub_cost.broker_cpu)
        .opt_num("rss_before", rss0.map(|v| v as f64))
        .opt_num("rss_subscribed", rss1.map(|v| v as f64))
        .opt_num(
            "bytes_per_sub",
            rss0.zip(rss1)
                .map(|(a, b)| (b as f64 - a as f64) / n as f64),
        )
        .int("sent", sent)
        .int("misrouted", misrouted)
        .int("stale", stale);
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_topic_matches_its_own_filter_only() {
        let (mut f, mut t) = (Vec::new(), Vec::new());
        filter(&mut f, 123_456);
        topic(&mut t, 123_456);
        assert_eq!(f, b"sw/123/456/+");
        assert_eq!(t, b"sw/123/456/x");
        filter(&mut f, 7);
        assert_eq!(f, b"sw/0/7/+");
    }

    #[test]
    fn subscribe_packet_carries_every_filter() {
        let mut buf = Vec::new();
        subscribe_many(&mut buf, 9, &[1, 2002], false);
        let body = b"\x00\x09\x00\x08sw/0/1/+\x00\x00\x08sw/2/2/+\x00";
        assert_eq!(buf[0], 0x82);
        assert_eq!(usize::from(buf[1]), body.len());
        assert_eq!(&buf[2..], body);
    }

    #[test]
    fn targets_stay_in_range_and_spread() {
        let n = 1000;
        let hit: std::collections::HashSet<u64> = (0..5000).map(|k| target(k, n)).collect();
        assert!(hit.iter().all(|&t| t < n));
        assert!(hit.len() > 900, "only {} of {n} filters reached", hit.len());
    }
}
