//! courier-io: Courier's runtime-agnostic I/O glue (ARCHITECTURE.md).
//!
//! It drives any [`courier_core::net::Engine`]: the HTTP/WebSocket server (hyper 1,
//! async-tungstenite), outbound HTTP calls (hyper client, rustls), the Redis store and cluster
//! bus, logging, the command line and configuration files. It is written once against the small
//! [`Runtime`] trait; `courier-tokio` and `courier-smol` implement it and call [`cli_main`].
//!
//! Integration, in short:
//! ```text
//! fn main() -> ExitCode {
//!     courier_io::cli_main(MyRuntime::new(), |startup| build_app(startup))
//! }
//! ```
//! where `build_app` parses `startup.files` / `startup.env` and returns an [`App`].

#![warn(missing_docs)]

#[cfg(feature = "jemalloc")]
mod allocator;
mod app;
mod bus;
mod cli;
mod client;
mod coalesce;
mod driver;
mod engines;
mod hyper_glue;
mod linger;
pub mod logging;
mod nodes;
pub mod ops;
mod redis_conn;
mod redis_store;
mod request_body;
mod runtime;
mod serve;
mod server;
mod setup;
mod ws;

pub use app::gateway_app;
pub use bus::{channel as bus_channel, node_channel as bus_node_channel};
pub use cli::cli_main;
pub use client::HttpClient;
pub use redis_conn::{Primary, RedisConnection, RedisTarget};
pub use redis_store::{
    BlockingRedisStore, DEFAULT_SHARDS, LAYOUT_VERSION, LayoutError, Liveness, RedisStore,
    escape as escape_key_part, node_id, shard_of,
};
pub use runtime::{BoxFuture, Connection, Listener, Runtime, system_unix_ms};
pub use serve::{DEFAULT_MAX_PAYLOAD, Running, conformance_port, serve_engine, start};
pub use setup::{
    App, ConfigFiles, HeartbeatSetup, Limits, MemoryStoreSetup, OpsSetup, Setup, Startup,
    StoreSetup,
};
