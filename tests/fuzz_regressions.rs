//! Replays the fuzz targets' inputs as ordinary tests: every crash found by `fuzz/` is kept
//! under `tests/data/fuzz/<target>/`, next to the targets' seeds in `fuzz/seeds/<target>/`,
//! and runs here through the same checks as in `fuzz/fuzz_targets/` (kept in step by hand).

use std::path::Path;

use bytes::BytesMut;
use warren::protocol::{self, DecodeLimits, Packet, ProtocolVersion};

/// Every file of `tests/data/fuzz/<target>` and `fuzz/seeds/<target>`.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        root.join("tests/data/fuzz").join(target),
        root.join("fuzz/seeds").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("readable input");
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out.sort();
    out
}

fn version(config: u8) -> Option<ProtocolVersion> {
    match config & 0x03 {
        0 => None,
        1 => Some(ProtocolVersion::V3_1),
        2 => Some(ProtocolVersion::V3_1_1),
        _ => Some(ProtocolVersion::V5),
    }
}

/// `fuzz_targets/decode.rs`.
fn decode_checks(data: &[u8]) {
    let Some((&config, stream)) = data.split_first() else {
        return;
    };
    let limits = if config & 0x80 != 0 {
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
    let mut version = version(config);
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
                assert_eq!(framed, Ok(Some(before.len() - buf.len())));
                if let Packet::Connect(c) = &packet {
                    version = Some(c.protocol);
                }
            }
            Err(_) => return,
        }
    }
}

/// `fuzz_targets/roundtrip.rs`.
fn roundtrip_checks(data: &[u8]) {
    const LIMITS: DecodeLimits = DecodeLimits {
        max_packet_size: protocol::MAX_PACKET_SIZE,
        max_user_properties: usize::MAX,
    };
    let Some((&config, stream)) = data.split_first() else {
        return;
    };
    let version = version(config);
    let mut buf = BytesMut::from(stream);
    let Ok(Some(packet)) = protocol::decode(&mut buf, version, &LIMITS) else {
        return;
    };
    let consumed = stream.len() - buf.len();
    let at = match (&packet, version) {
        (Packet::Connect(c), _) => c.protocol,
        (_, Some(v)) => v,
        (_, None) => panic!("only CONNECT decodes before a version is known"),
    };
    let mut out = BytesMut::new();
    let written = protocol::encode(&packet, at, protocol::MAX_PACKET_SIZE, &mut out)
        .unwrap_or_else(|e| panic!("decoded {packet:?} does not encode: {e}"));
    assert_eq!(protocol::encoded_len(&packet, at), Ok(written));
    assert!(written <= consumed);
    let state = if matches!(packet, Packet::Connect(_)) {
        None
    } else {
        Some(at)
    };
    let mut again = out.clone();
    assert_eq!(
        protocol::decode(&mut again, state, &LIMITS),
        Ok(Some(packet))
    );
    assert!(again.is_empty());
}

#[test]
fn decode_inputs() {
    let inputs = inputs("decode");
    assert!(!inputs.is_empty(), "no inputs found");
    for (name, bytes) in inputs {
        eprintln!("{name}");
        decode_checks(&bytes);
    }
}

#[test]
fn roundtrip_inputs() {
    let inputs = inputs("roundtrip");
    assert!(!inputs.is_empty(), "no inputs found");
    for (name, bytes) in inputs {
        eprintln!("{name}");
        roundtrip_checks(&bytes);
    }
}
