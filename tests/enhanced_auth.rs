//! MQTT 5.0 enhanced authentication with SCRAM-SHA-512 against the password file's `$7$`
//! entries, and SCRAM-SHA-256 (and -512) against the SCRAM file in PostgreSQL's verifier format.
//! The client is written here over a raw socket with the project's codec (rumqttc cannot read
//! AUTH packets) and computes its proof with RustCrypto's `pbkdf2`, `hmac` and `sha2`,
//! independently of the server's code; it also checks the server's signature. It prepares its
//! password with SASLprep (the `stringprep` crate) as RFC 5802 asks, and sends usernames as given
//! (so that the server's preparation of them is tested).

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use common::{raw_ping, Raw};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use warren::auth::config::HashAlgorithm;
use warren::protocol::{
    reason, Auth, AuthProperties, ConnAck, ConnectReason, Packet, ProtocolVersion,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// The client's hash, from its method name: HMAC, H and Hi with the crates directly.
#[derive(Clone, Copy)]
enum Sha {
    S256,
    S512,
}

impl Sha {
    fn of(method: &str) -> Sha {
        if method == "SCRAM-SHA-256" {
            Sha::S256
        } else {
            Sha::S512
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Sha::S256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Sha::S512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Sha::S256 => Sha256::digest(data).to_vec(),
            Sha::S512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(Normalize(password), salt, i).
    fn salted(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let password = stringprep::saslprep(password).unwrap();
        let password = password.as_bytes();
        match self {
            Sha::S256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Sha::S512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// Runs the client side of SCRAM with `method` (SCRAM-SHA-256 or anything else as -512); returns the server's last packet
/// (CONNACK) and whether its server signature was right.
async fn scram_connect(
    addr: std::net::SocketAddr,
    method: &str,
    user: &str,
    password: &str,
) -> (Raw, ConnAck, bool) {
    let client_nonce = "fyko+d2lbbFgONRv9qkxdawL";
    let bare = format!("n={user},r={client_nonce}");
    let client_id = format!("scram-{}-{method}", user.escape_debug());
    let mut connect = common::connect_packet(V5, &client_id, true);
    if let Packet::Connect(c) = &mut connect {
        c.properties.authentication_method = Some(method.into());
        c.properties.authentication_data = Some(Bytes::from(format!("n,,{bare}")));
    }
    let (mut raw, first) = common::raw_connect_with(addr, V5, &connect).await;
    let server_first = match first {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, reason::CONTINUE_AUTHENTICATION);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(method));
            String::from_utf8(a.properties.authentication_data.unwrap().to_vec()).unwrap()
        }
        Some(Packet::ConnAck(ack)) => return (raw, ack, false),
        other => panic!("expected AUTH or CONNACK, got {other:?}"),
    };
    let (client_final, expected) = prove(method, &server_first, &bare, client_nonce, password);
    raw.send(&auth(reason::CONTINUE_AUTHENTICATION, method, client_final))
        .await;
    let ack = match raw.recv().await {
        Some(Packet::ConnAck(ack)) => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    let verified = ack.properties.authentication_data.as_deref() == Some(expected.as_bytes());
    (raw, ack, verified)
}

fn auth(code: u8, method: &str, data: String) -> Packet {
    Packet::Auth(Auth {
        reason: code,
        properties: AuthProperties {
            authentication_method: Some(method.into()),
            authentication_data: Some(Bytes::from(data)),
            ..AuthProperties::default()
        },
    })
}

/// The client's side of RFC 5802 with `method`'s hash: from server-first, the client-final message and
/// the server-final message the server must answer.
fn prove(
    method: &str,
    server_first: &str,
    bare: &str,
    client_nonce: &str,
    password: &str,
) -> (String, String) {
    let sha = Sha::of(method);
    let fields: Vec<&str> = server_first.split(',').collect();
    let nonce = fields[0].strip_prefix("r=").unwrap();
    assert!(nonce.starts_with(client_nonce) && nonce.len() > client_nonce.len());
    let salt = B64.decode(fields[1].strip_prefix("s=").unwrap()).unwrap();
    let iterations: u32 = fields[2].strip_prefix("i=").unwrap().parse().unwrap();
    let salted = sha.salted(password, &salt, iterations);
    let client_key = sha.hmac(&salted, b"Client Key");
    let stored_key = sha.digest(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = sha.hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let client_final = format!("{without_proof},p={}", B64.encode(proof));
    let server_key = sha.hmac(&salted, b"Server Key");
    let expected = format!(
        "v={}",
        B64.encode(sha.hmac(&server_key, auth_message.as_bytes()))
    );
    (client_final, expected)
}

/// Re-authenticates on a live connection (AUTH 0x19); returns the server's answer to the proof
/// and the server-final message it must carry.
async fn reauthenticate(
    raw: &mut Raw,
    method: &str,
    user: &str,
    password: &str,
) -> (Option<Packet>, String) {
    let client_nonce = "rOprNGfwEbeRWgbNEkqO";
    let bare = format!("n={user},r={client_nonce}");
    raw.send(&auth(reason::RE_AUTHENTICATE, method, format!("n,,{bare}")))
        .await;
    let server_first = match raw.recv().await {
        Some(Packet::Auth(a)) if a.reason == reason::CONTINUE_AUTHENTICATION => {
            String::from_utf8(a.properties.authentication_data.unwrap().to_vec()).unwrap()
        }
        other => return (other, String::new()),
    };
    let (client_final, expected) = prove(method, &server_first, &bare, client_nonce, password);
    raw.send(&auth(reason::CONTINUE_AUTHENTICATION, method, client_final))
        .await;
    (raw.recv().await, expected)
}

/// A broker refusing anonymous clients, without failure delays, with `auth` changed.
async fn start(
    auth: impl FnOnce(&mut warren::auth::config::AuthConfig),
) -> (warren::BrokerHandle, std::net::SocketAddr) {
    common::start_with(|c| {
        auth(&mut c.auth);
        c.auth.allow_anonymous = Some(false);
        c.auth.failure_delay_ms = 0;
        c.auth.failure_delay_max_ms = 0;
    })
    .await
}

/// Connects with `method` (checking the server's signature), then re-authenticates on the live
/// connection: AUTH 0x00 with the server's signature. The connection stays usable throughout.
async fn connect_and_reauthenticate(
    addr: std::net::SocketAddr,
    method: &str,
    user: &str,
    password: &str,
) -> Raw {
    let (mut raw, ack, verified) = scram_connect(addr, method, user, password).await;
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(method)
    );
    assert!(verified, "the server proved it knows the password: {ack:?}");
    raw_ping(&mut raw).await;
    let (answer, expected) = reauthenticate(&mut raw, method, user, password).await;
    match answer {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, reason::SUCCESS);
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(expected.as_bytes())
            );
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    raw_ping(&mut raw).await;
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_against_the_password_file() {
    let dir = std::env::temp_dir().join(format!("warren-scram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let alice = warren::auth::passwd::hash_password(b"pencil", HashAlgorithm::Pbkdf2).unwrap();
    let carol = warren::auth::passwd::hash_password(b"pencil", HashAlgorithm::Argon2id).unwrap();
    std::fs::write(&file, format!("alice:{alice}\ncarol:{carol}\n")).unwrap();
    let (_broker, addr) = start(|a| a.password_file = Some(file.clone())).await;

    let mut raw = connect_and_reauthenticate(addr, "SCRAM-SHA-512", "alice", "pencil").await;
    // A failed re-authentication ends the connection with 0x87.
    let (answer, _) = reauthenticate(&mut raw, "SCRAM-SHA-512", "alice", "wrong").await;
    match answer {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason::NOT_AUTHORIZED),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }

    // A wrong password, an unknown user, and an argon2id entry (no SaltedPassword): 0x87.
    for (user, password) in [
        ("alice", "wrong"),
        ("mallory", "pencil"),
        ("carol", "pencil"),
    ] {
        let (_, ack, _) = scram_connect(addr, "SCRAM-SHA-512", user, password).await;
        assert_eq!(ack.reason, ConnectReason::NotAuthorized, "{user}");
    }
    // A method the broker does not offer: 0x8C.
    let (_, ack, _) = scram_connect(addr, "SCRAM-SHA-1", "alice", "pencil").await;
    assert_eq!(ack.reason, ConnectReason::BadAuthenticationMethod);
    std::fs::remove_dir_all(&dir).ok();
}

/// A SCRAM-SHA-256 verifier line as PostgreSQL computes it (RFC 5802: StoredKey =
/// H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword, "Server Key")).
fn postgres_line(user: &str, password: &str, salt: &[u8], iterations: u32) -> String {
    let salted = Sha::S256.salted(password, salt, iterations);
    let stored = Sha::S256.digest(&Sha::S256.hmac(&salted, b"Client Key"));
    let server = Sha::S256.hmac(&salted, b"Server Key");
    format!(
        "{user}:SCRAM-SHA-256${iterations}:{}${}:{}\n",
        B64.encode(salt),
        B64.encode(stored),
        B64.encode(server)
    )
}

/// `rolpassword` of a role with password "pencil", made by PostgreSQL 15.18 itself (`initdb
/// --auth=scram-sha-256 --pwfile`, then `SELECT rolpassword FROM pg_authid` in single-user mode).
const POSTGRES_VERIFIER: &str = "SCRAM-SHA-256$4096:OVgVV1biyO58QLY0mp7l+Q==$\
    UIyU3dZaovk6afunkQTaVX8oAQWpsj3/g8iJ0HljBbY=:B3EkmBQGp0hD6yaT8OzicdlWPXpp52wIY2rYL8k85KM=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_against_the_scram_file() {
    let dir = std::env::temp_dir().join(format!("warren-scram256-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("scram");
    let passwd = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        warren::auth::passwd_cmd::run(&args).unwrap();
    };
    let path = file.to_str().unwrap();
    // `warren passwd` writes alice's two lines; bob's is PostgreSQL's computation.
    passwd(&["-c", "--scram-sha-256", "-b", path, "alice", "pencil"]);
    passwd(&["--scram-sha-512", "-b", path, "alice", "pencil512"]);
    // dave's password, decomposed and with a soft hyphen; he logs in with its composed form.
    for method in ["--scram-sha-256", "--scram-sha-512"] {
        passwd(&[method, "-b", path, "dave", "pe\u{301}ncil\u{AD}"]);
    }
    let refused = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        warren::auth::passwd_cmd::run(&args).unwrap_err()
    };
    let err = refused(&["--scram-sha-256", "-b", path, "eve", "bell\u{7}"]);
    assert!(err.contains("SASLprep (RFC 4013) refuses it"), "{err}");
    let err = refused(&["--scram-sha-256", "-b", path, "da\u{AD}ve", "x"]);
    assert!(err.contains("SCRAM clients send \"dave\""), "{err}");
    let bob = postgres_line("bob", "hunter2", b"0123456789abcdef", 4096);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}{bob}carol:{POSTGRES_VERIFIER}\n")).unwrap();
    let (broker, addr) = start(|a| {
        a.scram_file = Some(file.clone());
        a.disconnect_on_revoke = true;
    })
    .await;

    let mut alice = connect_and_reauthenticate(addr, "SCRAM-SHA-256", "alice", "pencil").await;
    let (mut bob_raw, ack, verified) = scram_connect(addr, "SCRAM-SHA-256", "bob", "hunter2").await;
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
    assert!(verified, "{ack:?}");

    for (method, user, password, ok) in [
        ("SCRAM-SHA-512", "alice", "pencil512", true),
        ("SCRAM-SHA-256", "carol", "pencil", true),
        ("SCRAM-SHA-256", "alice", "wrong", false),
        // The SHA-512 password is not the SHA-256 one; bob has no SHA-512 line.
        ("SCRAM-SHA-256", "alice", "pencil512", false),
        ("SCRAM-SHA-512", "bob", "hunter2", false),
        ("SCRAM-SHA-256", "mallory", "pencil", false),
        // SASLprep-equal passwords; the username is prepared by the server.
        ("SCRAM-SHA-256", "dave", "p\u{E9}ncil", true),
        ("SCRAM-SHA-512", "dave", "p\u{E9}ncil", true),
        ("SCRAM-SHA-256", "da\u{AD}ve", "pe\u{301}ncil", true),
        ("SCRAM-SHA-256", "dave", "pencil", false),
        // A username SASLprep refuses: failed authentication.
        ("SCRAM-SHA-256", "dave\u{7}", "p\u{E9}ncil", false),
    ] {
        let (_, ack, verified) = scram_connect(addr, method, user, password).await;
        let code = if ok {
            ConnectReason::Success
        } else {
            ConnectReason::NotAuthorized
        };
        assert_eq!(ack.reason, code, "{method} {user} {password}");
        assert_eq!(verified, ok, "{method} {user}");
    }

    // Reload rereads the file: bob's line removed, his connection is closed (0x87, as
    // disconnect_on_revoke asks) and he is refused; alice stays.
    passwd(&["-D", "--scram-sha-256", path, "bob"]);
    broker.reload().unwrap();
    match bob_raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason::NOT_AUTHORIZED),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
    raw_ping(&mut alice).await;
    let (_, ack, _) = scram_connect(addr, "SCRAM-SHA-256", "bob", "hunter2").await;
    assert_eq!(ack.reason, ConnectReason::NotAuthorized);

    // A malformed line stops the start, naming file, line and reason.
    std::fs::write(&file, format!("{bob}alice:SCRAM-SHA-256$4096:c2FsdA==\n")).unwrap();
    let mut config = warren::config::Config::for_tests();
    config.auth.scram_file = Some(file.clone());
    let err = match warren::Broker::start(config).await {
        Ok(_) => panic!("a malformed SCRAM file must stop the start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!("auth.scram_file: {}:2: expected", file.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
