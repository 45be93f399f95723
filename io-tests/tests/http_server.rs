//! The HTTP and WebSocket side of courier-io, through hyper, on both runtimes, with the test
//! engine of `common::engine`.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{self, Message};
use common::engine::TestEngine;
use common::{TestServer, eventually, request, setup};
use courier_io::Runtime;

on_both_runtimes!(
    answers_requests_with_the_engines_response,
    caps_the_body_and_says_so,
    a_refused_body_still_gets_its_answer,
    holds_a_long_poll_until_the_engine_answers,
    answers_a_poll_at_the_engines_deadline,
    reports_a_client_that_leaves_before_the_answer,
    pumps_websocket_frames_both_ways,
    reports_a_websocket_the_peer_closed,
    closes_a_websocket_whose_queue_overflows,
    closes_a_websocket_sending_too_large_a_message,
    shuts_down_cleanly,
);

type Ws = tungstenite::WebSocket<TcpStream>;

fn open_ws(addr: std::net::SocketAddr) -> Ws {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (ws, response) =
        tungstenite::client(format!("ws://{addr}/ws"), stream).expect("websocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

fn read_data(ws: &mut Ws) -> Message {
    loop {
        let message = ws.read().expect("read frame");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// Reads until the close frame (or the end of the stream); its code, if any.
fn read_close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| f.code),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn answers_requests_with_the_engines_response<R: Runtime>(runtime: R) {
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(1024, 16));
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(b"GET /hello?a=1&b=%20 HTTP/1.1\r\nHost: x\r\nX-Probe: Value\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let reply = common::parse_response(&raw);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello a=1&b=%20 Value");
    assert_eq!(reply.header("x-test"), Some("yes"));
    assert_eq!(reply.header("content-length"), Some("21"));
    assert!(reply.header("date").is_some());
    assert_eq!(request(server.addr, "GET", "/nope", b"").status, 404);
    let stats = stats.lock().expect("stats");
    assert_eq!(stats.requests, 2);
    // The wall clock was fed before the inputs.
    assert!(stats.wall_clock_ms > 1_700_000_000_000);
}

fn caps_the_body_and_says_so<R: Runtime>(runtime: R) {
    let (engine, _stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(64, 16));
    let small = request(server.addr, "POST", "/echo", b"0123456789");
    assert_eq!((small.status, small.text().as_str()), (200, "0123456789"));
    let exact = request(server.addr, "POST", "/echo", &[b'a'; 64]);
    assert_eq!(exact.status, 200);
    assert_eq!(exact.body.len(), 64);
    let large = request(server.addr, "POST", "/echo", &[b'a'; 65]);
    assert_eq!((large.status, large.text().as_str()), (413, "too large"));
}

// A client that sends a whole body over the limit before it reads (as most do) must read the
// 413, not a connection reset: the server closes only after it has drained what the client
// still sends (io/src/linger.rs). 3 MiB is more than the kernel buffers between the two hold,
// so without the drain the client's write or read is reset (in most of the rounds).
fn a_refused_body_still_gets_its_answer<R: Runtime>(runtime: R) {
    let (engine, _stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(64, 16));
    let body = vec![b'a'; 3 << 20];
    for _ in 0..8 {
        let large = request(server.addr, "POST", "/echo", &body);
        assert_eq!((large.status, large.text().as_str()), (413, "too large"));
    }
}

fn holds_a_long_poll_until_the_engine_answers<R: Runtime>(runtime: R) {
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(1024, 16));
    let addr = server.addr;
    let poller = std::thread::spawn(move || request(addr, "GET", "/poll", b""));
    eventually("the poll reached the engine", || {
        stats.lock().expect("stats").requests == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!poller.is_finished(), "the poll was answered early");
    assert_eq!(request(addr, "POST", "/wake", b"").text(), "ok");
    let polled = poller.join().expect("poller");
    assert_eq!((polled.status, polled.text().as_str()), (200, "woken"));
}

fn answers_a_poll_at_the_engines_deadline<R: Runtime>(runtime: R) {
    let (engine, _stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(1024, 16));
    let started = Instant::now();
    let reply = request(server.addr, "GET", "/poll?timeout_ms=150", b"");
    let waited = started.elapsed();
    assert_eq!(reply.status, 204);
    assert!(
        waited >= Duration::from_millis(140),
        "answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
}

fn reports_a_client_that_leaves_before_the_answer<R: Runtime>(runtime: R) {
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(1024, 16));
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    eventually("the poll reached the engine", || {
        stats.lock().expect("stats").requests == 1
    });
    assert!(stats.lock().expect("stats").aborted.is_empty());
    drop(stream);
    eventually("the abort reached the engine", || {
        stats.lock().expect("stats").aborted.len() == 1
    });
    // An answered request is never reported as aborted.
    request(server.addr, "GET", "/hello", b"");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(stats.lock().expect("stats").aborted.len(), 1);
}

fn pumps_websocket_frames_both_ways<R: Runtime>(runtime: R) {
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(1024, 16));
    let mut ws = open_ws(server.addr);
    assert_eq!(read_data(&mut ws), Message::text("welcome"));
    ws.send(Message::text("hi there")).expect("send");
    assert_eq!(read_data(&mut ws), Message::text("hi there"));
    ws.send(Message::binary(vec![0u8, 159, 146, 150]))
        .expect("send binary");
    assert_eq!(
        read_data(&mut ws),
        Message::binary(vec![0u8, 159, 146, 150])
    );
    ws.send(Message::text("close")).expect("send close request");
    assert_eq!(read_close_code(&mut ws), Some(CloseCode::Normal));
    std::thread::sleep(Duration::from_millis(100));
    let stats = stats.lock().expect("stats");
    assert_eq!(stats.frames.len(), 3);
    // The engine closed it itself: no close report is owed.
    assert!(stats.ws_closed.is_empty(), "{:?}", stats.ws_closed);
}

fn reports_a_websocket_the_peer_closed<R: Runtime>(runtime: R) {
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(1024, 16));
    let mut ws = open_ws(server.addr);
    assert_eq!(read_data(&mut ws), Message::text("welcome"));
    ws.close(None).expect("close");
    let _ = read_close_code(&mut ws);
    eventually("the close reached the engine", || {
        stats.lock().expect("stats").ws_closed.len() == 1
    });
}

fn closes_a_websocket_whose_queue_overflows<R: Runtime>(runtime: R) {
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(4096, 4));
    let mut ws = open_ws(server.addr);
    assert_eq!(read_data(&mut ws), Message::text("welcome"));
    // 100 frames at once into a queue of 4: the driver must not buffer them.
    ws.send(Message::text("flood 100")).expect("send");
    eventually("the overflow reached the engine", || {
        stats.lock().expect("stats").ws_closed.len() == 1
    });
    let mut received = 0;
    let code = loop {
        match ws.read() {
            Ok(Message::Binary(_)) => received += 1,
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => {}
            Err(_) => break None,
        }
    };
    // The pump may drain a few frames while the driver fills the queue, never the flood.
    assert!(received < 50, "{received} frames got through a queue of 4");
    assert_eq!(code, Some(CloseCode::Policy));
}

fn closes_a_websocket_sending_too_large_a_message<R: Runtime>(runtime: R) {
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(64, 16));
    let mut ws = open_ws(server.addr);
    assert_eq!(read_data(&mut ws), Message::text("welcome"));
    ws.send(Message::text("x".repeat(65))).expect("send");
    assert_eq!(read_close_code(&mut ws), Some(CloseCode::Size));
    eventually("the close reached the engine", || {
        stats.lock().expect("stats").ws_closed.len() == 1
    });
    assert!(stats.lock().expect("stats").frames.is_empty());
}

fn shuts_down_cleanly<R: Runtime>(runtime: R) {
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup(1024, 16));
    let addr = server.addr;
    let mut ws = open_ws(addr);
    assert_eq!(read_data(&mut ws), Message::text("welcome"));
    let poller = std::thread::spawn(move || request(addr, "GET", "/poll", b""));
    eventually("the poll reached the engine", || {
        stats.lock().expect("stats").requests == 2
    });
    let closer = std::thread::spawn(move || read_close_code(&mut ws));
    let took = server.stop_within(Duration::from_secs(3));
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert!(stats.lock().expect("stats").shutdown);
    let polled = poller.join().expect("poller");
    assert_eq!(
        (polled.status, polled.text().as_str()),
        (503, "shutting down")
    );
    assert_eq!(closer.join().expect("closer"), Some(CloseCode::Away));
    // No longer accepting.
    assert!(TcpStream::connect(addr).is_err());
}
