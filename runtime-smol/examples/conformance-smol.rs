//! The conformance server on smol: courier-core's Socket.IO engine (not the gateway) as the
//! Socket.IO project's protocol test-suites expect it, on 127.0.0.1:3000 (`PORT` overrides the
//! port, for tests).
//! Run: `cargo run --release -p courier-smol --example conformance-smol`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use courier_core::conformance::Conformance;
use courier_smol::SmolRuntime;

fn main() -> ExitCode {
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, courier_io::conformance_port()));
    let seed = u64::from(std::process::id());
    courier_io::serve_engine(SmolRuntime::new(), Box::new(Conformance::new(seed)), bind)
}
