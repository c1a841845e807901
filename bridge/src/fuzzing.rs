//! Entry points for the fuzz targets (`fuzz/`, target `amqp`): the AMQP decoders on arbitrary
//! bytes. Not an API.

use bytes::{Bytes, BytesMut};

use crate::amqp::wire::method::Method;
use crate::amqp::wire::props::BasicProperties;
use crate::amqp::wire::table::FieldTable;
use crate::amqp::wire::{self, Cursor, FRAME_HEADER, FRAME_METHOD, FRAME_MIN};

/// Decodes `data` as a stream of frames (the first byte picks the largest frame accepted)
/// and, apart, as one field table. Panics only if a promise breaks: properties that decode
/// must encode and decode back to themselves.
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
                    let (size2, back) =
                        BasicProperties::decode(Cursor::new(out.freeze())).expect("round trip");
                    assert_eq!((size2, &back), (size, &p));
                }
            }
            _ => {}
        }
    }
    let _ = FieldTable::decode(&mut Cursor::new(Bytes::copy_from_slice(rest)));
}
