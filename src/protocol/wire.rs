//! Wire primitives shared by the decoder and the encoder: a bounds-checked [`Reader`] over one
//! packet's `Bytes`, and the [`Sink`] abstraction that lets one body writer both measure
//! ([`Counter`]) and write (`BytesMut`) a packet, so that size and output can never disagree.
//!
//! Nothing here knows about packet types; it owns integers, variable byte integers, UTF-8 strings
//! and binary data as MQTT 1.5 defines them.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::{DecodeError, EncodeError};

/// Largest value a variable byte integer can hold (MQTT 1.5.5).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// Shorthand for a malformed-packet error.
pub(crate) fn malformed(rule: &'static str, detail: &'static str) -> DecodeError {
    DecodeError::Malformed { rule, detail }
}

/// Shorthand for a protocol error.
pub(crate) fn protocol(rule: &'static str, detail: &'static str) -> DecodeError {
    DecodeError::Protocol { rule, detail }
}

fn truncated() -> DecodeError {
    malformed("1.5", "field runs past the end of the packet")
}

/// Cursor over `buf[pos..end]`. Every read is bounds-checked against `end`; slices share `buf`.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf[start..]`.
    pub(crate) fn new(buf: &'a Bytes, start: usize) -> Reader<'a> {
        let end = buf.len();
        Reader {
            buf,
            pos: start.min(end),
            end,
        }
    }

    /// Bytes left before `end`.
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// True when everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Fails unless everything has been read (trailing bytes are malformed).
    pub(crate) fn finish(&self, rule: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(malformed(rule, "trailing bytes after the last field"))
        }
    }

    fn take(&mut self, n: usize) -> Result<usize, DecodeError> {
        if n > self.remaining() {
            return Err(truncated());
        }
        let at = self.pos;
        self.pos += n;
        Ok(at)
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let at = self.take(1)?;
        Ok(self.buf[at])
    }

    /// Two-byte big-endian integer.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let at = self.take(2)?;
        Ok(u16::from_be_bytes([self.buf[at], self.buf[at + 1]]))
    }

    /// Four-byte big-endian integer.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.take(4)?;
        let b = &self.buf[at..at + 4];
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Variable byte integer of at most 4 bytes (MQTT 1.5.5).
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed(
            "1.5.5",
            "variable byte integer longer than 4 bytes",
        ))
    }

    /// `n` bytes as a zero-copy slice.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let at = self.take(n)?;
        Ok(self.buf.slice(at..at + n))
    }

    /// Binary data: 2-byte length then the bytes (MQTT 1.5.6).
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }

    /// The raw bytes of a length-prefixed field, without UTF-8 validation.
    pub(crate) fn raw_str(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u16()?);
        let at = self.take(n)?;
        let buf: &'a Bytes = self.buf;
        Ok(&buf[at..at + n])
    }

    /// UTF-8 encoded string: well-formed UTF-8 (MQTT-1.5.4-1) without U+0000 (MQTT-1.5.4-2).
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        if raw.contains(&0) {
            return Err(malformed("MQTT-1.5.4-2", "string contains U+0000"));
        }
        ByteString::try_from(raw).map_err(|_| malformed("MQTT-1.5.4-1", "string is not UTF-8"))
    }

    /// A sub-reader over the next `n` bytes; this reader skips past them.
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        let at = self.take(n)?;
        Ok(Reader {
            buf: self.buf,
            pos: at,
            end: at + n,
        })
    }

    /// Everything left, as a zero-copy slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        let at = self.pos;
        self.pos = self.end;
        self.buf.slice(at..self.end)
    }
}

/// Number of bytes of the variable byte integer encoding `v`.
pub(crate) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Where a body is written: a [`Counter`] while measuring, a `BytesMut` while writing.
pub(crate) trait Sink {
    /// One byte.
    fn u8(&mut self, v: u8);
    /// Two bytes, big-endian.
    fn u16(&mut self, v: u16);
    /// Four bytes, big-endian.
    fn u32(&mut self, v: u32);
    /// Raw bytes.
    fn slice(&mut self, s: &[u8]);
}

/// A [`Sink`] that only counts.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn u8(&mut self, _: u8) {
        self.0 += 1;
    }
    fn u16(&mut self, _: u16) {
        self.0 += 2;
    }
    fn u32(&mut self, _: u32) {
        self.0 += 4;
    }
    fn slice(&mut self, s: &[u8]) {
        self.0 += s.len();
    }
}

impl Sink for BytesMut {
    fn u8(&mut self, v: u8) {
        self.put_u8(v);
    }
    fn u16(&mut self, v: u16) {
        self.put_u16(v);
    }
    fn u32(&mut self, v: u32) {
        self.put_u32(v);
    }
    fn slice(&mut self, s: &[u8]) {
        self.put_slice(s);
    }
}

/// Writes a variable byte integer; values over [`VARINT_MAX`] are refused.
pub(crate) fn put_varint<S: Sink>(s: &mut S, v: usize) -> Result<(), EncodeError> {
    if v > VARINT_MAX as usize {
        return Err(EncodeError::TooLarge {
            size: v,
            max: VARINT_MAX,
        });
    }
    let mut v = v;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            s.u8(byte);
            return Ok(());
        }
        s.u8(byte | 0x80);
    }
}

/// Writes a length-prefixed UTF-8 string.
pub(crate) fn put_str<S: Sink>(s: &mut S, v: &str) -> Result<(), EncodeError> {
    let n = u16::try_from(v.len()).map_err(|_| EncodeError::StringTooLong(v.len()))?;
    s.u16(n);
    s.slice(v.as_bytes());
    Ok(())
}

/// Writes length-prefixed binary data.
pub(crate) fn put_bin<S: Sink>(s: &mut S, v: &[u8]) -> Result<(), EncodeError> {
    let n = u16::try_from(v.len()).map_err(|_| EncodeError::BinaryTooLong(v.len()))?;
    s.u16(n);
    s.slice(v);
    Ok(())
}
