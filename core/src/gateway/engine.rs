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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::clients::Clients;
use super::config::Config;
use super::dispatch::PendingSend;
use super::flake::FlakeGenerator;
use super::recovery::EpochWatch;
use super::status::{Counters, SiteTotals};
use super::store::{StoreCommand, StoreResult};
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
        via_groups: Option<Vec<String>>,
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
    /// `Connect` of a device the store lost, registering it again (no `_batch`: the store had
    /// nothing queued for it).
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
    pub(super) sends: HashMap<RequestId, PendingSend>,
    /// `io.path` with its trailing slash, for the client bundle.
    pub(super) io_path_slash: String,
    /// What the status page (and any metrics) report; see [`super::status`].
    pub(super) counters: Counters,
    /// The instant of the first input, for the uptime.
    pub(super) started: Option<Instant>,
    /// What the gateway knows of the store's epoch.
    pub(super) epoch: EpochWatch,
    clock: Option<WallClock>,
    /// The Socket.IO layer's next deadline, as of its last idle.
    sio_deadline: Option<Instant>,
    out: VecDeque<net::Output>,
    next_store: u64,
    next_call: u64,
    /// Store commands in flight with their deadlines. Ids are issued in time order and every
    /// command gets the same [`STORE_TIMEOUT`], so the first entry has the earliest deadline;
    /// an answered command leaves no trace.
    store_waits: BTreeMap<StoreCmdId, (Instant, StoreWait)>,
    /// Calls in flight with their deadlines (also indexed by deadline, as timeouts differ per
    /// site).
    call_waits: HashMap<CallId, (Instant, CallWait)>,
    call_deadlines: BTreeSet<(Instant, CallId)>,
}

impl Gateway {
    /// A gateway for `config`. Nothing happens until the first input.
    pub fn new(config: Config, options: GatewayOptions) -> Gateway {
        let sio = sio::Server::new(super::io_config::sio_config(&config.io), options.seed);
        let flake = FlakeGenerator::new(config.flake);
        let io_path_slash = format!("{}/", config.io.path);
        let counters = Counters::for_sites(config.sites.iter().map(|site| site.name.as_str()));
        Gateway {
            config,
            sio,
            options,
            flake,
            clients: Clients::default(),
            sends: HashMap::new(),
            io_path_slash,
            counters,
            started: None,
            epoch: EpochWatch::default(),
            clock: None,
            sio_deadline: None,
            out: VecDeque::new(),
            next_store: 0,
            next_call: 0,
            store_waits: BTreeMap::new(),
            call_waits: HashMap::new(),
            call_deadlines: BTreeSet::new(),
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

    /// The gateway's counters (the same ones `/status.json` reports).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts something for a configured site (other names are not counted).
    pub(super) fn count(&mut self, site: &str, what: impl FnOnce(&mut SiteTotals)) {
        if let Some(totals) = self.counters.site_mut(site) {
            what(totals);
        }
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

    /// Queues an application event (one log line).
    pub(super) fn event(&mut self, event: AppEvent) {
        self.out.push_back(net::Output::Event(event));
    }

    /// Emits a store command and remembers what its result is for.
    pub(super) fn store(&mut self, command: StoreCommand, wait: StoreWait, now: Instant) {
        self.next_store += 1;
        self.counters.store.commands += 1;
        let id = StoreCmdId(self.next_store);
        self.store_waits.insert(id, (now + STORE_TIMEOUT, wait));
        self.out.push_back(net::Output::Store(id, command));
    }

    /// Emits an outbound call with a deadline equal to its timeout.
    pub(super) fn call(&mut self, call: OutboundCall, wait: CallWait, now: Instant) -> CallId {
        self.next_call += 1;
        let id = CallId(self.next_call);
        let deadline = now + call.timeout;
        self.call_waits.insert(id, (deadline, wait));
        self.call_deadlines.insert((deadline, id));
        self.out.push_back(net::Output::Call(id, call));
        id
    }

    fn next_deadline(&self) -> Option<Instant> {
        let store = self.store_waits.first_key_value().map(|(_, (at, _))| *at);
        let call = self.call_deadlines.first().map(|(at, _)| *at);
        net::earliest(net::earliest(store, call), self.epoch_deadline())
    }

    fn expire_waits(&mut self, now: Instant) {
        while let Some(entry) = self.store_waits.first_entry() {
            if entry.get().0 > now {
                break;
            }
            let (_, wait) = entry.remove();
            self.counters.store.timeouts += 1;
            self.counters.store.failures += 1;
            self.counters.store.reachable = Some(false);
            let result = StoreResult::Failed("no answer from the store in time".to_owned());
            self.on_store_result(wait, result, now);
        }
        while let Some(&(at, id)) = self.call_deadlines.first() {
            if at > now {
                break;
            }
            self.call_deadlines.remove(&(at, id));
            if let Some((_, wait)) = self.call_waits.remove(&id) {
                let result = CallResult::Failed(net::CallFailure::Timeout);
                self.on_call_result(wait, &result, now);
            }
        }
    }

    fn on_store_result(&mut self, wait: StoreWait, result: StoreResult, now: Instant) {
        match wait {
            StoreWait::Connect { socket, device } => {
                self.on_device_connected(socket, device, result, now)
            }
            StoreWait::NextBatch { socket, device } => {
                self.on_next_piece(socket, device, result, now)
            }
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
            } => self.on_acked(socket, device, event, id, result, now),
            StoreWait::Epoch => self.on_epoch(result, now),
            StoreWait::Reregister { socket, device } => {
                self.on_reregistered(socket, device, result, now)
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

    fn on_call_result(&mut self, wait: CallWait, result: &CallResult, now: Instant) {
        match wait {
            CallWait::Auth { socket } => self.on_auth_result(socket, result, now),
            CallWait::UserUpdate { site, room } => self.on_user_updated(site, room, result),
        }
    }

    /// Moves everything the Socket.IO layer has to say into the output queue, handling its
    /// events at `now` (the instant of the input that caused them). Runs after every input, so
    /// the events' reactions (accepts, emits, store commands) carry the right time.
    fn pump(&mut self, now: Instant) {
        self.watch_epoch(now);
        loop {
            match self.sio.poll_output() {
                sio::Output::Io(output) => self.out.push_back(output),
                sio::Output::Event(event) => self.on_sio_event(event, now),
                sio::Output::Idle(deadline) => {
                    self.sio_deadline = deadline;
                    return;
                }
            }
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
        self.started.get_or_insert(now);
        // The first epoch check is due at once: the adapter's first idle wakes it.
        self.start_epoch_watch(now);
    }

    fn handle_http(&mut self, id: RequestId, request: HttpRequest, now: Instant) {
        self.route_http(id, request, now);
        self.pump(now);
    }

    fn handle_http_aborted(&mut self, id: RequestId, now: Instant) {
        // A `/send` whose caller left still completes: its store commands are already out.
        if !self.sends.contains_key(&id) {
            self.sio.handle_http_aborted(id, now);
        }
        self.pump(now);
    }

    fn handle_ws_frame(&mut self, conn: ConnId, frame: WsFrame, now: Instant) {
        self.sio.handle_ws_frame(conn, frame, now);
        self.pump(now);
    }

    fn handle_ws_closed(&mut self, conn: ConnId, now: Instant) {
        self.sio.handle_ws_closed(conn, now);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.expire_waits(now);
        self.sio.handle_timeout(now);
        self.pump(now);
    }

    fn handle_store_result(&mut self, id: StoreCmdId, result: StoreResult, now: Instant) {
        if let Some((_, wait)) = self.store_waits.remove(&id) {
            let failed = matches!(result, StoreResult::Failed(_));
            self.counters.store.failures += u64::from(failed);
            self.counters.store.reachable = Some(!failed);
            self.on_store_result(wait, result, now);
        }
        self.pump(now);
    }

    fn handle_call_result(&mut self, id: CallId, result: CallResult, now: Instant) {
        if let Some((deadline, wait)) = self.call_waits.remove(&id) {
            self.call_deadlines.remove(&(deadline, id));
            self.on_call_result(wait, &result, now);
        }
        self.pump(now);
    }

    fn handle_remote(&mut self, message: Bytes, now: Instant) {
        self.on_remote_message(&message, now);
        self.pump(now);
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
        self.pump(now);
    }

    fn poll_output(&mut self) -> net::Output {
        match self.out.pop_front() {
            Some(output) => output,
            None => net::Output::Idle(net::earliest(self.sio_deadline, self.next_deadline())),
        }
    }
}
