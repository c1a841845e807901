//! Typed configuration.
//!
//! Layers, lowest first: the serde defaults of these types, then one TOML file (the embedded
//! `config/warren.toml` when no path is given, else the file at the path), then environment
//! variables `WARREN__SECTION__KEY` (e.g. `WARREN__MQTT__MAX_INFLIGHT=64`,
//! `WARREN__LISTENERS__TCP__BIND=127.0.0.1:1884`). The result is checked by
//! [`Config::validate`]. Every error names where the bad value came from (the file or "the
//! environment"), the dotted key and the reason.
//!
//! Environment values are strings; the `config` crate converts them for typed fields (numbers
//! are parsed, booleans accept `true/false`, `1/0`, `yes/no`, `on/off`). `try_parsing` is not
//! used: it rewrites strings that look like numbers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::topic::MAX_TOPIC_LEVELS;
pub use crate::router::ShareStrategy;

/// The default configuration file, built into the binary.
pub const EMBEDDED_TOML: &str = include_str!("../config/warren.toml");

/// How the embedded file is named in error messages.
const EMBEDDED_NAME: &str = "config/warren.toml";

/// The origin the `config` crate gives to values from environment variables.
const ENV_ORIGIN: &str = "the environment";

/// The largest total packet size MQTT can express.
const MAX_PACKET_SIZE_LIMIT: u32 = 268_435_460;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub log: LogConfig,
    /// Listeners by name. A file that has any `[listeners.*]` table replaces the default set.
    pub listeners: BTreeMap<String, ListenerConfig>,
    pub mqtt: MqttConfig,
    pub metrics: MetricsConfig,
    pub bridge: BridgeConfig,
    pub runtime: RuntimeConfig,
    /// `[auth]`: authentication and ACLs (see [`crate::auth`]).
    pub auth: AuthConfig,
    pub store: StoreConfig,
    /// `[admin]`: the admin HTTP API and web console (see [`crate::admin`]).
    pub admin: AdminConfig,
}

/// `[admin]`: the admin HTTP API (`/api/v1/...`) and the web console (`/`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API and console. Default true.
    pub enabled: bool,
    /// Address of the admin listener. Default `127.0.0.1:9884`. Without tokens it must be a
    /// loopback address.
    pub bind: SocketAddr,
    /// SHA-256 digests (64 hex digits) of the bearer tokens accepted. Default none.
    pub tokens: Vec<String>,
    /// A file of more digests, one a line (`#` starts a comment). Default none.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 9884)),
            tokens: Vec::new(),
            token_file: None,
        }
    }
}

/// `[store]`: where persistent sessions and retained messages live.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Default [`StoreKind::Memory`].
    pub kind: StoreKind,
    /// The store's file (kind = "disk"). Default `warren.store`.
    pub path: PathBuf,
    /// Default [`Fsync::Batch`].
    pub fsync: Fsync,
    /// Default 2: how long the writer gathers changes into one commit (fsync = "batch"), and
    /// how often it writes them out (fsync = "never").
    #[serde(deserialize_with = "strict::uint")]
    pub batch_interval_ms: u64,
    /// Default 1 GiB: the largest size of the store's file; past half of it (the file doubles
    /// when it grows), new persistent work is refused and the file is compacted.
    #[serde(deserialize_with = "strict::uint")]
    pub max_disk_bytes: u64,
}

/// `store.kind`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Sessions and retained messages live in memory only: a restart forgets them.
    #[default]
    Memory,
    /// Persistent sessions and retained messages are also written to `store.path`.
    Disk,
}

/// `store.fsync`: when a change is on disk, and what PUBACK waits for.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// Every commit is fsynced, and the writer commits as soon as it has changes (group commit
    /// of whatever queued up during the previous one). PUBACK waits for it.
    Always,
    /// Changes are gathered for `batch_interval_ms`, then committed with one fsync. PUBACK
    /// waits for it.
    #[default]
    Batch,
    /// Commits are not fsynced and PUBACK does not wait: what was written survives a crash of
    /// the process, not of the machine.
    Never,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Memory,
            path: PathBuf::from("warren.store"),
            fsync: Fsync::Batch,
            batch_interval_ms: 2,
            max_disk_bytes: 1 << 30,
        }
    }
}

pub use crate::auth::config::{AuthConfig, HttpAuthConfig, IdentityField, JwtConfig, MatchField};
pub(crate) use strict::uint as strict_uint;

/// `[runtime]`: the threads the broker runs on.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Where the broker writes its process id at start (removed at stop), for `warren reload`.
    /// Default: none.
    pub pid_file: Option<PathBuf>,
    /// Default 0: one worker per CPU. 1: one thread, which handles connections' input in the
    /// order it arrived (a SUBSCRIBE read before another client's PUBLISH is handled first).
    #[serde(deserialize_with = "strict::uint")]
    pub worker_threads: usize,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing-subscriber `EnvFilter` syntax. Default `"info"`.
    pub level: String,
    /// Default [`LogFormat::Text`].
    pub format: LogFormat,
}

/// `log.format`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[listeners.<name>]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Default [`ListenerKind::Tcp`].
    pub kind: ListenerKind,
    /// Default `127.0.0.1:1883`.
    pub bind: SocketAddr,
    /// Default 100 000.
    #[serde(deserialize_with = "strict::uint")]
    pub max_connections: usize,
    /// Seconds of silence before TCP keepalive probes start (then every 10 s, 5 probes);
    /// 0 turns them off. Default 60.
    #[serde(deserialize_with = "strict::uint")]
    pub tcp_keepalive_secs: u64,
    /// `TCP_USER_TIMEOUT`: seconds written data may stay unacknowledged by the peer before the
    /// kernel drops the connection; 0 leaves the system default. Default 60.
    #[serde(deserialize_with = "strict::uint")]
    pub tcp_user_timeout_secs: u64,
    /// Required if and only if `kind` is `tls` or `wss`.
    pub tls: Option<TlsConfig>,
    /// WebSocket listeners only: the HTTP path of the upgrade request. Default `/mqtt`.
    pub path: Option<String>,
    /// Every connection starts with a PROXY protocol v1 or v2 header (HAProxy, cloud load
    /// balancers); its source address is the client's. Default false.
    pub proxy_protocol: bool,
    /// New connections a second from one source address (IPv6: one /64); 0 means no limit.
    /// Default 0.
    #[serde(deserialize_with = "strict::uint")]
    pub max_connection_rate: u32,
    /// Connections one source address may open at once above `max_connection_rate`; 0 means
    /// one second's worth. Default 0.
    #[serde(deserialize_with = "strict::uint")]
    pub max_connection_burst: u32,
    /// Overrides `auth.allow_anonymous` for this listener.
    pub allow_anonymous: Option<bool>,
    /// The client certificate's identity ([`IdentityField`]) is the username, and no password
    /// is needed (needs `tls.client_auth`). Default false.
    pub use_identity_as_username: bool,
    /// Which part of the certificate is the identity. Default [`IdentityField::Cn`].
    pub identity_field: IdentityField,
}

/// `listeners.<name>.kind`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    #[default]
    Tcp,
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    /// True for the kinds that take a `tls` table.
    pub fn uses_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// True for the WebSocket kinds.
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }

    /// The name used in the config and in logs.
    pub fn label(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

/// `[listeners.<name>.tls]`. `cert` and `key` have no default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificate(s) for client certificates; required unless `client_auth` is `none`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Default [`ClientAuth::None`].
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// `listeners.<name>.tls.client_auth`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one is accepted, an invalid one is refused.
    Optional,
    /// A client without a valid certificate is refused.
    Required,
}

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Default 1 048 576; 1..=268 435 460.
    #[serde(deserialize_with = "strict::uint")]
    pub max_packet_size: u32,
    /// Default 10: close a connection that sends no CONNECT within this.
    #[serde(deserialize_with = "strict::uint")]
    pub connect_timeout_secs: u64,
    /// Default 65535; v5: a larger client keep alive is replaced via Server Keep Alive.
    #[serde(deserialize_with = "strict::uint")]
    pub max_keep_alive_secs: u16,
    /// Default 32: outgoing QoS 1/2 messages awaiting ack per session (>= 1).
    #[serde(deserialize_with = "strict::uint")]
    pub max_inflight: u16,
    /// Default 1000: per session queue (offline + waiting for inflight room).
    #[serde(deserialize_with = "strict::uint")]
    pub max_queued_messages: usize,
    /// Default 16 MiB (payload bytes) per session queue.
    #[serde(deserialize_with = "strict::uint")]
    pub max_queued_bytes: usize,
    /// Default false (like Mosquitto's `queue_qos0_messages`).
    pub queue_qos0_offline: bool,
    /// Default `u32::MAX` (never): cap on 5.0 session expiry.
    #[serde(deserialize_with = "strict::uint")]
    pub max_session_expiry_secs: u32,
    /// Default `u32::MAX` (never): expiry of 3.1.1 `clean_session=false` sessions.
    #[serde(deserialize_with = "strict::uint")]
    pub persistent_session_expiry_secs: u32,
    /// Default true.
    pub retain_available: bool,
    /// Default 2: the highest QoS accepted on PUBLISH (5.0: Maximum QoS in CONNACK; above it,
    /// DISCONNECT 0x9B) and granted on SUBSCRIBE; 0..=2.
    #[serde(deserialize_with = "strict::uint")]
    pub maximum_qos: u8,
    /// Default "" (none): a 5.0 client that sets Request Response Information gets Response
    /// Information `<prefix><client id>` in CONNACK.
    pub response_information_prefix: String,
    /// Default "" (none): when set, every CONNECT is refused and sent there: 5.0 clients get
    /// CONNACK 0x9C Use another server (0x9D Server moved with `server_moved`) with this as
    /// Server Reference; 3.1.1 clients get return code 3 (server unavailable).
    pub server_reference: String,
    /// Default false: with `server_reference`, the move is permanent (0x9D instead of 0x9C).
    pub server_moved: bool,
    /// Default true.
    pub allow_zero_length_client_id: bool,
    /// Default 5.
    #[serde(deserialize_with = "strict::uint")]
    pub shutdown_grace_secs: u64,
    /// Default 256: incoming QoS 1/2 PUBLISH unanswered per connection (5.0 Receive Maximum).
    #[serde(deserialize_with = "strict::uint")]
    pub receive_maximum: u16,
    /// Default 10: 5.0 Topic Aliases a client may set (advertised in CONNACK); 0 allows none.
    #[serde(deserialize_with = "strict::uint")]
    pub topic_alias_maximum: u16,
    /// Default 10: 5.0 Topic Aliases the server assigns on a connection, within the client's
    /// own Topic Alias Maximum (least recently used replaced first); 0 assigns none.
    #[serde(deserialize_with = "strict::uint")]
    pub outgoing_topic_alias_maximum: u16,
    /// Default 30000: how long an owner (a full queue, the bridge) may hold a PUBLISH's answer.
    #[serde(deserialize_with = "strict::uint")]
    pub ack_timeout_ms: u64,
    /// Default 10000: how long publishers may wait for room in a subscriber's queue before the
    /// subscriber pays ([`SlowSubscriberPolicy`]).
    #[serde(deserialize_with = "strict::uint")]
    pub slow_subscriber_timeout_ms: u64,
    /// Default [`SlowSubscriberPolicy::Disconnect`].
    pub slow_subscriber: SlowSubscriberPolicy,
    /// Default [`ShareStrategy::RoundRobin`]: how a shared subscription's member is chosen.
    pub shared_subscription_strategy: ShareStrategy,
    /// Default 30: a connection whose output makes no progress this long is closed.
    #[serde(deserialize_with = "strict::uint")]
    pub write_timeout_secs: u64,
    /// Default 30: a started packet must be complete within this.
    #[serde(deserialize_with = "strict::uint")]
    pub packet_timeout_secs: u64,
    /// Default 65536: the largest first packet (CONNECT) accepted.
    #[serde(deserialize_with = "strict::uint")]
    pub max_connect_packet_size: u32,
    /// Default 128: user properties accepted in one packet.
    #[serde(deserialize_with = "strict::uint")]
    pub max_user_properties: usize,
    /// Default 1000: subscriptions one session may hold.
    #[serde(deserialize_with = "strict::uint")]
    pub max_subscriptions_per_client: usize,
    /// Default 65535: bytes of a topic name or filter (PUBLISH, SUBSCRIBE, will); 1..=65535.
    #[serde(deserialize_with = "strict::uint")]
    pub max_topic_length: usize,
    /// Default 128: levels of a topic name or filter; 1..=[`MAX_TOPIC_LEVELS`].
    #[serde(deserialize_with = "strict::uint")]
    pub max_topic_levels: usize,
    /// Default 0 (no limit): PUBLISH packets a second one client may send; past it, its
    /// PUBLISH input is paused (acks and pings are still read).
    #[serde(deserialize_with = "strict::uint")]
    pub max_publish_rate: u32,
    /// Default 0 (one second's worth): PUBLISH packets a client may send at once above
    /// `max_publish_rate`.
    #[serde(deserialize_with = "strict::uint")]
    pub max_publish_burst: u32,
    /// Default 0 (no limit): PUBLISH bytes (topic and payload) a second one client may send,
    /// with one second's worth as burst; enforced like `max_publish_rate`.
    #[serde(deserialize_with = "strict::uint")]
    pub max_publish_bytes_rate: u64,
}

/// `mqtt.slow_subscriber`: what happens to a connected subscriber whose queue has kept a
/// publisher waiting longer than `slow_subscriber_timeout_ms`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SlowSubscriberPolicy {
    /// It is disconnected (5.0: DISCONNECT 0x97); a persistent session keeps its queue.
    #[default]
    Disconnect,
    /// Its queued QoS 0 messages are dropped; if that does not make room, it is disconnected.
    DropQos0,
}

/// `[metrics]`: the Prometheus endpoint and `$SYS` topics.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz`. Default true.
    pub enabled: bool,
    /// Address of the metrics listener. Default `127.0.0.1:9883` (this machine only, as the
    /// admin API); bind it to `0.0.0.0` to let a Prometheus elsewhere scrape it.
    pub bind: SocketAddr,
    /// Seconds between `$SYS/broker/...` updates; 0 turns `$SYS` off. Default 10.
    #[serde(deserialize_with = "strict::uint")]
    pub sys_interval_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 9883)),
            sys_interval_secs: 10,
        }
    }
}

/// `[bridge]`: the AMQP bridge's own table (crate `warren-bridge`), checked by
/// [`BridgeConfig::check`] as part of [`Config::validate`].
pub use warren_bridge::BridgeConfig;

/// Why a configuration could not be loaded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file given could not be read (missing, unreadable, not a file).
    #[error("{}: cannot read the configuration file: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// The file is not valid TOML.
    #[error("{origin}: {reason}")]
    Syntax { origin: String, reason: String },
    /// A key is unknown, has the wrong type or a value out of range.
    /// `origin` is the file name or "the environment"; `key` is dotted (`mqtt.max_inflight`).
    #[error("{origin}: {key}: {reason}")]
    Invalid {
        origin: String,
        key: String,
        reason: String,
    },
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            kind: ListenerKind::Tcp,
            bind: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_connections: 100_000,
            tcp_keepalive_secs: 60,
            tcp_user_timeout_secs: 60,
            tls: None,
            path: None,
            proxy_protocol: false,
            max_connection_rate: 0,
            max_connection_burst: 0,
            allow_anonymous: None,
            use_identity_as_username: false,
            identity_field: IdentityField::Cn,
        }
    }
}

impl ListenerConfig {
    /// The WebSocket path (`path`, default `/mqtt`).
    pub fn ws_path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_WS_PATH)
    }
}

/// The default `path` of a WebSocket listener.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1_048_576,
            connect_timeout_secs: 10,
            max_keep_alive_secs: 65535,
            max_inflight: 32,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            queue_qos0_offline: false,
            max_session_expiry_secs: u32::MAX,
            persistent_session_expiry_secs: u32::MAX,
            retain_available: true,
            maximum_qos: 2,
            response_information_prefix: String::new(),
            server_reference: String::new(),
            server_moved: false,
            allow_zero_length_client_id: true,
            shutdown_grace_secs: 5,
            receive_maximum: 256,
            topic_alias_maximum: 10,
            outgoing_topic_alias_maximum: 10,
            ack_timeout_ms: 30_000,
            slow_subscriber_timeout_ms: 10_000,
            slow_subscriber: SlowSubscriberPolicy::Disconnect,
            shared_subscription_strategy: ShareStrategy::RoundRobin,
            write_timeout_secs: 30,
            packet_timeout_secs: 30,
            max_connect_packet_size: 65_536,
            max_user_properties: 128,
            max_subscriptions_per_client: 1000,
            max_topic_length: 65_535,
            max_topic_levels: MAX_TOPIC_LEVELS,
            max_publish_rate: 0,
            max_publish_burst: 0,
            max_publish_bytes_rate: 0,
        }
    }
}

/// Equal to the embedded `config/warren.toml` (a unit test checks it).
impl Default for Config {
    fn default() -> Self {
        Self {
            log: LogConfig::default(),
            listeners: BTreeMap::from([("tcp".to_owned(), ListenerConfig::default())]),
            mqtt: MqttConfig::default(),
            metrics: MetricsConfig::default(),
            bridge: BridgeConfig::default(),
            runtime: RuntimeConfig::default(),
            auth: AuthConfig::default(),
            store: StoreConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Config {
    /// Loads defaults < the file at `path` (or the embedded default file if `None`) < the
    /// environment (`env`, or the process environment if `None`), then validates.
    pub fn load(
        path: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Config, ConfigError> {
        use config::{Environment, File, FileFormat};

        let (text, file_name) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File {
                    path: p.to_path_buf(),
                    reason: e.to_string(),
                })?;
                (text, p.display().to_string())
            }
            None => (EMBEDDED_TOML.to_owned(), EMBEDDED_NAME.to_owned()),
        };
        let env_map: Vec<(String, String)> = match env {
            Some(map) => map.into_iter().collect(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        };
        let origins = Origins::new(&env_map, file_name);
        let env_source = Environment::with_prefix("WARREN")
            .prefix_separator("__")
            .separator("__")
            .ignore_empty(true)
            .source(Some(env_map.into_iter().collect()));
        let cfg: Config = config::Config::builder()
            .add_source(File::from_str(&text, FileFormat::Toml))
            .add_source(env_source)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| convert_error(e, &origins))?;
        cfg.check()
            .map_err(|(key, reason, origin_key)| ConfigError::Invalid {
                origin: origins.of(&origin_key),
                key,
                reason,
            })?;
        Ok(cfg)
    }

    /// The default configuration for tests: the single listener "tcp" on 127.0.0.1:0 (an
    /// ephemeral port), `connect_timeout_secs` 5, `shutdown_grace_secs` 1, the metrics
    /// listener on 127.0.0.1:0 and `$SYS` off (its retained topics would count in every test).
    pub fn for_tests() -> Config {
        let mut cfg = Config::default();
        cfg.listeners
            .get_mut("tcp")
            .expect("the default has a listener named tcp")
            .bind = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg.mqtt.connect_timeout_secs = 5;
        cfg.mqtt.shutdown_grace_secs = 1;
        cfg.metrics.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg.metrics.sys_interval_secs = 0;
        cfg.admin.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg
    }

    /// Checks ranges and cross-field rules. [`Config::load`] calls it; call it yourself on a
    /// configuration built in code. The origin in the error is "configuration".
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check()
            .map_err(|(key, reason, _)| ConfigError::Invalid {
                origin: "configuration".to_owned(),
                key,
                reason,
            })
    }

    /// `Err((key, reason, key whose origin to report))`.
    fn check(&self) -> Result<(), (String, String, String)> {
        fn bad(key: String, reason: impl Into<String>) -> Result<(), (String, String, String)> {
            Err((key.clone(), reason.into(), key))
        }
        let m = &self.mqtt;
        if !(1..=MAX_PACKET_SIZE_LIMIT).contains(&m.max_packet_size) {
            return bad(
                "mqtt.max_packet_size".into(),
                format!(
                    "must be between 1 and {MAX_PACKET_SIZE_LIMIT} (got {})",
                    m.max_packet_size
                ),
            );
        }
        if m.maximum_qos > 2 {
            return bad(
                "mqtt.maximum_qos".into(),
                format!("must be 0, 1 or 2 (got {})", m.maximum_qos),
            );
        }
        if m.max_inflight == 0 {
            return bad("mqtt.max_inflight".into(), "must be at least 1 (got 0)");
        }
        for (key, value) in [
            ("receive_maximum", u64::from(m.receive_maximum)),
            ("ack_timeout_ms", m.ack_timeout_ms),
            ("slow_subscriber_timeout_ms", m.slow_subscriber_timeout_ms),
            ("write_timeout_secs", m.write_timeout_secs),
            ("packet_timeout_secs", m.packet_timeout_secs),
            (
                "max_connect_packet_size",
                u64::from(m.max_connect_packet_size),
            ),
        ] {
            if value == 0 {
                return bad(format!("mqtt.{key}"), "must be at least 1 (got 0)");
            }
        }
        if !(1..=65_535).contains(&m.max_topic_length) {
            return bad(
                "mqtt.max_topic_length".into(),
                format!("must be between 1 and 65535 (got {})", m.max_topic_length),
            );
        }
        if !(1..=MAX_TOPIC_LEVELS).contains(&m.max_topic_levels) {
            return bad(
                "mqtt.max_topic_levels".into(),
                format!(
                    "must be between 1 and {MAX_TOPIC_LEVELS} (got {})",
                    m.max_topic_levels
                ),
            );
        }
        if m.slow_subscriber_timeout_ms >= m.ack_timeout_ms {
            return Err((
                "mqtt.slow_subscriber_timeout_ms".into(),
                format!(
                    "must be below mqtt.ack_timeout_ms ({}), or publishers waiting for a slow \
                     subscriber would be disconnected before the subscriber pays (got {})",
                    m.ack_timeout_ms, m.slow_subscriber_timeout_ms
                ),
                "mqtt.slow_subscriber_timeout_ms".into(),
            ));
        }
        if self.listeners.is_empty() {
            return bad("listeners".into(), "at least one listener is required");
        }
        for (name, l) in &self.listeners {
            let key = format!("listeners.{name}");
            if name.is_empty() {
                return bad(key, "a listener name must not be empty");
            }
            // Environment variables are lowercased and split at `__`: other names could not
            // be overridden, and `TCP` would silently become a second listener `tcp`.
            if !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
                || name.contains("__")
            {
                return bad(
                    key,
                    "a listener name may only hold lowercase letters, digits, '_' and '-' \
                     (and no \"__\")",
                );
            }
            match (l.kind.uses_tls(), &l.tls) {
                (true, None) => {
                    return Err((
                        format!("{key}.tls"),
                        format!(
                            "kind is \"{}\" but there is no tls table (cert, key)",
                            l.kind.label()
                        ),
                        format!("{key}.kind"),
                    ))
                }
                (false, Some(_)) => {
                    return Err((
                        format!("{key}.tls"),
                        "a tls table needs kind = \"tls\" or \"wss\"".into(),
                        format!("{key}.tls"),
                    ))
                }
                _ => {}
            }
            match (&l.path, l.kind.is_websocket()) {
                (Some(_), false) => {
                    return Err((
                        format!("{key}.path"),
                        "a path needs kind = \"ws\" or \"wss\"".into(),
                        format!("{key}.path"),
                    ))
                }
                (Some(path), true)
                    if !path.starts_with('/') || path.contains(char::is_whitespace) =>
                {
                    return bad(
                        format!("{key}.path"),
                        format!("must start with '/' and hold no spaces (got {path:?})"),
                    )
                }
                _ => {}
            }
            if l.use_identity_as_username
                && l.tls
                    .as_ref()
                    .is_none_or(|t| t.client_auth == ClientAuth::None)
            {
                return bad(
                    format!("{key}.use_identity_as_username"),
                    "needs a TLS listener that asks for client certificates \
                     (tls.client_auth = \"required\" or \"optional\")",
                );
            }
            if let Some(tls) = &l.tls {
                if tls.client_auth != ClientAuth::None && tls.client_ca.is_none() {
                    return Err((
                        format!("{key}.tls.client_ca"),
                        format!(
                            "required when client_auth is \"{}\"",
                            match tls.client_auth {
                                ClientAuth::Optional => "optional",
                                _ => "required",
                            }
                        ),
                        format!("{key}.tls.client_auth"),
                    ));
                }
            }
        }
        if let Err((key, reason)) = self.auth.check() {
            return Err((key.clone(), reason, key));
        }
        let st = &self.store;
        if st.batch_interval_ms > 10_000 {
            return bad(
                "store.batch_interval_ms".into(),
                format!("must be at most 10000 (got {})", st.batch_interval_ms),
            );
        }
        if st.fsync == Fsync::Batch && st.batch_interval_ms == 0 {
            return bad(
                "store.batch_interval_ms".into(),
                "must be at least 1 with fsync = \"batch\" (use fsync = \"always\" for no wait)",
            );
        }
        if st.max_disk_bytes < 4 << 20 {
            return bad(
                "store.max_disk_bytes".into(),
                format!("must be at least 4194304 (got {})", st.max_disk_bytes),
            );
        }
        if st.kind == StoreKind::Disk && st.path.as_os_str().is_empty() {
            return bad(
                "store.path".into(),
                "must not be empty with kind = \"disk\"",
            );
        }
        // Rules are checked even when the bridge is off: a typo should not wait for the day
        // it is turned on.
        if let Err(error) = self.bridge.check() {
            return Err((error.key.clone(), error.reason, error.key));
        }
        for (i, token) in self.admin.tokens.iter().enumerate() {
            if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(
                    format!("admin.tokens[{i}]"),
                    "must be the SHA-256 digest of a token, 64 hex digits (`warren ctl hash-token`)",
                );
            }
        }
        Ok(())
    }
}

/// Integers without the `config` crate's coercions: it turns `true` into 1, `1.5` into 2 and
/// the strings "yes"/"on" into 1. Accepted: an integer in range, or a string of decimal digits
/// (what an environment variable gives).
mod strict {
    use std::fmt;
    use std::marker::PhantomData;
    use std::str::FromStr;

    use serde::de::{self, Deserializer, Unexpected, Visitor};

    pub(crate) fn uint<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64> + FromStr + Bounded,
    {
        d.deserialize_any(UintVisitor(PhantomData))
    }

    /// The largest value of an unsigned type, for messages.
    pub(crate) trait Bounded {
        const MAX: u64;
    }
    impl Bounded for u8 {
        const MAX: u64 = u8::MAX as u64;
    }
    impl Bounded for u16 {
        const MAX: u64 = u16::MAX as u64;
    }
    impl Bounded for u32 {
        const MAX: u64 = u32::MAX as u64;
    }
    impl Bounded for u64 {
        const MAX: u64 = u64::MAX;
    }
    impl Bounded for usize {
        const MAX: u64 = usize::MAX as u64;
    }

    struct UintVisitor<T>(PhantomData<T>);

    impl<T: TryFrom<u64> + FromStr + Bounded> Visitor<'_> for UintVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an integer from 0 to {}", T::MAX)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
            }
        }

        fn visit_u128<E: de::Error>(self, v: u128) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Other("a huge integer"), &self)),
            }
        }

        fn visit_i128<E: de::Error>(self, v: i128) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Other("a huge integer"), &self)),
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            let t = v.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::invalid_type(Unexpected::Str(v), &self));
            }
            match t.parse::<u64>() {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::invalid_value(Unexpected::Str(v), &self)),
            }
        }
    }
}

/// Tells where the value at a dotted key came from: "the environment" if a non-empty
/// `WARREN__…` variable sets it or something under it (the environment is the top layer), else
/// the file. (The `config` crate records origins, but loses them on every public accessor.)
struct Origins {
    env_keys: Vec<String>,
    file_name: String,
}

impl Origins {
    fn new(env: &[(String, String)], file_name: String) -> Self {
        // The same mapping as config::Environment: lowercase, strip the prefix, `__` -> `.`.
        let env_keys = env
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .filter_map(|(k, _)| {
                let k = k.to_lowercase();
                Some(k.strip_prefix("warren__")?.replace("__", "."))
            })
            .collect();
        Self {
            env_keys,
            file_name,
        }
    }

    fn of(&self, key: &str) -> String {
        let from_env = !key.is_empty()
            && self.env_keys.iter().any(|k| {
                k == key || (k.starts_with(key) && k.as_bytes().get(key.len()) == Some(&b'.'))
            });
        if from_env {
            ENV_ORIGIN.to_owned()
        } else {
            self.file_name.clone()
        }
    }
}

/// Turns a `config` crate error into one that names the origin, the key and the reason.
fn convert_error(err: config::ConfigError, origins: &Origins) -> ConfigError {
    use config::ConfigError as E;
    match err {
        E::FileParse { cause, .. } => ConfigError::Syntax {
            origin: origins.file_name.clone(),
            reason: cause.to_string().trim_end().to_owned(),
        },
        E::Type {
            unexpected,
            expected,
            key,
            ..
        } => {
            let key = key.unwrap_or_default();
            ConfigError::Invalid {
                origin: origins.of(&key),
                reason: format!("invalid type: {unexpected}, expected {expected}"),
                key,
            }
        }
        E::NotFound(key) => ConfigError::Invalid {
            origin: origins.of(key.rsplit_once('.').map_or("", |(p, _)| p)),
            key,
            reason: "required key missing".to_owned(),
        },
        E::At { error, key, .. } => message_error(*error, &key.unwrap_or_default(), origins),
        other @ E::Message(_) => message_error(other, "", origins),
        other => ConfigError::Syntax {
            origin: origins.file_name.clone(),
            reason: other.to_string(),
        },
    }
}

/// A serde message error about the table at `parent` ("" for the root).
fn message_error(error: config::ConfigError, parent: &str, origins: &Origins) -> ConfigError {
    let msg = match error {
        config::ConfigError::Message(m) => m,
        other => other.to_string(),
    };
    // serde: "unknown field `x`, expected one of ..." / "missing field `x`"
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let key = if parent.is_empty() {
                field.to_owned()
            } else {
                format!("{parent}.{field}")
            };
            let expected = expected.trim_start_matches(", ");
            return ConfigError::Invalid {
                origin: origins.of(&key),
                reason: if expected.is_empty() {
                    "unknown key".to_owned()
                } else {
                    format!("unknown key ({expected})")
                },
                key,
            };
        }
    }
    ConfigError::Invalid {
        origin: origins.of(parent),
        key: parent.to_owned(),
        reason: msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Writes `text` to a fresh file under the temp dir and returns its path.
    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("warren-config-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("warren.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_file(name: &str, text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let path = temp_file(name, text);
        let res = Config::load(Some(&path), env(vars));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        res
    }

    fn invalid(err: ConfigError) -> (String, String, String) {
        match err {
            ConfigError::Invalid {
                origin,
                key,
                reason,
            } => (origin, key, reason),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn embedded_file_is_the_default() {
        let cfg = Config::load(None, env(&[])).unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
        Config::for_tests().validate().unwrap();
        assert_eq!(
            Config::for_tests().listeners["tcp"].bind,
            "127.0.0.1:0".parse().unwrap()
        );
    }

    #[test]
    fn commented_tls_example_parses() {
        let example: String = EMBEDDED_TOML
            .lines()
            .skip_while(|l| !l.starts_with("# [listeners.tls]"))
            .take_while(|l| {
                !l.starts_with("[mqtt]")
                    && !l.starts_with("[auth]")
                    && !l.starts_with("# MQTT over WebSocket")
            })
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = load_file("example", &example, &[]).unwrap();
        let l = &cfg.listeners["tls"];
        assert_eq!(l.kind, ListenerKind::Tls);
        let tls = l.tls.as_ref().unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Required);
        assert_eq!(tls.cert, Path::new("certs/server.pem"));
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("certs/ca.pem")));
    }

    #[test]
    fn commented_websocket_example_parses() {
        let example: String = EMBEDDED_TOML
            .lines()
            .skip_while(|l| !l.starts_with("# [listeners.ws]"))
            .take_while(|l| !l.starts_with("[mqtt]") && !l.starts_with("[auth]"))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = load_file("ws-example", &example, &[]).unwrap();
        assert_eq!(cfg.listeners["ws"].kind, ListenerKind::Ws);
        assert_eq!(cfg.listeners["ws"].ws_path(), "/mqtt");
        assert_eq!(cfg.listeners["wss"].kind, ListenerKind::Wss);
        assert!(cfg.listeners["wss"].tls.is_some());
    }

    #[test]
    fn websocket_proxy_and_limit_rules() {
        let (_, key, reason) =
            invalid(load_file("wss-notls", "[listeners.w]\nkind = \"wss\"\n", &[]).unwrap_err());
        assert_eq!(key, "listeners.w.tls");
        assert!(reason.contains("\"wss\""), "{reason}");
        let err = load_file("path-tcp", "[listeners.t]\npath = \"/mqtt\"\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "listeners.t.path");
        let err = load_file(
            "path-bad",
            "[listeners.w]\nkind = \"ws\"\npath = \"mqtt\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(invalid(err).1, "listeners.w.path");
        let cfg = load_file(
            "ws-ok",
            "[listeners.w]\nkind = \"ws\"\npath = \"/ws\"\nproxy_protocol = true\n\
             max_connection_rate = 5\nmax_connection_burst = 20\n",
            &[],
        )
        .unwrap();
        let w = &cfg.listeners["w"];
        assert_eq!((w.ws_path(), w.proxy_protocol), ("/ws", true));
        assert_eq!((w.max_connection_rate, w.max_connection_burst), (5, 20));
        for (key, value) in [
            ("MAX_TOPIC_LEVELS", "0"),
            ("MAX_TOPIC_LEVELS", "129"),
            ("MAX_TOPIC_LENGTH", "0"),
            ("MAX_TOPIC_LENGTH", "65536"),
        ] {
            let err =
                Config::load(None, env(&[(&format!("WARREN__MQTT__{key}"), value)])).unwrap_err();
            assert_eq!(invalid(err).1, format!("mqtt.{}", key.to_lowercase()));
        }
        let cfg = Config::load(
            None,
            env(&[
                ("WARREN__MQTT__MAX_PUBLISH_RATE", "100"),
                ("WARREN__MQTT__MAX_PUBLISH_BYTES_RATE", "1000000"),
                ("WARREN__LISTENERS__TCP__PROXY_PROTOCOL", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.mqtt.max_publish_rate, 100);
        assert_eq!(cfg.mqtt.max_publish_bytes_rate, 1_000_000);
        assert!(cfg.listeners["tcp"].proxy_protocol);
    }

    #[test]
    fn metrics_and_admin_listen_on_loopback_by_default() {
        let cfg = Config::load(None, env(&[])).unwrap();
        assert_eq!(cfg.metrics.bind, "127.0.0.1:9883".parse().unwrap());
        assert_eq!(cfg.admin.bind, "127.0.0.1:9884".parse().unwrap());
        assert!(cfg.metrics.bind.ip().is_loopback() && cfg.admin.bind.ip().is_loopback());
        let cfg = load_file("metrics", "[metrics]\nenabled = true\n", &[]).unwrap();
        assert!(cfg.metrics.bind.ip().is_loopback());
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(load_file("empty", "", &[]).unwrap(), Config::default());
    }

    #[test]
    fn env_overrides_number_bool_and_listener_bind() {
        let cfg = Config::load(
            None,
            env(&[
                ("WARREN__MQTT__MAX_INFLIGHT", "64"),
                ("WARREN__MQTT__MAX_KEEP_ALIVE_SECS", "600"),
                ("WARREN__MQTT__MAX_SESSION_EXPIRY_SECS", "3600"),
                ("WARREN__MQTT__RETAIN_AVAILABLE", "false"),
                ("WARREN__MQTT__QUEUE_QOS0_OFFLINE", "true"),
                ("WARREN__LISTENERS__TCP__BIND", "127.0.0.1:1884"),
                ("WARREN__LOG__FORMAT", "json"),
                ("WARREN__LOG__LEVEL", "warn,warren=debug"),
                // Ignored: empty, single underscore, other prefix.
                ("WARREN__MQTT__MAX_QUEUED_MESSAGES", ""),
                ("WARREN_MQTT__MAX_INFLIGHT", "7"),
                ("OTHER__MQTT__MAX_INFLIGHT", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.mqtt.max_inflight, 64);
        assert_eq!(cfg.mqtt.max_keep_alive_secs, 600);
        assert_eq!(cfg.mqtt.max_session_expiry_secs, 3600);
        assert!(!cfg.mqtt.retain_available);
        assert!(cfg.mqtt.queue_qos0_offline);
        assert_eq!(cfg.mqtt.max_queued_messages, 1000);
        assert_eq!(cfg.listeners.len(), 1);
        assert_eq!(cfg.listeners["tcp"].bind, "127.0.0.1:1884".parse().unwrap());
        assert_eq!(cfg.listeners["tcp"].max_connections, 100_000);
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.log.level, "warn,warren=debug");
    }

    #[test]
    fn env_can_add_a_listener() {
        let cfg = Config::load(
            None,
            env(&[("WARREN__LISTENERS__EXTRA__BIND", "127.0.0.1:1999")]),
        )
        .unwrap();
        assert_eq!(cfg.listeners.len(), 2);
        assert_eq!(cfg.listeners["extra"].kind, ListenerKind::Tcp);
        assert_eq!(
            cfg.listeners["extra"].bind,
            "127.0.0.1:1999".parse().unwrap()
        );
    }

    #[test]
    fn env_overrides_file() {
        let cfg = load_file(
            "envfile",
            "[mqtt]\nmax_inflight = 10\nretain_available = false\n",
            &[("WARREN__MQTT__MAX_INFLIGHT", "20")],
        )
        .unwrap();
        assert_eq!(cfg.mqtt.max_inflight, 20);
        assert!(!cfg.mqtt.retain_available);
        // Keys the file leaves out take their defaults, listeners included.
        assert_eq!(cfg.listeners, Config::default().listeners);
        assert_eq!(cfg.mqtt.max_packet_size, 1_048_576);
    }

    #[test]
    fn unknown_key_in_file_names_the_key() {
        let err = load_file("unknown", "[mqtt]\nmax_pakcet_size = 10\n", &[]).unwrap_err();
        let msg = err.to_string();
        let (origin, key, reason) = invalid(err);
        assert!(origin.ends_with("warren.toml"), "{msg}");
        assert_eq!(key, "mqtt.max_pakcet_size", "{msg}");
        assert!(reason.starts_with("unknown key"), "{msg}");

        let err = load_file("unknown-top", "[mqt]\nx = 1\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "mqt");
    }

    #[test]
    fn unknown_key_in_env_names_the_key_and_the_environment() {
        let err = Config::load(None, env(&[("WARREN__MQTT__MAX_INFLIGT", "5")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("the environment: mqtt.max_infligt: unknown key"),
            "{msg}"
        );

        let err = Config::load(None, env(&[("WARREN__LISTENERS__TCP__BINDD", "x")])).unwrap_err();
        assert_eq!(invalid(err).1, "listeners.tcp.bindd");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load_file("type", "[mqtt]\nmax_inflight = \"lots\"\n", &[]).unwrap_err();
        let msg = err.to_string();
        let (origin, key, _) = invalid(err);
        assert!(origin.ends_with("warren.toml"), "{msg}");
        assert_eq!(key, "mqtt.max_inflight", "{msg}");

        let err =
            Config::load(None, env(&[("WARREN__MQTT__RETAIN_AVAILABLE", "maybe")])).unwrap_err();
        let msg = err.to_string();
        let (origin, key, _) = invalid(err);
        assert_eq!(
            (origin.as_str(), key.as_str()),
            ("the environment", "mqtt.retain_available"),
            "{msg}"
        );

        // Out of range for the type.
        let err = Config::load(None, env(&[("WARREN__MQTT__MAX_INFLIGHT", "70000")])).unwrap_err();
        let msg = err.to_string();
        let (origin, key, _) = invalid(err);
        assert_eq!(
            (origin.as_str(), key.as_str()),
            ("the environment", "mqtt.max_inflight"),
            "{msg}"
        );

        let err =
            Config::load(None, env(&[("WARREN__LISTENERS__TCP__BIND", "localhost")])).unwrap_err();
        assert_eq!(invalid(err).1, "listeners.tcp.bind");

        let err = load_file("enum", "[log]\nformat = \"xml\"\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "log.format");
    }

    #[test]
    fn bad_range_names_the_key_and_the_reason() {
        let err = Config::load(None, env(&[("WARREN__MQTT__MAX_PACKET_SIZE", "0")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the environment: mqtt.max_packet_size: must be between 1 and 268435460 (got 0)"
        );
        let err = load_file("range", "[mqtt]\nmax_packet_size = 0\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.ends_with(
                "warren.toml: mqtt.max_packet_size: must be between 1 and 268435460 (got 0)"
            ),
            "{msg}"
        );
        let err = load_file("inflight", "[mqtt]\nmax_inflight = 0\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "mqtt.max_inflight");
        let err = load_file(
            "bridge",
            "[bridge]\nenabled = true\n[[bridge.outbound]]\nfilter = \"a/#/b\"\n",
            &[],
        )
        .unwrap_err();
        let (origin, key, _) = invalid(err);
        assert!(origin.ends_with("warren.toml"), "{origin}");
        assert!(key.starts_with("bridge.outbound"), "{key}");
    }

    #[test]
    fn store_keys_are_checked_and_named() {
        let ok = load_file(
            "store-ok",
            "[store]\nkind = \"disk\"\npath = \"/tmp/w.store\"\nfsync = \"always\"\n",
            &[("WARREN__STORE__BATCH_INTERVAL_MS", "7")],
        )
        .unwrap();
        assert_eq!(ok.store.kind, StoreKind::Disk);
        assert_eq!(ok.store.fsync, Fsync::Always);
        assert_eq!(ok.store.batch_interval_ms, 7);
        let err = load_file("store-kind", "[store]\nkind = \"tape\"\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "store.kind");
        let err = load_file("store-fsync", "[store]\nfsync = \"sometimes\"\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "store.fsync");
        let err = load_file("store-max", "[store]\nmax_disk_bytes = 10\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "store.max_disk_bytes");
        let err = load_file("store-batch", "[store]\nbatch_interval_ms = 0\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "store.batch_interval_ms");
        let err = load_file("store-typo", "[store]\nfsycn = \"always\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("fsycn"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let path = std::env::temp_dir().join("warren-no-such-dir/warren.toml");
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(matches!(&err, ConfigError::File { path: p, .. } if *p == path));
        assert!(err.to_string().starts_with(&path.display().to_string()));
    }

    #[test]
    fn toml_syntax_error_names_the_file() {
        let err = load_file("syntax", "[mqtt\n", &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Syntax { origin, .. } if origin.ends_with("warren.toml")),
            "{err:?}"
        );
    }

    #[test]
    fn tls_listener_rules() {
        let err = load_file(
            "tls-missing",
            "[listeners.tls]\nkind = \"tls\"\nbind = \"127.0.0.1:8883\"\n",
            &[],
        )
        .unwrap_err();
        let (_, key, reason) = invalid(err);
        assert_eq!(key, "listeners.tls.tls");
        assert!(reason.contains("no tls table"), "{reason}");

        let err = load_file(
            "tls-on-tcp",
            "[listeners.a.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(invalid(err).1, "listeners.a.tls");

        let err = load_file(
            "tls-ca",
            "[listeners.s]\nkind = \"tls\"\n[listeners.s.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"required\"\n",
            &[],
        )
        .unwrap_err();
        let (_, key, reason) = invalid(err);
        assert_eq!(key, "listeners.s.tls.client_ca");
        assert!(reason.contains("required"), "{reason}");

        let err = load_file(
            "tls-nokey",
            "[listeners.s]\nkind = \"tls\"\n[listeners.s.tls]\ncert = \"c.pem\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(invalid(err).1, "listeners.s.tls.key");

        let cfg = load_file(
            "tls-ok",
            "[listeners.s]\nkind = \"tls\"\nbind = \"127.0.0.1:8883\"\n[listeners.s.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\nclient_auth = \"optional\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            cfg.listeners.len(),
            1,
            "a file's listeners replace the default"
        );
        let tls = cfg.listeners["s"].tls.as_ref().unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Optional);
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("ca.pem")));
    }

    #[test]
    fn listener_names_must_be_env_addressable() {
        let err = load_file("upper", "[listeners.TCP]\nbind = \"127.0.0.1:1\"\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "listeners.TCP");
        let err = load_file("dunder", "[listeners.a__b]\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "listeners.a__b");
        let cfg = load_file("fine", "[listeners.tcp-2_b]\n", &[]).unwrap();
        assert!(cfg.listeners.contains_key("tcp-2_b"));
    }

    #[test]
    fn anonymous_default_is_loopback_only() {
        let auth = AuthConfig::default();
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(auth.anonymous_allowed(None, at("127.0.0.1:1883")));
        assert!(auth.anonymous_allowed(None, at("[::1]:1883")));
        assert!(!auth.anonymous_allowed(None, at("0.0.0.0:1883")));
        assert!(auth.anonymous_allowed(Some(true), at("0.0.0.0:1883")));
        let denying = AuthConfig {
            allow_anonymous: Some(false),
            ..AuthConfig::default()
        };
        assert!(!denying.anonymous_allowed(None, at("127.0.0.1:1883")));
        assert!(denying.anonymous_allowed(Some(true), at("127.0.0.1:1883")));
    }

    #[test]
    fn commented_auth_examples_parse() {
        let example: String = EMBEDDED_TOML
            .lines()
            .skip_while(|l| !l.starts_with("[auth]"))
            .take_while(|l| !l.starts_with("[mqtt]"))
            .map(|l| {
                let l = l.strip_prefix("# ").unwrap_or(l);
                format!("{}\n", l.split("  #").next().unwrap_or(l))
            })
            .filter(|l| !l.starts_with('#') && !l.starts_with("Default"))
            .filter(|l| l.contains('=') || l.starts_with('['))
            .collect();
        let cfg = load_file("auth-example", &example, &[]).unwrap();
        assert_eq!(cfg.auth.allow_anonymous, Some(false));
        let http = cfg.auth.http.unwrap();
        assert_eq!(http.timeout_ms, 2000);
        assert_eq!(http.headers["x-api-key"], "secret");
        let jwt = cfg.auth.jwt.unwrap();
        assert_eq!(jwt.match_field, MatchField::Username);
        assert_eq!(jwt.audience.as_deref(), Some("warren"));

        let err = load_file(
            "identity-on-tcp",
            "[listeners.a]\nuse_identity_as_username = true\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(invalid(err).1, "listeners.a.use_identity_as_username");
        let err = load_file("jwt-empty", "[auth.jwt]\naudience = \"x\"\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "auth.jwt");
    }

    #[test]
    fn no_listener_refused() {
        let err = load_file("nolisteners", "[listeners]\n", &[]).unwrap_err();
        assert_eq!(invalid(err).1, "listeners");
    }
}
