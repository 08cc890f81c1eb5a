//! Check 2, exclusion: no two leases' validity windows overlap.

use super::digest::History;
use super::CheckResult;

/// Check 2: no two validity windows overlap (a sweep in acquisition order,
/// keeping the window that ends last).
pub(super) fn exclusion(h: &History) -> CheckResult {
    let mut r = CheckResult::new("exclusion");
    let mut open: Option<usize> = None;
    let mut empty = 0;
    for (b, lease) in h.leases.iter().enumerate() {
        if lease.empty() {
            empty += 1;
            continue;
        }
        if let Some(a) = open.filter(|&a| h.leases[a].end() > lease.acquired) {
            r.violation(|| format!("{} overlaps {}", h.lease(a), h.lease(b)));
        }
        if open.is_none_or(|a| lease.end() > h.leases[a].end()) {
            open = Some(b);
        }
    }
    r.count("leases", h.leases.len());
    r.count("expired before acquisition was recorded", empty);
    r
}
