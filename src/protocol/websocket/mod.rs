//! protocol::websocket: the one sans-IO WebSocket (RFC 6455) codec, for both
//! ends of MQTT over WebSockets: the broker's listeners (server role, in
//! `net::ws`) and the command-line tools' `ws://` transport (client role, in
//! `client::websocket`).
//!
//! Owns: frame headers and masking, the incremental frame decoder (which
//! unmasks straight into the caller's buffer, answers pings, echoes closes and
//! refuses what RFC 6455 and MQTT-6.0.0-1 forbid with the right close code),
//! and, in [`handshake`], the HTTP/1.1 upgrade on both sides.
//!
//! Must not: do I/O, keep time, or draw random numbers: bytes come in through
//! [`FrameDecoder::feed`], bytes to send are appended to a `wire` vector, and a
//! client passes the masks it drew itself. It knows nothing of MQTT beyond
//! "binary frames carry the byte stream".
//!
//! Written by hand instead of using tungstenite to keep the binary small on
//! small boards (measured 102-121 KB smaller on ARM): the part of RFC 6455
//! that MQTT needs is a few hundred lines.
//!
//! The two roles differ only where the RFC makes them: frames from a client
//! must be masked and frames from a server must not be (RFC 6455 5.1), and
//! what a client sends is masked. Text frames are refused either way
//! (MQTT-6.0.0-1: control packets travel in binary frames only).

pub mod handshake;

use std::fmt;

/// Largest frame payload accepted by default: one maximal MQTT packet
/// (1 byte type, 4 bytes remaining length, 268435455 bytes). A frame header
/// may claim up to 2^63 bytes; nothing is allocated from that claim, payload
/// bytes are only appended to `app` as they arrive.
pub const DEFAULT_MAX_FRAME: u64 = 268_435_455 + 5;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close code for an orderly shutdown (RFC 6455 7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code for a server going down or dropping the client.
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Which end of the connection this codec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives masked frames, sends unmasked ones.
    Server,
    /// Receives unmasked frames, sends masked ones.
    Client,
}

/// Why a WebSocket connection must end. Whatever was appended to `wire`
/// before the error (an HTTP error, a close frame) should be flushed first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// Server: the HTTP request was not a valid WebSocket upgrade (400 or
    /// 426 sent).
    BadRequest(String),
    /// Client: the server did not accept the upgrade.
    Handshake(String),
    /// Orderly end: the peer sent a close frame (echoed), an HTTP request
    /// was answered, or `feed` was called after the end.
    Closed,
    /// The peer broke RFC 6455 or MQTT-6.0.0-1; a close frame was sent.
    Protocol(String),
    /// The request head exceeded the headers limit (431 sent), or a frame
    /// exceeded the maximum frame size (close 1009 sent).
    TooLarge,
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::BadRequest(why) => write!(f, "bad websocket request: {why}"),
            WsError::Handshake(why) => write!(f, "WebSocket handshake failed: {why}"),
            WsError::Closed => f.write_str("websocket closed"),
            WsError::Protocol(why) => write!(f, "WebSocket protocol error: {why}"),
            WsError::TooLarge => f.write_str("websocket request or frame too large"),
        }
    }
}

impl std::error::Error for WsError {}

/// The header of a final frame of `opcode` carrying `len` payload bytes,
/// masked with `mask` when given: the buffer and how many bytes are used.
/// Lets a caller send header and payload with one vectored write.
pub fn frame_header(opcode: u8, len: usize, mask: Option<[u8; 4]>) -> ([u8; 14], usize) {
    let mut h = [0u8; 14];
    h[0] = 0x80 | opcode;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if len < 126 {
        h[1] = mask_bit | len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = mask_bit | 126;
        let [a, b] = short.to_be_bytes();
        h[2] = a;
        h[3] = b;
        4
    } else {
        h[1] = mask_bit | 127;
        if let Some(dst) = h.get_mut(2..10) {
            dst.copy_from_slice(&(len as u64).to_be_bytes());
        }
        10
    };
    if let Some(m) = mask {
        if let Some(dst) = h.get_mut(n..n + 4) {
            dst.copy_from_slice(&m);
        }
        n += 4;
    }
    (h, n)
}

/// Append one final frame of `opcode` with `payload`, masked when `mask` is
/// given (client role).
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, wire: &mut Vec<u8>) {
    let (hdr, n) = frame_header(opcode, payload.len(), mask);
    wire.reserve(n + payload.len());
    wire.extend_from_slice(hdr.get(..n).unwrap_or(&[]));
    let start = wire.len();
    wire.extend_from_slice(payload);
    if let (Some(m), Some(tail)) = (mask, wire.get_mut(start..)) {
        unmask(tail, m, 0);
    }
}

/// Append a close frame; the reason is cut to fit a control frame.
pub fn encode_close(code: u16, reason: &[u8], mask: Option<[u8; 4]>, wire: &mut Vec<u8>) {
    let reason = reason.get(..reason.len().min(123)).unwrap_or(&[]);
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    if let Some(dst) = payload.get_mut(2..2 + reason.len()) {
        dst.copy_from_slice(reason);
    }
    encode_frame(
        OP_CLOSE,
        payload.get(..2 + reason.len()).unwrap_or(&[]),
        mask,
        wire,
    );
}

/// XOR `buf` with the 4-byte `mask`, `pos` bytes into the frame payload
/// (masking and unmasking are the same operation). Eight bytes at a time:
/// this runs over every MQTT byte a client sends.
pub fn unmask(buf: &mut [u8], mask: [u8; 4], pos: usize) {
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

/// The decoder's position inside the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Payload,
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

/// The receiving half of one upgraded connection: frames in, byte stream
/// out, control frames answered.
pub struct FrameDecoder {
    role: Role,
    closed: bool,
    max_frame: u64,
    phase: Phase,
    /// Frame header bytes gathered so far (2 + 8 length + 4 mask at most).
    hdr: [u8; 14],
    hdr_len: usize,
    fin: bool,
    opcode: u8,
    /// The frame's mask; zeros for an unmasked frame (XOR with 0 is a no-op).
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

impl fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("role", &self.role)
            .field("closed", &self.closed)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl FrameDecoder {
    pub fn new(role: Role) -> FrameDecoder {
        FrameDecoder {
            role,
            closed: false,
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
    pub fn with_max_frame_size(mut self, max: u64) -> FrameDecoder {
        self.max_frame = max;
        self
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// True once a close frame was received or sent, or the peer broke the
    /// protocol: nothing more is decoded or sent.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Start a close from this side: append a close frame with `code` and
    /// stop. Does nothing once closed. `mask` is for the client role.
    pub fn close(&mut self, code: u16, mask: Option<[u8; 4]>, wire: &mut Vec<u8>) {
        if !self.closed {
            encode_close(code, b"", self.out_mask(mask), wire);
            self.closed = true;
        }
    }

    /// The mask for a frame this side sends: the caller's in the client
    /// role (all zeros if it gave none), none in the server role.
    fn out_mask(&self, mask: Option<[u8; 4]>) -> Option<[u8; 4]> {
        match self.role {
            Role::Server => None,
            Role::Client => Some(mask.unwrap_or([0; 4])),
        }
    }

    /// Feed bytes read from the peer. Data frame payloads (the MQTT byte
    /// stream) are appended to `app`; answers (pongs, close frames) are
    /// appended to `wire`. `next_mask` is asked for a fresh mask for each
    /// frame the client role sends; the server role never calls it.
    /// On `Err` the connection must be closed after flushing `wire`.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        app: &mut Vec<u8>,
        wire: &mut Vec<u8>,
        next_mask: &mut dyn FnMut() -> [u8; 4],
    ) -> Result<(), WsError> {
        loop {
            if self.closed {
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
                                return Err(self.fail(e, wire, next_mask));
                            }
                        }
                        continue;
                    }
                    if let Err(e) = self.start_payload() {
                        return Err(self.fail(e, wire, next_mask));
                    }
                    if self.remaining == 0 {
                        self.end_frame(wire, next_mask)?;
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
                        self.end_frame(wire, next_mask)?;
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
        let masked = b1 & 0x80 != 0;
        match self.role {
            Role::Server if !masked => return Err(Failure::protocol("client frame not masked")),
            Role::Client if masked => return Err(Failure::protocol("server frame masked")),
            _ => {}
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
        self.mask = [0; 4];
        if b1 & 0x80 != 0 {
            self.mask
                .copy_from_slice(self.hdr.get(mask_at..mask_at + 4).unwrap_or(&[0; 4]));
        }
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
    fn end_frame(
        &mut self,
        wire: &mut Vec<u8>,
        next_mask: &mut dyn FnMut() -> [u8; 4],
    ) -> Result<(), WsError> {
        self.phase = Phase::Header;
        let len = self.ctrl_len;
        let mut payload = [0u8; 125];
        payload[..len].copy_from_slice(self.ctrl.get(..len).unwrap_or(&[]));
        let payload = payload.get(..len).unwrap_or(&[]);
        match self.opcode {
            OP_PING => {
                let mask = self.reply_mask(next_mask);
                encode_frame(OP_PONG, payload, mask, wire);
                Ok(())
            }
            OP_CLOSE => {
                let mask = self.reply_mask(next_mask);
                match *payload {
                    // No status: answer likewise with an empty close.
                    [] => encode_frame(OP_CLOSE, &[], mask, wire),
                    [_] => {
                        let f = Failure::protocol("close payload of 1 byte");
                        return Err(self.fail(f, wire, next_mask));
                    }
                    // Echo the status code, as RFC 6455 5.5.1 suggests.
                    [a, b, ..] => encode_close(u16::from_be_bytes([a, b]), b"", mask, wire),
                }
                self.closed = true;
                Err(WsError::Closed)
            }
            // Unsolicited pongs are allowed (RFC 6455 5.5.3) and mean nothing.
            _ => Ok(()),
        }
    }

    /// The mask for an answer this side sends: a fresh one from the caller
    /// in the client role, none in the server role.
    fn reply_mask(&self, next_mask: &mut dyn FnMut() -> [u8; 4]) -> Option<[u8; 4]> {
        match self.role {
            Role::Server => None,
            Role::Client => Some(next_mask()),
        }
    }

    /// Send the close frame for `f`, stop, and return its error.
    fn fail(
        &mut self,
        f: Failure,
        wire: &mut Vec<u8>,
        next_mask: &mut dyn FnMut() -> [u8; 4],
    ) -> WsError {
        let reason: &[u8] = match &f.error {
            WsError::Protocol(why) => why.as_bytes(),
            _ => b"",
        };
        let mask = self.reply_mask(next_mask);
        encode_close(f.code, reason, mask, wire);
        self.closed = true;
        f.error
    }
}

#[cfg(test)]
mod tests;
