//! Device → AMQP queue throughput at QoS 1, one run, one RabbitMQ node, one queue (run by
//! `scripts/bench-bridge`, which starts the node with the `rabbitmq_mqtt` plugin):
//!
//! - `warren`: a device publishes to Warren with the in-process bridge (`ack = "confirmed"`):
//!   each PUBACK comes after RabbitMQ's confirm;
//! - `rabbitmq_mqtt`: the same device load into RabbitMQ's own MQTT plugin, whose default
//!   exchange is `amq.topic`;
//! - `warren_rabbitmq_headers`: as `warren`, through a rule with `headers = "rabbitmq"`: the
//!   messages carry the plugin's two headers instead of the bridge's four, so RabbitMQ gets the
//!   same content from both;
//! - `lapin`: a plain lapin publisher with confirms (256 in flight) to the same exchange.
//!
//! Throughput: one device keeps 256 QoS 1 PUBLISH unacknowledged, as a busy gateway would; then
//! a fleet of 64 devices (connected first) shares the messages and the 256 in flight (4 each),
//! as many small devices would. `WARREN_BENCH_DEVICES` lists the fleet sizes (default `1,64`;
//! each device keeps 256 / N in flight, at least 1); every scenario runs once per size, and
//! ends when every message is acknowledged and the queue holds all of them.
//!
//! Latency: the device (or the fleet, sharing the rate) publishes QoS 1 at fixed rates
//! (`WARREN_BENCH_RATES`, default `1000,5000` msgs/s, each for `WARREN_BENCH_LATENCY_SECS`,
//! default 5 s), each payload stamped with its send time; an AMQP consumer on the queue records
//! the time from the device's write to the consumer's receipt (p50, p99, max).
//!
//! Warren runs in this process (the default) or, with `WARREN_BENCH_WARREN_BIN` set to the
//! `warren` binary, as a process of its own as it is deployed (its own runtime and threads,
//! like the plugin inside RabbitMQ's VM): the load (device, AMQP consumer) then does not share
//! a runtime with the broker it measures. Its CPU and context switches per message are then
//! reported apart;
//! `WARREN_BENCH_WARREN_THREADS` sets its `runtime.worker_threads` (default 0: one per CPU).
//!
//! Prints a JSON line per scenario and round, then the ratios (best round of each).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::protocol::{self, Connect, DecodeLimits, Packet, ProtocolVersion, Publish, QoS};

const QUEUE: &str = "warren.bench.device";
const WINDOW: usize = 256;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const VERSION: ProtocolVersion = ProtocolVersion::V3_1_1;
const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: protocol::MAX_PACKET_SIZE,
    max_user_properties: usize::MAX,
};

/// One MQTT 3.1.1 client on a raw socket, with Warren's codec.
struct Device {
    tcp: TcpStream,
    /// The first topic level: `bench` or `benchrmq` (the `headers = "rabbitmq"` rule).
    root: &'static str,
    rbuf: BytesMut,
    out: BytesMut,
    sent: usize,
}

impl Device {
    async fn connect(addr: SocketAddr, root: &'static str) -> Device {
        Device::connect_as(addr, root, 0).await
    }

    /// Connects as device `index` (client ids differ per index).
    async fn connect_as(addr: SocketAddr, root: &'static str, index: usize) -> Device {
        let tcp = TcpStream::connect(addr).await.expect("MQTT connect");
        tcp.set_nodelay(true).ok();
        let mut device = Device {
            tcp,
            root,
            rbuf: BytesMut::new(),
            out: BytesMut::new(),
            sent: 0,
        };
        let connect = Packet::Connect(Box::new(Connect {
            protocol: VERSION,
            clean_start: true,
            keep_alive: 60,
            client_id: format!("bench-device-{}-{index}", std::process::id()).into(),
            will: None,
            username: Some("guest".into()),
            password: Some(Bytes::from_static(b"guest")),
            properties: Default::default(),
        }));
        protocol::encode(
            &connect,
            VERSION,
            protocol::MAX_PACKET_SIZE,
            &mut device.out,
        )
        .unwrap();
        device.flush().await;
        loop {
            if let Some(packet) = device.next() {
                assert!(matches!(packet, Packet::ConnAck(_)), "{packet:?}");
                return device;
            }
            assert!(device.read().await > 0, "closed before CONNACK");
        }
    }

    fn next(&mut self) -> Option<Packet> {
        protocol::decode(&mut self.rbuf, Some(VERSION), &LIMITS).expect("valid packet")
    }

    /// PUBACKs among the packets read so far.
    fn pubacks(&mut self) -> usize {
        let mut acked = 0;
        while let Some(packet) = self.next() {
            if matches!(packet, Packet::PubAck(_)) {
                acked += 1;
            }
        }
        acked
    }

    async fn read(&mut self) -> usize {
        tokio::time::timeout(Duration::from_secs(30), self.tcp.read_buf(&mut self.rbuf))
            .await
            .expect("the broker answers within 30 s")
            .unwrap()
    }

    /// Encodes one QoS 1 PUBLISH into the output buffer.
    fn publish(&mut self, payload: Bytes) {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: format!("{}/dev/{}", self.root, self.sent % 16).into(),
            pkid: u16::try_from(self.sent % 65_000 + 1).unwrap_or(1),
            properties: Default::default(),
            payload,
        });
        protocol::encode(&publish, VERSION, protocol::MAX_PACKET_SIZE, &mut self.out).unwrap();
        self.sent += 1;
    }

    async fn flush(&mut self) {
        if !self.out.is_empty() {
            self.tcp.write_all(&self.out).await.unwrap();
            self.out.clear();
        }
    }
}

/// `devices` devices (connected first) publish `n` QoS 1 messages between them, each keeping
/// `WINDOW / devices` (at least 1) in flight; returns messages per second from the first
/// PUBLISH to the last PUBACK.
async fn device(
    addr: SocketAddr,
    root: &'static str,
    n: usize,
    payload: &[u8],
    devices: usize,
) -> f64 {
    let payload = Bytes::copy_from_slice(payload);
    let window = (WINDOW / devices).max(1);
    let mut fleet = Vec::with_capacity(devices);
    for index in 0..devices {
        fleet.push(Device::connect_as(addr, root, index).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = fleet
        .into_iter()
        .enumerate()
        .map(|(index, mut device)| {
            // The first `n % devices` devices send one more.
            let n = n / devices + usize::from(index < n % devices);
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut acked = 0usize;
                loop {
                    while device.sent < n && device.sent - acked < window {
                        device.publish(payload.clone());
                    }
                    device.flush().await;
                    acked += device.pubacks();
                    if acked == n {
                        break;
                    }
                    // Wait for PUBACKs only when they are what holds the next PUBLISH back
                    // (reading with nothing in flight would wait for ever).
                    if device.sent == n || device.sent - acked == window {
                        assert!(device.read().await > 0, "closed after {acked} PUBACKs");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a device failed");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// `devices` devices (connected first) publish `n` QoS 1 messages between them at `rate` per
/// second in all, their ticks spread evenly over each one's period; returns when every one is
/// acknowledged.
async fn paced_fleet(
    (addr, root): (SocketAddr, &'static str),
    n: usize,
    rate: u32,
    size: usize,
    t0: Instant,
    devices: usize,
) {
    let mut fleet = Vec::with_capacity(devices);
    for index in 0..devices {
        fleet.push(Device::connect_as(addr, root, index).await);
    }
    let count = u32::try_from(devices).unwrap_or(u32::MAX);
    let period = Duration::from_secs(1) * count / rate.max(1);
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = fleet
        .into_iter()
        .enumerate()
        .map(|(index, device)| {
            let n = n / devices + usize::from(index < n % devices);
            let first = start + period * u32::try_from(index).unwrap_or(0) / count;
            tokio::spawn(paced_device(device, n, first, period, size, t0))
        })
        .collect();
    for task in tasks {
        task.await.expect("a device failed");
    }
}

/// Publishes `n` QoS 1 messages, one per `period` from `first`, each payload starting with its
/// send time (microseconds since `t0`, little endian), padded to `size` bytes; returns when
/// every one is acknowledged.
async fn paced_device(
    mut device: Device,
    n: usize,
    first: tokio::time::Instant,
    period: Duration,
    size: usize,
    t0: Instant,
) {
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut acked = 0usize;
    while acked < n {
        tokio::select! {
            _ = tick.tick(), if device.sent < n && device.sent - acked < WINDOW => {
                let mut payload = vec![b'x'; size.max(8)];
                let stamp = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                payload[..8].copy_from_slice(&stamp.to_le_bytes());
                device.publish(payload.into());
                device.flush().await;
            }
            read = device.tcp.read_buf(&mut device.rbuf) => {
                assert!(read.unwrap() > 0, "closed after {acked} PUBACKs");
                acked += device.pubacks();
            }
        }
    }
}

/// Consumes `n` messages from the queue and returns the latency of each (µs), from the stamp in
/// its payload to its receipt here.
async fn consume_latencies(conn: &Connection, n: usize, t0: Instant) -> Vec<u64> {
    use futures_util::StreamExt;
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            QUEUE.into(),
            "bench-latency".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("a delivery within 30 s")
            .expect("the consumer is open")
            .unwrap();
        let now = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        let stamp = u64::from_le_bytes(delivery.data[..8].try_into().unwrap());
        latencies.push(now.saturating_sub(stamp));
    }
    let _ = ch.close(0, "done".into()).await;
    latencies
}

/// CPU time (ms, user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_ms(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name; in ticks.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks * 10
}

/// Context switches (voluntary and not) of a process's live threads so far, from
/// `/proc/PID/task/*/status`: each is a thread that slept and was woken, or was preempted.
fn context_switches(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// p50, p99 and max of a latency sample (µs).
fn percentiles(mut sample: Vec<u64>) -> (u64, u64, u64) {
    sample.sort_unstable();
    let at = |q: f64| sample[((sample.len() as f64 * q) as usize).min(sample.len() - 1)];
    (at(0.50), at(0.99), sample[sample.len() - 1])
}

/// A plain lapin publisher with confirms, `WINDOW` in flight.
async fn lapin_publisher(conn: &Connection, n: usize, payload: &[u8]) -> f64 {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let confirm = ch
            .basic_publish(
                "amq.topic".into(),
                format!("bench.dev.{}", i % 16).as_str().into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        pending.push_back(confirm);
        if pending.len() >= WINDOW {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    for confirm in pending {
        confirm.await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = ch.close(0, "done".into()).await;
    rate
}

async fn depth(conn: &Connection) -> u32 {
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            QUEUE.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    q.message_count()
}

async fn purge(conn: &Connection) {
    let ch = conn.create_channel().await.unwrap();
    ch.queue_purge(QUEUE.into(), Default::default())
        .await
        .unwrap();
}

/// Waits (bounded) until the queue holds `n` messages.
async fn settle(conn: &Connection, n: usize) {
    for _ in 0..600 {
        if depth(conn).await as usize >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the queue holds {} of {n} messages", depth(conn).await);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("WARREN_BENCH_AMQP_URL") else {
        eprintln!("bridge bench: set WARREN_BENCH_AMQP_URL (scripts/bench-bridge does)");
        return;
    };
    let plugin_port: u16 = env("WARREN_BENCH_PLUGIN_PORT", 0);
    // RabbitMQ's pid (scripts/bench-bridge reads the node's pid file), to report its CPU time.
    let rabbit_pid = std::env::var("WARREN_BENCH_RABBITMQ_PID").unwrap_or_else(|_| "0".into());
    let n: usize = env("WARREN_BENCH_MESSAGES", 50_000);
    let rounds: usize = env("WARREN_BENCH_ROUNDS", 2);
    let fleets: Vec<usize> = env("WARREN_BENCH_DEVICES", "1,64".to_string())
        .split(',')
        .filter_map(|d| d.trim().parse::<usize>().ok())
        .map(|d| d.max(1))
        .collect();
    let payload = vec![b'x'; env("WARREN_BENCH_PAYLOAD", 100)];

    let conn = std::sync::Arc::new(
        Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("AMQP connect"),
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(QUEUE.into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    for key in ["bench.#", "benchrmq.#"] {
        ch.queue_bind(
            QUEUE.into(),
            "amq.topic".into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }

    let bin = std::env::var("WARREN_BENCH_WARREN_BIN").ok();
    let (addr, broker, external) = match bin.filter(|b| !b.is_empty()) {
        Some(bin) => {
            let w = External::start(&bin, &url);
            (w.addr, None, Some(w))
        }
        None => {
            let mut config = warren::Config::for_tests();
            config.mqtt.receive_maximum = WINDOW as u16;
            config.bridge.enabled = true;
            config.bridge.url = url.clone();
            config
                .bridge
                .outbound
                .push(warren_bridge::config::OutboundRule::new("bench/#"));
            let mut plugin_headers = warren_bridge::config::OutboundRule::new("benchrmq/#");
            plugin_headers.headers = warren_bridge::config::HeaderStyle::Rabbitmq;
            config.bridge.outbound.push(plugin_headers);
            let broker = warren::Broker::start(config).await.expect("broker");
            let addr = broker.local_addr("tcp").unwrap();
            while !broker
                .bridge_snapshot()
                .is_some_and(|s| s.outbound.iter().all(|r| r.subscribed))
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (addr, Some(broker), None)
        }
    };
    if external.is_some() {
        // Bridged once by each rule: both are subscribed and their channels open.
        for root in ["bench", "benchrmq"] {
            purge(&conn).await;
            let mut d = Device::connect(addr, root).await;
            for _ in 0..400 {
                d.publish(Bytes::from_static(b"warm-up"));
                d.flush().await;
                while d.pubacks() == 0 {
                    d.read().await;
                }
                if depth(&conn).await > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(depth(&conn).await > 0, "Warren bridges nothing on {root}/#");
        }
    }
    let warren_pid = external
        .as_ref()
        .map_or("0".to_string(), |w| w.pid.to_string());

    for &devices in &fleets {
        let mut best = std::collections::BTreeMap::<&str, f64>::new();
        for round in 0..rounds {
            let mut scenarios: Vec<&str> = vec!["lapin", "warren", "warren_rabbitmq_headers"];
            if plugin_port != 0 {
                scenarios.push("rabbitmq_mqtt");
            }
            for scenario in scenarios {
                purge(&conn).await;
                let cpu_before = (cpu_ms("self"), cpu_ms(&rabbit_pid), cpu_ms(&warren_pid));
                let switches_before = context_switches(&warren_pid);
                let rate = match scenario {
                    "lapin" => lapin_publisher(&conn, n, &payload).await,
                    "warren" => device(addr, "bench", n, &payload, devices).await,
                    "warren_rabbitmq_headers" => {
                        device(addr, "benchrmq", n, &payload, devices).await
                    }
                    _ => {
                        let plugin = SocketAddr::from(([127, 0, 0, 1], plugin_port));
                        device(plugin, "bench", n, &payload, devices).await
                    }
                };
                settle(&conn, n).await;
                // CPU per 1,000 messages: this process (the load, and Warren in process) and
                // RabbitMQ's VM. Unlike rates, CPU time does not depend on what else runs.
                let per_k = |before: u64, after: u64| (after - before) as f64 * 1000.0 / n as f64;
                let (self_ms, rabbit_ms, warren_ms) = (
                    per_k(cpu_before.0, cpu_ms("self")),
                    per_k(cpu_before.1, cpu_ms(&rabbit_pid)),
                    per_k(cpu_before.2, cpu_ms(&warren_pid)),
                );
                let switches =
                    context_switches(&warren_pid).saturating_sub(switches_before) as f64 / n as f64;
                let mode = if external.is_some() {
                    "process"
                } else {
                    "in-process"
                };
                println!(
                    r#"{{"scenario":"{scenario}","round":{round},"messages":{n},"msgs_per_s":{rate:.0},"cpu_ms_per_1k_self":{self_ms:.1},"cpu_ms_per_1k_rabbitmq":{rabbit_ms:.1},"cpu_ms_per_1k_warren_process":{warren_ms:.1},"switches_per_msg_warren_process":{switches:.2},"devices":{devices},"warren":"{mode}"}}"#
                );
                let entry = best.entry(scenario).or_insert(0.0);
                *entry = entry.max(rate);
            }
        }
        let rates: String = env("WARREN_BENCH_RATES", "1000,5000".to_string());
        let secs: u32 = env("WARREN_BENCH_LATENCY_SECS", 5);
        for rate in rates
            .split(',')
            .filter_map(|r| r.trim().parse::<u32>().ok())
        {
            let paced = (rate * secs) as usize;
            let mut best_p99 = std::collections::BTreeMap::<&str, u64>::new();
            for round in 0..rounds {
                let mut scenarios: Vec<(&str, (SocketAddr, &'static str))> = vec![
                    ("warren", (addr, "bench")),
                    ("warren_rabbitmq_headers", (addr, "benchrmq")),
                ];
                if plugin_port != 0 {
                    let plugin = SocketAddr::from(([127, 0, 0, 1], plugin_port));
                    scenarios.push(("rabbitmq_mqtt", (plugin, "bench")));
                }
                for (scenario, target) in scenarios {
                    purge(&conn).await;
                    let t0 = Instant::now();
                    let consumer = {
                        let conn = conn.clone();
                        tokio::spawn(async move { consume_latencies(&conn, paced, t0).await })
                    };
                    paced_fleet(target, paced, rate, payload.len(), t0, devices).await;
                    let (p50, p99, max) = percentiles(consumer.await.unwrap());
                    println!(
                        r#"{{"scenario":"{scenario}-latency","round":{round},"messages":{paced},"rate":{rate},"devices":{devices},"p50_us":{p50},"p99_us":{p99},"max_us":{max}}}"#
                    );
                    let entry = best_p99.entry(scenario).or_insert(u64::MAX);
                    *entry = (*entry).min(p99);
                }
            }
            let p99_ratio = |a: &str| match (best_p99.get(a), best_p99.get("rabbitmq_mqtt")) {
                (Some(w), Some(r)) if *r > 0 => format!("{:.3}", *w as f64 / *r as f64),
                _ => "null".into(),
            };
            println!(
                r#"{{"rate":{rate},"devices":{devices},"p99_ratio_warren_over_rabbitmq_mqtt":{},"p99_ratio_warren_rabbitmq_headers_over_rabbitmq_mqtt":{},"best_p99_us":{best_p99:?}}}"#,
                p99_ratio("warren"),
                p99_ratio("warren_rabbitmq_headers")
            );
        }

        let ratio = |a: &str, b: &str| match (best.get(a), best.get(b)) {
            (Some(a), Some(b)) if *b > 0.0 => format!("{:.3}", a / b),
            _ => "null".into(),
        };
        let best_json: Vec<String> = best
            .iter()
            .map(|(k, v)| format!(r#""{k}":{v:.0}"#))
            .collect();
        println!(
            r#"{{"devices":{devices},"ratio_warren_over_lapin":{},"ratio_warren_over_rabbitmq_mqtt":{},"ratio_warren_rabbitmq_headers_over_rabbitmq_mqtt":{},"best":{{{}}}}}"#,
            ratio("warren", "lapin"),
            ratio("warren", "rabbitmq_mqtt"),
            ratio("warren_rabbitmq_headers", "rabbitmq_mqtt"),
            best_json.join(",")
        );
    }
    if let Some(broker) = broker {
        broker.shutdown().await;
    }
    drop(external);
}

/// Warren as a process of its own: the binary with a configuration written for the run.
struct External {
    child: std::process::Child,
    pid: u32,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl External {
    fn start(bin: &str, amqp_url: &str) -> External {
        let threads: usize = env("WARREN_BENCH_WARREN_THREADS", 0);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("warren.toml");
        std::fs::write(
            &config,
            format!(
                "[runtime]\nworker_threads = {threads}\n\
                 [listeners.tcp]\nbind = \"127.0.0.1:{port}\"\n[metrics]\nenabled = false\n\
                 [admin]\nenabled = false\n[mqtt]\nreceive_maximum = {WINDOW}\n\
                 [bridge]\nenabled = true\nurl = \"{amqp_url}\"\n\
                 [[bridge.outbound]]\nfilter = \"bench/#\"\n\
                 [[bridge.outbound]]\nfilter = \"benchrmq/#\"\nheaders = \"rabbitmq\"\n"
            ),
        )
        .expect("write the configuration");
        let child = std::process::Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start warren");
        let w = External {
            pid: child.id(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(w.addr).is_ok() {
                return w;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("warren does not listen on {}", w.addr);
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
