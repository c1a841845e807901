//! Bridged QoS 1 throughput against a plain lapin publisher, same RabbitMQ node, same queue,
//! same run (`scripts/bench-bridge` starts the node and Mosquitto and runs this).
//!
//! - `lapin`: one publisher, confirms on, persistent, up to 256 publications awaiting confirm
//!   (the bridge's default `max_in_flight`), to `amq.topic` with a key bound to the queue.
//! - `lapin-headers`: the same, with the properties and headers the bridge adds (message id,
//!   timestamp, app id, `x-mqtt-*`): what RabbitMQ pays for the metadata, apart from the bridge.
//! - `bridged`: one MQTT 5 device publishes QoS 1 to Mosquitto, the standalone bridge
//!   (`ack = "confirmed"`) carries it to the same exchange and queue; done when the bridge
//!   has completed every ack (RabbitMQ confirmed them all).
//! - `bridged-memory`: the same bridge rule fed by an in-memory MQTT side (QoS 1 deliveries
//!   with acks, no broker, no socket): the bridge's own cost, roughly what the in-process
//!   mode adds on top of the broker. Done when every ack completed.
//!
//! - `spooled`: the in-memory side into an `ack = "spooled"` rule: acks complete once the
//!   messages are fsynced in the spool (group commit), forwarded to RabbitMQ behind.
//! - `spool-replay`: a spooled rule fills its spool while RabbitMQ is unreachable (a closed
//!   port); a new bridge on the same spool and the real node forwards it: messages per second
//!   from its start until the spool is empty and everything is confirmed.
//!
//! Each round purges the queue first. Prints one JSON line per round and the ratio last.
//! Environment: `WARREN_BENCH_AMQP_URL`, `WARREN_BENCH_MQTT_PORT`, `WARREN_BENCH_MESSAGES`
//! (default 50 000), `WARREN_BENCH_ROUNDS` (default 2), `WARREN_BENCH_PAYLOAD` (bytes, 100).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};
use warren_bridge::{
    Ack, AckResult, Bridge, BridgeConfig, BridgeMessage, Delivery, Filter, MqttSide, Published,
    Subscription,
};

/// An MQTT side in memory: `subscribe` hands out a channel the benchmark fills.
struct MemorySide {
    tx: tokio::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Delivery>>>,
}

impl MqttSide for MemorySide {
    type Error = std::io::Error;
    async fn publish(&self, _m: BridgeMessage) -> Result<Published, Self::Error> {
        Ok(Published::Accepted)
    }
    async fn subscribe(&self, _f: Vec<Filter>) -> Result<Subscription, Self::Error> {
        match self.tx.lock().await.take() {
            Some(rx) => Ok(Subscription::new(rx)),
            None => Err(std::io::Error::other("one subscription only")),
        }
    }
}

fn env<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("WARREN_BENCH_AMQP_URL") else {
        eprintln!("throughput: set WARREN_BENCH_AMQP_URL and WARREN_BENCH_MQTT_PORT (scripts/bench-bridge does)");
        return;
    };
    let mqtt_port: u16 = env("WARREN_BENCH_MQTT_PORT", 1883);
    let n: usize = env("WARREN_BENCH_MESSAGES", 50_000);
    let rounds: usize = env("WARREN_BENCH_ROUNDS", 2);
    let payload = vec![b'x'; env("WARREN_BENCH_PAYLOAD", 100)];

    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("AMQP connect");
    let ch = conn.create_channel().await.expect("channel");
    let queue = "warren.bench.bridge";
    ch.queue_declare(queue.into(), Default::default(), FieldTable::default())
        .await
        .expect("declare");
    ch.queue_bind(
        queue.into(),
        "amq.topic".into(),
        "bench.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");

    let mut config = BridgeConfig {
        enabled: true,
        url: url.clone(),
        ..BridgeConfig::default()
    };
    config
        .outbound
        .push(warren_bridge::config::OutboundRule::new("bench/#"));
    config.mqtt = Some(warren_bridge::config::StandaloneMqtt {
        port: mqtt_port,
        client_id: "warren-bench-bridge".into(),
        ..Default::default()
    });
    let side = warren_bridge::standalone::connect(config.mqtt.as_ref().unwrap()).expect("side");
    let bridge = Bridge::start(&config, side.clone()).expect("bridge");
    while !bridge.snapshot().outbound[0].subscribed {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (device, mut eventloop) = AsyncClient::new(
        {
            let mut o = MqttOptions::new("warren-bench-device", "127.0.0.1", mqtt_port);
            o.set_keep_alive(Duration::from_secs(30));
            o
        },
        10_000,
    );
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    // The in-memory side and its own bridge.
    let (mem_tx, mem_rx) = tokio::sync::mpsc::channel(1024);
    let mem_side = Arc::new(MemorySide {
        tx: tokio::sync::Mutex::new(Some(mem_rx)),
    });
    let mut mem_config = config.clone();
    mem_config.mqtt = None;
    let mem_bridge = Bridge::start(&mem_config, mem_side).expect("memory bridge");
    while !mem_bridge.snapshot().outbound[0].subscribed {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let spool_dir = tempfile::tempdir().expect("spool dir");
    let spooled_config = |url: &str, file: &str| {
        let mut c = mem_config.clone();
        c.url = url.to_string();
        c.outbound[0].ack = warren_bridge::config::AckMode::Spooled;
        c.spool = Some(warren_bridge::config::SpoolConfig {
            path: spool_dir.path().join(file),
            max_messages: 10_000_000,
            max_bytes: 1 << 34,
        });
        c
    };
    let mut spooled_rates = Vec::new();
    let mut replay_rates = Vec::new();

    let mut lapin_rates = Vec::new();
    let mut bridged_rates = Vec::new();
    let mut memory_rates = Vec::new();
    let mut headers_rates = Vec::new();
    let mut acked_before = 0;
    for round in 0..rounds {
        ch.queue_purge(queue.into(), Default::default())
            .await
            .expect("purge");
        let rate = plain_lapin(&conn, n, &payload, false).await;
        println!(r#"{{"scenario":"lapin","round":{round},"messages":{n},"msgs_per_s":{rate:.0}}}"#);
        lapin_rates.push(rate);
        ch.queue_purge(queue.into(), Default::default())
            .await
            .expect("purge");
        let rate = plain_lapin(&conn, n, &payload, true).await;
        println!(
            r#"{{"scenario":"lapin-headers","round":{round},"messages":{n},"msgs_per_s":{rate:.0}}}"#
        );
        headers_rates.push(rate);

        ch.queue_purge(queue.into(), Default::default())
            .await
            .expect("purge");
        let start = Instant::now();
        let body = Arc::new(payload.clone());
        let dev = device.clone();
        let publisher = tokio::spawn(async move {
            for _ in 0..n {
                dev.publish(
                    "bench/d1/data",
                    QoS::AtLeastOnce,
                    false,
                    body.as_ref().clone(),
                )
                .await
                .expect("publish");
            }
        });
        let target = acked_before + n as u64;
        while bridge.snapshot().outbound[0].counts.acked < target {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        publisher.await.expect("publisher");
        acked_before = target;
        println!(
            r#"{{"scenario":"bridged","round":{round},"messages":{n},"msgs_per_s":{rate:.0}}}"#
        );
        bridged_rates.push(rate);

        ch.queue_purge(queue.into(), Default::default())
            .await
            .expect("purge");
        let rate = memory(&mem_tx, n, &payload).await;
        println!(
            r#"{{"scenario":"bridged-memory","round":{round},"messages":{n},"msgs_per_s":{rate:.0}}}"#
        );
        memory_rates.push(rate);

        ch.queue_purge(queue.into(), Default::default())
            .await
            .expect("purge");
        let (tx, b) = memory_bridge(&spooled_config(&url, &format!("s{round}.redb"))).await;
        let rate = memory(&tx, n, &payload).await;
        println!(
            r#"{{"scenario":"spooled","round":{round},"messages":{n},"msgs_per_s":{rate:.0}}}"#
        );
        spooled_rates.push(rate);
        while b.snapshot().outbound[0].spool_messages > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        b.shutdown().await;

        ch.queue_purge(queue.into(), Default::default())
            .await
            .expect("purge");
        let file = format!("r{round}.redb");
        let dead = "amqp://guest:guest@127.0.0.1:1/%2f";
        let (tx, b) = memory_bridge(&spooled_config(dead, &file)).await;
        memory(&tx, n, &payload).await;
        b.shutdown().await;
        let start = Instant::now();
        let (_tx, b) = memory_bridge(&spooled_config(&url, &file)).await;
        loop {
            let o = &b.snapshot().outbound[0];
            if o.counts.confirmed >= n as u64 && o.spool_messages == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        println!(
            r#"{{"scenario":"spool-replay","round":{round},"messages":{n},"msgs_per_s":{rate:.0}}}"#
        );
        replay_rates.push(rate);
        b.shutdown().await;
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let ratio = best(&bridged_rates) / best(&lapin_rates);
    let memory_ratio = best(&memory_rates) / best(&lapin_rates);
    let headers_ratio = best(&memory_rates) / best(&headers_rates);
    println!(
        r#"{{"spooled_best":{:.0},"spool_replay_best":{:.0}}}"#,
        best(&spooled_rates),
        best(&replay_rates)
    );
    println!(
        r#"{{"ratio_bridged_over_lapin":{ratio:.3},"ratio_memory_over_lapin":{memory_ratio:.3},"ratio_memory_over_lapin_headers":{headers_ratio:.3},"lapin_best":{:.0},"lapin_headers_best":{:.0},"bridged_best":{:.0},"memory_best":{:.0}}}"#,
        best(&lapin_rates),
        best(&headers_rates),
        best(&bridged_rates),
        best(&memory_rates)
    );
    bridge.shutdown().await;
    mem_bridge.shutdown().await;
    ch.queue_delete(queue.into(), Default::default()).await.ok();
}

/// A bridge on a fresh in-memory side; its delivery sender.
async fn memory_bridge(
    config: &BridgeConfig,
) -> (
    tokio::sync::mpsc::Sender<Delivery>,
    warren_bridge::BridgeHandle,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let side = Arc::new(MemorySide {
        tx: tokio::sync::Mutex::new(Some(rx)),
    });
    let b = Bridge::start(config, side).expect("memory bridge");
    while !b.snapshot().outbound[0].subscribed {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (tx, b)
}

/// Feeds `n` QoS 1 deliveries to the in-memory bridge; messages per second until every ack
/// completed.
async fn memory(tx: &tokio::sync::mpsc::Sender<Delivery>, n: usize, payload: &[u8]) -> f64 {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    let feed = {
        let tx = tx.clone();
        let payload = bytes::Bytes::copy_from_slice(payload);
        tokio::spawn(async move {
            for _ in 0..n {
                let done = done_tx.clone();
                let d = Delivery {
                    message: BridgeMessage {
                        topic: "bench/d1/data".into(),
                        payload: payload.clone(),
                        qos: 1,
                        retain: false,
                        properties: Default::default(),
                    },
                    client_id: Some("d1".into()),
                    ack: Ack::new(move |r| {
                        let _ = done.send(r == AckResult::Owned);
                    }),
                };
                if tx.send(d).await.is_err() {
                    return;
                }
            }
        })
    };
    for _ in 0..n {
        assert_eq!(done_rx.recv().await, Some(true), "every ack owned");
    }
    feed.await.expect("feed");
    n as f64 / start.elapsed().as_secs_f64()
}

/// One publisher with confirms, up to 256 awaiting confirm; returns messages per second.
async fn plain_lapin(conn: &Connection, n: usize, payload: &[u8], headers: bool) -> f64 {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        let mut props = BasicProperties::default().with_delivery_mode(2);
        if headers {
            let mut h = FieldTable::default();
            h.insert(
                "x-mqtt-topic".into(),
                AMQPValue::LongString("bench/d1/data".into()),
            );
            h.insert(
                "x-mqtt-client-id".into(),
                AMQPValue::LongString("d1".into()),
            );
            h.insert("x-mqtt-qos".into(), AMQPValue::LongInt(1));
            h.insert("x-mqtt-retain".into(), AMQPValue::Boolean(false));
            props = props
                .with_headers(h)
                .with_message_id(format!("bench-{i}").as_str().into())
                .with_timestamp(1_700_000_000)
                .with_app_id("warren".into());
        }
        while pending.len() >= 256 {
            pending.next().await;
        }
        let confirm = ch
            .basic_publish(
                "amq.topic".into(),
                "bench.d1.data".into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                payload,
                props,
            )
            .await
            .expect("publish");
        pending.push(confirm);
    }
    while pending.next().await.is_some() {}
    let rate = n as f64 / start.elapsed().as_secs_f64();
    ch.close(200, "done".into()).await.ok();
    rate
}
