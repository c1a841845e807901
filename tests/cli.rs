//! The `warren` binary as a user runs it: config validation, start, and graceful shutdown on
//! SIGTERM.

mod common;

use std::net::TcpListener as StdListener;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use warren::protocol::{self, reason, Packet, ProtocolVersion};

const BIN: &str = env!("CARGO_BIN_EXE_warren");

fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A port free on every address (a port free on 127.0.0.1 may be taken on 127.0.0.2).
fn free_port_everywhere() -> u16 {
    let listener = StdListener::bind("0.0.0.0:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = common::within(command.output()).await.expect("runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn check_config_accepts_the_embedded_default() {
    let (code, out) = run(&["check-config"], &[]).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn check_config_names_file_key_and_reason() {
    let path = temp_file("typo.toml", "[mqtt]\nmax_pakcet_size = 5\n");
    let (code, out) = run(&["check-config", "--config", path.to_str().unwrap()], &[]).await;
    assert_ne!(code, 0);
    assert!(out.contains("typo.toml"), "names the file: {out}");
    assert!(out.contains("mqtt.max_pakcet_size"), "names the key: {out}");

    let path = temp_file("range.toml", "[mqtt]\nmax_packet_size = 0\n");
    let (code, out) = run(&["check-config", "--config", path.to_str().unwrap()], &[]).await;
    assert_ne!(code, 0);
    assert!(
        out.contains("mqtt.max_packet_size") && out.contains("must be"),
        "{out}"
    );

    let (code, out) = run(
        &["check-config", "--config", "/nonexistent/warren.toml"],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(out.contains("/nonexistent/warren.toml"), "{out}");

    let (code, out) = run(&["check-config"], &[("WARREN__MQTT__MAX_INFLIGHT", "zero")]).await;
    assert_ne!(code, 0);
    assert!(out.contains("mqtt.max_inflight"), "{out}");
}

#[tokio::test]
async fn check_config_loads_tls_files() {
    let path = temp_file(
        "tls.toml",
        "[listeners.tls]\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\n[listeners.tls.tls]\n\
         cert = \"/nonexistent/server.pem\"\nkey = \"/nonexistent/server.key\"\n",
    );
    let (code, out) = run(&["check-config", "--config", path.to_str().unwrap()], &[]).await;
    assert_ne!(code, 0);
    assert!(out.contains("/nonexistent/server.pem"), "{out}");
}

#[tokio::test]
async fn a_port_in_use_stops_the_start_with_the_listener_named() {
    let taken = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out) = run(&[], &[("WARREN__LISTENERS__TCP__BIND", &addr)]).await;
    assert_ne!(code, 0);
    assert!(out.contains("tcp") && out.contains(&addr), "{out}");
}

async fn start_binary(port: u16) -> Child {
    let bind = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .env("WARREN__LISTENERS__TCP__BIND", &bind)
        .env("WARREN__MQTT__SHUTDOWN_GRACE_SECS", "5")
        .env("WARREN__ADMIN__ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn warren");
    // Wait until it accepts connections.
    common::within(async {
        while tokio::net::TcpStream::connect(&bind).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_disconnects_clients_and_exits_zero() {
    let port = free_port();
    let mut child = start_binary(port).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut v5 = common::raw_connected(addr, ProtocolVersion::V5, "v5-client").await;
    let mut v3 = common::raw_connected(addr, ProtocolVersion::V3_1_1, "v3-client").await;

    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());

    match v5.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    assert_eq!(v5.recv().await, None, "closed after DISCONNECT");
    assert_eq!(v3.recv().await, None, "3.1.1 connection closed");
    let status = common::within(child.wait()).await.expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// CONNECT as `user`/`pass`: the CONNACK's reason.
async fn connack_as(addr: std::net::SocketAddr, user: &str, pass: &str) -> protocol::ConnectReason {
    let mut packet = common::connect_packet(ProtocolVersion::V5, "c", true);
    if let Packet::Connect(c) = &mut packet {
        c.username = Some(user.into());
        c.password = Some(bytes::Bytes::copy_from_slice(pass.as_bytes()));
    }
    match common::raw_connect_with(addr, ProtocolVersion::V5, &packet).await {
        (_, Some(Packet::ConnAck(ack))) => ack.reason,
        (_, other) => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_passwd_stdin_and_warren_reload_reach_the_running_broker() {
    let dir = std::env::temp_dir().join(format!("warren-cli-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let passwd = dir.join("passwd");
    let pid_file = dir.join("warren.pid");
    let (code, out) = run(
        &[
            "passwd",
            "-c",
            "-b",
            passwd.to_str().unwrap(),
            "dev1",
            "pw1",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let port = free_port();
    let config = dir.join("warren.toml");
    std::fs::write(
        &config,
        format!(
            "[listeners.tcp]\nbind = \"127.0.0.1:{port}\"\n[metrics]\nenabled = false\n[admin]\nenabled = false\n\
             [auth]\npassword_file = \"{}\"\nallow_anonymous = false\nfailure_delay_ms = 0\n\
             failure_delay_max_ms = 0\n[runtime]\npid_file = \"{}\"\n",
            passwd.display(),
            pid_file.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn warren");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    common::eventually(|| pid_file.exists()).await;
    assert_eq!(
        connack_as(addr, "dev1", "pw1").await,
        protocol::ConnectReason::Success
    );

    // A new password from stdin, then `warren reload` (SIGHUP through the pid file).
    let mut passwd_cmd = Command::new(BIN)
        .args(["passwd", "--stdin", passwd.to_str().unwrap(), "dev1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = passwd_cmd.stdin.take().unwrap();
    stdin.write_all(b"pw2\n").await.unwrap();
    drop(stdin);
    assert!(common::within(passwd_cmd.wait()).await.unwrap().success());
    let (code, out) = run(&["reload", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}");
    common::within(async {
        while connack_as(addr, "dev1", "pw2").await != protocol::ConnectReason::Success {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        connack_as(addr, "dev1", "pw1").await,
        protocol::ConnectReason::BadUserNameOrPassword
    );

    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = common::within(child.wait()).await.expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(
        !pid_file.exists(),
        "the pid file is removed at a clean stop"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The broker's start-up log, up to "warren started", with `env` set.
async fn startup_log(env: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = Command::new(BIN);
    command
        .env("WARREN__METRICS__ENABLED", "false")
        .env("WARREN__ADMIN__ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn warren");
    // The log goes to standard output.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut log = String::new();
    common::within(async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            log.push_str(&line);
            log.push('\n');
            if line.contains("warren started") {
                return;
            }
        }
        panic!("warren exited before starting:\n{log}");
    })
    .await;
    let _ = child.kill().await;
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_on_a_non_loopback_address_are_warned_about() {
    const ANON: &str = "anonymous clients are allowed on a non-loopback address";
    const NOBODY: &str = "no client can connect to this listener";
    let warned =
        |log: &str, what: &str| log.lines().any(|l| l.contains("WARN") && l.contains(what));
    let any = format!("0.0.0.0:{}", free_port_everywhere());
    let log = startup_log(&[
        ("WARREN__LISTENERS__TCP__BIND", &any),
        ("WARREN__AUTH__ALLOW_ANONYMOUS", "true"),
    ])
    .await;
    assert!(warned(&log, ANON), "{log}");
    // Loopback with anonymous clients: no warning.
    let lo = format!("127.0.0.1:{}", free_port());
    let log = startup_log(&[
        ("WARREN__LISTENERS__TCP__BIND", &lo),
        ("WARREN__AUTH__ALLOW_ANONYMOUS", "true"),
    ])
    .await;
    assert!(!warned(&log, ANON), "{log}");
    // A non-loopback address with the default: anonymous refused, and nobody else can get in.
    let any = format!("0.0.0.0:{}", free_port_everywhere());
    let log = startup_log(&[("WARREN__LISTENERS__TCP__BIND", &any)]).await;
    assert!(!warned(&log, ANON), "{log}");
    assert!(warned(&log, NOBODY), "{log}");
}
