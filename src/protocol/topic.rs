//! Topic name and topic filter validity (MQTT 4.7) and the broker's one limit on topic depth,
//! shared by the decoder (PUBLISH topics, response topics, SUBSCRIBE/UNSUBSCRIBE filters), the
//! CONNECT checks (will topics) and the SUBSCRIBE handler, and the syntax of a shared
//! subscription's `$share/{group}/{filter}` ([`parse_share`]); their semantics live in the router.
//!
//! This module owns the rules, not their consequences: what reason code a failure earns is the
//! caller's business.

/// The most levels a topic name or topic filter may have (`a/b/c` has 3). MQTT sets no limit
/// below the 65,535-byte string length; this one keeps whatever stores or matches topics small
/// and predictable. Topic names over it fail [`valid_topic_name`]; topic filters must be checked
/// with [`within_level_limit`] by the caller.
pub const MAX_TOPIC_LEVELS: usize = 128;

/// True when `s` (a topic name or filter) has at most [`MAX_TOPIC_LEVELS`] levels, that is at
/// most `MAX_TOPIC_LEVELS - 1` `/` separators.
pub fn within_level_limit(s: &str) -> bool {
    within_levels(s, MAX_TOPIC_LEVELS)
}

/// True when `s` has at most `max` levels (`max` ≥ 1).
pub fn within_levels(s: &str, max: usize) -> bool {
    // Stops counting at the first separator past the limit.
    s.bytes()
        .filter(|&b| b == b'/')
        .nth(max.max(1) - 1)
        .is_none()
}

/// True when `s` (a topic name or filter) is within a configured length in bytes and number of
/// levels (a client's limits, below the protocol's).
pub fn within_limits(s: &str, max_length: usize, max_levels: usize) -> bool {
    s.len() <= max_length && within_levels(s, max_levels)
}

/// True when `topic` is a valid topic name: non-empty, no `+` or `#`, no U+0000, ≤ 65,535 bytes,
/// and within [`MAX_TOPIC_LEVELS`].
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic_name_fault(topic).is_none()
}

/// Why a topic name is not valid (emptiness aside, which depends on the packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameFault {
    /// A wildcard or U+0000, or over 65,535 bytes.
    Invalid,
    /// Well formed, but over [`MAX_TOPIC_LEVELS`].
    TooDeep,
}

/// What, if anything, makes `topic` an invalid topic name, found in one pass over its bytes
/// (this runs on every PUBLISH).
pub(crate) fn topic_name_fault(topic: &str) -> Option<NameFault> {
    if topic.len() > 65_535 {
        return Some(NameFault::Invalid);
    }
    if topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0)) {
        return Some(NameFault::Invalid);
    }
    // Too many levels needs at least MAX_TOPIC_LEVELS separators: short topics (nearly all)
    // need no count.
    let too_deep = topic.len() >= MAX_TOPIC_LEVELS && !within_level_limit(topic);
    too_deep.then_some(NameFault::TooDeep)
}

/// True when `filter` is a valid topic filter: non-empty, `#` only as the whole last level, `+`
/// only as a whole level, no U+0000, ≤ 65,535 bytes.
///
/// This is the spec's syntax only: a filter over [`MAX_TOPIC_LEVELS`] is well formed here, and
/// callers must also check [`within_level_limit`] (the SUBSCRIBE handler answers such a filter
/// with SUBACK 0x8F, Topic Filter invalid, instead of closing the connection).
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') || filter.len() > 65_535 {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// The prefix that marks a shared subscription's filter.
pub const SHARE_PREFIX: &str = "$share/";

/// Why a `$share/...` filter is refused (MQTT-4.8.2-1, MQTT-4.8.2-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShareNameError {
    /// `$share//a`: the share name is empty.
    #[error("empty share name (MQTT-4.8.2-1)")]
    EmptyGroup,
    /// `$share/+/a`: the share name holds a wildcard.
    #[error("wildcard in the share name (MQTT-4.8.2-2)")]
    WildcardInGroup,
    /// `$share/g` or `$share/g/`: no topic filter follows the share name.
    #[error("no topic filter after the share name (MQTT-4.8.2-1)")]
    NoFilter,
}

/// Splits a shared subscription's filter into its share name and topic filter: `None` for an
/// ordinary filter, `Some(Err)` for a `$share/` filter that breaks the rules. The topic filter
/// itself was checked with the whole string by the decoder.
pub fn parse_share(filter: &str) -> Option<Result<(&str, &str), ShareNameError>> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    Some(match rest.split_once('/') {
        None => Err(if rest.is_empty() {
            ShareNameError::EmptyGroup
        } else {
            ShareNameError::NoFilter
        }),
        Some(("", _)) => Err(ShareNameError::EmptyGroup),
        Some((group, _)) if group.contains(['+', '#']) => Err(ShareNameError::WildcardInGroup),
        Some((_, "")) => Err(ShareNameError::NoFilter),
        Some(pair) => Ok(pair),
    })
}

/// True when `filter` may stand in a SUBSCRIBE: a valid topic filter, or a `$share/` filter
/// whose topic filter is valid. A `$share/` filter with a bad share name (empty, a wildcard,
/// no filter after it) is well formed here: the SUBSCRIBE handler refuses it with SUBACK 0x8F.
pub fn valid_subscription_filter(filter: &str) -> bool {
    match parse_share(filter) {
        None => valid_topic_filter(filter),
        Some(Ok((_, topic_filter))) => valid_topic_filter(topic_filter),
        Some(Err(_)) => !filter.contains('\0'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("a/b/c", true),
            ("/", true),
            ("/a", true),
            ("a/", true),
            ("a//b", true),
            ("$SYS/broker", true),
            ("sport/tennis/player1", true),
            ("\u{e9}t\u{e9}", true),
            ("", false),
            ("a/+", false),
            ("+", false),
            ("#", false),
            ("a/#", false),
            ("a+b", false),
            ("a#", false),
            ("a\0b", false),
        ];
        for &(topic, ok) in cases {
            assert_eq!(valid_topic_name(topic), ok, "{topic:?}");
        }
        assert!(valid_topic_name(&"a".repeat(65_535)));
        assert!(!valid_topic_name(&"a".repeat(65_536)));
    }

    #[test]
    fn topic_filters() {
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("#", true),
            ("+", true),
            ("/", true),
            ("+/+", true),
            ("/+", true),
            ("a/#", true),
            ("a/+/b", true),
            ("+/tennis/#", true),
            ("a//b", true),
            ("$share/group/a/+", true),
            ("$share/group/#", true),
            ("$SYS/#", true),
            ("", false),
            ("a+", false),
            ("+a", false),
            ("a/b+", false),
            ("#a", false),
            ("a#", false),
            ("a/#/b", false),
            ("#/", false),
            ("##", false),
            ("++", false),
            ("a/\0", false),
        ];
        for &(filter, ok) in cases {
            assert_eq!(valid_topic_filter(filter), ok, "{filter:?}");
        }
        assert!(!valid_topic_filter(&"a".repeat(65_536)));
    }

    /// `n` levels: `a/a/.../a`.
    fn levels(n: usize) -> String {
        vec!["a"; n].join("/")
    }

    #[test]
    fn level_limit() {
        assert!(within_level_limit(""));
        assert!(within_level_limit("a"));
        assert!(within_level_limit(&levels(MAX_TOPIC_LEVELS)));
        assert!(!within_level_limit(&levels(MAX_TOPIC_LEVELS + 1)));
        // Empty levels count: 127 separators are 128 levels, 128 are 129.
        assert!(within_level_limit(&"/".repeat(MAX_TOPIC_LEVELS - 1)));
        assert!(!within_level_limit(&"/".repeat(MAX_TOPIC_LEVELS)));
        assert!(!within_level_limit(&"/".repeat(65_000)));
    }

    #[test]
    fn configured_limits() {
        assert!(within_limits("a/b/c", 5, 3));
        assert!(!within_limits("a/b/c", 4, 3));
        assert!(!within_limits("a/b/c", 5, 2));
        assert!(within_limits("", 0, 1));
        assert!(within_levels("abc", 1));
        assert!(!within_levels("a/", 1));
    }

    #[test]
    fn topic_names_within_the_level_limit() {
        assert!(valid_topic_name(&levels(MAX_TOPIC_LEVELS)));
        assert!(!valid_topic_name(&levels(MAX_TOPIC_LEVELS + 1)));
        // The will topic of the reproduced crash (issue 9): 65,000 `/`.
        assert!(!valid_topic_name(&"/".repeat(65_000)));
    }

    #[test]
    fn topic_filters_are_syntax_only() {
        let deep = format!("{}/#", levels(MAX_TOPIC_LEVELS));
        assert!(valid_topic_filter(&deep));
        assert!(!within_level_limit(&deep));
        assert!(valid_topic_filter(&"+/".repeat(200)[..399]));
    }
}
