//! The store's Lua code as a Redis function library (Redis 7 `FUNCTION LOAD`, called by
//! `FCALL`).
//!
//! Why a function and not a script (`EVALSHA`): Redis runs a script's whole text on every call,
//! so every call re-created the few dozen closures of the shared code and collected them again
//! as garbage — about as much Redis CPU as the commands it carried when a call carries one or
//! two of them (one `/send` per user; BENCHMARKS.md, "Redis, round 2"). A library's top level
//! runs once, when it is loaded; a call only runs the registered function.
//!
//! Redis keeps functions in memory (and in its RDB/AOF files, when it persists anything): a
//! Redis restarted without persistence, or a `FUNCTION FLUSH`, loses them, `FLUSHALL` does not.
//! The store therefore loads the library at the head of a pipeline whenever Redis may have lost
//! it (at start, after a connection failure, after a call answered that the function is
//! missing), as `pipeline` describes.
//!
//! The library's name, which is also its one function's name, carries the layout version and a
//! digest of the code: two builds whose code differs never replace each other's library (a
//! rolling upgrade runs both), and a build never calls code other than its own.

use redis::{Cmd, RedisError, Script};

use super::LAYOUT_VERSION;

/// The code shared by every command, then the commands and their dispatcher (`run`).
const CODE: &str = concat!(
    include_str!("../lua/common.lua"),
    "\n",
    include_str!("../lua/commands.lua")
);

/// The library Redis is asked to load, and the name `FCALL` calls it by.
#[derive(Debug)]
pub(super) struct Library {
    name: String,
    source: String,
}

impl Library {
    pub(super) fn new() -> Library {
        // The first 16 hex digits of the code's SHA-1 (the digest Redis names scripts by).
        let digest = Script::new(CODE).get_hash().to_owned();
        let name = format!("courier_{LAYOUT_VERSION}_{}", &digest[..16]);
        // While a library loads, Redis offers it only the `redis` table (common.lua reads the
        // other globals at the first call), so `register_function` is taken before the code's
        // own `redis` local shadows the global.
        let source = format!(
            "#!lua name={name}\nlocal register_function = redis.register_function\n{CODE}\n\
             register_function('{name}', run)\n"
        );
        Library { name, source }
    }

    /// `FUNCTION LOAD REPLACE <library>`: loads it whether or not Redis holds it already (the
    /// same name always carries the same code, so replacing changes nothing for other nodes).
    pub(super) fn load(&self) -> Cmd {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(&self.source);
        cmd
    }

    /// `FCALL <name> 1 <key>`: the caller appends the arguments.
    pub(super) fn call(&self, key: &str) -> Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(&self.name).arg(1).arg(key);
        cmd
    }
}

/// Whether `error` says that Redis does not hold the function (it lost the library).
pub(super) fn is_missing(error: &RedisError) -> bool {
    error.code() == Some("ERR")
        && error
            .detail()
            .is_some_and(|detail| detail.starts_with("Function not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_carries_the_layout_version_and_is_a_valid_library_name() {
        let library = Library::new();
        assert!(
            library
                .name
                .starts_with(&format!("courier_{LAYOUT_VERSION}_"))
        );
        // Redis accepts letters, digits and underscores only.
        assert!(
            library
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        assert!(library.source.starts_with("#!lua name=courier_"));
    }
}
