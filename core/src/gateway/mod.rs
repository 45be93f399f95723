//! Courier's gateway: sites, connect-time auth, `/send`, and the per-device queues.

pub mod auth;
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
