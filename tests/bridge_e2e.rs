//! The AMQP bridge inside Warren, against a real RabbitMQ (the node `scripts/test` starts:
//! `WARREN_TEST_AMQP_URL`): issue 10's example configuration, as written, with devices on real
//! sockets. The bridge's own behaviours (returns, nacks, outages, the spool, standalone mode)
//! are tested in `bridge/tests`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use warren::protocol::{Packet, ProtocolVersion, Publish, QoS};

fn amqp_url() -> Option<String> {
    match std::env::var("WARREN_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("WARREN_TEST_RABBITMQ_REQUIRED").is_ok_and(|v| v == "1") => {
            panic!("WARREN_TEST_RABBITMQ_REQUIRED is set but WARREN_TEST_AMQP_URL is not")
        }
        _ => {
            eprintln!("SKIPPED: needs RabbitMQ (run scripts/test, or set WARREN_TEST_AMQP_URL)");
            None
        }
    }
}

/// Issue 10's example, with the test's URL and names unique to this run.
fn example(url: &str, commands: &str) -> String {
    format!(
        r#"
[bridge]
enabled = true
url = "{url}"

[[bridge.outbound]]
filter = "e2e/#"
exchange = "amq.topic"
ack = "confirmed"

[[bridge.inbound]]
queue = "{commands}"
exchange = "amq.topic"
bindings = ["cmd.#"]
qos = 1
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_example_carries_device_traffic_both_ways() {
    let Some(url) = amqp_url() else { return };
    let commands = format!("warren.commands.{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("warren-bridge-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("warren.toml");
    std::fs::write(&path, example(&url, &commands)).unwrap();
    let mut config = warren::Config::load(Some(&path), Some(Default::default())).expect("config");
    let tests = warren::Config::for_tests();
    config.listeners = tests.listeners;
    config.metrics = tests.metrics;
    config.admin = tests.admin;
    config.mqtt.shutdown_grace_secs = 1;
    let broker = warren::Broker::start(config).await.expect("broker starts");
    let addr = broker.local_addr("tcp").unwrap();

    // The backend's queue for device telemetry.
    let amqp = within(Connection::connect(&url, ConnectionProperties::default()))
        .await
        .expect("AMQP");
    let ch = amqp.create_channel().await.unwrap();
    let telemetry = format!("telemetry.{}", std::process::id());
    ch.queue_declare(
        telemetry.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        telemetry.as_str().into(),
        "amq.topic".into(),
        "e2e.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    eventually(|| {
        broker.bridge_snapshot().is_some_and(|s| {
            s.outbound.iter().all(|r| r.subscribed) && s.inbound.iter().all(|r| r.consuming)
        })
    })
    .await;

    // Device → Warren → RabbitMQ: the PUBACK comes once RabbitMQ confirmed.
    let mut device = raw_connected(addr, ProtocolVersion::V5, "dev1").await;
    let mut properties = warren::protocol::PublishProperties::default();
    properties.user_properties.push("unit", "C");
    device
        .send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "e2e/v1.2/temp".into(),
            pkid: 1,
            properties,
            payload: Bytes::from_static(b"21.5"),
        }))
        .await;
    match device.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!((ack.pkid, ack.reason), (1, 0)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let mut consumer = ch
        .basic_consume(
            telemetry.as_str().into(),
            "e2e-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = within(consumer.next())
        .await
        .expect("consumer open")
        .expect("delivery");
    assert_eq!(delivery.routing_key.as_str(), "e2e.v1%2E2.temp");
    assert_eq!(&delivery.data[..], b"21.5");
    assert_eq!(
        delivery.properties.delivery_mode(),
        &Some(2),
        "persistent for QoS 1"
    );
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let header = |k: &str| match headers.inner().get(k) {
        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
        Some(other) => Some(format!("{other:?}")),
        None => None,
    };
    assert_eq!(header("unit").as_deref(), Some("C"));
    assert!(
        headers
            .inner()
            .values()
            .any(|v| matches!(v, AMQPValue::LongString(s) if s.to_string() == "dev1")),
        "the client id is in the headers: {headers:?}"
    );

    // Backend → RabbitMQ → Warren → device.
    let mut target = raw_connected(addr, ProtocolVersion::V3_1_1, "dev2").await;
    assert_eq!(
        raw_subscribe(&mut target, 1, "cmd/dev2", QoS::AtLeastOnce).await,
        vec![1]
    );
    ch.basic_publish(
        "amq.topic".into(),
        "cmd.dev2".into(),
        BasicPublishOptions::default(),
        b"reboot",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    match within(target.recv()).await {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic, "cmd/dev2");
            assert_eq!(&p.payload[..], b"reboot");
            assert_eq!(p.qos, QoS::AtLeastOnce);
        }
        other => panic!("expected the command, got {other:?}"),
    }
    // The bridge's metrics are at /metrics beside the broker's.
    let metrics = broker.render_metrics();
    assert!(
        metrics.contains("warren_bridge_confirmed_total"),
        "{metrics}"
    );
    assert!(within(broker.shutdown()).await);
    let _ = tokio::time::timeout(Duration::from_secs(5), amqp.close(0, "done".into())).await;
    let _ = std::fs::remove_dir_all(&dir);
}
