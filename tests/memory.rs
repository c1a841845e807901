//! What a stuck subscriber costs: the queue limits count the bytes a message really holds
//! (topic, properties, payload), and a stored message holds its own bytes, not the read buffer
//! it arrived in. Alone in its file (one process) so that the process's RSS means something.

mod common;

use bytes::Bytes;
use common::*;
use warren::protocol::{Packet, ProtocolVersion, PublishProperties, QoS};

/// Resident set size of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// The old core counted payload bytes only: a subscriber that stopped reading, fed 1-byte
/// payloads with about 1 MiB of user properties each, held 962 MB against a 16 MiB limit.
/// Here 300 messages of 1 byte with 120 KiB of user properties each (36 MB on the wire) go to
/// a stuck subscriber whose queue may hold 4 MiB: the queue stays within its limit and the
/// process grows by a small multiple of it, not by the 36 MB sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscribers_queue_is_bounded_by_the_bytes_it_holds() {
    const LIMIT: usize = 4 << 20;
    let (broker, addr) = start_with(|c| c.mqtt.max_queued_bytes = LIMIT).await;
    let mut stuck = raw_small_window(addr, ProtocolVersion::V5).await;
    stuck
        .send(&connect_packet(ProtocolVersion::V5, "stuck", true))
        .await;
    assert!(matches!(stuck.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(
        raw_subscribe(&mut stuck, 1, "heavy", QoS::AtMostOnce).await,
        vec![0]
    );

    let value = "v".repeat(1024);
    let mut properties = PublishProperties::default();
    for i in 0..120 {
        properties.user_properties.push(&format!("k{i}"), &value);
    }
    let before = rss();
    let mut publisher = raw_connected(addr, ProtocolVersion::V5, "heavy-pub").await;
    for _ in 0..300 {
        publisher
            .send(&Packet::Publish(warren::protocol::Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "heavy".into(),
                pkid: 0,
                properties: properties.clone(),
                payload: Bytes::from_static(b"x"),
            }))
            .await;
    }
    raw_ping(&mut publisher).await;
    let (queued, bytes) = broker.queued();
    assert!(queued > 0, "some messages wait");
    assert!(bytes <= LIMIT, "queue holds {bytes} bytes, limit {LIMIT}");
    assert!(
        broker.stats().dropped_queue_full > 0,
        "the rest was dropped and counted"
    );
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 4 * LIMIT,
        "process grew by {grown} bytes for a {LIMIT}-byte queue"
    );
}
