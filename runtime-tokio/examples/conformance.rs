//! The conformance server on tokio: courier-core's Socket.IO engine (not the gateway) as the
//! Socket.IO project's protocol test-suites expect it, on 127.0.0.1:3000.
//! Run: `cargo run --release -p courier-tokio --example conformance`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use courier_core::conformance::Conformance;
use courier_tokio::TokioRuntime;

fn main() -> ExitCode {
    let runtime = match TokioRuntime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("conformance: cannot start tokio: {error}\n").as_bytes(),
            );
            return ExitCode::from(2);
        }
    };
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 3000));
    courier_io::serve_engine(
        runtime,
        Box::new(Conformance::new(u64::from(std::process::id()))),
        bind,
    )
}
