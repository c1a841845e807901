//! Fan-out: one published message into every matching session's mailbox, and the retained store.
//!
//! Wraps the router's plain data structures in reader/writer locks that are held only for a
//! lookup or an update, never across an await. A publish takes the subscriptions' read lock
//! once, fills per-thread scratch buffers (ordinary matches, and in each shared-subscription
//! group that matches, the member the configured [`ShareStrategy`] picks, in O(1)), releases
//! the lock, then pushes one [`Delivery`] per subscriber and per picked member (the message is
//! shared; per subscriber only an `Arc` count and a queue slot are spent). Every owner that must answer
//! before the publisher is (a full queue, an in-process owner) takes a ticket from the caller's
//! [`TicketSource`]: the acknowledgement gate.

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::broker::clients::SubscriptionRow;
use crate::gate::TicketSource;
use crate::metrics::stats::{DropReason, Stats};
use crate::protocol::topic::SHARE_PREFIX;
use crate::protocol::QoS;
use crate::router::shared::Picked;
use crate::router::{
    parse_share, RetainedStore, ShareStrategy, SharedSubscriptions, SubscriptionTrie,
};
use crate::session::mailbox::{Delivery, Dropped, Mailbox, Message, Refused, Subscriber};
use crate::session::SubEntry;
use crate::store::{Change, SessionStore};

/// Matches of one publish.
type MatchBuf = Vec<(Subscriber, SubEntry)>;

/// The members picked in the shared-subscription groups matching one publish.
type GroupBuf = Vec<Picked<Subscriber, SubEntry>>;

thread_local! {
    /// Each worker thread's buffer for the matches of the publish it routes: reused, so a
    /// publish allocates nothing, and not kept per connection, so idle connections stay small.
    static MATCHES: std::cell::RefCell<MatchBuf> = const { std::cell::RefCell::new(Vec::new()) };
    /// The same for the members picked in the shared-subscription groups a publish matches.
    static GROUPS: std::cell::RefCell<GroupBuf> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Ordinary and shared subscriptions, under one lock.
#[derive(Default)]
struct Subscriptions {
    plain: SubscriptionTrie<Subscriber, SubEntry>,
    shared: SharedSubscriptions<Subscriber, SubEntry>,
    /// Every subscription by (session's mailbox id, filter), ordinary and shared under their
    /// full filter: one session's are one run of this B-tree, in filter order, which the admin
    /// API's listing of one client reads instead of walking the trie. One tree for all sessions,
    /// not one per session: a session with one subscription pays for its row, not for a node.
    /// Kept with the trie by [`Subscriptions::subscribe`] and [`Subscriptions::unsubscribe`],
    /// the only ways in and out. (A session's own copy lives in its connection task or the
    /// store, out of reach of the admin API.)
    by_session: BTreeMap<(u64, Box<str>), SubEntry>,
}

/// Subscriptions and retained messages of the whole broker.
#[derive(Default)]
pub struct Router {
    trie: RwLock<Subscriptions>,
    retained: RwLock<RetainedStore<Arc<Message>>>,
    /// The durable store that retained messages are journalled in, if any.
    journal: Option<Arc<dyn SessionStore>>,
    /// How a shared subscription's member is chosen.
    strategy: ShareStrategy,
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

    /// The same router choosing shared subscriptions' members by `strategy`.
    pub fn with_strategy(self, strategy: ShareStrategy) -> Router {
        Router { strategy, ..self }
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
        let mut groups = GROUPS.with(|g| std::mem::take(&mut *g.borrow_mut()));
        let routed = self.route(message, tickets, &mut scratch, &mut groups, stats);
        scratch.clear();
        groups.clear();
        MATCHES.with(|m| *m.borrow_mut() = scratch);
        GROUPS.with(|g| *g.borrow_mut() = groups);
        routed
    }

    fn route(
        &self,
        message: Arc<Message>,
        tickets: &mut TicketSource<'_>,
        scratch: &mut MatchBuf,
        groups: &mut GroupBuf,
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
        groups.clear();
        {
            let subscriptions = self.trie.read();
            subscriptions.plain.matches(message.topic(), scratch);
            if !subscriptions.shared.is_empty() {
                // Picked under the lock (O(1) a group): no group outlives it, so a join or
                // leave never copies one.
                subscriptions.shared.pick_matching(
                    self.strategy,
                    message.topic(),
                    message.publisher.as_deref(),
                    |m| m.0.is_available(),
                    groups,
                );
            }
        }
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
                    share: None,
                };
                matched += 1;
                push(mailbox, delivery, tickets, stats);
            }
            i = j;
        }
        // One copy per matching shared subscription, to one of its members; a member's own
        // ordinary subscriptions got theirs above.
        for (member, entry, key) in groups.drain(..) {
            let mut delivery = Delivery::new(message.clone(), QoS::AtMostOnce, false);
            delivery.share = Some(key);
            aim(&mut delivery, &entry);
            matched += 1;
            self.push_shared(&member, delivery, tickets, stats);
        }
        matched
    }

    /// Queues a shared subscription's `delivery` for `member`. A member picked just before
    /// its session ended (it has left its groups, then closed its mailbox) is passed over:
    /// another member of the group gets the delivery, as the ended session's queue does.
    fn push_shared(
        &self,
        member: &Subscriber,
        delivery: Delivery,
        tickets: &mut TicketSource<'_>,
        stats: &Stats,
    ) {
        match member.0.offer(delivery, tickets) {
            Ok(_) => {}
            Err(Refused {
                why: Dropped::Closed,
                delivery,
            }) => self.redispatch(delivery, tickets, stats),
            Err(Refused { why, delivery }) => count_dropped(why, delivery.qos as u8, stats),
        }
    }

    /// Gives a delivery made through a shared subscription to another member of its group
    /// (its member's session ended before acknowledging it), counted in `shared_redispatched`.
    /// When no member is left (or the few picked had ended too) the delivery is dropped and
    /// counted (`no_subscribers`); a member's full queue drops and counts it as a queue does.
    /// A delivery that was not made through a shared subscription is dropped uncounted.
    pub fn redispatch(
        &self,
        mut delivery: Delivery,
        tickets: &mut TicketSource<'_>,
        stats: &Stats,
    ) {
        let Some(key) = delivery.share.clone() else {
            return;
        };
        let message = delivery.message.clone();
        let publisher = message.publisher.as_deref();
        for _ in 0..REDISPATCH_PICKS {
            let picked = self.trie.read().shared.group(&key).and_then(|group| {
                group
                    .pick(self.strategy, message.topic(), publisher, |m| {
                        m.0.is_available()
                    })
                    .map(|(member, entry)| (member.clone(), *entry))
            });
            let Some((member, entry)) = picked else {
                break;
            };
            aim(&mut delivery, &entry);
            match member.0.offer(delivery, tickets) {
                Ok(_) => {
                    Stats::bump(&stats.shared_redispatched);
                    return;
                }
                // Picked as its session ended too (the group had not been told yet).
                Err(Refused {
                    why: Dropped::Closed,
                    delivery: back,
                }) => delivery = back,
                Err(Refused { why, delivery }) => {
                    return count_dropped(why, delivery.qos as u8, stats);
                }
            }
        }
        stats.dropped(DropReason::NoSubscribers, delivery.qos as u8);
    }

    /// Adds or replaces a subscription; true if it is new.
    /// A `$share/{group}/{filter}` filter (already validated) joins its group.
    pub fn subscribe(&self, filter: &str, subscriber: Subscriber, entry: SubEntry) -> bool {
        self.trie.write().subscribe(filter, subscriber, entry)
    }

    /// Tells the shared-subscription groups of `subscriber` (if it is a member of any) whether
    /// its session is now connected; called after every change of its mailbox's availability.
    /// A session in no group costs one look-up under the read lock.
    pub fn connection_changed(&self, subscriber: &Subscriber) {
        if !self.trie.read().shared.is_member(subscriber) {
            return;
        }
        let mut subscriptions = self.trie.write();
        // Read under the lock, after the change: whichever of this and a join (which reads it
        // too) comes last sees the latest state, so a group is never left with a stale one.
        let connected = subscriber.0.is_available();
        subscriptions.shared.set_connected(subscriber, connected);
    }

    /// Removes a subscription; true if it existed.
    pub fn unsubscribe(&self, filter: &str, subscriber: &Subscriber) -> bool {
        self.trie.write().unsubscribe(filter, subscriber)
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

    /// The first `limit` subscriptions whose filter starts with `prefix`, in (filter,
    /// subscriber's mailbox id) order after the key `after`, under the trie's read lock
    /// (publishers share it; only subscribers wait). Ordinary subscriptions come from an
    /// ordered walk of the trie that stops at the `limit`th row
    /// ([`SubscriptionTrie::walk_ordered`]); shared ones from a pass over the shared
    /// subscriptions (one per (group, filter), not per member), sorted, whose members are
    /// copied out until `limit` rows. The two runs are merged.
    pub fn subscriptions_page(
        &self,
        prefix: &str,
        after: Option<(&str, u64)>,
        limit: usize,
    ) -> Vec<SubscriptionRow> {
        let mut rows = Vec::new();
        if limit == 0 {
            return rows;
        }
        let row = |filter: &str, mailbox: u64, entry: &SubEntry| SubscriptionRow {
            filter: filter.into(),
            mailbox,
            entry: *entry,
        };
        let subscriptions = self.trie.read();
        let id = |s: &Subscriber| s.0.id();
        subscriptions
            .plain
            .walk_ordered(prefix, after, id, |filter, subscriber, entry| {
                rows.push(row(filter, id(subscriber), entry));
                match rows.len() < limit {
                    true => ControlFlow::Continue(()),
                    false => ControlFlow::Break(()),
                }
            });
        let shared_wanted = prefix.starts_with(SHARE_PREFIX) || SHARE_PREFIX.starts_with(prefix);
        if subscriptions.shared.is_empty() || !shared_wanted {
            return rows;
        }
        // Shared subscriptions under the filter their members subscribed with.
        let mut groups = Vec::new();
        subscriptions
            .shared
            .for_each_group(|group, filter, members| {
                let full = format!("{SHARE_PREFIX}{group}/{filter}");
                if full.starts_with(prefix) && after.is_none_or(|(af, _)| full.as_str() >= af) {
                    groups.push((full, members));
                }
            });
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut shared = 0;
        let mut members = Vec::new();
        'groups: for (full, group) in &groups {
            members.clear();
            members.extend(
                group
                    .iter()
                    .map(|(s, entry)| (id(s), entry))
                    .filter(|(m, _)| after.is_none_or(|(af, am)| full.as_str() != af || *m > am)),
            );
            members.sort_unstable_by_key(|(m, _)| *m);
            for (mailbox, entry) in &members {
                rows.push(row(full, *mailbox, entry));
                shared += 1;
                if shared == limit {
                    break 'groups;
                }
            }
        }
        drop(subscriptions);
        rows.sort_unstable_by(|a, b| (&*a.filter, a.mailbox).cmp(&(&*b.filter, b.mailbox)));
        rows.truncate(limit);
        rows
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

    /// The first `limit` subscriptions of the session with mailbox `mailbox` whose filter
    /// starts with `prefix`, in filter order from `start`: from the session's index,
    /// under the read lock, without walking the trie: a range of one B-tree, the rows
    /// copied and no other.
    pub fn subscriptions_of(
        &self,
        mailbox: u64,
        prefix: &str,
        start: Bound<&str>,
        limit: usize,
    ) -> Vec<SubscriptionRow> {
        // The filters starting with `prefix` are one run, from `prefix` on.
        let start = match start {
            Bound::Included(s) | Bound::Excluded(s) if s >= prefix => start,
            _ => Bound::Included(prefix),
        };
        let start = start.map(|s| (mailbox, Box::<str>::from(s)));
        let subscriptions = self.trie.read();
        subscriptions
            .by_session
            .range((start, Bound::Unbounded))
            .take_while(|((m, filter), _)| *m == mailbox && filter.starts_with(prefix))
            .take(limit)
            .map(|((_, filter), entry)| SubscriptionRow {
                filter: filter.clone(),
                mailbox,
                entry: *entry,
            })
            .collect()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        let subscriptions = self.trie.read();
        subscriptions.plain.len() + subscriptions.shared.len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }
}

impl Subscriptions {
    /// Adds or replaces a subscription, ordinary or shared; true if it is new.
    fn subscribe(&mut self, filter: &str, subscriber: Subscriber, entry: SubEntry) -> bool {
        let mailbox = subscriber.0.id();
        let new = match parse_share(filter) {
            None => self.plain.subscribe(filter, subscriber, entry).is_none(),
            Some(Ok((group, inner))) => {
                // Read under the write lock: whichever of this and the member's connection
                // change comes last sees the latest state.
                let connected = subscriber.0.is_available();
                self.shared
                    .subscribe(group, inner, subscriber, entry, connected)
            }
            Some(Err(_)) => return false,
        };
        self.by_session.insert((mailbox, filter.into()), entry);
        new
    }

    /// Removes a subscription, ordinary or shared; true if it existed.
    fn unsubscribe(&mut self, filter: &str, subscriber: &Subscriber) -> bool {
        let existed = match parse_share(filter) {
            None => self.plain.unsubscribe(filter, subscriber).is_some(),
            Some(Ok((group, inner))) => self.shared.unsubscribe(group, inner, subscriber),
            Some(Err(_)) => false,
        };
        if existed {
            self.by_session
                .remove(&(subscriber.0.id(), Box::<str>::from(filter)));
        }
        existed
    }
}

/// Sets what a shared subscription's `entry` decides of a `delivery` of its message to one
/// member: QoS, retain flag, subscription identifier (and a fresh place in the member's queue).
fn aim(delivery: &mut Delivery, entry: &SubEntry) {
    let message = &delivery.message;
    delivery.qos = message.qos.min(entry.options.qos);
    delivery.retain = entry.options.retain_as_published && message.retain;
    delivery.subscription_ids = entry.id.into_iter().collect();
    delivery.seq = 0;
}

/// Members a redispatched delivery tries before it is dropped as having no subscriber.
const REDISPATCH_PICKS: usize = 4;

/// Queues `delivery` for `mailbox`, counting it if it is dropped.
fn push(mailbox: &Mailbox, delivery: Delivery, tickets: &mut TicketSource<'_>, stats: &Stats) {
    let qos = delivery.qos as u8;
    if let Err(why) = mailbox.push(delivery, tickets) {
        count_dropped(why, qos, stats);
    }
}

/// Counts a delivery a mailbox did not take (a closed one: its session is gone, nothing to
/// count).
fn count_dropped(why: Dropped, qos: u8, stats: &Stats) {
    match why {
        Dropped::QueueFull => stats.dropped(DropReason::QueueFull, qos),
        Dropped::OfflineQoS0 => stats.dropped(DropReason::OfflineQoS0, qos),
        Dropped::Closed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::TicketSource;
    use crate::protocol::{PublishProperties, QoS, SubscriptionOptions};
    use crate::router::ShareKey;
    use crate::session::mailbox::{MailboxLimits, MessageParts};

    fn mailbox() -> Subscriber {
        Subscriber(Mailbox::new(Arc::new(MailboxLimits {
            max_messages: 10,
            max_bytes: 10_000,
            queue_qos0_offline: false,
        })))
    }

    fn entry(id: u32) -> SubEntry {
        SubEntry {
            options: Default::default(),
            id: Some(id),
        }
    }

    fn keys(rows: &[SubscriptionRow]) -> Vec<(String, u64, Option<u32>)> {
        rows.iter()
            .map(|r| (r.filter.to_string(), r.mailbox, r.entry.id))
            .collect()
    }

    /// One session's index gives the rows a walk of the whole trie gives for it, in the same
    /// order, and follows replacements and removals.
    #[test]
    fn one_sessions_index_agrees_with_the_trie() {
        let router = Router::default();
        let (a, b) = (mailbox(), mailbox());
        let filters = [
            "s/2",
            "$share/g/s/#",
            "s/1",
            "#",
            "s-x",
            "s/1/#",
            "$SYS/#",
            "+/+",
        ];
        for (n, filter) in filters.into_iter().enumerate() {
            router.subscribe(filter, a.clone(), entry(n as u32));
            router.subscribe(filter, b.clone(), entry(100));
        }
        // A replacement keeps one row, with the new options; a removal takes it out.
        assert!(!router.subscribe("s/2", a.clone(), entry(42)));
        assert!(router.unsubscribe("+/+", &a));
        assert!(!router.unsubscribe("+/+", &a));
        let id = a.0.id();
        for prefix in ["", "s/", "$", "zz"] {
            let mut walked = router.subscriptions_page(prefix, None, usize::MAX);
            walked.retain(|r| r.mailbox == id);
            let indexed = router.subscriptions_of(id, prefix, Bound::Unbounded, usize::MAX);
            assert_eq!(keys(&indexed), keys(&walked), "{prefix:?}");
        }
        let all = router.subscriptions_of(id, "", Bound::Unbounded, usize::MAX);
        assert_eq!(all.len(), filters.len() - 1);
        assert!(all
            .iter()
            .any(|r| &*r.filter == "s/2" && r.entry.id == Some(42)));
        // From a cursor: excluded or included, and a limit.
        let from = router.subscriptions_of(id, "", Bound::Excluded("s-x"), 2);
        assert_eq!(keys(&from)[0].0, "s/1");
        assert_eq!(from.len(), 2);
        let from = router.subscriptions_of(id, "s/", Bound::Included("s/1"), 9);
        assert_eq!(keys(&from)[0].0, "s/1");
        // Every subscription gone: the session leaves the index.
        for filter in filters {
            router.unsubscribe(filter, &a);
        }
        assert_eq!(router.trie.read().by_session.len(), filters.len());
        assert_eq!(
            router.subscriptions_of(id, "", Bound::Unbounded, 9).len(),
            0
        );
    }

    /// A group `$share/g/t/#` of two connected members, the first of which has just ended
    /// (left the group, mailbox closed), and a QoS 1 delivery picked for it.
    fn group_with_an_ended_member() -> (Router, Arc<Mailbox>, Arc<Mailbox>, Delivery) {
        let router = Router::default();
        let limits = Arc::new(MailboxLimits {
            max_messages: 10,
            max_bytes: 100_000,
            queue_qos0_offline: false,
        });
        let (gone, other) = (Mailbox::new(limits.clone()), Mailbox::new(limits));
        let entry = SubEntry {
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            },
            id: None,
        };
        for m in [&gone, &other] {
            m.set_online(true);
            assert!(router.subscribe("$share/g/t/#", Subscriber(m.clone()), entry));
        }
        assert!(router.unsubscribe("$share/g/t/#", &Subscriber(gone.clone())));
        gone.close();
        let properties = PublishProperties::default();
        let message = Message::new(
            MessageParts {
                topic: "t/x",
                payload: b"m",
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: &properties,
                origin: 0,
                publisher: None,
            },
            std::time::Instant::now(),
        );
        let mut delivery = Delivery::new(Arc::new(message), QoS::AtLeastOnce, false);
        delivery.share = Some(Arc::new(ShareKey {
            group: "g".into(),
            filter: "t/#".into(),
        }));
        (router, gone, other, delivery)
    }

    /// A member picked by a publish just before its session ended (it then left its groups
    /// and closed its mailbox): the delivery goes to another member, not into the closed
    /// mailbox and away.
    #[test]
    fn a_shared_delivery_for_a_member_whose_session_just_ended_goes_to_another() {
        let (router, gone, other, delivery) = group_with_an_ended_member();
        let stats = Stats::default();
        let mut tickets = TicketSource::none(1);
        router.push_shared(&Subscriber(gone.clone()), delivery, &mut tickets, &stats);
        assert_eq!((gone.len(), other.len()), (0, 1));
        assert_eq!(stats.snapshot().shared_redispatched, 1);
    }

    /// A shared delivery whose group has no member left to take it (the other ended too,
    /// still listed in the group) is dropped and counted, not lost silently.
    #[test]
    fn a_shared_delivery_no_member_can_take_is_counted_as_dropped() {
        let (router, gone, other, delivery) = group_with_an_ended_member();
        // Ended, but the group was not told yet.
        other.close();
        let stats = Stats::default();
        let mut tickets = TicketSource::none(1);
        router.push_shared(&Subscriber(gone.clone()), delivery, &mut tickets, &stats);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.shared_redispatched, 0);
        assert_eq!(snapshot.dropped_no_subscribers, 1);
    }
}
