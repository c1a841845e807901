//! What an attacker or a careless client tries: deep topics that once crashed the process,
//! packets pipelined behind CONNECT, trickled bytes, a Subscription Identifier from a client,
//! oversized first packets, too many subscriptions; and what an operator sees: `/readyz` during
//! shutdown, TCP keepalive on accepted sockets, the offline-session timer wheel.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::protocol::{self, reason, ConnectReason, Packet, ProtocolVersion, Publish, QoS, Will};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn encode(packets: &[Packet], version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    for packet in packets {
        protocol::encode(packet, version, protocol::MAX_PACKET_SIZE, &mut out).expect("encode");
    }
    out
}

/// Reproduced on the old core: a will topic of 65,000 `/` with retain, the socket closed, then
/// any subscriber to `#` overflowed the stack and aborted the process. The will topic is
/// refused (5.0: CONNACK 0x90) and the broker keeps serving `#`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_topic_deeper_than_the_limit_is_refused_and_nothing_crashes() {
    let (broker, addr) = start_with(|c| c.mqtt.max_connect_packet_size = 1 << 20).await;
    for version in [V3, V5] {
        let mut connect = connect_packet(version, "deep-will", true);
        if let Packet::Connect(c) = &mut connect {
            c.will = Some(Will {
                topic: "/".repeat(65_000).into(),
                payload: Bytes::from_static(b"w"),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
            });
        }
        let (mut raw, first) = raw_connect_with(addr, version, &connect).await;
        match first {
            Some(Packet::ConnAck(ack)) if version == V5 => {
                assert_eq!(ack.reason, ConnectReason::TopicNameInvalid)
            }
            // 3.1.1 has no return code for it: closed without CONNACK.
            None if version == V3 => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(raw.until_closed().await.is_empty());
    }
    // A topic at the limit works, deeper PUBLISH topics close the connection, and `#` works.
    let mut sub = raw_connected(addr, V3, "hash").await;
    assert_eq!(
        raw_subscribe(&mut sub, 1, "#", QoS::AtMostOnce).await,
        vec![0]
    );
    let mut publisher = raw_connected(addr, V5, "deep-pub").await;
    let at_limit = vec!["a"; protocol::topic::MAX_TOPIC_LEVELS].join("/");
    raw_publish(&mut publisher, &at_limit, b"ok", QoS::AtMostOnce, 0).await;
    match sub.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(p.topic, at_limit.as_str()),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    let too_deep = format!("{at_limit}/b");
    publisher
        .send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: too_deep.into(),
            pkid: 0,
            properties: Default::default(),
            payload: Bytes::from_static(b"x"),
        }))
        .await;
    assert_eq!(
        disconnect_reason(&mut publisher).await,
        Some(reason::TOPIC_NAME_INVALID)
    );
    // Deep filters are refused per filter.
    let deep_filter = format!(
        "{}/#",
        vec!["+"; protocol::topic::MAX_TOPIC_LEVELS].join("/")
    );
    assert_eq!(
        raw_subscribe(&mut sub, 2, &deep_filter, QoS::AtMostOnce).await,
        vec![0x80]
    );
    assert_eq!(broker.retained_count(), 0);
    raw_ping(&mut sub).await;
}

/// CONNECT and SUBSCRIBE in one write: the SUBACK comes without anything more being sent
/// (the old core answered only after the next read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_pipelined_behind_connect_are_answered_at_once() {
    let (_broker, addr) = start().await;
    for version in [V3, V5] {
        let mut raw = Raw::connect(addr, version).await;
        let bytes = encode(
            &[
                connect_packet(version, "pipelined", true),
                Packet::Subscribe(protocol::Subscribe {
                    pkid: 9,
                    filters: vec![("pipe/#".into(), Default::default())],
                    properties: Default::default(),
                }),
                Packet::PingReq,
            ],
            version,
        );
        raw.send_bytes(&bytes).await;
        assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
        match raw.recv().await {
            Some(Packet::SubAck(ack)) => assert_eq!(ack.pkid, 9),
            other => panic!("expected SUBACK, got {other:?}"),
        }
        assert!(matches!(raw.recv().await, Some(Packet::PingResp)));
    }
}

/// Keep alive counts whole packets: one byte of a PUBLISH every 500 ms does not keep a
/// connection with keep alive 1 s alive (1.5 s window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bytes_do_not_refresh_keep_alive() {
    let (_broker, addr) = start().await;
    let connect = with_keep_alive(connect_packet(V5, "trickle", true), 1);
    let (mut raw, first) = raw_connect_with(addr, V5, &connect).await;
    assert!(matches!(first, Some(Packet::ConnAck(_))));
    let bytes = encode(
        &[Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            pkid: 0,
            properties: Default::default(),
            payload: Bytes::from(vec![0u8; 100]),
        })],
        V5,
    );
    let started = std::time::Instant::now();
    let mut closed_with = None;
    for byte in bytes.iter() {
        if raw.stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(500), raw.stream.read(&mut probe)).await
        {
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    raw.buf.extend_from_slice(&probe[..n]);
                    closed_with = Some(disconnect_reason(&mut raw).await);
                    break;
                }
            }
        }
        assert!(
            started.elapsed() < WAIT,
            "still open after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(closed_with, Some(Some(reason::KEEP_ALIVE_TIMEOUT)));
}

/// A started packet has `packet_timeout_secs` to complete, keep alive or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_packet_must_complete_in_time() {
    let (broker, addr) = start_with(|c| c.mqtt.packet_timeout_secs = 1).await;
    let connect = with_keep_alive(connect_packet(V5, "half-packet", true), 0);
    let (mut raw, first) = raw_connect_with(addr, V5, &connect).await;
    assert!(matches!(first, Some(Packet::ConnAck(_))));
    let protocol_errors = broker.stats().protocol_errors;
    raw.send_bytes(&[0x30, 0x0a, 0x00]).await; // a PUBLISH header and one byte of ten
    assert_eq!(
        disconnect_reason(&mut raw).await,
        Some(reason::KEEP_ALIVE_TIMEOUT)
    );
    assert_eq!(broker.stats().protocol_errors, protocol_errors + 1);
}

/// A client's PUBLISH carrying a Subscription Identifier is a protocol error (MQTT-3.3.4-6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_identifier_from_a_client_is_a_protocol_error() {
    let (_broker, addr) = start().await;
    let mut raw = raw_connected(addr, V5, "sub-id").await;
    let mut properties = protocol::PublishProperties::default();
    properties.subscription_identifiers.push(3);
    raw.send(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        pkid: 0,
        properties,
        payload: Bytes::from_static(b"x"),
    }))
    .await;
    assert_eq!(
        disconnect_reason(&mut raw).await,
        Some(reason::PROTOCOL_ERROR)
    );
}

/// The first packet may be at most `max_connect_packet_size`, whatever `max_packet_size` is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_packet_has_its_own_size_limit() {
    let (broker, addr) = start_with(|c| c.mqtt.max_connect_packet_size = 1024).await;
    let mut connect = connect_packet(V5, "big-connect", true);
    if let Packet::Connect(c) = &mut connect {
        c.will = Some(Will {
            topic: "w".into(),
            payload: Bytes::from(vec![0u8; 2000]),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
    }
    let malformed = broker.stats().malformed_packets;
    let (mut raw, first) = raw_connect_with(addr, V5, &connect).await;
    assert!(first.is_none(), "{first:?}");
    assert!(raw.until_closed().await.is_empty());
    assert_eq!(broker.stats().malformed_packets, malformed + 1);
    // A small CONNECT is fine, and later packets may be larger than the first-packet limit.
    let mut ok = raw_connected(addr, V5, "small-connect").await;
    raw_publish(&mut ok, "big", &[0u8; 4000], QoS::AtLeastOnce, 1).await;
}

/// `max_subscriptions_per_client`: filters past it get 0x97 (3.1.1: 0x80); replacing an
/// existing one is always allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_client_are_limited() {
    let (broker, addr) = start_with(|c| c.mqtt.max_subscriptions_per_client = 2).await;
    for (version, refused) in [(V5, reason::QUOTA_EXCEEDED), (V3, 0x80)] {
        let mut raw = raw_connected(addr, version, "many-subs").await;
        assert_eq!(
            raw_subscribe(&mut raw, 1, "a", QoS::AtMostOnce).await,
            vec![0]
        );
        assert_eq!(
            raw_subscribe(&mut raw, 2, "b", QoS::AtMostOnce).await,
            vec![0]
        );
        assert_eq!(
            raw_subscribe(&mut raw, 3, "c", QoS::AtMostOnce).await,
            vec![refused]
        );
        assert_eq!(
            raw_subscribe(&mut raw, 4, "a", QoS::AtLeastOnce).await,
            vec![1]
        );
        assert_eq!(broker.subscription_count(), 2);
        raw_disconnect(raw).await;
    }
}

/// `/readyz` answers 503 while the broker shuts down (the old HTTP loop stopped at once, so the
/// port refused connections from the first instant). A client whose output is stuck keeps the
/// shutdown busy for a moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_during_shutdown() {
    let (broker, addr) = start_with(|c| c.mqtt.shutdown_grace_secs = 5).await;
    let metrics = broker.metrics_addr().expect("metrics listener");
    assert!(http_get(metrics, "/readyz")
        .await
        .starts_with("HTTP/1.1 200"));
    let mut stuck = raw_small_window(addr, V3).await;
    stuck.send(&connect_packet(V3, "stuck", true)).await;
    assert!(matches!(stuck.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(
        raw_subscribe(&mut stuck, 1, "fill", QoS::AtMostOnce).await,
        vec![0]
    );
    flood_qos0(addr, "fill", 200, 32 * 1024).await;
    let shutdown = tokio::spawn(broker.shutdown());
    let answer = within(async {
        loop {
            let answer = http_get(metrics, "/readyz").await;
            if !answer.starts_with("HTTP/1.1 200") {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        within(shutdown).await.expect("shutdown task"),
        "within the grace period"
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = within(tokio::net::TcpStream::connect(addr))
        .await
        .expect("metrics listener answers");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    within(tcp.read_to_string(&mut out)).await.expect("read");
    out
}

/// Accepted sockets have TCP keepalive on, so a peer that vanished without a FIN is found even
/// with MQTT keep alive 0 (`ss` shows the keepalive timer of the server's socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_sockets_have_tcp_keepalive() {
    let (_broker, addr) = start().await;
    let connect = with_keep_alive(connect_packet(V3, "ka0", true), 0);
    let (_raw, first) = raw_connect_with(addr, V3, &connect).await;
    assert!(matches!(first, Some(Packet::ConnAck(_))));
    let filter = format!("( sport = :{} )", addr.port());
    let out = std::process::Command::new("ss")
        .args(["-tno", "state", "established", &filter])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("timer:(keepalive"), "{text}");
}

/// One timer-wheel entry per offline session: a device reconnecting again and again with a
/// long expiry does not pile up sleeping timers (the old core spawned one task per disconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_sessions_keep_one_timer_each() {
    let (broker, addr) = start().await;
    for _ in 0..100 {
        let mut connect = connect_packet(V5, "flapping", false);
        if let Packet::Connect(c) = &mut connect {
            c.properties.session_expiry_interval = Some(86_400);
            c.will = Some(Will {
                topic: "will/flapping".into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: protocol::WillProperties {
                    will_delay_interval: Some(3600),
                    ..Default::default()
                },
            });
        }
        let (raw, first) = raw_connect_with(addr, V5, &connect).await;
        assert!(matches!(first, Some(Packet::ConnAck(_))));
        drop(raw); // no DISCONNECT: the delayed will is armed
        eventually(|| broker.offline_session_count() == 1).await;
    }
    eventually(|| broker.pending_timers() == 2).await; // expiry + delayed will, once
    assert_eq!(broker.stats().wills_published, 0);
}

/// `max_user_properties`: a packet with more is refused while decoding, before the work is
/// done (5.0: DISCONNECT 0x97). A 1 MiB PUBLISH could otherwise carry ~200,000 of them, each
/// cloned into every delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_per_packet_are_limited() {
    let (broker, addr) = start_with(|c| c.mqtt.max_user_properties = 3).await;
    let mut raw = raw_connected(addr, V5, "props").await;
    let mut properties = protocol::PublishProperties::default();
    for i in 0..3 {
        properties.user_properties.push(&format!("k{i}"), "v");
    }
    let publish = |properties: protocol::PublishProperties| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "p".into(),
            pkid: 1,
            properties,
            payload: Bytes::from_static(b"x"),
        })
    };
    raw.send(&publish(properties.clone())).await;
    assert!(
        matches!(raw.recv().await, Some(Packet::PubAck(_))),
        "3 are fine"
    );
    properties.user_properties.push("k3", "v");
    let malformed = broker.stats().malformed_packets;
    raw.send(&publish(properties)).await;
    assert_eq!(
        disconnect_reason(&mut raw).await,
        Some(reason::QUOTA_EXCEEDED)
    );
    assert_eq!(broker.stats().malformed_packets, malformed + 1);
}
