//! What an operator asks a running node: `/metrics` (Prometheus text) and `/readyz`.
//!
//! The counters of the gateway's decisions live in the core ([`courier_core::metrics`]); the
//! driver hands a copy of them to the HTTP task that asks ([`crate::driver::Input::Metrics`]),
//! which formats them here together with what only the I/O layer sees ([`Ops`]: WebSocket
//! traffic, the cluster bus, Redis reachability, readiness) and the process's own figures read
//! from `/proc`. The exposition format is `prometheus-client`'s; nothing here writes it by hand.
//! Labels are closed sets: configured sites, transports, protocols, reasons, kinds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use courier_core::metrics::{
    DeliveryPath, Histogram, JoinOutcome, OpenConnections, Snapshot, StoreKind, StoreOutcome,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The content type of `/metrics` (prometheus-client writes OpenMetrics text).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One node as this node last read it from the node registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSeen {
    /// The node id.
    pub id: u64,
    /// Its last heartbeat (Unix ms).
    pub last_heartbeat_ms: u64,
    /// Its heartbeat has not expired.
    pub live: bool,
}

/// What the I/O layer knows about the node: shared by the driver, the HTTP tasks, the store
/// executor, the cluster bus and the heartbeat. Plain atomics: each is written by one task.
#[derive(Debug)]
pub struct Ops {
    /// `tokio` or `smol`.
    pub runtime: &'static str,
    /// This node's id (with several engines, the first engine's).
    pub node_id: u64,
    /// The node ids of every engine of this process (`io.engines`), `node_id` first.
    pub engine_nodes: Vec<u64>,
    /// When the process started serving.
    pub started: Instant,
    /// Redis is configured (readiness then depends on it).
    pub redis: bool,
    /// The last Redis round trip worked.
    pub store_reachable: AtomicBool,
    /// The cluster bus subscription is up.
    pub bus_subscribed: AtomicBool,
    /// A shutdown has begun.
    pub draining: AtomicBool,
    /// Cluster messages handed to the publisher.
    pub bus_published: AtomicU64,
    /// Cluster messages of other nodes received.
    pub bus_received: AtomicU64,
    /// Cluster messages dropped (publisher backlog full, or the publish failed).
    pub bus_dropped: AtomicU64,
    /// WebSocket frames received.
    pub ws_frames_in: AtomicU64,
    /// Bytes of those frames.
    pub ws_bytes_in: AtomicU64,
    /// WebSocket frames queued for sending.
    pub ws_frames_out: AtomicU64,
    /// Bytes of those frames.
    pub ws_bytes_out: AtomicU64,
    /// WebSockets closed because their peer did not read (slow consumers).
    pub ws_slow_consumers: AtomicU64,
    /// Heartbeats that could not be written.
    pub heartbeat_failures: AtomicU64,
    /// Nanoseconds the driver spent busy: feeding inputs to the engine, draining its outputs
    /// and carrying them out (not waiting). Its rate near 1 s/s means the one driver is the
    /// node's ceiling.
    pub driver_busy_nanos: AtomicU64,
    /// CPU nanoseconds of those busy spells (the thread's clock): less than the busy time when
    /// other threads or processes take the core meanwhile.
    pub driver_cpu_nanos: AtomicU64,
    /// The nodes of the registry as last read (just this one without Redis).
    pub nodes: Mutex<Vec<NodeSeen>>,
    /// Why the store refuses commands although Redis answers (it holds another layout).
    pub store_refusal: Mutex<Option<String>>,
}

impl Ops {
    /// The state of a node that started at `started` (the runtime's clock).
    pub fn new(runtime: &'static str, node_id: u64, redis: bool, started: Instant) -> Ops {
        Ops::with_engines(runtime, vec![node_id], redis, started)
    }

    /// The state of a process that started at `started` with one engine per node id of
    /// `engine_nodes` (at least one).
    pub fn with_engines(
        runtime: &'static str,
        engine_nodes: Vec<u64>,
        redis: bool,
        started: Instant,
    ) -> Ops {
        Ops {
            runtime,
            node_id: engine_nodes.first().copied().unwrap_or(0),
            engine_nodes,
            started,
            redis,
            store_reachable: AtomicBool::new(!redis),
            bus_subscribed: AtomicBool::new(!redis),
            draining: AtomicBool::new(false),
            bus_published: AtomicU64::new(0),
            bus_received: AtomicU64::new(0),
            bus_dropped: AtomicU64::new(0),
            ws_frames_in: AtomicU64::new(0),
            ws_bytes_in: AtomicU64::new(0),
            ws_frames_out: AtomicU64::new(0),
            ws_bytes_out: AtomicU64::new(0),
            ws_slow_consumers: AtomicU64::new(0),
            heartbeat_failures: AtomicU64::new(0),
            driver_busy_nanos: AtomicU64::new(0),
            driver_cpu_nanos: AtomicU64::new(0),
            nodes: Mutex::new(Vec::new()),
            store_refusal: Mutex::new(None),
        }
    }

    /// Adds `n` to a counter (relaxed: counters need no ordering with anything else).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether the node can serve, and if not, why (the body of a `503` from `/readyz`).
    pub fn readiness(&self) -> Result<(), std::borrow::Cow<'static, str>> {
        if self.draining.load(Ordering::Acquire) {
            return Err("draining".into());
        }
        if self.redis && !self.store_reachable.load(Ordering::Acquire) {
            return Err("redis unreachable".into());
        }
        if let Some(refusal) = self
            .store_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return Err(format!("redis store refused: {refusal}").into());
        }
        if self.redis && !self.bus_subscribed.load(Ordering::Acquire) {
            return Err("cluster bus not subscribed".into());
        }
        Ok(())
    }

    /// Records why the store refuses commands (`None`: it does not).
    pub fn set_store_refusal(&self, refusal: Option<String>) {
        *self
            .store_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = refusal;
    }

    /// The registry as last read.
    pub fn nodes(&self) -> Vec<NodeSeen> {
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a reading of the registry.
    pub fn set_nodes(&self, nodes: Vec<NodeSeen>) {
        *self.nodes.lock().unwrap_or_else(PoisonError::into_inner) = nodes;
    }
}

/// One pass of the driver, from its first input to its last output carried: what it adds to
/// `driver_busy_nanos` (wall clock) and `driver_cpu_nanos` (the thread's CPU clock; a pass runs
/// on one thread, never across an await).
#[derive(Debug)]
pub struct DriverPass {
    started: Instant,
    cpu_started: u64,
}

impl DriverPass {
    /// The pass begins at `now`.
    pub fn start(now: Instant) -> DriverPass {
        DriverPass {
            started: now,
            cpu_started: thread_cpu_nanos(),
        }
    }

    /// When the pass began (the instant its inputs are fed at).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The pass is over at `now`: its time is counted.
    pub fn finish(self, now: Instant, ops: &Ops) {
        let busy = u64::try_from(now.saturating_duration_since(self.started).as_nanos())
            .unwrap_or(u64::MAX);
        Ops::add(&ops.driver_busy_nanos, busy);
        Ops::add(
            &ops.driver_cpu_nanos,
            thread_cpu_nanos().saturating_sub(self.cpu_started),
        );
    }
}

/// CPU time the calling thread has used, in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(time.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(time.tv_nsec).unwrap_or(0))
}

/// The process's own figures, from `/proc/self` (zero where it is not readable, e.g. not
/// Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
}

impl ProcessStats {
    /// This process's, now (zeros where unreadable).
    pub fn read() -> ProcessStats {
        ProcessStats::of("self").unwrap_or_default()
    }

    /// Process `process`'s (`self` or a pid), now; an error names the file that could not be
    /// read. (The benchmark reads the gateway's with it.)
    pub fn of(process: &str) -> std::result::Result<ProcessStats, String> {
        let read = |file: &str| {
            let path = format!("/proc/{process}/{file}");
            std::fs::read_to_string(&path)
                .map_err(|error| format!("cannot read {path}: {error}"))
                .map(|text| (path, text))
        };
        let (path, status) = read("status")?;
        let resident_bytes = vm_rss_bytes(&status).ok_or(format!("{path} has no VmRSS line"))?;
        let (path, stat) = read("stat")?;
        let cpu_seconds = cpu_seconds(&stat).ok_or(format!("{path} is not a stat line"))?;
        let open_fds = std::fs::read_dir(format!("/proc/{process}/fd"))
            .map_or(0, |entries| u64::try_from(entries.count()).unwrap_or(0));
        Ok(ProcessStats {
            resident_bytes,
            cpu_seconds,
            open_fds,
        })
    }
}

/// `VmRSS` in bytes from the text of a Linux `/proc/<pid>/status`.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let kib = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
        kib.trim().parse::<u64>().ok().map(|kib| kib * 1024)
    })
}

/// User + system CPU seconds from the text of a Linux `/proc/<pid>/stat` (times are in
/// USER_HZ ticks, fixed at 100 by the kernel ABI).
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    // The fields after the command name, which may itself contain spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// The `/metrics` text for a scrape at `now`.
pub fn render(snapshot: Option<Snapshot>, ops: &Ops, now: Instant) -> String {
    let scrape = Scrape {
        snapshot,
        io: IoFigures::read(ops, now),
        process: ProcessStats::read(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// The I/O figures of one scrape, read once.
#[derive(Debug, Clone)]
struct IoFigures {
    runtime: &'static str,
    uptime_seconds: f64,
    ready: bool,
    redis: bool,
    store_reachable: bool,
    bus_subscribed: bool,
    bus: [u64; 3],
    ws: [u64; 4],
    ws_slow_consumers: u64,
    heartbeat_failures: u64,
    driver_busy_seconds: f64,
    driver_cpu_seconds: f64,
    nodes_live: u64,
    nodes_dead: u64,
}

impl IoFigures {
    fn read(ops: &Ops, now: Instant) -> IoFigures {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let nodes = ops.nodes();
        let live = nodes.iter().filter(|node| node.live).count();
        IoFigures {
            runtime: ops.runtime,
            uptime_seconds: now.saturating_duration_since(ops.started).as_secs_f64(),
            ready: ops.readiness().is_ok(),
            redis: ops.redis,
            store_reachable: ops.store_reachable.load(Ordering::Acquire),
            bus_subscribed: ops.bus_subscribed.load(Ordering::Acquire),
            bus: [
                get(&ops.bus_published),
                get(&ops.bus_received),
                get(&ops.bus_dropped),
            ],
            ws: [
                get(&ops.ws_frames_in),
                get(&ops.ws_bytes_in),
                get(&ops.ws_frames_out),
                get(&ops.ws_bytes_out),
            ],
            ws_slow_consumers: get(&ops.ws_slow_consumers),
            heartbeat_failures: get(&ops.heartbeat_failures),
            driver_busy_seconds: get(&ops.driver_busy_nanos) as f64 / 1e9,
            driver_cpu_seconds: get(&ops.driver_cpu_nanos) as f64 / 1e9,
            nodes_live: u64::try_from(live).unwrap_or(0),
            nodes_dead: u64::try_from(nodes.len() - live).unwrap_or(0),
        }
    }
}

/// One scrape's data as a prometheus-client collector.
#[derive(Debug)]
struct Scrape {
    snapshot: Option<Snapshot>,
    io: IoFigures,
    process: ProcessStats,
}

type Encoded = std::result::Result<(), std::fmt::Error>;

/// Writes one metric family.
fn family<'a>(
    encoder: &'a mut DescriptorEncoder<'_>,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> std::result::Result<MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

fn counter(metric: &mut MetricEncoder<'_>, labels: &[(&str, &str)], value: u64) -> Encoded {
    ConstCounter::new(value).encode(metric.encode_family(&labels)?)
}

/// A family with one unlabelled counter.
fn single_counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Encoded {
    ConstCounter::new(value).encode(family(e, name, help, MetricType::Counter)?)
}

/// A family with one unlabelled gauge.
fn single_gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> Encoded {
    ConstGauge::new(value).encode(family(e, name, help, MetricType::Gauge)?)
}

fn gauge(metric: &mut MetricEncoder<'_>, labels: &[(&str, &str)], value: i64) -> Encoded {
    ConstGauge::new(value).encode(metric.encode_family(&labels)?)
}

fn histogram(metric: &mut MetricEncoder<'_>, labels: &[(&str, &str)], h: &Histogram) -> Encoded {
    let mut buckets: Vec<(f64, u64)> = h
        .bounds
        .iter()
        .copied()
        .zip(h.counts.iter().copied())
        .collect();
    buckets.push((f64::MAX, h.counts.last().copied().unwrap_or(0)));
    metric
        .encode_family(&labels)?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum, h.count, &buckets, None)
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Encoded {
        let e = &mut encoder;
        let io = &self.io;
        let version = env!("CARGO_PKG_VERSION");

        let mut m = family(
            e,
            "courier_build",
            "Build information: version and runtime.",
            MetricType::Info,
        )?;
        m.encode_info(&[("version", version), ("runtime", io.runtime)])?;
        single_gauge(
            e,
            "courier_ready",
            "1 when /readyz answers 200.",
            i64::from(io.ready),
        )?;
        let m = family(
            e,
            "courier_uptime_seconds",
            "Seconds since the node started.",
            MetricType::Gauge,
        )?;
        ConstGauge::new(io.uptime_seconds).encode(m)?;

        self.encode_process(e)?;
        if let Some(snapshot) = &self.snapshot {
            encode_connections(e, snapshot)?;
            encode_sites(e, snapshot)?;
            encode_store(e, snapshot)?;
        }
        self.encode_transport(e)?;
        self.encode_cluster(e)?;
        Ok(())
    }
}

impl Scrape {
    fn encode_process(&self, e: &mut DescriptorEncoder<'_>) -> Encoded {
        let p = &self.process;
        single_gauge(
            e,
            "courier_process_resident_memory_bytes",
            "Resident memory of the process.",
            gauge_value(p.resident_bytes),
        )?;
        let m = family(
            e,
            "courier_process_cpu_seconds",
            "User and system CPU time of the process.",
            MetricType::Counter,
        )?;
        ConstCounter::new(p.cpu_seconds).encode(m)?;
        single_gauge(
            e,
            "courier_process_open_fds",
            "Open file descriptors of the process.",
            gauge_value(p.open_fds),
        )?;
        let m = family(
            e,
            "courier_driver_busy_seconds",
            "Time the driver spent feeding the engine and carrying out its outputs (not waiting).",
            MetricType::Counter,
        )?;
        ConstCounter::new(self.io.driver_busy_seconds).encode(m)?;
        let m = family(
            e,
            "courier_driver_cpu_seconds",
            "CPU time of the driver's busy spells (its thread's clock).",
            MetricType::Counter,
        )?;
        ConstCounter::new(self.io.driver_cpu_seconds).encode(m)
    }

    fn encode_transport(&self, e: &mut DescriptorEncoder<'_>) -> Encoded {
        let io = &self.io;
        let engine = self
            .snapshot
            .as_ref()
            .map(|s| s.engine.clone())
            .unwrap_or_default();
        // Two families with the same four series: frames (a polling request counts as one)
        // and their bytes.
        let series = [
            ("websocket", "in"),
            ("websocket", "out"),
            ("polling", "in"),
            ("polling", "out"),
        ];
        for (name, help, values) in [
            (
                "courier_frames",
                "WebSocket frames and polling requests (a POST in, a payload out) by transport and direction.",
                [
                    io.ws[0],
                    io.ws[2],
                    engine.polling_in_requests,
                    engine.polling_out_requests,
                ],
            ),
            (
                "courier_transport_bytes",
                "Bytes of those frames and polling bodies.",
                [
                    io.ws[1],
                    io.ws[3],
                    engine.polling_in_bytes,
                    engine.polling_out_bytes,
                ],
            ),
        ] {
            let mut m = family(e, name, help, MetricType::Counter)?;
            for ((transport, direction), value) in series.into_iter().zip(values) {
                counter(
                    &mut m,
                    &[("transport", transport), ("direction", direction)],
                    value,
                )?;
            }
        }
        let mut m = family(
            e,
            "courier_slow_consumers",
            "Clients disconnected because they did not read what was sent to them.",
            MetricType::Counter,
        )?;
        counter(&mut m, &[("transport", "websocket")], io.ws_slow_consumers)?;
        counter(&mut m, &[("transport", "polling")], engine.slow_consumers)
    }

    fn encode_cluster(&self, e: &mut DescriptorEncoder<'_>) -> Encoded {
        let io = &self.io;
        single_gauge(
            e,
            "courier_store_reachable",
            "1 when the last round trip to the store worked (always 1 for the in-memory store).",
            i64::from(io.store_reachable),
        )?;
        if !io.redis {
            return Ok(());
        }
        single_gauge(
            e,
            "courier_cluster_bus_subscribed",
            "1 while the cluster bus subscription is up.",
            i64::from(io.bus_subscribed),
        )?;
        let mut m = family(
            e,
            "courier_cluster_messages",
            "Cluster bus messages published, received and dropped.",
            MetricType::Counter,
        )?;
        counter(&mut m, &[("event", "published")], io.bus[0])?;
        counter(&mut m, &[("event", "received")], io.bus[1])?;
        let malformed = self.snapshot.as_ref().map_or(0, |s| s.remote_malformed);
        counter(&mut m, &[("event", "dropped")], io.bus[2] + malformed)?;
        let mut m = family(
            e,
            "courier_cluster_nodes",
            "Nodes in the registry as last read, by state.",
            MetricType::Gauge,
        )?;
        gauge(&mut m, &[("state", "live")], gauge_value(io.nodes_live))?;
        gauge(&mut m, &[("state", "dead")], gauge_value(io.nodes_dead))?;
        single_counter(
            e,
            "courier_heartbeat_failures",
            "Heartbeats that could not be written to Redis.",
            io.heartbeat_failures,
        )
    }
}

fn encode_connections(e: &mut DescriptorEncoder<'_>, s: &Snapshot) -> Encoded {
    let mut m = family(
        e,
        "courier_connections",
        "Sockets admitted to a site now, by site, transport and protocol.",
        MetricType::Gauge,
    )?;
    for (site, open) in s.sites.iter().zip(&s.open) {
        let OpenConnections {
            polling_eio3,
            polling_eio4,
            websocket_eio3,
            websocket_eio4,
        } = *open;
        for (transport, protocol, value) in [
            ("polling", "EIO3", polling_eio3),
            ("polling", "EIO4", polling_eio4),
            ("websocket", "EIO3", websocket_eio3),
            ("websocket", "EIO4", websocket_eio4),
        ] {
            gauge(
                &mut m,
                &[
                    ("site", &site.name),
                    ("transport", transport),
                    ("protocol", protocol),
                ],
                gauge_value(value),
            )?;
        }
    }
    single_gauge(
        e,
        "courier_engine_sessions",
        "Engine.IO sessions open now (joined to a site or not).",
        gauge_value(s.engine_sessions),
    )?;
    single_counter(
        e,
        "courier_connections_accepted",
        "Engine.IO sessions opened.",
        s.engine.opened,
    )?;
    let mut m = family(
        e,
        "courier_connections_closed",
        "Engine.IO sessions closed, by reason.",
        MetricType::Counter,
    )?;
    let extra = s
        .engine
        .closed
        .iter()
        .map(|(reason, _)| *reason)
        .filter(|reason| !CLOSE_REASONS.contains(reason));
    for reason in CLOSE_REASONS.into_iter().chain(extra) {
        counter(&mut m, &[("reason", reason)], s.engine.closed_with(reason))?;
    }
    let mut m = family(
        e,
        "courier_handshakes_refused",
        "Engine.IO handshakes refused with 503, by limit.",
        MetricType::Counter,
    )?;
    counter(
        &mut m,
        &[("limit", "max_connections")],
        s.engine.refused_max_connections,
    )?;
    counter(
        &mut m,
        &[("limit", "handshake_rate")],
        s.engine.refused_handshake_rate,
    )
}

/// Every Engine.IO close reason, so each series exists from the start.
const CLOSE_REASONS: [&str; 6] = [
    "transport close",
    "transport error",
    "ping timeout",
    "parse error",
    "forced close",
    "server shutting down",
];

fn encode_sites(e: &mut DescriptorEncoder<'_>, s: &Snapshot) -> Encoded {
    let mut m = family(
        e,
        "courier_joins",
        "Namespace joins by site and outcome.",
        MetricType::Counter,
    )?;
    for site in &s.sites {
        for (outcome, value) in JoinOutcome::ALL.iter().zip(site.joins) {
            counter(
                &mut m,
                &[("site", &site.name), ("outcome", outcome.label())],
                value,
            )?;
        }
    }
    let mut m = family(
        e,
        "courier_auth_duration_seconds",
        "Duration of authUrl calls.",
        MetricType::Histogram,
    )?;
    for site in &s.sites {
        histogram(&mut m, &[("site", &site.name)], &site.auth_duration)?;
    }
    let mut m = family(
        e,
        "courier_user_update_duration_seconds",
        "Duration of updateUserUrl calls.",
        MetricType::Histogram,
    )?;
    for site in &s.sites {
        histogram(&mut m, &[("site", &site.name)], &site.user_update_duration)?;
    }
    let mut m = family(
        e,
        "courier_send_requests",
        "/send requests by site and status code (site \"\" when it names no configured site).",
        MetricType::Counter,
    )?;
    for site in &s.sites {
        for (status, value) in &site.sends {
            counter(
                &mut m,
                &[("site", &site.name), ("status", &status.to_string())],
                *value,
            )?;
        }
    }
    for (status, value) in &s.sends_unknown_site {
        counter(
            &mut m,
            &[("site", ""), ("status", &status.to_string())],
            *value,
        )?;
    }
    let mut m = family(
        e,
        "courier_deliveries",
        "Messages for one device by site and path: live (emitted here), queued (for the next _batch), remote (handed to the node holding the socket).",
        MetricType::Counter,
    )?;
    for site in &s.sites {
        for (path, value) in DeliveryPath::ALL.iter().zip(site.deliveries) {
            counter(
                &mut m,
                &[("site", &site.name), ("path", path.label())],
                value,
            )?;
        }
    }
    let mut m = family(
        e,
        "courier_acks",
        "Acknowledgements of live deliveries, by site.",
        MetricType::Counter,
    )?;
    for site in &s.sites {
        counter(&mut m, &[("site", &site.name)], site.acks)?;
    }
    let mut m = family(
        e,
        "courier_batch_size",
        "_batch events sent (count) and the messages each carried.",
        MetricType::Histogram,
    )?;
    for site in &s.sites {
        histogram(&mut m, &[("site", &site.name)], &site.batch_size)?;
    }
    let mut m = family(
        e,
        "courier_resyncs",
        "_resync events sent, by site.",
        MetricType::Counter,
    )?;
    for site in &s.sites {
        counter(&mut m, &[("site", &site.name)], site.resyncs)?;
    }
    Ok(())
}

fn encode_store(e: &mut DescriptorEncoder<'_>, s: &Snapshot) -> Encoded {
    let mut m = family(
        e,
        "courier_store_commands",
        "Store commands by kind and outcome (timeout: no answer within 10 s).",
        MetricType::Counter,
    )?;
    for (kind, counters) in StoreKind::ALL.iter().zip(&s.store) {
        for (outcome, value) in StoreOutcome::ALL.iter().zip(counters.outcomes) {
            counter(
                &mut m,
                &[("kind", kind.label()), ("outcome", outcome.label())],
                value,
            )?;
        }
    }
    let mut m = family(
        e,
        "courier_store_command_duration_seconds",
        "Time from emitting a store command to its result, by kind.",
        MetricType::Histogram,
    )?;
    for (kind, counters) in StoreKind::ALL.iter().zip(&s.store) {
        histogram(&mut m, &[("kind", kind.label())], &counters.duration)?;
    }
    Ok(())
}

/// The `/status.json` document (the status page polls it): the same counters as `/metrics`,
/// read from the same snapshot, so the page and Prometheus never disagree. Totals only: the
/// page computes rates from successive snapshots. Never a token, room, user, device, socket
/// id, `authUrl` or API key. `now` and `now_unix_ms` are the same moment on the runtime's two
/// clocks.
pub fn status_json(
    snapshot: Option<&Snapshot>,
    ops: &Ops,
    now: Instant,
    now_unix_ms: u64,
) -> serde_json::Value {
    use serde_json::json;
    let process = ProcessStats::read();
    let node_hex = |id: u64| format!("{id:016x}");
    let mut nodes: Vec<serde_json::Value> = ops
        .nodes()
        .into_iter()
        .filter(|node| node.live)
        .map(|node| {
            json!({
                "id": node_hex(node.id),
                "self": ops.engine_nodes.contains(&node.id),
                "lastHeartbeatMs": node.last_heartbeat_ms,
            })
        })
        .collect();
    if nodes.is_empty() {
        nodes.push(
            json!({"id": node_hex(ops.node_id), "self": true, "lastHeartbeatMs": now_unix_ms}),
        );
    }
    let sites: Vec<serde_json::Value> = snapshot
        .map(|s| {
            s.sites
                .iter()
                .zip(&s.open)
                .map(|(site, open)| {
                    let sends: u64 = site.sends.iter().map(|(_, count)| count).sum();
                    json!({
                        "name": site.name,
                        "connections": {
                            "polling": {"eio3": open.polling_eio3, "eio4": open.polling_eio4},
                            "websocket": {"eio3": open.websocket_eio3, "eio4": open.websocket_eio4},
                        },
                        "totals": {
                            "sends": sends,
                            "deliveriesLive": site.deliveries_by(DeliveryPath::Live),
                            "deliveriesQueued": site.deliveries_by(DeliveryPath::Queued),
                            "deliveriesRemote": site.deliveries_by(DeliveryPath::Remote),
                            "acks": site.acks,
                            "batches": site.batch_size.count,
                            "batchMessages": site.batch_size.sum as u64,
                            "resyncs": site.resyncs,
                            "authFailures": site.joins_by(JoinOutcome::AuthRefused)
                                + site.joins_by(JoinOutcome::AuthError)
                                + site.joins_by(JoinOutcome::AuthTimeout),
                        },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut commands = 0;
    let mut failures = 0;
    let mut timeouts = 0;
    let mut latency = Histogram::new(courier_core::metrics::DURATION_BUCKETS);
    for counters in snapshot.map(|s| s.store.as_slice()).unwrap_or_default() {
        commands += counters.outcomes.iter().sum::<u64>();
        failures += counters.outcomes[1];
        timeouts += counters.outcomes[2];
        for (total, count) in latency.counts.iter_mut().zip(&counters.duration.counts) {
            *total += count;
        }
        latency.count += counters.duration.count;
        latency.sum += counters.duration.sum;
    }
    json!({
        "timestampMs": now_unix_ms,
        "node": {
            "id": node_hex(ops.node_id),
            "runtime": ops.runtime,
            "engines": ops.engine_nodes.len(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSeconds": now.saturating_duration_since(ops.started).as_secs(),
            "ready": ops.readiness().is_ok(),
            "store": if ops.redis { "redis" } else { "memory" },
            "residentBytes": process.resident_bytes,
            "cpuSeconds": process.cpu_seconds,
        },
        "nodes": nodes,
        "sites": sites,
        "store": {
            "commands": commands,
            "failures": failures,
            "timeouts": timeouts,
            "reachable": ops.store_reachable.load(Ordering::Acquire),
            "latencyMs": {
                "p50": latency.quantile_bound(0.5) * 1000.0,
                "p99": latency.quantile_bound(0.99) * 1000.0,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::metrics::{SiteCounters, StoreCounters};

    fn snapshot() -> Snapshot {
        let mut site = SiteCounters::new("demo".to_owned());
        site.deliveries = [5, 2, 1];
        site.joins = [3, 1, 1, 0];
        site.batch_size.observe(4.0);
        let mut open = OpenConnections::default();
        open.add(true, false);
        let mut store: Vec<StoreCounters> = StoreKind::ALL
            .iter()
            .map(|_| StoreCounters::default())
            .collect();
        store[3].outcomes = [7, 1, 0];
        store[3].duration.observe(0.0004);
        Snapshot {
            sites: vec![site],
            open: vec![open],
            sends_unknown_site: vec![(401, 2)],
            store,
            engine_sessions: 1,
            engine: Default::default(),
            remote_malformed: 0,
        }
    }

    #[test]
    fn a_driver_pass_counts_its_wall_and_cpu_time() {
        let ops = Ops::new("tokio", 0, false, Instant::now());
        let pass = DriverPass::start(Instant::now());
        // Some CPU work the optimiser cannot drop.
        let mut sum = 0_u64;
        for i in 0..2_000_000_u64 {
            sum = std::hint::black_box(sum.wrapping_add(i * i));
        }
        pass.finish(Instant::now(), &ops);
        let busy = ops.driver_busy_nanos.load(Ordering::Relaxed);
        let cpu = ops.driver_cpu_nanos.load(Ordering::Relaxed);
        assert!(busy > 0 && cpu > 0, "busy {busy} ns, cpu {cpu} ns");
        let text = render(None, &ops, Instant::now());
        assert!(
            text.contains("courier_driver_busy_seconds_total "),
            "{text}"
        );
        assert!(text.contains("courier_driver_cpu_seconds_total "), "{text}");
    }

    #[test]
    fn proc_texts_parse() {
        let status = "Name:\tcourier-tokio\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_bytes(status), Some(12345 * 1024));
        assert_eq!(vm_rss_bytes("Name:\tx\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\tlots kB\n"), None);
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0 5 6 7";
        assert_eq!(cpu_seconds(stat), Some(4.0));
        assert_eq!(cpu_seconds("garbage"), None);
        let own = ProcessStats::of("self").expect("own /proc");
        assert!(own.resident_bytes > 0 && own.open_fds > 0);
    }

    #[test]
    fn status_json_has_the_agreed_shape_and_the_metrics_counters() {
        let ops = Ops::new("tokio", 0xabc, false, Instant::now());
        let status = status_json(Some(&snapshot()), &ops, Instant::now(), 1_764_750_000_000);
        assert_eq!(status["timestampMs"], 1_764_750_000_000_u64);
        assert_eq!(status["node"]["id"], "0000000000000abc");
        assert_eq!(status["node"]["store"], "memory");
        assert_eq!(status["nodes"][0]["self"], true);
        let site = &status["sites"][0];
        assert_eq!(site["name"], "demo");
        assert_eq!(site["connections"]["websocket"]["eio4"], 1);
        assert_eq!(site["totals"]["deliveriesLive"], 5);
        assert_eq!(site["totals"]["batchMessages"], 4);
        assert_eq!(site["totals"]["authFailures"], 2);
        assert_eq!(status["store"]["commands"], 8);
        assert_eq!(status["store"]["failures"], 1);
        assert_eq!(status["store"]["latencyMs"]["p50"], 0.5);
    }

    #[test]
    fn the_exposition_parses_back_and_never_names_a_room() {
        let ops = Ops::new("smol", 1, true, Instant::now());
        let text = render(Some(snapshot()), &ops, Instant::now());
        assert!(
            text.contains("courier_deliveries_total{site=\"demo\",path=\"live\"} 5"),
            "{text}"
        );
        assert!(text.contains("courier_build_info{version="), "{text}");
        assert!(
            text.contains("courier_send_requests_total{site=\"\",status=\"401\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
