//! What a confirm means for the message: done on a plain ack; on a return (an ack that came
//! after RabbitMQ returned the message: no queue took it), the rule's `unroutable` policy; on
//! a nack, republish with backoff. A return is never taken as a confirm.

use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::outbox::Target;
use super::Rule;
use crate::amqp::Confirm;
use crate::config::Unroutable;
use crate::metrics::{add, bump};
use crate::side::{BridgeMessage, MqttSide, Published};

impl<S: MqttSide> Rule<S> {
    pub(super) fn on_confirm(
        &mut self,
        seq: u64,
        attempt: u32,
        target: Target,
        confirmation: Confirm,
    ) {
        if !self.outbox.settle(seq, attempt, target) {
            return; // stale: an earlier attempt
        }
        match (confirmation, target) {
            (Confirm::Ack, Target::Primary) => {
                bump(&self.stats().confirmed);
                self.retry_backoff.reset();
                self.outbox.done(seq);
            }
            (Confirm::Ack, Target::DeadLetter) => {
                bump(&self.stats().dead_lettered);
                self.outbox.done(seq);
            }
            (Confirm::Returned(ret), Target::Primary) => {
                bump(&self.stats().returned);
                if let Some(n) = self.returns_log.hit(Instant::now()) {
                    tracing::warn!(rule = %self.spec.name, exchange = %self.spec.exchange,
                        routing_key = %ret.routing_key, code = ret.reply_code,
                        reason = %ret.reply_text, returned = n, policy = ?self.spec.unroutable,
                        "bridge: RabbitMQ returned unroutable messages (no queue bound)");
                }
                self.unroutable(seq);
            }
            (Confirm::Nack, Target::Primary) => {
                bump(&self.stats().nacked);
                self.retry(seq);
            }
            (Confirm::Returned(_) | Confirm::Nack, Target::DeadLetter) => {
                bump(&self.stats().dropped_dead_letter_failed);
                if let Some(n) = self.drops_log.hit(Instant::now()) {
                    tracing::warn!(rule = %self.spec.name, dropped = n,
                        "bridge: the dead-letter exchange did not take returned messages; dropped");
                }
                self.outbox.done(seq);
            }
        }
    }

    /// Republishes `seq` (and what was sent after it) after a backoff.
    fn retry(&mut self, seq: u64) {
        let n = self.outbox.rewind_from(seq) as u64;
        add(&self.stats().retried, n);
        self.hold_until = Some(Instant::now() + self.retry_backoff.next_delay());
    }

    fn unroutable(&mut self, seq: u64) {
        match self.spec.unroutable {
            Unroutable::Drop => {
                bump(&self.stats().dropped_unroutable);
                self.outbox.done(seq);
            }
            Unroutable::Retry => self.retry(seq),
            Unroutable::DeadLetter if self.spec.dead_letter_exchange.is_some() => {
                // Published on the next step, on the same channel.
                self.pending_dead_letters.push(seq);
            }
            Unroutable::DeadLetter => self.dead_letter_topic(seq, Duration::ZERO),
        }
    }

    /// Publishes the returned message into MQTT on the dead-letter topic (after `delay`).
    fn dead_letter_topic(&mut self, seq: u64, delay: Duration) {
        let (Some(topic), Some(item)) = (&self.spec.dead_letter_topic, self.outbox.get(seq)) else {
            return self.outbox.done(seq);
        };
        let mut message: BridgeMessage = item.message.clone();
        message.topic = topic.clone();
        message
            .properties
            .user_properties
            .push(("x-warren-unroutable-rule".into(), self.spec.name.clone()));
        self.outbox.dead_lettering(seq);
        let side = self.side.clone();
        self.dead_letters.push(
            async move {
                tokio::time::sleep(delay).await;
                let ok = matches!(
                    side.publish(message).await,
                    Ok(Published::Accepted | Published::NoMatchingSubscribers)
                );
                (seq, ok)
            }
            .boxed(),
        );
    }

    pub(super) fn on_dead_letter(&mut self, seq: u64, ok: bool) {
        if ok {
            bump(&self.stats().dead_lettered);
            self.outbox.done(seq);
        } else {
            if let Some(_n) = self.errors_log.hit(Instant::now()) {
                tracing::warn!(rule = %self.spec.name, "bridge: cannot publish to the dead-letter topic; retrying");
            }
            let delay = self.retry_backoff.next_delay();
            self.dead_letter_topic(seq, delay);
        }
    }
}
