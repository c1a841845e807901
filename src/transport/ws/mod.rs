//! MQTT over WebSocket (`kind = "ws"` and `"wss"`): the upgrade ([`upgrade`]), then a byte
//! pipe over binary frames ([`WsStream`]), so that the connection task, and everything above
//! it, runs unchanged.
//!
//! Reading: frames are read into a buffer of the stream's own (none while idle), their payload
//! unmasked into the caller's buffer ([`frame::FrameReader`]); a Ping is answered with a Pong
//! between data frames, a Close with a Close, after which reads end. Writing: every write of
//! MQTT bytes becomes one binary frame, its header and payload written together (vectored), the
//! payload straight from the caller's buffer: no copy, no buffer of our own. So an idle
//! WebSocket connection costs this struct beside the socket, and nothing else.

pub mod frame;
pub mod upgrade;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;

use super::Stream;
use frame::{ControlFrame, FrameReader};
use tungstenite::protocol::frame::coding::OpCode;

/// MQTT bytes over WebSocket frames, over TCP or TLS.
pub struct WsStream {
    /// The TCP or TLS stream below.
    inner: Stream,
    reader: FrameReader,
    /// Frame bytes read and not consumed yet (unallocated while idle).
    raw: BytesMut,
    /// The largest data frame or fragmented message accepted.
    max: u64,
    /// The header of the data frame being written, its length, and how much of it is out.
    header: [u8; 10],
    header_len: u8,
    header_sent: u8,
    /// Payload bytes of the data frame being written still to go.
    frame_left: usize,
    /// A control frame (Pong or Close) waiting for the end of the data frame being written.
    control: BytesMut,
    /// Part of `control` is out already.
    control_started: bool,
    /// A Close was received: reads end.
    read_closed: bool,
    /// A Close was queued or sent: writes end.
    close_queued: bool,
}

impl WsStream {
    /// The TCP or TLS stream below.
    pub(crate) fn inner(&self) -> &Stream {
        &self.inner
    }

    /// A WebSocket over `inner` (after the upgrade), with `raw` the bytes the client sent
    /// after its upgrade request, and `max` the largest frame or message accepted.
    pub fn new(inner: Stream, raw: BytesMut, max: u64) -> WsStream {
        WsStream {
            inner,
            reader: FrameReader::default(),
            raw,
            max,
            header: [0; 10],
            header_len: 0,
            header_sent: 0,
            frame_left: 0,
            control: BytesMut::new(),
            control_started: false,
            read_closed: false,
            close_queued: false,
        }
    }

    /// Reads frames and appends their payload to `out` (see [`Stream::poll_read_some`]).
    pub fn poll_read_data(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut BytesMut,
        reserve: usize,
    ) -> Poll<io::Result<usize>> {
        let start = out.len();
        loop {
            // A pending answer goes out as soon as no data frame is half written; if the
            // socket is full it waits (the waker is registered), and reading goes on.
            if let Poll::Ready(Err(error)) = self.poll_control(cx) {
                return Poll::Ready(Err(error));
            }
            if self.read_closed {
                return Poll::Ready(Ok(out.len() - start));
            }
            match self.reader.read(&mut self.raw, out, self.max) {
                Ok(Some(ControlFrame::Ping(payload))) => {
                    self.queue_control(frame::PONG, &payload);
                    continue;
                }
                Ok(Some(ControlFrame::Close(code))) => {
                    // Echo the status code (RFC 6455 5.5.1), then reads end.
                    let code = code.unwrap_or(frame::CLOSE_NORMAL);
                    self.queue_control(frame::CLOSE, &code.to_be_bytes());
                    self.read_closed = true;
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    self.queue_control(frame::CLOSE, &error.code.to_be_bytes());
                    let _ = self.poll_control(cx);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
                }
            }
            if out.len() > start {
                return Poll::Ready(Ok(out.len() - start));
            }
            match self.inner.poll_read_some(cx, &mut self.raw, reserve) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    if self.raw.is_empty() {
                        // An idle connection keeps no frame buffer.
                        self.raw = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Queues a control frame for after the data frame being written. An unsent one already
    /// waiting is kept (a later Ping needs no Pong of its own), except that a Close replaces a
    /// Pong that has not started going out.
    fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        let is_close = opcode == frame::CLOSE;
        if self.close_queued || (!self.control.is_empty() && (!is_close || self.control_started)) {
            return;
        }
        let mut header = [0; 10];
        let n = frame::server_header(opcode, payload.len() as u64, &mut header);
        self.control = BytesMut::with_capacity(n + payload.len());
        self.control.extend_from_slice(&header[..n]);
        self.control.extend_from_slice(payload);
        self.control_started = false;
        self.close_queued = is_close;
    }

    /// Writes the waiting control frame, if any and if no data frame is half written.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.frame_left > 0 || self.header_sent < self.header_len {
            return Poll::Ready(Ok(()));
        }
        while !self.control.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.control))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.control.advance(n);
            self.control_started = true;
        }
        self.control = BytesMut::new();
        self.control_started = false;
        Poll::Ready(Ok(()))
    }

    /// Writes `buf` (or its front) as the payload of a binary frame; returns the payload bytes
    /// written.
    pub fn poll_write_data(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if self.frame_left == 0 {
                std::task::ready!(self.poll_control(cx))?;
                if self.close_queued {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                self.header_len =
                    frame::server_header(frame::BINARY, buf.len() as u64, &mut self.header) as u8;
                self.header_sent = 0;
                self.frame_left = buf.len();
            }
            let header = &self.header[usize::from(self.header_sent)..usize::from(self.header_len)];
            let payload = &buf[..self.frame_left.min(buf.len())];
            let slices = [IoSlice::new(header), IoSlice::new(payload)];
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            let from_header = n.min(header.len());
            self.header_sent += from_header as u8;
            let from_payload = n - from_header;
            self.frame_left -= from_payload;
            if from_payload > 0 {
                return Poll::Ready(Ok(from_payload));
            }
        }
    }

    /// Writes a waiting control frame, then flushes the stream below.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_control(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Sends a Close (1000) unless one was sent, then shuts the stream below down.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_queued && self.frame_left == 0 {
            self.queue_control(frame::CLOSE, &frame::CLOSE_NORMAL.to_be_bytes());
        }
        std::task::ready!(self.poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
