//! The AMQP connection: one per bridge, owned by a supervisor task that connects (each attempt
//! bounded by `connect_timeout_secs`), watches for its loss, and reconnects with capped
//! backoff. An unreachable RabbitMQ is never an error
//! to the caller: it is logged (once per interval), counted and retried.
//!
//! Rule tasks watch the current [`Conn`] (a generation number and the connection) and open
//! their own channels on it; when it is lost they wait for the next generation and redo their
//! topology. This module knows nothing of rules or messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::amqp::{self, ConnectOptions, Connection};
use crate::config::BridgeConfig;
use crate::metrics::{bump, ConnectionState, Registry};
use crate::pace::{Backoff, LogGate};

/// Why the connection settings cannot be used (found at start).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A `[bridge.tls]` file or setting cannot be used.
    #[error("bridge.tls: {0}")]
    Tls(String),
    /// The URL is not an AMQP URL.
    #[error("bridge.url: {0}")]
    Url(#[from] amqp::url::UrlError),
}

/// A live connection and its generation (1 for the first, one more per reconnection).
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) generation: u64,
    pub(crate) connection: Arc<Connection>,
}

/// What rule tasks hold: the current connection, if any.
pub(crate) type ConnWatch = watch::Receiver<Option<Conn>>;

/// Waits for a connection of a later generation than `after` (0: any). `None` on shutdown.
pub(crate) async fn next_conn(w: &mut ConnWatch, after: u64) -> Option<Conn> {
    loop {
        if let Some(c) = w.borrow_and_update().as_ref() {
            if c.generation > after && c.connection.is_open() {
                return Some(c.clone());
            }
        }
        w.changed().await.ok()?;
    }
}

/// Settings read once at start.
pub(crate) struct LinkSettings {
    url: String,
    options: ConnectOptions,
    timeout: Duration,
    backoff: Backoff,
    log_interval: Duration,
}

impl LinkSettings {
    pub(crate) fn new(c: &BridgeConfig) -> Result<LinkSettings, LinkError> {
        let url: amqp::url::AmqpUrl = c.url.parse()?;
        let tls = if url.tls {
            let files = c.tls.clone().unwrap_or_default();
            let config = crate::tls::client_config(&files).map_err(LinkError::Tls)?;
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(LinkSettings {
            url: c.url.clone(),
            options: ConnectOptions {
                url,
                name: c.connection_name.clone(),
                tls,
            },
            timeout: Duration::from_secs(c.connect_timeout_secs),
            backoff: Backoff::new(
                Duration::from_millis(c.reconnect_min_ms),
                Duration::from_millis(c.reconnect_max_ms),
            ),
            log_interval: Duration::from_secs(c.log_interval_secs),
        })
    }
}

/// Runs the supervisor until `cancel`; publishes the current connection on `tx`.
pub(crate) async fn supervise(
    mut s: LinkSettings,
    tx: watch::Sender<Option<Conn>>,
    reg: Arc<Registry>,
    cancel: CancellationToken,
) {
    let mut generation = 0;
    let mut gate = LogGate::new(s.log_interval);
    loop {
        reg.link.set_state(ConnectionState::Connecting);
        let attempt = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(s.timeout, amqp::open(&s.options)) => r,
        };
        match attempt {
            Ok(Ok(conn)) => {
                generation += 1;
                s.backoff.reset();
                let conn = Arc::new(conn);
                tracing::info!(url = %redact(&s.url), generation, "bridge: connected to RabbitMQ");
                reg.link.set_state(ConnectionState::Connected);
                tx.send_replace(Some(Conn {
                    generation,
                    connection: conn.clone(),
                }));
                let closed = conn.closed();
                tokio::pin!(closed);
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                let why = loop {
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            tx.send_replace(None);
                            let close = Connection::clone(&conn).close();
                            let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
                            reg.link.set_state(ConnectionState::Stopped);
                            return;
                        }
                        why = &mut closed => break why,
                        _ = tick.tick() => if !conn.is_open() {
                            break "connection closed".to_string();
                        },
                    }
                };
                tx.send_replace(None);
                bump(&reg.link.reconnects);
                reg.link.set_state(ConnectionState::Disconnected);
                tracing::warn!(reason = %why, "bridge: lost the RabbitMQ connection; reconnecting");
            }
            Ok(Err(e)) => failed(&reg, &mut gate, &s.url, e.to_string()),
            Err(_) => failed(
                &reg,
                &mut gate,
                &s.url,
                format!("no answer in {:?}", s.timeout),
            ),
        }
        reg.link.set_state(ConnectionState::Disconnected);
        let delay = s.backoff.next_delay();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tx.send_replace(None);
    reg.link.set_state(ConnectionState::Stopped);
}

fn failed(reg: &Registry, gate: &mut LogGate, url: &str, why: String) {
    bump(&reg.link.connect_failures);
    if let Some(n) = gate.hit(Instant::now()) {
        tracing::warn!(url = %redact(url), attempts = n, error = %why,
            "bridge: cannot connect to RabbitMQ; retrying with backoff");
    }
}

/// The URL without its password, for logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            super::redact("amqp://guest:secret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(super::redact("amqp://h:5672"), "amqp://h:5672");
    }
}
