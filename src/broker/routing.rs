//! Fan-out: one published message into every matching session's mailbox, and the retained store.
//!
//! Wraps the router's plain data structures in reader/writer locks that are held only for a
//! lookup or an update, never across an await. A publish takes the trie's read lock once, fills a
//! caller-owned scratch buffer, releases the lock, then pushes one [`Delivery`] per subscriber
//! (the payload is shared; per subscriber only an `Arc` count and a queue slot are spent).

use std::sync::Arc;

use parking_lot::RwLock;

use crate::metrics::stats::Stats;
use crate::protocol::QoS;
use crate::router::{RetainedStore, SubscriptionTrie};
use crate::session::mailbox::{Delivery, Dropped, Message, Subscriber};
use crate::session::SubEntry;

/// Scratch space a connection keeps for routing, so that a publish allocates nothing.
pub type MatchBuf = Vec<(Subscriber, SubEntry)>;

/// Subscriptions and retained messages of the whole broker.
#[derive(Default)]
pub struct Router {
    trie: RwLock<SubscriptionTrie<Subscriber, SubEntry>>,
    retained: RwLock<RetainedStore<Arc<Message>>>,
}

impl Router {
    /// Routes `message` to every matching subscription and updates the retained store when
    /// it carries the retain flag. Returns the number of sessions it was queued for.
    pub fn publish(&self, message: Arc<Message>, scratch: &mut MatchBuf, stats: &Stats) -> usize {
        if message.retain {
            let mut retained = self.retained.write();
            if message.payload.is_empty() {
                retained.remove(&message.topic);
            } else {
                retained.insert(&message.topic, Arc::new(message.compacted()));
            }
        }
        scratch.clear();
        self.trie.read().matches(&message.topic, scratch);
        if scratch.len() > 1 {
            scratch.sort_unstable_by_key(|(s, _)| s.0.id());
        }
        let mut queued = 0;
        let mut i = 0;
        while i < scratch.len() {
            // Overlapping subscriptions of one session: deliver once, at the highest granted QoS,
            // with every subscription identifier (MQTT-3.3.4-2 / 5.0 section 3.3.4).
            let mailbox = &scratch[i].0 .0;
            let mut j = i;
            let mut granted = QoS::AtMostOnce;
            let mut retain_as_published = false;
            let mut no_local = true;
            let mut ids = Vec::new();
            while j < scratch.len() && scratch[j].0 .0.id() == mailbox.id() {
                let entry = &scratch[j].1;
                granted = granted.max(entry.options.qos);
                retain_as_published |= entry.options.retain_as_published;
                no_local &= entry.options.no_local;
                if let Some(id) = entry.id {
                    ids.push(id);
                }
                j += 1;
            }
            let skip = no_local && mailbox.id() == message.origin;
            if !skip {
                let delivery = Delivery {
                    qos: message.qos.min(granted),
                    retain: retain_as_published && message.retain,
                    subscription_ids: ids,
                    message: message.clone(),
                };
                match mailbox.push(delivery) {
                    Ok(()) => queued += 1,
                    Err(Dropped::QueueFull) => Stats::bump(&stats.dropped_queue_full),
                    Err(Dropped::OfflineQoS0) => Stats::bump(&stats.dropped_offline_qos0),
                    Err(Dropped::Closed) => {}
                }
            }
            i = j;
        }
        scratch.clear();
        queued
    }

    /// Adds or replaces a subscription; true if it is new.
    pub fn subscribe(&self, filter: &str, subscriber: Subscriber, entry: SubEntry) -> bool {
        self.trie
            .write()
            .subscribe(filter, subscriber, entry)
            .is_none()
    }

    /// Removes a subscription; true if it existed.
    pub fn unsubscribe(&self, filter: &str, subscriber: &Subscriber) -> bool {
        self.trie.write().unsubscribe(filter, subscriber).is_some()
    }

    /// Removes every listed subscription of `subscriber` at once.
    pub fn unsubscribe_all<'a>(
        &self,
        filters: impl Iterator<Item = &'a str>,
        subscriber: &Subscriber,
    ) {
        let mut trie = self.trie.write();
        for filter in filters {
            trie.unsubscribe(filter, subscriber);
        }
    }

    /// Appends the retained messages matching `filter` to `out`.
    pub fn retained(&self, filter: &str, out: &mut Vec<Arc<Message>>) {
        self.retained.read().matching(filter, out);
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.trie.read().len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }
}
