//! The binaries' command line: usage errors and missing files exit 2 with a message naming the
//! problem, `--help` lists the flags, and `--demo` refuses a non-loopback address and prints a
//! ready-made `curl`.

use std::process::{Command, Output};
use std::time::Duration;

use courier_tests::{Bin, TempDir, free_port, json, scenario, send_json, wait_until};

fn courier(bin: Bin, args: &[&str]) -> Output {
    let dir = TempDir::new("cli");
    Command::new(bin.path())
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("the binary runs")
}

scenario!(a_missing_config_file_is_named_and_exits_2, |bin| {
    let output = courier(bin, &["--config", "/nonexistent/config.yml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/config.yml"), "{stderr}");
    let output = courier(bin, &["--sites", "missing-sites.yml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing-sites.yml"));
});

scenario!(usage_errors_exit_2_and_help_succeeds, |bin| {
    assert_eq!(
        courier(bin, &["--bind", "not-an-address"]).status.code(),
        Some(2)
    );
    assert_eq!(courier(bin, &["--no-such-flag"]).status.code(), Some(2));
    let help = courier(bin, &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--config", "--sites", "--bind", "--demo"] {
        assert!(text.contains(flag), "{text}");
    }
});

scenario!(demo_refuses_a_public_address, |bin| {
    let output = courier(bin, &["--demo", "--bind", "0.0.0.0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
});

scenario!(demo_serves_the_demo_site_and_prints_a_curl, |bin| {
    let port = free_port();
    let dir = TempDir::new("demo");
    let child = Command::new(bin.path())
        .args(["--demo", "--bind", "127.0.0.1"])
        .env("PORT", port.to_string())
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Killed however the scenario ends, so a failed assertion never leaves a server behind.
    let mut server = KillOnDrop(Some(child));
    let listening = wait_until(Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let accepted = listening.then(|| {
        let body = json!({"rooms": ["user_alice"], "event": "hello", "args": ["world"]});
        send_json(port, "demo", "demo", "", &body)
    });
    let mut child = server.0.take().expect("the server process");
    let _ = child.kill();
    let output = child.wait_with_output().expect("the binary exits");
    assert!(listening, "the demo server never listened on {port}");
    assert_eq!(accepted.map(|response| response.status), Some(200));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "curl -X POST 'http://127.0.0.1:{port}/send?site=demo&apiKey=demo'"
        )),
        "{stderr}"
    );
});

/// A child process killed when dropped.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
