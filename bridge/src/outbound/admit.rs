//! Taking deliveries into the rule per its `ack` mode, and the spool's I/O:
//! - `confirmed`: into the window with its ack (completed on RabbitMQ's confirm);
//! - `received`: ack completed at once, into the window (the bounded memory buffer);
//! - `spooled`: a batch of ready deliveries is written to the spool (one fsync), their acks
//!   completed, and the window is filled from the spool in id order.
//!
//! When the window (or spool) is full, a QoS 0 delivery is dropped and counted, and a QoS 1/2
//! one is held, which stops the task reading: the MQTT side back-pressures.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{Item, Rule};
use crate::config::AckMode;
use crate::metrics::{add, bump, set};
use crate::side::{AckResult, BridgeMessage, Delivery, MqttSide, Subscription};
use crate::spool::record::Record;
use crate::spool::{SpoolError, SpoolStore};

/// Most deliveries taken at once (and written to the spool in one transaction).
const SPOOL_BATCH: usize = 512;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<S: MqttSide> Rule<S> {
    /// Whether one more message fits (`extra`: messages taken but not yet spooled).
    pub(super) fn has_room(&self, extra: u64) -> bool {
        match (&self.env.spool, self.spec.ack) {
            (Some((store, max_messages, max_bytes)), AckMode::Spooled) => {
                self.spool_messages + extra < *max_messages && store.file_size() < *max_bytes
            }
            _ => self.outbox.len() < self.spec.buffer,
        }
    }

    /// A delivery arrived (the task then reads no more until this returns).
    pub(super) async fn admit(&mut self, d: Delivery, sub: &mut Subscription) {
        if self.spec.ack == AckMode::Spooled {
            // Everything ready that fits goes into one spool commit.
            let mut batch = Vec::new();
            let mut next = Some(d);
            while let Some(d) = next.take() {
                if !self.has_room(batch.len() as u64) {
                    self.no_room(d);
                    if self.held.is_some() {
                        break;
                    }
                } else {
                    batch.push(d);
                }
                if batch.len() < SPOOL_BATCH {
                    next = sub.try_recv();
                }
            }
            return self.spool_batch(batch).await;
        }
        self.admit_one(d);
        // Take what is ready too (fewer trips round the task's loop).
        for _ in 1..SPOOL_BATCH {
            if self.held.is_some() || !self.has_room(0) {
                break;
            }
            match sub.try_recv() {
                Some(d) => self.admit_one(d),
                None => break,
            }
        }
    }

    /// Admits the held delivery if it fits now.
    pub(super) async fn admit_held(&mut self) {
        if !self.has_room(0) {
            return;
        }
        let Some(d) = self.held.take() else { return };
        if self.spec.ack == AckMode::Spooled {
            self.spool_batch(vec![d]).await;
        } else {
            self.admit_one(d);
        }
    }

    /// Admits one delivery to the window (memory modes), or holds or drops it.
    fn admit_one(&mut self, d: Delivery) {
        if !self.has_room(0) {
            return self.no_room(d);
        }
        let seq = self.next_seq;
        let Delivery {
            message,
            client_id,
            ack,
        } = d;
        let Some(key) = self.publishable_key(&message) else {
            return self.unmappable(&message.topic, ack);
        };
        let mut item = self.item(message, client_id, key, seq, None, now_secs());
        self.next_seq += 1;
        match self.spec.ack {
            AckMode::Received => {
                ack.complete(AckResult::Owned);
                bump(&self.stats().acked);
            }
            _ => item.ack = Some(ack),
        }
        self.outbox.push(seq, item);
    }

    fn no_room(&mut self, d: Delivery) {
        if d.message.qos == 0 {
            bump(&self.stats().dropped_full);
            if let Some(n) = self.drops_log.hit(Instant::now()) {
                tracing::warn!(rule = %self.spec.name, dropped = n, "bridge: buffer full; dropping QoS 0 messages");
            }
            d.ack.complete(AckResult::Owned);
        } else {
            self.held = Some(d);
        }
    }

    fn unmappable(&mut self, topic: &str, ack: crate::side::Ack) {
        bump(&self.stats().dropped_unmappable);
        if let Some(n) = self.drops_log.hit(Instant::now()) {
            tracing::warn!(rule = %self.spec.name, topic = %topic, dropped = n,
                "bridge: no routing key for the topic (template or 255-byte limit), or a payload over max_message_bytes; dropped");
        }
        ack.complete(AckResult::Owned);
    }

    /// The routing key for the message's topic (None: none, by template or the 255-byte
    /// limit; or a payload over `max_message_bytes`: not publishable either).
    fn publishable_key(&self, m: &crate::side::BridgeMessage) -> Option<String> {
        if m.payload.len() > self.max_message_bytes() {
            return None;
        }
        let key = self.spec.mapping.topic_to_key(&m.topic).ok()?;
        (key.len() <= crate::amqp::MAX_SHORT).then_some(key)
    }

    /// The window item for a message.
    fn item(
        &self,
        message: BridgeMessage,
        client_id: Option<Bytes>,
        routing_key: String,
        seq: u64,
        message_id: Option<String>,
        timestamp: u64,
    ) -> Item {
        Item {
            routing_key,
            message,
            client_id,
            message_id: Bytes::from(
                message_id.unwrap_or_else(|| format!("{}-{}", self.env.id_prefix, seq)),
            ),
            timestamp,
            ack: None,
            spool_bytes: 0,
        }
    }

    /// Writes `batch` to the spool (one commit); acks once it is durable.
    async fn spool_batch(&mut self, batch: Vec<Delivery>) {
        let Some((store, _, _)) = self.env.spool.clone() else {
            return;
        };
        let mut records = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        let first_id = self.next_seq;
        let now = now_secs();
        for d in batch {
            if self.publishable_key(&d.message).is_none() {
                self.unmappable(&d.message.topic, d.ack);
                continue;
            }
            let id = self.next_seq;
            self.next_seq += 1;
            let record = Record {
                message: d.message,
                client_id: d.client_id,
                message_id: format!("{}-{}", self.env.id_prefix, id),
                timestamp: now,
            };
            records.push((id, record));
            acks.push(d.ack);
        }
        if records.is_empty() {
            return;
        }
        let encoded: Vec<(u64, Vec<u8>)> =
            records.iter().map(|(id, r)| (*id, r.encode())).collect();
        let sizes: Vec<u64> = encoded.iter().map(|(_, b)| b.len() as u64).collect();
        let n = records.len() as u64;
        let bytes: u64 = sizes.iter().sum();
        let payload: u64 = records
            .iter()
            .map(|(_, r)| r.message.payload.len() as u64)
            .sum();
        let durable = store.append(&self.spec.name, encoded);
        match durable.await {
            Ok(Ok(())) => {
                for ack in acks {
                    ack.complete(AckResult::Owned);
                }
                self.spool_messages += n;
                self.spool_bytes += bytes;
                add(&self.stats().acked, n);
                add(&self.stats().spooled_messages, n);
                add(&self.stats().spooled_bytes, payload);
                self.spool_gauges();
                if self.loaded_through + 1 == first_id {
                    for ((id, r), size) in records.into_iter().zip(sizes) {
                        if !self.push_record(id, r, size) {
                            break;
                        }
                    }
                }
            }
            Ok(Err(e)) => self.spool_failed(acks, first_id, e.to_string()),
            Err(_) => self.spool_failed(acks, first_id, "the spool writer stopped".into()),
        }
    }

    fn spool_failed(&mut self, acks: Vec<crate::side::Ack>, first_id: u64, e: String) {
        for ack in acks {
            ack.complete(AckResult::Refused(0x80));
        }
        // Nothing was written: reuse the ids.
        self.next_seq = first_id;
        if let Some(_n) = self.errors_log.hit(Instant::now()) {
            tracing::error!(rule = %self.spec.name, error = %e, "bridge: cannot write to the spool; refusing messages");
        }
    }

    /// Puts spooled record `id` into the window if it has room (false: it stays on disk).
    fn push_record(&mut self, id: u64, r: Record, size: u64) -> bool {
        if self.outbox.len() >= self.spec.buffer {
            return false;
        }
        self.loaded_through = id;
        let Some(key) = self.publishable_key(&r.message) else {
            bump(&self.stats().dropped_unmappable);
            return true;
        };
        let mut item = self.item(
            r.message,
            r.client_id,
            key,
            id,
            Some(r.message_id),
            r.timestamp,
        );
        item.spool_bytes = size;
        self.outbox.push(id, item);
        true
    }

    /// Decodes records read back from the spool into the window while it has room.
    fn push_records(&mut self, records: Vec<(u64, Vec<u8>)>) {
        for (id, bytes) in records {
            let size = bytes.len() as u64;
            match Record::decode(&bytes) {
                Ok(r) => {
                    if !self.push_record(id, r, size) {
                        return;
                    }
                }
                Err(e) => {
                    self.loaded_through = id;
                    bump(&self.stats().dropped_unmappable);
                    tracing::error!(rule = %self.spec.name, id, error = %e, "bridge: unreadable spool record skipped");
                }
            }
        }
    }

    /// Spooled: at start, learn what the spool holds.
    pub(super) async fn open_spool(&mut self) -> Result<(), SpoolError> {
        let Some((store, _, _)) = self.env.spool.clone() else {
            return Ok(());
        };
        if self.spec.ack != AckMode::Spooled {
            return Ok(());
        }
        let rule = self.spec.name.clone();
        let stats = blocking(&store, move |s| s.stats(&rule)).await?;
        self.spool_messages = stats.messages;
        self.spool_bytes = stats.bytes;
        self.next_seq = stats.last_id + 1;
        if stats.messages > 0 {
            tracing::info!(rule = %self.spec.name, messages = stats.messages, "bridge: spool holds messages to forward");
        }
        self.spool_gauges();
        Ok(())
    }

    /// Spooled: fills the window from disk when it has room and the spool has more.
    pub(super) async fn load_from_spool(&mut self) {
        if self.spec.ack != AckMode::Spooled || self.loaded_through + 1 >= self.next_seq {
            return;
        }
        let room = self.spec.buffer.saturating_sub(self.outbox.len());
        if room == 0 {
            return;
        }
        let Some((store, _, _)) = self.env.spool.clone() else {
            return;
        };
        let (rule, after) = (self.spec.name.clone(), self.loaded_through);
        match blocking(&store, move |s| {
            s.read_after(&rule, after, room.min(SPOOL_BATCH))
        })
        .await
        {
            Ok(records) if records.is_empty() => self.loaded_through = self.next_seq - 1,
            Ok(records) => self.push_records(records),
            Err(e) => {
                if self.errors_log.hit(Instant::now()).is_some() {
                    tracing::error!(rule = %self.spec.name, error = %e, "bridge: cannot read the spool");
                }
            }
        }
    }

    /// Pops the done front of the window: completes acks, deletes from the spool.
    pub(super) async fn pop_done(&mut self) {
        let mut last = None;
        let mut freed = 0;
        let mut count = 0;
        while let Some((seq, item)) = self.outbox.pop_done() {
            if let Some(ack) = item.ack {
                ack.complete(AckResult::Owned);
                bump(&self.stats().acked);
            }
            last = Some(seq);
            freed += item.spool_bytes;
            count += 1;
        }
        let (Some(last), Some((store, _, _)), AckMode::Spooled) =
            (last, self.env.spool.clone(), self.spec.ack)
        else {
            return;
        };
        store.remove_through(&self.spec.name, last);
        self.spool_messages = self.spool_messages.saturating_sub(count);
        self.spool_bytes = self.spool_bytes.saturating_sub(freed);
        self.spool_gauges();
    }

    fn spool_gauges(&self) {
        set(&self.gauges().spool_messages, self.spool_messages);
        set(&self.gauges().spool_bytes, self.spool_bytes);
    }
}

/// Runs a spool call on a blocking thread.
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn SpoolStore>,
    f: impl FnOnce(&dyn SpoolStore) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(r) => r,
        Err(e) => Err(SpoolError::Engine(e.to_string())),
    }
}
