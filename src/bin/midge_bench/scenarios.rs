//! The benchmark scenarios: each sets up its clients on one `Net`, drives a
//! bounded (in count and in time) workload, and returns one JSON line.
//!
//! Owns: workload shapes, flow control (bounded outstanding windows so QoS 0
//! loss measures the broker, not a buffer overflow), loss / duplicate
//! accounting through sequence numbers in payloads, and latency statistics.
//! It must not touch sockets directly (that is `net`), and must not allocate
//! per message: templates are encoded once and patched in place.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::json::JsonLine;
use crate::mqtt::{self, Packet};
use crate::net::{Net, NetStats, State};
use crate::procfs::{self, Cost, Meter};

/// Everything a scenario may be told on the command line.
#[derive(Debug, Clone)]
pub struct Opts {
    pub addr: SocketAddr,
    pub broker_pid: Option<u32>,
    pub label: String,
    pub duration: Duration,
    pub count: Option<u64>,
    pub window: Option<u64>,
    pub payload: usize,
    pub pubs: usize,
    pub subs: Option<usize>,
    pub conns: usize,
    pub rate: u64,
    pub inflight: u64,
    pub qos: u8,
    pub v5: bool,
    pub persistent: bool,
    pub concurrency: usize,
    pub timeout: Duration,
    pub hold: Duration,
    /// After sending stops: how long without a delivery before the rest
    /// counts as lost.
    pub drain: Duration,
}

/// How often the loop wakes up to check deadlines when nothing happens.
pub(crate) const POLL_TICK: Duration = Duration::from_millis(5);
/// Publishers stop queueing while this much is still unwritten.
pub(crate) const MAX_PENDING: usize = 256 * 1024;
/// Publishes queued on one publisher per turn.
const BATCH: u64 = 32;
/// No delivery for this long with a full window: the rest is lost.
const STALL: Duration = Duration::from_millis(250);
/// After sending stops, waiting for the rest gives up after `Opts::drain`
/// without progress, or after this many times `Opts::drain` in total
/// (and never less than `DRAIN_MAX_MIN`).
const DRAIN_MAX_FACTOR: u32 = 5;
const DRAIN_MAX_MIN: Duration = Duration::from_secs(5);

fn drain_max(o: &Opts) -> Duration {
    (o.drain * DRAIN_MAX_FACTOR).max(DRAIN_MAX_MIN)
}
/// Payload bytes used for bookkeeping: sequence, source, timestamp.
const STAMP_LEN: usize = 20;

pub(crate) type Spec = (String, Option<(String, u8)>);

pub(crate) fn client_id(role: &str, i: usize) -> String {
    format!("mb{}-{role}-{i}", std::process::id())
}

pub(crate) fn io_err(e: std::io::Error) -> String {
    format!("I/O error: {e}")
}

/// Connects everything in `specs` or fails with a reason.
pub(crate) fn establish_all(net: &mut Net, specs: &[Spec], o: &Opts) -> Result<Vec<usize>, String> {
    let deadline = Instant::now() + o.timeout;
    let setup = net
        .establish(specs, o.concurrency, deadline, &mut |_, _| {})
        .map_err(io_err)?;
    if setup.failed > 0 || setup.ids.len() < specs.len() {
        return Err(format!(
            "setup: only {} of {} clients connected and subscribed within {:?} ({})",
            net.ready_count(),
            specs.len(),
            o.timeout,
            net.stats.first_error.as_deref().unwrap_or("timeout")
        ));
    }
    Ok(setup.ids)
}

/// A PUBLISH encoded once; `push` appends a copy with fresh sequence
/// number, packet id and timestamp patched in.
struct Template {
    bytes: Vec<u8>,
    pid_at: Option<usize>,
    payload_at: usize,
}

pub(crate) fn patch(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

pub(crate) fn fill_payload(payload: &mut Vec<u8>, len: usize, src: u32) {
    payload.clear();
    payload.resize(len, b'x');
    patch(payload, 8, &src.to_be_bytes());
}

impl Template {
    fn new(topic: &[u8], payload_len: usize, qos: u8, src: u32, v5: bool) -> Template {
        let mut payload = Vec::new();
        fill_payload(&mut payload, payload_len, src);
        let mut bytes = Vec::new();
        let lay = mqtt::publish(&mut bytes, topic, &payload, qos, 1, false, v5);
        Template {
            bytes,
            pid_at: lay.pid_at,
            payload_at: lay.payload_at,
        }
    }

    fn push(&self, tx: &mut Vec<u8>, seq: u64, packet_id: u16, stamp: Option<u64>) {
        let start = tx.len();
        tx.extend_from_slice(&self.bytes);
        if let Some(at) = self.pid_at {
            patch(tx, start + at, &packet_id.to_be_bytes());
        }
        let p = start + self.payload_at;
        patch(tx, p, &seq.to_be_bytes());
        if let Some(ts) = stamp {
            patch(tx, p + 12, &ts.to_be_bytes());
        }
    }
}

pub(crate) fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_be_bytes(a))
}

/// Per-stream sequence check: a gap is loss, a step back a duplicate or
/// reordering.
#[derive(Default, Clone, Copy)]
struct SeqTracker {
    next: u64,
}

#[derive(Default, Clone, Copy)]
struct SeqCounts {
    lost: u64,
    dup_or_reordered: u64,
}

impl SeqTracker {
    fn see(&mut self, seq: u64, counts: &mut SeqCounts) {
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            counts.lost += seq - self.next;
            self.next = seq + 1;
        } else {
            counts.dup_or_reordered += 1;
        }
    }
}

pub(crate) enum Step {
    Send,
    Drain,
    Done,
    /// The window is full and nothing arrived for `STALL`.
    Stall,
}

/// Timing of a windowed flow: send phase bounded by `duration` (and count),
/// drain phase bounded by `Opts::drain` idle and `drain_max` in total.
pub(crate) struct Flow {
    meter: Meter,
    send_until: Instant,
    drain_until: Option<Instant>,
    last_progress: Instant,
    last_delivery: Instant,
    stalls: u64,
    drain_idle: Duration,
    drain_max: Duration,
    /// Longest time between two deliveries while sending: a broker pause
    /// (or a starved machine) shows up here before it shows up as loss.
    max_gap: Duration,
}

impl Flow {
    pub(crate) fn start(o: &Opts) -> Flow {
        let meter = Meter::start(o.broker_pid);
        let t0 = meter.t0;
        Flow {
            meter,
            send_until: t0 + o.duration,
            drain_until: None,
            last_progress: t0,
            last_delivery: t0,
            stalls: 0,
            drain_idle: o.drain,
            drain_max: drain_max(o),
            max_gap: Duration::ZERO,
        }
    }

    /// `full`: no more may be sent until something arrives.
    pub(crate) fn step(
        &mut self,
        now: Instant,
        count_reached: bool,
        outstanding: u64,
        full: bool,
    ) -> Step {
        if self.drain_until.is_none() && (count_reached || now >= self.send_until) {
            self.drain_until = Some(now + self.drain_max);
            self.last_progress = self.last_progress.max(now);
        }
        if let Some(until) = self.drain_until {
            if outstanding == 0
                || now >= until
                || now.duration_since(self.last_progress) >= self.drain_idle
            {
                return Step::Done;
            }
            return Step::Drain;
        }
        if full && now.duration_since(self.last_progress) >= STALL {
            self.stalls += 1;
            self.last_progress = now;
            return Step::Stall;
        }
        Step::Send
    }

    pub(crate) fn progressed(&mut self, now: Instant) {
        if self.drain_until.is_none() {
            self.max_gap = self.max_gap.max(now.duration_since(self.last_delivery));
        }
        self.last_progress = now;
        self.last_delivery = now;
    }

    pub(crate) fn cost(&self) -> Cost {
        self.meter.stop(self.last_delivery)
    }
}

pub(crate) fn header(o: &Opts, scenario: &str) -> JsonLine {
    let mut j = JsonLine::new();
    j.str("scenario", scenario)
        .str("broker", &o.label)
        .str("protocol", if o.v5 { "mqtt5" } else { "mqtt311" })
        .str("transport", crate::transport::current().name());
    j
}

pub(crate) fn cost_fields(j: &mut JsonLine, c: &Cost, msgs: u64) {
    let per_sec = if c.secs > 0.0 {
        msgs as f64 / c.secs
    } else {
        f64::NAN
    };
    j.int("msgs", msgs)
        .num("secs", c.secs)
        .num("msgs_per_sec", per_sec)
        .opt_num("broker_cpu_secs", c.broker_cpu)
        .opt_num("bench_cpu_secs", c.bench_cpu)
        .opt_num(
            "broker_cpu_us_per_msg",
            c.broker_cpu
                .filter(|_| msgs > 0)
                .map(|b| b * 1e6 / msgs as f64),
        )
        .opt_num(
            "broker_cpu_util",
            c.broker_cpu.filter(|_| c.secs > 0.0).map(|b| b / c.secs),
        )
        .opt_num(
            "bench_cpu_util",
            c.bench_cpu.filter(|_| c.secs > 0.0).map(|b| b / c.secs),
        );
}

pub(crate) fn loss_fields(j: &mut JsonLine, expected: u64, got: u64) {
    let loss = expected.saturating_sub(got);
    j.int("loss", loss).num(
        "loss_pct",
        if expected > 0 {
            loss as f64 * 100.0 / expected as f64
        } else {
            0.0
        },
    );
}

pub(crate) fn footer(j: &mut JsonLine, o: &Opts, stats: &NetStats) -> String {
    if let Some(pid) = o.broker_pid {
        j.bool("broker_alive", procfs::alive(pid));
    }
    j.int("conn_closed", stats.closed)
        .int("conn_refused", stats.refused)
        .int("malformed", stats.malformed)
        .int("disconnects", stats.disconnects);
    if let Some(e) = &stats.first_error {
        j.str("first_error", e);
    }
    j.finish()
}

/// A retained message left by an earlier run on the same broker (the
/// scenarios never publish with RETAIN, except `retained`).
pub(crate) fn is_stale(p: &Packet<'_>) -> bool {
    matches!(p, Packet::Publish { retain: true, .. })
}

pub(crate) fn poll(
    net: &mut Net,
    timeout: Duration,
    f: &mut impl FnMut(usize, &Packet<'_>),
) -> Result<(), String> {
    net.poll(Some(timeout), f).map_err(io_err)
}

/// Maps a client index to its role index (`u32::MAX`: none).
pub(crate) fn role_map(net: &Net, ids: &[usize]) -> Vec<u32> {
    let mut map = vec![u32::MAX; net.len()];
    for (role, &id) in ids.iter().enumerate() {
        if let Some(slot) = map.get_mut(id) {
            *slot = role as u32;
        }
    }
    map
}

/// N publishers → 1 subscriber on `bench/#`, QoS 0.
pub fn fanin(o: &Opts) -> Result<String, String> {
    let pubs = o.pubs.max(1);
    let window = o.window.unwrap_or(1000).max(1);
    let count = o.count.unwrap_or(u64::MAX);
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    let mut specs: Vec<Spec> = vec![(client_id("sub", 0), Some(("bench/#".into(), 0)))];
    specs.extend((0..pubs).map(|i| (client_id("pub", i), None)));
    let ids = establish_all(&mut net, &specs, o)?;
    let (&sub, pub_ids) = ids.split_first().ok_or("no clients")?;
    let tmpls: Vec<Template> = (0..pubs)
        .map(|i| {
            Template::new(
                format!("bench/fanin/{i}").as_bytes(),
                o.payload,
                0,
                i as u32,
                o.v5,
            )
        })
        .collect();
    let mut next_seq = vec![0u64; pubs];
    let mut trackers = vec![SeqTracker::default(); pubs];
    let mut counts = SeqCounts::default();
    let (mut sent, mut received, mut written_off, mut foreign) = (0u64, 0u64, 0u64, 0u64);
    let mut rr = 0usize;
    let mut stale = 0u64;
    let mut flow = Flow::start(o);
    loop {
        let now = Instant::now();
        let outstanding = sent.saturating_sub(received + counts.lost + written_off);
        match flow.step(now, sent >= count, outstanding, outstanding >= window) {
            Step::Done => break,
            Step::Drain => {}
            Step::Stall => written_off += outstanding,
            Step::Send => {
                let mut room = window.saturating_sub(outstanding);
                let mut skipped = 0;
                while room > 0 && sent < count && skipped < pubs {
                    let p = rr % pubs;
                    rr = rr.wrapping_add(1);
                    let (Some(&id), Some(t), Some(seq)) =
                        (pub_ids.get(p), tmpls.get(p), next_seq.get_mut(p))
                    else {
                        break;
                    };
                    if net.pending(id) > MAX_PENDING {
                        skipped += 1;
                        continue;
                    }
                    let Some(tx) = net.tx(id) else {
                        skipped += 1;
                        continue;
                    };
                    let n = BATCH.min(room).min(count - sent);
                    for _ in 0..n {
                        t.push(tx, *seq, 0, None);
                        *seq += 1;
                    }
                    sent += n;
                    room -= n;
                }
            }
        }
        net.flush();
        let before = received;
        poll(&mut net, POLL_TICK, &mut |id, p| {
            if is_stale(p) {
                stale += 1;
                return;
            }
            if let Packet::Publish { payload, .. } = p {
                if id != sub {
                    return;
                }
                received += 1;
                let src = read_u32(payload, 8).unwrap_or(u32::MAX) as usize;
                match (trackers.get_mut(src), read_u64(payload, 0)) {
                    (Some(t), Some(seq)) => t.see(seq, &mut counts),
                    _ => foreign += 1,
                }
            }
        })?;
        if received != before {
            flow.progressed(Instant::now());
        }
    }
    let cost = flow.cost();
    let mut j = header(o, "fanin");
    cost_fields(&mut j, &cost, received);
    loss_fields(&mut j, sent, received);
    j.int("sent", sent)
        .int("publishers", pubs as u64)
        .int("window", window)
        .int("payload", o.payload as u64)
        .int("stalls", flow.stalls)
        .num("max_gap_ms", flow.max_gap.as_secs_f64() * 1e3)
        .int("dup_or_reordered", counts.dup_or_reordered)
        .int("foreign", foreign);
    j.int("stale_retained", stale);
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

/// 1 publisher → N subscribers on one topic, QoS 0; counts deliveries.
pub fn fanout(o: &Opts) -> Result<String, String> {
    let subs = o.subs.unwrap_or(100).max(1);
    let window = o.window.unwrap_or(500).max(1);
    let count = o.count.unwrap_or(u64::MAX);
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    let mut specs: Vec<Spec> = (0..subs)
        .map(|i| (client_id("sub", i), Some(("bench/fanout".into(), 0))))
        .collect();
    specs.push((client_id("pub", 0), None));
    let ids = establish_all(&mut net, &specs, o)?;
    let (&publisher, sub_ids) = ids.split_last().ok_or("no clients")?;
    let roles = role_map(&net, sub_ids);
    let tmpl = Template::new(b"bench/fanout", o.payload, 0, 0, o.v5);
    let mut trackers = vec![SeqTracker::default(); subs];
    let mut counts = SeqCounts::default();
    let (mut sent, mut delivered, mut written_off, mut foreign) = (0u64, 0u64, 0u64, 0u64);
    let subs64 = subs as u64;
    let mut stale = 0u64;
    let mut flow = Flow::start(o);
    loop {
        let now = Instant::now();
        // In publishes: a publish is done when every subscriber has it.
        let done = (delivered + counts.lost + written_off) / subs64;
        let outstanding = sent.saturating_sub(done);
        match flow.step(now, sent >= count, outstanding, outstanding >= window) {
            Step::Done => break,
            Step::Drain => {}
            Step::Stall => {
                written_off += (sent * subs64).saturating_sub(delivered + counts.lost + written_off)
            }
            Step::Send => {
                let room = window.saturating_sub(outstanding).min(count - sent);
                if room > 0 && net.pending(publisher) <= MAX_PENDING {
                    if let Some(tx) = net.tx(publisher) {
                        for _ in 0..room {
                            tmpl.push(tx, sent, 0, None);
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
                let role = roles.get(id).copied().unwrap_or(u32::MAX) as usize;
                match (trackers.get_mut(role), read_u64(payload, 0)) {
                    (Some(t), Some(seq)) => {
                        delivered += 1;
                        t.see(seq, &mut counts);
                    }
                    _ => foreign += 1,
                }
            }
        })?;
        if delivered != before {
            flow.progressed(Instant::now());
        }
    }
    let cost = flow.cost();
    let min_sub = trackers.iter().map(|t| t.next).min().unwrap_or(0);
    let mut j = header(o, "fanout");
    cost_fields(&mut j, &cost, delivered);
    loss_fields(&mut j, sent * subs64, delivered);
    j.int("sent", sent)
        .num(
            "publishes_per_sec",
            if cost.secs > 0.0 {
                sent as f64 / cost.secs
            } else {
                f64::NAN
            },
        )
        .int("subscribers", subs64)
        .int("window", window)
        .int("payload", o.payload as u64)
        .int("slowest_sub_seq", min_sub)
        .int("stalls", flow.stalls)
        .num("max_gap_ms", flow.max_gap.as_secs_f64() * 1e3)
        .int("dup_or_reordered", counts.dup_or_reordered)
        .int("foreign", foreign);
    j.int("stale_retained", stale);
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

/// 1 publisher → 1 subscriber at QoS 1, at most `inflight` unacknowledged
/// publishes from the publisher.
pub fn qos1(o: &Opts) -> Result<String, String> {
    let inflight = o.inflight.max(1);
    let window = o.window.unwrap_or(1000).max(inflight);
    let count = o.count.unwrap_or(u64::MAX);
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    net.persistent = o.persistent;
    let specs: Vec<Spec> = vec![
        (client_id("sub", 0), Some(("bench/qos1".into(), 1))),
        (client_id("pub", 0), None),
    ];
    let ids = establish_all(&mut net, &specs, o)?;
    let (Some(&sub), Some(&publisher)) = (ids.first(), ids.get(1)) else {
        return Err("no clients".into());
    };
    let tmpl = Template::new(b"bench/qos1", o.payload, 1, 0, o.v5);
    let mut tracker = SeqTracker::default();
    let mut counts = SeqCounts::default();
    let (mut sent, mut acked, mut received, mut written_off) = (0u64, 0u64, 0u64, 0u64);
    let (mut dups, mut wrong_qos) = (0u64, 0u64);
    let mut stale = 0u64;
    let mut flow = Flow::start(o);
    loop {
        let now = Instant::now();
        let outstanding = sent.saturating_sub(received + counts.lost + written_off);
        let unacked = sent.saturating_sub(acked);
        let full = unacked >= inflight || outstanding >= window;
        match flow.step(now, sent >= count, outstanding.max(unacked), full) {
            Step::Done => break,
            Step::Drain => {}
            Step::Stall => {
                written_off += outstanding;
                // Unacknowledged publishes will never be acknowledged now.
                acked = sent;
            }
            Step::Send => {
                let room = inflight
                    .saturating_sub(unacked)
                    .min(window.saturating_sub(outstanding))
                    .min(count - sent);
                if room > 0 {
                    if let Some(tx) = net.tx(publisher) {
                        for _ in 0..room {
                            // Ids 1..=65535; with 64 in flight they never collide.
                            let pid = (sent % 65_535) as u16 + 1;
                            tmpl.push(tx, sent, pid, None);
                            sent += 1;
                        }
                    }
                }
            }
        }
        net.flush();
        let before = (received, acked);
        poll(&mut net, POLL_TICK, &mut |id, p| match p {
            Packet::PubAck { .. } if id == publisher => acked += 1,
            Packet::Publish { retain: true, .. } => stale += 1,
            Packet::Publish {
                payload, dup, qos, ..
            } if id == sub => {
                received += 1;
                if *dup {
                    dups += 1;
                }
                if *qos != 1 {
                    wrong_qos += 1;
                }
                if let Some(seq) = read_u64(payload, 0) {
                    tracker.see(seq, &mut counts);
                }
            }
            _ => {}
        })?;
        if (received, acked) != before {
            flow.progressed(Instant::now());
        }
    }
    let cost = flow.cost();
    let mut j = header(o, "qos1");
    cost_fields(&mut j, &cost, received);
    loss_fields(&mut j, sent, received);
    j.int("sent", sent)
        .int("acked", acked.min(sent))
        .int("inflight", inflight)
        .int("window", window)
        .int("payload", o.payload as u64)
        .int("stalls", flow.stalls)
        .num("max_gap_ms", flow.max_gap.as_secs_f64() * 1e3)
        .int("dup_flag", dups)
        .int("dup_or_reordered", counts.dup_or_reordered)
        .int("wrong_qos", wrong_qos);
    j.int("stale_retained", stale);
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

/// Value at quantile `q` of sorted samples (nearest rank).
pub(crate) fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Publisher at a fixed rate, subscriber on the same topic; end-to-end
/// latency percentiles.
pub fn latency(o: &Opts) -> Result<String, String> {
    let rate = o.rate.max(1);
    let total = o
        .count
        .unwrap_or(u64::MAX)
        .min((rate as f64 * o.duration.as_secs_f64()).ceil() as u64)
        .max(1);
    let qos = o.qos.min(1);
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    let specs: Vec<Spec> = vec![
        (client_id("sub", 0), Some(("bench/latency".into(), qos))),
        (client_id("pub", 0), None),
    ];
    let ids = establish_all(&mut net, &specs, o)?;
    let (Some(&sub), Some(&publisher)) = (ids.first(), ids.get(1)) else {
        return Err("no clients".into());
    };
    let tmpl = Template::new(b"bench/latency", o.payload.max(STAMP_LEN), qos, 0, o.v5);
    let mut samples: Vec<u64> =
        Vec::with_capacity(usize::try_from(total).unwrap_or(0).min(1 << 24));
    let mut tracker = SeqTracker::default();
    let mut counts = SeqCounts::default();
    let mut sent = 0u64;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut stale = 0u64;
    let meter = Meter::start(o.broker_pid);
    let epoch = meter.t0;
    let mut last_progress = epoch;
    let mut last_delivery = epoch;
    let hard_end = epoch + o.duration + drain_max(o);
    loop {
        let now = Instant::now();
        let mut due = 0u64;
        while sent + due < total && epoch + interval.mul_f64((sent + due) as f64) <= now {
            due += 1;
        }
        if due > 0 {
            if let Some(tx) = net.tx(publisher) {
                for _ in 0..due {
                    let ts = Instant::now().duration_since(epoch).as_nanos() as u64;
                    let pid = (sent % 65_535) as u16 + 1;
                    tmpl.push(tx, sent, pid, Some(ts));
                    sent += 1;
                }
            }
            net.flush();
        }
        let got = samples.len() as u64 + counts.lost;
        if sent >= total
            && (got >= total || now.duration_since(last_progress) >= o.drain || now >= hard_end)
        {
            break;
        }
        if now >= hard_end {
            break;
        }
        let next_send = epoch + interval.mul_f64(sent as f64);
        let wait = if sent < total {
            next_send.saturating_duration_since(Instant::now())
        } else {
            POLL_TICK
        };
        let before = samples.len();
        poll(&mut net, wait.min(POLL_TICK), &mut |id, p| {
            if is_stale(p) {
                stale += 1;
                return;
            }
            if let Packet::Publish { payload, .. } = p {
                if id != sub {
                    return;
                }
                let now_ns = Instant::now().duration_since(epoch).as_nanos() as u64;
                if let (Some(seq), Some(ts)) = (read_u64(payload, 0), read_u64(payload, 12)) {
                    tracker.see(seq, &mut counts);
                    samples.push(now_ns.saturating_sub(ts));
                }
            }
        })?;
        if samples.len() != before {
            last_progress = Instant::now();
            last_delivery = last_progress;
        }
    }
    let cost = meter.stop(last_delivery);
    let received = samples.len() as u64;
    let mean = if samples.is_empty() {
        f64::NAN
    } else {
        samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64 / 1000.0
    };
    samples.sort_unstable();
    let us = |q: f64| quantile(&samples, q).map(|ns| ns as f64 / 1000.0);
    let mut j = header(o, "latency");
    cost_fields(&mut j, &cost, received);
    loss_fields(&mut j, sent, received);
    j.int("sent", sent)
        .int("rate", rate)
        .int("qos", u64::from(qos))
        .opt_num("p50_us", us(0.5))
        .opt_num("p90_us", us(0.9))
        .opt_num("p99_us", us(0.99))
        .opt_num("p999_us", us(0.999))
        .opt_num("max_us", samples.last().map(|&ns| ns as f64 / 1000.0))
        .num("mean_us", mean)
        .int("dup_or_reordered", counts.dup_or_reordered);
    j.int("stale_retained", stale);
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

/// N idle connections with one subscription each; broker RSS per connection.
pub fn conns(o: &Opts) -> Result<String, String> {
    let asked = o.conns.max(1);
    // Spare descriptors for stdio, the poll instance and friends.
    const SPARE: u64 = 64;
    let limit = procfs::raise_nofile(asked as u64 + SPARE);
    let mut n = asked;
    let mut note = None;
    if let Some(limit) = limit {
        if limit < asked as u64 + SPARE {
            n = usize::try_from(limit.saturating_sub(SPARE))
                .unwrap_or(0)
                .max(1);
            note = Some(format!(
                "RLIMIT_NOFILE soft limit {limit} (hard limit reached): lowered from {asked} to {n}"
            ));
        }
    }
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    let rss0 = o.broker_pid.and_then(procfs::rss_bytes);
    let meter = Meter::start(o.broker_pid);
    let specs: Vec<Spec> = (0..n)
        .map(|i| (client_id("idle", i), Some((format!("bench/conns/{i}"), 0))))
        .collect();
    let deadline = Instant::now() + o.timeout;
    let setup = net
        .establish(&specs, o.concurrency, deadline, &mut |_, _| {})
        .map_err(io_err)?;
    let connect_cost = meter.stop(Instant::now());
    // Let the broker settle (deferred frees, buffers shrinking) before reading RSS.
    let hold_until = Instant::now() + o.hold;
    while Instant::now() < hold_until {
        poll(
            &mut net,
            POLL_TICK.max(Duration::from_millis(20)),
            &mut |_, _| {},
        )?;
    }
    let rss1 = o.broker_pid.and_then(procfs::rss_bytes);
    let ready = net.ready_count() as u64;
    let mut j = header(o, "conns");
    j.int("conns_requested", asked as u64)
        .int("conns", n as u64)
        .int("connected", ready)
        .int("failed", setup.failed as u64)
        .num("connect_secs", setup.secs)
        .num(
            "conns_per_sec",
            if setup.secs > 0.0 {
                (n - setup.failed) as f64 / setup.secs
            } else {
                f64::NAN
            },
        )
        .opt_num("broker_cpu_secs", connect_cost.broker_cpu)
        .opt_num("bench_cpu_secs", connect_cost.bench_cpu)
        .opt_num("rss_before", rss0.map(|v| v as f64))
        .opt_num("rss_after", rss1.map(|v| v as f64))
        .opt_num(
            "bytes_per_conn",
            rss0.zip(rss1)
                .filter(|_| ready > 0)
                .map(|(a, b)| (b as f64 - a as f64) / ready as f64),
        );
    if let Some(note) = note {
        j.str("note", &note);
    }
    let still_open = (0..net.len())
        .filter(|&i| net.state(i) == State::Ready)
        .count();
    j.int("open_at_end", still_open as u64);
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

/// Stores `count` retained messages, then times a `#` subscriber receiving
/// them all; RSS per retained message.
pub fn retained(o: &Opts) -> Result<String, String> {
    let count = o.count.unwrap_or(100_000).max(1);
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    let ids = establish_all(&mut net, &[(client_id("pub", 0), None)], o)?;
    let publisher = *ids.first().ok_or("no clients")?;
    let rss0 = o.broker_pid.and_then(procfs::rss_bytes);
    let mut topic = Vec::with_capacity(64);
    let mut payload = Vec::new();
    fill_payload(&mut payload, o.payload, 0);
    let deadline = Instant::now() + o.timeout;
    let store = Meter::start(o.broker_pid);
    let mut next = 0u64;
    let mut pinged = false;
    let mut stored = false;
    while !stored {
        if Instant::now() >= deadline {
            return Err(format!(
                "retained: storing {count} messages did not finish within {:?} (queued {next})",
                o.timeout
            ));
        }
        if net.state(publisher) == State::Closed {
            return Err(format!(
                "retained: publisher connection closed after {next} messages ({})",
                net.stats.first_error.as_deref().unwrap_or("?")
            ));
        }
        if net.pending(publisher) < MAX_PENDING {
            if let Some(tx) = net.tx(publisher) {
                while next < count && tx.len() < 2 * MAX_PENDING {
                    mqtt::topic_with_numbers(&mut topic, b"bench/retained/", &[next]);
                    let lay = mqtt::publish(tx, &topic, &payload, 0, 0, true, o.v5);
                    let start = tx.len() - lay.len;
                    patch(tx, start + lay.payload_at, &next.to_be_bytes());
                    next += 1;
                }
                if next >= count && !pinged {
                    // The broker handles one connection's packets in order,
                    // so PINGRESP means every PUBLISH before it is stored.
                    mqtt::pingreq(tx);
                    pinged = true;
                }
            }
        }
        net.flush();
        poll(&mut net, POLL_TICK, &mut |id, p| {
            if id == publisher && matches!(p, Packet::PingResp) && pinged {
                stored = true;
            }
        })?;
    }
    let store_cost = store.stop(Instant::now());
    let rss1 = o.broker_pid.and_then(procfs::rss_bytes);

    let meter = Meter::start(o.broker_pid);
    let (mut received, mut with_retain, mut foreign) = (0u64, 0u64, 0u64);
    let mut seen = vec![false; usize::try_from(count).unwrap_or(0)];
    let mut dups = 0u64;
    let sub = net
        .connect(&client_id("sub", 0), Some(("bench/retained/#".into(), 0)))
        .map_err(io_err)?;
    let mut last_progress = meter.t0;
    let mut last_delivery = meter.t0;
    let deliver_deadline = meter.t0 + o.timeout;
    loop {
        let now = Instant::now();
        if received >= count
            || now >= deliver_deadline
            || net.state(sub) == State::Closed
            || (net.state(sub) == State::Ready && now.duration_since(last_progress) >= o.drain * 2)
        {
            break;
        }
        net.flush();
        let before = received;
        poll(&mut net, POLL_TICK, &mut |id, p| {
            if let Packet::Publish {
                payload, retain, ..
            } = p
            {
                if id != sub {
                    return;
                }
                received += 1;
                if *retain {
                    with_retain += 1;
                }
                match read_u64(payload, 0).and_then(|i| seen.get_mut(usize::try_from(i).ok()?)) {
                    Some(s) if *s => dups += 1,
                    Some(s) => *s = true,
                    None => foreign += 1,
                }
            }
        })?;
        let now = Instant::now();
        if received != before || net.state(sub) != State::Ready {
            last_progress = now;
        }
        if received != before {
            last_delivery = now;
        }
    }
    let cost = meter.stop(last_delivery);
    let rss2 = o.broker_pid.and_then(procfs::rss_bytes);
    let distinct = seen.iter().filter(|&&s| s).count() as u64;
    let mut j = header(o, "retained");
    cost_fields(&mut j, &cost, received);
    loss_fields(&mut j, count, distinct);
    j.int("retained", count)
        .int("payload", o.payload as u64)
        .num("store_secs", store_cost.secs)
        .num(
            "store_msgs_per_sec",
            if store_cost.secs > 0.0 {
                count as f64 / store_cost.secs
            } else {
                f64::NAN
            },
        )
        .opt_num("store_broker_cpu_secs", store_cost.broker_cpu)
        .int("with_retain_flag", with_retain)
        .int("duplicates", dups)
        .int("foreign", foreign)
        .opt_num("rss_before", rss0.map(|v| v as f64))
        .opt_num("rss_stored", rss1.map(|v| v as f64))
        .opt_num("rss_after_delivery", rss2.map(|v| v as f64))
        .opt_num(
            "bytes_per_msg",
            rss0.zip(rss1)
                .map(|(a, b)| (b as f64 - a as f64) / count as f64),
        );
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

/// The four wildcard families; each publish to `w/<a>/<b>` matches exactly
/// `w/<a>/+`, `w/<a>/#`, `w/+/<b>` and `+/+/<b>`.
const FAMILIES: usize = 4;

fn wildcard_filter(family: usize, j: usize) -> String {
    match family {
        0 => format!("w/{j}/+"),
        1 => format!("w/{j}/#"),
        2 => format!("w/+/{j}"),
        _ => format!("+/+/{j}"),
    }
}

/// `(a, b)` of the `k`-th publish: `a` walks every value, `b` is spread.
fn wildcard_target(k: u64, g: u64) -> (u64, u64) {
    (k % g, (k.wrapping_mul(7919).wrapping_add(13)) % g)
}

/// N subscribers with distinct `+`/`#` filters, one publisher; routed
/// publishes per second, and a check that each subscriber got exactly its
/// matches.
pub fn wildcard(o: &Opts) -> Result<String, String> {
    let asked = o.subs.unwrap_or(10_000).max(FAMILIES);
    let g = asked / FAMILIES;
    let subs = g * FAMILIES;
    let window = o.window.unwrap_or(500).max(1);
    let count = o.count.unwrap_or(u64::MAX);
    let limit = procfs::raise_nofile(subs as u64 + 64);
    if let Some(limit) = limit {
        if limit < subs as u64 + 64 {
            return Err(format!(
                "wildcard: RLIMIT_NOFILE {limit} is too low for {subs} subscribers; use --subs"
            ));
        }
    }
    let mut net = Net::new(o.addr, o.v5).map_err(io_err)?;
    let mut specs: Vec<Spec> = Vec::with_capacity(subs + 1);
    for family in 0..FAMILIES {
        for jx in 0..g {
            specs.push((
                client_id("wsub", family * g + jx),
                Some((wildcard_filter(family, jx), 0)),
            ));
        }
    }
    specs.push((client_id("pub", 0), None));
    let ids = establish_all(&mut net, &specs, o)?;
    let (&publisher, sub_ids) = ids.split_last().ok_or("no clients")?;
    let roles = role_map(&net, sub_ids);
    let mut expected = vec![0u32; subs];
    let mut got = vec![0u32; subs];
    let g64 = g as u64;
    let fam = FAMILIES as u64;
    let mut topic = Vec::with_capacity(32);
    let mut payload = Vec::new();
    fill_payload(&mut payload, o.payload, 0);
    let (mut sent, mut delivered, mut written_off, mut foreign) = (0u64, 0u64, 0u64, 0u64);
    let mut stale = 0u64;
    let mut flow = Flow::start(o);
    loop {
        let now = Instant::now();
        let outstanding = sent.saturating_sub((delivered + written_off) / fam);
        match flow.step(now, sent >= count, outstanding, outstanding >= window) {
            Step::Done => break,
            Step::Drain => {}
            Step::Stall => written_off += (sent * fam).saturating_sub(delivered + written_off),
            Step::Send => {
                let room = window.saturating_sub(outstanding).min(count - sent);
                if room > 0 && net.pending(publisher) <= MAX_PENDING {
                    if let Some(tx) = net.tx(publisher) {
                        for _ in 0..room {
                            let (a, b) = wildcard_target(sent, g64);
                            mqtt::topic_with_numbers(&mut topic, b"w/", &[a, b]);
                            let lay = mqtt::publish(tx, &topic, &payload, 0, 0, false, o.v5);
                            let start = tx.len() - lay.len;
                            patch(tx, start + lay.payload_at, &sent.to_be_bytes());
                            let (a, b) = (a as usize, b as usize);
                            for s in [a, g + a, 2 * g + b, 3 * g + b] {
                                if let Some(e) = expected.get_mut(s) {
                                    *e += 1;
                                }
                            }
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
            if let Packet::Publish { .. } = p {
                let role = roles.get(id).copied().unwrap_or(u32::MAX) as usize;
                match got.get_mut(role) {
                    Some(c) => {
                        *c += 1;
                        delivered += 1;
                    }
                    None => foreign += 1,
                }
            }
        })?;
        if delivered != before {
            flow.progressed(Instant::now());
        }
    }
    let cost = flow.cost();
    let (mut missing, mut extra) = (0u64, 0u64);
    for (e, g) in expected.iter().zip(got.iter()) {
        missing += u64::from(e.saturating_sub(*g));
        extra += u64::from(g.saturating_sub(*e));
    }
    let routed = delivered / fam;
    let mut j = header(o, "wildcard");
    cost_fields(&mut j, &cost, routed);
    loss_fields(&mut j, sent * fam, delivered);
    j.int("sent", sent)
        .int("deliveries", delivered)
        .num(
            "deliveries_per_sec",
            if cost.secs > 0.0 {
                delivered as f64 / cost.secs
            } else {
                f64::NAN
            },
        )
        .int("subscribers", subs as u64)
        .int("matches_per_publish", fam)
        .int("window", window)
        .int("missing", missing)
        .int("extra", extra)
        .int("stalls", flow.stalls)
        .num("max_gap_ms", flow.max_gap.as_secs_f64() * 1e3)
        .int("foreign", foreign);
    j.int("stale_retained", stale);
    net.disconnect_all();
    Ok(footer(&mut j, o, &net.stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_counts_gaps_and_steps_back() {
        let mut t = SeqTracker::default();
        let mut c = SeqCounts::default();
        for s in [0, 1, 2, 5, 6, 4, 7] {
            t.see(s, &mut c);
        }
        assert_eq!(c.lost, 2);
        assert_eq!(c.dup_or_reordered, 1);
        assert_eq!(t.next, 8);
    }

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), Some(500));
        assert_eq!(quantile(&v, 0.99), Some(990));
        assert_eq!(quantile(&v, 0.999), Some(999));
        assert_eq!(quantile(&v, 1.0), Some(1000));
        assert_eq!(quantile(&[7], 0.999), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn template_patches_seq_pid_and_stamp() {
        let t = Template::new(b"a/b", 32, 1, 9, false);
        let mut tx = vec![0xAA];
        t.push(&mut tx, 0x0102, 0x0304, Some(0x0506));
        let Some(body) = tx.get(1..) else {
            panic!("nothing pushed");
        };
        match mqtt::parse(body, false) {
            mqtt::Parsed::Packet(
                Packet::Publish {
                    packet_id, payload, ..
                },
                used,
            ) => {
                assert_eq!(used, body.len());
                assert_eq!(packet_id, 0x0304);
                assert_eq!(read_u64(payload, 0), Some(0x0102));
                assert_eq!(read_u32(payload, 8), Some(9));
                assert_eq!(read_u64(payload, 12), Some(0x0506));
                assert_eq!(payload.len(), 32);
            }
            other => panic!("{other:?}"),
        }
        // Payloads shorter than the stamp are sent as they are, unpatched.
        let short = Template::new(b"a", 4, 0, 0, true);
        let mut tx = Vec::new();
        short.push(&mut tx, u64::MAX, 0, Some(1));
        assert_eq!(tx.len(), short.bytes.len());
    }

    /// Naive MQTT filter matching, to check the wildcard design's claim.
    fn matches(filter: &str, topic: &str) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        for (i, level) in f.iter().enumerate() {
            if *level == "#" {
                return true;
            }
            match t.get(i) {
                Some(tl) if *level == "+" || level == tl => {}
                _ => return false,
            }
        }
        f.len() == t.len()
    }

    #[test]
    fn every_wildcard_publish_matches_exactly_four_known_filters() {
        let g = 13usize;
        let filters: Vec<String> = (0..FAMILIES)
            .flat_map(|f| (0..g).map(move |j| wildcard_filter(f, j)))
            .collect();
        for k in 0..200u64 {
            let (a, b) = wildcard_target(k, g as u64);
            let topic = format!("w/{a}/{b}");
            let hits: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| matches(f, &topic))
                .map(|(i, _)| i)
                .collect();
            let (a, b) = (a as usize, b as usize);
            let mut want = vec![a, g + a, 2 * g + b, 3 * g + b];
            want.sort_unstable();
            assert_eq!(hits, want, "topic {topic}");
        }
    }
}
