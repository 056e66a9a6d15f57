//! MQTT over WebSocket, black box: a real client (mqtt.js, driven by node)
//! on a `protocol websockets` listener talking to TCP clients on the same
//! broker, the raw upgrade handshake, `http_dir`, and WebSocket over TLS.
//!
//! The mqtt.js tests need `node` and `tests/ws/node_modules` (CI runs
//! `npm install --prefix tests/ws`); without them they fail, naming what is missing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn ws_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ws")
}

/// node with mqtt.js installed, or why not.
fn mqtt_js() -> Result<(), String> {
    if !have("node") {
        return Err("node not installed".into());
    }
    if !ws_dir().join("node_modules/mqtt").exists() {
        return Err("mqtt.js not installed (npm install --prefix tests/ws)".into());
    }
    Ok(())
}

fn node(args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new("node");
    cmd.arg(ws_dir().join("client.js"))
        .args(args)
        .current_dir(ws_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start node")
}

fn wait_output(child: std::process::Child) -> (bool, String) {
    let out = child.wait_with_output().expect("node output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Start a broker with a plain listener (harness) and a websockets one.
fn broker_with_ws(extra: &str) -> (TestBroker, u16) {
    let ws_port = free_port();
    let b = TestBroker::start(&format!(
        "listener {} 127.0.0.1\nprotocol websockets\n{}",
        ws_port, extra
    ));
    wait_port(ws_port);
    (b, ws_port)
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(loopback(port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("port {} never opened", port);
}

/// Start a subscriber and wait until it says it is subscribed.
fn ws_subscriber(url: &str, topic: &str, count: u32, env: &[(&str, &str)]) -> std::process::Child {
    let mut child = node(&[url, "sub", topic, &count.to_string()], env);
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("subscribed") {
        assert!(Instant::now() < deadline, "ws subscriber never subscribed");
        let n = stdout.read(&mut buf).unwrap_or(0);
        if n == 0 {
            let (_, text) = wait_output(child);
            panic!("ws subscriber ended early: {}", text);
        }
        seen.extend_from_slice(&buf[..n]);
    }
    // Hand the rest of stdout back to the child for wait_output.
    child.stdout = Some(stdout);
    child
}

#[test]
fn websocket_client_publishes_to_tcp_subscriber_and_back() {
    if let Err(why) = mqtt_js() {
        panic!("{why} (.ci/run installs it)");
    }
    let (b, ws_port) = broker_with_ws("");
    let url = format!("ws://127.0.0.1:{}/mqtt", ws_port);

    // ws -> tcp
    let mut tcp_sub = RawClient::connected(b.port, "tcp-sub");
    tcp_sub.subscribe(&[("ws/up", 1)]);
    let (ok, text) = wait_output(node(&[&url, "pub", "ws/up", "from-websocket", "1"], &[]));
    assert!(ok, "ws publisher failed: {}", text);
    let p = tcp_sub.expect_publish(Duration::from_secs(5));
    assert_eq!(p.topic, "ws/up");
    assert_eq!(p.payload, b"from-websocket");

    // tcp -> ws (MQTT 5 on the websocket side)
    let sub = ws_subscriber(&url, "ws/down", 1, &[("MQTT_VERSION", "5")]);
    let mut tcp_pub = RawClient::connected(b.port, "tcp-pub");
    tcp_pub.publish("ws/down", b"from-tcp", 1, false);
    let (ok, text) = wait_output(sub);
    assert!(ok, "ws subscriber failed: {}", text);
    assert!(text.contains("ws/down from-tcp"), "{}", text);
}

#[test]
fn upgrade_handshake_answers_with_the_mqtt_subprotocol() {
    let (_b, ws_port) = broker_with_ws("");
    let mut s = TcpStream::connect(loopback(ws_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: mqtt\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{}", head);
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{}", head);
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: mqtt"),
        "{}",
        head
    );

    // A masked binary frame carrying CONNECT gets a CONNACK frame back.
    let connect: &[u8] = &[
        0x10, 0x0e, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'w', b's',
    ];
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | connect.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(connect.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &[0x82, 4, 0x20, 2, 0, 0],
        "CONNACK in a binary frame"
    );
}

#[test]
fn bad_upgrade_is_refused_and_broker_keeps_serving() {
    let (b, ws_port) = broker_with_ws("");
    let mut s = TcpStream::connect(loopback(ws_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 4"), "{}", head);
    let mut c = RawClient::connected(b.port, "still-ok");
    c.subscribe(&[("x", 0)]);
}

#[test]
fn http_dir_serves_static_files() {
    let dir = temp_dir("httpdir");
    std::fs::write(dir.join("index.html"), b"<h1>midge</h1>").unwrap();
    let (_b, ws_port) = broker_with_ws(&format!("http_dir {}\n", dir.display()));
    let mut s = TcpStream::connect(loopback(ws_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", text);
    assert!(text.ends_with("<h1>midge</h1>"), "{}", text);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn websocket_over_tls() {
    if let Err(why) = mqtt_js() {
        panic!("{why} (.ci/run installs it)");
    }
    assert!(have("openssl"), "openssl is not installed'+CI+'");
    let dir = temp_dir("wss");
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "openssl could not make a certificate");
    let (b, ws_port) = broker_with_ws(&format!(
        "certfile {}\nkeyfile {}\n",
        cert.display(),
        key.display()
    ));
    let mut tcp_sub = RawClient::connected(b.port, "tcp-sub");
    tcp_sub.subscribe(&[("wss/up", 1)]);
    let url = format!("wss://127.0.0.1:{}/mqtt", ws_port);
    let (ok, text) = wait_output(node(
        &[&url, "pub", "wss/up", "secure", "1"],
        &[("INSECURE", "1")],
    ));
    assert!(ok, "wss publisher failed: {}", text);
    let p = tcp_sub.expect_publish(Duration::from_secs(5));
    assert_eq!(p.payload, b"secure");
    let _ = std::fs::remove_dir_all(dir);
}
