//! What the router's iterative tree walks share: the explicit stack that replaces recursion, a
//! cursor over the levels of a filter that can be saved on it cheaply, and a cheap way to empty
//! a node that is being dropped.
//!
//! Every walk of the trie and the retained store is a loop over an explicit [`Stack`], so no
//! input depth reaches the thread's stack. The stack keeps its first entries inline: a walk that
//! branches only a few times (every real topic) allocates nothing.

use ahash::{AHashMap, RandomState};
use smallvec::SmallVec;

/// The levels of a topic name or filter not yet visited: `None` once the last level has been
/// taken, else the rest of the string (whose first level runs to the first `/`). `Some("")` is
/// one empty level, as in `a/`.
pub(crate) type Levels<'a> = Option<&'a str>;

/// All the levels of `s` (a string has at least one level, maybe empty).
pub(crate) fn levels_of(s: &str) -> Levels<'_> {
    Some(s)
}

/// The next level and the levels after it; `None` when no level is left.
pub(crate) fn next_level(levels: Levels<'_>) -> Option<(&str, Levels<'_>)> {
    let rest = levels?;
    Some(match rest.split_once('/') {
        Some((level, after)) => (level, Some(after)),
        None => (rest, None),
    })
}

/// A walk's explicit stack: 8 entries inline, more on the heap.
pub(crate) type Stack<T> = SmallVec<[T; 8]>;

/// Moves the children map out of a node that is being dropped, leaving an empty map with a
/// fixed hasher in its place (a fresh `AHashMap::default()` would seed a new hasher, which
/// costs more than the rest of dropping a small node; this map is never hashed into).
pub(crate) fn take_for_drop<T>(map: &mut AHashMap<Box<str>, T>) -> AHashMap<Box<str>, T> {
    std::mem::replace(
        map,
        AHashMap::with_hasher(RandomState::with_seeds(0, 0, 0, 0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level of `s` through the cursor.
    fn all(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut levels = levels_of(s);
        while let Some((level, rest)) = next_level(levels) {
            out.push(level);
            levels = rest;
        }
        assert!(levels.is_none());
        out
    }

    #[test]
    fn levels_like_split() {
        for s in ["", "/", "a", "a/b", "/a", "a/", "a//b", "$SYS/x/#", "+/+"] {
            assert_eq!(all(s), s.split('/').collect::<Vec<_>>(), "{s:?}");
        }
    }
}
