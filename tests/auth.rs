//! Authentication and ACLs with real clients over real sockets: a password file written by
//! Debian's `mosquitto_passwd` (and one written by `warren passwd`, read by a real Mosquitto),
//! each refusal path, each ACL pattern, retained messages and `$SYS` under an ACL, a refused
//! bad file, and reload (files, revocation, a failed reload, reload under load).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use warren::config::Config;
use warren::protocol::{self, ConnectReason, Packet, ProtocolVersion, QoS};
use warren::BrokerHandle;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A directory under the temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("warren-auth-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `user`'s password into `file` with Debian's mosquitto_passwd (2.x: `$7$`).
fn mosquitto_passwd(file: &Path, user: &str, password: &str, create: bool) {
    let mut cmd = Command::new("mosquitto_passwd");
    if create {
        cmd.arg("-c");
    }
    let out = cmd
        .args(["-b"])
        .arg(file)
        .args([user, password])
        .output()
        .expect("mosquitto_passwd runs (scripts/test installs Debian's mosquitto)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A broker whose "tcp" listener refuses anonymous clients, with `change` applied.
async fn start_auth(change: impl FnOnce(&mut Config)) -> (BrokerHandle, SocketAddr) {
    start_with(|c| {
        c.auth.allow_anonymous = Some(false);
        // Refusals answered at once, except where a test looks at the delay.
        c.auth.failure_delay_ms = 0;
        c.auth.failure_delay_max_ms = 0;
        change(c);
    })
    .await
}

fn connect(version: ProtocolVersion, id: &str, user: Option<&str>, pass: Option<&str>) -> Packet {
    let mut packet = connect_packet(version, id, true);
    if let Packet::Connect(c) = &mut packet {
        c.username = user.map(Into::into);
        c.password = pass.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    }
    packet
}

/// Connects and returns the CONNACK's reason (the connection, if it was accepted).
async fn try_connect(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    pass: Option<&str>,
) -> (ConnectReason, Option<Raw>) {
    match raw_connect_with(addr, version, &connect(version, id, user, pass)).await {
        (raw, Some(Packet::ConnAck(ack))) if ack.reason == ConnectReason::Success => {
            (ack.reason, Some(raw))
        }
        (mut raw, Some(Packet::ConnAck(ack))) => {
            assert!(
                raw.until_closed().await.is_empty(),
                "closed after a refusal"
            );
            (ack.reason, None)
        }
        (_, other) => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn connected(addr: SocketAddr, version: ProtocolVersion, id: &str, user: &str) -> Raw {
    match try_connect(addr, version, id, Some(user), Some("pw")).await {
        (_, Some(raw)) => raw,
        (reason, None) => panic!("{user} refused: {reason:?}"),
    }
}

fn publish(topic: &str, qos: QoS, pkid: u16, retain: bool) -> Packet {
    Packet::Publish(protocol::Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        pkid,
        properties: Default::default(),
        payload: Bytes::from_static(b"x"),
    })
}

/// The reason code of the PUBACK to a QoS 1 publish; deliveries arriving meanwhile are
/// acknowledged and their topics added to `seen`.
async fn puback_seen(raw: &mut Raw, topic: &str, pkid: u16, seen: &mut Vec<String>) -> u8 {
    raw.send(&publish(topic, QoS::AtLeastOnce, pkid, false))
        .await;
    loop {
        match raw.recv().await {
            Some(Packet::PubAck(ack)) => {
                assert_eq!(ack.pkid, pkid);
                return ack.reason;
            }
            Some(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    raw.send(&Packet::PubAck(protocol::PubResp::new(p.pkid)))
                        .await;
                }
                seen.push(p.topic.to_string());
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

/// [`puback_seen`] for a client that expects no delivery.
async fn puback(raw: &mut Raw, topic: &str, pkid: u16) -> u8 {
    let mut seen = Vec::new();
    let code = puback_seen(raw, topic, pkid, &mut seen).await;
    assert!(seen.is_empty(), "unexpected deliveries {seen:?}");
    code
}

async fn suback(raw: &mut Raw, pkid: u16, filter: &str) -> u8 {
    raw_subscribe(raw, pkid, filter, QoS::AtLeastOnce).await[0]
}

/// The topics of the PUBLISH packets that arrive before a PINGRESP.
async fn received_topics(raw: &mut Raw) -> Vec<String> {
    raw.send(&Packet::PingReq).await;
    let mut topics = Vec::new();
    loop {
        match raw.recv().await {
            Some(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    raw.send(&Packet::PubAck(protocol::PubResp::new(p.pkid)))
                        .await;
                }
                topics.push(p.topic.to_string());
            }
            Some(Packet::PingResp) => return topics,
            other => panic!("expected PUBLISH or PINGRESP, got {other:?}"),
        }
    }
}

fn metric(broker: &BrokerHandle, line_start: &str) -> u64 {
    broker
        .render_metrics()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mosquitto_passwd_file_and_every_refusal() {
    let dir = Dir::new("passwd");
    let file = dir.path("passwd");
    mosquitto_passwd(&file, "alice", "pw", true);
    mosquitto_passwd(&file, "bob", "other pw", false);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("alice:$7$"), "{text}");
    let (broker, addr) = start_auth(|c| c.auth.password_file = Some(file.clone())).await;

    for version in [V4, V5] {
        let (ok, raw) = try_connect(addr, version, "a", Some("alice"), Some("pw")).await;
        assert_eq!(ok, ConnectReason::Success);
        raw_disconnect(raw.unwrap()).await;
        let bad = ConnectReason::BadUserNameOrPassword;
        assert_eq!(
            try_connect(addr, version, "a", Some("alice"), Some("nope"))
                .await
                .0,
            bad
        );
        assert_eq!(
            try_connect(addr, version, "a", Some("bob"), Some("pw"))
                .await
                .0,
            bad
        );
        assert_eq!(
            try_connect(addr, version, "a", Some("carol"), Some("pw"))
                .await
                .0,
            bad
        );
        assert_eq!(
            try_connect(addr, version, "a", None, None).await.0,
            ConnectReason::NotAuthorized
        );
    }
    assert_eq!(ConnectReason::BadUserNameOrPassword.v3_return_code(), 4);
    assert_eq!(ConnectReason::NotAuthorized.v3_return_code(), 5);
    assert_eq!(
        metric(
            &broker,
            "warren_auth_failures_total{reason=\"bad_password\"}"
        ),
        4
    );
    assert_eq!(
        metric(
            &broker,
            "warren_auth_failures_total{reason=\"unknown_user\"}"
        ),
        2
    );
    assert_eq!(
        metric(&broker, "warren_auth_failures_total{reason=\"anonymous\"}"),
        2
    );

    // Mosquitto's own clients, with the same file.
    require_mosquitto_clients();
    let run = |user: &str, pass: &str| {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
            .args(["-u", user, "-P", pass, "-t", "t", "-m", "m", "-q", "1"])
            .output()
            .unwrap()
    };
    assert!(run("bob", "other pw").status.success());
    let refused = run("bob", "wrong");
    assert!(!refused.status.success());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_from_one_address_are_slowed_down() {
    let dir = Dir::new("delay");
    let file = dir.write("passwd", "");
    mosquitto_passwd(&file, "alice", "pw", false);
    let (broker, addr) = start_auth(|c| {
        c.auth.password_file = Some(file.clone());
        c.auth.failure_delay_ms = 200;
        c.auth.failure_delay_max_ms = 5000;
    })
    .await;
    let started = Instant::now();
    for _ in 0..3 {
        let (reason, _) = try_connect(addr, V5, "a", Some("alice"), Some("no")).await;
        assert_eq!(reason, ConnectReason::BadUserNameOrPassword);
    }
    // 200 + 400 + 800 ms at least.
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // Success forgets the address.
    let (reason, _) = try_connect(addr, V5, "a", Some("alice"), Some("pw")).await;
    assert_eq!(reason, ConnectReason::Success);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_by_warren_passwd_works_in_warren_and_mosquitto() {
    let dir = Dir::new("warren-passwd");
    let file = dir.path("passwd");
    let warren = env!("CARGO_BIN_EXE_warren");
    let out = Command::new(warren)
        .args(["passwd", "-c", "-b"])
        .arg(&file)
        .args(["dev1", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(warren)
        .args(["passwd", "-b", "-H", "argon2id"])
        .arg(&file)
        .args(["dev2", "t0p"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("dev1:$7$101$"), "{text}");
    assert!(text.contains("dev2:$argon2id$"), "{text}");

    let (broker, addr) = start_auth(|c| c.auth.password_file = Some(file.clone())).await;
    assert_eq!(
        try_connect(addr, V4, "a", Some("dev1"), Some("s3cret"))
            .await
            .0,
        ConnectReason::Success
    );
    assert_eq!(
        try_connect(addr, V4, "b", Some("dev2"), Some("t0p"))
            .await
            .0,
        ConnectReason::Success
    );
    broker.shutdown().await;

    // Mosquitto reads the $7$ line (argon2id is Warren's only: delete it first).
    let out = Command::new(warren)
        .args(["passwd", "-D"])
        .arg(&file)
        .arg("dev2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let port = mosquitto_port();
    let conf = dir.write(
        "mosquitto.conf",
        &format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            file.display()
        ),
    );
    let mut mosquitto = Command::new(mosquitto_bin())
        .arg("-c")
        .arg(&conf)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pub_to = |pass: &str| {
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-u",
                "dev1",
                "-P",
                pass,
            ])
            .args(["-t", "t", "-m", "m"])
            .output()
            .unwrap()
            .status
            .success()
    };
    let accepted = within(async {
        loop {
            if pub_to("s3cret") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let refused = !pub_to("wrong");
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();
    assert!(accepted && refused);
}

/// A port for the Mosquitto this file starts (one of the ports given to this worktree's tests).
fn mosquitto_port() -> u16 {
    std::env::var("WARREN_TEST_MOSQUITTO_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5734)
}

fn mosquitto_bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

const ACL: &str = "\
# general rules: anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic read shared/+/status
topic deny alice/secret
topic read $SYS/broker/uptime

user bob
topic write shared/bob/status
topic read retained/#
topic deny retained/hidden

pattern readwrite devices/%c/#
pattern write users/%u/out
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_patterns_rules_and_refusals() {
    let dir = Dir::new("acl");
    let acl = dir.write("acl", ACL);
    let passwd = dir.path("passwd");
    mosquitto_passwd(&passwd, "alice", "pw", true);
    mosquitto_passwd(&passwd, "bob", "pw", false);
    let (broker, addr) = start_auth(|c| {
        c.auth.password_file = Some(passwd.clone());
        c.auth.acl_file = Some(acl.clone());
        c.auth.allow_anonymous = Some(true);
        c.metrics.sys_interval_secs = 1;
    })
    .await;
    let mut alice = connected(addr, V5, "dev-a", "alice").await;
    // Subscribe: per filter, 0x87 only for the refused one.
    let sub = raw_subscribe_many(
        &mut alice,
        &[
            "alice/#",
            "alice/secret",
            "shared/+/status",
            "shared/#",
            "devices/dev-a/#",
            "devices/dev-b/#",
            "#",
            "$SYS/broker/uptime",
            "$SYS/#",
        ],
    )
    .await;
    assert_eq!(sub, vec![1, 0x87, 1, 0x87, 1, 0x87, 0x87, 1, 0x87]);
    // Publish: 0x87 in 5.0 (no subscriber anywhere gives 0x10 when allowed).
    let mut seen = Vec::new();
    for (pkid, topic, code) in [
        (1, "alice/x", 0),
        (2, "alice/secret", 0x87),
        (3, "bob/x", 0x87),
        (4, "devices/dev-a/t", 0),
        (5, "devices/dev-b/t", 0x87),
        (6, "users/alice/out", 0x10),
        (7, "users/bob/out", 0x87),
    ] {
        assert_eq!(
            puback_seen(&mut alice, topic, pkid, &mut seen).await,
            code,
            "{topic}"
        );
    }
    // QoS 2 refused: PUBREC 0x87 ends the flow.
    alice
        .send(&publish("bob/x", QoS::ExactlyOnce, 8, false))
        .await;
    match alice.recv().await {
        Some(Packet::PubRec(rec)) => assert_eq!((rec.pkid, rec.reason), (8, 0x87)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // Deliveries: only what was published where allowed.
    seen.extend(received_topics(&mut alice).await);
    // (The retained $SYS/broker/uptime may come in between: checked below.)
    seen.retain(|t| t != "$SYS/broker/uptime");
    assert_eq!(seen, ["alice/x", "devices/dev-a/t"]);

    // 3.1.1: SUBACK 0x80; a refused publish is acknowledged and dropped.
    let mut bob = connected(addr, V4, "dev-b", "bob").await;
    assert_eq!(suback(&mut bob, 1, "alice/#").await, 0x80);
    raw_publish(&mut bob, "alice/x", b"x", QoS::AtLeastOnce, 2).await;
    raw_publish(&mut bob, "shared/bob/status", b"x", QoS::ExactlyOnce, 3).await;
    assert_eq!(received_topics(&mut alice).await, ["shared/bob/status"]);
    assert_eq!(
        metric(&broker, "warren_acl_denied_total{action=\"subscribe\"}"),
        6
    );
    assert_eq!(
        metric(&broker, "warren_acl_denied_total{action=\"publish\"}"),
        6
    );

    // Anonymous clients: the general rules (read public/#) only.
    let (ok, anon) = try_connect(addr, V5, "anon", None, None).await;
    assert_eq!(ok, ConnectReason::Success);
    let mut anon = anon.unwrap();
    assert_eq!(suback(&mut anon, 1, "public/#").await, 1);
    assert_eq!(suback(&mut anon, 2, "alice/#").await, 0x87);
    assert_eq!(puback(&mut anon, "public/x", 3).await, 0x87);

    // $SYS: only where a rule allows it (published every second).
    match alice.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(&*p.topic, "$SYS/broker/uptime"),
        other => panic!("expected $SYS/broker/uptime, got {other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_and_overlapping_denies_are_filtered_on_delivery() {
    let dir = Dir::new("retained");
    let acl = dir.write("acl", ACL);
    let passwd = dir.path("passwd");
    mosquitto_passwd(&passwd, "bob", "pw", true);
    let (broker, addr) = start_auth(|c| {
        c.auth.password_file = Some(passwd.clone());
        c.auth.acl_file = Some(acl.clone());
    })
    .await;
    // Retained messages set by a client the ACL does not bind (loopback anonymous is off:
    // use an in-process client, which the ACL does not check).
    let local = broker.local_client("setter", false);
    for topic in ["retained/a", "retained/hidden", "retained/b/c"] {
        let props = Default::default();
        local
            .publish(warren::session::mailbox::MessageParts {
                topic,
                payload: b"r",
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: &props,
                origin: 0,
                publisher: None,
            })
            .await
            .unwrap();
    }
    let mut bob = connected(addr, V5, "dev-b", "bob").await;
    // Allowed, but a deny rule overlaps it: granted, and checked per message.
    assert_eq!(suback(&mut bob, 1, "retained/#").await, 1);
    let mut topics = received_topics(&mut bob).await;
    topics.sort();
    assert_eq!(topics, ["retained/a", "retained/b/c"]);
    for topic in ["retained/hidden", "retained/z"] {
        local
            .publish(warren::session::mailbox::MessageParts {
                topic,
                payload: b"live",
                qos: QoS::AtMostOnce,
                retain: false,
                properties: &Default::default(),
                origin: 0,
                publisher: None,
            })
            .await
            .unwrap();
    }
    assert_eq!(received_topics(&mut bob).await, ["retained/z"]);
    assert!(metric(&broker, "warren_acl_denied_total{action=\"deliver\"}") >= 2);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_publish_can_close_the_connection() {
    let dir = Dir::new("deny-disconnect");
    let acl = dir.write("acl", "topic read public/#\n");
    let (broker, addr) = start_with(|c| {
        c.auth.acl_file = Some(acl.clone());
        c.auth.disconnect_on_denied_publish = true;
    })
    .await;
    let mut raw = raw_connected(addr, V5, "c").await;
    raw.send(&publish("public/x", QoS::AtLeastOnce, 1, false))
        .await;
    assert_eq!(disconnect_reason(&mut raw).await, Some(0x87));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_at_start_naming_file_and_line() {
    let dir = Dir::new("bad-files");
    let acl = dir.write("acl", "user a\ntopic read a/#\ntopic write b/#/c\n");
    let mut config = Config::for_tests();
    config.auth.acl_file = Some(acl.clone());
    let err = warren::Broker::start(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("{}:3:", acl.display())),
        "names the file and line: {err}"
    );
    let passwd = dir.write("passwd", "ok:$7$101$AAAA$AAAA\n");
    let mut config = Config::for_tests();
    config.auth.password_file = Some(passwd.clone());
    let err = warren::Broker::start(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("auth.password_file: "), "{err}");
    assert!(err.contains(&format!("{}:1:", passwd.display())), "{err}");

    // And by check-config.
    let toml = dir.write(
        "warren.toml",
        &format!("[auth]\nacl_file = \"{}\"\n", acl.display()),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["check-config", "--config"])
        .arg(&toml)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":3: "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_revokes_swaps_rules_and_keeps_settings_on_failure() {
    let dir = Dir::new("reload");
    let passwd = dir.path("passwd");
    mosquitto_passwd(&passwd, "alice", "pw", true);
    mosquitto_passwd(&passwd, "bob", "pw", false);
    let acl = dir.write("acl", "user alice\ntopic a/#\nuser bob\ntopic b/#\n");
    let (broker, addr) = start_auth(|c| {
        c.auth.password_file = Some(passwd.clone());
        c.auth.acl_file = Some(acl.clone());
        c.auth.disconnect_on_revoke = true;
    })
    .await;
    let mut alice = connected(addr, V5, "a", "alice").await;
    let mut bob = connected(addr, V5, "b", "bob").await;
    assert_eq!(suback(&mut alice, 1, "a/#").await, 1);
    assert_eq!(suback(&mut bob, 1, "b/#").await, 1);

    // A broken ACL: refused, counted, nothing changes.
    std::fs::write(&acl, "user alice\ntopic a/#/x\n").unwrap();
    let err = broker.reload().unwrap_err().to_string();
    assert!(err.contains(":2:"), "{err}");
    assert_eq!(
        metric(&broker, "warren_config_reloads_total{result=\"failure\"}"),
        1
    );
    let mut seen = Vec::new();
    assert_eq!(puback_seen(&mut bob, "b/1", 2, &mut seen).await, 0);

    // Bob removed from the password file; alice loses b/#... and gains c/#.
    let text = std::fs::read_to_string(&passwd).unwrap();
    let alice_line: String = text.lines().filter(|l| l.starts_with("alice:")).collect();
    std::fs::write(&passwd, format!("{alice_line}\n")).unwrap();
    std::fs::write(&acl, "user alice\ntopic c/#\n").unwrap();
    broker.reload().unwrap();
    assert_eq!(
        metric(&broker, "warren_config_reloads_total{result=\"success\"}"),
        1
    );
    assert_eq!(disconnect_reason(&mut bob).await, Some(0x87));
    // Alice stays connected; her a/# subscription is gone, c/# is hers now.
    assert_eq!(puback(&mut alice, "c/1", 2).await, 0x10);
    assert_eq!(puback(&mut alice, "a/1", 3).await, 0x87);
    assert_eq!(suback(&mut alice, 4, "c/#").await, 1);
    assert_eq!(
        try_connect(addr, V5, "b2", Some("bob"), Some("pw")).await.0,
        ConnectReason::BadUserNameOrPassword
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_no_connection_and_loses_nothing() {
    let dir = Dir::new("reload-load");
    let passwd = dir.path("passwd");
    mosquitto_passwd(&passwd, "p", "pw", true);
    let acl = dir.write("acl", "user p\ntopic load/#\n");
    let (broker, addr) = start_auth(|c| {
        c.auth.password_file = Some(passwd.clone());
        c.auth.acl_file = Some(acl.clone());
        c.auth.disconnect_on_revoke = true;
    })
    .await;
    let mut sub = connected(addr, V5, "sub", "p").await;
    assert_eq!(suback(&mut sub, 1, "load/#").await, 1);
    let mut publisher = connected(addr, V4, "pub", "p").await;
    const N: u16 = 2000;
    let reloads = async {
        for i in 0..20 {
            std::fs::write(&acl, format!("user p\ntopic load/#\ntopic other/{i}\n")).unwrap();
            broker.reload().unwrap();
            // Paced, so the reloads spread over the flood.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let flood = async {
        for i in 1..=N {
            raw_publish(&mut publisher, "load/x", b"x", QoS::AtLeastOnce, i).await;
        }
    };
    let consume = async {
        let mut got = 0usize;
        while got < usize::from(N) {
            match sub.recv().await {
                Some(Packet::Publish(p)) => {
                    sub.send(&Packet::PubAck(protocol::PubResp::new(p.pkid)))
                        .await;
                    got += 1;
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    };
    tokio::join!(reloads, flood, consume);
    assert_eq!(
        metric(&broker, "warren_config_reloads_total{result=\"success\"}"),
        20
    );
    raw_ping(&mut publisher).await;
    broker.shutdown().await;
}

/// Subscribes to each filter at QoS 1 in one SUBSCRIBE; the reason codes.
async fn raw_subscribe_many(raw: &mut Raw, filters: &[&str]) -> Vec<u8> {
    raw.send(&Packet::Subscribe(protocol::Subscribe {
        pkid: 100,
        filters: filters
            .iter()
            .map(|f| {
                (
                    (*f).into(),
                    protocol::SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                )
            })
            .collect(),
        properties: Default::default(),
    }))
    .await;
    loop {
        match raw.recv().await {
            Some(Packet::SubAck(ack)) => return ack.reasons,
            Some(Packet::Publish(_)) => {}
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}
