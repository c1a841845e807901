//! Decoder: bytes → [`Packet`]. (Stub: being written.)

use bytes::BytesMut;

use super::{DecodeError, Packet, ProtocolVersion};

/// Reads the fixed header at the start of `buf`. Returns the total packet length (fixed header
/// included) once the fixed header is complete, `Ok(None)` while it is not. Fails when the
/// remaining length uses more than 4 bytes or the total exceeds `max_packet_size`, before
/// anything is reserved.
pub fn frame_len(buf: &[u8], max_packet_size: u32) -> Result<Option<usize>, DecodeError> {
    let _ = (buf, max_packet_size);
    unimplemented!()
}

/// Decodes one packet from the front of `buf`.
///
/// `version` is `None` until CONNECT has been read: then only CONNECT is accepted (anything else
/// is a protocol error, MQTT-3.1.0-1). Returns `Ok(None)` and leaves `buf` untouched while the
/// packet is incomplete; on `Ok(Some(_))` the packet's bytes are consumed.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    unimplemented!()
}
