//! Shared subscriptions (`$share/{group}/{filter}`) with real clients: rumqttc 5.0 and 3.1.1,
//! `mosquitto_sub -V 5` and raw packets. Spreading (round robin and the other strategies), one
//! copy per group beside a member's own ordinary subscription, no retained messages on a shared
//! subscribe, unsubscribe, redispatch of unacknowledged QoS 1 when a member leaves, an offline
//! persistent member passed over, and the refusal of bad share names.

mod clients;
mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Stdio;

use clients::{p5, raw_subscribe, v5_options, QoS5, V4, V5};
use common::Raw;
use tokio::process::Command;
use warren::config::ShareStrategy;
use warren::protocol::{self, Packet, ProtocolVersion, QoS as WQoS};

/// Publishes `count` QoS 1 messages `0..count`, message `i` on `topics[i % topics.len()]`,
/// then one on `end` (every member also subscribes to `end` ordinarily, so it marks the end of
/// what was routed before it).
async fn publish_then_end(publisher: &V5, topics: &[&str], count: usize) {
    for i in 0..count {
        let topic = topics[i % topics.len()];
        publisher
            .publish(topic, QoS5::AtLeastOnce, false, i.to_string().as_bytes())
            .await;
    }
    publisher
        .publish("end", QoS5::AtLeastOnce, false, b"")
        .await;
}

/// The payloads `member` receives on other topics before the next message on `end`.
async fn until_end(member: &mut V5) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let publish = member.next_publish().await;
        if &publish.topic[..] == b"end" {
            return got;
        }
        got.push(String::from_utf8_lossy(&publish.payload).into_owned());
    }
}

/// A 5.0 member of `$share/{group}/{filter}` that also subscribes to `end`.
async fn member(addr: SocketAddr, id: &str, shared: &str) -> V5 {
    let mut client = V5::connect(addr, id).await;
    for filter in [shared, "end"] {
        let ack = client.subscribe(filter, QoS5::AtLeastOnce).await;
        assert_eq!(
            ack.return_codes,
            vec![p5::SubscribeReasonCode::Success(QoS5::AtLeastOnce)]
        );
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_over_v5_and_v311_members_and_unsubscribe_leaves() {
    let (broker, addr) = common::start().await;
    let mut a = member(addr, "a", "$share/g/t/#").await;
    let mut b = member(addr, "b", "$share/g/t/#").await;
    let mut c = V4::connect(addr, "c").await;
    let ack = c.subscribe("$share/g/t/#", rumqttc::QoS::AtLeastOnce).await;
    assert_eq!(
        ack.return_codes,
        vec![rumqttc::SubscribeReasonCode::Success(
            rumqttc::QoS::AtLeastOnce
        )]
    );
    assert_eq!(broker.subscription_count(), 5);
    let publisher = V5::connect(addr, "pub").await;
    for i in 0..30 {
        publisher
            .publish("t/x", QoS5::AtLeastOnce, false, i.to_string().as_bytes())
            .await;
    }
    let mut seen = BTreeSet::new();
    for (name, got) in [("a", &mut a), ("b", &mut b)] {
        for _ in 0..10 {
            let p = got.next_publish().await;
            assert_eq!(p.qos, QoS5::AtLeastOnce);
            assert!(seen.insert(p.payload.clone()), "{name}: a message twice");
        }
    }
    for _ in 0..10 {
        let p = c.next_publish().await;
        assert!(seen.insert(p.payload.clone()), "c: a message twice");
    }
    assert_eq!(seen.len(), 30);
    // Unsubscribing leaves the group: the other two share what follows.
    c.client
        .unsubscribe("$share/g/t/#")
        .await
        .expect("unsubscribe");
    c.wait_for(|p| matches!(p, rumqttc::Incoming::UnsubAck(_)).then_some(()))
        .await;
    assert_eq!(broker.subscription_count(), 4);
    publish_then_end(&publisher, &["t/y"], 20).await;
    assert_eq!(until_end(&mut a).await.len(), 10);
    assert_eq!(until_end(&mut b).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_per_group_and_an_overlapping_ordinary_subscription_gets_its_own() {
    let (_broker, addr) = common::start().await;
    let mut a = member(addr, "a", "$share/g/t").await;
    a.subscribe("t", QoS5::AtLeastOnce).await;
    let mut b = member(addr, "b", "$share/g/t").await;
    // Another group on an overlapping filter: it gets every message too.
    let mut h = member(addr, "h", "$share/h/+").await;
    let publisher = V5::connect(addr, "pub").await;
    publish_then_end(&publisher, &["t"], 4).await;
    let mut got_a = until_end(&mut a).await;
    got_a.sort();
    assert_eq!(got_a.len(), 6, "a: 4 ordinary copies + 2 shared: {got_a:?}");
    assert_eq!(until_end(&mut b).await.len(), 2);
    assert_eq!(until_end(&mut h).await, ["0", "1", "2", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_choose_as_configured() {
    for strategy in [
        ShareStrategy::Random,
        ShareStrategy::Sticky,
        ShareStrategy::HashClientId,
        ShareStrategy::HashTopic,
    ] {
        let (_broker, addr) =
            common::start_with(|c| c.mqtt.shared_subscription_strategy = strategy).await;
        let mut a = member(addr, "a", "$share/g/t/+").await;
        let mut b = member(addr, "b", "$share/g/t/+").await;
        let publisher = V5::connect(addr, "pub").await;
        publish_then_end(&publisher, &["t/even", "t/odd"], 20).await;
        let got_a = until_end(&mut a).await;
        let got_b = until_end(&mut b).await;
        assert_eq!(got_a.len() + got_b.len(), 20, "{strategy:?}");
        let parity = |got: &[String]| -> BTreeSet<u32> {
            got.iter()
                .map(|p| p.parse::<u32>().unwrap_or(0) % 2)
                .collect()
        };
        match strategy {
            // One publisher, one member.
            ShareStrategy::Sticky | ShareStrategy::HashClientId => {
                assert!(got_a.is_empty() || got_b.is_empty(), "{strategy:?}")
            }
            // One topic, one member.
            ShareStrategy::HashTopic => {
                assert!(parity(&got_a).len() <= 1 && parity(&got_b).len() <= 1)
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_qos1_goes_to_another_member_when_its_member_leaves() {
    let (broker, addr) = common::start().await;
    let mut options = v5_options(addr, "lazy");
    options.set_manual_acks(true);
    let mut lazy = V5::start(options).await.expect("lazy connects");
    lazy.subscribe("$share/g/jobs", QoS5::AtLeastOnce).await;
    let mut busy = member(addr, "busy", "$share/g/jobs").await;
    let publisher = V5::connect(addr, "pub").await;
    for i in 0..4 {
        publisher
            .publish("jobs", QoS5::AtLeastOnce, false, i.to_string().as_bytes())
            .await;
    }
    let mut held = BTreeSet::new();
    for _ in 0..2 {
        held.insert(lazy.next_publish().await.payload);
    }
    // The lazy member goes away without acknowledging (clean start, no session expiry).
    drop(lazy);
    let mut got = BTreeSet::new();
    for _ in 0..4 {
        got.insert(busy.next_publish().await.payload);
    }
    assert_eq!(got.len(), 4, "every job once at the busy member: {got:?}");
    assert!(held.is_subset(&got));
    // Counted just after the hand-over, which the busy member may have seen first.
    common::eventually(|| broker.stats().shared_redispatched == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_members_unacknowledged_qos1_moves_when_its_session_expires() {
    let (broker, addr) = common::start().await;
    let mut options = v5_options(addr, "lazy");
    options.set_manual_acks(true);
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(1));
    let mut lazy = V5::start(options).await.expect("lazy connects");
    lazy.subscribe("$share/g/jobs", QoS5::AtLeastOnce).await;
    let mut busy = member(addr, "busy", "$share/g/jobs").await;
    let publisher = V5::connect(addr, "pub").await;
    for i in 0..2 {
        publisher
            .publish("jobs", QoS5::AtLeastOnce, false, i.to_string().as_bytes())
            .await;
    }
    let held = lazy.next_publish().await.payload;
    drop(lazy);
    // Kept for the lazy member while its session lives, then handed on when it expires.
    let first = busy.next_publish().await.payload;
    let second = busy.next_publish().await.payload;
    assert_ne!(first, second);
    assert!(held == first || held == second);
    // Counted just after the hand-over, which the busy member may have seen first.
    common::eventually(|| broker.stats().shared_redispatched == 1).await;
    assert_eq!(broker.stats().sessions_expired, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_persistent_member_does_not_black_hole_the_group() {
    let (broker, addr) = common::start().await;
    // More offline members than a pick looks past: the group must know they left.
    let away = |i: usize| {
        let mut options = v5_options(addr, &format!("away{i}"));
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(600));
        options
    };
    for i in 0..6 {
        let mut client = V5::start(away(i)).await.expect("away connects");
        client.subscribe("$share/g/t", QoS5::AtLeastOnce).await;
    }
    common::eventually(|| broker.offline_session_count() == 6).await;
    let mut here = member(addr, "here", "$share/g/t").await;
    let publisher = V5::connect(addr, "pub").await;
    publish_then_end(&publisher, &["t"], 12).await;
    assert_eq!(until_end(&mut here).await.len(), 12);
    assert_eq!(
        broker.queued().0,
        0,
        "nothing queued for the offline members"
    );
    // One comes back (its shared subscription kept by its session): the group knows it is
    // connected again, and round robin alternates between the two connected members.
    let mut back = V5::start(away(0)).await.expect("away0 reconnects");
    back.subscribe("end", QoS5::AtLeastOnce).await;
    publish_then_end(&publisher, &["t"], 6).await;
    assert_eq!(until_end(&mut here).await.len(), 3);
    assert_eq!(until_end(&mut back).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_share_names_are_refused_with_topic_filter_invalid() {
    let (_broker, addr) = common::start().await;
    let mut raw = Raw::connect(addr, ProtocolVersion::V5).await;
    raw.send(&common::connect_packet(ProtocolVersion::V5, "v5", true))
        .await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.properties.shared_subscription_available, Some(1))
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let filters = [
        ("$share//t", WQoS::AtLeastOnce),
        ("$share/+/t", WQoS::AtLeastOnce),
        ("$share/g#/t", WQoS::AtLeastOnce),
        ("$share/g", WQoS::AtLeastOnce),
        ("$share/g/", WQoS::AtLeastOnce),
        ("$share/g/t", WQoS::AtLeastOnce),
    ];
    let ack = raw_subscribe(&mut raw, 1, &filters).await;
    let bad = protocol::reason::TOPIC_FILTER_INVALID;
    assert_eq!(ack.reasons, [bad, bad, bad, bad, bad, 1]);
    // Unsubscribing from one is answered too, not a malformed packet.
    raw.send(&Packet::Unsubscribe(protocol::Unsubscribe {
        pkid: 2,
        filters: vec!["$share/g#/t".into()],
        user_properties: Default::default(),
    }))
    .await;
    match raw.recv().await {
        Some(Packet::UnsubAck(ack)) => {
            assert_eq!(ack.reasons, [protocol::reason::NO_SUBSCRIPTION_EXISTED])
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }

    let mut raw = common::raw_connected(addr, ProtocolVersion::V3_1_1, "v311").await;
    let ack = raw_subscribe(&mut raw, 1, &filters).await;
    assert_eq!(ack.reasons, [0x80, 0x80, 0x80, 0x80, 0x80, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_members_share_and_get_no_retained_message() {
    common::require_mosquitto_clients();
    let (broker, addr) = common::start().await;
    let host = addr.ip().to_string();
    let port = addr.port().to_string();
    let publisher = V5::connect(addr, "pub").await;
    publisher
        .publish("m", QoS5::AtLeastOnce, true, b"old")
        .await;
    common::eventually(|| broker.retained_count() == 1).await;
    let subs: Vec<_> = ["5", "5", "mqttv311"]
        .iter()
        .map(|version| {
            Command::new("mosquitto_sub")
                .args(["-h", &host, "-p", &port, "-V", version])
                .args(["-t", "$share/g/m", "-q", "1", "-C", "2", "-W", "10"])
                .args(["-F", "%p|%r"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn mosquitto_sub")
        })
        .collect();
    common::eventually(|| broker.subscription_count() == 3).await;
    for i in 0..6 {
        publisher
            .publish("m", QoS5::AtLeastOnce, false, format!("n{i}").as_bytes())
            .await;
    }
    let mut seen = BTreeSet::new();
    for sub in subs {
        let output = common::within(sub.wait_with_output())
            .await
            .expect("mosquitto_sub output");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in lines {
            assert!(line.starts_with('n') && line.ends_with("|0"), "{line}");
            assert!(seen.insert(line), "a message twice");
        }
    }
    assert_eq!(seen.len(), 6);
}
