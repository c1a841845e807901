//! MQTT 5.0 enhanced authentication with SCRAM-SHA-512 against the password file's `$7$`
//! entries. The client is written here over a raw socket with the project's codec (rumqttc
//! cannot read AUTH packets) and computes its proof with RustCrypto's `pbkdf2`, `hmac` and
//! `sha2`, independently of the server's code; it also checks the server's signature.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use common::{raw_ping, Raw};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha512};
use warren::auth::config::HashAlgorithm;
use warren::protocol::{
    reason, Auth, AuthProperties, ConnAck, ConnectReason, Packet, ProtocolVersion,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Runs the client side of SCRAM-SHA-512 with `method`; returns the server's last packet
/// (CONNACK) and whether its server signature was right.
async fn scram_connect(
    addr: std::net::SocketAddr,
    method: &str,
    user: &str,
    password: &str,
) -> (Raw, ConnAck, bool) {
    let client_nonce = "fyko+d2lbbFgONRv9qkxdawL";
    let bare = format!("n={user},r={client_nonce}");
    let mut connect = common::connect_packet(V5, "scram-client", true);
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
    let (client_final, expected) = prove(&server_first, &bare, client_nonce, password);
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

/// The client's side of RFC 5802 with SHA-512: from server-first, the client-final message and
/// the server-final message the server must answer.
fn prove(server_first: &str, bare: &str, client_nonce: &str, password: &str) -> (String, String) {
    let fields: Vec<&str> = server_first.split(',').collect();
    let nonce = fields[0].strip_prefix("r=").unwrap();
    assert!(nonce.starts_with(client_nonce) && nonce.len() > client_nonce.len());
    let salt = B64.decode(fields[1].strip_prefix("s=").unwrap()).unwrap();
    let iterations: u32 = fields[2].strip_prefix("i=").unwrap().parse().unwrap();
    let mut salted = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha512::digest(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let client_final = format!("{without_proof},p={}", B64.encode(proof));
    let server_key = hmac(&salted, b"Server Key");
    let expected = format!(
        "v={}",
        B64.encode(hmac(&server_key, auth_message.as_bytes()))
    );
    (client_final, expected)
}

const METHOD: &str = "SCRAM-SHA-512";

/// Re-authenticates on a live connection (AUTH 0x19); returns the server's answer to the proof
/// and the server-final message it must carry.
async fn reauthenticate(raw: &mut Raw, user: &str, password: &str) -> (Option<Packet>, String) {
    let client_nonce = "rOprNGfwEbeRWgbNEkqO";
    let bare = format!("n={user},r={client_nonce}");
    raw.send(&auth(reason::RE_AUTHENTICATE, METHOD, format!("n,,{bare}")))
        .await;
    let server_first = match raw.recv().await {
        Some(Packet::Auth(a)) if a.reason == reason::CONTINUE_AUTHENTICATION => {
            String::from_utf8(a.properties.authentication_data.unwrap().to_vec()).unwrap()
        }
        other => return (other, String::new()),
    };
    let (client_final, expected) = prove(&server_first, &bare, client_nonce, password);
    raw.send(&auth(reason::CONTINUE_AUTHENTICATION, METHOD, client_final))
        .await;
    (raw.recv().await, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_against_the_password_file() {
    let dir = std::env::temp_dir().join(format!("warren-scram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let alice = warren::auth::passwd::hash_password(b"pencil", HashAlgorithm::Pbkdf2).unwrap();
    let carol = warren::auth::passwd::hash_password(b"pencil", HashAlgorithm::Argon2id).unwrap();
    std::fs::write(&file, format!("alice:{alice}\ncarol:{carol}\n")).unwrap();
    let (_broker, addr) = common::start_with(|c| {
        c.auth.password_file = Some(file.clone());
        c.auth.allow_anonymous = Some(false);
        c.auth.failure_delay_ms = 0;
        c.auth.failure_delay_max_ms = 0;
    })
    .await;

    let (mut raw, ack, verified) = scram_connect(addr, "SCRAM-SHA-512", "alice", "pencil").await;
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some("SCRAM-SHA-512")
    );
    assert!(verified, "the server proved it knows the password: {ack:?}");
    raw_ping(&mut raw).await;

    // Re-authentication on the live connection: AUTH 0x00 with the server's signature.
    let (answer, expected) = reauthenticate(&mut raw, "alice", "pencil").await;
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
    // A failed re-authentication ends the connection with 0x87.
    let (answer, _) = reauthenticate(&mut raw, "alice", "wrong").await;
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
