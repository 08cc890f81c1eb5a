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
    let mut delayed_by_a_stop = 0;
    // Clock readings of the library and of the recorder differ by a few µs;
    // a renewal decided just before the deadline is fine.
    let tolerance = h.meta.map_or(0, |m| m.ttl_ns / 100 + 2_000_000);
    for &(t, i, valid_until, valid_for) in &h.renewings {
        let lease = &h.leases[i];
        let after =
            |end: Option<u64>, what: &'static str| end.filter(|&e| e < t).map(|e| (e, what));
        let past_deadline = || {
            // The library decided with nothing left: late by its own clock.
            if valid_for == Some(0) {
                return Some((valid_until, "past its deadline by the library's clock"));
            }
            if t <= valid_until + tolerance {
                return None;
            }
            // Recorded late, but decided in time, and its process was stopped
            // across the deadline: a stopped process cannot help sending what
            // it had decided before the stop (the verdict then comes too late
            // to extend the lease, and the key's own TTL bounds the rest).
            if valid_for.is_some() && stopped_across(h, lease.process, valid_until, t) {
                delayed_by_a_stop += 1;
                return None;
            }
            Some((valid_until, "past its deadline"))
        };
        if let Some((end, what)) = after(lease.lost, "lost")
            .or_else(|| after(lease.release_invoked, "being released"))
            .or_else(past_deadline)
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
    r.count_if_any(
        "renewals decided in time and sent after a stop of their process",
        delayed_by_a_stop,
    );
    r.count_if_any("client events of unknown leases", h.orphans);
    r
}

/// Whether `process` was stopped (`pause-client`) from at or before
/// `deadline` until after it, resuming by `t`.
fn stopped_across(h: &History, process: &str, deadline: u64, t: u64) -> bool {
    let mut stopped_since = None;
    for &(at, start, fault, target) in &h.fault_events {
        if fault != "pause-client" || target != process {
            continue;
        }
        if start {
            stopped_since = Some(at);
        } else if let Some(since) = stopped_since.take() {
            if since <= deadline && deadline < at && at <= t {
                return true;
            }
        }
    }
    false
}
