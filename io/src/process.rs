//! What only the process can say about itself on the status page: the runtime, the version,
//! resident memory and CPU time (Linux `/proc`; elsewhere they stay absent).

use courier_core::gateway::status::NodeStatus;

/// Linux reports CPU time in clock ticks of `USER_HZ`, which is 100 on every architecture
/// Linux supports for user space (the kernel converts to it).
const USER_HZ: f64 = 100.0;

/// Fills in the runtime's name, this crate's version, resident memory and CPU seconds.
pub(crate) fn fill_node_status(node: &mut NodeStatus, runtime: &str) {
    runtime.clone_into(&mut node.runtime);
    env!("CARGO_PKG_VERSION").clone_into(&mut node.version);
    node.resident_bytes = resident_bytes();
    node.cpu_seconds = cpu_seconds();
}

/// `VmRSS` of `/proc/self/status` (kB there).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `utime + stime` of `/proc/self/stat`, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start at field 3 (state), so utime (14) and stime (15) are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
            assert!(cpu_seconds().is_some());
        }
    }
}
