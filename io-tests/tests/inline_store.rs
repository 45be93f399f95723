//! An in-process store (`StoreSetup::memory`): commands run inline in the driver, in order, the
//! sweep runs periodically, and a command emitted at shutdown still runs.

#[macro_use]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::engine::TestEngine;
use common::{TestServer, eventually, request};
use courier_core::gateway::store::{Store, StoreCommand, StoreResult};
use courier_io::{Limits, Runtime, Setup, StoreSetup};

on_both_runtimes!(runs_commands_inline_and_sweeps);

/// Records the devices it was asked to connect, in order.
struct RecordingStore {
    devices: Arc<Mutex<Vec<String>>>,
}

impl Store for RecordingStore {
    fn execute(&mut self, command: StoreCommand) -> StoreResult {
        if let StoreCommand::Connect { device, .. } = command {
            self.devices.lock().expect("devices").push(device.device);
        }
        StoreResult::Connected {
            items: vec![],
            more: false,
        }
    }
}

fn runs_commands_inline_and_sweeps<R: Runtime>(runtime: R) {
    let devices = Arc::new(Mutex::new(Vec::new()));
    let sweeps = Arc::new(AtomicUsize::new(0));
    let sweep_count = Arc::clone(&sweeps);
    let store = RecordingStore {
        devices: Arc::clone(&devices),
    };
    let setup = Setup {
        max_payload: 1024,
        store: StoreSetup::memory(store, Duration::from_millis(20), move |_store, unix_ms| {
            assert!(unix_ms > 1_700_000_000_000);
            sweep_count.fetch_add(1, Ordering::Relaxed);
        }),
        node_ids: vec![1],
        first_log_line: "Inline store test".into(),
        limits: Limits::default(),
        ops: courier_io::OpsSetup::default(),
    };
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(runtime, engine, setup);
    for device in ["a", "b", "c"] {
        assert_eq!(
            request(server.addr, "POST", "/store/connect", device.as_bytes()).status,
            202
        );
    }
    eventually("three results", || {
        stats.lock().expect("stats").store_results.len() == 3
    });
    assert!(
        stats
            .lock()
            .expect("stats")
            .store_results
            .iter()
            .all(|(_, r)| *r
                == StoreResult::Connected {
                    items: vec![],
                    more: false
                })
    );
    eventually("the sweep ran a few times", || {
        sweeps.load(Ordering::Relaxed) >= 3
    });
    server.stop_within(Duration::from_secs(5));
    assert_eq!(
        *devices.lock().expect("devices"),
        vec!["a", "b", "c", "at-shutdown"]
    );
}
