//! The rule's AMQP channel: opened on the current connection with confirms selected and the
//! exchange declared (durable, unless it is `""` or `amq.*`); publications with `mandatory`,
//! in window order, up to `max_in_flight` awaiting confirms; on loss, everything in flight
//! goes back to waiting and the channel is reopened after a backoff.

use std::time::Instant;

use futures_util::FutureExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind};

use super::outbox::Target;
use super::{payload, properties, Rule, Spec};
use crate::config::ExchangeType;
use crate::link::Conn;
use crate::metrics::{add, bump};
use crate::side::MqttSide;

fn kind(t: ExchangeType) -> ExchangeKind {
    match t {
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Direct => ExchangeKind::Direct,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Headers => ExchangeKind::Headers,
    }
}

/// Whether the bridge declares this exchange (RabbitMQ refuses to declare `amq.*`).
fn declared(name: &str) -> bool {
    !name.is_empty() && !name.starts_with("amq.")
}

async fn topology(spec: &Spec, conn: &Connection) -> lapin::Result<Channel> {
    {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        if declared(&spec.exchange) {
            let opts = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            ch.exchange_declare(
                spec.exchange.as_str().into(),
                kind(spec.exchange_type),
                opts,
                FieldTable::default(),
            )
            .await?;
        }
        if let Some(dl) = spec.dead_letter_exchange.as_deref().filter(|d| declared(d)) {
            // Must exist already: the bridge does not know its type.
            let opts = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            ch.exchange_declare(dl.into(), ExchangeKind::Fanout, opts, FieldTable::default())
                .await?;
        }
        Ok(ch)
    }
}

impl<S: MqttSide> Rule<S> {
    /// Opens the channel on `c`; on failure retries after a backoff.
    pub(super) async fn open_channel(&mut self, c: Conn) {
        match topology(&self.spec, &c.connection).await {
            Ok(ch) => {
                self.channel_backoff.reset();
                tracing::debug!(rule = %self.spec.name, generation = c.generation, "bridge: outbound channel open");
                self.channel = Some((c.generation, ch));
            }
            Err(e) => {
                let delay = self.channel_backoff.next_delay();
                self.channel_retry_at = Some(Instant::now() + delay);
                if self.errors_log.hit(Instant::now()).is_some() {
                    tracing::warn!(rule = %self.spec.name, exchange = %self.spec.exchange, error = %e,
                        "bridge: cannot open the outbound channel (exchange declared with another type, or a missing dead-letter exchange?); retrying");
                }
            }
        }
    }

    /// The channel failed: republish what was in flight on the next one.
    pub(super) fn lose_channel(&mut self, why: &str) {
        if self.channel.take().is_none() {
            return;
        }
        self.confirms.clear();
        self.pending_dead_letters.clear();
        let n = self.outbox.rewind_all() as u64;
        add(&self.stats().republished, n);
        if n > 0 {
            tracing::info!(rule = %self.spec.name, in_flight = n, reason = why,
                "bridge: channel lost; messages in flight will be published again");
        }
    }

    /// Publishes waiting messages while the channel is up and the in-flight cap allows.
    pub(super) async fn send_ready(&mut self) {
        if self.hold_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.hold_until = None;
        while self.outbox.in_flight() < self.spec.max_in_flight {
            let Some((_, ch)) = &self.channel else { return };
            let ch = ch.clone();
            let Some((seq, attempt, item)) = self.outbox.next_to_send() else {
                return;
            };
            let exchange = self.spec.exchange.as_str().into();
            let r = ch
                .basic_publish(
                    exchange,
                    item.routing_key.clone(),
                    mandatory(),
                    &payload(item),
                    properties(item, &self.spec.reply),
                )
                .await;
            bump(&self.stats().published);
            match r {
                Ok(confirm) => self
                    .confirms
                    .push(async move { (seq, attempt, Target::Primary, confirm.await) }.boxed()),
                Err(e) => return self.lose_channel(&e.to_string()),
            }
        }
    }

    /// Publishes the returned message `seq` to the dead-letter exchange.
    pub(super) async fn send_dead_letter_exchange(&mut self, seq: u64) {
        let (Some((_, ch)), Some(dl)) = (&self.channel, &self.spec.dead_letter_exchange) else {
            return;
        };
        let (ch, dl) = (ch.clone(), dl.clone());
        let Some((attempt, item)) = self.outbox.send_dead_letter(seq) else {
            return;
        };
        let r = ch
            .basic_publish(
                dl.as_str().into(),
                item.routing_key.clone(),
                mandatory(),
                &payload(item),
                properties(item, &self.spec.reply),
            )
            .await;
        bump(&self.stats().published);
        match r {
            Ok(confirm) => self
                .confirms
                .push(async move { (seq, attempt, Target::DeadLetter, confirm.await) }.boxed()),
            Err(e) => self.lose_channel(&e.to_string()),
        }
    }
}

fn mandatory() -> BasicPublishOptions {
    BasicPublishOptions {
        mandatory: true,
        immediate: false,
    }
}
