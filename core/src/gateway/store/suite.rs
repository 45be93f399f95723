//! The model-based property suite every store must pass (feature `store-suite`).
//!
//! [`check_store`] generates random operation sequences — connects and disconnects of several
//! devices of several users of two sites, stale disconnects, sends to user rooms, through group
//! rooms and to the public channel, per-message acks with and without the resync head check,
//! `_batch` acks, `_batch` pieces of every size (connects with small piece limits, then
//! `NextBatch` after acking part of a piece, from the draining socket or a stale one), group
//! resolution and forgetting, epoch checks, time moving on past ttls, and the store losing
//! everything it held (Redis restarted empty) — turns them
//! into [`StoreCommand`]s, runs each command on the [`Model`] and on the store under test, and
//! requires identical results. A ledger kept beside them checks the model's results against the
//! queue's promises: nothing queued is lost before it is acknowledged or its device expires,
//! an expired device is gone, the resync head check follows flake-id order, a batch ack removes
//! exactly what it names, sites never see each other's devices, a piece is the head of the
//! queue cut by its limits, a draining device gets no live delivery until its last piece, and
//! the epoch changes exactly when the store lost everything (then every device, queue and group
//! is gone).
//!
//! The sequences only use values a real gateway could produce (flake-like unique ids, sockets
//! named by node and number), never object identity, so the suite runs unchanged against a
//! store in another process (Redis behind a blocking wrapper). `make` is called once per case
//! and must return an empty store.

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::command::{
    BatchLimits, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, Store, StoreCommand, StoreResult,
};
use super::model::Model;

const SITES: [&str; 2] = ["alpha", "beta"];
/// The last room is each site's public channel (no groups).
const ROOMS: [&str; 4] = ["user_1", "user_2", "user_3", "browse"];
const DEVICES: [&str; 3] = ["", "d1", "d2"];
const GROUPS: [&str; 3] = ["staff", "reviewer", "drivers"];
const EVENTS: [&str; 3] = ["update_store", "notice", "grp"];
const TTLS_MS: [u64; 3] = [0, 1_000, 3_000];
const START_MS: u64 = 1_700_000_000_000;
/// Piece limits a connect or `NextBatch` may use: tiny ones cut backlogs into many pieces.
const LIMITS: [BatchLimits; 4] = [
    BatchLimits {
        max_items: 1,
        max_bytes: 1_000,
    },
    BatchLimits {
        max_items: 2,
        max_bytes: 1_000,
    },
    BatchLimits {
        max_items: 100,
        max_bytes: 60,
    },
    BatchLimits {
        max_items: 1_000,
        max_bytes: 1_000_000,
    },
];

/// The JSON of item `id` of `event`: lengths vary with the id, so byte limits cut anywhere.
fn item_json(event: &str, id: u64) -> String {
    let pad = "x".repeat((id % 7 * 5) as usize);
    format!("[\"{event}\",{id},\"{pad}\"]")
}

/// One abstract step; indices are reduced modulo the universe sizes.
#[derive(Debug, Clone)]
enum Op {
    Connect {
        site: usize,
        room: usize,
        device: usize,
        groups: u8,
        node: u64,
        limits: usize,
    },
    NextBatch {
        site: usize,
        room: usize,
        device: usize,
        keep: u32,
        stale: bool,
        limits: usize,
    },
    Disconnect {
        site: usize,
        room: usize,
        device: usize,
        stale: bool,
        ttl: usize,
    },
    Resolve {
        site: usize,
        groups: u8,
    },
    Enqueue {
        site: usize,
        room: usize,
        via: Option<u8>,
        event: usize,
        lagging_node: bool,
    },
    Ack {
        site: usize,
        room: usize,
        device: usize,
        event: usize,
        pick: usize,
        resync: bool,
    },
    AckBatch {
        site: usize,
        room: usize,
        device: usize,
        keep: u32,
    },
    Forget {
        site: usize,
        room: usize,
        groups: u8,
    },
    Advance {
        ms: u64,
    },
    CheckEpoch,
    /// The store loses every key it held (applied to the model and the store alike).
    LoseEverything,
}

/// A store the suite can make lose everything it holds, as a Redis restarted without
/// persistence does.
pub trait LoseEverything {
    /// Forgets every device, queue, group and the epoch.
    fn lose_everything(&mut self);
}

impl LoseEverything for super::MemoryStore {
    fn lose_everything(&mut self) {
        *self = super::MemoryStore::new();
    }
}

impl LoseEverything for Model {
    fn lose_everything(&mut self) {
        Model::lose_everything(self);
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let site = 0..SITES.len();
    let room = 0..ROOMS.len();
    let device = 0..DEVICES.len();
    prop_oneof![
        4 => (site.clone(), room.clone(), device.clone(), 0u8..8, 1u64..3, 0..LIMITS.len()).prop_map(
            |(site, room, device, groups, node, limits)| Op::Connect { site, room, device, groups, node, limits }
        ),
        3 => (site.clone(), room.clone(), device.clone(), any::<u32>(), proptest::bool::weighted(0.15), 0..LIMITS.len()).prop_map(
            |(site, room, device, keep, stale, limits)| Op::NextBatch { site, room, device, keep, stale, limits }
        ),
        3 => (site.clone(), room.clone(), device.clone(), proptest::bool::weighted(0.2), 0..TTLS_MS.len())
            .prop_map(|(site, room, device, stale, ttl)| Op::Disconnect { site, room, device, stale, ttl }),
        1 => (site.clone(), 0u8..8).prop_map(|(site, groups)| Op::Resolve { site, groups }),
        6 => (site.clone(), room.clone(), proptest::option::weighted(0.3, 0u8..8), 0..EVENTS.len(), proptest::bool::weighted(0.2))
            .prop_map(|(site, room, via, event, lagging_node)| Op::Enqueue { site, room, via, event, lagging_node }),
        4 => (site.clone(), room.clone(), device.clone(), 0..EVENTS.len(), 0usize..6, any::<bool>())
            .prop_map(|(site, room, device, event, pick, resync)| Op::Ack { site, room, device, event, pick, resync }),
        2 => (site.clone(), room.clone(), device.clone(), any::<u32>())
            .prop_map(|(site, room, device, keep)| Op::AckBatch { site, room, device, keep }),
        1 => (site, room, 0u8..8).prop_map(|(site, room, groups)| Op::Forget { site, room, groups }),
        2 => prop_oneof![
            // Land exactly on, just before and just after the ttl boundaries.
            proptest::sample::select(vec![1u64, 999, 1_000, 1_001, 2_000, 3_000, 3_001]),
            0u64..4_000,
        ]
        .prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::CheckEpoch),
        1 => Just(Op::LoseEverything),
    ]
}

fn group_set(mask: u8) -> Vec<String> {
    GROUPS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, g)| (*g).to_owned())
        .collect()
}

fn key(site: usize, room: usize, device: usize) -> DeviceKey {
    DeviceKey {
        site: SITES[site].to_owned(),
        room: ROOMS[room].to_owned(),
        device: DEVICES[device].to_owned(),
    }
}

/// Turns abstract ops into concrete commands, remembering what a gateway would remember.
#[derive(Debug, Default)]
struct Driver {
    now_ms: u64,
    next_socket: u64,
    /// Ids of two nodes: node 0 is ahead, node 1 lags, so push order is not always id order.
    ids: [u64; 2],
    sockets: HashMap<DeviceKey, Vec<SocketRef>>,
    sent: HashMap<(String, String, String), Vec<u64>>,
    batches: HashMap<DeviceKey, Vec<(String, u64)>>,
}

impl Driver {
    fn new() -> Self {
        Driver {
            now_ms: START_MS,
            ids: [1_000_000, 0],
            ..Driver::default()
        }
    }

    fn command(&mut self, op: &Op) -> Option<StoreCommand> {
        let now_ms = self.now_ms;
        Some(match *op {
            Op::Connect {
                site,
                room,
                device,
                groups,
                node,
                limits,
            } => {
                self.next_socket += 1;
                let socket = SocketRef {
                    node,
                    socket: self.next_socket,
                };
                let device = key(site, room, device);
                self.sockets.entry(device.clone()).or_default().push(socket);
                let public = room == ROOMS.len() - 1;
                StoreCommand::Connect {
                    device,
                    socket,
                    groups: (!public).then(|| group_set(groups)),
                    limits: LIMITS[limits],
                    now_ms,
                }
            }
            Op::NextBatch {
                site,
                room,
                device,
                keep,
                stale,
                limits,
            } => {
                let device = key(site, room, device);
                let history = self.sockets.get(&device)?;
                let socket = if stale {
                    *history.first()?
                } else {
                    *history.last()?
                };
                // Usually the whole piece (as a client acks it), sometimes only part of it.
                let piece = self.batches.get(&device).cloned().unwrap_or_default();
                let acked = piece
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| keep & 1 == 0 || *i >= 31 || keep & (1 << (i + 1)) != 0)
                    .map(|(_, item)| item)
                    .collect();
                StoreCommand::NextBatch {
                    device,
                    socket,
                    acked,
                    limits: LIMITS[limits],
                    now_ms,
                }
            }
            Op::Disconnect {
                site,
                room,
                device,
                stale,
                ttl,
            } => {
                let device = key(site, room, device);
                let history = self.sockets.get(&device)?;
                let socket = if stale {
                    *history.first()?
                } else {
                    *history.last()?
                };
                StoreCommand::Disconnect {
                    device,
                    socket,
                    now_ms,
                    ttl_ms: TTLS_MS[ttl],
                }
            }
            Op::Resolve { site, groups } => StoreCommand::ResolveGroups {
                site: SITES[site].to_owned(),
                groups: group_set(groups),
                now_ms,
            },
            Op::Enqueue {
                site,
                room,
                via,
                event,
                lagging_node,
            } => {
                let node = usize::from(lagging_node);
                self.ids[node] += 2;
                let id = self.ids[node];
                let event = EVENTS[event];
                self.sent
                    .entry((
                        SITES[site].to_owned(),
                        ROOMS[room].to_owned(),
                        event.to_owned(),
                    ))
                    .or_default()
                    .push(id);
                StoreCommand::Enqueue {
                    site: SITES[site].to_owned(),
                    room: ROOMS[room].to_owned(),
                    item: QueuedItem {
                        id,
                        event: event.to_owned(),
                        json: Bytes::from(item_json(event, id)),
                    },
                    via_groups: via.map(group_set),
                    now_ms,
                }
            }
            Op::Ack {
                site,
                room,
                device,
                event,
                pick,
                resync,
            } => {
                let event = EVENTS[event];
                let sent = self.sent.get(&(
                    SITES[site].to_owned(),
                    ROOMS[room].to_owned(),
                    event.to_owned(),
                ));
                // Mostly an id that was sent (often the oldest), sometimes one never sent.
                let id = sent.and_then(|ids| ids.get(pick)).copied().unwrap_or(3);
                StoreCommand::Ack {
                    device: key(site, room, device),
                    event: event.to_owned(),
                    id,
                    resync,
                    now_ms,
                }
            }
            Op::AckBatch {
                site,
                room,
                device,
                keep,
            } => {
                let device = key(site, room, device);
                let batch = self.batches.get(&device)?;
                let items = batch
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i >= 32 || keep & (1 << i) != 0)
                    .map(|(_, item)| item.clone())
                    .collect();
                StoreCommand::AckBatch {
                    device,
                    items,
                    now_ms,
                }
            }
            Op::Forget { site, room, groups } => StoreCommand::ForgetGroupMember {
                site: SITES[site].to_owned(),
                room: ROOMS[room].to_owned(),
                groups: group_set(groups),
                now_ms,
            },
            Op::Advance { ms } => {
                self.now_ms += ms;
                return None;
            }
            Op::CheckEpoch => {
                // Flake-like: every candidate is new.
                self.ids[0] += 2;
                StoreCommand::CheckEpoch {
                    candidate: self.ids[0],
                    now_ms,
                }
            }
            Op::LoseEverything => return None,
        })
    }

    fn observe(&mut self, command: &StoreCommand, result: &StoreResult) {
        if let (
            StoreCommand::Connect { device, .. } | StoreCommand::NextBatch { device, .. },
            StoreResult::Connected { items, .. },
        ) = (command, result)
        {
            self.batches.insert(
                device.clone(),
                items
                    .iter()
                    .map(|item| (item.event.clone(), item.id))
                    .collect(),
            );
        }
    }
}

#[derive(Debug, Clone)]
struct LedgerDevice {
    socket: SocketRef,
    connected: bool,
    draining: bool,
    disconnected_at: u64,
    ttl_ms: u64,
    /// `(event, id)` stored for the device and not yet removed, in push order.
    outstanding: Vec<(String, u64)>,
}

/// The queue's promises, tracked per device from the results alone.
#[derive(Debug, Default)]
struct Ledger {
    devices: HashMap<DeviceKey, LedgerDevice>,
    /// The epoch the last check saw; `None` before the first and after a loss.
    epoch: Option<u64>,
}

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if condition {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

/// Checks a piece against the device's outstanding items: the head in id order, cut by `limits`.
fn check_piece(
    device: &DeviceKey,
    outstanding: &[(String, u64)],
    limits: BatchLimits,
    items: &[QueuedItem],
    more: bool,
) -> Result<(), TestCaseError> {
    let got: Vec<(String, u64)> = items.iter().map(|i| (i.event.clone(), i.id)).collect();
    ensure(got.windows(2).all(|w| w[0].1 < w[1].1), || {
        format!("piece not in id order: {got:?}")
    })?;
    let mut expected = outstanding.to_vec();
    expected.sort_by_key(|(_, id)| *id);
    let take = limits.piece_len(expected.iter().map(|(e, id)| item_json(e, *id).len()));
    let rest = expected.split_off(take);
    ensure(got == expected && more != rest.is_empty(), || {
        format!(
            "piece of {device:?} with {limits:?}: got {got:?} (more {more}), expected {expected:?} then {rest:?}"
        )
    })
}

impl Ledger {
    /// Everything is gone: no device is known any more and the next epoch is a new one.
    fn lose_everything(&mut self) {
        *self = Ledger::default();
    }

    fn expire(&mut self, now_ms: u64) {
        self.devices
            .retain(|_, d| d.connected || d.ttl_ms == 0 || now_ms - d.disconnected_at <= d.ttl_ms);
    }

    fn check(&mut self, command: &StoreCommand, result: &StoreResult) -> Result<(), TestCaseError> {
        match (command, result) {
            (
                StoreCommand::Connect {
                    device,
                    socket,
                    limits,
                    now_ms,
                    ..
                },
                StoreResult::Connected { items, more },
            ) => {
                self.expire(*now_ms);
                let outstanding = self
                    .devices
                    .get(device)
                    .map(|d| d.outstanding.clone())
                    .unwrap_or_default();
                check_piece(device, &outstanding, *limits, items, *more)?;
                let entry = self.devices.entry(device.clone()).or_insert(LedgerDevice {
                    socket: *socket,
                    connected: true,
                    draining: false,
                    disconnected_at: 0,
                    ttl_ms: 0,
                    outstanding: Vec::new(),
                });
                entry.draining = *more;
                entry.socket = *socket;
                entry.connected = true;
            }
            (
                StoreCommand::Disconnect {
                    device,
                    socket,
                    now_ms,
                    ttl_ms,
                },
                StoreResult::Done,
            ) => {
                self.expire(*now_ms);
                if let Some(d) = self.devices.get_mut(device)
                    && d.connected
                    && d.socket == *socket
                {
                    d.connected = false;
                    d.disconnected_at = *now_ms;
                    d.ttl_ms = *ttl_ms;
                }
            }
            (
                StoreCommand::Enqueue {
                    site,
                    room,
                    item,
                    now_ms,
                    ..
                },
                StoreResult::Enqueued { status, devices },
            ) => {
                self.expire(*now_ms);
                let mut alive: Vec<(&String, &LedgerDevice)> = self
                    .devices
                    .iter()
                    .filter(|(k, _)| &k.site == site && &k.room == room)
                    .map(|(k, d)| (&k.device, d))
                    .collect();
                alive.sort_by(|a, b| a.0.cmp(b.0));
                match status {
                    EnqueueStatus::UnknownUser => {
                        ensure(alive.is_empty() && devices.is_empty(), || {
                            format!("{site}/{room} reported unknown but has live devices {alive:?}")
                        })?
                    }
                    EnqueueStatus::NotInGroups => {
                        ensure(!alive.is_empty() && devices.is_empty(), || {
                            format!("{site}/{room} reported not in groups but is unknown or stored")
                        })?
                    }
                    EnqueueStatus::Stored => {
                        let expected: Vec<(String, Option<SocketRef>)> = alive
                            .iter()
                            .map(|(id, d)| {
                                (
                                    (*id).clone(),
                                    (d.connected && !d.draining).then_some(d.socket),
                                )
                            })
                            .collect();
                        let got: Vec<(String, Option<SocketRef>)> = devices
                            .iter()
                            .map(|d| (d.device.clone(), d.socket))
                            .collect();
                        ensure(!got.is_empty() && got == expected, || {
                            format!(
                                "{site}/{room} stored for {got:?}, live devices are {expected:?}"
                            )
                        })?;
                        for delivery in devices {
                            let device = DeviceKey {
                                site: site.clone(),
                                room: room.clone(),
                                device: delivery.device.clone(),
                            };
                            if let Some(d) = self.devices.get_mut(&device) {
                                d.outstanding.push((item.event.clone(), item.id));
                            }
                        }
                    }
                }
            }
            (
                StoreCommand::Ack {
                    device,
                    event,
                    id,
                    resync,
                    now_ms,
                },
                result,
            ) => {
                self.expire(*now_ms);
                let outstanding = self.devices.get_mut(device).map(|d| &mut d.outstanding);
                let expected = match outstanding {
                    None if *resync => StoreResult::Resync,
                    None => StoreResult::Acked { removed: false },
                    Some(queue) if *resync => {
                        // The head is the event's smallest id (send order = flake-id order).
                        let head = queue
                            .iter()
                            .enumerate()
                            .filter(|(_, (e, _))| e == event)
                            .min_by_key(|(_, (_, i))| *i)
                            .map(|(at, _)| at);
                        match head {
                            Some(at) if queue[at].1 == *id => {
                                queue.remove(at);
                                StoreResult::Acked { removed: true }
                            }
                            _ => {
                                queue.retain(|(e, _)| e != event);
                                StoreResult::Resync
                            }
                        }
                    }
                    Some(queue) => {
                        let at = queue.iter().position(|(e, i)| e == event && i == id);
                        if let Some(at) = at {
                            queue.remove(at);
                        }
                        StoreResult::Acked {
                            removed: at.is_some(),
                        }
                    }
                };
                ensure(&expected == result, || {
                    format!(
                        "ack {event}/{id} (resync {resync}) of {device:?}: expected {expected:?}, got {result:?}"
                    )
                })?;
            }
            (
                StoreCommand::AckBatch {
                    device,
                    items,
                    now_ms,
                },
                StoreResult::Done,
            ) => {
                self.expire(*now_ms);
                if let Some(d) = self.devices.get_mut(device) {
                    for (event, id) in items {
                        if let Some(at) = d
                            .outstanding
                            .iter()
                            .position(|(e, i)| e == event && i == id)
                        {
                            d.outstanding.remove(at);
                        }
                    }
                }
            }
            (
                StoreCommand::NextBatch {
                    device,
                    socket,
                    acked,
                    limits,
                    now_ms,
                },
                StoreResult::Connected { items, more },
            ) => {
                self.expire(*now_ms);
                let Some(d) = self.devices.get_mut(device) else {
                    return ensure(items.is_empty() && !more, || {
                        format!("NextBatch of absent {device:?} read {items:?}")
                    });
                };
                for (event, id) in acked {
                    if let Some(at) = d
                        .outstanding
                        .iter()
                        .position(|(e, i)| e == event && i == id)
                    {
                        d.outstanding.remove(at);
                    }
                }
                if d.connected && d.draining && d.socket == *socket {
                    check_piece(device, &d.outstanding, *limits, items, *more)?;
                    d.draining = *more;
                } else {
                    ensure(items.is_empty() && !more, || {
                        format!(
                            "NextBatch of {device:?} not draining through {socket:?} read {items:?}"
                        )
                    })?;
                }
            }
            (StoreCommand::ResolveGroups { .. }, StoreResult::Users(users)) => {
                ensure(users.windows(2).all(|w| w[0] < w[1]), || {
                    format!("users not sorted and distinct: {users:?}")
                })?;
            }
            (StoreCommand::ForgetGroupMember { .. }, StoreResult::Done) => {}
            (StoreCommand::CheckEpoch { candidate, .. }, StoreResult::Epoch(epoch)) => {
                // Unchanged while the data lasts; the first check after a loss writes its own.
                let expected = *self.epoch.get_or_insert(*candidate);
                ensure(*epoch == expected, || {
                    format!("epoch {epoch}, expected {expected} (candidate {candidate})")
                })?;
            }
            (command, result) => {
                return Err(TestCaseError::fail(format!(
                    "result {result:?} does not answer {command:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Runs `cases` random operation sequences on the [`Model`] and on stores made by `make`,
/// comparing every result, and panics with the shrunk failing sequence on the first difference.
pub fn check_store<S: Store + LoseEverything>(make: impl Fn() -> S, cases: u32) {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&proptest::collection::vec(op_strategy(), 1..80), |ops| {
        let mut model = Model::new();
        let mut store = make();
        let mut driver = Driver::new();
        let mut ledger = Ledger::default();
        for (step, op) in ops.iter().enumerate() {
            if let Op::LoseEverything = op {
                model.lose_everything();
                store.lose_everything();
                ledger.lose_everything();
                continue;
            }
            let Some(command) = driver.command(op) else {
                continue;
            };
            let expected = model.execute(command.clone());
            let got = store.execute(command.clone());
            prop_assert_eq!(
                &expected,
                &got,
                "step {} ({:?}): store differs from the model",
                step,
                command
            );
            ledger.check(&command, &expected)?;
            driver.observe(&command, &expected);
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("store property suite failed: {failure}");
    }
}
