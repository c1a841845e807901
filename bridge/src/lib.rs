//! Warren's AMQP 0-9-1 bridge: MQTT topics onto RabbitMQ exchanges (publisher confirms before
//! the MQTT acknowledgement), and RabbitMQ queues back onto MQTT topics.
//!
//! The bridge talks to the broker only through [`MqttSide`] (module [`side`]), which Warren
//! implements in process and [`standalone`] implements with a rumqttc client. Start it with
//! [`Bridge::start`]; stop it with [`BridgeHandle::shutdown`].
//!
//! Modules, from the edges in:
//! - [`side`]: the seam to the MQTT side; [`standalone`]: a rumqttc client as that side.
//! - [`config`]: the `[bridge]` table and its checks.
//! - [`topic`]: MQTT topic and filter rules; [`mapping`]: topic ↔ routing key.
//! - `amqp`: the bridge's own AMQP 0-9-1 client: URLs, connections, confirm-mode publishers,
//!   consumers; nothing else speaks AMQP.
//! - `link`: the AMQP connection and its reconnection.
//! - `outbound`: MQTT → AMQP rules (window, confirms, returns, ack modes); `inbound`: AMQP →
//!   MQTT rules; `convert`: message metadata ↔ AMQP properties and headers.
//! - `spool`: the disk spool of `spooled` rules.
//! - [`mod@metrics`]: counters, `warren_bridge_*` metrics, [`BridgeSnapshot`].
//! - `bridge`: assembly and shutdown; `pace`: backoff and log pacing; `tls`: rustls client
//!   configurations.

mod amqp;
mod bridge;
pub mod config;
mod convert;
mod inbound;
mod link;
pub mod mapping;
pub mod metrics;
mod outbound;
mod pace;
pub mod side;
mod spool;
pub mod standalone;
mod tls;
pub mod topic;

#[doc(hidden)]
pub mod fuzzing;

pub use bridge::{Bridge, BridgeHandle, StartError};
pub use config::{BridgeConfig, ConfigCheckError};
pub use link::LinkError;
pub use metrics::{
    BridgeSnapshot, ConnectionState, InboundCounts, InboundSnapshot, OutboundCounts,
    OutboundSnapshot,
};
pub use side::{
    Ack, AckResult, BridgeMessage, Delivery, DeliverySource, Filter, MqttProperties, MqttSide,
    Published, Subscription,
};
pub use spool::SpoolError;
