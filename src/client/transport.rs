//! transport: blocking byte streams to a broker: TCP, unix socket, TLS over
//! TCP, and WebSocket over either of those.
//!
//! Owns: name resolution and connecting (trying every address, like
//! libmosquitto), the TLS handshake (done up front so a bad certificate is
//! reported as a TLS error, not as a lost connection), the WebSocket
//! upgrade, read timeouts, and the wording of connection errors.
//!
//! Must not: know MQTT. The MQTT state lives in `session`; the blocking
//! driver in `connection` moves bytes between the two.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::websocket::{self, WsCodec, WsError};

/// Where the broker is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(String),
}

/// How to reach the broker.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub endpoint: Endpoint,
    /// TLS client configuration and the host name to verify.
    pub tls: Option<Arc<ClientConfig>>,
    /// Speak MQTT over WebSocket (`ws://`, `wss://`).
    pub websocket: bool,
    /// Disable Nagle's algorithm (`--nodelay`).
    pub nodelay: bool,
    /// Bound on connecting, the TLS handshake and the WebSocket upgrade.
    pub connect_timeout: Duration,
}

/// Why a connection could not be made. Each variant maps to one of
/// Mosquitto's messages and exit codes (see `crate::client::messages`).
#[derive(Debug)]
pub enum ConnectError {
    /// Host name did not resolve ("Unable to connect (Lookup error.).").
    Lookup,
    /// The socket could not connect ("Error: Connection refused").
    Io(io::Error),
    /// TLS setup or handshake failed ("Error: A TLS error occurred.").
    Tls(String),
    /// The WebSocket upgrade was refused.
    WebSocket(WsError),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Lookup => f.write_str("Lookup error."),
            ConnectError::Io(e) => f.write_str(&os_error_text(e)),
            ConnectError::Tls(s) => write!(f, "TLS error: {s}"),
            ConnectError::WebSocket(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// `strerror()` text of an OS error, without Rust's " (os error N)".
pub fn os_error_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s.get(..i).unwrap_or(&s).to_string(),
        None => s,
    }
}

/// True for the error a read timeout produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// True when an I/O error carries a rustls error (a TLS failure).
pub fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => match s.read(buf) {
                // A server that closes without close_notify: treat as EOF,
                // like libmosquitto does with OpenSSL.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(data),
            Stream::Unix(s) => s.write_all(data),
            Stream::Tls(s) => {
                s.write_all(data)?;
                s.flush()
            }
        }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.sock.set_write_timeout(t),
        }
    }

    fn shutdown(&mut self) {
        match self {
            Stream::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Stream::Unix(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Stream::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
                let _ = s.sock.shutdown(Shutdown::Both);
            }
        }
    }
}

struct WsState {
    codec: WsCodec,
    /// Unframed bytes not yet handed to the caller.
    data: Vec<u8>,
    consumed: usize,
}

/// A connected, blocking byte stream to the broker.
pub struct Transport {
    stream: Stream,
    ws: Option<WsState>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.stream {
            Stream::Tcp(_) => "tcp",
            Stream::Unix(_) => "unix",
            Stream::Tls(_) => "tls",
        };
        f.debug_struct("Transport")
            .field("stream", &kind)
            .field("websocket", &self.ws.is_some())
            .finish()
    }
}

fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = match (h, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => return Err(ConnectError::Lookup),
    };
    if addrs.is_empty() {
        return Err(ConnectError::Lookup);
    }
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(ConnectError::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotConnected, "no address to connect to")
    })))
}

impl Transport {
    /// Connect, do the TLS handshake and the WebSocket upgrade as asked.
    pub fn connect(opts: &TransportOptions) -> Result<Transport, ConnectError> {
        let stream = match &opts.endpoint {
            Endpoint::Unix(path) => {
                Stream::Unix(UnixStream::connect(path).map_err(ConnectError::Io)?)
            }
            Endpoint::Tcp { host, port } => {
                let tcp = connect_tcp(host, *port, opts.connect_timeout)?;
                if opts.nodelay {
                    let _ = tcp.set_nodelay(true);
                }
                match &opts.tls {
                    None => Stream::Tcp(tcp),
                    Some(cfg) => {
                        let name = super::tls::server_name(host)
                            .map_err(|e| ConnectError::Tls(e.to_string()))?;
                        let mut conn = ClientConnection::new(cfg.clone(), name)
                            .map_err(|e| ConnectError::Tls(e.to_string()))?;
                        let mut tcp = tcp;
                        let _ = tcp.set_read_timeout(Some(opts.connect_timeout));
                        let _ = tcp.set_write_timeout(Some(opts.connect_timeout));
                        while conn.is_handshaking() {
                            match conn.complete_io(&mut tcp) {
                                Ok((0, 0)) if conn.is_handshaking() => {
                                    return Err(ConnectError::Tls(
                                        "connection closed during the handshake".into(),
                                    ))
                                }
                                Ok(_) => {}
                                Err(e) => return Err(ConnectError::Tls(os_error_text(&e))),
                            }
                        }
                        Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
                    }
                }
            }
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
        let mut t = Transport { stream, ws: None };
        if opts.websocket {
            t.upgrade(opts)?;
        }
        Ok(t)
    }

    fn upgrade(&mut self, opts: &TransportOptions) -> Result<(), ConnectError> {
        let (host, port) = match &opts.endpoint {
            Endpoint::Tcp { host, port } => (host.as_str(), *port),
            Endpoint::Unix(_) => ("localhost", 80),
        };
        let key = websocket::new_key();
        let req = websocket::handshake_request(host, port, opts.tls.is_some(), "/mqtt", &key);
        self.stream.write_all(&req).map_err(map_io)?;
        let _ = self.stream.set_read_timeout(Some(opts.connect_timeout));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let header_len = loop {
            let n = self.stream.read(&mut chunk).map_err(map_io)?;
            if n == 0 {
                return Err(ConnectError::WebSocket(WsError::Handshake(
                    "connection closed by the server".into(),
                )));
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if let Some(h) =
                websocket::parse_handshake_response(&buf, &key).map_err(ConnectError::WebSocket)?
            {
                break h;
            }
        };
        let mut ws = WsState {
            codec: WsCodec::new(),
            data: Vec::new(),
            consumed: 0,
        };
        let mut reply = Vec::new();
        ws.codec
            .decode(
                buf.get(header_len..).unwrap_or_default(),
                &mut ws.data,
                &mut reply,
            )
            .map_err(ConnectError::WebSocket)?;
        if !reply.is_empty() {
            self.stream.write_all(&reply).map_err(map_io)?;
        }
        self.ws = Some(ws);
        Ok(())
    }

    /// Bound the next reads; None blocks until data arrives.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        // A zero duration means "no timeout" to the OS: use the smallest
        // real one instead.
        let t = t.map(|d| d.max(Duration::from_millis(1)));
        self.stream.set_read_timeout(t)
    }

    /// Read some bytes; Ok(0) is end of stream. A read timeout is an error
    /// for which `is_timeout` is true.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(ws) = self.ws.as_mut() else {
            return self.stream.read(buf);
        };
        loop {
            if ws.consumed < ws.data.len() {
                let avail = ws.data.get(ws.consumed..).unwrap_or_default();
                let n = avail.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), avail.get(..n)) {
                    dst.copy_from_slice(src);
                }
                ws.consumed += n;
                if ws.consumed == ws.data.len() {
                    ws.data.clear();
                    ws.consumed = 0;
                }
                return Ok(n);
            }
            if ws.codec.is_closed() {
                return Ok(0);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(0);
            }
            let mut reply = Vec::new();
            ws.codec
                .decode(chunk.get(..n).unwrap_or_default(), &mut ws.data, &mut reply)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if !reply.is_empty() {
                self.stream.write_all(&reply)?;
            }
        }
    }

    /// Write all of `data` (as one WebSocket frame when over WebSocket).
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match &self.ws {
            Some(ws) => {
                let mut framed = Vec::with_capacity(data.len() + 14);
                ws.codec.encode_binary(data, &mut framed);
                self.stream.write_all(&framed)
            }
            None => self.stream.write_all(data),
        }
    }

    /// Close the connection (WebSocket CLOSE and TLS close_notify first).
    pub fn shutdown(&mut self) {
        if let Some(ws) = &self.ws {
            if !ws.codec.is_closed() {
                let mut close = Vec::new();
                ws.codec.encode_close(&mut close);
                let _ = self.stream.write_all(&close);
            }
        }
        self.stream.shutdown();
    }

    /// After DISCONNECT: wait (at most `limit`) for the server to close
    /// its side, then close ours. Closing at once can make the server's
    /// kernel discard what it has not read yet (a reset), and some
    /// WebSocket servers drop data that arrives together with our CLOSE
    /// frame; the server closes right after DISCONNECT anyway.
    pub fn linger_close(&mut self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.shutdown();
    }
}

fn map_io(e: io::Error) -> ConnectError {
    if is_tls_error(&e) {
        ConnectError::Tls(os_error_text(&e))
    } else {
        ConnectError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn os_error_text_strips_rust_suffix() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(os_error_text(&e), "Connection refused");
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(os_error_text(&e), "No such file or directory");
    }

    #[test]
    fn refused_and_lookup_errors() {
        // Bind then drop: nothing listens on that port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = TransportOptions {
            endpoint: Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            tls: None,
            websocket: false,
            nodelay: false,
            connect_timeout: Duration::from_secs(5),
        };
        match Transport::connect(&opts) {
            Err(ConnectError::Io(e)) => assert_eq!(os_error_text(&e), "Connection refused"),
            other => panic!("{other:?}"),
        }
        let opts = TransportOptions {
            endpoint: Endpoint::Tcp {
                host: "no-such-host.invalid".into(),
                port: 1883,
            },
            ..opts
        };
        assert!(matches!(
            Transport::connect(&opts),
            Err(ConnectError::Lookup)
        ));
        let opts = TransportOptions {
            endpoint: Endpoint::Unix("/nonexistent/socket".into()),
            ..opts
        };
        match Transport::connect(&opts) {
            Err(ConnectError::Io(e)) => {
                assert_eq!(os_error_text(&e), "No such file or directory")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn websocket_round_trip_against_a_tiny_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).unwrap();
                req.push(b[0]);
            }
            let text = String::from_utf8(req).unwrap();
            assert!(text.contains("Sec-WebSocket-Protocol: mqtt"));
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_string();
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                websocket::accept_key(&key)
            );
            s.write_all(resp.as_bytes()).unwrap();
            // Read one masked frame and echo its payload back unmasked,
            // split in two frames.
            let mut h = [0u8; 2];
            s.read_exact(&mut h).unwrap();
            let len = (h[1] & 0x7F) as usize;
            let mut mask = [0u8; 4];
            s.read_exact(&mut mask).unwrap();
            let mut p = vec![0u8; len];
            s.read_exact(&mut p).unwrap();
            for (i, x) in p.iter_mut().enumerate() {
                *x ^= mask[i % 4];
            }
            let (a, b2) = p.split_at(2);
            let mut out = vec![0x02, a.len() as u8];
            out.extend_from_slice(a);
            out.extend_from_slice(&[0x80, b2.len() as u8]);
            out.extend_from_slice(b2);
            s.write_all(&out).unwrap();
        });
        let opts = TransportOptions {
            endpoint: Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            tls: None,
            websocket: true,
            nodelay: true,
            connect_timeout: Duration::from_secs(5),
        };
        let mut t = Transport::connect(&opts).unwrap();
        t.write_all(b"\xC0\x00hello").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 3];
        while got.len() < 7 {
            let n = t.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"\xC0\x00hello");
        server.join().unwrap();
    }
}
