//! Topic name and topic filter validity (MQTT 4.7), shared by the decoder (PUBLISH topics, will
//! topics, SUBSCRIBE/UNSUBSCRIBE filters) and the rest of the broker. `$share/...` filters are
//! validated as ordinary filters here; shared-subscription semantics live in the router.

/// Most levels a topic name or filter may have: nothing deeper reaches the router.
pub const MAX_TOPIC_LEVELS: usize = 128;

/// True when `s` has at most [`MAX_TOPIC_LEVELS`] levels.
pub fn within_level_limit(s: &str) -> bool {
    s.bytes().filter(|&b| b == b'/').count() < MAX_TOPIC_LEVELS
}

/// True when `topic` is a valid topic name: non-empty, no `+` or `#`, no U+0000, ≤ 65,535 bytes.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && !topic.contains(['+', '#', '\0'])
        && topic.len() <= 65_535
        && within_level_limit(topic)
}

/// True when `filter` is a valid topic filter: non-empty, `#` only as the whole last level, `+`
/// only as a whole level, no U+0000.
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
}
