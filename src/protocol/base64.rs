//! protocol::base64: standard base64 (RFC 4648 alphabet, `=` padding, no line
//! breaks), the one encoding every base64 field midge reads or writes uses:
//! password-file salts and hashes, dynamic-security JSON, and
//! `Sec-WebSocket-Key` / `Sec-WebSocket-Accept`.
//!
//! Owns: the choice of engine (the `base64` crate's standard engine, which
//! decodes strictly: length a multiple of 4, canonical padding, no whitespace,
//! zero unused bits, so every value has exactly one encoding).
//!
//! Must not: be lenient. A password file that Mosquitto would reject must not
//! be accepted here either.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Encodes with `=` padding.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Strict decoding; None for anything that is not canonical base64.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(i.as_bytes()), o);
            assert_eq!(decode(o).as_deref(), Some(i.as_bytes()));
        }
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(encode(&[0xfb, 0xff, 0xfe]), "+//+");
    }

    #[test]
    fn round_trip_random() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            assert_eq!(decode(&encode(&data)), Some(data));
        }
    }

    #[test]
    fn strict_rejects() {
        for bad in [
            "Zg", "Zg=", "Zg===", "Z===", "Zm9v\n", " Zm9v", "Zm=v", "Zh==", "Zm9=", "Zm8=Zm8=",
            "Zm9v!A==", "====",
        ] {
            assert_eq!(decode(bad), None, "accepted {bad:?}");
        }
    }
}
