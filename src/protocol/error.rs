//! Codec errors, each naming the spec rule it enforces and mapping to an MQTT 5 reason code.

use super::packet::reason;

/// Why a packet could not be decoded. Every variant closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes do not form a valid packet (0x81 Malformed Packet). `rule` is the spec's
    /// normative statement id (e.g. "MQTT-3.3.2-2") or a short section reference.
    #[error("malformed packet ({rule}): {detail}")]
    Malformed {
        /// Normative statement id or section.
        rule: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// The packet is well formed but breaks a protocol rule (0x82 Protocol Error).
    #[error("protocol error ({rule}): {detail}")]
    Protocol {
        /// Normative statement id or section.
        rule: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// The declared packet size exceeds the allowed maximum (0x95 Packet too large).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Total size declared by the fixed header.
        size: u64,
        /// Allowed maximum.
        max: u32,
    },
    /// A PUBLISH topic name has more levels than the broker allows (0x90 Topic Name invalid).
    #[error("topic name has more than {max} levels")]
    TopicTooDeep {
        /// The limit, [`super::topic::MAX_TOPIC_LEVELS`].
        max: usize,
    },
    /// The packet carries more User Properties than allowed (0x97 Quota exceeded).
    #[error("more than {max} user properties in one packet (the max_user_properties limit)")]
    TooManyUserProperties {
        /// The limit, [`super::DecodeLimits::max_user_properties`].
        max: usize,
    },
    /// CONNECT names a protocol name/level this server does not speak (0x84; 3.1.1 return code 1).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol {
        /// Protocol name as sent (lossy).
        name: String,
        /// Protocol level byte.
        level: u8,
    },
}

impl DecodeError {
    /// The MQTT 5 reason code for a DISCONNECT (or CONNACK) that reports this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::Malformed { .. } => reason::MALFORMED_PACKET,
            DecodeError::Protocol { .. } => reason::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::TopicTooDeep { .. } => reason::TOPIC_NAME_INVALID,
            DecodeError::TooManyUserProperties { .. } => reason::QUOTA_EXCEEDED,
            DecodeError::UnsupportedProtocol { .. } => 0x84,
        }
    }

    /// Short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::Protocol { .. } => "protocol_error",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::TopicTooDeep { .. } => "topic_too_deep",
            DecodeError::TooManyUserProperties { .. } => "too_many_user_properties",
            DecodeError::UnsupportedProtocol { .. } => "unsupported_protocol",
        }
    }
}

/// Why a packet could not be encoded. Nothing has been written when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded packet would exceed the peer's Maximum Packet Size.
    #[error("packet of {size} bytes exceeds the peer's maximum of {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Peer's maximum.
        max: u32,
    },
    /// A string field is longer than 65,535 bytes.
    #[error("string field of {0} bytes is longer than 65,535")]
    StringTooLong(usize),
    /// A binary field is longer than 65,535 bytes.
    #[error("binary field of {0} bytes is longer than 65,535")]
    BinaryTooLong(usize),
    /// The packet cannot be expressed at this protocol level (e.g. AUTH on 3.1.1).
    #[error("{0} cannot be sent at this protocol level")]
    NotInVersion(&'static str),
    /// A field holds a value the spec forbids (e.g. packet id 0 on QoS 1).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}
