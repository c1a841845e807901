//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802 with RFC 7677's SHA-256, and SHA-512 in the same
//! shape) for MQTT 5.0 enhanced authentication: the server's side of the exchange, as a pure
//! state machine over the Authentication Data of CONNECT and AUTH packets, one code for both
//! hashes ([`Hash`]). No I/O; the connection carries the bytes.
//!
//! The server keeps StoredKey and ServerKey of each user ([`Credential`]), never the password.
//! They come from two places:
//! - the password file's `$7$` entries (SHA-512 only): Mosquitto's `$7$` hash is
//!   PBKDF2-HMAC-SHA512 of the password over the entry's salt and iteration count, 64 bytes,
//!   which is exactly SCRAM's SaltedPassword = Hi(password, salt, i), so the file needs no
//!   second secret ([`Credential::from_salted`]);
//! - the SCRAM file, lines in PostgreSQL's verifier format ([`super::scram_file`]), the only
//!   source of SCRAM-SHA-256 (a `$7$` entry cannot give a PBKDF2-HMAC-SHA256 output).
//!
//! As RFC 5802 asks, a password is prepared with SASLprep (RFC 4013, as a stored string: code
//! points unassigned in Unicode 3.2 are refused) before Hi() wherever Warren derives keys from one
//! ([`Credential::from_password`]); the username of client-first is prepared the same way before
//! it is looked up (RFC 5802 lets a server refuse what it cannot prepare: these stricter
//! stored-string rules refuse a few names its query rules would allow). ASCII text without
//! control characters is its own SASLprep form. A `$7$` entry holds Hi() of the password as it
//! was typed: it matches SCRAM clients only when that password is its own SASLprep form.
//!
//! An unknown user gets a made-up salt derived from its name, so the exchange runs to the proof
//! check and fails there like a wrong password: the first message does not tell which users
//! exist. Only `n,,` (no channel binding) is accepted.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SCRAM-SHA-256 (RFC 7677): 32-byte keys.
    Sha256,
    /// SCRAM-SHA-512: 64-byte keys.
    Sha512,
}

impl Hash {
    /// Both, in the order a listing names them.
    pub const ALL: [Hash; 2] = [Hash::Sha256, Hash::Sha512];

    /// The mechanism's name: the MQTT Authentication Method, and the verifier's prefix.
    pub fn method(self) -> &'static str {
        match self {
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The hash whose mechanism is called `name`.
    pub fn from_method(name: &str) -> Option<Hash> {
        Hash::ALL.into_iter().find(|h| h.method() == name)
    }

    /// Output length in bytes: of keys, proofs and signatures.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes a key of any length: this cannot fail.
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC key of any size");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha256 => mac::<Hmac<Sha256>>(key, data),
            Hash::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    /// H(data).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i): PBKDF2-HMAC of the password, `output_len()` bytes.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            Hash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Hash::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

/// What SCRAM needs of a stored user.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The mechanism these keys are for.
    pub hash: Hash,
    /// The PBKDF2 salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// H(HMAC(SaltedPassword, "Client Key")), `hash.output_len()` bytes.
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key"), `hash.output_len()` bytes.
    pub server_key: Vec<u8>,
}

impl Credential {
    /// The keys of SaltedPassword = Hi(password, salt, iterations).
    pub fn from_salted(hash: Hash, salt: Vec<u8>, iterations: u32, salted: &[u8]) -> Credential {
        Credential {
            hash,
            salt,
            iterations,
            stored_key: hash.digest(&hash.hmac(salted, b"Client Key")),
            server_key: hash.hmac(salted, b"Server Key"),
        }
    }

    /// The keys of `password`, as PostgreSQL (and `warren passwd --scram-sha-256`) derive them:
    /// Hi() of its SASLprep form. A password SASLprep refuses has no keys.
    pub fn from_password(
        hash: Hash,
        password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Credential, PrepError> {
        let password = saslprep(password)?;
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        Ok(Credential::from_salted(hash, salt, iterations, &salted))
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why SASLprep refused a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SASLprep (RFC 4013) refuses it: {0}")]
pub struct PrepError(String);

/// RFC 5802's Normalize(): the SASLprep (RFC 4013) form of `text`, as a stored string (code
/// points unassigned in Unicode 3.2 are refused). An empty result is refused too, as RFC 5802
/// asks of usernames and passwords alike. ASCII text without control characters comes back
/// borrowed, unchanged.
pub fn saslprep(text: &str) -> Result<Cow<'_, str>, PrepError> {
    match stringprep::saslprep(text) {
        // The crate's message quotes the character as it is: escape control characters.
        Err(e) => Err(PrepError(e.to_string().escape_debug().to_string())),
        Ok(prepared) if prepared.is_empty() => Err(PrepError("empty string".to_owned())),
        Ok(prepared) => Ok(prepared),
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
    /// The username cannot be prepared with SASLprep: no user has it.
    #[error("SCRAM username: {0}")]
    BadUsername(PrepError),
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
fn decoy(hash: Hash, username: &str, secret: &[u8]) -> Credential {
    let digest = Sha512::new()
        .chain_update(secret)
        .chain_update(hash.method().as_bytes())
        .chain_update(username.as_bytes())
        .finalize();
    Credential::from_salted(
        hash,
        digest[..12].to_vec(),
        super::passwd::PBKDF2_ITERATIONS,
        &digest[..hash.output_len()],
    )
}

impl Exchange {
    /// Reads client-first-message and answers server-first-message for mechanism `hash`.
    /// `lookup` gives the `hash` credential of a username (None: unknown); `secret` seeds decoys for unknown users;
    /// `server_nonce` is fresh random text (printable, no ',').
    pub fn start(
        hash: Hash,
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
        let username = saslprep(&username)
            .map_err(ScramError::BadUsername)?
            .into_owned();
        let (credential, known) = match lookup(&username).filter(|c| c.hash == hash) {
            Some(credential) => (credential, true),
            None => (decoy(hash, &username, secret), false),
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

    /// The username the client claims, in its SASLprep form.
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
        let hash = self.credential.hash;
        if proof.len() != hash.output_len() {
            return Err(ScramError::Malformed("proof is not as long as the hash"));
        }
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let stored_key = &self.credential.stored_key;
        let signature = hash.hmac(stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let candidate = hash.digest(&client_key);
        let matches: bool = candidate.ct_eq(stored_key).into();
        if !(matches && self.known) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hash.hmac(&self.credential.server_key, auth_message.as_bytes());
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
    fn client_final(hash: Hash, server_first: &str, bare: &str, password: &[u8]) -> String {
        let mut fields = server_first.split(',');
        let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64
            .decode(fields.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let i: u32 = fields.next().unwrap()[2..].parse().unwrap();
        let salted = hash.salted_password(password, &salt, i);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored = hash.digest(&client_key);
        let without = format!("c=biws,r={nonce}");
        let auth = format!("{bare},{server_first},{without}");
        let sig = hash.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        format!("{without},p={}", B64.encode(proof))
    }

    #[test]
    fn round_trip_and_refusals() {
        for hash in Hash::ALL {
            let bare = "n=al=2Cice,r=cnonce";
            let first = format!("n,,{bare}");
            let lookup = |u: &str| {
                (u == "al,ice").then(|| {
                    Credential::from_password(hash, "pw", b"saltsaltsalt".to_vec(), 101).unwrap()
                })
            };
            let (ex, server_first) =
                Exchange::start(hash, first.as_bytes(), lookup, b"k", "snonce").unwrap();
            assert_eq!(ex.username(), "al,ice");
            assert!(server_first.starts_with("r=cnoncesnonce,s="));
            let good = client_final(hash, &server_first, bare, b"pw");
            assert!(ex.finish(good.as_bytes()).unwrap().starts_with("v="));
            let bad = client_final(hash, &server_first, bare, b"wrong");
            assert_eq!(ex.finish(bad.as_bytes()), Err(ScramError::BadProof));

            // Unknown user: a decoy salt, and the proof fails.
            let (ex, server_first) =
                Exchange::start(hash, b"n,,n=bob,r=x", |_| None, b"k", "y").unwrap();
            let attempt = client_final(hash, &server_first, "n=bob,r=x", b"pw");
            assert_eq!(ex.finish(attempt.as_bytes()), Err(ScramError::BadProof));

            for bad_first in [
                &b"y,,n=a,r=b"[..],
                b"n,,r=b",
                b"n,,n=a",
                b"n,,n=a=zz,r=b",
                b"\xff",
            ] {
                assert!(Exchange::start(hash, bad_first, |_| None, b"k", "s").is_err());
            }
        }
        // A credential of the other hash is as good as none.
        let other = Credential::from_password(Hash::Sha512, "pw", b"s".to_vec(), 101).unwrap();
        let (ex, server_first) =
            Exchange::start(Hash::Sha256, b"n,,n=a,r=x", |_| Some(other), b"k", "y").unwrap();
        let attempt = client_final(Hash::Sha256, &server_first, "n=a,r=x", b"pw");
        assert_eq!(ex.finish(attempt.as_bytes()), Err(ScramError::BadProof));
    }

    /// RFC 4013's examples (section 3), and what RFC 5802 adds: an empty result is refused.
    #[test]
    fn saslprep_rfc_4013_examples() {
        for (input, prepared) in [
            ("I\u{00AD}X", "IX"),
            ("user", "user"),
            ("USER", "USER"),
            ("\u{00AA}", "a"),
            ("\u{2168}", "IX"),
            // Non-ASCII space to space; decomposed and composed forms alike.
            ("a\u{00A0}b", "a b"),
            ("pe\u{0301}ncil", "p\u{00E9}ncil"),
        ] {
            assert_eq!(saslprep(input).unwrap(), prepared, "{input:?}");
        }
        assert!(matches!(saslprep("pencil"), Ok(Cow::Borrowed("pencil"))));
        // Prohibited output (U+0007), bidi (RandALCat then a digit at the end), empty.
        for refused in ["\u{0007}", "\u{0627}\u{0031}", "\u{00AD}", ""] {
            let err = saslprep(refused).unwrap_err().to_string();
            assert!(err.starts_with("SASLprep (RFC 4013) refuses it"), "{err}");
        }
        assert!(saslprep("\u{0007}")
            .unwrap_err()
            .to_string()
            .contains("`\\u{7}`"));
        assert!(Credential::from_password(Hash::Sha256, "a\u{0007}", b"s".to_vec(), 1).is_err());
    }

    /// Keys and the exchange use the prepared forms: a password stored as "I\u{00AD}X" is
    /// proved with "IX" (what a client's SASLprep of "\u{2168}" sends), and the username of
    /// client-first is looked up prepared.
    #[test]
    fn non_ascii_passwords_and_usernames_are_prepared() {
        for hash in Hash::ALL {
            let stored =
                Credential::from_password(hash, "I\u{00AD}X", b"salt".to_vec(), 11).unwrap();
            let lookup = |u: &str| (u == "IX").then(|| stored.clone());
            let bare = "n=I\u{00AD}X,r=c";
            let first = format!("n,,{bare}");
            let (ex, server_first) =
                Exchange::start(hash, first.as_bytes(), lookup, b"k", "s").unwrap();
            assert_eq!(ex.username(), "IX");
            let prepared = saslprep("\u{2168}").unwrap();
            let good = client_final(hash, &server_first, bare, prepared.as_bytes());
            assert!(ex.finish(good.as_bytes()).is_ok());
            // Unprepared bytes are another password.
            let raw = client_final(hash, &server_first, bare, "I\u{00AD}X".as_bytes());
            assert_eq!(ex.finish(raw.as_bytes()), Err(ScramError::BadProof));
            let err = Exchange::start(hash, "n,,n=a\u{0007},r=c".as_bytes(), lookup, b"k", "s")
                .unwrap_err();
            assert!(matches!(err, ScramError::BadUsername(_)), "{err:?}");
        }
    }

    /// RFC 7677's example exchange (SCRAM-SHA-256, user "user", password "pencil").
    #[test]
    fn rfc_7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = Credential::from_password(Hash::Sha256, "pencil", salt, 4096).unwrap();
        let (ex, server_first) = Exchange::start(
            Hash::Sha256,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |u| (u == "user").then_some(credential),
            b"k",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            ex.finish(client_final.as_bytes()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
