//! Warren's AMQP 0-9-1 bridge (stub).
//!
//! This crate will own the RabbitMQ side of Warren: MQTT topics published onto AMQP exchanges
//! (with publisher confirms before the MQTT acknowledgement), and AMQP queues consumed back onto
//! MQTT topics. It talks to the broker only through [`MqttSide`] (module [`side`]), which Warren
//! implements in process and a rumqttc client implements when the bridge runs standalone.

pub mod side;

pub use side::{
    Ack, AckResult, BridgeMessage, Delivery, Filter, MqttProperties, MqttSide, Published,
    Subscription,
};
