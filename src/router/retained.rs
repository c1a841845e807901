//! The retained-message store: one value per topic name, looked up by topic filter.
//!
//! This file owns a tree of topic-name levels. A filter walks only the branches it can match:
//! literal levels are one hash lookup, `+` visits the children of one node, and a final `#`
//! collects one subtree. Matching follows [`super::filter_matches`] (MQTT 4.7), including that
//! a filter starting with a wildcard does not return topics starting with `$`.
//!
//! Depth: walks and drops recurse per level, so the caller should bound topic levels.

use std::str::Split;

use ahash::AHashMap;

use super::subscribers::shrink_if_sparse;
use super::topic_match::is_dollar;

/// Retained values keyed by topic name, answering "which retained values match this filter?".
#[derive(Debug, Clone)]
pub struct RetainedStore<V> {
    root: Node<V>,
    len: usize,
}

/// One topic level. The root is the level above the first, so it never holds a value.
#[derive(Debug, Clone)]
struct Node<V> {
    value: Option<V>,
    children: AHashMap<Box<str>, Node<V>>,
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
        let value = self.root.remove(topic.split('/'))?;
        self.len -= 1;
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
        self.root.collect(filter.split('/'), true, out);
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

    /// Takes the value of the node at `levels`, pruning nodes emptied on the way back up.
    fn remove<'a>(&mut self, mut levels: impl Iterator<Item = &'a str>) -> Option<V> {
        let Some(level) = levels.next() else {
            return self.value.take();
        };
        let child = self.children.get_mut(level)?;
        let value = child.remove(levels)?;
        if child.is_prunable() {
            self.children.remove(level);
            shrink_if_sparse(&mut self.children);
        }
        Some(value)
    }

    /// The children a wildcard level may visit: all, except `$...` topics at the root.
    fn wildcard_children(&self, at_root: bool) -> impl Iterator<Item = &Self> {
        self.children
            .iter()
            .filter(move |(level, _)| !(at_root && is_dollar(level)))
            .map(|(_, child)| child)
    }

    /// Appends the values below this node matching the remaining filter `levels`.
    fn collect(&self, mut levels: Split<'_, char>, mut at_root: bool, out: &mut Vec<V>)
    where
        V: Clone,
    {
        let mut node = self;
        loop {
            let Some(level) = levels.next() else {
                out.extend(node.value.clone());
                return;
            };
            let is_last = levels.clone().next().is_none();
            match level {
                "#" if is_last => {
                    out.extend(node.value.clone());
                    for child in node.wildcard_children(at_root) {
                        child.collect_all(out);
                    }
                    return;
                }
                "+" => {
                    for child in node.wildcard_children(at_root) {
                        child.collect(levels.clone(), false, out);
                    }
                    return;
                }
                literal => match node.children.get(literal) {
                    Some(child) => node = child,
                    None => return,
                },
            }
            at_root = false;
        }
    }

    /// Appends this node's value and every value below it.
    fn collect_all(&self, out: &mut Vec<V>)
    where
        V: Clone,
    {
        out.extend(self.value.clone());
        for child in self.children.values() {
            child.collect_all(out);
        }
    }

    /// Number of nodes strictly below this one.
    fn count_below(&self) -> usize {
        self.children.values().map(|c| 1 + c.count_below()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::RetainedStore;
    use crate::router::filter_matches;
    use crate::router::test_support::{filter, topic, CASES};

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
