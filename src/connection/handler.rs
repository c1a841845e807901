//! Packet handling of a connected client, and delivery of its mailbox: the QoS flows, SUBSCRIBE
//! with retained messages, UNSUBSCRIBE, DISCONNECT, and encoding into the write buffer.

use std::sync::Arc;
use std::time::Instant;

use super::{Connection, Exit, DRAIN_BATCH, WRITE_HIGH_WATER};
use crate::metrics::stats::DropReason;
use crate::protocol::{
    self, reason, AckProperties, Disconnect, EncodeError, Packet, PubResp, Publish,
    PublishProperties, QoS, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
};
use crate::session::mailbox::{Delivery, Dropped, Message, Subscriber};
use crate::session::{AckOutcome, OutState, SubEntry};

thread_local! {
    /// Each worker thread's buffer for deliveries taken from a mailbox: reused, and not kept
    /// per connection.
    static BATCH: std::cell::RefCell<std::collections::VecDeque<Delivery>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
}

impl Connection {
    /// Handles one packet from the client; `Some` ends the connection.
    pub(super) fn handle(&mut self, packet: Packet, now: Instant) -> Option<Exit> {
        self.shared.stats.shard().packet_in(packet.type_code());
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
                self.send(Packet::PubComp(ack(rel.pkid, found)));
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
            Packet::Auth(_) => {
                return Some(Exit::violation(
                    reason::PROTOCOL_ERROR,
                    "AUTH without enhanced authentication (MQTT-4.12.0-1)",
                ))
            }
            other => {
                return Some(Exit::violation(
                    reason::PROTOCOL_ERROR,
                    format!("{} is sent by servers only", other.kind()),
                ))
            }
        }
        None
    }

    fn on_publish(&mut self, publish: Publish, now: Instant) -> Option<Exit> {
        if publish.properties.topic_alias.is_some() {
            return Some(Exit::violation(
                reason::TOPIC_ALIAS_INVALID,
                "topic alias sent but Topic Alias Maximum is 0 (MQTT-3.3.2-9)",
            ));
        }
        if publish.retain && !self.shared.config.mqtt.retain_available {
            return Some(Exit::violation(
                reason::RETAIN_NOT_SUPPORTED,
                "retained PUBLISH while retain is not available (MQTT-3.3.1-14)",
            ));
        }
        let (qos, pkid) = (publish.qos, publish.pkid);
        self.shared.stats.shard().received(qos as u8);
        if qos == QoS::ExactlyOnce && !self.session.on_incoming_qos2(pkid) {
            // A resend of a message already routed: acknowledge again, deliver once.
            self.send(Packet::PubRec(PubResp::new(pkid)));
            return None;
        }
        let mut properties = publish.properties;
        properties.subscription_identifiers.clear();
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| now + std::time::Duration::from_secs(secs.into()));
        let message = Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos,
            retain: publish.retain,
            properties,
            expires_at,
            origin: self.session.mailbox.id(),
            received_at: now,
        });
        let routed = self.shared.router.publish(message, &self.shared.stats);
        if routed.pressure.is_some() {
            // A connected subscriber's queue is full: read nothing more from this publisher
            // until it has room (its keep alive is paused meanwhile).
            self.pressure = routed.pressure;
            self.session.mailbox.set_keep_alive(None, 0);
        }
        let code = if routed.queued == 0 {
            self.shared
                .stats
                .dropped(DropReason::NoSubscribers, qos as u8);
            reason::NO_MATCHING_SUBSCRIBERS
        } else {
            reason::SUCCESS
        };
        let response = PubResp {
            pkid,
            reason: code,
            properties: AckProperties::default(),
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(response)),
            QoS::ExactlyOnce => self.send(Packet::PubRec(response)),
        }
        None
    }

    fn on_pubrec(&mut self, rec: PubResp) {
        let accepted = rec.reason < 0x80;
        match self.session.on_pubrec(rec.pkid, accepted) {
            AckOutcome::Done if accepted => self.send(Packet::PubRel(PubResp::new(rec.pkid))),
            AckOutcome::Done => self.mailbox_pending = true,
            AckOutcome::Unknown => self.send(Packet::PubRel(ack(rec.pkid, false))),
        }
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) {
        let v5 = self.version.is_v5();
        let id = subscribe.properties.subscription_identifier;
        let subscriber = Subscriber(self.session.mailbox.clone());
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        for (filter, options) in subscribe.filters {
            if filter.starts_with("$share/") {
                // Shared subscriptions come with their own issue; refuse them clearly for now.
                reasons.push(if v5 {
                    reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
                } else {
                    0x80
                });
                continue;
            }
            if !protocol::topic::within_level_limit(&filter) {
                reasons.push(if v5 {
                    reason::TOPIC_FILTER_INVALID
                } else {
                    0x80
                });
                continue;
            }
            let entry = SubEntry { options, id };
            let is_new = self
                .shared
                .router
                .subscribe(&filter, subscriber.clone(), entry);
            reasons.push(options.qos as u8);
            let send_retained = match options.retain_handling {
                0 => true,
                1 => is_new,
                _ => false,
            };
            if send_retained {
                self.queue_retained(&filter, entry);
            }
            self.session.subscriptions.insert(filter, entry);
        }
        let filters = self.session.subscriptions.len();
        self.session.mailbox.set_filter_count(filters);
        self.send(Packet::SubAck(SubAck {
            pkid: subscribe.pkid,
            reasons,
            properties: AckProperties::default(),
        }));
    }

    /// Queues the retained messages matching a new subscription (sent after the SUBACK).
    fn queue_retained(&mut self, filter: &str, entry: SubEntry) {
        let mut retained = Vec::new();
        self.shared.router.retained(filter, &mut retained);
        let now = Instant::now();
        for message in retained {
            if message.expired(now) {
                continue;
            }
            let delivery = Delivery {
                qos: message.qos.min(entry.options.qos),
                retain: true,
                subscription_ids: entry.id.into_iter().collect(),
                message,
            };
            let qos = delivery.qos as u8;
            if let Err(Dropped::QueueFull) = self.session.mailbox.push(delivery) {
                // (Retained messages for a connected session's own subscribe cannot be
                // refused with back-pressure: only QoS 0 or a full offline queue land here.)
                self.shared.stats.dropped(DropReason::QueueFull, qos);
            }
        }
        self.mailbox_pending = true;
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let subscriber = Subscriber(self.session.mailbox.clone());
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|filter| {
                let existed = self.session.subscriptions.remove(filter).is_some();
                self.shared.router.unsubscribe(filter, &subscriber);
                if existed {
                    reason::SUCCESS
                } else {
                    reason::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        let filters = self.session.subscriptions.len();
        self.session.mailbox.set_filter_count(filters);
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
            self.session_expiry = expiry.min(self.shared.config.mqtt.max_session_expiry_secs);
        }
        Exit::Disconnect {
            will: disconnect.reason == reason::DISCONNECT_WITH_WILL,
        }
    }

    /// Moves deliveries from the mailbox into the write buffer while the inflight window and
    /// the write high-water mark allow.
    pub(super) fn drain_mailbox(&mut self) {
        let now = Instant::now();
        // The worker thread's batch buffer, taken out while in use.
        let mut batch = BATCH.with(|b| std::mem::take(&mut *b.borrow_mut()));
        loop {
            let room = self.window.saturating_sub(self.session.outgoing.len());
            let taken = self.session.mailbox.pop_into(&mut batch, DRAIN_BATCH, room);
            if let Some(first) = batch.front() {
                // One latency sample a batch: representative, and cheap on the hot path.
                self.shared
                    .metrics
                    .record_latency(now.saturating_duration_since(first.message.received_at));
            }
            while let Some(delivery) = batch.pop_front() {
                self.deliver(delivery, now);
            }
            if taken < DRAIN_BATCH {
                self.mailbox_pending = false;
                break;
            }
            if self.wbuf.len() >= WRITE_HIGH_WATER {
                // More may be waiting: come back after writing.
                break;
            }
        }
        BATCH.with(|b| *b.borrow_mut() = batch);
    }

    fn deliver(&mut self, delivery: Delivery, now: Instant) {
        if delivery.message.expired(now) {
            self.shared
                .stats
                .dropped(DropReason::Expired, delivery.qos as u8);
            return;
        }
        let pkid = match delivery.qos {
            QoS::AtMostOnce => 0,
            _ => match self.session.next_pkid() {
                Some(pkid) => pkid,
                None => return,
            },
        };
        let publish = self.publish_packet(&delivery, pkid, false, now);
        match protocol::encode(
            &Packet::Publish(publish),
            self.version,
            self.client_max_packet,
            &mut self.wbuf,
        ) {
            Ok(_) => {
                let shard = self.shared.stats.shard();
                shard.packet_out(3);
                shard.delivered(delivery.qos as u8);
                if pkid != 0 {
                    self.session.sent(pkid, delivery);
                }
            }
            Err(error) => {
                // MQTT-3.1.2-25: a message too large for the client is discarded.
                self.shared
                    .stats
                    .dropped(DropReason::TooLarge, delivery.qos as u8);
                tracing::debug!(%error, topic = %delivery.message.topic, "delivery dropped");
            }
        }
    }

    /// The PUBLISH packet for `delivery`.
    fn publish_packet(&self, delivery: &Delivery, pkid: u16, dup: bool, now: Instant) -> Publish {
        let message = &delivery.message;
        let properties = if self.version.is_v5() {
            let mut properties = message.properties.clone();
            properties
                .subscription_identifiers
                .clone_from(&delivery.subscription_ids);
            if let Some(expires_at) = message.expires_at {
                let left = expires_at.saturating_duration_since(now).as_millis();
                properties.message_expiry_interval =
                    Some(u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX));
            }
            properties
        } else {
            PublishProperties::default()
        };
        Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: message.topic.clone(),
            pkid,
            properties,
            payload: message.payload.clone(),
        }
    }

    /// Resends what was in flight when the session was last connected (MQTT-4.4.0-1).
    pub(super) fn resend_inflight(&mut self) {
        let now = Instant::now();
        let mut packets = Vec::with_capacity(self.session.outgoing.len());
        for out in &self.session.outgoing {
            packets.push(match out.state {
                OutState::AwaitPubComp => Packet::PubRel(PubResp::new(out.pkid)),
                _ => Packet::Publish(self.publish_packet(&out.delivery, out.pkid, true, now)),
            });
        }
        for packet in packets {
            self.send(packet);
        }
    }

    /// Encodes a packet into the write buffer; a packet the client cannot take is dropped.
    pub(super) fn send(&mut self, packet: Packet) {
        match protocol::encode(
            &packet,
            self.version,
            self.client_max_packet,
            &mut self.wbuf,
        ) {
            Ok(_) => self.shared.stats.shard().packet_out(packet.type_code()),
            Err(EncodeError::TooLarge { .. }) => {
                // Not a message: an acknowledgement or DISCONNECT the client cannot take.
                tracing::debug!(
                    kind = packet.kind(),
                    "packet over the client's maximum size"
                );
            }
            Err(error) => tracing::warn!(%error, kind = packet.kind(), "cannot encode packet"),
        }
    }

    /// Publishes the will message as if the client had published it.
    pub(super) fn publish_will(&mut self, will: Will) {
        self.shared.publish_will(will, self.session.mailbox.id());
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
