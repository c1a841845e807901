//! Publish/subscribe end to end: QoS flows with real clients (3.1.1 and 5.0), topic wildcards
//! and `$` topics, overlapping subscriptions, granted QoS, QoS 2 duplicate suppression,
//! unsubscribe, the outgoing inflight window and fan-out.

mod clients;
mod common;

use clients::{is_publish_on, p5, publishes, raw_ping, raw_subscribe, raw_until, QoS5, V4, V5};
use common::Raw;
use rumqttc::{Incoming, QoS};
use warren::protocol::{self, Packet, ProtocolVersion, QoS as WQoS};

// ----- round trips ---------------------------------------------------------------------------

async fn v4_round_trip(qos: QoS) {
    let (_broker, addr) = common::start().await;
    let mut sub = V4::connect(addr, "sub").await;
    let ack = sub.subscribe("rt/+", QoS::ExactlyOnce).await;
    assert_eq!(
        ack.return_codes,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    let mut publisher = V4::connect(addr, "pub").await;
    publisher
        .publish("rt/x", qos, false, b"hello \x00 world")
        .await;

    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            publisher
                .wait_for(|p| matches!(p, Incoming::PubAck(_)).then_some(()))
                .await;
        }
        QoS::ExactlyOnce => {
            publisher
                .wait_for(|p| matches!(p, Incoming::PubRec(_)).then_some(()))
                .await;
            publisher
                .wait_for(|p| matches!(p, Incoming::PubComp(_)).then_some(()))
                .await;
        }
    }
    let got = sub.next_publish().await;
    assert_eq!(&got.topic[..], "rt/x");
    assert_eq!(&got.payload[..], b"hello \x00 world");
    assert_eq!(got.qos, qos);
    assert!(!got.retain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos0_round_trip() {
    v4_round_trip(QoS::AtMostOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos1_round_trip() {
    v4_round_trip(QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos2_round_trip() {
    v4_round_trip(QoS::ExactlyOnce).await;
}

async fn v5_round_trip(qos: QoS5) {
    let (_broker, addr) = common::start().await;
    let mut sub = V5::connect(addr, "sub5").await;
    let ack = sub.subscribe("rt5/#", QoS5::ExactlyOnce).await;
    assert_eq!(
        ack.return_codes,
        vec![p5::SubscribeReasonCode::Success(QoS5::ExactlyOnce)]
    );
    let mut publisher = V5::connect(addr, "pub5").await;
    publisher.publish("rt5/a/b", qos, false, b"five").await;
    match qos {
        QoS5::AtMostOnce => {}
        QoS5::AtLeastOnce => {
            let ack = publisher
                .wait_for(|p| match p {
                    p5::Packet::PubAck(ack) => Some(ack.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(ack.reason, p5::PubAckReason::Success);
        }
        QoS5::ExactlyOnce => {
            let rec = publisher
                .wait_for(|p| match p {
                    p5::Packet::PubRec(rec) => Some(rec.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(rec.reason, p5::PubRecReason::Success);
            publisher
                .wait_for(|p| matches!(p, p5::Packet::PubComp(_)).then_some(()))
                .await;
        }
    }
    let got = sub.next_publish().await;
    assert_eq!(&got.topic[..], b"rt5/a/b");
    assert_eq!(&got.payload[..], b"five");
    assert_eq!(got.qos, qos);
    assert!(!got.retain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos0_round_trip() {
    v5_round_trip(QoS5::AtMostOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos1_round_trip() {
    v5_round_trip(QoS5::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos2_round_trip() {
    v5_round_trip(QoS5::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_publisher_reaches_v5_subscriber_and_back() {
    let (_broker, addr) = common::start().await;
    let mut s5 = V5::connect(addr, "s5").await;
    s5.subscribe("mix/#", QoS5::AtLeastOnce).await;
    let mut s4 = V4::connect(addr, "s4").await;
    s4.subscribe("mix/#", QoS::AtLeastOnce).await;

    let p4 = V4::connect(addr, "p4").await;
    p4.publish("mix/from4", QoS::AtLeastOnce, false, b"4").await;
    let got = s5.next_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"mix/from4"[..], &b"4"[..])
    );
    let got = s4.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("mix/from4", &b"4"[..])
    );

    let p5c = V5::connect(addr, "p5").await;
    p5c.publish("mix/from5", QoS5::AtLeastOnce, false, b"5")
        .await;
    let got = s4.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("mix/from5", &b"5"[..])
    );
    let got = s5.next_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"mix/from5"[..], &b"5"[..])
    );
}

// ----- wildcards -----------------------------------------------------------------------------

/// Publishes every topic of `topics` at QoS 1 from one raw client (waiting for each PUBACK, so
/// all are routed), then a marker on `marker`.
async fn publish_all(addr: std::net::SocketAddr, topics: &[&str], marker: &str) {
    let mut publisher = common::raw_connected(addr, ProtocolVersion::V3_1_1, "wild-pub").await;
    for (i, topic) in topics.iter().chain([&marker]).enumerate() {
        let pkid = i as u16 + 1;
        publisher
            .send(&clients::publish(
                topic,
                topic.as_bytes(),
                WQoS::AtLeastOnce,
                pkid,
                false,
            ))
            .await;
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, pkid),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

/// Topics `raw` received up to (excluding) the marker.
async fn topics_until(raw: &mut Raw, marker: &str) -> Vec<String> {
    let seen = raw_until(raw, |p| is_publish_on(p, marker)).await;
    let mut topics: Vec<String> = publishes(&seen)
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(topics.pop().as_deref(), Some(marker));
    topics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_filters_match_the_right_topics() {
    let (_broker, addr) = common::start().await;
    let mut plus = common::raw_connected(addr, ProtocolVersion::V3_1_1, "plus").await;
    raw_subscribe(
        &mut plus,
        1,
        &[
            ("sport/+/score", WQoS::AtMostOnce),
            ("marker", WQoS::AtMostOnce),
        ],
    )
    .await;
    let mut hash = common::raw_connected(addr, ProtocolVersion::V3_1_1, "hash").await;
    raw_subscribe(
        &mut hash,
        1,
        &[("sport/#", WQoS::AtMostOnce), ("marker", WQoS::AtMostOnce)],
    )
    .await;
    let mut all = common::raw_connected(addr, ProtocolVersion::V3_1_1, "all").await;
    raw_subscribe(&mut all, 1, &[("#", WQoS::AtMostOnce)]).await;
    let mut lone_plus = common::raw_connected(addr, ProtocolVersion::V3_1_1, "lone").await;
    raw_subscribe(
        &mut lone_plus,
        1,
        &[("+", WQoS::AtMostOnce), ("marker", WQoS::AtMostOnce)],
    )
    .await;

    let topics = [
        "sport",
        "sport/tennis/score",
        "sport/golf/score",
        "sport/tennis/score/final",
        "sport/tennis",
        "sports/tennis/score",
        "other",
        "/sport",
    ];
    publish_all(addr, &topics, "marker").await;

    assert_eq!(
        topics_until(&mut plus, "marker").await,
        ["sport/tennis/score", "sport/golf/score"]
    );
    assert_eq!(
        topics_until(&mut hash, "marker").await,
        [
            "sport",
            "sport/tennis/score",
            "sport/golf/score",
            "sport/tennis/score/final",
            "sport/tennis"
        ]
    );
    assert_eq!(topics_until(&mut all, "marker").await, topics);
    assert_eq!(
        topics_until(&mut lone_plus, "marker").await,
        ["sport", "other"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let (_broker, addr) = common::start().await;
    let mut hash = common::raw_connected(addr, ProtocolVersion::V3_1_1, "hash").await;
    raw_subscribe(&mut hash, 1, &[("#", WQoS::AtMostOnce)]).await;
    let mut plus = common::raw_connected(addr, ProtocolVersion::V3_1_1, "plus").await;
    raw_subscribe(
        &mut plus,
        1,
        &[("+/foo", WQoS::AtMostOnce), ("marker", WQoS::AtMostOnce)],
    )
    .await;
    let mut sys = common::raw_connected(addr, ProtocolVersion::V3_1_1, "sys").await;
    raw_subscribe(
        &mut sys,
        1,
        &[("$SYS/#", WQoS::AtMostOnce), ("marker", WQoS::AtMostOnce)],
    )
    .await;

    publish_all(addr, &["$SYS/foo", "x/foo"], "marker").await;

    assert_eq!(topics_until(&mut hash, "marker").await, ["x/foo"]);
    assert_eq!(topics_until(&mut plus, "marker").await, ["x/foo"]);
    assert_eq!(topics_until(&mut sys, "marker").await, ["$SYS/foo"]);
}

// ----- overlapping subscriptions, granted QoS --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let (_broker, addr) = common::start().await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "overlap").await;
    let ack = raw_subscribe(&mut sub, 1, &[("a/#", WQoS::AtMostOnce)]).await;
    assert_eq!(ack.reasons, vec![0]);
    let ack = raw_subscribe(&mut sub, 2, &[("a/b", WQoS::ExactlyOnce)]).await;
    assert_eq!(ack.reasons, vec![2]);

    let publisher = V4::connect(addr, "overlap-pub").await;
    publisher
        .publish("a/b", QoS::ExactlyOnce, false, b"once")
        .await;
    publisher
        .publish("a/marker", QoS::AtMostOnce, false, b"m")
        .await;

    let seen = raw_until(&mut sub, |p| is_publish_on(p, "a/marker")).await;
    let copies: Vec<_> = publishes(&seen)
        .into_iter()
        .filter(|p| p.topic == "a/b")
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "a/b delivered {} times: {seen:?}",
        copies.len()
    );
    assert_eq!(copies[0].qos, WQoS::ExactlyOnce);
    assert_eq!(&copies[0].payload[..], b"once");
    assert!(!copies[0].dup);
}

async fn delivered_qos(granted: QoS, published: QoS) -> QoS {
    let (_broker, addr) = common::start().await;
    let mut sub = V4::connect(addr, "granted-sub").await;
    let ack = sub.subscribe("g/t", granted).await;
    assert_eq!(
        ack.return_codes,
        vec![rumqttc::SubscribeReasonCode::Success(granted)]
    );
    let publisher = V4::connect(addr, "granted-pub").await;
    publisher.publish("g/t", published, false, b"q").await;
    let got = sub.next_publish().await;
    assert_eq!(&got.payload[..], b"q");
    got.qos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_qos0_downgrades_qos2() {
    assert_eq!(
        delivered_qos(QoS::AtMostOnce, QoS::ExactlyOnce).await,
        QoS::AtMostOnce
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_qos1_downgrades_qos2() {
    assert_eq!(
        delivered_qos(QoS::AtLeastOnce, QoS::ExactlyOnce).await,
        QoS::AtLeastOnce
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_qos2_keeps_qos1() {
    assert_eq!(
        delivered_qos(QoS::ExactlyOnce, QoS::AtLeastOnce).await,
        QoS::AtLeastOnce
    );
}

// ----- QoS 2 exactly once ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_resend_before_pubrel_is_delivered_once() {
    let (_broker, addr) = common::start().await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "q2-sub").await;
    raw_subscribe(&mut sub, 1, &[("q2/#", WQoS::ExactlyOnce)]).await;

    let mut publisher = common::raw_connected(addr, ProtocolVersion::V3_1_1, "q2-pub").await;
    let first = clients::publish("q2/t", b"exactly", WQoS::ExactlyOnce, 7, false);
    publisher.send(&first).await;
    assert_eq!(
        publisher.recv().await,
        Some(Packet::PubRec(clients::resp(7)))
    );
    let Packet::Publish(mut again) = first else {
        unreachable!()
    };
    again.dup = true;
    publisher.send(&Packet::Publish(again)).await;
    assert_eq!(
        publisher.recv().await,
        Some(Packet::PubRec(clients::resp(7)))
    );
    publisher.send(&Packet::PubRel(clients::resp(7))).await;
    assert_eq!(
        publisher.recv().await,
        Some(Packet::PubComp(clients::resp(7)))
    );
    publisher
        .send(&clients::publish(
            "q2/marker",
            b"m",
            WQoS::AtMostOnce,
            0,
            false,
        ))
        .await;

    let seen = raw_until(&mut sub, |p| is_publish_on(p, "q2/marker")).await;
    let copies: Vec<_> = publishes(&seen)
        .into_iter()
        .filter(|p| p.topic == "q2/t")
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "delivered {} times: {seen:?}",
        copies.len()
    );
    assert_eq!(&copies[0].payload[..], b"exactly");
    assert_eq!(copies[0].qos, WQoS::ExactlyOnce);

    // The same packet id is free again once PUBCOMP was sent: a new message with it is routed.
    publisher
        .send(&clients::publish(
            "q2/t",
            b"second",
            WQoS::ExactlyOnce,
            7,
            false,
        ))
        .await;
    assert_eq!(
        publisher.recv().await,
        Some(Packet::PubRec(clients::resp(7)))
    );
    let seen = raw_until(&mut sub, |p| is_publish_on(p, "q2/t")).await;
    let last = publishes(&seen).pop().unwrap().clone();
    assert_eq!(&last.payload[..], b"second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_delivery_to_a_raw_subscriber_completes() {
    let (_broker, addr) = common::start().await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "q2-flow").await;
    raw_subscribe(&mut sub, 1, &[("flow", WQoS::ExactlyOnce)]).await;
    let publisher = V4::connect(addr, "q2-flow-pub").await;
    publisher
        .publish("flow", QoS::ExactlyOnce, false, b"x")
        .await;

    let Some(Packet::Publish(p)) = sub.recv().await else {
        panic!("expected PUBLISH")
    };
    assert_eq!(p.qos, WQoS::ExactlyOnce);
    assert_ne!(p.pkid, 0);
    sub.send(&Packet::PubRec(clients::resp(p.pkid))).await;
    assert_eq!(
        sub.recv().await,
        Some(Packet::PubRel(clients::resp(p.pkid)))
    );
    sub.send(&Packet::PubComp(clients::resp(p.pkid))).await;
    // Nothing is resent after the flow completed.
    assert!(raw_ping(&mut sub).await.is_empty());
}

// ----- unsubscribe -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let (broker, addr) = common::start().await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "unsub").await;
    raw_subscribe(
        &mut sub,
        1,
        &[("u/t", WQoS::AtLeastOnce), ("u/marker", WQoS::AtMostOnce)],
    )
    .await;
    assert_eq!(broker.subscription_count(), 2);

    let publisher = V4::connect(addr, "unsub-pub").await;
    publisher
        .publish("u/t", QoS::AtMostOnce, false, b"before")
        .await;
    let seen = raw_until(&mut sub, |p| is_publish_on(p, "u/t")).await;
    assert_eq!(&publishes(&seen)[0].payload[..], b"before");

    sub.send(&Packet::Unsubscribe(protocol::Unsubscribe {
        pkid: 9,
        filters: vec!["u/t".into()],
        user_properties: Default::default(),
    }))
    .await;
    match sub.recv().await {
        Some(Packet::UnsubAck(ack)) => assert_eq!(ack.pkid, 9),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    assert_eq!(broker.subscription_count(), 1);

    publisher
        .publish("u/t", QoS::AtMostOnce, false, b"after")
        .await;
    publisher
        .publish("u/marker", QoS::AtMostOnce, false, b"m")
        .await;
    let seen = raw_until(&mut sub, |p| is_publish_on(p, "u/marker")).await;
    assert_eq!(
        publishes(&seen).len(),
        1,
        "delivered after UNSUBACK: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_client_unsubscribe_gets_unsuback() {
    let (broker, addr) = common::start().await;
    let mut sub = V4::connect(addr, "unsub4").await;
    sub.subscribe("u4/#", QoS::AtMostOnce).await;
    assert_eq!(broker.subscription_count(), 1);
    sub.client.unsubscribe("u4/#").await.unwrap();
    sub.wait_for(|p| matches!(p, Incoming::UnsubAck(_)).then_some(()))
        .await;
    assert_eq!(broker.subscription_count(), 0);
}

// ----- inflight window -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_inflight_window_is_respected() {
    let (_broker, addr) = common::start_with(|c| c.mqtt.max_inflight = 2).await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "window").await;
    raw_subscribe(&mut sub, 1, &[("w", WQoS::AtLeastOnce)]).await;

    // Five QoS 1 messages, each routed before its PUBACK reaches the publisher.
    let mut publisher = common::raw_connected(addr, ProtocolVersion::V3_1_1, "window-pub").await;
    for i in 1..=5u16 {
        publisher
            .send(&clients::publish(
                "w",
                format!("m{i}").as_bytes(),
                WQoS::AtLeastOnce,
                i,
                false,
            ))
            .await;
        assert_eq!(
            publisher.recv().await,
            Some(Packet::PubAck(clients::resp(i)))
        );
    }

    let mut got = Vec::new();
    for _ in 0..2 {
        match sub.recv().await {
            Some(Packet::Publish(p)) => got.push(p),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    // The window is full: nothing more until an ack.
    let extra = raw_ping(&mut sub).await;
    assert!(extra.is_empty(), "sent beyond the window of 2: {extra:?}");

    sub.send(&Packet::PubAck(clients::resp(got[0].pkid))).await;
    match sub.recv().await {
        Some(Packet::Publish(p)) => got.push(p),
        other => panic!("expected PUBLISH after PUBACK, got {other:?}"),
    }
    let extra = raw_ping(&mut sub).await;
    assert!(extra.is_empty(), "sent beyond the window of 2: {extra:?}");

    // Ack the rest as they come.
    let mut acked = 1;
    while acked < 5 {
        sub.send(&Packet::PubAck(clients::resp(got[acked].pkid)))
            .await;
        acked += 1;
        if got.len() < 5 {
            match sub.recv().await {
                Some(Packet::Publish(p)) => got.push(p),
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }
    let payloads: Vec<_> = got.iter().map(|p| p.payload.clone()).collect();
    assert_eq!(payloads, ["m1", "m2", "m3", "m4", "m5"]);
    assert!(got.iter().all(|p| p.qos == WQoS::AtLeastOnce && !p.dup));
}

// ----- fan-out -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_subscribers_each_get_the_message() {
    let (broker, addr) = common::start().await;
    let mut subs = Vec::new();
    for i in 0..50 {
        let mut sub = V4::connect(addr, &format!("fan-{i}")).await;
        sub.subscribe("fan/out", QoS::AtLeastOnce).await;
        subs.push(sub);
    }
    assert_eq!(broker.subscription_count(), 50);
    let publisher = V4::connect(addr, "fan-pub").await;
    publisher
        .publish("fan/out", QoS::AtLeastOnce, false, b"all")
        .await;
    for sub in &mut subs {
        let got = sub.next_publish().await;
        assert_eq!(got.topic, "fan/out");
        assert_eq!(&got.payload[..], b"all");
    }
}

/// A QoS 0 subscriber never sends anything, so only the broker can keep its deliveries going:
/// a burst larger than one write batch must arrive whole (it once stalled after the first batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_qos0_subscriber_receives_a_burst_larger_than_one_write_batch() {
    let (_broker, addr) = common::start_with(|c| c.mqtt.max_queued_messages = 10_000).await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "silent").await;
    raw_subscribe(&mut sub, 1, &[("burst", WQoS::AtMostOnce)]).await;

    // 3,000 PUBLISH of ~200 bytes in one write: about 600 KB of deliveries at once.
    let count = 3_000;
    let mut bytes = bytes::BytesMut::new();
    for i in 0..count {
        let payload = format!("{i:0200}");
        let packet = clients::publish("burst", payload.as_bytes(), WQoS::AtMostOnce, 0, false);
        protocol::encode(
            &packet,
            ProtocolVersion::V3_1_1,
            protocol::MAX_PACKET_SIZE,
            &mut bytes,
        )
        .unwrap();
    }
    let mut publisher = common::raw_connected(addr, ProtocolVersion::V3_1_1, "burster").await;
    publisher.send_bytes(&bytes).await;

    for i in 0..count {
        match sub.recv().await {
            Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], format!("{i:0200}").as_bytes()),
            other => panic!("message {i} of {count}: expected PUBLISH, got {other:?}"),
        }
    }
}

/// A connected QoS 1 subscriber that acknowledges nothing, with a queue of 5: the publisher's
/// messages beyond what fits are not dropped after PUBACK; their PUBACKs wait instead
/// (back-pressure through the acknowledgement gate) and come, in order, as the subscriber
/// acknowledges. Nothing is lost or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_subscriber_queue_holds_a_qos1_publishers_acks_instead_of_dropping() {
    let (broker, addr) = common::start_with(|c| {
        c.mqtt.max_queued_messages = 5;
        c.mqtt.max_inflight = 1;
    })
    .await;
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "slow").await;
    raw_subscribe(&mut sub, 1, &[("bp", WQoS::AtLeastOnce)]).await;

    // 20 QoS 1 messages in one write.
    let count: u16 = 20;
    let mut bytes = bytes::BytesMut::new();
    for i in 1..=count {
        let packet = clients::publish(
            "bp",
            format!("m{i}").as_bytes(),
            WQoS::AtLeastOnce,
            i,
            false,
        );
        protocol::encode(
            &packet,
            ProtocolVersion::V3_1_1,
            protocol::MAX_PACKET_SIZE,
            &mut bytes,
        )
        .unwrap();
    }
    let mut publisher = common::raw_connected(addr, ProtocolVersion::V3_1_1, "fast").await;
    publisher.send_bytes(&bytes).await;

    // What fits (the queue of 5, perhaps 1 already in flight) is acknowledged; the answers to
    // the others wait. (A quiet half second shows the pause.)
    let mut acked = 0;
    while let Ok(Some(Packet::PubAck(ack))) =
        tokio::time::timeout(std::time::Duration::from_millis(500), publisher.recv()).await
    {
        acked += 1;
        assert_eq!(ack.pkid, acked);
    }
    assert!(
        (5..=6).contains(&acked),
        "{acked} acknowledged before the pause"
    );
    // The subscriber takes its time; each PUBACK makes room for one more.
    for i in 1..=count {
        let publish = match sub.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected message {i}, got {other:?}"),
        };
        assert_eq!(&publish.payload[..], format!("m{i}").as_bytes());
        sub.send(&Packet::PubAck(clients::resp(publish.pkid))).await;
    }
    for i in acked + 1..=count {
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, i),
            other => panic!("expected PUBACK {i}, got {other:?}"),
        }
    }
    assert_eq!(broker.stats().dropped_queue_full, 0);
}
