//! MQTT topic names and filters as the bridge needs them: validity (MQTT 5 §4.7) and matching.
//!
//! The bridge checks configured filters and the topics it produces from routing keys; the
//! standalone side dispatches incoming messages to the rules whose filter matches. This module
//! knows nothing of AMQP.

/// Why a topic name or filter is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty string (MQTT-4.7.3-1).
    #[error("empty (MQTT-4.7.3-1)")]
    Empty,
    /// Longer than 65,535 bytes (the limit of an MQTT string).
    #[error("longer than 65535 bytes")]
    TooLong,
    /// Contains U+0000 (MQTT-4.7.3-2).
    #[error("contains U+0000 (MQTT-4.7.3-2)")]
    Nul,
    /// A wildcard in a topic name (MQTT-3.3.2-2).
    #[error("a topic name cannot contain + or # (MQTT-3.3.2-2)")]
    WildcardInName,
    /// `+` not alone in its level (MQTT-4.7.1-2).
    #[error("+ must occupy a whole level (MQTT-4.7.1-2)")]
    BadPlus,
    /// `#` not alone in the last level (MQTT-4.7.1-1).
    #[error("# must be the whole last level (MQTT-4.7.1-1)")]
    BadHash,
}

fn common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > 65_535 {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// Checks an MQTT topic name (no wildcards).
pub fn check_name(topic: &str) -> Result<(), TopicError> {
    common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks an MQTT topic filter.
pub fn check_filter(filter: &str) -> Result<(), TopicError> {
    common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::BadHash);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::BadPlus);
        }
    }
    Ok(())
}

/// Whether `topic` (a valid name) matches `filter` (a valid filter). A filter starting with a
/// wildcard does not match a topic starting with `$` (MQTT-4.7.2-1).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("a/b").is_ok());
        assert!(check_name("/").is_ok());
        assert!(check_name("a/b.c/*").is_ok());
        assert_eq!(check_name(""), Err(TopicError::Empty));
        assert_eq!(check_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(check_name("a\0"), Err(TopicError::Nul));
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/#", "+/+/#", "a//+", "/", "a/b"] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        assert_eq!(check_filter("a/#/b"), Err(TopicError::BadHash));
        assert_eq!(check_filter("a#"), Err(TopicError::BadHash));
        assert_eq!(check_filter("a+"), Err(TopicError::BadPlus));
        assert_eq!(check_filter("a/+b/c"), Err(TopicError::BadPlus));
    }

    #[test]
    fn matching() {
        assert!(matches("e2e/#", "e2e/a/b"));
        assert!(matches("e2e/#", "e2e"));
        assert!(matches("+/x", "a/x"));
        assert!(!matches("+/x", "a/y"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("a//b", "a//b"));
    }
}
