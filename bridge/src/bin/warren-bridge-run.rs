//! `warren-bridge-run FILE`: runs a standalone bridge from the `[bridge]` table of a TOML
//! file until SIGINT or SIGTERM, and prints its state once every 50 ms on standard output:
//! `state connected=<bool> subscribed=<bool> acked=<n> confirmed=<n> spool=<n> republished=<n>`
//! (over the outbound rules: all subscribed, sums of the counts). A tool for tests and trials; `warren bridge --config FILE` is the real
//! command. A refused configuration exits with status 2, naming the key.

use std::io::Write;
use std::time::Duration;

use serde::Deserialize;
use warren_bridge::standalone::{connect, StandaloneError};
use warren_bridge::{Bridge, BridgeConfig, ConnectionState};

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    bridge: BridgeConfig,
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: warren-bridge-run FILE");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let config = match toml::from_str::<File>(&text) {
        Ok(f) => f.bridge,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = config.check() {
        eprintln!("{path}: {e}");
        std::process::exit(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(config)) {
        eprintln!("{path}: {e}");
        std::process::exit(2);
    }
}

async fn run(config: BridgeConfig) -> Result<(), StandaloneError> {
    let side = connect(&config.mqtt.clone().unwrap_or_default())?;
    let handle = Bridge::start(&config, side)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => break,
            _ = tick.tick() => {
                let s = handle.snapshot();
                let sum = |f: fn(&warren_bridge::OutboundSnapshot) -> u64| -> u64 {
                    s.outbound.iter().map(f).sum()
                };
                let line = format!(
                    "state connected={} subscribed={} acked={} confirmed={} spool={} republished={}\n",
                    s.connection == ConnectionState::Connected,
                    s.outbound.iter().all(|o| o.subscribed),
                    sum(|o| o.counts.acked),
                    sum(|o| o.counts.confirmed),
                    sum(|o| o.spool_messages),
                    sum(|o| o.counts.republished),
                );
                let mut out = std::io::stdout().lock();
                if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        }
    }
    handle.shutdown().await;
    Ok(())
}
