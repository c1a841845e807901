//! Warren's AMQP 0-9-1 bridge (stub).
//!
//! This crate will own the RabbitMQ side of Warren: MQTT topics published onto AMQP topic
//! exchanges (with publisher confirms before the MQTT acknowledgement), and AMQP queues consumed
//! back onto MQTT topics. It talks to the broker only through [`MqttSide`], which Warren implements
//! in process and a rumqttc client implements when the bridge runs standalone.
//!
//! Until the bridge issue lands, only the seam is defined here; the broker runs with the bridge off.

use bytes::Bytes;

/// A message crossing the bridge, in MQTT terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeMessage {
    /// MQTT topic name (never a filter).
    pub topic: String,
    /// Payload, shared without copy.
    pub payload: Bytes,
    /// MQTT QoS 0, 1 or 2.
    pub qos: u8,
    /// MQTT retain flag.
    pub retain: bool,
}

/// What the bridge needs from the MQTT side: publish into it, and subscribe to filters on it.
pub trait MqttSide: Send + Sync + 'static {
    /// Error type of the MQTT side.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Publishes `message` into MQTT; returns once the MQTT side owns it (PUBACK/PUBCOMP semantics).
    fn publish(
        &self,
        message: BridgeMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;

    /// Subscribes to `filter`; matching messages are handed to `sink` until it returns `false`.
    fn subscribe(
        &self,
        filter: &str,
        sink: Box<dyn FnMut(BridgeMessage) -> bool + Send>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}
