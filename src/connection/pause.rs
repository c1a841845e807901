//! Paused PUBLISH input: a PUBLISH that may not be handled yet is held, with every later packet
//! that must stay behind it, while acknowledgements and pings go on being read and answered.
//!
//! Two things pause a connection's PUBLISH input:
//! - the Receive Maximum, for a 3.1.1 client (which cannot be told it): its QoS 1/2 PUBLISH
//!   past the maximum waits until one of its others is answered;
//! - the publish rate limits (`max_publish_rate`, `max_publish_bytes_rate`): a PUBLISH past
//!   them waits until its token buckets allow it (a timer is armed for that moment).
//!
//! While paused, input is still read and decoded, up to [`HOLD_BYTES`] or [`HOLD_PACKETS`]
//! held: PUBACK, PUBREC, PUBREL, PUBCOMP and PINGREQ are handled at once (they may pass a held
//! PUBLISH: nothing in MQTT orders them after it), every other packet joins the queue in order
//! (a DISCONNECT after held messages still comes after them). End of input is kept in order
//! too: a client that sends a burst and closes has its burst handled first. Past the bound,
//! reading stops until the queue drains. Nothing held is dropped: the client is slowed, not
//! disconnected.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Connection, Exit};
use crate::config::MqttConfig;
use crate::metrics::stats::Stats;
use crate::protocol::{Packet, Publish, QoS};
use crate::rate::{Bucket, Rate};

/// Held bytes (PUBLISH topics and payloads, a small amount for other packets) past which
/// reading stops.
pub(super) const HOLD_BYTES: usize = 64 * 1024;
/// Held packets past which reading stops.
pub(super) const HOLD_PACKETS: usize = 1024;

/// Input held back, in arrival order.
#[derive(Default)]
pub(super) struct Held {
    packets: VecDeque<Packet>,
    bytes: usize,
    /// The client closed its side after these packets.
    pub(super) eof: bool,
}

impl Held {
    /// True when no more input should be read for now.
    pub(super) fn full(&self) -> bool {
        self.eof || self.bytes >= HOLD_BYTES || self.packets.len() >= HOLD_PACKETS
    }
}

/// Roughly what a held packet keeps alive, for the bound.
fn held_size(packet: &Packet) -> usize {
    match packet {
        Packet::Publish(p) => 16 + p.topic.len() + p.payload.len(),
        _ => 64,
    }
}

/// True for the packets that may be handled before a held PUBLISH.
fn may_pass(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::PingReq
    )
}

/// A client's publish rate limits: messages and bytes (topic and payload) a second.
pub(super) struct Throttle {
    messages: Option<(Rate, Bucket)>,
    bytes: Option<(Rate, Bucket)>,
    /// When the held PUBLISH at the front may go, while one waits for the buckets.
    pub(super) resume_at: Option<Instant>,
}

impl Throttle {
    /// The limits of `mqtt`, or `None` when there are none.
    pub(super) fn new(mqtt: &MqttConfig, now: Instant) -> Option<Box<Throttle>> {
        let bucket = |rate: Option<Rate>| rate.map(|r| (r, Bucket::full(&r, now)));
        let messages = bucket(Rate::new(
            u64::from(mqtt.max_publish_rate),
            u64::from(mqtt.max_publish_burst),
        ));
        let bytes = bucket(Rate::new(mqtt.max_publish_bytes_rate, 0));
        (messages.is_some() || bytes.is_some()).then(|| {
            Box::new(Throttle {
                messages,
                bytes,
                resume_at: None,
            })
        })
    }

    /// How long until a PUBLISH of `cost` bytes may go (zero: now).
    fn wait(&mut self, cost: usize, now: Instant) -> Duration {
        let mut wait = Duration::ZERO;
        if let Some((rate, bucket)) = &mut self.messages {
            wait = wait.max(bucket.wait(rate, 1.0, now));
        }
        if let Some((rate, bucket)) = &mut self.bytes {
            wait = wait.max(bucket.wait(rate, cost as f64, now));
        }
        wait
    }

    /// Takes the tokens of a PUBLISH of `cost` bytes ([`Throttle::wait`] was zero).
    fn take(&mut self, cost: usize, now: Instant) {
        if let Some((rate, bucket)) = &mut self.messages {
            let _ = bucket.take(rate, 1.0, now);
        }
        if let Some((rate, bucket)) = &mut self.bytes {
            let _ = bucket.take(rate, cost as f64, now);
        }
    }
}

/// What a PUBLISH costs against the byte rate.
fn publish_cost(publish: &Publish) -> usize {
    publish.topic.len() + publish.payload.len()
}

impl Connection {
    /// True while input must not be read: the held queue is at its bound, or ends the input.
    pub(super) fn input_paused(&self) -> bool {
        self.held.as_ref().is_some_and(|held| held.full())
    }

    /// Handles a decoded packet now, or queues it behind held input.
    pub(super) fn dispatch(&mut self, packet: Packet, now: Instant) -> Option<Exit> {
        if self.held.is_some() && !may_pass(&packet) {
            self.hold(packet);
            return None;
        }
        self.handle(packet, now)
    }

    /// Appends `packet` to the held input.
    pub(super) fn hold(&mut self, packet: Packet) {
        let held = self.held.get_or_insert_with(Box::default);
        held.bytes += held_size(&packet);
        held.packets.push_back(packet);
    }

    /// The end of input while packets are held: handled once they are.
    pub(super) fn hold_eof(&mut self) {
        if let Some(held) = &mut self.held {
            held.eof = true;
        }
    }

    /// True when `publish` must wait: for room under the Receive Maximum (3.1.1 only; a 5.0
    /// client past it is in breach, see `on_publish`) or for the rate limits. Counts and arms
    /// the timer for a rate pause.
    pub(super) fn publish_must_wait(&mut self, publish: &Publish, now: Instant) -> bool {
        let duplicate =
            publish.qos == QoS::ExactlyOnce && self.session.incoming_qos2_holds(publish.pkid);
        if publish.qos != QoS::AtMostOnce
            && !duplicate
            && !self.version.is_v5()
            && self.receive_quota_used() >= usize::from(self.receive_maximum)
        {
            // Answers, not time, end this wait.
            if let Some(throttle) = &mut self.throttle {
                throttle.resume_at = None;
            }
            return true;
        }
        let Some(throttle) = &mut self.throttle else {
            return false;
        };
        let wait = throttle.wait(publish_cost(publish), now);
        if wait.is_zero() {
            throttle.resume_at = None;
            return false;
        }
        if throttle.resume_at.is_none() {
            Stats::bump(&self.core.stats().publish_pauses);
        }
        throttle.resume_at = Some(now + wait);
        true
    }

    /// Takes the rate tokens of a PUBLISH about to be handled.
    pub(super) fn charge_publish(&mut self, publish: &Publish, now: Instant) {
        if let Some(throttle) = &mut self.throttle {
            throttle.take(publish_cost(publish), now);
        }
    }

    /// Handles held input in order while it may go; once all of it has, reads on (or ends the
    /// connection, if the client had closed its side).
    pub(super) fn release_held(&mut self, now: Instant) -> Option<Exit> {
        loop {
            let held = self.held.as_mut()?;
            let Some(packet) = held.packets.pop_front() else {
                let eof = held.eof;
                self.held = None;
                return if eof {
                    Some(Exit::Closed)
                } else {
                    self.process_input(now)
                };
            };
            held.bytes = held.bytes.saturating_sub(held_size(&packet));
            if let Packet::Publish(publish) = &packet {
                if self.publish_must_wait(publish, now) {
                    let held = self.held.get_or_insert_with(Box::default);
                    held.bytes += held_size(&packet);
                    held.packets.push_front(packet);
                    return None;
                }
            }
            if let Some(exit) = self.handle(packet, now) {
                return Some(exit);
            }
        }
    }

    /// When the held PUBLISH at the front may go by the rate limits, if it waits for them.
    pub(super) fn resume_at(&self) -> Option<Instant> {
        self.held.as_ref()?;
        self.throttle.as_ref()?.resume_at
    }
}
