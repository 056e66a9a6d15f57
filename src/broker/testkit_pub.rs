//! A scenario driver over the core test kit for tests outside `broker`
//! (persistence): named clients, publish with handshakes completed, and
//! reconnect-and-collect.

use std::collections::HashMap;

use super::testkit::*;

pub(crate) struct Scenario {
    h: H,
    clients: HashMap<String, ConnId>,
    next_pid: u16,
}

impl Scenario {
    pub(crate) fn new() -> Scenario {
        Scenario {
            h: H::new(),
            clients: HashMap::new(),
            next_pid: 1,
        }
    }
    pub(crate) fn broker(&self) -> &Broker {
        &self.h.b
    }
    pub(crate) fn broker_mut(&mut self) -> &mut Broker {
        &mut self.h.b
    }
    pub(crate) fn now(&self) -> u64 {
        self.h.now
    }
    pub(crate) fn import(&mut self, state: super::journal::State) {
        let now = self.h.now;
        self.h.b.import(state, now);
    }
    /// Subscribe with a persistent session, then go offline.
    pub(crate) fn persistent_subscriber(&mut self, id: &str, filter: &str, qos: u8) {
        let c = self.h.connect(id, false);
        self.h.subscribe(c, filter, qos);
        self.h.disconnect(c);
        self.h.release_closed();
    }
    /// Subscribe with a persistent session and stay connected.
    pub(crate) fn online_persistent_subscriber(
        &mut self,
        id: &str,
        filter: &str,
        qos: u8,
    ) -> ConnId {
        let c = self.h.connect(id, false);
        self.h.subscribe(c, filter, qos);
        c
    }
    pub(crate) fn publish(
        &mut self,
        client: &str,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
    ) {
        let c = match self.clients.get(client) {
            Some(c) => *c,
            None => {
                let c = self.h.connect(client, true);
                self.clients.insert(client.to_string(), c);
                c
            }
        };
        let pid = if qos > 0 { self.next_pid } else { 0 };
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        self.h.publish(c, topic, payload, qos, retain, pid);
        if qos == 2 {
            self.h.ack(c, Packet::Pubrel, pid);
        }
        self.h.recv(c);
    }
    /// Read and acknowledge everything a connection was sent.
    pub(crate) fn ack_all(&mut self, c: ConnId) {
        for g in self.h.recv(c) {
            if let Some((_, _, qos, _, _, pid)) = pub_of(&g) {
                match qos {
                    1 => self.h.ack(c, Packet::Puback, pid),
                    2 => {
                        self.h.ack(c, Packet::Pubrec, pid);
                        self.h.recv(c);
                        self.h.ack(c, Packet::Pubcomp, pid);
                    }
                    _ => {}
                }
            }
        }
    }
    /// Reconnect a persistent session and return the payloads it receives.
    pub(crate) fn reconnect_and_collect(&mut self, id: &str) -> Vec<Vec<u8>> {
        let (c, _) = self.h.connect_full(id, false, 60, None, V3);
        let mut out = Vec::new();
        for _ in 0..100 {
            let got = self.h.recv(c);
            if got.is_empty() {
                break;
            }
            for g in got {
                if let Some((_, payload, qos, _, _, pid)) = pub_of(&g) {
                    out.push(payload.to_vec());
                    match qos {
                        1 => self.h.ack(c, Packet::Puback, pid),
                        2 => {
                            self.h.ack(c, Packet::Pubrec, pid);
                            self.h.ack(c, Packet::Pubcomp, pid);
                        }
                        _ => {}
                    }
                }
            }
        }
        out
    }
    pub(crate) fn retained_payload(&self, topic: &str) -> Option<Vec<u8>> {
        self.h
            .b
            .router
            .retained
            .get(topic)
            .map(|m| m.payload().to_vec())
    }
}
