//! The rule's AMQP channel: opened on the current connection with confirms selected and the
//! exchange declared (durable, unless it is `""` or `amq.*`); publications with `mandatory`,
//! in window order, up to `max_in_flight` awaiting confirms; on loss, everything in flight
//! goes back to waiting and the channel is reopened after a backoff.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::outbox::Target;
use super::{properties, Rule, Spec, Token, CALL_TIMEOUT};
use crate::amqp::{AmqpError, Publisher};
use crate::config::ExchangeType;
use crate::link::Conn;
use crate::metrics::{add, bump};
use crate::side::MqttSide;

/// RabbitMQ's `max_message_size`, when `why` (the end of a channel) is RabbitMQ refusing a
/// message over it: "406 PRECONDITION_FAILED - message size 2048 is larger than configured max
/// size 1024" (its only word on the limit: AMQP 0-9-1 does not announce it).
pub(super) fn max_size_refusal(why: &str) -> Option<usize> {
    if !why.contains("406 ") || !why.contains("message size") {
        return None;
    }
    let (_, rest) = why.split_once("is larger than ")?;
    rest.split_whitespace().last()?.parse().ok()
}

/// Whether the bridge declares this exchange (RabbitMQ refuses to declare `amq.*`).
fn declared(name: &str) -> bool {
    !name.is_empty() && !name.starts_with("amq.")
}

async fn topology(spec: &Spec, c: &Conn) -> Result<Publisher<Token>, AmqpError> {
    let mut p = Publisher::open(&c.connection).await?;
    if declared(&spec.exchange) {
        p.declare_exchange(&spec.exchange, spec.exchange_type, false)
            .await?;
    }
    if let Some(dl) = spec.dead_letter_exchange.as_deref().filter(|d| declared(d)) {
        // Must exist already: the bridge does not know its type.
        p.declare_exchange(dl, ExchangeType::Fanout, true).await?;
    }
    Ok(p)
}

impl<S: MqttSide> Rule<S> {
    /// Opens the channel on `c`; on failure retries after a backoff.
    pub(super) async fn open_channel(&mut self, c: Conn) {
        // RabbitMQ blocking the connection (an alarm) would leave a declare unanswered.
        let r = tokio::time::timeout(CALL_TIMEOUT, topology(&self.spec, &c))
            .await
            .unwrap_or_else(|_| Err(AmqpError::Gone(format!("no answer in {CALL_TIMEOUT:?}"))));
        match r {
            Ok(p) => {
                self.channel_backoff.reset();
                tracing::debug!(rule = %self.spec.name, generation = c.generation, "bridge: outbound channel open");
                self.channel = Some((c.generation, p));
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
        let Some((_, p)) = self.channel.take() else {
            return;
        };
        // RabbitMQ refused a message over its max_message_size: larger ones are dropped from now
        // on (counted), else the same message would close every channel again.
        if let Some(max) = max_size_refusal(why).filter(|&m| m < self.max_message_bytes()) {
            tracing::warn!(rule = %self.spec.name, max_message_bytes = max,
                "bridge: RabbitMQ refuses messages over its max_message_size; larger ones are dropped by every rule (set max_message_bytes to it)");
            self.env
                .learned_max_message
                .fetch_min(max, Ordering::Relaxed);
        }
        // Closing a channel that is still open (a publish failed) leaves its confirms behind.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p.close()).await;
        });
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
        let max_message_bytes = self.max_message_bytes();
        while self.outbox.in_flight() < self.spec.max_in_flight {
            let Some((_, ch)) = &mut self.channel else {
                break;
            };
            let Some((seq, attempt, item)) = self.outbox.next_to_send() else {
                break;
            };
            if item.message.payload.len() > max_message_bytes {
                // Admitted before RabbitMQ's smaller limit was known.
                self.unpublishable(
                    seq,
                    attempt,
                    Target::Primary,
                    "payload over max_message_size",
                );
                continue;
            }
            let r = ch.publish(
                &self.spec.exchange,
                &item.routing_key,
                &properties(item, &self.spec),
                &item.message.payload,
                (seq, attempt, Target::Primary),
            );
            match r {
                Ok(()) => bump(&self.stats().published),
                Err(AmqpError::Unpublishable(e)) => {
                    self.unpublishable(seq, attempt, Target::Primary, &e.to_string())
                }
                Err(e) => return self.lose_channel(&e.to_string()),
            }
        }
        self.flush();
    }

    /// A message that can never be published (headers over a frame): dropped and counted,
    /// its publisher answered, as a topic that maps to no routing key; the channel goes on.
    fn unpublishable(&mut self, seq: u64, attempt: u32, target: Target, why: &str) {
        if self.outbox.settle(seq, attempt, target) {
            self.outbox.done(seq);
        }
        bump(&self.stats().dropped_unmappable);
        if let Some(n) = self.drops_log.hit(Instant::now()) {
            tracing::warn!(rule = %self.spec.name, error = why, dropped = n,
                "bridge: a message cannot be published to RabbitMQ; dropped");
        }
    }

    /// Publishes the returned message `seq` to the dead-letter exchange.
    pub(super) async fn send_dead_letter_exchange(&mut self, seq: u64) {
        let (Some((_, ch)), Some(dl)) = (&mut self.channel, &self.spec.dead_letter_exchange) else {
            return;
        };
        let Some((attempt, item)) = self.outbox.send_dead_letter(seq) else {
            return;
        };
        let r = ch.publish(
            dl,
            &item.routing_key,
            &properties(item, &self.spec),
            &item.message.payload,
            (seq, attempt, Target::DeadLetter),
        );
        match r {
            Ok(()) => bump(&self.stats().published),
            Err(AmqpError::Unpublishable(e)) => {
                return self.unpublishable(seq, attempt, Target::DeadLetter, &e.to_string())
            }
            Err(e) => return self.lose_channel(&e.to_string()),
        }
        self.flush();
    }

    /// Hands what was published to the connection's writer.
    fn flush(&mut self) {
        if let Some((_, ch)) = &mut self.channel {
            if let Err(e) = ch.flush() {
                self.lose_channel(&e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::max_size_refusal;

    #[test]
    fn rabbitmqs_max_message_size_refusal_is_read_and_nothing_else_is() {
        let closed = "RabbitMQ closed the channel: 406 PRECONDITION_FAILED - ";
        assert_eq!(
            max_size_refusal(&format!(
                "{closed}message size 2048 is larger than configured max size 1024"
            )),
            Some(1024)
        );
        assert_eq!(
            max_size_refusal(&format!(
                "{closed}message size 600000000 is larger than max size 536870912"
            )),
            Some(536_870_912)
        );
        for other in [
            format!("{closed}inequivalent arg 'type' for exchange 'x'"),
            "RabbitMQ closed the channel: 404 NOT_FOUND - no exchange 'x'".to_string(),
            "connection closed".to_string(),
            format!("{closed}message size 5 is larger than configured max size lots"),
        ] {
            assert_eq!(max_size_refusal(&other), None, "{other}");
        }
    }
}
