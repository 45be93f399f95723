//! Store commands and results as the Redis store tests write them: one site, one start time,
//! sockets of node 7.

use bytes::Bytes;
use courier_core::gateway::store::{
    BatchLimits, Delivery, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, StoreCommand,
    StoreResult,
};

pub const SITE: &str = "goodcity";
pub const T0: u64 = 1_790_000_000_000;

pub fn device(room: &str, device: &str) -> DeviceKey {
    DeviceKey {
        site: SITE.into(),
        room: room.into(),
        device: device.into(),
    }
}

pub fn socket(n: u64) -> SocketRef {
    SocketRef { node: 7, socket: n }
}

pub fn item(id: u64, event: &str) -> QueuedItem {
    QueuedItem {
        id,
        event: event.into(),
        json: Bytes::from(format!("[\"{event}\",{id}]")),
    }
}

pub fn connect(
    room: &str,
    dev: &str,
    sock: u64,
    groups: Option<&[&str]>,
    now_ms: u64,
) -> StoreCommand {
    StoreCommand::Connect {
        limits: BatchLimits::for_max_payload(u64::MAX / 2),
        device: device(room, dev),
        socket: socket(sock),
        groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
        now_ms,
    }
}

pub fn enqueue(room: &str, item: QueuedItem, via: Option<&[&str]>, now_ms: u64) -> StoreCommand {
    StoreCommand::Enqueue {
        site: SITE.into(),
        room: room.into(),
        item,
        via_groups: via.map(|g| g.iter().map(|s| s.to_string()).collect()),
        now_ms,
    }
}

pub fn ack(room: &str, dev: &str, event: &str, id: u64, resync: bool) -> StoreCommand {
    StoreCommand::Ack {
        device: device(room, dev),
        event: event.into(),
        id,
        resync,
        now_ms: T0,
    }
}

pub fn connected(items: Vec<QueuedItem>) -> StoreResult {
    StoreResult::Connected { items, more: false }
}

pub fn stored(devices: &[(&str, Option<u64>)]) -> StoreResult {
    StoreResult::Enqueued {
        status: EnqueueStatus::Stored,
        devices: devices
            .iter()
            .map(|(d, s)| Delivery {
                device: d.to_string(),
                socket: s.map(socket),
            })
            .collect(),
    }
}

pub fn status(status: EnqueueStatus) -> StoreResult {
    StoreResult::Enqueued {
        status,
        devices: vec![],
    }
}

pub fn check_epoch(candidate: u64) -> StoreCommand {
    StoreCommand::CheckEpoch {
        candidate,
        now_ms: T0,
    }
}
