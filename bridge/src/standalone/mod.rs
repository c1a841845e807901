//! The standalone bridge: the same bridge in front of any MQTT 5 broker, as `warren bridge
//! --config FILE` runs it ([`run_standalone`]), its MQTT side a rumqttc client
//! ([`RemoteSide`]) configured by `[bridge.mqtt]`.
//!
//! What needs the in-process mode: in process, a device's PUBACK waits for the bridge's ack
//! (RabbitMQ's confirm, or the spool's fsync), so `ack = "confirmed"` and `"spooled"` hold
//! from the device to RabbitMQ. Standalone, the remote broker acknowledges the device itself,
//! before the bridge sees the message; only the remote broker's PUBACK *to the bridge client*
//! waits for the bridge's ack. Nothing the remote broker acknowledged is lost by the bridge
//! as long as the remote broker keeps the bridge's persistent session (its QoS 1/2 messages
//! not yet acknowledged are redelivered); a broker that loses them (a restart without
//! persistence) loses them for good, and QoS 0 has no such protection at all. The order a
//! device published in is kept only as far as the remote broker keeps it.

mod client;
mod events;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::{AsyncClient, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};

pub use client::{RemoteError, RemoteSide};

use crate::config::{BridgeConfig, StandaloneMqtt};
use crate::{Bridge, StartError};

/// Why a standalone bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The bridge itself refused to start.
    #[error("{0}")]
    Start(#[from] StartError),
    /// `[bridge.mqtt.tls]` is unusable.
    #[error("bridge.mqtt.tls: {0}")]
    Tls(String),
}

/// Runs the bridge in front of the broker of `[bridge.mqtt]` (defaults: 127.0.0.1:1883) until
/// `shutdown` resolves, then shuts it down gracefully. Call it inside a tokio runtime.
pub async fn run_standalone(
    config: BridgeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StandaloneError> {
    config.check().map_err(StartError::from)?;
    let side = connect(&config.mqtt.clone().unwrap_or_default())?;
    let handle = Bridge::start(&config, side.clone())?;
    shutdown.await;
    handle.shutdown().await;
    side.close().await;
    Ok(())
}

/// Starts the MQTT client of a standalone bridge (it connects, and reconnects, in the
/// background).
pub fn connect(m: &StandaloneMqtt) -> Result<Arc<RemoteSide>, StandaloneError> {
    let mut o = MqttOptions::new(m.client_id.clone(), m.host.clone(), m.port);
    o.set_keep_alive(Duration::from_secs(m.keep_alive_secs.max(5)))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(m.session_expiry_secs))
        .set_manual_acks(true)
        .set_receive_maximum(Some(client::RECEIVE_MAXIMUM))
        .set_max_packet_size(Some(268_435_455));
    if let Some(user) = &m.username {
        o.set_credentials(user.clone(), m.password.clone().unwrap_or_default());
    }
    if let Some(tls) = &m.tls {
        o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(
            crate::tls::client_config(tls).map_err(StandaloneError::Tls)?,
        ))));
    }
    // A rendezvous channel: rumqttc takes one request at a time (see `client`).
    let (client, eventloop) = AsyncClient::new(o, 0);
    Ok(RemoteSide::start(client, eventloop))
}
