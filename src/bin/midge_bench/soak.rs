//! `soak`: thousands of clients churning for minutes (connect, subscribe,
//! publish at QoS 0/1/2, unsubscribe, disconnect cleanly or abruptly, come
//! back) from a seeded RNG, with an exact check that no acknowledged message
//! is lost and samples of the broker's RSS and open descriptors.
//!
//! Owns: its own small client engine (the shared `net` engine knows neither
//! reconnection nor QoS 2), the churn schedule and the bookkeeping. It must
//! not use the midge library, and must not touch `net` or `scenarios`.
//!
//! The loss check has no false positives by construction:
//! - `--stable` dedicated subscribers (persistent sessions, clean session 0,
//!   `soak/s/#` at QoS 1 or 2) subscribe before anybody publishes and never
//!   unsubscribe; they disconnect (cleanly or not) and reconnect within
//!   300 ms.
//! - Only QoS 1/2 messages go to `soak/s/...`, at most `--stable-rate` per
//!   second (a token bucket), so a stable subscriber's queue can only reach
//!   `max_queued_messages` (1000) after a delivery gap of 1000 / rate
//!   seconds (20 s at the default 50/s): the report gives the longest gap,
//!   so a loss can be told from a configured queue limit doing its job.
//! - A message is *acknowledged* when its publisher got PUBACK (QoS 1) or
//!   PUBCOMP (QoS 2). Every acknowledged message must reach every stable
//!   subscriber; the ones that did not by the end of the drain are "lost".
//! - A publisher never reuses a packet identifier under its client id in a
//!   run, so a QoS 2 exchange abandoned by an abrupt drop can never make the
//!   broker take a new message for a duplicate of the old one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::json::JsonLine;
use crate::mqtt::{self, Packet, Parsed};
use crate::procfs::{self, Meter};
use crate::scenarios::Opts;

const USAGE: &str = "\
usage: midge_bench soak --port N [--conns 10000] [--duration 600] [soak options] [common options]

soak options:
  --seed N           RNG seed (default 1)
  --stable N         dedicated persistent subscribers checked for loss (default 20)
  --online S         mean seconds a crowd client stays connected (default 30)
  --offline S        mean seconds a crowd client stays away (default 3)
  --pub-every S      mean seconds between a crowd client's publishes (default 20)
  --sub-frac F       share of crowd clients that subscribe (default 0.3)
  --stable-rate R    QoS 1/2 messages per second to the checked topics (default 50)
  --max-connecting N connection handshakes in flight at most (default 256)
  --persistent-frac F  share of crowd clients with persistent sessions (default 0.3)
  --abrupt-frac F    share of disconnects without DISCONNECT (default 0.5)
  --groups N         topics soak/m/0..N-1 and soak/s/0..N-1 (default 64)
  --sample S         RSS/fd sampling period (default 10)
";

/// Soak-only settings (the common ones are in `Opts`).
#[derive(Debug, Clone)]
struct Cfg {
    seed: u64,
    stable: usize,
    online: f64,
    offline: f64,
    pub_every: f64,
    sub_frac: f64,
    persistent_frac: f64,
    abrupt_frac: f64,
    groups: u64,
    sample: Duration,
    stable_rate: f64,
    max_connecting: usize,
}

type ParseOpts = fn(Vec<String>) -> Result<Opts, String>;

/// `midge_bench soak ...`: splits off the soak options, parses the rest as
/// the common options (with a 600 s default duration), runs, prints.
pub fn cli(args: Vec<String>, parse: ParseOpts) -> Result<(), (String, Option<String>)> {
    let mut cfg = Cfg {
        seed: 1,
        stable: 20,
        online: 30.0,
        offline: 3.0,
        pub_every: 20.0,
        sub_frac: 0.3,
        persistent_frac: 0.3,
        abrupt_frac: 0.5,
        groups: 64,
        sample: Duration::from_secs(10),
        stable_rate: 50.0,
        max_connecting: 256,
    };
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    let mut duration_given = false;
    let bad = |e: String| (format!("{e}\n\n{USAGE}"), None);
    while let Some(flag) = it.next() {
        let mut num = |f: &str| -> Result<f64, (String, Option<String>)> {
            let v = it.next().ok_or_else(|| bad(format!("{f} needs a value")))?;
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad(format!("{f}: '{v}' is not a valid number")))
        };
        match flag.as_str() {
            "--seed" => cfg.seed = num(&flag)? as u64,
            "--stable" => cfg.stable = num(&flag)? as usize,
            "--online" => cfg.online = num(&flag)?.max(0.1),
            "--offline" => cfg.offline = num(&flag)?,
            "--pub-every" => cfg.pub_every = num(&flag)?.max(0.01),
            "--sub-frac" => cfg.sub_frac = num(&flag)?.min(1.0),
            "--persistent-frac" => cfg.persistent_frac = num(&flag)?.min(1.0),
            "--abrupt-frac" => cfg.abrupt_frac = num(&flag)?.min(1.0),
            "--stable-rate" => cfg.stable_rate = num(&flag)?,
            "--max-connecting" => cfg.max_connecting = (num(&flag)? as usize).max(1),
            "--groups" => cfg.groups = (num(&flag)? as u64).max(1),
            "--sample" => cfg.sample = Duration::from_secs_f64(num(&flag)?.max(0.1)),
            "-h" | "--help" => return Err((USAGE.to_string(), None)),
            _ => {
                duration_given |= flag == "--duration";
                rest.push(flag);
            }
        }
    }
    if !duration_given {
        rest.push("--duration".into());
        rest.push("600".into());
    }
    let o = parse(rest).map_err(bad)?;
    if cfg.stable == 0 {
        return Err(bad("--stable: at least 1".into()));
    }
    crate::report_result("soak", &o, run(&o, &cfg))
}

/// splitmix64: small, seedable, good enough for a schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// Exponentially distributed with the given mean, capped at 10 means.
    fn exp(&mut self, mean: f64) -> Duration {
        let x = -(1.0 - self.unit()).ln() * mean;
        Duration::from_secs_f64(x.clamp(0.0, mean * 10.0))
    }
}

/// A growable bit set indexed by message sequence number.
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    /// Sets bit `i`; returns whether it was already set.
    fn set(&mut self, i: u64) -> bool {
        let w = (i / 64) as usize;
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        let mask = 1u64 << (i % 64);
        self.0.get_mut(w).is_some_and(|word| {
            let was = *word & mask != 0;
            *word |= mask;
            was
        })
    }
    fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TCP connect in progress.
    Connecting,
    WaitConnack,
    Live,
    /// DISCONNECT sent and write side shut; waiting for the broker's EOF.
    Closing,
}

/// One live socket of a slot.
struct Conn {
    stream: TcpStream,
    phase: Phase,
    tx: Vec<u8>,
    tx_pos: usize,
    rx: Vec<u8>,
    started: Instant,
    /// Outstanding QoS 1/2 publishes: (packet id, sequence number).
    out: Vec<(u16, u64)>,
    /// Group of a SUBSCRIBE not yet acknowledged.
    pending_group: Option<u64>,
    /// Crowd subscriber: when its current subscription went live, and the
    /// last delivery since (for the starvation check).
    sub_since: Option<Instant>,
    last_msg: Option<Instant>,
    max_gap: Duration,
}

/// One client id of the pool, connected or not.
struct Slot {
    id: String,
    stable: bool,
    persistent: bool,
    /// Subscription QoS of a stable subscriber.
    sub_qos: u8,
    conn: Option<Conn>,
    /// The broker holds a session for this id (persistent and CONNACKed once).
    has_session: bool,
    /// A crowd client that keeps one subscription (`--sub-frac` of them).
    subscriber: bool,
    /// Crowd groups the broker's session subscribes this id to (SUBACKed).
    groups: Vec<u64>,
    next_pid: u16,
    leave_at: Instant,
    /// Only the newest timer of a slot counts.
    timer_gen: u32,
    // Stable subscribers only.
    subscribed: bool,
    got: Bits,
    last_msg: Option<Instant>,
    max_gap: Duration,
    received: u64,
    dups: u64,
}

#[derive(Default)]
struct Counts {
    connect_attempts: u64,
    connacks: u64,
    connect_errors: u64,
    connack_timeouts: u64,
    refused: u64,
    closed_by_broker: u64,
    clean_disconnects: u64,
    abrupt_disconnects: u64,
    sessions_lost_stable: u64,
    sessions_lost_crowd: u64,
    published: [u64; 3],
    acked: [u64; 3],
    unacked_dropped: u64,
    crowd_received: u64,
    stable_received: u64,
    subscribes: u64,
    unsubscribes: u64,
    suback_failures: u64,
    malformed: u64,
    crowd_gap_over: u64,
    crowd_max_gap: Duration,
    connack_lat_us: Vec<u64>,
    first_error: Option<String>,
}

const TOPIC_PREFIX: &str = "soak/m/";
const TRACKED_PREFIX: &str = "soak/s/";
/// A CONNACK slower than this is a starved client.
const CONNACK_TIMEOUT: Duration = Duration::from_secs(30);
/// A crowd subscriber without a delivery for this long is starved.
const CROWD_GAP_BOUND: Duration = Duration::from_secs(10);
/// Crowd connections are started at this rate at first.
const RAMP_PER_SEC: f64 = 500.0;
/// Packet identifiers a client id may use in one run (never reused).
const PID_LIMIT: u16 = 65_000;
const READ_CHUNK: usize = 64 * 1024;

struct Soak<'a> {
    o: &'a Opts,
    cfg: &'a Cfg,
    poll: Poll,
    slots: Vec<Slot>,
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    dirty: Vec<usize>,
    rng: Rng,
    c: Counts,
    /// Sequence numbers of acknowledged QoS 1/2 messages.
    acked: Bits,
    /// Sequence numbers sent to the checked `soak/s/...` topics.
    tracked: Bits,
    tracked_published: u64,
    tracked_acked: u64,
    /// Token bucket for `--stable-rate`.
    bucket: f64,
    bucket_at: Instant,
    /// QoS of every sequence number published (for the report of lost ones).
    seq_qos: Vec<u8>,
    seq: u64,
    connecting: usize,
    live: usize,
    churn: bool,
    publishing: bool,
    payload: Vec<u8>,
    topic: Vec<u8>,
    rbuf: Vec<u8>,
    last_progress: Instant,
    /// Crowd delivery gaps count from here on (the end of the ramp, when
    /// every topic has its full publish rate).
    gap_from: Instant,
}

fn io_err(e: io::Error) -> String {
    format!("I/O error: {e}")
}

fn ack(buf: &mut Vec<u8>, kind: u8, pid: u16) {
    buf.push(kind);
    buf.push(2);
    buf.extend_from_slice(&pid.to_be_bytes());
}

fn unsubscribe(buf: &mut Vec<u8>, pid: u16, filter: &str) {
    let f = filter.as_bytes();
    buf.push(0xA2);
    mqtt::put_remaining_len(buf, 2 + 2 + f.len());
    buf.extend_from_slice(&pid.to_be_bytes());
    buf.extend_from_slice(&(f.len() as u16).to_be_bytes());
    buf.extend_from_slice(f);
}

/// Packet id of an acknowledgement packet (PUBACK..PUBCOMP, UNSUBACK).
fn ack_pid(pkt: &[u8]) -> Option<u16> {
    let mut i = 1;
    while pkt.get(i)? & 0x80 != 0 {
        i += 1;
    }
    let hi = *pkt.get(i + 1)?;
    let lo = *pkt.get(i + 2)?;
    Some(u16::from_be_bytes([hi, lo]))
}

impl<'a> Soak<'a> {
    fn arm(&mut self, idx: usize, at: Instant) {
        if let Some(s) = self.slots.get_mut(idx) {
            s.timer_gen = s.timer_gen.wrapping_add(1);
            self.timers.push(Reverse((at, idx, s.timer_gen)));
        }
    }

    fn mark_dirty(&mut self, idx: usize) {
        self.dirty.push(idx);
    }

    fn err(&mut self, why: String) {
        if self.c.first_error.is_none() {
            self.c.first_error = Some(why);
        }
    }

    fn start_connect(&mut self, idx: usize, now: Instant) {
        if self.connecting >= self.cfg.max_connecting {
            let at = now + Duration::from_millis(5);
            self.arm(idx, at);
            return;
        }
        self.c.connect_attempts += 1;
        let addr: SocketAddr = self.o.addr;
        let stream = TcpStream::connect(addr).and_then(|mut s| {
            s.set_nodelay(true)?;
            self.poll.registry().register(
                &mut s,
                Token(idx),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                self.c.connect_errors += 1;
                self.err(format!("connect: {e}"));
                let at = now + Duration::from_millis(100);
                self.arm(idx, at);
                return;
            }
        };
        let Some(s) = self.slots.get_mut(idx) else {
            let _ = self.poll.registry().deregister(&mut stream);
            return;
        };
        let mut tx = Vec::with_capacity(128);
        mqtt::connect(&mut tx, &s.id, 0, false, s.persistent);
        s.conn = Some(Conn {
            stream,
            phase: Phase::Connecting,
            tx,
            tx_pos: 0,
            rx: Vec::new(),
            started: now,
            out: Vec::new(),
            pending_group: None,
            sub_since: None,
            last_msg: None,
            max_gap: Duration::ZERO,
        });
        self.connecting += 1;
        self.arm(idx, now + CONNACK_TIMEOUT);
    }

    /// Forgets a slot's socket; `clean` says a DISCONNECT went out first.
    fn drop_conn(&mut self, idx: usize, now: Instant) {
        let Some(s) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(mut c) = s.conn.take() else {
            return;
        };
        match c.phase {
            Phase::Connecting | Phase::WaitConnack => {
                self.connecting = self.connecting.saturating_sub(1)
            }
            Phase::Live => self.live = self.live.saturating_sub(1),
            Phase::Closing => {}
        }
        self.c.unacked_dropped += c.out.len() as u64;
        self.gap_books(&mut c, now);
        let _ = self.poll.registry().deregister(&mut c.stream);
        // Dropping the stream closes it: a FIN, no DISCONNECT.
    }

    /// Closes the crowd-subscriber gap books of a connection at `now`.
    fn gap_books(&mut self, c: &mut Conn, now: Instant) {
        if let Some(since) = c.sub_since.take() {
            let last = c.last_msg.unwrap_or(since).max(self.gap_from);
            let gap = c.max_gap.max(now.saturating_duration_since(last));
            if gap > CROWD_GAP_BOUND {
                self.c.crowd_gap_over += 1;
            }
            self.c.crowd_max_gap = self.c.crowd_max_gap.max(gap);
        }
    }

    /// Goes offline: clean (DISCONNECT, then wait for the broker's EOF) or
    /// abrupt (close the socket), then schedules the comeback.
    fn leave(&mut self, idx: usize, now: Instant) {
        let abrupt = self.rng.chance(self.cfg.abrupt_frac);
        let (stable, unsub) = match self.slots.get(idx) {
            Some(s) => (
                s.stable,
                !s.stable && !s.groups.is_empty() && self.rng.chance(0.3),
            ),
            None => return,
        };
        if abrupt {
            self.c.abrupt_disconnects += 1;
            self.drop_conn(idx, now);
        } else {
            self.c.clean_disconnects += 1;
            let mut unsub_group = None;
            if let Some(s) = self.slots.get_mut(idx) {
                if unsub {
                    unsub_group = s.groups.pop();
                }
                if let Some(c) = s.conn.as_mut() {
                    if let Some(g) = unsub_group {
                        let pid = s.next_pid;
                        s.next_pid = s.next_pid.saturating_add(1);
                        unsubscribe(&mut c.tx, pid, &format!("soak/+/{g}"));
                    }
                    mqtt::disconnect(&mut c.tx);
                    c.phase = Phase::Closing;
                    self.c.unacked_dropped += c.out.len() as u64;
                    c.out.clear();
                }
            }
            if unsub_group.is_some() {
                self.c.unsubscribes += 1;
            }
            self.live = self.live.saturating_sub(1);
            self.mark_dirty(idx);
        }
        let back = if stable {
            Duration::from_millis(self.rng.below(300))
        } else {
            self.rng.exp(self.cfg.offline)
        };
        // The comeback timer also drops a clean close still waiting for EOF.
        self.arm(idx, now + back);
    }

    /// A slot's timer fired.
    fn on_timer(&mut self, idx: usize, now: Instant) {
        let (phase, stable, leave_at) = match self.slots.get(idx) {
            Some(s) => (s.conn.as_ref().map(|c| c.phase), s.stable, s.leave_at),
            None => return,
        };
        match phase {
            None => {
                // After the churn only the stable subscribers come back.
                if self.churn || stable {
                    self.start_connect(idx, now);
                }
            }
            Some(Phase::Connecting | Phase::WaitConnack) => {
                self.c.connack_timeouts += 1;
                self.err("CONNACK timeout".into());
                self.drop_conn(idx, now);
                self.arm(idx, now);
            }
            Some(Phase::Closing) => {
                self.drop_conn(idx, now);
                self.arm(idx, now);
            }
            Some(Phase::Live) => {
                if !self.churn {
                    return;
                }
                if now >= leave_at {
                    self.leave(idx, now);
                } else if stable {
                    self.arm(idx, leave_at);
                } else {
                    self.publish(idx, now);
                    let next = now + self.rng.exp(self.cfg.pub_every);
                    self.arm(idx, next.min(leave_at));
                }
            }
        }
    }

    fn publish(&mut self, idx: usize, now: Instant) {
        if !self.publishing {
            return;
        }
        let rate = self.cfg.stable_rate;
        let dt = now.saturating_duration_since(self.bucket_at).as_secs_f64();
        self.bucket = (self.bucket + dt * rate).min(rate.max(1.0));
        self.bucket_at = now;
        let mut qos = self.rng.below(3) as u8;
        let group = self.rng.below(self.cfg.groups);
        let Some(s) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(c) = s.conn.as_mut() else {
            return;
        };
        if qos > 0 && s.next_pid >= PID_LIMIT {
            qos = 0;
        }
        let seq = self.seq;
        self.seq += 1;
        self.seq_qos.push(qos);
        let len = self.payload.len();
        if let Some(p) = self.payload.get_mut(..8) {
            p.copy_from_slice(&seq.to_le_bytes());
        }
        if let Some(p) = self.payload.get_mut(8..9) {
            p.copy_from_slice(&[qos]);
        }
        let tracked = qos > 0 && self.bucket >= 1.0;
        if tracked {
            self.bucket -= 1.0;
            self.tracked.set(seq);
            self.tracked_published += 1;
        }
        let prefix = if tracked {
            TRACKED_PREFIX
        } else {
            TOPIC_PREFIX
        };
        mqtt::topic_with_numbers(&mut self.topic, prefix.as_bytes(), &[group]);
        let pid = if qos > 0 {
            let pid = s.next_pid;
            s.next_pid += 1;
            c.out.push((pid, seq));
            pid
        } else {
            0
        };
        mqtt::publish(
            &mut c.tx,
            &self.topic,
            self.payload.get(..len).unwrap_or_default(),
            qos,
            pid,
            false,
            false,
        );
        if let Some(n) = self.c.published.get_mut(usize::from(qos)) {
            *n += 1;
        }
        self.mark_dirty(idx);
    }

    fn on_connack(&mut self, idx: usize, code: u8, session_present: bool, now: Instant) {
        let Some(s) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(c) = s.conn.as_mut() else {
            return;
        };
        if c.phase != Phase::WaitConnack {
            return;
        }
        self.connecting = self.connecting.saturating_sub(1);
        if code != 0 {
            self.c.refused += 1;
            c.phase = Phase::Closing;
            self.err(format!("CONNACK code {code}"));
            self.arm(idx, now + Duration::from_millis(100));
            return;
        }
        self.c.connacks += 1;
        self.c
            .connack_lat_us
            .push(now.saturating_duration_since(c.started).as_micros() as u64);
        c.phase = Phase::Live;
        self.live += 1;
        if s.persistent && s.has_session && !session_present {
            if s.stable {
                self.c.sessions_lost_stable += 1;
                if self.c.first_error.is_none() {
                    self.c.first_error = Some(format!("{}: session lost", s.id));
                }
            } else {
                self.c.sessions_lost_crowd += 1;
            }
            if s.stable {
                s.subscribed = false;
            }
        }
        if !s.persistent || !session_present {
            s.groups.clear();
        }
        s.has_session = s.persistent;
        let stable = s.stable;
        if stable {
            if !s.subscribed {
                let pid = s.next_pid;
                s.next_pid += 1;
                mqtt::subscribe(&mut c.tx, pid, "soak/s/#", s.sub_qos, false);
                self.c.subscribes += 1;
            }
            s.last_msg.get_or_insert(now);
            let stay = self.rng.exp(self.cfg.online.min(20.0));
            s.leave_at = now + stay;
            let at = s.leave_at;
            self.arm(idx, at);
        } else {
            if !s.groups.is_empty() {
                c.sub_since = Some(now);
            }
            if s.subscriber && s.groups.is_empty() {
                // Both trees: soak/m/g and the checked soak/s/g.
                let g = self.rng.below(self.cfg.groups);
                let qos = self.rng.below(3) as u8;
                let pid = s.next_pid;
                s.next_pid = s.next_pid.saturating_add(1);
                mqtt::subscribe(&mut c.tx, pid, &format!("soak/+/{g}"), qos, false);
                c.pending_group = Some(g);
                self.c.subscribes += 1;
            }
            let stay = self.rng.exp(self.cfg.online);
            s.leave_at = now + stay;
            let first = now + self.rng.exp(self.cfg.pub_every);
            let at = first.min(s.leave_at);
            self.arm(idx, at);
        }
        self.mark_dirty(idx);
    }

    fn on_publish(&mut self, idx: usize, qos: u8, pid: u16, payload: &[u8], now: Instant) {
        let Some(s) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(c) = s.conn.as_mut() else {
            return;
        };
        match qos {
            1 => ack(&mut c.tx, 0x40, pid),
            2 => ack(&mut c.tx, 0x50, pid),
            _ => {}
        }
        let seq = payload
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        if s.stable {
            self.c.stable_received += 1;
            s.received += 1;
            if let Some(seq) = seq {
                if s.got.set(seq) {
                    s.dups += 1;
                }
            }
            if let Some(last) = s.last_msg {
                s.max_gap = s.max_gap.max(now.saturating_duration_since(last));
            }
            s.last_msg = Some(now);
            self.last_progress = now;
        } else {
            self.c.crowd_received += 1;
            if c.sub_since.is_none() {
                c.sub_since = Some(now);
            }
            if let Some(last) = c.last_msg.or(c.sub_since) {
                let last = last.max(self.gap_from);
                c.max_gap = c.max_gap.max(now.saturating_duration_since(last));
            }
            c.last_msg = Some(now);
        }
        if qos > 0 {
            self.mark_dirty(idx);
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the message is acknowledged.
    fn on_ack(&mut self, idx: usize, pid: u16, now: Instant) {
        let Some(c) = self.slots.get_mut(idx).and_then(|s| s.conn.as_mut()) else {
            return;
        };
        if let Some(pos) = c.out.iter().position(|&(p, _)| p == pid) {
            let (_, seq) = c.out.swap_remove(pos);
            self.acked.set(seq);
            if self.tracked.get(seq) {
                self.tracked_acked += 1;
            }
            let qos = self.seq_qos.get(seq as usize).copied().unwrap_or(0);
            if let Some(n) = self.c.acked.get_mut(usize::from(qos)) {
                *n += 1;
            }
            self.last_progress = now;
        }
    }

    fn handle_packet(&mut self, idx: usize, pkt: &[u8], now: Instant) -> Result<(), String> {
        let kind = pkt.first().copied().unwrap_or(0) >> 4;
        match kind {
            5 => {
                // PUBREC: release it.
                if let Some(pid) = ack_pid(pkt) {
                    if let Some(c) = self.slots.get_mut(idx).and_then(|s| s.conn.as_mut()) {
                        ack(&mut c.tx, 0x62, pid);
                        self.mark_dirty(idx);
                    }
                }
                return Ok(());
            }
            6 => {
                // PUBREL: complete it.
                if let Some(pid) = ack_pid(pkt) {
                    if let Some(c) = self.slots.get_mut(idx).and_then(|s| s.conn.as_mut()) {
                        ack(&mut c.tx, 0x70, pid);
                        self.mark_dirty(idx);
                    }
                }
                return Ok(());
            }
            7 => {
                if let Some(pid) = ack_pid(pkt) {
                    self.on_ack(idx, pid, now);
                }
                return Ok(());
            }
            _ => {}
        }
        match mqtt::parse(pkt, false) {
            Parsed::Packet(Packet::ConnAck { code }, _) => {
                let sp = pkt.get(2).is_some_and(|f| f & 1 == 1);
                self.on_connack(idx, code, sp, now);
            }
            Parsed::Packet(Packet::PubAck { packet_id }, _) => self.on_ack(idx, packet_id, now),
            Parsed::Packet(
                Packet::Publish {
                    qos,
                    packet_id,
                    payload,
                    ..
                },
                _,
            ) => self.on_publish(idx, qos, packet_id, payload, now),
            Parsed::Packet(Packet::SubAck { codes, .. }, _) => {
                if codes.iter().any(|&c| c >= 0x80) {
                    self.c.suback_failures += 1;
                }
                if let Some(s) = self.slots.get_mut(idx) {
                    if s.stable {
                        s.subscribed = true;
                    } else if let Some(c) = s.conn.as_mut() {
                        if let Some(g) = c.pending_group.take() {
                            s.groups.push(g);
                        }
                        c.sub_since.get_or_insert(now);
                    }
                }
            }
            Parsed::Packet(Packet::Disconnect { code }, _) => {
                return Err(format!("DISCONNECT {code:#x}"));
            }
            Parsed::Packet(..) => {}
            Parsed::Incomplete { .. } | Parsed::Malformed(_) => {
                self.c.malformed += 1;
                return Err("malformed packet from broker".into());
            }
        }
        Ok(())
    }

    fn on_readable(&mut self, idx: usize, now: Instant) {
        let mut failure: Option<String> = None;
        let mut eof = false;
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.clear();
        let Some(c) = self.slots.get_mut(idx).and_then(|s| s.conn.as_mut()) else {
            self.rbuf = buf;
            return;
        };
        buf.extend_from_slice(&c.rx);
        c.rx.clear();
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        let closing = c.phase == Phase::Closing;
        let mut off = 0;
        while failure.is_none() && off < buf.len() {
            let rest = buf.get(off..).unwrap_or_default();
            match mqtt::parse(rest, false) {
                Parsed::Packet(_, used) => {
                    let pkt = rest.get(..used).unwrap_or_default();
                    if !closing {
                        if let Err(e) = self.handle_packet(idx, pkt, now) {
                            failure = Some(e);
                        }
                    }
                    off += used;
                }
                Parsed::Incomplete { .. } => break,
                Parsed::Malformed(why) => {
                    self.c.malformed += 1;
                    failure = Some(format!("malformed: {why}"));
                }
            }
        }
        if let Some(c) = self.slots.get_mut(idx).and_then(|s| s.conn.as_mut()) {
            c.rx.extend_from_slice(buf.get(off..).unwrap_or_default());
        }
        self.rbuf = buf;
        if closing && (eof || failure.is_some()) {
            self.drop_conn(idx, now);
            return;
        }
        if eof || failure.is_some() {
            self.c.closed_by_broker += 1;
            let why = failure.unwrap_or_else(|| "connection closed by broker".into());
            self.err(why);
            self.drop_conn(idx, now);
            let back = now + Duration::from_millis(100 + self.rng.below(400));
            self.arm(idx, back);
        }
    }

    fn on_event(&mut self, idx: usize, readable: bool, writable: bool, now: Instant) {
        let Some(c) = self.slots.get_mut(idx).and_then(|s| s.conn.as_mut()) else {
            return;
        };
        if c.phase == Phase::Connecting {
            match c.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.c.connect_errors += 1;
                    self.err(format!("connect: {e}"));
                    self.drop_conn(idx, now);
                    self.arm(idx, now + Duration::from_millis(100));
                    return;
                }
            }
            match c.stream.peer_addr() {
                Ok(_) => c.phase = Phase::WaitConnack,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.c.connect_errors += 1;
                    self.err(format!("connect: {e}"));
                    self.drop_conn(idx, now);
                    self.arm(idx, now + Duration::from_millis(100));
                    return;
                }
            }
            self.mark_dirty(idx);
        }
        if readable {
            self.on_readable(idx, now);
        }
        if writable {
            self.mark_dirty(idx);
        }
    }

    fn flush(&mut self, now: Instant) {
        let dirty = std::mem::take(&mut self.dirty);
        for &idx in &dirty {
            let Some(c) = self.slots.get_mut(idx).and_then(|s| s.conn.as_mut()) else {
                continue;
            };
            if c.phase == Phase::Connecting {
                continue;
            }
            let mut failed = None;
            while c.tx_pos < c.tx.len() {
                match c.stream.write(c.tx.get(c.tx_pos..).unwrap_or_default()) {
                    Ok(0) => {
                        failed = Some("write returned 0".to_string());
                        break;
                    }
                    Ok(n) => c.tx_pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(format!("write: {e}"));
                        break;
                    }
                }
            }
            if c.tx_pos >= c.tx.len() {
                c.tx.clear();
                c.tx_pos = 0;
                if c.phase == Phase::Closing {
                    let _ = c.stream.shutdown(Shutdown::Write);
                }
            }
            if let Some(why) = failed {
                let closing = c.phase == Phase::Closing;
                if !closing {
                    self.c.closed_by_broker += 1;
                    self.err(why);
                }
                self.drop_conn(idx, now);
                if !closing {
                    self.arm(idx, now + Duration::from_millis(100));
                }
            }
        }
        if self.dirty.is_empty() {
            let mut dirty = dirty;
            dirty.clear();
            self.dirty = dirty;
        }
    }

    /// One pass: timers due, socket events, writes.
    fn step(&mut self, events: &mut Events, max_wait: Duration) -> Result<(), String> {
        let now = Instant::now();
        while let Some(&Reverse((at, idx, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self
                .slots
                .get(idx)
                .is_some_and(|s| s.timer_gen == generation)
            {
                self.on_timer(idx, now);
            }
        }
        self.flush(now);
        let wait = self
            .timers
            .peek()
            .map_or(max_wait, |Reverse((at, _, _))| {
                at.saturating_duration_since(now)
            })
            .min(max_wait);
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(io_err(e)),
        }
        let now = Instant::now();
        for ev in events.iter() {
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            let writable = ev.is_writable() || ev.is_error() || ev.is_write_closed();
            self.on_event(ev.token().0, readable, writable, now);
        }
        self.flush(now);
        Ok(())
    }

    /// Messages acknowledged but missing at some stable subscriber.
    fn lost(&self) -> (u64, u64, [u64; 3], Option<u64>) {
        let mut lost_total = 0u64;
        let mut lost_msgs = 0u64;
        let mut by_qos = [0u64; 3];
        let mut first = None;
        for seq in 0..self.seq {
            if !self.acked.get(seq) || !self.tracked.get(seq) {
                continue;
            }
            let missing = self
                .slots
                .iter()
                .filter(|s| s.stable && !s.got.get(seq))
                .count() as u64;
            if missing > 0 {
                lost_total += missing;
                lost_msgs += 1;
                first.get_or_insert(seq);
                let q = self.seq_qos.get(seq as usize).copied().unwrap_or(0);
                if let Some(n) = by_qos.get_mut(usize::from(q)) {
                    *n += 1;
                }
            }
        }
        (lost_total, lost_msgs, by_qos, first)
    }

    fn all_delivered(&self) -> bool {
        let outstanding: usize = self
            .slots
            .iter()
            .filter_map(|s| s.conn.as_ref())
            .map(|c| c.out.len())
            .sum();
        outstanding == 0 && self.lost().0 == 0
    }
}

/// (seconds since the start, broker RSS bytes, broker fds, live clients)
type Sample = (f64, Option<u64>, Option<u64>, usize);

fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
}

fn run(o: &Opts, cfg: &Cfg) -> Result<String, String> {
    let total = o.conns.max(cfg.stable + 1);
    let limit = procfs::raise_nofile(total as u64 + 512).unwrap_or(0);
    if limit < total as u64 + 64 {
        return Err(format!(
            "open-file limit {limit} is too low for {total} clients (raise ulimit -n)"
        ));
    }
    let pid = std::process::id();
    let mut rng = Rng(cfg.seed);
    let now = Instant::now();
    let mut slots = Vec::with_capacity(total);
    for i in 0..total {
        let stable = i < cfg.stable;
        let persistent = stable || rng.chance(cfg.persistent_frac);
        slots.push(Slot {
            id: format!("soak{pid}-{}-{i}", if stable { "s" } else { "c" }),
            stable,
            persistent,
            sub_qos: if i % 2 == 0 { 1 } else { 2 },
            conn: None,
            has_session: false,
            groups: Vec::new(),
            subscriber: !stable && rng.chance(cfg.sub_frac),
            next_pid: 1,
            leave_at: now,
            timer_gen: 0,
            subscribed: false,
            got: Bits::default(),
            last_msg: None,
            max_gap: Duration::ZERO,
            received: 0,
            dups: 0,
        });
    }
    let mut payload = vec![0u8; o.payload.max(16)];
    for (i, b) in payload.iter_mut().enumerate().skip(9) {
        *b = b'a' + (i % 26) as u8;
    }
    let mut s = Soak {
        o,
        cfg,
        poll: Poll::new().map_err(io_err)?,
        slots,
        timers: BinaryHeap::new(),
        dirty: Vec::new(),
        rng,
        c: Counts::default(),
        acked: Bits::default(),
        tracked: Bits::default(),
        tracked_published: 0,
        tracked_acked: 0,
        bucket: 0.0,
        bucket_at: now,
        seq_qos: Vec::new(),
        seq: 0,
        connecting: 0,
        live: 0,
        churn: false,
        publishing: false,
        payload,
        topic: Vec::new(),
        rbuf: Vec::new(),
        last_progress: now,
        gap_from: now + Duration::from_secs(3600 * 24),
    };
    let mut events = Events::with_capacity(4096);
    let tick = Duration::from_millis(10);

    // 1. Stable subscribers connect and subscribe before anyone publishes.
    for i in 0..cfg.stable {
        s.arm(i, now);
    }
    let deadline = now + o.timeout;
    while s.slots.iter().filter(|x| x.stable).any(|x| !x.subscribed) {
        if Instant::now() >= deadline {
            return Err("stable subscribers could not subscribe in time".into());
        }
        s.step(&mut events, tick)?;
    }
    // Stable subscribers churn too; they stay away for at most 300 ms.
    s.churn = true;
    s.publishing = true;
    let t0 = Instant::now();
    let meter = Meter::start(o.broker_pid);
    for i in cfg.stable..total {
        let at = t0 + Duration::from_secs_f64((i - cfg.stable) as f64 / RAMP_PER_SEC);
        s.arm(i, at);
    }
    let ramp = Duration::from_secs_f64((total - cfg.stable) as f64 / RAMP_PER_SEC);
    s.gap_from = t0 + ramp + Duration::from_secs_f64(cfg.online.min(10.0));
    let end = t0 + o.duration;
    let mut next_sample = t0;
    let mut samples: Vec<Sample> = Vec::new();
    let mut max_live = 0usize;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_sample {
            let (rss, fds) = match o.broker_pid {
                Some(p) => (procfs::rss_bytes(p), fd_count(p)),
                None => (None, None),
            };
            samples.push((now.duration_since(t0).as_secs_f64(), rss, fds, s.live));
            next_sample += cfg.sample;
            if let Some(p) = o.broker_pid {
                if !procfs::alive(p) {
                    return Err("broker died during the soak".into());
                }
            }
        }
        max_live = max_live.max(s.live);
        s.step(&mut events, tick)?;
    }
    let churn_cost = meter.stop(Instant::now());
    let (end_rss, end_fds) = match o.broker_pid {
        Some(p) => (procfs::rss_bytes(p), fd_count(p)),
        None => (None, None),
    };
    let live_at_end = s.live;
    let end_now = Instant::now();
    for i in 0..s.slots.len() {
        if let Some(mut c) = s.slots.get_mut(i).and_then(|x| x.conn.take()) {
            s.gap_books(&mut c, end_now);
            if let Some(x) = s.slots.get_mut(i) {
                x.conn = Some(c);
            }
        }
    }

    // 2. Drain: churn stops, publishing stops, stable subscribers come back
    // (or stay), outstanding acknowledgements and deliveries settle.
    s.churn = false;
    s.publishing = false;
    let now = Instant::now();
    for i in 0..cfg.stable {
        if s.slots.get(i).is_some_and(|x| x.conn.is_none()) {
            s.arm(i, now);
        }
    }
    // A loaded machine can stall a broker for seconds; the drain gives up
    // only after 30 s without progress (it ends as soon as all is in).
    let drain = o.drain.max(Duration::from_secs(30));
    s.last_progress = now;
    let drain_end = now + Duration::from_secs(120);
    let mut next_check = now;
    loop {
        let now = Instant::now();
        let all_back = s
            .slots
            .iter()
            .filter(|x| x.stable)
            .all(|x| x.conn.as_ref().is_some_and(|c| c.phase == Phase::Live));
        if all_back && now >= next_check {
            next_check = now + Duration::from_millis(500);
            if s.all_delivered() {
                break;
            }
        }
        if now >= drain_end || now.saturating_duration_since(s.last_progress) > drain {
            break;
        }
        s.step(&mut events, tick)?;
    }
    let drain_secs = now.elapsed().as_secs_f64();
    let (lost_total, lost_msgs, lost_by_qos, first_lost) = s.lost();
    let outstanding: u64 = s
        .slots
        .iter()
        .filter_map(|x| x.conn.as_ref())
        .map(|c| c.out.len() as u64)
        .sum();
    let broker_alive = o.broker_pid.map(procfs::alive);

    // Report.
    let mut j = JsonLine::new();
    j.str("scenario", "soak")
        .str("broker", &o.label)
        .str("protocol", "mqtt311")
        .int("seed", cfg.seed)
        .int("clients", total as u64)
        .int("stable_subs", cfg.stable as u64)
        .num("duration_secs", o.duration.as_secs_f64())
        .int("max_live", max_live as u64)
        .int("live_at_end", live_at_end as u64)
        .int("connect_attempts", s.c.connect_attempts)
        .int("connacks", s.c.connacks)
        .int("connect_errors", s.c.connect_errors)
        .int("connack_timeouts", s.c.connack_timeouts)
        .int("refused", s.c.refused)
        .int("closed_by_broker", s.c.closed_by_broker)
        .int("clean_disconnects", s.c.clean_disconnects)
        .int("abrupt_disconnects", s.c.abrupt_disconnects)
        .int("subscribes", s.c.subscribes)
        .int("unsubscribes", s.c.unsubscribes)
        .int("suback_failures", s.c.suback_failures)
        .int("sessions_lost_stable", s.c.sessions_lost_stable)
        .int("sessions_lost_crowd", s.c.sessions_lost_crowd);
    let mut lat = std::mem::take(&mut s.c.connack_lat_us);
    lat.sort_unstable();
    j.opt_num(
        "connack_p50_ms",
        quantile(&lat, 0.5).map(|u| u as f64 / 1e3),
    )
    .opt_num(
        "connack_p99_ms",
        quantile(&lat, 0.99).map(|u| u as f64 / 1e3),
    )
    .opt_num("connack_max_ms", lat.last().map(|&u| u as f64 / 1e3));
    let [p0, p1, p2] = s.c.published;
    let [_, a1, a2] = s.c.acked;
    j.int("published_qos0", p0)
        .int("published_qos1", p1)
        .int("published_qos2", p2)
        .int("acked_qos1", a1)
        .int("acked_qos2", a2)
        .num("stable_rate", cfg.stable_rate)
        .num("stable_queue_fill_secs", 1000.0 / cfg.stable_rate.max(1e-9))
        .int("tracked_published", s.tracked_published)
        .int("tracked_acked", s.tracked_acked)
        .int("unacked_at_drop", s.c.unacked_dropped)
        .int("unacked_at_end", outstanding)
        .int("stable_received", s.c.stable_received)
        .int("crowd_received", s.c.crowd_received)
        .int(
            "stable_dups",
            s.slots.iter().filter(|x| x.stable).map(|x| x.dups).sum(),
        )
        .int("acked_but_lost", lost_total)
        .int("acked_but_lost_msgs", lost_msgs)
        .int("acked_but_lost_qos1", lost_by_qos[1])
        .int("acked_but_lost_qos2", lost_by_qos[2]);
    if let Some(f) = first_lost {
        j.int("first_lost_seq", f);
    }
    let gaps: Vec<f64> = s
        .slots
        .iter()
        .filter(|x| x.stable)
        .map(|x| x.max_gap.as_secs_f64() * 1e3)
        .collect();
    let gap_max = gaps.iter().copied().fold(0.0, f64::max);
    j.num("stable_max_gap_ms", gap_max)
        .str(
            "stable_gaps_ms",
            &gaps
                .iter()
                .map(|g| format!("{g:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .num("crowd_max_gap_ms", s.c.crowd_max_gap.as_secs_f64() * 1e3)
        .int("crowd_subs_over_gap_bound", s.c.crowd_gap_over)
        .num("crowd_gap_bound_ms", CROWD_GAP_BOUND.as_secs_f64() * 1e3)
        .num("drain_secs", drain_secs)
        .num("secs", churn_cost.secs)
        .opt_num("broker_cpu_secs", churn_cost.broker_cpu)
        .opt_num("bench_cpu_secs", churn_cost.bench_cpu)
        .opt_num(
            "broker_cpu_util",
            churn_cost.broker_cpu.map(|b| b / churn_cost.secs.max(1e-9)),
        );
    // The criterion: RSS and fds at the end within 5 % of the
    // sample after the first minute (or the nearest later one).
    let minute = samples
        .iter()
        .find(|x| x.0 >= 60.0 - 0.5)
        .or(samples.last());
    let kb = |b: Option<u64>| b.map(|b| (b / 1024) as f64);
    if let Some(&(_, rss, fds, _)) = minute {
        j.opt_num("rss_kb_1min", kb(rss))
            .opt_num("fds_1min", fds.map(|f| f as f64));
        j.opt_num("rss_kb_end", kb(end_rss))
            .opt_num("fds_end", end_fds.map(|f| f as f64));
        let pct = |a: Option<u64>, b: Option<u64>| {
            a.zip(b)
                .filter(|(a, _)| *a > 0)
                .map(|(a, b)| (b as f64 - a as f64) * 100.0 / a as f64)
        };
        j.opt_num("rss_change_pct", pct(rss, end_rss))
            .opt_num("fds_change_pct", pct(fds, end_fds));
    }
    j.opt_num(
        "rss_kb_max",
        samples
            .iter()
            .filter_map(|x| x.1)
            .max()
            .map(|b| (b / 1024) as f64),
    );
    let fmt = |f: &dyn Fn(&Sample) -> String| samples.iter().map(f).collect::<Vec<_>>().join(" ");
    j.str(
        "samples_t_rsskb_fds_live",
        &fmt(&|x| {
            format!(
                "{:.0}:{}:{}:{}",
                x.0,
                x.1.map_or(-1, |b| (b / 1024) as i64),
                x.2.map_or(-1, |f| f as i64),
                x.3
            )
        }),
    );
    j.int("malformed", s.c.malformed);
    if let Some(alive) = broker_alive {
        j.bool("broker_alive", alive);
    }
    if let Some(e) = &s.c.first_error {
        j.str("first_error", e);
    }
    // Clean goodbye.
    for i in 0..s.slots.len() {
        if let Some(c) = s.slots.get_mut(i).and_then(|x| x.conn.as_mut()) {
            if c.phase == Phase::Live {
                mqtt::disconnect(&mut c.tx);
                s.dirty.push(i);
            }
        }
    }
    s.flush(Instant::now());
    Ok(j.finish())
}
