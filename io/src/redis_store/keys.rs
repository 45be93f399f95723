//! Key names and value encodings of the Redis layout (see `io/REDIS-LAYOUT.md`).

use bytes::Bytes;
use courier_core::gateway::store::{Delivery, EnqueueStatus, QueuedItem, SocketRef, StoreResult};
use redis::RedisError;

/// Escapes `%`, `:`, `{` and `}` as `%XX`, so names can be joined with `:` inside a hash tag.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            other => out.push(other),
        }
    }
    out
}

pub(super) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(super) fn padded(id: u64) -> String {
    format!("{id:020}")
}

/// A queue member: `<20-digit id>:<json>`, so equal scores still sort by id.
pub(super) fn member(id: u64, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(21 + json.len());
    out.extend_from_slice(padded(id).as_bytes());
    out.push(b':');
    out.extend_from_slice(json);
    out
}

pub(super) fn parse_member(event: &[u8], member: &[u8]) -> Option<QueuedItem> {
    let id = std::str::from_utf8(member.get(..20)?).ok()?.parse().ok()?;
    if member.get(20) != Some(&b':') {
        return None;
    }
    Some(QueuedItem {
        id,
        event: String::from_utf8(event.to_vec()).ok()?,
        json: Bytes::copy_from_slice(&member[21..]),
    })
}

pub(super) fn split_legacy_entry(entry: &[u8]) -> Option<(u64, &[u8])> {
    let colon = entry.iter().position(|&b| b == b':')?;
    let id = std::str::from_utf8(&entry[..colon]).ok()?.parse().ok()?;
    Some((id, &entry[colon + 1..]))
}

pub(super) fn socket_text(socket: SocketRef) -> String {
    format!("{}:{}", socket.node, socket.socket)
}

pub(super) fn parse_socket(text: &[u8]) -> Option<SocketRef> {
    let text = std::str::from_utf8(text).ok()?;
    let (node, socket) = text.split_once(':')?;
    Some(SocketRef {
        node: node.parse().ok()?,
        socket: socket.parse().ok()?,
    })
}

/// A Connect reply `{ imported, more, event1, member1, ... }`: whether the device was imported
/// and the first piece (empty when not imported).
pub(super) fn parse_connected(reply: &[Vec<u8>]) -> Option<(bool, StoreResult)> {
    let imported = reply.first()? == b"1";
    let piece = parse_piece(reply.get(1..)?)?;
    Some((imported, piece))
}

/// The shard (of `shards`) a user room belongs to: FNV-1a (32 bits) of its name. Fixed for a
/// layout: changing it (or the count) moves every user, which the layout version guards.
pub fn shard_of(room: &str, shards: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in room.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % shards.max(1)
}

/// A `_batch` piece: `{ more ("1"/"0"), event1, member1, ... }`, already in id order.
pub(super) fn parse_piece(reply: &[Vec<u8>]) -> Option<StoreResult> {
    let (more, pairs) = reply.split_first()?;
    let items = pairs
        .chunks(2)
        .map(|pair| match pair {
            [event, member] => parse_member(event, member),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(StoreResult::Connected {
        items,
        more: more.as_slice() == b"1",
    })
}

pub(super) fn parse_enqueued(reply: &[Vec<u8>]) -> Option<StoreResult> {
    let status = match reply.first()?.as_slice() {
        b"stored" => EnqueueStatus::Stored,
        b"unknown" => EnqueueStatus::UnknownUser,
        b"not_in_groups" => EnqueueStatus::NotInGroups,
        _ => return None,
    };
    let mut devices = reply[1..]
        .chunks(2)
        .map(|pair| match pair {
            [device, socket] => Some(Delivery {
                device: String::from_utf8(device.clone()).ok()?,
                socket: if socket.is_empty() {
                    None
                } else {
                    Some(parse_socket(socket)?)
                },
            }),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    devices.sort_by(|a, b| a.device.cmp(&b.device));
    Some(StoreResult::Enqueued { status, devices })
}

pub(super) fn protocol_error(what: &'static str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected script reply",
        what.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_over_the_shards_and_stay_put() {
        assert_eq!(shard_of("user_1", 1), 0);
        // The hash is part of the layout: these values must never change.
        assert_eq!(shard_of("", 16), 0x811c_9dc5 % 16);
        assert_eq!(shard_of("user_1", 16), shard_of("user_1", 16));
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            seen[shard_of(&format!("user_{i}"), 16) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn escapes_separators_and_hash_tag_braces() {
        assert_eq!(escape("a:b{c}%d"), "a%3Ab%7Bc%7D%25d");
        assert_eq!(escape("user_1"), "user_1");
    }

    #[test]
    fn members_sort_by_id_and_parse_back() {
        let small = member(9, b"[\"e\"]");
        let large = member(10_000_000_000_000_000_000, b"[\"e\",1]");
        assert!(small < large);
        let item = parse_member(b"e", &large).expect("parses");
        assert_eq!(item.id, 10_000_000_000_000_000_000);
        assert_eq!(&item.json[..], b"[\"e\",1]");
        assert_eq!(parse_member(b"e", b"12:x"), None);
    }

    #[test]
    fn legacy_entries_split_at_the_first_colon() {
        assert_eq!(
            split_legacy_entry(b"42:[\"a:b\",1]"),
            Some((42, &b"[\"a:b\",1]"[..]))
        );
        assert_eq!(split_legacy_entry(b"x:[]"), None);
        assert_eq!(
            glob_escape("/s:socket.io:r*:d?:"),
            "/s:socket.io:r\\*:d\\?:"
        );
    }
}
