//! MQTT → AMQP through the standalone bridge: a device publishes to Mosquitto, the bridge
//! carries it onto RabbitMQ (the shared node of scripts/test).

mod common;

use bytes::Bytes;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::ExchangeKind;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;

use common::{amqp, config, header, start_bridge, take, unique, wait_until, Device, Mosquitto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_publish_reaches_a_bound_queue_with_key_properties_and_headers() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let t = unique("out");
    let plugin = unique("plugin");
    let q = unique("q");
    let (_c, ch) = amqp(&url).await;
    common::queue(
        &ch,
        &q,
        false,
        "amq.topic",
        &[&format!("{t}.#"), &format!("{plugin}.#")],
    )
    .await;
    let rules = format!(
        "[[bridge.outbound]]\nfilter = \"{t}/#\"\n\
         [[bridge.outbound]]\nfilter = \"{plugin}/#\"\nheaders = \"rabbitmq\"\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;

    let dev = Device::connect(m.port, &unique("dev")).await;
    let props = PublishProperties {
        content_type: Some("application/json".into()),
        user_properties: vec![("site".into(), "north".into()), ("fw".into(), "1.2".into())],
        ..PublishProperties::default()
    };
    dev.client
        .publish_with_properties(
            format!("{t}/dev1/temp"),
            QoS::AtLeastOnce,
            false,
            "21.5",
            props,
        )
        .await
        .unwrap();
    let d = take(&ch, &q, 1).await.remove(0);
    assert_eq!(d.routing_key.as_str(), format!("{t}.dev1.temp"));
    assert_eq!(d.exchange.as_str(), "amq.topic");
    assert_eq!(d.data, b"21.5");
    let p = &d.properties;
    assert_eq!(*p.delivery_mode(), Some(2), "QoS 1 is persistent");
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert!(p.message_id().is_some());
    assert!(p.timestamp().is_some_and(|t| t > 1_600_000_000));
    assert_eq!(
        header(&d, "x-mqtt-topic").as_deref(),
        Some(format!("{t}/dev1/temp").as_str())
    );
    assert_eq!(header(&d, "site").as_deref(), Some("north"));
    assert_eq!(header(&d, "fw").as_deref(), Some("1.2"));
    let h = p.headers().as_ref().unwrap().inner();
    assert_eq!(h.get("x-mqtt-qos"), Some(&AMQPValue::LongInt(1)));
    assert_eq!(h.get("x-mqtt-retain"), Some(&AMQPValue::Boolean(false)));

    dev.client
        .publish(format!("{t}/dev1/q0"), QoS::AtMostOnce, false, "x")
        .await
        .unwrap();
    let d = take(&ch, &q, 1).await.remove(0);
    assert_eq!(*d.properties.delivery_mode(), Some(1), "QoS 0 is transient");

    // A topic whose routing key would pass AMQP's 255 bytes is dropped and counted (the AMQP
    // client would panic on it), and the rule goes on.
    let long = format!("{t}/{}", "x".repeat(300));
    dev.client
        .publish(long, QoS::AtLeastOnce, false, "too long")
        .await
        .unwrap();
    dev.client
        .publish(format!("{t}/dev1/after"), QoS::AtLeastOnce, false, "after")
        .await
        .unwrap();
    let d = take(&ch, &q, 1).await.remove(0);
    assert_eq!(d.data, b"after");
    // User properties past one AMQP frame (RabbitMQ would close the whole connection on the
    // header frame): dropped and counted before anything is sent; the connection stays up.
    let big = PublishProperties {
        user_properties: (0..40)
            .map(|i| (format!("k{i}"), "v".repeat(4000)))
            .collect(),
        ..PublishProperties::default()
    };
    dev.client
        .publish_with_properties(format!("{t}/dev1/big"), QoS::AtLeastOnce, false, "big", big)
        .await
        .unwrap();
    dev.client
        .publish(format!("{t}/dev1/last"), QoS::AtLeastOnce, false, "last")
        .await
        .unwrap();
    let d = take(&ch, &q, 1).await.remove(0);
    assert_eq!(d.data, b"last");
    wait_until("acks counted", || {
        let s = b.snapshot();
        let c = &s.outbound[0].counts;
        c.confirmed == 4 && c.dropped_unmappable == 2
    })
    .await;
    assert_eq!(b.snapshot().reconnects, 0);

    // headers = "rabbitmq": the plugin's two headers instead of the bridge's four; user
    // properties as before.
    let props = PublishProperties {
        user_properties: vec![("site".into(), "south".into())],
        ..PublishProperties::default()
    };
    dev.client
        .publish_with_properties(
            format!("{plugin}/dev2"),
            QoS::AtLeastOnce,
            false,
            "p",
            props,
        )
        .await
        .unwrap();
    let d = take(&ch, &q, 1).await.remove(0);
    assert_eq!(d.routing_key.as_str(), format!("{plugin}.dev2"));
    let h = d.properties.headers().as_ref().unwrap().inner();
    assert_eq!(
        h.get("x-mqtt-publish-qos"),
        Some(&AMQPValue::ShortShortInt(1))
    );
    assert_eq!(h.get("x-mqtt-dup"), Some(&AMQPValue::Boolean(false)));
    assert!(h.get("x-mqtt-topic").is_none() && h.get("x-mqtt-qos").is_none());
    assert_eq!(header(&d, "site").as_deref(), Some("south"));
    assert!(d.properties.message_id().is_some());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dots_in_levels_and_levels_get_different_keys_and_come_back() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let t = unique("map");
    let (q1, q2) = (unique("q"), unique("q"));
    let (_c, ch) = amqp(&url).await;
    common::queue(&ch, &q1, false, "amq.topic", &[&format!("{t}.v1%2E2.data")]).await;
    common::queue(&ch, &q2, false, "amq.topic", &[&format!("{t}.v1.2.data")]).await;
    // Both directions: out of MQTT under `t`, and back into MQTT under `back/t`.
    let back = unique("back");
    let bq = unique("q");
    let rules = format!(
        "[[bridge.outbound]]\nfilter = \"{t}/#\"\n\
         [[bridge.inbound]]\nqueue = \"{bq}\"\nbindings = [\"{back}.#\"]\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    let mut dev = Device::connect(m.port, &unique("dev")).await;
    dev.subscribe(&format!("{back}/#"), QoS::AtLeastOnce).await;
    for topic in [format!("{t}/v1.2/data"), format!("{t}/v1/2/data")] {
        dev.client
            .publish(topic, QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    let a = take(&ch, &q1, 1).await.remove(0);
    let c = take(&ch, &q2, 1).await.remove(0);
    assert_eq!(a.routing_key.as_str(), format!("{t}.v1%2E2.data"));
    assert_eq!(c.routing_key.as_str(), format!("{t}.v1.2.data"));
    assert_eq!(header(&a, "x-mqtt-topic"), Some(format!("{t}/v1.2/data")));

    // Keys made by the mapping come back as their topics.
    for key in [format!("{back}.v1%2E2.data"), format!("{back}.v1.2.data")] {
        ch.basic_publish(
            "amq.topic".into(),
            key.as_str().into(),
            Default::default(),
            b"y",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let mut got = vec![
        String::from_utf8(dev.next().await.topic.to_vec()).unwrap(),
        String::from_utf8(dev.next().await.topic.to_vec()).unwrap(),
    ];
    got.sort();
    assert_eq!(
        got,
        vec![format!("{back}/v1.2/data"), format!("{back}/v1/2/data")]
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headers_exchange_routes_on_a_user_property() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let t = unique("hdr");
    let x = unique("x-headers");
    let (qa, qb) = (unique("q"), unique("q"));
    let (_c, ch) = amqp(&url).await;
    let rules = format!(
        "[[bridge.outbound]]\nfilter = \"{t}/#\"\nexchange = \"{x}\"\nexchange_type = \"headers\"\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    // The bridge declares the exchange (durable, headers) when its channel opens; declare it
    // the same way here so as not to race it, then bind by the `site` user property.
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Headers,
        durable,
        FieldTable::default(),
    )
    .await
    .unwrap();
    for (q, site) in [(&qa, "north"), (&qb, "south")] {
        common::queue(&ch, q, false, "amq.topic", &[]).await;
        let mut args = FieldTable::default();
        args.insert("x-match".into(), AMQPValue::LongString("all".into()));
        args.insert("site".into(), AMQPValue::LongString(site.into()));
        ch.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            args,
        )
        .await
        .unwrap();
    }
    let dev = Device::connect(m.port, &unique("dev")).await;
    for site in ["south", "north"] {
        let props = PublishProperties {
            user_properties: vec![("site".into(), site.into())],
            ..PublishProperties::default()
        };
        dev.client
            .publish_with_properties(
                format!("{t}/d"),
                QoS::AtLeastOnce,
                false,
                site.to_string(),
                props,
            )
            .await
            .unwrap();
    }
    assert_eq!(take(&ch, &qa, 1).await[0].data, b"north");
    assert_eq!(take(&ch, &qb, 1).await[0].data, b"south");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_messages_follow_the_rule_policy() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let (drop_t, dl_t, ax_t, retry_t) = (
        unique("drop"),
        unique("dlt"),
        unique("alt"),
        unique("retry"),
    );
    let dead = unique("dead");
    let alt = unique("alt-x");
    let (alt_q, retry_q) = (unique("q"), unique("q"));
    let (_c, ch) = amqp(&url).await;
    ch.exchange_declare(
        alt.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    common::queue(&ch, &alt_q, false, &alt, &[""]).await;
    let rules = format!(
        "[[bridge.outbound]]\nname = \"drop\"\nfilter = \"{drop_t}/#\"\n\
         [[bridge.outbound]]\nname = \"dl-topic\"\nfilter = \"{dl_t}/#\"\nunroutable = \"dead-letter\"\ndead_letter_topic = \"{dead}/x\"\n\
         [[bridge.outbound]]\nname = \"dl-exchange\"\nfilter = \"{ax_t}/#\"\nunroutable = \"dead-letter\"\ndead_letter_exchange = \"{alt}\"\n\
         [[bridge.outbound]]\nname = \"retry\"\nfilter = \"{retry_t}/#\"\nunroutable = \"retry\"\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    let mut dev = Device::connect(m.port, &unique("dev")).await;
    dev.subscribe(&format!("{dead}/#"), QoS::AtLeastOnce).await;
    for t in [&drop_t, &dl_t, &ax_t, &retry_t] {
        dev.client
            .publish(
                format!("{t}/nobody"),
                QoS::AtLeastOnce,
                false,
                t.to_string(),
            )
            .await
            .unwrap();
    }
    // drop: counted, completed.
    wait_until("the drop rule to count the return", || {
        let o = &b.snapshot().outbound[0].counts;
        o.returned == 1 && o.dropped_unroutable == 1 && o.acked == 1 && o.confirmed == 0
    })
    .await;
    // dead-letter to an MQTT topic.
    let p = dev.next().await;
    assert_eq!(p.topic, Bytes::from(format!("{dead}/x")));
    assert_eq!(p.payload, Bytes::from(dl_t.clone()));
    // dead-letter to an exchange.
    let d = take(&ch, &alt_q, 1).await.remove(0);
    assert_eq!(d.routing_key.as_str(), format!("{ax_t}.nobody"));
    assert_eq!(d.data, ax_t.as_bytes());
    // retry: held until a queue is bound, then delivered; never completed before.
    wait_until("retries", || b.snapshot().outbound[3].counts.retried >= 2).await;
    assert_eq!(
        b.snapshot().outbound[3].counts.acked,
        0,
        "a return is never a confirm"
    );
    common::queue(
        &ch,
        &retry_q,
        false,
        "amq.topic",
        &[&format!("{retry_t}.#")],
    )
    .await;
    assert_eq!(take(&ch, &retry_q, 1).await[0].data, retry_t.as_bytes());
    wait_until("the retry rule to complete", || {
        let s = b.snapshot();
        s.outbound[3].counts.acked == 1
            && s.outbound[1].counts.dead_lettered == 1
            && s.outbound[2].counts.dead_lettered == 1
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_is_retried_with_backoff_and_order_is_kept() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let (t, q) = (unique("nack"), unique("q"));
    let (_c, ch) = amqp(&url).await;
    // Room for one message; a publish to a full queue is nacked.
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(1));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    args.insert("x-expires".into(), AMQPValue::LongInt(300_000));
    ch.queue_declare(q.as_str().into(), Default::default(), args)
        .await
        .unwrap();
    ch.queue_bind(
        q.as_str().into(),
        "amq.topic".into(),
        format!("{t}.#").as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let rules = format!("[[bridge.outbound]]\nfilter = \"{t}/#\"\n");
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    let dev = Device::connect(m.port, &unique("dev")).await;
    for i in 0..3 {
        dev.client
            .publish(format!("{t}/n"), QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap();
    }
    wait_until("a nack and a retry", || {
        let c = &b.snapshot().outbound[0].counts;
        c.nacked >= 1 && c.retried >= 1
    })
    .await;
    assert_eq!(
        b.snapshot().outbound[0].counts.acked,
        1,
        "a nacked message is not acknowledged"
    );
    let mut got = Vec::new();
    while got.len() < 3 {
        // Each take makes room for the next retry.
        let d = take(&ch, &q, 1).await.remove(0);
        let n: usize = String::from_utf8(d.data).unwrap().parse().unwrap();
        if got.last() != Some(&n) && !got.contains(&n) {
            got.push(n);
        }
    }
    assert_eq!(got, vec![0, 1, 2]);
    wait_until("all acknowledged", || {
        b.snapshot().outbound[0].counts.acked == 3
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rabbitmq_away_received_acknowledges_at_once_and_confirmed_waits() {
    // No RabbitMQ needed: the bridge points at a closed port.
    let m = Mosquitto::start().await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", common::free_port());
    let (conf_t, recv_t) = (unique("confirmed"), unique("received"));
    let rules = format!(
        "[[bridge.outbound]]\nfilter = \"{conf_t}/#\"\n\
         [[bridge.outbound]]\nfilter = \"{recv_t}/#\"\nack = \"received\"\nbuffer = 3\n"
    );
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    let dev = Device::connect(m.port, &unique("dev")).await;
    for i in 0..5 {
        for t in [&conf_t, &recv_t] {
            dev.client
                .publish(format!("{t}/x"), QoS::AtLeastOnce, false, i.to_string())
                .await
                .unwrap();
        }
    }
    common::wait_until_or(
        "the received rule to fill its buffer",
        || {
            let s = b.snapshot();
            s.outbound[1].counts.acked == 3
                && s.outbound[1].pending == 3
                && s.outbound[0].pending == 5
        },
        || format!("{:#?}", b.snapshot()),
    )
    .await;
    let s = b.snapshot();
    assert_eq!(
        s.outbound[0].counts.acked, 0,
        "confirmed: nothing acknowledged without RabbitMQ"
    );
    assert!(s.connect_failures >= 1);
    b.stop().await;
    // (Shutdown lost what the received rule held: that is its contract, and it is counted.)
}

/// A CA and a `localhost` server certificate signed by it: (CA PEM, server chain, server key).
fn test_pki() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rustls::pki_types::pem::PemObject;
    let ca = common::TestCa::new();
    let (cert, key) = ca.issue("localhost", &["localhost"]);
    (
        ca.pem(),
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_carries_the_bridge_over_tls() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let url = amqp_or_skip!();
    // RabbitMQ's address from the test node's URL; a TLS terminator in front of it.
    let rabbit = url
        .split_once('@')
        .and_then(|(_, r)| r.split('/').next())
        .expect("host:port in the URL")
        .to_string();
    let (ca_pem, chain, key) = test_pki();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    let terminator = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, rabbit, counted) = (acceptor.clone(), rabbit.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut up) = tokio::net::TcpStream::connect(rabbit.as_str()).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();

    let m = Mosquitto::start().await;
    let (t, q) = (unique("tls"), unique("q"));
    let (_c, ch) = amqp(&url).await;
    common::queue(&ch, &q, false, "amq.topic", &[&format!("{t}.#")]).await;
    let rules = format!("[[bridge.outbound]]\nfilter = \"{t}/#\"\n");
    let mut c = config(
        &format!("amqps://guest:guest@localhost:{port}/%2f"),
        m.port,
        &rules,
    );
    c.tls = Some(warren_bridge::config::TlsFiles {
        ca_file: Some(ca),
        ..Default::default()
    });
    let b = start_bridge(&c).await;
    let dev = Device::connect(m.port, &unique("dev")).await;
    for i in 0..3 {
        dev.client
            .publish(
                format!("{t}/d/{i}"),
                QoS::AtLeastOnce,
                false,
                format!("m{i}"),
            )
            .await
            .unwrap();
    }
    let got: Vec<Vec<u8>> = take(&ch, &q, 3).await.into_iter().map(|d| d.data).collect();
    assert_eq!(got, [b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]);
    wait_until("confirms over TLS", || {
        b.snapshot().outbound[0].counts.confirmed == 3
    })
    .await;
    assert!(
        handshakes.load(Ordering::SeqCst) >= 1,
        "the bridge spoke TLS"
    );
    b.stop().await;
    terminator.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_max_message_bytes_is_dropped_and_counted() {
    let url = amqp_or_skip!();
    let m = Mosquitto::start().await;
    let (t, q) = (unique("size"), unique("q"));
    let (_c, ch) = amqp(&url).await;
    common::queue(&ch, &q, false, "amq.topic", &[&format!("{t}.#")]).await;
    let rules = format!("[[bridge.outbound]]\nfilter = \"{t}/#\"\nmax_message_bytes = 10\n");
    let b = start_bridge(&config(&url, m.port, &rules)).await;
    let dev = Device::connect(m.port, &unique("dev")).await;
    for payload in ["eleven byte", "ten bytes!"] {
        dev.client
            .publish(format!("{t}/d"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let d = take(&ch, &q, 1).await.remove(0);
    assert_eq!(d.data, b"ten bytes!");
    wait_until("counted", || {
        let c = &b.snapshot().outbound[0].counts;
        c.confirmed == 1 && c.dropped_unmappable == 1
    })
    .await;
    b.stop().await;
}
