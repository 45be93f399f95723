//! Bounded request bodies: which limit applies to a request, and the accounting an adapter
//! runs while it reads a body, so that no body ever grows past its route's limit in memory and
//! the bytes all bodies hold together stay within one budget per process.
//!
//! The adapter asks [`BodyRules::limit`] as soon as a request head is parsed. For
//! [`BodyLimit::UpTo`] it starts a [`BodyCounter`] with the declared `Content-Length` (refused
//! at once, before any body byte is read, when it is over the limit), reserves
//! [`BodyCounter::reserved`] bytes of the [`BodyBudget`], then feeds every chunk to
//! [`BodyCounter::take`], reserving what it asks for before keeping the chunk. A body that is
//! too large reaches the engine as an [`crate::net::HttpRequest`] with `body_truncated`, and
//! the engine gives its route's usual 413. The deadline for the whole body is the adapter's
//! (it owns the clock).

use crate::eio;
use crate::gateway::routes::{Route, route};
use crate::net::Method;

/// What an adapter does with the body of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// The route never looks at a body: it is not read (and the connection is not reused when
    /// one was sent, so nothing of it is ever buffered).
    Ignore,
    /// Read the body, keeping at most this many bytes; one more makes it too large.
    UpTo(usize),
}

/// Which [`BodyLimit`] applies to which request, decided from the method and path alone, so
/// it can be shared with the tasks that read requests while the engine runs elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRules {
    /// Engine.IO's path (`io.path`, e.g. `/socket.io`) and the limit of a polling POST body
    /// (`maxHttpBufferSize`); `None` for an application without Engine.IO.
    pub engine_io: Option<(String, usize)>,
    /// The limit of `POST /send` (matched as Express did: any case, optional trailing `/`);
    /// `None` for an application without that route.
    pub send: Option<usize>,
    /// Every other request.
    pub other: BodyLimit,
}

impl BodyRules {
    /// The same limit for every request: for applications that read any body they get.
    pub fn uniform(limit: usize) -> BodyRules {
        BodyRules {
            engine_io: None,
            send: None,
            other: BodyLimit::UpTo(limit),
        }
    }

    /// The limit of a request with this method and (still percent-encoded) path.
    pub fn limit(&self, method: &Method, path: &str) -> BodyLimit {
        if let Some((engine_path, limit)) = &self.engine_io
            && eio::matches_path(engine_path, path)
        {
            // Only a polling POST carries a payload; a handshake or long-poll GET does not.
            return match method {
                Method::Post => BodyLimit::UpTo(*limit),
                _ => BodyLimit::Ignore,
            };
        }
        match self.send {
            Some(limit) if route(method, path) == Route::Send => BodyLimit::UpTo(limit),
            _ => self.other,
        }
    }
}

/// A body is over its route's limit: answer 413 and keep none of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Counts one body as it arrives: refuses a declared length over the limit before any byte is
/// read, and a chunked body at the first chunk that would pass the limit; says how much of the
/// budget to reserve before each chunk is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyCounter {
    limit: usize,
    received: usize,
    reserved: usize,
}

impl BodyCounter {
    /// Starts a body with the request's declared `Content-Length` (`None` when chunked). A
    /// declared length over `limit` is [`TooLarge`] at once; a declared length is reserved in
    /// full up front, so a body that can be kept always fits in what was reserved for it.
    pub fn start(limit: usize, declared: Option<u64>) -> Result<BodyCounter, TooLarge> {
        let reserved = match declared {
            Some(length) => usize::try_from(length)
                .ok()
                .filter(|&length| length <= limit)
                .ok_or(TooLarge)?,
            None => 0,
        };
        Ok(BodyCounter {
            limit,
            received: 0,
            reserved,
        })
    }

    /// A chunk of `len` bytes arrived. `Ok(more)`: reserve `more` further bytes of the budget,
    /// then keep the chunk. [`TooLarge`]: the body would pass the limit; keep nothing.
    pub fn take(&mut self, len: usize) -> Result<usize, TooLarge> {
        let total = self
            .received
            .checked_add(len)
            .filter(|&total| total <= self.limit)
            .ok_or(TooLarge)?;
        let more = total.saturating_sub(self.reserved);
        self.received = total;
        self.reserved += more;
        Ok(more)
    }

    /// Bytes kept so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// Bytes of the budget this body holds (never more than its limit).
    pub fn reserved(&self) -> usize {
        self.reserved
    }
}

/// The bytes all request bodies of a process may hold together while they are read and
/// handled. A request that would pass it is refused (503) rather than made to wait: waiting
/// would hold its connection for nothing while the budget is spent by slow senders, and the
/// callers of `/send` already retry a 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyBudget {
    capacity: usize,
    used: usize,
}

impl BodyBudget {
    /// A budget of `capacity` bytes, none used.
    pub fn new(capacity: usize) -> BodyBudget {
        BodyBudget { capacity, used: 0 }
    }

    /// Takes `bytes` of the budget; false (and nothing taken) when they do not fit.
    pub fn try_reserve(&mut self, bytes: usize) -> bool {
        match self.used.checked_add(bytes) {
            Some(used) if used <= self.capacity => {
                self.used = used;
                true
            }
            _ => false,
        }
    }

    /// Gives back `bytes` taken earlier.
    pub fn release(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The budget's size.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
