//! Retained messages: stored, sent on subscribe with the retain flag, replaced, cleared by an
//! empty payload, matched by wildcard filters, delivered at min(published, granted) QoS; live
//! deliveries carry retain 0 on 3.1.1.

mod clients;
mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use clients::{is_publish_on, publishes, raw_subscribe, raw_until, V4};
use common::Raw;
use rumqttc::QoS;
use warren::protocol::{Packet, ProtocolVersion, Publish, QoS as WQoS};

/// A client id not used before in this process.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Publishes `payload` retained on `topic` at `qos` from a raw client and waits for the ack,
/// so the store is updated when this returns.
async fn publish_retained(addr: std::net::SocketAddr, topic: &str, payload: &[u8], qos: WQoS) {
    let mut publisher =
        common::raw_connected(addr, ProtocolVersion::V3_1_1, &unique("retainer")).await;
    let pkid = if qos == WQoS::AtMostOnce { 0 } else { 1 };
    publisher
        .send(&clients::publish(topic, payload, qos, pkid, true))
        .await;
    match qos {
        // No ack at QoS 0: a PINGREQ round trip shows the PUBLISH was handled.
        WQoS::AtMostOnce => assert!(clients::raw_ping(&mut publisher).await.is_empty()),
        WQoS::AtLeastOnce => assert_eq!(
            publisher.recv().await,
            Some(Packet::PubAck(clients::resp(1)))
        ),
        WQoS::ExactlyOnce => {
            assert_eq!(
                publisher.recv().await,
                Some(Packet::PubRec(clients::resp(1)))
            );
            publisher.send(&Packet::PubRel(clients::resp(1))).await;
            assert_eq!(
                publisher.recv().await,
                Some(Packet::PubComp(clients::resp(1)))
            );
        }
    }
}

/// Subscribes a fresh raw client to `filter` (plus `marker`) at `qos`, has a non-retained
/// marker published, and returns the PUBLISH packets that came before it.
async fn retained_on_subscribe(
    addr: std::net::SocketAddr,
    id: &str,
    filter: &str,
    qos: WQoS,
) -> Vec<Publish> {
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, id).await;
    let ack = raw_subscribe(&mut sub, 1, &[(filter, qos), ("marker", WQoS::AtMostOnce)]).await;
    assert_eq!(ack.reasons, vec![qos as u8, 0]);
    publish_marker(addr).await;
    until_marker(&mut sub).await
}

async fn publish_marker(addr: std::net::SocketAddr) {
    let mut publisher =
        common::raw_connected(addr, ProtocolVersion::V3_1_1, &unique("marker")).await;
    publisher
        .send(&clients::publish(
            "marker",
            b"m",
            WQoS::AtLeastOnce,
            1,
            false,
        ))
        .await;
    assert_eq!(
        publisher.recv().await,
        Some(Packet::PubAck(clients::resp(1)))
    );
}

async fn until_marker(sub: &mut Raw) -> Vec<Publish> {
    let seen = raw_until(sub, |p| is_publish_on(p, "marker")).await;
    let mut got: Vec<Publish> = publishes(&seen).into_iter().cloned().collect();
    let marker = got.pop().unwrap();
    assert!(!marker.retain, "the live marker carries retain 0");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_is_sent_on_subscribe_with_retain_set() {
    let (broker, addr) = common::start().await;
    assert_eq!(broker.retained_count(), 0);
    publish_retained(addr, "r/t", b"kept", WQoS::AtLeastOnce).await;
    assert_eq!(broker.retained_count(), 1);

    // A real client sees it too.
    let mut sub = V4::connect(addr, "late").await;
    sub.subscribe("r/t", QoS::AtLeastOnce).await;
    let got = sub.next_publish().await;
    assert_eq!(got.topic, "r/t");
    assert_eq!(&got.payload[..], b"kept");
    assert!(
        got.retain,
        "a retained message sent on subscribe has retain 1"
    );
    assert_eq!(got.qos, QoS::AtLeastOnce);

    // Exactly once per subscribe.
    let got = retained_on_subscribe(addr, "late-raw", "r/t", WQoS::AtLeastOnce).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&got[0].payload[..], b"kept");
    assert!(got[0].retain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_retained_message_replaces_the_older() {
    let (broker, addr) = common::start().await;
    publish_retained(addr, "r/t", b"old", WQoS::AtMostOnce).await;
    publish_retained(addr, "r/t", b"new", WQoS::AtMostOnce).await;
    assert_eq!(broker.retained_count(), 1);
    let got = retained_on_subscribe(addr, "s", "r/t", WQoS::AtMostOnce).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&got[0].payload[..], b"new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_retained_payload_clears_the_topic() {
    let (broker, addr) = common::start().await;
    publish_retained(addr, "r/gone", b"here", WQoS::AtLeastOnce).await;
    publish_retained(addr, "r/stays", b"still", WQoS::AtLeastOnce).await;
    assert_eq!(broker.retained_count(), 2);

    publish_retained(addr, "r/gone", b"", WQoS::AtLeastOnce).await;
    assert_eq!(broker.retained_count(), 1);
    let got = retained_on_subscribe(addr, "s", "r/gone", WQoS::AtLeastOnce).await;
    assert!(got.is_empty(), "cleared topic still delivered: {got:?}");
    let got = retained_on_subscribe(addr, "s2", "r/#", WQoS::AtLeastOnce).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].topic, "r/stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_retained_payload_is_still_delivered_live() {
    // MQTT-3.3.1-10: a zero-byte retained PUBLISH is delivered to current subscribers as normal.
    let (_broker, addr) = common::start().await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "live").await;
    raw_subscribe(
        &mut sub,
        1,
        &[("r/t", WQoS::AtMostOnce), ("marker", WQoS::AtMostOnce)],
    )
    .await;
    publish_retained(addr, "r/t", b"", WQoS::AtMostOnce).await;
    publish_marker(addr).await;
    let got = until_marker(&mut sub).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].payload.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_sent_for_wildcard_subscriptions() {
    let (broker, addr) = common::start().await;
    for topic in [
        "home/kitchen/temp",
        "home/hall/temp",
        "home/kitchen/light",
        "office/temp",
    ] {
        publish_retained(addr, topic, topic.as_bytes(), WQoS::AtMostOnce).await;
    }
    assert_eq!(broker.retained_count(), 4);

    let mut topics: Vec<String> = retained_on_subscribe(addr, "a", "home/+/temp", WQoS::AtMostOnce)
        .await
        .iter()
        .inspect(|p| assert!(p.retain))
        .map(|p| p.topic.to_string())
        .collect();
    topics.sort();
    assert_eq!(topics, ["home/hall/temp", "home/kitchen/temp"]);

    let mut topics: Vec<String> = retained_on_subscribe(addr, "b", "home/#", WQoS::AtMostOnce)
        .await
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        ["home/hall/temp", "home/kitchen/light", "home/kitchen/temp"]
    );

    let got = retained_on_subscribe(addr, "c", "#", WQoS::AtMostOnce).await;
    assert_eq!(got.len(), 4, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_deliveries_have_retain_cleared_on_v311() {
    let (_broker, addr) = common::start().await;
    let mut sub = V4::connect(addr, "live").await;
    sub.subscribe("r/live", QoS::AtLeastOnce).await;
    let publisher = V4::connect(addr, "pub").await;
    publisher
        .publish("r/live", QoS::AtLeastOnce, true, b"now")
        .await;
    let got = sub.next_publish().await;
    assert_eq!(&got.payload[..], b"now");
    assert!(
        !got.retain,
        "MQTT-3.3.1-9: a message sent to an existing subscription has retain 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_count_follows_the_store() {
    let (broker, addr) = common::start().await;
    assert_eq!(broker.retained_count(), 0);
    publish_retained(addr, "c/1", b"1", WQoS::AtLeastOnce).await;
    publish_retained(addr, "c/2", b"2", WQoS::AtLeastOnce).await;
    publish_retained(addr, "c/2", b"2b", WQoS::AtLeastOnce).await;
    assert_eq!(broker.retained_count(), 2);
    publish_retained(addr, "c/1", b"", WQoS::AtLeastOnce).await;
    assert_eq!(broker.retained_count(), 1);
    // Clearing a topic that has nothing retained changes nothing.
    publish_retained(addr, "c/none", b"", WQoS::AtLeastOnce).await;
    assert_eq!(broker.retained_count(), 1);
    // A non-retained publish is not stored.
    let p = V4::connect(addr, "plain").await;
    p.publish("c/3", QoS::AtMostOnce, false, b"3").await;
    publish_retained(addr, "c/2", b"2c", WQoS::AtLeastOnce).await;
    assert_eq!(broker.retained_count(), 1);
}

async fn retained_delivery_qos(published: WQoS, granted: WQoS) -> WQoS {
    let (_broker, addr) = common::start().await;
    publish_retained(addr, "q/t", b"q", published).await;
    let got = retained_on_subscribe(addr, "s", "q/t", granted).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].retain);
    got[0].qos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_qos_is_min_of_published_and_granted() {
    use WQoS::*;
    for (published, granted, expected) in [
        (ExactlyOnce, AtMostOnce, AtMostOnce),
        (ExactlyOnce, AtLeastOnce, AtLeastOnce),
        (AtLeastOnce, ExactlyOnce, AtLeastOnce),
        (AtMostOnce, ExactlyOnce, AtMostOnce),
        (ExactlyOnce, ExactlyOnce, ExactlyOnce),
    ] {
        assert_eq!(
            retained_delivery_qos(published, granted).await,
            expected,
            "published {published:?}, granted {granted:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_dollar_topics_are_not_sent_for_leading_wildcards() {
    let (broker, addr) = common::start().await;
    publish_retained(addr, "$SYS/broker/info", b"sys", WQoS::AtMostOnce).await;
    publish_retained(addr, "plain/info", b"plain", WQoS::AtMostOnce).await;
    assert_eq!(broker.retained_count(), 2);

    let got = retained_on_subscribe(addr, "all", "#", WQoS::AtMostOnce).await;
    let topics: Vec<_> = got.iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(topics, ["plain/info"]);
    let got = retained_on_subscribe(addr, "plus", "+/info", WQoS::AtMostOnce).await;
    let topics: Vec<_> = got.iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(topics, ["plain/info"]);
    let got = retained_on_subscribe(addr, "sys", "$SYS/#", WQoS::AtMostOnce).await;
    let topics: Vec<_> = got.iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(topics, ["$SYS/broker/info"]);
}

/// Publishes `count` retained messages `ret/<i>` of `size` bytes from one client.
async fn publish_many_retained(addr: std::net::SocketAddr, count: usize, size: usize, qos: WQoS) {
    let mut publisher = common::raw_connected(addr, ProtocolVersion::V3_1_1, "many").await;
    let payload = vec![b'r'; size];
    for i in 0..count {
        let pkid = if qos == WQoS::AtMostOnce { 0 } else { 1 };
        publisher
            .send(&clients::publish(
                &format!("ret/{i}"),
                &payload,
                qos,
                pkid,
                true,
            ))
            .await;
        if qos != WQoS::AtMostOnce {
            assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
        }
    }
    clients::raw_ping(&mut publisher).await;
}

/// The old core pushed retained messages through the session queue: a QoS 0 subscriber to
/// `ret/#` over 2,000 retained topics got 163 of them (100 KiB payloads), silently. They go
/// out as the subscriber's socket drains: all of them, even when it reads slowly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retained_message_reaches_a_slow_qos0_subscriber() {
    let (broker, addr) = common::start_with(|c| c.mqtt.max_queued_messages = 10).await;
    publish_many_retained(addr, 2000, 10 * 1024, WQoS::AtMostOnce).await;
    assert_eq!(broker.retained_count(), 2000);
    let mut sub = common::raw_small_window(addr, ProtocolVersion::V3_1_1).await;
    sub.send(&common::connect_packet(
        ProtocolVersion::V3_1_1,
        "slow-reader",
        true,
    ))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::ConnAck(_))));
    raw_subscribe(&mut sub, 1, &[("ret/#", WQoS::AtMostOnce)]).await;
    let mut topics = std::collections::HashSet::new();
    while topics.len() < 2000 {
        match sub.recv().await {
            Some(Packet::Publish(p)) => {
                assert!(p.retain);
                topics.insert(p.topic.to_string());
            }
            other => panic!("after {} retained messages: {other:?}", topics.len()),
        }
    }
    assert_eq!(broker.stats().dropped_queue_full, 0);
}

/// At QoS 1 the retained set is sent through the inflight window as acknowledgements come,
/// without ever going past the queue limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_at_qos1_respect_the_window_and_the_queue() {
    let (broker, addr) = common::start_with(|c| {
        c.mqtt.max_queued_messages = 10;
        c.mqtt.max_inflight = 4;
    })
    .await;
    publish_many_retained(addr, 500, 100, WQoS::AtLeastOnce).await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "qos1-reader").await;
    raw_subscribe(&mut sub, 1, &[("ret/#", WQoS::AtLeastOnce)]).await;
    let mut topics = std::collections::HashSet::new();
    while topics.len() < 500 {
        match sub.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!(p.qos, WQoS::AtLeastOnce);
                assert!(broker.queued().0 <= 10);
                topics.insert(p.topic.to_string());
                sub.send(&Packet::PubAck(clients::resp(p.pkid))).await;
            }
            other => panic!("after {} retained messages: {other:?}", topics.len()),
        }
    }
    assert_eq!(broker.stats().dropped_queue_full, 0);
}
