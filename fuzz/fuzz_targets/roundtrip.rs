//! Whatever `protocol::decode` accepts, `protocol::encode` writes back, and decoding that gives
//! the same packet again: decode → encode → decode is the identity on packets.
//!
//! The first input byte picks the version the rest is decoded at (none yet: a CONNECT, whose
//! level is then the encoding version; or 3.1, 3.1.1, 5.0). Limits are large, so everything
//! MQTT allows is exercised; the encoding is canonical, so it is never longer than the input.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren::protocol::{self, DecodeLimits, Packet, ProtocolVersion};

const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: protocol::MAX_PACKET_SIZE,
    max_user_properties: usize::MAX,
};

fuzz_target!(|data: &[u8]| {
    let Some((&config, stream)) = data.split_first() else {
        return;
    };
    let version = match config & 0x03 {
        0 => None,
        1 => Some(ProtocolVersion::V3_1),
        2 => Some(ProtocolVersion::V3_1_1),
        _ => Some(ProtocolVersion::V5),
    };
    let mut buf = BytesMut::from(stream);
    let Ok(Some(packet)) = protocol::decode(&mut buf, version, &LIMITS) else {
        return;
    };
    let consumed = stream.len() - buf.len();
    let at = match (&packet, version) {
        (Packet::Connect(c), _) => c.protocol,
        (_, Some(v)) => v,
        (_, None) => unreachable!("only CONNECT decodes before a version is known"),
    };
    let mut out = BytesMut::new();
    let written = match protocol::encode(&packet, at, protocol::MAX_PACKET_SIZE, &mut out) {
        Ok(n) => n,
        Err(e) => panic!("decoded {packet:?} does not encode at {at:?}: {e}"),
    };
    assert_eq!(written, out.len());
    assert_eq!(protocol::encoded_len(&packet, at), Ok(written));
    assert!(
        written <= consumed,
        "encoding of {packet:?} is longer than its input"
    );
    let mut again = out.clone();
    let state = if matches!(packet, Packet::Connect(_)) {
        None
    } else {
        Some(at)
    };
    match protocol::decode(&mut again, state, &LIMITS) {
        Ok(Some(back)) => assert_eq!(back, packet, "round trip changed the packet"),
        other => panic!("encoding {out:02x?} of {packet:?} decodes as {other:?}"),
    }
    assert!(again.is_empty(), "encoding holds more than one packet");
});
