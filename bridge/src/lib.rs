//! Warren's AMQP 0-9-1 bridge: MQTT topics onto RabbitMQ exchanges (publisher confirms before
//! the MQTT acknowledgement), and RabbitMQ queues back onto MQTT topics.
//!
//! The bridge talks to the broker only through [`MqttSide`] (module [`side`]), which Warren
//! implements in process and [`standalone`] implements with a rumqttc client.
//!
//! Modules, from the edges in:
//! - [`side`]: the seam to the MQTT side.
//! - [`config`]: the `[bridge]` table and its checks.
//! - [`topic`]: MQTT topic and filter rules; [`mapping`]: topic ↔ routing key.

pub mod config;
pub mod mapping;
pub mod side;
pub mod topic;

pub use config::{BridgeConfig, ConfigCheckError};
pub use side::{
    Ack, AckResult, BridgeMessage, Delivery, Filter, MqttProperties, MqttSide, Published,
    Subscription,
};
