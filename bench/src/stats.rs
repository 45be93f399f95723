//! Reading a process's resident memory and summarising latencies. Pure where it can be.

use std::time::Duration;

use courier_io::ops::ProcessStats;

/// The current `VmRSS` of process `pid` in KiB (read as the gateway reads its own).
pub fn process_rss_kib(pid: u32) -> Result<u64, String> {
    Ok(ProcessStats::of(&pid.to_string())?.resident_bytes / 1024)
}

/// The CPU seconds process `pid` has used so far.
pub fn process_cpu_seconds(pid: u32) -> Result<f64, String> {
    Ok(ProcessStats::of(&pid.to_string())?.cpu_seconds)
}

/// Nearest-rank percentile `p` (0–100) of `samples`; `None` when there are none.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Growth of resident memory per connection, in KiB, from two `VmRSS` readings around
/// admitting `connections` clients; negative growth (the allocator returned memory) counts
/// as zero.
pub fn kib_per_connection(before_kib: u64, after_kib: u64, connections: u64) -> f64 {
    if connections == 0 {
        return 0.0;
    }
    after_kib.saturating_sub(before_kib) as f64 / connections as f64
}

/// Events per second; zero for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_set() {
        let rss = process_rss_kib(std::process::id()).expect("own /proc status");
        assert!(rss > 0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&samples, 50.0), Some(ms(50)));
        assert_eq!(percentile(&samples, 99.0), Some(ms(99)));
        assert_eq!(percentile(&samples, 100.0), Some(ms(100)));
        assert_eq!(percentile(&samples, 0.0), Some(ms(1)));
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn per_connection_and_rate_never_divide_by_zero() {
        assert_eq!(kib_per_connection(1000, 3000, 400), 5.0);
        assert_eq!(kib_per_connection(3000, 1000, 400), 0.0);
        assert_eq!(kib_per_connection(1000, 3000, 0), 0.0);
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(500, Duration::ZERO), 0.0);
    }
}
