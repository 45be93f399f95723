//! The conformance example of each runtime (`conformance`, `conformance-smol`): the Socket.IO
//! engine as the protocol test-suites expect it, driven by real clients of both generations.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use courier_tests::{
    Client, Lib, TempDir, Transports, free_port, json, wait_until, workspace_root,
};

struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(example: &str) -> Server {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug/examples").join(example);
    assert!(
        path.is_file(),
        "{} is not built (cargo build --workspace --examples)",
        path.display()
    );
    let port = free_port();
    let dir = TempDir::new("conformance");
    let child = Command::new(&path)
        .env("PORT", port.to_string())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the conformance example runs");
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    assert!(
        wait_until(Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "{example} never listened on {port}"
    );
    server
}

fn exercise(example: &str) {
    let server = start(example);
    // Socket.IO 5 over WebSocket: the auth object comes back, events and acks echo.
    let mut modern = Client::builder(Lib::Sio4, Transports::Websocket)
        .namespace("/custom")
        .auth(json!({"token": "123"}))
        .connect(server.port);
    modern.expect_connect();
    assert_eq!(
        modern.expect_event("auth").args,
        vec![json!({"token": "123"})]
    );
    modern.emit("message", vec![json!(1), json!("two"), json!({"three": 3})]);
    assert_eq!(
        modern.expect_event("message-back").args,
        vec![json!(1), json!("two"), json!({"three": 3})]
    );
    let acked = modern.emit_with_ack(
        "message-with-ack",
        vec![json!(4), json!("five")],
        Duration::from_secs(5),
    );
    assert_eq!(acked, Some(vec![json!(4), json!("five")]));
    modern.close();

    // Socket.IO 4 (Engine.IO 3) over polling then upgrade.
    let mut legacy = Client::builder(Lib::Sio2, Transports::Upgrade).connect(server.port);
    legacy.expect_connect();
    assert_eq!(legacy.expect_event("auth").args, vec![json!({})]);
    legacy.emit("message", vec![json!("legacy")]);
    assert_eq!(
        legacy.expect_event("message-back").args,
        vec![json!("legacy")]
    );
    legacy.close();

    // Any other namespace is refused.
    let mut refused = Client::builder(Lib::Sio4, Transports::Polling)
        .namespace("/random")
        .connect(server.port);
    refused.expect_connect_error("Invalid namespace");
    refused.close();
}

#[test]
fn conformance_example_on_tokio() {
    exercise("conformance");
}

#[test]
fn conformance_example_on_smol() {
    exercise("conformance-smol");
}
