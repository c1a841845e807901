//! Typed MQTT control packets, shared by MQTT 3.1, 3.1.1 and 5.0.
//!
//! One set of types serves every protocol level: fields that exist only in 5.0 (properties, reason
//! codes) are simply empty or defaulted on older levels, and the codec decides what goes on the wire
//! from the connection's [`ProtocolVersion`]. Strings are [`ByteString`]s and binary data is
//! [`Bytes`], both slices of the read buffer: decoding a PUBLISH copies neither topic nor payload.
//! User properties are the exception: [`UserProperties`] owns a compact copy of their wire bytes.

use bytes::Bytes;
use bytestring::ByteString;

use super::user_properties::UserProperties;

/// The protocol level a connection speaks, fixed at CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (protocol name `MQIsdp`, level 3).
    V3_1,
    /// MQTT 3.1.1 (protocol name `MQTT`, level 4).
    V3_1_1,
    /// MQTT 5.0 (protocol name `MQTT`, level 5).
    V5,
}

impl ProtocolVersion {
    /// True for MQTT 5.0.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }

    /// Short label for logs and metrics: `"3.1"`, `"3.1.1"`, `"5.0"`.
    pub fn label(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "3.1",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        }
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; 3 is not a QoS.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Every control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (client → server).
    Connect(Box<Connect>),
    /// CONNACK (server → client).
    ConnAck(ConnAck),
    /// PUBLISH (both ways).
    Publish(Publish),
    /// PUBACK (both ways).
    PubAck(PubResp),
    /// PUBREC (both ways).
    PubRec(PubResp),
    /// PUBREL (both ways).
    PubRel(PubResp),
    /// PUBCOMP (both ways).
    PubComp(PubResp),
    /// SUBSCRIBE (client → server).
    Subscribe(Subscribe),
    /// SUBACK (server → client).
    SubAck(SubAck),
    /// UNSUBSCRIBE (client → server).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (server → client).
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT (both ways in 5.0; client → server before).
    Disconnect(Disconnect),
    /// AUTH (5.0 only).
    Auth(Auth),
}

/// Packet type names by their fixed-header type code (index 0 is unused).
pub const PACKET_TYPE_NAMES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

impl Packet {
    /// The fixed-header packet type code, 1 (CONNECT) to 15 (AUTH).
    pub fn type_code(&self) -> usize {
        match self {
            Packet::Connect(_) => 1,
            Packet::ConnAck(_) => 2,
            Packet::Publish(_) => 3,
            Packet::PubAck(_) => 4,
            Packet::PubRec(_) => 5,
            Packet::PubRel(_) => 6,
            Packet::PubComp(_) => 7,
            Packet::Subscribe(_) => 8,
            Packet::SubAck(_) => 9,
            Packet::Unsubscribe(_) => 10,
            Packet::UnsubAck(_) => 11,
            Packet::PingReq => 12,
            Packet::PingResp => 13,
            Packet::Disconnect(_) => 14,
            Packet::Auth(_) => 15,
        }
    }

    /// Name of the packet type, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "connect",
            Packet::ConnAck(_) => "connack",
            Packet::Publish(_) => "publish",
            Packet::PubAck(_) => "puback",
            Packet::PubRec(_) => "pubrec",
            Packet::PubRel(_) => "pubrel",
            Packet::PubComp(_) => "pubcomp",
            Packet::Subscribe(_) => "subscribe",
            Packet::SubAck(_) => "suback",
            Packet::Unsubscribe(_) => "unsubscribe",
            Packet::UnsubAck(_) => "unsuback",
            Packet::PingReq => "pingreq",
            Packet::PingResp => "pingresp",
            Packet::Disconnect(_) => "disconnect",
            Packet::Auth(_) => "auth",
        }
    }
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level announced by the client.
    pub protocol: ProtocolVersion,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty.
    pub client_id: ByteString,
    /// Will message, if the will flag is set.
    pub will: Option<Will>,
    /// User name, if present.
    pub username: Option<ByteString>,
    /// Password, if present (binary).
    pub password: Option<Bytes>,
    /// 5.0 CONNECT properties.
    pub properties: ConnectProperties,
}

/// CONNECT properties (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// 0x11 Session Expiry Interval (seconds). Absent means 0.
    pub session_expiry_interval: Option<u32>,
    /// 0x21 Receive Maximum.
    pub receive_maximum: Option<u16>,
    /// 0x27 Maximum Packet Size.
    pub maximum_packet_size: Option<u32>,
    /// 0x22 Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// 0x19 Request Response Information.
    pub request_response_information: Option<u8>,
    /// 0x17 Request Problem Information.
    pub request_problem_information: Option<u8>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
}

/// The will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will topic (a topic name, no wildcards).
    pub topic: ByteString,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain.
    pub retain: bool,
    /// 5.0 will properties.
    pub properties: WillProperties,
}

/// Will properties (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    /// 0x18 Will Delay Interval (seconds).
    pub will_delay_interval: Option<u32>,
    /// 0x01 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval (seconds).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<ByteString>,
    /// 0x08 Response Topic.
    pub response_topic: Option<ByteString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// Reason code in 5.0 terms; the codec maps it to a 3.1.1 return code on older levels.
    pub reason: ConnectReason,
    /// 5.0 CONNACK properties.
    pub properties: ConnAckProperties,
}

/// CONNACK properties (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    /// 0x11 Session Expiry Interval.
    pub session_expiry_interval: Option<u32>,
    /// 0x21 Receive Maximum.
    pub receive_maximum: Option<u16>,
    /// 0x24 Maximum QoS.
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available.
    pub retain_available: Option<u8>,
    /// 0x27 Maximum Packet Size.
    pub maximum_packet_size: Option<u32>,
    /// 0x12 Assigned Client Identifier.
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x22 Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x28 Wildcard Subscription Available.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifiers Available.
    pub subscription_identifiers_available: Option<u8>,
    /// 0x2A Shared Subscription Available.
    pub shared_subscription_available: Option<u8>,
    /// 0x13 Server Keep Alive.
    pub server_keep_alive: Option<u16>,
    /// 0x1A Response Information.
    pub response_information: Option<ByteString>,
    /// 0x1C Server Reference.
    pub server_reference: Option<ByteString>,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
}

/// CONNACK reason codes (5.0 values). On 3.1/3.1.1 the codec maps them to return codes 0–5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum ConnectReason {
    /// 0x00 Success (3.1.1: 0 accepted).
    #[default]
    Success = 0x00,
    /// 0x80 Unspecified error (3.1.1: 3 server unavailable).
    UnspecifiedError = 0x80,
    /// 0x81 Malformed Packet (3.1.1: no CONNACK is sent; connection closed).
    MalformedPacket = 0x81,
    /// 0x82 Protocol Error.
    ProtocolError = 0x82,
    /// 0x83 Implementation specific error.
    ImplementationSpecificError = 0x83,
    /// 0x84 Unsupported Protocol Version (3.1.1: 1).
    UnsupportedProtocolVersion = 0x84,
    /// 0x85 Client Identifier not valid (3.1.1: 2).
    ClientIdentifierNotValid = 0x85,
    /// 0x86 Bad User Name or Password (3.1.1: 4).
    BadUserNameOrPassword = 0x86,
    /// 0x87 Not authorized (3.1.1: 5).
    NotAuthorized = 0x87,
    /// 0x88 Server unavailable (3.1.1: 3).
    ServerUnavailable = 0x88,
    /// 0x89 Server busy (3.1.1: 3).
    ServerBusy = 0x89,
    /// 0x8A Banned (3.1.1: 5).
    Banned = 0x8A,
    /// 0x8C Bad authentication method (3.1.1: 5).
    BadAuthenticationMethod = 0x8C,
    /// 0x90 Topic Name invalid.
    TopicNameInvalid = 0x90,
    /// 0x95 Packet too large.
    PacketTooLarge = 0x95,
    /// 0x97 Quota exceeded.
    QuotaExceeded = 0x97,
    /// 0x99 Payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// 0x9A Retain not supported.
    RetainNotSupported = 0x9A,
    /// 0x9B QoS not supported.
    QoSNotSupported = 0x9B,
    /// 0x9C Use another server.
    UseAnotherServer = 0x9C,
    /// 0x9D Server moved.
    ServerMoved = 0x9D,
    /// 0x9F Connection rate exceeded.
    ConnectionRateExceeded = 0x9F,
}

impl ConnectReason {
    /// The 3.1/3.1.1 CONNACK return code for this reason.
    pub fn v3_return_code(self) -> u8 {
        use ConnectReason::*;
        match self {
            Success => 0,
            UnsupportedProtocolVersion => 1,
            ClientIdentifierNotValid => 2,
            BadUserNameOrPassword => 4,
            NotAuthorized | Banned | BadAuthenticationMethod => 5,
            _ => 3,
        }
    }

    /// Parses a 5.0 CONNACK reason code.
    pub fn from_u8(v: u8) -> Option<ConnectReason> {
        use ConnectReason::*;
        Some(match v {
            0x00 => Success,
            0x80 => UnspecifiedError,
            0x81 => MalformedPacket,
            0x82 => ProtocolError,
            0x83 => ImplementationSpecificError,
            0x84 => UnsupportedProtocolVersion,
            0x85 => ClientIdentifierNotValid,
            0x86 => BadUserNameOrPassword,
            0x87 => NotAuthorized,
            0x88 => ServerUnavailable,
            0x89 => ServerBusy,
            0x8A => Banned,
            0x8C => BadAuthenticationMethod,
            0x90 => TopicNameInvalid,
            0x95 => PacketTooLarge,
            0x97 => QuotaExceeded,
            0x99 => PayloadFormatInvalid,
            0x9A => RetainNotSupported,
            0x9B => QoSNotSupported,
            0x9C => UseAnotherServer,
            0x9D => ServerMoved,
            0x9F => ConnectionRateExceeded,
            _ => return None,
        })
    }

    /// Parses a 3.1/3.1.1 CONNACK return code.
    pub fn from_v3_return_code(v: u8) -> Option<ConnectReason> {
        use ConnectReason::*;
        Some(match v {
            0 => Success,
            1 => UnsupportedProtocolVersion,
            2 => ClientIdentifierNotValid,
            3 => ServerUnavailable,
            4 => BadUserNameOrPassword,
            5 => NotAuthorized,
            _ => return None,
        })
    }
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name (may be empty in 5.0 when a topic alias is used).
    pub topic: ByteString,
    /// Packet identifier; 0 for QoS 0, non-zero otherwise.
    pub pkid: u16,
    /// 5.0 PUBLISH properties.
    pub properties: PublishProperties,
    /// Application payload.
    pub payload: Bytes,
}

/// PUBLISH properties (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    /// 0x01 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval.
    pub message_expiry_interval: Option<u32>,
    /// 0x23 Topic Alias (never 0).
    pub topic_alias: Option<u16>,
    /// 0x08 Response Topic.
    pub response_topic: Option<ByteString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x0B Subscription Identifier (may repeat; server → client only).
    pub subscription_identifiers: Vec<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<ByteString>,
}

impl PublishProperties {
    /// True when no property is set (the common case, and always on 3.1.1).
    pub fn is_empty(&self) -> bool {
        *self == PublishProperties::default()
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubResp {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// 5.0 reason code (0x00 success). Omitted on the wire when 0 and no properties.
    pub reason: u8,
    /// 5.0 properties.
    pub properties: AckProperties,
}

impl PubResp {
    /// A success response for `pkid`.
    pub fn new(pkid: u16) -> PubResp {
        PubResp {
            pkid,
            ..PubResp::default()
        }
    }
}

/// Properties of PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK (5.0): reason string, user properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}

impl AckProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

/// Reason codes used in PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK/DISCONNECT (5.0).
pub mod reason {
    /// Success / Normal disconnection / Granted QoS 0.
    pub const SUCCESS: u8 = 0x00;
    /// Granted QoS 1.
    pub const GRANTED_QOS_1: u8 = 0x01;
    /// Continue authentication (AUTH).
    pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
    /// Re-authenticate (AUTH).
    pub const RE_AUTHENTICATE: u8 = 0x19;
    /// Granted QoS 2.
    pub const GRANTED_QOS_2: u8 = 0x02;
    /// Disconnect with Will Message.
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    /// No matching subscribers.
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    /// No subscription existed.
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    /// Unspecified error.
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    /// Malformed Packet.
    pub const MALFORMED_PACKET: u8 = 0x81;
    /// Protocol Error.
    pub const PROTOCOL_ERROR: u8 = 0x82;
    /// Implementation specific error.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 0x87;
    /// Bad authentication method.
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    /// Server busy.
    pub const SERVER_BUSY: u8 = 0x89;
    /// Server shutting down.
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    /// Keep Alive timeout.
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    /// Session taken over.
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    /// Topic Filter invalid.
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    /// Topic Name invalid.
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    /// Packet Identifier in use.
    pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
    /// Packet Identifier not found.
    pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
    /// Receive Maximum exceeded.
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    /// Topic Alias invalid.
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    /// Packet too large.
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    /// Administrative action.
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    /// Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    /// Retain not supported.
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    /// QoS not supported.
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
    /// Shared Subscriptions not supported.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    /// Subscription Identifiers not supported.
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
    /// Wildcard Subscriptions not supported.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;

    /// A short text for a refusal code, for Reason String properties.
    pub fn describe(code: u8) -> &'static str {
        match code {
            UNSPECIFIED_ERROR => "unspecified error",
            MALFORMED_PACKET => "malformed packet",
            PROTOCOL_ERROR => "protocol error",
            IMPLEMENTATION_SPECIFIC_ERROR => "implementation specific error",
            NOT_AUTHORIZED => "not authorized",
            SERVER_BUSY => "server busy",
            TOPIC_FILTER_INVALID => "topic filter invalid",
            TOPIC_NAME_INVALID => "topic name invalid",
            PACKET_IDENTIFIER_IN_USE => "packet identifier in use",
            QUOTA_EXCEEDED => "quota exceeded",
            PAYLOAD_FORMAT_INVALID => "payload format invalid",
            RETAIN_NOT_SUPPORTED => "retain not supported",
            QOS_NOT_SUPPORTED => "QoS not supported",
            SHARED_SUBSCRIPTIONS_NOT_SUPPORTED => "shared subscriptions not supported",
            SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED => "subscription identifiers not supported",
            WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED => "wildcard subscriptions not supported",
            _ => "refused",
        }
    }
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// At least one filter with its options.
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    /// 5.0 properties.
    pub properties: SubscribeProperties,
}

/// SUBSCRIBE properties (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    /// 0x0B Subscription Identifier (1..=268,435,455).
    pub subscription_identifier: Option<u32>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}

/// Subscription options byte. On 3.1.1 only `qos` is meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (5.0).
    pub no_local: bool,
    /// Retain As Published (5.0).
    pub retain_as_published: bool,
    /// Retain Handling 0, 1 or 2 (5.0).
    pub retain_handling: u8,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier.
    pub pkid: u16,
    /// One reason code a filter: granted QoS 0/1/2, or ≥ 0x80 failure (3.1.1 writes 0x80).
    pub reasons: Vec<u8>,
    /// 5.0 properties.
    pub properties: AckProperties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// At least one filter.
    pub filters: Vec<ByteString>,
    /// 5.0 user properties.
    pub user_properties: UserProperties,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier.
    pub pkid: u16,
    /// One reason code a filter (5.0 only; empty and not written on 3.1.1).
    pub reasons: Vec<u8>,
    /// 5.0 properties.
    pub properties: AckProperties,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// 5.0 reason code (0x00 normal).
    pub reason: u8,
    /// 5.0 properties.
    pub properties: DisconnectProperties,
}

/// DISCONNECT properties (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    /// 0x11 Session Expiry Interval.
    pub session_expiry_interval: Option<u32>,
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x1C Server Reference.
    pub server_reference: Option<ByteString>,
}

/// AUTH (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason: u8,
    /// AUTH properties.
    pub properties: AuthProperties,
}

/// AUTH properties (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    /// 0x15 Authentication Method (required whenever AUTH is sent).
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}
