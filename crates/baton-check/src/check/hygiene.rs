//! Check 5, lease hygiene: a release leaves nothing renewing, and no lease
//! is renewed after its loss, its release or its deadline.

use super::digest::History;
use super::CheckResult;

/// Check 5: releases leave nothing renewing; no renewal after the loss or
/// the release of its lease.
pub(super) fn lease_hygiene(h: &History) -> CheckResult {
    let mut r = CheckResult::new("lease hygiene");
    for &(t, process, fence, renewing) in &h.releases {
        if renewing != 0 {
            r.violation(|| {
                format!(
                    "{process} fence {fence}: {renewing} leases still renewing after the release returned at {}",
                    h.at(t)
                )
            });
        }
    }
    let mut late = 0;
    // Clock readings of the library and of the recorder differ by a few µs;
    // a renewal decided just before the deadline is fine.
    let tolerance = h.meta.map_or(0, |m| m.ttl_ns / 100 + 2_000_000);
    for &(t, i, valid_until) in &h.renewings {
        let lease = &h.leases[i];
        let after =
            |end: Option<u64>, what: &'static str| end.filter(|&e| e < t).map(|e| (e, what));
        if let Some((end, what)) = after(lease.lost, "lost")
            .or_else(|| after(lease.release_invoked, "being released"))
            .or_else(|| (t > valid_until + tolerance).then_some((valid_until, "past its deadline")))
        {
            late += 1;
            r.violation(|| {
                format!(
                    "{} fence {} renewing at {}, after it was {what} at {}",
                    lease.process,
                    lease.fence,
                    h.at(t),
                    h.at(end)
                )
            });
        }
    }
    r.count("releases", h.releases.len());
    r.count("renewals sent", h.renewings.len());
    r.count("renewals after loss, release or deadline", late);
    r.count_if_any("client events of unknown leases", h.orphans);
    r
}
