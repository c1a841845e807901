//! Bearer tokens of the admin API, kept only as SHA-256 digests (from `[admin] tokens` and
//! `[admin] token_file`), compared in constant time. No token configured: every request is
//! let in, and [`super::bind`] has made sure the listener is on a loopback address.
//! [`TokenStore`] holds the tokens in force; a reload rereads the token file into it.

use std::sync::Arc;

use hyper::header::{HeaderMap, AUTHORIZATION};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminError;
use crate::config::AdminConfig;

/// The digests of the accepted tokens.
#[derive(Debug, Default, Clone)]
pub struct Tokens(Vec<[u8; 32]>);

impl Tokens {
    /// The digests of `config` and its token file.
    pub fn load(config: &AdminConfig) -> Result<Tokens, AdminError> {
        let mut digests = Vec::new();
        for token in &config.tokens {
            // Checked by the config's validation already.
            if let Some(digest) = parse_digest(token) {
                digests.push(digest);
            }
        }
        if let Some(path) = &config.token_file {
            let bad = |reason: String| AdminError::TokenFile {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or_default().trim();
                if line.is_empty() {
                    continue;
                }
                let digest = parse_digest(line).ok_or_else(|| {
                    bad(format!(
                        "line {}: not a SHA-256 digest (64 hex digits)",
                        n + 1
                    ))
                })?;
                digests.push(digest);
            }
        }
        Ok(Tokens(digests))
    }

    /// True when no token is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the request may go on: no token is configured, or it carries one of them.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(token) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let digest = digest(token.trim());
        // Every digest is compared, so the time taken does not tell which one matched.
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, d| found | d.ct_eq(&digest))
            .into()
    }
}

/// The tokens in force, swapped whole by a reload ([`crate::server::Reloader`]).
#[derive(Debug)]
pub struct TokenStore {
    config: AdminConfig,
    current: RwLock<Arc<Tokens>>,
}

impl TokenStore {
    /// Loads the tokens of `config` and its token file; refuses to leave a non-loopback
    /// listener without tokens.
    pub fn load(config: &AdminConfig) -> Result<TokenStore, AdminError> {
        let store = TokenStore {
            config: config.clone(),
            current: RwLock::default(),
        };
        let tokens = store.prepare()?;
        store.install(tokens);
        Ok(store)
    }

    /// The tokens in force.
    pub fn current(&self) -> Arc<Tokens> {
        self.current.read().clone()
    }

    /// Reads the token file again, without installing it: the tokens a reload would put in
    /// force, or why it cannot (an unusable file, or no token left on a non-loopback address).
    pub fn prepare(&self) -> Result<Tokens, AdminError> {
        let tokens = Tokens::load(&self.config)?;
        let addr = self.config.bind;
        if tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(AdminError::Exposed { addr });
        }
        Ok(tokens)
    }

    /// Puts `tokens` in force (from [`TokenStore::prepare`]).
    pub fn install(&self, tokens: Tokens) {
        *self.current.write() = Arc::new(tokens);
    }
}

/// The SHA-256 digest of `token`.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The digest of `token` in hex, as `[admin] tokens` holds it.
pub fn digest_hex(token: &str) -> String {
    digest(token).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn a_token_is_accepted_by_its_digest_only() {
        let config = AdminConfig {
            tokens: vec![digest_hex("s3cret")],
            ..AdminConfig::default()
        };
        let tokens = Tokens::load(&config).unwrap();
        assert!(tokens.allows(&headers("Bearer s3cret")));
        assert!(!tokens.allows(&headers("Bearer s3cret2")));
        assert!(!tokens.allows(&headers("Basic s3cret")));
        assert!(!tokens.allows(&HeaderMap::new()));
        // The digest itself is no token.
        assert!(!tokens.allows(&headers(&format!("Bearer {}", digest_hex("s3cret")))));
    }

    #[test]
    fn the_token_file_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("# ops\n{}\nnot-a-digest\n", digest_hex("a"))).unwrap();
        let config = AdminConfig {
            token_file: Some(path),
            ..AdminConfig::default()
        };
        let error = Tokens::load(&config).unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn a_reload_may_not_leave_a_public_listener_without_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, digest_hex("a")).unwrap();
        let config = AdminConfig {
            bind: "0.0.0.0:9884".parse().unwrap(),
            token_file: Some(path.clone()),
            ..AdminConfig::default()
        };
        let store = TokenStore::load(&config).unwrap();
        std::fs::write(&path, "# nobody\n").unwrap();
        assert!(matches!(store.prepare(), Err(AdminError::Exposed { .. })));
        assert!(store.current().allows(&headers("Bearer a")));
    }
}
