//! The plain HTTP routes the original's Express app answered, with its exact answers:
//! `GET`/`HEAD /healthcheck` → `ok`; `POST /send` (see [`super::send`]); Express's automatic
//! `OPTIONS` answers; its 404 page for everything else outside the Engine.IO path. Courier adds
//! the pages of `gateway/pages.rs`: `/` and `/demo` (with `--demo` only), `/status` and
//! `/status.json` (with an operator key only); otherwise they are 404 as before.
//!
//! Express matched routes case-insensitively and with an optional trailing slash, so
//! `/HealthCheck/` is the health check too. Every answer carries `X-Powered-By: Express`, as
//! the original's did, and the fixed texts carry the weak `ETag` Express computed for them
//! (a SHA-1 of the body, precomputed here; `If-None-Match` revalidation is not reproduced).

use bytes::Bytes;

use crate::net::{Headers, HttpResponse, Method};

/// What a request outside the Engine.IO path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET` or `HEAD /healthcheck`.
    Healthcheck,
    /// `POST /send`.
    Send,
    /// `OPTIONS /send`: Express's automatic answer, `Allow: POST`.
    Options,
    /// `OPTIONS /healthcheck`: Express's automatic answer, `Allow: GET,HEAD`.
    HealthcheckOptions,
    /// `GET` or `HEAD /` or `/demo`: the demo page when the demo site runs.
    Demo,
    /// `GET` or `HEAD /status`: the status page when an operator key is configured.
    Status,
    /// `GET /status.json`: the status page's data.
    StatusJson,
    /// Anything else: Express's 404 page.
    NotFound,
}

/// Whether `path` is `route` as Express matched it (case-insensitive, optional trailing `/`).
fn matches_path(path: &str, route: &str) -> bool {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    path.eq_ignore_ascii_case(route)
}

/// Classifies a request by method and path (the path without its query).
pub fn route(method: &Method, path: &str) -> Route {
    if matches_path(path, "/healthcheck") {
        match method {
            Method::Get | Method::Head => Route::Healthcheck,
            Method::Options => Route::HealthcheckOptions,
            _ => Route::NotFound,
        }
    } else if matches_path(path, "/send") {
        match method {
            Method::Post => Route::Send,
            Method::Options => Route::Options,
            _ => Route::NotFound,
        }
    } else if matches!(method, Method::Get | Method::Head)
        && (matches_path(path, "/") || matches_path(path, "/demo"))
    {
        Route::Demo
    } else if matches!(method, Method::Get | Method::Head) && matches_path(path, "/status") {
        Route::Status
    } else if *method == Method::Get && matches_path(path, "/status.json") {
        Route::StatusJson
    } else {
        Route::NotFound
    }
}

/// The answer of a route that needs no gateway state: everything but [`Route::Send`] and the
/// pages (which give `None`). `path` is the request path, quoted by the 404 page.
pub fn fixed_response(route: Route, method: &Method, path: &str) -> Option<HttpResponse> {
    let head = *method == Method::Head;
    let response = match route {
        Route::Send | Route::Demo | Route::Status | Route::StatusJson => return None,
        Route::Healthcheck => express(200, "text/html; charset=utf-8", "ok"),
        Route::Options => allow("POST"),
        Route::HealthcheckOptions => allow("GET,HEAD"),
        Route::NotFound => not_found(method, path),
    };
    Some(if head {
        HttpResponse {
            body: Bytes::new(),
            ..response
        }
    } else {
        response
    })
}

/// `200 OK` (`text/plain; charset=utf-8`), the original's answer to every accepted `/send`.
pub fn send_ok() -> HttpResponse {
    express(200, "text/plain; charset=utf-8", "OK")
}

/// Express's 404 page: `Cannot <METHOD> <path>` in its HTML error template.
pub fn not_found(method: &Method, path: &str) -> HttpResponse {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Cannot {} {}</pre>\n</body>\n</html>\n",
        escape_html(method.as_str()),
        escape_html(&encode_url(path)),
    );
    let mut response = express(404, "text/html; charset=utf-8", body);
    response
        .headers
        .push("content-security-policy", "default-src 'none'");
    response.headers.push("x-content-type-options", "nosniff");
    response
}

fn allow(methods: &'static str) -> HttpResponse {
    let mut response = express(200, "text/html; charset=utf-8", methods);
    response.headers.push("allow", methods);
    response
}

/// An HTTP answer with a text body.
pub(crate) fn text_response(
    status: u16,
    content_type: &str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut headers = Headers::default();
    headers.push("content-type", content_type);
    HttpResponse {
        status,
        headers,
        body: body.into(),
    }
}

/// Express's weak ETags (`etag` package: length in hex and base64 SHA-1) of the fixed bodies.
const ETAGS: [(&str, &str); 6] = [
    ("ok", "W/\"2-eoX0dku9ba8cNUXvu/DyeabcC+s\""),
    ("OK", "W/\"2-nOO9QiTIwXgNtWtBJezz8kv3SLc\""),
    ("POST", "W/\"4-Yf+Bwwqjx254r+pisuO9HfpJ6FQ\""),
    ("GET,HEAD", "W/\"8-ZRAf8oNBS3Bjb/SU2GYZCmbtmXg\""),
    ("ApiKey invalid.", "W/\"f-shUWMXLK6rtBRvwCK1RBVbrGWuo\""),
    (
        "Missing query param 'site' or 'apiKey'.",
        "W/\"27-JI3AtBe6DVyN41J1SJ577LfZLZ4\"",
    ),
];

/// An answer as Express's `res.send` wrote it: `X-Powered-By: Express`, the content type, and
/// the weak ETag for the fixed bodies.
pub(crate) fn express(status: u16, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    let body = body.into();
    let mut response = text_response(status, content_type, body.clone());
    response.headers.push("x-powered-by", "Express");
    if let Some((_, etag)) = ETAGS.iter().find(|(text, _)| text.as_bytes() == &body[..]) {
        response.headers.push("etag", *etag);
    }
    response
}

/// The `encodeurl` package: percent-encodes what may not appear in a URL, keeping existing
/// `%XX` escapes.
fn encode_url(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    for (i, &b) in bytes.iter().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b"!#$&'()*+,-./:;=?@[]_~".contains(&b);
        let escape_start = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if keep || escape_start {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `escape-html` package.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
