//! Topic name and topic filter validity (MQTT 4.7). (Stub: being written.)

/// True when `topic` is a valid topic name: non-empty, no `+` or `#`, no U+0000, ≤ 65,535 bytes.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0']) && topic.len() <= 65_535
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
