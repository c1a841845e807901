//! Authenticators beyond the password file, with real parts: client certificates over mutual
//! TLS (identity as username), an HTTP authenticator served by a real HTTP server in the test
//! (allow with rules, superuser, deny, timeout, cache; over https, verified against its CA), JWT passwords (HS256: valid, expired,
//! wrong audience, wrong signature; ES256 and RS256 from a JWKS file, rotated by a reload), a TLS
//! certificate swapped by a reload, and the in-process bridge under the ACL.

mod clients;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use clients::{TestPki, V4};
use common::*;
use parking_lot::Mutex;
use serde_json::{json, Value};
use warren::config::{ClientAuth, Config, HttpAuthConfig, JwtConfig, ListenerConfig, ListenerKind};
use warren::protocol::{ConnectReason, Packet, ProtocolVersion, QoS};
use warren::BrokerHandle;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-authx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// CONNECT with `user`/`pass` and the CONNACK's reason.
async fn connack(
    addr: SocketAddr,
    id: &str,
    user: Option<&str>,
    pass: &str,
) -> (ConnectReason, Raw) {
    let mut packet = connect_packet(V5, id, true);
    if let Packet::Connect(c) = &mut packet {
        c.username = user.map(Into::into);
        c.password = Some(Bytes::copy_from_slice(pass.as_bytes()));
    }
    match raw_connect_with(addr, V5, &packet).await {
        (raw, Some(Packet::ConnAck(ack))) => (ack.reason, raw),
        (_, other) => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn puback(raw: &mut Raw, topic: &str, pkid: u16) -> u8 {
    raw.send(&clients::publish(
        topic,
        b"x",
        QoS::AtLeastOnce,
        pkid,
        false,
    ))
    .await;
    match raw.recv().await {
        Some(Packet::PubAck(ack)) => ack.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn failures(broker: &BrokerHandle, reason: &str) -> u64 {
    let prefix = format!("warren_auth_failures_total{{reason=\"{reason}\"}} ");
    broker
        .render_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_identity_is_the_username() {
    let pki = TestPki::generate("identity");
    let dir = temp_dir("identity");
    // rcgen's default subject: CN "rcgen self signed cert".
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        "user rcgen self signed cert\ntopic readwrite devices/#\n",
    )
    .unwrap();
    let tls = pki.server_tls(ClientAuth::Optional);
    let (broker, _) = start_with(|c| {
        c.auth.acl_file = Some(acl.clone());
        c.listeners.insert(
            "mtls".to_owned(),
            ListenerConfig {
                kind: ListenerKind::Tls,
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: Some(tls),
                use_identity_as_username: true,
                ..ListenerConfig::default()
            },
        );
    })
    .await;
    let addr = broker.local_addr("mtls").unwrap();
    let mut client = V4::start(pki.v4_options(addr, "dev", true)).await.unwrap();
    let ack = client
        .subscribe("devices/#", rumqttc::QoS::AtLeastOnce)
        .await;
    assert_eq!(
        ack.return_codes,
        vec![rumqttc::SubscribeReasonCode::Success(
            rumqttc::QoS::AtLeastOnce
        )]
    );
    let ack = client.subscribe("other/#", rumqttc::QoS::AtLeastOnce).await;
    assert_eq!(
        ack.return_codes,
        vec![rumqttc::SubscribeReasonCode::Failure]
    );
    // No certificate on that listener: refused (return code 5).
    let refused = V4::start(pki.v4_options(addr, "nocert", false)).await;
    assert!(refused.is_err());
    assert_eq!(failures(&broker, "no_certificate_identity"), 1);
    broker.shutdown().await;
}

/// A real HTTP authenticator: answers by username, records every request body.
struct AuthServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Value>>>,
}

async fn auth_server() -> AuthServer {
    auth_server_with(None).await
}

/// The authenticator, over TLS when `tls` is given.
async fn auth_server_with(tls: Option<tokio_rustls::TlsAcceptor>) -> AuthServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve_auth(stream, seen).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_auth(stream, seen).await;
                        }
                    }
                }
            });
        }
    });
    AuthServer { addr, requests }
}

/// Answers by username on one connection: `good` (rules), `admin` (superuser), `slow` (after
/// 5 s), `broken` (500), anyone else 403.
async fn serve_auth<S>(stream: S, seen: Arc<Mutex<Vec<Value>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await?.to_bytes();
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock().push(value.clone());
            let (status, answer) = match value["username"].as_str() {
                Some("good") => (
                    200,
                    json!({"acl": [
                    {"permission": "allow", "action": "all", "topic": "good/%c/#"},
                    {"permission": "deny", "topic": "good/%c/secret"}]})
                    .to_string(),
                ),
                Some("admin") => (200, json!({"is_superuser": true}).to_string()),
                Some("slow") => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    (200, String::new())
                }
                Some("broken") => (500, String::new()),
                _ => (403, String::new()),
            };
            Ok::<_, hyper::Error>(
                hyper::Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from(answer)))
                    .unwrap(),
            )
        }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_authenticator_allows_denies_times_out_and_is_cached() {
    let server = auth_server().await;
    let (broker, addr) = start_with(|c| {
        c.auth.allow_anonymous = Some(false);
        c.auth.failure_delay_ms = 0;
        c.auth.failure_delay_max_ms = 0;
        c.auth.http = Some(HttpAuthConfig {
            url: format!("http://{}/auth", server.addr),
            ca_file: None,
            timeout_ms: 300,
            cache_ms: 60_000,
            cache_size: 100,
            headers: [("x-api-key".to_owned(), "k".to_owned())].into(),
        });
    })
    .await;
    let (ok, mut good) = connack(addr, "c1", Some("good"), "pw").await;
    assert_eq!(ok, ConnectReason::Success);
    let body = server.requests.lock()[0].clone();
    assert_eq!(body["clientid"], "c1");
    assert_eq!(body["username"], "good");
    assert_eq!(body["password"], "pw");
    assert_eq!(body["peerhost"], "127.0.0.1");
    assert_eq!(body["listener"], "tcp");
    assert_eq!(body["protocol"], "5.0");
    // The answer's rules, with %c.
    assert_eq!(puback(&mut good, "good/c1/x", 1).await, 0x10);
    assert_eq!(puback(&mut good, "good/c1/secret", 2).await, 0x87);
    assert_eq!(puback(&mut good, "good/c2/x", 3).await, 0x87);
    // The same credentials again: answered from the cache.
    let (ok, _) = connack(addr, "c1", Some("good"), "pw").await;
    assert_eq!(ok, ConnectReason::Success);
    assert_eq!(server.requests.lock().len(), 1);
    let (ok, mut admin) = connack(addr, "a", Some("admin"), "pw").await;
    assert_eq!(ok, ConnectReason::Success);
    assert_eq!(puback(&mut admin, "anything/at/all", 1).await, 0x10);
    for (user, label) in [
        ("bad", "http_denied"),
        ("slow", "http_timeout"),
        ("broken", "http_error"),
    ] {
        let (reason, _) = connack(addr, "x", Some(user), "pw").await;
        assert_eq!(reason, ConnectReason::BadUserNameOrPassword, "{user}");
        assert_eq!(failures(&broker, label), 1, "{label}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_authenticator_is_verified_against_its_ca() {
    let pki = TestPki::generate("https-auth");
    let server_tls = warren::tls::server_config(&pki.server_tls(ClientAuth::None)).unwrap();
    let server = auth_server_with(Some(tokio_rustls::TlsAcceptor::from(server_tls))).await;
    let config = |ca: Option<PathBuf>| HttpAuthConfig {
        url: format!("https://localhost:{}/auth", server.addr.port()),
        ca_file: ca,
        timeout_ms: 2000,
        cache_ms: 0,
        cache_size: 100,
        headers: Default::default(),
    };
    let ca = pki.ca_path();
    let (broker, addr) = start_with(|c| {
        c.auth.allow_anonymous = Some(false);
        c.auth.failure_delay_ms = 0;
        c.auth.failure_delay_max_ms = 0;
        c.auth.http = Some(config(Some(ca.clone())));
    })
    .await;
    let (ok, _) = connack(addr, "c1", Some("good"), "pw").await;
    assert_eq!(ok, ConnectReason::Success);
    let (refused, _) = connack(addr, "c2", Some("bad"), "pw").await;
    assert_eq!(refused, ConnectReason::BadUserNameOrPassword);
    assert_eq!(server.requests.lock().len(), 2);
    broker.shutdown().await;

    // A CA the server does not chain to: the handshake fails, the client is refused, and the
    // password never reaches the server.
    let other = TestPki::generate("https-auth-other");
    let other_ca = other.ca_path();
    let (broker, addr) = start_with(|c| {
        c.auth.allow_anonymous = Some(false);
        c.auth.failure_delay_ms = 0;
        c.auth.failure_delay_max_ms = 0;
        c.auth.http = Some(config(Some(other_ca.clone())));
    })
    .await;
    let (refused, _) = connack(addr, "c3", Some("good"), "pw").await;
    assert_eq!(refused, ConnectReason::BadUserNameOrPassword);
    assert_eq!(failures(&broker, "http_tls_error"), 1);
    assert_eq!(server.requests.lock().len(), 2);
    broker.shutdown().await;

    // A CA file that is not there is refused at start, naming the key.
    let mut bad = Config::default();
    bad.auth.http = Some(config(Some(PathBuf::from("/nonexistent/ca.pem"))));
    let err = warren::auth::Auth::load(&bad).unwrap_err();
    assert_eq!(err.key, "http.ca_file");
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A P-256 key: its JWKS entry under `kid`, and a signer of ES256 tokens.
fn es256_key(kid: &str) -> (Value, impl Fn(&Value) -> String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let point = key.public_key_raw().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
    let kid = kid.to_owned();
    let sign = move |claims: &Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, &encoding).unwrap()
    };
    (jwk, sign)
}

/// A fixed RS256 key (tests/data/jwt-rs256.pem, generated once with `openssl genrsa`; ring
/// cannot generate RSA keys) and its JWK.
fn rs256_key() -> (Value, impl Fn(&Value) -> String) {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let jwk: Value =
        serde_json::from_slice(&std::fs::read(data.join("jwt-rs256.jwk.json")).unwrap()).unwrap();
    // PKCS#1 PEM: the base64 between the armour lines is the DER.
    let pem = std::fs::read_to_string(data.join("jwt-rs256.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_rsa_der(&der);
    let sign = move |claims: &Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("r1".to_owned());
        jsonwebtoken::encode(&header, claims, &encoding).unwrap()
    };
    (jwk, sign)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_passwords_hs256_es256_and_rs256_with_a_rotated_jwks() {
    let dir = temp_dir("jwt");
    let jwks = dir.join("jwks.json");
    let (jwk1, sign1) = es256_key("k1");
    let (jwk2, sign2) = es256_key("k2");
    let (rsa, sign_rsa) = rs256_key();
    std::fs::write(&jwks, json!({"keys": [jwk1, rsa]}).to_string()).unwrap();
    let (broker, addr) = start_with(|c| {
        c.auth.allow_anonymous = Some(false);
        c.auth.failure_delay_ms = 0;
        c.auth.failure_delay_max_ms = 0;
        c.auth.jwt = Some(JwtConfig {
            secret: Some("fleet-secret".to_owned()),
            jwks_file: Some(jwks.clone()),
            audience: Some("warren".to_owned()),
            ..JwtConfig::default()
        });
    })
    .await;
    let claims = |extra: Value| {
        let mut c = json!({"sub": "dev1", "aud": "warren", "exp": now() + 600,
            "acl": {"pub": ["tele/%c/#"], "sub": ["cmd/%c"]}});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let token = hs256(&claims(json!({})), "fleet-secret");
    let (ok, mut dev) = connack(addr, "d1", Some("dev1"), &token).await;
    assert_eq!(ok, ConnectReason::Success);
    assert_eq!(puback(&mut dev, "tele/d1/t", 1).await, 0x10);
    assert_eq!(puback(&mut dev, "tele/d2/t", 2).await, 0x87);
    let refusals = [
        (
            hs256(&claims(json!({"exp": now() - 3600})), "fleet-secret"),
            "jwt_expired",
        ),
        (
            hs256(&claims(json!({"aud": "other"})), "fleet-secret"),
            "jwt_audience",
        ),
        (hs256(&claims(json!({})), "wrong-secret"), "jwt_signature"),
        (
            hs256(&claims(json!({"sub": "dev2"})), "fleet-secret"),
            "jwt_claim",
        ),
    ];
    for (token, label) in refusals {
        let (reason, _) = connack(addr, "d1", Some("dev1"), &token).await;
        assert_eq!(reason, ConnectReason::BadUserNameOrPassword, "{label}");
        assert_eq!(failures(&broker, label), 1, "{label}");
    }
    // ES256 from the JWKS; 5.0 lets a client send the token without a username.
    let es = sign1(&claims(json!({})));
    assert_eq!(
        connack(addr, "d1", None, &es).await.0,
        ConnectReason::Success
    );
    // RS256 from the same JWKS; its signature is checked too.
    let rs = sign_rsa(&claims(json!({})));
    assert_eq!(
        connack(addr, "d1", None, &rs).await.0,
        ConnectReason::Success
    );
    let tampered = sign_rsa(&claims(json!({"sub": "dev9"})));
    let (head, _) = rs.rsplit_once('.').unwrap();
    let forged = format!("{}.{}", head, tampered.rsplit_once('.').unwrap().1);
    assert_eq!(
        connack(addr, "d1", None, &forged).await.0,
        ConnectReason::BadUserNameOrPassword
    );
    // Key rotation: k2 replaces k1 in the file; a reload makes it so.
    std::fs::write(&jwks, json!({"keys": [jwk2]}).to_string()).unwrap();
    broker.reload().unwrap();
    assert_eq!(
        connack(addr, "d1", None, &es).await.0,
        ConnectReason::BadUserNameOrPassword
    );
    let es2 = sign2(&claims(json!({})));
    assert_eq!(
        connack(addr, "d1", None, &es2).await.0,
        ConnectReason::Success
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_tls_certificate_for_new_connections() {
    let old = TestPki::generate("reload-old");
    let new = TestPki::generate("reload-new");
    let tls = old.server_tls(ClientAuth::None);
    let (broker, _) = start_with(|c| {
        c.listeners.insert(
            "tls".to_owned(),
            ListenerConfig {
                kind: ListenerKind::Tls,
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: Some(tls.clone()),
                ..ListenerConfig::default()
            },
        );
    })
    .await;
    let addr = broker.local_addr("tls").unwrap();
    let mut before = V4::start(old.v4_options(addr, "before", false))
        .await
        .unwrap();
    before.subscribe("t", rumqttc::QoS::AtLeastOnce).await;
    // A broken key file: the reload fails and the old certificate stays.
    std::fs::write(&tls.key, "not a key").unwrap();
    assert!(broker.reload().is_err());
    assert!(V4::start(old.v4_options(addr, "still-old", false))
        .await
        .is_ok());
    for name in ["server.pem", "server.key"] {
        std::fs::copy(new.dir.join(name), old.dir.join(name)).unwrap();
    }
    broker.reload().unwrap();
    assert!(V4::start(old.v4_options(addr, "old-ca", false))
        .await
        .is_err());
    let after = V4::start(new.v4_options(addr, "after", false))
        .await
        .unwrap();
    // The connection made before the reload is still served.
    after
        .publish("t", rumqttc::QoS::AtLeastOnce, false, b"x")
        .await;
    assert_eq!(before.next_publish().await.topic, "t");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_is_checked_as_its_username() {
    use warren::bridge::InProcessSide;
    use warren_bridge::{BridgeMessage, Filter, MqttSide, Published};
    let dir = temp_dir("bridge");
    let acl = dir.join("acl");
    // Devices here are anonymous, with every topic (the general rules).
    std::fs::write(
        &acl,
        "topic readwrite #\nuser amqp\ntopic write cmd/#\ntopic read tele/#\ntopic deny tele/private/#\n",
    )
    .unwrap();
    let (broker, addr) = start_with(|c: &mut Config| {
        c.auth.acl_file = Some(acl.clone());
        c.auth.bridge_username = "amqp".to_owned();
    })
    .await;
    let side = InProcessSide::new(broker.core());
    let mut device = raw_connected(addr, V5, "dev").await;
    clients::raw_subscribe(
        &mut device,
        1,
        &[("cmd/#", QoS::AtMostOnce), ("x/#", QoS::AtMostOnce)],
    )
    .await;
    let message = |topic: &str| BridgeMessage {
        topic: topic.to_owned(),
        payload: Bytes::from_static(b"m"),
        qos: 0,
        retain: false,
        properties: Default::default(),
    };
    assert_eq!(
        side.publish(message("cmd/1")).await.unwrap(),
        Published::Accepted
    );
    // Not the bridge's to write: handled as unrouted, never delivered.
    assert_eq!(
        side.publish(message("x/1")).await.unwrap(),
        Published::NoMatchingSubscribers
    );
    let got = clients::raw_ping(&mut device).await;
    assert_eq!(clients::publishes(&got).len(), 1);
    assert!(side
        .subscribe(vec![Filter {
            filter: "cmd/#".into(),
            qos: 1
        }])
        .await
        .is_err());
    let mut sub = side
        .subscribe(vec![Filter {
            filter: "tele/#".into(),
            qos: 0,
        }])
        .await
        .unwrap();
    for topic in ["tele/private/a", "tele/a"] {
        device
            .send(&clients::publish(topic, b"t", QoS::AtMostOnce, 0, false))
            .await;
    }
    let delivery = within(sub.recv()).await.unwrap();
    assert_eq!(delivery.message.topic, "tele/a");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_when_its_jwt_expires() {
    let (broker, addr) = start_with(|c| {
        c.auth.allow_anonymous = Some(false);
        c.auth.jwt = Some(JwtConfig {
            secret: Some("fleet-secret".to_owned()),
            ..JwtConfig::default()
        });
    })
    .await;
    let token =
        |sub: &str, secs: u64| hs256(&json!({"sub": sub, "exp": now() + secs}), "fleet-secret");
    // Expires in 2 s: closed with 0x87 soon after, not before.
    let started = std::time::Instant::now();
    let (ok, mut short) = connack(addr, "short", Some("short"), &token("short", 2)).await;
    assert_eq!(ok, ConnectReason::Success);
    // Valid for an hour: still served after the first one is gone.
    let (ok, mut long) = connack(addr, "long", Some("long"), &token("long", 3600)).await;
    assert_eq!(ok, ConnectReason::Success);
    assert_eq!(
        within(disconnect_reason(&mut short)).await,
        Some(0x87),
        "DISCONNECT 0x87 at expiry"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed too early"
    );
    raw_ping(&mut long).await;
    broker.shutdown().await;

    // With disconnect_on_expiry = false the connection outlives its token.
    let (broker, addr) = start_with(|c| {
        c.auth.allow_anonymous = Some(false);
        c.auth.jwt = Some(JwtConfig {
            secret: Some("fleet-secret".to_owned()),
            disconnect_on_expiry: false,
            ..JwtConfig::default()
        });
    })
    .await;
    let (ok, mut kept) = connack(addr, "kept", Some("kept"), &token("kept", 1)).await;
    assert_eq!(ok, ConnectReason::Success);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    raw_ping(&mut kept).await;
    broker.shutdown().await;
}
