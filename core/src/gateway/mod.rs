//! Courier's gateway: sites, connect-time auth, `/send`, and the per-device queues.
//!
//! [`Gateway`] is the top-level object (it implements [`crate::net::Engine`]); the other
//! modules are its parts: configuration, `/send` parsing, auth and user-update calls, flake ids,
//! the store commands with the model and the in-memory store, and the cluster bus format.

mod admission;
mod clients;
mod dispatch;
mod engine;
mod http;
mod io_config;

pub mod client_bundle;
pub mod cluster;
pub mod store;

pub use admission::INVALID_NAMESPACE;
pub use dispatch::STORE_UNAVAILABLE;
pub use engine::{Gateway, GatewayOptions, STORE_TIMEOUT};
pub use io_config::sio_config;
