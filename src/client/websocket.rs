//! websocket: the client half of RFC 6455, just enough to carry MQTT.
//!
//! Owns: the opening handshake (request with `Sec-WebSocket-Protocol:
//! mqtt`, checking the server's `Sec-WebSocket-Accept`), framing outgoing
//! bytes as masked binary frames, and unframing what the server sends
//! (data frames become the byte stream; PING is answered with PONG; CLOSE
//! ends the stream).
//!
//! Must not: do I/O or know MQTT. It works on byte buffers, so the blocking
//! tools and a nonblocking caller can both use it. Frame sizes are bounded
//! (`MAX_FRAME`) so a hostile length cannot make us allocate gigabytes.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// The GUID every server appends to the key (RFC 6455 section 1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest frame payload accepted: an MQTT packet can be 256 MiB plus its
/// fixed header.
pub const MAX_FRAME: u64 = 268_435_460;

/// Largest handshake response we read before giving up.
const MAX_RESPONSE: usize = 16 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsError {
    /// The server did not accept the upgrade (status line or headers).
    Handshake(String),
    /// A frame the RFC forbids (reserved bits, unknown opcode, oversize).
    Protocol(String),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Handshake(s) => write!(f, "WebSocket handshake failed: {s}"),
            WsError::Protocol(s) => write!(f, "WebSocket protocol error: {s}"),
        }
    }
}

impl std::error::Error for WsError {}

/// Standard base64 with padding (RFC 4648).
pub fn base64(data: &[u8]) -> String {
    crate::protocol::base64::encode(data)
}

/// The `Sec-WebSocket-Accept` value a server must answer `key` with.
pub fn accept_key(key: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID.as_bytes());
    base64(ctx.finish().as_ref())
}

fn random_bytes<const N: usize>(rng: &SystemRandom) -> [u8; N] {
    let mut b = [0u8; N];
    if rng.fill(&mut b).is_err() {
        // The OS random source failed: fall back to the clock. Masking only
        // has to defeat cache poisoning by intermediaries, not attackers
        // who already see our traffic.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t.get(i % t.len()).copied().unwrap_or(0) ^ (i as u8).wrapping_mul(151);
        }
    }
    b
}

/// A fresh random `Sec-WebSocket-Key`.
pub fn new_key() -> String {
    base64(&random_bytes::<16>(&SystemRandom::new()))
}

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
    let Some(end) = find(buf, b"\r\n\r\n") else {
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
        Some(a) if a == accept_key(key) => Ok(Some(end + 4)),
        Some(_) => Err(WsError::Handshake("wrong Sec-WebSocket-Accept".into())),
        None => Err(WsError::Handshake("no Sec-WebSocket-Accept header".into())),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Frames and unframes one WebSocket connection's bytes.
#[derive(Debug)]
pub struct WsCodec {
    rx: Vec<u8>,
    rng: SystemRandom,
    closed: bool,
}

impl Default for WsCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl WsCodec {
    pub fn new() -> WsCodec {
        WsCodec {
            rx: Vec::new(),
            rng: SystemRandom::new(),
            closed: false,
        }
    }

    /// True once the server sent CLOSE: no more data will come.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn frame(&self, opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = random_bytes::<4>(&self.rng);
        out.extend_from_slice(&mask);
        out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    }

    /// Append `payload` as one masked binary frame to `out`.
    pub fn encode_binary(&self, payload: &[u8], out: &mut Vec<u8>) {
        self.frame(OP_BINARY, payload, out);
    }

    /// A masked CLOSE frame (normal closure).
    pub fn encode_close(&self, out: &mut Vec<u8>) {
        self.frame(OP_CLOSE, &1000u16.to_be_bytes(), out);
    }

    /// Feed bytes from the server. Data frame payloads are appended to
    /// `data`; frames we must answer (PONG for PING, CLOSE for CLOSE) are
    /// appended to `reply`, to be written to the server.
    pub fn decode(
        &mut self,
        input: &[u8],
        data: &mut Vec<u8>,
        reply: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        self.rx.extend_from_slice(input);
        let mut pos = 0;
        loop {
            if self.closed {
                self.rx.clear();
                return Ok(());
            }
            let rest = self.rx.get(pos..).unwrap_or_default();
            let Some((header_len, len, masked, opcode, fin)) = parse_header(rest)? else {
                break;
            };
            if len > MAX_FRAME {
                return Err(WsError::Protocol(format!("frame of {len} bytes")));
            }
            let total = header_len + len as usize;
            let Some(frame) = rest.get(..total) else {
                break;
            };
            let mask_at = header_len - if masked { 4 } else { 0 };
            let mask: [u8; 4] = if masked {
                let m = frame.get(mask_at..header_len).unwrap_or(&[0, 0, 0, 0]);
                [
                    m.first().copied().unwrap_or(0),
                    m.get(1).copied().unwrap_or(0),
                    m.get(2).copied().unwrap_or(0),
                    m.get(3).copied().unwrap_or(0),
                ]
            } else {
                [0; 4]
            };
            let payload: Vec<u8> = frame
                .get(header_len..)
                .unwrap_or_default()
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            match opcode {
                OP_CONTINUATION | OP_TEXT | OP_BINARY => data.extend_from_slice(&payload),
                OP_PING => {
                    if !fin || payload.len() > 125 {
                        return Err(WsError::Protocol("bad PING frame".into()));
                    }
                    self.frame(OP_PONG, &payload, reply);
                }
                OP_PONG => {}
                OP_CLOSE => {
                    self.encode_close(reply);
                    self.closed = true;
                }
                other => {
                    return Err(WsError::Protocol(format!("unknown opcode {other}")));
                }
            }
            pos += total;
        }
        self.rx.drain(..pos.min(self.rx.len()));
        Ok(())
    }
}

/// (header length including mask key, payload length, masked, opcode, fin),
/// or None if the header is not complete.
type FrameHeader = (usize, u64, bool, u8, bool);

fn parse_header(b: &[u8]) -> Result<Option<FrameHeader>, WsError> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set".into()));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let masked = b1 & 0x80 != 0;
    let (len, mut header_len) = match b1 & 0x7F {
        126 => {
            let Some(x) = b.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([x[0], x[1]])), 4)
        }
        127 => {
            let Some(x) = b.get(2..10) else {
                return Ok(None);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(x);
            (u64::from_be_bytes(a), 10)
        }
        n => (u64::from(n), 2),
    };
    if masked {
        header_len += 4;
    }
    if b.len() < header_len {
        return Ok(None);
    }
    Ok(Some((header_len, len, masked, opcode, fin)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        // RFC 4648 section 10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn handshake_response_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n\x82\x00";
        let n = parse_handshake_response(ok, key).unwrap().unwrap();
        assert_eq!(&ok[n..], b"\x82\x00");
        assert_eq!(parse_handshake_response(&ok[..20], key), Ok(None));
        let wrong = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: xxx\r\n\r\n";
        assert!(parse_handshake_response(wrong, key).is_err());
        let refused = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert!(parse_handshake_response(refused, key).is_err());
        let req =
            String::from_utf8(handshake_request("example.org", 8080, false, "/mqtt", key)).unwrap();
        assert!(req.starts_with("GET /mqtt HTTP/1.1\r\nHost: example.org:8080\r\n"));
        assert!(req.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }

    /// Unmask a client frame the way a server would.
    fn server_read(frame: &[u8]) -> (u8, Vec<u8>) {
        let (hl, len, masked, op, fin) = parse_header(frame).unwrap().unwrap();
        assert!(masked && fin);
        let mask = &frame[hl - 4..hl];
        let payload: Vec<u8> = frame[hl..hl + len as usize]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        (op, payload)
    }

    #[test]
    fn outgoing_frames_are_masked_binary_at_every_length_class() {
        let c = WsCodec::new();
        for len in [0usize, 1, 125, 126, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            c.encode_binary(&payload, &mut out);
            assert_eq!(out[0], 0x82);
            let (op, back) = server_read(&out);
            assert_eq!(op, OP_BINARY);
            assert_eq!(back, payload, "len {len}");
        }
    }

    #[test]
    fn incoming_split_anywhere_and_control_frames() {
        // Server frames: binary "abc", ping "p", binary (16-bit len) 200 x 'z',
        // continuation "!", close.
        let mut stream = vec![0x82, 3, b'a', b'b', b'c', 0x89, 1, b'p', 0x82, 126, 0, 200];
        stream.extend(std::iter::repeat_n(b'z', 200));
        stream.extend_from_slice(&[0x80, 1, b'!', 0x88, 2, 0x03, 0xE8]);
        for split in 0..stream.len() {
            let mut c = WsCodec::new();
            let mut data = Vec::new();
            let mut reply = Vec::new();
            c.decode(&stream[..split], &mut data, &mut reply).unwrap();
            c.decode(&stream[split..], &mut data, &mut reply).unwrap();
            let mut expect = b"abc".to_vec();
            expect.extend(std::iter::repeat_n(b'z', 200));
            expect.push(b'!');
            assert_eq!(data, expect, "split {split}");
            assert!(c.is_closed());
            // PONG with the ping payload, then CLOSE.
            let (op, p) = server_read(&reply);
            assert_eq!((op, p.as_slice()), (OP_PONG, &b"p"[..]));
        }
    }

    #[test]
    fn bad_frames_refused() {
        let mut c = WsCodec::new();
        let (mut d, mut r) = (Vec::new(), Vec::new());
        assert!(c.decode(&[0xC2, 0], &mut d, &mut r).is_err());
        let mut c = WsCodec::new();
        assert!(c.decode(&[0x83, 0], &mut d, &mut r).is_err());
        let mut c = WsCodec::new();
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(c.decode(&huge, &mut d, &mut r).is_err());
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            let mut c = WsCodec::new();
            let len = (x % 40) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let (mut d, mut r) = (Vec::new(), Vec::new());
            let _ = c.decode(&buf, &mut d, &mut r);
            let _ = parse_handshake_response(&buf, "k");
        }
    }
}
