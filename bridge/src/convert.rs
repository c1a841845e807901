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

use crate::amqp::{BasicProperties, ByteArray, FieldArray, FieldTable, FieldValue};
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

/// Whether `s` fits an AMQP short string.
fn short(s: &str) -> Option<&str> {
    (s.len() <= crate::amqp::MAX_SHORT).then_some(s)
}

/// Adds a header (a name the table does not hold yet: amqprs miscounts a replaced one).
fn put(h: &mut FieldTable, k: &str, v: FieldValue) {
    if let Ok(name) = k.try_into() {
        if h.get(&name).is_none() {
            h.insert(name, v);
        }
    }
}

fn long(s: &str) -> FieldValue {
    FieldValue::from(s)
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
    let mut h = FieldTable::new();
    put(&mut h, H_TOPIC, long(&msg.topic));
    if let Some(c) = client_id {
        put(&mut h, H_CLIENT, long(c));
    }
    put(&mut h, H_QOS, FieldValue::I(i32::from(msg.qos)));
    put(&mut h, H_RETAIN, FieldValue::t(msg.retain));
    if let Some(f) = p.payload_format_indicator {
        put(&mut h, H_FORMAT, FieldValue::I(i32::from(f)));
    }
    let mut props = BasicProperties::default();
    props
        .with_delivery_mode(if msg.qos >= 1 { 2 } else { 1 })
        .with_timestamp(timestamp)
        .with_app_id("warren");
    if let Some(id) = short(message_id) {
        props.with_message_id(id);
    }
    if let Some(ct) = p.content_type.as_deref().and_then(short) {
        props.with_content_type(ct);
    }
    if let Some(secs) = p.message_expiry_interval {
        props.with_expiration(&(u64::from(secs) * 1000).to_string());
    }
    if let Some(rt) = &p.response_topic {
        put(&mut h, H_RESPONSE, long(rt));
        if let Some(key) = reply.topic_to_key(rt).ok().filter(|k| short(k).is_some()) {
            props.with_reply_to(&key);
        }
    }
    if let Some(cd) = &p.correlation_data {
        match std::str::from_utf8(cd).ok().and_then(short) {
            Some(id) => {
                props.with_correlation_id(id);
            }
            None => {
                if let Ok(b) = ByteArray::try_from(cd.to_vec()) {
                    put(&mut h, H_CORRELATION, FieldValue::x(b));
                }
            }
        }
    }
    for (i, (k, v)) in p.user_properties.iter().enumerate() {
        if k.starts_with(BRIDGE_PREFIX) || short(k).is_none() {
            continue;
        }
        let same: Vec<&str> = p.user_properties[i..]
            .iter()
            .filter(|(k2, _)| k2 == k)
            .map(|(_, v)| v.as_str())
            .collect();
        let value = if same.len() == 1 {
            long(v)
        } else {
            match FieldArray::try_from(same.into_iter().map(long).collect::<Vec<_>>()) {
                Ok(a) => FieldValue::A(a),
                Err(_) => continue,
            }
        };
        // The first occurrence of a name wins (later ones are in its array).
        put(&mut h, k, value);
    }
    props.with_headers(h);
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
    routing_key: &str,
    props: &BasicProperties,
    payload: Vec<u8>,
    shape: &InboundShape<'_>,
) -> Result<BridgeMessage, MappingError> {
    let topic = shape.topic.key_to_topic(routing_key)?;
    let mut p = MqttProperties {
        content_type: props.content_type().cloned(),
        message_expiry_interval: props
            .expiration()
            .and_then(|e| e.parse::<u64>().ok())
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)),
        response_topic: props
            .reply_to()
            .and_then(|r| shape.reply.key_to_topic(r).ok()),
        correlation_data: props
            .correlation_id()
            .map(|c| Bytes::copy_from_slice(c.as_bytes())),
        ..MqttProperties::default()
    };
    if let Some(h) = props.headers() {
        for (k, v) in h.as_ref() {
            match k.as_ref().as_str() {
                H_FORMAT => p.payload_format_indicator = as_u8(v),
                H_CORRELATION => {
                    if let FieldValue::x(b) = v {
                        p.correlation_data = Some(Bytes::from(Vec::<u8>::from(b.clone())));
                    }
                }
                k if k.starts_with(BRIDGE_PREFIX) => {}
                k => match v {
                    FieldValue::A(a) => {
                        for e in Vec::<FieldValue>::from(a.clone()) {
                            if let Some(s) = text(&e) {
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

fn as_u8(v: &FieldValue) -> Option<u8> {
    text(v).and_then(|s| s.parse().ok())
}

/// The text of a scalar header value.
fn text(v: &FieldValue) -> Option<String> {
    Some(match v {
        FieldValue::S(s) => s.as_ref().clone(),
        FieldValue::x(b) => String::from_utf8_lossy(&Vec::<u8>::from(b.clone())).into_owned(),
        FieldValue::t(b) => b.to_string(),
        FieldValue::b(n) => n.to_string(),
        FieldValue::B(n) => n.to_string(),
        FieldValue::s(n) => n.to_string(),
        FieldValue::u(n) => n.to_string(),
        FieldValue::I(n) => n.to_string(),
        FieldValue::i(n) => n.to_string(),
        FieldValue::l(n) => n.to_string(),
        FieldValue::f(n) => n.to_string(),
        FieldValue::d(n) => n.to_string(),
        FieldValue::T(n) => n.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
