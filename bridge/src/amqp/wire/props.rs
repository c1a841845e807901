//! Basic properties: the content header frame (class 60) that precedes a message body.
//! Short-string properties are bytes: RabbitMQ passes a publisher's bytes through unchecked.

use bytes::{BufMut, Bytes, BytesMut};

use super::table::FieldTable;
use super::{put_short, Cursor, TooLong, WireError};

/// The basic class.
pub(crate) const CLASS_BASIC: u16 = 60;

/// A message's properties; `None` is absent.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct BasicProperties {
    pub(crate) content_type: Option<Bytes>,
    pub(crate) content_encoding: Option<Bytes>,
    pub(crate) headers: Option<FieldTable>,
    /// 1 transient, 2 persistent.
    pub(crate) delivery_mode: Option<u8>,
    pub(crate) priority: Option<u8>,
    pub(crate) correlation_id: Option<Bytes>,
    pub(crate) reply_to: Option<Bytes>,
    /// Per-message TTL in milliseconds, as text.
    pub(crate) expiration: Option<Bytes>,
    pub(crate) message_id: Option<Bytes>,
    /// Seconds since the epoch.
    pub(crate) timestamp: Option<u64>,
    pub(crate) kind: Option<Bytes>,
    pub(crate) user_id: Option<Bytes>,
    pub(crate) app_id: Option<Bytes>,
    pub(crate) cluster_id: Option<Bytes>,
}

const F_CONTENT_TYPE: u16 = 1 << 15;
const F_CONTENT_ENCODING: u16 = 1 << 14;
const F_HEADERS: u16 = 1 << 13;
const F_DELIVERY_MODE: u16 = 1 << 12;
const F_PRIORITY: u16 = 1 << 11;
const F_CORRELATION_ID: u16 = 1 << 10;
const F_REPLY_TO: u16 = 1 << 9;
const F_EXPIRATION: u16 = 1 << 8;
const F_MESSAGE_ID: u16 = 1 << 7;
const F_TIMESTAMP: u16 = 1 << 6;
const F_TYPE: u16 = 1 << 5;
const F_USER_ID: u16 = 1 << 4;
const F_APP_ID: u16 = 1 << 3;
const F_CLUSTER_ID: u16 = 1 << 2;

/// Appends a short-string property when present, and its flag.
fn put_opt(
    out: &mut BytesMut,
    flags: &mut u16,
    flag: u16,
    what: &'static str,
    v: &Option<Bytes>,
) -> Result<(), TooLong> {
    if let Some(v) = v {
        *flags |= flag;
        put_short(out, what, v)?;
    }
    Ok(())
}

impl BasicProperties {
    /// Appends the content header payload: class, weight, body size, flags, properties.
    pub(crate) fn encode(&self, body_size: u64, out: &mut BytesMut) -> Result<(), TooLong> {
        out.put_u16(CLASS_BASIC);
        out.put_u16(0);
        out.put_u64(body_size);
        let flags_at = out.len();
        out.put_u16(0);
        let mut f = 0u16;
        let o = out;
        put_opt(
            o,
            &mut f,
            F_CONTENT_TYPE,
            "content-type",
            &self.content_type,
        )?;
        put_opt(
            o,
            &mut f,
            F_CONTENT_ENCODING,
            "content-encoding",
            &self.content_encoding,
        )?;
        if let Some(h) = &self.headers {
            f |= F_HEADERS;
            h.encode(o)?;
        }
        if let Some(m) = self.delivery_mode {
            f |= F_DELIVERY_MODE;
            o.put_u8(m);
        }
        if let Some(p) = self.priority {
            f |= F_PRIORITY;
            o.put_u8(p);
        }
        put_opt(
            o,
            &mut f,
            F_CORRELATION_ID,
            "correlation-id",
            &self.correlation_id,
        )?;
        put_opt(o, &mut f, F_REPLY_TO, "reply-to", &self.reply_to)?;
        put_opt(o, &mut f, F_EXPIRATION, "expiration", &self.expiration)?;
        put_opt(o, &mut f, F_MESSAGE_ID, "message-id", &self.message_id)?;
        if let Some(t) = self.timestamp {
            f |= F_TIMESTAMP;
            o.put_u64(t);
        }
        put_opt(o, &mut f, F_TYPE, "type", &self.kind)?;
        put_opt(o, &mut f, F_USER_ID, "user-id", &self.user_id)?;
        put_opt(o, &mut f, F_APP_ID, "app-id", &self.app_id)?;
        put_opt(o, &mut f, F_CLUSTER_ID, "cluster-id", &self.cluster_id)?;
        let flags = f;
        let out = o;
        out[flags_at..flags_at + 2].copy_from_slice(&flags.to_be_bytes());
        Ok(())
    }

    /// Reads a content header payload: the body size and the properties.
    pub(crate) fn decode(mut c: Cursor) -> Result<(u64, BasicProperties), WireError> {
        let class = c.u16()?;
        if class != CLASS_BASIC {
            return Err(WireError::Bad("content header of a class other than basic"));
        }
        let _weight = c.u16()?;
        let size = c.u64()?;
        let mut flags = c.u16()?;
        // Continuation flag words (none defined for basic): skip them.
        let mut more = flags & 1 != 0;
        while more {
            more = c.u16()? & 1 != 0;
        }
        flags &= !1;
        let mut p = BasicProperties::default();
        let opt = |c: &mut Cursor, f: u16, flags: u16| -> Result<Option<Bytes>, WireError> {
            if flags & f != 0 {
                c.short().map(Some)
            } else {
                Ok(None)
            }
        };
        p.content_type = opt(&mut c, F_CONTENT_TYPE, flags)?;
        p.content_encoding = opt(&mut c, F_CONTENT_ENCODING, flags)?;
        if flags & F_HEADERS != 0 {
            p.headers = Some(FieldTable::decode(&mut c)?);
        }
        if flags & F_DELIVERY_MODE != 0 {
            p.delivery_mode = Some(c.u8()?);
        }
        if flags & F_PRIORITY != 0 {
            p.priority = Some(c.u8()?);
        }
        p.correlation_id = opt(&mut c, F_CORRELATION_ID, flags)?;
        p.reply_to = opt(&mut c, F_REPLY_TO, flags)?;
        p.expiration = opt(&mut c, F_EXPIRATION, flags)?;
        p.message_id = opt(&mut c, F_MESSAGE_ID, flags)?;
        if flags & F_TIMESTAMP != 0 {
            p.timestamp = Some(c.u64()?);
        }
        p.kind = opt(&mut c, F_TYPE, flags)?;
        p.user_id = opt(&mut c, F_USER_ID, flags)?;
        p.app_id = opt(&mut c, F_APP_ID, flags)?;
        p.cluster_id = opt(&mut c, F_CLUSTER_ID, flags)?;
        Ok((size, p))
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::FieldValue;
    use super::*;

    #[test]
    fn round_trip_all_and_none() {
        let mut h = FieldTable::new();
        h.insert("k", FieldValue::from("v"));
        let b = |s: &'static [u8]| Some(Bytes::from_static(s));
        let all = BasicProperties {
            content_type: b(b"text/plain"),
            content_encoding: b(b"gzip"),
            headers: Some(h),
            delivery_mode: Some(2),
            priority: Some(5),
            correlation_id: b(b"\x00\xff binary"),
            reply_to: b(b"r"),
            expiration: b(b"1500"),
            message_id: b(b"m1"),
            timestamp: Some(1_700_000_000),
            kind: b(b"t"),
            user_id: b(b"guest"),
            app_id: b(b"warren"),
            cluster_id: b(b"c"),
        };
        for p in [all, BasicProperties::default()] {
            let mut out = BytesMut::new();
            p.encode(42, &mut out).unwrap();
            let (size, back) = BasicProperties::decode(Cursor::new(out.freeze())).unwrap();
            assert_eq!((size, back), (42, p));
        }
        let long = BasicProperties {
            message_id: Some(Bytes::from(vec![b'a'; 256])),
            ..BasicProperties::default()
        };
        assert!(long.encode(0, &mut BytesMut::new()).is_err());
    }
}
