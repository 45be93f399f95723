//! The model-based property suite of the queue (courier-core's `store::suite`) against the
//! Redis store on a real redis-server: the same random command sequences as the model and the
//! in-memory store, every result compared, including the suite's "store lost everything" step
//! (here: `FLUSHALL`; the scripts stay loaded, so every command keeps its model result — a real
//! restart, which also drops the scripts and the connection, is covered in `redis_store.rs` and
//! by the integration tests).

#[macro_use]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::redis_server::RedisServer;
use courier_core::gateway::store::suite::{LoseEverything, check_store};
use courier_core::gateway::store::{Store, StoreCommand, StoreResult};
use courier_io::{BlockingRedisStore, Runtime};

on_both_runtimes!(
    redis_store_matches_the_model,
    with_one_shard_it_matches_the_model,
    with_five_shards_it_matches_the_model,
);

/// The store under test plus a plain connection to empty the server behind its back.
struct Flushable<R: Runtime> {
    store: BlockingRedisStore<R>,
    admin: redis::Connection,
}

impl<R: Runtime> Store for Flushable<R> {
    fn execute(&mut self, command: StoreCommand) -> StoreResult {
        self.store.execute(command)
    }
}

impl<R: Runtime> LoseEverything for Flushable<R> {
    fn lose_everything(&mut self) {
        let () = redis::cmd("FLUSHALL")
            .query(&mut self.admin)
            .expect("FLUSHALL");
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
    let server = RedisServer::start();
    let url = server.url();
    let case = AtomicU32::new(0);
    check_store(
        || {
            let prefix = format!("suite{}", case.fetch_add(1, Ordering::Relaxed));
            Flushable {
                store: BlockingRedisStore::open_sharded(runtime.clone(), &url, &prefix, shards)
                    .expect("redis store opens"),
                admin: server.connection(),
            }
        },
        48,
    );
}
