//! The admin API's handlers: each reads the broker through [`crate::broker::clients`] (or the
//! bridge's snapshot), lets go of every lock, and answers JSON. Errors are `{"error": "..."}`
//! with a 4xx status.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::routes::{self, Route};
use super::Admin;
use crate::broker::clients::{DeleteSession, SessionQuery, SessionRow, SubscriptionCursor};
use crate::protocol::reason;
use crate::session::mailbox::Message;

/// Rows of a page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// Most rows of a page.
const MAX_LIMIT: usize = 1000;
/// Rows of a page of subscriptions unless `limit` says otherwise.
const DEFAULT_SUBSCRIPTIONS_LIMIT: usize = 1000;
/// Most rows of a page of subscriptions.
const MAX_SUBSCRIPTIONS_LIMIT: usize = 10_000;
/// Largest request body read (a kick's reason).
const MAX_BODY: usize = 4096;

/// Answers `route`. The work (a pass over the registry, the JSON) runs on a blocking thread,
/// not on the broker's async workers, so that a large listing does not hold up publishes.
pub async fn dispatch(
    admin: std::sync::Arc<Admin>,
    route: Route,
    params: Vec<String>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let query = routes::query(request.uri().query());
    let param = params.into_iter().next().unwrap_or_default();
    let body = match route {
        Route::Kick => match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("request body: {e}")),
        },
        _ => Bytes::new(),
    };
    tokio::task::spawn_blocking(move || answer(&admin, route, &param, &query, &body))
        .await
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "the handler failed"))
}

fn answer(
    admin: &Admin,
    route: Route,
    param: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Response<Full<Bytes>> {
    let param = param.to_owned();
    let query = query.to_vec();
    let result = match route {
        Route::OpenApi => Ok(openapi()),
        Route::Overview => Ok(ok(overview(admin))),
        Route::Clients => page_of_sessions(admin, &query, true),
        Route::Sessions => page_of_sessions(admin, &query, false),
        Route::Client => one_session(admin, &param, true),
        Route::Session => one_session(admin, &param, false),
        Route::Kick => kick(admin, &param, body),
        Route::DeleteSession => delete_session(admin, &param),
        Route::Subscriptions => subscriptions(admin, &query),
        Route::Retained => retained_page(admin, &query),
        Route::RetainedOne => match admin.core.retained_get(&param) {
            Some(message) => Ok(ok(retained_json(&message, true))),
            None => Err((
                StatusCode::NOT_FOUND,
                "no retained message on that topic".into(),
            )),
        },
        Route::DeleteRetained => match admin.core.retained_delete(&param) {
            true => Ok(ok(json!({"deleted": param}))),
            false => Err((
                StatusCode::NOT_FOUND,
                "no retained message on that topic".into(),
            )),
        },
        Route::Bridge => bridge(admin),
        Route::Config => Ok(ok(config_json(admin.core.config()))),
        Route::Reload => match admin.reloader.reload() {
            Ok(()) => Ok(ok(json!({"reloaded": true}))),
            Err(e) => Err((StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
        },
    };
    result.unwrap_or_else(|(status, message)| error(status, &message))
}

type Answer = Result<Response<Full<Bytes>>, (StatusCode, String)>;

fn ok(value: Value) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, &value)
}

fn respond(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// An error answer.
pub fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(status, &json!({ "error": message }))
}

/// 401 with the scheme to use.
pub fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = error(StatusCode::UNAUTHORIZED, "a bearer token is required");
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer"),
    );
    response
}

fn openapi() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

fn overview(admin: &Admin) -> Value {
    let core = &admin.core;
    let gauges = core.gauges();
    let snap = core.stats().snapshot();
    let history = admin.history();
    let rates = match (
        history.len().checked_sub(2).map(|i| history[i]),
        history.last(),
    ) {
        (Some(a), Some(b)) if b.at_ms > a.at_ms => {
            let secs = (b.at_ms - a.at_ms) as f64 / 1000.0;
            let per = |x: u64, y: u64| (y.saturating_sub(x) as f64 / secs).round();
            json!({
                "messages_in": per(a.received, b.received),
                "messages_out": per(a.delivered, b.delivered),
                "bytes_in": per(a.bytes_in, b.bytes_in),
                "bytes_out": per(a.bytes_out, b.bytes_out),
            })
        }
        _ => json!({"messages_in": 0, "messages_out": 0, "bytes_in": 0, "bytes_out": 0}),
    };
    let history: Vec<Value> = history
        .windows(2)
        .map(|w| {
            let secs = (w[1].at_ms.saturating_sub(w[0].at_ms)).max(1) as f64 / 1000.0;
            json!({
                "at": w[1].at_ms,
                "messages_in": (w[1].received.saturating_sub(w[0].received) as f64 / secs).round(),
                "messages_out": (w[1].delivered.saturating_sub(w[0].delivered) as f64 / secs).round(),
            })
        })
        .collect();
    let listeners: Vec<Value> = admin
        .listeners
        .iter()
        .map(|(name, addr)| {
            let kind = core
                .config()
                .listeners
                .get(name)
                .map_or("tcp", |l| l.kind.label());
            json!({"name": name, "kind": kind, "address": addr.to_string()})
        })
        .collect();
    let dropped = snap.dropped_queue_full
        + snap.dropped_offline_qos0
        + snap.dropped_too_large
        + snap.dropped_expired;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": core.clock().started().elapsed().as_secs(),
        "listeners": listeners,
        "metrics_address": admin.metrics_addr.map(|a| a.to_string()),
        "counts": {
            "connections": gauges.online,
            "sessions": gauges.online + gauges.offline,
            "offline_sessions": gauges.offline,
            "subscriptions": gauges.subscriptions,
            "retained": gauges.retained,
            "queued": gauges.queued,
            "queued_bytes": gauges.queued_bytes,
            "inflight": gauges.inflight,
        },
        "totals": {
            "connections": snap.connections_total,
            "connects_refused": snap.connects_refused,
            "messages_in": snap.messages_received.iter().sum::<u64>(),
            "messages_out": snap.messages_delivered.iter().sum::<u64>(),
            "messages_dropped": dropped,
            "bytes_in": snap.bytes_in,
            "bytes_out": snap.bytes_out,
        },
        "rates": rates,
        "history": history,
        "bridge": admin.bridge.as_ref().map(|b| format!("{:?}", b.snapshot().connection).to_lowercase()),
    })
}

fn number(
    query: &[(String, String)],
    key: &str,
    default: usize,
) -> Result<usize, (StatusCode, String)> {
    number_up_to(query, key, default, MAX_LIMIT)
}

fn number_up_to(
    query: &[(String, String)],
    key: &str,
    default: usize,
    max: usize,
) -> Result<usize, (StatusCode, String)> {
    match get(query, key) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or((
                StatusCode::BAD_REQUEST,
                format!("{key} must be a number from 1 to {max}"),
            )),
    }
}

fn get<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn page_of_sessions(admin: &Admin, query: &[(String, String)], online_only: bool) -> Answer {
    let owned = |key: &str| get(query, key).filter(|v| !v.is_empty()).map(str::to_owned);
    let wanted = SessionQuery {
        after: owned("after"),
        prefix: owned("prefix"),
        username: owned("username"),
        listener: owned("listener"),
        address: owned("address"),
        online_only,
        limit: number(query, "limit", DEFAULT_LIMIT)?,
    };
    let (rows, next) = admin.core.sessions_page(&wanted);
    let items: Vec<Value> = rows.iter().map(session_json).collect();
    Ok(ok(json!({ "items": items, "next": next })))
}

fn session_json(row: &SessionRow) -> Value {
    let mut out = json!({
        "client_id": &*row.client_id,
        "connected": row.client.is_some(),
        "queued": row.queued,
        "queued_bytes": row.queued_bytes,
        "inflight": row.inflight,
        "subscriptions": row.subscriptions,
    });
    if let (Some(c), Some(map)) = (&row.client, out.as_object_mut()) {
        let fields = json!({
            "username": c.username.as_deref(),
            "listener": &*c.listener,
            "address": c.peer.to_string(),
            "protocol": c.protocol.label(),
            "keep_alive": c.keep_alive,
            "session_expiry": c.session_expiry,
            "clean_start": c.clean_start,
            "connected_since": c.connected_at_ms,
            "bytes_in": c.bytes_in(),
            "bytes_out": c.bytes_out(),
        });
        if let Value::Object(fields) = fields {
            map.extend(fields);
        }
    }
    out
}

fn one_session(admin: &Admin, client_id: &str, online_only: bool) -> Answer {
    let row = admin
        .core
        .session(client_id)
        .filter(|row| !online_only || row.client.is_some())
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!(
                    "no {} {client_id:?}",
                    if online_only {
                        "connected client"
                    } else {
                        "session"
                    }
                ),
            )
        })?;
    let mut out = session_json(&row);
    let subs: Vec<Value> = admin
        .core
        .subscriptions("", Some(client_id), None, usize::MAX)
        .0
        .into_iter()
        .map(|(_, s)| subscription_json(None, &s))
        .collect();
    if let Some(map) = out.as_object_mut() {
        map.insert("subscription_list".into(), Value::Array(subs));
    }
    Ok(ok(out))
}

fn subscription_json(
    client_id: Option<&str>,
    s: &crate::broker::clients::SubscriptionRow,
) -> Value {
    let o = &s.entry.options;
    let mut v = json!({
        "filter": &*s.filter,
        "qos": o.qos as u8,
        "no_local": o.no_local,
        "retain_as_published": o.retain_as_published,
        "retain_handling": o.retain_handling,
        "subscription_id": s.entry.id,
    });
    if let (Some(id), Some(map)) = (client_id, v.as_object_mut()) {
        map.insert("client_id".into(), id.into());
    }
    v
}

fn kick(admin: &Admin, client_id: &str, body: &[u8]) -> Answer {
    let code = if body.iter().all(u8::is_ascii_whitespace) {
        reason::ADMINISTRATIVE_ACTION
    } else {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("request body: {e}")))?;
        match v.get("reason") {
            None | Some(Value::Null) => reason::ADMINISTRATIVE_ACTION,
            Some(r) => r
                .as_u64()
                .and_then(|r| u8::try_from(r).ok())
                .filter(|&r| crate::protocol::server_disconnect_reason(r))
                .ok_or((
                    StatusCode::BAD_REQUEST,
                    "reason must be an MQTT 5 DISCONNECT reason code a server may send".into(),
                ))?,
        }
    };
    match admin.core.kick(client_id, code) {
        true => Ok(ok(json!({"kicked": client_id, "reason": code}))),
        false => Err((
            StatusCode::NOT_FOUND,
            format!("no connected client {client_id:?}"),
        )),
    }
}

fn delete_session(admin: &Admin, client_id: &str) -> Answer {
    match admin.core.delete_session(client_id) {
        DeleteSession::Deleted => Ok(ok(json!({"deleted": client_id}))),
        DeleteSession::Connected => Err((
            StatusCode::CONFLICT,
            "the client is connected: kick it first".into(),
        )),
        DeleteSession::NotFound => {
            Err((StatusCode::NOT_FOUND, format!("no session {client_id:?}")))
        }
    }
}

fn subscriptions(admin: &Admin, query: &[(String, String)]) -> Answer {
    let prefix = get(query, "filter_prefix").unwrap_or_default();
    let client = get(query, "client_id").filter(|c| !c.is_empty());
    let limit = number_up_to(
        query,
        "limit",
        DEFAULT_SUBSCRIPTIONS_LIMIT,
        MAX_SUBSCRIPTIONS_LIMIT,
    )?;
    let after = match get(query, "after").filter(|a| !a.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<SubscriptionCursor>().map_err(|()| {
            (
                StatusCode::BAD_REQUEST,
                "after must be the next of a previous page".to_owned(),
            )
        })?),
    };
    let (rows, next) = admin
        .core
        .subscriptions(prefix, client, after.as_ref(), limit);
    let items: Vec<Value> = rows
        .iter()
        .map(|(id, s)| subscription_json(Some(id), s))
        .collect();
    Ok(ok(
        json!({ "items": items, "next": next.map(|n| n.to_string()) }),
    ))
}

fn retained_page(admin: &Admin, query: &[(String, String)]) -> Answer {
    let filter = get(query, "filter").unwrap_or("#");
    if !crate::protocol::topic::valid_topic_filter(filter) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("{filter:?} is not a topic filter"),
        ));
    }
    let limit = number(query, "limit", DEFAULT_LIMIT)?;
    let (messages, next) = admin.core.retained_page(filter, get(query, "after"), limit);
    let items: Vec<Value> = messages.iter().map(|m| retained_json(m, false)).collect();
    Ok(ok(json!({ "items": items, "next": next })))
}

/// Payloads longer than this are cut in listings.
const LISTED_PAYLOAD: usize = 256;

fn retained_json(message: &Message, whole: bool) -> Value {
    use base64::Engine;
    let payload = message.payload();
    let shown = if whole {
        payload
    } else {
        &payload[..payload.len().min(LISTED_PAYLOAD)]
    };
    let (text, encoding) = match std::str::from_utf8(shown) {
        Ok(text) => (text.to_owned(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(shown),
            "base64",
        ),
    };
    json!({
        "topic": message.topic(),
        "qos": message.qos as u8,
        "payload": text,
        "payload_encoding": encoding,
        "payload_bytes": payload.len(),
        "truncated": shown.len() < payload.len(),
        "publisher": message.publisher.as_deref(),
    })
}

fn bridge(admin: &Admin) -> Answer {
    let Some(handle) = &admin.bridge else {
        return Err((StatusCode::NOT_FOUND, "the bridge is not enabled".into()));
    };
    let snap = handle.snapshot();
    let config = &admin.core.config().bridge;
    let outbound: Vec<Value> = snap
        .outbound
        .iter()
        .zip(&config.outbound)
        .map(|(s, rule)| {
            json!({
                "rule": s.rule,
                "filter": rule.filter,
                "exchange": rule.exchange,
                "subscribed": s.subscribed,
                "pending": s.pending,
                "spool_messages": s.spool_messages,
                "spool_bytes": s.spool_bytes,
                "counts": format!("{:?}", s.counts),
            })
        })
        .collect();
    let inbound: Vec<Value> = snap
        .inbound
        .iter()
        .zip(&config.inbound)
        .map(|(s, rule)| {
            json!({
                "rule": s.rule,
                "queue": rule.queue,
                "consuming": s.consuming,
                "counts": format!("{:?}", s.counts),
            })
        })
        .collect();
    Ok(ok(json!({
        "url": redact_url(&config.url),
        "connection": format!("{:?}", snap.connection).to_lowercase(),
        "reconnects": snap.reconnects,
        "connect_failures": snap.connect_failures,
        "outbound": outbound,
        "inbound": inbound,
    })))
}

/// The configuration as JSON, secrets replaced by `"***"`.
pub fn config_json(config: &crate::config::Config) -> Value {
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    redact(&mut value);
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => redact_map(map),
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) if s.contains("://") => *s = redact_url(s),
        _ => {}
    }
}

fn redact_map(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        let secret = matches!(key.as_str(), "secret" | "password" | "tokens" | "headers");
        if secret && !value.is_null() {
            match value {
                Value::Object(inner) => inner.values_mut().for_each(|v| *v = "***".into()),
                Value::Array(inner) => inner.iter_mut().for_each(|v| *v = "***".into()),
                _ => *value = "***".into(),
            }
        } else {
            redact(value);
        }
    }
}

/// `url` without the password of its user info.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let mut config = crate::config::Config::for_tests();
        config.bridge.url = "amqp://guest:hunter2@localhost:5672/%2f".into();
        config.admin.tokens = vec!["ab".repeat(32)];
        config.auth.jwt = Some(crate::auth::config::JwtConfig {
            secret: Some("jwt-secret".into()),
            ..Default::default()
        });
        let text = config_json(&config).to_string();
        for secret in ["hunter2", "jwt-secret", &"ab".repeat(32)] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("amqp://guest:***@localhost"), "{text}");
        assert!(text.contains("\"max_packet_size\""), "{text}");
    }
}
