//! net/bridges: the sockets of the bridge links.
//!
//! Owns: for each `bridge::Link`, the outgoing TCP (or rustls client)
//! stream to the remote broker, its nonblocking connect, name resolution
//! on a short-lived thread that wakes the loop through a `mio::Waker`, and
//! moving bytes between the stream and the link. Also calls the link's
//! timers and hands it the local broker's output for its local half.
//!
//! The links' events (`bridge::LinkEvent`) are worded here as Mosquitto's
//! log lines (`line`) and logged after each call into the links.
//!
//! Must not: interpret MQTT (the link does) or block the loop: connect is
//! nonblocking, names are resolved off the loop, TLS runs inside rustls'
//! buffers.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token, Waker};

use crate::bridge::{Link, LinkEvent, Target};
use crate::broker::{Broker, ConnId};

/// Bytes read from one remote per pass before others get their turn.
const READ_BUDGET: usize = 256 * 1024;

/// One link and its connection.
pub struct BridgeSpec {
    pub link: Link,
    /// Set when the link speaks TLS (`bridge_cafile`/`bridge_capath`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `bridge_bind_address`.
    pub bind: Option<IpAddr>,
}

struct Remote {
    sock: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    /// TCP connect finished.
    connected: bool,
    writable: bool,
}

struct Slot {
    spec: BridgeSpec,
    remote: Option<Remote>,
    /// A name being resolved for this attempt (generation).
    resolving: Option<u64>,
    target: Option<Target>,
    /// A test connection to the primary address is out (generation).
    probing: Option<u64>,
}

type Resolved = (usize, u64, io::Result<Vec<SocketAddr>>);
/// A test connection's outcome: link, generation, the primary answered.
type Probed = (usize, u64, bool);

/// What a short-lived helper thread hands back to the loop. Resolving and
/// probing share one channel and one spawn path: each thread closure and
/// channel type is code of its own in the aarch64 build held to 2 MiB.
enum Done {
    Resolved(Resolved),
    Probed(Probed),
}

/// Runs `work` on a named short-lived thread, sends its result and wakes
/// the loop. Err when the thread could not be started.
fn off_loop(
    name: &str,
    tx: Sender<Done>,
    waker: Option<Arc<Waker>>,
    work: Box<dyn FnOnce() -> Done + Send>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(work());
            if let Some(w) = waker {
                let _ = w.wake();
            }
        })
        .map(|_| ())
}

/// How long a test connection to the primary may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every bridge link of the process.
pub struct Bridges {
    slots: Vec<Slot>,
    base: usize,
    waker: Option<Arc<Waker>>,
    tx: Sender<Done>,
    rx: Receiver<Done>,
    generation: u64,
}

impl Bridges {
    /// Links use tokens `base..base + n`.
    pub fn new(specs: Vec<BridgeSpec>, base: usize) -> Bridges {
        let (tx, rx) = channel();
        Bridges {
            slots: specs
                .into_iter()
                .map(|spec| Slot {
                    spec,
                    remote: None,
                    resolving: None,
                    target: None,
                    probing: None,
                })
                .collect(),
            base,
            waker: None,
            tx,
            rx,
            generation: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn set_waker(&mut self, waker: Arc<Waker>) {
        self.waker = Some(waker);
    }

    /// Whether `t` is one of ours.
    pub fn owns_token(&self, t: usize) -> bool {
        t >= self.base && t < self.base + self.slots.len()
    }

    pub fn start(&mut self, broker: &mut Broker, now: u64) {
        for s in &mut self.slots {
            s.spec.link.start(broker, now);
        }
        self.log_events();
    }

    /// Logs what the links reported since the last call.
    fn log_events(&mut self) {
        for s in &mut self.slots {
            for e in s.spec.link.take_events() {
                let (level, target, text) = line(&e);
                log::log!(target: target, level, "{text}");
            }
        }
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|s| s.spec.link.next_deadline())
            .min()
    }

    /// The local broker closed a link's local half.
    pub fn local_closed(&mut self, id: ConnId, broker: &mut Broker, now: u64) {
        if let Some(s) = self.slots.get_mut(id.key as usize) {
            if s.spec.link.local_id() == id {
                s.spec.link.local_closed(broker, now);
            }
        }
        self.log_events();
    }

    /// Names resolved off the loop.
    pub fn resolved(&mut self, registry: &Registry, broker: &mut Broker, now: u64) {
        while let Ok(done) = self.rx.try_recv() {
            let (i, gen, result) = match done {
                Done::Resolved(r) => r,
                Done::Probed((i, gen, reachable)) => {
                    if let Some(s) = self.slots.get_mut(i) {
                        if s.probing == Some(gen) {
                            s.probing = None;
                            s.spec.link.probe_result(reachable, now);
                        }
                    }
                    continue;
                }
            };
            let base = self.base;
            let Some(s) = self.slots.get_mut(i) else {
                continue;
            };
            if s.resolving != Some(gen) {
                continue;
            }
            s.resolving = None;
            match result {
                Ok(addrs) => match addrs.first() {
                    Some(a) => open(s, i + base, *a, registry, broker, now),
                    None => s
                        .spec
                        .link
                        .connect_failed(broker, "no address for the host", now),
                },
                Err(e) => s.spec.link.connect_failed(broker, &e.to_string(), now),
            }
        }
        self.log_events();
    }

    /// A readiness event on a link's socket.
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &mut self,
        token: usize,
        readable: bool,
        writable: bool,
        registry: &Registry,
        scratch: &mut [u8],
        broker: &mut Broker,
        now: u64,
    ) {
        let i = token - self.base;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        let Some(r) = s.remote.as_mut() else {
            return;
        };
        if !r.connected {
            if !writable && !readable {
                return;
            }
            match r.sock.take_error() {
                Ok(Some(e)) | Err(e) => {
                    fail(s, registry, broker, &e.to_string(), now);
                    return;
                }
                Ok(None) => {}
            }
            match r.sock.peer_addr() {
                Ok(_) => {
                    r.connected = true;
                    let _ = r.sock.set_nodelay(true);
                    s.spec.link.transport_up(now);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    fail(s, registry, broker, &e.to_string(), now);
                    return;
                }
            }
        }
        if readable {
            read(s, registry, scratch, broker, now);
        }
        if writable && s.remote.as_ref().is_some_and(|r| r.tls.is_some()) {
            // TLS handshake records; MQTT bytes wait for `flush`.
            if let Some(r) = s.remote.as_mut() {
                if let Some(tls) = r.tls.as_mut() {
                    if let Err(e) = push_tls(&mut r.sock, tls) {
                        fail(s, registry, broker, &e.to_string(), now);
                    }
                }
            }
        }
    }

    /// Every pass, before the persistence journal is synced: timers,
    /// connection attempts, the local halves' output. Nothing is written to
    /// the remotes here (see `flush`).
    pub fn drive(&mut self, registry: &Registry, broker: &mut Broker, now: u64) {
        for i in 0..self.slots.len() {
            let token = i + self.base;
            let gen = self.generation + 1;
            let Some(s) = self.slots.get_mut(i) else {
                continue;
            };
            s.spec.link.local_ready(broker, now);
            if s.spec.link.next_deadline().is_some_and(|d| now >= d) {
                s.spec.link.tick(broker, now);
            }
            if s.remote.is_none() && s.resolving.is_none() {
                if let Some(t) = s.spec.link.poll_connect(broker, now) {
                    s.target = Some(t.clone());
                    let host = t.host.trim_start_matches('[').trim_end_matches(']');
                    match host.parse::<IpAddr>() {
                        Ok(ip) => {
                            open(s, token, SocketAddr::new(ip, t.port), registry, broker, now)
                        }
                        Err(_) => {
                            self.generation = gen;
                            s.resolving = Some(gen);
                            let tx = self.tx.clone();
                            let waker = self.waker.clone();
                            let (h, port) = (host.to_string(), t.port);
                            let spawned = off_loop(
                                "midge-resolve",
                                tx,
                                waker,
                                Box::new(move || {
                                    let r = (h.as_str(), port)
                                        .to_socket_addrs()
                                        .map(|a| a.collect::<Vec<_>>());
                                    Done::Resolved((i, gen, r))
                                }),
                            );
                            if let Err(e) = spawned {
                                s.resolving = None;
                                s.spec.link.connect_failed(broker, &e.to_string(), now);
                            }
                        }
                    }
                }
            }
            if !s.spec.link.probing() {
                s.probing = None;
            }
            if s.remote.is_some() && s.probing.is_none() {
                if let Some(t) = s.spec.link.poll_probe(now) {
                    self.generation += 1;
                    let gen = self.generation;
                    s.probing = Some(gen);
                    let (tx, waker, bind) = (self.tx.clone(), self.waker.clone(), s.spec.bind);
                    let spawned = off_loop(
                        "midge-probe",
                        tx,
                        waker,
                        Box::new(move || Done::Probed((i, gen, probe(&t, bind)))),
                    );
                    if spawned.is_err() {
                        s.probing = None;
                        s.spec.link.probe_result(false, now);
                    }
                }
            }
            if s.spec.link.wants_drop() {
                if s.resolving.take().is_some() || s.remote.is_some() {
                    close(s, registry);
                }
                s.spec.link.remote_closed(broker, now);
            }
        }
        self.log_events();
    }

    /// Every pass, after the persistence journal is synced: write what the
    /// links have for their remotes. An acknowledgement to the remote thus
    /// leaves only once the message it acknowledges is durable.
    pub fn flush(&mut self, registry: &Registry, broker: &mut Broker, now: u64) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            flush(s, i + self.base, registry, broker, now);
        }
        self.log_events();
    }

    /// On shutdown: close every remote connection.
    pub fn shutdown(&mut self, registry: &Registry) {
        for s in &mut self.slots {
            close(s, registry);
        }
    }
}

/// On a short-lived thread, off the loop: does the primary accept a TCP
/// connection (from `bridge_bind_address`, if set) within `PROBE_TIMEOUT`?
/// The connection is closed at once, as Mosquitto's test connection is.
fn probe(t: &Target, bind: Option<IpAddr>) -> bool {
    let host = t.host.trim_start_matches('[').trim_end_matches(']');
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, t.port)),
        Err(_) => (host, t.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next()),
    };
    let Some(addr) = addr else {
        return false;
    };
    let Ok(sock) = connect(addr, bind) else {
        return false;
    };
    let until = Instant::now() + PROBE_TIMEOUT;
    while Instant::now() < until {
        match sock.take_error() {
            Ok(None) => {}
            _ => return false,
        }
        match sock.peer_addr() {
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(_) => return false,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Start a nonblocking connect to `addr`.
fn open(
    s: &mut Slot,
    token: usize,
    addr: SocketAddr,
    registry: &Registry,
    broker: &mut Broker,
    now: u64,
) {
    let sock = match connect(addr, s.spec.bind) {
        Ok(sock) => sock,
        Err(e) => {
            s.spec.link.connect_failed(broker, &e.to_string(), now);
            return;
        }
    };
    let tls = match &s.spec.tls {
        None => None,
        Some(cfg) => {
            let host = s
                .target
                .as_ref()
                .map(|t| t.host.clone())
                .unwrap_or_else(|| addr.ip().to_string());
            let made = crate::client::tls::server_name(&host)
                .map_err(|e| e.0)
                .and_then(|name| {
                    rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())
                });
            match made {
                Ok(c) => Some(Box::new(c)),
                Err(e) => {
                    s.spec.link.connect_failed(broker, &e, now);
                    return;
                }
            }
        }
    };
    let mut r = Remote {
        sock,
        tls,
        connected: false,
        writable: true,
    };
    if let Err(e) = registry.register(
        &mut r.sock,
        Token(token),
        Interest::READABLE | Interest::WRITABLE,
    ) {
        s.spec.link.connect_failed(broker, &e.to_string(), now);
        return;
    }
    s.remote = Some(r);
}

/// A nonblocking TCP connect, from `bind` if given.
fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(local) = bind else {
        return TcpStream::connect(addr);
    };
    use std::os::fd::AsRawFd;
    let sock = super::tcp_socket(&addr)?;
    let fd = sock.as_raw_fd();
    let stream = std::net::TcpStream::from(sock);
    let (sa, len) = super::sockaddr(SocketAddr::new(local, 0));
    let (da, dlen) = super::sockaddr(addr);
    // SAFETY: bind/connect read only the sockaddr buffers given, with
    // their sizes; fd stays valid while `stream` lives.
    unsafe {
        if libc::bind(
            fd,
            &sa as *const libc::sockaddr_storage as *const libc::sockaddr,
            len,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::connect(
            fd,
            &da as *const libc::sockaddr_storage as *const libc::sockaddr,
            dlen,
        ) < 0
        {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
    }
    Ok(TcpStream::from_std(stream))
}

fn close(s: &mut Slot, registry: &Registry) {
    s.resolving = None;
    if let Some(mut r) = s.remote.take() {
        if let Some(tls) = r.tls.as_mut() {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut r.sock);
        }
        let _ = registry.deregister(&mut r.sock);
        let _ = r.sock.shutdown(std::net::Shutdown::Both);
    }
}

fn fail(s: &mut Slot, registry: &Registry, broker: &mut Broker, why: &str, now: u64) {
    let connecting = s.remote.as_ref().is_some_and(|r| !r.connected);
    close(s, registry);
    if connecting {
        s.spec.link.connect_failed(broker, why, now);
    } else {
        s.spec.link.remote_closed(broker, now);
    }
}

fn read(s: &mut Slot, registry: &Registry, scratch: &mut [u8], broker: &mut Broker, now: u64) {
    let mut budget = READ_BUDGET;
    loop {
        let Some(r) = s.remote.as_mut() else {
            return;
        };
        let got = match r.tls.as_mut() {
            None => r.sock.read(scratch),
            Some(tls) => read_tls(&mut r.sock, tls, scratch),
        };
        match got {
            Ok(0) => {
                fail(s, registry, broker, "connection closed by the remote", now);
                return;
            }
            Ok(n) => {
                s.spec.link.remote_input(&scratch[..n], broker, now);
                if s.spec.link.wants_drop() {
                    return;
                }
                budget = budget.saturating_sub(n);
                if budget == 0 {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                fail(s, registry, broker, &e.to_string(), now);
                return;
            }
        }
    }
}

/// Plaintext from a TLS stream: what rustls has, else more records.
fn read_tls(
    sock: &mut TcpStream,
    tls: &mut rustls::ClientConnection,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match tls.read_tls(sock) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    let _ = tls.write_tls(sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                // Handshake answers go out at once.
                while tls.wants_write() {
                    match tls.write_tls(sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Write the link's output; WRITABLE interest only while some is left.
fn flush(s: &mut Slot, token: usize, registry: &Registry, broker: &mut Broker, now: u64) {
    let Some(r) = s.remote.as_mut() else {
        return;
    };
    if !r.connected {
        return;
    }
    let mut failed: Option<io::Error> = None;
    loop {
        let data = s.spec.link.remote_output();
        if data.is_empty() {
            break;
        }
        let res = match r.tls.as_mut() {
            None => r.sock.write(data),
            Some(tls) => tls.writer().write(data),
        };
        match res {
            Ok(0) => break,
            Ok(n) => s.spec.link.remote_written(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        if let Some(tls) = r.tls.as_mut() {
            if let Err(e) = push_tls(&mut r.sock, tls) {
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() {
        if let Some(tls) = r.tls.as_mut() {
            if let Err(e) = push_tls(&mut r.sock, tls) {
                failed = Some(e);
            }
        }
    }
    if let Some(e) = failed {
        fail(s, registry, broker, &e.to_string(), now);
        return;
    }
    let want =
        !s.spec.link.remote_output().is_empty() || r.tls.as_ref().is_some_and(|t| t.wants_write());
    if want != r.writable {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if registry
            .reregister(&mut r.sock, Token(token), interest)
            .is_ok()
        {
            r.writable = want;
        }
    }
}

/// TLS records to the socket until it would block.
fn push_tls(sock: &mut TcpStream, tls: &mut rustls::ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The level, `log` target and text Mosquitto 2.0 writes for `e` (where
/// Mosquitto writes nothing, midge's own line in the same style).
pub fn line(e: &LinkEvent) -> (log::Level, &'static str, String) {
    use log::Level::{Debug, Error, Info, Warn};
    match e {
        LinkEvent::Connecting { name, host, port } => (
            Info,
            "notice",
            format!("Connecting bridge {name} ({host}:{port})"),
        ),
        LinkEvent::ConnectFailed { name, why } => (
            Warn,
            "midge",
            format!("Warning: Unable to connect to bridge {name}: {why}."),
        ),
        LinkEvent::Retry {
            name,
            delay_ms: Some(ms),
        } => (
            Debug,
            "debug",
            format!("Bridge {name}: next connection attempt in {ms} ms."),
        ),
        LinkEvent::Retry {
            name,
            delay_ms: None,
        } => (
            Debug,
            "debug",
            format!("Bridge {name}: no further connection attempt scheduled."),
        ),
        LinkEvent::RemoteError { name, error } => (
            Info,
            "notice",
            format!("Bridge {name} disconnected from remote: {error}."),
        ),
        LinkEvent::Refused { reason, .. } => {
            (Info, "midge", format!("Connection Refused: {reason}"))
        }
        LinkEvent::RemoteDisconnect { name, reason } => (
            Info,
            "notice",
            format!("Bridge {name} received DISCONNECT ({reason}) from remote."),
        ),
        LinkEvent::RemoteSubscribe { client_id, topic } => (
            Debug,
            "debug",
            format!("Bridge {client_id} doing remote SUBSCRIBE on topic {topic}"),
        ),
        LinkEvent::LocalSubscribe { client_id, topic } => (
            Debug,
            "debug",
            format!("Bridge {client_id} doing local SUBSCRIBE on topic {topic}"),
        ),
        LinkEvent::Lost { client_id, .. } => (
            Info,
            "notice",
            format!("Client {client_id} closed its connection."),
        ),
        LinkEvent::LocalClosed { name, client_id } => (
            Info,
            "notice",
            format!("Bridge {name}: the local broker closed {client_id}; reconnecting it."),
        ),
        LinkEvent::LocalRefused {
            name,
            client_id,
            code,
        } => (
            Error,
            "midge",
            format!("Error: bridge {name}: the local broker refused {client_id} (code {code})."),
        ),
        LinkEvent::Dropped { name, topic, error } => (
            Warn,
            "midge",
            format!("Warning: bridge {name} dropped a message on {topic}: {error}."),
        ),
        LinkEvent::NoConnack { name } => (
            Info,
            "notice",
            format!("Bridge {name}: no CONNACK from the remote in time."),
        ),
        LinkEvent::KeepaliveFailed { name, error } => (
            Info,
            "notice",
            format!("Bridge {name}: {error} from the remote; reconnecting."),
        ),
        LinkEvent::Stuck { name } => (
            Info,
            "notice",
            format!("Bridge {name}: the remote has not acknowledged a message in time; reconnecting."),
        ),
        LinkEvent::Idle { name, secs } => (
            Info,
            "notice",
            format!("Bridge {name} idle for {secs} s; disconnecting."),
        ),
        LinkEvent::BackToPrimary { name, host, port } => (
            Info,
            "notice",
            format!("Bridge {name}: primary address {host}:{port} is reachable again; reconnecting to it."),
        ),
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn mosquitto_wording() {
        let name = || "cloud".to_string();
        let (level, target, text) = line(&LinkEvent::Connecting {
            name: name(),
            host: "127.0.0.1".into(),
            port: 1883,
        });
        assert_eq!(
            (level, target, text.as_str()),
            (
                log::Level::Info,
                "notice",
                "Connecting bridge cloud (127.0.0.1:1883)"
            )
        );
        let (_, target, text) = line(&LinkEvent::LocalSubscribe {
            client_id: "local.pi.cloud".into(),
            topic: "sensors/#".into(),
        });
        assert_eq!(
            (target, text.as_str()),
            (
                "debug",
                "Bridge local.pi.cloud doing local SUBSCRIBE on topic sensors/#"
            )
        );
        let (_, _, text) = line(&LinkEvent::Lost {
            name: name(),
            client_id: "local.pi.cloud".into(),
        });
        assert_eq!(text, "Client local.pi.cloud closed its connection.");
    }
}
