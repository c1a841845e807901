//! The `warren` command: parses the command line, loads the config, starts the broker.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use warren::config::{Config, LogFormat};
use warren::Broker;

const USAGE: &str = "\
usage: warren [--config PATH]               start the broker
       warren check-config [--config PATH]  validate the configuration and exit
       warren bridge --config PATH          run the AMQP bridge alone, in front of the MQTT
                                            broker of [bridge.mqtt] (e.g. Mosquitto)
       warren --version | --help

Without --config the embedded default is used (config/warren.toml: MQTT on 127.0.0.1:1883, anonymous clients allowed on loopback).
Any key can be overridden with an environment variable WARREN__SECTION__KEY,
e.g. WARREN__MQTT__MAX_INFLIGHT=64 or WARREN__LISTENERS__TCP__BIND=127.0.0.1:1884.";

enum Command {
    Run(Option<PathBuf>),
    CheckConfig(Option<PathBuf>),
    Bridge(PathBuf),
    Help,
    Version,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut check = false;
    let mut bridge = false;
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "check-config" if !check && !bridge && config.is_none() => check = true,
            "bridge" if !check && !bridge && config.is_none() => bridge = true,
            "--config" | "-c" => {
                let path = args.next().ok_or("--config needs a path")?;
                config = Some(PathBuf::from(path));
            }
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(if bridge {
        Command::Bridge(config.ok_or("bridge needs --config PATH (its [bridge] table)")?)
    } else if check {
        Command::CheckConfig(config)
    } else {
        Command::Run(config)
    })
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// SIGINT and SIGTERM, registered before the broker starts so that a signal arriving during
/// the start is not missed (the default action would kill the process without a goodbye).
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::register().context("cannot handle signals")?;
    let handle = Broker::start(config)
        .await
        .context("cannot start the broker")?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "warren started");
    signals.recv().await;
    tracing::info!("shutting down");
    if !handle.shutdown().await {
        tracing::warn!("some connections did not close within the grace period");
    }
    tracing::info!("stopped");
    Ok(())
}

/// `warren bridge --config PATH`: the bridge alone, until SIGINT or SIGTERM.
fn run_bridge(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(Some(path), None) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("warren: invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config);
    let runtime = match warren::runtime::multi_thread(2) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("warren: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut signals = ShutdownSignals::register().context("cannot handle signals")?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "warren bridge started (standalone)"
        );
        warren_bridge::standalone::run_standalone(config.bridge, async move {
            signals.recv().await;
        })
        .await
        .context("cannot start the bridge")
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("warren: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("warren: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (path, check_only) = match command {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("warren {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run(path) => (path, false),
        Command::CheckConfig(path) => (path, true),
        Command::Bridge(path) => return run_bridge(&path),
    };
    let config = match Config::load(path.as_deref(), None) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("warren: invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    if check_only {
        // TLS files are part of the configuration: load them too.
        for (name, listener) in &config.listeners {
            if let Some(tls) = &listener.tls {
                if let Err(error) = warren::tls::server_config(tls) {
                    eprintln!("warren: invalid configuration: listeners.{name}.tls: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let source = path.map_or("embedded default".to_owned(), |p| p.display().to_string());
        println!("configuration OK ({source})");
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    // On one CPU (e.g. pinned with taskset) a single-threaded runtime does the same work
    // without the multi-threaded scheduler's bookkeeping; otherwise one worker per CPU.
    let cpus = match config.runtime.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let runtime = if cpus == 1 {
        warren::runtime::current_thread()
    } else {
        warren::runtime::multi_thread(cpus)
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("warren: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("warren: {error:#}");
            ExitCode::FAILURE
        }
    }
}
