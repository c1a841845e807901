//! Outbound properties and their inbound reading, on the same message.

use super::*;

fn message_with_everything() -> BridgeMessage {
    BridgeMessage {
        topic: "e2e/dev1/temp".into(),
        payload: Bytes::from_static(b"21.5"),
        qos: 1,
        retain: true,
        properties: MqttProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(30),
            content_type: Some("text/plain".into()),
            response_topic: Some("resp/dev1".into()),
            correlation_data: Some(Bytes::from_static(b"req-7")),
            user_properties: vec![
                ("site".into(), "north".into()),
                ("tag".into(), "a".into()),
                ("tag".into(), "b".into()),
                ("x-mqtt-topic".into(), "spoof".into()),
            ],
        },
    }
}

/// The outbound properties of `m` with the default mapping, ids given as text.
fn outbound(
    m: &BridgeMessage,
    client_id: Option<&'static str>,
    style: HeaderStyle,
    message_id: &'static str,
    timestamp: u64,
) -> BasicProperties {
    let client_id = client_id.map(|c| Bytes::from_static(c.as_bytes()));
    let message_id = Bytes::from_static(message_id.as_bytes());
    properties(
        m,
        client_id.as_ref(),
        style,
        &Mapping::Default,
        &message_id,
        timestamp,
    )
}

fn header<'a>(p: &'a BasicProperties, k: &str) -> &'a FieldValue {
    p.headers.as_ref().unwrap().get(k.as_bytes()).unwrap()
}

#[test]
fn outbound_properties_carry_topic_client_qos_retain_and_user_properties() {
    let m = message_with_everything();
    let p = outbound(&m, Some("dev1"), HeaderStyle::Warren, "w-1", 1_700_000_000);
    let b = |s: &'static str| Some(Bytes::from_static(s.as_bytes()));
    assert_eq!(p.delivery_mode, Some(2));
    assert_eq!(p.timestamp, Some(1_700_000_000));
    assert_eq!(p.message_id, b("w-1"));
    assert_eq!(p.content_type, b("text/plain"));
    assert_eq!(p.expiration, b("30000"));
    assert_eq!(p.reply_to, b("resp.dev1"));
    assert_eq!(p.correlation_id, b("req-7"));
    assert_eq!(header(&p, "x-mqtt-topic"), &long("e2e/dev1/temp"));
    assert_eq!(header(&p, "x-mqtt-client-id"), &long("dev1"));
    assert_eq!(header(&p, "x-mqtt-qos"), &FieldValue::I32(1));
    assert_eq!(header(&p, "x-mqtt-retain"), &FieldValue::Bool(true));
    assert_eq!(header(&p, "site"), &long("north"));
    assert_eq!(
        header(&p, "tag"),
        &FieldValue::Array(vec![long("a"), long("b")])
    );
    let q0 = BridgeMessage { qos: 0, ..m };
    let p0 = outbound(&q0, None, HeaderStyle::Warren, "w-2", 0);
    assert_eq!(p0.delivery_mode, Some(1));
    assert!(p0.headers.unwrap().get(b"x-mqtt-client-id").is_none());
}

#[test]
fn rabbitmq_style_headers_are_the_plugins_and_the_rest_is_unchanged() {
    let m = message_with_everything();
    let p = outbound(&m, Some("dev1"), HeaderStyle::Rabbitmq, "w-1", 7);
    let h = p.headers.as_ref().unwrap();
    assert_eq!(header(&p, "x-mqtt-publish-qos"), &FieldValue::I8(1));
    assert_eq!(header(&p, "x-mqtt-dup"), &FieldValue::Bool(false));
    for gone in [
        "x-mqtt-topic",
        "x-mqtt-client-id",
        "x-mqtt-qos",
        "x-mqtt-retain",
    ] {
        assert!(h.get(gone.as_bytes()).is_none(), "{gone}");
    }
    assert_eq!(header(&p, "site"), &long("north"));
    assert_eq!(header(&p, "x-mqtt-payload-format"), &FieldValue::I32(1));
    assert_eq!(p.message_id, Some(Bytes::from_static(b"w-1")));
    assert_eq!(p.delivery_mode, Some(2));
    // Read back (a rule bridging it into MQTT again): the plugin's headers are not user
    // properties.
    let shape = InboundShape {
        topic: &Mapping::Default,
        reply: &Mapping::Default,
        qos: 1,
        retain: false,
    };
    let back = message(b"e2e.dev1.temp", &p, m.payload.clone(), &shape).unwrap();
    assert!(back
        .properties
        .user_properties
        .iter()
        .all(|(k, _)| !k.starts_with("x-mqtt-")));
}

#[test]
fn binary_correlation_data_rides_in_a_header_and_comes_back() {
    let mut m = message_with_everything();
    m.properties.correlation_data = Some(Bytes::from_static(&[0xff, 0x00, 0x01]));
    let p = outbound(&m, None, HeaderStyle::Warren, "w-1", 0);
    assert!(p.correlation_id.is_none());
    let shape = InboundShape {
        topic: &Mapping::Default,
        reply: &Mapping::Default,
        qos: 1,
        retain: false,
    };
    let back = message(b"e2e.dev1.temp", &p, Bytes::from_static(b"x"), &shape).unwrap();
    assert_eq!(
        back.properties.correlation_data.as_deref(),
        Some(&[0xff, 0x00, 0x01][..])
    );
}

#[test]
fn inbound_reads_back_what_outbound_wrote() {
    let m = message_with_everything();
    let p = outbound(&m, Some("dev1"), HeaderStyle::Warren, "w-1", 0);
    let shape = InboundShape {
        topic: &Mapping::Default,
        reply: &Mapping::Default,
        qos: 0,
        retain: false,
    };
    let back = message(b"e2e.dev1.temp", &p, Bytes::from_static(b"21.5"), &shape).unwrap();
    assert_eq!(back.topic, "e2e/dev1/temp");
    assert_eq!(back.qos, 0);
    assert!(!back.retain);
    let bp = &back.properties;
    assert_eq!(bp.payload_format_indicator, Some(1));
    assert_eq!(bp.message_expiry_interval, Some(30));
    assert_eq!(bp.content_type.as_deref(), Some("text/plain"));
    assert_eq!(bp.response_topic.as_deref(), Some("resp/dev1"));
    assert_eq!(bp.correlation_data.as_deref(), Some(&b"req-7"[..]));
    let mut ups = bp.user_properties.clone();
    ups.sort();
    assert_eq!(
        ups,
        vec![
            ("site".to_string(), "north".to_string()),
            ("tag".to_string(), "a".to_string()),
            ("tag".to_string(), "b".to_string()),
        ]
    );
}

#[test]
fn inbound_turns_scalar_headers_into_text_and_skips_tables() {
    let mut h = FieldTable::new();
    h.insert("n", FieldValue::I64(-5));
    h.insert("ok", FieldValue::Bool(false));
    h.insert("t", FieldValue::Table(FieldTable::new()));
    h.insert(b"\xff".as_slice(), FieldValue::from("not a UTF-8 name"));
    let p = BasicProperties {
        headers: Some(h),
        expiration: Some(Bytes::from_static(b"1500")),
        correlation_id: Some(Bytes::from_static(&[0xff, 0])),
        ..BasicProperties::default()
    };
    let shape = InboundShape {
        topic: &Mapping::Default,
        reply: &Mapping::Default,
        qos: 1,
        retain: true,
    };
    let m = message(b"cmd.dev%2E1", &p, Bytes::new(), &shape).unwrap();
    assert_eq!(m.topic, "cmd/dev.1");
    assert!(m.retain);
    assert_eq!(m.properties.message_expiry_interval, Some(2));
    let mut ups = m.properties.user_properties.clone();
    ups.sort();
    assert_eq!(
        ups,
        vec![
            ("n".to_string(), "-5".to_string()),
            ("ok".to_string(), "false".to_string())
        ]
    );
    assert_eq!(
        m.properties.correlation_data.as_deref(),
        Some(&[0xff, 0][..]),
        "a binary correlation-id comes through as bytes"
    );
    assert!(message(b"cmd.a+b", &p, Bytes::new(), &shape).is_err());
    assert!(matches!(
        message(b"cmd.\xff", &p, Bytes::new(), &shape),
        Err(MappingError::NotUtf8)
    ));
}

#[test]
fn many_user_properties_are_grouped_by_name_in_order() {
    let mut m = message_with_everything();
    m.properties.user_properties = (0..20_000)
        .map(|i| (format!("k{}", i % 3), i.to_string()))
        .collect();
    let p = outbound(&m, None, HeaderStyle::Warren, "w-1", 0);
    let h = p.headers.as_ref().unwrap();
    let names: Vec<&[u8]> = h
        .iter()
        .map(|(k, _)| &k[..])
        .filter(|k| k.starts_with(b"k"))
        .collect();
    assert_eq!(names, [&b"k0"[..], b"k1", b"k2"]);
    let FieldValue::Array(k1) = header(&p, "k1") else {
        panic!("an array");
    };
    assert_eq!(k1.len(), 6_667);
    assert_eq!(k1[1], long("4"));
}
