//! Per-client limits: the publish rate limits pause a client's PUBLISH input (a flood is
//! slowed, nothing is dropped, acks and pings go on), and the configured topic length and
//! depth.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use tokio::io::AsyncWriteExt;
use warren::protocol::{self, reason, Packet, ProtocolVersion, QoS};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn encode_all(packets: &[Packet], version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    for p in packets {
        protocol::encode(p, version, protocol::MAX_PACKET_SIZE, &mut out).unwrap();
    }
    out
}

/// 60 QoS 1 PUBLISH and a PINGREQ in one write, at 100 a second after a burst of 10: the
/// PINGREQ is answered long before the last PUBACK, every PUBACK comes in order, and the
/// subscriber (the publisher itself, acking its deliveries meanwhile) gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_flood_is_slowed_not_dropped_and_acks_and_pings_flow() {
    let (broker, addr) = start_with(|c| {
        c.mqtt.max_publish_rate = 100;
        c.mqtt.max_publish_burst = 10;
        c.mqtt.max_inflight = 4;
    })
    .await;
    let mut client = raw_connected(addr, V5, "flooder").await;
    assert_eq!(
        raw_subscribe(&mut client, 1, "flood/#", QoS::AtLeastOnce).await,
        [1]
    );
    const N: u16 = 60;
    let mut packets: Vec<Packet> = (1..=N)
        .map(|i| publish_packet("flood/a", &i.to_be_bytes(), QoS::AtLeastOnce, i))
        .collect();
    packets.push(Packet::PingReq);
    let started = Instant::now();
    client.send_bytes(&encode_all(&packets, V5)).await;

    let (mut acks, mut delivered, mut acks_before_pong) = (Vec::new(), Vec::new(), None);
    while acks.len() < N as usize || delivered.len() < N as usize {
        match client.recv().await.expect("connection stays up") {
            Packet::PubAck(ack) => {
                assert_eq!(ack.reason, reason::SUCCESS);
                acks.push(ack.pkid);
            }
            Packet::PingResp => acks_before_pong = Some(acks.len()),
            Packet::Publish(p) => {
                delivered.push(u16::from_be_bytes([p.payload[0], p.payload[1]]));
                // Our acks pass the held PUBLISH packets, or the inflight window of 4 would
                // stall the deliveries.
                client
                    .send(&Packet::PubAck(protocol::PubResp::new(p.pkid)))
                    .await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(acks, (1..=N).collect::<Vec<_>>());
    assert_eq!(delivered, (1..=N).collect::<Vec<_>>());
    let before = acks_before_pong.expect("PINGRESP");
    assert!(
        before < N as usize / 2,
        "PINGRESP only after {before} PUBACKs"
    );
    // 50 beyond the burst at 100 a second.
    assert!(elapsed >= Duration::from_millis(490), "{elapsed:?}");
    assert!(broker.stats().publish_pauses >= 1);
    assert!(broker
        .render_metrics()
        .contains("warren_publish_pauses_total"));
}

/// The byte rate: four QoS 0 messages of 5,000 bytes at 10,000 bytes a second, then DISCONNECT
/// and a closed socket. Nothing is dropped, the burst and close are handled in order (no will),
/// and it takes the time the rate says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_rate_slows_qos0_and_a_close_waits_its_turn() {
    let (broker, addr) = start_with(|c| c.mqtt.max_publish_bytes_rate = 10_000).await;
    let mut sub = raw_connected(addr, V3, "bytes-sub").await;
    raw_subscribe(&mut sub, 1, "bytes/#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(addr, V3).await;
    let mut connect = connect_packet(V3, "bytes-pub", true);
    if let Packet::Connect(c) = &mut connect {
        c.will = Some(protocol::Will {
            topic: "bytes/will".into(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
    }
    publisher.send(&connect).await;
    assert!(matches!(publisher.recv().await, Some(Packet::ConnAck(_))));
    let mut packets: Vec<Packet> = (0..4u8)
        .map(|i| publish_packet("bytes/x", &[i; 5000], QoS::AtMostOnce, 0))
        .collect();
    packets.push(Packet::Disconnect(Default::default()));
    let started = Instant::now();
    publisher.send_bytes(&encode_all(&packets, V3)).await;
    publisher.stream.shutdown().await.unwrap();
    for i in 0..4u8 {
        match sub.recv().await {
            Some(Packet::Publish(p)) => assert_eq!((p.payload[0], p.payload.len()), (i, 5000)),
            other => panic!("expected PUBLISH {i}, got {other:?}"),
        }
    }
    // 20,028 bytes with 10,000 at once: at least one second.
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "{:?}",
        started.elapsed()
    );
    raw_ping(&mut sub).await;
    assert_eq!(broker.stats().wills_published, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_length_and_levels_are_limited_per_configuration() {
    let (_broker, addr) = start_with(|c| {
        c.mqtt.max_topic_length = 16;
        c.mqtt.max_topic_levels = 3;
    })
    .await;
    let mut client = raw_connected(addr, V5, "topics").await;
    raw_publish(&mut client, "a/b/c", b"ok", QoS::AtLeastOnce, 1).await;
    // Filters: within, too deep, too long.
    for (filter, code) in [("a/+/#", 1), ("a/b/c/d", 0x8F), ("abcdefghijklmnopq", 0x8F)] {
        let got = raw_subscribe(&mut client, 2, filter, QoS::AtLeastOnce).await;
        assert_eq!(got, [code], "{filter}");
    }
    // A PUBLISH too deep: DISCONNECT 0x90.
    client
        .send(&publish_packet("a/b/c/d", b"x", QoS::AtMostOnce, 0))
        .await;
    assert_eq!(
        disconnect_reason(&mut client).await,
        Some(reason::TOPIC_NAME_INVALID)
    );
    // Too long.
    let mut client = raw_connected(addr, V5, "topics-2").await;
    client
        .send(&publish_packet(&"x".repeat(17), b"x", QoS::AtMostOnce, 0))
        .await;
    assert_eq!(
        disconnect_reason(&mut client).await,
        Some(reason::TOPIC_NAME_INVALID)
    );
    // A will topic over the limit is refused at CONNECT.
    let mut connect = connect_packet(V5, "will-deep", true);
    if let Packet::Connect(c) = &mut connect {
        c.will = Some(protocol::Will {
            topic: "w/x/y/z".into(),
            payload: bytes::Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
    }
    match raw_connect_with(addr, V5, &connect).await.1 {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, protocol::ConnectReason::TopicNameInvalid)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}
