//! net/slow_loop_tests: the event loop on a starved CPU.
//!
//! Owns: tests that run the real loop (sockets, mio) with every pass
//! artificially slowed, the way a Pi Zero or a loaded board is slower than
//! a workstation, so that publishers get far ahead between passes.
//!
//! Must not: depend on wall-clock speed for its verdict; the slowness is
//! a fixed sleep per pass and the assertion is about messages, not time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{bind, Control, EventLoop, Identity, ListenerSpec, Listening};
use crate::broker::{Broker, BrokerConfig};
use crate::protocol::field::write_remaining_length;

/// Sleeps at the end of every pass, so each pass finds a backlog.
struct SlowPasses {
    pause: Duration,
    stop: Arc<AtomicBool>,
}

impl Control for SlowPasses {
    fn after_pass(&mut self, _broker: &mut Broker, _now: u64) {
        thread::sleep(self.pause);
    }
    fn next_deadline(&self) -> Option<u64> {
        None
    }
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    frame(0x10, &body)
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    write_remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

/// Read whole packets until `want` PUBLISHes arrived or `limit` passed;
/// returns how many arrived.
fn count_publishes(s: &mut TcpStream, want: usize, limit: Duration) -> usize {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < want && start.elapsed() < limit {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        let mut at = 0;
        while let Some(&first) = buf.get(at) {
            let (mut len, mut mul, mut i) = (0usize, 1usize, at + 1);
            let mut complete = false;
            while let Some(&b) = buf.get(i) {
                len += (b & 0x7f) as usize * mul;
                mul *= 128;
                i += 1;
                if b & 0x80 == 0 {
                    complete = true;
                    break;
                }
            }
            if !complete || buf.len() < i + len {
                break;
            }
            if first >> 4 == 3 {
                got += 1;
            }
            at = i + len;
        }
        buf.drain(..at);
    }
    got
}

/// Eight publishers flood one `#` subscriber with QoS 0 while every loop
/// pass takes 20 ms longer than its work. With the default 1000-message
/// queue, a loop that read all the publishers before writing anything
/// dropped most of the flood; reading that stops to flush delivers it all.
#[test]
fn a_slow_loop_still_delivers_every_message_of_a_fan_in_flood() {
    const PUBLISHERS: usize = 8;
    const EACH: usize = 4000;
    let spec = ListenerSpec {
        addr: "127.0.0.1:0".parse().unwrap(),
        unix_path: None,
        bind_interface: None,
        settings: 0,
        max_connections: -1,
        tls: None,
        identity: Identity::Connect,
        websockets: None,
        optional: false,
    };
    let bound = bind(&[spec]).expect("bind a loopback port");
    let port = match &bound[0].0 {
        Listening::Tcp(t) => t.local_addr().unwrap().port(),
        Listening::Unix(_) => unreachable!("a TCP spec binds TCP"),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_loop = stop.clone();
    let looper = thread::spawn(move || {
        let mut ev = EventLoop::new(bound).expect("event loop");
        let cfg = BrokerConfig {
            sys_interval: 0,
            ..BrokerConfig::default()
        };
        assert_eq!(cfg.max_queued_messages, 1000, "the default queue bound");
        let mut broker = Broker::new(cfg, ev.now());
        let mut control = SlowPasses {
            pause: Duration::from_millis(20),
            stop: stop_loop,
        };
        ev.run(&mut broker, &mut control).expect("loop runs");
    });

    let addr = ("127.0.0.1", port);
    let mut sub = TcpStream::connect(addr).unwrap();
    sub.write_all(&connect_packet("sub")).unwrap();
    let subscribe = frame(
        0x82,
        &[0, 1, 0, 7, b'b', b'e', b'n', b'c', b'h', b'/', b'#', 0],
    );
    sub.write_all(&subscribe).unwrap();
    // CONNACK (4 bytes) and SUBACK (5 bytes).
    let mut acks = [0u8; 9];
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub.read_exact(&mut acks).unwrap();
    assert_eq!((acks[0], acks[4]), (0x20, 0x90), "CONNACK then SUBACK");

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut all = connect_packet(&format!("pub{p}"));
                for i in 0..EACH {
                    let payload = [(i % 251) as u8; 64];
                    all.extend_from_slice(&publish_packet(&format!("bench/{p}"), &payload));
                }
                s.write_all(&all).unwrap();
                s
            })
        })
        .collect();
    let got = count_publishes(&mut sub, PUBLISHERS * EACH, Duration::from_secs(15));
    let _publishers: Vec<TcpStream> = publishers.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    // Wake the loop so it sees the stop request.
    drop(TcpStream::connect(addr));
    looper.join().unwrap();
    assert_eq!(got, PUBLISHERS * EACH, "messages delivered of the flood");
}
