//! Assembles a running broker: listeners, the broker's core, the metrics endpoint, and their
//! shutdown.
//!
//! [`Broker::start`] binds every configured listener (refusing to start if one cannot bind),
//! spawns the accept loops and returns a [`BrokerHandle`]; tests, benches and the binary all
//! start the broker this way. [`BrokerHandle::shutdown`] works in two phases: it stops accepting
//! and tells every connection to close (each publishes its will, as the spec says for a
//! connection the server closes), waits for them within the configured grace period, then ends
//! what is left (delayed wills of offline sessions are published) and only then stops the
//! metrics endpoint, which answers `/readyz` with 503 meanwhile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use warren_bridge::{Bridge, BridgeHandle};

use crate::admin::auth::TokenStore;
use crate::auth::{Auth, AuthError};
use crate::bridge::InProcessSide;
use crate::broker::core::Core;
use crate::broker::local::LocalClient;
use crate::config::Config;
use crate::metrics::stats::StatsSnapshot;
use crate::session::mailbox::Control;
use crate::store::SessionStore;
use crate::tls::ReloadableTls;
use crate::transport::{self, Listener, ListenerEvents, Rejection};

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
    /// The AMQP bridge could not start (an unreachable RabbitMQ is not a reason: it retries).
    #[error("bridge: {0}")]
    Bridge(#[from] warren_bridge::StartError),
    /// A password, ACL or JWKS file is unusable (the error names file, line and reason).
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The session store could not be opened or read (the message names the file).
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The admin listener could not be set up.
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    /// A listener could not be set up.
    #[error("listener {name:?}: {source}")]
    Listener {
        /// Listener name from the config.
        name: String,
        /// What went wrong.
        source: transport::ListenerError,
    },
}

/// Why a reload did not take effect (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// An auth file is unusable.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The admin API's token file is unusable.
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    /// A TLS listener's files are unusable.
    #[error("listener {name:?}: {source}")]
    Tls {
        /// Listener name.
        name: String,
        /// What is wrong.
        source: crate::tls::TlsError,
    },
}

/// Rereads the files of the configuration: what `SIGHUP`, `warren reload` and the admin API's
/// reload do.
pub struct Reloader {
    core: Arc<Core>,
    /// TLS listeners' configurations, by listener name (reloaded with the auth files).
    tls: Vec<(String, Arc<ReloadableTls>)>,
    /// The admin API's tokens (reloaded from its token file), when the API runs.
    admin_tokens: Option<Arc<TokenStore>>,
}

impl Reloader {
    /// Rereads the password, ACL and JWKS files, every TLS listener's certificate and key and
    /// the admin API's token file, without dropping a connection. All or nothing: if one file is unusable, everything stays
    /// as it was and the error says which file and why. Counted in
    /// `warren_config_reloads_total{result}`. Connected clients are told to check their
    /// credentials and subscriptions again (see [`crate::auth`]).
    pub fn reload(&self) -> Result<(), ReloadError> {
        let result = self.try_reload();
        let stats = self.core.stats();
        stats.reloaded(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(error) => tracing::error!(%error, "reload failed; keeping the previous settings"),
        }
        result
    }

    fn try_reload(&self) -> Result<(), ReloadError> {
        let mut prepared = Vec::with_capacity(self.tls.len());
        for (name, handle) in &self.tls {
            let config = handle.prepare().map_err(|source| ReloadError::Tls {
                name: name.clone(),
                source,
            })?;
            prepared.push((handle, config));
        }
        let admin_tokens = match &self.admin_tokens {
            Some(store) => Some((store, store.prepare()?)),
            None => None,
        };
        let (users, rules) = self.core.auth().reload()?;
        for (handle, config) in prepared {
            handle.install(config);
        }
        let admin_token_count = admin_tokens.as_ref().map(|(_, tokens)| tokens.len());
        if let Some((store, tokens)) = admin_tokens {
            store.install(tokens);
        }
        tracing::info!(
            users,
            acl_rules = rules,
            admin_tokens = admin_token_count,
            "auth files reloaded"
        );
        self.core
            .registry()
            .for_each_online(|mailbox| mailbox.signal(Control::Reauthorize));
        Ok(())
    }
}

/// Entry point: starts a broker.
pub struct Broker;

impl Broker {
    /// Opens the store and restores what it holds, then binds every listener of `config`
    /// and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> Result<BrokerHandle, StartError> {
        Self::start_with_store(config, None).await
    }

    /// [`Broker::start`] with a store made by the caller (tests inject faults this way);
    /// `None` opens the one the configuration names.
    pub async fn start_with_store(
        config: Config,
        store: Option<Arc<dyn SessionStore>>,
    ) -> Result<BrokerHandle, StartError> {
        let started = std::time::Instant::now();
        let auth = Arc::new(Auth::load(&config)?);
        auth.log_policies(&config);
        let store = match store {
            Some(store) => store,
            None => {
                // Opening reads the whole file: off the async threads.
                let cfg = config.store.clone();
                tokio::task::spawn_blocking(move || crate::store::open(&cfg))
                    .await
                    .map_err(|e| {
                        crate::store::StoreError::Write(format!("opening the store: {e}"))
                    })??
            }
        };
        let recovered = store.recover()?;
        let mut listeners = Vec::new();
        for (name, listener) in &config.listeners {
            let bound = Listener::bind(name, listener, config.mqtt.max_packet_size)
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
        let admin_listener = match config.admin.enabled {
            true => Some(crate::admin::bind(&config.admin).await?),
            false => None,
        };
        let open_files_limit = raise_open_files_limit();
        let durable = store.durable();
        let core = Core::new(config, store, auth);
        let restored = core.restore(recovered);
        if durable {
            tracing::info!(
                path = %core.config().store.path.display(),
                sessions = restored.sessions,
                deliveries = restored.deliveries,
                retained = restored.retained,
                expired_sessions = restored.expired_sessions,
                expired_messages = restored.expired_messages,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "store restored"
            );
        }
        core.stats()
            .open_files_limit
            .store(open_files_limit, Ordering::Relaxed);
        let tasks = core.tasks();
        tasks.spawn(core.clone().sweep());
        tasks.spawn(metrics_upkeep(core.clone()));
        let sys_interval = core.config().metrics.sys_interval_secs;
        if sys_interval > 0 {
            tasks.spawn(crate::broker::sys::publish_every(
                core.clone(),
                Duration::from_secs(sys_interval),
            ));
        }
        let bridge = if core.config().bridge.enabled {
            let side = Arc::new(InProcessSide::new(&core));
            let handle = core
                .metrics()
                .with_recorder(|| Bridge::start(&core.config().bridge, side))?;
            tracing::info!(
                url = %crate::admin::api::redact_url(&core.config().bridge.url),
                outbound = core.config().bridge.outbound.len(),
                inbound = core.config().bridge.inbound.len(),
                "bridge started"
            );
            Some(Arc::new(handle))
        } else {
            None
        };
        if let (Some(bridge), true) = (&bridge, sys_interval > 0) {
            tasks.spawn(crate::broker::sys::publish_bridge_every(
                core.clone(),
                bridge.clone(),
                Duration::from_secs(sys_interval),
            ));
        }
        let http_stop = CancellationToken::new();
        let http_tasks = TaskTracker::new();
        let mut metrics_addr = None;
        if let Some(listener) = metrics_listener {
            metrics_addr = listener.local_addr().ok();
            tracing::info!(addr = ?metrics_addr, "metrics at /metrics, /healthz, /readyz");
            http_tasks.spawn(crate::metrics::http::serve(
                listener,
                core.clone(),
                http_stop.clone(),
                http_tasks.clone(),
            ));
        }
        let mut addrs = BTreeMap::new();
        let events: Arc<dyn ListenerEvents> = Arc::new(Events(core.clone()));
        let mut tls = Vec::new();
        for listener in listeners {
            if let Some(handle) = listener.tls() {
                tls.push((listener.name().to_owned(), handle));
            }
            addrs.insert(listener.name().to_owned(), listener.local_addr());
            tracing::info!(
                listener = listener.name(),
                addr = %listener.local_addr(),
                kind = listener.kind().label(),
                "listening"
            );
            let serve = core.clone();
            tasks.spawn(listener.run(
                core.shutdown_token().clone(),
                tasks.clone(),
                events.clone(),
                move |accepted| crate::connection::serve(accepted, serve.clone()),
            ));
        }
        let reloader = Arc::new(Reloader {
            core: core.clone(),
            tls,
            admin_tokens: admin_listener.as_ref().map(|(_, tokens)| tokens.clone()),
        });
        let mut admin_addr = None;
        if let Some((listener, tokens)) = admin_listener {
            admin_addr = listener.local_addr().ok();
            let parts = crate::admin::Parts {
                core: core.clone(),
                reloader: reloader.clone(),
                bridge: bridge.clone(),
                listeners: addrs.clone(),
                metrics_addr,
            };
            http_tasks.spawn(crate::admin::serve(
                listener,
                tokens,
                parts,
                http_stop.clone(),
                http_tasks.clone(),
            ));
        }
        Ok(BrokerHandle {
            core,
            reloader,
            addrs,
            metrics_addr,
            admin_addr,
            http_stop,
            http_tasks,
            bridge,
        })
    }
}

/// Drains histogram samples now and then, so memory stays bounded without scrapes.
async fn metrics_upkeep(core: Arc<Core>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => core.metrics().upkeep(),
            _ = core.shutdown_token().cancelled() => return,
        }
    }
}

/// Counts and reports a failed accept; says so clearly when the open-file limit is what caps
/// the connections (logged at most once a minute).
fn accept_failed(core: &Core, listener: &str, error: &std::io::Error) {
    use crate::metrics::stats::Stats;
    Stats::bump(&core.stats().accept_errors);
    if !core.accept_warning_due() {
        return;
    }
    // EMFILE (24) / ENFILE (23): out of file descriptors.
    if matches!(error.raw_os_error(), Some(23 | 24)) {
        tracing::error!(
            listener,
            limit = core.stats().open_files_limit.load(Ordering::Relaxed),
            "open-file limit reached: new connections are refused until some close"
        );
    } else {
        tracing::warn!(listener, %error, "accept failed; backing off");
    }
}

/// What the listeners report: counted, and logged within the broker's log rate limit.
struct Events(Arc<Core>);

impl ListenerEvents for Events {
    fn accept_failed(&self, listener: &str, error: &std::io::Error) {
        accept_failed(&self.0, listener, error);
    }

    fn rejected(
        &self,
        listener: &str,
        peer: SocketAddr,
        reason: Rejection,
        detail: &dyn std::fmt::Display,
    ) {
        let core = &self.0;
        core.stats().rejected(listener, reason.label());
        let why = reason.label();
        match reason {
            // Clients probing, or a proxy's health check: not worth a line each.
            Rejection::TlsHandshake | Rejection::HandshakeTimeout | Rejection::ClosedEarly => {
                tracing::debug!(listener, %peer, why, "connection closed: {detail}");
            }
            _ => {
                if let Some(suppressed) = core.log_limiter().allow(core.clock().now_ms()) {
                    tracing::warn!(listener, %peer, why, suppressed, "connection closed: {detail}");
                }
            }
        }
    }
}

/// A running broker.
pub struct BrokerHandle {
    core: Arc<Core>,
    reloader: Arc<Reloader>,
    addrs: BTreeMap<String, SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    http_stop: CancellationToken,
    http_tasks: TaskTracker,
    bridge: Option<Arc<BridgeHandle>>,
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

    /// The address of the admin API and console, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The Prometheus text exposition, as `/metrics` serves it.
    pub fn render_metrics(&self) -> String {
        self.core.render_metrics()
    }

    /// Current event counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats().snapshot()
    }

    /// Number of subscriptions in the trie.
    pub fn subscription_count(&self) -> usize {
        self.core.subscription_count()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.core.retained_count()
    }

    /// Number of sessions (online and offline).
    pub fn session_count(&self) -> usize {
        self.core.registry().session_count()
    }

    /// Number of offline sessions kept in the store.
    pub fn offline_session_count(&self) -> usize {
        self.core.registry().offline_count()
    }

    /// Messages waiting in session queues, and the bytes they hold.
    pub fn queued(&self) -> (usize, usize) {
        let gauges = self.core.gauges();
        (gauges.queued, gauges.queued_bytes)
    }

    /// Entries waiting in the offline-session timer wheel (expiry, delayed wills).
    pub fn pending_timers(&self) -> usize {
        self.core.pending_timers()
    }

    /// Client ids with a claim (CONNECT) in progress.
    pub fn claims_in_progress(&self) -> usize {
        self.core.registry().claims_in_progress()
    }

    /// A client of this broker inside the process (see [`LocalClient`]).
    pub fn local_client(&self, name: &str, owner: bool) -> LocalClient {
        LocalClient::new(&self.core, name, owner)
    }

    /// The bridge's per-rule counts and connection state, when the bridge runs.
    pub fn bridge_snapshot(&self) -> Option<warren_bridge::BridgeSnapshot> {
        self.bridge.as_ref().map(|b| b.snapshot())
    }

    /// The broker's core, for in-process components (the bridge).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Rereads the password, ACL and JWKS files and every TLS listener's certificate and key
    /// (see [`Reloader::reload`]).
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.reloader.reload()
    }

    /// Stops accepting, closes every connection (wills are published), waits for them up to
    /// the configured grace period, ends the offline sessions, and stops the metrics endpoint
    /// last. Returns false if some connections did not finish in time.
    pub async fn shutdown(self) -> bool {
        let core = &self.core;
        core.shutdown_token().cancel();
        core.registry()
            .for_each_online(|mailbox| mailbox.signal(Control::Shutdown));
        core.tasks().close();
        let grace = Duration::from_secs(core.config().mqtt.shutdown_grace_secs);
        let finished = tokio::time::timeout(grace, core.tasks().wait())
            .await
            .is_ok();
        // The bridge last among the message paths: what it took is confirmed or left to be
        // redelivered; devices whose messages it had not confirmed were not answered, so they
        // send them again.
        if let Some(bridge) = self.bridge {
            match Arc::try_unwrap(bridge) {
                Ok(bridge) => bridge.shutdown().await,
                Err(_) => tracing::warn!("bridge still in use at shutdown; not stopped cleanly"),
            }
        }
        core.end_offline_sessions();
        self.http_stop.cancel();
        self.http_tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.http_tasks.wait()).await;
        finished
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
