//! MQTT 3.1, 3.1.1 and 5.0 on the wire: typed packets, a strict decoder and an allocation-free
//! encoder.
//!
//! This module owns bytes ⇄ [`Packet`] and every normative check the spec places on a single
//! packet. It knows nothing of sockets or sessions: [`decode`] is a pure function over a
//! `BytesMut` that returns `Ok(None)` until a whole packet is there, and refuses a declared length
//! over the configured maximum ([`DecodeLimits`]) before reserving anything, and user properties
//! past their limit before reading them; [`encode`] writes a whole packet or nothing. User
//! properties are kept compact, in their wire encoding ([`UserProperties`]).

pub mod alias;
mod decode;
mod encode;
mod error;
mod limits;
mod outgoing;
pub mod packet;
mod properties;
pub mod topic;
mod user_properties;
mod wire;

#[cfg(test)]
mod tests;

pub use alias::{AliasError, InboundAliases, OutAlias, OutboundAliases};
pub use decode::{decode, frame_len, server_disconnect_reason};
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use limits::DecodeLimits;
pub use outgoing::{encode_publish, PublishOut};
pub use packet::*;
pub use user_properties::{Iter as UserPropertiesIter, UserProperties};

/// The largest total packet size MQTT can express: 1-byte fixed header, 4-byte remaining length
/// and 268,435,455 bytes of body.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;
