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
}

/// One connected client: its socket and buffers.
pub struct Conn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub version: ProtocolVersion,
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
        };
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

    /// Encodes and writes one packet now.
    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        put(packet, self.version, &mut self.wbuf)?;
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads until one whole packet is there.
    pub async fn recv(&mut self) -> Result<Packet> {
        loop {
            if let Some(p) = next_packet(&mut self.rbuf, self.version)? {
                return Ok(p);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 64 {
                self.rbuf.reserve(256);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("connection closed by the broker");
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
