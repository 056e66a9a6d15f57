//! net::ws: a sans-IO WebSocket (RFC 6455) server codec for MQTT over
//! WebSockets, plus the small static-file HTTP server behind `http_dir`.
//!
//! Owns: the HTTP upgrade handshake (request parsing, subprotocol choice,
//! `Sec-WebSocket-Accept`), decoding masked client frames into MQTT bytes,
//! answering pings and close frames, wrapping outgoing MQTT bytes into binary
//! frames, and answering plain HTTP GET/HEAD requests from `http_dir`.
//!
//! Must not: touch sockets, timers or the broker. Bytes come in through
//! [`WsServer::feed`], bytes to send go out through the `wire` vector, MQTT
//! bytes go to the `app` vector; the event loop moves them. The only I/O here
//! is reading files under `http_dir`, which is the point of that feature.
//!
//! Written by hand instead of using tungstenite to keep the binary small on
//! small boards: the server side of RFC 6455 that MQTT needs is a few hundred
//! lines, and it can unmask straight into the caller's buffer.
//!
//! Where Mosquitto 2.0.11 (libwebsockets) is lax, this codec follows the RFCs:
//! it rejects unmasked client frames and text frames (MQTT-6.0.0-1), answers
//! bad handshakes with 400 instead of a silent close, and requires
//! `Sec-WebSocket-Version: 13`. A handshake without `Sec-WebSocket-Protocol`
//! is accepted and carries MQTT (libwebsockets accepts it too but then binds
//! the connection to its HTTP handler, so the client hangs).

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Used when the caller passes a headers limit of 0. Mosquitto documents 1024,
/// but when `websockets_headers_size` is unset it leaves libwebsockets at its
/// own default, which in practice admits request heads of about 4 KiB.
pub const DEFAULT_HEADERS_LIMIT: usize = 4096;

/// Largest frame payload accepted by default: one maximal MQTT packet
/// (1 byte type, 4 bytes remaining length, 268435455 bytes). A frame header
/// may claim up to 2^63 bytes; nothing is allocated from that claim, payload
/// bytes are only appended to `app` as they arrive.
pub const DEFAULT_MAX_FRAME: u64 = 268_435_455 + 5;

/// Files larger than this are not served from `http_dir`: the whole response
/// is built in memory, and a small board must not be asked for more.
pub const MAX_HTTP_FILE: u64 = 8 * 1024 * 1024;

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Longest `X-Forwarded-For` first entry kept; an address is far shorter.
const MAX_FORWARDED_LEN: usize = 64;

// Opcodes (RFC 6455 section 5.2).
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

// Close codes (RFC 6455 section 7.4.1).
/// Close code for an orderly close, e.g. for [`WsServer::close`].
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code for a server going down or dropping the client.
pub const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_UNSUPPORTED: u16 = 1003;
const CLOSE_TOO_BIG: u16 = 1009;

/// Why a connection must be closed. Whatever `feed` left in `wire` (an HTTP
/// error, an HTTP response, a close frame) should be flushed first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// The HTTP request was not a valid WebSocket upgrade (400 or 426 sent).
    BadRequest(String),
    /// Orderly end: the client sent a close frame (echoed), an HTTP request
    /// was answered, or `feed` was called after the end.
    Closed,
    /// The client broke RFC 6455 or MQTT-6.0.0-1; a close frame was sent.
    Protocol(String),
    /// The request head exceeded the headers limit (431 sent), or a frame
    /// exceeded the maximum frame size (close 1009 sent).
    TooLarge,
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::BadRequest(why) => write!(f, "bad websocket request: {why}"),
            WsError::Closed => f.write_str("websocket closed"),
            WsError::Protocol(why) => write!(f, "websocket protocol error: {why}"),
            WsError::TooLarge => f.write_str("websocket request or frame too large"),
        }
    }
}

impl std::error::Error for WsError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the HTTP request head.
    Handshake,
    /// Upgraded: frames flow.
    Open,
    /// Finished; nothing more is read or written.
    Closed,
}

/// The frame decoder's position inside the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Payload,
}

/// One WebSocket server connection, from the first HTTP byte to the close.
pub struct WsServer {
    state: State,
    headers_limit: usize,
    http_dir: Option<PathBuf>,
    /// The request head while handshaking; emptied (and freed) afterwards.
    head: Vec<u8>,
    subprotocol: Option<&'static str>,
    forwarded_for: Option<String>,
    max_frame: u64,

    phase: Phase,
    /// Frame header bytes gathered so far (2 + 8 length + 4 mask at most).
    hdr: [u8; 14],
    hdr_len: usize,
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Payload bytes of the current frame not yet seen.
    remaining: u64,
    /// Payload bytes of the current frame already seen: the mask phase.
    mask_pos: usize,
    /// A fragmented binary message is in progress (a non-FIN binary frame
    /// arrived and its FIN continuation has not).
    in_message: bool,
    /// Payload of the current control frame (at most 125 bytes by RFC).
    ctrl: [u8; 125],
    ctrl_len: usize,
}

impl fmt::Debug for WsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsServer")
            .field("state", &self.state)
            .field("subprotocol", &self.subprotocol)
            .field("forwarded_for", &self.forwarded_for)
            .finish_non_exhaustive()
    }
}

impl WsServer {
    /// `headers_limit`: most bytes the HTTP request head may take, up to and
    /// including its blank line (`websockets_headers_size`; 0 means
    /// [`DEFAULT_HEADERS_LIMIT`]). `http_dir`: answer plain HTTP GET/HEAD
    /// from files under this directory; without it a plain request gets 404.
    pub fn new(headers_limit: usize, http_dir: Option<PathBuf>) -> WsServer {
        WsServer {
            state: State::Handshake,
            headers_limit: if headers_limit == 0 {
                DEFAULT_HEADERS_LIMIT
            } else {
                headers_limit
            },
            http_dir,
            head: Vec::new(),
            subprotocol: None,
            forwarded_for: None,
            max_frame: DEFAULT_MAX_FRAME,
            phase: Phase::Header,
            hdr: [0; 14],
            hdr_len: 0,
            fin: false,
            opcode: 0,
            mask: [0; 4],
            remaining: 0,
            mask_pos: 0,
            in_message: false,
            ctrl: [0; 125],
            ctrl_len: 0,
        }
    }

    /// Refuse frames whose payload is larger than `max` bytes (close 1009).
    pub fn with_max_frame_size(mut self, max: u64) -> WsServer {
        self.max_frame = max;
        self
    }

    /// True once the upgrade succeeded and until the connection ends.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The subprotocol agreed in the handshake: `"mqtt"`, `"mqttv3.1"`, or
    /// None when the client offered none (MQTT is carried all the same).
    pub fn subprotocol(&self) -> Option<&'static str> {
        self.subprotocol
    }

    /// The first (client-most) entry of `X-Forwarded-For`, if the upgrade
    /// request had one. Any client can send this header, so it is only
    /// trustworthy behind a proxy that sets it. (Mosquitto 2.0.11 ignores it
    /// and logs the socket's peer address.)
    pub fn forwarded_for(&self) -> Option<&str> {
        self.forwarded_for.as_deref()
    }

    /// Feed bytes read from the socket. MQTT bytes are appended to `app`;
    /// bytes to send (handshake response, pongs, close frames, HTTP
    /// responses) are appended to `wire`. On `Err` the connection must be
    /// closed after flushing `wire`.
    pub fn feed(
        &mut self,
        input: &[u8],
        app: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        match self.state {
            State::Closed => Err(WsError::Closed),
            State::Open => self.feed_frames(input, app, wire),
            State::Handshake => {
                let rest = self.feed_handshake(input, wire)?;
                match rest {
                    Some(rest) => self.feed_frames(rest, app, wire),
                    None => Ok(()),
                }
            }
        }
    }

    /// Append `data` to `wire` as one binary frame (server frames are not
    /// masked). Nothing is written unless the connection is open: data
    /// frames are meaningless before the upgrade and forbidden after a close.
    pub fn wrap(&mut self, data: &[u8], wire: &mut Vec<u8>) {
        if self.state != State::Open {
            log::debug!("websocket: dropping {} bytes, not open", data.len());
            return;
        }
        let (hdr, n) = Self::binary_frame_header(data.len());
        wire.reserve(n + data.len());
        wire.extend_from_slice(hdr.get(..n).unwrap_or(&[]));
        wire.extend_from_slice(data);
    }

    /// The header of an unmasked, final binary frame of `len` payload bytes:
    /// the buffer and how many of its bytes are used. Lets the caller send
    /// header and payload with one vectored write instead of copying.
    pub fn binary_frame_header(len: usize) -> ([u8; 10], usize) {
        frame_header(0x80 | OP_BINARY, len)
    }

    /// Start a close from the server side (e.g. the broker disconnects the
    /// client): append a close frame with `code` to `wire` and stop. Does
    /// nothing unless open.
    pub fn close(&mut self, code: u16, wire: &mut Vec<u8>) {
        if self.state == State::Open {
            push_close(wire, code, b"");
            self.state = State::Closed;
        }
    }

    // ---- handshake -------------------------------------------------------

    /// Gather the request head. Returns the bytes of `input` that follow the
    /// head once it is complete and the upgrade succeeded, None while more
    /// head is needed.
    fn feed_handshake<'i>(
        &mut self,
        input: &'i [u8],
        wire: &mut Vec<u8>,
    ) -> Result<Option<&'i [u8]>, WsError> {
        let old = self.head.len();
        let room = self.headers_limit.saturating_sub(old);
        let take = input.len().min(room);
        let (now, _) = input.split_at(take);
        self.head.extend_from_slice(now);
        match find_head_end(&self.head, old) {
            Some(end) => {
                // `end` lies in the bytes appended from this input.
                let used = end.saturating_sub(old);
                let rest = input.get(used..).unwrap_or(&[]);
                let head = std::mem::take(&mut self.head);
                let head = head.get(..end).unwrap_or(&[]);
                match self.answer_request(head, wire) {
                    Ok(()) => {
                        self.state = State::Open;
                        Ok(Some(rest))
                    }
                    Err(e) => {
                        self.state = State::Closed;
                        Err(e)
                    }
                }
            }
            None if self.head.len() >= self.headers_limit => {
                log::debug!(
                    "websocket: request head exceeds {} bytes",
                    self.headers_limit
                );
                self.state = State::Closed;
                self.head = Vec::new();
                http_error(wire, 431, "Request Header Fields Too Large", "");
                Err(WsError::TooLarge)
            }
            None => Ok(None),
        }
    }

    /// Answer a complete request head: 101 for a valid upgrade (Ok), or an
    /// HTTP response and the error that ends the connection.
    fn answer_request(&mut self, head: &[u8], wire: &mut Vec<u8>) -> Result<(), WsError> {
        let req = match Request::parse(head) {
            Some(req) => req,
            None => {
                http_error(wire, 400, "Bad Request", "");
                return Err(WsError::BadRequest("malformed HTTP request".into()));
            }
        };
        if !req.upgrade_websocket {
            return Err(self.answer_http(&req, wire));
        }
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
        self.subprotocol = req.protocol;
        self.forwarded_for = req
            .forwarded_for
            .filter(|v| v.len() <= MAX_FORWARDED_LEN)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string);

        let accept = accept_key(key);
        wire.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        wire.extend_from_slice(&accept);
        if let Some(p) = self.subprotocol {
            wire.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
            wire.extend_from_slice(p.as_bytes());
        }
        wire.extend_from_slice(b"\r\n\r\n");
        Ok(())
    }

    /// A plain HTTP request: serve it from `http_dir`, or 404 without one.
    /// Either way the connection ends: `Closed` once answered, `BadRequest`
    /// when the request target was malformed.
    fn answer_http(&self, req: &Request<'_>, wire: &mut Vec<u8>) -> WsError {
        let dir = match &self.http_dir {
            Some(dir) => dir,
            None => {
                http_error(wire, 404, "Not Found", "");
                return WsError::Closed;
            }
        };
        let head_only = match req.method {
            b"GET" => false,
            b"HEAD" => true,
            _ => {
                http_error(wire, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
                return WsError::Closed;
            }
        };
        match resolve_file(dir, req.target) {
            Ok(Found::File(path)) => serve_file(&path, head_only, wire),
            Ok(Found::Redirect(location)) => {
                wire.extend_from_slice(b"HTTP/1.1 302 Found\r\nLocation: ");
                wire.extend_from_slice(location.as_bytes());
                wire.extend_from_slice(
                    b"\r\nContent-Length: 0\r\nConnection: close\r\nServer: midge\r\n\r\n",
                );
            }
            Err(HttpRefusal::BadPath) => {
                http_error(wire, 400, "Bad Request", "");
                return WsError::BadRequest("malformed HTTP request target".into());
            }
            Err(HttpRefusal::Forbidden) => http_error(wire, 403, "Forbidden", ""),
            Err(HttpRefusal::NotFound) => http_error(wire, 404, "Not Found", ""),
        }
        WsError::Closed
    }

    // ---- frames ----------------------------------------------------------

    fn feed_frames(
        &mut self,
        mut input: &[u8],
        app: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        loop {
            if self.state != State::Open {
                return Err(WsError::Closed);
            }
            match self.phase {
                Phase::Header => {
                    let need = self.header_len_needed();
                    if self.hdr_len < need {
                        let Some((&b, rest)) = input.split_first() else {
                            return Ok(());
                        };
                        input = rest;
                        if let Some(slot) = self.hdr.get_mut(self.hdr_len) {
                            *slot = b;
                        }
                        self.hdr_len += 1;
                        if self.hdr_len == 2 {
                            // Reject early: no need to wait for a length or
                            // mask that cannot make the frame valid.
                            if let Err(e) = self.check_first_bytes() {
                                return Err(self.fail(e, wire));
                            }
                        }
                        continue;
                    }
                    if let Err(e) = self.start_payload() {
                        return Err(self.fail(e, wire));
                    }
                    if self.remaining == 0 {
                        self.end_frame(wire)?;
                    }
                }
                Phase::Payload => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let n = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    input = rest;
                    if self.opcode & 0x8 == 0 {
                        let start = app.len();
                        app.extend_from_slice(chunk);
                        if let Some(tail) = app.get_mut(start..) {
                            unmask(tail, self.mask, self.mask_pos);
                        }
                    } else if let Some(dst) = self.ctrl.get_mut(self.ctrl_len..self.ctrl_len + n) {
                        dst.copy_from_slice(chunk);
                        unmask(dst, self.mask, self.mask_pos);
                        self.ctrl_len += n;
                    }
                    self.mask_pos = self.mask_pos.wrapping_add(n);
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.end_frame(wire)?;
                    }
                }
            }
        }
    }

    /// Header bytes the current frame needs, known as far as bytes allow.
    fn header_len_needed(&self) -> usize {
        if self.hdr_len < 2 {
            return 2;
        }
        let ext = match self.hdr[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.hdr[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    /// Checks that the first two header bytes alone decide.
    fn check_first_bytes(&self) -> Result<(), Failure> {
        let b0 = self.hdr[0];
        let b1 = self.hdr[1];
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let len7 = b1 & 0x7F;
        if b0 & 0x70 != 0 {
            return Err(Failure::protocol("reserved bits set (no extension agreed)"));
        }
        if b1 & 0x80 == 0 {
            return Err(Failure::protocol("client frame not masked"));
        }
        match opcode {
            OP_CONTINUATION if !self.in_message => {
                Err(Failure::protocol("continuation frame without a message"))
            }
            OP_BINARY if self.in_message => Err(Failure::protocol(
                "new binary frame inside a fragmented message",
            )),
            OP_CONTINUATION | OP_BINARY => Ok(()),
            OP_TEXT => Err(Failure {
                code: CLOSE_UNSUPPORTED,
                error: WsError::Protocol("text frame (MQTT needs binary frames)".into()),
            }),
            OP_CLOSE | OP_PING | OP_PONG if !fin => {
                Err(Failure::protocol("fragmented control frame"))
            }
            OP_CLOSE | OP_PING | OP_PONG if len7 > 125 => {
                Err(Failure::protocol("control frame longer than 125 bytes"))
            }
            OP_CLOSE | OP_PING | OP_PONG => Ok(()),
            _ => Err(Failure::protocol("unknown opcode")),
        }
    }

    /// The header is complete: decode length and mask, set up the payload.
    fn start_payload(&mut self) -> Result<(), Failure> {
        let b0 = self.hdr[0];
        let b1 = self.hdr[1];
        let (len, mask_at) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(self.hdr.get(2..10).unwrap_or(&[0; 8]));
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        if len >> 63 != 0 {
            return Err(Failure::protocol("frame length has its top bit set"));
        }
        if len > self.max_frame {
            return Err(Failure {
                code: CLOSE_TOO_BIG,
                error: WsError::TooLarge,
            });
        }
        self.mask
            .copy_from_slice(self.hdr.get(mask_at..mask_at + 4).unwrap_or(&[0; 4]));
        self.fin = b0 & 0x80 != 0;
        self.opcode = b0 & 0x0F;
        self.remaining = len;
        self.mask_pos = 0;
        self.ctrl_len = 0;
        self.hdr_len = 0;
        self.phase = Phase::Payload;
        match self.opcode {
            OP_BINARY => self.in_message = !self.fin,
            OP_CONTINUATION => self.in_message = !self.fin,
            _ => {}
        }
        Ok(())
    }

    /// The current frame's payload is complete: act on control frames.
    fn end_frame(&mut self, wire: &mut Vec<u8>) -> Result<(), WsError> {
        self.phase = Phase::Header;
        let payload = self.ctrl.get(..self.ctrl_len).unwrap_or(&[]);
        match self.opcode {
            OP_PING => {
                let (hdr, n) = frame_header(0x80 | OP_PONG, payload.len());
                wire.extend_from_slice(hdr.get(..n).unwrap_or(&[]));
                wire.extend_from_slice(payload);
                Ok(())
            }
            OP_CLOSE => {
                match *payload {
                    // No status: answer likewise with an empty close.
                    [] => wire.extend_from_slice(&[0x80 | OP_CLOSE, 0]),
                    [_] => {
                        let f = Failure::protocol("close payload of 1 byte");
                        return Err(self.fail(f, wire));
                    }
                    // Echo the status code, as RFC 6455 5.5.1 suggests.
                    [a, b, ..] => push_close(wire, u16::from_be_bytes([a, b]), b""),
                }
                self.state = State::Closed;
                Err(WsError::Closed)
            }
            // Unsolicited pongs are allowed (RFC 6455 5.5.3) and mean nothing.
            _ => Ok(()),
        }
    }

    /// Send the close frame for `f`, stop, and return its error.
    fn fail(&mut self, f: Failure, wire: &mut Vec<u8>) -> WsError {
        log::debug!("websocket: closing: {}", f.error);
        let reason: &[u8] = match &f.error {
            WsError::Protocol(why) => why.as_bytes(),
            _ => b"",
        };
        push_close(wire, f.code, reason);
        self.state = State::Closed;
        f.error
    }
}

/// A frame-level failure: the close code to send and the error to return.
struct Failure {
    code: u16,
    error: WsError,
}

impl Failure {
    fn protocol(why: &str) -> Failure {
        Failure {
            code: CLOSE_PROTOCOL,
            error: WsError::Protocol(why.to_string()),
        }
    }
}

/// Header of an unmasked server frame with first byte `b0`.
fn frame_header(b0: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = b0;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        let [a, b] = short.to_be_bytes();
        h[2] = a;
        h[3] = b;
        (h, 4)
    } else {
        h[1] = 127;
        let b = (len as u64).to_be_bytes();
        if let Some(dst) = h.get_mut(2..10) {
            dst.copy_from_slice(&b);
        }
        (h, 10)
    }
}

/// Append a close frame; the reason is cut to fit a control frame.
fn push_close(wire: &mut Vec<u8>, code: u16, reason: &[u8]) {
    let reason = reason.get(..reason.len().min(123)).unwrap_or(&[]);
    let (hdr, n) = frame_header(0x80 | OP_CLOSE, 2 + reason.len());
    wire.extend_from_slice(hdr.get(..n).unwrap_or(&[]));
    wire.extend_from_slice(&code.to_be_bytes());
    wire.extend_from_slice(reason);
}

/// XOR `buf` with the 4-byte `mask`, `pos` bytes into the frame payload.
/// Eight bytes at a time: this runs over every MQTT byte a client sends.
fn unmask(buf: &mut [u8], mask: [u8; 4], pos: usize) {
    let r = pos & 3;
    let m = [
        mask[r],
        mask[(r + 1) & 3],
        mask[(r + 2) & 3],
        mask[(r + 3) & 3],
    ];
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // The remainder starts a multiple of 8 (so of 4) bytes in: same phase.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)).
fn accept_key(key: &[u8]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WS_GUID);
    base64(ctx.finish().as_ref())
}

fn base64(data: &[u8]) -> Vec<u8> {
    crate::protocol::base64::encode(data).into_bytes()
}

/// Index just past the blank line ending the request head, searching only
/// for line ends at or after `from` (earlier bytes were searched before).
/// Bare LF line ends are accepted, as libwebsockets does.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
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

/// The parts of an HTTP request head this codec looks at.
struct Request<'a> {
    method: &'a [u8],
    target: &'a [u8],
    upgrade_websocket: bool,
    connection_upgrade: bool,
    key: Option<&'a [u8]>,
    version: Option<&'a [u8]>,
    /// A Sec-WebSocket-Protocol header was present.
    offered_protocols: bool,
    /// The first offered subprotocol (client order) that we speak.
    protocol: Option<&'static str>,
    forwarded_for: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    /// None when the head is not an HTTP/1.x request.
    fn parse(head: &'a [u8]) -> Option<Request<'a>> {
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
            if name.eq_ignore_ascii_case(b"upgrade") {
                req.upgrade_websocket |= has_token(value, b"websocket");
            } else if name.eq_ignore_ascii_case(b"connection") {
                req.connection_upgrade |= has_token(value, b"upgrade");
            } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
                req.key = Some(value);
            } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
                req.version = Some(value);
            } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
                req.offered_protocols = true;
                if req.protocol.is_none() {
                    // Client order wins, and names are case-sensitive, as
                    // with libwebsockets.
                    req.protocol = value.split(|&b| b == b',').map(trim).find_map(|p| match p {
                        b"mqtt" => Some("mqtt"),
                        b"mqttv3.1" => Some("mqttv3.1"),
                        _ => None,
                    });
                }
            } else if name.eq_ignore_ascii_case(b"x-forwarded-for") && req.forwarded_for.is_none() {
                let first = value.split(|&b| b == b',').next().map(trim);
                req.forwarded_for = first.filter(|f| !f.is_empty());
            }
        }
        Some(req)
    }
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
fn http_error(wire: &mut Vec<u8>, status: u16, reason: &str, extra_headers: &str) {
    let body = format!("<html><body><h1>{status} {reason}</h1></body></html>\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: midge\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
        body.len()
    );
    wire.extend_from_slice(head.as_bytes());
    wire.extend_from_slice(body.as_bytes());
}

enum Found {
    File(PathBuf),
    /// A directory asked for without its trailing slash: where to go.
    Redirect(String),
}

#[derive(Debug, PartialEq, Eq)]
enum HttpRefusal {
    BadPath,
    Forbidden,
    NotFound,
}

/// Map a request target to a file under `dir`, refusing anything that
/// leaves it: `..` segments are refused outright, and the canonical path
/// (symlinks resolved) must still lie under the canonical `dir`.
fn resolve_file(dir: &Path, target: &[u8]) -> Result<Found, HttpRefusal> {
    let path_end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let raw = target.get(..path_end).unwrap_or(&[]);
    if !raw.starts_with(b"/") {
        return Err(HttpRefusal::BadPath);
    }
    let decoded = percent_decode(raw).ok_or(HttpRefusal::BadPath)?;
    if decoded.contains(&0) {
        return Err(HttpRefusal::BadPath);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| HttpRefusal::BadPath)?;
    let mut path = dir.to_path_buf();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(HttpRefusal::Forbidden),
            s => path.push(s),
        }
    }
    let root = fs::canonicalize(dir).map_err(|_| HttpRefusal::NotFound)?;
    let within = |p: &Path| -> Result<PathBuf, HttpRefusal> {
        let canon = fs::canonicalize(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => HttpRefusal::Forbidden,
            _ => HttpRefusal::NotFound,
        })?;
        if canon.starts_with(&root) {
            Ok(canon)
        } else {
            Err(HttpRefusal::Forbidden)
        }
    };
    let canon = within(&path)?;
    if canon.is_dir() {
        if !decoded.ends_with('/') {
            // Relative links inside an index page need the trailing slash.
            // `raw` has no control bytes or spaces (checked in parse).
            let loc = String::from_utf8_lossy(raw);
            return Ok(Found::Redirect(format!("{loc}/")));
        }
        let index = within(&canon.join("index.html"))?;
        return if index.is_file() {
            Ok(Found::File(index))
        } else {
            Err(HttpRefusal::NotFound)
        };
    }
    // "/file/" names a directory that is not there.
    if canon.is_file() && !decoded.ends_with('/') {
        Ok(Found::File(canon))
    } else {
        Err(HttpRefusal::NotFound)
    }
}

/// Decode `%XX` escapes; None on a malformed escape.
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            let hi = hex(*s.get(i + 1)?)?;
            let lo = hex(*s.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// Answer with the file's contents (or only its headers for HEAD).
fn serve_file(path: &Path, head_only: bool, wire: &mut Vec<u8>) {
    let mut body = Vec::new();
    let read = fs::File::open(path).and_then(|f| {
        if head_only {
            f.metadata().map(|m| m.len())
        } else {
            f.take(MAX_HTTP_FILE + 1)
                .read_to_end(&mut body)
                .map(|n| n as u64)
        }
    });
    let len = match read {
        Ok(len) if len <= MAX_HTTP_FILE => len,
        Ok(_) => {
            log::warn!(
                "http_dir: {} is larger than {} bytes, not served",
                path.display(),
                MAX_HTTP_FILE
            );
            return http_error(wire, 500, "Internal Server Error", "");
        }
        Err(e) => {
            log::debug!("http_dir: cannot read {}: {e}", path.display());
            return http_error(wire, 403, "Forbidden", "");
        }
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: midge\r\nContent-Type: {}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        content_type(path)
    );
    wire.reserve(head.len() + body.len());
    wire.extend_from_slice(head.as_bytes());
    wire.extend_from_slice(&body);
}

/// Content type by file extension; the usual files of a browser MQTT page.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    const CONNECT: &[u8] = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00";

    fn upgrade(extra: &str) -> Vec<u8> {
        format!(
            "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    fn upgrade_mqtt() -> Vec<u8> {
        upgrade("Sec-WebSocket-Protocol: mqtt\r\n")
    }

    /// A masked client frame; `b0` carries FIN and the opcode.
    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![b0];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn binary(payload: &[u8]) -> Vec<u8> {
        client_frame(0x82, payload, [0x11, 0x22, 0x33, 0x44])
    }

    /// A server that has completed the `mqtt` handshake.
    fn open_server() -> WsServer {
        let mut ws = WsServer::new(1024, None);
        let (mut app, mut wire) = (Vec::new(), Vec::new());
        ws.feed(&upgrade_mqtt(), &mut app, &mut wire).unwrap();
        assert!(ws.is_open());
        ws
    }

    fn feed(ws: &mut WsServer, input: &[u8]) -> (Result<(), WsError>, Vec<u8>, Vec<u8>) {
        let (mut app, mut wire) = (Vec::new(), Vec::new());
        let r = ws.feed(input, &mut app, &mut wire);
        (r, app, wire)
    }

    fn status(wire: &[u8]) -> &str {
        let line = wire.split(|&b| b == b'\r').next().unwrap();
        std::str::from_utf8(line).unwrap()
    }

    fn has_header(wire: &[u8], header: &str) -> bool {
        let text = String::from_utf8_lossy(wire);
        let head = text.split("\r\n\r\n").next().unwrap();
        head.split("\r\n").any(|l| l == header)
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    // ---- handshake ---------------------------------------------------

    #[test]
    fn rfc6455_accept_example() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT.as_bytes());
    }

    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o.as_bytes(), "{i}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), b"+/+/");
    }

    #[test]
    fn handshake_response_is_exact() {
        let mut ws = WsServer::new(1024, None);
        let (r, app, wire) = feed(&mut ws, &upgrade_mqtt());
        r.unwrap();
        assert!(app.is_empty());
        let want = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        assert_eq!(String::from_utf8(wire).unwrap(), want);
        assert!(ws.is_open());
        assert_eq!(ws.subprotocol(), Some("mqtt"));
        assert_eq!(ws.forwarded_for(), None);
    }

    #[test]
    fn subprotocol_selection() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("Sec-WebSocket-Protocol: mqttv3.1\r\n", Some("mqttv3.1")),
            (
                "Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n",
                Some("mqttv3.1"),
            ),
            ("Sec-WebSocket-Protocol: mqtt, mqttv3.1\r\n", Some("mqtt")),
            ("Sec-WebSocket-Protocol: foo,mqtt\r\n", Some("mqtt")),
            (
                "Sec-WebSocket-Protocol: foo\r\nsec-websocket-protocol:  mqtt \r\n",
                Some("mqtt"),
            ),
        ];
        for (extra, want) in cases {
            let mut ws = WsServer::new(1024, None);
            let (r, _, wire) = feed(&mut ws, &upgrade(extra));
            r.unwrap();
            assert_eq!(ws.subprotocol(), *want, "{extra:?}");
            match want {
                Some(p) => assert!(has_header(&wire, &format!("Sec-WebSocket-Protocol: {p}"))),
                None => assert!(!String::from_utf8_lossy(&wire).contains("Protocol:")),
            }
        }
        // Offered, but nothing we speak (names are case-sensitive).
        for extra in [
            "Sec-WebSocket-Protocol: MQTT\r\n",
            "Sec-WebSocket-Protocol: foo\r\n",
        ] {
            let mut ws = WsServer::new(1024, None);
            let (r, _, wire) = feed(&mut ws, &upgrade(extra));
            assert!(matches!(r, Err(WsError::BadRequest(_))), "{extra:?}");
            assert_eq!(status(&wire), "HTTP/1.1 400 Bad Request");
            assert!(!ws.is_open());
        }
    }

    #[test]
    fn no_subprotocol_still_carries_mqtt() {
        let mut ws = WsServer::new(1024, None);
        let mut input = upgrade("");
        input.extend(binary(CONNECT));
        let (r, app, _) = feed(&mut ws, &input);
        r.unwrap();
        assert_eq!(app, CONNECT);
    }

    #[test]
    fn lenient_header_forms_are_accepted() {
        let reqs = [
            // Case-insensitive names and tokens, Connection with a list.
            format!(
                "GET / HTTP/1.1\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\n\
                 sec-websocket-version: 13\r\nsec-websocket-key:{KEY}\r\n\r\n"
            ),
            // Bare LF line ends.
            format!(
                "GET /mqtt HTTP/1.1\nUpgrade: websocket\nConnection: Upgrade\n\
                 Sec-WebSocket-Version: 13\nSec-WebSocket-Key: {KEY}\n\n"
            ),
            // HTTP/1.0, as libwebsockets allows.
            format!(
                "GET /mqtt HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
            ),
        ];
        for req in reqs {
            let mut ws = WsServer::new(1024, None);
            let (r, _, wire) = feed(&mut ws, req.as_bytes());
            r.unwrap();
            assert!(has_header(
                &wire,
                &format!("Sec-WebSocket-Accept: {ACCEPT}")
            ));
        }
    }

    /// Handshakes as browsers send them. Chromium 156's is captured from
    /// tests/browser.rs (DevTools Network record, in Chromium's wire order);
    /// the Firefox one has Firefox's shape (Connection list, Sec-Fetch-*).
    /// Both offer permessage-deflate: the answer must agree on `mqtt` and
    /// on no extension, and a compressed (RSV1) frame must then be refused.
    #[test]
    fn browser_handshakes_get_mqtt_and_no_extension() {
        let chromium = format!(
            "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:43537\r\nConnection: Upgrade\r\n\
             Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux \
             x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 \
             Safari/537.36\r\nUpgrade: websocket\r\nOrigin: http://127.0.0.1:43537\r\n\
             Sec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
             Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        let firefox = format!(
            "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUser-Agent: Mozilla/5.0 (X11; \
             Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\n\
             Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
             Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:9001\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\
             Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Key: {KEY}\r\n\
             Connection: keep-alive, Upgrade\r\nSec-Fetch-Dest: empty\r\n\
             Sec-Fetch-Mode: websocket\r\nSec-Fetch-Site: same-origin\r\n\
             Pragma: no-cache\r\nCache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n"
        );
        for req in [chromium, firefox] {
            let mut ws = WsServer::new(0, None);
            let (r, _, wire) = feed(&mut ws, req.as_bytes());
            r.unwrap();
            assert_eq!(status(&wire), "HTTP/1.1 101 Switching Protocols");
            assert!(has_header(
                &wire,
                &format!("Sec-WebSocket-Accept: {ACCEPT}")
            ));
            assert!(has_header(&wire, "Sec-WebSocket-Protocol: mqtt"));
            let answer = String::from_utf8_lossy(&wire).to_ascii_lowercase();
            assert!(!answer.contains("extensions"), "{answer}");
            let (r, app, _) = feed(&mut ws, &binary(CONNECT));
            r.unwrap();
            assert_eq!(app, CONNECT);
            let compressed = client_frame(0xC2, CONNECT, [1, 2, 3, 4]);
            let (r, _, wire) = feed(&mut ws, &compressed);
            assert!(matches!(r, Err(WsError::Protocol(_))), "{r:?}");
            // Answered with a close frame, code 1002 (protocol error).
            assert_eq!(wire.first(), Some(&0x88));
            assert_eq!(wire.get(2..4), Some(&[0x03, 0xea][..]));
        }
    }

    #[test]
    fn bad_upgrades_get_400_or_426() {
        let base = String::from_utf8(upgrade_mqtt()).unwrap();
        let cases = [
            (base.replace("GET", "POST"), 400),
            (
                base.replace("Connection: Upgrade", "Connection: keep-alive"),
                400,
            ),
            (
                base.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                400,
            ),
            (
                base.replace(&format!("Sec-WebSocket-Key: {KEY}"), "Sec-WebSocket-Key: "),
                400,
            ),
            (base.replace("Version: 13", "Version: 8"), 426),
            (base.replace("Sec-WebSocket-Version: 13\r\n", ""), 426),
            (base.replace("HTTP/1.1", "HTTP/2.0"), 400),
            (base.replace("Host: x", " folded"), 400),
            (base.replace("Host: x", "no colon here"), 400),
            ("\x10\x0c\x00\x04MQTT\r\n\r\n".to_string(), 400),
        ];
        for (req, code) in cases {
            let mut ws = WsServer::new(1024, None);
            let (r, app, wire) = feed(&mut ws, req.as_bytes());
            assert!(matches!(r, Err(WsError::BadRequest(_))), "{req:?}: {r:?}");
            assert!(app.is_empty());
            assert!(
                status(&wire).starts_with(&format!("HTTP/1.1 {code} ")),
                "{req:?}"
            );
            if code == 426 {
                assert!(has_header(&wire, "Sec-WebSocket-Version: 13"));
            }
            assert!(!ws.is_open());
            // Finished: nothing more is read.
            assert_eq!(feed(&mut ws, &binary(CONNECT)).0, Err(WsError::Closed));
        }
    }

    #[test]
    fn forwarded_for_keeps_first_entry() {
        let mut ws = WsServer::new(1024, None);
        let req =
            upgrade("X-Forwarded-For:  10.1.2.3 , 192.168.0.1\r\nX-Forwarded-For: 9.9.9.9\r\n");
        feed(&mut ws, &req).0.unwrap();
        assert_eq!(ws.forwarded_for(), Some("10.1.2.3"));
        let mut ws = WsServer::new(4096, None);
        let long = "1".repeat(MAX_FORWARDED_LEN + 1);
        feed(&mut ws, &upgrade(&format!("X-Forwarded-For: {long}\r\n")))
            .0
            .unwrap();
        assert_eq!(ws.forwarded_for(), None);
    }

    #[test]
    fn header_limit() {
        let req = upgrade_mqtt();
        // Exactly at the limit passes.
        let mut ws = WsServer::new(req.len(), None);
        feed(&mut ws, &req).0.unwrap();
        assert!(ws.is_open());
        // One byte over fails with 431, whether fed at once or byte by byte.
        let mut ws = WsServer::new(req.len() - 1, None);
        let (r, _, wire) = feed(&mut ws, &req);
        assert_eq!(r, Err(WsError::TooLarge));
        assert_eq!(
            status(&wire),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        let mut ws = WsServer::new(req.len() - 1, None);
        let mut wire = Vec::new();
        let mut result = Ok(());
        for b in &req {
            result = ws.feed(&[*b], &mut Vec::new(), &mut wire);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(WsError::TooLarge));
        assert_eq!(
            status(&wire),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // An endless request without a blank line is cut off at the limit
        // and memory stays bounded.
        let mut ws = WsServer::new(100, None);
        let mut r = Ok(());
        for _ in 0..1000 {
            r = feed(&mut ws, b"X-Junk: aaaaaaaaaa\r\n").0;
            if r.is_err() {
                break;
            }
            assert!(ws.head.len() <= 100);
        }
        assert_eq!(r, Err(WsError::TooLarge));
        // 0 means the default.
        let ws = WsServer::new(0, None);
        assert_eq!(ws.headers_limit, DEFAULT_HEADERS_LIMIT);
    }

    #[test]
    fn frames_in_the_same_read_as_the_handshake() {
        let mut ws = WsServer::new(1024, None);
        let mut input = upgrade_mqtt();
        input.extend(binary(CONNECT));
        input.extend(client_frame(0x89, b"hi", [1, 2, 3, 4]));
        let (r, app, wire) = feed(&mut ws, &input);
        r.unwrap();
        assert_eq!(app, CONNECT);
        assert!(wire.ends_with(b"\r\n\r\n\x8a\x02hi"));
    }

    #[test]
    fn byte_by_byte_equals_all_at_once() {
        let mut input = upgrade_mqtt();
        input.extend(binary(CONNECT));
        input.extend(client_frame(0x89, b"ping!", [9, 8, 7, 6]));
        input.extend(client_frame(0x02, b"frag", [5, 5, 5, 5]));
        input.extend(client_frame(0x80, b"ment", [0, 1, 0, 1]));
        input.extend(binary(&[0xAB; 300]));
        input.extend(client_frame(0x88, &1000u16.to_be_bytes(), [3, 3, 3, 3]));

        let mut whole = WsServer::new(1024, None);
        let (r1, app1, wire1) = feed(&mut whole, &input);
        assert_eq!(r1, Err(WsError::Closed));

        let mut ws = WsServer::new(1024, None);
        let (mut app, mut wire) = (Vec::new(), Vec::new());
        let mut last = Ok(());
        for (i, b) in input.iter().enumerate() {
            last = ws.feed(&[*b], &mut app, &mut wire);
            if i + 1 < input.len() {
                last.clone().unwrap();
            }
        }
        assert_eq!(last, Err(WsError::Closed));
        assert_eq!(app, app1);
        assert_eq!(wire, wire1);
        let mut want = CONNECT.to_vec();
        want.extend_from_slice(b"fragment");
        want.extend_from_slice(&[0xAB; 300]);
        assert_eq!(app, want);
    }

    // ---- frames ------------------------------------------------------

    #[test]
    fn payload_length_encodings() {
        for (n, header_len) in [(0, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let frame = binary(&payload);
            assert_eq!(frame.len(), header_len + n, "{n}");
            let mut ws = open_server();
            let (r, app, wire) = feed(&mut ws, &frame);
            r.unwrap();
            assert_eq!(app, payload, "{n}");
            assert!(wire.is_empty());

            // And the server's own frames use the same boundaries.
            let mut out = Vec::new();
            ws.wrap(&payload, &mut out);
            assert_eq!(out.len(), header_len - 4 + n, "{n}");
            assert_eq!(out[0], 0x82);
            assert_eq!(out.get(header_len - 4..).unwrap(), payload.as_slice());
            match n {
                0..=125 => assert_eq!(out[1] as usize, n),
                126..=65535 => {
                    assert_eq!(out[1], 126);
                    assert_eq!(u16::from_be_bytes([out[2], out[3]]) as usize, n);
                }
                _ => {
                    assert_eq!(out[1], 127);
                    let mut b = [0; 8];
                    b.copy_from_slice(&out[2..10]);
                    assert_eq!(u64::from_be_bytes(b) as usize, n);
                }
            }
        }
    }

    #[test]
    fn wrap_appends_and_header_helper_matches() {
        let mut ws = open_server();
        let mut wire = b"prefix".to_vec();
        ws.wrap(b"\x20\x02\x00\x00", &mut wire);
        assert_eq!(wire, b"prefix\x82\x04\x20\x02\x00\x00");
        let (h, n) = WsServer::binary_frame_header(70000);
        assert_eq!(&h[..n], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        // Not open yet: nothing written.
        let mut fresh = WsServer::new(1024, None);
        let mut wire = Vec::new();
        fresh.wrap(b"data", &mut wire);
        assert!(wire.is_empty());
    }

    #[test]
    fn fragmentation_with_interleaved_control_frames() {
        let mut ws = open_server();
        let mut input = client_frame(0x02, b"ab", [1, 2, 3, 4]);
        input.extend(client_frame(0x89, b"p", [4, 3, 2, 1]));
        input.extend(client_frame(0x00, b"cd", [9, 9, 9, 9]));
        input.extend(client_frame(0x8A, b"unsolicited", [7, 7, 7, 7]));
        input.extend(client_frame(0x80, b"ef", [8, 8, 8, 8]));
        input.extend(binary(b"gh"));
        let (r, app, wire) = feed(&mut ws, &input);
        r.unwrap();
        assert_eq!(app, b"abcdefgh");
        assert_eq!(wire, b"\x8a\x01p");
    }

    #[test]
    fn fragmentation_errors() {
        // Continuation without a started message.
        let mut ws = open_server();
        let (r, _, wire) = feed(&mut ws, &client_frame(0x80, b"x", [1, 1, 1, 1]));
        assert!(matches!(r, Err(WsError::Protocol(_))));
        assert_eq!(&wire[..4], &[0x88, wire[1], 0x03, 0xEA]);
        // A new binary frame inside a fragmented message.
        let mut ws = open_server();
        let mut input = client_frame(0x02, b"x", [1, 1, 1, 1]);
        input.extend(binary(b"y"));
        let (r, app, _) = feed(&mut ws, &input);
        assert!(matches!(r, Err(WsError::Protocol(_))));
        assert_eq!(app, b"x");
        // A fragmented control frame.
        let mut ws = open_server();
        let (r, _, _) = feed(&mut ws, &client_frame(0x09, b"x", [1, 1, 1, 1]));
        assert!(matches!(r, Err(WsError::Protocol(_))));
    }

    #[test]
    fn ping_gets_pong_with_same_payload() {
        let mut ws = open_server();
        let payload: Vec<u8> = (0..125u8).collect();
        let (r, app, wire) = feed(
            &mut ws,
            &client_frame(0x89, &payload, [0xde, 0xad, 0xbe, 0xef]),
        );
        r.unwrap();
        assert!(app.is_empty());
        assert_eq!(&wire[..2], &[0x8A, 125]);
        assert_eq!(&wire[2..], payload.as_slice());
        // Empty ping.
        let (r, _, wire) = feed(&mut ws, &client_frame(0x89, b"", [1, 2, 3, 4]));
        r.unwrap();
        assert_eq!(wire, [0x8A, 0]);
    }

    #[test]
    fn close_is_echoed_then_closed() {
        let mut ws = open_server();
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let (r, _, wire) = feed(&mut ws, &client_frame(0x88, &payload, [1, 2, 3, 4]));
        assert_eq!(r, Err(WsError::Closed));
        assert_eq!(wire, [0x88, 2, 0x03, 0xE9]);
        assert!(!ws.is_open());
        // Anything after the close is refused and not decoded.
        let (r, app, wire) = feed(&mut ws, &binary(CONNECT));
        assert_eq!(r, Err(WsError::Closed));
        assert!(app.is_empty() && wire.is_empty());
        let mut out = Vec::new();
        ws.wrap(b"late", &mut out);
        assert!(out.is_empty());

        // An empty close is answered with an empty close.
        let mut ws = open_server();
        let (r, _, wire) = feed(&mut ws, &client_frame(0x88, b"", [1, 2, 3, 4]));
        assert_eq!(r, Err(WsError::Closed));
        assert_eq!(wire, [0x88, 0]);

        // A one-byte close payload is a protocol error.
        let mut ws = open_server();
        let (r, _, wire) = feed(&mut ws, &client_frame(0x88, b"x", [1, 2, 3, 4]));
        assert!(matches!(r, Err(WsError::Protocol(_))));
        assert_eq!(&wire[2..4], &1002u16.to_be_bytes());
    }

    #[test]
    fn server_initiated_close() {
        let mut ws = open_server();
        let mut wire = Vec::new();
        ws.close(CLOSE_GOING_AWAY, &mut wire);
        assert_eq!(wire, [0x88, 2, 0x03, 0xE9]);
        assert!(!ws.is_open());
        ws.close(CLOSE_NORMAL, &mut wire);
        assert_eq!(wire.len(), 4);
    }

    #[test]
    fn protocol_violations_send_close_codes() {
        let mut unmasked = vec![0x82, CONNECT.len() as u8];
        unmasked.extend_from_slice(CONNECT);
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (unmasked, 1002),
            (client_frame(0x81, b"text", [1, 2, 3, 4]), 1003),
            (client_frame(0xC2, b"rsv1", [1, 2, 3, 4]), 1002),
            (client_frame(0xA2, b"rsv2", [1, 2, 3, 4]), 1002),
            (client_frame(0x83, b"op3", [1, 2, 3, 4]), 1002),
            (client_frame(0x8B, b"opB", [1, 2, 3, 4]), 1002),
            (client_frame(0x89, &[0; 126], [1, 2, 3, 4]), 1002),
            (client_frame(0x88, &[0; 200], [1, 2, 3, 4]), 1002),
            // Top bit of the 64-bit length set.
            (
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4],
                1002,
            ),
        ];
        for (frame, code) in cases {
            let mut ws = open_server();
            let (r, app, wire) = feed(&mut ws, &frame);
            assert!(matches!(r, Err(WsError::Protocol(_))), "{frame:?}: {r:?}");
            assert!(app.is_empty(), "{frame:?}");
            assert_eq!(wire[0], 0x88);
            assert!(wire[1] <= 125);
            assert_eq!(wire.len(), 2 + wire[1] as usize);
            assert_eq!(&wire[2..4], &code.to_be_bytes(), "{frame:?}");
            assert!(!ws.is_open());
        }
    }

    #[test]
    fn violation_is_detected_from_two_bytes() {
        // An unmasked frame is refused before its length or payload arrive.
        let mut ws = open_server();
        let (r, _, _) = feed(&mut ws, &[0x82]);
        r.unwrap();
        let (r, _, _) = feed(&mut ws, &[0x7F]);
        assert!(matches!(r, Err(WsError::Protocol(_))));
    }

    #[test]
    fn oversize_length_rejected_without_allocation() {
        // 2^40 bytes claimed: refused by the default maximum, nothing reserved.
        let mut ws = open_server();
        let mut frame = vec![0x82, 0xFF];
        frame.extend_from_slice(&(1u64 << 40).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        let mut app = Vec::new();
        let mut wire = Vec::new();
        let r = ws.feed(&frame, &mut app, &mut wire);
        assert_eq!(r, Err(WsError::TooLarge));
        assert_eq!(app.capacity(), 0);
        assert_eq!(&wire[..4], &[0x88, 2, 0x03, 0xF1]);

        // A custom maximum: at it passes, above it fails.
        let mut ws = open_server().with_max_frame_size(1000);
        feed(&mut ws, &binary(&[0; 1000])).0.unwrap();
        let (r, app, _) = feed(&mut ws, &binary(&[0; 1001]));
        assert_eq!(r, Err(WsError::TooLarge));
        assert!(app.is_empty());

        // Below the maximum, a huge claimed length only ever appends what
        // actually arrives.
        let mut ws = open_server();
        let mut frame = vec![0x82, 0xFF];
        frame.extend_from_slice(&(200_000_000u64).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(b"abc");
        let mut app = Vec::new();
        ws.feed(&frame, &mut app, &mut Vec::new()).unwrap();
        assert_eq!(app, b"abc");
        assert!(app.capacity() < 1024);
    }

    #[test]
    fn unmask_matches_naive_at_every_phase() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for len in 0..40 {
            for pos in 0..8 {
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let mut fast = data.clone();
                unmask(&mut fast, mask, pos);
                let naive: Vec<u8> = data
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(pos + i) % 4])
                    .collect();
                assert_eq!(fast, naive, "len {len} pos {pos}");
            }
        }
    }

    #[test]
    fn random_frames_with_random_splits_round_trip() {
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..200 {
            let mut input = Vec::new();
            let mut want = Vec::new();
            let mut pongs = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let len = match rng.below(4) {
                    0 => rng.below(126),
                    1 => 126 + rng.below(400),
                    2 => rng.below(10),
                    _ => 65530 + rng.below(10),
                };
                let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let mask = (rng.next() as u32).to_be_bytes();
                let pieces = 1 + rng.below(3);
                let cuts: Vec<usize> = {
                    let mut c: Vec<usize> = (0..pieces - 1).map(|_| rng.below(len + 1)).collect();
                    c.push(0);
                    c.push(len);
                    c.sort();
                    c
                };
                for (i, w) in cuts.windows(2).enumerate() {
                    let op = if i == 0 { 0x02 } else { 0x00 };
                    let fin = if i + 2 == cuts.len() { 0x80 } else { 0 };
                    input.extend(client_frame(fin | op, &payload[w[0]..w[1]], mask));
                    if rng.below(4) == 0 {
                        let p: Vec<u8> = (0..rng.below(20)).map(|_| rng.next() as u8).collect();
                        input.extend(client_frame(0x89, &p, mask));
                        pongs.push(0x8A);
                        pongs.push(p.len() as u8);
                        pongs.extend(p);
                    }
                }
                want.extend(payload);
            }
            let mut ws = open_server();
            let (mut app, mut wire) = (Vec::new(), Vec::new());
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(3000));
                let (now, later) = rest.split_at(n);
                ws.feed(now, &mut app, &mut wire).unwrap();
                rest = later;
            }
            assert_eq!(app, want);
            assert_eq!(wire, pongs);
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = XorShift(0x0123_4567_89AB_CDEF);
        for round in 0..3000 {
            let len = rng.below(300);
            let garbage: Vec<u8> = (0..len)
                .map(|_| match rng.below(8) {
                    // Bias towards bytes that mean something here.
                    0 => b'\n',
                    1 => b'\r',
                    2 => 0x80 | rng.below(16) as u8,
                    3 => 0xFF,
                    _ => rng.next() as u8,
                })
                .collect();
            let mut ws = if round % 2 == 0 {
                open_server()
            } else {
                WsServer::new(1 + rng.below(200), None)
            };
            let (mut app, mut wire) = (Vec::new(), Vec::new());
            let mut rest = garbage.as_slice();
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                let (now, later) = rest.split_at(n);
                if ws.feed(now, &mut app, &mut wire).is_err() {
                    assert!(!ws.is_open());
                    break;
                }
                rest = later;
            }
            assert!(app.len() <= garbage.len());
        }
        // Mutated valid handshakes.
        let base = upgrade_mqtt();
        for _ in 0..2000 {
            let mut req = base.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(req.len());
                req[i] = rng.next() as u8;
            }
            let mut ws = WsServer::new(1024, None);
            let _ = feed(&mut ws, &req);
        }
    }

    // ---- http_dir ----------------------------------------------------

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("midge-ws-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(p.join("www/sub")).unwrap();
            fs::write(p.join("www/index.html"), b"<h1>hi</h1>").unwrap();
            fs::write(p.join("www/app.js"), b"let x = 1;").unwrap();
            fs::write(p.join("www/sub/x.json"), b"{\"a\":1}").unwrap();
            fs::write(p.join("secret.txt"), b"secret").unwrap();
            TempDir(p)
        }
        fn www(&self) -> PathBuf {
            self.0.join("www")
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn http(dir: Option<PathBuf>, req: &str) -> (Result<(), WsError>, String) {
        let mut ws = WsServer::new(1024, dir);
        let (r, app, wire) = feed(&mut ws, req.as_bytes());
        assert!(app.is_empty());
        assert!(!ws.is_open());
        (r, String::from_utf8_lossy(&wire).into_owned())
    }

    fn get(dir: &TempDir, target: &str) -> String {
        let (r, resp) = http(
            Some(dir.www()),
            &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        let code = resp.split(' ').nth(1).unwrap_or("");
        if code == "400" {
            assert!(matches!(r, Err(WsError::BadRequest(_))), "{target}");
        } else {
            assert_eq!(r, Err(WsError::Closed), "{target}");
        }
        resp
    }

    #[test]
    fn http_dir_serves_files() {
        let d = TempDir::new("serve");
        let r = get(&d, "/");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
        assert!(r.contains("\r\nContent-Length: 11\r\n"));
        assert!(r.ends_with("\r\n\r\n<h1>hi</h1>"));
        let r = get(&d, "/app.js?v=3");
        assert!(r.contains("Content-Type: text/javascript"));
        assert!(r.ends_with("let x = 1;"));
        let r = get(&d, "/sub/x.json");
        assert!(r.contains("Content-Type: application/json\r\n"));
        assert!(r.ends_with("{\"a\":1}"));
        let r = get(&d, "/%69ndex.html");
        assert!(r.ends_with("<h1>hi</h1>"));
        let r = get(&d, "//sub/./x.json");
        assert!(r.ends_with("{\"a\":1}"));
        // A directory without its slash is redirected.
        let r = get(&d, "/sub");
        assert!(
            r.starts_with("HTTP/1.1 302 Found\r\nLocation: /sub/\r\n"),
            "{r}"
        );
        // HEAD: headers with the length, no body.
        let (_, r) = http(Some(d.www()), "HEAD /index.html HTTP/1.1\r\n\r\n");
        assert!(r.contains("Content-Length: 11\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn http_dir_refusals() {
        let d = TempDir::new("refuse");
        for (target, code) in [
            ("/missing.html", "404"),
            ("/sub/", "404"),
            ("/sub/x.json/", "404"),
            ("/../secret.txt", "403"),
            ("/sub/../../secret.txt", "403"),
            ("/sub/../index.html", "403"),
            ("/%2e%2e/secret.txt", "403"),
            ("/%2E%2E%2fsecret.txt", "403"),
            ("/%00", "400"),
            ("/%zz", "400"),
            ("/%ff", "400"),
            ("index.html", "400"),
            ("*", "400"),
            ("http://x/index.html", "400"),
        ] {
            let r = get(&d, target);
            assert!(r.starts_with(&format!("HTTP/1.1 {code} ")), "{target}: {r}");
            assert!(!r.contains("secret"), "{target}");
        }
        let (r, resp) = http(
            Some(d.www()),
            "POST /index.html HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(r, Err(WsError::Closed));
        assert!(resp.starts_with("HTTP/1.1 405 "));
        assert!(resp.contains("\r\nAllow: GET, HEAD\r\n"));
    }

    #[cfg(unix)]
    #[test]
    fn http_dir_refuses_symlinks_out() {
        let d = TempDir::new("symlink");
        std::os::unix::fs::symlink(d.0.join("secret.txt"), d.www().join("out")).unwrap();
        std::os::unix::fs::symlink(d.0.as_path(), d.www().join("updir")).unwrap();
        std::os::unix::fs::symlink(d.www().join("index.html"), d.www().join("in")).unwrap();
        let r = get(&d, "/out");
        assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
        let r = get(&d, "/updir/secret.txt");
        assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
        let r = get(&d, "/in");
        assert!(r.ends_with("<h1>hi</h1>"), "{r}");
    }

    #[test]
    fn plain_http_without_http_dir_is_404() {
        let (r, resp) = http(None, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r, Err(WsError::Closed));
        assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n"));
    }

    #[test]
    fn upgrade_wins_over_http_dir() {
        let d = TempDir::new("upgrade");
        let mut ws = WsServer::new(1024, Some(d.www()));
        let (r, _, wire) = feed(&mut ws, &upgrade_mqtt());
        r.unwrap();
        assert_eq!(status(&wire), "HTTP/1.1 101 Switching Protocols");
    }
}
