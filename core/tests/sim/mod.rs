//! A deterministic world for the gateway: one [`Gateway`] with the in-memory store executing its
//! commands inline, a fake clock, a scripted site backend (auth answers by token, user updates
//! recorded and answered 200) and long-polling clients of both protocol generations.
//!
//! Every test file `sim_*.rs` includes this module. Nothing here decides behaviour; it only
//! moves bytes between the gateway and the test's assertions.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use courier_core::gateway::cluster::{RemoteHeader, RemoteMessage};
use courier_core::gateway::config::{self, ConfigSources, SourceFile};
use courier_core::gateway::store::{MemoryStore, Store, StoreCommand, StoreResult};
use courier_core::gateway::{Gateway, GatewayOptions};
use courier_core::net::{
    AppEvent, BusTarget, CallResult, Engine, Headers, HttpRequest, HttpResponse, Method,
    OutboundCall, Output, RequestId, StoreCmdId,
};

/// The wall clock at the start of every simulation: 2023-11-14T22:13:20.000Z.
pub const START_UNIX_MS: u64 = 1_700_000_000_000;

/// The one-site setup most tests use: user-room mode with a public channel and user updates.
pub const GOODCITY: &str = r#"
goodcity:
  authUrl: http://127.0.0.1:9/rooms
  authScheme: Bearer
  apiKey: 54321
  userRoomPrefix: user_
  updateUserUrl: http://127.0.0.1:9/users/:id
  publicChannel: browse
"#;

/// How the scripted backend answers an auth call for one token.
#[derive(Debug, Clone)]
pub enum AuthAnswer {
    /// 200 with this JSON array of rooms.
    Rooms(Vec<&'static str>),
    /// This status and raw body.
    Status(u16, &'static str),
    /// No answer at all (the call times out in the gateway).
    Hang,
}

/// The simulated world.
pub struct Sim {
    pub gateway: Gateway,
    pub store: MemoryStore,
    pub now: Instant,
    start: Instant,
    next_request: u64,
    pub responses: HashMap<u64, HttpResponse>,
    /// Every outbound call the gateway made, in order.
    pub calls: Vec<OutboundCall>,
    /// Auth answers by token; a token not listed gets 401.
    pub auth: HashMap<String, AuthAnswer>,
    pub events: Vec<AppEvent>,
    /// Cluster messages published, with whom they were addressed to.
    pub published: Vec<(BusTarget, Bytes)>,
    deadline: Option<Instant>,
    /// Store commands for which this returns true are executed at once, but their results are
    /// held in [`Sim::held_results`] until [`Sim::release_results`] (a slow store reply).
    pub hold_result: fn(&StoreCommand) -> bool,
    /// Store commands for which this returns true are not executed and answer `Failed` (a
    /// store that is down).
    pub fail: fn(&StoreCommand) -> bool,
    pub held_results: Vec<(StoreCmdId, StoreResult)>,
    /// Every store command the gateway emitted, in order.
    pub executed: Vec<StoreCommand>,
}

impl Sim {
    /// A gateway configured with `sites_yml` (and optionally `config_yml`, section
    /// `production`).
    pub fn new(sites_yml: &str, config_yml: Option<&str>) -> Sim {
        let options = GatewayOptions {
            node_id: 1,
            seed: 7,
            clustered: false,
            epoch_check: None,
            engine: None,
        };
        Sim::with_options(sites_yml, config_yml, options)
    }

    /// The standard goodcity site on node `node_id` of a cluster sharing a store that may lose
    /// its data: the gateway publishes for other nodes and checks the store's epoch.
    pub fn goodcity_clustered(node_id: u64) -> Sim {
        let options = GatewayOptions {
            node_id,
            seed: 7,
            clustered: true,
            epoch_check: Some(courier_core::gateway::EPOCH_CHECK_INTERVAL),
            engine: None,
        };
        Sim::with_options(GOODCITY, None, options)
    }

    /// A gateway configured with `sites_yml` (and optionally `config_yml`) and `options`.
    pub fn with_options(sites_yml: &str, config_yml: Option<&str>, options: GatewayOptions) -> Sim {
        let sources = ConfigSources {
            config_yml: config_yml.map(|text| SourceFile {
                path: "config.yml".to_owned(),
                text: text.to_owned(),
            }),
            sites_yml: Some(SourceFile {
                path: "sites.yml".to_owned(),
                text: sites_yml.to_owned(),
            }),
            env: BTreeMap::new(),
        };
        let config = config::load(&sources).expect("test configuration loads");
        let now = Instant::now();
        let mut gateway = Gateway::new(config, options);
        gateway.handle_wall_clock(START_UNIX_MS, now);
        Sim {
            gateway,
            store: MemoryStore::new(),
            now,
            start: now,
            next_request: 0,
            responses: HashMap::new(),
            calls: Vec::new(),
            auth: HashMap::new(),
            events: Vec::new(),
            published: Vec::new(),
            deadline: None,
            hold_result: |_| false,
            fail: |_| false,
            held_results: Vec::new(),
            executed: Vec::new(),
        }
    }

    /// Hands every held store result to the gateway, in execution order.
    pub fn release_results(&mut self) {
        for (id, result) in std::mem::take(&mut self.held_results) {
            self.gateway.handle_store_result(id, result, self.now);
        }
        self.run();
    }

    /// The standard goodcity site.
    pub fn goodcity() -> Sim {
        Sim::new(GOODCITY, None)
    }

    /// Scripts the auth answer for `token`.
    pub fn auth(&mut self, token: &str, answer: AuthAnswer) {
        self.auth.insert(token.to_owned(), answer);
    }

    /// Drains the gateway, executing store commands and answering calls, until it is idle.
    pub fn run(&mut self) {
        loop {
            let mut store_results = VecDeque::new();
            let mut call_results = VecDeque::new();
            loop {
                match self.gateway.poll_output() {
                    Output::HttpResponse(id, response) => {
                        self.responses.insert(id.0, response);
                    }
                    Output::Store(id, command) => {
                        self.executed.push(command.clone());
                        if (self.fail)(&command) {
                            let result = StoreResult::Failed("store down (test)".to_owned());
                            store_results.push_back((id, result));
                        } else if (self.hold_result)(&command) {
                            self.held_results.push((id, self.store.execute(command)));
                        } else {
                            store_results.push_back((id, self.store.execute(command)));
                        }
                    }
                    Output::Call(id, call) => {
                        if let Some(result) = self.answer(&call) {
                            call_results.push_back((id, result));
                        }
                        self.calls.push(call);
                    }
                    Output::Publish(to, message) => self.published.push((to, message)),
                    Output::Event(event) => self.events.push(event),
                    Output::Status(id) => {
                        // The document is the adapter's to build (from the same snapshot as
                        // `/metrics`); the simulation answers with a marker.
                        let response = courier_core::gateway::status_response(b"true".to_vec());
                        self.responses.insert(id.0, response);
                    }
                    Output::WsAccept(_) | Output::WsSend(..) | Output::WsClose(..) => {}
                    Output::Idle(deadline) => {
                        self.deadline = deadline;
                        break;
                    }
                }
            }
            if store_results.is_empty() && call_results.is_empty() {
                return;
            }
            for (id, result) in store_results {
                self.gateway.handle_store_result(id, result, self.now);
            }
            for (id, result) in call_results {
                self.gateway.handle_call_result(id, result, self.now);
            }
        }
    }

    fn answer(&self, call: &OutboundCall) -> Option<CallResult> {
        if call.method == Method::Put {
            return Some(CallResult::Response {
                status: 200,
                body: Bytes::from_static(b"{}"),
            });
        }
        let token = call
            .headers
            .get("authorization")
            .and_then(|value| value.split(' ').nth(1))
            .unwrap_or("")
            .to_owned();
        match self.auth.get(&token) {
            Some(AuthAnswer::Rooms(rooms)) => Some(CallResult::Response {
                status: 200,
                body: serde_json::to_vec(rooms).expect("rooms encode").into(),
            }),
            Some(AuthAnswer::Status(status, body)) => Some(CallResult::Response {
                status: *status,
                body: Bytes::from_static(body.as_bytes()),
            }),
            Some(AuthAnswer::Hang) => None,
            None => Some(CallResult::Response {
                status: 401,
                body: Bytes::from_static(b"{}"),
            }),
        }
    }

    /// Moves the clock forward by `by`, firing every deadline on the way at its instant.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(deadline) = self.deadline.filter(|deadline| *deadline <= target) {
            self.now = self.now.max(deadline);
            self.gateway.handle_timeout(self.now);
            self.run();
            if self.deadline == Some(deadline) {
                break;
            }
        }
        self.now = target;
        self.gateway.handle_timeout(self.now);
        self.run();
    }

    /// The wall clock now, in Unix milliseconds.
    pub fn unix_ms(&self) -> u64 {
        START_UNIX_MS + u64::try_from((self.now - self.start).as_millis()).unwrap_or(0)
    }

    /// Sends one HTTP request; returns its id (the answer may be parked: see
    /// [`Sim::response`]).
    pub fn request(
        &mut self,
        method: Method,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> u64 {
        self.next_request += 1;
        let id = self.next_request;
        let mut request_headers = Headers::default();
        for (name, value) in headers {
            request_headers.push(name.to_ascii_lowercase(), *value);
        }
        let request = HttpRequest {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers: request_headers,
            body: Bytes::copy_from_slice(body),
            body_truncated: false,
            websocket: false,
        };
        self.gateway.handle_http(RequestId(id), request, self.now);
        self.run();
        id
    }

    /// The answer to request `id`, once there is one.
    pub fn response(&mut self, id: u64) -> Option<HttpResponse> {
        self.responses.remove(&id)
    }

    /// A request that must be answered at once.
    pub fn exchange(
        &mut self,
        method: Method,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let id = self.request(method, path, query, headers, body);
        self.response(id)
            .unwrap_or_else(|| panic!("{path}?{query} was not answered at once"))
    }

    /// `POST /send?<query>` with a JSON body.
    pub fn send_json(&mut self, query: &str, body: &str) -> HttpResponse {
        self.exchange(
            Method::Post,
            "/send",
            query,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    /// `POST /send` to goodcity with the right key.
    pub fn send(&mut self, body: &str) -> HttpResponse {
        self.send_json("site=goodcity&apiKey=54321", body)
    }

    /// The user-update PUTs made so far: `(url, body)`.
    pub fn puts(&self) -> Vec<(String, String)> {
        self.calls
            .iter()
            .filter(|call| call.method == Method::Put)
            .map(|call| {
                (
                    call.url.clone(),
                    String::from_utf8_lossy(&call.body).into_owned(),
                )
            })
            .collect()
    }

    /// The auth calls made so far.
    pub fn auth_calls(&self) -> Vec<&OutboundCall> {
        self.calls
            .iter()
            .filter(|call| call.method == Method::Get)
            .collect()
    }

    /// The headers of what was published, checking each went where it belongs: a delivery to
    /// the one node its targets name, everything else to all nodes.
    pub fn published_headers(&self) -> Vec<RemoteHeader> {
        self.published
            .iter()
            .map(|(to, message)| {
                let header = RemoteMessage::decode(message).expect("decodes").header;
                match &header {
                    RemoteHeader::Deliver { targets, .. } => {
                        assert!(!targets.is_empty(), "an empty delivery: {header:?}");
                        let node = targets[0].node;
                        assert!(
                            targets.iter().all(|target| target.node == node),
                            "{header:?}"
                        );
                        assert_eq!(*to, BusTarget::Node(node), "{header:?}");
                    }
                    _ => assert_eq!(*to, BusTarget::AllNodes, "{header:?}"),
                }
                header
            })
            .collect()
    }

    /// Whether an event with this message was logged.
    pub fn logged(&self, message: &str) -> bool {
        self.events.iter().any(|event| event.message == message)
    }

    /// Connects a long-polling client of `generation` with `query` (e.g.
    /// `token=u3&deviceId=d1`). The handshake is answered at once.
    pub fn client(&mut self, generation: Generation, query: &str) -> Client {
        let full = match generation {
            Generation::V3 => format!("EIO=3&transport=polling&b64=1&{query}"),
            Generation::V4 => format!("EIO=4&transport=polling&{query}"),
        };
        let response = self.exchange(Method::Get, "/socket.io/", &full, &[], b"");
        assert_eq!(response.status, 200, "handshake: {:?}", response.body);
        let packets = decode_payload(generation, &response.body);
        let open = packets.first().expect("open packet");
        let json: serde_json::Value =
            serde_json::from_str(open.strip_prefix('0').expect("open packet starts with 0"))
                .expect("open packet JSON");
        let sid = json["sid"].as_str().expect("sid").to_owned();
        let mut client = Client {
            generation,
            sid,
            query: query.to_owned(),
            parked: None,
            inbox: VecDeque::new(),
            handshake_body: String::from_utf8_lossy(&response.body).into_owned(),
        };
        // The rest of the handshake's payload (v3 servers may add `40` there).
        client.inbox.extend(packets.into_iter().skip(1));
        client
    }

    /// POSTs engine packets for `client`; returns the response.
    pub fn post(&mut self, client: &Client, packets: &[&str]) -> HttpResponse {
        let body = encode_payload(client.generation, packets);
        let query = client.session_query();
        self.exchange(Method::Post, "/socket.io/", &query, &[], body.as_bytes())
    }

    /// Everything the server has for `client` now, as engine packets. A GET that finds nothing
    /// stays parked and is collected by the next call.
    pub fn recv(&mut self, client: &mut Client) -> Vec<String> {
        loop {
            let id = match client.parked.take() {
                Some(id) => id,
                None => {
                    let query = client.session_query();
                    self.request(Method::Get, "/socket.io/", &query, &[], b"")
                }
            };
            match self.response(id) {
                Some(response)
                    if response.status == 400 && client.inbox.contains(&"1".to_owned()) =>
                {
                    // The server closed the session (`1` received): the next poll finds no
                    // session, as a real client's would.
                    let _ = response;
                    break;
                }
                Some(response) => {
                    assert_eq!(response.status, 200, "poll: {:?}", response.body);
                    client
                        .inbox
                        .extend(decode_payload(client.generation, &response.body));
                }
                None => {
                    client.parked = Some(id);
                    break;
                }
            }
        }
        client.inbox.drain(..).collect()
    }

    /// The raw body of the next poll for `client` (must be answered at once).
    pub fn poll_raw(&mut self, client: &Client) -> String {
        let query = client.session_query();
        let response = self.exchange(Method::Get, "/socket.io/", &query, &[], b"");
        String::from_utf8_lossy(&response.body).into_owned()
    }

    /// Joins `namespace` with a CONNECT packet and returns every packet received after it.
    pub fn join(&mut self, client: &mut Client, namespace: &str) -> Vec<String> {
        let connect = match client.generation {
            Generation::V3 => format!("40{namespace}"),
            Generation::V4 => format!("40{namespace},"),
        };
        // A v3 client reads the automatic `40` of `/` first, as real clients do.
        let mut packets = self.recv(client);
        let response = self.post(client, &[&connect]);
        assert_eq!(response.status, 200);
        packets.extend(self.recv(client));
        packets
    }

    /// Acknowledges server ack `id` in `namespace` with no arguments.
    pub fn ack(&mut self, client: &Client, namespace: &str, id: u64) {
        let packet = format!("43{namespace},{id}[]");
        let response = self.post(client, &[&packet]);
        assert_eq!(response.status, 200);
    }

    /// Closes `client`'s engine session from the client side.
    pub fn close(&mut self, client: &mut Client) {
        let response = self.post(client, &["1"]);
        assert_eq!(response.status, 200);
        client.parked = None;
    }
}

/// Which protocol generation a simulated client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Engine.IO 3 + Socket.IO 4 with `b64=1` text payloads (socket.io-client 1.x/2.x).
    V3,
    /// Engine.IO 4 + Socket.IO 5 (socket.io-client 3.x/4.x).
    V4,
}

/// A long-polling client's session.
#[derive(Debug)]
pub struct Client {
    pub generation: Generation,
    pub sid: String,
    pub query: String,
    parked: Option<u64>,
    inbox: VecDeque<String>,
    /// The handshake response body as received.
    pub handshake_body: String,
}

impl Client {
    fn session_query(&self) -> String {
        match self.generation {
            Generation::V3 => format!(
                "EIO=3&transport=polling&b64=1&{}&sid={}",
                self.query, self.sid
            ),
            Generation::V4 => format!("EIO=4&transport=polling&{}&sid={}", self.query, self.sid),
        }
    }
}

/// Encodes packets as one polling payload of `generation` (text only).
pub fn encode_payload(generation: Generation, packets: &[&str]) -> String {
    match generation {
        Generation::V3 => packets
            .iter()
            .map(|packet| format!("{}:{packet}", packet.encode_utf16().count()))
            .collect(),
        Generation::V4 => packets.join("\x1e"),
    }
}

/// Splits a text polling payload of `generation` into packets.
pub fn decode_payload(generation: Generation, body: &[u8]) -> Vec<String> {
    let text = String::from_utf8(body.to_vec()).expect("text payload");
    match generation {
        Generation::V4 => text.split('\x1e').map(str::to_owned).collect(),
        Generation::V3 => {
            let units: Vec<u16> = text.encode_utf16().collect();
            let mut packets = Vec::new();
            let mut at = 0;
            while at < units.len() {
                let colon = units[at..]
                    .iter()
                    .position(|&unit| unit == u16::from(b':'))
                    .expect("length prefix")
                    + at;
                let length: usize = String::from_utf16(&units[at..colon])
                    .expect("digits")
                    .parse()
                    .expect("length");
                let start = colon + 1;
                packets.push(String::from_utf16(&units[start..start + length]).expect("packet"));
                at = start + length;
            }
            packets
        }
    }
}

/// The ack id of a server EVENT packet `42/nsp,<id>[...]`, if it asks for one.
pub fn ack_id(packet: &str, namespace: &str) -> Option<u64> {
    let rest = packet
        .strip_prefix("42")?
        .strip_prefix(namespace)?
        .strip_prefix(',')?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The JSON array of a server EVENT packet `42/nsp,[<id>][...]`.
pub fn event_args(packet: &str, namespace: &str) -> Option<serde_json::Value> {
    let rest = packet
        .strip_prefix("42")?
        .strip_prefix(namespace)?
        .strip_prefix(',')?;
    let json = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    serde_json::from_str(json).ok()
}

/// The event packets among `packets` whose event name is `name`.
pub fn events_named<'a>(packets: &'a [String], namespace: &str, name: &str) -> Vec<&'a String> {
    packets
        .iter()
        .filter(|packet| {
            event_args(packet, namespace).is_some_and(|args| args[0].as_str() == Some(name))
        })
        .collect()
}
