//! `warren passwd`: adds, changes and deletes users of a password file, as `mosquitto_passwd`
//! does, in the same format (Mosquitto reads what it writes, with the default hash).
//!
//! ```text
//! warren passwd [-c] [-H pbkdf2|argon2id] FILE USER          prompt twice for the password
//! warren passwd [-c] [-H pbkdf2|argon2id] --stdin FILE USER  read it from the first line of stdin
//! warren passwd [-c] [-H pbkdf2|argon2id] -b FILE USER PASSWORD
//! warren passwd -D FILE USER                                 delete the user
//! ```
//! With `--scram-sha-256` (or `--scram-sha-512`) FILE is a SCRAM file (`[auth] scram_file`): the
//! user's line of that mechanism is set (PostgreSQL's verifier format, 4096 iterations, a 16-byte
//! random salt, as PostgreSQL makes them) or deleted, other lines kept.
//! SCRAM keys are derived from the password's SASLprep (RFC 4013) form, as RFC 5802 asks: a
//! password SASLprep refuses, or a username that is not its own SASLprep form (SCRAM clients
//! send the prepared name), is refused. For a `$7$` line, which Mosquitto checks against the
//! password as typed, a password that SASLprep changes is written as it is, with a note that
//! SCRAM-SHA-512 clients will not match it.
//! `-c` creates the file (replacing one that exists). The file is written whole to a temporary
//! file beside it and renamed over it; a new file gets mode 0600.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::config::HashAlgorithm;
use super::passwd::{edit_kind, hash_password, valid_username, PasswordFile};
use super::scram::{self, Credential, Hash};
use super::scram_file::ScramFile;

/// Iterations of a new SCRAM verifier: PostgreSQL's default (`scram_iterations`).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Usage text of `warren passwd`.
pub const USAGE: &str = "\
usage: warren passwd [-c] [-H pbkdf2|argon2id] FILE USER            prompt for the password
       warren passwd [-c] [-H pbkdf2|argon2id] --stdin FILE USER    password from stdin
       warren passwd [-c] [-H pbkdf2|argon2id] -b FILE USER PASSWORD
       warren passwd -D FILE USER                                   delete USER
       warren passwd --scram-sha-256|--scram-sha-512 [-c] [-D] [--stdin|-b] FILE USER [PASSWORD]
  -c   create FILE (an existing one is replaced)
  --scram-sha-256, --scram-sha-512
       FILE is a SCRAM file ([auth] scram_file): set (or with -D delete) USER's verifier of that
       mechanism, in PostgreSQL's format
  -H   hash of new passwords: pbkdf2 (default; Mosquitto's $7$, readable by mosquitto 2)
       or argon2id (Warren only)";

#[derive(Debug, Default)]
struct Args {
    create: bool,
    delete: bool,
    batch: bool,
    stdin: bool,
    hash: HashAlgorithm,
    hash_given: bool,
    scram: Option<Hash>,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" => out.create = true,
            "-D" => out.delete = true,
            "-b" => out.batch = true,
            "--stdin" => out.stdin = true,
            "--scram-sha-256" => out.scram = Some(Hash::Sha256),
            "--scram-sha-512" => out.scram = Some(Hash::Sha512),
            "-H" => {
                out.hash_given = true;
                out.hash = match it.next().map(String::as_str) {
                    Some("pbkdf2" | "sha512-pbkdf2") => HashAlgorithm::Pbkdf2,
                    Some("argon2id") => HashAlgorithm::Argon2id,
                    other => return Err(format!("-H: unknown hash {other:?}")),
                }
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            s => out.positional.push(s.to_owned()),
        }
    }
    let wanted = if out.batch { 3 } else { 2 };
    if out.positional.len() != wanted {
        return Err("wrong number of arguments".to_owned());
    }
    if out.delete && (out.create || out.batch || out.stdin) {
        return Err("-D does not go with -c, -b or --stdin".to_owned());
    }
    if out.scram.is_some() && out.hash_given {
        return Err("-H does not go with --scram-sha-256 or --scram-sha-512".to_owned());
    }
    if out.batch && out.stdin {
        return Err("-b and --stdin exclude each other".to_owned());
    }
    Ok(out)
}

/// Runs `warren passwd` with `args` (after the word `passwd`); `Ok` with what to print.
pub fn run(args: &[String]) -> Result<String, String> {
    let args = parse(args).map_err(|e| format!("{e}\n\n{USAGE}"))?;
    let path = PathBuf::from(&args.positional[0]);
    let user = &args.positional[1];
    valid_username(user)?;
    if args.scram.is_some() {
        scram_username(user)?;
    }
    let existing = if args.create {
        String::new()
    } else {
        match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                return Err(format!(
                    "{}: cannot read: {e} (use -c to create it)",
                    path.display()
                ))
            }
        }
    };
    if !args.create {
        // Refuse to rewrite a file Warren could not read back.
        let checked = match args.scram {
            Some(_) => ScramFile::parse(&existing).map(drop),
            None => PasswordFile::parse(&existing).map(drop),
        };
        checked.map_err(|(line, reason)| format!("{}:{line}: {reason}", path.display()))?;
    }
    let mut note = String::new();
    let hash = if args.delete {
        None
    } else {
        let password = if args.batch {
            args.positional[2].clone()
        } else if args.stdin {
            read_stdin()?
        } else {
            prompt()?
        };
        if args.scram.is_none() && args.hash == HashAlgorithm::Pbkdf2 {
            note = sasl_note(&password);
        }
        Some(match args.scram {
            Some(hash) => scram_verifier(hash, &password)?,
            None => hash_password(password.as_bytes(), args.hash)?,
        })
    };
    let kind = args
        .scram
        .map_or(String::new(), |h| format!("{}$", h.method()));
    let text = edit_kind(&existing, user, &kind, hash.as_deref())?;
    write_atomically(&path, &text)?;
    Ok(match hash {
        None => format!("deleted {user} from {}", path.display()),
        Some(_) => format!("set the password of {user} in {}{note}", path.display()),
    })
}

/// Refuses a SCRAM-file username that SCRAM clients cannot send as it is (RFC 5802 has them
/// send, and the server look up, its SASLprep form).
fn scram_username(user: &str) -> Result<(), String> {
    match scram::saslprep(user) {
        Err(e) => Err(format!("username {user:?} cannot be used with SCRAM: {e}")),
        Ok(prepared) if prepared != user => Err(format!(
            "username {user:?} is not its own SASLprep (RFC 4013) form: SCRAM clients send \
             {prepared:?}, use that"
        )),
        Ok(_) => Ok(()),
    }
}

/// The note for a `$7$` line whose password SASLprep changes or refuses: SCRAM-SHA-512 over it
/// will not match a client that prepares the password (as RFC 5802 asks).
fn sasl_note(password: &str) -> String {
    match scram::saslprep(password) {
        Ok(prepared) if prepared == password => String::new(),
        Ok(_) => "\nnote: SASLprep (RFC 4013) changes this password: a password in CONNECT \
                  works, SCRAM-SHA-512 against this line will not (use a SCRAM file line)"
            .to_owned(),
        Err(e) => format!(
            "\nnote: a password in CONNECT works, SCRAM-SHA-512 against this line will not: {e}"
        ),
    }
}

/// A new SCRAM verifier of `password` (of its SASLprep form), as PostgreSQL writes it.
fn scram_verifier(hash: Hash, password: &str) -> Result<String, String> {
    let mut salt = vec![0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
    let credential = Credential::from_password(hash, password, salt, SCRAM_ITERATIONS)
        .map_err(|e| format!("the password cannot be used with SCRAM: {e}"))?;
    Ok(ScramFile::verifier(&credential))
}

fn read_stdin() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err("empty password on stdin".to_owned());
    }
    Ok(password)
}

fn prompt() -> Result<String, String> {
    let first = rpassword::prompt_password("Password: ").map_err(|e| format!("{e}"))?;
    let second = rpassword::prompt_password("Reenter password: ").map_err(|e| format!("{e}"))?;
    if first != second {
        return Err("passwords do not match".to_owned());
    }
    if first.is_empty() {
        return Err("empty password".to_owned());
    }
    Ok(first)
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`, keeping the
/// old file's permissions (0600 for a new file).
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.warren-tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot write: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslprep_checks_of_scram_names_and_mosquitto_passwords() {
        assert_eq!(scram_username("alice"), Ok(()));
        let err = scram_username("I\u{AD}X").unwrap_err();
        assert!(err.contains("SCRAM clients send \"IX\""), "{err}");
        assert!(scram_username("a\u{7}").is_err());
        assert_eq!(sasl_note("pencil"), "");
        assert_eq!(sasl_note("p\u{E9}ncil"), "");
        assert!(sasl_note("\u{2168}").contains("changes this password"));
        assert!(sasl_note("bell\u{7}").contains("refuses it"));
        let err = scram_verifier(Hash::Sha256, "bell\u{7}").unwrap_err();
        assert!(err.contains("cannot be used with SCRAM"), "{err}");
    }
}
