//! Black-box operations tests (issue 5): unix socket listeners, systemd readiness through
//! `NOTIFY_SOCKET`, dropping root privileges, logging (file, reopen on SIGHUP, `log_type`,
//! timestamps, `connection_messages`, the `$SYS/broker/log` topic), `pid_file`, `-d`,
//! `--test-config`, `-p` with a configured listener, per-listener `max_connections`,
//! `mount_point` and `max_qos`, the `$SYS` tree, and the signals SIGUSR2, SIGINT, SIGTERM
//! and (ignored) SIGPIPE. Judged from the outside through the real broker binary.
//!
//! Owns: its own broker launcher, which writes the whole config and waits for `READY=1` on
//! a datagram socket named by `NOTIFY_SOCKET` (so start-up is complete, privileges are
//! dropped and no probe connection pollutes the log); a small raw MQTT client generic over
//! TCP and unix streams; MQTT 5 CONNECT bytes; signals sent with the `kill` command.
//!
//! Must not: depend on the midge crate, wait without a deadline, or signal or kill anything
//! but the processes it started (and the daemon its own broker forked). WebSocket listeners
//! and the every-directive config test live elsewhere.

mod common;

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    ack_packet, broker_binary, frame, free_port, loopback, publish_packet, run, subscribe_packet,
    temp_dir, testing_mosquitto, unsubscribe_packet, Connect, Packet, Pub, RawClient, ReadError,
    CONNACK, DISCONNECT, DISCONNECT_BYTES, PINGRESP, PUBACK, PUBLISH, PUBREC, START_TIMEOUT,
    SUBACK, UNSUBACK, WAIT,
};

/// Bound for a whole process run (`--test-config`, `-d` parent) or a clean exit.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// sd_notify socket
// ---------------------------------------------------------------------------------------------

/// A datagram socket standing in for systemd's notify socket.
struct NotifySock {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySock {
    fn bind(dir: &Path) -> NotifySock {
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        // The broker may send READY=1 after dropping root: let any user write to it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).expect("chmod socket");
        NotifySock { sock, path }
    }

    /// The next datagram within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<String> {
        let _ = self
            .sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned()),
            Err(_) => None,
        }
    }

    /// Waits for a datagram with the line `state` (e.g. `READY=1`); returns the datagrams
    /// seen before it.
    fn expect(&self, state: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no {state} on NOTIFY_SOCKET within {timeout:?}; got {before:?}");
            }
            if let Some(m) = self.recv(left) {
                if m.lines().any(|l| l == state) {
                    return before;
                }
                before.push(m);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Broker launcher
// ---------------------------------------------------------------------------------------------

/// A broker started from a config this file writes completely, with `NOTIFY_SOCKET` set.
/// Killed (if still running) and its directory removed on drop.
struct Midge {
    child: Child,
    dir: PathBuf,
    ports: Vec<u16>,
    notify: NotifySock,
}

impl Midge {
    /// Starts the broker with the config `conf(ports, dir)`; returns after `READY=1`.
    fn start(tag: &str, nports: usize, conf: impl Fn(&[u16], &Path) -> String) -> Midge {
        Self::start_with(tag, nports, |p, d| (conf(p, d), Vec::new()))
    }

    /// Like `start`, with `build` also giving extra command-line arguments.
    fn start_with(
        tag: &str,
        nports: usize,
        build: impl Fn(&[u16], &Path) -> (String, Vec<String>),
    ) -> Midge {
        let bin = broker_binary();
        let dir = temp_dir(tag);
        let notify = NotifySock::bind(&dir);
        let conf = dir.join("midge.conf");
        let out_path = dir.join("out.log");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let ports: Vec<u16> = (0..nports).map(|_| free_port()).collect();
            let (text, args) = build(&ports, &dir);
            fs::write(&conf, text).expect("write config");
            let out = fs::File::create(&out_path).expect("create output file");
            let err = out.try_clone().expect("clone output file");
            let mut child = Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .args(&args)
                .env("NOTIFY_SOCKET", &notify.path)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let started = Instant::now();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_log = fs::read_to_string(&out_path).unwrap_or_default();
                    if last_log.to_ascii_lowercase().contains("in use") {
                        break; // lost a race for a port: try other ones
                    }
                    let _ = fs::remove_dir_all(&dir);
                    panic!("broker exited during start-up with {status}; output:\n{last_log}");
                }
                if let Some(m) = notify.recv(Duration::from_millis(50)) {
                    if m.lines().any(|l| l == "READY=1") {
                        return Midge {
                            child,
                            dir,
                            ports,
                            notify,
                        };
                    }
                }
                if started.elapsed() > START_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = fs::read_to_string(&out_path).unwrap_or_default();
                    let _ = fs::remove_dir_all(&dir);
                    panic!("broker sent no READY=1 within {START_TIMEOUT:?}; output:\n{log}");
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("broker could not bind free ports after 5 attempts; last output:\n{last_log}");
    }

    fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Everything the broker wrote to stdout and stderr so far.
    fn output(&self) -> String {
        fs::read_to_string(self.path("out.log")).unwrap_or_default()
    }

    /// Sends `sig` (a name such as "HUP") to the broker.
    fn signal(&mut self, sig: &str) {
        self.assert_running();
        send_signal(self.pid(), sig);
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("broker exited with {status}; output:\n{}", self.output());
        }
    }

    /// The exit status, waiting at most `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }
}

impl Drop for Midge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- broker output (ports {:?}) ----\n{}\n---- end of broker output ----",
                self.ports,
                self.output()
            );
            if let Ok(log) = fs::read_to_string(self.path("midge.log")) {
                eprintln!("---- midge.log ----\n{log}\n---- end of midge.log ----");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Config lines most tests share: anonymous access, and no privilege drop so the broker can
/// write log files into the root-owned temp directory.
fn base(port: u16) -> String {
    format!("listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
}

fn send_signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -s {sig} {pid} failed");
}

/// Polls `path` until it contains `needle`; returns the contents.
fn wait_for_text(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} does not contain {needle:?} after {timeout:?}; it has:\n{text}",
                path.display()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The pid in a pid file, waiting (bounded) until one is there.
fn read_pid_file(path: &Path) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if let Ok(pid) = text.trim().parse() {
            return pid;
        }
        if Instant::now() > deadline {
            panic!("no pid in {} within {WAIT:?}: {text:?}", path.display());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The user id in /etc/passwd for `name`.
fn passwd_uid(name: &str) -> Option<u32> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        f.nth(1)?.parse().ok()
    })
}

/// The four user ids (real, effective, saved, filesystem) from /proc/<pid>/status.
fn proc_uids(pid: u32) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn running_as_root() -> bool {
    proc_uids(std::process::id()).get(1) == Some(&0)
}

// ---------------------------------------------------------------------------------------------
// A raw MQTT client over any stream (unix sockets, MQTT 5 over TCP)
// ---------------------------------------------------------------------------------------------

trait Sock: Read + Write {
    fn set_timeout(&self, d: Duration);
}

impl Sock for TcpStream {
    fn set_timeout(&self, d: Duration) {
        let _ = self.set_read_timeout(Some(d.max(Duration::from_millis(1))));
    }
}

impl Sock for UnixStream {
    fn set_timeout(&self, d: Duration) {
        let _ = self.set_read_timeout(Some(d.max(Duration::from_millis(1))));
    }
}

/// Splits one complete packet off the front of `buf`, if there is one.
fn split_packet(buf: &mut Vec<u8>) -> Result<Option<Packet>, ReadError> {
    let mut len = 0usize;
    let mut mult = 1usize;
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
    let Some(body) = buf.get(i..i + len).map(<[u8]>::to_vec) else {
        return Ok(None);
    };
    let header = buf[0];
    buf.drain(..i + len);
    Ok(Some(Packet { header, body }))
}

struct Wire<S: Sock> {
    s: S,
    buf: Vec<u8>,
    stash: VecDeque<Packet>,
    next_pid: u16,
}

impl<S: Sock> Wire<S> {
    fn new(s: S) -> Wire<S> {
        Wire {
            s,
            buf: Vec::new(),
            stash: VecDeque::new(),
            next_pid: 1,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send failed: {e}"));
    }

    fn pid(&mut self) -> u16 {
        let p = self.next_pid;
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        p
    }

    fn read_wire(&mut self, timeout: Duration) -> Result<Packet, ReadError> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(p) = split_packet(&mut self.buf)? {
                return Ok(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            self.s.set_timeout(left);
            match self.s.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// Waits for a packet of `kind`, stashing others.
    fn expect_kind(&mut self, kind: u8, timeout: Duration) -> Packet {
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
                Err(e) => panic!("waiting for packet type {kind}: {e:?}"),
            }
        }
    }

    fn next_publish(&mut self, timeout: Duration) -> Option<Pub> {
        if let Some(i) = self.stash.iter().position(|p| p.kind() == PUBLISH) {
            return self.stash.remove(i).and_then(|p| p.publish());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_wire(left) {
                Ok(p) if p.kind() == PUBLISH => return p.publish(),
                Ok(p) => self.stash.push_back(p),
                Err(_) => return None,
            }
        }
    }

    /// MQTT 3.1.1 CONNECT; panics unless accepted.
    fn connect(&mut self, id: &str) {
        self.send(&Connect::new(id).encode());
        let p = self.expect_kind(CONNACK, WAIT);
        assert_eq!(p.connack(), Some((false, 0)), "CONNACK for {id}");
    }

    fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        let pid = self.pid();
        self.send(&subscribe_packet(pid, filters));
        self.expect_kind(SUBACK, WAIT)
            .suback_codes()
            .unwrap_or_default()
    }

    fn publish(&mut self, topic: &str, payload: &[u8], qos: u8) {
        let pid = self.pid();
        self.send(&publish_packet(topic, payload, qos, false, false, pid));
        if qos == 1 {
            let p = self.expect_kind(PUBACK, WAIT);
            assert_eq!(p.pid(), Some(pid), "PUBACK packet id");
        }
    }

    fn ping(&mut self) {
        self.send(&common::PINGREQ_BYTES);
        self.expect_kind(PINGRESP, WAIT);
    }

    /// True if the peer closes the connection within `within` (packets before are skipped).
    fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_wire(left) {
                Ok(_) => {}
                Err(ReadError::Timeout) => return false,
                Err(_) => return true,
            }
        }
    }
}

/// A connected MQTT 3.1.1 client over the unix socket at `path`.
fn unix_client(path: &Path, id: &str) -> Wire<UnixStream> {
    let s = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("connect to unix socket {}: {e}", path.display()));
    let mut w = Wire::new(s);
    w.connect(id);
    w
}

/// An MQTT 5 CONNECT: clean start, keepalive 60, no properties.
fn connect_v5(id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    frame(0x10, &body)
}

/// A connected MQTT 5 client over TCP.
fn v5_client(port: u16, id: &str) -> Wire<TcpStream> {
    let s = TcpStream::connect_timeout(&loopback(port), WAIT)
        .unwrap_or_else(|e| panic!("tcp connect to {port}: {e}"));
    let mut w = Wire::new(s);
    w.send(&connect_v5(id));
    let p = w.expect_kind(CONNACK, WAIT);
    assert_eq!(p.body.get(1), Some(&0), "v5 CONNACK reason for {id}: {p:?}");
    w
}

/// Sends DISCONNECT and waits until the broker has closed the connection.
fn disconnect(mut c: RawClient) {
    c.send(&DISCONNECT_BYTES);
    c.expect_closed(WAIT);
}

// ---------------------------------------------------------------------------------------------
// Unix socket listener
// ---------------------------------------------------------------------------------------------

#[test]
fn unix_socket_listener_carries_pubsub_and_crosses_to_tcp() {
    let b = Midge::start("ops-unix", 1, |p, dir| {
        format!(
            "{}listener 0 {}\n",
            base(p[0]),
            dir.join("midge.sock").display()
        )
    });
    let sock = b.path("midge.sock");
    let meta = fs::symlink_metadata(&sock).expect("socket file exists");
    assert!(
        meta.file_type().is_socket(),
        "{} is a socket",
        sock.display()
    );

    let mut unix_sub = unix_client(&sock, "unix-sub");
    assert_eq!(unix_sub.subscribe(&[("ops/unix/#", 1)]), vec![1]);
    let mut tcp_sub = RawClient::connected(b.port(0), "tcp-sub");
    assert_eq!(tcp_sub.subscribe(&[("ops/unix/#", 1)]), vec![1]);

    // Publish over the unix socket: both transports receive it.
    let mut unix_pub = unix_client(&sock, "unix-pub");
    unix_pub.publish("ops/unix/a", b"over-unix", 1);
    let got = unix_sub
        .next_publish(WAIT)
        .expect("unix subscriber gets it");
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("ops/unix/a", &b"over-unix"[..])
    );
    let got = tcp_sub.expect_publish(WAIT);
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("ops/unix/a", &b"over-unix"[..])
    );
    if got.qos == 1 {
        tcp_sub.send(&ack_packet(PUBACK, got.pid));
    }

    // And the other way: TCP publisher, unix subscriber.
    tcp_sub.publish("ops/unix/b", b"over-tcp", 0, false);
    let got = unix_sub
        .next_publish(WAIT)
        .expect("unix subscriber gets TCP message");
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("ops/unix/b", &b"over-tcp"[..])
    );
    unix_pub.ping();
}

// ---------------------------------------------------------------------------------------------
// systemd notification, privileges, pid file, daemon
// ---------------------------------------------------------------------------------------------

#[test]
fn sd_notify_reports_ready_reloading_and_stopping() {
    // Midge::start has already read READY=1 from NOTIFY_SOCKET.
    let mut b = Midge::start("ops-notify", 1, |p, _| base(p[0]));
    let mut c = RawClient::connected(b.port(0), "notify-client");

    // Mosquitto 2.0.11 reports only READY=1 and STOPPING=1.
    if !testing_mosquitto() {
        b.signal("HUP");
        let before = b.notify.expect("RELOADING=1", WAIT);
        assert!(before.is_empty(), "nothing before RELOADING=1: {before:?}");
        b.notify.expect("READY=1", WAIT);
        c.ping(); // the reload kept the client
    }

    b.signal("TERM");
    if !testing_mosquitto() {
        b.notify.expect("STOPPING=1", WAIT);
    }
    let status = b.wait_exit(EXIT_LIMIT).expect("broker exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}

#[test]
fn root_drops_privileges_to_the_configured_user() {
    if !running_as_root() {
        eprintln!("skipped: the privilege drop is only observable when the tests run as root");
        return;
    }
    let nobody = passwd_uid("nobody").expect("user nobody exists");
    let default_uid = passwd_uid("mosquitto").unwrap_or(nobody);
    let cases: [(&str, &str, u32); 3] = [
        ("nobody", "user nobody\n", nobody),
        ("root", "user root\n", 0),
        ("default (mosquitto, else nobody)", "", default_uid),
    ];
    for (what, line, uid) in cases {
        let b = Midge::start("ops-user", 1, |p, _| {
            format!("listener {} 127.0.0.1\nallow_anonymous true\n{line}", p[0])
        });
        // READY=1 is sent once privileges are dropped, so this is the final identity.
        let uids = proc_uids(b.pid());
        assert_eq!(uids, vec![uid; 4], "Uid line of the broker for {what}");
        // Still serving after the drop.
        RawClient::connected(b.port(0), "after-drop").ping();
    }
}

#[test]
fn pid_file_is_written_and_removed_on_exit() {
    let mut b = Midge::start("ops-pid", 1, |p, dir| {
        format!(
            "{}pid_file {}\n",
            base(p[0]),
            dir.join("midge.pid").display()
        )
    });
    let text = fs::read_to_string(b.path("midge.pid")).expect("pid file written");
    assert_eq!(text.trim(), b.pid().to_string(), "pid file content");
    // A round trip first: Mosquitto 2.0.11 loses a SIGTERM that arrives right after its
    // READY=1 (it sets its run flag after notifying).
    RawClient::connected(b.port(0), "pid-client").ping();
    b.signal("TERM");
    let status = b.wait_exit(EXIT_LIMIT).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(!b.path("midge.pid").exists(), "pid file removed on exit");
}

/// Kills the daemon forked by the broker under test if a test fails before stopping it (its
/// pid is taken from the pid file if the test did not get that far), and removes the
/// test's directory.
struct DaemonGuard {
    pid: Option<u32>,
    pid_path: PathBuf,
    conf: String,
    dir: PathBuf,
}

impl DaemonGuard {
    fn alive(&self) -> bool {
        let Some(pid) = self.pid else {
            return false;
        };
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        // Only our daemon: its command line names our config (guards against pid reuse).
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains(&self.conf);
        ours && !status.is_empty() && !status.contains("State:\tZ")
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if self.pid.is_none() {
            self.pid = fs::read_to_string(&self.pid_path)
                .ok()
                .and_then(|t| t.trim().parse().ok());
        }
        if let (true, Some(pid)) = (self.alive(), self.pid) {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn dash_d_daemonises_and_the_daemon_writes_the_pid_file() {
    let dir = temp_dir("ops-daemon");
    let notify = NotifySock::bind(&dir);
    let port = free_port();
    let conf = dir.join("midge.conf");
    let pid_path = dir.join("midge.pid");
    fs::write(
        &conf,
        format!(
            "{}pid_file {}\nlog_dest file {}\n",
            base(port),
            pid_path.display(),
            dir.join("midge.log").display()
        ),
    )
    .expect("write config");
    let conf_s = conf.display().to_string();
    let mut guard = DaemonGuard {
        pid: None,
        pid_path: pid_path.clone(),
        conf: conf_s.clone(),
        dir: dir.clone(),
    };
    let mut parent = Command::new(broker_binary())
        .args(["-c", &conf_s, "-d"])
        .env("NOTIFY_SOCKET", &notify.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker with -d");
    let parent_pid = parent.id();
    let deadline = Instant::now() + EXIT_LIMIT;
    let status = loop {
        match parent.try_wait() {
            Ok(Some(s)) => break s,
            _ if Instant::now() > deadline => {
                let _ = parent.kill();
                let _ = parent.wait();
                panic!("the -d parent did not exit within {EXIT_LIMIT:?}");
            }
            _ => thread::sleep(Duration::from_millis(10)),
        }
    };
    assert_eq!(status.code(), Some(0), "the -d parent exits 0");
    notify.expect("READY=1", START_TIMEOUT);
    let pid = read_pid_file(&pid_path);
    guard.pid = Some(pid);
    assert_ne!(pid, parent_pid, "the daemon is a new process");
    assert!(guard.alive(), "the daemon runs");
    RawClient::connected(port, "daemon-client").ping();

    send_signal(pid, "TERM");
    if !testing_mosquitto() {
        notify.expect("STOPPING=1", WAIT);
    }
    let deadline = Instant::now() + EXIT_LIMIT;
    while guard.alive() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!guard.alive(), "the daemon stops on SIGTERM");
    let gone = Instant::now() + WAIT;
    while pid_path.exists() && Instant::now() < gone {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!pid_path.exists(), "the daemon removes its pid file");
}

// ---------------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------------

#[test]
fn log_file_is_reopened_on_sighup() {
    let mut b = Midge::start("ops-logfile", 1, |p, dir| {
        format!(
            "{}log_type all\nlog_dest file {}\n",
            base(p[0]),
            dir.join("midge.log").display()
        )
    });
    let log = b.path("midge.log");
    let rotated = b.path("midge.log.1");
    let mut c = RawClient::connected(b.port(0), "before-hup");
    wait_for_text(&log, "before-hup", WAIT);

    // What logrotate does: move the file away, then HUP.
    fs::rename(&log, &rotated).expect("rotate log");
    b.signal("HUP");
    wait_for_text(&rotated, "Reloading config", WAIT);
    c.ping(); // clients survive the reload

    RawClient::connected(b.port(0), "after-hup").ping();
    let new = wait_for_text(&log, "after-hup", WAIT);
    assert!(
        !new.contains("as before-hup "),
        "new file starts fresh:\n{new}"
    );
    let old = fs::read_to_string(&rotated).unwrap_or_default();
    assert!(
        old.contains("before-hup"),
        "old file keeps old lines:\n{old}"
    );
    assert!(
        !old.contains("after-hup"),
        "no new lines in the moved file:\n{old}"
    );
    assert!(
        !b.output().contains("before-hup"),
        "log_dest file only: no log lines on stdout/stderr, got:\n{}",
        b.output()
    );
}

/// A broker logging to `midge.log` with the given `log_type` lines (and a `retry_interval`,
/// which makes it log a warning at start-up).
fn log_types(tag: &str, types: &[&str]) -> Midge {
    let lines: String = types.iter().map(|t| format!("log_type {t}\n")).collect();
    Midge::start(tag, 1, move |p, dir| {
        format!(
            "{}{lines}retry_interval 20\nlog_dest file {}\n",
            base(p[0]),
            dir.join("midge.log").display()
        )
    })
}

/// Subscribes to `ops/lt/one`, unsubscribes, subscribes to `ops/lt/two` (a marker: all
/// that was logged for the first two is in the file before its line would be) and returns
/// the log file once the UNSUBACK and SUBACK are back.
fn sub_unsub_round(b: &Midge, id: &str) -> String {
    let mut c = RawClient::connected(b.port(0), id);
    assert_eq!(c.subscribe(&[("ops/lt/one", 0)]), vec![0]);
    c.send(&unsubscribe_packet(7, &["ops/lt/one"]));
    c.expect_kind(UNSUBACK, WAIT);
    assert_eq!(c.subscribe(&[("ops/lt/two", 0)]), vec![0]);
    c.ping();
    fs::read_to_string(b.path("midge.log")).unwrap_or_default()
}

#[test]
fn log_type_subscribe_and_unsubscribe_add_their_own_lines() {
    // Mosquitto's forms: subscribe "<client id> <qos> <filter>", unsubscribe
    // "<client id> <filter>".
    let b = log_types("ops-logsub", &["notice", "information", "subscribe"]);
    let text = sub_unsub_round(&b, "lt-sub");
    assert!(
        text.contains("lt-sub 0 ops/lt/two"),
        "subscribe lines:\n{text}"
    );
    assert!(text.contains("as lt-sub "), "notices still logged:\n{text}");
    assert!(
        !text.contains("lt-sub ops/lt/one"),
        "no unsubscribe line:\n{text}"
    );
    drop(b);

    let b = log_types("ops-logunsub", &["notice", "information", "unsubscribe"]);
    let text = sub_unsub_round(&b, "lt-uns");
    assert!(
        text.contains("lt-uns ops/lt/one"),
        "unsubscribe line:\n{text}"
    );
    assert!(
        !text.contains("lt-uns 0 ops/lt/"),
        "no subscribe lines:\n{text}"
    );
    drop(b);

    // The default (error, warning, notice, information) has neither.
    let b = log_types("ops-logdefault", &[]);
    let text = sub_unsub_round(&b, "lt-def");
    assert!(
        text.contains("as lt-def "),
        "notices logged by default:\n{text}"
    );
    assert!(
        !text.contains("lt-def 0 ops/lt/"),
        "no subscribe lines:\n{text}"
    );
    assert!(
        !text.contains("lt-def ops/lt/"),
        "no unsubscribe lines:\n{text}"
    );
}

#[test]
fn log_type_warning_hides_notices() {
    let b = log_types("ops-logwarn", &["warning"]);
    RawClient::connected(b.port(0), "lt-warn").ping();
    // Logging is synchronous: the connect notice would be in the file before the CONNACK.
    let text = fs::read_to_string(b.path("midge.log")).unwrap_or_default();
    // Mosquitto prints config warnings to stderr before its log is set up.
    let all = format!("{text}{}", b.output());
    assert!(
        all.contains("retry_interval"),
        "the warning is logged:\n{all}"
    );
    for absent in ["New client connected", "New connection", "running"] {
        assert!(
            !text.contains(absent),
            "log_type warning logged {absent:?}:\n{text}"
        );
    }
}

#[test]
fn log_type_subscribe_does_not_enable_notices() {
    let b = log_types("ops-logerrsub", &["error", "subscribe"]);
    let text = sub_unsub_round(&b, "lt-es");
    assert!(
        text.contains("lt-es 0 ops/lt/two"),
        "subscribe lines:\n{text}"
    );
    for absent in ["New client connected", "New connection", "running"] {
        assert!(
            !text.contains(absent),
            "log_type error+subscribe logged {absent:?}:\n{text}"
        );
    }
}

#[test]
fn log_type_notice_and_information_are_separate() {
    let b = log_types("ops-lognotice", &["notice"]);
    RawClient::connected(b.port(0), "lt-notice").ping();
    let text = wait_for_text(&b.path("midge.log"), "as lt-notice ", WAIT);
    for absent in ["Config loaded", "Opening ipv4 listen socket", "running"] {
        assert!(
            !text.contains(absent),
            "log_type notice logged {absent:?}:\n{text}"
        );
    }
    drop(b);

    let b = log_types("ops-loginfo", &["information"]);
    RawClient::connected(b.port(0), "lt-info").ping();
    let text = wait_for_text(&b.path("midge.log"), "running", WAIT);
    assert!(
        !text.contains("as lt-info "),
        "log_type information logged a notice:\n{text}"
    );
}

/// The log line about `client` connecting, from the broker's log file.
fn connect_line(b: &Midge, client: &str) -> String {
    RawClient::connected(b.port(0), client).ping();
    let text = wait_for_text(&b.path("midge.log"), &format!("as {client} "), WAIT);
    text.lines()
        .find(|l| l.contains(&format!("as {client} ")))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn log_timestamp_and_its_format() {
    let log = |extra: &str| {
        let extra = extra.to_string();
        Midge::start("ops-logts", 1, move |p, dir| {
            format!(
                "{}log_dest file {}\n{extra}",
                base(p[0]),
                dir.join("midge.log").display()
            )
        })
    };
    // Default: "<unix seconds>: New client connected ...".
    let b = log("");
    let line = connect_line(&b, "ts-default");
    let (stamp, rest) = line.split_once(": ").unwrap_or_default();
    assert!(
        stamp.len() >= 10 && stamp.bytes().all(|c| c.is_ascii_digit()),
        "unix time stamp: {line:?}"
    );
    assert!(rest.starts_with("New client connected"), "{line:?}");
    drop(b);

    let b = log("log_timestamp false\n");
    let line = connect_line(&b, "ts-off");
    assert!(
        line.starts_with("New client connected"),
        "no stamp: {line:?}"
    );
    drop(b);

    let b = log("log_timestamp_format %Y-%m-%dT%H:%M:%S\n");
    let line = connect_line(&b, "ts-fmt");
    let shape: String = line
        .chars()
        .take(19)
        .map(|c| if c.is_ascii_digit() { 'D' } else { c })
        .collect();
    assert_eq!(shape, "DDDD-DD-DDTDD:DD:DD", "strftime stamp: {line:?}");
    assert!(
        line.get(19..)
            .is_some_and(|r| r.starts_with(": New client connected")),
        "{line:?}"
    );
}

/// Connects, subscribes (the subscribe line is a marker in the log), disconnects cleanly.
fn quiet_round(b: &Midge, id: &str) -> String {
    let mut c = RawClient::connected(b.port(0), id);
    let filter = format!("ops/quiet/{id}");
    c.subscribe(&[(filter.as_str(), 0)]);
    let text = wait_for_text(&b.path("midge.log"), &format!("{id} 0 {filter}"), WAIT);
    disconnect(c);
    text
}

#[test]
fn connection_messages_false_hides_client_connect_and_disconnect_notices() {
    let b = Midge::start("ops-connmsg", 1, |p, dir| {
        format!(
            "{}log_type all\nconnection_messages false\nlog_dest file {}\n",
            base(p[0]),
            dir.join("midge.log").display()
        )
    });
    quiet_round(&b, "quiet-1");
    // The second marker comes after everything logged for quiet-1's disconnect.
    let text = quiet_round(&b, "quiet-2");
    assert!(
        text.contains("running"),
        "other notices still logged:\n{text}"
    );
    for absent in [
        "New client connected",
        "quiet-1 disconnected",
        "quiet-1 closed",
    ] {
        assert!(!text.contains(absent), "{absent:?} logged:\n{text}");
    }
}

#[test]
fn connection_messages_false_hides_new_connection_notices() {
    let b = Midge::start("ops-connmsg2", 1, |p, dir| {
        format!(
            "{}log_type all\nconnection_messages false\nlog_dest file {}\n",
            base(p[0]),
            dir.join("midge.log").display()
        )
    });
    let text = quiet_round(&b, "quiet-3");
    assert!(
        !text.contains("New connection from"),
        "connection notice logged:\n{text}"
    );
}

#[test]
fn log_dest_topic_publishes_log_lines_under_sys_broker_log() {
    let b = Midge::start("ops-logtopic", 1, |p, _| {
        format!("{}log_type all\nlog_dest topic\n", base(p[0]))
    });
    let mut watcher = RawClient::connected(b.port(0), "log-watcher");
    assert_eq!(watcher.subscribe(&[("$SYS/broker/log/#", 0)]), vec![0]);

    let mut c = RawClient::connected(b.port(0), "topic-logged");
    c.subscribe(&[("ops/topiclog", 0)]);

    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    let (mut connected, mut subscribed) = (false, false);
    while !(connected && subscribed) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(p) = watcher.next_publish(left) else {
            panic!("log lines missing (connect {connected}, subscribe {subscribed}); got {seen:?}");
        };
        let line = String::from_utf8_lossy(&p.payload).into_owned();
        if p.topic == "$SYS/broker/log/N"
            && line.contains("New client connected")
            && line.contains("topic-logged")
        {
            connected = true;
        }
        if p.topic == "$SYS/broker/log/M/subscribe" && line.contains("topic-logged 0 ops/topiclog")
        {
            subscribed = true;
        }
        seen.push((p.topic, line));
    }
    assert!(
        !b.output().contains("New client connected"),
        "log_dest topic only: nothing on stderr:\n{}",
        b.output()
    );
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[test]
fn test_config_checks_without_binding() {
    if testing_mosquitto() {
        eprintln!("skipped: --test-config arrives in Mosquitto 2.1");
        return;
    }
    let dir = temp_dir("ops-testconf");
    // Holding the port proves nothing is bound: a bind would fail with "in use".
    let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("hold a port");
    let port = held.local_addr().expect("held address").port();
    let conf = dir.join("good.conf");
    let pid = dir.join("midge.pid");
    let sock = dir.join("midge.sock");
    fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nlistener 0 {}\npid_file {}\n",
            sock.display(),
            pid.display()
        ),
    )
    .expect("write config");
    let conf_s = conf.display().to_string();
    let done = run(
        &broker_binary(),
        &["-c", &conf_s, "--test-config"],
        EXIT_LIMIT,
    );
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(0),
        "valid config: {}",
        done.output()
    );
    assert!(!sock.exists(), "no unix socket created");
    assert!(!pid.exists(), "no pid file written");
    held.set_nonblocking(true).expect("nonblocking");
    assert!(held.accept().is_err(), "nobody connected to the held port");

    let bad = dir.join("bad.conf");
    fs::write(
        &bad,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections lots\n"),
    )
    .expect("write config");
    let bad_s = bad.display().to_string();
    let done = run(
        &broker_binary(),
        &["-c", &bad_s, "--test-config"],
        EXIT_LIMIT,
    );
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(1),
        "invalid config: {}",
        done.output()
    );
    assert!(
        done.output().contains(&format!("{bad_s}:3")),
        "names file and line {bad_s}:3:\n{}",
        done.output()
    );
}

#[test]
fn dash_p_is_ignored_when_the_config_has_listeners() {
    let b = Midge::start_with("ops-dashp", 2, |p, _| {
        (base(p[0]), vec!["-p".to_string(), p[1].to_string()])
    });
    RawClient::connected(b.port(0), "configured-port").ping();
    assert!(
        TcpStream::connect_timeout(&loopback(b.port(1)), Duration::from_millis(500)).is_err(),
        "-p {} must not be bound when the config has a listener",
        b.port(1)
    );
}

// ---------------------------------------------------------------------------------------------
// Listener options
// ---------------------------------------------------------------------------------------------

#[test]
fn max_connections_closes_connections_over_the_limit() {
    let b = Midge::start("ops-maxconn", 1, |p, _| {
        format!("{}max_connections 2\n", base(p[0]))
    });
    let c1 = RawClient::connected(b.port(0), "mc-1");
    let mut c2 = RawClient::connected(b.port(0), "mc-2");
    let mut c3 = RawClient::open(b.port(0));
    c3.send_lossy(&Connect::new("mc-3").encode());
    match c3.read_packet(WAIT) {
        Err(ReadError::Closed) => {}
        other => panic!("third connection must be closed without CONNACK, got {other:?}"),
    }
    c2.ping();
    // A freed slot can be used again, once the broker has seen c1 go (the
    // close reaches it asynchronously, so a connect may race it: retried).
    disconnect(c1);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c4 = RawClient::open(b.port(0));
        c4.send_lossy(&Connect::new("mc-4").encode());
        match c4.read_packet(WAIT) {
            Ok(p) if p.connack().is_some_and(|(_, rc)| rc == 0) => break,
            other if Instant::now() > deadline => {
                panic!("a freed slot was not reused: {other:?}")
            }
            _ => thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn mount_point_prefixes_and_strips_topics() {
    let b = Midge::start("ops-mount", 2, |p, _| {
        format!(
            "{}listener {} 127.0.0.1\nmount_point site/\n",
            base(p[0]),
            p[1]
        )
    });
    let mut plain = RawClient::connected(b.port(0), "plain");
    plain.subscribe(&[("site/#", 0)]);
    let mut mounted = RawClient::connected(b.port(1), "mounted");
    mounted.subscribe(&[("#", 0)]);

    // From the mounted listener: the prefix is added on the way in...
    mounted.publish("temp", b"from-mounted", 0, false);
    let got = plain.expect_publish(WAIT);
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("site/temp", &b"from-mounted"[..])
    );
    // ...and stripped on the way back to a mounted client (Mosquitto 2.0.11 forgets to:
    // eclipse-mosquitto/mosquitto#2244, fixed in 2.0.12).
    let shown = |t: &str| {
        if testing_mosquitto() {
            format!("site/{t}")
        } else {
            t.to_string()
        }
    };
    let own = mounted.expect_publish(WAIT);
    assert_eq!(
        own.topic,
        shown("temp"),
        "mounted client's view of its topic"
    );

    // From the plain listener: only topics under the mount point reach the mounted client.
    plain.publish("other/x", b"outside", 0, false);
    plain.publish("site/hum", b"from-plain", 0, false);
    let before = mounted.publishes_until(&shown("hum"), WAIT);
    assert!(
        before.is_empty(),
        "topics outside the mount point leaked: {before:?}"
    );
}

#[test]
fn max_qos_caps_subscriptions_and_disconnects_qos2_publishers() {
    let b = Midge::start("ops-maxqos", 1, |p, _| format!("{}max_qos 1\n", base(p[0])));
    let mut c = RawClient::connected(b.port(0), "mq-client");
    assert_eq!(
        c.subscribe(&[("ops/maxqos", 2)]),
        vec![1],
        "granted QoS capped"
    );
    c.publish("ops/maxqos", b"q1", 1, false);
    let got = c.expect_publish(WAIT);
    assert_eq!(got.qos, 1);
    c.send(&ack_packet(PUBACK, got.pid));

    c.send_lossy(&publish_packet("ops/maxqos", b"q2", 2, false, false, 99));
    loop {
        match c.read_packet(WAIT) {
            Err(ReadError::Closed) => break,
            Ok(p) if p.kind() == PUBREC => panic!("QoS 2 above max_qos acknowledged: {p:?}"),
            Ok(p) if p.kind() == PUBLISH => panic!("QoS 2 above max_qos delivered: {p:?}"),
            Ok(_) => {}
            Err(e) => panic!("expected the connection to be closed, got {e:?}"),
        }
    }
    RawClient::connected(b.port(0), "mq-other").ping();
}

// ---------------------------------------------------------------------------------------------
// $SYS and signals
// ---------------------------------------------------------------------------------------------

#[test]
fn sys_tree_is_published_every_sys_interval() {
    let b = Midge::start("ops-sys", 1, |p, _| {
        format!("{}sys_interval 1\n", base(p[0]))
    });
    let mut c = RawClient::connected(b.port(0), "sys-watcher");
    c.subscribe(&[("$SYS/broker/#", 0)]);
    let wanted = [
        "$SYS/broker/load/messages/received/1min",
        "$SYS/broker/clients/connected",
        "$SYS/broker/uptime",
        "$SYS/broker/heap/current",
    ];
    let mut seen: HashMap<String, String> = HashMap::new();
    // Load averages need two samples, one sys_interval apart.
    let deadline = Instant::now() + Duration::from_secs(6);
    let watcher_counted = |seen: &HashMap<String, String>| {
        seen.get("$SYS/broker/clients/connected")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n >= 1)
    };
    while !(wanted.iter().all(|t| seen.contains_key(*t)) && watcher_counted(&seen)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(p) = c.next_publish(left) else {
            let missing: Vec<_> = wanted.iter().filter(|t| !seen.contains_key(**t)).collect();
            panic!("missing {missing:?} or clients/connected < 1; got {seen:?}");
        };
        seen.insert(p.topic, String::from_utf8_lossy(&p.payload).into_owned());
    }
    let uptime = &seen["$SYS/broker/uptime"];
    assert!(uptime.ends_with(" seconds"), "uptime {uptime:?}");
    let load = &seen["$SYS/broker/load/messages/received/1min"];
    assert!(load.parse::<f64>().is_ok(), "load {load:?}");
    let heap = &seen["$SYS/broker/heap/current"];
    assert!(heap.parse::<u64>().is_ok_and(|h| h > 0), "heap {heap:?}");
}

#[test]
fn sigusr2_logs_the_subscription_tree() {
    if testing_mosquitto() {
        eprintln!("skipped: Mosquitto 2.0.11 prints the tree with buffered stdio");
        return;
    }
    let mut b = Midge::start("ops-usr2", 1, |p, _| base(p[0]));
    let mut c = RawClient::connected(b.port(0), "usr2-client");
    c.subscribe(&[("ops/usr2/tree/+", 1)]);
    assert!(
        !b.output().contains("ops/usr2/tree/+"),
        "not logged before the signal"
    );
    b.signal("USR2");
    wait_for_text(&b.path("out.log"), "ops/usr2/tree/+", WAIT);
    c.ping();
    b.assert_running();
}

#[test]
fn sigterm_and_sigint_exit_0_and_tell_v5_clients() {
    for sig in ["TERM", "INT"] {
        let mut b = Midge::start("ops-stop", 1, |p, _| base(p[0]));
        let mut v5 = v5_client(b.port(0), "v5-client");
        let mut v3 = RawClient::connected(b.port(0), "v3-client");
        b.signal(sig);
        // Mosquitto 2.0.11 just closes the socket; midge says why first.
        if !testing_mosquitto() {
            let d = v5.expect_kind(DISCONNECT, WAIT);
            assert_eq!(
                d.body.first(),
                Some(&0x8B),
                "SIG{sig}: DISCONNECT reason Server shutting down, got {d:?}"
            );
        }
        assert!(v5.closed_within(WAIT), "SIG{sig}: v5 connection closed");
        v3.expect_closed(WAIT);
        let status = b.wait_exit(EXIT_LIMIT).expect("broker exits");
        assert_eq!(status.code(), Some(0), "exit status after SIG{sig}");
    }
}

#[test]
fn vanished_subscribers_mid_write_do_not_kill_the_broker() {
    let mut b = Midge::start("ops-sigpipe", 1, |p, dir| {
        format!(
            "{}listener 0 {}\n",
            base(p[0]),
            dir.join("midge.sock").display()
        )
    });
    let sock = b.path("midge.sock");
    // Subscribers that never read, on both transports (std's TCP writes use MSG_NOSIGNAL,
    // plain write(2) on a unix socket raises SIGPIPE).
    let mut unix_sub = unix_client(&sock, "pipe-unix");
    unix_sub.subscribe(&[("ops/flood", 0)]);
    let mut tcp_sub = RawClient::connected(b.port(0), "pipe-tcp");
    tcp_sub.subscribe(&[("ops/flood", 0)]);
    // One that shuts its reading side but stays connected: on a unix socket the broker's
    // writes then fail with EPIPE (and raise SIGPIPE) while its reads see nothing amiss.
    let mut half = unix_client(&sock, "pipe-half");
    half.subscribe(&[("ops/flood", 0)]);
    half.s
        .shutdown(std::net::Shutdown::Read)
        .expect("shut the reading side");

    let mut publisher = RawClient::connected(b.port(0), "flooder");
    let payload = vec![b'x'; 16 * 1024];
    let flood = publish_packet("ops/flood", &payload, 0, false, false, 0);
    for _ in 0..100 {
        publisher.send(&flood);
    }
    publisher.ping();
    // Gone with unread data: the broker's next writes hit a dead peer.
    drop(unix_sub);
    drop(tcp_sub);
    for _ in 0..100 {
        publisher.send(&flood);
    }
    publisher.ping();
    b.assert_running();
    drop(half);

    let mut check = RawClient::connected(b.port(0), "after-flood");
    check.subscribe(&[("ops/after", 0)]);
    publisher.publish("ops/after", b"alive", 0, false);
    assert_eq!(check.expect_publish(WAIT).payload, b"alive");
    b.assert_running();
}
