//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0 section 4.8.2): the parsing of a
//! share name, the groups of members that subscribe to one (group, filter) pair, and the
//! choice of the one member that receives each message.
//!
//! A [`Group`] is shared (`Arc`) with the publishes that matched it: a member joining or leaving
//! changes it in place under the broker's write lock, or changes a copy if a publish still holds
//! the old one (copy on write), so that a publish picks a member with one atomic operation at
//! most, allocating nothing, and never sees a group change under it. The group's cursor (round
//! robin position, sticky member) is shared by its versions. The trie of groups is the plain
//! [`SubscriptionTrie`] keyed by group name; which members are available (connected) is the
//! caller's predicate: this module knows nothing of sessions.

use std::cell::Cell;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::SubscriptionTrie;
pub use crate::protocol::topic::{parse_share, ShareNameError, SHARE_PREFIX};

/// How a group's member is chosen for a message (`mqtt.shared_subscription_strategy`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShareStrategy {
    /// Each member in turn.
    #[default]
    RoundRobin,
    /// A member at random.
    Random,
    /// The same member while it stays available; the next one when it is not.
    Sticky,
    /// A member chosen by a hash of the publisher's client id: one publisher's messages go to
    /// one member while membership and availability stay the same.
    HashClientId,
    /// A member chosen by a hash of the topic name: one topic's messages go to one member.
    HashTopic,
}

/// What identifies one shared subscription: its group name and topic filter. A delivery made
/// through it carries this, so that it can go to another member if its own leaves.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ShareKey {
    /// The share name.
    pub group: Box<str>,
    /// The topic filter after the share name.
    pub filter: Box<str>,
}

/// The members of one shared subscription, each with its subscription's value.
#[derive(Debug, Clone)]
pub struct Group<M, V> {
    key: Arc<ShareKey>,
    members: Vec<(M, V)>,
    /// Round robin: the next turn; sticky: the current member's index.
    cursor: Arc<AtomicUsize>,
}

impl<M: Eq + Clone, V: Clone> Group<M, V> {
    /// The subscription this group serves.
    pub fn key(&self) -> &Arc<ShareKey> {
        &self.key
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when no member is left (never stored so).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds `member` (or replaces its value); true if it was one already.
    fn add(&mut self, member: M, value: V) -> bool {
        match self.members.iter_mut().find(|(m, _)| *m == member) {
            Some(slot) => {
                slot.1 = value;
                true
            }
            None => {
                self.members.push((member, value));
                false
            }
        }
    }

    /// Removes `member`, if it is one.
    fn remove(&mut self, member: &M) {
        if let Some(index) = self.members.iter().position(|(m, _)| m == member) {
            self.members.remove(index);
        }
    }

    /// The member that receives a message under `strategy`: among the members for which
    /// `available` holds, starting from the strategy's choice; if none is available, the
    /// strategy's choice itself (an offline persistent member keeps it queued). `topic` and
    /// `publisher` feed the hash strategies. Allocates nothing; one atomic operation at most.
    pub fn pick(
        &self,
        strategy: ShareStrategy,
        topic: &str,
        publisher: Option<&str>,
        available: impl Fn(&M) -> bool,
    ) -> Option<&(M, V)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = match strategy {
            ShareStrategy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed),
            ShareStrategy::Random => random_index(),
            ShareStrategy::Sticky => self.cursor.load(Ordering::Relaxed),
            ShareStrategy::HashClientId => stable_hash(publisher.unwrap_or("")),
            ShareStrategy::HashTopic => stable_hash(topic),
        } % n;
        let chosen = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| available(&self.members[i].0))
            .unwrap_or(start);
        if strategy == ShareStrategy::Sticky && chosen != start {
            self.cursor.store(chosen, Ordering::Relaxed);
        }
        self.members.get(chosen)
    }
}

/// A hash of `s` that is the same for every call in this process.
fn stable_hash(s: &str) -> usize {
    let state = ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    );
    state.hash_one(s) as usize
}

thread_local! {
    /// Each thread's xorshift state for the random strategy (seeded once per thread).
    static RANDOM: Cell<u64> = Cell::new(getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15) | 1);
}

/// A cheap pseudo-random number (xorshift64*): spreading load needs no cryptography.
fn random_index() -> usize {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 16) as usize
    })
}

/// Every shared subscription of the broker: a trie of topic filters whose subscribers are the
/// groups (keyed by share name).
pub struct SharedSubscriptions<M, V> {
    trie: SubscriptionTrie<Arc<str>, Arc<Group<M, V>>>,
    /// Members over all groups.
    members: usize,
}

impl<M, V> Default for SharedSubscriptions<M, V> {
    fn default() -> Self {
        Self {
            trie: SubscriptionTrie::default(),
            members: 0,
        }
    }
}

impl<M: Eq + Clone + Hash, V: Clone> SharedSubscriptions<M, V> {
    /// Number of (member, shared subscription) pairs.
    pub fn len(&self) -> usize {
        self.members
    }

    /// True when nobody subscribes to a shared subscription.
    pub fn is_empty(&self) -> bool {
        self.members == 0
    }

    /// Adds `member` to the group `group` of `filter` (or replaces its value); true if new.
    /// The group is changed in place (copied only while a reader still holds it).
    pub fn subscribe(&mut self, group: &str, filter: &str, member: M, value: V) -> bool {
        let name: Arc<str> = group.into();
        let existed = match self.trie.get_mut(filter, &name) {
            Some(current) => Arc::make_mut(current).add(member, value),
            None => {
                let group = Group {
                    key: Arc::new(ShareKey {
                        group: group.into(),
                        filter: filter.into(),
                    }),
                    members: vec![(member, value)],
                    cursor: Arc::new(AtomicUsize::new(0)),
                };
                self.trie.subscribe(filter, name, Arc::new(group));
                false
            }
        };
        if !existed {
            self.members += 1;
        }
        !existed
    }

    /// Removes `member` from the group `group` of `filter`; true if it was one. An emptied
    /// group leaves the trie.
    pub fn unsubscribe(&mut self, group: &str, filter: &str, member: &M) -> bool {
        let name: Arc<str> = group.into();
        let Some(current) = self.trie.get_mut(filter, &name) else {
            return false;
        };
        // A look first: a non-member must not cost a copy of a group a reader holds.
        if !current.members.iter().any(|(m, _)| m == member) {
            return false;
        }
        let current = Arc::make_mut(current);
        current.remove(member);
        let emptied = current.is_empty();
        self.members -= 1;
        if emptied {
            self.trie.unsubscribe(filter, &name);
        }
        true
    }

    /// The group of a shared subscription, if it has members.
    pub fn group(&self, key: &ShareKey) -> Option<&Arc<Group<M, V>>> {
        let name: Arc<str> = (*key.group).into();
        self.trie.get(&key.filter, &name)
    }

    /// Calls `f(group, filter, members)` once for every shared subscription, with its members
    /// and their values.
    pub fn for_each_group<'a>(&'a self, mut f: impl FnMut(&str, &str, &'a [(M, V)])) {
        self.trie
            .for_each(|filter, name, group| f(name, filter, &group.members));
    }

    /// Appends every group whose filter matches `topic` to `out` (without clearing it).
    /// Allocates only by growing `out`.
    pub fn matches(&self, topic: &str, out: &mut Vec<Arc<Group<M, V>>>) {
        self.trie.match_values(topic, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_names() {
        assert_eq!(parse_share("a/b"), None);
        assert_eq!(parse_share("$share/g/a/+"), Some(Ok(("g", "a/+"))));
        assert_eq!(parse_share("$share/g/#"), Some(Ok(("g", "#"))));
        assert_eq!(parse_share("$share/g//"), Some(Ok(("g", "/"))));
        assert_eq!(
            parse_share("$share//a"),
            Some(Err(ShareNameError::EmptyGroup))
        );
        assert_eq!(
            parse_share("$share/"),
            Some(Err(ShareNameError::EmptyGroup))
        );
        assert_eq!(parse_share("$share/g"), Some(Err(ShareNameError::NoFilter)));
        assert_eq!(
            parse_share("$share/g/"),
            Some(Err(ShareNameError::NoFilter))
        );
        assert_eq!(
            parse_share("$share/+/a"),
            Some(Err(ShareNameError::WildcardInGroup))
        );
        assert_eq!(
            parse_share("$share/#/a"),
            Some(Err(ShareNameError::WildcardInGroup))
        );
    }

    fn picks(shared: &SharedSubscriptions<u8, ()>, strategy: ShareStrategy, up: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        shared.matches("t/x", &mut out);
        let group = &out[0];
        (0..6)
            .filter_map(|i| {
                let topic = format!("t/{i}");
                group
                    .pick(strategy, &topic, Some("pub"), |m| up.contains(m))
                    .map(|(m, _)| *m)
            })
            .collect()
    }

    #[test]
    fn a_group_held_by_a_publish_does_not_change_under_it() {
        let mut shared = SharedSubscriptions::default();
        assert!(shared.subscribe("g", "t/#", 1u8, ()));
        let mut held = Vec::new();
        shared.matches("t/x", &mut held);
        assert!(shared.subscribe("g", "t/#", 2u8, ()));
        assert!(!shared.subscribe("g", "t/#", 2u8, ()), "a member already");
        assert!(shared.unsubscribe("g", "t/#", &1u8));
        assert!(!shared.unsubscribe("g", "t/#", &1u8), "no longer a member");
        assert_eq!(held[0].len(), 1, "the held version keeps its members");
        let mut now = Vec::new();
        shared.matches("t/x", &mut now);
        assert_eq!(now[0].len(), 1);
        assert_eq!(shared.len(), 1);
        drop(held);
        drop(now);
        // Nobody holds it now: changed in place; the last member leaving removes the group.
        assert!(shared.unsubscribe("g", "t/#", &2u8));
        assert!(shared.is_empty());
        let mut none = Vec::new();
        shared.matches("t/x", &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn strategies() {
        let mut shared = SharedSubscriptions::default();
        for m in 1..=3u8 {
            assert!(shared.subscribe("g", "t/+", m, ()));
        }
        assert!(!shared.subscribe("g", "t/+", 2, ()));
        assert_eq!(shared.len(), 3);
        assert_eq!(
            picks(&shared, ShareStrategy::RoundRobin, &[1, 2, 3]),
            [1, 2, 3, 1, 2, 3]
        );
        // Unavailable members are skipped; with none available the turn's member is kept.
        assert_eq!(
            picks(&shared, ShareStrategy::RoundRobin, &[2]),
            [2, 2, 2, 2, 2, 2]
        );
        assert_eq!(picks(&shared, ShareStrategy::RoundRobin, &[]).len(), 6);
        let sticky = picks(&shared, ShareStrategy::Sticky, &[1, 2, 3]);
        assert!(sticky.iter().all(|&m| m == sticky[0]));
        assert_eq!(picks(&shared, ShareStrategy::Sticky, &[3]), [3; 6]);
        assert_eq!(picks(&shared, ShareStrategy::Sticky, &[1, 2, 3]), [3; 6]);
        let by_client = picks(&shared, ShareStrategy::HashClientId, &[1, 2, 3]);
        assert!(by_client.iter().all(|&m| m == by_client[0]));
        let random = picks(&shared, ShareStrategy::Random, &[1, 3]);
        assert!(random.iter().all(|&m| m == 1 || m == 3));
        assert!(shared.unsubscribe("g", "t/+", &2));
        assert!(!shared.unsubscribe("g", "t/+", &2));
        assert!(shared.unsubscribe("g", "t/+", &1));
        assert!(shared.unsubscribe("g", "t/+", &3));
        assert!(shared.is_empty());
        let mut out = Vec::new();
        shared.matches("t/x", &mut out);
        assert!(out.is_empty());
    }
}
