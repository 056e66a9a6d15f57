//! Shared harness for the black-box integration tests.
//!
//! Owns: starting the broker binary (`midge`, or whatever `MIDGE_TEST_BROKER` names, e.g.
//! `/usr/sbin/mosquitto` to validate the suite itself) on a free loopback port with a temp
//! config; a tiny hand-written MQTT 3.1/3.1.1 encoder and decoder for raw-socket tests; a thin
//! wrapper around rumqttc's synchronous client; running command-line tools with a deadline.
//!
//! Must not: depend on the midge crate (the suite judges the binary from the outside only),
//! wait without a deadline, or kill anything but the child it started.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, LastWill, MqttOptions, Packet as RPacket, Publish, QoS};

/// How long the broker may take to start listening before the test gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound for "this should arrive" waits: generous, since tests run in parallel.
pub const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Broker process
// ---------------------------------------------------------------------------------------------

/// The broker binary under test.
pub fn broker_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MIDGE_TEST_BROKER") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    match option_env!("CARGO_BIN_EXE_midge") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "no broker binary to test: set MIDGE_TEST_BROKER=/path/to/broker \
             (e.g. /usr/sbin/mosquitto), or run the suite inside the midge crate"
        ),
    }
}

/// True when the suite is pointed at Mosquitto itself (to validate the tests). Used only for
/// the few documented places where Mosquitto 2.0.11 is looser than midge promises to be.
pub fn testing_mosquitto() -> bool {
    broker_binary()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("mosquitto"))
}

/// Extra time allowed for keepalive expiry: Mosquitto 2.0 only checks keepalives on a
/// 5-second tick, so it closes a keepalive-1 client 1.5 to 6.5 s after its last packet.
/// midge arms a timer per connection and gets no extra allowance.
pub fn keepalive_tick_slack() -> Duration {
    if testing_mosquitto() {
        Duration::from_secs(5)
    } else {
        Duration::ZERO
    }
}

/// Ports handed out in this test process; bind(0) may return a port another test has just
/// released, and two brokers racing for one port would make both tests flaky.
fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that was free a moment ago and was not handed out before in this process.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            Ok(l) => l,
            Err(_) => continue,
        };
        let port = match listener.local_addr() {
            Ok(a) => a.port(),
            Err(_) => continue,
        };
        drop(listener);
        let mut used = used_ports().lock().unwrap_or_else(|e| e.into_inner());
        if used.insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port");
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "midge-itest-{tag}-{}-{n}-{nanos}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

thread_local! {
    /// The program `start_program` runs the broker under (empty: none).
    static WRAPPER: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A running broker on its own loopback port and temp dir; killed and cleaned up on drop.
pub struct TestBroker {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl TestBroker {
    /// Starts the broker with `listener <port> 127.0.0.1`, `allow_anonymous true` and
    /// `extra_config` appended.
    pub fn start(extra_config: &str) -> TestBroker {
        Self::start_with_args(&[], extra_config)
    }

    /// Like [`TestBroker::start`], with extra command-line arguments after `-c <file>`.
    pub fn start_with_args(args: &[&str], extra_config: &str) -> TestBroker {
        Self::start_program(&broker_binary(), args, extra_config)
    }

    /// Like [`TestBroker::start`], the broker started by `wrapper` (a
    /// program and its arguments, e.g. `prlimit --nofile=32:32`); the PID
    /// is the wrapper's, which execs the broker.
    pub fn start_under(wrapper: &[&str], extra_config: &str) -> TestBroker {
        WRAPPER.with(|w| *w.borrow_mut() = wrapper.iter().map(|s| s.to_string()).collect());
        let b = Self::start_program(&broker_binary(), &[], extra_config);
        WRAPPER.with(|w| w.borrow_mut().clear());
        b
    }

    /// Starts `bin` with `-c <file>` and `args` on a free port (retried when
    /// another test wins the race for it), waiting until it listens.
    fn start_program(bin: &Path, args: &[&str], extra_config: &str) -> TestBroker {
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let dir = temp_dir("broker");
            let conf = dir.join("midge.conf");
            let mut text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n");
            text.push_str(extra_config);
            if !text.ends_with('\n') {
                text.push('\n');
            }
            fs::write(&conf, text).expect("write config");
            let log_path = dir.join("broker.log");
            let log = fs::File::create(&log_path).expect("create log file");
            let log2 = log.try_clone().expect("clone log file");
            let wrapper = WRAPPER.with(|w| w.borrow().clone());
            let mut cmd = match wrapper.split_first() {
                Some((program, rest)) => {
                    let mut c = Command::new(program);
                    c.args(rest).arg(bin);
                    c
                }
                None => Command::new(bin),
            };
            let mut child = cmd
                .arg("-c")
                .arg(&conf)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let started = Instant::now();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_log = fs::read_to_string(&log_path).unwrap_or_default();
                    let _ = fs::remove_dir_all(&dir);
                    if last_log.to_ascii_lowercase().contains("in use") {
                        break; // lost a race for the port: try another one
                    }
                    panic!(
                        "broker {} exited during start-up with {status}; log:\n{last_log}",
                        bin.display()
                    );
                }
                if TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok() {
                    return TestBroker { port, child, dir };
                }
                if started.elapsed() > START_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    let _ = fs::remove_dir_all(&dir);
                    panic!("broker did not listen on port {port} within {START_TIMEOUT:?}; log:\n{log}");
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("broker could not bind a free port after 5 attempts; last log:\n{last_log}");
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the broker wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// True while the broker process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics, with the broker log, if the broker process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("broker exited with {status}; log:\n{}", self.log());
        }
    }

    /// Virtual memory size of the broker process in KiB (Linux only).
    pub fn vm_size_kib(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmSize:")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- broker log (port {}) ----\n{}\n---- end of broker log ----",
                self.port,
                self.log()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Running command-line tools with a deadline
// ---------------------------------------------------------------------------------------------

/// True if `cmd` can be started (it is installed and on PATH).
pub fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

pub struct Finished {
    /// None if the process had to be killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A started command whose output is collected by reader threads.
pub struct Running {
    child: Child,
    out: Option<thread::JoinHandle<String>>,
    err: Option<thread::JoinHandle<String>>,
}

fn collect<R: Read + Send + 'static>(r: Option<R>) -> Option<thread::JoinHandle<String>> {
    r.map(|mut r| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    })
}

impl Running {
    pub fn spawn(program: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let out = collect(child.stdout.take());
        let err = collect(child.stderr.take());
        Running { child, out, err }
    }

    /// True once the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `limit` for the process to exit, then kills it.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let stdout = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `program args` to completion, killing it after `limit`.
pub fn run(program: &Path, args: &[&str], limit: Duration) -> Finished {
    Running::spawn(program, args).finish(limit)
}

// ---------------------------------------------------------------------------------------------
// Raw MQTT 3.1 / 3.1.1 encoder
// ---------------------------------------------------------------------------------------------

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const UNSUBACK: u8 = 11;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

pub const PINGREQ_BYTES: [u8; 2] = [0xC0, 0x00];
pub const DISCONNECT_BYTES: [u8; 2] = [0xE0, 0x00];

/// The variable-length "remaining length" encoding.
pub fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A whole packet: fixed header byte, remaining length, body.
pub fn frame(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    out.extend(remaining_length(body.len()));
    out.extend_from_slice(body);
    out
}

fn put_bin(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V311,
}

#[derive(Clone, Debug)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// The fields of a CONNECT packet.
#[derive(Clone, Debug)]
pub struct Connect {
    pub protocol: Protocol,
    pub client_id: String,
    pub clean: bool,
    pub keepalive: u16,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl Connect {
    /// MQTT 3.1.1, clean session, keepalive 60 s, no will, no credentials.
    pub fn new(client_id: &str) -> Connect {
        Connect {
            protocol: Protocol::V311,
            client_id: client_id.to_string(),
            clean: true,
            keepalive: 60,
            will: None,
            username: None,
            password: None,
        }
    }

    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }

    pub fn keepalive(mut self, secs: u16) -> Connect {
        self.keepalive = secs;
        self
    }

    pub fn protocol(mut self, p: Protocol) -> Connect {
        self.protocol = p;
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Connect {
        self.will = Some(Will {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos,
            retain,
        });
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self.protocol {
            Protocol::V31 => {
                put_bin(&mut body, b"MQIsdp");
                body.push(3);
            }
            Protocol::V311 => {
                put_bin(&mut body, b"MQTT");
                body.push(4);
            }
        }
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | ((w.qos & 3) << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        body.push(flags);
        body.extend_from_slice(&self.keepalive.to_be_bytes());
        put_bin(&mut body, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            put_bin(&mut body, w.topic.as_bytes());
            put_bin(&mut body, &w.payload);
        }
        if let Some(u) = &self.username {
            put_bin(&mut body, u.as_bytes());
        }
        if let Some(p) = &self.password {
            put_bin(&mut body, p);
        }
        frame(0x10, &body)
    }
}

pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    pid: u16,
) -> Vec<u8> {
    let mut header = 0x30 | ((qos & 3) << 1);
    if retain {
        header |= 0x01;
    }
    if dup {
        header |= 0x08;
    }
    let mut body = Vec::new();
    put_bin(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(header, &body)
}

pub fn subscribe_packet(pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    for (f, q) in filters {
        put_bin(&mut body, f.as_bytes());
        body.push(*q);
    }
    frame(0x82, &body)
}

pub fn unsubscribe_packet(pid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    for f in filters {
        put_bin(&mut body, f.as_bytes());
    }
    frame(0xA2, &body)
}

/// PUBACK, PUBREC, PUBREL (with its required flags 0b0010) or PUBCOMP.
pub fn ack_packet(kind: u8, pid: u16) -> Vec<u8> {
    let header = (kind << 4) | if kind == PUBREL { 0x02 } else { 0 };
    frame(header, &pid.to_be_bytes())
}

// ---------------------------------------------------------------------------------------------
// Raw decoder
// ---------------------------------------------------------------------------------------------

/// One packet as read off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub header: u8,
    pub body: Vec<u8>,
}

/// A decoded PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pub {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub pid: u16,
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }

    /// The packet id at the start of the body (acks, SUBACK, UNSUBACK).
    pub fn pid(&self) -> Option<u16> {
        Some(u16::from_be_bytes([
            *self.body.first()?,
            *self.body.get(1)?,
        ]))
    }

    /// (session present, return code) of a CONNACK.
    pub fn connack(&self) -> Option<(bool, u8)> {
        if self.kind() != CONNACK || self.body.len() != 2 {
            return None;
        }
        Some((self.body[0] & 1 == 1, self.body[1]))
    }

    /// The granted QoS list of a SUBACK.
    pub fn suback_codes(&self) -> Option<Vec<u8>> {
        if self.kind() != SUBACK {
            return None;
        }
        self.body.get(2..).map(|c| c.to_vec())
    }

    pub fn publish(&self) -> Option<Pub> {
        if self.kind() != PUBLISH {
            return None;
        }
        let qos = (self.header >> 1) & 3;
        let tlen = usize::from(u16::from_be_bytes([
            *self.body.first()?,
            *self.body.get(1)?,
        ]));
        let topic = String::from_utf8(self.body.get(2..2 + tlen)?.to_vec()).ok()?;
        let mut rest = 2 + tlen;
        let mut pid = 0;
        if qos > 0 {
            pid = u16::from_be_bytes([*self.body.get(rest)?, *self.body.get(rest + 1)?]);
            rest += 2;
        }
        Some(Pub {
            topic,
            payload: self.body.get(rest..)?.to_vec(),
            qos,
            retain: self.header & 1 == 1,
            dup: self.header & 0x08 != 0,
            pid,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    Timeout,
    Closed,
    Malformed,
}

/// Splits one complete packet off the front of `buf`, if there is one.
fn parse_packet(buf: &mut Vec<u8>) -> Result<Option<Packet>, ReadError> {
    let mut len: usize = 0;
    let mut mult: usize = 1;
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len += usize::from(b & 0x7F) * mult;
        mult *= 128;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err(ReadError::Malformed);
        }
    }
    if buf.len() < i + len {
        return Ok(None);
    }
    let header = buf[0];
    let body = buf[i..i + len].to_vec();
    buf.drain(..i + len);
    Ok(Some(Packet { header, body }))
}

fn is_closed_error(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

// ---------------------------------------------------------------------------------------------
// Raw client
// ---------------------------------------------------------------------------------------------

/// A TCP connection speaking hand-encoded MQTT, with bounded reads.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Packets read while waiting for something else (e.g. a PUBLISH before a SUBACK).
    stash: VecDeque<Packet>,
    next_pid: u16,
}

impl RawClient {
    /// A bare TCP connection, nothing sent yet.
    pub fn open(port: u16) -> RawClient {
        let stream = TcpStream::connect_timeout(&loopback(port), WAIT)
            .unwrap_or_else(|e| panic!("tcp connect to 127.0.0.1:{port}: {e}"));
        let _ = stream.set_nodelay(true);
        RawClient {
            stream,
            buf: Vec::new(),
            stash: VecDeque::new(),
            next_pid: 1,
        }
    }

    /// Sends CONNECT and returns the client with the CONNACK's (session present, return code).
    pub fn connect_with(port: u16, c: &Connect) -> (RawClient, bool, u8) {
        let mut client = RawClient::open(port);
        client.send(&c.encode());
        let p = client.expect_kind(CONNACK, WAIT);
        let (sp, rc) = p
            .connack()
            .unwrap_or_else(|| panic!("malformed CONNACK {p:?}"));
        (client, sp, rc)
    }

    /// A connected MQTT 3.1.1 clean-session client; panics unless the broker accepts it.
    pub fn connected(port: u16, client_id: &str) -> RawClient {
        let (c, _, rc) = Self::connect_with(port, &Connect::new(client_id));
        assert_eq!(rc, 0, "CONNACK return code for {client_id:?}");
        c
    }

    pub fn pid(&mut self) -> u16 {
        let pid = self.next_pid;
        self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
        pid
    }

    /// Writes all bytes; panics if the socket is already unusable.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send failed: {e}"));
    }

    /// Writes bytes, ignoring errors (for input that may make the broker hang up).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The next packet, waiting at most `timeout`.
    pub fn read_packet(&mut self, timeout: Duration) -> Result<Packet, ReadError> {
        if let Some(p) = self.stash.pop_front() {
            return Ok(p);
        }
        self.read_wire(timeout)
    }

    fn read_wire(&mut self, timeout: Duration) -> Result<Packet, ReadError> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(p) = parse_packet(&mut self.buf)? {
                return Ok(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_closed_error(&e) => return Err(ReadError::Closed),
                Err(_) => {}
            }
        }
    }

    /// Waits for a packet of `kind`, stashing any others for later reads.
    pub fn expect_kind(&mut self, kind: u8, timeout: Duration) -> Packet {
        if let Some(i) = self.stash.iter().position(|p| p.kind() == kind) {
            if let Some(p) = self.stash.remove(i) {
                return p;
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_wire(left) {
                Ok(p) if p.kind() == kind => return p,
                Ok(p) => self.stash.push_back(p),
                Err(e) => panic!(
                    "waiting for packet type {kind}: {e:?} (stashed: {:?})",
                    self.stash
                ),
            }
        }
    }

    /// The next PUBLISH within `timeout`, or None. Other packets are stashed.
    pub fn next_publish(&mut self, timeout: Duration) -> Option<Pub> {
        if let Some(i) = self.stash.iter().position(|p| p.kind() == PUBLISH) {
            return self.stash.remove(i).and_then(|p| p.publish());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_wire(left) {
                Ok(p) if p.kind() == PUBLISH => {
                    return Some(
                        p.publish()
                            .unwrap_or_else(|| panic!("malformed PUBLISH {p:?}")),
                    )
                }
                Ok(p) => self.stash.push_back(p),
                Err(ReadError::Timeout) => return None,
                Err(e) => panic!("waiting for PUBLISH: {e:?}"),
            }
        }
    }

    pub fn expect_publish(&mut self, timeout: Duration) -> Pub {
        self.next_publish(timeout)
            .unwrap_or_else(|| panic!("no PUBLISH within {timeout:?}"))
    }

    /// Reads publishes until one arrives on `marker_topic`; returns those before it.
    /// Used to prove something was NOT delivered without sleeping: messages from one
    /// publisher reach one subscriber in order, so anything else would come first.
    pub fn publishes_until(&mut self, marker_topic: &str, timeout: Duration) -> Vec<Pub> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = self
                .next_publish(left)
                .unwrap_or_else(|| panic!("marker {marker_topic:?} not seen; got {seen:?}"));
            if p.topic == marker_topic {
                return seen;
            }
            seen.push(p);
        }
    }

    /// Subscribes and returns the SUBACK's return codes.
    pub fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        let pid = self.pid();
        self.send(&subscribe_packet(pid, filters));
        let p = self.expect_kind(SUBACK, WAIT);
        assert_eq!(p.pid(), Some(pid), "SUBACK packet id");
        p.suback_codes().unwrap_or_default()
    }

    /// Publishes and completes the QoS 1 / QoS 2 handshake.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let pid = self.pid();
        self.send(&publish_packet(topic, payload, qos, retain, false, pid));
        match qos {
            1 => {
                let p = self.expect_kind(PUBACK, WAIT);
                assert_eq!(p.pid(), Some(pid), "PUBACK packet id");
            }
            2 => {
                let p = self.expect_kind(PUBREC, WAIT);
                assert_eq!(p.pid(), Some(pid), "PUBREC packet id");
                self.send(&ack_packet(PUBREL, pid));
                let p = self.expect_kind(PUBCOMP, WAIT);
                assert_eq!(p.pid(), Some(pid), "PUBCOMP packet id");
            }
            _ => {}
        }
    }

    /// Sends PINGREQ and waits for PINGRESP: proves the connection is alive and served.
    pub fn ping(&mut self) {
        self.send(&PINGREQ_BYTES);
        self.expect_kind(PINGRESP, WAIT);
    }

    /// Waits until the broker closes the connection (read returns 0 or a reset), ignoring
    /// any packets it sends first. Returns how long that took; panics after `within`.
    pub fn expect_closed(&mut self, within: Duration) -> Duration {
        match self.closed_within(within) {
            Some(t) => t,
            None => panic!("connection still open after {within:?}"),
        }
    }

    /// Some(elapsed) if the broker closes the connection within `within`.
    pub fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        let deadline = start + within;
        let mut chunk = [0u8; 4096];
        self.stash.clear();
        self.buf.clear();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e) if is_closed_error(&e) => return Some(start.elapsed()),
                Err(_) => {}
            }
        }
    }
}

/// Expects the connection to be closed within `within` (free-function form).
pub fn expect_closed(client: &mut RawClient, within: Duration) -> Duration {
    client.expect_closed(within)
}

/// Publishes one message from a fresh raw connection and disconnects cleanly.
pub fn publish_once(port: u16, topic: &str, payload: &[u8], qos: u8, retain: bool) {
    static N: AtomicU32 = AtomicU32::new(0);
    let id = format!("pub-once-{}", N.fetch_add(1, Ordering::SeqCst));
    let mut c = RawClient::connected(port, &id);
    c.publish(topic, payload, qos, retain);
    // A ping round trip after a QoS 0 publish proves the broker has read it before we go.
    c.ping();
    c.send_lossy(&DISCONNECT_BYTES);
}

// ---------------------------------------------------------------------------------------------
// rumqttc wrapper
// ---------------------------------------------------------------------------------------------

enum Ev {
    In(RPacket),
    Err(String),
}

/// A rumqttc synchronous client whose connection is driven by a background thread.
/// The thread stops at the first connection error (no automatic reconnects) or when the
/// client is dropped.
pub struct Mqtt {
    pub client: Client,
    events: Receiver<Ev>,
    stash: VecDeque<RPacket>,
    /// The error that ended the connection, once seen.
    pub ended: Option<String>,
}

pub fn options(port: u16, id: &str, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(clean);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

pub fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

pub fn qos_num(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

impl Mqtt {
    /// Connects with a clean session; panics unless CONNACK accepts.
    pub fn connect(port: u16, id: &str) -> Mqtt {
        Self::connect_opts(options(port, id, true)).0
    }

    /// Connects and returns the client plus the CONNACK's session-present flag.
    pub fn connect_opts(opts: MqttOptions) -> (Mqtt, bool) {
        let (client, mut connection) = Client::new(opts, 64);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for notification in connection.iter() {
                match notification {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ev::In(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Ev::Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let mut m = Mqtt {
            client,
            events: rx,
            stash: VecDeque::new(),
            ended: None,
        };
        let ack = m.wait_for("CONNACK", WAIT, |p| matches!(p, RPacket::ConnAck(_)));
        let RPacket::ConnAck(ack) = ack else {
            unreachable!()
        };
        assert_eq!(
            ack.code,
            rumqttc::ConnectReturnCode::Success,
            "CONNACK code"
        );
        (m, ack.session_present)
    }

    /// Connects with a will.
    pub fn connect_with_will(port: u16, id: &str, will: LastWill) -> Mqtt {
        let mut o = options(port, id, true);
        o.set_last_will(will);
        Self::connect_opts(o).0
    }

    fn next_event(&mut self, timeout: Duration) -> Option<RPacket> {
        if self.ended.is_some() {
            return None;
        }
        match self.events.recv_timeout(timeout) {
            Ok(Ev::In(p)) => Some(p),
            Ok(Ev::Err(e)) => {
                self.ended = Some(e);
                None
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = Some("event thread ended".into());
                None
            }
        }
    }

    /// Waits for an incoming packet matching `pred`; others are stashed.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&RPacket) -> bool,
    ) -> RPacket {
        if let Some(i) = self.stash.iter().position(&pred) {
            if let Some(p) = self.stash.remove(i) {
                return p;
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no {what} within {timeout:?}");
            }
            match self.next_event(left) {
                Some(p) if pred(&p) => return p,
                Some(p) => self.stash.push_back(p),
                None => {
                    if let Some(e) = &self.ended {
                        panic!("connection ended while waiting for {what}: {e}");
                    }
                }
            }
        }
    }

    /// Subscribes and returns the SUBACK return codes.
    pub fn subscribe(&mut self, filter: &str, q: u8) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, qos(q))
            .expect("queue SUBSCRIBE");
        match self.wait_for("SUBACK", WAIT, |p| matches!(p, RPacket::SubAck(_))) {
            RPacket::SubAck(s) => s.return_codes,
            _ => unreachable!(),
        }
    }

    pub fn unsubscribe(&mut self, filter: &str) {
        self.client.unsubscribe(filter).expect("queue UNSUBSCRIBE");
        self.wait_for("UNSUBACK", WAIT, |p| matches!(p, RPacket::UnsubAck(_)));
    }

    /// Publishes; for QoS 1 and 2 waits until the broker completed the handshake.
    pub fn publish(&mut self, topic: &str, q: u8, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos(q), retain, payload.to_vec())
            .expect("queue PUBLISH");
        match q {
            1 => {
                self.wait_for("PUBACK", WAIT, |p| matches!(p, RPacket::PubAck(_)));
            }
            2 => {
                self.wait_for("PUBCOMP", WAIT, |p| matches!(p, RPacket::PubComp(_)));
            }
            _ => {}
        }
    }

    /// The next incoming PUBLISH within `timeout`.
    pub fn next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        if let Some(i) = self
            .stash
            .iter()
            .position(|p| matches!(p, RPacket::Publish(_)))
        {
            if let Some(RPacket::Publish(p)) = self.stash.remove(i) {
                return Some(p);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.next_event(left) {
                Some(RPacket::Publish(p)) => return Some(p),
                Some(p) => self.stash.push_back(p),
                None if self.ended.is_some() => return None,
                None => {}
            }
        }
    }

    pub fn expect_publish(&mut self, timeout: Duration) -> Publish {
        match self.next_publish(timeout) {
            Some(p) => p,
            None => panic!(
                "no PUBLISH within {timeout:?} (connection ended: {:?})",
                self.ended
            ),
        }
    }

    /// Reads publishes until one arrives on `marker_topic`; returns those before it.
    pub fn publishes_until(&mut self, marker_topic: &str, timeout: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = self.next_publish(left).unwrap_or_else(|| {
                panic!(
                    "marker {marker_topic:?} not seen; got {:?}",
                    seen.iter().map(|p: &Publish| &p.topic).collect::<Vec<_>>()
                )
            });
            if p.topic == marker_topic {
                return seen;
            }
            seen.push(p);
        }
    }

    /// Sends DISCONNECT and waits (bounded) until the connection has ended.
    pub fn disconnect(mut self) {
        let _ = self.client.disconnect();
        let deadline = Instant::now() + WAIT;
        while self.ended.is_none() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = self.next_event(left);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Brokers with a whole config of the test's own, and clients on any address (tests/setups.rs)
// ---------------------------------------------------------------------------------------------

/// Panics with a clear message unless `[::1]` can be bound: the IPv6 tests need it, and CI
/// enables it (`.ci/run`: `sysctl -w net.ipv6.conf.lo.disable_ipv6=0`).
pub fn require_ipv6_loopback() {
    if let Err(e) = TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)) {
        panic!(
            "::1 is not available on this host ({e}); enable it with \
             `sysctl -w net.ipv6.conf.lo.disable_ipv6=0` (.ci/run does this)"
        );
    }
}

impl TestBroker {
    /// Starts the broker with exactly `config` (no listener added): every `{port}` (also in
    /// `args`) becomes a free port and every `{dir}` the broker's temp dir (its working dir). With `config` None no `-c` is given
    /// and the port goes on the command line (`-p`): Mosquitto's local-only mode. Waits until
    /// `probe` (an IP) accepts on the port; retries on another port when it was taken.
    pub fn start_config(
        config: Option<&str>,
        args: &[&str],
        probe: std::net::IpAddr,
    ) -> TestBroker {
        let bin = broker_binary();
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let dir = temp_dir("setup");
            let mut argv: Vec<String> = Vec::new();
            match config {
                Some(text) => {
                    let conf = dir.join("midge.conf");
                    let text = text
                        .replace("{port}", &port.to_string())
                        .replace("{dir}", &dir.display().to_string());
                    fs::write(&conf, text).expect("write config");
                    argv.push("-c".into());
                    argv.push(conf.display().to_string());
                }
                None => {
                    argv.push("-p".into());
                    argv.push(port.to_string());
                }
            }
            argv.extend(args.iter().map(|a| a.replace("{port}", &port.to_string())));
            let log_path = dir.join("broker.log");
            let log = fs::File::create(&log_path).expect("create log file");
            let log2 = log.try_clone().expect("clone log file");
            let mut child = Command::new(&bin)
                .args(&argv)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let started = Instant::now();
            let addr = SocketAddr::new(probe, port);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_log = fs::read_to_string(&log_path).unwrap_or_default();
                    let _ = fs::remove_dir_all(&dir);
                    if last_log.to_ascii_lowercase().contains("in use") {
                        break;
                    }
                    panic!("broker exited during start-up with {status}; log:\n{last_log}");
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return TestBroker { port, child, dir };
                }
                if started.elapsed() > START_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    let _ = fs::remove_dir_all(&dir);
                    panic!("broker did not listen on {addr} within {START_TIMEOUT:?}; log:\n{log}");
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("broker could not bind a free port after 5 attempts; last log:\n{last_log}");
    }
}

impl RawClient {
    /// A bare TCP connection to `addr` (e.g. `[::1]:port`), nothing sent yet.
    pub fn open_at(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, WAIT)
            .unwrap_or_else(|e| panic!("tcp connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        RawClient {
            stream,
            buf: Vec::new(),
            stash: VecDeque::new(),
            next_pid: 1,
        }
    }

    /// Sends CONNECT to `addr`; returns the client and the CONNACK return code.
    pub fn connect_at(addr: SocketAddr, c: &Connect) -> (RawClient, u8) {
        let mut client = RawClient::open_at(addr);
        client.send(&c.encode());
        let p = client.expect_kind(CONNACK, WAIT);
        let (_, rc) = p
            .connack()
            .unwrap_or_else(|| panic!("malformed CONNACK {p:?}"));
        (client, rc)
    }
}

// ---------------------------------------------------------------------------------------------
// Any broker binary
// ---------------------------------------------------------------------------------------------

impl TestBroker {
    /// Like [`TestBroker::start`], but runs `bin` (e.g. `/usr/sbin/mosquitto` next to midge in
    /// the same test) instead of [`broker_binary`].
    pub fn start_binary(bin: &Path, extra_config: &str) -> TestBroker {
        Self::start_program(bin, &[], extra_config)
    }
}

/// (topic, payload) pairs, for compact assertions.
pub fn pairs(pubs: &[Pub]) -> Vec<(String, String)> {
    pubs.iter()
        .map(|p| {
            (
                p.topic.clone(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect()
}

pub fn pair(topic: &str, payload: &str) -> (String, String) {
    (topic.to_string(), payload.to_string())
}

/// `mosquitto_ctrl dynsec init FILE admin adminpw`: a fresh dynamic-security
/// file with Mosquitto's own tool.
pub fn dynsec_init_admin(file: &Path) {
    let ok = Command::new("mosquitto_ctrl")
        .args(["dynsec", "init"])
        .arg(file)
        .args(["admin", "adminpw"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mosquitto_ctrl dynsec init failed");
}
