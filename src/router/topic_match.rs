//! The reference topic matcher: does one topic filter match one topic name (MQTT 4.7)?
//!
//! This file owns the matching rules in their plainest form. The trie and the retained store
//! implement the same rules with tree walks; their property tests compare against
//! [`filter_matches`], so this function must stay simple and obviously right.
//!
//! Rules:
//! - both strings are split into levels on `/`; empty levels are real levels (`a//b`, `/a`);
//! - `+` as a whole level matches exactly one level, including an empty one;
//! - `#` as the whole *last* level matches the parent level and any number of child levels
//!   (`sport/#` matches `sport`, `sport/` and `sport/a/b`);
//! - a topic whose first character is `$` is not matched by a filter whose first level is a
//!   wildcard (`#`, `+/...`), but literal filters such as `$SYS/#` do match it.
//!
//! Validity (see [`crate::protocol::topic`]) is checked elsewhere. For invalid input the
//! functions here still never panic: a `#` that is not the last level is compared literally.

/// True when `filter` matches the topic name `topic` under the MQTT 4.7 rules above.
#[must_use]
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && starts_with_wildcard(filter) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        let filter_level = filter_levels.next();
        let is_last = filter_levels.clone().next().is_none();
        match (filter_level, topic_levels.next()) {
            (Some("#"), _) if is_last => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when the first level of `filter` is a wildcard: `+`, or `#` as the only level.
pub(crate) fn starts_with_wildcard(filter: &str) -> bool {
    filter == "#" || filter == "+" || filter.starts_with("+/")
}

/// True when a topic level excludes wildcard matching at the root (it starts with `$`).
pub(crate) fn is_dollar(level: &str) -> bool {
    level.starts_with('$')
}

#[cfg(test)]
mod tests {
    use super::filter_matches;
    use crate::router::test_support::CASES;

    #[test]
    fn table() {
        for &(filter, topic, expected) in CASES {
            assert_eq!(
                filter_matches(filter, topic),
                expected,
                "filter {filter:?} topic {topic:?}"
            );
        }
    }
}
