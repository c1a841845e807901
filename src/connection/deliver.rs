//! Output of a connected client: the retained messages its subscriptions are owed, then its
//! mailbox, moved into the write buffer as the inflight window and the write high-water mark
//! allow; resending what was in flight; encoding.

use std::time::Instant;

use super::{Connection, DRAIN_BATCH, WRITE_HIGH_WATER};
use crate::metrics::stats::DropReason;
use crate::protocol::{self, EncodeError, OutAlias, Packet, PubResp, PublishOut, QoS};
use std::sync::Arc;

use crate::session::mailbox::{Delivery, Message};
use crate::session::{FlowChange, OutState, SubEntry};

thread_local! {
    /// Each worker thread's buffer for deliveries taken from a mailbox: reused, and not kept
    /// per connection.
    static BATCH: std::cell::RefCell<std::collections::VecDeque<Delivery>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
}

/// The delivery of retained `message` owed to a new subscription with `entry`.
pub(super) fn owed(message: &Arc<Message>, entry: SubEntry) -> Delivery {
    Delivery {
        message: message.clone(),
        qos: message.qos.min(entry.options.qos),
        retain: true,
        subscription_ids: entry.id.into_iter().collect(),
        ticket: None,
        seq: 0,
        share: None,
    }
}

impl Connection {
    /// Free slots of the outgoing inflight window.
    fn window_room(&self) -> usize {
        usize::from(self.window).saturating_sub(self.session.outgoing.len())
    }

    /// Moves deliveries into the write buffer while the inflight window and the write
    /// high-water mark allow: first the retained backlog, then the mailbox.
    pub(super) fn drain_mailbox(&mut self) {
        let now = Instant::now();
        if !self.drain_retained(now) {
            // Window or buffer full: an ack or a write brings us back.
            self.mailbox_pending = self.wbuf.len() >= WRITE_HIGH_WATER;
            return;
        }
        // The worker thread's batch buffer, taken out while in use.
        let mut batch = BATCH.with(|b| std::mem::take(&mut *b.borrow_mut()));
        loop {
            let room = self.window_room();
            let taken = self.session.mailbox.pop_into(&mut batch, DRAIN_BATCH, room);
            if let Some(first) = batch.front() {
                // One latency sample a batch: representative, and cheap on the hot path.
                self.core
                    .metrics()
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

    /// Sends retained messages owed to new subscriptions; true once none is left.
    fn drain_retained(&mut self, now: Instant) -> bool {
        while let Some((message, entry, seq)) =
            self.session.rare().and_then(|r| r.retained_backlog.front())
        {
            if self.wbuf.len() >= WRITE_HIGH_WATER {
                return false;
            }
            if message.qos.min(entry.options.qos) != QoS::AtMostOnce && self.window_room() == 0 {
                return false;
            }
            let mut delivery = owed(message, *entry);
            delivery.seq = *seq;
            self.session.rare_mut().retained_backlog.pop_front();
            self.deliver(delivery, now);
        }
        if self
            .session
            .rare()
            .is_some_and(|r| r.retained_backlog.capacity() > 64)
        {
            self.session.rare_mut().retained_backlog = Default::default();
        }
        true
    }

    /// A stored delivery that will not be sent leaves the store.
    fn discard(&mut self, delivery: &Delivery) {
        if delivery.seq != 0 {
            self.session
                .rare_mut()
                .flow_changes
                .push(FlowChange::Done { seq: delivery.seq });
        }
    }

    fn deliver(&mut self, delivery: Delivery, now: Instant) {
        if !self.may_receive(delivery.message.topic()) {
            self.discard(&delivery);
            return;
        }
        if delivery.message.expired(now) {
            self.core
                .stats()
                .dropped(DropReason::Expired, delivery.qos as u8);
            self.discard(&delivery);
            return;
        }
        let pkid = match delivery.qos {
            QoS::AtMostOnce => 0,
            _ => match self.session.next_pkid() {
                Some(pkid) => pkid,
                None => {
                    self.discard(&delivery);
                    return;
                }
            },
        };
        if delivery.qos == QoS::ExactlyOnce && delivery.seq != 0 {
            // Its packet id must be on disk before the client sees it.
            self.hold_output();
        }
        match self.encode_delivery(&delivery, pkid, false, now) {
            Ok(_) => {
                let shard = self.core.stats().shard();
                shard.packet_out(3);
                shard.delivered(delivery.qos as u8);
                if pkid != 0 {
                    self.session.sent(pkid, delivery);
                }
            }
            Err(error) => {
                // MQTT-3.1.2-25: a message too large for the client is discarded.
                self.core
                    .stats()
                    .dropped(DropReason::TooLarge, delivery.qos as u8);
                tracing::debug!(%error, topic = delivery.message.topic(), "delivery dropped");
                self.discard(&delivery);
            }
        }
    }

    /// Encodes the PUBLISH for `delivery` into the write buffer, borrowing the message.
    fn encode_delivery(
        &mut self,
        delivery: &Delivery,
        pkid: u16,
        dup: bool,
        now: Instant,
    ) -> Result<usize, EncodeError> {
        let message = &delivery.message;
        let message_expiry_interval = message.expires_at.map(|expires_at| {
            let left = expires_at.saturating_duration_since(now).as_millis();
            u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX)
        });
        let topic = message.topic();
        let alias = self
            .aliases_out
            .as_ref()
            .and_then(|table| table.choose(topic));
        let publish = PublishOut {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: match alias {
                Some(OutAlias::Known(_)) => "",
                _ => topic,
            },
            pkid,
            properties: &message.properties,
            subscription_ids: &delivery.subscription_ids,
            message_expiry_interval,
            topic_alias: alias.map(OutAlias::value),
            payload: message.payload(),
        };
        let written = protocol::encode_publish(
            &publish,
            self.version,
            self.client_max_packet,
            &mut self.wbuf,
        )?;
        if let (Some(table), Some(alias)) = (self.aliases_out.as_mut(), alias) {
            // Only a PUBLISH that went out sets or refreshes its alias.
            table.confirm(topic, alias);
        }
        Ok(written)
    }

    /// Resends what was in flight when the session was last connected (MQTT-4.4.0-1).
    pub(super) fn resend_inflight(&mut self) {
        let now = Instant::now();
        self.hold_resent();
        let outgoing = std::mem::take(&mut self.session.outgoing);
        for out in &outgoing {
            match out.state {
                OutState::AwaitPubComp => self.send(Packet::PubRel(PubResp::new(out.pkid))),
                _ => {
                    if self
                        .encode_delivery(&out.delivery, out.pkid, true, now)
                        .is_ok()
                    {
                        self.core.stats().shard().packet_out(3);
                    }
                }
            }
        }
        self.session.outgoing = outgoing;
    }

    /// Encodes a packet into the write buffer; a packet the client cannot take is dropped.
    pub(super) fn send(&mut self, packet: Packet) {
        match protocol::encode(
            &packet,
            self.version,
            self.client_max_packet,
            &mut self.wbuf,
        ) {
            Ok(_) => self.core.stats().shard().packet_out(packet.type_code()),
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
}
