//! The files under `deploy/`: every `warren_*` metric that the Grafana dashboard and the
//! Prometheus alert rules use is in the `/metrics` output of a running Warren (with the disk
//! store and the bridge on, after a delivery, a refused CONNECT and a rejected connection), and
//! the systemd unit and container file keep their hardening.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::*;
use tokio::io::AsyncWriteExt;
use warren::config::{ListenerConfig, ListenerKind};
use warren::protocol::{Packet, ProtocolVersion, QoS};

fn deploy(path: &str) -> String {
    let path = format!("{}/deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `warren_*` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("warren_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary && end > start + "warren_".len() {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warren.toml");
    // The bridge on, towards a port where nothing listens (it keeps retrying).
    std::fs::write(
        &file,
        "[bridge]\nenabled = true\nurl = \"amqp://guest:guest@127.0.0.1:1/%2f\"\n\
         [[bridge.outbound]]\nfilter = \"up/#\"\nexchange = \"amq.topic\"\n\
         [[bridge.inbound]]\nqueue = \"warren.deploy.test\"\nexchange = \"amq.topic\"\nbindings = [\"down.#\"]\n",
    )
    .unwrap();
    let mut config = warren::Config::load(Some(&file), Some(Default::default())).expect("config");
    let tests = warren::Config::for_tests();
    config.listeners = tests.listeners;
    config.metrics = tests.metrics;
    config.admin = tests.admin;
    config.mqtt.shutdown_grace_secs = 1;
    config.store.kind = warren::config::StoreKind::Disk;
    config.store.path = dir.path().join("store");
    config.listeners.insert(
        "proxied".into(),
        ListenerConfig {
            kind: ListenerKind::Tcp,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            proxy_protocol: true,
            ..ListenerConfig::default()
        },
    );
    let broker = warren::Broker::start(config).await.expect("broker starts");
    let tcp = broker.local_addr("tcp").unwrap();

    // A delivery (latency histogram), a refused CONNECT, a connection rejected before MQTT.
    let mut sub = raw_connected(tcp, ProtocolVersion::V3_1_1, "sub").await;
    raw_subscribe(&mut sub, 1, "t", QoS::AtMostOnce).await;
    let mut publisher = raw_connected(tcp, ProtocolVersion::V3_1_1, "pub").await;
    publisher
        .send(&publish_packet("t", b"x", QoS::AtMostOnce, 0))
        .await;
    assert!(matches!(sub.recv().await, Some(Packet::Publish(_))));
    let refused = connect_packet(ProtocolVersion::V3_1_1, "", false);
    let (_raw, answer) = raw_connect_with(tcp, ProtocolVersion::V3_1_1, &refused).await;
    assert!(
        matches!(answer, Some(Packet::ConnAck(a)) if a.reason != warren::protocol::ConnectReason::Success)
    );
    let mut bad = tokio::net::TcpStream::connect(broker.local_addr("proxied").unwrap())
        .await
        .unwrap();
    bad.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    eventually(|| broker.stats().connects_refused > 0).await;
    eventually(|| {
        broker
            .render_metrics()
            .contains("warren_connections_rejected_total{")
    })
    .await;

    let (status, exposition) = http(
        broker.metrics_addr().unwrap(),
        "GET",
        "/metrics",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let mut used = metric_names(&deploy("grafana/warren-dashboard.json"));
    used.extend(metric_names(&deploy("prometheus/warren-alerts.yml")));
    assert!(used.len() > 20, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\n{exposition}"
    );
    broker.shutdown().await;
}

#[test]
fn the_unit_and_the_container_keep_their_hardening() {
    let unit = deploy("systemd/warren.service");
    for line in [
        "User=warren",
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=warren",
    ] {
        assert!(unit.contains(line), "warren.service lacks {line:?}");
    }
    let container = deploy("Containerfile");
    assert_eq!(
        container.matches("\nFROM ").count() + usize::from(container.starts_with("FROM ")),
        2
    );
    assert!(
        container.contains("\nUSER warren"),
        "the image runs as root"
    );
    // The image publishes MQTT and /metrics (the defaults are loopback), the admin API not.
    let file = format!("{}/deploy/container.toml", env!("CARGO_MANIFEST_DIR"));
    let config = warren::Config::load(Some(std::path::Path::new(&file)), Some(Default::default()))
        .expect("container.toml loads");
    assert!(config.listeners["tcp"].bind.ip().is_unspecified());
    assert!(config.metrics.bind.ip().is_unspecified());
    assert!(config.admin.bind.ip().is_loopback());
    assert!(container.contains("EXPOSE 1883 9883"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/warren-dashboard.json")).expect("JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10));
}
