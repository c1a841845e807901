//! Interoperability with Debian's mosquitto-clients (`mosquitto_pub`, `mosquitto_sub`) at
//! MQTT 3.1.1 and 5.0.

mod clients;
mod common;

use std::net::SocketAddr;
use std::process::{Output, Stdio};

use clients::{QoS5, V5};
use tokio::process::{Child, Command};
use warren::BrokerHandle;

/// Starts `mosquitto_sub` with `args` (after host and port); output format `topic|payload|qos|retain`.
fn spawn_sub(addr: SocketAddr, args: &[&str]) -> Child {
    Command::new("mosquitto_sub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-F", "%t|%p|%q|%r"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mosquitto_sub")
}

/// Runs `mosquitto_pub` with `args` (after host and port) and checks it succeeded.
async fn run_pub(addr: SocketAddr, args: &[&str]) {
    let output = common::within(
        Command::new("mosquitto_pub")
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run mosquitto_pub");
    assert!(
        output.status.success(),
        "mosquitto_pub {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits for `mosquitto_sub` to exit successfully and returns its output lines.
async fn sub_lines(child: Child) -> Vec<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = common::within(child.wait_with_output())
        .await
        .expect("mosquitto_sub output");
    assert!(
        status.success(),
        "mosquitto_sub failed ({status}): {}",
        String::from_utf8_lossy(&stderr)
    );
    String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_subscribed(broker: &BrokerHandle, n: usize) {
    common::eventually(|| broker.subscription_count() == n).await;
}

async fn sub_receives_pub(version: &str, qos: &str) {
    common::require_mosquitto_clients();
    let (broker, addr) = common::start().await;
    let sub = spawn_sub(
        addr,
        &["-V", version, "-t", "t/#", "-q", "2", "-C", "1", "-W", "10"],
    );
    wait_subscribed(&broker, 1).await;
    run_pub(
        addr,
        &[
            "-V",
            version,
            "-t",
            "t/x",
            "-m",
            "hello mosquitto",
            "-q",
            qos,
        ],
    )
    .await;
    assert_eq!(
        sub_lines(sub).await,
        [format!("t/x|hello mosquitto|{qos}|0")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_v311_qos1() {
    sub_receives_pub("mqttv311", "1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_v311_qos2() {
    sub_receives_pub("mqttv311", "2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_v5_qos1() {
    sub_receives_pub("5", "1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_v5_qos2() {
    sub_receives_pub("5", "2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_v5_qos0() {
    sub_receives_pub("5", "0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_gets_retained_message() {
    common::require_mosquitto_clients();
    let (broker, addr) = common::start().await;
    run_pub(
        addr,
        &[
            "-V", "mqttv311", "-t", "r/kept", "-m", "stored", "-q", "1", "-r",
        ],
    )
    .await;
    assert_eq!(broker.retained_count(), 1);
    for version in ["mqttv311", "5"] {
        let sub = spawn_sub(
            addr,
            &["-V", version, "-t", "r/#", "-q", "1", "-C", "1", "-W", "10"],
        );
        assert_eq!(sub_lines(sub).await, ["r/kept|stored|1|1"], "{version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_user_property_reaches_v5_subscriber() {
    common::require_mosquitto_clients();
    let (_broker, addr) = common::start().await;
    let mut sub = V5::connect(addr, "rumqttc-sub").await;
    sub.subscribe("props/#", QoS5::AtLeastOnce).await;
    run_pub(
        addr,
        &[
            "-V",
            "5",
            "-t",
            "props/x",
            "-m",
            "with props",
            "-q",
            "1",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ],
    )
    .await;
    let got = sub.next_publish().await;
    assert_eq!(&got.topic[..], b"props/x");
    assert_eq!(&got.payload[..], b"with props");
    let props = got.properties.expect("properties forwarded");
    assert_eq!(
        props.user_properties,
        vec![("k".to_owned(), "v".to_owned())]
    );
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_publisher_reaches_mosquitto_sub() {
    common::require_mosquitto_clients();
    let (broker, addr) = common::start().await;
    let sub = spawn_sub(
        addr,
        &[
            "-V", "mqttv311", "-t", "m/+", "-q", "2", "-C", "2", "-W", "10",
        ],
    );
    wait_subscribed(&broker, 1).await;
    let publisher = clients::V4::connect(addr, "rumqttc-pub").await;
    publisher
        .publish("m/a", rumqttc::QoS::ExactlyOnce, false, b"one")
        .await;
    publisher
        .publish("m/b", rumqttc::QoS::AtLeastOnce, false, b"two")
        .await;
    // libmosquitto hands a QoS 2 message to the application only at PUBREL, so the QoS 1
    // message may be printed first.
    let mut lines = sub_lines(sub).await;
    lines.sort();
    assert_eq!(lines, ["m/a|one|2|0", "m/b|two|1|0"]);
}

/// Topic aliases: `mosquitto_pub -l` with a topic alias sends the topic once and then only the
/// alias; a rumqttc 5.0 subscriber that allows aliases gets them from Warren, and its client
/// state (which refuses an unknown alias) resolves them. (libmosquitto 2.0's own receive path
/// treats an empty topic as a protocol error, so mosquitto_sub cannot be that subscriber.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_topic_alias_to_rumqttc_with_aliases() {
    use tokio::io::AsyncWriteExt;
    common::require_mosquitto_clients();
    let (_broker, addr) = common::start().await;
    let mut options = clients::v5_options(addr, "alias-sub");
    options.set_topic_alias_max(Some(5));
    let mut sub = V5::start(options).await.unwrap();
    sub.subscribe("al/#", QoS5::AtLeastOnce).await;
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-V", "5", "-t", "al/x", "-q", "1", "-l"])
        .args(["-D", "publish", "topic-alias", "1"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mosquitto_pub");
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\nthree\n").await.unwrap();
    drop(stdin);
    let output = common::within(publisher.wait_with_output()).await.unwrap();
    assert!(
        output.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (n, payload) in ["one", "two", "three"].into_iter().enumerate() {
        let got = sub.next_publish().await;
        assert_eq!(&got.payload[..], payload.as_bytes());
        let alias = got.properties.and_then(|p| p.topic_alias);
        let topic: &[u8] = if n == 0 { b"al/x" } else { b"" };
        assert_eq!((&got.topic[..], alias), (topic, Some(1)));
    }
    // Still connected: rumqttc resolved the aliases without a protocol error.
    sub.subscribe("other", QoS5::AtMostOnce).await;
}
