//! Outages, each on a private RabbitMQ node of its own (scripts/rabbitmq), so that stopping it
//! disturbs no other test: RabbitMQ's application stopped and started in the middle of a
//! stream, the bridge process killed (-9) with `spooled` messages while RabbitMQ is down, and
//! a node whose `max_message_size` is below the rule's limit.
//!
//! Ports: `WARREN_TEST_NODE_PORT_BASE` (default 5690), the next one and the fourth after it
//! (`external.rs` takes the second and third).

mod common;

use std::collections::HashSet;
use std::process::Stdio;

use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use warren_bridge::ConnectionState;

use common::{
    amqp, config, node_port, start_bridge, take, unique, wait_until, Device, Mosquitto, Node,
};

/// The payloads' sequence numbers in first-arrival order, and how many copies were extra.
fn first_copies(bodies: &[Vec<u8>]) -> (Vec<usize>, usize) {
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for b in bodies {
        let n: usize = std::str::from_utf8(b).unwrap().parse().unwrap();
        if seen.insert(n) {
            order.push(n);
        }
    }
    let dups = bodies.len() - order.len();
    (order, dups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_mid_stream_loses_no_acknowledged_message_and_keeps_order() {
    let _ = amqp_or_skip!();
    const N: usize = 3000;
    let node = Node::new(&unique("restart"), node_port(0));
    node.start().await;
    let m = Mosquitto::start().await;
    let (t, q) = (unique("stream"), unique("q"));
    {
        let (_c, ch) = amqp(&node.url()).await;
        common::queue(&ch, &q, true, "amq.topic", &[&format!("{t}.#")]).await;
    }
    let rules = format!("[[bridge.outbound]]\nfilter = \"{t}/#\"\nmax_in_flight = 64\n");
    let b = start_bridge(&config(&node.url(), m.port, &rules)).await;
    let dev = Device::connect(m.port, &unique("dev")).await;
    let client = dev.client.clone();
    let topic = format!("{t}/seq");
    // A stream of about three seconds: the outage starts and ends while it flows. The second
    // half waits until the bridge has seen the outage, so that a slow stop_app on a loaded
    // machine cannot let the whole stream through before it.
    let (outage_seen, mut outage) = watch::channel(false);
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            if i == N / 2 {
                tokio::time::timeout(common::WAIT, outage.wait_for(|seen| *seen))
                    .await
                    .expect("the outage within the wait")
                    .unwrap();
            }
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, i.to_string())
                .await
                .unwrap();
            if i % 10 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    });
    let acked = || b.snapshot().outbound[0].counts.acked;
    wait_until("a tenth of the stream acknowledged", || {
        acked() >= N as u64 / 10
    })
    .await;

    node.stop_app().await;
    wait_until("the bridge to see the outage", || {
        b.snapshot().connection != ConnectionState::Connected
    })
    .await;
    let during = acked();
    outage_seen.send_replace(true);
    let failures = b.snapshot().connect_failures;
    wait_until("two failed reconnection attempts", || {
        b.snapshot().connect_failures >= failures + 2
    })
    .await;
    assert_eq!(
        acked(),
        during,
        "nothing is acknowledged while RabbitMQ is away"
    );
    assert!(during < N as u64, "the outage came mid-stream");

    node.start_app().await;
    // Generous: the node restarts and the backlog drains on 2 shared cores.
    common::wait_within(
        3 * common::WAIT,
        "every message acknowledged",
        || acked() == N as u64,
        || {
            format!(
                "{:#?} publisher done: {}",
                b.snapshot(),
                publisher.is_finished()
            )
        },
    )
    .await;
    publisher.await.unwrap();
    let s = b.snapshot();
    assert!(s.reconnects >= 1);
    let republished = s.outbound[0].counts.republished as usize;
    b.stop().await;

    let (_c, ch) = amqp(&node.url()).await;
    let depth = common::depth(&ch, &q).await as usize;
    let bodies: Vec<Vec<u8>> = take(&ch, &q, depth)
        .await
        .into_iter()
        .map(|d| d.data)
        .collect();
    let (order, dups) = first_copies(&bodies);
    assert_eq!(order, (0..N).collect::<Vec<_>>(), "all of them, in order");
    assert!(
        dups <= republished,
        "{dups} duplicates, {republished} republished"
    );
}

/// A `warren-bridge-run` child, its state lines on a watch channel.
struct ChildBridge {
    child: tokio::process::Child,
    state: watch::Receiver<String>,
}

impl ChildBridge {
    fn spawn(config: &std::path::Path) -> ChildBridge {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren-bridge-run"))
            .arg(config)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn warren-bridge-run");
        let out = child.stdout.take().expect("stdout");
        let (tx, state) = watch::channel(String::new());
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
        ChildBridge { child, state }
    }

    /// The value of `key` in the last state line.
    fn get(&self, key: &str) -> String {
        let line = self.state.borrow().clone();
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
            .unwrap_or_default()
    }

    fn count(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or(0)
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("kill -9");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_messages_survive_kill_9_of_the_bridge_while_rabbitmq_is_down() {
    let _ = amqp_or_skip!();
    const N: usize = 500;
    let node = Node::new(&unique("spool"), node_port(1));
    let m = Mosquitto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (t, q) = (unique("spooled"), unique("q"));
    let file = dir.path().join("bridge.toml");
    std::fs::write(
        &file,
        format!(
            "[bridge]\nenabled = true\nurl = \"{}\"\nreconnect_min_ms = 100\nreconnect_max_ms = 500\n\
             connect_timeout_secs = 2\n[bridge.spool]\npath = \"{}\"\n\
             [bridge.mqtt]\nport = {}\nclient_id = \"{}\"\n\
             [[bridge.outbound]]\nfilter = \"{t}/#\"\nack = \"spooled\"\n",
            node.url(),
            dir.path().join("spool.redb").display(),
            m.port,
            unique("spool-bridge"),
        ),
    )
    .unwrap();

    // RabbitMQ is down (never started yet): the bridge spools.
    let first = ChildBridge::spawn(&file);
    wait_until("the child bridge to subscribe", || {
        first.get("subscribed") == "true"
    })
    .await;
    let dev = Device::connect(m.port, &unique("dev")).await;
    for i in 0..N {
        dev.client
            .publish(format!("{t}/seq"), QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap();
    }
    wait_until("every message spooled and acknowledged", || {
        first.count("acked") >= N as u64 && first.count("spool") >= N as u64
    })
    .await;
    assert_eq!(first.get("connected"), "false");
    first.kill().await;

    node.start().await;
    let (_c, ch) = amqp(&node.url()).await;
    common::queue(&ch, &q, true, "amq.topic", &[&format!("{t}.#")]).await;
    let second = ChildBridge::spawn(&file);
    wait_until("the spool forwarded", || {
        second.get("connected") == "true"
            && second.get("spool") == "0"
            && second.count("confirmed") >= N as u64
    })
    .await;
    second.kill().await;
    let depth = common::depth(&ch, &q).await as usize;
    let bodies: Vec<Vec<u8>> = take(&ch, &q, depth)
        .await
        .into_iter()
        .map(|d| d.data)
        .collect();
    let (order, _dups) = first_copies(&bodies);
    assert_eq!(order, (0..N).collect::<Vec<_>>(), "all of them, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_rabbitmqs_max_message_size_is_dropped_once_not_published_forever() {
    let _ = amqp_or_skip!();
    let node = Node::new(&unique("maxsize"), node_port(4));
    let conf = node.dir().join("max-size.conf");
    std::fs::write(&conf, "max_message_size = 1024\n").expect("write the node's config");
    let node = node.env("WARREN_RABBITMQ_CONF", conf.display().to_string());
    node.start().await;
    let m = Mosquitto::start().await;
    let (t, t2, q) = (unique("size"), unique("other"), unique("q"));
    let (_c, ch) = amqp(&node.url()).await;
    common::queue(
        &ch,
        &q,
        false,
        "amq.topic",
        &[&format!("{t}.#"), &format!("{t2}.#")],
    )
    .await;
    // The rules' own limit is RabbitMQ's default (128 MiB): the node's 1 KiB is news to them.
    let rules = format!(
        "[[bridge.outbound]]\nfilter = \"{t}/#\"\n[[bridge.outbound]]\nfilter = \"{t2}/#\"\n"
    );
    let b = start_bridge(&config(&node.url(), m.port, &rules)).await;
    let dev = Device::connect(m.port, &unique("dev")).await;
    let big = "x".repeat(2048);
    let publish_to = |root: &str, payload: String| {
        let (client, topic) = (dev.client.clone(), format!("{root}/d"));
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap()
        }
    };
    let publish = |payload: String| publish_to(&t, payload);
    let confirmed = |n: u64| {
        let b = &b;
        async move {
            wait_until("confirms", || {
                b.snapshot().outbound[0].counts.confirmed == n
            })
            .await;
        }
    };
    // Each small one confirmed before the next big one: a channel closed under an unconfirmed
    // message would publish it again (a duplicate, allowed but not what this test counts).
    publish("before".into()).await;
    confirmed(1).await;
    publish(big.clone()).await;
    publish("after".into()).await;
    confirmed(2).await;
    publish(big).await;
    publish("last".into()).await;
    confirmed(3).await;
    let got: Vec<Vec<u8>> = take(&ch, &q, 3).await.into_iter().map(|d| d.data).collect();
    assert_eq!(
        got,
        [b"before".to_vec(), b"after".to_vec(), b"last".to_vec()]
    );
    // The first big one closed one channel and was then dropped; the second was dropped before
    // anything was sent.
    let c = b.snapshot().outbound[0].counts.clone();
    assert_eq!(c.dropped_unmappable, 2, "{c:?}");
    // The limit is the node's: the other rule drops a big one before sending it (no channel
    // closed under it, so nothing to publish again) and goes on.
    let other = |payload: String| publish_to(&t2, payload);
    other("x".repeat(2048)).await;
    other("other".into()).await;
    wait_until("the other rule's confirm", || {
        b.snapshot().outbound[1].counts.confirmed == 1
    })
    .await;
    let got = take(&ch, &q, 1).await.remove(0).data;
    assert_eq!(got, b"other");
    let c = b.snapshot().outbound[1].counts.clone();
    assert_eq!((c.dropped_unmappable, c.republished), (1, 0), "{c:?}");
    b.stop().await;
}
