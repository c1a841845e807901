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
//! - headers `x-mqtt-topic`, `x-mqtt-client-id` (when known), `x-mqtt-qos`, `x-mqtt-retain`
//!   (`headers = "warren"`, the default) or, as RabbitMQ's MQTT plugin, `x-mqtt-publish-qos`
//!   (byte) and `x-mqtt-dup` (boolean, always false: in process the bridge takes each message
//!   once from the broker; standalone, a remote broker's redelivery is sent with false too)
//!   (`headers = "rabbitmq"`); `x-mqtt-payload-format` (when set), and every user
//!   property under its own name (a name given several times becomes an array), so a headers
//!   exchange can route on them. A user property named `x-mqtt-…` or longer than 255 bytes is
//!   not copied.
//!
//! Inbound (AMQP → MQTT): the reverse; headers become user properties (arrays become several,
//! numbers and booleans their text; tables and the `x-mqtt-*` headers are left out), with
//! `x-mqtt-payload-format` and `x-mqtt-correlation-data` restored as such.

use std::collections::HashMap;

use bytes::Bytes;

use crate::amqp::{BasicProperties, FieldTable, FieldValue};
use crate::config::HeaderStyle;
use crate::mapping::{Mapping, MappingError};
use crate::side::{BridgeMessage, MqttProperties};

const H_TOPIC: &str = "x-mqtt-topic";
const H_CLIENT: &str = "x-mqtt-client-id";
const H_QOS: &str = "x-mqtt-qos";
const H_RETAIN: &str = "x-mqtt-retain";
const H_FORMAT: &str = "x-mqtt-payload-format";
const H_CORRELATION: &str = "x-mqtt-correlation-data";
const H_RESPONSE: &str = "x-mqtt-response-topic";
const H_PLUGIN_QOS: &str = "x-mqtt-publish-qos";
const H_PLUGIN_DUP: &str = "x-mqtt-dup";
const BRIDGE_PREFIX: &str = "x-mqtt-";

/// Whether `s` fits an AMQP short string.
fn short(s: &str) -> Option<&str> {
    (s.len() <= crate::amqp::MAX_SHORT).then_some(s)
}

/// A short string's bytes.
fn sb(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

fn long(s: &str) -> FieldValue {
    FieldValue::from(s)
}

/// A header name of the bridge's own (static: no allocation).
fn name(n: &'static str) -> Bytes {
    Bytes::from_static(n.as_bytes())
}

/// Every user property under its own name, in order of first appearance; a name given several
/// times becomes an array of its values. Grouped through an index, so the cost is linear in
/// their number (a standalone bridge's remote broker may not bound it). Names of the bridge's
/// own (`x-mqtt-…`) or over 255 bytes are left out.
fn user_properties(h: &mut FieldTable, props: &[(String, String)]) {
    if props.is_empty() {
        return;
    }
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(props.len());
    for (k, v) in props {
        if k.starts_with(BRIDGE_PREFIX) || short(k).is_none() {
            continue;
        }
        match at.get(k.as_str()) {
            Some(&i) => {
                if let Some(slot) = h.value_mut(i) {
                    if let FieldValue::Array(a) = slot {
                        a.push(long(v));
                    } else {
                        let first = std::mem::replace(slot, FieldValue::Void);
                        *slot = FieldValue::Array(vec![first, long(v)]);
                    }
                }
            }
            None => {
                at.insert(k, h.len());
                h.push(Bytes::copy_from_slice(k.as_bytes()), long(v));
            }
        }
    }
}

/// The AMQP properties for `msg`, with the bridge's headers in `style`. `reply` maps the
/// response topic to `reply-to`.
pub(crate) fn properties(
    msg: &BridgeMessage,
    client_id: Option<&Bytes>,
    style: HeaderStyle,
    reply: &Mapping,
    message_id: &Bytes,
    timestamp: u64,
) -> BasicProperties {
    let p = &msg.properties;
    let mut h = FieldTable::with_capacity(7 + p.user_properties.len());
    match style {
        HeaderStyle::Warren => {
            h.push(name(H_TOPIC), long(&msg.topic));
            if let Some(c) = client_id {
                h.push(name(H_CLIENT), FieldValue::LongString(c.clone()));
            }
            h.push(name(H_QOS), FieldValue::I32(i32::from(msg.qos)));
            h.push(name(H_RETAIN), FieldValue::Bool(msg.retain));
        }
        HeaderStyle::Rabbitmq => {
            // RabbitMQ's type `byte` is the signed octet ('b'); QoS is 0 to 2.
            h.push(name(H_PLUGIN_QOS), FieldValue::I8(msg.qos as i8));
            h.push(name(H_PLUGIN_DUP), FieldValue::Bool(false));
        }
    }
    if let Some(f) = p.payload_format_indicator {
        h.push(name(H_FORMAT), FieldValue::I32(i32::from(f)));
    }
    let mut props = BasicProperties {
        delivery_mode: Some(if msg.qos >= 1 { 2 } else { 1 }),
        timestamp: Some(timestamp),
        app_id: Some(Bytes::from_static(b"warren")),
        message_id: (message_id.len() <= crate::amqp::MAX_SHORT).then(|| message_id.clone()),
        content_type: p.content_type.as_deref().and_then(short).and_then(sb),
        expiration: p
            .message_expiry_interval
            .map(|secs| Bytes::from((u64::from(secs) * 1000).to_string())),
        ..BasicProperties::default()
    };
    if let Some(rt) = &p.response_topic {
        h.push(name(H_RESPONSE), long(rt));
        if let Some(key) = reply.topic_to_key(rt).ok().filter(|k| short(k).is_some()) {
            props.reply_to = Some(Bytes::from(key));
        }
    }
    if let Some(cd) = &p.correlation_data {
        // Text goes in correlation-id (backends read it as a string); bytes in a header.
        match std::str::from_utf8(cd).ok().and_then(short) {
            Some(id) => props.correlation_id = sb(id),
            None => h.push(name(H_CORRELATION), FieldValue::Bytes(cd.clone())),
        }
    }
    user_properties(&mut h, &p.user_properties);
    props.headers = Some(h);
    props
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
    routing_key: &[u8],
    props: &BasicProperties,
    payload: Bytes,
    shape: &InboundShape<'_>,
) -> Result<BridgeMessage, MappingError> {
    let key = std::str::from_utf8(routing_key).map_err(|_| MappingError::NotUtf8)?;
    let topic = shape.topic.key_to_topic(key)?;
    let text = |b: &Option<Bytes>| {
        b.as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let mut p = MqttProperties {
        content_type: text(&props.content_type),
        message_expiry_interval: text(&props.expiration)
            .and_then(|e| e.parse::<u64>().ok())
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)),
        response_topic: props
            .reply_to
            .as_deref()
            .and_then(|r| std::str::from_utf8(r).ok())
            .and_then(|r| shape.reply.key_to_topic(r).ok()),
        correlation_data: props.correlation_id.clone(),
        ..MqttProperties::default()
    };
    if let Some(h) = &props.headers {
        for (k, v) in h.iter() {
            // MQTT user property names are UTF-8: another name is left out.
            let Ok(k) = std::str::from_utf8(k) else {
                continue;
            };
            match k {
                H_FORMAT => p.payload_format_indicator = as_u8(v),
                H_CORRELATION => {
                    if let FieldValue::Bytes(b) = v {
                        p.correlation_data = Some(b.clone());
                    }
                }
                k if k.starts_with(BRIDGE_PREFIX) => {}
                k => match v {
                    FieldValue::Array(a) => {
                        for e in a {
                            if let Some(s) = text_of(e) {
                                p.user_properties.push((k.to_string(), s));
                            }
                        }
                    }
                    v => {
                        if let Some(s) = text_of(v) {
                            p.user_properties.push((k.to_string(), s));
                        }
                    }
                },
            }
        }
    }
    Ok(BridgeMessage {
        topic,
        payload,
        qos: shape.qos,
        retain: shape.retain,
        properties: p,
    })
}

fn as_u8(v: &FieldValue) -> Option<u8> {
    text_of(v).and_then(|s| s.parse().ok())
}

/// The text of a scalar header value (bytes that are not UTF-8 lossily).
fn text_of(v: &FieldValue) -> Option<String> {
    Some(match v {
        FieldValue::LongString(s) | FieldValue::Bytes(s) => String::from_utf8_lossy(s).into_owned(),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::I8(n) => n.to_string(),
        FieldValue::U8(n) => n.to_string(),
        FieldValue::I16(n) => n.to_string(),
        FieldValue::U16(n) => n.to_string(),
        FieldValue::I32(n) => n.to_string(),
        FieldValue::U32(n) => n.to_string(),
        FieldValue::I64(n) => n.to_string(),
        FieldValue::F32(n) => n.to_string(),
        FieldValue::F64(n) => n.to_string(),
        FieldValue::Timestamp(n) => n.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
