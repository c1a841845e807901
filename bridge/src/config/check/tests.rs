//! The issue's example parses as written; each semantic error names its key.

use super::super::*;

fn parse(text: &str) -> BridgeConfig {
    #[derive(serde::Deserialize)]
    struct File {
        bridge: BridgeConfig,
    }
    toml::from_str::<File>(text).expect("parses").bridge
}

fn key_of(text: &str) -> String {
    parse(text).check().expect_err("refused").key
}

const EXAMPLE: &str = r#"
[bridge]
enabled = true
url = "amqp://guest:guest@127.0.0.1:5672/%2f"   # amqps:// with a [bridge.tls] table

[[bridge.outbound]]            # MQTT -> AMQP
filter = "e2e/#"
exchange = "amq.topic"          # exchange type topic by default; direct, fanout, headers allowed
ack = "confirmed"               # default; also "spooled" and "received" (see Guarantees)

[[bridge.inbound]]             # AMQP -> MQTT
queue = "warren.commands"       # declared durable if missing, bound as below
exchange = "amq.topic"
bindings = ["cmd.#"]
qos = 1
"#;

#[test]
fn the_issue_example_parses_and_checks() {
    let c = parse(EXAMPLE);
    c.check().unwrap();
    assert!(c.enabled);
    assert_eq!(c.outbound.len(), 1);
    assert_eq!(c.outbound[0].filter, "e2e/#");
    assert_eq!(c.outbound[0].exchange_type, ExchangeType::Topic);
    assert_eq!(c.outbound[0].ack, AckMode::Confirmed);
    assert_eq!(c.inbound[0].bindings, vec!["cmd.#".to_string()]);
    assert_eq!(c.outbound_name(0), "outbound-1");
    assert_eq!(c.inbound_name(0), "inbound-1");
}

#[test]
fn the_default_is_disabled_with_nothing_else() {
    let c = BridgeConfig::default();
    assert!(!c.enabled);
    assert!(c.outbound.is_empty() && c.inbound.is_empty());
    assert!(c.tls.is_none() && c.spool.is_none() && c.mqtt.is_none());
    c.check().unwrap();
    assert_eq!(parse("[bridge]\n"), c);
}

#[test]
fn unknown_keys_and_values_are_refused_by_serde() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct File {
        bridge: BridgeConfig,
    }
    let e = toml::from_str::<File>("[bridge]\nurll = \"x\"\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `urll`"), "{e}");
    let e = toml::from_str::<File>(
        "[[bridge.outbound]]\nfilter = \"a\"\nexchange_type = \"x-delayed\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("exchange_type"), "{e}");
    let e = toml::from_str::<File>("[[bridge.outbound]]\nfilter = \"a\"\nack = \"maybe\"\n")
        .unwrap_err();
    assert!(e.to_string().contains("unknown variant `maybe`"), "{e}");
    let e =
        toml::from_str::<File>("[[bridge.inbound]]\nqueue = \"q\"\nprefetch = -1\n").unwrap_err();
    assert!(e.to_string().contains("prefetch"), "{e}");
}

#[test]
fn integers_accept_digit_strings() {
    let c = parse("[bridge]\nconnect_timeout_secs = \"7\"\n[[bridge.inbound]]\nqueue = \"q\"\nprefetch = \"9\"\n");
    assert_eq!(c.connect_timeout_secs, 7);
    assert_eq!(c.inbound[0].prefetch, 9);
}

#[test]
fn semantic_errors_name_the_key() {
    let cases = [
        ("[bridge]\nurl = \"http://x\"\n", "bridge.url"),
        ("[bridge]\nurl = \"amqp://x\"\n[bridge.tls]\n", "bridge.tls"),
        ("[bridge]\nurl = \"amqps://x\"\n[bridge.tls]\ncert_file = \"c\"\n", "bridge.tls.key_file"),
        ("[bridge]\nurl = \"amqp://x?auth_mechanism=external\"\n", "bridge.url"),
        ("[bridge]\nurl = \"amqps://x?auth_mechanism=external\"\n", "bridge.tls.cert_file"),
        ("[bridge]\nurl = \"amqps://x?auth_mechanism=external\"\n[bridge.tls]\nca_file = \"a\"\n", "bridge.tls.cert_file"),
        ("[bridge]\nreconnect_max_ms = 1\n", "bridge.reconnect_max_ms"),
        ("[[bridge.outbound]]\nexchange = \"x\"\n", "bridge.outbound[0].filter"),
        ("[[bridge.outbound]]\nfilter = \"a/#/b\"\n", "bridge.outbound[0].filter"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nqos = 3\n", "bridge.outbound[0].qos"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nexchange = \"a b\"\n", "bridge.outbound[0].exchange"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nmapping = \"template\"\n", "bridge.outbound[0].template"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nmapping = \"template\"\ntemplate = \"x.{0}\"\n", "bridge.outbound[0].template"),
        ("[[bridge.outbound]]\nfilter = \"a\"\ntemplate = \"x.{1}\"\n", "bridge.outbound[0].template"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nunroutable = \"dead-letter\"\n", "bridge.outbound[0].unroutable"),
        ("[[bridge.outbound]]\nfilter = \"a\"\ndead_letter_topic = \"d\"\n", "bridge.outbound[0].dead_letter_topic"),
        ("[[bridge.outbound]]\nfilter = \"a/#\"\nunroutable = \"dead-letter\"\ndead_letter_topic = \"a/dead\"\n", "bridge.outbound[0].dead_letter_topic"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nunroutable = \"dead-letter\"\ndead_letter_topic = \"d/+\"\n", "bridge.outbound[0].dead_letter_topic"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nack = \"spooled\"\n", "bridge.outbound[0].ack"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nname = \"x\"\n[[bridge.outbound]]\nfilter = \"b\"\nname = \"x\"\n", "bridge.outbound[1].name"),
        ("[[bridge.outbound]]\nfilter = \"a\"\nname = \"a b\"\n", "bridge.outbound[0].name"),
        ("[[bridge.inbound]]\nexchange = \"amq.topic\"\n", "bridge.inbound[0].queue"),
        ("[[bridge.inbound]]\nqueue = \"q\"\nexchange = \"\"\nbindings = [\"a\"]\n", "bridge.inbound[0].bindings"),
        ("[[bridge.inbound]]\nqueue = \"q\"\nprefetch = 0\n", "bridge.inbound[0].prefetch"),
        ("[[bridge.inbound]]\nqueue = \"q\"\nmapping = \"template\"\ntemplate = \"a/+/{1}\"\n", "bridge.inbound[0].template"),
        ("[bridge.spool]\npath = \"\"\n", "bridge.spool.path"),
        ("[bridge.mqtt]\nclient_id = \"\"\n", "bridge.mqtt.client_id"),
    ];
    for (text, key) in cases {
        assert_eq!(key_of(text), key, "{text}");
    }
}
