//! Check 7, liveness: every long enough quiet period (no fault active) sees
//! an acquisition.

use super::digest::History;
use super::CheckResult;

/// Check 7: every long enough quiet period sees an acquisition.
pub(super) fn liveness(h: &History) -> CheckResult {
    let mut r = CheckResult::new("liveness");
    let (Some(meta), Some(stop)) = (h.meta, h.stop) else {
        let missing = if h.meta.is_none() { "Meta" } else { "Stop" };
        r.violation(|| format!("no {missing} event: liveness cannot be checked"));
        return r;
    };

    let mut periods = h.quiet_periods(meta, stop);
    periods.retain(|&(from, to)| to > from);

    let acquisitions: Vec<u64> = h.leases.iter().map(|l| l.acquired).collect();
    let (mut checked, mut skipped) = (0, 0);
    for &(from, to) in &periods {
        let check_from = from.saturating_add(meta.settle_ns);
        if check_from > to || to - check_from < meta.ttl_ns {
            skipped += 1;
            continue;
        }
        checked += 1;
        let first = acquisitions.partition_point(|&t| t < check_from);
        if acquisitions.get(first).is_none_or(|&t| t > to) {
            r.violation(|| {
                format!(
                    "no acquisition in the quiet period {} to {} (checked from {})",
                    h.at(from),
                    h.at(to),
                    h.at(check_from)
                )
            });
        }
    }
    r.count("quiet periods", periods.len());
    r.count("quiet periods checked", checked);
    r.count("quiet periods skipped (shorter than settle + ttl)", skipped);
    r
}
