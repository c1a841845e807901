//! Entry points for the fuzz targets (`fuzz/`, target `amqp`): the AMQP decoders on arbitrary
//! bytes. Not an API.

use bytes::{Bytes, BytesMut};

use crate::amqp::wire::method::Method;
use crate::amqp::wire::props::BasicProperties;
use crate::amqp::wire::table::FieldTable;
use crate::amqp::wire::{self, Cursor, FRAME_HEADER, FRAME_METHOD, FRAME_MIN};

/// Decodes `data` as a stream of frames (the first byte picks the largest frame accepted)
/// and, apart, as one field table. Panics only if a promise breaks: properties that decode
/// must encode, and decode back to what encodes to the same bytes (bytes, not values: a NaN
/// float is not equal to itself).
pub fn amqp_frames(data: &[u8]) {
    let Some((&config, rest)) = data.split_first() else {
        return;
    };
    let max = FRAME_MIN as usize * (usize::from(config) + 1);
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(f)) = wire::take_frame(&mut buf, max) {
        match f.kind {
            FRAME_METHOD => {
                let _ = Method::decode(f.payload);
            }
            FRAME_HEADER => {
                if let Ok((size, p)) = BasicProperties::decode(Cursor::new(f.payload)) {
                    let mut out = BytesMut::new();
                    // Decoded short strings are at most 255 bytes: encoding cannot fail.
                    p.encode(size, &mut out).expect("decoded properties encode");
                    let once = out.clone().freeze();
                    let (size2, back) =
                        BasicProperties::decode(Cursor::new(once.clone())).expect("round trip");
                    let mut again = BytesMut::new();
                    back.encode(size2, &mut again).expect("encode again");
                    assert_eq!(&again[..], &once[..]);
                }
            }
            _ => {}
        }
    }
    let _ = FieldTable::decode(&mut Cursor::new(Bytes::copy_from_slice(rest)));
}

#[cfg(test)]
mod tests {
    /// Fuzzing's first finding (a false alarm of the harness: a NaN header compared unequal to
    /// itself), kept as a regression test of the harness.
    #[test]
    fn a_nan_header_round_trips() {
        let input: &[u8] = &[
            0x00, 0x31, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1f, 0x00, 0x3c, 0x00, 0x52, 0xff, 0x74,
            0x61, 0x67, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x09, 0x61, 0x6d,
            0x71, 0x2e, 0x74, 0x6f, 0x70, 0x69, 0x63, 0x03, 0x21, 0x2e, 0x62, 0xce, 0x02, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x32, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x03, 0xa0, 0x80, 0x0a, 0x18, 0x70, 0x69, 0x63, 0x03, 0x61, 0x00, 0x00,
            0x69, 0x6e, 0x00, 0x00, 0x00, 0x10, 0x01, 0x6b, 0x53, 0x00, 0x00, 0x00, 0x02, 0x76,
            0x76, 0x01, 0x6e, 0x66, 0xff, 0xf8, 0x00, 0x00, 0x04, 0x69, 0x64, 0xde, 0x31, 0xce,
            0xfa, 0x01, 0x01, 0x00,
        ];
        super::amqp_frames(input);
    }
}
