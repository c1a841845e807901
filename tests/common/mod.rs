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

/// A PUBLISH (packet id 0 at QoS 0).
pub fn publish_packet(topic: &str, payload: &[u8], qos: protocol::QoS, pkid: u16) -> Packet {
    Packet::Publish(protocol::Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        pkid: if qos == protocol::QoS::AtMostOnce {
            0
        } else {
            pkid
        },
        properties: Default::default(),
        payload: bytes::Bytes::copy_from_slice(payload),
    })
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
    raw.send(&publish_packet(topic, payload, qos, pkid)).await;
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

// ---------------------------------------------------------------------------------------------
// A raw WebSocket client (ws.rs, proxy_protocol.rs, limits.rs).

pub mod ws {
    use super::*;

    /// A WebSocket connection speaking frames, for byte-level cases.
    pub struct WsRaw {
        pub stream: TcpStream,
        pub buf: BytesMut,
        /// MQTT bytes from binary frames not decoded yet.
        pub mqtt: BytesMut,
        pub version: ProtocolVersion,
    }

    /// An upgrade request for `path` offering `protocols` (none if empty).
    pub fn upgrade_request(path: &str, protocols: &str) -> String {
        let offer = if protocols.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Protocol: {protocols}\r\n")
        };
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        )
    }

    /// A masked client frame with first byte `first` (FIN, opcode).
    pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        let len = payload.len();
        if len <= 125 {
            out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// One binary frame holding `packets`, encoded at `version`.
    pub fn packets_frame(packets: &[Packet], version: ProtocolVersion) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            protocol::encode(p, version, protocol::MAX_PACKET_SIZE, &mut out).expect("encode");
        }
        frame(0x82, &out)
    }

    impl WsRaw {
        /// Sends the upgrade request and returns the connection with the response head
        /// (status line and headers).
        pub async fn upgrade(
            addr: SocketAddr,
            path: &str,
            protocols: &str,
            version: ProtocolVersion,
        ) -> (WsRaw, String) {
            let stream = within(TcpStream::connect(addr)).await.expect("tcp connect");
            let mut ws = WsRaw {
                stream,
                buf: BytesMut::new(),
                mqtt: BytesMut::new(),
                version,
            };
            let request = upgrade_request(path, protocols);
            ws.send_bytes(request.as_bytes()).await;
            let head = ws.read_head().await;
            (ws, head)
        }

        /// Upgrades with subprotocol `mqtt` on `/mqtt`, expecting 101.
        pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> WsRaw {
            let (ws, head) = Self::upgrade(addr, "/mqtt", "mqtt", version).await;
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            ws
        }

        /// Reads an HTTP response head ("" if the connection closed first).
        pub async fn read_head(&mut self) -> String {
            within(async {
                loop {
                    if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = self.buf.split_to(end + 4);
                        return String::from_utf8_lossy(&head).into_owned();
                    }
                    match self.stream.read_buf(&mut self.buf).await {
                        Ok(0) | Err(_) => return String::from_utf8_lossy(&self.buf).into_owned(),
                        Ok(_) => {}
                    }
                }
            })
            .await
        }

        pub async fn send_bytes(&mut self, bytes: &[u8]) {
            within(self.stream.write_all(bytes)).await.expect("write");
        }

        /// Sends `packets` in one binary frame.
        pub async fn send(&mut self, packets: &[Packet]) {
            let frame = packets_frame(packets, self.version);
            self.send_bytes(&frame).await;
        }

        /// The next server frame: (first byte, payload); `None` once the server closed.
        pub async fn recv_frame(&mut self) -> Option<(u8, Vec<u8>)> {
            within(async {
                loop {
                    if self.buf.len() >= 2 {
                        assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
                        let (len, at) = match self.buf[1] & 0x7f {
                            126 if self.buf.len() >= 4 => (
                                usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                                4,
                            ),
                            127 if self.buf.len() >= 10 => {
                                let mut n = [0u8; 8];
                                n.copy_from_slice(&self.buf[2..10]);
                                (u64::from_be_bytes(n) as usize, 10)
                            }
                            126 | 127 => (usize::MAX, 0),
                            n => (usize::from(n), 2),
                        };
                        if len != usize::MAX && self.buf.len() >= at + len {
                            let first = self.buf[0];
                            let mut frame = self.buf.split_to(at + len);
                            let payload = frame.split_off(at).to_vec();
                            return Some((first, payload));
                        }
                    }
                    match self.stream.read_buf(&mut self.buf).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                }
            })
            .await
        }

        /// The next MQTT packet from binary frames (control frames are skipped); `None` once
        /// the server closed.
        pub async fn recv(&mut self) -> Option<Packet> {
            loop {
                if let Some(packet) =
                    protocol::decode(&mut self.mqtt, Some(self.version), &CLIENT_LIMITS)
                        .expect("server sent a valid packet")
                {
                    return Some(packet);
                }
                match self.recv_frame().await? {
                    (0x82, payload) => self.mqtt.extend_from_slice(&payload),
                    (0x88, _) => return None,
                    (first, _) => panic!("unexpected frame {first:#x}"),
                }
            }
        }

        /// Connects (CONNECT in one frame) and expects a successful CONNACK.
        pub async fn connected(addr: SocketAddr, version: ProtocolVersion, id: &str) -> WsRaw {
            let mut ws = Self::open(addr, version).await;
            ws.send(&[connect_packet(version, id, true)]).await;
            match ws.recv().await {
                Some(Packet::ConnAck(ack)) => {
                    assert_eq!(ack.reason, protocol::ConnectReason::Success)
                }
                other => panic!("expected CONNACK, got {other:?}"),
            }
            ws
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The admin API over real HTTP (admin.rs, ctl.rs, browser.rs).

/// One HTTP/1.1 request to `addr` (the connection closed after it); the status and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    within(async {
        let mut tcp = TcpStream::connect(addr).await.expect("admin listener");
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let body = body.unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await.expect("request written");
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await.expect("response read");
        let text = String::from_utf8(response).expect("UTF-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, body.to_owned())
    })
    .await
}

/// A request to the admin API that must answer `want`; its body as JSON.
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    want: u16,
) -> serde_json::Value {
    let (status, body) = http(addr, method, path, token, None).await;
    assert_eq!(status, want, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}
