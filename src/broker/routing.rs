//! Fan-out: one published message into every matching session's mailbox, and the retained store.
//!
//! Wraps the router's plain data structures in reader/writer locks that are held only for a
//! lookup or an update, never across an await. A publish takes the trie's read lock once, fills a
//! per-thread scratch buffer, releases the lock, then pushes one [`Delivery`] per subscriber
//! (the message is shared; per subscriber only an `Arc` count and a queue slot are spent). Every
//! owner that must answer before the publisher is (a full queue, an in-process owner) takes a
//! ticket from the caller's [`TicketSource`]: the acknowledgement gate.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::gate::TicketSource;
use crate::metrics::stats::{DropReason, Stats};
use crate::protocol::QoS;
use crate::router::{RetainedStore, SubscriptionTrie};
use crate::session::mailbox::{Delivery, Dropped, Message, Subscriber};
use crate::session::SubEntry;
use crate::store::{Change, SessionStore};

/// Matches of one publish.
type MatchBuf = Vec<(Subscriber, SubEntry)>;

thread_local! {
    /// Each worker thread's buffer for the matches of the publish it routes: reused, so a
    /// publish allocates nothing, and not kept per connection, so idle connections stay small.
    static MATCHES: std::cell::RefCell<MatchBuf> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Subscriptions and retained messages of the whole broker.
#[derive(Default)]
pub struct Router {
    trie: RwLock<SubscriptionTrie<Subscriber, SubEntry>>,
    retained: RwLock<RetainedStore<Arc<Message>>>,
    /// The durable store that retained messages are journalled in, if any.
    journal: Option<Arc<dyn SessionStore>>,
}

impl Router {
    /// A router whose retained messages are journalled in `store` (`$`-topics excepted: the
    /// broker makes them).
    pub fn journalled(store: Arc<dyn SessionStore>) -> Router {
        Router {
            journal: Some(store),
            ..Router::default()
        }
    }

    /// Puts a retained message recovered from the store back (not journalled again).
    pub fn restore_retained(&self, message: Arc<Message>) {
        let topic = message.topic().to_owned();
        self.retained.write().insert(&topic, message);
    }

    /// Routes `message` to every matching subscription and updates the retained store when
    /// it carries the retain flag. Returns the number of sessions it matched (queued for them,
    /// or dropped and counted).
    pub fn publish(
        &self,
        message: Arc<Message>,
        tickets: &mut TicketSource<'_>,
        stats: &Stats,
    ) -> usize {
        // Taken out of the thread-local while in use (routing never nests, but this stays
        // correct if it did: the inner call would just start with an empty buffer).
        let mut scratch = MATCHES.with(|m| std::mem::take(&mut *m.borrow_mut()));
        let routed = self.route(message, tickets, &mut scratch, stats);
        scratch.clear();
        MATCHES.with(|m| *m.borrow_mut() = scratch);
        routed
    }

    fn route(
        &self,
        message: Arc<Message>,
        tickets: &mut TicketSource<'_>,
        scratch: &mut MatchBuf,
        stats: &Stats,
    ) -> usize {
        if message.retain {
            let mut retained = self.retained.write();
            let set = !message.payload().is_empty();
            if set {
                // The message owns its memory already: the store shares it.
                retained.insert(message.topic(), message.clone());
            } else {
                retained.remove(message.topic());
            }
            if let Some(store) = self
                .journal
                .as_ref()
                .filter(|_| !message.topic().starts_with('$'))
            {
                let ticket = if store.gates() { tickets.take() } else { None };
                store.record(
                    Change::Retained {
                        topic: message.topic().into(),
                        message: set.then(|| message.clone()),
                    },
                    ticket,
                );
            }
        }
        scratch.clear();
        self.trie.read().matches(message.topic(), scratch);
        // Overlapping subscriptions of one session must be merged; they exist only for a
        // session with several filters, so the common case (fan-out to many single-filter
        // devices) skips the sort that brings them together.
        if scratch.len() > 1 && scratch.iter().any(|(s, _)| s.0.may_match_twice()) {
            scratch.sort_unstable_by_key(|(s, _)| s.0.id());
        }
        let mut matched = 0;
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
            let skip = no_local && mailbox.origin() == message.origin;
            if !skip {
                let delivery = Delivery {
                    qos: message.qos.min(granted),
                    retain: retain_as_published && message.retain,
                    subscription_ids: ids,
                    message: message.clone(),
                    ticket: None,
                    seq: 0,
                };
                let qos = delivery.qos as u8;
                matched += 1;
                match mailbox.push(delivery, tickets) {
                    Ok(_) => {}
                    Err(Dropped::QueueFull) => stats.dropped(DropReason::QueueFull, qos),
                    Err(Dropped::OfflineQoS0) => stats.dropped(DropReason::OfflineQoS0, qos),
                    Err(Dropped::Closed) => {}
                }
            }
            i = j;
        }
        matched
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

    /// The subscriptions `wants` keeps (given the filter and the subscriber's mailbox id),
    /// copied out under the trie's read lock (publishers share it; only subscribers wait).
    pub fn subscriptions(
        &self,
        wants: impl Fn(&str, u64) -> bool,
    ) -> Vec<crate::broker::clients::SubscriptionRow> {
        let mut out = Vec::new();
        self.trie.read().for_each(|filter, subscriber, entry| {
            if wants(filter, subscriber.0.id()) {
                out.push(crate::broker::clients::SubscriptionRow {
                    filter: filter.into(),
                    mailbox: subscriber.0.id(),
                    entry: *entry,
                });
            }
        });
        out
    }

    /// The retained message of `topic`, if any.
    pub fn retained_get(&self, topic: &str) -> Option<Arc<Message>> {
        self.retained.read().get(topic).cloned()
    }

    /// Removes the retained message of `topic` (journalled, delivered to nobody); true if
    /// there was one.
    pub fn remove_retained(&self, topic: &str) -> bool {
        let mut retained = self.retained.write();
        if retained.remove(topic).is_none() {
            return false;
        }
        if let Some(store) = self.journal.as_ref().filter(|_| !topic.starts_with('$')) {
            store.record(
                Change::Retained {
                    topic: topic.into(),
                    message: None,
                },
                None,
            );
        }
        true
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
