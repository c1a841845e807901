//! The rows of the disk store as bytes: messages, queue entries, sessions (with their delayed
//! will), subscriptions. A small versioned, length-prefixed encoding of our own (not the MQTT
//! wire format); decoding checks every length against what is left, so a damaged row is an
//! error, never a panic.
//!
//! Times that must survive a restart (a message's expiry, when a session went offline, when a
//! delayed will is due) are stored as milliseconds of the wall clock (Unix time).

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::protocol::{
    PublishProperties, QoS, SubscriptionOptions, UserProperties, Will, WillProperties,
};
use crate::session::message::{Message, MessageParts};
use crate::session::SubEntry;

const VERSION: u8 = 1;

/// A stored row that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt store row: {0}")]
pub struct Corrupt(pub &'static str);

use crate::wall::unix_ms;

/// The wall-clock time of `at` (an `Instant`), in Unix milliseconds.
pub fn instant_to_unix_ms(at: Instant) -> u64 {
    let now = Instant::now();
    let wall = unix_ms();
    if at >= now {
        wall.saturating_add(u64::try_from((at - now).as_millis()).unwrap_or(u64::MAX))
    } else {
        wall.saturating_sub(u64::try_from((now - at).as_millis()).unwrap_or(u64::MAX))
    }
}

/// Where an outgoing QoS 1/2 delivery of a persistent session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Queued, not sent yet.
    Queued,
    /// Sent with this packet id; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent(u16),
    /// PUBREC received and PUBREL sent with this packet id; waiting for PUBCOMP.
    Released(u16),
}

/// A queue row: one delivery of a stored message to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The message row it refers to.
    pub message: u64,
    /// QoS to deliver at.
    pub qos: QoS,
    /// Retain flag to deliver with.
    pub retain: bool,
    /// Subscription identifiers (5.0).
    pub subscription_ids: Vec<u32>,
    /// Where its flow stands.
    pub state: FlowState,
}

/// A session row.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// Client identifier.
    pub client_id: ByteString,
    /// Session expiry interval in seconds (`u32::MAX`: never).
    pub expiry: u32,
    /// When it went offline (Unix ms); `None` while its client is (or was, at a crash) online.
    pub offline_since: Option<u64>,
    /// A will waiting for its delay, and when it is due (Unix ms).
    pub will: Option<(Will, u64)>,
}

struct Out(Vec<u8>);

impl Out {
    fn new(capacity: usize) -> Out {
        let mut v = Vec::with_capacity(capacity + 1);
        v.push(VERSION);
        Out(v)
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        // Stored items come from packets, whose parts are below 4 GiB.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
            None => self.u8(0),
        }
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
            None => self.u8(0),
        }
    }
    fn user_properties(&mut self, p: &UserProperties) {
        self.u32(u32::try_from(p.len()).unwrap_or(u32::MAX));
        for (k, v) in p {
            self.bytes(k.as_bytes());
            self.bytes(v.as_bytes());
        }
    }
}

struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn start(data: &'a [u8]) -> Result<In<'a>, Corrupt> {
        match data.split_first() {
            Some((&VERSION, rest)) => Ok(In(rest)),
            Some(_) => Err(Corrupt("unknown row version")),
            None => Err(Corrupt("empty row")),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(Corrupt("truncated"))?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<&'a str, Corrupt> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Corrupt("invalid UTF-8"))
    }
    fn opt(&mut self) -> Result<Option<&'a [u8]>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            _ => Err(Corrupt("option flag")),
        }
    }
    fn opt_str(&mut self) -> Result<Option<ByteString>, Corrupt> {
        self.opt()?
            .map(|b| std::str::from_utf8(b).map(ByteString::from))
            .transpose()
            .map_err(|_| Corrupt("invalid UTF-8"))
    }
    fn opt_u32(&mut self) -> Result<Option<u32>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u32()?)),
            _ => Err(Corrupt("option flag")),
        }
    }
    fn user_properties(&mut self) -> Result<UserProperties, Corrupt> {
        let n = self.u32()?;
        let mut p = UserProperties::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.string()?;
            p.push(k, v);
        }
        Ok(p)
    }
    fn end(self) -> Result<(), Corrupt> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Corrupt("trailing bytes"))
        }
    }
}

/// A message row: topic, payload, QoS, retain, properties, and its expiry as wall-clock time.
pub fn encode_message(m: &Message) -> Vec<u8> {
    let p = &m.properties;
    let mut o = Out::new(40 + m.topic().len() + m.payload().len());
    o.u8(m.qos as u8 | u8::from(m.retain) << 2);
    o.u64(
        m.expires_at
            .map_or(0, instant_to_unix_ms)
            .max(u64::from(m.expires_at.is_some())),
    );
    o.bytes(m.topic().as_bytes());
    o.bytes(m.payload());
    o.opt(
        p.payload_format_indicator
            .map(|f| [f])
            .as_ref()
            .map(|f| &f[..]),
    );
    o.opt(p.content_type.as_deref().map(str::as_bytes));
    o.opt(p.response_topic.as_deref().map(str::as_bytes));
    o.opt(p.correlation_data.as_deref());
    o.user_properties(&p.user_properties);
    o.0
}

/// A message from its row, received `now`; `None` when it has expired.
pub fn decode_message(data: &[u8], now: Instant) -> Result<Option<Message>, Corrupt> {
    let mut r = In::start(data)?;
    let flags = r.u8()?;
    let qos = QoS::from_u8(flags & 3).ok_or(Corrupt("QoS"))?;
    let retain = flags & 4 != 0;
    let expires = r.u64()?;
    let topic = r.string()?;
    let payload = r.bytes()?;
    let payload_format_indicator = match r.opt()? {
        Some(&[f]) => Some(f),
        Some(_) => return Err(Corrupt("payload format")),
        None => None,
    };
    let content_type = r.opt_str()?;
    let response_topic = r.opt_str()?;
    let correlation_data = r.opt()?.map(Bytes::copy_from_slice);
    let user_properties = r.user_properties()?;
    r.end()?;
    let message_expiry_interval = if expires == 0 {
        None
    } else {
        let left = expires.saturating_sub(unix_ms());
        if left == 0 {
            return Ok(None);
        }
        Some(u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX))
    };
    let properties = PublishProperties {
        payload_format_indicator,
        message_expiry_interval,
        content_type,
        response_topic,
        correlation_data,
        user_properties,
        ..PublishProperties::default()
    };
    Ok(Some(Message::new(
        MessageParts {
            topic,
            payload,
            qos,
            retain,
            properties: &properties,
            origin: 0,
            publisher: None,
        },
        now,
    )))
}

/// A queue row.
pub fn encode_entry(e: &QueueEntry) -> Vec<u8> {
    let mut o = Out::new(20 + 4 * e.subscription_ids.len());
    o.u64(e.message);
    o.u8(e.qos as u8 | u8::from(e.retain) << 2);
    let (state, pkid) = match e.state {
        FlowState::Queued => (0, 0),
        FlowState::Sent(p) => (1, p),
        FlowState::Released(p) => (2, p),
    };
    o.u8(state);
    o.u16(pkid);
    o.u32(u32::try_from(e.subscription_ids.len()).unwrap_or(0));
    for id in &e.subscription_ids {
        o.u32(*id);
    }
    o.0
}

/// The message id a queue row refers to (read without decoding the rest).
pub fn entry_message(data: &[u8]) -> Result<u64, Corrupt> {
    In::start(data)?.u64()
}

/// A queue row read back.
pub fn decode_entry(data: &[u8]) -> Result<QueueEntry, Corrupt> {
    let mut r = In::start(data)?;
    let message = r.u64()?;
    let flags = r.u8()?;
    let qos = QoS::from_u8(flags & 3).ok_or(Corrupt("QoS"))?;
    let state = r.u8()?;
    let pkid = r.u16()?;
    let state = match state {
        0 => FlowState::Queued,
        1 => FlowState::Sent(pkid),
        2 => FlowState::Released(pkid),
        _ => return Err(Corrupt("flow state")),
    };
    let n = r.u32()? as usize;
    if n > r.0.len() / 4 {
        return Err(Corrupt("subscription ids"));
    }
    let subscription_ids = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
    r.end()?;
    Ok(QueueEntry {
        message,
        qos,
        retain: flags & 4 != 0,
        subscription_ids,
        state,
    })
}

/// A session row.
pub fn encode_session(s: &SessionRow) -> Vec<u8> {
    let mut o = Out::new(32 + s.client_id.len());
    o.bytes(s.client_id.as_bytes());
    o.u32(s.expiry);
    o.u64(s.offline_since.unwrap_or(0));
    match &s.will {
        None => o.u8(0),
        Some((will, due)) => {
            o.u8(1);
            o.u64(*due);
            o.bytes(will.topic.as_bytes());
            o.bytes(&will.payload);
            o.u8(will.qos as u8 | u8::from(will.retain) << 2);
            let p = &will.properties;
            o.opt_u32(p.will_delay_interval);
            o.opt(
                p.payload_format_indicator
                    .map(|f| [f])
                    .as_ref()
                    .map(|f| &f[..]),
            );
            o.opt_u32(p.message_expiry_interval);
            o.opt(p.content_type.as_deref().map(str::as_bytes));
            o.opt(p.response_topic.as_deref().map(str::as_bytes));
            o.opt(p.correlation_data.as_deref());
            o.user_properties(&p.user_properties);
        }
    }
    o.0
}

/// A session row read back.
pub fn decode_session(data: &[u8]) -> Result<SessionRow, Corrupt> {
    let mut r = In::start(data)?;
    let client_id = ByteString::from(r.string()?);
    let expiry = r.u32()?;
    let offline_since = Some(r.u64()?).filter(|&t| t != 0);
    let will = match r.u8()? {
        0 => None,
        1 => {
            let due = r.u64()?;
            let topic = ByteString::from(r.string()?);
            let payload = Bytes::copy_from_slice(r.bytes()?);
            let flags = r.u8()?;
            let qos = QoS::from_u8(flags & 3).ok_or(Corrupt("QoS"))?;
            let will_delay_interval = r.opt_u32()?;
            let payload_format_indicator = match r.opt()? {
                Some(&[f]) => Some(f),
                Some(_) => return Err(Corrupt("payload format")),
                None => None,
            };
            let properties = WillProperties {
                will_delay_interval,
                payload_format_indicator,
                message_expiry_interval: r.opt_u32()?,
                content_type: r.opt_str()?,
                response_topic: r.opt_str()?,
                correlation_data: r.opt()?.map(Bytes::copy_from_slice),
                user_properties: r.user_properties()?,
            };
            Some((
                Will {
                    topic,
                    payload,
                    qos,
                    retain: flags & 4 != 0,
                    properties,
                },
                due,
            ))
        }
        _ => return Err(Corrupt("will flag")),
    };
    r.end()?;
    Ok(SessionRow {
        client_id,
        expiry,
        offline_since,
        will,
    })
}

/// A subscription row's value.
pub fn encode_subscription(e: &SubEntry) -> Vec<u8> {
    let o = &e.options;
    let mut out = Out::new(8);
    out.u8(o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling & 3) << 4);
    out.opt_u32(e.id);
    out.0
}

/// A subscription row's value read back.
pub fn decode_subscription(data: &[u8]) -> Result<SubEntry, Corrupt> {
    let mut r = In::start(data)?;
    let flags = r.u8()?;
    let qos = QoS::from_u8(flags & 3).ok_or(Corrupt("QoS"))?;
    let id = r.opt_u32()?;
    r.end()?;
    Ok(SubEntry {
        options: SubscriptionOptions {
            qos,
            no_local: flags & 4 != 0,
            retain_as_published: flags & 8 != 0,
            retain_handling: (flags >> 4) & 3,
        },
        id,
    })
}

/// How long until `due_unix_ms`, from now (zero if past).
pub fn until(due_unix_ms: u64) -> Duration {
    Duration::from_millis(due_unix_ms.saturating_sub(unix_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(expiry: Option<u32>) -> Message {
        let properties = PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: expiry,
            content_type: Some("text/plain".into()),
            response_topic: Some("r/1".into()),
            correlation_data: Some(Bytes::from_static(&[0, 1, 2])),
            user_properties: [("k", "v"), ("k", "w")].into_iter().collect(),
            ..PublishProperties::default()
        };
        Message::new(
            MessageParts {
                topic: "a/b",
                payload: b"hello",
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: &properties,
                origin: 3,
                publisher: None,
            },
            Instant::now(),
        )
    }

    #[test]
    fn a_message_round_trips_and_every_truncation_is_refused() {
        let m = message(Some(3600));
        let bytes = encode_message(&m);
        let back = decode_message(&bytes, Instant::now()).unwrap().unwrap();
        assert_eq!(back.topic(), "a/b");
        assert_eq!(back.payload(), b"hello");
        assert_eq!((back.qos, back.retain), (QoS::ExactlyOnce, true));
        let mut p = m.properties.clone();
        p.message_expiry_interval = back.properties.message_expiry_interval;
        assert_eq!(back.properties, p);
        let left = back.properties.message_expiry_interval.unwrap();
        assert!((3598..=3600).contains(&left), "{left}");
        for n in 0..bytes.len() {
            assert!(decode_message(&bytes[..n], Instant::now()).is_err(), "{n}");
        }
        let bare = message(None);
        let back = decode_message(&encode_message(&bare), Instant::now())
            .unwrap()
            .unwrap();
        assert_eq!(back.expires_at, None);
    }

    #[test]
    fn an_expired_message_is_not_restored() {
        let mut m = message(Some(1));
        m.expires_at = Some(Instant::now());
        assert!(decode_message(&encode_message(&m), Instant::now())
            .unwrap()
            .is_none());
    }

    #[test]
    fn entries_sessions_and_subscriptions_round_trip() {
        let e = QueueEntry {
            message: 7,
            qos: QoS::AtLeastOnce,
            retain: true,
            subscription_ids: vec![1, 99],
            state: FlowState::Released(513),
        };
        let bytes = encode_entry(&e);
        assert_eq!(decode_entry(&bytes).unwrap(), e);
        assert_eq!(entry_message(&bytes).unwrap(), 7);
        for n in 0..bytes.len() {
            assert!(decode_entry(&bytes[..n]).is_err(), "{n}");
        }
        let will = Will {
            topic: "w".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(5),
                user_properties: [("a", "b")].into_iter().collect(),
                ..WillProperties::default()
            },
        };
        let s = SessionRow {
            client_id: "dev1".into(),
            expiry: 60,
            offline_since: Some(123),
            will: Some((will, 456)),
        };
        let bytes = encode_session(&s);
        assert_eq!(decode_session(&bytes).unwrap(), s);
        for n in 0..bytes.len() {
            assert!(decode_session(&bytes[..n]).is_err(), "{n}");
        }
        let sub = SubEntry {
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: false,
                retain_handling: 2,
            },
            id: Some(42),
        };
        assert_eq!(
            decode_subscription(&encode_subscription(&sub)).unwrap(),
            sub
        );
    }
}
