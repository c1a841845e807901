//! A confirm-mode publisher channel. Every publication is `mandatory`; the channel's
//! callbacks (acks, nacks, returns, its closing) come to the owner in frame order, and
//! [`Publisher::settled`] turns them into one [`Confirm`] per publication, in the order of
//! RabbitMQ's confirms. A return precedes the ack of the same publication on the channel: it
//! is matched to that ack by the message's `message-id`, so an unroutable message is never
//! taken as confirmed. The owner gives every publication a message id of its own; two
//! publications of one id in flight at once (a message republished while its earlier copy
//! still awaits its confirm) cannot be told apart by a return, and the return goes to the
//! first of them to be confirmed.

use std::collections::VecDeque;

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicPublishArguments, Channel, ConfirmSelectArguments, ExchangeDeclareArguments,
};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use tokio::sync::mpsc;

use super::conn::Connection;
use super::{check_short, AmqpError};
use crate::config::ExchangeType;

/// A publication that RabbitMQ returned (no queue took it).
#[derive(Debug)]
pub(crate) struct Returned {
    pub(crate) message_id: Option<String>,
    pub(crate) reply_code: u16,
    pub(crate) reply_text: String,
    pub(crate) routing_key: String,
}

/// What became of one publication.
#[derive(Debug)]
pub(crate) enum Confirm {
    /// Confirmed and routed.
    Ack,
    /// Confirmed after a return: no queue took it.
    Returned(Returned),
    /// Refused by RabbitMQ.
    Nack,
}

pub(super) enum Event {
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64, multiple: bool },
    Return(Returned),
    Closed(String),
}

/// A confirm-mode channel; `T` identifies a publication to its owner.
pub(crate) struct Publisher<T> {
    channel: Channel,
    events: mpsc::UnboundedReceiver<Event>,
    /// The delivery tag of the next publication (the channel counts from 1).
    next_tag: u64,
    /// Publications awaiting their confirm, in tag order.
    pending: VecDeque<(u64, T)>,
    /// Returns whose ack has not come yet.
    returns: Vec<Returned>,
    /// An event taken by [`Publisher::ready`] (`Some(None)`: the channel ended).
    next: Option<Option<Event>>,
}

/// The exchange type's name in AMQP.
fn kind(t: ExchangeType) -> &'static str {
    match t {
        ExchangeType::Topic => "topic",
        ExchangeType::Direct => "direct",
        ExchangeType::Fanout => "fanout",
        ExchangeType::Headers => "headers",
    }
}

impl<T> Publisher<T> {
    /// Opens a channel on `conn` and selects confirms.
    pub(crate) async fn open(conn: &Connection) -> Result<Publisher<T>, AmqpError> {
        let channel = conn.inner.open_channel(None).await?;
        let (tx, events) = mpsc::unbounded_channel();
        channel.register_callback(Forward { tx }).await?;
        channel
            .confirm_select(ConfirmSelectArguments::default())
            .await?;
        Ok(Publisher {
            channel,
            events,
            next_tag: 1,
            pending: VecDeque::new(),
            returns: Vec::new(),
            next: None,
        })
    }

    /// Declares an exchange: durable, or `passive` (it must exist already).
    pub(crate) async fn declare_exchange(
        &self,
        name: &str,
        t: ExchangeType,
        passive: bool,
    ) -> Result<(), AmqpError> {
        check_short("exchange name", name)?;
        let mut args = ExchangeDeclareArguments::new(name, kind(t));
        args.durable(!passive).passive(passive);
        self.channel.exchange_declare(args).await?;
        Ok(())
    }

    /// Publishes with `mandatory`. A name or key over 255 bytes is refused here (amqprs would
    /// panic on it); an error otherwise means the channel is gone.
    pub(crate) async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: Vec<u8>,
        token: T,
    ) -> Result<(), AmqpError> {
        check_short("exchange name", exchange)?;
        check_short("routing key", routing_key)?;
        let mut args = BasicPublishArguments::new(exchange, routing_key);
        args.mandatory(true);
        self.channel.basic_publish(properties, body, args).await?;
        self.pending.push_back((self.next_tag, token));
        self.next_tag += 1;
        Ok(())
    }

    /// Waits until RabbitMQ has said something on the channel (then call
    /// [`Publisher::settled`]).
    pub(crate) async fn ready(&mut self) {
        if self.next.is_none() {
            self.next = Some(self.events.recv().await);
        }
    }

    /// Appends every publication settled so far to `out`. `message_id` gives a publication's
    /// message id (to match returns). `Err`: the channel is gone (why); what is pending will
    /// never be confirmed.
    pub(crate) fn settled<'m>(
        &mut self,
        out: &mut Vec<(T, Confirm)>,
        message_id: impl Fn(&T) -> Option<&'m str>,
    ) -> Result<(), String> {
        let mut next = match self.next.take() {
            Some(e) => e,
            None => match self.events.try_recv() {
                Ok(e) => Some(e),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(()),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            },
        };
        loop {
            match next {
                None => return Err("channel closed".into()),
                Some(Event::Closed(why)) => return Err(why),
                Some(Event::Return(r)) => self.returns.push(r),
                Some(Event::Ack { tag, multiple }) => {
                    self.take(tag, multiple, true, out, &message_id)
                }
                Some(Event::Nack { tag, multiple }) => {
                    self.take(tag, multiple, false, out, &message_id)
                }
            }
            next = match self.events.try_recv() {
                Ok(e) => Some(e),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(()),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
        }
    }

    fn take<'m>(
        &mut self,
        tag: u64,
        multiple: bool,
        ack: bool,
        out: &mut Vec<(T, Confirm)>,
        message_id: &impl Fn(&T) -> Option<&'m str>,
    ) {
        while let Some(&(t, _)) = self.pending.front() {
            if t > tag || (!multiple && t < tag) {
                break;
            }
            let Some((_, token)) = self.pending.pop_front() else {
                break;
            };
            out.push(self.confirm(token, ack, message_id));
        }
        if !multiple {
            // A single confirm out of order (RabbitMQ sends them in order; be safe).
            if let Some(i) = self.pending.iter().position(|(t, _)| *t == tag) {
                if let Some((_, token)) = self.pending.remove(i) {
                    out.push(self.confirm(token, ack, message_id));
                }
            }
        }
    }

    fn confirm<'m>(
        &mut self,
        token: T,
        ack: bool,
        message_id: &impl Fn(&T) -> Option<&'m str>,
    ) -> (T, Confirm) {
        let returned = if self.returns.is_empty() {
            None
        } else {
            let id = message_id(&token);
            self.returns
                .iter()
                .position(|r| r.message_id.as_deref() == id)
                .map(|i| self.returns.remove(i))
        };
        let c = match (ack, returned) {
            (true, Some(r)) => Confirm::Returned(r),
            (true, None) => Confirm::Ack,
            (false, _) => Confirm::Nack,
        };
        (token, c)
    }

    /// Closes the channel (bounded by the caller).
    pub(crate) async fn close(self) {
        let _ = self.channel.close().await;
    }
}

/// Sends the channel's callbacks to its owner. Dropped when the channel ends (its sender
/// with it, which the owner sees).
pub(super) struct Forward {
    pub(super) tx: mpsc::UnboundedSender<Event>,
}

#[async_trait::async_trait]
impl ChannelCallback for Forward {
    async fn close(
        &mut self,
        _c: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        let _ = self.tx.send(Event::Closed(format!(
            "RabbitMQ closed the channel: {} {}",
            close.reply_code(),
            close.reply_text()
        )));
        Ok(())
    }

    async fn cancel(&mut self, _c: &Channel, _cancel: Cancel) -> Result<(), amqprs::error::Error> {
        let _ = self
            .tx
            .send(Event::Closed("RabbitMQ cancelled the consumer".into()));
        Ok(())
    }

    async fn flow(&mut self, _c: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _c: &Channel, ack: Ack) {
        let _ = self.tx.send(Event::Ack {
            tag: ack.delivery_tag(),
            multiple: ack.mutiple(),
        });
    }

    async fn publish_nack(&mut self, _c: &Channel, nack: Nack) {
        let _ = self.tx.send(Event::Nack {
            tag: nack.delivery_tag(),
            multiple: nack.multiple(),
        });
    }

    async fn publish_return(
        &mut self,
        _c: &Channel,
        ret: Return,
        properties: BasicProperties,
        _content: Vec<u8>,
    ) {
        let _ = self.tx.send(Event::Return(Returned {
            message_id: properties.message_id().cloned(),
            reply_code: ret.reply_code(),
            reply_text: ret.reply_text().clone(),
            routing_key: ret.routing_key().clone(),
        }));
    }
}
