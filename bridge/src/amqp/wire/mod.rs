//! AMQP 0-9-1 on the wire: frames, the primitive types, field tables, basic properties and
//! the methods the bridge exchanges with RabbitMQ. Pure functions over byte buffers, no I/O.
//!
//! Decoding never trusts a length: every read is checked against what is left of the frame
//! before it is done, nested tables are read without recursion (an explicit stack, at most
//! [`MAX_DEPTH`] deep), and strings are kept as bytes (RabbitMQ passes a publisher's bytes
//! through unchecked, so a non-UTF-8 header or id is data, not a reason to drop the
//! connection). A malformed frame is a [`WireError`], never a panic.

pub(crate) mod method;
pub(crate) mod props;
pub(crate) mod table;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Frame types.
pub(crate) const FRAME_METHOD: u8 = 1;
pub(crate) const FRAME_HEADER: u8 = 2;
pub(crate) const FRAME_BODY: u8 = 3;
pub(crate) const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub(crate) const FRAME_END: u8 = 0xCE;
/// Type, channel and size before a frame's payload.
pub(crate) const FRAME_HEADER_LEN: usize = 7;
/// A frame's bytes around its payload (header and end octet).
pub(crate) const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + 1;
/// The protocol header a client opens with.
pub(crate) const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// The smallest frame every peer accepts (before `connection.tune` settles the real one).
pub(crate) const FRAME_MIN: u32 = 4096;
/// The longest short string.
pub(crate) const MAX_SHORT: usize = 255;
/// How deep field tables and arrays may nest in what is decoded.
pub(crate) const MAX_DEPTH: usize = 32;

/// Why bytes from the network are not AMQP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("frame ends early (wanted {wanted} more bytes of {what})")]
    Short { what: &'static str, wanted: usize },
    #[error("frame end octet is {0:#04x}, not 0xce")]
    FrameEnd(u8),
    #[error("frame of {size} bytes, more than the {max} agreed")]
    FrameTooLarge { size: usize, max: usize },
    #[error("unknown field value type {0:#04x}")]
    FieldType(u8),
    #[error("field tables nested more than {MAX_DEPTH} deep")]
    TooDeep,
    #[error("{0} has bytes left over")]
    Trailing(&'static str),
    #[error("unexpected method {class}.{method}")]
    Method { class: u16, method: u16 },
    #[error("{0}")]
    Bad(&'static str),
}

/// A read position in a frame's payload; every read is bounds-checked.
pub(crate) struct Cursor {
    buf: Bytes,
}

impl Cursor {
    pub(crate) fn new(buf: Bytes) -> Cursor {
        Cursor { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), WireError> {
        if self.buf.len() < n {
            return Err(WireError::Short {
                what,
                wanted: n - self.buf.len(),
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        self.need(1, "octet")?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        self.need(2, "short")?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        self.need(4, "long")?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        self.need(8, "long long")?;
        Ok(self.buf.get_u64())
    }

    /// `n` bytes, shared with the frame (no copy).
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, WireError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    /// A short string (octet length).
    pub(crate) fn short(&mut self) -> Result<Bytes, WireError> {
        let n = usize::from(self.u8()?);
        self.bytes(n, "short string")
    }

    /// A long string (32-bit length).
    pub(crate) fn long(&mut self) -> Result<Bytes, WireError> {
        let n = self.u32()? as usize;
        self.bytes(n, "long string")
    }

    /// Refuses what is left over.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(what))
        }
    }
}

/// Why something cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {len} bytes, longer than AMQP's {MAX_SHORT}")]
pub(crate) struct TooLong {
    pub(crate) what: &'static str,
    pub(crate) len: usize,
}

/// Appends a short string; refuses one over 255 bytes.
pub(crate) fn put_short(out: &mut BytesMut, what: &'static str, s: &[u8]) -> Result<(), TooLong> {
    let len = u8::try_from(s.len()).map_err(|_| TooLong { what, len: s.len() })?;
    out.put_u8(len);
    out.put_slice(s);
    Ok(())
}

/// Appends a long string.
pub(crate) fn put_long(out: &mut BytesMut, s: &[u8]) {
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(&s[..s.len().min(u32::MAX as usize)]);
}

/// Starts a frame; returns where its size goes (see [`end_frame`]).
pub(crate) fn begin_frame(out: &mut BytesMut, kind: u8, channel: u16) -> usize {
    out.put_u8(kind);
    out.put_u16(channel);
    let at = out.len();
    out.put_u32(0);
    at
}

/// Ends the frame begun at `at`: its size and the end octet.
pub(crate) fn end_frame(out: &mut BytesMut, at: usize) {
    let size = out.len() - at - 4;
    out[at..at + 4].copy_from_slice(&(size as u32).to_be_bytes());
    out.put_u8(FRAME_END);
}

/// A heartbeat frame.
pub(crate) fn put_heartbeat(out: &mut BytesMut) {
    let at = begin_frame(out, FRAME_HEARTBEAT, 0);
    end_frame(out, at);
}

/// One frame read from the network.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) channel: u16,
    pub(crate) payload: Bytes,
}

/// Takes one whole frame off the front of `buf`, if it holds one. `max` is the largest frame
/// (payload and overhead) accepted: a larger announced size is refused before it is read.
pub(crate) fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, WireError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if size > max.saturating_sub(FRAME_OVERHEAD) {
        return Err(WireError::FrameTooLarge {
            size: size + FRAME_OVERHEAD,
            max,
        });
    }
    let total = FRAME_HEADER_LEN + size + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let end = buf[total - 1];
    if end != FRAME_END {
        return Err(WireError::FrameEnd(end));
    }
    let mut frame = buf.split_to(total);
    frame.advance(FRAME_HEADER_LEN);
    frame.truncate(size);
    Ok(Some(Frame {
        kind,
        channel,
        payload: frame.freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let mut b = BytesMut::new();
        let at = begin_frame(&mut b, FRAME_BODY, 7);
        b.put_slice(b"hello");
        end_frame(&mut b, at);
        put_heartbeat(&mut b);
        let whole = b.clone();
        // Byte by byte: nothing until the frame is whole.
        let mut partial = BytesMut::new();
        for &x in &whole[..13] {
            assert!(take_frame(&mut partial, 4096).unwrap().is_none());
            partial.put_u8(x);
        }
        let f = take_frame(&mut partial, 4096).unwrap().unwrap();
        assert_eq!(
            (f.kind, f.channel, &f.payload[..]),
            (FRAME_BODY, 7, &b"hello"[..])
        );
        let f = take_frame(&mut b, 4096).unwrap().unwrap();
        assert_eq!(&f.payload[..], b"hello");
        let f = take_frame(&mut b, 4096).unwrap().unwrap();
        assert_eq!((f.kind, f.payload.len()), (FRAME_HEARTBEAT, 0));
        assert!(b.is_empty());

        let mut big = BytesMut::from(&[1u8, 0, 1, 0, 1, 0, 0][..]);
        assert!(matches!(
            take_frame(&mut big, 4096),
            Err(WireError::FrameTooLarge { .. })
        ));
        let mut bad_end = BytesMut::from(&[8u8, 0, 0, 0, 0, 0, 0, 0xCD][..]);
        assert_eq!(
            take_frame(&mut bad_end, 4096).unwrap_err(),
            WireError::FrameEnd(0xCD)
        );
    }

    #[test]
    fn cursor_reads_are_bounded() {
        let mut c = Cursor::new(Bytes::from_static(&[5, b'a', b'b']));
        assert!(matches!(c.short(), Err(WireError::Short { .. })));
        let mut c = Cursor::new(Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF]));
        assert!(matches!(c.long(), Err(WireError::Short { .. })));
        let mut out = BytesMut::new();
        assert!(put_short(&mut out, "x", &[0u8; 256]).is_err());
        assert!(put_short(&mut out, "x", &[0u8; 255]).is_ok());
    }
}
