//! Bad input on raw sockets. Each case checks that the offending connection is closed (5.0:
//! after a DISCONNECT with the right reason), that exactly one malformed packet or protocol
//! error is counted, and that the broker keeps serving: a client connected before is
//! unaffected and a new client connects.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use warren::protocol::{reason, Disconnect, Packet, ProtocolVersion, PubResp, Publish, QoS};
use warren::stats::StatsSnapshot;
use warren::BrokerHandle;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Which counter a bad input must bump.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Malformed,
    Protocol,
}

/// A client connected before the bad input, subscribed to its own probe topic.
struct Bystander {
    raw: Raw,
    before: StatsSnapshot,
}

impl Bystander {
    async fn connect(broker: &BrokerHandle, addr: SocketAddr) -> Bystander {
        let mut raw = raw_connected(addr, V3, "bystander").await;
        raw_subscribe(&mut raw, 1, "probe/#", QoS::AtLeastOnce).await;
        Bystander {
            raw,
            before: broker.stats(),
        }
    }

    /// Checks the counters moved by exactly one, the bystander still publishes and receives,
    /// and a new client connects.
    async fn check(mut self, broker: &BrokerHandle, addr: SocketAddr, counted: Counted) {
        let now = broker.stats();
        let malformed = now.malformed_packets - self.before.malformed_packets;
        let protocol = now.protocol_errors - self.before.protocol_errors;
        match counted {
            Counted::Malformed => assert_eq!((malformed, protocol), (1, 0), "{now:?}"),
            Counted::Protocol => assert_eq!((malformed, protocol), (0, 1), "{now:?}"),
        }

        // Publish to itself at QoS 0 and QoS 1; the deliveries and the PUBACK may come in
        // any order.
        for (qos, pkid, topic, payload) in [
            (QoS::AtMostOnce, 0, "probe/x", &b"still here"[..]),
            (QoS::AtLeastOnce, 2, "probe/y", &b"qos1"[..]),
        ] {
            self.raw
                .send(&Packet::Publish(Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: topic.into(),
                    pkid,
                    properties: Default::default(),
                    payload: bytes::Bytes::from_static(payload),
                }))
                .await;
        }
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match self.raw.recv().await {
                Some(Packet::Publish(p)) => {
                    if p.qos == QoS::AtLeastOnce {
                        self.raw.send(&Packet::PubAck(PubResp::new(p.pkid))).await;
                    }
                    seen.push(format!("publish {}", String::from_utf8_lossy(&p.payload)));
                }
                Some(Packet::PubAck(ack)) => seen.push(format!("puback {}", ack.pkid)),
                other => panic!("bystander got {other:?} after {seen:?}"),
            }
        }
        seen.sort();
        assert_eq!(seen, ["puback 2", "publish qos1", "publish still here"]);

        let mut fresh = raw_connected(addr, V5, "fresh").await;
        raw_ping(&mut fresh).await;
        assert_eq!(broker.session_count(), 2, "bystander and fresh");
    }
}

/// Connects `id`, sends `bytes`, and expects the broker to close the connection, having sent
/// nothing (3.1.1) or only DISCONNECT `disconnect_reason` (5.0).
async fn bad_after_connect(
    addr: SocketAddr,
    version: ProtocolVersion,
    bytes: &[u8],
    disconnect_reason: u8,
) {
    let mut bad = raw_connected(addr, version, "bad").await;
    bad.send_bytes(bytes).await;
    let seen = bad.until_closed().await;
    if version.is_v5() {
        match &seen[..] {
            [Packet::Disconnect(Disconnect { reason, properties })] => {
                assert_eq!(*reason, disconnect_reason);
                assert!(properties.reason_string.is_some(), "says why");
            }
            other => panic!("expected one DISCONNECT {disconnect_reason:#x}, got {other:?}"),
        }
    } else {
        assert_eq!(seen, []);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_length_over_four_bytes() {
    for version in [V3, V5] {
        let (broker, addr) = start().await;
        let bystander = Bystander::connect(&broker, addr).await;
        bad_after_connect(
            addr,
            version,
            &[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f],
            reason::MALFORMED_PACKET,
        )
        .await;
        bystander.check(&broker, addr, Counted::Malformed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_declaring_200_mib_is_refused_without_waiting_for_the_body() {
    for version in [V3, V5] {
        let (broker, addr) = start().await; // max_packet_size 1 MiB
        let bystander = Bystander::connect(&broker, addr).await;
        let started = Instant::now();
        // PUBLISH, remaining length 209,715,200 (200 MiB), then nothing.
        bad_after_connect(
            addr,
            version,
            &[0x30, 0x80, 0x80, 0x80, 0x64],
            reason::PACKET_TOO_LARGE,
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "closed after {:?}",
            started.elapsed()
        );
        bystander.check(&broker, addr, Counted::Malformed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_in_publish_topic() {
    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    // v5 QoS 0 PUBLISH "a/+", no properties, no payload.
    bad_after_connect(
        addr,
        V5,
        &[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'+', 0x00],
        reason::MALFORMED_PACKET,
    )
    .await;
    bystander.check(&broker, addr, Counted::Malformed).await;

    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    bad_after_connect(addr, V3, &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'], 0).await;
    bystander.check(&broker, addr, Counted::Malformed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_publish_topic() {
    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    bad_after_connect(
        addr,
        V5,
        &[0x30, 0x06, 0x00, 0x03, b'a', 0x00, b'b', 0x00],
        reason::MALFORMED_PACKET,
    )
    .await;
    bystander.check(&broker, addr, Counted::Malformed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_publish_topic() {
    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    bad_after_connect(
        addr,
        V5,
        &[0x30, 0x06, 0x00, 0x03, b'a', 0xff, b'b', 0x00],
        reason::MALFORMED_PACKET,
    )
    .await;
    bystander.check(&broker, addr, Counted::Malformed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_qos_3() {
    for version in [V3, V5] {
        let (broker, addr) = start().await;
        let bystander = Bystander::connect(&broker, addr).await;
        // QoS bits 11, topic "a/b", packet id 1 (and an empty property length in 5.0).
        let mut bytes = vec![0x36, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01];
        if version.is_v5() {
            bytes[1] = 0x08;
            bytes.push(0x00);
        }
        bad_after_connect(addr, version, &bytes, reason::MALFORMED_PACKET).await;
        bystander.check(&broker, addr, Counted::Malformed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_with_reserved_fixed_header_flags() {
    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    // SUBSCRIBE with flags 0000 instead of 0010: packet id 1, "a/b" at QoS 0.
    bad_after_connect(
        addr,
        V3,
        &[0x80, 0x08, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'b', 0x00],
        0,
    )
    .await;
    bystander.check(&broker, addr, Counted::Malformed).await;
    assert_eq!(broker.subscription_count(), 1, "only the bystander's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_reserved_flag_bit() {
    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    let mut bad = Raw::connect(addr, V3).await;
    // 3.1.1 CONNECT, flags 0x03: clean session plus the reserved bit 0.
    bad.send_bytes(&[
        0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x03, 0x00, 0x3c, 0x00, 0x01, b'x',
    ])
    .await;
    assert_eq!(
        raw_read_to_close(&mut bad).await,
        Vec::<u8>::new(),
        "no CONNACK"
    );
    bystander.check(&broker, addr, Counted::Malformed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_over_configured_max_packet_size() {
    for version in [V3, V5] {
        let (broker, addr) = start_with(|c| c.mqtt.max_packet_size = 256).await;
        let bystander = Bystander::connect(&broker, addr).await;
        // A well-formed QoS 0 PUBLISH of about 300 bytes.
        let mut packet = bytes::BytesMut::new();
        warren::protocol::encode(
            &Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "big".into(),
                pkid: 0,
                properties: Default::default(),
                payload: bytes::Bytes::from(vec![b'x'; 290]),
            }),
            version,
            warren::protocol::MAX_PACKET_SIZE,
            &mut packet,
        )
        .expect("encodes");
        assert!(packet.len() > 256);
        bad_after_connect(addr, version, &packet, reason::PACKET_TOO_LARGE).await;
        bystander.check(&broker, addr, Counted::Malformed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_before_connect() {
    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    let mut bad = Raw::connect(addr, V3).await;
    let started = Instant::now();
    let mut bytes = b"GET / HTTP/1.1\r\nHost: warren\r\n\r\n".to_vec();
    let mut connect = bytes::BytesMut::new();
    warren::protocol::encode(
        &connect_packet(V3, "after-garbage", true),
        V3,
        warren::protocol::MAX_PACKET_SIZE,
        &mut connect,
    )
    .expect("encodes");
    bytes.extend_from_slice(&connect);
    bad.send_bytes(&bytes).await;
    assert_eq!(
        raw_read_to_close(&mut bad).await,
        Vec::<u8>::new(),
        "no CONNACK"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed, not timed out"
    );
    // 'G' reads as a PUBACK header: not a CONNECT.
    bystander.check(&broker, addr, Counted::Protocol).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_garbage_before_connect() {
    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    let mut bad = Raw::connect(addr, V3).await;
    let mut bytes = vec![0x00, 0xde, 0xad, 0xbe, 0xef];
    let mut connect = bytes::BytesMut::new();
    warren::protocol::encode(
        &connect_packet(V3, "after-garbage", true),
        V3,
        warren::protocol::MAX_PACKET_SIZE,
        &mut connect,
    )
    .expect("encodes");
    bytes.extend_from_slice(&connect);
    bad.send_bytes(&bytes).await;
    assert_eq!(
        raw_read_to_close(&mut bad).await,
        Vec::<u8>::new(),
        "no CONNACK"
    );
    // Packet type 0 is reserved.
    bystander.check(&broker, addr, Counted::Malformed).await;
}

/// A retained PUBLISH on a topic of `levels` levels (`a/a/...`), QoS 0, at `version`.
fn deep_publish(version: ProtocolVersion, levels: usize) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: vec!["a"; levels].join("/").into(),
        pkid: 0,
        properties: Default::default(),
        payload: bytes::Bytes::from_static(b"deep"),
    });
    warren::protocol::encode(&publish, version, u32::MAX, &mut out).expect("encodes");
    out.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_topic_over_the_level_limit() {
    let limit = warren::protocol::topic::MAX_TOPIC_LEVELS;
    for version in [V3, V5] {
        let (broker, addr) = start().await;
        let bystander = Bystander::connect(&broker, addr).await;
        bad_after_connect(
            addr,
            version,
            &deep_publish(version, limit + 1),
            reason::TOPIC_NAME_INVALID,
        )
        .await;
        bystander.check(&broker, addr, Counted::Malformed).await;
        assert_eq!(broker.retained_count(), 0);
        // At the limit it is an ordinary topic.
        let mut ok = raw_connected(addr, version, "deep").await;
        ok.send_bytes(&deep_publish(version, limit)).await;
        raw_ping(&mut ok).await;
        assert_eq!(broker.retained_count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_filter_over_the_level_limit_gets_its_own_failure_code() {
    let limit = warren::protocol::topic::MAX_TOPIC_LEVELS;
    let deep = format!("{}/#", vec!["a"; limit].join("/"));
    let at_limit = vec!["+"; limit].join("/");
    for (version, refused) in [(V3, 0x80), (V5, reason::TOPIC_FILTER_INVALID)] {
        let (_broker, addr) = start().await;
        let mut raw = raw_connected(addr, version, "deep").await;
        raw.send(&Packet::Subscribe(warren::protocol::Subscribe {
            pkid: 1,
            filters: [deep.as_str(), at_limit.as_str(), "ok"]
                .iter()
                .map(|f| ((*f).into(), Default::default()))
                .collect(),
            properties: Default::default(),
        }))
        .await;
        match raw.recv().await {
            Some(Packet::SubAck(ack)) => assert_eq!(ack.reasons, [refused, 0, 0]),
            other => panic!("expected SUBACK, got {other:?}"),
        }
        raw_ping(&mut raw).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_over_the_user_property_limit() {
    let (broker, addr) = start().await;
    let bystander = Bystander::connect(&broker, addr).await;
    let max = warren::protocol::DecodeLimits::DEFAULT_MAX_USER_PROPERTIES;
    let publish = |pairs: usize| {
        let mut out = bytes::BytesMut::new();
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "probe/props".into(),
            pkid: 0,
            properties: warren::protocol::PublishProperties {
                user_properties: (0..pairs).map(|i| ("k", i.to_string())).collect(),
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(b"p"),
        });
        warren::protocol::encode(&packet, V5, u32::MAX, &mut out).expect("encodes");
        out.to_vec()
    };
    bad_after_connect(addr, V5, &publish(max + 1), reason::QUOTA_EXCEEDED).await;
    bystander.check(&broker, addr, Counted::Malformed).await;
    let mut ok = raw_connected(addr, V5, "many").await;
    ok.send_bytes(&publish(max)).await;
    raw_ping(&mut ok).await;
}
