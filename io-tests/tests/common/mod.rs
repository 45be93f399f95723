//! Shared helpers of the courier-io integration tests: a small test engine (an HTTP and
//! WebSocket responder implementing `net::Engine`, no gateway logic), a server harness that
//! runs it on either runtime, and a minimal blocking HTTP client.

#![allow(dead_code)]

/// One `#[test]` per runtime for each named scenario function `fn name<R: Runtime>(runtime: R)`:
/// `name::tokio` and `name::smol`.
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn tokio() {
                super::$name(courier_tokio::TokioRuntime::new().expect("tokio runtime"));
            }
            #[test]
            fn smol() {
                super::$name(courier_smol::SmolRuntime::new());
            }
        }
    )*};
}

pub mod engine;
pub mod redis_server;
pub mod store_commands;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use courier_core::net::Engine;
use courier_io::{Limits, Runtime, Setup, StoreSetup};

/// A server running on its own thread until `stop`.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts `engine` on 127.0.0.1 (free port) with `setup`.
    pub fn start<R: Runtime>(runtime: R, engine: Box<dyn Engine + Send>, setup: Setup) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            let rt = runtime.clone();
            rt.block_on(async move {
                let bind: SocketAddr = "127.0.0.1:0".parse().expect("address");
                let running = courier_io::start(runtime, vec![engine], setup, bind)
                    .await
                    .expect("server starts");
                addr_tx.send(running.local_addr()).expect("test alive");
                running
                    .run_until(async move {
                        let _ = stop_rx.recv().await;
                    })
                    .await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server bound");
        TestServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Asks the server to shut down and waits until it has (at most `limit`).
    pub fn stop_within(mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        drop(self.stop.take());
        let thread = self.thread.take().expect("running");
        while !thread.is_finished() {
            assert!(
                started.elapsed() < limit,
                "server did not stop within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().expect("server thread");
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A setup with no store, small limits for tests.
pub fn setup(max_payload: usize, ws_outbound_frames: usize) -> Setup {
    Setup {
        max_payload,
        store: StoreSetup::None,
        node_ids: vec![1],
        first_log_line: "Test server".to_owned(),
        limits: Limits {
            ws_outbound_frames,
            shutdown_grace: Duration::from_secs(3),
            ..Limits::default()
        },
        ops: courier_io::OpsSetup::default(),
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Waits until `check` holds (at most 10 s).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
