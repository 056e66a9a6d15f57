//! Hostile peers (issue 16): connections that never send CONNECT, or send
//! the start of one a byte at a time, over TCP, TLS and WebSockets, are
//! closed by the broker; `max_connections` and running out of file
//! descriptors refuse new connections with a log line and leave the
//! clients already connected served.
//!
//! midge closes a connection that has not completed CONNECT 20 s after it
//! was accepted, whatever it has sent (`Broker` `connect_timeout_ms`; no
//! directive). Mosquitto 2.0.11 gives a new connection a 60 s keep-alive
//! and closes it 1.5 x that after the last complete packet (checked every
//! 5 s), and refreshes that time while more than 1000 bytes of a packet are
//! still to come, so a peer trickling a large CONNECT is never closed
//! there; see the README ("Under attack and under load").

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Upper bound on waiting for the broker to close a silent peer: the
/// 20 s connect timeout plus slack for a loaded machine.
const CLOSE_BOUND: Duration = Duration::from_secs(45);

/// What a hostile peer sends first, then trickles one byte of every
/// 500 ms until the broker closes the connection or `CLOSE_BOUND` passes.
struct Peer {
    name: &'static str,
    port: u16,
    /// Sent at once (empty: nothing).
    start: Vec<u8>,
    /// Trickled a byte at a time; never enough to finish the packet.
    trickle: Vec<u8>,
}

/// Runs the peer; returns whether the broker closed the connection.
fn run_peer(p: Peer) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(loopback(p.port)).map_err(|e| format!("{}: {e}", p.name))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    if !p.start.is_empty() {
        s.write_all(&p.start)
            .map_err(|e| format!("{}: {e}", p.name))?;
    }
    let mut next = p.trickle.iter();
    let mut buf = [0u8; 256];
    while t0.elapsed() < CLOSE_BOUND {
        match s.read(&mut buf) {
            Ok(0) => return Ok(t0.elapsed()),
            Ok(_) => {} // e.g. a TLS alert or an HTTP error: wait for the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(t0.elapsed()), // reset by the broker
        }
        if let Some(b) = next.next() {
            if s.write_all(&[*b]).is_err() {
                return Ok(t0.elapsed());
            }
        }
    }
    Err(format!("{}: still open after {CLOSE_BOUND:?}", p.name))
}

/// A self-signed server certificate and key in `dir`, made with openssl.
fn server_cert(dir: &std::path::Path) -> Option<(String, String)> {
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| (crt.display().to_string(), key.display().to_string()))
}

#[test]
fn connections_that_never_finish_connect_are_closed_over_tcp_tls_and_websockets() {
    let dir = temp_dir("hostile-certs");
    let (crt, key) = server_cert(&dir).expect("openssl makes a test certificate");
    let (tls_port, ws_port) = (free_port(), free_port());
    let mut b = TestBroker::start(&format!(
        "listener {tls_port} 127.0.0.1\ncertfile {crt}\nkeyfile {key}\n\
         listener {ws_port} 127.0.0.1\nprotocol websockets\n"
    ));
    // A well-behaved client with keep-alive 0 (never timed out), to show
    // that the broker closes only the peers that never finish CONNECT.
    let (mut good, present, code) =
        RawClient::connect_with(b.port, &Connect::new("good").keepalive(0));
    assert_eq!((present, code), (false, 0));

    // CONNECT with remaining length 200, of which at most ~90 bytes come.
    let mut connect_start = vec![0x10, 0xC8, 0x01, 0x00, 0x04];
    connect_start.extend_from_slice(b"MQTT");
    let mut client_id = vec![0x04, 0x02, 0x00, 0x00, 0x00, 0xB4];
    client_id.extend(std::iter::repeat_n(b'a', 100));
    // A TLS handshake record of 512 bytes that never fills up.
    let tls_start = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    let tls_trickle = vec![0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]
        .into_iter()
        .chain(std::iter::repeat_n(0x2A, 100))
        .collect::<Vec<u8>>();
    // An HTTP upgrade request whose header never ends.
    let ws_start = b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    let ws_trickle = b"X-Slow: "
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'z', 100))
        .collect::<Vec<u8>>();

    let peers = vec![
        Peer {
            name: "tcp silent",
            port: b.port,
            start: vec![],
            trickle: vec![],
        },
        Peer {
            name: "tcp trickle",
            port: b.port,
            start: vec![],
            trickle: [connect_start, client_id].concat(),
        },
        Peer {
            name: "tls silent",
            port: tls_port,
            start: vec![],
            trickle: vec![],
        },
        Peer {
            name: "tls trickle",
            port: tls_port,
            start: tls_start,
            trickle: tls_trickle,
        },
        Peer {
            name: "ws silent",
            port: ws_port,
            start: vec![],
            trickle: vec![],
        },
        Peer {
            name: "ws trickle",
            port: ws_port,
            start: ws_start,
            trickle: ws_trickle,
        },
    ];
    let (tx, rx) = mpsc::channel();
    for p in peers {
        let tx = tx.clone();
        let name = p.name;
        thread::spawn(move || {
            let _ = tx.send((name, run_peer(p)));
        });
    }
    drop(tx);
    let mut failures = Vec::new();
    let mut closed = 0;
    while let Ok((name, r)) = rx.recv_timeout(CLOSE_BOUND + Duration::from_secs(10)) {
        match r {
            Ok(after) => {
                eprintln!("{name}: closed by the broker after {after:?}");
                closed += 1;
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{failures:?}\nlog:\n{}", b.log());
    assert_eq!(closed, 6, "every peer reported");
    // Each close is logged with Mosquitto's words for a client without id.
    let log = b.log();
    let lines = log
        .matches("Client <unknown> has exceeded timeout, disconnecting.")
        .count();
    assert_eq!(lines, 6, "one log line per peer closed:\n{log}");
    // The patient client is still served.
    good.ping();
    b.assert_running();
    let _ = std::fs::remove_dir_all(&dir);
}

/// CONNECT on a fresh connection: Some(return code) from the CONNACK, None
/// when the broker closes the connection instead.
fn try_connect(port: u16, client_id: &str) -> (RawClient, Option<u8>) {
    let mut c = RawClient::open(port);
    c.send_lossy(&Connect::new(client_id).keepalive(0).encode());
    let rc = match c.read_packet(WAIT) {
        Ok(p) => p.connack().map(|(_, rc)| rc),
        Err(ReadError::Closed) => None,
        Err(e) => panic!("{client_id}: neither CONNACK nor close: {e:?}"),
    };
    (c, rc)
}

#[test]
fn max_connections_refuses_the_sixth_connection_and_logs_the_limit() {
    let mut b = TestBroker::start("max_connections 5\n");
    let mut five: Vec<RawClient> = (0..5)
        .map(|i| {
            let (c, rc) = try_connect(b.port, &format!("c{i}"));
            assert_eq!(rc, Some(0), "connection {i} of 5");
            c
        })
        .collect();
    // As Mosquitto: accepted, then closed at once without a CONNACK.
    let (_, rc) = try_connect(b.port, "sixth");
    assert_eq!(rc, None, "the sixth connection is refused");
    let log = b.log();
    assert!(
        log.contains("denied: max_connections exceeded."),
        "the log names the limit:\n{log}"
    );
    // The five are still served; one leaving makes room for another.
    for c in five.iter_mut() {
        c.ping();
    }
    drop(five.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, rc) = try_connect(b.port, "seventh");
        if rc == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a client left");
        thread::sleep(Duration::from_millis(50));
    }
    b.assert_running();
}

#[test]
fn out_of_file_descriptors_refuses_new_connections_and_keeps_serving() {
    if !have("prlimit") {
        panic!("prlimit (util-linux) is needed to lower the broker's descriptor limit");
    }
    // The broker opens about 10 descriptors of its own; 32 leaves room
    // for a handful of clients only.
    let mut b = TestBroker::start_under(&["prlimit", "--nofile=32:32"], "");
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..40 {
        let (c, rc) = try_connect(b.port, &format!("fd{i}"));
        match rc {
            Some(0) => accepted.push(c),
            None => refused += 1,
            Some(rc) => panic!("fd{i}: CONNACK {rc}"),
        }
    }
    assert!(
        !accepted.is_empty() && refused > 0,
        "{} accepted, {refused} refused",
        accepted.len()
    );
    let log = b.log();
    assert!(
        log.contains("Unable to accept new connection, system socket count has been exceeded."),
        "the log names the limit:\n{log}"
    );
    b.assert_running();
    for c in accepted.iter_mut() {
        c.ping();
    }
    // Descriptors given back are used again.
    accepted.truncate(accepted.len().saturating_sub(3));
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, rc) = try_connect(b.port, "after");
        if rc == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection accepted after clients left"
        );
        thread::sleep(Duration::from_millis(50));
    }
    b.assert_running();
}
