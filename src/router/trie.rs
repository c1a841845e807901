//! The subscription trie: which subscribers' filters match a published topic name.
//!
//! This file owns the tree of topic-filter levels. Each node has literal children keyed by level
//! string, a separate `+` child, the subscribers whose filter ends with `#` at this node, and
//! the subscribers whose filter ends exactly at this node. Wildcard lookups therefore never hash.
//! Matching follows [`super::filter_matches`] (MQTT 4.7); shared subscriptions
//! (`$share/...`) are not special here — the caller strips the prefix.
//!
//! Depth: walks recurse once per `+` branch point and drops recurse per level, so the caller
//! should bound the number of levels in filters and topics (MQTT allows 65,535 bytes).

use std::hash::Hash;
use std::str::Split;

use ahash::AHashMap;

use super::subscribers::{shrink_if_sparse, Subscribers};
use super::topic_match::is_dollar;

/// A map from topic filters to subscribers, answering "who matches this topic name?".
///
/// `S` identifies a subscriber (compared by `Eq`/`Hash`); `V` is the per-subscription data.
/// A subscriber has at most one value per distinct filter string.
#[derive(Debug, Clone)]
pub struct SubscriptionTrie<S, V> {
    root: Node<S, V>,
    len: usize,
}

/// One level of the trie.
#[derive(Debug, Clone)]
struct Node<S, V> {
    /// Literal next levels.
    children: AHashMap<Box<str>, Node<S, V>>,
    /// The `+` next level.
    plus: Option<Box<Node<S, V>>>,
    /// Subscribers whose filter is this node's path followed by `/#` (or just `#` at the root).
    hash: Subscribers<S, V>,
    /// Subscribers whose filter ends exactly at this node.
    exact: Subscribers<S, V>,
}

impl<S, V> Default for Node<S, V> {
    fn default() -> Self {
        Self {
            children: AHashMap::new(),
            plus: None,
            hash: Subscribers::default(),
            exact: Subscribers::default(),
        }
    }
}

impl<S, V> Default for SubscriptionTrie<S, V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

/// Which slot of its node a filter's subscribers live in.
enum Slot {
    /// The filter ends at the node.
    Exact,
    /// The filter is the node's path followed by a final `#` level.
    Hash,
}

/// Splits a filter into the path of its node and its slot there. The path is `None` for the
/// root (filter `#`), else the filter without a final `/#`.
fn filter_path(filter: &str) -> (Option<&str>, Slot) {
    if filter == "#" {
        return (None, Slot::Hash);
    }
    match filter.strip_suffix("/#") {
        Some(parent) => (Some(parent), Slot::Hash),
        None => (Some(filter), Slot::Exact),
    }
}

/// The levels of a node path from [`filter_path`].
fn levels(path: Option<&str>) -> impl Iterator<Item = &str> {
    path.into_iter().flat_map(|p| p.split('/'))
}

impl<S: Clone + Eq + Hash, V: Clone> SubscriptionTrie<S, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, subscriber) subscriptions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no subscription is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `subscriber` to `filter` with `value`, replacing any value that subscriber already
    /// had for exactly this filter; returns that previous value.
    pub fn subscribe(&mut self, filter: &str, subscriber: S, value: V) -> Option<V> {
        let (path, slot) = filter_path(filter);
        let node = self.root.descend_or_create(levels(path));
        let previous = node.slot_mut(&slot).insert(subscriber, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes `subscriber`'s subscription to exactly `filter`; returns its value. Nodes left
    /// without subscribers or children are freed.
    pub fn unsubscribe(&mut self, filter: &str, subscriber: &S) -> Option<V> {
        let (path, slot) = filter_path(filter);
        let value = self.root.remove(levels(path), &slot, subscriber)?;
        self.len -= 1;
        Some(value)
    }

    /// The value `subscriber` has for exactly `filter`, if subscribed.
    pub fn get(&self, filter: &str, subscriber: &S) -> Option<&V> {
        let (path, slot) = filter_path(filter);
        self.root.descend(levels(path))?.slot(&slot).get(subscriber)
    }

    /// Appends to `out` (without clearing it) every (subscriber, value) whose filter matches the
    /// topic name `topic`. A subscriber with several matching filters appears once per filter.
    /// Allocates only by growing `out`.
    pub fn matches(&self, topic: &str, out: &mut Vec<(S, V)>) {
        self.root.collect(topic.split('/'), true, out);
    }

    /// Number of nodes below the root (0 when empty); for tests of pruning.
    #[doc(hidden)]
    pub fn node_count(&self) -> usize {
        self.root.count_below()
    }
}

impl<S: Clone + Eq + Hash, V: Clone> Node<S, V> {
    /// True when this node holds nothing and can be pruned.
    fn is_prunable(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.exact.is_empty()
    }

    fn slot(&self, slot: &Slot) -> &Subscribers<S, V> {
        match slot {
            Slot::Exact => &self.exact,
            Slot::Hash => &self.hash,
        }
    }

    fn slot_mut(&mut self, slot: &Slot) -> &mut Subscribers<S, V> {
        match slot {
            Slot::Exact => &mut self.exact,
            Slot::Hash => &mut self.hash,
        }
    }
}

impl<S: Clone + Eq + Hash, V: Clone> Node<S, V> {
    /// The node at `levels` below this one, created as needed.
    fn descend_or_create<'a>(&mut self, levels: impl Iterator<Item = &'a str>) -> &mut Self {
        let mut node = self;
        for level in levels {
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        node
    }

    /// The node at `levels` below this one, if it exists.
    fn descend<'a>(&self, levels: impl Iterator<Item = &'a str>) -> Option<&Self> {
        let mut node = self;
        for level in levels {
            node = if level == "+" {
                node.plus.as_deref()?
            } else {
                node.children.get(level)?
            };
        }
        Some(node)
    }

    /// Removes `subscriber` from `slot` of the node at `levels`, pruning nodes emptied on the
    /// way back up.
    fn remove<'a>(
        &mut self,
        mut levels: impl Iterator<Item = &'a str>,
        slot: &Slot,
        subscriber: &S,
    ) -> Option<V> {
        let Some(level) = levels.next() else {
            return self.slot_mut(slot).remove(subscriber);
        };
        if level == "+" {
            let child = self.plus.as_deref_mut()?;
            let value = child.remove(levels, slot, subscriber)?;
            if child.is_prunable() {
                self.plus = None;
            }
            Some(value)
        } else {
            let child = self.children.get_mut(level)?;
            let value = child.remove(levels, slot, subscriber)?;
            if child.is_prunable() {
                self.children.remove(level);
                shrink_if_sparse(&mut self.children);
            }
            Some(value)
        }
    }

    /// Appends the subscribers matching the remaining topic `levels` below this node.
    ///
    /// Follows a single matching branch in a loop and recurses only where both a literal and
    /// a `+` child match, to keep the stack shallow.
    fn collect(&self, mut levels: Split<'_, char>, mut at_root: bool, out: &mut Vec<(S, V)>) {
        let mut node = self;
        loop {
            let Some(level) = levels.next() else {
                node.exact.append_to(out);
                node.hash.append_to(out);
                return;
            };
            let wildcards = !(at_root && is_dollar(level));
            if wildcards {
                node.hash.append_to(out);
            }
            let literal = node.children.get(level);
            let plus = node.plus.as_deref().filter(|_| wildcards);
            node = match (literal, plus) {
                (Some(literal), Some(plus)) => {
                    plus.collect(levels.clone(), false, out);
                    literal
                }
                (Some(next), None) | (None, Some(next)) => next,
                (None, None) => return,
            };
            at_root = false;
        }
    }

    /// Number of nodes strictly below this one.
    fn count_below(&self) -> usize {
        let literal: usize = self.children.values().map(|c| 1 + c.count_below()).sum();
        let plus = self.plus.as_deref().map_or(0, |p| 1 + p.count_below());
        literal + plus
    }
}
