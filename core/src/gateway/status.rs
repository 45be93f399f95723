//! What the operator's status page shows: the gateway's counters and a point-in-time
//! [`StatusSnapshot`] of this node, serialised as `GET /status.json`.
//!
//! The counters ([`SiteTotals`], [`StoreTotals`]) are kept once, in the gateway's state, where
//! the decisions they count are made; anything that reports on the gateway (the status page, a
//! metrics endpoint) reads these same totals instead of counting again. Rates are not kept:
//! the page derives them from successive snapshots.
//!
//! A snapshot never carries a token, room, user, device, socket id, auth URL or API key: only
//! site names, counts and this node's facts. What the core cannot know (the runtime, process
//! memory and CPU) is left for the adapter to fill in ([`NodeStatus`]'s optional fields).

use std::collections::BTreeMap;

use serde::Serialize;

/// Everything `GET /status.json` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusSnapshot {
    /// Wall clock of the snapshot, Unix milliseconds.
    pub timestamp_ms: u64,
    /// This node.
    pub node: NodeStatus,
    /// The live nodes sharing the store (just this one without a cluster).
    pub nodes: Vec<NodeEntry>,
    /// Every configured site, in configuration order.
    pub sites: Vec<SiteStatus>,
    /// The store's counters.
    pub store: StoreStatus,
}

/// This node's facts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node id in hex (random per process; also names its sockets in a shared store).
    pub id: String,
    /// The async runtime (`tokio` or `smol`); the adapter fills it in.
    pub runtime: String,
    /// The crate version; the adapter fills it in.
    pub version: String,
    /// Seconds since the gateway's first input.
    pub uptime_seconds: u64,
    /// Whether the node can serve.
    pub ready: bool,
    /// `memory` or `redis`.
    pub store: &'static str,
    /// Resident memory of the process, when the adapter can tell.
    pub resident_bytes: Option<u64>,
    /// CPU time of the process (user + system), when the adapter can tell.
    pub cpu_seconds: Option<f64>,
}

/// One live node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEntry {
    /// Its node id in hex.
    pub id: String,
    /// Whether it is the node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// When it last said it was alive, Unix milliseconds.
    pub last_heartbeat_ms: u64,
}

/// One site's connections and totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    /// The site name (its namespace without the `/`).
    pub name: String,
    /// Admitted sockets by transport and protocol.
    pub connections: Connections,
    /// Counters since the process started.
    pub totals: SiteTotals,
}

/// Admitted sockets by transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Connections {
    /// Still on HTTP long polling.
    pub polling: ByProtocol,
    /// On a WebSocket (directly or upgraded).
    pub websocket: ByProtocol,
}

/// Sockets by Engine.IO protocol revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByProtocol {
    /// Engine.IO 3 (socket.io-client 1.x/2.x, python-socketio 4).
    pub eio3: u64,
    /// Engine.IO 4 (socket.io-client 3.x/4.x, python-socketio 5).
    pub eio4: u64,
}

/// A site's counters since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteTotals {
    /// Accepted `/send` requests.
    pub sends: u64,
    /// Messages emitted to a socket of this node as they were sent.
    pub deliveries_live: u64,
    /// Messages stored for a disconnected device, to come in its next `_batch`.
    pub deliveries_queued: u64,
    /// Devices handed to another node for a live emit.
    pub deliveries_remote: u64,
    /// Client acknowledgements of a live message or a `_batch`.
    pub acks: u64,
    /// `_batch` events emitted.
    pub batches: u64,
    /// Messages carried by those `_batch` events.
    pub batch_messages: u64,
    /// `_resync` events emitted.
    pub resyncs: u64,
    /// Namespace connections refused by the site's auth.
    pub auth_failures: u64,
}

/// The store's counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// Commands issued.
    pub commands: u64,
    /// Commands that failed (including timeouts).
    pub failures: u64,
    /// Commands given up after the store's deadline.
    pub timeouts: u64,
    /// Whether the store answered its latest command, `None` before any.
    pub reachable: Option<bool>,
    /// Command latency, `None` until measured.
    pub latency_ms: Option<Latency>,
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// The store's counters as the gateway keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Commands issued.
    pub commands: u64,
    /// Commands that failed (including timeouts).
    pub failures: u64,
    /// Commands given up after the deadline.
    pub timeouts: u64,
    /// Whether the latest answered command succeeded.
    pub reachable: Option<bool>,
}

/// Every counter of the gateway: per site, and the store's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    sites: BTreeMap<String, SiteTotals>,
    /// The store's counters.
    pub store: StoreTotals,
}

impl Counters {
    /// Counters for these sites, all zero.
    pub fn for_sites<'a>(sites: impl IntoIterator<Item = &'a str>) -> Counters {
        Counters {
            sites: sites
                .into_iter()
                .map(|name| (name.to_owned(), SiteTotals::default()))
                .collect(),
            store: StoreTotals::default(),
        }
    }

    /// The totals of a configured site (`None` for any other name).
    pub fn site_mut(&mut self, site: &str) -> Option<&mut SiteTotals> {
        self.sites.get_mut(site)
    }

    /// The totals of `site` (zero when it is not configured).
    pub fn site(&self, site: &str) -> SiteTotals {
        self.sites.get(site).copied().unwrap_or_default()
    }
}

/// Node ids are shown as 16 hex digits, as in the cluster's messages.
pub fn node_id_hex(node_id: u64) -> String {
    format!("{node_id:016x}")
}
