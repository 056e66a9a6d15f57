//! The `bridge` scenario: a local broker with a bridge `out` to a remote
//! Mosquitto that this scenario starts and stops itself.
//!
//! Two phases, one JSON line:
//! - backlog: the remote is down; one publisher puts `--count` QoS 1
//!   messages (default 100 000) into the local broker, which must keep them
//!   for the link; then the remote comes up and a subscriber on it counts
//!   the distinct sequence numbers that arrive (duplicates are allowed and
//!   counted apart) and when the last one did; the local broker's CPU time
//!   is read over the whole drain.
//! - steady: through the live link, QoS 1 publishes for `--duration`
//!   seconds with a bounded window; delivered messages per second and local
//!   broker CPU per message.
//!
//! The subscriber must not miss what the link delivers before it has
//! reconnected, so its session on the remote is persistent (clean session
//! off) and was made before the backlog phase: the remote's configuration
//! (written by `scripts/bench.sh`) must have `persistence true` and no
//! queue limit, and the remote is stopped with SIGTERM so it saves it.
//!
//! Owns: starting, stopping and waiting for the remote (only the process it
//! spawned, by its PID) and the accounting above. Must not touch the local
//! broker process: it only reads its CPU time.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::json::JsonLine;
use crate::mqtt::{self, Packet};
use crate::net::Net;
use crate::procfs::{self, Meter};
use crate::scenarios::Opts;

const USAGE: &str = "\
usage: midge_bench bridge --port LOCAL --remote-port R --remote-bin MOSQUITTO
                          --remote-conf FILE [--remote-log FILE] [options]
  The local broker on LOCAL must bridge bench/bridge/# out at QoS 1 to
  127.0.0.1:R; FILE must make the remote listen on R with persistence on.
  --count N (backlog, default 100000), --duration S (steady phase),
  --inflight N (default 64), --window N (steady, default 1000),
  --timeout S (bounds each wait), --drain S (give up after S without a
  delivery, default 1).";

const TOPIC: &[u8] = b"bench/bridge/data";
const FILTER: &str = "bench/bridge/#";
const TICK: Duration = Duration::from_millis(5);

/// The remote broker this scenario started; stopped (and reaped) on drop.
struct Remote {
    child: Option<Child>,
}

impl Remote {
    fn start(bin: &str, conf: &str, log: Option<&str>) -> Result<Remote, String> {
        let out = match log {
            Some(p) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(Stdio::from)
                .map_err(|e| format!("{p}: {e}"))?,
            None => Stdio::null(),
        };
        let child = Command::new(bin)
            .arg("-c")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .map_err(|e| format!("starting {bin}: {e}"))?;
        Ok(Remote { child: Some(child) })
    }

    /// SIGTERM (so Mosquitto writes its persistence file), wait up to 10 s,
    /// then SIGKILL. Only ever the child this value owns.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a PID we spawned and have not reaped yet
            // (the Child still owns it), so it cannot name another process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Args {
    remote_port: u16,
    remote_bin: String,
    remote_conf: String,
    remote_log: Option<String>,
}

fn split_args(args: Vec<String>) -> Result<(Args, Vec<String>), String> {
    let (mut port, mut bin, mut conf, mut log) = (None, None, None, None);
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--remote-port" => {
                let v = it.next().ok_or("--remote-port needs a value")?;
                port = Some(
                    v.parse::<u16>()
                        .map_err(|_| format!("--remote-port: '{v}' is not a port"))?,
                );
            }
            "--remote-bin" => bin = Some(it.next().ok_or("--remote-bin needs a value")?),
            "--remote-conf" => conf = Some(it.next().ok_or("--remote-conf needs a value")?),
            "--remote-log" => log = Some(it.next().ok_or("--remote-log needs a value")?),
            _ => rest.push(a),
        }
    }
    let a = Args {
        remote_port: port.ok_or("--remote-port is required")?,
        remote_bin: bin.ok_or("--remote-bin is required")?,
        remote_conf: conf.ok_or("--remote-conf is required")?,
        remote_log: log,
    };
    Ok((a, rest))
}

/// Entry point from `main`: prints one JSON line, also on failure.
pub fn run(args: Vec<String>) -> Result<(), (String, Option<String>)> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let (a, rest) = split_args(args).map_err(|e| (format!("{e}\n\n{USAGE}"), None))?;
    let o = crate::parse_opts(rest).map_err(|e| (format!("{e}\n\n{USAGE}"), None))?;
    crate::report_result("bridge", &o, scenario(&o, &a))
}

fn io_err(e: std::io::Error) -> String {
    format!("I/O error: {e}")
}

fn wait_port(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let until = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(format!(
                "remote: nothing listening on {addr} after {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One client on its own `Net`, connected (and subscribed, if asked).
fn client(
    addr: SocketAddr,
    o: &Opts,
    id: &str,
    sub: Option<(String, u8)>,
    persistent: bool,
) -> Result<(Net, usize), String> {
    let mut net = Net::new(addr, o.v5).map_err(io_err)?;
    net.persistent = persistent;
    let setup = net
        .establish(
            &[(id.to_string(), sub)],
            1,
            Instant::now() + o.timeout,
            &mut |_, _| {},
        )
        .map_err(io_err)?;
    match setup.ids.first() {
        Some(&idx) if setup.failed == 0 => Ok((net, idx)),
        _ => Err(format!(
            "{id} could not connect to {addr}: {}",
            net.stats.first_error.as_deref().unwrap_or("timeout")
        )),
    }
}

/// Distinct sequence numbers seen, duplicates apart.
struct Seen {
    bits: Vec<bool>,
    distinct: u64,
    dups: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Seen {
    fn new(n: u64) -> Seen {
        Seen {
            bits: vec![false; usize::try_from(n).unwrap_or(0)],
            distinct: 0,
            dups: 0,
            first: None,
            last: None,
        }
    }

    fn see(&mut self, payload: &[u8], now: Instant) {
        let Some(seq) = payload
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
        else {
            return;
        };
        let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.bits.get_mut(i)) else {
            return;
        };
        if *slot {
            self.dups += 1;
        } else {
            *slot = true;
            self.distinct += 1;
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
}

/// An encoded PUBLISH whose packet id and sequence number are patched.
struct Template {
    bytes: Vec<u8>,
    pid_at: usize,
    payload_at: usize,
}

impl Template {
    fn new(payload: usize, v5: bool) -> Template {
        let body = vec![b'x'; payload.max(8)];
        let mut bytes = Vec::new();
        let lay = mqtt::publish(&mut bytes, TOPIC, &body, 1, 1, false, v5);
        Template {
            bytes,
            pid_at: lay.pid_at.unwrap_or(0),
            payload_at: lay.payload_at,
        }
    }

    fn push(&self, tx: &mut Vec<u8>, seq: u64, pid: u16) {
        let start = tx.len();
        tx.extend_from_slice(&self.bytes);
        if let Some(d) = tx.get_mut(start + self.pid_at..start + self.pid_at + 2) {
            d.copy_from_slice(&pid.to_be_bytes());
        }
        let p = start + self.payload_at;
        if let Some(d) = tx.get_mut(p..p + 8) {
            d.copy_from_slice(&seq.to_be_bytes());
        }
    }
}

fn packet_id(seq: u64) -> u16 {
    (seq % 65_535) as u16 + 1
}

fn scenario(o: &Opts, a: &Args) -> Result<String, String> {
    let count = o.count.unwrap_or(100_000).max(1);
    let inflight = o.inflight.max(1);
    let window = o.window.unwrap_or(1000).max(inflight);
    let remote_addr = SocketAddr::new(o.addr.ip(), a.remote_port);
    let tag = std::process::id();
    let sub_id = format!("mb{tag}-bridge-sub");
    let tmpl = Template::new(o.payload, o.v5);

    // The subscriber's persistent session on the remote, then the remote down.
    let mut remote = Remote::start(&a.remote_bin, &a.remote_conf, a.remote_log.as_deref())?;
    wait_port(remote_addr, o.timeout)?;
    {
        let (mut net, _) = client(remote_addr, o, &sub_id, Some((FILTER.into(), 1)), true)?;
        net.disconnect_all();
        let _ = net.poll(Some(Duration::from_millis(50)), &mut |_, _| {});
    }
    remote.stop();

    // Backlog: everything published and acknowledged locally while the
    // remote is down.
    let (mut pubnet, publisher) = client(o.addr, o, &format!("mb{tag}-bridge-pub"), None, false)?;
    let meter = Meter::start(o.broker_pid);
    let (mut sent, mut acked) = (0u64, 0u64);
    let until = Instant::now() + o.timeout;
    while acked < count {
        if Instant::now() >= until {
            return Err(format!(
                "backlog: only {acked} of {count} publishes acknowledged by the local broker within {:?}",
                o.timeout
            ));
        }
        let room = inflight.saturating_sub(sent - acked).min(count - sent);
        if room > 0 {
            if let Some(tx) = pubnet.tx(publisher) {
                for _ in 0..room {
                    tmpl.push(tx, sent, packet_id(sent));
                    sent += 1;
                }
            }
        }
        pubnet.flush();
        pubnet
            .poll(Some(TICK), &mut |_, p| {
                if let Packet::PubAck { .. } = p {
                    acked += 1;
                }
            })
            .map_err(io_err)?;
    }
    let publish_cost = meter.stop(Instant::now());

    // The remote comes up; the link drains the backlog into it.
    let meter = Meter::start(o.broker_pid);
    let mut remote = Remote::start(&a.remote_bin, &a.remote_conf, a.remote_log.as_deref())?;
    wait_port(remote_addr, o.timeout)?;
    let (mut subnet, sub) = client(remote_addr, o, &sub_id, Some((FILTER.into(), 1)), true)?;
    let steady_n = count.saturating_mul(100).max(1_000_000);
    let mut seen = Seen::new(count + steady_n);
    let mut last_progress = Instant::now();
    let first_deadline = meter.t0 + o.timeout;
    loop {
        let now = Instant::now();
        if seen.distinct >= count {
            break;
        }
        if seen.first.is_none() {
            if now >= first_deadline {
                break;
            }
        } else if now.duration_since(last_progress) >= o.drain.max(Duration::from_secs(1)) {
            break;
        }
        let before = seen.distinct + seen.dups;
        subnet
            .poll(Some(TICK), &mut |id, p| {
                if let Packet::Publish { payload, .. } = p {
                    if id == sub {
                        seen.see(payload, Instant::now());
                    }
                }
            })
            .map_err(io_err)?;
        // Keep the publisher's connection serviced (PINGs are off, but
        // reading keeps its socket drained).
        pubnet
            .poll(Some(Duration::ZERO), &mut |_, _| {})
            .map_err(io_err)?;
        if seen.distinct + seen.dups != before {
            last_progress = Instant::now();
        }
    }
    let drain_end = seen.last.unwrap_or_else(Instant::now);
    let drain_cost = meter.stop(drain_end);
    let (backlog_got, backlog_dups) = (seen.distinct, seen.dups);
    let reconnect_secs = seen
        .first
        .map(|f| f.saturating_duration_since(meter.t0).as_secs_f64());
    let drain_only = seen
        .first
        .zip(seen.last)
        .map(|(f, l)| l.saturating_duration_since(f).as_secs_f64());

    // Steady state through the live link.
    let meter = Meter::start(o.broker_pid);
    let send_until = meter.t0 + o.duration;
    let (mut s_sent, mut s_acked) = (0u64, 0u64);
    let base = count;
    let mut drain_from: Option<Instant> = None;
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        let got = seen.distinct - backlog_got;
        let outstanding = s_sent.saturating_sub(got);
        if drain_from.is_none() && (now >= send_until || s_sent >= steady_n) {
            drain_from = Some(now);
        }
        if drain_from.is_some() {
            if outstanding == 0 || now.duration_since(last_progress) >= o.drain {
                break;
            }
        } else {
            let room = inflight
                .saturating_sub(s_sent - s_acked)
                .min(window.saturating_sub(outstanding))
                .min(steady_n - s_sent);
            if room > 0 {
                if let Some(tx) = pubnet.tx(publisher) {
                    for _ in 0..room {
                        let seq = base + s_sent;
                        tmpl.push(tx, seq, packet_id(seq));
                        s_sent += 1;
                    }
                }
            }
            if outstanding >= window && now.duration_since(last_progress) >= o.timeout {
                return Err("steady: no delivery through the link".into());
            }
        }
        pubnet.flush();
        let before = (seen.distinct + seen.dups, s_acked);
        pubnet
            .poll(Some(Duration::ZERO), &mut |_, p| {
                if let Packet::PubAck { .. } = p {
                    s_acked += 1;
                }
            })
            .map_err(io_err)?;
        subnet
            .poll(Some(Duration::from_millis(1)), &mut |id, p| {
                if let Packet::Publish { payload, .. } = p {
                    if id == sub {
                        seen.see(payload, Instant::now());
                    }
                }
            })
            .map_err(io_err)?;
        if (seen.distinct + seen.dups, s_acked) != before {
            last_progress = Instant::now();
        }
    }
    let steady_got = seen.distinct - backlog_got;
    let steady_cost = meter.stop(seen.last.unwrap_or_else(Instant::now).max(meter.t0));

    let per = |cpu: Option<f64>, n: u64| cpu.filter(|_| n > 0).map(|c| c * 1e6 / n as f64);
    let mut j = JsonLine::new();
    j.str("scenario", "bridge")
        .str("broker", &o.label)
        .str("protocol", if o.v5 { "mqtt5" } else { "mqtt311" })
        .int("backlog", count)
        .num("backlog_publish_secs", publish_cost.secs)
        .opt_num("backlog_publish_broker_cpu_secs", publish_cost.broker_cpu)
        .int("backlog_delivered", backlog_got)
        .int("backlog_loss", count - backlog_got.min(count))
        .int("backlog_dups", backlog_dups)
        .opt_num("reconnect_secs", reconnect_secs)
        .num("drain_secs", drain_cost.secs)
        .opt_num(
            "drain_msgs_per_sec",
            drain_only
                .filter(|&d| d > 0.0)
                .map(|d| backlog_got as f64 / d),
        )
        .opt_num("drain_broker_cpu_secs", drain_cost.broker_cpu)
        .opt_num(
            "drain_broker_cpu_us_per_msg",
            per(drain_cost.broker_cpu, backlog_got),
        )
        .int("msgs", steady_got)
        .int("sent", s_sent)
        .num("secs", steady_cost.secs)
        .num(
            "msgs_per_sec",
            if steady_cost.secs > 0.0 {
                steady_got as f64 / steady_cost.secs
            } else {
                f64::NAN
            },
        )
        .opt_num("broker_cpu_secs", steady_cost.broker_cpu)
        .opt_num(
            "broker_cpu_us_per_msg",
            per(steady_cost.broker_cpu, steady_got),
        )
        .int("loss", s_sent.saturating_sub(steady_got))
        .num(
            "loss_pct",
            if s_sent > 0 {
                s_sent.saturating_sub(steady_got) as f64 * 100.0 / s_sent as f64
            } else {
                0.0
            },
        )
        .int("inflight", inflight)
        .int("window", window)
        .int("payload", o.payload as u64);
    if let Some(pid) = o.broker_pid {
        j.bool("broker_alive", procfs::alive(pid));
    }
    pubnet.disconnect_all();
    subnet.disconnect_all();
    let _ = subnet.poll(Some(Duration::from_millis(20)), &mut |_, _| {});
    remote.stop();
    Ok(j.finish())
}
