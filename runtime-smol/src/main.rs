//! The `courier-smol` binary: Courier on smol.

use std::process::ExitCode;

use courier_io::{App, Startup};
use courier_smol::SmolRuntime;

fn main() -> ExitCode {
    courier_io::cli_main(SmolRuntime::new(), build_app)
}

/// Builds the gateway from the configuration. The gateway engine is wired in by the
/// integration step (config parsing and `courier_core` gateway construction).
fn build_app(_startup: Startup) -> Result<App, String> {
    Err("this build has no gateway engine linked in".to_owned())
}
