//! SASL EXTERNAL against a real RabbitMQ: a private node (scripts/rabbitmq) with the
//! `rabbitmq_auth_mechanism_ssl` plugin and a TLS listener that demands a client certificate
//! signed by the test's CA (rcgen) and takes the user name from its common name. The bridge
//! logs in with `amqps://…?auth_mechanism=external` and the certificate of its `[bridge.tls]`
//! table; a certificate whose name is no RabbitMQ user is refused until the user exists.
//!
//! Ports: `WARREN_TEST_NODE_PORT_BASE` (default 5690) + 2 for AMQP (the Erlang distribution
//! port is 20000 above it) and + 3 for AMQPS.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rumqttc::v5::mqttbytes::QoS;
use warren_bridge::config::TlsFiles;
use warren_bridge::ConnectionState;

use common::{
    amqp, config, node_port, start_bridge, take, unique, wait_until, wait_until_or, Device,
    Mosquitto, Node, TestCa,
};

/// The bridge's warnings, captured (the log is how an operator learns why a login fails).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures `warren_bridge` warnings of this test process (installed once).
    fn capture() -> Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let sink = logs.clone();
            tracing_subscriber::fmt()
                .with_env_filter("warren_bridge=warn")
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .try_init()
                .expect("the test's log subscriber");
            logs
        })
        .clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `rabbitmq.conf` for an AMQPS listener on `port` that requires a client certificate signed
/// by `ca` and offers EXTERNAL, with the user name from the certificate's common name.
fn tls_conf(port: u16, ca: &str, cert: &str, key: &str) -> String {
    format!(
        "listeners.ssl.default = 127.0.0.1:{port}\n\
         ssl_options.cacertfile = {ca}\n\
         ssl_options.certfile = {cert}\n\
         ssl_options.keyfile = {key}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n\
         auth_mechanisms.1 = PLAIN\n\
         auth_mechanisms.2 = EXTERNAL\n\
         ssl_cert_login_from = common_name\n"
    )
}

/// RabbitMQ definitions (JSON) for a user `name` without a password and with every
/// permission on the virtual host "/".
fn definitions(name: &str) -> String {
    format!(
        r#"{{"users": [{{"name": "{name}", "password_hash": "", "tags": ""}}],
  "permissions": [{{"user": "{name}", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_logs_in_as_the_certificate_name_and_a_stranger_is_refused_until_known() {
    let _ = amqp_or_skip!();
    let logs = Logs::capture();
    let (amqp_port, tls_port) = (node_port(2), node_port(3));
    let node = Node::new(&unique("external"), amqp_port);
    let dir = node.dir().to_path_buf();
    let file = |name: &str, text: String| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write a node file");
        p
    };
    let ca = TestCa::new();
    let ca_file = file("ca.pem", ca.pem());
    let (cert, key) = ca.issue("localhost", &["localhost", "127.0.0.1"]);
    let conf = tls_conf(
        tls_port,
        &ca_file.display().to_string(),
        &file("server.pem", cert).display().to_string(),
        &file("server.key", key).display().to_string(),
    );
    let node = node
        .env("RABBITMQ_PLUGINS", "rabbitmq_auth_mechanism_ssl")
        .env(
            "WARREN_RABBITMQ_CONF",
            file("tls.conf", conf).display().to_string(),
        );
    node.start().await;
    // A user without a password (EXTERNAL needs none) with every permission on "/", in one
    // rabbitmqctl call (each call starts an Erlang VM: about a second on a busy machine).
    let add_user = |name: String| {
        let (node, defs) = (&node, file(&format!("{name}.json"), definitions(&name)));
        async move {
            node.ctl(&["import_definitions", &defs.display().to_string()])
                .await;
        }
    };
    let user = unique("bridge-cert");
    add_user(user.clone()).await;

    let m = Mosquitto::start().await;
    let url = format!("amqps://127.0.0.1:{tls_port}/%2f?auth_mechanism=external");
    let (_c, ch) = amqp(&node.url()).await;
    let dev = Device::connect(m.port, &unique("dev")).await;
    // A bridge with a client certificate named `cn`, carrying a topic of its own to a queue of
    // its own, and a device's QoS 1 `payload` on that topic: (the bridge, the queue).
    let carry = async |cn: &str, payload: &'static str| {
        let (t, q) = (unique("ext"), unique("q"));
        common::queue(&ch, &q, false, "amq.topic", &[&format!("{t}.#")]).await;
        let (cert, key) = ca.issue(cn, &[]);
        let rules = format!("[[bridge.outbound]]\nfilter = \"{t}/#\"\n");
        let mut c = config(&url, m.port, &rules);
        c.tls = Some(TlsFiles {
            ca_file: Some(ca_file.clone()),
            cert_file: Some(file(&format!("{cn}.pem"), cert)),
            key_file: Some(file(&format!("{cn}.key"), key)),
        });
        let b = start_bridge(&c).await;
        dev.client
            .publish(format!("{t}/d"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        (b, q)
    };

    // The certificate's common name is a user: the bridge logs in as it, over EXTERNAL.
    let (b, q) = carry(&user, "by certificate").await;
    let got = take(&ch, &q, 1).await;
    assert_eq!(got[0].data, b"by certificate");
    wait_until("the confirm", || {
        b.snapshot().outbound[0].counts.confirmed == 1
    })
    .await;
    let conns = node
        .ctl(&["-q", "list_connections", "user", "auth_mechanism"])
        .await;
    assert!(
        conns
            .lines()
            .any(|l| l.split_whitespace().eq([user.as_str(), "EXTERNAL"])),
        "the bridge's connection is {user}'s, by EXTERNAL:\n{conns}"
    );
    b.stop().await;

    // A certificate the CA signed for a name RabbitMQ does not know: refused (403), counted,
    // logged and retried with backoff, while the MQTT side keeps taking the rule's messages.
    let stranger = unique("stranger");
    let (b, q) = carry(&stranger, "held").await;
    wait_until_or(
        "three refused logins and the message held",
        || {
            let s = b.snapshot();
            s.connect_failures >= 3 && s.outbound[0].pending == 1
        },
        || format!("{:?}", b.snapshot()),
    )
    .await;
    let s = b.snapshot();
    assert_ne!(s.connection, ConnectionState::Connected);
    assert_eq!(s.reconnects, 0, "never connected");
    assert_eq!(s.outbound[0].counts.published, 0);
    let log = logs.text();
    assert!(
        log.contains("cannot connect to RabbitMQ") && log.contains("403 ACCESS_REFUSED"),
        "the refusal is logged with RabbitMQ's reason:\n{log}"
    );
    // Once the name is a user, the next attempt logs in and the held message goes through.
    add_user(stranger.clone()).await;
    let got = take(&ch, &q, 1).await;
    assert_eq!(got[0].data, b"held");
    wait_until("the held message's confirm", || {
        let s = b.snapshot();
        s.connection == ConnectionState::Connected && s.outbound[0].counts.confirmed == 1
    })
    .await;
    b.stop().await;
}
