//! The reference model of the queue: the meaning of every [`StoreCommand`], written for
//! clarity rather than speed. Real stores ([`super::MemoryStore`], the Redis store) must give
//! the same result as this model for every command sequence; the property suite
//! (`store-suite` feature) checks exactly that.
//!
//! Decisions the model pins down (and `command.rs` documents):
//! - a device is *alive* while it is connected, or its ttl is 0, or while
//!   `now_ms <= disconnected_at + ttl_ms` (so still alive at exactly that instant); a device
//!   that is not alive is absent for every command, together with its queue;
//! - a user room is *known* while it has an alive device; its recorded groups vanish with its
//!   last device;
//! - an event's queue is in flake-id order (the module docs of `command.rs`): the model keeps
//!   items in arrival order and sorts when it reads, so the resync head is the smallest id
//!   even when a node with a lagging clock enqueues an older id later;
//!   [`StoreResult::Connected`] lists the head of a device's items sorted by id (ties, which a
//!   correct gateway never produces, by event name then arrival), cut by
//!   [`BatchLimits::admits`];
//! - a connected device is *draining* from a `Connect` that left items behind until the
//!   `NextBatch` that reads its last piece; `Enqueue` names its socket only when it is live;
//! - the group index is a plain set per `(site, group)`: [`StoreCommand::Connect`] adds to it,
//!   only [`StoreCommand::ForgetGroupMember`] removes from it, expiry never touches it.
//!
//! Commands are expected with non-decreasing `now_ms`; a store may reclaim an expired device at
//! any time after it expired, so time going backwards cannot revive it.

use std::collections::{BTreeMap, BTreeSet};

use super::command::{
    BatchLimits, Delivery, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, Store, StoreCommand,
    StoreResult,
};

/// One device's state in the model.
#[derive(Debug, Clone)]
struct ModelDevice {
    socket: SocketRef,
    connected: bool,
    /// Connected but still delivering its backlog: no live deliveries yet.
    draining: bool,
    disconnected_at: u64,
    ttl_ms: u64,
    /// Every queued item in arrival order, across events (sorted by id when read).
    queue: Vec<QueuedItem>,
}

impl ModelDevice {
    /// The head of the queue in id order, cut by `limits`, and whether more remain.
    fn piece(&self, limits: BatchLimits) -> (Vec<QueuedItem>, bool) {
        let mut items: Vec<(usize, &QueuedItem)> = self.queue.iter().enumerate().collect();
        items.sort_by(|(pa, a), (pb, b)| (a.id, &a.event, pa).cmp(&(b.id, &b.event, pb)));
        let take = limits.piece_len(items.iter().map(|(_, item)| item.json.len()));
        let more = take < items.len();
        let piece = items
            .into_iter()
            .take(take)
            .map(|(_, item)| item.clone())
            .collect();
        (piece, more)
    }

    /// Removes the first item `(event, id)`; whether there was one.
    fn remove(&mut self, event: &str, id: u64) -> bool {
        let found = self
            .queue
            .iter()
            .position(|item| item.event == event && item.id == id);
        if let Some(at) = found {
            self.queue.remove(at);
        }
        found.is_some()
    }

    fn alive(&self, now_ms: u64) -> bool {
        self.connected
            || self.ttl_ms == 0
            || now_ms <= self.disconnected_at.saturating_add(self.ttl_ms)
    }
}

/// One user room (or public channel) in the model.
#[derive(Debug, Clone, Default)]
struct ModelUser {
    groups: BTreeSet<String>,
    devices: BTreeMap<String, ModelDevice>,
}

/// The pure reference model of the store. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// `(site, room)` → user.
    users: BTreeMap<(String, String), ModelUser>,
    /// `(site, group)` → user rooms.
    index: BTreeMap<(String, String), BTreeSet<String>>,
    /// The epoch ([`StoreCommand::CheckEpoch`]), once one was written.
    epoch: Option<u64>,
}

impl Model {
    /// An empty model.
    pub fn new() -> Self {
        Model::default()
    }

    /// The store lost everything it held, its epoch included (Redis restarted empty).
    pub fn lose_everything(&mut self) {
        *self = Model::new();
    }

    fn check_epoch(&mut self, candidate: u64) -> StoreResult {
        StoreResult::Epoch(*self.epoch.get_or_insert(candidate))
    }

    /// Drops the expired devices of one user, and the user when none is left.
    fn purge(&mut self, site: &str, room: &str, now_ms: u64) {
        let key = (site.to_owned(), room.to_owned());
        if let Some(user) = self.users.get_mut(&key) {
            user.devices.retain(|_, device| device.alive(now_ms));
            if user.devices.is_empty() {
                self.users.remove(&key);
            }
        }
    }

    fn device_mut(&mut self, device: &DeviceKey) -> Option<&mut ModelDevice> {
        self.users
            .get_mut(&(device.site.clone(), device.room.clone()))
            .and_then(|user| user.devices.get_mut(&device.device))
    }

    fn connect(
        &mut self,
        device: DeviceKey,
        socket: SocketRef,
        groups: Option<Vec<String>>,
        limits: BatchLimits,
        now_ms: u64,
    ) -> StoreResult {
        self.purge(&device.site, &device.room, now_ms);
        if let Some(groups) = &groups {
            for group in groups {
                self.index
                    .entry((device.site.clone(), group.clone()))
                    .or_default()
                    .insert(device.room.clone());
            }
        }
        let user = self
            .users
            .entry((device.site.clone(), device.room.clone()))
            .or_default();
        if let Some(groups) = groups {
            user.groups = groups.into_iter().collect();
        }
        let entry = user
            .devices
            .entry(device.device)
            .or_insert_with(|| ModelDevice {
                socket,
                connected: true,
                draining: false,
                disconnected_at: 0,
                ttl_ms: 0,
                queue: Vec::new(),
            });
        entry.socket = socket;
        entry.connected = true;
        let (items, more) = entry.piece(limits);
        entry.draining = more;
        StoreResult::Connected { items, more }
    }

    fn next_batch(
        &mut self,
        device: &DeviceKey,
        socket: SocketRef,
        acked: &[(String, u64)],
        limits: BatchLimits,
        now_ms: u64,
    ) -> StoreResult {
        self.purge(&device.site, &device.room, now_ms);
        let Some(state) = self.device_mut(device) else {
            return StoreResult::Connected {
                items: Vec::new(),
                more: false,
            };
        };
        for (event, id) in acked {
            state.remove(event, *id);
        }
        if !(state.connected && state.draining && state.socket == socket) {
            return StoreResult::Connected {
                items: Vec::new(),
                more: false,
            };
        }
        let (items, more) = state.piece(limits);
        state.draining = more;
        StoreResult::Connected { items, more }
    }

    fn disconnect(
        &mut self,
        device: &DeviceKey,
        socket: SocketRef,
        now_ms: u64,
        ttl_ms: u64,
    ) -> StoreResult {
        self.purge(&device.site, &device.room, now_ms);
        if let Some(state) = self.device_mut(device)
            && state.connected
            && state.socket == socket
        {
            state.connected = false;
            state.disconnected_at = now_ms;
            state.ttl_ms = ttl_ms;
        }
        StoreResult::Done
    }

    fn resolve_groups(&self, site: &str, groups: &[String]) -> StoreResult {
        let mut users = BTreeSet::new();
        for group in groups {
            if let Some(rooms) = self.index.get(&(site.to_owned(), group.clone())) {
                users.extend(rooms.iter().cloned());
            }
        }
        StoreResult::Users(users.into_iter().collect())
    }

    fn enqueue(
        &mut self,
        site: &str,
        room: &str,
        item: QueuedItem,
        via_groups: Option<&[String]>,
        now_ms: u64,
    ) -> StoreResult {
        self.purge(site, room, now_ms);
        let Some(user) = self.users.get_mut(&(site.to_owned(), room.to_owned())) else {
            return StoreResult::Enqueued {
                status: EnqueueStatus::UnknownUser,
                devices: Vec::new(),
            };
        };
        if let Some(via) = via_groups
            && !via.iter().any(|group| user.groups.contains(group))
        {
            return StoreResult::Enqueued {
                status: EnqueueStatus::NotInGroups,
                devices: Vec::new(),
            };
        }
        let mut devices = Vec::with_capacity(user.devices.len());
        for (id, device) in &mut user.devices {
            device.queue.push(item.clone());
            devices.push(Delivery {
                device: id.clone(),
                socket: (device.connected && !device.draining).then_some(device.socket),
            });
        }
        StoreResult::Enqueued {
            status: EnqueueStatus::Stored,
            devices,
        }
    }

    fn ack(
        &mut self,
        device: &DeviceKey,
        event: &str,
        id: u64,
        resync: bool,
        now_ms: u64,
    ) -> StoreResult {
        self.purge(&device.site, &device.room, now_ms);
        let Some(state) = self.device_mut(device) else {
            return if resync {
                StoreResult::Resync
            } else {
                StoreResult::Acked { removed: false }
            };
        };
        if resync {
            // The head is the smallest id of the event (send order = flake-id order).
            let head = state
                .queue
                .iter()
                .enumerate()
                .filter(|(_, item)| item.event == event)
                .min_by_key(|(_, item)| item.id)
                .map(|(at, _)| at);
            match head {
                Some(at) if state.queue[at].id == id => {
                    state.queue.remove(at);
                    StoreResult::Acked { removed: true }
                }
                _ => {
                    state.queue.retain(|item| item.event != event);
                    StoreResult::Resync
                }
            }
        } else {
            StoreResult::Acked {
                removed: state.remove(event, id),
            }
        }
    }

    fn ack_batch(
        &mut self,
        device: &DeviceKey,
        items: &[(String, u64)],
        now_ms: u64,
    ) -> StoreResult {
        self.purge(&device.site, &device.room, now_ms);
        if let Some(state) = self.device_mut(device) {
            for (event, id) in items {
                state.remove(event, *id);
            }
        }
        StoreResult::Done
    }

    fn forget_group_member(&mut self, site: &str, room: &str, groups: &[String]) -> StoreResult {
        for group in groups {
            let key = (site.to_owned(), group.clone());
            if let Some(rooms) = self.index.get_mut(&key) {
                rooms.remove(room);
                if rooms.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
        StoreResult::Done
    }

    /// The queued items of a device at `now_ms` in arrival order (for tests and diagnostics);
    /// empty when the device is absent or expired.
    pub fn queued(&self, device: &DeviceKey, now_ms: u64) -> Vec<QueuedItem> {
        self.users
            .get(&(device.site.clone(), device.room.clone()))
            .and_then(|user| user.devices.get(&device.device))
            .filter(|state| state.alive(now_ms))
            .map(|state| state.queue.clone())
            .unwrap_or_default()
    }
}

impl Store for Model {
    fn execute(&mut self, command: StoreCommand) -> StoreResult {
        match command {
            StoreCommand::Connect {
                device,
                socket,
                groups,
                limits,
                now_ms,
            } => self.connect(device, socket, groups, limits, now_ms),
            StoreCommand::NextBatch {
                device,
                socket,
                acked,
                limits,
                now_ms,
            } => self.next_batch(&device, socket, &acked, limits, now_ms),
            StoreCommand::Disconnect {
                device,
                socket,
                now_ms,
                ttl_ms,
            } => self.disconnect(&device, socket, now_ms, ttl_ms),
            StoreCommand::ResolveGroups { site, groups, .. } => self.resolve_groups(&site, &groups),
            StoreCommand::Enqueue {
                site,
                room,
                item,
                via_groups,
                now_ms,
            } => self.enqueue(&site, &room, item, via_groups.as_deref(), now_ms),
            StoreCommand::Ack {
                device,
                event,
                id,
                resync,
                now_ms,
            } => self.ack(&device, &event, id, resync, now_ms),
            StoreCommand::AckBatch {
                device,
                items,
                now_ms,
            } => self.ack_batch(&device, &items, now_ms),
            StoreCommand::ForgetGroupMember {
                site, room, groups, ..
            } => self.forget_group_member(&site, &room, &groups),
            StoreCommand::CheckEpoch { candidate, .. } => self.check_epoch(candidate),
        }
    }
}
