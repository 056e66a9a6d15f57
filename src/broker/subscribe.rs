//! SUBSCRIBE and UNSUBSCRIBE: granting subscriptions into the tree and the
//! session, answering with SUBACK / UNSUBACK, and sending retained messages
//! to new subscriptions.
//!
//! Must not: route live messages (that is `publish`).

use smallvec::SmallVec;

use crate::auth::acl::Access;
use crate::protocol::encode;
use crate::protocol::ReasonCode;
use crate::protocol::{
    Packet, Properties, ProtocolVersion, QoS, Suback, Subscribe, Unsuback, Unsubscribe,
};
use crate::topic;

use super::events::Event;
use super::journal::JournalOp;
use super::session::SubOptions;
use super::{Broker, CloseReason, ConnId};

impl Broker {
    pub(super) fn handle_subscribe(&mut self, id: ConnId, p: &Subscribe<'_>, now: u64) {
        let Some(c) = self.conns.get(id) else {
            return;
        };
        let version = c.version;
        let v5 = version.is_v5();
        let bridge = c.bridge && !v5;
        let Some(skey) = c.session else {
            return;
        };
        let client_id = c.client_id.clone();
        let mount = c.mount.clone();
        let max_qos = self
            .cfg
            .listeners
            .get(c.listener)
            .map(|l| l.max_qos)
            .unwrap_or(QoS::ExactlyOnce);
        if self.refuse_invalid_filters(id, &client_id, p, now) {
            return;
        }
        let sub_id = p.properties.subscription_identifiers().next().unwrap_or(0);
        let mut codes: SmallVec<[u8; 8]> = SmallVec::new();
        // (filter, granted qos) whose retained messages follow the SUBACK.
        let mut retained_for: SmallVec<[(String, QoS); 4]> = SmallVec::new();
        for (filter, opts) in p.filters.iter() {
            let granted = opts.qos.min(max_qos);
            let sub = SubOptions {
                qos: granted,
                no_local: (v5 && opts.no_local) || bridge,
                retain_as_published: (v5 && opts.retain_as_published) || bridge,
                retain_handling: if v5 { opts.retain_handling } else { 0 },
                sub_id,
            };
            let mounted = mount_filter(mount.as_deref(), filter);
            let filter: &str = &mounted;
            let shared = topic::is_shared(filter);
            let checked = match topic::parse_shared(filter) {
                Some((_, inner)) => inner,
                None => filter,
            };
            if !self.acl_allows(skey, checked, Access::Subscribe) {
                (self.events)(&Event::SubscribeDenied {
                    client_id: &client_id,
                    filter,
                });
                codes.push(denied_code(version, granted));
                continue;
            }
            let existed = self.add_subscription(skey, filter, sub);
            (self.events)(&Event::Subscribed {
                client_id: &client_id,
                qos: granted,
                filter,
            });
            codes.push(granted as u8);
            // [MQTT-3.8.4-4]: no retained messages for shared subscriptions.
            if !shared && (sub.retain_handling == 0 || (sub.retain_handling == 1 && !existed)) {
                retained_for.push((filter.to_string(), granted));
            }
        }

        let pkt = Packet::Suback(Suback {
            packet_id: p.packet_id,
            properties: Properties::EMPTY,
            codes: &codes,
        });
        self.conns
            .send(id, &mut self.stats, |buf, v| encode::encode(&pkt, v, buf));
        // Retained messages follow the SUBACK.
        for (filter, granted) in retained_for {
            self.send_retained(skey, &filter, granted, sub_id, now);
        }
    }

    /// An invalid filter anywhere in the packet closes the connection (v5:
    /// DISCONNECT 0x81), as in Mosquitto, before anything is granted.
    fn refuse_invalid_filters(
        &mut self,
        id: ConnId,
        client_id: &str,
        p: &Subscribe<'_>,
        now: u64,
    ) -> bool {
        let invalid = p
            .filters
            .iter()
            .any(|(f, _)| !topic::valid_topic_filter(f) || topic::too_deep(f));
        if invalid {
            (self.events)(&Event::InvalidSubscription { client_id });
            self.close(id, CloseReason::Protocol(ReasonCode::MalformedPacket), now);
        }
        invalid
    }

    /// Put a granted subscription in the tree (or its shared group) and the
    /// session, journalled when the session is durable. Returns whether it
    /// replaced one on the same filter (for Retain Handling 1).
    fn add_subscription(&mut self, skey: usize, filter: &str, sub: SubOptions) -> bool {
        let existed = self.router.subscribe(filter, skey, sub);
        if let Some(s) = self.sessions.get_mut(skey) {
            // The tree already said whether this session had the filter:
            // only a replacement pays for the search of its list, so a
            // client subscribing to 10 000 filters is not quadratic.
            let found = if existed { s.sub_index(filter) } else { None };
            match found {
                Some(j) => s.subs[j].1 = sub,
                None => {
                    // Most sessions hold one or two subscriptions: grow
                    // exactly while small instead of by four.
                    if s.subs.len() < 4 {
                        s.subs.reserve_exact(1);
                    }
                    s.subs.push((filter.into(), sub))
                }
            }
            if s.persisted {
                self.journal.push(|| JournalOp::Sub {
                    client_id: s.client_id.clone(),
                    filter: filter.into(),
                    opts: sub,
                });
            }
        }
        existed
    }

    /// The retained messages matching a new subscription, at the granted
    /// QoS (or their own, with `upgrade_outgoing_qos`).
    fn send_retained(&mut self, skey: usize, filter: &str, granted: QoS, sub_id: u32, now: u64) {
        let mut msgs = std::mem::take(&mut self.retained_scratch);
        msgs.clear();
        self.router
            .retained
            .for_each_match(filter, |m| msgs.push(m.clone()));
        let (max_msgs, max_bytes) = (self.cfg.max_queued_messages, self.cfg.max_queued_bytes);
        let burst_open = self
            .sessions
            .get(skey)
            .is_some_and(|s| s.queue_has_room(max_msgs, max_bytes, 0));
        for m in msgs.iter() {
            let qos = if self.cfg.upgrade_outgoing_qos {
                granted
            } else {
                m.qos.min(granted)
            };
            self.deliver_stored(skey, m, (qos, burst_open), sub_id, now);
        }
        msgs.clear();
        self.retained_scratch = msgs;
    }

    pub(super) fn handle_unsubscribe(&mut self, id: ConnId, p: &Unsubscribe<'_>, now: u64) {
        let Some(c) = self.conns.get(id) else {
            return;
        };
        let Some(skey) = c.session else {
            return;
        };
        let client_id = c.client_id.clone();
        if p.filters
            .iter()
            .any(|f| !topic::valid_topic_filter(f) || topic::too_deep(f))
        {
            (self.events)(&Event::InvalidUnsubscription {
                client_id: &client_id,
            });
            self.close(id, CloseReason::Protocol(ReasonCode::MalformedPacket), now);
            return;
        }
        let mut codes: SmallVec<[u8; 8]> = SmallVec::new();
        let mount = c.mount.clone();
        for filter in p.filters.iter() {
            let mounted = mount_filter(mount.as_deref(), filter);
            let filter: &str = &mounted;
            let checked = match topic::parse_shared(filter) {
                Some((_, inner)) => inner,
                None => filter,
            };
            // A denied unsubscribe removes nothing; v5 says so with 0x87,
            // 3.x has no code to say it with (Mosquitto's MOSQ_ACL_UNSUBSCRIBE).
            if !self.acl_allows(skey, checked, Access::Unsubscribe) {
                (self.events)(&Event::UnsubscribeDenied {
                    client_id: &client_id,
                    filter,
                });
                codes.push(ReasonCode::NotAuthorized.code());
                continue;
            }
            let removed = self.router.unsubscribe(filter, skey);
            if let Some(s) = self.sessions.get_mut(skey) {
                if let Some(j) = s.sub_index(filter) {
                    s.subs.swap_remove(j);
                    if s.persisted {
                        self.journal.push(|| JournalOp::Unsub {
                            client_id: s.client_id.clone(),
                            filter: filter.into(),
                        });
                    }
                }
            }
            (self.events)(&Event::Unsubscribed {
                client_id: &client_id,
                filter,
            });
            codes.push(if removed {
                ReasonCode::Success.code()
            } else {
                ReasonCode::NoSubscriptionExisted.code()
            });
        }
        let pkt = Packet::Unsuback(Unsuback {
            packet_id: p.packet_id,
            properties: Properties::EMPTY,
            codes: &codes,
        });
        self.conns
            .send(id, &mut self.stats, |buf, v| encode::encode(&pkt, v, buf));
    }
}

/// A listener's `mount_point` goes in front of every filter its clients
/// use, `$share/...` included: as in Mosquitto, `$share/g/#` from a mounted
/// client is the plain filter `<mount>$share/g/#`, not a shared
/// subscription (a mounted client stays inside its mount point).
pub(super) fn mount_filter<'a>(mount: Option<&str>, filter: &'a str) -> std::borrow::Cow<'a, str> {
    match mount {
        Some(m) => format!("{}{}", m, filter).into(),
        None => std::borrow::Cow::Borrowed(filter),
    }
}

/// The SUBACK code for a filter the ACL refuses. 3.1 has no failure code:
/// Mosquitto answers the granted QoS (and subscribes nothing).
fn denied_code(version: ProtocolVersion, granted: QoS) -> u8 {
    match version {
        ProtocolVersion::V5 => ReasonCode::NotAuthorized.code(),
        ProtocolVersion::V311 => ReasonCode::UnspecifiedError.code(),
        ProtocolVersion::V31 => granted as u8,
    }
}
