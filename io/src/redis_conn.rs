//! One type for "a Redis connection": a single node's `ConnectionManager` or a Redis Cluster's
//! async cluster connection (the `redis` crate's `cluster-async`), so the store, the node
//! registry and the bus are written once for both.
//!
//! Both reconnect by themselves. The cluster connection learns the topology from any seed that
//! answers (one seed down at start does not matter), routes every command by its key's hash
//! slot, follows `MOVED`/`ASK` redirections and refreshes the topology after a failover. What it
//! cannot do is run a pipeline whose commands live in different slots: [`RedisConnection::
//! pipeline_by_slot`] splits such a pipeline into one pipeline per slot, each in the original
//! order, sent concurrently, and puts the replies back in the original order. Commands of one
//! slot keep their relative order (one pipeline on one connection to that slot's master);
//! commands of different slots never depended on each other's order in the store's layout
//! (`io/REDIS-LAYOUT.md`, "Redis Cluster").

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// Where Redis is: one node's URL, or a cluster's seed URLs.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis[s]://…` of a single node.
    Node(String),
    /// `redis[s]://host:port` of some nodes of a Redis Cluster (any number may be down).
    Cluster(Vec<String>),
}

impl std::fmt::Debug for RedisTarget {
    // URLs may carry a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Node(_) => f.write_str("Node"),
            RedisTarget::Cluster(seeds) => write!(f, "Cluster({} seeds)", seeds.len()),
        }
    }
}

/// A connection to a single Redis or to a Redis Cluster. Cheap to clone (clones share the
/// connection).
#[derive(Clone)]
pub enum RedisConnection {
    /// A single node.
    Node(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Node(_) => "RedisConnection::Node",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

/// How long connecting to one node may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one reply may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisConnection {
    /// Opens a connection to `target` lazily: Redis may be down now; commands fail until it is
    /// up. Must be called inside the runtime (the redis crate spawns its connection task
    /// there). Also returns a plain client for pub/sub connections (a cluster's: its first
    /// seed's). Fails only on a malformed URL.
    pub fn open(target: &RedisTarget) -> Result<(RedisConnection, redis::Client), String> {
        match target {
            RedisTarget::Node(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|error| format!("redis URL: {error}"))?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(|error| format!("redis: {error}"))?;
                Ok((RedisConnection::Node(connection), client))
            }
            RedisTarget::Cluster(seeds) => {
                let first = seeds
                    .first()
                    .ok_or_else(|| "redis cluster: no seed URL".to_owned())?;
                let client = redis::Client::open(first.as_str())
                    .map_err(|error| format!("redis cluster seed URL: {error}"))?;
                let cluster = ClusterClient::builder(seeds.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    // A failover takes the cluster's node timeout and an election: the client
                    // retries a command on the new topology for a few seconds, then fails it.
                    .retries(6)
                    .max_retry_wait(1000)
                    .build()
                    .map_err(|error| format!("redis cluster seed URLs: {error}"))?;
                let connection =
                    cluster.get_pending_async_connection_with_config(Default::default());
                Ok((RedisConnection::Cluster(connection), client))
            }
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }

    /// Runs `commands` as pipelines of one slot each (a single node: one pipeline) and answers
    /// one reply per command, in order. A failed reply fails its command only; `Err` when a
    /// whole pipeline could not be run (then nothing can be said about any command).
    ///
    /// With `wait` (a cluster), every slot's pipeline that writes, unless its master is known to
    /// have no replica, ends with `WAIT 1 <timeout ms>`: its replies come back once a replica
    /// holds its writes, so what a caller acknowledges survives a failover to that replica.
    /// When the `WAIT` saw no replica in time, that slot's commands fail ([`NOT_CONFIRMED`]):
    /// their writes may exist on the master only. The flag returned says whether one did.
    pub async fn pipeline_by_slot(
        &self,
        commands: Vec<Cmd>,
        wait: Option<&ReplicaWait>,
    ) -> RedisResult<(Vec<RedisResult<Value>>, bool)> {
        match self {
            RedisConnection::Node(connection) => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for command in commands {
                    pipe.add_command(command);
                }
                Ok((pipe.query_async(&mut connection.clone()).await?, false))
            }
            RedisConnection::Cluster(connection) => {
                let count = commands.len();
                // Per slot: the pipeline and the index of each of its commands in `commands`.
                let mut slots: HashMap<Slot, (Pipeline, Vec<usize>)> = HashMap::new();
                for (index, command) in commands.into_iter().enumerate() {
                    let key = routing_key(&command).unwrap_or_default();
                    let (pipe, indices) = slots.entry(Slot::for_key(key)).or_default();
                    pipe.add_command(command);
                    indices.push(index);
                }
                let calls = slots.into_iter().map(|(slot, (mut pipe, indices))| {
                    let mut connection = connection.clone();
                    async move {
                        let waits = match wait {
                            Some(wait)
                                if !wait.unreplicated.contains(&slot)
                                    && pipe.cmd_iter().any(writes) =>
                            {
                                pipe.cmd("WAIT").arg(1).arg(
                                    u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX),
                                );
                                true
                            }
                            _ => false,
                        };
                        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
                            slot,
                            SlotAddr::Master,
                        ));
                        let count = pipe.len();
                        let mut replies = connection.route_pipeline(pipe, 0, count, route).await;
                        let mut short = false;
                        if waits && let Ok(values) = &mut replies {
                            let confirmed = matches!(values.pop(), Some(Value::Int(n)) if n >= 1);
                            if !confirmed {
                                short = true;
                                replies = Err(RedisError::from((
                                    redis::ErrorKind::Client,
                                    NOT_CONFIRMED,
                                    format!(
                                        "no replica held the writes within {} ms",
                                        wait.map_or(0, |wait| wait.timeout.as_millis())
                                    ),
                                )));
                            }
                        }
                        (indices, replies, short)
                    }
                });
                let mut out: Vec<Option<RedisResult<Value>>> = (0..count).map(|_| None).collect();
                let mut any_short = false;
                let mut failures = 0;
                let mut first_failure = None;
                let mut slots = 0;
                for (indices, replies, short) in futures_util::future::join_all(calls).await {
                    slots += 1;
                    any_short |= short;
                    match replies {
                        Ok(replies) => {
                            for (index, reply) in indices.into_iter().zip(replies) {
                                out[index] = Some(reply.extract_error());
                            }
                        }
                        // This slot's master could not be reached: its commands fail, the
                        // other slots' stand.
                        Err(error) => {
                            failures += 1;
                            for index in indices {
                                out[index] = Some(Err(error.clone()));
                            }
                            first_failure.get_or_insert(error);
                        }
                    }
                }
                if let Some(error) = first_failure
                    && failures == slots
                {
                    return Err(error);
                }
                let out = out
                    .into_iter()
                    .map(|reply| {
                        reply.unwrap_or_else(|| {
                            Err(RedisError::from((
                                redis::ErrorKind::Client,
                                "no reply in the pipeline",
                            )))
                        })
                    })
                    .collect();
                Ok((out, any_short))
            }
        }
    }

    /// The `(host, port)` of every primary that serves slots now ([`Self::topology`]); a
    /// single node: none (it is reached as it is).
    pub async fn primaries(&self) -> RedisResult<Vec<(String, u16)>> {
        Ok(self
            .topology()
            .await?
            .into_iter()
            .map(|primary| primary.address)
            .collect())
    }

    /// Every primary that serves slots now, with its count of replicas not marked failed
    /// (`CLUSTER NODES`, as one primary sees it); a single node: none.
    pub async fn topology(&self) -> RedisResult<Vec<Primary>> {
        let RedisConnection::Cluster(connection) = self else {
            return Ok(Vec::new());
        };
        let reply = connection
            .clone()
            .route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await?;
        let text: String = redis::from_redis_value(reply)?;
        Ok(parse_cluster_nodes(&text))
    }

    /// Runs `command` on the node `(host, port)` of a cluster (a single node: on it).
    pub async fn on_node(&self, node: Option<&(String, u16)>, command: &Cmd) -> RedisResult<Value> {
        match (self, node) {
            (RedisConnection::Cluster(connection), Some((host, port))) => {
                connection
                    .clone()
                    .route_command(
                        command.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        }),
                    )
                    .await
            }
            (connection, _) => command.query_async(&mut connection.clone()).await,
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Node(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Node(connection) => connection.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(cmd, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Node(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// A primary of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    /// `(host, port)` as the cluster announces it.
    pub address: (String, u16),
    /// How many replicas it has that are not marked failed.
    pub replicas: usize,
    /// The slot ranges it serves (`first..=last`).
    pub slots: Vec<(u16, u16)>,
}

/// The error text of a write whose `WAIT` saw no replica in time (see
/// [`RedisConnection::pipeline_by_slot`]).
pub const NOT_CONFIRMED: &str = "not confirmed by a replica";

/// How writes on a cluster wait for a replica.
#[derive(Debug, Clone, Default)]
pub struct ReplicaWait {
    /// `WAIT`'s timeout.
    pub timeout: Duration,
    /// The slots whose master had no healthy replica at the last topology read: nothing to
    /// wait for there (a write is acknowledged as a single Redis acknowledges it). Any other
    /// slot, known or not, waits.
    pub unreplicated: HashSet<Slot>,
}

impl ReplicaWait {
    /// `timeout`, with the slots of `primaries` that have no replica.
    pub fn from_topology(timeout: Duration, primaries: &[Primary]) -> ReplicaWait {
        let unreplicated = primaries
            .iter()
            .filter(|primary| primary.replicas == 0)
            .flat_map(|primary| primary.slots.iter())
            .flat_map(|&(first, last)| (first..=last).filter_map(Slot::new))
            .collect();
        ReplicaWait {
            timeout,
            unreplicated,
        }
    }
}

/// The primaries of a `CLUSTER NODES` reply (`<id> <ip:port@bus> <flags> <master id> <ping>
/// <pong> <epoch> <link> <slot>…` per line) that serve slots and are not failed, with their
/// replicas that are not failed either.
fn parse_cluster_nodes(text: &str) -> Vec<Primary> {
    let nodes: Vec<Vec<&str>> = text
        .lines()
        .map(|line| line.split(' ').collect::<Vec<&str>>())
        .filter(|fields| fields.len() >= 8)
        .collect();
    let healthy = |flags: &str| !flags.split(',').any(|f| f == "fail" || f == "noaddr");
    let mut primaries = Vec::new();
    for fields in &nodes {
        let flags = fields[2];
        if !flags.split(',').any(|f| f == "master") || !healthy(flags) || fields.len() < 9 {
            continue;
        }
        let address = fields[1].split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
        else {
            continue;
        };
        let replicas = nodes
            .iter()
            .filter(|other| {
                other[3] == fields[0]
                    && other[2].split(',').any(|f| f == "slave")
                    && healthy(other[2])
            })
            .count();
        // `0-5460`, `5461`; `[slot->-node]`/`[slot-<-node]` mark migrations, not ownership.
        let slots = fields[8..]
            .iter()
            .filter(|range| !range.starts_with('['))
            .filter_map(|range| {
                let (first, last) = range.split_once('-').unwrap_or((range, range));
                Some((first.parse().ok()?, last.parse().ok()?))
            })
            .collect();
        primaries.push(Primary {
            address: (host, port),
            replicas,
            slots,
        });
    }
    primaries
}

/// Whether `command` may write (everything but the store's plain reads).
fn writes(command: &Cmd) -> bool {
    let name = command.args_iter().next();
    !matches!(name, Some(redis::Arg::Simple(name))
        if name.eq_ignore_ascii_case(b"GET") || name.eq_ignore_ascii_case(b"SUNION"))
}

/// The key a command is routed by: `FCALL <fn> <numkeys> <key> …`'s first key, else the first
/// argument (`GET`, `SET`, `SADD`, `SREM`, `SUNION`, `DEL`, …). `None` for a bare command.
fn routing_key(command: &Cmd) -> Option<Vec<u8>> {
    let mut args = command.args_iter().filter_map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    if name.eq_ignore_ascii_case(b"FCALL") || name.eq_ignore_ascii_case(b"FCALL_RO") {
        let _function = args.next()?;
        let _numkeys = args.next()?;
    }
    args.next().map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_give_the_primaries_and_their_healthy_replicas() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001 master - 0 1 2 connected 5461-16383\n\
                    c3 127.0.0.1:7002@17002 slave a1 0 1 1 connected\n\
                    d4 127.0.0.1:7003@17003 slave,fail b2 0 1 2 disconnected\n\
                    e5 127.0.0.1:7004@17004 master,fail - 0 1 3 disconnected\n";
        assert_eq!(
            parse_cluster_nodes(text),
            vec![
                Primary {
                    address: ("127.0.0.1".into(), 7000),
                    replicas: 1,
                    slots: vec![(0, 5460)],
                },
                Primary {
                    address: ("127.0.0.1".into(), 7001),
                    replicas: 0,
                    slots: vec![(5461, 16383)],
                },
            ]
        );
    }

    #[test]
    fn only_the_slots_of_a_master_without_replica_skip_the_wait() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-9 12\n\
                    b2 127.0.0.1:7001@17001 master - 0 1 2 connected 10-11 [13->-a1]\n\
                    c3 127.0.0.1:7002@17002 slave a1 0 1 1 connected\n";
        let wait = ReplicaWait::from_topology(Duration::from_millis(1), &parse_cluster_nodes(text));
        let unreplicated: Vec<Slot> = (0..14)
            .filter_map(Slot::new)
            .filter(|s| wait.unreplicated.contains(s))
            .collect();
        assert_eq!(
            unreplicated,
            vec![Slot::new(10).unwrap(), Slot::new(11).unwrap()]
        );
    }

    #[test]
    fn commands_route_by_their_first_key() {
        let mut fcall = redis::cmd("FCALL");
        fcall.arg("lib").arg(1).arg("k{t}").arg("x");
        assert_eq!(routing_key(&fcall), Some(b"k{t}".to_vec()));
        let mut get = redis::cmd("GET");
        get.arg("key");
        assert_eq!(routing_key(&get), Some(b"key".to_vec()));
        assert_eq!(routing_key(&redis::cmd("PING")), None);
    }
}
