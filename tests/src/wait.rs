//! Polling waits with deadlines.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long any expectation waits before failing, unless told otherwise. Generous because CI
/// has two cores shared by compilers, node and python processes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Polls `condition` every 20 ms until it holds; false when `timeout` passed first.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released), and that
/// this process has not handed out before: tests run in parallel threads, and two fixtures
/// given the same port would talk to each other's servers.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port)
        {
            return port;
        }
    }
}
