//! The seam of MQTT 5.0 enhanced authentication (MQTT 4.12): an [`EnhancedAuthenticator`] serves
//! one Authentication Method; each CONNECT (or re-authentication, AUTH 0x19) that names it gets
//! a fresh [`AuthExchange`], fed the Authentication Data of each client packet in turn until it
//! is done or refuses. The connection carries the bytes (CONNECT, AUTH 0x18, CONNACK / AUTH 0x00)
//! and knows nothing of the method; a method knows nothing of packets.
//!
//! Built in: SCRAM-SHA-512 over the password file's `$7$` entries and the SCRAM file, and
//! SCRAM-SHA-256 over the SCRAM file ([`super::scram`]), one [`Scram`] per hash.

use super::scram::{self, ScramError};
use super::Auth;

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this Authentication Data in AUTH 0x18 and wait for the client's next.
    Continue(Vec<u8>),
    /// Authenticated as `username`; send `data` (if any) with the CONNACK or AUTH 0x00.
    Done {
        /// The user the client proved to be.
        username: String,
        /// Final Authentication Data for the client.
        data: Option<Vec<u8>>,
    },
}

/// Why an exchange ended without success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The client's data does not follow the method (CONNACK / DISCONNECT 0x8C).
    #[error("bad authentication exchange: {0}")]
    BadExchange(String),
    /// The client did not prove who it claims to be (CONNACK / DISCONNECT 0x87).
    #[error("authentication refused")]
    Denied,
}

/// One exchange of one method.
pub trait AuthExchange: Send + Sync + std::fmt::Debug {
    /// Takes the client's next Authentication Data (the first comes in CONNECT or AUTH 0x19).
    fn step(&mut self, auth: &Auth, data: &[u8]) -> Result<Step, Failure>;
}

/// An Authentication Method the broker serves.
pub trait EnhancedAuthenticator: Send + Sync {
    /// The Authentication Method name, as the client sends it.
    fn method(&self) -> &'static str;
    /// A new exchange.
    fn begin(&self) -> Box<dyn AuthExchange>;
}

/// SCRAM with one hash, over the credentials [`Auth::scram_credential`] finds.
#[derive(Debug)]
pub struct Scram(pub scram::Hash);

impl EnhancedAuthenticator for Scram {
    fn method(&self) -> &'static str {
        self.0.method()
    }

    fn begin(&self) -> Box<dyn AuthExchange> {
        Box::new(ScramExchange {
            hash: self.0,
            state: None,
        })
    }
}

/// Between client-first and client-final: the server's state; before, nothing.
#[derive(Debug)]
struct ScramExchange {
    hash: scram::Hash,
    state: Option<scram::Exchange>,
}

impl AuthExchange for ScramExchange {
    fn step(&mut self, auth: &Auth, data: &[u8]) -> Result<Step, Failure> {
        let bad = |e: ScramError| match e {
            // A username SASLprep refuses belongs to no user: failed authentication.
            ScramError::BadProof | ScramError::BadUsername(_) => Failure::Denied,
            ScramError::Malformed(_) => Failure::BadExchange(e.to_string()),
        };
        match self.state.take() {
            None => {
                let hash = self.hash;
                let (exchange, server_first) = scram::Exchange::start(
                    hash,
                    data,
                    |user| auth.scram_credential(hash, user),
                    scram::process_secret(),
                    &scram::random_nonce(),
                )
                .map_err(bad)?;
                self.state = Some(exchange);
                Ok(Step::Continue(server_first.into_bytes()))
            }
            Some(exchange) => {
                let server_final = exchange.finish(data).map_err(bad)?;
                Ok(Step::Done {
                    username: exchange.username().to_owned(),
                    data: Some(server_final.into_bytes()),
                })
            }
        }
    }
}
