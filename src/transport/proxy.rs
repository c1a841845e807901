//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer puts in front
//! of a connection to tell the client's real address. On a listener with
//! `proxy_protocol = true` every connection must start with one; its source address replaces
//! the TCP peer's for logs, limits and authentication.
//!
//! [`parse`] is a sans-I/O parser over the bytes seen so far; [`read_header`] reads exactly the
//! header from the socket, using `peek` so that not one byte after it (the TLS or MQTT bytes)
//! is taken. A header is at most [`MAX_V1`] (version 1) or [`MAX_V2`] (version 2) bytes; the
//! caller bounds the time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest version 1 header, CRLF included (the specification's limit).
pub const MAX_V1: usize = 107;
/// The longest version 2 header accepted: 16 bytes and up to 2,048 of addresses and TLVs.
pub const MAX_V2: usize = 16 + 2048;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The connection does not start with a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// The header is malformed.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// The header is longer than the limit.
    #[error("PROXY protocol header too long")]
    TooLong,
}

/// What [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed; every byte seen so far belongs to the header.
    Incomplete,
    /// A whole header of `len` bytes. `source` is the client's address, or `None` for a
    /// connection the proxy made itself (v2 LOCAL, v1 UNKNOWN, or a non-IP family): it then
    /// keeps its TCP peer address.
    Complete {
        /// Bytes of the header.
        len: usize,
        /// The client's address.
        source: Option<SocketAddr>,
    },
}

/// Parses the header at the front of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let is_prefix_of = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    if is_prefix_of(V2_SIGNATURE) {
        if buf.len() < 16 {
            return Ok(Parsed::Incomplete);
        }
        return parse_v2(buf);
    }
    if is_prefix_of(V1_PREFIX) {
        return parse_v1(buf);
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= MAX_V1 {
            return Err(ProxyError::TooLong);
        }
        return Ok(Parsed::Incomplete);
    };
    match window.get(cr..cr + 2) {
        Some(b"\r\n") => {}
        None if window.len() == cr + 1 && window[cr] == b'\r' => {
            return if buf.len() >= MAX_V1 {
                Err(ProxyError::TooLong)
            } else {
                Ok(Parsed::Incomplete)
            };
        }
        _ => return Err(ProxyError::Malformed("v1: line not ended by CRLF")),
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..cr])
        .map_err(|_| ProxyError::Malformed("v1: not ASCII"))?;
    let len = cr + 2;
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or_default();
    if family == "UNKNOWN" {
        return Ok(Parsed::Complete { len, source: None });
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::Malformed("v1: expected 4 fields"));
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map_err(|_| ProxyError::Malformed("v1: bad IPv4 address"))?
            .into(),
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map_err(|_| ProxyError::Malformed("v1: bad IPv6 address"))?
            .into(),
        _ => return Err(ProxyError::Malformed("v1: unknown protocol")),
    };
    // The other fields are checked too: a header that lies in part is not trusted in part.
    let dst_ok = match ip {
        IpAddr::V4(_) => dst.parse::<Ipv4Addr>().is_ok(),
        IpAddr::V6(_) => dst.parse::<Ipv6Addr>().is_ok(),
    };
    if !dst_ok {
        return Err(ProxyError::Malformed("v1: bad destination address"));
    }
    let port = parse_port(sport)?;
    parse_port(dport)?;
    Ok(Parsed::Complete {
        len,
        source: Some(SocketAddr::new(ip, port)),
    })
}

/// A decimal port, 0..=65535, without sign or leading zeros.
fn parse_port(s: &str) -> Result<u16, ProxyError> {
    let plain = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    s.parse::<u16>()
        .ok()
        .filter(|_| plain)
        .ok_or(ProxyError::Malformed("v1: bad port"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::Malformed("v2: unknown version"));
    }
    let family = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > MAX_V2 {
        return Err(ProxyError::TooLong);
    }
    let needed = match family {
        0x00 => 0,
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => return Err(ProxyError::Malformed("v2: unknown address family")),
    };
    if body < needed {
        return Err(ProxyError::Malformed("v2: address block too short"));
    }
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let a = &buf[16..len];
    let source = match (command, family) {
        (0x0, _) => None,
        (0x1, 0x11) => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        (0x1, 0x21) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        (0x1, 0x12 | 0x22) => return Err(ProxyError::Malformed("v2: UDP on a TCP listener")),
        // UNSPEC and UNIX: no IP address to use.
        (0x1, _) => None,
        _ => return Err(ProxyError::Malformed("v2: unknown command")),
    };
    Ok(Parsed::Complete { len, source })
}

/// Why [`read_header`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The header is missing, malformed or too long.
    #[error(transparent)]
    Header(#[from] ProxyError),
    /// The socket closed or failed first.
    #[error("connection closed before its PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads exactly the PROXY header from `tcp`; the client's address, or `None` when the
/// connection keeps its TCP peer address (see [`Parsed::Complete`]).
pub async fn read_header(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ReadError> {
    let mut seen: Vec<u8> = Vec::new();
    let mut window = vec![0u8; MAX_V2];
    loop {
        let room = MAX_V2 - seen.len();
        let n = tcp.peek(&mut window[..room]).await?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        let before = seen.len();
        seen.extend_from_slice(&window[..n]);
        match parse(&seen)? {
            Parsed::Complete { len, source } => {
                // Take the header's bytes only; what follows stays in the socket.
                tcp.read_exact(&mut window[..len - before]).await?;
                return Ok(source);
            }
            Parsed::Incomplete => {
                // Everything peeked is header: take it, so that the next peek waits for more.
                tcp.read_exact(&mut window[..n]).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests;
