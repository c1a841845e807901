//! An MQTT message's metadata ↔ AMQP basic properties and headers. Pure functions.
//!
//! Outbound (MQTT → AMQP):
//! - delivery mode 2 (persistent) for QoS ≥ 1, else 1; `timestamp` (seconds); `message-id`
//!   (unique per message, kept across republications and spool replay); `app-id` `warren`;
//! - `content-type` ← Content Type; `expiration` (ms) ← Message Expiry Interval;
//! - `reply-to` ← Response Topic mapped to a routing key (the rule's mapping; `default` for
//!   template rules), so the responder publishes its answer to the exchange with that key;
//!   the topic as it was also rides in header `x-mqtt-response-topic`;
//! - `correlation-id` ← Correlation Data when it is UTF-8 of at most 255 bytes, else header
//!   `x-mqtt-correlation-data` (byte array);
//! - headers `x-mqtt-topic`, `x-mqtt-client-id` (when known), `x-mqtt-qos`, `x-mqtt-retain`,
//!   `x-mqtt-payload-format` (when set), and every user property under its own name (a name
//!   given several times becomes an array), so a headers exchange can route on them. A user
//!   property named `x-mqtt-…` or longer than 255 bytes is not copied.
//!
//! Inbound (AMQP → MQTT): the reverse; headers become user properties (arrays become several,
//! numbers and booleans their text; tables and the `x-mqtt-*` headers are left out), with
//! `x-mqtt-payload-format` and `x-mqtt-correlation-data` restored as such.

use bytes::Bytes;
use lapin::types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::mapping::{Mapping, MappingError};
use crate::side::{BridgeMessage, MqttProperties};

const H_TOPIC: &str = "x-mqtt-topic";
const H_CLIENT: &str = "x-mqtt-client-id";
const H_QOS: &str = "x-mqtt-qos";
const H_RETAIN: &str = "x-mqtt-retain";
const H_FORMAT: &str = "x-mqtt-payload-format";
const H_CORRELATION: &str = "x-mqtt-correlation-data";
const H_RESPONSE: &str = "x-mqtt-response-topic";
const BRIDGE_PREFIX: &str = "x-mqtt-";

fn short(s: &str) -> Option<ShortString> {
    ShortString::try_new(s).ok()
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// The AMQP properties for `msg`. `reply` maps the response topic to `reply-to`.
pub(crate) fn properties(
    msg: &BridgeMessage,
    client_id: Option<&str>,
    reply: &Mapping,
    message_id: &str,
    timestamp: u64,
) -> BasicProperties {
    let p = &msg.properties;
    let mut h = FieldTable::default();
    h.insert(H_TOPIC.into(), long(&msg.topic));
    if let Some(c) = client_id {
        h.insert(H_CLIENT.into(), long(c));
    }
    h.insert(H_QOS.into(), AMQPValue::LongInt(i32::from(msg.qos)));
    h.insert(H_RETAIN.into(), AMQPValue::Boolean(msg.retain));
    if let Some(f) = p.payload_format_indicator {
        h.insert(H_FORMAT.into(), AMQPValue::LongInt(i32::from(f)));
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(if msg.qos >= 1 { 2 } else { 1 })
        .with_timestamp(timestamp)
        .with_app_id("warren".into());
    if let Some(id) = short(message_id) {
        props = props.with_message_id(id);
    }
    if let Some(ct) = p.content_type.as_deref().and_then(short) {
        props = props.with_content_type(ct);
    }
    if let Some(secs) = p.message_expiry_interval {
        if let Some(e) = short(&(u64::from(secs) * 1000).to_string()) {
            props = props.with_expiration(e);
        }
    }
    if let Some(rt) = &p.response_topic {
        h.insert(H_RESPONSE.into(), long(rt));
        if let Some(key) = reply.topic_to_key(rt).ok().as_deref().and_then(short) {
            props = props.with_reply_to(key);
        }
    }
    if let Some(cd) = &p.correlation_data {
        match std::str::from_utf8(cd).ok().and_then(short) {
            Some(id) => props = props.with_correlation_id(id),
            None => {
                h.insert(
                    H_CORRELATION.into(),
                    AMQPValue::ByteArray(ByteArray::from(cd.to_vec())),
                );
            }
        }
    }
    for (i, (k, v)) in p.user_properties.iter().enumerate() {
        if k.starts_with(BRIDGE_PREFIX) || h.contains_key(k.as_str()) {
            continue;
        }
        let Some(key) = short(k) else { continue };
        let same: Vec<&str> = p.user_properties[i..]
            .iter()
            .filter(|(k2, _)| k2 == k)
            .map(|(_, v)| v.as_str())
            .collect();
        let value = if same.len() == 1 {
            long(v)
        } else {
            AMQPValue::FieldArray(FieldArray::from(
                same.into_iter().map(long).collect::<Vec<_>>(),
            ))
        };
        h.insert(key, value);
    }
    props.with_headers(h)
}

/// How an inbound rule turns deliveries into MQTT messages.
pub(crate) struct InboundShape<'a> {
    pub(crate) topic: &'a Mapping,
    pub(crate) reply: &'a Mapping,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
}

/// The MQTT message for an AMQP delivery.
pub(crate) fn message(
    routing_key: &str,
    props: &BasicProperties,
    payload: Vec<u8>,
    shape: &InboundShape<'_>,
) -> Result<BridgeMessage, MappingError> {
    let topic = shape.topic.key_to_topic(routing_key)?;
    let mut p = MqttProperties {
        content_type: props.content_type().as_ref().map(|c| c.to_string()),
        message_expiry_interval: props
            .expiration()
            .as_ref()
            .and_then(|e| e.as_str().parse::<u64>().ok())
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)),
        response_topic: props
            .reply_to()
            .as_ref()
            .and_then(|r| shape.reply.key_to_topic(r.as_str()).ok()),
        correlation_data: props
            .correlation_id()
            .as_ref()
            .map(|c| Bytes::copy_from_slice(c.as_str().as_bytes())),
        ..MqttProperties::default()
    };
    if let Some(h) = props.headers() {
        for (k, v) in h {
            match k.as_str() {
                H_FORMAT => p.payload_format_indicator = as_u8(v),
                H_CORRELATION => {
                    if let AMQPValue::ByteArray(b) = v {
                        p.correlation_data = Some(Bytes::copy_from_slice(b.as_slice()));
                    }
                }
                k if k.starts_with(BRIDGE_PREFIX) => {}
                k => match v {
                    AMQPValue::FieldArray(a) => {
                        for e in a.as_slice() {
                            if let Some(s) = text(e) {
                                p.user_properties.push((k.to_string(), s));
                            }
                        }
                    }
                    v => {
                        if let Some(s) = text(v) {
                            p.user_properties.push((k.to_string(), s));
                        }
                    }
                },
            }
        }
    }
    Ok(BridgeMessage {
        topic,
        payload: Bytes::from(payload),
        qos: shape.qos,
        retain: shape.retain,
        properties: p,
    })
}

fn as_u8(v: &AMQPValue) -> Option<u8> {
    text(v).and_then(|s| s.parse().ok())
}

/// The text of a scalar header value.
fn text(v: &AMQPValue) -> Option<String> {
    Some(match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
