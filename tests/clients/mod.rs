//! Client helpers of the pub/sub, retained, will, 5.0 property, Mosquitto and TLS tests:
//! rumqttc 3.1.1 and 5.0 clients whose event loop runs in a task and reports incoming packets,
//! raw-packet builders for [`common::Raw`], and test certificates made with rcgen.
//!
//! Every wait is bounded by [`common::within`]. Include with `mod common; mod clients;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use warren::protocol::{
    self, Connect, Packet, ProtocolVersion, PubResp, Publish, PublishProperties, SubAck, Subscribe,
    SubscribeProperties, SubscriptionOptions,
};

use crate::common::{self, within, Raw};

// ---------------------------------------------------------------------------------------------
// rumqttc 3.1.1
// ---------------------------------------------------------------------------------------------

/// Options for a 3.1.1 client of the broker at `addr`.
pub fn v4_options(addr: SocketAddr, id: &str) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

/// A rumqttc 3.1.1 client whose event loop runs in a task; incoming packets queue up here.
pub struct V4 {
    pub client: rumqttc::AsyncClient,
    incoming: mpsc::UnboundedReceiver<Result<rumqttc::Incoming, String>>,
    task: JoinHandle<()>,
}

impl Drop for V4 {
    fn drop(&mut self) {
        // Dropping the event loop closes the socket without DISCONNECT.
        self.task.abort();
    }
}

impl V4 {
    /// Connects with clean session and waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, id: &str) -> V4 {
        V4::start(v4_options(addr, id))
            .await
            .unwrap_or_else(|e| panic!("client {id} did not connect: {e}"))
    }

    /// Connects with `options`; `Err` describes why there was no successful CONNACK.
    pub async fn start(options: rumqttc::MqttOptions) -> Result<V4, String> {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
        let (tx, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(packet)) => {
                        if tx.send(Ok(packet)).is_err() {
                            return;
                        }
                    }
                    Ok(rumqttc::Event::Outgoing(_)) => {}
                    Err(error) => {
                        let _ = tx.send(Err(error.to_string()));
                        return;
                    }
                }
            }
        });
        let mut v4 = V4 {
            client,
            incoming,
            task,
        };
        match within(v4.incoming.recv()).await {
            Some(Ok(rumqttc::Incoming::ConnAck(ack)))
                if ack.code == rumqttc::ConnectReturnCode::Success =>
            {
                Ok(v4)
            }
            Some(Ok(other)) => Err(format!("expected a successful CONNACK, got {other:?}")),
            Some(Err(error)) => Err(error),
            None => Err("event loop ended".into()),
        }
    }

    /// The next incoming packet; fails the test on a connection error.
    pub async fn next(&mut self) -> rumqttc::Incoming {
        match within(self.incoming.recv()).await {
            Some(Ok(packet)) => packet,
            Some(Err(error)) => panic!("connection error: {error}"),
            None => panic!("event loop ended"),
        }
    }

    /// Skips incoming packets until `f` picks one.
    pub async fn wait_for<T>(&mut self, mut f: impl FnMut(&rumqttc::Incoming) -> Option<T>) -> T {
        within(async {
            loop {
                let packet = self.next().await;
                if let Some(t) = f(&packet) {
                    return t;
                }
            }
        })
        .await
    }

    /// The next PUBLISH (skipping acks and pings).
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        self.wait_for(|p| match p {
            rumqttc::Incoming::Publish(publish) => Some(publish.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) -> rumqttc::SubAck {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("subscribe request");
        self.wait_for(|p| match p {
            rumqttc::Incoming::SubAck(ack) => Some(ack.clone()),
            _ => None,
        })
        .await
    }

    /// Queues a publish.
    pub async fn publish(&self, topic: &str, qos: rumqttc::QoS, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .await
            .expect("publish request");
    }
}

// ---------------------------------------------------------------------------------------------
// rumqttc 5.0
// ---------------------------------------------------------------------------------------------

pub use rumqttc::v5::mqttbytes::v5 as p5;
pub use rumqttc::v5::mqttbytes::QoS as QoS5;

/// Options for a 5.0 client of the broker at `addr`.
pub fn v5_options(addr: SocketAddr, id: &str) -> rumqttc::v5::MqttOptions {
    let mut options = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

/// A rumqttc 5.0 client whose event loop runs in a task; incoming packets queue up here.
pub struct V5 {
    pub client: rumqttc::v5::AsyncClient,
    incoming: mpsc::UnboundedReceiver<Result<p5::Packet, String>>,
    task: JoinHandle<()>,
}

impl Drop for V5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl V5 {
    /// Connects with clean start and waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, id: &str) -> V5 {
        V5::start(v5_options(addr, id))
            .await
            .unwrap_or_else(|e| panic!("client {id} did not connect: {e}"))
    }

    /// Connects with `options`; `Err` describes why there was no successful CONNACK.
    pub async fn start(options: rumqttc::v5::MqttOptions) -> Result<V5, String> {
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 100);
        let (tx, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(packet)) => {
                        if tx.send(Ok(packet)).is_err() {
                            return;
                        }
                    }
                    Ok(rumqttc::v5::Event::Outgoing(_)) => {}
                    Err(error) => {
                        let _ = tx.send(Err(error.to_string()));
                        return;
                    }
                }
            }
        });
        let mut v5 = V5 {
            client,
            incoming,
            task,
        };
        match within(v5.incoming.recv()).await {
            Some(Ok(p5::Packet::ConnAck(ack))) if ack.code == p5::ConnectReturnCode::Success => {
                Ok(v5)
            }
            Some(Ok(other)) => Err(format!("expected a successful CONNACK, got {other:?}")),
            Some(Err(error)) => Err(error),
            None => Err("event loop ended".into()),
        }
    }

    /// The next incoming packet; fails the test on a connection error.
    pub async fn next(&mut self) -> p5::Packet {
        match within(self.incoming.recv()).await {
            Some(Ok(packet)) => packet,
            Some(Err(error)) => panic!("connection error: {error}"),
            None => panic!("event loop ended"),
        }
    }

    /// Skips incoming packets until `f` picks one.
    pub async fn wait_for<T>(&mut self, mut f: impl FnMut(&p5::Packet) -> Option<T>) -> T {
        within(async {
            loop {
                let packet = self.next().await;
                if let Some(t) = f(&packet) {
                    return t;
                }
            }
        })
        .await
    }

    /// The next PUBLISH (skipping acks and pings).
    pub async fn next_publish(&mut self) -> p5::Publish {
        self.wait_for(|p| match p {
            p5::Packet::Publish(publish) => Some(publish.clone()),
            _ => None,
        })
        .await
    }

    /// The next SUBACK.
    pub async fn next_suback(&mut self) -> p5::SubAck {
        self.wait_for(|p| match p {
            p5::Packet::SubAck(ack) => Some(ack.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS5) -> p5::SubAck {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("subscribe request");
        self.next_suback().await
    }

    /// Queues a publish.
    pub async fn publish(&self, topic: &str, qos: QoS5, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .await
            .expect("publish request");
    }
}

// ---------------------------------------------------------------------------------------------
// Raw packets
// ---------------------------------------------------------------------------------------------

/// A PUBLISH packet.
pub fn publish(topic: &str, payload: &[u8], qos: protocol::QoS, pkid: u16, retain: bool) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        pkid,
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}

/// A SUBSCRIBE packet for `filters` at their maximum QoS.
pub fn subscribe(pkid: u16, filters: &[(&str, protocol::QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid,
        filters: filters
            .iter()
            .map(|&(f, qos)| {
                (
                    f.into(),
                    SubscriptionOptions {
                        qos,
                        ..SubscriptionOptions::default()
                    },
                )
            })
            .collect(),
        properties: SubscribeProperties::default(),
    })
}

/// Sends SUBSCRIBE and returns the SUBACK, which must be the next packet.
pub async fn raw_subscribe(raw: &mut Raw, pkid: u16, filters: &[(&str, protocol::QoS)]) -> SubAck {
    raw.send(&subscribe(pkid, filters)).await;
    match raw.recv().await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.pkid, pkid, "SUBACK for another SUBSCRIBE");
            ack
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Reads packets until `last` picks one, returning all of them (that one included). Fails the
/// test if the connection closes first or the wait is too long.
pub async fn raw_until(raw: &mut Raw, mut last: impl FnMut(&Packet) -> bool) -> Vec<Packet> {
    within(async {
        let mut seen = Vec::new();
        loop {
            match raw.recv().await {
                Some(packet) => {
                    let done = last(&packet);
                    seen.push(packet);
                    if done {
                        return seen;
                    }
                }
                None => panic!("connection closed; packets so far: {seen:?}"),
            }
        }
    })
    .await
}

/// True for a PUBLISH on `topic`.
pub fn is_publish_on(packet: &Packet, topic: &str) -> bool {
    matches!(packet, Packet::Publish(p) if p.topic == topic)
}

/// The PUBLISH packets of `packets`.
pub fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Sends PINGREQ and returns what arrived before the PINGRESP: a round trip through the
/// connection's packet loop, after which anything the broker had ready has been written.
pub async fn raw_ping(raw: &mut Raw) -> Vec<Packet> {
    raw.send(&Packet::PingReq).await;
    let mut seen = raw_until(raw, |p| matches!(p, Packet::PingResp)).await;
    seen.pop();
    seen
}

/// A PUBACK/PUBREC/PUBREL/PUBCOMP body.
pub fn resp(pkid: u16) -> PubResp {
    PubResp::new(pkid)
}

/// Opens a raw connection whose CONNECT is changed by `change`, and completes CONNACK.
pub async fn raw_connected_with(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    change: impl FnOnce(&mut Connect),
) -> Raw {
    let mut raw = Raw::connect(addr, version).await;
    let mut connect = common::connect_packet(version, client_id, true);
    if let Packet::Connect(c) = &mut connect {
        change(c);
    }
    raw.send(&connect).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, protocol::ConnectReason::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    raw
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A test PKI written to a fresh directory under the temp dir (removed on drop): a CA, a server
/// certificate for 127.0.0.1 and localhost, and a client certificate, all as PEM.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestPki {
    /// Generates everything; `name` keeps directories of concurrent tests apart.
    pub fn generate(name: &str) -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
            KeyPair, KeyUsagePurpose,
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warren-it-tls-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create cert dir");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Distinct names: OpenSSL (Python's ssl) takes a leaf whose issuer is its own
        // subject for a self-signed certificate.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Warren test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let ca_pem = ca.as_ref().pem();

        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &ca).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = params.signed_by(&client_key, &ca).unwrap();

        let pki = TestPki {
            dir,
            ca_pem,
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        };
        std::fs::write(pki.ca_path(), &pki.ca_pem).unwrap();
        std::fs::write(pki.dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(pki.dir.join("server.key"), server_key.serialize_pem()).unwrap();
        pki
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The listener's `tls` table.
    pub fn server_tls(&self, client_auth: warren::config::ClientAuth) -> warren::config::TlsConfig {
        warren::config::TlsConfig {
            cert: self.dir.join("server.pem"),
            key: self.dir.join("server.key"),
            client_ca: (client_auth != warren::config::ClientAuth::None).then(|| self.ca_path()),
            client_auth,
        }
    }

    /// A rustls client config trusting the test CA, presenting the client certificate if
    /// `with_client_cert`.
    pub fn client_config(&self, with_client_cert: bool) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = if with_client_cert {
            builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(self.client_cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(self.client_key_pem.as_bytes()).unwrap(),
                )
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }

    /// rumqttc 3.1.1 options for a TLS client of `addr`.
    pub fn v4_options(
        &self,
        addr: SocketAddr,
        id: &str,
        with_client_cert: bool,
    ) -> rumqttc::MqttOptions {
        let mut options = v4_options(addr, id);
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(self.client_config(with_client_cert)),
        ));
        options
    }
}
