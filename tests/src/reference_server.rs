//! The npm socket.io 4.8 server (`tests/clients/node/reference-server.js`, `allowEIO3`), used to
//! prove the client drivers right independently of Courier.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::Value;

use crate::paths::node_clients_dir;

/// A running reference server; stopped when dropped.
#[derive(Debug)]
pub struct ReferenceServer {
    port: u16,
    child: Child,
    _stdin: ChildStdin,
}

impl ReferenceServer {
    /// Starts it on a free port and waits for it to listen.
    pub fn start() -> ReferenceServer {
        let mut child = Command::new("node")
            .current_dir(node_clients_dir())
            .arg("reference-server.js")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the reference server: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut first)
            .expect("read the reference server's port line");
        let port = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("reference server printed {first:?} instead of its port"));
        ReferenceServer {
            port,
            child,
            _stdin: stdin,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
