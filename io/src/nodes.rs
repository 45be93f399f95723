//! Node liveness: the heartbeat of this node and its reading of every other node's.
//!
//! The registry is one sorted set, `<prefix>:nodes`: member = node id (decimal), score = that
//! node's last heartbeat (its Unix ms). Every `interval` a node, in one pipelined round trip on
//! that key's slot, writes its own heartbeat, prunes entries older than the retention and reads
//! the rest. A node whose heartbeat is older than `timeout` is dead; the store scripts, which
//! cannot read this key (another hash slot), receive the dead nodes with their last heartbeat
//! as arguments ([`Liveness`]) and treat each device whose socket belongs to one as
//! disconnected since that heartbeat. Entries are pruned after the retention, so ids of nodes
//! that died long ago do not accumulate; node ids carry their start time, so a script still
//! recognises a socket of a pruned node (started before the horizon, not listed) as dead.
//! Expiry is logical, decided from the wall clock as everything else in the store, so every
//! node reaches the same verdict from the same registry.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::RedisResult;

use crate::ops::{NodeSeen, Ops};
use crate::redis_store::{Liveness, RedisStore};
use crate::runtime::Runtime;
use crate::setup::HeartbeatSetup;

/// The registry keeps dead nodes at least this long (plus the timeout and `device_ttl`).
const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// The registry key for a key prefix.
pub fn registry_key(prefix: &str) -> String {
    format!("{prefix}:nodes")
}

/// How long a node stays in the registry after its last heartbeat: long enough that its
/// devices' `device_ttl` has run out by then (so the horizon bound is never needed early).
fn retention_ms(setup: &HeartbeatSetup) -> u64 {
    let timeout = u64::try_from(setup.timeout.as_millis()).unwrap_or(u64::MAX);
    let min = u64::try_from(MIN_RETENTION.as_millis()).unwrap_or(u64::MAX);
    timeout.saturating_add(setup.device_ttl_ms.max(min))
}

/// One heartbeat at wall-clock `now` (Unix ms): write ours (one entry per engine of this
/// process, `node_ids`), prune, read the registry; on success the store's scripts and `ops`
/// get the new reading.
///
/// `healthy_since` is when this node's heartbeats started succeeding without a failure since
/// (Unix ms; `None` before the first success). Nobody is declared dead before this node has
/// itself been able to reach Redis for a whole timeout: after Redis was away (or at start),
/// every other node needs that long to get its own heartbeat through, and a node taken for dead
/// would have its devices recorded disconnected for good.
pub(crate) async fn beat(
    store: &RedisStore,
    key: &str,
    setup: &HeartbeatSetup,
    node_ids: &[u64],
    ops: &Ops,
    healthy_since: &mut Option<u64>,
    now: u64,
) -> RedisResult<()> {
    let horizon = now.saturating_sub(retention_ms(setup));
    // One key, so one slot: a plain pipeline on a cluster too.
    let mut connection = store.connection();
    let (entries,): (Vec<(String, f64)>,) = redis::pipe()
        .zadd_multiple(
            key,
            &node_ids
                .iter()
                .map(|id| (now, id.to_string()))
                .collect::<Vec<_>>(),
        )
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(key)
        .arg("-inf")
        .arg(format!("({horizon}"))
        .ignore()
        .cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut connection)
        .await
        .inspect_err(|_| *healthy_since = None)?;
    let timeout = u64::try_from(setup.timeout.as_millis()).unwrap_or(u64::MAX);
    let judging = now.saturating_sub(*healthy_since.get_or_insert(now)) >= timeout;
    let mut nodes = Vec::with_capacity(entries.len());
    let mut dead = Vec::new();
    for (member, score) in entries {
        let Ok(id) = member.parse::<u64>() else {
            continue;
        };
        // Scores are whole milliseconds well below 2^53: exact as f64.
        let last = score as u64;
        let live = node_ids.contains(&id) || !judging || now.saturating_sub(last) <= timeout;
        if !live {
            dead.push((id, last));
        }
        nodes.push(NodeSeen {
            id,
            last_heartbeat_ms: last,
            live,
        });
    }
    store.set_liveness(Liveness {
        dead,
        horizon_ms: horizon,
        device_ttl_ms: setup.device_ttl_ms,
    });
    ops.set_nodes(nodes);
    Ok(())
}

/// Beats every `interval` until the process stops; `store_reachable` follows each outcome.
pub(crate) async fn heartbeat_loop<R: Runtime>(
    runtime: R,
    store: RedisStore,
    setup: HeartbeatSetup,
    node_ids: Vec<u64>,
    ops: Arc<Ops>,
) {
    let key = registry_key(store.prefix());
    let mut warned = false;
    let mut healthy_since = None;
    loop {
        let next = runtime.now() + setup.interval;
        let now = runtime.unix_ms();
        let result = beat(
            &store,
            &key,
            &setup,
            &node_ids,
            &ops,
            &mut healthy_since,
            now,
        )
        .await;
        record(&ops, result, &mut warned);
        runtime.sleep_until(next).await;
    }
}

/// Records the outcome of a heartbeat in `ops` (and logs the first failure of a run).
pub(crate) fn record(ops: &Ops, result: RedisResult<()>, warned: &mut bool) {
    match result {
        Ok(()) => {
            ops.store_reachable.store(true, Ordering::Release);
            *warned = false;
        }
        Err(error) => {
            ops.store_reachable.store(false, Ordering::Release);
            Ops::add(&ops.heartbeat_failures, 1);
            if !*warned {
                tracing::warn!(target: "courier", error = %error, "node heartbeat failed (Redis unreachable?)");
                *warned = true;
            }
        }
    }
}
