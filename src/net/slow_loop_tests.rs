//! net/slow_loop_tests: the event loop on a starved CPU.
//!
//! Owns: tests that run the real loop (sockets, mio) with every pass
//! artificially slowed, the way a Pi Zero or a loaded board is slower than
//! a workstation, so that publishers get far ahead between passes.
//!
//! Must not: depend on wall-clock speed for its verdict; the slowness is
//! a fixed sleep per pass and the assertion is about messages, not time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{bind, Control, EventLoop, Identity, ListenerSpec, Listening};
use crate::broker::{Broker, BrokerConfig};
use crate::protocol::field::write_remaining_length;

/// Sleeps at the end of every pass, so each pass finds a backlog.
struct SlowPasses {
    pause: Duration,
    stop: Arc<AtomicBool>,
}

impl Control for SlowPasses {
    fn after_pass(&mut self, _broker: &mut Broker, _now: u64) {
        thread::sleep(self.pause);
    }
    fn next_deadline(&self) -> Option<u64> {
        None
    }
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A loopback TCP listener spec (TLS when `tls` is given).
fn loopback_spec(tls: Option<Arc<rustls::ServerConfig>>) -> ListenerSpec {
    ListenerSpec {
        addr: "127.0.0.1:0".parse().unwrap(),
        unix_path: None,
        bind_interface: None,
        settings: 0,
        max_connections: -1,
        tls,
        identity: Identity::Connect,
        websockets: None,
        optional: false,
    }
}

fn port_of(l: &Listening) -> u16 {
    match l {
        Listening::Tcp(t) => t.local_addr().unwrap().port(),
        Listening::Unix(_) => unreachable!("a TCP spec binds TCP"),
    }
}

/// The real loop on its own thread, every pass 20 ms longer than its work.
struct SlowLoop {
    stop: Arc<AtomicBool>,
    looper: thread::JoinHandle<()>,
    /// A port to connect to, to wake the loop when stopping.
    wake: u16,
}

impl SlowLoop {
    fn start(bound: Vec<(Listening, ListenerSpec)>) -> SlowLoop {
        let wake = port_of(&bound[0].0);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_loop = stop.clone();
        let looper = thread::spawn(move || {
            let mut ev = EventLoop::new(bound).expect("event loop");
            let cfg = BrokerConfig {
                sys_interval: 0,
                ..BrokerConfig::default()
            };
            assert_eq!(cfg.max_queued_messages, 1000, "the default queue bound");
            let mut broker = Broker::new(cfg, ev.now());
            let mut control = SlowPasses {
                pause: Duration::from_millis(20),
                stop: stop_loop,
            };
            ev.run(&mut broker, &mut control).expect("loop runs");
        });
        SlowLoop { stop, looper, wake }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the loop so it sees the stop request.
        drop(TcpStream::connect(("127.0.0.1", self.wake)));
        self.looper.join().unwrap();
    }
}

fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    frame(0x10, &body)
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    write_remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

/// Read whole packets until `want` PUBLISHes arrived or `limit` passed;
/// returns how many arrived.
fn count_publishes(s: &mut TcpStream, want: usize, limit: Duration) -> usize {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < want && start.elapsed() < limit {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        let mut at = 0;
        while let Some(&first) = buf.get(at) {
            let (mut len, mut mul, mut i) = (0usize, 1usize, at + 1);
            let mut complete = false;
            while let Some(&b) = buf.get(i) {
                len += (b & 0x7f) as usize * mul;
                mul *= 128;
                i += 1;
                if b & 0x80 == 0 {
                    complete = true;
                    break;
                }
            }
            if !complete || buf.len() < i + len {
                break;
            }
            if first >> 4 == 3 {
                got += 1;
            }
            at = i + len;
        }
        buf.drain(..at);
    }
    got
}

/// Eight publishers flood one `#` subscriber with QoS 0 while every loop
/// pass takes 20 ms longer than its work. With the default 1000-message
/// queue, a loop that read all the publishers before writing anything
/// dropped most of the flood; reading that stops to flush delivers it all.
#[test]
fn a_slow_loop_still_delivers_every_message_of_a_fan_in_flood() {
    const PUBLISHERS: usize = 8;
    const EACH: usize = 4000;
    let bound = bind(&[loopback_spec(None)]).expect("bind a loopback port");
    let port = port_of(&bound[0].0);
    let running = SlowLoop::start(bound);

    let addr = ("127.0.0.1", port);
    let mut sub = TcpStream::connect(addr).unwrap();
    sub.write_all(&connect_packet("sub")).unwrap();
    let subscribe = frame(
        0x82,
        &[0, 1, 0, 7, b'b', b'e', b'n', b'c', b'h', b'/', b'#', 0],
    );
    sub.write_all(&subscribe).unwrap();
    // CONNACK (4 bytes) and SUBACK (5 bytes).
    let mut acks = [0u8; 9];
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub.read_exact(&mut acks).unwrap();
    assert_eq!((acks[0], acks[4]), (0x20, 0x90), "CONNACK then SUBACK");

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut all = connect_packet(&format!("pub{p}"));
                for i in 0..EACH {
                    let payload = [(i % 251) as u8; 64];
                    all.extend_from_slice(&publish_packet(&format!("bench/{p}"), &payload));
                }
                s.write_all(&all).unwrap();
                s
            })
        })
        .collect();
    let got = count_publishes(&mut sub, PUBLISHERS * EACH, Duration::from_secs(15));
    let _publishers: Vec<TcpStream> = publishers.into_iter().map(|h| h.join().unwrap()).collect();
    running.stop();
    assert_eq!(got, PUBLISHERS * EACH, "messages delivered of the flood");
}

/// A ClientHello from a rustls client (no roots: the test never gets past
/// the server's first answer).
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut c = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).expect("ClientHello");
    }
    out
}

/// Issue 16: a flood of TLS handshakes must not hold up clients that are
/// already connected. Every pass of the loop takes 20 ms longer than its
/// work; 15 ClientHellos are waiting when an established client sends
/// PINGREQ. A loop that answered every handshake of a pass before anything
/// else made the client wait for all of them; handshake steps now run one
/// per pass after the other events, so the PINGRESP overtakes most of them.
#[test]
fn established_clients_are_served_between_tls_handshake_steps() {
    const HANDSHAKES: usize = 15;
    let dir = std::env::temp_dir().join(format!("midge-hs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (crt, key) = (dir.join("s.crt"), dir.join("s.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl (CI installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tls = crate::config::Tls {
        certfile: Some(crt.display().to_string()),
        keyfile: Some(key.display().to_string()),
        ..Default::default()
    };
    let server = super::tls::server_config(&tls).expect("server config");
    let bound =
        bind(&[loopback_spec(None), loopback_spec(Some(server))]).expect("bind loopback ports");
    let (plain, secure) = (port_of(&bound[0].0), port_of(&bound[1].0));
    let running = SlowLoop::start(bound);

    let mut probe = TcpStream::connect(("127.0.0.1", plain)).unwrap();
    probe.write_all(&connect_packet("probe")).unwrap();
    let mut connack = [0u8; 4];
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    probe.read_exact(&mut connack).unwrap();
    assert_eq!(connack[0], 0x20);

    let hello = client_hello();
    let mut tls_peers: Vec<TcpStream> = (0..HANDSHAKES)
        .map(|_| TcpStream::connect(("127.0.0.1", secure)).unwrap())
        .collect();
    for s in &mut tls_peers {
        s.write_all(&hello).unwrap();
        s.set_nonblocking(true).unwrap();
    }
    // Let every ClientHello reach the broker's socket buffers.
    thread::sleep(Duration::from_millis(30));
    probe.write_all(&[0xC0, 0x00]).unwrap();
    probe.set_nonblocking(true).unwrap();

    // Poll everybody; note the order in which answers arrive.
    let mut answered = vec![false; HANDSHAKES];
    let mut answered_before_ping = None;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && (answered_before_ping.is_none() || answered.contains(&false))
    {
        for (s, done) in tls_peers.iter_mut().zip(answered.iter_mut()) {
            if !*done && matches!(s.read(&mut buf), Ok(n) if n > 0) {
                *done = true;
            }
        }
        if answered_before_ping.is_none() {
            if let Ok(n) = probe.read(&mut buf) {
                assert!(
                    n >= 2 && buf[0] == 0xD0,
                    "PINGRESP expected: {:?}",
                    &buf[..n]
                );
                answered_before_ping = Some(answered.iter().filter(|&&a| a).count());
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    running.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        answered.iter().all(|&a| a),
        "every handshake answered: {answered:?}"
    );
    let before = answered_before_ping.expect("the PINGREQ was answered");
    assert!(
        before <= HANDSHAKES / 3,
        "{before} of {HANDSHAKES} handshakes were answered before the PINGRESP"
    );
}

/// A SIGTERM and a client's PUBACK reach the broker during the same pass
/// (the signal first). The PUBACK is taken in before the broker stops, so
/// the acknowledged message is not kept in the session (and saved, and
/// sent again after a restart). The signal used to be handled where it
/// stood among the pass's events: the broker shut down first and the ack
/// was lost, which Mosquitto's `06-bridge-clean-session.py` caught as a
/// bridged QoS 1 message delivered twice.
#[test]
fn an_ack_that_arrived_with_sigterm_is_taken_in_before_the_broker_stops() {
    let bound = bind(&[loopback_spec(None)]).expect("bind a loopback port");
    let port = port_of(&bound[0].0);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let looper = thread::spawn(move || {
        let mut ev = EventLoop::new(bound).expect("event loop");
        ev.install_signals().expect("signals");
        ready_tx.send(()).unwrap();
        let mut broker = Broker::new(
            BrokerConfig {
                sys_interval: 0,
                ..BrokerConfig::default()
            },
            ev.now(),
        );
        let mut control = SlowPasses {
            pause: Duration::from_millis(20),
            stop: Arc::new(AtomicBool::new(false)),
        };
        ev.run(&mut broker, &mut control).expect("loop runs");
        // What the session still holds in flight once the broker stopped.
        let left: Vec<usize> = broker
            .sessions
            .iter()
            .filter(|(_, s)| &*s.client_id == "acker")
            .map(|(_, s)| s.inflight.len())
            .collect();
        left
    });
    ready_rx.recv().unwrap();
    let addr = ("127.0.0.1", port);
    let mut sub = TcpStream::connect(addr).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Clean session off: the session (and its in-flight window) outlives
    // the connection.
    let mut connect = connect_packet("acker");
    connect[9] = 0x00;
    sub.write_all(&connect).unwrap();
    sub.write_all(&frame(0x82, &[0, 1, 0, 1, b't', 1])).unwrap();
    let mut acks = [0u8; 9];
    sub.read_exact(&mut acks).unwrap();
    assert_eq!((acks[0], acks[4]), (0x20, 0x90), "CONNACK then SUBACK");
    let mut publisher = TcpStream::connect(addr).unwrap();
    publisher.write_all(&connect_packet("pub")).unwrap();
    // PUBLISH QoS 1: topic "t", packet id 9, payload "m".
    publisher
        .write_all(&frame(0x32, &[0, 1, b't', 0, 9, b'm']))
        .unwrap();
    let mut delivered = [0u8; 8];
    sub.read_exact(&mut delivered).unwrap();
    assert_eq!(delivered[0] & 0xF6, 0x32, "a QoS 1 PUBLISH: {delivered:?}");
    let packet_id = [delivered[5], delivered[6]];
    // Wake the loop, and while it sleeps out that pass, send SIGTERM and
    // then the PUBACK: the next poll returns both, the signal first.
    sub.write_all(&[0xC0, 0x00]).unwrap();
    thread::sleep(Duration::from_millis(5));
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    sub.write_all(&[0x40, 0x02, packet_id[0], packet_id[1]])
        .unwrap();
    let left = looper.join().unwrap();
    assert_eq!(left, [0], "messages still in flight for the session");
}
