//! The model-based property suite of the queue (courier-core's `store::suite`) against the
//! Redis store on a real redis-server: the same random command sequences as the model and the
//! in-memory store, every result compared (DESIGN.md §5).

#[macro_use]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::redis_server::RedisServer;
use courier_core::gateway::store::suite::check_store;
use courier_io::{BlockingRedisStore, Runtime};

on_both_runtimes!(redis_store_matches_the_model);

/// 48 random command sequences; each case gets its own key prefix, so cases never see each
/// other's data.
fn redis_store_matches_the_model<R: Runtime + Clone>(runtime: R) {
    let server = RedisServer::start();
    let url = server.url();
    let case = AtomicU32::new(0);
    check_store(
        || {
            let prefix = format!("suite{}", case.fetch_add(1, Ordering::Relaxed));
            BlockingRedisStore::open(runtime.clone(), &url, &prefix).expect("redis store opens")
        },
        48,
    );
}
