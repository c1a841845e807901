//! [`RemoteSide`]: [`MqttSide`] over an MQTT 5 connection to another broker (rumqttc), with a
//! persistent session, manual acknowledgements and No Local subscriptions.
//!
//! - Outbound deliveries: each incoming PUBLISH goes to every subscription whose filter
//!   matches; its PUBACK / PUBREC is sent once every one of them completed its [`Ack`](crate::Ack) as
//!   owned (never on a refusal: the broker redelivers it on the next session). The event
//!   loop never blocks on a slow rule: each subscription has an ordered, unbounded queue in
//!   front of its bounded channel. For QoS 1/2 that queue is bounded by what the broker sends
//!   unacknowledged: our Receive Maximum, where the broker honours it (the tests' Mosquitto
//!   2.0.11 did not: it sent 3,000 QoS 1 messages unacknowledged, with Receive Maximum 1024
//!   asked and `max_inflight_messages 100`); QoS 0 is dropped once the queue holds more than
//!   a channel's worth.
//! - Publishing: `publish` queues the message at once (call order is MQTT order); one sender
//!   task hands messages to rumqttc one at a time (a rendezvous channel), so the packet ids
//!   rumqttc reports as `Outgoing::Publish` come in the same order as the waiters. A waiter
//!   resolves on PUBACK (QoS 1), PUBCOMP (QoS 2) or when sent (QoS 0). If the broker lost the
//!   session, publications in flight fail (the inbound rule requeues them).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter as MqttFilter, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, EventLoop};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::side::{BridgeMessage, Delivery, Filter, MqttSide, Published, Subscription};

/// Receive Maximum asked of the remote broker (QoS 1/2 deliveries unacknowledged at once).
pub(crate) const RECEIVE_MAXIMUM: u16 = 1024;
/// Room in each subscription's channel; past this many queued in front of it, QoS 0 drops.
pub(super) const SUBSCRIPTION_ROOM: usize = 1024;

/// Why the remote side failed an operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The MQTT client is gone (the bridge is shutting down).
    #[error("the MQTT client is closed")]
    Closed,
    /// The broker answered with an error reason code.
    #[error("the MQTT broker refused the publish (reason {0:?})")]
    Refused(String),
    /// The broker lost the session while the publish was in flight.
    #[error("the MQTT session was lost with the publish in flight")]
    SessionLost,
}

pub(super) type Waiter = oneshot::Sender<Result<Published, RemoteError>>;

pub(super) struct Sub {
    pub(super) filters: Vec<Filter>,
    /// In front of the subscription's bounded channel (see the module doc).
    pub(super) queue: mpsc::UnboundedSender<Delivery>,
    pub(super) queued: Arc<AtomicUsize>,
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) subs: Mutex<Vec<Sub>>,
    /// Handed to rumqttc, packet id not known yet (in order).
    pub(super) unassigned: Mutex<VecDeque<(u8, Waiter)>>,
    /// By packet id; the flag: a PUBREC said no matching subscribers (QoS 2).
    pub(super) assigned: Mutex<HashMap<u16, (Waiter, bool)>>,
    /// SUBSCRIBEs handed to rumqttc, packet id not known yet (in order), then by packet id.
    pub(super) subscribing: Mutex<VecDeque<SubWaiter>>,
    pub(super) subscribed: Mutex<HashMap<u16, SubWaiter>>,
    /// Serializes SUBSCRIBE requests, so that their order is the waiters' order.
    pub(super) subscribe_lock: tokio::sync::Mutex<()>,
}

pub(super) type SubWaiter = oneshot::Sender<Result<(), RemoteError>>;

/// The MQTT side of a standalone bridge.
pub struct RemoteSide {
    client: AsyncClient,
    shared: Arc<Shared>,
    publish_tx: mpsc::UnboundedSender<(BridgeMessage, Waiter)>,
    cancel: CancellationToken,
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl RemoteSide {
    /// Starts the client tasks (event loop, sender, acker) on the current runtime.
    pub(crate) fn start(client: AsyncClient, eventloop: EventLoop) -> Arc<RemoteSide> {
        let shared = Arc::new(Shared::default());
        let cancel = CancellationToken::new();
        let (publish_tx, publish_rx) = mpsc::unbounded_channel();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        tokio::spawn(send_loop(client.clone(), shared.clone(), publish_rx));
        tokio::spawn(ack_loop(client.clone(), ack_rx));
        tokio::spawn(super::events::poll_loop(
            eventloop,
            client.clone(),
            shared.clone(),
            ack_tx,
            cancel.clone(),
        ));
        Arc::new(RemoteSide {
            client,
            shared,
            publish_tx,
            cancel,
        })
    }

    /// Disconnects from the broker and stops the event loop.
    pub(crate) async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.disconnect()).await;
        self.cancel.cancel();
    }
}

impl MqttSide for RemoteSide {
    type Error = RemoteError;

    fn publish(
        &self,
        message: BridgeMessage,
    ) -> impl std::future::Future<Output = Result<Published, RemoteError>> + Send {
        let (tx, rx) = oneshot::channel();
        // Queued now, in call order.
        let queued = self.publish_tx.send((message, tx)).is_ok();
        async move {
            if !queued {
                return Err(RemoteError::Closed);
            }
            rx.await.unwrap_or(Err(RemoteError::Closed))
        }
    }

    fn subscribe(
        &self,
        filters: Vec<Filter>,
    ) -> impl std::future::Future<Output = Result<Subscription, RemoteError>> + Send {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_ROOM);
        let (queue, mut queue_rx) = mpsc::unbounded_channel::<Delivery>();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        tokio::spawn(async move {
            while let Some(d) = queue_rx.recv().await {
                q.fetch_sub(1, Ordering::Relaxed);
                if tx.send(d).await.is_err() {
                    return;
                }
            }
        });
        if let Ok(mut subs) = self.shared.subs.lock() {
            subs.push(Sub {
                filters: filters.clone(),
                queue,
                queued,
            });
        }
        let (client, shared) = (self.client.clone(), self.shared.clone());
        async move {
            subscribe(&client, &shared, filters.iter().map(mqtt_filter).collect()).await?;
            Ok(Subscription::new(rx))
        }
    }
}

/// Sends a SUBSCRIBE and waits for its SUBACK.
pub(super) async fn subscribe(
    client: &AsyncClient,
    shared: &Shared,
    filters: Vec<MqttFilter>,
) -> Result<(), RemoteError> {
    let (tx, rx) = oneshot::channel();
    {
        let _order = shared.subscribe_lock.lock().await;
        if let Ok(mut s) = shared.subscribing.lock() {
            s.push_back(tx);
        }
        client
            .subscribe_many(filters)
            .await
            .map_err(|_| RemoteError::Closed)?;
    }
    rx.await.unwrap_or(Err(RemoteError::Closed))
}

pub(super) fn mqtt_filter(f: &Filter) -> MqttFilter {
    let mut m = MqttFilter::new(f.filter.clone(), qos(f.qos));
    m.nolocal = true;
    m.preserve_retain = true;
    m
}

async fn send_loop(
    client: AsyncClient,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<(BridgeMessage, Waiter)>,
) {
    while let Some((m, waiter)) = rx.recv().await {
        let p = &m.properties;
        let props = PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            topic_alias: None,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: p.content_type.clone(),
        };
        if let Ok(mut u) = shared.unassigned.lock() {
            u.push_back((m.qos, waiter));
        }
        let sent = client
            .publish_with_properties(m.topic, qos(m.qos), m.retain, m.payload, props)
            .await;
        if sent.is_err() {
            // The client is gone: nothing will be assigned any more.
            if let Ok(mut u) = shared.unassigned.lock() {
                u.clear();
            }
            return;
        }
    }
}

async fn ack_loop(client: AsyncClient, mut rx: mpsc::UnboundedReceiver<Publish>) {
    while let Some(p) = rx.recv().await {
        tracing::trace!(pkid = p.pkid, "bridge: acknowledging to the MQTT broker");
        if client.ack(&p).await.is_err() {
            return;
        }
    }
}
