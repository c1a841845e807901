//! The remote side's event loop: what rumqttc reports, turned into the bridge's terms:
//! incoming PUBLISHes dispatched to the matching subscriptions (one shared completion that
//! sends the PUBACK / PUBREC), packet ids assigned to waiting publishes in order, PUBACK /
//! PUBREC / PUBCOMP resolving them, SUBACKs resolving subscriptions, and a lost session
//! failing what was in flight and subscribing again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PubRecReason, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::{mqtt_filter, subscribe, RemoteError, Shared, Sub, SUBSCRIPTION_ROOM};
use crate::pace::{Backoff, LogGate};
use crate::side::{Ack, AckResult, BridgeMessage, Delivery, Filter, MqttProperties, Published};
use crate::topic;

pub(super) async fn poll_loop(
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
