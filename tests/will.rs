//! Will messages: published when the connection ends without a normal DISCONNECT (socket
//! dropped, keep-alive timeout, protocol error, 5.0 DISCONNECT 0x04), not after a normal
//! DISCONNECT; topic, payload, QoS, retain and 5.0 properties as given in CONNECT.

mod clients;
mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use clients::{is_publish_on, publishes, raw_connected_with, raw_subscribe, raw_until, V5};
use common::{eventually, Raw};
use warren::protocol::{Disconnect, Packet, ProtocolVersion, Publish, QoS, Will, WillProperties};
use warren::BrokerHandle;

fn will(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Will {
    Will {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

/// A raw 3.1.1 subscriber of `will/#` (QoS 2) and `marker`.
async fn will_watcher(addr: SocketAddr) -> Raw {
    let mut sub = common::raw_connected(addr, ProtocolVersion::V3_1_1, "watcher").await;
    raw_subscribe(
        &mut sub,
        1,
        &[("will/#", QoS::ExactlyOnce), ("marker", QoS::AtMostOnce)],
    )
    .await;
    sub
}

/// A raw client with `will` set in its CONNECT, at `version`, keep alive `keep_alive`.
async fn client_with_will(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    will: Will,
    keep_alive: u16,
) -> Raw {
    raw_connected_with(addr, version, id, |c| {
        c.will = Some(will);
        c.keep_alive = keep_alive;
    })
    .await
}

/// The next PUBLISH `sub` receives.
async fn next_publish(sub: &mut Raw) -> Publish {
    let seen = raw_until(sub, |p| matches!(p, Packet::Publish(_))).await;
    publishes(&seen).pop().unwrap().clone()
}

/// Waits until only `n` connections are open, i.e. every other connection task has finished
/// (wills are published before a connection task ends).
async fn wait_connections(broker: &BrokerHandle, n: u64) {
    eventually(|| broker.stats().connections_current == n).await;
}

fn assert_will(got: &Publish, topic: &str, payload: &[u8], qos: QoS) {
    assert_eq!(got.topic, topic);
    assert_eq!(&got.payload[..], payload);
    assert_eq!(got.qos, qos);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_socket_is_dropped() {
    let (broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let client = client_with_will(
        addr,
        ProtocolVersion::V3_1_1,
        "dropper",
        will("will/dropper", b"gone", QoS::AtLeastOnce, false),
        60,
    )
    .await;
    assert_eq!(broker.stats().wills_published, 0);
    drop(client);

    let got = next_publish(&mut sub).await;
    assert_will(&got, "will/dropper", b"gone", QoS::AtLeastOnce);
    assert!(!got.retain);
    assert_eq!(broker.stats().wills_published, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_keep_alive_timeout() {
    let (broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let mut silent = client_with_will(
        addr,
        ProtocolVersion::V3_1_1,
        "silent",
        will("will/silent", b"timed out", QoS::ExactlyOnce, false),
        1,
    )
    .await;
    // The broker closes the silent connection after 1.5 × keep alive…
    assert!(silent.until_closed().await.is_empty());
    // …and publishes its will.
    let got = next_publish(&mut sub).await;
    assert_will(&got, "will/silent", b"timed out", QoS::ExactlyOnce);
    assert_eq!(broker.stats().wills_published, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_v5_keep_alive_timeout_with_reason() {
    let (_broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let mut silent = client_with_will(
        addr,
        ProtocolVersion::V5,
        "silent5",
        will("will/silent5", b"bye", QoS::AtMostOnce, false),
        1,
    )
    .await;
    let last = silent.until_closed().await;
    assert_eq!(
        last,
        vec![Packet::Disconnect(Disconnect {
            reason: 0x8D, // Keep Alive timeout
            ..Disconnect::default()
        })]
    );
    let got = next_publish(&mut sub).await;
    assert_will(&got, "will/silent5", b"bye", QoS::AtMostOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_a_protocol_error() {
    let (broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let mut bad = client_with_will(
        addr,
        ProtocolVersion::V3_1_1,
        "garbage",
        will("will/garbage", b"broken", QoS::AtLeastOnce, false),
        60,
    )
    .await;
    // Packet type 0 is reserved: a malformed packet.
    bad.send_bytes(&[0x00, 0x00, 0xde, 0xad]).await;
    bad.until_closed().await;

    let got = next_publish(&mut sub).await;
    assert_will(&got, "will/garbage", b"broken", QoS::AtLeastOnce);
    let stats = broker.stats();
    assert_eq!(stats.wills_published, 1);
    assert_eq!(stats.malformed_packets + stats.protocol_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_a_second_connect() {
    let (_broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let mut bad = client_with_will(
        addr,
        ProtocolVersion::V3_1_1,
        "twice",
        will("will/twice", b"again", QoS::AtMostOnce, false),
        60,
    )
    .await;
    bad.send(&common::connect_packet(
        ProtocolVersion::V3_1_1,
        "twice",
        true,
    ))
    .await;
    assert!(bad.until_closed().await.is_empty());
    let got = next_publish(&mut sub).await;
    assert_will(&got, "will/twice", b"again", QoS::AtMostOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_not_published_after_a_normal_disconnect() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (broker, addr) = common::start().await;
        let mut sub = will_watcher(addr).await;
        let mut polite = client_with_will(
            addr,
            version,
            "polite",
            will("will/polite", b"should not be sent", QoS::AtLeastOnce, true),
            60,
        )
        .await;
        polite
            .send(&Packet::Disconnect(Disconnect::default()))
            .await;
        assert!(polite.until_closed().await.is_empty());
        wait_connections(&broker, 1).await;

        let mut publisher = common::raw_connected(addr, ProtocolVersion::V3_1_1, "m").await;
        publisher
            .send(&clients::publish("marker", b"m", QoS::AtMostOnce, 0, false))
            .await;
        let seen = raw_until(&mut sub, |p| is_publish_on(p, "marker")).await;
        assert_eq!(publishes(&seen).len(), 1, "{version:?}: {seen:?}");
        assert_eq!(broker.stats().wills_published, 0, "{version:?}");
        assert_eq!(broker.retained_count(), 0, "{version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_disconnect_with_will_message_publishes_it() {
    let (broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let mut client = client_with_will(
        addr,
        ProtocolVersion::V5,
        "with-will",
        will("will/asked", b"please", QoS::ExactlyOnce, false),
        60,
    )
    .await;
    client
        .send(&Packet::Disconnect(Disconnect {
            reason: 0x04, // Disconnect with Will Message
            ..Disconnect::default()
        }))
        .await;
    assert!(client.until_closed().await.is_empty());
    let got = next_publish(&mut sub).await;
    assert_will(&got, "will/asked", b"please", QoS::ExactlyOnce);
    assert_eq!(broker.stats().wills_published, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_will_reaches_a_later_subscriber_as_retained() {
    let (broker, addr) = common::start().await;
    let client = client_with_will(
        addr,
        ProtocolVersion::V3_1_1,
        "sensor",
        will("will/sensor/status", b"offline", QoS::AtLeastOnce, true),
        60,
    )
    .await;
    drop(client);
    eventually(|| broker.retained_count() == 1).await;
    assert_eq!(broker.stats().wills_published, 1);

    let mut later = common::raw_connected(addr, ProtocolVersion::V3_1_1, "later").await;
    raw_subscribe(&mut later, 1, &[("will/+/status", QoS::ExactlyOnce)]).await;
    let got = next_publish(&mut later).await;
    assert_will(&got, "will/sensor/status", b"offline", QoS::AtLeastOnce);
    assert!(
        got.retain,
        "a retained will is sent on subscribe with retain 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_properties_reach_a_v5_subscriber() {
    let (_broker, addr) = common::start().await;
    let mut sub = V5::connect(addr, "sub5").await;
    sub.subscribe("will/#", clients::QoS5::AtLeastOnce).await;
    let mut w = will("will/props", b"{\"up\":false}", QoS::AtLeastOnce, false);
    w.properties = WillProperties {
        will_delay_interval: None,
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(300),
        content_type: Some("application/json".into()),
        response_topic: Some("will/reply".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02")),
        user_properties: [("k", "v"), ("k", "w")].into_iter().collect(),
    };
    let client = client_with_will(addr, ProtocolVersion::V5, "props", w, 60).await;
    drop(client);

    let got = sub.next_publish().await;
    assert_eq!(&got.topic[..], b"will/props");
    assert_eq!(&got.payload[..], b"{\"up\":false}");
    let props = got.properties.expect("will properties forwarded");
    assert_eq!(props.payload_format_indicator, Some(1));
    assert!(matches!(props.message_expiry_interval, Some(1..=300)));
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.response_topic.as_deref(), Some("will/reply"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"\x01\x02"[..]));
    assert_eq!(
        props.user_properties,
        vec![
            ("k".to_owned(), "v".to_owned()),
            ("k".to_owned(), "w".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_client_will_on_abrupt_close() {
    let (_broker, addr) = common::start().await;
    let mut sub = clients::V4::connect(addr, "sub").await;
    sub.subscribe("will/#", rumqttc::QoS::AtLeastOnce).await;
    let mut options = clients::v4_options(addr, "abrupt");
    options.set_last_will(rumqttc::LastWill::new(
        "will/abrupt",
        "lost",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let client = clients::V4::start(options).await.unwrap();
    drop(client); // aborts the event loop: the socket closes without DISCONNECT
    let got = sub.next_publish().await;
    assert_eq!(got.topic, "will/abrupt");
    assert_eq!(&got.payload[..], b"lost");
    assert_eq!(got.qos, rumqttc::QoS::AtLeastOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_lets_a_resumed_session_cancel_the_will() {
    // MQTT-3.1.3-9 / 3.1.2.5: the will waits for the Will Delay Interval (or the end of the
    // session); if the session is resumed before, the will is not published.
    let (broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let mut w = will("will/delayed", b"late", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(60);
    let client = raw_connected_with(addr, ProtocolVersion::V5, "delayed", |c| {
        c.will = Some(w);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(300);
    })
    .await;
    drop(client);
    wait_connections(&broker, 1).await;

    // Resume the session well within the delay.
    let _resumed = raw_connected_with(addr, ProtocolVersion::V5, "delayed", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(300);
    })
    .await;
    let mut publisher = common::raw_connected(addr, ProtocolVersion::V3_1_1, "m").await;
    publisher
        .send(&clients::publish("marker", b"m", QoS::AtMostOnce, 0, false))
        .await;
    let seen = raw_until(&mut sub, |p| is_publish_on(p, "marker")).await;
    assert_eq!(
        publishes(&seen).len(),
        1,
        "will published despite the delay: {seen:?}"
    );
    assert_eq!(broker.stats().wills_published, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_delayed_will_is_published_once_the_delay_has_passed() {
    let (broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let mut w = will("will/delayed", b"late", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(1);
    let client = raw_connected_with(addr, ProtocolVersion::V5, "delayed", |c| {
        c.will = Some(w);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(300);
    })
    .await;
    let dropped_at = std::time::Instant::now();
    drop(client);
    let seen = raw_until(&mut sub, |p| is_publish_on(p, "will/delayed")).await;
    assert!(
        dropped_at.elapsed() >= std::time::Duration::from_millis(900),
        "published after {:?}, before its 1 s delay",
        dropped_at.elapsed()
    );
    assert_eq!(publishes(&seen)[0].payload.as_ref(), b"late");
    assert_eq!(broker.stats().wills_published, 1);
    assert_eq!(
        broker.offline_session_count(),
        1,
        "the session itself lives on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_delayed_will_is_published_when_the_session_ends_first() {
    let (broker, addr) = common::start().await;
    let mut sub = will_watcher(addr).await;
    let mut w = will("will/delayed", b"ended", QoS::AtMostOnce, false);
    w.properties.will_delay_interval = Some(600);
    let client = raw_connected_with(addr, ProtocolVersion::V5, "short", |c| {
        c.will = Some(w);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(1);
    })
    .await;
    drop(client);
    let seen = raw_until(&mut sub, |p| is_publish_on(p, "will/delayed")).await;
    assert_eq!(publishes(&seen)[0].payload.as_ref(), b"ended");
    common::eventually(|| broker.offline_session_count() == 0).await;
}
