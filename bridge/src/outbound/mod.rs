//! One outbound (MQTT → AMQP) rule: a task that subscribes to the rule's filter on the MQTT
//! side, admits each delivery per the rule's `ack` mode ([`admit`]), publishes in order with
//! `mandatory` and publisher confirms on its own channel ([`amqp`]), handles confirms, nacks
//! and returns ([`settle`]), and completes the MQTT-side acks in order ([`outbox`]).
//!
//! While there is no channel nothing is published and, for `confirmed`, nothing completes: the
//! window fills and the task stops taking deliveries, which back-pressures the MQTT side.

mod admit;
mod amqp;
pub(crate) mod outbox;
mod settle;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::amqp::{BasicProperties, Confirm, Publisher};
use crate::config::{AckMode, ExchangeType, HeaderStyle, Unroutable};
use crate::link::{next_conn, ConnWatch};
use crate::mapping::Mapping;
use crate::metrics::{add, set, OutboundGauges, OutboundStats, Registry};
use crate::pace::{Backoff, LogGate};
use crate::side::{Ack, BridgeMessage, Delivery, Filter, MqttSide, Subscription};
use crate::spool::SpoolStore;
use outbox::{Outbox, Target};

/// How long opening a channel and declaring may take (RabbitMQ blocking the connection, on an
/// alarm, would leave a declare unanswered).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// What an outbound rule does, resolved from its configuration.
pub(crate) struct Spec {
    pub(crate) name: String,
    /// Index into the registry's outbound rules.
    pub(crate) index: usize,
    pub(crate) filter: Filter,
    pub(crate) exchange: String,
    pub(crate) exchange_type: ExchangeType,
    pub(crate) ack: AckMode,
    pub(crate) unroutable: Unroutable,
    pub(crate) dead_letter_topic: Option<String>,
    pub(crate) dead_letter_exchange: Option<String>,
    pub(crate) mapping: Mapping,
    /// Maps the response topic to `reply-to`.
    pub(crate) reply: Mapping,
    pub(crate) max_in_flight: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) headers: HeaderStyle,
    pub(crate) buffer: usize,
}

/// What every rule task shares.
pub(crate) struct Env {
    pub(crate) conns: ConnWatch,
    pub(crate) reg: Arc<Registry>,
    pub(crate) spool: Option<(Arc<dyn SpoolStore>, u64, u64)>,
    pub(crate) cancel: CancellationToken,
    pub(crate) retry: (Duration, Duration),
    pub(crate) log_interval: Duration,
    pub(crate) grace: Duration,
    /// Prefix of AMQP message ids (unique per process start).
    pub(crate) id_prefix: String,
    /// RabbitMQ's `max_message_size` once a refusal told it (`usize::MAX` until then): a limit
    /// of the node, so every rule on the connection keeps to it, not only the one refused.
    pub(crate) learned_max_message: std::sync::atomic::AtomicUsize,
}

/// A message in the rule's window. Its AMQP properties are built when it is published (no
/// copy kept), from the message and what was fixed at admission.
pub(crate) struct Item {
    /// At most 255 bytes (checked at admission).
    pub(crate) routing_key: String,
    pub(crate) message: BridgeMessage,
    /// Shared (not copied) by every publication of the item, as `message_id`.
    pub(crate) client_id: Option<Bytes>,
    pub(crate) message_id: Bytes,
    pub(crate) timestamp: u64,
    /// The MQTT side's ack, `confirmed` mode only (completed when popped).
    pub(crate) ack: Option<Ack>,
    /// Bytes counted against the spool (`spooled` mode).
    pub(crate) spool_bytes: u64,
}

/// A publication: sequence number, attempt, where it went.
pub(crate) type Token = (u64, u32, Target);
type DeadLetterFuture = BoxFuture<'static, (u64, bool)>;

/// The task's state.
pub(crate) struct Rule<S: MqttSide> {
    spec: Spec,
    side: Arc<S>,
    env: Arc<Env>,
    outbox: Outbox<Item>,
    /// The next sequence number (memory modes) or spool id (spooled).
    next_seq: u64,
    /// Spooled: every id up to this one is in the outbox or removed.
    loaded_through: u64,
    spool_messages: u64,
    spool_bytes: u64,
    /// The channel and the connection generation it is on.
    channel: Option<(u64, Publisher<Token>)>,
    channel_retry_at: Option<Instant>,
    channel_backoff: Backoff,
    /// No publishing before this (after a nack or a `retry` return).
    hold_until: Option<Instant>,
    retry_backoff: Backoff,
    /// Confirms taken from the channel, handled after the wait (kept for its allocation).
    settled: Vec<(Token, Confirm)>,
    dead_letters: FuturesUnordered<DeadLetterFuture>,
    /// A QoS 1/2 delivery waiting for room.
    held: Option<Delivery>,
    /// Returned messages to publish to the dead-letter exchange.
    pending_dead_letters: Vec<u64>,
    returns_log: LogGate,
    drops_log: LogGate,
    errors_log: LogGate,
}

impl<S: MqttSide> Rule<S> {
    pub(crate) fn new(spec: Spec, side: Arc<S>, env: Arc<Env>) -> Rule<S> {
        let (min, max) = env.retry;
        let li = env.log_interval;
        Rule {
            spec,
            side,
            outbox: Outbox::new(),
            next_seq: 1,
            loaded_through: 0,
            spool_messages: 0,
            spool_bytes: 0,
            channel: None,
            channel_retry_at: None,
            channel_backoff: Backoff::new(min, max),
            hold_until: None,
            retry_backoff: Backoff::new(min, max),
            settled: Vec::new(),
            dead_letters: FuturesUnordered::new(),
            held: None,
            pending_dead_letters: Vec::new(),
            returns_log: LogGate::new(li),
            drops_log: LogGate::new(li),
            errors_log: LogGate::new(li),
            env,
        }
    }

    /// The largest payload the rule publishes: its own limit, or RabbitMQ's if a refusal told
    /// a lower one.
    fn max_message_bytes(&self) -> usize {
        let learned = self.env.learned_max_message.load(Ordering::Relaxed);
        self.spec.max_message_bytes.min(learned)
    }

    fn stats(&self) -> &OutboundStats {
        &self.env.reg.outbound[self.spec.index].1
    }

    fn gauges(&self) -> &OutboundGauges {
        &self.env.reg.outbound[self.spec.index].2
    }

    /// Runs the rule until the bridge shuts down.
    pub(crate) async fn run(mut self) {
        if let Err(e) = self.open_spool().await {
            tracing::error!(rule = %self.spec.name, error = %e, "bridge: cannot read the spool; rule stopped");
            return;
        }
        let Some(mut sub) = self.subscribe().await else {
            return;
        };
        set(&self.gauges().subscribed, 1);
        let mut conns = self.env.conns.clone();
        let cancel = self.env.cancel.clone();
        let mut closing: Option<tokio::time::Instant> = None;
        loop {
            self.step().await;
            if let Some(deadline) = closing {
                if self.drained() || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            let room = closing.is_none() && self.held.is_none();
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let hold = self.hold_until.map(tokio::time::Instant::from_std);
            let chan_at = self.channel_retry_at.map(tokio::time::Instant::from_std);
            let has_channel = self.channel.is_some();
            tokio::select! {
                _ = cancel.cancelled(), if closing.is_none() => {
                    closing = Some(tokio::time::Instant::now() + self.env.grace);
                    self.held = None;
                }
                _ = tokio::time::sleep_until(closing.unwrap_or(far)), if closing.is_some() => {}
                d = sub.recv(), if room => match d {
                    Some(d) => self.admit(d, &mut sub).await,
                    None => {
                        tracing::warn!(rule = %self.spec.name, "bridge: the MQTT side closed the subscription");
                        closing = Some(tokio::time::Instant::now() + self.env.grace);
                    }
                },
                _ = confirms(&mut self.channel), if has_channel => {
                    // Confirms come in bursts: take every ready one.
                    let mut settled = std::mem::take(&mut self.settled);
                    let outbox = &self.outbox;
                    let r = match &mut self.channel {
                        Some((_, p)) => p.settled(&mut settled, |t| outbox.get(t.0).map(|i| &i.message_id[..])),
                        None => Ok(()),
                    };
                    for ((seq, attempt, target), c) in settled.drain(..) {
                        self.on_confirm(seq, attempt, target, c);
                    }
                    self.settled = settled;
                    if let Err(why) = r {
                        self.lose_channel(&why);
                    }
                }
                Some((seq, ok)) = self.dead_letters.next(), if !self.dead_letters.is_empty() => {
                    self.on_dead_letter(seq, ok);
                }
                c = conn_event(&mut conns, has_channel), if has_channel || chan_at.is_none() => {
                    match c {
                        ConnEvent::New(c) => self.open_channel(c).await,
                        ConnEvent::Changed(current) => {
                            if current != self.channel.as_ref().map(|(g, _)| *g) {
                                self.lose_channel("the connection was lost");
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(chan_at.unwrap_or(far)), if chan_at.is_some() => {
                    self.channel_retry_at = None;
                }
                _ = tokio::time::sleep_until(hold.unwrap_or(far)), if hold.is_some() => {
                    self.hold_until = None;
                }
            }
        }
        drop(sub);
        set(&self.gauges().subscribed, 0);
        self.finish();
    }

    /// Work that needs no waiting: take a held delivery, load from the spool, publish, pop.
    async fn step(&mut self) {
        if self.held.is_some() {
            self.admit_held().await;
        }
        self.load_from_spool().await;
        if self.channel.is_some() {
            for seq in std::mem::take(&mut self.pending_dead_letters) {
                self.send_dead_letter_exchange(seq).await;
            }
        }
        self.send_ready().await;
        self.pop_done().await;
        set(&self.gauges().pending, self.outbox.len() as u64);
    }

    /// Shutting down and nothing left worth waiting for.
    fn drained(&self) -> bool {
        match self.spec.ack {
            AckMode::Spooled => self.outbox.in_flight() == 0 && self.dead_letters.is_empty(),
            _ => self.outbox.len() == 0,
        }
    }

    async fn subscribe(&mut self) -> Option<Subscription> {
        let mut backoff = Backoff::new(self.env.retry.0, self.env.retry.1);
        loop {
            match self.side.subscribe(vec![self.spec.filter.clone()]).await {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(rule = %self.spec.name, error = %e, "bridge: cannot subscribe on the MQTT side; retrying");
                }
            }
            tokio::select! {
                _ = self.env.cancel.cancelled() => return None,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// After the loop: whatever is left is not owned by RabbitMQ.
    fn finish(&mut self) {
        let mut lost = 0;
        let received = self.spec.ack == AckMode::Received;
        for (_, item) in self.outbox.drain() {
            // Dropping an uncompleted ack refuses it (the publisher will resend).
            drop(item.ack);
            if received {
                lost += 1;
            }
        }
        if lost > 0 {
            add(&self.stats().dropped_shutdown, lost);
            tracing::warn!(rule = %self.spec.name, lost, "bridge: shutdown lost messages of a \"received\" rule still in memory");
        }
        set(&self.gauges().pending, 0);
    }
}

/// Waits for the channel's next confirms (forever without a channel).
async fn confirms(channel: &mut Option<(u64, Publisher<Token>)>) {
    match channel {
        Some((_, p)) => p.ready().await,
        None => std::future::pending().await,
    }
}

enum ConnEvent {
    New(crate::link::Conn),
    /// The current generation changed (None: no connection).
    Changed(Option<u64>),
}

/// Without a channel: the next live connection. With one: the next change of connection.
async fn conn_event(conns: &mut ConnWatch, has_channel: bool) -> ConnEvent {
    if !has_channel {
        match next_conn(conns, 0).await {
            Some(c) => return ConnEvent::New(c),
            None => std::future::pending::<()>().await,
        }
    }
    match conns.changed().await {
        Ok(()) => ConnEvent::Changed(conns.borrow().as_ref().map(|c| c.generation)),
        Err(_) => ConnEvent::Changed(None),
    }
}

/// The AMQP properties of a publication under `spec`.
pub(crate) fn properties(item: &Item, spec: &Spec) -> BasicProperties {
    crate::convert::properties(
        &item.message,
        item.client_id.as_ref(),
        spec.headers,
        &spec.reply,
        &item.message_id,
        item.timestamp,
    )
}
