//! net::ws: one WebSocket server connection of a `protocol websockets`
//! listener, from the first HTTP byte to the close.
//!
//! Owns: gathering the HTTP request head (bounded by
//! `websockets_headers_size`), choosing between the upgrade and a plain HTTP
//! request (`http_dir`), and then running the frame codec in the server role.
//! The codec itself (frames, masking, the handshake's HTTP) is
//! `protocol::websocket`; file serving is `net::http_dir`.
//!
//! Must not: touch sockets, timers or the broker. Bytes come in through
//! [`WsServer::feed`], bytes to send go out through the `wire` vector, MQTT
//! bytes go to the `app` vector; the event loop moves them.

use std::fmt;
use std::path::PathBuf;

pub use crate::protocol::websocket::{WsError, CLOSE_GOING_AWAY, CLOSE_NORMAL, DEFAULT_MAX_FRAME};

use super::http_dir;
use crate::protocol::websocket::handshake::{self, http_error, Request};
use crate::protocol::websocket::{frame_header, FrameDecoder, Role, OP_BINARY};

/// Used when the caller passes a headers limit of 0. Mosquitto documents 1024,
/// but when `websockets_headers_size` is unset it leaves libwebsockets at its
/// own default, which in practice admits request heads of about 4 KiB.
pub const DEFAULT_HEADERS_LIMIT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the HTTP request head.
    Handshake,
    /// Upgraded: frames flow.
    Open,
    /// Finished; nothing more is read or written.
    Closed,
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
    frames: FrameDecoder,
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

/// The server role never masks, so it never needs a mask.
fn no_mask() -> [u8; 4] {
    [0; 4]
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
            frames: FrameDecoder::new(Role::Server),
        }
    }

    /// Refuse frames whose payload is larger than `max` bytes (close 1009).
    pub fn with_max_frame_size(mut self, max: u64) -> WsServer {
        self.frames = self.frames.with_max_frame_size(max);
        self
    }

    /// True once the upgrade succeeded and until the connection ends.
    pub fn is_open(&self) -> bool {
        self.state == State::Open && !self.frames.is_closed()
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
        let input = match self.state {
            State::Closed => return Err(WsError::Closed),
            State::Open => input,
            State::Handshake => match self.feed_handshake(input, wire)? {
                Some(rest) => rest,
                None => return Ok(()),
            },
        };
        let fed = self.frames.feed(input, app, wire, &mut no_mask);
        if let Err(e) = &fed {
            if *e != WsError::Closed {
                log::debug!("websocket: closing: {e}");
            }
            self.state = State::Closed;
        }
        fed
    }

    /// Append `data` to `wire` as one binary frame (server frames are not
    /// masked). Nothing is written unless the connection is open: data
    /// frames are meaningless before the upgrade and forbidden after a close.
    pub fn wrap(&mut self, data: &[u8], wire: &mut Vec<u8>) {
        if !self.is_open() {
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
    pub fn binary_frame_header(len: usize) -> ([u8; 14], usize) {
        frame_header(OP_BINARY, len, None)
    }

    /// Start a close from the server side (e.g. the broker disconnects the
    /// client): append a close frame with `code` to `wire` and stop. Does
    /// nothing unless open.
    pub fn close(&mut self, code: u16, wire: &mut Vec<u8>) {
        if self.is_open() {
            self.frames.close(code, None, wire);
            self.state = State::Closed;
        }
    }

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
        match handshake::find_head_end(&self.head, old) {
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
        let Some(req) = Request::parse(head) else {
            http_error(wire, 400, "Bad Request", "");
            return Err(WsError::BadRequest("malformed HTTP request".into()));
        };
        if !req.upgrade_websocket {
            return Err(http_dir::answer(self.http_dir.as_deref(), &req, wire));
        }
        handshake::answer_upgrade(&req, wire)?;
        self.subprotocol = req.protocol;
        self.forwarded_for = req.forwarded_for();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::websocket::handshake::MAX_FORWARDED_LEN;
    use std::fs;

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
