//! A consuming channel: the queue declared (durable, when missing) and bound, the prefetch
//! set, deliveries with manual acknowledgement. The channel ends, and [`Consumer::next`]
//! returns `None`, when RabbitMQ closes it, cancels the consumer or the connection goes.

use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicNackArguments,
    BasicQosArguments, BasicRejectArguments, Channel, ConsumerMessage, QueueBindArguments,
    QueueDeclareArguments,
};
use amqprs::BasicProperties;
use tokio::sync::mpsc;

use super::conn::Connection;
use super::publisher::{Event, Forward};
use super::{check_short, AmqpError};

/// One delivery.
pub(crate) struct Delivery {
    pub(crate) routing_key: String,
    pub(crate) properties: BasicProperties,
    pub(crate) body: Vec<u8>,
    pub(crate) acker: Acker,
}

/// Settles one delivery on its channel.
pub(crate) struct Acker {
    channel: Channel,
    tag: u64,
}

impl Acker {
    /// Acknowledges the delivery.
    pub(crate) async fn ack(self) -> Result<(), AmqpError> {
        let args = BasicAckArguments::new(self.tag, false);
        Ok(self.channel.basic_ack(args).await?)
    }

    /// Gives it back: to the queue (`requeue`) or to its dead-letter exchange.
    pub(crate) async fn nack(self, requeue: bool) -> Result<(), AmqpError> {
        let args = BasicNackArguments::new(self.tag, false, requeue);
        Ok(self.channel.basic_nack(args).await?)
    }

    /// Rejects it (to the dead-letter exchange when not `requeue`).
    pub(crate) async fn reject(self, requeue: bool) -> Result<(), AmqpError> {
        let args = BasicRejectArguments::new(self.tag, requeue);
        Ok(self.channel.basic_reject(args).await?)
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
    deliveries: mpsc::UnboundedReceiver<ConsumerMessage>,
    events: mpsc::UnboundedReceiver<Event>,
}

async fn channel(
    conn: &Connection,
) -> Result<(Channel, mpsc::UnboundedReceiver<Event>), AmqpError> {
    let ch = conn.inner.open_channel(None).await?;
    let (tx, events) = mpsc::unbounded_channel();
    ch.register_callback(Forward { tx }).await?;
    Ok((ch, events))
}

/// Declares (when missing) and binds the queue, sets the prefetch and starts consuming.
pub(crate) async fn consume(conn: &Connection, s: &ConsumeSpec<'_>) -> Result<Consumer, AmqpError> {
    check_short("queue name", s.queue)?;
    check_short("exchange name", s.exchange)?;
    check_short("consumer tag", s.consumer_tag)?;
    for b in s.bindings {
        check_short("binding key", b)?;
    }
    let (mut ch, mut events) = channel(conn).await?;
    let mut passive = QueueDeclareArguments::new(s.queue);
    passive.passive(true);
    if ch.queue_declare(passive).await.is_err() {
        // Missing (the failed passive declare closed that channel): declare it durable.
        (ch, events) = channel(conn).await?;
        ch.queue_declare(QueueDeclareArguments::durable_client_named(s.queue))
            .await?;
    }
    for b in s.bindings {
        ch.queue_bind(QueueBindArguments::new(s.queue, s.exchange, b))
            .await?;
    }
    ch.basic_qos(BasicQosArguments::new(0, s.prefetch, false))
        .await?;
    let mut args = BasicConsumeArguments::new(s.queue, s.consumer_tag);
    args.manual_ack(true);
    let (tag, deliveries) = ch.basic_consume_rx(args).await?;
    Ok(Consumer {
        channel: ch,
        tag,
        deliveries,
        events,
    })
}

impl Consumer {
    /// The next delivery; `None` when the channel or the consumer ended.
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        loop {
            tokio::select! {
                m = self.deliveries.recv() => {
                    let m = m?;
                    let (Some(d), Some(properties), Some(body)) = (m.deliver, m.basic_properties, m.content) else {
                        continue;
                    };
                    return Some(Delivery {
                        routing_key: d.routing_key().clone(),
                        properties,
                        body,
                        acker: Acker { channel: self.channel.clone(), tag: d.delivery_tag() },
                    });
                }
                e = self.events.recv() => match e {
                    Some(Event::Closed(why)) => {
                        tracing::debug!(reason = %why, "bridge: consumer channel ended");
                        return None;
                    }
                    Some(_) => {}
                    None => return None,
                }
            }
        }
    }

    /// Stops deliveries (what is unacked stays with RabbitMQ).
    pub(crate) async fn cancel(&self) {
        let _ = self
            .channel
            .basic_cancel(BasicCancelArguments::new(&self.tag))
            .await;
    }

    /// Closes the channel: unacked deliveries go back to the queue.
    pub(crate) async fn close(self) {
        let _ = self.channel.close().await;
    }
}
