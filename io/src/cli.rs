//! The command line shared by both binaries, and reading the configuration files.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::logging;
use crate::runtime::Runtime;
use crate::serve::{run_to_exit, writeln_stderr};
use crate::setup::{App, ConfigFiles, Startup};

/// `courier-tokio` / `courier-smol`: the Socket.IO push gateway.
#[derive(Debug, Clone, Parser)]
#[command(version, about = "Courier: a Socket.IO push gateway")]
pub struct Cli {
    /// config.yml to read (default: ./config.yml when it exists).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// sites.yml to read (default: ./sites.yml when it exists).
    #[arg(long, value_name = "PATH")]
    pub sites: Option<PathBuf>,
    /// Address to listen on; the port comes from the configuration.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,
    /// Run with the built-in demo site.
    #[arg(long)]
    pub demo: bool,
}

/// Reads the configuration files: an explicitly given path must exist; the defaults
/// (`./config.yml`, `./sites.yml`) are read when present. The error names the file.
pub fn read_config_files(
    config: Option<&Path>,
    sites: Option<&Path>,
) -> Result<ConfigFiles, String> {
    Ok(ConfigFiles {
        config_yml: read_optional(config, Path::new("config.yml"))?,
        sites_yml: read_optional(sites, Path::new("sites.yml"))?,
    })
}

fn read_optional(
    given: Option<&Path>,
    default: &Path,
) -> Result<Option<(PathBuf, String)>, String> {
    let path = match given {
        Some(path) => path,
        None if default.exists() => default,
        None => return Ok(None),
    };
    std::fs::read_to_string(path)
        .map(|text| Some((path.to_path_buf(), text)))
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// The process environment as UTF-8 pairs (others are left out).
pub fn environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// The whole life of a binary: parse the command line, read the configuration files, let
/// `factory` build the application, serve it until SIGTERM/SIGINT. A usage error, a missing
/// file, a factory error or a failed bind is printed to stderr with exit code 2.
pub fn cli_main<R: Runtime>(
    runtime: R,
    factory: impl FnOnce(Startup) -> Result<App, String>,
) -> ExitCode {
    #[cfg(feature = "jemalloc")]
    crate::allocator::purge_in_background();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version print to stdout and succeed; real errors exit 2.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let env = environment();
    logging::init(&runtime, env.get("RUST_LOG").map(String::as_str));
    let files = match read_config_files(cli.config.as_deref(), cli.sites.as_deref()) {
        Ok(files) => files,
        Err(message) => return fail(&message),
    };
    let startup = Startup {
        files,
        env,
        bind: cli.bind,
        demo: cli.demo,
        unix_ms: runtime.unix_ms(),
    };
    let app = match factory(startup) {
        Ok(app) => app,
        Err(message) => return fail(&message),
    };
    let bind = SocketAddr::new(cli.bind, app.port);
    run_to_exit(runtime, app.engines, app.setup, bind)
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln_stderr(message);
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_explicit_file_is_an_error_naming_it() {
        let error = read_config_files(Some(Path::new("/nonexistent/courier.yml")), None)
            .expect_err("missing file");
        assert!(error.contains("/nonexistent/courier.yml"), "{error}");
    }

    #[test]
    fn parses_the_flags() {
        let cli = Cli::try_parse_from(["courier", "--bind", "127.0.0.1", "--demo"]).expect("ok");
        assert_eq!(cli.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(cli.demo);
        assert!(Cli::try_parse_from(["courier", "--bind", "nope"]).is_err());
    }
}
