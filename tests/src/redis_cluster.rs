//! A private Redis Cluster per test binary or test: N masters and N replicas of the
//! distribution's `redis-server --cluster-enabled yes` on free loopback ports in a temp dir,
//! joined by `redis-cli --cluster create … --cluster-replicas 1`, with the helpers failover
//! tests need (the master serving a key's slot, `kill -9` of a master and waiting for its
//! replica's promotion). Every process is stopped on drop.
//!
//! Fast on purpose: no persistence, a node timeout of one second (a killed master is failed
//! over about two seconds later), and every replica may be promoted whatever its lag
//! (`cluster-replica-validity-factor 0`): the tests want the failover, not its safety margins.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::redis::{Resp, roundtrip};
use crate::tempdir::TempDir;
use crate::wait::{free_port, wait_until};

/// How long a cluster may take to form, or to fail over and be whole again.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(30);
/// `cluster-node-timeout`: how long a master may be silent before its replica takes over.
const NODE_TIMEOUT_MS: u32 = 1000;

/// One `redis-server` of the cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    /// The node-to-node bus port (given explicitly: the default, port + 10000, may be taken
    /// or past 65535 for an ephemeral port).
    bus_port: u16,
    child: Option<Child>,
}

/// A running Redis Cluster; every node is killed when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: TempDir,
}

impl RedisCluster {
    /// Starts `masters` masters with one replica each and waits until every node says
    /// `cluster_state:ok`. Panics (naming what is missing) when redis-server or redis-cli is
    /// not installed or the cluster does not form.
    pub fn start(masters: usize) -> RedisCluster {
        assert!(masters >= 3, "Redis Cluster needs at least 3 masters");
        let dir = TempDir::new("redis-cluster");
        let mut nodes = Vec::with_capacity(masters * 2);
        for _ in 0..masters * 2 {
            let mut node = Node {
                port: free_port(),
                bus_port: free_port(),
                child: None,
            };
            start_node(&mut node, &dir);
            nodes.push(node);
        }
        let cluster = RedisCluster { nodes, dir };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli (run scripts/install-deps): {e}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_whole();
        assert_eq!(
            cluster.masters().len(),
            masters,
            "the cluster should have {masters} masters"
        );
        cluster.wait_replicas_synced();
        cluster
    }

    /// Waits until every replica's link to its master is up (`ROLE` says `connected`): only
    /// then does a write reach it.
    pub fn wait_replicas_synced(&self) {
        let synced = wait_until(CLUSTER_PATIENCE, || {
            self.replicas().into_iter().all(|port| {
                matches!(node_cmd(port, &["ROLE"]), Ok(Resp::Array(Some(role)))
                    if role.get(3).and_then(Resp::text).as_deref() == Some("connected"))
            })
        });
        assert!(synced, "the replicas did not finish their first sync");
    }

    /// `redis://127.0.0.1:<port>` of every node (masters and replicas), the seeds for
    /// `REDIS_CLUSTER_URLS` or `redis: {cluster: [...]}`.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// The ports of every node started (running or killed).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// Runs one command on the node at `port`; panics on I/O failure (not on `-ERR`).
    pub fn cmd_on(&self, port: u16, args: &[&str]) -> Resp {
        node_cmd(port, args).unwrap_or_else(|e| panic!("redis {port} {args:?}: {e}"))
    }

    /// Runs one command on the master serving `key`'s slot.
    pub fn cmd_for_key(&self, key: &str, args: &[&str]) -> Resp {
        self.cmd_on(self.master_of(key), args)
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let reply = self.cmd_on(self.any_live_port(), &["CLUSTER", "KEYSLOT", key]);
        u16::try_from(reply.int()).expect("slot number")
    }

    /// The port of the master serving `key`'s slot, as the cluster sees it now.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        self.slot_masters(self.any_live_port())
            .into_iter()
            .find(|(range, _)| range.contains(&slot))
            .map(|(_, port)| port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The ports of the masters that serve slots now.
    pub fn masters(&self) -> Vec<u16> {
        let ports: BTreeSet<u16> = self
            .slot_masters(self.any_live_port())
            .into_iter()
            .map(|(_, port)| port)
            .collect();
        ports.into_iter().collect()
    }

    /// The ports of the running nodes that are replicas now.
    pub fn replicas(&self) -> Vec<u16> {
        let masters = self.masters();
        self.live_ports()
            .into_iter()
            .filter(|port| !masters.contains(port))
            .collect()
    }

    /// `kill -9` of the master serving `key`'s slot, then waits until a replica took its slots
    /// over and every remaining node says `cluster_state:ok`. Returns the killed port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let port = self.master_of(key);
        self.kill(port);
        let promoted = wait_until(CLUSTER_PATIENCE, || {
            let Some(live) = self.live_ports().into_iter().next() else {
                return false;
            };
            let masters = slot_masters_of(live).unwrap_or_default();
            !masters.is_empty() && masters.iter().all(|(_, master)| *master != port)
        });
        assert!(promoted, "no replica took over from the master on {port}");
        self.wait_whole();
        port
    }

    /// `kill -9` of the node on `port` (it stays down).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        stop(node);
    }

    /// Every key matching `pattern` on every master, sorted (KEYS: fine for a test's private
    /// cluster).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .masters()
            .into_iter()
            .flat_map(|port| self.cmd_on(port, &["KEYS", pattern]).strings())
            .collect();
        keys.sort();
        keys
    }

    /// Waits until every running node says `cluster_state:ok` and knows every slot's master.
    pub fn wait_whole(&self) {
        let ok = wait_until(CLUSTER_PATIENCE, || {
            let live = self.live_ports();
            !live.is_empty()
                && live.iter().all(|port| {
                    node_cmd(*port, &["CLUSTER", "INFO"])
                        .ok()
                        .and_then(|reply| match reply {
                            Resp::Bulk(Some(text)) => Some(text),
                            _ => None,
                        })
                        .is_some_and(|text| {
                            String::from_utf8_lossy(&text).contains("cluster_state:ok")
                        })
                        && slot_masters_of(*port).is_ok_and(|masters| {
                            masters.iter().map(|(r, _)| r.len()).sum::<usize>() == 16384
                        })
                })
        });
        assert!(
            ok,
            "the Redis Cluster in {} did not reach cluster_state:ok on every node",
            self.dir.path().display()
        );
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    fn any_live_port(&self) -> u16 {
        *self
            .live_ports()
            .first()
            .expect("every node of the cluster is down")
    }

    fn slot_masters(&self, port: u16) -> Vec<(std::ops::Range<u16>, u16)> {
        slot_masters_of(port).unwrap_or_else(|e| panic!("CLUSTER SLOTS on {port}: {e}"))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            stop(node);
        }
    }
}

fn start_node(node: &mut Node, dir: &TempDir) {
    let node_dir = dir.path().join(node.port.to_string());
    std::fs::create_dir_all(&node_dir).expect("create the node's directory");
    let child = Command::new("redis-server")
        .args(["--port", &node.port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-port", &node.bus_port.to_string()])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        .args(["--cluster-replica-validity-factor", "0"])
        // A replica syncs at once (the default waits 5 s for more replicas to share a sync).
        .args(["--repl-diskless-sync-delay", "0"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--logfile", "redis.log"])
        .arg("--dir")
        .arg(&node_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server (run scripts/install-deps): {e}"));
    node.child = Some(child);
    let port = node.port;
    let up = wait_until(Duration::from_secs(10), || {
        node_cmd(port, &["PING"]).ok() == Some(Resp::Simple("PONG".into()))
    });
    if !up {
        stop(node);
        panic!(
            "redis-server --cluster-enabled on port {port} did not answer PING (log: {})",
            node_dir.join("redis.log").display()
        );
    }
}

fn stop(node: &mut Node) {
    if let Some(mut child) = node.child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn node_cmd(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    roundtrip(TcpStream::connect(("127.0.0.1", port))?, args)
}

/// `CLUSTER SLOTS` on `port`: each slot range with its master's port.
fn slot_masters_of(port: u16) -> Result<Vec<(std::ops::Range<u16>, u16)>, String> {
    let reply = node_cmd(port, &["CLUSTER", "SLOTS"]).map_err(|e| e.to_string())?;
    let Resp::Array(Some(ranges)) = reply else {
        return Err(format!("unexpected reply {reply:?}"));
    };
    let number = |value: &Resp| match value {
        Resp::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    ranges
        .iter()
        .map(|range| {
            let Resp::Array(Some(parts)) = range else {
                return Err(format!("unexpected range {range:?}"));
            };
            let start = parts.first().and_then(number);
            let end = parts.get(1).and_then(number);
            let master = match parts.get(2) {
                Some(Resp::Array(Some(node))) => node.get(1).and_then(number),
                _ => None,
            };
            match (start, end, master) {
                (Some(start), Some(end), Some(master)) => Ok((start..end + 1, master)),
                _ => Err(format!("unexpected range {range:?}")),
            }
        })
        .collect()
}
