//! [`Gateway`]: Courier's top-level Sans-IO object, implementing [`net::Engine`].
//!
//! It owns the Socket.IO server ([`sio::Server`]) and everything the gateway decides on top of
//! it. This file holds the object, the run loop (inputs in, outputs drained until idle) and the
//! bookkeeping of store commands and outbound calls in flight, each with a deadline. The
//! behaviour lives in sibling modules that add `impl Gateway` blocks:
//! - [`super::admission`]: namespace CONNECT → auth call → device registration → accept or
//!   reject → `_settings`, `_batch` pieces, user updates; disconnects;
//! - [`super::dispatch`]: `POST /send`, live deliveries, acks, `_resync`, cluster messages;
//! - [`super::http`]: routing of plain HTTP requests.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::clients::Clients;
use super::config::Config;
use super::dispatch::PendingSend;
use super::flake::FlakeGenerator;
use super::recovery::EpochWatch;
use super::send::BODY_LIMIT;
use super::store::{StoreCommand, StoreResult};
use super::waits::Waits;
use crate::body::{BodyLimit, BodyRules};
use crate::ids::IdMap;
use crate::metrics::{self, SiteCounters, StoreCounters, StoreKind, StoreOutcome};
use crate::net::{
    self, AppEvent, CallId, CallResult, ConnId, HttpRequest, Level, OutboundCall, RequestId,
    StoreCmdId, WsFrame,
};
use crate::sio;

/// How long the gateway waits for a store command before it treats it as failed. A store
/// answers far sooner or reports its own failure; this bounds the damage of one that hangs.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a gateway on a shared store (Redis) checks the store's epoch: the bound on how
/// long after the store lost its data (and answers again) the gateway registers its connected
/// devices again.
pub const EPOCH_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How a [`Gateway`] is set up beyond its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayOptions {
    /// This process's node id (random per process); names its sockets in the shared store.
    pub node_id: u64,
    /// Seed of the session-id generator.
    pub seed: u64,
    /// Other nodes share the store and the cluster bus: emit [`net::Output::Publish`] for
    /// deliveries to sockets this node does not hold.
    pub clustered: bool,
    /// How often to check the store's epoch ([`EPOCH_CHECK_INTERVAL`]); `None` for a store
    /// that lives and dies with this process (the in-memory store), which cannot lose its data
    /// under a running gateway.
    pub epoch_check: Option<Duration>,
    /// Which of several gateways ("engines") of one process this is; `None` for a gateway
    /// alone in its process. See [`EngineSlot`].
    pub engine: Option<EngineSlot>,
}

/// Gateway `index` of `count` in one process (the adapter routes each request of a session to
/// the gateway that owns it). The gateway marks its session ids with `index`
/// ([`crate::eio::Config::session_tag`]), so the adapter needs no shared table, and takes every
/// `count`-th flake-id sequence number from `index` on, so gateways sharing the process's
/// `flakeid` settings never make the same message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSlot {
    /// This gateway's index, below `count` (and below [`crate::eio::SESSION_TAGS`]).
    pub index: u8,
    /// How many gateways the process runs.
    pub count: u8,
}

/// What a store command in flight was for: how its result is handled.
#[derive(Debug)]
pub(super) enum StoreWait {
    /// `Connect` of one device of an admitted socket: its result may become a `_batch`.
    Connect {
        socket: sio::SocketId,
        device: super::store::DeviceKey,
    },
    /// `NextBatch` of a draining device of an admitted socket: the next `_batch` piece.
    NextBatch {
        socket: sio::SocketId,
        device: super::store::DeviceKey,
    },
    /// `ResolveGroups` of a `/send`.
    Resolve { request: RequestId },
    /// `Enqueue` of one room of a `/send`.
    Enqueue {
        request: RequestId,
        room: String,
        /// The room came from the send's group rooms (not named by it).
        via_groups: bool,
    },
    /// `Ack` of a live delivery: `Resync` sends `_resync` to the socket.
    Ack {
        socket: sio::SocketId,
        device: super::store::DeviceKey,
        event: String,
        id: u64,
    },
    /// `CheckEpoch`: a changed epoch means the store lost its data.
    Epoch,
    /// `Connect` of a device the store lost, registering it again (no `_batch`: see
    /// `Gateway::on_reregistered`).
    Reregister {
        socket: sio::SocketId,
        device: super::store::DeviceKey,
    },
    /// A command whose result only matters for logs (`Disconnect`, `AckBatch`,
    /// `ForgetGroupMember`).
    Logged { what: &'static str },
}

/// What an outbound call in flight was for.
#[derive(Debug)]
pub(super) enum CallWait {
    /// The auth call of a namespace CONNECT.
    Auth { socket: sio::SocketId },
    /// A fire-and-forget `updateUserUrl` PUT.
    UserUpdate { site: String, room: String },
}

/// The wall clock, extrapolated from the last [`net::Engine::handle_wall_clock`].
#[derive(Debug, Clone, Copy)]
struct WallClock {
    unix_ms: u64,
    at: Instant,
}

/// Courier's gateway: every site, socket and `/send` of one process. See the module docs.
#[derive(Debug)]
pub struct Gateway {
    pub(super) config: Config,
    pub(super) sio: sio::Server,
    pub(super) options: GatewayOptions,
    pub(super) flake: FlakeGenerator,
    pub(super) clients: Clients,
    pub(super) sends: IdMap<RequestId, PendingSend>,
    /// `io.path` with its trailing slash, for the client bundle.
    pub(super) io_path_slash: String,
    /// What the gateway knows of the store's epoch.
    pub(super) epoch: EpochWatch,
    clock: Option<WallClock>,
    /// The gateway's own outputs (store commands, calls, publishes, its log lines, answers to
    /// plain HTTP routes); the Socket.IO layer keeps its own.
    out: VecDeque<net::Output>,
    next_store: u64,
    next_call: u64,
    /// Store commands in flight with their deadlines. Ids are issued in time order and every
    /// command gets the same [`STORE_TIMEOUT`], so the oldest has the earliest deadline; an
    /// answered command leaves no trace.
    store_waits: Waits<(StoreKind, StoreWait)>,
    /// Calls in flight with their start and deadline (also indexed by deadline, as timeouts
    /// differ per site).
    call_waits: IdMap<CallId, (Instant, Instant, CallWait)>,
    call_deadlines: BTreeSet<(Instant, CallId)>,
    /// What `/metrics` reports (see [`crate::metrics`]).
    pub(super) counters: Counters,
    /// Application events below this level are not built (see [`Gateway::set_event_level`]).
    event_level: Level,
}

/// The gateway's own counters; [`Gateway::metrics`] adds what is computed when read.
#[derive(Debug)]
pub(super) struct Counters {
    /// One per configured site, in configuration order.
    pub(super) sites: Vec<SiteCounters>,
    pub(super) sends_unknown_site: SiteCounters,
    store: Vec<StoreCounters>,
    pub(super) remote_malformed: u64,
}

impl Counters {
    fn new(config: &Config) -> Counters {
        Counters {
            sites: config
                .sites
                .iter()
                .map(|site| SiteCounters::new(site.name.clone()))
                .collect(),
            sends_unknown_site: SiteCounters::new(String::new()),
            store: StoreKind::ALL
                .iter()
                .map(|_| StoreCounters::default())
                .collect(),
            remote_malformed: 0,
        }
    }

    /// The counters of configured site `name` (a handful of sites: a scan is cheapest).
    pub(super) fn site(&mut self, name: &str) -> Option<&mut SiteCounters> {
        self.sites.iter_mut().find(|site| site.name == name)
    }

    /// Counts a `/send` answer; a site that is not configured is counted apart, unnamed.
    pub(super) fn send_answered(&mut self, site: Option<&str>, status: u16) {
        let counters = match site.and_then(|name| self.sites.iter().position(|s| s.name == name)) {
            Some(index) => &mut self.sites[index],
            None => &mut self.sends_unknown_site,
        };
        counters.count_send(status);
    }

    fn store_done(&mut self, kind: StoreKind, outcome: StoreOutcome, took: Duration) {
        let kind_index = StoreKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let outcome_index = StoreOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        if let Some(counters) = self.store.get_mut(kind_index) {
            counters.outcomes[outcome_index] += 1;
            counters.duration.observe_duration(took);
        }
    }
}

impl Gateway {
    /// A gateway for `config`. Nothing happens until the first input.
    pub fn new(config: Config, options: GatewayOptions) -> Gateway {
        let mut sio_config = config.io.sio_config();
        sio_config.eio.session_tag = options.engine.map(|slot| slot.index);
        let sio = sio::Server::new(sio_config, options.seed);
        let flake = match options.engine {
            Some(slot) => FlakeGenerator::shared(config.flake, slot.index, slot.count),
            None => FlakeGenerator::new(config.flake),
        };
        let io_path_slash = format!("{}/", config.io.path);
        let counters = Counters::new(&config);
        Gateway {
            config,
            sio,
            options,
            flake,
            clients: Clients::default(),
            sends: IdMap::default(),
            io_path_slash,
            epoch: EpochWatch::default(),
            clock: None,
            out: VecDeque::new(),
            next_store: 0,
            next_call: 0,
            store_waits: Waits::default(),
            call_waits: IdMap::default(),
            call_deadlines: BTreeSet::new(),
            counters,
            event_level: Level::Debug,
        }
    }

    /// Emits application events of `level` and above only (default: every level). An adapter
    /// that does not log `debug` says so, and the per-delivery lines are then never built: they
    /// would cost allocations on every delivery for nothing.
    pub fn set_event_level(&mut self, level: Level) {
        self.event_level = level;
    }

    /// Whether events of `level` are emitted: check before building a costly one.
    pub(super) fn logs(&self, level: Level) -> bool {
        level >= self.event_level
    }

    /// Everything the gateway counts, as of now (see [`crate::metrics`]). Cheap enough for a
    /// scrape: the counters are copied and the open connections counted over admitted sockets.
    pub fn metrics(&self) -> metrics::Snapshot {
        let mut open = vec![metrics::OpenConnections::default(); self.counters.sites.len()];
        for (socket, client) in self.clients.admitted() {
            let Some(index) = self
                .counters
                .sites
                .iter()
                .position(|site| site.name == client.site)
            else {
                continue;
            };
            if let Some((websocket, protocol)) = self.sio.transport(socket) {
                open[index].add(websocket, protocol == crate::eio::Protocol::V3);
            }
        }
        metrics::Snapshot {
            sites: self.counters.sites.clone(),
            open,
            sends_unknown_site: self.counters.sends_unknown_site.sends.clone(),
            store: self.counters.store.clone(),
            engine_sessions: u64::try_from(self.sio.engine().session_count()).unwrap_or(u64::MAX),
            engine: self.sio.engine().counters().clone(),
            remote_malformed: self.counters.remote_malformed,
        }
    }

    /// The configuration the gateway runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sockets currently admitted to a site namespace (for metrics and tests).
    pub fn connected_sockets(&self) -> usize {
        self.clients.admitted_count()
    }

    /// Wall-clock milliseconds at `now`, extrapolated from the last wall-clock input (0 before
    /// the first one, which an adapter always gives first).
    pub(super) fn unix_ms(&self, now: Instant) -> u64 {
        match self.clock {
            Some(clock) => {
                let elapsed = now.saturating_duration_since(clock.at).as_millis();
                clock
                    .unix_ms
                    .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
            }
            None => 0,
        }
    }

    /// Queues an output for the adapter.
    pub(super) fn push(&mut self, output: net::Output) {
        self.out.push_back(output);
    }

    /// Queues an application event (one log line), unless its level is filtered out.
    pub(super) fn event(&mut self, event: AppEvent) {
        if self.logs(event.level) {
            self.out.push_back(net::Output::Event(event));
        }
    }

    /// Emits a store command and remembers what its result is for.
    pub(super) fn store(&mut self, command: StoreCommand, wait: StoreWait, now: Instant) {
        self.next_store += 1;
        let id = StoreCmdId(self.next_store);
        let kind = store_kind(&command);
        self.store_waits
            .insert(id, now + STORE_TIMEOUT, (kind, wait));
        self.out.push_back(net::Output::Store(id, command));
    }

    /// Emits an outbound call with a deadline equal to its timeout.
    pub(super) fn call(&mut self, call: OutboundCall, wait: CallWait, now: Instant) -> CallId {
        self.next_call += 1;
        let id = CallId(self.next_call);
        let deadline = now + call.timeout;
        self.call_waits.insert(id, (now, deadline, wait));
        self.call_deadlines.insert((deadline, id));
        self.out.push_back(net::Output::Call(id, call));
        id
    }

    /// When [`net::Engine::handle_timeout`] is next due: the earliest of the Socket.IO layer's
    /// deadlines, the oldest store command's, the first call's and the next epoch check.
    fn poll_timeout(&self) -> Option<Instant> {
        let store = self.store_waits.first_deadline();
        let call = self.call_deadlines.first().map(|(at, _)| *at);
        let own = net::earliest(net::earliest(store, call), self.epoch_deadline());
        net::earliest(self.sio.poll_timeout(), own)
    }

    fn expire_waits(&mut self, now: Instant) {
        while let Some((kind, wait)) = self.store_waits.pop_expired(now) {
            self.counters
                .store_done(kind, StoreOutcome::Timeout, STORE_TIMEOUT);
            let result = StoreResult::Failed("no answer from the store in time".to_owned());
            self.on_store_result(wait, result, now);
        }
        while let Some(&(at, id)) = self.call_deadlines.first() {
            if at > now {
                break;
            }
            self.call_deadlines.remove(&(at, id));
            if let Some((started, _, wait)) = self.call_waits.remove(&id) {
                let result = CallResult::Failed(net::CallFailure::Timeout);
                self.on_call_result(wait, &result, now.saturating_duration_since(started), now);
            }
        }
    }

    fn on_store_result(&mut self, wait: StoreWait, result: StoreResult, now: Instant) {
        match wait {
            StoreWait::Connect { socket, device } => {
                self.on_device_connected(socket, device, result)
            }
            StoreWait::NextBatch { socket, device } => self.on_next_piece(socket, device, result),
            StoreWait::Resolve { request } => self.on_groups_resolved(request, result, now),
            StoreWait::Enqueue {
                request,
                room,
                via_groups,
            } => self.on_enqueued(request, room, via_groups, result, now),
            StoreWait::Ack {
                socket,
                device,
                event,
                id,
            } => self.on_acked(socket, device, event, id, result),
            StoreWait::Epoch => self.on_epoch(result, now),
            StoreWait::Reregister { socket, device } => {
                self.on_reregistered(socket, device, result)
            }
            StoreWait::Logged { what } => {
                if let StoreResult::Failed(reason) = result {
                    self.event(
                        AppEvent::new(Level::Error, "Store command failed")
                            .with("command", what)
                            .with("reason", reason),
                    );
                }
            }
        }
    }

    fn on_call_result(
        &mut self,
        wait: CallWait,
        result: &CallResult,
        took: Duration,
        now: Instant,
    ) {
        match wait {
            CallWait::Auth { socket } => self.on_auth_result(socket, result, took, now),
            CallWait::UserUpdate { site, room } => {
                if let Some(counters) = self.counters.site(&site) {
                    counters.user_update_duration.observe_duration(took);
                }
                self.on_user_updated(site, room, result)
            }
        }
    }

    /// Ends every input: emits an epoch check if one is due, then answers what the Socket.IO
    /// layer reported at `now`, the instant of the input that caused it, so the reactions
    /// (accepts, emits, store commands) carry the right time. Reactions may cause more events
    /// (an emit overflowing a polling buffer closes its session): they are answered too.
    fn answer_sio_events(&mut self, now: Instant) {
        self.watch_epoch(now);
        while let Some(event) = self.sio.poll_event() {
            self.on_sio_event(event, now);
        }
    }

    fn on_sio_event(&mut self, event: sio::Event, now: Instant) {
        match event {
            sio::Event::ConnectRequest {
                socket,
                namespace,
                auth,
                handshake,
                revision,
            } => self.on_connect_request(
                socket,
                &namespace,
                auth.as_ref(),
                &handshake,
                revision,
                now,
            ),
            sio::Event::Connected { .. } => {}
            sio::Event::ClientEvent { socket, args, .. } => self.on_client_event(socket, &args),
            sio::Event::Ack { socket, id, .. } => self.on_client_ack(socket, id, now),
            sio::Event::Disconnected { socket, reason } => {
                self.on_disconnected(socket, reason, now)
            }
        }
    }
}

impl net::Engine for Gateway {
    fn handle_wall_clock(&mut self, unix_ms: u64, now: Instant) {
        self.clock = Some(WallClock { unix_ms, at: now });
        // The first epoch check is due at once: the adapter's first idle wakes it.
        self.start_epoch_watch(now);
    }

    fn handle_http(&mut self, id: RequestId, request: HttpRequest, now: Instant) {
        self.route_http(id, request, now);
        self.answer_sio_events(now);
    }

    fn handle_http_aborted(&mut self, id: RequestId, now: Instant) {
        // A `/send` whose caller left still completes: its store commands are already out.
        if !self.sends.contains_key(&id) {
            self.sio.handle_http_aborted(id, now);
        }
        self.answer_sio_events(now);
    }

    fn handle_ws_frame(&mut self, conn: ConnId, frame: WsFrame, now: Instant) {
        self.sio.handle_ws_frame(conn, frame, now);
        self.answer_sio_events(now);
    }

    fn handle_ws_closed(&mut self, conn: ConnId, now: Instant) {
        self.sio.handle_ws_closed(conn, now);
        self.answer_sio_events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.expire_waits(now);
        self.sio.handle_timeout(now);
        self.answer_sio_events(now);
    }

    fn handle_store_result(&mut self, id: StoreCmdId, result: StoreResult, now: Instant) {
        if let Some((deadline, (kind, wait))) = self.store_waits.remove(id) {
            let outcome = match result {
                StoreResult::Failed(_) => StoreOutcome::Failed,
                _ => StoreOutcome::Ok,
            };
            let took = STORE_TIMEOUT.saturating_sub(deadline.saturating_duration_since(now));
            self.counters.store_done(kind, outcome, took);
            self.on_store_result(wait, result, now);
        }
        self.answer_sio_events(now);
    }

    fn handle_call_result(&mut self, id: CallId, result: CallResult, now: Instant) {
        if let Some((started, deadline, wait)) = self.call_waits.remove(&id) {
            self.call_deadlines.remove(&(deadline, id));
            self.on_call_result(wait, &result, now.saturating_duration_since(started), now);
        }
        self.answer_sio_events(now);
    }

    fn handle_remote(&mut self, message: Bytes, now: Instant) {
        self.on_remote_message(&message, now);
        self.answer_sio_events(now);
    }

    fn handle_shutdown(&mut self, now: Instant) {
        self.event(AppEvent::new(Level::Info, "Shutting down").with(
            "sockets",
            u64::try_from(self.clients.admitted_count()).unwrap_or(u64::MAX),
        ));
        // Every session closes; the resulting disconnects queue the store writes that mark each
        // device disconnected, which the adapter flushes before it exits.
        self.stop_epoch_watch();
        self.sio.close_all(now);
        self.answer_sio_events(now);
    }

    fn metrics(&self) -> Option<metrics::Snapshot> {
        Some(Gateway::metrics(self))
    }

    /// Polling POSTs up to `maxHttpBufferSize`, `POST /send` up to [`BODY_LIMIT`]; every other
    /// route ignores its body.
    fn body_rules(&self, max_payload: usize) -> BodyRules {
        BodyRules {
            engine_io: Some((
                self.config.io.path.clone(),
                usize::try_from(self.config.io.max_payload).unwrap_or(max_payload),
            )),
            send: Some(BODY_LIMIT),
            other: BodyLimit::Ignore,
        }
    }

    /// The gateway's own outputs first, then the Socket.IO layer's (pulled from it only now,
    /// so a polling GET carries every packet the inputs so far produced).
    fn poll_output(&mut self) -> net::Output {
        if let Some(output) = self.out.pop_front() {
            return output;
        }
        match self.sio.poll_output() {
            Some(output) => output,
            None => net::Output::Idle(self.poll_timeout()),
        }
    }
}

/// The metrics label of a command.
fn store_kind(command: &StoreCommand) -> StoreKind {
    match command {
        StoreCommand::Connect { .. } => StoreKind::Connect,
        StoreCommand::Disconnect { .. } => StoreKind::Disconnect,
        StoreCommand::ResolveGroups { .. } => StoreKind::ResolveGroups,
        StoreCommand::Enqueue { .. } => StoreKind::Enqueue,
        StoreCommand::Ack { .. } => StoreKind::Ack,
        StoreCommand::AckBatch { .. } => StoreKind::AckBatch,
        StoreCommand::ForgetGroupMember { .. } => StoreKind::ForgetGroupMember,
        StoreCommand::CheckEpoch { .. } => StoreKind::CheckEpoch,
        StoreCommand::NextBatch { .. } => StoreKind::NextBatch,
    }
}
