//! The disk store, in process: persistent sessions (subscriptions, queued messages, messages
//! in flight, incoming QoS 2 state) and retained messages survive a restart of the broker; a
//! failing disk (ENOSPC injected through the storage seam) refuses new persistent work with
//! 0x97 and recovers. The kill -9 cases run the real binary: `store_crash.rs`.

mod clients;
mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use warren::config::{Config, Fsync, StoreKind};
use warren::protocol::{self, ConnectReason, Packet, ProtocolVersion, PubResp, QoS};
use warren::store::disk::{DiskStore, FaultKind, Faults};
use warren::{Broker, BrokerHandle};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn disk_config(dir: &Path) -> Config {
    let mut config = Config::for_tests();
    config.store.kind = StoreKind::Disk;
    config.store.path = dir.join("warren.store");
    config.store.fsync = Fsync::Batch;
    config.store.batch_interval_ms = 1;
    config
}

async fn start_disk(dir: &Path) -> (BrokerHandle, std::net::SocketAddr) {
    let handle = Broker::start(disk_config(dir))
        .await
        .expect("broker starts");
    let addr = handle.local_addr("tcp").expect("tcp");
    (handle, addr)
}

fn publish(topic: &str, payload: &[u8], qos: QoS, pkid: u16, retain: bool) -> Packet {
    clients::publish(topic, payload, qos, pkid, retain)
}

/// Receives one PUBLISH (skipping nothing else).
async fn next_publish(raw: &mut Raw) -> protocol::Publish {
    match raw.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn persistent_sessions_queues_and_retained_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr) = start_disk(dir.path()).await;
    let (mut sub, present) = raw_session(addr, V4, "sub", false).await;
    assert!(!present);
    raw_subscribe(&mut sub, 1, "s/#", QoS::ExactlyOnce).await;
    raw_disconnect(sub).await;
    let mut publisher = raw_connected(addr, V4, "pub").await;
    raw_publish(&mut publisher, "s/1", b"one", QoS::AtLeastOnce, 1).await;
    raw_publish(&mut publisher, "s/2", b"two", QoS::ExactlyOnce, 2).await;
    raw_publish(&mut publisher, "s/0", b"zero", QoS::AtMostOnce, 0).await;
    publisher
        .send(&publish("r/t", b"kept", QoS::AtLeastOnce, 3, true))
        .await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    raw_disconnect(publisher).await;
    assert!(broker.shutdown().await);

    let (broker, addr) = start_disk(dir.path()).await;
    assert_eq!(broker.offline_session_count(), 1);
    assert_eq!(broker.retained_count(), 1);
    let (mut sub, present) = raw_session(addr, V4, "sub", false).await;
    assert!(present, "the session was restored");
    let one = next_publish(&mut sub).await;
    assert_eq!((&*one.topic, &one.payload[..]), ("s/1", &b"one"[..]));
    sub.send(&Packet::PubAck(PubResp::new(one.pkid))).await;
    let two = next_publish(&mut sub).await;
    assert_eq!((&*two.topic, two.qos), ("s/2", QoS::ExactlyOnce));
    // Not acknowledged: in flight when the broker stops.
    raw_ping(&mut sub).await;
    drop(sub);
    let mut other = raw_connected(addr, V4, "other").await;
    raw_subscribe(&mut other, 1, "r/#", QoS::AtLeastOnce).await;
    let kept = next_publish(&mut other).await;
    assert_eq!(
        (&*kept.topic, &kept.payload[..], kept.retain),
        ("r/t", &b"kept"[..], true)
    );
    assert!(broker.shutdown().await);

    // Again: the QoS 2 message in flight is resent with DUP and its packet id; the QoS 1 one,
    // acknowledged, is gone.
    let (broker, addr) = start_disk(dir.path()).await;
    let (mut sub, present) = raw_session(addr, V4, "sub", false).await;
    assert!(present);
    let again = next_publish(&mut sub).await;
    assert_eq!(
        (&*again.topic, again.pkid, again.dup),
        ("s/2", two.pkid, true)
    );
    sub.send(&Packet::PubRec(PubResp::new(again.pkid))).await;
    assert!(matches!(sub.recv().await, Some(Packet::PubRel(_))));
    sub.send(&Packet::PubComp(PubResp::new(again.pkid))).await;
    raw_ping(&mut sub).await;
    raw_disconnect(sub).await;
    assert!(broker.shutdown().await);

    let (broker, addr) = start_disk(dir.path()).await;
    let (mut sub, present) = raw_session(addr, V4, "sub", false).await;
    assert!(present);
    raw_ping(&mut sub).await; // nothing left to deliver
                              // A clean session ends the stored one for good.
    drop(sub);
    let (sub, present) = raw_session(addr, V4, "sub", true).await;
    assert!(present.eq(&false));
    raw_disconnect(sub).await;
    assert!(broker.shutdown().await);
    let (broker, _) = start_disk(dir.path()).await;
    assert_eq!(broker.offline_session_count(), 0);
    assert!(broker.shutdown().await);
}

#[tokio::test]
async fn a_qos2_publish_resent_after_a_restart_is_not_delivered_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr) = start_disk(dir.path()).await;
    let (mut sub, _) = raw_session(addr, V4, "sub", false).await;
    raw_subscribe(&mut sub, 1, "q/#", QoS::ExactlyOnce).await;
    raw_disconnect(sub).await;
    let (mut publisher, _) = raw_session(addr, V4, "pub", false).await;
    publisher
        .send(&publish("q/1", b"once", QoS::ExactlyOnce, 7, false))
        .await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    // No PUBREL: the broker stops with the packet id held.
    drop(publisher);
    assert!(broker.shutdown().await);

    let (broker, addr) = start_disk(dir.path()).await;
    let (mut publisher, present) = raw_session(addr, V4, "pub", false).await;
    assert!(present);
    let mut resent = publish("q/1", b"once", QoS::ExactlyOnce, 7, false);
    if let Packet::Publish(p) = &mut resent {
        p.dup = true;
    }
    publisher.send(&resent).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    publisher.send(&Packet::PubRel(PubResp::new(7))).await;
    match publisher.recv().await {
        Some(Packet::PubComp(c)) => assert_eq!((c.pkid, c.reason), (7, 0)),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    raw_disconnect(publisher).await;
    let (mut sub, _) = raw_session(addr, V4, "sub", false).await;
    let first = next_publish(&mut sub).await;
    assert_eq!(&first.payload[..], b"once");
    sub.send(&Packet::PubRec(PubResp::new(first.pkid))).await;
    assert!(matches!(sub.recv().await, Some(Packet::PubRel(_))));
    sub.send(&Packet::PubComp(PubResp::new(first.pkid))).await;
    raw_ping(&mut sub).await; // the barrier: no second copy
    raw_disconnect(sub).await;
    assert!(broker.shutdown().await);
}

#[tokio::test]
async fn a_failing_disk_refuses_new_persistent_work_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path());
    let faults = Faults::new();
    let store = Arc::new(DiskStore::open_with(&config.store, Some(faults.clone())).unwrap());
    let broker = Broker::start_with_store(config, Some(store.clone()))
        .await
        .unwrap();
    let addr = broker.local_addr("tcp").unwrap();
    let (mut sub, _) = raw_session(addr, V4, "sub", false).await;
    raw_subscribe(&mut sub, 1, "d/#", QoS::AtLeastOnce).await;
    let mut clean = raw_connected(addr, V5, "clean-sub").await;
    raw_subscribe(&mut clean, 1, "c/#", QoS::AtLeastOnce).await;
    let mut publisher = raw_connected(addr, V5, "pub").await;
    raw_publish(&mut publisher, "d/1", b"ok", QoS::AtLeastOnce, 1).await;
    let ok = next_publish(&mut sub).await;
    assert_eq!(ok.payload, &b"ok"[..]);
    sub.send(&Packet::PubAck(PubResp::new(ok.pkid))).await;
    raw_ping(&mut sub).await;
    // Offline: what is published for it now must be written.
    raw_disconnect(sub).await;

    faults.arm(0, FaultKind::NoSpace);
    publisher
        .send(&publish("d/2", b"full", QoS::AtLeastOnce, 2, false))
        .await;
    match publisher.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!((ack.pkid, ack.reason), (2, 0x97)),
        other => panic!("expected PUBACK 0x97, got {other:?}"),
    }
    // The refusal is remembered until a commit succeeds: new persistent work is refused at
    // once, new persistent sessions too; messages for clean sessions only still go through.
    let mut refused = Raw::connect(addr, V5).await;
    let mut connect = connect_packet(V5, "new", false);
    if let Packet::Connect(c) = &mut connect {
        c.properties.session_expiry_interval = Some(60);
    }
    refused.send(&connect).await;
    match refused.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ConnectReason::QuotaExceeded),
        other => panic!("expected CONNACK 0x97, got {other:?}"),
    }
    raw_publish(&mut publisher, "c/1", b"clean", QoS::AtLeastOnce, 3).await;
    assert_eq!(next_publish(&mut clean).await.payload, &b"clean"[..]);
    let (_, failures, refused_count) = store.counters();
    assert!(
        failures >= 1 && refused_count >= 1,
        "{failures} {refused_count}"
    );

    faults.heal();
    eventually(|| store.accepting_now()).await;
    raw_publish(&mut publisher, "d/3", b"again", QoS::AtLeastOnce, 4).await;
    // The refused message was queued in memory all the same: it may arrive (its publisher
    // was told it was not taken); the accepted one must.
    let (mut sub, present) = raw_session(addr, V4, "sub", false).await;
    assert!(present);
    let mut got = Vec::new();
    while got.last().map(|p: &protocol::Publish| &p.payload[..]) != Some(&b"again"[..]) {
        let p = next_publish(&mut sub).await;
        sub.send(&Packet::PubAck(PubResp::new(p.pkid))).await;
        got.push(p);
    }
    assert!(broker.shutdown().await);
}

#[tokio::test]
async fn a_file_that_is_not_a_store_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path());
    std::fs::write(&config.store.path, vec![0x5a; 8192]).unwrap();
    let error = match Broker::start(config).await {
        Ok(_) => panic!("started on a corrupt file"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("warren.store"), "{error}");
}

#[tokio::test]
async fn a_shared_subscription_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr) = start_disk(dir.path()).await;
    let (mut member, _) = raw_session(addr, V4, "member", false).await;
    assert_eq!(
        raw_subscribe(&mut member, 1, "$share/g/s/#", QoS::AtLeastOnce).await,
        [1]
    );
    raw_disconnect(member).await;
    assert!(broker.shutdown().await);

    let (broker, addr) = start_disk(dir.path()).await;
    assert_eq!(broker.subscription_count(), 1);
    // The group's only member is offline: it keeps the message queued.
    let mut publisher = raw_connected(addr, V4, "pub").await;
    raw_publish(&mut publisher, "s/1", b"one", QoS::AtLeastOnce, 1).await;
    let (mut member, present) = raw_session(addr, V4, "member", false).await;
    assert!(present);
    let one = next_publish(&mut member).await;
    assert_eq!((&*one.topic, &one.payload[..]), ("s/1", &b"one"[..]));
    raw_disconnect(member).await;
    raw_disconnect(publisher).await;
    assert!(broker.shutdown().await);
}

#[tokio::test]
async fn retained_messages_owed_to_a_new_subscription_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let mut config = disk_config(dir.path());
        config.mqtt.max_inflight = 1;
        let broker = Broker::start(config).await.expect("broker starts");
        let addr = broker.local_addr("tcp").unwrap();
        (broker, addr)
    };
    let (broker, addr) = start().await;
    let mut publisher = raw_connected(addr, V4, "pub").await;
    for i in 1..=5u16 {
        publisher
            .send(&publish(
                &format!("r/{i}"),
                b"kept",
                QoS::AtLeastOnce,
                i,
                true,
            ))
            .await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    }
    raw_disconnect(publisher).await;
    let (mut sub, _) = raw_session(addr, V4, "sub", false).await;
    raw_subscribe(&mut sub, 1, "r/#", QoS::AtLeastOnce).await;
    // A window of one: the first is in flight, four are still owed when the broker stops.
    let first = next_publish(&mut sub).await;
    drop(sub);
    assert!(broker.shutdown().await);

    let (broker, addr) = start().await;
    let (mut sub, present) = raw_session(addr, V4, "sub", false).await;
    assert!(present);
    let mut topics = std::collections::BTreeSet::new();
    while topics.len() < 5 {
        let p = next_publish(&mut sub).await;
        assert!(p.retain, "{p:?}");
        if p.dup {
            assert_eq!((&p.topic, p.pkid), (&first.topic, first.pkid));
        }
        topics.insert(p.topic.to_string());
        sub.send(&Packet::PubAck(PubResp::new(p.pkid))).await;
    }
    raw_ping(&mut sub).await;
    raw_disconnect(sub).await;
    assert!(broker.shutdown().await);
}

/// A small tmpfs, mounted for the test (root only: elsewhere the test says so and passes).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        let at = dir.join("small");
        std::fs::create_dir_all(&at).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then_some(SmallDisk(at))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A real full disk (a 3 MiB tmpfs, not an injected fault): QoS 1 messages for an offline
/// persistent session are acknowledged until the disk is full, then refused with 0x97; the
/// file moved to a disk with room, every acknowledged message is delivered.
#[tokio::test]
async fn a_real_full_disk_refuses_with_0x97_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(dir.path(), "3m") else {
        eprintln!("not run: mounting a tmpfs needs root");
        return;
    };
    let mut config = disk_config(&disk.0);
    config.mqtt.max_queued_messages = 100_000;
    config.mqtt.max_queued_bytes = 1 << 30;
    let broker = Broker::start(config.clone()).await.expect("broker starts");
    let addr = broker.local_addr("tcp").unwrap();
    let (mut sub, _) = raw_session(addr, V4, "sub", false).await;
    raw_subscribe(&mut sub, 1, "full/#", QoS::AtLeastOnce).await;
    raw_disconnect(sub).await;
    let mut publisher = raw_connected(addr, V5, "pub").await;
    let payload = vec![b'x'; 1024];
    let mut acked = Vec::new();
    let mut refused = false;
    for i in 1..=5000u16 {
        publisher
            .send(&publish(
                "full/t",
                &[&i.to_be_bytes()[..], &payload].concat(),
                QoS::AtLeastOnce,
                i,
                false,
            ))
            .await;
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) if ack.reason == 0 => acked.push(i),
            Some(Packet::PubAck(ack)) => {
                assert_eq!(ack.reason, 0x97);
                refused = true;
                break;
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert!(refused, "3 MiB took 5000 messages of 1 KiB");
    assert!(acked.len() > 100, "{} acknowledged", acked.len());
    drop(publisher);
    broker.shutdown().await;

    // The operator moves the file to a disk with room.
    let roomy = dir.path().join("roomy");
    std::fs::create_dir_all(&roomy).unwrap();
    std::fs::copy(&config.store.path, roomy.join("warren.store")).unwrap();
    drop(disk);
    let (broker, addr) = start_disk(&roomy).await;
    let (mut sub, present) = raw_session(addr, V4, "sub", false).await;
    assert!(present);
    let mut got = std::collections::BTreeSet::new();
    while got.len() < acked.len() {
        let p = next_publish(&mut sub).await;
        got.insert(u16::from_be_bytes([p.payload[0], p.payload[1]]));
        sub.send(&Packet::PubAck(PubResp::new(p.pkid))).await;
        if p.payload[..2] == acked.last().unwrap().to_be_bytes() {
            break;
        }
    }
    for i in &acked {
        assert!(got.contains(i), "acknowledged message {i} lost");
    }
    raw_disconnect(sub).await;
    assert!(broker.shutdown().await);
}
