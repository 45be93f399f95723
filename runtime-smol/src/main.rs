//! The `courier-smol` binary: Courier on smol.

use std::process::ExitCode;

use courier_smol::SmolRuntime;

fn main() -> ExitCode {
    courier_io::cli_main(SmolRuntime::new(), courier_io::gateway_app)
}
