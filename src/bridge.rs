//! The AMQP bridge inside the broker: [`InProcessSide`] implements the bridge's
//! [`MqttSide`] seam with in-process clients of the broker's core.
//!
//! This is where the bridge's guarantees meet the acknowledgement gate. An outbound rule
//! subscribes through an *owner* client: every QoS 1/2 message it is handed carries a gate
//! ticket, which the bridge's [`Ack`] completes once it owns the message (RabbitMQ's confirm,
//! the spool's fsync, or receipt, per rule), so the device's PUBACK/PUBREC waits for that and
//! a refusal reaches the device. An inbound rule publishes through [`InProcessSide::publish`],
//! which resolves once every session the message matched holds it (and any other owner has
//! answered): only then does the bridge ack the AMQP delivery. All clients of one side share a
//! No Local identity, so what the bridge publishes never comes back to it.
//!
//! With an ACL file, the bridge is a client like the others: it is checked as the user
//! `auth.bridge_username` (default "bridge", client id `$bridge`). An outbound rule's filter
//! must be readable by it (else the rule keeps retrying its subscription, logged); an inbound
//! message on a topic it may not write is not published: it is handled as one no session
//! takes (acked, or rejected to the dead-letter exchange with `no_subscribers = "reject"`),
//! counted in `warren_acl_denied_total{action="publish"}` and logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use warren_bridge::{
    Ack, AckResult, BridgeMessage, Delivery, DeliverySource, Filter, MqttProperties, MqttSide,
    Published, Subscription,
};

use crate::auth::Access;
use crate::broker::core::{Core, SubscribeRefusal};
use crate::broker::local::{LocalClient, PublishError};
use crate::gate::{GateWaker, TicketSource, Verdict};
use crate::metrics::stats::AclAction;
use crate::protocol::{PublishProperties, QoS, SubscriptionOptions};
use crate::session::mailbox::{Message, MessageParts};

/// Why the in-process side could not do what the bridge asked.
#[derive(Debug, thiserror::Error)]
pub enum SideError {
    /// A filter was refused.
    #[error("subscription to {filter:?} refused: {refusal:?}")]
    Subscribe {
        /// The filter.
        filter: String,
        /// Why.
        refusal: SubscribeRefusal,
    },
    /// A publish was not owned.
    #[error("publish to {topic:?}: {source}")]
    Publish {
        /// The topic.
        topic: String,
        /// Why.
        source: PublishError,
    },
    /// The broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// The broker, as the bridge sees it.
pub struct InProcessSide {
    core: Arc<Core>,
    /// Publishes as this client; its origin is the side's No Local identity.
    publisher: LocalClient,
    /// What the bridge may publish, with an ACL file.
    access: Option<parking_lot::Mutex<Access>>,
}

impl InProcessSide {
    /// A side over `core`.
    pub fn new(core: &Arc<Core>) -> InProcessSide {
        InProcessSide {
            core: core.clone(),
            publisher: LocalClient::new(core, "$bridge", false),
            access: core.auth().bridge_access().map(parking_lot::Mutex::new),
        }
    }
}

impl MqttSide for InProcessSide {
    type Error = SideError;

    fn publish(
        &self,
        message: BridgeMessage,
    ) -> impl Future<Output = Result<Published, Self::Error>> + Send {
        // Routed here, before the future is returned: messages enter MQTT in call order.
        let routed = self.route(&message);
        let deadline = std::time::Duration::from_millis(self.core.config().mqtt.ack_timeout_ms);
        async move {
            let (outcome, wait) = routed?;
            let Some((pending, notify)) = wait else {
                return Ok(outcome);
            };
            let answered = async {
                loop {
                    let notified = notify.notified();
                    if let Some(verdict) = pending.verdict() {
                        return verdict;
                    }
                    notified.await;
                }
            };
            let error = match tokio::time::timeout(deadline, answered).await {
                Ok(Verdict::Owned) => return Ok(outcome),
                Ok(Verdict::Refused(code)) => PublishError::Refused(code),
                Err(_) => PublishError::Timeout,
            };
            Err(SideError::Publish {
                topic: message.topic,
                source: error,
            })
        }
    }

    fn subscribe(
        &self,
        filters: Vec<Filter>,
    ) -> impl Future<Output = Result<Subscription, Self::Error>> + Send {
        let result = self.open(filters);
        async move { result }
    }
}

/// A pending answer and what wakes its waiter.
type Wait = (Arc<crate::gate::Pending>, Arc<tokio::sync::Notify>);

impl InProcessSide {
    fn route(&self, message: &BridgeMessage) -> Result<(Published, Option<Wait>), SideError> {
        if self.core.shutdown_token().is_cancelled() {
            return Err(SideError::ShuttingDown);
        }
        if let Some(access) = &self.access {
            if !access.lock().may_publish(&message.topic) {
                self.core.stats().acl_denied(AclAction::Publish);
                if let Some(suppressed) = self.core.log_limiter().allow(self.core.clock().now_ms())
                {
                    tracing::warn!(topic = %message.topic, suppressed,
                        "bridge: the ACL does not let the bridge publish here; not published");
                }
                return Ok((Published::NoMatchingSubscribers, None));
            }
        }
        let p = &message.properties;
        let properties = PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.as_deref().map(Into::into),
            response_topic: p.response_topic.as_deref().map(Into::into),
            correlation_data: p.correlation_data.clone(),
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            ..PublishProperties::default()
        };
        let now = Instant::now();
        let built = Message::new(
            MessageParts {
                topic: &message.topic,
                payload: &message.payload,
                qos: QoS::from_u8(message.qos.min(2)).unwrap_or(QoS::AtMostOnce),
                retain: message.retain && self.core.config().mqtt.retain_available,
                properties: &properties,
                origin: self.publisher.origin(),
                publisher: None,
            },
            now,
        );
        let notify = Arc::new(tokio::sync::Notify::new());
        let waker: Arc<dyn GateWaker> = notify.clone();
        let mut tickets = TicketSource::new(&waker, self.core.clock().ms_at(now));
        let matched = self.core.route(Arc::new(built), &mut tickets);
        let outcome = if matched == 0 {
            Published::NoMatchingSubscribers
        } else {
            Published::Accepted
        };
        Ok((outcome, tickets.finish().map(|pending| (pending, notify))))
    }

    fn open(&self, filters: Vec<Filter>) -> Result<Subscription, SideError> {
        let client = LocalClient::with_origin(&self.core, "$bridge", self.publisher.origin());
        let mut access = self.core.auth().bridge_access();
        for f in &filters {
            if access.as_mut().is_some_and(|a| !a.may_subscribe(&f.filter)) {
                self.core.stats().acl_denied(AclAction::Subscribe);
                return Err(SideError::Subscribe {
                    filter: f.filter.clone(),
                    refusal: SubscribeRefusal::NotAuthorized,
                });
            }
            let options = SubscriptionOptions {
                qos: QoS::from_u8(f.qos.min(2)).unwrap_or(QoS::AtMostOnce),
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
            };
            client
                .subscribe(&f.filter, options)
                .map_err(|refusal| SideError::Subscribe {
                    filter: f.filter.clone(),
                    refusal,
                })?;
        }
        Ok(Subscription::from_source(Source { client, access }))
    }
}

/// The bridge takes its deliveries straight from the client's mailbox, on its own task. When
/// the bridge drops it, the client is dropped, which ends its session (tickets of what was
/// not taken refuse).
struct Source {
    client: LocalClient,
    access: Option<Access>,
}

impl DeliverySource for Source {
    fn try_recv(&mut self) -> Option<Delivery> {
        loop {
            let delivery = self.client.try_recv()?;
            if let Some(access) = self.access.as_mut().filter(|a| a.checks_deliveries()) {
                if !access.may_receive(delivery.message.topic()) {
                    // Not for the bridge: its publisher need not wait for it.
                    if let Some(ticket) = delivery.ticket {
                        ticket.owned();
                    }
                    continue;
                }
            }
            return Some(to_bridge(delivery));
        }
    }

    fn ready(&mut self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(self.client.ready())
    }
}

fn to_bridge(delivery: crate::session::mailbox::Delivery) -> Delivery {
    let message = &delivery.message;
    let p = &message.properties;
    let bridged = BridgeMessage {
        topic: message.topic().to_owned(),
        payload: Bytes::copy_from_slice(message.payload()),
        qos: delivery.qos as u8,
        retain: delivery.retain,
        properties: MqttProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.as_deref().map(str::to_owned),
            response_topic: p.response_topic.as_deref().map(str::to_owned),
            correlation_data: p.correlation_data.clone(),
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        },
    };
    let ack = match delivery.ticket {
        Some(ticket) => Ack::new(move |result| match result {
            AckResult::Owned => ticket.owned(),
            AckResult::Refused(code) => ticket.refuse(code),
        }),
        None => Ack::none(),
    };
    Delivery {
        message: bridged,
        client_id: message.publisher.as_ref().map(|id| id.as_bytes().clone()),
        ack,
    }
}
