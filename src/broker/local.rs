//! In-process clients: sessions without a socket, for the parts of Warren that talk MQTT from
//! inside the process (the AMQP bridge; tests of the acknowledgement gate).
//!
//! A [`LocalClient`] subscribes and publishes through the same [`Core`] calls as a socket
//! connection. Its mailbox may be an *owner* mailbox: then every QoS 1/2 delivery it receives
//! carries a [`crate::gate::Ticket`], and the publisher of that message is answered only once
//! the client completes the ticket (the bridge does so when RabbitMQ confirms). Its publishes go
//! through the gate too: [`LocalClient::publish`] resolves once every owner of the message holds
//! it. A local client lives outside the client-id registry (no socket client can take it over)
//! and ends its session when dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::core::{Core, SubscribeRefusal};
use crate::gate::{GateWaker, TicketSource, Verdict};
use crate::protocol::SubscriptionOptions;
use crate::session::mailbox::{Delivery, Mailbox, Message, MessageParts};
use crate::session::SessionState;

/// How an in-process publish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Every session it matched holds it (as the configuration promises).
    Accepted,
    /// No subscription matched it.
    NoMatchingSubscribers,
}

/// Why an in-process publish was not owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// An owner refused it, with this MQTT 5 reason code.
    #[error("refused by an owner (reason 0x{0:02x})")]
    Refused(u8),
    /// An owner did not answer within `ack_timeout_ms`.
    #[error("an owner did not answer in time")]
    Timeout,
}

/// A client of the broker inside the process.
pub struct LocalClient {
    core: Arc<Core>,
    session: Mutex<SessionState>,
    mailbox: Arc<Mailbox>,
    /// Deliveries taken from the mailbox but not handed out yet.
    batch: Mutex<VecDeque<Delivery>>,
}

impl std::fmt::Debug for LocalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClient")
            .field("name", &self.session.lock().client_id)
            .finish()
    }
}

impl LocalClient {
    /// A new client named `name` (for logs); with `owner`, its QoS 1/2 deliveries carry the
    /// tickets their publishers wait for.
    pub fn new(core: &Arc<Core>, name: &str, owner: bool) -> LocalClient {
        let mailbox = if owner {
            core.new_owner_mailbox()
        } else {
            core.new_mailbox()
        };
        Self::with_mailbox(core, name, mailbox)
    }

    /// A new owner client whose No Local identity is `origin`: clients of one component share
    /// it, so that with No Local none of them receives what another one published.
    pub fn with_origin(core: &Arc<Core>, name: &str, origin: u64) -> LocalClient {
        Self::with_mailbox(core, name, core.new_owner_mailbox_with_origin(origin))
    }

    fn with_mailbox(core: &Arc<Core>, name: &str, mailbox: Arc<Mailbox>) -> LocalClient {
        mailbox.set_online(true);
        LocalClient {
            core: core.clone(),
            session: Mutex::new(SessionState::new(name.into(), mailbox.clone())),
            mailbox,
            batch: Mutex::new(VecDeque::new()),
        }
    }

    /// The id No Local compares with: messages this client publishes carry it.
    pub fn origin(&self) -> u64 {
        self.mailbox.origin()
    }

    /// Subscribes to `filter` (no retained messages are sent to an in-process client).
    pub fn subscribe(
        &self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<bool, SubscribeRefusal> {
        self.core
            .subscribe(&mut self.session.lock(), filter, options, None)
    }

    /// Removes the subscription to `filter`; true if it existed.
    pub fn unsubscribe(&self, filter: &str) -> bool {
        self.core.unsubscribe(&mut self.session.lock(), filter)
    }

    /// The next delivery; `None` once the broker has ended this client's session.
    pub async fn recv(&self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.try_recv() {
                return Some(delivery);
            }
            if self.mailbox.is_closed() {
                return None;
            }
            let notified = self.mailbox.notified();
            // Checked again after registering interest, so no push is missed.
            if let Some(delivery) = self.try_recv() {
                return Some(delivery);
            }
            tokio::select! {
                _ = notified => {}
                _ = self.core.shutdown_token().cancelled() => return self.try_recv(),
            }
        }
    }

    /// Waits until a delivery may be waiting (then [`LocalClient::try_recv`]); false once the
    /// session has ended or the broker shuts down with nothing left.
    pub async fn ready(&self) -> bool {
        loop {
            if !self.batch.lock().is_empty() || !self.mailbox.is_empty() {
                return true;
            }
            if self.mailbox.is_closed() {
                return false;
            }
            let notified = self.mailbox.notified();
            tokio::select! {
                _ = notified => {}
                _ = self.core.shutdown_token().cancelled() => {
                    return !self.batch.lock().is_empty() || !self.mailbox.is_empty();
                }
            }
        }
    }

    /// A delivery if one is waiting.
    pub fn try_recv(&self) -> Option<Delivery> {
        let mut batch = self.batch.lock();
        if batch.is_empty() {
            self.mailbox.pop_into(&mut batch, 64, usize::MAX);
        }
        batch.pop_front()
    }

    /// Publishes `parts` as this client; resolves once every owner of the message holds it
    /// (at once when memory alone owns it), or fails if one refuses it or does not answer
    /// within `ack_timeout_ms`.
    pub async fn publish(&self, parts: MessageParts<'_>) -> Result<Published, PublishError> {
        let parts = MessageParts {
            origin: self.origin(),
            publisher: None,
            ..parts
        };
        let now = Instant::now();
        let message = Arc::new(Message::new(parts, now));
        let notify = Arc::new(Notify::new());
        let waker: Arc<dyn GateWaker> = notify.clone();
        let mut tickets = TicketSource::new(&waker, self.core.clock().ms_at(now));
        let matched = self.core.route(message, &mut tickets);
        let outcome = if matched == 0 {
            Published::NoMatchingSubscribers
        } else {
            Published::Accepted
        };
        let Some(pending) = tickets.finish() else {
            return Ok(outcome);
        };
        let deadline = Duration::from_millis(self.core.config().mqtt.ack_timeout_ms);
        let wait = async {
            loop {
                let notified = notify.notified();
                if let Some(verdict) = pending.verdict() {
                    return verdict;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(Verdict::Owned) => Ok(outcome),
            Ok(Verdict::Refused(code)) => Err(PublishError::Refused(code)),
            Err(_) => Err(PublishError::Timeout),
        }
    }
}

impl Drop for LocalClient {
    fn drop(&mut self) {
        let placeholder = SessionState::new("".into(), self.mailbox.clone());
        let session = std::mem::replace(&mut *self.session.lock(), placeholder);
        self.core.end_session(session);
        // Undelivered deliveries (and their tickets, which refuse) go with the batch.
        self.batch.lock().clear();
    }
}
