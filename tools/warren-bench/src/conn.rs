//! The `conn` scenario: many idle MQTT connections, held for a while; the broker's memory per
//! connection. Beyond one process's open-file limit, `--processes P` runs P copies of itself.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep, sleep_until, timeout};
use warren::protocol::Packet;

use crate::client::{Conn, Target};
use crate::flow::{round1, round3};
use crate::opts::Opts;
use crate::report::{rss_kib, say};

/// Longest wait for one connection's TCP connect and CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `conn` in this process, or spreads it over `--processes` children.
pub async fn run(o: &Opts, target: &Target) -> Result<Map<String, Value>> {
    if o.processes > 1 && !o.child {
        return run_parent(o).await;
    }
    let rss_before = o.broker_pid.and_then(rss_kib);
    let start = Instant::now();
    let (release_tx, release_rx) = watch::channel(false);
    let closed = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let mut holders = Vec::with_capacity(o.connections);
    let mut pace =
        (o.rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate)));
    for i in 0..o.connections {
        if let Some(p) = pace.as_mut() {
            p.tick().await;
        }
        let permit = sem.clone().acquire_owned().await?;
        let target = target.clone();
        let id = format!("{}c{i}", o.client_id_prefix);
        let done = done_tx.clone();
        let release = release_rx.clone();
        let closed = closed.clone();
        let keep_alive = o.keep_alive;
        holders.push(tokio::spawn(async move {
            let r = timeout(
                CONNECT_TIMEOUT,
                Conn::connect(&target, i, &id, keep_alive, 64),
            )
            .await;
            drop(permit);
            // Report, then let go of the sender: the count below must not wait for the hold.
            let (outcome, conn) = match r {
                Ok(Ok(conn)) => (Ok(()), Some(conn)),
                Ok(Err(e)) => (Err(format!("{e:#}")), None),
                Err(_) => (Err("connect or CONNACK timed out".to_string()), None),
            };
            let _ = done.send(outcome);
            drop(done);
            if let Some(conn) = conn {
                hold(conn, keep_alive, release, closed).await;
            }
        }));
    }
    drop(done_tx);
    let (mut connected, mut failed) = (0u64, 0u64);
    let mut errors: Vec<String> = Vec::new();
    let mut last_report = Instant::now();
    for _ in 0..o.connections {
        let Some(r) = done_rx.recv().await else { break };
        match r {
            Ok(()) => connected += 1,
            Err(e) => {
                failed += 1;
                if errors.len() < 5 && !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            say(o, format_args!("{connected} connected, {failed} failed"));
        }
    }
    let connect_s = start.elapsed().as_secs_f64();
    say(
        o,
        format_args!("{connected} connected, {failed} failed in {connect_s:.2} s"),
    );

    if o.child {
        // Tell the parent, then hold until it closes our stdin (or far too long has passed).
        println!(
            "{}",
            json!({"ready": true, "connected": connected, "failed": failed, "connect_s": connect_s})
        );
        let mut sink = Vec::new();
        let _ = timeout(
            Duration::from_secs_f64(o.hold + 120.0),
            tokio::io::stdin().read_to_end(&mut sink),
        )
        .await;
    } else {
        sleep(Duration::from_secs_f64(o.hold)).await;
    }
    let rss_after = o.broker_pid.and_then(rss_kib);
    let closed_during_hold = closed.load(Relaxed);
    let _ = release_tx.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for h in holders {
        let _ = tokio::time::timeout_at(deadline, h).await;
    }

    let mut m = Map::new();
    m.insert("connections".into(), json!(o.connections));
    m.insert("connected".into(), json!(connected));
    m.insert("failed".into(), json!(failed));
    m.insert("closed_during_hold".into(), json!(closed_during_hold));
    m.insert("connect_s".into(), json!(round3(connect_s)));
    m.insert("hold_s".into(), json!(o.hold));
    m.insert("keep_alive".into(), json!(o.keep_alive));
    m.insert("processes".into(), json!(1));
    rss_fields(&mut m, o.broker_pid, rss_before, rss_after, connected);
    if !errors.is_empty() {
        m.insert("errors".into(), json!(errors));
    }
    Ok(m)
}

/// Keeps one connection open (pinging if it has a keep alive) until released.
async fn hold(
    mut conn: Conn,
    keep_alive: u16,
    mut release: watch::Receiver<bool>,
    closed: Arc<AtomicU64>,
) {
    let every = Duration::from_secs_f64(f64::from(keep_alive.max(1)) * 0.75);
    let mut next_ping = Instant::now() + every;
    loop {
        if *release.borrow() {
            break;
        }
        tokio::select! {
            _ = release.changed() => {}
            _ = sleep_until(next_ping.into()), if keep_alive > 0 => {
                next_ping += every;
                if conn.send(&Packet::PingReq).await.is_err() {
                    closed.fetch_add(1, Relaxed);
                    return;
                }
            }
            r = conn.stream.read_buf(&mut conn.rbuf) => {
                match r {
                    Ok(n) if n > 0 => conn.rbuf.clear(),
                    _ => {
                        closed.fetch_add(1, Relaxed);
                        return;
                    }
                }
            }
        }
    }
    conn.goodbye().await;
}

fn rss_fields(
    m: &mut Map<String, Value>,
    pid: Option<u32>,
    before: Option<u64>,
    after: Option<u64>,
    connected: u64,
) {
    let Some(pid) = pid else { return };
    m.insert("broker_pid".into(), json!(pid));
    m.insert("rss_kib_before".into(), json!(before));
    m.insert("rss_kib_after".into(), json!(after));
    if let (Some(b), Some(a)) = (before, after) {
        if connected > 0 {
            let per = (a as f64 - b as f64) / connected as f64;
            m.insert("rss_kib_per_conn".into(), json!(round3(per)));
        }
    }
}

/// `--processes P`: P children each open N/P connections with their own client-id prefix and
/// source addresses; this process measures the broker once all of them are connected.
async fn run_parent(o: &Opts) -> Result<Map<String, Value>> {
    let p = o.processes;
    let exe = std::env::current_exe().context("current_exe")?;
    let rss_before = o.broker_pid.and_then(rss_kib);
    let start = Instant::now();
    let mut children = Vec::with_capacity(p);
    for k in 0..p {
        let n = o.connections / p + usize::from(k < o.connections % p);
        // Distinct source addresses: the given ones dealt round robin, else 127.0.0.(k+1).
        let ips: Vec<Ipv4Addr> = if o.source_ips.is_empty() {
            vec![Ipv4Addr::new(127, 0, 0, (k % 254 + 1) as u8)]
        } else if o.source_ips.len() >= p {
            o.source_ips.iter().skip(k).step_by(p).copied().collect()
        } else {
            vec![o.source_ips[k % o.source_ips.len()]]
        };
        let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
        let version = if o.version.is_v5() { "5" } else { "3.1.1" };
        let mut cmd = Command::new(&exe);
        cmd.arg("conn")
            .args(["--host", &o.host.to_string()])
            .args(["--port", &o.port.to_string()])
            .args(["--version", version])
            .args(["--connections", &n.to_string()])
            .args(["--rate", &(o.rate / p as f64).to_string()])
            .args(["--concurrency", &(o.concurrency / p).max(1).to_string()])
            .args(["--keep-alive", &o.keep_alive.to_string()])
            .args(["--hold", &o.hold.to_string()])
            .args([
                "--client-id-prefix",
                &format!("{}p{k}-", o.client_id_prefix),
            ])
            .args(["--source-ips", &ips.join(",")])
            .args(
                o.ws.as_ref()
                    .map(|path| ["--ws", path.as_str()])
                    .into_iter()
                    .flatten(),
            )
            .args(["--timeout", &o.hard_timeout().to_string()])
            .arg("--child");
        if o.json {
            cmd.arg("--json");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawn child")?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        children.push((child, stdout.lines()));
    }
    // Wait until every child has connected everything it could.
    let mut connect_s: f64 = 0.0;
    for (k, (_, lines)) in children.iter_mut().enumerate() {
        let line = timeout(Duration::from_secs_f64(o.hard_timeout()), lines.next_line())
            .await
            .map_err(|_| anyhow!("child {k} never became ready"))??
            .ok_or_else(|| anyhow!("child {k} exited before it was ready"))?;
        let v: Value = serde_json::from_str(&line).with_context(|| format!("child {k}: {line}"))?;
        if v.get("ready").is_none() {
            bail!("child {k} failed: {line}");
        }
        connect_s = connect_s.max(v["connect_s"].as_f64().unwrap_or(0.0));
    }
    let all_ready = start.elapsed().as_secs_f64();
    say(
        o,
        format_args!("all {p} processes ready after {all_ready:.2} s"),
    );
    sleep(Duration::from_secs_f64(o.hold)).await;
    let rss_after = o.broker_pid.and_then(rss_kib);
    // Release them all (closing stdin), then sum their summaries.
    let (mut connected, mut failed, mut closed) = (0u64, 0u64, 0u64);
    let mut errors: Vec<Value> = Vec::new();
    for (child, _) in children.iter_mut() {
        drop(child.stdin.take());
    }
    for (k, (mut child, mut lines)) in children.into_iter().enumerate() {
        let mut last = None;
        while let Ok(Ok(Some(line))) = timeout(Duration::from_secs(30), lines.next_line()).await {
            last = Some(line);
        }
        let _ = timeout(Duration::from_secs(10), child.wait()).await;
        let v: Value = match last.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(v)) => v,
            _ => {
                errors.push(json!(format!("child {k}: no summary")));
                continue;
            }
        };
        connected += v["connected"].as_u64().unwrap_or(0);
        failed += v["failed"].as_u64().unwrap_or(0);
        closed += v["closed_during_hold"].as_u64().unwrap_or(0);
        if let Some(e) = v.get("errors").and_then(Value::as_array) {
            errors.extend(e.iter().take(2).cloned());
        }
        if let Some(e) = v.get("error") {
            errors.push(e.clone());
        }
    }
    let mut m = Map::new();
    m.insert("connections".into(), json!(o.connections));
    m.insert("connected".into(), json!(connected));
    m.insert("failed".into(), json!(failed));
    m.insert("closed_during_hold".into(), json!(closed));
    m.insert("connect_s".into(), json!(round3(connect_s)));
    m.insert("ready_s".into(), json!(round1(all_ready)));
    m.insert("hold_s".into(), json!(o.hold));
    m.insert("keep_alive".into(), json!(o.keep_alive));
    m.insert("processes".into(), json!(p));
    rss_fields(&mut m, o.broker_pid, rss_before, rss_after, connected);
    if !errors.is_empty() {
        errors.truncate(10);
        m.insert("errors".into(), json!(errors));
    }
    Ok(m)
}
