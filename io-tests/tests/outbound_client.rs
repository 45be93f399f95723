//! Outbound HTTP (`Output::Call`) against a local stub server, on both runtimes.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use courier_core::net::{CallFailure, CallResult, Headers, Method, OutboundCall};
use courier_io::{HttpClient, Runtime};

on_both_runtimes!(
    sends_the_request_and_reads_the_response,
    sends_a_body_and_returns_any_status,
    times_out,
    rejects_unusable_urls,
    reports_network_failures,
    caps_the_response_body,
);

/// A stub that answers one connection with `response` (None: never answers) and reports the
/// raw request it read.
fn stub(response: Option<&'static [u8]>) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (seen_tx, seen_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let request = read_request(&mut stream);
        let _ = seen_tx.send(request);
        match response {
            Some(bytes) => {
                let _ = stream.write_all(bytes);
            }
            // Hold the connection open without answering, until the client gives up.
            None => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.read(&mut [0u8; 1]);
            }
        }
    });
    (addr, seen_rx)
}

fn read_request(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

fn call(method: Method, url: String, body: &'static [u8], timeout_ms: u64) -> OutboundCall {
    let mut headers = Headers::default();
    headers.push("authorization", "Bearer u3");
    headers.push("x-meta", "abc");
    OutboundCall {
        method,
        url,
        headers,
        body: Bytes::from_static(body),
        timeout: Duration::from_millis(timeout_ms),
    }
}

fn run<R: Runtime>(runtime: &R, cap: usize, outbound: OutboundCall) -> CallResult {
    let client = HttpClient::new(runtime.clone(), cap).expect("client");
    runtime.block_on(client.call(outbound))
}

fn sends_the_request_and_reads_the_response<R: Runtime>(runtime: R) {
    let (addr, seen) = stub(Some(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n[\"user_3\"]",
    ));
    let result = run(
        &runtime,
        1024,
        call(Method::Get, format!("http://{addr}/rooms?x=1"), b"", 5000),
    );
    assert_eq!(
        result,
        CallResult::Response {
            status: 200,
            body: Bytes::from_static(b"[\"user_3\"]")
        }
    );
    let request = seen.recv_timeout(Duration::from_secs(5)).expect("request");
    assert!(
        request.starts_with("GET /rooms?x=1 HTTP/1.1\r\n"),
        "{request}"
    );
    let lower = request.to_ascii_lowercase();
    assert!(lower.contains(&format!("host: {addr}\r\n")), "{request}");
    assert!(lower.contains("authorization: bearer u3\r\n"), "{request}");
    assert!(lower.contains("x-meta: abc\r\n"), "{request}");
}

fn sends_a_body_and_returns_any_status<R: Runtime>(runtime: R) {
    let (addr, seen) = stub(Some(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope",
    ));
    let result = run(
        &runtime,
        1024,
        call(
            Method::Put,
            format!("http://{addr}/users/3"),
            b"{\"id\":\"3\"}",
            5000,
        ),
    );
    assert_eq!(
        result,
        CallResult::Response {
            status: 401,
            body: Bytes::from_static(b"nope")
        }
    );
    let request = seen.recv_timeout(Duration::from_secs(5)).expect("request");
    assert!(
        request.starts_with("PUT /users/3 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("content-length: 10\r\n")
    );
    assert!(request.ends_with("\r\n\r\n{\"id\":\"3\"}"), "{request}");
}

fn times_out<R: Runtime>(runtime: R) {
    let (addr, _seen) = stub(None);
    let started = Instant::now();
    let result = run(
        &runtime,
        1024,
        call(Method::Get, format!("http://{addr}/"), b"", 200),
    );
    let took = started.elapsed();
    assert_eq!(result, CallResult::Failed(CallFailure::Timeout));
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

fn rejects_unusable_urls<R: Runtime>(runtime: R) {
    for url in [
        "ftp://example.com/",
        "not a url",
        "/relative/only",
        "http:///",
    ] {
        let result = run(&runtime, 1024, call(Method::Get, url.to_owned(), b"", 1000));
        assert!(
            matches!(result, CallResult::Failed(CallFailure::InvalidUrl(_))),
            "{url}: {result:?}"
        );
    }
}

fn reports_network_failures<R: Runtime>(runtime: R) {
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let result = run(
        &runtime,
        1024,
        call(Method::Get, format!("http://{closed}/"), b"", 5000),
    );
    assert!(
        matches!(result, CallResult::Failed(CallFailure::Network(_))),
        "{result:?}"
    );
    // https to something that does not speak TLS fails in the handshake, not with a panic.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let result = run(
        &runtime,
        1024,
        call(
            Method::Get,
            format!("https://127.0.0.1:{}/", addr.port()),
            b"",
            5000,
        ),
    );
    assert!(
        matches!(result, CallResult::Failed(CallFailure::Network(_))),
        "{result:?}"
    );
}

fn caps_the_response_body<R: Runtime>(runtime: R) {
    let (addr, _seen) = stub(Some(
        b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n0123456789012345678901234567890123456789",
    ));
    let result = run(
        &runtime,
        16,
        call(Method::Get, format!("http://{addr}/"), b"", 5000),
    );
    match result {
        CallResult::Failed(CallFailure::Network(text)) => {
            assert!(text.contains("over 16"), "{text}")
        }
        other => panic!("expected a capped body failure, got {other:?}"),
    }
}
