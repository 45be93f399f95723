//! # courier-core
//!
//! The pure, Sans-IO heart of Courier, a Socket.IO push gateway. This crate performs no I/O,
//! never reads a clock and never asks the OS for randomness: time arrives as `now: Instant` on
//! every input (plus an explicit wall-clock input), randomness comes from a seed given at
//! construction, and every side effect leaves as an [`net::Output`] that an adapter carries out.
//!
//! Layers, bottom to top:
//! - [`eio`]: Engine.IO protocol revisions 3 and 4 — packets, payloads, sessions, heartbeats,
//!   the polling→WebSocket upgrade;
//! - [`sio`]: Socket.IO protocol revisions 4 and 5 — packets, binary attachments, namespaces,
//!   acks, asynchronous namespace admission;
//! - [`gateway`]: Courier itself — sites, connect-time auth, `/send`, per-device queues with
//!   `_settings` / `_batch` / `_resync`, user updates.
//!
//! Beside them, [`body`] decides which body limit applies to which request, for the adapter
//! to enforce while it reads.
//!
//! `eio` and `sio` know nothing of the gateway; any application can sit on `sio`, as
//! [`conformance`] (the server of the Socket.IO project's protocol test-suites) does.
//!
//! ## The run-loop contract
//! An adapter feeds inputs through the `handle_*` methods of [`net::Engine`] and then calls
//! [`net::Engine::poll_output`] until it returns [`net::Output::Idle`], which carries the next
//! deadline. See [`net`] for the exact rules. A malformed peer input never panics and never
//! returns an error to the adapter; it becomes an output (an HTTP 4xx with a clear body, an
//! Engine.IO error, a close) plus an [`net::AppEvent`].

pub mod body;
pub mod conformance;
pub mod eio;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod ids;
pub mod iso8601;
pub mod metrics;
pub mod net;
pub mod sio;
pub mod urlencoded;
