//! `warren ctl` as a process against a running broker with real clients: tables, `--json`,
//! the environment variables, and the exit codes scripts rely on.

mod common;

use std::net::SocketAddr;

use common::*;
use warren::protocol::{Packet, ProtocolVersion, QoS};

const TOKEN: &str = "ctl-token";

/// Runs `warren ctl ARGS` with the admin URL and token in the environment; (exit code, stdout,
/// stderr).
async fn ctl(admin: SocketAddr, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = within(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("ctl")
            .args(args)
            .env("WARREN_ADMIN_URL", format!("http://{admin}"))
            .env("WARREN_ADMIN_TOKEN", token)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("warren runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_lists_inspects_kicks_and_manages_retained_messages() {
    let (broker, tcp) = start_with(|c| {
        c.admin.tokens = vec![warren::admin::auth::digest_hex(TOKEN)];
    })
    .await;
    let admin = broker.admin_addr().unwrap();
    let mut a = raw_connected(tcp, ProtocolVersion::V5, "meter-1").await;
    raw_subscribe(&mut a, 1, "meters/1/#", QoS::AtLeastOnce).await;
    let _b = raw_connected(tcp, ProtocolVersion::V3_1_1, "meter-2").await;
    let mut p = publish_packet("meters/1/state", b"on", QoS::AtLeastOnce, 1);
    if let Packet::Publish(p) = &mut p {
        p.retain = true;
    }
    let mut publisher = raw_connected(tcp, ProtocolVersion::V3_1_1, "pub").await;
    publisher.send(&p).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    drop(a.recv().await); // the retained message itself

    let (code, out, err) = ctl(admin, TOKEN, &["clients", "--prefix", "meter"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CLIENT"), "{out}");
    assert!(lines[1].starts_with("meter-1 "), "{out}");
    assert!(lines[2].starts_with("meter-2 "), "{out}");
    assert_eq!(lines.len(), 3, "{out}");

    let (code, out, _) = ctl(admin, TOKEN, &["--json", "client", "meter-1"]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["subscription_list"][0]["filter"], "meters/1/#");
    assert_eq!(v["protocol"], "5.0");

    let (code, out, _) = ctl(admin, TOKEN, &["status"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("connections"), "{out}");

    let (code, out, _) = ctl(admin, TOKEN, &["retained", "list", "meters/+/state"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("meters/1/state") && out.contains("on"),
        "{out}"
    );
    let (code, out, _) = ctl(admin, TOKEN, &["retained", "get", "meters/1/state"]).await;
    assert_eq!((code, out.trim()), (0, "on"));
    let (code, _, _) = ctl(admin, TOKEN, &["retained", "delete", "meters/1/state"]).await;
    assert_eq!(code, 0);
    assert_eq!(broker.retained_count(), 0);

    // Exit codes: not found 3, unauthorized 4, usage 2, unreachable 5, no bridge 3.
    assert_eq!(
        ctl(admin, TOKEN, &["retained", "delete", "meters/1/state"])
            .await
            .0,
        3
    );
    assert_eq!(ctl(admin, TOKEN, &["client", "nobody"]).await.0, 3);
    assert_eq!(ctl(admin, "wrong", &["status"]).await.0, 4);
    assert_eq!(ctl(admin, TOKEN, &["frobnicate"]).await.0, 2);
    assert_eq!(ctl(admin, TOKEN, &["bridge"]).await.0, 3);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(ctl(closed, TOKEN, &["status"]).await.0, 5);

    let (code, out, _) = ctl(admin, TOKEN, &["kick", "meter-1", "--reason", "0x9c"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(within(disconnect_reason(&mut a)).await, Some(0x9C));
    eventually(|| broker.session_count() == 2).await;
    let (code, out, _) = ctl(admin, TOKEN, &["hash-token", TOKEN]).await;
    assert_eq!(
        (code, out.trim()),
        (0, warren::admin::auth::digest_hex(TOKEN).as_str())
    );
    broker.shutdown().await;
}
