//! A real browser: Debian's headless Chromium, driven by playwright-core.
//! - Over WebSocket: a page that uses MQTT.js (npm's `mqtt`, its browser bundle served by the
//!   test from `tests/browser/node_modules`) connects to a `ws` listener, subscribes, publishes
//!   and receives.
//! - The web console (`console.mjs`): logs in with a token, watches the overview's chart
//!   update, finds a connected client, kicks it; the client really is disconnected.
//!   Screenshots go to `target/browser/`.
//!
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

/// The browser tests' folder, or `None` (the test skips) when the tools are missing and not
/// required.
fn browser_dir() -> Option<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if let Some(missing) = missing_tools(&dir) {
        assert!(
            std::env::var("WARREN_TEST_BROWSER_REQUIRED").as_deref() != Ok("1"),
            "browser test required but cannot run: {missing}"
        );
        eprintln!("skipping the browser test: {missing} (scripts/test installs what it needs)");
        return None;
    }
    Some(dir)
}

/// Runs `node SCRIPT ARGS` (bounded: 60 s) and returns its stdout; fails on a non-zero exit.
async fn node(script: &Path, args: &[String]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(script)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser run timed out")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "browser run failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_mqtt_js_publishes_and_receives_over_websocket() {
    let Some(dir) = browser_dir() else { return };
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

    let stdout = node(
        &dir.join("run.mjs"),
        &[format!("ws://127.0.0.1:{}/mqtt", ws.port())],
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_finds_a_client_and_kicks_it() {
    let Some(dir) = browser_dir() else { return };
    let token = "console-token";
    let (broker, tcp) = start_with(|c| {
        c.admin.tokens = vec![warren::admin::auth::digest_hex(token)];
    })
    .await;
    let admin = broker.admin_addr().expect("admin listener");
    let mut others = Vec::new();
    for i in 0..3 {
        others.push(raw_connected(tcp, ProtocolVersion::V3_1_1, &format!("pump-{i}")).await);
    }
    let mut victim = raw_connected(tcp, ProtocolVersion::V5, "valve-17").await;
    raw_subscribe(&mut victim, 1, "valves/17/set", QoS::AtLeastOnce).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    let stdout = node(
        &dir.join("console.mjs"),
        &[
            format!("http://{admin}"),
            token.to_owned(),
            "valve-17".to_owned(),
            shots.display().to_string(),
        ],
    )
    .await;
    assert_eq!(
        stdout.trim(),
        r#"{"chart_updates":true,"connections_card":"4","listed":1,"subscriptions":1,"kicked":true}"#
    );
    // The client was told why and disconnected; the others stay.
    assert_eq!(
        within(disconnect_reason(&mut victim)).await,
        Some(protocol::reason::ADMINISTRATIVE_ACTION)
    );
    eventually(|| broker.session_count() == 3).await;
    assert!(shots.join("console-kicked.png").is_file());
    broker.shutdown().await;
}
