//! Reading a request body within its route's limit, a deadline and the process's body budget.
//! What limit applies and how a body is counted are courier-core's decisions
//! ([`courier_core::body`]); this module only feeds hyper's frames through them and races the
//! read against the clock.

use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use courier_core::body::{BodyBudget, BodyCounter, BodyLimit, BodyRules};
use courier_core::net::Method;
use futures_lite::future;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::runtime::Runtime;

/// What every connection of a server shares to read bodies.
pub(crate) struct BodyReading {
    /// Which limit applies to which request (the engine's).
    pub(crate) rules: BodyRules,
    /// How long a body may take once its head is read.
    pub(crate) timeout: Duration,
    /// The bytes all bodies may hold together.
    pub(crate) budget: Mutex<BodyBudget>,
}

/// A body as read, to be handed to the engine.
pub(crate) struct ReadBody<'a> {
    /// What was kept: the whole body, or nothing when it was too large.
    pub(crate) bytes: Bytes,
    /// The body was over its route's limit.
    pub(crate) truncated: bool,
    /// The body was read to its end, so the connection can serve another request; otherwise
    /// the answer closes it (the rest of the body is never read).
    pub(crate) complete: bool,
    /// The budget this body holds until the request is answered.
    pub(crate) _hold: Reservation<'a>,
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    /// It did not arrive within the deadline: 408.
    Timeout,
    /// It would pass the process's budget: 503.
    OverBudget,
    /// The client broke its own framing or left.
    Broken,
}

/// Bytes of the budget held by one request; given back when dropped.
pub(crate) struct Reservation<'a> {
    budget: &'a Mutex<BodyBudget>,
    bytes: usize,
}

impl Reservation<'_> {
    fn grow(&mut self, bytes: usize) -> Result<(), BodyError> {
        if bytes == 0 {
            return Ok(());
        }
        if !lock(self.budget).try_reserve(bytes) {
            return Err(BodyError::OverBudget);
        }
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            lock(self.budget).release(self.bytes);
        }
    }
}

fn lock(budget: &Mutex<BodyBudget>) -> std::sync::MutexGuard<'_, BodyBudget> {
    // The budget is plain arithmetic: a panic elsewhere cannot leave it half-updated.
    budget
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BodyReading {
    /// Reads the body of a `method` request for `path` as its route allows.
    pub(crate) async fn read<R: Runtime>(
        &self,
        runtime: &R,
        method: &Method,
        path: &str,
        body: Incoming,
    ) -> Result<ReadBody<'_>, BodyError> {
        let mut hold = Reservation {
            budget: &self.budget,
            bytes: 0,
        };
        let limit = match self.rules.limit(method, path) {
            BodyLimit::UpTo(limit) => limit,
            BodyLimit::Ignore => {
                return Ok(ReadBody {
                    bytes: Bytes::new(),
                    truncated: false,
                    complete: body.is_end_stream(),
                    _hold: hold,
                });
            }
        };
        let Ok(mut counter) = BodyCounter::start(limit, body.size_hint().exact()) else {
            // Over the limit by its Content-Length: refused before a byte of it is read.
            return Ok(too_large(hold, body.is_end_stream()));
        };
        hold.grow(counter.reserved())?;
        let deadline = runtime.now() + self.timeout;
        let expired = async {
            runtime.sleep_until(deadline).await;
            Err(BodyError::Timeout)
        };
        let collect = collect(body, &mut counter, &mut hold);
        match future::or(collect, expired).await? {
            Some(bytes) => Ok(ReadBody {
                bytes,
                truncated: false,
                complete: true,
                _hold: hold,
            }),
            None => Ok(too_large(hold, false)),
        }
    }
}

fn too_large(hold: Reservation<'_>, complete: bool) -> ReadBody<'_> {
    ReadBody {
        bytes: Bytes::new(),
        truncated: true,
        complete,
        _hold: hold,
    }
}

/// The whole body, or `None` at the first chunk that takes it over its limit.
async fn collect(
    mut body: Incoming,
    counter: &mut BodyCounter,
    hold: &mut Reservation<'_>,
) -> Result<Option<Bytes>, BodyError> {
    let mut kept = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let Ok(more) = counter.take(chunk.len()) else {
            return Ok(None);
        };
        hold.grow(more)?;
        // Copied rather than kept: a chunk may share a much larger read buffer of hyper's.
        kept.extend_from_slice(&chunk);
    }
    Ok(Some(kept.freeze()))
}
