//! ACL rules: Mosquitto's `acl_file` syntax, and the matching of topics and filters against
//! rules. Plain data and pure functions; who holds which rules is [`super::access`]'s business.
//!
//! The file, as Mosquitto reads it:
//! - `topic [read|write|readwrite|deny] FILTER` (access defaults to readwrite). Before the first
//!   `user` line, topic rules apply to anonymous clients (no username); after `user NAME`, to
//!   that user.
//! - `pattern [read|write|readwrite|deny] FILTER`: for every client, with `%c` replaced by its
//!   client id and `%u` by its username (a pattern naming a client id or username that holds
//!   `/`, `+` or `#`, or `%u` for a client without a username, does not apply).
//! - `#` comments and blank lines are ignored.
//!
//! Decisions: a `deny` rule that matches wins over any allowing rule; otherwise a rule granting
//! the access must match; no rule means no access. A topic starting with `$` (`$SYS/...`) is
//! matched only by rules whose first level is literal, as in MQTT's own matching: `topic read #`
//! does not grant `$SYS`.
//!
//! SUBSCRIBE is checked on the filter: a rule allows a filter when it covers every topic the
//! filter can match (`a/#` covers `a/+/b`); a deny rule refuses it when it covers it. A deny rule
//! that only overlaps an allowed filter (deny `a/secret`, subscribe `a/#`) lets the subscription
//! through and asks for messages to be checked on delivery ([`SubscribeDecision::Filtered`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::FileError;
use crate::protocol::topic;

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe and receive.
    Read,
    /// Publish.
    Write,
    /// Both.
    ReadWrite,
    /// Neither: denies what it matches, whatever other rules say.
    Deny,
}

impl Access {
    fn parse(word: &str) -> Option<Access> {
        Some(match word {
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            "deny" => Access::Deny,
            _ => return None,
        })
    }

    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// One part of a pattern level.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(Box<str>),
    ClientId,
    Username,
}

/// One level of a rule's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Lit(Box<str>),
    Plus,
    Hash,
    /// A level holding `%c` or `%u` (pattern rules only).
    Template(Box<[Piece]>),
}

/// One rule: an access and a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    access: Access,
    levels: Box<[Level]>,
}

/// Who is asking: what `%c` and `%u` stand for.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The client identifier.
    pub client_id: &'a str,
    /// The username, if the client has one.
    pub username: Option<&'a str>,
}

impl Rule {
    /// A rule for `filter` (a valid MQTT filter); `pattern` enables `%c` and `%u`.
    pub fn new(access: Access, filter: &str, pattern: bool) -> Result<Rule, String> {
        if !topic::valid_topic_filter(filter) {
            return Err(format!("{filter:?} is not a valid topic filter"));
        }
        let levels = filter
            .split('/')
            .map(|level| match level {
                "+" => Level::Plus,
                "#" => Level::Hash,
                l if pattern && (l.contains("%c") || l.contains("%u")) => {
                    Level::Template(pieces(l))
                }
                l => Level::Lit(l.into()),
            })
            .collect();
        Ok(Rule { access, levels })
    }

    /// What the rule grants.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Whether level `i` of the rule, under `who`, equals the concrete level `level`.
    /// `None`: the rule does not apply to `who`.
    fn level_eq(&self, i: usize, level: &str, who: &Who<'_>) -> Option<bool> {
        match &self.levels[i] {
            Level::Lit(lit) => Some(&**lit == level),
            Level::Template(pieces) => template_eq(pieces, level, who),
            Level::Plus | Level::Hash => Some(true),
        }
    }

    /// True when the rule's first level is a wildcard (it does not match `$` topics).
    fn starts_wild(&self) -> bool {
        matches!(self.levels.first(), Some(Level::Plus | Level::Hash))
    }

    /// True when the rule matches the topic name `topic`.
    pub fn matches_topic(&self, topic: &str, who: &Who<'_>) -> bool {
        if topic.starts_with('$') && self.starts_wild() {
            return false;
        }
        let mut i = 0;
        for level in topic.split('/') {
            match self.levels.get(i) {
                None => return false,
                Some(Level::Hash) => return true,
                Some(_) => {
                    if self.level_eq(i, level, who) != Some(true) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        self.rest_is_hash(i)
    }

    /// True when levels from `i` on are nothing, or a single `#` (`a/#` matches `a`).
    fn rest_is_hash(&self, i: usize) -> bool {
        i == self.levels.len() || (i + 1 == self.levels.len() && self.levels[i] == Level::Hash)
    }

    /// True when every topic `filter` can match is matched by this rule.
    pub fn covers(&self, filter: &str, who: &Who<'_>) -> bool {
        let dollar = filter.starts_with('$');
        if dollar && self.starts_wild() {
            return false;
        }
        let mut i = 0;
        for level in filter.split('/') {
            match (self.levels.get(i), level) {
                (None, _) => return false,
                (Some(Level::Hash), _) => return true,
                (Some(_), "#") => return false,
                (Some(Level::Plus), _) => {}
                (Some(_), "+") => return false,
                (Some(_), _) => {
                    if self.level_eq(i, level, who) != Some(true) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        self.rest_is_hash(i)
    }

    /// True when some topic is matched by both this rule and `filter`.
    pub fn overlaps(&self, filter: &str, who: &Who<'_>) -> bool {
        let f_wild = filter == "#" || filter == "+" || filter.starts_with("+/");
        let f_dollar = filter.starts_with('$');
        let r_dollar = matches!(self.levels.first(), Some(Level::Lit(l)) if l.starts_with('$'));
        if (f_dollar && self.starts_wild()) || (r_dollar && f_wild) {
            return false;
        }
        let mut i = 0;
        for level in filter.split('/') {
            match (self.levels.get(i), level) {
                (None, "#") => return true,
                (None, _) => return false,
                (Some(Level::Hash), _) | (Some(_), "#") => return true,
                (Some(Level::Plus), _) | (Some(_), "+") => {}
                (Some(_), _) => {
                    if self.level_eq(i, level, who) != Some(true) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        self.rest_is_hash(i)
    }
}

/// Splits a pattern level into literal text, `%c` and `%u`.
fn pieces(level: &str) -> Box<[Piece]> {
    let mut out = Vec::new();
    let mut rest = level;
    while let Some(at) = rest.find('%') {
        let next = rest.as_bytes().get(at + 1).copied();
        let piece = match next {
            Some(b'c') => Piece::ClientId,
            Some(b'u') => Piece::Username,
            _ => {
                out.push(Piece::Lit(rest[..=at].into()));
                rest = &rest[at + 1..];
                continue;
            }
        };
        if at > 0 {
            out.push(Piece::Lit(rest[..at].into()));
        }
        out.push(piece);
        rest = &rest[at + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Lit(rest.into()));
    }
    out.into()
}

/// Whether the template, under `who`, equals `level`; `None` if it does not apply to `who`.
fn template_eq(pieces: &[Piece], level: &str, who: &Who<'_>) -> Option<bool> {
    let mut rest = level;
    for piece in pieces {
        let text = match piece {
            Piece::Lit(lit) => &**lit,
            Piece::ClientId => safe(who.client_id)?,
            Piece::Username => safe(who.username?)?,
        };
        match rest.strip_prefix(text) {
            Some(r) => rest = r,
            None => return Some(false),
        }
    }
    Some(rest.is_empty())
}

/// A substituted value, unless it could widen the rule (`/`, `+`, `#`) or is empty.
fn safe(value: &str) -> Option<&str> {
    (!value.is_empty() && !value.contains(['/', '+', '#'])).then_some(value)
}

/// What a set of rules says of a SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeDecision {
    /// Granted; every message it matches may be read.
    Allowed,
    /// Granted, but a deny rule overlaps it: check each message on delivery.
    Filtered,
    /// Refused.
    Denied,
}

/// Evaluates the rule lists `sets` for publishing to `topic`.
pub fn may_write(sets: &[&[Rule]], topic: &str, who: &Who<'_>) -> bool {
    let mut allowed = false;
    for rule in sets.iter().flat_map(|s| s.iter()) {
        if rule.matches_topic(topic, who) {
            match rule.access {
                Access::Deny => return false,
                a => allowed |= a.writes(),
            }
        }
    }
    allowed
}

/// Evaluates the rule lists `sets` for receiving a message on `topic`.
pub fn may_read(sets: &[&[Rule]], topic: &str, who: &Who<'_>) -> bool {
    let mut allowed = false;
    for rule in sets.iter().flat_map(|s| s.iter()) {
        if rule.matches_topic(topic, who) {
            match rule.access {
                Access::Deny => return false,
                a => allowed |= a.reads(),
            }
        }
    }
    allowed
}

/// Evaluates the rule lists `sets` for subscribing to `filter`.
pub fn may_subscribe(sets: &[&[Rule]], filter: &str, who: &Who<'_>) -> SubscribeDecision {
    let mut allowed = false;
    let mut overlap = false;
    for rule in sets.iter().flat_map(|s| s.iter()) {
        match rule.access {
            Access::Deny => {
                if rule.covers(filter, who) {
                    return SubscribeDecision::Denied;
                }
                overlap |= rule.overlaps(filter, who);
            }
            a => allowed |= a.reads() && rule.covers(filter, who),
        }
    }
    match (allowed, overlap) {
        (false, _) => SubscribeDecision::Denied,
        (true, false) => SubscribeDecision::Allowed,
        (true, true) => SubscribeDecision::Filtered,
    }
}

/// A loaded ACL file.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    anonymous: Arc<[Rule]>,
    users: HashMap<String, Arc<[Rule]>>,
    patterns: Arc<[Rule]>,
    count: usize,
}

impl AclFile {
    /// Reads and checks the file at `path`; the error names the file, the line and the reason.
    pub fn load(path: &Path) -> Result<AclFile, FileError> {
        let text = super::read_file(path)?;
        Self::parse(&text).map_err(|(line, reason)| FileError::line(path, line, reason))
    }

    /// Parses file contents; `Err((line number, reason))`.
    pub fn parse(text: &str) -> Result<AclFile, (usize, String)> {
        let mut anonymous = Vec::new();
        let mut users: HashMap<String, Vec<Rule>> = HashMap::new();
        let mut patterns = Vec::new();
        let mut user: Option<String> = None;
        let mut count = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim();
            let err = |reason: String| (i + 1, reason);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("user needs a username".to_owned()));
                    }
                    users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let (access, filter) = match rest.split_once([' ', '\t']) {
                        Some((word, filter)) => match Access::parse(word) {
                            Some(access) => (access, filter.trim()),
                            None => (Access::ReadWrite, rest),
                        },
                        None => match Access::parse(rest) {
                            Some(_) => return Err(err(format!("{keyword} needs a topic filter"))),
                            None => (Access::ReadWrite, rest),
                        },
                    };
                    if filter.is_empty() {
                        return Err(err(format!("{keyword} needs a topic filter")));
                    }
                    let pattern = keyword == "pattern";
                    let rule = Rule::new(access, filter, pattern).map_err(err)?;
                    count += 1;
                    match (pattern, &user) {
                        (true, _) => patterns.push(rule),
                        (false, None) => anonymous.push(rule),
                        (false, Some(u)) => users.entry(u.clone()).or_default().push(rule),
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?} (expected topic, pattern or user)"
                    )))
                }
            }
        }
        Ok(AclFile {
            anonymous: anonymous.into(),
            users: users.into_iter().map(|(u, r)| (u, r.into())).collect(),
            patterns: patterns.into(),
            count,
        })
    }

    /// The `topic` rules for a client with `username` (anonymous rules without one).
    pub fn rules_for(&self, username: Option<&str>) -> Arc<[Rule]> {
        match username {
            None => self.anonymous.clone(),
            Some(u) => self.users.get(u).cloned().unwrap_or_else(|| Arc::new([])),
        }
    }

    /// The `pattern` rules (every client).
    pub fn patterns(&self) -> &Arc<[Rule]> {
        &self.patterns
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the file has no rule.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Who<'static> = Who {
        client_id: "dev1",
        username: Some("alice"),
    };

    fn rule(access: Access, filter: &str) -> Rule {
        Rule::new(access, filter, true).unwrap()
    }

    #[test]
    fn topic_matching_with_templates_and_dollar() {
        let r = rule(Access::Read, "devices/%c/#");
        assert!(r.matches_topic("devices/dev1/t", &ALICE));
        assert!(r.matches_topic("devices/dev1", &ALICE));
        assert!(!r.matches_topic("devices/dev2/t", &ALICE));
        let r = rule(Access::Read, "u/x%uy/+");
        assert!(r.matches_topic("u/xalicey/1", &ALICE));
        assert!(!r.matches_topic("u/xalice/1", &ALICE));
        let anon = Who {
            client_id: "a+b",
            username: None,
        };
        assert!(!rule(Access::Read, "%u/#").matches_topic("x/y", &anon));
        assert!(!rule(Access::Read, "%c").matches_topic("a+b", &anon));
        assert!(!rule(Access::Read, "#").matches_topic("$SYS/x", &ALICE));
        assert!(!rule(Access::Read, "+/x").matches_topic("$SYS/x", &ALICE));
        assert!(rule(Access::Read, "$SYS/#").matches_topic("$SYS/x", &ALICE));
    }

    #[test]
    fn covers_and_overlaps() {
        let w = &ALICE;
        let cases = [
            // (rule, filter, covers, overlaps)
            ("a/#", "a/+/b", true, true),
            ("a/#", "a", true, true),
            ("a/#", "#", false, true),
            ("a/+", "a/b", true, true),
            ("a/+", "a/#", false, true),
            ("a/b", "a/+", false, true),
            ("a/b", "a/c", false, false),
            ("+/b", "a/b", true, true),
            ("#", "$SYS/#", false, false),
            ("$SYS/#", "#", false, false),
            ("$SYS/#", "$SYS/broker/+", true, true),
            ("a/b/c", "a/#", false, true),
            ("a", "a/#", false, true),
        ];
        for (r, f, covers, overlaps) in cases {
            let r = rule(Access::Read, r);
            assert_eq!(r.covers(f, w), covers, "{r:?} covers {f}");
            assert_eq!(r.overlaps(f, w), overlaps, "{r:?} overlaps {f}");
        }
    }

    #[test]
    fn deny_wins_and_filtered_subscriptions() {
        let rules = [
            rule(Access::ReadWrite, "a/#"),
            rule(Access::Deny, "a/secret"),
        ];
        let sets: &[&[Rule]] = &[&rules];
        assert!(may_write(sets, "a/x", &ALICE));
        assert!(!may_write(sets, "a/secret", &ALICE));
        assert!(!may_read(sets, "a/secret", &ALICE));
        assert!(!may_write(sets, "b", &ALICE));
        assert_eq!(
            may_subscribe(sets, "a/x", &ALICE),
            SubscribeDecision::Allowed
        );
        assert_eq!(
            may_subscribe(sets, "a/#", &ALICE),
            SubscribeDecision::Filtered
        );
        assert_eq!(
            may_subscribe(sets, "a/secret", &ALICE),
            SubscribeDecision::Denied
        );
        assert_eq!(may_subscribe(sets, "#", &ALICE), SubscribeDecision::Denied);
        let ro = [rule(Access::Read, "r/#")];
        assert!(!may_write(&[&ro], "r/1", &ALICE));
        assert_eq!(
            may_subscribe(&[&ro], "r/+", &ALICE),
            SubscribeDecision::Allowed
        );
    }

    #[test]
    fn file_sections() {
        let file = AclFile::parse(
            "# comment\ntopic read public/#\n\nuser alice\ntopic alice/#\ntopic deny alice/x\n\
             pattern write clients/%c/out\nuser bob\ntopic read bob/#\n",
        )
        .unwrap();
        assert_eq!(file.len(), 5);
        assert_eq!(file.rules_for(None).len(), 1);
        assert_eq!(file.rules_for(Some("alice")).len(), 2);
        assert_eq!(file.rules_for(Some("alice"))[0].access(), Access::ReadWrite);
        assert_eq!(file.rules_for(Some("carol")).len(), 0);
        assert_eq!(file.patterns().len(), 1);
    }

    #[test]
    fn bad_lines_name_the_line() {
        assert_eq!(AclFile::parse("topic read a/#/b\n").unwrap_err().0, 1);
        assert_eq!(AclFile::parse("\nuser\n").unwrap_err().0, 2);
        assert_eq!(AclFile::parse("topic read\n").unwrap_err().0, 1);
        let err = AclFile::parse("# x\ntopik read a\n").unwrap_err();
        assert_eq!(err.0, 2);
        assert!(err.1.contains("unknown keyword"), "{}", err.1);
    }
}
