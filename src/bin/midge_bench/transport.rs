//! The byte pipe under one benchmark connection: plain TCP, TLS over TCP,
//! MQTT over WebSockets, or WebSockets over TLS.
//!
//! Owns: the TLS client session (rustls, the same configuration code as the
//! client tools), the WebSocket upgrade and framing (midge's own sans-IO
//! codec in the client role), and the rule that keeps `net`'s flow control
//! honest: a layer that still holds unsent bytes of its own refuses more
//! (`WouldBlock`), so what a scenario queued and `Net::pending` reports is
//! all that is waiting. It must not know MQTT; `net` drives it with the
//! readiness events of the TCP socket underneath.

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use midge::protocol::websocket::{self, FrameDecoder, Role};

/// What every connection of this run speaks to the broker.
#[derive(Clone, Default)]
pub struct Transport {
    /// TLS with this client configuration.
    pub tls: Option<Arc<ClientConfig>>,
    /// MQTT over WebSockets (`GET /mqtt`, subprotocol `mqtt`).
    pub ws: bool,
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match (self.tls.is_some(), self.ws) {
            (false, false) => "tcp",
            (true, false) => "tls",
            (false, true) => "ws",
            (true, true) => "wss",
        }
    }
}

static TRANSPORT: OnceLock<Transport> = OnceLock::new();

/// Sets the transport of the run, once, before the first connection.
pub fn set(t: Transport) {
    let _ = TRANSPORT.set(t);
}

/// The transport of the run (plain TCP unless `set` said otherwise).
pub fn current() -> Transport {
    TRANSPORT.get().cloned().unwrap_or_default()
}

/// A TLS configuration trusting `cafile`; the broker's name is not checked
/// (the benchmark connects to 127.0.0.1), its chain is.
pub fn tls_config(cafile: &str) -> Result<Arc<ClientConfig>, String> {
    let opts = midge::client::tls::TlsOptions {
        cafile: Some(cafile.to_string()),
        insecure: true,
        ..Default::default()
    };
    midge::client::tls::client_config(&opts).map_err(|e| e.0)
}

/// The connection's stream, with whatever layers the transport asks for.
pub struct Io {
    pub tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
    ws: Option<Box<Ws>>,
}

struct Ws {
    key: String,
    upgraded: bool,
    /// The HTTP response gathered until its end.
    head: Vec<u8>,
    dec: FrameDecoder,
    /// Decoded MQTT bytes not yet handed up.
    app: Vec<u8>,
    app_pos: usize,
    /// Framed bytes (and the upgrade request) not yet taken by the layer
    /// below.
    out: Vec<u8>,
    out_pos: usize,
    mask_state: u32,
    scratch: Vec<u8>,
}

fn next_mask(state: &mut u32) -> [u8; 4] {
    // xorshift32: masks only need to vary, not to be secret, here.
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x.to_le_bytes()
}

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

impl Io {
    pub fn new(tcp: TcpStream, t: &Transport, seed: u32) -> io::Result<Io> {
        let tls = match &t.tls {
            Some(cfg) => {
                let name = ServerName::try_from("localhost")
                    .map_err(|e| io::Error::other(e.to_string()))?;
                Some(Box::new(
                    ClientConnection::new(cfg.clone(), name)
                        .map_err(|e| io::Error::other(e.to_string()))?,
                ))
            }
            None => None,
        };
        let ws = t.ws.then(|| {
            let mut mask_state = seed | 1;
            let raw: Vec<u8> = (0..4).flat_map(|_| next_mask(&mut mask_state)).collect();
            let key = midge::protocol::base64::encode(&raw);
            let out = websocket::handshake::handshake_request(
                "127.0.0.1",
                0,
                t.tls.is_some(),
                "/mqtt",
                &key,
            );
            Box::new(Ws {
                key,
                upgraded: false,
                head: Vec::new(),
                dec: FrameDecoder::new(Role::Client),
                app: Vec::new(),
                app_pos: 0,
                out,
                out_pos: 0,
                mask_state,
                scratch: vec![0; 64 * 1024],
            })
        });
        Ok(Io { tcp, tls, ws })
    }

    /// A read shorter than the buffer means the socket is drained only on
    /// plain TCP; through TLS or WebSockets, read until `WouldBlock`.
    pub fn short_read_drains(&self) -> bool {
        self.tls.is_none() && self.ws.is_none()
    }

    /// Pushes bytes the layers still hold towards the socket. `Ok(true)`:
    /// nothing is left.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        if let Some(ws) = self.ws.as_deref_mut() {
            while ws.out_pos < ws.out.len() {
                let chunk = ws.out.get(ws.out_pos..).unwrap_or_default();
                match lower_write(&mut self.tcp, self.tls.as_deref_mut(), chunk) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => ws.out_pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            ws.out.clear();
            ws.out_pos = 0;
        }
        match self.tls.as_deref_mut() {
            Some(tls) => flush_tls(&mut self.tcp, tls),
            None => Ok(true),
        }
    }

    /// Takes some of `data`; `WouldBlock` while a layer still holds bytes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.ws.is_none() {
            return lower_write(&mut self.tcp, self.tls.as_deref_mut(), data);
        }
        if !self.flush_pending()? {
            return Err(would_block());
        }
        let Some(ws) = self.ws.as_deref_mut() else {
            return Err(would_block());
        };
        if !ws.upgraded {
            // RFC 6455 4.1: nothing but the request before the answer.
            return Err(would_block());
        }
        let mask = next_mask(&mut ws.mask_state);
        websocket::encode_frame(0x2, data, Some(mask), &mut ws.out);
        self.flush_pending()?;
        Ok(data.len())
    }

    /// Reads MQTT bytes; `Ok(0)` is the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(ws) = self.ws.as_deref_mut() else {
            return lower_read(&mut self.tcp, self.tls.as_deref_mut(), buf);
        };
        loop {
            if ws.app_pos < ws.app.len() {
                let src = ws.app.get(ws.app_pos..).unwrap_or_default();
                let n = src.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), src.get(..n)) {
                    dst.copy_from_slice(src);
                }
                ws.app_pos += n;
                if ws.app_pos == ws.app.len() {
                    ws.app.clear();
                    ws.app_pos = 0;
                }
                return Ok(n);
            }
            let n = lower_read(&mut self.tcp, self.tls.as_deref_mut(), &mut ws.scratch)?;
            if n == 0 {
                return Ok(0);
            }
            let got = ws.scratch.get(..n).unwrap_or_default();
            let frames = if ws.upgraded {
                got
            } else {
                ws.head.extend_from_slice(got);
                match websocket::handshake::parse_handshake_response(&ws.head, &ws.key) {
                    Ok(None) => continue,
                    Ok(Some(end)) => {
                        ws.upgraded = true;
                        let rest = ws.head.split_off(end);
                        ws.head = rest;
                        &ws.head
                    }
                    Err(e) => return Err(io::Error::other(format!("websocket: {e}"))),
                }
            };
            let Ws {
                dec,
                app,
                out,
                mask_state,
                ..
            } = ws;
            dec.feed(frames, app, out, &mut || next_mask(mask_state))
                .map_err(|e| io::Error::other(format!("websocket: {e}")))?;
            ws.head.clear();
        }
    }
}

fn flush_tls(tcp: &mut TcpStream, tls: &mut ClientConnection) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn lower_write(
    tcp: &mut TcpStream,
    tls: Option<&mut ClientConnection>,
    data: &[u8],
) -> io::Result<usize> {
    let Some(tls) = tls else {
        return tcp.write(data);
    };
    if !flush_tls(tcp, tls)? {
        return Err(would_block());
    }
    let n = tls.writer().write(data)?;
    flush_tls(tcp, tls)?;
    if n == 0 && !data.is_empty() {
        return Err(would_block());
    }
    Ok(n)
}

fn lower_read(
    tcp: &mut TcpStream,
    tls: Option<&mut ClientConnection>,
    buf: &mut [u8],
) -> io::Result<usize> {
    let Some(tls) = tls else {
        return tcp.read(buf);
    };
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match tls.read_tls(tcp) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                tls.process_new_packets()
                    .map_err(|e| io::Error::other(format!("tls: {e}")))?;
                // Handshake messages and alerts the session wants sent.
                flush_tls(tcp, tls)?;
            }
            Err(e) => return Err(e),
        }
    }
}
