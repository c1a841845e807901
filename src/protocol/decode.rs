//! Decoder: bytes → [`Packet`].
//!
//! This file owns framing ([`frame_len`]: the fixed header and the size limit, checked before the
//! body arrives) and the per-packet parsers with every normative check MQTT places on a single
//! packet, within the caller's [`DecodeLimits`]. Strings, topics and payloads are zero-copy
//! slices of the packet's frozen `Bytes` (user properties are copied, compactly); a PUBLISH
//! without properties allocates nothing. Properties live in `properties.rs`, the
//! bounds-checked cursor in `wire.rs`.

use bytes::BytesMut;

use super::packet::*;
use super::properties as props;
use super::topic::{topic_name_fault, valid_subscription_filter, NameFault, MAX_TOPIC_LEVELS};
use super::user_properties::{Budget, UserProperties};
use super::wire::{malformed, protocol, Reader};
use super::{DecodeError, DecodeLimits};

/// Control packet type numbers (MQTT 2.1.2).
mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// Reason codes a PUBACK or PUBREC may carry (MQTT 3.4.2.1, 3.5.2.1).
const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// Reason codes a PUBREL or PUBCOMP may carry (MQTT 3.6.2.1, 3.7.2.1).
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
/// SUBACK reason codes on 3.1/3.1.1 (MQTT 3.1.1 3.9.3).
const SUBACK_V3_RETURN_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];
/// SUBACK reason codes in 5.0 (MQTT 3.9.3).
const SUBACK_REASONS: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// UNSUBACK reason codes in 5.0 (MQTT 3.11.3).
const UNSUBACK_REASONS: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// DISCONNECT reason codes in 5.0 (MQTT 3.14.2.1).
const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// True when a server may close a 5.0 connection with DISCONNECT reason `code` (MQTT
/// 3.14.2.1: any listed code but 0x04, which only a client sends).
pub fn server_disconnect_reason(code: u8) -> bool {
    code != 0x04 && DISCONNECT_REASONS.contains(&code)
}

/// AUTH reason codes (MQTT 3.15.2.1).
const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];

/// A complete fixed header.
struct FixedHeader {
    /// Packet type and flags.
    byte: u8,
    /// Bytes of fixed header (type byte plus remaining-length bytes).
    len: usize,
    /// Remaining length.
    remaining: usize,
}

/// Parses the fixed header, refusing a remaining length over 4 bytes or a total over `max`.
fn fixed_header(buf: &[u8], max: u32) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let len = 2 + i;
            let total = (len + remaining) as u64;
            if total > u64::from(max) {
                return Err(DecodeError::TooLarge { size: total, max });
            }
            return Ok(Some(FixedHeader {
                byte,
                len,
                remaining,
            }));
        }
    }
    Err(malformed("1.5.5", "remaining length longer than 4 bytes"))
}

/// Reads the fixed header at the start of `buf`. Returns the total packet length (fixed header
/// included) once the fixed header is complete, `Ok(None)` while it is not. Fails when the
/// remaining length uses more than 4 bytes or the total exceeds `max_packet_size`, before
/// anything is reserved.
pub fn frame_len(buf: &[u8], max_packet_size: u32) -> Result<Option<usize>, DecodeError> {
    Ok(fixed_header(buf, max_packet_size)?.map(|h| h.len + h.remaining))
}

/// Decodes one packet from the front of `buf`.
///
/// `version` is `None` until CONNECT has been read: then only CONNECT is accepted (anything else
/// is a protocol error, MQTT-3.1.0-1). Returns `Ok(None)` and leaves `buf` untouched while the
/// packet is incomplete; on `Ok(Some(_))` the packet's bytes are consumed.
///
/// The fixed header (type, flags, size against `limits.max_packet_size`) is checked as soon as it
/// is complete, before the body has arrived; user properties are counted against
/// `limits.max_user_properties` as they are met, before each is read. On error the connection
/// must be closed; `buf` may then have been consumed.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    limits: &DecodeLimits,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = fixed_header(buf, limits.max_packet_size)? else {
        return Ok(None);
    };
    check_type_and_flags(header.byte, version)?;
    let total = header.len + header.remaining;
    if buf.len() < total {
        return Ok(None);
    }
    let frame = buf.split_to(total).freeze();
    let mut r = Reader::new(&frame, header.len);
    let mut budget = Budget::new(limits.max_user_properties);
    let packet = match version {
        None => Packet::Connect(Box::new(connect(&mut r, &mut budget)?)),
        Some(v) => body(header.byte, v, &mut r, &mut budget)?,
    };
    Ok(Some(packet))
}

/// Packet type validity for the connection state, and the reserved flag bits (MQTT 2.1.3).
fn check_type_and_flags(byte: u8, version: Option<ProtocolVersion>) -> Result<(), DecodeError> {
    let ty = byte >> 4;
    let flags = byte & 0x0f;
    if ty == 0 {
        return Err(malformed("2.1.2", "reserved packet type 0"));
    }
    match version {
        None if ty != kind::CONNECT => {
            return Err(protocol("MQTT-3.1.0-1", "first packet is not CONNECT"));
        }
        Some(_) if ty == kind::CONNECT => {
            return Err(protocol("MQTT-3.1.0-2", "second CONNECT"));
        }
        Some(v) if ty == kind::AUTH && !v.is_v5() => {
            return Err(malformed("2.1.2", "reserved packet type 15"));
        }
        _ => {}
    }
    let expected = match ty {
        kind::PUBLISH => return Ok(()),
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => 0x2,
        _ => 0x0,
    };
    if flags != expected {
        return Err(malformed("2.1.3", "invalid fixed header flags"));
    }
    Ok(())
}

/// Dispatches on the packet type once CONNECT has fixed the protocol version.
fn body(
    byte: u8,
    v: ProtocolVersion,
    r: &mut Reader<'_>,
    b: &mut Budget,
) -> Result<Packet, DecodeError> {
    Ok(match byte >> 4 {
        kind::CONNACK => Packet::ConnAck(connack(v, r, b)?),
        kind::PUBLISH => Packet::Publish(publish(byte, v, r, b)?),
        kind::PUBACK => Packet::PubAck(pub_resp(v, r, PUBACK_REASONS, b)?),
        kind::PUBREC => Packet::PubRec(pub_resp(v, r, PUBACK_REASONS, b)?),
        kind::PUBREL => Packet::PubRel(pub_resp(v, r, PUBREL_REASONS, b)?),
        kind::PUBCOMP => Packet::PubComp(pub_resp(v, r, PUBREL_REASONS, b)?),
        kind::SUBSCRIBE => Packet::Subscribe(subscribe(v, r, b)?),
        kind::SUBACK => Packet::SubAck(suback(v, r, b)?),
        kind::UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(v, r, b)?),
        kind::UNSUBACK => Packet::UnsubAck(unsuback(v, r, b)?),
        kind::PINGREQ => {
            r.finish("3.12")?;
            Packet::PingReq
        }
        kind::PINGRESP => {
            r.finish("3.13")?;
            Packet::PingResp
        }
        kind::DISCONNECT => Packet::Disconnect(disconnect(v, r, b)?),
        kind::AUTH => Packet::Auth(auth(r, b)?),
        // CONNECT, 0 and (on 3.x) 15 were refused by `check_type_and_flags`.
        _ => return Err(malformed("2.1.2", "unexpected packet type")),
    })
}

/// A non-zero packet identifier (MQTT-2.2.1-3).
fn pkid(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(malformed("MQTT-2.2.1-3", "packet identifier 0")),
        id => Ok(id),
    }
}

fn reason_in(code: u8, allowed: &[u8], rule: &'static str) -> Result<u8, DecodeError> {
    if allowed.contains(&code) {
        Ok(code)
    } else {
        Err(malformed(rule, "reason code not allowed in this packet"))
    }
}

fn connect(r: &mut Reader<'_>, b: &mut Budget) -> Result<Connect, DecodeError> {
    let protocol = protocol_level(r)?;
    let v5 = protocol.is_v5();
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(malformed("MQTT-3.1.2-3", "reserved connect flag set"));
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !will_flag && will_qos != 0 {
        return Err(malformed("MQTT-3.1.2-11", "will QoS without will flag"));
    }
    if !will_flag && will_retain {
        return Err(malformed("MQTT-3.1.2-13", "will retain without will flag"));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(malformed("MQTT-3.1.2-12", "will QoS 3"))?;
    if !v5 && has_password && !has_username {
        return Err(malformed("MQTT-3.1.2-22", "password without user name"));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        props::decode_connect(r, b)?
    } else {
        ConnectProperties::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        Some(will(r, v5, will_qos, will_retain, b)?)
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    r.finish("3.1.3")?;
    Ok(Connect {
        protocol,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// Protocol name and level (MQTT 3.1.2.1, 3.1.2.2).
fn protocol_level(r: &mut Reader<'_>) -> Result<ProtocolVersion, DecodeError> {
    let name = r.raw_str()?;
    let level = r.u8()?;
    match (name, level) {
        (b"MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        _ => Err(DecodeError::UnsupportedProtocol {
            name: String::from_utf8_lossy(name).into_owned(),
            level,
        }),
    }
}

/// Will properties (5.0), topic and payload (MQTT 3.1.3.2 – 3.1.3.4).
fn will(
    r: &mut Reader<'_>,
    v5: bool,
    qos: QoS,
    retain: bool,
    b: &mut Budget,
) -> Result<Will, DecodeError> {
    let properties = if v5 {
        props::decode_will(r, b)?
    } else {
        WillProperties::default()
    };
    // A will topic that is not a valid topic name (wildcards, too many levels) is refused by the
    // broker with CONNACK 0x90 (5.0), which needs the CONNECT decoded first: see
    // `connection::connect::check_connect`, which applies `topic::valid_topic_name`.
    let topic = r.string()?;
    let payload = r.binary()?;
    Ok(Will {
        topic,
        payload,
        qos,
        retain,
        properties,
    })
}

fn connack(v: ProtocolVersion, r: &mut Reader<'_>, b: &mut Budget) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xfe != 0 {
        return Err(malformed("MQTT-3.2.2-1", "reserved connack flags set"));
    }
    let code = r.u8()?;
    let (reason, properties) = if v.is_v5() {
        let reason = ConnectReason::from_u8(code)
            .ok_or(malformed("3.2.2.2", "unknown connect reason code"))?;
        (reason, props::decode_connack(r, b)?)
    } else {
        let reason = ConnectReason::from_v3_return_code(code)
            .ok_or(malformed("3.2.2.3", "unknown connect return code"))?;
        (reason, ConnAckProperties::default())
    };
    r.finish("3.2.2")?;
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        reason,
        properties,
    })
}

fn publish(
    byte: u8,
    v: ProtocolVersion,
    r: &mut Reader<'_>,
    b: &mut Budget,
) -> Result<Publish, DecodeError> {
    let dup = byte & 0x08 != 0;
    let retain = byte & 0x01 != 0;
    let qos = QoS::from_u8((byte >> 1) & 0x03).ok_or(malformed("MQTT-3.3.1-4", "QoS 3"))?;
    if dup && qos == QoS::AtMostOnce {
        return Err(malformed("MQTT-3.3.1-2", "DUP set on QoS 0"));
    }
    let topic = r.string()?;
    let pkid = if qos == QoS::AtMostOnce { 0 } else { pkid(r)? };
    let properties = if v.is_v5() {
        props::decode_publish(r, b)?
    } else {
        PublishProperties::default()
    };
    check_publish_topic(&topic, v, &properties)?;
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        properties,
        payload: r.rest(),
    })
}

/// A PUBLISH topic name: a valid topic name ([`valid_topic_name`], so no wildcards and at most
/// [`MAX_TOPIC_LEVELS`] levels); empty only in 5.0 with a Topic Alias.
fn check_publish_topic(
    topic: &str,
    v: ProtocolVersion,
    properties: &PublishProperties,
) -> Result<(), DecodeError> {
    if topic.is_empty() {
        if !v.is_v5() {
            return Err(malformed("MQTT-4.7.3-1", "empty topic name"));
        }
        if properties.topic_alias.is_none() {
            return Err(protocol(
                "3.3.2.3.4",
                "empty topic name without topic alias",
            ));
        }
        return Ok(());
    }
    // Length and U+0000 were checked when the string was read: what is left is wildcards
    // and depth.
    match topic_name_fault(topic) {
        None => Ok(()),
        Some(NameFault::Invalid) => Err(malformed("MQTT-3.3.2-2", "wildcard in topic name")),
        Some(NameFault::TooDeep) => Err(DecodeError::TopicTooDeep {
            max: MAX_TOPIC_LEVELS,
        }),
    }
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: in 5.0 the reason and properties may be omitted.
fn pub_resp(
    v: ProtocolVersion,
    r: &mut Reader<'_>,
    reasons: &[u8],
    b: &mut Budget,
) -> Result<PubResp, DecodeError> {
    let pkid = pkid(r)?;
    if !v.is_v5() {
        r.finish("3.4.2")?;
        return Ok(PubResp::new(pkid));
    }
    let reason = if r.is_empty() {
        0
    } else {
        reason_in(r.u8()?, reasons, "3.4.2.1")?
    };
    let properties = if r.is_empty() {
        AckProperties::default()
    } else {
        props::decode_ack(r, b)?
    };
    r.finish("3.4.2")?;
    Ok(PubResp {
        pkid,
        reason,
        properties,
    })
}

fn subscribe(
    v: ProtocolVersion,
    r: &mut Reader<'_>,
    b: &mut Budget,
) -> Result<Subscribe, DecodeError> {
    let pkid = pkid(r)?;
    let properties = if v.is_v5() {
        props::decode_subscribe(r, b)?
    } else {
        SubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        if !valid_subscription_filter(&filter) {
            return Err(malformed("4.7.1", "invalid topic filter"));
        }
        let options = subscription_options(r.u8()?, v)?;
        if options.no_local && filter.starts_with("$share/") {
            return Err(protocol(
                "MQTT-3.8.3-4",
                "no local on a shared subscription",
            ));
        }
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(protocol("MQTT-3.8.3-3", "SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties,
    })
}

/// The subscription options byte (MQTT 3.8.3.1).
fn subscription_options(b: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    if v.is_v5() {
        if b & 0xc0 != 0 {
            return Err(malformed(
                "MQTT-3.8.3-5",
                "reserved subscription option bits set",
            ));
        }
    } else if b & 0xfc != 0 {
        return Err(malformed(
            "MQTT-3.8.3-4",
            "reserved subscription option bits set",
        ));
    }
    let qos = QoS::from_u8(b & 0x03).ok_or(malformed("3.8.3.1", "subscription QoS 3"))?;
    let retain_handling = (b >> 4) & 0x03;
    if retain_handling == 3 {
        return Err(malformed("3.8.3.1", "retain handling 3"));
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: b & 0x04 != 0,
        retain_as_published: b & 0x08 != 0,
        retain_handling,
    })
}

fn suback(v: ProtocolVersion, r: &mut Reader<'_>, b: &mut Budget) -> Result<SubAck, DecodeError> {
    let pkid = pkid(r)?;
    let (properties, allowed) = if v.is_v5() {
        (props::decode_ack(r, b)?, SUBACK_REASONS)
    } else {
        (AckProperties::default(), SUBACK_V3_RETURN_CODES)
    };
    let mut reasons = Vec::new();
    while !r.is_empty() {
        reasons.push(reason_in(r.u8()?, allowed, "3.9.3")?);
    }
    if reasons.is_empty() {
        return Err(malformed("3.9.3", "SUBACK without reason codes"));
    }
    Ok(SubAck {
        pkid,
        reasons,
        properties,
    })
}

fn unsubscribe(
    v: ProtocolVersion,
    r: &mut Reader<'_>,
    b: &mut Budget,
) -> Result<Unsubscribe, DecodeError> {
    let pkid = pkid(r)?;
    let user_properties = if v.is_v5() {
        props::decode_unsubscribe(r, b)?
    } else {
        UserProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        // As in SUBSCRIBE: a bad share name is answered (0x11), not a malformed packet.
        if !valid_subscription_filter(&filter) {
            return Err(malformed("4.7.1", "invalid topic filter"));
        }
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(protocol(
            "MQTT-3.10.3-2",
            "UNSUBSCRIBE without topic filters",
        ));
    }
    Ok(Unsubscribe {
        pkid,
        filters,
        user_properties,
    })
}

fn unsuback(
    v: ProtocolVersion,
    r: &mut Reader<'_>,
    b: &mut Budget,
) -> Result<UnsubAck, DecodeError> {
    let pkid = pkid(r)?;
    if !v.is_v5() {
        r.finish("3.11.2")?;
        return Ok(UnsubAck {
            pkid,
            reasons: Vec::new(),
            properties: AckProperties::default(),
        });
    }
    let properties = props::decode_ack(r, b)?;
    let mut reasons = Vec::new();
    while !r.is_empty() {
        reasons.push(reason_in(r.u8()?, UNSUBACK_REASONS, "3.11.3")?);
    }
    if reasons.is_empty() {
        return Err(malformed("3.11.3", "UNSUBACK without reason codes"));
    }
    Ok(UnsubAck {
        pkid,
        reasons,
        properties,
    })
}

fn disconnect(
    v: ProtocolVersion,
    r: &mut Reader<'_>,
    b: &mut Budget,
) -> Result<Disconnect, DecodeError> {
    if !v.is_v5() {
        r.finish("3.14")?;
        return Ok(Disconnect::default());
    }
    let reason = if r.is_empty() {
        0
    } else {
        reason_in(r.u8()?, DISCONNECT_REASONS, "3.14.2.1")?
    };
    let properties = if r.is_empty() {
        DisconnectProperties::default()
    } else {
        props::decode_disconnect(r, b)?
    };
    r.finish("3.14.2")?;
    Ok(Disconnect { reason, properties })
}

fn auth(r: &mut Reader<'_>, b: &mut Budget) -> Result<Auth, DecodeError> {
    let reason = if r.is_empty() {
        0
    } else {
        reason_in(r.u8()?, AUTH_REASONS, "3.15.2.1")?
    };
    let properties = if r.is_empty() {
        AuthProperties::default()
    } else {
        props::decode_auth(r, b)?
    };
    r.finish("3.15.2")?;
    let bare_success = reason == 0 && properties == AuthProperties::default();
    if !bare_success && properties.authentication_method.is_none() {
        return Err(protocol("3.15.2.2.2", "AUTH without authentication method"));
    }
    Ok(Auth { reason, properties })
}
