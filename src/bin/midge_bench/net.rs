//! The load generator's connection engine: many nonblocking MQTT client
//! sockets on one mio `Poll`, on one thread.
//!
//! Owns: connecting, the CONNECT/CONNACK and SUBSCRIBE/SUBACK handshakes,
//! batched writes from a per-client outbox, big reads into one shared buffer
//! with many packets decoded per read, and automatic PUBACKs for QoS 1
//! deliveries. Scenarios only queue bytes (`tx`) and look at decoded packets
//! through a callback. It must not know about scenarios, and must not
//! allocate per message: buffers are reused, leftovers of partial packets are
//! kept in a per-client `Vec` whose capacity survives.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::mqtt::{self, Packet, Parsed};
use crate::transport::{self, Io, Transport};

/// Initial size of the shared read buffer; it grows only for packets bigger
/// than this.
const READ_BUF: usize = 256 * 1024;
/// A packet larger than this from a broker is treated as a protocol error.
const MAX_PACKET: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP connect in progress.
    Connecting,
    /// CONNECT sent.
    WaitConnack,
    /// SUBSCRIBE sent.
    WaitSuback,
    /// Handshakes done; scenario traffic flows.
    Ready,
    /// Closed by the peer, refused, or failed; ignored from now on.
    Closed,
}

struct Client {
    io: Io,
    tx: Vec<u8>,
    tx_pos: usize,
    leftover: Vec<u8>,
    state: State,
    dirty: bool,
    /// Filter and QoS to subscribe to once CONNACK arrives.
    sub: Option<(String, u8)>,
}

/// Counters for everything that went wrong, reported in the JSON result.
#[derive(Debug, Default, Clone)]
pub struct NetStats {
    /// Connections the broker closed (EOF) or that failed with an I/O error.
    pub closed: u64,
    /// CONNACK with a non-zero code or SUBACK with a failure code.
    pub refused: u64,
    /// Bytes from the broker that did not decode.
    pub malformed: u64,
    /// DISCONNECT packets received (v5).
    pub disconnects: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

pub struct Net {
    poll: Poll,
    events: Events,
    clients: Vec<Client>,
    dirty: Vec<usize>,
    rbuf: Vec<u8>,
    v5: bool,
    addr: SocketAddr,
    ready: usize,
    closed: usize,
    pub stats: NetStats,
    /// Connect with persistent sessions (qos1 --persistent: journal cost).
    pub persistent: bool,
    /// TCP, TLS, WebSockets: the run's (`transport::set`).
    transport: Transport,
}

/// What `establish` managed to set up.
pub struct Setup {
    pub ids: Vec<usize>,
    pub failed: usize,
    pub secs: f64,
}

impl Net {
    pub fn new(addr: SocketAddr, v5: bool) -> io::Result<Net> {
        Ok(Net {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            clients: Vec::new(),
            dirty: Vec::new(),
            rbuf: vec![0; READ_BUF],
            v5,
            persistent: false,
            transport: transport::current(),
            addr,
            ready: 0,
            closed: 0,
            stats: NetStats::default(),
        })
    }

    /// Starts a connection; CONNECT (and SUBSCRIBE, if `sub` is given) are
    /// sent as the handshake progresses. Returns the client's index.
    pub fn connect(&mut self, client_id: &str, sub: Option<(String, u8)>) -> io::Result<usize> {
        let idx = self.clients.len();
        let mut stream = TcpStream::connect(self.addr)?;
        // Latency matters more than segment count for a benchmark client.
        stream.set_nodelay(true)?;
        self.poll.registry().register(
            &mut stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut tx = Vec::with_capacity(256);
        // Keep-alive 0: idle benchmark connections must not be timed out.
        mqtt::connect(&mut tx, client_id, 0, self.v5, self.persistent);
        self.clients.push(Client {
            io: Io::new(stream, &self.transport, idx as u32 + 1)?,
            tx,
            tx_pos: 0,
            leftover: Vec::new(),
            state: State::Connecting,
            dirty: false,
            sub,
        });
        Ok(idx)
    }

    /// Number of clients ever connected (indices are `0..len`).
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn ready_count(&self) -> usize {
        self.ready
    }

    pub fn state(&self, idx: usize) -> State {
        self.clients.get(idx).map_or(State::Closed, |c| c.state)
    }

    /// Bytes queued for `idx` and not yet written to its socket.
    pub fn pending(&self, idx: usize) -> usize {
        self.clients
            .get(idx)
            .map_or(0, |c| c.tx.len().saturating_sub(c.tx_pos))
    }

    /// The outbox of `idx`, marked for the next `flush`. `None` once closed.
    pub fn tx(&mut self, idx: usize) -> Option<&mut Vec<u8>> {
        let c = self.clients.get_mut(idx)?;
        if c.state == State::Closed {
            return None;
        }
        if c.tx_pos > 0 && c.tx_pos >= c.tx.len() / 2 {
            // Reclaim the written prefix so the outbox does not creep.
            c.tx.drain(..c.tx_pos);
            c.tx_pos = 0;
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(idx);
        }
        Some(&mut c.tx)
    }

    /// Writes every outbox touched since the last flush, as far as the
    /// sockets accept; the rest goes out on the WRITABLE event.
    pub fn flush(&mut self) {
        let Net {
            clients,
            dirty,
            poll,
            ready,
            closed,
            stats,
            ..
        } = self;
        for idx in dirty.drain(..) {
            if let Some(c) = clients.get_mut(idx) {
                c.dirty = false;
                write_client(c, poll, ready, closed, stats);
            }
        }
    }

    /// Sends DISCONNECT on every live connection and flushes, so brokers see
    /// a clean close rather than a reset.
    pub fn disconnect_all(&mut self) {
        for idx in 0..self.clients.len() {
            if self.state(idx) == State::Ready {
                if let Some(tx) = self.tx(idx) {
                    mqtt::disconnect(tx);
                }
            }
        }
        self.flush();
    }

    /// Waits up to `timeout` for socket events, handles handshakes and
    /// QoS 1 acknowledgements, and hands every other packet to `on_packet`
    /// with the index of the client it arrived on.
    pub fn poll<F>(&mut self, timeout: Option<Duration>, on_packet: &mut F) -> io::Result<()>
    where
        F: FnMut(usize, &Packet<'_>),
    {
        let Net {
            poll,
            events,
            clients,
            dirty,
            rbuf,
            v5,
            ready,
            closed,
            stats,
            ..
        } = self;
        match poll.poll(events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let idx = ev.token().0;
            let Some(c) = clients.get_mut(idx) else {
                continue;
            };
            if c.state == State::Closed {
                continue;
            }
            if c.state == State::Connecting {
                if !(ev.is_writable() || ev.is_error() || ev.is_write_closed()) {
                    continue;
                }
                match c.io.tcp.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => {
                        close(c, poll, ready, closed, stats, format!("connect: {e}"));
                        continue;
                    }
                }
                match c.io.tcp.peer_addr() {
                    Ok(_) => c.state = State::WaitConnack,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => {
                        close(c, poll, ready, closed, stats, format!("connect: {e}"));
                        continue;
                    }
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                read_client(idx, c, rbuf, *v5, ready, closed, stats, poll, on_packet);
                if !c.dirty && c.tx.len() > c.tx_pos {
                    // Handshake replies and PUBACKs queued while reading.
                    c.dirty = true;
                    dirty.push(idx);
                }
            }
            if ev.is_writable() && c.state != State::Closed {
                write_client(c, poll, ready, closed, stats);
            }
        }
        Ok(())
    }

    /// Connects `specs` (client id, optional subscription) with at most
    /// `concurrency` handshakes in flight, until all are ready or failed or
    /// `deadline` passes. Packets arriving meanwhile go to `on_packet`.
    pub fn establish<F>(
        &mut self,
        specs: &[(String, Option<(String, u8)>)],
        concurrency: usize,
        deadline: Instant,
        on_packet: &mut F,
    ) -> io::Result<Setup>
    where
        F: FnMut(usize, &Packet<'_>),
    {
        let t0 = Instant::now();
        let mut ids = Vec::with_capacity(specs.len());
        let ready0 = self.ready;
        let closed0 = self.closed;
        let mut next = specs.iter();
        let mut connect_failed = 0usize;
        loop {
            let done = (self.ready - ready0) + (self.closed - closed0) + connect_failed;
            let started = ids.len() + connect_failed;
            let in_flight = started.saturating_sub(done);
            let mut room = concurrency.max(1).saturating_sub(in_flight);
            while room > 0 {
                let Some((id, sub)) = next.next() else {
                    break;
                };
                match self.connect(id, sub.clone()) {
                    Ok(idx) => ids.push(idx),
                    Err(e) => {
                        // Typically EMFILE or ephemeral ports exhausted.
                        connect_failed += 1;
                        if self.stats.first_error.is_none() {
                            self.stats.first_error = Some(format!("connect: {e}"));
                        }
                    }
                }
                room -= 1;
            }
            self.flush();
            let done = (self.ready - ready0) + (self.closed - closed0) + connect_failed;
            if done >= specs.len() || Instant::now() >= deadline {
                break;
            }
            self.poll(Some(Duration::from_millis(5)), on_packet)?;
        }
        let failed = ids.len() + connect_failed
            - ids
                .iter()
                .filter(|&&i| self.state(i) == State::Ready)
                .count();
        Ok(Setup {
            ids,
            failed,
            secs: t0.elapsed().as_secs_f64(),
        })
    }
}

fn close(
    c: &mut Client,
    poll: &Poll,
    ready: &mut usize,
    closed: &mut usize,
    stats: &mut NetStats,
    why: String,
) {
    if c.state == State::Closed {
        return;
    }
    if c.state == State::Ready {
        *ready = ready.saturating_sub(1);
    }
    c.state = State::Closed;
    *closed += 1;
    stats.closed += 1;
    if stats.first_error.is_none() {
        stats.first_error = Some(why);
    }
    // Deregistering can only fail if it was never registered; nothing to do.
    let _ = poll.registry().deregister(&mut c.io.tcp);
    let _ = c.io.tcp.shutdown(std::net::Shutdown::Both);
    c.tx = Vec::new();
    c.tx_pos = 0;
    c.leftover = Vec::new();
}

fn write_client(
    c: &mut Client,
    poll: &Poll,
    ready: &mut usize,
    closed: &mut usize,
    stats: &mut NetStats,
) {
    if matches!(c.state, State::Connecting | State::Closed) {
        return;
    }
    // Bytes a TLS or WebSocket layer still holds go first.
    match c.io.flush_pending() {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            close(c, poll, ready, closed, stats, format!("write: {e}"));
            return;
        }
    }
    while c.tx_pos < c.tx.len() {
        let chunk = c.tx.get(c.tx_pos..).unwrap_or_default();
        match c.io.write(chunk) {
            Ok(0) => {
                close(c, poll, ready, closed, stats, "write returned 0".into());
                return;
            }
            Ok(n) => c.tx_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                close(c, poll, ready, closed, stats, format!("write: {e}"));
                return;
            }
        }
    }
    c.tx.clear();
    c.tx_pos = 0;
}

#[allow(clippy::too_many_arguments)]
fn read_client<F>(
    idx: usize,
    c: &mut Client,
    rbuf: &mut Vec<u8>,
    v5: bool,
    ready: &mut usize,
    closed: &mut usize,
    stats: &mut NetStats,
    poll: &Poll,
    on_packet: &mut F,
) where
    F: FnMut(usize, &Packet<'_>),
{
    let mut have = c.leftover.len();
    if rbuf.len() < have + READ_BUF / 2 {
        rbuf.resize(have + READ_BUF, 0);
    }
    if let Some(dst) = rbuf.get_mut(..have) {
        dst.copy_from_slice(&c.leftover);
    }
    c.leftover.clear();
    let mut failure: Option<String> = None;
    loop {
        if rbuf.len() - have < READ_BUF / 4 {
            if rbuf.len() >= MAX_PACKET {
                failure = Some("packet from broker too large".into());
                stats.malformed += 1;
                break;
            }
            let grown = rbuf.len() * 2;
            rbuf.resize(grown, 0);
        }
        let space = rbuf.len() - have;
        let n = match c.io.read(rbuf.get_mut(have..).unwrap_or_default()) {
            Ok(0) => {
                failure = Some("connection closed by broker".into());
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                failure = Some(format!("read: {e}"));
                break;
            }
        };
        have += n;
        let mut off = 0;
        while off < have {
            let buf = rbuf.get(off..have).unwrap_or_default();
            match mqtt::parse(buf, v5) {
                Parsed::Packet(p, used) => {
                    off += used;
                    if let Err(why) = handle_packet(idx, c, &p, v5, ready, stats, on_packet) {
                        failure = Some(why);
                        break;
                    }
                }
                Parsed::Incomplete { need } => {
                    if let Some(need) = need {
                        if need > MAX_PACKET {
                            failure = Some("packet from broker too large".into());
                            stats.malformed += 1;
                        } else if need > rbuf.len() {
                            // Room for the whole packet after the compaction below.
                            rbuf.resize(need + READ_BUF, 0);
                        }
                    }
                    break;
                }
                Parsed::Malformed(why) => {
                    stats.malformed += 1;
                    failure = Some(format!("malformed packet from broker: {why}"));
                    break;
                }
            }
        }
        if failure.is_some() {
            break;
        }
        rbuf.copy_within(off..have, 0);
        have -= off;
        if n < space && c.io.short_read_drains() {
            // A short read drained the socket; with edge-triggered epoll the
            // next arrival raises a new event, so skip the WouldBlock read.
            break;
        }
    }
    if let Some(why) = failure {
        close(c, poll, ready, closed, stats, why);
        return;
    }
    c.leftover
        .extend_from_slice(rbuf.get(..have).unwrap_or_default());
}

fn handle_packet<F>(
    idx: usize,
    c: &mut Client,
    p: &Packet<'_>,
    v5: bool,
    ready: &mut usize,
    stats: &mut NetStats,
    on_packet: &mut F,
) -> Result<(), String>
where
    F: FnMut(usize, &Packet<'_>),
{
    match *p {
        Packet::ConnAck { code } if c.state == State::WaitConnack => {
            if code != 0 {
                stats.refused += 1;
                return Err(format!("CONNACK code {code}"));
            }
            if let Some((filter, qos)) = c.sub.take() {
                mqtt::subscribe(&mut c.tx, 1, &filter, qos, v5);
                c.state = State::WaitSuback;
            } else {
                c.state = State::Ready;
                *ready += 1;
            }
        }
        Packet::SubAck { codes, .. } if c.state == State::WaitSuback => {
            if codes.iter().any(|&code| code >= 0x80) || codes.is_empty() {
                stats.refused += 1;
                return Err(format!("SUBACK codes {codes:?}"));
            }
            c.state = State::Ready;
            *ready += 1;
        }
        Packet::Publish { qos, packet_id, .. } => {
            if qos == 1 {
                mqtt::puback(&mut c.tx, packet_id);
            }
            on_packet(idx, p);
        }
        Packet::Disconnect { code } => {
            stats.disconnects += 1;
            on_packet(idx, p);
            return Err(format!("DISCONNECT code {code:#x}"));
        }
        _ => on_packet(idx, p),
    }
    Ok(())
}
