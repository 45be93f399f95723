//! The per-device queue: the commands the gateway emits, and the stores that execute them.

mod command;

pub use command::{
    Delivery, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, Store, StoreCommand, StoreResult,
};
