//! Listener limits and the PROXY protocol: the client address from a v1 or v2 header is the
//! one limits use; a malformed or missing header closes the connection (one cut short too); the connection rate per
//! source address closes what is over it at accept; every refusal is counted.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use common::ws::WsRaw;
use common::*;
use warren::config::{ListenerConfig, ListenerKind};
use warren::protocol::{self, Packet, ProtocolVersion};
use warren::BrokerHandle;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A broker whose "tcp" listener is changed by `change`.
async fn start_listener(change: impl FnOnce(&mut ListenerConfig)) -> (BrokerHandle, SocketAddr) {
    start_with(|c| {
        change(c.listeners.get_mut("tcp").unwrap());
        c.validate().expect("valid test config");
    })
    .await
}

fn connect_bytes(id: &str) -> BytesMut {
    let mut out = BytesMut::new();
    protocol::encode(
        &connect_packet(V3, id, true),
        V3,
        protocol::MAX_PACKET_SIZE,
        &mut out,
    )
    .unwrap();
    out
}

/// Sends `prefix` and CONNECT in one write; true if a CONNACK came back.
async fn connects_after(addr: SocketAddr, prefix: &[u8], id: &str) -> bool {
    let mut raw = Raw::connect(addr, V3).await;
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(&connect_bytes(id));
    raw.send_bytes(&bytes).await;
    matches!(raw.recv().await, Some(Packet::ConnAck(_)))
}

fn v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 1883\r\n").into_bytes()
}

fn v2(source: [u8; 4]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    out.extend_from_slice(&source);
    out.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0x07, 0x5b]);
    out
}

fn rejected(broker: &BrokerHandle, listener: &str, reason: &'static str) -> u64 {
    broker
        .stats()
        .rejected_by
        .get(&(Box::from(listener), reason))
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_good_malformed_and_missing() {
    let (broker, addr) = start_listener(|l| {
        l.proxy_protocol = true;
        // One connection per source address (for ten seconds): shows which address counts.
        l.max_connection_rate = 1;
        l.max_connection_burst = 1;
    })
    .await;
    let started = Instant::now();
    assert!(connects_after(addr, &v1("192.0.2.1"), "v1-a").await);
    assert!(connects_after(addr, &v2([192, 0, 2, 2]), "v2-b").await);
    // The TCP peer (127.0.0.1) is the same each time: only the header's address is limited.
    if started.elapsed().as_millis() < 900 {
        assert!(!connects_after(addr, &v1("192.0.2.1"), "v1-a-again").await);
        assert!(!connects_after(addr, &v2([192, 0, 2, 2]), "v2-b-again").await);
        assert_eq!(rejected(&broker, "tcp", "rate_limited"), 2);
    }
    // A proxy's own connection (v2 LOCAL) keeps the TCP peer's address.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    assert!(connects_after(addr, local, "local").await);

    // Malformed, missing, and cut short: closed without a CONNACK, counted.
    assert!(!connects_after(addr, b"PROXY TCP4 192.0.2.300 127.0.0.1 1 2\r\n", "bad").await);
    assert!(!connects_after(addr, b"", "missing").await);
    eventually(|| rejected(&broker, "tcp", "proxy_header") == 2).await;
    // Cut short: counted apart.
    let mut raw = Raw::connect(addr, V3).await;
    raw.send_bytes(b"PROXY TCP4 192.0.2.9").await;
    drop(raw);
    eventually(|| rejected(&broker, "tcp", "closed_early") == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_before_a_websocket_upgrade() {
    let (broker, _) = start_with(|c| {
        c.listeners.insert(
            "ws".into(),
            ListenerConfig {
                kind: ListenerKind::Ws,
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                proxy_protocol: true,
                ..ListenerConfig::default()
            },
        );
    })
    .await;
    let addr = broker.local_addr("ws").unwrap();
    let mut ws = WsRaw {
        stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
        buf: BytesMut::new(),
        mqtt: BytesMut::new(),
        version: V3,
    };
    // Header, upgrade request and the first frame in one write: nothing after the header may
    // be lost to it.
    let mut bytes = v2([198, 51, 100, 7]);
    bytes.extend_from_slice(common::ws::upgrade_request("/mqtt", "mqtt").as_bytes());
    bytes.extend(common::ws::packets_frame(
        &[connect_packet(V3, "proxied-ws", true)],
        V3,
    ));
    ws.send_bytes(&bytes).await;
    let head = ws.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_rate_per_address_closes_the_excess_at_accept() {
    let (broker, addr) = start_listener(|l| {
        l.max_connection_rate = 1;
        l.max_connection_burst = 2;
    })
    .await;
    let started = Instant::now();
    let mut accepted = 0;
    for i in 0..5 {
        if connects_after(addr, b"", &format!("rate-{i}")).await {
            accepted += 1;
        }
    }
    // The burst, plus one a second for however long this took.
    let allowed = 2 + started.elapsed().as_secs();
    assert!(accepted >= 2 && accepted <= allowed, "{accepted} accepted");
    assert_eq!(rejected(&broker, "tcp", "rate_limited"), 5 - accepted);
    let metrics = broker.render_metrics();
    assert!(
        metrics.contains(
            "warren_connections_rejected_total{listener=\"tcp\",reason=\"rate_limited\"}"
        ),
        "{metrics}"
    );
}
