//! `tlsflood`: do established TLS clients keep their latency while a flood
//! of new TLS connections hits the broker?
//!
//! Owns: K probe clients (one thread each, blocking rustls streams) that
//! publish QoS 0 to a topic they subscribe to every 10 ms and time the round
//! trip, and a flood of fresh connections (main thread, mio, nonblocking
//! rustls) at fixed target rates: each does a full handshake (session
//! resumption off), CONNECT, waits for CONNACK, then DISCONNECT,
//! close_notify and close. Phases: idle, then each rate for `--flood-secs`
//! with a cool-down between. It must not use the midge library: only rustls
//! (already a dependency of the crate) and the bench's own MQTT codec.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::json::JsonLine;
use crate::mqtt::{self, Packet, Parsed};
use crate::procfs;
use crate::scenarios::Opts;

const USAGE: &str = "\
usage: midge_bench tlsflood --port N --cafile CA.pem [tlsflood options] [common options]

tlsflood options:
  --cafile FILE      CA certificate the broker's certificate chains to (required)
  --servername NAME  name to verify the certificate against (default 127.0.0.1)
  --probes K         established probe clients (default 10)
  --rates R,R        flood rates, new TLS connections per second (default 200,500)
  --idle-secs S      idle baseline length (default 10)
  --flood-secs S     length of each flood (default 15)
  --cooldown S       pause between floods (default 5)
  --max-pending N    flood connections in flight at most (default 2000)
";

#[derive(Debug, Clone)]
struct Cfg {
    cafile: Option<String>,
    servername: String,
    probes: usize,
    rates: Vec<u64>,
    idle: Duration,
    flood: Duration,
    cooldown: Duration,
    max_pending: usize,
}

type ParseOpts = fn(Vec<String>) -> Result<Opts, String>;

pub fn cli(args: Vec<String>, parse: ParseOpts) -> Result<(), (String, Option<String>)> {
    let mut cfg = Cfg {
        cafile: None,
        servername: "127.0.0.1".into(),
        probes: 10,
        rates: vec![200, 500],
        idle: Duration::from_secs(10),
        flood: Duration::from_secs(15),
        cooldown: Duration::from_secs(5),
        max_pending: 2000,
    };
    let bad = |e: String| (format!("{e}\n\n{USAGE}"), None);
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut val = |f: &str| it.next().ok_or_else(|| bad(format!("{f} needs a value")));
        let secs = |f: &str, v: String| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && (0.0..1e5).contains(x))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad(format!("{f}: '{v}' is not a number of seconds")))
        };
        let int = |f: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("{f}: '{v}' is not a whole number")))
        };
        match flag.as_str() {
            "--cafile" => cfg.cafile = Some(val(&flag)?),
            "--servername" => cfg.servername = val(&flag)?,
            "--probes" => cfg.probes = int(&flag, val(&flag)?)?.max(1) as usize,
            "--rates" => {
                let v = val(&flag)?;
                cfg.rates = v
                    .split(',')
                    .map(|r| int("--rates", r.trim().to_string()))
                    .collect::<Result<_, _>>()?;
            }
            "--idle-secs" => cfg.idle = secs(&flag, val(&flag)?)?,
            "--flood-secs" => cfg.flood = secs(&flag, val(&flag)?)?,
            "--cooldown" => cfg.cooldown = secs(&flag, val(&flag)?)?,
            "--max-pending" => cfg.max_pending = int(&flag, val(&flag)?)?.max(1) as usize,
            "-h" | "--help" => return Err((USAGE.to_string(), None)),
            _ => rest.push(flag),
        }
    }
    let o = parse(rest).map_err(bad)?;
    let result = cfg
        .cafile
        .clone()
        .ok_or_else(|| "--cafile is required".to_string())
        .and_then(|ca| run(&o, &cfg, &ca));
    crate::report_result("tlsflood", &o, result)
}

fn client_config(cafile: &str, resume: bool) -> Result<Arc<ClientConfig>, String> {
    // The client tools' configuration: the chain and the name are checked.
    let opts = midge::client::tls::TlsOptions {
        cafile: Some(cafile.to_string()),
        ..Default::default()
    };
    let shared = midge::client::tls::client_config(&opts).map_err(|e| e.0)?;
    if resume {
        return Ok(shared);
    }
    // Every flood connection pays for a full handshake.
    let mut cfg = (*shared).clone();
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// (send time since t0 in µs, round trip in µs) of every probe message.
type Rtts = Arc<Mutex<Vec<(u64, u64)>>>;

#[allow(clippy::too_many_arguments)]
/// One probe: connect, subscribe to its own topic, then every 10 ms publish
/// and wait for the message to come back.
fn probe(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
    name: ServerName<'static>,
    i: usize,
    t0: Instant,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    out: Rtts,
) -> Result<u64, String> {
    let tcp = StdTcpStream::connect(addr).map_err(|e| format!("probe connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    let mut s = StreamOwned::new(conn, tcp);
    let topic = format!("tlsflood/probe/{}/{i}", std::process::id());
    let mut buf = Vec::new();
    mqtt::connect(
        &mut buf,
        &format!("tf{}-p{i}", std::process::id()),
        0,
        false,
        false,
    );
    mqtt::subscribe(&mut buf, 1, &topic, 0, false);
    s.write_all(&buf).map_err(|e| format!("probe write: {e}"))?;
    let mut rx: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    // Wait for CONNACK and SUBACK.
    let mut acks = 0;
    while acks < 2 {
        let n = s.read(&mut chunk).map_err(|e| format!("probe read: {e}"))?;
        if n == 0 {
            return Err("probe: broker closed".into());
        }
        rx.extend_from_slice(chunk.get(..n).unwrap_or_default());
        while let Parsed::Packet(p, used) = mqtt::parse(&rx, false) {
            if matches!(p, Packet::ConnAck { .. } | Packet::SubAck { .. }) {
                acks += 1;
            }
            rx.drain(..used);
        }
    }
    ready.store(true, Ordering::SeqCst);
    let payload = [0u8; 16];
    let mut lost = 0u64;
    let mut next = Instant::now();
    let mut rtts = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        }
        next += Duration::from_millis(10);
        let sent = Instant::now();
        buf.clear();
        mqtt::publish(&mut buf, topic.as_bytes(), &payload, 0, 0, false, false);
        s.write_all(&buf).map_err(|e| format!("probe write: {e}"))?;
        let mut back = false;
        while !back {
            let n = match s.read(&mut chunk) {
                Ok(0) => return Err("probe: broker closed".into()),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    lost += 1;
                    break;
                }
                Err(e) => return Err(format!("probe read: {e}")),
            };
            rx.extend_from_slice(chunk.get(..n).unwrap_or_default());
            while let Parsed::Packet(p, used) = mqtt::parse(&rx, false) {
                if matches!(p, Packet::Publish { .. }) {
                    back = true;
                }
                rx.drain(..used);
            }
        }
        if back {
            let rtt = sent.elapsed().as_micros() as u64;
            let at = sent.saturating_duration_since(t0).as_micros() as u64;
            rtts.push((at, rtt));
            if rtts.len() >= 256 {
                if let Ok(mut o) = out.lock() {
                    o.append(&mut rtts);
                }
            }
        }
        // Never fall behind by more than one tick: a slow round trip delays
        // the next probe instead of bunching them.
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
    if let Ok(mut o) = out.lock() {
        o.append(&mut rtts);
    }
    buf.clear();
    mqtt::disconnect(&mut buf);
    let _ = s.write_all(&buf);
    s.conn.send_close_notify();
    let _ = s.flush();
    Ok(lost)
}

/// One flood connection.
struct Flood {
    stream: TcpStream,
    tls: ClientConnection,
    started: Instant,
    sent_connect: bool,
    rx: Vec<u8>,
}

#[derive(Default, Clone)]
struct FloodStats {
    started: u64,
    connacks: u64,
    failed: u64,
    timed_out: u64,
    deferred: u64,
    hs_us: Vec<u64>,
    first_error: Option<String>,
}

enum Step {
    Pending,
    Done,
    Failed(String),
}

fn drive(f: &mut Flood, readable: bool, client_id: &str, buf: &mut Vec<u8>) -> Step {
    if readable {
        loop {
            match f.tls.read_tls(&mut f.stream) {
                Ok(0) => return Step::Failed("closed by broker during handshake".into()),
                Ok(_) => {
                    if let Err(e) = f.tls.process_new_packets() {
                        // Tell the broker why, as a real client would.
                        let _ = f.tls.write_tls(&mut f.stream);
                        return Step::Failed(format!("TLS: {e}"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(format!("read: {e}")),
            }
        }
        let mut chunk = [0u8; 512];
        loop {
            match f.tls.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => f.rx.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(_) => break,
            }
        }
        if let Parsed::Packet(Packet::ConnAck { code }, _) = mqtt::parse(&f.rx, false) {
            if code != 0 {
                return Step::Failed(format!("CONNACK code {code}"));
            }
            buf.clear();
            mqtt::disconnect(buf);
            let _ = f.tls.writer().write_all(buf);
            f.tls.send_close_notify();
            while f.tls.wants_write() {
                if f.tls.write_tls(&mut f.stream).is_err() {
                    break;
                }
            }
            return Step::Done;
        }
    }
    if !f.tls.is_handshaking() && !f.sent_connect {
        buf.clear();
        mqtt::connect(buf, client_id, 0, false, false);
        if let Err(e) = f.tls.writer().write_all(buf) {
            return Step::Failed(format!("write: {e}"));
        }
        f.sent_connect = true;
    }
    while f.tls.wants_write() {
        match f.tls.write_tls(&mut f.stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Step::Failed(format!("write: {e}")),
        }
    }
    Step::Pending
}

const FLOOD_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `rate` connections per second for `secs`, then waits for the
/// stragglers (up to `FLOOD_TIMEOUT`).
fn flood(
    o: &Opts,
    cfg: &Cfg,
    tls: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    rate: u64,
    serial: &mut u64,
) -> Result<(FloodStats, f64), String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(1024);
    let mut conns: slab::Slab<Flood> = slab::Slab::new();
    let mut st = FloodStats::default();
    let mut buf = Vec::new();
    let t0 = Instant::now();
    let end = t0 + cfg.flood;
    let mut last_done = t0;
    let pid = std::process::id();
    loop {
        let now = Instant::now();
        if now < end {
            let due = (now.duration_since(t0).as_secs_f64() * rate as f64) as u64;
            while st.started + st.deferred < due {
                if conns.len() >= cfg.max_pending {
                    st.deferred += 1;
                    continue;
                }
                st.started += 1;
                let stream = TcpStream::connect(o.addr).and_then(|s| {
                    s.set_nodelay(true)?;
                    Ok(s)
                });
                let tlsc = ClientConnection::new(tls.clone(), name.clone());
                match (stream, tlsc) {
                    (Ok(stream), Ok(tlsc)) => {
                        let entry = conns.vacant_entry();
                        let key = entry.key();
                        let mut f = Flood {
                            stream,
                            tls: tlsc,
                            started: now,
                            sent_connect: false,
                            rx: Vec::new(),
                        };
                        poll.registry()
                            .register(
                                &mut f.stream,
                                Token(key),
                                Interest::READABLE | Interest::WRITABLE,
                            )
                            .map_err(|e| e.to_string())?;
                        entry.insert(f);
                    }
                    (Err(e), _) => {
                        st.failed += 1;
                        st.first_error.get_or_insert(format!("connect: {e}"));
                    }
                    (_, Err(e)) => return Err(e.to_string()),
                }
            }
        } else if conns.is_empty() || now >= end + FLOOD_TIMEOUT {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(1)))
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        for ev in events.iter() {
            let key = ev.token().0;
            let Some(f) = conns.get_mut(key) else {
                continue;
            };
            *serial += 1;
            let id = format!("tf{pid}-f{serial}");
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            match drive(f, readable, &id, &mut buf) {
                Step::Pending => continue,
                Step::Done => {
                    st.connacks += 1;
                    st.hs_us
                        .push(now.saturating_duration_since(f.started).as_micros() as u64);
                    last_done = now;
                }
                Step::Failed(e) => {
                    st.failed += 1;
                    st.first_error.get_or_insert(e);
                }
            }
            let mut f = conns.remove(key);
            let _ = poll.registry().deregister(&mut f.stream);
        }
        // Connections that hang are given up on.
        let stale: Vec<usize> = conns
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.started) > FLOOD_TIMEOUT)
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let mut f = conns.remove(k);
            let _ = poll.registry().deregister(&mut f.stream);
            st.timed_out += 1;
        }
    }
    let secs = last_done
        .max(end)
        .min(end + FLOOD_TIMEOUT)
        .saturating_duration_since(t0)
        .as_secs_f64();
    Ok((st, secs))
}

fn quantile(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).map(|&v| v as f64)
}

fn window(rtts: &[(u64, u64)], from: Duration, to: Duration) -> Vec<u64> {
    let (a, b) = (from.as_micros() as u64, to.as_micros() as u64);
    let mut v: Vec<u64> = rtts
        .iter()
        .filter(|(at, _)| *at >= a && *at < b)
        .map(|&(_, r)| r)
        .collect();
    v.sort_unstable();
    v
}

fn run(o: &Opts, cfg: &Cfg, cafile: &str) -> Result<String, String> {
    procfs::raise_nofile(cfg.max_pending as u64 + 256);
    let probe_tls = client_config(cafile, true)?;
    let flood_tls = client_config(cafile, false)?;
    let name =
        ServerName::try_from(cfg.servername.clone()).map_err(|e| format!("--servername: {e}"))?;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let rtts: Rtts = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    let mut readies = Vec::new();
    for i in 0..cfg.probes {
        let (addr, tls, name, stop, out) = (
            o.addr,
            probe_tls.clone(),
            name.clone(),
            stop.clone(),
            rtts.clone(),
        );
        let ready = Arc::new(AtomicBool::new(false));
        readies.push(ready.clone());
        threads.push(thread::spawn(move || {
            probe(addr, tls, name, i, t0, stop, ready, out)
        }));
    }
    let deadline = Instant::now() + o.timeout;
    while !readies.iter().all(|r| r.load(Ordering::SeqCst)) {
        if Instant::now() > deadline || threads.iter().any(|t| t.is_finished()) {
            stop.store(true, Ordering::SeqCst);
            let why = threads
                .into_iter()
                .filter(|t| t.is_finished())
                .filter_map(|t| t.join().ok())
                .find_map(|r| r.err())
                .unwrap_or_else(|| "probes did not connect in time".into());
            return Err(why);
        }
        thread::sleep(Duration::from_millis(10));
    }
    let mut j = JsonLine::new();
    j.str("scenario", "tlsflood")
        .str("broker", &o.label)
        .int("probes", cfg.probes as u64);
    let cpu = || o.broker_pid.and_then(|p| procfs::cpu_secs(Some(p)));
    // Idle baseline.
    let idle_from = t0.elapsed();
    let c0 = cpu();
    thread::sleep(cfg.idle);
    let c1 = cpu();
    let idle_to = t0.elapsed();
    let mut phases = vec![("idle".to_string(), idle_from, idle_to, c0.zip(c1), None)];
    let mut serial = 0u64;
    for &rate in &cfg.rates {
        thread::sleep(cfg.cooldown);
        let from = t0.elapsed();
        let c0 = cpu();
        let (st, secs) = flood(o, cfg, &flood_tls, &name, rate, &mut serial)?;
        let c1 = cpu();
        let to = t0.elapsed();
        phases.push((format!("r{rate}"), from, to, c0.zip(c1), Some((st, secs))));
    }
    stop.store(true, Ordering::SeqCst);
    let mut probe_lost = 0;
    for t in threads {
        match t.join() {
            Ok(Ok(lost)) => probe_lost += lost,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("probe thread panicked".into()),
        }
    }
    let rtts = rtts.lock().map(|v| v.clone()).unwrap_or_default();
    let mut idle_p99 = None;
    for (label, from, to, cpu, flood) in &phases {
        let w = window(&rtts, *from, *to);
        let p99 = quantile(&w, 0.99);
        if label == "idle" {
            idle_p99 = p99;
        }
        j.int(&format!("{label}_probe_msgs"), w.len() as u64)
            .opt_num(&format!("{label}_p50_us"), quantile(&w, 0.5))
            .opt_num(&format!("{label}_p99_us"), p99)
            .opt_num(&format!("{label}_max_us"), w.last().map(|&x| x as f64));
        let secs = (*to - *from).as_secs_f64();
        j.opt_num(
            &format!("{label}_broker_cpu_util"),
            cpu.map(|(a, b)| (b - a) / secs.max(1e-9)),
        );
        if let Some((st, fsecs)) = flood {
            let mut hs = st.hs_us.clone();
            hs.sort_unstable();
            j.int(&format!("{label}_started"), st.started)
                .int(&format!("{label}_connacks"), st.connacks)
                .num(
                    &format!("{label}_hs_per_sec"),
                    st.connacks as f64 / fsecs.max(1e-9),
                )
                .int(&format!("{label}_failed"), st.failed)
                .int(&format!("{label}_timed_out"), st.timed_out)
                .int(&format!("{label}_deferred"), st.deferred)
                .opt_num(
                    &format!("{label}_hs_p50_ms"),
                    quantile(&hs, 0.5).map(|u| u / 1e3),
                )
                .opt_num(
                    &format!("{label}_hs_p99_ms"),
                    quantile(&hs, 0.99).map(|u| u / 1e3),
                )
                .opt_num(
                    &format!("{label}_p99_vs_idle"),
                    p99.zip(idle_p99).map(|(a, b)| a / b.max(1.0)),
                );
            if let Some(e) = &st.first_error {
                j.str(&format!("{label}_first_error"), e);
            }
        }
    }
    j.int("probe_timeouts", probe_lost);
    if let Some(pid) = o.broker_pid {
        j.bool("broker_alive", procfs::alive(pid));
    }
    Ok(j.finish())
}
