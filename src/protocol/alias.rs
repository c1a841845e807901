//! MQTT 5.0 Topic Aliases (MQTT 3.3.2.3.4): the two per-connection tables.
//!
//! [`InboundAliases`] resolves the aliases a client sets and uses, within the Topic Alias
//! Maximum the server advertised; [`OutboundAliases`] picks the aliases the server sends,
//! within the client's Topic Alias Maximum, replacing the least recently used one when full.
//! Both are plain data structures (no I/O, no clock); a table lives exactly as long as its
//! network connection (aliases never outlive it, MQTT-3.3.2-7).
//!
//! The outgoing table is on the delivery path, so a repeated topic costs one hash lookup and
//! two index updates: no allocation. A topic is copied once, when an alias is assigned to it.

use ahash::AHashMap;
use bytestring::ByteString;
use compact_str::CompactString;

/// Why an incoming alias is refused; every case is a DISCONNECT with 0x94 Topic Alias invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    /// Alias 0, or one above the maximum the server advertised.
    #[error("topic alias {alias} outside 1..={max} (MQTT-3.3.2-8, MQTT-3.3.2-9)")]
    OutOfRange {
        /// The alias sent.
        alias: u16,
        /// The server's Topic Alias Maximum.
        max: u16,
    },
    /// An empty topic name with an alias that was never set on this connection.
    #[error("topic alias {0} used before it was set on this connection (3.3.2.3.4)")]
    Unknown(u16),
}

/// The aliases a client has set on this connection.
#[derive(Debug, Default)]
pub struct InboundAliases {
    max: u16,
    /// Index `alias - 1`; an empty topic is an alias not set yet. Grows as aliases are set.
    topics: Vec<ByteString>,
}

impl InboundAliases {
    /// A table taking aliases 1..=`max` (0: the client may use none).
    pub fn new(max: u16) -> InboundAliases {
        InboundAliases {
            max,
            topics: Vec::new(),
        }
    }

    /// Resolves the topic of an incoming PUBLISH with Topic Alias `alias`: a topic name sets
    /// (or replaces) the alias, an empty one is replaced by the alias's topic.
    pub fn resolve(
        &mut self,
        topic: &mut ByteString,
        alias: Option<u16>,
    ) -> Result<(), AliasError> {
        let Some(alias) = alias else {
            return Ok(());
        };
        if alias == 0 || alias > self.max {
            return Err(AliasError::OutOfRange {
                alias,
                max: self.max,
            });
        }
        let index = usize::from(alias - 1);
        if topic.is_empty() {
            match self.topics.get(index) {
                Some(known) if !known.is_empty() => *topic = known.clone(),
                _ => return Err(AliasError::Unknown(alias)),
            }
            return Ok(());
        }
        if self.topics.len() <= index {
            self.topics.resize(index + 1, ByteString::new());
        }
        let slot = &mut self.topics[index];
        if **slot != **topic {
            // A copy: the decoded topic is a slice of the read buffer, which it would pin.
            *slot = ByteString::from(&**topic);
        }
        Ok(())
    }
}

/// No slot (the end of the recency list).
const NIL: u16 = u16::MAX;

/// One outgoing alias: its topic and its place in the recency list.
#[derive(Debug)]
struct Slot {
    topic: CompactString,
    /// More recently used neighbour.
    prev: u16,
    /// Less recently used neighbour.
    next: u16,
}

/// The alias to send with one PUBLISH, from [`OutboundAliases::choose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutAlias {
    /// The client knows this alias for the topic: send an empty topic name.
    Known(u16),
    /// Assign this alias: send the topic name with it.
    New(u16),
}

impl OutAlias {
    /// The alias value.
    pub fn value(self) -> u16 {
        match self {
            OutAlias::Known(alias) | OutAlias::New(alias) => alias,
        }
    }
}

/// The aliases the server has assigned on this connection, least recently used replaced first.
#[derive(Debug)]
pub struct OutboundAliases {
    max: u16,
    by_topic: AHashMap<CompactString, u16>,
    /// Index `alias - 1`.
    slots: Vec<Slot>,
    /// Most recently used slot.
    head: u16,
    /// Least recently used slot.
    tail: u16,
}

impl OutboundAliases {
    /// A table of at most `max` aliases (at most 65534 are used).
    pub fn new(max: u16) -> OutboundAliases {
        OutboundAliases {
            max: max.min(NIL - 1),
            by_topic: AHashMap::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// The alias to send with a PUBLISH to `topic`; nothing changes until
    /// [`OutboundAliases::confirm`] (so a PUBLISH that is not sent assigns nothing).
    pub fn choose(&self, topic: &str) -> Option<OutAlias> {
        if self.max == 0 {
            return None;
        }
        if let Some(&alias) = self.by_topic.get(topic) {
            return Some(OutAlias::Known(alias));
        }
        if self.slots.len() < usize::from(self.max) {
            // Fits: slots.len() < max <= 65534.
            return Some(OutAlias::New(self.slots.len() as u16 + 1));
        }
        Some(OutAlias::New(self.tail + 1))
    }

    /// Records that a PUBLISH to `topic` went out with `alias` (from [`Self::choose`]).
    pub fn confirm(&mut self, topic: &str, alias: OutAlias) {
        let index = alias.value() - 1;
        match alias {
            OutAlias::Known(_) => self.unlink(index),
            OutAlias::New(_) if usize::from(index) == self.slots.len() => {
                self.slots.push(Slot {
                    topic: CompactString::new(topic),
                    prev: NIL,
                    next: NIL,
                });
                self.by_topic
                    .insert(CompactString::new(topic), alias.value());
            }
            OutAlias::New(_) => {
                self.unlink(index);
                let slot = &mut self.slots[usize::from(index)];
                self.by_topic.remove(slot.topic.as_str());
                slot.topic = CompactString::new(topic);
                self.by_topic
                    .insert(CompactString::new(topic), alias.value());
            }
        }
        self.push_front(index);
    }

    fn unlink(&mut self, index: u16) {
        let (prev, next) = {
            let slot = &self.slots[usize::from(index)];
            (slot.prev, slot.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[usize::from(p)].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[usize::from(n)].prev = prev,
        }
    }

    fn push_front(&mut self, index: u16) {
        let old_head = self.head;
        {
            let slot = &mut self.slots[usize::from(index)];
            slot.prev = NIL;
            slot.next = old_head;
        }
        match old_head {
            NIL => self.tail = index,
            h => self.slots[usize::from(h)].prev = index,
        }
        self.head = index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(table: &mut OutboundAliases, topic: &str) -> OutAlias {
        let alias = table.choose(topic).expect("aliases enabled");
        table.confirm(topic, alias);
        alias
    }

    #[test]
    fn outbound_assigns_reuses_and_replaces_the_least_recently_used() {
        let mut t = OutboundAliases::new(2);
        assert_eq!(send(&mut t, "a"), OutAlias::New(1));
        assert_eq!(send(&mut t, "a"), OutAlias::Known(1));
        assert_eq!(send(&mut t, "b"), OutAlias::New(2));
        assert_eq!(send(&mut t, "a"), OutAlias::Known(1));
        // b is the least recently used now.
        assert_eq!(send(&mut t, "c"), OutAlias::New(2));
        assert_eq!(send(&mut t, "b"), OutAlias::New(1));
        assert_eq!(send(&mut t, "c"), OutAlias::Known(2));
        assert_eq!(send(&mut t, "a"), OutAlias::New(1));
    }

    #[test]
    fn outbound_choose_changes_nothing() {
        let mut t = OutboundAliases::new(1);
        assert_eq!(t.choose("a"), Some(OutAlias::New(1)));
        assert_eq!(t.choose("a"), Some(OutAlias::New(1)));
        assert_eq!(send(&mut t, "a"), OutAlias::New(1));
        assert_eq!(t.choose("b"), Some(OutAlias::New(1)));
        assert_eq!(send(&mut t, "a"), OutAlias::Known(1));
        assert_eq!(OutboundAliases::new(0).choose("a"), None);
    }

    #[test]
    fn outbound_against_a_naive_lru() {
        // A small deterministic walk over 5 topics with 3 aliases, checked against a Vec LRU.
        let mut t = OutboundAliases::new(3);
        let mut naive: Vec<(String, u16)> = Vec::new(); // most recent first
        let mut x: u32 = 7;
        for _ in 0..500 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let topic = format!("t{}", (x >> 16) % 5);
            let got = send(&mut t, &topic);
            let expected = if let Some(i) = naive.iter().position(|(k, _)| *k == topic) {
                let entry = naive.remove(i);
                let alias = entry.1;
                naive.insert(0, entry);
                OutAlias::Known(alias)
            } else {
                let alias = if naive.len() < 3 {
                    naive.len() as u16 + 1
                } else {
                    naive.pop().unwrap().1
                };
                naive.insert(0, (topic.clone(), alias));
                OutAlias::New(alias)
            };
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn inbound_sets_uses_and_refuses() {
        let mut t = InboundAliases::new(3);
        let mut topic = ByteString::from("a/b");
        t.resolve(&mut topic, Some(2)).unwrap();
        let mut empty = ByteString::new();
        t.resolve(&mut empty, Some(2)).unwrap();
        assert_eq!(&*empty, "a/b");
        let mut topic = ByteString::from("c");
        t.resolve(&mut topic, Some(2)).unwrap();
        let mut empty = ByteString::new();
        t.resolve(&mut empty, Some(2)).unwrap();
        assert_eq!(&*empty, "c");
        let mut empty = ByteString::new();
        assert_eq!(t.resolve(&mut empty, Some(1)), Err(AliasError::Unknown(1)));
        assert_eq!(t.resolve(&mut empty, Some(3)), Err(AliasError::Unknown(3)));
        for alias in [0, 4] {
            assert!(matches!(
                t.resolve(&mut ByteString::from("x"), Some(alias)),
                Err(AliasError::OutOfRange { .. })
            ));
        }
        assert!(InboundAliases::new(0)
            .resolve(&mut ByteString::from("x"), Some(1))
            .is_err());
        let mut plain = ByteString::from("x");
        InboundAliases::new(0).resolve(&mut plain, None).unwrap();
    }
}
