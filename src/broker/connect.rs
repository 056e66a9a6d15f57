//! CONNECT, CONNACK, DISCONNECT and wills: how a connection becomes a
//! session's live link, how a second connection takes a client id over, and
//! what a departing client leaves behind.
//!
//! Must not: route messages (that is `publish`) or touch sockets.

use crate::broker::Stored;
use crate::protocol::ReasonCode;
use std::rc::Rc;

use crate::protocol::encode;
use crate::protocol::reason;
use crate::protocol::{
    Connack, Connect, Disconnect, Packet, Property, PropertyWriter, ProtocolVersion, QoS,
};

use super::events::Event;
use super::journal::JournalOp;
use super::session::{publish_props_to_store, too_large_for, Message, Session, Source};
use super::{Broker, CloseReason, ConnId, ListenerSettings, State, WillMsg};

/// Who a connecting client is, once `authenticate` let it in.
struct Identity {
    client_id: String,
    /// The broker made the client id up (v5: Assigned Client Identifier).
    assigned: bool,
    username: Option<String>,
}

/// What `negotiate` settled for the connection.
struct Terms {
    keepalive: u16,
    /// Set when the broker overrode the client's keepalive (v5: Server Keep Alive).
    server_keepalive: Option<u16>,
    will: Option<WillMsg>,
    expiry: u32,
}

impl Broker {
    pub(super) fn send_connack(&mut self, id: ConnId, session_present: bool, code: u8, v5: bool) {
        self.send_connack_props(id, session_present, code, v5, &PropertyWriter::new());
    }

    /// Write a CONNACK. For v5, `props` come first and the broker-wide ones
    /// follow in Mosquitto's order: Retain Available, Maximum Packet Size and
    /// Receive Maximum on a success, Maximum QoS whatever the code.
    /// Returns false when the CONNACK was too large for the client's Maximum
    /// Packet Size and was not sent (the caller then closes, as Mosquitto does).
    fn send_connack_props(
        &mut self,
        id: ConnId,
        session_present: bool,
        code: u8,
        v5: bool,
        props: &PropertyWriter,
    ) -> bool {
        let mut all = PropertyWriter::new();
        if v5 {
            all.extend_raw(props.as_bytes());
            if code < 0x80 {
                if !self.cfg.retain_available {
                    all.push(Property::RetainAvailable(0));
                }
                if self.cfg.max_packet_size > 0 {
                    all.push(Property::MaximumPacketSize(self.cfg.max_packet_size));
                }
                if self.cfg.max_inflight_messages > 0 {
                    all.push(Property::ReceiveMaximum(self.cfg.max_inflight_messages));
                }
            }
            let max_qos = self
                .conns
                .get(id)
                .and_then(|c| self.cfg.listeners.get(c.listener))
                .map_or(QoS::ExactlyOnce, |l| l.max_qos);
            if max_qos != QoS::ExactlyOnce {
                all.push(Property::MaximumQoS(max_qos as u8));
            }
        }
        let Some(c) = self.conns.writer(id) else {
            return false;
        };
        let version = if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        };
        let p = Packet::Connack(Connack {
            session_present,
            code,
            properties: all.as_properties(),
        });
        let start = c.outbox.buf.len();
        encode::encode(&p, version, &mut c.outbox.buf);
        let n = c.outbox.buf.len() - start;
        if too_large_for(c.max_packet_out, n) {
            c.outbox.buf.truncate(start);
            return false;
        }
        self.stats.msgs_sent += 1;
        self.stats.bytes_sent += n as u64;
        true
    }

    /// Refuse a CONNECT with the code for its version, then close. v5
    /// clients that did not turn off problem information get a reason string.
    fn refuse(&mut self, id: ConnId, p: &Connect<'_>, v3_code: u8, v5_code: ReasonCode, now: u64) {
        let v5 = p.version.is_v5();
        let mut props = PropertyWriter::new();
        if v5
            && self.cfg.connack_reason_strings
            && p.properties.request_problem_information() != Some(0)
        {
            props.push(Property::ReasonString(v5_code.name()));
        }
        let code = if v5 { v5_code.code() } else { v3_code };
        self.send_connack_props(id, false, code, v5, &props);
        self.close(id, CloseReason::Refused, now);
    }

    fn refuse_not_authorised(&mut self, id: ConnId, p: &Connect<'_>, now: u64) {
        (self.events)(&Event::RefusedNotAuthorised);
        self.refuse(
            id,
            p,
            reason::CONNACK_NOT_AUTHORIZED,
            ReasonCode::NotAuthorized,
            now,
        );
    }

    /// A CONNECT on a new connection: authenticate, negotiate, take over a
    /// live connection with the same id, attach the session, acknowledge.
    /// Each step may refuse (CONNACK with a code, then close) and stop.
    pub(super) fn handle_connect(&mut self, id: ConnId, p: &Connect<'_>, now: u64) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.version = p.version;
        let listener = self
            .cfg
            .listeners
            .get(c.listener)
            .cloned()
            .unwrap_or_default();
        // The checks run in Mosquitto 2.0's order, so that a CONNECT with
        // several faults gets the code Mosquitto would give it.
        if !self.will_supported(id, p, &listener, now) {
            return;
        }
        let Some(who) = self.authenticate(id, p, &listener, now) else {
            return;
        };
        let mut terms = self.negotiate(p, &listener, &who);
        self.take_over(&who.client_id, p.clean_start, now);
        let (skey, resumed) = self.attach(id, p, &listener, &who, &mut terms, now);
        self.acknowledge_connect(id, p, &listener, &who, &terms, (skey, resumed), now);
    }

    /// [MQTT-3.2.2-12], [MQTT-3.2.2-13]: a will the server could not publish
    /// refuses the connection (v3.1.x clients are just closed).
    fn will_supported(
        &mut self,
        id: ConnId,
        p: &Connect<'_>,
        listener: &ListenerSettings,
        now: u64,
    ) -> bool {
        let Some(w) = &p.will else { return true };
        let code = if w.retain && !self.cfg.retain_available {
            ReasonCode::RetainNotSupported
        } else if w.qos > listener.max_qos {
            ReasonCode::QosNotSupported
        } else {
            return true;
        };
        if p.version.is_v5() {
            self.refuse(id, p, code.code(), code, now);
        } else {
            self.close(id, CloseReason::Refused, now);
        }
        false
    }

    /// The client id (assigned when empty and allowed), then the
    /// `clientid_prefixes` and will-size rules, in Mosquitto's order.
    fn admit_client_id(
        &mut self,
        id: ConnId,
        p: &Connect<'_>,
        listener: &ListenerSettings,
        now: u64,
    ) -> Option<(String, bool)> {
        let mut client_id: String = p.client_id.to_string();
        let mut assigned = false;
        if client_id.is_empty() {
            let refuse = p.version == ProtocolVersion::V31
                || (p.version == ProtocolVersion::V311 && !p.clean_start)
                || !listener.allow_zero_length_clientid;
            if refuse {
                // Mosquitto answers a v5 client with "unspecified error".
                let (v3, v5c) = (
                    reason::CONNACK_IDENTIFIER_REJECTED,
                    ReasonCode::UnspecifiedError,
                );
                self.refuse(id, p, v3, v5c, now);
                return None;
            }
            client_id = self.generate_client_id(&listener.auto_id_prefix);
            assigned = true;
        }
        if let Some(pre) = self.cfg.clientid_prefixes.as_deref() {
            if !pre.is_empty() && !client_id.starts_with(pre) {
                self.refuse_not_authorised(id, p, now);
                return None;
            }
        }
        if let Some(w) = &p.will {
            let limit = self.cfg.message_size_limit as usize;
            if limit > 0 && w.payload.len() > limit {
                (self.events)(&Event::RefusedWillTooLarge {
                    client_id: &client_id,
                });
                let (v3, v5c) = (reason::CONNACK_NOT_AUTHORIZED, ReasonCode::PacketTooLarge);
                self.refuse(id, p, v3, v5c, now);
                return None;
            }
        }
        Some((client_id, assigned))
    }

    /// Who the client is and whether it may connect: its client id
    /// (assigned when empty), prefix and will-size rules, its username (the
    /// certificate's name when the listener takes identities from TLS), then
    /// the password checkers (see `Policy::authenticate`).
    fn authenticate(
        &mut self,
        id: ConnId,
        p: &Connect<'_>,
        listener: &ListenerSettings,
        now: u64,
    ) -> Option<Identity> {
        let v5 = p.version.is_v5();
        let (mut client_id, assigned) = self.admit_client_id(id, p, listener, now)?;
        let username: Option<String> = if listener.use_identity_as_username {
            let name = self.conns.get(id).and_then(|c| c.cert_username.clone());
            if name.is_none() {
                // No usable client certificate: "bad username or password".
                (self.events)(&Event::RefusedNoCertificateName);
                let (v3, v5c) = (
                    reason::CONNACK_BAD_USERNAME_PASSWORD,
                    ReasonCode::BadUsernameOrPassword,
                );
                self.refuse(id, p, v3, v5c, now);
                return None;
            }
            name.map(String::from)
        } else {
            p.username.map(str::to_string)
        };
        if listener.use_username_as_clientid {
            match &username {
                Some(u) => client_id = u.clone(),
                None => {
                    self.refuse_not_authorised(id, p, now);
                    return None;
                }
            }
        }
        if v5 && p.properties.authentication_method().is_some() {
            // No enhanced authentication method is configured.
            let (v3, v5c) = (
                reason::CONNACK_NOT_AUTHORIZED,
                ReasonCode::BadAuthenticationMethod,
            );
            self.refuse(id, p, v3, v5c, now);
            return None;
        }
        // A certificate name is authentication enough.
        let authorised = listener.use_identity_as_username
            || match self.security.get(listener.security) {
                Some(pol) => pol.authenticate(
                    username.as_deref(),
                    p.password,
                    &client_id,
                    listener.allow_anonymous,
                ),
                None => listener.allow_anonymous,
            };
        if !authorised {
            self.refuse_not_authorised(id, p, now);
            return None;
        }
        Some(Identity {
            client_id,
            assigned,
            username,
        })
    }

    /// The connection's terms: keepalive (Mosquitto 2.0 caps a v5 client's,
    /// and replaces 0, with `max_keepalive`, telling it so; a 3.1.x client
    /// keeps its own), the will to leave behind, the session expiry.
    fn negotiate(&self, p: &Connect<'_>, listener: &ListenerSettings, who: &Identity) -> Terms {
        let v5 = p.version.is_v5();
        let mut keepalive = p.keep_alive;
        let mut server_keepalive = None;
        if v5
            && self.cfg.max_keepalive > 0
            && (keepalive > self.cfg.max_keepalive || keepalive == 0)
        {
            keepalive = self.cfg.max_keepalive;
            server_keepalive = Some(keepalive);
        }
        let will = p.will.as_ref().map(|w| WillMsg {
            msg: Message::new(
                &match &listener.mount_point {
                    Some(m) => format!("{}{}", m, w.topic),
                    None => w.topic.to_string(),
                },
                &if v5 {
                    publish_props_to_store(w.properties.raw())
                } else {
                    Box::default()
                },
                w.payload,
                Stored {
                    // Who may publish it is asked when it is sent.
                    source: Some(Box::new(Source {
                        client_id: who.client_id.as_str().into(),
                        username: who.username.as_deref().map(Into::into),
                        security: listener.security,
                        port: listener.port,
                    })),
                    ..Stored::new(w.qos, w.retain)
                },
            ),
            delay: w.properties.will_delay_interval().unwrap_or(0),
            expiry: w.properties.message_expiry_interval(),
        });
        let expiry = if v5 {
            p.properties.session_expiry_interval().unwrap_or(0)
        } else if p.clean_start {
            0
        } else {
            match self.cfg.persistent_client_expiration {
                Some(s) => u32::try_from(s).unwrap_or(u32::MAX - 1),
                None => u32::MAX,
            }
        };
        Terms {
            keepalive,
            server_keepalive,
            will,
            expiry,
        }
    }

    /// A live connection with the same client id is closed. Mosquitto 2.0
    /// sends its will when the old session would not have survived, or the
    /// new one starts clean. A delayed will of that id is cancelled.
    fn take_over(&mut self, client_id: &str, clean_start: bool, now: u64) {
        let existing = self.sessions.find(client_id);
        let old = existing.and_then(|skey| Some((skey, self.sessions.get(skey)?.conn?)));
        if let Some((skey, old)) = old {
            if self.cfg.connection_messages {
                (self.events)(&Event::TakenOver { client_id });
            }
            let old_clean = self.conns.get(old).map(|oc| oc.clean_start).unwrap_or(true);
            let old_expiry = self.sessions.get(skey).map(|s| s.expiry_interval);
            let old_v5 = self.conns.get(old).is_some_and(|oc| oc.version.is_v5());
            let send_will =
                (old_v5 && old_expiry == Some(0)) || (!old_v5 && old_clean) || clean_start;
            // Keep the session alive through the old connection's close.
            if let Some(s) = self.sessions.get_mut(skey) {
                s.conn = None;
            }
            if let Some(oc) = self.conns.get_mut(old) {
                oc.session = None;
            }
            self.close(old, CloseReason::TakenOver { send_will }, now);
        }
        self.cancel_delayed_will(client_id);
    }

    /// Find or create the session and make this connection its live link.
    /// As in Mosquitto, a session is resumed only when the client asks for
    /// it and the old one was meant to outlive its connection (expiry > 0;
    /// a v3 clean session has 0). Returns the session and whether it was
    /// resumed.
    fn attach(
        &mut self,
        id: ConnId,
        p: &Connect<'_>,
        listener: &ListenerSettings,
        who: &Identity,
        terms: &mut Terms,
        now: u64,
    ) -> (usize, bool) {
        let v5 = p.version.is_v5();
        let expiry = terms.expiry;
        let mut resumed = false;
        let skey = match self.sessions.find(who.client_id.as_str()) {
            Some(k)
                if !p.clean_start
                    && self.sessions.get(k).is_some_and(|s| s.expiry_interval > 0) =>
            {
                resumed = true;
                k
            }
            Some(k) => {
                self.remove_session(k, now);
                self.new_session(&who.client_id)
            }
            None => self.new_session(&who.client_id),
        };
        if let Some(s) = self.sessions.get_mut(skey) {
            s.conn = Some(id);
            s.v5 = v5;
            s.expiry_interval = expiry;
            s.username = who.username.as_deref().map(Into::into);
            s.security = listener.security;
            if expiry > 0 {
                s.persisted = true;
                self.journal.push(|| JournalOp::Session {
                    client_id: s.client_id.clone(),
                    username: s.username.clone(),
                    expiry,
                });
            }
        }
        let shared_id: Rc<str> = match self.sessions.get(skey) {
            Some(s) => s.client_id.clone(),
            None => who.client_id.as_str().into(),
        };
        let Some(c) = self.conns.get_mut(id) else {
            return (skey, resumed);
        };
        c.state = State::Connected;
        c.client_id = shared_id;
        c.clean_start = p.clean_start;
        c.keepalive_ms = u64::from(terms.keepalive) * 1500;
        c.last_rx = now;
        c.connected_at = now;
        c.session = Some(skey);
        c.will = terms.will.take().map(Box::new);
        if v5 {
            c.max_packet_out = p.properties.maximum_packet_size().unwrap_or(0);
            c.receive_max = p.properties.receive_maximum().unwrap_or(u16::MAX);
            c.request_problem_info = p.properties.request_problem_information() != Some(0);
            c.topic_alias_max_out = p.properties.topic_alias_maximum().unwrap_or(0);
        }
        if c.keepalive_ms > 0 {
            self.next_check = self.next_check.min(now + c.keepalive_ms);
        }
        self.stats.clients_connected += 1;
        self.stats.clients_maximum = self.stats.clients_maximum.max(self.stats.clients_connected);
        (skey, resumed)
    }

    /// CONNACK (Mosquitto's properties in Mosquitto's order), the
    /// "New client connected" line, then what the session has waiting.
    #[allow(clippy::too_many_arguments)]
    fn acknowledge_connect(
        &mut self,
        id: ConnId,
        p: &Connect<'_>,
        listener: &ListenerSettings,
        who: &Identity,
        terms: &Terms,
        (skey, resumed): (usize, bool),
        now: u64,
    ) {
        let v5 = p.version.is_v5();
        let Some(peer) = self.conns.get(id).map(|c| c.peer.clone()) else {
            return;
        };
        // The rest follows in `send_connack_props`.
        let mut props = PropertyWriter::new();
        if v5 {
            if listener.max_topic_alias > 0 {
                props.push(Property::TopicAliasMaximum(listener.max_topic_alias));
            }
            if let Some(k) = terms.server_keepalive {
                props.push(Property::ServerKeepAlive(k));
            }
            if who.assigned {
                props.push(Property::AssignedClientIdentifier(&who.client_id));
            }
        }
        // MQTT 3.1 has no session-present flag: Mosquitto always sends 0 there.
        let session_present = resumed && p.version != ProtocolVersion::V31;
        if !self.send_connack_props(id, session_present, 0, v5, &props) {
            (self.events)(&Event::ConnackTooLarge {
                client_id: &who.client_id,
            });
            self.close(id, CloseReason::Violation, now);
            return;
        }
        if self.cfg.connection_messages {
            (self.events)(&Event::Connected {
                peer: &peer,
                client_id: &who.client_id,
                version: p.version,
                clean_start: p.clean_start,
                keepalive: terms.keepalive,
                username: who.username.as_deref(),
            });
        }
        if resumed {
            self.resend_inflight(skey, now);
        }
        self.pump(skey, now);
    }

    fn new_session(&mut self, client_id: &str) -> usize {
        self.sessions.insert(Session::new(client_id.into()))
    }

    fn generate_client_id(&mut self, prefix: &str) -> String {
        loop {
            let a = self.next_random();
            let b = self.next_random();
            let id = format!(
                "{}{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
                prefix,
                (a >> 32) as u32,
                (a >> 16) as u16,
                a as u16,
                (b >> 48) as u16,
                b & 0xffff_ffff_ffff
            );
            if self.sessions.find(id.as_str()).is_none() {
                return id;
            }
        }
    }

    pub(super) fn handle_disconnect(&mut self, id: ConnId, d: &Disconnect<'_>, now: u64) {
        let Some(c) = self.conns.get(id) else {
            return;
        };
        if c.version.is_v5() {
            if let (Some(new_expiry), Some(skey)) =
                (d.properties.session_expiry_interval(), c.session)
            {
                let old = self.sessions.get(skey).map(|s| s.expiry_interval);
                if old == Some(0) && new_expiry != 0 {
                    // Section 3.14.2.2.2: a Session Expiry Interval of 0
                    // at CONNECT may not be raised at DISCONNECT.
                    self.close(id, CloseReason::Protocol(ReasonCode::ProtocolError), now);
                    return;
                }
                if let Some(s) = self.sessions.get_mut(skey) {
                    s.expiry_interval = new_expiry;
                    if new_expiry > 0 {
                        s.persisted = true;
                        self.journal.push(|| JournalOp::Session {
                            client_id: s.client_id.clone(),
                            username: s.username.clone(),
                            expiry: new_expiry,
                        });
                    }
                }
            }
        }
        // Only a normal disconnection (0x00) discards the will [MQTT-3.14.4-3].
        let send_will = d.reason != ReasonCode::NORMAL_DISCONNECTION.code();
        self.close(id, CloseReason::ClientDisconnect { send_will }, now);
    }

    /// Publish a will, if its owner may still write its topic (Mosquitto
    /// asks the ACL when the will is sent, not when it is given: a denied
    /// will is dropped, the connection was accepted).
    pub(super) fn publish_will(&mut self, w: &WillMsg, now: u64) {
        if let Some(src) = &w.msg.source {
            let allowed = !super::dollar_write_denied(w.msg.topic())
                && self.security.get(src.security).is_none_or(|p| {
                    p.allows(
                        &src.client_id,
                        src.username.as_deref(),
                        w.msg.topic(),
                        crate::auth::acl::Access::Write,
                    )
                });
            if !allowed {
                (self.events)(&Event::WillDenied {
                    client_id: &src.client_id,
                    topic: w.msg.topic(),
                });
                return;
            }
        }
        let m = match w.expiry {
            Some(secs) => w.msg.with_stored(Stored {
                expiry_at: Some(now + u64::from(secs) * 1000),
                ..Stored::new(w.msg.qos, w.msg.retain)
            }),
            None => w.msg.clone(),
        };
        self.route(
            usize::MAX,
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
