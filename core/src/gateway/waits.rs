//! The table of store commands in flight: what each is for and when it times out.
//!
//! Every stored delivery puts two commands through it (its `Enqueue` and its `Ack`), so it is
//! on the hot path. Ids are issued in increasing order and every command gets the same timeout,
//! so the earliest deadline is always that of the oldest command still waiting: a hash map finds
//! a command by id ([`IdMap`]: no keyed hash for ids the gateway issues), and a queue in issue order gives the oldest. (An ordered map did both at
//! once, but moved its large entries around within its nodes on every insert and removal.)

use std::collections::VecDeque;
use std::time::Instant;

use crate::ids::IdMap;
use crate::net::StoreCmdId;

/// Store commands in flight, by id, each with its deadline and what it is for.
#[derive(Debug)]
pub(super) struct Waits<W> {
    by_id: IdMap<StoreCmdId, (Instant, W)>,
    /// Ids in issue order (so in deadline order). Answered ids are dropped from the front as
    /// they come up, and the whole queue is compacted when answered ids pile up behind an old
    /// command still waiting, so it never holds many more ids than there are commands.
    order: VecDeque<StoreCmdId>,
}

impl<W> Default for Waits<W> {
    fn default() -> Waits<W> {
        Waits {
            by_id: IdMap::default(),
            order: VecDeque::new(),
        }
    }
}

impl<W> Waits<W> {
    /// Remembers command `id`, issued after every id already here, until `deadline`.
    pub(super) fn insert(&mut self, id: StoreCmdId, deadline: Instant, wait: W) {
        self.by_id.insert(id, (deadline, wait));
        self.order.push_back(id);
        if self.order.len() > 2 * self.by_id.len() + 64 {
            let by_id = &self.by_id;
            self.order.retain(|id| by_id.contains_key(id));
        }
    }

    /// Forgets command `id`, returning its deadline and what it was for.
    pub(super) fn remove(&mut self, id: StoreCmdId) -> Option<(Instant, W)> {
        let entry = self.by_id.remove(&id)?;
        self.trim();
        Some(entry)
    }

    /// The earliest deadline of a command still waiting.
    pub(super) fn first_deadline(&self) -> Option<Instant> {
        let id = self.order.front()?;
        self.by_id.get(id).map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the oldest command if its deadline is not after `now`.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<W> {
        self.trim();
        let id = *self.order.front()?;
        if self
            .by_id
            .get(&id)
            .is_none_or(|(deadline, _)| *deadline > now)
        {
            return None;
        }
        self.remove(id).map(|(_, wait)| wait)
    }

    /// Drops answered ids from the front, so the front is the oldest command still waiting.
    fn trim(&mut self) {
        while let Some(id) = self.order.front() {
            if self.by_id.contains_key(id) {
                break;
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_oldest_waiting_command_sets_the_deadline() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut waits = Waits::default();
        for id in 1..=3 {
            waits.insert(StoreCmdId(id), at(id * 10), id);
        }
        assert_eq!(waits.first_deadline(), Some(at(10)));
        assert_eq!(waits.remove(StoreCmdId(2)), Some((at(20), 2)));
        assert_eq!(waits.remove(StoreCmdId(2)), None);
        assert_eq!(waits.remove(StoreCmdId(1)), Some((at(10), 1)));
        // 2 was answered already: 3 is next.
        assert_eq!(waits.first_deadline(), Some(at(30)));
        assert_eq!(waits.pop_expired(at(29)), None);
        assert_eq!(waits.pop_expired(at(30)), Some(3));
        assert_eq!(waits.first_deadline(), None);
        assert_eq!(waits.pop_expired(at(99)), None);
    }

    #[test]
    fn answered_ids_behind_an_old_command_do_not_pile_up() {
        let start = Instant::now();
        let mut waits = Waits::default();
        waits.insert(StoreCmdId(0), start, ());
        for id in 1..10_000 {
            waits.insert(StoreCmdId(id), start, ());
            waits.remove(StoreCmdId(id));
        }
        assert!(
            waits.order.len() <= 2 * waits.by_id.len() + 65,
            "{}",
            waits.order.len()
        );
        assert_eq!(waits.first_deadline(), Some(start));
        assert_eq!(waits.pop_expired(start), Some(()));
        assert!(waits.order.is_empty() && waits.by_id.is_empty());
    }
}
