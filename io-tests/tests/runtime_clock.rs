//! courier-io reads time only through its `Runtime`: served by a runtime whose clocks are moved
//! (the wall clock to a fixed day in 2000, the monotonic clock an hour ahead, its timers moved
//! with it), the driver hands the engine that wall clock, the in-memory store's commands and
//! sweeps carry it, and every timer still fires. A deadline taken from the real clock would be
//! an hour behind the runtime's and a check against the real clock would never see the moved
//! deadlines pass, so the sweep would not run and requests would not be answered.

#[macro_use]
mod common;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::engine::TestEngine;
use common::{TestServer, eventually, request};
use courier_core::gateway::store::{Store, StoreCommand, StoreResult};
use courier_io::{BoxFuture, Limits, Runtime, Setup, StoreSetup};

on_both_runtimes!(the_driver_and_the_store_use_the_runtimes_clocks);

/// 2000-02-29T00:00:00.000Z.
const WALL_CLOCK: u64 = 951_782_400_000;
/// How far the moved monotonic clock is ahead of the real one.
const AHEAD: Duration = Duration::from_secs(3600);

/// `R` with its clocks moved: a fixed wall clock, a monotonic clock [`AHEAD`] of the real one
/// (timers translated back, so they fire when the moved clock says they are due).
#[derive(Clone)]
struct MovedClocks<R>(R);

impl<R: Runtime> Runtime for MovedClocks<R> {
    type Stream = R::Stream;
    type Listener = R::Listener;
    type Sleep = R::Sleep;
    const NAME: &'static str = R::NAME;

    fn spawn(&self, future: BoxFuture<()>) {
        self.0.spawn(future);
    }

    fn now(&self) -> Instant {
        self.0.now() + AHEAD
    }

    fn unix_ms(&self) -> u64 {
        WALL_CLOCK
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        self.0
            .sleep_until(deadline.checked_sub(AHEAD).unwrap_or(deadline))
    }

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        self.0.bind(addr)
    }

    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        self.0.connect(host, port)
    }

    fn shutdown_signal(&self) -> BoxFuture<()> {
        self.0.shutdown_signal()
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

/// Records the wall clock of each `Connect` it runs.
struct ClockRecordingStore(Arc<Mutex<Vec<u64>>>);

impl Store for ClockRecordingStore {
    fn execute(&mut self, command: StoreCommand) -> StoreResult {
        if let StoreCommand::Connect { now_ms, .. } = command {
            self.0.lock().expect("clocks").push(now_ms);
        }
        StoreResult::Connected {
            items: vec![],
            more: false,
        }
    }
}

fn the_driver_and_the_store_use_the_runtimes_clocks<R: Runtime>(runtime: R) {
    let commands = Arc::new(Mutex::new(Vec::new()));
    let sweeps = Arc::new(Mutex::new(Vec::new()));
    let swept = Arc::clone(&sweeps);
    let setup = Setup {
        max_payload: 1024,
        store: StoreSetup::memory(
            ClockRecordingStore(Arc::clone(&commands)),
            Duration::from_millis(20),
            move |_store, unix_ms| swept.lock().expect("sweeps").push(unix_ms),
        ),
        node_ids: vec![1],
        first_log_line: "Runtime clock test".into(),
        limits: Limits::default(),
        ops: courier_io::OpsSetup::default(),
    };
    let (engine, stats) = TestEngine::new();
    let server = TestServer::start(MovedClocks(runtime), engine, setup);
    assert_eq!(
        request(server.addr, "POST", "/store/connect", b"phone").status,
        202
    );
    eventually("the store's result", || {
        stats.lock().expect("stats").store_results.len() == 1
    });
    eventually("the sweep ran a few times", || {
        sweeps.lock().expect("sweeps").len() >= 3
    });
    server.stop_within(Duration::from_secs(5));
    assert_eq!(stats.lock().expect("stats").wall_clock_ms, WALL_CLOCK);
    assert!(
        commands
            .lock()
            .expect("clocks")
            .iter()
            .all(|&at| at == WALL_CLOCK)
    );
    assert!(
        sweeps
            .lock()
            .expect("sweeps")
            .iter()
            .all(|&at| at == WALL_CLOCK)
    );
}
