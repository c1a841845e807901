//! One inbound (AMQP → MQTT) rule: a task that, on each connection, declares its queue
//! (durable, if missing), binds it, sets the prefetch and consumes with manual acks. Each
//! delivery is mapped to an MQTT message and published through [`MqttSide::publish`] (calls
//! in delivery order, up to `prefetch` pending at once); the delivery is acked only once that
//! resolved. No matching subscriber: the rule's `no_subscribers` policy. The MQTT side failed
//! or timed out: requeued after a pause. Shutdown cancels the consumer, waits (grace period)
//! for the publishes in progress, and closes the channel: what is unacked is redelivered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use crate::amqp::{self, Acker, AmqpError, ConsumeSpec, Consumer};
use crate::config::NoSubscribers;
use crate::convert::{self, InboundShape};
use crate::link::{next_conn, Conn};
use crate::mapping::Mapping;
use crate::metrics::{bump, set, InboundStats};
use crate::outbound::Env;
use crate::pace::{Backoff, LogGate};
use crate::side::{MqttSide, Published};

/// What an inbound rule does, resolved from its configuration.
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) queue: String,
    pub(crate) exchange: String,
    pub(crate) bindings: Vec<String>,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) prefetch: u16,
    pub(crate) mapping: Mapping,
    pub(crate) reply: Mapping,
    pub(crate) no_subscribers: NoSubscribers,
    pub(crate) publish_timeout: Duration,
}

/// How handling one delivery ended on the MQTT side.
enum Outcome {
    Published(Published),
    Failed(String),
}

/// Why a consuming session ended.
enum End {
    Shutdown,
    Lost,
}

type Pending<'a> = Pin<Box<dyn Future<Output = (Acker, Outcome)> + Send + 'a>>;

/// Runs the rule until the bridge shuts down.
pub(crate) async fn run<S: MqttSide>(spec: Spec, side: Arc<S>, env: Arc<Env>) {
    let mut conns = env.conns.clone();
    let mut backoff = Backoff::new(env.retry.0, env.retry.1);
    let mut log = LogGate::new(env.log_interval);
    loop {
        let conn = tokio::select! {
            _ = env.cancel.cancelled() => return,
            c = next_conn(&mut conns, 0) => match c { Some(c) => c, None => return },
        };
        match consume(&spec, &conn).await {
            Ok(consumer) => {
                backoff.reset();
                let consuming = &env.reg.inbound[spec.index].2.consuming;
                set(consuming, 1);
                tracing::debug!(rule = %spec.name, queue = %spec.queue, "bridge: consuming");
                let session = Session {
                    spec: &spec,
                    side: side.as_ref(),
                    env: &env,
                    log: &mut log,
                };
                let end = session.serve(consumer, conn.clone()).await;
                set(consuming, 0);
                if let End::Shutdown = end {
                    return;
                }
                if conn.connection.is_open() {
                    // The consumer ended on a live connection (RabbitMQ cancelled it): pause
                    // before consuming again, so a queue that keeps cancelling is not a loop.
                    tokio::select! {
                        _ = env.cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
            Err(e) => {
                if log.hit(Instant::now()).is_some() {
                    tracing::warn!(rule = %spec.name, queue = %spec.queue, error = %e,
                        "bridge: cannot set up the inbound queue; retrying");
                }
                tokio::select! {
                    _ = env.cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

async fn consume(spec: &Spec, conn: &Conn) -> Result<Consumer, AmqpError> {
    let tag = format!("warren-bridge-{}", spec.name);
    let s = ConsumeSpec {
        queue: &spec.queue,
        exchange: &spec.exchange,
        bindings: &spec.bindings,
        prefetch: spec.prefetch,
        consumer_tag: &tag,
    };
    let timeout = crate::outbound::CALL_TIMEOUT;
    tokio::time::timeout(timeout, amqp::consume(&conn.connection, &s))
        .await
        .unwrap_or_else(|_| Err(AmqpError::Gone(format!("no answer in {timeout:?}"))))
}

struct Session<'a, S> {
    spec: &'a Spec,
    side: &'a S,
    env: &'a Env,
    log: &'a mut LogGate,
}

impl<'a, S: MqttSide> Session<'a, S> {
    fn stats(&self) -> &'a InboundStats {
        &self.env.reg.inbound[self.spec.index].1
    }

    async fn serve(mut self, mut consumer: Consumer, conn: Conn) -> End {
        let mut conns = self.env.conns.clone();
        let mut pending: FuturesUnordered<Pending<'a>> = FuturesUnordered::new();
        let shape = InboundShape {
            topic: &self.spec.mapping,
            reply: &self.spec.reply,
            qos: self.spec.qos,
            retain: self.spec.retain,
        };
        let end = loop {
            tokio::select! {
                _ = self.env.cancel.cancelled() => break End::Shutdown,
                d = consumer.next() => match d {
                    Some(d) => {
                        bump(&self.stats().deliveries);
                        let m = match &d.properties {
                            Ok(p) => convert::message(&d.routing_key, p, d.body, &shape)
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(format!("its properties cannot be read: {e}")),
                        };
                        match m {
                            Ok(m) => pending.push(self.publish(d.acker, m)),
                            Err(e) => {
                                bump(&self.stats().unmappable);
                                if self.log.hit(Instant::now()).is_some() {
                                    tracing::warn!(rule = %self.spec.name,
                                        routing_key = %String::from_utf8_lossy(&d.routing_key), error = %e,
                                        "bridge: delivery maps to no MQTT message; rejected");
                                }
                                let _ = d.acker.reject(false);
                                bump(&self.stats().rejects);
                            }
                        }
                    }
                    None => break End::Lost,
                },
                Some((acker, outcome)) = pending.next(), if !pending.is_empty() => {
                    self.settle(acker, outcome);
                }
                r = conns.changed() => {
                    let current = conns.borrow().as_ref().map(|c| c.generation);
                    if r.is_err() || current != Some(conn.generation) {
                        break End::Lost;
                    }
                }
            }
        };
        if let End::Shutdown = end {
            consumer.cancel().await;
            let grace = tokio::time::sleep(self.env.grace);
            tokio::pin!(grace);
            while !pending.is_empty() {
                tokio::select! {
                    _ = &mut grace => break,
                    Some((acker, outcome)) = pending.next() => self.settle(acker, outcome),
                }
            }
            drop(pending);
            consumer.close().await;
        }
        end
    }

    fn publish(&self, acker: Acker, m: crate::side::BridgeMessage) -> Pending<'a> {
        // Called in delivery order: the MQTT side fixes the order here.
        let published = self.side.publish(m);
        let timeout = self.spec.publish_timeout;
        Box::pin(async move {
            let outcome = match tokio::time::timeout(timeout, published).await {
                Ok(Ok(p)) => Outcome::Published(p),
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
                Err(_) => Outcome::Failed(format!("not owned within {timeout:?}")),
            };
            if let Outcome::Failed(_) = outcome {
                // Do not spin on a failing MQTT side: hold the delivery a moment.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (acker, outcome)
        })
    }

    fn settle(&mut self, acker: Acker, outcome: Outcome) {
        let s = self.stats();
        match outcome {
            Outcome::Published(Published::Accepted) => {
                let _ = acker.ack();
                bump(&s.acks);
            }
            Outcome::Published(Published::NoMatchingSubscribers) => {
                bump(&s.no_subscribers);
                match self.spec.no_subscribers {
                    NoSubscribers::Ack => {
                        let _ = acker.ack();
                        bump(&s.acks);
                    }
                    NoSubscribers::Reject => {
                        let _ = acker.reject(false);
                        bump(&s.rejects);
                    }
                }
            }
            Outcome::Failed(e) => {
                if self.log.hit(Instant::now()).is_some() {
                    tracing::warn!(rule = %self.spec.name, error = %e,
                        "bridge: the MQTT side did not take a message; requeued");
                }
                let _ = acker.nack(true);
                bump(&s.requeued);
            }
        }
    }
}
