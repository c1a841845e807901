//! TLS server configuration (temporary stub; replaced by the config branch).
#![allow(missing_docs)]
use std::sync::Arc;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let _ = tls;
    Err(TlsError("not built yet".into()))
}
