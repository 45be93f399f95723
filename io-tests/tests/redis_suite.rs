//! The model-based property suite of the queue (courier-core's `store::suite`) against the
//! Redis store on a real redis-server: the same random command sequences as the model and the
//! in-memory store, every result compared, including the suite's "store lost everything" step
//! (here: `FLUSHALL`; the scripts stay loaded, so every command keeps its model result — a real
//! restart, which also drops the scripts and the connection, is covered in `redis_store.rs` and
//! by the integration tests).

#[macro_use]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::redis_server::PlainConnection;
use courier_core::gateway::store::suite::{LoseEverything, check_store};
use courier_core::gateway::store::{Store, StoreCommand, StoreResult};
use courier_io::{BlockingRedisStore, RedisTarget, Runtime};
use courier_tests::{Redis, RedisCluster, Resp};

on_both_runtimes!(
    redis_store_matches_the_model,
    with_one_shard_it_matches_the_model,
    with_five_shards_it_matches_the_model,
    on_a_redis_cluster_it_matches_the_model,
);

/// The store under test plus a way to empty the server(s) behind its back.
struct Flushable<'a, R: Runtime> {
    store: BlockingRedisStore<R>,
    admin: Admin<'a>,
}

/// How the suite's "store lost everything" step reaches Redis.
enum Admin<'a> {
    Node(redis::Connection),
    /// `FLUSHALL` on every master.
    Cluster(&'a RedisCluster),
}

impl<R: Runtime> Store for Flushable<'_, R> {
    fn execute(&mut self, command: StoreCommand) -> StoreResult {
        self.store.execute(command)
    }
}

impl<R: Runtime> LoseEverything for Flushable<'_, R> {
    fn lose_everything(&mut self) {
        match &mut self.admin {
            Admin::Node(connection) => {
                let () = redis::cmd("FLUSHALL").query(connection).expect("FLUSHALL");
            }
            Admin::Cluster(cluster) => {
                for port in cluster.masters() {
                    assert_eq!(
                        cluster.cmd_on(port, &["FLUSHALL"]),
                        Resp::Simple("OK".into())
                    );
                }
            }
        }
    }
}

/// 48 random command sequences; each case gets its own key prefix, so cases never see each
/// other's data (a flush only ever meets the current case's keys: cases run one at a time).
fn redis_store_matches_the_model<R: Runtime + Clone>(runtime: R) {
    matches_the_model(runtime, courier_io::DEFAULT_SHARDS);
}

/// Every user in one shard: every command of a batch in one script call.
fn with_one_shard_it_matches_the_model<R: Runtime + Clone>(runtime: R) {
    matches_the_model(runtime, 1);
}

fn with_five_shards_it_matches_the_model<R: Runtime + Clone>(runtime: R) {
    matches_the_model(runtime, 5);
}

fn matches_the_model<R: Runtime + Clone>(runtime: R, shards: u32) {
    let server = Redis::start();
    let url = server.url();
    let case = AtomicU32::new(0);
    check_store(
        || {
            let prefix = format!("suite{}", case.fetch_add(1, Ordering::Relaxed));
            Flushable {
                store: BlockingRedisStore::open_sharded(runtime.clone(), &url, &prefix, shards)
                    .expect("redis store opens"),
                admin: Admin::Node(server.connection()),
            }
        },
        48,
    );
}

/// The same suite on a Redis Cluster of 3 masters and 3 replicas: every call routed to its
/// slot's master, pipelines split per slot. One cluster for the three shard counts (each case
/// has its own prefix), so the binary starts one cluster per runtime.
fn on_a_redis_cluster_it_matches_the_model<R: Runtime + Clone>(runtime: R) {
    let cluster = RedisCluster::start(3);
    let target = RedisTarget::Cluster(cluster.seed_urls());
    let case = AtomicU32::new(0);
    for shards in [courier_io::DEFAULT_SHARDS, 1, 5] {
        check_store(
            || {
                let prefix = format!("suite{}", case.fetch_add(1, Ordering::Relaxed));
                Flushable {
                    store: BlockingRedisStore::open_target(
                        runtime.clone(),
                        &target,
                        &prefix,
                        shards,
                    )
                    .expect("redis store opens"),
                    admin: Admin::Cluster(&cluster),
                }
            },
            24,
        );
    }
}
