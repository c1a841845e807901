//! Encoder: [`Packet`] → bytes. (Stub: being written.)

use bytes::BytesMut;

use super::{EncodeError, Packet, ProtocolVersion};

/// Total encoded size of `packet` at `version` (fixed header included).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let _ = (packet, version);
    unimplemented!()
}

/// Appends `packet`, encoded for `version`, to `out`. Fails with nothing written when a field
/// cannot be encoded or the packet would exceed `max_packet_size` (the peer's limit).
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    max_packet_size: u32,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let _ = (packet, version, max_packet_size, out);
    unimplemented!()
}
