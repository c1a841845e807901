//! The retained-message store: one value per topic name, looked up by topic filter.
//!
//! This file owns a tree of topic-name levels. A filter walks only the branches it can match:
//! literal levels are one hash lookup, `+` visits the children of one node, and a final `#`
//! collects one subtree. Matching follows [`super::filter_matches`] (MQTT 4.7), including that
//! a filter starting with a wildcard does not return topics starting with `$`.
//!
//! Depth: every walk (matching, removal with pruning, counting, drop) is a loop over an explicit
//! stack ([`super::walk`]), so a topic or filter of any depth is safe here; the broker's limit
//! on levels ([`crate::protocol::topic::MAX_TOPIC_LEVELS`]) is about cost, not stack.

use std::collections::hash_map;

use ahash::AHashMap;

use super::subscribers::shrink_if_sparse;
use super::topic_match::is_dollar;
use super::walk::{levels_of, next_level, take_for_drop, Levels, Stack};

/// Retained values keyed by topic name, answering "which retained values match this filter?".
pub struct RetainedStore<V> {
    root: Node<V>,
    len: usize,
}

impl<V> std::fmt::Debug for RetainedStore<V> {
    /// A summary: a derived `Debug` would recurse once per level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetainedStore")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// One topic level. The root is the level above the first, so it never holds a value.
struct Node<V> {
    value: Option<V>,
    /// Each child boxed: a level's table holds a name and a pointer per child, so a level
    /// with one child (`devices/{id}/status`) keeps a small table, not four node-sized buckets.
    children: AHashMap<Box<str>, Box<Node<V>>>,
}

impl<V> Drop for Node<V> {
    /// Drops the subtree without recursion: each node's children are moved onto an explicit
    /// stack (one entry a level) before the node goes, so every node is dropped as a leaf.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack: Stack<_> = Stack::new();
        stack.push(take_for_drop(&mut self.children).into_values());
        while let Some(top) = stack.last_mut() {
            match top.next() {
                Some(mut child) => {
                    if !child.children.is_empty() {
                        stack.push(take_for_drop(&mut child.children).into_values());
                    }
                }
                None => {
                    stack.pop();
                }
            }
        }
    }
}

/// A `+` level being matched: the children still to visit, and the filter levels after `+`.
struct Wildcard<'a, V> {
    children: hash_map::Iter<'a, Box<str>, Box<Node<V>>>,
    rest: Levels<'a>,
    /// At the root, `$` topics are not matched by a wildcard (MQTT-4.7.2-1).
    skip_dollar: bool,
}

impl<'a, V> Wildcard<'a, V> {
    fn of(node: &'a Node<V>, rest: Levels<'a>, at_root: bool) -> Self {
        Wildcard {
            children: node.children.iter(),
            rest,
            skip_dollar: at_root,
        }
    }

    /// The next child to visit.
    fn next_child(&mut self) -> Option<&'a Node<V>> {
        let skip_dollar = self.skip_dollar;
        self.children
            .by_ref()
            .find(|(level, _)| !(skip_dollar && is_dollar(level)))
            .map(|(_, child)| &**child)
    }
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            value: None,
            children: AHashMap::new(),
        }
    }
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> RetainedStore<V> {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored topics.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no topic is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` for `topic`, replacing and returning any previous value.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let node = self.root.descend_or_create(topic.split('/'));
        let previous = node.value.replace(value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes and returns the value for `topic`, freeing nodes left empty.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        // Down once: take the value, and note where the run of ancestors that removing it
        // leaves empty begins (`chain`: the depth of its top node).
        let mut node = &mut self.root;
        let mut depth = 0;
        let mut chain = None;
        for level in topic.split('/') {
            if depth > 0 {
                if node.value.is_none() && node.children.len() == 1 {
                    chain.get_or_insert(depth);
                } else {
                    chain = None;
                }
            }
            node = node.children.get_mut(level)?;
            depth += 1;
        }
        let value = node.value.take()?;
        self.len -= 1;
        if node.is_prunable() {
            // Down again to the parent of the emptied chain, and cut it off there.
            let top = chain.unwrap_or(depth);
            let mut parent = &mut self.root;
            for (i, level) in topic.split('/').enumerate() {
                if i + 1 == top {
                    parent.children.remove(level);
                    shrink_if_sparse(&mut parent.children);
                    break;
                }
                match parent.children.get_mut(level) {
                    Some(child) => parent = child,
                    None => break,
                }
            }
        }
        Some(value)
    }

    /// The value stored for exactly `topic`.
    #[must_use]
    pub fn get(&self, topic: &str) -> Option<&V> {
        self.root.descend(topic.split('/'))?.value.as_ref()
    }

    /// Appends to `out` (without clearing it) a clone of every value whose topic matches
    /// `filter`.
    pub fn matching(&self, filter: &str, out: &mut Vec<V>)
    where
        V: Clone,
    {
        self.root.collect(filter, out);
    }

    /// Number of nodes below the root (0 when empty); for tests of pruning.
    #[doc(hidden)]
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.root.count_below()
    }
}

impl<V> Node<V> {
    /// True when this node holds nothing and can be pruned.
    fn is_prunable(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }

    /// The node at `levels` below this one, created as needed.
    fn descend_or_create<'a>(&mut self, levels: impl Iterator<Item = &'a str>) -> &mut Self {
        let mut node = self;
        for level in levels {
            node = node.children.entry(level.into()).or_default();
        }
        node
    }

    /// The node at `levels` below this one, if it exists.
    fn descend<'a>(&self, levels: impl Iterator<Item = &'a str>) -> Option<&Self> {
        let mut node = self;
        for level in levels {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    /// Appends the values below this node (the root) whose topics match `filter`.
    ///
    /// Literal levels are followed in a loop; a `+` level leaves its node's children on an
    /// explicit stack (one entry a `+` level, inline for the first few) and visits them one by
    /// one, so the thread's stack never grows with depth.
    fn collect<'a>(&'a self, filter: &'a str, out: &mut Vec<V>)
    where
        V: Clone,
    {
        let mut wildcards: Stack<Wildcard<'a, V>> = Stack::new();
        let mut node = self;
        let mut levels = levels_of(filter);
        let mut at_root = true;
        loop {
            match next_level(levels) {
                None => out.extend(node.value.clone()),
                Some(("#", None)) => {
                    out.extend(node.value.clone());
                    node.collect_below(at_root, out);
                }
                Some(("+", rest)) => wildcards.push(Wildcard::of(node, rest, at_root)),
                Some((literal, rest)) => {
                    if let Some(child) = node.children.get(literal) {
                        node = child;
                        levels = rest;
                        at_root = false;
                        continue;
                    }
                }
            }
            // This branch is done: go on with the next child of the innermost `+`.
            loop {
                let Some(top) = wildcards.last_mut() else {
                    return;
                };
                if let Some(child) = top.next_child() {
                    node = child;
                    levels = top.rest;
                    at_root = false;
                    break;
                }
                wildcards.pop();
            }
        }
    }

    /// Appends every value strictly below this node; at the root, not those of `$` topics.
    ///
    /// A stack of the inner nodes still to visit: each visit takes the values of a node's
    /// children and pushes those that have children of their own (the stack grows with the
    /// width of the subtree, as `out` does, never with its depth).
    fn collect_below(&self, at_root: bool, out: &mut Vec<V>)
    where
        V: Clone,
    {
        let mut inner: Stack<&Self> = Stack::new();
        for (level, child) in &self.children {
            if !(at_root && is_dollar(level)) {
                child.take_values_into(out, &mut inner);
            }
        }
        while let Some(node) = inner.pop() {
            for child in node.children.values() {
                child.take_values_into(out, &mut inner);
            }
        }
    }

    /// One step of [`Self::collect_below`]: this node's value, and this node if it has
    /// children.
    fn take_values_into<'a>(&'a self, out: &mut Vec<V>, inner: &mut Stack<&'a Self>)
    where
        V: Clone,
    {
        out.extend(self.value.clone());
        if !self.children.is_empty() {
            inner.push(self);
        }
    }

    /// Number of nodes strictly below this one.
    fn count_below(&self) -> usize {
        let mut count = 0;
        let mut stack: Stack<&Self> = Stack::new();
        stack.push(self);
        while let Some(node) = stack.pop() {
            count += node.children.len();
            stack.extend(node.children.values().map(|c| &**c));
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::RetainedStore;
    use crate::router::filter_matches;
    use crate::router::test_support::{filter, on_small_stack, repeat_level, topic, CASES, DEEP};

    /// The sorted values `store` returns for `filter`.
    fn matching(store: &RetainedStore<u32>, filter: &str) -> Vec<u32> {
        let mut out = Vec::new();
        store.matching(filter, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn table() {
        for &(filter, topic, expected) in CASES {
            let mut store = RetainedStore::new();
            store.insert(topic, 7u32);
            let want = if expected { vec![7] } else { vec![] };
            assert_eq!(
                matching(&store, filter),
                want,
                "filter {filter:?} topic {topic:?}"
            );
        }
    }

    #[test]
    fn all_cases_in_one_store() {
        let mut store = RetainedStore::new();
        let mut model = BTreeMap::new();
        for (i, &(_, topic, _)) in CASES.iter().enumerate() {
            let v = u32::try_from(i).unwrap_or(0);
            store.insert(topic, v);
            model.insert(topic, v);
        }
        for &(filter, _, _) in CASES {
            let mut want: Vec<u32> = model
                .iter()
                .filter(|(t, _)| filter_matches(filter, t))
                .map(|(_, v)| *v)
                .collect();
            want.sort_unstable();
            assert_eq!(matching(&store, filter), want, "filter {filter:?}");
        }
    }

    #[test]
    fn dollar_topics_hidden_from_leading_wildcards() {
        let mut store = RetainedStore::new();
        store.insert("$SYS/x", 1u32);
        store.insert("$SYS", 2);
        store.insert("a/$SYS", 3);
        store.insert("x", 4);
        assert_eq!(matching(&store, "#"), vec![3, 4]);
        assert_eq!(matching(&store, "+"), vec![4]);
        assert_eq!(matching(&store, "+/x"), Vec::<u32>::new());
        assert_eq!(matching(&store, "+/+"), vec![3]);
        assert_eq!(matching(&store, "$SYS/#"), vec![1, 2]);
        assert_eq!(matching(&store, "$SYS/+"), vec![1]);
    }

    #[test]
    fn insert_replace_get_remove() {
        let mut store = RetainedStore::new();
        assert!(store.is_empty());
        assert_eq!(store.insert("a/b", 1u32), None);
        assert_eq!(store.insert("a", 2), None);
        assert_eq!(store.insert("a/b", 3), Some(1));
        assert_eq!(store.len(), 2);
        assert_eq!(store.get("a/b"), Some(&3));
        assert_eq!(store.get("a/"), None);
        assert_eq!(store.get("a/b/c"), None);
        assert_eq!(store.remove("a/b/c"), None);
        assert_eq!(store.remove("a/b"), Some(3));
        assert_eq!(store.remove("a/b"), None);
        assert_eq!(store.len(), 1);
        assert_eq!(store.node_count(), 1);
        assert_eq!(store.remove("a"), Some(2));
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 0);
    }

    #[test]
    fn appends_without_clearing() {
        let mut store = RetainedStore::new();
        store.insert("a", 1u32);
        let mut out = vec![9];
        store.matching("#", &mut out);
        assert_eq!(out, vec![9, 1]);
    }

    #[test]
    fn prunes_after_mass_remove() {
        let mut store = RetainedStore::new();
        let topics: Vec<String> = (0..500u32)
            .map(|i| format!("t/{}/{}/x", i % 7, i))
            .collect();
        for (i, t) in topics.iter().enumerate() {
            store.insert(t, i);
        }
        assert_eq!(
            matching_len(&store, "t/3/+/x"),
            topics.iter().filter(|t| t.starts_with("t/3/")).count()
        );
        for t in &topics {
            assert!(store.remove(t).is_some());
        }
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 0);
    }

    #[test]
    fn deep_topics_need_no_stack() {
        on_small_stack(|| {
            let deep = repeat_level("a", DEEP);
            let mut store = RetainedStore::new();
            store.insert(&deep, 1u32);
            store.insert(&repeat_level("b", DEEP), 2);
            store.insert("a", 3);
            store.insert(&format!("$SYS/{deep}"), 4);
            assert_eq!(store.node_count(), 3 * DEEP + 1);
            assert_eq!(matching(&store, &deep), vec![1]);
            assert_eq!(matching(&store, "#"), vec![1, 2, 3]);
            assert_eq!(matching(&store, "a/#"), vec![1, 3]);
            assert_eq!(matching(&store, "$SYS/#"), vec![4]);
            assert_eq!(matching(&store, &repeat_level("+", DEEP)), vec![1, 2]);
            assert_eq!(
                matching(&store, &format!("{}/#", repeat_level("+", 3))),
                vec![1, 2]
            );
            assert_eq!(store.get(&deep), Some(&1));
            assert_eq!(store.remove(&deep), Some(1));
            // The chain below `a` is gone; `a` holds a value.
            assert_eq!(store.node_count(), 2 * DEEP + 2);
            assert_eq!(store.remove(&repeat_level("b", DEEP)), Some(2));
            assert_eq!(store.node_count(), DEEP + 2);
            // Dropped with the deep `$SYS` chain still in it.
        });
    }

    #[test]
    fn remove_prunes_only_the_emptied_chain() {
        let mut store = RetainedStore::new();
        store.insert("a/b/c/d", 1u32);
        store.insert("a/b", 2);
        store.insert("a/b/x", 3);
        assert_eq!(store.node_count(), 5);
        assert_eq!(store.remove("a/b/c/d"), Some(1));
        assert_eq!(store.node_count(), 3);
        assert_eq!(store.remove("a/b"), Some(2));
        assert_eq!(store.node_count(), 3);
        assert_eq!(store.remove("a/b/x"), Some(3));
        assert_eq!(store.node_count(), 0);
    }

    fn matching_len(store: &RetainedStore<usize>, filter: &str) -> usize {
        let mut out = Vec::new();
        store.matching(filter, &mut out);
        out.len()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, u32),
        Remove(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => (topic(), any::<u32>()).prop_map(|(t, v)| Op::Insert(t, v)),
            1 => topic().prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn matching_like_naive(
            ops in prop::collection::vec(op(), 0..60),
            filters in prop::collection::vec(filter(), 1..20),
        ) {
            let mut store = RetainedStore::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(t, v) => {
                        let want = model.insert(t.clone(), v);
                        prop_assert_eq!(store.insert(&t, v), want);
                    }
                    Op::Remove(t) => {
                        let want = model.remove(&t);
                        prop_assert_eq!(store.remove(&t), want);
                    }
                }
                prop_assert_eq!(store.len(), model.len());
            }
            for f in &filters {
                let mut want: Vec<u32> = model
                    .iter()
                    .filter(|(t, _)| filter_matches(f, t))
                    .map(|(_, v)| *v)
                    .collect();
                want.sort_unstable();
                prop_assert_eq!(matching(&store, f), want, "filter {:?}", f);
            }
            for (t, v) in &model {
                prop_assert_eq!(store.get(t), Some(v));
            }
            for t in model.keys() {
                prop_assert!(store.remove(t).is_some());
            }
            prop_assert!(store.is_empty());
            prop_assert_eq!(store.node_count(), 0);
        }
    }
}
