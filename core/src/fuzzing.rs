//! Entry points of the fuzz targets in `fuzz/`, kept in the crate so that the committed corpus
//! is replayed by an ordinary `cargo test` (`core/tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes, must never panic on any input, and asserts the
//! properties that must hold whatever the input (decode ∘ encode ∘ decode = decode, every
//! request answered at most once).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::body::{BodyBudget, BodyCounter, BodyLimit, BodyRules};
use crate::conformance::Conformance;
use crate::eio::{Packet, Protocol, payload};
use crate::gateway::config::{self, ConfigSources, SourceFile};
use crate::gateway::store::{MemoryStore, Store};
use crate::gateway::{Gateway, GatewayOptions};
use crate::net::{ConnId, Engine, Headers, HttpRequest, Method, Output, RequestId, WsFrame};
use crate::sio;

/// Engine.IO packets: text form, payload entries and WebSocket frames of both revisions.
pub fn eio_packet(data: &[u8]) {
    if let Ok(packet) = Packet::decode_text(data) {
        let text = packet
            .encode_text()
            .expect("decoded text packets encode as text");
        assert_eq!(Packet::decode_text(&text), Ok(packet));
    }
    for protocol in [Protocol::V3, Protocol::V4] {
        if let Ok(packet) = Packet::decode_payload_entry(data, protocol) {
            let entry = packet.encode_payload_entry(protocol);
            assert_eq!(Packet::decode_payload_entry(&entry, protocol), Ok(packet));
        }
        for frame in [
            WsFrame::Binary(Bytes::copy_from_slice(data)),
            WsFrame::Text(Bytes::copy_from_slice(data)),
        ] {
            if let Ok(packet) = Packet::from_ws_frame(&frame, protocol) {
                let again = packet.to_ws_frame(protocol);
                assert_eq!(Packet::from_ws_frame(&again, protocol), Ok(packet));
            }
        }
    }
}

/// Polling payloads; the first byte picks the framing (v4, v3 text, v3 binary, JSONP body).
pub fn eio_payload(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(packets) = payload::decode_v4(body) {
                let encoded = payload::encode_v4(&packets);
                assert_eq!(payload::decode_v4(&encoded), Ok(packets));
            }
        }
        1 => {
            if let Ok(packets) = payload::decode_v3_text(body) {
                let encoded = payload::encode_v3_text(&packets);
                assert_eq!(payload::decode_v3_text(&encoded), Ok(packets));
            }
        }
        2 => {
            if let Ok(packets) = payload::decode_v3_binary(body) {
                let encoded = payload::encode_v3_binary(&packets);
                assert_eq!(payload::decode_v3_binary(&encoded), Ok(packets));
            }
        }
        _ => {
            if let Ok(text) = payload::decode_jsonp_body(body) {
                let _ = payload::decode_v3_text(&text);
            }
        }
    }
}

/// Socket.IO packets, with attachments joined from the bytes after a NUL separator.
pub fn sio_packet(data: &[u8]) {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(packet) = sio::packet::decode(text, 10) else {
        return;
    };
    for revision in [sio::Revision::V4, sio::Revision::V5] {
        let encoded = sio::packet::encode(&packet, revision);
        assert_eq!(sio::packet::decode(&encoded, 10).as_ref(), Ok(&packet));
    }
    if let Some(mut value) = packet.data.clone() {
        let attachments: Vec<Bytes> = rest
            .chunks(4)
            .take(packet.attachments)
            .map(Bytes::copy_from_slice)
            .collect();
        if sio::binary::reconstruct(&mut value, &attachments).is_ok() {
            let mut wire = value.clone();
            let mut out = Vec::new();
            sio::binary::deconstruct(&mut wire, &mut out);
            let mut back = wire;
            sio::binary::reconstruct(&mut back, &out).expect("own placeholders are in range");
            assert_eq!(back, value);
        }
    }
}

/// Reads the fuzz input as a script of adapter inputs.
struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn chunk(&mut self) -> &[u8] {
        let len = usize::from(self.byte().unwrap_or(0));
        let len = len.min(self.data.len());
        let (chunk, rest) = self.data.split_at(len);
        self.data = rest;
        chunk
    }

    fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        if items.is_empty() {
            return None;
        }
        let index = usize::from(self.byte().unwrap_or(0)) % items.len();
        items.get(index)
    }
}

/// What the fake adapter of [`engine`] knows.
#[derive(Default)]
struct World {
    sids: Vec<(String, &'static str, &'static str)>,
    conns: Vec<ConnId>,
    parked: Vec<RequestId>,
    answered: HashSet<RequestId>,
    next_id: u64,
}

/// An arbitrary sequence of adapter inputs into one [`Conformance`] engine.
pub fn engine(data: &[u8]) {
    let mut script = Script { data };
    let mut engine = Conformance::new(u64::from(script.byte().unwrap_or(0)));
    let mut world = World::default();
    let start = Instant::now();
    let mut now = start;
    let mut steps = 0;
    while let Some(op) = script.byte() {
        steps += 1;
        if steps > 256 {
            break;
        }
        world.next_id += 1;
        let id = RequestId(world.next_id);
        let path = if op & 0x80 == 0 {
            "/socket.io/"
        } else {
            "/engine.io/"
        };
        let eio = if op & 0x40 == 0 { "4" } else { "3" };
        let request = |method: Method, query: String, body: &[u8], websocket: bool| HttpRequest {
            method,
            path: path.to_owned(),
            query,
            headers: Headers::default(),
            body: Bytes::copy_from_slice(body),
            body_truncated: false,
            websocket,
        };
        match op % 12 {
            0 => {
                let extra = ["", "&b64=1", "&j=0"][usize::from(op / 12 % 3)];
                let query = format!("EIO={eio}&transport=polling{extra}");
                engine.handle_http(id, request(Method::Get, query, b"", false), now);
            }
            1 => {
                let query = format!("EIO={eio}&transport=websocket");
                engine.handle_http(id, request(Method::Get, query, b"", true), now);
            }
            2 | 3 => {
                let Some((sid, eio, extra)) = script.pick(&world.sids).cloned() else {
                    continue;
                };
                let query = format!("EIO={eio}&transport=polling{extra}&sid={sid}");
                let (method, body) = if op % 12 == 2 {
                    (Method::Get, &[][..])
                } else {
                    (Method::Post, script.chunk())
                };
                engine.handle_http(id, request(method, query, body, false), now);
            }
            4 | 5 => {
                let Some(&conn) = script.pick(&world.conns) else {
                    continue;
                };
                let bytes = Bytes::copy_from_slice(script.chunk());
                let frame = match (op % 12 == 4, std::str::from_utf8(&bytes).is_ok()) {
                    (true, true) => WsFrame::Text(bytes),
                    _ => WsFrame::Binary(bytes),
                };
                engine.handle_ws_frame(conn, frame, now);
            }
            6 => {
                if let Some(&conn) = script.pick(&world.conns) {
                    engine.handle_ws_closed(conn, now);
                }
            }
            7 => {
                if let Some(&parked) = script.pick(&world.parked) {
                    engine.handle_http_aborted(parked, now);
                }
            }
            8 => {
                now += Duration::from_millis(u64::from(script.byte().unwrap_or(0)) * 8);
                engine.handle_timeout(now);
            }
            9 => {
                let Some((sid, eio, _)) = script.pick(&world.sids).cloned() else {
                    continue;
                };
                let query = format!("EIO={eio}&transport=websocket&sid={sid}");
                engine.handle_http(id, request(Method::Get, query, b"", true), now);
            }
            10 => {
                let query = String::from_utf8_lossy(script.chunk()).into_owned();
                let method =
                    Method::from_token(["GET", "POST", "OPTIONS", "PUT"][usize::from(op / 12 % 4)]);
                let body = script.chunk().to_vec();
                engine.handle_http(id, request(method, query, &body, op & 1 == 1), now);
            }
            _ => engine.handle_wall_clock(0, now),
        }
        world.parked.push(id);
        drain(&mut engine, &mut world, op);
    }
}

fn drain(engine: &mut Conformance, world: &mut World, op: u8) {
    loop {
        match engine.poll_output() {
            Output::Idle(_) => return,
            Output::HttpResponse(id, response) => {
                assert!(world.answered.insert(id), "request answered twice");
                world.parked.retain(|p| *p != id);
                let body = String::from_utf8_lossy(&response.body);
                if let Some(start) = body.find("\"sid\":\"") {
                    let sid: String = body[start + 7..]
                        .chars()
                        .take_while(|c| *c != '"')
                        .collect();
                    let eio = if op & 0x40 == 0 { "4" } else { "3" };
                    let extra = if body.contains("___eio") {
                        "&j=0"
                    } else {
                        "&b64=1"
                    };
                    world.sids.push((sid.replace('\\', ""), eio, extra));
                }
            }
            Output::WsAccept(id) => {
                assert!(world.answered.insert(id), "request answered twice");
                world.parked.retain(|p| *p != id);
                world.conns.push(ConnId::from(id));
            }
            Output::WsClose(conn, _) => world.conns.retain(|c| *c != conn),
            _ => {}
        }
    }
}

/// The sites every `/send` fuzz input is routed against: one user-room site with a public
/// channel, one broadcast site.
const FUZZ_SITES: &str = "goodcity:\n  authUrl: http://127.0.0.1:9/rooms\n  authScheme: Bearer\n  apiKey: k\n  userRoomPrefix: user_\n  publicChannel: browse\nnews:\n  authUrl: http://127.0.0.1:9/rooms\n  authScheme: Bearer\n  apiKey: k\n";

/// `POST /send` end to end through a [`Gateway`] with the in-memory store: the query (up to
/// the first NUL), a content type picked by one byte, then the body. Every input gets exactly
/// one answer, never a 5xx other than the store's 503.
pub fn send(data: &[u8]) {
    let (query, rest) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (selector, body) = rest.split_first().map_or((0, &[][..]), |(s, b)| (*s, b));
    let content_type = [
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        None,
    ][usize::from(selector) % 5];
    let sources = ConfigSources {
        config_yml: None,
        sites_yml: Some(SourceFile {
            path: "sites.yml".to_owned(),
            text: FUZZ_SITES.to_owned(),
        }),
        env: Default::default(),
    };
    let Ok(config) = config::load(&sources) else {
        panic!("the fuzz configuration loads");
    };
    let options = GatewayOptions {
        node_id: 1,
        seed: 1,
        clustered: false,
        epoch_check: None,
        engine: None,
    };
    let mut gateway = Gateway::new(config, options);
    let mut store = MemoryStore::new();
    let now = Instant::now();
    gateway.handle_wall_clock(1_700_000_000_000, now);
    let mut headers = Headers::default();
    if let Some(content_type) = content_type {
        headers.push("content-type", content_type);
    }
    // Keys that authorise: a query without `apiKey=k` is refused before routing, which the
    // fuzzer finds on its own; half the inputs get the key appended to reach routing.
    let mut query = String::from_utf8_lossy(query).into_owned();
    if selector & 0x80 != 0 {
        query.push_str("&site=goodcity&apiKey=k");
    }
    let request = HttpRequest {
        method: Method::Post,
        path: "/send".to_owned(),
        query,
        headers,
        body: Bytes::copy_from_slice(body),
        body_truncated: false,
        websocket: false,
    };
    gateway.handle_http(RequestId(1), request, now);
    let mut answers = 0;
    loop {
        match gateway.poll_output() {
            Output::HttpResponse(_, response) => {
                answers += 1;
                assert!(
                    response.status < 500 || response.status == 503,
                    "/send answered {}",
                    response.status
                );
            }
            Output::Store(id, command) => {
                let result = store.execute(command);
                gateway.handle_store_result(id, result, now);
            }
            Output::Idle(_) => break,
            _ => {}
        }
    }
    assert_eq!(answers, 1, "/send must be answered exactly once");
}

/// The `_batch` splitter: a backlog drained piece by piece through the [`Model`] and the
/// [`MemoryStore`] with limits and item sizes from the input. Every piece respects its limits
/// (or is one oversized item alone), the two stores cut at the same places, the pieces in order
/// are exactly the backlog in id order, and the drain ends with the device live.
///
/// Input: two bytes of `max_items` (1..=256), two of `max_bytes` (1..=65536), then per item a
/// byte choosing its event and a byte of padding length (times 8).
///
/// [`Model`]: crate::gateway::store::Model
pub fn batch(data: &[u8]) {
    use crate::gateway::batch::{BATCH_ENVELOPE, BatchLimits, batch_payload};
    use crate::gateway::store::{
        DeviceKey, EnqueueStatus, Model, QueuedItem, SocketRef, StoreCommand, StoreResult,
    };

    let Some((head, items)) = data.split_first_chunk::<4>() else {
        return;
    };
    let limits = BatchLimits {
        max_items: usize::from(u16::from_le_bytes([head[0], head[1]]) % 256) + 1,
        max_bytes: usize::from(u16::from_le_bytes([head[2], head[3]])) + 1,
    };
    let device = DeviceKey {
        site: "s".to_owned(),
        room: "user_1".to_owned(),
        device: "d".to_owned(),
    };
    let socket = SocketRef { node: 1, socket: 1 };
    let stores: (Model, MemoryStore) = (Model::new(), MemoryStore::new());
    let (mut model, mut memory) = stores;
    let mut run = |command: StoreCommand| {
        let expected = model.execute(command.clone());
        assert_eq!(memory.execute(command), expected, "the stores differ");
        expected
    };
    let now_ms = 1_700_000_000_000;
    run(StoreCommand::Connect {
        device: device.clone(),
        socket,
        groups: Some(Vec::new()),
        limits,
        now_ms,
    });
    run(StoreCommand::Disconnect {
        device: device.clone(),
        socket,
        now_ms,
        ttl_ms: 0,
    });
    let mut backlog = Vec::new();
    for (n, pair) in items.chunks_exact(2).take(2000).enumerate() {
        let event = ["a", "b", "c"][usize::from(pair[0] % 3)];
        // Ids out of push order now and then, as a node with a lagging clock sends them (and
        // still unique: equal bases differ in `n % 4`).
        let n = n as u64;
        let id = (10_000 + n * 8 - u64::from(pair[0] >> 6) * 12) * 4 + n % 4;
        let json = format!("[\"{event}\",\"{}\"]", "x".repeat(usize::from(pair[1]) * 8));
        let item = QueuedItem {
            id,
            event: event.to_owned(),
            json: json.into(),
        };
        let result = run(StoreCommand::Enqueue {
            site: device.site.clone(),
            room: device.room.clone(),
            item: item.clone(),
            via_groups: None,
            now_ms,
        });
        assert!(matches!(
            result,
            StoreResult::Enqueued {
                status: EnqueueStatus::Stored,
                ..
            }
        ));
        backlog.push(item);
    }
    backlog.sort_by_key(|item| item.id);

    let mut result = run(StoreCommand::Connect {
        device: device.clone(),
        socket: SocketRef { node: 1, socket: 2 },
        groups: Some(Vec::new()),
        limits,
        now_ms,
    });
    let mut delivered = Vec::new();
    for _ in 0..=backlog.len() {
        let StoreResult::Connected { items, more } = result else {
            panic!("a piece is read: {result:?}");
        };
        let payload = batch_payload(items.iter().map(|item| item.json.as_ref()));
        assert!(items.len() <= limits.max_items);
        assert!(
            items.len() <= 1 || payload.json().len() < limits.max_bytes + BATCH_ENVELOPE,
            "a piece of {} bytes exceeds {limits:?}",
            payload.json().len()
        );
        assert!(
            !more || !items.is_empty(),
            "an empty piece with more to come"
        );
        let acked: Vec<(String, u64)> = items.iter().map(|i| (i.event.clone(), i.id)).collect();
        delivered.extend(items);
        if !more {
            break;
        }
        result = run(StoreCommand::NextBatch {
            device: device.clone(),
            socket: SocketRef { node: 1, socket: 2 },
            acked,
            limits,
            now_ms,
        });
    }
    let ids = |items: &[QueuedItem]| items.iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&delivered),
        ids(&backlog),
        "pieces lost, repeated or reordered"
    );
    // Live now: the next send names the socket.
    let StoreResult::Enqueued { devices, .. } = run(StoreCommand::Enqueue {
        site: device.site.clone(),
        room: device.room.clone(),
        item: QueuedItem {
            id: u64::MAX,
            event: "a".to_owned(),
            json: "[\"a\"]".into(),
        },
        via_groups: None,
        now_ms,
    }) else {
        panic!("enqueue answers Enqueued");
    };
    assert!(
        devices.iter().all(|d| d.socket.is_some()),
        "not live after the drain"
    );
}

/// Request-body framing: which limit a request head gets ([`BodyRules::limit`]) and the
/// accounting of up to four bodies read at once against one [`BodyBudget`].
///
/// Input: a path (up to the first NUL), then a method byte, then operations of three bytes
/// each: `[op, a, b]` where `op % 4` picks a body slot and `op / 4 % 4` the action — start a
/// body (declared length `a·b·64`, or chunked when `a` is odd), a chunk of `a·256 + b` bytes,
/// finish (give its budget back), or drop it unfinished. Properties: a declared length over
/// the limit is refused before any chunk; a kept body never passes its limit; the budget is
/// never overdrawn and always equals what the live bodies hold; it is all given back at the end.
pub fn body_framing(data: &[u8]) {
    let (path, rest) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let path = String::from_utf8_lossy(path);
    let (method_byte, ops) = rest.split_first().map_or((0, &[][..]), |(m, o)| (*m, o));
    let method = [
        Method::Get,
        Method::Post,
        Method::Head,
        Method::Options,
        Method::Put,
        Method::Other("BREW".to_owned()),
    ][usize::from(method_byte) % 6]
        .clone();
    let rules = [
        BodyRules {
            engine_io: Some(("/socket.io".to_owned(), 4096)),
            send: Some(1024),
            other: BodyLimit::Ignore,
        },
        BodyRules::uniform(2048),
    ];
    let rules = &rules[usize::from(method_byte >> 7)];
    let limit = match rules.limit(&method, &path) {
        BodyLimit::Ignore => {
            assert!(
                rules.other == BodyLimit::Ignore,
                "only an ignoring rule set ignores"
            );
            return;
        }
        BodyLimit::UpTo(limit) => limit,
    };
    if method != Method::Post {
        assert_eq!(
            BodyLimit::UpTo(limit),
            rules.other,
            "only POSTs get a route limit"
        );
    }

    let mut budget = BodyBudget::new(8192);
    let mut bodies: [Option<BodyCounter>; 4] = Default::default();
    let held = |bodies: &[Option<BodyCounter>; 4]| -> usize {
        bodies.iter().flatten().map(BodyCounter::reserved).sum()
    };
    for op in ops.chunks_exact(3) {
        let (slot, action) = (usize::from(op[0] % 4), op[0] / 4 % 4);
        let (a, b) = (usize::from(op[1]), usize::from(op[2]));
        match (action, bodies[slot].take()) {
            (0, previous) => {
                if let Some(previous) = previous {
                    budget.release(previous.reserved());
                }
                let declared = (a % 2 == 0).then(|| (a * b * 64) as u64);
                match BodyCounter::start(limit, declared) {
                    Err(_) => assert!(declared.is_some_and(|d| d > limit as u64)),
                    Ok(counter) => {
                        assert_eq!(counter.reserved() as u64, declared.unwrap_or(0));
                        assert_eq!(counter.received(), 0);
                        if budget.try_reserve(counter.reserved()) {
                            bodies[slot] = Some(counter);
                        }
                    }
                }
            }
            (1, Some(mut counter)) => {
                let len = a * 256 + b;
                let before = counter.clone();
                match counter.take(len) {
                    Err(_) => {
                        assert!(before.received() + len > limit);
                        budget.release(before.reserved());
                    }
                    Ok(more) => {
                        assert_eq!(counter.received(), before.received() + len);
                        assert!(counter.received() <= limit);
                        assert!(counter.received() <= counter.reserved());
                        assert!(counter.reserved() <= limit);
                        assert_eq!(counter.reserved(), before.reserved() + more);
                        if budget.try_reserve(more) {
                            bodies[slot] = Some(counter);
                        } else {
                            // Refused for the budget: what it held goes back.
                            budget.release(before.reserved());
                        }
                    }
                }
            }
            (_, Some(counter)) => budget.release(counter.reserved()),
            (_, None) => {}
        }
        assert!(budget.used() <= budget.capacity(), "budget overdrawn");
        assert_eq!(budget.used(), held(&bodies), "budget out of step");
    }
    for counter in bodies.iter_mut().filter_map(Option::take) {
        budget.release(counter.reserved());
    }
    assert_eq!(budget.used(), 0, "budget not given back");
}
