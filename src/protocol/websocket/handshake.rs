//! protocol::websocket::handshake: the HTTP/1.1 side of a WebSocket
//! connection, for both roles.
//!
//! Owns: finding the end of a request head, parsing the parts of an HTTP
//! request the broker looks at ([`Request`]), the upgrade answer (`101` with
//! `Sec-WebSocket-Accept` and the agreed subprotocol) and short error
//! responses; for the client, the upgrade request and the check of the
//! server's answer.
//!
//! Must not: do I/O or serve files (that is `net::http_dir`). Where Mosquitto
//! 2.0.11 (libwebsockets) is lax, this follows the RFCs: bad handshakes get
//! 400 instead of a silent close, and `Sec-WebSocket-Version: 13` is required.
//! A handshake without `Sec-WebSocket-Protocol` is accepted and carries MQTT
//! (libwebsockets accepts it too but then binds the connection to its HTTP
//! handler, so the client hangs).

use super::WsError;
use crate::protocol::base64;

/// The GUID every server appends to the key (RFC 6455 section 1.3).
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Longest `X-Forwarded-For` first entry kept (an address, not an essay).
pub const MAX_FORWARDED_LEN: usize = 64;

/// Largest handshake response a client reads before giving up.
const MAX_RESPONSE: usize = 16 * 1024;

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WS_GUID);
    base64::encode(ctx.finish().as_ref())
}

// ---- server ------------------------------------------------------------------

/// Index just past the blank line ending the request head, searching only
/// for line ends at or after `from` (earlier bytes were searched before).
/// Bare LF line ends are accepted, as libwebsockets does.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    let tail = buf.get(from..)?;
    for off in memchr::memchr_iter(b'\n', tail) {
        let i = from + off;
        let before = buf.get(..i)?;
        if before.ends_with(b"\n") || before.ends_with(b"\n\r") {
            return Some(i + 1);
        }
    }
    None
}

/// The parts of an HTTP request head the broker looks at.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a [u8],
    /// The request target; free of control bytes and spaces.
    pub target: &'a [u8],
    pub upgrade_websocket: bool,
    pub connection_upgrade: bool,
    pub key: Option<&'a [u8]>,
    pub version: Option<&'a [u8]>,
    /// A Sec-WebSocket-Protocol header was present.
    pub offered_protocols: bool,
    /// The first offered subprotocol (client order) that we speak.
    pub protocol: Option<&'static str>,
    pub forwarded_for: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    /// None when the head is not an HTTP/1.x request.
    pub fn parse(head: &'a [u8]) -> Option<Request<'a>> {
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let mut parts = lines.next()?.split(|&b| b == b' ');
        let method = parts.next().filter(|m| !m.is_empty())?;
        let target = parts.next().filter(|t| !t.is_empty())?;
        let version = parts.next()?;
        if parts.next().is_some() || !version.starts_with(b"HTTP/1.") {
            return None;
        }
        // Control bytes in the target would let it split a response header
        // (it is echoed in a redirect).
        if target.iter().any(|&b| b <= b' ' || b == 0x7F) {
            return None;
        }
        let mut req = Request {
            method,
            target,
            upgrade_websocket: false,
            connection_upgrade: false,
            key: None,
            version: None,
            offered_protocols: false,
            protocol: None,
            forwarded_for: None,
        };
        for line in lines {
            if line.is_empty() {
                break;
            }
            // Obsolete line folding is refused (RFC 7230 3.2.4).
            if line.starts_with(b" ") || line.starts_with(b"\t") {
                return None;
            }
            let colon = memchr::memchr(b':', line)?;
            let (name, value) = line.split_at(colon);
            let value = trim(value.get(1..).unwrap_or(&[]));
            if name.is_empty() || name.ends_with(b" ") || name.ends_with(b"\t") {
                return None;
            }
            req.header(name, value);
        }
        Some(req)
    }

    fn header(&mut self, name: &[u8], value: &'a [u8]) {
        if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_websocket |= has_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.connection_upgrade |= has_token(value, b"upgrade");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            self.key = Some(value);
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            self.version = Some(value);
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            self.offered_protocols = true;
            if self.protocol.is_none() {
                // Client order wins, and names are case-sensitive, as with
                // libwebsockets.
                self.protocol = value.split(|&b| b == b',').map(trim).find_map(|p| match p {
                    b"mqtt" => Some("mqtt"),
                    b"mqttv3.1" => Some("mqttv3.1"),
                    _ => None,
                });
            }
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") && self.forwarded_for.is_none() {
            let first = value.split(|&b| b == b',').next().map(trim);
            self.forwarded_for = first.filter(|f| !f.is_empty());
        }
    }

    /// The first `X-Forwarded-For` entry, when it is short UTF-8.
    pub fn forwarded_for(&self) -> Option<String> {
        self.forwarded_for
            .filter(|v| v.len() <= MAX_FORWARDED_LEN)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string)
    }
}

/// Check an upgrade request (`req.upgrade_websocket` is true) and append the
/// answer to `wire`: `101 Switching Protocols` (Ok) or the HTTP error and
/// the error that ends the connection.
pub fn answer_upgrade(req: &Request<'_>, wire: &mut Vec<u8>) -> Result<(), WsError> {
    let bad = |wire: &mut Vec<u8>, why: &str| {
        http_error(wire, 400, "Bad Request", "");
        Err(WsError::BadRequest(why.to_string()))
    };
    if req.method != b"GET" {
        return bad(wire, "upgrade must use GET");
    }
    if !req.connection_upgrade {
        return bad(wire, "Connection header lacks \"upgrade\"");
    }
    let key = match req.key {
        Some(k) if !k.is_empty() => k,
        _ => return bad(wire, "missing Sec-WebSocket-Key"),
    };
    if req.version != Some(b"13".as_slice()) {
        http_error(
            wire,
            426,
            "Upgrade Required",
            "Sec-WebSocket-Version: 13\r\n",
        );
        return Err(WsError::BadRequest(
            "unsupported Sec-WebSocket-Version (13 required)".into(),
        ));
    }
    if req.offered_protocols && req.protocol.is_none() {
        return bad(wire, "no supported subprotocol (mqtt, mqttv3.1) offered");
    }
    wire.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    wire.extend_from_slice(accept_key(key).as_bytes());
    if let Some(p) = req.protocol {
        wire.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        wire.extend_from_slice(p.as_bytes());
    }
    wire.extend_from_slice(b"\r\n\r\n");
    Ok(())
}

fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// A short HTTP error response; the connection closes after it.
pub fn http_error(wire: &mut Vec<u8>, status: u16, reason: &str, extra_headers: &str) {
    let body = format!("<html><body><h1>{status} {reason}</h1></body></html>\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: midge\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
        body.len()
    );
    wire.extend_from_slice(head.as_bytes());
    wire.extend_from_slice(body.as_bytes());
}

// ---- client ------------------------------------------------------------------

/// The HTTP upgrade request. `host` is sent as given (with the port when it
/// is not the scheme's default, as browsers do).
pub fn handshake_request(host: &str, port: u16, tls: bool, path: &str, key: &str) -> Vec<u8> {
    let default_port = if tls { 443 } else { 80 };
    let host_header = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let host_header = if port == default_port {
        host_header
    } else {
        format!("{host_header}:{port}")
    };
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host_header}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\
         \r\n"
    )
    .into_bytes()
}

/// Check the server's answer to `handshake_request`. `Ok(None)`: the
/// header block is not complete yet; `Ok(Some(n))`: accepted, the first `n`
/// bytes were the HTTP response and anything after them is frame data.
pub fn parse_handshake_response(buf: &[u8], key: &str) -> Result<Option<usize>, WsError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE {
            return Err(WsError::Handshake("response headers too long".into()));
        }
        return Ok(None);
    };
    let head = buf.get(..end).unwrap_or_default();
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.split_whitespace();
    let _version = parts.next();
    if parts.next() != Some("101") {
        return Err(WsError::Handshake(format!(
            "server answered \"{}\"",
            status.trim()
        )));
    }
    let mut accept = None;
    let mut upgrade_ok = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "sec-websocket-accept" => accept = Some(value.to_string()),
            "upgrade" => upgrade_ok = value.eq_ignore_ascii_case("websocket"),
            _ => {}
        }
    }
    if !upgrade_ok {
        return Err(WsError::Handshake(
            "no \"Upgrade: websocket\" header".into(),
        ));
    }
    match accept {
        Some(a) if a == accept_key(key.as_bytes()) => Ok(Some(end + 4)),
        Some(_) => Err(WsError::Handshake("wrong Sec-WebSocket-Accept".into())),
        None => Err(WsError::Handshake("no Sec-WebSocket-Accept header".into())),
    }
}
