//! Test kit for core tests: a broker driven by bytes and a fake clock, no
//! sockets. `H` plays the network layer; `Got` is an owned decoded packet.

use std::collections::HashSet;

pub(crate) use super::*;
pub(crate) use crate::protocol::encode::encode;
pub(crate) use crate::protocol::{
    Ack, Connect, Disconnect, Properties, Publish, Subscribe, SubscribeFilters, Unsubscribe,
    UnsubscribeFilters, Will,
};

pub(crate) const V3: ProtocolVersion = ProtocolVersion::V311;

pub(crate) struct H {
    pub b: Broker,
    pub now: u64,
    next_key: u32,
    closed: HashSet<ConnId>,
    pub versions: std::collections::HashMap<ConnId, ProtocolVersion>,
    /// Packets read past the one a helper was waiting for.
    pending: std::collections::HashMap<ConnId, Vec<Got>>,
}

/// An owned view of a decoded packet, enough for assertions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Got {
    Connack {
        sp: bool,
        code: u8,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
        dup: bool,
        pid: u16,
    },
    Puback(u16),
    Pubrec(u16),
    Pubrel(u16),
    Pubcomp(u16),
    Suback(u16, Vec<u8>),
    Unsuback(u16),
    Pingresp,
    Disconnect(u8),
    Other(&'static str),
}

/// (topic, payload, qos, retain, dup, packet id)
pub(crate) type PubView<'a> = (&'a str, &'a [u8], u8, bool, bool, u16);

pub(crate) fn pub_of(g: &Got) -> Option<PubView<'_>> {
    match g {
        Got::Publish {
            topic,
            payload,
            qos,
            retain,
            dup,
            pid,
        } => Some((topic, payload, *qos, *retain, *dup, *pid)),
        _ => None,
    }
}

impl H {
    pub(crate) fn new() -> H {
        H::with(BrokerConfig {
            sys_interval: 0,
            ..BrokerConfig::default()
        })
    }
    pub(crate) fn with(cfg: BrokerConfig) -> H {
        H {
            b: Broker::new(cfg, 1_000_000),
            now: 1_000_000,
            next_key: 0,
            closed: HashSet::new(),
            versions: Default::default(),
            pending: Default::default(),
        }
    }
    pub(crate) fn open(&mut self) -> ConnId {
        let id = ConnId {
            key: self.next_key,
            gen: 7,
        };
        self.next_key += 1;
        self.b.open(id, 0, "127.0.0.1:5000", self.now);
        id
    }
    pub(crate) fn raw(&mut self, id: ConnId, bytes: &[u8]) {
        let used = self.b.receive(id, bytes, self.now);
        assert!(used <= bytes.len());
        self.settle();
    }
    pub(crate) fn send(&mut self, id: ConnId, p: Packet<'_>) {
        let v = self.versions.get(&id).copied().unwrap_or(V3);
        let mut buf = Vec::new();
        encode(&p, v, &mut buf);
        let used = self.b.receive(id, &buf, self.now);
        assert_eq!(used, buf.len(), "whole packet consumed");
        self.settle();
    }
    pub(crate) fn settle(&mut self) {
        let mut ids = Vec::new();
        self.b.take_closing(&mut ids);
        for id in ids {
            self.closed.insert(id);
        }
    }
    pub(crate) fn is_closed(&self, id: ConnId) -> bool {
        self.closed.contains(&id)
    }
    /// Simulate the network layer finishing the close.
    pub(crate) fn release_closed(&mut self) {
        for id in self.closed.clone() {
            self.b.release(id, self.now);
        }
    }
    pub(crate) fn recv(&mut self, id: ConnId) -> Vec<Got> {
        let v = self.versions.get(&id).copied().unwrap_or(V3);
        let data = self.b.outbox(id).to_vec();
        self.b.outbox_written(id, data.len(), self.now);
        self.settle();
        let mut out = self.pending.remove(&id).unwrap_or_default();
        let mut off = 0;
        while off < data.len() {
            match decode(&data[off..], v, 0) {
                Ok(Decoded::Packet(p, n)) => {
                    off += n;
                    out.push(match p {
                        Packet::Connack(c) => Got::Connack {
                            sp: c.session_present,
                            code: c.code,
                        },
                        Packet::Publish(p) => Got::Publish {
                            topic: p.topic.to_string(),
                            payload: p.payload.to_vec(),
                            qos: p.qos as u8,
                            retain: p.retain,
                            dup: p.dup,
                            pid: p.packet_id,
                        },
                        Packet::Puback(a) => Got::Puback(a.packet_id),
                        Packet::Pubrec(a) => Got::Pubrec(a.packet_id),
                        Packet::Pubrel(a) => Got::Pubrel(a.packet_id),
                        Packet::Pubcomp(a) => Got::Pubcomp(a.packet_id),
                        Packet::Suback(s) => Got::Suback(s.packet_id, s.codes.to_vec()),
                        Packet::Unsuback(u) => Got::Unsuback(u.packet_id),
                        Packet::Pingresp => Got::Pingresp,
                        Packet::Disconnect(d) => Got::Disconnect(d.reason),
                        other => Got::Other(other.name()),
                    });
                }
                other => panic!("outbox holds undecodable bytes: {:?}", other.err()),
            }
        }
        out
    }
    pub(crate) fn advance(&mut self, ms: u64) {
        // Step like the event loop would, a second at a time.
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + 500).min(end);
            self.b.tick(self.now);
        }
        self.settle();
    }

    pub(crate) fn connect_full(
        &mut self,
        client_id: &str,
        clean: bool,
        keep_alive: u16,
        will: Option<Will<'_>>,
        version: ProtocolVersion,
    ) -> (ConnId, Got) {
        let id = self.open();
        self.versions.insert(id, version);
        self.send(
            id,
            Packet::Connect(Connect {
                version,
                clean_start: clean,
                keep_alive,
                properties: Properties::EMPTY,
                client_id,
                will,
                username: None,
                password: None,
            }),
        );
        let mut got = self.recv(id);
        if got.is_empty() {
            return (id, Got::Other("nothing"));
        }
        let first = got.remove(0);
        self.pending.insert(id, got);
        (id, first)
    }
    pub(crate) fn connect(&mut self, client_id: &str, clean: bool) -> ConnId {
        let (id, ack) = self.connect_full(client_id, clean, 60, None, V3);
        assert!(matches!(ack, Got::Connack { code: 0, .. }), "{:?}", ack);
        id
    }
    pub(crate) fn subscribe(&mut self, id: ConnId, filter: &str, qos: u8) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(filter.len() as u16).to_be_bytes());
        raw.extend_from_slice(filter.as_bytes());
        raw.push(qos);
        self.send(
            id,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::EMPTY,
                filters: SubscribeFilters::from_raw(&raw),
            }),
        );
        let mut got = self.recv(id);
        match got.first().cloned() {
            Some(Got::Suback(1, codes)) => {
                got.remove(0);
                self.pending.insert(id, got);
                codes
            }
            other => panic!("expected SUBACK, got {:?}", other),
        }
    }
    pub(crate) fn publish(
        &mut self,
        id: ConnId,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        pid: u16,
    ) {
        self.send(
            id,
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::from_u8(qos).unwrap(),
                retain,
                topic,
                packet_id: pid,
                properties: Properties::EMPTY,
                payload,
            }),
        );
    }
    pub(crate) fn ack(&mut self, id: ConnId, kind: fn(Ack<'static>) -> Packet<'static>, pid: u16) {
        self.send(
            id,
            kind(Ack {
                packet_id: pid,
                reason: 0,
                properties: Properties::EMPTY,
            }),
        );
    }
    pub(crate) fn disconnect(&mut self, id: ConnId) {
        self.send(
            id,
            Packet::Disconnect(Disconnect {
                reason: 0,
                properties: Properties::EMPTY,
            }),
        );
    }
}

pub(crate) fn will<'a>(topic: &'a str, payload: &'a [u8]) -> Will<'a> {
    Will {
        topic,
        payload,
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::EMPTY,
    }
}
