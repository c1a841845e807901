//! Test bed for the bridge: a real RabbitMQ (the shared node `scripts/test` starts, or private
//! nodes through `scripts/rabbitmq`), a real Mosquitto per test, the standalone bridge in
//! front of it, and rumqttc devices. Every wait is bounded.
//!
//! Environment: `WARREN_TEST_AMQP_URL` (the shared node), `WARREN_TEST_RABBITMQ_REQUIRED=1`
//! (fail instead of skipping without it), `WARREN_TEST_NODE_DIR` (where private nodes live).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use warren_bridge::standalone::{self, RemoteSide};
use warren_bridge::{Bridge, BridgeConfig, BridgeHandle, BridgeSnapshot};

/// Bound on every wait for something to happen.
pub const WAIT: Duration = Duration::from_secs(20);

/// The shared node's URL, or `None` (the test then returns: skipped) when it is not set and
/// not required. Panics when `WARREN_TEST_RABBITMQ_REQUIRED` is set and the URL is missing.
pub fn amqp_url() -> Option<String> {
    match std::env::var("WARREN_TEST_AMQP_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if required() => panic!(
            "WARREN_TEST_RABBITMQ_REQUIRED is set but WARREN_TEST_AMQP_URL is not: \
             run the tests through scripts/test"
        ),
        _ => {
            eprintln!("SKIPPED: needs RabbitMQ (run scripts/test, or set WARREN_TEST_AMQP_URL)");
            None
        }
    }
}

/// Whether RabbitMQ tests must run.
pub fn required() -> bool {
    std::env::var("WARREN_TEST_RABBITMQ_REQUIRED").is_ok_and(|v| v == "1")
}

/// Returns from the test (skipped) unless RabbitMQ is available.
#[macro_export]
macro_rules! amqp_or_skip {
    () => {
        match common::amqp_url() {
            Some(u) => u,
            None => return,
        }
    };
}

/// A name unique to this process and call (queues, exchanges, topics, client ids).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Polls `f` every 20 ms until it is true; panics with `what` after `WAIT`.
pub async fn wait_until(what: &str, f: impl FnMut() -> bool) {
    wait_until_or(what, f, String::new).await;
}

/// [`wait_until`], with `detail()` in the panic message.
pub async fn wait_until_or(what: &str, f: impl FnMut() -> bool, detail: impl Fn() -> String) {
    wait_within(WAIT, what, f, detail).await;
}

/// [`wait_until_or`] with its own bound.
pub async fn wait_within(
    bound: Duration,
    what: &str,
    mut f: impl FnMut() -> bool,
    detail: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + bound;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} {}",
            detail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Mosquitto broker on a free port, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub async fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\n\
                 max_queued_messages 100000\npersistence false\n"
            ),
        )
        .expect("write mosquitto.conf");
        let bin = ["/usr/sbin/mosquitto", "mosquitto"]
            .into_iter()
            .find(|b| !b.starts_with('/') || Path::new(b).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        let m = Mosquitto {
            child,
            port,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "mosquitto did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        m
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AMQP port `offset` above `WARREN_TEST_NODE_PORT_BASE` (default 5690), for private
/// nodes; each test file uses its own offsets (outage.rs 0, 1 and 4, external.rs 2 and 3), so
/// a run needs the five ports from the base (and each one's distribution port, 20000 above).
pub fn node_port(offset: u16) -> u16 {
    std::env::var("WARREN_TEST_NODE_PORT_BASE")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5690)
        + offset
}

/// A private RabbitMQ node (for tests that stop it, or that configure it), stopped on drop.
pub struct Node {
    dir: PathBuf,
    pub port: u16,
    /// Environment for `scripts/rabbitmq` (`RABBITMQ_PLUGINS`, `WARREN_RABBITMQ_CONF`).
    env: Vec<(&'static str, String)>,
}

fn node_dir_base() -> PathBuf {
    match std::env::var("WARREN_TEST_NODE_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::temp_dir().join("warren-bridge-test-nodes"),
    }
}

fn rabbitmq(cmd: &str, dir: &Path, port: u16, env: &[(&str, String)]) -> bool {
    Command::new(repo_root().join("scripts/rabbitmq"))
        .arg(cmd)
        .arg(dir)
        .arg(port.to_string())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Node {
    /// A node with its own directory and AMQP `port`; not started.
    pub fn new(name: &str, port: u16) -> Node {
        let dir = node_dir_base().join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        std::fs::write(dir.join("port"), port.to_string()).expect("port file");
        Node {
            dir,
            port,
            env: Vec::new(),
        }
    }

    /// Sets `key` in `scripts/rabbitmq start`'s environment.
    pub fn env(mut self, key: &'static str, value: impl Into<String>) -> Node {
        self.env.push((key, value.into()));
        self
    }

    /// The node's directory (its files, logs and database).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `rabbitmqctl ARGS` on the node (`scripts/rabbitmq ctl`): its standard output; panics
    /// when it fails.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = tokio::process::Command::new(repo_root().join("scripts/rabbitmq"));
        cmd.arg("ctl").arg(&self.dir).arg(self.port.to_string());
        cmd.args(args);
        let out = tokio::time::timeout(WAIT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("rabbitmqctl {args:?} in time"))
            .expect("run scripts/rabbitmq ctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub async fn start(&self) {
        self.run("start").await;
    }

    pub async fn stop_app(&self) {
        self.run("stop-app").await;
    }

    pub async fn start_app(&self) {
        self.run("start-app").await;
    }

    async fn run(&self, cmd: &'static str) {
        let (dir, port, env) = (self.dir.clone(), self.port, self.env.clone());
        let ok = tokio::task::spawn_blocking(move || rabbitmq(cmd, &dir, port, &env))
            .await
            .unwrap_or(false);
        assert!(
            ok,
            "scripts/rabbitmq {cmd} failed (see {}/log)",
            self.dir.display()
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        rabbitmq("stop", &self.dir, self.port, &[]);
    }
}

/// An AMQP connection for the test's own declarations and reads.
pub async fn amqp(url: &str) -> (Connection, Channel) {
    let c = tokio::time::timeout(
        WAIT,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .expect("AMQP connect in time")
    .expect("AMQP connect");
    let ch = c.create_channel().await.expect("channel");
    (c, ch)
}

/// Declares `queue` (durable if asked; deleted by RabbitMQ after 5 minutes unused) and binds
/// it to `exchange` with `keys`.
pub async fn queue(ch: &Channel, queue: &str, durable: bool, exchange: &str, keys: &[&str]) {
    let opts = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    let mut args = FieldTable::default();
    args.insert(
        "x-expires".into(),
        lapin::types::AMQPValue::LongInt(300_000),
    );
    ch.queue_declare(queue.into(), opts, args)
        .await
        .expect("queue.declare");
    for k in keys {
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            (*k).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");
    }
}

/// Consumes `queue` and returns the first `n` deliveries (acked), each within `WAIT`; the
/// consumer is cancelled, so anything after them stays in the queue.
pub async fn take(ch: &Channel, queue: &str, n: usize) -> Vec<lapin::message::Delivery> {
    let tag = unique("test");
    ch.basic_qos(n.min(1000) as u16, Default::default())
        .await
        .expect("basic.qos");
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived on {queue}", out.len()))
            .expect("consumer open")
            .expect("delivery");
        d.acker.ack(Default::default()).await.expect("ack");
        out.push(d);
    }
    ch.basic_cancel(tag.as_str().into(), Default::default())
        .await
        .expect("basic.cancel");
    // Deliveries pushed before the cancel took effect go back to the queue.
    let all = lapin::options::BasicNackOptions {
        multiple: true,
        requeue: true,
    };
    ch.basic_nack(0, all).await.expect("basic.nack");
    out
}

/// Messages in `queue` now (passive declare).
pub async fn depth(ch: &Channel, queue: &str) -> u32 {
    let opts = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.into(), opts, FieldTable::default())
        .await
        .expect("passive queue.declare")
        .message_count()
}

/// A `[bridge]` config for RabbitMQ at `url` and Mosquitto at `mqtt_port`, plus `rules` (TOML).
pub fn config(url: &str, mqtt_port: u16, rules: &str) -> BridgeConfig {
    let text = format!(
        "[bridge]\nenabled = true\nurl = \"{url}\"\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\n\
         retry_min_ms = 50\nretry_max_ms = 500\nconnect_timeout_secs = 3\nshutdown_grace_secs = 2\n\
         [bridge.mqtt]\nport = {mqtt_port}\nclient_id = \"{}\"\n{rules}",
        unique("bridge")
    );
    #[derive(serde::Deserialize)]
    struct File {
        bridge: BridgeConfig,
    }
    toml::from_str::<File>(&text)
        .unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
        .bridge
}

/// A bridge in this process with the standalone side.
pub struct Running {
    pub handle: BridgeHandle,
    pub side: Arc<RemoteSide>,
}

impl Running {
    pub fn snapshot(&self) -> BridgeSnapshot {
        self.handle.snapshot()
    }

    /// Waits until every outbound rule is subscribed and every inbound rule consumes.
    pub async fn ready(&self) {
        wait_until("the bridge's rules to be ready", || {
            let s = self.snapshot();
            s.outbound.iter().all(|o| o.subscribed) && s.inbound.iter().all(|i| i.consuming)
        })
        .await;
    }

    pub async fn stop(self) {
        tokio::time::timeout(WAIT, self.handle.shutdown())
            .await
            .expect("bridge shutdown in time");
    }
}

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=warren_bridge=debug`).
pub fn log() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

pub async fn start_bridge(config: &BridgeConfig) -> Running {
    log();
    let side = standalone::connect(config.mqtt.as_ref().expect("[bridge.mqtt]")).expect("side");
    let handle = Bridge::start(config, side.clone()).expect("bridge starts");
    let r = Running { handle, side };
    r.ready().await;
    r
}

/// An MQTT 5 device on Mosquitto; incoming publishes arrive on `rx`.
pub struct Device {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Publish>,
    subacks: mpsc::UnboundedReceiver<()>,
}

impl Device {
    pub async fn connect(port: u16, id: &str) -> Device {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(o, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stx, subacks) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = stx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Device {
            client,
            rx,
            subacks,
        }
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.expect("subscribe");
        tokio::time::timeout(WAIT, self.subacks.recv())
            .await
            .expect("SUBACK in time");
    }

    /// The next incoming publish, within `WAIT`.
    pub async fn next(&mut self) -> Publish {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a message in time")
            .expect("device running")
    }
}

/// The text of a header as a string, if it is a string.
pub fn header(d: &lapin::message::Delivery, k: &str) -> Option<String> {
    let h = d.properties.headers().as_ref()?;
    match h.inner().get(k)? {
        lapin::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into())
        }
        other => Some(format!("{other:?}")),
    }
}

/// A test certificate authority (rcgen) that issues server and client certificates.
pub struct TestCa(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "bridge test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        TestCa(rcgen::CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap())
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.0.as_ref().pem()
    }

    /// A certificate with common name `cn` for `names` (DNS names or IP addresses; none for a
    /// client): (certificate PEM, PKCS#8 key PEM).
    pub fn issue(&self, cn: &str, names: &[&str]) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
