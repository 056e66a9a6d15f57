//! PUBLISH in both directions: accepting a client's message, routing it
//! through the subscription tree, delivering it under each subscriber's QoS,
//! in-flight window and queue limits, and the PUBACK / PUBREC / PUBREL /
//! PUBCOMP handshakes.
//!
//! The hot path: a QoS 0 message to online subscribers is encoded straight
//! from the read buffer into their outboxes; a `Message` is allocated once
//! (and shared through `Rc`) only when something must outlive the buffer.
//!
//! Must not: touch sockets, or know how bytes leave the outbox.

use crate::broker::Stored;
use crate::protocol::ReasonCode;

use smallvec::SmallVec;

use crate::auth::acl::Access;
use crate::protocol::encode;
use crate::protocol::packet_type;
use crate::protocol::{Property, Publish, QoS};
use crate::topic;

use super::events::{Event, PublishInfo};
use super::journal::JournalOp;
use super::session::{
    filter_forwarded_props, too_large_for, Incoming, Inflight, Message, OutState, Outgoing,
    SubOptions, NO_GROUP,
};
use super::{Broker, Client, CloseReason, ConnId, Hit, Stats, Target, OUTBOX_SOFT_LIMIT};

/// A message as seen at delivery time: borrowed from the read buffer or
/// from a stored `Message`.
#[derive(Clone, Copy)]
pub(super) struct MsgView<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub props: &'a [u8],
    pub expiry_at: Option<u64>,
}

impl<'a> MsgView<'a> {
    pub(super) fn of(m: &'a Message) -> MsgView<'a> {
        MsgView {
            topic: m.topic(),
            payload: m.payload(),
            props: m.props(),
            expiry_at: m.expiry_at,
        }
    }
}

/// How one message goes to one session.
pub(super) struct Delivery<'a> {
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: &'a [u32],
    /// The shared subscription group it was chosen through, or NO_GROUP.
    pub group: u32,
    /// A QoS 0 retained copy for a new subscription whose client was
    /// within its queue limits when the subscription's retained matches
    /// started: it waits in the queue whatever `max_queued_messages` says.
    /// Mosquitto does the same: it admits a QoS 0 copy while the client's
    /// unwritten packets are below `max_queued_messages`, and a SUBSCRIBE's
    /// retained matches are all admitted before any of them is written. A
    /// client that never reads is over its limits after one such burst, so
    /// subscribing again adds nothing. QoS 1/2 retained copies are bounded
    /// like any other message.
    pub unbounded: bool,
}

/// An unacknowledged PUBLISH again: DUP set, its own packet id.
fn resend_publish(c: &mut Client, stats: &mut Stats, f: &Inflight, now: u64) {
    let view = MsgView::of(&f.out.msg);
    write_publish(
        c,
        stats,
        &view,
        f.out.qos,
        f.out.retain,
        true,
        f.packet_id,
        &f.out.sub_ids,
        now,
    );
}

/// Encode one PUBLISH into a client's outbox. Returns false (and writes
/// nothing) when it exceeds the client's Maximum Packet Size.
#[allow(clippy::too_many_arguments)]
fn write_publish(
    c: &mut Client,
    stats: &mut Stats,
    m: &MsgView<'_>,
    qos: QoS,
    retain: bool,
    dup: bool,
    packet_id: u16,
    sub_ids: &[u32],
    now: u64,
) -> bool {
    let v5 = c.version.is_v5();
    let mut extra: SmallVec<[Property<'_>; 4]> = SmallVec::new();
    if v5 {
        if let Some(t) = m.expiry_at {
            let left = t.saturating_sub(now).div_ceil(1000);
            extra.push(Property::MessageExpiryInterval(
                u32::try_from(left).unwrap_or(u32::MAX),
            ));
        }
        for &id in sub_ids {
            if id != 0 {
                extra.push(Property::SubscriptionIdentifier(id));
            }
        }
    }
    // Outbound topic aliases (beyond Mosquitto 2.0): a topic seen before on
    // this connection goes as an empty topic plus its alias.
    // A mount point is not seen by the client.
    let mut topic = match &c.mount {
        Some(mp) => m.topic.strip_prefix(&**mp).unwrap_or(m.topic),
        None => m.topic,
    };
    let mut new_alias = false;
    if v5 && c.topic_alias_max_out > 0 {
        let al = c.aliases.get_or_insert_with(Default::default);
        if let Some(&a) = al.outbound.get(m.topic) {
            topic = "";
            extra.push(Property::TopicAlias(a));
        } else if al.outbound.len() < usize::from(c.topic_alias_max_out) {
            let a = al.outbound.len() as u16 + 1;
            al.outbound.insert(m.topic.into(), a);
            extra.push(Property::TopicAlias(a));
            new_alias = true;
        }
    }
    let start = c.outbox.buf.len();
    let props: &[u8] = if v5 { m.props } else { &[] };
    let n = encode::encode_publish(
        &mut c.outbox.buf,
        c.version,
        dup,
        qos,
        retain,
        topic,
        packet_id,
        props,
        &extra,
        m.payload,
    );
    if too_large_for(c.max_packet_out, n) {
        // [MQTT-3.1.2-25]: too large for the client; it is dropped.
        c.outbox.buf.truncate(start);
        if new_alias {
            if let Some(al) = c.aliases.as_mut() {
                al.outbound.remove(m.topic);
            }
        }
        return false;
    }
    stats.msgs_sent += 1;
    stats.pub_msgs_sent += 1;
    stats.pub_bytes_sent += m.payload.len() as u64;
    stats.bytes_sent += n as u64;
    true
}

fn write_ack(c: &mut Client, stats: &mut Stats, kind: u8, packet_id: u16, code: u8) {
    let start = c.outbox.buf.len();
    encode::encode_ack(&mut c.outbox.buf, kind, c.version, packet_id, code);
    stats.msgs_sent += 1;
    stats.bytes_sent += (c.outbox.buf.len() - start) as u64;
}

impl Broker {
    /// A PUBLISH from a client: its topic (alias, depth, mount point), the
    /// listener's limits, the QoS 2 exchange, the memory limit, then the
    /// checks and routing of `check_publish` / `accept_publish`, and the ack.
    pub(super) fn handle_publish(&mut self, id: ConnId, p: &Publish<'_>, now: u64) {
        let Some(c) = self.conns.get(id) else {
            return;
        };
        let origin = c.session.unwrap_or(usize::MAX);
        let Some(topic) = self.inbound_topic(id, p, now) else {
            return;
        };
        let topic: &str = &topic;
        if !self.within_listener_limits(id, p, now) {
            return;
        }
        if p.qos == QoS::ExactlyOnce && !self.admit_qos2(id, origin, p, topic, now) {
            return;
        }
        self.stats.pub_msgs_received += 1;
        self.stats.pub_bytes_received += p.payload.len() as u64;
        if self.over_memory_limit(id, p, now) {
            return;
        }
        let code = match self.check_publish(id, origin, p, topic) {
            Some(refused) => refused,
            // `$CONTROL/...` is for broker plugins: answered, never routed
            // (Mosquitto acknowledges it even with no plugin to take it).
            None if topic.starts_with("$CONTROL/") => {
                if topic == crate::auth::dynsec::CONTROL_TOPIC {
                    self.dynsec_control(origin, p.payload, now)
                        .unwrap_or(ReasonCode::Success)
                } else {
                    ReasonCode::Success
                }
            }
            None => self.accept_publish(origin, p, topic, now),
        };
        self.ack_publish(id, p.qos, p.packet_id, code);
    }

    /// The topic a PUBLISH is for: its Topic Alias resolved or recorded
    /// (v5), no deeper than the limit, under the listener's mount point.
    /// None when the connection was closed for a fault.
    fn inbound_topic<'p>(
        &mut self,
        id: ConnId,
        p: &Publish<'p>,
        now: u64,
    ) -> Option<std::borrow::Cow<'p, str>> {
        use std::borrow::Cow;
        let c = self.conns.get_mut(id)?;
        let max_alias = self
            .cfg
            .listeners
            .get(c.listener)
            .map_or(0, |l| l.max_topic_alias);
        let mut topic: Cow<'p, str> = Cow::Borrowed(p.topic);
        if let Some(alias) = p.properties.topic_alias().filter(|_| c.version.is_v5()) {
            if alias == 0 || alias > max_alias {
                self.close(
                    id,
                    CloseReason::Protocol(ReasonCode::TopicAliasInvalid),
                    now,
                );
                return None;
            }
            let slot = usize::from(alias - 1);
            let al = c.aliases.get_or_insert_with(Default::default);
            if al.inbound.len() <= slot {
                al.inbound.resize_with(slot + 1, || None);
            }
            if p.topic.is_empty() {
                match &al.inbound[slot] {
                    Some(t) => topic = Cow::Owned(t.to_string()),
                    None => {
                        self.close(id, CloseReason::Protocol(ReasonCode::ProtocolError), now);
                        return None;
                    }
                }
            } else if al.inbound[slot].as_deref() != Some(p.topic) {
                al.inbound[slot] = Some(p.topic.into());
            }
        }
        if topic::too_deep(&topic) {
            self.close(id, CloseReason::Protocol(ReasonCode::ProtocolError), now);
            return None;
        }
        match self.conns.get(id).and_then(|c| c.mount.as_deref()) {
            Some(m) => Some(Cow::Owned(format!("{}{}", m, topic))),
            None => Some(topic),
        }
    }

    /// Mosquitto disconnects a client publishing above `max_qos`, or
    /// retained when retain is not available. A Subscription Identifier
    /// from a client [MQTT-3.3.4-6] is ignored, as Mosquitto ignores it.
    fn within_listener_limits(&mut self, id: ConnId, p: &Publish<'_>, now: u64) -> bool {
        let max_qos = self
            .conns
            .get(id)
            .and_then(|c| self.cfg.listeners.get(c.listener))
            .map_or(QoS::ExactlyOnce, |l| l.max_qos);
        let refused = if p.qos > max_qos {
            ReasonCode::QosNotSupported
        } else if p.retain && !self.cfg.retain_available {
            ReasonCode::RetainNotSupported
        } else {
            return true;
        };
        self.close(id, CloseReason::Protocol(refused), now);
        false
    }

    /// QoS 2: a packet id not yet released is a re-send, answered again
    /// (false: nothing more to do). The same id with a different message
    /// replaces the held one (Mosquitto's "Reused message ID"). A v5 client
    /// past the Receive Maximum is disconnected.
    fn admit_qos2(
        &mut self,
        id: ConnId,
        origin: usize,
        p: &Publish<'_>,
        topic: &str,
        now: u64,
    ) -> bool {
        let v5 = self.conns.get(id).is_some_and(|c| c.version.is_v5());
        let Some(s) = self.sessions.get_mut(origin) else {
            return false;
        };
        if let Some(i) = s.find_incoming(p.packet_id) {
            let same = s.incoming_qos2[i].msg.as_ref().is_none_or(|m| {
                m.topic() == topic && *m.payload() == *p.payload && m.retain == p.retain
            });
            if same {
                if let Some(c) = self.conns.writer(id) {
                    write_ack(c, &mut self.stats, packet_type::PUBREC, p.packet_id, 0);
                }
                return false;
            }
            (self.events)(&Event::ReusedPacketId {
                client_id: &s.client_id,
                packet_id: p.packet_id,
            });
            s.incoming_qos2.remove(i);
            if s.persisted {
                self.journal.push(|| JournalOp::In2Done {
                    client_id: s.client_id.clone(),
                    packet_id: p.packet_id,
                });
            }
        } else if v5
            && self.cfg.max_inflight_messages > 0
            && s.incoming_qos2.len() >= usize::from(self.cfg.max_inflight_messages)
        {
            self.close(
                id,
                CloseReason::Protocol(ReasonCode::ReceiveMaximumExceeded),
                now,
            );
            return false;
        }
        true
    }

    /// memory_limit: Mosquitto's allocator fails past the limit and the
    /// client is dropped; midge refuses the publish where it arrives (v5:
    /// 0x97; a 3.1.x QoS 1/2 publisher is disconnected). True if refused.
    fn over_memory_limit(&mut self, id: ConnId, p: &Publish<'_>, now: u64) -> bool {
        if self.cfg.memory_limit == 0 || (self.cfg.memory_used)() as u64 <= self.cfg.memory_limit {
            return false;
        }
        self.stats.pub_msgs_dropped += 1;
        if self.conns.get(id).is_some_and(|c| c.version.is_v5()) {
            self.ack_publish(id, p.qos, p.packet_id, ReasonCode::QuotaExceeded);
        } else if p.qos != QoS::AtMostOnce {
            (self.events)(&Event::OutOfMemory);
            self.close(id, CloseReason::Protocol(ReasonCode::QuotaExceeded), now);
        }
        true
    }

    /// Why a PUBLISH that arrived cannot be taken (too large, not
    /// authorised), or None when it can.
    fn check_publish(
        &mut self,
        id: ConnId,
        origin: usize,
        p: &Publish<'_>,
        topic: &str,
    ) -> Option<ReasonCode> {
        let too_big = self.cfg.message_size_limit > 0
            && p.payload.len() > self.cfg.message_size_limit as usize;
        let denied = !too_big
            && (super::dollar_write_denied(topic)
                || !self.acl_allows(origin, topic, Access::Write));
        if !too_big && !denied {
            return None;
        }
        let info = PublishInfo {
            client_id: self.conns.get(id).map(|c| &*c.client_id).unwrap_or(""),
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            packet_id: p.packet_id,
            topic,
            payload_len: p.payload.len(),
        };
        if too_big {
            (self.events)(&Event::PublishTooLarge(info));
            Some(ReasonCode::PacketTooLarge)
        } else {
            (self.events)(&Event::PublishDenied(info));
            Some(ReasonCode::NotAuthorized)
        }
    }

    /// Take an accepted PUBLISH: QoS 0 and 1 are routed now, QoS 2 waits
    /// for PUBREL. Returns the acknowledgement's reason code.
    fn accept_publish(
        &mut self,
        origin: usize,
        p: &Publish<'_>,
        topic: &str,
        now: u64,
    ) -> ReasonCode {
        let v5 = self
            .sessions
            .get(origin)
            .and_then(|s| s.conn)
            .and_then(|c| self.conns.get(c))
            .is_some_and(|c| c.version.is_v5());
        let mut props_buf = Vec::new();
        let props: &[u8] = if v5 && !p.properties.is_empty() {
            filter_forwarded_props(p.properties.raw(), &mut props_buf);
            &props_buf
        } else {
            &[]
        };
        let expiry_at = if v5 {
            p.properties
                .message_expiry_interval()
                .map(|s| now + u64::from(s) * 1000)
        } else {
            None
        };
        if p.qos == QoS::ExactlyOnce {
            let view = MsgView {
                topic,
                payload: p.payload,
                props,
                expiry_at,
            };
            let mut m = make_message(&view, p.qos, p.retain);
            if p.retain {
                if let Some(r) = m.stored_mut() {
                    r.source = self.retain_source(origin);
                }
            }
            if let Some(s) = self.sessions.get_mut(origin) {
                if s.persisted {
                    self.journal.push(|| JournalOp::In2 {
                        client_id: s.client_id.clone(),
                        packet_id: p.packet_id,
                        msg: Some(m.clone()),
                    });
                }
                s.incoming_qos2.push(Incoming {
                    packet_id: p.packet_id,
                    msg: Some(m),
                });
            }
            return ReasonCode::Success;
        }
        let matched = self.route(
            origin, topic, p.payload, props, expiry_at, p.qos, p.retain, None, now,
        );
        if matched || p.qos == QoS::AtMostOnce {
            ReasonCode::Success
        } else {
            ReasonCode::NoMatchingSubscribers
        }
    }

    /// Answer a client's PUBLISH: PUBACK for QoS 1, PUBREC for QoS 2
    /// (the reason code reaches v5 clients only), nothing for QoS 0.
    fn ack_publish(&mut self, id: ConnId, qos: QoS, packet_id: u16, code: ReasonCode) {
        let kind = match qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => packet_type::PUBACK,
            QoS::ExactlyOnce => packet_type::PUBREC,
        };
        if let Some(c) = self.conns.writer(id) {
            let code = if c.version.is_v5() { code.code() } else { 0 };
            write_ack(c, &mut self.stats, kind, packet_id, code);
        }
    }

    /// Route a message to every matching subscriber and, if retained, into
    /// the retained store. `origin` is the publishing session (usize::MAX for
    /// the broker itself); `stored` is the message if it already exists.
    /// Returns whether any subscription matched the topic (Mosquitto's test
    /// for "no matching subscribers", made before ACLs and No Local).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn route(
        &mut self,
        origin: usize,
        topic: &str,
        payload: &[u8],
        props: &[u8],
        expiry_at: Option<u64>,
        qos: QoS,
        retain: bool,
        stored: Option<Message>,
        now: u64,
    ) -> bool {
        let mut stored = stored;
        let stored = &mut stored;
        let view = MsgView {
            topic,
            payload,
            props,
            expiry_at,
        };
        if retain {
            self.store_retained(origin, &view, qos, stored);
        }
        let mut targets = std::mem::take(&mut self.targets);
        let matched = self.collect_targets(origin, topic, &mut targets);
        for t in targets.iter() {
            if !self.acl_allows(t.session, topic, Access::Read) {
                continue;
            }
            let out_qos = if self.cfg.upgrade_outgoing_qos {
                t.qos
            } else {
                qos.min(t.qos)
            };
            let d = Delivery {
                qos: out_qos,
                retain: retain && t.retain_as_published,
                sub_ids: &t.sub_ids,
                group: NO_GROUP,
                unbounded: false,
            };
            self.deliver(t.session, &view, (qos, retain), stored, &d, now);
        }
        self.targets = targets;
        if !self.shared_hits.is_empty() {
            let hits = std::mem::take(&mut self.shared_hits);
            for &g in hits.iter() {
                self.deliver_shared(g, &view, (qos, retain), stored, now);
            }
            self.shared_hits = hits;
        }
        matched
    }

    /// A retained PUBLISH replaces (or, empty, removes) the topic's
    /// retained message; `stored` becomes the message if it was not yet.
    fn store_retained(
        &mut self,
        origin: usize,
        view: &MsgView<'_>,
        qos: QoS,
        stored: &mut Option<Message>,
    ) {
        let topic = view.topic;
        if view.payload.is_empty() {
            if self.router.retained.remove(topic).is_some() && !topic.starts_with("$SYS") {
                self.journal.push(|| JournalOp::Unretain(topic.into()));
            }
            return;
        }
        if stored.is_none() {
            let mut m = make_message(view, qos, true);
            if let Some(r) = m.stored_mut() {
                r.source = self.retain_source(origin);
            }
            *stored = Some(m);
        }
        let Some(m) = stored.clone() else {
            return;
        };
        if !topic.starts_with("$SYS") {
            self.journal.push(|| JournalOp::Retain(m.clone()));
        }
        self.router.retain(m);
    }

    /// The sessions a message on `topic` goes to (`targets`, in the
    /// subscription tree's order) and the shared groups it hits
    /// (`self.shared_hits`). Returns whether any subscription matched.
    fn collect_targets(&mut self, origin: usize, topic: &str, targets: &mut Vec<Target>) -> bool {
        self.publish_seq += 1;
        let seq = self.publish_seq;
        targets.clear();
        let mut matched = false;
        let sessions = &mut self.sessions;
        let shared_hits = &mut self.shared_hits;
        shared_hits.clear();
        self.router.for_each_match(topic, |hit| {
            matched = true;
            let (key, sub) = match hit {
                Hit::Group(g) => {
                    shared_hits.push(g);
                    return;
                }
                Hit::Session(key, sub) => (key, sub),
            };
            if sub.no_local && key == origin {
                return;
            }
            let Some(s) = sessions.get_mut(key) else {
                return;
            };
            // Overlapping subscriptions of a 3.1.x session are merged into
            // one copy at the highest QoS [MQTT-3.3.5-1]. A v5 session gets
            // one copy per subscription, each with its own QoS, retain flag
            // and identifier, in the order Mosquitto sends them (v5 3.3.4
            // allows either).
            let merge = if s.v5 {
                None
            } else if s.match_seq == seq {
                // Rare (a session matched twice): a short scan.
                let first = s.match_idx as usize;
                targets.get(first..).and_then(|rest| {
                    rest.iter()
                        .position(|t| t.session == key)
                        .map(|i| first + i)
                })
            } else {
                s.match_seq = seq;
                s.match_idx = targets.len() as u32;
                None
            };
            match merge.and_then(|i| targets.get_mut(i)) {
                Some(t) => {
                    t.qos = t.qos.max(sub.qos);
                    if sub.sub_id != 0 {
                        t.sub_ids.push(sub.sub_id);
                    }
                }
                None => {
                    let mut sub_ids = SmallVec::new();
                    if sub.sub_id != 0 {
                        sub_ids.push(sub.sub_id);
                    }
                    targets.push(Target {
                        session: key,
                        qos: sub.qos,
                        retain_as_published: sub.retain_as_published,
                        sub_ids,
                    });
                }
            }
        });
        matched
    }

    /// Deliver to one session: straight to the socket when it can go now,
    /// into the session queue when it must wait, dropped past the limits.
    pub(super) fn deliver(
        &mut self,
        skey: usize,
        view: &MsgView<'_>,
        published: (QoS, bool),
        stored: &mut Option<Message>,
        d: &Delivery<'_>,
        now: u64,
    ) {
        let Some(s) = self.sessions.get(skey) else {
            return;
        };
        match s.conn.and_then(|id| self.conns.get(id).map(|c| (id, c))) {
            Some((id, c)) => {
                let free = c.outbox.len() < OUTBOX_SOFT_LIMIT && s.queue.is_empty();
                if free && d.qos == QoS::AtMostOnce {
                    if let Some(c) = self.conns.writer(id) {
                        write_publish(
                            c,
                            &mut self.stats,
                            view,
                            d.qos,
                            d.retain,
                            false,
                            0,
                            d.sub_ids,
                            now,
                        );
                    }
                    return;
                }
                let window = inflight_window(self.cfg.max_inflight_messages, c.receive_max);
                let room = || {
                    s.inflight.len() < window && s.inflight_bytes_below(self.cfg.max_inflight_bytes)
                };
                if free && room() {
                    self.send_inflight(skey, id, view, published, stored, d, now);
                    return;
                }
            }
            None if d.qos == QoS::AtMostOnce && !self.cfg.queue_qos0_messages => return,
            None => {}
        }
        self.enqueue(skey, view, published, stored, d);
    }

    /// Send a QoS 1/2 message now and hold it in flight until acknowledged.
    /// Its packet id is used up even when it is too large to send.
    #[allow(clippy::too_many_arguments)]
    fn send_inflight(
        &mut self,
        skey: usize,
        id: ConnId,
        view: &MsgView<'_>,
        (pub_qos, pub_retain): (QoS, bool),
        stored: &mut Option<Message>,
        d: &Delivery<'_>,
        now: u64,
    ) {
        let (qos, retain, sub_ids) = (d.qos, d.retain, d.sub_ids);
        let Some(s) = self.sessions.get_mut(skey) else {
            return;
        };
        let packet_id = s.alloc_packet_id();
        let Some(c) = self.conns.writer(id) else {
            return;
        };
        let sent = write_publish(
            c,
            &mut self.stats,
            view,
            qos,
            retain,
            false,
            packet_id,
            sub_ids,
            now,
        );
        if !sent {
            return;
        }
        let out = session_copy(s, &mut self.journal, view, (pub_qos, pub_retain), stored, d);
        if qos == QoS::ExactlyOnce && s.persisted {
            self.journal.push(|| JournalOp::Sent {
                client_id: s.client_id.clone(),
                msg: out.msg.clone(),
                packet_id,
            });
        }
        s.inflight.push_back(Inflight {
            packet_id,
            state: if qos == QoS::AtLeastOnce {
                OutState::AwaitPuback
            } else {
                OutState::AwaitPubrec
            },
            out,
            held: false,
        });
    }

    /// Queue a message for later, within `max_queued_messages` /
    /// `max_queued_bytes` (dropped past them, noticed once per episode as
    /// Mosquitto does). A connected client that is not keeping up queues
    /// QoS 0 too, in order with the rest.
    fn enqueue(
        &mut self,
        skey: usize,
        view: &MsgView<'_>,
        (pub_qos, pub_retain): (QoS, bool),
        stored: &mut Option<Message>,
        d: &Delivery<'_>,
    ) {
        let Some(s) = self.sessions.get_mut(skey) else {
            return;
        };
        let (max_msgs, max_bytes) = (self.cfg.max_queued_messages, self.cfg.max_queued_bytes);
        if !d.unbounded && !s.queue_has_room(max_msgs, max_bytes, view.payload.len()) {
            if !s.dropping {
                s.dropping = true;
                (self.events)(&Event::DroppingOutgoing {
                    client_id: &s.client_id,
                });
            }
            self.stats.pub_msgs_dropped += 1;
            return;
        }
        let out = session_copy(s, &mut self.journal, view, (pub_qos, pub_retain), stored, d);
        s.push_queue(out);
    }

    /// Move queued messages into the in-flight window while it has room.
    pub(super) fn pump(&mut self, skey: usize, now: u64) {
        let max_inflight = self.cfg.max_inflight_messages;
        let max_inflight_bytes = self.cfg.max_inflight_bytes;
        let Some(s) = self.sessions.get_mut(skey) else {
            return;
        };
        let Some(id) = s.conn else { return };
        let Some(c) = self.conns.get(id) else { return };
        if c.state != super::State::Connected {
            return;
        }
        let window = inflight_window(max_inflight, c.receive_max);
        // Messages held back at reconnect go first, under their own ids.
        while s.held > 0 && s.inflight.len() - s.held < window {
            let Some(i) = s.inflight.iter().position(|f| f.held) else {
                break;
            };
            let Some(c) = self.conns.writer(id) else {
                return;
            };
            if c.outbox.len() >= OUTBOX_SOFT_LIMIT {
                return;
            }
            if s.inflight[i].out.msg.expired(now) {
                // As at reconnect: an expired message is not re-sent.
                s.finish_inflight(i);
                continue;
            }
            s.held -= 1;
            let f = &mut s.inflight[i];
            f.held = false;
            resend_publish(c, &mut self.stats, f, now);
        }
        while let Some(front) = s.queue.front() {
            if front.qos != QoS::AtMostOnce
                && (s.inflight.len() >= window || !s.inflight_bytes_below(max_inflight_bytes))
            {
                break;
            }
            let Some(c) = self.conns.writer(id) else {
                return;
            };
            if c.outbox.len() >= OUTBOX_SOFT_LIMIT {
                break;
            }
            let Some(out) = s.pop_queue() else { break };
            if leaves_queue_unsent(s, &self.security, &mut self.journal, &out, now) {
                continue;
            }
            let view = MsgView::of(&out.msg);
            if out.qos == QoS::AtMostOnce {
                write_publish(
                    c,
                    &mut self.stats,
                    &view,
                    out.qos,
                    out.retain,
                    false,
                    0,
                    &out.sub_ids,
                    now,
                );
                continue;
            }
            let packet_id = s.alloc_packet_id();
            if write_publish(
                c,
                &mut self.stats,
                &view,
                out.qos,
                out.retain,
                false,
                packet_id,
                &out.sub_ids,
                now,
            ) {
                let state = if out.qos == QoS::AtLeastOnce {
                    OutState::AwaitPuback
                } else {
                    if s.persisted {
                        self.journal.push(|| JournalOp::Sent {
                            client_id: s.client_id.clone(),
                            msg: out.msg.clone(),
                            packet_id,
                        });
                    }
                    OutState::AwaitPubrec
                };
                s.inflight.push_back(Inflight {
                    packet_id,
                    state,
                    out,
                    held: false,
                });
            }
        }
    }

    /// On reconnect to a kept session: re-send every unacknowledged PUBLISH
    /// with DUP set, and PUBREL for those already at PUBREC.
    pub(super) fn resend_inflight(&mut self, skey: usize, now: u64) {
        let Some(s) = self.sessions.get_mut(skey) else {
            return;
        };
        let Some(id) = s.conn else { return };
        let Some(c) = self.conns.writer(id) else {
            return;
        };
        s.inflight
            .retain(|f| f.state == OutState::AwaitPubcomp || !f.out.msg.expired(now));
        // The new connection may allow fewer in flight [MQTT-3.3.4-9]: the
        // newest beyond its window are held and re-sent as acks make room.
        s.hold_beyond(inflight_window(
            self.cfg.max_inflight_messages,
            c.receive_max,
        ));
        for f in s.inflight.iter().filter(|f| !f.held) {
            match f.state {
                OutState::AwaitPuback | OutState::AwaitPubrec => {
                    resend_publish(c, &mut self.stats, f, now);
                }
                OutState::AwaitPubcomp => {
                    write_ack(c, &mut self.stats, packet_type::PUBREL, f.packet_id, 0);
                }
            }
        }
    }

    pub(super) fn handle_puback(&mut self, id: ConnId, packet_id: u16, now: u64) {
        self.finish_outgoing(id, packet_id, OutState::AwaitPuback, now);
    }

    /// The last ack of an outgoing QoS 1 (PUBACK) or QoS 2 (PUBCOMP)
    /// exchange: the message leaves the window and the queue moves up.
    fn finish_outgoing(&mut self, id: ConnId, packet_id: u16, expected: OutState, now: u64) {
        let Some(skey) = self.conns.get(id).and_then(|c| c.session) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(skey) else {
            return;
        };
        // An unknown id is ignored; an ack of the wrong kind for the
        // message under that id (PUBCOMP for QoS 1, PUBACK for QoS 2,
        // PUBCOMP before PUBREC) closes the connection, as in Mosquitto.
        let Some(i) = s.find_inflight(packet_id) else {
            return;
        };
        if s.inflight[i].state != expected {
            self.close(id, CloseReason::Violation, now);
            return;
        }
        if let Some(f) = s.finish_inflight(i) {
            if s.persisted {
                self.journal.push(|| JournalOp::Done {
                    client_id: s.client_id.clone(),
                    msg: f.out.msg,
                });
            }
        }
        self.pump(skey, now);
    }

    /// PUBREC: the QoS 2 message moves on to PUBREL, or (v5, an error
    /// code) its exchange ends. An unknown id still gets a PUBREL, as
    /// Mosquitto answers one; a PUBREC for a QoS 1 message closes the
    /// connection.
    pub(super) fn handle_pubrec(&mut self, id: ConnId, packet_id: u16, code: u8, now: u64) {
        let Some(skey) = self.conns.get(id).and_then(|c| c.session) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(skey) else {
            return;
        };
        let found = s.find_inflight(packet_id);
        let state = found.map(|i| s.inflight[i].state);
        let wrong = match state {
            Some(OutState::AwaitPuback) => true,
            Some(OutState::AwaitPubcomp) => code >= 0x80,
            _ => false,
        };
        if wrong {
            self.close(id, CloseReason::Violation, now);
            return;
        }
        if code >= 0x80 {
            // v5: the receiver refused it; the exchange ends here.
            if let Some(f) = found.and_then(|i| s.finish_inflight(i)) {
                if s.persisted {
                    self.journal.push(|| JournalOp::Done {
                        client_id: s.client_id.clone(),
                        msg: f.out.msg,
                    });
                }
            }
            self.pump(skey, now);
            return;
        }
        if let Some(i) = found {
            // A held message the client had received after all: its
            // PUBREC ends the wait for a re-send.
            if s.inflight[i].held {
                s.inflight[i].held = false;
                s.held -= 1;
            }
            let f = &mut s.inflight[i];
            if f.state != OutState::AwaitPubcomp {
                f.state = OutState::AwaitPubcomp;
                if s.persisted {
                    let msg = f.out.msg.clone();
                    self.journal.push(|| JournalOp::Released {
                        client_id: s.client_id.clone(),
                        msg,
                        packet_id,
                    });
                }
            }
        }
        if let Some(c) = self.conns.writer(id) {
            write_ack(c, &mut self.stats, packet_type::PUBREL, packet_id, 0);
        }
    }

    /// PUBREL: the message waiting under this packet id is routed now, and
    /// PUBCOMP answers it. An unknown id is answered too, with success, as
    /// Mosquitto does (it may be a PUBREL repeated after a reconnect).
    pub(super) fn handle_pubrel(&mut self, id: ConnId, packet_id: u16, now: u64) {
        let Some(skey) = self.conns.get(id).and_then(|c| c.session) else {
            return;
        };
        let mut released = None;
        if let Some(s) = self.sessions.get_mut(skey) {
            if let Some(i) = s.find_incoming(packet_id) {
                released = s.incoming_qos2.remove(i).msg;
                if s.persisted {
                    self.journal.push(|| JournalOp::In2Done {
                        client_id: s.client_id.clone(),
                        packet_id,
                    });
                }
            }
        }
        if let Some(m) = released {
            if !m.expired(now) {
                self.route(
                    skey,
                    m.topic(),
                    m.payload(),
                    m.props(),
                    m.expiry_at,
                    m.qos,
                    m.retain,
                    Some(m.clone()),
                    now,
                );
            }
        }
        if let Some(c) = self.conns.writer(id) {
            write_ack(c, &mut self.stats, packet_type::PUBCOMP, packet_id, 0);
        }
    }

    pub(super) fn handle_pubcomp(&mut self, id: ConnId, packet_id: u16, now: u64) {
        self.finish_outgoing(id, packet_id, OutState::AwaitPubcomp, now);
    }

    /// Give a message to one member of a shared subscription group, round
    /// robin, preferring members that are connected.
    fn deliver_shared(
        &mut self,
        gidx: u32,
        view: &MsgView<'_>,
        published: (QoS, bool),
        stored: &mut Option<Message>,
        now: u64,
    ) {
        let Some((skey, opts)) = self.pick_member(gidx as usize, usize::MAX) else {
            return;
        };
        if !self.acl_allows(skey, view.topic, Access::Read) {
            return;
        }
        let qos = if self.cfg.upgrade_outgoing_qos {
            opts.qos
        } else {
            published.0.min(opts.qos)
        };
        let ids = [opts.sub_id];
        let d = Delivery {
            qos,
            retain: published.1 && opts.retain_as_published,
            sub_ids: if opts.sub_id != 0 { &ids } else { &[] },
            group: gidx,
            unbounded: false,
        };
        self.deliver(skey, view, published, stored, &d, now);
    }

    /// The next member of a group to receive a message, skipping `except`.
    fn pick_member(&mut self, gidx: usize, except: usize) -> Option<(usize, SubOptions)> {
        let (sessions, conns) = (&self.sessions, &self.conns);
        self.router.pick_member(gidx, except, |skey| {
            sessions
                .get(skey)
                .and_then(|s| s.conn)
                .is_some_and(|c| conns.get(c).is_some())
        })
    }

    /// A message a departed member never acknowledged goes to another member.
    pub(super) fn redeliver_shared(&mut self, o: Outgoing, now: u64) {
        if o.msg.expired(now) {
            return;
        }
        let Some((skey, opts)) = self.pick_member(o.group as usize, usize::MAX) else {
            return;
        };
        let view = MsgView::of(&o.msg);
        let mut stored = Some(o.msg.clone());
        let ids = [opts.sub_id];
        let d = Delivery {
            qos: o.msg.qos.min(opts.qos),
            retain: o.retain,
            sub_ids: if opts.sub_id != 0 { &ids } else { &[] },
            group: o.group,
            unbounded: false,
        };
        self.deliver(skey, &view, (o.msg.qos, o.msg.retain), &mut stored, &d, now);
    }

    /// The publisher's identity, kept with a retained message when an ACL
    /// applies to it (for `check_retain_source`).
    fn retain_source(&self, origin: usize) -> Option<Box<super::session::Source>> {
        if !self.cfg.check_retain_source {
            return None;
        }
        let s = self.sessions.get(origin)?;
        self.security.get(s.security)?.acl.as_ref()?;
        let port = s
            .conn
            .and_then(|c| self.conns.get(c))
            .and_then(|c| self.cfg.listeners.get(c.listener))
            .map_or(0, |l| l.port);
        Some(Box::new(super::session::Source {
            client_id: s.client_id.clone(),
            username: s.username.clone(),
            security: s.security,
            port,
        }))
    }

    /// The security policy a retained message's publisher is checked
    /// against: its own, or for one restored from disk that of the listener
    /// on the port it came in on (the first policy if that port is gone).
    fn source_policy(&self, src: &super::session::Source) -> usize {
        if src.security != usize::MAX {
            return src.security;
        }
        self.cfg
            .listeners
            .iter()
            .find(|l| l.port == src.port)
            .map_or(0, |l| l.security)
    }

    /// Send stored messages (retained, on subscribe) to one session.
    /// `burst_open`: the session was within its queue limits when this
    /// subscription's retained matches started (see `Delivery::unbounded`).
    pub(super) fn deliver_stored(
        &mut self,
        skey: usize,
        msg: &Message,
        (qos, burst_open): (QoS, bool),
        sub_id: u32,
        now: u64,
    ) {
        if msg.expired(now) || !self.acl_allows(skey, msg.topic(), Access::Read) {
            return;
        }
        if self.cfg.check_retain_source {
            if let Some(src) = &msg.source {
                let still = self.security.get(self.source_policy(src)).is_none_or(|p| {
                    p.allows(
                        &src.client_id,
                        src.username.as_deref(),
                        msg.topic(),
                        Access::Write,
                    )
                });
                if !still {
                    return;
                }
            }
        }
        let view = MsgView::of(msg);
        let mut stored = Some(msg.clone());
        let sub_ids = [sub_id];
        let ids: &[u32] = if sub_id != 0 { &sub_ids } else { &[] };
        let d = Delivery {
            qos,
            retain: true,
            sub_ids: ids,
            group: NO_GROUP,
            unbounded: burst_open && qos == QoS::AtMostOnce,
        };
        self.deliver(skey, &view, (msg.qos, true), &mut stored, &d, now);
    }
}

pub(super) fn inflight_window(max_inflight: u16, receive_max: u16) -> usize {
    let cfg = if max_inflight == 0 {
        usize::from(u16::MAX)
    } else {
        usize::from(max_inflight)
    };
    cfg.min(usize::from(receive_max.max(1)))
}

fn make_message(view: &MsgView<'_>, qos: QoS, retain: bool) -> Message {
    Message::new(
        view.topic,
        view.props,
        view.payload,
        Stored {
            expiry_at: view.expiry_at,
            ..Stored::new(qos, retain)
        },
    )
}

/// A message taken from a session's queue that is not to be sent after all:
/// expired, or its topic no longer readable by the client (the ACL may have
/// been reloaded since it was queued; Mosquitto asks again when it sends).
/// Mosquitto numbers a QoS 1/2 message when it queues it, so one dropped
/// here still uses up its packet id, which keeps the ids a client sees the
/// same. Journals what leaves the session (QoS 0 ones leave now, sent or not).
fn leaves_queue_unsent(
    s: &mut super::session::Session,
    security: &[crate::auth::Policy],
    journal: &mut super::journal::Journal,
    out: &Outgoing,
    now: u64,
) -> bool {
    let expired = out.msg.expired(now);
    let denied = security.get(s.security).is_some_and(|p| {
        !p.allows(
            &s.client_id,
            s.username.as_deref(),
            out.msg.topic(),
            Access::Read,
        )
    });
    if s.persisted && (expired || denied || out.qos == QoS::AtMostOnce) {
        journal.push(|| JournalOp::Done {
            client_id: s.client_id.clone(),
            msg: out.msg.clone(),
        });
    }
    if !(expired || denied) {
        return false;
    }
    if out.qos != QoS::AtMostOnce {
        s.alloc_packet_id();
    }
    true
}

/// The session's copy of a delivery (in flight or queued): the message is
/// stored once for all its receivers, and a durable session's journal gets
/// the Enqueue record.
fn session_copy(
    s: &super::session::Session,
    journal: &mut super::journal::Journal,
    view: &MsgView<'_>,
    (pub_qos, pub_retain): (QoS, bool),
    stored: &mut Option<Message>,
    d: &Delivery<'_>,
) -> Outgoing {
    let msg = stored
        .get_or_insert_with(|| make_message(view, pub_qos, pub_retain))
        .clone();
    if s.persisted {
        journal.push(|| JournalOp::Enqueue {
            client_id: s.client_id.clone(),
            msg: msg.clone(),
            qos: d.qos,
            retain: d.retain,
            sub_ids: d.sub_ids.iter().copied().collect(),
        });
    }
    Outgoing {
        msg,
        qos: d.qos,
        retain: d.retain,
        sub_ids: d.sub_ids.iter().copied().collect(),
        group: d.group,
    }
}
