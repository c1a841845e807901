//! Mosquitto's password file, as it is: one `username:hash` a line, `#` comments and blank
//! lines ignored. Hashes read: `$7$` (PBKDF2-HMAC-SHA512, `mosquitto_passwd` 2.x), `$6$`
//! (salted SHA-512, 1.x) and `$argon2id$` (PHC string). New hashes are `$7$` or argon2id.
//! Comparisons are constant-time; an unknown user costs a verification too, so timing does not
//! tell which users exist.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::config::HashAlgorithm;
use super::FileError;

/// Iterations of new `$7$` hashes: what `mosquitto_passwd` 2.0 writes.
pub const PBKDF2_ITERATIONS: u32 = 101;
/// Salt bytes of new hashes (Mosquitto's length).
const SALT_LEN: usize = 12;
/// Iteration counts above this are refused when loading (a file cannot make a CONNECT cost
/// seconds of CPU).
const MAX_ITERATIONS: u32 = 1_000_000;

/// One stored password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    /// `$6$salt$hash`: SHA-512(password ‖ salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// `$7$iterations$salt$hash`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// `$argon2id$v=19$m=..,t=..,p=..$salt$hash`.
    Argon2(String),
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, String> {
        let b64 = |s: &str, what: &str| {
            B64.decode(s)
                .map_err(|_| format!("the {what} is not valid base64"))
        };
        if text.starts_with("$argon2id$") {
            argon2::PasswordHash::new(text).map_err(|e| format!("bad argon2id hash: {e}"))?;
            return Ok(Hash::Argon2(text.to_owned()));
        }
        let parts: Vec<&str> = text.split('$').collect();
        match parts.as_slice() {
            ["", "6", salt, hash] => Ok(Hash::Sha512 {
                salt: b64(salt, "salt")?,
                hash: b64(hash, "hash")?,
            }),
            ["", "7", iterations, salt, hash] => {
                let iterations: u32 = iterations
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_ITERATIONS).contains(n))
                    .ok_or_else(|| {
                        format!("bad iteration count (1 to {MAX_ITERATIONS} accepted)")
                    })?;
                let hash = b64(hash, "hash")?;
                if hash.len() != 64 {
                    return Err("a $7$ hash must be 64 bytes".to_owned());
                }
                Ok(Hash::Pbkdf2 {
                    iterations,
                    salt: b64(salt, "salt")?,
                    hash,
                })
            }
            _ => Err(
                "not a password hash Warren reads ($7$ or $6$ as mosquitto_passwd writes, or \
                 $argon2id$); plain-text passwords are not accepted"
                    .to_owned(),
            ),
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                digest.finalize().as_slice().ct_eq(hash).into()
            }
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                out.ct_eq(hash.as_slice()).into()
            }
            Hash::Argon2(text) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(text).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok()
                })
            }
        }
    }
}

/// A stored user: the hash and its text (compared on reload to find changed passwords).
#[derive(Debug, Clone)]
struct Entry {
    hash: Hash,
    text: String,
}

/// A loaded password file.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, Entry>,
}

/// What a password file says of a username and password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The user is in the file and the password matches.
    Valid,
    /// The user is in the file and the password does not match.
    WrongPassword,
    /// The user is not in the file.
    UnknownUser,
}

impl PasswordFile {
    /// Reads and checks the file at `path`: every line must be `user:hash` with a hash Warren
    /// reads. The error names the file, the line and the reason.
    pub fn load(path: &Path) -> Result<PasswordFile, FileError> {
        let text = super::read_file(path)?;
        Self::parse(&text).map_err(|(line, reason)| FileError::line(path, line, reason))
    }

    /// Parses file contents; `Err((line number, reason))`.
    pub fn parse(text: &str) -> Result<PasswordFile, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((i + 1, "expected username:hash".to_owned()));
            };
            if user.is_empty() {
                return Err((i + 1, "empty username".to_owned()));
            }
            let hash = hash.trim_end();
            let parsed = Hash::parse(hash).map_err(|reason| (i + 1, reason))?;
            let entry = Entry {
                hash: parsed,
                text: hash.to_owned(),
            };
            if users.insert(user.to_owned(), entry).is_some() {
                return Err((i + 1, format!("user {user:?} appears twice")));
            }
        }
        Ok(PasswordFile { users })
    }

    /// Checks `password` for `user`, in constant time per hash.
    pub fn check(&self, user: &str, password: &[u8]) -> Check {
        match self.users.get(user) {
            Some(entry) if entry.hash.verify(password) => Check::Valid,
            Some(_) => Check::WrongPassword,
            None => {
                // As long as a real check, so timing does not reveal unknown users.
                let _ = dummy().verify(password);
                Check::UnknownUser
            }
        }
    }

    /// The SCRAM-SHA-512 credential of `user`: its `$7$` entry, whose 64-byte PBKDF2-HMAC-SHA512
    /// output is SCRAM's SaltedPassword. `None` for an unknown user and for `$6$` and argon2id
    /// entries (they hold no SaltedPassword).
    pub fn scram_credential(&self, user: &str) -> Option<super::scram::Credential> {
        match &self.users.get(user)?.hash {
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } if hash.len() == 64 => Some(super::scram::Credential::from_salted(
                super::scram::Hash::Sha512,
                salt.clone(),
                *iterations,
                hash,
            )),
            _ => None,
        }
    }

    /// The stored hash text of `user` (to see on reload whether it changed).
    pub fn fingerprint(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(|e| e.text.as_str())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file has no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A `$7$` hash of nothing in particular, checked for unknown users.
fn dummy() -> &'static Hash {
    static DUMMY: std::sync::OnceLock<Hash> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| Hash::Pbkdf2 {
        iterations: PBKDF2_ITERATIONS,
        salt: vec![0; SALT_LEN],
        hash: vec![0; 64],
    })
}

/// A new hash of `password` in the file's text form.
pub fn hash_password(password: &[u8], algorithm: HashAlgorithm) -> Result<String, String> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
    match algorithm {
        HashAlgorithm::Pbkdf2 => {
            let mut out = [0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, PBKDF2_ITERATIONS, &mut out);
            let mut text = String::new();
            let _ = write!(
                text,
                "$7${PBKDF2_ITERATIONS}${}${}",
                B64.encode(salt),
                B64.encode(out)
            );
            Ok(text)
        }
        HashAlgorithm::Argon2id => {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
            argon2::Argon2::default()
                .hash_password(password, &salt)
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        }
    }
}

/// Edits a password file's text: sets `user`'s hash (`Some`) or deletes the user (`None`),
/// keeping every other line as it was. `Err` when deleting a user that is not there.
pub fn edit(text: &str, user: &str, hash: Option<&str>) -> Result<String, String> {
    edit_kind(text, user, "", hash)
}

/// [`edit`] of the one line of `user` whose value starts with `kind` (a user of the SCRAM file
/// has a line per mechanism: `kind` is `SCRAM-SHA-256$`).
pub fn edit_kind(text: &str, user: &str, kind: &str, hash: Option<&str>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 128);
    let mut found = false;
    for line in text.lines() {
        let is_user = line.split_once(':').is_some_and(|(u, value)| {
            u == user && value.starts_with(kind) && !line.starts_with('#')
        });
        if is_user {
            found = true;
            if let Some(hash) = hash {
                let _ = writeln!(out, "{user}:{hash}");
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    match (found, hash) {
        (false, Some(hash)) => {
            let _ = writeln!(out, "{user}:{hash}");
        }
        (false, None) => {
            return Err(format!(
                "user {user:?} is not in the file{}",
                if kind.is_empty() {
                    String::new()
                } else {
                    format!(" with {kind}")
                }
            ))
        }
        _ => {}
    }
    Ok(out)
}

/// Checks a username for the file: not empty, no ':' and no control characters.
pub fn valid_username(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the username is empty".to_owned());
    }
    if user.contains(':') || user.chars().any(char::is_control) {
        return Err("a username may not contain ':' or control characters".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hashes_verify_and_parse() {
        for algorithm in [HashAlgorithm::Pbkdf2, HashAlgorithm::Argon2id] {
            let text = hash_password(b"s3cret", algorithm).unwrap();
            let file = PasswordFile::parse(&format!("# users\n\nalice:{text}\n")).unwrap();
            assert_eq!(file.check("alice", b"s3cret"), Check::Valid);
            assert_eq!(file.check("alice", b"s3cre"), Check::WrongPassword);
            assert_eq!(file.check("bob", b"s3cret"), Check::UnknownUser);
        }
        assert!(hash_password(b"x", HashAlgorithm::Pbkdf2)
            .unwrap()
            .starts_with("$7$101$"));
    }

    #[test]
    fn sha512_of_mosquitto_1() {
        // SHA-512("pw" ‖ salt), as mosquitto_passwd 1.x wrote it.
        let salt = b"0123456789ab";
        let mut d = Sha512::new();
        d.update(b"pw");
        d.update(salt);
        let line = format!("u:$6${}${}", B64.encode(salt), B64.encode(d.finalize()));
        let file = PasswordFile::parse(&line).unwrap();
        assert_eq!(file.check("u", b"pw"), Check::Valid);
        assert_eq!(file.check("u", b"pW"), Check::WrongPassword);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = PasswordFile::parse("a:$7$101$AAAA$AAAA\n").unwrap_err();
        assert_eq!(err.0, 1);
        let err = PasswordFile::parse("# c\nplain:secret\n").unwrap_err();
        assert_eq!(err.0, 2);
        assert!(err.1.contains("plain-text"), "{}", err.1);
        assert_eq!(PasswordFile::parse("\n\nnocolon\n").unwrap_err().0, 3);
        assert!(PasswordFile::parse("a:$7$0$AAAA$AAAA").is_err());
    }

    #[test]
    fn edit_keeps_other_lines() {
        let text = "# head\na:1\nb:2\n";
        assert_eq!(edit(text, "a", Some("9")).unwrap(), "# head\na:9\nb:2\n");
        assert_eq!(
            edit(text, "c", Some("3")).unwrap(),
            "# head\na:1\nb:2\nc:3\n"
        );
        assert_eq!(edit(text, "b", None).unwrap(), "# head\na:1\n");
        assert!(edit(text, "z", None).is_err());
        assert!(valid_username("a:b").is_err());
    }
}
