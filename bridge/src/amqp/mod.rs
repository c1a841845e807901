//! The AMQP 0-9-1 client: everything the bridge asks of RabbitMQ goes through this module,
//! and nothing else speaks AMQP. Our own, on tokio, because neither client crate fit: lapin
//! costs twice the CPU per message of this one and runs its I/O on a thread of its own (a
//! hand-off per publish and per confirm); amqprs decodes every string as UTF-8 and drops the
//! connection on one that is not (MQTT 5 correlation data is binary), and panics on names
//! over 255 bytes. It gives:
//!
//! - [`url`]: `amqp://` / `amqps://` URLs;
//! - `wire`: frames, field tables and properties, the methods (bytes in, bytes out);
//! - `conn`: a connection (plain, or TLS on the broker's rustls), its reader and writer tasks,
//!   heartbeats, notice of its end;
//! - `channel`: a channel's id, events and synchronous calls;
//! - `publisher`: a confirm-mode channel, `mandatory` publications written in batches,
//!   returns matched to their confirms by message id;
//! - `consumer`: a queue declared, bound and consumed with manual acks and a prefetch.
//!
//! The methods known are those a publisher with confirms and a consumer with manual acks
//! meet; RabbitMQ sending any other is a protocol error that ends the connection.

mod channel;
mod conn;
mod consumer;
mod publisher;
pub mod url;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

pub(crate) use conn::{open, ConnectOptions, Connection};
pub(crate) use consumer::{consume, Acker, ConsumeSpec, Consumer};
pub(crate) use publisher::{Confirm, Publisher};
pub(crate) use wire::props::BasicProperties;
pub(crate) use wire::table::{FieldTable, FieldValue};
pub(crate) use wire::MAX_SHORT;

/// A failure of the AMQP client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AmqpError {
    /// The URL or TLS settings cannot be used.
    #[error("{0}")]
    Url(String),
    /// A name longer than AMQP's short strings (nothing was sent).
    #[error(transparent)]
    TooLong(#[from] wire::TooLong),
    /// A message that can never be published (nothing was sent; the channel is fine).
    #[error(transparent)]
    Unpublishable(#[from] wire::method::PublishError),
    /// The network.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// RabbitMQ refused the connection (credentials, virtual host, mechanism).
    #[error("refused: {0}")]
    Refused(String),
    /// RabbitMQ broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] wire::WireError),
    /// The channel or the connection ended, and why.
    #[error("{0}")]
    Gone(String),
}
