//! An external authenticator over HTTP, as EMQX's HTTP authentication and mosquitto-go-auth do.
//!
//! At CONNECT, Warren POSTs JSON `{"clientid", "username", "password", "peerhost", "listener",
//! "cert_identity", "protocol"}` to the configured URL. A 2xx answer allows the client; its body
//! may be empty, or JSON `{"result": "allow" | "deny", "is_superuser": bool, "acl": [{"permission":
//! "allow" | "deny", "action": "publish" | "subscribe" | "all", "topic": FILTER}, ...]}` (the
//! client's own rules, `%c` and `%u` allowed). A 4xx answer denies. A timeout, a failed
//! connection, a 5xx or a malformed body deny too, and are not cached; allow and deny answers are
//! kept for `cache_ms`, keyed by a SHA-256 of the request body.
//!
//! An `https://` URL is reached over TLS (rustls, ring), the server verified against `ca_file`
//! or the system's trusted roots, and its name against the URL's host.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::acl::{Access, Rule};
use super::config::HttpAuthConfig;

/// Largest answer body read.
const MAX_BODY: usize = 64 * 1024;

/// What the authenticator answered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Allowed, with the client's own rules if the answer carried any.
    Allow {
        /// Every topic allowed.
        superuser: bool,
        /// The client's own rules.
        rules: Option<Arc<[Rule]>>,
    },
    /// Denied.
    Deny,
}

/// What is sent about the client.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Client identifier.
    pub client_id: &'a str,
    /// Username, if any.
    pub username: Option<&'a str>,
    /// Password, if any.
    pub password: Option<&'a [u8]>,
    /// Source address (without the port).
    pub peer: std::net::IpAddr,
    /// Listener name.
    pub listener: &'a str,
    /// The client certificate's identity, on a TLS listener that asked for one.
    pub cert_identity: Option<&'a str>,
    /// "3.1", "3.1.1" or "5.0".
    pub protocol: &'a str,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    is_superuser: bool,
    #[serde(default)]
    acl: Option<Vec<RuleBody>>,
}

#[derive(Deserialize)]
struct RuleBody {
    permission: String,
    #[serde(default)]
    action: Option<String>,
    topic: String,
}

/// The authenticator client and its cache.
pub struct HttpAuth {
    config: HttpAuthConfig,
    uri: hyper::Uri,
    /// For an https URL: the connector and the name the server's certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    cache: Mutex<HashMap<[u8; 32], (u64, Answer)>>,
}

impl HttpAuth {
    /// A client of `config.url` (checked by the config: an http:// or https:// URL);
    /// `Err((key, reason))` names the `auth.http` key at fault.
    pub fn new(config: &HttpAuthConfig) -> Result<HttpAuth, (&'static str, String)> {
        let uri: hyper::Uri = config
            .url
            .parse()
            .map_err(|e| ("http.url", format!("{e}")))?;
        let Some(host) = uri.host() else {
            return Err(("http.url", "no host".to_owned()));
        };
        let tls = if uri.scheme_str() == Some("https") {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| ("http.url", format!("host {host}: {e}")))?;
            let client = crate::tls::client_config(config.ca_file.as_deref())
                .map_err(|e| ("http.ca_file", e.to_string()))?;
            Some((TlsConnector::from(client), name))
        } else {
            None
        };
        Ok(HttpAuth {
            config: config.clone(),
            uri,
            tls,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Asks about `request` (or answers from the cache); `Err(metric label)` on a failure.
    pub async fn check(&self, request: &Request<'_>, now_ms: u64) -> Result<Answer, &'static str> {
        let body = body_json(request);
        let key: [u8; 32] = Sha256::digest(&body).into();
        if self.config.cache_ms > 0 {
            if let Some((expires, answer)) = self.cache.lock().get(&key) {
                if *expires > now_ms {
                    return Ok(answer.clone());
                }
            }
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let answer = match tokio::time::timeout(timeout, self.post(body)).await {
            Err(_) => return Err("http_timeout"),
            Ok(result) => result?,
        };
        if self.config.cache_ms > 0 {
            let mut cache = self.cache.lock();
            if cache.len() >= self.config.cache_size {
                cache.retain(|_, (expires, _)| *expires > now_ms);
                if cache.len() >= self.config.cache_size {
                    cache.clear();
                }
            }
            cache.insert(key, (now_ms + self.config.cache_ms, answer.clone()));
        }
        Ok(answer)
    }

    async fn post(&self, body: Vec<u8>) -> Result<Answer, &'static str> {
        let host = self.uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let port = self.uri.port_u16().unwrap_or(default_port);
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|_| "http_error")?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => self.exchange(stream, body).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|_| "http_tls_error")?;
                self.exchange(stream, body).await
            }
        }
    }

    /// One request and its answer over `io` (plain or TLS).
    async fn exchange<S>(&self, io: S, body: Vec<u8>) -> Result<Answer, &'static str>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|_| "http_error")?;
        let authority = self
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let mut builder = hyper::Request::post(self.uri.clone())
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (name, value) in &self.config.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "http_error")?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|_| "http_error")?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|_| "http_error")?
                .to_bytes();
            Ok::<_, &'static str>((status, body))
        };
        // The connection is driven beside the exchange; its end alone decides nothing (a
        // server closing right after its answer is fine): the exchange fails if it broke.
        let connection = async {
            let _ = connection.await;
            std::future::pending::<()>().await
        };
        let (status, body) = tokio::select! {
            result = exchange => result?,
            () = connection => unreachable!("never completes"),
        };
        if status.is_client_error() {
            return Ok(Answer::Deny);
        }
        if !status.is_success() {
            return Err("http_error");
        }
        parse_answer(&body).ok_or("http_bad_answer")
    }
}

/// The request body.
fn body_json(r: &Request<'_>) -> Vec<u8> {
    let password = r.password.map(String::from_utf8_lossy);
    serde_json::to_vec(&serde_json::json!({
        "clientid": r.client_id,
        "username": r.username,
        "password": password,
        "peerhost": r.peer.to_string(),
        "listener": r.listener,
        "cert_identity": r.cert_identity,
        "protocol": r.protocol,
    }))
    .unwrap_or_default()
}

/// A 2xx body: empty (allow) or the JSON above; `None` if malformed.
fn parse_answer(body: &[u8]) -> Option<Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Answer::Allow {
            superuser: false,
            rules: None,
        });
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    match body.result.as_deref() {
        None | Some("allow") => {}
        Some("deny" | "ignore") => return Some(Answer::Deny),
        Some(_) => return None,
    }
    let rules = match body.acl {
        None => None,
        Some(list) => {
            let mut rules = Vec::with_capacity(list.len());
            for r in list {
                let access = match (r.permission.as_str(), r.action.as_deref()) {
                    ("deny", _) => Access::Deny,
                    ("allow", Some("publish")) => Access::Write,
                    ("allow", Some("subscribe")) => Access::Read,
                    ("allow", None | Some("all")) => Access::ReadWrite,
                    _ => return None,
                };
                rules.push(Rule::new(access, &r.topic, true).ok()?);
            }
            Some(rules.into())
        }
    };
    Some(Answer::Allow {
        superuser: body.is_superuser,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert!(matches!(
            parse_answer(b""),
            Some(Answer::Allow {
                superuser: false,
                rules: None
            })
        ));
        assert!(matches!(
            parse_answer(br#"{"result":"deny"}"#),
            Some(Answer::Deny)
        ));
        let a = parse_answer(
            br#"{"is_superuser":false,"acl":[{"permission":"allow","action":"publish","topic":"t/%c"},{"permission":"deny","topic":"t/x"}]}"#,
        );
        match a {
            Some(Answer::Allow { rules: Some(r), .. }) => assert_eq!(r.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(parse_answer(b"<html>").is_none());
        assert!(parse_answer(br#"{"acl":[{"permission":"allow","topic":"a/#/b"}]}"#).is_none());
    }
}
