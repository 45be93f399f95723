//! The layout version key: which layout (and shard count) the data under a prefix is in.
//!
//! The first node that uses a prefix writes `<prefix>:layout` = `courier-store <version>
//! shards=<n> legacy=<0|1>` (`SET NX`, so of two nodes starting together one value wins). Every
//! node compares the version and the shard count with its own before its first command, again
//! after every connection failure (Redis may have come back empty, or another one answers) and
//! with every epoch check; a node that finds another layout refuses to run store commands: each
//! fails with the message, which also makes `/readyz` answer 503, and at start it exits with it.
//!
//! `legacy` records whether the original's lists (`/<site>:socket.io:…`) existed when the layout
//! was written: only then must a device seen for the first time look for lists to import. Found
//! once, by a bounded `SCAN` of the whole key space, when the key is written.

use redis::{AsyncCommands, RedisError};

use super::{RedisStore, scan_lists, scan_targets};

/// The layout version this code reads and writes. Bump it with every incompatible change of
/// `io/REDIS-LAYOUT.md`.
pub const LAYOUT_VERSION: u32 = 3;

/// How many `SCAN … COUNT 1000` calls the search for the original's lists may make (10 million
/// keys); past it, Courier assumes there are some and imports on first sight, as always safe.
const LEGACY_PROBE_CALLS: usize = 10_000;

/// What the version key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub version: u32,
    pub shards: u32,
    /// The original's lists may exist: new devices look for lists to import.
    pub legacy: bool,
}

impl Layout {
    pub(super) fn text(&self) -> String {
        format!(
            "courier-store {} shards={} legacy={}",
            self.version,
            self.shards,
            u8::from(self.legacy)
        )
    }

    pub(super) fn parse(text: &str) -> Option<Layout> {
        let mut words = text.split(' ');
        if words.next()? != "courier-store" {
            return None;
        }
        let version = words.next()?.parse().ok()?;
        let shards = words.next()?.strip_prefix("shards=")?.parse().ok()?;
        let legacy = match words.next()?.strip_prefix("legacy=")? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(Layout {
            version,
            shards,
            legacy,
        })
    }
}

/// Why the store cannot run commands now.
#[derive(Debug)]
pub enum LayoutError {
    /// Redis holds data in another layout (or shard count): the message says both and what to
    /// do. Store commands fail with it until the key matches.
    Mismatch(String),
    /// Redis could not be asked.
    Unreachable(RedisError),
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::Mismatch(text) => f.write_str(text),
            LayoutError::Unreachable(error) => write!(f, "{error}"),
        }
    }
}

impl RedisStore {
    /// `<prefix>:layout`.
    pub(super) fn layout_key(&self) -> String {
        format!("{}:layout", self.prefix)
    }

    /// Reads the version key (writing it on first use) and compares it with this node's layout.
    /// On success, remembers whether new devices need the legacy import.
    pub async fn check_layout(&self) -> Result<(), LayoutError> {
        let mut connection = self.connection.clone();
        let key = self.layout_key();
        let found: Option<String> = connection
            .get(&key)
            .await
            .map_err(LayoutError::Unreachable)?;
        let found = match found {
            Some(found) => found,
            None => {
                let legacy = self
                    .legacy_lists_exist()
                    .await
                    .map_err(LayoutError::Unreachable)?;
                let ours = Layout {
                    version: LAYOUT_VERSION,
                    shards: self.shards,
                    legacy,
                };
                let (_, found): (Option<String>, String) = redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(ours.text())
                    .arg("NX")
                    .cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .map_err(LayoutError::Unreachable)?;
                found
            }
        };
        self.accept_layout(&found)
    }

    /// Compares the version key's value with this node's layout and records the outcome.
    pub(super) fn accept_layout(&self, found: &str) -> Result<(), LayoutError> {
        match Layout::parse(found) {
            Some(layout) if layout.version == LAYOUT_VERSION && layout.shards == self.shards => {
                self.state.set_layout(Ok(layout.legacy));
                Ok(())
            }
            _ => {
                let text = format!(
                    "the Redis store under prefix {:?} holds layout \"{found}\" (key {}), but this \
                     node uses \"courier-store {LAYOUT_VERSION} shards={}\": set redis.shards to \
                     the stored count, or move the data to a fresh Redis or prefix \
                     (io/REDIS-LAYOUT.md, \"Layout version\")",
                    self.prefix,
                    self.layout_key(),
                    self.shards
                );
                self.state.set_layout(Err(text.clone()));
                Err(LayoutError::Mismatch(text))
            }
        }
    }

    /// Whether any list of the original's naming (`/<site>:socket.io:…`) exists (on any
    /// primary of a cluster).
    async fn legacy_lists_exist(&self) -> Result<bool, RedisError> {
        for node in scan_targets(&self.connection).await? {
            let mut cursor: u64 = 0;
            let mut calls = 0;
            loop {
                if calls == LEGACY_PROBE_CALLS {
                    return Ok(true);
                }
                calls += 1;
                let (next, found) =
                    scan_lists(&self.connection, node.as_ref(), cursor, "/*:socket.io:*").await?;
                if !found.is_empty() {
                    return Ok(true);
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_text_parses_back() {
        let layout = Layout {
            version: 3,
            shards: 16,
            legacy: true,
        };
        assert_eq!(layout.text(), "courier-store 3 shards=16 legacy=1");
        assert_eq!(Layout::parse(&layout.text()), Some(layout));
        assert_eq!(Layout::parse("courier-store 3 shards=x legacy=1"), None);
        assert_eq!(Layout::parse("something else"), None);
    }
}
