//! The `courier-smol` binary's command line: usage errors and missing files exit 2 with a
//! message naming the problem; `--help` succeeds.

use std::process::{Command, Output};

fn courier(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_courier-smol"))
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("the binary runs")
}

#[test]
fn a_missing_config_file_is_named_and_exits_2() {
    let output = courier(&["--config", "/nonexistent/config.yml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/config.yml"), "{stderr}");
    let output = courier(&["--sites", "missing-sites.yml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing-sites.yml"));
}

#[test]
fn usage_errors_exit_2_and_help_succeeds() {
    assert_eq!(
        courier(&["--bind", "not-an-address"]).status.code(),
        Some(2)
    );
    assert_eq!(courier(&["--no-such-flag"]).status.code(), Some(2));
    let help = courier(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--config", "--sites", "--bind", "--demo"] {
        assert!(text.contains(flag), "{text}");
    }
}
