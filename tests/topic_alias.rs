//! MQTT 5.0 Topic Aliases in both directions, over raw sockets (the project's codec) so that
//! every alias and every topic name on the wire is seen: the server's Topic Alias Maximum
//! advertised and enforced (DISCONNECT 0x94), and aliases the server assigns within the
//! client's maximum, least recently used replaced first.

mod common;

use common::{disconnect_reason, raw_connected, raw_ping, raw_subscribe, Raw};
use warren::protocol::{self, reason, Packet, ProtocolVersion, Publish, QoS};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn aliased(topic: &str, alias: u16, payload: &[u8]) -> Packet {
    let mut packet = common::publish_packet(topic, payload, QoS::AtMostOnce, 0);
    if let Packet::Publish(p) = &mut packet {
        p.properties.topic_alias = Some(alias);
    }
    packet
}

/// Connects at 5.0 with `topic_alias_maximum` in CONNECT; returns the CONNACK's properties.
async fn connect_v5(
    addr: std::net::SocketAddr,
    client_id: &str,
    topic_alias_maximum: Option<u16>,
) -> (Raw, protocol::ConnAckProperties) {
    let mut connect = common::connect_packet(V5, client_id, true);
    if let Packet::Connect(c) = &mut connect {
        c.properties.topic_alias_maximum = topic_alias_maximum;
    }
    match common::raw_connect_with(addr, V5, &connect).await {
        (raw, Some(Packet::ConnAck(ack))) => {
            assert_eq!(ack.reason, protocol::ConnectReason::Success);
            (raw, ack.properties)
        }
        (_, other) => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn next_publish(raw: &mut Raw) -> Publish {
    match raw.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_aliases_are_resolved_and_bad_ones_refused() {
    let (_broker, addr) = common::start_with(|c| c.mqtt.topic_alias_maximum = 3).await;
    let mut sub = raw_connected(addr, ProtocolVersion::V3_1_1, "sub").await;
    raw_subscribe(&mut sub, 1, "a/#", QoS::AtMostOnce).await;

    let (mut publisher, props) = connect_v5(addr, "pub", None).await;
    assert_eq!(props.topic_alias_maximum, Some(3), "advertised in CONNACK");
    publisher.send(&aliased("a/one", 3, b"1")).await;
    publisher.send(&aliased("", 3, b"2")).await;
    publisher.send(&aliased("a/two", 3, b"3")).await;
    publisher.send(&aliased("", 3, b"4")).await;
    raw_ping(&mut publisher).await;
    for (topic, payload) in [
        ("a/one", b"1"),
        ("a/one", b"2"),
        ("a/two", b"3"),
        ("a/two", b"4"),
    ] {
        let p = next_publish(&mut sub).await;
        assert_eq!((&*p.topic, &p.payload[..]), (topic, &payload[..]));
    }

    // Above the maximum, 0, and an alias never set: DISCONNECT 0x94 Topic Alias invalid.
    // (Alias 0 by hand: the codec will not encode it.)
    let alias_0 = vec![0x30, 9, 0, 3, b'a', b'/', b'x', 3, 0x23, 0, 0];
    let encoded = |packet: Packet| {
        let mut out = bytes::BytesMut::new();
        protocol::encode(&packet, V5, protocol::MAX_PACKET_SIZE, &mut out).unwrap();
        out.to_vec()
    };
    let cases = [
        encoded(aliased("a/x", 4, b"")),
        alias_0,
        encoded(aliased("", 2, b"")),
    ];
    for (n, bad) in cases.into_iter().enumerate() {
        let (mut raw, _) = connect_v5(addr, &format!("bad{n}"), None).await;
        raw.send_bytes(&bad).await;
        assert_eq!(
            disconnect_reason(&mut raw).await,
            Some(reason::TOPIC_ALIAS_INVALID),
            "{bad:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_topic_alias_maximum_means_no_aliases() {
    let (_broker, addr) = common::start_with(|c| c.mqtt.topic_alias_maximum = 0).await;
    let (mut raw, props) = connect_v5(addr, "c", None).await;
    assert_eq!(props.topic_alias_maximum, None);
    raw.send(&aliased("a", 1, b"")).await;
    assert_eq!(
        disconnect_reason(&mut raw).await,
        Some(reason::TOPIC_ALIAS_INVALID)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_aliases_within_the_client_maximum_lru() {
    let (_broker, addr) = common::start().await;
    let (mut sub, _) = connect_v5(addr, "sub", Some(2)).await;
    raw_subscribe(&mut sub, 1, "t/#", QoS::AtLeastOnce).await;
    let (mut plain, _) = connect_v5(addr, "plain", None).await;
    raw_subscribe(&mut plain, 1, "t/#", QoS::AtMostOnce).await;
    let mut publisher = raw_connected(addr, ProtocolVersion::V3_1_1, "pub").await;
    let topics = ["t/1", "t/1", "t/2", "t/1", "t/3", "t/2", "t/3"];
    for topic in topics {
        common::raw_publish(&mut publisher, topic, topic.as_bytes(), QoS::AtMostOnce, 0).await;
    }
    // (topic on the wire, alias): t/3 takes t/2's alias (t/1 was used since), then t/2 takes
    // t/1's, and t/3 is known.
    let expected = [
        ("t/1", 1),
        ("", 1),
        ("t/2", 2),
        ("", 1),
        ("t/3", 2),
        ("t/2", 1),
        ("", 2),
    ];
    for (topic, (wire, alias)) in topics.iter().zip(expected) {
        let p = next_publish(&mut sub).await;
        assert_eq!(&p.payload[..], topic.as_bytes());
        assert_eq!((&*p.topic, p.properties.topic_alias), (wire, Some(alias)));
        if p.qos != QoS::AtMostOnce {
            sub.send(&Packet::PubAck(protocol::PubResp::new(p.pkid)))
                .await;
        }
    }
    // A client that set no Topic Alias Maximum gets whole topics only.
    for topic in topics {
        let p = next_publish(&mut plain).await;
        assert_eq!((&*p.topic, p.properties.topic_alias), (topic, None));
    }
}
