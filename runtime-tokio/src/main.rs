//! The `courier-tokio` binary: Courier on tokio.

use std::process::ExitCode;

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
    courier_io::cli_main(runtime, courier_io::gateway_app)
}
