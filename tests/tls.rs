//! TLS listeners with certificates made by rcgen at test time: server authentication, client
//! certificates (required / optional), plain TCP against a TLS port, and a TCP and a TLS
//! listener side by side in one broker.

mod clients;
mod common;

use std::net::SocketAddr;

use clients::{TestPki, V4};
use rumqttc::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::config::{ClientAuth, ListenerConfig, ListenerKind};
use warren::protocol::{self, ProtocolVersion};
use warren::BrokerHandle;

/// A broker with the usual "tcp" listener and a "tls" listener using `pki` and `client_auth`;
/// returns the handle and both addresses (tcp, tls).
async fn start_tls(
    pki: &TestPki,
    client_auth: ClientAuth,
) -> (BrokerHandle, SocketAddr, SocketAddr) {
    let tls = pki.server_tls(client_auth);
    let (broker, tcp) = common::start_with(|c| {
        c.listeners.insert(
            "tls".to_owned(),
            ListenerConfig {
                kind: ListenerKind::Tls,
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: Some(tls),
                ..ListenerConfig::default()
            },
        );
        c.validate().expect("valid test config");
    })
    .await;
    let tls = broker.local_addr("tls").expect("tls listener");
    assert_ne!(tcp, tls);
    (broker, tcp, tls)
}

/// A TLS client connects (or not) to `tls`.
async fn tls_client(
    pki: &TestPki,
    tls: SocketAddr,
    id: &str,
    with_client_cert: bool,
) -> Result<V4, String> {
    V4::start(pki.v4_options(tls, id, with_client_cert)).await
}

/// `client` publishes to `sub` through the broker.
async fn carries_a_publish(publisher: &V4, sub: &mut V4, topic: &str) {
    publisher
        .publish(topic, QoS::AtLeastOnce, false, topic.as_bytes())
        .await;
    let got = sub.next_publish().await;
    assert_eq!(got.topic, topic);
    assert_eq!(&got.payload[..], topic.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_carries_a_publish_next_to_tcp() {
    let pki = TestPki::generate("plain");
    let (broker, tcp, tls) = start_tls(&pki, ClientAuth::None).await;

    let mut tls_sub = tls_client(&pki, tls, "tls-sub", false).await.unwrap();
    tls_sub.subscribe("secure/#", QoS::AtLeastOnce).await;
    let mut tcp_sub = V4::connect(tcp, "tcp-sub").await;
    tcp_sub.subscribe("secure/#", QoS::AtLeastOnce).await;

    // TLS → TLS and TCP.
    let tls_pub = tls_client(&pki, tls, "tls-pub", false).await.unwrap();
    carries_a_publish(&tls_pub, &mut tls_sub, "secure/a").await;
    let got = tcp_sub.next_publish().await;
    assert_eq!(got.topic, "secure/a");
    // TCP → TLS.
    let tcp_pub = V4::connect(tcp, "tcp-pub").await;
    carries_a_publish(&tcp_pub, &mut tls_sub, "secure/b").await;

    assert_eq!(broker.stats().connections_current, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_not_trusting_the_server_ca_is_not_connected() {
    let pki = TestPki::generate("untrusted");
    let other = TestPki::generate("other-ca");
    let (_broker, _tcp, tls) = start_tls(&pki, ClientAuth::None).await;
    // The client trusts another CA: the handshake fails on the client side.
    let result = tls_client(&other, tls, "mistrust", false).await;
    assert!(result.is_err(), "connected to a server it should not trust");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_required_refuses_a_client_without_certificate() {
    let pki = TestPki::generate("required");
    let (broker, _tcp, tls) = start_tls(&pki, ClientAuth::Required).await;

    let refused = tls_client(&pki, tls, "anonymous", false).await;
    assert!(
        refused.is_err(),
        "a client without certificate got a CONNACK"
    );
    assert_eq!(broker.session_count(), 0);

    let mut sub = tls_client(&pki, tls, "with-cert-sub", true)
        .await
        .expect("a client with a CA-signed certificate connects");
    sub.subscribe("mtls", QoS::AtLeastOnce).await;
    let publisher = tls_client(&pki, tls, "with-cert-pub", true).await.unwrap();
    carries_a_publish(&publisher, &mut sub, "mtls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_certificate_from_another_ca() {
    let pki = TestPki::generate("required-other");
    let other = TestPki::generate("foreign-client");
    let (_broker, _tcp, tls) = start_tls(&pki, ClientAuth::Required).await;
    // Trusts the right server CA but presents a client certificate signed by another CA.
    let mut options = pki.v4_options(tls, "foreign", false);
    let config = {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
            .unwrap();
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(other.client_cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(other.client_key_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(config)),
    ));
    assert!(V4::start(options).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_auth_accepts_both() {
    let pki = TestPki::generate("optional");
    let (_broker, _tcp, tls) = start_tls(&pki, ClientAuth::Optional).await;
    let mut anonymous = tls_client(&pki, tls, "anonymous", false)
        .await
        .expect("optional: a client without certificate connects");
    anonymous.subscribe("opt", QoS::AtLeastOnce).await;
    let with_cert = tls_client(&pki, tls, "with-cert", true)
        .await
        .expect("optional: a client with certificate connects");
    carries_a_publish(&with_cert, &mut anonymous, "opt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_client_on_the_tls_port_gets_no_connack() {
    let pki = TestPki::generate("plain-on-tls");
    let (broker, _tcp, tls) = start_tls(&pki, ClientAuth::None).await;

    let mut stream = common::within(tokio::net::TcpStream::connect(tls))
        .await
        .unwrap();
    let mut connect = bytes::BytesMut::new();
    protocol::encode(
        &common::connect_packet(ProtocolVersion::V3_1_1, "plain", true),
        ProtocolVersion::V3_1_1,
        protocol::MAX_PACKET_SIZE,
        &mut connect,
    )
    .unwrap();
    stream.write_all(&connect).await.unwrap();
    // The server treats the bytes as a bad ClientHello and closes (maybe after a TLS alert).
    let mut answer = Vec::new();
    let _ = common::within(stream.read_to_end(&mut answer)).await;
    assert!(
        answer.first() != Some(&0x20),
        "got an MQTT CONNACK on the TLS port: {answer:x?}"
    );
    assert_eq!(broker.session_count(), 0);

    // rumqttc over plain TCP does not get connected either.
    assert!(V4::start(clients::v4_options(tls, "plain-rumqttc"))
        .await
        .is_err());
}
