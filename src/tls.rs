//! TLS for `kind = "tls"` listeners: a rustls [`ServerConfig`] from a [`TlsConfig`]; and the
//! [`ClientConfig`] of Warren's own outgoing TLS connections (the HTTP authenticator).
//!
//! The `ring` provider is passed explicitly (`builder_with_provider`), so no process-level
//! crypto provider has to be installed, and a second provider linked in (by a dependency) does
//! no harm.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{ClientAuth, TlsConfig};

/// Why a TLS listener could not be set up. Each names the file at fault and the reason.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing or unreadable, holds no usable PEM item, or is rejected by rustls.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// `client_auth` is optional or required but `client_ca` is not set.
    #[error("client_auth is {0:?} but no client_ca is set")]
    NoClientCa(ClientAuth),
    /// No CA file was given and the system has no usable trusted root certificates.
    #[error("no ca_file set and no trusted root certificates found on the system")]
    NoSystemRoots,
    /// rustls refused the configuration for a reason not tied to one file.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Describes a PEM error; an I/O error (e.g. a missing file) is shown as such.
fn pem_reason(err: rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error as E;
    match err {
        E::Io(e) => format!("cannot read: {e}"),
        E::NoItemsFound => format!("no {what} found in the file (expected PEM)"),
        other => format!("bad PEM: {other:?}"),
    }
}

/// Loads every certificate in a PEM file; an empty result is an error.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, pem_reason(e, "certificate")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, pem_reason(e, "certificate")))?;
    if certs.is_empty() {
        return Err(file_error(
            path,
            "no certificate found in the file (expected PEM \"BEGIN CERTIFICATE\")",
        ));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, pem_reason(e, "private key")))
}

/// The ring provider, as used by every TLS config Warren builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration for Warren's own outgoing TLS (the HTTP authenticator): servers are
/// verified against the certificates of `ca_file`, or, without one, the system's trusted roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error(path, format!("unusable CA certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS listener's server configuration, swappable while the listener runs: a reload builds a
/// new one from the same files ([`ReloadableTls::prepare`]) and installs it; connections
/// accepted afterwards use it, connections already open keep theirs.
#[derive(Debug)]
pub struct ReloadableTls {
    files: TlsConfig,
    current: parking_lot::RwLock<Arc<ServerConfig>>,
}

impl ReloadableTls {
    /// Loads `tls`'s files.
    pub fn new(tls: &TlsConfig) -> Result<Arc<ReloadableTls>, TlsError> {
        Ok(Arc::new(ReloadableTls {
            files: tls.clone(),
            current: parking_lot::RwLock::new(server_config(tls)?),
        }))
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// Reads the files again; nothing changes until [`ReloadableTls::install`].
    pub fn prepare(&self) -> Result<Arc<ServerConfig>, TlsError> {
        server_config(&self.files)
    }

    /// Makes `config` the one new connections get.
    pub fn install(&self, config: Arc<ServerConfig>) {
        *self.current.write() = config;
    }
}

/// Builds the rustls server configuration for a TLS listener: the certificate chain and key
/// from PEM files, and client certificates per `client_auth` (verified against `client_ca`).
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match tls.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode @ (ClientAuth::Optional | ClientAuth::Required) => {
            let ca_path = tls.client_ca.as_deref().ok_or(TlsError::NoClientCa(mode))?;
            let mut roots = RootCertStore::empty();
            for ca in load_certs(ca_path)? {
                roots
                    .add(ca)
                    .map_err(|e| file_error(ca_path, format!("bad CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| file_error(ca_path, format!("cannot use as client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => file_error(
            &tls.key,
            format!(
                "the key does not match the certificate in {}",
                tls.cert.display()
            ),
        ),
        other => file_error(&tls.key, format!("cannot use the key: {other}")),
    })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, ServerConnection};

    /// A directory under the temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("warren-tls-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Writes ca.pem, server.pem (chain), server.key, client.pem, client.key, other.key.
    fn make_certs(dir: &TempDir) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let ca_pem = ca.as_ref().pem();
        dir.write("ca.pem", &ca_pem);

        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &ca).unwrap();
        dir.write("server.pem", &format!("{}{}", server.pem(), ca_pem));
        dir.write("server.key", &server_key.serialize_pem());

        let client_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = params.signed_by(&client_key, &ca).unwrap();
        dir.write("client.pem", &client.pem());
        dir.write("client.key", &client_key.serialize_pem());

        dir.write("other.key", &KeyPair::generate().unwrap().serialize_pem());
    }

    fn tls_config(dir: &TempDir, auth: ClientAuth) -> TlsConfig {
        TlsConfig {
            cert: dir.0.join("server.pem"),
            key: dir.0.join("server.key"),
            client_ca: (auth != ClientAuth::None).then(|| dir.0.join("ca.pem")),
            client_auth: auth,
        }
    }

    /// Runs a TLS handshake in memory; once both sides are done, `Ok(whether the server got a
    /// client certificate)`.
    fn handshake(
        server: Arc<ServerConfig>,
        dir: &TempDir,
        with_client_cert: bool,
    ) -> Result<bool, rustls::Error> {
        let mut roots = RootCertStore::empty();
        for c in load_certs(&dir.0.join("ca.pem")).unwrap() {
            roots.add(c).unwrap();
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let client = if with_client_cert {
            builder
                .with_client_auth_cert(
                    load_certs(&dir.0.join("client.pem")).unwrap(),
                    load_key(&dir.0.join("client.key")).unwrap(),
                )
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let mut c =
            ClientConnection::new(Arc::new(client), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() {
                return Ok(s.peer_certificates().is_some());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn each_client_auth_mode() {
        let dir = TempDir::new("modes");
        make_certs(&dir);

        let none = server_config(&tls_config(&dir, ClientAuth::None)).unwrap();
        assert!(!handshake(none.clone(), &dir, false).unwrap());
        // A client offering a certificate is not asked for it.
        assert!(!handshake(none, &dir, true).unwrap());

        let optional = server_config(&tls_config(&dir, ClientAuth::Optional)).unwrap();
        assert!(!handshake(optional.clone(), &dir, false).unwrap());
        assert!(handshake(optional, &dir, true).unwrap());

        let required = server_config(&tls_config(&dir, ClientAuth::Required)).unwrap();
        assert!(handshake(required.clone(), &dir, true).unwrap());
        assert_eq!(
            handshake(required, &dir, false),
            Err(rustls::Error::NoCertificatesPresented)
        );
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = TempDir::new("errors");
        make_certs(&dir);

        let mut cfg = tls_config(&dir, ClientAuth::None);
        cfg.cert = dir.0.join("missing.pem");
        let err = server_config(&cfg).unwrap_err().to_string();
        assert!(err.starts_with(&cfg.cert.display().to_string()), "{err}");
        assert!(err.contains("cannot read"), "{err}");

        // A key where the certificate should be.
        let mut cfg = tls_config(&dir, ClientAuth::None);
        cfg.cert = dir.0.join("server.key");
        let err = server_config(&cfg).unwrap_err().to_string();
        assert!(err.starts_with(&cfg.cert.display().to_string()), "{err}");
        assert!(err.contains("no certificate"), "{err}");

        let mut cfg = tls_config(&dir, ClientAuth::None);
        cfg.key = dir.0.join("ca.pem");
        let err = server_config(&cfg).unwrap_err().to_string();
        assert!(err.starts_with(&cfg.key.display().to_string()), "{err}");
        assert!(err.contains("no private key"), "{err}");

        let mut cfg = tls_config(&dir, ClientAuth::None);
        cfg.key = dir.0.join("other.key");
        let err = server_config(&cfg).unwrap_err().to_string();
        assert!(err.starts_with(&cfg.key.display().to_string()), "{err}");
        assert!(err.contains("does not match"), "{err}");

        let mut cfg = tls_config(&dir, ClientAuth::Required);
        cfg.client_ca = Some(dir.0.join("no-ca.pem"));
        let err = server_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("no-ca.pem: cannot read"), "{err}");

        let mut cfg = tls_config(&dir, ClientAuth::Optional);
        cfg.client_ca = None;
        assert!(matches!(
            server_config(&cfg),
            Err(TlsError::NoClientCa(ClientAuth::Optional))
        ));
    }
}
