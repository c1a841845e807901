//! Warren: an MQTT 3.1, 3.1.1 and 5.0 broker.
//!
//! How the crate is cut (one concept a module):
//! - [`protocol`]: MQTT packets on the wire: typed packets, decoder, encoder. No I/O.
//! - [`router`]: the subscription trie and the retained store: plain data structures.
//! - [`session`]: one client's state (subscriptions, QoS 1/2 in flight) and its [`session::mailbox`].
//! - [`store`]: where offline sessions wait, behind the [`store::SessionStore`] trait.
//! - [`transport`]: TCP and TLS listeners, accept loop, connection limits. No MQTT.
//! - [`connection`]: the per-connection task that joins socket, codec, session and router.
//! - [`broker`]: assembles all of it: [`broker::Broker::start`] → [`broker::BrokerHandle`];
//!   fan-out ([`broker::routing`]) and the client-id registry with takeover ([`broker::registry`]).
//! - [`metrics`]: counters ([`metrics::stats`]), the Prometheus endpoint, `$SYS` topics.
//! - [`config`], [`tls`]: typed configuration, TLS setup.
//!
//! `main.rs` only parses the command line and calls [`broker::Broker::start`], as tests do.

pub mod broker;
pub mod config;
pub mod connection;
pub mod metrics;
pub mod protocol;
pub mod router;
pub mod session;
pub mod store;
pub mod tls;
pub mod transport;

pub use broker::{Broker, BrokerHandle};
pub use config::Config;
pub use metrics::stats;
