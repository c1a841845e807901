//! What the bridge counts, and how it is seen: plain atomics per rule that the rule tasks
//! bump (no registry lookup per message), published to `warren_bridge_*` metric handles
//! (made once per rule) on a tick, and read directly by [`BridgeSnapshot`].
//!
//! Metric names (all with a `rule` label except the connection ones):
//! counters `warren_bridge_{published,confirmed,acked,returned,nacked,retried,republished,
//! dead_lettered,spooled_messages,spooled_bytes}_total`, `warren_bridge_dropped_total` (also
//! labelled `reason`: `unroutable`, `full`, `unmappable`, `dead_letter_failed`,
//! `shutdown`),
//! `warren_bridge_inbound_{deliveries,acks,rejects,requeued,no_subscribers,unmappable}_total`;
//! gauges `warren_bridge_pending_messages`, `warren_bridge_spool_messages`,
//! `warren_bridge_spool_bytes`; connection: gauge `warren_bridge_connected`, counters
//! `warren_bridge_reconnects_total`, `warren_bridge_connect_failures_total`.
//! This module knows no AMQP and no MQTT.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use metrics::{Counter, Gauge};

/// Declares a stats struct of atomics, its snapshot of `u64`s and the metric handles.
macro_rules! stats {
    ($(#[$doc:meta])* $stats:ident, $snap:ident, $handles:ident {
        $($(#[$fdoc:meta])* $field:ident => $metric:literal $(, $reason:literal)?;)*
    }) => {
        /// Counters of one rule, bumped by its task.
        #[derive(Debug, Default)]
        pub(crate) struct $stats {
            $(pub(crate) $field: AtomicU64,)*
        }

        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $snap {
            $($(#[$fdoc])* pub $field: u64,)*
        }

        struct $handles {
            $($field: Counter,)*
        }

        impl $stats {
            fn counts(&self) -> $snap {
                $snap { $($field: self.$field.load(Relaxed),)* }
            }
        }

        impl $handles {
            fn register(rule: &str) -> Self {
                let rule = rule.to_string();
                $handles {
                    $($field: metrics::counter!($metric, "rule" => rule.clone()
                        $(, "reason" => $reason)?),)*
                }
            }

            fn flush(&self, s: &$stats) {
                $(self.$field.absolute(s.$field.load(Relaxed));)*
            }
        }
    };
}

stats! {
    /// Counts of one outbound (MQTT → AMQP) rule.
    OutboundStats, OutboundCounts, OutboundHandles {
        /// Publications sent to RabbitMQ (first sends and republications).
        published => "warren_bridge_published_total";
        /// Publications RabbitMQ confirmed and routed.
        confirmed => "warren_bridge_confirmed_total";
        /// MQTT-side acks completed as owned (per the rule's `ack` mode).
        acked => "warren_bridge_acked_total";
        /// Publications RabbitMQ returned as unroutable.
        returned => "warren_bridge_returned_total";
        /// Publications RabbitMQ nacked.
        nacked => "warren_bridge_nacked_total";
        /// Republications after a nack or a `retry` return.
        retried => "warren_bridge_retried_total";
        /// Republications of messages in flight when the connection or channel was lost
        /// (possible duplicates).
        republished => "warren_bridge_republished_total";
        /// Returned messages sent to the dead-letter topic or exchange.
        dead_lettered => "warren_bridge_dead_lettered_total";
        /// Messages written to the disk spool.
        spooled_messages => "warren_bridge_spooled_messages_total";
        /// Payload bytes written to the disk spool.
        spooled_bytes => "warren_bridge_spooled_bytes_total";
        /// Dropped: returned under `unroutable = "drop"`.
        dropped_unroutable => "warren_bridge_dropped_total", "unroutable";
        /// Dropped: QoS 0 while the rule's buffer or spool was full.
        dropped_full => "warren_bridge_dropped_total", "full";
        /// Dropped: no routing key for the topic (template, length).
        dropped_unmappable => "warren_bridge_dropped_total", "unmappable";
        /// Dropped: the dead-letter exchange returned or nacked it too.
        dropped_dead_letter_failed => "warren_bridge_dropped_total", "dead_letter_failed";
        /// Dropped: a `received` rule's buffer at shutdown, past the grace period.
        dropped_shutdown => "warren_bridge_dropped_total", "shutdown";
    }
}

stats! {
    /// Counts of one inbound (AMQP → MQTT) rule.
    InboundStats, InboundCounts, InboundHandles {
        /// Deliveries received from the queue.
        deliveries => "warren_bridge_inbound_deliveries_total";
        /// Deliveries acknowledged (after the MQTT side owned them, or by policy).
        acks => "warren_bridge_inbound_acks_total";
        /// Deliveries rejected without requeue (to the queue's dead-letter exchange).
        rejects => "warren_bridge_inbound_rejects_total";
        /// Deliveries given back for redelivery (MQTT side failed or timed out).
        requeued => "warren_bridge_inbound_requeued_total";
        /// Deliveries no MQTT session took.
        no_subscribers => "warren_bridge_inbound_no_subscribers_total";
        /// Deliveries whose routing key maps to no valid topic (rejected).
        unmappable => "warren_bridge_inbound_unmappable_total";
    }
}

/// Gauges of an outbound rule, set by its task.
#[derive(Debug, Default)]
pub(crate) struct OutboundGauges {
    /// Messages the rule holds (awaiting publication or confirm).
    pub(crate) pending: AtomicU64,
    /// Messages in its spool.
    pub(crate) spool_messages: AtomicU64,
    /// Payload bytes in its spool.
    pub(crate) spool_bytes: AtomicU64,
    /// 1 once the MQTT side confirmed the rule's subscription.
    pub(crate) subscribed: AtomicU64,
}

/// Gauges of an inbound rule.
#[derive(Debug, Default)]
pub(crate) struct InboundGauges {
    /// 1 while the rule consumes its queue.
    pub(crate) consuming: AtomicU64,
}

/// The state of the AMQP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Trying to connect (first time or again).
    Connecting,
    /// Connected.
    Connected,
    /// Lost, waiting before the next attempt.
    Disconnected,
    /// The bridge is shut down.
    Stopped,
}

/// Connection counters.
#[derive(Debug, Default)]
pub(crate) struct LinkStats {
    state: AtomicU8,
    pub(crate) reconnects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
}

impl LinkStats {
    pub(crate) fn set_state(&self, s: ConnectionState) {
        self.state.store(s as u8, Relaxed);
    }

    pub(crate) fn state(&self) -> ConnectionState {
        match self.state.load(Relaxed) {
            0 => ConnectionState::Connecting,
            1 => ConnectionState::Connected,
            2 => ConnectionState::Disconnected,
            _ => ConnectionState::Stopped,
        }
    }
}

/// Per-rule counts and the connection state, for `$SYS/broker/bridge/...` and the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSnapshot {
    /// The AMQP connection's state.
    pub connection: ConnectionState,
    /// Connections lost after being established.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Outbound rules, in configuration order.
    pub outbound: Vec<OutboundSnapshot>,
    /// Inbound rules, in configuration order.
    pub inbound: Vec<InboundSnapshot>,
}

/// One outbound rule's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSnapshot {
    /// The rule's name.
    pub rule: String,
    /// Its counters.
    pub counts: OutboundCounts,
    /// Messages it holds (awaiting publication or confirm, or in the memory buffer).
    pub pending: u64,
    /// Messages in its spool (0 unless `ack = "spooled"`).
    pub spool_messages: u64,
    /// Payload bytes in its spool.
    pub spool_bytes: u64,
    /// The MQTT side confirmed the rule's subscription.
    pub subscribed: bool,
}

/// One inbound rule's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSnapshot {
    /// The rule's name.
    pub rule: String,
    /// Its counters.
    pub counts: InboundCounts,
    /// Consuming its queue now (declared, bound, consumer registered).
    pub consuming: bool,
}

/// Everything the bridge counts, shared by its tasks and its handle.
pub(crate) struct Registry {
    pub(crate) link: LinkStats,
    pub(crate) outbound: Vec<(String, OutboundStats, OutboundGauges)>,
    pub(crate) inbound: Vec<(String, InboundStats, InboundGauges)>,
}

impl Registry {
    pub(crate) fn new(outbound: Vec<String>, inbound: Vec<String>) -> Registry {
        Registry {
            link: LinkStats::default(),
            outbound: outbound
                .into_iter()
                .map(|n| (n, OutboundStats::default(), OutboundGauges::default()))
                .collect(),
            inbound: inbound
                .into_iter()
                .map(|n| (n, InboundStats::default(), InboundGauges::default()))
                .collect(),
        }
    }

    pub(crate) fn snapshot(&self) -> BridgeSnapshot {
        BridgeSnapshot {
            connection: self.link.state(),
            reconnects: self.link.reconnects.load(Relaxed),
            connect_failures: self.link.connect_failures.load(Relaxed),
            outbound: self
                .outbound
                .iter()
                .map(|(n, s, g)| OutboundSnapshot {
                    rule: n.clone(),
                    counts: s.counts(),
                    pending: g.pending.load(Relaxed),
                    spool_messages: g.spool_messages.load(Relaxed),
                    spool_bytes: g.spool_bytes.load(Relaxed),
                    subscribed: g.subscribed.load(Relaxed) == 1,
                })
                .collect(),
            inbound: self
                .inbound
                .iter()
                .map(|(n, s, g)| InboundSnapshot {
                    rule: n.clone(),
                    counts: s.counts(),
                    consuming: g.consuming.load(Relaxed) == 1,
                })
                .collect(),
        }
    }
}

/// The metric handles, made once; [`Exporter::flush`] copies the atomics into them.
pub(crate) struct Exporter {
    connected: Gauge,
    reconnects: Counter,
    connect_failures: Counter,
    outbound: Vec<(OutboundHandles, [Gauge; 3])>,
    inbound: Vec<InboundHandles>,
}

impl Exporter {
    pub(crate) fn new(reg: &Registry) -> Exporter {
        Exporter {
            connected: metrics::gauge!("warren_bridge_connected"),
            reconnects: metrics::counter!("warren_bridge_reconnects_total"),
            connect_failures: metrics::counter!("warren_bridge_connect_failures_total"),
            outbound: reg
                .outbound
                .iter()
                .map(|(n, _, _)| {
                    let r = n.clone();
                    (
                        OutboundHandles::register(n),
                        [
                            metrics::gauge!("warren_bridge_pending_messages", "rule" => r.clone()),
                            metrics::gauge!("warren_bridge_spool_messages", "rule" => r.clone()),
                            metrics::gauge!("warren_bridge_spool_bytes", "rule" => r),
                        ],
                    )
                })
                .collect(),
            inbound: reg
                .inbound
                .iter()
                .map(|(n, _, _)| InboundHandles::register(n))
                .collect(),
        }
    }

    pub(crate) fn flush(&self, reg: &Registry) {
        let up = reg.link.state() == ConnectionState::Connected;
        self.connected.set(if up { 1.0 } else { 0.0 });
        self.reconnects.absolute(reg.link.reconnects.load(Relaxed));
        self.connect_failures
            .absolute(reg.link.connect_failures.load(Relaxed));
        for ((h, g), (_, s, gauges)) in self.outbound.iter().zip(&reg.outbound) {
            h.flush(s);
            g[0].set(gauges.pending.load(Relaxed) as f64);
            g[1].set(gauges.spool_messages.load(Relaxed) as f64);
            g[2].set(gauges.spool_bytes.load(Relaxed) as f64);
        }
        for (h, (_, s, _)) in self.inbound.iter().zip(&reg.inbound) {
            h.flush(s);
        }
    }
}

/// Adds one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// Sets a gauge.
pub(crate) fn set(g: &AtomicU64, v: u64) {
    g.store(v, Relaxed);
}
