//! WebSocket frames (RFC 6455 section 5) as MQTT uses them (MQTT 5.0 section 6): a sans-I/O
//! reader that turns masked client frames into a byte stream, and the header of the server's
//! own (unmasked) binary frames. Frame headers are parsed and written by tungstenite; the
//! payload is unmasked as it arrives, straight into the caller's buffer, so a frame is never
//! held whole and an idle connection holds nothing.
//!
//! MQTT over WebSocket is a byte stream: a packet may span frames and a frame may hold several
//! packets, so message boundaries carry no meaning and fragmented messages are simply more
//! bytes. What is refused (closing the connection with a close code): text frames
//! (MQTT-6.0.0-1), unmasked client frames, reserved bits or opcodes (no extension is
//! negotiated), control frames that are fragmented or over 125 bytes, a continuation with no
//! message to continue, and a frame or a fragmented message over the size limit (1009).

use std::io::Cursor;

use bytes::{Buf, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Close code 1002: protocol error.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code 1003: a data type the endpoint cannot accept (text frames).
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
/// Close code 1009: a frame or message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code 1000: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;

/// Why the client's frames are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WebSocket: {reason}")]
pub struct FrameError {
    /// The close code to send.
    pub code: u16,
    /// What was wrong.
    pub reason: &'static str,
}

fn refuse<T>(code: u16, reason: &'static str) -> Result<T, FrameError> {
    Err(FrameError { code, reason })
}

/// A control frame read from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlFrame {
    /// Ping with its payload (to be echoed in a Pong).
    Ping(Bytes),
    /// Close with its status code, if any.
    Close(Option<u16>),
}

/// The reader's state between calls: which frame's payload is arriving.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Payload bytes of the current data frame still to come.
    left: u64,
    /// The current frame's mask, rotated to the next payload byte.
    mask: [u8; 4],
    /// Bytes of the fragmented data message in progress so far, when one is.
    message: Option<u64>,
}

impl FrameReader {
    /// Moves the data in `raw` into `out`: frame headers are consumed, payload is unmasked and
    /// appended. Stops at the first control frame read (returned, for the caller to answer),
    /// or when `raw` holds no whole header or control frame any more (`Ok(None)`). `max` is
    /// the largest data frame and fragmented message accepted.
    pub fn read(
        &mut self,
        raw: &mut BytesMut,
        out: &mut BytesMut,
        max: u64,
    ) -> Result<Option<ControlFrame>, FrameError> {
        loop {
            if self.left > 0 {
                let n = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(raw.len());
                if n == 0 {
                    return Ok(None);
                }
                let chunk = &mut raw[..n];
                unmask(chunk, &mut self.mask);
                out.extend_from_slice(chunk);
                raw.advance(n);
                self.left -= n as u64;
                continue;
            }
            let mut cursor = Cursor::new(&raw[..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(None),
                Err(_) => return refuse(CLOSE_PROTOCOL_ERROR, "bad frame header"),
            };
            let header_len = cursor.position() as usize;
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return refuse(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension)");
            }
            let Some(mask) = header.mask else {
                return refuse(CLOSE_PROTOCOL_ERROR, "client frame not masked");
            };
            match header.opcode {
                OpCode::Data(data) => {
                    self.message = self.data_frame(data, header.is_final, len, max)?;
                    raw.advance(header_len);
                    self.left = len;
                    self.mask = mask;
                }
                OpCode::Control(control) => {
                    if !header.is_final || len > 125 {
                        return refuse(CLOSE_PROTOCOL_ERROR, "bad control frame");
                    }
                    let total = header_len + len as usize;
                    if raw.len() < total {
                        return Ok(None);
                    }
                    raw.advance(header_len);
                    let mut payload = raw.split_to(len as usize);
                    let mut mask = mask;
                    unmask(&mut payload, &mut mask);
                    match control {
                        Control::Ping => return Ok(Some(ControlFrame::Ping(payload.freeze()))),
                        Control::Pong => {}
                        Control::Close => return close_frame(&payload).map(Some),
                        Control::Reserved(_) => {
                            return refuse(CLOSE_PROTOCOL_ERROR, "reserved control opcode")
                        }
                    }
                }
            }
        }
    }

    /// Checks a data frame's header against the message in progress; the message in progress
    /// after it.
    fn data_frame(
        &self,
        data: Data,
        is_final: bool,
        len: u64,
        max: u64,
    ) -> Result<Option<u64>, FrameError> {
        let so_far = match (data, self.message) {
            (Data::Binary, None) => 0,
            (Data::Continue, Some(so_far)) => so_far,
            (Data::Text, _) => {
                return refuse(
                    CLOSE_UNSUPPORTED_DATA,
                    "text frame (MQTT needs binary frames, MQTT-6.0.0-1)",
                )
            }
            (Data::Binary, Some(_)) => {
                return refuse(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            }
            (Data::Continue, None) => {
                return refuse(CLOSE_PROTOCOL_ERROR, "continuation without a message")
            }
            (Data::Reserved(_), _) => return refuse(CLOSE_PROTOCOL_ERROR, "reserved opcode"),
        };
        let total = so_far.saturating_add(len);
        if len > max || total > max {
            return refuse(CLOSE_TOO_BIG, "frame or message over the size limit");
        }
        Ok((!is_final).then_some(total))
    }
}

/// The status code of a Close frame's payload.
fn close_frame(payload: &[u8]) -> Result<ControlFrame, FrameError> {
    match payload {
        [] => Ok(ControlFrame::Close(None)),
        [a, b, ..] => Ok(ControlFrame::Close(Some(u16::from_be_bytes([*a, *b])))),
        [_] => refuse(CLOSE_PROTOCOL_ERROR, "one-byte close payload"),
    }
}

/// XORs `data` with the mask, and rotates the mask so that the next byte continues where this
/// chunk ended.
fn unmask(data: &mut [u8], mask: &mut [u8; 4]) {
    let word = u64::from(u32::from_ne_bytes(*mask));
    let wide = (word | (word << 32)).to_ne_bytes();
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        for (b, m) in chunk.iter_mut().zip(wide) {
            *b ^= m;
        }
    }
    let rest = chunks.into_remainder();
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    mask.rotate_left(data.len() & 3);
}

/// The header of a server frame (final, unmasked) of `opcode` with a payload of `len` bytes,
/// written into `out`; returns its length (2, 4 or 10).
pub fn server_header(opcode: OpCode, len: u64, out: &mut [u8; 10]) -> usize {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    let size = header.len(len);
    let mut slice = &mut out[..];
    // Writing at most 10 bytes into 10 cannot fail.
    let _ = header.format(len, &mut slice);
    size
}

/// The opcode of the server's data frames.
pub const BINARY: OpCode = OpCode::Data(Data::Binary);
/// The opcode of a Pong.
pub const PONG: OpCode = OpCode::Control(Control::Pong);
/// The opcode of a Close.
pub const CLOSE: OpCode = OpCode::Control(Control::Close);

#[cfg(test)]
mod tests;
