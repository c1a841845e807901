//! SCRAM-SHA-512 (RFC 5802 with SHA-512, RFC 7677's shape) for MQTT 5.0 enhanced
//! authentication: the server's side of the exchange, as a pure state machine over the
//! Authentication Data of CONNECT and AUTH packets. No I/O; the connection carries the bytes.
//!
//! The credentials are the password file's `$7$` entries: Mosquitto's `$7$` hash is
//! PBKDF2-HMAC-SHA512 of the password over the entry's salt and iteration count, 64 bytes,
//! which is exactly SCRAM's SaltedPassword = Hi(password, salt, i) for SHA-512, so the file
//! needs no second secret. (`$6$` and argon2id entries hold no SaltedPassword and cannot do
//! SCRAM; SCRAM-SHA-256 would need its own stored keys and is not offered.) Passwords are used
//! as the file hashed them, without SASLprep: the same for ASCII passwords.
//!
//! An unknown user gets a made-up salt derived from its name, so the exchange runs to the proof
//! check and fails there like a wrong password: the first message does not tell which users
//! exist. Only `n,,` (no channel binding) is accepted.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// The Authentication Method name.
pub const METHOD: &str = "SCRAM-SHA-512";

/// What SCRAM needs of a stored user.
#[derive(Clone)]
pub struct Credential {
    /// The PBKDF2 salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// PBKDF2-HMAC-SHA512(password, salt, iterations), 64 bytes.
    pub salted_password: [u8; 64],
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar (or asks for channel binding).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The proof does not match: wrong password, or unknown user.
    #[error("SCRAM proof does not match")]
    BadProof,
}

/// The server between its first message and the client's final one.
#[derive(Debug)]
pub struct Exchange {
    username: String,
    credential: Credential,
    known: bool,
    /// client-first-message-bare "," server-first-message
    auth_prefix: String,
    nonce: String,
}

type HmacSha512 = Hmac<Sha512>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 64] {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = HmacSha512::new_from_slice(key).expect("HMAC key of any size");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The SCRAM `saslname` decoding of a username (`=2C` is ',', `=3D` is '=').
fn sasl_name(name: &str) -> Result<String, ScramError> {
    if name.is_empty() {
        return Err(ScramError::Malformed("empty username"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in username")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A made-up credential for an unknown user: stable per name, so asking twice shows nothing.
fn decoy(username: &str, secret: &[u8]) -> Credential {
    let digest = Sha512::new()
        .chain_update(secret)
        .chain_update(username.as_bytes())
        .finalize();
    Credential {
        salt: digest[..12].to_vec(),
        iterations: super::passwd::PBKDF2_ITERATIONS,
        salted_password: digest.into(),
    }
}

impl Exchange {
    /// Reads client-first-message and answers server-first-message. `lookup` gives the
    /// credential of a username (None: unknown); `secret` seeds decoys for unknown users;
    /// `server_nonce` is fresh random text (printable, no ',').
    pub fn start(
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
        secret: &[u8],
        server_nonce: &str,
    ) -> Result<(Exchange, String), ScramError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let bare = text.strip_prefix("n,,").ok_or(ScramError::Malformed(
            "only \"n,,\" (no channel binding) is accepted",
        ))?;
        let mut parts = bare.split(',');
        let username = parts
            .next()
            .and_then(|p| p.strip_prefix("n="))
            .ok_or(ScramError::Malformed("no username"))?;
        let client_nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no client nonce"))?;
        let username = sasl_name(username)?;
        let (credential, known) = match lookup(&username) {
            Some(credential) => (credential, true),
            None => (decoy(&username, secret), false),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let exchange = Exchange {
            username,
            credential,
            known,
            auth_prefix: format!("{bare},{server_first}"),
            nonce,
        };
        Ok((exchange, server_first))
    }

    /// The username the client claims.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Reads client-final-message; on a matching proof, answers server-final-message.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut parts = without_proof.split(',');
        if parts.next() != Some("c=biws") {
            return Err(ScramError::Malformed(
                "channel binding must be \"biws\" (n,,)",
            ));
        }
        if parts.next().and_then(|p| p.strip_prefix("r=")) != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != 64 {
            return Err(ScramError::Malformed("proof is not 64 bytes"));
        }
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let salted = &self.credential.salted_password;
        let stored_key: [u8; 64] = Sha512::digest(hmac(salted, b"Client Key")).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 64];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature)) {
            *k = p ^ s;
        }
        let candidate: [u8; 64] = Sha512::digest(client_key).into();
        let matches: bool = candidate.ct_eq(&stored_key).into();
        if !(matches && self.known) {
            return Err(ScramError::BadProof);
        }
        let server_key = hmac(salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// A per-process secret that seeds the decoys of unknown users.
pub fn process_secret() -> &'static [u8] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        // Without randomness the decoys are merely predictable, which reveals little.
        let _ = getrandom::fill(&mut secret);
        secret
    })
}

/// A fresh server nonce: 18 random bytes in base64.
pub fn random_nonce() -> String {
    let mut bytes = [0u8; 18];
    if getrandom::fill(&mut bytes).is_err() {
        // Still unique per exchange, if not unpredictable.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) ^ u64::from(std::process::id()) << 32;
        bytes[..8].copy_from_slice(&n.to_le_bytes());
    }
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802's client side, for the round trip.
    fn client_final(server_first: &str, bare: &str, password: &[u8]) -> String {
        let mut fields = server_first.split(',');
        let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64
            .decode(fields.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let i: u32 = fields.next().unwrap()[2..].parse().unwrap();
        let mut salted = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, i, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 64] = Sha512::digest(client_key).into();
        let without = format!("c=biws,r={nonce}");
        let auth = format!("{bare},{server_first},{without}");
        let sig = hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        format!("{without},p={}", B64.encode(proof))
    }

    fn credential(password: &[u8]) -> Credential {
        let salt = b"saltsaltsalt".to_vec();
        let mut salted_password = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, 101, &mut salted_password);
        Credential {
            salt,
            iterations: 101,
            salted_password,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let bare = "n=al=2Cice,r=cnonce";
        let first = format!("n,,{bare}");
        let lookup = |u: &str| (u == "al,ice").then(|| credential(b"pw"));
        let (ex, server_first) = Exchange::start(first.as_bytes(), lookup, b"k", "snonce").unwrap();
        assert_eq!(ex.username(), "al,ice");
        assert!(server_first.starts_with("r=cnoncesnonce,s="));
        let good = client_final(&server_first, bare, b"pw");
        assert!(ex.finish(good.as_bytes()).unwrap().starts_with("v="));
        let bad = client_final(&server_first, bare, b"wrong");
        assert_eq!(ex.finish(bad.as_bytes()), Err(ScramError::BadProof));

        // Unknown user: a decoy salt, and the proof fails.
        let (ex, server_first) = Exchange::start(b"n,,n=bob,r=x", |_| None, b"k", "y").unwrap();
        let attempt = client_final(&server_first, "n=bob,r=x", b"pw");
        assert_eq!(ex.finish(attempt.as_bytes()), Err(ScramError::BadProof));

        for bad_first in [
            &b"y,,n=a,r=b"[..],
            b"n,,r=b",
            b"n,,n=a",
            b"n,,n=a=zz,r=b",
            b"\xff",
        ] {
            assert!(Exchange::start(bad_first, |_| None, b"k", "s").is_err());
        }
    }
}
