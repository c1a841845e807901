//! Codec tests: byte-literal checks of every normative rule the decoder enforces and every
//! version-specific layout the encoder produces, encode→decode round trips for each packet type
//! at each protocol level, property tests (no panic on arbitrary input, generated round trips) and
//! a differential test against `mqttbytes::v4` for 3.1.1.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::*;
use ProtocolVersion::{V3_1, V3_1_1, V5};

const MAX: u32 = MAX_PACKET_SIZE;
const LIMITS: DecodeLimits = DecodeLimits::new(MAX);
const ALL: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A frame: type/flags byte, remaining length, body.
fn frame(byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte];
    let mut n = body.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string.
fn s(v: &str) -> Vec<u8> {
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v.as_bytes());
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn bs(v: &str) -> ByteString {
    ByteString::from(v.to_owned())
}

/// Decodes `bytes`, which must hold exactly one complete packet.
fn dec(bytes: &[u8], v: Option<ProtocolVersion>) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let p = decode(&mut buf, v, &LIMITS)?.expect("complete packet");
    assert!(buf.is_empty(), "packet not fully consumed");
    Ok(p)
}

fn ok(bytes: &[u8], v: Option<ProtocolVersion>) -> Packet {
    match dec(bytes, v) {
        Ok(p) => p,
        Err(e) => panic!("{bytes:02x?} failed: {e}"),
    }
}

fn malformed(bytes: &[u8], v: Option<ProtocolVersion>, rule: &str) {
    match dec(bytes, v) {
        Err(DecodeError::Malformed { rule: r, .. }) => assert_eq!(r, rule, "{bytes:02x?}"),
        other => panic!("{bytes:02x?}: expected malformed {rule}, got {other:?}"),
    }
}

fn protocol_err(bytes: &[u8], v: Option<ProtocolVersion>, rule: &str) {
    match dec(bytes, v) {
        Err(DecodeError::Protocol { rule: r, .. }) => assert_eq!(r, rule, "{bytes:02x?}"),
        other => panic!("{bytes:02x?}: expected protocol error {rule}, got {other:?}"),
    }
}

fn is_malformed(bytes: &[u8], v: Option<ProtocolVersion>) {
    let r = dec(bytes, v);
    assert!(
        matches!(r, Err(DecodeError::Malformed { .. })),
        "{bytes:02x?}: expected malformed, got {r:?}"
    );
}

fn enc(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    let n = encode(p, v, MAX, &mut out).expect("encodes");
    assert_eq!(n, out.len());
    assert_eq!(encoded_len(p, v), Ok(n));
    out.to_vec()
}

/// Encodes then decodes `p` and checks equality.
fn roundtrip(p: &Packet, v: ProtocolVersion) {
    let bytes = enc(p, v);
    assert_eq!(frame_len(&bytes, MAX), Ok(Some(bytes.len())));
    let state = if matches!(p, Packet::Connect(_)) {
        None
    } else {
        Some(v)
    };
    let back = ok(&bytes, state);
    assert_eq!(&back, p, "round trip at {}", v.label());
}

/// A v5 CONNECT body after the protocol level: flags, keep alive 60, properties, payload.
fn connect5(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = s("MQTT");
    body.push(5);
    body.push(flags);
    body.extend_from_slice(&[0, 60, props.len() as u8]);
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// A 3.1.1 CONNECT.
fn connect4(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = s("MQTT");
    body.extend_from_slice(&[4, flags, 0, 60]);
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

fn v5_publish_props(props: &[u8], topic: &str) -> Vec<u8> {
    let mut body = s(topic);
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(b"hi");
    frame(0x30, &body)
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

#[test]
fn frame_len_incomplete_and_complete() {
    assert_eq!(frame_len(&[], MAX), Ok(None));
    assert_eq!(frame_len(&[0x30], MAX), Ok(None));
    assert_eq!(frame_len(&[0x30, 0x80], MAX), Ok(None));
    assert_eq!(frame_len(&[0x30, 0x80, 0x80, 0x80], MAX), Ok(None));
    assert_eq!(frame_len(&[0xc0, 0x00], MAX), Ok(Some(2)));
    assert_eq!(frame_len(&[0x30, 0x7f], MAX), Ok(Some(129)));
    assert_eq!(frame_len(&[0x30, 0x80, 0x01], MAX), Ok(Some(131)));
    assert_eq!(
        frame_len(&[0x30, 0xff, 0xff, 0xff, 0x7f], MAX),
        Ok(Some(MAX_PACKET_SIZE as usize))
    );
}

#[test]
fn frame_len_refuses_five_byte_remaining_length() {
    let bytes = [0x30, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(matches!(
        frame_len(&bytes, MAX),
        Err(DecodeError::Malformed { .. })
    ));
    // Detected as soon as the fourth length byte still has the continuation bit.
    assert!(frame_len(&bytes[..5], MAX).is_err());
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(decode(&mut buf, Some(V5), &LIMITS).is_err());
}

#[test]
fn frame_len_refuses_oversized_declaration_immediately() {
    // 256 MiB declared, 1 MiB allowed: refused from the 5 header bytes alone.
    let bytes = [0x30, 0xff, 0xff, 0xff, 0x7f];
    let err = frame_len(&bytes, 1 << 20).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { max, .. } if max == 1 << 20));
    assert_eq!(err.reason_code(), 0x95);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        decode(&mut buf, Some(V5), &DecodeLimits::new(1 << 20)),
        Err(DecodeError::TooLarge { .. })
    ));
    // The limit is on the total, fixed header included.
    assert_eq!(frame_len(&[0xc0, 0x00], 2), Ok(Some(2)));
    assert!(frame_len(&[0x30, 0x01], 2).is_err());
}

#[test]
fn decode_incomplete_leaves_buffer_untouched() {
    let full = frame(0x30, &cat(&[&s("a/b"), b"payload"]));
    for cut in 0..full.len() {
        let mut buf = BytesMut::from(&full[..cut]);
        assert_eq!(decode(&mut buf, Some(V3_1_1), &LIMITS), Ok(None));
        assert_eq!(&buf[..], &full[..cut]);
    }
    // Two packets back to back: exactly one is consumed.
    let mut buf = BytesMut::from(&cat(&[&full, &[0xc0, 0x00]])[..]);
    assert!(matches!(
        decode(&mut buf, Some(V3_1_1), &LIMITS),
        Ok(Some(Packet::Publish(_)))
    ));
    assert_eq!(&buf[..], &[0xc0, 0x00]);
    assert_eq!(
        decode(&mut buf, Some(V3_1_1), &LIMITS),
        Ok(Some(Packet::PingReq))
    );
    assert!(buf.is_empty());
}

#[test]
fn fixed_header_type_and_flags() {
    let v = Some(V3_1_1);
    malformed(&[0x00, 0x00], v, "2.1.2");
    malformed(&[0xf0, 0x00], v, "2.1.2");
    malformed(&[0xf0, 0x00], Some(V3_1), "2.1.2");
    ok(&[0xf0, 0x00], Some(V5));
    // PUBREL, SUBSCRIBE, UNSUBSCRIBE need flags 0x2.
    ok(&[0x62, 0x02, 0x00, 0x01], v);
    malformed(&[0x60, 0x02, 0x00, 0x01], v, "2.1.3");
    malformed(
        &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
        v,
        "2.1.3",
    );
    malformed(&[0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], v, "2.1.3");
    // Everything else except PUBLISH needs 0.
    malformed(&[0x42, 0x02, 0x00, 0x01], v, "2.1.3");
    malformed(&[0xc1, 0x00], v, "2.1.3");
    malformed(&[0xd8, 0x00], v, "2.1.3");
    malformed(&[0xe2, 0x00], v, "2.1.3");
    malformed(&[0x21, 0x02, 0x00, 0x00], v, "2.1.3");
}

#[test]
fn only_connect_before_connect() {
    for bytes in [
        &[0xc0u8, 0x00][..],
        &[0x30, 0x04, 0x00, 0x01, b'a', b'x'],
        &[0xf0, 0x00],
    ] {
        protocol_err(bytes, None, "MQTT-3.1.0-1");
    }
    let c = connect4(0x02, &s("id"));
    ok(&c, None);
    protocol_err(&c, Some(V3_1_1), "MQTT-3.1.0-2");
}

#[test]
fn ping_packets_have_no_body() {
    assert_eq!(ok(&[0xc0, 0x00], Some(V5)), Packet::PingReq);
    assert_eq!(ok(&[0xd0, 0x00], Some(V5)), Packet::PingResp);
    is_malformed(&[0xc0, 0x01, 0x00], Some(V5));
    assert_eq!(enc(&Packet::PingReq, V3_1_1), [0xc0, 0x00]);
    assert_eq!(enc(&Packet::PingResp, V5), [0xd0, 0x00]);
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_protocol_levels() {
    let Packet::Connect(c) = ok(&connect4(0x02, &s("id")), None) else {
        panic!()
    };
    assert_eq!(c.protocol, V3_1_1);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "id");

    let Packet::Connect(c) = ok(&connect5(0x00, &[], &s("")), None) else {
        panic!()
    };
    assert_eq!(c.protocol, V5);
    assert!(!c.clean_start);
    assert_eq!(c.client_id, "");

    let mut body = s("MQIsdp");
    body.extend_from_slice(&[3, 0x02, 0, 10]);
    body.extend_from_slice(&s("a-very-long-client-identifier-over-23"));
    let Packet::Connect(c) = ok(&frame(0x10, &body), None) else {
        panic!()
    };
    assert_eq!(c.protocol, V3_1);

    for (name, level) in [
        ("MQTT", 3),
        ("MQTT", 6),
        ("MQIsdp", 4),
        ("mqtt", 4),
        ("", 4),
    ] {
        let mut body = s(name);
        body.extend_from_slice(&[level, 0x02, 0, 10]);
        body.extend_from_slice(&s("id"));
        let err = dec(&frame(0x10, &body), None).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnsupportedProtocol {
                name: name.to_owned(),
                level
            }
        );
        assert_eq!(err.reason_code(), 0x84);
    }
}

#[test]
fn connect_flag_rules() {
    malformed(&connect4(0x03, &s("id")), None, "MQTT-3.1.2-3");
    // Will flag 0: will QoS and will retain must be 0.
    malformed(&connect4(0x0a, &s("id")), None, "MQTT-3.1.2-11");
    malformed(&connect4(0x12, &s("id")), None, "MQTT-3.1.2-11");
    malformed(&connect4(0x22, &s("id")), None, "MQTT-3.1.2-13");
    // Will QoS 3.
    let will = cat(&[&s("id"), &s("w/t"), &s("bye")]);
    malformed(&connect4(0x1e, &will), None, "MQTT-3.1.2-12");
    let Packet::Connect(c) = ok(&connect4(0x36, &will), None) else {
        panic!()
    };
    let w = c.will.expect("will");
    assert_eq!((w.topic.as_ref(), &w.payload[..]), ("w/t", &b"bye"[..]));
    assert_eq!((w.qos, w.retain), (QoS::ExactlyOnce, true));
    // A will topic with a wildcard decodes: the broker refuses it with CONNACK 0x90.
    let bad = cat(&[&s("id"), &s("w/+"), &s("bye")]);
    let Packet::Connect(c) = ok(&connect4(0x06, &bad), None) else {
        panic!()
    };
    assert_eq!(c.will.expect("will").topic, "w/+");
}

#[test]
fn connect_password_without_username() {
    let payload = cat(&[&s("id"), &s("secret")]);
    malformed(&connect4(0x42, &payload), None, "MQTT-3.1.2-22");
    let Packet::Connect(c) = ok(&connect5(0x42, &[], &payload), None) else {
        panic!()
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
    let both = cat(&[&s("id"), &s("user"), &s("pw")]);
    let Packet::Connect(c) = ok(&connect4(0xc2, &both), None) else {
        panic!()
    };
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn connect_length_must_match_fields() {
    malformed(&connect4(0x02, &cat(&[&s("id"), &[0]])), None, "3.1.3");
    // Username flag set but no username.
    is_malformed(&connect4(0x82, &s("id")), None);
    // Client id longer than the packet.
    is_malformed(&connect4(0x02, &[0x00, 0x05, b'a']), None);
    is_malformed(&connect4(0x02, &[]), None);
    // Truncated variable header.
    is_malformed(&frame(0x10, &[0x00, 0x04, b'M', b'Q']), None);
}

#[test]
fn connect_strings_are_utf8_without_nul() {
    malformed(
        &connect4(0x02, &[0x00, 0x02, b'a', 0x00]),
        None,
        "MQTT-1.5.4-2",
    );
    malformed(
        &connect4(0x02, &[0x00, 0x02, 0xc3, 0x28]),
        None,
        "MQTT-1.5.4-1",
    );
    // UTF-16 surrogate encoded in UTF-8 is ill-formed.
    malformed(
        &connect4(0x02, &[0x00, 0x03, 0xed, 0xa0, 0x80]),
        None,
        "MQTT-1.5.4-1",
    );
    let Packet::Connect(c) = ok(&connect4(0x02, &s("\u{1f600}")), None) else {
        panic!()
    };
    assert_eq!(c.client_id, "\u{1f600}");
}

#[test]
fn connect_v5_will_properties_come_before_will_topic() {
    // Will delay 0x18 = 30, then topic, then payload.
    let payload = cat(&[
        &s("id"),
        &[0x05, 0x18, 0x00, 0x00, 0x00, 0x1e],
        &s("w"),
        &s("x"),
    ]);
    let Packet::Connect(c) = ok(&connect5(0x04, &[], &payload), None) else {
        panic!()
    };
    let w = c.will.expect("will");
    assert_eq!(w.properties.will_delay_interval, Some(30));
    assert_eq!(w.topic, "w");
    // Session expiry not allowed in will properties.
    let bad = cat(&[&s("id"), &[0x05, 0x11, 0, 0, 0, 1], &s("w"), &s("x")]);
    malformed(&connect5(0x04, &[], &bad), None, "2.2.2.2");
}

#[test]
fn connect_v5_properties() {
    let id = s("id");
    let p = |props: &[u8]| connect5(0x02, props, &id);
    let Packet::Connect(c) = ok(
        &p(&[
            0x11, 0, 0, 0, 10, // session expiry
            0x21, 0, 5, // receive maximum
            0x27, 0, 0, 1, 0, // maximum packet size
            0x22, 0, 3, // topic alias maximum
            0x19, 1, 0x17, 0, // request response / problem information
            0x26, 0, 1, b'k', 0, 1, b'v', 0x26, 0, 1, b'k', 0, 1, b'w', // user properties
            0x15, 0, 1, b'm', 0x16, 0, 1, 0xff, // authentication
        ]),
        None,
    ) else {
        panic!()
    };
    let props = &c.properties;
    assert_eq!(props.session_expiry_interval, Some(10));
    assert_eq!(props.receive_maximum, Some(5));
    assert_eq!(props.maximum_packet_size, Some(256));
    assert_eq!(props.topic_alias_maximum, Some(3));
    assert_eq!(props.request_response_information, Some(1));
    assert_eq!(props.request_problem_information, Some(0));
    assert_eq!(
        props.user_properties.iter().collect::<Vec<_>>(),
        [("k", "v"), ("k", "w")]
    );
    assert_eq!(props.authentication_method.as_deref(), Some("m"));

    protocol_err(&p(&[0x21, 0, 0]), None, "3.1.2.11.3");
    protocol_err(&p(&[0x27, 0, 0, 0, 0]), None, "3.1.2.11.4");
    protocol_err(&p(&[0x19, 2]), None, "3.1.2.11.6");
    protocol_err(&p(&[0x17, 2]), None, "3.1.2.11.7");
    protocol_err(&p(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]), None, "2.2.2.2");
    protocol_err(&p(&[0x16, 0, 1, 0xff]), None, "3.1.2.11.10");
    // Topic alias is not a CONNECT property; 0x05 is no property at all.
    malformed(&p(&[0x23, 0, 1]), None, "2.2.2.2");
    malformed(&p(&[0x05, 0]), None, "2.2.2.2");
    // A property running past the property length.
    is_malformed(&connect5(0x02, &[0x11, 0, 0], &[0, 0, 0, 0]), None);
}

#[test]
fn property_length_must_fit() {
    // Property length 9 but only 2 bytes follow.
    let body = cat(&[&s("t"), &[9, 0x01, 0x00]]);
    malformed(&frame(0x30, &body), Some(V5), "2.2.2.1");
    // Property length as a 5-byte varint.
    let body = cat(&[&s("t"), &[0x80, 0x80, 0x80, 0x80, 0x01]]);
    malformed(&frame(0x30, &body), Some(V5), "1.5.5");
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn connack_v5_without_properties() {
    let p = Packet::ConnAck(ConnAck::default());
    assert_eq!(enc(&p, V5), [0x20, 0x03, 0x00, 0x00, 0x00]);
    assert_eq!(ok(&[0x20, 0x03, 0x00, 0x00, 0x00], Some(V5)), p);
    let p = Packet::ConnAck(ConnAck {
        session_present: true,
        reason: ConnectReason::NotAuthorized,
        properties: ConnAckProperties::default(),
    });
    assert_eq!(enc(&p, V5), [0x20, 0x03, 0x01, 0x87, 0x00]);
}

#[test]
fn connack_v3_return_codes() {
    let ack = |reason| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: ConnAckProperties {
                reason_string: Some(bs("not written")),
                ..Default::default()
            },
        })
    };
    for v in [V3_1, V3_1_1] {
        assert_eq!(
            enc(&ack(ConnectReason::Success), v),
            [0x20, 0x02, 0x00, 0x00]
        );
        assert_eq!(
            enc(&ack(ConnectReason::Banned), v),
            [0x20, 0x02, 0x00, 0x05]
        );
        assert_eq!(
            enc(&ack(ConnectReason::ServerBusy), v),
            [0x20, 0x02, 0x00, 0x03]
        );
        let Packet::ConnAck(a) = ok(&[0x20, 0x02, 0x01, 0x04], Some(v)) else {
            panic!()
        };
        assert!(a.session_present);
        assert_eq!(a.reason, ConnectReason::BadUserNameOrPassword);
        malformed(&[0x20, 0x02, 0x00, 0x06], Some(v), "3.2.2.3");
        malformed(&[0x20, 0x02, 0x02, 0x00], Some(v), "MQTT-3.2.2-1");
        is_malformed(&[0x20, 0x03, 0x00, 0x00, 0x00], Some(v));
    }
}

#[test]
fn connack_v5_property_ranges() {
    let c = |props: &[u8]| frame(0x20, &cat(&[&[0, 0, props.len() as u8], props]));
    let Packet::ConnAck(a) = ok(
        &c(&[0x24, 1, 0x25, 0, 0x28, 1, 0x29, 0, 0x2a, 1, 0x13, 0, 30]),
        Some(V5),
    ) else {
        panic!()
    };
    assert_eq!(a.properties.maximum_qos, Some(1));
    assert_eq!(a.properties.server_keep_alive, Some(30));
    protocol_err(&c(&[0x24, 2]), Some(V5), "3.2.2.3.4");
    protocol_err(&c(&[0x25, 2]), Some(V5), "3.2.2.3.5");
    protocol_err(&c(&[0x28, 2]), Some(V5), "3.2.2.3.11");
    protocol_err(&c(&[0x29, 2]), Some(V5), "3.2.2.3.12");
    protocol_err(&c(&[0x2a, 2]), Some(V5), "3.2.2.3.13");
    protocol_err(&c(&[0x21, 0, 0]), Some(V5), "3.2.2.3.3");
    protocol_err(&c(&[0x27, 0, 0, 0, 0]), Some(V5), "3.2.2.3.6");
    malformed(&c(&[0x17, 1]), Some(V5), "2.2.2.2");
    malformed(&frame(0x20, &[0, 0x01, 0]), Some(V5), "3.2.2.2");
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

#[test]
fn publish_qos0_is_zero_copy() {
    let bytes = frame(0x31, &cat(&[&s("a/b"), b"payload"]));
    let mut buf = BytesMut::from(&bytes[..]);
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, Some(V3_1_1), &LIMITS).unwrap() else {
        panic!()
    };
    assert_eq!(p.topic, "a/b");
    assert_eq!(&p.payload[..], b"payload");
    assert!(p.retain && !p.dup);
    assert_eq!((p.qos, p.pkid), (QoS::AtMostOnce, 0));
    let range = base..base + bytes.len();
    assert!(range.contains(&(p.topic.as_ptr() as usize)));
    assert!(range.contains(&(p.payload.as_ptr() as usize)));
}

#[test]
fn publish_flags_and_pkid() {
    let v = Some(V3_1_1);
    let body = cat(&[&s("t"), &[0, 1], b"x"]);
    malformed(&frame(0x36, &body), v, "MQTT-3.3.1-4");
    malformed(&frame(0x38, &s("t")), v, "MQTT-3.3.1-2");
    let Packet::Publish(p) = ok(&frame(0x3d, &body), v) else {
        panic!()
    };
    assert!(p.dup && p.retain);
    assert_eq!((p.qos, p.pkid), (QoS::ExactlyOnce, 1));
    assert_eq!(&p.payload[..], b"x");
    malformed(&frame(0x32, &cat(&[&s("t"), &[0, 0]])), v, "MQTT-2.2.1-3");
    // Missing packet id.
    is_malformed(&frame(0x32, &s("t")), v);
    // Empty payload.
    let Packet::Publish(p) = ok(&frame(0x30, &s("t")), v) else {
        panic!()
    };
    assert!(p.payload.is_empty());
}

#[test]
fn publish_topic_rules() {
    for v in ALL {
        let publish = |topic: &str| {
            if v.is_v5() {
                v5_publish_props(&[], topic)
            } else {
                frame(0x30, &s(topic))
            }
        };
        for topic in ["a/+", "#", "a/#", "+", "a+"] {
            malformed(&publish(topic), Some(v), "MQTT-3.3.2-2");
        }
        malformed(&publish("a\0"), Some(v), "MQTT-1.5.4-2");
        ok(&publish("a/b"), Some(v));
    }
    malformed(&frame(0x30, &s("")), Some(V3_1_1), "MQTT-4.7.3-1");
    malformed(&frame(0x30, &s("")), Some(V3_1), "MQTT-4.7.3-1");
    protocol_err(&v5_publish_props(&[], ""), Some(V5), "3.3.2.3.4");
    let Packet::Publish(p) = ok(&v5_publish_props(&[0x23, 0, 7], ""), Some(V5)) else {
        panic!()
    };
    assert_eq!(p.properties.topic_alias, Some(7));
    assert_eq!(p.topic, "");
    // Alias 0 decodes; the receiver's alias table refuses it with 0x94 (protocol::alias).
    let Packet::Publish(p) = ok(&v5_publish_props(&[0x23, 0, 0], "t"), Some(V5)) else {
        panic!()
    };
    assert_eq!(p.properties.topic_alias, Some(0));
}

#[test]
fn publish_topic_level_limit() {
    let at_limit = vec!["a"; topic::MAX_TOPIC_LEVELS].join("/");
    let over = format!("{at_limit}/a");
    for v in ALL {
        let publish = |topic: &str| {
            if v.is_v5() {
                v5_publish_props(&[], topic)
            } else {
                frame(0x30, &s(topic))
            }
        };
        ok(&publish(&at_limit), Some(v));
        for topic in [over.as_str(), &"/".repeat(65_000)] {
            let err = dec(&publish(topic), Some(v)).unwrap_err();
            assert_eq!(
                err,
                DecodeError::TopicTooDeep {
                    max: topic::MAX_TOPIC_LEVELS
                }
            );
            assert_eq!(err.reason_code(), reason::TOPIC_NAME_INVALID);
        }
    }
    // A response topic is a topic name too.
    let mut props = vec![0x08];
    props.extend_from_slice(&s(&over));
    let mut body = s("t");
    let mut len = Vec::new();
    len.extend_from_slice(&[0x80 | (props.len() & 0x7f) as u8, (props.len() >> 7) as u8]);
    body.extend_from_slice(&len);
    body.extend_from_slice(&props);
    protocol_err(&frame(0x30, &body), Some(V5), "MQTT-3.3.2-14");
}

#[test]
fn deep_filters_are_left_to_the_handler() {
    // The decoder checks filter syntax only; the SUBSCRIBE handler answers 0x8F per filter.
    let deep = format!("{}/#", vec!["a"; 300].join("/"));
    let Packet::Subscribe(sub) = ok(&sub4(&deep, 1), Some(V3_1_1)) else {
        panic!()
    };
    assert_eq!(sub.filters[0].0, deep);
    assert!(!topic::within_level_limit(&sub.filters[0].0));
}

#[test]
fn publish_v5_properties() {
    let Packet::Publish(p) = ok(
        &v5_publish_props(
            &[
                0x02, 0, 0, 0, 0, // message expiry 0 is valid
                0x01, 1, // payload format indicator
                0x0b, 0x01, 0x0b, 0xff, 0x7f, // two subscription identifiers
                0x26, 0, 1, b'a', 0, 0, 0x26, 0, 1, b'a', 0, 0, // repeated user property
                0x03, 0, 1, b'c', 0x08, 0, 1, b'r', 0x09, 0, 2, 1, 2,
            ],
            "t",
        ),
        Some(V5),
    ) else {
        panic!()
    };
    let props = &p.properties;
    assert_eq!(props.message_expiry_interval, Some(0));
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.subscription_identifiers, [1, 16_383]);
    assert_eq!(
        props.user_properties.iter().collect::<Vec<_>>(),
        [("a", ""), ("a", "")]
    );
    assert_eq!(props.content_type.as_deref(), Some("c"));
    assert_eq!(props.response_topic.as_deref(), Some("r"));
    assert_eq!(props.correlation_data.as_deref(), Some(&[1u8, 2][..]));
    assert_eq!(&p.payload[..], b"hi");

    protocol_err(&v5_publish_props(&[0x01, 2], "t"), Some(V5), "3.3.2.3.2");
    protocol_err(&v5_publish_props(&[0x0b, 0], "t"), Some(V5), "3.3.2.3.8");
    protocol_err(
        &v5_publish_props(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1], "t"),
        Some(V5),
        "2.2.2.2",
    );
    protocol_err(
        &v5_publish_props(&[0x23, 0, 1, 0x23, 0, 2], "t"),
        Some(V5),
        "2.2.2.2",
    );
    protocol_err(
        &v5_publish_props(&[0x08, 0, 1, b'#'], "t"),
        Some(V5),
        "MQTT-3.3.2-14",
    );
    malformed(
        &v5_publish_props(&[0x11, 0, 0, 0, 1], "t"),
        Some(V5),
        "2.2.2.2",
    );
    malformed(&v5_publish_props(&[0x00], "t"), Some(V5), "2.2.2.2");
    malformed(&v5_publish_props(&[0x7f], "t"), Some(V5), "2.2.2.2");
}

// ---------------------------------------------------------------------------------------------
// PUBACK family
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// User properties: compact, copied, limited
// ---------------------------------------------------------------------------------------------

/// A v5 PUBLISH "t" whose properties are `props` (any length), payload "hi".
fn v5_publish_long_props(props: &[u8]) -> Vec<u8> {
    let mut body = s("t");
    let mut n = props.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            body.push(b);
            break;
        }
        body.push(b | 0x80);
    }
    body.extend_from_slice(props);
    body.extend_from_slice(b"hi");
    frame(0x30, &body)
}

/// `n` user properties `k`=`v` on the wire.
fn user_pairs(n: usize) -> Vec<u8> {
    [0x26, 0, 1, b'k', 0, 1, b'v'].repeat(n)
}

#[test]
fn decoded_user_properties_take_their_wire_size_and_own_it() {
    // 100,000 one-byte pairs: 700,000 bytes on the wire. As one (ByteString, ByteString) a
    // pair they took 64 bytes each (6.4 MB) and pinned the whole read buffer.
    let n = 100_000;
    let pairs = user_pairs(n);
    let bytes = v5_publish_long_props(&pairs);
    let mut buf = BytesMut::from(&bytes[..]);
    let read_buffer = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let limits = DecodeLimits {
        max_user_properties: n,
        ..LIMITS
    };
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, Some(V5), &limits) else {
        panic!("decodes")
    };
    let users = &p.properties.user_properties;
    assert_eq!(users.len(), n);
    assert_eq!(users.wire_len(), pairs.len());
    let held = std::mem::size_of::<UserProperties>() + users.wire_len();
    assert!(
        held <= 2 * pairs.len(),
        "{held} bytes held for {} on the wire",
        pairs.len()
    );
    assert!(users.iter().all(|pair| pair == ("k", "v")));
    // The payload is a slice of the read buffer; the properties are not.
    assert!(read_buffer.contains(&(p.payload.as_ptr() as usize)));
    let blob = users.wire().expect("encodable").as_ptr() as usize;
    assert!(!read_buffer.contains(&blob));
    // Encoding copies the blob back: the same bytes.
    assert_eq!(enc(&Packet::Publish(p), V5), bytes);
}

#[test]
fn user_property_identifier_is_stored_canonically() {
    // 0x26 written as a two-byte variable byte integer (0xa6 0x00) decodes like 0x26.
    let long_id = v5_publish_long_props(&[0xa6, 0x00, 0, 1, b'k', 0, 1, b'v']);
    let short_id = v5_publish_long_props(&user_pairs(1));
    assert_eq!(ok(&long_id, Some(V5)), ok(&short_id, Some(V5)));
}

#[test]
fn user_property_strings_are_checked() {
    malformed(
        &v5_publish_long_props(&[0x26, 0, 1, 0xff, 0, 0]),
        Some(V5),
        "MQTT-1.5.4-1",
    );
    malformed(
        &v5_publish_long_props(&[0x26, 0, 0, 0, 1, 0]),
        Some(V5),
        "MQTT-1.5.4-2",
    );
    // A value running past the property section.
    is_malformed(
        &v5_publish_long_props(&[0x26, 0, 1, b'k', 0, 9, b'v']),
        Some(V5),
    );
}

fn too_many(bytes: &[u8], v: Option<ProtocolVersion>, max: usize) {
    let limits = DecodeLimits {
        max_user_properties: max,
        ..LIMITS
    };
    let mut buf = BytesMut::from(bytes);
    let err = decode(&mut buf, v, &limits).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooManyUserProperties { max },
        "{bytes:02x?}"
    );
    assert_eq!(err.reason_code(), reason::QUOTA_EXCEEDED);
    assert!(err.to_string().contains("max_user_properties"), "{err}");
}

fn within(bytes: &[u8], v: Option<ProtocolVersion>, max: usize) -> Packet {
    let limits = DecodeLimits {
        max_user_properties: max,
        ..LIMITS
    };
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, v, &limits) {
        Ok(Some(p)) => p,
        other => panic!("{bytes:02x?}: {other:?}"),
    }
}

#[test]
fn user_property_limit_per_packet() {
    assert_eq!(
        DecodeLimits::new(7).max_user_properties,
        DecodeLimits::DEFAULT_MAX_USER_PROPERTIES
    );
    assert_eq!(DecodeLimits::DEFAULT_MAX_USER_PROPERTIES, 128);
    let default = DecodeLimits::DEFAULT_MAX_USER_PROPERTIES;
    // PUBLISH at and over the default.
    ok(&v5_publish_long_props(&user_pairs(default)), Some(V5));
    too_many(
        &v5_publish_long_props(&user_pairs(default + 1)),
        Some(V5),
        default,
    );
    // Checked at the first pair over, before the rest is read: the garbage after it is
    // never looked at.
    let mut over_then_garbage = user_pairs(2);
    over_then_garbage.extend_from_slice(&[0x26, 0xff]);
    too_many(&v5_publish_long_props(&over_then_garbage), Some(V5), 1);
    too_many(&v5_publish_long_props(&user_pairs(1)), Some(V5), 0);
    within(&v5_publish_long_props(&[]), Some(V5), 0);

    let two = user_pairs(2);
    let with_len = |props: &[u8]| cat(&[&[props.len() as u8], props]);
    let packets: Vec<Vec<u8>> = vec![
        // PUBACK, PUBREL: pkid 1, reason 0, properties.
        frame(0x40, &cat(&[&[0, 1, 0], &with_len(&two)])),
        frame(0x62, &cat(&[&[0, 1, 0], &with_len(&two)])),
        // SUBSCRIBE: pkid 1, properties, filter "a" QoS 0.
        frame(0x82, &cat(&[&[0, 1], &with_len(&two), &s("a"), &[0]])),
        // SUBACK, UNSUBACK: pkid 1, properties, reason 0.
        frame(0x90, &cat(&[&[0, 1], &with_len(&two), &[0]])),
        frame(0xb0, &cat(&[&[0, 1], &with_len(&two), &[0]])),
        // UNSUBSCRIBE: pkid 1, properties, filter "a".
        frame(0xa2, &cat(&[&[0, 1], &with_len(&two), &s("a")])),
        // DISCONNECT: reason 0, properties.
        frame(0xe0, &cat(&[&[0], &with_len(&two)])),
        // AUTH: reason 0x18, method "m", properties.
        frame(
            0xf0,
            &cat(&[&[0x18], &with_len(&cat(&[&[0x15], &s("m"), &two]))]),
        ),
        // CONNACK: flags 0, reason 0, properties.
        frame(0x20, &cat(&[&[0, 0], &with_len(&two)])),
    ];
    for bytes in &packets {
        within(bytes, Some(V5), 2);
        too_many(bytes, Some(V5), 1);
    }
}

#[test]
fn user_property_limit_counts_connect_and_will_together() {
    let one = user_pairs(1);
    // Flags: clean start, will flag; one pair in CONNECT, one in the will properties.
    let connect = connect5(
        0x06,
        &one,
        &cat(&[&s("id"), &[one.len() as u8], &one, &s("w/t"), &s("bye")]),
    );
    let Packet::Connect(c) = within(&connect, None, 2) else {
        panic!()
    };
    assert_eq!(c.properties.user_properties.len(), 1);
    assert_eq!(c.will.expect("will").properties.user_properties.len(), 1);
    too_many(&connect, None, 1);
}

#[test]
fn pub_resp_v3() {
    for v in [V3_1, V3_1_1] {
        let p = Packet::PubAck(PubResp {
            pkid: 7,
            reason: 0x80,
            properties: AckProperties::default(),
        });
        assert_eq!(enc(&p, v), [0x40, 0x02, 0x00, 0x07]);
        assert_eq!(
            enc(&Packet::PubRel(PubResp::new(7)), v),
            [0x62, 0x02, 0x00, 0x07]
        );
        assert_eq!(
            ok(&[0x50, 0x02, 0x00, 0x07], Some(v)),
            Packet::PubRec(PubResp::new(7))
        );
        is_malformed(&[0x40, 0x03, 0x00, 0x07, 0x00], Some(v));
        malformed(&[0x70, 0x02, 0x00, 0x00], Some(v), "MQTT-2.2.1-3");
        is_malformed(&[0x40, 0x01, 0x00], Some(v));
    }
}

#[test]
fn pub_resp_v5_lengths() {
    let v = Some(V5);
    assert_eq!(
        enc(&Packet::PubAck(PubResp::new(1)), V5),
        [0x40, 0x02, 0x00, 0x01]
    );
    let with_reason = PubResp {
        pkid: 1,
        reason: 0x10,
        properties: AckProperties::default(),
    };
    assert_eq!(
        enc(&Packet::PubAck(with_reason.clone()), V5),
        [0x40, 0x03, 0x00, 0x01, 0x10]
    );
    let with_props = PubResp {
        pkid: 1,
        reason: 0,
        properties: AckProperties {
            reason_string: Some(bs("r")),
            user_properties: UserProperties::default(),
        },
    };
    assert_eq!(
        enc(&Packet::PubComp(with_props.clone()), V5),
        [0x70, 0x08, 0x00, 0x01, 0x00, 0x04, 0x1f, 0x00, 0x01, b'r']
    );
    assert_eq!(
        ok(&[0x40, 0x02, 0x00, 0x01], v),
        Packet::PubAck(PubResp::new(1))
    );
    assert_eq!(
        ok(&[0x40, 0x03, 0x00, 0x01, 0x10], v),
        Packet::PubAck(with_reason.clone())
    );
    assert_eq!(
        ok(&[0x40, 0x04, 0x00, 0x01, 0x10, 0x00], v),
        Packet::PubAck(with_reason)
    );
    // Reason codes are checked per packet type.
    malformed(&[0x40, 0x03, 0x00, 0x01, 0x92], v, "3.4.2.1");
    ok(&[0x62, 0x03, 0x00, 0x01, 0x92], v);
    malformed(&[0x62, 0x03, 0x00, 0x01, 0x10], v, "3.4.2.1");
    // Only reason string and user properties.
    malformed(
        &[0x40, 0x06, 0x00, 0x01, 0x00, 0x02, 0x01, 0x00],
        v,
        "2.2.2.2",
    );
    // Trailing bytes after the properties.
    malformed(&[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], v, "3.4.2");
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK
// ---------------------------------------------------------------------------------------------

fn sub4(filter: &str, opts: u8) -> Vec<u8> {
    frame(0x82, &cat(&[&[0, 1], &s(filter), &[opts]]))
}

fn sub5(props: &[u8], filter: &str, opts: u8) -> Vec<u8> {
    frame(
        0x82,
        &cat(&[&[0, 1, props.len() as u8], props, &s(filter), &[opts]]),
    )
}

#[test]
fn subscribe_rules() {
    let v4 = Some(V3_1_1);
    let Packet::Subscribe(p) = ok(
        &frame(0x82, &cat(&[&[0, 9], &s("a/+"), &[1], &s("#"), &[2]])),
        v4,
    ) else {
        panic!()
    };
    assert_eq!(p.pkid, 9);
    assert_eq!(p.filters.len(), 2);
    assert_eq!(p.filters[1].1.qos, QoS::ExactlyOnce);

    protocol_err(&frame(0x82, &[0, 1]), v4, "MQTT-3.8.3-3");
    protocol_err(&frame(0x82, &[0, 1, 0]), Some(V5), "MQTT-3.8.3-3");
    malformed(
        &frame(0x82, &cat(&[&[0, 0], &s("a"), &[0]])),
        v4,
        "MQTT-2.2.1-3",
    );
    for bad in ["a+", "a/#/b", "#a", "", "a\0"] {
        is_malformed(&sub4(bad, 0), v4);
        is_malformed(&sub5(&[], bad, 0), Some(V5));
    }
    ok(&sub4("$share/g/a/#", 0), v4);
    // A bad share name is the SUBACK's business (0x8F); a bad filter after it is malformed.
    ok(&sub4("$share/g+/a", 0), v4);
    ok(&sub5(&[], "$share//a", 0), Some(V5));
    is_malformed(&sub4("$share/g/a+", 0), v4);
    // Options byte.
    malformed(&sub4("a", 0x04), v4, "MQTT-3.8.3-4");
    malformed(&sub4("a", 0x80), v4, "MQTT-3.8.3-4");
    malformed(&sub4("a", 0x03), v4, "3.8.3.1");
    malformed(&sub5(&[], "a", 0x40), Some(V5), "MQTT-3.8.3-5");
    malformed(&sub5(&[], "a", 0x80), Some(V5), "MQTT-3.8.3-5");
    malformed(&sub5(&[], "a", 0x30), Some(V5), "3.8.3.1");
    malformed(&sub5(&[], "a", 0x03), Some(V5), "3.8.3.1");
    let Packet::Subscribe(p) = ok(&sub5(&[], "a", 0x2e), Some(V5)) else {
        panic!()
    };
    let o = p.filters[0].1;
    assert_eq!(
        (o.qos, o.no_local, o.retain_as_published, o.retain_handling),
        (QoS::ExactlyOnce, true, true, 2)
    );
    protocol_err(&sub5(&[], "$share/g/a", 0x04), Some(V5), "MQTT-3.8.3-4");
    // Filter without options byte.
    is_malformed(&frame(0x82, &cat(&[&[0, 1], &s("a")])), v4);
}

#[test]
fn subscribe_identifier() {
    let v = Some(V5);
    let Packet::Subscribe(p) = ok(&sub5(&[0x0b, 0xff, 0xff, 0xff, 0x7f], "a", 0), v) else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifier, Some(268_435_455));
    protocol_err(&sub5(&[0x0b, 0x00], "a", 0), v, "3.8.2.1.2");
    protocol_err(&sub5(&[0x0b, 0x01, 0x0b, 0x02], "a", 0), v, "2.2.2.2");
    malformed(
        &sub5(&[0x0b, 0xff, 0xff, 0xff, 0xff, 0x01], "a", 0),
        v,
        "1.5.5",
    );
    malformed(&sub5(&[0x0b, 0xff], "a", 0), v, "1.5");
    malformed(&sub5(&[0x01, 0x00], "a", 0), v, "2.2.2.2");
    let enc_err = encode(
        &Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![(bs("a"), SubscriptionOptions::default())],
            properties: SubscribeProperties {
                subscription_identifier: Some(268_435_456),
                user_properties: UserProperties::default(),
            },
        }),
        V5,
        MAX,
        &mut BytesMut::new(),
    );
    assert!(enc_err.is_err());
}

#[test]
fn suback_layouts() {
    let p = Packet::SubAck(SubAck {
        pkid: 1,
        reasons: vec![0x00, 0x01, 0x87],
        properties: AckProperties::default(),
    });
    assert_eq!(enc(&p, V3_1_1), [0x90, 0x05, 0x00, 0x01, 0x00, 0x01, 0x80]);
    assert_eq!(
        enc(&p, V5),
        [0x90, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x87]
    );
    malformed(&[0x90, 0x03, 0x00, 0x01, 0x87], Some(V3_1_1), "3.9.3");
    malformed(&[0x90, 0x03, 0x00, 0x01, 0x03], Some(V3_1_1), "3.9.3");
    malformed(&[0x90, 0x02, 0x00, 0x01], Some(V3_1_1), "3.9.3");
    malformed(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x11], Some(V5), "3.9.3");
}

#[test]
fn unsubscribe_rules() {
    let v4 = Some(V3_1_1);
    let Packet::Unsubscribe(u) = ok(&frame(0xa2, &cat(&[&[0, 3], &s("a/#"), &s("b")])), v4) else {
        panic!()
    };
    assert_eq!(u.pkid, 3);
    assert_eq!(u.filters, [bs("a/#"), bs("b")]);
    protocol_err(&frame(0xa2, &[0, 3]), v4, "MQTT-3.10.3-2");
    protocol_err(&frame(0xa2, &[0, 3, 0]), Some(V5), "MQTT-3.10.3-2");
    malformed(&frame(0xa2, &cat(&[&[0, 0], &s("a")])), v4, "MQTT-2.2.1-3");
    malformed(&frame(0xa2, &cat(&[&[0, 1], &s("a/#/b")])), v4, "4.7.1");
    malformed(&frame(0xa2, &cat(&[&[0, 1, 0], &s("")])), Some(V5), "4.7.1");
    // Only user properties in v5 UNSUBSCRIBE.
    malformed(
        &frame(0xa2, &cat(&[&[0, 1, 2, 0x1f, 0], &s("a")])),
        Some(V5),
        "1.5",
    );
    malformed(
        &frame(0xa2, &cat(&[&[0, 1, 3, 0x1f, 0, 0], &s("a")])),
        Some(V5),
        "2.2.2.2",
    );
}

#[test]
fn unsuback_layouts() {
    let p = Packet::UnsubAck(UnsubAck {
        pkid: 2,
        reasons: vec![0x00, 0x11],
        properties: AckProperties::default(),
    });
    assert_eq!(enc(&p, V3_1_1), [0xb0, 0x02, 0x00, 0x02]);
    assert_eq!(enc(&p, V5), [0xb0, 0x05, 0x00, 0x02, 0x00, 0x00, 0x11]);
    let Packet::UnsubAck(u) = ok(&[0xb0, 0x02, 0x00, 0x02], Some(V3_1_1)) else {
        panic!()
    };
    assert!(u.reasons.is_empty());
    is_malformed(&[0xb0, 0x03, 0x00, 0x02, 0x00], Some(V3_1_1));
    malformed(&[0xb0, 0x04, 0x00, 0x02, 0x00, 0x01], Some(V5), "3.11.3");
    malformed(&[0xb0, 0x03, 0x00, 0x02, 0x00], Some(V5), "3.11.3");
}

// ---------------------------------------------------------------------------------------------
// DISCONNECT / AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn disconnect_layouts() {
    let normal = Packet::Disconnect(Disconnect::default());
    let shutting_down = Packet::Disconnect(Disconnect {
        reason: reason::SERVER_SHUTTING_DOWN,
        properties: DisconnectProperties::default(),
    });
    assert_eq!(enc(&normal, V5), [0xe0, 0x00]);
    assert_eq!(enc(&shutting_down, V5), [0xe0, 0x01, 0x8b]);
    assert_eq!(enc(&shutting_down, V3_1_1), [0xe0, 0x00]);
    assert_eq!(enc(&shutting_down, V3_1), [0xe0, 0x00]);
    assert_eq!(ok(&[0xe0, 0x00], Some(V5)), normal);
    assert_eq!(ok(&[0xe0, 0x01, 0x8b], Some(V5)), shutting_down);
    assert_eq!(ok(&[0xe0, 0x02, 0x8b, 0x00], Some(V5)), shutting_down);
    assert_eq!(ok(&[0xe0, 0x00], Some(V3_1_1)), normal);
    is_malformed(&[0xe0, 0x01, 0x00], Some(V3_1_1));
    malformed(&[0xe0, 0x01, 0x01], Some(V5), "3.14.2.1");
    let with_props = Packet::Disconnect(Disconnect {
        reason: 0,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    });
    assert_eq!(
        enc(&with_props, V5),
        [0xe0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 0]
    );
    malformed(
        &[0xe0, 0x05, 0x00, 0x03, 0x23, 0x00, 0x01],
        Some(V5),
        "2.2.2.2",
    );
}

#[test]
fn auth_rules() {
    let ok_auth = Packet::Auth(Auth::default());
    assert_eq!(enc(&ok_auth, V5), [0xf0, 0x00]);
    assert_eq!(ok(&[0xf0, 0x00], Some(V5)), ok_auth);
    for v in [V3_1, V3_1_1] {
        let mut out = BytesMut::new();
        assert_eq!(
            encode(&ok_auth, v, MAX, &mut out),
            Err(EncodeError::NotInVersion("AUTH"))
        );
        assert!(out.is_empty());
        assert!(encoded_len(&ok_auth, v).is_err());
    }
    protocol_err(&[0xf0, 0x02, 0x18, 0x00], Some(V5), "3.15.2.2.2");
    protocol_err(&[0xf0, 0x01, 0x19], Some(V5), "3.15.2.2.2");
    malformed(&[0xf0, 0x01, 0x01], Some(V5), "3.15.2.1");
    let cont = Packet::Auth(Auth {
        reason: 0x18,
        properties: AuthProperties {
            authentication_method: Some(bs("SCRAM")),
            authentication_data: Some(Bytes::from_static(b"\x01\x02")),
            ..Default::default()
        },
    });
    let bytes = enc(&cont, V5);
    assert_eq!(
        bytes,
        cat(&[
            &[0xf0, 0x0f, 0x18, 0x0d, 0x15],
            &s("SCRAM"),
            &[0x16, 0x00, 0x02, 0x01, 0x02]
        ])
    );
    assert_eq!(ok(&bytes, Some(V5)), cont);
    let missing = Packet::Auth(Auth {
        reason: 0x18,
        properties: AuthProperties::default(),
    });
    assert!(matches!(
        encode(&missing, V5, MAX, &mut BytesMut::new()),
        Err(EncodeError::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Encoder limits
// ---------------------------------------------------------------------------------------------

fn publish(topic: &str, qos: QoS, pkid: u16, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: bs(topic),
        pkid,
        properties: PublishProperties::default(),
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn encode_refuses_long_strings_without_writing() {
    let long = "a".repeat(65_536);
    let mut out = BytesMut::from(&b"prefix"[..]);
    let p = Packet::Publish(publish(&long, QoS::AtMostOnce, 0, b""));
    assert_eq!(
        encode(&p, V3_1_1, MAX, &mut out),
        Err(EncodeError::StringTooLong(65_536))
    );
    assert_eq!(
        encoded_len(&p, V3_1_1),
        Err(EncodeError::StringTooLong(65_536))
    );
    assert_eq!(&out[..], b"prefix");

    let mut props = PublishProperties::default();
    props.user_properties.push("k", &long);
    let p = Packet::Publish(Publish {
        properties: props,
        ..publish("t", QoS::AtMostOnce, 0, b"")
    });
    assert!(encode(&p, V5, MAX, &mut out).is_err());
    assert_eq!(&out[..], b"prefix");
    // On 3.1.1 the properties are not written, so the packet is fine.
    assert!(encode(&p, V3_1_1, MAX, &mut out).is_ok());

    let mut out = BytesMut::new();
    let c = Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: bs("id"),
        will: None,
        username: None,
        password: Some(Bytes::from(vec![0u8; 65_536])),
        properties: ConnectProperties::default(),
    }));
    assert_eq!(
        encode(&c, V5, MAX, &mut out),
        Err(EncodeError::BinaryTooLong(65_536))
    );
    assert!(out.is_empty());

    let ok_len = "a".repeat(65_535);
    let p = Packet::Publish(publish(&ok_len, QoS::AtMostOnce, 0, b""));
    roundtrip(&p, V3_1_1);
}

#[test]
fn encode_refuses_oversized_packets_without_writing() {
    let p = Packet::Publish(publish("t", QoS::AtLeastOnce, 1, b"0123456789"));
    let len = encoded_len(&p, V3_1_1).unwrap();
    assert_eq!(len, 2 + 3 + 2 + 10);
    let mut out = BytesMut::from(&b"x"[..]);
    assert_eq!(
        encode(&p, V3_1_1, len as u32 - 1, &mut out),
        Err(EncodeError::TooLarge {
            size: len,
            max: len as u32 - 1
        })
    );
    assert_eq!(&out[..], b"x");
    assert_eq!(encode(&p, V3_1_1, len as u32, &mut out), Ok(len));
    assert_eq!(out.len(), 1 + len);
}

#[test]
fn encode_refuses_invalid_fields() {
    let mut out = BytesMut::new();
    let bad = [
        Packet::Publish(publish("t", QoS::AtLeastOnce, 0, b"")),
        Packet::Publish(Publish {
            dup: true,
            ..publish("t", QoS::AtMostOnce, 0, b"")
        }),
        Packet::Publish(publish("", QoS::AtMostOnce, 0, b"")),
        Packet::PubAck(PubResp::new(0)),
        Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![],
            properties: SubscribeProperties::default(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 0,
            filters: vec![bs("a")],
            user_properties: UserProperties::default(),
        }),
    ];
    for p in &bad {
        for v in ALL {
            assert!(encode(p, v, MAX, &mut out).is_err(), "{p:?}");
            assert!(out.is_empty());
        }
    }
    // A v5 empty topic with an alias is fine.
    let mut p = publish("", QoS::AtMostOnce, 0, b"x");
    p.properties.topic_alias = Some(1);
    roundtrip(&Packet::Publish(p.clone()), V5);
    assert!(encode(&Packet::Publish(p), V3_1_1, MAX, &mut out).is_err());
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

fn users() -> UserProperties {
    [("k", "v"), ("k", "w")].into_iter().collect()
}

fn sample_connect(v: ProtocolVersion, full: bool) -> Connect {
    let v5 = v.is_v5();
    Connect {
        protocol: v,
        clean_start: full,
        keep_alive: 30,
        client_id: bs(if full { "client-1" } else { "" }),
        will: full.then(|| Will {
            topic: bs("last/will"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: if v5 {
                WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(0),
                    content_type: Some(bs("text/plain")),
                    response_topic: Some(bs("re/sponse")),
                    correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                    user_properties: users(),
                }
            } else {
                WillProperties::default()
            },
        }),
        username: full.then(|| bs("user")),
        password: full.then(|| Bytes::from_static(b"p\x00ss")),
        properties: if v5 && full {
            ConnectProperties {
                session_expiry_interval: Some(u32::MAX),
                receive_maximum: Some(10),
                maximum_packet_size: Some(1 << 20),
                topic_alias_maximum: Some(0),
                request_response_information: Some(1),
                request_problem_information: Some(0),
                user_properties: users(),
                authentication_method: Some(bs("PLAIN")),
                authentication_data: Some(Bytes::from_static(b"data")),
            }
        } else {
            ConnectProperties::default()
        },
    }
}

fn ack_props(v: ProtocolVersion) -> AckProperties {
    if v.is_v5() {
        AckProperties {
            reason_string: Some(bs("because")),
            user_properties: users(),
        }
    } else {
        AckProperties::default()
    }
}

fn sample_packets(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    let mut out = vec![
        Packet::Connect(Box::new(sample_connect(v, false))),
        Packet::Connect(Box::new(sample_connect(v, true))),
        Packet::ConnAck(ConnAck::default()),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ConnectReason::Success,
            properties: if v5 {
                ConnAckProperties {
                    session_expiry_interval: Some(1),
                    receive_maximum: Some(2),
                    maximum_qos: Some(1),
                    retain_available: Some(0),
                    maximum_packet_size: Some(3),
                    assigned_client_identifier: Some(bs("auto-1")),
                    topic_alias_maximum: Some(4),
                    reason_string: Some(bs("ok")),
                    user_properties: users(),
                    wildcard_subscription_available: Some(1),
                    subscription_identifiers_available: Some(0),
                    shared_subscription_available: Some(1),
                    server_keep_alive: Some(5),
                    response_information: Some(bs("info")),
                    server_reference: Some(bs("other")),
                    authentication_method: Some(bs("m")),
                    authentication_data: Some(Bytes::from_static(b"d")),
                }
            } else {
                ConnAckProperties::default()
            },
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ConnectReason::NotAuthorized,
            properties: ConnAckProperties::default(),
        }),
        Packet::Publish(publish("a/b", QoS::AtMostOnce, 0, b"")),
        Packet::Publish(Publish {
            retain: true,
            ..publish("a/b", QoS::AtLeastOnce, 1, b"one")
        }),
        Packet::Publish(Publish {
            dup: true,
            properties: if v5 {
                PublishProperties {
                    payload_format_indicator: Some(0),
                    message_expiry_interval: Some(0),
                    topic_alias: Some(9),
                    response_topic: Some(bs("r/t")),
                    correlation_data: Some(Bytes::from_static(b"c")),
                    user_properties: users(),
                    subscription_identifiers: vec![1, 268_435_455],
                    content_type: Some(bs("json")),
                }
            } else {
                PublishProperties::default()
            },
            ..publish("a/b/c", QoS::ExactlyOnce, 65_535, b"two")
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
        Packet::Subscribe(Subscribe {
            pkid: 10,
            filters: vec![
                (bs("a/+/c"), SubscriptionOptions::default()),
                (
                    bs("$share/g/#"),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..Default::default()
                    },
                ),
            ],
            properties: SubscribeProperties::default(),
        }),
        Packet::SubAck(SubAck {
            pkid: 10,
            reasons: vec![0, 1, 2, 0x80],
            properties: ack_props(v),
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 11,
            filters: vec![bs("a/+/c"), bs("#")],
            user_properties: if v5 {
                users()
            } else {
                UserProperties::default()
            },
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 11,
            reasons: if v5 { vec![0x00, 0x11] } else { vec![] },
            properties: ack_props(v),
        }),
    ];
    for (i, make) in [
        Packet::PubAck,
        Packet::PubRec,
        Packet::PubRel,
        Packet::PubComp,
    ]
    .into_iter()
    .enumerate()
    {
        out.push(make(PubResp::new(1 + i as u16)));
        if v5 {
            let reason = if i < 2 { 0x10 } else { 0x92 };
            out.push(make(PubResp {
                pkid: 100,
                reason,
                properties: AckProperties::default(),
            }));
            out.push(make(PubResp {
                pkid: 100,
                reason: 0,
                properties: ack_props(v),
            }));
        }
    }
    if v5 {
        out.extend([
            Packet::Subscribe(Subscribe {
                pkid: 12,
                filters: vec![(
                    bs("x/#"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: 2,
                    },
                )],
                properties: SubscribeProperties {
                    subscription_identifier: Some(77),
                    user_properties: users(),
                },
            }),
            Packet::SubAck(SubAck {
                pkid: 12,
                reasons: vec![0x8f, 0xa2],
                properties: AckProperties::default(),
            }),
            Packet::Disconnect(Disconnect {
                reason: reason::DISCONNECT_WITH_WILL,
                properties: DisconnectProperties::default(),
            }),
            Packet::Disconnect(Disconnect {
                reason: reason::SERVER_SHUTTING_DOWN,
                properties: DisconnectProperties {
                    session_expiry_interval: Some(3),
                    reason_string: Some(bs("bye")),
                    user_properties: users(),
                    server_reference: Some(bs("elsewhere")),
                },
            }),
            Packet::Auth(Auth::default()),
            Packet::Auth(Auth {
                reason: 0x19,
                properties: AuthProperties {
                    authentication_method: Some(bs("m")),
                    authentication_data: Some(Bytes::from_static(b"d")),
                    reason_string: Some(bs("again")),
                    user_properties: users(),
                },
            }),
        ]);
    }
    out
}

#[test]
fn roundtrip_every_packet_at_every_version() {
    for v in ALL {
        for p in sample_packets(v) {
            roundtrip(&p, v);
        }
    }
}

#[test]
fn roundtrip_large_remaining_lengths() {
    for n in [127usize, 128, 16_383, 16_384, 2_097_152] {
        let payload: &'static [u8] = Vec::leak(vec![7u8; n]);
        for v in ALL {
            roundtrip(
                &Packet::Publish(publish("t", QoS::AtLeastOnce, 5, payload)),
                v,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn version() -> impl Strategy<Value = ProtocolVersion> {
        prop_oneof![Just(V3_1), Just(V3_1_1), Just(V5)]
    }

    fn qos() -> impl Strategy<Value = QoS> {
        prop_oneof![
            Just(QoS::AtMostOnce),
            Just(QoS::AtLeastOnce),
            Just(QoS::ExactlyOnce)
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        "[a-z0-9$ /\u{e9}\u{1f600}]{1,20}"
    }

    fn filter() -> impl Strategy<Value = String> {
        prop::collection::vec(prop_oneof!["[a-z0-9$ ]{1,5}", Just("+".to_owned())], 1..5)
            .prop_flat_map(|levels| {
                let joined = levels.join("/");
                prop_oneof![
                    Just(joined.clone()),
                    Just(format!("{joined}/#")),
                    Just("#".to_owned())
                ]
            })
    }

    fn user_props() -> impl Strategy<Value = UserProperties> {
        prop::collection::vec(("[a-z\u{e9}]{0,4}", "[a-z\u{e9}]{0,4}"), 0..3)
            .prop_map(|v| v.into_iter().collect())
    }

    prop_compose! {
        fn publish_packet(v5: bool)(
            qos in qos(),
            dup in any::<bool>(),
            retain in any::<bool>(),
            topic in topic(),
            pkid in 1u16..,
            payload in prop::collection::vec(any::<u8>(), 0..300),
            expiry in prop::option::of(any::<u32>()),
            alias in prop::option::of(1u16..),
            pfi in prop::option::of(0u8..=1),
            sub_ids in prop::collection::vec(1u32..=268_435_455, 0..3),
            users in user_props(),
            empty_topic in any::<bool>(),
        ) -> Publish {
            let topic = if v5 && empty_topic && alias.is_some() { String::new() } else { topic };
            Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic: ByteString::from(topic),
                pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
                properties: if v5 {
                    PublishProperties {
                        payload_format_indicator: pfi,
                        message_expiry_interval: expiry,
                        topic_alias: alias,
                        user_properties: users,
                        subscription_identifiers: sub_ids,
                        ..Default::default()
                    }
                } else {
                    PublishProperties::default()
                },
                payload: Bytes::from(payload),
            }
        }
    }

    prop_compose! {
        fn subscribe_packet(v5: bool)(
            pkid in 1u16..,
            filters in prop::collection::vec(
                (filter(), qos(), any::<bool>(), any::<bool>(), 0u8..=2),
                1..5,
            ),
            sub_id in prop::option::of(1u32..=268_435_455),
            users in user_props(),
        ) -> Subscribe {
            Subscribe {
                pkid,
                filters: filters
                    .into_iter()
                    .map(|(f, qos, nl, rap, rh)| {
                        let shared = f.starts_with("$share/");
                        let options = if v5 {
                            SubscriptionOptions {
                                qos,
                                no_local: nl && !shared,
                                retain_as_published: rap,
                                retain_handling: rh,
                            }
                        } else {
                            SubscriptionOptions { qos, ..Default::default() }
                        };
                        (ByteString::from(f), options)
                    })
                    .collect(),
                properties: if v5 {
                    SubscribeProperties {
                        subscription_identifier: sub_id,
                        user_properties: users,
                    }
                } else {
                    SubscribeProperties::default()
                },
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decode_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            v in prop::option::of(version()),
        ) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = frame_len(&bytes, MAX);
            if let Ok(Some(p)) = decode(&mut buf, v, &LIMITS) {
                // Whatever decodes re-encodes (CONNECT at the version it announced).
                let enc_v = match (&p, v) {
                    (Packet::Connect(c), _) => c.protocol,
                    (_, Some(v)) => v,
                    (_, None) => unreachable!(),
                };
                let mut out = BytesMut::new();
                prop_assert!(encode(&p, enc_v, MAX, &mut out).is_ok(), "{:?}", p);
            }
        }

        #[test]
        fn decode_never_panics_on_valid_headers(
            first in any::<u8>(),
            body in prop::collection::vec(any::<u8>(), 0..120),
            v in version(),
        ) {
            // A correct remaining length so that the body parsers are exercised.
            let bytes = frame(first, &body);
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode(&mut buf, Some(v), &LIMITS);
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode(&mut buf, None, &LIMITS);
        }

        #[test]
        fn decode_never_panics_on_connect_bodies(
            level in 3u8..=5,
            flags in any::<u8>(),
            rest in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            let name: &str = if level == 3 { "MQIsdp" } else { "MQTT" };
            let bytes = frame(0x10, &cat(&[&s(name), &[level, flags], &rest]));
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode(&mut buf, None, &LIMITS);
        }

        #[test]
        fn publish_roundtrips_v5(p in publish_packet(true)) {
            roundtrip(&Packet::Publish(p), V5);
        }

        #[test]
        fn publish_roundtrips_v3(p in publish_packet(false), v in prop_oneof![Just(V3_1), Just(V3_1_1)]) {
            roundtrip(&Packet::Publish(p), v);
        }

        #[test]
        fn subscribe_roundtrips_v5(p in subscribe_packet(true)) {
            roundtrip(&Packet::Subscribe(p), V5);
        }

        #[test]
        fn subscribe_roundtrips_v3(p in subscribe_packet(false), v in prop_oneof![Just(V3_1), Just(V3_1_1)]) {
            roundtrip(&Packet::Subscribe(p), v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Differential test against mqttbytes 0.6 (3.1.1)
// ---------------------------------------------------------------------------------------------

mod differential {
    use super::*;
    use mqttbytes::v4;

    fn their_qos(q: QoS) -> mqttbytes::QoS {
        match q {
            QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
            QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
            QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
        }
    }

    /// Encodes with ours, decodes with mqttbytes.
    fn theirs(p: &Packet) -> v4::Packet {
        let mut buf = BytesMut::from(&enc(p, V3_1_1)[..]);
        let out = v4::read(&mut buf, MAX as usize).expect("mqttbytes decodes our bytes");
        assert!(buf.is_empty());
        out
    }

    /// Decodes with ours what mqttbytes wrote.
    fn ours(write: impl FnOnce(&mut BytesMut)) -> Packet {
        let mut buf = BytesMut::new();
        write(&mut buf);
        let state = if buf.first() == Some(&0x10) {
            None
        } else {
            Some(V3_1_1)
        };
        ok(&buf, state)
    }

    #[test]
    fn connect() {
        let mut c = sample_connect(V3_1_1, true);
        c.password = Some(Bytes::from_static(b"pass"));
        let v4::Packet::Connect(t) = theirs(&Packet::Connect(Box::new(c.clone()))) else {
            panic!()
        };
        assert_eq!(t.client_id, "client-1");
        assert_eq!(t.keep_alive, 30);
        assert!(t.clean_session);
        let w = t.last_will.clone().expect("will");
        assert_eq!(
            (w.topic.as_str(), &w.message[..], w.qos, w.retain),
            ("last/will", &b"gone"[..], mqttbytes::QoS::AtLeastOnce, true)
        );
        let login = t.login.clone().expect("login");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("user", "pass")
        );

        let back = ours(|b| {
            t.write(b).unwrap();
        });
        assert_eq!(back, Packet::Connect(Box::new(c)));

        let mut t = v4::Connect::new("plain");
        t.keep_alive = 5;
        t.clean_session = false;
        let Packet::Connect(c) = ours(|b| {
            t.write(b).unwrap();
        }) else {
            panic!()
        };
        assert_eq!(c.client_id, "plain");
        assert_eq!(
            (c.keep_alive, c.clean_start, c.protocol),
            (5, false, V3_1_1)
        );
        assert!(c.will.is_none() && c.username.is_none() && c.password.is_none());
    }

    #[test]
    fn connack() {
        for (reason, code) in [
            (ConnectReason::Success, v4::ConnectReturnCode::Success),
            (
                ConnectReason::UnsupportedProtocolVersion,
                v4::ConnectReturnCode::RefusedProtocolVersion,
            ),
            (
                ConnectReason::ClientIdentifierNotValid,
                v4::ConnectReturnCode::BadClientId,
            ),
            (
                ConnectReason::ServerUnavailable,
                v4::ConnectReturnCode::ServiceUnavailable,
            ),
            (
                ConnectReason::BadUserNameOrPassword,
                v4::ConnectReturnCode::BadUserNamePassword,
            ),
            (
                ConnectReason::NotAuthorized,
                v4::ConnectReturnCode::NotAuthorized,
            ),
        ] {
            let p = Packet::ConnAck(ConnAck {
                session_present: true,
                reason,
                properties: ConnAckProperties::default(),
            });
            assert_eq!(
                theirs(&p),
                v4::Packet::ConnAck(v4::ConnAck::new(code, true))
            );
            assert_eq!(
                ours(|b| {
                    v4::ConnAck::new(code, true).write(b).unwrap();
                }),
                p
            );
        }
    }

    #[test]
    fn publish_all_qos() {
        for (q, pkid) in [
            (QoS::AtMostOnce, 0),
            (QoS::AtLeastOnce, 1),
            (QoS::ExactlyOnce, 65_535),
        ] {
            for (dup, retain) in [(false, false), (q != QoS::AtMostOnce, true)] {
                let p = Publish {
                    dup,
                    retain,
                    ..publish("a/b/\u{e9}", q, pkid, b"payload")
                };
                let mut t = v4::Publish::new("a/b/\u{e9}", their_qos(q), &b"payload"[..]);
                t.pkid = pkid;
                t.dup = dup;
                t.retain = retain;
                assert_eq!(
                    theirs(&Packet::Publish(p.clone())),
                    v4::Packet::Publish(t.clone())
                );
                assert_eq!(
                    ours(|b| {
                        t.write(b).unwrap();
                    }),
                    Packet::Publish(p)
                );
            }
        }
    }

    #[test]
    fn subscribe_and_suback() {
        let p = Subscribe {
            pkid: 3,
            filters: vec![
                (bs("a/+"), SubscriptionOptions::default()),
                (
                    bs("b/#"),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..Default::default()
                    },
                ),
            ],
            properties: SubscribeProperties::default(),
        };
        let mut t = v4::Subscribe::new("a/+", mqttbytes::QoS::AtMostOnce);
        t.add("b/#".to_owned(), mqttbytes::QoS::ExactlyOnce);
        t.pkid = 3;
        assert_eq!(
            theirs(&Packet::Subscribe(p.clone())),
            v4::Packet::Subscribe(t.clone())
        );
        assert_eq!(
            ours(|b| {
                t.write(b).unwrap();
            }),
            Packet::Subscribe(p)
        );

        let p = SubAck {
            pkid: 3,
            reasons: vec![0, 2, 0x80],
            properties: AckProperties::default(),
        };
        let t = v4::SubAck::new(
            3,
            vec![
                v4::SubscribeReasonCode::Success(mqttbytes::QoS::AtMostOnce),
                v4::SubscribeReasonCode::Success(mqttbytes::QoS::ExactlyOnce),
                v4::SubscribeReasonCode::Failure,
            ],
        );
        assert_eq!(
            theirs(&Packet::SubAck(p.clone())),
            v4::Packet::SubAck(t.clone())
        );
        assert_eq!(
            ours(|b| {
                t.write(b).unwrap();
            }),
            Packet::SubAck(p)
        );
    }

    #[test]
    fn unsubscribe_and_unsuback() {
        let p = Unsubscribe {
            pkid: 4,
            filters: vec![bs("a/+"), bs("#")],
            user_properties: UserProperties::default(),
        };
        let mut t = v4::Unsubscribe::new("a/+");
        t.topics.push("#".to_owned());
        t.pkid = 4;
        assert_eq!(
            theirs(&Packet::Unsubscribe(p.clone())),
            v4::Packet::Unsubscribe(t.clone())
        );
        assert_eq!(
            ours(|b| {
                t.write(b).unwrap();
            }),
            Packet::Unsubscribe(p)
        );
        let p = Packet::UnsubAck(UnsubAck {
            pkid: 4,
            reasons: vec![],
            properties: AckProperties::default(),
        });
        assert_eq!(theirs(&p), v4::Packet::UnsubAck(v4::UnsubAck::new(4)));
        assert_eq!(
            ours(|b| {
                v4::UnsubAck::new(4).write(b).unwrap();
            }),
            p
        );
    }

    #[test]
    fn acks_pings_disconnect() {
        let id = 513;
        assert_eq!(
            theirs(&Packet::PubAck(PubResp::new(id))),
            v4::Packet::PubAck(v4::PubAck::new(id))
        );
        assert_eq!(
            theirs(&Packet::PubRec(PubResp::new(id))),
            v4::Packet::PubRec(v4::PubRec::new(id))
        );
        assert_eq!(
            theirs(&Packet::PubRel(PubResp::new(id))),
            v4::Packet::PubRel(v4::PubRel::new(id))
        );
        assert_eq!(
            theirs(&Packet::PubComp(PubResp::new(id))),
            v4::Packet::PubComp(v4::PubComp::new(id))
        );
        assert_eq!(
            ours(|b| {
                v4::PubAck::new(id).write(b).unwrap();
            }),
            Packet::PubAck(PubResp::new(id))
        );
        assert_eq!(
            ours(|b| {
                v4::PubRec::new(id).write(b).unwrap();
            }),
            Packet::PubRec(PubResp::new(id))
        );
        assert_eq!(
            ours(|b| {
                v4::PubRel::new(id).write(b).unwrap();
            }),
            Packet::PubRel(PubResp::new(id))
        );
        assert_eq!(
            ours(|b| {
                v4::PubComp::new(id).write(b).unwrap();
            }),
            Packet::PubComp(PubResp::new(id))
        );
        assert_eq!(theirs(&Packet::PingReq), v4::Packet::PingReq);
        assert_eq!(theirs(&Packet::PingResp), v4::Packet::PingResp);
        assert_eq!(
            theirs(&Packet::Disconnect(Disconnect::default())),
            v4::Packet::Disconnect
        );
        assert_eq!(
            ours(|b| {
                v4::PingReq.write(b).unwrap();
            }),
            Packet::PingReq
        );
        assert_eq!(
            ours(|b| {
                v4::PingResp.write(b).unwrap();
            }),
            Packet::PingResp
        );
        assert_eq!(
            ours(|b| {
                v4::Disconnect.write(b).unwrap();
            }),
            Packet::Disconnect(Disconnect::default())
        );
    }
}

#[test]
fn encode_writes_into_reserved_space_only() {
    // With room reserved, `out` is neither reallocated nor grown beyond the packet.
    let p = Packet::Publish(publish("a/b", QoS::AtLeastOnce, 1, b"payload"));
    let len = encoded_len(&p, V5).unwrap();
    let mut out = BytesMut::with_capacity(len);
    let (ptr, cap) = (out.as_ptr(), out.capacity());
    assert_eq!(encode(&p, V5, MAX, &mut out), Ok(len));
    assert_eq!((out.as_ptr(), out.capacity(), out.len()), (ptr, cap, len));
}
