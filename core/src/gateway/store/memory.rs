//! The embedded store: every queue in process memory, for single-node deployments without Redis.
//!
//! It implements the semantics of [`super::Model`] with structures sized for production:
//! sites → user rooms → devices → one `VecDeque` per event, a per-site group index, and an
//! expiry index ordered by expiry time, so no command scans every device. Expired devices are
//! treated as absent the moment they expire (the same logical rule as the model) and their
//! memory is reclaimed by [`MemoryStore::sweep`], which [`Store::execute`] also runs in small
//! steps after every command.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

use super::command::{
    BatchLimits, Delivery, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, Store, StoreCommand,
    StoreResult,
};

/// How many expired devices one command reclaims at most, so a command's cost stays bounded
/// while memory still follows expiry.
const SWEEP_STEP: usize = 4;

#[derive(Debug)]
struct DeviceState {
    socket: SocketRef,
    connected: bool,
    /// Connected but still delivering its backlog: no live deliveries yet.
    draining: bool,
    disconnected_at: u64,
    ttl_ms: u64,
    /// Event → items in flake-id order (send order).
    queues: HashMap<String, VecDeque<(u64, Bytes)>>,
}

impl DeviceState {
    fn alive(&self, now_ms: u64) -> bool {
        self.connected
            || self.ttl_ms == 0
            || now_ms <= self.disconnected_at.saturating_add(self.ttl_ms)
    }

    /// The instant it expires, if it can.
    fn expires_at(&self) -> Option<u64> {
        (!self.connected && self.ttl_ms > 0)
            .then(|| self.disconnected_at.saturating_add(self.ttl_ms))
    }

    /// The head of the queue in id order across events, cut by `limits`, and whether more
    /// remain: a merge of the per-event queues that looks at no more than the piece it takes.
    fn piece(&self, limits: BatchLimits) -> (Vec<QueuedItem>, bool) {
        let mut events: Vec<(&String, &VecDeque<(u64, Bytes)>)> = self.queues.iter().collect();
        events.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut cursors = vec![0usize; events.len()];
        let mut items = Vec::new();
        let mut bytes = 0usize;
        loop {
            let next = events
                .iter()
                .zip(&cursors)
                .enumerate()
                .filter_map(|(at, ((_, queue), cursor))| queue.get(*cursor).map(|item| (at, item)))
                .min_by_key(|(at, (id, _))| (*id, *at));
            let Some((at, (id, json))) = next else {
                return (items, false);
            };
            if !limits.admits(items.len(), bytes, json.len()) {
                return (items, true);
            }
            bytes = bytes.saturating_add(BatchLimits::item_bytes(json.len()));
            cursors[at] += 1;
            items.push(QueuedItem {
                id: *id,
                event: events[at].0.clone(),
                json: json.clone(),
            });
        }
    }

    fn remove_item(&mut self, event: &str, id: u64) -> bool {
        let Some(queue) = self.queues.get_mut(event) else {
            return false;
        };
        let Some(at) = queue.iter().position(|(item_id, _)| *item_id == id) else {
            return false;
        };
        queue.remove(at);
        if queue.is_empty() {
            self.queues.remove(event);
        }
        true
    }
}

#[derive(Debug, Default)]
struct UserState {
    /// Sorted and deduplicated; an exact-size slice because users have a few groups at most
    /// (a hash set would allocate a table for one group).
    groups: Box<[String]>,
    devices: Devices,
}

impl UserState {
    fn in_group(&self, group: &str) -> bool {
        self.groups
            .binary_search_by(|own| own.as_str().cmp(group))
            .is_ok()
    }
}

/// A user room's devices, sorted by id so that [`StoreResult::Enqueued`] lists them in id order
/// without sorting.
///
/// A sorted `Vec` rather than a `BTreeMap`: almost every user has one or two devices, and a
/// B-tree leaf holds room for eleven (≈ 1.3 KB per connected user; see BENCHMARKS.md). Lookups are
/// binary searches; an insert or removal moves the tail, which is no more than the scan every
/// command already makes over the room's devices (`purge`).
#[derive(Debug, Default)]
struct Devices(Vec<(String, DeviceState)>);

impl Devices {
    /// Up to this many devices the vector grows one slot at a time (exact fit for the common
    /// single-device user); beyond it, it grows geometrically as usual.
    const EXACT_UP_TO: usize = 4;

    fn position(&self, id: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|(device, _)| device.as_str().cmp(id))
    }

    fn get(&self, id: &str) -> Option<&DeviceState> {
        let at = self.position(id).ok()?;
        self.0.get(at).map(|(_, state)| state)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut DeviceState> {
        let at = self.position(id).ok()?;
        self.0.get_mut(at).map(|(_, state)| state)
    }

    /// Adds a device that is not there yet (replaces it if it is).
    fn insert(&mut self, id: String, state: DeviceState) {
        match self.position(&id) {
            Ok(at) => self.0[at].1 = state,
            Err(at) => {
                if self.0.len() == self.0.capacity() && self.0.len() < Self::EXACT_UP_TO {
                    self.0.reserve_exact(1);
                }
                self.0.insert(at, (id, state));
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<DeviceState> {
        let at = self.position(id).ok()?;
        let (_, state) = self.0.remove(at);
        // Give memory back once a crowd of devices (a public channel) has mostly left.
        if self.0.capacity() > Self::EXACT_UP_TO && self.0.len() * 4 <= self.0.capacity() {
            self.0.shrink_to(self.0.len() * 2);
        }
        Some(state)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &DeviceState)> {
        self.0.iter().map(|(id, state)| (id, state))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut DeviceState)> {
        self.0.iter_mut().map(|(id, state)| (&*id, state))
    }
}

#[derive(Debug, Default)]
struct SiteState {
    users: HashMap<String, UserState>,
    /// Group → user rooms.
    index: HashMap<String, BTreeSet<String>>,
}

/// The in-memory store. See the module docs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sites: HashMap<String, SiteState>,
    /// `(expires_at, device)` for every disconnected device with a ttl.
    expiries: BTreeSet<(u64, DeviceKey)>,
    devices: usize,
    /// The epoch ([`StoreCommand::CheckEpoch`]), once one was written.
    epoch: Option<u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Registered devices, including expired ones not reclaimed yet.
    pub fn device_count(&self) -> usize {
        self.devices
    }

    /// Reclaims every device that expired before `now_ms`.
    pub fn sweep(&mut self, now_ms: u64) {
        self.sweep_up_to(now_ms, usize::MAX);
    }

    fn sweep_up_to(&mut self, now_ms: u64, limit: usize) {
        for _ in 0..limit {
            let Some((expires_at, _)) = self.expiries.first() else {
                return;
            };
            if *expires_at >= now_ms {
                return;
            }
            if let Some((_, key)) = self.expiries.pop_first() {
                self.remove_device(&key);
            }
        }
    }

    fn remove_device(&mut self, key: &DeviceKey) {
        let Some(site) = self.sites.get_mut(&key.site) else {
            return;
        };
        let Some(user) = site.users.get_mut(&key.room) else {
            return;
        };
        if let Some(state) = user.devices.remove(&key.device) {
            self.devices -= 1;
            if let Some(at) = state.expires_at() {
                self.expiries.remove(&(at, key.clone()));
            }
        }
        if user.devices.is_empty() {
            site.users.remove(&key.room);
            if site.users.is_empty() && site.index.is_empty() {
                self.sites.remove(&key.site);
            }
        }
    }

    /// Removes the expired devices of one user room (and the user when none is left).
    fn purge(&mut self, site: &str, room: &str, now_ms: u64) {
        let expired: Vec<String> = match self.sites.get(site).and_then(|s| s.users.get(room)) {
            Some(user) => user
                .devices
                .iter()
                .filter(|(_, state)| !state.alive(now_ms))
                .map(|(id, _)| id.clone())
                .collect(),
            None => return,
        };
        for device in expired {
            self.remove_device(&DeviceKey {
                site: site.to_owned(),
                room: room.to_owned(),
                device,
            });
        }
    }

    fn device_mut(&mut self, key: &DeviceKey) -> Option<&mut DeviceState> {
        self.sites
            .get_mut(&key.site)?
            .users
            .get_mut(&key.room)?
            .devices
            .get_mut(&key.device)
    }

    fn connect(
        &mut self,
        key: DeviceKey,
        socket: SocketRef,
        groups: Option<Vec<String>>,
        limits: BatchLimits,
        now_ms: u64,
    ) -> StoreResult {
        self.purge(&key.site, &key.room, now_ms);
        let site = self.sites.entry(key.site.clone()).or_default();
        if let Some(groups) = &groups {
            for group in groups {
                site.index
                    .entry(group.clone())
                    .or_default()
                    .insert(key.room.clone());
            }
        }
        let user = site.users.entry(key.room.clone()).or_default();
        if let Some(mut groups) = groups {
            groups.sort_unstable();
            groups.dedup();
            user.groups = groups.into_boxed_slice();
        }
        match user.devices.get(&key.device) {
            Some(existing) => {
                if let Some(at) = existing.expires_at() {
                    self.expiries.remove(&(at, key.clone()));
                }
            }
            None => {
                self.devices += 1;
                user.devices.insert(
                    key.device.clone(),
                    DeviceState {
                        socket,
                        connected: true,
                        draining: false,
                        disconnected_at: 0,
                        ttl_ms: 0,
                        queues: HashMap::new(),
                    },
                );
            }
        }
        let Some(state) = user.devices.get_mut(&key.device) else {
            return StoreResult::Connected {
                items: Vec::new(),
                more: false,
            };
        };
        state.socket = socket;
        state.connected = true;
        let (items, more) = state.piece(limits);
        state.draining = more;
        StoreResult::Connected { items, more }
    }

    fn next_batch(
        &mut self,
        key: &DeviceKey,
        socket: SocketRef,
        acked: &[(String, u64)],
        limits: BatchLimits,
        now_ms: u64,
    ) -> StoreResult {
        self.purge(&key.site, &key.room, now_ms);
        let nothing = StoreResult::Connected {
            items: Vec::new(),
            more: false,
        };
        let Some(state) = self.device_mut(key) else {
            return nothing;
        };
        for (event, id) in acked {
            state.remove_item(event, *id);
        }
        if !(state.connected && state.draining && state.socket == socket) {
            return nothing;
        }
        let (items, more) = state.piece(limits);
        state.draining = more;
        StoreResult::Connected { items, more }
    }

    fn disconnect(&mut self, key: DeviceKey, socket: SocketRef, now_ms: u64, ttl_ms: u64) {
        self.purge(&key.site, &key.room, now_ms);
        let Some(state) = self.device_mut(&key) else {
            return;
        };
        if !state.connected || state.socket != socket {
            return;
        }
        state.connected = false;
        state.disconnected_at = now_ms;
        state.ttl_ms = ttl_ms;
        if let Some(at) = state.expires_at() {
            self.expiries.insert((at, key));
        }
    }

    fn resolve_groups(&self, site: &str, groups: &[String]) -> StoreResult {
        let mut users = BTreeSet::new();
        if let Some(site) = self.sites.get(site) {
            for group in groups {
                if let Some(rooms) = site.index.get(group) {
                    users.extend(rooms.iter().cloned());
                }
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
        let Some(user) = self.sites.get_mut(site).and_then(|s| s.users.get_mut(room)) else {
            return StoreResult::Enqueued {
                status: EnqueueStatus::UnknownUser,
                devices: Vec::new(),
            };
        };
        if let Some(via) = via_groups
            && !via.iter().any(|group| user.in_group(group))
        {
            return StoreResult::Enqueued {
                status: EnqueueStatus::NotInGroups,
                devices: Vec::new(),
            };
        }
        let mut devices = Vec::with_capacity(user.devices.len());
        for (id, state) in user.devices.iter_mut() {
            match state.queues.get_mut(&item.event) {
                // Kept in flake-id order: an id from a node with a lagging clock can arrive
                // after newer ones (almost always this is the end).
                Some(queue) => {
                    let at = queue.partition_point(|(queued, _)| *queued < item.id);
                    queue.insert(at, (item.id, item.json.clone()));
                }
                None => {
                    state.queues.insert(
                        item.event.clone(),
                        VecDeque::from([(item.id, item.json.clone())]),
                    );
                }
            }
            devices.push(Delivery {
                device: id.clone(),
                socket: (state.connected && !state.draining).then_some(state.socket),
            });
        }
        StoreResult::Enqueued {
            status: EnqueueStatus::Stored,
            devices,
        }
    }

    fn ack(
        &mut self,
        key: &DeviceKey,
        event: &str,
        id: u64,
        resync: bool,
        now_ms: u64,
    ) -> StoreResult {
        self.purge(&key.site, &key.room, now_ms);
        let Some(state) = self.device_mut(key) else {
            return if resync {
                StoreResult::Resync
            } else {
                StoreResult::Acked { removed: false }
            };
        };
        if !resync {
            return StoreResult::Acked {
                removed: state.remove_item(event, id),
            };
        }
        let head_matches = state
            .queues
            .get(event)
            .and_then(VecDeque::front)
            .is_some_and(|(head, _)| *head == id);
        if head_matches {
            if let Some(queue) = state.queues.get_mut(event) {
                queue.pop_front();
                if queue.is_empty() {
                    state.queues.remove(event);
                }
            }
            StoreResult::Acked { removed: true }
        } else {
            state.queues.remove(event);
            StoreResult::Resync
        }
    }

    fn ack_batch(&mut self, key: &DeviceKey, items: &[(String, u64)], now_ms: u64) {
        self.purge(&key.site, &key.room, now_ms);
        if let Some(state) = self.device_mut(key) {
            for (event, id) in items {
                state.remove_item(event, *id);
            }
        }
    }

    fn forget_group_member(&mut self, site_name: &str, room: &str, groups: &[String]) {
        let Some(site) = self.sites.get_mut(site_name) else {
            return;
        };
        for group in groups {
            if let Some(rooms) = site.index.get_mut(group) {
                rooms.remove(room);
                if rooms.is_empty() {
                    site.index.remove(group);
                }
            }
        }
        if site.users.is_empty() && site.index.is_empty() {
            self.sites.remove(site_name);
        }
    }
}

impl Store for MemoryStore {
    fn execute(&mut self, command: StoreCommand) -> StoreResult {
        let now_ms = command_now(&command);
        let result = match command {
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
            } => {
                self.disconnect(device, socket, now_ms, ttl_ms);
                StoreResult::Done
            }
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
            } => {
                self.ack_batch(&device, &items, now_ms);
                StoreResult::Done
            }
            StoreCommand::ForgetGroupMember {
                site, room, groups, ..
            } => {
                self.forget_group_member(&site, &room, &groups);
                StoreResult::Done
            }
            StoreCommand::CheckEpoch { candidate, .. } => {
                StoreResult::Epoch(*self.epoch.get_or_insert(candidate))
            }
        };
        self.sweep_up_to(now_ms, SWEEP_STEP);
        result
    }
}

/// The wall clock a command carries.
fn command_now(command: &StoreCommand) -> u64 {
    match command {
        StoreCommand::Connect { now_ms, .. }
        | StoreCommand::NextBatch { now_ms, .. }
        | StoreCommand::Disconnect { now_ms, .. }
        | StoreCommand::ResolveGroups { now_ms, .. }
        | StoreCommand::Enqueue { now_ms, .. }
        | StoreCommand::Ack { now_ms, .. }
        | StoreCommand::AckBatch { now_ms, .. }
        | StoreCommand::ForgetGroupMember { now_ms, .. }
        | StoreCommand::CheckEpoch { now_ms, .. } => *now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(socket: u64) -> DeviceState {
        DeviceState {
            socket: SocketRef { node: 1, socket },
            connected: true,
            draining: false,
            disconnected_at: 0,
            ttl_ms: 0,
            queues: HashMap::new(),
        }
    }

    fn ids(devices: &Devices) -> Vec<String> {
        devices.iter().map(|(id, _)| id.clone()).collect()
    }

    #[test]
    fn one_device_takes_one_slot() {
        let mut devices = Devices::default();
        devices.insert("phone".to_owned(), device(1));
        assert_eq!(devices.0.capacity(), 1);
        assert_eq!(devices.get("phone").map(|d| d.socket.socket), Some(1));
        assert!(devices.get("laptop").is_none());
    }

    #[test]
    fn devices_stay_sorted_through_inserts_and_removals_and_memory_follows() {
        let mut devices = Devices::default();
        let mut expected: Vec<String> = (0..200)
            .map(|n| format!("d{:03}", (n * 37) % 200))
            .collect();
        for (n, id) in expected.iter().enumerate() {
            devices.insert(id.clone(), device(n as u64));
        }
        expected.sort();
        assert_eq!(ids(&devices), expected);
        // Replacing keeps one entry.
        devices.insert("d100".to_owned(), device(999));
        assert_eq!(devices.len(), 200);
        assert_eq!(devices.get_mut("d100").map(|d| d.socket.socket), Some(999));
        for id in expected.drain(..190) {
            assert!(devices.remove(&id).is_some());
        }
        assert!(devices.remove("d000").is_none());
        assert_eq!(ids(&devices), expected);
        assert!(
            devices.0.capacity() <= 4 * devices.len(),
            "shrunk after most left"
        );
    }
}
