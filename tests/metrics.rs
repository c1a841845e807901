//! The metrics listener and `$SYS`: what an operator scraping Warren, or an MQTT client
//! watching `$SYS/broker/#`, sees.

mod clients;
mod common;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::protocol::{Packet, ProtocolVersion, QoS};

use clients::{publish, raw_subscribe, resp};
use common::{raw_connected, start, start_with, within};

/// GETs `path` over plain HTTP/1.1; returns (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    within(async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    })
    .await
}

/// The value of the sample line `name{labels}` (labels exactly as rendered), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_and_unknown_paths_are_404() {
    let (broker, _) = start().await;
    let addr = broker.metrics_addr().expect("metrics enabled by default");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    assert_eq!(get(addr, "/nope").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_metrics_bind_is_loopback_and_answers_there() {
    // The default address, on a free port: the listener is on 127.0.0.1 only.
    let (broker, _) = start_with(|c| {
        c.metrics.bind = warren::Config::default().metrics.bind;
        c.metrics.bind.set_port(0);
    })
    .await;
    let addr = broker.metrics_addr().expect("metrics enabled by default");
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST, "bound to {addr}");
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("warren_uptime_seconds"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_messages_and_drops() {
    let (broker, addr) = start().await;
    let metrics = broker.metrics_addr().unwrap();

    let mut sub = raw_connected(addr, ProtocolVersion::V3_1_1, "sub").await;
    raw_subscribe(&mut sub, 1, &[("m/#", QoS::AtLeastOnce)]).await;
    let mut publisher = raw_connected(addr, ProtocolVersion::V5, "pub").await;
    publisher
        .send(&publish("m/1", b"hello", QoS::AtLeastOnce, 7, false))
        .await;
    match publisher.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, 7),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    match sub.recv().await {
        Some(Packet::Publish(p)) => sub.send(&Packet::PubAck(resp(p.pkid))).await,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    // A publish nobody subscribed to, and a malformed packet from a third client.
    publisher
        .send(&publish("nobody/here", b"x", QoS::AtMostOnce, 0, false))
        .await;
    let mut bad = raw_connected(addr, ProtocolVersion::V3_1_1, "bad").await;
    bad.send_bytes(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]).await;
    assert_eq!(bad.until_closed().await, Vec::<Packet>::new());
    common::eventually(|| broker.stats().dropped_no_subscribers == 1).await;
    // The PING round trip orders the subscriber's PUBACK before the scrape.
    sub.send(&Packet::PingReq).await;
    assert_eq!(sub.recv().await, Some(Packet::PingResp));

    let (status, body) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    let value =
        |series: &str| sample(&body, series).unwrap_or_else(|| panic!("{series} missing:\n{body}"));
    assert_eq!(
        value(r#"warren_connections{listener="tcp",protocol="3.1.1"}"#),
        1.0,
        "bad left"
    );
    assert_eq!(
        value(r#"warren_connections{listener="tcp",protocol="5.0"}"#),
        1.0
    );
    assert_eq!(
        value(r#"warren_connections_total{listener="tcp",protocol="3.1.1"}"#),
        2.0
    );
    assert_eq!(value(r#"warren_messages_received_total{qos="1"}"#), 1.0);
    assert_eq!(value(r#"warren_messages_received_total{qos="0"}"#), 1.0);
    assert_eq!(value(r#"warren_messages_delivered_total{qos="1"}"#), 1.0);
    assert_eq!(
        value(r#"warren_messages_dropped_total{reason="no_subscribers",qos="0"}"#),
        1.0
    );
    assert_eq!(
        value(r#"warren_messages_dropped_total{reason="no_subscribers",qos="1"}"#),
        0.0
    );
    assert_eq!(value("warren_malformed_packets_total"), 1.0);
    assert_eq!(
        value(r#"warren_packets_received_total{type="puback"}"#),
        1.0
    );
    assert_eq!(value(r#"warren_packets_sent_total{type="suback"}"#), 1.0);
    assert_eq!(value("warren_subscriptions"), 1.0);
    assert_eq!(value(r#"warren_sessions{state="online"}"#), 2.0);
    assert_eq!(value("warren_inflight_messages"), 0.0, "acknowledged");
    assert!(value("warren_received_bytes_total") > 0.0);
    assert!(value("warren_open_files_limit") > 0.0);
    assert!(
        value("warren_delivery_latency_seconds_count") >= 1.0,
        "latency histogram sampled:\n{body}"
    );
    assert!(body.contains("warren_delivery_latency_seconds_bucket{le=\"0.001\"}"));
    assert!(body.contains("# HELP warren_messages_dropped_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_and_inflight_gauges_follow_a_slow_subscriber() {
    let (broker, addr) = start_with(|c| c.mqtt.max_inflight = 2).await;
    let mut sub = raw_connected(addr, ProtocolVersion::V3_1_1, "slow").await;
    raw_subscribe(&mut sub, 1, &[("q", QoS::AtLeastOnce)]).await;
    let mut publisher = raw_connected(addr, ProtocolVersion::V3_1_1, "fast").await;
    for pkid in 1..=5 {
        publisher
            .send(&publish("q", b"x", QoS::AtLeastOnce, pkid, false))
            .await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    }
    // Two in flight (never acknowledged), three queued.
    for _ in 0..2 {
        assert!(matches!(sub.recv().await, Some(Packet::Publish(_))));
    }
    let metrics = broker.metrics_addr().unwrap();
    let (_, body) = get(metrics, "/metrics").await;
    assert_eq!(
        sample(&body, "warren_inflight_messages"),
        Some(2.0),
        "{body}"
    );
    assert_eq!(sample(&body, "warren_queued_messages"), Some(3.0), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_can_be_disabled() {
    let (broker, _) = start_with(|c| c.metrics.enabled = false).await;
    assert_eq!(broker.metrics_addr(), None);
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_are_published_retained_in_mosquitto_naming() {
    let (broker, addr) = start_with(|c| c.metrics.sys_interval_secs = 1).await;
    let mut client = raw_connected(addr, ProtocolVersion::V3_1_1, "watcher").await;
    // `#` does not match `$SYS`; `$SYS/broker/#` does.
    raw_subscribe(&mut client, 1, &[("$SYS/broker/#", QoS::AtMostOnce)]).await;
    let mut seen = std::collections::BTreeMap::new();
    within(async {
        // The first update may predate this client (retained "0"); the next one counts it.
        while !(seen
            .get("$SYS/broker/clients/connected")
            .map(String::as_str)
            == Some("1")
            && seen.contains_key("$SYS/broker/version")
            && seen.contains_key("$SYS/broker/uptime"))
        {
            if let Some(Packet::Publish(p)) = client.recv().await {
                seen.insert(
                    p.topic.to_string(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                );
            }
        }
    })
    .await;
    assert_eq!(seen["$SYS/broker/clients/connected"], "1");
    assert!(seen["$SYS/broker/version"].starts_with("warren "));
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
    // The update that carried these may still be storing its later topics.
    common::eventually(|| broker.retained_count() >= 10).await;
    drop(client);

    // A later subscriber gets them at once, with the retain flag.
    let mut late = raw_connected(addr, ProtocolVersion::V3_1_1, "late").await;
    raw_subscribe(&mut late, 1, &[("$SYS/broker/version", QoS::AtMostOnce)]).await;
    match late.recv().await {
        Some(Packet::Publish(p)) => assert!(p.retain),
        other => panic!("expected retained $SYS/broker/version, got {other:?}"),
    }
}
