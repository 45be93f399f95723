//! Courier's gateway: sites, connect-time auth, `/send`, and the per-device queues.
//!
//! [`Gateway`] is the top-level object: it implements [`crate::net::Engine`] on the Socket.IO
//! layer and drives these pure building blocks, each answering one question of the original's
//! behaviour of the original service with its exact strings:
//! - [`config`]: `config.yml` / `sites.yml` / environment → a validated [`config::Config`];
//! - [`routes`]: which plain HTTP route a request is, and the fixed answers (health check,
//!   `OPTIONS`, 404, `200 OK`);
//! - [`send`]: a `/send` request → [`send::SendRequest`] or its 4xx answer (built on [`qs`]
//!   for form bodies and [`js_json`] for JSON as Node parsed and printed it);
//! - [`auth`]: the `authUrl` call and what its answer means; [`user_update`]: the
//!   `updateUserUrl` PUT;
//! - [`flake`]: message ids; [`batch`]: how a backlog is cut into `_batch` pieces;
//! - [`store`]: the queue's commands, its reference model and the in-memory store;
//! - [`cluster`]: messages between nodes; [`client_bundle`]: the socket.io-client bundle.
//!
//! The gateway itself is split by concern: admission (CONNECT → auth → `_settings`, devices,
//! `_batch`, user updates, disconnects), dispatch (`/send`, live deliveries, acks, `_resync`,
//! cluster messages), recovery after the store lost its data (epoch checks, registering
//! devices again, live deliveries meanwhile), HTTP routing, the demo and status pages, and the
//! socket table.

mod admission;
mod clients;
mod dispatch;
mod engine;
mod http;
mod pages;
mod recovery;
mod waits;

pub mod auth;
pub mod batch;
pub mod client_bundle;
pub mod cluster;
pub mod config;
pub mod flake;
pub mod js_json;
pub mod qs;
pub mod routes;
pub mod send;
pub mod store;
pub mod user_update;

pub use admission::INVALID_NAMESPACE;
pub use dispatch::STORE_UNAVAILABLE;
pub use engine::{EPOCH_CHECK_INTERVAL, EngineSlot, Gateway, GatewayOptions, STORE_TIMEOUT};
pub use pages::{ADMIN_KEY_INVALID, DEMO_PAGE, STATUS_PAGE, status_response};
