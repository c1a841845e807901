//! MQTT topic ↔ AMQP routing key, and MQTT filter ↔ AMQP binding pattern.
//!
//! Three mappings, chosen per rule with `mapping`:
//!
//! - **`default`: reversible.** Levels become words: `/` ↔ `.`, and in filters / patterns
//!   `+` ↔ `*` and `#` ↔ `#` for whole levels. Inside a level, the characters that mean something
//!   in a routing key are escaped with `%` and two upper-case hex digits:
//!
//!   | in a level | in a word |
//!   |---|---|
//!   | `.` | `%2E` |
//!   | `*` | `%2A` |
//!   | `#` | `%23` |
//!   | `%` | `%25` |
//!
//!   So `e2e/dev1/temp` is `e2e.dev1.temp`, `e2e/v1.2/data` is `e2e.v1%2E2.data` and
//!   `e2e/v1/2/data` is `e2e.v1.2.data`: different keys, each coming back as itself. Unmapping
//!   decodes exactly these four escapes (either case); any other `%` is kept as it is, so keys
//!   written by other publishers map too. Every other character, `+` included, passes through.
//!   A word that decodes to a level containing `+` or `#` (only possible in keys the bridge did
//!   not make) is refused: it is no valid MQTT topic.
//! - **`rabbitmq`: RabbitMQ's MQTT plugin.** `/` ↔ `.` and `+` ↔ `*`, nothing escaped (so
//!   `v1.2` and `v1/2` meet, as they do there). For users migrating from the plugin.
//! - **`template`: rearranged levels.** A template is the output written out, with `{n}` for
//!   the n-th input level (1-based) and `{n..}` for levels n to the end (joined with the output
//!   separator); everything else is literal. On an outbound rule the input is the topic and the
//!   output the routing key (`template = "site1.{3}.{2}"` maps `e2e/dev1/temp` to
//!   `site1.temp.dev1`); on an inbound rule the input is the routing key and the output the
//!   topic (`template = "devices/{2}/cmd"`). Inserted levels are escaped / decoded as in
//!   `default`. Templates map topics only, not filters.
//!
//! This module knows nothing of sockets or rules: plain functions over strings.

use crate::topic::{self, TopicError};

/// The longest AMQP routing key (a short string).
pub const MAX_KEY_LEN: usize = 255;

/// Why a topic, key, filter or pattern could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The routing key is not UTF-8 (MQTT topics are).
    #[error("the routing key is not UTF-8")]
    NotUtf8,
    /// The routing key would be longer than 255 bytes.
    #[error("the routing key would be {0} bytes long (at most 255)")]
    KeyTooLong(usize),
    /// The result is not a valid MQTT topic name or filter.
    #[error("not a valid MQTT topic: {0}")]
    Topic(#[from] TopicError),
    /// A template refers to a level the input does not have.
    #[error("the template refers to level {0}, the input has {1}")]
    MissingLevel(usize, usize),
    /// Templates map topics, not filters.
    #[error("a template mapping cannot map filters")]
    TemplateFilter,
}

/// Why a template string is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{` without a matching `}`, or a `}` alone.
    #[error("unbalanced braces at byte {0}")]
    Unbalanced(usize),
    /// A placeholder that is not `{n}` or `{n..}` with n from 1.
    #[error("placeholder {{{0}}} is not {{n}} or {{n..}} with n >= 1")]
    BadPlaceholder(String),
    /// Literal text a topic cannot hold (`+`, `#`, U+0000).
    #[error("literal text {0:?} cannot be part of a topic (+, # or U+0000)")]
    BadLiteral(String),
    /// Nothing at all.
    #[error("empty template")]
    Empty,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// 0-based level index; `rest`: this level and all after it.
    Level {
        index: usize,
        rest: bool,
    },
}

/// Which way a template writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Topic levels in, routing key out (outbound rules).
    TopicToKey,
    /// Routing key words in, topic out (inbound rules).
    KeyToTopic,
}

/// A parsed `template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    direction: Direction,
}

impl Template {
    /// Parses `text` for `direction`.
    pub fn parse(text: &str, direction: Direction) -> Result<Template, TemplateError> {
        if text.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, '{')) | None => return Err(TemplateError::Unbalanced(at)),
                            Some((_, c)) => inner.push(c),
                        }
                    }
                    let (digits, rest) = match inner.strip_suffix("..") {
                        Some(d) => (d, true),
                        None => (inner.as_str(), false),
                    };
                    let n: usize = match digits.parse() {
                        Ok(n) if n >= 1 && digits.bytes().all(|b| b.is_ascii_digit()) => n,
                        _ => return Err(TemplateError::BadPlaceholder(inner)),
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Level { index: n - 1, rest });
                }
                '}' => return Err(TemplateError::Unbalanced(at)),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if direction == Direction::KeyToTopic {
            for p in &parts {
                if let Part::Literal(l) = p {
                    if l.contains(['+', '#', '\0']) {
                        return Err(TemplateError::BadLiteral(l.clone()));
                    }
                }
            }
        }
        Ok(Template { parts, direction })
    }

    fn render(&self, input: &str) -> Result<String, MappingError> {
        let (split, join, convert): (char, char, fn(&str, &mut String)) = match self.direction {
            Direction::TopicToKey => ('/', '.', escape_level),
            Direction::KeyToTopic => ('.', '/', |w, out| out.push_str(&unescape_word(w))),
        };
        let levels: Vec<&str> = input.split(split).collect();
        let mut out = String::with_capacity(input.len() + 8);
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Level { index, rest } => {
                    let Some(first) = levels.get(*index) else {
                        return Err(MappingError::MissingLevel(index + 1, levels.len()));
                    };
                    convert(first, &mut out);
                    if *rest {
                        for l in &levels[index + 1..] {
                            out.push(join);
                            convert(l, &mut out);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// How a rule maps topics and keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mapping {
    /// Reversible, with escaping.
    #[default]
    Default,
    /// RabbitMQ's MQTT plugin (`/` ↔ `.`, `+` ↔ `*`).
    RabbitMq,
    /// A template (one direction only).
    Template(Template),
}

impl Mapping {
    /// The routing key for a topic name. Templates: only `Direction::TopicToKey` ones.
    pub fn topic_to_key(&self, topic: &str) -> Result<String, MappingError> {
        let key = match self {
            Mapping::Default => words(topic, false),
            Mapping::RabbitMq => topic.replace('/', ".").replace('+', "*"),
            Mapping::Template(t) if t.direction == Direction::TopicToKey => t.render(topic)?,
            Mapping::Template(_) => words(topic, false),
        };
        if key.len() > MAX_KEY_LEN {
            return Err(MappingError::KeyTooLong(key.len()));
        }
        Ok(key)
    }

    /// The topic name for a routing key. Templates: only `Direction::KeyToTopic` ones.
    pub fn key_to_topic(&self, key: &str) -> Result<String, MappingError> {
        let topic = match self {
            Mapping::Default => levels(key, false),
            Mapping::RabbitMq => key.replace('.', "/").replace('*', "+"),
            Mapping::Template(t) if t.direction == Direction::KeyToTopic => t.render(key)?,
            Mapping::Template(_) => levels(key, false),
        };
        topic::check_name(&topic)?;
        Ok(topic)
    }

    /// The binding pattern for an MQTT filter.
    pub fn filter_to_pattern(&self, filter: &str) -> Result<String, MappingError> {
        topic::check_filter(filter)?;
        let pattern = match self {
            Mapping::Default => words(filter, true),
            Mapping::RabbitMq => filter.replace('/', ".").replace('+', "*"),
            Mapping::Template(_) => return Err(MappingError::TemplateFilter),
        };
        if pattern.len() > MAX_KEY_LEN {
            return Err(MappingError::KeyTooLong(pattern.len()));
        }
        Ok(pattern)
    }

    /// The MQTT filter for a binding pattern.
    pub fn pattern_to_filter(&self, pattern: &str) -> Result<String, MappingError> {
        let filter = match self {
            Mapping::Default => levels(pattern, true),
            Mapping::RabbitMq => pattern.replace('.', "/").replace('*', "+"),
            Mapping::Template(_) => return Err(MappingError::TemplateFilter),
        };
        topic::check_filter(&filter)?;
        Ok(filter)
    }
}

/// Topic or filter → key or pattern (default mapping).
fn words(topic: &str, wildcards: bool) -> String {
    let mut out = String::with_capacity(topic.len() + 8);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        match level {
            "+" if wildcards => out.push('*'),
            "#" if wildcards => out.push('#'),
            _ => escape_level(level, &mut out),
        }
    }
    out
}

/// Key or pattern → topic or filter (default mapping).
fn levels(key: &str, wildcards: bool) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, word) in key.split('.').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match word {
            "*" if wildcards => out.push('+'),
            "#" if wildcards => out.push('#'),
            _ => out.push_str(&unescape_word(word)),
        }
    }
    out
}

/// Appends `level` escaped for a routing key word.
fn escape_level(level: &str, out: &mut String) {
    for c in level.chars() {
        match c {
            '.' => out.push_str("%2E"),
            '*' => out.push_str("%2A"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

/// Decodes the four escapes of a routing key word; any other `%` stays.
fn unescape_word(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let decoded = match after.as_bytes() {
            [a, b, ..] => match (a.to_ascii_uppercase(), b.to_ascii_uppercase()) {
                (b'2', b'E') => Some('.'),
                (b'2', b'A') => Some('*'),
                (b'2', b'3') => Some('#'),
                (b'2', b'5') => Some('%'),
                _ => None,
            },
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[2..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
