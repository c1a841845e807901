//! CONNECT and CONNACK: protocol levels, client identifiers, the connect timeout, keep alive,
//! and the refusals a CONNECT can get.

mod common;

use std::time::{Duration, Instant};

use common::*;
use warren::protocol::{
    reason, ConnectReason, Disconnect, Packet, ProtocolVersion, QoS, Will, WillProperties,
};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A hand-written 3.1.1 CONNECT: client id "x", clean session, keep alive 60, `flags` as given.
fn v311_connect_bytes(level: u8, flags: u8) -> Vec<u8> {
    vec![
        0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', level, flags, 0x00, 0x3c, 0x00, 0x01, b'x',
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_client_connects_and_gets_connack_success() {
    use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet as P};
    let (broker, addr) = start().await;
    let mut options = MqttOptions::new("rumqttc-v4", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    match within(eventloop.poll()).await.expect("connection") {
        Event::Incoming(P::ConnAck(ack)) => {
            assert_eq!(ack.code, ConnectReturnCode::Success);
            assert!(!ack.session_present);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(broker.session_count(), 1);
    assert_eq!(broker.stats().connects_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_client_connects_and_gets_connack_success() {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet as P};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let (broker, addr) = start().await;
    let mut options = MqttOptions::new("rumqttc-v5", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    match within(eventloop.poll()).await.expect("connection") {
        Event::Incoming(P::ConnAck(ack)) => {
            assert_eq!(ack.code, ConnectReturnCode::Success);
            assert!(!ack.session_present);
            let props = ack.properties.expect("a 5.0 CONNACK carries properties");
            assert_eq!(props.max_packet_size, Some(1_048_576));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(broker.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_level_gets_return_code_1_then_close() {
    let (broker, addr) = start().await;
    let mut raw = Raw::connect(addr, V3).await;
    raw.send_bytes(&v311_connect_bytes(6, 0x02)).await;
    assert_eq!(raw_read_to_close(&mut raw).await, [0x20, 0x02, 0x00, 0x01]);
    assert_eq!(broker.stats().connects_refused, 1);
    assert_eq!(broker.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_empty_client_id_without_clean_session_gets_return_code_2() {
    let (broker, addr) = start().await;
    let mut raw = Raw::connect(addr, V3).await;
    raw.send(&connect_packet(V3, "", false)).await;
    assert_eq!(raw_read_to_close(&mut raw).await, [0x20, 0x02, 0x00, 0x02]);
    assert_eq!(broker.stats().connects_refused, 1);
    assert_eq!(broker.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_empty_client_id_with_clean_session_is_accepted() {
    let (broker, addr) = start().await;
    let (mut raw, present) = raw_session(addr, V3, "", true).await;
    assert!(!present);
    raw_ping(&mut raw).await;
    assert_eq!(broker.session_count(), 1);
    assert_eq!(broker.stats().connects_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_empty_client_id_gets_an_assigned_client_identifier() {
    let (broker, addr) = start().await;
    let mut assigned = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..2 {
        let (mut raw, first) = raw_connect_with(addr, V5, &connect_packet(V5, "", true)).await;
        let Some(Packet::ConnAck(ack)) = first else {
            panic!("expected CONNACK, got {first:?}");
        };
        assert_eq!(ack.reason, ConnectReason::Success);
        let id = ack
            .properties
            .assigned_client_identifier
            .expect("Assigned Client Identifier in CONNACK");
        assert!(!id.is_empty());
        raw_ping(&mut raw).await;
        assigned.push(id);
        conns.push(raw);
    }
    assert_ne!(assigned[0], assigned[1], "each client gets its own id");
    assert_eq!(broker.session_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_length_client_id_refused_when_not_allowed() {
    let (broker, addr) = start_with(|c| c.mqtt.allow_zero_length_client_id = false).await;

    let mut raw = Raw::connect(addr, V3).await;
    raw.send(&connect_packet(V3, "", true)).await;
    assert_eq!(raw_read_to_close(&mut raw).await, [0x20, 0x02, 0x00, 0x02]);

    let (mut raw, first) = raw_connect_with(addr, V5, &connect_packet(V5, "", true)).await;
    match first {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, ConnectReason::ClientIdentifierNotValid);
            assert!(ack.properties.assigned_client_identifier.is_none());
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(raw.until_closed().await, []);

    assert_eq!(broker.stats().connects_refused, 2);
    assert_eq!(broker.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_connect_is_accepted_and_answers_pings() {
    use tokio::io::AsyncReadExt;
    let (broker, addr) = start().await;
    let mut raw = Raw::connect(addr, ProtocolVersion::V3_1).await;
    #[rustfmt::skip]
    raw.send_bytes(&[
        0x10, 0x10,
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p',
        0x03,       // level 3
        0x02,       // clean session
        0x00, 0x3c, // keep alive 60
        0x00, 0x02, b'c', b'1',
    ])
    .await;
    let mut connack = [0u8; 4];
    within(raw.stream.read_exact(&mut connack))
        .await
        .expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    raw.send_bytes(&[0xc0, 0x00]).await;
    let mut pingresp = [0u8; 2];
    within(raw.stream.read_exact(&mut pingresp))
        .await
        .expect("PINGRESP");
    assert_eq!(pingresp, [0xd0, 0x00]);
    assert_eq!(broker.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_closed_after_connect_timeout() {
    let (broker, addr) = start_with(|c| c.mqtt.connect_timeout_secs = 1).await;
    let mut raw = Raw::connect(addr, V3).await;
    let started = Instant::now();
    assert_eq!(raw_read_to_close(&mut raw).await, Vec::<u8>::new());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}, connect timeout is 1 s"
    );
    eventually(|| broker.stats().connections_current == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_packet_not_connect_closes_the_connection() {
    // The test connect timeout is 5 s: closing well before shows the PINGREQ was refused.
    let (broker, addr) = start().await;
    let mut raw = Raw::connect(addr, V3).await;
    let started = Instant::now();
    raw.send_bytes(&[0xc0, 0x00]).await;
    assert_eq!(
        raw_read_to_close(&mut raw).await,
        Vec::<u8>::new(),
        "no PINGRESP, no CONNACK"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(broker.stats().protocol_errors, 1);
    assert_eq!(broker.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_closes_a_v311_connection() {
    let (broker, addr) = start().await;
    let mut raw = raw_connected(addr, V3, "twice").await;
    raw.send(&connect_packet(V3, "twice", true)).await;
    assert_eq!(
        raw_read_to_close(&mut raw).await,
        Vec::<u8>::new(),
        "no second CONNACK"
    );
    assert_eq!(broker.stats().protocol_errors, 1);
    eventually(|| broker.session_count() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_gets_v5_disconnect_protocol_error() {
    let (broker, addr) = start().await;
    let mut raw = raw_connected(addr, V5, "twice5").await;
    raw.send(&connect_packet(V5, "twice5", true)).await;
    match &raw.until_closed().await[..] {
        [Packet::Disconnect(Disconnect { reason, properties })] => {
            assert_eq!(*reason, reason::PROTOCOL_ERROR);
            let why = properties.reason_string.as_deref().unwrap_or_default();
            assert!(why.contains("MQTT-3.1.0-2"), "reason string {why:?}");
        }
        other => panic!("expected one DISCONNECT 0x82, got {other:?}"),
    }
    assert_eq!(broker.stats().protocol_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_closed_after_one_and_a_half_keep_alives() {
    let (broker, addr) = start().await;
    let connect = with_keep_alive(connect_packet(V3, "idle", true), 1);
    let (mut raw, first) = raw_connect_with(addr, V3, &connect).await;
    let started = Instant::now();
    assert!(matches!(first, Some(Packet::ConnAck(_))), "{first:?}");
    assert_eq!(raw_read_to_close(&mut raw).await, Vec::<u8>::new());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}; keep alive 1 s allows 1.5 s"
    );
    eventually(|| broker.session_count() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinging_client_stays_connected_past_keep_alive() {
    let (broker, addr) = start().await;
    let connect = with_keep_alive(connect_packet(V3, "pinger", true), 1);
    let (mut raw, first) = raw_connect_with(addr, V3, &connect).await;
    assert!(matches!(first, Some(Packet::ConnAck(_))), "{first:?}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3200) {
        raw_ping(&mut raw).await;
        // Pacing of the client, not synchronisation: a ping every half keep alive.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    raw_ping(&mut raw).await;
    assert_eq!(broker.session_count(), 1);
    assert_eq!(broker.stats().connections_current, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_silent_client_gets_disconnect_keep_alive_timeout() {
    let (_broker, addr) = start().await;
    let connect = with_keep_alive(connect_packet(V5, "idle5", true), 1);
    let (mut raw, first) = raw_connect_with(addr, V5, &connect).await;
    let started = Instant::now();
    match first {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, ConnectReason::Success);
            assert_eq!(
                ack.properties.server_keep_alive, None,
                "keep alive 1 is kept"
            );
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(
        raw.until_closed().await,
        [Packet::Disconnect(Disconnect {
            reason: reason::KEEP_ALIVE_TIMEOUT,
            ..Default::default()
        })]
    );
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_authentication_method_gets_connack_bad_authentication_method() {
    let (broker, addr) = start().await;
    let mut connect = connect_packet(V5, "auth", true);
    if let Packet::Connect(c) = &mut connect {
        c.properties.authentication_method = Some("SCRAM-SHA-256".into());
    }
    let (mut raw, first) = raw_connect_with(addr, V5, &connect).await;
    match first {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, ConnectReason::BadAuthenticationMethod);
            assert!(!ack.session_present);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(raw.until_closed().await, []);
    assert_eq!(broker.stats().connects_refused, 1);
    assert_eq!(broker.session_count(), 0);
}

fn connect_with_will(version: ProtocolVersion, topic: &str) -> Packet {
    let mut connect = connect_packet(version, "willing", true);
    if let Packet::Connect(c) = &mut connect {
        c.will = Some(Will {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties::default(),
        });
    }
    connect
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_topic_with_wildcard_gets_connack_topic_name_invalid() {
    let (broker, addr) = start().await;
    let (mut raw, first) = raw_connect_with(addr, V5, &connect_with_will(V5, "wills/+")).await;
    match first {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ConnectReason::TopicNameInvalid),
        other => panic!("expected CONNACK 0x90, got {other:?}"),
    }
    assert_eq!(raw.until_closed().await, []);
    assert_eq!(broker.session_count(), 0);
    assert_eq!(broker.stats().connects_refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_will_topic_with_wildcard_is_refused() {
    let (broker, addr) = start().await;
    let mut raw = Raw::connect(addr, V3).await;
    raw.send(&connect_with_will(V3, "wills/#")).await;
    let answer = raw_read_to_close(&mut raw).await;
    // 3.1.1 has no return code for a bad will topic: closing, with or without a refusing
    // CONNACK, is what a client can see; never a success.
    assert_ne!(
        answer.get(..4),
        Some(&[0x20, 0x02, 0x00, 0x00][..]),
        "{answer:x?}"
    );
    assert_eq!(broker.session_count(), 0);
    // The valid will is accepted: the refusal was about the wildcard.
    let (mut raw, first) = raw_connect_with(addr, V3, &connect_with_will(V3, "wills/ok")).await;
    assert!(matches!(first, Some(Packet::ConnAck(ref a)) if a.reason == ConnectReason::Success));
    raw_ping(&mut raw).await;
}

/// Issue 9, reproduced crash: a will topic of 65,000 `/` with will retain, the socket closed,
/// then a subscription to `#` overflowed the stack walking the retained store. The will topic
/// is now over the topic-level limit, so CONNECT is refused and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_topic_over_the_level_limit_is_refused_and_never_retained() {
    let (broker, addr) = start().await;
    let deep = "/".repeat(65_000);
    for version in [V3, V5] {
        let mut connect = connect_with_will(version, &deep);
        if let Packet::Connect(c) = &mut connect {
            c.will.as_mut().expect("will").retain = true;
        }
        let (raw, first) = raw_connect_with(addr, version, &connect).await;
        match first {
            Some(Packet::ConnAck(ack)) => {
                assert_ne!(ack.reason, ConnectReason::Success, "{version:?}");
                if version == V5 {
                    assert_eq!(ack.reason, ConnectReason::TopicNameInvalid);
                }
            }
            None => {}
            other => panic!("expected a refusing CONNACK, got {other:?}"),
        }
        // Closing the socket would publish an accepted will.
        drop(raw);
    }
    assert_eq!(broker.stats().connects_refused, 2);
    let mut raw = raw_connected(addr, V3, "everything").await;
    assert_eq!(raw_subscribe(&mut raw, 1, "#", QoS::AtMostOnce).await, [0]);
    raw_ping(&mut raw).await;
    assert_eq!(broker.retained_count(), 0);
}
