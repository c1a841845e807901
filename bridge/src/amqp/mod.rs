//! The AMQP 0-9-1 client seam: everything the bridge asks of RabbitMQ goes through this module,
//! which owns the client library (amqprs) and nothing else does. It gives:
//!
//! - [`url`]: `amqp://` / `amqps://` URLs;
//! - `conn`: a connection (plain, or TLS on the broker's rustls with the ring provider),
//!   notice of its end;
//! - `publisher`: a confirm-mode channel, `mandatory` publications, returns matched to their
//!   confirms by message id;
//! - `consumer`: a queue declared, bound and consumed with manual acks and a prefetch;
//! - the message property types ([`BasicProperties`], [`FieldTable`], [`FieldValue`]).
//!
//! amqprs panics on a short string (exchange, queue, routing key, consumer tag) over 255
//! bytes: every such name is checked here first and refused with [`AmqpError::TooLong`].

mod conn;
mod consumer;
mod publisher;
pub mod url;

pub(crate) use amqprs::{BasicProperties, ByteArray, FieldArray, FieldTable, FieldValue};
pub(crate) use conn::{open, ConnectOptions, Connection};
pub(crate) use consumer::{consume, Acker, ConsumeSpec, Consumer};
pub(crate) use publisher::{Confirm, Publisher};

/// A failure of the AMQP client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AmqpError {
    /// The URL or TLS settings cannot be used.
    #[error("{0}")]
    Url(String),
    /// A name longer than AMQP's short strings (255 bytes).
    #[error("{what} is {len} bytes, longer than AMQP's 255")]
    TooLong {
        /// What it names.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The client's error (connection, channel, network).
    #[error(transparent)]
    Client(#[from] amqprs::error::Error),
}

/// The longest AMQP short string.
pub(crate) const MAX_SHORT: usize = 255;

/// Refuses a short string over 255 bytes.
pub(crate) fn check_short(what: &'static str, s: &str) -> Result<(), AmqpError> {
    if s.len() > MAX_SHORT {
        return Err(AmqpError::TooLong { what, len: s.len() });
    }
    Ok(())
}
