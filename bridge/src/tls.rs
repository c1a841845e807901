//! The rustls client configuration for a `tls` table (`[bridge.tls]` towards RabbitMQ,
//! `[bridge.mqtt.tls]` towards a remote MQTT broker): the process's rustls with the ring
//! provider, like the broker's listeners (no second TLS stack).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// The client configuration: `ca_file` (else the system's roots) and, with `cert_file` and
/// `key_file`, a client certificate. The error names the file and why.
pub(crate) fn client_config(t: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let at = |p: &std::path::Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_file {
        Some(ca) => {
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| at(ca, &e))? {
                let cert = cert.map_err(|e| at(ca, &e))?;
                roots.add(cert).map_err(|e| at(ca, &e))?;
            }
            if roots.is_empty() {
                return Err(at(ca, &"no certificate in the file"));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => {
            let certs = CertificateDer::pem_file_iter(c)
                .map_err(|e| at(c, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| at(c, &e))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| at(k, &e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| at(c, &e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::TlsFiles;

    #[test]
    fn system_roots_by_default_and_a_bad_file_is_named() {
        assert!(super::client_config(&TlsFiles::default()).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let files = TlsFiles {
            ca_file: Some(empty.clone()),
            ..TlsFiles::default()
        };
        let e = super::client_config(&files).unwrap_err();
        assert!(e.contains(&empty.display().to_string()), "{e}");
    }
}
