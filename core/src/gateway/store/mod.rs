//! The per-device queue: the commands the gateway emits, and the stores that execute them.
//!
//! [`Model`] defines what every command means; [`MemoryStore`] is the embedded production
//! store; the Redis store lives in courier-io. With the `store-suite` feature, `suite` holds
//! the model-based property suite every store must pass.

mod command;
mod memory;
mod model;
#[cfg(feature = "store-suite")]
pub mod suite;

pub use command::{
    BatchLimits, Delivery, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, Store, StoreCommand,
    StoreResult,
};
pub use memory::MemoryStore;
pub use model::Model;
