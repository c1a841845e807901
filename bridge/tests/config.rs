//! A bad `[bridge]` table is refused before anything connects, naming the key; an unreachable
//! RabbitMQ is not a start failure.

mod common;

use std::process::Command;
use std::sync::Arc;

use warren_bridge::{Bridge, BridgeConfig, ConnectionState, StartError};

fn run_file(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warren-bridge-run"))
        .arg(&path)
        .output()
        .expect("run warren-bridge-run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_is_refused_with_the_key_named() {
    let cases = [
        (
            "[bridge]\nenabled = true\n[[bridge.outbound]]\nfilter = \"e2e/#\"\nexchange_type = \"x-random\"\n",
            "exchange_type",
        ),
        (
            "[bridge]\nenabled = true\n[[bridge.outbound]]\nfilter = \"e2e/#/x\"\n",
            "bridge.outbound[0].filter",
        ),
        (
            "[bridge]\nenabled = true\n[[bridge.outbound]]\nfilter = \"e2e/#\"\nmapping = \"template\"\ntemplate = \"a.{1\"\n",
            "bridge.outbound[0].template",
        ),
        ("[bridge]\nenabled = true\n[[bridge.inbound]]\nbindings = [\"cmd.#\"]\n", "bridge.inbound[0].queue"),
        ("[bridge]\nenabled = true\nurll = \"amqp://x\"\n", "urll"),
    ];
    for (text, key) in cases {
        let (code, stderr) = run_file(text);
        assert_eq!(code, Some(2), "refused: {text}\n{stderr}");
        assert!(stderr.contains(key), "names {key}: {stderr}");
        assert!(stderr.contains("bridge.toml"), "names the file: {stderr}");
    }
}

/// `MqttSide` for a start that never reaches a message.
struct NoSide;

impl warren_bridge::MqttSide for NoSide {
    type Error = std::io::Error;
    async fn publish(
        &self,
        _m: warren_bridge::BridgeMessage,
    ) -> Result<warren_bridge::Published, Self::Error> {
        Ok(warren_bridge::Published::Accepted)
    }
    async fn subscribe(
        &self,
        _f: Vec<warren_bridge::Filter>,
    ) -> Result<warren_bridge::Subscription, Self::Error> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        std::mem::forget(tx);
        Ok(warren_bridge::Subscription::new(rx))
    }
}

#[tokio::test]
async fn start_refuses_a_bad_config_and_survives_an_unreachable_rabbitmq() {
    let mut c = BridgeConfig {
        url: format!("amqp://guest:guest@127.0.0.1:{}/%2f", common::free_port()),
        connect_timeout_secs: 1,
        reconnect_min_ms: 20,
        reconnect_max_ms: 50,
        ..BridgeConfig::default()
    };
    c.inbound.push(warren_bridge::config::InboundRule::new(""));
    match Bridge::start(&c, Arc::new(NoSide)) {
        Err(StartError::Config(e)) => assert_eq!(e.key, "bridge.inbound[0].queue"),
        _ => panic!("a bad config must not start"),
    }
    c.inbound[0].queue = "q".into();
    let h =
        Bridge::start(&c, Arc::new(NoSide)).expect("an unreachable RabbitMQ is no start failure");
    common::wait_until("failed attempts counted", || {
        h.snapshot().connect_failures >= 3
    })
    .await;
    assert_ne!(h.snapshot().connection, ConnectionState::Connected);
    h.shutdown().await;
}
