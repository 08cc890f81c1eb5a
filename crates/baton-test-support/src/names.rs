//! Names that are unique within this process and across processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Returns `prefix` followed by the process id, a per-process counter and
/// the current time in nanoseconds, e.g. `job-4242-7-17a3f...`.
///
/// The counter makes names unique within the process; the pid and the time
/// make them unique across processes (concurrent test binaries) and across
/// runs against the same server.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}
