//! Warren: an MQTT 3.1, 3.1.1 and 5.0 broker.
//!
//! How the crate is cut (one concept a module):
//! - [`protocol`]: MQTT packets on the wire: typed packets, decoder, encoder. No I/O.
//! - [`router`]: the subscription trie and the retained store: plain data structures.
//! - [`session`]: one client's state (subscriptions, QoS 1/2 in flight) and its [`session::mailbox`].
//! - [`store`]: where offline sessions wait, behind the [`store::SessionStore`] trait.
//! - [`transport`]: TCP, TLS and WebSocket listeners, PROXY protocol, accept loop, connection
//!   limits and rates. No MQTT.
//! - [`rate`]: token buckets (connection rate per address, publish rate per client).
//! - [`gate`]: the acknowledgement gate: a QoS 1/2 PUBLISH is answered once every owner holds it.
//! - [`connection`]: the per-connection task that joins socket, codec, session and broker.
//! - [`broker`]: the broker's core behind a narrow API ([`broker::core::Core`]): fan-out
//!   ([`broker::routing`]), the client-id registry with takeover ([`broker::registry`]), offline
//!   timers, in-process clients ([`broker::local`]), `$SYS`.
//! - [`server`]: assembles all of it: [`server::Broker::start`] → [`server::BrokerHandle`].
//! - [`metrics`]: counters ([`metrics::stats`]) and the Prometheus endpoint.
//! - [`admin`]: the admin HTTP API, `warren ctl` and the web console, over the broker's query
//!   API ([`broker::clients`]).
//! - [`config`], [`tls`]: typed configuration, TLS setup.
//!
//! `main.rs` only parses the command line and calls [`server::Broker::start`], as tests do.

pub mod admin;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod config;
pub mod connection;
pub mod gate;
pub mod metrics;
pub mod protocol;
pub mod rate;
pub mod router;
pub mod runtime;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
pub mod transport;
pub mod wall;

pub use config::Config;
pub use metrics::stats;
pub use server::{Broker, BrokerHandle};
