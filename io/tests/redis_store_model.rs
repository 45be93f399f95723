//! Random command sequences against a real redis-server, compared result by result with a small
//! in-test model of the store contract (command.rs). The project-wide suite
//! (`courier_core::gateway::store::suite`) will drive the same store against the core's own
//! model; this one keeps the Lua scripts honest meanwhile, with time, expiry, resync and
//! groups all moving at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::redis_server::RedisServer;
use courier_core::gateway::store::{
    Delivery, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, Store, StoreCommand, StoreResult,
};
use courier_io::BlockingRedisStore;
use proptest::prelude::*;

const SITE: &str = "s:{1}";
const ROOMS: [&str; 2] = ["user_1", "user:2"];
const DEVICES: [&str; 3] = ["", "a", "a:b"];
const EVENTS: [&str; 2] = ["e", "f:g"];
const GROUPS: [&str; 3] = ["staff", "reviewer", "x{y}"];
const TTLS: [u64; 3] = [0, 1000, 3000];

/// One step of a generated sequence; indices pick from the constant domains above.
#[derive(Debug, Clone)]
enum Step {
    Advance(u64),
    Connect {
        room: usize,
        device: usize,
        groups: Option<Vec<usize>>,
    },
    Disconnect {
        room: usize,
        device: usize,
        latest: bool,
        ttl: usize,
    },
    Enqueue {
        room: usize,
        event: usize,
        via: Option<Vec<usize>>,
    },
    Ack {
        room: usize,
        device: usize,
        event: usize,
        nth: usize,
        resync: bool,
    },
    AckBatch {
        room: usize,
        device: usize,
        count: usize,
    },
    Resolve {
        groups: Vec<usize>,
    },
    Forget {
        room: usize,
        groups: Vec<usize>,
    },
}

fn groups_strategy() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..GROUPS.len(), 0..3)
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Exact ttl steps put `now` right on (and one past) an expiry boundary.
        2 => prop_oneof![0u64..2500, Just(1000), Just(3000), Just(1)].prop_map(Step::Advance),
        3 => (0..ROOMS.len(), 0..DEVICES.len(), proptest::option::of(groups_strategy()))
            .prop_map(|(room, device, groups)| Step::Connect { room, device, groups }),
        2 => (0..ROOMS.len(), 0..DEVICES.len(), any::<bool>(), 0..TTLS.len())
            .prop_map(|(room, device, latest, ttl)| Step::Disconnect { room, device, latest, ttl }),
        4 => (0..ROOMS.len(), 0..EVENTS.len(), proptest::option::of(groups_strategy()))
            .prop_map(|(room, event, via)| Step::Enqueue { room, event, via }),
        3 => (0..ROOMS.len(), 0..DEVICES.len(), 0..EVENTS.len(), 0usize..4, any::<bool>())
            .prop_map(|(room, device, event, nth, resync)| Step::Ack { room, device, event, nth, resync }),
        1 => (0..ROOMS.len(), 0..DEVICES.len(), 0usize..4)
            .prop_map(|(room, device, count)| Step::AckBatch { room, device, count }),
        1 => groups_strategy().prop_map(|groups| Step::Resolve { groups }),
        1 => (0..ROOMS.len(), groups_strategy()).prop_map(|(room, groups)| Step::Forget { room, groups }),
    ]
}

#[derive(Debug, Clone)]
struct Device {
    socket: u64,
    connected: bool,
    at: u64,
    ttl: u64,
    queues: BTreeMap<String, BTreeMap<u64, Bytes>>,
}

impl Device {
    fn expired(&self, now: u64) -> bool {
        !self.connected && self.ttl > 0 && now > self.at + self.ttl
    }
}

/// The store contract, written plainly.
#[derive(Debug, Default)]
struct Model {
    devices: BTreeMap<(String, String), Device>,
    groups: BTreeMap<String, BTreeSet<String>>,
    index: BTreeMap<String, BTreeSet<String>>,
}

impl Model {
    fn forget_expired(&mut self, room: &str, now: u64) {
        self.devices
            .retain(|(r, _), device| r != room || !device.expired(now));
        if !self.devices.keys().any(|(r, _)| r == room) {
            self.groups.remove(room);
        }
    }

    fn execute(&mut self, command: &StoreCommand) -> StoreResult {
        match command.clone() {
            StoreCommand::Connect {
                device,
                socket,
                groups,
                now_ms,
            } => {
                self.forget_expired(&device.room, now_ms);
                if let Some(groups) = groups {
                    let new: BTreeSet<String> = groups.into_iter().collect();
                    for group in &new {
                        self.index
                            .entry(group.clone())
                            .or_default()
                            .insert(device.room.clone());
                    }
                    let old = self
                        .groups
                        .insert(device.room.clone(), new.clone())
                        .unwrap_or_default();
                    for group in old.difference(&new) {
                        if let Some(members) = self.index.get_mut(group) {
                            members.remove(&device.room);
                        }
                    }
                }
                let entry = self
                    .devices
                    .entry((device.room.clone(), device.device.clone()))
                    .or_insert_with(|| Device {
                        socket: 0,
                        connected: true,
                        at: 0,
                        ttl: 0,
                        queues: BTreeMap::new(),
                    });
                entry.socket = socket.socket;
                entry.connected = true;
                let mut items: Vec<QueuedItem> = entry
                    .queues
                    .iter()
                    .flat_map(|(event, queue)| {
                        queue.iter().map(|(id, json)| QueuedItem {
                            id: *id,
                            event: event.clone(),
                            json: json.clone(),
                        })
                    })
                    .collect();
                items.sort_by(|a, b| (a.id, &a.event).cmp(&(b.id, &b.event)));
                StoreResult::Connected { items }
            }
            StoreCommand::Disconnect {
                device,
                socket,
                now_ms,
                ttl_ms,
            } => {
                self.forget_expired(&device.room, now_ms);
                if let Some(entry) = self.devices.get_mut(&(device.room, device.device))
                    && entry.socket == socket.socket
                {
                    entry.connected = false;
                    entry.at = now_ms;
                    entry.ttl = ttl_ms;
                }
                StoreResult::Done
            }
            StoreCommand::ResolveGroups { groups, .. } => {
                let users: BTreeSet<String> = groups
                    .iter()
                    .filter_map(|g| self.index.get(g))
                    .flatten()
                    .cloned()
                    .collect();
                StoreResult::Users(users.into_iter().collect())
            }
            StoreCommand::Enqueue {
                room,
                item,
                via_groups,
                now_ms,
                ..
            } => {
                self.forget_expired(&room, now_ms);
                let live: Vec<String> = self
                    .devices
                    .keys()
                    .filter(|(r, _)| *r == room)
                    .map(|(_, d)| d.clone())
                    .collect();
                if live.is_empty() {
                    return enqueued(EnqueueStatus::UnknownUser, vec![]);
                }
                if let Some(via) = via_groups {
                    let recorded = self.groups.get(&room).cloned().unwrap_or_default();
                    if !via.iter().any(|g| recorded.contains(g)) {
                        return enqueued(EnqueueStatus::NotInGroups, vec![]);
                    }
                }
                let mut deliveries = Vec::new();
                for device in live {
                    let entry = self
                        .devices
                        .get_mut(&(room.clone(), device.clone()))
                        .expect("live");
                    entry
                        .queues
                        .entry(item.event.clone())
                        .or_default()
                        .insert(item.id, item.json.clone());
                    deliveries.push(Delivery {
                        device,
                        socket: entry.connected.then_some(SocketRef {
                            node: 1,
                            socket: entry.socket,
                        }),
                    });
                }
                deliveries.sort_by(|a, b| a.device.cmp(&b.device));
                enqueued(EnqueueStatus::Stored, deliveries)
            }
            StoreCommand::Ack {
                device,
                event,
                id,
                resync,
                now_ms,
            } => {
                self.forget_expired(&device.room, now_ms);
                let queue = self
                    .devices
                    .get_mut(&(device.room, device.device))
                    .and_then(|d| d.queues.get_mut(&event));
                match (queue, resync) {
                    (Some(queue), false) => StoreResult::Acked {
                        removed: queue.remove(&id).is_some(),
                    },
                    (None, false) => StoreResult::Acked { removed: false },
                    (Some(queue), true) if queue.keys().next() == Some(&id) => {
                        queue.remove(&id);
                        StoreResult::Acked { removed: true }
                    }
                    (Some(queue), true) => {
                        queue.clear();
                        StoreResult::Resync
                    }
                    (None, true) => StoreResult::Resync,
                }
            }
            StoreCommand::AckBatch {
                device,
                items,
                now_ms,
            } => {
                self.forget_expired(&device.room, now_ms);
                if let Some(entry) = self.devices.get_mut(&(device.room, device.device)) {
                    for (event, id) in items {
                        if let Some(queue) = entry.queues.get_mut(&event) {
                            queue.remove(&id);
                        }
                    }
                }
                StoreResult::Done
            }
            StoreCommand::ForgetGroupMember { room, groups, .. } => {
                for group in groups {
                    if let Some(members) = self.index.get_mut(&group) {
                        members.remove(&room);
                    }
                }
                StoreResult::Done
            }
        }
    }

    /// A device's queued ids of one event, oldest first (to pick acks that hit).
    fn queued(&self, room: &str, device: &str, event: &str) -> Vec<u64> {
        self.devices
            .get(&(room.to_owned(), device.to_owned()))
            .and_then(|d| d.queues.get(event))
            .map(|q| q.keys().copied().collect())
            .unwrap_or_default()
    }
}

fn enqueued(status: EnqueueStatus, devices: Vec<Delivery>) -> StoreResult {
    StoreResult::Enqueued { status, devices }
}

fn key(room: usize, device: usize) -> DeviceKey {
    DeviceKey {
        site: SITE.into(),
        room: ROOMS[room].into(),
        device: DEVICES[device].into(),
    }
}

fn names(indices: &[usize]) -> Vec<String> {
    let set: BTreeSet<&str> = indices.iter().map(|i| GROUPS[*i]).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Turns steps into commands, choosing ids, sockets and acks from the model's state so that
/// they hit as often as they miss.
fn run(steps: &[Step], store: &mut impl Store) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut now = 1_790_000_000_000u64;
    let mut next_id = 1u64;
    let mut next_socket = 1u64;
    let mut latest_socket: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for (index, step) in steps.iter().enumerate() {
        let command = match step {
            Step::Advance(ms) => {
                now += ms;
                continue;
            }
            Step::Connect {
                room,
                device,
                groups,
            } => {
                next_socket += 1;
                latest_socket.insert((*room, *device), next_socket);
                StoreCommand::Connect {
                    device: key(*room, *device),
                    socket: SocketRef {
                        node: 1,
                        socket: next_socket,
                    },
                    groups: groups.as_deref().map(names),
                    now_ms: now,
                }
            }
            Step::Disconnect {
                room,
                device,
                latest,
                ttl,
            } => {
                let socket = match latest_socket.get(&(*room, *device)) {
                    Some(socket) if *latest => *socket,
                    Some(socket) => socket.saturating_sub(1),
                    None => 0,
                };
                StoreCommand::Disconnect {
                    device: key(*room, *device),
                    socket: SocketRef { node: 1, socket },
                    now_ms: now,
                    ttl_ms: TTLS[*ttl],
                }
            }
            Step::Enqueue { room, event, via } => {
                next_id += 1;
                let event = EVENTS[*event];
                StoreCommand::Enqueue {
                    site: SITE.into(),
                    room: ROOMS[*room].into(),
                    item: QueuedItem {
                        id: next_id,
                        event: event.into(),
                        json: Bytes::from(format!("[\"{event}\",{{\"n\":{next_id}}}]")),
                    },
                    via_groups: via.as_deref().map(names),
                    now_ms: now,
                }
            }
            Step::Ack {
                room,
                device,
                event,
                nth,
                resync,
            } => {
                let queued = model.queued(ROOMS[*room], DEVICES[*device], EVENTS[*event]);
                let id = queued.get(*nth).copied().unwrap_or(next_id + 1000);
                StoreCommand::Ack {
                    device: key(*room, *device),
                    event: EVENTS[*event].into(),
                    id,
                    resync: *resync,
                    now_ms: now,
                }
            }
            Step::AckBatch {
                room,
                device,
                count,
            } => {
                let mut items = Vec::new();
                for event in EVENTS {
                    for id in model
                        .queued(ROOMS[*room], DEVICES[*device], event)
                        .into_iter()
                        .take(*count)
                    {
                        items.push((event.to_owned(), id));
                    }
                }
                items.push(("e".to_owned(), next_id + 7)); // never queued
                StoreCommand::AckBatch {
                    device: key(*room, *device),
                    items,
                    now_ms: now,
                }
            }
            Step::Resolve { groups } => StoreCommand::ResolveGroups {
                site: SITE.into(),
                groups: names(groups),
                now_ms: now,
            },
            Step::Forget { room, groups } => StoreCommand::ForgetGroupMember {
                site: SITE.into(),
                room: ROOMS[*room].into(),
                groups: names(groups),
                now_ms: now,
            },
        };
        let expected = model.execute(&command);
        let actual = store.execute(command.clone());
        prop_assert_eq!(actual, expected, "step {} {:?}", index, command);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_redis_store_follows_the_contract(steps in proptest::collection::vec(step_strategy(), 1..80)) {
        thread_local! {
            static REDIS: RedisServer = RedisServer::start();
        }
        static CASE: AtomicU64 = AtomicU64::new(0);
        let url = REDIS.with(RedisServer::url);
        // A fresh key prefix per case: no flushing, no interference between cases.
        let prefix = format!("model{}", CASE.fetch_add(1, Ordering::Relaxed));
        let mut store = BlockingRedisStore::open(courier_smol::SmolRuntime::new(), &url, &prefix)
            .map_err(TestCaseError::fail)?;
        run(&steps, &mut store)?;
    }
}
