//! Assembly: [`Bridge::start`] checks the configuration, opens the spool, and spawns the
//! connection supervisor, one task per rule and the metrics flusher on the current tokio
//! runtime; [`BridgeHandle`] gives the state snapshot and a two-phase shutdown (rules first,
//! within the grace period, then the connection).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::check::{inbound_mapping, outbound_mapping};
use crate::config::{AckMode, BridgeConfig, ConfigCheckError};
use crate::link::{self, LinkError, LinkSettings};
use crate::mapping::Mapping;
use crate::metrics::{BridgeSnapshot, Exporter, Registry};
use crate::outbound::{self, Env};
use crate::side::{Filter, MqttSide};
use crate::{inbound, spool};

/// Why the bridge could not start. (An unreachable RabbitMQ is not one of them.)
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A semantic error in `[bridge]`.
    #[error("{0}")]
    Config(#[from] ConfigCheckError),
    /// A TLS file is unreadable.
    #[error("{0}")]
    Link(#[from] LinkError),
    /// The spool file cannot be opened.
    #[error("bridge.spool.path: {path}: {source}")]
    Spool {
        /// The spool file.
        path: PathBuf,
        /// Why.
        source: spool::SpoolError,
    },
}

/// The AMQP bridge.
pub struct Bridge;

/// A running bridge.
pub struct BridgeHandle {
    reg: Arc<Registry>,
    rules_cancel: CancellationToken,
    link_cancel: CancellationToken,
    rules: TaskTracker,
    link: JoinHandle<()>,
    flusher: JoinHandle<()>,
    grace: Duration,
    spool: Option<Arc<dyn spool::SpoolStore>>,
}

impl Bridge {
    /// Starts the bridge for `config` (its `enabled` flag is the caller's business) against
    /// `side`, on the current tokio runtime (it must be called from within one). Returns at
    /// once: connecting to RabbitMQ happens in the background, with retries.
    pub fn start<S: MqttSide>(
        config: &BridgeConfig,
        side: Arc<S>,
    ) -> Result<BridgeHandle, StartError> {
        config.check()?;
        let settings = LinkSettings::new(config)?;
        let spool = match (
            &config.spool,
            config.outbound.iter().any(|r| r.ack == AckMode::Spooled),
        ) {
            (Some(s), true) => {
                let store = spool::open(&s.path).map_err(|source| StartError::Spool {
                    path: s.path.clone(),
                    source,
                })?;
                Some((store, s.max_messages, s.max_bytes))
            }
            _ => None,
        };
        let out_names: Vec<String> = (0..config.outbound.len())
            .map(|i| config.outbound_name(i))
            .collect();
        let in_names: Vec<String> = (0..config.inbound.len())
            .map(|i| config.inbound_name(i))
            .collect();
        let reg = Arc::new(Registry::new(out_names.clone(), in_names.clone()));
        let exporter = Exporter::new(&reg);
        let (tx, conns) = watch::channel(None);
        let rules_cancel = CancellationToken::new();
        let link_cancel = CancellationToken::new();
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        let spool_store = spool.as_ref().map(|(s, _, _)| s.clone());
        let env = Arc::new(Env {
            conns,
            reg: reg.clone(),
            spool,
            cancel: rules_cancel.clone(),
            retry: (
                Duration::from_millis(config.retry_min_ms),
                Duration::from_millis(config.retry_max_ms),
            ),
            log_interval: Duration::from_secs(config.log_interval_secs),
            grace,
            id_prefix: id_prefix(),
            learned_max_message: std::sync::atomic::AtomicUsize::new(usize::MAX),
        });
        let link = tokio::spawn(link::supervise(
            settings,
            tx,
            reg.clone(),
            link_cancel.clone(),
        ));
        let rules = TaskTracker::new();
        for (i, r) in config.outbound.iter().enumerate() {
            // check() accepted the template.
            let mapping = outbound_mapping(r).unwrap_or_default();
            let spec = outbound::Spec {
                name: out_names[i].clone(),
                index: i,
                filter: Filter {
                    filter: r.filter.clone(),
                    qos: r.qos,
                },
                exchange: r.exchange.clone(),
                exchange_type: r.exchange_type,
                ack: r.ack,
                unroutable: r.unroutable,
                dead_letter_topic: r.dead_letter_topic.clone(),
                dead_letter_exchange: r.dead_letter_exchange.clone(),
                reply: reply_mapping(&mapping),
                mapping,
                max_in_flight: r.max_in_flight,
                max_message_bytes: r.max_message_bytes,
                headers: r.headers,
                buffer: r.buffer,
            };
            rules.spawn(outbound::Rule::new(spec, side.clone(), env.clone()).run());
        }
        for (i, r) in config.inbound.iter().enumerate() {
            let mapping = inbound_mapping(r).unwrap_or_default();
            let spec = inbound::Spec {
                name: in_names[i].clone(),
                index: i,
                queue: r.queue.clone(),
                exchange: r.exchange.clone(),
                bindings: r.bindings.clone(),
                qos: r.qos,
                retain: r.retain,
                prefetch: r.prefetch,
                reply: reply_mapping(&mapping),
                mapping,
                no_subscribers: r.no_subscribers,
                publish_timeout: Duration::from_secs(r.publish_timeout_secs),
            };
            rules.spawn(inbound::run(spec, side.clone(), env.clone()));
        }
        rules.close();
        let flusher = {
            let (reg, cancel) = (reg.clone(), link_cancel.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => exporter.flush(&reg),
                    }
                }
                exporter.flush(&reg);
            })
        };
        Ok(BridgeHandle {
            reg,
            rules_cancel,
            link_cancel,
            rules,
            link,
            flusher,
            grace,
            spool: spool_store,
        })
    }
}

impl BridgeHandle {
    /// Per-rule counts and the connection state, now.
    pub fn snapshot(&self) -> BridgeSnapshot {
        self.reg.snapshot()
    }

    /// Stops the bridge: rules stop taking messages and finish what is in flight (within
    /// `shutdown_grace_secs`; inbound deliveries not yet owned by MQTT are left unacked, so
    /// RabbitMQ redelivers them), then the connection is closed.
    pub async fn shutdown(self) {
        self.rules_cancel.cancel();
        let bound = self.grace + Duration::from_secs(5);
        if tokio::time::timeout(bound, self.rules.wait())
            .await
            .is_err()
        {
            tracing::warn!("bridge: rules did not stop within the grace period");
        }
        if let Some(store) = self.spool {
            // The removals of what RabbitMQ confirmed last, so a restart does not resend them.
            match tokio::task::spawn_blocking(move || store.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "bridge: spool flush at shutdown failed"),
                Err(e) => tracing::warn!(error = %e, "bridge: spool flush at shutdown failed"),
            }
        }
        self.link_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.link).await;
        let _ = self.flusher.await;
    }
}

/// Template rules map `reply-to` with the default mapping; others with their own.
fn reply_mapping(m: &Mapping) -> Mapping {
    match m {
        Mapping::Template(_) => Mapping::Default,
        m => m.clone(),
    }
}

/// A prefix for AMQP message ids, unique per start.
fn id_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("w{:x}{:x}", nanos as u64, std::process::id())
}
