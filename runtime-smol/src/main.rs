//! The `courier-smol` binary: Courier on smol.

use std::process::ExitCode;

use courier_smol::SmolRuntime;

/// jemalloc rather than the C library's allocator: a delivery allocates and frees a few dozen
/// small buffers across the driver, the connection tasks and the store task, and glibc's
/// allocator spent about a tenth of the gateway's CPU on them (consolidating its fast bins on
/// every larger allocation, freeing across threads). Measured in BENCHMARKS.md, "Gateway CPU,
/// round 2".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // jemalloc gives freed memory back after its decay time (10 s) from one background thread,
    // so a burst's memory returns even when the gateway idles afterwards (without it, purging
    // waits for later allocations). A build without background threads skips this and purges
    // that way instead.
    let _ = tikv_jemalloc_ctl::max_background_threads::write(1);
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    courier_io::cli_main(SmolRuntime::new(), courier_io::gateway_app)
}
