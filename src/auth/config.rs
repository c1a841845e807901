//! `[auth]`: who may connect and what they may touch. Typed keys, checked by
//! [`AuthConfig::check`] as part of [`crate::config::Config::validate`]; the files they name
//! (password file, SCRAM file, ACL file, JWKS) are read by [`super::Auth::load`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[auth]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Mosquitto's password file format (`user:$7$...`). Default: none.
    pub password_file: Option<PathBuf>,
    /// SCRAM verifiers in PostgreSQL's format (`user:SCRAM-SHA-256$i:salt$StoredKey:ServerKey`),
    /// for MQTT 5.0 enhanced authentication only. Default: none.
    pub scram_file: Option<PathBuf>,
    /// Mosquitto's acl_file syntax. Default: none (every client may touch every topic).
    pub acl_file: Option<PathBuf>,
    /// Whether clients without credentials are accepted; a listener may override it. Unset
    /// (the default): accepted on loopback listeners only, as Mosquitto 2 does.
    pub allow_anonymous: Option<bool>,
    /// On reload, disconnect clients whose password-file entry was removed or changed
    /// (5.0: DISCONNECT 0x87). Default false.
    pub disconnect_on_revoke: bool,
    /// A denied PUBLISH closes the connection (5.0: DISCONNECT 0x87) instead of being dropped
    /// (3.1.1) or answered with 0x87 (5.0). Default false.
    pub disconnect_on_denied_publish: bool,
    /// The username the in-process AMQP bridge is checked as against the ACL. Default "bridge".
    pub bridge_username: String,
    /// First delay before a refusal is answered, once a source address has failed; doubles
    /// with each failure in a row. Default 200 ms.
    #[serde(deserialize_with = "crate::config::strict_uint")]
    pub failure_delay_ms: u64,
    /// Cap on that delay. Default 5000 ms.
    #[serde(deserialize_with = "crate::config::strict_uint")]
    pub failure_delay_max_ms: u64,
    /// Source addresses remembered for the delay (oldest forgotten first). Default 10000.
    #[serde(deserialize_with = "crate::config::strict_uint")]
    pub failure_table_size: usize,
    /// `[auth.http]`: an external authenticator.
    pub http: Option<HttpAuthConfig>,
    /// `[auth.jwt]`: passwords that are JWTs.
    pub jwt: Option<JwtConfig>,
}

/// The hash `warren passwd` writes (`-H`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// PBKDF2-HMAC-SHA512, Mosquitto 2's `$7$` (readable by Mosquitto).
    #[default]
    Pbkdf2,
    /// Argon2id in the PHC string format (`$argon2id$v=19$...`; Warren only).
    Argon2id,
}

/// `[auth.http]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthConfig {
    /// `http://host:port/path` or `https://host:port/path` to POST to. Required.
    pub url: String,
    /// PEM certificates that an https server must chain to. Unset: the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Whole request, connect to body. Default 2000 ms; past it the client is refused.
    #[serde(
        default = "default_http_timeout",
        deserialize_with = "crate::config::strict_uint"
    )]
    pub timeout_ms: u64,
    /// How long an answer (allow or deny) is reused for the same credentials. 0: no cache.
    /// Default 5000 ms.
    #[serde(
        default = "default_http_cache",
        deserialize_with = "crate::config::strict_uint"
    )]
    pub cache_ms: u64,
    /// Answers kept at most. Default 10000.
    #[serde(
        default = "default_cache_size",
        deserialize_with = "crate::config::strict_uint"
    )]
    pub cache_size: usize,
    /// Extra request headers (e.g. an API key).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[auth.jwt]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 shared secret. One of `secret` and `jwks_file` (or both).
    pub secret: Option<String>,
    /// A JWKS file (RFC 7517) of RS256/ES256 public keys; reread on reload.
    pub jwks_file: Option<PathBuf>,
    /// Required `aud` value; unset: `aud` is not checked.
    pub audience: Option<String>,
    /// Required `iss` value; unset: not checked.
    pub issuer: Option<String>,
    /// The claim that must equal the client id or the username (see `match_field`).
    /// Default "sub"; "" turns the check off.
    pub match_claim: Option<String>,
    /// What `match_claim` must equal: "username" (default) or "client_id".
    pub match_field: MatchField,
    /// The claim holding the client's allowed filters: `{"pub": [...], "sub": [...],
    /// "all": [...]}`. Default "acl".
    pub acl_claim: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`. Default 0.
    #[serde(deserialize_with = "crate::config::strict_uint")]
    pub leeway_secs: u64,
    /// Close a connection when its token expires (5.0: DISCONNECT 0x87). Default true.
    pub disconnect_on_expiry: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            secret: None,
            jwks_file: None,
            audience: None,
            issuer: None,
            match_claim: None,
            match_field: MatchField::default(),
            acl_claim: None,
            leeway_secs: 0,
            disconnect_on_expiry: true,
        }
    }
}

/// `auth.jwt.match_field`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MatchField {
    /// The CONNECT username.
    #[default]
    Username,
    /// The client identifier.
    ClientId,
}

fn default_http_timeout() -> u64 {
    2000
}
fn default_http_cache() -> u64 {
    5000
}
fn default_cache_size() -> usize {
    10_000
}

/// `listeners.<name>.identity_field`: which part of a client certificate is its username.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum IdentityField {
    /// The subject's common name.
    #[default]
    Cn,
    /// The first DNS name of the subject alternative names.
    Dns,
    /// The first e-mail address (rfc822Name) of the SANs.
    Email,
    /// The first URI of the SANs.
    Uri,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            password_file: None,
            scram_file: None,
            acl_file: None,
            allow_anonymous: None,
            disconnect_on_revoke: false,
            disconnect_on_denied_publish: false,
            bridge_username: "bridge".to_owned(),
            failure_delay_ms: 200,
            failure_delay_max_ms: 5000,
            failure_table_size: 10_000,
            http: None,
            jwt: None,
        }
    }
}

impl AuthConfig {
    /// Whether anonymous clients are accepted on a listener bound to `bind` with the
    /// override `listener` (the listener's own `allow_anonymous`).
    pub fn anonymous_allowed(&self, listener: Option<bool>, bind: SocketAddr) -> bool {
        listener
            .or(self.allow_anonymous)
            .unwrap_or_else(|| bind.ip().is_loopback())
    }

    /// True when some authenticator can check credentials.
    pub fn has_authenticator(&self) -> bool {
        self.password_file.is_some()
            || self.scram_file.is_some()
            || self.http.is_some()
            || self.jwt.is_some()
    }

    /// Ranges and cross-key rules: `Err((key, reason))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((format!("auth.{key}"), reason.to_owned()));
        if self.failure_delay_ms > self.failure_delay_max_ms {
            return bad(
                "failure_delay_ms",
                "must not exceed auth.failure_delay_max_ms",
            );
        }
        if self.failure_table_size == 0 {
            return bad("failure_table_size", "must be at least 1 (got 0)");
        }
        if let Some(http) = &self.http {
            let scheme_ok = http.url.starts_with("http://") || http.url.starts_with("https://");
            if !scheme_ok || http.url.parse::<hyper::Uri>().is_err() {
                return bad("http.url", "must be an http:// or https:// URL");
            }
            if http.ca_file.is_some() && !http.url.starts_with("https://") {
                return bad("http.ca_file", "is only used with an https:// url");
            }
            if http.timeout_ms == 0 {
                return bad("http.timeout_ms", "must be at least 1 (got 0)");
            }
        }
        if let Some(jwt) = &self.jwt {
            if jwt.secret.is_none() && jwt.jwks_file.is_none() {
                return bad("jwt", "needs secret (HS256) or jwks_file (RS256/ES256)");
            }
            if jwt.secret.as_deref() == Some("") {
                return bad("jwt.secret", "must not be empty");
            }
        }
        Ok(())
    }
}
