//! The `courier-tokio` binary: Courier on tokio.

use std::process::ExitCode;

use courier_io::{App, Startup};
use courier_tokio::TokioRuntime;

fn main() -> ExitCode {
    let runtime = match TokioRuntime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("courier: cannot start tokio: {error}\n").as_bytes(),
            );
            return ExitCode::from(2);
        }
    };
    courier_io::cli_main(runtime, build_app)
}

/// Builds the gateway from the configuration. The gateway engine is wired in by the
/// integration step (config parsing and `courier_core` gateway construction).
fn build_app(_startup: Startup) -> Result<App, String> {
    Err("this build has no gateway engine linked in".to_owned())
}
