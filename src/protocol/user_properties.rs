//! [`UserProperties`]: the User Property pairs (MQTT 5.0, property 0x26) of one packet, kept
//! in their wire encoding.
//!
//! This file owns that compact form and the per-packet budget that bounds it while decoding.
//! Decoded as one `(ByteString, ByteString)` per pair, properties took about ten times their
//! wire size and pinned the read buffer they were sliced from; here a packet's pairs are one
//! owned, exactly sized [`Bytes`] (copied out of the read buffer, never a slice of it) and a
//! count. Cloning shares the blob, encoding copies it verbatim, [`UserProperties::iter`] walks
//! it.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{malformed, Reader};
use super::DecodeError;

/// Property identifier of a User Property.
const USER_PROPERTY: u8 = 0x26;

/// The user properties of one packet, in order, as one wire-encoded blob.
///
/// Each pair is stored as it goes on the wire: identifier 0x26, then key and value as
/// length-prefixed UTF-8 strings. Build one with [`UserProperties::push`] or by collecting
/// `(key, value)` pairs; read it with [`UserProperties::iter`].
///
/// A key or value longer than 65,535 bytes cannot be encoded: such a pair is not stored, and
/// encoding a packet that carries these properties fails with
/// [`EncodeError::StringTooLong`](super::EncodeError::StringTooLong), as any over-long string
/// field does.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserProperties {
    /// The pairs, each `0x26, u16 key length, key, u16 value length, value`.
    wire: Bytes,
    /// Number of pairs in `wire` (a packet holds fewer than 2^32: each takes 5 bytes or more).
    len: u32,
    /// Length of the first string refused by `push` for being over 65,535 bytes (saturated at
    /// `u32::MAX`), 0 when there is none. (Both fields are `u32` to keep packets small.)
    unencodable: u32,
}

impl UserProperties {
    /// No properties.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the pair `key`, `value` (pairs may repeat, order is kept).
    pub fn push(&mut self, key: &str, value: &str) {
        let long = key.len().max(value.len());
        if long > 0xffff || self.len == u32::MAX {
            if self.unencodable == 0 {
                self.unencodable = u32::try_from(long).unwrap_or(u32::MAX);
            }
            return;
        }
        // The blob is usually not shared while it is being built: then this reuses it.
        let mut wire = match std::mem::take(&mut self.wire).try_into_mut() {
            Ok(wire) => wire,
            Err(shared) => BytesMut::from(&shared[..]),
        };
        wire.reserve(5 + key.len() + value.len());
        wire.put_u8(USER_PROPERTY);
        for s in [key, value] {
            // In range: checked above.
            wire.put_u16(s.len() as u16);
            wire.put_slice(s.as_bytes());
        }
        self.wire = wire.freeze();
        self.len += 1;
    }

    /// The pairs in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.wire }
    }

    /// Number of pairs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when there is no pair.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes these pairs take on the wire (identifiers included), which is also what they hold
    /// on the heap.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// The wire encoding of every pair, for the encoder; `Err(length)` when a string was too
    /// long to encode.
    pub(crate) fn wire(&self) -> Result<&[u8], usize> {
        match self.unencodable {
            0 => Ok(&self.wire),
            long => Err(long as usize),
        }
    }
}

impl fmt::Debug for UserProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        list.entries(self.iter());
        if self.unencodable != 0 {
            let long = self.unencodable;
            list.entry(&format_args!("<unencodable string of {long} bytes>"));
        }
        list.finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for UserProperties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut out = UserProperties::new();
        for (k, v) in pairs {
            out.push(k.as_ref(), v.as_ref());
        }
        out
    }
}

impl<'a> IntoIterator for &'a UserProperties {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over the `(key, value)` pairs of a [`UserProperties`].
#[derive(Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iter<'a> {
    /// The next length-prefixed string. The blob was written by `push` (from `&str`) or by
    /// the decoder (after UTF-8 validation), so this cannot fail; if it did, iteration ends.
    fn string(&mut self) -> Option<&'a str> {
        let (len, rest) = self.rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (s, rest) = rest.split_at_checked(len)?;
        self.rest = rest;
        std::str::from_utf8(s).ok()
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let (_identifier, rest) = self.rest.split_first()?;
        self.rest = rest;
        let key = self.string();
        let value = self.string();
        match (key, value) {
            (Some(key), Some(value)) => Some((key, value)),
            _ => {
                self.rest = &[];
                None
            }
        }
    }
}

/// The user properties of one packet as they are decoded, within the packet's budget
/// ([`super::DecodeLimits::max_user_properties`], shared by every property section of the
/// packet: CONNECT and will properties count together).
pub(crate) struct Collector {
    wire: Vec<u8>,
    len: u32,
}

/// How many more user properties the packet being decoded may carry.
pub(crate) struct Budget {
    left: usize,
    max: usize,
}

impl Budget {
    /// A packet's budget: `max` user properties.
    pub(crate) fn new(max: usize) -> Budget {
        Budget { left: max, max }
    }
}

impl Collector {
    pub(crate) fn new() -> Collector {
        Collector {
            wire: Vec::new(),
            len: 0,
        }
    }

    /// Reads one pair (after its identifier) from `r`: checks the budget first, so a packet over
    /// it costs no more work, then validates both strings (MQTT-1.5.4-1, MQTT-1.5.4-2) and copies
    /// them.
    pub(crate) fn read(
        &mut self,
        r: &mut Reader<'_>,
        budget: &mut Budget,
    ) -> Result<(), DecodeError> {
        if budget.left == 0 || self.len == u32::MAX {
            return Err(DecodeError::TooManyUserProperties { max: budget.max });
        }
        budget.left -= 1;
        self.wire.push(USER_PROPERTY);
        for _ in 0..2 {
            let raw = r.raw_str()?;
            if raw.contains(&0) {
                return Err(malformed("MQTT-1.5.4-2", "string contains U+0000"));
            }
            if std::str::from_utf8(raw).is_err() {
                return Err(malformed("MQTT-1.5.4-1", "string is not UTF-8"));
            }
            // A string read from the wire fits its 2-byte length.
            self.wire
                .extend_from_slice(&(raw.len() as u16).to_be_bytes());
            self.wire.extend_from_slice(raw);
        }
        self.len += 1;
        Ok(())
    }

    /// Stores the collected pairs in `slot` (left alone when there are none: the common case
    /// costs nothing).
    pub(crate) fn finish_into(self, slot: &mut UserProperties) {
        if self.len > 0 {
            *slot = self.finish();
        }
    }

    /// The collected pairs, in an allocation of exactly their size.
    pub(crate) fn finish(mut self) -> UserProperties {
        if self.len == 0 {
            return UserProperties::default();
        }
        self.wire.shrink_to_fit();
        UserProperties {
            wire: Bytes::from(self.wire),
            len: self.len,
            unencodable: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_iter_len() {
        let mut p = UserProperties::new();
        assert!(p.is_empty());
        assert_eq!(p.wire_len(), 0);
        p.push("k", "v");
        p.push("k", "w");
        p.push("", "\u{e9}");
        assert_eq!(p.len(), 3);
        assert!(!p.is_empty());
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [("k", "v"), ("k", "w"), ("", "\u{e9}")]
        );
        assert_eq!(p.wire_len(), 7 + 7 + 5 + 2);
        assert_eq!(
            p.wire(),
            Ok(&b"\x26\0\x01k\0\x01v\x26\0\x01k\0\x01w\x26\0\0\0\x02\xc3\xa9"[..])
        );
        assert_eq!(format!("{p:?}"), r#"[("k", "v"), ("k", "w"), ("", "é")]"#);
    }

    #[test]
    fn collect_equals_push_and_clone_shares() {
        let collected: UserProperties = [("a", "1"), ("b", "2")].into_iter().collect();
        let mut pushed = UserProperties::new();
        pushed.push("a", "1");
        pushed.push("b", "2");
        assert_eq!(collected, pushed);
        let clone = pushed.clone();
        // Pushing onto a shared blob copies it; the clone is unchanged.
        pushed.push("c", "3");
        assert_eq!(clone.len(), 2);
        assert_eq!(pushed.len(), 3);
        assert_ne!(clone, pushed);
        let owned: UserProperties = vec![(String::from("a"), String::from("1"))]
            .into_iter()
            .collect();
        assert_eq!(owned.iter().next(), Some(("a", "1")));
    }

    #[test]
    fn over_long_strings_are_kept_out_and_remembered() {
        let long = "x".repeat(65_536);
        let mut p = UserProperties::new();
        p.push("ok", "1");
        p.push(&long, "v");
        assert_eq!(p.len(), 1);
        assert_eq!(p.wire(), Err(65_536));
        assert_ne!(p, [("ok", "1")].into_iter().collect());
        let max = "x".repeat(65_535);
        let mut p = UserProperties::new();
        p.push(&max, &max);
        assert_eq!(p.iter().next(), Some((max.as_str(), max.as_str())));
    }
}
