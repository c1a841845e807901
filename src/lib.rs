//! Warren: an MQTT 3.1.1/5.0 broker.

pub mod config;
pub mod protocol;
pub mod router;
pub mod tls;
