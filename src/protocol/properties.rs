//! MQTT 5.0 properties (MQTT 2.2.2): the property identifiers, which packet may carry which
//! property, duplicate and range checks on decode, and property-section encoding.
//!
//! Decoding reads one `(identifier, value)` at a time with [`Reader::property`]; each packet's
//! `decode_*` function accepts only the identifiers the spec lists for that packet (anything else
//! is a Malformed Packet, MQTT 2.2.2.2) and refuses duplicates (Protocol Error) except User
//! Property and, in PUBLISH, Subscription Identifier. User Properties are copied into one
//! [`UserProperties`] a section, within the packet's [`Budget`]. Encoding goes through [`Props`],
//! measured then written via the same code.

use bytes::Bytes;
use bytestring::ByteString;

use super::packet::*;
use super::user_properties::{Budget, Collector, UserProperties};
use super::wire::{malformed, protocol, put_bin, put_str, put_varint, Counter, Reader, Sink};
use super::{DecodeError, EncodeError};

/// Property identifiers.
pub(crate) mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

use id::*;

/// A decoded property value; its variant is fixed by the identifier.
pub(crate) enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(ByteString),
    Bin(Bytes),
    /// A User Property: its pair has not been read yet (see [`Collector::read`]).
    User,
}

impl Reader<'_> {
    /// Reads one property: identifier (a variable byte integer, MQTT 2.2.2.2) and typed value.
    pub(crate) fn property(&mut self) -> Result<(u8, Value), DecodeError> {
        let ident = self.varint()?;
        let ident =
            u8::try_from(ident).map_err(|_| malformed("2.2.2.2", "unknown property identifier"))?;
        let value = match ident {
            PAYLOAD_FORMAT_INDICATOR
            | REQUEST_PROBLEM_INFORMATION
            | REQUEST_RESPONSE_INFORMATION
            | MAXIMUM_QOS
            | RETAIN_AVAILABLE
            | WILDCARD_SUBSCRIPTION_AVAILABLE
            | SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | SHARED_SUBSCRIPTION_AVAILABLE => Value::Byte(self.u8()?),
            SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => {
                Value::U16(self.u16()?)
            }
            MESSAGE_EXPIRY_INTERVAL
            | SESSION_EXPIRY_INTERVAL
            | WILL_DELAY_INTERVAL
            | MAXIMUM_PACKET_SIZE => Value::U32(self.u32()?),
            SUBSCRIPTION_IDENTIFIER => Value::VarInt(self.varint()?),
            CONTENT_TYPE
            | RESPONSE_TOPIC
            | ASSIGNED_CLIENT_IDENTIFIER
            | AUTHENTICATION_METHOD
            | RESPONSE_INFORMATION
            | SERVER_REFERENCE
            | REASON_STRING => Value::Str(self.string()?),
            CORRELATION_DATA | AUTHENTICATION_DATA => Value::Bin(self.binary()?),
            USER_PROPERTY => Value::User,
            _ => return Err(malformed("2.2.2.2", "unknown property identifier")),
        };
        Ok((ident, value))
    }

    /// Reads the property length and returns a reader over exactly the properties.
    pub(crate) fn properties(&mut self) -> Result<Reader<'_>, DecodeError> {
        let n = self.varint()? as usize;
        if n > self.remaining() {
            return Err(malformed("2.2.2.1", "property length exceeds the packet"));
        }
        self.sub(n)
    }
}

fn not_allowed() -> DecodeError {
    malformed("2.2.2.2", "property not allowed in this packet")
}

/// Stores a property that may appear at most once.
fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(protocol("2.2.2.2", "property included more than once"));
    }
    *slot = Some(v);
    Ok(())
}

/// A byte property whose only valid values are 0 and 1.
fn flag(v: u8, rule: &'static str) -> Result<u8, DecodeError> {
    if v > 1 {
        return Err(protocol(rule, "property value must be 0 or 1"));
    }
    Ok(v)
}

fn nonzero_u16(v: u16, rule: &'static str) -> Result<u16, DecodeError> {
    if v == 0 {
        return Err(protocol(rule, "property value must not be 0"));
    }
    Ok(v)
}

fn nonzero_u32(v: u32, rule: &'static str) -> Result<u32, DecodeError> {
    if v == 0 {
        return Err(protocol(rule, "property value must not be 0"));
    }
    Ok(v)
}

fn subscription_id(v: u32, rule: &'static str) -> Result<u32, DecodeError> {
    if v == 0 {
        return Err(protocol(rule, "subscription identifier 0"));
    }
    Ok(v)
}

fn response_topic(v: ByteString) -> Result<ByteString, DecodeError> {
    if !super::topic::valid_topic_name(&v) {
        return Err(protocol(
            "MQTT-3.3.2-14",
            "response topic is not a topic name",
        ));
    }
    Ok(v)
}

/// CONNECT properties (MQTT 3.1.2.11).
pub(crate) fn decode_connect(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    let mut r = r.properties()?;
    let mut users = Collector::new();
    while !r.is_empty() {
        match r.property()? {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => once(&mut p.session_expiry_interval, v)?,
            (RECEIVE_MAXIMUM, Value::U16(v)) => {
                once(&mut p.receive_maximum, nonzero_u16(v, "3.1.2.11.3")?)?
            }
            (MAXIMUM_PACKET_SIZE, Value::U32(v)) => {
                once(&mut p.maximum_packet_size, nonzero_u32(v, "3.1.2.11.4")?)?
            }
            (TOPIC_ALIAS_MAXIMUM, Value::U16(v)) => once(&mut p.topic_alias_maximum, v)?,
            (REQUEST_RESPONSE_INFORMATION, Value::Byte(v)) => {
                once(&mut p.request_response_information, flag(v, "3.1.2.11.6")?)?
            }
            (REQUEST_PROBLEM_INFORMATION, Value::Byte(v)) => {
                once(&mut p.request_problem_information, flag(v, "3.1.2.11.7")?)?
            }
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            (AUTHENTICATION_METHOD, Value::Str(v)) => once(&mut p.authentication_method, v)?,
            (AUTHENTICATION_DATA, Value::Bin(v)) => once(&mut p.authentication_data, v)?,
            _ => return Err(not_allowed()),
        }
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(protocol(
            "3.1.2.11.10",
            "authentication data without a method",
        ));
    }
    users.finish_into(&mut p.user_properties);
    Ok(p)
}

/// Will properties (MQTT 3.1.3.2).
pub(crate) fn decode_will(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<WillProperties, DecodeError> {
    let mut p = WillProperties::default();
    let mut r = r.properties()?;
    let mut users = Collector::new();
    while !r.is_empty() {
        match r.property()? {
            (WILL_DELAY_INTERVAL, Value::U32(v)) => once(&mut p.will_delay_interval, v)?,
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                once(&mut p.payload_format_indicator, flag(v, "3.1.3.2.3")?)?
            }
            (MESSAGE_EXPIRY_INTERVAL, Value::U32(v)) => once(&mut p.message_expiry_interval, v)?,
            (CONTENT_TYPE, Value::Str(v)) => once(&mut p.content_type, v)?,
            (RESPONSE_TOPIC, Value::Str(v)) => once(&mut p.response_topic, response_topic(v)?)?,
            (CORRELATION_DATA, Value::Bin(v)) => once(&mut p.correlation_data, v)?,
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            _ => return Err(not_allowed()),
        }
    }
    users.finish_into(&mut p.user_properties);
    Ok(p)
}

/// CONNACK properties (MQTT 3.2.2.3).
pub(crate) fn decode_connack(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    let mut r = r.properties()?;
    let mut users = Collector::new();
    while !r.is_empty() {
        match r.property()? {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => once(&mut p.session_expiry_interval, v)?,
            (RECEIVE_MAXIMUM, Value::U16(v)) => {
                once(&mut p.receive_maximum, nonzero_u16(v, "3.2.2.3.3")?)?
            }
            (MAXIMUM_QOS, Value::Byte(v)) => once(&mut p.maximum_qos, flag(v, "3.2.2.3.4")?)?,
            (RETAIN_AVAILABLE, Value::Byte(v)) => {
                once(&mut p.retain_available, flag(v, "3.2.2.3.5")?)?
            }
            (MAXIMUM_PACKET_SIZE, Value::U32(v)) => {
                once(&mut p.maximum_packet_size, nonzero_u32(v, "3.2.2.3.6")?)?
            }
            (ASSIGNED_CLIENT_IDENTIFIER, Value::Str(v)) => {
                once(&mut p.assigned_client_identifier, v)?
            }
            (TOPIC_ALIAS_MAXIMUM, Value::U16(v)) => once(&mut p.topic_alias_maximum, v)?,
            (REASON_STRING, Value::Str(v)) => once(&mut p.reason_string, v)?,
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            (WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => once(
                &mut p.wildcard_subscription_available,
                flag(v, "3.2.2.3.11")?,
            )?,
            (SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(v)) => once(
                &mut p.subscription_identifiers_available,
                flag(v, "3.2.2.3.12")?,
            )?,
            (SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                once(&mut p.shared_subscription_available, flag(v, "3.2.2.3.13")?)?
            }
            (SERVER_KEEP_ALIVE, Value::U16(v)) => once(&mut p.server_keep_alive, v)?,
            (RESPONSE_INFORMATION, Value::Str(v)) => once(&mut p.response_information, v)?,
            (SERVER_REFERENCE, Value::Str(v)) => once(&mut p.server_reference, v)?,
            (AUTHENTICATION_METHOD, Value::Str(v)) => once(&mut p.authentication_method, v)?,
            (AUTHENTICATION_DATA, Value::Bin(v)) => once(&mut p.authentication_data, v)?,
            _ => return Err(not_allowed()),
        }
    }
    users.finish_into(&mut p.user_properties);
    Ok(p)
}

/// PUBLISH properties (MQTT 3.3.2.3).
pub(crate) fn decode_publish(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<PublishProperties, DecodeError> {
    let mut p = PublishProperties::default();
    let mut r = r.properties()?;
    let mut users = Collector::new();
    while !r.is_empty() {
        match r.property()? {
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                once(&mut p.payload_format_indicator, flag(v, "3.3.2.3.2")?)?
            }
            (MESSAGE_EXPIRY_INTERVAL, Value::U32(v)) => once(&mut p.message_expiry_interval, v)?,
            // Alias 0 is refused by the receiver's alias table, with 0x94 (MQTT-3.3.2-8).
            (TOPIC_ALIAS, Value::U16(v)) => once(&mut p.topic_alias, v)?,
            (RESPONSE_TOPIC, Value::Str(v)) => once(&mut p.response_topic, response_topic(v)?)?,
            (CORRELATION_DATA, Value::Bin(v)) => once(&mut p.correlation_data, v)?,
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            (SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => p
                .subscription_identifiers
                .push(subscription_id(v, "3.3.2.3.8")?),
            (CONTENT_TYPE, Value::Str(v)) => once(&mut p.content_type, v)?,
            _ => return Err(not_allowed()),
        }
    }
    users.finish_into(&mut p.user_properties);
    Ok(p)
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK properties: reason string and user properties.
pub(crate) fn decode_ack(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<AckProperties, DecodeError> {
    let mut p = AckProperties::default();
    let mut r = r.properties()?;
    let mut users = Collector::new();
    while !r.is_empty() {
        match r.property()? {
            (REASON_STRING, Value::Str(v)) => once(&mut p.reason_string, v)?,
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            _ => return Err(not_allowed()),
        }
    }
    users.finish_into(&mut p.user_properties);
    Ok(p)
}

/// SUBSCRIBE properties (MQTT 3.8.2.1).
pub(crate) fn decode_subscribe(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<SubscribeProperties, DecodeError> {
    let mut p = SubscribeProperties::default();
    let mut r = r.properties()?;
    let mut users = Collector::new();
    while !r.is_empty() {
        match r.property()? {
            (SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => once(
                &mut p.subscription_identifier,
                subscription_id(v, "3.8.2.1.2")?,
            )?,
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            _ => return Err(not_allowed()),
        }
    }
    users.finish_into(&mut p.user_properties);
    Ok(p)
}

/// UNSUBSCRIBE properties (MQTT 3.10.2.1): user properties only.
pub(crate) fn decode_unsubscribe(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<UserProperties, DecodeError> {
    let mut users = Collector::new();
    let mut r = r.properties()?;
    while !r.is_empty() {
        match r.property()? {
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            _ => return Err(not_allowed()),
        }
    }
    Ok(users.finish())
}

/// DISCONNECT properties (MQTT 3.14.2.2).
pub(crate) fn decode_disconnect(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    let mut r = r.properties()?;
    let mut users = Collector::new();
    while !r.is_empty() {
        match r.property()? {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => once(&mut p.session_expiry_interval, v)?,
            (REASON_STRING, Value::Str(v)) => once(&mut p.reason_string, v)?,
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            (SERVER_REFERENCE, Value::Str(v)) => once(&mut p.server_reference, v)?,
            _ => return Err(not_allowed()),
        }
    }
    users.finish_into(&mut p.user_properties);
    Ok(p)
}

/// AUTH properties (MQTT 3.15.2.2).
pub(crate) fn decode_auth(
    r: &mut Reader<'_>,
    budget: &mut Budget,
) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    let mut r = r.properties()?;
    let mut users = Collector::new();
    while !r.is_empty() {
        match r.property()? {
            (AUTHENTICATION_METHOD, Value::Str(v)) => once(&mut p.authentication_method, v)?,
            (AUTHENTICATION_DATA, Value::Bin(v)) => once(&mut p.authentication_data, v)?,
            (REASON_STRING, Value::Str(v)) => once(&mut p.reason_string, v)?,
            (USER_PROPERTY, Value::User) => users.read(&mut r, budget)?,
            _ => return Err(not_allowed()),
        }
    }
    users.finish_into(&mut p.user_properties);
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// A property set that can write itself (without the length prefix).
pub(crate) trait Props {
    /// Writes every present property.
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError>;
}

/// Writes a property section: the property length, then the properties.
pub(crate) fn put_props<S: Sink, P: Props + ?Sized>(s: &mut S, p: &P) -> Result<(), EncodeError> {
    let mut c = Counter::default();
    p.write(&mut c)?;
    put_varint(s, c.0)?;
    p.write(s)
}

fn opt_u8<S: Sink>(s: &mut S, ident: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.u8(ident);
        s.u8(v);
    }
}

fn opt_u16<S: Sink>(s: &mut S, ident: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.u8(ident);
        s.u16(v);
    }
}

fn opt_u32<S: Sink>(s: &mut S, ident: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.u8(ident);
        s.u32(v);
    }
}

fn opt_str<S: Sink>(s: &mut S, ident: u8, v: &Option<ByteString>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.u8(ident);
        put_str(s, v)?;
    }
    Ok(())
}

fn opt_bin<S: Sink>(s: &mut S, ident: u8, v: &Option<Bytes>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.u8(ident);
        put_bin(s, v)?;
    }
    Ok(())
}

fn subscription_id_out<S: Sink>(s: &mut S, v: u32) -> Result<(), EncodeError> {
    if v == 0 {
        return Err(EncodeError::Invalid("subscription identifier 0"));
    }
    s.u8(SUBSCRIPTION_IDENTIFIER);
    put_varint(s, v as usize)
}

/// User properties: their wire encoding, copied.
fn users<S: Sink>(s: &mut S, v: &UserProperties) -> Result<(), EncodeError> {
    s.slice(v.wire().map_err(EncodeError::StringTooLong)?);
    Ok(())
}

impl Props for ConnectProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        opt_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        opt_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        opt_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        opt_u8(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        opt_u8(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        users(s, &self.user_properties)?;
        opt_str(s, AUTHENTICATION_METHOD, &self.authentication_method)?;
        opt_bin(s, AUTHENTICATION_DATA, &self.authentication_data)
    }
}

impl Props for WillProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        opt_u32(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        opt_u8(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        opt_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        opt_str(s, CONTENT_TYPE, &self.content_type)?;
        opt_str(s, RESPONSE_TOPIC, &self.response_topic)?;
        opt_bin(s, CORRELATION_DATA, &self.correlation_data)?;
        users(s, &self.user_properties)
    }
}

impl Props for ConnAckProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        opt_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        opt_u8(s, MAXIMUM_QOS, self.maximum_qos);
        opt_u8(s, RETAIN_AVAILABLE, self.retain_available);
        opt_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        opt_str(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        )?;
        opt_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        opt_str(s, REASON_STRING, &self.reason_string)?;
        users(s, &self.user_properties)?;
        opt_u8(
            s,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        opt_u8(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        opt_u8(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        opt_u16(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        opt_str(s, RESPONSE_INFORMATION, &self.response_information)?;
        opt_str(s, SERVER_REFERENCE, &self.server_reference)?;
        opt_str(s, AUTHENTICATION_METHOD, &self.authentication_method)?;
        opt_bin(s, AUTHENTICATION_DATA, &self.authentication_data)
    }
}

impl Props for PublishProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        write_publish(
            s,
            self,
            &self.subscription_identifiers,
            self.message_expiry_interval,
            self.topic_alias,
        )
    }
}

/// The properties of a PUBLISH, with the three that differ per delivery (subscription
/// identifiers, the expiry left, the topic alias) given apart from the message's own.
pub(crate) fn write_publish<S: Sink>(
    s: &mut S,
    p: &PublishProperties,
    subscription_ids: &[u32],
    message_expiry_interval: Option<u32>,
    topic_alias: Option<u16>,
) -> Result<(), EncodeError> {
    opt_u8(s, PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator);
    opt_u32(s, MESSAGE_EXPIRY_INTERVAL, message_expiry_interval);
    if topic_alias == Some(0) {
        return Err(EncodeError::Invalid("topic alias 0"));
    }
    opt_u16(s, TOPIC_ALIAS, topic_alias);
    opt_str(s, RESPONSE_TOPIC, &p.response_topic)?;
    opt_bin(s, CORRELATION_DATA, &p.correlation_data)?;
    users(s, &p.user_properties)?;
    for &v in subscription_ids {
        subscription_id_out(s, v)?;
    }
    opt_str(s, CONTENT_TYPE, &p.content_type)
}

impl Props for AckProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        opt_str(s, REASON_STRING, &self.reason_string)?;
        users(s, &self.user_properties)
    }
}

impl Props for SubscribeProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = self.subscription_identifier {
            subscription_id_out(s, v)?;
        }
        users(s, &self.user_properties)
    }
}

impl Props for UserProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        users(s, self)
    }
}

impl Props for DisconnectProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        opt_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_str(s, REASON_STRING, &self.reason_string)?;
        users(s, &self.user_properties)?;
        opt_str(s, SERVER_REFERENCE, &self.server_reference)
    }
}

impl Props for AuthProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        opt_str(s, AUTHENTICATION_METHOD, &self.authentication_method)?;
        opt_bin(s, AUTHENTICATION_DATA, &self.authentication_data)?;
        opt_str(s, REASON_STRING, &self.reason_string)?;
        users(s, &self.user_properties)
    }
}
