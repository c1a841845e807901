//! A real browser over WebSocket: Debian's headless Chromium, driven by playwright-core, loads
//! a page that uses MQTT.js (npm's `mqtt`, its browser bundle served by the test from
//! `tests/browser/node_modules`) to connect to a `ws` listener, subscribe, publish and receive.
//! `scripts/test` installs Chromium, Node.js and the npm packages, and sets
//! WARREN_TEST_BROWSER_REQUIRED=1, so that the test fails instead of skipping without them.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use warren::config::{ListenerConfig, ListenerKind};
use warren::protocol::{self, Packet, ProtocolVersion, QoS};

/// Why the browser test cannot run here, if it cannot.
fn missing_tools(dir: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} not found (Debian's chromium)"));
    }
    if !dir.join("node_modules/playwright-core").is_dir() || !dir.join("node_modules/mqtt").is_dir()
    {
        return Some(format!("no npm packages in {} (npm ci)", dir.display()));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node not found".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_mqtt_js_publishes_and_receives_over_websocket() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if let Some(missing) = missing_tools(&dir) {
        assert!(
            std::env::var("WARREN_TEST_BROWSER_REQUIRED").as_deref() != Ok("1"),
            "browser test required but cannot run: {missing}"
        );
        eprintln!("skipping the browser test: {missing} (scripts/test installs what it needs)");
        return;
    }
    let (broker, tcp) = start_with(|c| {
        c.listeners.insert(
            "ws".into(),
            ListenerConfig {
                kind: ListenerKind::Ws,
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..ListenerConfig::default()
            },
        );
    })
    .await;
    let ws = broker.local_addr("ws").unwrap();
    // A TCP client: a retained message for the browser, and a subscription to what it sends.
    let mut device = raw_connected(tcp, ProtocolVersion::V3_1_1, "device").await;
    raw_subscribe(&mut device, 1, "browser/#", QoS::AtLeastOnce).await;
    let mut retained = publish_packet("to-browser/greeting", b"hi browser", QoS::AtLeastOnce, 7);
    if let Packet::Publish(p) = &mut retained {
        p.retain = true;
    }
    device.send(&retained).await;
    assert!(matches!(device.recv().await, Some(Packet::PubAck(_))));

    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(dir.join("run.mjs"))
            .arg(format!("ws://127.0.0.1:{}/mqtt", ws.port()))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser run timed out")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser run failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        r#"{"connected":true,"received":["browser/hello=hello from","to-browser/greeting=hi browser"],"protocol":"mqtt"}"#
    );
    // The device got the browser's message.
    match device.recv().await {
        Some(Packet::Publish(p)) => {
            assert_eq!(&*p.topic, "browser/hello");
            device
                .send(&Packet::PubAck(protocol::PubResp::new(p.pkid)))
                .await;
        }
        other => panic!("expected the browser's PUBLISH, got {other:?}"),
    }
}
