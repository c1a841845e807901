//! Encoder: [`Packet`] → bytes.
//!
//! This file owns the wire layout of every packet at every protocol level. Each packet body is
//! written by one generic function over a [`Sink`]: run once into a [`Counter`] it measures the
//! packet and validates every field (string lengths, packet ids, version support); run again into
//! `out` it writes exactly that many bytes. So the size check happens before anything is written,
//! an error leaves `out` unchanged, and nothing but `out` is ever allocated.

use bytes::{BufMut, BytesMut};

use super::packet::*;
use super::properties::{put_props, Props};
use super::wire::{put_bin, put_str, put_varint, varint_len, Counter, Sink, VARINT_MAX};
use super::EncodeError;

/// Total encoded size of `packet` at `version` (fixed header included).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let remaining = remaining_len(packet, version)?;
    Ok(1 + varint_len(remaining) + remaining)
}

/// Appends `packet`, encoded for `version`, to `out`. Fails with nothing written when a field
/// cannot be encoded or the packet would exceed `max_packet_size` (the peer's limit).
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    max_packet_size: u32,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let remaining = remaining_len(packet, version)?;
    let total = 1 + varint_len(remaining) + remaining;
    if total as u64 > u64::from(max_packet_size) {
        return Err(EncodeError::TooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    out.reserve(total);
    let start = out.len();
    out.put_u8(first_byte(packet));
    let written = put_varint(out, remaining).and_then(|()| body(packet, version, out));
    if let Err(e) = written {
        // Unreachable: the measuring pass ran the same code. Keep the all-or-nothing promise.
        out.truncate(start);
        return Err(e);
    }
    debug_assert_eq!(out.len() - start, total);
    Ok(total)
}

/// Measures (and validates) the body.
fn remaining_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let mut c = Counter::default();
    body(packet, version, &mut c)?;
    if c.0 > VARINT_MAX as usize {
        return Err(EncodeError::TooLarge {
            size: c.0 + 5,
            max: super::MAX_PACKET_SIZE,
        });
    }
    Ok(c.0)
}

/// Packet type and flags (MQTT 2.1.2, 2.1.3).
fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xa2,
        Packet::UnsubAck(_) => 0xb0,
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect(_) => 0xe0,
        Packet::Auth(_) => 0xf0,
    }
}

/// Variable header and payload.
fn body<S: Sink>(packet: &Packet, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => connect(c, v, s),
        Packet::ConnAck(c) => connack(c, v, s),
        Packet::Publish(p) => publish(p, v, s),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            pub_resp(p, v, s)
        }
        Packet::Subscribe(p) => subscribe(p, v, s),
        Packet::SubAck(p) => suback(p, v, s),
        Packet::Unsubscribe(p) => unsubscribe(p, v, s),
        Packet::UnsubAck(p) => unsuback(p, v, s),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => disconnect(d, v, s),
        Packet::Auth(a) => auth(a, v, s),
    }
}

fn nonzero_pkid<S: Sink>(s: &mut S, pkid: u16) -> Result<(), EncodeError> {
    if pkid == 0 {
        return Err(EncodeError::Invalid("packet identifier 0"));
    }
    s.u16(pkid);
    Ok(())
}

fn connect<S: Sink>(c: &Connect, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    if c.protocol != v {
        return Err(EncodeError::Invalid(
            "CONNECT protocol differs from the encoding version",
        ));
    }
    let (name, level): (&str, u8) = match v {
        ProtocolVersion::V3_1 => ("MQIsdp", 3),
        ProtocolVersion::V3_1_1 => ("MQTT", 4),
        ProtocolVersion::V5 => ("MQTT", 5),
    };
    if !v.is_v5() && c.password.is_some() && c.username.is_none() {
        return Err(EncodeError::Invalid(
            "password without user name before MQTT 5",
        ));
    }
    put_str(s, name)?;
    s.u8(level);
    s.u8(connect_flags(c));
    s.u16(c.keep_alive);
    if v.is_v5() {
        put_props(s, &c.properties)?;
    }
    put_str(s, &c.client_id)?;
    if let Some(w) = &c.will {
        if v.is_v5() {
            put_props(s, &w.properties)?;
        }
        put_str(s, &w.topic)?;
        put_bin(s, &w.payload)?;
    }
    if let Some(u) = &c.username {
        put_str(s, u)?;
    }
    if let Some(p) = &c.password {
        put_bin(s, p)?;
    }
    Ok(())
}

/// The CONNECT flags byte (MQTT 3.1.2.3).
fn connect_flags(c: &Connect) -> u8 {
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    flags
}

fn connack<S: Sink>(c: &ConnAck, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u8(u8::from(c.session_present));
    if v.is_v5() {
        s.u8(c.reason as u8);
        put_props(s, &c.properties)
    } else {
        s.u8(c.reason.v3_return_code());
        Ok(())
    }
}

fn publish<S: Sink>(p: &Publish, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    if p.topic.is_empty() && !(v.is_v5() && p.properties.topic_alias.is_some()) {
        return Err(EncodeError::Invalid("empty topic name"));
    }
    put_str(s, &p.topic)?;
    if p.qos == QoS::AtMostOnce {
        if p.dup {
            return Err(EncodeError::Invalid("DUP set on QoS 0"));
        }
    } else {
        nonzero_pkid(s, p.pkid)?;
    }
    if v.is_v5() {
        put_props(s, &p.properties)?;
    }
    s.slice(&p.payload);
    Ok(())
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP: 5.0 omits a success reason without properties, and the
/// property length when there are no properties.
fn pub_resp<S: Sink>(p: &PubResp, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    nonzero_pkid(s, p.pkid)?;
    if v.is_v5() {
        reason_and_props(s, p.reason, &p.properties, p.properties.is_empty())?;
    }
    Ok(())
}

/// Optional reason code then optional properties (PUBACK family, DISCONNECT, AUTH in 5.0).
fn reason_and_props<S: Sink, P: Props>(
    s: &mut S,
    reason: u8,
    props: &P,
    props_empty: bool,
) -> Result<(), EncodeError> {
    if reason == 0 && props_empty {
        return Ok(());
    }
    s.u8(reason);
    if props_empty {
        return Ok(());
    }
    put_props(s, props)
}

fn subscribe<S: Sink>(p: &Subscribe, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    if p.filters.is_empty() {
        return Err(EncodeError::Invalid("SUBSCRIBE without topic filters"));
    }
    nonzero_pkid(s, p.pkid)?;
    if v.is_v5() {
        put_props(s, &p.properties)?;
    }
    for (filter, options) in &p.filters {
        put_str(s, filter)?;
        s.u8(options_byte(options, v)?);
    }
    Ok(())
}

/// The subscription options byte (MQTT 3.8.3.1); only QoS exists before 5.0.
fn options_byte(o: &SubscriptionOptions, v: ProtocolVersion) -> Result<u8, EncodeError> {
    let qos = o.qos as u8;
    if !v.is_v5() {
        return Ok(qos);
    }
    if o.retain_handling > 2 {
        return Err(EncodeError::Invalid("retain handling over 2"));
    }
    Ok(qos
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | (o.retain_handling << 4))
}

fn suback<S: Sink>(p: &SubAck, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.pkid);
    if v.is_v5() {
        put_props(s, &p.properties)?;
        s.slice(&p.reasons);
    } else {
        for &r in &p.reasons {
            s.u8(if r >= 0x80 { 0x80 } else { r });
        }
    }
    Ok(())
}

fn unsubscribe<S: Sink>(p: &Unsubscribe, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    if p.filters.is_empty() {
        return Err(EncodeError::Invalid("UNSUBSCRIBE without topic filters"));
    }
    nonzero_pkid(s, p.pkid)?;
    if v.is_v5() {
        put_props(s, &p.user_properties)?;
    }
    for filter in &p.filters {
        put_str(s, filter)?;
    }
    Ok(())
}

fn unsuback<S: Sink>(p: &UnsubAck, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.pkid);
    if v.is_v5() {
        put_props(s, &p.properties)?;
        s.slice(&p.reasons);
    }
    Ok(())
}

fn disconnect<S: Sink>(d: &Disconnect, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    if !v.is_v5() {
        return Ok(());
    }
    let empty = d.properties == DisconnectProperties::default();
    reason_and_props(s, d.reason, &d.properties, empty)
}

fn auth<S: Sink>(a: &Auth, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    if !v.is_v5() {
        return Err(EncodeError::NotInVersion("AUTH"));
    }
    let empty = a.properties == AuthProperties::default();
    if !(a.reason == 0 && empty) && a.properties.authentication_method.is_none() {
        return Err(EncodeError::Invalid("AUTH without authentication method"));
    }
    reason_and_props(s, a.reason, &a.properties, empty)
}
