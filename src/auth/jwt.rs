//! Passwords that are JWTs: HS256 with a shared secret, RS256 and ES256 with the public keys of a
//! JWKS file (reread on reload). Checked: the signature, `exp` (required), `nbf`, `aud` and
//! `iss` when configured, and a claim that must equal the username or the client id. An `acl`
//! claim (`{"pub": [...], "sub": [...], "all": [...]}`) becomes the client's own rules.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::acl::{Access, Rule};
use super::config::{JwtConfig, MatchField};
use super::FileError;

/// The public keys of a JWKS file.
#[derive(Clone, Default)]
pub struct JwtKeys {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtKeys({} keys)", self.keys.len())
    }
}

impl JwtKeys {
    /// Reads a JWKS file; RSA keys are used for RS256, P-256 keys for ES256.
    pub fn load(path: &Path) -> Result<JwtKeys, FileError> {
        let text = super::read_file(path)?;
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| FileError::line(path, e.line(), format!("not a JWKS: {e}")))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            use jsonwebtoken::jwk::AlgorithmParameters as P;
            let alg = match &jwk.algorithm {
                P::RSA(_) => Algorithm::RS256,
                P::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| FileError::Other {
                path: path.to_path_buf(),
                reason: format!("key {i}: {e}"),
            })?;
            keys.push((jwk.common.key_id.clone(), alg, key));
        }
        if keys.is_empty() {
            return Err(FileError::Other {
                path: path.to_path_buf(),
                reason: "no RSA or EC key in the set".to_owned(),
            });
        }
        Ok(JwtKeys { keys })
    }
}

/// Why a JWT was refused: the metric label.
pub type JwtRefusal = &'static str;

/// What a valid token grants.
#[derive(Debug)]
pub struct JwtGrant {
    /// The username: the client's, or the matched claim's when the client sent none.
    pub username: Option<String>,
    /// Rules from the `acl` claim, if it has one.
    pub rules: Option<Arc<[Rule]>>,
    /// `exp` (Unix seconds, leeway added): when the token stops being valid.
    pub expires_at: Option<u64>,
}

/// True when `password` has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(password: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(password) else {
        return false;
    };
    text.len() > 10
        && text.split('.').count() == 3
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'='))
}

/// Checks `token` for a client with `client_id` and `username`.
pub fn verify(
    config: &JwtConfig,
    keys: Option<&JwtKeys>,
    token: &str,
    client_id: &str,
    username: Option<&str>,
) -> Result<JwtGrant, JwtRefusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "jwt_malformed")?;
    let candidates: Vec<DecodingKey> = match header.alg {
        Algorithm::HS256 => match &config.secret {
            Some(secret) => vec![DecodingKey::from_secret(secret.as_bytes())],
            None => return Err("jwt_algorithm"),
        },
        alg @ (Algorithm::RS256 | Algorithm::ES256) => keys
            .map(|k| {
                k.keys
                    .iter()
                    .filter(|(kid, a, _)| {
                        *a == alg && (header.kid.is_none() || kid.is_none() || *kid == header.kid)
                    })
                    .map(|(_, _, key)| key.clone())
                    .collect()
            })
            .unwrap_or_default(),
        _ => return Err("jwt_algorithm"),
    };
    if candidates.is_empty() {
        return Err("jwt_no_key");
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = config.leeway_secs;
    validation.validate_nbf = true;
    match &config.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    if let Some(iss) = &config.issuer {
        validation.set_issuer(&[iss]);
    }
    let mut last = "jwt_signature";
    let claims = candidates
        .iter()
        .find_map(
            |key| match jsonwebtoken::decode::<Value>(token, key, &validation) {
                Ok(data) => Some(data.claims),
                Err(error) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match error.kind() {
                        K::InvalidSignature => "jwt_signature",
                        K::ExpiredSignature => "jwt_expired",
                        K::ImmatureSignature => "jwt_not_yet_valid",
                        K::InvalidAudience => "jwt_audience",
                        K::InvalidIssuer => "jwt_issuer",
                        K::MissingRequiredClaim(_) => "jwt_missing_claim",
                        _ => "jwt_invalid",
                    };
                    None
                }
            },
        )
        .ok_or(last)?;
    let mut username = username.map(str::to_owned);
    let claim = config.match_claim.as_deref().unwrap_or("sub");
    if !claim.is_empty() {
        let value = claims
            .get(claim)
            .and_then(Value::as_str)
            .ok_or("jwt_claim")?;
        let expected = match config.match_field {
            MatchField::ClientId => Some(client_id),
            MatchField::Username => username.as_deref(),
        };
        match expected {
            Some(expected) if expected == value => {}
            None if config.match_field == MatchField::Username => username = Some(value.to_owned()),
            _ => return Err("jwt_claim"),
        }
    }
    let acl_claim = config.acl_claim.as_deref().unwrap_or("acl");
    let rules = match claims.get(acl_claim) {
        None => None,
        Some(acl) => Some(rules_from_claim(acl).ok_or("jwt_acl")?),
    };
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_u64)
        .map(|exp| exp.saturating_add(config.leeway_secs));
    Ok(JwtGrant {
        username,
        rules,
        expires_at,
    })
}

/// `{"pub": [...], "sub": [...], "all": [...]}` as rules; `None` if malformed.
fn rules_from_claim(acl: &Value) -> Option<Arc<[Rule]>> {
    let object = acl.as_object()?;
    let mut rules = Vec::new();
    for (key, access) in [
        ("pub", Access::Write),
        ("sub", Access::Read),
        ("all", Access::ReadWrite),
    ] {
        let Some(list) = object.get(key) else {
            continue;
        };
        for filter in list.as_array()? {
            rules.push(Rule::new(access, filter.as_str()?, true).ok()?);
        }
    }
    Some(rules.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn config() -> JwtConfig {
        JwtConfig {
            secret: Some("k".to_owned()),
            audience: Some("warren".to_owned()),
            ..JwtConfig::default()
        }
    }

    fn token(claims: Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn hs256_claims() {
        let c = config();
        let good = json!({"sub": "dev1", "aud": "warren", "exp": now() + 60,
                          "acl": {"pub": ["t/%c"], "sub": ["cmd/#"]}});
        let t = token(good.clone(), "k");
        assert!(looks_like_jwt(t.as_bytes()));
        let grant = verify(&c, None, &t, "c1", Some("dev1")).unwrap();
        assert_eq!(grant.rules.unwrap().len(), 2);
        // No username: the claim gives it.
        let grant = verify(&c, None, &t, "c1", None).unwrap();
        assert_eq!(grant.username.as_deref(), Some("dev1"));
        assert_eq!(
            verify(&c, None, &t, "c1", Some("dev2")).unwrap_err(),
            "jwt_claim"
        );
        assert_eq!(
            verify(&c, None, &token(good, "other"), "c1", Some("dev1")).unwrap_err(),
            "jwt_signature"
        );
        let expired = json!({"sub": "dev1", "aud": "warren", "exp": now() - 100});
        assert_eq!(
            verify(&c, None, &token(expired, "k"), "c1", Some("dev1")).unwrap_err(),
            "jwt_expired"
        );
        let aud = json!({"sub": "dev1", "aud": "other", "exp": now() + 60});
        assert_eq!(
            verify(&c, None, &token(aud, "k"), "c1", Some("dev1")).unwrap_err(),
            "jwt_audience"
        );
        let nbf = json!({"sub": "dev1", "aud": "warren", "exp": now() + 60, "nbf": now() + 50});
        assert_eq!(
            verify(&c, None, &token(nbf, "k"), "c1", Some("dev1")).unwrap_err(),
            "jwt_not_yet_valid"
        );
        assert!(!looks_like_jwt(b"secret"));
    }
}
