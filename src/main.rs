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
       warren reload [--config PATH | --pid PID]
                                            make a running broker reread its password, SCRAM,
                                            ACL, JWKS, TLS and admin token files (SIGHUP to runtime.pid_file's
                                            process, or to PID)
       warren ctl [--url URL] [--token TOKEN] [--json] COMMAND
                                            the admin API from the command line (clients,
                                            kick, sessions, retained, bridge, status; see
                                            warren ctl --help)
       warren passwd [-c | -D] [-b] [--stdin] [-H pbkdf2|argon2id] FILE USER [PASSWORD]
                                            edit a password file, as mosquitto_passwd does
       warren passwd --scram-sha-256|--scram-sha-512 [-c | -D] [-b] [--stdin] FILE USER [PASSWORD]
                                            edit a SCRAM file ([auth] scram_file)
       warren --version | --help

Without --config the embedded default is used (config/warren.toml: MQTT on 127.0.0.1:1883, anonymous clients allowed on loopback).
Any key can be overridden with an environment variable WARREN__SECTION__KEY,
e.g. WARREN__MQTT__MAX_INFLIGHT=64 or WARREN__LISTENERS__TCP__BIND=127.0.0.1:1884.";

enum Command {
    Run(Option<PathBuf>),
    Reload(Option<PathBuf>, Option<i32>),
    CheckConfig(Option<PathBuf>),
    Bridge(PathBuf),
    Help,
    Version,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut check = false;
    let mut reload = false;
    let mut pid = None;
    let mut bridge = false;
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "check-config" if !check && !bridge && config.is_none() => check = true,
            "bridge" if !check && !bridge && config.is_none() => bridge = true,
            "reload" if !check && !bridge && !reload && config.is_none() => reload = true,
            "--pid" if reload => {
                let value = args.next().ok_or("--pid needs a process id")?;
                pid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad process id {value:?}"))?,
                );
            }
            "--config" | "-c" => {
                let path = args.next().ok_or("--config needs a path")?;
                config = Some(PathBuf::from(path));
            }
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(if reload {
        Command::Reload(config, pid)
    } else if bridge {
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
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let pid_file = config.runtime.pid_file.clone();
    let handle = Broker::start(config)
        .await
        .context("cannot start the broker")?;
    if let Some(path) = &pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "warren started");
    loop {
        tokio::select! {
            _ = signals.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the password, SCRAM, ACL, JWKS, TLS and admin token files");
                // Logged and counted by reload itself; a failure keeps the old settings.
                let _ = handle.reload();
            }
        }
    }
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
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

/// `warren reload`: SIGHUP to the broker of `runtime.pid_file` (or to `pid`).
fn send_reload(path: Option<&std::path::Path>, pid: Option<i32>) -> ExitCode {
    let pid = match pid {
        Some(pid) => pid,
        None => {
            let config = match Config::load(path, None) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("warren: invalid configuration: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let Some(pid_file) = config.runtime.pid_file else {
                eprintln!(
                    "warren: reload needs runtime.pid_file in the configuration, or --pid PID"
                );
                return ExitCode::FAILURE;
            };
            match std::fs::read_to_string(&pid_file)
                .map_err(|e| e.to_string())
                .and_then(|t| t.trim().parse::<i32>().map_err(|e| e.to_string()))
            {
                Ok(pid) => pid,
                Err(error) => {
                    eprintln!("warren: {}: {error}", pid_file.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let Some(target) = rustix::process::Pid::from_raw(pid) else {
        eprintln!("warren: bad process id {pid}");
        return ExitCode::FAILURE;
    };
    match rustix::process::kill_process(target, rustix::process::Signal::HUP) {
        Ok(()) => {
            println!(
                "sent SIGHUP to {pid}: the broker logs the outcome (warren_config_reloads_total)"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("warren: cannot signal process {pid}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1).peekable();
    if raw.peek().map(String::as_str) == Some("passwd") {
        let rest: Vec<String> = raw.skip(1).collect();
        return match warren::auth::passwd_cmd::run(&rest) {
            Ok(message) => {
                eprintln!("{message}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("warren passwd: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if raw.peek().map(String::as_str) == Some("ctl") {
        let rest: Vec<String> = raw.skip(1).collect();
        let code = warren::admin::ctl::run(&rest, &mut std::io::stdout(), &mut std::io::stderr());
        return ExitCode::from(code as u8);
    }
    let command = match parse_args(raw) {
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
        Command::Reload(path, pid) => return send_reload(path.as_deref(), pid),
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
        // So are the password, ACL and JWKS files.
        if let Err(error) = warren::auth::Auth::load(&config) {
            eprintln!("warren: invalid configuration: {error}");
            return ExitCode::FAILURE;
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
