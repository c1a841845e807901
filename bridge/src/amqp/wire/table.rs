//! Field tables and values (RabbitMQ's set of types, which is what every client speaks: `s` is
//! a signed 16-bit integer, not a short string). Keys and strings stay bytes. Decoding is
//! iterative: a table holding a table holding an array… is read with an explicit stack, and
//! refused past [`MAX_DEPTH`] levels so that nothing recursive (dropping, encoding) meets a
//! deep value.

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_long, put_short, Cursor, TooLong, WireError, MAX_DEPTH};

/// One value in a field table or array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: scale and unscaled value.
    Decimal(u8, u32),
    /// `S`: a long string (bytes, UTF-8 or not).
    LongString(Bytes),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T`: seconds since the epoch.
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
    /// `x`: a byte array.
    Bytes(Bytes),
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> FieldValue {
        FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// A field table: names (short strings, kept as bytes) and values, in wire order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct FieldTable(Vec<(Bytes, FieldValue)>);

impl FieldTable {
    pub(crate) fn new() -> FieldTable {
        FieldTable(Vec::new())
    }

    /// An empty table with room for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> FieldTable {
        FieldTable(Vec::with_capacity(n))
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends an entry whose name the caller knows is not in the table yet (no search, and a
    /// static name costs no allocation).
    pub(crate) fn push(&mut self, key: Bytes, v: FieldValue) {
        self.0.push((key, v));
    }

    /// The value of the entry at `i` (in wire order).
    pub(crate) fn value_mut(&mut self, i: usize) -> Option<&mut FieldValue> {
        self.0.get_mut(i).map(|(_, v)| v)
    }

    /// The value of the first entry named `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` (replacing its value when present).
    pub(crate) fn insert(&mut self, key: impl AsRef<[u8]>, v: FieldValue) {
        let key = key.as_ref();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = v,
            None => self.0.push((Bytes::copy_from_slice(key), v)),
        }
    }

    /// The entries in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Bytes, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Appends the table (32-bit byte length first).
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        let at = out.len();
        out.put_u32(0);
        for (k, v) in &self.0 {
            put_short(out, "field table key", k)?;
            v.encode(out)?;
        }
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Reads a table (32-bit byte length first) without recursion.
    pub(crate) fn decode(c: &mut Cursor) -> Result<FieldTable, WireError> {
        let len = c.u32()? as usize;
        if len > c.remaining() {
            return Err(WireError::Short {
                what: "field table",
                wanted: len - c.remaining(),
            });
        }
        let mut stack = vec![Open {
            end: c.remaining() - len,
            kind: Kind::Table(FieldTable::new(), None),
        }];
        loop {
            let Some(top) = stack.last_mut() else {
                return Err(WireError::Bad("field table stack empty"));
            };
            let left = c.remaining();
            if left < top.end {
                return Err(WireError::Bad("a field value overruns its table"));
            }
            if left == top.end {
                let Some(done) = stack.pop() else {
                    return Err(WireError::Bad("field table stack empty"));
                };
                let value = match done.kind {
                    Kind::Table(t, _) => FieldValue::Table(t),
                    Kind::Array(a) => FieldValue::Array(a),
                };
                match stack.last_mut() {
                    None => match value {
                        FieldValue::Table(t) => return Ok(t),
                        _ => return Err(WireError::Bad("field table stack")),
                    },
                    Some(parent) => parent.attach(value)?,
                }
                continue;
            }
            if let Kind::Table(_, key) = &mut top.kind {
                *key = Some(c.short()?);
            }
            let tag = c.u8()?;
            match tag {
                b'A' | b'F' => {
                    let len = c.u32()? as usize;
                    let room = c.remaining().saturating_sub(top.end);
                    if len > room {
                        return Err(WireError::Bad("a nested field table overruns its parent"));
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(WireError::TooDeep);
                    }
                    let end = c.remaining() - len;
                    let kind = if tag == b'A' {
                        Kind::Array(Vec::new())
                    } else {
                        Kind::Table(FieldTable::new(), None)
                    };
                    stack.push(Open { end, kind });
                }
                t => {
                    let v = scalar(t, c)?;
                    top.attach(v)?;
                }
            }
        }
    }
}

/// A table or array being read.
struct Open {
    /// What remains of the input when it is complete.
    end: usize,
    kind: Kind,
}

enum Kind {
    /// The table and the name of the value being read.
    Table(FieldTable, Option<Bytes>),
    Array(Vec<FieldValue>),
}

impl Open {
    fn attach(&mut self, v: FieldValue) -> Result<(), WireError> {
        match &mut self.kind {
            Kind::Table(t, key) => {
                let k = key
                    .take()
                    .ok_or(WireError::Bad("field value without a name"))?;
                t.0.push((k, v));
            }
            Kind::Array(a) => a.push(v),
        }
        Ok(())
    }
}

fn scalar(tag: u8, c: &mut Cursor) -> Result<FieldValue, WireError> {
    Ok(match tag {
        b't' => FieldValue::Bool(c.u8()? != 0),
        b'b' => FieldValue::I8(c.u8()? as i8),
        b'B' => FieldValue::U8(c.u8()?),
        b's' => FieldValue::I16(c.u16()? as i16),
        b'u' => FieldValue::U16(c.u16()?),
        b'I' => FieldValue::I32(c.u32()? as i32),
        b'i' => FieldValue::U32(c.u32()?),
        b'l' => FieldValue::I64(c.u64()? as i64),
        b'f' => FieldValue::F32(f32::from_bits(c.u32()?)),
        b'd' => FieldValue::F64(f64::from_bits(c.u64()?)),
        b'D' => FieldValue::Decimal(c.u8()?, c.u32()?),
        b'S' => FieldValue::LongString(c.long()?),
        b'T' => FieldValue::Timestamp(c.u64()?),
        b'V' => FieldValue::Void,
        b'x' => FieldValue::Bytes(c.long()?),
        t => return Err(WireError::FieldType(t)),
    })
}

impl FieldValue {
    /// Appends the value (type octet first). Recursive on nesting: values built here are
    /// flat, and decoded ones at most [`MAX_DEPTH`] deep.
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        match self {
            FieldValue::Bool(b) => {
                out.put_u8(b't');
                out.put_u8(u8::from(*b));
            }
            FieldValue::I8(n) => {
                out.put_u8(b'b');
                out.put_i8(*n);
            }
            FieldValue::U8(n) => {
                out.put_u8(b'B');
                out.put_u8(*n);
            }
            FieldValue::I16(n) => {
                out.put_u8(b's');
                out.put_i16(*n);
            }
            FieldValue::U16(n) => {
                out.put_u8(b'u');
                out.put_u16(*n);
            }
            FieldValue::I32(n) => {
                out.put_u8(b'I');
                out.put_i32(*n);
            }
            FieldValue::U32(n) => {
                out.put_u8(b'i');
                out.put_u32(*n);
            }
            FieldValue::I64(n) => {
                out.put_u8(b'l');
                out.put_i64(*n);
            }
            FieldValue::F32(n) => {
                out.put_u8(b'f');
                out.put_f32(*n);
            }
            FieldValue::F64(n) => {
                out.put_u8(b'd');
                out.put_f64(*n);
            }
            FieldValue::Decimal(s, n) => {
                out.put_u8(b'D');
                out.put_u8(*s);
                out.put_u32(*n);
            }
            FieldValue::LongString(s) => {
                out.put_u8(b'S');
                put_long(out, s);
            }
            FieldValue::Array(a) => {
                out.put_u8(b'A');
                let at = out.len();
                out.put_u32(0);
                for v in a {
                    v.encode(out)?;
                }
                let len = (out.len() - at - 4) as u32;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
            FieldValue::Timestamp(t) => {
                out.put_u8(b'T');
                out.put_u64(*t);
            }
            FieldValue::Table(t) => {
                out.put_u8(b'F');
                t.encode(out)?;
            }
            FieldValue::Void => out.put_u8(b'V'),
            FieldValue::Bytes(b) => {
                out.put_u8(b'x');
                put_long(out, b);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(t: &FieldTable) -> FieldTable {
        let mut b = BytesMut::new();
        t.encode(&mut b).unwrap();
        let mut c = Cursor::new(b.freeze());
        let back = FieldTable::decode(&mut c).unwrap();
        c.finish("table").unwrap();
        back
    }

    #[test]
    fn every_type_round_trips() {
        let mut inner = FieldTable::new();
        inner.insert(
            "deep",
            FieldValue::Array(vec![FieldValue::Void, FieldValue::I8(-1)]),
        );
        let mut t = FieldTable::new();
        for (k, v) in [
            ("t", FieldValue::Bool(true)),
            ("b", FieldValue::I8(-3)),
            ("B", FieldValue::U8(250)),
            ("s", FieldValue::I16(-300)),
            ("u", FieldValue::U16(60000)),
            ("I", FieldValue::I32(-70000)),
            ("i", FieldValue::U32(4_000_000_000)),
            ("l", FieldValue::I64(-5)),
            ("f", FieldValue::F32(1.5)),
            ("d", FieldValue::F64(-2.25)),
            ("D", FieldValue::Decimal(2, 12345)),
            (
                "S",
                FieldValue::LongString(Bytes::from_static(b"\xff\xfe not utf-8")),
            ),
            (
                "A",
                FieldValue::Array(vec![FieldValue::from("a"), FieldValue::U8(1)]),
            ),
            ("T", FieldValue::Timestamp(1_700_000_000)),
            ("F", FieldValue::Table(inner.clone())),
            ("V", FieldValue::Void),
            ("x", FieldValue::Bytes(Bytes::from_static(&[0, 1, 2]))),
        ] {
            t.insert(k, v);
        }
        t.insert(b"\xc3(".as_slice(), FieldValue::Void);
        assert_eq!(round(&t), t);
        // Replacing keeps one entry.
        t.insert("t", FieldValue::Bool(false));
        assert_eq!(t.iter().filter(|(k, _)| &k[..] == b"t").count(), 1);
        assert_eq!(round(&t).get(b"t"), Some(&FieldValue::Bool(false)));
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        // MAX_DEPTH levels decode; one more is refused.
        let nest = |levels: usize| {
            let mut t = FieldTable::new();
            for _ in 1..levels {
                let mut outer = FieldTable::new();
                outer.insert("n", FieldValue::Table(t));
                t = outer;
            }
            t
        };
        assert_eq!(round(&nest(MAX_DEPTH)), nest(MAX_DEPTH));
        let mut b = BytesMut::new();
        nest(MAX_DEPTH + 1).encode(&mut b).unwrap();
        assert_eq!(
            FieldTable::decode(&mut Cursor::new(b.freeze())).unwrap_err(),
            WireError::TooDeep
        );
        // A hostile frame: 100,000 nested arrays (hand-built, never decoded past the limit).
        let mut b = BytesMut::new();
        let n = 100_000usize;
        b.put_u32((n * 6) as u32 + 6);
        b.put_u8(1);
        b.put_u8(b'k');
        for i in 0..n {
            b.put_u8(b'A');
            b.put_u32(((n - i - 1) * 5) as u32);
        }
        assert!(FieldTable::decode(&mut Cursor::new(b.freeze())).is_err());
    }

    #[test]
    fn bad_lengths_are_refused() {
        for bytes in [
            &[0u8, 0, 0, 9, 1, b'k'][..],     // table longer than the input
            &[0, 0, 0, 3, 1, b'k', b'Q'][..], // unknown type
            &[0, 0, 0, 7, 1, b'k', b'A', 0, 0, 0, 9][..], // array overruns its table
            &[0, 0, 0, 4, 1, b'k', b'I', 0, 0, 0, 0, 0][..], // value overruns its table
            &[0, 0, 0, 2, 5, b'k'][..],       // key overruns
        ] {
            let r = FieldTable::decode(&mut Cursor::new(Bytes::copy_from_slice(bytes)));
            assert!(r.is_err(), "{bytes:?} gave {r:?}");
        }
    }
}
