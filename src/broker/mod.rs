//! Assembles a running broker: listeners, router, session registry, and their shutdown.
//!
//! [`Broker::start`] binds every configured listener (refusing to start if one cannot bind),
//! spawns the accept loops and returns a [`BrokerHandle`]; tests, benches and the binary all
//! start the broker this way. [`BrokerHandle::shutdown`] stops accepting, tells every connection
//! to close (each publishes its will, as the spec says for a connection the server closes), and
//! waits for them within the configured grace period.

pub mod registry;
pub mod routing;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::stats::{Stats, StatsSnapshot};
use crate::metrics::Metrics;
use crate::protocol::{PublishProperties, Will};
use crate::session::mailbox::Message;
use crate::session::mailbox::{Control, MailboxLimits, Subscriber};
use crate::session::SessionState;
use crate::store::{MemoryStore, SessionStore};
use crate::transport::{self, Listener};
use registry::Registry;
use routing::Router;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The metrics listener could not be bound.
    #[error("metrics listener: cannot bind {addr}: {source}")]
    Metrics {
        /// Address from the config.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// A listener could not be set up.
    #[error("listener {name:?}: {source}")]
    Listener {
        /// Listener name from the config.
        name: String,
        /// What went wrong.
        source: transport::ListenerError,
    },
}

/// State shared by every connection of one broker.
pub struct Shared {
    /// The configuration the broker started with.
    pub config: Config,
    /// Subscriptions and retained messages.
    pub router: Router,
    /// Client ids and sessions.
    pub registry: Registry,
    /// Event counters.
    pub stats: Stats,
    /// The Prometheus registry.
    pub metrics: Metrics,
    /// Queue limits of every session (from `[mqtt]`).
    pub mailbox_limits: Arc<MailboxLimits>,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    /// Every task of the broker, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// The broker's millisecond clock (keep-alive stamps).
    pub clock: Clock,
    last_accept_warning: AtomicU64,
    next_conn_id: AtomicU64,
}

/// How often the keep-alive sweeper looks at every connection.
const KEEP_ALIVE_SWEEP: Duration = Duration::from_millis(250);

/// Milliseconds since the broker started.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Milliseconds elapsed since the broker started.
    pub fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// Milliseconds from the broker's start to `at`.
    pub fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0).as_millis()).unwrap_or(u64::MAX)
    }

    /// When the broker started.
    pub fn started(&self) -> Instant {
        self.0
    }
}

impl Shared {
    /// A process-unique connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes a will message as if its client had published it; `origin` is the client's
    /// mailbox id (No Local).
    pub fn publish_will(&self, will: Will, origin: u64) {
        let properties = PublishProperties {
            payload_format_indicator: will.properties.payload_format_indicator,
            message_expiry_interval: will.properties.message_expiry_interval,
            content_type: will.properties.content_type,
            response_topic: will.properties.response_topic,
            correlation_data: will.properties.correlation_data,
            user_properties: will.properties.user_properties,
            ..PublishProperties::default()
        };
        let now = Instant::now();
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(secs.into()));
        let message = Arc::new(Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain && self.config.mqtt.retain_available,
            properties,
            expires_at,
            origin,
            received_at: now,
        });
        tracing::debug!(topic = %message.topic, "publishing will");
        Stats::bump(&self.stats.wills_published);
        self.router.publish(message, &self.stats);
    }

    /// Ends a session for good: its subscriptions leave the trie, its queue is dropped, and a
    /// will still waiting for its delay is published (the session's end comes first, 5.0
    /// section 3.1.3.2.2).
    pub fn end_session(&self, mut session: SessionState) {
        if let Some(will) = session.delayed_will.take() {
            self.publish_will(*will, session.mailbox.id());
        }
        let subscriber = Subscriber(session.mailbox.clone());
        self.router
            .unsubscribe_all(session.subscriptions.keys().map(|f| &**f), &subscriber);
        session.mailbox.close();
    }

    /// Closes every connection whose client has been silent for 1.5 × its keep alive. One task
    /// for the whole broker instead of one timer per connection: idle connections stay small.
    async fn sweep_keep_alives(self: Arc<Self>) {
        let mut tick = tokio::time::interval(KEEP_ALIVE_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let now = self.clock.now_ms();
            self.registry.for_each_online(|mailbox| {
                if mailbox.keep_alive_expired(now) {
                    mailbox.signal(Control::KeepAliveExpired);
                }
            });
        }
    }

    /// Counts and reports a failed accept; says so clearly when the open-file limit is what
    /// caps the connections (logged at most once a minute).
    fn accept_failed(&self, listener: &str, error: &std::io::Error) {
        Stats::bump(&self.stats.accept_errors);
        let now = self.clock.now_ms();
        let last = self.last_accept_warning.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < 60_000 {
            return;
        }
        self.last_accept_warning
            .store(now.max(1), Ordering::Relaxed);
        // EMFILE (24) / ENFILE (23): out of file descriptors.
        if matches!(error.raw_os_error(), Some(23 | 24)) {
            tracing::error!(
                listener,
                limit = self.stats.open_files_limit.load(Ordering::Relaxed),
                "open-file limit reached: new connections are refused until some close"
            );
        } else {
            tracing::warn!(listener, %error, "accept failed; backing off");
        }
    }

    /// Publishes the delayed will of the stored session of `client_id` after `delay` seconds,
    /// unless the session was resumed (or ended, which publishes it) meanwhile.
    pub fn schedule_will(self: &Arc<Self>, client_id: String, generation: u64, delay: u32) {
        let shared = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(delay.into())) => {}
                _ = shared.shutdown.cancelled() => return,
            }
            if let Some((will, origin)) = shared.registry.take_delayed_will(&client_id, generation)
            {
                shared.publish_will(*will, origin);
            }
        });
    }

    /// Drains histogram samples now and then, so memory stays bounded without scrapes.
    async fn metrics_upkeep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => self.metrics.upkeep(),
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Arranges for the stored session of `client_id` to end after `expiry` unless resumed.
    pub fn schedule_expiry(self: &Arc<Self>, client_id: String, generation: u64, expiry: u32) {
        if expiry == u32::MAX {
            return; // never expires
        }
        let shared = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(expiry.into())) => {}
                _ = shared.shutdown.cancelled() => return,
            }
            if let Some(session) = shared.registry.expire(&client_id, generation) {
                tracing::debug!(client_id, "session expired");
                Stats::bump(&shared.stats.sessions_expired);
                shared.end_session(session);
            }
        });
    }
}

/// Entry point: starts a broker.
pub struct Broker;

impl Broker {
    /// Binds every listener of `config` and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> Result<BrokerHandle, StartError> {
        let mut listeners = Vec::new();
        for (name, listener) in &config.listeners {
            let bound =
                Listener::bind(name, listener)
                    .await
                    .map_err(|source| StartError::Listener {
                        name: name.clone(),
                        source,
                    })?;
            listeners.push(bound);
        }
        let metrics_listener = if config.metrics.enabled {
            let addr = config.metrics.bind;
            let bound = crate::metrics::http::bind(addr)
                .await
                .map_err(|source| StartError::Metrics { addr, source })?;
            Some(bound)
        } else {
            None
        };
        let open_files_limit = raise_open_files_limit();
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
        let mailbox_limits = Arc::new(MailboxLimits {
            max_messages: config.mqtt.max_queued_messages,
            max_bytes: config.mqtt.max_queued_bytes,
            queue_qos0_offline: config.mqtt.queue_qos0_offline,
        });
        let shared = Arc::new(Shared {
            config,
            router: Router::default(),
            registry: Registry::new(store),
            stats: Stats::default(),
            metrics: Metrics::new(),
            mailbox_limits,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            clock: Clock(Instant::now()),
            last_accept_warning: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(1),
        });
        shared
            .stats
            .open_files_limit
            .store(open_files_limit, Ordering::Relaxed);
        shared.tasks.spawn(shared.clone().sweep_keep_alives());
        shared.tasks.spawn(shared.clone().metrics_upkeep());
        let sys_interval = shared.config.metrics.sys_interval_secs;
        if sys_interval > 0 {
            shared.tasks.spawn(crate::metrics::sys::publish_every(
                shared.clone(),
                Duration::from_secs(sys_interval),
            ));
        }
        let mut metrics_addr = None;
        if let Some(listener) = metrics_listener {
            metrics_addr = listener.local_addr().ok();
            tracing::info!(addr = ?metrics_addr, "metrics at /metrics, /healthz, /readyz");
            shared
                .tasks
                .spawn(crate::metrics::http::serve(listener, shared.clone()));
        }
        let mut addrs = BTreeMap::new();
        for listener in listeners {
            addrs.insert(listener.name().to_owned(), listener.local_addr());
            tracing::info!(
                listener = listener.name(),
                addr = %listener.local_addr(),
                tls = listener.is_tls(),
                "listening"
            );
            let shared2 = shared.clone();
            let shared3 = shared.clone();
            shared.tasks.spawn(listener.run(
                shared.shutdown.clone(),
                shared.tasks.clone(),
                move |name, error| shared3.accept_failed(name, error),
                move |accepted| crate::connection::serve(accepted, shared2.clone()),
            ));
        }
        Ok(BrokerHandle {
            shared,
            addrs,
            metrics_addr,
        })
    }
}

/// A running broker.
pub struct BrokerHandle {
    shared: Arc<Shared>,
    addrs: BTreeMap<String, SocketAddr>,
    metrics_addr: Option<SocketAddr>,
}

impl BrokerHandle {
    /// The address listener `name` is bound to (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.get(name).copied()
    }

    /// The address of the metrics listener, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The Prometheus text exposition, as `/metrics` serves it.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render(&self.shared)
    }

    /// Current event counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Number of subscriptions in the trie.
    pub fn subscription_count(&self) -> usize {
        self.shared.router.subscription_count()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.shared.router.retained_count()
    }

    /// Number of sessions (online and offline).
    pub fn session_count(&self) -> usize {
        self.shared.registry.session_count()
    }

    /// Number of offline sessions kept in the store.
    pub fn offline_session_count(&self) -> usize {
        self.shared.registry.offline_count()
    }

    /// Stops accepting, closes every connection (wills are published), and waits for all tasks
    /// up to the configured grace period. Returns false if some did not finish in time.
    pub async fn shutdown(self) -> bool {
        self.shared.shutdown.cancel();
        self.shared
            .registry
            .for_each_online(|mailbox| mailbox.signal(Control::Shutdown));
        self.shared.tasks.close();
        let grace = Duration::from_secs(self.shared.config.mqtt.shutdown_grace_secs);
        tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_ok()
    }
}

/// Raises the soft open-file limit to the hard limit: every connection holds a file. Returns the
/// limit in force (0 if it cannot be read).
fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(
                limit,
                "open-file limit: at most about {} connections (each holds one file)",
                limit.saturating_sub(64)
            );
            limit
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            0
        }
    }
}
