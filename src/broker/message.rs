//! broker/message: a stored message, in one allocation.
//!
//! Owns: `Message`, a PUBLISH that must outlive the read buffer it arrived
//! in (queued, in flight, retained, a will), and `Source`, who published a
//! retained message. Topic, v5 properties and payload live in a single
//! reference-counted allocation with the fixed fields in front, so storing
//! a message costs one allocation however many sessions hold it, and a
//! clone is a reference-count increment.
//!
//! Must not: encode packets or know about sessions; payload bytes never
//! appear in `Debug` output.

use std::cell::Cell;
use std::ops::Deref;
use std::rc::Rc;

use std::mem::MaybeUninit;

use triomphe::{Arc, HeaderSlice, UniqueArc};

use crate::protocol::QoS;

/// The fixed fields of a stored message (reached through `Deref`).
pub struct Stored {
    /// Deadline (broker clock, ms) from the Message Expiry Interval.
    pub expiry_at: Option<u64>,
    /// QoS and retain as published.
    pub qos: QoS,
    pub retain: bool,
    /// Who published it, kept only for retained messages under an ACL, so
    /// `check_retain_source` can ask again whether they may still write it.
    pub source: Option<Box<Source>>,
    /// Identity in the persistence files (0 = not written yet).
    pub persist_id: Cell<u64>,
}

impl Stored {
    pub fn new(qos: QoS, retain: bool) -> Stored {
        Stored {
            expiry_at: None,
            qos,
            retain,
            source: None,
            persist_id: Cell::new(0),
        }
    }
}

struct Header {
    stored: Stored,
    topic_len: u16,
    props_len: u32,
}

/// A message stored once and shared by every queue, in-flight window and
/// the retained store. Cloning shares it.
#[derive(Clone)]
pub struct Message(Arc<HeaderSlice<Header, [u8]>>);

#[derive(Debug)]
pub struct Source {
    pub client_id: Rc<str>,
    pub username: Option<Box<str>>,
    /// Its security policy; `usize::MAX` when restored from disk, where
    /// the policy is found again from `port` (as Mosquitto keeps the
    /// source listener's port in its database).
    pub security: usize,
    /// Port of the listener it published on.
    pub port: u16,
}

impl Message {
    /// Store a message. A topic is at most 65 535 bytes (the protocol's
    /// string limit) and properties at most 268 435 455: longer input,
    /// which no decoded packet can carry, is cut there.
    pub fn new(topic: &str, props: &[u8], payload: &[u8], stored: Stored) -> Message {
        let topic = cut_str(topic, u16::MAX as usize);
        let props = &props[..props.len().min(u32::MAX as usize)];
        let header = Header {
            stored,
            topic_len: topic.len() as u16,
            props_len: props.len() as u32,
        };
        let parts: [&[u8]; 3] = [topic.as_bytes(), props, payload];
        let len = parts.iter().map(|p| p.len()).sum();
        let mut unique = UniqueArc::from_header_and_uninit_slice(header, len);
        let mut rest: &mut [MaybeUninit<u8>] = &mut unique.slice;
        for part in parts {
            let (dst, tail) = rest.split_at_mut(part.len());
            // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, `dst` is
            // exactly `part.len()` bytes of the fresh allocation, and a
            // borrowed `part` cannot overlap it. (Copying byte by byte
            // through an iterator cost ~1 700 instructions per message.)
            unsafe {
                std::ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    dst.as_mut_ptr().cast::<u8>(),
                    part.len(),
                )
            };
            rest = tail;
        }
        // SAFETY: the three copies above wrote all `len` bytes.
        let unique = unsafe { unique.assume_init_slice_with_header() };
        Message(unique.shareable())
    }

    /// A copy with its own fixed fields (a will given its own expiry).
    pub fn with_stored(&self, stored: Stored) -> Message {
        Message::new(self.topic(), self.props(), self.payload(), stored)
    }

    pub fn topic(&self) -> &str {
        let bytes = &self.0.slice[..self.0.header.topic_len as usize];
        // SAFETY: these bytes were copied from a `&str` in `new` (cut at a
        // char boundary) and are never written again.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// v5 properties forwarded to subscribers, as raw encoded bytes, without
    /// Topic Alias, Subscription Identifier and Message Expiry Interval
    /// (those are written per delivery).
    pub fn props(&self) -> &[u8] {
        let start = self.0.header.topic_len as usize;
        &self.0.slice[start..start + self.0.header.props_len as usize]
    }

    pub fn payload(&self) -> &[u8] {
        let start = self.0.header.topic_len as usize + self.0.header.props_len as usize;
        &self.0.slice[start..]
    }

    /// The fixed fields, while nothing else holds this message.
    pub fn stored_mut(&mut self) -> Option<&mut Stored> {
        Arc::get_mut(&mut self.0).map(|h| &mut h.header.stored)
    }

    pub fn expired(&self, now: u64) -> bool {
        matches!(self.expiry_at, Some(t) if t <= now)
    }

    /// What this message costs against `max_queued_bytes` (payload, as Mosquitto counts it).
    pub fn cost(&self) -> usize {
        self.payload().len()
    }

    /// Whether two handles share one stored message.
    pub fn same(a: &Message, b: &Message) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Deref for Message {
    type Target = Stored;
    fn deref(&self) -> &Stored {
        &self.0.header.stored
    }
}

fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Payload bytes are the users' data: a debug log or a failed assertion
/// shows their length only.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic())
            .field("payload", &format_args!("<{} bytes>", self.payload().len()))
            .field("props", &format_args!("<{} bytes>", self.props().len()))
            .field("expiry_at", &self.expiry_at)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("source", &self.source)
            .field("persist_id", &self.persist_id.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_back_as_stored() {
        let m = Message::new(
            "a/b",
            &[1, 0, 0, 0, 5],
            b"hello",
            Stored::new(QoS::AtLeastOnce, true),
        );
        assert_eq!(m.topic(), "a/b");
        assert_eq!(m.props(), &[1, 0, 0, 0, 5]);
        assert_eq!(m.payload(), b"hello");
        assert!(m.retain);
        assert_eq!(m.cost(), 5);
        let empty = Message::new("", &[], &[], Stored::new(QoS::AtMostOnce, false));
        assert_eq!(
            (empty.topic(), empty.props(), empty.payload()),
            ("", &[][..], &[][..])
        );
    }

    #[test]
    fn debug_output_hides_the_payload() {
        let m = Message::new(
            "t",
            &[],
            b"secret-password",
            Stored::new(QoS::AtMostOnce, false),
        );
        let shown = format!("{m:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<15 bytes>"), "{shown}");
    }

    #[test]
    fn an_overlong_topic_is_cut_at_a_char_boundary() {
        let topic = "é".repeat(40_000); // 80 000 bytes
        let m = Message::new(&topic, &[], b"x", Stored::new(QoS::AtMostOnce, false));
        assert!(m.topic().len() <= 65_535);
        assert!(m.topic().chars().all(|c| c == 'é'));
        assert_eq!(m.payload(), b"x");
    }

    #[test]
    fn fixed_fields_change_only_while_unshared() {
        let mut m = Message::new("t", &[], b"x", Stored::new(QoS::AtMostOnce, false));
        assert!(m.stored_mut().is_some());
        let other = m.clone();
        assert!(m.stored_mut().is_none());
        assert!(Message::same(&m, &other));
    }
}
