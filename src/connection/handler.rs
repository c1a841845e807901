//! Packet handling of a connected client: the incoming QoS flows through the acknowledgement
//! gate, acknowledgements of outgoing messages, SUBSCRIBE (with the retained messages it is
//! owed), UNSUBSCRIBE, PINGREQ and DISCONNECT.

use std::sync::Arc;
use std::time::Instant;

use super::{Connection, Exit};
use crate::gate::{TicketSource, Unanswered, Verdict};
use crate::metrics::stats::DropReason;
use crate::protocol::{
    reason, AckProperties, Disconnect, InboundAliases, Packet, PubResp, Publish, QoS, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};
use crate::router::parse_share;
use crate::session::mailbox::{Message, MessageParts};
use crate::session::{AckOutcome, SubEntry};

/// Bytes a retained backlog entry holds (the message itself is the retained store's).
const BACKLOG_ENTRY_COST: usize = std::mem::size_of::<(Arc<Message>, SubEntry, u64)>();

impl Connection {
    /// Handles one packet from the client; `Some` ends the connection.
    pub(super) fn handle(&mut self, packet: Packet, now: Instant) -> Option<Exit> {
        self.core.stats().shard().packet_in(packet.type_code());
        match packet {
            Packet::Publish(publish) => return self.on_publish(publish, now),
            Packet::PubAck(ack) => {
                if self.session.on_puback(ack.pkid) == AckOutcome::Done {
                    self.mailbox_pending = true;
                }
            }
            Packet::PubRec(rec) => self.on_pubrec(rec),
            Packet::PubRel(rel) => {
                let found = self.session.on_pubrel(rel.pkid);
                if found {
                    self.core.journal_inbound(&self.session, rel.pkid, false);
                    // After PUBCOMP the client may use the id again: the release must be on
                    // disk first, or a restarted broker would take the new message for a resend.
                    self.hold_output();
                }
                self.send(Packet::PubComp(ack(rel.pkid, found)));
                // A QoS 2 flow ended: the Receive Maximum has room again.
                return self.release_held(now);
            }
            Packet::PubComp(comp) => {
                if self.session.on_pubcomp(comp.pkid) == AckOutcome::Done {
                    self.mailbox_pending = true;
                }
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe),
            Packet::PingReq => self.send(Packet::PingResp),
            Packet::Disconnect(disconnect) => return Some(self.on_disconnect(disconnect)),
            Packet::Connect(_) => {
                return Some(Exit::violation(
                    reason::PROTOCOL_ERROR,
                    "second CONNECT (MQTT-3.1.0-2)",
                ))
            }
            Packet::Auth(auth) => return self.on_auth(auth),
            other => {
                return Some(Exit::violation(
                    reason::PROTOCOL_ERROR,
                    format!("{} is sent by servers only", other.kind()),
                ))
            }
        }
        None
    }

    /// Incoming QoS 1/2 PUBLISH packets counted against the Receive Maximum. In 5.0, QoS 1
    /// until its PUBACK and QoS 2 until its PUBCOMP (MQTT-4.9.0-2). 3.1.1 has no such limit:
    /// there, only the packets not answered yet count, so that a client's PUBREL is never held
    /// behind a PUBLISH that waits for it.
    pub(super) fn receive_quota_used(&self) -> usize {
        if self.version.is_v5() {
            self.acks.len() - self.acks.exactly_once_len() + self.session.incoming_qos2_len()
        } else {
            self.acks.len()
        }
    }

    fn on_publish(&mut self, mut publish: Publish, now: Instant) -> Option<Exit> {
        if let Some(alias) = publish.properties.topic_alias {
            let max = if self.version.is_v5() {
                self.core.config().mqtt.topic_alias_maximum
            } else {
                0
            };
            let table = self
                .aliases_in
                .get_or_insert_with(|| Box::new(InboundAliases::new(max)));
            if let Err(error) = table.resolve(&mut publish.topic, Some(alias)) {
                return Some(Exit::violation(
                    reason::TOPIC_ALIAS_INVALID,
                    error.to_string(),
                ));
            }
        }
        if !publish.properties.subscription_identifiers.is_empty() {
            return Some(Exit::violation(
                reason::PROTOCOL_ERROR,
                "PUBLISH from a client carries a Subscription Identifier (MQTT-3.3.4-6)",
            ));
        }
        if !self.core.topic_within_limits(&publish.topic) {
            let mqtt = &self.core.config().mqtt;
            return Some(Exit::violation(
                reason::TOPIC_NAME_INVALID,
                format!(
                    "topic over {} bytes or {} levels (max_topic_length, max_topic_levels)",
                    mqtt.max_topic_length, mqtt.max_topic_levels
                ),
            ));
        }
        let maximum_qos = self.core.config().mqtt.maximum_qos;
        if publish.qos as u8 > maximum_qos {
            return Some(Exit::violation(
                reason::QOS_NOT_SUPPORTED,
                format!(
                    "PUBLISH at QoS {} above the Maximum QoS {maximum_qos} (MQTT-3.3.1-4)",
                    publish.qos as u8
                ),
            ));
        }
        if publish.retain && !self.core.config().mqtt.retain_available {
            return Some(Exit::violation(
                reason::RETAIN_NOT_SUPPORTED,
                "retained PUBLISH while retain is not available (MQTT-3.3.1-14)",
            ));
        }
        let (qos, pkid) = (publish.qos, publish.pkid);
        if qos == QoS::ExactlyOnce && self.session.incoming_qos2_holds(pkid) {
            // A resend of a message already routed: deliver once. Answer again unless the
            // first answer is still waiting in the gate (it will come, in order).
            if !self.acks.has_exactly_once(pkid) {
                self.send(Packet::PubRec(PubResp::new(pkid)));
            }
            return None;
        }
        if self.publish_must_wait(&publish, now) {
            // Past a 3.1.1 client's Receive Maximum, or its rate limits: held, with what must
            // stay behind it, until an answer leaves room or the rate allows it.
            self.hold(Packet::Publish(publish));
            return None;
        }
        if qos != QoS::AtMostOnce && self.receive_quota_used() >= usize::from(self.receive_maximum)
        {
            return Some(Exit::violation(
                reason::RECEIVE_MAXIMUM_EXCEEDED,
                format!(
                    "more than the Receive Maximum ({}) of QoS 1/2 PUBLISH unanswered \
                     (MQTT-3.3.4-9)",
                    self.receive_maximum
                ),
            ));
        }
        self.charge_publish(&publish, now);
        self.core.stats().shard().received(qos as u8);
        if let Some(answered) = self.refuse_publish(&publish, now) {
            return answered;
        }
        if qos == QoS::ExactlyOnce {
            self.session.on_incoming_qos2(pkid);
            // Journalled before the message is routed: the commit that holds the message
            // holds this too, so a resend after a restart is not delivered twice.
            self.core.journal_inbound(&self.session, pkid, true);
        }
        let message = Message::new(
            MessageParts {
                topic: &publish.topic,
                payload: &publish.payload,
                qos,
                retain: publish.retain,
                properties: &publish.properties,
                origin: self.session.mailbox.origin(),
                publisher: Some(&self.session.client_id),
            },
            now,
        );
        let mut tickets = TicketSource::new(&self.session.mailbox, self.core.clock().ms_at(now));
        let matched = self.core.route(Arc::new(message), &mut tickets);
        let pending = tickets.finish();
        let success = if matched == 0 {
            self.core
                .stats()
                .dropped(DropReason::NoSubscribers, qos as u8);
            reason::NO_MATCHING_SUBSCRIBERS
        } else {
            reason::SUCCESS
        };
        if qos == QoS::AtMostOnce {
            return None;
        }
        let entry = Unanswered {
            pkid,
            exactly_once: qos == QoS::ExactlyOnce,
            success,
            pending,
            since: now,
        };
        if let Some(entry) = self.acks.push(entry) {
            // Owned by memory alone, nothing ahead of it: the common case, answered at once.
            return self.answer(&entry, Verdict::Owned);
        }
        None
    }

    /// Answers every PUBLISH at the front of the gate whose owners have all answered, in
    /// arrival order; then lets a held PUBLISH in if that made room.
    pub(super) fn answer_acks(&mut self) -> Option<Exit> {
        let mut answered = false;
        while let Some((entry, verdict)) = self.acks.pop_ready() {
            answered = true;
            if let Some(exit) = self.answer(&entry, verdict) {
                return Some(exit);
            }
        }
        if answered {
            return self.release_held(Instant::now());
        }
        None
    }

    /// The PUBACK or PUBREC for `entry`.
    pub(super) fn answer(&mut self, entry: &Unanswered, verdict: Verdict) -> Option<Exit> {
        let code = match verdict {
            Verdict::Owned => entry.success,
            Verdict::Refused(_) if !self.version.is_v5() => return Some(Exit::Refused),
            Verdict::Refused(code) => {
                if entry.exactly_once {
                    // A refused QoS 2 flow ends with its PUBREC (MQTT-4.3.3-4 / 5.0 4.13).
                    self.session.on_pubrel(entry.pkid);
                    self.core.journal_inbound(&self.session, entry.pkid, false);
                }
                code
            }
        };
        let response = PubResp {
            pkid: entry.pkid,
            reason: code,
            properties: self.refusal_properties(code),
        };
        self.send(if entry.exactly_once {
            Packet::PubRec(response)
        } else {
            Packet::PubAck(response)
        });
        None
    }

    fn on_pubrec(&mut self, rec: PubResp) {
        let accepted = rec.reason < 0x80;
        let stored = accepted && self.session.stored_in_flight(rec.pkid);
        match self.session.on_pubrec(rec.pkid, accepted) {
            AckOutcome::Done if accepted => {
                if stored {
                    // After PUBREL the PUBLISH must never be resent: the release goes to
                    // disk first.
                    self.hold_output();
                }
                self.send(Packet::PubRel(PubResp::new(rec.pkid)))
            }
            AckOutcome::Done => self.mailbox_pending = true,
            AckOutcome::Unknown => self.send(Packet::PubRel(ack(rec.pkid, false))),
        }
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) {
        let v5 = self.version.is_v5();
        let id = subscribe.properties.subscription_identifier;
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let maximum_qos = self.core.config().mqtt.maximum_qos;
        for (filter, mut options) in subscribe.filters {
            // Above the Maximum QoS: granted the maximum (MQTT 3.9.3).
            options.qos = QoS::from_u8(maximum_qos).map_or(options.qos, |max| options.qos.min(max));
            // A shared subscription is authorized by its topic filter, and gets no retained
            // messages (5.0 section 4.8.2).
            let (acl_filter, shared) = match parse_share(&filter) {
                Some(Ok((_, topic_filter))) => (topic_filter, true),
                _ => (&*filter, false),
            };
            if !self.may_subscribe(acl_filter) {
                reasons.push(if v5 { reason::NOT_AUTHORIZED } else { 0x80 });
                continue;
            }
            match self.core.subscribe(&mut self.session, &filter, options, id) {
                Ok(is_new) => {
                    reasons.push(options.qos as u8);
                    let send_retained = !shared
                        && match options.retain_handling {
                            0 => true,
                            1 => is_new,
                            _ => false,
                        };
                    if send_retained {
                        self.owe_retained(&filter, SubEntry { options, id });
                    }
                }
                Err(refusal) => reasons.push(if v5 { refusal.reason_code() } else { 0x80 }),
            }
        }
        let refused = reasons.iter().copied().find(|&code| code >= 0x80);
        self.send(Packet::SubAck(SubAck {
            pkid: subscribe.pkid,
            properties: refused
                .map_or_else(AckProperties::default, |code| self.refusal_properties(code)),
            reasons,
        }));
    }

    /// Adds the retained messages matching a new subscription to the session's backlog, which
    /// is sent after the SUBACK as the socket drains. The backlog is bounded by the session's
    /// byte limit (entries are pointers to the retained store's messages); past it, the rest
    /// is dropped and counted.
    fn owe_retained(&mut self, filter: &str, entry: SubEntry) {
        let limit = self.core.config().mqtt.max_queued_bytes / BACKLOG_ENTRY_COST;
        let durable = self.session.mailbox.durable_sid().is_some();
        for message in self.core.retained(filter) {
            if !self.may_receive(message.topic()) {
                continue;
            }
            if self.session.retained_owed() >= limit {
                self.core.stats().dropped(
                    DropReason::QueueFull,
                    message.qos.min(entry.options.qos) as u8,
                );
                continue;
            }
            let mut seq = 0;
            if durable {
                // A persistent session is owed it across a restart too.
                let mut delivery = super::deliver::owed(&message, entry);
                self.session.mailbox.journal_aside(&mut delivery);
                seq = delivery.seq;
            }
            self.session
                .rare_mut()
                .retained_backlog
                .push_back((message, entry, seq));
        }
        self.mailbox_pending = true;
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|filter| {
                if self.core.unsubscribe(&mut self.session, filter) {
                    reason::SUCCESS
                } else {
                    reason::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.send(Packet::UnsubAck(UnsubAck {
            pkid: unsubscribe.pkid,
            reasons,
            properties: AckProperties::default(),
        }));
    }

    fn on_disconnect(&mut self, disconnect: Disconnect) -> Exit {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if self.session_expiry == 0 && expiry != 0 {
                return Exit::violation(
                    reason::PROTOCOL_ERROR,
                    "session expiry set on DISCONNECT after 0 on CONNECT (MQTT-3.14.2-2)",
                );
            }
            self.session_expiry = expiry.min(self.core.config().mqtt.max_session_expiry_secs);
        }
        Exit::Disconnect {
            will: disconnect.reason == reason::DISCONNECT_WITH_WILL,
        }
    }
}

impl Connection {
    /// The properties of an acknowledgement carrying refusal `code`: a Reason String, unless
    /// the code is a success or the client asked for no problem information (5.0 3.1.2.11.7).
    fn refusal_properties(&self, code: u8) -> AckProperties {
        AckProperties {
            reason_string: (code >= 0x80 && self.version.is_v5() && self.problem_information)
                .then(|| bytestring::ByteString::from_static(reason::describe(code))),
            ..AckProperties::default()
        }
    }
}

/// A PUBCOMP/PUBREL answer: success, or 5.0 "Packet Identifier not found".
fn ack(pkid: u16, found: bool) -> PubResp {
    PubResp {
        pkid,
        reason: if found {
            reason::SUCCESS
        } else {
            reason::PACKET_IDENTIFIER_NOT_FOUND
        },
        properties: AckProperties::default(),
    }
}
