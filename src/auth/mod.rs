//! Who may connect, and what they may touch: authenticators and ACLs.
//!
//! The seam: [`Auth::authenticate`] is consulted once at CONNECT (async: it may ask an HTTP
//! service) and returns a [`Grant`] holding the client's [`Access`], a synchronous ACL that the
//! connection asks on SUBSCRIBE and on publish. Nothing here knows sockets: the connection hands
//! over what the transport knows (peer address, listener, the client certificate).
//!
//! Authenticators, in the order they are asked:
//! - the client certificate's identity, on a listener with `use_identity_as_username` ([`cert`]);
//! - the password file, Mosquitto's format ([`passwd`]);
//! - a JWT as the password ([`jwt`]);
//! - an external HTTP service ([`http`]).
//!
//! A client with neither username nor password is anonymous, accepted where the listener allows
//! it ([`config::AuthConfig::anonymous_allowed`]). ACLs come from Mosquitto's `acl_file`
//! ([`acl`]) and from the authenticator's answer (HTTP rules, JWT claims).
//!
//! MQTT 5.0 enhanced authentication ([`enhanced`]): SCRAM ([`scram`]) over the password file's
//! `$7$` entries and the SCRAM file ([`scram_file`]).
//!
//! [`Auth::reload`] rereads the password file, the SCRAM file, the ACL file and the JWKS file
//! together; a failure
//! keeps what was loaded. Refused sources are slowed down by [`throttle`].

pub mod access;
pub mod acl;
pub mod cert;
pub mod config;
pub mod enhanced;
pub mod http;
pub mod jwt;
pub mod passwd;
pub mod passwd_cmd;
pub mod scram;
pub mod scram_file;
pub mod throttle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytestring::ByteString;
use parking_lot::RwLock;

pub use access::Access;
use acl::{AclFile, Rule};
use config::{AuthConfig, IdentityField};
use jwt::JwtKeys;
use passwd::{Check, PasswordFile};
use throttle::Throttle;

/// A file of the auth configuration that cannot be used. Each names the file and, where it
/// applies, the line.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    /// Missing or unreadable.
    #[error("{}: cannot read: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A line is wrong.
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file is wrong as a whole.
    #[error("{}: {reason}", path.display())]
    Other {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl FileError {
    fn line(path: &Path, line: usize, reason: impl Into<String>) -> FileError {
        FileError::Line {
            path: path.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}

/// Reads a whole text file.
fn read_file(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Why the auth configuration could not be loaded: the key and the file's error.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("auth.{key}: {source}")]
pub struct AuthError {
    /// The key naming the file (`password_file`, `scram_file`, `acl_file`, `jwt.jwks_file`, `http.url`, `http.ca_file`).
    pub key: &'static str,
    /// What is wrong with it.
    pub source: FileError,
}

/// What the files say, swapped whole on reload.
#[derive(Debug, Default)]
struct Files {
    passwords: Option<PasswordFile>,
    scram: Option<scram_file::ScramFile>,
    acl: Option<Arc<AclFile>>,
    jwks: Option<JwtKeys>,
}

impl Files {
    fn load(config: &AuthConfig) -> Result<Files, AuthError> {
        let err = |key| move |source| AuthError { key, source };
        Ok(Files {
            passwords: match &config.password_file {
                Some(path) => Some(PasswordFile::load(path).map_err(err("password_file"))?),
                None => None,
            },
            scram: match &config.scram_file {
                Some(path) => Some(scram_file::ScramFile::load(path).map_err(err("scram_file"))?),
                None => None,
            },
            acl: match &config.acl_file {
                Some(path) => Some(Arc::new(AclFile::load(path).map_err(err("acl_file"))?)),
                None => None,
            },
            jwks: match config.jwt.as_ref().and_then(|j| j.jwks_file.as_ref()) {
                Some(path) => Some(JwtKeys::load(path).map_err(err("jwt.jwks_file"))?),
                None => None,
            },
        })
    }
}

impl Files {
    /// `user`'s entry in the password file and lines in the SCRAM file, to see on reload
    /// whether they changed; `None` when it has neither.
    fn fingerprint(&self, user: &str) -> Option<String> {
        let password = self.passwords.as_ref().and_then(|p| p.fingerprint(user));
        let scram = self.scram.as_ref().and_then(|s| s.fingerprint(user));
        if password.is_none() && scram.is_none() {
            return None;
        }
        Some(format!(
            "{}\n{}",
            password.unwrap_or_default(),
            scram.unwrap_or_default()
        ))
    }
}

/// How one listener lets clients in.
#[derive(Debug, Clone, Copy)]
struct ListenerPolicy {
    anonymous: bool,
    identity: Option<IdentityField>,
    cert_identity: IdentityField,
}

/// Why a CONNECT was refused; the string is the metric label (`warren_auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 3.1.1 return code 4, 5.0 0x86.
    BadCredentials(&'static str),
    /// 3.1.1 return code 5, 5.0 0x87.
    NotAuthorized(&'static str),
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadCredentials(l) | Refusal::NotAuthorized(l) => l,
        }
    }
}

/// What a client presents at CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct ConnectRequest<'a> {
    /// Client identifier (assigned, if the client sent none).
    pub client_id: &'a str,
    /// Username, if sent.
    pub username: Option<&'a str>,
    /// Password, if sent.
    pub password: Option<&'a [u8]>,
    /// Source address.
    pub peer: SocketAddr,
    /// Listener name.
    pub listener: &'a str,
    /// The client certificate (DER), on a TLS listener that got one.
    pub peer_cert: Option<&'a [u8]>,
    /// "3.1", "3.1.1" or "5.0".
    pub protocol: &'a str,
}

/// An accepted client.
#[derive(Debug)]
pub struct Grant {
    /// The username the client is known by (from its certificate, a JWT claim, or CONNECT).
    pub username: Option<ByteString>,
    /// Its ACL; `None` when nothing can be refused to it.
    pub access: Option<Box<Access>>,
    /// When its credentials stop being valid (Unix ms): a JWT's `exp`, with
    /// `jwt.disconnect_on_expiry`. The connection is closed then.
    pub expires_at_ms: Option<u64>,
}

/// The authenticators and ACLs of one broker.
pub struct Auth {
    config: AuthConfig,
    listeners: HashMap<String, ListenerPolicy>,
    files: RwLock<Arc<Files>>,
    generation: AtomicU64,
    http: Option<http::HttpAuth>,
    throttle: Throttle,
    /// Password hashes checked at once (argon2id takes 19 MiB and tens of ms each): a flood of
    /// CONNECTs queues here instead of taking every blocking thread and gigabytes.
    hashing: tokio::sync::Semaphore,
    /// The enhanced authentication methods served (5.0 AUTH).
    enhanced: Vec<Box<dyn enhanced::EnhancedAuthenticator>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Reads the files `config.auth` names; the error names the key, file, line and reason.
    /// Logs a WARN for every listener that lets anonymous clients in on a non-loopback address.
    pub fn load(config: &crate::config::Config) -> Result<Auth, AuthError> {
        let auth = &config.auth;
        let files = Files::load(auth)?;
        let http = match &auth.http {
            Some(h) => Some(http::HttpAuth::new(h).map_err(|(key, reason)| AuthError {
                key,
                source: FileError::Other {
                    path: match (key, &h.ca_file) {
                        ("http.ca_file", Some(ca)) => ca.clone(),
                        _ => PathBuf::from(&h.url),
                    },
                    reason,
                },
            })?),
            None => None,
        };
        let listeners = config
            .listeners
            .iter()
            .map(|(name, l)| {
                let policy = ListenerPolicy {
                    anonymous: auth.anonymous_allowed(l.allow_anonymous, l.bind),
                    identity: l.use_identity_as_username.then_some(l.identity_field),
                    cert_identity: l.identity_field,
                };
                (name.clone(), policy)
            })
            .collect();
        Ok(Auth {
            config: auth.clone(),
            listeners,
            files: RwLock::new(Arc::new(files)),
            generation: AtomicU64::new(0),
            http,
            throttle: Throttle::new(
                auth.failure_delay_ms,
                auth.failure_delay_max_ms,
                auth.failure_table_size,
            ),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            ),
            enhanced: {
                let mut methods: Vec<Box<dyn enhanced::EnhancedAuthenticator>> = Vec::new();
                if auth.scram_file.is_some() {
                    methods.push(Box::new(enhanced::Scram(scram::Hash::Sha256)));
                }
                if auth.password_file.is_some() || auth.scram_file.is_some() {
                    methods.push(Box::new(enhanced::Scram(scram::Hash::Sha512)));
                }
                methods
            },
        })
    }

    /// Logs how each listener lets clients in: a WARN where anonymous clients are allowed on a
    /// non-loopback address, and where no client can get in at all.
    pub fn log_policies(&self, config: &crate::config::Config) {
        for (name, l) in &config.listeners {
            let Some(policy) = self.listeners.get(name) else {
                continue;
            };
            if policy.anonymous && !l.bind.ip().is_loopback() {
                tracing::warn!(
                    listener = %name,
                    bind = %l.bind,
                    "anonymous clients are allowed on a non-loopback address: anyone who can \
                     reach it may connect (set allow_anonymous = false and configure [auth])"
                );
            } else if !policy.anonymous
                && policy.identity.is_none()
                && !self.config.has_authenticator()
            {
                tracing::warn!(
                    listener = %name,
                    bind = %l.bind,
                    "no client can connect to this listener: anonymous clients are not allowed \
                     on a non-loopback address by default, and [auth] has no password_file, jwt \
                     or http"
                );
            }
        }
    }

    /// The auth configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Bumped by every successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// True when an ACL file is configured.
    pub fn has_acl_file(&self) -> bool {
        self.config.acl_file.is_some()
    }

    /// The ACL file as last loaded.
    pub fn acl_file(&self) -> Option<Arc<AclFile>> {
        self.files.read().acl.clone()
    }

    /// True when `user`'s password-file entry and SCRAM lines are `stored`.
    fn password_unchanged(&self, user: &str, stored: &str) -> bool {
        self.files
            .read()
            .fingerprint(user)
            .is_some_and(|s| s == stored)
    }

    /// The per-source delay table.
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Rereads the password, ACL and JWKS files; on any error nothing changes. Returns the
    /// number of users and ACL rules now loaded.
    pub fn reload(&self) -> Result<(usize, usize), AuthError> {
        let files = Files::load(&self.config)?;
        let counts = (
            files.passwords.as_ref().map_or(0, PasswordFile::len),
            files.acl.as_ref().map_or(0, |a| a.len()),
        );
        *self.files.write() = Arc::new(files);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(counts)
    }

    /// Decides whether the client may connect and what it may touch.
    pub async fn authenticate(
        self: &Arc<Self>,
        req: &ConnectRequest<'_>,
    ) -> Result<Grant, Refusal> {
        let policy = self
            .listeners
            .get(req.listener)
            .copied()
            .unwrap_or(ListenerPolicy {
                anonymous: false,
                identity: None,
                cert_identity: IdentityField::Cn,
            });
        let cert_identity = req
            .peer_cert
            .and_then(|der| cert::identity(der, policy.cert_identity));
        if policy.identity.is_some() {
            return match cert_identity {
                Some(id) => Ok(self.grant(req.client_id, Some(id), None, false, None)),
                None => Err(Refusal::NotAuthorized("no_certificate_identity")),
            };
        }
        if req.username.is_none() && req.password.is_none() {
            return if policy.anonymous {
                Ok(self.grant(req.client_id, None, None, false, None))
            } else {
                Err(Refusal::NotAuthorized("anonymous"))
            };
        }
        if !self.config.has_authenticator() {
            // Nothing checks credentials: the client counts as anonymous, with the username
            // it claims (as Mosquitto without a password file).
            return if policy.anonymous {
                let user = req.username.map(str::to_owned);
                Ok(self.grant(req.client_id, user, None, false, None))
            } else {
                Err(Refusal::NotAuthorized("anonymous"))
            };
        }
        let password = req.password.unwrap_or_default();
        let mut files = self.files.read().clone();
        if let (Some(_), Some(user)) = (&files.passwords, req.username) {
            let check;
            (check, files) = {
                let _permit = self
                    .hashing
                    .acquire()
                    .await
                    .map_err(|_| Refusal::BadCredentials("internal"))?;
                let (user, password) = (user.to_owned(), password.to_vec());
                // PBKDF2 and argon2 take real CPU time: off the connection threads.
                tokio::task::spawn_blocking(move || {
                    let check = files
                        .passwords
                        .as_ref()
                        .map_or(Check::UnknownUser, |p| p.check(&user, &password));
                    (check, files)
                })
                .await
                .map_err(|_| Refusal::BadCredentials("internal"))?
            };
            match check {
                Check::Valid => {
                    let stored = files
                        .fingerprint(user)
                        .map(|s| (ByteString::from(user), s.into_boxed_str()));
                    return Ok(self.grant(req.client_id, Some(user.into()), None, false, stored));
                }
                Check::WrongPassword => return Err(Refusal::BadCredentials("bad_password")),
                Check::UnknownUser => {}
            }
        }
        if let Some(jwt_config) = &self.config.jwt {
            if jwt::looks_like_jwt(password) {
                let token = std::str::from_utf8(password).unwrap_or_default();
                let grant = jwt::verify(
                    jwt_config,
                    files.jwks.as_ref(),
                    token,
                    req.client_id,
                    req.username,
                )
                .map_err(Refusal::BadCredentials)?;
                let mut granted =
                    self.grant(req.client_id, grant.username, grant.rules, false, None);
                if jwt_config.disconnect_on_expiry {
                    granted.expires_at_ms = grant.expires_at.map(|s| s.saturating_mul(1000));
                }
                return Ok(granted);
            }
        }
        if let Some(http) = &self.http {
            let request = http::Request {
                client_id: req.client_id,
                username: req.username,
                password: req.password,
                peer: req.peer.ip(),
                listener: req.listener,
                cert_identity: cert_identity.as_deref(),
                protocol: req.protocol,
            };
            let now_ms = crate::wall::unix_ms();
            return match http.check(&request, now_ms).await {
                Ok(http::Answer::Allow { superuser, rules }) => {
                    let user = req.username.map(str::to_owned);
                    Ok(self.grant(req.client_id, user, rules, superuser, None))
                }
                Ok(http::Answer::Deny) => Err(Refusal::BadCredentials("http_denied")),
                Err(label) => Err(Refusal::BadCredentials(label)),
            };
        }
        Err(Refusal::BadCredentials("unknown_user"))
    }

    /// The enhanced authentication method called `method`, if it is served.
    pub fn enhanced(&self, method: &str) -> Option<&dyn enhanced::EnhancedAuthenticator> {
        self.enhanced
            .iter()
            .find(|a| a.method() == method)
            .map(|a| &**a)
    }

    /// The `hash` SCRAM credential of `user`: its line in the SCRAM file, else (SHA-512 only)
    /// its `$7$` entry in the password file.
    pub fn scram_credential(&self, hash: scram::Hash, user: &str) -> Option<scram::Credential> {
        let files = self.files.read();
        files
            .scram
            .as_ref()
            .and_then(|f| f.credential(hash, user))
            .or_else(|| match hash {
                scram::Hash::Sha512 => files.passwords.as_ref()?.scram_credential(user),
                scram::Hash::Sha256 => None,
            })
    }

    /// The grant of a client that enhanced authentication accepted as `user`, as a password
    /// check would give it (its credentials in the password and SCRAM files are revocable on reload).
    pub fn grant_enhanced(self: &Arc<Self>, client_id: &str, user: &str) -> Grant {
        let stored = self
            .files
            .read()
            .fingerprint(user)
            .map(|s| (ByteString::from(user), s.into_boxed_str()));
        self.grant(client_id, Some(user.to_owned()), None, false, stored)
    }

    fn grant(
        self: &Arc<Self>,
        client_id: &str,
        username: Option<String>,
        rules: Option<Arc<[Rule]>>,
        superuser: bool,
        credential: Option<(ByteString, Box<str>)>,
    ) -> Grant {
        let username = username.map(ByteString::from);
        let revocable = credential.is_some() && self.config.disconnect_on_revoke;
        let needs_access = !superuser && (rules.is_some() || self.has_acl_file());
        let access = (needs_access || revocable).then(|| {
            let mut access = Access::new(
                self.clone(),
                ByteString::from(client_id),
                username.clone(),
                rules,
                superuser,
            );
            access.credential = credential;
            Box::new(access)
        });
        Grant {
            username,
            access,
            expires_at_ms: None,
        }
    }

    /// The access of the in-process AMQP bridge: `bridge_username` against the ACL file;
    /// `None` (everything) without one.
    pub fn bridge_access(self: &Arc<Self>) -> Option<Access> {
        self.has_acl_file().then(|| {
            Access::new(
                self.clone(),
                ByteString::from_static("$bridge"),
                Some(ByteString::from(self.config.bridge_username.as_str())),
                None,
                false,
            )
        })
    }
}
