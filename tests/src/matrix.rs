//! Client combinations ([`Lib`] × [`Transports`]) and a runner that drives them concurrently.
//!
//! Every library works over every transport against the reference server (see
//! `harness_selftest.rs`), including the Python clients over pure WebSocket with the pinned
//! websocket-client, so the full matrix is 15 combinations. Scenarios pick:
//! - [`full`] where the protocol path matters: connect/auth, live delivery + ack, offline batch;
//! - [`one_per_lib`] (5 combinations, transports rotated) where the protocol revision matters
//!   but the transport does not;
//! - [`pair`] (one EIO3 and one EIO4 client) for gateway logic above the protocol.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::client::{Lib, Transports};

/// One client configuration.
pub type Combo = (Lib, Transports);

/// All 15 combinations.
pub fn full() -> Vec<Combo> {
    Lib::ALL
        .iter()
        .flat_map(|&lib| Transports::ALL.iter().map(move |&t| (lib, t)))
        .collect()
}

/// One combination per library, the transports rotated so each appears.
pub fn one_per_lib() -> Vec<Combo> {
    vec![
        (Lib::Sio1, Transports::Polling),
        (Lib::Sio2, Transports::Websocket),
        (Lib::Sio4, Transports::Upgrade),
        (Lib::Py4, Transports::Upgrade),
        (Lib::Py5, Transports::Polling),
    ]
}

/// One EIO3 client (socket.io-client 2, upgrading) and one EIO4 client (socket.io-client 4,
/// WebSocket only).
pub fn pair() -> Vec<Combo> {
    vec![
        (Lib::Sio2, Transports::Upgrade),
        (Lib::Sio4, Transports::Websocket),
    ]
}

/// Runs `body(index, lib, transports)` for every combination, each on its own thread, all at
/// once (the processes mostly wait on I/O). Panics after all finished if any failed, naming
/// each failed combination with its message. `index` lets a body pick distinct users/devices.
pub fn for_each<F>(combos: &[Combo], body: F)
where
    F: Fn(usize, Lib, Transports) + Sync,
{
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = combos
            .iter()
            .enumerate()
            .map(|(i, &(lib, transports))| {
                let body = &body;
                scope.spawn(move || {
                    catch_unwind(AssertUnwindSafe(|| body(i, lib, transports)))
                        .err()
                        .map(|e| {
                            let msg = e
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "(non-string panic)".into());
                            format!("[{}/{}] {msg}", lib.name(), transports.name())
                        })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    if !failures.is_empty() {
        panic!(
            "{} of {} client combinations failed:\n{}",
            failures.len(),
            combos.len(),
            failures.join("\n\n")
        );
    }
}
