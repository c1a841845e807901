//! A minimal MQTT client on a raw tokio `TcpStream`, using Warren's own codec for the wire.
//! Only what load needs: CONNECT/CONNACK, SUBSCRIBE/SUBACK, and packet framing helpers; the
//! publish and receive loops live in `flow.rs`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use warren::protocol::{
    decode, encode, Connect, ConnectProperties, ConnectReason, DecodeLimits, Disconnect, Packet,
    ProtocolVersion, QoS, Subscribe, SubscribeProperties, SubscriptionOptions, MAX_PACKET_SIZE,
};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub broker: SocketAddr,
    pub version: ProtocolVersion,
    /// Local addresses to bind to, round robin by connection index; empty: let the kernel pick.
    pub sources: Vec<Ipv4Addr>,
    /// MQTT over WebSocket, upgrading on this path (conn scenario only).
    pub ws: Option<String>,
}

/// One connected client: its socket and buffers.
pub struct Conn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub version: ProtocolVersion,
    /// Over WebSocket: packets are sent in masked binary frames, and frames are read in `raw`.
    pub ws: bool,
    pub raw: BytesMut,
}

/// Appends `packet` to `out`.
pub fn put(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<()> {
    encode(packet, version, MAX_PACKET_SIZE, out).map_err(|e| anyhow!("encode: {e}"))?;
    Ok(())
}

/// Decodes the next whole packet in `buf`, if there is one.
pub fn next_packet(buf: &mut BytesMut, version: ProtocolVersion) -> Result<Option<Packet>> {
    // What the broker sends is decoded without a user-property limit of our own.
    let limits = DecodeLimits {
        max_packet_size: MAX_PACKET_SIZE,
        max_user_properties: usize::MAX,
    };
    decode(buf, Some(version), &limits).map_err(|e| anyhow!("decode: {e}"))
}

impl Conn {
    /// Opens a TCP connection (bound to `target.sources[idx % len]` when given) and completes
    /// the MQTT CONNECT handshake with a clean session.
    pub async fn connect(
        target: &Target,
        idx: usize,
        client_id: &str,
        keep_alive: u16,
        read_capacity: usize,
    ) -> Result<Conn> {
        Self::connect_session(target, idx, client_id, keep_alive, read_capacity, false).await
    }

    /// [`Conn::connect`], keeping the session after the connection when `persistent` (3.1.1
    /// clean session 0; 5.0 a session expiry of one hour).
    pub async fn connect_session(
        target: &Target,
        idx: usize,
        client_id: &str,
        keep_alive: u16,
        read_capacity: usize,
        persistent: bool,
    ) -> Result<Conn> {
        let socket = TcpSocket::new_v4().context("socket")?;
        if !target.sources.is_empty() {
            let ip = target.sources[idx % target.sources.len()];
            socket
                .bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))
                .with_context(|| format!("bind {ip}"))?;
        }
        let stream = socket
            .connect(target.broker)
            .await
            .with_context(|| format!("connect {}", target.broker))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(read_capacity),
            wbuf: BytesMut::new(),
            version: target.version,
            ws: target.ws.is_some(),
            raw: BytesMut::new(),
        };
        if let Some(path) = &target.ws {
            conn.upgrade(path).await?;
        }
        let connect = Packet::Connect(Box::new(Connect {
            protocol: target.version,
            clean_start: !persistent,
            keep_alive,
            client_id: ByteString::from(client_id),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: persistent.then_some(3600),
                ..ConnectProperties::default()
            },
        }));
        conn.send(&connect).await?;
        match conn.recv().await? {
            Packet::ConnAck(ack) if ack.reason == ConnectReason::Success => Ok(conn),
            Packet::ConnAck(ack) => bail!("CONNACK refused: {:?}", ack.reason),
            other => bail!("expected CONNACK, got {}", other.kind()),
        }
    }

    /// Subscribes to one filter and waits for its SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let sub = Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![(
                ByteString::from(filter),
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            )],
            properties: SubscribeProperties::default(),
        });
        self.send(&sub).await?;
        match self.recv().await? {
            Packet::SubAck(ack) => match ack.reasons.first() {
                Some(&r) if r < 0x80 => Ok(()),
                r => bail!("SUBACK refused {filter}: {r:?}"),
            },
            other => bail!("expected SUBACK, got {}", other.kind()),
        }
    }

    /// Encodes and writes one packet now (in one frame over WebSocket).
    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        put(packet, self.version, &mut self.wbuf)?;
        if self.ws {
            let framed = ws_frame(&self.wbuf);
            self.stream.write_all(&framed).await?;
        } else {
            self.stream.write_all(&self.wbuf).await?;
        }
        self.wbuf.clear();
        Ok(())
    }

    /// Reads until one whole packet is there.
    pub async fn recv(&mut self) -> Result<Packet> {
        loop {
            if let Some(p) = next_packet(&mut self.rbuf, self.version)? {
                return Ok(p);
            }
            if self.ws && unframe(&mut self.raw, &mut self.rbuf)? {
                continue;
            }
            let buf = if self.ws {
                &mut self.raw
            } else {
                &mut self.rbuf
            };
            if buf.capacity() - buf.len() < 64 {
                buf.reserve(256);
            }
            if self.stream.read_buf(buf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }

    /// The WebSocket upgrade (subprotocol mqtt) on `path`.
    async fn upgrade(&mut self, path: &str) -> Result<()> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\r\n",
            self.stream.peer_addr()?
        );
        self.stream.write_all(request.as_bytes()).await?;
        loop {
            if let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = self.raw.split_to(end + 4);
                if !head.starts_with(b"HTTP/1.1 101") {
                    bail!("upgrade refused: {}", String::from_utf8_lossy(&head));
                }
                return Ok(());
            }
            if self.raw.len() > 8192 {
                bail!("upgrade response too long");
            }
            self.raw.reserve(512);
            if self.stream.read_buf(&mut self.raw).await? == 0 {
                bail!("connection closed during the upgrade");
            }
        }
    }

    /// Sends DISCONNECT (best effort, at most 2 s: a busy broker may not be reading) and
    /// closes the socket.
    pub async fn goodbye(mut self) {
        let bye = async {
            let _ = self.send(&Packet::Disconnect(Disconnect::default())).await;
            let _ = self.stream.shutdown().await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bye).await;
    }
}

/// One masked binary WebSocket frame holding `payload` (a client's frames are masked).
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x1c, 0xe3, 0x07];
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x82);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Moves the payload of one whole server frame from `raw` to `out` (control frames are
/// dropped); false when `raw` holds no whole frame.
fn unframe(raw: &mut BytesMut, out: &mut BytesMut) -> Result<bool> {
    if raw.len() < 2 {
        return Ok(false);
    }
    let (len, at) = match raw[1] & 0x7f {
        126 if raw.len() >= 4 => (usize::from(u16::from_be_bytes([raw[2], raw[3]])), 4),
        127 if raw.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&raw[2..10]);
            (usize::try_from(u64::from_be_bytes(n))?, 10)
        }
        126 | 127 => return Ok(false),
        n => (usize::from(n), 2),
    };
    if raw.len() < at + len {
        return Ok(false);
    }
    let opcode = raw[0] & 0x0f;
    let frame = raw.split_to(at + len);
    match opcode {
        0x0 | 0x2 => out.extend_from_slice(&frame[at..]),
        0x8 => bail!("the broker closed the WebSocket"),
        _ => {}
    }
    Ok(true)
}
