//! net: the event loop. The only room that touches mio, sockets and signals.
//!
//! Owns: the mio `Poll`, listeners, the slab of connections (socket plus
//! receive buffer), the mapping from mio `Token` to slab key, the clock, and
//! the order of one loop pass: poll (timeout = the broker's next deadline),
//! read what is readable (budgeted), run timers, flush every outbox touched
//! in the pass, then close what the broker asked to close.
//!
//! Must not: interpret MQTT. Bytes go to `Broker::receive`, bytes come from
//! `Broker::outbox`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::broker::{Broker, ConnId};

pub mod bridges;
pub mod http_dir;
pub mod tls;
pub mod ws;

#[cfg(test)]
mod slow_loop_tests;

const SIGNAL_TOKEN: Token = Token(0);
const LISTENER_BASE: usize = 1;
/// Wakes the loop when a bridge's host name is resolved.
const WAKER_TOKEN: Token = Token(BRIDGE_BASE - 1);
/// Bridge links' remote sockets.
const BRIDGE_BASE: usize = 1 << 15;
const CONN_BASE: usize = 1 << 16;
/// Bytes read from one connection per pass before others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// TLS handshake steps run per loop pass (see `EventLoop::handshakes`).
const HANDSHAKES_PER_PASS: usize = 1;
const SCRATCH_SIZE: usize = 64 * 1024;
/// Bytes put into outboxes by reading, after which they are flushed
/// before reading goes on (see `EventLoop::read`).
const FLUSH_AT: u64 = 64 * 1024;
/// How long a closed connection waits for the peer's FIN.
const LINGER_MS: u64 = 2000;

/// One address to listen on.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    /// TCP address (ignored for unix sockets).
    pub addr: SocketAddr,
    /// `listener 0 /path`: a unix socket instead of TCP.
    pub unix_path: Option<std::path::PathBuf>,
    /// `bind_interface`: only accept on this network device (Linux).
    pub bind_interface: Option<String>,
    /// Index into `BrokerConfig::listeners`.
    pub settings: usize,
    /// -1 = unlimited.
    pub max_connections: i32,
    /// TLS for this listener, if it has certificates.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Take the username from the client certificate.
    pub identity: Identity,
    /// `protocol websockets`: MQTT inside WebSocket frames.
    pub websockets: Option<WsSpec>,
    /// The IPv6 half of an implicit address (no `address`, or local-only
    /// mode): on a host without IPv6 it is skipped with a warning.
    pub optional: bool,
}

/// WebSocket settings of a listener.
#[derive(Clone, Debug)]
pub struct WsSpec {
    /// `websockets_headers_size`.
    pub headers_limit: usize,
    /// `http_dir`: static files for plain HTTP requests.
    pub http_dir: Option<std::path::PathBuf>,
}

/// Bytes of WebSocket frames waiting for the socket past which the broker
/// is told to wait (its outbox then holds the rest).
const WS_WIRE_LIMIT: usize = 256 * 1024;

/// Where a TLS listener takes a client's username from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// From CONNECT, as usual.
    Connect,
    /// The certificate's subject CN (`use_identity_as_username`).
    CommonName,
    /// The whole subject (`use_subject_as_username`).
    Subject,
}

/// What the loop asks of the process when a signal arrives.
pub trait Control {
    /// SIGHUP: reload what can be reloaded. `tls` holds each listener's TLS
    /// config (in `ListenerSpec` order, None for plain listeners) to replace.
    fn reload(
        &mut self,
        _broker: &mut Broker,
        _specs: &[ListenerSpec],
        _tls: &mut [Option<Arc<rustls::ServerConfig>>],
    ) {
    }
    /// SIGUSR1: save persistence.
    fn save(&mut self, _broker: &mut Broker, _now: u64) {}
    /// End of every loop pass (before outboxes are flushed).
    fn after_pass(&mut self, _broker: &mut Broker, _now: u64) {}
    /// When the loop must wake up for `after_pass` even if nothing happens.
    fn next_deadline(&self) -> Option<u64> {
        None
    }
    /// Checked after every pass: true makes the loop shut down as on
    /// SIGTERM (an embedding without signals, e.g. a test).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// No reloading, no persistence.
pub struct NoControl;
impl Control for NoControl {}

struct BoundListener {
    listener: Listening,
    spec: ListenerSpec,
    count: usize,
}

enum Transport {
    Tcp(TcpStream),
    Unix(mio::net::UnixStream),
}

enum Stream {
    Tcp(TcpStream),
    Unix(mio::net::UnixStream),
    /// MQTT over WebSocket over any of the others (boxed: it is large and
    /// rare, and every connection slot is as big as the largest variant).
    Ws(Box<WsStream>),
    Tls {
        sock: TcpStream,
        tls: Box<rustls::ServerConnection>,
    },
}

impl Stream {
    /// Read from the socket itself, under TLS and WebSocket framing (used
    /// only to drain a connection we are closing).
    fn raw_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls { sock, .. } => sock.read(buf),
            Stream::Ws(w) => w.inner.raw_read(buf),
        }
    }

    /// Say goodbye at every layer and send FIN, keeping the read side open.
    fn close_write(&mut self) {
        self.goodbye(std::net::Shutdown::Write);
    }

    /// Say goodbye at every layer and close both directions.
    fn shutdown(&mut self) {
        self.goodbye(std::net::Shutdown::Both);
    }

    /// TLS close_notify / WebSocket close frame, then `how` on the socket.
    fn goodbye(&mut self, how: std::net::Shutdown) {
        match self {
            Stream::Tcp(s) => {
                let _ = s.shutdown(how);
            }
            Stream::Unix(s) => {
                let _ = s.shutdown(how);
            }
            Stream::Tls { sock, tls } => {
                tls.send_close_notify();
                let _ = tls.write_tls(sock);
                let _ = sock.shutdown(how);
            }
            Stream::Ws(w) => {
                let WsStream {
                    inner, ws, wire, ..
                } = &mut **w;
                ws.close(ws::CLOSE_NORMAL, wire);
                let _ = inner.write(wire);
                wire.clear();
                inner.goodbye(how);
            }
        }
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Tls { sock, .. } => sock,
            Stream::Ws(w) => w.inner.source(),
        }
    }

    /// A TLS handshake is still under way (its steps cost the CPU work of
    /// key exchange and signatures; see `EventLoop::handshakes`).
    fn is_handshaking(&self) -> bool {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => false,
            Stream::Tls { tls, .. } => tls.is_handshaking(),
            Stream::Ws(w) => w.inner.is_handshaking(),
        }
    }

    /// TLS records waiting to be written to the socket.
    fn wants_write(&self) -> bool {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => false,
            Stream::Tls { tls, .. } => tls.wants_write(),
            Stream::Ws(w) => !w.wire.is_empty() || w.inner.wants_write(),
        }
    }

    /// Push pending TLS records (or WebSocket frames) to the socket until
    /// it would block.
    fn flush_tls(&mut self) -> io::Result<()> {
        if let Stream::Ws(w) = self {
            let WsStream { inner, wire, .. } = &mut **w;
            let mut off = 0;
            while off < wire.len() {
                match inner.write(&wire[off..]) {
                    Ok(0) => break,
                    Ok(n) => off += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            wire.drain(..off);
            return inner.flush_tls();
        }
        if let Stream::Tls { sock, tls } = self {
            while tls.wants_write() {
                match tls.write_tls(sock) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => None,
            Stream::Ws(w) => w.inner.peer_certificate(),
            Stream::Tls { tls, .. } => tls
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref()),
        }
    }
}

impl Stream {
    /// Read MQTT bytes from inside WebSocket frames.
    fn read_ws(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Stream::Ws(w) = self else {
                return Ok(0);
            };
            let WsStream {
                inner,
                ws,
                app,
                wire,
                closed,
            } = &mut **w;
            if !app.is_empty() {
                let n = buf.len().min(app.len());
                buf[..n].copy_from_slice(&app[..n]);
                app.drain(..n);
                return Ok(n);
            }
            if *closed {
                return Ok(0);
            }
            let mut raw = [0u8; 16 * 1024];
            let n = inner.read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            let fed = ws.feed(&raw[..n], app, wire);
            // Handshake answers, pongs, close frames: out they go.
            let flushed = self.flush_tls();
            match fed {
                Ok(()) => flushed?,
                Err(ws::WsError::Closed) => {
                    // Packets that came in the same read as the close frame
                    // are still handed over before the end.
                    if let Stream::Ws(w) = self {
                        w.closed = true;
                    }
                }
                Err(e) => {
                    log::info!("WebSocket connection closed: {}.", e);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                }
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Ws(_) => self.read_ws(buf),
            Stream::Tls { sock, tls } => loop {
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                match tls.read_tls(sock) {
                    Ok(0) => return Ok(0),
                    Ok(_) => {
                        if let Err(e) = tls.process_new_packets() {
                            // Let the peer see the alert before we go.
                            let _ = tls.write_tls(sock);
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                        }
                    }
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Ws(w) => {
                if w.wire.len() >= WS_WIRE_LIMIT {
                    self.flush_tls()?;
                    if matches!(self, Stream::Ws(w) if w.wire.len() >= WS_WIRE_LIMIT) {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
                let w = match self {
                    Stream::Ws(w) => w,
                    _ => return Ok(0),
                };
                w.ws.wrap(buf, &mut w.wire);
                self.flush_tls()?;
                Ok(buf.len())
            }
            Stream::Tls { tls, .. } => {
                let n = tls.writer().write(buf)?;
                self.flush_tls()?;
                if n == 0 && !buf.is_empty() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls { .. } | Stream::Ws(_) => self.flush_tls(),
        }
    }
}

struct WsStream {
    inner: Stream,
    ws: ws::WsServer,
    /// Decoded MQTT bytes not yet handed to the reader.
    app: Vec<u8>,
    /// Frames (and handshake answers) not yet written to the socket.
    wire: Vec<u8>,
    /// The peer closed; what is left in `app` is still delivered first.
    closed: bool,
}

struct Conn {
    id: ConnId,
    stream: Stream,
    listener: usize,
    /// An incomplete packet carried over to the next read.
    rx: Vec<u8>,
    writable: bool,
    /// Reading stopped because the client does not drain its output.
    paused: bool,
    closed: bool,
    /// Closed by us and waiting (briefly) for the peer to close too, so our
    /// last bytes are not lost to a reset: until this time (loop clock, ms).
    linger_until: Option<u64>,
    /// Still to tell the broker the certificate's name (TLS identity listeners).
    identity: Identity,
    /// Waiting in `EventLoop::handshakes`.
    handshake_queued: bool,
}

/// A bound listening socket.
pub enum Listening {
    Tcp(TcpListener),
    Unix(mio::net::UnixListener),
}

impl ListenerSpec {
    /// How the listener appears in log lines.
    pub fn describe(&self) -> String {
        match &self.unix_path {
            Some(p) => p.display().to_string(),
            None => self.addr.to_string(),
        }
    }
}

/// Bind every listener, logging Mosquitto's "Opening ... listen socket"
/// line before each. A failure names the address and the reason; an
/// optional IPv6 socket the host cannot open is skipped with a warning.
pub fn bind(specs: &[ListenerSpec]) -> Result<Vec<(Listening, ListenerSpec)>, String> {
    let mut out = Vec::new();
    let mut ws_logged = Vec::new();
    for spec in specs {
        log_opening(spec, &mut ws_logged);
        let bound = match &spec.unix_path {
            Some(path) => {
                // A socket file left by an earlier run would make bind fail.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                mio::net::UnixListener::bind(path).map(Listening::Unix)
            }
            None => bind_tcp(spec.addr, spec.bind_interface.as_deref()).map(Listening::Tcp),
        };
        match bound {
            Ok(l) => out.push((l, spec.clone())),
            Err(e) if spec.optional && no_ipv6(&e) => {
                log::warn!(
                    "Warning: Unable to open ipv6 listen socket on {}: {}; this host has no usable IPv6, listening on IPv4 only.",
                    spec.describe(),
                    describe(&e)
                );
            }
            Err(e) => {
                return Err(format!(
                    "Error: Unable to listen on {}: {}.",
                    spec.describe(),
                    describe(&e)
                ))
            }
        }
    }
    Ok(out)
}

fn log_opening(spec: &ListenerSpec, ws_logged: &mut Vec<usize>) {
    match &spec.unix_path {
        Some(p) => {
            log::info!(target: "information", "Opening unix listen socket on path {}.", p.display())
        }
        None if spec.websockets.is_some() => {
            // libwebsockets opens one socket per listener: one line.
            if !ws_logged.contains(&spec.settings) {
                ws_logged.push(spec.settings);
                log::info!(
                    target: "information",
                    "Opening websockets listen socket on port {}.",
                    spec.addr.port()
                );
            }
        }
        None => {
            let family = if spec.addr.is_ipv4() { "ipv4" } else { "ipv6" };
            log::info!(
                target: "information",
                "Opening {} listen socket on port {}.",
                family,
                spec.addr.port()
            );
        }
    }
}

/// The errors of a host (or loopback) without IPv6: no AF_INET6 sockets at
/// all, or no IPv6 address to bind (`disable_ipv6`).
fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

/// A nonblocking, close-on-exec TCP socket of `addr`'s family (for a
/// listener or a bridge's outgoing connection, set up before bind).
fn tcp_socket(addr: &SocketAddr) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns; OwnedFd closes it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// A TCP listener as Mosquitto opens one: SO_REUSEADDR, IPV6_V6ONLY on IPv6
/// sockets (so `0.0.0.0` and `::` on one port coexist), and SO_BINDTODEVICE
/// for `bind_interface` (Linux). std and mio cannot set the last two before
/// bind, hence the raw socket.
fn bind_tcp(addr: SocketAddr, dev: Option<&str>) -> io::Result<TcpListener> {
    use std::os::fd::AsRawFd;
    let cdev = match dev {
        Some(d) => Some(
            std::ffi::CString::new(d)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"))?,
        ),
        None => None,
    };
    let sock = tcp_socket(&addr)?;
    let fd = sock.as_raw_fd();
    let listener = std::net::TcpListener::from(sock);
    let one: libc::c_int = 1;
    let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let (sa, len) = sockaddr(addr);
    // SAFETY: setsockopt/bind/listen read only the buffers passed, whose
    // sizes are given; fd is valid for the lifetime of `listener`.
    unsafe {
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const libc::c_int as *const libc::c_void,
            int_len,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        if addr.is_ipv6()
            && libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                &one as *const libc::c_int as *const libc::c_void,
                int_len,
            ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        if let Some(cdev) = &cdev {
            if libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                cdev.as_ptr() as *const libc::c_void,
                cdev.as_bytes_with_nul().len() as libc::socklen_t,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::bind(
            fd,
            &sa as *const libc::sockaddr_storage as *const libc::sockaddr,
            len,
        ) < 0
            || libc::listen(fd, 1024) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(TcpListener::from_std(listener))
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage (that is its purpose).
            unsafe {
                std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin);
            }
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe {
                std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6);
            }
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "Address already in use".to_string(),
        io::ErrorKind::AddrNotAvailable => "Cannot assign requested address".to_string(),
        io::ErrorKind::PermissionDenied => "Permission denied".to_string(),
        _ => e.to_string(),
    }
}

pub struct EventLoop {
    poll: Poll,
    listeners: Vec<BoundListener>,
    conns: Slab<Conn>,
    next_gen: u32,
    scratch: Vec<u8>,
    read_pending: Vec<usize>,
    /// Connections in a TLS handshake with bytes to read. Their reads wait
    /// until every other event of the pass is handled, and only
    /// `HANDSHAKES_PER_PASS` run per pass: a handshake step costs a key
    /// exchange and a signature (~0.3 ms here, far more on a Pi), so a
    /// flood of new TLS connections must not hold up established clients
    /// for more than one step at a time (issue 16).
    handshakes: std::collections::VecDeque<usize>,
    /// `Stats::bytes_sent` when outboxes were last flushed.
    flushed_at: u64,
    ids: Vec<ConnId>,
    started: Instant,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// Connections closed by us, waiting for the peer (see `drop_conn`).
    lingering: Vec<usize>,
    shutting_down: bool,
    /// Bridge links; their local halves use broker slots `0..key_base`.
    bridges: bridges::Bridges,
    /// Connection `ConnId`s are the slab key plus this.
    key_base: usize,
    /// A descriptor held in reserve (on /dev/null): out of descriptors,
    /// it is given back so a waiting connection can be accepted and closed
    /// at once instead of hanging in the backlog, as Mosquitto does.
    spare_fd: Option<std::fs::File>,
}

impl EventLoop {
    pub fn new(listeners: Vec<(Listening, ListenerSpec)>) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let mut bound = Vec::new();
        for (i, (mut l, spec)) in listeners.into_iter().enumerate() {
            let token = Token(LISTENER_BASE + i);
            match &mut l {
                Listening::Tcp(t) => poll.registry().register(t, token, Interest::READABLE)?,
                Listening::Unix(u) => poll.registry().register(u, token, Interest::READABLE)?,
            }
            bound.push(BoundListener {
                listener: l,
                spec,
                count: 0,
            });
        }
        Ok(EventLoop {
            poll,
            listeners: bound,
            conns: Slab::new(),
            next_gen: 0,
            scratch: vec![0; SCRATCH_SIZE],
            read_pending: Vec::new(),
            handshakes: std::collections::VecDeque::new(),
            flushed_at: 0,
            ids: Vec::new(),
            started: Instant::now(),
            signals: None,
            lingering: Vec::new(),
            shutting_down: false,
            bridges: bridges::Bridges::new(Vec::new(), BRIDGE_BASE),
            key_base: 0,
            spare_fd: std::fs::File::open("/dev/null").ok(),
        })
    }

    /// Drive these bridge links (before `run`, before any connection is
    /// accepted: their local halves take the first broker slots).
    pub fn set_bridges(&mut self, specs: Vec<bridges::BridgeSpec>) -> io::Result<()> {
        if specs.len() >= BRIDGE_BASE - 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many bridges",
            ));
        }
        self.key_base = specs.len();
        self.bridges = bridges::Bridges::new(specs, BRIDGE_BASE);
        if !self.bridges.is_empty() {
            let waker = Waker::new(self.poll.registry(), WAKER_TOKEN)?;
            self.bridges.set_waker(Arc::new(waker));
        }
        Ok(())
    }

    /// The instant the loop clock counts from.
    pub fn epoch(&self) -> Instant {
        self.started
    }

    /// Milliseconds on the loop's monotonic clock (what the broker sees as `now`).
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Handle SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 in the loop.
    pub fn install_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        let mut signals =
            signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Run until SIGINT/SIGTERM; then close every client and return.
    pub fn run(&mut self, broker: &mut Broker, control: &mut dyn Control) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut shutting_down = false;
        let started = self.now();
        self.bridges.start(broker, started);
        loop {
            let now = self.now();
            let timeout =
                if !self.read_pending.is_empty() || !self.handshakes.is_empty() || shutting_down {
                    Some(Duration::ZERO)
                } else {
                    let mut deadline = broker.next_deadline();
                    if let Some(c) = control.next_deadline() {
                        deadline = Some(deadline.map_or(c, |d| d.min(c)));
                    }
                    if !self.lingering.is_empty() {
                        deadline = Some(deadline.map_or(now + 500, |d| d.min(now + 500)));
                    }
                    if let Some(b) = self.bridges.next_deadline() {
                        deadline = Some(deadline.map_or(b, |d| d.min(b)));
                    }
                    deadline.map(|d| Duration::from_millis(d.saturating_sub(now)))
                };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = self.now();
            let mut signalled = false;
            for event in events.iter() {
                match event.token() {
                    // Handled after the pass's other events: bytes that
                    // arrived before a SIGTERM (an acknowledgement, a
                    // PUBLISH) are taken in before the broker saves and
                    // stops, as Mosquitto finishes its loop iteration.
                    SIGNAL_TOKEN => signalled = true,
                    WAKER_TOKEN => {
                        self.bridges.resolved(self.poll.registry(), broker, now);
                    }
                    Token(t) if self.bridges.owns_token(t) => {
                        self.bridges.event(
                            t,
                            event.is_readable() || event.is_read_closed() || event.is_error(),
                            event.is_writable(),
                            self.poll.registry(),
                            &mut self.scratch,
                            broker,
                            now,
                        );
                    }
                    Token(t) if (LISTENER_BASE..CONN_BASE).contains(&t) => {
                        self.accept(t - LISTENER_BASE, broker, now);
                    }
                    Token(t) => {
                        let key = t - CONN_BASE;
                        if event.is_writable() {
                            self.flush(key, broker, now);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            if !shutting_down && self.defer_handshake(key) {
                                continue;
                            }
                            self.read(key, broker, now);
                        }
                    }
                }
            }
            let pending = std::mem::take(&mut self.read_pending);
            for key in pending {
                self.read(key, broker, now);
            }
            if signalled && self.handle_signals(broker, control, now) {
                shutting_down = true;
                self.shutting_down = true;
            }
            for _ in 0..HANDSHAKES_PER_PASS {
                let Some(key) = self.handshakes.pop_front() else {
                    break;
                };
                if let Some(c) = self.conns.get_mut(key) {
                    c.handshake_queued = false;
                }
                self.read(key, broker, now);
            }
            broker.tick(now);
            if !self.lingering.is_empty() {
                self.sweep_lingering(now);
            }
            if !shutting_down {
                self.bridges.drive(self.poll.registry(), broker, now);
            }
            control.after_pass(broker, now);
            if !shutting_down && control.stop_requested() {
                shutting_down = true;
                self.shutting_down = true;
            }
            if !shutting_down {
                self.bridges.flush(self.poll.registry(), broker, now);
            }
            self.flush_dirty(broker, now);
            self.close_requested(broker, now);
            if shutting_down {
                self.bridges.shutdown(self.poll.registry());
                if self.conns.is_empty() {
                    return Ok(());
                }
                // Bounded: anything still open after one more pass is dropped.
                broker.shutdown(now);
                self.flush_dirty(broker, now);
                self.close_requested(broker, now);
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    self.drop_conn(key, broker, now);
                }
                return Ok(());
            }
        }
    }

    fn handle_signals(&mut self, broker: &mut Broker, control: &mut dyn Control, now: u64) -> bool {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        let mut stop = false;
        let Some(signals) = self.signals.as_mut() else {
            return false;
        };
        let got: Vec<i32> = signals.pending().collect();
        for sig in got {
            match sig {
                SIGINT | SIGTERM => {
                    log::info!(target: "information", "midge version {} terminating", env!("CARGO_PKG_VERSION"));
                    broker.shutdown(now);
                    stop = true;
                }
                SIGHUP => {
                    log::info!(target: "information", "Reloading config.");
                    let specs: Vec<ListenerSpec> =
                        self.listeners.iter().map(|l| l.spec.clone()).collect();
                    let mut tls: Vec<Option<Arc<rustls::ServerConfig>>> =
                        specs.iter().map(|s| s.tls.clone()).collect();
                    control.reload(broker, &specs, &mut tls);
                    for (l, t) in self.listeners.iter_mut().zip(tls) {
                        l.spec.tls = t;
                    }
                }
                SIGUSR1 => control.save(broker, now),
                SIGUSR2 => {
                    let dump = broker.dump_subscriptions();
                    log::info!("Subscriptions:\n{}", dump.trim_end());
                }
                _ => {}
            }
        }
        stop
    }

    fn accept(&mut self, idx: usize, broker: &mut Broker, now: u64) {
        loop {
            let Some(l) = self.listeners.get_mut(idx) else {
                return;
            };
            let accepted = match &l.listener {
                Listening::Tcp(t) => t.accept().map(|(s, peer)| {
                    // midge coalesces its writes per loop pass, so Nagle's
                    // algorithm only adds latency.
                    let _ = s.set_nodelay(true);
                    let peer = match peer {
                        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
                        SocketAddr::V6(a) => format!("{}:{}", a.ip(), a.port()),
                    };
                    (Transport::Tcp(s), peer)
                }),
                Listening::Unix(u) => u.accept().map(|(s, _)| {
                    let path = l.spec.describe();
                    (Transport::Unix(s), path)
                }),
            };
            let (stream, peer_s) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    log::warn!(
                        "Unable to accept new connection, system socket count has been exceeded. Try increasing \"ulimit -n\" or equivalent."
                    );
                    // Refuse the waiting connection with the spare
                    // descriptor (then take it again). Linux reports
                    // EMFILE before it looks at the backlog, so only a
                    // connection actually refused means there may be more.
                    if self.spare_fd.take().is_none() {
                        return;
                    }
                    let refused = match &l.listener {
                        Listening::Tcp(t) => t.accept().is_ok(),
                        Listening::Unix(u) => u.accept().is_ok(),
                    };
                    self.spare_fd = std::fs::File::open("/dev/null").ok();
                    if !refused {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    // Other accept errors: try again next pass.
                    log::error!("Error accepting connection: {}.", e);
                    return;
                }
            };
            if l.spec.max_connections >= 0 && l.count >= l.spec.max_connections as usize {
                log::info!(
                    "Client connection from {} denied: max_connections exceeded.",
                    peer_s
                );
                drop(stream);
                continue;
            }
            let port = if l.spec.unix_path.is_some() {
                0
            } else {
                l.spec.addr.port()
            };
            let settings = l.spec.settings;
            self.next_gen = self.next_gen.wrapping_add(1);
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let id = ConnId {
                key: (key + self.key_base) as u32,
                gen: self.next_gen,
            };
            let stream = match (&l.spec.tls, stream) {
                (None, Transport::Tcp(t)) => Stream::Tcp(t),
                (_, Transport::Unix(u)) => Stream::Unix(u),
                (Some(cfg), Transport::Tcp(stream)) => {
                    match rustls::ServerConnection::new(cfg.clone()) {
                        Ok(tls) => Stream::Tls {
                            sock: stream,
                            tls: Box::new(tls),
                        },
                        Err(e) => {
                            log::error!("Error creating TLS session: {}.", e);
                            continue;
                        }
                    }
                }
            };
            let stream = match &l.spec.websockets {
                Some(w) => Stream::Ws(Box::new(WsStream {
                    inner: stream,
                    ws: ws::WsServer::new(w.headers_limit, w.http_dir.clone()),
                    app: Vec::new(),
                    wire: Vec::new(),
                    closed: false,
                })),
                None => stream,
            };
            let mut conn = Conn {
                id,
                stream,
                listener: idx,
                rx: Vec::new(),
                writable: false,
                paused: false,
                closed: false,
                linger_until: None,
                identity: l.spec.identity,
                handshake_queued: false,
            };
            if let Err(e) = self.poll.registry().register(
                conn.stream.source(),
                Token(CONN_BASE + key),
                Interest::READABLE,
            ) {
                log::error!("Error registering connection: {}.", e);
                continue;
            }
            entry.insert(conn);
            l.count += 1;
            if broker.config().connection_messages {
                log::info!("New connection from {} on port {}.", peer_s, port);
            }
            broker.open(id, settings, &peer_s, now);
        }
    }

    /// A connection in a TLS handshake joins `handshakes` instead of being
    /// read now. True when it was deferred.
    fn defer_handshake(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.closed || conn.linger_until.is_some() || !conn.stream.is_handshaking() {
            return false;
        }
        if !conn.handshake_queued {
            conn.handshake_queued = true;
            self.handshakes.push_back(key);
        }
        true
    }

    /// Read what `key` has sent, up to `READ_BUDGET` this pass. Whenever
    /// the messages read have put `FLUSH_AT` bytes into outboxes, those
    /// are written out before reading on: reading must not outrun writing,
    /// or on a slow CPU one pass reads megabytes of publishes, the
    /// subscribers' outboxes overflow into their queues and messages are
    /// dropped before a single byte went out (issue 16).
    fn read(&mut self, key: usize, broker: &mut Broker, now: u64) {
        let mut budget = READ_BUDGET;
        while self.read_some(key, broker, now, &mut budget) {
            self.flush_dirty(broker, now);
        }
    }

    /// One stretch of `read`; true when it stopped to let outboxes flush.
    fn read_some(&mut self, key: usize, broker: &mut Broker, now: u64, budget: &mut usize) -> bool {
        let flushed_at = self.flushed_at;
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.linger_until.is_some() {
            // Discard whatever the peer still sends until it closes.
            loop {
                match conn.stream.raw_read(&mut self.scratch) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            self.forget(key);
            return false;
        }
        if conn.closed {
            return false;
        }
        let id = conn.id;
        loop {
            if !broker.wants_read(id) {
                conn.paused = true;
                return false;
            }
            let n = match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    conn.closed = true;
                    broker.connection_lost(id, now);
                    return false;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if conn.stream.wants_write() {
                        // A TLS handshake answer is waiting.
                        self.flush(key, broker, now);
                    }
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData && !broker.is_connected(id) {
                        // A failed TLS handshake (bad or missing client
                        // certificate, version) or a bad WebSocket upgrade.
                        log::info!("Client <unknown> disconnected: {}.", e);
                    }
                    conn.closed = true;
                    broker.connection_lost(id, now);
                    return false;
                }
            };
            if conn.identity != Identity::Connect {
                let name = conn
                    .stream
                    .peer_certificate()
                    .and_then(|c| tls::cert_username(c, conn.identity == Identity::Subject));
                broker.set_cert_username(id, name);
                conn.identity = Identity::Connect;
            }
            let data = &self.scratch[..n];
            if conn.rx.is_empty() {
                let used = broker.receive(id, data, now);
                if used < n {
                    conn.rx.extend_from_slice(&data[used..]);
                }
            } else {
                conn.rx.extend_from_slice(data);
                let used = broker.receive(id, &conn.rx, now);
                conn.rx.drain(..used.min(conn.rx.len()));
                if conn.rx.is_empty() && conn.rx.capacity() > SCRATCH_SIZE {
                    conn.rx = Vec::new();
                }
            }
            *budget = budget.saturating_sub(n);
            if *budget == 0 {
                // Edge-triggered: come back next pass without waiting for an event.
                self.read_pending.push(key);
                return false;
            }
            if broker.stats().bytes_sent.wrapping_sub(flushed_at) >= FLUSH_AT {
                return true;
            }
        }
    }

    fn flush(&mut self, key: usize, broker: &mut Broker, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let id = conn.id;
        loop {
            let data = broker.outbox(id);
            if data.is_empty() {
                break;
            }
            match conn.stream.write(data) {
                Ok(0) => break,
                Ok(n) => broker.outbox_written(id, n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    if !conn.closed {
                        conn.closed = true;
                        broker.connection_lost(id, now);
                    }
                    return;
                }
            }
        }
        if conn.stream.wants_write() && conn.stream.flush_tls().is_err() {
            if !conn.closed {
                conn.closed = true;
                broker.connection_lost(id, now);
            }
            return;
        }
        let want_write = !broker.outbox(id).is_empty() || conn.stream.wants_write();
        if want_write != conn.writable && !conn.closed {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(conn.stream.source(), Token(CONN_BASE + key), interest)
                .is_ok()
            {
                conn.writable = want_write;
            }
        }
        if conn.paused && broker.wants_read(id) {
            conn.paused = false;
            self.read_pending.push(key);
        }
    }

    fn flush_dirty(&mut self, broker: &mut Broker, now: u64) {
        self.flushed_at = broker.stats().bytes_sent;
        let mut ids = std::mem::take(&mut self.ids);
        broker.take_dirty(&mut ids);
        for id in ids.iter() {
            let Some(key) = (id.key as usize).checked_sub(self.key_base) else {
                // A bridge's local half: `bridges.drive` reads its outbox.
                continue;
            };
            if self.conns.get(key).is_some_and(|c| c.id == *id) {
                self.flush(key, broker, now);
            }
        }
        self.ids = ids;
    }

    fn close_requested(&mut self, broker: &mut Broker, now: u64) {
        let mut ids = std::mem::take(&mut self.ids);
        broker.take_closing(&mut ids);
        for id in ids.iter() {
            let Some(key) = (id.key as usize).checked_sub(self.key_base) else {
                self.bridges.local_closed(*id, broker, now);
                continue;
            };
            if self.conns.get(key).is_some_and(|c| c.id == *id) {
                // Best effort: a refusal CONNACK or DISCONNECT goes out first.
                self.flush(key, broker, now);
                self.drop_conn(key, broker, now);
            }
        }
        self.ids = ids;
    }

    fn drop_conn(&mut self, key: usize, broker: &mut Broker, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.linger_until.is_some() {
            return;
        }
        broker.release(conn.id, now);
        if conn.closed || self.shutting_down {
            conn.stream.shutdown();
            self.forget(key);
            return;
        }
        // Send our FIN (after a TLS close_notify / WebSocket close frame)
        // but keep reading until the peer closes, so the last thing we
        // sent (a refusal CONNACK, a DISCONNECT) is not lost to a reset.
        conn.stream.close_write();
        conn.linger_until = Some(now + LINGER_MS);
        self.lingering.push(key);
    }

    /// Deregister and free a connection slot for good.
    fn forget(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(conn.stream.source());
        if let Some(l) = self.listeners.get_mut(conn.listener) {
            l.count = l.count.saturating_sub(1);
        }
        drop(conn);
    }

    /// Free lingering connections whose peer never closed.
    fn sweep_lingering(&mut self, now: u64) {
        let mut i = 0;
        while i < self.lingering.len() {
            let key = self.lingering[i];
            let expired = match self.conns.get(key) {
                Some(c) => c.linger_until.is_none_or(|t| t <= now),
                None => true,
            };
            if expired {
                self.lingering.swap_remove(i);
                if self
                    .conns
                    .get(key)
                    .is_some_and(|c| c.linger_until.is_some())
                {
                    self.forget(key);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Local addresses actually bound (for tests that bind port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| match &l.listener {
                Listening::Tcp(t) => t.local_addr().ok(),
                Listening::Unix(_) => None,
            })
            .collect()
    }
}
