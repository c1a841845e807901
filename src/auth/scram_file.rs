//! The SCRAM file (`[auth] scram_file`): SCRAM verifiers in PostgreSQL's format, one a line,
//! so that tools that make PostgreSQL's `rolpassword` make them too:
//!
//! ```text
//! user:SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>
//! user:SCRAM-SHA-512$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. A user may have one line per mechanism.
//! The file holds no password and nothing a password check could use: only SCRAM reads it.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::scram::{Credential, Hash};
use super::FileError;

/// A parsed SCRAM file.
#[derive(Debug, Default)]
pub struct ScramFile {
    users: HashMap<String, Vec<Credential>>,
}

impl ScramFile {
    /// Reads and parses `path`; the error names the file and line.
    pub fn load(path: &Path) -> Result<ScramFile, FileError> {
        let text = super::read_file(path)?;
        ScramFile::parse(&text).map_err(|(line, reason)| FileError::line(path, line, reason))
    }

    /// Parses the text of a SCRAM file; `Err((line, reason))` for the first bad line.
    pub fn parse(text: &str) -> Result<ScramFile, (usize, String)> {
        let mut users: HashMap<String, Vec<Credential>> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, verifier) = line
                .split_once(':')
                .ok_or_else(|| (i + 1, "expected user:verifier".to_owned()))?;
            super::passwd::valid_username(user).map_err(|e| (i + 1, e))?;
            let credential = parse_verifier(verifier).map_err(|e| (i + 1, e))?;
            let entries = users.entry(user.to_owned()).or_default();
            if entries.iter().any(|c| c.hash == credential.hash) {
                return Err((
                    i + 1,
                    format!("second {} line for user {user}", credential.hash.method()),
                ));
            }
            entries.push(credential);
        }
        Ok(ScramFile { users })
    }

    /// The `hash` credential of `user`, if the file has one.
    pub fn credential(&self, hash: Hash, user: &str) -> Option<Credential> {
        self.users
            .get(user)?
            .iter()
            .find(|c| c.hash == hash)
            .cloned()
    }

    /// The verifier line of a credential, without the user (what PostgreSQL stores).
    pub fn verifier(credential: &Credential) -> String {
        format!(
            "{}${}:{}${}:{}",
            credential.hash.method(),
            credential.iterations,
            B64.encode(&credential.salt),
            B64.encode(&credential.stored_key),
            B64.encode(&credential.server_key)
        )
    }

    /// `user`'s verifiers, one a line (to see on reload whether they changed).
    pub fn fingerprint(&self, user: &str) -> Option<String> {
        let lines: Vec<String> = self
            .users
            .get(user)?
            .iter()
            .map(ScramFile::verifier)
            .collect();
        Some(lines.join("\n"))
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
fn parse_verifier(verifier: &str) -> Result<Credential, String> {
    let shape = || "expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".to_owned();
    let (method, rest) = verifier.split_once('$').ok_or_else(shape)?;
    let hash = Hash::from_method(method)
        .ok_or_else(|| format!("unknown mechanism {method:?} (SCRAM-SHA-256 or SCRAM-SHA-512)"))?;
    let (params, keys) = rest.split_once('$').ok_or_else(shape)?;
    let (iterations, salt) = params.split_once(':').ok_or_else(shape)?;
    let (stored_key, server_key) = keys.split_once(':').ok_or_else(shape)?;
    let iterations: u32 = iterations
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("iteration count {iterations:?} is not a positive integer"))?;
    let decode = |what: &str, text: &str| {
        B64.decode(text)
            .map_err(|e| format!("{what} is not base64: {e}"))
    };
    let salt = decode("salt", salt)?;
    if salt.is_empty() {
        return Err("empty salt".to_owned());
    }
    let key = |what: &str, text: &str| {
        let key = decode(what, text)?;
        if key.len() == hash.output_len() {
            Ok(key)
        } else {
            Err(format!(
                "{what} is {} bytes, {} needs {}",
                key.len(),
                hash.method(),
                hash.output_len()
            ))
        }
    };
    Ok(Credential {
        hash,
        salt,
        iterations,
        stored_key: key("StoredKey", stored_key)?,
        server_key: key("ServerKey", server_key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's algorithm (scram_build_secret in src/common/scram-common.c), written out from
    /// RFC 5802 with the crates directly, not through [`Credential`]: SaltedPassword =
    /// PBKDF2-HMAC-SHA-256(password, salt, i); StoredKey = SHA-256(HMAC(SaltedPassword,
    /// "Client Key")); ServerKey = HMAC(SaltedPassword, "Server Key").
    fn postgres_line(user: &str, password: &[u8], salt: &[u8], iterations: u32) -> String {
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha256};
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let mac = |data: &[u8]| {
            let mut m = Hmac::<Sha256>::new_from_slice(&salted).unwrap();
            m.update(data);
            m.finalize().into_bytes()
        };
        let stored = Sha256::digest(mac(b"Client Key"));
        let server = mac(b"Server Key");
        format!(
            "{user}:SCRAM-SHA-256${iterations}:{}${}:{}",
            B64.encode(salt),
            B64.encode(stored),
            B64.encode(server)
        )
    }

    #[test]
    fn parses_postgres_verifiers_and_refuses_bad_lines() {
        let line = postgres_line("alice", b"pencil", b"0123456789abcdef", 4096);
        let sha512 =
            Credential::from_password(Hash::Sha512, "pencil", b"salt".to_vec(), 101).unwrap();
        let text = format!(
            "# comment\n\n{line}\nalice:{}\n",
            ScramFile::verifier(&sha512)
        );
        let file = ScramFile::parse(&text).unwrap();
        assert_eq!(file.len(), 1);
        let got = file.credential(Hash::Sha256, "alice").unwrap();
        assert_eq!(got.iterations, 4096);
        assert_eq!(got.salt, b"0123456789abcdef");
        // The server's own derivation gives the same keys as PostgreSQL's.
        let ours =
            Credential::from_password(Hash::Sha256, "pencil", b"0123456789abcdef".to_vec(), 4096)
                .unwrap();
        assert_eq!(got, ours);
        assert_eq!(format!("alice:{}", ScramFile::verifier(&ours)), line);
        assert_eq!(file.credential(Hash::Sha512, "alice"), Some(sha512));
        assert_eq!(file.credential(Hash::Sha256, "bob"), None);

        // Made by PostgreSQL 15.18 for password "pencil" (`initdb --auth=scram-sha-256`, then
        // `SELECT rolpassword FROM pg_authid`).
        let real = "carol:SCRAM-SHA-256$4096:OVgVV1biyO58QLY0mp7l+Q==$\
            UIyU3dZaovk6afunkQTaVX8oAQWpsj3/g8iJ0HljBbY=:B3EkmBQGp0hD6yaT8OzicdlWPXpp52wIY2rYL8k85KM=";
        let got = ScramFile::parse(real)
            .unwrap()
            .credential(Hash::Sha256, "carol");
        let salt = B64.decode("OVgVV1biyO58QLY0mp7l+Q==").unwrap();
        let ours = Credential::from_password(Hash::Sha256, "pencil", salt, 4096).unwrap();
        assert_eq!(got, Some(ours));

        let key32 = B64.encode([7u8; 32]);
        let key64 = B64.encode([7u8; 64]);
        let salt = B64.encode(b"salt");
        for (bad, why) in [
            ("alice", "user:verifier"),
            ("alice:SCRAM-SHA-1$1:c2FsdA==$a:b", "unknown mechanism"),
            ("alice:SCRAM-SHA-256$1:c2FsdA==", "expected"),
            (
                &format!("alice:SCRAM-SHA-256$0:{salt}${key32}:{key32}"),
                "iteration",
            ),
            (
                &format!("alice:SCRAM-SHA-256$x:{salt}${key32}:{key32}"),
                "iteration",
            ),
            (
                &format!("alice:SCRAM-SHA-256$1:!!${key32}:{key32}"),
                "salt is not base64",
            ),
            (
                &format!("alice:SCRAM-SHA-256$1:${key32}:{key32}"),
                "empty salt",
            ),
            (
                &format!("alice:SCRAM-SHA-256$1:{salt}${key64}:{key32}"),
                "StoredKey is 64 bytes",
            ),
            (
                &format!("alice:SCRAM-SHA-512$1:{salt}${key64}:{key32}"),
                "ServerKey is 32 bytes",
            ),
            (&format!("{line}\n{line}"), "second SCRAM-SHA-256 line"),
        ] {
            let err = ScramFile::parse(bad).unwrap_err();
            assert!(err.1.contains(why), "{bad}: {err:?}");
        }
        let err = ScramFile::parse(&format!("{line}\nbob:x\n")).unwrap_err();
        assert_eq!(err.0, 2);
    }
}
