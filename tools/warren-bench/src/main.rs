//! `warren-bench`: Warren's load generator. It speaks MQTT on raw tokio sockets with Warren's own
//! codec (cheap per connection), to a broker on this machine only, and always stops by itself:
//! every scenario is bounded by `--duration`/`--connections`, and a watchdog thread ends the
//! process at the hard timeout whatever state it is in.
//!
//! Human text goes to stderr; the last line on stdout is always one JSON summary.

mod client;
mod conn;
mod flow;
mod opts;
mod report;

use std::net::{SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};
use warren::protocol::QoS;

use crate::client::Target;
use crate::opts::{Opts, Scenario, USAGE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            let help = e.to_string() == "help";
            eprint!("{USAGE}");
            if help {
                return ExitCode::SUCCESS;
            }
            eprintln!("\nwarren-bench: {e:#}");
            println!("{}", json!({"error": format!("{e:#}")}));
            return ExitCode::from(2);
        }
    };
    let mut summary = Map::new();
    summary.insert("scenario".into(), json!(o.scenario.name()));
    summary.insert(
        "version".into(),
        json!(if o.version.is_v5() { "5" } else { "3.1.1" }),
    );
    if o.scenario != Scenario::Conn {
        summary.insert("qos".into(), json!(o.qos as u8));
        summary.insert("payload".into(), json!(o.payload));
    }

    // The hard stop: whatever happens, the process ends.
    let hard = o.hard_timeout();
    {
        let mut s = summary.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(hard));
            s.insert(
                "error".into(),
                json!(format!("hard timeout after {hard} s")),
            );
            eprintln!("warren-bench: hard timeout after {hard} s, exiting");
            println!("{}", Value::Object(s));
            std::process::exit(3);
        });
    }

    // Sockets are files: take all the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            if !o.json && !o.child {
                eprintln!("warren-bench: open-file limit {n}");
            }
        }
        Err(e) => eprintln!("warren-bench: could not raise the open-file limit: {e}"),
    }

    let threads = o.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            summary.insert("error".into(), json!(format!("tokio runtime: {e}")));
            println!("{}", Value::Object(summary));
            return ExitCode::FAILURE;
        }
    };
    let target = Target {
        broker: SocketAddr::V4(SocketAddrV4::new(o.host, o.port)),
        version: o.version,
        sources: o.source_ips.clone(),
        ws: o.ws.clone(),
    };
    let result = rt.block_on(async {
        match o.scenario {
            Scenario::Conn => conn::run(&o, &target).await,
            _ => flow::run(&o, &target).await,
        }
    });
    let code = match result {
        Ok(fields) => {
            summary.extend(fields);
            if !o.json && !o.child {
                human(&o, &summary);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren-bench: {e:#}");
            summary.insert("error".into(), json!(format!("{e:#}")));
            ExitCode::FAILURE
        }
    };
    println!("{}", Value::Object(summary));
    // Do not wait for stray tasks (e.g. sockets the broker never closed).
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// A few readable lines on stderr.
fn human(o: &Opts, s: &Map<String, Value>) {
    let g = |k: &str| s.get(k).map(Value::to_string).unwrap_or_else(|| "-".into());
    match o.scenario {
        Scenario::Conn => eprintln!(
            "warren-bench: conn: {} connected, {} failed, {} s to connect; broker RSS {} -> {} KiB, {} KiB per connection",
            g("connected"),
            g("failed"),
            g("connect_s"),
            g("rss_kib_before"),
            g("rss_kib_after"),
            g("rss_kib_per_conn"),
        ),
        Scenario::Latency => eprintln!(
            "warren-bench: latency qos {}: p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} samples)",
            o.qos as u8,
            g("p50_us"),
            g("p99_us"),
            g("p999_us"),
            g("max_us"),
            g("samples"),
        ),
        _ => {
            let head = if o.scenario == Scenario::Fanout {
                "deliveries_per_s"
            } else {
                "msgs_per_s"
            };
            let loss = if o.qos == QoS::AtMostOnce {
                format!("dropped {}", g("dropped"))
            } else {
                format!("lost {}", g("lost"))
            };
            eprintln!(
                "warren-bench: {} qos {}: {} {head}, sent {}/s; {loss}",
                o.scenario.name(),
                o.qos as u8,
                g(head),
                g("sent_per_s"),
            );
        }
    }
}
