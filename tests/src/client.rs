//! One real socket.io client process, scripted through the JSON-lines drivers in
//! `tests/clients/` (see the protocol at the top of `tests/clients/node/client.js`).
//!
//! Messages from the driver are kept in arrival order; each `expect_*` takes the first message
//! of the kinds it is about and leaves the others queued, so e.g. an `acked` confirmation never
//! hides an event that arrived before it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::paths::{node_clients_dir, python_clients_dir, python_venv};
use crate::wait::DEFAULT_TIMEOUT;

/// How long a client driver (a node or python process) may take to load its library before it
/// reports `ready`; generous, because it measures the machine, not the gateway.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Which client library drives the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lib {
    /// socket.io-client 1.7.4 (EIO3 / SIO4) — what the original serves.
    Sio1,
    /// socket.io-client 2.5.0 (EIO3 / SIO4).
    Sio2,
    /// socket.io-client 4.8.x (EIO4 / SIO5).
    Sio4,
    /// python-socketio 4.x + python-engineio 3.x (EIO3 / SIO4).
    Py4,
    /// python-socketio 5.x (EIO4 / SIO5).
    Py5,
}

impl Lib {
    /// Every library.
    pub const ALL: [Lib; 5] = [Lib::Sio1, Lib::Sio2, Lib::Sio4, Lib::Py4, Lib::Py5];

    /// Short name, as in test output.
    pub fn name(self) -> &'static str {
        match self {
            Lib::Sio1 => "sio1",
            Lib::Sio2 => "sio2",
            Lib::Sio4 => "sio4",
            Lib::Py4 => "py4",
            Lib::Py5 => "py5",
        }
    }

    /// The Engine.IO protocol revision it speaks (3 or 4).
    pub fn eio(self) -> u8 {
        match self {
            Lib::Sio1 | Lib::Sio2 | Lib::Py4 => 3,
            Lib::Sio4 | Lib::Py5 => 4,
        }
    }

    /// Whether it can send a CONNECT auth object (Socket.IO v5 clients).
    pub fn has_auth_object(self) -> bool {
        self.eio() == 4
    }
}

/// Which transports the client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transports {
    /// HTTP long-polling only.
    Polling,
    /// WebSocket from the start.
    Websocket,
    /// Polling first, then the probe upgrade to WebSocket (every library's default).
    Upgrade,
}

impl Transports {
    /// Every mode.
    pub const ALL: [Transports; 3] = [
        Transports::Polling,
        Transports::Websocket,
        Transports::Upgrade,
    ];

    /// The driver's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Transports::Polling => "polling",
            Transports::Websocket => "websocket",
            Transports::Upgrade => "upgrade",
        }
    }
}

/// A server event as the client library delivered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The driver's sequence number (1, 2, ...), used to ack this event later.
    pub seq: u64,
    /// Event name.
    pub name: String,
    /// Arguments after the name.
    pub args: Vec<Value>,
    /// Whether the server asked for an ack.
    pub has_ack: bool,
}

/// Configures a [`Client`]; `connect` spawns it.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    lib: Lib,
    transports: Transports,
    namespace: String,
    query: Vec<(String, String)>,
    auth: Option<Value>,
    auto_ack: Option<Vec<Value>>,
    reconnection: bool,
}

impl ClientBuilder {
    /// The namespace, e.g. `/goodcity` (default `/`).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }

    /// A handshake query parameter.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    /// `token=` in the handshake query.
    pub fn token(self, token: &str) -> Self {
        self.query("token", token)
    }

    /// `deviceId=` in the handshake query.
    pub fn device(self, device_id: &str) -> Self {
        self.query("deviceId", device_id)
    }

    /// `meta=` in the handshake query.
    pub fn meta(self, meta: &str) -> Self {
        self.query("meta", meta)
    }

    /// The CONNECT auth object (Socket.IO v5 clients only; see [`Lib::has_auth_object`]).
    pub fn auth(mut self, auth: Value) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Ack every ack-requesting event at once with `args` (default: acks wait for [`Client::ack`]).
    pub fn auto_ack(mut self, args: Vec<Value>) -> Self {
        self.auto_ack = Some(args);
        self
    }

    /// Let the library reconnect by itself after a drop (default off: disconnects are final).
    pub fn reconnection(mut self, on: bool) -> Self {
        self.reconnection = on;
        self
    }

    /// Spawns the driver against `127.0.0.1:<port>`.
    pub fn connect(self, port: u16) -> Client {
        let config = json!({
            "lib": self.lib.name(),
            "url": format!("http://127.0.0.1:{port}"),
            "namespace": self.namespace,
            "query": self.query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "auth": self.auth,
            "transports": self.transports.name(),
            "autoAck": self.auto_ack,
            "reconnection": self.reconnection,
        });
        let mut cmd = match self.lib {
            Lib::Py4 | Lib::Py5 => {
                let mut c = Command::new(python_venv(if self.lib == Lib::Py4 { 4 } else { 5 }));
                c.current_dir(python_clients_dir()).arg("client.py");
                c
            }
            _ => {
                let mut c = Command::new("node");
                c.current_dir(node_clients_dir()).arg("client.js");
                c
            }
        };
        cmd.arg(config.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start the {} driver (run scripts/install-deps): {e}",
                self.lib.name()
            )
        });
        let (tx, rx) = channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let message = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| json!({"type": "driver_output", "line": line}));
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = stderr_text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut client = Client {
            label: format!("{}/{}", self.lib.name(), self.transports.name()),
            lib: self.lib,
            transports: self.transports,
            stdin: child.stdin.take(),
            child,
            rx,
            queued: VecDeque::new(),
            history: Vec::new(),
            stderr: stderr_text,
            next_ref: 0,
            transport: None,
        };
        client.await_ready();
        client
    }
}

/// A running client driver; closed (and killed if need be) when dropped.
#[derive(Debug)]
pub struct Client {
    label: String,
    lib: Lib,
    transports: Transports,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    queued: VecDeque<Value>,
    history: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    next_ref: u64,
    transport: Option<String>,
}

fn kind(message: &Value) -> &str {
    message["type"].as_str().unwrap_or("")
}

fn to_event(message: &Value) -> Event {
    Event {
        seq: message["seq"].as_u64().unwrap_or(0),
        name: message["name"].as_str().unwrap_or("").to_string(),
        args: message["args"].as_array().cloned().unwrap_or_default(),
        has_ack: message["hasAck"].as_bool().unwrap_or(false),
    }
}

/// Messages that end an expectation about the connection's state.
const STATE_KINDS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "driver_error",
    "driver_output",
];

impl Client {
    /// A builder for `lib` over `transports`.
    pub fn builder(lib: Lib, transports: Transports) -> ClientBuilder {
        ClientBuilder {
            lib,
            transports,
            namespace: "/".to_string(),
            query: Vec::new(),
            auth: None,
            auto_ack: None,
            reconnection: false,
        }
    }

    /// The library.
    pub fn lib(&self) -> Lib {
        self.lib
    }

    /// The transports.
    pub fn transports(&self) -> Transports {
        self.transports
    }

    /// `lib/transports`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Waits for the namespace connection; panics on a refusal or anything else first.
    pub fn expect_connect(&mut self) {
        let m = self.take("connect", DEFAULT_TIMEOUT, |m| {
            STATE_KINDS.contains(&kind(m)) || kind(m) == "event"
        });
        if kind(&m) != "connect" {
            self.fail(&format!("expected connect, got {m}"));
        }
    }

    /// For a client that reconnects by itself: skips the drops and failed attempts it reports
    /// (disconnect, connect_error) until a namespace connection, then `_settings` as
    /// [`Client::expect_connected`]; panics on an event before it.
    pub fn expect_connected_after_retries(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.take("connect", left, |m| {
                matches!(
                    kind(m),
                    "connect" | "event" | "disconnect" | "connect_error"
                )
            });
            match kind(&m) {
                "connect" => break,
                "disconnect" | "connect_error" => continue,
                _ => self.fail(&format!("expected connect, got {m}")),
            }
        }
        let settings = self.expect_event("_settings");
        settings.args.first().cloned().unwrap_or_default()
    }

    /// [`Client::expect_connect`], then the `_settings` event every connection gets first;
    /// returns its argument (e.g. `{"device_ttl":3600}`).
    pub fn expect_connected(&mut self) -> Value {
        self.expect_connect();
        let settings = self.expect_event("_settings");
        if settings.has_ack || settings.args.len() != 1 {
            self.fail(&format!(
                "_settings must carry one argument and no ack, got {settings:?}"
            ));
        }
        settings.args[0].clone()
    }

    /// Waits for a refused connect and checks its message text exactly.
    pub fn expect_connect_error(&mut self, message: &str) {
        let got = self.expect_any_connect_error();
        if got != message {
            self.fail(&format!("expected connect_error {message:?}, got {got:?}"));
        }
    }

    /// Waits for a refused connect; returns its message text.
    pub fn expect_any_connect_error(&mut self) -> String {
        let m = self.take("connect_error", DEFAULT_TIMEOUT, |m| {
            STATE_KINDS.contains(&kind(m)) || kind(m) == "event"
        });
        if kind(&m) != "connect_error" {
            self.fail(&format!("expected connect_error, got {m}"));
        }
        m["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| m["message"].to_string())
    }

    /// Waits for the next server event, which must be called `name`.
    pub fn expect_event(&mut self, name: &str) -> Event {
        self.expect_event_within(name, DEFAULT_TIMEOUT)
    }

    /// [`Client::expect_event`] with its own deadline.
    pub fn expect_event_within(&mut self, name: &str, timeout: Duration) -> Event {
        let event = self.next_event_within(&format!("event {name:?}"), timeout);
        if event.name != name {
            self.fail(&format!("expected event {name:?}, got {event:?}"));
        }
        event
    }

    /// Waits for the next server event, whatever its name.
    pub fn next_event(&mut self) -> Event {
        self.next_event_within("any event", DEFAULT_TIMEOUT)
    }

    fn next_event_within(&mut self, what: &str, timeout: Duration) -> Event {
        let m = self.take(what, timeout, |m| {
            kind(m) == "event" || STATE_KINDS.contains(&kind(m))
        });
        if kind(&m) != "event" {
            self.fail(&format!("expected {what}, got {m}"));
        }
        to_event(&m)
    }

    /// The next server event if one arrives within `window`, `None` if none does (a connection
    /// state change in the meantime fails).
    pub fn maybe_event(&mut self, window: Duration) -> Option<Event> {
        let deadline = Instant::now() + window;
        loop {
            if let Some(i) = self
                .queued
                .iter()
                .position(|m| kind(m) == "event" || STATE_KINDS.contains(&kind(m)))
            {
                let m = self.queued.remove(i).unwrap_or_default();
                if kind(&m) != "event" {
                    self.fail(&format!("expected an event or nothing, got {m}"));
                }
                return Some(to_event(&m));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(m) => self.arrive(m),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail("the driver exited while watching for an event")
                }
            }
        }
    }

    /// The transport the library reported last (`polling` or `websocket`): the one in use at
    /// connect, then after each completed upgrade. `None` before the connect.
    pub fn transport(&mut self) -> Option<String> {
        while let Ok(m) = self.rx.try_recv() {
            self.arrive(m);
        }
        self.transport.clone()
    }

    /// Waits until the library reports `name` as its transport (e.g. until an upgrade to
    /// `websocket` completed); other messages stay queued.
    pub fn wait_for_transport(&mut self, name: &str) {
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        while self.transport.as_deref() != Some(name) {
            let now = Instant::now();
            if now >= deadline {
                self.fail(&format!("transport never became {name}"));
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(m) => self.arrive(m),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("transport never became {name}"))
                }
                Err(RecvTimeoutError::Disconnected) => self.fail(&format!(
                    "the driver exited while waiting for transport {name}"
                )),
            }
        }
    }

    /// The transport `transports` ends up on once settled: `polling` for
    /// [`Transports::Polling`], `websocket` otherwise.
    pub fn settled_transport(transports: Transports) -> &'static str {
        match transports {
            Transports::Polling => "polling",
            Transports::Websocket | Transports::Upgrade => "websocket",
        }
    }

    /// Asserts that no server event arrives during `quiet` (other messages stay queued).
    pub fn expect_no_event(&mut self, quiet: Duration) {
        self.expect_none_of(&["event"], quiet);
    }

    /// Watches for `quiet` that the library reports neither a connect nor any event (e.g. a
    /// client the server must not tell it is connected yet).
    pub fn expect_not_connected(&mut self, quiet: Duration) {
        self.expect_none_of(&["connect", "event"], quiet);
    }

    fn expect_none_of(&mut self, kinds: &[&str], quiet: Duration) {
        let deadline = Instant::now() + quiet;
        loop {
            if let Some(i) = self.queued.iter().position(|m| kinds.contains(&kind(m))) {
                let m = self.queued[i].clone();
                self.fail(&format!("expected no {kinds:?} for {quiet:?}, got {m}"));
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(m) => self.arrive(m),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail("the driver exited while nothing was expected")
                }
            }
        }
    }

    /// Waits for a disconnect (the server's doing, or the transport's); returns the reason.
    pub fn expect_disconnect(&mut self) -> String {
        let m = self.take("disconnect", DEFAULT_TIMEOUT, |m| {
            STATE_KINDS.contains(&kind(m))
        });
        if kind(&m) != "disconnect" {
            self.fail(&format!("expected disconnect, got {m}"));
        }
        m["reason"].as_str().unwrap_or("").to_string()
    }

    /// Acks the latest unacked event with `args`, and waits until the driver has sent it.
    pub fn ack(&mut self, args: Vec<Value>) {
        self.command(json!({"cmd": "ack", "args": args}));
        self.await_acked(None);
    }

    /// Acks `event` with `args`, and waits until the driver has sent it.
    pub fn ack_event(&mut self, event: &Event, args: Vec<Value>) {
        if !event.has_ack {
            self.fail(&format!(
                "cannot ack {event:?}: the server did not ask for an ack"
            ));
        }
        self.command(json!({"cmd": "ack", "seq": event.seq, "args": args}));
        self.await_acked(Some(event.seq));
    }

    fn await_acked(&mut self, seq: Option<u64>) {
        let m = self.take("acked", DEFAULT_TIMEOUT, |m| {
            (kind(m) == "acked" && seq.is_none_or(|s| m["seq"].as_u64() == Some(s)))
                || kind(m) == "driver_error"
        });
        if kind(&m) != "acked" {
            self.fail(&format!("ack failed: {m}"));
        }
    }

    /// Emits a client event without an ack callback.
    pub fn emit(&mut self, name: &str, args: Vec<Value>) {
        self.command(json!({"cmd": "emit", "name": name, "args": args, "ack": false}));
    }

    /// Emits a client event with an ack callback and waits up to `timeout` for the server's
    /// ack; `None` when none came (Courier never acks client events).
    pub fn emit_with_ack(
        &mut self,
        name: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Option<Vec<Value>> {
        self.next_ref += 1;
        let r = self.next_ref;
        self.command(json!({"cmd": "emit", "name": name, "args": args, "ack": true, "ref": r}));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self
                .queued
                .iter()
                .position(|m| kind(m) == "ack_response" && m["ref"].as_u64() == Some(r))
            {
                let m = self.queued.remove(i).unwrap_or_default();
                return Some(m["args"].as_array().cloned().unwrap_or_default());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(m) => self.arrive(m),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail("the driver exited while awaiting an ack")
                }
            }
        }
    }

    /// Client-side disconnect of the namespace socket; waits for the library's disconnect event.
    pub fn disconnect(&mut self) -> String {
        self.command(json!({"cmd": "disconnect"}));
        self.expect_disconnect()
    }

    /// Disconnects, lets the driver exit (killing it after 5 s).
    pub fn close(mut self) {
        self.shutdown(Duration::from_secs(5));
    }

    /// Kills the client process outright (the server sees the transport vanish).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every message the driver reported so far (for ad-hoc assertions and debugging).
    pub fn history(&mut self) -> Vec<Value> {
        while let Ok(m) = self.rx.try_recv() {
            self.arrive(m);
        }
        self.history.clone()
    }

    fn shutdown(&mut self, grace: Duration) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"{\"cmd\":\"close\"}\n");
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn command(&mut self, command: Value) {
        let Some(stdin) = self.stdin.as_mut() else {
            self.fail("the driver's stdin is closed")
        };
        let line = format!("{command}\n");
        if let Err(e) = stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
        {
            self.fail(&format!("cannot send {command} to the driver: {e}"));
        }
    }

    fn arrive(&mut self, message: Value) {
        if matches!(kind(&message), "connect" | "upgrade")
            && let Some(name) = message["transport"].as_str()
        {
            self.transport = Some(name.to_string());
        }
        self.history.push(message.clone());
        self.queued.push_back(message);
    }

    /// Waits until the driver has loaded its library and is about to connect (its `ready`
    /// line), so that every expectation's deadline measures the gateway, not how long an
    /// interpreter takes to start on a loaded machine. Bounded by [`STARTUP_TIMEOUT`].
    fn await_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if kind(&m) == "ready" => return,
                Ok(m) => self.arrive(m),
                Err(RecvTimeoutError::Timeout) => self.fail(&format!(
                    "the driver did not start within {STARTUP_TIMEOUT:?}"
                )),
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(100));
                    self.fail("the driver exited before it was ready")
                }
            }
        }
    }

    /// Removes and returns the first queued-or-arriving message that `select` accepts.
    fn take(&mut self, what: &str, timeout: Duration, select: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.queued.iter().position(&select) {
                return self.queued.remove(i).unwrap_or_default();
            }
            let now = Instant::now();
            if now >= deadline {
                self.fail(&format!("no {what} within {timeout:?}"));
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(m) => self.arrive(m),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no {what} within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Let stderr catch up before quoting it.
                    std::thread::sleep(Duration::from_millis(100));
                    self.fail(&format!("the driver exited while waiting for {what}"))
                }
            }
        }
    }

    /// Panics with `why`, everything the driver reported, and its stderr.
    pub fn fail(&mut self, why: &str) -> ! {
        while let Ok(m) = self.rx.try_recv() {
            self.history.push(m);
        }
        let history: Vec<String> = self.history.iter().map(Value::to_string).collect();
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        panic!(
            "client {}: {why}\n--- driver messages ---\n{}\n--- driver stderr ---\n{}",
            self.label,
            history.join("\n"),
            stderr.trim_end()
        )
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        } else {
            self.shutdown(Duration::from_secs(2));
        }
    }
}
