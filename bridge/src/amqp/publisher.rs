//! A confirm-mode publisher channel. Every publication is `mandatory`. Publications are
//! encoded into the publisher's own batch and handed to the connection's writer with one lock
//! per batch ([`Publisher::flush`], also done by [`Publisher::ready`]). The channel's events
//! (acks, nacks, returns, its end) come in frame order, and [`Publisher::settled`] turns them
//! into one [`Confirm`] per publication, in the order of RabbitMQ's confirms. A return precedes
//! the ack of the same publication on the channel: it is matched to that ack by the message's
//! `message-id`, so an unroutable message is never taken as confirmed. The owner gives every
//! publication a message id of its own; two publications of one id in flight at once (a
//! message republished while its earlier copy still awaits its confirm) cannot be told apart
//! by a return, and the return goes to the first of them to be confirmed.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::channel::Channel;
use super::conn::{Connection, Event};
use super::wire::method::{self, Method};
use super::wire::props::BasicProperties;
use super::AmqpError;
use crate::config::ExchangeType;

/// A batch past this size is handed to the writer at once.
const BATCH: usize = 64 * 1024;

/// A publication that RabbitMQ returned (no queue took it).
#[derive(Debug)]
pub(crate) struct Returned {
    pub(crate) message_id: Option<Bytes>,
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

/// A confirm-mode channel; `T` identifies a publication to its owner.
pub(crate) struct Publisher<T> {
    channel: Channel,
    /// Encoded publications not yet handed to the writer.
    batch: BytesMut,
    /// The delivery tag of the next publication (the channel counts from 1).
    next_tag: u64,
    /// Publications awaiting their confirm, in tag order.
    pending: VecDeque<(u64, T)>,
    /// Returns whose ack has not come yet.
    returns: Vec<Returned>,
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
        let mut channel = Channel::open(conn).await?;
        channel
            .call(
                |o, id| {
                    method::confirm_select(o, id);
                    Ok(())
                },
                |m| matches!(m, Method::ConfirmSelectOk),
            )
            .await?;
        Ok(Publisher {
            channel,
            batch: BytesMut::with_capacity(16 * 1024),
            next_tag: 1,
            pending: VecDeque::new(),
            returns: Vec::new(),
        })
    }

    /// Declares an exchange: durable, or `passive` (it must exist already).
    pub(crate) async fn declare_exchange(
        &mut self,
        name: &str,
        t: ExchangeType,
        passive: bool,
    ) -> Result<(), AmqpError> {
        self.channel
            .call(
                |o, id| method::exchange_declare(o, id, name, kind(t), passive, !passive),
                |m| matches!(m, Method::ExchangeDeclareOk),
            )
            .await
    }

    /// Publishes with `mandatory` (queued in the batch). [`AmqpError::Unpublishable`] (a name
    /// over 255 bytes, headers over a frame): nothing was sent and the channel is fine;
    /// another error means the channel is gone.
    pub(crate) fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        properties: &BasicProperties,
        body: &[u8],
        token: T,
    ) -> Result<(), AmqpError> {
        method::publish(
            &mut self.batch,
            self.channel.id,
            exchange.as_bytes(),
            routing_key.as_bytes(),
            properties,
            body,
            self.channel.shared.frame_max,
        )?;
        self.pending.push_back((self.next_tag, token));
        self.next_tag += 1;
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the batch to the connection (written at once when its writer is idle).
    pub(crate) fn flush(&mut self) -> Result<(), AmqpError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let c = &self.channel;
        c.shared.send_batch(c.id, c.serial, &mut self.batch)
    }

    /// Sends the batch, then waits until RabbitMQ has said something on the channel (then
    /// call [`Publisher::settled`]).
    pub(crate) async fn ready(&mut self) {
        if self.flush().is_err() {
            // The channel is gone: `settled` will say so.
            return;
        }
        let e = self.channel.recv().await;
        self.channel.unread(e);
    }

    /// Appends every publication settled so far to `out`. `message_id` gives a publication's
    /// message id (to match returns). `Err`: the channel is gone (why); what is pending will
    /// never be confirmed.
    pub(crate) fn settled<'m>(
        &mut self,
        out: &mut Vec<(T, Confirm)>,
        message_id: impl Fn(&T) -> Option<&'m [u8]>,
    ) -> Result<(), String> {
        while let Some(e) = self.channel.try_recv() {
            match e {
                Event::Closed(why) => return Err(why),
                Event::Return {
                    code,
                    text,
                    routing_key,
                    props,
                } => {
                    // A return is for a publication still awaiting its confirm: more returns
                    // than those (a broken or hostile server) are not kept.
                    if self.returns.len() < self.pending.len() {
                        self.returns.push(Returned {
                            message_id: props.and_then(|p| p.message_id),
                            reply_code: code,
                            reply_text: String::from_utf8_lossy(&text).into_owned(),
                            routing_key: String::from_utf8_lossy(&routing_key).into_owned(),
                        });
                    }
                }
                // Multiple with tag 0: everything outstanding.
                Event::Method(Method::BasicAck { tag, multiple }) => {
                    let tag = if multiple && tag == 0 { u64::MAX } else { tag };
                    self.take(tag, multiple, true, out, &message_id)
                }
                Event::Method(Method::BasicNack { tag, multiple }) => {
                    let tag = if multiple && tag == 0 { u64::MAX } else { tag };
                    self.take(tag, multiple, false, out, &message_id)
                }
                Event::Method(_) | Event::Deliver { .. } => {}
            }
        }
        Ok(())
    }

    /// Settles the publications `tag` confirms. A return goes to the newest covered
    /// publication with its message id: should two copies of a message be confirmed by one ack
    /// (a republished message whose first copy was still unconfirmed), the error leans to
    /// publishing again, never to taking a returned message as routed.
    fn take<'m>(
        &mut self,
        tag: u64,
        multiple: bool,
        ack: bool,
        out: &mut Vec<(T, Confirm)>,
        message_id: &impl Fn(&T) -> Option<&'m [u8]>,
    ) {
        let covered = if multiple {
            self.pending.iter().take_while(|(t, _)| *t <= tag).count()
        } else {
            match self.pending.iter().position(|(t, _)| *t == tag) {
                // RabbitMQ confirms in order; a single confirm out of order is moved first.
                Some(i) => {
                    if let Some(e) = self.pending.remove(i) {
                        self.pending.push_front(e);
                    }
                    1
                }
                None => 0,
            }
        };
        let start = out.len();
        let mut returned: Vec<Option<Returned>> = Vec::new();
        if ack && !self.returns.is_empty() {
            returned.resize_with(covered, || None);
            for i in (0..covered).rev() {
                let id = self.pending.get(i).and_then(|(_, t)| message_id(t));
                if let Some(r) = self
                    .returns
                    .iter()
                    .position(|r| r.message_id.as_deref() == id)
                {
                    returned[i] = Some(self.returns.remove(r));
                }
            }
        }
        for i in 0..covered {
            let Some((_, token)) = self.pending.pop_front() else {
                break;
            };
            let c = match (ack, returned.get_mut(i).and_then(Option::take)) {
                (true, Some(r)) => Confirm::Returned(r),
                (true, None) => Confirm::Ack,
                (false, _) => Confirm::Nack,
            };
            out.push((token, c));
        }
        debug_assert!(out.len() - start <= covered);
        if self.pending.is_empty() {
            // A return no publication claimed (one whose properties could not be read).
            self.returns.clear();
        }
    }

    /// Closes the channel (bounded by the caller). What was not handed over is dropped: the
    /// owner publishes it again on its next channel.
    pub(crate) async fn close(mut self) {
        self.batch.clear();
        self.channel.close().await;
    }
}
