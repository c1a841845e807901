//! The command line: `warren-bench <scenario> [options]`, parsed by hand (no parser crate: the
//! option set is flat and small).

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail, Context, Result};
use warren::protocol::{ProtocolVersion, QoS};

pub const USAGE: &str = "\
warren-bench: an MQTT load generator (loopback only; every run stops by itself)

usage: warren-bench <scenario> [options]

scenarios:
  conn      open N idle connections, hold them, report broker RSS per connection
  fanin     P publishers -> 1 subscriber on bench/# (headline: msgs/s received)
  fanout    1 publisher -> N subscribers on one topic (headline: deliveries/s)
  latency   1 publisher at a fixed rate -> 1 subscriber (headline: p99 in us)

common options:
  --host H               broker address (default 127.0.0.1; must be loopback)
  --port P               broker port (default 1883)
  --version 3.1.1|5      MQTT version (default 3.1.1)
  --qos 0|1|2            QoS of publishes and subscriptions (default 0)
  --payload BYTES        payload size (default 64; latency needs at least 8)
  --duration SECS        measured time (default 10)
  --warmup SECS          time before measuring (default 1)
  --drain SECS           longest wait for in-flight messages after the run (default 5)
  --source-ips A,B,..    bind client sockets to these local addresses (127.x.x.x), round robin
  --source-ip-count N    the same with 127.0.0.1 .. 127.0.0.N
  --broker-pid PID       report the broker's VmRSS before and after
  --client-id-prefix S   prefix of client ids (default wb<pid>-)
  --threads N            tool runtime threads (default: CPUs this process may use)
  --timeout SECS         hard overall timeout (default: computed from the other options)
  --json                 quiet: no human text on stderr (the JSON line is always printed last
                         on stdout)

conn:     --connections N (1000)  --rate R per second (0 = as fast as --concurrency allows)
          --concurrency C (256 handshakes at once)  --keep-alive SECS (0)  --hold SECS (5)
          --processes P (1; re-executes itself P times, N/P connections each)
          --ws PATH (MQTT over WebSocket: upgrade on PATH, e.g. /mqtt, then binary frames)
fanin:    --publishers P (8)  --inflight W (16, QoS 1/2 window per publisher)
          --persistent (the subscriber keeps its session: 3.1.1 clean session 0, 5.0 expiry)
          --stamp (record end-to-end latency, p50/p99, as the latency scenario does)
          --share-group N (0; N subscribers share $share/bench/bench/#: each message goes to
          one of them)
fanout:   --subscribers N (1000)  --rate R msgs/s (0 = as fast as possible)  --inflight W (16)
latency:  --rate R msgs/s (1000)  --inflight W (16)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Conn,
    Fanin,
    Fanout,
    Latency,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Conn => "conn",
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::Latency => "latency",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub scenario: Scenario,
    pub host: Ipv4Addr,
    pub port: u16,
    pub version: ProtocolVersion,
    pub qos: QoS,
    pub payload: usize,
    pub duration: f64,
    pub warmup: f64,
    pub drain: f64,
    pub source_ips: Vec<Ipv4Addr>,
    pub broker_pid: Option<u32>,
    pub client_id_prefix: String,
    pub threads: Option<usize>,
    /// conn only: MQTT over WebSocket, upgrading on this path.
    pub ws: Option<String>,
    pub timeout: Option<f64>,
    pub json: bool,
    // conn
    pub connections: usize,
    pub rate: f64,
    pub concurrency: usize,
    pub keep_alive: u16,
    pub hold: f64,
    pub processes: usize,
    /// Internal: run as a child of `conn --processes`.
    pub child: bool,
    // flows
    pub publishers: usize,
    pub subscribers: usize,
    pub inflight: usize,
    /// Subscribers keep their sessions (clean session 0 / session expiry).
    pub persistent: bool,
    /// Stamp payloads and record latency in every flow scenario.
    pub stamp: bool,
    /// fanin: this many subscribers share one `$share/bench/...` subscription (0: one plain
    /// subscriber).
    pub share_group: usize,
}

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts> {
        let mut it = args.iter();
        let scenario = match it.next().map(String::as_str) {
            Some("conn") => Scenario::Conn,
            Some("fanin") => Scenario::Fanin,
            Some("fanout") => Scenario::Fanout,
            Some("latency") => Scenario::Latency,
            Some(other) => bail!("unknown scenario {other:?} (conn, fanin, fanout, latency)"),
            None => bail!("no scenario given"),
        };
        let mut o = Opts {
            scenario,
            host: Ipv4Addr::LOCALHOST,
            port: 1883,
            version: ProtocolVersion::V3_1_1,
            qos: QoS::AtMostOnce,
            payload: 64,
            duration: 10.0,
            warmup: 1.0,
            drain: 5.0,
            source_ips: Vec::new(),
            broker_pid: None,
            client_id_prefix: format!("wb{}-", std::process::id()),
            threads: None,
            ws: None,
            timeout: None,
            json: false,
            connections: 1000,
            rate: if scenario == Scenario::Latency {
                1000.0
            } else {
                0.0
            },
            concurrency: 256,
            keep_alive: 0,
            hold: 5.0,
            processes: 1,
            child: false,
            publishers: 8,
            subscribers: 1000,
            inflight: 16,
            persistent: false,
            stamp: false,
            share_group: 0,
        };
        let mut source_ip_count: Option<u8> = None;
        while let Some(flag) = it.next() {
            // Flags without a value first.
            match flag.as_str() {
                "--json" => {
                    o.json = true;
                    continue;
                }
                "--child" => {
                    o.child = true;
                    continue;
                }
                "--persistent" => {
                    o.persistent = true;
                    continue;
                }
                "--stamp" => {
                    o.stamp = true;
                    continue;
                }
                "-h" | "--help" => bail!("help"),
                _ => {}
            }
            let value = it
                .next()
                .ok_or_else(|| anyhow!("{flag} needs a value"))?
                .as_str();
            let ctx = || format!("bad value {value:?} for {flag}");
            match flag.as_str() {
                "--host" => o.host = value.parse().with_context(ctx)?,
                "--port" => o.port = value.parse().with_context(ctx)?,
                "--version" => {
                    o.version = match value {
                        "3.1.1" | "4" | "311" => ProtocolVersion::V3_1_1,
                        "5" | "5.0" => ProtocolVersion::V5,
                        _ => bail!("{}", ctx()),
                    }
                }
                "--qos" => {
                    o.qos = value
                        .parse::<u8>()
                        .ok()
                        .and_then(QoS::from_u8)
                        .ok_or_else(|| anyhow!("{}", ctx()))?
                }
                "--payload" => o.payload = value.parse().with_context(ctx)?,
                "--duration" => o.duration = secs(value).with_context(ctx)?,
                "--warmup" => o.warmup = secs(value).with_context(ctx)?,
                "--drain" => o.drain = secs(value).with_context(ctx)?,
                "--source-ips" => {
                    o.source_ips = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.trim().parse::<Ipv4Addr>())
                        .collect::<Result<_, _>>()
                        .with_context(ctx)?
                }
                "--source-ip-count" => source_ip_count = Some(value.parse().with_context(ctx)?),
                "--broker-pid" => o.broker_pid = Some(value.parse().with_context(ctx)?),
                "--client-id-prefix" => o.client_id_prefix = value.to_string(),
                "--threads" => o.threads = Some(value.parse().with_context(ctx)?),
                "--ws" => o.ws = Some(value.to_string()),
                "--timeout" => o.timeout = Some(secs(value).with_context(ctx)?),
                "--connections" => o.connections = value.parse().with_context(ctx)?,
                "--rate" => o.rate = secs(value).with_context(ctx)?,
                "--concurrency" => o.concurrency = value.parse().with_context(ctx)?,
                "--keep-alive" => o.keep_alive = value.parse().with_context(ctx)?,
                "--hold" => o.hold = secs(value).with_context(ctx)?,
                "--processes" => o.processes = value.parse().with_context(ctx)?,
                "--publishers" => o.publishers = value.parse().with_context(ctx)?,
                "--subscribers" => o.subscribers = value.parse().with_context(ctx)?,
                "--inflight" => o.inflight = value.parse().with_context(ctx)?,
                "--share-group" => o.share_group = value.parse().with_context(ctx)?,
                _ => bail!("unknown option {flag:?}"),
            }
        }
        if let Some(n) = source_ip_count {
            if n == 0 {
                bail!("--source-ip-count must be 1..=255");
            }
            o.source_ips = (1..=n).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
        }
        o.validate()?;
        Ok(o)
    }

    fn validate(&self) -> Result<()> {
        // Load goes to this machine only.
        if !self.host.is_loopback() {
            bail!("--host must be a loopback address (127.0.0.0/8)");
        }
        if let Some(ip) = self.source_ips.iter().find(|ip| !ip.is_loopback()) {
            bail!("source address {ip} is not a loopback address");
        }
        if self.duration <= 0.0 {
            bail!("--duration must be positive");
        }
        if self.concurrency == 0 || self.processes == 0 || self.publishers == 0 {
            bail!("--concurrency, --processes and --publishers must be at least 1");
        }
        if self.ws.is_some() && self.scenario != Scenario::Conn {
            bail!("--ws is for the conn scenario only");
        }
        if self.share_group > 0 && self.scenario != Scenario::Fanin {
            bail!("--share-group is for the fanin scenario only");
        }
        if self.subscribers == 0 {
            bail!("--subscribers must be at least 1");
        }
        if self.inflight == 0 || self.inflight > 32_000 {
            bail!("--inflight must be 1..=32000");
        }
        if self.scenario == Scenario::Latency {
            if self.payload < 8 {
                bail!("latency needs --payload of at least 8 (the send timestamp)");
            }
            if self.rate <= 0.0 {
                bail!("latency needs a --rate above 0");
            }
        }
        Ok(())
    }

    /// The overall deadline after which the process exits whatever happens.
    pub fn hard_timeout(&self) -> f64 {
        if let Some(t) = self.timeout {
            return t;
        }
        let setup = match self.scenario {
            Scenario::Conn => {
                let per_s = if self.rate > 0.0 { self.rate } else { 500.0 };
                self.connections as f64 / per_s + self.hold
            }
            Scenario::Fanout => self.subscribers as f64 / 500.0,
            _ => 0.0,
        };
        let run = match self.scenario {
            Scenario::Conn => 0.0,
            _ => self.warmup + self.duration + 2.0 * self.drain,
        };
        setup + run + 60.0
    }
}

fn secs(s: &str) -> Result<f64> {
    let v: f64 = s.parse()?;
    if !v.is_finite() || v < 0.0 {
        bail!("not a non-negative number");
    }
    Ok(v)
}
