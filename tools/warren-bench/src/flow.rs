//! Message flows: the publisher and subscriber loops, and the three scenarios built from them
//! (`fanin`, `fanout`, `latency`).
//!
//! Each client is one task driving both directions of its socket with `select!` over a read and
//! (when there are bytes to send) a write, so acknowledgements never wait behind a blocked write.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, MissedTickBehavior};
use warren::protocol::{Packet, PubResp, Publish, PublishProperties, QoS};

use crate::client::{next_packet, put, Conn, Target};
use crate::opts::{Opts, Scenario};
use crate::report::{rss_kib, say};

/// Bytes a publisher keeps queued for writing before it stops producing.
const WRITE_HIGH: usize = 64 * 1024;
/// Read buffer of a subscriber.
const READ_CAPACITY: usize = 256 * 1024;

/// Counters shared by every client of a run.
#[derive(Default)]
pub struct Counters {
    /// PUBLISH packets written by publishers.
    pub sent: AtomicU64,
    /// PUBLISH packets acknowledged to publishers (PUBACK, or PUBCOMP for QoS 2).
    pub acked: AtomicU64,
    /// PUBLISH packets received by subscribers (summed).
    pub received: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Relaxed),
            self.acked.load(Relaxed),
            self.received.load(Relaxed),
        )
    }
}

/// How a publisher publishes.
#[derive(Clone)]
pub struct PubCfg {
    pub topic: ByteString,
    pub qos: QoS,
    pub payload: usize,
    /// Put the send time (ns since `base`) in the first 8 payload bytes.
    pub stamp: bool,
    pub base: Instant,
    /// Messages per second; 0 = as fast as the socket (QoS 0) or the window (QoS 1/2) allows.
    pub rate: f64,
    /// Unacknowledged QoS 1/2 messages allowed at once.
    pub window: usize,
    /// Longest wait for outstanding acknowledgements after the stop signal.
    pub drain: Duration,
}

/// Publishes until `stop` turns true, then waits (up to `drain`) for its acknowledgements.
pub async fn publisher(
    mut conn: Conn,
    cfg: PubCfg,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let version = conn.version;
    let fixed_payload = Bytes::from(vec![b'x'; cfg.payload]);
    let mut inflight = 0usize;
    let mut next_pkid: u16 = 0;
    let mut produced = 0u64;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut stopping: Option<Instant> = None;
    let (mut rd, mut wr) = conn.stream.split();
    let wbuf = &mut conn.wbuf;
    let rbuf = &mut conn.rbuf;
    rbuf.reserve(16 * 1024);
    loop {
        if stopping.is_none() && *stop.borrow() {
            stopping = Some(Instant::now());
        }
        if let Some(since) = stopping {
            if cfg.qos == QoS::AtMostOnce || inflight == 0 || since.elapsed() >= cfg.drain {
                break;
            }
        } else {
            // Produce what the rate, the window and the write buffer allow.
            let mut allowed = if cfg.rate > 0.0 {
                ((start.elapsed().as_secs_f64() * cfg.rate) as u64).saturating_sub(produced)
            } else {
                u64::MAX
            };
            while allowed > 0
                && wbuf.len() < WRITE_HIGH
                && (cfg.qos == QoS::AtMostOnce || inflight < cfg.window)
            {
                let pkid = if cfg.qos == QoS::AtMostOnce {
                    0
                } else {
                    next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                    inflight += 1;
                    next_pkid
                };
                let payload = if cfg.stamp {
                    let mut p = BytesMut::with_capacity(cfg.payload);
                    p.put_u64(cfg.base.elapsed().as_nanos() as u64);
                    p.resize(cfg.payload, b'x');
                    p.freeze()
                } else {
                    fixed_payload.clone()
                };
                let publish = Packet::Publish(Publish {
                    dup: false,
                    qos: cfg.qos,
                    retain: false,
                    topic: cfg.topic.clone(),
                    pkid,
                    properties: PublishProperties::default(),
                    payload,
                });
                put(&publish, version, wbuf)?;
                produced += 1;
                allowed -= 1;
                counters.sent.fetch_add(1, Relaxed);
            }
        }
        let paced = cfg.rate > 0.0 && stopping.is_none();
        tokio::select! {
            n = rd.read_buf(rbuf) => {
                if n? == 0 {
                    bail!("publisher: connection closed by the broker");
                }
                while let Some(p) = next_packet(rbuf, version)? {
                    match p {
                        Packet::PubAck(_) | Packet::PubComp(_) => {
                            inflight = inflight.saturating_sub(1);
                            counters.acked.fetch_add(1, Relaxed);
                        }
                        Packet::PubRec(r) => {
                            if r.reason >= 0x80 {
                                inflight = inflight.saturating_sub(1);
                            } else {
                                put(&Packet::PubRel(PubResp::new(r.pkid)), version, wbuf)?;
                            }
                        }
                        Packet::Disconnect(d) => {
                            bail!("publisher: DISCONNECT from the broker, reason {:#x}", d.reason)
                        }
                        _ => {}
                    }
                }
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(16 * 1024);
                }
            }
            n = wr.write(wbuf), if !wbuf.is_empty() => {
                let n = n?;
                wbuf.advance(n);
            }
            _ = tick.tick(), if paced => {}
            _ = stop.changed(), if stopping.is_none() => {}
        }
    }
    // Flush what was produced, then leave.
    if !wbuf.is_empty() {
        let _ = timeout(cfg.drain, wr.write_all(wbuf)).await;
        wbuf.clear();
    }
    conn.goodbye().await;
    Ok(())
}

/// What a subscriber returns.
pub struct SubResult {
    pub latency_ns: Option<Histogram<u64>>,
}

/// How a subscriber records.
#[derive(Clone)]
pub struct SubCfg {
    /// Read a send timestamp from each payload and record its latency.
    pub stamp: bool,
    pub base: Instant,
    /// Record only messages sent at or after this time (ns since `base`): skips the warmup.
    pub record_from_ns: u64,
}

/// Receives (and acknowledges) until `stop` turns true.
pub async fn subscriber(
    mut conn: Conn,
    cfg: SubCfg,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Result<SubResult> {
    let version = conn.version;
    let mut hist = if cfg.stamp {
        Some(Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3)?)
    } else {
        None
    };
    let (mut rd, mut wr) = conn.stream.split();
    let wbuf = &mut conn.wbuf;
    let rbuf = &mut conn.rbuf;
    loop {
        if *stop.borrow() {
            break;
        }
        if rbuf.capacity() - rbuf.len() < READ_CAPACITY / 4 {
            rbuf.reserve(READ_CAPACITY);
        }
        tokio::select! {
            n = rd.read_buf(rbuf) => {
                if n? == 0 {
                    bail!("subscriber: connection closed by the broker");
                }
                let mut got = 0u64;
                let now_ns = if cfg.stamp { cfg.base.elapsed().as_nanos() as u64 } else { 0 };
                while let Some(p) = next_packet(rbuf, version)? {
                    match p {
                        Packet::Publish(p) => {
                            got += 1;
                            if let (Some(h), true) = (hist.as_mut(), p.payload.len() >= 8) {
                                let sent_ns = (&p.payload[..8]).get_u64();
                                if sent_ns >= cfg.record_from_ns {
                                    h.saturating_record(now_ns.saturating_sub(sent_ns).max(1));
                                }
                            }
                            match p.qos {
                                QoS::AtMostOnce => {}
                                QoS::AtLeastOnce => {
                                    put(&Packet::PubAck(PubResp::new(p.pkid)), version, wbuf)?
                                }
                                QoS::ExactlyOnce => {
                                    put(&Packet::PubRec(PubResp::new(p.pkid)), version, wbuf)?
                                }
                            }
                        }
                        Packet::PubRel(r) => {
                            put(&Packet::PubComp(PubResp::new(r.pkid)), version, wbuf)?
                        }
                        Packet::Disconnect(d) => {
                            bail!("subscriber: DISCONNECT from the broker, reason {:#x}", d.reason)
                        }
                        _ => {}
                    }
                }
                counters.received.fetch_add(got, Relaxed);
            }
            n = wr.write(wbuf), if !wbuf.is_empty() => {
                let n = n?;
                wbuf.advance(n);
            }
            _ = stop.changed() => {}
        }
    }
    conn.goodbye().await;
    Ok(SubResult { latency_ns: hist })
}

/// Runs `fanin`, `fanout` or `latency` and returns the JSON summary fields.
pub async fn run(o: &Opts, target: &Target) -> Result<Map<String, Value>> {
    let base = Instant::now();
    let counters = Arc::new(Counters::default());
    let rss_before = o.broker_pid.and_then(rss_kib);
    let (n_subs, n_pubs) = match o.scenario {
        Scenario::Fanin => (o.share_group.max(1), o.publishers),
        Scenario::Fanout => (o.subscribers, 1),
        _ => (1, 1),
    };
    let (sub_filter, pub_topic) = match o.scenario {
        Scenario::Fanin if o.share_group > 0 => ("$share/bench/bench/#".to_string(), None),
        Scenario::Fanin => ("bench/#".to_string(), None),
        Scenario::Fanout => ("bench/fanout".to_string(), Some("bench/fanout")),
        _ => ("bench/latency".to_string(), Some("bench/latency")),
    };
    let stamp = o.scenario == Scenario::Latency || o.stamp;
    // How many subscribers receive each message: one of a shared group, else all of them.
    let copies = if o.share_group > 0 { 1 } else { n_subs as u64 };

    // Subscribers first, so that no message is published before they are there.
    let (sub_stop_tx, sub_stop_rx) = watch::channel(false);
    let sub_cfg = SubCfg {
        stamp,
        base,
        record_from_ns: ((o.warmup) * 1e9) as u64,
    };
    let setup_start = Instant::now();
    let mut subs: Vec<JoinHandle<Result<SubResult>>> = Vec::with_capacity(n_subs);
    let mut sub_conns = Vec::with_capacity(n_subs);
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..n_subs {
        let target = target.clone();
        let id = format!("{}sub-{i}", o.client_id_prefix);
        let filter = sub_filter.clone();
        let qos = o.qos;
        let persistent = o.persistent;
        let cap = if n_subs > 1 { 16 * 1024 } else { READ_CAPACITY };
        connecting.spawn(async move {
            let mut c = Conn::connect_session(&target, i, &id, 0, cap, persistent).await?;
            c.subscribe(&filter, qos).await?;
            anyhow::Ok(c)
        });
        // Bound the handshakes in flight.
        if connecting.len() >= 128 {
            if let Some(r) = connecting.join_next().await {
                sub_conns.push(r??);
            }
        }
    }
    while let Some(r) = connecting.join_next().await {
        sub_conns.push(r??);
    }
    for c in sub_conns {
        subs.push(tokio::spawn(subscriber(
            c,
            sub_cfg.clone(),
            counters.clone(),
            sub_stop_rx.clone(),
        )));
    }
    say(
        o,
        format_args!(
            "{} subscriber(s) connected and subscribed in {:.2} s",
            n_subs,
            setup_start.elapsed().as_secs_f64()
        ),
    );

    let (pub_stop_tx, pub_stop_rx) = watch::channel(false);
    let mut pubs = Vec::with_capacity(n_pubs);
    for i in 0..n_pubs {
        let id = format!("{}pub-{i}", o.client_id_prefix);
        let c = Conn::connect(target, n_subs + i, &id, 0, 16 * 1024).await?;
        let topic = match pub_topic {
            Some(t) => t.to_string(),
            None => format!("bench/{i}"),
        };
        let cfg = PubCfg {
            topic: ByteString::from(topic),
            qos: o.qos,
            payload: o.payload,
            stamp,
            base,
            rate: o.rate,
            window: o.inflight,
            drain: Duration::from_secs_f64(o.drain),
        };
        pubs.push(tokio::spawn(publisher(
            c,
            cfg,
            counters.clone(),
            pub_stop_rx.clone(),
        )));
    }
    // The latency warmup is counted from `base`; keep the others' warmup the same length.
    let run_start = Instant::now();
    let warmup_end = base + Duration::from_secs_f64(o.warmup);
    tokio::time::sleep_until(warmup_end.max(run_start).into()).await;
    let t0 = Instant::now();
    let s0 = counters.snapshot();
    let mut broken = None;
    let end = t0 + Duration::from_secs_f64(o.duration);
    // Watch for clients dying during the run.
    while Instant::now() < end {
        sleep(Duration::from_millis(100).min(end - Instant::now())).await;
        if let Some(what) = early_exit(&pubs, &subs) {
            broken = Some(what);
            break;
        }
    }
    let t1 = Instant::now();
    let s1 = counters.snapshot();
    let rss_after = o.broker_pid.and_then(rss_kib);
    let measured = (t1 - t0).as_secs_f64();

    // Stop publishing; publishers wait for their own acknowledgements (up to --drain).
    let _ = pub_stop_tx.send(true);
    let mut errors: Vec<String> = Vec::new();
    let pubs_deadline = tokio::time::Instant::now() + Duration::from_secs_f64(o.drain + 5.0);
    for p in pubs {
        match tokio::time::timeout_at(pubs_deadline, p).await {
            Err(_) => errors.push("publisher did not stop in time".to_string()),
            Ok(p) => match p {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("{e:#}")),
                Err(e) => errors.push(format!("publisher task: {e}")),
            },
        }
    }
    // Drain: wait until every acknowledged message arrived (QoS 1/2) or nothing more arrives.
    let drain_start = Instant::now();
    let drain_limit = Duration::from_secs_f64(o.drain);
    let mut last = counters.received.load(Relaxed);
    let mut last_change = Instant::now();
    loop {
        let (sent, acked, received) = counters.snapshot();
        let expected = if o.qos == QoS::AtMostOnce {
            sent
        } else {
            acked
        } * copies;
        if received >= expected || drain_start.elapsed() >= drain_limit {
            break;
        }
        if received != last {
            last = received;
            last_change = Instant::now();
        } else if last_change.elapsed() >= Duration::from_millis(1000) {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    let _ = sub_stop_tx.send(true);
    let mut hist: Option<Histogram<u64>> = None;
    // One deadline for all of them, not one per subscriber.
    let subs_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for s in subs {
        match tokio::time::timeout_at(subs_deadline, s).await {
            Ok(Ok(Ok(r))) => {
                if let Some(h) = r.latency_ns {
                    match hist.as_mut() {
                        Some(all) => all.add(&h)?,
                        None => hist = Some(h),
                    }
                }
            }
            Ok(Ok(Err(e))) => errors.push(format!("{e:#}")),
            Ok(Err(e)) => errors.push(format!("subscriber task: {e}")),
            Err(_) => errors.push("subscriber did not stop within 10 s".to_string()),
        }
    }
    if let Some(what) = broken {
        errors.insert(0, format!("run cut short: {what}"));
    }

    let (sent, acked, received) = counters.snapshot();
    let d_sent = s1.0 - s0.0;
    let d_recv = s1.2 - s0.2;
    let mut m = Map::new();
    m.insert("duration_s".into(), json!(round3(measured)));
    m.insert("publishers".into(), json!(n_pubs));
    m.insert("subscribers".into(), json!(n_subs));
    if o.share_group > 0 {
        m.insert("share_group".into(), json!(o.share_group));
    }
    if o.scenario != Scenario::Fanin {
        m.insert("rate".into(), json!(o.rate));
    }
    if o.qos != QoS::AtMostOnce {
        m.insert("inflight".into(), json!(o.inflight));
    }
    m.insert("sent".into(), json!(sent));
    m.insert("received".into(), json!(received));
    if o.qos == QoS::AtMostOnce {
        m.insert(
            "dropped".into(),
            json!((sent * copies).saturating_sub(received)),
        );
    } else {
        m.insert("acked".into(), json!(acked));
        m.insert(
            "lost".into(),
            json!((acked * copies).saturating_sub(received)),
        );
    }
    m.insert("sent_per_s".into(), json!(round1(d_sent as f64 / measured)));
    let headline = if o.scenario == Scenario::Fanout {
        "deliveries_per_s"
    } else {
        "msgs_per_s"
    };
    m.insert(headline.into(), json!(round1(d_recv as f64 / measured)));
    if let Some(h) = hist {
        let us = |q: f64| round1(h.value_at_quantile(q) as f64 / 1000.0);
        m.insert("samples".into(), json!(h.len()));
        m.insert("p50_us".into(), json!(us(0.5)));
        m.insert("p99_us".into(), json!(us(0.99)));
        m.insert("p999_us".into(), json!(us(0.999)));
        m.insert("max_us".into(), json!(round1(h.max() as f64 / 1000.0)));
        m.insert("mean_us".into(), json!(round1(h.mean() / 1000.0)));
    }
    m.insert("connections".into(), json!(n_pubs + n_subs));
    if let Some(pid) = o.broker_pid {
        m.insert("broker_pid".into(), json!(pid));
        m.insert("rss_kib_before".into(), json!(rss_before));
        m.insert("rss_kib_after".into(), json!(rss_after));
    }
    if !errors.is_empty() {
        errors.truncate(10);
        m.insert("errors".into(), json!(errors));
    }
    Ok(m)
}

/// Names the kind of client that already finished (died) while the run was still going.
fn early_exit(
    pubs: &[JoinHandle<Result<()>>],
    subs: &[JoinHandle<Result<SubResult>>],
) -> Option<&'static str> {
    if pubs.iter().any(|h| h.is_finished()) {
        Some("a publisher stopped during the run")
    } else if subs.iter().any(|h| h.is_finished()) {
        Some("a subscriber stopped during the run")
    } else {
        None
    }
}

pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
