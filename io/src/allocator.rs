//! jemalloc as the process's allocator, for the binaries that enable the `jemalloc` feature
//! (both runtimes' binaries do).
//!
//! A delivery allocates and frees a few dozen small buffers across the driver, the connection
//! tasks and the store task, and glibc's allocator spent about a tenth of the gateway's CPU on
//! them (consolidating its fast bins on every larger allocation, freeing across threads).
//! Measured in BENCHMARKS.md, "Gateway CPU, round 2".

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Lets one background thread give freed memory back after jemalloc's decay time (10 s), so a
/// burst's memory returns even when the gateway idles afterwards (without it, purging waits for
/// later allocations). A jemalloc built without background threads refuses, and purges that way
/// instead.
pub(crate) fn purge_in_background() {
    let _ = tikv_jemalloc_ctl::max_background_threads::write(1);
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
}
