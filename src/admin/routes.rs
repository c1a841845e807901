//! The admin API's routes: one table that dispatches requests and that a test checks against
//! the OpenAPI document. A `{name}` segment matches one path segment, percent-decoded (a topic
//! name's `/` is sent as `%2F`).

use hyper::Method;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The OpenAPI document.
    OpenApi,
    /// Version, uptime, listeners, counts, rates.
    Overview,
    /// Connected clients, paged and filtered.
    Clients,
    /// One connected client.
    Client,
    /// Disconnect a client.
    Kick,
    /// Sessions, online and offline.
    Sessions,
    /// One session.
    Session,
    /// End an offline session.
    DeleteSession,
    /// Subscriptions.
    Subscriptions,
    /// Retained messages matching a filter, paged.
    Retained,
    /// One retained message.
    RetainedOne,
    /// Delete a retained message.
    DeleteRetained,
    /// The bridge's rules and state.
    Bridge,
    /// The configuration in force, secrets redacted.
    Config,
    /// Reread the auth files and certificates.
    Reload,
}

impl Route {
    /// False for what anyone may read (the API's description).
    pub fn needs_token(self) -> bool {
        self != Route::OpenApi
    }
}

/// Every route: method, path template, route.
pub const ROUTES: &[(Method, &str, Route)] = &[
    (Method::GET, "/api/v1/openapi.json", Route::OpenApi),
    (Method::GET, "/api/v1/overview", Route::Overview),
    (Method::GET, "/api/v1/clients", Route::Clients),
    (Method::GET, "/api/v1/clients/{client_id}", Route::Client),
    (
        Method::POST,
        "/api/v1/clients/{client_id}/kick",
        Route::Kick,
    ),
    (Method::GET, "/api/v1/sessions", Route::Sessions),
    (Method::GET, "/api/v1/sessions/{client_id}", Route::Session),
    (
        Method::DELETE,
        "/api/v1/sessions/{client_id}",
        Route::DeleteSession,
    ),
    (Method::GET, "/api/v1/subscriptions", Route::Subscriptions),
    (Method::GET, "/api/v1/retained", Route::Retained),
    (Method::GET, "/api/v1/retained/{topic}", Route::RetainedOne),
    (
        Method::DELETE,
        "/api/v1/retained/{topic}",
        Route::DeleteRetained,
    ),
    (Method::GET, "/api/v1/bridge", Route::Bridge),
    (Method::GET, "/api/v1/config", Route::Config),
    (Method::POST, "/api/v1/reload", Route::Reload),
];

/// The route for `method` and `path`, with the values of its `{...}` segments.
pub fn find(method: &Method, path: &str) -> Option<(Route, Vec<String>)> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .filter(|(m, _, _)| m == method)
        .find_map(|(_, template, route)| matches(template, path).map(|params| (*route, params)))
}

/// True when some route has this path (with another method).
pub fn path_known(path: &str) -> bool {
    ROUTES
        .iter()
        .any(|(_, template, _)| matches(template, path).is_some())
}

fn matches(template: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut want = template.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return None;
                }
                params.push(percent_decode(h)?);
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

/// `%XX` escapes decoded (`+` stays `+`: it is a topic wildcard, not a space); `None` when an
/// escape is broken or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded `key=value` pairs of a query string.
pub fn query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_decoded_segment() {
        assert_eq!(
            find(&Method::GET, "/api/v1/retained/a%2Fb%2B"),
            Some((Route::RetainedOne, vec!["a/b+".to_owned()]))
        );
        assert_eq!(
            find(&Method::POST, "/api/v1/clients/dev%201/kick"),
            Some((Route::Kick, vec!["dev 1".to_owned()]))
        );
        assert_eq!(find(&Method::GET, "/api/v1/retained/a/b"), None);
        assert_eq!(find(&Method::GET, "/api/v1/clients/"), None);
        assert_eq!(find(&Method::GET, "/api/v1/clients/%zz"), None);
        assert!(find(&Method::POST, "/api/v1/overview").is_none());
        assert!(path_known("/api/v1/overview"));
    }

    #[test]
    fn queries_are_decoded_and_plus_is_kept() {
        assert_eq!(
            query(Some("filter=a%2F%2B%2F%23&limit=5&x")),
            vec![
                ("filter".to_owned(), "a/+/#".to_owned()),
                ("limit".to_owned(), "5".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(
            query(Some("f=a/+")),
            vec![("f".to_owned(), "a/+".to_owned())]
        );
    }
}
