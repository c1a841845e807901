//! The disk store against `kill -9`, with the real binary: a publisher streams QoS 1 and QoS 2
//! messages to a persistent subscriber that is offline, and Warren is killed with SIGKILL at
//! random points of the stream, several times. After the last restart the subscriber resumes:
//! every message acknowledged to the publisher (PUBACK, PUBREC) is delivered, QoS 1 at least
//! once and QoS 2 exactly once (the publisher resends what was not acknowledged, with DUP and
//! its packet id, as a client does after reconnecting), and the retained message is there.
//! Then the file, truncated or overwritten, stops the start with a message naming it.

mod clients;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use warren::protocol::{Packet, ProtocolVersion, PubResp, QoS};

const BIN: &str = env!("CARGO_BIN_EXE_warren");
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(store: &Path, port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("WARREN__LISTENERS__TCP__BIND", format!("127.0.0.1:{port}"))
        .env("WARREN__METRICS__ENABLED", "false")
        .env("WARREN__ADMIN__ENABLED", "false")
        .env("WARREN__STORE__KIND", "disk")
        .env("WARREN__STORE__PATH", store)
        .env("WARREN__STORE__FSYNC", "batch")
        .env("WARREN__STORE__BATCH_INTERVAL_MS", "2")
        .env("WARREN__MQTT__MAX_QUEUED_MESSAGES", "100000")
        .env("WARREN__LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // WARREN_TEST_CHILD_LOGS=1 shows the broker's log (its stdout).
    if std::env::var_os("WARREN_TEST_CHILD_LOGS").is_none() {
        command.stdout(Stdio::null());
    }
    command
}

/// Starts warren on `store` and waits until it accepts connections.
async fn start(store: &Path, port: u16) -> Child {
    start_batching(store, port, 2).await
}

/// [`start`] with a batch interval of `interval_ms`.
async fn start_batching(store: &Path, port: u16, interval_ms: u64) -> Child {
    let child = command(store, port)
        .env("WARREN__STORE__BATCH_INTERVAL_MS", interval_ms.to_string())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn warren");
    let addr = format!("127.0.0.1:{port}");
    within(async {
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    child
}

async fn kill9(mut child: Child) {
    child.start_kill().expect("SIGKILL");
    within(child.wait()).await.expect("reaped");
}

/// A small deterministic generator (the seed is printed, to replay a failure).
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// A folder for the store, a free port and its address, and a seeded generator (the seed is
/// printed).
fn setup() -> (tempfile::TempDir, u16, SocketAddr, Rng) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    (tempfile::tempdir().unwrap(), port, addr, Rng(seed))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent, waiting for PUBACK or PUBREC.
    Published,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// The publisher's side of the stream: what it sent and what was acknowledged.
#[derive(Default)]
struct Publisher {
    next: u32,
    /// Unfinished flows by packet id: (message id, QoS, stage).
    open: BTreeMap<u16, (u32, QoS, Stage)>,
    /// Messages acknowledged (PUBACK, PUBREC), by id, with their QoS.
    acked: BTreeMap<u32, QoS>,
}

fn message(id: u32, qos: QoS, dup: bool) -> Packet {
    let mut packet = clients::publish(
        &format!("crash/data/{}", id % 7),
        id.to_string().as_bytes(),
        qos,
        pkid_of(id),
        false,
    );
    if let Packet::Publish(p) = &mut packet {
        p.dup = dup;
    }
    packet
}

fn pkid_of(id: u32) -> u16 {
    (id % 60_000) as u16 + 1
}

impl Publisher {
    /// Connects (resuming its session), resends what was open, and streams until `stop_after`
    /// more acknowledgements (then returns, leaving flows open) or, with `None`, until every
    /// flow is finished after `total` messages.
    async fn run(&mut self, addr: SocketAddr, stop_after: Option<u64>, total: u32) {
        let (mut raw, _) = raw_session(addr, V4, "pub", false).await;
        for (pkid, (id, qos, stage)) in &self.open {
            match stage {
                Stage::Published => raw.send(&message(*id, *qos, true)).await,
                Stage::Released => raw.send(&Packet::PubRel(PubResp::new(*pkid))).await,
            }
        }
        let mut acks = 0;
        loop {
            while self.open.len() < 32 && self.next < total {
                self.next += 1;
                let id = self.next;
                let qos = if id.is_multiple_of(2) {
                    QoS::ExactlyOnce
                } else {
                    QoS::AtLeastOnce
                };
                self.open.insert(pkid_of(id), (id, qos, Stage::Published));
                raw.send(&message(id, qos, false)).await;
            }
            if self.open.is_empty() {
                raw_disconnect(raw).await;
                return;
            }
            match raw.recv().await.expect("the broker answers") {
                Packet::PubAck(ack) => {
                    let (id, qos, _) = self.open.remove(&ack.pkid).expect("open flow");
                    assert_eq!((qos, ack.reason), (QoS::AtLeastOnce, 0));
                    self.acked.insert(id, qos);
                    acks += 1;
                }
                Packet::PubRec(rec) => {
                    let flow = self.open.get_mut(&rec.pkid).expect("open flow");
                    assert_eq!((flow.1, rec.reason), (QoS::ExactlyOnce, 0));
                    if flow.2 == Stage::Published {
                        flow.2 = Stage::Released;
                        self.acked.insert(flow.0, QoS::ExactlyOnce);
                        acks += 1;
                    }
                    raw.send(&Packet::PubRel(PubResp::new(rec.pkid))).await;
                }
                Packet::PubComp(comp) => {
                    self.open.remove(&comp.pkid);
                }
                other => panic!("unexpected {other:?}"),
            }
            if stop_after.is_some_and(|n| acks >= n) {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_repeated_kill_9() {
    let (dir, port, addr, mut rng) = setup();
    let store = dir.path().join("warren.store");

    let broker = start(&store, port).await;
    let (mut sub, _) = raw_session(addr, V4, "sub", false).await;
    raw_subscribe(&mut sub, 1, "crash/data/#", QoS::ExactlyOnce).await;
    raw_disconnect(sub).await;
    let mut retainer = raw_connected(addr, V4, "retainer").await;
    retainer
        .send(&clients::publish(
            "crash/retained",
            b"kept",
            QoS::AtLeastOnce,
            1,
            true,
        ))
        .await;
    assert!(matches!(retainer.recv().await, Some(Packet::PubAck(_))));
    raw_disconnect(retainer).await;

    let mut publisher = Publisher::default();
    let total = 1500;
    let mut broker = Some(broker);
    for _ in 0..4 {
        let stop_after = 20 + rng.next(300);
        publisher.run(addr, Some(stop_after), total).await;
        // Killed with flows open and messages in flight on the socket.
        kill9(broker.take().unwrap()).await;
        broker = Some(start(&store, port).await);
    }
    publisher.run(addr, None, total).await;
    assert_eq!(
        publisher.acked.len(),
        total as usize,
        "every message acknowledged"
    );
    // Once more, with nothing in flight: everything must be on disk already.
    kill9(broker.take().unwrap()).await;
    let broker = start(&store, port).await;

    let (mut sub, present) = raw_session(addr, V4, "sub", false).await;
    assert!(present, "the subscriber's session survived");
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut in_flight_qos2: BTreeSet<u16> = BTreeSet::new();
    while seen.len() < publisher.acked.len() {
        match sub.recv().await.expect("deliveries") {
            Packet::Publish(p) => {
                let id: u32 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                match p.qos {
                    QoS::AtLeastOnce => {
                        *seen.entry(id).or_default() += 1;
                        sub.send(&Packet::PubAck(PubResp::new(p.pkid))).await;
                    }
                    QoS::ExactlyOnce => {
                        if in_flight_qos2.insert(p.pkid) {
                            *seen.entry(id).or_default() += 1;
                        }
                        sub.send(&Packet::PubRec(PubResp::new(p.pkid))).await;
                    }
                    QoS::AtMostOnce => panic!("QoS 0 delivery of {id}"),
                }
            }
            Packet::PubRel(rel) => {
                in_flight_qos2.remove(&rel.pkid);
                sub.send(&Packet::PubComp(PubResp::new(rel.pkid))).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Whatever else is delivered comes before the ping's answer.
    sub.send(&Packet::PingReq).await;
    loop {
        match sub.recv().await.expect("PINGRESP") {
            Packet::PingResp => break,
            Packet::Publish(p) => {
                let id: u32 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                *seen.entry(id).or_default() += 1;
                if p.qos == QoS::AtLeastOnce {
                    sub.send(&Packet::PubAck(PubResp::new(p.pkid))).await;
                }
            }
            _ => {}
        }
    }
    for (id, qos) in &publisher.acked {
        let n = seen.get(id).copied().unwrap_or(0);
        match qos {
            QoS::ExactlyOnce => assert_eq!(n, 1, "QoS 2 message {id} delivered {n} times"),
            _ => assert!(n >= 1, "QoS 1 message {id} lost"),
        }
    }
    raw_disconnect(sub).await;
    let mut other = raw_connected(addr, V4, "late").await;
    raw_subscribe(&mut other, 1, "crash/retained", QoS::AtLeastOnce).await;
    match other.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"kept"),
        x => panic!("expected the retained message, got {x:?}"),
    }
    kill9(broker).await;

    // The file, damaged: the broker refuses to start and names it.
    for damage in ["truncated", "overwritten"] {
        let copy: PathBuf = dir.path().join(format!("{damage}.store"));
        let mut bytes = std::fs::read(&store).unwrap();
        match damage {
            "truncated" => bytes.truncate(bytes.len() / 3),
            _ => bytes.iter_mut().take(4096).for_each(|b| *b ^= 0xa5),
        }
        std::fs::write(&copy, &bytes).unwrap();
        let output = within(command(&copy, free_port()).stderr(Stdio::piped()).output())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{damage}: started: {stderr}");
        assert!(
            stderr.contains(&*copy.to_string_lossy()),
            "{damage}: names the file: {stderr}"
        );
    }
}

/// A persistent subscriber that keeps up, a QoS 2 receiver as MQTT asks (the spec's method B):
/// a packet id is held from PUBLISH to PUBREL, and a PUBLISH with a held id is a resend, not
/// delivered again. The held ids are its session state, kept across reconnections.
#[derive(Default)]
struct Receiver {
    held: BTreeSet<u16>,
    seen: BTreeMap<u32, usize>,
}

impl Receiver {
    /// Takes one packet from the broker; the answer to send, if any.
    fn take(&mut self, packet: Packet) -> Option<Packet> {
        match packet {
            Packet::Publish(p) => {
                let id: u32 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                match p.qos {
                    QoS::AtLeastOnce => {
                        *self.seen.entry(id).or_default() += 1;
                        Some(Packet::PubAck(PubResp::new(p.pkid)))
                    }
                    QoS::ExactlyOnce => {
                        if self.held.insert(p.pkid) {
                            *self.seen.entry(id).or_default() += 1;
                        }
                        Some(Packet::PubRec(PubResp::new(p.pkid)))
                    }
                    QoS::AtMostOnce => panic!("QoS 0 delivery of {id}"),
                }
            }
            Packet::PubRel(rel) => {
                self.held.remove(&rel.pkid);
                Some(Packet::PubComp(PubResp::new(rel.pkid)))
            }
            Packet::ConnAck(ack) => {
                assert!(ack.session_present, "the session survived");
                None
            }
            Packet::PingResp => None,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Keeps `receiver` connected as client "sub" (clean session 0), reconnecting while the broker
/// is down, until `stop`; then reads up to a PINGRESP and disconnects.
async fn keep_receiving(
    addr: SocketAddr,
    receiver: Arc<Mutex<Receiver>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let encode = |packet: &Packet, out: &mut bytes::BytesMut| {
        warren::protocol::encode(packet, V4, warren::protocol::MAX_PACKET_SIZE, out).unwrap();
    };
    loop {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut out = bytes::BytesMut::new();
        encode(&connect_packet(V4, "sub", false), &mut out);
        let mut buf = bytes::BytesMut::new();
        let mut pinged = false;
        loop {
            while let Some(packet) =
                warren::protocol::decode(&mut buf, Some(V4), &CLIENT_LIMITS).expect("valid")
            {
                let last = matches!(packet, Packet::PingResp);
                if let Some(answer) = receiver.lock().unwrap().take(packet) {
                    encode(&answer, &mut out);
                }
                if last {
                    encode(&Packet::Disconnect(Default::default()), &mut out);
                    let _ = stream.write_all(&out).await;
                    return;
                }
            }
            if stop.load(Relaxed) && !pinged {
                pinged = true;
                encode(&Packet::PingReq, &mut out);
            }
            if !out.is_empty() && stream.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
            let read = tokio::time::timeout(Duration::from_millis(50), stream.read_buf(&mut buf));
            if let Ok(Ok(0) | Err(_)) = read.await {
                break;
            }
        }
    }
}

/// Outgoing QoS 2 to a persistent subscriber that is online while Warren is killed: what was
/// sent to it is resent after the restart with DUP and the same packet id (or its PUBREL is),
/// so it delivers every QoS 2 message exactly once. A wide batch interval (20 ms) leaves room
/// for a kill between a PUBLISH and the commit of its packet id, if the broker let it out first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_qos2_to_an_online_subscriber_is_exactly_once_across_kill_9() {
    let (dir, port, addr, mut rng) = setup();
    let store = dir.path().join("warren.store");
    let mut broker = start_batching(&store, port, 20).await;
    let (mut sub, _) = raw_session(addr, V4, "sub", false).await;
    raw_subscribe(&mut sub, 1, "crash/data/#", QoS::ExactlyOnce).await;
    raw_disconnect(sub).await;
    let receiver = Arc::new(Mutex::new(Receiver::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiving = tokio::spawn(keep_receiving(addr, receiver.clone(), stop.clone()));

    let mut publisher = Publisher::default();
    let total = 1200;
    for _ in 0..3 {
        publisher.run(addr, Some(100 + rng.next(200)), total).await;
        kill9(broker).await;
        broker = start_batching(&store, port, 20).await;
    }
    publisher.run(addr, None, total).await;
    assert_eq!(publisher.acked.len(), total as usize);
    let all_seen = || {
        let r = receiver.lock().unwrap();
        publisher.acked.keys().all(|id| r.seen.contains_key(id))
    };
    // Bounded; a message never seen is reported below with the others.
    let _ = tokio::time::timeout(WAIT, async {
        while !all_seen() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    within(receiving).await.unwrap();
    let seen = std::mem::take(&mut receiver.lock().unwrap().seen);
    kill9(broker).await;
    for (id, qos) in &publisher.acked {
        let n = seen.get(id).copied().unwrap_or(0);
        match qos {
            QoS::ExactlyOnce => assert_eq!(n, 1, "QoS 2 message {id} delivered {n} times"),
            _ => assert!(n >= 1, "QoS 1 message {id} lost"),
        }
    }
}
