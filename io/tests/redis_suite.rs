//! The model-based property suite of the queue (courier-core's `store::suite`) against the
//! Redis store on a real redis-server: the same random command sequences as the model and the
//! in-memory store, every result compared (DESIGN.md §5).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::redis_server::RedisServer;
use courier_core::gateway::store::suite::check_store;
use courier_io::{BlockingRedisStore, Runtime};

/// Each case gets its own key prefix, so cases never see each other's data.
fn run_suite<R: Runtime + Clone>(runtime: R, cases: u32) {
    let server = RedisServer::start();
    let url = server.url();
    let case = AtomicU32::new(0);
    check_store(
        || {
            let prefix = format!("suite{}", case.fetch_add(1, Ordering::Relaxed));
            BlockingRedisStore::open(runtime.clone(), &url, &prefix).expect("redis store opens")
        },
        cases,
    );
}

#[test]
fn redis_store_matches_the_model_on_tokio() {
    run_suite(
        courier_tokio::TokioRuntime::new().expect("tokio runtime"),
        48,
    );
}

#[test]
fn redis_store_matches_the_model_on_smol() {
    run_suite(courier_smol::SmolRuntime::new(), 48);
}
