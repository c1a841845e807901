//! The `[bridge]` configuration table: typed, with serde defaults, `deny_unknown_fields`, and
//! [`BridgeConfig::check`] for what serde cannot see (filters, templates, exchange types, rule
//! names, spool settings). The broker embeds [`BridgeConfig`] as its `bridge` section; `warren
//! bridge` reads the same table plus `[bridge.mqtt]` (see [`StandaloneMqtt`]).
//!
//! Integers also accept a string of digits (what an environment override gives); see [`de`].
//! This module owns the shapes and their checks only: nothing here connects anywhere.

pub(crate) mod check;
pub(crate) mod de;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use check::ConfigCheckError;

/// `[bridge]`. The default is `enabled = false` with nothing else.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// Run the bridge. Default false.
    pub enabled: bool,
    /// AMQP URI, `amqp://` or `amqps://` (then `[bridge.tls]` applies). Default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// Connection name shown by RabbitMQ. Default `warren-bridge`.
    pub connection_name: String,
    /// Bound on one connection attempt (TCP, TLS and AMQP handshake). Default 10.
    #[serde(deserialize_with = "de::uint")]
    pub connect_timeout_secs: u64,
    /// First delay before reconnecting; doubles up to `reconnect_max_ms`. Default 200.
    #[serde(deserialize_with = "de::uint")]
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnection attempts. Default 10 000.
    #[serde(deserialize_with = "de::uint")]
    pub reconnect_max_ms: u64,
    /// First delay before republishing after a nack or a `retry` return; doubles up to
    /// `retry_max_ms`. Default 100.
    #[serde(deserialize_with = "de::uint")]
    pub retry_min_ms: u64,
    /// Longest delay between republishing attempts. Default 5 000.
    #[serde(deserialize_with = "de::uint")]
    pub retry_max_ms: u64,
    /// Returns, drops and connection failures are logged at most once per rule in this many
    /// seconds (with the count since the last line). Default 60.
    #[serde(deserialize_with = "de::uint")]
    pub log_interval_secs: u64,
    /// On shutdown, how long to wait for confirms in flight and inbound publishes. Default 5.
    #[serde(deserialize_with = "de::uint")]
    pub shutdown_grace_secs: u64,
    /// TLS for `amqps://`.
    pub tls: Option<TlsFiles>,
    /// The disk spool for `ack = "spooled"` rules.
    pub spool: Option<SpoolConfig>,
    /// MQTT → AMQP rules.
    pub outbound: Vec<OutboundRule>,
    /// AMQP → MQTT rules.
    pub inbound: Vec<InboundRule>,
    /// Standalone mode only (`warren bridge`): the MQTT broker to bridge. Ignored in process.
    pub mqtt: Option<StandaloneMqtt>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            enabled: false,
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            connection_name: "warren-bridge".into(),
            connect_timeout_secs: 10,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            retry_min_ms: 100,
            retry_max_ms: 5_000,
            log_interval_secs: 60,
            shutdown_grace_secs: 5,
            tls: None,
            spool: None,
            outbound: Vec::new(),
            inbound: Vec::new(),
            mqtt: None,
        }
    }
}

/// `[bridge.tls]` (and `[bridge.mqtt.tls]`): how to trust the server, and an optional client
/// certificate.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM CA certificate(s) to trust; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM PKCS#8 client key (with `cert_file`).
    pub key_file: Option<PathBuf>,
}

/// `[bridge.spool]`: one file holding every spooled rule's queue.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// The spool file (created if missing). Required.
    pub path: PathBuf,
    /// Most messages held per rule; a full spool back-pressures (QoS 0 is dropped, counted).
    /// Default 1 000 000.
    #[serde(
        default = "SpoolConfig::default_max_messages",
        deserialize_with = "de::uint"
    )]
    pub max_messages: u64,
    /// Largest size of the spool file in bytes, all rules together (redb reuses freed pages but
    /// never shrinks the file, and a record may take twice its size). Default 1 GiB.
    #[serde(
        default = "SpoolConfig::default_max_bytes",
        deserialize_with = "de::uint"
    )]
    pub max_bytes: u64,
}

impl SpoolConfig {
    fn default_max_messages() -> u64 {
        1_000_000
    }
    fn default_max_bytes() -> u64 {
        1 << 30
    }
}

/// `exchange_type`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    /// Routing on the key's words (default).
    #[default]
    Topic,
    /// Exact key.
    Direct,
    /// Every bound queue.
    Fanout,
    /// On headers (the MQTT user properties and `x-mqtt-*`).
    Headers,
}

/// `ack`: when the MQTT side's [`crate::Ack`] completes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// On RabbitMQ's publisher confirm (default). While RabbitMQ is away nothing completes:
    /// the MQTT side back-pressures the publishers.
    #[default]
    Confirmed,
    /// Once fsynced in the disk spool; forwarded in order later; survives a crash.
    Spooled,
    /// At once, into a bounded memory buffer; lost on a crash.
    Received,
}

/// `unroutable`: what to do with a message RabbitMQ returns (no queue took it).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Unroutable {
    /// Drop it (counted, logged once per interval). Default.
    #[default]
    Drop,
    /// Republish with backoff until a queue takes it (keeps the rule's order, holds it up).
    Retry,
    /// Send it to `dead_letter_topic` (MQTT) or `dead_letter_exchange` (AMQP).
    DeadLetter,
}

/// `mapping`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MappingKind {
    /// Reversible, escaped (see [`crate::mapping`]). Default.
    #[default]
    Default,
    /// RabbitMQ's MQTT plugin.
    Rabbitmq,
    /// The rule's `template`.
    Template,
}

/// `headers`: the bridge's own headers on an outbound message.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeaderStyle {
    /// `x-mqtt-topic`, `x-mqtt-client-id`, `x-mqtt-qos` and `x-mqtt-retain`. Default.
    #[default]
    Warren,
    /// RabbitMQ's MQTT plugin's: `x-mqtt-publish-qos` (byte) and `x-mqtt-dup` (boolean), for
    /// backends written against the plugin.
    Rabbitmq,
}

/// `[[bridge.outbound]]`: MQTT → AMQP.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutboundRule {
    /// The rule's name: the `rule` metric label and the spool's table. Default
    /// `outbound-<n>` (n from 1). Unique.
    #[serde(default)]
    pub name: Option<String>,
    /// MQTT filter to subscribe to. Required.
    #[serde(default)]
    pub filter: String,
    /// Maximum QoS to take messages at. Default 2 (every message at its own QoS).
    #[serde(default = "two", deserialize_with = "de::uint")]
    pub qos: u8,
    /// Exchange to publish to. Default `amq.topic`. `""` is the default exchange.
    #[serde(default = "amq_topic")]
    pub exchange: String,
    /// Type to declare the exchange with (durable) unless it is `""` or `amq.*`. Default topic.
    #[serde(default)]
    pub exchange_type: ExchangeType,
    /// Default confirmed.
    #[serde(default)]
    pub ack: AckMode,
    /// Default drop.
    #[serde(default)]
    pub unroutable: Unroutable,
    /// With `unroutable = "dead-letter"`: the MQTT topic to publish returned messages to.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// With `unroutable = "dead-letter"`: the exchange to publish returned messages to.
    #[serde(default)]
    pub dead_letter_exchange: Option<String>,
    /// Default `default`.
    #[serde(default)]
    pub mapping: MappingKind,
    /// With `mapping = "template"`: the routing key template over topic levels.
    #[serde(default)]
    pub template: Option<String>,
    /// Publishes awaiting RabbitMQ's confirm at once. Default 256.
    #[serde(default = "in_flight", deserialize_with = "de::uint")]
    pub max_in_flight: usize,
    /// Messages held by the rule (`confirmed`: awaiting confirm; `received`: the memory
    /// buffer). When full, QoS 0 is dropped (counted) and QoS 1/2 waits. Default 10 000.
    #[serde(default = "buffer", deserialize_with = "de::uint")]
    pub buffer: usize,
    /// A message whose payload is larger is dropped and counted (RabbitMQ would close the
    /// channel on it). Default 134 217 728, RabbitMQ 3.x's default `max_message_size` (4.0 lowered
    /// it to 16 MiB: set this alike there).
    #[serde(default = "max_message", deserialize_with = "de::uint")]
    pub max_message_bytes: usize,
    /// The bridge's own headers: `warren` (default) or `rabbitmq`. User properties and the
    /// MQTT 5 headers are the same in both.
    #[serde(default)]
    pub headers: HeaderStyle,
}

fn max_message() -> usize {
    134_217_728
}

/// `no_subscribers`: what to do with an AMQP delivery no MQTT session takes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NoSubscribers {
    /// Acknowledge it (counted). Default.
    #[default]
    Ack,
    /// Reject it without requeue: the queue's dead-letter exchange gets it.
    Reject,
}

/// `[[bridge.inbound]]`: AMQP → MQTT.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InboundRule {
    /// The rule's name (metric label). Default `inbound-<n>`. Unique.
    #[serde(default)]
    pub name: Option<String>,
    /// Queue to consume; declared durable if missing. Required.
    #[serde(default)]
    pub queue: String,
    /// Exchange to bind the queue to. Default `amq.topic`.
    #[serde(default = "amq_topic")]
    pub exchange: String,
    /// Binding keys (patterns). Default none: the queue is consumed as it is bound.
    #[serde(default)]
    pub bindings: Vec<String>,
    /// QoS to publish into MQTT with. Default 1.
    #[serde(default = "one", deserialize_with = "de::uint")]
    pub qos: u8,
    /// Publish retained. Default false.
    #[serde(default)]
    pub retain: bool,
    /// Unacknowledged deliveries at once (basic.qos). Default 64.
    #[serde(default = "prefetch", deserialize_with = "de::uint")]
    pub prefetch: u16,
    /// Default `default`.
    #[serde(default)]
    pub mapping: MappingKind,
    /// With `mapping = "template"`: the topic template over routing key words.
    #[serde(default)]
    pub template: Option<String>,
    /// Default ack.
    #[serde(default)]
    pub no_subscribers: NoSubscribers,
    /// How long to wait for the MQTT side to own a message before requeueing it. Default 30.
    #[serde(default = "publish_timeout", deserialize_with = "de::uint")]
    pub publish_timeout_secs: u64,
}

/// `[bridge.mqtt]`: the MQTT broker a standalone bridge (`warren bridge`) connects to, as an
/// MQTT 5 client with a persistent session.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneMqtt {
    /// Default `127.0.0.1`.
    pub host: String,
    /// Default 1883.
    #[serde(deserialize_with = "de::uint")]
    pub port: u16,
    /// Default `warren-bridge`.
    pub client_id: String,
    /// Optional user name.
    pub username: Option<String>,
    /// Optional password (with `username`).
    pub password: Option<String>,
    /// Default 30.
    #[serde(deserialize_with = "de::uint")]
    pub keep_alive_secs: u64,
    /// Session Expiry Interval asked for, so that messages not yet owned by the bridge are
    /// redelivered after a restart. Default 86 400.
    #[serde(deserialize_with = "de::uint")]
    pub session_expiry_secs: u32,
    /// TLS to the broker.
    pub tls: Option<TlsFiles>,
}

impl Default for StandaloneMqtt {
    fn default() -> Self {
        StandaloneMqtt {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "warren-bridge".into(),
            username: None,
            password: None,
            keep_alive_secs: 30,
            session_expiry_secs: 86_400,
            tls: None,
        }
    }
}

fn amq_topic() -> String {
    "amq.topic".into()
}
fn one() -> u8 {
    1
}
fn two() -> u8 {
    2
}
fn in_flight() -> usize {
    256
}
fn buffer() -> usize {
    10_000
}
fn prefetch() -> u16 {
    64
}
fn publish_timeout() -> u64 {
    30
}

impl OutboundRule {
    /// A rule with `filter` and every default (for tests and programmatic use).
    pub fn new(filter: impl Into<String>) -> OutboundRule {
        OutboundRule {
            name: None,
            filter: filter.into(),
            qos: two(),
            exchange: amq_topic(),
            exchange_type: ExchangeType::Topic,
            ack: AckMode::Confirmed,
            unroutable: Unroutable::Drop,
            dead_letter_topic: None,
            dead_letter_exchange: None,
            mapping: MappingKind::Default,
            template: None,
            max_in_flight: in_flight(),
            buffer: buffer(),
            max_message_bytes: max_message(),
            headers: HeaderStyle::Warren,
        }
    }
}

impl InboundRule {
    /// A rule for `queue` with every default.
    pub fn new(queue: impl Into<String>) -> InboundRule {
        InboundRule {
            name: None,
            queue: queue.into(),
            exchange: amq_topic(),
            bindings: Vec::new(),
            qos: one(),
            retain: false,
            prefetch: prefetch(),
            mapping: MappingKind::Default,
            template: None,
            no_subscribers: NoSubscribers::Ack,
            publish_timeout_secs: publish_timeout(),
        }
    }
}
