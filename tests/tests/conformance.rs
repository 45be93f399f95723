//! The conformance example of each runtime (`conformance`, `conformance-smol`): the Socket.IO
//! engine as the protocol test-suites expect it, driven by real clients of both generations.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use courier_tests::{
    Client, Lib, PollingSession, RawWebSocket, ReferenceServer, TempDir, Transports, free_port,
    json, wait_until, workspace_root,
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

    for eio in [4, 3] {
        extra_websocket_is_closed(server.port, eio);
    }
}

/// A WebSocket naming a session that is probing a WebSocket, or has upgraded to one, is accepted
/// (`101`) and closed at once — a close frame without a status code (1005 to the client),
/// nothing sent before it; the session goes on over its first WebSocket. This is what engine.io
/// does (checked against the npm reference server below).
fn extra_websocket_is_closed(port: u16, eio: u8) {
    let polling = PollingSession::handshake(port, eio, "");
    let target = format!(
        "/socket.io/?EIO={eio}&transport=websocket&sid={}",
        polling.sid
    );
    let closed_at_once = || {
        let mut extra = RawWebSocket::connect(port, &target);
        assert_eq!(
            extra.recv_close(Duration::from_secs(10)),
            Some((vec![], 1005)),
            "EIO={eio}: the extra WebSocket is closed at once, nothing sent"
        );
    };
    let mut first = RawWebSocket::connect(port, &target);
    closed_at_once(); // while the first one has not probed yet
    first.send_text("2probe");
    first.recv_until(|m| m == "3probe");
    first.send_text("5");
    closed_at_once(); // after the upgrade
    // The upgraded session still answers: a v3 client pings (and gets a pong), a v4 client
    // CONNECTs to `/` (answering the server's pings meanwhile: the conformance server pings
    // every 300 ms and waits 200 ms).
    let (question, answer) = if eio == 3 { ("2", "3") } else { ("40", "40") };
    first.send_text(question);
    loop {
        let message = first
            .recv_text(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("EIO={eio}: the upgraded session stopped answering"));
        if message == "2" && eio == 4 {
            first.send_text("3");
        } else if message.starts_with(answer) {
            break;
        }
    }
    first.close();
}

#[test]
fn the_reference_server_closes_an_extra_websocket_of_a_session() {
    let server = ReferenceServer::start();
    for eio in [4, 3] {
        extra_websocket_is_closed(server.port(), eio);
    }
}

#[test]
fn conformance_example_on_tokio() {
    exercise("conformance");
}

#[test]
fn conformance_example_on_smol() {
    exercise("conformance-smol");
}
