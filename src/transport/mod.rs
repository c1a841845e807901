//! Listeners: bind, accept, the steps before MQTT (PROXY header, TLS handshake, WebSocket
//! upgrade), connection limits and rates.
//!
//! This module turns a configured listener into a stream of connected byte pipes ([`Stream`]:
//! plain TCP, TLS over TCP, or WebSocket over either) handed to a connection handler, with the
//! client's address. It knows nothing of MQTT. Files:
//! - `stream.rs`: [`Stream`], the byte pipe the connection task reads and writes;
//! - `ws/`: the WebSocket upgrade and frames;
//! - `proxy.rs`: the PROXY protocol header (v1 and v2);
//! - `admission.rs`: the per-address connection rate limit.
//!
//! Limits: a semaphore caps the open connections of each listener; a source address over its
//! connection rate is closed at accept; accept errors such as running out of file descriptors
//! back off instead of spinning; everything before MQTT (PROXY header, TLS handshake, WebSocket
//! upgrade) must finish within [`HANDSHAKE_TIMEOUT`], and each step reads a bounded number of
//! bytes. Every connection refused here is counted through [`ListenerEvents::rejected`].

mod admission;
pub mod proxy;
mod stream;
pub mod ws;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::tls::ReloadableTls;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ListenerConfig, ListenerKind};
use admission::ConnectionRate;
pub use stream::Stream;
use ws::WsStream;

/// How long everything before MQTT (PROXY header, TLS handshake, WebSocket upgrade) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between TCP keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// TCP keepalive probes before the kernel gives up on the peer.
const KEEPALIVE_PROBES: u32 = 5;
/// Pause after an accept error (e.g. EMFILE) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Binding the address failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address from the config.
        addr: SocketAddr,
        /// OS error.
        source: io::Error,
    },
    /// The TLS settings are unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A TLS listener without a `tls` table.
    #[error("kind = \"tls\" or \"wss\" needs a tls table")]
    MissingTls,
}

/// Why a connection was closed before it reached the connection handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The listener's `max_connections` were open.
    MaxConnections,
    /// Its source address was over `max_connection_rate`.
    RateLimited,
    /// A PROXY header was missing or malformed.
    ProxyHeader,
    /// The TLS handshake failed.
    TlsHandshake,
    /// The WebSocket upgrade request was refused.
    WebSocketUpgrade,
    /// The steps before MQTT took longer than [`HANDSHAKE_TIMEOUT`].
    HandshakeTimeout,
    /// The client closed the connection (or it failed) before the PROXY header or the
    /// WebSocket upgrade was complete.
    ClosedEarly,
}

impl Rejection {
    /// Every reason.
    pub const ALL: [Rejection; 7] = [
        Rejection::MaxConnections,
        Rejection::RateLimited,
        Rejection::ProxyHeader,
        Rejection::TlsHandshake,
        Rejection::WebSocketUpgrade,
        Rejection::HandshakeTimeout,
        Rejection::ClosedEarly,
    ];

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::MaxConnections => "max_connections",
            Rejection::RateLimited => "rate_limited",
            Rejection::ProxyHeader => "proxy_header",
            Rejection::TlsHandshake => "tls_handshake",
            Rejection::WebSocketUpgrade => "websocket_upgrade",
            Rejection::HandshakeTimeout => "handshake_timeout",
            Rejection::ClosedEarly => "closed_early",
        }
    }
}

/// What a listener reports to whoever runs it (counters, logs).
pub trait ListenerEvents: Send + Sync + 'static {
    /// An accept failed (e.g. the open-file limit).
    fn accept_failed(&self, listener: &str, error: &io::Error);
    /// A connection from `peer` was closed before MQTT for `reason`; `detail` says more.
    fn rejected(
        &self,
        listener: &str,
        peer: SocketAddr,
        reason: Rejection,
        detail: &dyn std::fmt::Display,
    );
}

/// An accepted connection, handed to the connection handler.
pub struct Accepted {
    /// The byte pipe (after the TLS handshake and WebSocket upgrade, where the listener has
    /// them).
    pub stream: Stream,
    /// The client's address: from the PROXY header on a `proxy_protocol` listener, else the
    /// TCP peer's.
    pub peer: SocketAddr,
    /// The listener's name.
    pub listener: Arc<str>,
    /// The connection's place under the listener's limit; held until the connection ends.
    pub permit: OwnedSemaphorePermit,
}

/// What happens to an accepted socket before the handler gets it.
struct Prelude {
    name: Arc<str>,
    proxy_protocol: bool,
    rate: Option<ConnectionRate>,
    /// Swappable (reloads): each handshake takes the configuration current at its start.
    tls: Option<Arc<ReloadableTls>>,
    /// The WebSocket path and largest frame, on a WebSocket listener.
    ws: Option<(Box<str>, u64)>,
}

/// A bound listener, ready to accept.
pub struct Listener {
    tcp: TcpListener,
    prelude: Arc<Prelude>,
    kind: ListenerKind,
    limit: Arc<Semaphore>,
    local_addr: SocketAddr,
    keepalive: Option<socket2::TcpKeepalive>,
    user_timeout: Option<Duration>,
}

impl Listener {
    /// Binds `config.bind` and prepares TLS and WebSocket as the listener's kind needs.
    /// `max_frame` is the largest WebSocket frame or message accepted (the MQTT packet limit).
    pub async fn bind(
        name: &str,
        config: &ListenerConfig,
        max_frame: u32,
    ) -> Result<Listener, ListenerError> {
        let tls = if config.kind.uses_tls() {
            let tls = config.tls.as_ref().ok_or(ListenerError::MissingTls)?;
            Some(ReloadableTls::new(tls)?)
        } else {
            None
        };
        let bind_err = |source| ListenerError::Bind {
            addr: config.bind,
            source,
        };
        let tcp = TcpListener::bind(config.bind).await.map_err(bind_err)?;
        let local_addr = tcp.local_addr().map_err(bind_err)?;
        let prelude = Prelude {
            name: name.into(),
            proxy_protocol: config.proxy_protocol,
            rate: ConnectionRate::new(config.max_connection_rate, config.max_connection_burst),
            tls,
            ws: config
                .kind
                .is_websocket()
                .then(|| (config.ws_path().into(), u64::from(max_frame))),
        };
        Ok(Listener {
            tcp,
            prelude: Arc::new(prelude),
            kind: config.kind,
            limit: Arc::new(Semaphore::new(config.max_connections)),
            local_addr,
            keepalive: (config.tcp_keepalive_secs > 0).then(|| {
                socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(config.tcp_keepalive_secs))
                    .with_interval(KEEPALIVE_INTERVAL)
                    .with_retries(KEEPALIVE_PROBES)
            }),
            user_timeout: (config.tcp_user_timeout_secs > 0)
                .then(|| Duration::from_secs(config.tcp_user_timeout_secs)),
        })
    }

    /// The listener's name from the config.
    pub fn name(&self) -> &str {
        &self.prelude.name
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True for a TLS listener (`tls` or `wss`).
    pub fn is_tls(&self) -> bool {
        self.prelude.tls.is_some()
    }

    /// The swappable TLS configuration of a TLS listener (`tls` or `wss`), for reloads.
    pub fn tls(&self) -> Option<Arc<ReloadableTls>> {
        self.prelude.tls.clone()
    }

    /// The listener's kind.
    pub fn kind(&self) -> ListenerKind {
        self.kind
    }

    /// No Nagle delay; TCP keepalive and `TCP_USER_TIMEOUT`, so that a peer that vanished
    /// without a FIN is found by the kernel even when MQTT keep alive is 0 or output is stuck.
    fn tune(&self, tcp: &TcpStream) {
        let _ = tcp.set_nodelay(true);
        let socket = socket2::SockRef::from(tcp);
        if let Some(keepalive) = &self.keepalive {
            if let Err(error) = socket.set_tcp_keepalive(keepalive) {
                tracing::debug!(%error, "cannot set TCP keepalive");
            }
        }
        if let Some(timeout) = self.user_timeout {
            if let Err(error) = socket.set_tcp_user_timeout(Some(timeout)) {
                tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
            }
        }
    }

    /// Accepts until `shutdown`, running `handler` for each connection as a task of `tasks`
    /// (after the steps before MQTT the listener has), reporting to `events`.
    pub async fn run<H, F>(
        self,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        events: Arc<dyn ListenerEvents>,
        handler: H,
    ) where
        H: Fn(Accepted) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let prelude = &self.prelude;
        let plain = !prelude.proxy_protocol && prelude.tls.is_none() && prelude.ws.is_none();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    events.accept_failed(&prelude.name, &error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                events.rejected(
                    &prelude.name,
                    peer,
                    Rejection::MaxConnections,
                    &"limit reached",
                );
                continue;
            };
            // Behind a proxy the TCP peer is the proxy: the rate applies to the address in
            // the header, once read.
            if !prelude.proxy_protocol && !prelude.admit(peer) {
                events.rejected(
                    &prelude.name,
                    peer,
                    Rejection::RateLimited,
                    &"over the rate",
                );
                continue;
            }
            self.tune(&tcp);
            if plain {
                // Plain TCP: the task is the handler's future itself, nothing around it.
                tasks.spawn(handler(Accepted {
                    stream: Stream::Tcp(tcp),
                    peer,
                    listener: prelude.name.clone(),
                    permit,
                }));
                continue;
            }
            let handler = handler.clone();
            let prelude = prelude.clone();
            let events = events.clone();
            tasks.spawn(async move {
                // Boxed: the handshakes' state must not stay in the connection's task.
                let steps = Box::pin(prelude.open(tcp, peer));
                let (stream, peer) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, steps).await {
                    Ok(Ok(opened)) => opened,
                    Ok(Err((reason, peer, detail))) => {
                        events.rejected(&prelude.name, peer, reason, &detail);
                        return;
                    }
                    Err(_) => {
                        events.rejected(
                            &prelude.name,
                            peer,
                            Rejection::HandshakeTimeout,
                            &"not finished in time",
                        );
                        return;
                    }
                };
                handler(Accepted {
                    stream,
                    peer,
                    listener: prelude.name.clone(),
                    permit,
                })
                .await;
            });
        }
    }
}

impl Prelude {
    /// True when a connection from `peer` is within the connection rate.
    fn admit(&self, peer: SocketAddr) -> bool {
        self.rate
            .as_ref()
            .is_none_or(|rate| rate.admit(peer.ip(), Instant::now()))
    }

    /// The steps before MQTT: the PROXY header, the connection rate behind a proxy, the TLS
    /// handshake, the WebSocket upgrade. The stream and the client's address, or why not (with
    /// the address known by then).
    async fn open(
        &self,
        mut tcp: TcpStream,
        mut peer: SocketAddr,
    ) -> Result<(Stream, SocketAddr), (Rejection, SocketAddr, String)> {
        if self.proxy_protocol {
            match proxy::read_header(&mut tcp).await {
                Ok(Some(source)) => {
                    tracing::debug!(proxy = %peer, client = %source, "PROXY header");
                    peer = source;
                }
                Ok(None) => {}
                Err(proxy::ReadError::Io(error)) => {
                    return Err((Rejection::ClosedEarly, peer, error.to_string()))
                }
                Err(error) => return Err((Rejection::ProxyHeader, peer, error.to_string())),
            }
            if !self.admit(peer) {
                return Err((Rejection::RateLimited, peer, "over the rate".into()));
            }
        }
        let stream = match &self.tls {
            Some(tls) => match TlsAcceptor::from(tls.current()).accept(tcp).await {
                Ok(tls) => Stream::Tls(Box::new(tls)),
                Err(error) => return Err((Rejection::TlsHandshake, peer, error.to_string())),
            },
            None => Stream::Tcp(tcp),
        };
        let Some((path, max_frame)) = &self.ws else {
            return Ok((stream, peer));
        };
        let mut stream = stream;
        match ws::upgrade::accept(&mut stream, path).await {
            Ok(rest) => Ok((
                Stream::Ws(Box::new(WsStream::new(stream, rest, *max_frame))),
                peer,
            )),
            Err(ws::upgrade::UpgradeError::Io(error)) => {
                Err((Rejection::ClosedEarly, peer, error.to_string()))
            }
            Err(error) => Err((Rejection::WebSocketUpgrade, peer, error.to_string())),
        }
    }
}
