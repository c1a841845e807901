//! One channel on a connection: its id, the events the reader hands it, synchronous calls
//! (a method and its `-ok`), and its closing. A channel dropped without [`Channel::close`]
//! is closed on the wire all the same; its id is reused only after RabbitMQ's `close-ok`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::mpsc;

use super::conn::{Connection, Event, Out, Shared};
use super::wire::method::{self, Method};
use super::wire::TooLong;
use super::AmqpError;

pub(super) struct Channel {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u16,
    pub(super) serial: u32,
    events: mpsc::UnboundedReceiver<Event>,
    /// Events taken while waiting for a reply, or by a readiness check.
    backlog: VecDeque<Event>,
    /// RabbitMQ or the connection ended it (nothing more may be sent on its id).
    ended: bool,
}

impl Channel {
    /// Opens a channel.
    pub(super) async fn open(conn: &Connection) -> Result<Channel, AmqpError> {
        let shared = conn.shared().clone();
        let (tx, events) = mpsc::unbounded_channel();
        let (id, serial) = shared.new_channel(tx)?;
        let mut ch = Channel {
            shared,
            id,
            serial,
            events,
            backlog: VecDeque::new(),
            ended: false,
        };
        ch.shared.write(|o| {
            o.live[usize::from(id)] = serial;
            method::channel_open(&mut o.buf, id);
        })?;
        ch.wait(|m| matches!(m, Method::ChannelOpenOk)).await?;
        Ok(ch)
    }

    /// Writes on this channel while it is the id's owner.
    pub(super) fn send(
        &self,
        f: impl FnOnce(&mut BytesMut, u16) -> Result<(), TooLong>,
    ) -> Result<(), AmqpError> {
        if self.ended {
            return Err(AmqpError::Gone("channel closed".into()));
        }
        send_on(&self.shared, self.id, self.serial, f)
    }

    /// Sends a method and waits for its reply.
    pub(super) async fn call(
        &mut self,
        f: impl FnOnce(&mut BytesMut, u16) -> Result<(), TooLong>,
        reply: fn(&Method) -> bool,
    ) -> Result<(), AmqpError> {
        self.send(f)?;
        self.wait(reply).await
    }

    /// Waits for a reply; other events are kept for [`Channel::recv`].
    async fn wait(&mut self, reply: fn(&Method) -> bool) -> Result<(), AmqpError> {
        loop {
            match self.events.recv().await {
                Some(Event::Method(m)) if reply(&m) => return Ok(()),
                Some(Event::Closed(why)) => {
                    self.ended = true;
                    return Err(AmqpError::Gone(why));
                }
                Some(e) => self.backlog.push_back(e),
                None => {
                    self.ended = true;
                    return Err(AmqpError::Gone("connection closed".into()));
                }
            }
        }
    }

    /// The next event; `Closed` once the channel ended (then always `Closed`).
    pub(super) async fn recv(&mut self) -> Event {
        if let Some(e) = self.backlog.pop_front() {
            return self.seen(e);
        }
        let e = self
            .events
            .recv()
            .await
            .unwrap_or_else(|| Event::Closed("connection closed".into()));
        self.seen(e)
    }

    /// An event that is already there, if any.
    pub(super) fn try_recv(&mut self) -> Option<Event> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(self.seen(e));
        }
        match self.events.try_recv() {
            Ok(e) => Some(self.seen(e)),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                Some(self.seen(Event::Closed("connection closed".into())))
            }
        }
    }

    /// Puts an event back in front.
    pub(super) fn unread(&mut self, e: Event) {
        self.backlog.push_front(e);
    }

    fn seen(&mut self, e: Event) -> Event {
        if matches!(e, Event::Closed(_)) {
            self.ended = true;
        }
        e
    }

    /// Closes the channel and waits for RabbitMQ's answer (bounded by the caller).
    pub(super) async fn close(mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.shared.close_channel(self.id, self.serial).is_err() {
            return;
        }
        while !matches!(self.events.recv().await, Some(Event::Closed(_)) | None) {}
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.shared.close_channel(self.id, self.serial);
        }
    }
}

/// Writes on channel `id` if `serial` still owns it.
pub(super) fn send_on(
    shared: &Shared,
    id: u16,
    serial: u32,
    f: impl FnOnce(&mut BytesMut, u16) -> Result<(), TooLong>,
) -> Result<(), AmqpError> {
    shared
        .write(|o: &mut Out| {
            if o.live[usize::from(id)] != serial {
                return Err(AmqpError::Gone("channel closed".into()));
            }
            f(&mut o.buf, id).map_err(AmqpError::from)
        })
        .and_then(|r| r)
}
