//! `amqp://` and `amqps://` URLs (RabbitMQ's URI spec): scheme, user and password, host, port,
//! virtual host, and the `heartbeat` and `auth_mechanism` (`plain`, `external`) query
//! parameters. Percent-escapes are decoded in the user,
//! password and virtual host (`%2f` is `/`, the default virtual host).

use std::str::FromStr;

/// A parsed AMQP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    /// `amqps://`.
    pub tls: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// 5672 for `amqp`, 5671 for `amqps` unless given.
    pub port: u16,
    /// `guest` unless given.
    pub user: String,
    /// `guest` unless given.
    pub password: String,
    /// `/` unless given.
    pub vhost: String,
    /// Heartbeat in seconds (`?heartbeat=N`), the client's default unless given.
    pub heartbeat: Option<u16>,
    /// `?auth_mechanism=external`: SASL EXTERNAL (RabbitMQ takes the user from the TLS client
    /// certificate); PLAIN with the user and password otherwise.
    pub external: bool,
}

/// Why a URL is not an AMQP URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(&'static str);

fn decode(s: &str) -> Result<String, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .ok_or(UrlError("a % escape needs two hex digits"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| UrlError("bad % escape"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| UrlError("bad % escape"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError("a % escape decodes to invalid UTF-8"))
}

impl FromStr for AmqpUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<AmqpUrl, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(UrlError("expected amqp://… or amqps://…"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "amqp" => false,
            "amqps" => true,
            _ => return Err(UrlError("the scheme must be amqp or amqps")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => ("guest".to_string(), "guest".to_string()),
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (decode(u)?, decode(p)?),
                None => (decode(u)?, String::new()),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or(UrlError("unclosed [ in the host"))?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or(UrlError("bad port"))?)),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| UrlError("bad port"))?,
            None if tls => 5671,
            None => 5672,
        };
        let vhost = match path {
            None | Some("") => "/".to_string(),
            Some(p) if p.contains('/') => {
                return Err(UrlError(
                    "the virtual host must be one path segment (escape / as %2f)",
                ))
            }
            Some(p) => decode(p)?,
        };
        let mut heartbeat = None;
        let mut external = false;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            if let Some(v) = pair.strip_prefix("auth_mechanism=") {
                external = match v.to_ascii_lowercase().as_str() {
                    "external" => true,
                    "plain" => false,
                    _ => return Err(UrlError("auth_mechanism must be plain or external")),
                };
            }
            if let Some(v) = pair.strip_prefix("heartbeat=") {
                heartbeat = Some(
                    v.parse()
                        .map_err(|_| UrlError("heartbeat must be 0 to 65535"))?,
                );
            }
        }
        Ok(AmqpUrl {
            tls,
            host: host.to_string(),
            port,
            user,
            password,
            vhost,
            heartbeat,
            external,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::AmqpUrl;

    fn url(s: &str) -> AmqpUrl {
        s.parse().unwrap()
    }

    #[test]
    fn parts_and_defaults() {
        let u = url("amqp://guest:s%40cret@127.0.0.1:5750/%2f");
        assert_eq!(
            (
                u.tls,
                u.host.as_str(),
                u.port,
                u.user.as_str(),
                u.password.as_str(),
                u.vhost.as_str()
            ),
            (false, "127.0.0.1", 5750, "guest", "s@cret", "/")
        );
        let u = url("amqps://rabbit.example");
        assert_eq!(
            (u.tls, u.port, u.user.as_str(), u.vhost.as_str()),
            (true, 5671, "guest", "/")
        );
        assert!(url("amqps://h?auth_mechanism=EXTERNAL").external);
        assert!(!url("amqps://h?auth_mechanism=plain").external);
        assert!("amqps://h?auth_mechanism=scram".parse::<AmqpUrl>().is_err());
        let u = url("amqp://u:p@[::1]/prod?heartbeat=10");
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost.as_str(), u.heartbeat),
            ("::1", 5672, "prod", Some(10))
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "http://h",
            "127.0.0.1:5672",
            "amqp://",
            "amqp://h:port",
            "amqp://h/a/b",
            "amqp://h/%zz",
            "amqp://h?heartbeat=-1",
        ] {
            assert!(bad.parse::<AmqpUrl>().is_err(), "{bad}");
        }
    }
}
