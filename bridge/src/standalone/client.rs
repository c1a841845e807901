//! [`RemoteSide`]: [`MqttSide`] over an MQTT 5 connection to another broker (rumqttc), with a
//! persistent session, manual acknowledgements and No Local subscriptions.
//!
//! - Outbound deliveries: each incoming PUBLISH goes to every subscription whose filter
//!   matches; its PUBACK / PUBREC is sent once every one of them completed its [`Ack`] as
//!   owned (never on a refusal: the broker redelivers it on the next session). The event
//!   loop never blocks on a slow rule: each subscription has an ordered, unbounded queue in
//!   front of its bounded channel. For QoS 1/2 that queue is bounded by what the broker sends
//!   unacknowledged: our Receive Maximum, where the broker honours it (Mosquitto 2.0.11 does
//!   not: it sent 3,000 unacknowledged QoS 1 messages in a test); QoS 0 is dropped once the
//!   queue holds more than a channel's worth.
//! - Publishing: `publish` queues the message at once (call order is MQTT order); one sender
//!   task hands messages to rumqttc one at a time (a rendezvous channel), so the packet ids
//!   rumqttc reports as `Outgoing::Publish` come in the same order as the waiters. A waiter
//!   resolves on PUBACK (QoS 1), PUBCOMP (QoS 2) or when sent (QoS 0). If the broker lost the
//!   session, publications in flight fail (the inbound rule requeues them).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{
    Filter as MqttFilter, Packet, PubAckReason, PubRecReason, Publish, PublishProperties,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::pace::{Backoff, LogGate};
use crate::side::{
    Ack, AckResult, BridgeMessage, Delivery, Filter, MqttProperties, MqttSide, Published,
    Subscription,
};
use crate::topic;

/// Receive Maximum asked of the remote broker (QoS 1/2 deliveries unacknowledged at once).
pub(crate) const RECEIVE_MAXIMUM: u16 = 1024;
/// Room in each subscription's channel; past this many queued in front of it, QoS 0 drops.
const SUBSCRIPTION_ROOM: usize = 1024;

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

type Waiter = oneshot::Sender<Result<Published, RemoteError>>;

struct Sub {
    filters: Vec<Filter>,
    /// In front of the subscription's bounded channel (see the module doc).
    queue: mpsc::UnboundedSender<Delivery>,
    queued: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Shared {
    subs: Mutex<Vec<Sub>>,
    /// Handed to rumqttc, packet id not known yet (in order).
    unassigned: Mutex<VecDeque<(u8, Waiter)>>,
    /// By packet id; the flag: a PUBREC said no matching subscribers (QoS 2).
    assigned: Mutex<HashMap<u16, (Waiter, bool)>>,
    /// SUBSCRIBEs handed to rumqttc, packet id not known yet (in order), then by packet id.
    subscribing: Mutex<VecDeque<SubWaiter>>,
    subscribed: Mutex<HashMap<u16, SubWaiter>>,
    /// Serializes SUBSCRIBE requests, so that their order is the waiters' order.
    subscribe_lock: tokio::sync::Mutex<()>,
}

type SubWaiter = oneshot::Sender<Result<(), RemoteError>>;

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
        tokio::spawn(poll_loop(
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
async fn subscribe(
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

fn mqtt_filter(f: &Filter) -> MqttFilter {
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

async fn poll_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    ack_tx: mpsc::UnboundedSender<Publish>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut log = LogGate::new(Duration::from_secs(60));
    let mut connected_once = false;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                tracing::trace!(
                    pkid = p.pkid,
                    dup = p.dup,
                    "bridge: PUBLISH from the MQTT broker"
                );
                dispatch(&shared, &ack_tx, p)
            }
            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                backoff.reset();
                tracing::info!(
                    session_present = c.session_present,
                    "bridge: connected to the MQTT broker"
                );
                if connected_once && !c.session_present {
                    session_lost(&shared, &client);
                }
                connected_once = true;
            }
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                let r = match a.reason {
                    PubAckReason::Success => Ok(Published::Accepted),
                    PubAckReason::NoMatchingSubscribers => Ok(Published::NoMatchingSubscribers),
                    other => Err(RemoteError::Refused(format!("{other:?}"))),
                };
                resolve(&shared, a.pkid, r);
            }
            Ok(Event::Incoming(Packet::PubRec(r))) => {
                let mut assigned = shared.assigned.lock().unwrap_or_else(|e| e.into_inner());
                match r.reason {
                    PubRecReason::Success => {}
                    PubRecReason::NoMatchingSubscribers => {
                        if let Some(w) = assigned.get_mut(&r.pkid) {
                            w.1 = true;
                        }
                    }
                    other => {
                        if let Some((w, _)) = assigned.remove(&r.pkid) {
                            let _ = w.send(Err(RemoteError::Refused(format!("{other:?}"))));
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubComp(c))) => {
                let none = shared
                    .assigned
                    .lock()
                    .map(|a| a.get(&c.pkid).is_some_and(|w| w.1))
                    .unwrap_or(false);
                let r = if none {
                    Published::NoMatchingSubscribers
                } else {
                    Published::Accepted
                };
                resolve(&shared, c.pkid, Ok(r));
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => assign(&shared, pkid),
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                let w = shared
                    .subscribing
                    .lock()
                    .ok()
                    .and_then(|mut s| s.pop_front());
                if let (Some(w), Ok(mut m)) = (w, shared.subscribed.lock()) {
                    m.insert(pkid, w);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(a))) => {
                let w = shared
                    .subscribed
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&a.pkid));
                let failed = a.return_codes.iter().any(|c| {
                    !matches!(
                        c,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    )
                });
                if let Some(w) = w {
                    let _ = w.send(if failed {
                        Err(RemoteError::Refused("SUBACK with a failure code".into()))
                    } else {
                        Ok(())
                    });
                }
            }
            Ok(_) => {}
            Err(e) => {
                if log.hit(Instant::now()).is_some() {
                    tracing::warn!(error = %e, "bridge: MQTT connection failed; reconnecting");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// rumqttc handed a publish to the network with `pkid` (0: QoS 0).
fn assign(shared: &Shared, pkid: u16) {
    let mut assigned = shared.assigned.lock().unwrap_or_else(|e| e.into_inner());
    if pkid != 0 && assigned.contains_key(&pkid) {
        return; // a retransmission
    }
    let mut unassigned = shared.unassigned.lock().unwrap_or_else(|e| e.into_inner());
    let Some((q, waiter)) = unassigned.pop_front() else {
        return;
    };
    if pkid == 0 || q == 0 {
        let _ = waiter.send(Ok(Published::Accepted));
    } else {
        assigned.insert(pkid, (waiter, false));
    }
}

fn resolve(shared: &Shared, pkid: u16, r: Result<Published, RemoteError>) {
    let w = shared
        .assigned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pkid);
    if let Some((w, _)) = w {
        let _ = w.send(r);
    }
}

/// A new session: what was in flight is gone, and the subscriptions must be made again.
fn session_lost(shared: &Arc<Shared>, client: &AsyncClient) {
    for (_, (w, _)) in shared
        .assigned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
    {
        let _ = w.send(Err(RemoteError::SessionLost));
    }
    let filters: Vec<Filter> = shared
        .subs
        .lock()
        .map(|s| s.iter().flat_map(|s| s.filters.clone()).collect())
        .unwrap_or_default();
    let client = client.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        let fs = filters.iter().map(mqtt_filter).collect();
        if let Err(e) = subscribe(&client, &shared, fs).await {
            tracing::warn!(error = %e, "bridge: cannot subscribe again after the session was lost");
        }
    });
}

/// Hands an incoming publish to every matching subscription, with one shared completion.
fn dispatch(shared: &Shared, ack_tx: &mpsc::UnboundedSender<Publish>, p: Publish) {
    let Ok(topic) = String::from_utf8(p.topic.to_vec()) else {
        let _ = ack_tx.send(p);
        return;
    };
    let mut subs = shared.subs.lock().unwrap_or_else(|e| e.into_inner());
    subs.retain(|s| !s.queue.is_closed());
    let targets: Vec<&Sub> = subs
        .iter()
        .filter(|s| s.filters.iter().any(|f| topic::matches(&f.filter, &topic)))
        .collect();
    let needs_ack = p.qos != QoS::AtMostOnce;
    if targets.is_empty() {
        if needs_ack {
            let _ = ack_tx.send(p);
        }
        return;
    }
    let join = Arc::new(Join {
        left: AtomicUsize::new(targets.len()),
        refused: AtomicUsize::new(0),
        publish: Mutex::new(Some(p.clone())),
        ack_tx: ack_tx.clone(),
    });
    let message = message(&topic, &p);
    for s in targets {
        let ack = if needs_ack {
            let join = join.clone();
            Ack::new(move |r| join.complete(r))
        } else {
            Ack::none()
        };
        let d = Delivery {
            message: message.clone(),
            client_id: None,
            ack,
        };
        if !needs_ack && s.queued.load(Ordering::Relaxed) >= SUBSCRIPTION_ROOM {
            continue; // QoS 0 behind a full queue
        }
        s.queued.fetch_add(1, Ordering::Relaxed);
        let _ = s.queue.send(d);
    }
}

struct Join {
    left: AtomicUsize,
    refused: AtomicUsize,
    publish: Mutex<Option<Publish>>,
    ack_tx: mpsc::UnboundedSender<Publish>,
}

impl Join {
    fn complete(&self, r: AckResult) {
        if r != AckResult::Owned {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1
            && self.refused.load(Ordering::Relaxed) == 0
        {
            if let Some(p) = self
                .publish
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                let _ = self.ack_tx.send(p);
            }
        }
    }
}

fn message(topic: &str, p: &Publish) -> BridgeMessage {
    let props = p.properties.clone().unwrap_or_default();
    BridgeMessage {
        topic: topic.to_string(),
        payload: p.payload.clone(),
        qos: match p.qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        },
        retain: p.retain,
        properties: MqttProperties {
            payload_format_indicator: props.payload_format_indicator,
            message_expiry_interval: props.message_expiry_interval,
            content_type: props.content_type,
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            user_properties: props.user_properties,
        },
    }
}
