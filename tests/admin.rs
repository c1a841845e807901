//! The admin API over real HTTP, with real MQTT clients connected: listing with filters and
//! paging, one client's detail, kick with an MQTT 5 reason, sessions, subscriptions, retained
//! messages, config redaction, reload, tokens, and the OpenAPI document against the routes.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::*;
use serde_json::Value;
use warren::protocol::{self, Packet, ProtocolVersion, QoS};

const TOKEN: &str = "test-token-1";

async fn start_admin() -> (warren::BrokerHandle, SocketAddr, SocketAddr) {
    let (broker, tcp) = start_with(|c| {
        c.admin.tokens = vec![warren::admin::auth::digest_hex(TOKEN)];
    })
    .await;
    let admin = broker.admin_addr().expect("admin listener");
    (broker, tcp, admin)
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["client_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn connect_user(addr: SocketAddr, id: &str, user: &str) -> Raw {
    let mut connect = connect_packet(ProtocolVersion::V5, id, true);
    if let Packet::Connect(c) = &mut connect {
        c.username = Some(user.into());
    }
    match raw_connect_with(addr, ProtocolVersion::V5, &connect).await {
        (raw, Some(Packet::ConnAck(_))) => raw,
        (_, other) => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn clients_are_listed_filtered_paged_inspected_and_kicked() {
    let (broker, tcp, admin) = start_admin().await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(raw_connected(tcp, ProtocolVersion::V3_1_1, &format!("sensor-{i}")).await);
    }
    let mut alice = connect_user(tcp, "panel-a", "alice").await;
    raw_subscribe(&mut alice, 1, "alerts/#", QoS::AtLeastOnce).await;
    let t = Some(TOKEN);

    // Without a token, or with a wrong one: 401.
    let (status, _) = http(admin, "GET", "/api/v1/clients", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = http(admin, "GET", "/api/v1/clients", Some("nope"), None).await;
    assert_eq!(status, 401);

    let all = api(admin, "GET", "/api/v1/clients", t, 200).await;
    assert_eq!(
        ids(&all),
        ["panel-a", "sensor-0", "sensor-1", "sensor-2", "sensor-3", "sensor-4"]
    );
    assert!(all["next"].is_null());

    // Paged by cursor, filtered by prefix.
    let first = api(
        admin,
        "GET",
        "/api/v1/clients?prefix=sensor-&limit=2",
        t,
        200,
    )
    .await;
    assert_eq!(ids(&first), ["sensor-0", "sensor-1"]);
    let next = first["next"].as_str().expect("a cursor");
    let second = api(
        admin,
        "GET",
        &format!("/api/v1/clients?prefix=sensor-&limit=2&after={next}"),
        t,
        200,
    )
    .await;
    assert_eq!(ids(&second), ["sensor-2", "sensor-3"]);
    let by_user = api(admin, "GET", "/api/v1/clients?username=alice", t, 200).await;
    assert_eq!(ids(&by_user), ["panel-a"]);
    let by_listener = api(
        admin,
        "GET",
        "/api/v1/clients?listener=tcp&limit=1000",
        t,
        200,
    )
    .await;
    assert_eq!(ids(&by_listener).len(), 6);
    let by_address = api(admin, "GET", "/api/v1/clients?address=10.9.", t, 200).await;
    assert!(ids(&by_address).is_empty());
    let by_address = api(admin, "GET", "/api/v1/clients?address=127.0.0.1", t, 200).await;
    assert_eq!(ids(&by_address).len(), 6);
    let (status, _) = http(admin, "GET", "/api/v1/clients?limit=0", t, None).await;
    assert_eq!(status, 400);

    // One client: connection, session and subscriptions.
    let one = api(admin, "GET", "/api/v1/clients/panel-a", t, 200).await;
    assert_eq!(one["username"], "alice");
    assert_eq!(one["protocol"], "5.0");
    assert_eq!(one["listener"], "tcp");
    assert_eq!(one["subscriptions"], 1);
    assert_eq!(one["subscription_list"][0]["filter"], "alerts/#");
    assert_eq!(one["subscription_list"][0]["qos"], 1);
    assert!(one["bytes_in"].as_u64().unwrap() > 0);
    assert!(one["connected_since"].as_u64().unwrap() > 1_600_000_000_000);
    api(admin, "GET", "/api/v1/clients/nobody", t, 404).await;

    let subs = api(
        admin,
        "GET",
        "/api/v1/subscriptions?filter_prefix=alerts",
        t,
        200,
    )
    .await;
    assert_eq!(subs["items"][0]["client_id"], "panel-a");

    // Kick with a reason: the MQTT 5 client is told, and is gone from the list.
    let (status, body) = http(
        admin,
        "POST",
        "/api/v1/clients/panel-a/kick",
        t,
        Some(r#"{"reason": 152}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        disconnect_reason(&mut alice).await,
        Some(protocol::reason::ADMINISTRATIVE_ACTION)
    );
    eventually(|| broker.session_count() == 5).await;
    api(admin, "POST", "/api/v1/clients/panel-a/kick", t, 404).await;
    let (status, _) = http(
        admin,
        "POST",
        "/api/v1/clients/sensor-0/kick",
        t,
        Some(r#"{"reason": 4}"#),
    )
    .await;
    assert_eq!(status, 400, "0x04 is a client's reason only");
    // A 3.1.1 client is just closed.
    api(admin, "POST", "/api/v1/clients/sensor-0/kick", t, 200).await;
    assert!(raw_read_to_close(&mut clients[0]).await.is_empty());

    let overview = api(admin, "GET", "/api/v1/overview", t, 200).await;
    assert_eq!(overview["counts"]["connections"], 4);
    assert_eq!(overview["listeners"][0]["name"], "tcp");
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    broker.shutdown().await;
}

#[tokio::test]
async fn sessions_and_retained_messages_are_listed_and_deleted() {
    let (broker, tcp, admin) = start_admin().await;
    let t = Some(TOKEN);
    // An offline persistent session with a subscription.
    let (mut keeper, _) = raw_session(tcp, ProtocolVersion::V3_1_1, "keeper", false).await;
    raw_subscribe(&mut keeper, 1, "x/y", QoS::AtLeastOnce).await;
    raw_disconnect(keeper).await;
    eventually(|| broker.offline_session_count() == 1).await;
    let (online, _) = raw_session(tcp, ProtocolVersion::V3_1_1, "online", false).await;

    let sessions = api(admin, "GET", "/api/v1/sessions", t, 200).await;
    assert_eq!(ids(&sessions), ["keeper", "online"]);
    assert_eq!(sessions["items"][0]["connected"], false);
    assert_eq!(sessions["items"][0]["subscriptions"], 1);
    let clients = api(admin, "GET", "/api/v1/clients", t, 200).await;
    assert_eq!(ids(&clients), ["online"]);
    api(admin, "DELETE", "/api/v1/sessions/online", t, 409).await;
    api(admin, "DELETE", "/api/v1/sessions/keeper", t, 200).await;
    api(admin, "DELETE", "/api/v1/sessions/keeper", t, 404).await;
    assert_eq!(broker.offline_session_count(), 0);
    assert_eq!(broker.subscription_count(), 0);
    drop(online);

    // Retained messages: listed by filter in pages, one fetched by its encoded topic, deleted.
    let mut publisher = raw_connected(tcp, ProtocolVersion::V3_1_1, "publisher").await;
    for (i, topic) in ["sensors/a/t", "sensors/b/t", "sensors/c/t", "other/x"]
        .iter()
        .enumerate()
    {
        let mut p = publish_packet(
            topic,
            format!("v{i}").as_bytes(),
            QoS::AtLeastOnce,
            1 + i as u16,
        );
        if let Packet::Publish(p) = &mut p {
            p.retain = true;
        }
        publisher.send(&p).await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    }
    let page = api(
        admin,
        "GET",
        "/api/v1/retained?filter=sensors%2F%2B%2Ft&limit=2",
        t,
        200,
    )
    .await;
    let topics: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["sensors/a/t", "sensors/b/t"]);
    let after = page["next"].as_str().unwrap().replace('/', "%2F");
    let rest = api(
        admin,
        "GET",
        &format!("/api/v1/retained?filter=sensors/%2B/t&after={after}"),
        t,
        200,
    )
    .await;
    assert_eq!(rest["items"][0]["topic"], "sensors/c/t");
    assert!(rest["next"].is_null());
    let one = api(admin, "GET", "/api/v1/retained/other%2Fx", t, 200).await;
    assert_eq!(one["payload"], "v3");
    assert_eq!(one["publisher"], "publisher");
    api(admin, "DELETE", "/api/v1/retained/other%2Fx", t, 200).await;
    api(admin, "GET", "/api/v1/retained/other%2Fx", t, 404).await;
    assert_eq!(broker.retained_count(), 3);
    // Deleting sent nothing to a subscriber of the topic, and a new one gets nothing retained.
    let mut late = raw_connected(tcp, ProtocolVersion::V3_1_1, "late").await;
    raw_subscribe(&mut late, 1, "other/#", QoS::AtLeastOnce).await;
    raw_ping(&mut late).await;
    let (status, _) = http(admin, "GET", "/api/v1/retained?filter=a/%23/b", t, None).await;
    assert_eq!(status, 400);
    broker.shutdown().await;
}

#[tokio::test]
async fn config_is_redacted_reload_answers_and_the_openapi_document_matches_the_routes() {
    let (broker, _tcp, admin) = start_admin().await;
    let t = Some(TOKEN);
    let config = api(admin, "GET", "/api/v1/config", t, 200).await;
    assert_eq!(config["admin"]["tokens"][0], "***");
    assert_eq!(config["mqtt"]["max_inflight"], 32);
    assert_eq!(
        api(admin, "POST", "/api/v1/reload", t, 200).await["reloaded"],
        true
    );
    api(admin, "GET", "/api/v1/bridge", t, 404).await;
    api(admin, "GET", "/api/v1/nothing", t, 404).await;
    api(admin, "DELETE", "/api/v1/overview", t, 405).await;

    // The document needs no token, and names exactly the routes the server dispatches.
    let doc = api(admin, "GET", "/api/v1/openapi.json", None, 200).await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = warren::admin::routes::ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served);
    // Every documented route answers something other than 404/405 for a real id.
    for (method, path) in &served {
        let path = path
            .replace("{client_id}", "nobody")
            .replace("{topic}", "no%2Fthing");
        let (status, _) = http(admin, method, &path, t, None).await;
        assert!(![405, 401].contains(&status), "{method} {path}: {status}");
    }
    broker.shutdown().await;
}

/// `text` percent-encoded for a query string.
fn escaped(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn subscriptions_are_paged_in_filter_order() {
    let (broker, tcp, admin) = start_admin().await;
    let t = Some(TOKEN);
    // Two clients on a shared filter and on the same plain filter, one on two more.
    let mut a = raw_connected(tcp, ProtocolVersion::V5, "a").await;
    let mut b = raw_connected(tcp, ProtocolVersion::V5, "b").await;
    for (n, filter) in ["s/2", "$share/g/s/#", "s/1"].into_iter().enumerate() {
        raw_subscribe(&mut a, n as u16 + 1, filter, QoS::AtMostOnce).await;
    }
    raw_subscribe(&mut b, 1, "s/1", QoS::AtMostOnce).await;
    raw_subscribe(&mut b, 2, "$share/g/s/#", QoS::AtMostOnce).await;
    let want = [
        ("$share/g/s/#", "a"),
        ("$share/g/s/#", "b"),
        ("s/1", "a"),
        ("s/1", "b"),
        ("s/2", "a"),
    ];
    let rows = |page: &Value| -> Vec<(String, String)> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                (
                    i["filter"].as_str().unwrap().into(),
                    i["client_id"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let all = api(admin, "GET", "/api/v1/subscriptions", t, 200).await;
    let expected: Vec<(String, String)> = want
        .iter()
        .map(|(f, c)| ((*f).into(), (*c).into()))
        .collect();
    assert_eq!(rows(&all), expected);
    assert!(all["next"].is_null(), "{all}");

    // Two at a time, by cursor: every row once, in order, and no cursor after the last page.
    let mut seen = Vec::new();
    let mut path = "/api/v1/subscriptions?limit=2".to_owned();
    for pages in 1.. {
        assert!(pages <= 3, "more pages than rows: {seen:?}");
        let page = api(admin, "GET", &path, t, 200).await;
        let got = rows(&page);
        assert!(got.len() <= 2, "{page}");
        seen.extend(got);
        match page["next"].as_str() {
            Some(next) => {
                path = format!("/api/v1/subscriptions?limit=2&after={}", escaped(next));
            }
            None => break,
        }
    }
    assert_eq!(seen, expected);
    // With a prefix and a client.
    let one = api(
        admin,
        "GET",
        "/api/v1/subscriptions?filter_prefix=s/&client_id=b",
        t,
        200,
    )
    .await;
    assert_eq!(rows(&one), [("s/1".to_owned(), "b".to_owned())]);
    // One client's, a page at a time (from its index): a's three rows in order.
    let mut seen = Vec::new();
    let mut path = "/api/v1/subscriptions?client_id=a&limit=2".to_owned();
    while seen.len() < 4 {
        let page = api(admin, "GET", &path, t, 200).await;
        seen.extend(rows(&page));
        let Some(next) = page["next"].as_str() else {
            break;
        };
        path = format!(
            "/api/v1/subscriptions?client_id=a&limit=2&after={}",
            escaped(next)
        );
    }
    let a_rows: Vec<(String, String)> = expected.iter().filter(|r| r.1 == "a").cloned().collect();
    assert_eq!(seen, a_rows);
    for bad in ["limit=0", "limit=10001", "limit=x", "after=nonsense"] {
        api(
            admin,
            "GET",
            &format!("/api/v1/subscriptions?{bad}"),
            t,
            400,
        )
        .await;
    }
    api(admin, "GET", "/api/v1/subscriptions?limit=10000", t, 200).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_reload_rereads_the_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-tokens");
    let write = |tokens: &[&str]| {
        let lines: Vec<String> = tokens
            .iter()
            .map(|t| warren::admin::auth::digest_hex(t))
            .collect();
        std::fs::write(&file, format!("# ops\n{}\n", lines.join("\n"))).unwrap();
    };
    write(&["old-token"]);
    let (broker, _tcp) = start_with(|c| c.admin.token_file = Some(file.clone())).await;
    let admin = broker.admin_addr().unwrap();
    let overview = "/api/v1/overview";
    api(admin, "GET", overview, Some("old-token"), 200).await;
    api(admin, "GET", overview, Some("new-token"), 401).await;

    // The reload `warren ctl reload` asks for (SIGHUP calls the same): the removed token stops
    // working, the added one starts.
    write(&["new-token"]);
    api(admin, "POST", "/api/v1/reload", Some("old-token"), 200).await;
    api(admin, "GET", overview, Some("old-token"), 401).await;
    api(admin, "GET", overview, Some("new-token"), 200).await;

    // An unusable file: the reload fails, is counted, and the tokens in force stay.
    std::fs::write(&file, "not-a-digest\n").unwrap();
    let failed = api(admin, "POST", "/api/v1/reload", Some("new-token"), 422).await;
    assert!(failed.to_string().contains("admin token file"), "{failed}");
    assert_eq!(broker.stats().reloads, [1, 1]);
    api(admin, "GET", overview, Some("new-token"), 200).await;
    api(admin, "GET", overview, Some("old-token"), 401).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn without_tokens_the_admin_listener_must_be_loopback() {
    let mut config = warren::Config::for_tests();
    config.admin.bind = SocketAddr::from(([0, 0, 0, 0], 0));
    let error = warren::Broker::start(config).await.err().expect("refused");
    assert!(
        error.to_string().contains("not a loopback address"),
        "{error}"
    );
    // Loopback without tokens: open to this host.
    let (broker, _tcp) = start().await;
    let admin = broker.admin_addr().unwrap();
    api(admin, "GET", "/api/v1/overview", None, 200).await;
    // What another site's page could make a browser send is refused: a form POST (no JSON
    // content type), and a request for another host name (DNS rebinding).
    let raw = |request: &'static str| async move {
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut out)
            .await
            .unwrap();
        out
    };
    let form = within(raw("POST /api/v1/reload HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 0\r\n\r\n")).await;
    assert!(form.starts_with("HTTP/1.1 415"), "{form}");
    let rebound = within(raw(
        "GET /api/v1/overview HTTP/1.1\r\nhost: evil.example:9884\r\nconnection: close\r\n\r\n",
    ))
    .await;
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    broker.shutdown().await;
}
