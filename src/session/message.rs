//! Application messages on their way to sessions.
//!
//! A [`Message`] is built once per PUBLISH (or will, or `$SYS` update) and shared (`Arc`) by every
//! subscriber it reaches; a [`Delivery`] adds what differs per subscriber (granted QoS, retain
//! flag, subscription ids, and the owner's ticket when that subscriber must confirm it holds
//! the message before the publisher is answered).
//!
//! A message owns its memory: topic, payload and properties are copied out of the read buffer
//! they arrived in ([`Message::new`]), so a message kept in a queue for hours holds exactly its
//! own bytes, not the 4 KiB to 1 MiB buffer that carried it. [`Message::cost`] is what it holds,
//! all of it (topic, properties, payload and the fixed parts), and is what queue limits count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::gate::Ticket;
use crate::protocol::{PublishProperties, QoS};

/// One application message as published, shared by all its deliveries.
#[derive(Debug)]
pub struct Message {
    /// Topic name.
    pub topic: ByteString,
    /// Payload, shared without copy between deliveries.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// Retain flag it was published with.
    pub retain: bool,
    /// 5.0 properties to forward (topic alias and subscription ids removed).
    pub properties: PublishProperties,
    /// When the Message Expiry Interval runs out, if one was given.
    pub expires_at: Option<Instant>,
    /// Mailbox id of the publishing session (for No Local); 0 for the broker itself.
    pub origin: u64,
    /// When the broker received it (delivery latency).
    pub received_at: Instant,
    /// Bytes this message holds in memory (see [`Message::cost`]).
    cost: usize,
}

/// What a new [`Message`] is made of; borrowed, so nothing of the read buffer is kept.
#[derive(Debug, Clone, Copy)]
pub struct MessageParts<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Properties to forward; topic alias and subscription identifiers are not kept.
    pub properties: &'a PublishProperties,
    /// Mailbox id of the publisher (0: the broker).
    pub origin: u64,
}

impl Message {
    /// A message owning copies of `parts`, received at `now`.
    pub fn new(parts: MessageParts<'_>, now: Instant) -> Message {
        let properties = owned_properties(parts.properties);
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(secs.into()));
        let mut message = Message {
            topic: ByteString::from(parts.topic),
            payload: Bytes::copy_from_slice(parts.payload),
            qos: parts.qos,
            retain: parts.retain,
            properties,
            expires_at,
            origin: parts.origin,
            received_at: now,
            cost: 0,
        };
        message.cost = message.measure();
        message
    }

    /// The same message as another value (for the retained store, which keeps its own).
    pub fn duplicate(&self) -> Message {
        Message {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.clone(),
            expires_at: self.expires_at,
            origin: self.origin,
            received_at: self.received_at,
            cost: self.cost,
        }
    }

    /// Bytes held: the struct, its shared allocation header, topic, payload and properties.
    pub fn cost(&self) -> usize {
        self.cost
    }

    fn measure(&self) -> usize {
        /// The `Arc` counts and the allocation headers of topic and payload.
        const OVERHEAD: usize = 16 + 2 * 32;
        let p = &self.properties;
        let strings = [&p.content_type, &p.response_topic]
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.len()))
            .sum::<usize>();
        std::mem::size_of::<Message>()
            + OVERHEAD
            + self.topic.len()
            + self.payload.len()
            + strings
            + p.correlation_data.as_ref().map_or(0, Bytes::len)
            + user_properties_cost(p)
    }

    /// True once the message's expiry interval has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// Heap bytes held by the user properties of `p`.
fn user_properties_cost(p: &PublishProperties) -> usize {
    p.user_properties
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<ByteString>())
        .sum()
}

/// `p` with every string and binary copied into its own allocation (decoded properties are
/// slices of the read buffer) and the per-hop properties (topic alias, subscription
/// identifiers) dropped.
fn owned_properties(p: &PublishProperties) -> PublishProperties {
    let string = |s: &Option<ByteString>| s.as_deref().map(ByteString::from);
    PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        topic_alias: None,
        response_topic: string(&p.response_topic),
        correlation_data: p.correlation_data.as_deref().map(Bytes::copy_from_slice),
        user_properties: p
            .user_properties
            .iter()
            .map(|(k, v)| (ByteString::from(&**k), ByteString::from(&**v)))
            .collect(),
        subscription_identifiers: Vec::new(),
        content_type: string(&p.content_type),
    }
}

/// A message bound for one session, with what that session's subscriptions granted.
#[derive(Debug)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// QoS to deliver at: min(published, granted).
    pub qos: QoS,
    /// Retain flag to deliver with.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions (5.0).
    pub subscription_ids: Vec<u32>,
    /// For an owner that must confirm it holds the message (an in-process client such as the
    /// AMQP bridge): the publisher's answer waits for this ticket.
    pub ticket: Option<Ticket>,
}

impl Delivery {
    /// A delivery of `message` at `qos` with no subscription ids and no ticket.
    pub fn new(message: Arc<Message>, qos: QoS, retain: bool) -> Delivery {
        Delivery {
            message,
            qos,
            retain,
            subscription_ids: Vec::new(),
            ticket: None,
        }
    }

    /// Bytes this delivery holds, counting the whole message (each queue holding a message
    /// keeps all of it alive).
    pub fn cost(&self) -> usize {
        std::mem::size_of::<Delivery>()
            + self.message.cost()
            + self.subscription_ids.len() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_owns_copies_and_counts_them() {
        let wire = Bytes::from(vec![7u8; 64 * 1024]);
        let properties = PublishProperties {
            content_type: Some(ByteString::from("text/plain")),
            user_properties: vec![("k".into(), "v".into())],
            topic_alias: Some(3),
            subscription_identifiers: vec![9],
            ..PublishProperties::default()
        };
        let message = Message::new(
            MessageParts {
                topic: "a/b",
                payload: &wire[..10],
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: &properties,
                origin: 1,
            },
            Instant::now(),
        );
        assert_eq!(message.payload.len(), 10);
        assert_ne!(
            message.payload.as_ptr(),
            wire.as_ptr(),
            "copied, not sliced"
        );
        assert!(message.properties.topic_alias.is_none());
        assert!(message.properties.subscription_identifiers.is_empty());
        let cost = message.cost();
        assert!(cost >= 10 + 3 + 10 + 2, "{cost}");
        assert!(cost < 1024, "{cost}");
    }
}
