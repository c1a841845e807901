//! A consuming channel: the queue declared (durable, when missing) and bound, the prefetch
//! set, deliveries with manual acknowledgement. The channel ends, and [`Consumer::next`]
//! returns `None`, when RabbitMQ closes it, cancels the consumer or the connection goes.

use std::sync::Arc;

use bytes::Bytes;

use super::channel::{send_on, Channel};
use super::conn::{Connection, Event, Shared};
use super::wire::method::{self, Method};
use super::wire::props::BasicProperties;
use super::wire::WireError;
use super::AmqpError;

/// One delivery.
pub(crate) struct Delivery {
    /// Bytes: a routing key need not be UTF-8.
    pub(crate) routing_key: Bytes,
    /// `Err`: the content header could not be read (a value nested too deep, a bad length).
    pub(crate) properties: Result<BasicProperties, WireError>,
    pub(crate) body: Bytes,
    pub(crate) acker: Acker,
}

/// Settles one delivery on its channel (a no-op once that channel has ended: RabbitMQ has
/// requeued the delivery already).
pub(crate) struct Acker {
    shared: Arc<Shared>,
    channel: u16,
    serial: u32,
    tag: u64,
}

impl Acker {
    fn send(self, f: impl FnOnce(&mut bytes::BytesMut, u16, u64)) -> Result<(), AmqpError> {
        let tag = self.tag;
        send_on(&self.shared, self.channel, self.serial, |o, id| {
            f(o, id, tag);
            Ok(())
        })
    }

    /// Acknowledges the delivery.
    pub(crate) fn ack(self) -> Result<(), AmqpError> {
        self.send(method::basic_ack)
    }

    /// Gives it back: to the queue (`requeue`) or to its dead-letter exchange.
    pub(crate) fn nack(self, requeue: bool) -> Result<(), AmqpError> {
        self.send(|o, id, tag| method::basic_nack(o, id, tag, requeue))
    }

    /// Rejects it (to the dead-letter exchange when not `requeue`).
    pub(crate) fn reject(self, requeue: bool) -> Result<(), AmqpError> {
        self.send(|o, id, tag| method::basic_reject(o, id, tag, requeue))
    }
}

/// What [`consume`] sets up.
pub(crate) struct ConsumeSpec<'a> {
    pub(crate) queue: &'a str,
    pub(crate) exchange: &'a str,
    pub(crate) bindings: &'a [String],
    pub(crate) prefetch: u16,
    pub(crate) consumer_tag: &'a str,
}

/// A consumer with manual acks.
pub(crate) struct Consumer {
    channel: Channel,
    tag: String,
}

/// Declares (when missing) and binds the queue, sets the prefetch and starts consuming.
pub(crate) async fn consume(conn: &Connection, s: &ConsumeSpec<'_>) -> Result<Consumer, AmqpError> {
    let mut ch = Channel::open(conn).await?;
    let declare_ok = |m: &Method| matches!(m, Method::QueueDeclareOk);
    let passive = ch
        .call(
            |o, id| method::queue_declare(o, id, s.queue, true, false),
            declare_ok,
        )
        .await;
    if let Err(e) = passive {
        if matches!(e, AmqpError::TooLong(_)) {
            return Err(e);
        }
        // Missing (the failed passive declare closed that channel): declare it durable.
        ch = Channel::open(conn).await?;
        ch.call(
            |o, id| method::queue_declare(o, id, s.queue, false, true),
            declare_ok,
        )
        .await?;
    }
    for b in s.bindings {
        ch.call(
            |o, id| method::queue_bind(o, id, s.queue, s.exchange, b),
            |m| matches!(m, Method::QueueBindOk),
        )
        .await?;
    }
    ch.call(
        |o, id| {
            method::basic_qos(o, id, s.prefetch);
            Ok(())
        },
        |m| matches!(m, Method::BasicQosOk),
    )
    .await?;
    ch.call(
        |o, id| method::basic_consume(o, id, s.queue, s.consumer_tag),
        |m| matches!(m, Method::BasicConsumeOk),
    )
    .await?;
    Ok(Consumer {
        channel: ch,
        tag: s.consumer_tag.to_string(),
    })
}

impl Consumer {
    /// The next delivery; `None` when the channel or the consumer ended.
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        loop {
            match self.channel.recv().await {
                Event::Deliver {
                    tag,
                    routing_key,
                    props,
                    body,
                    ..
                } => {
                    return Some(Delivery {
                        routing_key,
                        properties: props,
                        body,
                        acker: Acker {
                            shared: self.channel.shared.clone(),
                            channel: self.channel.id,
                            serial: self.channel.serial,
                            tag,
                        },
                    })
                }
                Event::Closed(why) => {
                    tracing::debug!(reason = %why, "bridge: consumer channel ended");
                    return None;
                }
                Event::Method(Method::BasicCancel) => {
                    tracing::debug!("bridge: RabbitMQ cancelled the consumer");
                    return None;
                }
                Event::Method(_) | Event::Return { .. } => {}
            }
        }
    }

    /// Stops deliveries (what is unacked stays with RabbitMQ).
    pub(crate) async fn cancel(&mut self) {
        let tag = &self.tag;
        let _ = self
            .channel
            .call(
                |o, id| method::basic_cancel(o, id, tag),
                |m| matches!(m, Method::BasicCancelOk),
            )
            .await;
    }

    /// Closes the channel: unacked deliveries go back to the queue.
    pub(crate) async fn close(self) {
        self.channel.close().await;
    }
}
