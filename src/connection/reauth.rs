//! Re-authentication on a live connection (MQTT 4.12.1): a client that authenticated with an
//! enhanced method at CONNECT sends AUTH 0x19 with new Authentication Data, then answers each
//! AUTH 0x18 challenge with AUTH 0x18, and gets AUTH 0x00 with the method's final data. The
//! connection keeps serving meanwhile. A refusal, or another user than at CONNECT, ends the
//! connection with DISCONNECT 0x87; an exchange that does not follow the method with 0x8C.

use bytestring::ByteString;

use super::connect::auth_packet;
use super::{Connection, Exit};
use crate::auth::enhanced::{AuthExchange, Failure, Step};
use crate::protocol::{reason, Auth};

/// A connection's enhanced authentication.
#[derive(Debug)]
pub(super) struct Enhanced {
    /// The Authentication Method of CONNECT.
    pub(super) method: &'static str,
    /// The user it proved to be.
    pub(super) user: ByteString,
    /// A re-authentication under way.
    pub(super) exchange: Option<Box<dyn AuthExchange>>,
}

impl Connection {
    /// Handles an AUTH packet after CONNACK.
    pub(super) fn on_auth(&mut self, auth: Auth) -> Option<Exit> {
        let Some(state) = self.enhanced.as_mut() else {
            return Some(Exit::violation(
                reason::PROTOCOL_ERROR,
                "AUTH without enhanced authentication at CONNECT (MQTT-4.12.0-1)",
            ));
        };
        let (method, user) = (state.method, state.user.clone());
        let pending = state.exchange.take();
        if auth.properties.authentication_method.as_deref() != Some(method) {
            return Some(Exit::violation(
                reason::PROTOCOL_ERROR,
                "AUTH with another authentication method than CONNECT's (MQTT-4.12.1-1)",
            ));
        }
        let data = auth.properties.authentication_data.unwrap_or_default();
        let mut exchange = match (auth.reason, pending) {
            (reason::RE_AUTHENTICATE, None) => match self.core.auth().enhanced(method) {
                Some(authenticator) => authenticator.begin(),
                None => return Some(Exit::NotAuthorized("authentication method withdrawn")),
            },
            (reason::CONTINUE_AUTHENTICATION, Some(exchange)) => exchange,
            _ => {
                return Some(Exit::violation(
                    reason::PROTOCOL_ERROR,
                    "AUTH out of sequence (MQTT 4.12.1)",
                ))
            }
        };
        let core = self.core.clone();
        match exchange.step(core.auth(), &data) {
            Ok(Step::Continue(challenge)) => {
                self.send(auth_packet(
                    reason::CONTINUE_AUTHENTICATION,
                    method,
                    Some(challenge),
                ));
                if let Some(state) = self.enhanced.as_mut() {
                    state.exchange = Some(exchange);
                }
                None
            }
            Ok(Step::Done { username, .. }) if *username != *user => {
                Some(Exit::NotAuthorized("re-authentication as another user"))
            }
            Ok(Step::Done { data, .. }) => {
                tracing::debug!(client_id = %self.session.client_id, %user, "re-authenticated");
                self.send(auth_packet(reason::SUCCESS, method, data));
                None
            }
            Err(Failure::Denied) => Some(Exit::NotAuthorized("re-authentication failed")),
            Err(error @ Failure::BadExchange(_)) => Some(Exit::violation(
                reason::BAD_AUTHENTICATION_METHOD,
                error.to_string(),
            )),
        }
    }
}
