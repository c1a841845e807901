//! Application messages on their way to sessions.
//!
//! A [`Message`] is built once per PUBLISH (or will, or `$SYS` update) and shared (`Arc`) by every
//! subscriber it reaches; a [`Delivery`] adds what differs per subscriber (granted QoS, retain
//! flag, subscription ids, and the owner's ticket when that subscriber must confirm it holds
//! the message before the publisher is answered).
//!
//! A message owns its memory: topic, payload and properties are copied out of the read buffer
//! they arrived in ([`Message::new`]), so a message kept in a queue for hours holds exactly its
//! own bytes, not the 4 KiB to 1 MiB buffer that carried it. Topic and payload sit together,
//! inside the message itself when they are small (one allocation for a typical device message,
//! as many as a slice of the read buffer cost) or in one buffer of their own; deliveries borrow
//! them for encoding ([`crate::protocol::PublishOut`]) instead of cloning anything.
//! [`Message::cost`] is what a message holds, all of it (topic, properties, payload and the
//! fixed parts), and is what queue limits count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use compact_str::CompactString;

use crate::gate::Ticket;
use crate::protocol::{PublishProperties, QoS};
use crate::router::ShareKey;

/// Payloads of up to this many bytes live inside the message.
const INLINE: usize = 96;

/// The payload: inside the message when small, else in a buffer of its own.
#[derive(Debug)]
enum Data {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Data {
    fn new(payload: &[u8]) -> Data {
        match u8::try_from(payload.len()) {
            Ok(len) if payload.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..payload.len()].copy_from_slice(payload);
                Data::Inline { len, bytes }
            }
            _ => Data::Heap(payload.into()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Data::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Data::Heap(heap) => heap,
        }
    }

    fn heap_len(&self) -> usize {
        match self {
            Data::Inline { .. } => 0,
            Data::Heap(heap) => heap.len(),
        }
    }
}

/// One application message as published, shared by all its deliveries.
#[derive(Debug)]
pub struct Message {
    /// Topic name (inline up to 24 bytes).
    topic: CompactString,
    payload: Data,
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
    /// Client id of the publisher, when a client published it (the bridge's headers).
    pub publisher: Option<ByteString>,
    /// When the broker received it (delivery latency).
    pub received_at: Instant,
    /// Bytes this message holds in memory (see [`Message::cost`]).
    cost: usize,
    /// Its id in the disk store, once it is stored there (0: not stored).
    store_id: AtomicU64,
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
    /// Client id of the publisher (shared, not copied).
    pub publisher: Option<&'a ByteString>,
}

impl Message {
    /// A message owning copies of `parts`, received at `now`.
    pub fn new(parts: MessageParts<'_>, now: Instant) -> Message {
        let properties = owned_properties(parts.properties);
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(secs.into()));
        let mut message = Message {
            topic: CompactString::new(parts.topic),
            payload: Data::new(parts.payload),
            qos: parts.qos,
            retain: parts.retain,
            properties,
            expires_at,
            origin: parts.origin,
            publisher: parts.publisher.cloned(),
            received_at: now,
            cost: 0,
            store_id: AtomicU64::new(0),
        };
        message.cost = message.measure();
        message
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Payload.
    pub fn payload(&self) -> &[u8] {
        self.payload.as_slice()
    }

    /// Bytes held: the struct, its shared allocation header, topic, payload and properties.
    pub fn cost(&self) -> usize {
        self.cost
    }

    fn measure(&self) -> usize {
        /// The `Arc` counts and allocator headers.
        const OVERHEAD: usize = 16 + 2 * 16;
        let p = &self.properties;
        let strings = [&p.content_type, &p.response_topic]
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.len()))
            .sum::<usize>();
        std::mem::size_of::<Message>()
            + OVERHEAD
            + self.payload.heap_len()
            + if self.topic.is_heap_allocated() {
                self.topic.len()
            } else {
                0
            }
            + strings
            + p.correlation_data.as_ref().map_or(0, Bytes::len)
            + user_properties_cost(p)
    }

    /// Its id in the disk store (0 while it is not stored).
    pub fn store_id(&self) -> u64 {
        self.store_id.load(Ordering::Acquire)
    }

    /// Its id in the disk store, given by `next` the first time it is asked for.
    pub fn store_id_or(&self, next: impl FnOnce() -> u64) -> u64 {
        let id = self.store_id();
        if id != 0 {
            return id;
        }
        let new = next();
        match self
            .store_id
            .compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => new,
            Err(current) => current,
        }
    }

    /// True once the message's expiry interval has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// Heap bytes held by the user properties of `p` (their wire encoding).
fn user_properties_cost(p: &PublishProperties) -> usize {
    p.user_properties.wire_len()
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
        // Decoded user properties are already a compact copy of their own.
        user_properties: p.user_properties.clone(),
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
    /// Its place in a persistent session's queue in the disk store (0: not stored).
    pub seq: u64,
    /// The shared subscription it was chosen for, if any: should this session end before it
    /// is acknowledged, it goes to another member of that group.
    pub share: Option<Arc<ShareKey>>,
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
            seq: 0,
            share: None,
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
            user_properties: [("k", "v")].into_iter().collect(),
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
                publisher: None,
            },
            Instant::now(),
        );
        assert_eq!(message.payload(), &wire[..10]);
        assert_ne!(
            message.payload().as_ptr(),
            wire.as_ptr(),
            "copied, not sliced"
        );
        assert!(message.properties.topic_alias.is_none());
        assert!(message.properties.subscription_identifiers.is_empty());
        let cost = message.cost();
        assert!(cost >= 10 + 3 + 10 + 2, "{cost}");
        assert!(cost < 1024, "{cost}");
        // A large one lives in a buffer of its own, counted in full.
        let big = Message::new(
            MessageParts {
                topic: "big",
                payload: &wire,
                qos: QoS::AtMostOnce,
                retain: false,
                properties: &PublishProperties::default(),
                origin: 0,
                publisher: None,
            },
            Instant::now(),
        );
        assert_eq!(big.payload().len(), wire.len());
        assert!(big.cost() > wire.len() && big.cost() < wire.len() + 1024);
    }
}
