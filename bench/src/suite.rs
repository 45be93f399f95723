//! Redis mode: courier-bench starts the gateway itself (against the `redis-server` that
//! `scripts/bench --redis` started), with its own stub site as the `authUrl`, and measures the
//! CPU-seconds of the gateway and of redis-server (utime + stime from `/proc/<pid>/stat`) per
//! operation, phase by phase:
//!
//! - joins: N Engine.IO 4 clients of the user-room site (handshake, auth call, store connect);
//! - group fan-out: S `/send`s to the group room all N users are in, each delivery stored and
//!   acknowledged, a few `/send`s in flight;
//! - one `/send` per user: R rounds of one `/send` naming one user room per user, on kept-alive
//!   connections;
//! - broadcast: the same group fan-out on the broadcast-mode site, EIO3 then EIO4 clients;
//! - idle: I connections on a fresh node held H seconds: CPU during the hold, RSS growth per
//!   connection;
//! - two nodes on one Redis, the clients on node A: a group fan-out with the `/send`s to A,
//!   then to B (both nodes' CPU summed).
//!
//! Each phase is bounded by a deadline, and a delivery lost or made twice is an error: every
//! client counts each message index once, and a phase ends only when every index reached
//! exactly every recipient. Where the gateway exports `courier_driver_busy_seconds_total` and
//! `courier_driver_cpu_seconds_total`, the driver's time per delivery and the single-driver
//! ceiling it implies are reported too.

use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::client::{BENCH_EVENT, ClientSpec, Fleet};
use crate::gateway::{self, API_KEY, BROADCAST_SITE, GROUP, Gateway, Launch, USER_SITE};
use crate::http::{self, KeepAlive};
use crate::{stats, wire};

/// Redis-mode options.
#[derive(Debug, Clone, Args)]
pub struct SuiteArgs {
    /// Run the Redis-mode suite with this gateway binary (courier-tokio or courier-smol)
    /// instead of measuring a running `--demo` server.
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// Port of the redis-server on 127.0.0.1 (started by scripts/bench; it is FLUSHALLed).
    #[arg(long, default_value_t = 6379)]
    pub redis_port: u16,
    /// Its process id, whose CPU is measured.
    #[arg(long)]
    pub redis_pid: Option<u32>,
    /// A Redis Cluster instead (started by `scripts/bench --redis-cluster`): every node as
    /// `port:pid`, comma-separated. The gateways get `REDIS_CLUSTER_URLS`; the CPU of every
    /// node is measured, masters and replicas apart, and each master's share.
    #[arg(long, value_delimiter = ',')]
    pub redis_cluster: Vec<String>,
    /// Users (one client each) in the join, fan-out, per-user and broadcast phases.
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// `/send`s to the group room in the user-room and broadcast fan-outs.
    #[arg(long, default_value_t = 200)]
    pub group_sends: u64,
    /// Rounds of one `/send` per user.
    #[arg(long, default_value_t = 20)]
    pub user_sends: u64,
    /// Kept-alive connections the per-user `/send`s are spread over.
    #[arg(long, default_value_t = 4)]
    pub send_connections: u64,
    /// Group `/send`s in flight at once (the next starts when the one this many before is
    /// delivered everywhere).
    #[arg(long, default_value_t = 4)]
    pub window: u64,
    /// Connections held in the idle phase.
    #[arg(long, default_value_t = 5000)]
    pub idle_clients: u64,
    /// Seconds they are held.
    #[arg(long, default_value_t = 30)]
    pub idle_secs: u64,
    /// `/send`s to each node in the two-node phase.
    #[arg(long, default_value_t = 100)]
    pub node_sends: u64,
    /// Phases to run (user = joins, group fan-out and per-user sends).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "user,broadcast,idle,nodes"
    )]
    pub phases: Vec<String>,
    /// Directory for config files (and logs with --log-gateways).
    #[arg(long, default_value = "target/bench")]
    pub work_dir: PathBuf,
    /// Keep the gateways' logs in the work directory (at `info`, hundreds of MB per run).
    #[arg(long)]
    pub log_gateways: bool,
    /// Engines per gateway process (`IO_ENGINES`; unset: the gateway's default, one).
    #[arg(long)]
    pub engines: Option<u32>,
}

/// Lets acknowledgements and disconnects land before a reading (idle CPU meanwhile is
/// negligible next to a phase).
const SETTLE: Duration = Duration::from_secs(1);
/// Clients admitted before the idle phase's baseline memory reading.
const IDLE_WARM_UP: u64 = 100;
/// Token prefix: client `i` is user `user_u<i>`.
const TOKEN: &str = "u";

/// One line of the result table.
#[derive(Debug, Clone)]
pub struct Row {
    workload: String,
    measure: &'static str,
    value: String,
}

/// The redis-server processes measured: one, or every node of a cluster.
#[derive(Debug, Clone, Default)]
struct RedisNodes {
    /// `(port, pid, master)`.
    nodes: Vec<(u16, u32, bool)>,
    cluster: bool,
}

impl RedisNodes {
    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|&(_, pid, _)| pid).collect()
    }

    /// `FLUSHALL` on every master (a replica follows its master).
    async fn flush(&self) -> Result<(), String> {
        for &(port, _, master) in &self.nodes {
            if master {
                gateway::flush_redis(port).await?;
            }
        }
        Ok(())
    }
}

/// CPU and driver counters at one moment.
#[derive(Debug, Clone)]
struct Reading {
    gateway: f64,
    redis: f64,
    /// Each redis-server's CPU seconds, in `RedisNodes` order.
    redis_nodes: Vec<f64>,
    /// The driver's busy seconds and their CPU seconds, summed over the gateways.
    driver: Option<[f64; 2]>,
    at: Instant,
}

/// What a phase cost.
#[derive(Debug, Clone)]
struct Cost {
    gateway: f64,
    redis: f64,
    redis_nodes: Vec<f64>,
    driver: Option<[f64; 2]>,
    /// Wall time of the work measured (a phase sets it to the time its operations took,
    /// without the settling after them).
    elapsed: Duration,
}

/// Reads the counters of `gateways` and Redis; `scrape_first` orders the `/metrics` scrape
/// so that its own cost falls outside the measured interval.
async fn read(
    gateways: &[&Gateway],
    redis: &RedisNodes,
    scrape_first: bool,
) -> Result<Reading, String> {
    let scrape = async {
        let mut driver = Some([0.0; 2]);
        for gateway in gateways {
            let own = http::driver_seconds(gateway.port).await?;
            driver = driver
                .zip(own)
                .map(|(sum, own)| [sum[0] + own[0], sum[1] + own[1]]);
        }
        Ok::<_, String>(driver)
    };
    let cpu = || -> Result<(f64, Vec<f64>), String> {
        let mut sum = 0.0;
        for gateway in gateways {
            sum += stats::process_cpu_seconds(gateway.pid)?;
        }
        let nodes = redis
            .pids()
            .into_iter()
            .map(stats::process_cpu_seconds)
            .collect::<Result<Vec<f64>, String>>()?;
        Ok((sum, nodes))
    };
    let (driver, (gateway, redis_nodes), at) = if scrape_first {
        let driver = scrape.await?;
        let (cpu, at) = (cpu()?, Instant::now());
        (driver, cpu, at)
    } else {
        let (cpu, at) = (cpu()?, Instant::now());
        (scrape.await?, cpu, at)
    };
    Ok(Reading {
        gateway,
        redis: redis_nodes.iter().sum(),
        redis_nodes,
        driver,
        at,
    })
}

async fn start_reading(gateways: &[&Gateway], redis: &RedisNodes) -> Result<Reading, String> {
    read(gateways, redis, true).await
}

async fn cost_since(
    before: Reading,
    gateways: &[&Gateway],
    redis: &RedisNodes,
) -> Result<Cost, String> {
    let after = read(gateways, redis, false).await?;
    Ok(Cost {
        gateway: after.gateway - before.gateway,
        redis: after.redis - before.redis,
        redis_nodes: after
            .redis_nodes
            .iter()
            .zip(&before.redis_nodes)
            .map(|(a, b)| a - b)
            .collect(),
        driver: after
            .driver
            .zip(before.driver)
            .map(|(a, b)| [a[0] - b[0], a[1] - b[1]]),
        elapsed: after.at - before.at,
    })
}

/// Microseconds per operation.
fn us(seconds: f64, operations: u64) -> String {
    format!("{:.1} µs", seconds * 1e6 / operations.max(1) as f64)
}

fn rate(count: u64, elapsed: Duration) -> String {
    format!("{:.0}/s", stats::per_second(count, elapsed))
}

/// Runs the selected phases against `binary`; the rows measured so far come back with an
/// error too.
pub async fn run(
    args: &SuiteArgs,
    binary: PathBuf,
    timeout: Duration,
    parallel: usize,
) -> (Vec<Row>, Result<(), String>) {
    let mut suite = Suite {
        args: args.clone(),
        timeout,
        parallel,
        rows: Vec::new(),
        redis: RedisNodes::default(),
        launch: None,
    };
    let outcome = suite.run_all(binary).await;
    (suite.rows, outcome)
}

struct Suite {
    args: SuiteArgs,
    timeout: Duration,
    parallel: usize,
    rows: Vec<Row>,
    redis: RedisNodes,
    launch: Option<Launch>,
}

impl Suite {
    fn row(&mut self, workload: &str, measure: &'static str, value: String) {
        eprintln!("  {workload}: {measure}: {value}");
        self.rows.push(Row {
            workload: workload.to_owned(),
            measure,
            value,
        });
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    fn wants(&self, phase: &str) -> bool {
        self.args.phases.iter().any(|p| p == phase)
    }

    async fn run_all(&mut self, binary: PathBuf) -> Result<(), String> {
        self.redis = if self.args.redis_cluster.is_empty() {
            let pid = self
                .args
                .redis_pid
                .ok_or("--redis-pid (or --redis-cluster) is required with --gateway")?;
            RedisNodes {
                nodes: vec![(self.args.redis_port, pid, true)],
                cluster: false,
            }
        } else {
            let mut nodes = Vec::new();
            for node in &self.args.redis_cluster {
                let parsed = node.split_once(':').and_then(|(port, pid)| {
                    Some((port.parse::<u16>().ok()?, pid.parse::<u32>().ok()?))
                });
                let (port, pid) =
                    parsed.ok_or_else(|| format!("--redis-cluster: {node:?} is not port:pid"))?;
                nodes.push((port, pid, gateway::redis_is_master(port).await?));
            }
            RedisNodes {
                nodes,
                cluster: true,
            }
        };
        for pid in self.redis.pids() {
            stats::process_cpu_seconds(pid)?;
        }
        let (auth_port, stub) =
            http::start_auth_stub(gateway::USER_ROOM_PREFIX.to_owned(), GROUP.to_owned()).await?;
        let _stub = AbortOnDrop(stub);
        let (config, sites) = gateway::write_config(&self.args.work_dir, auth_port)?;
        self.launch = Some(Launch {
            binary,
            config,
            sites,
            redis_url: format!("redis://127.0.0.1:{}/0", self.args.redis_port),
            redis_cluster_urls: self.redis.cluster.then(|| {
                self.redis
                    .nodes
                    .iter()
                    .map(|(port, _, _)| format!("redis://127.0.0.1:{port}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            log_dir: self.args.log_gateways.then(|| self.args.work_dir.clone()),
            engines: self.args.engines,
        });
        if self.wants("user") || self.wants("broadcast") {
            let node = self.fresh_node("node").await?;
            if self.wants("user") {
                self.user_room_phases(&node).await?;
            }
            if self.wants("broadcast") {
                for eio in [3, 4] {
                    self.broadcast_phase(&node, eio).await?;
                }
            }
        }
        if self.wants("idle") {
            self.idle_phase().await?;
        }
        if self.wants("nodes") {
            self.two_node_phase().await?;
        }
        Ok(())
    }

    async fn fresh_node(&self, name: &str) -> Result<Gateway, String> {
        self.redis.flush().await?;
        self.start_node(name, 1).await
    }

    async fn start_node(&self, name: &str, worker: u8) -> Result<Gateway, String> {
        let launch = self.launch.as_ref().ok_or("no launch configuration")?;
        let gateway = Gateway::start(launch, worker, name).await?;
        eprintln!(
            "  {name}: {} pid {} port {}",
            launch.binary.display(),
            gateway.pid,
            gateway.port
        );
        Ok(gateway)
    }

    fn spec(&self, port: u16, site: &str, eio: u8) -> ClientSpec {
        ClientSpec {
            port,
            namespace: site.to_owned(),
            token: String::new(),
            eio,
        }
    }

    /// Joins, then the group fan-out and the per-user `/send`s to the same users.
    async fn user_room_phases(&mut self, node: &Gateway) -> Result<(), String> {
        let (users, sends, rounds) = (self.args.users, self.args.group_sends, self.args.user_sends);
        let mut fleet = Fleet::new(sends + rounds, self.parallel);
        let spec = self.spec(node.port, USER_SITE, 4);

        let before = start_reading(&[node], &self.redis).await?;
        fleet
            .connect(&spec, TOKEN, 0..users, self.deadline())
            .await?;
        tokio::time::sleep(SETTLE).await;
        let cost = cost_since(before, &[node], &self.redis).await?;
        let workload = format!("joins, user-room site ({users} EIO4: auth call + store connect)");
        self.row(
            &workload,
            "gateway CPU per join",
            format!("{:.3} ms", cost.gateway * 1e3 / users as f64),
        );
        self.row(&workload, "redis CPU per join", us(cost.redis, users));

        let before = start_reading(&[node], &self.redis).await?;
        let active = fan_out(
            &fleet,
            node.port,
            USER_SITE,
            0..sends,
            users,
            self.args.window,
            self.deadline(),
        )
        .await?;
        tokio::time::sleep(SETTLE).await;
        let mut cost = cost_since(before, &[node], &self.redis).await?;
        cost.elapsed = active;
        let workload =
            format!("group fan-out, user-room mode, {users} users × {sends} sends, stored + acked");
        self.delivery_rows(&workload, cost, users * sends, true);
        check_exact(&fleet, 0..sends, users)?;

        let before = start_reading(&[node], &self.redis).await?;
        let active = per_user_sends(
            &fleet,
            node.port,
            users,
            sends..sends + rounds,
            self.args.send_connections,
            self.deadline(),
        )
        .await?;
        tokio::time::sleep(SETTLE).await;
        let mut cost = cost_since(before, &[node], &self.redis).await?;
        cost.elapsed = active;
        let workload = format!("one /send per user, {users} users × {rounds}, kept-alive HTTP");
        let count = users * rounds;
        self.row(&workload, "gateway CPU per /send", us(cost.gateway, count));
        self.row(&workload, "redis CPU per delivery", us(cost.redis, count));
        self.row(&workload, "/sends per second", rate(count, cost.elapsed));
        check_exact(&fleet, sends..sends + rounds, users)?;
        Ok(())
    }

    /// The gateway, Redis and driver figures of a fan-out of `deliveries`.
    fn delivery_rows(&mut self, workload: &str, cost: Cost, deliveries: u64, redis: bool) {
        self.row(
            workload,
            "gateway CPU per delivery",
            us(cost.gateway, deliveries),
        );
        if redis {
            self.row(
                workload,
                "redis CPU per delivery",
                us(cost.redis, deliveries),
            );
            if self.redis.cluster {
                self.cluster_rows(workload, &cost, deliveries);
            }
        }
        self.row(
            workload,
            "deliveries per second",
            rate(deliveries, cost.elapsed),
        );
        // The CPU clock is what a delivery costs the driver; the wall clock also counts the
        // time the driver's thread waited for a core (a shared machine).
        let [busy, cpu, ceiling] = match cost.driver {
            Some([busy, cpu]) if cpu > 0.0 => [
                us(busy, deliveries),
                us(cpu, deliveries),
                format!("{:.0}/s", deliveries as f64 / cpu),
            ],
            _ => ["–".to_owned(), "–".to_owned(), "–".to_owned()],
        };
        self.row(workload, "driver CPU per delivery", cpu);
        self.row(workload, "driver busy (wall clock) per delivery", busy);
        self.row(
            workload,
            "single-driver ceiling (1 / driver CPU per delivery)",
            ceiling,
        );
        // With several engines, each driver runs on its own core: the process's driver-bound
        // ceiling is that many times one driver's (given the cores, and the load spread evenly).
        if let (Some(engines @ 2..), Some([_, cpu])) = (self.args.engines, cost.driver)
            && cpu > 0.0
        {
            self.row(
                workload,
                "process ceiling (engines / driver CPU per delivery)",
                format!("{:.0}/s", f64::from(engines) * deliveries as f64 / cpu),
            );
        }
    }

    /// On a cluster: Redis CPU per delivery of the masters and of the replicas, and of each
    /// master (how evenly the shards share the work).
    fn cluster_rows(&mut self, workload: &str, cost: &Cost, deliveries: u64) {
        let mut masters = Vec::new();
        let mut replicas = 0.0;
        for (&(_, _, master), &cpu) in self.redis.nodes.iter().zip(&cost.redis_nodes) {
            if master {
                masters.push(cpu);
            } else {
                replicas += cpu;
            }
        }
        self.row(
            workload,
            "redis CPU per delivery, masters",
            us(masters.iter().sum(), deliveries),
        );
        self.row(
            workload,
            "redis CPU per delivery, replicas",
            us(replicas, deliveries),
        );
        let each: Vec<String> = masters.iter().map(|&cpu| us(cpu, deliveries)).collect();
        self.row(
            workload,
            "redis CPU per delivery, each master",
            each.join(" / "),
        );
    }

    async fn broadcast_phase(&mut self, node: &Gateway, eio: u8) -> Result<(), String> {
        let (users, sends) = (self.args.users, self.args.group_sends);
        let mut fleet = Fleet::new(sends, self.parallel);
        fleet
            .connect(
                &self.spec(node.port, BROADCAST_SITE, eio),
                TOKEN,
                0..users,
                self.deadline(),
            )
            .await?;
        tokio::time::sleep(SETTLE).await;
        let before = start_reading(&[node], &self.redis).await?;
        let active = fan_out(
            &fleet,
            node.port,
            BROADCAST_SITE,
            0..sends,
            users,
            self.args.window,
            self.deadline(),
        )
        .await?;
        let mut cost = cost_since(before, &[node], &self.redis).await?;
        cost.elapsed = active;
        let workload = format!("broadcast mode, {users} EIO{eio} clients × {sends} sends");
        self.delivery_rows(&workload, cost, users * sends, false);
        check_exact(&fleet, 0..sends, users)?;
        drop(fleet);
        // Their disconnects are handled before the next phase measures.
        tokio::time::sleep(SETTLE).await;
        Ok(())
    }

    async fn idle_phase(&mut self) -> Result<(), String> {
        let (clients, hold) = (self.args.idle_clients, self.args.idle_secs);
        let node = self.fresh_node("idle").await?;
        let warm_up = IDLE_WARM_UP.min(clients.saturating_sub(1));
        let mut fleet = Fleet::new(0, self.parallel);
        let spec = self.spec(node.port, USER_SITE, 4);
        fleet
            .connect(&spec, TOKEN, 0..warm_up, self.deadline())
            .await?;
        tokio::time::sleep(2 * SETTLE).await;
        let rss_before = stats::process_rss_kib(node.pid)?;
        fleet
            .connect(&spec, TOKEN, warm_up..clients, self.deadline())
            .await?;
        tokio::time::sleep(2 * SETTLE).await;
        let rss_idle = stats::process_rss_kib(node.pid)?;
        let before = start_reading(&[&node], &self.redis).await?;
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let cost = cost_since(before, &[&node], &self.redis).await?;
        if fleet.tally.lost() > 0 {
            return Err(format!(
                "idle: {} clients lost their connection",
                fleet.tally.lost()
            ));
        }
        let workload = format!("{clients} idle connections (user-room site) held {hold} s");
        self.row(
            &workload,
            "gateway CPU during the hold",
            format!("{:.2} s", cost.gateway),
        );
        self.row(
            &workload,
            "redis CPU during the hold",
            format!("{:.2} s", cost.redis),
        );
        self.row(
            &workload,
            "idle memory per connection",
            format!(
                "{:.1} KiB",
                stats::kib_per_connection(rss_before, rss_idle, clients - warm_up)
            ),
        );
        Ok(())
    }

    async fn two_node_phase(&mut self) -> Result<(), String> {
        let (users, sends) = (self.args.users, self.args.node_sends);
        self.redis.flush().await?;
        let a = self.start_node("node-a", 1).await?;
        let b = self.start_node("node-b", 2).await?;
        let mut fleet = Fleet::new(2 * sends, self.parallel);
        fleet
            .connect(
                &self.spec(a.port, USER_SITE, 4),
                TOKEN,
                0..users,
                self.deadline(),
            )
            .await?;
        tokio::time::sleep(SETTLE).await;
        for (target, name, indices) in [
            (&a, "the clients' node", 0..sends),
            (&b, "the other node", sends..2 * sends),
        ] {
            let before = start_reading(&[&a, &b], &self.redis).await?;
            let active = fan_out(
                &fleet,
                target.port,
                USER_SITE,
                indices.clone(),
                users,
                self.args.window,
                self.deadline(),
            )
            .await?;
            tokio::time::sleep(SETTLE).await;
            let mut cost = cost_since(before, &[&a, &b], &self.redis).await?;
            cost.elapsed = active;
            let workload =
                format!("two nodes on one Redis, group fan-out {users} × {sends}, /send to {name}");
            let deliveries = users * sends;
            self.row(
                &workload,
                "gateway CPU (both nodes) per delivery",
                us(cost.gateway, deliveries),
            );
            self.row(
                &workload,
                "redis CPU per delivery",
                us(cost.redis, deliveries),
            );
            self.row(
                &workload,
                "deliveries per second",
                rate(deliveries, cost.elapsed),
            );
            check_exact(&fleet, indices, users)?;
        }
        Ok(())
    }
}

/// Aborts a background task (the stub site) when the suite ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `/send`s of `indices` to the group room on one kept-alive connection, at most `window` of
/// them not yet delivered to all `recipients`; returns when every one is, with the time taken.
async fn fan_out(
    fleet: &Fleet,
    port: u16,
    site: &str,
    indices: Range<u64>,
    recipients: u64,
    window: u64,
    deadline: Instant,
) -> Result<Duration, String> {
    let started = Instant::now();
    let tally = &fleet.tally;
    let mut connection = KeepAlive::connect(port).await?;
    let rooms = [GROUP.to_owned()];
    for index in indices.clone() {
        if index >= indices.start + window.max(1) {
            let previous = index - window.max(1);
            tally
                .wait_for(&format!("deliveries of /send #{previous}"), deadline, |t| {
                    t.deliveries(previous) >= recipients
                })
                .await?;
        }
        let body = wire::send_body(&rooms, BENCH_EVENT, index);
        tokio::time::timeout_at(deadline.into(), connection.send(site, API_KEY, &body))
            .await
            .map_err(|_| format!("/send #{index}: no answer in time"))??;
    }
    for index in indices {
        tally
            .wait_for(&format!("deliveries of /send #{index}"), deadline, |t| {
                t.deliveries(index) >= recipients
            })
            .await?;
    }
    Ok(started.elapsed())
}

/// For each index of `rounds`, one `/send` per user naming only that user's room, spread over
/// `connections` kept-alive connections; returns when every user has every round, with the
/// time taken.
async fn per_user_sends(
    fleet: &Fleet,
    port: u16,
    users: u64,
    rounds: Range<u64>,
    connections: u64,
    deadline: Instant,
) -> Result<Duration, String> {
    let started = Instant::now();
    let connections = connections.clamp(1, users.max(1));
    let mut senders = tokio::task::JoinSet::new();
    for first in 0..connections {
        let rounds = rounds.clone();
        senders.spawn(async move {
            let mut connection = KeepAlive::connect(port).await?;
            for index in rounds {
                for user in (first..users).step_by(connections as usize) {
                    let rooms = [format!("{}{TOKEN}{user}", gateway::USER_ROOM_PREFIX)];
                    let body = wire::send_body(&rooms, BENCH_EVENT, index);
                    connection.send(USER_SITE, API_KEY, &body).await?;
                }
            }
            Ok::<_, String>(())
        });
    }
    while let Some(joined) = tokio::time::timeout_at(deadline.into(), senders.join_next())
        .await
        .map_err(|_| "per-user /sends: no answer in time".to_owned())?
    {
        joined.map_err(|error| format!("per-user sender: {error}"))??;
    }
    for index in rounds {
        fleet
            .tally
            .wait_for(&format!("per-user deliveries #{index}"), deadline, |t| {
                t.deliveries(index) >= users
            })
            .await?;
    }
    Ok(started.elapsed())
}

/// Every index of `indices` reached exactly `recipients` clients, none twice, none lost.
fn check_exact(fleet: &Fleet, indices: Range<u64>, recipients: u64) -> Result<(), String> {
    let tally = &fleet.tally;
    if tally.lost() > 0 || tally.duplicates() > 0 {
        return Err(format!(
            "{} clients lost, {} duplicate deliveries",
            tally.lost(),
            tally.duplicates()
        ));
    }
    for index in indices {
        let got = tally.deliveries(index);
        if got != recipients {
            return Err(format!(
                "message {index}: {got} deliveries, expected {recipients}"
            ));
        }
    }
    Ok(())
}

/// The result table: one value column headed `label` (a build and binary), so tables of
/// several builds line up row by row.
pub fn table(label: &str, rows: &[Row]) -> String {
    let mut out = format!("| workload | measure | {label} |\n|---|---|---:|\n");
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            row.workload, row.measure, row.value
        ));
    }
    out
}
