//! The site's own backend, as Courier sees it: `GET /rooms` (the `authUrl`), answering per
//! token from a table, and `PUT /users/:id` (the `updateUserUrl`), recording every request.
//!
//! Plain std::net with one thread per connection, so a deliberately slow answer delays nothing
//! else. Connections are kept alive (HTTP/1.1, as a Node or nginx backend does) unless the
//! request asks for `Connection: close`; the stub counts the connections it accepted, and can
//! be told to drop each connection right after answering without announcing it
//! ([`StubSite::set_close_after_response`]), as a server closing an idle keep-alive connection
//! does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::http::find;
use crate::wait::{DEFAULT_TIMEOUT, wait_until};

/// How the auth endpoint answers one token.
#[derive(Debug, Clone)]
pub struct AuthReply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of the answer.
    pub content_type: String,
    /// Body bytes as text.
    pub body: String,
    /// Wait this long before answering (auth timeout scenarios).
    pub delay: Duration,
}

impl AuthReply {
    /// `200 application/json` with the JSON array of `rooms`: the contract's success shape.
    pub fn rooms(rooms: &[&str]) -> AuthReply {
        AuthReply::json(200, &serde_json::to_string(rooms).expect("rooms serialise"))
    }

    /// `status` with a JSON body given as text (it need not be valid JSON).
    pub fn json(status: u16, body: &str) -> AuthReply {
        AuthReply::raw(status, "application/json; charset=utf-8", body)
    }

    /// `status` with an HTML body.
    pub fn html(status: u16, body: &str) -> AuthReply {
        AuthReply::raw(status, "text/html; charset=utf-8", body)
    }

    /// Any status, content type and body.
    pub fn raw(status: u16, content_type: &str, body: &str) -> AuthReply {
        AuthReply {
            status,
            content_type: content_type.to_string(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer, sent only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> AuthReply {
        self.delay = delay;
        self
    }
}

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The raw query string (after `?`), empty if none.
    pub query: String,
    /// Header names lower-cased, values as received, in order.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl RecordedRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", self.body))
    }
}

#[derive(Debug)]
struct State {
    auth: HashMap<String, AuthReply>,
    user_update_status: u16,
    requests: Vec<RecordedRequest>,
    close_after_response: bool,
}

/// The stub backend; stops accepting when dropped.
#[derive(Debug)]
pub struct StubSite {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl StubSite {
    /// Starts on a free 127.0.0.1 port. Unknown tokens get `401 {"error":"unknown token"}`.
    pub fn start() -> StubSite {
        let listener = TcpListener::bind("127.0.0.1:0").expect("stub site: bind");
        let port = listener.local_addr().expect("stub site: local_addr").port();
        let state = Arc::new(Mutex::new(State {
            auth: HashMap::new(),
            user_update_status: 200,
            requests: Vec::new(),
            close_after_response: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (state2, stop2, connections2) = (state.clone(), stop.clone(), connections.clone());
        std::thread::Builder::new()
            .name(format!("stub-site-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    connections2.fetch_add(1, Ordering::SeqCst);
                    let state = state2.clone();
                    std::thread::spawn(move || serve(conn, &state));
                }
            })
            .expect("stub site: spawn");
        StubSite {
            port,
            state,
            stop,
            connections,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// From now on, close each connection right after its response, without a
    /// `Connection: close` header (the client learns it from the closed socket).
    pub fn set_close_after_response(&self, close: bool) {
        self.lock().close_after_response = close;
    }

    /// The stub's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>/rooms`, for `authUrl`.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/rooms", self.port)
    }

    /// `http://127.0.0.1:<port>/users/:id`, for `updateUserUrl`.
    pub fn update_user_url(&self) -> String {
        format!("http://127.0.0.1:{}/users/:id", self.port)
    }

    /// Answer `token` (the part of `Authorization` after the scheme) with `reply` from now on.
    pub fn set_auth(&self, token: &str, reply: AuthReply) -> &StubSite {
        self.lock().auth.insert(token.to_string(), reply);
        self
    }

    /// Shorthand for `set_auth(token, AuthReply::rooms(rooms))`.
    pub fn user(&self, token: &str, rooms: &[&str]) -> &StubSite {
        self.set_auth(token, AuthReply::rooms(rooms))
    }

    /// The status every `PUT /users/:id` gets (default 200).
    pub fn set_user_update_status(&self, status: u16) {
        self.lock().user_update_status = status;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The `GET /rooms` requests so far.
    pub fn auth_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/rooms")
            .collect()
    }

    /// The `PUT /users/:id` requests so far, as `(id, request)`.
    pub fn user_updates(&self) -> Vec<(String, RecordedRequest)> {
        self.requests()
            .into_iter()
            .filter_map(|r| {
                r.path
                    .strip_prefix("/users/")
                    .map(|id| (id.to_string(), r.clone()))
            })
            .collect()
    }

    /// Waits until at least `count` user updates arrived; returns them all.
    pub fn wait_user_updates(&self, count: usize) -> Vec<(String, RecordedRequest)> {
        if !wait_until(DEFAULT_TIMEOUT, || self.user_updates().len() >= count) {
            panic!(
                "expected {count} PUT /users/:id within {DEFAULT_TIMEOUT:?}, got {:#?}",
                self.user_updates()
            );
        }
        self.user_updates()
    }

    /// Waits until at least `count` auth requests arrived; returns them all.
    pub fn wait_auth_requests(&self, count: usize) -> Vec<RecordedRequest> {
        if !wait_until(DEFAULT_TIMEOUT, || self.auth_requests().len() >= count) {
            panic!(
                "expected {count} GET /rooms within {DEFAULT_TIMEOUT:?}, got {:#?}",
                self.auth_requests()
            );
        }
        self.auth_requests()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for StubSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut pending = Vec::new();
    while let Some(request) = read_request(&mut conn, &mut pending) {
        let (reply, drop_after) = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.requests.push(request.clone());
            (route(&request, &st), st.close_after_response)
        };
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let asked_close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
            reply.status,
            reason(reply.status),
            reply.content_type,
            reply.body.len(),
            if asked_close {
                "Connection: close\r\n"
            } else {
                ""
            }
        );
        let mut answer = head.into_bytes();
        answer.extend_from_slice(reply.body.as_bytes());
        if conn.write_all(&answer).and_then(|()| conn.flush()).is_err() || asked_close || drop_after
        {
            return;
        }
    }
}

fn route(request: &RecordedRequest, st: &State) -> AuthReply {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/rooms") => {
            let authorization = request.header("authorization").unwrap_or("");
            let token = authorization
                .split_once(' ')
                .map(|(_, t)| t)
                .unwrap_or(authorization);
            st.auth
                .get(token)
                .cloned()
                .unwrap_or_else(|| AuthReply::json(401, r#"{"error":"unknown token"}"#))
        }
        ("PUT", path) if path.starts_with("/users/") => {
            AuthReply::json(st.user_update_status, "{}")
        }
        _ => AuthReply::raw(404, "text/plain", "not found"),
    }
}

/// The next request on `conn`; `pending` keeps bytes read past it (a pipelined request).
fn read_request(conn: &mut TcpStream, pending: &mut Vec<u8>) -> Option<RecordedRequest> {
    let mut buf = std::mem::take(pending);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if body.len() > length {
        *pending = body.split_off(length);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(RecordedRequest {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
