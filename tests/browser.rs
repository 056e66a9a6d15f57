//! MQTT over WebSocket from a real browser: headless Chromium loads a page
//! from midge's own `http_dir` and runs the browser build of mqtt.js against
//! midge over `ws://` (page on http://) and `wss://` (page on https://).
//!
//! A browser's WebSocket is not node's: it always offers `permessage-deflate`,
//! sends its own set of headers (Origin, User-Agent, cookies), names the
//! `mqtt` subprotocol, and sends a 100 kB PUBLISH as one frame with a 64-bit
//! length. Three runs, each in a fresh tab: `ws` (MQTT 3.1.1), `ws31`
//! (MQTT 3.1, subprotocol `mqttv3.1`) and `wss` (MQTT 5). In each:
//!
//! - the page (tests/browser/page/page.js) uses the browser's own WebSocket:
//!   each subprotocol offer (`mqtt`, `mqttv3.1`, both, none) opens with the
//!   right choice and no extension and closes cleanly (1000); an offer of
//!   only `foo` is refused; a text frame gets a clean 1003;
//! - mqtt.js connects (the broker log must show the protocol level),
//!   subscribes, receives two retained messages (a short text and 100 kB
//!   published from TCP before the page loaded), publishes 100 kB with QoS 1
//!   and receives it back; a TCP subscriber checks the 100 kB arrived intact;
//! - a second client connects with a will; the test closes the tab and the
//!   TCP subscriber must get the will (no MQTT DISCONNECT was sent);
//! - the browser's own record of its WebSockets (DevTools Network events)
//!   must show `permessage-deflate` offered on every handshake, no extension
//!   in any answer, and a data frame over 100 kB sent.
//!
//! How the browser is driven: Chromium starts with `--remote-debugging-port=0`
//! in a throwaway profile; this file speaks just enough of the DevTools
//! protocol (a WebSocket client, JSON commands) to open the page, poll the
//! result the page writes into `document.body.dataset.result`, collect the
//! console, and take a screenshot on failure (saved under target/tmp/, path
//! printed).
//!
//! How wss:// is trusted: a test CA signs midge's certificate, and the CA is
//! added to an NSS database in a throwaway `$HOME` (`~/.pki/nssdb`, which
//! Chromium on Linux reads for locally trusted roots). No certificate error
//! is ignored: a wrong certificate fails the https page load (checked: with
//! the CA in the database but not trusted, loading fails with
//! `net::ERR_CERT_AUTHORITY_INVALID` and the screenshot shows Chromium's
//! warning page).
//!
//! Against Mosquitto 2.0.11 (`MIDGE_TEST_BROKER`) this test does not pass:
//! here it cannot create the TLS websockets listener, and on plain ws it
//! drops the connection on a text frame without a close frame (the browser
//! sees 1006); the subprotocol offer probes before that pass.
//!
//! Needs `chromium`, `openssl`, `certutil` (libnss3-tools) and
//! `npm install --prefix tests/browser` (for mqtt/dist/mqtt.min.js); `.ci/run`
//! installs all of them. A missing tool fails the test, it does not skip.
//! Chromium runs with `--no-sandbox`: CI runs as root, where Chromium refuses
//! to start with its sandbox, and the only page it loads is this test's own.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::*;

/// Size of the big payloads: larger than any single read or write buffer on
/// either side, and than the 64 KiB a 16-bit WebSocket length can carry.
const BIG: usize = 100 * 1024;
/// Bound for Chromium to start and open its DevTools port.
const LAUNCH_LIMIT: Duration = Duration::from_secs(15);
/// Bound for one page to report its result (the page gives up after 12 s).
const PAGE_LIMIT: Duration = Duration::from_secs(15);
/// Bound for everything Chromium does in this test, launch to last page, so
/// that the whole test stays under a minute even when every step is slow.
const BROWSER_LIMIT: Duration = Duration::from_secs(45);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The payload pattern the page uses too: byte i is (i * 31 + seed) mod 256.
fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + seed) & 0xff) as u8).collect()
}

/// A temp directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Fails (not skips) naming every missing tool and how to get it.
fn require_tools() {
    let mut missing = Vec::new();
    for (tool, how) in [
        ("chromium", "apt-get install chromium"),
        ("openssl", "apt-get install openssl"),
        ("certutil", "apt-get install libnss3-tools"),
    ] {
        let found = Command::new(tool)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            missing.push(format!("{tool} ({how})"));
        }
    }
    if !mqtt_bundle().exists() {
        missing.push("mqtt.js browser build (npm install --prefix tests/browser)".into());
    }
    assert!(
        missing.is_empty(),
        "tests/browser.rs needs: {} (.ci/run installs them)",
        missing.join(", ")
    );
}

fn mqtt_bundle() -> PathBuf {
    browser_dir().join("node_modules/mqtt/dist/mqtt.min.js")
}

fn tool(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.crt`) and a server certificate for 127.0.0.1 signed by it
/// (`server.crt`, `server.key`).
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=midge browser test CA",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    tool(dir, "openssl", &args);
    let mut args = vec!["req", "-new"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    tool(dir, "openssl", &args);
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    tool(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// A `$HOME` whose NSS database (what Chromium on Linux consults for locally
/// trusted roots) trusts `ca` for TLS servers.
fn home_trusting(dir: &Path, ca: &Path) -> PathBuf {
    let home = dir.join("home");
    let db = home.join(".pki/nssdb");
    fs::create_dir_all(&db).expect("create nssdb dir");
    let db_arg = format!("sql:{}", db.display());
    tool(dir, "certutil", &["-N", "-d", &db_arg, "--empty-password"]);
    let ca = ca.display().to_string();
    tool(
        dir,
        "certutil",
        &[
            "-A",
            "-d",
            &db_arg,
            "-n",
            "midge browser test CA",
            "-t",
            "C,,",
            "-i",
            &ca,
        ],
    );
    home
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(loopback(port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Just enough of the Chrome DevTools protocol: a WebSocket client and JSON commands
// ---------------------------------------------------------------------------------------------

/// A DevTools connection to the browser target, with the page console and
/// the page's WebSocket traffic gathered from the events that arrive between
/// replies.
struct DevTools {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u64,
    console: Vec<String>,
    sockets: SocketLog,
}

/// What the browser itself reports about its WebSockets (Network domain).
#[derive(Default)]
struct SocketLog {
    /// Handshake request headers, as the browser sent them.
    requests: Vec<Value>,
    /// Handshake response headers, as the browser received them.
    responses: Vec<Value>,
    /// Payload sizes of the data frames sent and received.
    sent: Vec<usize>,
    received: Vec<usize>,
}

/// A header's value, whatever the case of its name.
fn header<'v>(headers: &'v Value, name: &str) -> Option<&'v str> {
    headers
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Bytes carried by a DevTools frame event (binary payloads come base64).
fn frame_len(response: &Value) -> Option<usize> {
    let data = response["payloadData"].as_str()?;
    match response["opcode"].as_u64()? {
        1 => Some(data.len()),
        2 => Some(data.len() / 4 * 3 - data.bytes().rev().take_while(|&b| b == b'=').count()),
        _ => None,
    }
}

impl DevTools {
    fn connect(port: u16, path: &str, deadline: Instant) -> Result<DevTools, String> {
        let mut stream = TcpStream::connect_timeout(&loopback(port), WAIT)
            .map_err(|e| format!("connect to DevTools port {port}: {e}"))?;
        // A fixed key is fine for a test client; Chromium checks its form only.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("DevTools handshake: {e}"))?;
        let mut dt = DevTools {
            stream,
            buf: Vec::new(),
            next_id: 0,
            console: Vec::new(),
            sockets: SocketLog::default(),
        };
        loop {
            if let Some(end) = dt.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&dt.buf[..end]).into_owned();
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(format!("DevTools refused the WebSocket upgrade: {head}"));
                }
                dt.buf.drain(..end + 4);
                return Ok(dt);
            }
            dt.fill(deadline)?;
        }
    }

    /// Reads what is there (at most ~0.5 s), failing at the deadline.
    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out waiting for Chromium".into());
        }
        let _ = self
            .stream
            .set_read_timeout(Some(left.min(Duration::from_millis(500))));
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("Chromium closed the DevTools connection".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(format!("reading from DevTools: {e}")),
        }
    }

    /// Sends one masked client frame.
    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mut frame = vec![0x80 | opcode];
        let n = payload.len();
        if n < 126 {
            frame.push(0x80 | n as u8);
        } else if let Ok(n16) = u16::try_from(n) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&n16.to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("writing to DevTools: {e}"))
    }

    /// One complete frame off the buffer: (fin, opcode, payload).
    fn take_frame(&mut self) -> Result<Option<(bool, u8, Vec<u8>)>, String> {
        let (Some(&b0), Some(&b1)) = (self.buf.first(), self.buf.get(1)) else {
            return Ok(None);
        };
        if b1 & 0x80 != 0 {
            return Err("DevTools sent a masked frame".into());
        }
        let (len, head) = match b1 & 0x7f {
            126 => match self.buf.get(2..4) {
                Some(b) => (usize::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match self.buf.get(2..10) {
                Some(b) => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(b);
                    let n = usize::try_from(u64::from_be_bytes(n))
                        .map_err(|_| "DevTools frame too large".to_string())?;
                    (n, 10)
                }
                None => return Ok(None),
            },
            n => (usize::from(n), 2),
        };
        let Some(payload) = self.buf.get(head..head + len) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.buf.drain(..head + len);
        Ok(Some((b0 & 0x80 != 0, b0 & 0x0f, payload)))
    }

    /// One whole message, reassembled from its fragments; pings answered.
    fn recv(&mut self, deadline: Instant) -> Result<Vec<u8>, String> {
        let mut message = Vec::new();
        loop {
            let (fin, opcode, payload) = loop {
                if let Some(frame) = self.take_frame()? {
                    break frame;
                }
                self.fill(deadline)?;
            };
            match opcode {
                0x8 => return Err("Chromium closed the DevTools WebSocket".into()),
                0x9 => self.send_frame(0xA, &payload)?,
                0xA => {}
                _ => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return Ok(message);
                    }
                }
            }
        }
    }

    /// Runs one command (on a page session, or on the browser without one)
    /// and returns its result; events that arrive meanwhile are noted.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
        deadline: Instant,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.send_frame(0x1, msg.to_string().as_bytes())?;
        loop {
            let raw = self.recv(deadline)?;
            let v: Value = serde_json::from_slice(&raw).map_err(|e| {
                format!(
                    "DevTools sent bad JSON ({e}): {}",
                    String::from_utf8_lossy(&raw)
                )
            })?;
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    return Err(format!("{method}: {e}"));
                }
                return Ok(v["result"].clone());
            }
            self.note_event(&v);
        }
    }

    fn note_event(&mut self, v: &Value) {
        let p = &v["params"];
        let line = match v["method"].as_str() {
            Some("Network.webSocketWillSendHandshakeRequest") => {
                self.sockets.requests.push(p["request"]["headers"].clone());
                return;
            }
            Some("Network.webSocketHandshakeResponseReceived") => {
                self.sockets
                    .responses
                    .push(p["response"]["headers"].clone());
                return;
            }
            Some("Network.webSocketFrameSent") => {
                self.sockets.sent.extend(frame_len(&p["response"]));
                return;
            }
            Some("Network.webSocketFrameReceived") => {
                self.sockets.received.extend(frame_len(&p["response"]));
                return;
            }
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| match &x["value"] {
                                Value::String(s) => s.clone(),
                                Value::Null => x["description"].as_str().unwrap_or("").to_string(),
                                other => other.to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "console.{}: {}",
                    p["type"].as_str().unwrap_or("?"),
                    args.join(" ")
                )
            }
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                let text = d["exception"]["description"]
                    .as_str()
                    .or(d["text"].as_str())
                    .unwrap_or("?");
                format!("exception: {text}")
            }
            Some("Log.entryAdded") => {
                let e = &p["entry"];
                format!(
                    "{} ({}): {} {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["source"].as_str().unwrap_or("?"),
                    e["text"].as_str().unwrap_or(""),
                    e["url"].as_str().unwrap_or("")
                )
            }
            _ => return,
        };
        self.console.push(line);
    }
}

/// Standard base64 (for the screenshot DevTools returns).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = chunk.len().checked_sub(1)?;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------------------------

/// Headless Chromium driven over DevTools, one tab at a time. Dropping it
/// asks the browser to close, then kills it if it has not exited within 5 s.
struct Chromium {
    child: Child,
    log: PathBuf,
    devtools: Option<DevTools>,
    target: Value,
    session: String,
    /// No step may run past this (see [`BROWSER_LIMIT`]).
    overall: Instant,
}

impl Chromium {
    fn launch(dir: &Path, home: &Path) -> Chromium {
        let profile = dir.join("profile");
        fs::create_dir_all(&profile).expect("create profile dir");
        let log = dir.join("chromium.log");
        let out = fs::File::create(&log).expect("create chromium log");
        let err = out.try_clone().expect("clone chromium log");
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--password-store=basic",
                "--window-size=1000,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .env("HOME", home)
            .env("TMPDIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
        let mut browser = Chromium {
            child,
            log,
            devtools: None,
            target: Value::Null,
            session: String::new(),
            overall: Instant::now() + BROWSER_LIMIT,
        };
        let deadline = browser.until(LAUNCH_LIMIT);
        if let Err(why) = browser.connect(&profile, deadline) {
            panic!(
                "chromium did not come up: {why}\n---- chromium log ----\n{}",
                browser.log_text()
            );
        }
        browser
    }

    /// Waits for the DevTools port and connects to it.
    fn connect(&mut self, profile: &Path, deadline: Instant) -> Result<(), String> {
        // Chromium writes "<port>\n<browser target path>" once it listens.
        let active = profile.join("DevToolsActivePort");
        let (port, path) = loop {
            let text = fs::read_to_string(&active).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(Ok(port)), Some(path)) =
                (lines.next().map(str::parse::<u16>), lines.next())
            {
                break (port, path.to_string());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromium exited with {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("no {} within {LAUNCH_LIMIT:?}", active.display()));
            }
            thread::sleep(Duration::from_millis(50));
        };
        self.devtools = Some(DevTools::connect(port, &path, deadline)?);
        Ok(())
    }

    /// Now plus `limit`, but never past the overall deadline.
    fn until(&self, limit: Duration) -> Instant {
        (Instant::now() + limit).min(self.overall)
    }

    /// Opens a new tab and attaches to it.
    fn open_tab(&mut self) -> Result<(), String> {
        let deadline = self.until(PAGE_LIMIT);
        let dt = self.devtools.as_mut().ok_or("not connected to DevTools")?;
        let target = dt.call(
            None,
            "Target.createTarget",
            json!({ "url": "about:blank" }),
            deadline,
        )?;
        self.target = target["targetId"].clone();
        dt.sockets = SocketLog::default();
        self.attach_page(deadline)
    }

    /// Attaches a session to our page target. Needed again after a failed
    /// load: an error page (e.g. a certificate error) ends the old session.
    fn attach_page(&mut self, deadline: Instant) -> Result<(), String> {
        let dt = self.devtools.as_mut().ok_or("not connected to DevTools")?;
        let attached = dt.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": self.target, "flatten": true }),
            deadline,
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or("Target.attachToTarget gave no sessionId")?
            .to_string();
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            dt.call(Some(&session), domain, json!({}), deadline)?;
        }
        self.session = session;
        Ok(())
    }

    fn devtools(&mut self) -> (&mut DevTools, &str) {
        (
            self.devtools.as_mut().expect("attached to chromium"),
            &self.session,
        )
    }

    /// Loads `url` and waits for the page's JSON result (the one carrying
    /// `tag`, not a result still showing from the previous page).
    fn run_page(&mut self, url: &str, tag: &str) -> Result<Value, String> {
        let deadline = self.until(PAGE_LIMIT);
        let (dt, session) = self.devtools();
        let session = Some(session.to_string());
        let session = session.as_deref();
        let nav = dt.call(session, "Page.navigate", json!({ "url": url }), deadline)?;
        if let Some(err) = nav["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(format!("loading {url} failed: {err}"));
        }
        let probe = json!({
            "expression": "(document.body && document.body.dataset.result) || ''",
            "returnByValue": true,
        });
        loop {
            // Fails while the navigation swaps documents: just ask again.
            if let Ok(r) = dt.call(session, "Runtime.evaluate", probe.clone(), deadline) {
                if let Some(text) = r["result"]["value"].as_str().filter(|t| !t.is_empty()) {
                    let result: Value = serde_json::from_str(text)
                        .map_err(|e| format!("page result is not JSON ({e}): {text}"))?;
                    if result["tag"] == json!(tag) {
                        return Ok(result);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err("no result from the page in time".into());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closes the tab, as a user would: its WebSockets go with it. (Only
    /// navigating away is not enough: Chromium may keep the page, sockets
    /// open, in its back/forward cache.)
    fn close_tab(&mut self) -> Result<(), String> {
        let deadline = self.until(PAGE_LIMIT);
        let dt = self.devtools.as_mut().ok_or("not connected to DevTools")?;
        let target = json!({ "targetId": self.target });
        dt.call(None, "Target.closeTarget", target, deadline)
            .map(|_| ())
    }

    /// Saves a screenshot of the page under target/tmp/; returns its path or why not.
    fn screenshot(&mut self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let capture = |me: &mut Chromium| {
            let (dt, session) = me.devtools();
            let session = session.to_string();
            dt.call(
                Some(&session),
                "Page.captureScreenshot",
                json!({ "format": "png" }),
                deadline,
            )
        };
        let shot = match capture(self) {
            Ok(r) => r,
            Err(_) => match self.attach_page(deadline).and_then(|()| capture(self)) {
                Ok(r) => r,
                Err(e) => return format!("(no screenshot: {e})"),
            },
        };
        let Some(png) = shot["data"].as_str().and_then(base64_decode) else {
            return "(no screenshot: DevTools sent no PNG)".into();
        };
        let path =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{name}-failure.png"));
        match fs::write(&path, png) {
            Ok(()) => path.display().to_string(),
            Err(e) => format!("(no screenshot: writing {}: {e})", path.display()),
        }
    }

    fn sockets(&self) -> &SocketLog {
        &self
            .devtools
            .as_ref()
            .expect("connected to chromium")
            .sockets
    }

    fn console(&self) -> String {
        self.devtools
            .as_ref()
            .map(|d| d.console.join("\n"))
            .unwrap_or_default()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if let Some(dt) = self.devtools.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(2);
            let _ = dt.call(None, "Browser.close", json!({}), deadline);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn chromium_speaks_mqtt_over_ws_and_wss_to_pages_from_http_dir() {
    require_tools();
    let scratch = Scratch(temp_dir("browser"));
    let dir = scratch.0.clone();
    make_certs(&dir);
    let home = home_trusting(&dir, &dir.join("ca.crt"));

    // The page, its script and mqtt.js, served by midge itself.
    let www = dir.join("www");
    fs::create_dir_all(&www).expect("create www");
    for f in ["index.html", "page.js"] {
        fs::copy(browser_dir().join("page").join(f), www.join(f)).expect("copy page");
    }
    fs::copy(mqtt_bundle(), www.join("mqtt.min.js")).expect("copy mqtt.min.js");

    let ws_port = free_port();
    let wss_port = free_port();
    let b = TestBroker::start(&format!(
        "listener {ws_port} 127.0.0.1\nprotocol websockets\nhttp_dir {www}\n\
         listener {wss_port} 127.0.0.1\nprotocol websockets\nhttp_dir {www}\n\
         certfile {dir}/server.crt\nkeyfile {dir}/server.key\n",
        www = www.display(),
        dir = dir.display(),
    ));
    wait_port(ws_port);
    wait_port(wss_port);

    let runs = [
        (
            "ws",
            format!("http://127.0.0.1:{ws_port}/"),
            format!("ws://127.0.0.1:{ws_port}/mqtt"),
            4,
        ),
        (
            "ws31",
            format!("http://127.0.0.1:{ws_port}/"),
            format!("ws://127.0.0.1:{ws_port}/mqtt"),
            3,
        ),
        (
            "wss",
            format!("https://127.0.0.1:{wss_port}/"),
            format!("wss://127.0.0.1:{wss_port}/mqtt"),
            5,
        ),
    ];
    for (name, ..) in &runs {
        let tag = format!("browser/{name}");
        publish_once(
            b.port,
            &format!("{tag}/retained"),
            b"kept for the browser",
            1,
            true,
        );
        publish_once(
            b.port,
            &format!("{tag}/retained-big"),
            &pattern(BIG, 7),
            1,
            true,
        );
    }
    let mut watcher = RawClient::connected(b.port, "tcp-watcher");
    watcher.subscribe(&[("browser/+/from-browser", 1), ("browser/+/gone", 1)]);

    let mut chromium = Chromium::launch(&dir, &home);
    for (name, page, mqtt_url, version) in &runs {
        let tag = format!("browser/{name}");
        let url = format!("{page}?url={mqtt_url}&v={version}&tag={tag}&big={BIG}");
        if let Err(e) = chromium.open_tab() {
            panic!("{name}: cannot open a tab: {e}");
        }
        let result = chromium.run_page(&url, &tag);
        let ok = matches!(&result, Ok(r) if r["ok"] == json!(true));
        if !ok {
            let shot = chromium.screenshot(name);
            panic!(
                "{name}: the browser page failed: {}\nscreenshot: {shot}\n---- page console ----\n{}\n",
                match &result {
                    Ok(r) => serde_json::to_string_pretty(r).unwrap_or_default(),
                    Err(e) => e.clone(),
                },
                chromium.console()
            );
        }
        // The browser offered compression on every handshake and midge
        // declined it every time: otherwise the page's check proves nothing.
        let sockets = chromium.sockets();
        assert!(
            !sockets.requests.is_empty(),
            "{name}: DevTools reported no WebSocket handshake"
        );
        for req in &sockets.requests {
            let offer = header(req, "Sec-WebSocket-Extensions").unwrap_or("");
            assert!(
                offer.contains("permessage-deflate"),
                "{name}: browser sent no deflate offer: {req}"
            );
        }
        for resp in &sockets.responses {
            let agreed = header(resp, "Sec-WebSocket-Extensions");
            assert_eq!(agreed, None, "{name}: midge agreed to an extension: {resp}");
        }
        // The browser sends the 100 kB PUBLISH as one frame: midge decoded a
        // 64-bit frame length from a real client.
        let largest = sockets.sent.iter().max().copied().unwrap_or(0);
        assert!(
            largest > BIG,
            "{name}: no frame over {BIG} bytes sent (largest {largest})"
        );
        println!(
            "{name}: {} handshakes, e.g. {}; {} data frames sent (largest {} bytes), {} received (largest {} bytes)",
            sockets.requests.len(),
            sockets.requests.last().map(Value::to_string).unwrap_or_default(),
            sockets.sent.len(),
            sockets.sent.iter().max().unwrap_or(&0),
            sockets.received.len(),
            sockets.received.iter().max().unwrap_or(&0),
        );
        // The broker saw the protocol the page asked for, in Mosquitto's
        // log numbering: p1 is 3.1, p2 is 3.1.1, p5 is 5.
        let level = match version {
            3 => 1,
            4 => 2,
            v => *v,
        };
        let want = format!("as {} (p{level},", tag.replace('/', "-"));
        assert!(b.log().contains(&want), "{name}: broker log lacks {want:?}");
        let p = watcher.expect_publish(WAIT);
        assert_eq!(p.topic, format!("{tag}/from-browser"));
        assert!(
            p.payload == pattern(BIG, 13),
            "{name}: the browser's {BIG}-byte payload arrived over TCP as {} different bytes",
            p.payload.len()
        );
        // Closing the tab drops its WebSocket without an MQTT DISCONNECT.
        if let Err(e) = chromium.close_tab() {
            panic!("{name}: closing the tab failed: {e}");
        }
        let p = watcher.expect_publish(WAIT);
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            (format!("{tag}/gone").as_str(), b"tab closed".as_slice()),
            "{name}: the will of the page's client after its tab closed"
        );
        println!(
            "{name}: {}",
            result.map(|r| r["steps"].to_string()).unwrap_or_default()
        );
    }
    drop(chromium);
    drop(b);
}
