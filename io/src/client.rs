//! Outbound HTTP for [`Output::Call`](courier_core::net::Output::Call) (auth and user-update
//! calls): hyper's HTTP/1 client over the runtime's TCP, rustls (ring, webpki roots) for https.
//! One connection per call: calls are rare next to client traffic, and it keeps no pool state.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use courier_core::net::{CallFailure, CallResult, OutboundCall};
use futures_lite::future;
use futures_rustls::TlsConnector;
use futures_rustls::pki_types::ServerName;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Uri};
use smol_hyper::rt::FuturesIo;

use crate::runtime::Runtime;

/// Makes outbound calls. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient<R: Runtime> {
    runtime: R,
    tls: TlsConnector,
    body_cap: usize,
}

impl<R: Runtime> fmt::Debug for HttpClient<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("body_cap", &self.body_cap)
            .finish_non_exhaustive()
    }
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
        })
    }

    /// Makes the call; never fails otherwise than through [`CallResult::Failed`].
    pub async fn call(&self, call: OutboundCall) -> CallResult {
        let deadline = Instant::now() + call.timeout;
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
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let host_header = if port == default_port {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };

        let mut request = Request::new(Full::new(call.body));
        *request.method_mut() = hyper::Method::from_bytes(call.method.as_str().as_bytes())
            .map_err(|_| CallFailure::InvalidUrl(format!("bad method {}", call.method)))?;
        *request.uri_mut() = uri.path_and_query().map_or_else(
            || Uri::from_static("/"),
            |pq| Uri::try_from(pq.as_str()).unwrap_or_else(|_| Uri::from_static("/")),
        );
        let headers = request.headers_mut();
        if call.headers.get("host").is_none()
            && let Ok(value) = HeaderValue::from_str(&host_header)
        {
            headers.insert("host", value);
        }
        for (name, value) in call.headers.0 {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => return Err(CallFailure::InvalidUrl(format!("bad header {name}"))),
            }
        }

        let stream = self
            .runtime
            .connect(&bare_host, port)
            .await
            .map_err(|error| CallFailure::Network(format!("connect {host}:{port}: {error}")))?;
        if https {
            let name = ServerName::try_from(bare_host.clone())
                .map_err(|_| CallFailure::InvalidUrl(format!("{}: bad host name", call.url)))?;
            let tls = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|error| CallFailure::Network(format!("tls {host}: {error}")))?;
            self.exchange(FuturesIo::new(tls), request).await
        } else {
            self.exchange(FuturesIo::new(stream), request).await
        }
    }

    async fn exchange<IO>(
        &self,
        io: IO,
        request: Request<Full<Bytes>>,
    ) -> Result<(u16, Bytes), CallFailure>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let network = |error: hyper::Error| CallFailure::Network(error.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(network)?;
        self.runtime.spawn(Box::pin(async move {
            // Ends when the exchange is over and `sender` is dropped.
            let _ = connection.await;
        }));
        let response = sender.send_request(request).await.map_err(network)?;
        let status = response.status().as_u16();
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
        Ok((status, collected.freeze()))
    }
}
