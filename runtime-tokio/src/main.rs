//! The `courier-tokio` binary: Courier on tokio.

use std::process::ExitCode;

use courier_tokio::TokioRuntime;

fn main() -> ExitCode {
    match TokioRuntime::for_main("courier") {
        Ok(runtime) => courier_io::cli_main(runtime, courier_io::gateway_app),
        Err(code) => code,
    }
}
