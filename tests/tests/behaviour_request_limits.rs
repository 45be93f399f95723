//! Bounded requests: each route's body limit applies while the body is read (413 from a
//! `Content-Length` before any body byte, from a chunked body at the limit), a body that does
//! not arrive within `io.requestTimeout` gets 408, all bodies together stay within
//! `io.requestBodyBudget` (503 past it), and request heads are limited as Node limits them
//! (16 KB → 431; 1000 headers are fine).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use courier_tests::{
    DEFAULT_TIMEOUT, HttpResponse, PollingSession, Site, StubSite, http, parse_response,
    raw_request, scenario, wait_until,
};

const SEND_LIMIT: usize = 100 * 1024;

fn send_head(port: u16, extra: &str) -> String {
    format!(
        "POST /send?site={SITE}&apiKey={} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\n{extra}\r\n",
        Site::API_KEY
    )
}

/// A valid `/send` JSON body of exactly `len` bytes (its one argument is padding).
fn send_body(len: usize) -> Vec<u8> {
    let head = r#"{"rooms":"user_1","event":"e","args":[""#;
    let tail = r#""]}"#;
    let mut body = head.as_bytes().to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

fn assert_too_large(r: &HttpResponse) {
    assert_eq!(
        (r.status, r.body.as_str()),
        (413, "request entity too large"),
        "{r:?}"
    );
}

scenario!(
    send_content_length_over_the_limit_is_413_before_any_body_byte,
    |bin| {
        let stub = StubSite::start();
        let gw = user_site(bin, &stub).start();
        // Only the head is sent: the answer can only come before the body.
        let head = send_head(
            gw.port(),
            &format!("Content-Length: {}\r\n", SEND_LIMIT + 1),
        );
        assert_too_large(&raw_request(gw.port(), head.as_bytes()));
        let huge = send_head(gw.port(), "Content-Length: 1000000000000\r\n");
        assert_too_large(&raw_request(gw.port(), huge.as_bytes()));
        // Exactly the limit is still read and handled.
        let mut exact = send_head(
            gw.port(),
            &format!("Content-Length: {SEND_LIMIT}\r\nConnection: close\r\n"),
        )
        .into_bytes();
        exact.extend_from_slice(&send_body(SEND_LIMIT));
        let r = raw_request(gw.port(), &exact);
        assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{r:?}");
    }
);

scenario!(chunked_send_is_cut_off_at_the_limit, |bin| {
    let stub = StubSite::start();
    let gw = user_site(bin, &stub).start();
    // 8 chunks of 16 KiB (128 KiB) and no last chunk: the gateway must stop at 100 KiB.
    let mut request = send_head(gw.port(), "Transfer-Encoding: chunked\r\n").into_bytes();
    for _ in 0..8 {
        request.extend_from_slice(format!("{:x}\r\n", 16 * 1024).as_bytes());
        request.extend(std::iter::repeat_n(b' ', 16 * 1024));
        request.extend_from_slice(b"\r\n");
    }
    assert_too_large(&raw_request(gw.port(), &request));
    // A chunked body under the limit is read whole.
    let body = send_body(50_000);
    let mut ok = send_head(
        gw.port(),
        "Transfer-Encoding: chunked\r\nConnection: close\r\n",
    )
    .into_bytes();
    for chunk in body.chunks(7000) {
        ok.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        ok.extend_from_slice(chunk);
        ok.extend_from_slice(b"\r\n");
    }
    ok.extend_from_slice(b"0\r\n\r\n");
    let r = raw_request(gw.port(), &ok);
    assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{r:?}");
});

scenario!(polling_post_limit_is_max_http_buffer_size, |bin| {
    let stub = StubSite::start();
    let gw = user_site(bin, &stub)
        .config("io: {maxHttpBufferSize: 2000}")
        .start();
    let s = PollingSession::handshake(gw.port(), 4, "token=t");
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: text/plain\r\nContent-Length: 2001\r\n\r\n",
        s.sid
    );
    let r = raw_request(gw.port(), head.as_bytes());
    assert_eq!(
        (r.status, r.body.as_str()),
        (413, "Payload Too Large"),
        "{r:?}"
    );
});

/// Opens `count` connections that each declare a full `/send` body, send half of it at once
/// and then trickle 16 bytes per round (the deadline covers the whole body, not the gaps
/// between bytes), until every one is answered and closed. Returns the answers and the
/// highest RSS seen meanwhile.
fn trickle(gw: &courier_tests::Gateway, count: usize) -> (Vec<HttpResponse>, u64) {
    let body = send_body(SEND_LIMIT);
    let mut conns: Vec<(TcpStream, Vec<u8>, bool)> = (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", gw.port())).expect("connect");
            let mut first =
                send_head(gw.port(), &format!("Content-Length: {SEND_LIMIT}\r\n")).into_bytes();
            first.extend_from_slice(&body[..SEND_LIMIT / 2]);
            stream
                .write_all(&first)
                .expect("write the head and half the body");
            stream.set_nonblocking(true).expect("nonblocking");
            (stream, Vec::new(), false)
        })
        .collect();
    let mut sent = SEND_LIMIT / 2;
    let mut peak = gw.rss_kib();
    // Bounded: 600 rounds of at least 50 ms trickle for 30 s or more, far past the deadline.
    for _round in 0..600 {
        for (stream, answer, done) in conns.iter_mut().filter(|c| !c.2) {
            let _ = stream.write(&body[sent..sent + 16]);
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        *done = true;
                        break;
                    }
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        *done = true;
                        break;
                    }
                }
            }
        }
        sent += 16;
        peak = peak.max(gw.rss_kib());
        if conns.iter().all(|c| c.2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let open = conns.iter().filter(|c| !c.2).count();
    assert_eq!(open, 0, "connections never answered and closed");
    let answers = conns
        .iter()
        .map(|(_, answer, _)| {
            parse_response(answer, false)
                .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(answer)))
        })
        .collect();
    (answers, peak)
}

/// How long freed request bodies may stay with the allocator: jemalloc's decay time (10 s) with
/// room for a loaded machine.
const MEMORY_RETURN_TIMEOUT: Duration = Duration::from_secs(30);

scenario!(slow_send_bodies_get_408_and_memory_returns, |bin| {
    const CONNECTIONS: usize = 200;
    let stub = StubSite::start();
    let gw = user_site(bin, &stub)
        .config("io: {requestTimeout: 1500}")
        .start();
    for _ in 0..20 {
        push(
            &gw,
            courier_tests::json!({"rooms": "user_1", "event": "warm", "args": []}),
        );
    }
    let baseline = gw.rss_kib();
    let fds_before = gw.open_fds();
    let mut figures = Vec::new();
    for _wave in 0..2 {
        let (answers, peak) = trickle(&gw, CONNECTIONS);
        for r in &answers {
            assert_eq!(
                (r.status, r.body.as_str()),
                (408, "request body timeout"),
                "{r:?}"
            );
            assert_eq!(r.header("connection"), Some("close"), "{r:?}");
        }
        // The gateway still serves.
        push(
            &gw,
            courier_tests::json!({"rooms": "user_1", "event": "after", "args": []}),
        );
        // 200 bodies of 100 KiB are 20 MiB. The allocator (jemalloc) keeps what was freed for
        // its decay time (10 s) before giving it back, and a second wave reuses it rather than
        // adding to it, so the bound is generous and is awaited rather than read at once.
        let bound = baseline + 40 * 1024;
        let returned = wait_until(MEMORY_RETURN_TIMEOUT, || gw.rss_kib() <= bound);
        figures.push((peak, gw.rss_kib(), returned));
    }
    eprintln!(
        "{}: RSS baseline {baseline} KiB; {CONNECTIONS} trickled bodies, twice: (peak KiB, settled KiB, within the bound) {figures:?}",
        gw.bin().name()
    );
    let all_logged = wait_until(DEFAULT_TIMEOUT, || {
        gw.log_lines_containing("Request body timeout").len() == 2 * CONNECTIONS
    });
    let logged = gw.log_lines_containing("Request body timeout");
    assert!(all_logged, "one log line per 408, got {}", logged.len());
    assert!(
        logged.iter().all(|line| !line.contains("apiKey")),
        "the query (with its key) is not logged: {logged:?}"
    );
    for (wave, (_, after, returned)) in figures.iter().enumerate() {
        assert!(
            *returned,
            "RSS {after} KiB {}s after wave {wave}'s 408s, baseline {baseline} KiB",
            MEMORY_RETURN_TIMEOUT.as_secs()
        );
    }
    // The sockets are all gone.
    let closed = wait_until(DEFAULT_TIMEOUT, || gw.open_fds() <= fds_before);
    assert!(
        closed,
        "{} descriptors open, {fds_before} before",
        gw.open_fds()
    );
});

scenario!(over_the_body_budget_is_503, |bin| {
    let stub = StubSite::start();
    let gw = user_site(bin, &stub)
        .config("io: {maxHttpBufferSize: 100000, requestBodyBudget: 150000}")
        .start();
    let body = send_body(100_000);
    let head = send_head(gw.port(), "Content-Length: 100000\r\nConnection: close\r\n");
    let mut full = head.clone().into_bytes();
    full.extend_from_slice(&body);
    // One body of 100 000 declared bytes held open (10 bytes sent) takes 100 000 of the
    // 150 000 bytes, so a second one cannot fit. Which of the two the gateway reads first is
    // not up to the test: when the full one wins (200) and the held one was refused, the
    // held one is opened again; a bounded number of times.
    let hold = || {
        let mut stream = TcpStream::connect(("127.0.0.1", gw.port())).expect("connect");
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(&body[..10]).expect("write a little");
        stream.set_nonblocking(true).expect("nonblocking");
        stream
    };
    let mut held = hold();
    let mut refused = None;
    for _ in 0..100 {
        let r = raw_request(gw.port(), &full);
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{r:?}");
        let mut probe = [0u8; 1];
        if !matches!(held.read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock) {
            held = hold(); // the held one was answered (refused): hold another
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = refused.expect("a body over the budget is refused");
    assert_eq!(
        refused.body, "too many request bodies in flight, retry",
        "{refused:?}"
    );
    assert_eq!(refused.header("connection"), Some("close"), "{refused:?}");
    gw.wait_for_log("Request body budget exhausted");
    // Once the held body is complete and answered, its budget is back.
    held.set_nonblocking(false).expect("blocking");
    held.write_all(&body[10..]).expect("write the rest");
    let mut raw = Vec::new();
    let _ = held.read_to_end(&mut raw);
    let r = parse_response(&raw, false).expect("answered");
    assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{r:?}");
    let r = raw_request(gw.port(), &full);
    assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{r:?}");
});

scenario!(headers_over_16kb_get_431, |bin| {
    let stub = StubSite::start();
    let gw = user_site(bin, &stub).start();
    let big = "x".repeat(17 * 1024);
    let r = http(gw.port(), "GET", "/healthcheck", &[("X-Big", &big)], b"");
    assert_eq!(r.status, 431, "{r:?}");
    let many: Vec<(String, String)> = (0..1200)
        .map(|i| (format!("X-Header-{i}"), "v".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = http(gw.port(), "GET", "/healthcheck", &many, b"");
    assert_eq!(r.status, 431, "1200 headers are over 16 KB: {r:?}");
    // Just under the limit is fine.
    let fits = "x".repeat(15 * 1024);
    let r = http(gw.port(), "GET", "/healthcheck", &[("X-Big", &fits)], b"");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{r:?}");
});

scenario!(a_thousand_small_headers_are_accepted, |bin| {
    let stub = StubSite::start();
    let gw = user_site(bin, &stub).start();
    let names: Vec<String> = (0..1000).map(|i| format!("X-{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|k| (k.as_str(), "v")).collect();
    let r = http(gw.port(), "GET", "/healthcheck", &headers, b"");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{r:?}");
    let mut with_body = headers.clone();
    with_body.push(("Content-Type", "application/json"));
    let body = r#"{"rooms":"user_1","event":"e","args":[]}"#;
    let target = format!("/send?site={SITE}&apiKey={}", Site::API_KEY);
    let r = http(gw.port(), "POST", &target, &with_body, body.as_bytes());
    assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{r:?}");
});
