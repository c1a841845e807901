//! The in-process side of the AMQP bridge, without RabbitMQ: what the bridge sees of the broker
//! (deliveries with an Ack the device's PUBACK waits for, publishes that resolve once owned,
//! No Local between the bridge's own clients).

mod common;

use bytes::Bytes;
use common::*;
use warren::bridge::InProcessSide;
use warren::protocol::{Packet, ProtocolVersion, Publish, QoS};
use warren_bridge::{AckResult, BridgeMessage, Filter, MqttSide, Published};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn publish(topic: &str, qos: QoS, pkid: u16) -> Packet {
    let mut properties = warren::protocol::PublishProperties::default();
    properties.user_properties.push("unit", "C");
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        pkid,
        properties,
        payload: Bytes::from_static(b"21.5"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_puback_waits_for_the_bridges_ack() {
    let (broker, addr) = start().await;
    let side = InProcessSide::new(broker.core());
    let mut subscription = side
        .subscribe(vec![Filter {
            filter: "e2e/#".into(),
            qos: 2,
        }])
        .await
        .expect("subscribe");
    let mut device = raw_connected(addr, V5, "dev1").await;
    device
        .send(&publish("e2e/dev1/temp", QoS::AtLeastOnce, 1))
        .await;
    let delivery = within(subscription.recv()).await.expect("delivery");
    assert_eq!(delivery.message.topic, "e2e/dev1/temp");
    assert_eq!(delivery.message.qos, 1);
    assert_eq!(delivery.client_id.as_deref(), Some(&b"dev1"[..]));
    assert_eq!(
        delivery.message.properties.user_properties,
        vec![("unit".to_owned(), "C".to_owned())]
    );
    // No PUBACK before the bridge owns it.
    device.send(&Packet::PingReq).await;
    assert!(matches!(device.recv().await, Some(Packet::PingResp)));
    delivery.ack.complete(AckResult::Owned);
    match device.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!((ack.pkid, ack.reason), (1, 0)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // A refusal (RabbitMQ nacked and retries ran out) reaches the device.
    device
        .send(&publish("e2e/dev1/temp", QoS::AtLeastOnce, 2))
        .await;
    let delivery = within(subscription.recv()).await.expect("delivery");
    delivery.ack.complete(AckResult::Refused(0x97));
    match device.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!((ack.pkid, ack.reason), (2, 0x97)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridges_publish_reaches_devices_and_not_itself() {
    let (broker, addr) = start().await;
    let side = InProcessSide::new(broker.core());
    let mut own = side
        .subscribe(vec![Filter {
            filter: "cmd/#".into(),
            qos: 2,
        }])
        .await
        .expect("subscribe");
    let mut device = raw_connected(addr, ProtocolVersion::V3_1_1, "dev2").await;
    assert_eq!(
        raw_subscribe(&mut device, 1, "cmd/dev2", QoS::AtLeastOnce).await,
        vec![1]
    );
    let command = BridgeMessage {
        topic: "cmd/dev2".into(),
        payload: Bytes::from_static(b"reboot"),
        qos: 1,
        retain: false,
        properties: Default::default(),
    };
    assert_eq!(
        within(side.publish(command.clone())).await.unwrap(),
        Published::Accepted
    );
    match device.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"reboot"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    let nobody = BridgeMessage {
        topic: "cmd/nobody".into(),
        ..command
    };
    assert_eq!(
        within(side.publish(nobody)).await.unwrap(),
        Published::NoMatchingSubscribers
    );
    // The bridge's own subscription did not get its publishes back (No Local): the first thing
    // it gets is what a device published after them.
    raw_publish(&mut device, "cmd/from-device", b"x", QoS::AtMostOnce, 0).await;
    let first = within(own.recv()).await.expect("delivery");
    assert_eq!(first.message.topic, "cmd/from-device");
}
