//! The HTTP side: hyper 1 over any [`Runtime`]'s TCP stream. Each request's body is read whole
//! within its route's limit and deadline ([`crate::request_body`]), handed to the driver as a [`net::HttpRequest`], and answered with whatever the
//! engine decides, possibly much later (long polling). A request whose client leaves first is
//! reported to the engine as aborted.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use bytes::Bytes;
use courier_core::net::{self, ConnId, Headers, Method, RequestId};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use smol_hyper::rt::FuturesIo;

use crate::driver::{DriverHandle, Input, Reply, TaskCounter};
use crate::engines::Engines;
use crate::hyper_glue::RuntimeTimer;
use crate::linger::Lingering;
use crate::ops::{self, Ops};
use crate::request_body::{BodyError, BodyReading};
use crate::runtime::{Listener, Runtime};
use crate::ws;

/// The most bytes of a request head (request line and headers), as Node's default
/// `maxHeaderSize`; more is answered 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most headers in one request: Node's `maxHeadersCount` (hyper's default is 100), so no
/// request Node took is refused for its number of headers; the byte limit above binds first
/// for all but the shortest headers.
const MAX_HEADERS: usize = 2000;

/// What every connection of one server shares.
pub(crate) struct Server<R: Runtime> {
    pub(crate) runtime: R,
    /// The engines requests are routed to (`crate::engines`).
    pub(crate) engines: Arc<Engines>,
    pub(crate) max_payload: usize,
    pub(crate) header_read_timeout: Duration,
    /// How request bodies are read: limits, deadline, budget.
    pub(crate) bodies: BodyReading,
    /// Counts WebSocket tasks, so a shutdown can wait for close frames to be written.
    pub(crate) ws_tasks: TaskCounter,
    /// Readiness and the I/O layer's counters.
    pub(crate) ops: Arc<Ops>,
    /// The `metrics.bind` listener: only `/metrics` and `/readyz`, 404 for the rest.
    pub(crate) ops_only: bool,
}

impl<R: Runtime> Server<R> {
    /// Accepts connections until the future is dropped.
    pub(crate) async fn accept_loop(self: Arc<Self>, listener: R::Listener) {
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    let server = Arc::clone(&self);
                    self.runtime.spawn(Box::pin(
                        async move { server.serve_connection(stream).await },
                    ));
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(target: "courier", error = %error, "accept failed");
                    self.runtime.sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn serve_connection(self: Arc<Self>, stream: R::Stream) {
        let server = Arc::clone(&self);
        let service = hyper::service::service_fn(move |request| {
            let server = Arc::clone(&server);
            async move { Ok::<_, Infallible>(server.handle(request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(RuntimeTimer(self.runtime.clone()))
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS)
            .serve_connection(
                FuturesIo::new(Lingering::new(stream, self.runtime.clone())),
                service,
            )
            .with_upgrades();
        // Errors here are the peer's (reset, bad request line); hyper already answered 400
        // where it could.
        let _ = connection.await;
    }

    async fn handle(&self, mut request: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(response) = self.ops_route(&request).await {
            return response;
        }
        let driver = self.engines.route(request.uri().query());
        let id = driver.next_request_id();
        let websocket = is_websocket_upgrade(request.method(), request.headers());
        let on_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
        let accept_key = request
            .headers()
            .get("sec-websocket-key")
            .map(|key| derive_accept_key(key.as_bytes()));
        let (parts, body) = request.into_parts();
        let method = Method::from_token(parts.method.as_str());
        let body = if websocket {
            None
        } else {
            let read = self
                .bodies
                .read(&self.runtime, &method, parts.uri.path(), body)
                .await;
            // Logged with the path only: the query carries /send's apiKey.
            match read {
                Ok(read) => Some(read),
                Err(BodyError::Timeout) => {
                    tracing::info!(target: "courier", method = %method, path = parts.uri.path(), "Request body timeout");
                    return closing(plain(StatusCode::REQUEST_TIMEOUT, "request body timeout"));
                }
                Err(BodyError::OverBudget) => {
                    tracing::warn!(target: "courier", method = %method, path = parts.uri.path(), "Request body budget exhausted");
                    return closing(plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many request bodies in flight, retry",
                    ));
                }
                // The client broke off its own body; nobody is left to answer.
                Err(BodyError::Broken) => {
                    return closing(plain(StatusCode::BAD_REQUEST, "unreadable body"));
                }
            }
        };
        let (body_bytes, body_truncated, complete) = match &body {
            Some(read) => (read.bytes.clone(), read.truncated, read.complete),
            None => (Bytes::new(), false, true),
        };
        let net_request = net::HttpRequest {
            method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers: lowercase_headers(&parts.headers),
            body: body_bytes,
            body_truncated,
            websocket,
        };
        let (reply_tx, reply_rx) = async_channel::bounded(1);
        let input = Input::Http {
            id,
            request: net_request,
            reply: reply_tx,
        };
        if driver.data.send(input).await.is_err() {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        let mut guard = AbortGuard {
            id,
            driver,
            armed: true,
        };
        let reply = reply_rx.recv().await;
        guard.armed = false;
        match reply {
            Ok(Reply::Response(response)) if complete => to_hyper(response),
            Ok(Reply::Response(response)) => closing(to_hyper(response)),
            Ok(Reply::Upgrade(outbound)) => {
                let conn = ConnId::from(id);
                let (Some(on_upgrade), Some(accept_key)) = (on_upgrade, accept_key) else {
                    // The engine accepted a request that was no upgrade: tell it the socket
                    // is gone and answer plainly.
                    let _ = driver.control.try_send(Input::WsClosed(conn));
                    return plain(StatusCode::BAD_REQUEST, "not a websocket upgrade");
                };
                let task = ws::Pump {
                    runtime: self.runtime.clone(),
                    conn,
                    driver: driver.clone(),
                    outbound,
                    max_payload: self.max_payload,
                    guard: self.ws_tasks.enter(),
                };
                self.runtime.spawn(Box::pin(task.run(on_upgrade)));
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let headers = response.headers_mut();
                headers.insert("upgrade", HeaderValue::from_static("websocket"));
                headers.insert("connection", HeaderValue::from_static("Upgrade"));
                if let Ok(value) = HeaderValue::from_str(&accept_key) {
                    headers.insert("sec-websocket-accept", value);
                }
                response
            }
            Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        }
    }
}

impl<R: Runtime> Server<R> {
    /// `GET /metrics` and `GET /readyz` (also `HEAD`), answered here rather than by the engine:
    /// readiness is the I/O layer's to know, and the metrics text is written off the driver
    /// (which only copies its counters). `None` for every other request of the main port.
    async fn ops_route(&self, request: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        let readable = matches!(*request.method(), hyper::Method::GET | hyper::Method::HEAD);
        match request.uri().path() {
            "/metrics" if readable => {
                // Every engine's counters, summed; when the drivers have stopped, the I/O figures
                // are still worth reading.
                let snapshot = self.engines.metrics().await;
                let text = ops::render(snapshot, &self.ops, self.runtime.now());
                let mut response = Response::new(Full::new(Bytes::from(text)));
                response.headers_mut().insert(
                    "content-type",
                    HeaderValue::from_static(ops::METRICS_CONTENT_TYPE),
                );
                Some(response)
            }
            "/readyz" if readable => Some(match self.ops.readiness() {
                Ok(()) => plain(StatusCode::OK, "ready"),
                Err(reason) => plain_owned(StatusCode::SERVICE_UNAVAILABLE, reason.into_owned()),
            }),
            _ if self.ops_only => Some(plain(StatusCode::NOT_FOUND, "not found")),
            _ => None,
        }
    }
}

/// Reports a request the engine never answered because hyper dropped it (peer gone).
struct AbortGuard<'a> {
    id: RequestId,
    driver: &'a DriverHandle,
    armed: bool,
}

impl Drop for AbortGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.driver.control.try_send(Input::HttpAborted(self.id));
        }
    }
}

/// `Upgrade: websocket`, `Connection: upgrade`, a key and version 13 on a GET.
fn is_websocket_upgrade(method: &hyper::Method, headers: &hyper::HeaderMap) -> bool {
    let has_token = |name: &str, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    method == hyper::Method::GET
        && has_token("upgrade", "websocket")
        && has_token("connection", "upgrade")
        && headers.contains_key("sec-websocket-key")
        && headers
            .get("sec-websocket-version")
            .is_some_and(|v| v.as_bytes() == b"13")
}

fn lowercase_headers(headers: &hyper::HeaderMap) -> Headers {
    // hyper already gives header names in lowercase.
    Headers(
        headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    )
}

fn to_hyper(response: net::HttpResponse) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(response.body));
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    for (name, value) in response.headers.0 {
        // The engine only emits valid headers; anything else is dropped, not fatal.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    out
}

/// Tells the client this connection ends with this answer: its request body was not read to
/// the end, so the connection cannot carry another request (hyper closes it too).
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    plain_owned(status, text.to_owned())
}

/// [`plain`] with a text built at run time.
fn plain_owned(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Binds `addr` and returns the listener with its actual address.
pub(crate) async fn bind<R: Runtime>(
    runtime: &R,
    addr: std::net::SocketAddr,
) -> std::io::Result<(R::Listener, std::net::SocketAddr)> {
    let listener = runtime.bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> hyper::HeaderMap {
        let mut map = hyper::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const VALID: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    #[test]
    fn recognises_a_valid_upgrade_in_any_case() {
        assert!(is_websocket_upgrade(&hyper::Method::GET, &headers(VALID)));
        let shouting = [
            ("upgrade", "WebSocket"),
            ("connection", "UPGRADE"),
            ("sec-websocket-key", "x"),
            ("sec-websocket-version", "13"),
        ];
        assert!(is_websocket_upgrade(
            &hyper::Method::GET,
            &headers(&shouting)
        ));
    }

    #[test]
    fn refuses_anything_less() {
        assert!(!is_websocket_upgrade(&hyper::Method::POST, &headers(VALID)));
        for missing in 0..VALID.len() {
            let partial: Vec<_> = VALID
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, pair)| *pair)
                .collect();
            assert!(!is_websocket_upgrade(
                &hyper::Method::GET,
                &headers(&partial)
            ));
        }
        let old_version = [
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", "x"),
            ("sec-websocket-version", "8"),
        ];
        assert!(!is_websocket_upgrade(
            &hyper::Method::GET,
            &headers(&old_version)
        ));
    }
}
