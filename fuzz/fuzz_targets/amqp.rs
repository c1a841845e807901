//! The bridge's AMQP 0-9-1 decoders (frames, methods, content headers, field tables) on
//! arbitrary bytes: never a panic; decoded properties encode back to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren_bridge::fuzzing::amqp_frames(data));
