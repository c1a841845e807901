//! Typed configuration. (Temporary stub for the broker core; replaced by the config branch.)
#![allow(missing_docs)]
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub log: LogConfig,
    pub listeners: BTreeMap<String, ListenerConfig>,
    pub mqtt: MqttConfig,
    pub bridge: BridgeConfig,
}
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogFormat {
    Text,
    Json,
}
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub kind: ListenerKind,
    pub bind: SocketAddr,
    pub max_connections: usize,
    pub tls: Option<TlsConfig>,
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListenerKind {
    Tcp,
    Tls,
}
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClientAuth {
    None,
    Optional,
    Required,
}
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub max_packet_size: u32,
    pub connect_timeout_secs: u64,
    pub max_keep_alive_secs: u16,
    pub max_inflight: u16,
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    pub queue_qos0_offline: bool,
    pub max_session_expiry_secs: u32,
    pub persistent_session_expiry_secs: u32,
    pub retain_available: bool,
    pub allow_zero_length_client_id: bool,
    pub shutdown_grace_secs: u64,
}
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    pub enabled: bool,
}
impl Default for Config {
    fn default() -> Self {
        let mut listeners = BTreeMap::new();
        listeners.insert(
            "tcp".to_string(),
            ListenerConfig {
                kind: ListenerKind::Tcp,
                bind: "0.0.0.0:1883".parse().unwrap(),
                max_connections: 100_000,
                tls: None,
            },
        );
        Config {
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Text,
            },
            listeners,
            mqtt: MqttConfig {
                max_packet_size: 1 << 20,
                connect_timeout_secs: 10,
                max_keep_alive_secs: 65535,
                max_inflight: 32,
                max_queued_messages: 1000,
                max_queued_bytes: 16 << 20,
                queue_qos0_offline: false,
                max_session_expiry_secs: u32::MAX,
                persistent_session_expiry_secs: u32::MAX,
                retain_available: true,
                allow_zero_length_client_id: true,
                shutdown_grace_secs: 5,
            },
            bridge: BridgeConfig { enabled: false },
        }
    }
}
impl Config {
    pub fn for_tests() -> Config {
        let mut c = Config::default();
        c.listeners.get_mut("tcp").unwrap().bind = "127.0.0.1:0".parse().unwrap();
        c.mqtt.connect_timeout_secs = 5;
        c.mqtt.shutdown_grace_secs = 1;
        c
    }
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);
impl Config {
    pub fn load(
        path: Option<&std::path::Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Config, ConfigError> {
        let _ = (path, env);
        Ok(Config::default())
    }
}
