//! The methods: decoding what RabbitMQ sends a client, encoding what the bridge sends. Only
//! the methods a publishing and consuming client meets are known; any other is a
//! [`WireError::Method`].

use bytes::{BufMut, Bytes, BytesMut};

use super::props::BasicProperties;
use super::table::FieldTable;
use super::{
    begin_frame, end_frame, put_long, put_short, Cursor, TooLong, WireError, FRAME_BODY,
    FRAME_HEADER, FRAME_METHOD, FRAME_OVERHEAD,
};

const CONNECTION: u16 = 10;
const CHANNEL: u16 = 20;
const EXCHANGE: u16 = 40;
const QUEUE: u16 = 50;
const BASIC: u16 = 60;
const CONFIRM: u16 = 85;

/// `connection.close` / `channel.close`: why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) text: Bytes,
    pub(crate) class: u16,
    pub(crate) method: u16,
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, String::from_utf8_lossy(&self.text))
    }
}

/// A method from RabbitMQ.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Method {
    ConnectionStart {
        mechanisms: Bytes,
    },
    ConnectionSecure,
    ConnectionTune {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    },
    ConnectionOpenOk,
    ConnectionClose(Close),
    ConnectionCloseOk,
    ConnectionBlocked {
        reason: Bytes,
    },
    ConnectionUnblocked,
    ConnectionUpdateSecretOk,
    ChannelOpenOk,
    ChannelFlow {
        active: bool,
    },
    ChannelFlowOk,
    ChannelClose(Close),
    ChannelCloseOk,
    ExchangeDeclareOk,
    QueueDeclareOk,
    QueueBindOk,
    BasicQosOk,
    BasicConsumeOk,
    /// RabbitMQ cancelled the consumer (queue deleted, node down).
    BasicCancel,
    BasicCancelOk,
    BasicReturn {
        code: u16,
        text: Bytes,
        exchange: Bytes,
        routing_key: Bytes,
    },
    BasicDeliver {
        delivery_tag: u64,
        redelivered: bool,
        exchange: Bytes,
        routing_key: Bytes,
    },
    BasicAck {
        tag: u64,
        multiple: bool,
    },
    BasicNack {
        tag: u64,
        multiple: bool,
    },
    ConfirmSelectOk,
}

impl Method {
    /// Whether content (header and body frames) follows.
    pub(crate) fn has_content(&self) -> bool {
        matches!(
            self,
            Method::BasicReturn { .. } | Method::BasicDeliver { .. }
        )
    }

    /// Decodes a method frame's payload.
    pub(crate) fn decode(payload: Bytes) -> Result<Method, WireError> {
        let mut c = Cursor::new(payload);
        let class = c.u16()?;
        let id = c.u16()?;
        let m = match (class, id) {
            (CONNECTION, 10) => {
                let _major = c.u8()?;
                let _minor = c.u8()?;
                let _server_properties = FieldTable::decode(&mut c)?;
                let mechanisms = c.long()?;
                let _locales = c.long()?;
                Method::ConnectionStart { mechanisms }
            }
            (CONNECTION, 20) => {
                let _challenge = c.long()?;
                Method::ConnectionSecure
            }
            (CONNECTION, 30) => Method::ConnectionTune {
                channel_max: c.u16()?,
                frame_max: c.u32()?,
                heartbeat: c.u16()?,
            },
            (CONNECTION, 41) => {
                let _known_hosts = c.short()?;
                Method::ConnectionOpenOk
            }
            (CONNECTION, 50) => Method::ConnectionClose(close(&mut c)?),
            (CONNECTION, 51) => Method::ConnectionCloseOk,
            (CONNECTION, 60) => Method::ConnectionBlocked { reason: c.short()? },
            (CONNECTION, 61) => Method::ConnectionUnblocked,
            (CONNECTION, 71) => Method::ConnectionUpdateSecretOk,
            (CHANNEL, 11) => {
                let _reserved = c.long()?;
                Method::ChannelOpenOk
            }
            (CHANNEL, 20) => Method::ChannelFlow {
                active: c.u8()? & 1 != 0,
            },
            (CHANNEL, 21) => {
                let _active = c.u8()?;
                Method::ChannelFlowOk
            }
            (CHANNEL, 40) => Method::ChannelClose(close(&mut c)?),
            (CHANNEL, 41) => Method::ChannelCloseOk,
            (EXCHANGE, 11) => Method::ExchangeDeclareOk,
            (QUEUE, 11) => {
                let _queue = c.short()?;
                let _messages = c.u32()?;
                let _consumers = c.u32()?;
                Method::QueueDeclareOk
            }
            (QUEUE, 21) => Method::QueueBindOk,
            (BASIC, 11) => Method::BasicQosOk,
            (BASIC, 21) => {
                let _tag = c.short()?;
                Method::BasicConsumeOk
            }
            (BASIC, 30) => {
                let _tag = c.short()?;
                let _no_wait = c.u8()?;
                Method::BasicCancel
            }
            (BASIC, 31) => {
                let _tag = c.short()?;
                Method::BasicCancelOk
            }
            (BASIC, 50) => Method::BasicReturn {
                code: c.u16()?,
                text: c.short()?,
                exchange: c.short()?,
                routing_key: c.short()?,
            },
            (BASIC, 60) => {
                let _consumer_tag = c.short()?;
                Method::BasicDeliver {
                    delivery_tag: c.u64()?,
                    redelivered: c.u8()? & 1 != 0,
                    exchange: c.short()?,
                    routing_key: c.short()?,
                }
            }
            (BASIC, 80) => Method::BasicAck {
                tag: c.u64()?,
                multiple: c.u8()? & 1 != 0,
            },
            (BASIC, 120) => Method::BasicNack {
                tag: c.u64()?,
                multiple: c.u8()? & 1 != 0,
            },
            (CONFIRM, 11) => Method::ConfirmSelectOk,
            (class, method) => return Err(WireError::Method { class, method }),
        };
        c.finish("method")?;
        Ok(m)
    }
}

fn close(c: &mut Cursor) -> Result<Close, WireError> {
    Ok(Close {
        code: c.u16()?,
        text: c.short()?,
        class: c.u16()?,
        method: c.u16()?,
    })
}

/// Appends one method frame whose arguments `args` writes; on error nothing is appended.
fn method(
    out: &mut BytesMut,
    channel: u16,
    class: u16,
    id: u16,
    args: impl FnOnce(&mut BytesMut) -> Result<(), TooLong>,
) -> Result<(), TooLong> {
    let start = out.len();
    let at = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(class);
    out.put_u16(id);
    if let Err(e) = args(out) {
        out.truncate(start);
        return Err(e);
    }
    end_frame(out, at);
    Ok(())
}

/// Appends a method frame whose arguments cannot fail (also the fake server's in tests).
pub(crate) fn simple(
    out: &mut BytesMut,
    channel: u16,
    class: u16,
    id: u16,
    args: impl FnOnce(&mut BytesMut),
) {
    let at = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(class);
    out.put_u16(id);
    args(out);
    end_frame(out, at);
}

pub(crate) fn start_ok(
    out: &mut BytesMut,
    client_properties: &FieldTable,
    mechanism: &str,
    response: &[u8],
) -> Result<(), TooLong> {
    method(out, 0, CONNECTION, 11, |o| {
        client_properties.encode(o)?;
        put_short(o, "mechanism", mechanism.as_bytes())?;
        put_long(o, response);
        put_short(o, "locale", b"en_US")
    })
}

pub(crate) fn tune_ok(out: &mut BytesMut, channel_max: u16, frame_max: u32, heartbeat: u16) {
    simple(out, 0, CONNECTION, 31, |o| {
        o.put_u16(channel_max);
        o.put_u32(frame_max);
        o.put_u16(heartbeat);
    })
}

pub(crate) fn connection_open(out: &mut BytesMut, vhost: &str) -> Result<(), TooLong> {
    method(out, 0, CONNECTION, 40, |o| {
        put_short(o, "virtual host", vhost.as_bytes())?;
        o.put_u8(0);
        o.put_u8(0);
        Ok(())
    })
}

/// `connection.close` (channel 0) or `channel.close`.
pub(crate) fn close_frame(out: &mut BytesMut, channel: u16, code: u16, text: &str) {
    let class = if channel == 0 { CONNECTION } else { CHANNEL };
    let id = if channel == 0 { 50 } else { 40 };
    simple(out, channel, class, id, |o| {
        o.put_u16(code);
        let t = &text.as_bytes()[..text.len().min(255)];
        o.put_u8(t.len() as u8);
        o.put_slice(t);
        o.put_u16(0);
        o.put_u16(0);
    })
}

/// `connection.close-ok` (channel 0) or `channel.close-ok`.
pub(crate) fn close_ok(out: &mut BytesMut, channel: u16) {
    let (class, id) = if channel == 0 {
        (CONNECTION, 51)
    } else {
        (CHANNEL, 41)
    };
    simple(out, channel, class, id, |_| {})
}

pub(crate) fn channel_open(out: &mut BytesMut, channel: u16) {
    simple(out, channel, CHANNEL, 10, |o| o.put_u8(0))
}

pub(crate) fn channel_flow_ok(out: &mut BytesMut, channel: u16, active: bool) {
    simple(out, channel, CHANNEL, 21, |o| o.put_u8(u8::from(active)))
}

pub(crate) fn confirm_select(out: &mut BytesMut, channel: u16) {
    simple(out, channel, CONFIRM, 10, |o| o.put_u8(0))
}

pub(crate) fn exchange_declare(
    out: &mut BytesMut,
    channel: u16,
    name: &str,
    kind: &str,
    passive: bool,
    durable: bool,
) -> Result<(), TooLong> {
    method(out, channel, EXCHANGE, 10, |o| {
        o.put_u16(0);
        put_short(o, "exchange name", name.as_bytes())?;
        put_short(o, "exchange type", kind.as_bytes())?;
        o.put_u8(u8::from(passive) | u8::from(durable) << 1);
        FieldTable::new().encode(o)
    })
}

pub(crate) fn queue_declare(
    out: &mut BytesMut,
    channel: u16,
    name: &str,
    passive: bool,
    durable: bool,
) -> Result<(), TooLong> {
    method(out, channel, QUEUE, 10, |o| {
        o.put_u16(0);
        put_short(o, "queue name", name.as_bytes())?;
        o.put_u8(u8::from(passive) | u8::from(durable) << 1);
        FieldTable::new().encode(o)
    })
}

pub(crate) fn queue_bind(
    out: &mut BytesMut,
    channel: u16,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), TooLong> {
    method(out, channel, QUEUE, 20, |o| {
        o.put_u16(0);
        put_short(o, "queue name", queue.as_bytes())?;
        put_short(o, "exchange name", exchange.as_bytes())?;
        put_short(o, "binding key", key.as_bytes())?;
        o.put_u8(0);
        FieldTable::new().encode(o)
    })
}

pub(crate) fn basic_qos(out: &mut BytesMut, channel: u16, prefetch: u16) {
    simple(out, channel, BASIC, 10, |o| {
        o.put_u32(0);
        o.put_u16(prefetch);
        o.put_u8(0);
    })
}

/// `basic.consume` with manual acks.
pub(crate) fn basic_consume(
    out: &mut BytesMut,
    channel: u16,
    queue: &str,
    tag: &str,
) -> Result<(), TooLong> {
    method(out, channel, BASIC, 20, |o| {
        o.put_u16(0);
        put_short(o, "queue name", queue.as_bytes())?;
        put_short(o, "consumer tag", tag.as_bytes())?;
        o.put_u8(0);
        FieldTable::new().encode(o)
    })
}

pub(crate) fn basic_cancel(out: &mut BytesMut, channel: u16, tag: &str) -> Result<(), TooLong> {
    method(out, channel, BASIC, 30, |o| {
        put_short(o, "consumer tag", tag.as_bytes())?;
        o.put_u8(0);
        Ok(())
    })
}

pub(crate) fn basic_ack(out: &mut BytesMut, channel: u16, tag: u64) {
    simple(out, channel, BASIC, 80, |o| {
        o.put_u64(tag);
        o.put_u8(0);
    })
}

pub(crate) fn basic_reject(out: &mut BytesMut, channel: u16, tag: u64, requeue: bool) {
    simple(out, channel, BASIC, 90, |o| {
        o.put_u64(tag);
        o.put_u8(u8::from(requeue));
    })
}

pub(crate) fn basic_nack(out: &mut BytesMut, channel: u16, tag: u64, requeue: bool) {
    simple(out, channel, BASIC, 120, |o| {
        o.put_u64(tag);
        o.put_u8(u8::from(requeue) << 1);
    })
}

/// Why a publication cannot be encoded (nothing was appended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PublishError {
    #[error(transparent)]
    TooLong(#[from] TooLong),
    /// The properties do not fit one frame (AMQP sends them in one content header frame).
    #[error("the properties and headers take {size} bytes, more than a frame's {max}")]
    HeaderTooLarge { size: usize, max: usize },
}

/// A whole `mandatory` publication: method, content header and body frames (bodies cut to
/// `frame_max`). On error nothing is appended.
pub(crate) fn publish(
    out: &mut BytesMut,
    channel: u16,
    exchange: &[u8],
    routing_key: &[u8],
    props: &BasicProperties,
    body: &[u8],
    frame_max: usize,
) -> Result<(), PublishError> {
    let start = out.len();
    out.reserve(body.len() + 256);
    let r = method(out, channel, BASIC, 40, |o| {
        o.put_u16(0);
        put_short(o, "exchange name", exchange)?;
        put_short(o, "routing key", routing_key)?;
        o.put_u8(1);
        Ok(())
    })
    .map_err(PublishError::from)
    .and_then(|()| {
        let at = begin_frame(out, FRAME_HEADER, channel);
        props.encode(body.len() as u64, out)?;
        let size = out.len() - at - 4;
        let max = frame_max.saturating_sub(FRAME_OVERHEAD);
        if size > max {
            return Err(PublishError::HeaderTooLarge { size, max });
        }
        end_frame(out, at);
        Ok(())
    });
    if let Err(e) = r {
        out.truncate(start);
        return Err(e);
    }
    let chunk = frame_max.saturating_sub(FRAME_OVERHEAD).max(1);
    for part in body.chunks(chunk) {
        let at = begin_frame(out, FRAME_BODY, channel);
        out.put_slice(part);
        end_frame(out, at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{take_frame, FRAME_MIN};
    use super::*;

    /// Builds a server method frame payload.
    fn payload(class: u16, id: u16, args: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u16(class);
        b.put_u16(id);
        b.put_slice(args);
        b.freeze()
    }

    #[test]
    fn server_methods_decode_and_truncated_ones_are_refused() {
        let mut deliver = vec![3, b't', b'a', b'g'];
        deliver.extend_from_slice(&7u64.to_be_bytes());
        deliver.extend_from_slice(&[1, 2, b'e', b'x', 3, b'a', 0xff, b'c']);
        let m = Method::decode(payload(BASIC, 60, &deliver)).unwrap();
        assert_eq!(
            m,
            Method::BasicDeliver {
                delivery_tag: 7,
                redelivered: true,
                exchange: Bytes::from_static(b"ex"),
                routing_key: Bytes::from_static(b"a\xffc"),
            }
        );
        for cut in 0..deliver.len() {
            assert!(Method::decode(payload(BASIC, 60, &deliver[..cut])).is_err());
        }
        let mut long = deliver.clone();
        long.push(0);
        assert!(Method::decode(payload(BASIC, 60, &long)).is_err());
        assert!(matches!(
            Method::decode(payload(BASIC, 71, &[])),
            Err(WireError::Method {
                class: 60,
                method: 71
            })
        ));
    }

    #[test]
    fn a_publication_is_cut_into_body_frames() {
        let mut out = BytesMut::new();
        let body = vec![7u8; 10_000];
        publish(
            &mut out,
            3,
            b"ex",
            b"a.b",
            &BasicProperties::default(),
            &body,
            FRAME_MIN as usize,
        )
        .unwrap();
        let mut kinds = Vec::new();
        let mut total = 0;
        while let Some(f) = take_frame(&mut out, FRAME_MIN as usize).unwrap() {
            assert_eq!(f.channel, 3);
            if f.kind == FRAME_BODY {
                total += f.payload.len();
            }
            kinds.push(f.kind);
        }
        assert_eq!(
            kinds,
            [
                FRAME_METHOD,
                FRAME_HEADER,
                FRAME_BODY,
                FRAME_BODY,
                FRAME_BODY
            ]
        );
        assert_eq!(total, body.len());
        // A key over 255 bytes appends nothing.
        let mut out = BytesMut::from(&b"x"[..]);
        let key = vec![b'k'; 256];
        assert!(publish(
            &mut out,
            1,
            b"",
            &key,
            &BasicProperties::default(),
            b"",
            4096
        )
        .is_err());
        assert_eq!(&out[..], b"x");
    }
}
