//! Counters the core keeps about what it did, for `/metrics` and `/status.json`.
//!
//! Why in the core's own state rather than fed from its events: every counted fact (a join's
//! outcome, a delivery's path, a store command's kind and duration) is known exactly where the
//! core decides it, so a plain `u64` increment there is the cheapest and the only place that
//! cannot disagree with the behaviour. Nothing here reads a clock: durations are differences
//! of the `now` values the inputs carried. The adapter reads a [`Snapshot`] when it is scraped
//! and formats it; the core knows nothing of the exposition format.
//!
//! Labels are closed sets (sites are configured, everything else is an enum here), so no label
//! ever carries a room, user, device, token or socket id.

use std::time::Duration;

/// Upper bounds (seconds) of the duration histograms: 0.5 ms to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the `_batch` size histogram (messages per batch).
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];

/// A histogram with fixed bucket bounds: per-bucket counts (not cumulative), sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, ascending; an observation above the last goes to `+Inf` only.
    pub bounds: &'static [f64],
    /// `counts[i]` observations `<= bounds[i]` and `> bounds[i-1]`; one more slot for `+Inf`.
    pub counts: Vec<u64>,
    /// Sum of every observation.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value.
    pub fn observe(&mut self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&mut self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// Adds `other`'s observations (same bounds) to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (count, more) in self.counts.iter_mut().zip(&other.counts) {
            *count += more;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The value under which `quantile` (0..=1) of the observations fall, as the upper bound of
    /// the bucket that holds it (0 when empty; the last bound when it is in `+Inf`).
    pub fn quantile_bound(&self, quantile: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let wanted = (quantile * self.count as f64).ceil().max(1.0) as u64;
        let mut total = 0;
        for (slot, count) in self.counts.iter().enumerate() {
            total += count;
            if total >= wanted {
                return self
                    .bounds
                    .get(slot)
                    .or(self.bounds.last())
                    .copied()
                    .unwrap_or(0.0);
            }
        }
        self.bounds.last().copied().unwrap_or(0.0)
    }
}

/// How a namespace join ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Admitted.
    Admitted,
    /// The site's backend said no (401, or an answer that names no room the site accepts).
    AuthRefused,
    /// The auth call failed (connection, non-200/401 status, unreadable answer).
    AuthError,
    /// The auth call took longer than `httpTimeout`.
    AuthTimeout,
}

impl JoinOutcome {
    /// Every outcome, in label order.
    pub const ALL: [JoinOutcome; 4] = [
        JoinOutcome::Admitted,
        JoinOutcome::AuthRefused,
        JoinOutcome::AuthError,
        JoinOutcome::AuthTimeout,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            JoinOutcome::Admitted => "admitted",
            JoinOutcome::AuthRefused => "auth_refused",
            JoinOutcome::AuthError => "auth_error",
            JoinOutcome::AuthTimeout => "auth_timeout",
        }
    }
}

/// Which way a `/send` reached one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryPath {
    /// Emitted to a socket of this node (also when another node asked for it).
    Live,
    /// Stored for a disconnected device: it comes with the device's next `_batch`.
    Queued,
    /// Handed to the node that holds the device's socket, through the cluster bus.
    Remote,
}

impl DeliveryPath {
    /// Every path, in label order.
    pub const ALL: [DeliveryPath; 3] = [
        DeliveryPath::Live,
        DeliveryPath::Queued,
        DeliveryPath::Remote,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DeliveryPath::Live => "live",
            DeliveryPath::Queued => "queued",
            DeliveryPath::Remote => "remote",
        }
    }
}

/// The kind of a store command (the label of the store metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `Connect`.
    Connect,
    /// `Disconnect`.
    Disconnect,
    /// `ResolveGroups`.
    ResolveGroups,
    /// `Enqueue`.
    Enqueue,
    /// `Ack`.
    Ack,
    /// `AckBatch`.
    AckBatch,
    /// `ForgetGroupMember`.
    ForgetGroupMember,
    /// `CheckEpoch`.
    CheckEpoch,
    /// `NextBatch`.
    NextBatch,
}

impl StoreKind {
    /// Every kind, in label order.
    pub const ALL: [StoreKind; 9] = [
        StoreKind::Connect,
        StoreKind::Disconnect,
        StoreKind::ResolveGroups,
        StoreKind::Enqueue,
        StoreKind::Ack,
        StoreKind::AckBatch,
        StoreKind::ForgetGroupMember,
        StoreKind::CheckEpoch,
        StoreKind::NextBatch,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            StoreKind::Connect => "connect",
            StoreKind::Disconnect => "disconnect",
            StoreKind::ResolveGroups => "resolve_groups",
            StoreKind::Enqueue => "enqueue",
            StoreKind::Ack => "ack",
            StoreKind::AckBatch => "ack_batch",
            StoreKind::ForgetGroupMember => "forget_group_member",
            StoreKind::CheckEpoch => "check_epoch",
            StoreKind::NextBatch => "next_batch",
        }
    }
}

/// How a store command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The store answered with a result.
    Ok,
    /// The store reported a failure.
    Failed,
    /// No answer within the store timeout.
    Timeout,
}

impl StoreOutcome {
    /// Every outcome, in label order.
    pub const ALL: [StoreOutcome; 3] = [
        StoreOutcome::Ok,
        StoreOutcome::Failed,
        StoreOutcome::Timeout,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            StoreOutcome::Ok => "ok",
            StoreOutcome::Failed => "failed",
            StoreOutcome::Timeout => "timeout",
        }
    }
}

/// Counters of one configured site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteCounters {
    /// The site's name (its namespace without `/`).
    pub name: String,
    /// Joins by [`JoinOutcome`] (indexed like [`JoinOutcome::ALL`]).
    pub joins: [u64; 4],
    /// `/send` answers by status code, ascending.
    pub sends: Vec<(u16, u64)>,
    /// Deliveries by [`DeliveryPath`] (indexed like [`DeliveryPath::ALL`]).
    pub deliveries: [u64; 3],
    /// Acknowledgements of live deliveries received.
    pub acks: u64,
    /// `_batch` events sent.
    pub batches: u64,
    /// Messages carried by those `_batch` events.
    pub batch_messages: u64,
    /// `_batch` sizes.
    pub batch_size: Histogram,
    /// `_resync` events sent.
    pub resyncs: u64,
    /// Auth call durations (seconds).
    pub auth_duration: Histogram,
    /// `updateUserUrl` call durations (seconds).
    pub user_update_duration: Histogram,
}

impl SiteCounters {
    /// Zeroed counters for site `name`.
    pub fn new(name: String) -> SiteCounters {
        SiteCounters {
            name,
            joins: [0; 4],
            sends: Vec::new(),
            deliveries: [0; 3],
            acks: 0,
            batches: 0,
            batch_messages: 0,
            batch_size: Histogram::new(BATCH_SIZE_BUCKETS),
            resyncs: 0,
            auth_duration: Histogram::new(DURATION_BUCKETS),
            user_update_duration: Histogram::new(DURATION_BUCKETS),
        }
    }

    /// Deliveries by `path` so far.
    pub fn deliveries_by(&self, path: DeliveryPath) -> u64 {
        let index = DeliveryPath::ALL
            .iter()
            .position(|p| *p == path)
            .unwrap_or(0);
        self.deliveries[index]
    }

    /// Joins that ended with `outcome` so far.
    pub fn joins_by(&self, outcome: JoinOutcome) -> u64 {
        let index = JoinOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.joins[index]
    }

    /// Counts `n` deliveries by `path`.
    pub(crate) fn delivered(&mut self, path: DeliveryPath, n: u64) {
        let index = DeliveryPath::ALL
            .iter()
            .position(|p| *p == path)
            .unwrap_or(0);
        self.deliveries[index] += n;
    }

    pub(crate) fn count_send(&mut self, status: u16) {
        add_sorted(&mut self.sends, status, 1);
    }
}

/// Counters of one store command kind.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreCounters {
    /// Commands by [`StoreOutcome`] (indexed like [`StoreOutcome::ALL`]).
    pub outcomes: [u64; 3],
    /// Time from emitting the command to its result (seconds), whatever the outcome.
    pub duration: Histogram,
}

impl Default for StoreCounters {
    fn default() -> Self {
        StoreCounters {
            outcomes: [0; 3],
            duration: Histogram::new(DURATION_BUCKETS),
        }
    }
}

/// Engine.IO counters: sessions opened and closed, handshakes refused, polling traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Sessions opened (successful handshakes).
    pub opened: u64,
    /// Sessions closed, by reason (the Engine.IO close reasons), in first-seen order.
    pub closed: Vec<(&'static str, u64)>,
    /// Handshakes refused because `io.maxConnections` sessions were open.
    pub refused_max_connections: u64,
    /// Handshakes refused because `io.maxHandshakesPerSecond` was reached.
    pub refused_handshake_rate: u64,
    /// Polling sessions closed because their client did not fetch (slow consumers).
    pub slow_consumers: u64,
    /// Polling requests received (POST bodies: packets in).
    pub polling_in_requests: u64,
    /// Bytes of those bodies.
    pub polling_in_bytes: u64,
    /// Polling payloads sent (GET answers: packets out).
    pub polling_out_requests: u64,
    /// Bytes of those payloads.
    pub polling_out_bytes: u64,
}

impl EngineCounters {
    pub(crate) fn count_close(&mut self, reason: &'static str) {
        add_in_order(&mut self.closed, reason, 1);
    }

    /// Sessions closed with `reason`.
    pub fn closed_with(&self, reason: &str) -> u64 {
        self.closed
            .iter()
            .find(|(known, _)| *known == reason)
            .map_or(0, |(_, count)| *count)
    }
}

/// Open connections of one site by transport and protocol (a gauge computed when read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenConnections {
    /// Polling, Engine.IO 3.
    pub polling_eio3: u64,
    /// Polling, Engine.IO 4.
    pub polling_eio4: u64,
    /// WebSocket, Engine.IO 3.
    pub websocket_eio3: u64,
    /// WebSocket, Engine.IO 4.
    pub websocket_eio4: u64,
}

impl OpenConnections {
    /// Counts one connection.
    pub fn add(&mut self, websocket: bool, eio3: bool) {
        match (websocket, eio3) {
            (false, true) => self.polling_eio3 += 1,
            (false, false) => self.polling_eio4 += 1,
            (true, true) => self.websocket_eio3 += 1,
            (true, false) => self.websocket_eio4 += 1,
        }
    }
}

/// Everything the core counts, as of one instant. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Per configured site, in configuration order.
    pub sites: Vec<SiteCounters>,
    /// Admitted sockets per site (same order as `sites`).
    pub open: Vec<OpenConnections>,
    /// `/send` requests that named no configured site, by status code.
    pub sends_unknown_site: Vec<(u16, u64)>,
    /// Store commands by kind (indexed like [`StoreKind::ALL`]).
    pub store: Vec<StoreCounters>,
    /// Engine.IO sessions open now.
    pub engine_sessions: u64,
    /// Engine.IO counters.
    pub engine: EngineCounters,
    /// Cluster messages received that could not be decoded.
    pub remote_malformed: u64,
}

/// Adds `n` to `key`'s count in `counts`, which is kept sorted by key.
fn add_sorted<K: Ord + Copy>(counts: &mut Vec<(K, u64)>, key: K, n: u64) {
    match counts.binary_search_by_key(&key, |(known, _)| *known) {
        Ok(slot) => counts[slot].1 += n,
        Err(slot) => counts.insert(slot, (key, n)),
    }
}

/// Adds `n` to `key`'s count in `counts`, which keeps the order keys were first counted in.
fn add_in_order<K: PartialEq + Copy>(counts: &mut Vec<(K, u64)>, key: K, n: u64) {
    match counts.iter_mut().find(|(known, _)| *known == key) {
        Some((_, total)) => *total += n,
        None => counts.push((key, n)),
    }
}

impl SiteCounters {
    /// Adds another gateway's counters of the same site.
    pub fn merge(&mut self, other: &SiteCounters) {
        for (total, more) in self.joins.iter_mut().zip(other.joins) {
            *total += more;
        }
        for &(status, count) in &other.sends {
            add_sorted(&mut self.sends, status, count);
        }
        for (total, more) in self.deliveries.iter_mut().zip(other.deliveries) {
            *total += more;
        }
        self.acks += other.acks;
        self.batches += other.batches;
        self.batch_messages += other.batch_messages;
        self.batch_size.merge(&other.batch_size);
        self.resyncs += other.resyncs;
        self.auth_duration.merge(&other.auth_duration);
        self.user_update_duration.merge(&other.user_update_duration);
    }
}

impl Snapshot {
    /// Adds the snapshot of another gateway of the same configuration (another engine of the
    /// same process): every counter and histogram is summed, so a process running several
    /// engines reports one set of figures, as one engine would.
    pub fn merge(&mut self, other: &Snapshot) {
        for (site, more) in self.sites.iter_mut().zip(&other.sites) {
            site.merge(more);
        }
        for (open, more) in self.open.iter_mut().zip(&other.open) {
            open.polling_eio3 += more.polling_eio3;
            open.polling_eio4 += more.polling_eio4;
            open.websocket_eio3 += more.websocket_eio3;
            open.websocket_eio4 += more.websocket_eio4;
        }
        for &(status, count) in &other.sends_unknown_site {
            add_sorted(&mut self.sends_unknown_site, status, count);
        }
        for (store, more) in self.store.iter_mut().zip(&other.store) {
            for (total, count) in store.outcomes.iter_mut().zip(more.outcomes) {
                *total += count;
            }
            store.duration.merge(&more.duration);
        }
        self.engine_sessions += other.engine_sessions;
        let (engine, more) = (&mut self.engine, &other.engine);
        engine.opened += more.opened;
        for &(reason, count) in &more.closed {
            add_in_order(&mut engine.closed, reason, count);
        }
        engine.refused_max_connections += more.refused_max_connections;
        engine.refused_handshake_rate += more.refused_handshake_rate;
        engine.slow_consumers += more.slow_consumers;
        engine.polling_in_requests += more.polling_in_requests;
        engine.polling_in_bytes += more.polling_in_bytes;
        engine.polling_out_requests += more.polling_out_requests;
        engine.polling_out_bytes += more.polling_out_bytes;
        self.remote_malformed += other.remote_malformed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(acks: u64, status: u16, closed: &'static str) -> Snapshot {
        let mut site = SiteCounters::new("s".to_owned());
        site.acks = acks;
        site.count_send(status);
        site.batch_size.observe(3.0);
        let mut engine = EngineCounters {
            opened: 2,
            ..EngineCounters::default()
        };
        engine.count_close(closed);
        let mut open = OpenConnections::default();
        open.add(true, false);
        Snapshot {
            sites: vec![site],
            open: vec![open],
            sends_unknown_site: vec![(status, 1)],
            store: vec![StoreCounters::default()],
            engine_sessions: 1,
            engine,
            remote_malformed: 1,
        }
    }

    #[test]
    fn merging_sums_every_counter() {
        let mut total = snapshot(2, 200, "ping timeout");
        total.merge(&snapshot(5, 401, "transport close"));
        let site = &total.sites[0];
        assert_eq!(site.acks, 7);
        assert_eq!(site.sends, vec![(200, 1), (401, 1)]);
        assert_eq!((site.batch_size.count, site.batch_size.sum), (2, 6.0));
        assert_eq!(total.open[0].websocket_eio4, 2);
        assert_eq!(total.sends_unknown_site, vec![(200, 1), (401, 1)]);
        assert_eq!(total.engine_sessions, 2);
        assert_eq!(total.engine.opened, 4);
        assert_eq!(total.engine.closed_with("ping timeout"), 1);
        assert_eq!(total.engine.closed_with("transport close"), 1);
        assert_eq!(total.remote_malformed, 2);
    }
}
