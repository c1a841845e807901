//! Contract tests of the store seam, run against both stores through [`SessionStore`]: the
//! offline-session map; and, for a durable store, that what it recovers after a reopen is
//! exactly what the changes it was told describe (checked against a model, [`Image`], over
//! random sequences of changes), and that a fault at any I/O step of a QoS 1 and a QoS 2 flow
//! loses nothing whose ticket was answered "owned" (redb's crash tests, through the storage
//! seam: [`Faults`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use proptest::prelude::*;

use super::change::FlowState;
use super::disk::{DiskStore, FaultKind, Faults};
use super::*;
use crate::config::Fsync;
use crate::gate::{GateWaker, Pending, Verdict};
use crate::protocol::{PublishProperties, QoS, SubscriptionOptions};
use crate::session::mailbox::{Mailbox, MailboxLimits, Message, MessageParts};
use crate::session::SubEntry;

fn config(dir: &std::path::Path, fsync: Fsync) -> StoreConfig {
    StoreConfig {
        kind: StoreKind::Disk,
        path: dir.join("warren.store"),
        fsync,
        batch_interval_ms: 1,
        max_disk_bytes: 1 << 30,
    }
}

fn stores(dir: &std::path::Path) -> Vec<Arc<dyn SessionStore>> {
    vec![
        Arc::new(MemoryStore::default()),
        Arc::new(DiskStore::open(&config(dir, Fsync::Never)).unwrap()),
    ]
}

fn session(id: &str) -> SessionState {
    let limits = Arc::new(MailboxLimits {
        max_messages: 10,
        max_bytes: 1 << 20,
        queue_qos0_offline: false,
    });
    SessionState::new(id.into(), Mailbox::new(limits))
}

#[test]
fn offline_sessions_are_kept_replaced_and_taken_by_every_store() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()) {
        assert!(store.is_empty());
        store.save(session("a"));
        store.save(session("b"));
        let replacement = session("a");
        let id = replacement.mailbox.id();
        store.save(replacement);
        assert_eq!(store.len(), 2);
        assert_eq!(store.take("a").map(|s| s.mailbox.id()), Some(id));
        assert!(store.take("a").is_none());
        assert_eq!(store.len(), 1);
        assert!(store.accepting().is_ok());
        store.flush().unwrap();
    }
}

#[test]
fn the_memory_store_journals_and_recovers_nothing() {
    let store = MemoryStore::default();
    assert!(!store.durable() && !store.gates());
    let counter = Arc::new(Count::default());
    let pending = Pending::new(counter.clone());
    store.record(Change::End { sid: 1 }, Some(pending.ticket()));
    pending.seal();
    assert_eq!(pending.verdict(), Some(Verdict::Owned), "answered at once");
    assert!(store.recover().unwrap().sessions.is_empty());
}

#[derive(Default)]
struct Count(AtomicUsize);
impl GateWaker for Count {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn message(topic: &str, payload: &[u8]) -> Arc<Message> {
    Arc::new(Message::new(
        MessageParts {
            topic,
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: &PublishProperties::default(),
            origin: 0,
            publisher: None,
        },
        Instant::now(),
    ))
}

/// `payload` queued at QoS 1 as `seq` of session 1.
fn queued_qos1(seq: u64, payload: &[u8]) -> Change {
    Change::Queued {
        sid: 1,
        seq,
        message: message("t", payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![],
    }
}

fn entry(qos: QoS) -> SubEntry {
    SubEntry {
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
        id: Some(7),
    }
}

/// The model: what a store should hold after a sequence of changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Image {
    sessions: BTreeMap<u64, (String, u32, bool)>,
    subs: BTreeSet<(u64, String)>,
    queue: BTreeMap<(u64, u64), (String, FlowState)>,
    inbound: BTreeSet<(u64, u16)>,
    retained: BTreeMap<String, String>,
}

impl Image {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Session {
                sid,
                client_id,
                expiry,
                offline_since,
                ..
            } => {
                self.sessions.insert(
                    *sid,
                    (client_id.to_string(), *expiry, offline_since.is_some()),
                );
            }
            Change::WillDone { .. } | Change::Barrier => {}
            Change::End { sid } => {
                self.sessions.remove(sid);
                self.subs.retain(|k| k.0 != *sid);
                self.queue.retain(|k, _| k.0 != *sid);
                self.inbound.retain(|k| k.0 != *sid);
            }
            Change::Subscribed { sid, filter, .. } => {
                self.subs.insert((*sid, filter.to_string()));
            }
            Change::Unsubscribed { sid, filter } => {
                self.subs.remove(&(*sid, filter.to_string()));
            }
            Change::Queued {
                sid, seq, message, ..
            } => {
                let payload = String::from_utf8_lossy(message.payload()).into_owned();
                self.queue
                    .insert((*sid, *seq), (payload, FlowState::Queued));
            }
            Change::Flow { sid, seq, state } => {
                if let Some(e) = self.queue.get_mut(&(*sid, *seq)) {
                    e.1 = *state;
                }
            }
            Change::Done { sid, seq } => {
                self.queue.remove(&(*sid, *seq));
            }
            Change::Inbound { sid, pkid, held } => {
                if *held {
                    self.inbound.insert((*sid, *pkid));
                } else {
                    self.inbound.remove(&(*sid, *pkid));
                }
            }
            Change::Retained { topic, message } => match message {
                Some(m) => {
                    self.retained.insert(
                        topic.to_string(),
                        String::from_utf8_lossy(m.payload()).into_owned(),
                    );
                }
                None => {
                    self.retained.remove(&topic.to_string());
                }
            },
        }
    }

    fn of(recovered: &Recovered) -> Image {
        let mut image = Image::default();
        for s in &recovered.sessions {
            // Only rows of sessions that exist are recovered; the model keeps sessions only.
            image.sessions.insert(
                s.sid,
                (s.client_id.to_string(), s.expiry, s.offline_since.is_some()),
            );
            for (f, _) in &s.subscriptions {
                image.subs.insert((s.sid, f.to_string()));
            }
            for e in &s.queue {
                let payload = String::from_utf8_lossy(e.message.payload()).into_owned();
                image.queue.insert((s.sid, e.seq), (payload, e.state));
            }
            for p in &s.inbound {
                image.inbound.insert((s.sid, *p));
            }
        }
        for m in &recovered.retained {
            image.retained.insert(
                m.topic().to_owned(),
                String::from_utf8_lossy(m.payload()).into_owned(),
            );
        }
        image
    }

    /// Rows of sessions that do not exist are not recovered: drop them from the model too.
    fn sessions_only(mut self) -> Image {
        let sids: BTreeSet<u64> = self.sessions.keys().copied().collect();
        self.subs.retain(|k| sids.contains(&k.0));
        self.queue.retain(|k, _| sids.contains(&k.0));
        self.inbound.retain(|k| sids.contains(&k.0));
        self
    }
}

/// A change described by small numbers (for proptest), made real against shared messages.
fn make(op: (u8, u64, u64), messages: &[Arc<Message>], seqs: &mut BTreeMap<u64, u64>) -> Change {
    let (kind, a, b) = op;
    let sid = 1 + a % 3;
    match kind % 10 {
        0 => Change::Session {
            sid,
            client_id: ByteString::from(format!("c{sid}")),
            expiry: 60,
            offline_since: (b % 2 == 0).then_some(1000 + b),
            will: None,
        },
        1 => Change::End { sid },
        2 => Change::Subscribed {
            sid,
            filter: format!("f/{}", b % 3).into(),
            entry: entry(QoS::AtLeastOnce),
        },
        3 => Change::Unsubscribed {
            sid,
            filter: format!("f/{}", b % 3).into(),
        },
        4 | 5 => {
            let seq = seqs.entry(sid).or_insert(0);
            *seq += 1;
            Change::Queued {
                sid,
                seq: *seq,
                message: messages[(b % messages.len() as u64) as usize].clone(),
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: vec![1],
            }
        }
        6 => Change::Flow {
            sid,
            seq: 1 + b % 4,
            state: FlowState::Sent(1 + (b % 100) as u16),
        },
        7 => Change::Done {
            sid,
            seq: 1 + b % 4,
        },
        8 => Change::Inbound {
            sid,
            pkid: (b % 4) as u16 + 1,
            held: b % 3 != 0,
        },
        _ => {
            let topic = format!("r/{}", a % 2);
            Change::Retained {
                message: (b % 3 != 0).then(|| message(&topic, format!("m{b}").as_bytes())),
                topic: topic.into(),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the changes (and however they fall into commits), a reopened disk store
    /// recovers what the model says.
    #[test]
    fn a_reopened_disk_store_recovers_exactly_what_it_was_told(
        ops in proptest::collection::vec((any::<u8>(), any::<u64>(), any::<u64>()), 1..60),
        flush_every in 1usize..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), Fsync::Never);
        let messages: Vec<_> = (0..4).map(|i| message("t", format!("m{i}").as_bytes())).collect();
        let mut image = Image::default();
        {
            let store = DiskStore::open(&cfg).unwrap();
            let mut seqs = BTreeMap::new();
            for (i, op) in ops.iter().enumerate() {
                let change = make(*op, &messages, &mut seqs);
                image.apply(&change);
                store.record(change, None);
                if i % flush_every == 0 {
                    store.flush().unwrap();
                }
            }
        }
        let store = DiskStore::open(&cfg).unwrap();
        let recovered = store.recover().unwrap();
        prop_assert_eq!(Image::of(&recovered), image.sessions_only());
        // Each message is stored once, however many rows refer to it.
        let mut seen = BTreeMap::new();
        for s in &recovered.sessions {
            for e in &s.queue {
                let p = e.message.payload().to_vec();
                let ptr = Arc::as_ptr(&e.message) as usize;
                prop_assert_eq!(*seen.entry(p).or_insert(ptr), ptr);
            }
        }
    }
}

/// The changes of a QoS 1 and a QoS 2 flow through a persistent subscriber (`sid` 1; the
/// QoS 2 publisher is `sid` 2), each with whether a publisher waits for it.
fn flows() -> Vec<(Change, bool)> {
    let m1 = message("a/1", b"qos1");
    let m2 = message("a/2", b"qos2");
    let session = |sid: u64, offline: bool| Change::Session {
        sid,
        client_id: ByteString::from(format!("c{sid}")),
        expiry: u32::MAX,
        offline_since: offline.then_some(5),
        will: None,
    };
    vec![
        (session(1, false), false),
        (session(2, false), false),
        (
            Change::Subscribed {
                sid: 1,
                filter: "a/#".into(),
                entry: entry(QoS::ExactlyOnce),
            },
            false,
        ),
        (session(1, true), false),
        // QoS 1: queued for the offline subscriber (the publisher waits), sent, acknowledged.
        (
            Change::Queued {
                sid: 1,
                seq: 1,
                message: m1,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: vec![],
            },
            true,
        ),
        // QoS 2: the publisher's packet id held, the message queued (PUBREC waits), retained.
        (
            Change::Inbound {
                sid: 2,
                pkid: 9,
                held: true,
            },
            false,
        ),
        (
            Change::Queued {
                sid: 1,
                seq: 2,
                message: m2.clone(),
                qos: QoS::ExactlyOnce,
                retain: false,
                subscription_ids: vec![],
            },
            true,
        ),
        (
            Change::Retained {
                topic: "a/2".into(),
                message: Some(m2),
            },
            true,
        ),
        (session(1, false), false),
        (
            Change::Flow {
                sid: 1,
                seq: 1,
                state: FlowState::Sent(1),
            },
            false,
        ),
        (
            Change::Flow {
                sid: 1,
                seq: 2,
                state: FlowState::Sent(2),
            },
            false,
        ),
        (Change::Done { sid: 1, seq: 1 }, false),
        (
            Change::Inbound {
                sid: 2,
                pkid: 9,
                held: false,
            },
            false,
        ),
        (
            Change::Flow {
                sid: 1,
                seq: 2,
                state: FlowState::Released(2),
            },
            false,
        ),
        (Change::Done { sid: 1, seq: 2 }, false),
    ]
}

/// Runs the flows with a fault armed at I/O step `step` (one commit per change), then reopens
/// the file without faults: it holds every change of the commits that succeeded, in order,
/// and perhaps the one whose commit failed (written but not confirmed), nothing else; a
/// ticket is answered "owned" exactly when its commit succeeded. Returns the I/O steps taken.
fn flows_with_fault(step: Option<(u64, FaultKind)>) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Always);
    let faults = Faults::new();
    let flows = flows();
    let mut models = vec![Image::default()];
    for (change, _) in &flows {
        let mut next = models.last().cloned().unwrap_or_default();
        next.apply(change);
        models.push(next);
    }
    let mut committed = 0;
    let steps;
    {
        let store = DiskStore::open_with(&cfg, Some(faults.clone())).unwrap();
        let base = faults.steps();
        if let Some((at, kind)) = step {
            faults.arm(at, kind);
        }
        let mut failed = false;
        for (i, (change, waits)) in flows.into_iter().enumerate() {
            let pending = Pending::new(Arc::new(Count::default()));
            let ticket = waits.then(|| pending.ticket());
            pending.seal();
            store.record(change, ticket);
            failed |= store.flush().is_err();
            if !failed {
                committed = i + 1;
            }
            if waits {
                let owned = pending.verdict() == Some(Verdict::Owned);
                assert_eq!(owned, !failed, "change {i}, fault {step:?}");
            }
        }
        steps = faults.steps() - base;
    }
    faults.heal();
    let store = DiskStore::open(&cfg).expect("a store after a failed write reopens");
    let got = Image::of(&store.recover().unwrap());
    let kept = models[committed].clone().sessions_only();
    let with_failed = models.get(committed + 1).cloned().map(Image::sessions_only);
    assert!(
        got == kept || Some(&got) == with_failed.as_ref(),
        "fault {step:?}: {committed} changes committed, recovered {got:?}"
    );
    steps
}

#[test]
fn a_fault_at_any_io_step_of_a_qos1_and_qos2_flow_loses_nothing_acknowledged() {
    let t = Instant::now();
    let total = flows_with_fault(None);
    eprintln!("steps {total} in {:?}", t.elapsed());
    assert!(total > 10, "{total}");
    for kind in [FaultKind::NoSpace, FaultKind::Torn, FaultKind::SyncFails] {
        for at in 0..total {
            flows_with_fault(Some((at, kind)));
        }
    }
}

/// Space: the rows of delivered messages are deleted and their pages reused, so a queue that
/// is filled and drained again and again does not grow the file, and the bytes the store
/// counts (what `max_disk_bytes` limits) go back down.
#[test]
fn delivered_messages_give_their_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Never);
    let store = DiskStore::open(&cfg).unwrap();
    let payload = vec![b'x'; 1024];
    let mut sizes = Vec::new();
    let mut seq = 0;
    for _round in 0..12 {
        let first = seq + 1;
        for _ in 0..2000 {
            seq += 1;
            store.record(queued_qos1(seq, &payload), None);
        }
        store.flush().unwrap();
        let full = store.used_bytes();
        assert!(full > 2000 * 1024, "{full}");
        for s in first..=seq {
            store.record(Change::Done { sid: 1, seq: s }, None);
        }
        store.flush().unwrap();
        assert!(
            store.used_bytes() < full / 10,
            "{} of {full}",
            store.used_bytes()
        );
        sizes.push(std::fs::metadata(&cfg.path).unwrap().len());
    }
    // Later rounds reuse the pages of earlier ones: the file stops growing. (redb grows it by
    // doubling regions, so it may double once before the freed pages come back into use;
    // without reuse, twelve rounds of 2 MB would take it well past twice its early size.)
    assert!(sizes[11] <= 2 * sizes[1], "{sizes:?}");
}

/// `max_disk_bytes` bounds the file, not only the data counted: new persistent work is refused
/// (0x97) before the file's next growth could pass the limit, the file never passes it, and
/// once the queue is delivered a compaction gives the space back and work is taken again.
#[test]
fn the_file_stays_within_max_disk_bytes_and_is_compacted_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Fsync::Never);
    let max = 8 << 20;
    cfg.max_disk_bytes = max;
    let store = DiskStore::open(&cfg).unwrap();
    let file = || std::fs::metadata(&cfg.path).unwrap().len();
    let payload = [b'x'; 64];
    let mut seq = 0;
    let counter = Arc::new(Count::default());
    while store.accepting().is_ok() {
        for _ in 0..500 {
            seq += 1;
            store.record(queued_qos1(seq, &payload), None);
        }
        store.flush().unwrap();
        assert!(file() <= max, "{} past {max}", file());
        assert!(seq < 1_000_000, "never refused");
    }
    // Refused now: a message for a persistent session gets 0x97.
    let pending = Pending::new(counter.clone());
    store.record(queued_qos1(seq + 1, &payload), Some(pending.ticket()));
    pending.seal();
    assert_eq!(pending.verdict(), Some(Verdict::Refused(0x97)));
    assert!(
        store.used_bytes() < max / 2,
        "refused on the file's size ({}), not the counted data ({})",
        file(),
        store.used_bytes()
    );
    seq += 1;
    for s in 1..=seq {
        store.record(Change::Done { sid: 1, seq: s }, None);
    }
    store.flush().unwrap();
    assert!(store.accepting().is_ok(), "{:?}", store.accepting());
    assert!(file() <= max / 2, "compacted to {}", file());
}
