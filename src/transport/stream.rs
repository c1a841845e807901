//! [`Stream`]: a connected client's byte pipe, whatever it runs on: plain TCP, TLS over TCP, or
//! WebSocket over either. The connection task reads and writes MQTT bytes through it and never
//! learns which one it has.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::ws::WsStream;

/// A connected client's byte pipe.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
    /// WebSocket (binary frames) over TCP or TLS: MQTT bytes in, MQTT bytes out.
    Ws(Box<WsStream>),
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Ws(s) => s.poll_write_data(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Ws(s) => {
                let buf = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &**b);
                s.poll_write_data(cx, buf)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        !matches!(self, Stream::Ws(_))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Ws(s) => s.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Ws(s) => s.poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// Polls for input and reads what is there into `buf`. On plain TCP the buffer gets its
    /// `reserve` bytes only once input has arrived, so an idle connection holds no read buffer;
    /// TLS keeps its own buffers and reads as usual; WebSocket reads frames into a buffer of
    /// its own (as TCP does: none while idle) and appends their payload. `Ready(Ok(0))` means
    /// end of stream.
    pub fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        reserve: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(tcp) => loop {
                if let Err(error) = std::task::ready!(tcp.poll_read_ready(cx)) {
                    return Poll::Ready(Err(error));
                }
                if buf.capacity() - buf.len() < reserve {
                    buf.reserve(reserve);
                }
                match tcp.try_read_buf(buf) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                        // Readiness was cleared: the next poll registers the waker.
                    }
                    other => return Poll::Ready(other),
                }
            },
            Stream::Tls(tls) => {
                if buf.capacity() - buf.len() < reserve {
                    buf.reserve(reserve);
                }
                tokio_util::io::poll_read_buf(Pin::new(tls.as_mut()), cx, buf)
            }
            Stream::Ws(ws) => ws.poll_read_data(cx, buf, reserve),
        }
    }

    /// Waits for input and reads it (see [`Stream::poll_read_some`]). Cancel-safe.
    pub async fn read_some(&mut self, buf: &mut BytesMut, reserve: usize) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_some(cx, buf, reserve)).await
    }

    /// Polls writing the front of `buf`, at most its first `len` bytes, removing what was
    /// written from it. When [`Stream::buffers_output`], output may wait in a layer below (TLS
    /// records, a WebSocket control frame); call [`Stream::poll_flush_tls`] until it is ready
    /// once `buf` is empty.
    pub fn poll_write_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let out = &buf[..len.min(buf.len())];
        let written = match self {
            Stream::Tcp(tcp) => std::task::ready!(Pin::new(tcp).poll_write(cx, out)),
            Stream::Tls(tls) => {
                let n = std::task::ready!(Pin::new(tls.as_mut()).poll_write(cx, out));
                // Best effort now; the caller flushes until done.
                let _ = Pin::new(tls.as_mut()).poll_flush(cx);
                n
            }
            Stream::Ws(ws) => {
                let n = std::task::ready!(ws.poll_write_data(cx, out));
                let _ = ws.poll_flush(cx);
                n
            }
        };
        if let Ok(n) = written {
            bytes::Buf::advance(buf, n);
        }
        Poll::Ready(written)
    }

    /// Polls pushing output buffered below by earlier writes (TLS records, WebSocket control
    /// frames) to the socket; ready at once on plain TCP.
    pub fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(_) => Poll::Ready(Ok(())),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Ws(ws) => ws.poll_flush(cx),
        }
    }

    /// The client's certificate (DER, the leaf), when a TLS client presented one (also under
    /// WebSocket, on `wss`).
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Stream::Tcp(_) => None,
            Stream::Tls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()?
                .first()
                .map(|c| c.as_ref()),
            Stream::Ws(ws) => ws.inner().peer_certificate(),
        }
    }

    /// True when output may wait below [`Stream::poll_write_some`] and needs
    /// [`Stream::poll_flush_tls`]: TLS and WebSocket.
    pub fn buffers_output(&self) -> bool {
        !matches!(self, Stream::Tcp(_))
    }
}
