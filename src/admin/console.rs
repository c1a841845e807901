//! The web console: one page, one script and one style sheet, plain HTML/JS/CSS built into the
//! binary with `include_str!` (no build step, no CDN, nothing fetched but this API). The page
//! asks for a bearer token only if the API answers 401, and keeps it in the tab's
//! `sessionStorage`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// The console's file at the request's path, or 404.
pub fn asset<B>(request: &Request<B>) -> Response<Full<Bytes>> {
    let (status, kind, body) =
        if request.method() != Method::GET && request.method() != Method::HEAD {
            (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n")
        } else {
            match request.uri().path() {
                "/" | "/index.html" => (StatusCode::OK, "text/html; charset=utf-8", INDEX),
                "/console.js" => (StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT),
                "/console.css" => (StatusCode::OK, "text/css; charset=utf-8", STYLE),
                _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n"),
            }
        };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    // The console loads nothing from elsewhere, and may not be framed.
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        hyper::header::HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    response
}
