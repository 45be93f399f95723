//! The conformance server on tokio: courier-core's Socket.IO engine (not the gateway) as the
//! Socket.IO project's protocol test-suites expect it, on 127.0.0.1:3000 (`PORT` overrides the
//! port, for tests).
//! Run: `cargo run --release -p courier-tokio --example conformance`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use courier_core::conformance::Conformance;
use courier_tokio::TokioRuntime;

fn main() -> ExitCode {
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, courier_io::conformance_port()));
    let engine = Box::new(Conformance::new(u64::from(std::process::id())));
    match TokioRuntime::for_main("conformance") {
        Ok(runtime) => courier_io::serve_engine(runtime, engine, bind),
        Err(code) => code,
    }
}
