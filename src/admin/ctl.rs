//! `warren ctl`: the admin API from the command line, as `rabbitmqctl` or `emqx ctl` are.
//! Tables for people by default, the API's JSON with `--json`; exit codes for scripts
//! ([`Exit`]). Plain HTTP/1.1 over a blocking socket (the API listens on loopback or a private
//! address; put a TLS proxy in front to reach it from elsewhere).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// Usage text of `warren ctl`.
pub const USAGE: &str = "\
usage: warren ctl [--url URL] [--token TOKEN] [--json] COMMAND
  status                                   version, uptime, listeners, counts, rates
  clients [--prefix P] [--username U] [--listener L] [--address A] [--limit N] [--all]
  client ID                                one client: connection, session, subscriptions
  kick ID [--reason CODE]                  disconnect a client (MQTT 5 reason, default 152)
  sessions [--prefix P] [--limit N] [--all]
  session delete ID                        end an offline session
  subscriptions [--filter-prefix F] [--client ID] [--limit N] [--all]
  retained list [FILTER] [--limit N] [--all]
  retained get TOPIC | retained delete TOPIC
  bridge                                   the AMQP bridge's connection and rules
  config                                   the configuration in force (secrets redacted)
  reload                                   reread auth, TLS and admin token files
  hash-token TOKEN                         the digest to put in [admin] tokens
--url defaults to $WARREN_ADMIN_URL, else http://127.0.0.1:9884; --token to $WARREN_ADMIN_TOKEN.
Exit codes: 0 done, 1 refused or failed, 2 usage, 3 not found, 4 unauthorized, 5 unreachable.";

/// Exit codes of `warren ctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// The API refused or failed the request.
    Failed = 1,
    /// Bad command line.
    Usage = 2,
    /// No such client, session, topic (or no bridge).
    NotFound = 3,
    /// Missing or wrong token.
    Unauthorized = 4,
    /// The API could not be reached.
    Unreachable = 5,
}

struct Options {
    url: String,
    token: Option<String>,
    json: bool,
    all: bool,
    query: Vec<(&'static str, String)>,
    positional: Vec<String>,
    reason: Option<u8>,
}

/// Runs `warren ctl ARGS`; what it prints goes to `out` (results) and `err` (errors).
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let options = match parse(args) {
        Ok(o) => o,
        Err(message) => {
            let _ = writeln!(err, "warren ctl: {message}\n\n{USAGE}");
            return Exit::Usage;
        }
    };
    match execute(&options, out) {
        Ok(()) => Exit::Ok,
        Err((exit, message)) => {
            let _ = writeln!(err, "warren ctl: {message}");
            exit
        }
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        url: std::env::var("WARREN_ADMIN_URL").unwrap_or_else(|_| "http://127.0.0.1:9884".into()),
        token: std::env::var("WARREN_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        json: false,
        all: false,
        query: Vec::new(),
        positional: Vec::new(),
        reason: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => o.url = value("--url")?,
            "--token" => o.token = Some(value("--token")?),
            "--json" => o.json = true,
            "--all" => o.all = true,
            "--prefix" => o.query.push(("prefix", value(arg)?)),
            "--username" => o.query.push(("username", value(arg)?)),
            "--listener" => o.query.push(("listener", value(arg)?)),
            "--address" => o.query.push(("address", value(arg)?)),
            "--limit" => o.query.push(("limit", value(arg)?)),
            "--filter-prefix" => o.query.push(("filter_prefix", value(arg)?)),
            "--client" => o.query.push(("client_id", value(arg)?)),
            "--reason" => {
                let v = value(arg)?;
                let code = match v.strip_prefix("0x") {
                    Some(hex) => u8::from_str_radix(hex, 16),
                    None => v.parse(),
                };
                o.reason = Some(code.map_err(|_| format!("bad reason code {v:?}"))?);
            }
            "-h" | "--help" => return Err("help".into()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => o.positional.push(arg.clone()),
        }
    }
    if o.positional.is_empty() {
        return Err("a command is needed".into());
    }
    Ok(o)
}

type Failure = (Exit, String);

fn execute(o: &Options, out: &mut dyn Write) -> Result<(), Failure> {
    let words: Vec<&str> = o.positional.iter().map(String::as_str).collect();
    let api = Api::new(&o.url, o.token.as_deref())?;
    let print = |out: &mut dyn Write, value: &Value, table: &dyn Fn(&Value) -> String| {
        let text = if o.json {
            serde_json::to_string_pretty(value).unwrap_or_default()
        } else {
            table(value)
        };
        let _ = writeln!(out, "{}", text.trim_end());
    };
    let query = |extra: &[(&str, &str)]| {
        let mut q: Vec<String> = o
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        q.extend(extra.iter().map(|(k, v)| format!("{k}={}", encode(v))));
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    };
    match words.as_slice() {
        ["hash-token", token] => {
            let _ = writeln!(out, "{}", super::auth::digest_hex(token));
        }
        ["status"] => print(
            out,
            &api.call("GET", "/api/v1/overview", None)?,
            &status_table,
        ),
        ["clients"] => {
            let items = api.pages("/api/v1/clients", &query(&[]), o.all)?;
            print(out, &items, &|v| sessions_table(v, true))
        }
        ["sessions"] => {
            let items = api.pages("/api/v1/sessions", &query(&[]), o.all)?;
            print(out, &items, &|v| sessions_table(v, false))
        }
        ["client", id] => {
            let v = api.call("GET", &format!("/api/v1/clients/{}", encode(id)), None)?;
            print(out, &v, &client_table)
        }
        ["kick", id] => {
            let body = o.reason.map(|r| format!("{{\"reason\":{r}}}"));
            let v = api.call(
                "POST",
                &format!("/api/v1/clients/{}/kick", encode(id)),
                body.as_deref(),
            )?;
            print(out, &v, &|v| {
                format!("kicked {} (reason {})", id, v["reason"])
            })
        }
        ["session", "delete", id] => {
            let v = api.call("DELETE", &format!("/api/v1/sessions/{}", encode(id)), None)?;
            print(out, &v, &|_| format!("deleted session {id}"))
        }
        ["subscriptions"] => {
            let items = api.pages("/api/v1/subscriptions", &query(&[]), o.all)?;
            print(out, &items, &|v| {
                table(
                    &["CLIENT", "FILTER", "QOS"],
                    rows(v, &["client_id", "filter", "qos"]),
                )
            })
        }
        ["retained", "list", rest @ ..] if rest.len() <= 1 => {
            let filter = rest.first().copied().unwrap_or("#");
            let items = api.pages("/api/v1/retained", &query(&[("filter", filter)]), o.all)?;
            print(out, &items, &|v| {
                table(
                    &["TOPIC", "QOS", "BYTES", "PAYLOAD"],
                    rows(v, &["topic", "qos", "payload_bytes", "payload"]),
                )
            })
        }
        ["retained", "get", topic] => {
            let v = api.call("GET", &format!("/api/v1/retained/{}", encode(topic)), None)?;
            print(out, &v, &|v| {
                v["payload"].as_str().unwrap_or_default().to_owned()
            })
        }
        ["retained", "delete", topic] => {
            let v = api.call(
                "DELETE",
                &format!("/api/v1/retained/{}", encode(topic)),
                None,
            )?;
            print(out, &v, &|_| format!("deleted retained message of {topic}"))
        }
        ["bridge"] => print(
            out,
            &api.call("GET", "/api/v1/bridge", None)?,
            &bridge_table,
        ),
        ["config"] => {
            let v = api.call("GET", "/api/v1/config", None)?;
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            );
        }
        ["reload"] => {
            let v = api.call("POST", "/api/v1/reload", None)?;
            print(out, &v, &|_| "reloaded".to_owned())
        }
        _ => {
            return Err((
                Exit::Usage,
                format!("unknown command {:?}\n\n{USAGE}", words.join(" ")),
            ))
        }
    }
    Ok(())
}

/// The API at one address.
struct Api<'a> {
    host: String,
    token: Option<&'a str>,
}

impl<'a> Api<'a> {
    fn new(url: &str, token: Option<&'a str>) -> Result<Api<'a>, Failure> {
        let host = url
            .strip_prefix("http://")
            .ok_or((
                Exit::Usage,
                format!("--url must be http://HOST:PORT (got {url:?})"),
            ))?
            .trim_end_matches('/');
        Ok(Api {
            host: host.to_owned(),
            token,
        })
    }

    /// One request; the answer's JSON, or the exit code and message of a failure.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value, Failure> {
        let unreachable = |e: std::io::Error| (Exit::Unreachable, format!("{}: {e}", self.host));
        let mut tcp = TcpStream::connect(&self.host).map_err(unreachable)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(unreachable)?;
        let auth = self
            .token
            .map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let body = body.unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        tcp.write_all(request.as_bytes()).map_err(unreachable)?;
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).map_err(unreachable)?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or((Exit::Failed, "no HTTP response".to_owned()))?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let message = || value["error"].as_str().unwrap_or(body).to_owned();
        match status {
            200..=299 => Ok(value),
            401 => Err((Exit::Unauthorized, message())),
            404 => Err((Exit::NotFound, message())),
            _ => Err((Exit::Failed, format!("{status}: {}", message()))),
        }
    }

    /// The items of a paged list: the first page, or every page with `all`.
    fn pages(&self, path: &str, query: &str, all: bool) -> Result<Value, Failure> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let sep = if query.is_empty() { '?' } else { '&' };
            let cursor = after
                .as_deref()
                .map_or(String::new(), |a| format!("{sep}after={}", encode(a)));
            let page = self.call("GET", &format!("{path}{query}{cursor}"), None)?;
            if let Some(list) = page["items"].as_array() {
                items.extend(list.iter().cloned());
            }
            match page["next"].as_str() {
                Some(next) if all => after = Some(next.to_owned()),
                _ => return Ok(Value::Array(items)),
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters (so `/`, `+`, `#` survive as data).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.chars().take(60).collect(),
        other => other.to_string(),
    }
}

fn rows(v: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    let list = v.get("items").unwrap_or(v);
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| keys.iter().map(|k| cell(&i[*k])).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(head.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

fn sessions_table(v: &Value, online: bool) -> String {
    if online {
        table(
            &[
                "CLIENT", "USER", "ADDRESS", "LISTENER", "PROTO", "SUBS", "QUEUED", "INFLIGHT",
            ],
            rows(
                v,
                &[
                    "client_id",
                    "username",
                    "address",
                    "listener",
                    "protocol",
                    "subscriptions",
                    "queued",
                    "inflight",
                ],
            ),
        )
    } else {
        table(
            &["CLIENT", "CONNECTED", "SUBS", "QUEUED", "INFLIGHT"],
            rows(
                v,
                &[
                    "client_id",
                    "connected",
                    "subscriptions",
                    "queued",
                    "inflight",
                ],
            ),
        )
    }
}

fn pairs(v: &Value, keys: &[&str]) -> String {
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    keys.iter()
        .map(|k| format!("{k:<width$}  {}", cell(&v[*k])))
        .collect::<Vec<_>>()
        .join("\n")
}

fn status_table(v: &Value) -> String {
    let mut out = pairs(v, &["version", "uptime_secs", "bridge"]);
    for section in ["counts", "totals", "rates"] {
        out.push_str(&format!("\n{section}:"));
        if let Some(map) = v[section].as_object() {
            for (k, x) in map {
                out.push_str(&format!("\n  {k:<18} {}", cell(x)));
            }
        }
    }
    out.push_str("\nlisteners:");
    for l in v["listeners"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  {:<10} {:<5} {}",
            cell(&l["name"]),
            cell(&l["kind"]),
            cell(&l["address"])
        ));
    }
    out
}

fn client_table(v: &Value) -> String {
    let mut out = pairs(
        v,
        &[
            "client_id",
            "connected",
            "username",
            "address",
            "listener",
            "protocol",
            "keep_alive",
            "clean_start",
            "session_expiry",
            "connected_since",
            "bytes_in",
            "bytes_out",
            "queued",
            "queued_bytes",
            "inflight",
            "subscriptions",
        ],
    );
    out.push('\n');
    out.push_str(&table(
        &["FILTER", "QOS", "NO_LOCAL", "RAP", "RH"],
        rows(
            &v["subscription_list"],
            &[
                "filter",
                "qos",
                "no_local",
                "retain_as_published",
                "retain_handling",
            ],
        ),
    ));
    out
}

fn bridge_table(v: &Value) -> String {
    let mut out = pairs(v, &["url", "connection", "reconnects", "connect_failures"]);
    out.push('\n');
    out.push_str(&table(
        &[
            "OUTBOUND",
            "FILTER",
            "EXCHANGE",
            "SUBSCRIBED",
            "PENDING",
            "SPOOLED",
        ],
        rows(
            &v["outbound"],
            &[
                "rule",
                "filter",
                "exchange",
                "subscribed",
                "pending",
                "spool_messages",
            ],
        ),
    ));
    out.push('\n');
    out.push_str(&table(
        &["INBOUND", "QUEUE", "CONSUMING"],
        rows(&v["inbound"], &["rule", "queue", "consuming"]),
    ));
    out
}
