//! Polling waits with deadlines.

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

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}
