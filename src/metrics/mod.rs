//! What the broker tells operators: Prometheus metrics, health endpoints and `$SYS` topics.
//!
//! Counting happens in [`stats`] (plain atomics, per-thread shards on the per-packet path). This
//! module names the metrics and turns a [`stats::StatsSnapshot`] plus the broker's gauges into
//! the Prometheus text format at scrape time, through a per-broker
//! `metrics-exporter-prometheus` recorder (not the process-global one, so several brokers in one
//! process, as in the tests, keep their own figures). [`http`] serves `/metrics`, `/healthz` and
//! `/readyz`. It renders what it is given and knows nothing of the broker's structures.

pub mod http;
pub mod stats;

use std::time::Duration;

use metrics::{Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::protocol::PACKET_TYPE_NAMES;
use stats::{DropReason, StatsSnapshot};

static META: Metadata<'static> = Metadata::new("warren", metrics::Level::INFO, None);

/// Name of the publish-to-delivery latency histogram.
const LATENCY: &str = "warren_delivery_latency_seconds";
/// Its buckets: 50 µs to 5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
    5.0,
];

/// Every metric: (name, unit, help).
/// How a metric is exposed.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}
use Kind::{Counter, Gauge, Histogram};

/// Every metric: (name, kind, unit, help).
const DESCRIPTIONS: &[(&str, Kind, Option<Unit>, &str)] = &[
    ("warren_sockets_accepted_total", Counter, Some(Unit::Count), "TCP connections accepted"),
    ("warren_sockets_open", Gauge, Some(Unit::Count), "TCP connections open (including before CONNECT)"),
    ("warren_connections", Gauge, Some(Unit::Count), "MQTT connections (past CONNACK) by listener and protocol"),
    ("warren_connections_total", Counter, Some(Unit::Count), "MQTT connections accepted by listener and protocol"),
    ("warren_connects_refused_total", Counter, Some(Unit::Count), "CONNECTs refused, by reason"),
    ("warren_packets_received_total", Counter, Some(Unit::Count), "MQTT packets received, by type"),
    ("warren_packets_sent_total", Counter, Some(Unit::Count), "MQTT packets sent, by type"),
    ("warren_received_bytes_total", Counter, Some(Unit::Bytes), "bytes read from clients"),
    ("warren_sent_bytes_total", Counter, Some(Unit::Bytes), "bytes written to clients"),
    ("warren_messages_received_total", Counter, Some(Unit::Count), "PUBLISH messages received from clients, by QoS"),
    ("warren_messages_delivered_total", Counter, Some(Unit::Count), "PUBLISH messages delivered to clients, by QoS"),
    ("warren_messages_dropped_total", Counter, Some(Unit::Count), "messages not delivered, by reason and QoS"),
    ("warren_malformed_packets_total", Counter, Some(Unit::Count), "connections closed for a malformed packet"),
    ("warren_protocol_errors_total", Counter, Some(Unit::Count), "connections closed for a protocol error"),
    ("warren_wills_published_total", Counter, Some(Unit::Count), "will messages published"),
    ("warren_shared_redispatched_total", Counter, Some(Unit::Count), "shared-subscription messages given to another member of the group after theirs ended unacknowledged"),
    ("warren_sessions_taken_over_total", Counter, Some(Unit::Count), "connections closed by a takeover"),
    ("warren_sessions_expired_total", Counter, Some(Unit::Count), "offline sessions ended by expiry"),
    ("warren_slow_subscribers_total", Counter, Some(Unit::Count), "subscribers disconnected because publishers waited too long for room in their queue"),
    ("warren_sessions", Gauge, Some(Unit::Count), "sessions by state (online, offline)"),
    ("warren_subscriptions", Gauge, Some(Unit::Count), "subscriptions"),
    ("warren_retained_messages", Gauge, Some(Unit::Count), "retained messages"),
    ("warren_inflight_messages", Gauge, Some(Unit::Count), "QoS 1/2 messages sent and not yet acknowledged"),
    ("warren_queued_messages", Gauge, Some(Unit::Count), "messages waiting in session queues"),
    ("warren_queued_bytes", Gauge, Some(Unit::Bytes), "bytes held by the messages waiting in session queues (topic, properties, payload and bookkeeping)"),
    ("warren_connections_rejected_total", Counter, Some(Unit::Count), "connections closed before MQTT (connection limit and rate, PROXY header, TLS handshake, WebSocket upgrade, timeout), by listener and reason"),
    ("warren_publish_pauses_total", Counter, Some(Unit::Count), "times a client's PUBLISH input was paused by the publish rate limits"),
    ("warren_auth_failures_total", Counter, Some(Unit::Count), "failed authentications, by reason"),
    ("warren_acl_denied_total", Counter, Some(Unit::Count), "ACL refusals, by action (publish, subscribe, deliver)"),
    ("warren_config_reloads_total", Counter, Some(Unit::Count), "reloads of password, ACL, JWKS, TLS and admin token files, by result"),
    ("warren_store_bytes", Gauge, Some(Unit::Bytes), "data the disk store holds (rows and their bookkeeping)"),
    ("warren_store_file_bytes", Gauge, Some(Unit::Bytes), "size of the disk store's file (what store.max_disk_bytes bounds)"),
    ("warren_store_commits_total", Counter, Some(Unit::Count), "commits of the disk store (one fsync each)"),
    ("warren_store_failures_total", Counter, Some(Unit::Count), "failed commits of the disk store (disk full, I/O error)"),
    ("warren_store_refused_total", Counter, Some(Unit::Count), "messages refused (0x97) because the disk store could not take them"),
    ("warren_accept_errors_total", Counter, Some(Unit::Count), "failed accepts (e.g. the open-file limit)"),
    ("warren_open_files_limit", Gauge, Some(Unit::Count), "the process's open-file limit (caps connections)"),
    ("warren_uptime_seconds", Gauge, Some(Unit::Seconds), "seconds since the broker started"),
    (LATENCY, Histogram, Some(Unit::Seconds), "time from receiving a PUBLISH to writing it to a subscriber (sampled: one delivery per batch)"),
];

/// One broker's metrics registry.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    latency: metrics::Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric described.
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), &LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        for (name, kind, unit, help) in DESCRIPTIONS {
            let name = (*name).into();
            let help = SharedString::const_str(help);
            match kind {
                Counter => recorder.describe_counter(name, *unit, help),
                Gauge => recorder.describe_gauge(name, *unit, help),
                Histogram => recorder.describe_histogram(name, *unit, help),
            }
        }
        let latency = recorder.register_histogram(&Key::from_static_name(LATENCY), &META);
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            latency,
        }
    }

    /// Runs `f` with this registry as the `metrics` facade's recorder, so that handles it
    /// registers (the bridge's `warren_bridge_*`) are rendered at `/metrics` with the broker's.
    pub fn with_recorder<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Records one publish-to-delivery latency sample.
    pub fn record_latency(&self, latency: Duration) {
        self.latency.record(latency.as_secs_f64());
    }

    /// Drains histogram samples into their buckets; call now and then so that memory stays
    /// bounded between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)], value: u64) {
        self.recorder
            .register_counter(&key(name, labels), &META)
            .absolute(value);
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.recorder
            .register_gauge(&key(name, labels), &META)
            .set(value);
    }

    /// The Prometheus text exposition of the counters `s`, the gauges `gauges` and `uptime`.
    pub fn render(&self, s: &StatsSnapshot, gauges: &Gauges, uptime: Duration) -> String {
        self.counter("warren_sockets_accepted_total", &[], s.connections_total);
        self.gauge("warren_sockets_open", &[], s.connections_current as f64);
        for ((listener, protocol), count) in &s.connections_by {
            let labels = [("listener", &**listener), ("protocol", *protocol)];
            self.gauge("warren_connections", &labels, count.current as f64);
            self.counter("warren_connections_total", &labels, count.total);
        }
        for (reason, n) in &s.refused_by_reason {
            self.counter("warren_connects_refused_total", &[("reason", reason)], *n);
        }
        for (reason, n) in &s.auth_failures {
            self.counter("warren_auth_failures_total", &[("reason", reason)], *n);
        }
        for (label, n) in stats::AclAction::LABELS.iter().zip(s.acl_denied) {
            self.counter("warren_acl_denied_total", &[("action", label)], n);
        }
        for (label, n) in ["success", "failure"].iter().zip(s.reloads) {
            self.counter("warren_config_reloads_total", &[("result", label)], n);
        }
        for (code, name) in PACKET_TYPE_NAMES.iter().enumerate().skip(1) {
            let kind = [("type", *name)];
            if s.packets_in[code] > 0 {
                self.counter("warren_packets_received_total", &kind, s.packets_in[code]);
            }
            if s.packets_out[code] > 0 {
                self.counter("warren_packets_sent_total", &kind, s.packets_out[code]);
            }
        }
        self.counter("warren_received_bytes_total", &[], s.bytes_in);
        self.counter("warren_sent_bytes_total", &[], s.bytes_out);
        for (qos, label) in ["0", "1", "2"].iter().enumerate() {
            let qos_label = [("qos", *label)];
            self.counter(
                "warren_messages_received_total",
                &qos_label,
                s.messages_received[qos],
            );
            self.counter(
                "warren_messages_delivered_total",
                &qos_label,
                s.messages_delivered[qos],
            );
        }
        for reason in DropReason::ALL {
            for (qos, label) in ["0", "1", "2"].iter().enumerate() {
                self.counter(
                    "warren_messages_dropped_total",
                    &[("reason", reason.label()), ("qos", label)],
                    s.dropped_by[reason as usize][qos],
                );
            }
        }
        self.counter("warren_malformed_packets_total", &[], s.malformed_packets);
        self.counter("warren_protocol_errors_total", &[], s.protocol_errors);
        self.counter("warren_wills_published_total", &[], s.wills_published);
        self.counter(
            "warren_shared_redispatched_total",
            &[],
            s.shared_redispatched,
        );
        self.counter(
            "warren_sessions_taken_over_total",
            &[],
            s.sessions_taken_over,
        );
        self.counter("warren_sessions_expired_total", &[], s.sessions_expired);
        self.counter("warren_slow_subscribers_total", &[], s.slow_subscribers);
        self.counter("warren_accept_errors_total", &[], s.accept_errors);
        for ((listener, reason), n) in &s.rejected_by {
            self.counter(
                "warren_connections_rejected_total",
                &[("listener", listener), ("reason", reason)],
                *n,
            );
        }
        self.counter("warren_publish_pauses_total", &[], s.publish_pauses);
        self.gauge("warren_open_files_limit", &[], s.open_files_limit as f64);

        self.gauge(
            "warren_sessions",
            &[("state", "online")],
            gauges.online as f64,
        );
        self.gauge(
            "warren_sessions",
            &[("state", "offline")],
            gauges.offline as f64,
        );
        self.gauge("warren_subscriptions", &[], gauges.subscriptions as f64);
        self.gauge("warren_retained_messages", &[], gauges.retained as f64);
        self.gauge("warren_inflight_messages", &[], gauges.inflight as f64);
        self.gauge("warren_queued_messages", &[], gauges.queued as f64);
        self.gauge("warren_queued_bytes", &[], gauges.queued_bytes as f64);
        if let Some(store) = &gauges.store {
            self.gauge("warren_store_bytes", &[], store.bytes as f64);
            self.gauge("warren_store_file_bytes", &[], store.file_bytes as f64);
            self.counter("warren_store_commits_total", &[], store.commits);
            self.counter("warren_store_failures_total", &[], store.failures);
            self.counter("warren_store_refused_total", &[], store.refused);
        }
        self.gauge("warren_uptime_seconds", &[], uptime.as_secs_f64());
        self.handle.render()
    }
}

/// Gauges read from the broker's structures at scrape time (by the broker).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Connected sessions.
    pub online: usize,
    /// Stored sessions.
    pub offline: usize,
    /// Subscriptions in the trie.
    pub subscriptions: usize,
    /// Retained messages.
    pub retained: usize,
    /// QoS 1/2 messages in flight.
    pub inflight: usize,
    /// Messages waiting in session queues.
    pub queued: usize,
    /// Bytes those messages hold.
    pub queued_bytes: usize,
    /// The disk store's figures, when there is one.
    pub store: Option<StoreFigures>,
}

/// What the disk store reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreFigures {
    /// Bytes of data it holds.
    pub bytes: u64,
    /// Bytes its file takes.
    pub file_bytes: u64,
    /// Commits so far.
    pub commits: u64,
    /// Failed commits so far.
    pub failures: u64,
    /// Persistent work refused so far.
    pub refused: u64,
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(name, labels)
}
