//! The HTTP/1.1 upgrade request that opens a WebSocket (RFC 6455 section 4.2), checked by
//! tungstenite's handshake functions, plus what MQTT asks of it (MQTT 5.0 section 6): the
//! configured path and the `mqtt` subprotocol (`mqttv3.1`, used by older clients, is accepted
//! too; a request that offers no subprotocol is accepted without one; one that offers only
//! others is refused).
//!
//! [`respond`] is the sans-I/O decision; [`accept`] reads the request within a size limit and
//! writes the answer. The caller bounds the time.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};

use crate::transport::Stream;

/// The largest upgrade request accepted (request line and headers), in bytes.
pub const MAX_REQUEST: usize = 8192;

/// The subprotocols MQTT clients offer, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Why an upgrade request was refused: the HTTP status sent back, and the reason for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WebSocket upgrade refused ({status}): {reason}")]
pub struct Refusal {
    /// HTTP status code.
    pub status: u16,
    /// What was wrong.
    pub reason: &'static str,
}

fn refusal<T>(status: u16, reason: &'static str) -> Result<T, Refusal> {
    Err(Refusal { status, reason })
}

/// Decides on the request at the front of `buf`: `Ok(None)` while it is incomplete, else the
/// bytes it takes and the `101 Switching Protocols` answer.
pub fn respond(buf: &[u8], path: &str) -> Result<Option<(usize, Vec<u8>)>, Refusal> {
    let (len, request) = match Request::try_parse(buf) {
        Ok(Some(parsed)) => parsed,
        Ok(None) if buf.len() >= MAX_REQUEST => return refusal(431, "upgrade request over 8 KiB"),
        Ok(None) => return Ok(None),
        Err(WsError::Protocol(ProtocolError::WrongHttpMethod)) => {
            return refusal(405, "not a GET request")
        }
        Err(_) => return refusal(400, "not an HTTP/1.1 request"),
    };
    if len > MAX_REQUEST {
        return refusal(431, "upgrade request over 8 KiB");
    }
    if request.uri().path() != path {
        return refusal(404, "wrong path");
    }
    let mut response = match create_response(&request) {
        Ok(response) => response,
        Err(WsError::Protocol(ProtocolError::MissingSecWebSocketVersionHeader)) => {
            return refusal(426, "not WebSocket version 13")
        }
        Err(_) => return refusal(400, "not a valid WebSocket upgrade"),
    };
    let offered: Vec<&str> = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if !offered.is_empty() {
        let Some(chosen) = SUBPROTOCOLS
            .iter()
            .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
        else {
            return refusal(400, "no MQTT subprotocol offered (mqtt, MQTT-6.0.0-3)");
        };
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tungstenite::http::HeaderValue::from_static(chosen),
        );
    }
    let mut out = Vec::with_capacity(160);
    if write_response(&mut out, &response).is_err() {
        return refusal(400, "cannot answer the request");
    }
    Ok(Some((len, out)))
}

/// Why [`accept`] failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The request was refused (and answered with its status).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The socket closed or failed first.
    #[error("connection closed during the WebSocket upgrade: {0}")]
    Io(#[from] io::Error),
}

/// Reads the upgrade request from `stream` and answers it. On success, the bytes the client
/// sent after the request (frames already) are returned, for the frame reader.
pub async fn accept(stream: &mut Stream, path: &str) -> Result<BytesMut, UpgradeError> {
    let mut buf = BytesMut::new();
    let mut scanned: usize = 0;
    loop {
        // Parsed only once the head looks complete (or too long, or not a GET): bytes trickled
        // one at a time cost a search of the new ones each, not a parse of everything so far.
        let complete = buf[scanned.saturating_sub(3)..]
            .windows(4)
            .any(|w| w == b"\r\n\r\n")
            || buf.len() >= MAX_REQUEST
            || (buf.len() >= 4 && !buf.starts_with(b"GET "));
        scanned = buf.len();
        let decision = if complete {
            respond(&buf, path)
        } else {
            Ok(None)
        };
        match decision {
            Ok(Some((len, answer))) => {
                stream.write_all(&answer).await?;
                stream.flush().await?;
                buf.advance(len);
                return Ok(buf);
            }
            Ok(None) => {}
            Err(refused) => {
                let answer = format!(
                    "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Length: 0\r\n{}\r\n",
                    refused.status,
                    reason_phrase(refused.status),
                    if refused.status == 426 {
                        "Sec-WebSocket-Version: 13\r\n"
                    } else {
                        ""
                    }
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
                return Err(refused.into());
            }
        }
        // `respond` refuses a request still incomplete at MAX_REQUEST bytes.
        if stream.read_some(&mut buf, 2048).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn answer(req: &str) -> Result<String, Refusal> {
        let (len, out) = respond(req.as_bytes(), "/mqtt")?.expect("complete");
        assert_eq!(len, req.len());
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn accepts_with_the_mqtt_subprotocol() {
        let out = answer(&request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n")).unwrap();
        assert!(out.starts_with("HTTP/1.1 101"), "{out}");
        // RFC 6455's example key and answer.
        assert!(
            out.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{out}"
        );
        assert!(out.contains("sec-websocket-protocol: mqtt\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"));
    }

    #[test]
    fn subprotocol_choice() {
        let out = answer(&request(
            "/mqtt",
            "Sec-WebSocket-Protocol: wamp, MQTTv3.1\r\nSec-WebSocket-Protocol: mqtt\r\n",
        ))
        .unwrap();
        assert!(out.contains("sec-websocket-protocol: mqtt\r\n"), "{out}");
        let out = answer(&request("/mqtt", "Sec-WebSocket-Protocol: mqttv3.1\r\n")).unwrap();
        assert!(
            out.contains("sec-websocket-protocol: mqttv3.1\r\n"),
            "{out}"
        );
        let out = answer(&request("/mqtt?x=1", "")).unwrap();
        assert!(!out.contains("sec-websocket-protocol"), "{out}");
        let err = answer(&request("/mqtt", "Sec-WebSocket-Protocol: chat\r\n")).unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn refusals() {
        assert_eq!(answer(&request("/other", "")).unwrap_err().status, 404);
        let post = request("/mqtt", "").replacen("GET", "POST", 1);
        assert_eq!(answer(&post).unwrap_err().status, 405);
        let v8 = request("/mqtt", "").replace("Version: 13", "Version: 8");
        assert_eq!(answer(&v8).unwrap_err().status, 426);
        let no_key = request("/mqtt", "").replace("Sec-WebSocket-Key", "X-Key");
        assert_eq!(answer(&no_key).unwrap_err().status, 400);
        let short_key = request("/mqtt", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "abc=");
        assert_eq!(answer(&short_key).unwrap_err().status, 400);
        let no_upgrade = request("/mqtt", "").replace("Upgrade: websocket\r\n", "");
        assert_eq!(answer(&no_upgrade).unwrap_err().status, 400);
        assert_eq!(
            respond(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", "/mqtt")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn incomplete_then_too_large() {
        let req = request("/mqtt", "");
        for cut in [0, 1, 10, req.len() - 1] {
            assert_eq!(respond(&req.as_bytes()[..cut], "/mqtt"), Ok(None), "{cut}");
        }
        let huge = format!(
            "GET /mqtt HTTP/1.1\r\nCookie: {}\r\n",
            "a".repeat(MAX_REQUEST)
        );
        assert_eq!(respond(huge.as_bytes(), "/mqtt").unwrap_err().status, 431);
        let complete_but_huge = request("/mqtt", &format!("Cookie: {}\r\n", "a".repeat(9000)));
        assert_eq!(
            respond(complete_but_huge.as_bytes(), "/mqtt")
                .unwrap_err()
                .status,
            431
        );
    }
}
