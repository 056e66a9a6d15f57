//! The codec on its own, in both roles. The server role is also driven
//! end to end (handshake, http_dir, every frame rule) in `net::ws`'s tests.

use super::*;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn no_mask() -> [u8; 4] {
    [0; 4]
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
fn rfc6455_accept_example() {
    assert_eq!(
        handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

/// What a client sends, a server reads back, at every length class.
#[test]
fn client_frames_decode_in_the_server_role() {
    for len in [0usize, 1, 125, 126, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        encode_frame(OP_BINARY, &payload, Some([9, 8, 7, 6]), &mut wire);
        assert_eq!(wire[0], 0x82);
        assert_ne!(wire[1] & 0x80, 0, "client frames are masked");
        let mut server = FrameDecoder::new(Role::Server);
        let (mut app, mut answer) = (Vec::new(), Vec::new());
        server
            .feed(&wire, &mut app, &mut answer, &mut no_mask)
            .unwrap();
        assert_eq!(app, payload, "len {len}");
        assert!(answer.is_empty());
    }
}

/// Server frames, split at every byte: data, a ping answered with a masked
/// pong, a fragmented message, then a close echoed (masked) that ends it.
#[test]
fn client_role_split_anywhere_with_control_frames() {
    let mut stream = vec![0x82, 3, b'a', b'b', b'c', 0x89, 1, b'p', 0x02, 126, 0, 200];
    stream.extend(std::iter::repeat_n(b'z', 200));
    stream.extend_from_slice(&[0x80, 1, b'!', 0x88, 2, 0x03, 0xE8]);
    for split in 0..stream.len() {
        let mut c = FrameDecoder::new(Role::Client);
        let (mut data, mut reply) = (Vec::new(), Vec::new());
        let mut mask = || [1, 2, 3, 4];
        c.feed(&stream[..split], &mut data, &mut reply, &mut mask)
            .unwrap();
        let end = c.feed(&stream[split..], &mut data, &mut reply, &mut mask);
        assert_eq!(end, Err(WsError::Closed), "split {split}");
        let mut expect = b"abc".to_vec();
        expect.extend(std::iter::repeat_n(b'z', 200));
        expect.push(b'!');
        assert_eq!(data, expect, "split {split}");
        assert!(c.is_closed());
        // The pong and the close, as a server reads them.
        let mut server = FrameDecoder::new(Role::Server);
        let (mut app, mut answer) = (Vec::new(), Vec::new());
        assert_eq!(
            server.feed(&reply, &mut app, &mut answer, &mut no_mask),
            Err(WsError::Closed)
        );
        assert!(app.is_empty());
        // The server echoes the 1000 it was sent.
        assert_eq!(answer, [0x88, 2, 0x03, 0xE8]);
    }
}

#[test]
fn each_role_refuses_the_other_roles_masking() {
    let (mut d, mut r) = (Vec::new(), Vec::new());
    let mut c = FrameDecoder::new(Role::Client);
    let masked = [0x82, 0x81, 1, 2, 3, 4, 0];
    assert!(matches!(
        c.feed(&masked, &mut d, &mut r, &mut no_mask),
        Err(WsError::Protocol(_))
    ));
    let mut s = FrameDecoder::new(Role::Server);
    assert!(matches!(
        s.feed(&[0x82, 1, 0], &mut d, &mut r, &mut no_mask),
        Err(WsError::Protocol(_))
    ));
}

#[test]
fn client_role_refuses_bad_frames() {
    let bad: [&[u8]; 4] = [
        &[0xC2, 0],    // reserved bit
        &[0x83, 0],    // unknown opcode
        &[0x81, 0],    // text frame (MQTT-6.0.0-1)
        &[0x80, 1, 0], // continuation without a message
    ];
    for frame in bad {
        let mut c = FrameDecoder::new(Role::Client);
        let (mut d, mut r) = (Vec::new(), Vec::new());
        assert!(
            c.feed(frame, &mut d, &mut r, &mut no_mask).is_err(),
            "{frame:?}"
        );
    }
    let mut c = FrameDecoder::new(Role::Client);
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    let (mut d, mut r) = (Vec::new(), Vec::new());
    assert!(c.feed(&huge, &mut d, &mut r, &mut no_mask).is_err());
}

#[test]
fn frame_header_length_classes() {
    for (len, want) in [
        (0usize, &[0x82u8, 0][..]),
        (125, &[0x82, 125]),
        (126, &[0x82, 126, 0, 126]),
        (65535, &[0x82, 126, 0xFF, 0xFF]),
        (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let (h, n) = frame_header(OP_BINARY, len, None);
        assert_eq!(&h[..n], want, "len {len}");
    }
    let (h, n) = frame_header(OP_PONG, 1, Some([1, 2, 3, 4]));
    assert_eq!(&h[..n], &[0x8A, 0x81, 1, 2, 3, 4]);
}

#[test]
fn random_garbage_never_panics_in_either_role() {
    let mut x = XorShift(0x9E37_79B9_7F4A_7C15);
    for i in 0..4000 {
        let role = if i % 2 == 0 {
            Role::Server
        } else {
            Role::Client
        };
        let mut c = FrameDecoder::new(role);
        let len = (x.next() % 40) as usize;
        let buf: Vec<u8> = (0..len).map(|_| x.next() as u8).collect();
        let (mut d, mut r) = (Vec::new(), Vec::new());
        let _ = c.feed(&buf, &mut d, &mut r, &mut || [5, 6, 7, 8]);
        let _ = handshake::parse_handshake_response(&buf, "k");
        let _ = handshake::Request::parse(&buf);
    }
}
