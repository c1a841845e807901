//! Restart time of the disk store with many persistent sessions and queued messages, and the
//! disk bytes each queued message costs.
//!
//! Builds a store of `SESSIONS` persistent sessions (one subscription each) holding `QUEUED`
//! queued QoS 1 messages of 64 B in all (each message queued for one session), through the
//! store seam, as the broker would; then measures, from a cold process state:
//! - opening the file and reading it whole (`DiskStore::open`);
//! - a whole broker start on it (`Broker::start`: open, rebuild of sessions, trie, registry and
//!   timers, listeners bound) until it accepts connections.
//!
//!   cargo bench --bench store_restart                  # 100,000 sessions, 1,000,000 messages
//!   STORE_SESSIONS=10000 STORE_QUEUED=100000 cargo bench --bench store_restart
//!
//! Prints one JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use warren::config::{Config, Fsync, StoreKind};
use warren::protocol::{PublishProperties, QoS, SubscriptionOptions};
use warren::session::mailbox::{Message, MessageParts};
use warren::session::SubEntry;
use warren::store::disk::DiskStore;
use warren::store::{Change, SessionStore};
use warren::Broker;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` asks; nothing to list.
        return;
    }
    let sessions = env("STORE_SESSIONS", 100_000);
    let queued = env("STORE_QUEUED", 1_000_000);
    let dir = std::env::temp_dir().join(format!("warren-store-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = Config::for_tests();
    config.store.kind = StoreKind::Disk;
    config.store.path = dir.join("warren.store");
    config.store.fsync = Fsync::Never;
    config.store.batch_interval_ms = 200;
    config.store.max_disk_bytes = 1 << 40;
    config.mqtt.max_queued_messages = usize::MAX;
    config.mqtt.max_queued_bytes = usize::MAX;
    config.metrics.enabled = false;

    let fill = Instant::now();
    {
        let store = DiskStore::open(&config.store).unwrap();
        let payload = [7u8; 64];
        let per = queued / sessions.max(1);
        let mut left = queued;
        for s in 0..sessions {
            let sid = store.new_session_id();
            let client_id = ByteString::from(format!("device-{s:06}"));
            store.record(
                Change::Session {
                    sid,
                    client_id,
                    expiry: u32::MAX,
                    offline_since: Some(1),
                    will: None,
                },
                None,
            );
            store.record(
                Change::Subscribed {
                    sid,
                    filter: format!("devices/{s:06}/cmd").into(),
                    entry: SubEntry {
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            ..SubscriptionOptions::default()
                        },
                        id: None,
                    },
                },
                None,
            );
            let n = if s + 1 == sessions {
                left
            } else {
                per.min(left)
            };
            for seq in 1..=n {
                let topic = format!("devices/{s:06}/cmd");
                let message = Arc::new(Message::new(
                    MessageParts {
                        topic: &topic,
                        payload: &payload,
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        properties: &PublishProperties::default(),
                        origin: 0,
                        publisher: None,
                    },
                    Instant::now(),
                ));
                store.record(
                    Change::Queued {
                        sid,
                        seq,
                        message,
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        subscription_ids: Vec::new(),
                    },
                    None,
                );
            }
            left -= n;
            if s % 1000 == 0 {
                store.flush().unwrap();
            }
        }
        store.flush().unwrap();
    }
    let filled = fill.elapsed();
    let file_bytes = std::fs::metadata(&config.store.path).unwrap().len();

    let t = Instant::now();
    let store = DiskStore::open(&config.store).unwrap();
    let opened = t.elapsed();
    let recovered = store.recover().unwrap();
    let found_sessions = recovered.sessions.len();
    let found_queued: usize = recovered.sessions.iter().map(|s| s.queue.len()).sum();
    drop(recovered);
    drop(store);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (started, restored_sessions) = runtime.block_on(async {
        let t = Instant::now();
        let handle = Broker::start(config.clone()).await.unwrap();
        let addr = handle.local_addr("tcp").unwrap();
        tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = t.elapsed();
        let n = handle.offline_session_count();
        tokio::time::timeout(Duration::from_secs(60), handle.shutdown())
            .await
            .ok();
        (started, n)
    });
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{{\"bench\":\"store_restart\",\"sessions\":{sessions},\"queued\":{queued},\
         \"fill_s\":{:.2},\"file_bytes\":{file_bytes},\"bytes_per_queued_message\":{:.1},\
         \"open_and_read_ms\":{:.0},\"found_sessions\":{found_sessions},\"found_queued\":{found_queued},\
         \"broker_start_ms\":{:.0},\"restored_sessions\":{restored_sessions}}}",
        filled.as_secs_f64(),
        file_bytes as f64 / queued.max(1) as f64,
        opened.as_secs_f64() * 1e3,
        started.as_secs_f64() * 1e3,
    );
}
