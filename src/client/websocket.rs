//! websocket: the client end of MQTT over WebSockets for the command-line
//! tools: a fresh random `Sec-WebSocket-Key` and frame masks, around the one
//! codec in `protocol::websocket` (client role).
//!
//! Owns: the randomness the client role needs (RFC 6455 wants a new
//! unpredictable mask for every frame a client sends) and the byte-stream
//! view the blocking transport reads from: data frames become the stream,
//! PING is answered with PONG, CLOSE ends the stream.
//!
//! Must not: do I/O or know MQTT, or frame bytes itself: framing, the
//! handshake's HTTP and every frame rule live in `protocol::websocket`.

use ring::rand::{SecureRandom, SystemRandom};

use crate::protocol::websocket::{self as codec, FrameDecoder, Role, OP_BINARY};

pub use crate::protocol::websocket::handshake::{handshake_request, parse_handshake_response};
pub use crate::protocol::websocket::WsError;

/// The `Sec-WebSocket-Accept` value a server must answer `key` with.
pub fn accept_key(key: &str) -> String {
    codec::handshake::accept_key(key.as_bytes())
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
    crate::protocol::base64::encode(&random_bytes::<16>(&SystemRandom::new()))
}

/// Frames and unframes one WebSocket connection's bytes (client role).
#[derive(Debug)]
pub struct WsCodec {
    frames: FrameDecoder,
    rng: SystemRandom,
}

impl Default for WsCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl WsCodec {
    pub fn new() -> WsCodec {
        WsCodec {
            frames: FrameDecoder::new(Role::Client),
            rng: SystemRandom::new(),
        }
    }

    /// True once the server sent CLOSE: no more data will come.
    pub fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }

    /// Append `payload` as one masked binary frame to `out`.
    pub fn encode_binary(&self, payload: &[u8], out: &mut Vec<u8>) {
        codec::encode_frame(OP_BINARY, payload, Some(random_bytes(&self.rng)), out);
    }

    /// A masked CLOSE frame (normal closure).
    pub fn encode_close(&self, out: &mut Vec<u8>) {
        codec::encode_close(codec::CLOSE_NORMAL, b"", Some(random_bytes(&self.rng)), out);
    }

    /// Feed bytes from the server. Data frame payloads are appended to
    /// `data`; frames we must answer (PONG for PING, CLOSE for CLOSE) are
    /// appended to `reply`, to be written to the server. The server's CLOSE
    /// is not an error: the stream just ends (`is_closed`).
    pub fn decode(
        &mut self,
        input: &[u8],
        data: &mut Vec<u8>,
        reply: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        let rng = &self.rng;
        match self
            .frames
            .feed(input, data, reply, &mut || random_bytes(rng))
        {
            Ok(()) | Err(WsError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(new_key().len(), 24);
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

    /// What the codec sends, read back by the server role.
    fn server_read(wire: &[u8]) -> (Vec<u8>, Result<(), WsError>) {
        let mut server = FrameDecoder::new(Role::Server);
        let (mut app, mut answer) = (Vec::new(), Vec::new());
        let r = server.feed(wire, &mut app, &mut answer, &mut || [0; 4]);
        (app, r)
    }

    #[test]
    fn outgoing_frames_are_masked_binary_at_every_length_class() {
        let c = WsCodec::new();
        for len in [0usize, 1, 125, 126, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            c.encode_binary(&payload, &mut out);
            assert_eq!(out[0], 0x82);
            let (back, r) = server_read(&out);
            assert_eq!(r, Ok(()));
            assert_eq!(back, payload, "len {len}");
        }
        let mut close = Vec::new();
        c.encode_close(&mut close);
        assert_eq!(server_read(&close).1, Err(WsError::Closed));
    }

    #[test]
    fn incoming_split_anywhere_and_control_frames() {
        // Server frames: binary "abc", ping "p", a message in two fragments
        // (200 x 'z' with a 16-bit length, then "!"), close.
        let mut stream = vec![0x82, 3, b'a', b'b', b'c', 0x89, 1, b'p', 0x02, 126, 0, 200];
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
            // A masked PONG with the ping payload, then the CLOSE.
            assert_eq!(reply[0], 0x8A);
            assert_eq!(reply[1], 0x81);
            let pong_payload = reply[6] ^ reply[2];
            assert_eq!(pong_payload, b'p');
            assert_eq!(server_read(&reply).1, Err(WsError::Closed));
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
}
