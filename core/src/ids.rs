//! Hash maps keyed by the numeric ids Courier issues itself (sessions, sockets, connections,
//! requests, store commands).
//!
//! Such ids are counters: nobody outside the process chooses them, so the keyed hash that
//! protects a map from crafted keys buys nothing there, while it costs tens of nanoseconds per
//! lookup — and a delivery looks up its socket, session and connection a dozen times.
//! [`IdHasher`] hashes an id with one multiplication instead; use [`IdMap`] only for keys that
//! cannot come from a peer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hash map keyed by a process-issued numeric id (see the module docs).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Hashes a process-issued id by one multiplication (Fibonacci hashing): consecutive ids land
/// far apart, in the high bits too, which the table uses to pick and tag slots (an identity
/// hash would leave them all alike).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

/// 2^64 divided by the golden ratio.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by the id types (they hash one integer); correct for anything else.
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(GOLDEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_spread_over_the_high_bits() {
        let tags: std::collections::HashSet<u64> = (0..128_u64)
            .map(|id| {
                let mut hasher = IdHasher::default();
                hasher.write_u64(id);
                hasher.finish() >> 57
            })
            .collect();
        assert!(tags.len() > 64, "{} distinct 7-bit tags", tags.len());
        let mut map: IdMap<u64, u64> = IdMap::default();
        for id in 0..10_000 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000).all(|id| map.get(&id) == Some(&(id * 2))));
    }
}
