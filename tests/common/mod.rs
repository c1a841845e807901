//! Shared helpers of the integration tests: start Warren in process on an ephemeral port, bound
//! waits, and a raw MQTT socket for byte-level cases.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::config::Config;
use warren::protocol::{self, Packet, ProtocolVersion};
use warren::{Broker, BrokerHandle};

/// Upper bound of every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("timed out waiting")
}

/// A broker on 127.0.0.1:0 with the test config.
pub async fn start() -> (BrokerHandle, SocketAddr) {
    start_with(|_| {}).await
}

/// A broker on 127.0.0.1:0 with the test config changed by `change`.
pub async fn start_with(change: impl FnOnce(&mut Config)) -> (BrokerHandle, SocketAddr) {
    let mut config = Config::for_tests();
    change(&mut config);
    let handle = Broker::start(config).await.expect("broker starts");
    let addr = handle.local_addr("tcp").expect("tcp listener");
    (handle, addr)
}

/// Polls `cond` until it holds, failing after [`WAIT`]. For state with no event to await
/// (e.g. a counter in the broker).
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A raw MQTT connection speaking bytes, for cases real clients will not produce.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub version: ProtocolVersion,
}

impl Raw {
    /// Opens a TCP connection (nothing sent yet).
    pub async fn connect(addr: SocketAddr, version: ProtocolVersion) -> Raw {
        let stream = within(TcpStream::connect(addr)).await.expect("tcp connect");
        Raw {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// Sends raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        within(self.stream.write_all(bytes)).await.expect("write");
    }

    /// Encodes and sends a packet at this connection's version.
    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        protocol::encode(packet, self.version, protocol::MAX_PACKET_SIZE, &mut out)
            .expect("encode");
        self.send_bytes(&out).await;
    }

    /// Reads the next packet; `None` if the server closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        within(async {
            loop {
                if let Some(packet) =
                    protocol::decode(&mut self.buf, Some(self.version), protocol::MAX_PACKET_SIZE)
                        .expect("server sent a valid packet")
                {
                    return Some(packet);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Reads until the server closes the connection, returning the packets seen on the way.
    pub async fn until_closed(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        while let Some(packet) = self.recv().await {
            seen.push(packet);
        }
        seen
    }
}

/// A CONNECT packet with the usual defaults.
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean: bool) -> Packet {
    Packet::Connect(Box::new(protocol::Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }))
}

/// Opens a raw connection and completes CONNECT/CONNACK.
pub async fn raw_connected(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Raw {
    let mut raw = Raw::connect(addr, version).await;
    raw.send(&connect_packet(version, client_id, true)).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, protocol::ConnectReason::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    raw
}

/// Fails the test with a clear message when Debian's mosquitto-clients are missing
/// (`scripts/test` installs them).
pub fn require_mosquitto_clients() {
    for tool in ["mosquitto_pub", "mosquitto_sub"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} not found: install Debian's mosquitto-clients (scripts/test does)"
        );
    }
}
