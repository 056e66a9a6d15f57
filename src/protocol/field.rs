//! field: the primitive fields every MQTT packet is built of, both ways:
//! integers, variable byte integers, length-prefixed binary data and UTF-8
//! strings.
//!
//! Owns: reading them from a `&mut &[u8]` cursor (with the UTF-8 and U+0000
//! rules of MQTT 1.5.3 / v5 1.5.4) and writing them to a `Vec<u8>`.
//!
//! Must not: know packets or properties. `decode`, `encode` and `properties`
//! all build on this file, so that none of them needs another's helpers (the
//! import circle decode -> properties -> decode is gone this way).

use super::error::DecodeError;

// ---------------------------------------------------------------------------
// Readers. Each takes `&mut &[u8]` and advances it past what it read.

pub(crate) fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if b.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

pub(crate) fn read_u8(b: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&v, tail) = b.split_first().ok_or(DecodeError::Truncated)?;
    *b = tail;
    Ok(v)
}

pub(crate) fn read_u16(b: &mut &[u8]) -> Result<u16, DecodeError> {
    let s = take(b, 2)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

pub(crate) fn read_u32(b: &mut &[u8]) -> Result<u32, DecodeError> {
    let s = take(b, 4)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Variable byte integer of at most four bytes.
pub(crate) fn read_varint(b: &mut &[u8]) -> Result<u32, DecodeError> {
    let mut value = 0u32;
    for i in 0..4 {
        let byte = read_u8(b)?;
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::VariableByteIntegerTooLong)
}

/// Two-byte length followed by that many bytes.
pub(crate) fn read_binary<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = read_u16(b)?;
    take(b, usize::from(n))
}

/// UTF-8 encoded string: well-formed, no U+0000 (MQTT 1.5.3 / v5 1.5.4).
/// Other code points (U+FFFF, control characters) are allowed.
pub(crate) fn read_str<'a>(b: &mut &'a [u8]) -> Result<&'a str, DecodeError> {
    check_str(read_binary(b)?)
}

pub(crate) fn check_str(bytes: &[u8]) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if memchr::memchr(0, bytes).is_some() {
        return Err(DecodeError::NullCharacter);
    }
    Ok(s)
}

// ---------------------------------------------------------------------------
// Writers.

/// Append `v` as a variable byte integer (1..=4 bytes for valid values).
pub fn write_varint(out: &mut Vec<u8>, v: u32) {
    write_remaining_length(out, v as usize);
}

/// Bytes `write_varint` produces for `v`.
pub fn varint_size(v: u32) -> usize {
    remaining_length_size(v as usize)
}

/// Append a remaining length. Values over 268435455 are not representable in
/// MQTT; they are written with more than four bytes, which any receiver
/// (including our decoder) rejects, rather than silently truncated.
pub fn write_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Bytes `write_remaining_length` produces for `len`.
pub fn remaining_length_size(mut len: usize) -> usize {
    let mut n = 1;
    while len >= 0x80 {
        len >>= 7;
        n += 1;
    }
    n
}

/// Length-prefixed bytes, cut to 65535 so the prefix never lies.
pub(crate) fn write_binary(out: &mut Vec<u8>, b: &[u8]) {
    let b = clamp(b);
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

pub(super) fn clamp(b: &[u8]) -> &[u8] {
    b.get(..usize::from(u16::MAX)).unwrap_or(b)
}
