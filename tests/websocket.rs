//! MQTT over WebSocket: byte-level cases with a raw frame client (packets split across frames,
//! several packets in one frame, fragmented messages, ping/pong, close, refusals and limits),
//! and paho-mqtt's websockets transport over ws and wss. The browser test is `browser.rs`.

mod clients;
mod common;

use std::net::SocketAddr;

use clients::TestPki;
use common::ws::{frame, packets_frame, WsRaw};
use common::*;
use warren::config::{ClientAuth, Config, ListenerConfig, ListenerKind};
use warren::protocol::{self, Packet, ProtocolVersion, QoS};
use warren::BrokerHandle;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn listener(kind: ListenerKind) -> ListenerConfig {
    ListenerConfig {
        kind,
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ListenerConfig::default()
    }
}

/// A broker with the "tcp" listener and a "ws" one; `change` may add more.
async fn start_ws(change: impl FnOnce(&mut Config)) -> (BrokerHandle, SocketAddr, SocketAddr) {
    let (broker, tcp) = start_with(|c| {
        c.listeners.insert("ws".into(), listener(ListenerKind::Ws));
        change(c);
        c.validate().expect("valid test config");
    })
    .await;
    let ws = broker.local_addr("ws").expect("ws listener");
    (broker, tcp, ws)
}

fn subscribe(filter: &str, pkid: u16) -> Packet {
    Packet::Subscribe(protocol::Subscribe {
        pkid,
        filters: vec![(
            filter.into(),
            protocol::SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
        properties: Default::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_split_across_frames_and_batched_in_one() {
    let (_broker, tcp, ws_addr) = start_ws(|_| {}).await;
    let mut ws = WsRaw::open(ws_addr, V5).await;
    // CONNECT cut into three pieces: a binary frame, then a fragmented message of two frames.
    let mut connect = bytes::BytesMut::new();
    protocol::encode(
        &connect_packet(V5, "ws-split", true),
        V5,
        protocol::MAX_PACKET_SIZE,
        &mut connect,
    )
    .unwrap();
    let mut bytes = frame(0x82, &connect[..3]);
    bytes.extend(frame(0x02, &connect[3..9]));
    bytes.extend(frame(0x80, &connect[9..]));
    ws.send_bytes(&bytes).await;
    match ws.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, protocol::ConnectReason::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // SUBSCRIBE, a QoS 1 PUBLISH to itself and PINGREQ in one frame.
    ws.send(&[
        subscribe("ws/#", 1),
        publish_packet("ws/self", b"hello", QoS::AtLeastOnce, 2),
        Packet::PingReq,
    ])
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        match ws.recv().await.expect("a packet") {
            Packet::SubAck(ack) => seen.push(format!("suback {:?}", ack.reasons)),
            Packet::PubAck(ack) => seen.push(format!("puback {}", ack.pkid)),
            Packet::Publish(p) => {
                seen.push(format!("publish {} {:?}", p.topic, p.payload));
                ws.send(&[Packet::PubAck(protocol::PubResp::new(p.pkid))])
                    .await;
            }
            Packet::PingResp => seen.push("pingresp".into()),
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "pingresp",
            "puback 2",
            "publish ws/self b\"hello\"",
            "suback [1]"
        ]
    );

    // TCP → WebSocket, with a payload that needs a 64-bit frame length.
    let mut publisher = raw_connected(tcp, V3, "tcp-pub").await;
    let big = vec![7u8; 70_000];
    raw_publish(&mut publisher, "ws/big", &big, QoS::AtLeastOnce, 1).await;
    match ws.recv().await {
        Some(Packet::Publish(p)) => {
            assert_eq!((&*p.topic, p.payload.len()), ("ws/big", big.len()));
            ws.send(&[Packet::PubAck(protocol::PubResp::new(p.pkid))])
                .await;
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    // WebSocket → TCP.
    raw_subscribe(&mut publisher, 2, "tcp/#", QoS::AtMostOnce).await;
    ws.send(&[publish_packet("tcp/x", b"from ws", QoS::AtMostOnce, 0)])
        .await;
    match publisher.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"from ws"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_and_close_is_echoed() {
    let (_broker, _tcp, ws_addr) = start_ws(|_| {}).await;
    let mut ws = WsRaw::connected(ws_addr, V3, "ws-ping").await;
    ws.send_bytes(&frame(0x89, b"are you there")).await;
    assert_eq!(
        ws.recv_frame().await,
        Some((0x8A, b"are you there".to_vec()))
    );
    // MQTT still works after it.
    ws.send(&[Packet::PingReq]).await;
    assert!(matches!(ws.recv().await, Some(Packet::PingResp)));
    ws.send_bytes(&frame(0x88, &1001u16.to_be_bytes())).await;
    assert_eq!(
        ws.recv_frame().await,
        Some((0x88, 1001u16.to_be_bytes().to_vec()))
    );
    assert_eq!(ws.recv_frame().await, None);

    // DISCONNECT: the server ends with a Close (1000) of its own.
    let mut ws = WsRaw::connected(ws_addr, V5, "ws-bye").await;
    ws.send(&[Packet::Disconnect(Default::default())]).await;
    assert_eq!(
        ws.recv_frame().await,
        Some((0x88, 1000u16.to_be_bytes().to_vec()))
    );
    assert_eq!(ws.recv_frame().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_and_frames_that_are_refused() {
    let (broker, _tcp, ws_addr) = start_ws(|c| c.mqtt.max_packet_size = 1000).await;
    let (_, head) = WsRaw::upgrade(ws_addr, "/other", "mqtt", V3).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (_, head) = WsRaw::upgrade(ws_addr, "/mqtt", "chat, superchat", V3).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let mut ws = WsRaw {
        stream: tokio::net::TcpStream::connect(ws_addr).await.unwrap(),
        buf: Default::default(),
        mqtt: Default::default(),
        version: V3,
    };
    let huge = format!("GET /mqtt HTTP/1.1\r\nCookie: {}\r\n", "c".repeat(9000));
    ws.send_bytes(huge.as_bytes()).await;
    let head = ws.read_head().await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // No subprotocol offered: none chosen, and MQTT works.
    let (mut plain, head) = WsRaw::upgrade(ws_addr, "/mqtt", "", V3).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head.to_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
    plain.send(&[connect_packet(V3, "ws-noproto", true)]).await;
    assert!(matches!(plain.recv().await, Some(Packet::ConnAck(_))));
    let (_, head) = WsRaw::upgrade(ws_addr, "/mqtt", "mqttv3.1", V3).await;
    assert!(
        head.to_lowercase()
            .contains("sec-websocket-protocol: mqttv3.1"),
        "{head}"
    );

    // A text frame: Close 1003 and the end.
    let mut ws = WsRaw::connected(ws_addr, V3, "ws-text").await;
    ws.send_bytes(&frame(0x81, b"\x0c\x00")).await;
    assert_eq!(
        ws.recv_frame().await,
        Some((0x88, 1003u16.to_be_bytes().to_vec()))
    );
    assert_eq!(ws.recv_frame().await, None);
    // A frame over the packet limit: Close 1009, refused from its header.
    let mut ws = WsRaw::connected(ws_addr, V3, "ws-big").await;
    ws.send_bytes(&frame(0x82, &[0u8; 1001])[..20]).await;
    assert_eq!(
        ws.recv_frame().await,
        Some((0x88, 1009u16.to_be_bytes().to_vec()))
    );
    assert_eq!(ws.recv_frame().await, None);
    // An unmasked frame: Close 1002.
    let mut ws = WsRaw::connected(ws_addr, V3, "ws-unmasked").await;
    let mut unmasked = packets_frame(&[Packet::PingReq], V3);
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    ws.send_bytes(&unmasked).await;
    assert_eq!(
        ws.recv_frame().await,
        Some((0x88, 1002u16.to_be_bytes().to_vec()))
    );
    // A bad frame before CONNECT is refused the same way.
    let (mut early, head) = WsRaw::upgrade(ws_addr, "/mqtt", "mqtt", V3).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    early.send_bytes(&frame(0x81, b"\x10\x00")).await;
    assert_eq!(
        early.recv_frame().await,
        Some((0x88, 1003u16.to_be_bytes().to_vec()))
    );
    // Each bad frame is counted (and logged) as malformed input.
    eventually(|| broker.stats().malformed_packets == 4).await;

    eventually(|| {
        broker
            .stats()
            .rejected_by
            .get(&(Box::from("ws"), "websocket_upgrade"))
            .copied()
            == Some(3)
    })
    .await;
    let metrics = broker.render_metrics();
    assert!(
        metrics.contains(
            "warren_connections_rejected_total{listener=\"ws\",reason=\"websocket_upgrade\"} 3"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_over_ws_and_wss() {
    let pki = TestPki::generate("wss");
    let tls = pki.server_tls(ClientAuth::None);
    let (broker, _tcp, ws_addr) = start_ws(|c| {
        c.listeners.insert(
            "wss".into(),
            ListenerConfig {
                tls: Some(tls),
                path: Some("/secure/mqtt".into()),
                ..listener(ListenerKind::Wss)
            },
        );
    })
    .await;
    let wss_addr = broker.local_addr("wss").expect("wss listener");
    let ca = pki.ca_path().display().to_string();
    for (addr, path, ca) in [(ws_addr, "/mqtt", "-"), (wss_addr, "/secure/mqtt", &ca)] {
        let args = [
            "localhost".to_owned(),
            addr.port().to_string(),
            path.to_owned(),
            ca.to_owned(),
            "200".to_owned(),
        ];
        let out = python("paho_ws.py", &args).await;
        assert_eq!(out.trim(), r#"{"received": 201, "acked": 201}"#, "{path}");
    }
}
