//! Heap allocations per delivered message, counted.
//!
//! DESIGN.md's hot-path rule: no allocation per delivered message; a stored
//! message (QoS 1/2, or one that must outlive the read buffer) is one
//! allocation however many subscribers share it. These tests drive the
//! sans-IO broker through its public API (bytes in, outboxes out, as the
//! network layer does) with a global allocator that counts allocation calls
//! made by the measuring thread only, so parallel tests do not disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use midge::broker::{Broker, BrokerConfig, ConnId};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    // try_with: the thread-local may be gone while a thread shuts down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` unchanged; the bookkeeping
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocation calls made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCS.with(|n| n.get())
}

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    remaining_length(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn connect(client_id: &str, v5: bool) -> Vec<u8> {
    let mut b = Vec::new();
    string("MQTT", &mut b);
    b.push(if v5 { 5 } else { 4 });
    b.push(0x02); // clean start
    b.extend_from_slice(&60u16.to_be_bytes());
    if v5 {
        b.push(0); // no properties
    }
    string(client_id, &mut b);
    packet(0x10, &b)
}

fn subscribe(filter: &str, qos: u8, v5: bool) -> Vec<u8> {
    let mut b = vec![0, 1];
    if v5 {
        b.push(0);
    }
    string(filter, &mut b);
    b.push(qos);
    packet(0x82, &b)
}

fn publish(topic: &str, payload: &[u8], qos: u8, pid: u16, v5: bool) -> Vec<u8> {
    let mut b = Vec::new();
    string(topic, &mut b);
    if qos > 0 {
        b.extend_from_slice(&pid.to_be_bytes());
    }
    if v5 {
        b.push(0);
    }
    b.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &b)
}

/// The network layer's part, without sockets: feed bytes, drain outboxes
/// (answering PUBLISH with the ack a well-behaved client sends).
struct Net {
    b: Broker,
    now: u64,
    dirty: Vec<ConnId>,
    acks: Vec<u8>,
}

impl Net {
    fn new() -> Net {
        let cfg = BrokerConfig {
            sys_interval: 0,
            connection_messages: false,
            ..BrokerConfig::default()
        };
        Net {
            b: Broker::new(cfg, 1_000_000),
            now: 1_000_000,
            dirty: Vec::with_capacity(64),
            acks: Vec::with_capacity(4096),
        }
    }

    fn open(&mut self, key: u32, client_id: &str, v5: bool) -> ConnId {
        let id = ConnId { key, gen: 0 };
        self.b.open(id, 0, "127.0.0.1:1", self.now);
        self.b.receive(id, &connect(client_id, v5), self.now);
        self.flush(false);
        id
    }

    fn feed(&mut self, id: ConnId, bytes: &[u8]) {
        let n = self.b.receive(id, bytes, self.now);
        assert_eq!(n, bytes.len(), "the broker took the whole packet");
    }

    /// Write out every dirty outbox; with `ack`, answer each QoS 1 PUBLISH
    /// with PUBACK and each QoS 2 with PUBREC, as a subscriber does.
    /// Returns the number of PUBLISH packets seen.
    fn flush(&mut self, ack: bool) -> usize {
        let mut published = 0;
        for _ in 0..8 {
            self.b.take_dirty(&mut self.dirty);
            if self.dirty.is_empty() {
                break;
            }
            for i in 0..self.dirty.len() {
                let id = self.dirty[i];
                self.acks.clear();
                let out = self.b.outbox(id);
                let mut off = 0;
                while off + 2 <= out.len() {
                    let (len, hdr) = decode_len(&out[off + 1..]);
                    let kind = out[off] >> 4;
                    if kind == 3 {
                        published += 1;
                        let qos = (out[off] >> 1) & 3;
                        if ack && qos > 0 {
                            let body = &out[off + 1 + hdr..];
                            let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
                            let pid = [body[2 + tlen], body[3 + tlen]];
                            let kind = if qos == 1 { 0x40 } else { 0x50 };
                            self.acks.extend_from_slice(&[kind, 2, pid[0], pid[1]]);
                        }
                    } else if kind == 5 && ack {
                        // PUBREC for our publish: release it.
                        let b = &out[off + 1 + hdr..];
                        self.acks.extend_from_slice(&[0x62, 2, b[0], b[1]]);
                    } else if kind == 6 && ack {
                        let b = &out[off + 1 + hdr..];
                        self.acks.extend_from_slice(&[0x70, 2, b[0], b[1]]);
                    }
                    off += 1 + hdr + len;
                }
                let n = out.len();
                self.b.outbox_written(id, n, self.now);
                if !self.acks.is_empty() {
                    let acks = std::mem::take(&mut self.acks);
                    self.b.receive(id, &acks, self.now);
                    self.acks = acks;
                }
            }
        }
        published
    }
}

fn decode_len(b: &[u8]) -> (usize, usize) {
    let mut n = 0usize;
    let mut mult = 1usize;
    for (i, byte) in b.iter().enumerate() {
        n += (*byte as usize & 0x7f) * mult;
        if byte & 0x80 == 0 {
            return (n, i + 1);
        }
        mult *= 128;
    }
    (n, b.len())
}

/// A publisher and `subs` subscribers on `sensors/+` at `sub_qos`; warms up
/// with a few messages, then counts the allocations of `rounds` more.
fn measure(v5: bool, pub_qos: u8, sub_qos: u8, subs: u32, rounds: u16) -> (u64, usize) {
    let mut net = Net::new();
    let publisher = net.open(0, "pub", v5);
    for i in 0..subs {
        let s = net.open(1 + i, &format!("sub{i}"), v5);
        net.feed(s, &subscribe("sensors/+", sub_qos, v5));
        net.flush(true);
    }
    let msgs: Vec<Vec<u8>> = (0..rounds + 16)
        .map(|i| publish("sensors/temp", b"21.5 degrees", pub_qos, 1 + i, v5))
        .collect();
    for m in &msgs[..16] {
        net.feed(publisher, m);
        net.flush(true);
    }
    let mut delivered = 0;
    let n = allocations(|| {
        for m in &msgs[16..] {
            net.feed(publisher, m);
            delivered += net.flush(true);
        }
    });
    (n, delivered)
}

#[test]
fn qos0_delivery_allocates_nothing_v311_and_v5() {
    for v5 in [false, true] {
        let (allocs, delivered) = measure(v5, 0, 0, 10, 200);
        assert_eq!(
            delivered, 2000,
            "v5={v5}: every subscriber got every message"
        );
        assert_eq!(allocs, 0, "v5={v5}: allocations for 2000 QoS 0 deliveries");
    }
}

#[test]
fn stored_qos1_message_is_one_allocation_whatever_the_subscriber_count() {
    for v5 in [false, true] {
        for subs in [1, 10] {
            let (allocs, delivered) = measure(v5, 1, 1, subs, 200);
            assert_eq!(delivered, 200 * subs as usize, "v5={v5} subs={subs}");
            assert!(
                allocs <= 200,
                "v5={v5} subs={subs}: {allocs} allocations for 200 QoS 1 messages"
            );
        }
    }
}

#[test]
fn stored_qos2_message_is_one_allocation_whatever_the_subscriber_count() {
    for v5 in [false, true] {
        for subs in [1, 10] {
            let (allocs, delivered) = measure(v5, 2, 2, subs, 200);
            assert_eq!(delivered, 200 * subs as usize, "v5={v5} subs={subs}");
            assert!(
                allocs <= 200,
                "v5={v5} subs={subs}: {allocs} allocations for 200 QoS 2 messages"
            );
        }
    }
}
