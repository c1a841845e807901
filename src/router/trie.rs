//! The subscription trie: which subscribers' filters match a published topic name.
//!
//! This file owns the tree of topic-filter levels. Each node has literal children keyed by level
//! string, a separate `+` child, the subscribers whose filter ends with `#` at this node, and
//! the subscribers whose filter ends exactly at this node. Wildcard lookups therefore never hash.
//! Matching follows [`super::filter_matches`] (MQTT 4.7); shared subscriptions
//! (`$share/...`) are not special here — the caller strips the prefix.
//! Besides matching, the trie lists its subscriptions in filter order from a cursor
//! ([`SubscriptionTrie::walk_ordered`], the admin API's pages), entering only the nodes a page
//! needs.
//!
//! Depth: every walk (matching, removal with pruning, counting, drop) is a loop over an explicit
//! stack ([`super::walk`]), so a filter or topic of any depth is safe here; the broker's limit
//! on levels ([`crate::protocol::topic::MAX_TOPIC_LEVELS`]) is about cost, not stack.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;
use std::ops::ControlFlow;

use ahash::AHashMap;

use super::subscribers::{shrink_if_sparse, Subscribers};
use super::topic_match::is_dollar;
use super::walk::{take_for_drop, Stack};

/// A map from topic filters to subscribers, answering "who matches this topic name?".
///
/// `S` identifies a subscriber (compared by `Eq`/`Hash`); `V` is the per-subscription data.
/// A subscriber has at most one value per distinct filter string.
pub struct SubscriptionTrie<S, V> {
    root: Node<S, V>,
    len: usize,
}

impl<S, V> std::fmt::Debug for SubscriptionTrie<S, V> {
    /// A summary: a derived `Debug` would recurse once per level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// One level of the trie.
struct Node<S, V> {
    /// Literal next levels, each node boxed: a level's table holds a name and a pointer per
    /// child (24 bytes), so the many nodes with one child (`devices/{id}/...`) keep a small
    /// table instead of four node-sized buckets.
    children: AHashMap<Box<str>, Box<Node<S, V>>>,
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

impl<S, V> Node<S, V> {
    /// True when nothing hangs below this node.
    fn is_leaf(&self) -> bool {
        self.children.is_empty() && self.plus.is_none()
    }

    /// Moves this node's children out, leaving it a leaf.
    fn take_children(&mut self) -> Children<S, V> {
        Children {
            plus: self.plus.take(),
            literal: take_for_drop(&mut self.children).into_values(),
        }
    }
}

/// The children of a node being dropped, not yet dropped themselves.
struct Children<S, V> {
    plus: Option<Box<Node<S, V>>>,
    literal: std::collections::hash_map::IntoValues<Box<str>, Box<Node<S, V>>>,
}

impl<S, V> Iterator for Children<S, V> {
    type Item = Node<S, V>;

    fn next(&mut self) -> Option<Node<S, V>> {
        match self.plus.take() {
            Some(plus) => Some(*plus),
            None => self.literal.next().map(|child| *child),
        }
    }
}

impl<S, V> Drop for Node<S, V> {
    /// Drops the subtree without recursion: each node's children are moved onto an explicit
    /// stack (one entry a level) before the node goes, so every node is dropped as a leaf.
    fn drop(&mut self) {
        if self.is_leaf() {
            return;
        }
        let mut stack: Stack<Children<S, V>> = Stack::new();
        stack.push(self.take_children());
        while let Some(top) = stack.last_mut() {
            match top.next() {
                Some(mut child) => {
                    if !child.is_leaf() {
                        stack.push(child.take_children());
                    }
                }
                None => {
                    stack.pop();
                }
            }
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
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, subscriber) subscriptions stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no subscription is stored.
    #[must_use]
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
        // Down once: take the value, and note where the run of ancestors that removing it
        // leaves empty begins (`chain`: the depth of its top node).
        let mut node = &mut self.root;
        let mut depth = 0;
        let mut chain = None;
        for level in levels(path) {
            if depth > 0 {
                if node.holds_only_one_child() {
                    chain.get_or_insert(depth);
                } else {
                    chain = None;
                }
            }
            node = node.child_mut(level)?;
            depth += 1;
        }
        let value = node.slot_mut(&slot).remove(subscriber)?;
        self.len -= 1;
        if depth > 0 && node.is_prunable() {
            // Down again to the parent of the emptied chain, and cut it off there.
            let top = chain.unwrap_or(depth);
            let mut parent = &mut self.root;
            for (i, level) in levels(path).enumerate() {
                if i + 1 == top {
                    parent.remove_child(level);
                    break;
                }
                match parent.child_mut(level) {
                    Some(child) => parent = child,
                    None => break,
                }
            }
        }
        Some(value)
    }

    /// The value `subscriber` has for exactly `filter`, if subscribed.
    #[must_use]
    pub fn get<Q>(&self, filter: &str, subscriber: &Q) -> Option<&V>
    where
        S: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let (path, slot) = filter_path(filter);
        self.root.descend(levels(path))?.slot(&slot).get(subscriber)
    }

    /// The value `subscriber` has for exactly `filter`, to change in place.
    pub fn get_mut<Q>(&mut self, filter: &str, subscriber: &Q) -> Option<&mut V>
    where
        S: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let (path, slot) = filter_path(filter);
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.child_mut(level)?;
        }
        node.slot_mut(&slot).get_mut(subscriber)
    }

    /// Appends to `out` (without clearing it) every (subscriber, value) whose filter matches the
    /// topic name `topic`. A subscriber with several matching filters appears once per filter.
    /// Allocates only by growing `out`.
    pub fn matches(&self, topic: &str, out: &mut Vec<(S, V)>) {
        self.root
            .collect(topic, |subscribers| subscribers.append_to(out));
    }

    /// As [`SubscriptionTrie::matches`], the values only (no subscriber is cloned).
    pub fn match_values(&self, topic: &str, out: &mut Vec<V>) {
        self.root
            .collect(topic, |subscribers| subscribers.append_values_to(out));
    }

    /// Calls `f` with the value of every subscription whose filter matches the topic name
    /// `topic` (as [`SubscriptionTrie::match_values`], cloning none).
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&V)) {
        self.root
            .collect(topic, |subscribers| subscribers.for_each(|_, v| f(v)));
    }

    /// Calls `f` with every (filter, subscriber, value), walking the tree with an explicit
    /// stack; the filter is rebuilt in one reused string.
    pub fn for_each<'a>(&'a self, mut f: impl FnMut(&str, &'a S, &'a V)) {
        // (node, length of its parent's path, its level: None for the root, and whether its
        // parent is the root: a first level, even an empty one, has no '/' before it).
        type Entry<'a, S, V> = (&'a Node<S, V>, usize, Option<&'a str>, bool);
        let mut stack: Vec<Entry<'_, S, V>> = vec![(&self.root, 0, None, false)];
        let mut path = String::new();
        let mut hash_filter = String::new();
        while let Some((node, parent_len, level, first)) = stack.pop() {
            path.truncate(parent_len);
            if let Some(level) = level {
                if !first {
                    path.push('/');
                }
                path.push_str(level);
            }
            node.exact.for_each(|s, v| f(&path, s, v));
            if !node.hash.is_empty() {
                hash_filter.clear();
                if level.is_some() {
                    hash_filter.push_str(&path);
                    hash_filter.push('/');
                }
                hash_filter.push('#');
                node.hash.for_each(|s, v| f(&hash_filter, s, v));
            }
            let len = path.len();
            let root = level.is_none();
            if let Some(plus) = &node.plus {
                stack.push((plus, len, Some("+"), root));
            }
            for (key, child) in &node.children {
                stack.push((child, len, Some(key), root));
            }
        }
    }

    /// Calls `f` with (filter, subscriber, value) in (filter, `key(subscriber)`) order, filters
    /// compared as strings, for the filters that start with `prefix` and the keys after
    /// `after`, until `f` breaks. Only nodes that can hold a wanted filter are entered; a
    /// node's wanted children are ordered by a heap made in one pass over them and taken from it
    /// as the walk goes, and a filter's subscribers are sorted when it is reached. So a page
    /// that breaks after `n` rows costs the nodes on its way (with their children counted
    /// once) and those rows, not the whole trie. Returns the number of nodes entered.
    pub fn walk_ordered<K: Ord + Copy>(
        &self,
        prefix: &str,
        after: Option<(&str, K)>,
        key: impl Fn(&S) -> K,
        mut f: impl FnMut(&str, &S, &V) -> ControlFlow<()>,
    ) -> usize {
        let mut path = String::new();
        let mut stack = vec![Frame::new(&self.root, 0, true, prefix, after)];
        let mut entered = 1;
        let mut rows: Vec<(K, &S, &V)> = Vec::new();
        while let Some(frame) = stack.last_mut() {
            let Some(Reverse(part)) = frame.pending.pop() else {
                stack.pop();
                continue;
            };
            let subscribers = match part.kind {
                PartKind::Child => {
                    // A child is looked at only when its turn comes: its filter, then below it.
                    let child = part.node;
                    let exact = part.as_kind(PartKind::Exact);
                    if !child.exact.is_empty() && frame.keeps(&exact) {
                        frame.pending.push(Reverse(exact));
                    }
                    let below = part.as_kind(PartKind::Below);
                    if (!child.is_leaf() || !child.hash.is_empty()) && frame.keeps(&below) {
                        frame.pending.push(Reverse(below));
                    }
                    continue;
                }
                PartKind::Below => {
                    let (child_prefix, child_after) = frame.inside(&part);
                    part.filter_into(&mut path, frame.path_len, frame.root);
                    let len = path.len();
                    entered += 1;
                    stack.push(Frame::new(part.node, len, false, child_prefix, child_after));
                    continue;
                }
                PartKind::Hash => &part.node.hash,
                PartKind::Exact => &part.node.exact,
            };
            // The cursor's filter: only the subscribers after its key.
            let after = frame
                .after
                .filter(|(rest, _)| part.text_cmp(rest).is_eq())
                .map(|(_, k)| k);
            part.filter_into(&mut path, frame.path_len, frame.root);
            rows.clear();
            subscribers.for_each(|s, v| {
                let k = key(s);
                if after.is_none_or(|after| k > after) {
                    rows.push((k, s, v));
                }
            });
            rows.sort_unstable_by_key(|row| row.0);
            for (_, s, v) in &rows {
                if f(&path, s, v).is_break() {
                    return entered;
                }
            }
        }
        entered
    }

    /// Number of nodes below the root (0 when empty); for tests of pruning.
    #[doc(hidden)]
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.root.count_below()
    }
}

/// One node of an ordered walk: its parts not yet walked, smallest first, and what is wanted
/// of them. The prefix and the cursor are kept as what remains of them after the node's
/// `path/`, so that a part is judged by its name alone, without building its filter.
struct Frame<'a, 'w, S, V, K> {
    pending: BinaryHeap<Reverse<Part<'a, S, V>>>,
    /// Length of the node's path (its filter up to itself).
    path_len: usize,
    root: bool,
    /// The part names wanted start with this (or are a prefix of it, for `Below`).
    prefix: &'w str,
    /// The cursor, when it falls below this node: names before it are not wanted.
    after: Option<(&'w str, K)>,
}

impl<'a, 'w, S: Clone + Eq + Hash, V: Clone, K: Copy> Frame<'a, 'w, S, V, K> {
    /// The frame of `node`, whose path is `path_len` bytes long, with its hash subscribers and
    /// a placeholder per wanted child (a heap made in one pass, the children not looked into).
    fn new(
        node: &'a Node<S, V>,
        path_len: usize,
        root: bool,
        prefix: &'w str,
        after: Option<(&'w str, K)>,
    ) -> Self {
        let mut frame = Frame {
            pending: BinaryHeap::new(),
            path_len,
            root,
            prefix,
            after,
        };
        let mut parts = Vec::new();
        let hash = Part::new("#", PartKind::Hash, node);
        if !node.hash.is_empty() && frame.keeps(&hash) {
            parts.push(Reverse(hash));
        }
        let children = node
            .children
            .iter()
            .map(|(name, child)| (&**name, &**child));
        for (name, child) in children.chain(node.plus.as_deref().map(|plus| ("+", plus))) {
            let part = Part::new(name, PartKind::Child, child);
            if frame.keeps(&part) {
                parts.push(Reverse(part));
            }
        }
        frame.pending = BinaryHeap::from(parts);
        frame
    }

    /// True if `part` may hold wanted filters.
    fn keeps(&self, part: &Part<'_, S, V>) -> bool {
        // A child stands for its filter and the filters below it: kept if either may be.
        let below = matches!(part.kind, PartKind::Below | PartKind::Child);
        let as_below = match below {
            true => part.as_kind(PartKind::Below),
            false => *part,
        };
        let prefix_ok =
            as_below.starts_with(self.prefix) || (below && as_below.is_prefix_of(self.prefix));
        prefix_ok
            && self.after.is_none_or(|(rest, _)| {
                as_below.text_cmp(rest).is_ge() || (below && as_below.is_prefix_of(rest))
            })
    }

    /// The prefix and cursor below a `Below` part: what remains of them after its text, or
    /// nothing to filter when its filters all start with the prefix, or all follow the cursor.
    fn inside(&self, part: &Part<'_, S, V>) -> (&'w str, Option<(&'w str, K)>) {
        let len = part.name.len() + 1;
        let rest = |text: &'w str| part.is_prefix_of(text).then(|| &text[len..]);
        let prefix = rest(self.prefix).unwrap_or("");
        let after = self
            .after
            .and_then(|(text, k)| rest(text).map(|rest| (rest, k)));
        (prefix, after)
    }
}

/// What a part of a node's subtree holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PartKind {
    /// The node's `#` subscribers (filter `path/#`).
    Hash,
    /// A child not yet looked into: its filter and everything below it.
    Child,
    /// A child's exact subscribers (filter `path/name`).
    Exact,
    /// Everything below a child (filters `path/name/...`).
    Below,
}

/// A run of filters below one node, all in one string range that no other part of the node
/// overlaps (levels hold no '/'), named by its text after the node's `path/`: `#`, a child's
/// name, or a child's name and '/'. Ordering parts by that text orders their filters. (A
/// child's placeholder has its name's text, the smallest of its filters.)
struct Part<'a, S, V> {
    name: &'a str,
    kind: PartKind,
    /// The node holding the subscribers (the parent for `Hash`, the child otherwise).
    node: &'a Node<S, V>,
    /// The text's first 8 bytes, big-endian, zero-padded (no level holds U+0000): parts are
    /// mostly ordered by this alone, without reading their names again (a level of 100,000
    /// children is read once, not once per comparison).
    head: u64,
}

impl<S, V> Clone for Part<'_, S, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S, V> Copy for Part<'_, S, V> {}

impl<'a, S, V> Part<'a, S, V> {
    fn new(name: &'a str, kind: PartKind, node: &'a Node<S, V>) -> Self {
        let mut part = Part {
            name,
            kind,
            node,
            head: 0,
        };
        let mut head = [0u8; 8];
        for (i, byte) in head.iter_mut().enumerate() {
            *byte = part.byte_at(i).unwrap_or(0);
        }
        part.head = u64::from_be_bytes(head);
        part
    }

    /// The same child as another kind of part.
    fn as_kind(&self, kind: PartKind) -> Self {
        Part::new(self.name, kind, self.node)
    }

    fn slash(&self) -> bool {
        self.kind == PartKind::Below
    }

    /// The byte of the part's text at `at`, at most one past its name.
    fn byte_at(&self, at: usize) -> Option<u8> {
        match self.name.as_bytes().get(at) {
            Some(&b) => Some(b),
            None => (self.slash() && at == self.name.len()).then_some(b'/'),
        }
    }

    /// The part's text compared with `other`.
    fn text_cmp(&self, other: &str) -> std::cmp::Ordering {
        let name = self.name.as_bytes();
        let other = other.as_bytes();
        let common = name.len().min(other.len());
        match name[..common].cmp(&other[..common]) {
            std::cmp::Ordering::Equal => {}
            unequal => return unequal,
        }
        if name.len() > common {
            return std::cmp::Ordering::Greater;
        }
        // The name is a prefix of `other`: what follows it decides.
        match (self.slash(), other.get(common)) {
            (false, None) => std::cmp::Ordering::Equal,
            (false, Some(_)) => std::cmp::Ordering::Less,
            (true, None) => std::cmp::Ordering::Greater,
            (true, Some(&c)) => b'/'.cmp(&c).then(if other.len() > common + 1 {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }),
        }
    }

    /// True if the part's text starts with `prefix`.
    fn starts_with(&self, prefix: &str) -> bool {
        match prefix.strip_prefix(self.name) {
            Some(rest) => rest.is_empty() || (self.slash() && rest == "/"),
            None => self.name.starts_with(prefix),
        }
    }

    /// True if `text` starts with the part's text.
    fn is_prefix_of(&self, text: &str) -> bool {
        text.strip_prefix(self.name)
            .is_some_and(|rest| !self.slash() || rest.starts_with('/'))
    }

    /// Sets `path` (holding the node's path in its first `path_len` bytes) to the part's
    /// filter, or for `Below` the path of its child.
    fn filter_into(&self, path: &mut String, path_len: usize, root: bool) {
        path.truncate(path_len);
        if !root {
            path.push('/');
        }
        path.push_str(self.name);
    }
}

impl<S, V> PartialEq for Part<'_, S, V> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl<S, V> Eq for Part<'_, S, V> {}

impl<S, V> PartialOrd for Part<'_, S, V> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<S, V> Ord for Part<'_, S, V> {
    /// The texts compared: the names with `memcmp`, then the byte after the shorter one's
    /// name (its '/', or nothing: levels hold no '/', so that byte decides).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.head.cmp(&other.head).then_with(|| {
            let (a, b) = (self.name.as_bytes(), other.name.as_bytes());
            let common = a.len().min(b.len());
            a[..common]
                .cmp(&b[..common])
                .then_with(|| self.byte_at(common).cmp(&other.byte_at(common)))
        })
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

    /// The child for `level` (`+` or a literal), if any.
    fn child_mut(&mut self, level: &str) -> Option<&mut Self> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level).map(|child| &mut **child)
        }
    }

    /// Drops the child for `level` with its subtree.
    fn remove_child(&mut self, level: &str) {
        if level == "+" {
            self.plus = None;
        } else {
            self.children.remove(level);
            shrink_if_sparse(&mut self.children);
        }
    }

    /// True when this node holds no subscriber and exactly one child: it becomes prunable when
    /// that child goes.
    fn holds_only_one_child(&self) -> bool {
        self.hash.is_empty()
            && self.exact.is_empty()
            && self.children.len() + usize::from(self.plus.is_some()) == 1
    }

    /// Hands `take` each set of subscribers matching `topic` below this node (the root).
    ///
    /// Follows one matching branch in a loop; where both a literal and a `+` child match, it
    /// goes on with `+` and leaves the literal child on an explicit stack for later (at most one
    /// entry a level, inline for the first few), so the thread's stack never grows with depth.
    fn collect<'a>(&'a self, topic: &'a str, mut take: impl FnMut(&'a Subscribers<S, V>)) {
        let mut later: Stack<(&'a Self, std::str::Split<'a, char>)> = Stack::new();
        let mut node = self;
        let mut levels = topic.split('/');
        let mut at_root = true;
        loop {
            let Some(level) = levels.next() else {
                take(&node.exact);
                take(&node.hash);
                match later.pop() {
                    Some(next) => (node, levels) = next,
                    None => return,
                }
                continue;
            };
            let wildcards = !(at_root && is_dollar(level));
            if wildcards {
                take(&node.hash);
            }
            let literal = node.children.get(level).map(|child| &**child);
            let plus = node.plus.as_deref().filter(|_| wildcards);
            node = match (literal, plus) {
                (Some(literal), Some(plus)) => {
                    later.push((literal, levels.clone()));
                    plus
                }
                (Some(next), None) | (None, Some(next)) => next,
                (None, None) => match later.pop() {
                    Some(next) => {
                        levels = next.1;
                        next.0
                    }
                    None => return,
                },
            };
            at_root = false;
        }
    }

    /// Number of nodes strictly below this one.
    fn count_below(&self) -> usize {
        let mut count = 0;
        let mut stack: Stack<&Self> = Stack::new();
        stack.push(self);
        while let Some(node) = stack.pop() {
            for child in node
                .children
                .values()
                .map(|c| &**c)
                .chain(node.plus.as_deref())
            {
                count += 1;
                stack.push(child);
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::ControlFlow;

    use proptest::prelude::*;

    use super::SubscriptionTrie;
    use crate::router::filter_matches;
    use crate::router::test_support::{
        filter, filter_of, on_small_stack, repeat_level, topic, CASES, DEEP,
    };

    /// The sorted (subscriber, value) pairs `trie` returns for `topic`.
    fn matched(trie: &SubscriptionTrie<u8, u32>, topic: &str) -> Vec<(u8, u32)> {
        let mut out = Vec::new();
        trie.matches(topic, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn table() {
        for &(filter, topic, expected) in CASES {
            let mut trie = SubscriptionTrie::new();
            trie.subscribe(filter, 1u8, 7u32);
            let want = if expected { vec![(1, 7)] } else { vec![] };
            assert_eq!(
                matched(&trie, topic),
                want,
                "filter {filter:?} topic {topic:?}"
            );
        }
    }

    #[test]
    fn all_cases_in_one_trie() {
        let mut trie = SubscriptionTrie::new();
        for (i, &(filter, _, _)) in CASES.iter().enumerate() {
            trie.subscribe(filter, 0u8, u32::try_from(i).unwrap_or(0));
        }
        for &(_, topic, _) in CASES {
            let mut want: Vec<(u8, u32)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (i, &(filter, _, _)) in CASES.iter().enumerate() {
                // Duplicate filters replace each other: keep the last index.
                let last = CASES.iter().rposition(|c| c.0 == filter).unwrap_or(i);
                if seen.insert(filter) && filter_matches(filter, topic) {
                    want.push((0, u32::try_from(last).unwrap_or(0)));
                }
            }
            want.sort_unstable();
            assert_eq!(matched(&trie, topic), want, "topic {topic:?}");
        }
    }

    #[test]
    fn appends_without_clearing() {
        let mut trie = SubscriptionTrie::new();
        trie.subscribe("a", 1u8, 1u32);
        let mut out = vec![(9, 9)];
        trie.matches("a", &mut out);
        assert_eq!(out, vec![(9, 9), (1, 1)]);
    }

    #[test]
    fn subscriber_with_several_filters_appears_several_times() {
        let mut trie = SubscriptionTrie::new();
        trie.subscribe("a/b", 1u8, 1u32);
        trie.subscribe("a/+", 1, 2);
        trie.subscribe("#", 1, 3);
        trie.subscribe("a/#", 2, 4);
        assert_eq!(matched(&trie, "a/b"), vec![(1, 1), (1, 2), (1, 3), (2, 4)]);
    }

    #[test]
    fn subscribe_replace_unsubscribe() {
        let mut trie = SubscriptionTrie::new();
        assert!(trie.is_empty());
        assert_eq!(trie.subscribe("a/+", 1u8, 10u32), None);
        assert_eq!(trie.subscribe("a/+", 2, 20), None);
        assert_eq!(trie.len(), 2);
        assert_eq!(trie.subscribe("a/+", 1, 11), Some(10));
        assert_eq!(trie.len(), 2);
        assert_eq!(trie.get("a/+", &1), Some(&11));
        assert_eq!(matched(&trie, "a/x"), vec![(1, 11), (2, 20)]);
        // A different filter string is a different subscription, even if it overlaps.
        assert_eq!(trie.unsubscribe("a/#", &1), None);
        assert_eq!(trie.unsubscribe("a/x", &1), None);
        assert_eq!(trie.unsubscribe("a/+", &3), None);
        assert_eq!(trie.unsubscribe("a/+", &1), Some(11));
        assert_eq!(trie.unsubscribe("a/+", &1), None);
        assert_eq!(trie.get("a/+", &1), None);
        assert_eq!(matched(&trie, "a/x"), vec![(2, 20)]);
        assert_eq!(trie.len(), 1);
    }

    #[test]
    fn hash_and_parent_are_distinct_filters() {
        let mut trie = SubscriptionTrie::new();
        trie.subscribe("sport", 1u8, 1u32);
        trie.subscribe("sport/#", 1, 2);
        trie.subscribe("#", 1, 3);
        trie.subscribe("/#", 1, 4);
        assert_eq!(trie.len(), 4);
        assert_eq!(matched(&trie, "sport"), vec![(1, 1), (1, 2), (1, 3)]);
        assert_eq!(matched(&trie, "/x"), vec![(1, 3), (1, 4)]);
        assert_eq!(trie.unsubscribe("sport/#", &1), Some(2));
        assert_eq!(trie.unsubscribe("#", &1), Some(3));
        assert_eq!(matched(&trie, "sport"), vec![(1, 1)]);
        assert_eq!(trie.unsubscribe("/#", &1), Some(4));
        assert_eq!(trie.unsubscribe("sport", &1), Some(1));
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn prunes_after_mass_unsubscribe() {
        let mut trie = SubscriptionTrie::new();
        let filters: Vec<String> = (0..200u32)
            .map(|i| format!("t/{}/+/{}/#", i % 7, i))
            .chain(CASES.iter().map(|c| c.0.to_owned()))
            .collect();
        for (i, f) in filters.iter().enumerate() {
            for s in 0..20u8 {
                trie.subscribe(f, s, u32::try_from(i).unwrap_or(0));
            }
        }
        assert!(trie.node_count() > 200);
        for f in &filters {
            for s in 0..20u8 {
                trie.unsubscribe(f, &s);
            }
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
        assert!(trie.root.children.capacity() < 16);
    }

    /// What one subscription costs in nodes: a level's table entry is a name and a pointer, and a
    /// node's two subscriber slots are each the size of a `Vec` (tag included) until they hold
    /// many. 64-bit targets.
    #[test]
    fn nodes_stay_small() {
        use std::mem::size_of;
        type N = super::Node<u64, u64>;
        assert_eq!(size_of::<(Box<str>, Box<N>)>(), 24);
        assert!(size_of::<super::Subscribers<u64, u64>>() <= 32);
        assert!(size_of::<N>() <= 136, "{}", size_of::<N>());
    }

    #[test]
    fn deep_filters_need_no_stack() {
        on_small_stack(|| {
            let literal = repeat_level("a", DEEP);
            let plus = repeat_level("+", DEEP);
            let under_hash = format!("{}/#", repeat_level("a", DEEP - 1));
            let mut trie = SubscriptionTrie::new();
            trie.subscribe(&literal, 1u8, 1u32);
            trie.subscribe(&plus, 2, 2);
            trie.subscribe(&under_hash, 3, 3);
            trie.subscribe("#", 4, 4);
            trie.subscribe("a/+/#", 5, 5);
            assert_eq!(trie.node_count(), 2 * DEEP + 1);
            assert_eq!(
                matched(&trie, &literal),
                vec![(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
            );
            assert_eq!(
                matched(&trie, &repeat_level("b", DEEP)),
                vec![(2, 2), (4, 4)]
            );
            assert_eq!(trie.get(&literal, &1), Some(&1));
            assert_eq!(trie.unsubscribe(&literal, &1), Some(1));
            assert_eq!(trie.unsubscribe(&plus, &2), Some(2));
            // The literal chain but its last node is still held by `a/.../a/#` (and `a/+` by
            // `a/+/#`); the `+` chain is gone.
            assert_eq!(trie.node_count(), DEEP);
            assert_eq!(matched(&trie, &literal), vec![(3, 3), (4, 4), (5, 5)]);
            // Dropped with the deep chain still in it.
        });
    }

    #[test]
    fn deep_chain_pruned_by_unsubscribe_needs_no_stack() {
        on_small_stack(|| {
            let deep = repeat_level("a", DEEP);
            let mut trie = SubscriptionTrie::new();
            trie.subscribe(&deep, 1u8, 1u32);
            trie.subscribe("a", 2, 2);
            assert_eq!(trie.unsubscribe(&deep, &1), Some(1));
            assert_eq!(trie.node_count(), 1);
            assert_eq!(trie.unsubscribe("a", &2), Some(2));
            assert_eq!(trie.node_count(), 0);
        });
    }

    #[test]
    fn unsubscribe_prunes_only_the_emptied_chain() {
        let mut trie = SubscriptionTrie::new();
        trie.subscribe("a/b/c/d", 1u8, 1u32);
        trie.subscribe("a/b", 2, 2);
        trie.subscribe("a/b/+/x", 3, 3);
        assert_eq!(trie.node_count(), 6);
        // c and d go; b holds a subscriber and the `+` branch.
        assert_eq!(trie.unsubscribe("a/b/c/d", &1), Some(1));
        assert_eq!(trie.node_count(), 4);
        // `+` and x go; b stays for its own subscriber.
        assert_eq!(trie.unsubscribe("a/b/+/x", &3), Some(3));
        assert_eq!(trie.node_count(), 2);
        assert_eq!(trie.unsubscribe("a/b", &2), Some(2));
        assert_eq!(trie.node_count(), 0);
        // A filter ending at the root.
        trie.subscribe("#", 1, 1);
        assert_eq!(trie.unsubscribe("#", &1), Some(1));
        assert!(trie.is_empty());
    }

    /// Naive model: (filter, subscriber) → value.
    type Model = BTreeMap<(String, u8), u32>;

    /// The sorted pairs the naive matcher gives for `topic`.
    fn naive(model: &Model, topic: &str) -> Vec<(u8, u32)> {
        let mut out: Vec<(u8, u32)> = model
            .iter()
            .filter(|((f, _), _)| filter_matches(f, topic))
            .map(|((_, s), v)| (*s, *v))
            .collect();
        out.sort_unstable();
        out
    }

    #[derive(Debug, Clone)]
    enum Op {
        Sub(String, u8, u32),
        Unsub(String, u8),
        /// Unsubscribes the existing subscription picked by the index, if any.
        UnsubExisting(prop::sample::Index),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (filter(), 0..4u8, any::<u32>()).prop_map(|(f, s, v)| Op::Sub(f, s, v)),
            (filter(), 0..4u8).prop_map(|(f, s)| Op::Unsub(f, s)),
            any::<prop::sample::Index>().prop_map(Op::UnsubExisting),
        ]
    }

    /// Filters whose levels sort around '/' and '#' ("a-" and "!" before them, "a0" after), so
    /// that string order interleaves siblings with each other's subtrees; some levels reach
    /// past the 8 bytes parts are first ordered by.
    fn ordered_filter() -> impl Strategy<Value = String> {
        filter_of(&[
            "",
            "a",
            "a-",
            "a0",
            "!",
            "+",
            "$SYS",
            "abcdefg",
            "abcdefgh",
            "abcdefgh-",
        ])
    }

    /// `walk_ordered` from `after` with `prefix`, at most `limit` rows.
    fn ordered_page(
        trie: &SubscriptionTrie<u8, u32>,
        prefix: &str,
        after: Option<(&str, u8)>,
        limit: usize,
    ) -> Vec<(String, u8)> {
        let mut out = Vec::new();
        trie.walk_ordered(
            prefix,
            after,
            |s| *s,
            |f, s, _| {
                out.push((f.to_owned(), *s));
                if out.len() == limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        out
    }

    /// A page from the middle of 100,000 subscriptions enters the nodes on its way only: the
    /// root, `devices`, and two per row (the device and its `commands`, whose `#` is the row).
    #[test]
    fn an_ordered_page_enters_few_nodes() {
        let mut trie = SubscriptionTrie::new();
        for device in 0..100_000u32 {
            trie.subscribe(&format!("devices/{device}/commands/#"), device, ());
        }
        let mut rows = Vec::new();
        let entered = trie.walk_ordered(
            "",
            Some(("devices/50000/commands/#", 50_000)),
            |s| *s,
            |f, s, _| {
                rows.push((f.to_owned(), *s));
                match rows.len() < 10 {
                    true => ControlFlow::Continue(()),
                    false => ControlFlow::Break(()),
                }
            },
        );
        assert_eq!(rows[0], ("devices/50001/commands/#".to_owned(), 50_001));
        // String order: "50009/" < "5001/" < "50010/".
        assert_eq!(rows[9].1, 5001);
        // The root, `devices`, the cursor's device and its `commands`, two per row.
        assert!(entered <= 4 + 2 * 10, "{entered} nodes entered for 10 rows");
        let mut full = 0;
        trie.walk_ordered(
            "",
            None,
            |s| *s,
            |_, _, _| {
                full += 1;
                ControlFlow::Continue(())
            },
        );
        assert_eq!(full, 100_000);
    }

    proptest! {
        /// The ordered walk gives (filter, subscriber) order, pages by cursor without loss or
        /// repetition, and keeps a prefix's filters only.
        #[test]
        fn walks_in_filter_order(
            subs in prop::collection::vec((ordered_filter(), 0..3u8), 0..40),
            limit in 1..5usize,
        ) {
            let mut trie = SubscriptionTrie::new();
            let mut model = BTreeMap::new();
            for (f, s) in subs {
                trie.subscribe(&f, s, 0);
                model.insert((f, s), ());
            }
            let all: Vec<(String, u8)> = model.into_keys().collect();
            prop_assert_eq!(&ordered_page(&trie, "", None, usize::MAX), &all);
            let mut paged: Vec<(String, u8)> = Vec::new();
            loop {
                let after = paged.last().map(|(f, s)| (f.as_str(), *s));
                let page = ordered_page(&trie, "", after, limit);
                prop_assert!(page.len() <= limit);
                if page.is_empty() {
                    break;
                }
                paged.extend(page);
            }
            prop_assert_eq!(&paged, &all);
            for prefix in ["a", "a/", "a-", "+/", "!", "$", "#", "zz", "abcdefgh", "abcdefgh/"] {
                let want: Vec<(String, u8)> =
                    all.iter().filter(|(f, _)| f.starts_with(prefix)).cloned().collect();
                prop_assert_eq!(ordered_page(&trie, prefix, None, usize::MAX), want, "{}", prefix);
            }
        }

        #[test]
        fn matches_like_naive(
            subs in prop::collection::vec((filter(), 0..4u8), 0..40),
            topics in prop::collection::vec(topic(), 1..20),
        ) {
            let mut trie = SubscriptionTrie::new();
            let mut model = Model::new();
            for (i, (f, s)) in subs.into_iter().enumerate() {
                let v = u32::try_from(i).unwrap_or(0);
                trie.subscribe(&f, s, v);
                model.insert((f, s), v);
            }
            prop_assert_eq!(trie.len(), model.len());
            for t in &topics {
                prop_assert_eq!(matched(&trie, t), naive(&model, t), "topic {:?}", t);
            }
        }

        #[test]
        fn interleaving_like_naive(
            ops in prop::collection::vec(op(), 0..80),
            topics in prop::collection::vec(topic(), 1..10),
        ) {
            let mut trie = SubscriptionTrie::new();
            let mut model = Model::new();
            for op in ops {
                match op {
                    Op::Sub(f, s, v) => {
                        let want = model.insert((f.clone(), s), v);
                        prop_assert_eq!(trie.subscribe(&f, s, v), want);
                    }
                    Op::Unsub(f, s) => {
                        let want = model.remove(&(f.clone(), s));
                        prop_assert_eq!(trie.unsubscribe(&f, &s), want);
                    }
                    Op::UnsubExisting(index) => {
                        let Some(key) = model.keys().nth(index.index(model.len().max(1))).cloned()
                        else {
                            continue;
                        };
                        let want = model.remove(&key);
                        prop_assert_eq!(trie.unsubscribe(&key.0, &key.1), want);
                    }
                }
                prop_assert_eq!(trie.len(), model.len());
            }
            for t in &topics {
                prop_assert_eq!(matched(&trie, t), naive(&model, t), "topic {:?}", t);
            }
            for ((f, s), v) in &model {
                prop_assert_eq!(trie.get(f, s), Some(v));
            }
            // The walk rebuilds every filter exactly as subscribed.
            let mut walked = BTreeMap::new();
            trie.for_each(|f, s, v| {
                walked.insert((f.to_owned(), *s), *v);
            });
            prop_assert_eq!(&walked, &model);
            for (f, s) in model.keys() {
                prop_assert!(trie.unsubscribe(f, s).is_some());
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(trie.node_count(), 0);
        }
    }
}
