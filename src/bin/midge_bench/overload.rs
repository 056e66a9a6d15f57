//! Scenarios of a broker under attack and under load (issue 16), each one
//! JSON line like the rest:
//! - `never-reading`: a `#` subscriber at QoS 1 that never reads its socket
//!   while publishers send QoS 0 and 1 at a fixed rate; broker RSS growth,
//!   the drops the broker counts in `$SYS/broker/publish/messages/dropped`,
//!   and a probe client's round-trip latency (publish to itself) idle and
//!   during the load.
//! - `flood`: the same with `--subs` such subscribers and publishers far
//!   beyond what they take; run with and without `memory_limit`.
//! - `half-open` / `partial-connect`: N TCP connections that never send
//!   CONNECT, or send only its first bytes; broker RSS per connection, and
//!   how many the broker closed by itself within `--timeout`.
//!
//! Owns: these workloads and their accounting. Must not touch the broker
//! process (it only reads /proc) nor any socket but its own.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::mqtt::{self, Packet};
use crate::net::Net;
use crate::procfs::{self, Meter};
use crate::scenarios::{
    client_id, establish_all, footer, header, io_err, poll, quantile, read_u64, Opts, Spec,
    MAX_PENDING, POLL_TICK,
};

/// Probe round trips per second.
const PROBE_RATE: u64 = 100;
/// Length of the idle probe phase.
const IDLE: Duration = Duration::from_secs(2);
/// How often broker RSS is sampled during the load.
const RSS_EVERY: Duration = Duration::from_millis(100);
/// After the load: long enough for two `$SYS` updates at `sys_interval 1`.
const SETTLE: Duration = Duration::from_millis(2500);
const DROPPED_TOPIC: &str = "$SYS/broker/publish/messages/dropped";

struct Phase {
    samples: Vec<u64>,
    probes_sent: u64,
    published: u64,
    skipped: u64,
    rss_peak: Option<u64>,
}

/// One phase: the probe publishes to itself at `PROBE_RATE`; with `load`,
/// the publishers send `rate` messages/s in all, alternately QoS 0 and 1.
#[allow(clippy::too_many_arguments)]
fn phase(
    net: &mut Net,
    o: &Opts,
    (probe, sys, pubs): (usize, usize, &[usize]),
    probe_topic: &[u8],
    len: Duration,
    load: bool,
    dropped: &mut Option<u64>,
    seq: &mut u64,
) -> Result<Phase, String> {
    let start = Instant::now();
    let end = start + len;
    let probe_every = Duration::from_secs_f64(1.0 / PROBE_RATE as f64);
    let load_every = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
    let mut payload = vec![b'x'; o.payload.max(8)];
    let mut topic = Vec::with_capacity(32);
    let mut p = Phase {
        samples: Vec::new(),
        probes_sent: 0,
        published: 0,
        skipped: 0,
        rss_peak: None,
    };
    let mut next_rss = start;
    let (mut next_probe, mut next_load) = (start, start);
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_probe {
            next_probe += probe_every;
            if let Some(tx) = net.tx(probe) {
                let ns = now.duration_since(start).as_nanos() as u64;
                patch8(&mut payload, ns);
                mqtt::publish(tx, probe_topic, &payload, 0, 0, false, o.v5);
                p.probes_sent += 1;
            }
        }
        while load && now >= next_load {
            next_load += load_every;
            let i = (*seq as usize) % pubs.len().max(1);
            let Some(&id) = pubs.get(i) else { break };
            if net.pending(id) >= MAX_PENDING {
                p.skipped += 1;
                continue;
            }
            let qos = (*seq % 2) as u8;
            let pid = (*seq % 65_535) as u16 + 1;
            mqtt::topic_with_numbers(&mut topic, b"bench/load/", &[i as u64]);
            if let Some(tx) = net.tx(id) {
                patch8(&mut payload, *seq);
                mqtt::publish(tx, &topic, &payload, qos, pid, false, o.v5);
                p.published += 1;
            }
            *seq += 1;
        }
        net.flush();
        if load && now >= next_rss {
            next_rss += RSS_EVERY;
            let r = o.broker_pid.and_then(procfs::rss_bytes);
            p.rss_peak = p.rss_peak.max(r);
        }
        let wait = next_probe
            .min(if load { next_load } else { next_probe })
            .saturating_duration_since(Instant::now())
            .min(POLL_TICK);
        poll(net, wait, &mut |id, pkt| {
            if let Packet::Publish { topic, payload, .. } = pkt {
                if id == probe && *topic == probe_topic {
                    if let Some(ns) = read_u64(payload, 0) {
                        let now = Instant::now().duration_since(start).as_nanos() as u64;
                        p.samples.push(now.saturating_sub(ns));
                    }
                } else if id == sys {
                    if let Some(v) = std::str::from_utf8(payload)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                    {
                        *dropped = Some(v);
                    }
                }
            }
        })?;
    }
    p.samples.sort_unstable();
    Ok(p)
}

fn patch8(payload: &mut [u8], v: u64) {
    if let Some(d) = payload.get_mut(..8) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

fn us(sorted: &[u64], q: f64) -> Option<f64> {
    quantile(sorted, q).map(|ns| ns as f64 / 1000.0)
}

/// A subscriber on `#` at QoS 1 that never reads, publishers at a fixed
/// rate, a probe measuring round trips before and during.
pub fn never_reading(o: &Opts) -> Result<String, String> {
    hogs_under_load(o, "never-reading", 1)
}

/// `flood`: publishers sending far more than the subscribers take: `--subs`
/// (default 20) `#` subscribers that never read. Run with and without
/// `memory_limit` (the broker's configuration decides; the workload is the
/// same), it shows what holds the broker's memory down.
pub fn flood(o: &Opts) -> Result<String, String> {
    hogs_under_load(o, "flood", o.subs.unwrap_or(20).max(1))
}

fn hogs_under_load(o: &Opts, name: &str, n_hogs: usize) -> Result<String, String> {
    let n_pubs = o.pubs.max(1);
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    let probe_topic = format!("bench/probe/{}", std::process::id());
    let mut specs: Vec<Spec> = vec![
        (client_id("probe", 0), Some((probe_topic.clone(), 0))),
        (client_id("sys", 0), Some((DROPPED_TOPIC.into(), 0))),
    ];
    specs.extend((0..n_pubs).map(|i| (client_id("pub", i), None)));
    let ids = establish_all(&mut net, &specs, o)?;
    let (Some(&probe), Some(&sys)) = (ids.first(), ids.get(1)) else {
        return Err("no clients".into());
    };
    let pubs = ids.get(2..).unwrap_or_default().to_vec();
    let roles = (probe, sys, pubs.as_slice());
    let (mut dropped, mut seq) = (None, 0u64);
    let idle = phase(
        &mut net,
        o,
        roles,
        probe_topic.as_bytes(),
        IDLE,
        false,
        &mut dropped,
        &mut seq,
    )?;
    let dropped0 = dropped;
    let rss0 = o.broker_pid.and_then(procfs::rss_bytes);

    // The hogs: CONNECT and SUBSCRIBE # at QoS 1, then never a read.
    let mut hogs = Vec::with_capacity(n_hogs);
    for i in 0..n_hogs {
        let mut hog = TcpStream::connect(o.addr).map_err(io_err)?;
        let mut hello = Vec::new();
        mqtt::connect(&mut hello, &client_id("hog", i), 0, o.v5, false);
        mqtt::subscribe(&mut hello, 1, "#", 1, o.v5);
        hog.write_all(&hello).map_err(io_err)?;
        hogs.push(hog);
    }

    let meter = Meter::start(o.broker_pid);
    let load = phase(
        &mut net,
        o,
        roles,
        probe_topic.as_bytes(),
        o.duration,
        true,
        &mut dropped,
        &mut seq,
    )?;
    let cost = meter.stop(Instant::now());
    let rss1 = o.broker_pid.and_then(procfs::rss_bytes);
    // Drops counted by the broker show up in the next $SYS updates.
    let after = phase(
        &mut net,
        o,
        roles,
        probe_topic.as_bytes(),
        SETTLE,
        false,
        &mut dropped,
        &mut seq,
    )?;
    let rss_end = o.broker_pid.and_then(procfs::rss_bytes);
    let mut hogs_open = 0u64;
    for hog in &hogs {
        hog.set_nonblocking(true).map_err(io_err)?;
        let mut one = [0u8; 1];
        let open = match hog.peek(&mut one) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        };
        hogs_open += u64::from(open);
    }

    let mut j = header(o, name);
    let mb = |v: Option<u64>| v.map(|b| b as f64 / 1e6);
    j.int("publishers", n_pubs as u64)
        .int("rate", o.rate)
        .int("payload", o.payload.max(8) as u64)
        .num("secs", cost.secs)
        .int("published", load.published)
        .int("not_sent_publisher_busy", load.skipped)
        .opt_num("broker_cpu_secs", cost.broker_cpu)
        .opt_num("rss_before_mb", mb(rss0))
        .opt_num("rss_peak_mb", mb(load.rss_peak.max(rss1)))
        .opt_num("rss_after_mb", mb(rss_end))
        .opt_num(
            "rss_growth_mb",
            rss0.zip(load.rss_peak.max(rss1))
                .map(|(a, b)| (b as f64 - a as f64) / 1e6),
        )
        .opt_num("sys_dropped_before", dropped0.map(|v| v as f64))
        .opt_num("sys_dropped_after", dropped.map(|v| v as f64))
        .opt_num(
            "dropped",
            dropped.map(|d| d.saturating_sub(dropped0.unwrap_or(0)) as f64),
        )
        .int("probes_idle", idle.probes_sent)
        .int("probe_replies_idle", idle.samples.len() as u64)
        .opt_num("idle_p50_us", us(&idle.samples, 0.5))
        .opt_num("idle_p99_us", us(&idle.samples, 0.99))
        .int("probes_load", load.probes_sent)
        .int("probe_replies_load", load.samples.len() as u64)
        .opt_num("load_p50_us", us(&load.samples, 0.5))
        .opt_num("load_p99_us", us(&load.samples, 0.99))
        .opt_num("after_p50_us", us(&after.samples, 0.5))
        .int("hogs", n_hogs as u64)
        .int("hogs_still_open", hogs_open)
        .int(
            "publishers_open_at_end",
            pubs.iter()
                .filter(|&&i| net.state(i) != crate::net::State::Closed)
                .count() as u64,
        );
    if n_hogs == 1 {
        j.bool("hog_still_open", hogs_open == 1);
    }
    drop(hogs);
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

/// `half-open`: N connections that send nothing.
pub fn half_open(o: &Opts) -> Result<String, String> {
    silent_peers(o, "half-open", 0)
}

/// `partial-connect`: N connections that send the first 4 bytes of a
/// CONNECT and then nothing.
pub fn partial_connect(o: &Opts) -> Result<String, String> {
    silent_peers(o, "partial-connect", 4)
}

fn silent_peers(o: &Opts, name: &str, prefix: usize) -> Result<String, String> {
    const SPARE: u64 = 64;
    let asked = o.conns.max(1);
    let n = match procfs::raise_nofile(asked as u64 + SPARE) {
        Some(l) if l < asked as u64 + SPARE => {
            usize::try_from(l.saturating_sub(SPARE)).unwrap_or(0).max(1)
        }
        _ => asked,
    };
    let mut connect = Vec::new();
    mqtt::connect(&mut connect, "silent", 0, o.v5, false);
    let first = connect.get(..prefix).unwrap_or_default().to_vec();
    let rss0 = o.broker_pid.and_then(procfs::rss_bytes);
    let t0 = Instant::now();
    let deadline = t0 + o.timeout;
    let mut peers = Vec::with_capacity(n);
    let mut failed = 0u64;
    for _ in 0..n {
        if Instant::now() >= deadline {
            break;
        }
        match TcpStream::connect(o.addr) {
            Ok(mut s) => {
                if !first.is_empty() && s.write_all(&first).is_err() {
                    failed += 1;
                    continue;
                }
                s.set_nonblocking(true).map_err(io_err)?;
                peers.push(s);
            }
            Err(_) => failed += 1,
        }
    }
    let opened = peers.len();
    let connect_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(o.hold);
    let rss1 = o.broker_pid.and_then(procfs::rss_bytes);
    // Then wait (bounded by --timeout) for the broker to close them.
    let mut open: Vec<bool> = vec![true; peers.len()];
    let mut closed = 0usize;
    let mut last_close = None;
    let mut buf = [0u8; 64];
    let wait_end = Instant::now() + o.timeout;
    while closed < opened && Instant::now() < wait_end {
        for (s, o) in peers.iter_mut().zip(open.iter_mut()) {
            if !*o {
                continue;
            }
            let gone = match s.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            if gone {
                *o = false;
                closed += 1;
                last_close = Some(t0.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss2 = o.broker_pid.and_then(procfs::rss_bytes);
    let mut j = header(o, name);
    j.int("conns_requested", asked as u64)
        .int("opened", opened as u64)
        .int("failed", failed)
        .int("bytes_sent_each", prefix as u64)
        .num("connect_secs", connect_secs)
        .opt_num("rss_before", rss0.map(|v| v as f64))
        .opt_num("rss_open", rss1.map(|v| v as f64))
        .opt_num("rss_after_close", rss2.map(|v| v as f64))
        .opt_num(
            "bytes_per_conn",
            rss0.zip(rss1)
                .filter(|_| opened > 0)
                .map(|(a, b)| (b as f64 - a as f64) / opened as f64),
        )
        .int("closed_by_broker", closed as u64)
        .opt_num("last_close_secs", last_close);
    drop(peers);
    let stats = crate::net::NetStats::default();
    Ok(footer(&mut j, o, &stats))
}
