//! The seam between the bridge and the MQTT side it bridges.
//!
//! The bridge knows MQTT only through [`MqttSide`]: publish a message into MQTT and learn when
//! the MQTT side owns it, and subscribe to filters and receive [`Delivery`]s, each carrying an
//! [`Ack`] that the bridge completes once *it* owns the message (per the rule's `ack` mode:
//! RabbitMQ's confirm, the spool's fsync, or receipt). Warren implements the trait in process
//! (the acknowledgement gate: the device's PUBACK waits for the bridge's [`Ack`]); a rumqttc
//! client implements it when the bridge runs standalone in front of another broker (the remote
//! broker's PUBACK to the bridge client waits for it).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::mpsc;

/// MQTT 5 properties that cross the bridge (all optional; 3.1.1 sides ignore them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttProperties {
    /// Payload Format Indicator (1: UTF-8 text).
    pub payload_format_indicator: Option<u8>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Content Type.
    pub content_type: Option<String>,
    /// Response Topic (request/response: becomes AMQP `reply-to`, and back).
    pub response_topic: Option<String>,
    /// Correlation Data (becomes AMQP `correlation-id`, and back).
    pub correlation_data: Option<Bytes>,
    /// User properties, in order, duplicates allowed.
    pub user_properties: Vec<(String, String)>,
}

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
    /// MQTT 5 properties.
    pub properties: MqttProperties,
}

/// How the bridge's handling of one [`Delivery`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckResult {
    /// The bridge owns the message (confirmed by RabbitMQ, spooled, or received, per rule).
    Owned,
    /// The bridge cannot take the message; the MQTT 5 reason code the publisher should get
    /// (e.g. 0x80 unspecified error, 0x97 quota exceeded). A 3.1.1 publisher is disconnected
    /// without acknowledgement instead, so that it resends.
    Refused(u8),
}

/// The completion of one [`Delivery`]. Complete it exactly once with [`Ack::complete`];
/// dropping it uncompleted counts as `Refused(0x80)` (the MQTT side must never treat a lost
/// handle as success).
pub struct Ack(Option<Box<dyn FnOnce(AckResult) + Send>>);

impl Ack {
    /// An ack that calls `on_complete` with the result (the MQTT side's constructor).
    pub fn new(on_complete: impl FnOnce(AckResult) + Send + 'static) -> Ack {
        Ack(Some(Box::new(on_complete)))
    }

    /// An ack that nobody waits for (QoS 0 deliveries).
    pub fn none() -> Ack {
        Ack(None)
    }

    /// Reports how handling ended.
    pub fn complete(mut self, result: AckResult) {
        if let Some(f) = self.0.take() {
            f(result);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(AckResult::Refused(0x80));
        }
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Ack(pending)"
        } else {
            "Ack(none)"
        })
    }
}

/// A message from the MQTT side for the bridge to carry onward (outbound, MQTT → AMQP).
#[derive(Debug)]
pub struct Delivery {
    /// The message, at the QoS it was published with.
    pub message: BridgeMessage,
    /// The publishing client's id (UTF-8), when the MQTT side knows it (in process it does:
    /// shared with the broker's copy, not copied per message).
    pub client_id: Option<Bytes>,
    /// Complete once the bridge owns the message.
    pub ack: Ack,
}

/// One filter to subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// MQTT topic filter.
    pub filter: String,
    /// Maximum QoS to receive at (2: every message at the QoS it was published with).
    pub qos: u8,
}

/// Deliveries the bridge takes on its own task, with no task in between (the in-process side:
/// straight from the subscriber's mailbox). Dropping it unsubscribes.
pub trait DeliverySource: Send + 'static {
    /// The next delivery if one is ready now.
    fn try_recv(&mut self) -> Option<Delivery>;

    /// Waits until a delivery may be ready; false once the MQTT side has gone away. Called
    /// only when [`DeliverySource::try_recv`] found nothing (a wait, not a per-message cost).
    fn ready(&mut self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

/// Deliveries for one [`MqttSide::subscribe`] call; dropping it unsubscribes.
pub struct Subscription {
    source: Source,
}

enum Source {
    Channel(mpsc::Receiver<Delivery>),
    Direct(Box<dyn DeliverySource>),
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl Subscription {
    /// Wraps the receiving end the MQTT side fills (bounded: a full channel pushes back on the
    /// MQTT side, which then applies its own flow control).
    pub fn new(rx: mpsc::Receiver<Delivery>) -> Subscription {
        Subscription {
            source: Source::Channel(rx),
        }
    }

    /// Takes deliveries from `source` on the bridge's task.
    pub fn from_source(source: impl DeliverySource) -> Subscription {
        Subscription {
            source: Source::Direct(Box::new(source)),
        }
    }

    /// The next delivery; `None` once the MQTT side has gone away.
    pub async fn recv(&mut self) -> Option<Delivery> {
        match &mut self.source {
            Source::Channel(rx) => rx.recv().await,
            Source::Direct(s) => loop {
                if let Some(d) = s.try_recv() {
                    return Some(d);
                }
                if !s.ready().await {
                    return s.try_recv();
                }
            },
        }
    }

    /// The next delivery if one is ready now (the bridge batches spool writes with it).
    pub fn try_recv(&mut self) -> Option<Delivery> {
        match &mut self.source {
            Source::Channel(rx) => rx.try_recv().ok(),
            Source::Direct(s) => s.try_recv(),
        }
    }
}

/// What publishing into MQTT did, once the MQTT side owns the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Accepted for at least one subscriber (or the side cannot tell: a 3.1.1 remote broker).
    Accepted,
    /// Accepted, but no subscription matched (MQTT 5 reason 0x10).
    NoMatchingSubscribers,
}

/// What the bridge needs from the MQTT side.
///
/// Messages the bridge publishes must not come back to it through its own subscriptions (the
/// MQTT side applies No Local to them), so an inbound rule and an outbound rule over the same
/// topics do not loop.
pub trait MqttSide: Send + Sync + 'static {
    /// Error type of the MQTT side.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Publishes `message` into MQTT; resolves once the MQTT side owns it (in process: every
    /// matching session holds it, as the broker's configuration promises; standalone: the
    /// remote broker's PUBACK / PUBCOMP).
    ///
    /// Order: messages enter MQTT in the order of the `publish` *calls*, even when the bridge
    /// keeps several returned futures pending at once (an inbound rule does, up to its
    /// prefetch): an implementation fixes the message's place before it returns the future
    /// (in the function body, not after an `.await` inside it).
    fn publish(
        &self,
        message: BridgeMessage,
    ) -> impl Future<Output = Result<Published, Self::Error>> + Send;

    /// Subscribes to `filters`; matching messages arrive on the returned [`Subscription`].
    fn subscribe(
        &self,
        filters: Vec<Filter>,
    ) -> impl Future<Output = Result<Subscription, Self::Error>> + Send;
}
