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

use lapin::types::ShortString;

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
    /// Whether one more message (of `bytes` payload, spooled mode) fits.
    pub(super) fn has_room(&self, _qos: u8, bytes: u64) -> bool {
        match (&self.env.spool, self.spec.ack) {
            (Some((_, max_messages, max_bytes)), AckMode::Spooled) => {
                self.spool_messages < *max_messages
                    && (self.spool_bytes == 0 || self.spool_bytes + bytes <= *max_bytes)
            }
            _ => self.outbox.len() < self.spec.buffer,
        }
    }

    /// A delivery arrived (the task then reads no more until this returns).
    pub(super) async fn admit(&mut self, d: Delivery, sub: &mut Subscription) {
        if self.spec.ack != AckMode::Spooled {
            self.admit_one(d).await;
            // Take what is ready too (fewer trips round the task's loop).
            for _ in 1..SPOOL_BATCH {
                if self.held.is_some() || self.outbox.len() >= self.spec.buffer {
                    break;
                }
                match sub.try_recv() {
                    Some(d) => self.admit_one(d).await,
                    None => break,
                }
            }
            return;
        }
        let mut batch = vec![d];
        while batch.len() < SPOOL_BATCH {
            match sub.try_recv() {
                Some(d) => batch.push(d),
                None => break,
            }
        }
        self.spool_batch(batch).await;
    }

    /// Admits one delivery (or holds or drops it when there is no room).
    pub(super) async fn admit_one(&mut self, d: Delivery) {
        if self.spec.ack == AckMode::Spooled {
            return self.spool_batch(vec![d]).await;
        }
        if !self.has_room(d.message.qos, 0) {
            return self.no_room(d);
        }
        let seq = self.next_seq;
        let Delivery {
            message,
            client_id,
            ack,
        } = d;
        let Some(key) = self.key(&message.topic) else {
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
                "bridge: no routing key for the topic (template or 255-byte limit); dropped");
        }
        ack.complete(AckResult::Owned);
    }

    /// The routing key for `topic` (None: none, by template or the 255-byte limit).
    fn key(&self, topic: &str) -> Option<ShortString> {
        let key = self.spec.mapping.topic_to_key(topic).ok()?;
        ShortString::try_new(key).ok()
    }

    /// The window item for a message.
    fn item(
        &self,
        message: BridgeMessage,
        client_id: Option<String>,
        routing_key: ShortString,
        seq: u64,
        message_id: Option<String>,
        timestamp: u64,
    ) -> Item {
        Item {
            routing_key,
            message,
            client_id,
            message_id: message_id.unwrap_or_else(|| format!("{}-{}", self.env.id_prefix, seq)),
            timestamp,
            ack: None,
            spool_bytes: 0,
        }
    }

    async fn spool_batch(&mut self, batch: Vec<Delivery>) {
        let Some((store, _, _)) = self.env.spool.clone() else {
            return;
        };
        let mut records = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        let mut added_bytes = 0;
        let first_id = self.next_seq;
        let now = now_secs();
        for d in batch {
            if self.held.is_some() {
                // Behind a held message: keep the order, refuse (the publisher resends).
                d.ack.complete(AckResult::Refused(0x97));
                continue;
            }
            let size = d.message.payload.len() as u64;
            if !self.has_room(d.message.qos, added_bytes + size)
                || self.spool_messages + records.len() as u64 >= self.max_spool_messages()
            {
                self.no_room(d);
                continue;
            }
            if self.key(&d.message.topic).is_none() {
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
            added_bytes += size;
            records.push((id, record.encode()));
            acks.push(d.ack);
        }
        if records.is_empty() {
            return;
        }
        let rule = self.spec.name.clone();
        let n = records.len() as u64;
        let bytes: u64 = records.iter().map(|(_, b)| b.len() as u64).sum();
        let write = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.append(&rule, &records).map(|()| records))
        };
        match write.await {
            Ok(Ok(records)) => {
                for ack in acks {
                    ack.complete(AckResult::Owned);
                }
                self.spool_messages += n;
                self.spool_bytes += bytes;
                add(&self.stats().acked, n);
                add(&self.stats().spooled_messages, n);
                add(&self.stats().spooled_bytes, added_bytes);
                self.spool_gauges();
                if self.loaded_through + 1 == first_id {
                    self.push_records(records);
                }
            }
            Ok(Err(e)) => self.spool_failed(acks, first_id, e.to_string()),
            Err(e) => self.spool_failed(acks, first_id, e.to_string()),
        }
    }

    fn max_spool_messages(&self) -> u64 {
        self.env.spool.as_ref().map_or(0, |(_, m, _)| *m)
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

    /// Pushes spooled records into the window while it has room; the rest stay on disk.
    fn push_records(&mut self, records: Vec<(u64, Vec<u8>)>) {
        for (id, bytes) in records {
            if self.outbox.len() >= self.spec.buffer {
                return;
            }
            self.loaded_through = id;
            let size = bytes.len() as u64;
            let record = match Record::decode(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    bump(&self.stats().dropped_unmappable);
                    tracing::error!(rule = %self.spec.name, id, error = %e, "bridge: unreadable spool record skipped");
                    continue;
                }
            };
            let r = record;
            let Some(key) = self.key(&r.message.topic) else {
                bump(&self.stats().dropped_unmappable);
                continue;
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
        let rule = self.spec.name.clone();
        match blocking(&store, move |s| s.remove_through(&rule, last)).await {
            Ok(()) => {
                self.spool_messages = self.spool_messages.saturating_sub(count);
                self.spool_bytes = self.spool_bytes.saturating_sub(freed);
                self.spool_gauges();
            }
            Err(e) => {
                if self.errors_log.hit(Instant::now()).is_some() {
                    tracing::error!(rule = %self.spec.name, error = %e, "bridge: cannot delete from the spool (messages will be sent again)");
                }
            }
        }
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
