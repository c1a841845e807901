//! Causal order across connections: B sends SUBSCRIBE without waiting for SUBACK, then A
//! publishes; B gets the message. The spec only promises delivery after SUBACK, but client test
//! suites and users expect the broker to handle first what it read first, as Mosquitto does.

mod common;

use common::*;
use warren::protocol::{Packet, ProtocolVersion, QoS};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

async fn tries(rounds: usize) -> usize {
    // WARREN_CAUSAL_ADDR measures a broker started elsewhere (e.g. the release binary).
    let external = std::env::var("WARREN_CAUSAL_ADDR").ok();
    let (_broker, addr) = match &external {
        Some(addr) => (None, addr.parse().expect("WARREN_CAUSAL_ADDR is host:port")),
        None => {
            let (broker, addr) = start().await;
            (Some(broker), addr)
        }
    };
    let mut a = raw_connected(addr, V3, "causal-a").await;
    let mut misses = 0;
    for round in 0..rounds {
        let mut b = raw_connected(addr, V3, "causal-b").await;
        let topic = format!("causal/{round}");
        b.send(&Packet::Subscribe(warren::protocol::Subscribe {
            pkid: 1,
            filters: vec![(topic.as_str().into(), Default::default())],
            properties: Default::default(),
        }))
        .await;
        a.send(&Packet::Publish(warren::protocol::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.as_str().into(),
            pkid: 0,
            properties: Default::default(),
            payload: bytes::Bytes::from_static(b"after subscribe"),
        }))
        .await;
        raw_ping(&mut a).await; // A's publish has been routed
        b.send(&Packet::PingReq).await;
        let mut got = false;
        loop {
            match b.recv().await {
                Some(Packet::PingResp) => break,
                Some(Packet::Publish(_)) => got = true,
                Some(_) => {}
                None => panic!("closed"),
            }
        }
        misses += usize::from(!got);
        raw_disconnect(b).await;
    }
    misses
}

fn rounds() -> usize {
    std::env::var("WARREN_CAUSAL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50)
}

/// On one thread (`[runtime] worker_threads = 1`, or the binary pinned to one CPU) the broker
/// handles connections' input in the order it arrived: never a miss.
#[test]
fn on_one_thread_a_subscribe_read_before_a_publish_is_handled_first() {
    let runtime = warren::runtime::current_thread().expect("runtime");
    let rounds = rounds();
    let misses = runtime.block_on(tries(rounds));
    assert_eq!(misses, 0, "{misses} of {rounds} missed");
}

/// On several threads two connections' input is handled in parallel, so order across them is
/// not guaranteed; this measures how often (set WARREN_CAUSAL_ADDR to measure a running
/// binary). Not a pass/fail figure: README and the closing note report it.
#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn on_several_threads_how_often_a_subscribe_loses_the_race() {
    let runtime = warren::runtime::multi_thread(2).expect("runtime");
    let rounds = rounds();
    let misses = runtime.block_on(tries(rounds));
    println!("{misses} of {rounds} missed");
}
