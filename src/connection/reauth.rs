//! Re-authentication on a live connection (MQTT 4.12.1): a client that authenticated with
//! SCRAM-SHA-512 at CONNECT sends AUTH 0x19 with a new client-first message, gets AUTH 0x18
//! with server-first, answers AUTH 0x18 with its proof, and gets AUTH 0x00 with server-final.
//! The connection keeps serving meanwhile. A proof that does not match, or a different user,
//! ends the connection with DISCONNECT 0x87; an exchange that does not follow SCRAM with 0x8C.

use super::connect::{random_nonce, scram_secret};
use super::{Connection, Exit};
use crate::auth::scram::{self, ScramError};
use crate::protocol::{reason, Auth, AuthProperties, Packet};
use bytes::Bytes;
use bytestring::ByteString;

impl Connection {
    /// Handles an AUTH packet after CONNACK.
    pub(super) fn on_auth(&mut self, auth: Auth) -> Option<Exit> {
        let Some(user) = self.scram_user.clone() else {
            return Some(Exit::violation(
                reason::PROTOCOL_ERROR,
                "AUTH without enhanced authentication at CONNECT (MQTT-4.12.0-1)",
            ));
        };
        if auth.properties.authentication_method.as_deref() != Some(scram::METHOD) {
            return Some(Exit::violation(
                reason::PROTOCOL_ERROR,
                "AUTH with another authentication method than CONNECT's (MQTT-4.12.1-1)",
            ));
        }
        let data = auth.properties.authentication_data.unwrap_or_default();
        match (auth.reason, self.reauth.take()) {
            (reason::RE_AUTHENTICATE, None) => {
                let core = self.core.clone();
                let started = scram::Exchange::start(
                    &data,
                    |name| core.auth().scram_credential(name),
                    scram_secret(),
                    &random_nonce(),
                );
                match started {
                    Ok((exchange, _)) if exchange.username() != &*user => {
                        Some(Exit::NotAuthorized("re-authentication as another user"))
                    }
                    Ok((exchange, server_first)) => {
                        self.send_auth(reason::CONTINUE_AUTHENTICATION, server_first);
                        self.reauth = Some(Box::new(exchange));
                        None
                    }
                    Err(error) => Some(bad_exchange(error)),
                }
            }
            (reason::CONTINUE_AUTHENTICATION, Some(exchange)) => match exchange.finish(&data) {
                Ok(server_final) => {
                    tracing::debug!(client_id = %self.session.client_id, %user, "re-authenticated");
                    self.send_auth(reason::SUCCESS, server_final);
                    None
                }
                Err(ScramError::BadProof) => Some(Exit::NotAuthorized("re-authentication failed")),
                Err(error) => Some(bad_exchange(error)),
            },
            _ => Some(Exit::violation(
                reason::PROTOCOL_ERROR,
                "AUTH out of sequence (MQTT 4.12.1)",
            )),
        }
    }

    fn send_auth(&mut self, code: u8, data: String) {
        self.send(Packet::Auth(Auth {
            reason: code,
            properties: AuthProperties {
                authentication_method: Some(ByteString::from_static(scram::METHOD)),
                authentication_data: Some(Bytes::from(data)),
                ..AuthProperties::default()
            },
        }));
    }
}

fn bad_exchange(error: ScramError) -> Exit {
    Exit::violation(reason::BAD_AUTHENTICATION_METHOD, error.to_string())
}
