//! Sessions: takeover, persistent sessions (3.1.1 clean session, 5.0 session expiry), resending
//! what was in flight, the offline queue bound, and graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use warren::protocol::{reason, Disconnect, Packet, ProtocolVersion, PubResp, Publish, QoS};
use warren::BrokerHandle;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// The next packet must be a PUBLISH.
async fn next_publish(raw: &mut Raw) -> Publish {
    match raw.recv().await {
        Some(Packet::Publish(publish)) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// A 5.0 CONNECT with a Session Expiry Interval.
fn v5_connect(client_id: &str, clean_start: bool, expiry: Option<u32>) -> Packet {
    let mut connect = connect_packet(V5, client_id, clean_start);
    if let Packet::Connect(c) = &mut connect {
        c.properties.session_expiry_interval = expiry;
    }
    connect
}

/// Connects a 5.0 client and returns it with the CONNACK's session present flag.
async fn v5_session(
    addr: std::net::SocketAddr,
    client_id: &str,
    clean_start: bool,
    expiry: Option<u32>,
) -> (Raw, bool) {
    match raw_connect_with(addr, V5, &v5_connect(client_id, clean_start, expiry)).await {
        (raw, Some(Packet::ConnAck(ack))) => {
            assert_eq!(ack.reason, warren::protocol::ConnectReason::Success);
            (raw, ack.session_present)
        }
        (_, other) => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A persistent 3.1.1 session subscribed to `filter` at `qos`, then disconnected and stored.
async fn stored_v311_subscriber(
    broker: &BrokerHandle,
    addr: std::net::SocketAddr,
    id: &str,
    filter: &str,
    qos: QoS,
) {
    let offline = broker.offline_session_count();
    let (mut sub, present) = raw_session(addr, V3, id, false).await;
    assert!(!present);
    assert_eq!(raw_subscribe(&mut sub, 1, filter, qos).await, [qos as u8]);
    raw_disconnect(sub).await;
    eventually(|| broker.offline_session_count() == offline + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_takeover_disconnects_the_old_connection_with_0x8e() {
    let (broker, addr) = start().await;
    let mut a = raw_connected(addr, V5, "dup").await;
    let mut b = raw_connected(addr, V5, "dup").await;
    assert_eq!(
        a.until_closed().await,
        [Packet::Disconnect(Disconnect {
            reason: reason::SESSION_TAKEN_OVER,
            ..Default::default()
        })]
    );
    raw_ping(&mut b).await;
    assert_eq!(broker.stats().sessions_taken_over, 1);
    assert_eq!(broker.session_count(), 1);
    // B is the one subscribed and receiving now.
    raw_subscribe(&mut b, 1, "t/dup", QoS::AtMostOnce).await;
    let mut publisher = raw_connected(addr, V5, "pub").await;
    raw_publish(&mut publisher, "t/dup", b"to b", QoS::AtMostOnce, 0).await;
    assert_eq!(next_publish(&mut b).await.payload, &b"to b"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_takeover_closes_the_old_connection_and_hands_over_the_session() {
    let (broker, addr) = start().await;
    let (mut a, _) = raw_session(addr, V3, "dup", false).await;
    raw_subscribe(&mut a, 1, "t/dup", QoS::AtLeastOnce).await;
    let (mut b, present) = raw_session(addr, V3, "dup", false).await;
    assert!(present, "the live session is handed to the new connection");
    assert_eq!(
        a.until_closed().await,
        [],
        "3.1.1 has no DISCONNECT from the server"
    );
    assert_eq!(broker.stats().sessions_taken_over, 1);
    assert_eq!(broker.session_count(), 1);
    assert_eq!(broker.subscription_count(), 1);
    let mut publisher = raw_connected(addr, V3, "pub").await;
    raw_publish(&mut publisher, "t/dup", b"to b", QoS::AtLeastOnce, 1).await;
    let got = next_publish(&mut b).await;
    assert_eq!(got.payload, &b"to b"[..]);
    assert_eq!(got.qos, QoS::AtLeastOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_persistent_session_queues_messages_while_offline() {
    let (broker, addr) = start().await;
    stored_v311_subscriber(&broker, addr, "persist", "q/t", QoS::AtLeastOnce).await;
    assert_eq!(
        broker.subscription_count(),
        1,
        "the subscription outlives the connection"
    );

    let mut publisher = raw_connected(addr, V3, "pub").await;
    for i in 0..5u16 {
        raw_publish(
            &mut publisher,
            "q/t",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        )
        .await;
    }

    let (mut sub, present) = raw_session(addr, V3, "persist", false).await;
    assert!(present, "CONNACK session present = 1");
    for i in 0..5 {
        let publish = next_publish(&mut sub).await;
        assert_eq!(publish.payload, format!("m{i}").as_bytes(), "in order");
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        assert!(!publish.dup, "never sent before");
        sub.send(&Packet::PubAck(PubResp::new(publish.pkid))).await;
    }
    raw_ping(&mut sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_clean_session_discards_the_stored_session() {
    let (broker, addr) = start().await;
    stored_v311_subscriber(&broker, addr, "persist", "q/t", QoS::AtLeastOnce).await;
    let mut publisher = raw_connected(addr, V3, "pub").await;
    raw_publish(&mut publisher, "q/t", b"queued", QoS::AtLeastOnce, 1).await;
    assert_eq!(broker.subscription_count(), 1);

    let (mut sub, present) = raw_session(addr, V3, "persist", true).await;
    assert!(!present, "CONNACK session present = 0");
    raw_ping(&mut sub).await; // nothing queued arrived before
    assert_eq!(
        broker.subscription_count(),
        0,
        "the old subscription is gone"
    );
    raw_publish(&mut publisher, "q/t", b"later", QoS::AtLeastOnce, 2).await;
    raw_ping(&mut sub).await; // nor anything published after
    assert_eq!(broker.offline_session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_ends_after_its_expiry_interval() {
    let (broker, addr) = start().await;
    let (mut sub, present) = v5_session(addr, "expiring", false, Some(1)).await;
    assert!(!present);
    raw_subscribe(&mut sub, 1, "e/t", QoS::AtLeastOnce).await;
    raw_disconnect(sub).await;
    let disconnected = Instant::now();
    eventually(|| broker.offline_session_count() == 1).await;
    assert_eq!(broker.subscription_count(), 1);

    eventually(|| broker.offline_session_count() == 0 && broker.session_count() == 0).await;
    assert!(
        disconnected.elapsed() >= Duration::from_millis(900),
        "ended after {:?}, before its 1 s expiry",
        disconnected.elapsed()
    );
    assert_eq!(broker.subscription_count(), 0);
    assert_eq!(broker.stats().sessions_expired, 1);

    let (_sub, present) = v5_session(addr, "expiring", false, Some(1)).await;
    assert!(!present, "the expired session is not resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_resumed_within_its_expiry_interval() {
    let (broker, addr) = start().await;
    let (mut sub, _) = v5_session(addr, "resumable", false, Some(30)).await;
    raw_subscribe(&mut sub, 1, "r/t", QoS::AtLeastOnce).await;
    raw_disconnect(sub).await;
    eventually(|| broker.offline_session_count() == 1).await;

    let mut publisher = raw_connected(addr, V5, "pub").await;
    raw_publish(&mut publisher, "r/t", b"while away", QoS::AtLeastOnce, 1).await;

    let (mut sub, present) = v5_session(addr, "resumable", false, Some(30)).await;
    assert!(present, "CONNACK session present");
    let publish = next_publish(&mut sub).await;
    assert_eq!(publish.payload, &b"while away"[..]);
    assert_eq!(broker.offline_session_count(), 0);
    assert_eq!(broker.session_count(), 2);
    assert_eq!(broker.stats().sessions_expired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_zero_expiry_session_ends_at_disconnect() {
    let (broker, addr) = start().await;
    let (mut sub, _) = v5_session(addr, "brief", true, None).await;
    raw_subscribe(&mut sub, 1, "b/t", QoS::AtLeastOnce).await;
    assert_eq!(
        (broker.session_count(), broker.subscription_count()),
        (1, 1)
    );
    raw_disconnect(sub).await;
    eventually(|| broker.session_count() == 0).await;
    assert_eq!(broker.subscription_count(), 0);
    assert_eq!(broker.offline_session_count(), 0);
    let (_sub, present) = v5_session(addr, "brief", false, None).await;
    assert!(!present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_qos1_is_resent_with_dup_until_acked() {
    let (broker, addr) = start().await;
    let (mut sub, _) = raw_session(addr, V3, "redeliver", false).await;
    raw_subscribe(&mut sub, 1, "d/t", QoS::AtLeastOnce).await;
    let mut publisher = raw_connected(addr, V3, "pub").await;
    raw_publish(&mut publisher, "d/t", b"once", QoS::AtLeastOnce, 9).await;

    let first = next_publish(&mut sub).await;
    assert!(!first.dup);
    assert_eq!(first.qos, QoS::AtLeastOnce);
    raw_disconnect(sub).await; // without PUBACK
    eventually(|| broker.offline_session_count() == 1).await;

    let (mut sub, present) = raw_session(addr, V3, "redeliver", false).await;
    assert!(present);
    let again = next_publish(&mut sub).await;
    assert!(again.dup, "a resend carries DUP=1");
    assert_eq!(again.pkid, first.pkid, "with the same packet id");
    assert_eq!((again.topic, again.payload), (first.topic, first.payload));
    sub.send(&Packet::PubAck(PubResp::new(again.pkid))).await;
    raw_ping(&mut sub).await;
    raw_disconnect(sub).await;
    eventually(|| broker.offline_session_count() == 1).await;

    let (mut sub, present) = raw_session(addr, V3, "redeliver", false).await;
    assert!(present);
    raw_ping(&mut sub).await; // acknowledged: not sent again
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_resume_after_pubrec_resends_pubrel_not_publish() {
    let (broker, addr) = start().await;
    let (mut sub, _) = raw_session(addr, V3, "q2", false).await;
    raw_subscribe(&mut sub, 1, "x/t", QoS::ExactlyOnce).await;
    let mut publisher = raw_connected(addr, V3, "pub").await;
    raw_publish(&mut publisher, "x/t", b"exactly", QoS::ExactlyOnce, 3).await;

    let publish = next_publish(&mut sub).await;
    assert_eq!(publish.qos, QoS::ExactlyOnce);
    sub.send(&Packet::PubRec(PubResp::new(publish.pkid))).await;
    match sub.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.pkid, publish.pkid),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    raw_disconnect(sub).await; // without PUBCOMP
    eventually(|| broker.offline_session_count() == 1).await;

    let (mut sub, present) = raw_session(addr, V3, "q2", false).await;
    assert!(present);
    match sub.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.pkid, publish.pkid),
        other => panic!("expected PUBREL again, got {other:?}"),
    }
    sub.send(&Packet::PubComp(PubResp::new(publish.pkid))).await;
    raw_ping(&mut sub).await;
    raw_disconnect(sub).await;
    eventually(|| broker.offline_session_count() == 1).await;

    let (mut sub, _) = raw_session(addr, V3, "q2", false).await;
    raw_ping(&mut sub).await; // the flow is complete: nothing more
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_keeps_the_first_messages_up_to_its_bound() {
    let (broker, addr) = start_with(|c| c.mqtt.max_queued_messages = 5).await;
    stored_v311_subscriber(&broker, addr, "bounded", "b/t", QoS::AtLeastOnce).await;
    let mut publisher = raw_connected(addr, V3, "pub").await;
    for i in 0..10u16 {
        raw_publish(
            &mut publisher,
            "b/t",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        )
        .await;
    }
    assert_eq!(broker.stats().dropped_queue_full, 5);

    let (mut sub, present) = raw_session(addr, V3, "bounded", false).await;
    assert!(present);
    for i in 0..5 {
        let publish = next_publish(&mut sub).await;
        assert_eq!(
            publish.payload,
            format!("m{i}").as_bytes(),
            "the first five, in order"
        );
        sub.send(&Packet::PubAck(PubResp::new(publish.pkid))).await;
    }
    raw_ping(&mut sub).await; // exactly five
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_session_does_not_queue_qos0() {
    let (broker, addr) = start().await;
    stored_v311_subscriber(&broker, addr, "no-qos0", "z/t", QoS::AtLeastOnce).await;
    let mut publisher = raw_connected(addr, V3, "pub").await;
    for i in 0..3 {
        raw_publish(
            &mut publisher,
            "z/t",
            format!("q0-{i}").as_bytes(),
            QoS::AtMostOnce,
            0,
        )
        .await;
    }
    assert_eq!(broker.stats().dropped_offline_qos0, 3);
    let (mut sub, present) = raw_session(addr, V3, "no-qos0", false).await;
    assert!(present);
    raw_ping(&mut sub).await; // nothing queued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_session_queues_qos0_when_configured() {
    let (broker, addr) = start_with(|c| c.mqtt.queue_qos0_offline = true).await;
    stored_v311_subscriber(&broker, addr, "qos0", "z/t", QoS::AtLeastOnce).await;
    let mut publisher = raw_connected(addr, V3, "pub").await;
    for i in 0..3 {
        raw_publish(
            &mut publisher,
            "z/t",
            format!("q0-{i}").as_bytes(),
            QoS::AtMostOnce,
            0,
        )
        .await;
    }
    assert_eq!(broker.stats().dropped_offline_qos0, 0);
    let (mut sub, present) = raw_session(addr, V3, "qos0", false).await;
    assert!(present);
    for i in 0..3 {
        let publish = next_publish(&mut sub).await;
        assert_eq!(publish.payload, format!("q0-{i}").as_bytes());
        assert_eq!(publish.qos, QoS::AtMostOnce);
    }
    raw_ping(&mut sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_disconnects_v5_clients_with_0x8b() {
    let (broker, addr) = start().await;
    let mut v5 = raw_connected(addr, V5, "five").await;
    let mut v3 = raw_connected(addr, V3, "three").await;
    raw_ping(&mut v5).await;
    assert!(
        within(broker.shutdown()).await,
        "every task ended within the grace period"
    );
    assert_eq!(
        v5.until_closed().await,
        [Packet::Disconnect(Disconnect {
            reason: reason::SERVER_SHUTTING_DOWN,
            ..Default::default()
        })]
    );
    assert_eq!(v3.until_closed().await, []);
    // Nobody is listening any more.
    let refused = within(tokio::net::TcpStream::connect(addr)).await;
    assert!(refused.is_err(), "the listener is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_takeover_of_a_clean_session_does_not_resume_it() {
    // MQTT-3.1.2-6: a clean session lasts as long as its network connection; the takeover
    // closes that connection, so a clean session = 0 CONNECT finds no session.
    let (broker, addr) = start().await;
    let (mut a, _) = raw_session(addr, V3, "dup", true).await;
    raw_subscribe(&mut a, 1, "t/a", QoS::AtLeastOnce).await;
    let (mut b, present) = raw_session(addr, V3, "dup", false).await;
    assert_eq!(a.until_closed().await, []);
    assert!(!present, "CONNACK session present must be 0");
    raw_ping(&mut b).await;
    eventually(|| broker.subscription_count() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_takeover_of_a_zero_expiry_session_does_not_resume_it() {
    // MQTT 3.1.2.11.2: with Session Expiry 0 the session ends when the network connection
    // closes, which the takeover does.
    let (broker, addr) = start().await;
    let (mut a, _) = v5_session(addr, "dup", true, None).await;
    raw_subscribe(&mut a, 1, "t/a", QoS::AtLeastOnce).await;
    let (mut b, present) = v5_session(addr, "dup", false, Some(60)).await;
    assert_eq!(a.until_closed().await.len(), 1, "DISCONNECT 0x8E");
    assert!(!present, "CONNACK session present must be 0");
    raw_ping(&mut b).await;
    eventually(|| broker.subscription_count() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_right_after_disconnect_of_a_clean_session_finds_no_session() {
    // The session of a clean session client ends with its DISCONNECT, however quickly the
    // client comes back. The new connection is opened first to make the race likely.
    let (broker, addr) = start().await;
    for round in 0..20 {
        let (mut a, _) = raw_session(addr, V3, "quick", true).await;
        raw_subscribe(&mut a, 1, "t/q", QoS::AtLeastOnce).await;
        let mut b = Raw::connect(addr, V3).await;
        let connect = connect_packet(V3, "quick", false);
        let (_, (b_first, _)) = tokio::join!(raw_disconnect_now(&mut a), async {
            b.send(&connect).await;
            (b.recv().await, ())
        });
        match b_first {
            Some(Packet::ConnAck(ack)) => {
                assert!(
                    !ack.session_present,
                    "round {round}: session present after clean DISCONNECT"
                )
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw_disconnect(b).await;
        let _ = a.until_closed().await;
        // b (clean session = 0) is stored; a clean session connection ends it.
        eventually(|| broker.offline_session_count() == 1).await;
        let (c, _) = raw_session(addr, V3, "quick", true).await;
        raw_disconnect(c).await;
        eventually(|| broker.session_count() == 0 && broker.subscription_count() == 0).await;
    }
}

async fn raw_disconnect_now(raw: &mut Raw) {
    raw.send(&Packet::Disconnect(Default::default())).await;
}
