//! HTTP responses of the Engine.IO endpoint: error JSON, CORS headers, payload bodies.

use bytes::Bytes;

use super::{Config, CorsOrigins};
use crate::net::{Headers, HttpResponse};

/// The Engine.IO error codes (engine.io `Server.errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    TransportUnknown,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedProtocolVersion,
    /// `io.maxConnections` sessions are open.
    TooManyConnections,
    /// `io.maxHandshakesPerSecond` was reached.
    TooManyHandshakes,
}

impl ErrorCode {
    fn number(self) -> u8 {
        match self {
            ErrorCode::TransportUnknown => 0,
            ErrorCode::UnknownSid => 1,
            ErrorCode::BadHandshakeMethod => 2,
            ErrorCode::BadRequest => 3,
            ErrorCode::Forbidden => 4,
            ErrorCode::UnsupportedProtocolVersion => 5,
            // Engine.IO has no code for an overloaded server; 3 ("Bad request") is the one its
            // clients treat as a failed handshake and retry with backoff.
            ErrorCode::TooManyConnections | ErrorCode::TooManyHandshakes => 3,
        }
    }

    fn message(self) -> &'static str {
        match self {
            ErrorCode::TransportUnknown => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
            ErrorCode::TooManyConnections => "Server at its connection limit",
            ErrorCode::TooManyHandshakes => "Server at its handshake rate limit",
        }
    }

    fn status(self) -> u16 {
        match self {
            ErrorCode::Forbidden => 403,
            ErrorCode::TooManyConnections | ErrorCode::TooManyHandshakes => 503,
            _ => 400,
        }
    }

    /// A short name for logs.
    pub(crate) fn log_name(self) -> &'static str {
        self.message()
    }
}

/// The CORS headers a polling response to a request with `request_headers` carries.
pub(crate) fn cors_headers(config: &Config, request_headers: &Headers) -> Headers {
    let mut headers = Headers::default();
    let Some(origins) = &config.cors_origins else {
        return headers;
    };
    let origin = request_headers.get("origin");
    let granted = match (origins, origin) {
        (CorsOrigins::Any, Some(origin)) if config.cors_credentials => Some(origin.to_owned()),
        (CorsOrigins::Any, _) => Some("*".to_owned()),
        (CorsOrigins::List(list), Some(origin)) if list.iter().any(|o| o == origin) => {
            Some(origin.to_owned())
        }
        (CorsOrigins::List(_), _) => None,
    };
    if let Some(granted) = granted {
        let echoed = granted != "*";
        headers.push("access-control-allow-origin", granted);
        if echoed {
            headers.push("vary", "Origin");
            if config.cors_credentials {
                headers.push("access-control-allow-credentials", "true");
            }
        }
    }
    headers
}

/// The answer to a CORS preflight (`OPTIONS`).
pub(crate) fn preflight_response(config: &Config, request_headers: &Headers) -> HttpResponse {
    let mut headers = cors_headers(config, request_headers);
    if !headers.0.is_empty() {
        headers.push("access-control-allow-methods", "GET,POST");
        let requested = request_headers
            .get("access-control-request-headers")
            .unwrap_or("content-type");
        headers.push("access-control-allow-headers", requested);
    }
    HttpResponse {
        status: 204,
        headers,
        body: Bytes::new(),
    }
}

/// An Engine.IO error: `{"code":N,"message":"…"}` as JSON.
pub(crate) fn error_response(code: ErrorCode, cors: Headers) -> HttpResponse {
    let mut headers = cors;
    headers.push("content-type", "application/json");
    let body = format!(
        "{{\"code\":{},\"message\":\"{}\"}}",
        code.number(),
        code.message()
    );
    HttpResponse {
        status: code.status(),
        headers,
        body: Bytes::from(body),
    }
}

/// `413` for a body over `maxPayload`.
pub(crate) fn payload_too_large(cors: Headers) -> HttpResponse {
    let mut headers = cors;
    headers.push("content-type", "text/plain; charset=UTF-8");
    HttpResponse {
        status: 413,
        headers,
        body: Bytes::from_static(b"Payload Too Large"),
    }
}

/// `200 ok`, the answer to an accepted POST.
pub(crate) fn post_ok(cors: Headers) -> HttpResponse {
    let mut headers = cors;
    headers.push("content-type", "text/html");
    HttpResponse {
        status: 200,
        headers,
        body: Bytes::from_static(b"ok"),
    }
}

/// How a polling GET body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `text/plain; charset=UTF-8`
    Text,
    /// `application/octet-stream` (v3 binary payload)
    Binary,
    /// `text/javascript; charset=UTF-8` (JSONP)
    Script,
}

/// `200` with a polling payload.
pub(crate) fn payload_response(body: Bytes, kind: BodyKind, mut headers: Headers) -> HttpResponse {
    let content_type = match kind {
        BodyKind::Text => "text/plain; charset=UTF-8",
        BodyKind::Binary => "application/octet-stream",
        BodyKind::Script => "text/javascript; charset=UTF-8",
    };
    headers.push("content-type", content_type);
    headers.push("cache-control", "no-store");
    HttpResponse {
        status: 200,
        headers,
        body,
    }
}
