//! Outbound HTTP for [`Output::Call`](courier_core::net::Output::Call) (auth and user-update
//! calls): hyper's HTTP/1 client over the runtime's TCP, rustls (ring, webpki roots) for https.
//!
//! Connections are kept alive and reused, a few per origin ([`Pool`]): a join then costs one
//! request on an open connection instead of a TCP (and TLS) handshake, a task and a teardown.
//! A connection is reused only after its previous exchange ended cleanly; it is closed after
//! [`IDLE_TIMEOUT`] unused (or sooner when the server announces a shorter `Keep-Alive:
//! timeout`). When a reused connection turns out to have been closed by the server, the call
//! moves to a fresh connection only if that cannot make the server act twice: always when
//! hyper did not write the request, and for an idempotent method (the auth `GET`, the
//! user-update `PUT`, never a `POST`) also when the connection closed or was reset before any
//! answer — the race of a server closing an idle connection as it is reused. Timeouts and
//! errors are exactly those of a call on a fresh connection (one deadline for the whole call).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use courier_core::net::{CallFailure, CallResult, OutboundCall};
use futures_lite::future;
use futures_rustls::TlsConnector;
use futures_rustls::pki_types::ServerName;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, Uri};
use smol_hyper::rt::FuturesIo;

use crate::runtime::Runtime;

/// How long an unused kept-alive connection stays open: 4 s, what Node's `fetch` (undici)
/// keeps them, so a site's server sees the same connection behaviour as with the original, and
/// shorter than the 5 s after which Node's HTTP server closes them, so the client closes first.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Kept-alive connections per origin; more are closed after their exchange. Calls beyond it in
/// a burst open connections of their own, as without a pool.
pub const MAX_IDLE_PER_ORIGIN: usize = 32;
/// Subtracted from a server's `Keep-Alive: timeout` hint, so the client closes before the
/// server does (undici's margin).
const KEEP_ALIVE_MARGIN: Duration = Duration::from_secs(1);

/// Makes outbound calls. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct HttpClient<R: Runtime> {
    runtime: R,
    tls: TlsConnector,
    body_cap: usize,
    pool: Arc<Pool>,
}

impl<R: Runtime> fmt::Debug for HttpClient<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("body_cap", &self.body_cap)
            .finish_non_exhaustive()
    }
}

/// Where a connection goes: scheme, host (as in the URL), port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// An unused connection and when it is to be closed.
struct IdleConnection {
    sender: SendRequest<Full<Bytes>>,
    until: Instant,
}

/// Kept-alive connections by origin. Dropping an entry's sender ends the connection's task,
/// which closes the socket.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    idle: HashMap<Origin, Vec<IdleConnection>>,
    /// A task closes expired connections while any are idle (and only then, so an idle
    /// gateway has no pool timer).
    sweeping: bool,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Nothing in a critical section can panic; a poisoned pool is still a sound pool.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently parked connection to `origin` that is still open, if any.
    fn take(&self, origin: &Origin, now: Instant) -> Option<SendRequest<Full<Bytes>>> {
        let mut state = self.lock();
        let idle = state.idle.get_mut(origin)?;
        let found = loop {
            let Some(connection) = idle.pop() else {
                break None;
            };
            if connection.until > now && !connection.sender.is_closed() {
                break Some(connection.sender);
            }
        };
        if idle.is_empty() {
            state.idle.remove(origin);
        }
        found
    }

    /// Keeps `sender` for reuse until `until`. False (and the connection is dropped, so closed)
    /// when the origin has its share already.
    fn park(&self, origin: Origin, sender: SendRequest<Full<Bytes>>, until: Instant) -> bool {
        let mut state = self.lock();
        let idle = state.idle.entry(origin).or_default();
        if idle.len() >= MAX_IDLE_PER_ORIGIN {
            return false;
        }
        idle.push(IdleConnection { sender, until });
        !std::mem::replace(&mut state.sweeping, true)
    }

    /// Closes what expired or was closed by its server; the earliest remaining expiry, or
    /// `None` (and no sweeper any more) when nothing is idle.
    fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        state.idle.retain(|_, idle| {
            idle.retain(|c| c.until > now && !c.sender.is_closed());
            !idle.is_empty()
        });
        let next = state.idle.values().flatten().map(|c| c.until).min();
        if next.is_none() {
            state.sweeping = false;
        }
        next
    }
}

/// Why an exchange on a reused connection did not give an answer.
enum Reuse {
    /// The call may go to a fresh connection (the server did not act on it, or may safely act
    /// twice); the request is given back when hyper did not write it.
    Retry(Option<Box<Request<Full<Bytes>>>>),
    /// The call failed.
    Failed(CallFailure),
}

impl<R: Runtime> HttpClient<R> {
    /// A client whose responses may be at most `body_cap` bytes long. Fails only if the TLS
    /// provider rejects its own defaults.
    pub fn new(runtime: R, body_cap: usize) -> Result<Self, String> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS setup: {error}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpClient {
            runtime,
            tls: TlsConnector::from(Arc::new(config)),
            body_cap,
            pool: Arc::default(),
        })
    }

    /// Makes the call; never fails otherwise than through [`CallResult::Failed`].
    pub async fn call(&self, call: OutboundCall) -> CallResult {
        let deadline = self.runtime.now() + call.timeout;
        let attempt = async {
            match self.perform(call).await {
                Ok((status, body)) => CallResult::Response { status, body },
                Err(failure) => CallResult::Failed(failure),
            }
        };
        let timeout = async {
            self.runtime.sleep_until(deadline).await;
            CallResult::Failed(CallFailure::Timeout)
        };
        future::or(attempt, timeout).await
    }

    async fn perform(&self, call: OutboundCall) -> Result<(u16, Bytes), CallFailure> {
        let uri: Uri = call
            .url
            .parse()
            .map_err(|error| CallFailure::InvalidUrl(format!("{}: {error}", call.url)))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(CallFailure::InvalidUrl(format!(
                    "{}: not an http or https URL",
                    call.url
                )));
            }
        };
        let host = uri
            .host()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| CallFailure::InvalidUrl(format!("{}: no host", call.url)))?;
        let default_port = if https { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        let host_header = if port == default_port {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let origin = Origin {
            https,
            host: host.to_owned(),
            port,
        };
        let mut request = build_request(&call, &uri, &host_header)?;

        if let Some(sender) = self.pool.take(&origin, self.runtime.now()) {
            match self.exchange_reused(sender, request, &origin).await {
                Ok(answer) => return Ok(answer),
                Err(Reuse::Failed(failure)) => return Err(failure),
                Err(Reuse::Retry(unsent)) => {
                    request = match unsent {
                        Some(request) => *request,
                        None => build_request(&call, &uri, &host_header)?,
                    };
                }
            }
        }
        let mut sender = self.open(&origin, &call.url).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| CallFailure::Network(error.to_string()))?;
        self.finish(sender, response, origin).await
    }

    /// A new connection to `origin` (TCP, TLS for https, the HTTP/1 handshake), its task
    /// spawned.
    async fn open(
        &self,
        origin: &Origin,
        url: &str,
    ) -> Result<SendRequest<Full<Bytes>>, CallFailure> {
        let Origin { https, host, port } = origin;
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let stream = self
            .runtime
            .connect(bare_host, *port)
            .await
            .map_err(|error| CallFailure::Network(format!("connect {host}:{port}: {error}")))?;
        if *https {
            let name = ServerName::try_from(bare_host.to_owned())
                .map_err(|_| CallFailure::InvalidUrl(format!("{url}: bad host name")))?;
            let tls = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|error| CallFailure::Network(format!("tls {host}: {error}")))?;
            self.handshake(FuturesIo::new(tls)).await
        } else {
            self.handshake(FuturesIo::new(stream)).await
        }
    }

    async fn handshake<IO>(&self, io: IO) -> Result<SendRequest<Full<Bytes>>, CallFailure>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| CallFailure::Network(error.to_string()))?;
        self.runtime.spawn(Box::pin(async move {
            // Ends when the server closes the connection, or when its last `SendRequest` is
            // dropped (the exchange failed, or the pool let it go) and nothing is in flight.
            let _ = connection.await;
        }));
        Ok(sender)
    }

    /// Sends `request` on a kept-alive connection. A connection the server has closed
    /// meanwhile gives [`Reuse::Retry`] where a fresh connection may take the call over.
    async fn exchange_reused(
        &self,
        mut sender: SendRequest<Full<Bytes>>,
        request: Request<Full<Bytes>>,
        origin: &Origin,
    ) -> Result<(u16, Bytes), Reuse> {
        if sender.ready().await.is_err() {
            // Closed while idle: nothing was sent.
            return Err(Reuse::Retry(Some(Box::new(request))));
        }
        let idempotent = is_idempotent(request.method());
        match sender.try_send_request(request).await {
            Ok(response) => self
                .finish(sender, response, origin.clone())
                .await
                .map_err(Reuse::Failed),
            Err(mut error) => {
                if let Some(unsent) = error.take_message() {
                    return Err(Reuse::Retry(Some(Box::new(unsent))));
                }
                let error = error.into_error();
                // Closed (or reset) by the server before any answer: what a kept-alive
                // connection the server gave up on at the moment of reuse looks like.
                let closed = error.is_incomplete_message()
                    || error.is_canceled()
                    || std::error::Error::source(&error).is_some_and(|e| e.is::<std::io::Error>());
                if idempotent && closed {
                    return Err(Reuse::Retry(None));
                }
                Err(Reuse::Failed(CallFailure::Network(error.to_string())))
            }
        }
    }

    /// Reads the answer's body (at most `body_cap` bytes); the connection goes back to the pool
    /// when the exchange ended cleanly and the server keeps it open.
    async fn finish(
        &self,
        sender: SendRequest<Full<Bytes>>,
        response: Response<hyper::body::Incoming>,
        origin: Origin,
    ) -> Result<(u16, Bytes), CallFailure> {
        let network = |error: hyper::Error| CallFailure::Network(error.to_string());
        let status = response.status().as_u16();
        let keep_for = keep_alive_for(&response);
        let mut body = response.into_body();
        let mut collected = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(network)?;
            if let Ok(chunk) = frame.into_data() {
                if collected.len() + chunk.len() > self.body_cap {
                    return Err(CallFailure::Network(format!(
                        "response body over {} bytes",
                        self.body_cap
                    )));
                }
                collected.extend_from_slice(&chunk);
            }
        }
        if let Some(keep_for) = keep_for
            && !sender.is_closed()
            && self
                .pool
                .park(origin, sender, self.runtime.now() + keep_for)
        {
            self.spawn_sweeper();
        }
        Ok((status, collected.freeze()))
    }

    /// Closes expired idle connections until none is left.
    fn spawn_sweeper(&self) {
        let pool = Arc::clone(&self.pool);
        let runtime = self.runtime.clone();
        self.runtime.spawn(Box::pin(async move {
            while let Some(next) = pool.sweep(runtime.now()) {
                runtime.sleep_until(next).await;
            }
        }));
    }
}

/// Whether sending a request twice has the effect of sending it once (RFC 9110 §9.2.2): the
/// auth `GET` and the user-update `PUT` (which sets a timestamp) are; a `POST` is not.
fn is_idempotent(method: &hyper::Method) -> bool {
    use hyper::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// The request for `call` (a fresh one for each attempt: hyper consumes what it sends).
fn build_request(
    call: &OutboundCall,
    uri: &Uri,
    host_header: &str,
) -> Result<Request<Full<Bytes>>, CallFailure> {
    let mut request = Request::new(Full::new(call.body.clone()));
    *request.method_mut() = hyper::Method::from_bytes(call.method.as_str().as_bytes())
        .map_err(|_| CallFailure::InvalidUrl(format!("bad method {}", call.method)))?;
    *request.uri_mut() = uri.path_and_query().map_or_else(
        || Uri::from_static("/"),
        |pq| Uri::try_from(pq.as_str()).unwrap_or_else(|_| Uri::from_static("/")),
    );
    let headers = request.headers_mut();
    if call.headers.get("host").is_none()
        && let Ok(value) = HeaderValue::from_str(host_header)
    {
        headers.insert("host", value);
    }
    for (name, value) in &call.headers.0 {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => return Err(CallFailure::InvalidUrl(format!("bad header {name}"))),
        }
    }
    Ok(request)
}

/// How long the connection of `response` may be kept for reuse: `None` when the server closes
/// it (`Connection: close`, HTTP/1.0) or asks for less than the margin.
fn keep_alive_for<B>(response: &Response<B>) -> Option<Duration> {
    if response.version() < hyper::Version::HTTP_11 {
        return None;
    }
    let headers = response.headers();
    let has_token = |name: hyper::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if has_token(hyper::header::CONNECTION, "close") {
        return None;
    }
    let hint = headers
        .get_all("keep-alive")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|part| {
            let (key, value) = part.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("timeout")
                .then(|| value.trim().parse::<u64>().ok())?
        })
        .next();
    match hint {
        Some(secs) => Duration::from_secs(secs)
            .checked_sub(KEEP_ALIVE_MARGIN)
            .filter(|d| !d.is_zero())
            .map(|d| d.min(IDLE_TIMEOUT)),
        None => Some(IDLE_TIMEOUT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(version: hyper::Version, headers: &[(&str, &str)]) -> Response<()> {
        let mut builder = Response::builder().version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("valid response")
    }

    #[test]
    fn connections_are_kept_unless_the_server_closes_them() {
        use hyper::Version;
        let keep = |v, h: &[(&str, &str)]| keep_alive_for(&response(v, h));
        assert_eq!(keep(Version::HTTP_11, &[]), Some(IDLE_TIMEOUT));
        assert_eq!(keep(Version::HTTP_11, &[("connection", "Close")]), None);
        assert_eq!(
            keep(Version::HTTP_11, &[("connection", "keep-alive, close")]),
            None
        );
        assert_eq!(keep(Version::HTTP_10, &[]), None);
        // A shorter server timeout wins, less the margin; a longer one does not extend ours.
        assert_eq!(
            keep(Version::HTTP_11, &[("keep-alive", "timeout=3, max=100")]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(keep(Version::HTTP_11, &[("keep-alive", "timeout=1")]), None);
        assert_eq!(
            keep(Version::HTTP_11, &[("keep-alive", "timeout=60")]),
            Some(IDLE_TIMEOUT)
        );
    }

    #[test]
    fn only_idempotent_methods_are_sent_twice() {
        assert!(is_idempotent(&hyper::Method::GET));
        assert!(is_idempotent(&hyper::Method::PUT));
        assert!(!is_idempotent(&hyper::Method::POST));
        assert!(!is_idempotent(&hyper::Method::PATCH));
    }
}
