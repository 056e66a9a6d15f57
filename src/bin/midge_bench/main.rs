//! `midge_bench`: a single-threaded MQTT load generator that measures any
//! broker on 127.0.0.1 and prints one JSON line per scenario.
//!
//! Owns: the command line, dispatch to scenarios, and the small helper
//! subcommands `scripts/bench.sh` needs (`free-port`, `wait-port`,
//! `report`). It must not use the midge library: the client side is
//! self-contained (`mqtt`, `net`), so Mosquitto and midge are measured by
//! exactly the same code.

mod bridge;
mod json;
mod mqtt;
mod net;
mod overload;
mod procfs;
mod report;
mod scenarios;
mod soak;
mod sweep;
mod tlsflood;
mod transport;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use scenarios::Opts;

const USAGE: &str = "\
usage: midge_bench <scenario> --port N [options]
       midge_bench free-port
       midge_bench wait-port --port N [--timeout S]
       midge_bench report RAW.jsonl [--a midge] [--b mosquitto] [--tsv FILE]

scenarios:
  fanin     8 publishers -> 1 subscriber on bench/#, QoS 0
  fanout    1 publisher -> 100 subscribers on one topic, QoS 0
  qos1      1 publisher -> 1 subscriber at QoS 1, 64 unacknowledged in flight
  latency   fixed-rate publishes, end-to-end p50/p99/p99.9
  conns     N idle subscribed connections, broker RSS per connection
  retained  store N retained messages, time a # subscriber receiving them
  wildcard  N subscribers with distinct +/# filters, routed publishes/s
  subs      --subs N distinct filters on --conns C connections: subscribe
            time, RSS per subscription, publishes routed to one filter each/s
  bridge    backlog drain and forwarding through a bridge to a remote
            Mosquitto it starts itself (midge_bench bridge --help)
  never-reading  a # subscriber at QoS 1 that never reads, --pubs publishers
            at --rate msgs/s (QoS 0 and 1); RSS growth, $SYS drops, probe
            round trips idle and during (broker needs sys_interval 1)
  flood     the same with --subs (default 20) such subscribers: publishers
            far beyond what subscribers take; run with and without
            memory_limit in the broker's configuration
  half-open --conns connections that never send CONNECT; RSS per
            connection, how many the broker closes within --timeout
  partial-connect  the same, each having sent 4 bytes of a CONNECT
  soak      --conns clients churning for --duration (default 600 s): QoS 0/1/2,
            clean and abrupt disconnects, persistent sessions; acknowledged
            but lost messages, starvation, broker RSS/fds (soak --help)
  tlsflood  TLS probes' round trip idle vs during floods of new TLS
            connections at fixed rates (tlsflood --help)

options:
  --host ADDR        loopback address of the broker (default 127.0.0.1)
  --port N           broker port (required)
  --broker-pid P     read broker CPU time and RSS from /proc/P
  --label NAME       broker name in the JSON (default \"broker\")
  --duration S       send phase length in seconds (default 10)
  --count N          stop after N messages (retained: messages to store, default 100000)
  --window N         max messages sent but not yet delivered (fanin 1000, fanout 500, qos1 1000, wildcard 500)
  --payload N        payload bytes (default 64)
  --pubs N           fanin publishers (default 8)
  --subs N           fanout subscribers (default 100), wildcard subscribers (default 10000),
                     subs filters (default 100000)
  --conns N          conns: idle connections (default 10000); subs: connections
                     holding the filters
  --rate N           latency: publishes per second (default 1000)
  --inflight N       qos1: unacknowledged publishes (default 64)
  --qos N            latency: QoS 0 or 1 (default 0)
  --concurrency N    handshakes in flight while connecting (default 64;
                     Mosquitto listens with a backlog of 100)
  --timeout S        bound on set-up phases (default 120)
  --hold S           conns: wait before reading RSS (default 1)
  --drain S          after sending stops, give up on the rest after S
                     seconds without a delivery (default 1; retained: 2*S)
  --tls-cafile FILE  connect over TLS, trusting the CA in FILE (name not checked)
  --ws               MQTT over WebSockets (GET /mqtt); with --tls-cafile, wss
  --v5               speak MQTT 5 instead of 3.1.1
  --persistent       qos1: clients use persistent sessions (measures the
                     persistence journal's cost)
";

fn parse_num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
}

fn parse_secs(flag: &str, v: Option<String>) -> Result<Duration, String> {
    let s: f64 = parse_num(flag, v)?;
    if !(0.0..=1e6).contains(&s) {
        return Err(format!("{flag}: out of range"));
    }
    Ok(Duration::from_secs_f64(s))
}

fn parse_opts(args: Vec<String>) -> Result<Opts, String> {
    let mut host: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port: Option<u16> = None;
    let mut o = Opts {
        addr: SocketAddr::new(host, 0),
        broker_pid: None,
        label: "broker".into(),
        duration: Duration::from_secs(10),
        count: None,
        window: None,
        payload: 64,
        pubs: 8,
        subs: None,
        conns: 10_000,
        rate: 1000,
        inflight: 64,
        qos: 0,
        v5: false,
        persistent: false,
        concurrency: 64,
        timeout: Duration::from_secs(120),
        hold: Duration::from_secs(1),
        drain: Duration::from_secs(1),
    };
    let mut t = transport::Transport::default();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--tls-cafile" => {
                let ca = it.next().ok_or("--tls-cafile needs a file")?;
                t.tls = Some(transport::tls_config(&ca).map_err(|e| format!("--tls-cafile: {e}"))?);
            }
            "--ws" => t.ws = true,
            "--host" => {
                let v = it.next().ok_or("--host needs a value")?;
                host = v
                    .parse()
                    .map_err(|_| format!("--host: '{v}' is not an IP address"))?;
            }
            "--port" => port = Some(parse_num(&flag, it.next())?),
            "--broker-pid" => o.broker_pid = Some(parse_num(&flag, it.next())?),
            "--label" => o.label = it.next().ok_or("--label needs a value")?,
            "--duration" => o.duration = parse_secs(&flag, it.next())?,
            "--count" => o.count = Some(parse_num(&flag, it.next())?),
            "--window" => o.window = Some(parse_num(&flag, it.next())?),
            "--payload" => o.payload = parse_num(&flag, it.next())?,
            "--pubs" => o.pubs = parse_num(&flag, it.next())?,
            "--subs" => o.subs = Some(parse_num(&flag, it.next())?),
            "--conns" => o.conns = parse_num(&flag, it.next())?,
            "--rate" => o.rate = parse_num(&flag, it.next())?,
            "--inflight" => o.inflight = parse_num(&flag, it.next())?,
            "--qos" => o.qos = parse_num(&flag, it.next())?,
            "--concurrency" => o.concurrency = parse_num(&flag, it.next())?,
            "--timeout" => o.timeout = parse_secs(&flag, it.next())?,
            "--hold" => o.hold = parse_secs(&flag, it.next())?,
            "--drain" => o.drain = parse_secs(&flag, it.next())?,
            "--v5" => o.v5 = true,
            "--persistent" => o.persistent = true,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if !host.is_loopback() {
        return Err(format!(
            "--host {host}: only loopback addresses are allowed"
        ));
    }
    if o.payload > 16 * 1024 * 1024 {
        return Err("--payload: at most 16 MiB".into());
    }
    let port = port.ok_or("--port is required")?;
    o.addr = SocketAddr::new(host, port);
    // Every connection of the run uses it; set once, here.
    transport::set(t);
    Ok(o)
}

/// Prints a port that was free a moment ago (the kernel picks it).
fn free_port() -> Result<(), String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    println!("{port}");
    Ok(())
}

/// Waits until something accepts connections on the port.
fn wait_port(args: Vec<String>) -> Result<(), String> {
    let mut port: Option<u16> = None;
    let mut timeout = Duration::from_secs(10);
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--port" => port = Some(parse_num(&flag, it.next())?),
            "--timeout" => timeout = parse_secs(&flag, it.next())?,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    let addr = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        port.ok_or("--port is required")?,
    );
    let until = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(format!("nothing listening on {addr} after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report_cmd(args: Vec<String>) -> Result<(), String> {
    let mut it = args.into_iter();
    let path = it.next().ok_or("report needs a file")?;
    let (mut a, mut b, mut tsv) = ("midge".to_string(), "mosquitto".to_string(), None);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--a" => a = it.next().ok_or("--a needs a value")?,
            "--b" => b = it.next().ok_or("--b needs a value")?,
            "--tsv" => tsv = Some(it.next().ok_or("--tsv needs a value")?),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let (md, rows) = report::render(&text, &a, &b);
    print!("{md}");
    if let Some(t) = tsv {
        std::fs::write(&t, rows).map_err(|e| format!("{t}: {e}"))?;
    }
    Ok(())
}

fn run() -> Result<(), (String, Option<String>)> {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        return Err((USAGE.to_string(), None));
    };
    let rest: Vec<String> = args.collect();
    let plain = |r: Result<(), String>| r.map_err(|e| (e, None));
    let scenario: fn(&Opts) -> Result<String, String> = match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return Ok(());
        }
        "free-port" => return plain(free_port()),
        "wait-port" => return plain(wait_port(rest)),
        "report" => return plain(report_cmd(rest)),
        "bridge" => return bridge::run(rest),
        "soak" => return soak::cli(rest, parse_opts),
        "tlsflood" => return tlsflood::cli(rest, parse_opts),
        "fanin" => scenarios::fanin,
        "fanout" => scenarios::fanout,
        "qos1" => scenarios::qos1,
        "latency" => scenarios::latency,
        "conns" => scenarios::conns,
        "retained" => scenarios::retained,
        "wildcard" => scenarios::wildcard,
        "subs" => sweep::subs,
        "never-reading" => overload::never_reading,
        "flood" => overload::flood,
        "half-open" => overload::half_open,
        "partial-connect" => overload::partial_connect,
        other => return Err((format!("unknown scenario '{other}'\n\n{USAGE}"), None)),
    };
    let o = parse_opts(rest).map_err(|e| (format!("{e}\n\n{USAGE}"), None))?;
    report_result(&cmd, &o, scenario(&o))
}

/// Prints a scenario's JSON line; on failure still one JSON line (with the
/// error and whether the broker is alive), so a results file records it.
pub fn report_result(
    name: &str,
    o: &Opts,
    result: Result<String, String>,
) -> Result<(), (String, Option<String>)> {
    match result {
        Ok(line) => {
            println!("{line}");
            Ok(())
        }
        Err(e) => {
            let mut j = json::JsonLine::new();
            j.str("scenario", name)
                .str("broker", &o.label)
                .str("error", &e);
            if let Some(pid) = o.broker_pid {
                j.bool("broker_alive", procfs::alive(pid));
            }
            Err((e, Some(j.finish())))
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err((msg, line)) => {
            if let Some(line) = line {
                println!("{line}");
            }
            eprintln!("midge_bench: {msg}");
            ExitCode::FAILURE
        }
    }
}
