//! Opening a connection (plain or TLS with the process's rustls and the ring provider, like the
//! broker's listeners: no second TLS stack), and noticing its end: RabbitMQ's `connection.close`,
//! a network failure or a missed heartbeat.

use std::sync::Arc;

use amqprs::callbacks::ConnectionCallback;
use amqprs::connection::{Connection as Inner, OpenConnectionArguments};
use amqprs::tls::TlsAdaptor;
use amqprs::Close;
use tokio::sync::watch;

use super::url::AmqpUrl;
use super::AmqpError;

/// What [`open`] needs, read once at start.
#[derive(Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) url: AmqpUrl,
    /// The connection name RabbitMQ shows.
    pub(crate) name: String,
    /// `amqps`: the client configuration.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// A live connection. Dropping every clone closes it.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(super) inner: Inner,
    /// Why RabbitMQ closed it (set by its `connection.close`).
    closed: watch::Receiver<Option<String>>,
}

/// Opens a connection (no timeout here: the caller bounds the attempt).
pub(crate) async fn open(o: &ConnectOptions) -> Result<Connection, AmqpError> {
    let u = &o.url;
    // An IPv6 address goes in brackets in the socket address; TLS wants it bare.
    let addr_host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    let mut args = OpenConnectionArguments::new(&addr_host, u.port, &u.user, &u.password);
    args.virtual_host(&u.vhost).connection_name(&o.name);
    if let Some(h) = u.heartbeat {
        args.heartbeat(h);
    }
    match (&o.tls, u.tls) {
        (Some(config), true) => {
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            args.tls_adaptor(TlsAdaptor::new(connector, u.host.clone()));
        }
        (None, false) => {}
        _ => {
            return Err(AmqpError::Url(
                "TLS settings and URL scheme disagree".into(),
            ))
        }
    }
    let inner = Inner::open(&args).await?;
    let (tx, closed) = watch::channel(None);
    inner.register_callback(Watch { tx }).await?;
    Ok(Connection { inner, closed })
}

impl Connection {
    /// Whether the connection is still up.
    pub(crate) fn is_open(&self) -> bool {
        self.inner.is_open() && self.closed.borrow().is_none()
    }

    /// Waits until the connection ends; why. A network failure is noticed by the caller's
    /// polling of [`Connection::is_open`] too (amqprs signals it only to listeners that were
    /// already waiting).
    pub(crate) async fn closed(&self) -> String {
        let mut w = self.closed.clone();
        tokio::select! {
            r = w.wait_for(|c| c.is_some()) => match r {
                Ok(c) => c.clone().unwrap_or_default(),
                Err(_) => "connection gone".into(),
            },
            failure = self.inner.listen_network_io_failure() => {
                if failure { "network failure".into() } else { "connection closed".into() }
            }
        }
    }

    /// Closes the connection (bounded by the caller).
    pub(crate) async fn close(self) {
        let _ = self.inner.close().await;
    }
}

/// Records RabbitMQ's `connection.close` and logs blocking.
struct Watch {
    tx: watch::Sender<Option<String>>,
}

#[async_trait::async_trait]
impl ConnectionCallback for Watch {
    async fn close(&mut self, _c: &Inner, close: Close) -> Result<(), amqprs::error::Error> {
        self.tx.send_replace(Some(format!(
            "RabbitMQ closed the connection: {} {}",
            close.reply_code(),
            close.reply_text()
        )));
        Ok(())
    }

    async fn blocked(&mut self, _c: &Inner, reason: String) {
        tracing::warn!(reason = %reason, "bridge: RabbitMQ blocked the connection");
    }

    async fn unblocked(&mut self, _c: &Inner) {
        tracing::info!("bridge: RabbitMQ unblocked the connection");
    }

    async fn secret_updated(&mut self, _c: &Inner) {}
}
