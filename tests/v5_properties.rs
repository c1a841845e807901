//! MQTT 5.0 with rumqttc: PUBLISH properties forwarded intact, subscription identifiers,
//! reason codes of PUBACK/PUBREC/UNSUBACK/SUBACK, and message expiry.

mod clients;
mod common;

use std::time::Duration;

use bytes::Bytes;
use clients::{p5, QoS5, V5};

fn full_properties() -> p5::PublishProperties {
    p5::PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(120),
        topic_alias: None,
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr\xff")),
        user_properties: vec![
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("a".into(), "3".into()),
        ],
        subscription_identifiers: vec![],
        content_type: Some("text/plain; charset=utf-8".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_properties_arrive_intact() {
    for qos in [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce] {
        let (_broker, addr) = common::start().await;
        let mut sub = V5::connect(addr, "sub").await;
        sub.subscribe("props/t", QoS5::ExactlyOnce).await;
        let publisher = V5::connect(addr, "pub").await;
        publisher
            .client
            .publish_with_properties("props/t", qos, false, "héllo", full_properties())
            .await
            .unwrap();

        let got = sub.next_publish().await;
        assert_eq!(&got.topic[..], b"props/t");
        assert_eq!(&got.payload[..], "héllo".as_bytes());
        assert_eq!(got.qos, qos);
        let props = got.properties.expect("properties forwarded");
        let sent = full_properties();
        assert_eq!(
            props.payload_format_indicator,
            sent.payload_format_indicator
        );
        assert_eq!(props.response_topic, sent.response_topic);
        assert_eq!(props.correlation_data, sent.correlation_data);
        assert_eq!(
            props.user_properties, sent.user_properties,
            "user properties keep their order and repeats"
        );
        assert_eq!(props.content_type, sent.content_type);
        assert_eq!(props.topic_alias, None);
        assert!(
            props.subscription_identifiers.is_empty(),
            "no identifier was given on SUBSCRIBE: {:?}",
            props.subscription_identifiers
        );
        let expiry = props.message_expiry_interval.expect("expiry forwarded");
        assert!(
            (1..=120).contains(&expiry),
            "expiry {expiry} not in 1..=120"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_without_properties_gets_none_added() {
    let (_broker, addr) = common::start().await;
    let mut sub = V5::connect(addr, "sub").await;
    sub.subscribe("bare", QoS5::AtLeastOnce).await;
    let publisher = V5::connect(addr, "pub").await;
    publisher
        .publish("bare", QoS5::AtLeastOnce, false, b"x")
        .await;
    let got = sub.next_publish().await;
    let props = got.properties.unwrap_or_default();
    assert_eq!(props, p5::PublishProperties::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifier_comes_back_on_delivery() {
    let (_broker, addr) = common::start().await;
    let mut sub = V5::connect(addr, "sub").await;
    sub.client
        .subscribe_with_properties(
            "ids/+",
            QoS5::AtLeastOnce,
            p5::SubscribeProperties {
                id: Some(42),
                user_properties: vec![],
            },
        )
        .await
        .unwrap();
    sub.next_suback().await;
    sub.client
        .subscribe_with_properties(
            "ids/#",
            QoS5::AtMostOnce,
            p5::SubscribeProperties {
                id: Some(268_435_455),
                user_properties: vec![],
            },
        )
        .await
        .unwrap();
    sub.next_suback().await;
    sub.subscribe("ids/x/y", QoS5::AtMostOnce).await; // no identifier

    let publisher = V5::connect(addr, "pub").await;
    publisher
        .publish("ids/one", QoS5::AtLeastOnce, false, b"1")
        .await;
    let got = sub.next_publish().await;
    assert_eq!(&got.payload[..], b"1");
    let mut ids = got.properties.unwrap().subscription_identifiers;
    ids.sort();
    // Matched by both ids/+ and ids/#: delivered once, with both identifiers.
    assert_eq!(ids, vec![42, 268_435_455]);

    publisher
        .publish("ids/x/y", QoS5::AtLeastOnce, false, b"2")
        .await;
    let got = sub.next_publish().await;
    assert_eq!(&got.payload[..], b"2");
    assert_eq!(
        got.properties.unwrap_or_default().subscription_identifiers,
        vec![268_435_455]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_and_pubrec_say_no_matching_subscribers() {
    let (_broker, addr) = common::start().await;
    let mut publisher = V5::connect(addr, "lonely").await;
    publisher
        .publish("nobody/listens", QoS5::AtLeastOnce, false, b"?")
        .await;
    let ack = publisher
        .wait_for(|p| match p {
            p5::Packet::PubAck(ack) => Some(ack.clone()),
            _ => None,
        })
        .await;
    assert_eq!(ack.reason, p5::PubAckReason::NoMatchingSubscribers);

    publisher
        .publish("nobody/listens", QoS5::ExactlyOnce, false, b"?")
        .await;
    let rec = publisher
        .wait_for(|p| match p {
            p5::Packet::PubRec(rec) => Some(rec.clone()),
            _ => None,
        })
        .await;
    assert_eq!(rec.reason, p5::PubRecReason::NoMatchingSubscribers);
    publisher
        .wait_for(|p| matches!(p, p5::Packet::PubComp(_)).then_some(()))
        .await;

    // With a subscriber the reason is Success.
    let mut sub = V5::connect(addr, "listener").await;
    sub.subscribe("nobody/listens", QoS5::AtMostOnce).await;
    publisher
        .publish("nobody/listens", QoS5::AtLeastOnce, false, b"!")
        .await;
    let ack = publisher
        .wait_for(|p| match p {
            p5::Packet::PubAck(ack) => Some(ack.clone()),
            _ => None,
        })
        .await;
    assert_eq!(ack.reason, p5::PubAckReason::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsuback_reason_codes() {
    let (_broker, addr) = common::start().await;
    let mut client = V5::connect(addr, "unsub").await;
    client.subscribe("known", QoS5::AtMostOnce).await;
    client.client.unsubscribe("never/subscribed").await.unwrap();
    let ack = client
        .wait_for(|p| match p {
            p5::Packet::UnsubAck(ack) => Some(ack.clone()),
            _ => None,
        })
        .await;
    assert_eq!(ack.reasons, vec![p5::UnsubAckReason::NoSubscriptionExisted]);
    client.client.unsubscribe("known").await.unwrap();
    let ack = client
        .wait_for(|p| match p {
            p5::Packet::UnsubAck(ack) => Some(ack.clone()),
            _ => None,
        })
        .await;
    assert_eq!(ack.reasons, vec![p5::UnsubAckReason::Success]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_announces_shared_subscriptions() {
    let (_broker, addr) = common::start().await;
    let (_client, mut eventloop) =
        rumqttc::v5::AsyncClient::new(clients::v5_options(addr, "caps"), 10);
    let event = common::within(eventloop.poll()).await.unwrap();
    let rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(ack)) = event else {
        panic!("expected CONNACK, got {event:?}")
    };
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.shared_subscription_available, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_retained_message_is_not_delivered() {
    let (_broker, addr) = common::start().await;
    let mut publisher = V5::connect(addr, "pub").await;
    let short = p5::PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    let long = p5::PublishProperties {
        message_expiry_interval: Some(600),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("exp/short", QoS5::AtLeastOnce, true, "short", short)
        .await
        .unwrap();
    publisher
        .client
        .publish_with_properties("exp/long", QoS5::AtLeastOnce, true, "long", long)
        .await
        .unwrap();
    for _ in 0..2 {
        publisher
            .wait_for(|p| matches!(p, p5::Packet::PubAck(_)).then_some(()))
            .await;
    }
    // The subject of this test is time passing: a real wait beyond the 1 s expiry.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut sub = V5::connect(addr, "late").await;
    sub.subscribe("exp/#", QoS5::AtLeastOnce).await;
    publisher
        .publish("exp/marker", QoS5::AtLeastOnce, false, b"m")
        .await;
    let mut got = Vec::new();
    loop {
        let p = sub.next_publish().await;
        if &p.topic[..] == b"exp/marker" {
            break;
        }
        got.push(p);
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&got[0].topic[..], b"exp/long");
    assert!(got[0].retain);
    let expiry = got[0]
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval)
        .expect("remaining expiry sent");
    assert!(
        (590..=598).contains(&expiry),
        "expiry counts down: {expiry}"
    );
}
