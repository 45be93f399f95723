//! The driver: the one task that owns the engine.
//!
//! Connection tasks, the store executor, outbound calls and the cluster bus send [`Input`]s over
//! two channels: `data` (requests and frames, bounded, so a flood of peer input slows its
//! senders instead of growing memory) and `control` (aborts, closes, results; unbounded so that
//! `Drop` guards and result senders never wait). The driver feeds a batch of inputs to the
//! engine, then drains `poll_output()` to `Idle(deadline)` and carries every output out at once,
//! in order, without awaiting anything slow: store commands, calls and publishes are handed to
//! their own tasks. Every `now` it gives the engine comes from the runtime's clocks
//! ([`Runtime::now`], [`Runtime::unix_ms`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use courier_core::gateway::status_response;
use courier_core::gateway::store::{StoreCommand, StoreResult};
use courier_core::net::{
    CallId, CallResult, ConnId, Engine, HttpRequest, HttpResponse, Output, RequestId, StoreCmdId,
    WsFrame,
};
use futures_lite::future;

use crate::bus::Published;
use crate::client::HttpClient;
use crate::logging;
use crate::ops::{self, Ops};
use crate::runtime::Runtime;
use crate::setup::InlineStore;
use crate::ws::{OutboundReceiver, OutboundSender, outbound_queue};
use courier_core::ids::IdMap;

/// How many data inputs (requests, frames) may wait for the driver before senders wait.
const DATA_QUEUE: usize = 1024;
/// How many inputs the driver feeds the engine before draining its outputs.
const BATCH: usize = 64;
/// How often the driver re-checks whether a shutdown has finished draining.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);
/// The driver's timer wakes on a grid of this step, so deadlines that fall within one step of
/// each other are run in one pass. Every idle session has a heartbeat deadline of its own, at
/// an instant set by when it connected or last answered a ping; waking once for each costs a
/// thread wake-up (or several) per session and interval, and most of an idle connection's CPU
/// (BENCHMARKS.md, "What an idle connection costs"). Run in batches, the pings of one step go
/// out together and their pongs come back together. A deadline is run at most this much late;
/// none of the engine's deadlines (heartbeats, upgrades, store and call timeouts, all from
/// 100 ms up) needs more precision.
const TIMER_STEP: Duration = Duration::from_millis(50);

/// What the driver answers a waiting HTTP request with.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Write this response.
    Response(HttpResponse),
    /// Complete the WebSocket upgrade; frames for the connection arrive on this queue.
    Upgrade(OutboundReceiver),
}

/// What the driver tells a WebSocket connection task.
#[derive(Debug)]
pub(crate) enum ConnCommand {
    /// Send a data frame.
    Frame(WsFrame),
    /// Send a close frame with this code and end the connection.
    Close(u16),
}

/// Something for the engine.
#[derive(Debug)]
pub(crate) enum Input {
    Http {
        id: RequestId,
        request: HttpRequest,
        reply: Sender<Reply>,
    },
    HttpAborted(RequestId),
    WsFrame(ConnId, WsFrame),
    WsClosed(ConnId),
    /// The results of one pipeline of store commands, in command order (one input, so one
    /// wake-up of the driver and one pass, for the whole pipeline).
    StoreResults(Vec<(StoreCmdId, StoreResult)>),
    CallResult(CallId, CallResult),
    Remote(Bytes),
    /// A scrape of `/metrics` wants the engine's counters.
    Metrics(Sender<Option<courier_core::metrics::Snapshot>>),
    Shutdown,
}

/// The senders the rest of the process uses to reach the driver. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct DriverHandle {
    pub(crate) data: Sender<Input>,
    pub(crate) control: Sender<Input>,
    next_request: Arc<AtomicU64>,
}

impl DriverHandle {
    /// A fresh request id (also the connection id if it is upgraded).
    pub(crate) fn next_request_id(&self) -> RequestId {
        RequestId(self.next_request.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where store commands go.
pub(crate) enum StoreSink {
    /// No store configured: a command fails at once (the engine never emits one then).
    None,
    /// Executed inline by the driver (the in-memory store), swept periodically.
    Inline {
        store: Box<dyn InlineStore>,
        next_sweep: Instant,
    },
    /// Executed in order by the store task. A pass's commands go over as one message at its
    /// end ([`StoreBatch`]): sent one by one, the first would wake the store task on the other
    /// core while the driver is still emitting the rest, and the pass's commands would leave
    /// in many small pipelines, each a Redis round trip and a wake-up back.
    Queue(Sender<StoreBatch>),
}

/// The store commands of one driver pass, in emission order.
pub(crate) type StoreBatch = Vec<(StoreCmdId, StoreCommand)>;

/// Counts live connection tasks: each holds a [`TaskGuard`] for its life.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskCounter(Arc<AtomicUsize>);

impl TaskCounter {
    /// Counts one more task until the guard is dropped.
    pub(crate) fn enter(&self) -> TaskGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        TaskGuard(Arc::clone(&self.0))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// See [`TaskCounter`].
#[derive(Debug)]
pub(crate) struct TaskGuard(Arc<AtomicUsize>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The engine's owner. See the module docs.
pub(crate) struct Driver<R: Runtime> {
    runtime: R,
    engine: Box<dyn Engine + Send>,
    data: Receiver<Input>,
    control: Receiver<Input>,
    handle: DriverHandle,
    pending_http: IdMap<RequestId, Sender<Reply>>,
    /// Each live WebSocket's outbound queue.
    conns: IdMap<ConnId, OutboundSender>,
    store: StoreSink,
    /// Commands for [`StoreSink::Queue`] emitted in this pass, sent when it is drained.
    store_out: StoreBatch,
    store_in_flight: usize,
    client: HttpClient<R>,
    bus: Option<Sender<Published>>,
    deadline: Option<Instant>,
    /// Origin of the timer grid ([`TIMER_STEP`]).
    timer_origin: Instant,
    ws_queue: usize,
    /// WebSocket tasks still running; a shutdown waits for them to write their close frames.
    live_tasks: TaskCounter,
    /// Counters and state for `/metrics` and `/readyz`.
    ops: Arc<Ops>,
    /// Frames and bytes of the current pass, added to `ops` once at its end (four shared
    /// atomic additions per pass instead of two per frame).
    frames: FrameTally,
    /// The other engines of this process (`crate::engines`): `/status.json` sums their counters.
    siblings: Vec<Sender<Input>>,
}

/// WebSocket frames and bytes counted during one driver pass.
#[derive(Debug, Default)]
struct FrameTally {
    frames_in: u64,
    bytes_in: u64,
    frames_out: u64,
    bytes_out: u64,
}

impl FrameTally {
    /// Adds the pass's counts to the shared counters and starts over.
    fn flush(&mut self, ops: &Ops) {
        let tally = std::mem::take(self);
        for (counter, value) in [
            (&ops.ws_frames_in, tally.frames_in),
            (&ops.ws_bytes_in, tally.bytes_in),
            (&ops.ws_frames_out, tally.frames_out),
            (&ops.ws_bytes_out, tally.bytes_out),
        ] {
            if value > 0 {
                Ops::add(counter, value);
            }
        }
    }
}

impl<R: Runtime> Driver<R> {
    /// A driver and the handle to reach it.
    pub(crate) fn new(
        runtime: R,
        engine: Box<dyn Engine + Send>,
        store: StoreSink,
        client: HttpClient<R>,
        bus: Option<Sender<Published>>,
        ws_queue: usize,
        ops: Arc<Ops>,
    ) -> (Driver<R>, DriverHandle) {
        let (data_tx, data) = async_channel::bounded(DATA_QUEUE);
        let (control_tx, control) = async_channel::unbounded();
        let handle = DriverHandle {
            data: data_tx,
            control: control_tx,
            next_request: Arc::new(AtomicU64::new(1)),
        };
        let timer_origin = runtime.now();
        let driver = Driver {
            runtime,
            engine,
            data,
            control,
            handle: handle.clone(),
            pending_http: IdMap::default(),
            conns: IdMap::default(),
            store,
            store_out: Vec::new(),
            store_in_flight: 0,
            client,
            bus,
            deadline: None,
            timer_origin,
            ws_queue: ws_queue.max(1),
            live_tasks: TaskCounter::default(),
            ops,
            frames: FrameTally::default(),
            siblings: Vec::new(),
        };
        (driver, handle)
    }

    /// Makes this driver one of several engines of the process: `siblings` reach the others,
    /// and `tasks` counts the WebSocket tasks of all of them (a shutdown waits for every one).
    pub(crate) fn join_engines(&mut self, siblings: Vec<Sender<Input>>, tasks: TaskCounter) {
        self.siblings = siblings;
        self.live_tasks = tasks;
    }

    /// The counter of live WebSocket tasks (see `live_tasks`).
    pub(crate) fn task_counter(&self) -> TaskCounter {
        self.live_tasks.clone()
    }

    /// Runs until an [`Input::Shutdown`] has been handled and drained, or `grace` passed after
    /// it.
    pub(crate) async fn run(mut self, grace: Duration) {
        let _fail_fast = ExitOnPanic;
        self.set_wall_clock(self.runtime.now());
        {
            let _lines = logging::batch();
            self.drain_outputs();
        }
        let mut shutdown_deadline: Option<Instant> = None;
        // The armed timer is kept while the instant it is armed for stays the next wake-up, so
        // a pass that does not move it (most do not) does not re-arm the runtime's timer.
        let mut timer: Option<(Instant, Pin<Box<R::Sleep>>)> = None;
        loop {
            let wake_at = self.next_wake(shutdown_deadline);
            if timer.as_ref().map(|(at, _)| *at) != wake_at {
                timer = wake_at.map(|at| (at, Box::pin(self.runtime.sleep_until(at))));
            }
            let sleep = timer.as_mut().map(|(_, sleep)| sleep.as_mut());
            let first = next_input(&self.control, &self.data, sleep).await;
            if first.is_none() {
                // It fired; a new one is armed for whatever is next.
                timer = None;
            }
            // The lines of this pass go out in one write when it ends, before the driver waits
            // again (the batch cannot live across an await: it is not `Send`).
            let lines = logging::batch();
            let now = self.runtime.now();
            let pass = ops::DriverPass::start(now);
            self.set_wall_clock(now);
            if let Some(input) = first {
                if self.apply_ordered(input, now) && shutdown_deadline.is_none() {
                    shutdown_deadline = Some(now + grace);
                }
                // Feed whatever else is already waiting before draining once.
                for _ in 1..BATCH {
                    let Some(input) = self
                        .control
                        .try_recv()
                        .or_else(|_| self.data.try_recv())
                        .ok()
                    else {
                        break;
                    };
                    if self.apply_ordered(input, now) && shutdown_deadline.is_none() {
                        shutdown_deadline = Some(now + grace);
                    }
                }
            }
            self.fire_timers(now);
            self.drain_outputs();
            self.frames.flush(&self.ops);
            // Busy until the pass's log lines are written (README "Operating Courier").
            drop(lines);
            let end = self.runtime.now();
            pass.finish(end, &self.ops);
            if let Some(limit) = shutdown_deadline
                && (self.drained() || end >= limit)
            {
                self.abandon_remaining();
                return;
            }
        }
    }

    fn next_wake(&self, shutdown_deadline: Option<Instant>) -> Option<Instant> {
        let mut wake = self.deadline.map(|at| on_grid(self.timer_origin, at));
        if let StoreSink::Inline { next_sweep, .. } = &self.store {
            wake = Some(wake.map_or(*next_sweep, |w| w.min(*next_sweep)));
        }
        if shutdown_deadline.is_some() {
            let poll = self.runtime.now() + SHUTDOWN_POLL;
            wake = Some(wake.map_or(poll, |w| w.min(poll)));
        }
        wake
    }

    fn set_wall_clock(&mut self, now: Instant) {
        self.engine.handle_wall_clock(self.runtime.unix_ms(), now);
    }

    /// Inputs that end a connection or a request (`WsClosed`, `HttpAborted`) travel on the
    /// control channel, which is read first, while the frames and requests sent before them may
    /// still wait in the data queue. Those are applied first, so a close never overtakes the
    /// last frames of its connection (an ack, or a `41`, right before the client closes).
    fn apply_ordered(&mut self, input: Input, now: Instant) -> bool {
        let mut shutdown = false;
        if matches!(input, Input::WsClosed(_) | Input::HttpAborted(_)) {
            for _ in 0..self.data.len() {
                let Ok(earlier) = self.data.try_recv() else {
                    break;
                };
                shutdown |= self.apply(earlier, now);
            }
        }
        self.apply(input, now) | shutdown
    }

    /// Feeds one input to the engine. True when it was the shutdown request.
    fn apply(&mut self, input: Input, now: Instant) -> bool {
        match input {
            Input::Http { id, request, reply } => {
                self.pending_http.insert(id, reply);
                self.engine.handle_http(id, request, now);
            }
            Input::HttpAborted(id) => {
                // Only requests still waiting: an answered one has no news for the engine.
                if self.pending_http.remove(&id).is_some() {
                    self.engine.handle_http_aborted(id, now);
                }
            }
            Input::WsFrame(conn, frame) => {
                self.frames.frames_in += 1;
                self.frames.bytes_in += frame_len(&frame);
                if self.conns.contains_key(&conn) {
                    self.engine.handle_ws_frame(conn, frame, now);
                }
            }
            Input::WsClosed(conn) => {
                if self.conns.remove(&conn).is_some() {
                    self.engine.handle_ws_closed(conn, now);
                }
            }
            Input::StoreResults(results) => {
                for (id, result) in results {
                    self.store_in_flight = self.store_in_flight.saturating_sub(1);
                    self.engine.handle_store_result(id, result, now);
                }
            }
            Input::CallResult(id, result) => self.engine.handle_call_result(id, result, now),
            Input::Remote(message) => self.engine.handle_remote(message, now),
            Input::Metrics(reply) => {
                // The scrape reads the shared counters once this answer arrives: include the
                // frames counted so far in this pass.
                self.frames.flush(&self.ops);
                let _ = reply.try_send(self.engine.metrics());
            }
            Input::Shutdown => {
                self.engine.handle_shutdown(now);
                return true;
            }
        }
        false
    }

    fn fire_timers(&mut self, now: Instant) {
        if self.deadline.is_some_and(|deadline| deadline <= now) {
            self.deadline = None;
            self.engine.handle_timeout(now);
        }
        if let StoreSink::Inline { store, next_sweep } = &mut self.store
            && *next_sweep <= now
        {
            store.sweep(self.runtime.unix_ms());
            *next_sweep = now + store.sweep_every();
        }
    }

    /// Carries out every output up to `Idle`.
    fn drain_outputs(&mut self) {
        loop {
            match self.engine.poll_output() {
                Output::Idle(deadline) => {
                    self.deadline = deadline;
                    if self.send_store_batch() {
                        return;
                    }
                    // The store task is gone: the failures are inputs with outputs of their own.
                }
                Output::HttpResponse(id, response) => {
                    if let Some(reply) = self.pending_http.remove(&id) {
                        // A peer that left meanwhile is reported by the request's abort guard.
                        let _ = reply.try_send(Reply::Response(response));
                    }
                }
                Output::WsAccept(id) => self.accept_ws(id),
                Output::WsSend(conn, frame) => self.send_ws(conn, frame),
                Output::WsClose(conn, code) => {
                    // The engine has already forgotten the connection.
                    if let Some(queue) = self.conns.remove(&conn) {
                        queue.close_with(code);
                    }
                }
                Output::Store(id, command) => self.run_store(id, command),
                Output::Call(id, call) => {
                    let client = self.client.clone();
                    let control = self.handle.control.clone();
                    self.runtime.spawn(Box::pin(async move {
                        let result = client.call(call).await;
                        let _ = control.send(Input::CallResult(id, result)).await;
                    }));
                }
                Output::Publish(to, message) => {
                    if let Some(bus) = &self.bus {
                        if bus.try_send((to, message)).is_ok() {
                            Ops::add(&self.ops.bus_published, 1);
                        } else {
                            Ops::add(&self.ops.bus_dropped, 1);
                            tracing::warn!(target: "courier", "cluster bus backlog full; message dropped");
                        }
                    }
                }
                Output::Event(event) => logging::log_event(&event),
                Output::Status(id) => {
                    if let Some(reply) = self.pending_http.remove(&id) {
                        // The same snapshot as `/metrics`, formatted (and `/proc` read) off the
                        // driver.
                        let snapshot = self.engine.metrics();
                        self.frames.flush(&self.ops);
                        let ops = Arc::clone(&self.ops);
                        let siblings = self.siblings.clone();
                        let (now, unix_ms) = (self.runtime.now(), self.runtime.unix_ms());
                        self.runtime.spawn(Box::pin(async move {
                            let snapshot =
                                crate::engines::gather_metrics(snapshot, siblings.iter()).await;
                            let document = ops::status_json(snapshot.as_ref(), &ops, now, unix_ms);
                            let body = serde_json::to_vec(&document).unwrap_or_default();
                            let _ = reply.try_send(Reply::Response(status_response(body)));
                        }));
                    }
                }
            }
        }
    }

    fn accept_ws(&mut self, id: RequestId) {
        let Some(reply) = self.pending_http.remove(&id) else {
            return;
        };
        let conn = ConnId::from(id);
        // Bounded by `send_ws`, and holding no storage while empty (idle connections).
        let (sender, receiver) = outbound_queue();
        if reply.try_send(Reply::Upgrade(receiver)).is_err() {
            // The request's task is gone: the socket never opens.
            self.engine.handle_ws_closed(conn, self.runtime.now());
            return;
        }
        self.conns.insert(conn, sender);
    }

    fn send_ws(&mut self, conn: ConnId, frame: WsFrame) {
        let Some(queue) = self.conns.get(&conn) else {
            return;
        };
        let len = frame_len(&frame);
        if queue.send_frame(frame, self.ws_queue) {
            self.frames.frames_out += 1;
            self.frames.bytes_out += len;
        } else {
            Ops::add(&self.ops.ws_slow_consumers, 1);
            // A peer that does not read is disconnected, never buffered for.
            if let Some(queue) = self.conns.remove(&conn) {
                queue.abort();
            }
            self.engine.handle_ws_closed(conn, self.runtime.now());
        }
    }

    fn run_store(&mut self, id: StoreCmdId, command: StoreCommand) {
        match &mut self.store {
            StoreSink::None => {
                let result = StoreResult::Failed("no store is configured".to_owned());
                self.engine
                    .handle_store_result(id, result, self.runtime.now());
            }
            StoreSink::Inline { store, .. } => {
                let result = store.execute(command);
                self.engine
                    .handle_store_result(id, result, self.runtime.now());
            }
            StoreSink::Queue(_) => {
                self.store_in_flight += 1;
                self.store_out.push((id, command));
            }
        }
    }

    /// Hands the pass's store commands to the store task in one message. False when it has
    /// stopped: each command then failed, and the engine has been told.
    fn send_store_batch(&mut self) -> bool {
        let StoreSink::Queue(queue) = &self.store else {
            return true;
        };
        if self.store_out.is_empty() {
            return true;
        }
        let Err(refused) = queue.try_send(std::mem::take(&mut self.store_out)) else {
            return true;
        };
        let now = self.runtime.now();
        for (id, _) in refused.into_inner() {
            self.store_in_flight = self.store_in_flight.saturating_sub(1);
            let result = StoreResult::Failed("the store executor has stopped".to_owned());
            self.engine.handle_store_result(id, result, now);
        }
        false
    }

    /// After a shutdown: nothing owed to the store, every request answered, every socket closed
    /// and its close frame written.
    fn drained(&self) -> bool {
        self.store_in_flight == 0
            && self.pending_http.is_empty()
            && self.conns.is_empty()
            && self.live_tasks.count() == 0
    }

    /// Grace is over: drop whatever the engine did not close, so the tasks end.
    fn abandon_remaining(&mut self) {
        for (_, queue) in self.conns.drain() {
            queue.abort();
        }
        self.pending_http.clear();
    }
}

/// The first instant on the grid of [`TIMER_STEP`] from `origin` that is not before `at`.
fn on_grid(origin: Instant, at: Instant) -> Instant {
    let step = TIMER_STEP.as_nanos();
    let offset = at.saturating_duration_since(origin).as_nanos();
    let steps = offset.div_ceil(step);
    let rounded = u64::try_from(steps.saturating_mul(step)).unwrap_or(u64::MAX);
    // Past the grid's range (centuries), the exact instant.
    origin
        .checked_add(Duration::from_nanos(rounded))
        .filter(|rounded| *rounded >= at)
        .unwrap_or(at)
}

/// The next input, or `None` when the timer came first. (A free function: the driver itself
/// holds the engine, which is `Send` but not `Sync`, so no `&Driver` may live across an await.)
async fn next_input<S: Future<Output = ()>>(
    control: &Receiver<Input>,
    data: &Receiver<Input>,
    sleep: Option<Pin<&mut S>>,
) -> Option<Input> {
    let control = async { control.recv().await.ok() };
    let data = async { data.recv().await.ok() };
    let timer = async {
        match sleep {
            Some(sleep) => sleep.await,
            None => future::pending::<()>().await,
        }
        None
    };
    // Control first: results and aborts settle state that data inputs may depend on.
    future::or(control, future::or(data, timer)).await
}

/// The engine must never panic; if it does, the gateway's state is unknown and every request
/// would hang on a dead driver. Exiting lets the supervisor restart a clean process.
struct ExitOnPanic;

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The pass's batch was closed by the unwinding already; this is for lines buffered
            // outside one.
            logging::flush();
            let _ = crate::serve::writeln_stderr("the engine panicked; exiting");
            std::process::exit(70);
        }
    }
}

/// The payload length of a frame, for the byte counters.
fn frame_len(frame: &WsFrame) -> u64 {
    let (WsFrame::Text(bytes) | WsFrame::Binary(bytes)) = frame;
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_the_timer_grid() {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        assert_eq!(on_grid(origin, at(0)), at(0));
        assert_eq!(on_grid(origin, at(1)), at(50));
        assert_eq!(on_grid(origin, at(50)), at(50));
        assert_eq!(on_grid(origin, at(51)), at(100));
        // A few µs apart, as heartbeats of sessions opened together are: one wake-up.
        let close = origin + Duration::from_micros(25_001_200);
        assert_eq!(
            on_grid(origin, close),
            on_grid(origin, close + Duration::from_micros(40))
        );
        // Never early: an instant before the origin wakes at the origin.
        assert_eq!(on_grid(at(10), at(5)), at(10));
    }
}
