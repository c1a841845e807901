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

/// What a test client decodes: anything MQTT allows (the broker's limits are not the client's).
pub const CLIENT_LIMITS: protocol::DecodeLimits = protocol::DecodeLimits {
    max_packet_size: protocol::MAX_PACKET_SIZE,
    max_user_properties: usize::MAX,
};

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
                    protocol::decode(&mut self.buf, Some(self.version), &CLIENT_LIMITS)
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

// ---------------------------------------------------------------------------------------------
// Helpers of connect.rs, session.rs and malformed.rs.

/// `packet` (a CONNECT) with its keep alive set to `secs`.
pub fn with_keep_alive(mut packet: Packet, secs: u16) -> Packet {
    if let Packet::Connect(connect) = &mut packet {
        connect.keep_alive = secs;
    }
    packet
}

/// Opens a raw connection, sends `connect` and returns the connection with the server's first
/// packet (`None` if it closed without answering).
pub async fn raw_connect_with(
    addr: SocketAddr,
    version: ProtocolVersion,
    connect: &Packet,
) -> (Raw, Option<Packet>) {
    let mut raw = Raw::connect(addr, version).await;
    raw.send(connect).await;
    let first = raw.recv().await;
    (raw, first)
}

/// Connects with `clean` session/start and expects a successful CONNACK; returns the
/// connection and the CONNACK's session present flag.
pub async fn raw_session(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    clean: bool,
) -> (Raw, bool) {
    let connect = connect_packet(version, client_id, clean);
    match raw_connect_with(addr, version, &connect).await {
        (raw, Some(Packet::ConnAck(ack))) => {
            assert_eq!(ack.reason, protocol::ConnectReason::Success, "{ack:?}");
            (raw, ack.session_present)
        }
        (_, other) => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Subscribes to one filter and returns the SUBACK's reason codes.
pub async fn raw_subscribe(raw: &mut Raw, pkid: u16, filter: &str, qos: protocol::QoS) -> Vec<u8> {
    raw.send(&Packet::Subscribe(protocol::Subscribe {
        pkid,
        filters: vec![(
            filter.into(),
            protocol::SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
        properties: Default::default(),
    }))
    .await;
    match raw.recv().await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.pkid, pkid);
            ack.reasons
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Publishes and completes the QoS flow as the sender (PUBACK, or PUBREC/PUBREL/PUBCOMP). The
/// next packets from the server must be those acknowledgements. A QoS 0 publish is followed
/// by a PINGREQ round trip, so the broker has handled it when this returns.
pub async fn raw_publish(
    raw: &mut Raw,
    topic: &str,
    payload: &[u8],
    qos: protocol::QoS,
    pkid: u16,
) {
    use protocol::QoS;
    raw.send(&Packet::Publish(protocol::Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
        properties: Default::default(),
        payload: bytes::Bytes::copy_from_slice(payload),
    }))
    .await;
    match qos {
        QoS::AtMostOnce => raw_ping(raw).await,
        QoS::AtLeastOnce => match raw.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, pkid),
            other => panic!("expected PUBACK, got {other:?}"),
        },
        QoS::ExactlyOnce => {
            match raw.recv().await {
                Some(Packet::PubRec(rec)) => assert_eq!(rec.pkid, pkid),
                other => panic!("expected PUBREC, got {other:?}"),
            }
            raw.send(&Packet::PubRel(protocol::PubResp::new(pkid)))
                .await;
            match raw.recv().await {
                Some(Packet::PubComp(comp)) => assert_eq!(comp.pkid, pkid),
                other => panic!("expected PUBCOMP, got {other:?}"),
            }
        }
    }
}

/// PINGREQ, and the next packet from the server must be PINGRESP. Since the broker handles a
/// connection's packets in order and flushes pending deliveries first, this is also a barrier:
/// nothing else was pending for this client.
pub async fn raw_ping(raw: &mut Raw) {
    raw.send(&Packet::PingReq).await;
    match raw.recv().await {
        Some(Packet::PingResp) => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

/// Sends DISCONNECT (normal) and waits until the server has closed the connection.
pub async fn raw_disconnect(mut raw: Raw) {
    raw.send(&Packet::Disconnect(Default::default())).await;
    let rest = raw.until_closed().await;
    assert!(rest.is_empty(), "packets after DISCONNECT: {rest:?}");
}

/// Every byte the server sends until it closes the connection (bounded by [`WAIT`]).
pub async fn raw_read_to_close(raw: &mut Raw) -> Vec<u8> {
    let mut out = raw.buf.split().to_vec();
    within(async {
        let mut chunk = [0u8; 4096];
        loop {
            match raw.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers of the flow-control and takeover tests.

/// A raw connection with a tiny receive buffer, for a client that will stop reading: the
/// broker's writes to it block once a few kilobytes are in flight.
pub async fn raw_small_window(addr: SocketAddr, version: ProtocolVersion) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = within(socket.connect(addr)).await.expect("tcp connect");
    Raw {
        stream,
        buf: BytesMut::new(),
        version,
    }
}

/// Publishes `count` QoS 0 messages of `size` bytes on `topic` from a fresh client, then
/// disconnects: enough output to fill a subscriber's socket buffers when it does not read.
pub async fn flood_qos0(addr: SocketAddr, topic: &str, count: usize, size: usize) {
    let mut publisher = raw_connected(addr, ProtocolVersion::V3_1_1, "").await;
    let payload = vec![b'x'; size];
    for _ in 0..count {
        publisher
            .send(&Packet::Publish(protocol::Publish {
                dup: false,
                qos: protocol::QoS::AtMostOnce,
                retain: false,
                topic: topic.into(),
                pkid: 0,
                properties: Default::default(),
                payload: bytes::Bytes::copy_from_slice(&payload),
            }))
            .await;
    }
    raw_ping(&mut publisher).await;
    raw_disconnect(publisher).await;
}

/// Reads until the server closes the connection and returns the reason of the DISCONNECT it
/// sent first, if any (5.0). Anything else on the way is skipped.
pub async fn disconnect_reason(raw: &mut Raw) -> Option<u8> {
    let mut reason = None;
    while let Some(packet) = raw.recv().await {
        if let Packet::Disconnect(d) = packet {
            reason = Some(d.reason);
        }
    }
    reason
}

/// Runs `tests/scripts/<script>` with `python3` and `args`, returning its stdout; fails the
/// test with stderr if it fails (scripts/test installs paho-mqtt).
pub async fn python(script: &str, args: &[String]) -> String {
    let path = format!("{}/tests/scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("python3")
            .arg(&path)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python script timed out")
    .expect("python3 runs (scripts/test installs it with paho-mqtt)");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
