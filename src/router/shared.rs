//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0 section 4.8.2): the parsing of a
//! share name, the groups of members that subscribe to one (group, filter) pair, and the
//! choice of the one member that receives each message.
//!
//! A [`Group`] is changed in place under the broker's write lock, and a publish picks its
//! member under the read lock ([`SharedSubscriptions::pick_matching`]) with one atomic operation
//! at most, allocating nothing. A group is kept in an `Arc`: one handed out by
//! [`SharedSubscriptions::matches`] does not change under its holder (a join or leave then
//! changes a copy), though the broker holds none past its lock. The group's cursor (round
//! robin position, sticky member) is shared by its versions. The trie of groups is the plain
//! [`SubscriptionTrie`] keyed by group name.
//!
//! No operation looks through a group's members: a group indexes its members (member → place,
//! a leaving member's place taken by the last one) and keeps the list of those that are
//! connected, which the pick chooses from. This module knows nothing of sessions: the caller
//! says whether a member is connected when it joins, and again whenever that changes
//! ([`SharedSubscriptions::set_connected`], which finds the member's groups through an index
//! of its own); the pick also checks the member it chose with the caller's predicate, for a
//! change not told yet.

use std::cell::Cell;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ahash::AHashMap;
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
    /// The same member while it stays connected; another connected one when it is not.
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

/// Where a member not connected stands in [`Group::connected`]: nowhere.
const OFFLINE: usize = usize::MAX;

/// How many connected members a pick looks at, at most, past one whose connection has ended
/// without the group having been told yet (see [`Group::pick`]).
const PROBES: usize = 4;

/// The members of one shared subscription, each with its subscription's value, indexed so that
/// a member joins, leaves, connects or disconnects in O(1) (amortised: one hash map operation)
/// and a pick never looks through the members.
#[derive(Debug, Clone)]
pub struct Group<M, V> {
    key: Arc<ShareKey>,
    /// In no particular order: a member leaving is replaced by the last one (swap remove).
    members: Vec<(M, V)>,
    /// For each member (same index): its place in `connected`, or [`OFFLINE`].
    places: Vec<usize>,
    /// Where each member is in `members`.
    index: AHashMap<M, usize>,
    /// The indexes (in `members`) of the connected members, in no particular order.
    connected: Vec<usize>,
    /// Round robin: the next turn; sticky: the current member's index.
    cursor: Arc<AtomicUsize>,
}

impl<M: Eq + Clone + Hash, V: Clone> Group<M, V> {
    fn new(key: Arc<ShareKey>) -> Self {
        Self {
            key,
            members: Vec::new(),
            places: Vec::new(),
            index: AHashMap::default(),
            connected: Vec::new(),
            cursor: Arc::new(AtomicUsize::new(0)),
        }
    }

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

    /// Number of members marked connected.
    pub fn connected_len(&self) -> usize {
        self.connected.len()
    }

    /// True if `member` is one.
    pub fn contains(&self, member: &M) -> bool {
        self.index.contains_key(member)
    }

    /// Adds `member` (or replaces its value), marked connected or not; true if it was one
    /// already.
    fn add(&mut self, member: M, value: V, connected: bool) -> bool {
        let (existed, at) = match self.index.get(&member) {
            Some(&at) => {
                self.members[at].1 = value;
                (true, at)
            }
            None => {
                let at = self.members.len();
                self.index.insert(member.clone(), at);
                self.members.push((member, value));
                self.places.push(OFFLINE);
                (false, at)
            }
        };
        self.mark(at, connected);
        existed
    }

    /// Removes `member`; true if it was one. The last member takes its place.
    fn remove(&mut self, member: &M) -> bool {
        let Some(at) = self.index.remove(member) else {
            return false;
        };
        self.mark(at, false);
        let last = self.members.len() - 1;
        self.members.swap_remove(at);
        self.places.swap_remove(at);
        // The sticky member moves with its slot (a round-robin turn is moved too: harmless).
        if at != last && self.cursor.load(Ordering::Relaxed) == last {
            self.cursor.store(at, Ordering::Relaxed);
        }
        if let Some((moved, _)) = self.members.get(at) {
            if let Some(slot) = self.index.get_mut(moved) {
                *slot = at;
            }
            if let Some(place) = self.connected.get_mut(self.places[at]) {
                *place = at;
            }
        }
        true
    }

    /// Marks `member` connected or not; false if it is no member.
    fn set_connected(&mut self, member: &M, connected: bool) -> bool {
        match self.index.get(member) {
            Some(&at) => {
                self.mark(at, connected);
                true
            }
            None => false,
        }
    }

    /// Puts the member at `at` into the connected list or takes it out (swap remove).
    fn mark(&mut self, at: usize, connected: bool) {
        let place = self.places[at];
        if connected && place == OFFLINE {
            self.places[at] = self.connected.len();
            self.connected.push(at);
        } else if !connected && place != OFFLINE {
            self.connected.swap_remove(place);
            if let Some(&moved) = self.connected.get(place) {
                self.places[moved] = place;
            }
            self.places[at] = OFFLINE;
        }
    }

    /// The member that receives a message under `strategy`: among the connected members, by
    /// the strategy's turn, hash or random number over them (sticky: the current member while
    /// it is connected); if none is connected, the strategy's choice among all members (an
    /// offline persistent member keeps it queued). `available` checks the member chosen: one
    /// whose connection ended since the group was told is passed over for the next connected
    /// member (a few at most). `topic` and `publisher` feed the hash strategies. Looks at no
    /// other member, allocates nothing; one atomic operation at most.
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
        let choice = match strategy {
            ShareStrategy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed),
            ShareStrategy::Random => random_index(),
            ShareStrategy::Sticky => self.cursor.load(Ordering::Relaxed),
            ShareStrategy::HashClientId => stable_hash(publisher.unwrap_or("")),
            ShareStrategy::HashTopic => stable_hash(topic),
        };
        let c = self.connected.len();
        if c == 0 {
            return self.members.get(choice % n);
        }
        if strategy == ShareStrategy::Sticky {
            let current = choice % n;
            if self.places[current] != OFFLINE && available(&self.members[current].0) {
                return self.members.get(current);
            }
        }
        let start = choice % c;
        let chosen = (0..c.min(PROBES))
            .map(|k| self.connected[(start + k) % c])
            .find(|&at| available(&self.members[at].0))
            .unwrap_or(self.connected[start]);
        if strategy == ShareStrategy::Sticky {
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

/// A member picked for a message: who, its subscription's value, and the subscription.
pub type Picked<M, V> = (M, V, Arc<ShareKey>);

/// A group a member is in: its name (the trie's key) and its subscription.
type Membership = (Arc<str>, Arc<ShareKey>);

/// Every shared subscription of the broker: a trie of topic filters whose subscribers are the
/// groups (keyed by share name), and for each member the groups it is in.
pub struct SharedSubscriptions<M, V> {
    trie: SubscriptionTrie<Arc<str>, Arc<Group<M, V>>>,
    /// Each member's groups (name and key), so that its connection's state reaches them.
    by_member: AHashMap<M, Vec<Membership>>,
    /// Members over all groups.
    members: usize,
}

impl<M, V> Default for SharedSubscriptions<M, V> {
    fn default() -> Self {
        Self {
            trie: SubscriptionTrie::default(),
            by_member: AHashMap::default(),
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

    /// True if `member` is in some group.
    pub fn is_member(&self, member: &M) -> bool {
        self.by_member.contains_key(member)
    }

    /// Adds `member`, connected or not, to the group `group` of `filter` (or replaces its
    /// value); true if new. The group is changed in place (copied only while a reader still
    /// holds it).
    pub fn subscribe(
        &mut self,
        group: &str,
        filter: &str,
        member: M,
        value: V,
        connected: bool,
    ) -> bool {
        let name: Arc<str> = group.into();
        let (existed, key) = match self.trie.get_mut(filter, &name) {
            Some(current) => {
                let current = Arc::make_mut(current);
                let existed = current.add(member.clone(), value, connected);
                (existed, current.key.clone())
            }
            None => {
                let key = Arc::new(ShareKey {
                    group: group.into(),
                    filter: filter.into(),
                });
                let mut new = Group::new(key.clone());
                new.add(member.clone(), value, connected);
                self.trie.subscribe(filter, name.clone(), Arc::new(new));
                (false, key)
            }
        };
        if !existed {
            self.members += 1;
            self.by_member.entry(member).or_default().push((name, key));
        }
        !existed
    }

    /// Removes `member` from the group `group` of `filter`; true if it was one. An emptied
    /// group leaves the trie.
    pub fn unsubscribe(&mut self, group: &str, filter: &str, member: &M) -> bool {
        let Some(current) = self.trie.get_mut(filter, group) else {
            return false;
        };
        // A look first: a non-member must not cost a copy of a group a reader holds.
        if !current.contains(member) {
            return false;
        }
        let current = Arc::make_mut(current);
        current.remove(member);
        let emptied = current.is_empty();
        self.members -= 1;
        if emptied {
            let name: Arc<str> = group.into();
            self.trie.unsubscribe(filter, &name);
        }
        if let Some(groups) = self.by_member.get_mut(member) {
            if let Some(at) = groups
                .iter()
                .position(|(n, k)| **n == *group && *k.filter == *filter)
            {
                groups.swap_remove(at);
            }
            if groups.is_empty() {
                self.by_member.remove(member);
            }
        }
        true
    }

    /// Marks `member` connected or not in every group it is in (as a join, changing each in
    /// place unless a reader holds it). Costs one hash look-up and, per group of the member,
    /// one trie look-up.
    pub fn set_connected(&mut self, member: &M, connected: bool) {
        let Some(groups) = self.by_member.get(member) else {
            return;
        };
        for (name, key) in groups {
            if let Some(group) = self.trie.get_mut(&key.filter, name) {
                if group.contains(member) {
                    Arc::make_mut(group).set_connected(member, connected);
                }
            }
        }
    }

    /// The group of a shared subscription, if it has members.
    pub fn group(&self, key: &ShareKey) -> Option<&Arc<Group<M, V>>> {
        self.trie.get(&key.filter, &*key.group)
    }

    /// Calls `f(group, filter, members)` once for every shared subscription, with its members
    /// and their values.
    pub fn for_each_group<'a>(&'a self, mut f: impl FnMut(&str, &str, &'a [(M, V)])) {
        self.trie
            .for_each(|filter, name, group| f(name, filter, &group.members));
    }

    /// Picks the member that receives a message on `topic` in every group whose filter
    /// matches it ([`Group::pick`]) and appends it to `out` (without clearing it), with its
    /// value and the group's subscription. Meant to run under the caller's read lock: no group
    /// is held past it, so that a join or leave never has to copy one. Allocates only by
    /// growing `out`.
    pub fn pick_matching(
        &self,
        strategy: ShareStrategy,
        topic: &str,
        publisher: Option<&str>,
        available: impl Fn(&M) -> bool,
        out: &mut Vec<Picked<M, V>>,
    ) {
        self.trie.for_each_match(topic, |group| {
            if let Some((member, value)) = group.pick(strategy, topic, publisher, &available) {
                out.push((member.clone(), value.clone(), group.key.clone()));
            }
        });
    }

    /// Appends every group whose filter matches `topic` to `out` (without clearing it): a
    /// version that a later join or leave does not change (it changes a copy instead).
    /// Allocates only by growing `out`.
    pub fn matches(&self, topic: &str, out: &mut Vec<Arc<Group<M, V>>>) {
        self.trie.match_values(topic, out);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

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

    /// Six picks from the group `g` of `t/+`, with the members `up` marked connected.
    fn picks(
        shared: &mut SharedSubscriptions<u8, ()>,
        strategy: ShareStrategy,
        up: &[u8],
    ) -> Vec<u8> {
        for m in 1..=3u8 {
            shared.set_connected(&m, up.contains(&m));
        }
        let mut out = Vec::new();
        shared.matches("t/x", &mut out);
        let group = &out[0];
        assert_eq!(group.connected_len(), up.len());
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
        assert!(shared.subscribe("g", "t/#", 1u8, (), true));
        let mut held = Vec::new();
        shared.matches("t/x", &mut held);
        assert!(shared.subscribe("g", "t/#", 2u8, (), false));
        assert!(
            !shared.subscribe("g", "t/#", 2u8, (), false),
            "a member already"
        );
        assert!(shared.unsubscribe("g", "t/#", &1u8));
        assert!(!shared.unsubscribe("g", "t/#", &1u8), "no longer a member");
        assert_eq!(held[0].len(), 1, "the held version keeps its members");
        assert_eq!(held[0].connected_len(), 1);
        let mut now = Vec::new();
        shared.matches("t/x", &mut now);
        assert_eq!(now[0].len(), 1);
        assert_eq!(now[0].connected_len(), 0);
        assert_eq!(shared.len(), 1);
        drop(held);
        drop(now);
        // Nobody holds it now: changed in place; the last member leaving removes the group.
        assert!(shared.unsubscribe("g", "t/#", &2u8));
        assert!(shared.is_empty());
        assert!(!shared.is_member(&2u8));
        let mut none = Vec::new();
        shared.matches("t/x", &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn strategies() {
        let mut shared = SharedSubscriptions::default();
        for m in 1..=3u8 {
            assert!(shared.subscribe("g", "t/+", m, (), false));
        }
        assert!(!shared.subscribe("g", "t/+", 2, (), false));
        assert_eq!(shared.len(), 3);
        assert_eq!(
            picks(&mut shared, ShareStrategy::RoundRobin, &[1, 2, 3]),
            [1, 2, 3, 1, 2, 3]
        );
        // Members not connected are skipped; with none connected the turn's member is kept.
        assert_eq!(
            picks(&mut shared, ShareStrategy::RoundRobin, &[2]),
            [2, 2, 2, 2, 2, 2]
        );
        assert_eq!(picks(&mut shared, ShareStrategy::RoundRobin, &[]).len(), 6);
        let sticky = picks(&mut shared, ShareStrategy::Sticky, &[1, 2, 3]);
        assert!(sticky.iter().all(|&m| m == sticky[0]));
        assert_eq!(picks(&mut shared, ShareStrategy::Sticky, &[3]), [3; 6]);
        assert_eq!(
            picks(&mut shared, ShareStrategy::Sticky, &[1, 2, 3]),
            [3; 6]
        );
        let by_client = picks(&mut shared, ShareStrategy::HashClientId, &[1, 2, 3]);
        assert!(by_client.iter().all(|&m| m == by_client[0]));
        let random = picks(&mut shared, ShareStrategy::Random, &[1, 3]);
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

    /// Checks that the group's indexes agree with each other and hold exactly `expected`,
    /// with exactly `up` connected.
    fn check(group: &Group<u32, u32>, expected: &HashSet<u32>, up: &HashSet<u32>) {
        assert_eq!(group.len(), expected.len());
        assert_eq!(group.index.len(), expected.len());
        assert_eq!(group.places.len(), expected.len());
        let mut seen = HashSet::new();
        for (at, (member, value)) in group.members.iter().enumerate() {
            assert_eq!(member, value, "each member keeps its own value");
            assert!(seen.insert(*member), "{member} twice");
            assert_eq!(group.index[member], at);
            match group.places[at] {
                OFFLINE => assert!(!up.contains(member), "{member} should be connected"),
                place => {
                    assert!(up.contains(member), "{member} should not be connected");
                    assert_eq!(group.connected[place], at);
                }
            }
        }
        assert_eq!(&seen, expected);
        assert_eq!(group.connected_len(), up.len());
    }

    #[test]
    fn joins_and_leaves_in_any_order_keep_every_member_once() {
        let mut shared = SharedSubscriptions::default();
        let (mut expected, mut up) = (HashSet::new(), HashSet::new());
        // A fixed pseudo-random sequence of joins, leaves, connects and disconnects of 64
        // candidates (xorshift: reproducible).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..4_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let member = (x % 64) as u32;
            match (x >> 8) % 4 {
                0 | 1 => {
                    let connected = (x >> 16).is_multiple_of(2);
                    let new = shared.subscribe("g", "t/#", member, member, connected);
                    assert_eq!(new, expected.insert(member), "step {step}");
                    if connected {
                        up.insert(member);
                    } else {
                        up.remove(&member);
                    }
                }
                2 => {
                    let was = shared.unsubscribe("g", "t/#", &member);
                    assert_eq!(was, expected.remove(&member), "step {step}");
                    up.remove(&member);
                }
                _ => {
                    let connected = !up.contains(&member);
                    shared.set_connected(&member, connected);
                    if connected && expected.contains(&member) {
                        up.insert(member);
                    } else {
                        up.remove(&member);
                    }
                }
            }
            assert_eq!(shared.len(), expected.len());
            let mut out = Vec::new();
            shared.matches("t/x", &mut out);
            match out.first() {
                Some(group) => check(group, &expected, &up),
                None => assert!(expected.is_empty()),
            }
        }
    }

    #[test]
    fn picks_only_among_connected_members() {
        let mut shared = SharedSubscriptions::default();
        for m in 0..10u32 {
            shared.subscribe("g", "t/#", m, m, m % 3 == 0);
        }
        let mut out = Vec::new();
        shared.matches("t/x", &mut out);
        let group = &out[0];
        // Round robin: each connected member (0, 3, 6, 9) in turn, the others never.
        let mut counts = [0; 10];
        for _ in 0..400 {
            let (m, _) = group
                .pick(ShareStrategy::RoundRobin, "t/x", None, |_| true)
                .expect("a member");
            counts[*m as usize] += 1;
        }
        assert_eq!(counts, [100, 0, 0, 100, 0, 0, 100, 0, 0, 100]);
        // A member whose connection ended before the group was told is passed over.
        let picked: HashSet<u32> = (0..40)
            .filter_map(|_| group.pick(ShareStrategy::RoundRobin, "t/x", None, |m| *m != 3))
            .map(|(m, _)| *m)
            .collect();
        assert_eq!(picked, HashSet::from([0, 6, 9]));
        drop(out);
        // None connected: each member in turn still (they are all offline alike).
        for m in (0..10).step_by(3) {
            shared.set_connected(&m, false);
        }
        let mut out = Vec::new();
        shared.matches("t/x", &mut out);
        let picked: HashSet<u32> = (0..10)
            .filter_map(|_| out[0].pick(ShareStrategy::RoundRobin, "t/x", None, |_| false))
            .map(|(m, _)| *m)
            .collect();
        assert_eq!(picked.len(), 10);
    }

    /// Sticky keeps its member while it is connected, also when the member that leaves makes
    /// it move to another slot (the last member takes the leaver's place).
    #[test]
    fn sticky_keeps_its_member_when_another_leaves() {
        let mut shared = SharedSubscriptions::default();
        for (m, up) in [(1u8, false), (2, false), (3, false), (4, true)] {
            shared.subscribe("g", "t/#", m, (), up);
        }
        let pick = |shared: &SharedSubscriptions<u8, ()>| {
            let mut out = Vec::new();
            shared.matches("t/x", &mut out);
            out[0]
                .pick(ShareStrategy::Sticky, "t/x", None, |_| true)
                .map(|(m, _)| *m)
        };
        assert_eq!(pick(&shared), Some(4), "the only connected member");
        for m in 1..=3 {
            shared.set_connected(&m, true);
        }
        assert_eq!(pick(&shared), Some(4), "sticky while connected");
        assert!(shared.unsubscribe("g", "t/#", &2));
        assert_eq!(pick(&shared), Some(4), "still, from the slot it moved to");
        assert!(shared.unsubscribe("g", "t/#", &4));
        assert!(matches!(pick(&shared), Some(1 | 3)), "another once it left");
    }

    #[test]
    fn pick_matching_picks_one_member_in_each_matching_group() {
        let mut shared = SharedSubscriptions::default();
        shared.subscribe("a", "t/#", 1u8, 10u8, true);
        shared.subscribe("a", "t/#", 2, 20, false);
        shared.subscribe("b", "t/+", 2, 21, false);
        shared.subscribe("c", "u/#", 3, 30, true);
        let mut out = Vec::new();
        shared.pick_matching(ShareStrategy::RoundRobin, "t/x", None, |_| true, &mut out);
        out.sort_by_key(|(m, v, _)| (*m, *v));
        let got: Vec<_> = out
            .iter()
            .map(|(m, v, key)| (*m, *v, &*key.group, &*key.filter))
            .collect();
        // Group a: its connected member; group b: its only member, offline.
        assert_eq!(got, [(1, 10, "a", "t/#"), (2, 21, "b", "t/+")]);
    }

    /// Tens of thousands of members: every operation touches a constant number of them. A
    /// scan over the members would make the joins and leaves quadratic (over a billion steps)
    /// and the picks look at every member.
    #[test]
    fn fifty_thousand_members_cost_no_scan() {
        const N: u32 = 50_000;
        let mut shared = SharedSubscriptions::default();
        for m in 0..N {
            assert!(shared.subscribe("g", "t/#", m, m, false));
        }
        // The last member connected: a scan from the turn would look at up to N members.
        shared.set_connected(&(N - 1), true);
        let mut out = Vec::new();
        shared.matches("t/x", &mut out);
        let looked = Cell::new(0u32);
        for _ in 0..1_000 {
            let (m, _) = out[0]
                .pick(ShareStrategy::RoundRobin, "t/x", None, |_| {
                    looked.set(looked.get() + 1);
                    true
                })
                .expect("a member");
            assert_eq!(*m, N - 1);
        }
        assert_eq!(looked.get(), 1_000, "one member looked at per pick");
        drop(out);
        // Leaving from the front (the worst case of a shifting Vec), then joining again.
        for m in 0..N {
            assert!(shared.unsubscribe("g", "t/#", &m));
        }
        assert_eq!(shared.len(), 0);
        assert!(shared.is_empty());
        for m in 0..N {
            assert!(shared.subscribe("g", "t/#", m, m, m % 2 == 0));
        }
        let mut out = Vec::new();
        shared.matches("t/x", &mut out);
        assert_eq!(out[0].len(), N as usize);
        assert_eq!(out[0].connected_len(), (N / 2) as usize);
    }
}
