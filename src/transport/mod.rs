//! Listeners: bind, accept, TLS handshake, connection limits.
//!
//! This module turns a configured listener into a stream of connected byte pipes
//! ([`Stream`]: plain TCP or TLS over TCP) handed to a connection handler. It knows nothing
//! of MQTT. A semaphore caps the open connections of each listener; accept errors such as
//! running out of file descriptors back off instead of spinning; a TLS handshake that does not
//! finish in time is dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::tls::ReloadableTls;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ListenerConfig, ListenerKind};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
    #[error("kind = \"tls\" needs a tls table")]
    MissingTls,
}

/// A connected client's byte pipe.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// Polls for input and reads what is there into `buf`. On plain TCP the buffer gets its
    /// `reserve` bytes only once input has arrived, so an idle connection holds no read buffer;
    /// TLS keeps its own buffers and reads as usual. `Ready(Ok(0))` means end of stream.
    pub fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        reserve: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(tcp) => loop {
                if let Err(error) = std::task::ready!(tcp.poll_read_ready(cx)) {
                    return Poll::Ready(Err(error));
                }
                if buf.capacity() - buf.len() < reserve {
                    buf.reserve(reserve);
                }
                match tcp.try_read_buf(buf) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                        // Readiness was cleared: the next poll registers the waker.
                    }
                    other => return Poll::Ready(other),
                }
            },
            Stream::Tls(tls) => {
                if buf.capacity() - buf.len() < reserve {
                    buf.reserve(reserve);
                }
                tokio_util::io::poll_read_buf(Pin::new(tls.as_mut()), cx, buf)
            }
        }
    }

    /// Waits for input and reads it (see [`Stream::poll_read_some`]). Cancel-safe.
    pub async fn read_some(&mut self, buf: &mut BytesMut, reserve: usize) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_some(cx, buf, reserve)).await
    }

    /// Polls writing the front of `buf`, removing what was written from it. On TLS the
    /// records are pushed towards the socket as well; call [`Stream::poll_flush_tls`] until
    /// it is ready once `buf` is empty.
    pub fn poll_write_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let written = match self {
            Stream::Tcp(tcp) => std::task::ready!(Pin::new(tcp).poll_write(cx, buf)),
            Stream::Tls(tls) => {
                let n = std::task::ready!(Pin::new(tls.as_mut()).poll_write(cx, buf));
                // Best effort now; the caller flushes until done.
                let _ = Pin::new(tls.as_mut()).poll_flush(cx);
                n
            }
        };
        if let Ok(n) = written {
            bytes::Buf::advance(buf, n);
        }
        Poll::Ready(written)
    }

    /// Polls pushing TLS records buffered by earlier writes to the socket (ready at once on
    /// plain TCP).
    pub fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(_) => Poll::Ready(Ok(())),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    /// True for TLS (which buffers records that need flushing).
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The client's certificate (DER, the leaf), when a TLS client presented one.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Stream::Tcp(_) => None,
            Stream::Tls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()?
                .first()
                .map(|c| c.as_ref()),
        }
    }
}

/// An accepted connection, handed to the connection handler.
pub struct Accepted {
    /// The byte pipe (after the TLS handshake on a TLS listener).
    pub stream: Stream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's name.
    pub listener: Arc<str>,
    /// The connection's place under the listener's limit; held until the connection ends.
    pub permit: OwnedSemaphorePermit,
}

/// A bound listener, ready to accept.
pub struct Listener {
    name: Arc<str>,
    tcp: TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    limit: Arc<Semaphore>,
    local_addr: SocketAddr,
    keepalive: Option<socket2::TcpKeepalive>,
    user_timeout: Option<Duration>,
}

impl Listener {
    /// Binds `config.bind` and prepares TLS if the listener is a TLS one.
    pub async fn bind(name: &str, config: &ListenerConfig) -> Result<Listener, ListenerError> {
        let tls = match config.kind {
            ListenerKind::Tcp => None,
            ListenerKind::Tls => {
                let tls = config.tls.as_ref().ok_or(ListenerError::MissingTls)?;
                Some(ReloadableTls::new(tls)?)
            }
        };
        let bind_err = |source| ListenerError::Bind {
            addr: config.bind,
            source,
        };
        let tcp = TcpListener::bind(config.bind).await.map_err(bind_err)?;
        let local_addr = tcp.local_addr().map_err(bind_err)?;
        Ok(Listener {
            name: name.into(),
            tcp,
            tls,
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
        &self.name
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True for a TLS listener.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The swappable TLS configuration of a TLS listener (for reloads).
    pub fn tls(&self) -> Option<Arc<ReloadableTls>> {
        self.tls.clone()
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
    /// (after the TLS handshake on a TLS listener).
    pub async fn run<H, F>(
        self,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        on_accept_error: impl Fn(&str, &io::Error) + Send + 'static,
        handler: H,
    ) where
        H: Fn(Accepted) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    on_accept_error(&self.name, &error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                tracing::warn!(listener = %self.name, %peer, "connection limit reached; refusing");
                continue;
            };
            self.tune(&tcp);
            let listener = self.name.clone();
            let Some(acceptor) = self.tls.as_ref().map(|t| TlsAcceptor::from(t.current())) else {
                // Plain TCP: the task is the handler's future itself, nothing around it.
                tasks.spawn(handler(Accepted {
                    stream: Stream::Tcp(tcp),
                    peer,
                    listener,
                    permit,
                }));
                continue;
            };
            let handler = handler.clone();
            tasks.spawn(async move {
                // Boxed: the handshake state must not stay in the connection's task.
                let handshake = Box::pin(acceptor.accept(tcp));
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(stream)) => Stream::Tls(Box::new(stream)),
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                handler(Accepted {
                    stream,
                    peer,
                    listener,
                    permit,
                })
                .await;
            });
        }
    }
}
