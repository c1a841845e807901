//! The admin HTTP API (`/api/v1/...`, JSON) and the web console (`/`), on their own listener
//! (`[admin] bind`, loopback by default), apart from the metrics listener: `/metrics` is often
//! opened to a Prometheus on the network, the admin API can kick clients and delete state.
//!
//! - [`routes`]: the route table, which both dispatches requests and is checked against the
//!   OpenAPI document (`openapi.json`, served at `/api/v1/openapi.json`).
//! - [`api`]: the handlers, reading the broker through its narrow query API
//!   ([`crate::broker::clients`]) and answering JSON.
//! - [`console`]: the console's page, script and style, built into the binary.
//! - [`auth`]: bearer tokens, kept as SHA-256 digests.
//! - [`ctl`]: `warren ctl`, the API's command-line client.
//!
//! It must not know the broker's internals beyond that query API: no lock of the broker is held
//! while a response is written.

pub mod api;
pub mod auth;
pub mod console;
pub mod ctl;
pub mod routes;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::core::Core;
use crate::server::Reloader;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listener could not be bound.
    #[error("admin listener: cannot bind {addr}: {source}")]
    Bind {
        /// Address from the config.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// No token is configured and the bind address is not a loopback one.
    #[error("admin listener: {addr} is not a loopback address and no token is configured ([admin] tokens or token_file)")]
    Exposed {
        /// Address from the config.
        addr: SocketAddr,
    },
    /// The token file is unreadable or holds a line that is not a digest.
    #[error("admin token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// One sample of the message counters (for rates and the console's chart).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Messages received from clients so far.
    pub received: u64,
    /// Messages delivered to clients so far.
    pub delivered: u64,
    /// Bytes read so far.
    pub bytes_in: u64,
    /// Bytes written so far.
    pub bytes_out: u64,
}

/// Samples kept: a minute at one a second.
const HISTORY: usize = 61;

/// What the handlers read and act on.
pub struct Admin {
    core: Arc<Core>,
    reloader: Arc<Reloader>,
    bridge: Option<Arc<warren_bridge::BridgeHandle>>,
    listeners: BTreeMap<String, SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    tokens: Arc<auth::TokenStore>,
    history: Mutex<VecDeque<Sample>>,
}

/// The parts of a running broker the admin API serves.
pub struct Parts {
    /// The broker's core.
    pub core: Arc<Core>,
    /// Reloads the configuration's files.
    pub reloader: Arc<Reloader>,
    /// The bridge, when it runs.
    pub bridge: Option<Arc<warren_bridge::BridgeHandle>>,
    /// MQTT listeners' addresses by name.
    pub listeners: BTreeMap<String, SocketAddr>,
    /// The metrics listener's address.
    pub metrics_addr: Option<SocketAddr>,
}

/// Binds the admin listener after checking its tokens; logs what protects it.
pub async fn bind(
    config: &crate::config::AdminConfig,
) -> Result<(TcpListener, Arc<auth::TokenStore>), AdminError> {
    let tokens = Arc::new(auth::TokenStore::load(config)?);
    let addr = config.bind;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    Ok((listener, tokens))
}

/// Serves the admin API and console on `listener` until `stop`; samples the counters once a
/// second meanwhile.
pub async fn serve(
    listener: TcpListener,
    tokens: Arc<auth::TokenStore>,
    parts: Parts,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let addr = listener.local_addr().ok();
    let current = tokens.current();
    if current.is_empty() {
        tracing::warn!(
            ?addr,
            "admin API and console without tokens: loopback only, anyone on this host may use them"
        );
    } else {
        tracing::info!(
            ?addr,
            tokens = current.len(),
            "admin API and console (bearer tokens)"
        );
    }
    let admin = Arc::new(Admin {
        core: parts.core,
        reloader: parts.reloader,
        bridge: parts.bridge,
        listeners: parts.listeners,
        metrics_addr: parts.metrics_addr,
        tokens,
        history: Mutex::new(VecDeque::with_capacity(HISTORY)),
    });
    tasks.spawn(sample_every(
        admin.clone(),
        Duration::from_secs(1),
        stop.clone(),
    ));
    crate::metrics::http::serve_with(listener, stop, tasks, move |request, peer| {
        let admin = admin.clone();
        async move { admin.handle(request, peer).await }
    })
    .await;
}

async fn sample_every(admin: Arc<Admin>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let snap = admin.core.stats().snapshot();
        let sample = Sample {
            at_ms: crate::wall::unix_ms(),
            received: snap.messages_received.iter().sum(),
            delivered: snap.messages_delivered.iter().sum(),
            bytes_in: snap.bytes_in,
            bytes_out: snap.bytes_out,
        };
        let mut history = admin.history.lock();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(sample);
    }
}

/// Refuses what a web page of another site could make a browser send: a state-changing request
/// without a JSON content type (a plain form POST needs no CORS preflight; a JSON one does, and
/// is refused for want of CORS headers), and, with no token configured, a request whose `Host`
/// is not a loopback name (DNS rebinding).
fn cross_site<B>(request: &Request<B>, open: bool) -> Option<Response<Full<Bytes>>> {
    let headers = request.headers();
    if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
        let json = headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Some(api::error(
                hyper::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send content-type: application/json",
            ));
        }
    }
    if open {
        let host = headers
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let loopback = name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Some(api::error(
                hyper::StatusCode::FORBIDDEN,
                "without tokens the admin API answers requests for localhost only",
            ));
        }
    }
    None
}

impl Admin {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        if !path.starts_with("/api/") {
            return console::asset(&request);
        }
        let Some((route, params)) = routes::find(request.method(), &path) else {
            return match routes::path_known(&path) {
                true => api::error(hyper::StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                false => api::error(hyper::StatusCode::NOT_FOUND, "no such resource"),
            };
        };
        let tokens = self.tokens.current();
        if let Some(refusal) = cross_site(&request, tokens.is_empty()) {
            return refusal;
        }
        if route.needs_token() && !tokens.allows(request.headers()) {
            tracing::info!(%peer, path, "admin API: missing or wrong bearer token");
            return api::unauthorized();
        }
        api::dispatch(self, route, params, request).await
    }

    /// The counter samples of the last minute, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.history.lock().iter().copied().collect()
    }
}
