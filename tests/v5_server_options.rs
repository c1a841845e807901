//! MQTT 5.0 server options, over raw sockets: Maximum QoS advertised and enforced, Request
//! Problem Information honoured (reason strings on refusals only when allowed), Response
//! Information from the configured prefix, and Server Reference with 0x9C / 0x9D; plus
//! rumqttc against a Maximum QoS.

mod clients;
mod common;

use std::net::SocketAddr;

use common::{disconnect_reason, raw_connect_with, raw_subscribe, Raw};
use warren::protocol::{
    self, reason, ConnAck, ConnectReason, Packet, ProtocolVersion, QoS, Subscribe,
    SubscriptionOptions,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Connects at 5.0 after `change` edits the CONNECT's properties; returns the CONNACK.
async fn connect(
    addr: SocketAddr,
    id: &str,
    change: impl FnOnce(&mut protocol::ConnectProperties),
) -> (Raw, ConnAck) {
    let mut packet = common::connect_packet(V5, id, true);
    if let Packet::Connect(c) = &mut packet {
        change(&mut c.properties);
    }
    match raw_connect_with(addr, V5, &packet).await {
        (raw, Some(Packet::ConnAck(ack))) => (raw, ack),
        (_, other) => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_qos_is_advertised_granted_and_enforced() {
    let (_broker, addr) = common::start_with(|c| c.mqtt.maximum_qos = 1).await;
    let (mut raw, ack) = connect(addr, "c", |_| {}).await;
    assert_eq!(ack.properties.maximum_qos, Some(1));
    assert_eq!(
        raw_subscribe(&mut raw, 1, "q/#", QoS::ExactlyOnce).await,
        [1],
        "granted the maximum"
    );
    common::raw_publish(&mut raw, "q/1", b"ok", QoS::AtLeastOnce, 1).await;
    raw.send(&common::publish_packet("q/2", b"x", QoS::ExactlyOnce, 2))
        .await;
    let mut seen = raw.until_closed().await;
    match seen.pop() {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason, reason::QOS_NOT_SUPPORTED);
            assert!(d.properties.reason_string.is_some(), "says why");
        }
        other => panic!("expected DISCONNECT 0x9B, got {other:?}"),
    }

    // A will above the maximum refuses the CONNECT.
    let mut packet = common::connect_packet(V5, "w", true);
    if let Packet::Connect(c) = &mut packet {
        c.will = Some(protocol::Will {
            topic: "w".into(),
            payload: Default::default(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Default::default(),
        });
    }
    match raw_connect_with(addr, V5, &packet).await.1 {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ConnectReason::QoSNotSupported),
        other => panic!("expected CONNACK 0x9B, got {other:?}"),
    }

    // rumqttc reads the Maximum QoS and its QoS 2 publish is refused by the broker.
    let mut sub = clients::V5::connect(addr, "rumqttc").await;
    let ack = sub.subscribe("r/#", clients::QoS5::ExactlyOnce).await;
    assert_eq!(
        ack.return_codes,
        [clients::p5::SubscribeReasonCode::Success(
            clients::QoS5::AtLeastOnce
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reason_strings_only_when_problem_information_is_allowed() {
    let (_broker, addr) = common::start_with(|c| c.mqtt.max_subscriptions_per_client = 1).await;
    let subscribe_two = Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![
            ("a".into(), SubscriptionOptions::default()),
            ("b".into(), SubscriptionOptions::default()),
        ],
        properties: Default::default(),
    });
    for (rpi, expected) in [(None, true), (Some(1), true), (Some(0), false)] {
        let (mut raw, _) = connect(addr, "c", |p| p.request_problem_information = rpi).await;
        raw.send(&subscribe_two).await;
        match raw.recv().await {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(ack.reasons, [0, reason::QUOTA_EXCEEDED]);
                assert_eq!(
                    ack.properties.reason_string.is_some(),
                    expected,
                    "request problem information {rpi:?}: {ack:?}"
                );
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
    // DISCONNECT always may say why.
    let (mut raw, _) = connect(addr, "d", |p| p.request_problem_information = Some(0)).await;
    raw.send(&Packet::Connect(Box::new(protocol::Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: "d".into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    })))
    .await;
    match raw.until_closed().await.pop() {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason, reason::PROTOCOL_ERROR);
            assert!(d.properties.reason_string.is_some());
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_information_from_the_prefix_when_requested() {
    let (_broker, addr) =
        common::start_with(|c| c.mqtt.response_information_prefix = "reply/".into()).await;
    let (_raw, ack) = connect(addr, "asker", |p| p.request_response_information = Some(1)).await;
    assert_eq!(
        ack.properties.response_information.as_deref(),
        Some("reply/asker")
    );
    let (_raw, ack) = connect(addr, "quiet", |_| {}).await;
    assert_eq!(ack.properties.response_information, None);
    let (_raw, ack) = connect(addr, "zero", |p| p.request_response_information = Some(0)).await;
    assert_eq!(ack.properties.response_information, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reference_sends_clients_elsewhere() {
    for (moved, code) in [
        (false, ConnectReason::UseAnotherServer),
        (true, ConnectReason::ServerMoved),
    ] {
        let (_broker, addr) = common::start_with(|c| {
            c.mqtt.server_reference = "mqtt2.example:1883".into();
            c.mqtt.server_moved = moved;
        })
        .await;
        let (mut raw, ack) = connect(addr, "c", |_| {}).await;
        assert_eq!(ack.reason, code);
        assert_eq!(
            ack.properties.server_reference.as_deref(),
            Some("mqtt2.example:1883")
        );
        assert!(raw.until_closed().await.is_empty());
        // 3.1.1: return code 3, server unavailable.
        let packet = common::connect_packet(ProtocolVersion::V3_1_1, "old", true);
        match raw_connect_with(addr, ProtocolVersion::V3_1_1, &packet)
            .await
            .1
        {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ConnectReason::ServerUnavailable),
            other => panic!("expected CONNACK 3, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_unavailable_is_refused_with_0x9a() {
    let (_broker, addr) = common::start_with(|c| c.mqtt.retain_available = false).await;
    let (mut raw, ack) = connect(addr, "c", |_| {}).await;
    assert_eq!(ack.properties.retain_available, Some(0));
    let mut packet = common::publish_packet("r", b"x", QoS::AtMostOnce, 0);
    if let Packet::Publish(p) = &mut packet {
        p.retain = true;
    }
    raw.send(&packet).await;
    assert_eq!(
        disconnect_reason(&mut raw).await,
        Some(reason::RETAIN_NOT_SUPPORTED)
    );
}

/// paho-mqtt in v5 mode reads Response Information, Topic Alias Maximum and Maximum QoS from
/// the CONNACK, is granted QoS 1 for a QoS 2 subscription, publishes with a topic alias, and
/// gets its messages on the right topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v5_reads_the_server_options() {
    let (_broker, addr) = common::start_with(|c| {
        c.mqtt.maximum_qos = 1;
        c.mqtt.response_information_prefix = "resp/".into();
    })
    .await;
    let out = common::python(
        "paho_v5_options.py",
        &[addr.ip().to_string(), addr.port().to_string()],
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        json["connack"],
        serde_json::json!({"reason": 0, "response_information": "resp/paho-v5",
            "topic_alias_maximum": 10, "maximum_qos": 1})
    );
    assert_eq!(json["granted"], serde_json::json!([1]));
    assert_eq!(
        json["received"],
        serde_json::json!([["p/x", "m0"], ["p/x", "m1"], ["p/x", "m2"]])
    );
}
