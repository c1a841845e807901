//! Flow control that cannot deadlock, and the acknowledgement gate: ordinary QoS 1 traffic
//! (paho-mqtt, self-subscribed and pairwise), slow and half-open subscribers, the server's
//! Receive Maximum, and owners that answer late, out of order, with a refusal, or never.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use warren::protocol::{
    self, reason, ConnectReason, Packet, ProtocolVersion, PubResp, Publish, QoS,
    SubscriptionOptions,
};
use warren::session::mailbox::MessageParts;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn publish(topic: &str, payload: &[u8], qos: QoS, pkid: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        pkid,
        properties: Default::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}

async fn subscribe(raw: &mut Raw, filter: &str, qos: QoS) {
    let reasons = raw_subscribe(raw, 1, filter, qos).await;
    assert_eq!(reasons, vec![qos as u8]);
}

/// Packets that arrive before a PINGRESP (a barrier through the connection's loop).
async fn before_pong(raw: &mut Raw) -> Vec<Packet> {
    raw.send(&Packet::PingReq).await;
    let mut seen = Vec::new();
    loop {
        match raw.recv().await {
            Some(Packet::PingResp) => return seen,
            Some(packet) => seen.push(packet),
            None => panic!("closed; seen {seen:?}"),
        }
    }
}

fn pubacks(packets: &[Packet]) -> Vec<(u16, u8)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some((a.pkid, a.reason)),
            _ => None,
        })
        .collect()
}

// --- ordinary clients -------------------------------------------------------------------------

/// Runs `tests/scripts/paho_flow.py` in `mode` (5,000 QoS 1 messages, 200 in flight) against a
/// fresh broker and checks its summary line; nothing may be dropped for a full queue.
async fn paho_flow(mode: &str, expected: &str) {
    let (broker, addr) = start().await;
    let args = [
        addr.ip().to_string(),
        addr.port().to_string(),
        mode.into(),
        "5000".into(),
        "200".into(),
    ];
    let out = python("paho_flow.py", &args).await;
    assert_eq!(out.trim(), expected);
    assert_eq!(broker.stats().dropped_queue_full, 0);
}

/// Reproduced on the old core: 1,193 acknowledged and 192 delivered, then nothing. A client that
/// subscribes to its own topic keeps reading its PUBACKs while its own queue is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paho_client_subscribed_to_its_own_topic_publishes_5000_qos1_with_200_in_flight() {
    paho_flow("self", r#"{"acked": 5000, "delivered": 5000}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_paho_clients_publishing_to_each_other_complete() {
    paho_flow("pair", r#"{"acked": 10000, "delivered": 10000}"#).await;
}

// --- slow subscribers pay ---------------------------------------------------------------------

/// A half-open subscriber (keep alive 0, reads nothing, acknowledges nothing) with a full queue
/// holds its publisher's answers only until `slow_subscriber_timeout_ms`; then it is
/// disconnected (0x97) and the publisher gets every PUBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_subscriber_is_disconnected_and_its_publisher_goes_on() {
    let (broker, addr) = start_with(|c| {
        c.mqtt.max_queued_messages = 5;
        c.mqtt.max_inflight = 2;
        c.mqtt.slow_subscriber_timeout_ms = 500;
    })
    .await;
    let connect = with_keep_alive(connect_packet(V5, "half-open", true), 0);
    let (mut stuck, first) = raw_connect_with(addr, V5, &connect).await;
    assert!(matches!(first, Some(Packet::ConnAck(_))));
    subscribe(&mut stuck, "ho", QoS::AtLeastOnce).await;

    let mut publisher = raw_connected(addr, V3, "publisher").await;
    for pkid in 1..=20 {
        publisher
            .send(&publish("ho", b"m", QoS::AtLeastOnce, pkid))
            .await;
    }
    // Every answer comes, in order: the ones that fit at once, the rest once the slow
    // subscriber has been disconnected.
    for pkid in 1..=20 {
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, pkid),
            other => panic!("expected PUBACK {pkid}, got {other:?}"),
        }
    }
    assert_eq!(
        disconnect_reason(&mut stuck).await,
        Some(reason::QUOTA_EXCEEDED)
    );
    assert_eq!(broker.stats().slow_subscribers, 1);
    // The publisher was never paused for good: it still answers.
    raw_ping(&mut publisher).await;
}

/// `slow_subscriber = "drop_qos0"`: the slow subscriber's queued QoS 0 messages are dropped to
/// make room, it stays connected, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_qos0_policy_makes_room_without_disconnecting() {
    let (broker, addr) = start_with(|c| {
        c.mqtt.max_queued_messages = 4;
        c.mqtt.max_inflight = 1;
        c.mqtt.slow_subscriber_timeout_ms = 300;
        c.mqtt.slow_subscriber = warren::config::SlowSubscriberPolicy::DropQos0;
    })
    .await;
    let mut slow = raw_connected(addr, V3, "slow").await;
    subscribe(&mut slow, "mix", QoS::AtLeastOnce).await;
    let mut publisher = raw_connected(addr, V3, "publisher").await;
    // One QoS 1 fills the window; the next QoS 1 waits in the queue with three QoS 0 behind
    // it, which fills it; one more QoS 1 goes past the limit and its answer waits.
    publisher
        .send(&publish("mix", b"q1-a", QoS::AtLeastOnce, 1))
        .await;
    let first = match slow.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    assert_eq!(&first.payload[..], b"q1-a");
    publisher
        .send(&publish("mix", b"q1-b", QoS::AtLeastOnce, 2))
        .await;
    for _ in 0..3 {
        publisher
            .send(&publish("mix", b"q0", QoS::AtMostOnce, 0))
            .await;
    }
    publisher
        .send(&publish("mix", b"q1-c", QoS::AtLeastOnce, 3))
        .await;
    let acks: Vec<u16> = within(async {
        let mut acks = Vec::new();
        while acks.len() < 3 {
            if let Some(Packet::PubAck(a)) = publisher.recv().await {
                acks.push(a.pkid);
            }
        }
        acks
    })
    .await;
    assert_eq!(acks, vec![1, 2, 3]);
    eventually(|| broker.stats().dropped_by[5][0] == 3).await;
    // Still connected; the QoS 1 messages all arrive once it acknowledges.
    slow.send(&Packet::PubAck(PubResp::new(first.pkid))).await;
    let mut got = vec![first.payload.clone()];
    while got.len() < 3 {
        match slow.recv().await {
            Some(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    slow.send(&Packet::PubAck(PubResp::new(p.pkid))).await;
                }
                if p.payload.starts_with(b"q1") {
                    got.push(p.payload.clone());
                }
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    assert_eq!(got, vec![&b"q1-a"[..], b"q1-b", b"q1-c"]);
    assert_eq!(broker.stats().slow_subscribers, 0);
}

// --- Receive Maximum ---------------------------------------------------------------------------

/// A subscriber that holds everything: queue of 1, window of 1, never acknowledges.
async fn holding_subscriber(addr: std::net::SocketAddr, filter: &str) -> Raw {
    let mut sub = raw_connected(addr, V3, "holder").await;
    subscribe(&mut sub, filter, QoS::AtLeastOnce).await;
    sub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_maximum_is_advertised_and_enforced_with_0x93() {
    let (_broker, addr) = start_with(|c| {
        c.mqtt.receive_maximum = 4;
        c.mqtt.max_queued_messages = 1;
        c.mqtt.max_inflight = 1;
    })
    .await;
    let _holder = holding_subscriber(addr, "rm").await;
    let (mut publisher, first) =
        raw_connect_with(addr, V5, &connect_packet(V5, "rm-pub", true)).await;
    match first {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.properties.receive_maximum, Some(4)),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // 1 goes in flight to the holder, 2 fills its queue: answered. 3..=6 wait (4 of them, the
    // maximum); 7 is one too many.
    for pkid in 1..=7 {
        publisher
            .send(&publish("rm", b"x", QoS::AtLeastOnce, pkid))
            .await;
    }
    let reason = disconnect_reason(&mut publisher).await;
    assert_eq!(reason, Some(protocol::reason::RECEIVE_MAXIMUM_EXCEEDED));
}

/// QoS 2 flows count until PUBCOMP: a 5.0 client that never sends PUBREL cannot reuse ids past
/// the maximum (the old core silently dropped reused ids as duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_flows_without_pubrel_count_against_the_receive_maximum() {
    let (_broker, addr) = start_with(|c| c.mqtt.receive_maximum = 10).await;
    let mut publisher = raw_connected(addr, V5, "no-pubrel").await;
    for pkid in 1..=10 {
        publisher
            .send(&publish("q2", b"x", QoS::ExactlyOnce, pkid))
            .await;
        match publisher.recv().await {
            Some(Packet::PubRec(rec)) => assert_eq!(rec.pkid, pkid),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    publisher
        .send(&publish("q2", b"x", QoS::ExactlyOnce, 11))
        .await;
    assert_eq!(
        disconnect_reason(&mut publisher).await,
        Some(protocol::reason::RECEIVE_MAXIMUM_EXCEEDED)
    );
}

/// 3.1.1 cannot be told the maximum: the PUBLISH past it is held, and answered once another
/// one is; nothing is lost and the connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_1_1_client_past_the_receive_maximum_is_held_not_dropped() {
    let (_broker, addr) = start_with(|c| {
        c.mqtt.receive_maximum = 2;
        c.mqtt.max_queued_messages = 1;
        c.mqtt.max_inflight = 1;
    })
    .await;
    let mut holder = holding_subscriber(addr, "h").await;
    let mut publisher = raw_connected(addr, V3, "v3-pub").await;
    for pkid in 1..=6 {
        publisher
            .send(&publish(
                "h",
                format!("{pkid}").as_bytes(),
                QoS::AtLeastOnce,
                pkid,
            ))
            .await;
    }
    // The holder acknowledges as it goes: every message arrives, in order, once.
    for i in 1..=6u16 {
        match holder.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!(&p.payload[..], format!("{i}").as_bytes());
                holder.send(&Packet::PubAck(PubResp::new(p.pkid))).await;
            }
            other => panic!("expected message {i}, got {other:?}"),
        }
    }
    for pkid in 1..=6 {
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, pkid),
            other => panic!("expected PUBACK {pkid}, got {other:?}"),
        }
    }
}

// --- owners that answer late, out of order, refuse, or never -----------------------------------

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..Default::default()
    }
}

/// An in-process owner answers the three messages in reverse order: the publisher gets no
/// PUBACK until the first is owned, then all three in packet order. Meanwhile its messages
/// are delivered to ordinary subscribers and its pings are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_wait_for_every_owner_and_leave_in_packet_order() {
    let (broker, addr) = start().await;
    let owner = broker.local_client("owner", true);
    owner
        .subscribe("gate/#", options(QoS::ExactlyOnce))
        .unwrap();
    let mut watcher = raw_connected(addr, V3, "watcher").await;
    subscribe(&mut watcher, "gate/#", QoS::AtMostOnce).await;
    let mut publisher = raw_connected(addr, V5, "gated").await;
    for pkid in 1..=3 {
        publisher
            .send(&publish("gate/a", &[pkid as u8], QoS::AtLeastOnce, pkid))
            .await;
    }
    let mut tickets = Vec::new();
    for i in 1..=3u8 {
        let delivery = within(owner.recv()).await.expect("delivery");
        assert_eq!(delivery.message.payload(), &[i]);
        assert_eq!(delivery.qos, QoS::AtLeastOnce);
        tickets.push(
            delivery
                .ticket
                .expect("a QoS 1 delivery to an owner carries a ticket"),
        );
    }
    // Delivered to the ordinary subscriber already.
    for i in 1..=3u8 {
        match watcher.recv().await {
            Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], &[i]),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    assert!(pubacks(&before_pong(&mut publisher).await).is_empty());
    let first = tickets.remove(0);
    tickets.pop().unwrap().owned(); // 3
    tickets.pop().unwrap().owned(); // 2
    assert!(
        pubacks(&before_pong(&mut publisher).await).is_empty(),
        "2 and 3 wait for 1"
    );
    first.owned();
    let acks = within(async {
        let mut acks = Vec::new();
        while acks.len() < 3 {
            if let Some(Packet::PubAck(a)) = publisher.recv().await {
                acks.push((a.pkid, a.reason));
            }
        }
        acks
    })
    .await;
    assert_eq!(acks, vec![(1, 0), (2, 0), (3, 0)]);
}

/// A refusal reaches a 5.0 publisher as the owner's reason code; a 3.1.1 publisher, which has
/// no negative PUBACK, is disconnected without an answer (so it sends again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_a_reason_code_in_5_and_a_close_in_3_1_1() {
    let (broker, addr) = start().await;
    let owner = broker.local_client("owner", true);
    owner
        .subscribe("refuse/#", options(QoS::AtLeastOnce))
        .unwrap();

    let mut v5 = raw_connected(addr, V5, "refused-v5").await;
    v5.send(&publish("refuse/x", b"1", QoS::AtLeastOnce, 7))
        .await;
    within(owner.recv())
        .await
        .unwrap()
        .ticket
        .unwrap()
        .refuse(reason::QUOTA_EXCEEDED);
    match v5.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!((ack.pkid, ack.reason), (7, 0x97)),
        other => panic!("expected PUBACK, got {other:?}"),
    }

    let mut v3 = raw_connected(addr, V3, "refused-v3").await;
    v3.send(&publish("refuse/x", b"2", QoS::AtLeastOnce, 8))
        .await;
    // A ticket dropped uncompleted counts as a refusal too.
    drop(within(owner.recv()).await.unwrap());
    let rest = v3.until_closed().await;
    assert!(pubacks(&rest).is_empty(), "{rest:?}");
}

/// An owner that never answers: past `ack_timeout_ms` the publisher is disconnected with 0x80
/// and nothing was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_never_answers_times_out_with_0x80_and_no_ack() {
    let (broker, addr) = start_with(|c| {
        c.mqtt.ack_timeout_ms = 600;
        c.mqtt.slow_subscriber_timeout_ms = 300;
    })
    .await;
    let owner = broker.local_client("owner", true);
    owner.subscribe("never", options(QoS::AtLeastOnce)).unwrap();
    let mut publisher = raw_connected(addr, V5, "waits").await;
    publisher
        .send(&publish("never", b"x", QoS::AtLeastOnce, 1))
        .await;
    let _held = within(owner.recv()).await.unwrap();
    let mut seen = Vec::new();
    let mut reason = None;
    while let Some(packet) = publisher.recv().await {
        if let Packet::Disconnect(d) = &packet {
            reason = Some(d.reason);
        }
        seen.push(packet);
    }
    assert_eq!(reason, Some(reason::UNSPECIFIED_ERROR));
    assert!(pubacks(&seen).is_empty(), "{seen:?}");
}

/// QoS 2 through the gate: PUBREC waits for the owner; a resend before it is not routed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_pubrec_waits_for_the_owner_and_a_resend_is_not_routed_twice() {
    let (broker, addr) = start().await;
    let owner = broker.local_client("owner", true);
    owner.subscribe("q2/#", options(QoS::ExactlyOnce)).unwrap();
    let mut publisher = raw_connected(addr, V5, "q2-pub").await;
    publisher
        .send(&publish("q2/a", b"once", QoS::ExactlyOnce, 5))
        .await;
    let delivery = within(owner.recv()).await.unwrap();
    assert_eq!(delivery.qos, QoS::ExactlyOnce);
    let mut resend = publish("q2/a", b"once", QoS::ExactlyOnce, 5);
    if let Packet::Publish(p) = &mut resend {
        p.dup = true;
    }
    publisher.send(&resend).await;
    let seen = before_pong(&mut publisher).await;
    assert!(
        !seen.iter().any(|p| matches!(p, Packet::PubRec(_))),
        "{seen:?}"
    );
    delivery.ticket.unwrap().owned();
    match publisher.recv().await {
        Some(Packet::PubRec(rec)) => assert_eq!((rec.pkid, rec.reason), (5, 0)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher.send(&Packet::PubRel(PubResp::new(5))).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubComp(_))));
    assert!(
        owner.try_recv().is_none(),
        "the resend was not routed again"
    );
}

/// An in-process publisher waits for the owners of its message too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_publish_resolves_when_its_owner_answers() {
    let (broker, _addr) = start().await;
    let owner = broker.local_client("owner", true);
    owner
        .subscribe("local/#", options(QoS::AtLeastOnce))
        .unwrap();
    let publisher = broker.local_client("publisher", false);
    let properties = protocol::PublishProperties::default();
    let publish = publisher.publish(MessageParts {
        topic: "local/a",
        payload: b"x",
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: &properties,
        origin: 0,
        publisher: None,
    });
    let answer = async {
        let delivery = within(owner.recv()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        delivery.ticket.unwrap().owned();
    };
    let (published, ()) = tokio::join!(publish, answer);
    assert_eq!(published, Ok(warren::broker::local::Published::Accepted));
    // Nobody else subscribes here.
    let publish = publisher.publish(MessageParts {
        topic: "nobody",
        payload: b"x",
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: &properties,
        origin: 0,
        publisher: None,
    });
    assert_eq!(
        within(publish).await,
        Ok(warren::broker::local::Published::NoMatchingSubscribers)
    );
}

/// A sanity check of the refusal path before CONNECT completes: a takeover that cannot be
/// served is refused with "server busy", never turned into a fresh session.
#[test]
fn server_busy_is_a_v3_server_unavailable() {
    assert_eq!(ConnectReason::ServerBusy.v3_return_code(), 3);
}
