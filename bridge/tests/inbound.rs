//! AMQP → MQTT through the standalone bridge, and request/response across it.

mod common;

use bytes::Bytes;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;

use common::{amqp, config, start_bridge, take, unique, wait_until, Device, Mosquitto};

async fn publish(ch: &lapin::Channel, key: &str, body: &[u8], props: BasicProperties) {
    let confirm = ch
        .basic_publish(
            "amq.topic".into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .expect("publish");
    confirm.await.expect("confirm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_message_reaches_a_subscribed_device_with_its_headers() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let (t, q) = (unique("cmd"), unique("warren.commands"));
    let rules = format!(
        "[[bridge.inbound]]\nqueue = \"{q}\"\nexchange = \"amq.topic\"\nbindings = [\"{t}.#\"]\nqos = 1\nretain = true\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    let mut dev = Device::connect(m.port, &unique("dev")).await;
    dev.subscribe(&format!("{t}/#"), QoS::AtLeastOnce).await;
    let (_c, ch) = amqp(&url).await;
    let mut h = FieldTable::default();
    h.insert("origin".into(), AMQPValue::LongString("backend".into()));
    h.insert("attempt".into(), AMQPValue::LongInt(3));
    let props = BasicProperties::default()
        .with_headers(h)
        .with_content_type("text/plain".into());
    publish(&ch, &format!("{t}.dev1.reboot"), b"now", props).await;

    let p = dev.next().await;
    assert_eq!(p.topic, Bytes::from(format!("{t}/dev1/reboot")));
    assert_eq!(p.payload, Bytes::from_static(b"now"));
    assert_eq!(p.qos, QoS::AtLeastOnce);
    let pp = p.properties.expect("v5 properties");
    assert_eq!(pp.content_type.as_deref(), Some("text/plain"));
    let mut ups = pp.user_properties.clone();
    ups.sort();
    assert_eq!(
        ups,
        vec![
            ("attempt".to_string(), "3".to_string()),
            ("origin".to_string(), "backend".to_string())
        ]
    );
    // Retained per the rule: a late subscriber gets it too.
    let mut late = Device::connect(m.port, &unique("late")).await;
    late.subscribe(&format!("{t}/#"), QoS::AtLeastOnce).await;
    assert!(late.next().await.retain);
    // Acked only after the MQTT side owned it.
    wait_until("the ack", || b.snapshot().inbound[0].counts.acks == 1).await;
    b.stop().await;
    let (_c2, ch2) = amqp(&url).await;
    assert_eq!(
        common::depth(&ch2, &q).await,
        0,
        "acked, not left in the queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_no_session_takes_is_rejected_to_the_dead_letter_exchange() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let (t, q, dlq) = (unique("nosub"), unique("q"), unique("dlq"));
    let dlx = unique("dlx");
    let (_c, ch) = amqp(&url).await;
    // The queue exists with a dead-letter exchange: the bridge uses it as it is.
    ch.exchange_declare(
        dlx.as_str().into(),
        lapin::ExchangeKind::Fanout,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    common::queue(&ch, &dlq, false, &dlx, &[""]).await;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    let rules = format!(
        "[[bridge.inbound]]\nqueue = \"{q}\"\nbindings = [\"{t}.#\"]\nno_subscribers = \"reject\"\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    publish(
        &ch,
        &format!("{t}.nobody"),
        b"lost?",
        BasicProperties::default(),
    )
    .await;
    let d = take(&ch, &dlq, 1).await.remove(0);
    assert_eq!(d.data, b"lost?");
    let s = b.snapshot().inbound[0].counts.clone();
    assert_eq!((s.no_subscribers, s.rejects, s.acks), (1, 1, 0));
    b.stop().await;
    ch.queue_delete(q.as_str().into(), Default::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_cross_the_bridge_both_ways() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let (req, resp) = (unique("req"), unique("resp"));
    let (backend_q, replies_q) = (unique("backend"), unique("replies"));
    let inbound_q = unique("inbound");
    let (_c, ch) = amqp(&url).await;
    common::queue(&ch, &backend_q, false, "amq.topic", &[&format!("{req}.#")]).await;
    common::queue(
        &ch,
        &replies_q,
        false,
        "amq.topic",
        &[&format!("{resp}.backend.#")],
    )
    .await;
    let rules = format!(
        "[[bridge.outbound]]\nfilter = \"{req}/#\"\n[[bridge.outbound]]\nfilter = \"{resp}/#\"\n\
         [[bridge.inbound]]\nqueue = \"{inbound_q}\"\nbindings = [\"{resp}.dev1.#\"]\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    let mut dev = Device::connect(m.port, &unique("dev1")).await;
    dev.subscribe(&format!("{resp}/dev1/#"), QoS::AtLeastOnce)
        .await;

    // Device → backend: response topic and correlation data become reply-to and correlation-id.
    let props = PublishProperties {
        response_topic: Some(format!("{resp}/dev1/answers")),
        correlation_data: Some(Bytes::from_static(b"corr-1")),
        ..PublishProperties::default()
    };
    dev.client
        .publish_with_properties(
            format!("{req}/dev1/time"),
            QoS::AtLeastOnce,
            false,
            "what time?",
            props,
        )
        .await
        .unwrap();
    let r = take(&ch, &backend_q, 1).await.remove(0);
    let reply_to = r.properties.reply_to().clone().expect("reply-to");
    assert_eq!(reply_to.as_str(), format!("{resp}.dev1.answers"));
    let corr = r
        .properties
        .correlation_id()
        .clone()
        .expect("correlation-id");
    assert_eq!(corr.as_str(), "corr-1");
    // The backend answers to the exchange with the reply-to key and the correlation id.
    let answer = BasicProperties::default().with_correlation_id(corr);
    publish(&ch, reply_to.as_str(), b"noon", answer).await;
    let p = dev.next().await;
    assert_eq!(p.topic, Bytes::from(format!("{resp}/dev1/answers")));
    assert_eq!(p.payload, Bytes::from_static(b"noon"));
    let pp = p.properties.expect("properties");
    assert_eq!(pp.correlation_data, Some(Bytes::from_static(b"corr-1")));

    // Backend → device: reply-to becomes the response topic; the device answers there.
    let ask = BasicProperties::default()
        .with_reply_to(format!("{resp}.backend.x").as_str().into())
        .with_correlation_id("corr-2".into());
    publish(&ch, &format!("{resp}.dev1.ping"), b"ping", ask).await;
    let p = dev.next().await;
    let pp = p.properties.expect("properties");
    let rt = pp.response_topic.expect("response topic");
    assert_eq!(rt, format!("{resp}/backend/x"));
    let props = PublishProperties {
        correlation_data: pp.correlation_data,
        ..PublishProperties::default()
    };
    dev.client
        .publish_with_properties(rt, QoS::AtLeastOnce, false, "pong", props)
        .await
        .unwrap();
    let r = take(&ch, &replies_q, 1).await.remove(0);
    assert_eq!(r.data, b"pong");
    assert_eq!(
        r.properties.correlation_id().as_ref().unwrap().as_str(),
        "corr-2"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_or_too_deep_metadata_from_a_backend_does_not_stop_the_queue() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let (t, q) = (unique("bin"), unique("q"));
    let rules = format!(
        "[[bridge.inbound]]\nqueue = \"{q}\"\nexchange = \"amq.topic\"\nbindings = [\"{t}.#\"]\nqos = 1\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    let mut dev = Device::connect(m.port, &unique("dev")).await;
    dev.subscribe(&format!("{t}/#"), QoS::AtLeastOnce).await;
    let (_c, ch) = amqp(&url).await;

    // Bytes that are not UTF-8 in a header value, and a binary byte array.
    let mut h = FieldTable::default();
    h.insert(
        "raw".into(),
        AMQPValue::LongString(vec![0xff, b'o', b'k'].into()),
    );
    h.insert(
        "x-mqtt-correlation-data".into(),
        AMQPValue::ByteArray(vec![0u8, 0xfe].into()),
    );
    publish(
        &ch,
        &format!("{t}.one"),
        b"1",
        BasicProperties::default().with_headers(h),
    )
    .await;
    // Headers nested 40 deep: more than the bridge reads; rejected, the rest flows.
    let mut deep = FieldTable::default();
    for _ in 0..40 {
        let mut outer = FieldTable::default();
        outer.insert("n".into(), AMQPValue::FieldTable(deep));
        deep = outer;
    }
    publish(
        &ch,
        &format!("{t}.two"),
        b"2",
        BasicProperties::default().with_headers(deep),
    )
    .await;
    publish(&ch, &format!("{t}.three"), b"3", BasicProperties::default()).await;

    let p = dev.next().await;
    assert_eq!(p.payload, Bytes::from_static(b"1"));
    let pp = p.properties.expect("v5 properties");
    assert_eq!(pp.correlation_data.as_deref(), Some(&[0u8, 0xfe][..]));
    assert_eq!(
        pp.user_properties,
        vec![("raw".to_string(), "\u{fffd}ok".to_string())]
    );
    let p = dev.next().await;
    assert_eq!(
        p.payload,
        Bytes::from_static(b"3"),
        "the deep one is skipped"
    );
    // Acked once Warren owned each; the deep one rejected as unmappable.
    wait_until("the reject and both acks", || {
        let c = &b.snapshot().inbound[0].counts;
        (c.rejects, c.unmappable, c.acks) == (1, 1, 2)
    })
    .await;
    assert_eq!(b.snapshot().reconnects, 0, "the connection stayed up");
    b.stop().await;
    ch.queue_delete(q.as_str().into(), Default::default())
        .await
        .unwrap();
}
