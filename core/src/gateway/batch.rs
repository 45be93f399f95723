//! `_batch` pieces: how much of a device's backlog one `_batch` may carry, and its encoding.
//!
//! A device's backlog can be far larger than anything a transport takes in one message (the
//! WebSocket write buffer is capped at twice `maxHttpBufferSize`), so it is delivered as a
//! sequence of pieces, each an ordinary `_batch` with its own ack. The store reads one piece at a
//! time ([`crate::gateway::store::StoreCommand::Connect`] and
//! [`crate::gateway::store::StoreCommand::NextBatch`]) with [`BatchLimits`], so neither side
//! ever holds more than a piece of the backlog. Every store chooses the piece with
//! [`BatchLimits::admits`], so they all cut the backlog at the same places.

use crate::sio::Payload;

/// Bytes of a `_batch` payload beyond its items and their separating commas:
/// `["_batch",[` and `]]`.
pub const BATCH_ENVELOPE: usize = 13;

/// Default for `batch.maxItems`.
pub const DEFAULT_MAX_ITEMS: usize = 1000;

/// Upper bound for `batch.maxItems`: past it, one ack would name more items than a store script
/// should remove in one step.
pub const MAX_MAX_ITEMS: usize = 100_000;

/// The largest `_batch` piece: at most `max_items` items, and at most `max_bytes` bytes of items
/// (each item's JSON plus one separator), unless a single item is larger by itself (it then goes
/// alone: an item was accepted by `/send`, so it fits a transport as a live emit would).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchLimits {
    /// Items per piece, at least 1.
    pub max_items: usize,
    /// Bytes of items per piece (JSON length + 1 each), at least 1.
    pub max_bytes: usize,
}

impl BatchLimits {
    /// The defaults for a given `maxHttpBufferSize`: half of it in bytes, so a piece plus the
    /// Socket.IO framing and a few live messages always fit the WebSocket write buffer (twice
    /// `maxHttpBufferSize`), and [`DEFAULT_MAX_ITEMS`] items.
    pub fn for_max_payload(max_payload: u64) -> BatchLimits {
        let half = usize::try_from(max_payload / 2).unwrap_or(usize::MAX);
        BatchLimits {
            max_items: DEFAULT_MAX_ITEMS,
            max_bytes: half.max(1),
        }
    }

    /// Whether an item whose JSON is `len` bytes joins a piece that already holds `count` items
    /// taking `bytes` bytes (as counted by [`BatchLimits::item_bytes`]). The first item always
    /// joins, so a piece is never empty.
    pub fn admits(&self, count: usize, bytes: usize, len: usize) -> bool {
        count == 0
            || (count < self.max_items
                && bytes.saturating_add(Self::item_bytes(len)) <= self.max_bytes)
    }

    /// What an item of `len` JSON bytes counts towards `max_bytes`: its JSON and one separator.
    pub fn item_bytes(len: usize) -> usize {
        len.saturating_add(1)
    }

    /// How many of the leading items (given by their JSON lengths, in order) the next piece
    /// takes.
    pub fn piece_len(&self, lengths: impl IntoIterator<Item = usize>) -> usize {
        let (mut count, mut bytes) = (0usize, 0usize);
        for len in lengths {
            if !self.admits(count, bytes, len) {
                break;
            }
            count += 1;
            bytes = bytes.saturating_add(Self::item_bytes(len));
        }
        count
    }
}

/// `["_batch",[item,…]]` from the items' stored JSON, spliced without re-encoding.
pub fn batch_payload<'a>(items: impl Iterator<Item = &'a [u8]>) -> Payload {
    let mut json = Vec::from(&b"[\"_batch\",["[..]);
    for (index, item) in items.enumerate() {
        if index > 0 {
            json.push(b',');
        }
        json.extend_from_slice(item);
    }
    json.extend_from_slice(b"]]");
    Payload::new(json.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_payload_splices_items_in_order() {
        let items: [&[u8]; 2] = [br#"["a",1]"#, br#"["b",null]"#];
        let payload = batch_payload(items.into_iter());
        assert_eq!(&payload.json()[..], br#"["_batch",[["a",1],["b",null]]]"#);
        assert_eq!(
            payload.json().len(),
            BATCH_ENVELOPE + items.iter().map(|i| i.len() + 1).sum::<usize>() - 1
        );
    }

    #[test]
    fn a_piece_is_cut_by_count_and_by_bytes_and_never_empty() {
        let limits = BatchLimits {
            max_items: 3,
            max_bytes: 20,
        };
        assert_eq!(limits.piece_len([1, 1, 1, 1]), 3);
        assert_eq!(limits.piece_len([9, 9, 9]), 2);
        assert_eq!(limits.piece_len([50, 1]), 1);
        assert_eq!(limits.piece_len([]), 0);
    }
}
