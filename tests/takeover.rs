//! Connections whose output is stuck (a peer that stops reading: zero window, a dead mobile
//! link) and client-id takeovers: keep alive and takeover are still seen, a persistent session
//! survives the takeover, sessions end on every path, and claims of one client id are served
//! one at a time so that exactly one connection serves it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use warren::protocol::{Packet, ProtocolVersion, QoS};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A client `id` that subscribes to `fill` (QoS 0) and `data` (QoS 1), then stops reading while
/// `fill` is flooded until the broker's writes to it block.
async fn stuck_client(addr: std::net::SocketAddr, id: &str, clean: bool, keep_alive: u16) -> Raw {
    let mut raw = raw_small_window(addr, V3).await;
    raw.send(&with_keep_alive(connect_packet(V3, id, clean), keep_alive))
        .await;
    assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(
        raw_subscribe(&mut raw, 1, "fill", QoS::AtMostOnce).await,
        vec![0]
    );
    assert_eq!(
        raw_subscribe(&mut raw, 2, "data", QoS::AtLeastOnce).await,
        vec![1]
    );
    flood_qos0(addr, "fill", 300, 32 * 1024).await;
    raw
}

/// Keep alive 2 s (a 3 s window) closes a client whose output is stuck in about 3 s. The old
/// core awaited its writes outside its select and saw nothing: 21.6 s for keep alive 4 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_closes_a_client_whose_output_is_stuck() {
    let (broker, addr) = start().await;
    let _stuck = stuck_client(addr, "stuck-ka", true, 2).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), async {
        while broker.session_count() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still connected after {:?}", started.elapsed()));
    assert_eq!(broker.subscription_count(), 0);
}

/// A device whose old connection is stuck reconnects: the takeover is seen at once and the
/// persistent session (subscriptions, queue) comes back with `session present = 1`. The old
/// core gave up after 5 s and handed out a fresh session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_connection_hands_its_persistent_session_over() {
    let (broker, addr) = start().await;
    let _old = stuck_client(addr, "device", false, 60).await;
    let started = Instant::now();
    let (mut new, present) = raw_session(addr, V3, "device", false).await;
    assert!(present, "the persistent session was kept");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(broker.subscription_count(), 2);
    let mut publisher = raw_connected(addr, V3, "publisher").await;
    raw_publish(&mut publisher, "data", b"after", QoS::AtLeastOnce, 1).await;
    let seen = within(async {
        loop {
            match new.recv().await {
                Some(Packet::Publish(p)) if p.topic == "data" => return p,
                Some(_) => {}
                None => panic!("closed"),
            }
        }
    })
    .await;
    assert_eq!(&seen.payload[..], b"after");
}

/// A clean session whose stuck connection is taken over ends: its subscriptions leave the
/// trie (the old core dropped it without ending it when the write failed later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_clean_session_ends_with_its_subscriptions() {
    let (broker, addr) = start().await;
    let _old = stuck_client(addr, "clean-dev", true, 60).await;
    let (new, present) = raw_session(addr, V3, "clean-dev", true).await;
    assert!(!present);
    eventually(|| broker.subscription_count() == 0).await;
    raw_disconnect(new).await;
    eventually(|| broker.session_count() == 0).await;
}

/// A is stuck; B and C connect with A's id at once: afterwards exactly one of them is served
/// (the old core left both answering PINGREQ).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_takeovers_of_a_stuck_connection_leave_one_connection() {
    let (broker, addr) = start().await;
    let _a = stuck_client(addr, "abc", false, 60).await;
    let connect = |id: &'static str| async move { raw_session(addr, V3, id, false).await.0 };
    let (mut b, mut c) = tokio::join!(connect("abc"), connect("abc"));
    // The loser has been told to go; the winner answers.
    eventually(|| {
        broker
            .stats()
            .connections_by
            .values()
            .map(|c| c.current)
            .sum::<u64>()
            == 1
    })
    .await;
    let mut alive = 0;
    for raw in [&mut b, &mut c] {
        raw.send(&Packet::PingReq).await;
        loop {
            match raw.recv().await {
                Some(Packet::PingResp) => {
                    alive += 1;
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    assert_eq!(alive, 1);
    assert_eq!(broker.subscription_count(), 2, "one session, not two");
}

/// 100 connections race for one persistent client id: every one gets its CONNACK, and in the
/// end exactly one is connected and no claim is left behind (the old core: 58 left live, 142
/// CONNACKs never sent, out of 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_racing_connections_leave_exactly_one() {
    let (broker, addr) = start().await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(async move {
            let mut connect = connect_packet(V5, "racer", false);
            if let Packet::Connect(c) = &mut connect {
                c.properties.session_expiry_interval = Some(3600);
            }
            let (raw, first) = raw_connect_with(addr, V5, &connect).await;
            assert!(matches!(first, Some(Packet::ConnAck(_))), "{first:?}");
            raw
        }));
    }
    let mut connections = Vec::new();
    for task in tasks {
        connections.push(within(task).await.expect("every connection gets CONNACK"));
    }
    eventually(|| {
        broker
            .stats()
            .connections_by
            .values()
            .map(|c| c.current)
            .sum::<u64>()
            == 1
    })
    .await;
    assert_eq!(broker.session_count(), 1);
    assert_eq!(broker.claims_in_progress(), 0);
    assert_eq!(broker.stats().sessions_taken_over, 99);
}
