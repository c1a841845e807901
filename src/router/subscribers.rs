//! The set of (subscriber, value) pairs stored at one trie slot.
//!
//! Most slots hold a handful of subscribers, so they start as a small `Vec` scanned linearly;
//! a slot that grows past [`PROMOTE_AT`] becomes a hash map so that mass subscribe and
//! unsubscribe on one popular filter stay linear overall.

use std::borrow::Borrow;
use std::hash::Hash;

use ahash::AHashMap;

/// Size above which a slot switches from a `Vec` to a hash map.
const PROMOTE_AT: usize = 16;

/// The subscribers of one filter (one trie slot), each with its per-subscription value.
#[derive(Debug, Clone)]
pub(crate) enum Subscribers<S, V> {
    /// Few subscribers: linear scan.
    Few(Vec<(S, V)>),
    /// Many subscribers: hashed by subscriber (boxed: the common `Few` case, in every trie
    /// node twice, stays the size of a `Vec`).
    Many(Box<AHashMap<S, V>>),
}

impl<S, V> Default for Subscribers<S, V> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<S: Clone + Eq + Hash, V: Clone> Subscribers<S, V> {
    /// True when no subscriber is stored.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Self::Few(list) => list.is_empty(),
            Self::Many(map) => map.is_empty(),
        }
    }

    /// The value stored for `subscriber`, if any.
    pub(crate) fn get<Q>(&self, subscriber: &Q) -> Option<&V>
    where
        S: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            Self::Few(list) => list
                .iter()
                .find(|(s, _)| s.borrow() == subscriber)
                .map(|(_, v)| v),
            Self::Many(map) => map.get(subscriber),
        }
    }

    /// The value stored for `subscriber`, to change in place.
    pub(crate) fn get_mut<Q>(&mut self, subscriber: &Q) -> Option<&mut V>
    where
        S: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            Self::Few(list) => list
                .iter_mut()
                .find(|(s, _)| s.borrow() == subscriber)
                .map(|(_, v)| v),
            Self::Many(map) => map.get_mut(subscriber),
        }
    }

    /// Inserts or replaces the value for `subscriber`; returns the previous value.
    pub(crate) fn insert(&mut self, subscriber: S, value: V) -> Option<V> {
        match self {
            Self::Few(list) => {
                if let Some(slot) = list.iter_mut().find(|(s, _)| *s == subscriber) {
                    return Some(std::mem::replace(&mut slot.1, value));
                }
                list.push((subscriber, value));
                if list.len() > PROMOTE_AT {
                    let map = std::mem::take(list).into_iter().collect();
                    *self = Self::Many(Box::new(map));
                }
                None
            }
            Self::Many(map) => map.insert(subscriber, value),
        }
    }

    /// Removes `subscriber`; returns its value. An emptied map releases its memory.
    pub(crate) fn remove(&mut self, subscriber: &S) -> Option<V> {
        match self {
            Self::Few(list) => {
                let index = list.iter().position(|(s, _)| s == subscriber)?;
                let (_, value) = list.swap_remove(index);
                if list.is_empty() {
                    *list = Vec::new();
                }
                Some(value)
            }
            Self::Many(map) => {
                let value = map.remove(subscriber)?;
                if map.is_empty() {
                    *self = Self::default();
                } else {
                    shrink_if_sparse(map);
                }
                Some(value)
            }
        }
    }

    /// Calls `f` with every (subscriber, value) pair.
    pub(crate) fn for_each<'a>(&'a self, mut f: impl FnMut(&'a S, &'a V)) {
        match self {
            Self::Few(list) => list.iter().for_each(|(s, v)| f(s, v)),
            Self::Many(map) => map.iter().for_each(|(s, v)| f(s, v)),
        }
    }

    /// Appends a clone of every (subscriber, value) pair to `out`.
    pub(crate) fn append_to(&self, out: &mut Vec<(S, V)>) {
        match self {
            Self::Few(list) => out.extend_from_slice(list),
            Self::Many(map) => out.extend(map.iter().map(|(s, v)| (s.clone(), v.clone()))),
        }
    }

    /// Appends the values only (no subscriber is cloned).
    pub(crate) fn append_values_to(&self, out: &mut Vec<V>) {
        match self {
            Self::Few(list) => out.extend(list.iter().map(|(_, v)| v.clone())),
            Self::Many(map) => out.extend(map.values().cloned()),
        }
    }
}

/// Releases the spare capacity of a map that has shrunk below a quarter of it (amortised O(1)
/// per removal), so memory returns after mass removal.
pub(crate) fn shrink_if_sparse<K: Eq + Hash, T>(map: &mut AHashMap<K, T>) {
    if map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::{Subscribers, PROMOTE_AT};

    #[test]
    fn promotes_and_demotes() {
        let mut set = Subscribers::default();
        let n = u32::try_from(PROMOTE_AT).unwrap_or(16) * 3;
        for i in 0..n {
            assert_eq!(set.insert(i, i), None);
        }
        assert!(matches!(set, Subscribers::Many(_)));
        assert_eq!(set.insert(5, 50), Some(5));
        assert_eq!(set.get(&5), Some(&50));
        let mut out = Vec::new();
        set.append_to(&mut out);
        assert_eq!(out.len(), usize::try_from(n).unwrap_or(0));
        for i in 0..n {
            assert!(set.remove(&i).is_some());
        }
        assert!(set.is_empty());
        assert!(matches!(set, Subscribers::Few(_)));
        assert_eq!(set.remove(&1), None);
    }
}
